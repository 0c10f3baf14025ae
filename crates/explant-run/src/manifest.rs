//! The run manifest (`manifest.json`): what ran, with what, and how it ended, as one
//! typed struct written and read by serde.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use explant_core::Stage;
use serde::{Deserialize, Serialize};

use crate::RunError;

/// How a run ended (or that it is still going).
///
/// In JSON a finished run reads `"status": "completed"`; a failed one
/// `"status": {"failed": {"stage": "respond", "tick": 12, "message": "…"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started and not finished.
    Running,
    /// Every planned tick ran and every output was written.
    Completed,
    /// The simulation stopped early; the outputs hold the state up to `tick`.
    Failed {
        /// The stage that produced the failure (`respond`, `diffuse`, `record`…).
        stage: String,
        /// The tick at which the run stopped.
        tick: u64,
        /// The error, with its causes.
        message: String,
    },
}

impl Status {
    /// Whether the run completed.
    pub fn is_completed(&self) -> bool {
        matches!(self, Status::Completed)
    }
}

/// Files the run wrote, relative to its directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    /// The final state.
    #[serde(rename = "final")]
    pub final_state: String,
    /// The snapshot folder.
    pub snapshots: String,
    /// The picture.
    pub picture: String,
    /// The pseudobulk time series.
    pub timeseries: String,
    /// Ligand totals over time.
    pub ligand_totals: String,
}

impl Default for Outputs {
    fn default() -> Self {
        use crate::RunFile as F;
        Self {
            final_state: F::Tissue.name().into(),
            snapshots: format!("{}/", F::Snapshots.name()),
            picture: F::Picture.name().into(),
            timeseries: F::Timeseries.name().into(),
            ligand_totals: F::LigandTotals.name().into(),
        }
    }
}

/// The manifest of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// explant version that ran.
    pub explant_version: String,
    /// Git commit it was built from.
    pub git_commit: String,
    /// The command line.
    pub command_line: Vec<String>,
    /// The scene file as given.
    pub scene: String,
    /// FNV-1a 64-bit hash of the scene text that ran (hex).
    pub scene_fnv1a64: String,
    /// The scene's seed.
    pub seed: u64,
    /// How the run ended.
    pub status: Status,
    /// Ticks run.
    pub ticks_completed: u64,
    /// Ticks planned.
    pub ticks_planned: u64,
    /// The tick, minutes.
    pub dt_min: f32,
    /// Simulated time reached, minutes.
    pub time_min: f64,
    /// Cells at the end.
    pub cells: usize,
    /// Diffusion backend.
    pub diffusion_backend: String,
    /// Response model.
    pub response_model: String,
    /// Worker threads.
    pub threads: usize,
    /// Wall time of the tick loop, seconds.
    pub wall_seconds: f64,
    /// Wall time per stage, seconds.
    pub stage_seconds: BTreeMap<String, f64>,
    /// The files written.
    #[serde(default)]
    pub outputs: Outputs,
    /// Whether the paired control ran.
    pub paired_control: bool,
    /// Checkpoint interval, ticks (`--checkpoint-every`), when checkpoints are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_ticks: Option<u64>,
    /// The ticks `explant resume` continued from, in order (empty for a run that ran
    /// through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_from_ticks: Vec<u64>,
}

impl Manifest {
    /// Read a manifest.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or does not parse.
    pub fn read(path: &Path) -> Result<Self, RunError> {
        let text = std::fs::read_to_string(path).map_err(RunError::file("read", path))?;
        serde_json::from_str(&text).map_err(|source| RunError::Manifest { path: path.to_path_buf(), source })
    }

    /// Write the manifest (pretty JSON, through a temporary file renamed into place).
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), RunError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|source| RunError::Manifest { path: path.to_path_buf(), source })?;
        explant_io::write_text(path, &(text + "\n"))?;
        Ok(())
    }

    /// Stage times in tick order (stages this build does not know last).
    pub fn stages_in_order(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Stage::ALL
            .iter()
            .filter_map(|s| self.stage_seconds.get(s.name()).map(|&v| (s.name().to_owned(), v)))
            .collect();
        for (k, &v) in &self.stage_seconds {
            if !out.iter().any(|(n, _)| n == k) {
                out.push((k.clone(), v));
            }
        }
        out
    }

    /// The scene file's stem, for titles.
    pub fn scene_stem(&self) -> Option<String> {
        PathBuf::from(&self.scene).file_stem().map(|s| s.to_string_lossy().into_owned())
    }
}

/// FNV-1a, 64 bit: a stable fingerprint of the scene text for the manifest.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(status: Status) -> Manifest {
        Manifest {
            explant_version: "0.1.0".into(),
            git_commit: "abc".into(),
            command_line: vec!["explant".into(), "run".into()],
            scene: "scenes/default.toml".into(),
            scene_fnv1a64: format!("{:016x}", fnv1a64(b"x")),
            seed: 7,
            status,
            ticks_completed: 3,
            ticks_planned: 10,
            dt_min: 0.5,
            time_min: 1.5,
            cells: 12,
            diffusion_backend: "cpu".into(),
            response_model: "teacher".into(),
            threads: 2,
            wall_seconds: 0.25,
            stage_seconds: [("record".to_owned(), 0.1), ("secrete".to_owned(), 0.2), ("later".to_owned(), 0.3)]
                .into_iter()
                .collect(),
            outputs: Outputs::default(),
            paired_control: true,
            checkpoint_every_ticks: Some(4),
            resumed_from_ticks: vec![2],
        }
    }

    #[test]
    fn a_completed_status_reads_as_the_plain_word_and_a_failure_names_stage_and_tick() {
        let json = serde_json::to_value(sample(Status::Completed)).unwrap();
        assert_eq!(json["status"], "completed");
        let failed = Status::Failed { stage: "respond".into(), tick: 3, message: "NaN".into() };
        let json = serde_json::to_value(sample(failed.clone())).unwrap();
        assert_eq!(json["status"]["failed"]["stage"], "respond");
        assert_eq!(json["status"]["failed"]["tick"], 3);
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back.status, failed);
    }

    #[test]
    fn a_manifest_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("explant-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("manifest.json");
        let m = sample(Status::Running);
        m.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), m);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stage_times_come_in_tick_order_with_unknown_stages_last() {
        let names: Vec<String> = sample(Status::Completed).stages_in_order().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["secrete", "record", "later"]);
    }

    #[test]
    fn fnv_matches_the_published_test_vector() {
        // FNV-1a 64 of "a" (Fowler–Noll–Vo reference vectors).
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
