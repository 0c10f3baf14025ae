//! Files of explant runs: AnnData snapshots and PNG pictures of the tissue out, an initial
//! tissue from AnnData in.
//!
//! - [`write_h5ad`] writes one [`Snapshot`] (expression, cell metadata, positions and the
//!   scene that produced them) as an `.h5ad` file that Python's `anndata`, `scanpy` and
//!   `squidpy` read directly. It is written by hand with the HDF5 library rather than with
//!   the `anndata` crate, which drags in polars (a ~40 minute build) and could not read some
//!   files that Python reads.
//! - [`render_png`] draws a [`TissueView`]: one ligand field as a heat map under the cells,
//!   coloured by a per-cell value or category, with a legend strip.
//! - [`read_tissue`] imports an initial tissue (positions, cell types, expression of chosen
//!   genes) from an `.h5ad` file written by `anndata`, old or new, dense or sparse.
//!
//! All three return an [`IoError`] naming the file rather than panicking. The writers check
//! their inputs and write to a temporary file beside the target that is renamed into place
//! only when complete; the reader names the HDF5 field and the value it could not use.

mod atomic;
mod colour;
mod error;
mod font;
mod h5ad;
mod read;
mod render;

pub use error::IoError;
pub use h5ad::{FieldSnapshot, ObsColumn, Snapshot, write_h5ad};
pub use read::{Coordinates, ImportRequest, ImportedTissue, read_tissue};
pub use render::{CellColour, TissueView, render_png};
