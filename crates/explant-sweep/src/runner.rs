//! Running a sweep here: every point an `explant run` process, `jobs` at a time, each
//! written to a temporary directory renamed on success, so a sweep killed at any point
//! resumes with the same command.
//!
//! Layout of a sweep directory: `sweep.toml` (the spec, its scene path made absolute),
//! `points.csv` (run id, seed, parameter values), `scenes/run_NNNNN.toml` (the scene of
//! each point), `runs/run_NNNNN/` (a finished run: written as `runs/.partial-run_NNNNN`
//! and renamed when `explant run` succeeds), `runs/run_NNNNN.failed` (the error of a
//! failed run), `results.csv` and `results.parquet` (one row per run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use explant_run::tables::{TableData, write_table};
use explant_run::{RunDir, RunFile};
use explant_scene::LoadedScene;

use crate::{Point, RunResult, SweepError, SweepSpec, plan, readouts, results_parquet, results_table, scene_text};

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

/// A spec with its base scene's points, written into a sweep directory.
pub struct Prepared {
    /// The spec.
    pub spec: SweepSpec,
    /// Every point, in order.
    pub points: Vec<Point>,
}

/// Read the spec and its base scene, expand the points, and write `sweep.toml`,
/// `points.csv` and every point's scene (each validated) into `out`.
///
/// # Errors
///
/// When the spec or scene is invalid, it expands to no runs, `out` already holds a
/// different sweep, or a file cannot be written.
pub fn prepare(spec_path: &Path, out: &Path) -> Result<Prepared, SweepError> {
    let spec = SweepSpec::from_file(spec_path)?;
    let scene_path = spec.scene_path(spec_path);
    let base = LoadedScene::from_file(&scene_path).map_err(|e| base_scene(spec_path, &e))?;
    let points = plan(&spec, base.scene.seed);
    if points.is_empty() {
        return Err(SweepError::Stopped(format!("sweep spec `{}` expands to no runs", spec_path.display())));
    }
    // The copy keeps the spec's text with the scene path made absolute, so `collect` and
    // the Snakefile work from the sweep directory alone.
    let text = std::fs::read_to_string(spec_path).map_err(SweepError::file("read", spec_path))?;
    let invalid = |e: &dyn std::fmt::Display| SweepError::Parse { path: spec_path.into(), message: e.to_string() };
    let mut doc: toml::Table = toml::from_str(&text).map_err(|e| invalid(&e))?;
    let absolute = std::path::absolute(&scene_path).unwrap_or(scene_path.clone());
    doc.insert("scene".into(), toml::Value::String(absolute.display().to_string()));
    let copy = toml::to_string(&doc).map_err(|e| invalid(&e))?;
    for sub in ["scenes", "runs"] {
        std::fs::create_dir_all(out.join(sub)).map_err(SweepError::file("create", out.join(sub)))?;
    }
    let copy_path = out.join("sweep.toml");
    if let Ok(existing) = std::fs::read_to_string(&copy_path)
        && existing != copy
    {
        return Err(SweepError::Stopped(format!(
            "`{}` holds a different sweep (its sweep.toml differs from `{}`); use another `--out`",
            out.display(),
            spec_path.display()
        )));
    }
    std::fs::write(&copy_path, &copy).map_err(SweepError::file("write", &copy_path))?;
    let header = ["run", "seed"].map(String::from).into_iter().chain(spec.parameters.iter().map(|p| p.path.clone()));
    let mut table = TableData::new(header);
    for point in &points {
        let scene = scene_text(&spec, &base.text, &scene_path, point)?;
        let path = scene_file(out, point);
        std::fs::write(&path, scene).map_err(SweepError::file("write", &path))?;
        let mut row = vec![point.id(), point.seed.to_string()];
        row.extend(point.values.iter().map(crate::spec::value_text));
        table.rows.push(row);
    }
    write_table(&out.join("points.csv"), &table)?;
    Ok(Prepared { spec, points })
}

/// The spec's base scene is not valid.
fn base_scene(spec_path: &Path, e: &explant_scene::SceneError) -> SweepError {
    SweepError::Invalid { path: spec_path.into(), field: "scene".into(), message: explant_run::error_chain(e) }
}

fn run_dir(out: &Path, point: &Point) -> PathBuf {
    out.join("runs").join(point.id())
}

fn failed_file(out: &Path, point: &Point) -> PathBuf {
    out.join("runs").join(format!("{}.failed", point.id()))
}

fn scene_file(out: &Path, point: &Point) -> PathBuf {
    out.join("scenes").join(format!("{}.toml", point.id()))
}

/// Run every point not yet finished with the `explant` executable `exe`, `jobs` at a
/// time (0: cores ÷ threads) with `threads` threads each. Failures are recorded and the
/// sweep goes on; the tables are written in any case.
///
/// # Errors
///
/// When a leftover cannot be removed, a table cannot be written, or some runs failed (the
/// message lists them and says how to retry).
pub fn run_local(
    prepared: &Prepared,
    exe: &Path,
    out: &Path,
    jobs: usize,
    threads: usize,
    progress: &dyn Progress,
) -> Result<PathBuf, SweepError> {
    remove_partials(out)?;
    let todo: Vec<&Point> = prepared.points.iter().filter(|p| !finished(out, p)).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = if jobs == 0 { (cores / threads).max(1) } else { jobs };
    progress.note(&format!(
        "sweep: {} runs ({} done, {} to run), {jobs} at a time × {threads} thread(s)",
        prepared.points.len(),
        prepared.points.len() - todo.len(),
        todo.len()
    ));
    progress.start(todo.len() as u64);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(todo.len()) {
            s.spawn(|| {
                while let Some(point) = todo.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let failed = run_point(exe, out, point, threads).err();
                    if let Some(e) = &failed {
                        let _ = std::fs::write(failed_file(out, point), format!("{}\n", explant_run::error_chain(e)));
                        if let Ok(mut f) = failures.lock() {
                            f.push(point.id());
                        }
                    }
                    progress.done(failed.is_some().then(|| point.id()).as_deref());
                }
            });
        }
    });
    progress.finish();
    let rows = collect_rows(&prepared.spec, &prepared.points, out)?;
    let table = write_tables(&prepared.spec, &rows, out)?;
    let failed = failures.into_inner().unwrap_or_default();
    if !failed.is_empty() {
        return Err(SweepError::Stopped(format!(
            "{} of {} runs failed ({}); their errors are in `{}/runs/*.failed`; rerun the same command to retry them",
            failed.len(),
            prepared.points.len(),
            failed.join(", "),
            out.display()
        )));
    }
    Ok(table)
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

/// Whether the point's run is in place and completed.
fn finished(out: &Path, point: &Point) -> bool {
    RunDir::new(run_dir(out, point)).manifest().is_ok_and(|m| m.status.is_completed())
}

/// One run: `explant run` into `runs/.partial-ID`, renamed to `runs/ID` on success.
fn run_point(exe: &Path, out: &Path, point: &Point, threads: usize) -> Result<(), SweepError> {
    let partial = out.join("runs").join(format!(".partial-{}", point.id()));
    let _ = std::fs::remove_file(failed_file(out, point));
    let started = Instant::now();
    let o = Command::new(exe)
        .arg("run")
        .arg(scene_file(out, point))
        .arg("--out")
        .arg(&partial)
        .args(["--quiet", "--force", "--no-figures", "--threads", &threads.to_string()])
        .output()
        .map_err(SweepError::file("start `explant run` as", exe))?;
    if !o.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        let err = String::from_utf8_lossy(&o.stderr);
        let last: Vec<&str> = err.lines().filter(|l| l.contains("error") || l.contains("caused by")).collect();
        return Err(SweepError::Stopped(format!(
            "{} after {:.1} s: {}",
            point.id(),
            started.elapsed().as_secs_f64(),
            last.join(" | ")
        )));
    }
    let dest = run_dir(out, point);
    std::fs::rename(&partial, &dest).map_err(SweepError::file("move a finished run into", &dest))
}

/// The results rows of every point: completed runs with their readouts, failed runs
/// with their error, the rest as missing.
fn collect_rows(spec: &SweepSpec, points: &[Point], out: &Path) -> Result<Vec<RunResult>, SweepError> {
    let mut rows = Vec::with_capacity(points.len());
    for point in points {
        let dir = RunDir::new(run_dir(out, point));
        let nan = vec![f64::NAN; spec.readouts.len()];
        let result = |status: &str, values: Vec<f64>, wall_seconds: f64, error: String| RunResult {
            point: point.clone(),
            status: status.into(),
            values,
            wall_seconds,
            error,
        };
        let row = if dir.has(RunFile::Manifest) {
            let wall = dir.manifest()?.wall_seconds;
            match readouts(spec, dir.root()) {
                Ok(values) => result("completed", values, wall, String::new()),
                Err(e) => result("failed", nan, wall, e.to_string()),
            }
        } else if let Ok(err) = std::fs::read_to_string(failed_file(out, point)) {
            result("failed", nan, f64::NAN, err.trim().to_string())
        } else {
            result("missing", nan, f64::NAN, String::new())
        };
        rows.push(row);
    }
    Ok(rows)
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
/// When the spec or its scene is invalid, or a table cannot be read or written.
pub fn collect(spec_path: &Path, dir: &Path) -> Result<(PathBuf, usize, usize), SweepError> {
    let spec = SweepSpec::from_file(spec_path)?;
    let base = LoadedScene::from_file(&spec.scene_path(spec_path)).map_err(|e| base_scene(spec_path, &e))?;
    let points = plan(&spec, base.scene.seed);
    let rows = collect_rows(&spec, &points, dir)?;
    let table = write_tables(&spec, &rows, dir)?;
    let done = rows.iter().filter(|r| r.status == "completed").count();
    Ok((table, done, rows.len()))
}
