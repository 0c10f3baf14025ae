//! Files of explant runs: AnnData snapshots and PNG pictures of the tissue out, an initial
//! tissue from AnnData in.
//!
//! - [`write_h5ad`] writes one [`Snapshot`] (expression, cell metadata, positions and the
//!   scene that produced them) as an `.h5ad` file that Python's `anndata`, `scanpy` and
//!   `squidpy` read directly. It is written by hand with the HDF5 library rather than with
//!   the `anndata` crate, which drags in polars (a ~40 minute build) and could not read some
//!   files that Python reads.
//! - [`render_png`] draws a [`TissueView`] (a 3D tissue from above, or a slice at one z):
//!   one ligand field as a heat map under the cells,
//!   coloured by a per-cell value or category, with a legend strip.
//! - [`read_tissue`] imports an initial tissue (positions, cell types, expression of chosen
//!   genes) from an `.h5ad` file written by `anndata`, old or new, dense or sparse.
//! - [`read_snapshot`] reads a run's own snapshot back whole ([`RunSnapshot`]: every gene,
//!   the control layer, the ligand fields and their grid), to draw it again.
//! - [`LinePlot::to_svg`] draws line plots as self-contained SVG; [`timeseries_plots`],
//!   [`response_plot`] and [`largest_effects`] turn a run's tables into plots and rows, and [`Report::to_html`] lays them out as one HTML file with the
//!   pictures embedded.
//! - [`heatmap_png`] and [`bars_png`] draw the charts of an explanation: a heat map of
//!   shares and bar charts of signed effects with error bars.
//!
//! The readers and writers return an [`IoError`] naming the file rather than panicking. The writers check
//! their inputs and write to a temporary file beside the target that is renamed into place
//! only when complete; the reader names the HDF5 field and the value it could not use.

mod atomic;
mod chart;
mod colour;
mod error;
mod font;
mod h5ad;
mod plot;
mod read;
mod render;
mod report;
mod vtk;

pub use chart::{Bar, BarChart, BarPanel, HeatMap, bars_png, heatmap_png};
pub use error::IoError;
pub use h5ad::{
    CONNECTIVITIES_KEY, CellMatrix, DISTANCES_KEY, FieldSnapshot, NeighbourGraph, ObsColumn, Snapshot,
    write_cell_matrix, write_h5ad,
};
pub use plot::{LinePlot, Series, panels_svg};
pub use read::{
    Coordinates, ImportRequest, ImportedTissue, RunSnapshot, SnapshotFields, read_snapshot, read_tissue, read_var_names,
};
pub use render::{CellColour, Labels, TissueView, format_um, render_png};
pub use report::{
    Block, Effect, Report, Section, Table, base64, escape_html, largest_effects, response_plot, timeseries_genes,
    timeseries_plots, write_text,
};
pub use vtk::{VtkEncoding, write_cells_vtu, write_fields_vtk, write_pvd};
