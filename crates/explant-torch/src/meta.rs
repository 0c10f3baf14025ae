//! The metadata that travels beside a `.pt` file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TorchError;

/// Format tag written in every metadata file.
pub const META_FORMAT: &str = "explant-response-model";

/// What a model expects and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Always [`META_FORMAT`].
    pub format: String,
    /// Metadata version, 1.
    pub version: u32,
    /// Genes: columns of `expression`, `contact` and the output.
    pub genes: Vec<String>,
    /// Ligands: columns of `sensed`.
    pub ligands: Vec<String>,
    /// Cell types: columns of `cell_type_onehot`.
    pub cell_types: Vec<String>,
    /// Human-readable description of the inputs and output.
    pub contract: String,
    /// Whether `forward` takes a fifth input, `neighbour_types [N,T]`: the number of
    /// neighbours of each cell type within the contact radius (absent: four inputs).
    #[serde(default)]
    pub neighbour_counts: bool,
    /// Whether `forward` also returns secretion per cell and ligand, `[N,L]` amount/min.
    /// A model with optional outputs returns a tuple (rates, secretion if declared, fate
    /// if declared), or one tensor holding them side by side in that order.
    #[serde(default)]
    pub secretion: bool,
    /// Whether `forward` also returns fate scores, `[N,2]`: an apoptosis hazard per
    /// minute and a cycle progression factor in `[0, 1]`.
    #[serde(default)]
    pub fate: bool,
    /// How it was trained, if by explant.
    #[serde(default)]
    pub training: Option<TrainingInfo>,
    /// How it was learned from a spatial section by `explant learn` (the command, the
    /// section, the gene panel and the held-out scores), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<serde_json::Value>,
    /// One input and the output the model must give for it (to 1e-4).
    pub check: CheckCase,
}

/// A fixed input with its expected output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckCase {
    /// Own expression, `G`.
    pub expression: Vec<f32>,
    /// Sensed ligands, `L`.
    pub sensed: Vec<f32>,
    /// Contact means, `G`.
    pub contact: Vec<f32>,
    /// Cell type index.
    pub cell_type: u32,
    /// Neighbours by cell type, `T` (only for a model with `neighbour_counts`).
    #[serde(default)]
    pub neighbour_types: Option<Vec<f32>>,
    /// The model's `dx/dt`, `G`.
    pub output: Vec<f32>,
    /// The teacher's `dx/dt` for the same input, when trained on one.
    #[serde(default)]
    pub teacher_output: Option<Vec<f32>>,
    /// The model's secretion for this input, `L` (checked when given).
    #[serde(default)]
    pub secretion: Option<Vec<f32>>,
    /// The model's fate scores for this input, 2 (checked when given).
    #[serde(default)]
    pub fate: Option<Vec<f32>>,
}

/// Provenance and held-out accuracy of a fitted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    /// The command that produced the model.
    pub command: String,
    /// The scene whose teacher was fitted.
    pub scene: String,
    /// Seed.
    pub seed: u64,
    /// Adam steps taken (all members together).
    pub steps: usize,
    /// Networks averaged (an ensemble when more than 1).
    #[serde(default = "one")]
    pub members: usize,
    /// Training and validation samples.
    pub samples: (usize, usize),
    /// Validation mean squared error of `dx/dt`.
    pub val_mse: f64,
    /// Validation MSE of predicting no change (`dx/dt = 0`).
    pub val_mse_no_change: f64,
    /// Validation MSE of predicting the training mean rate.
    pub val_mse_mean: f64,
    /// Upper ends of the sampled input ranges (expression, sensed per ligand).
    pub input_ranges: Vec<f32>,
    /// Teacher runs (perturbation contexts) the on-trajectory samples came from (0: the
    /// samples were all drawn from the input box).
    #[serde(default)]
    pub contexts: usize,
    /// Cell type left out of training (for held-out evaluation).
    #[serde(default)]
    pub hold_out_type: Option<String>,
    /// Genes whose perturbations were left out of training.
    #[serde(default)]
    pub hold_out_genes: Vec<String>,
    /// Cell types no training sample had: their one-hot column is ignored by the model.
    #[serde(default)]
    pub unseen_types: Vec<String>,
}

fn one() -> usize {
    1
}

impl ModelMeta {
    /// Read and check a metadata file.
    pub fn read(path: &Path) -> Result<Self, TorchError> {
        let bad = |message: String| TorchError::BadMeta { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(format!("cannot read it ({e}); every `.pt` model needs its metadata `.json` beside it"))
        })?;
        let meta: ModelMeta = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if meta.format != META_FORMAT || meta.version != 1 {
            return Err(bad(format!(
                "`format` is `{}` version `{}`; expected `{META_FORMAT}` version `1`",
                meta.format, meta.version
            )));
        }
        Ok(meta)
    }

    /// Write as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), TorchError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| TorchError::BadMeta { path: path.to_path_buf(), message: e.to_string() })?;
        std::fs::write(path, text + "\n").map_err(|source| TorchError::Write { path: path.to_path_buf(), source })
    }
}
