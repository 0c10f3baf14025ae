use std::path::PathBuf;

use thiserror::Error;

/// Errors from writing a snapshot file or a picture, or from importing a tissue.
///
/// Every variant names the file that was being written or read. After a failed write
/// nothing is left at that path (output goes to a temporary file that is renamed only on
/// success). Errors from reading also name the HDF5 field (e.g. `obsm/spatial`) and, where
/// one value is at fault, that value and its row.
/// Errors from the HDF5 library, the PNG encoder or the operating system are kept as the
/// [`source`](std::error::Error::source) rather than repeated in the message, so print the
/// whole chain (as `anyhow` does) to see them.
#[derive(Debug, Error)]
pub enum IoError {
    /// Two inputs that must agree in length do not.
    #[error(
        "cannot write `{}`: `{what}` has {found} entries but {expected} were expected ({why})",
        path.display()
    )]
    LengthMismatch {
        /// The file being written.
        path: PathBuf,
        /// Which input is the wrong length, e.g. `expression`.
        what: &'static str,
        /// Its length.
        found: usize,
        /// The length it should have.
        expected: usize,
        /// Where the expected length comes from, e.g. `50 cells × 4 genes`.
        why: String,
    },
    /// `Snapshot::dims` is neither 2 nor 3.
    #[error("cannot write `{}`: `dims` is `{dims}`, it must be 2 or 3", path.display())]
    BadDims {
        /// The file being written.
        path: PathBuf,
        /// The offending value.
        dims: usize,
    },
    /// A cell's type index points past the list of cell type names.
    #[error(
        "cannot write `{}`: cell {cell} has cell type `{code}` but only {names} cell type names were given",
        path.display()
    )]
    BadCellType {
        /// The file being written.
        path: PathBuf,
        /// Row of the offending cell.
        cell: usize,
        /// Its cell type index.
        code: u32,
        /// How many names there are.
        names: usize,
    },
    /// A name list (genes, cell types or cell ids) holds the same name twice.
    #[error("cannot write `{}`: `{what}` holds `{name}` twice, names must be unique", path.display())]
    Duplicate {
        /// The file being written.
        path: PathBuf,
        /// Which list, e.g. `genes`.
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A string holds a NUL byte, which HDF5 strings cannot store.
    #[error("cannot write `{}`: `{what}` contains a NUL byte, which HDF5 strings cannot hold", path.display())]
    NulInString {
        /// The file being written.
        path: PathBuf,
        /// Which string, e.g. `scene_toml` or `genes[3]`.
        what: String,
    },
    /// The requested picture size is unusable.
    #[error("cannot write `{}`: image width `{width_px}` px must be between {min} and {max}", path.display())]
    BadWidth {
        /// The file being written.
        path: PathBuf,
        /// The requested width.
        width_px: u32,
        /// Smallest allowed width.
        min: u32,
        /// Largest allowed width.
        max: u32,
    },
    /// The picture would be absurdly tall for its width (an extreme aspect ratio).
    #[error(
        "cannot write `{}`: the tissue is {extent_w} × {extent_h} µm, which at `{width_px}` px wide needs an image taller than {max} px",
        path.display()
    )]
    BadAspect {
        /// The file being written.
        path: PathBuf,
        /// Width of the drawn region in µm.
        extent_w: f32,
        /// Height of the drawn region in µm.
        extent_h: f32,
        /// The requested width in pixels.
        width_px: u32,
        /// Largest allowed height.
        max: u32,
    },
    /// The field's grid cannot be drawn (no voxels, or a voxel size that is not positive).
    #[error("cannot write `{}`: bad field grid: {reason}", path.display())]
    BadGrid {
        /// The file being written.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A slice ([`TissueView::slice_z`](crate::TissueView::slice_z)) was asked of a flat
    /// (2D) tissue, which has only its one plane to show.
    #[error("cannot write `{}`: a slice at `z = {z}` µm needs a 3D tissue, but {why}", path.display())]
    SliceOf2d {
        /// The file being written.
        path: PathBuf,
        /// The requested slice height in µm.
        z: f32,
        /// Why the tissue is flat, e.g. "the field's grid has one voxel layer (`nz` = 1)".
        why: String,
    },
    /// The slice height ([`TissueView::slice_z`](crate::TissueView::slice_z)) is not
    /// inside the tissue's z-extent.
    #[error(
        "cannot write `{}`: slice height `z = {z}` µm is outside {of}, which spans z = {z0} to {z1} µm",
        path.display()
    )]
    SliceOutside {
        /// The file being written.
        path: PathBuf,
        /// The requested slice height in µm.
        z: f32,
        /// What the extent is of: the field's grid, or the cells when there is no field.
        of: &'static str,
        /// Bottom of the extent in µm.
        z0: f32,
        /// Top of the extent in µm.
        z1: f32,
    },
    /// The snapshot's neighbour graph is not an undirected graph over its cells in sorted
    /// CSR form (see `NeighbourGraph`).
    #[error("cannot write `{}`: bad neighbour graph at cell {cell}: {reason}", path.display())]
    BadNeighbours {
        /// The file being written.
        path: PathBuf,
        /// Row of the offending cell.
        cell: usize,
        /// What is wrong, quoting the offending value.
        reason: String,
    },
    /// The snapshot's gzip level is outside 1 to 9.
    #[error("cannot write `{}`: gzip level `{level}` must be 1 to 9", path.display())]
    BadGzipLevel {
        /// The file being written.
        path: PathBuf,
        /// The offending level.
        level: u8,
    },
    /// The HDF5 library reported an error.
    #[error("HDF5 error while writing `{}`", path.display())]
    Hdf5 {
        /// The file being written.
        path: PathBuf,
        /// The library's error.
        #[source]
        source: hdf5::Error,
    },
    /// The PNG encoder reported an error.
    #[error("PNG error while writing `{}`", path.display())]
    Png {
        /// The file being written.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: png::EncodingError,
    },
    /// A file system operation failed.
    #[error("cannot write `{}`", path.display())]
    Io {
        /// The file being written (or the temporary file beside it).
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file to import cannot be opened (it does not exist, is a directory, or is not
    /// readable).
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file being read.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file to import is not an HDF5 file (it has no HDF5 signature).
    #[error("cannot read `{}`: it is not an HDF5 file, which every `.h5ad` file is", path.display())]
    NotHdf5 {
        /// The file being read.
        path: PathBuf,
    },
    /// The HDF5 library reported an error while reading one field of a file.
    #[error("HDF5 error while reading `{field}` from `{}`", path.display())]
    ReadHdf5 {
        /// The file being read.
        path: PathBuf,
        /// The HDF5 path of the field, e.g. `X/indptr`; `/` for the file itself.
        field: String,
        /// The library's error.
        #[source]
        source: hdf5::Error,
    },
    /// A field the import needs is not in the file.
    #[error("cannot read `{}`: there is no `{field}` in the file{}", path.display(), listing(available))]
    MissingField {
        /// The file being read.
        path: PathBuf,
        /// The HDF5 path of the missing field, e.g. `obsm/spatial`.
        field: String,
        /// What its parent group holds instead, to suggest the intended name.
        available: Vec<String>,
    },
    /// A field has the wrong kind, type or shape.
    #[error("cannot read `{}`: `{field}` is {found}, but {expected} is needed", path.display())]
    BadField {
        /// The file being read.
        path: PathBuf,
        /// The HDF5 path of the field, e.g. `obsm/spatial`.
        field: String,
        /// What it is, quoting the offending type, shape or value.
        found: String,
        /// What the import needs.
        expected: String,
    },
    /// One cell's entry in a field is unusable (a NaN coordinate, a missing category).
    #[error(
        "cannot read `{}`: `{field}` holds `{value}` at row {row} (cell `{obs_name}`): {why}",
        path.display()
    )]
    BadValue {
        /// The file being read.
        path: PathBuf,
        /// The HDF5 path of the field, e.g. `obs/x`.
        field: String,
        /// The cell's row (0-based).
        row: usize,
        /// The cell's name (its entry in the `obs` index).
        obs_name: String,
        /// The offending value.
        value: String,
        /// Why it cannot be used (boxed to keep `IoError` small).
        why: Box<str>,
    },
    /// A chart cannot be drawn from what it was given (mismatched lengths, too large).
    #[error("cannot draw `{}`: {reason}", path.display())]
    BadChart {
        /// The picture that was to be written.
        path: PathBuf,
        /// What is wrong, quoting the offending numbers.
        reason: String,
    },
    /// The import request itself is unusable, e.g. `dims` is neither 2 nor 3.
    #[error("cannot import `{}`: {reason}", path.display())]
    BadRequest {
        /// The file that was to be read.
        path: PathBuf,
        /// What is wrong with the request, quoting the offending value.
        reason: String,
    },
}

/// ` (found `a`, `b`, …)` for an error message, or nothing when there is nothing to list.
fn listing(names: &[String]) -> String {
    const SHOWN: usize = 12;
    if names.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect();
    let more = names.len().saturating_sub(SHOWN);
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!(" (found {}{tail})", shown.join(", "))
}
