//! A run of explant as a library.
//!
//! Everything between "here is a scene" and "here is a run directory" lives here, so the
//! CLI, sweeps, and later explanations, checkpoints and Python start runs from library
//! code rather than from a subprocess:
//!
//! - [`run`]: one scene end to end with its paired control ([`PairedRun`]): the same
//!   scene and seed without perturbations, stepped tick for tick), snapshots at the
//!   recording cadence, and the failure path (outputs up to the failing tick, a manifest
//!   that names the stage and tick);
//! - [`ModelChoice`]: `--teacher` and `--model` overrides, recorded in the run's
//!   `scene.toml` so that rerunning that copy gives the same result;
//! - [`backends`]: the diffusion backend and the response model, with one
//!   enabled/disabled module pair per optional backend (`gpu`, `torch` features);
//! - [`RunDir`] and [`RunFile`]: the one owner of the run directory's file names;
//!   [`Manifest`] its typed manifest; [`tables`] one writer and one reader for every CSV
//!   table (through the `csv` crate, so names with commas round-trip);
//! - [`explain`]: which signal channel carried a perturbation's effect, by
//!   counterfactual runs with one channel held at the control's value;
//! - [`figures`] and [`report`]: a run's pictures and its HTML page, read back through
//!   [`RunDir`].

pub mod backends;
pub mod bench;
mod checkpoint;
mod error;
pub mod explain;
pub mod explain_charts;
pub mod explain_gradients;
pub mod export;
pub mod figures;
mod import;
mod layout;
pub mod learn;
mod manifest;
mod model_choice;
pub mod outdir;
mod overrides;
pub mod report;
mod run;
mod snapshot;
pub mod stats;
pub mod tables;

pub use backends::DiffusionChoice;
pub use checkpoint::Checkpoint;
pub use error::RunError;
pub use import::imported_cells;
pub use layout::{RunDir, RunFile, snapshot_name};
pub use manifest::{Manifest, Outputs, Status, fnv1a64};
pub use model_choice::ModelChoice;
pub use overrides::Overrides;
pub use run::{Failure, Observer, PairedRun, ResumeOptions, RunOptions, RunOutcome, resume, run};
pub use snapshot::write_snapshot;

/// Version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git commit of this build.
pub const COMMIT: &str = env!("EXPLANT_GIT_COMMIT");

/// An error and its causes on one line, `outer: cause: cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// The thread count to use when `requested` are asked for on a machine with `available`
/// hardware threads: at most `available` (more only contend for the same cores, and a
/// pool of 100 000 threads never finished starting), with a note saying so; 0 stays 0
/// (all cores).
pub fn cap_threads(requested: usize, available: usize) -> (usize, Option<String>) {
    if requested <= available.max(1) {
        return (requested, None);
    }
    let n = available.max(1);
    (n, Some(format!("`--threads {requested}` is more than the {n} this machine has; using {n}")))
}

/// Use `n` worker threads for the CPU stages (0: all cores), capped at the machine's
/// available parallelism ([`cap_threads`]). Returns the count used (0: all cores) and,
/// when `n` was capped, a note for the user. Results are identical for any count; only
/// the first call in a process takes effect.
///
/// # Errors
///
/// When the pool cannot be built (e.g. it was already built with another count).
pub fn use_threads(n: usize) -> Result<(usize, Option<String>), RunError> {
    let available = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let (n, note) = cap_threads(n, available);
    if n > 0 {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().map_err(|e| RunError::Option {
            option: "--threads".into(),
            message: format!("cannot set up {n} worker threads: {e}"),
        })?;
    }
    Ok((n, note))
}

/// Run `f` on a worker thread of the pool set up by [`use_threads`], and return its
/// result. A tick makes several short parallel sections (a 75³-voxel diffusion step
/// takes well under a millisecond); started from a thread outside the pool, each one
/// hands its work to the workers and sleeps until they finish, paying one thread
/// wake-up to start and another to return (measured: about 40 µs of a 140 µs section on
/// a 2-core virtual machine). Started from a worker, the calling thread does its share
/// at once and waits for the rest without sleeping. Results are the same either way.
pub fn on_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    use super::cap_threads;

    #[test]
    fn thread_counts_above_the_machine_are_capped_with_a_note() {
        assert_eq!(cap_threads(0, 8), (0, None));
        assert_eq!(cap_threads(8, 8), (8, None));
        let (n, note) = cap_threads(100_000, 8);
        assert_eq!(n, 8);
        assert!(note.is_some_and(|s| s.contains("--threads 100000") && s.contains("using 8")));
        assert_eq!(cap_threads(3, 0).0, 1, "a machine that reports nothing counts as one thread");
    }
}
