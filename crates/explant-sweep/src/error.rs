use std::path::PathBuf;

use thiserror::Error;

/// Errors of a sweep spec, a parameter path, a readout or the sweep's runs.
#[derive(Debug, Error)]
pub enum SweepError {
    /// The spec file could not be read.
    #[error("cannot read sweep spec `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
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
    /// The scene of a point is not valid (its error is part of this message, not a
    /// separate cause, so tables and logs that keep one line keep the reason).
    #[error("sweep point {point}: {error}")]
    Scene {
        /// The point's id.
        point: String,
        /// The scene's error.
        error: explant_scene::SceneError,
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
    /// A file or folder of the sweep could not be read or written.
    #[error("cannot {action} `{}`", path.display())]
    File {
        /// `read`, `write`, `create`, `remove`, `move`…
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a run's files failed.
    #[error(transparent)]
    Run(#[from] explant_run::RunError),
    /// Another sweep holds the sweep directory (its lock, `.explant.lock`).
    #[error("another `explant sweep` is using `{}`; wait for it to end or choose another `--out`", path.display())]
    Locked {
        /// The sweep directory.
        path: PathBuf,
    },
    /// Some runs failed (their simulation, not the sweep's input); the table was written
    /// with their errors. A caller can tell this from an invalid input by its variant.
    #[error(
        "{} of {total} runs failed ({}); their errors are in `{}`; rerun the same command to retry them",
        runs.len(),
        runs.join(", "),
        dir.join("runs").join("*.failed").display()
    )]
    RunsFailed {
        /// The failed runs' ids.
        runs: Vec<String>,
        /// All runs of the sweep.
        total: usize,
        /// The sweep directory.
        dir: PathBuf,
    },
    /// A signal stopped the sweep: its runs in flight were killed and their partial
    /// outputs discarded; the table holds what finished.
    #[error(
        "sweep stopped by {signal}: {stopped} run(s) in flight were killed and discarded, {done} of {total} runs \
         are complete; rerun the same command to resume"
    )]
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
        /// Runs killed.
        stopped: usize,
        /// Runs complete.
        done: usize,
        /// All runs of the sweep.
        total: usize,
    },
    /// The sweep cannot go on; the message says what to do.
    #[error("{0}")]
    Stopped(String),
}

impl SweepError {
    /// A file error.
    pub(crate) fn file(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::File { action, path, source }
    }
}
