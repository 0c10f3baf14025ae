use thiserror::Error;

/// Errors from building or running a simulation.
#[derive(Debug, Error)]
pub enum CoreError {
    /// The diffusion backend failed.
    #[error(transparent)]
    Field(#[from] explant_field::FieldError),
    /// The response model failed or does not fit the scene.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A ligand's initial condition could not be built.
    #[error("ligand `{ligand}`: initial condition from `{}`: {message}", path.display())]
    Initial {
        /// The ligand.
        ligand: String,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The imported tissue does not fit the scene.
    #[error("tissue from `{}`: {message}", path.display())]
    Tissue {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The state became NaN, infinite or ran away.
    #[error("tick {tick} (t = {time} min): {what}")]
    Unstable {
        /// Tick at which it was detected.
        tick: u64,
        /// Simulated time.
        time: f64,
        /// What was found.
        what: String,
    },
}

/// Errors of a response model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The model's names do not match the scene's.
    #[error("model `{model}` does not fit the scene: {what}")]
    Mismatch {
        /// The model's name or path.
        model: String,
        /// What differs, naming the first missing or misplaced entry.
        what: String,
    },
    /// Running the model failed.
    #[error("model `{model}` failed: {message}")]
    Run {
        /// The model's name or path.
        model: String,
        /// What went wrong.
        message: String,
    },
}
