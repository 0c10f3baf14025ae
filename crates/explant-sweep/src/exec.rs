//! Points of a sweep run one after another in this process (`explant sweep exec DIR ID…`):
//! a workflow job of K points pays the process start and the model library's load
//! (libtorch, about 0.3 s) once, not K times.
//!
//! Each point is run exactly as `explant run scenes/ID.toml` would run it (the run
//! library's [`explant_run::run`], its paired control, no figures), written to
//! `runs/.partial-ID` and renamed to `runs/ID` when it ends with a manifest, as the local
//! runner does ([`crate::runner`]). The points' outcomes:
//!
//! - **completed**, or **failed in the simulation** (a NaN, a diverged stage): a result.
//!   The run directory holds its manifest, and its row in the table says so.
//! - **already there** with such a manifest (a job rerun after a crash part way): skipped,
//!   so a rerun batch redoes only what did not end.
//! - **could not run** (a scene that no longer loads, a model that does not fit, a file
//!   that cannot be written): the error goes to `runs/ID.failed` and the other points go
//!   on; [`Executed::errors`] lists them and the command exits with status 1.
//!
//! Points are given by id (`run_00003`) and must have their scene in `scenes/`; an
//! unknown id is refused before anything runs. `exec` does not take the sweep directory's
//! lock: the workflow runs many jobs in one sweep directory at once, each on its own
//! points.

use std::path::Path;
use std::time::Instant;

use explant_run::{DiffusionChoice, ModelChoice, Overrides, RunOptions};
use explant_scene::LoadedScene;

use crate::SweepError;
use crate::runner::{Progress, RunState, failed_file, failure_text, partial_dir, run_dir, scene_file, state};

/// How [`exec`] runs its points.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Worker threads of the model (0: its default); the rayon pool is the caller's.
    pub threads: usize,
    /// Where diffusion runs.
    pub diffusion: DiffusionChoice,
    /// The command line, for each run's manifest.
    pub command_line: Vec<String>,
}

/// What became of the points given to [`exec`], by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Executed {
    /// Ran to the end.
    pub completed: Vec<String>,
    /// Ran and failed in the simulation, with its error ([`failure_text`]); the run
    /// directory and its manifest are the result.
    pub failed: Vec<(String, String)>,
    /// Already ended (completed or failed) in an earlier attempt; not run again.
    pub skipped: Vec<String>,
    /// Could not run, with the error (also in `runs/ID.failed`).
    pub errors: Vec<(String, String)>,
}

/// Run the points `ids` of the sweep directory `dir` one after another in this process.
/// `progress` hears of each point as it ends (`note`, then `done` with the id of a point
/// that did not complete).
///
/// # Errors
///
/// Before any point runs: when `dir` is not a sweep directory (no `sweep.toml` or no
/// `scenes/`), or an id has no scene there. A point that cannot run is not an error of
/// the call: it is listed in [`Executed::errors`].
pub fn exec(dir: &Path, ids: &[String], opts: &ExecOptions, progress: &dyn Progress) -> Result<Executed, SweepError> {
    if !dir.join("sweep.toml").is_file() || !dir.join("scenes").is_dir() {
        return Err(SweepError::Stopped(format!(
            "`{}` is not a sweep directory (no sweep.toml and scenes/); give the folder `explant sweep --emit` wrote",
            dir.display()
        )));
    }
    if ids.is_empty() {
        return Err(SweepError::Stopped("give the ids of the points to run (run_00001 …)".into()));
    }
    if let Some(id) = ids.iter().find(|id| !valid_id(id) || !scene_file(dir, id).is_file()) {
        return Err(SweepError::Stopped(format!(
            "`{id}` is not a point of the sweep in `{}` (no `scenes/{id}.toml`); points are named as in points.csv",
            dir.display()
        )));
    }
    let mut done = Executed::default();
    progress.start(ids.len() as u64);
    for (k, id) in ids.iter().enumerate() {
        let started = Instant::now();
        let position = format!("({} of {})", k + 1, ids.len());
        match state(dir, id) {
            RunState::Finished(_) | RunState::Failed { .. } => {
                progress.note(&format!("{id}: already ended in an earlier attempt; kept {position}"));
                done.skipped.push(id.clone());
                progress.done(None);
                continue;
            }
            RunState::Damaged(why) => {
                progress.note(&format!("{id}: {why}; redoing it"));
                let d = run_dir(dir, id);
                if let Err(e) = std::fs::remove_dir_all(&d) {
                    let error = SweepError::file("remove the damaged run", &d)(e);
                    let text = format!("sweep point {id}: {}", explant_run::error_chain(&error));
                    record_error(dir, id, &text, &mut done, progress);
                    continue;
                }
            }
            RunState::Absent => {}
        }
        match run_one(dir, id, opts) {
            Ok(None) => {
                progress.note(&format!("{id}: completed in {:.1} s {position}", started.elapsed().as_secs_f64()));
                done.completed.push(id.clone());
                progress.done(None);
            }
            Ok(Some(error)) => {
                progress.note(&format!("{error} {position}"));
                done.failed.push((id.clone(), error));
                progress.done(Some(id));
            }
            Err(e) => record_error(dir, id, &explant_run::error_chain(&e), &mut done, progress),
        }
    }
    progress.finish();
    Ok(done)
}

/// Point ids as the sweep names them: letters, digits, `_` and `-` (never a path).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A point that could not run: `text` (which names it) into `runs/ID.failed` and the list.
fn record_error(dir: &Path, id: &str, text: &str, done: &mut Executed, progress: &dyn Progress) {
    let _ = std::fs::write(failed_file(dir, id), format!("{text}\n"));
    progress.note(&format!("{text} (could not run)"));
    done.errors.push((id.to_owned(), text.to_owned()));
    progress.done(Some(id));
}

/// One point into `runs/.partial-ID`, renamed to `runs/ID` when it ends with a manifest;
/// `Some(error)` when the simulation failed (the directory kept as the result).
fn run_one(dir: &Path, id: &str, opts: &ExecOptions) -> Result<Option<String>, SweepError> {
    let partial = partial_dir(dir, id);
    if partial.exists() {
        // Left by an attempt that was killed: the sweep's own name, never the user's.
        std::fs::remove_dir_all(&partial).map_err(|e| {
            SweepError::Stopped(format!("sweep point {id}: cannot remove the partial run `{}`: {e}", partial.display()))
        })?;
    }
    let _ = std::fs::remove_file(failed_file(dir, id));
    let scene_path = scene_file(dir, id);
    let scene =
        LoadedScene::from_file(&scene_path).map_err(|error| SweepError::Scene { point: id.to_owned(), error })?;
    let run_opts = RunOptions {
        out: partial.clone(),
        diffusion: opts.diffusion,
        model: ModelChoice::Scene,
        threads: opts.threads,
        force: false,
        no_control: false,
        no_figures: true,
        command_line: opts.command_line.clone(),
        overrides: Overrides::default(),
        checkpoint_every: None,
    };
    let outcome = match explant_run::run(scene, &run_opts, &mut ()) {
        Ok(outcome) => outcome,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(SweepError::Stopped(format!("sweep point {id}: {}", explant_run::error_chain(&e))));
        }
    };
    let dest = run_dir(dir, id);
    std::fs::rename(&partial, &dest).map_err(|e| {
        SweepError::Stopped(format!("sweep point {id}: cannot move the finished run into `{}`: {e}", dest.display()))
    })?;
    Ok(outcome.failure.map(|_| failure_text(id, &outcome.manifest.status)))
}
