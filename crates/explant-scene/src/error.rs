use std::path::PathBuf;

use thiserror::Error;

/// Errors reading a scene.
#[derive(Debug, Error)]
pub enum SceneError {
    /// The file could not be read.
    #[error("cannot read scene `{}`", path.display())]
    Read {
        /// The scene file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or does not match the schema (the message carries the
    /// line, column and field).
    #[error("scene `{}` is not valid: {message}", path.display())]
    Parse {
        /// The scene file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field has a value the schema allows but the model cannot use.
    #[error("scene `{}`: field `{field}`: {message}", path.display())]
    Invalid {
        /// The scene file.
        path: PathBuf,
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Something a scene allows but probably does not mean (it may still act later, so it is
/// not refused): printed as `scene `FILE`: field `FIELD`: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneWarning {
    /// The scene file.
    pub path: PathBuf,
    /// Dotted path of the field.
    pub field: String,
    /// What may be wrong.
    pub message: String,
}

impl std::fmt::Display for SceneWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "scene `{}`: field `{}`: {}", self.path.display(), self.field, self.message)
    }
}
