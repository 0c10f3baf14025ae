use std::path::PathBuf;

use thiserror::Error;

/// Errors loading, running or fitting a TorchScript response model.
#[derive(Debug, Error)]
pub enum TorchError {
    /// The `.pt` file is missing.
    #[error("model file `{}` does not exist or is not a file", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// libtorch could not load the file as TorchScript.
    #[error("`{}` is not a TorchScript model: {message}", path.display())]
    NotTorchScript {
        /// The path given.
        path: PathBuf,
        /// libtorch's first line.
        message: String,
    },
    /// The metadata file is missing or malformed.
    #[error("model metadata `{}`: {message}", path.display())]
    BadMeta {
        /// The `.json` path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model does not reproduce the check case stored in its metadata.
    #[error("model `{}` does not reproduce its stored check case (largest difference {worst}): the `.pt` and `.json` files do not belong together", path.display())]
    CheckFailed {
        /// The `.pt` path.
        path: PathBuf,
        /// Largest absolute difference.
        worst: f32,
    },
    /// The model does not fit the scene, or failed to run.
    #[error(transparent)]
    Model(#[from] explant_core::ModelError),
    /// libtorch failed during fitting or export (its error is the source).
    #[error("libtorch reported an error")]
    Torch(#[from] tch::TchError),
    /// Writing an output failed.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A training option names something the scene does not have.
    #[error("option `--{option}`: {message}")]
    BadOption {
        /// The option.
        option: String,
        /// What is wrong.
        message: String,
    },
    /// Running the teacher to find the input ranges failed (the simulation's error is the
    /// source).
    #[error("running the teacher failed")]
    Teacher(#[from] explant_core::CoreError),
    /// Writing a file of the evaluation's export failed (the writer names the file; boxed,
    /// as it is large and rare).
    #[error(transparent)]
    Io(Box<explant_io::IoError>),
    /// A simulation of the evaluation failed (the simulation's error is the source).
    #[error("running the scene failed")]
    Simulation(#[source] explant_core::CoreError),
}
