//! Choosing the diffusion backend and the response model.
//!
//! Each optional backend has one module pair, `*_enabled.rs` and `*_disabled.rs`, with the
//! same functions: the build picks one, so no `cfg` reaches a call site, and a backend
//! that is compiled out says so in one wording ([`RunError::NotEnabled`]).

use explant_core::{ModelSignature, ResponseModel, Teacher};
use explant_field::{CpuDiffusion, DiffusionBackend, Scheme};
use explant_scene::{LoadedScene, ModelSpec};

use crate::RunError;

#[cfg(feature = "gpu")]
#[path = "gpu_enabled.rs"]
pub mod gpu;
#[cfg(not(feature = "gpu"))]
#[path = "gpu_disabled.rs"]
pub mod gpu;

#[cfg(feature = "torch")]
#[path = "torch_enabled.rs"]
pub mod torch;
#[cfg(not(feature = "torch"))]
#[path = "torch_disabled.rs"]
pub mod torch;

/// What `torch::bench_model` measures: the model at `model` on synthetic populations.
#[derive(Debug, Clone)]
pub struct ModelBench {
    /// The TorchScript model (`.pt`, with its `.json` beside it).
    pub model: std::path::PathBuf,
    /// Population sizes.
    pub cells: Vec<usize>,
    /// Timed repetitions per size and path (after one warm-up).
    pub reps: usize,
    /// Threads the model's chunks run on, and the raw paths' libtorch threads (0: all cores).
    pub threads: usize,
}

/// Where the ligand fields are solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiffusionChoice {
    /// The GPU if a hardware adapter exists, else the CPU (with a note).
    #[default]
    Auto,
    /// The CPU (rayon).
    Cpu,
    /// The GPU through wgpu, any adapter (CPU emulations such as lavapipe included).
    Gpu,
}

/// The diffusion backend for `choice` and the scene's `scheme`, with a note for the user
/// when `auto` fell back to the CPU.
///
/// # Errors
///
/// When `gpu` was asked for and no adapter (or no GPU support in this build) exists.
pub fn diffusion(
    choice: DiffusionChoice,
    scheme: Scheme,
) -> Result<(Box<dyn DiffusionBackend>, Option<String>), RunError> {
    let cpu = || -> Box<dyn DiffusionBackend> { Box::new(CpuDiffusion::with_scheme(scheme)) };
    match choice {
        DiffusionChoice::Cpu => Ok((cpu(), None)),
        DiffusionChoice::Gpu => gpu::diffusion(false, scheme).map(|b| (b, None)),
        DiffusionChoice::Auto => match gpu::diffusion(true, scheme) {
            Ok(b) => Ok((b, None)),
            Err(e) => Ok((cpu(), Some(format!("diffusion on the CPU: {}", crate::error_chain(&e))))),
        },
    }
}

/// The response model the scene's `[model]` names (the teacher, or a TorchScript file).
///
/// # Errors
///
/// When a TorchScript model has no path, does not load, does not fit the scene, or this
/// build has no libtorch.
pub fn model(scene: &LoadedScene, threads: usize) -> Result<Box<dyn ResponseModel>, RunError> {
    if scene.scene.model.kind == ModelSpec::Teacher {
        return Ok(Box::new(Teacher::from_scene(&scene.scene)));
    }
    let Some(path) = &scene.scene.model.path else {
        return Err(RunError::SceneField {
            scene: scene.path.clone(),
            field: "model.path".into(),
            message: "required for a `torchscript` model".into(),
        });
    };
    torch::model(&scene.resolve(path), &ModelSignature::of_scene(&scene.scene), threads)
}
