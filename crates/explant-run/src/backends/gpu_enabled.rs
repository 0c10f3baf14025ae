//! The wgpu diffusion backend (this build has the `gpu` feature).

use explant_field::{DiffusionBackend, Scheme};
use explant_gpu::{AdapterPolicy, GpuDiffusion};

use crate::RunError;

/// Whether this build has the GPU backend.
pub const ENABLED: bool = true;

/// The wgpu backend for `scheme`; `hardware_only` refuses CPU emulations such as lavapipe.
///
/// # Errors
///
/// When no adapter fits (the message names every backend tried).
pub fn diffusion(hardware_only: bool, scheme: Scheme) -> Result<Box<dyn DiffusionBackend>, RunError> {
    let policy = if hardware_only { AdapterPolicy::HardwareOnly } else { AdapterPolicy::Any };
    Ok(Box::new(GpuDiffusion::with_scheme(policy, scheme)?))
}

/// The copy bandwidth of the GPU (any adapter), bytes per second, with its name:
/// `repeats` copies of `bytes` ([`GpuDiffusion::copy_bandwidth`]).
///
/// # Errors
///
/// When no adapter fits or the copies fail.
pub fn copy_bandwidth(bytes: u64, repeats: u32) -> Result<(String, f64), RunError> {
    let gpu = GpuDiffusion::with_scheme(AdapterPolicy::Any, Scheme::Implicit)?;
    let rate = gpu.copy_bandwidth(bytes, repeats)?;
    let info = gpu.adapter_info();
    Ok((format!("`{}` ({:?})", info.name, info.backend), rate))
}
