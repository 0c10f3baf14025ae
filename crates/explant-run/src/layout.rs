//! The run directory: one owner for its file names and for opening it.
//!
//! Every file an `explant run` writes is named here, once; `render`, `report`, sweeps and
//! anything else that reads a run goes through [`RunDir`] instead of joining names by
//! hand.

use std::path::{Path, PathBuf};

use crate::RunError;
use crate::manifest::Manifest;
use crate::tables::{Table, read_table};

/// The files and folders of a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFile {
    /// `manifest.json`: what ran, how, and how it ended ([`Manifest`]).
    Manifest,
    /// `scene.toml`: the exact scene that ran (with any model override recorded).
    Scene,
    /// `tissue.h5ad`: the final state as AnnData.
    Tissue,
    /// `snapshots/`: `tick_NNNNNNN.h5ad` at every recorded time point.
    Snapshots,
    /// `tissue.png`: the run's own picture.
    Picture,
    /// `timeseries.csv`: pseudobulk by cell type over time.
    Timeseries,
    /// `timeseries_control.csv`: the same for the paired control.
    TimeseriesControl,
    /// `timeseries_regions.csv`: pseudobulk by region and cell type over time.
    TimeseriesRegions,
    /// `ligand_totals.csv`: each ligand's total on the grid over time.
    LigandTotals,
    /// `effects.csv`: perturbed − control per gene and group of cells.
    Effects,
    /// `response_vs_distance.csv`: the effect per gene in distance bins.
    ResponseVsDistance,
    /// `figures/`: pictures drawn by `explant render`.
    Figures,
    /// `report.html`: the page written by `explant report`.
    Report,
    /// `checkpoint.explant`: the latest checkpoint (`--checkpoint-every`), read by
    /// `explant resume`.
    Checkpoint,
    /// `explain/`: what `explant explain` writes.
    Explain,
    /// `explain/attribution.csv`: the share of each effect carried by each channel.
    Attribution,
    /// `explain/heatmap.png`: channel × target heat map of the shares of one group (beside
    /// it, `explain/bars_<GROUP>.png` per group: see [`crate::explain_charts`]).
    AttributionHeatmap,
    /// `vtk/`: ParaView files written by `explant export --vtk` ([`crate::export`]).
    Vtk,
}

impl RunFile {
    /// The file or folder name inside the run directory.
    pub fn name(self) -> &'static str {
        match self {
            RunFile::Manifest => "manifest.json",
            RunFile::Scene => "scene.toml",
            RunFile::Tissue => "tissue.h5ad",
            RunFile::Snapshots => "snapshots",
            RunFile::Picture => "tissue.png",
            RunFile::Timeseries => "timeseries.csv",
            RunFile::TimeseriesControl => "timeseries_control.csv",
            RunFile::TimeseriesRegions => "timeseries_regions.csv",
            RunFile::LigandTotals => "ligand_totals.csv",
            RunFile::Effects => "effects.csv",
            RunFile::ResponseVsDistance => "response_vs_distance.csv",
            RunFile::Figures => "figures",
            RunFile::Report => "report.html",
            RunFile::Checkpoint => "checkpoint.explant",
            RunFile::Explain => "explain",
            RunFile::Vtk => "vtk",
            RunFile::Attribution => "explain/attribution.csv",
            RunFile::AttributionHeatmap => "explain/heatmap.png",
        }
    }
}

/// A run directory: where a run writes, or one to read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A run directory at `root`, not checked (for writing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Open an existing run directory for reading.
    ///
    /// # Errors
    ///
    /// When `root` does not exist, is not a directory, or has no `manifest.json`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, RunError> {
        let root = root.into();
        if !root.exists() {
            return Err(RunError::Invalid(format!("run directory `{}` does not exist", root.display())));
        }
        if !root.is_dir() {
            return Err(RunError::NotARun {
                path: root,
                message: "it is not a directory; give the output directory of `explant run`".into(),
            });
        }
        if !root.join(RunFile::Manifest.name()).is_file() {
            return Err(RunError::NotARun {
                path: root,
                message: "it has no `manifest.json` (written by `explant run SCENE --out DIR`)".into(),
            });
        }
        Ok(Self { root })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of one of the run's files.
    pub fn path(&self, file: RunFile) -> PathBuf {
        self.root.join(file.name())
    }

    /// Whether the run has this file.
    pub fn has(&self, file: RunFile) -> bool {
        self.path(file).exists()
    }

    /// The snapshot file of `tick`: `snapshots/tick_NNNNNNN.h5ad`.
    pub fn snapshot(&self, tick: u64) -> PathBuf {
        self.path(RunFile::Snapshots).join(snapshot_name(tick))
    }

    /// The latest snapshot written (`snapshots/tick_*.h5ad` with the highest tick), if any:
    /// what a partial run (killed, or still going) has instead of `tissue.h5ad`.
    pub fn latest_snapshot(&self) -> Option<PathBuf> {
        let entries = std::fs::read_dir(self.path(RunFile::Snapshots)).ok()?;
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                let tick: u64 = name.strip_prefix("tick_")?.strip_suffix(".h5ad")?.parse().ok()?;
                Some((tick, p))
            })
            .max_by_key(|(tick, _)| *tick)
            .map(|(_, p)| p)
    }

    /// The run's manifest.
    ///
    /// # Errors
    ///
    /// When it cannot be read or is not a manifest.
    pub fn manifest(&self) -> Result<Manifest, RunError> {
        Manifest::read(&self.path(RunFile::Manifest))
    }

    /// One of the run's tables, `None` when the run did not write it.
    ///
    /// # Errors
    ///
    /// When the file exists but cannot be read or is malformed.
    pub fn table(&self, file: RunFile) -> Result<Option<Table>, RunError> {
        let path = self.path(file);
        if path.exists() { read_table(&path).map(Some) } else { Ok(None) }
    }

    /// One of the run's tables, which must exist.
    ///
    /// # Errors
    ///
    /// When the file is missing, cannot be read or is malformed; `why` says what needs it.
    pub fn require_table(&self, file: RunFile, why: &str) -> Result<Table, RunError> {
        self.table(file)?.ok_or_else(|| RunError::Table { path: self.path(file), message: format!("missing: {why}") })
    }
}

/// `tick_NNNNNNN.h5ad`.
pub fn snapshot_name(tick: u64) -> String {
    format!("tick_{tick:07}.h5ad")
}
