//! Import of an initial tissue from an AnnData (`.h5ad`) file, read by hand with the HDF5
//! library for the same reasons the snapshots are written that way (see the crate docs).
//!
//! Two on-disk layouts are read (<https://anndata.readthedocs.io/en/latest/fileformat-prose.html>):
//! - the current one (anndata 0.8 and later): every element carries `encoding-type`,
//!   categoricals are groups with `categories` and `codes`, sparse matrices are groups
//!   tagged `csr_matrix` / `csc_matrix` with a `shape` attribute;
//! - the older one of anndata 0.7 (no root `encoding-type`, as in many published files):
//!   categories of `obs/<col>` live in `obs/__categories/<col>`, sparse matrices are tagged
//!   with `h5sparse_format` / `h5sparse_shape`, strings may be fixed-length ASCII.
//!
//! The AnnData 0.6 layout, with `obs` and `var` as compound-typed datasets, is refused with
//! an error that says so.
//!
//! Only what the import needs is read: the `obs` and `var` indices, the requested genes'
//! columns of `X`, the coordinates and the cell type column. A dense `X` is read in blocks
//! of rows (a few million values at a time) and a CSR matrix in blocks of stored entries,
//! so memory stays bounded by the output, not by the file; a CSC matrix is read one
//! requested gene at a time.
//!
//! [`read_snapshot`] reads a run's own output back whole, for redrawing: every gene of `X`,
//! `layers['control']`, the optional `obs` columns explant writes, `uns['fields']` on the
//! grid of `uns['fields_grid']` and `uns['explant']`. Unlike the import it keeps NaN and
//! infinite values (a run that failed on one still wrote it), and takes 2 or 3 dimensions
//! from the shape of `obsm['spatial']`.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Container, Dataset, Group, Location, LocationType, ObjectReference1, ReferencedObject};

use crate::IoError;

/// How many matrix values are read from the file at a time (tiny in unit tests, so that
/// small matrices exercise reading in several blocks).
const BLOCK_VALUES: usize = if cfg!(test) { 5 } else { 1 << 22 };

/// Where in the file the cell positions are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coordinates {
    /// An `N × k` numeric array in `obsm` with `k ≥ dims`, e.g. `"spatial"` (as written by
    /// squidpy, scanpy's Visium reader and explant itself); its first `dims` columns are used.
    Obsm(String),
    /// One numeric `obs` column per axis, exactly `dims` of them, e.g. `["x", "y"]`, or the
    /// array coordinates `["row", "col"]` of Spatial Transcriptomics files.
    ObsColumns(Vec<String>),
}

/// What [`read_tissue`] should take from the file.
#[derive(Debug, Clone)]
pub struct ImportRequest<'a> {
    /// Where the cell positions are.
    pub coordinates: Coordinates,
    /// The `obs` column that names each cell's type (categorical, strings or integers), or
    /// `None` to read no types.
    pub cell_type_column: Option<String>,
    /// The genes to read expression for, in the order wanted in
    /// [`ImportedTissue::expression`]. Each is looked up in `var_names` by exact name, then
    /// ignoring case; genes not found read as 0 and are flagged in [`ImportedTissue::matched`].
    pub genes: &'a [String],
    /// 2 or 3: how many coordinates each position has.
    pub dims: usize,
}

/// A tissue read by [`read_tissue`]: `cells` rows, in the file's `obs` order.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedTissue {
    /// Number of cells (rows of `obs`).
    pub cells: usize,
    /// Cell positions in the file's units; `z` is 0 when `dims` is 2.
    pub positions: Vec<[f32; 3]>,
    /// Each cell's type, when a cell type column was requested.
    pub cell_types: Option<Vec<String>>,
    /// Expression, `cells × genes.len()`, row-major (one row per cell), in the order of
    /// [`ImportRequest::genes`]; 0 for genes not found in the file. Integer counts are
    /// converted to `f32`; duplicate entries of a sparse row are summed (as `scipy` does).
    pub expression: Vec<f32>,
    /// For each requested gene, whether it was found in `var_names`.
    pub matched: Vec<bool>,
    /// The cells' names (the `obs` index).
    pub obs_names: Vec<String>,
}

/// Read an initial tissue from the AnnData file at `path`.
///
/// The file's `obs` index gives the cells; positions, expression of the requested genes
/// and (optionally) cell types are read as described by `req`. `X` may be dense (any float
/// or integer type) or sparse (CSR or CSC). Genes are matched to `var_names` by exact name
/// first, then ignoring case (the first such `var` entry wins).
///
/// # Errors
///
/// An [`IoError`] naming the file, and where it applies the HDF5 field and the offending
/// value or row, when the file cannot be opened or is not HDF5, a needed field is missing
/// or has the wrong type or shape, a coordinate or expression value is not finite, a cell
/// has no type (categorical code `-1`), or `req` is unusable (`dims` not 2 or 3, or a
/// number of coordinate columns other than `dims`).
pub fn read_tissue(path: &Path, req: &ImportRequest<'_>) -> Result<ImportedTissue, IoError> {
    check_request(path, req)?;
    let file = H5ad::open(path)?;
    let obs = file.frame("obs")?;
    let var = file.frame("var")?;
    let columns = match_genes(&var.index, req.genes);
    let expression = file.expression(&obs, &var, &columns, true)?;
    let positions = file.positions(&obs, req)?;
    let cell_types = req.cell_type_column.as_deref().map(|col| file.cell_types(&obs, col)).transpose()?;
    Ok(ImportedTissue {
        cells: obs.index.len(),
        positions,
        cell_types,
        expression,
        matched: columns.iter().map(Option::is_some).collect(),
        obs_names: obs.index,
    })
}

/// The gene names (`var` index) of the AnnData file at `path`, in file order: what
/// `explant learn` chooses its gene panel from before reading any expression.
///
/// # Errors
///
/// As [`read_tissue`], when the file or its `var` frame cannot be read.
pub fn read_var_names(path: &Path) -> Result<Vec<String>, IoError> {
    let file = H5ad::open(path)?;
    Ok(file.frame("var")?.index)
}

/// One snapshot of a run read back whole by [`read_snapshot`]: `cells` rows (the file's
/// `obs` order) by `genes.len()` columns.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    /// Number of cells (rows of `obs`).
    pub cells: usize,
    /// The cells' names (the `obs` index; explant writes the cell ids).
    pub obs_names: Vec<String>,
    /// Every gene, in the file's `var` order.
    pub genes: Vec<String>,
    /// Expression of every gene, `cells × genes.len()`, row-major. NaN and infinities are
    /// kept as they are (a failed run may have written them).
    pub expression: Vec<f32>,
    /// 2 or 3: the number of columns of `obsm['spatial']`.
    pub dims: usize,
    /// Cell centres in the file's units (µm for explant runs); `z` is 0 when `dims` is 2.
    /// Non-finite coordinates are kept.
    pub positions: Vec<[f32; 3]>,
    /// The cell type categories, in the file's order (for a plain string column: in order
    /// of first appearance).
    pub cell_type_names: Vec<String>,
    /// Each cell's type, an index into `cell_type_names`.
    pub cell_types: Vec<u32>,
    /// `obs['radius']` (µm), when the file has it.
    pub radii: Option<Vec<f32>>,
    /// `obs['distance_to_perturbation']` (µm, NaN where undefined), when the file has it.
    pub distance_to_perturbation: Option<Vec<f32>>,
    /// `layers['control']`, the paired control's expression (`cells × genes.len()`), when
    /// the file has it.
    pub control: Option<Vec<f32>>,
    /// The ligand fields of `uns['fields']` on the grid of `uns['fields_grid']`, when the
    /// file has them.
    pub fields: Option<SnapshotFields>,
    /// `uns['explant']['tick']`, when the file has it.
    pub tick: Option<u64>,
    /// `uns['explant']['time_min']`, when the file has it.
    pub time_min: Option<f64>,
    /// `uns['explant']['scene']`, the scene's TOML text, when the file has it.
    pub scene_toml: Option<String>,
}

impl RunSnapshot {
    /// The expression of gene column `gene` in every cell (from `expression`, or from the
    /// control's layer), or `None` past the last gene.
    pub fn gene_values(&self, gene: usize, control: bool) -> Option<Vec<f32>> {
        let g = self.genes.len();
        let x = if control { self.control.as_deref()? } else { &self.expression };
        (gene < g).then(|| (0..self.cells).map(|i| x[i * g + gene]).collect())
    }
}

/// Ligand fields read back from a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotFields {
    /// Ligand names, one per channel, in the order HDF5 lists them (by name).
    pub names: Vec<String>,
    /// The grid they live on (`nz == 1` for a 2D field).
    pub grid: explant_field::Grid,
    /// Channel-major values, `names.len() × nz × ny × nx`, `x` fastest.
    pub data: Vec<f32>,
}

impl SnapshotFields {
    /// The values of ligand `name`, if there is one by that name.
    pub fn channel(&self, name: &str) -> Option<&[f32]> {
        let c = self.names.iter().position(|n| n == name)?;
        let v = self.grid.voxels();
        self.data.get(c * v..(c + 1) * v)
    }
}

/// Read a snapshot written by `explant run` (`tissue.h5ad` or `snapshots/tick_*.h5ad`)
/// back whole; any AnnData file with a dense `X`, `obsm['spatial']` and a cell type
/// column `obs['cell_type']` reads too (`X` may also be sparse).
///
/// # Errors
///
/// An [`IoError`] naming the file and the HDF5 field at fault when the file cannot be
/// opened or is not HDF5; `X`, `obsm/spatial` or `obs/cell_type` is missing; or a field
/// has the wrong type or shape: `obsm/spatial` not `N × 2` or `N × 3`, `layers/control`
/// not a dense `N × G` matrix, an optional `obs` column not numeric, a field's array not
/// of the shape `uns/fields_grid/shape` gives.
pub fn read_snapshot(path: &Path) -> Result<RunSnapshot, IoError> {
    let file = H5ad::open(path)?;
    let obs = file.frame("obs")?;
    let var = file.frame("var")?;
    let all: Vec<Option<usize>> = (0..var.index.len()).map(Some).collect();
    let expression = file.expression(&obs, &var, &all, false)?;
    let (dims, positions) = file.spatial(&obs)?;
    let (cell_type_names, cell_types) = file.categories(&obs, "cell_type")?;
    let optional = |col: &str| -> Result<Option<Vec<f32>>, IoError> {
        if !obs.group.link_exists(col) {
            return Ok(None);
        }
        Ok(Some(file.numeric_column(&obs, col)?.into_iter().map(|v| v as f32).collect()))
    };
    let radii = optional("radius")?;
    let distance_to_perturbation = optional("distance_to_perturbation")?;
    let control = file.layer(&obs, &var, "control", &all)?;
    let fields = file.fields()?;
    let ExplantUns { tick, time_min, scene: scene_toml } = file.explant_uns()?;
    Ok(RunSnapshot {
        cells: obs.index.len(),
        obs_names: obs.index.clone(),
        genes: var.index.clone(),
        expression,
        dims,
        positions,
        cell_type_names,
        cell_types,
        radii,
        distance_to_perturbation,
        control,
        fields,
        tick,
        time_min,
        scene_toml,
    })
}

fn check_request(path: &Path, req: &ImportRequest<'_>) -> Result<(), IoError> {
    let bad = |reason: String| Err(IoError::BadRequest { path: path.to_path_buf(), reason });
    if !matches!(req.dims, 2 | 3) {
        return bad(format!("`dims` is `{}`, it must be 2 or 3", req.dims));
    }
    if let Coordinates::ObsColumns(cols) = &req.coordinates
        && cols.len() != req.dims
    {
        let names: Vec<String> = cols.iter().map(|c| format!("`{c}`")).collect();
        return bad(format!(
            "`dims = {}` needs {} coordinate columns but {} were given ({})",
            req.dims,
            req.dims,
            cols.len(),
            names.join(", ")
        ));
    }
    Ok(())
}

/// For each requested gene, its column in `var`: exact name first, then ignoring case.
fn match_genes(var_names: &[String], genes: &[String]) -> Vec<Option<usize>> {
    let mut exact = HashMap::with_capacity(var_names.len());
    let mut folded = HashMap::with_capacity(var_names.len());
    for (i, name) in var_names.iter().enumerate() {
        exact.entry(name.as_str()).or_insert(i);
        folded.entry(name.to_lowercase()).or_insert(i);
    }
    genes.iter().map(|g| exact.get(g.as_str()).or_else(|| folded.get(&g.to_lowercase())).copied()).collect()
}

/// A member of a group.
enum Node {
    Group(Group),
    Dataset(Dataset),
}

/// A data frame (`obs` or `var`): its group and its index.
struct Frame {
    name: &'static str,
    group: Group,
    index: Vec<String>,
}

/// An open file and its path, for error messages.
struct H5ad<'p> {
    path: &'p Path,
    file: hdf5::File,
}

impl<'p> H5ad<'p> {
    fn open(path: &'p Path) -> Result<Self, IoError> {
        let read_err = |source| IoError::Read { path: path.to_path_buf(), source };
        let meta = fs::metadata(path).map_err(read_err)?;
        if meta.is_dir() {
            return Err(read_err(std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a directory")));
        }
        let mut f = fs::File::open(path).map_err(read_err)?;
        if !has_hdf5_signature(&mut f, meta.len()).map_err(read_err)? {
            return Err(IoError::NotHdf5 { path: path.to_path_buf() });
        }
        let file = hdf5::File::open(path).map_err(|source| IoError::ReadHdf5 {
            path: path.to_path_buf(),
            field: "/".to_owned(),
            source,
        })?;
        Ok(Self { path, file })
    }

    // ---- errors --------------------------------------------------------------------------

    fn h5<T>(&self, field: &str, result: hdf5::Result<T>) -> Result<T, IoError> {
        result.map_err(|source| IoError::ReadHdf5 { path: self.path.to_path_buf(), field: field.to_owned(), source })
    }

    fn bad_field(&self, field: &str, found: impl Into<String>, expected: impl Into<String>) -> IoError {
        IoError::BadField {
            path: self.path.to_path_buf(),
            field: field.to_owned(),
            found: found.into(),
            expected: expected.into(),
        }
    }

    /// `field` is not in `parent`; list what is there instead, less the names in `skip`.
    fn missing(&self, field: &str, parent: &Group, skip: &[&str]) -> IoError {
        let mut available = parent.member_names().unwrap_or_default();
        available.retain(|n| !skip.contains(&n.as_str()));
        IoError::MissingField { path: self.path.to_path_buf(), field: field.to_owned(), available }
    }

    fn bad_value(&self, field: &str, row: usize, obs: &Frame, value: String, why: String) -> IoError {
        IoError::BadValue {
            path: self.path.to_path_buf(),
            field: field.to_owned(),
            row,
            obs_name: obs.index.get(row).cloned().unwrap_or_default(),
            value,
            why: why.into_boxed_str(),
        }
    }

    // ---- structure -----------------------------------------------------------------------

    /// The member `name` of `parent` (whose field path is `parent_field`), if there is one.
    fn member(&self, parent: &Group, parent_field: &str, name: &str) -> Result<Option<Node>, IoError> {
        let field = join(parent_field, name);
        if !parent.link_exists(name) {
            return Ok(None);
        }
        match self.h5(&field, parent.loc_type_by_name(name))? {
            LocationType::Group => Ok(Some(Node::Group(self.h5(&field, parent.group(name))?))),
            LocationType::Dataset => Ok(Some(Node::Dataset(self.h5(&field, parent.dataset(name))?))),
            other => Err(self.bad_field(&field, format!("an object of type `{other:?}`"), "a group or a dataset")),
        }
    }

    /// The dataset `name` of `parent`; `what` says what it should be, for the error.
    fn dataset(&self, parent: &Group, parent_field: &str, name: &str, what: &str) -> Result<Dataset, IoError> {
        let field = join(parent_field, name);
        match self.member(parent, parent_field, name)? {
            Some(Node::Dataset(ds)) => Ok(ds),
            Some(Node::Group(g)) => Err(self.bad_field(&field, self.describe_group(&g, &field)?, what)),
            None => Err(self.missing(&field, parent, &[])),
        }
    }

    /// `a group` or `a group with encoding `categorical``, for messages.
    fn describe_group(&self, g: &Group, field: &str) -> Result<String, IoError> {
        Ok(match self.attr_string(g, field, "encoding-type")? {
            Some(enc) => format!("a group with encoding `{enc}`"),
            None => "a group".to_owned(),
        })
    }

    /// The root group `obs` or `var` and its index.
    fn frame(&self, name: &'static str) -> Result<Frame, IoError> {
        let group = match self.member(&self.file, "", name)? {
            Some(Node::Group(g)) => g,
            Some(Node::Dataset(_)) => {
                return Err(self.bad_field(
                    name,
                    "a dataset (the AnnData 0.6 layout, with a compound-typed data frame)",
                    "a data frame group (AnnData 0.7 or later; re-save the file with a recent `anndata`)",
                ));
            }
            None => return Err(self.missing(name, &self.file, &[])),
        };
        let index_name = self.attr_string(&group, name, "_index")?.unwrap_or_else(|| "_index".to_owned());
        let field = join(name, &index_name);
        let ds = self.dataset(&group, name, &index_name, "a 1-D array of strings (the index)")?;
        self.vector_len(&ds, &field, None)?;
        let index = self.strings(&ds, &field)?;
        Ok(Frame { name, group, index })
    }

    /// The first value of the string attribute `name` of `loc`, if it has one.
    fn attr_string(&self, loc: &Location, field: &str, name: &str) -> Result<Option<String>, IoError> {
        let attr_field = format!("{field}.attrs['{name}']");
        let names = self.h5(&attr_field, loc.attr_names())?;
        if !names.iter().any(|n| n == name) {
            return Ok(None);
        }
        let attr = self.h5(&attr_field, loc.attr(name))?;
        Ok(self.strings(&attr, &attr_field)?.into_iter().next())
    }

    /// The integer attribute `name` of `loc`, if it has one.
    fn attr_integers(&self, loc: &Location, field: &str, name: &str) -> Result<Option<Vec<i64>>, IoError> {
        let attr_field = format!("{field}.attrs['{name}']");
        let names = self.h5(&attr_field, loc.attr_names())?;
        if !names.iter().any(|n| n == name) {
            return Ok(None);
        }
        let attr = self.h5(&attr_field, loc.attr(name))?;
        self.integers(&attr, &attr_field).map(Some)
    }

    // ---- values --------------------------------------------------------------------------

    fn descriptor(&self, c: &Container, field: &str) -> Result<TypeDescriptor, IoError> {
        self.h5(field, c.dtype().and_then(|t| t.to_descriptor()))
    }

    fn shape(&self, c: &Container, field: &str) -> Result<Vec<usize>, IoError> {
        self.h5(field, c.get_shape())
    }

    /// Check that `ds` is 1-D (with `len` entries, one per cell, if given); return its length.
    fn vector_len(&self, ds: &Dataset, field: &str, len: Option<usize>) -> Result<usize, IoError> {
        let shape = self.shape(ds, field)?;
        match (shape.as_slice(), len) {
            (&[n], None) => Ok(n),
            (&[n], Some(want)) if n == want => Ok(n),
            (_, None) => Err(self.bad_field(field, format!("an array of shape {}", shape_text(&shape)), "a 1-D array")),
            (_, Some(want)) => Err(self.bad_field(
                field,
                format!("an array of shape {}", shape_text(&shape)),
                format!("a 1-D array of {want} entries (one per cell in `obs`)"),
            )),
        }
    }

    /// Strings of any HDF5 string type (variable or fixed length, ASCII or UTF-8).
    fn strings(&self, c: &Container, field: &str) -> Result<Vec<String>, IoError> {
        let td = self.descriptor(c, field)?;
        match td {
            TypeDescriptor::VarLenUnicode => {
                Ok(self.h5(field, c.read_raw::<VarLenUnicode>())?.iter().map(|s| text(s.as_bytes())).collect())
            }
            TypeDescriptor::VarLenAscii => {
                Ok(self.h5(field, c.read_raw::<VarLenAscii>())?.iter().map(|s| text(s.as_bytes())).collect())
            }
            TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
                let unicode = matches!(td, TypeDescriptor::FixedUnicode(_));
                match read_fixed(c, n, unicode) {
                    Some(result) => self.h5(field, result),
                    None => Err(self.bad_field(
                        field,
                        format!("an array of {n}-byte fixed-length strings"),
                        format!("strings of at most {} bytes", FIXED_SIZES[FIXED_SIZES.len() - 1]),
                    )),
                }
            }
            other => Err(self.bad_field(field, format!("an array of `{other}`"), "an array of strings")),
        }
    }

    fn integers(&self, c: &Container, field: &str) -> Result<Vec<i64>, IoError> {
        let td = self.descriptor(c, field)?;
        if !matches!(td, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) {
            return Err(self.bad_field(field, format!("an array of `{td}`"), "an array of integers"));
        }
        self.h5(field, c.read_raw::<i64>())
    }

    /// Check that `c` holds numbers (integers or floats), e.g. before reading it as `f64`.
    fn check_numeric(&self, c: &Container, field: &str, shape: &[usize], expected: &str) -> Result<(), IoError> {
        let td = self.descriptor(c, field)?;
        if is_numeric(&td) {
            Ok(())
        } else {
            Err(self.bad_field(field, format!("a `{td}` array of shape {}", shape_text(shape)), expected))
        }
    }

    /// Labels of categories or of a plain column: strings, integers, floats or booleans,
    /// as text (`3`, `0.5`, `True`).
    fn labels(&self, c: &Container, field: &str, allow_float: bool) -> Result<Vec<String>, IoError> {
        match self.descriptor(c, field)? {
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
                Ok(self.integers(c, field)?.iter().map(i64::to_string).collect())
            }
            TypeDescriptor::Float(_) if allow_float => {
                Ok(self.h5(field, c.read_raw::<f64>())?.iter().map(f64::to_string).collect())
            }
            TypeDescriptor::Boolean => Ok(self
                .h5(field, c.read_raw::<bool>())?
                .iter()
                .map(|&b| if b { "True" } else { "False" }.to_owned())
                .collect()),
            TypeDescriptor::FixedAscii(_)
            | TypeDescriptor::FixedUnicode(_)
            | TypeDescriptor::VarLenAscii
            | TypeDescriptor::VarLenUnicode => self.strings(c, field),
            other => Err(self.bad_field(
                field,
                format!("an array of `{other}`"),
                "a categorical column, or an array of strings or integers",
            )),
        }
    }

    // ---- expression ----------------------------------------------------------------------

    /// The expression of the requested genes (`columns[j]` is gene `j`'s column in `var`).
    /// `finite`: refuse NaN and infinities (an initial tissue) or keep them (a run's output,
    /// which may hold the NaN that stopped it).
    fn expression(
        &self,
        obs: &Frame,
        var: &Frame,
        columns: &[Option<usize>],
        finite: bool,
    ) -> Result<Vec<f32>, IoError> {
        let (n_obs, genes) = (obs.index.len(), columns.len());
        let total = n_obs.checked_mul(genes).ok_or_else(|| IoError::BadRequest {
            path: self.path.to_path_buf(),
            reason: format!("{n_obs} cells × {genes} genes is too many values"),
        })?;
        let mut out = vec![0.0f32; total];
        if genes == 0 {
            // Nothing is read from `X`, which may even be absent.
            return Ok(out);
        }
        let m = Matrix { field: "X", obs, var, columns, genes, finite };
        match self.member(&self.file, "", "X")? {
            None => return Err(self.missing("X", &self.file, &[])),
            Some(Node::Dataset(ds)) => self.dense_x(&ds, &m, &mut out)?,
            Some(Node::Group(g)) => self.sparse_x(&g, &m, &mut out)?,
        }
        Ok(out)
    }

    fn check_shape_x(&self, field: &str, shape: &[usize], m: &Matrix<'_>) -> Result<(), IoError> {
        let (n_obs, n_vars) = (m.obs.index.len(), m.var.index.len());
        if shape == [n_obs, n_vars] {
            Ok(())
        } else {
            Err(self.bad_field(
                field,
                format!("a matrix of shape {}", shape_text(shape)),
                format!("shape ({n_obs}, {n_vars}) (the lengths of the `obs` and `var` indices)"),
            ))
        }
    }

    fn dense_x(&self, ds: &Dataset, m: &Matrix<'_>, out: &mut [f32]) -> Result<(), IoError> {
        let shape = self.shape(ds, m.field)?;
        self.check_numeric(ds, m.field, &shape, "a numeric matrix")?;
        self.check_shape_x(m.field, &shape, m)?;
        let wanted: Vec<(usize, usize)> = m.columns.iter().enumerate().filter_map(|(j, c)| c.map(|c| (j, c))).collect();
        let (Some(first), Some(last)) = (wanted.iter().map(|&(_, c)| c).min(), wanted.iter().map(|&(_, c)| c).max())
        else {
            return Ok(());
        };
        // Read only the span of columns that holds the requested genes, a block of rows at a time.
        let width = last - first + 1;
        let rows_per_block = (BLOCK_VALUES / width).max(1);
        let n_obs = m.obs.index.len();
        let mut r0 = 0;
        while r0 < n_obs {
            let r1 = (r0 + rows_per_block).min(n_obs);
            let block = self.h5(m.field, ds.read_slice_2d::<f32, _>((r0..r1, first..last + 1)))?;
            for r in r0..r1 {
                for &(j, c) in &wanted {
                    let v = block[[r - r0, c - first]];
                    out[r * m.genes + j] = self.check_expression(m.field, m, r, c, v)?;
                }
            }
            r0 = r1;
        }
        Ok(())
    }

    fn check_expression(&self, field: &str, m: &Matrix<'_>, row: usize, col: usize, v: f32) -> Result<f32, IoError> {
        if v.is_finite() || !m.finite {
            return Ok(v);
        }
        let gene = m.var.index.get(col).map_or("", String::as_str);
        let why = format!("the expression of gene `{gene}` must be finite (as float32)");
        Err(self.bad_value(field, row, m.obs, v.to_string(), why))
    }

    fn sparse_x(&self, g: &Group, m: &Matrix<'_>, out: &mut [f32]) -> Result<(), IoError> {
        let encoding = match self.attr_string(g, "X", "encoding-type")? {
            Some(enc) => Some(enc),
            None => self.attr_string(g, "X", "h5sparse_format")?,
        };
        let csr = match encoding.as_deref() {
            Some("csr_matrix" | "csr") => true,
            Some("csc_matrix" | "csc") => false,
            Some(other) => {
                return Err(self.bad_field(
                    "X",
                    format!("a group with encoding `{other}`"),
                    "a dense array or a `csr_matrix` or `csc_matrix` group",
                ));
            }
            None => {
                return Err(self.bad_field(
                    "X",
                    "a group without an `encoding-type` attribute",
                    "a dense array or a `csr_matrix` or `csc_matrix` group",
                ));
            }
        };
        let shape = match self.attr_integers(g, "X", "shape")? {
            Some(s) => s,
            None => self
                .attr_integers(g, "X", "h5sparse_shape")?
                .ok_or_else(|| self.bad_field("X", "a sparse matrix without a `shape` attribute", "its shape"))?,
        };
        let shape: Vec<usize> = shape.iter().map(|&v| usize::try_from(v).unwrap_or(usize::MAX)).collect();
        self.check_shape_x("X.attrs['shape']", &shape, m)?;

        let data = self.dataset(g, "X", "data", "a 1-D numeric array")?;
        let indices = self.dataset(g, "X", "indices", "a 1-D integer array")?;
        let indptr_ds = self.dataset(g, "X", "indptr", "a 1-D integer array")?;
        let nnz = self.vector_len(&data, "X/data", None)?;
        self.check_numeric(&data, "X/data", &[nnz], "a numeric array")?;
        self.vector_len(&indices, "X/indices", Some(nnz)).map_err(|_| {
            let len = self.shape(&indices, "X/indices").unwrap_or_default();
            self.bad_field(
                "X/indices",
                format!("an array of shape {}", shape_text(&len)),
                format!("as many entries as `X/data` ({nnz})"),
            )
        })?;
        let td = self.descriptor(&indices, "X/indices")?;
        if !matches!(td, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) {
            return Err(self.bad_field("X/indices", format!("an array of `{td}`"), "an array of integers"));
        }
        let (n_obs, n_vars) = (m.obs.index.len(), m.var.index.len());
        let (major, minor) = if csr { (n_obs, n_vars) } else { (n_vars, n_obs) };
        let minor_name = if csr { "columns" } else { "rows" };
        let s = Sparse { data, indices, indptr: self.indptr(&indptr_ds, major, nnz)?, minor, minor_name };
        if csr { self.csr_x(&s, m, out) } else { self.csc_x(&s, m, out) }
    }

    /// The index pointer of a sparse matrix with `major` rows (CSR) or columns (CSC),
    /// checked: `major + 1` entries, non-decreasing, within `0..=nnz`.
    fn indptr(&self, ds: &Dataset, major: usize, nnz: usize) -> Result<Vec<usize>, IoError> {
        const FIELD: &str = "X/indptr";
        self.vector_len(ds, FIELD, None)?;
        let raw = self.integers(ds, FIELD)?;
        if raw.len() != major + 1 {
            return Err(self.bad_field(
                FIELD,
                format!("an array of {} entries", raw.len()),
                format!("{} entries (one more than the {major} rows or columns it indexes)", major + 1),
            ));
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut prev = 0usize;
        for (i, &v) in raw.iter().enumerate() {
            let p = usize::try_from(v).ok().filter(|&p| p <= nnz && p >= prev).ok_or_else(|| {
                self.bad_field(
                    FIELD,
                    format!("`{v}` at entry {i}"),
                    format!(
                        "a value in `{prev}..={nnz}` (not below the previous entry nor above the {nnz} stored values)"
                    ),
                )
            })?;
            out.push(p);
            prev = p;
        }
        Ok(out)
    }

    /// Read stored entries `a..b` of a sparse matrix: values and minor indices.
    fn entries(&self, s: &Sparse, a: usize, b: usize) -> Result<(Vec<f32>, Vec<i64>), IoError> {
        let data = self.h5("X/data", s.data.read_slice_1d::<f32, _>(a..b))?.to_vec();
        let indices = self.h5("X/indices", s.indices.read_slice_1d::<i64, _>(a..b))?.to_vec();
        Ok((data, indices))
    }

    /// A minor index (column in CSR, row in CSC) read from `X/indices`, checked.
    fn minor_index(&self, s: &Sparse, k: usize, v: i64) -> Result<usize, IoError> {
        usize::try_from(v).ok().filter(|&i| i < s.minor).ok_or_else(|| {
            self.bad_field(
                "X/indices",
                format!("`{v}` at entry {k}"),
                format!("an index below {}, the number of {}", s.minor, s.minor_name),
            )
        })
    }

    fn csr_x(&self, s: &Sparse, m: &Matrix<'_>, out: &mut [f32]) -> Result<(), IoError> {
        let n_obs = m.obs.index.len();
        let mut targets: Vec<Vec<usize>> = vec![Vec::new(); m.var.index.len()];
        for (j, c) in m.columns.iter().enumerate() {
            if let Some(c) = *c {
                targets[c].push(j);
            }
        }
        if targets.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let mut row = 0;
        while row < n_obs {
            // As many whole rows as fit in one block (at least one).
            let start = s.indptr[row];
            let mut end = row + 1;
            while end < n_obs && s.indptr[end + 1] - start <= BLOCK_VALUES {
                end += 1;
            }
            let (a, b) = (start, s.indptr[end]);
            let (data, indices) = self.entries(s, a, b)?;
            for r in row..end {
                for k in s.indptr[r]..s.indptr[r + 1] {
                    let col = self.minor_index(s, k, indices[k - a])?;
                    for &j in &targets[col] {
                        let v = self.check_expression("X/data", m, r, col, data[k - a])?;
                        out[r * m.genes + j] += v;
                    }
                }
            }
            row = end;
        }
        Ok(())
    }

    fn csc_x(&self, s: &Sparse, m: &Matrix<'_>, out: &mut [f32]) -> Result<(), IoError> {
        for (j, c) in m.columns.iter().enumerate() {
            let Some(col) = *c else { continue };
            let (a, b) = (s.indptr[col], s.indptr[col + 1]);
            let (data, indices) = self.entries(s, a, b)?;
            for k in a..b {
                let row = self.minor_index(s, k, indices[k - a])?;
                let v = self.check_expression("X/data", m, row, col, data[k - a])?;
                out[row * m.genes + j] += v;
            }
        }
        Ok(())
    }

    // ---- positions and types -------------------------------------------------------------

    fn positions(&self, obs: &Frame, req: &ImportRequest<'_>) -> Result<Vec<[f32; 3]>, IoError> {
        let (n, dims) = (obs.index.len(), req.dims);
        let mut positions = vec![[0.0f32; 3]; n];
        match &req.coordinates {
            Coordinates::Obsm(key) => {
                let obsm = match self.member(&self.file, "", "obsm")? {
                    Some(Node::Group(g)) => g,
                    Some(Node::Dataset(_)) => {
                        return Err(self.bad_field("obsm", "a dataset (the AnnData 0.6 layout)", "a group of arrays"));
                    }
                    None => return Err(self.missing("obsm", &self.file, &[])),
                };
                let field = join("obsm", key);
                let expected = format!("a numeric array of shape ({n}, k) with k ≥ {dims} for `dims = {dims}`");
                let ds = self.dataset(&obsm, "obsm", key, &expected)?;
                let shape = self.shape(&ds, &field)?;
                self.check_numeric(&ds, &field, &shape, &expected)?;
                let &[rows, k] = shape.as_slice() else {
                    return Err(self.bad_field(&field, format!("an array of shape {}", shape_text(&shape)), expected));
                };
                if rows != n || k < dims {
                    return Err(self.bad_field(&field, format!("an array of shape {}", shape_text(&shape)), expected));
                }
                let values = self.h5(&field, ds.read_raw::<f64>())?;
                for (row, p) in positions.iter_mut().enumerate() {
                    for (axis, x) in p.iter_mut().take(dims).enumerate() {
                        *x = self.coordinate(&field, obs, row, values[row * k + axis])?;
                    }
                }
            }
            Coordinates::ObsColumns(cols) => {
                for (axis, col) in cols.iter().enumerate() {
                    let values = self.numeric_column(obs, col)?;
                    let field = join("obs", col);
                    for (row, p) in positions.iter_mut().enumerate() {
                        p[axis] = self.coordinate(&field, obs, row, values[row])?;
                    }
                }
            }
        }
        Ok(positions)
    }

    /// A numeric `obs` column, one value per cell, as `f64`.
    fn numeric_column(&self, obs: &Frame, col: &str) -> Result<Vec<f64>, IoError> {
        let field = join(obs.name, col);
        let expected = "a numeric column";
        let ds = match self.member(&obs.group, obs.name, col)? {
            Some(Node::Dataset(ds)) => ds,
            Some(Node::Group(g)) => return Err(self.bad_field(&field, self.describe_group(&g, &field)?, expected)),
            None => return Err(self.missing_column(obs, &field)),
        };
        if let Some((_, cats_field)) = self.old_categories(obs, col, &ds)? {
            let found = format!("a categorical column (its categories are in `{cats_field}`)");
            return Err(self.bad_field(&field, found, expected));
        }
        let n = self.vector_len(&ds, &field, Some(obs.index.len()))?;
        self.check_numeric(&ds, &field, &[n], expected)?;
        self.h5(&field, ds.read_raw::<f64>())
    }

    fn missing_column(&self, obs: &Frame, field: &str) -> IoError {
        let index = self.attr_string(&obs.group, obs.name, "_index").ok().flatten();
        let index = index.as_deref().unwrap_or("_index");
        self.missing(field, &obs.group, &[index, "__categories"])
    }

    fn coordinate(&self, field: &str, obs: &Frame, row: usize, v: f64) -> Result<f32, IoError> {
        let x = v as f32;
        if x.is_finite() {
            Ok(x)
        } else {
            Err(self.bad_value(field, row, obs, v.to_string(), "coordinates must be finite (as float32)".to_owned()))
        }
    }

    /// The categories of `obs/<col>` in the AnnData 0.7 layout, if it is categorical there:
    /// the codes dataset `codes` carries an attribute `categories`, a reference to the
    /// categories dataset, which anndata put at `obs/__categories/<col>` (looked up by name
    /// when the reference cannot be followed). Returns the dataset and its field path.
    fn old_categories(&self, obs: &Frame, col: &str, codes: &Dataset) -> Result<Option<(Dataset, String)>, IoError> {
        let field = join(obs.name, col);
        let attr_field = format!("{field}.attrs['categories']");
        let has_attr = self.h5(&attr_field, codes.attr_names())?.iter().any(|n| n == "categories");
        if has_attr
            && let Ok(reference) = codes.attr("categories").and_then(|a| a.read_scalar::<ObjectReference1>())
            && let Ok(ReferencedObject::Dataset(ds)) = obs.group.dereference(&reference)
        {
            let name = ds.name();
            return Ok(Some((ds, name.trim_start_matches('/').to_owned())));
        }
        let cats_field = join(obs.name, "__categories");
        if let Some(Node::Group(g)) = self.member(&obs.group, obs.name, "__categories")?
            && let Some(Node::Dataset(ds)) = self.member(&g, &cats_field, col)?
        {
            return Ok(Some((ds, join(&cats_field, col))));
        }
        Ok(None)
    }

    fn cell_types(&self, obs: &Frame, col: &str) -> Result<Vec<String>, IoError> {
        let field = join(obs.name, col);
        let n = obs.index.len();
        match self.member(&obs.group, obs.name, col)? {
            None => Err(self.missing_column(obs, &field)),
            Some(Node::Group(g)) => {
                let encoding = self.attr_string(&g, &field, "encoding-type")?;
                let is_categorical = match encoding.as_deref() {
                    Some("categorical") => true,
                    Some(_) => false,
                    None => g.link_exists("categories") && g.link_exists("codes"),
                };
                if !is_categorical {
                    return Err(self.bad_field(
                        &field,
                        self.describe_group(&g, &field)?,
                        "a categorical column, or an array of strings or integers",
                    ));
                }
                let cat_field = join(&field, "categories");
                let categories = self.dataset(&g, &field, "categories", "a 1-D array of category names")?;
                self.vector_len(&categories, &cat_field, None)?;
                let categories = self.labels(&categories, &cat_field, true)?;
                let codes_field = join(&field, "codes");
                let codes = self.dataset(&g, &field, "codes", "a 1-D array of integer codes")?;
                self.vector_len(&codes, &codes_field, Some(n))?;
                self.decode(obs, &codes_field, &self.integers(&codes, &codes_field)?, &categories)
            }
            Some(Node::Dataset(ds)) => {
                self.vector_len(&ds, &field, Some(n))?;
                match self.old_categories(obs, col, &ds)? {
                    Some((cats, cat_field)) => {
                        self.vector_len(&cats, &cat_field, None)?;
                        let categories = self.labels(&cats, &cat_field, true)?;
                        self.decode(obs, &field, &self.integers(&ds, &field)?, &categories)
                    }
                    None => self.labels(&ds, &field, false),
                }
            }
        }
    }

    /// Categorical codes to names; `-1` (pandas' missing value) and out-of-range codes are errors.
    fn decode(&self, obs: &Frame, field: &str, codes: &[i64], categories: &[String]) -> Result<Vec<String>, IoError> {
        codes
            .iter()
            .enumerate()
            .map(|(row, &code)| {
                let found = usize::try_from(code).ok().and_then(|c| categories.get(c));
                found.cloned().ok_or_else(|| {
                    let why = if code < 0 {
                        "the cell has no cell type (a missing value); give every cell a type".to_owned()
                    } else {
                        match categories.len() {
                            1 => "there is only 1 category".to_owned(),
                            k => format!("there are only {k} categories"),
                        }
                    };
                    self.bad_value(field, row, obs, code.to_string(), why)
                })
            })
            .collect()
    }
}

/// What [`read_snapshot`] reads beyond what [`read_tissue`] needs.
impl H5ad<'_> {
    /// The group `name` of `parent` (whose field path is `parent_field`), if there is one.
    fn group(&self, parent: &Group, parent_field: &str, name: &str) -> Result<Option<Group>, IoError> {
        match self.member(parent, parent_field, name)? {
            Some(Node::Group(g)) => Ok(Some(g)),
            Some(Node::Dataset(_)) => Err(self.bad_field(&join(parent_field, name), "a dataset", "a group")),
            None => Ok(None),
        }
    }

    /// `obsm/spatial` as `(dims, positions)`, the dims from its shape; values are not checked.
    fn spatial(&self, obs: &Frame) -> Result<(usize, Vec<[f32; 3]>), IoError> {
        let n = obs.index.len();
        let expected = format!("a numeric array of shape ({n}, 2) or ({n}, 3)");
        let obsm = self.group(&self.file, "", "obsm")?.ok_or_else(|| self.missing("obsm", &self.file, &[]))?;
        let field = "obsm/spatial";
        let ds = self.dataset(&obsm, "obsm", "spatial", &expected)?;
        let shape = self.shape(&ds, field)?;
        self.check_numeric(&ds, field, &shape, &expected)?;
        let dims = match shape.as_slice() {
            &[rows, k @ (2 | 3)] if rows == n => k,
            _ => return Err(self.bad_field(field, format!("an array of shape {}", shape_text(&shape)), expected)),
        };
        let values = self.h5(field, ds.read_raw::<f32>())?;
        let positions = values
            .chunks_exact(dims)
            .map(|p| {
                let mut q = [0.0f32; 3];
                q[..dims].copy_from_slice(p);
                q
            })
            .collect();
        Ok((dims, positions))
    }

    /// A categorical `obs` column as (categories, codes); a plain column of labels gets its
    /// distinct values in order of first appearance as categories.
    fn categories(&self, obs: &Frame, col: &str) -> Result<(Vec<String>, Vec<u32>), IoError> {
        let labels = self.cell_types(obs, col)?;
        let field = join(obs.name, col);
        let declared = match self.member(&obs.group, obs.name, col)? {
            Some(Node::Group(g)) => {
                let cats_field = join(&field, "categories");
                let ds = self.dataset(&g, &field, "categories", "a 1-D array of category names")?;
                Some(self.labels(&ds, &cats_field, true)?)
            }
            Some(Node::Dataset(ds)) => match self.old_categories(obs, col, &ds)? {
                Some((cats, cats_field)) => Some(self.labels(&cats, &cats_field, true)?),
                None => None,
            },
            None => None,
        };
        let mut names = declared.unwrap_or_default();
        let mut index: HashMap<String, u32> = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            index.entry(name.clone()).or_insert(i as u32);
        }
        let codes = labels
            .into_iter()
            .map(|label| {
                let next = names.len() as u32;
                *index.entry(label).or_insert_with_key(|label| {
                    names.push(label.clone());
                    next
                })
            })
            .collect();
        Ok((names, codes))
    }

    /// The dense layer `layers/<name>` (`N × G`), when there is one.
    fn layer(
        &self,
        obs: &Frame,
        var: &Frame,
        name: &str,
        columns: &[Option<usize>],
    ) -> Result<Option<Vec<f32>>, IoError> {
        let Some(layers) = self.group(&self.file, "", "layers")? else { return Ok(None) };
        let field = join("layers", name);
        let ds = match self.member(&layers, "layers", name)? {
            None => return Ok(None),
            Some(Node::Dataset(ds)) => ds,
            Some(Node::Group(g)) => {
                return Err(self.bad_field(&field, self.describe_group(&g, &field)?, "a dense numeric matrix"));
            }
        };
        let m = Matrix { field: &field, obs, var, columns, genes: columns.len(), finite: false };
        let mut out = vec![0.0f32; obs.index.len() * columns.len()];
        self.dense_x(&ds, &m, &mut out)?;
        Ok(Some(out))
    }

    /// `uns/fields` on the grid `uns/fields_grid`, when the file has them.
    fn fields(&self) -> Result<Option<SnapshotFields>, IoError> {
        let Some(uns) = self.group(&self.file, "", "uns")? else { return Ok(None) };
        let Some(grid_group) = self.group(&uns, "uns", "fields_grid")? else { return Ok(None) };
        let gf = "uns/fields_grid";
        let numbers = |name: &str, what: &str| -> Result<Vec<f64>, IoError> {
            let field = join(gf, name);
            let ds = self.dataset(&grid_group, gf, name, what)?;
            let shape = self.shape(&ds, &field)?;
            self.check_numeric(&ds, &field, &shape, what)?;
            self.h5(&field, ds.read_raw::<f64>())
        };
        let shape_field = join(gf, "shape");
        let shape = numbers("shape", "2 or 3 voxel counts")?;
        let counts: Vec<usize> =
            shape.iter().map(|&v| if v >= 1.0 && v.fract() == 0.0 { v as usize } else { 0 }).collect();
        let (nz, ny, nx) = match *counts.as_slice() {
            [ny, nx] if ny > 0 && nx > 0 => (1, ny, nx),
            [nz, ny, nx] if nz > 0 && ny > 0 && nx > 0 => (nz, ny, nx),
            _ => {
                let found = format!("`{shape:?}`");
                return Err(self.bad_field(&shape_field, found, "2 or 3 positive voxel counts"));
            }
        };
        let spacing = numbers("spacing", "a positive number")?;
        let dx = match *spacing.as_slice() {
            [dx] if dx > 0.0 && dx.is_finite() => dx as f32,
            _ => return Err(self.bad_field(&join(gf, "spacing"), format!("`{spacing:?}`"), "a positive number")),
        };
        let origin = numbers("origin", "2 or 3 coordinates")?;
        let origin = match *origin.as_slice() {
            [x, y] => [x as f32, y as f32, 0.0],
            [x, y, z] => [x as f32, y as f32, z as f32],
            _ => return Err(self.bad_field(&join(gf, "origin"), format!("`{origin:?}`"), "2 or 3 coordinates")),
        };
        let grid = explant_field::Grid { nx, ny, nz, dx, origin };
        let fields = self.group(&uns, "uns", "fields")?.ok_or_else(|| self.missing("uns/fields", &uns, &[]))?;
        let names = self.h5("uns/fields", fields.member_names())?;
        let voxels = grid.voxels();
        let mut data = Vec::with_capacity(names.len().saturating_mul(voxels));
        for name in &names {
            let field = join("uns/fields", name);
            let want = if nz == 1 { vec![ny, nx] } else { vec![nz, ny, nx] };
            let expected = format!("a numeric array of shape {} (from `{shape_field}`)", shape_text(&want));
            let ds = self.dataset(&fields, "uns/fields", name, &expected)?;
            let found = self.shape(&ds, &field)?;
            self.check_numeric(&ds, &field, &found, &expected)?;
            if found != want {
                return Err(self.bad_field(&field, format!("an array of shape {}", shape_text(&found)), expected));
            }
            data.extend(self.h5(&field, ds.read_raw::<f32>())?);
        }
        Ok(Some(SnapshotFields { names, grid, data }))
    }

    /// `uns/explant`'s tick, time and scene text, each when present.
    fn explant_uns(&self) -> Result<ExplantUns, IoError> {
        let none = ExplantUns { tick: None, time_min: None, scene: None };
        let Some(uns) = self.group(&self.file, "", "uns")? else { return Ok(none) };
        let Some(g) = self.group(&uns, "uns", "explant")? else { return Ok(none) };
        let ef = "uns/explant";
        let number = |name: &str| -> Result<Option<f64>, IoError> {
            let field = join(ef, name);
            match self.member(&g, ef, name)? {
                None => Ok(None),
                Some(Node::Group(grp)) => Err(self.bad_field(&field, self.describe_group(&grp, &field)?, "a number")),
                Some(Node::Dataset(ds)) => {
                    let shape = self.shape(&ds, &field)?;
                    self.check_numeric(&ds, &field, &shape, "a number")?;
                    let v = self.h5(&field, ds.read_raw::<f64>())?;
                    match *v.as_slice() {
                        [x] => Ok(Some(x)),
                        _ => Err(self.bad_field(&field, format!("{} values", v.len()), "a single number")),
                    }
                }
            }
        };
        let time = number("time_min")?;
        let tick = match number("tick")? {
            None => None,
            Some(t) if t >= 0.0 && t.fract() == 0.0 && t < u64::MAX as f64 => Some(t as u64),
            Some(t) => return Err(self.bad_field(&join(ef, "tick"), format!("`{t}`"), "a whole number ≥ 0")),
        };
        let scene = match self.member(&g, ef, "scene")? {
            Some(Node::Dataset(ds)) => self.strings(&ds, &join(ef, "scene"))?.into_iter().next(),
            _ => None,
        };
        Ok(ExplantUns { tick, time_min: time, scene })
    }
}

/// What `uns/explant` holds, each part when present.
struct ExplantUns {
    tick: Option<u64>,
    time_min: Option<f64>,
    scene: Option<String>,
}

/// What the matrix readers need to know about the request.
struct Matrix<'f> {
    /// The HDF5 path of a dense matrix, for messages (`X` or `layers/<name>`).
    field: &'f str,
    obs: &'f Frame,
    var: &'f Frame,
    columns: &'f [Option<usize>],
    genes: usize,
    /// Whether a NaN or infinite value is an error.
    finite: bool,
}

/// An open sparse matrix with its checked index pointer.
struct Sparse {
    data: Dataset,
    indices: Dataset,
    indptr: Vec<usize>,
    /// Number of columns (CSR) or rows (CSC).
    minor: usize,
    /// `columns` or `rows`, for messages.
    minor_name: &'static str,
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_owned() } else { format!("{parent}/{name}") }
}

/// `(621, 2)` or `(621,)`, as Python prints shapes.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

fn is_numeric(td: &TypeDescriptor) -> bool {
    matches!(td, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Float(_))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether the file carries the HDF5 signature at offset 0, 512, 1024, 2048, … (HDF5 allows
/// a user block of any power-of-two size ≥ 512 before the superblock).
fn has_hdf5_signature(f: &mut fs::File, len: u64) -> std::io::Result<bool> {
    const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    let mut offset = 0u64;
    while offset.saturating_add(8) <= len {
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = [0u8; 8];
        f.read_exact(&mut buf)?;
        if &buf == SIGNATURE {
            return Ok(true);
        }
        offset = if offset == 0 { 512 } else { offset.saturating_mul(2) };
    }
    Ok(false)
}

/// Capacities tried, smallest first, for fixed-length strings (which HDF5 converts between
/// sizes, padding with NULs).
const FIXED_SIZES: [usize; 5] = [16, 64, 256, 1024, 4096];

/// Fixed-length strings of `n` bytes, or `None` when longer than the largest capacity.
fn read_fixed(c: &Container, n: usize, unicode: bool) -> Option<hdf5::Result<Vec<String>>> {
    macro_rules! sized {
        ($($size:literal),*) => {
            $(
                if n <= $size {
                    return Some(if unicode {
                        c.read_raw::<FixedUnicode<$size>>().map(|v| v.iter().map(|s| text(s.as_bytes())).collect())
                    } else {
                        c.read_raw::<FixedAscii<$size>>().map(|v| v.iter().map(|s| text(s.as_bytes())).collect())
                    });
                }
            )*
        };
    }
    sized!(16, 64, 256, 1024, 4096);
    None
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// A matrix with empty rows, a row longer than a block and a duplicate-free pattern.
    fn matrix(n: usize, g: usize) -> Vec<f32> {
        (0..n * g)
            .map(|k| {
                let (i, j) = (k / g, k % g);
                if i % 4 == 1 || (i != 6 && (i * 7 + j * 3) % 5 < 2) { 0.0 } else { (k + 1) as f32 * 0.5 }
            })
            .collect()
    }

    fn vlen(names: &[String]) -> Vec<VarLenUnicode> {
        names.iter().map(|s| VarLenUnicode::from_str(s).unwrap()).collect()
    }

    fn str_attr(loc: &Location, name: &str, value: &str) {
        let v = VarLenUnicode::from_str(value).unwrap();
        loc.new_attr::<VarLenUnicode>().create(name).unwrap().write_scalar(&v).unwrap();
    }

    /// A minimal AnnData file: obs and var indices, `obsm/spatial`, and `X` written by `x`.
    fn write_file(path: &Path, n: usize, genes: &[String], x: impl FnOnce(&Group)) {
        let file = hdf5::File::create(path).unwrap();
        let cells: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        for (name, index) in [("obs", &cells), ("var", &genes.to_vec())] {
            let g = file.create_group(name).unwrap();
            str_attr(&g, "_index", "_index");
            let ds = g.new_dataset::<VarLenUnicode>().shape(index.len()).create("_index").unwrap();
            ds.write_raw(&vlen(index)).unwrap();
        }
        let obsm = file.create_group("obsm").unwrap();
        let xy: Vec<f64> = (0..n * 2).map(|k| k as f64).collect();
        obsm.new_dataset::<f64>().shape((n, 2)).create("spatial").unwrap().write_raw(&xy).unwrap();
        x(&file);
    }

    fn write_sparse(root: &Group, kind: &str, shape: [usize; 2], indptr: &[i64], indices: &[i32], data: &[f32]) {
        let g = root.create_group("X").unwrap();
        str_attr(&g, "encoding-type", kind);
        let shape = shape.map(|v| v as i64);
        g.new_attr::<i64>().shape(2).create("shape").unwrap().write_raw(&shape).unwrap();
        g.new_dataset::<f32>().shape(data.len()).create("data").unwrap().write_raw(data).unwrap();
        g.new_dataset::<i32>().shape(indices.len()).create("indices").unwrap().write_raw(indices).unwrap();
        g.new_dataset::<i64>().shape(indptr.len()).create("indptr").unwrap().write_raw(indptr).unwrap();
    }

    /// Writes `X` into a file's root group.
    type WriteX<'a> = Box<dyn FnOnce(&Group) + 'a>;

    /// Compressed storage of the `major × minor` matrix `at(major, minor)`.
    fn compress(major: usize, minor: usize, at: impl Fn(usize, usize) -> f32) -> (Vec<i64>, Vec<i32>, Vec<f32>) {
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for a in 0..major {
            for b in 0..minor {
                let v = at(a, b);
                if v != 0.0 {
                    indices.push(b as i32);
                    data.push(v);
                }
            }
            indptr.push(data.len() as i64);
        }
        (indptr, indices, data)
    }

    #[test]
    fn blocked_dense_csr_and_csc_reads_agree_with_the_matrix() {
        let (n, g) = (13, 7);
        let dense = matrix(n, g);
        let genes: Vec<String> = (0..g).map(|j| format!("G{j}")).collect();
        // Every gene, backwards, one twice, one absent.
        let mut wanted: Vec<String> = genes.iter().rev().cloned().collect();
        wanted.extend(["g2".to_owned(), "Absent".to_owned()]);
        let col_of = |w: &String| genes.iter().position(|x| x.eq_ignore_ascii_case(w));
        let expected: Vec<f32> = (0..n)
            .flat_map(|i| wanted.iter().map(move |w| (i, w)))
            .map(|(i, w)| col_of(w).map_or(0.0, |c| dense[i * g + c]))
            .collect();
        assert!(dense.chunks(g).any(|r| r.iter().all(|&v| v != 0.0)), "no row longer than a block");
        assert!(dense.chunks(g).any(|r| r.iter().all(|&v| v == 0.0)), "no empty row");

        let dir = std::env::temp_dir().join(format!("explant-io-read-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let req = ImportRequest {
            coordinates: Coordinates::Obsm("spatial".into()),
            cell_type_column: None,
            genes: &wanted,
            dims: 2,
        };
        let csr = compress(n, g, |i, j| dense[i * g + j]);
        let csc = compress(g, n, |j, i| dense[i * g + j]);
        let files: [(&str, WriteX<'_>); 3] = [
            (
                "dense",
                Box::new(|root: &Group| {
                    root.new_dataset::<f32>().shape((n, g)).create("X").unwrap().write_raw(&dense).unwrap();
                }),
            ),
            ("csr", Box::new(|root: &Group| write_sparse(root, "csr_matrix", [n, g], &csr.0, &csr.1, &csr.2))),
            ("csc", Box::new(|root: &Group| write_sparse(root, "csc_matrix", [n, g], &csc.0, &csc.1, &csc.2))),
        ];
        for (name, x) in files {
            let path = dir.join(format!("{name}.h5ad"));
            write_file(&path, n, &genes, x);
            let t = read_tissue(&path, &req).unwrap();
            assert_eq!(t.expression, expected, "{name}");
            assert_eq!(t.matched, [true, true, true, true, true, true, true, true, false], "{name}");
            assert_eq!(t.positions[3], [6.0, 7.0, 0.0], "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn genes_match_exactly_first_then_ignoring_case() {
        let var: Vec<String> = ["Wnt3a", "WNT3A", "Lgr5", "axin2"].map(String::from).to_vec();
        let req: Vec<String> = ["WNT3A", "wnt3a", "LGR5", "Axin2", "Bmp4"].map(String::from).to_vec();
        assert_eq!(match_genes(&var, &req), [Some(1), Some(0), Some(2), Some(3), None]);
    }

    #[test]
    fn shapes_print_as_python_does() {
        assert_eq!(shape_text(&[621, 2]), "(621, 2)");
        assert_eq!(shape_text(&[7]), "(7,)");
        assert_eq!(shape_text(&[]), "()");
    }

    #[test]
    fn request_needs_dims_2_or_3_and_one_column_per_axis() {
        let path = Path::new("t.h5ad");
        let genes = [];
        let mut req = ImportRequest {
            coordinates: Coordinates::ObsColumns(vec!["x".into(), "y".into()]),
            cell_type_column: None,
            genes: &genes,
            dims: 2,
        };
        assert!(check_request(path, &req).is_ok());
        req.dims = 3;
        let err = check_request(path, &req).unwrap_err().to_string();
        assert!(err.contains("`dims = 3` needs 3 coordinate columns but 2 were given (`x`, `y`)"), "{err}");
        req.dims = 4;
        let err = check_request(path, &req).unwrap_err().to_string();
        assert!(err.contains("`t.h5ad`") && err.contains("`dims` is `4`"), "{err}");
    }

    #[test]
    fn a_written_snapshot_reads_back_whole() {
        use crate::{FieldSnapshot, ObsColumn, Snapshot, write_h5ad};
        let dir = std::env::temp_dir().join(format!("explant-io-read-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let genes: Vec<String> = ["A", "B"].map(String::from).to_vec();
        let types: Vec<String> = ["t0", "t1", "t2"].map(String::from).to_vec();
        let ligands: Vec<String> = ["Zeta", "Alpha"].map(String::from).to_vec();
        let grid = explant_field::Grid { nx: 3, ny: 2, nz: 2, dx: 5.0, origin: [1.0, 2.0, 3.0] };
        // Channel-major: Zeta is 0..12, Alpha is 100..112.
        let field: Vec<f32> = (0..12).map(|v| v as f32).chain((0..12).map(|v| 100.0 + v as f32)).collect();
        let expression = [1.0, 2.0, f32::NAN, 4.0, 5.0, 6.0];
        let control = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5];
        let radius = [4.0, 5.0, 6.0];
        let distance = [0.0, 12.5, f32::NAN];
        let parent = [-1i64, 0, 0];
        let extra = [
            ObsColumn::Int { name: "parent", values: &parent },
            ObsColumn::Float { name: "radius", values: &radius },
            ObsColumn::Float { name: "distance_to_perturbation", values: &distance },
        ];
        let layers: [(&str, &[f32]); 1] = [("control", &control)];
        let snap = Snapshot {
            genes: &genes,
            cell_type_names: &types,
            cell_ids: &[7, 8, 9],
            cell_types: &[2, 0, 2],
            generations: &[0, 1, 1],
            perturbed: &[true, false, false],
            positions: &[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
            dims: 3,
            expression: &expression,
            tick: 42,
            time_min: 21.0,
            scene_toml: "name = \"x\"",
            explant_version: "0.0.0",
            fields: Some(FieldSnapshot { names: &ligands, grid: &grid, data: &field }),
            extra_obs: &extra,
            neighbours: None,
            gzip: None,
            layers: &layers,
        };
        let path = dir.join("snap.h5ad");
        write_h5ad(&path, &snap).unwrap();
        let r = read_snapshot(&path).unwrap();
        assert_eq!((r.cells, r.dims), (3, 3));
        assert_eq!(r.obs_names, ["7", "8", "9"]);
        assert_eq!(r.genes, genes);
        assert_eq!(r.expression[..2], [1.0, 2.0]);
        assert!(r.expression[2].is_nan(), "NaN is kept");
        assert_eq!(r.positions[1], [4.0, 5.0, 6.0]);
        assert_eq!(r.cell_type_names, types);
        assert_eq!(r.cell_types, [2, 0, 2]);
        assert_eq!(r.radii.as_deref(), Some(&radius[..]));
        let d = r.distance_to_perturbation.as_deref().unwrap();
        assert_eq!(d[..2], [0.0, 12.5]);
        assert!(d[2].is_nan());
        assert_eq!(r.control.as_deref(), Some(&control[..]));
        assert_eq!(r.gene_values(1, true).unwrap(), [1.0, 1.0, 0.5]);
        assert_eq!((r.tick, r.time_min, r.scene_toml.as_deref()), (Some(42), Some(21.0), Some("name = \"x\"")));
        let f = r.fields.unwrap();
        assert_eq!(f.grid, grid);
        assert_eq!(f.names, ["Alpha", "Zeta"], "HDF5 lists members by name");
        assert_eq!(f.channel("Alpha").unwrap()[11], 111.0);
        assert_eq!(f.channel("Zeta").unwrap()[5], 5.0);
        assert!(f.channel("Beta").is_none());

        // Without the optional parts, and in 2D.
        let snap = Snapshot {
            positions: &[[1.0, 2.0, 0.0], [4.0, 5.0, 0.0], [7.0, 8.0, 0.0]],
            dims: 2,
            fields: None,
            extra_obs: &[],
            layers: &[],
            ..snap
        };
        write_h5ad(&path, &snap).unwrap();
        let r = read_snapshot(&path).unwrap();
        assert_eq!(r.dims, 2);
        assert_eq!(r.positions[2], [7.0, 8.0, 0.0]);
        assert!(r.radii.is_none() && r.distance_to_perturbation.is_none() && r.control.is_none() && r.fields.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_without_cell_types_names_the_file_and_field() {
        let dir = std::env::temp_dir().join(format!("explant-io-read-snapshot-err-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bare.h5ad");
        let genes = vec!["G0".to_owned()];
        write_file(&path, 2, &genes, |root: &Group| {
            root.new_dataset::<f32>().shape((2, 1)).create("X").unwrap().write_raw(&[1.0f32, 2.0]).unwrap();
        });
        let err = read_snapshot(&path).unwrap_err().to_string();
        assert!(err.contains("bare.h5ad") && err.contains("`obs/cell_type`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
