//! `explant sweep` end to end: a local sweep with a failing point, resumption after a
//! crash, the emitted Snakemake workflow run by a real `snakemake` (its table must equal
//! the local one), and the report.

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
    assert_eq!(o.status.code(), Some(1), "a sweep with failed runs exits 1:\n{}", text(&o.stderr));
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

    // The same sweep through Snakemake gives the same table.
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
        dir.join("good.toml").as_os_str(),
        "--emit".as_ref(),
        "snakemake".as_ref(),
        "--out".as_ref(),
        wf.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = Command::new(&snakemake)
        .args(["--cores", "2", "--snakefile", "Snakefile", "--quiet"])
        .current_dir(&wf)
        .env("HOME", dir)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .expect("start snakemake");
    assert!(o.status.success(), "snakemake failed:\n{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(table(&wf), before, "Snakemake and the local runner give the same table");
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
    // The run in flight is orphaned; let it finish (it renames its own directory or
    // leaves a partial one) before resuming.
    std::thread::sleep(std::time::Duration::from_secs(2));
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
