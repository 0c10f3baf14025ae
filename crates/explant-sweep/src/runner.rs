//! Running a sweep here: every point an `explant run` process, `jobs` at a time, each
//! written to a temporary directory renamed on success, so a sweep killed at any point
//! resumes with the same command.
//!
//! Layout of a sweep directory: `sweep.toml` (the spec, its scene path made absolute),
//! `points.csv` (run id, seed, parameter values), `scenes/run_NNNNN.toml` (the scene of
//! each point), `runs/run_NNNNN/` (a finished run: written as `runs/.partial-run_NNNNN`
//! and renamed when `explant run` ends with a manifest, that is completed (exit status
//! 0) or failed in the simulation (exit status 3, its manifest saying `failed` with the
//! stage and tick)), `runs/run_NNNNN.failed` (the error of a failed run), `results.csv`
//! and `results.parquet` (one row per run), and `.explant.lock`, held by the one sweep
//! that uses the directory.
//!
//! A run whose simulation failed keeps its directory, so its row is the same whoever ran
//! it: the local runner here or the Snakemake workflow ([`crate::snakemake`]), whose rule
//! keeps such a directory as its output. Its error comes from its manifest
//! ([`failure_text`]); a rerun of the sweep retries it.
//!
//! Nothing is written before the whole spec is known to be good: every point's scene is
//! validated and every readout checked against it first, so a refused spec leaves no
//! folder behind; should writing then fail, what this sweep created is removed again.
//! Runs are started as children tied to the sweep ([`crate::children`]): stopping the
//! sweep stops them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use explant_run::outdir::{LOCK_FILE, OutDirLock};
use explant_run::tables::{TableData, write_table};
use explant_run::{Manifest, RunDir, RunFile, Status};
use explant_scene::LoadedScene;

use crate::children::Children;
use crate::path::point_scene;
use crate::{Point, RunResult, SweepError, SweepSpec, plan, readouts, results_parquet, results_table};

/// What a running sweep tells its caller; called from several worker threads.
pub trait Progress: Sync {
    /// Something the user should read.
    fn note(&self, _text: &str) {}
    /// `total` runs are about to start.
    fn start(&self, _total: u64) {}
    /// One run ended; `failed` names it when it failed.
    fn done(&self, _failed: Option<&str>) {}
    /// Every run ended.
    fn finish(&self) {}
}

/// A progress that ignores everything.
impl Progress for () {}

/// A spec with its base scene's points, written into a sweep directory that this
/// sweep holds (its lock) until this is dropped.
pub struct Prepared {
    /// The spec.
    pub spec: SweepSpec,
    /// Every point, in order.
    pub points: Vec<Point>,
    /// Memory of each point's run, MB: `[cluster] mem_mb`, else the estimate from its
    /// scene ([`crate::snakemake::memory_mb`]).
    pub memory_mb: Vec<u64>,
    /// Wall time of each point's run, minutes: `[cluster] runtime_min`, else
    /// [`crate::DEFAULT_RUNTIME_MIN`] until a calibration ([`Prepared::calibrate`]) sets it.
    pub runtime_min: Vec<u64>,
    /// Each point's scene.
    pub scenes: Vec<explant_scene::Scene>,
    _lock: OutDirLock,
}

/// Read the spec and its base scene, expand the points, validate every point's scene and
/// check every readout against it; then take `out` (new, empty, or this same sweep's
/// directory, locked) and write `sweep.toml`, `points.csv` and every point's scene.
///
/// # Errors
///
/// When the spec, a point's scene or a readout is invalid, the spec expands to no runs
/// (nothing is written in these cases); when `out` holds a different sweep or something
/// else, another sweep is using it, or a file cannot be written (what this call created
/// is removed again).
pub fn prepare(spec_path: &Path, out: &Path) -> Result<Prepared, SweepError> {
    let spec = SweepSpec::from_file(spec_path)?;
    let scene_path = spec.scene_path(spec_path);
    let base = LoadedScene::from_file(&scene_path).map_err(|e| base_scene(spec_path, &e))?;
    let points = plan(&spec, base.scene.seed);
    if points.is_empty() {
        return Err(SweepError::Stopped(format!("sweep spec `{}` expands to no runs", spec_path.display())));
    }
    crate::readout::check(&spec, spec_path, &base.scene, &format!("the base scene `{}`", scene_path.display()))?;
    let mut scenes = Vec::with_capacity(points.len());
    let mut memory_mb = Vec::with_capacity(points.len());
    let mut parsed = Vec::with_capacity(points.len());
    for point in &points {
        let (text, scene) = point_scene(&spec, &base.text, &scene_path, point)?;
        crate::readout::check(&spec, spec_path, &scene.scene, &format!("the scene of point {}", point.id()))?;
        scenes.push(text);
        memory_mb.push(spec.cluster.mem_mb.unwrap_or_else(|| crate::snakemake::memory_mb(&scene.scene)));
        parsed.push(scene.scene);
    }
    let runtime_min = vec![spec.cluster.runtime_min.unwrap_or(crate::DEFAULT_RUNTIME_MIN); points.len()];
    let copy = spec_copy(spec_path, &scene_path)?;

    let mut created = Created::default();
    let result = claim(out, spec_path, &copy, &mut created)
        .and_then(|lock| write_sweep(out, &spec, &points, &scenes, &copy, &mut created).map(|()| lock));
    match result {
        Ok(lock) => Ok(Prepared { spec, points, memory_mb, runtime_min, scenes: parsed, _lock: lock }),
        Err(e) => {
            created.undo();
            Err(e)
        }
    }
}

/// The spec's text with the scene path made absolute, so `collect` and the Snakefile
/// work from the sweep directory alone.
fn spec_copy(spec_path: &Path, scene_path: &Path) -> Result<String, SweepError> {
    let text = std::fs::read_to_string(spec_path).map_err(SweepError::file("read", spec_path))?;
    let invalid = |e: &dyn std::fmt::Display| SweepError::Parse { path: spec_path.into(), message: e.to_string() };
    let mut doc: toml::Table = toml::from_str(&text).map_err(|e| invalid(&e))?;
    let absolute = std::path::absolute(scene_path).unwrap_or(scene_path.to_path_buf());
    doc.insert("scene".into(), toml::Value::String(absolute.display().to_string()));
    toml::to_string(&doc).map_err(|e| invalid(&e))
}

/// Paths this sweep created, removed again (last first) when preparing fails.
#[derive(Default)]
struct Created(Vec<PathBuf>);

impl Created {
    /// Run `make` for `path`, remembering `path` when it did not exist before.
    fn make<T>(&mut self, path: &Path, make: impl FnOnce(&Path) -> Result<T, SweepError>) -> Result<T, SweepError> {
        let new = !path.exists();
        let made = make(path)?;
        if new {
            self.0.push(path.to_path_buf());
        }
        Ok(made)
    }

    fn undo(&self) {
        for p in self.0.iter().rev() {
            let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
        }
    }
}

/// Take `out` for the sweep whose spec copy is `copy`: create it if needed (remembering
/// the topmost folder created) and lock it; refuse it when another sweep holds it, when
/// it holds a different sweep, or when it holds anything but a sweep.
fn claim(out: &Path, spec_path: &Path, copy: &str, created: &mut Created) -> Result<OutDirLock, SweepError> {
    if out.exists() && !out.is_dir() {
        return Err(SweepError::Stopped(format!(
            "`{}` exists and is not a directory; choose another `--out`",
            out.display()
        )));
    }
    let absolute = std::path::absolute(out).unwrap_or(out.to_path_buf());
    if let Some(top) = absolute.ancestors().take_while(|a| !a.exists()).last() {
        // Remembered first: a creation that fails part way is undone too.
        created.0.push(top.to_path_buf());
        std::fs::create_dir_all(out).map_err(SweepError::file("create", out))?;
    }
    let lock = created.make(&out.join(LOCK_FILE), |_| hold(out))?;
    let copy_path = out.join("sweep.toml");
    match std::fs::read_to_string(&copy_path) {
        Ok(existing) if existing != copy => Err(SweepError::Stopped(format!(
            "`{}` holds a different sweep (its sweep.toml differs from `{}`); use another `--out`",
            out.display(),
            spec_path.display()
        ))),
        Ok(_) => Ok(lock),
        Err(_) => {
            let mut others = std::fs::read_dir(out)
                .map_err(SweepError::file("read", out))?
                .filter_map(Result::ok)
                .filter(|e| e.file_name() != LOCK_FILE);
            match others.next() {
                None => Ok(lock),
                Some(e) => Err(SweepError::Stopped(format!(
                    "`{}` is not empty (it holds `{}`) and holds no sweep (no sweep.toml); choose a new or empty `--out`",
                    out.display(),
                    e.file_name().to_string_lossy()
                ))),
            }
        }
    }
}

/// The sweep directory's lock (the run library's, without clearing anything).
fn hold(dir: &Path) -> Result<OutDirLock, SweepError> {
    OutDirLock::hold(dir).map_err(|e| match e {
        explant_run::RunError::OutDir { .. } => SweepError::Locked { path: dir.into() },
        other => other.into(),
    })
}

/// `sweep.toml`, `scenes/`, `runs/` and `points.csv`.
fn write_sweep(
    out: &Path,
    spec: &SweepSpec,
    points: &[Point],
    scenes: &[String],
    copy: &str,
    created: &mut Created,
) -> Result<(), SweepError> {
    for sub in ["scenes", "runs"] {
        created.make(&out.join(sub), |d| std::fs::create_dir_all(d).map_err(SweepError::file("create", d)))?;
    }
    created.make(&out.join("sweep.toml"), |p| std::fs::write(p, copy).map_err(SweepError::file("write", p)))?;
    let header = ["run", "seed"].map(String::from).into_iter().chain(spec.parameters.iter().map(|p| p.path.clone()));
    let mut table = TableData::new(header);
    for (point, scene) in points.iter().zip(scenes) {
        created
            .make(&scene_file(out, &point.id()), |p| std::fs::write(p, scene).map_err(SweepError::file("write", p)))?;
        let mut row = vec![point.id(), point.seed.to_string()];
        row.extend(point.values.iter().map(crate::spec::value_text));
        table.rows.push(row);
    }
    created.make(&out.join("points.csv"), |p| write_table(p, &table).map_err(SweepError::from))
}

/// The spec's base scene is not valid.
fn base_scene(spec_path: &Path, e: &explant_scene::SceneError) -> SweepError {
    SweepError::Invalid { path: spec_path.into(), field: "scene".into(), message: explant_run::error_chain(e) }
}

/// `runs/ID`: the finished run of the point `id`.
pub(crate) fn run_dir(out: &Path, id: &str) -> PathBuf {
    out.join("runs").join(id)
}

/// `runs/.partial-ID`: the run of the point `id` while it is written.
pub(crate) fn partial_dir(out: &Path, id: &str) -> PathBuf {
    out.join("runs").join(format!(".partial-{id}"))
}

/// `runs/ID.failed`: the error of a run that ended without a manifest.
pub(crate) fn failed_file(out: &Path, id: &str) -> PathBuf {
    out.join("runs").join(format!("{id}.failed"))
}

/// `scenes/ID.toml`: the scene of the point `id`.
pub(crate) fn scene_file(out: &Path, id: &str) -> PathBuf {
    out.join("scenes").join(format!("{id}.toml"))
}

/// Run every point not yet finished with the `explant` executable `exe`, `jobs` at a
/// time (0: cores ÷ threads) with `threads` threads each: each point an `explant run`
/// process, or with `batch` K > 1, K points one after another in one `explant sweep
/// exec` process ([`crate::exec`]: one process start and model-library load for the K;
/// progress then moves a batch at a time). Failures are recorded and the
/// sweep goes on; the tables are written in any case. A run whose directory is there but
/// whose manifest is missing, damaged or not `completed` is redone (with a note).
///
/// SIGINT and SIGTERM stop the sweep: its runs in flight are killed and discarded, the
/// tables are written, and [`SweepError::Interrupted`] is returned.
///
/// # Errors
///
/// When a leftover cannot be removed or a table cannot be written; when some runs
/// failed ([`SweepError::RunsFailed`], the message lists them and says how to retry);
/// when a signal stopped the sweep ([`SweepError::Interrupted`]).
pub fn run_local(
    prepared: &Prepared,
    exe: &Path,
    out: &Path,
    jobs: usize,
    threads: usize,
    batch: usize,
    progress: &dyn Progress,
) -> Result<PathBuf, SweepError> {
    remove_partials(out)?;
    let mut todo: Vec<&Point> = Vec::new();
    for point in &prepared.points {
        match state(out, &point.id()) {
            // A marker left by an earlier attempt of a run that has since completed.
            RunState::Finished(_) => remove_if_there(&failed_file(out, &point.id()))?,
            RunState::Absent => todo.push(point),
            RunState::Failed { .. } => {
                // A failed simulation is retried, as a failure without a directory is.
                let dir = run_dir(out, &point.id());
                std::fs::remove_dir_all(&dir).map_err(SweepError::file("remove the failed run", &dir))?;
                todo.push(point);
            }
            RunState::Damaged(why) => {
                progress.note(&format!("{}: {why}; redoing it", point.id()));
                let dir = run_dir(out, &point.id());
                std::fs::remove_dir_all(&dir).map_err(SweepError::file("remove the damaged run", &dir))?;
                todo.push(point);
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = if jobs == 0 { (cores / threads).max(1) } else { jobs };
    progress.note(&format!(
        "sweep: {} runs ({} done, {} to run), {jobs} at a time × {threads} thread(s)",
        prepared.points.len(),
        prepared.points.len() - todo.len(),
        todo.len()
    ));
    progress.start(todo.len() as u64);
    let children = Children::new();
    let next = AtomicUsize::new(0);
    let stopped = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let units: Vec<&[&Point]> = todo.chunks(batch.max(1)).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.min(units.len()))
            .map(|_| {
                s.spawn(|| {
                    while children.stop_signal().is_none()
                        && let Some(unit) = units.get(next.fetch_add(1, Ordering::SeqCst))
                    {
                        let results = if batch <= 1 {
                            unit.iter().map(|&p| (p, run_point(&children, exe, out, p, threads))).collect()
                        } else {
                            run_batch(&children, exe, out, unit, threads)
                        };
                        for (point, result) in results {
                            if result.is_err() && children.stop_signal().is_some() {
                                // Killed by the sweep's own stop: not a failure of the run.
                                stopped.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            let failed = result.err();
                            if let Some(e) = &failed {
                                let text = format!("{}\n", explant_run::error_chain(e));
                                let _ = std::fs::write(failed_file(out, &point.id()), text);
                                if let Ok(mut f) = failures.lock() {
                                    f.push(point.id());
                                }
                            }
                            progress.done(failed.is_some().then(|| point.id()).as_deref());
                        }
                    }
                })
            })
            .collect();
        // This thread watches for a stop and kills the runs in flight (again and again,
        // so a run that starts while the stop arrives is caught too).
        while !workers.iter().all(|w| w.is_finished()) {
            if children.stop_signal().is_some() {
                children.kill_all();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    progress.finish();
    let rows = collect_rows(&prepared.spec, &prepared.points, out);
    let table = write_tables(&prepared.spec, &rows, out)?;
    let total = prepared.points.len();
    if let Some(signal) = children.stop_signal() {
        let done = rows.iter().filter(|r| r.status == "completed").count();
        return Err(SweepError::Interrupted { signal, stopped: stopped.into_inner(), done, total });
    }
    let mut runs = failures.into_inner().unwrap_or_default();
    if !runs.is_empty() {
        runs.sort();
        return Err(SweepError::RunsFailed { runs, total, dir: out.to_path_buf() });
    }
    Ok(table)
}

fn remove_if_there(path: &Path) -> Result<(), SweepError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SweepError::file("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Leftovers of a crash: partial outputs are discarded and redone.
fn remove_partials(out: &Path) -> Result<(), SweepError> {
    let runs = out.join("runs");
    for entry in std::fs::read_dir(&runs).map_err(SweepError::file("read", &runs))? {
        let p = entry.map_err(SweepError::file("read", &runs))?.path();
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".partial-")) {
            std::fs::remove_dir_all(&p).map_err(SweepError::file("remove", &p))?;
        }
    }
    Ok(())
}

/// Where a point's run stands in the sweep directory.
pub(crate) enum RunState {
    /// No run directory.
    Absent,
    /// A run directory with a manifest that says `completed`.
    Finished(Box<Manifest>),
    /// A run directory whose manifest says the simulation failed (`explant run` exit
    /// status 3).
    Failed {
        /// [`failure_text`] of the manifest.
        error: String,
        /// The run's wall time, seconds.
        wall_seconds: f64,
    },
    /// A run directory whose manifest is missing, unreadable or not `completed`: why.
    Damaged(String),
}

/// Where the run of the point `id` stands in the sweep directory `out`.
pub(crate) fn state(out: &Path, id: &str) -> RunState {
    let dir = RunDir::new(run_dir(out, id));
    if !dir.root().exists() {
        return RunState::Absent;
    }
    let shown = format!("runs/{id}/{}", RunFile::Manifest.name());
    if !dir.has(RunFile::Manifest) {
        return RunState::Damaged(format!("the run has no `{shown}`"));
    }
    match dir.manifest() {
        Ok(m) if m.status.is_completed() => RunState::Finished(Box::new(m)),
        Ok(m) if matches!(m.status, Status::Failed { .. }) => {
            RunState::Failed { error: failure_text(id, &m.status), wall_seconds: m.wall_seconds }
        }
        Ok(m) => RunState::Damaged(format!("`{shown}` says the run did not complete ({:?})", m.status)),
        Err(e) => RunState::Damaged(format!("`{shown}` is damaged ({})", explant_run::error_chain(&e))),
    }
}

/// The error of a run whose manifest says `failed`, as its row and `runs/ID.failed` give
/// it: `ID: failed at tick T in stage `S`: MESSAGE`. It depends only on the manifest, so
/// every runner gives the same text.
pub fn failure_text(id: &str, status: &Status) -> String {
    match status {
        Status::Failed { stage, tick, message } => {
            format!("{id}: failed at tick {tick} in stage `{stage}`: {message}")
        }
        other => format!("{id}: the run did not fail ({other:?})"),
    }
}

/// The exit status of `explant run` whose simulation failed after writing its outputs
/// (README, "Exit status"): the run directory is kept and the point recorded as failed.
pub const SIMULATION_FAILED: i32 = 3;

/// One run: `explant run` into `runs/.partial-ID`, renamed to `runs/ID` when it ends with
/// a manifest: completed, or failed in the simulation (exit status 3; the error is then
/// its [`failure_text`]).
fn run_point(children: &Children, exe: &Path, out: &Path, point: &Point, threads: usize) -> Result<(), SweepError> {
    let partial = partial_dir(out, &point.id());
    let _ = std::fs::remove_file(failed_file(out, &point.id()));
    let started = Instant::now();
    let o = children
        .output(Command::new(exe).arg("run").arg(scene_file(out, &point.id())).arg("--out").arg(&partial).args([
            "--quiet",
            "--force",
            "--no-figures",
            "--threads",
            &threads.to_string(),
        ]))
        .map_err(SweepError::file("start `explant run` as", exe))?;
    let dest = run_dir(out, &point.id());
    if o.status.code() == Some(SIMULATION_FAILED)
        && let Ok(manifest) = RunDir::new(&partial).manifest()
        && matches!(manifest.status, Status::Failed { .. })
    {
        std::fs::rename(&partial, &dest).map_err(SweepError::file("move a failed run into", &dest))?;
        return Err(SweepError::Stopped(failure_text(&point.id(), &manifest.status)));
    }
    if !o.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        let said = error_lines(&o.stderr);
        return Err(SweepError::Stopped(format!(
            "{} after {:.1} s: {}",
            point.id(),
            started.elapsed().as_secs_f64(),
            if said.is_empty() { format!("`explant run` ended with {}", o.status) } else { said }
        )));
    }
    std::fs::rename(&partial, &dest).map_err(SweepError::file("move a finished run into", &dest))
}

/// The points `unit` by one `explant sweep exec` child, which renames each run into place
/// as it ends and writes `runs/ID.failed` for a point that could not run; each point's
/// result is read back from the sweep directory. Points the child did not finish (it
/// was killed, or crashed) are failures naming its exit, their partial output removed.
fn run_batch<'p>(
    children: &Children,
    exe: &Path,
    out: &Path,
    unit: &[&'p Point],
    threads: usize,
) -> Vec<(&'p Point, Result<(), SweepError>)> {
    let started = Instant::now();
    let ids: Vec<String> = unit.iter().map(|p| p.id()).collect();
    for id in &ids {
        // An earlier attempt's error must not pass for this one's.
        let _ = std::fs::remove_file(failed_file(out, id));
    }
    let o = children.output(Command::new(exe).args(["sweep", "exec"]).arg(out).args(&ids).args([
        "--quiet",
        "--threads",
        &threads.to_string(),
    ]));
    unit.iter()
        .zip(&ids)
        .map(|(&point, id)| {
            let result = match (&o, state(out, id)) {
                (_, RunState::Finished(_)) => Ok(()),
                (_, RunState::Failed { error, .. }) => Err(SweepError::Stopped(error)),
                (Err(e), _) => Err(SweepError::Stopped(format!(
                    "{id}: cannot start `explant sweep exec` as `{}`: {e}",
                    exe.display()
                ))),
                (Ok(o), _) => {
                    let _ = std::fs::remove_dir_all(partial_dir(out, id));
                    match std::fs::read_to_string(failed_file(out, id)) {
                        Ok(text) if !text.trim().is_empty() => Err(SweepError::Stopped(text.trim().to_owned())),
                        _ => Err(SweepError::Stopped(format!(
                            "{id}: its batch process ended ({}) after {:.1} s before this run ended: {}",
                            o.status,
                            started.elapsed().as_secs_f64(),
                            match error_lines(&o.stderr) {
                                said if said.is_empty() => "it printed no error".to_owned(),
                                said => said,
                            }
                        ))),
                    }
                }
            };
            (point, result)
        })
        .collect()
}

/// The lines of a child's stderr that carry its error, joined with ` | ` (empty if none).
fn error_lines(stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    err.lines().filter(|l| l.contains("error") || l.contains("caused by")).collect::<Vec<_>>().join(" | ")
}

/// The results rows of every point: completed runs with their readouts; failed runs,
/// and runs whose directory is damaged, with their error; the rest as missing. A
/// damaged run never stops the others' rows.
fn collect_rows(spec: &SweepSpec, points: &[Point], out: &Path) -> Vec<RunResult> {
    let mut rows = Vec::with_capacity(points.len());
    for point in points {
        let nan = vec![f64::NAN; spec.readouts.len()];
        let result = |status: &str, values: Vec<f64>, wall_seconds: f64, error: String| RunResult {
            point: point.clone(),
            status: status.into(),
            values,
            wall_seconds,
            error,
        };
        let row = match state(out, &point.id()) {
            RunState::Finished(manifest) => match readouts(spec, &run_dir(out, &point.id())) {
                Ok(values) => result("completed", values, manifest.wall_seconds, String::new()),
                Err(e) => result("failed", nan, manifest.wall_seconds, e.to_string()),
            },
            RunState::Failed { error, wall_seconds } => result("failed", nan, wall_seconds, error),
            RunState::Damaged(why) => {
                result("failed", nan, f64::NAN, format!("{}: {why}; rerun the sweep to redo it", point.id()))
            }
            RunState::Absent => match std::fs::read_to_string(failed_file(out, &point.id())) {
                Ok(err) => result("failed", nan, f64::NAN, err.trim().to_string()),
                Err(_) => result("missing", nan, f64::NAN, String::new()),
            },
        };
        rows.push(row);
    }
    rows
}

/// `results.csv` and `results.parquet`, each written to a temporary name and renamed.
fn write_tables(spec: &SweepSpec, rows: &[RunResult], dir: &Path) -> Result<PathBuf, SweepError> {
    let csv = dir.join("results.csv");
    write_table(&csv, &results_table(spec, rows))?;
    let parquet = dir.join("results.parquet");
    let tmp = parquet.with_extension("partial");
    std::fs::write(&tmp, results_parquet(spec, rows)).map_err(SweepError::file("write", &tmp))?;
    std::fs::rename(&tmp, &parquet).map_err(SweepError::file("write", &parquet))?;
    Ok(csv)
}

/// `explant sweep collect SPEC DIR`: the results table from whatever runs are finished
/// (the last step of the Snakemake workflow). Returns the table's path, the completed
/// runs and all runs.
///
/// # Errors
///
/// When the spec or its scene is invalid, `dir` does not exist or another sweep is
/// using it, or a table cannot be written.
pub fn collect(spec_path: &Path, dir: &Path) -> Result<(PathBuf, usize, usize), SweepError> {
    let spec = SweepSpec::from_file(spec_path)?;
    let base = LoadedScene::from_file(&spec.scene_path(spec_path)).map_err(|e| base_scene(spec_path, &e))?;
    let points = plan(&spec, base.scene.seed);
    if !dir.is_dir() {
        return Err(SweepError::Stopped(format!("`{}` is not a sweep directory (it does not exist)", dir.display())));
    }
    let _lock = hold(dir)?;
    let rows = collect_rows(&spec, &points, dir);
    let table = write_tables(&spec, &rows, dir)?;
    let done = rows.iter().filter(|r| r.status == "completed").count();
    Ok((table, done, rows.len()))
}
