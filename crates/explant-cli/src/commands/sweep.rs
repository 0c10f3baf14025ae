//! `explant sweep`: run a parameter sweep here (concurrent, atomic, resumable), emit it as
//! a Snakemake workflow, gather its table, and report each parameter's effect.
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

use anyhow::{Context, Result, bail};
use explant_scene::LoadedScene;
use explant_sweep::{Point, RunResult, SweepSpec, plan, readouts, results_csv, results_parquet, scene_text};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{EmitKind, SweepArgs, SweepCommand};

/// `explant sweep ...`.
pub fn sweep(args: SweepArgs) -> Result<()> {
    match args.command {
        Some(SweepCommand::Collect { spec, dir }) => collect(&spec, &dir).map(|_| ()),
        Some(SweepCommand::Report { dir }) => report(&dir),
        None => {
            let (Some(spec), Some(out)) = (args.spec.as_deref(), args.out.as_deref()) else {
                bail!("give the sweep spec and `--out DIR`");
            };
            let prepared = prepare(spec, out)?;
            match args.emit {
                Some(EmitKind::Snakemake) => emit_snakemake(&prepared, out, args.threads.max(1)),
                None => run_local(&prepared, out, args.jobs, args.threads.max(1), args.quiet),
            }
        }
    }
}

/// A spec with its base scene, its points and their scene texts written to `out/scenes`.
struct Prepared {
    spec: SweepSpec,
    points: Vec<Point>,
}

/// Read the spec and its base scene, expand the points, and write `sweep.toml`,
/// `points.csv` and every point's scene (each validated) into `out`. A directory that
/// already holds a different sweep is refused.
fn prepare(spec_path: &Path, out: &Path) -> Result<Prepared> {
    let spec = SweepSpec::from_file(spec_path)?;
    let scene_path = spec.scene_path(spec_path);
    let base = LoadedScene::from_file(&scene_path)
        .with_context(|| format!("sweep spec `{}`: field `scene`", spec_path.display()))?;
    let points = plan(&spec, base.scene.seed);
    if points.is_empty() {
        bail!("sweep spec `{}` expands to no runs", spec_path.display());
    }
    // The copy keeps the spec's text with the scene path made absolute, so `collect` and
    // the Snakefile work from the sweep directory alone.
    let text = std::fs::read_to_string(spec_path).with_context(|| format!("cannot read `{}`", spec_path.display()))?;
    let mut doc: toml::Table = toml::from_str(&text)?;
    let absolute = std::path::absolute(&scene_path).unwrap_or(scene_path.clone());
    doc.insert("scene".into(), toml::Value::String(absolute.display().to_string()));
    let copy = toml::to_string(&doc)?;
    std::fs::create_dir_all(out.join("scenes")).with_context(|| format!("cannot create `{}`", out.display()))?;
    std::fs::create_dir_all(out.join("runs"))?;
    let copy_path = out.join("sweep.toml");
    if let Ok(existing) = std::fs::read_to_string(&copy_path)
        && existing != copy
    {
        bail!(
            "`{}` holds a different sweep (its sweep.toml differs from `{}`); use another `--out`",
            out.display(),
            spec_path.display()
        );
    }
    std::fs::write(&copy_path, &copy)?;
    let mut csv = String::from("run,seed");
    for p in &spec.parameters {
        csv.push(',');
        csv.push_str(&p.path);
    }
    csv.push('\n');
    for point in &points {
        let scene = scene_text(&spec, &base.text, &scene_path, point)?;
        std::fs::write(out.join("scenes").join(format!("{}.toml", point.id())), scene)?;
        csv.push_str(&format!("{},{}", point.id(), point.seed));
        for v in &point.values {
            csv.push_str(&format!(
                ",{}",
                match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            ));
        }
        csv.push('\n');
    }
    std::fs::write(out.join("points.csv"), csv)?;
    Ok(Prepared { spec, points })
}

fn run_dir(out: &Path, point: &Point) -> PathBuf {
    out.join("runs").join(point.id())
}

fn failed_file(out: &Path, point: &Point) -> PathBuf {
    out.join("runs").join(format!("{}.failed", point.id()))
}

/// Run every point not yet finished, `jobs` at a time, each in its own `explant run`
/// process writing to a temporary directory renamed on success. Failures are recorded
/// and the sweep goes on; the exit is non-zero if any run failed.
fn run_local(prepared: &Prepared, out: &Path, jobs: usize, threads: usize, quiet: bool) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the explant executable")?;
    // Leftovers of a crash: partial outputs are discarded and redone.
    for entry in std::fs::read_dir(out.join("runs"))? {
        let p = entry?.path();
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".partial-")) {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove `{}`", p.display()))?;
        }
    }
    let todo: Vec<&Point> =
        prepared.points.iter().filter(|p| !run_dir(out, p).join("manifest.json").exists()).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = if jobs == 0 { (cores / threads).max(1) } else { jobs };
    eprintln!(
        "sweep: {} runs ({} done, {} to run), {jobs} at a time × {threads} thread(s)",
        prepared.points.len(),
        prepared.points.len() - todo.len(),
        todo.len()
    );
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(todo.len() as u64) };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs  elapsed {elapsed}  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(todo.len()) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(point) = todo.get(k) else { break };
                    if let Err(e) = run_point(&exe, out, point, threads) {
                        let _ = std::fs::write(failed_file(out, point), format!("{e:#}\n"));
                        if let Ok(mut f) = failures.lock() {
                            f.push(point.id());
                        }
                        bar.set_message(format!("{} failed", point.id()));
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let rows = collect_rows(&prepared.spec, &prepared.points, out)?;
    let table = write_tables(&prepared.spec, &rows, out)?;
    println!("wrote {} and results.parquet", table.display());
    let failed = failures.into_inner().unwrap_or_default();
    if !failed.is_empty() {
        bail!(
            "{} of {} runs failed ({}); their errors are in `{}/runs/*.failed`; rerun the same command to retry them",
            failed.len(),
            prepared.points.len(),
            failed.join(", "),
            out.display()
        );
    }
    Ok(())
}

/// One run: `explant run` into `runs/.partial-ID`, renamed to `runs/ID` on success.
fn run_point(exe: &Path, out: &Path, point: &Point, threads: usize) -> Result<()> {
    let partial = out.join("runs").join(format!(".partial-{}", point.id()));
    let scene = out.join("scenes").join(format!("{}.toml", point.id()));
    let _ = std::fs::remove_file(failed_file(out, point));
    let started = Instant::now();
    let o = Command::new(exe)
        .arg("run")
        .arg(&scene)
        .arg("--out")
        .arg(&partial)
        .args(["--quiet", "--force", "--no-figures", "--threads", &threads.to_string()])
        .output()
        .context("cannot start `explant run`")?;
    if !o.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        let err = String::from_utf8_lossy(&o.stderr);
        let last: Vec<&str> = err.lines().filter(|l| l.contains("error") || l.contains("caused by")).collect();
        bail!("{} after {:.1} s: {}", point.id(), started.elapsed().as_secs_f64(), last.join(" | "));
    }
    std::fs::rename(&partial, run_dir(out, point))
        .with_context(|| format!("cannot move `{}` into place", partial.display()))?;
    Ok(())
}

/// The results rows of every point: completed runs with their readouts, failed runs
/// with their error, the rest as missing.
fn collect_rows(spec: &SweepSpec, points: &[Point], out: &Path) -> Result<Vec<RunResult>> {
    let mut rows = Vec::with_capacity(points.len());
    for point in points {
        let dir = run_dir(out, point);
        let manifest = dir.join("manifest.json");
        let nan = vec![f64::NAN; spec.readouts.len()];
        let row = if manifest.exists() {
            let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest)?)
                .with_context(|| format!("`{}` is not JSON", manifest.display()))?;
            let wall = m["wall_seconds"].as_f64().unwrap_or(f64::NAN);
            match readouts(spec, &dir) {
                Ok(values) => RunResult {
                    point: point.clone(),
                    status: "completed".into(),
                    values,
                    wall_seconds: wall,
                    error: String::new(),
                },
                Err(e) => RunResult {
                    point: point.clone(),
                    status: "failed".into(),
                    values: nan,
                    wall_seconds: wall,
                    error: e.to_string(),
                },
            }
        } else if let Ok(err) = std::fs::read_to_string(failed_file(out, point)) {
            RunResult {
                point: point.clone(),
                status: "failed".into(),
                values: nan,
                wall_seconds: f64::NAN,
                error: err.trim().to_string(),
            }
        } else {
            RunResult {
                point: point.clone(),
                status: "missing".into(),
                values: nan,
                wall_seconds: f64::NAN,
                error: String::new(),
            }
        };
        rows.push(row);
    }
    Ok(rows)
}

/// `results.csv` and `results.parquet`, each written to a temporary name and renamed.
fn write_tables(spec: &SweepSpec, rows: &[RunResult], dir: &Path) -> Result<PathBuf> {
    let csv = dir.join("results.csv");
    for (path, bytes) in [
        (csv.clone(), results_csv(spec, rows).into_bytes()),
        (dir.join("results.parquet"), results_parquet(spec, rows)),
    ] {
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bytes).with_context(|| format!("cannot write `{}`", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(csv)
}

/// `explant sweep collect SPEC DIR`: results.csv from whatever runs are finished (the
/// last step of the Snakemake workflow).
fn collect(spec_path: &Path, dir: &Path) -> Result<PathBuf> {
    let spec = SweepSpec::from_file(spec_path)?;
    let base = LoadedScene::from_file(&spec.scene_path(spec_path))
        .with_context(|| format!("sweep spec `{}`: field `scene`", spec_path.display()))?;
    let points = plan(&spec, base.scene.seed);
    let rows = collect_rows(&spec, &points, dir)?;
    let table = write_tables(&spec, &rows, dir)?;
    let done = rows.iter().filter(|r| r.status == "completed").count();
    println!("wrote {} ({done} of {} runs completed)", table.display(), rows.len());
    Ok(table)
}

/// A Snakefile whose `run` rule calls `explant run` per point and whose last rule
/// calls `explant sweep collect`.
fn emit_snakemake(prepared: &Prepared, out: &Path, threads: usize) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the explant executable")?;
    let runs: Vec<String> = prepared.points.iter().map(|p| format!("\"{}\"", p.id())).collect();
    let snakefile = format!(
        r#"# Generated by `explant sweep --emit snakemake`: {n} runs of `{name}`.
# Run here with `snakemake --cores N` (from this directory), or on SLURM with
# `snakemake --executor slurm --jobs N` (Snakemake's executor plugin).
EXPLANT = "{exe}"
RUNS = [{runs}]

rule all:
    input: "results.csv"

rule run:
    input: "scenes/{{run}}.toml"
    output: directory("runs/{{run}}")
    threads: {threads}
    shell: '"{{EXPLANT}}" run {{input}} --out {{output}} --quiet --force --no-figures --threads {{threads}}'

rule collect:
    input: expand("runs/{{run}}", run=RUNS)
    output: "results.csv"
    shell: '"{{EXPLANT}}" sweep collect sweep.toml .'
"#,
        n = prepared.points.len(),
        name = prepared.spec.name,
        exe = exe.display(),
        runs = runs.join(", "),
    );
    let path = out.join("Snakefile");
    std::fs::write(&path, snakefile)?;
    println!(
        "wrote {} ({} runs); run it with: cd {} && snakemake --cores N",
        path.display(),
        prepared.points.len(),
        out.display()
    );
    Ok(())
}

/// `explant sweep report DIR`: for every parameter and readout, the mean readout at each
/// parameter value and Spearman's rank correlation across completed runs, as
/// `sweep_report.csv`, and one plot per readout as `sweep_report.svg`.
fn report(dir: &Path) -> Result<()> {
    let spec_path = dir.join("sweep.toml");
    let spec =
        SweepSpec::from_file(&spec_path).with_context(|| format!("`{}` is not a sweep directory", dir.display()))?;
    let table = std::fs::read_to_string(dir.join("results.csv"))
        .with_context(|| format!("no results.csv in `{}`: run or collect the sweep first", dir.display()))?;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let rows: Vec<Vec<&str>> =
        lines.map(|l| l.split(',').collect()).filter(|r: &Vec<&str>| r.get(1) == Some(&"completed")).collect();
    if rows.is_empty() {
        bail!("`{}/results.csv` has no completed run", dir.display());
    }
    let col = |name: &str| header.iter().position(|h| *h == name);
    let mut csv = String::from("parameter,readout,value,runs,mean,sd,spearman_rho\n");
    let mut plots = Vec::new();
    for r in &spec.readouts {
        let Some(rc) = col(r.name()) else { continue };
        let mut series = Vec::new();
        for p in &spec.parameters {
            let Some(pc) = col(&p.path) else { continue };
            let pairs: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|row| Some((row.get(pc)?.parse::<f64>().ok()?, row.get(rc)?.parse::<f64>().ok()?)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            let rho = spearman(&pairs);
            // Mean and sd of the readout at each distinct parameter value.
            let mut values: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            values.sort_by(f64::total_cmp);
            values.dedup();
            let mut points = Vec::new();
            for v in values {
                let ys: Vec<f64> = pairs.iter().filter(|p| p.0 == v).map(|p| p.1).collect();
                let mean = ys.iter().sum::<f64>() / ys.len() as f64;
                let sd = (ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (ys.len().max(2) - 1) as f64).sqrt();
                csv.push_str(&format!("{},{},{v},{},{mean},{sd},{rho}\n", p.path, r.name(), ys.len()));
                points.push((v, mean));
            }
            series.push(explant_io::Series {
                name: format!("{} (ρ = {rho:.2})", p.path),
                points,
                dashed: false,
                colour: None,
            });
        }
        plots.push(explant_io::LinePlot {
            title: r.name().to_string(),
            x_label: "parameter value".into(),
            y_label: format!("mean {}", r.name()),
            series,
        });
    }
    std::fs::write(dir.join("sweep_report.csv"), csv)?;
    std::fs::write(dir.join("sweep_report.svg"), explant_io::panels_svg(&plots, 2))?;
    println!("wrote {}/sweep_report.csv and sweep_report.svg", dir.display());
    Ok(())
}

/// Spearman's rank correlation (average ranks for ties); NaN for fewer than 3 pairs or
/// a constant variable.
fn spearman(pairs: &[(f64, f64)]) -> f64 {
    if pairs.len() < 3 {
        return f64::NAN;
    }
    let ranks = |v: Vec<f64>| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for k in i..=j {
                r[idx[k]] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        r
    };
    let (a, b) = (ranks(pairs.iter().map(|p| p.0).collect()), ranks(pairs.iter().map(|p| p.1).collect()));
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 { f64::NAN } else { cov / (va * vb).sqrt() }
}

#[cfg(test)]
mod tests {
    use super::spearman;

    #[test]
    fn spearman_of_monotone_and_reversed_data() {
        let up: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, (i as f64).powi(3))).collect();
        assert!((spearman(&up) - 1.0).abs() < 1e-12);
        let down: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, -(i as f64))).collect();
        assert!((spearman(&down) + 1.0).abs() < 1e-12);
        assert!(spearman(&[(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)]).is_nan());
    }
}
