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
use hdf5::{Dataset, Group, Location};

use crate::IoError;
use crate::atomic::write_atomically;
use crate::colour;

/// `obsp` key of the contact graph's connectivities, as `squidpy.gr.spatial_neighbors` names it.
pub const CONNECTIVITIES_KEY: &str = "spatial_connectivities";
/// `obsp` key of the contact graph's centre distances, as `squidpy.gr.spatial_neighbors` names it.
pub const DISTANCES_KEY: &str = "spatial_distances";
/// `obs` columns [`write_h5ad`] always writes, in order before the extra columns (whose
/// names must differ from these), and after them `time_min` and `tick`.
const FIXED_OBS: [&str; 3] = ["cell_type", "generation", "perturbed"];
/// `obs` columns written after the extra columns: the snapshot's time on every row.
const TIME_OBS: [&str; 2] = ["time_min", "tick"];

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
    /// The cells' contact graph, written to `obsp` with `uns['spatial_neighbors']`; none
    /// leaves `obsp` empty.
    pub neighbours: Option<NeighbourGraph<'a>>,
    /// Gzip (deflate) level, 1 to 9, for the numeric datasets (`X`, `layers`, `obs`
    /// columns, `obsm`, `obsp`, fields); none writes them uncompressed.
    pub gzip: Option<u8>,
}

/// Every cell's neighbours, as compressed sparse rows over the snapshot's cells (rows and
/// column indices are positions in `cell_ids`): the neighbours of cell `i` are
/// `indices[offsets[i]..offsets[i + 1]]`.
///
/// The graph must be undirected (`j` in `i`'s list exactly when `i` is in `j`'s), have no
/// self loops, and list each row in strictly ascending order; [`write_h5ad`] checks this.
#[derive(Debug, Clone, Copy)]
pub struct NeighbourGraph<'a> {
    /// `N + 1` offsets into `indices`, from 0 to `indices.len()`.
    pub offsets: &'a [u32],
    /// The concatenated neighbour lists.
    pub indices: &'a [u32],
    /// The radius (µm, centre to centre) that defined a neighbour, recorded in
    /// `uns['spatial_neighbors']['params']['radius']`.
    pub radius: f32,
    /// Where the graph came from, recorded as `uns['spatial_neighbors']['params']['source']`.
    pub source: &'a str,
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
///   `perturbed`, then the snapshot's [`ObsColumn`]s, then float64 `time_min` and int64
///   `tick` (the same on every row, so that concatenated snapshots keep their time);
/// - `layers`: the snapshot's named matrices (float32 `N × G`);
/// - `var`: index = gene names;
/// - `obsm['spatial']`: float32 `N × dims` cell centres in µm;
/// - `obsp['spatial_connectivities']` (float32, 1 for every neighbour pair) and
///   `obsp['spatial_distances']` (float64, centre distance in µm over the `dims`
///   coordinates of `obsm['spatial']`) as CSR matrices when the snapshot has a [`NeighbourGraph`], with
///   `uns['spatial_neighbors']` = `connectivities_key`, `distances_key` and `params`
///   (`coord_type = "generic"`, `radius`, `source`): what
///   `squidpy.gr.spatial_neighbors` writes, so squidpy's graph functions use this graph
///   as it is (the distances are symmetric and the diagonal is absent, not zero);
/// - `uns['explant']`: `scene` (TOML text), `version`, `time_min`, `tick`;
/// - `uns['<column>_colors']` for `cell_type` and every categorical [`ObsColumn`]: one
///   `#rrggbb` per category in category order, the colours of the tissue pictures
///   ([`crate::CellColour::Category`], `tab10` cycled), which scanpy and squidpy plots use;
/// - `uns['fields']` and `uns['fields_grid']` when the snapshot has fields ([`FieldSnapshot`]);
/// - empty `varm` and `varp`, and `obsp` without a neighbour graph.
///
/// With [`Snapshot::gzip`] the numeric datasets are stored chunked and deflate-compressed
/// (what `anndata.write_h5ad(compression="gzip")` does); readers need nothing special.
///
/// The inputs are checked first (lengths, `dims`, cell type indices, unique names, no NUL
/// bytes in strings, the neighbour graph, the gzip level). The file is written to a temporary file beside `path` and renamed
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
        check_neighbours(path, snap)?;
        if let Some(level) = snap.gzip.filter(|l| !(1..=9).contains(l)) {
            return Err(IoError::BadGzipLevel { path: path.to_path_buf(), level });
        }
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
    let mut names: Vec<&str> = FIXED_OBS.to_vec();
    names.extend(TIME_OBS);
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

/// The neighbour graph, if any: `N + 1` offsets from 0 to the number of indices, never
/// decreasing; each row's indices within the cells, strictly ascending, never the row's own
/// cell; and every pair listed both ways.
fn check_neighbours(path: &Path, snap: &Snapshot<'_>) -> Result<(), IoError> {
    let Some(g) = &snap.neighbours else { return Ok(()) };
    let n_obs = snap.cell_ids.len();
    if g.offsets.len() != n_obs + 1 {
        return Err(mismatch(path, "neighbours.offsets", g.offsets.len(), n_obs + 1, "one per cell, plus one".into()));
    }
    let bad = |cell: usize, reason: String| IoError::BadNeighbours { path: path.to_path_buf(), cell, reason };
    if g.offsets[0] != 0 {
        return Err(bad(0, format!("the offsets start at `{}`, not 0", g.offsets[0])));
    }
    if g.offsets[n_obs] as usize != g.indices.len() {
        let last = g.offsets[n_obs];
        return Err(bad(n_obs, format!("the offsets end at `{last}` but there are {} indices", g.indices.len())));
    }
    if let Some(i) = g.offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(bad(i, format!("offsets decrease from `{}` to `{}`", g.offsets[i], g.offsets[i + 1])));
    }
    let row = |i: usize| &g.indices[g.offsets[i] as usize..g.offsets[i + 1] as usize];
    for i in 0..n_obs {
        let list = row(i);
        if let Some(&j) = list.iter().find(|&&j| j as usize >= n_obs) {
            return Err(bad(i, format!("neighbour `{j}` is not a cell (there are {n_obs})")));
        }
        if list.contains(&(i as u32)) {
            return Err(bad(i, "the cell is its own neighbour".into()));
        }
        if let Some(w) = list.windows(2).find(|w| w[1] <= w[0]) {
            return Err(bad(i, format!("neighbours `{}` then `{}` are not strictly ascending", w[0], w[1])));
        }
    }
    // Every row is now a sorted list of other cells, so it can be searched.
    for i in 0..n_obs {
        if let Some(&j) = row(i).iter().find(|&&j| row(j as usize).binary_search(&(i as u32)).is_err()) {
            return Err(bad(i, format!("neighbour `{j}` does not list this cell back")));
        }
    }
    if !(g.radius.is_finite() && g.radius > 0.0) {
        return Err(bad(0, format!("the radius `{}` is not a positive number", g.radius)));
    }
    to_h5_string(path, || "neighbours.source".to_owned(), g.source)?;
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
        let gz = snap.gzip;
        encoding(root, "anndata", "0.1.0")?;

        let x = dataset::<f32>(root, "X", &[p.n_obs, p.n_vars], gz)?;
        x.write_raw(snap.expression)?;
        encoding(&x, "array", "0.2.0")?;

        write_obs(root, snap, p)?;

        let var = new_group(root, "var")?;
        dataframe(&var, &p.genes, &[])?;

        let obsm = dict(root, "obsm")?;
        let spatial: Vec<f32> = snap.positions.iter().flat_map(|pos| pos[..snap.dims].iter().copied()).collect();
        let ds = dataset::<f32>(&obsm, "spatial", &[p.n_obs, snap.dims], gz)?;
        ds.write_raw(spatial.as_slice())?;
        encoding(&ds, "array", "0.2.0")?;

        let obsp = dict(root, "obsp")?;
        let uns = dict(root, "uns")?;
        if let Some(g) = &snap.neighbours {
            write_neighbours(&obsp, &uns, g, snap.positions, snap.dims, gz)?;
        }
        let explant = dict(&uns, "explant")?;
        scalar(&explant, "scene", &p.scene, "string")?;
        scalar(&explant, "version", &p.version, "string")?;
        scalar(&explant, "time_min", &snap.time_min, "numeric-scalar")?;
        scalar(&explant, "tick", &snap.tick, "numeric-scalar")?;
        write_colours(&uns, "cell_type", p.categories.len())?;
        for c in snap.extra_obs {
            if let ObsColumn::Category { name, categories, .. } = c {
                write_colours(&uns, name, categories.len())?;
            }
        }
        if let Some(f) = &snap.fields {
            write_fields(&uns, f, gz)?;
        }

        let layers = dict(root, "layers")?;
        for (name, values) in snap.layers {
            let ds = dataset::<f32>(&layers, name, &[p.n_obs, p.n_vars], gz)?;
            ds.write_raw(values)?;
            encoding(&ds, "array", "0.2.0")?;
        }
        for name in ["varm", "varp"] {
            dict(root, name)?;
        }
    }
    file.flush()?;
    file.close()
}

/// `obs`: the fixed columns, the snapshot's extra columns, then its time on every row.
fn write_obs(root: &Group, snap: &Snapshot<'_>, p: &Prepared) -> hdf5::Result<()> {
    let gz = snap.gzip;
    let obs = new_group(root, "obs")?;
    let mut columns = FIXED_OBS.to_vec();
    columns.extend(snap.extra_obs.iter().map(|c| c.name()));
    columns.extend(TIME_OBS);
    dataframe(&obs, &p.cell_ids, &columns)?;
    categorical(&obs, "cell_type", &p.categories, snap.cell_types, gz)?;
    array(&obs, "generation", snap.generations, gz)?;
    array(&obs, "perturbed", snap.perturbed, gz)?;
    for c in snap.extra_obs {
        match c {
            ObsColumn::Int { name, values } => array(&obs, name, values, gz)?,
            ObsColumn::Float { name, values } => array(&obs, name, values, gz)?,
            ObsColumn::Category { name, categories, codes } => {
                let cats = categories.iter().map(|c| h5_str(c)).collect::<hdf5::Result<Vec<_>>>()?;
                categorical(&obs, name, &cats, codes, gz)?;
            }
        }
    }
    // Ticks beyond `i64::MAX` would take 10^11 years of simulated time at a 1 ms step.
    let tick = i64::try_from(snap.tick).unwrap_or(i64::MAX);
    array(&obs, "time_min", &vec![snap.time_min; p.n_obs], gz)?;
    array(&obs, "tick", &vec![tick; p.n_obs], gz)
}

/// `uns['<column>_colors']`: the picture's colour of each of the column's `n` categories.
fn write_colours(uns: &Group, column: &str, n: usize) -> hdf5::Result<()> {
    let colours = (0..n).map(|k| h5_str(&colour::hex(colour::category(k as u32)))).collect::<hdf5::Result<Vec<_>>>()?;
    string_array(uns, &format!("{column}_colors"), &colours)
}

/// `obsp['spatial_connectivities']`, `obsp['spatial_distances']` and
/// `uns['spatial_neighbors']` from a checked neighbour graph.
fn write_neighbours(
    obsp: &Group,
    uns: &Group,
    g: &NeighbourGraph<'_>,
    positions: &[[f32; 3]],
    dims: usize,
    gz: Option<u8>,
) -> hdf5::Result<()> {
    let n = positions.len();
    let indptr: Vec<i64> = g.offsets.iter().map(|&o| i64::from(o)).collect();
    let indices: Vec<i64> = g.indices.iter().map(|&j| i64::from(j)).collect();
    let mut distances = Vec::with_capacity(g.indices.len());
    for i in 0..n {
        let a = positions[i];
        for &j in &g.indices[g.offsets[i] as usize..g.offsets[i + 1] as usize] {
            let b = positions[j as usize];
            distances.push((0..dims).map(|k| (f64::from(a[k]) - f64::from(b[k])).powi(2)).sum::<f64>().sqrt());
        }
    }
    csr(obsp, CONNECTIVITIES_KEY, n, &vec![1.0_f32; g.indices.len()], &indices, &indptr, gz)?;
    csr(obsp, DISTANCES_KEY, n, &distances, &indices, &indptr, gz)?;

    let neighbours = dict(uns, "spatial_neighbors")?;
    scalar(&neighbours, "connectivities_key", &h5_str(CONNECTIVITIES_KEY)?, "string")?;
    scalar(&neighbours, "distances_key", &h5_str(DISTANCES_KEY)?, "string")?;
    let params = dict(&neighbours, "params")?;
    scalar(&params, "coord_type", &h5_str("generic")?, "string")?;
    scalar(&params, "radius", &f64::from(g.radius), "numeric-scalar")?;
    scalar(&params, "source", &h5_str(g.source)?, "string")
}

/// A square `n × n` sparse matrix in the AnnData CSR encoding.
fn csr<T: hdf5::H5Type>(
    parent: &Group,
    name: &str,
    n: usize,
    data: &[T],
    indices: &[i64],
    indptr: &[i64],
    gz: Option<u8>,
) -> hdf5::Result<()> {
    let g = new_group(parent, name)?;
    encoding(&g, "csr_matrix", "0.1.0")?;
    // An `n` that does not fit an i64 cannot have been allocated.
    let side = i64::try_from(n).unwrap_or(i64::MAX);
    g.new_attr::<i64>().shape(2).create("shape")?.write_raw(&[side, side])?;
    array(&g, "data", data, gz)?;
    array(&g, "indices", indices, gz)?;
    array(&g, "indptr", indptr, gz)
}

fn write_fields(uns: &Group, f: &FieldSnapshot<'_>, gz: Option<u8>) -> hdf5::Result<()> {
    let g = f.grid;
    let shape: Vec<usize> = if g.nz == 1 { vec![g.ny, g.nx] } else { vec![g.nz, g.ny, g.nx] };
    let fields = dict(uns, "fields")?;
    let voxels = g.voxels();
    for (c, name) in f.names.iter().enumerate() {
        let ds = dataset::<f32>(&fields, name, &shape, gz)?;
        ds.write_raw(&f.data[c * voxels..(c + 1) * voxels])?;
        encoding(&ds, "array", "0.2.0")?;
    }
    let grid = dict(uns, "fields_grid")?;
    array(&grid, "origin", &g.origin, None)?;
    scalar(&grid, "spacing", &g.dx, "numeric-scalar")?;
    let shape_i64: Vec<i64> = shape.iter().map(|&v| v as i64).collect();
    array(&grid, "shape", &shape_i64, None)
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

/// A new dataset of `T` and `shape`, chunked and deflate-compressed at `gzip` when given
/// (an empty dataset stays uncompressed: HDF5 cannot chunk a zero extent).
fn dataset<T: hdf5::H5Type>(parent: &Group, name: &str, shape: &[usize], gzip: Option<u8>) -> hdf5::Result<Dataset> {
    let builder = parent.new_dataset::<T>().obj_track_times(false);
    match gzip {
        Some(level) if shape.iter().all(|&d| d > 0) => builder.deflate(level).shape(shape).create(name),
        _ => builder.shape(shape).create(name),
    }
}

/// A 1-D numeric dataset with the `array` encoding, compressed at `gzip` when given.
fn array<T: hdf5::H5Type>(parent: &Group, name: &str, data: &[T], gzip: Option<u8>) -> hdf5::Result<()> {
    let ds = dataset::<T>(parent, name, &[data.len()], gzip)?;
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
fn categorical(
    parent: &Group,
    name: &str,
    categories: &[VarLenUnicode],
    codes: &[u32],
    gz: Option<u8>,
) -> hdf5::Result<()> {
    let g = new_group(parent, name)?;
    encoding(&g, "categorical", "0.2.0")?;
    g.new_attr::<bool>().create("ordered")?.write_scalar(&false)?;
    string_array(&g, "categories", categories)?;
    // Every code is below `categories.len()` (checked before writing), so the casts are exact.
    let n = categories.len();
    if n < i8::MAX as usize {
        let c: Vec<i8> = codes.iter().map(|&c| c as i8).collect();
        array(&g, "codes", &c, gz)
    } else if n < i16::MAX as usize {
        let c: Vec<i16> = codes.iter().map(|&c| c as i16).collect();
        array(&g, "codes", &c, gz)
    } else if n < i32::MAX as usize {
        let c: Vec<i32> = codes.iter().map(|&c| c as i32).collect();
        array(&g, "codes", &c, gz)
    } else {
        let c: Vec<i64> = codes.iter().map(|&c| i64::from(c)).collect();
        array(&g, "codes", &c, gz)
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
                ObsColumn::Int { name, values } => array(&obs, name, values, None)?,
                ObsColumn::Float { name, values } => array(&obs, name, values, None)?,
                ObsColumn::Category { name, categories, codes } => {
                    let cats = categories.iter().map(|c| h5_str(c)).collect::<hdf5::Result<Vec<_>>>()?;
                    categorical(&obs, name, &cats, codes, None)?;
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
