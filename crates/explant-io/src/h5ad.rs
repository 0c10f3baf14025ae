//! AnnData (`.h5ad`) snapshots, written by hand with the HDF5 library.
//!
//! The layout follows the AnnData on-disk specification
//! (<https://anndata.readthedocs.io/en/latest/fileformat-prose.html>) as written by Python
//! `anndata` 0.12: every element carries `encoding-type` / `encoding-version` attributes,
//! strings are variable-length UTF-8, data frames keep their column order in an attribute.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use hdf5::types::VarLenUnicode;
use hdf5::{Group, Location};

use crate::IoError;
use crate::atomic::write_atomically;

/// One recorded state of the tissue: everything [`write_h5ad`] puts in the file.
///
/// `N` cells (rows, AnnData's `obs`) by `G` genes (columns, `var`). All per-cell slices
/// must have `N` entries and `expression` must have `N × G`.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// Gene names, `G` of them, unique; they become `var_names`.
    pub genes: &'a [String],
    /// Cell type names, unique; they become the categories of `obs['cell_type']`.
    pub cell_type_names: &'a [String],
    /// Stable cell identifiers, unique; written as decimal strings, they become `obs_names`.
    pub cell_ids: &'a [u64],
    /// Each cell's type, an index into `cell_type_names`.
    pub cell_types: &'a [u32],
    /// Each cell's generation (number of divisions since the founding cell).
    pub generations: &'a [u32],
    /// Whether a perturbation acted on each cell at the snapshot's tick.
    pub perturbed: &'a [bool],
    /// Cell centres in µm.
    pub positions: &'a [[f32; 3]],
    /// 2 or 3: how many coordinates of each position go into `obsm['spatial']`.
    pub dims: usize,
    /// Expression, `N × G`, row-major (one row per cell); it becomes `X`.
    pub expression: &'a [f32],
    /// Simulation tick of the snapshot.
    pub tick: u64,
    /// Simulated time of the snapshot in minutes.
    pub time_min: f64,
    /// The scene file (TOML text) that produced the run, stored for provenance.
    pub scene_toml: &'a str,
    /// Version of explant that wrote the file.
    pub explant_version: &'a str,
    /// Ligand fields at the same moment, if any.
    pub fields: Option<FieldSnapshot<'a>>,
    /// Further `obs` columns, written after `perturbed` in this order.
    pub extra_obs: &'a [ObsColumn<'a>],
    /// Named `N × G` matrices written to `layers` (e.g. the paired control's expression).
    pub layers: &'a [(&'a str, &'a [f32])],
}

/// An extra per-cell column of `obs`.
#[derive(Debug, Clone, Copy)]
pub enum ObsColumn<'a> {
    /// Integers (e.g. a parent id, −1 for none).
    Int {
        /// Column name.
        name: &'a str,
        /// One per cell.
        values: &'a [i64],
    },
    /// Real numbers (e.g. a radius or a distance; NaN where undefined).
    Float {
        /// Column name.
        name: &'a str,
        /// One per cell.
        values: &'a [f32],
    },
    /// A categorical column: `codes` index `categories`.
    Category {
        /// Column name.
        name: &'a str,
        /// Category names, unique.
        categories: &'a [String],
        /// One per cell.
        codes: &'a [u32],
    },
}

impl ObsColumn<'_> {
    /// The column's name.
    pub fn name(&self) -> &str {
        match self {
            ObsColumn::Int { name, .. } | ObsColumn::Float { name, .. } | ObsColumn::Category { name, .. } => name,
        }
    }

    fn len(&self) -> usize {
        match self {
            ObsColumn::Int { values, .. } => values.len(),
            ObsColumn::Float { values, .. } => values.len(),
            ObsColumn::Category { codes, .. } => codes.len(),
        }
    }
}

/// The ligand fields of a snapshot, written to `uns['fields']` (one array per ligand,
/// shape `(ny, nx)` in 2D or `(nz, ny, nx)` in 3D, C order, so `[y, x]` / `[z, y, x]`
/// indexing) and `uns['fields_grid']` (`origin` in µm, `spacing` in µm, `shape`).
#[derive(Debug, Clone, Copy)]
pub struct FieldSnapshot<'a> {
    /// Ligand names, one per channel.
    pub names: &'a [String],
    /// The grid the values live on.
    pub grid: &'a explant_field::Grid,
    /// Channel-major values, `channels × nz × ny × nx`.
    pub data: &'a [f32],
}

/// Write `snap` to `path` as an AnnData file that Python's `anndata.read_h5ad` reads.
///
/// Contents:
/// - `X`: dense float32 `N × G` expression;
/// - `obs`: index = cell ids, categorical `cell_type`, integer `generation`, boolean
///   `perturbed`, then the snapshot's [`ObsColumn`]s;
/// - `layers`: the snapshot's named matrices (float32 `N × G`);
/// - `var`: index = gene names;
/// - `obsm['spatial']`: float32 `N × dims` cell centres in µm;
/// - `uns['explant']`: `scene` (TOML text), `version`, `time_min`, `tick`;
/// - `uns['fields']` and `uns['fields_grid']` when the snapshot has fields ([`FieldSnapshot`]);
/// - empty `varm`, `obsp`, `varp`.
///
/// The inputs are checked first (lengths, `dims`, cell type indices, unique names, no NUL
/// bytes in strings). The file is written to a temporary file beside `path` and renamed
/// over it only when complete, so an existing file is replaced atomically and a crash never
/// leaves a half-written `.h5ad`.
pub fn write_h5ad(path: &Path, snap: &Snapshot<'_>) -> Result<(), IoError> {
    let prepared = Prepared::new(path, snap)?;
    write_atomically(path, |tmp| {
        write_file(tmp, snap, &prepared).map_err(|source| IoError::Hdf5 { path: path.to_path_buf(), source })
    })
}

/// The snapshot's strings converted to HDF5 strings, and the checked sizes.
struct Prepared {
    n_obs: usize,
    n_vars: usize,
    genes: Vec<VarLenUnicode>,
    categories: Vec<VarLenUnicode>,
    cell_ids: Vec<VarLenUnicode>,
    scene: VarLenUnicode,
    version: VarLenUnicode,
}

impl Prepared {
    /// Check the snapshot (lengths, extra columns, layers, expression, `dims`, cell types,
    /// fields, unique names, in that order) and convert its strings.
    fn new(path: &Path, snap: &Snapshot<'_>) -> Result<Self, IoError> {
        check_per_cell_lengths(path, snap)?;
        check_extra_obs(path, snap)?;
        check_layers(path, snap)?;
        check_expression_and_types(path, snap)?;
        check_fields(path, snap)?;
        let ids = check_names(path, snap)?;
        Ok(Self {
            n_obs: snap.cell_ids.len(),
            n_vars: snap.genes.len(),
            genes: to_h5_strings(path, "genes", snap.genes)?,
            categories: to_h5_strings(path, "cell_type_names", snap.cell_type_names)?,
            cell_ids: to_h5_strings(path, "cell_ids", &ids)?,
            scene: to_h5_string(path, || "scene_toml".to_owned(), snap.scene_toml)?,
            version: to_h5_string(path, || "explant_version".to_owned(), snap.explant_version)?,
        })
    }
}

/// The error for an input `what` of length `found` where `expected` (from `why`) was needed.
fn mismatch(path: &Path, what: &'static str, found: usize, expected: usize, why: String) -> IoError {
    IoError::LengthMismatch { path: path.to_path_buf(), what, found, expected, why }
}

/// Why a per-cell input needs `n_obs` entries.
fn per_cell(n_obs: usize) -> String {
    format!("one per cell, and `cell_ids` has {n_obs}")
}

/// Cell types, generations, perturbed flags and positions: one per cell id.
fn check_per_cell_lengths(path: &Path, snap: &Snapshot<'_>) -> Result<(), IoError> {
    let n_obs = snap.cell_ids.len();
    for (what, found) in [
        ("cell_types", snap.cell_types.len()),
        ("generations", snap.generations.len()),
        ("perturbed", snap.perturbed.len()),
        ("positions", snap.positions.len()),
    ] {
        if found != n_obs {
            return Err(mismatch(path, what, found, n_obs, per_cell(n_obs)));
        }
    }
    Ok(())
}

/// Each extra `obs` column: one entry per cell, an HDF5-safe name, unique categories
/// that its codes stay within; and no two `obs` columns with the same name.
fn check_extra_obs(path: &Path, snap: &Snapshot<'_>) -> Result<(), IoError> {
    let n_obs = snap.cell_ids.len();
    let mut names: Vec<&str> = vec!["cell_type", "generation", "perturbed"];
    for (i, c) in snap.extra_obs.iter().enumerate() {
        if c.len() != n_obs {
            return Err(mismatch(
                path,
                "extra_obs",
                c.len(),
                n_obs,
                format!("column `{}`: {}", c.name(), per_cell(n_obs)),
            ));
        }
        to_h5_string(path, || format!("extra_obs[{i}].name"), c.name())?;
        names.push(c.name());
        if let ObsColumn::Category { categories, codes, .. } = c {
            check_unique(path, "extra_obs categories", categories.iter().map(String::as_str))?;
            to_h5_strings(path, c.name(), categories)?;
            if let Some((cell, &code)) = codes.iter().enumerate().find(|&(_, &k)| k as usize >= categories.len()) {
                return Err(IoError::BadCellType { path: path.to_path_buf(), cell, code, names: categories.len() });
            }
        }
    }
    check_unique(path, "obs columns", names.iter().copied())
}

/// Each layer: an HDF5-safe name and cells × genes values; no two layers with the same name.
fn check_layers(path: &Path, snap: &Snapshot<'_>) -> Result<(), IoError> {
    let (n_obs, n_vars) = (snap.cell_ids.len(), snap.genes.len());
    for (i, (name, values)) in snap.layers.iter().enumerate() {
        to_h5_string(path, || format!("layers[{i}].name"), name)?;
        if Some(values.len()) != n_obs.checked_mul(n_vars) {
            return Err(mismatch(
                path,
                "layers",
                values.len(),
                n_obs * n_vars,
                format!("layer `{name}`: cells × genes"),
            ));
        }
    }
    check_unique(path, "layers", snap.layers.iter().map(|l| l.0))
}

/// Expression of cells × genes values, `dims` 2 or 3, and cell types within the names.
fn check_expression_and_types(path: &Path, snap: &Snapshot<'_>) -> Result<(), IoError> {
    let (n_obs, n_vars) = (snap.cell_ids.len(), snap.genes.len());
    let cells_x_genes = n_obs.checked_mul(n_vars);
    if cells_x_genes != Some(snap.expression.len()) {
        return Err(mismatch(
            path,
            "expression",
            snap.expression.len(),
            cells_x_genes.unwrap_or(usize::MAX),
            format!("{n_obs} cells × {n_vars} genes"),
        ));
    }
    if !matches!(snap.dims, 2 | 3) {
        return Err(IoError::BadDims { path: path.to_path_buf(), dims: snap.dims });
    }
    let names = snap.cell_type_names.len();
    if let Some((cell, &code)) = snap.cell_types.iter().enumerate().find(|&(_, &c)| c as usize >= names) {
        return Err(IoError::BadCellType { path: path.to_path_buf(), cell, code, names });
    }
    Ok(())
}

/// Ligand fields, if any: one grid of values per ligand, unique HDF5-safe names.
fn check_fields(path: &Path, snap: &Snapshot<'_>) -> Result<(), IoError> {
    let Some(f) = &snap.fields else { return Ok(()) };
    let voxels = f.grid.voxels();
    let expected = voxels.saturating_mul(f.names.len());
    if f.data.len() != expected {
        return Err(mismatch(
            path,
            "fields.data",
            f.data.len(),
            expected,
            format!("{} ligands × {voxels} voxels", f.names.len()),
        ));
    }
    check_unique(path, "fields.names", f.names.iter().map(String::as_str))?;
    for (i, n) in f.names.iter().enumerate() {
        to_h5_string(path, || format!("fields.names[{i}]"), n)?;
    }
    Ok(())
}

/// Unique genes, cell type names and cell ids; returns the ids as text.
fn check_names(path: &Path, snap: &Snapshot<'_>) -> Result<Vec<String>, IoError> {
    check_unique(path, "genes", snap.genes.iter().map(String::as_str))?;
    check_unique(path, "cell_type_names", snap.cell_type_names.iter().map(String::as_str))?;
    let ids: Vec<String> = snap.cell_ids.iter().map(u64::to_string).collect();
    check_unique(path, "cell_ids", ids.iter().map(String::as_str))?;
    Ok(ids)
}

fn check_unique<'s>(path: &Path, what: &'static str, names: impl Iterator<Item = &'s str>) -> Result<(), IoError> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(IoError::Duplicate { path: path.to_path_buf(), what, name: name.to_owned() });
        }
    }
    Ok(())
}

fn to_h5_string(path: &Path, what: impl FnOnce() -> String, s: &str) -> Result<VarLenUnicode, IoError> {
    VarLenUnicode::from_str(s).map_err(|_| IoError::NulInString { path: path.to_path_buf(), what: what() })
}

fn to_h5_strings(path: &Path, what: &str, strings: &[String]) -> Result<Vec<VarLenUnicode>, IoError> {
    strings.iter().enumerate().map(|(i, s)| to_h5_string(path, || format!("{what}[{i}]"), s)).collect()
}

/// A string known to hold no NUL byte, as an HDF5 string.
fn h5_str(s: &str) -> hdf5::Result<VarLenUnicode> {
    VarLenUnicode::from_str(s).map_err(|e| hdf5::Error::from(format!("string `{s}`: {e}")))
}

fn write_file(path: &Path, snap: &Snapshot<'_>, p: &Prepared) -> hdf5::Result<()> {
    let file = hdf5::File::create(path)?;
    {
        let root: &Group = &file;
        encoding(root, "anndata", "0.1.0")?;

        let x = root.new_dataset::<f32>().obj_track_times(false).shape((p.n_obs, p.n_vars)).create("X")?;
        x.write_raw(snap.expression)?;
        encoding(&x, "array", "0.2.0")?;

        let obs = new_group(root, "obs")?;
        let mut columns = vec!["cell_type", "generation", "perturbed"];
        columns.extend(snap.extra_obs.iter().map(|c| c.name()));
        dataframe(&obs, &p.cell_ids, &columns)?;
        categorical(&obs, "cell_type", &p.categories, snap.cell_types)?;
        array(&obs, "generation", snap.generations)?;
        array(&obs, "perturbed", snap.perturbed)?;
        for c in snap.extra_obs {
            match c {
                ObsColumn::Int { name, values } => array(&obs, name, values)?,
                ObsColumn::Float { name, values } => array(&obs, name, values)?,
                ObsColumn::Category { name, categories, codes } => {
                    let cats = categories.iter().map(|c| h5_str(c)).collect::<hdf5::Result<Vec<_>>>()?;
                    categorical(&obs, name, &cats, codes)?;
                }
            }
        }

        let var = new_group(root, "var")?;
        dataframe(&var, &p.genes, &[])?;

        let obsm = dict(root, "obsm")?;
        let spatial: Vec<f32> = snap.positions.iter().flat_map(|pos| pos[..snap.dims].iter().copied()).collect();
        let ds = obsm.new_dataset::<f32>().obj_track_times(false).shape((p.n_obs, snap.dims)).create("spatial")?;
        ds.write_raw(spatial.as_slice())?;
        encoding(&ds, "array", "0.2.0")?;

        let uns = dict(root, "uns")?;
        let explant = dict(&uns, "explant")?;
        scalar(&explant, "scene", &p.scene, "string")?;
        scalar(&explant, "version", &p.version, "string")?;
        scalar(&explant, "time_min", &snap.time_min, "numeric-scalar")?;
        scalar(&explant, "tick", &snap.tick, "numeric-scalar")?;
        if let Some(f) = &snap.fields {
            write_fields(&uns, f)?;
        }

        let layers = dict(root, "layers")?;
        for (name, values) in snap.layers {
            let ds = layers.new_dataset::<f32>().obj_track_times(false).shape((p.n_obs, p.n_vars)).create(*name)?;
            ds.write_raw(values)?;
            encoding(&ds, "array", "0.2.0")?;
        }
        for name in ["varm", "obsp", "varp"] {
            dict(root, name)?;
        }
    }
    file.flush()?;
    file.close()
}

fn write_fields(uns: &Group, f: &FieldSnapshot<'_>) -> hdf5::Result<()> {
    let g = f.grid;
    let shape: Vec<usize> = if g.nz == 1 { vec![g.ny, g.nx] } else { vec![g.nz, g.ny, g.nx] };
    let fields = dict(uns, "fields")?;
    let voxels = g.voxels();
    for (c, name) in f.names.iter().enumerate() {
        let ds = fields.new_dataset::<f32>().obj_track_times(false).shape(shape.as_slice()).create(name.as_str())?;
        ds.write_raw(&f.data[c * voxels..(c + 1) * voxels])?;
        encoding(&ds, "array", "0.2.0")?;
    }
    let grid = dict(uns, "fields_grid")?;
    array(&grid, "origin", &g.origin)?;
    scalar(&grid, "spacing", &g.dx, "numeric-scalar")?;
    let shape_i64: Vec<i64> = shape.iter().map(|&v| v as i64).collect();
    array(&grid, "shape", &shape_i64)
}

fn str_attr(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&h5_str(value)?)
}

fn encoding(loc: &Location, kind: &str, version: &str) -> hdf5::Result<()> {
    str_attr(loc, "encoding-type", kind)?;
    str_attr(loc, "encoding-version", version)
}

fn new_group(parent: &Group, name: &str) -> hdf5::Result<Group> {
    parent.create_group_builder().obj_track_times(false).create(name)
}

fn dict(parent: &Group, name: &str) -> hdf5::Result<Group> {
    let g = new_group(parent, name)?;
    encoding(&g, "dict", "0.1.0")?;
    Ok(g)
}

/// A 1-D numeric dataset with the `array` encoding.
fn array<T: hdf5::H5Type>(parent: &Group, name: &str, data: &[T]) -> hdf5::Result<()> {
    let ds = parent.new_dataset::<T>().obj_track_times(false).shape(data.len()).create(name)?;
    ds.write_raw(data)?;
    encoding(&ds, "array", "0.2.0")
}

/// A 1-D dataset of variable-length UTF-8 strings with the `string-array` encoding.
fn string_array(parent: &Group, name: &str, data: &[VarLenUnicode]) -> hdf5::Result<()> {
    let ds = parent.new_dataset::<VarLenUnicode>().obj_track_times(false).shape(data.len()).create(name)?;
    ds.write_raw(data)?;
    encoding(&ds, "string-array", "0.2.0")
}

/// A 0-D dataset holding one value, e.g. `string` or `numeric-scalar`.
fn scalar<T: hdf5::H5Type>(parent: &Group, name: &str, value: &T, kind: &str) -> hdf5::Result<()> {
    let ds = parent.new_dataset::<T>().obj_track_times(false).create(name)?;
    ds.write_scalar(value)?;
    encoding(&ds, kind, "0.2.0")
}

/// Mark `g` as a data frame whose index is `index` and whose columns (written separately)
/// are `columns`, in order.
fn dataframe(g: &Group, index: &[VarLenUnicode], columns: &[&str]) -> hdf5::Result<()> {
    encoding(g, "dataframe", "0.2.0")?;
    str_attr(g, "_index", "_index")?;
    if columns.is_empty() {
        // What h5py writes for an empty list: a zero-length float64 array.
        g.new_attr::<f64>().shape(0).create("column-order")?;
    } else {
        let cols = columns.iter().map(|c| h5_str(c)).collect::<hdf5::Result<Vec<_>>>()?;
        g.new_attr::<VarLenUnicode>().shape(cols.len()).create("column-order")?.write_raw(cols.as_slice())?;
    }
    string_array(g, "_index", index)
}

/// A pandas categorical column: string `categories` and integer `codes` of the smallest
/// width pandas itself would pick.
fn categorical(parent: &Group, name: &str, categories: &[VarLenUnicode], codes: &[u32]) -> hdf5::Result<()> {
    let g = new_group(parent, name)?;
    encoding(&g, "categorical", "0.2.0")?;
    g.new_attr::<bool>().create("ordered")?.write_scalar(&false)?;
    string_array(&g, "categories", categories)?;
    // Every code is below `categories.len()` (checked before writing), so the casts are exact.
    let n = categories.len();
    if n < i8::MAX as usize {
        let c: Vec<i8> = codes.iter().map(|&c| c as i8).collect();
        array(&g, "codes", &c)
    } else if n < i16::MAX as usize {
        let c: Vec<i16> = codes.iter().map(|&c| c as i16).collect();
        array(&g, "codes", &c)
    } else if n < i32::MAX as usize {
        let c: Vec<i32> = codes.iter().map(|&c| c as i32).collect();
        array(&g, "codes", &c)
    } else {
        let c: Vec<i64> = codes.iter().map(|&c| i64::from(c)).collect();
        array(&g, "codes", &c)
    }
}

/// Single cells as a scorer such as `cell-eval` reads them: a float64 `X`, `obs` columns
/// and `var_names`, nothing else. `N` cells by `G` genes.
#[derive(Debug, Clone, Copy)]
pub struct CellMatrix<'a> {
    /// Cell names, `N` of them, unique; they become `obs_names`.
    pub obs_names: &'a [String],
    /// Gene names, `G` of them, unique; they become `var_names`.
    pub var_names: &'a [String],
    /// Expression, `N × G`, row-major; it becomes `X` (float64).
    pub x: &'a [f64],
    /// The `obs` columns, in this order.
    pub obs: &'a [ObsColumn<'a>],
    /// Version of explant that wrote the file (`uns['explant']['version']`).
    pub explant_version: &'a str,
}

/// Write `m` to `path` as an AnnData file: dense float64 `X`, `obs` (index = `obs_names`,
/// then `m.obs`), `var` (index = `var_names`), `uns['explant']['version']`, and empty
/// `obsm`, `varm`, `obsp`, `varp` and `layers`. Float64 so that a scorer reading it
/// computes in the same precision as explant. Checked first (lengths, unique names and
/// columns, category codes, no NUL bytes); written atomically as [`write_h5ad`].
pub fn write_cell_matrix(path: &Path, m: &CellMatrix<'_>) -> Result<(), IoError> {
    let (n_obs, n_vars) = (m.obs_names.len(), m.var_names.len());
    let cells_x_genes = n_obs.checked_mul(n_vars);
    if cells_x_genes != Some(m.x.len()) {
        let expected = cells_x_genes.unwrap_or(usize::MAX);
        return Err(mismatch(path, "x", m.x.len(), expected, format!("{n_obs} cells × {n_vars} genes")));
    }
    for (i, c) in m.obs.iter().enumerate() {
        if c.len() != n_obs {
            return Err(mismatch(path, "obs", c.len(), n_obs, format!("column `{}`: one per cell", c.name())));
        }
        to_h5_string(path, || format!("obs[{i}].name"), c.name())?;
        if let ObsColumn::Category { categories, codes, .. } = c {
            check_unique(path, "obs categories", categories.iter().map(String::as_str))?;
            to_h5_strings(path, c.name(), categories)?;
            if let Some((cell, &code)) = codes.iter().enumerate().find(|&(_, &k)| k as usize >= categories.len()) {
                return Err(IoError::BadCellType { path: path.to_path_buf(), cell, code, names: categories.len() });
            }
        }
    }
    check_unique(path, "obs columns", m.obs.iter().map(|c| c.name()))?;
    check_unique(path, "obs_names", m.obs_names.iter().map(String::as_str))?;
    check_unique(path, "var_names", m.var_names.iter().map(String::as_str))?;
    let obs_names = to_h5_strings(path, "obs_names", m.obs_names)?;
    let var_names = to_h5_strings(path, "var_names", m.var_names)?;
    let version = to_h5_string(path, || "explant_version".to_owned(), m.explant_version)?;
    write_atomically(path, |tmp| {
        write_matrix_file(tmp, m, &obs_names, &var_names, &version)
            .map_err(|source| IoError::Hdf5 { path: path.to_path_buf(), source })
    })
}

fn write_matrix_file(
    path: &Path,
    m: &CellMatrix<'_>,
    obs_names: &[VarLenUnicode],
    var_names: &[VarLenUnicode],
    version: &VarLenUnicode,
) -> hdf5::Result<()> {
    let file = hdf5::File::create(path)?;
    {
        let root: &Group = &file;
        encoding(root, "anndata", "0.1.0")?;
        let x =
            root.new_dataset::<f64>().obj_track_times(false).shape((obs_names.len(), var_names.len())).create("X")?;
        x.write_raw(m.x)?;
        encoding(&x, "array", "0.2.0")?;
        let obs = new_group(root, "obs")?;
        let columns: Vec<&str> = m.obs.iter().map(|c| c.name()).collect();
        dataframe(&obs, obs_names, &columns)?;
        for c in m.obs {
            match c {
                ObsColumn::Int { name, values } => array(&obs, name, values)?,
                ObsColumn::Float { name, values } => array(&obs, name, values)?,
                ObsColumn::Category { name, categories, codes } => {
                    let cats = categories.iter().map(|c| h5_str(c)).collect::<hdf5::Result<Vec<_>>>()?;
                    categorical(&obs, name, &cats, codes)?;
                }
            }
        }
        let var = new_group(root, "var")?;
        dataframe(&var, var_names, &[])?;
        let uns = dict(root, "uns")?;
        let explant = dict(&uns, "explant")?;
        scalar(&explant, "version", version, "string")?;
        for name in ["obsm", "varm", "obsp", "varp", "layers"] {
            dict(root, name)?;
        }
    }
    file.flush()?;
    file.close()
}
