//! TorchScript models are not in this build (no `torch` feature).

use std::io::Write;
use std::path::Path;

use explant_core::{ModelSignature, ResponseModel};

pub use super::ModelBench;
use crate::RunError;

/// Whether this build has libtorch.
pub const ENABLED: bool = false;

/// Always [`RunError::NotEnabled`].
///
/// # Errors
///
/// Always: this build has no libtorch.
pub fn model(path: &Path, _sig: &ModelSignature, _threads: usize) -> Result<Box<dyn ResponseModel>, RunError> {
    Err(not_enabled(format!("model `{}`", path.display())))
}

/// The error for anything that needs libtorch.
pub fn not_enabled(what: String) -> RunError {
    RunError::NotEnabled {
        feature: "torch",
        what,
        alternative: ", or run with the scene's teacher: `--teacher`, or `model=\"teacher\"` in Python",
    }
}

/// Always [`RunError::NotEnabled`].
///
/// # Errors
///
/// Always: this build has no libtorch.
pub fn bench_model(_args: &ModelBench, _out: &mut dyn Write) -> Result<serde_json::Value, RunError> {
    Err(not_enabled("`explant bench model`".into()))
}

/// Always [`RunError::NotEnabled`].
///
/// # Errors
///
/// Always: this build has no libtorch.
pub fn describe_model_json(path: &Path) -> Result<serde_json::Value, RunError> {
    Err(not_enabled(format!("model `{}`", path.display())))
}

/// Always [`RunError::NotEnabled`].
///
/// # Errors
///
/// Always: this build has no libtorch.
pub fn describe_model(path: &Path) -> Result<String, RunError> {
    Err(not_enabled(format!("model `{}`", path.display())))
}

/// Always [`RunError::NotEnabled`]: the learned model is written as TorchScript.
///
/// # Errors
///
/// Always: this build has no libtorch.
pub fn export_niche(_spec: &crate::learn::NicheSpec, _path: &Path) -> Result<(), RunError> {
    Err(not_enabled("`explant learn`".into()))
}
