use std::path::PathBuf;

use thiserror::Error;

/// Errors of a sweep spec, a parameter path or a readout.
#[derive(Debug, Error)]
pub enum SweepError {
    /// The spec file could not be read.
    #[error("cannot read sweep spec `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The spec is not valid TOML or has unknown fields.
    #[error("sweep spec `{}` is not valid: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message (with line and column).
        message: String,
    },
    /// A field of the spec has a bad value.
    #[error("sweep spec `{}`: field `{field}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The base scene, or the scene of a point, is not valid.
    #[error("sweep point {point}: {source}")]
    Scene {
        /// The point's id.
        point: String,
        /// The scene's error.
        source: explant_scene::SceneError,
    },
    /// A run's output could not be read for a readout.
    #[error("run `{}`: readout `{readout}`: {message}", dir.display())]
    Readout {
        /// The run directory.
        dir: PathBuf,
        /// The readout.
        readout: String,
        /// What is wrong.
        message: String,
    },
}
