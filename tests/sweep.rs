//! `explant sweep` end to end: a local sweep with a failing point, resumption after a
//! crash, the emitted Snakemake workflow run by a real `snakemake` (its table must equal
//! the local one), and the report; what hostile input and faults do to a sweep: a
//! misspelt readout, a damaged run, a second sweep into the same folder, and a sweep
//! killed with SIGTERM or SIGKILL while its runs compute.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{EXE, TempDir, repo};

fn explant(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(EXE).args(args).env("NO_COLOR", "1").output().expect("start explant")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A small lateral-inhibition sheet, 20 min.
const SCENE: &str = r#"
version = 1
name = "tiny"
seed = 1
genes = ["DLL1", "NOTCH1", "HES1"]
[time]
dt = 1.0
duration = 20.0
record_every = 10.0
[grid]
size = [100.0, 100.0]
dx = 20.0
[contact]
genes = ["DLL1"]
radius = 15.0
[[cell_types]]
name = "epithelium"
baseline = { DLL1 = 1.0, NOTCH1 = 1.0, HES1 = 0.5 }
bias = { NOTCH1 = 6.0, HES1 = -4.0, DLL1 = 2.0 }
[tissue]
shape = "box"
min = [10.0, 10.0]
max = [90.0, 90.0]
cells = 60
cell_radius = 5.0
expression_noise = 0.1
cell_type = "epithelium"
[teacher]
degradation = 0.05
default_max_rate = 0.1
bias = 0.0
edges = [
  { source = "contact:DLL1", target = "HES1", weight = 8.0 },
  { source = "gene:HES1", target = "DLL1", weight = -6.0 },
]
"#;

fn spec(extra_values: &str) -> String {
    format!(
        r#"version = 1
name = "tiny-sweep"
scene = "tiny.toml"
replicates = 2
[[parameters]]
path = "teacher.edges[1].weight"
values = [-6.0, -2.0, 0.0]
[[parameters]]
path = "teacher.default_max_rate"
values = [0.1{extra_values}]
[[readouts]]
kind = "pseudobulk"
name = "hes1"
gene = "HES1"
[[readouts]]
kind = "cell_count"
name = "cells"
"#
    )
}

/// results.csv without the wall-time column, by run.
fn table(dir: &Path) -> Vec<String> {
    let t = std::fs::read_to_string(dir.join("results.csv")).expect("results.csv");
    let mut lines: Vec<&str> = t.lines().collect();
    let header: Vec<&str> = lines.remove(0).split(',').collect();
    let wall = header.iter().position(|h| *h == "wall_seconds").expect("wall_seconds column");
    let mut rows: Vec<String> = lines
        .iter()
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != wall).map(|(_, v)| v).collect::<Vec<_>>().join(","))
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_local_sweep_records_failures_resumes_after_a_crash_and_matches_snakemake() {
    let tmp = TempDir::new("sweep", "local");
    let dir = &tmp.0;
    std::fs::write(dir.join("tiny.toml"), SCENE).unwrap();
    // 3 weights × 2 max rates (one of them runs away) × 2 seeds = 12 runs, 6 fail.
    std::fs::write(dir.join("sweep.toml"), spec(", 1e12")).unwrap();
    let out = dir.join("out");
    let o = explant(&["sweep".as_ref(), dir.join("sweep.toml").as_os_str(), "--out".as_ref(), out.as_os_str()]);
    assert_eq!(o.status.code(), Some(3), "a sweep with failed runs exits 3:\n{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("6 of 12 runs failed") && err.contains("rerun the same command"), "{err}");
    let rows = table(&out);
    assert_eq!(rows.len(), 12);
    let failed: Vec<&String> = rows.iter().filter(|r| r.contains(",failed,")).collect();
    assert_eq!(failed.len(), 6);
    assert!(failed.iter().all(|r| r.contains("1000000000000")), "{failed:?}");
    assert!(failed.iter().all(|r| r.contains("expression")), "the error is recorded: {failed:?}");
    // Completed runs: HES1 falls as DLL1 repression weakens lateral inhibition? It rises:
    // weaker repression keeps neighbours' DLL1 high, which drives HES1.
    let hes1 = |w: &str| -> f64 {
        rows.iter()
            .filter(|r| r.contains(",completed,") && r.split(',').nth(3) == Some(w))
            .map(|r| r.split(',').nth(5).unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
            / 2.0
    };
    assert!(hes1("-6.0") < hes1("-2.0") && hes1("-2.0") <= hes1("0.0"), "{rows:?}");
    assert!(rows.iter().filter(|r| r.contains(",completed,")).all(|r| r.split(',').nth(6) == Some("60")));
    // The same sweep five points to a process (`explant sweep exec`) gives the same table.
    let batched = dir.join("batched-local");
    let o = explant(&[
        "sweep".as_ref(),
        dir.join("sweep.toml").as_os_str(),
        "--out".as_ref(),
        batched.as_os_str(),
        "--batch".as_ref(),
        "5".as_ref(),
        "--quiet".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("6 of 12 runs failed"), "{}", text(&o.stderr));
    assert_eq!(table(&batched), rows, "batches of 5 give the local table, failures included");

    // A good sweep, then a simulated crash: one finished run lost, one left half-written.
    let good = dir.join("good");
    std::fs::write(dir.join("good.toml"), spec("")).unwrap();
    let run = |out: &Path| {
        explant(&[
            "sweep".as_ref(),
            dir.join("good.toml").as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--quiet".as_ref(),
        ])
    };
    let o = run(&good);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let before = table(&good);
    assert_eq!(before.len(), 6);
    std::fs::remove_dir_all(good.join("runs/run_00002")).unwrap();
    std::fs::create_dir_all(good.join("runs/.partial-run_00003")).unwrap();
    std::fs::write(good.join("runs/.partial-run_00003/junk"), "half").unwrap();
    let o = run(&good);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("(5 done, 1 to run)"), "{}", text(&o.stderr));
    assert!(!good.join("runs/.partial-run_00003").exists());
    assert_eq!(table(&good), before, "a resumed sweep gives the same table");
    // A different spec into the same directory is refused.
    std::fs::write(dir.join("other.toml"), spec(", 0.2")).unwrap();
    let o = explant(&["sweep".as_ref(), dir.join("other.toml").as_os_str(), "--out".as_ref(), good.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("holds a different sweep"), "{}", text(&o.stderr));

    // The report.
    let o = explant(&["sweep".as_ref(), "report".as_ref(), good.as_os_str()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report = std::fs::read_to_string(good.join("sweep_report.csv")).unwrap();
    assert!(report.starts_with("parameter,readout,value,runs,mean,sd,spearman_rho"));
    assert!(report.lines().any(|l| l.starts_with("teacher.edges[1].weight,hes1,-6,2,")), "{report}");
    let svg = std::fs::read_to_string(good.join("sweep_report.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("hes1"));

    // results.parquet holds the same table (read by pyarrow through pandas).
    let python = repo().join(".venv/bin/python");
    if python.exists() {
        let script = "import sys, pandas as pd, numpy as np\n\
                      p = pd.read_parquet(sys.argv[1] + '/results.parquet'); c = pd.read_csv(sys.argv[1] + '/results.csv')\n\
                      assert list(p.columns) == list(c.columns), (list(p.columns), list(c.columns))\n\
                      assert len(p) == len(c) == 6\n\
                      assert (p['run'] == c['run']).all() and (p['seed'] == c['seed']).all()\n\
                      assert np.allclose(p['hes1'], c['hes1'], rtol=1e-12) and np.allclose(p['cells'], c['cells'])\n\
                      assert str(p['seed'].dtype) == 'int64' and str(p['hes1'].dtype) == 'float64'\n\
                      print('ok', len(p))\n";
        let o = Command::new(&python).args(["-c", script]).arg(&good).output().expect("start python");
        assert!(o.status.success(), "reading results.parquet: {}{}", text(&o.stdout), text(&o.stderr));
    } else if std::env::var("EXPLANT_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("EXPLANT_REQUIRE_PYTHON=1 but `{}` does not exist", python.display());
    }

    // The same sweep through Snakemake gives the same table, its failed points included:
    // a run that diverges (exit status 3) is a result, not a failed job.
    let snakemake = repo().join(".venv/bin/snakemake");
    if !snakemake.exists() {
        if std::env::var("EXPLANT_REQUIRE_PYTHON").as_deref() == Ok("1") {
            panic!("EXPLANT_REQUIRE_PYTHON=1 but `{}` does not exist", snakemake.display());
        }
        eprintln!("\n*** SKIPPED: the Snakemake part: no `{}` ***\n", snakemake.display());
        return;
    }
    let wf = dir.join("wf");
    let o = explant(&[
        "sweep".as_ref(),
        dir.join("sweep.toml").as_os_str(),
        "--emit".as_ref(),
        "snakemake".as_ref(),
        "--out".as_ref(),
        wf.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = snakemake_in(&wf, dir, &["--cores", "2", "--quiet"]);
    assert!(o.status.success(), "snakemake failed:\n{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(table(&wf), rows, "Snakemake and the local runner give the same table, failures included");

    // Batched: 12 points in 3 jobs of at most 5, each declaring its resources; the SLURM
    // profile plans them (a dry run needs no SLURM), and the workflow, run here with the
    // executable named by `--config`, gives the same table.
    let batched = dir.join("batched");
    let o = explant(&[
        "sweep".as_ref(),
        dir.join("sweep.toml").as_os_str(),
        "--emit".as_ref(),
        "snakemake".as_ref(),
        "--batch".as_ref(),
        "5".as_ref(),
        "--out".as_ref(),
        batched.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("12 runs in 3 jobs"), "{}", text(&o.stdout));
    let jobs = std::fs::read_to_string(batched.join("jobs.tsv")).unwrap();
    assert!(jobs.starts_with("job\truns\tmem_mb\truntime_min\n"), "{jobs}");
    assert!(jobs.contains("batch_00001\trun_00001 run_00002 run_00003 run_00004 run_00005\t512\t300\n"), "{jobs}");
    assert!(jobs.contains("batch_00003\trun_00011 run_00012\t512\t120\n"), "{jobs}");
    let plugin = Command::new(repo().join(".venv/bin/python"))
        .args(["-c", "import snakemake_executor_plugin_slurm"])
        .status()
        .is_ok_and(|s| s.success());
    if plugin {
        let o = snakemake_in(&batched, dir, &["--profile", "profiles/slurm", "--executor", "slurm", "--dry-run"]);
        let plan = text(&o.stdout) + &text(&o.stderr);
        assert!(o.status.success(), "the SLURM dry run failed:\n{plan}");
        let count = |job: &str| {
            plan.lines().find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() == 2 && w[0] == job).then(|| w[1].to_owned())
            })
        };
        assert_eq!(
            (count("batch"), count("collect"), count("total")),
            (Some("3".into()), Some("1".into()), Some("5".into())),
            "{plan}"
        );
        assert!(plan.contains("mem_mb=512") && plan.contains("runtime=300") && plan.contains("runtime=120"), "{plan}");
    } else if std::env::var("EXPLANT_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("EXPLANT_REQUIRE_PYTHON=1 but snakemake-executor-plugin-slurm is not installed (scripts/setup.sh)");
    } else {
        eprintln!("\n*** SKIPPED: the SLURM dry run: no snakemake-executor-plugin-slurm ***\n");
    }
    let explant_path = format!("explant={EXE}");
    let o = snakemake_in(&batched, dir, &["--cores", "2", "--quiet", "--config", &explant_path]);
    assert!(o.status.success(), "snakemake --batch 5 failed:\n{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(table(&batched), rows, "batched jobs give the same table");
}

/// The ids of the points in `dir/points.csv` whose `teacher.default_max_rate` is `rate`.
fn points_with_rate(dir: &Path, rate: f64) -> Vec<String> {
    let t = std::fs::read_to_string(dir.join("points.csv")).expect("points.csv");
    let mut lines = t.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "teacher.default_max_rate").expect("the rate column");
    lines
        .filter(|l| l.split(',').nth(col).and_then(|v| v.parse::<f64>().ok()) == Some(rate))
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect()
}

#[test]
fn sweep_exec_runs_a_batch_in_one_process_keeps_what_ended_and_records_what_cannot_run() {
    let tmp = TempDir::new("sweep", "exec");
    let dir = &tmp.0;
    std::fs::write(dir.join("tiny.toml"), SCENE).unwrap();
    std::fs::write(dir.join("sweep.toml"), spec(", 1e12")).unwrap();
    let wf = dir.join("wf");
    let o = explant(&[
        "sweep".as_ref(),
        dir.join("sweep.toml").as_os_str(),
        "--emit".as_ref(),
        "snakemake".as_ref(),
        "--batch".as_ref(),
        "4".as_ref(),
        "--out".as_ref(),
        wf.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let snakefile = std::fs::read_to_string(wf.join("Snakefile")).unwrap();
    assert!(snakefile.contains(r#""{EXPLANT}" sweep exec . {params.runs} --threads {threads}"#), "{snakefile}");
    let good = points_with_rate(&wf, 0.1);
    let bad = points_with_rate(&wf, 1e12);
    assert_eq!((good.len(), bad.len()), (6, 6));
    let exec = |ids: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["sweep".as_ref(), "exec".as_ref(), wf.as_os_str()];
        args.extend(ids.iter().map(|s| std::ffi::OsStr::new(*s)));
        explant(&args)
    };

    // Two good points and one that diverges, in one process: a line per point, the
    // diverged one kept as a failed run (a result, exit status 0).
    let o = exec(&[&good[0], &bad[0], &good[1]]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        text(&o.stdout).contains("2 completed, 1 failed in the simulation, 0 already ended, 0 could not run"),
        "{}",
        text(&o.stdout)
    );
    assert!(err.contains(&format!("{}: completed in", good[0])) && err.contains("(3 of 3)"), "{err}");
    assert!(err.contains(&format!("{}: failed at tick", bad[0])), "{err}");
    let manifest = |id: &str| std::fs::read_to_string(wf.join("runs").join(id).join("manifest.json")).unwrap();
    assert!(manifest(&good[0]).contains("\"completed\""), "{}", manifest(&good[0]));
    assert!(manifest(&bad[0]).contains("\"failed\""), "{}", manifest(&bad[0]));
    assert!(!wf.join("runs").join(format!(".partial-{}", good[1])).exists());

    // A run in the batch is the run `explant run` makes of the same scene.
    let alone = dir.join("alone");
    let o = explant(&[
        "run".as_ref(),
        wf.join("scenes").join(format!("{}.toml", good[1])).as_os_str(),
        "--out".as_ref(),
        alone.as_os_str(),
        "--quiet".as_ref(),
        "--no-figures".as_ref(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for file in ["timeseries.csv", "tissue.h5ad"] {
        let batch = std::fs::read(wf.join("runs").join(&good[1]).join(file)).unwrap();
        assert!(batch == std::fs::read(alone.join(file)).unwrap(), "{file} differs between exec and run");
    }

    // A rerun keeps what ended (the diverged point too) and runs the rest.
    let o = exec(&[&good[0], &bad[0], &good[2]]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("1 completed, 0 failed in the simulation, 2 already ended"),
        "{}",
        text(&o.stdout)
    );

    // An id that is not a point (or a path) is refused before anything runs.
    for id in ["run_99999", "../tiny"] {
        let o = exec(&[&good[3], id]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains(&format!("`{id}` is not a point of the sweep")), "{}", text(&o.stderr));
        assert!(!wf.join("runs").join(&good[3]).exists(), "nothing ran");
    }

    // A point whose scene no longer loads is recorded; the others go on; exit status 1.
    let broken = wf.join("scenes").join(format!("{}.toml", good[3]));
    std::fs::write(&broken, "version = 1\ngrid = 3\n").unwrap();
    let o = exec(&[&good[3], &good[4]]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("1 of 2 points could not run") && err.contains(&format!("sweep point {}", good[3])), "{err}");
    assert!(err.contains(&format!("{}.toml", good[3])), "the error names the scene file: {err}");
    assert!(wf.join("runs").join(&good[4]).join("manifest.json").is_file(), "the other point ran");
    assert!(!wf.join("runs").join(&good[3]).exists());
    let failed = std::fs::read_to_string(wf.join("runs").join(format!("{}.failed", good[3]))).unwrap();
    assert!(failed.contains(&format!("sweep point {}", good[3])), "{failed}");
}

#[test]
fn calibrate_times_the_most_expensive_point_that_runs_and_sizes_every_job_from_it() {
    let tmp = TempDir::new("sweep", "calibrate");
    let dir = &tmp.0;
    std::fs::write(dir.join("tiny.toml"), SCENE).unwrap();
    // The runaway rate first, so the first (and equally expensive) points diverge.
    let spec = spec("").replace("values = [0.1]", "values = [1e12, 0.1]");
    std::fs::write(dir.join("sweep.toml"), &spec).unwrap();
    let spec_path = dir.join("sweep.toml");
    let emit = |out: &Path, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["sweep".as_ref(), spec_path.as_os_str()];
        args.extend(["--out".as_ref(), out.as_os_str()]);
        args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
        explant(&args)
    };

    // Refusals: calibration is for emitted workflows, and a spec's own runtime wins no
    // silent contest with it.
    let o = emit(&dir.join("local"), &["--calibrate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("goes with `--emit snakemake`"), "{}", text(&o.stderr));
    assert!(!dir.join("local").exists());
    let o = emit(&dir.join("neg"), &["--emit", "snakemake", "--calibrate=-1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("`--calibrate -1`"), "{}", text(&o.stderr));
    std::fs::write(dir.join("fixed.toml"), format!("{spec}[cluster]\nruntime_min = 7\n")).unwrap();
    let o = explant(&[
        "sweep".as_ref(),
        dir.join("fixed.toml").as_os_str(),
        "--out".as_ref(),
        dir.join("fixed").as_os_str(),
        "--emit".as_ref(),
        "snakemake".as_ref(),
        "--calibrate".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("runtime_min = 7") && text(&o.stderr).contains("give one"), "{}", text(&o.stderr));

    let wf = dir.join("wf");
    // A budget longer than the 20-tick runs: every tick of each point tried is timed, so
    // the runaway points' divergence (at tick 10) is always seen.
    let o = emit(&wf, &["--emit", "snakemake", "--batch", "4", "--calibrate", "60"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(wf.join("calibration.json")).unwrap()).unwrap();
    let bad = points_with_rate(&wf, 1e12);
    let good = points_with_rate(&wf, 0.1);
    let skipped = cal["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "the first two, diverging points are skipped: {cal}");
    for s in skipped {
        assert!(bad.contains(&s["point"].as_str().unwrap().to_owned()), "{cal}");
        assert!(s["error"].as_str().unwrap().contains("stage `"), "{cal}");
    }
    assert!(good.contains(&cal["point"].as_str().unwrap().to_owned()), "a point that runs is timed: {cal}");
    assert_eq!(cal["ticks_timed"].as_u64().unwrap(), 19, "every tick after the warm-up: {cal}");
    let per_tick = cal["seconds_per_tick"].as_f64().unwrap();
    assert!(per_tick > 0.0 && per_tick < 5.0, "{cal}");
    // A 20-tick sheet of 60 cells takes well under a minute: each run asks for the
    // floor of 1 minute, not the untuned default of 60 per run.
    let requests: Vec<u64> = cal["runtime_min"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(requests, vec![1; 12], "{cal}");
    let jobs = std::fs::read_to_string(wf.join("jobs.tsv")).unwrap();
    let runtimes: Vec<&str> = jobs.lines().skip(1).map(|l| l.split('\t').nth(3).unwrap()).collect();
    assert_eq!(runtimes, ["4", "4", "4"], "a job asks for the sum of its runs: {jobs}");
    // The requests hold: the runs, made here, take less than they asked for.
    let ids: Vec<&str> = good.iter().map(String::as_str).collect();
    let mut args: Vec<&std::ffi::OsStr> = vec!["sweep".as_ref(), "exec".as_ref(), wf.as_os_str()];
    args.extend(ids.iter().map(|s| std::ffi::OsStr::new(*s)));
    let o = explant(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for id in &good {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(wf.join("runs").join(id).join("manifest.json")).unwrap())
                .unwrap();
        assert!(m["wall_seconds"].as_f64().unwrap() < 60.0, "{id}: {m}");
    }
}

/// Run the real `snakemake` in the emitted workflow folder `wf` (its caches under `home`).
fn snakemake_in(wf: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(repo().join(".venv/bin/snakemake"))
        .args(["--snakefile", "Snakefile"])
        .args(args)
        .current_dir(wf)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .output()
        .expect("start snakemake")
}

#[test]
fn a_sweep_killed_with_sigkill_resumes_without_losing_or_duplicating_runs() {
    let tmp = TempDir::new("sweep", "kill");
    let dir = &tmp.0;
    std::fs::write(dir.join("tiny.toml"), SCENE).unwrap();
    let spec = spec("").replace("replicates = 2", "replicates = 4");
    std::fs::write(dir.join("sweep.toml"), spec).unwrap();
    let out = dir.join("out");
    let mut child = Command::new(EXE)
        .args(["sweep".as_ref(), dir.join("sweep.toml").as_os_str(), "--out".as_ref(), out.as_os_str()])
        .args(["--quiet", "--jobs", "1"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start explant sweep");
    // Kill it (SIGKILL) once some, but not all, of the 12 runs are done.
    let started = std::time::Instant::now();
    loop {
        let done = std::fs::read_dir(out.join("runs"))
            .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("run_")).count())
            .unwrap_or(0);
        if done >= 2 {
            break;
        }
        assert!(started.elapsed().as_secs() < 120, "the sweep made no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().unwrap();
    // The run in flight dies with the sweep (its parent-death signal); a partial
    // directory it leaves is redone on resume.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(child_runs(&out).is_empty(), "a run outlived the killed sweep");
    let finished_before: usize = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("run_"))
        .count();
    assert!(finished_before < 12, "the sweep finished before it was killed");
    let o = explant(&[
        "sweep".as_ref(),
        dir.join("sweep.toml").as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(&format!("({finished_before} done, {} to run)", 12 - finished_before)),
        "{}",
        text(&o.stderr)
    );
    let rows = table(&out);
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r.contains(",completed,")), "{rows:?}");
    let mut ids: Vec<&str> = rows.iter().map(|r| r.split(',').next().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 12, "no run twice");
    assert!(
        std::fs::read_dir(out.join("runs")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".partial"))
    );
}

#[test]
fn a_misspelt_readout_is_refused_before_any_run_starts_and_leaves_no_folder() {
    let tmp = TempDir::new("sweep", "readout");
    let dir = &tmp.0;
    std::fs::write(dir.join("tiny.toml"), SCENE).unwrap();
    std::fs::write(dir.join("bad.toml"), spec("").replace("gene = \"HES1\"", "gene = \"HES2\"")).unwrap();
    let out = dir.join("out");
    let o = explant(&["sweep".as_ref(), dir.join("bad.toml").as_os_str(), "--out".as_ref(), out.as_os_str()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.toml")
            && err.contains("field `readouts[0].gene`")
            && err.contains("`HES2` is not a gene")
            && err.contains("did you mean `HES1`?"),
        "{err}"
    );
    assert!(!out.exists(), "the refused sweep created `{}` (and so could have started runs)", out.display());
    // `--batch 0` is refused, with or without `--emit`.
    std::fs::write(dir.join("good.toml"), spec("")).unwrap();
    for (args, says) in
        [(&["--batch", "0", "--emit", "snakemake"][..], "`--batch 0`"), (&["--batch", "0"][..], "`--batch 0`")]
    {
        let o = Command::new(EXE)
            .arg("sweep")
            .arg(dir.join("good.toml"))
            .arg("--out")
            .arg(&out)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("start explant");
        let err = text(&o.stderr);
        assert!(o.status.code() == Some(1) && err.contains(says), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} created `{}`", out.display());
    }
}

#[test]
fn a_run_with_a_missing_or_damaged_manifest_is_redone_on_resume_and_never_stops_the_table() {
    let tmp = TempDir::new("sweep", "damaged");
    let dir = &tmp.0;
    std::fs::write(dir.join("tiny.toml"), SCENE).unwrap();
    std::fs::write(dir.join("sweep.toml"), spec("")).unwrap();
    let out = dir.join("out");
    let run = || {
        explant(&[
            "sweep".as_ref(),
            dir.join("sweep.toml").as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--quiet".as_ref(),
        ])
    };
    let o = run();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let before = table(&out);
    assert_eq!(before.len(), 6);
    // One finished run loses its manifest, another's is truncated; a stale failure
    // marker of an earlier sweep sits beside a completed run.
    std::fs::remove_file(out.join("runs/run_00002/manifest.json")).unwrap();
    std::fs::write(out.join("runs/run_00004/manifest.json"), "{\"status\": \"compl").unwrap();
    std::fs::write(out.join("runs/run_00001.failed"), "run_00001: an old failure\n").unwrap();

    // The table is still written, the damaged runs marked, the others as before.
    let o = explant(&["sweep".as_ref(), "collect".as_ref(), out.join("sweep.toml").as_os_str(), out.as_os_str()]);
    assert!(o.status.success(), "one damaged manifest stopped the table: {}", text(&o.stderr));
    assert!(text(&o.stdout).contains("4 of 6 runs completed"), "{}", text(&o.stdout));
    let rows = table(&out);
    let row = |id: &str| rows.iter().find(|r| r.starts_with(&format!("{id},"))).cloned().unwrap_or_default();
    assert!(row("run_00002").contains(",failed,") && row("run_00002").contains("has no"), "{rows:?}");
    assert!(row("run_00004").contains(",failed,") && row("run_00004").contains("is damaged"), "{rows:?}");
    for id in ["run_00001", "run_00003", "run_00005", "run_00006"] {
        assert!(before.contains(&row(id)), "{id} changed: {rows:?}");
    }

    // The resume redoes exactly those two, says so, and ends with the same table.
    let o = run();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("run_00002: the run has no `runs/run_00002/manifest.json`; redoing it"), "{err}");
    assert!(err.contains("run_00004: `runs/run_00004/manifest.json` is damaged"), "{err}");
    assert!(err.contains("(4 done, 2 to run)"), "{err}");
    assert_eq!(table(&out), before, "the redone runs give the same rows");
    assert!(!out.join("runs/run_00001.failed").exists(), "a stale failure marker was kept");
}

/// Process ids of the live `explant run` processes writing under `out` (from `/proc`;
/// a zombie has no command line and is not counted).
fn child_runs(out: &Path) -> Vec<u32> {
    let needle = out.to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> =
                cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            args.get(1).is_some_and(|a| a == "run") && args.iter().any(|a| a.contains(&needle))
        })
        .collect()
}

/// Wait until `f` holds (polling), at most `secs` seconds.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed().as_secs() < secs {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f()
}

/// Kill leftover runs (so a failing test does not leave them computing) and fail.
fn no_survivors(out: &Path, what: &str) {
    let left = child_runs(out);
    for pid in &left {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(left.is_empty(), "{what}: runs {left:?} outlived the sweep");
}

#[cfg(target_os = "linux")]
#[test]
fn killing_a_sweep_ends_its_runs_and_a_second_sweep_into_its_folder_is_refused_meanwhile() {
    let tmp = TempDir::new("sweep", "sigterm");
    let dir = &tmp.0;
    // Runs that would compute for many minutes.
    let long = SCENE
        .replace("duration = 20.0", "duration = 1000000.0")
        .replace("record_every = 10.0", "record_every = 500000.0");
    std::fs::write(dir.join("tiny.toml"), long).unwrap();
    std::fs::write(dir.join("sweep.toml"), spec("")).unwrap();
    let out = dir.join("out");
    let start = || {
        Command::new(EXE)
            .args(["sweep".as_ref(), dir.join("sweep.toml").as_os_str(), "--out".as_ref(), out.as_os_str()])
            .args(["--quiet", "--jobs", "2"])
            .env("NO_COLOR", "1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start explant sweep")
    };
    let mut sweep = start();
    let running = wait_for(120, || child_runs(&out).len() == 2);
    if !running {
        let _ = sweep.kill();
        no_survivors(&out, "setup");
        panic!("the sweep did not start two runs");
    }
    let runs = child_runs(&out);

    // A second sweep into the folder is refused while the first lives, and starts nothing.
    let o = explant(&["sweep".as_ref(), dir.join("sweep.toml").as_os_str(), "--out".as_ref(), out.as_os_str()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("another `explant sweep` is using") && err.contains("out"), "{err}");
    let mut now = child_runs(&out);
    now.sort();
    let mut was = runs.clone();
    was.sort();
    assert_eq!(now, was, "the refused sweep started or stopped runs");

    // SIGTERM: the sweep kills its runs, discards their partial outputs, writes the table
    // and exits non-zero.
    let _ = Command::new("kill").args(["-TERM", &sweep.id().to_string()]).status();
    let ended = wait_for(60, || sweep.try_wait().ok().flatten().is_some());
    if !ended {
        let _ = sweep.kill();
    }
    let o = sweep.wait_with_output().unwrap();
    let gone = wait_for(10, || child_runs(&out).is_empty());
    if !gone {
        no_survivors(&out, "SIGTERM");
    }
    assert!(ended, "the sweep did not end on SIGTERM");
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "a sweep stopped by SIGTERM exits 128 + 15: {err}");
    assert!(
        err.contains("sweep stopped by SIGTERM: 2 run(s) in flight were killed")
            && err.contains("rerun the same command"),
        "{err}"
    );
    let names: Vec<String> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.is_empty(), "killed runs are neither failures nor partial leftovers: {names:?}");
    let rows = table(&out);
    assert!(rows.len() == 6 && rows.iter().all(|r| r.contains(",missing,")), "{rows:?}");

    // SIGKILL cannot be caught: the runs die with the sweep all the same.
    let mut sweep = start();
    let running = wait_for(120, || child_runs(&out).len() == 2);
    sweep.kill().expect("kill -9");
    sweep.wait().unwrap();
    assert!(running, "the resumed sweep did not start two runs");
    if !wait_for(10, || child_runs(&out).is_empty()) {
        no_survivors(&out, "SIGKILL");
    }
}
