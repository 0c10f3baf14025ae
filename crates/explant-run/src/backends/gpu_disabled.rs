//! The wgpu diffusion backend is not in this build (no `gpu` feature).

use explant_field::{DiffusionBackend, Scheme};

use crate::RunError;

/// Whether this build has the GPU backend.
pub const ENABLED: bool = false;

/// Always [`RunError::NotEnabled`].
///
/// # Errors
///
/// Always: this build has no GPU backend.
pub fn diffusion(_hardware_only: bool, _scheme: Scheme) -> Result<Box<dyn DiffusionBackend>, RunError> {
    Err(RunError::NotEnabled {
        feature: "gpu",
        what: "GPU diffusion".into(),
        alternative: ", or use the CPU: `--diffusion cpu`, or `diffusion=\"cpu\"` in Python",
    })
}

/// Always [`RunError::NotEnabled`].
///
/// # Errors
///
/// Always: this build has no GPU backend.
pub fn copy_bandwidth(_bytes: u64, _repeats: u32) -> Result<(String, f64), RunError> {
    diffusion(false, Scheme::Implicit).map(|_| (String::new(), 0.0))
}
