//! Choosing the diffusion backend and the response model. Optional backends that are
//! compiled out say so clearly instead of failing obscurely.

use anyhow::{Result, bail};
use explant_core::{ModelSignature, ResponseModel, Teacher};
use explant_field::{CpuDiffusion, DiffusionBackend, Scheme};
use explant_scene::{LoadedScene, ModelSpec};

use crate::cli::DiffusionChoice;

/// The diffusion backend for `choice` and the scene's `scheme`, with a note for the user
/// when `auto` fell back to the CPU.
pub fn diffusion(choice: DiffusionChoice, scheme: Scheme) -> Result<(Box<dyn DiffusionBackend>, Option<String>)> {
    let cpu = || -> Box<dyn DiffusionBackend> { Box::new(CpuDiffusion::with_scheme(scheme)) };
    match choice {
        DiffusionChoice::Cpu => Ok((cpu(), None)),
        DiffusionChoice::Gpu => gpu(false, scheme).map(|b| (b, None)),
        DiffusionChoice::Auto => match gpu(true, scheme) {
            Ok(b) => Ok((b, None)),
            Err(e) => Ok((cpu(), Some(format!("diffusion on the CPU: {e}")))),
        },
    }
}

/// The wgpu backend for `scheme`; `hardware_only` refuses CPU emulations such as lavapipe.
#[cfg(feature = "gpu")]
pub fn gpu(hardware_only: bool, scheme: Scheme) -> Result<Box<dyn DiffusionBackend>> {
    use explant_gpu::{AdapterPolicy, GpuDiffusion};
    let policy = if hardware_only { AdapterPolicy::HardwareOnly } else { AdapterPolicy::Any };
    Ok(Box::new(GpuDiffusion::with_scheme(policy, scheme)?))
}

/// The GPU backend is not compiled in.
#[cfg(not(feature = "gpu"))]
pub fn gpu(_hardware_only: bool, _scheme: Scheme) -> Result<Box<dyn DiffusionBackend>> {
    bail!("the GPU diffusion backend is not enabled in this build (rebuild with `--features gpu`)")
}

/// The response model the scene asks for (or the teacher when `teacher` is set).
pub fn model(scene: &LoadedScene, teacher: bool, threads: usize) -> Result<Box<dyn ResponseModel>> {
    if teacher || scene.scene.model.kind == ModelSpec::Teacher {
        return Ok(Box::new(Teacher::from_scene(&scene.scene)));
    }
    let Some(path) = &scene.scene.model.path else {
        bail!("scene `{}`: `model.path` is required for a `torchscript` model", scene.path.display());
    };
    torch_model(&scene.resolve(path), &ModelSignature::of_scene(&scene.scene), threads)
}

#[cfg(feature = "torch")]
fn torch_model(path: &std::path::Path, sig: &ModelSignature, threads: usize) -> Result<Box<dyn ResponseModel>> {
    Ok(Box::new(explant_torch::TorchModel::load_for(path, sig, threads)?))
}

#[cfg(not(feature = "torch"))]
fn torch_model(path: &std::path::Path, _sig: &ModelSignature, _threads: usize) -> Result<Box<dyn ResponseModel>> {
    bail!(
        "model `{}` needs TorchScript support, which is not enabled in this build (rebuild with `--features torch`, or run with `--teacher`)",
        path.display()
    )
}
