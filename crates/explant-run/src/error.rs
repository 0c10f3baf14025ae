//! Errors of a run and of its directory.

use std::path::PathBuf;

use thiserror::Error;

/// Errors from preparing, running or reading a run.
#[derive(Debug, Error)]
pub enum RunError {
    /// The scene failed to load or validate.
    #[error(transparent)]
    Scene(#[from] explant_scene::SceneError),
    /// Building or stepping the simulation failed.
    #[error(transparent)]
    Core(#[from] explant_core::CoreError),
    /// The response model failed or does not fit the scene.
    #[error(transparent)]
    Model(#[from] explant_core::ModelError),
    /// A diffusion backend could not start.
    #[error(transparent)]
    Field(#[from] explant_field::FieldError),
    /// Reading or writing an AnnData file, a picture or a plot failed.
    #[error(transparent)]
    Io(#[from] explant_io::IoError),
    /// A GPU adapter or device could not be had.
    #[cfg(feature = "gpu")]
    #[error(transparent)]
    Gpu(#[from] explant_gpu::GpuError),
    /// Loading, training or running a TorchScript model failed.
    #[cfg(feature = "torch")]
    #[error(transparent)]
    Torch(#[from] explant_torch::TorchError),
    /// An optional backend was asked for that this build does not have.
    #[error(
        "{what} needs the `{feature}` backend, which is not enabled in this build (rebuild with `--features {feature}`{alternative})"
    )]
    NotEnabled {
        /// The cargo feature that would provide it.
        feature: &'static str,
        /// What asked for it.
        what: String,
        /// A way around it (e.g. `, or run with the scene's teacher: …`), or empty.
        alternative: &'static str,
    },
    /// A file or directory could not be read or written.
    #[error("cannot {action} `{}`", path.display())]
    File {
        /// `read`, `write`, `create`, `remove`…
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The output directory cannot be used.
    #[error("output `{}`: {message}", path.display())]
    OutDir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        message: String,
    },
    /// A directory is not an explant run directory.
    #[error("`{}` is not an explant run directory: {message}", path.display())]
    NotARun {
        /// The directory.
        path: PathBuf,
        /// Why not.
        message: String,
    },
    /// A manifest could not be parsed or written.
    #[error("manifest `{}`", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A table (CSV) could not be read or written, or a row is malformed.
    #[error("table `{}` {message}", path.display())]
    Table {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the line or column.
        message: String,
    },
    /// A field of the scene cannot be used (e.g. its imported tissue does not fit).
    #[error("scene `{}`: field `{field}`: {message}", scene.display())]
    SceneField {
        /// The scene file.
        scene: PathBuf,
        /// The field, e.g. `tissue.path`.
        field: String,
        /// What is wrong (with its causes).
        message: String,
    },
    /// A request that cannot be served (an unknown gene or ligand, a missing snapshot or
    /// run directory); the message names the option or path and the value.
    #[error("{0}")]
    Invalid(String),
    /// A checkpoint cannot be used.
    #[error("checkpoint `{}`: {message}", path.display())]
    Checkpoint {
        /// The file.
        path: std::path::PathBuf,
        /// Why it cannot be used.
        message: String,
    },
    /// A user's option is invalid.
    #[error("option `{option}`: {message}")]
    Option {
        /// The option, e.g. `--model`.
        option: String,
        /// What is wrong.
        message: String,
    },
}

impl RunError {
    /// A file error.
    pub(crate) fn file(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::File { action, path, source }
    }
}
