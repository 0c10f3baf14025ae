//! End-to-end tests of the `explant` binary: run a shortened copy of the default scene
//! and check what it writes (AnnData, picture, time series, manifest) and what it
//! means (mass balance of the ligand, the WNT gradient, teacher ≈ learned model,
//! thread-count and GPU/CPU parity), then feed it bad input and check that every
//! refusal is a clear message, never a panic.
//!
//! Each test works in its own folder under the system temp dir, named after the
//! process and the test; the folder is removed when the test passes and kept (its path
//! printed) when it fails.
//!
//! Environment:
//! - `EXPLANT_PYTHON`: the Python with `anndata` used to read the `.h5ad` back
//!   (default `<repo>/.venv/bin/python`); without one that part is skipped loudly,
//!   unless `EXPLANT_REQUIRE_PYTHON=1`.
//! - `EXPLANT_REQUIRE_GPU_ADAPTER=1`: fail instead of skipping when wgpu finds no adapter.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{EXE, TempDir, assert_clean_failure, assert_success, explant, loud, read, repo, stderr, stdout};

/// The genes of `scenes/default.toml`, in order.
const GENES: [&str; 7] = ["WNT3A", "FZD7", "AXIN2", "LGR5", "DLL1", "NOTCH1", "HES1"];
/// The eight stages of a tick, in order.
const STAGES: [&str; 8] = ["secrete", "diffuse", "sense", "respond", "perturb", "mechanics", "fate", "record"];

/// The short scene: 300 cells in a 120 µm disk around the 45 µm organiser, 10 min in
/// ticks of 0.5 min, recorded every 5 min.
const CELLS: usize = 300;
const TISSUE_RADIUS: f64 = 120.0;
const ORGANISER_RADIUS: f64 = 45.0;
const CELL_RADIUS: f64 = 6.0;
const CENTRE: [f64; 2] = [300.0, 300.0];
const TICKS: u64 = 20;
const RECORD_TICKS: [u64; 3] = [0, 10, 20];
/// From the default scene: secretion per unit WNT3A expression and the ligand's decay.
const SECRETION_RATE: f64 = 30.0;
const DECAY: f64 = 0.02;

fn default_model() -> PathBuf {
    repo().join("models/default.pt")
}

fn skip(test: &str, what: &str, why: &str) {
    loud(&format!("SKIPPED: {test}: {what}: {why}"));
}

/// Replace `from` (which must occur exactly once) by `to`, so that a change to the
/// default scene breaks this test loudly instead of silently running the long scene.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "scenes/default.toml should contain `{from}` exactly once");
    text.replacen(from, to, 1)
}

/// `scenes/default.toml`, shortened, with its model path pointing at `model`.
fn short_scene_text(model: &Path) -> String {
    let text = std::fs::read_to_string(repo().join("scenes/default.toml")).expect("read scenes/default.toml");
    let text = replace_once(&text, "duration = 240.0", "duration = 10.0");
    let text = replace_once(&text, "record_every = 20.0", "record_every = 5.0");
    let text = replace_once(&text, "cells = 1500", &format!("cells = {CELLS}"));
    let text = replace_once(&text, "radius = 260.0", &format!("radius = {TISSUE_RADIUS:.1}"));
    replace_once(&text, "path = \"../models/default.pt\"", &format!("path = \"{}\"", model.display()))
}

/// Write the short scene (with the shipped model) into `dir` and return its path.
fn write_short_scene(dir: &TempDir) -> PathBuf {
    write_scene(dir, "scene.toml", &short_scene_text(&default_model()))
}

fn write_scene(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write `{}`: {e}", path.display()));
    path
}

/// `explant run SCENE --out OUT --quiet EXTRA...`, which must succeed.
fn run_ok(scene: &Path, out: &Path, extra: &[&str]) -> Output {
    let o = run(scene, out, extra);
    assert_success(&o, &format!("explant run {} {}", scene.display(), extra.join(" ")));
    o
}

fn run(scene: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run".into(), scene.as_os_str().to_owned(), "--out".into(), out.as_os_str().to_owned()];
    args.push("--quiet".into());
    args.extend(extra.iter().map(Into::into));
    explant(args)
}

fn manifest(out: &Path) -> Value {
    serde_json::from_str(&read(&out.join("manifest.json"))).expect("manifest.json is JSON")
}

/// One row of `timeseries.csv`: the mean expression of one cell type at one record time.
#[derive(Debug, Clone, PartialEq)]
struct Pseudobulk {
    tick: u64,
    time: f64,
    cell_type: String,
    cells: usize,
    mean: Vec<f64>,
}

fn timeseries(out: &Path) -> Vec<Pseudobulk> {
    let text = read(&out.join("timeseries.csv"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("timeseries.csv has a header").split(',').collect();
    let mut want = vec!["tick", "time_min", "cell_type", "cells"];
    want.extend(GENES);
    assert_eq!(header, want, "timeseries.csv header");
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), want.len(), "timeseries.csv row `{line}`");
            Pseudobulk {
                tick: f[0].parse().expect("tick"),
                time: f[1].parse().expect("time_min"),
                cell_type: f[2].to_string(),
                cells: f[3].parse().expect("cells"),
                mean: f[4..].iter().map(|v| v.parse().expect("mean expression")).collect(),
            }
        })
        .collect()
}

/// `ligand_totals.csv` as (tick, time, totals per ligand).
fn ligand_totals(out: &Path) -> Vec<(u64, f64, Vec<f64>)> {
    let text = read(&out.join("ligand_totals.csv"));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("tick,time_min,WNT3A"), "ligand_totals.csv header");
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 3, "ligand_totals.csv row `{line}`");
            (
                f[0].parse().expect("tick"),
                f[1].parse().expect("time_min"),
                f[2..].iter().map(|v| v.parse().expect("total")).collect(),
            )
        })
        .collect()
}

fn gene(name: &str) -> usize {
    GENES.iter().position(|g| *g == name).expect("known gene")
}

// ---------------------------------------------------------------------------------
// Reading the AnnData back with Python.

/// Dumps an `.h5ad` as JSON: cell types, X and obsm['spatial'].
const DUMP_H5AD: &str = r#"
import json, sys
import anndata
ad = anndata.read_h5ad(sys.argv[1])
json.dump({
    "cell_type": [str(c) for c in ad.obs["cell_type"]],
    "X": ad.X.tolist(),
    "spatial": ad.obsm["spatial"].tolist(),
    "field_shape": list(ad.uns["fields"]["WNT3A"].shape),
    "field_min": float(ad.uns["fields"]["WNT3A"].min()),
    "spacing": float(ad.uns["fields_grid"]["spacing"]),
}, sys.stdout)
"#;

/// The Python to read `.h5ad` files with, or why there is none.
fn python_with_anndata() -> Result<PathBuf, String> {
    let python = match std::env::var_os("EXPLANT_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo().join(".venv/bin/python"),
    };
    match Command::new(&python).args(["-c", "import anndata"]).output() {
        Ok(o) if o.status.success() => Ok(python),
        Ok(o) => Err(format!("`{}` cannot import anndata: {}", python.display(), stderr(&o).trim())),
        Err(e) => Err(format!("cannot start `{}`: {e}", python.display())),
    }
}

/// A cell of an `.h5ad` as Python read it.
struct H5adCell {
    cell_type: String,
    expression: Vec<f64>,
    position: Vec<f64>,
}

fn check_h5ad_script(python: &Path, h5ad: &Path, n_obs: usize, scene_contains: &str) {
    let o = Command::new(python)
        .arg(repo().join("tests/python/check_h5ad.py"))
        .arg(h5ad)
        .arg(n_obs.to_string())
        .arg(GENES.len().to_string())
        .arg(GENES.join(","))
        .arg("2")
        .args(["--categories", "organiser,responder"])
        .args(["--scene-contains", scene_contains])
        .arg("--run-columns")
        .output()
        .expect("start python");
    assert_success(&o, &format!("check_h5ad.py {}", h5ad.display()));
    assert!(stdout(&o).starts_with("ok:"), "check_h5ad.py said:\n{}", stdout(&o));
}

fn dump_h5ad(python: &Path, h5ad: &Path) -> Vec<H5adCell> {
    let o = Command::new(python).args(["-c", DUMP_H5AD]).arg(h5ad).output().expect("start python");
    assert_success(&o, &format!("reading {} with anndata", h5ad.display()));
    let v: Value = serde_json::from_slice(&o.stdout).expect("the dump is JSON");
    // The ligand field travels with every snapshot: 600 µm / 10 µm = 60 voxels a side.
    assert_eq!(v["field_shape"], serde_json::json!([60, 60]), "uns['fields']['WNT3A'] shape");
    assert_eq!(v["spacing"].as_f64(), Some(10.0), "uns['fields_grid']['spacing']");
    assert!(v["field_min"].as_f64().expect("field_min") >= 0.0, "negative concentration in the field");
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array().expect("a row").iter().map(|x| x.as_f64().expect("a number")).collect()
    };
    let types = v["cell_type"].as_array().expect("cell_type");
    let x = v["X"].as_array().expect("X");
    let spatial = v["spatial"].as_array().expect("spatial");
    assert_eq!(x.len(), types.len());
    assert_eq!(spatial.len(), types.len());
    types
        .iter()
        .zip(x)
        .zip(spatial)
        .map(|((t, x), p)| H5adCell {
            cell_type: t.as_str().expect("a cell type").to_string(),
            expression: floats(x),
            position: floats(p),
        })
        .collect()
}

fn distance_from_centre(c: &H5adCell) -> f64 {
    (c.position[0] - CENTRE[0]).hypot(c.position[1] - CENTRE[1])
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    assert!(n > 0, "mean of nothing");
    sum / n as f64
}

// ---------------------------------------------------------------------------------

#[test]
fn run_writes_anndata_picture_and_manifest() {
    let dir = TempDir::new("cli", "run_writes_anndata_picture_and_manifest");
    let scene = write_short_scene(&dir);
    let out = dir.join("out");
    let o = run_ok(&scene, &out, &["--diffusion", "cpu"]);

    // The per-stage timing table.
    let err = stderr(&o);
    assert!(err.contains("stage        total (s)   per tick (ms)   share"), "no timing table in stderr:\n{err}");
    for stage in STAGES.iter().chain(&["all"]) {
        assert!(err.lines().any(|l| l.starts_with(&format!("{stage:<12} "))), "no `{stage}` row in:\n{err}");
    }

    // Manifest.
    let m = manifest(&out);
    assert_eq!(m["status"], "completed", "manifest: {m:#}");
    assert_eq!(m["ticks_planned"].as_u64(), Some(TICKS), "manifest: {m:#}");
    assert_eq!(m["ticks_completed"], m["ticks_planned"], "manifest: {m:#}");
    assert_eq!(m["time_min"].as_f64(), Some(10.0), "manifest: {m:#}");
    assert_eq!(m["cells"].as_u64(), Some(CELLS as u64), "manifest: {m:#}");
    assert_eq!(m["seed"].as_u64(), Some(7), "manifest: {m:#}");
    let diffusion = m["diffusion_backend"].as_str().expect("diffusion_backend");
    assert!(diffusion.starts_with("cpu"), "asked for cpu diffusion, manifest says `{diffusion}`");
    let model = m["response_model"].as_str().expect("response_model");
    assert!(model.starts_with("torchscript") && model.contains("default.pt"), "response_model `{model}`");
    let stages = m["stage_seconds"].as_object().expect("stage_seconds");
    let mut names: Vec<&str> = stages.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut want = STAGES.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "stage_seconds");
    for (stage, secs) in stages {
        let secs = secs.as_f64().unwrap_or(-1.0);
        assert!(secs.is_finite() && secs >= 0.0, "stage `{stage}` took {secs} s");
    }

    // The picture: a PNG of the requested width (800 px by default) and a map at least
    // as tall as the square grid, above the legend.
    let png = std::fs::read(out.join("tissue.png")).expect("tissue.png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "tissue.png signature");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(width, 800, "tissue.png width");
    assert!(height >= 800, "tissue.png height {height}");
    assert!(png.len() > 5_000, "tissue.png is only {} bytes", png.len());

    for file in ["tissue.h5ad", "snapshots/tick_0000000.h5ad", "scene.toml"] {
        assert!(out.join(file).is_file(), "`{file}` was not written");
    }
    for tick in RECORD_TICKS {
        let snap = out.join(format!("snapshots/tick_{tick:07}.h5ad"));
        assert!(snap.is_file(), "snapshot `{}` was not written", snap.display());
    }
    assert_eq!(read(&out.join("scene.toml")), read(&scene), "scene.toml is not the scene that ran");

    // Time series: both cell types at every record time, all cells accounted for, the
    // initial state the scene's baselines.
    let ts = timeseries(&out);
    let keys: Vec<(u64, f64, &str)> = ts.iter().map(|r| (r.tick, r.time, r.cell_type.as_str())).collect();
    let want: Vec<(u64, f64, &str)> = RECORD_TICKS
        .iter()
        .flat_map(|&t| [(t, t as f64 * 0.5, "organiser"), (t, t as f64 * 0.5, "responder")])
        .collect();
    assert_eq!(keys, want, "timeseries.csv rows");
    for tick in RECORD_TICKS {
        let cells: usize = ts.iter().filter(|r| r.tick == tick).map(|r| r.cells).sum();
        assert_eq!(cells, CELLS, "cells at tick {tick}");
    }
    let first = |ty: &str| ts.iter().find(|r| r.cell_type == ty).unwrap();
    let last = |ty: &str| ts.iter().rev().find(|r| r.cell_type == ty).unwrap();
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(close(&first("organiser").mean, &[1.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]), "{:?}", first("organiser"));
    assert!(close(&first("responder").mean, &[0.0, 1.9, 0.1, 0.1, 1.0, 1.9, 0.1]), "{:?}", first("responder"));
    // Lateral inhibition starts at once: neighbours' DLL1 switches on HES1, which
    // represses DLL1.
    let (r0, r1) = (first("responder"), last("responder"));
    assert!(r1.mean[gene("HES1")] > r0.mean[gene("HES1")] + 0.3, "HES1 did not rise: {r0:?} → {r1:?}");
    assert!(r1.mean[gene("DLL1")] < r0.mean[gene("DLL1")] - 0.1, "DLL1 did not fall: {r0:?} → {r1:?}");

    // Ligand mass balance: d(total)/dt = secretion − decay × total, with secretion
    // = rate × Σ WNT3A expression (zero-flux walls lose nothing). Integrated with the
    // trapezoid rule over the record times, so a few per cent of slack.
    let totals = ligand_totals(&out);
    assert_eq!(totals.iter().map(|t| t.0).collect::<Vec<_>>(), RECORD_TICKS, "ligand_totals.csv ticks");
    assert_eq!(totals[0].2[0], 0.0, "the field starts empty");
    let secretion = |tick: u64| -> f64 {
        SECRETION_RATE
            * ts.iter().filter(|r| r.tick == tick).map(|r| r.cells as f64 * r.mean[gene("WNT3A")]).sum::<f64>()
    };
    let mut expected = 0.0;
    for pair in totals.windows(2) {
        let ((t0, time0, _), (t1, time1, got)) = (&pair[0], &pair[1]);
        let h = time1 - time0;
        let fade = (-DECAY * h).exp();
        expected = expected * fade + 0.5 * h * (secretion(*t0) * fade + secretion(*t1));
        let rel = (got[0] - expected).abs() / expected;
        assert!(rel < 0.03, "WNT3A total at tick {t1} is {}, mass balance expects {expected:.1} ({rel:.3})", got[0]);
    }

    // Read the AnnData back with Python's anndata.
    let python = match python_with_anndata() {
        Ok(p) => p,
        Err(why) if std::env::var("EXPLANT_REQUIRE_PYTHON").as_deref() != Ok("1") => {
            skip("run_writes_anndata_picture_and_manifest", "reading tissue.h5ad with anndata", &why);
            return;
        }
        Err(why) => panic!("EXPLANT_REQUIRE_PYTHON=1 but {why}"),
    };
    for h5ad in ["tissue.h5ad", "snapshots/tick_0000000.h5ad"] {
        check_h5ad_script(&python, &out.join(h5ad), CELLS, "duration = 10.0");
    }

    // The initial snapshot is the scene's tissue: organisers inside their circle,
    // everyone inside the disk, every cell at its type's baseline.
    let start = dump_h5ad(&python, &out.join("snapshots/tick_0000000.h5ad"));
    assert_eq!(start.len(), CELLS);
    for c in &start {
        assert_eq!(c.position.len(), 2, "obsm['spatial'] rows have 2 columns");
        let d = distance_from_centre(c);
        assert!(d <= TISSUE_RADIUS + CELL_RADIUS, "cell at {:?} is outside the tissue", c.position);
        match c.cell_type.as_str() {
            "organiser" => assert!(d <= ORGANISER_RADIUS, "organiser at distance {d}"),
            "responder" => assert!(d >= ORGANISER_RADIUS - 1e-3, "responder at distance {d} inside the organiser"),
            other => panic!("unknown cell type `{other}`"),
        }
        let row = &first(&c.cell_type).mean;
        assert!(close(&c.expression, row), "{} starts at {:?}, not {row:?}", c.cell_type, c.expression);
    }

    // The final state agrees with the time series, and shows the WNT gradient: after
    // 10 min responders near the organiser have more of the WNT target AXIN2 than those
    // further out.
    let end = dump_h5ad(&python, &out.join("tissue.h5ad"));
    assert_eq!(end.len(), CELLS);
    for ty in ["organiser", "responder"] {
        let cells: Vec<&H5adCell> = end.iter().filter(|c| c.cell_type == ty).collect();
        let row = last(ty);
        assert_eq!(cells.len(), row.cells, "{ty} cells in tissue.h5ad vs timeseries.csv");
        for g in 0..GENES.len() {
            let m = mean(cells.iter().map(|c| c.expression[g]));
            assert!(
                (m - row.mean[g]).abs() < 1e-5,
                "{ty} mean {} is {m} in tissue.h5ad, {} in timeseries.csv",
                GENES[g],
                row.mean[g]
            );
        }
    }
    let responders = || end.iter().filter(|c| c.cell_type == "responder");
    let near = mean(responders().filter(|c| distance_from_centre(c) < 80.0).map(|c| c.expression[gene("AXIN2")]));
    let far = mean(responders().filter(|c| distance_from_centre(c) >= 80.0).map(|c| c.expression[gene("AXIN2")]));
    assert!(near > far + 0.005, "no WNT gradient: AXIN2 {near} within 80 µm of the organiser, {far} beyond");
}

#[test]
fn teacher_and_torchscript_model_agree_on_the_default_scene() {
    // The shipped model was fitted to the teacher (validation MSE of dx/dt ≈ 1e-6), so
    // over 10 min the responders' mean expression should track the teacher's closely;
    // the largest gap seen when this test was written was about 0.011 (NOTCH1).
    const TOLERANCE: f64 = 0.02;
    let dir = TempDir::new("cli", "teacher_and_torchscript_model_agree");
    let scene = write_short_scene(&dir);
    let (teacher, model) = (dir.join("teacher"), dir.join("model"));
    run_ok(&scene, &teacher, &["--diffusion", "cpu", "--teacher"]);
    run_ok(&scene, &model, &["--diffusion", "cpu"]);

    let name = |out: &Path| manifest(out)["response_model"].as_str().unwrap_or_default().to_string();
    assert!(name(&teacher).starts_with("teacher"), "--teacher ran `{}`", name(&teacher));
    assert!(name(&model).starts_with("torchscript"), "the scene's model ran as `{}`", name(&model));
    assert_ne!(
        read(&teacher.join("timeseries.csv")),
        read(&model.join("timeseries.csv")),
        "the teacher and the model gave identical files: one of them did not run"
    );

    let (t, m) = (timeseries(&teacher), timeseries(&model));
    let key = |r: &Pseudobulk| (r.tick, r.cell_type.clone(), r.cells);
    assert_eq!(t.iter().map(key).collect::<Vec<_>>(), m.iter().map(key).collect::<Vec<_>>(), "row layout");
    let final_tick = t.last().expect("rows").tick;
    assert_eq!(final_tick, TICKS);
    let responder = |rows: &[Pseudobulk]| -> Vec<f64> {
        rows.iter()
            .find(|r| r.tick == final_tick && r.cell_type == "responder")
            .expect("final responder row")
            .mean
            .clone()
    };
    let (tf, mf) = (responder(&t), responder(&m));
    let (worst_gene, worst) = (0..GENES.len())
        .map(|g| (GENES[g], (tf[g] - mf[g]).abs()))
        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    assert!(
        worst <= TOLERANCE,
        "final responder means differ by up to {worst:.4} ({worst_gene}), tolerance {TOLERANCE}:\nteacher {tf:?}\nmodel   {mf:?}"
    );

    // The comparison means something only if expression moved by much more than the
    // tolerance: a model that did nothing must fail it.
    let t0 = &t.iter().find(|r| r.cell_type == "responder").expect("initial responder row").mean;
    let moved = (0..GENES.len()).map(|g| (tf[g] - t0[g]).abs()).fold(0.0, f64::max);
    assert!(moved > 10.0 * TOLERANCE, "the teacher's responders barely changed ({moved}); the test is too weak");
}

#[test]
fn an_omitted_scheme_is_explicit_in_a_version_1_scene_and_adi_in_version_2() {
    let dir = TempDir::new("cli", "an_omitted_scheme_is_explicit_in_a_version_1_scene_and_adi_in_version_2");
    let v1 = short_scene_text(&default_model());
    assert!(v1.contains("version = 1") && !v1.contains("scheme"), "the default scene should omit grid.scheme");
    let v2 = replace_once(&v1, "version = 1", "version = 2");
    let mut fields = Vec::new();
    for (name, text) in [("v1", &v1), ("v2", &v2)] {
        let scene = write_scene(&dir, &format!("{name}.toml"), text);
        let check = explant(["check".as_ref(), scene.as_os_str()]);
        assert_success(&check, &format!("explant check {name}"));
        let scheme = if name == "v1" { "explicit diffusion" } else { "adi diffusion" };
        assert!(stdout(&check).contains(scheme), "explant check {name}: {}", stdout(&check));
        let check = explant(["check".as_ref(), "--json".as_ref(), scene.as_os_str()]);
        assert_success(&check, &format!("explant check --json {name}"));
        let report: Value = serde_json::from_str(&stdout(&check)).expect("explant check --json prints JSON");
        let want = if name == "v1" { "explicit" } else { "adi" };
        assert_eq!(report[0]["scheme"].as_str(), Some(want), "explant check --json {name}: {report}");
        let out = dir.join(name);
        run_ok(&scene, &out, &["--diffusion", "cpu"]);
        let backend = manifest(&out)["diffusion_backend"].as_str().unwrap_or_default().to_string();
        let want = if name == "v1" { "cpu (explicit" } else { "cpu (adi" };
        assert!(backend.starts_with(want), "{name}: diffusion_backend `{backend}`, expected `{want}…`");
        fields.push(std::fs::read_to_string(out.join("ligand_totals.csv")).expect("ligand_totals.csv"));
    }
    // The scheme reached the solver: the ligand totals differ (slightly: both schemes
    // are accurate at this step).
    assert_ne!(fields[0], fields[1], "version 1 and version 2 runs recorded the same ligand totals");
}

#[test]
fn same_seed_gives_identical_results_on_1_and_2_threads() {
    let dir = TempDir::new("cli", "same_seed_identical_on_1_and_2_threads");
    let scene = write_short_scene(&dir);
    let (one, two) = (dir.join("one"), dir.join("two"));
    run_ok(&scene, &one, &["--diffusion", "cpu", "--threads", "1"]);
    run_ok(&scene, &two, &["--diffusion", "cpu", "--threads", "2"]);
    assert_eq!(manifest(&one)["threads"].as_u64(), Some(1), "--threads 1 was not applied");
    assert_eq!(manifest(&two)["threads"].as_u64(), Some(2), "--threads 2 was not applied");
    for file in ["timeseries.csv", "ligand_totals.csv"] {
        let (a, b) = (read(&one.join(file)), read(&two.join(file)));
        assert!(a == b, "{file} differs between 1 and 2 threads:\n--- 1 thread\n{a}\n--- 2 threads\n{b}");
    }
}

#[test]
fn gpu_and_cpu_runs_agree() {
    let dir = TempDir::new("cli", "gpu_and_cpu_runs_agree");
    let scene = write_short_scene(&dir);
    let (gpu, cpu) = (dir.join("gpu"), dir.join("cpu"));
    let o = run(&scene, &gpu, &["--diffusion", "gpu", "--teacher"]);
    if !o.status.success() {
        let err = stderr(&o);
        let no_adapter = err.contains("no wgpu adapter found") || err.contains("no usable wgpu adapter");
        if no_adapter && std::env::var("EXPLANT_REQUIRE_GPU_ADAPTER").as_deref() != Ok("1") {
            skip("gpu_and_cpu_runs_agree", "no wgpu adapter", err.trim());
            return;
        }
        panic!("explant run --diffusion gpu failed ({}):\n{err}", o.status);
    }
    run_ok(&scene, &cpu, &["--diffusion", "cpu", "--teacher"]);
    let backend = |out: &Path| manifest(out)["diffusion_backend"].as_str().unwrap_or_default().to_string();
    assert!(backend(&gpu).starts_with("gpu"), "--diffusion gpu ran on `{}`", backend(&gpu));
    assert!(backend(&cpu).starts_with("cpu"), "--diffusion cpu ran on `{}`", backend(&cpu));

    let (g, c) = (ligand_totals(&gpu), ligand_totals(&cpu));
    assert_eq!(g.len(), c.len(), "ligand_totals.csv rows");
    assert!(c.last().expect("rows").2[0] > 0.0, "no ligand was secreted");
    for ((tick, _, gv), (ctick, _, cv)) in g.iter().zip(&c) {
        assert_eq!(tick, ctick);
        for (a, b) in gv.iter().zip(cv) {
            let rel = (a - b).abs() / a.abs().max(b.abs()).max(f64::MIN_POSITIVE);
            assert!(a == b || rel <= 1e-4, "tick {tick}: GPU total {a}, CPU total {b} (relative {rel:.2e})");
        }
    }
    // What the cells sensed came from those fields, so their expression agrees too.
    for (a, b) in timeseries(&gpu).iter().zip(&timeseries(&cpu)) {
        assert_eq!((a.tick, &a.cell_type), (b.tick, &b.cell_type));
        for (g, (x, y)) in a.mean.iter().zip(&b.mean).enumerate() {
            assert!((x - y).abs() <= 1e-4, "tick {} {} {}: GPU {x}, CPU {y}", a.tick, a.cell_type, GENES[g]);
        }
    }
}

// ---------------------------------------------------------------------------------
// Bad input: refused with a message that names the problem, never a panic.

#[test]
fn unknown_scene_field_names_file_field_and_line() {
    let dir = TempDir::new("cli", "unknown_scene_field");
    let text = replace_once(&short_scene_text(&default_model()), "seed = 7\n", "seed = 7\nsede = 3\n");
    let line = text.lines().position(|l| l == "sede = 3").expect("inserted line") + 1;
    let scene = write_scene(&dir, "typo.toml", &text);
    let out = dir.join("out");
    let err = assert_clean_failure(&run(&scene, &out, &[]), "a scene with an unknown field");
    assert!(err.contains(&scene.display().to_string()), "the message does not name the file:\n{err}");
    assert!(err.contains("unknown field `sede`"), "the message does not name the field:\n{err}");
    assert!(err.contains(&format!("line {line}")), "the message does not give line {line}:\n{err}");
    assert!(!out.exists(), "a refused scene created its output directory");

    let o = explant(["check".as_ref(), scene.as_os_str()]);
    let err = assert_clean_failure(&o, "`explant check` on a scene with an unknown field");
    assert!(err.contains("unknown field `sede`"), "{err}");
}

#[test]
fn unknown_receptor_gene_is_named_with_a_suggestion() {
    let dir = TempDir::new("cli", "unknown_receptor_gene");
    let text = replace_once(&short_scene_text(&default_model()), "receptor = \"FZD7\"", "receptor = \"FZD8\"");
    let scene = write_scene(&dir, "receptor.toml", &text);
    let err = assert_clean_failure(&run(&scene, &dir.join("out"), &[]), "a scene with an unknown receptor");
    assert!(err.contains(&scene.display().to_string()), "the message does not name the file:\n{err}");
    assert!(err.contains("`ligands[0].receptor`"), "the message does not name the field:\n{err}");
    assert!(err.contains("unknown gene `FZD8`"), "the message does not name the gene:\n{err}");
    assert!(err.contains("did you mean `FZD7`?"), "the message does not suggest FZD7:\n{err}");
}

#[test]
fn output_directory_is_replaced_only_with_force_only_when_an_earlier_run_and_never_holding_an_input() {
    let dir = TempDir::new("cli", "non_empty_output_directory");
    let scene = write_short_scene(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("precious.txt"), "keep me\n").unwrap();
    let err = assert_clean_failure(&run(&scene, &out, &["--diffusion", "cpu"]), "a non-empty output directory");
    assert!(err.contains(&out.display().to_string()) && err.contains("not empty"), "{err}");
    assert!(err.contains("--force"), "the message does not mention `--force`:\n{err}");
    assert_eq!(read(&out.join("precious.txt")), "keep me\n", "the existing file was changed");
    let entries: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["precious.txt"], "a refused run wrote into the directory");

    // `--force` does not empty a folder that is not an explant run.
    let forced = run(&scene, &out, &["--diffusion", "cpu", "--teacher", "--force"]);
    let err = assert_clean_failure(&forced, "--force on a folder that is not a run");
    assert!(err.contains("replaces only an earlier explant run") && err.contains("nothing was deleted"), "{err}");
    assert_eq!(read(&out.join("precious.txt")), "keep me\n", "--force deleted a user's file");

    // An earlier run is replaced with `--force`: its old contents go.
    let earlier = dir.join("earlier");
    run_ok(&scene, &earlier, &["--diffusion", "cpu", "--teacher", "--no-figures"]);
    std::fs::write(earlier.join("stale.txt"), "old\n").unwrap();
    run_ok(&scene, &earlier, &["--diffusion", "cpu", "--teacher", "--force"]);
    assert!(!earlier.join("stale.txt").exists(), "--force kept the old contents");
    assert_eq!(manifest(&earlier)["status"], "completed");
    assert!(!earlier.join(".explant.lock").exists(), "the lock is removed when the run ends");

    // ... but never when it holds the scene (or another input) of the new run.
    let inside = earlier.join("scene.toml");
    let forced = run(&inside, &earlier, &["--diffusion", "cpu", "--force"]);
    let err = assert_clean_failure(&forced, "--force on the directory holding the scene");
    assert!(err.contains("which this run reads") && err.contains("scene.toml"), "{err}");
    assert!(inside.exists() && earlier.join("tissue.h5ad").exists(), "the refused run deleted files");
}

#[test]
fn missing_scene_file_is_reported() {
    let dir = TempDir::new("cli", "missing_scene_file");
    let scene = dir.join("no-such-scene.toml");
    let out = dir.join("out");
    let err = assert_clean_failure(&run(&scene, &out, &[]), "a missing scene file");
    assert!(err.contains(&format!("cannot read scene `{}`", scene.display())), "{err}");
    assert!(err.contains("No such file or directory"), "the message does not say why:\n{err}");
    assert!(!out.exists(), "a missing scene created its output directory");
}

/// Copy the shipped model (`.pt` and `.json`) into `dir/model/`.
fn copy_model(dir: &TempDir) -> (PathBuf, PathBuf) {
    let folder = dir.join("model");
    std::fs::create_dir_all(&folder).unwrap();
    let (pt, json) = (folder.join("default.pt"), folder.join("default.json"));
    std::fs::copy(default_model(), &pt).expect("copy models/default.pt");
    std::fs::copy(default_model().with_extension("json"), &json).expect("copy models/default.json");
    (pt, json)
}

#[test]
fn model_with_a_different_gene_order_is_refused() {
    let dir = TempDir::new("cli", "model_gene_order");
    let (pt, json) = copy_model(&dir);
    // Swap AXIN2 and LGR5 in the metadata. The `.pt` and its check case are
    // untouched, so the model still loads; its signature no longer fits the scene.
    let mut meta: Value = serde_json::from_str(&read(&json)).expect("default.json is JSON");
    let genes = meta["genes"].as_array_mut().expect("genes");
    assert_eq!((genes[2].as_str(), genes[3].as_str()), (Some("AXIN2"), Some("LGR5")));
    genes.swap(2, 3);
    std::fs::write(&json, serde_json::to_string_pretty(&meta).unwrap()).unwrap();
    let scene = write_scene(&dir, "scene.toml", &short_scene_text(&pt));
    let err =
        assert_clean_failure(&run(&scene, &dir.join("out"), &["--diffusion", "cpu"]), "a model in another gene order");
    assert!(err.contains(&pt.display().to_string()), "the message does not name the model:\n{err}");
    assert!(err.contains("does not fit the scene"), "{err}");
    assert!(err.contains("`LGR5`") && err.contains("`AXIN2`"), "the message does not name the genes:\n{err}");
    assert!(!err.contains("check case"), "the signature check, not the check case, should refuse it:\n{err}");
}

#[test]
fn pt_file_that_is_not_torchscript_is_refused() {
    let dir = TempDir::new("cli", "pt_not_torchscript");
    let (pt, _json) = copy_model(&dir);
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&pt, garbage).unwrap();
    let scene = write_scene(&dir, "scene.toml", &short_scene_text(&pt));
    let err = assert_clean_failure(&run(&scene, &dir.join("out"), &["--diffusion", "cpu"]), "a garbage `.pt`");
    assert!(err.contains(&format!("`{}` is not a TorchScript model", pt.display())), "{err}");
}

// ---------------------------------------------------------------------------------

#[test]
fn help_lists_subcommands() {
    let o = explant(["--help"]);
    assert_success(&o, "explant --help");
    let out = stdout(&o);
    for sub in ["run", "check", "model"] {
        assert!(
            out.lines().any(|l| l.split_whitespace().next() == Some(sub)),
            "`explant --help` does not list `{sub}`:\n{out}"
        );
    }
}

#[test]
fn every_shipped_scene_checks() {
    let mut scenes: Vec<PathBuf> = std::fs::read_dir(repo().join("scenes"))
        .expect("read scenes/")
        .map(|e| e.expect("a scenes/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    scenes.sort();
    assert!(!scenes.is_empty(), "no scenes/*.toml found");
    for scene in &scenes {
        let o = explant(["check".as_ref(), scene.as_os_str()]);
        assert_success(&o, &format!("explant check {}", scene.display()));
        assert!(stdout(&o).contains(": ok ("), "explant check {}:\n{}", scene.display(), stdout(&o));
    }
}

#[test]
fn asking_for_a_gpu_that_is_not_there_names_what_was_tried() {
    let dir = TempDir::new("cli", "nogpu");
    let scene = write_short_scene(&dir);
    let out = dir.join("out");
    let o = Command::new(EXE)
        .args([
            "run".as_ref(),
            scene.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--diffusion".as_ref(),
            "gpu".as_ref(),
        ])
        .args(["--teacher", "--quiet"])
        .env("WGPU_ADAPTER_NAME", "no-such-adapter-anywhere")
        .output()
        .expect("start the explant binary");
    let err = assert_clean_failure(&o, "--diffusion gpu with no matching adapter");
    assert!(err.contains("no usable wgpu adapter") && err.contains("vulkan"), "{err}");
    assert!(!out.exists(), "a refused run created its output directory");
    // `auto` falls back to the CPU with a note instead.
    let o = Command::new(EXE)
        .args([
            "run".as_ref(),
            scene.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--diffusion".as_ref(),
            "auto".as_ref(),
        ])
        .args(["--teacher", "--quiet"])
        .env("WGPU_ADAPTER_NAME", "no-such-adapter-anywhere")
        .output()
        .expect("start the explant binary");
    assert_success(&o, "--diffusion auto with no adapter");
    assert!(stderr(&o).contains("note: diffusion on the CPU"), "{}", stderr(&o));
    let manifest: Value = serde_json::from_str(&read(&out.join("manifest.json"))).expect("manifest");
    assert!(manifest["diffusion_backend"].as_str().unwrap_or("").starts_with("cpu"), "{manifest}");
}

#[test]
fn implicit_scheme_runs_on_the_gpu_and_matches_the_cpu() {
    let dir = TempDir::new("cli", "implicit_gpu_cpu");
    let text = std::fs::read_to_string(repo().join("scenes/morphogen_flag.toml")).expect("flag scene");
    let text = replace_once(&text, "duration = 300.0", "duration = 20.0");
    let text = replace_once(&text, "record_every = 30.0", "record_every = 10.0");
    let scene = write_scene(&dir, "flag.toml", &text);
    let (gpu, cpu) = (dir.join("gpu"), dir.join("cpu"));
    let o = run(&scene, &gpu, &["--diffusion", "gpu"]);
    if !o.status.success() {
        let err = stderr(&o);
        if err.contains("no usable wgpu adapter") && std::env::var("EXPLANT_REQUIRE_GPU_ADAPTER").as_deref() != Ok("1")
        {
            skip("implicit_scheme_runs_on_the_gpu_and_matches_the_cpu", "no wgpu adapter", err.trim());
            return;
        }
        panic!("explant run --diffusion gpu failed ({}):\n{err}", o.status);
    }
    run_ok(&scene, &cpu, &["--diffusion", "cpu"]);
    let backend = |out: &Path| manifest(out)["diffusion_backend"].as_str().unwrap_or_default().to_string();
    assert!(backend(&gpu).starts_with("gpu (implicit"), "{}", backend(&gpu));
    assert!(backend(&gpu).ends_with("ligand field kept on the device"), "{}", backend(&gpu));
    assert!(stderr(&o).contains("the ligand field stays on the GPU between ticks"), "{}", stderr(&o));
    assert!(backend(&cpu).contains("implicit"), "{}", backend(&cpu));
    let totals = |out: &Path| -> Vec<f64> {
        let text = read(&out.join("ligand_totals.csv"));
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("tick,time_min,BMP4"));
        lines.map(|l| l.rsplit(',').next().and_then(|v| v.parse().ok()).expect("a BMP4 total")).collect()
    };
    let (g, c) = (totals(&gpu), totals(&cpu));
    assert_eq!(g.len(), 3, "records at 0, 10 and 20 min");
    assert_eq!(g.len(), c.len());
    // The fixed face feeds BMP4 in: the total grows from zero.
    assert!(c[2] > c[1] && c[1] > 1.0, "no BMP4 entered through the fixed face: {c:?}");
    for (a, b) in g.iter().zip(&c) {
        let rel = (a - b).abs() / a.abs().max(b.abs()).max(f64::MIN_POSITIVE);
        assert!(rel <= 1e-5, "GPU total {a}, CPU total {b} (relative {rel:.2e})");
    }
}

/// Every number of two CSV files with the same header and rows, as `(row, column, a, b)`.
fn csv_pairs(a: &Path, b: &Path) -> Vec<(usize, String, f64, f64)> {
    let (ta, tb) = (read(a), read(b));
    let (mut la, mut lb) = (ta.lines(), tb.lines());
    let header: Vec<String> = la.next().expect("a header").split(',').map(String::from).collect();
    assert_eq!(lb.next().map(|h| h.split(',').map(String::from).collect::<Vec<_>>()), Some(header.clone()));
    let mut out = Vec::new();
    let (ra, rb): (Vec<&str>, Vec<&str>) = (la.collect(), lb.collect());
    assert_eq!(ra.len(), rb.len(), "{} and {} have different row counts", a.display(), b.display());
    for (r, (x, y)) in ra.iter().zip(&rb).enumerate() {
        for ((h, u), v) in header.iter().zip(x.split(',')).zip(y.split(',')) {
            match (u.parse::<f64>(), v.parse::<f64>()) {
                (Ok(u), Ok(v)) => out.push((r, h.clone(), u, v)),
                _ => assert_eq!(u, v, "row {r} column {h}"),
            }
        }
    }
    out
}

#[test]
fn a_field_kept_on_the_gpu_gives_the_cpu_run_with_secretion_uptake_and_chemotaxis() {
    // The tumour–immune scene: IFN-γ and CXCL10 secreted and taken up, T cells migrating
    // up CXCL10 (their gradients read on the device), a knockout with its paired control.
    field_kept_on_the_gpu_gives_the_cpu_run("tumour_immune", "implicit", "CXCL10", ("720.0", "60.0"));
}

#[test]
fn an_adi_field_kept_on_the_gpu_gives_the_cpu_run_with_secretion_uptake_and_chemotaxis() {
    field_kept_on_the_gpu_gives_the_cpu_run("tumour_immune", "adi", "CXCL10", ("720.0", "60.0"));
}

#[test]
fn a_steady_source_on_a_field_kept_on_the_gpu_gives_the_cpu_run() {
    // The wound: an ablation and a steady EGF source in the wound (added on the device
    // every tick), migration up EGF, with the ADI scheme taking the source as such.
    field_kept_on_the_gpu_gives_the_cpu_run("wound_healing", "adi", "EGF", ("1440.0", "120.0"));
}

/// `scenes/NAME.toml` cut to 20 minutes with `scheme`, run on the GPU (the field kept on
/// the device) and on the CPU: the ligand totals and the time series agree.
fn field_kept_on_the_gpu_gives_the_cpu_run(name: &str, scheme: &str, ligand: &str, (duration, every): (&str, &str)) {
    let dir = TempDir::new("cli", &format!("resident_gpu_cpu_{name}_{scheme}"));
    let text = std::fs::read_to_string(repo().join(format!("scenes/{name}.toml"))).expect("the scene");
    let text = replace_once(&text, &format!("duration = {duration}"), "duration = 20.0");
    let text = replace_once(&text, &format!("record_every = {every}"), "record_every = 10.0");
    let text = replace_once(&text, "dx = 10.0\n", &format!("dx = 10.0\nscheme = \"{scheme}\"\n"));
    let scene = write_scene(&dir, "scene.toml", &text);
    let (gpu, cpu) = (dir.join("gpu"), dir.join("cpu"));
    let o = run(&scene, &gpu, &["--diffusion", "gpu"]);
    if !o.status.success() {
        let err = stderr(&o);
        if err.contains("no usable wgpu adapter") && std::env::var("EXPLANT_REQUIRE_GPU_ADAPTER").as_deref() != Ok("1")
        {
            skip("a_field_kept_on_the_gpu_gives_the_cpu_run", "no wgpu adapter", err.trim());
            return;
        }
        panic!("explant run --diffusion gpu failed ({}):\n{err}", o.status);
    }
    run_ok(&scene, &cpu, &["--diffusion", "cpu"]);
    let backend = manifest(&gpu)["diffusion_backend"].as_str().unwrap_or_default().to_string();
    assert!(backend.starts_with(&format!("gpu ({scheme}")) && backend.ends_with("kept on the device"), "{backend}");
    let totals = csv_pairs(&gpu.join("ligand_totals.csv"), &cpu.join("ligand_totals.csv"));
    assert!(totals.iter().any(|t| t.1 == ligand && t.3 > 0.0), "no {ligand} on the grid");
    for (row, col, a, b) in totals.iter().filter(|t| t.1 != "tick" && t.1 != "time_min") {
        let rel = (a - b).abs() / a.abs().max(b.abs()).max(f64::MIN_POSITIVE);
        assert!(rel <= 1e-4, "row {row} {col}: GPU total {a}, CPU total {b} (relative {rel:.2e})");
    }
    let series = csv_pairs(&gpu.join("timeseries.csv"), &cpu.join("timeseries.csv"));
    assert!(series.len() > 20, "{} values in the time series", series.len());
    for (row, col, a, b) in &series {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "timeseries row {row} {col}: GPU {a}, CPU {b}");
    }
}

#[test]
fn a_run_restarts_from_its_own_anndata_output() {
    // Run the short scene, then import its final tissue.h5ad as the initial tissue of a
    // second run: the second run starts from exactly the first one's end state.
    let dir = TempDir::new("cli", "a_run_restarts_from_its_own_anndata_output");
    let scene = write_short_scene(&dir);
    let first = dir.join("first");
    run_ok(&scene, &first, &["--diffusion", "cpu", "--teacher"]);
    let text = short_scene_text(&default_model());
    let (head, rest) = text.split_once("[tissue]").expect("a [tissue] table");
    let (_, tail) = rest.split_once("[mechanics]").expect("a [mechanics] table");
    let import = format!(
        "{head}[tissue]\nshape = \"import\"\npath = \"{}\"\nobsm = \"spatial\"\ncell_type_column = \"cell_type\"\n\
         cell_radius = {CELL_RADIUS:.1}\n\n[mechanics]{tail}",
        first.join("tissue.h5ad").display()
    );
    let scene2 = write_scene(&dir, "restart.toml", &import);
    let o = explant(["check".as_ref(), scene2.as_os_str()]);
    assert_success(&o, "explant check of the import scene");
    assert!(stdout(&o).contains(&format!("{CELLS} cells")), "{}", stdout(&o));
    let second = dir.join("second");
    run_ok(&scene2, &second, &["--diffusion", "cpu", "--teacher"]);
    let genes: Vec<String> = GENES.iter().map(|g| g.to_string()).collect();
    let request = |types: bool| explant_io::ImportRequest {
        coordinates: explant_io::Coordinates::Obsm("spatial".into()),
        cell_type_column: types.then(|| "cell_type".into()),
        genes: &genes,
        dims: 2,
    };
    let end = explant_io::read_tissue(&first.join("tissue.h5ad"), &request(true)).expect("read the first run's end");
    let start = explant_io::read_tissue(&second.join("snapshots/tick_0000000.h5ad"), &request(true))
        .expect("read the second run's start");
    assert_eq!(start.cells, end.cells);
    assert_eq!(start.cell_types, end.cell_types);
    // Import order is the file's order; the snapshot is sorted by the new ids, which
    // follow the file's order, so rows correspond one to one.
    for (a, b) in start.expression.iter().zip(&end.expression) {
        assert_eq!(a, b, "expression changed on import");
    }
    for (a, b) in start.positions.iter().zip(&end.positions) {
        assert!((a[0] - b[0]).abs() < 1e-4 && (a[1] - b[1]).abs() < 1e-4, "{a:?} vs {b:?}");
    }

    // A cell type in the file that the scene does not know is refused, naming both.
    let renamed = import
        .replace("name = \"responder\"", "name = \"responders\"")
        .replace("cell_type = \"responder\"", "cell_type = \"responders\"");
    let scene3 = write_scene(&dir, "renamed.toml", &renamed);
    let err = assert_clean_failure(&run(&scene3, &dir.join("third"), &["--teacher"]), "unknown imported type");
    assert!(err.contains("tissue.h5ad") && err.contains("`responder`") && err.contains("responders"), "{err}");
}

const DUMP_PAIRED: &str = r#"
import json, sys
import anndata
ad = anndata.read_h5ad(sys.argv[1])
json.dump({
    "columns": list(ad.obs.columns),
    "layers": list(ad.layers.keys()),
    "control_shape": list(ad.layers["control"].shape),
    "x_shape": list(ad.X.shape),
    "distance": [float(v) for v in ad.obs["distance_to_perturbation"]],
    "perturbed": [bool(v) for v in ad.obs["perturbed"]],
    "dll1": [float(v) for v in ad[:, "DLL1"].X.ravel()],
    "dll1_control": [float(v) for v in ad[:, "DLL1"].layers["control"].ravel()],
}, sys.stdout)
"#;

#[test]
fn a_perturbation_runs_beside_its_paired_control() {
    let dir = TempDir::new("cli", "a_perturbation_runs_beside_its_paired_control");
    let mut text = short_scene_text(&default_model());
    text.push_str(
        "\n[[perturbations]]\nkind = \"knockout\"\ngene = \"DLL1\"\nstart = 0.0\n\
         region = { kind = \"circle\", centre = [330.0, 300.0], radius = 30.0 }\n",
    );
    let scene = write_scene(&dir, "knockout.toml", &text);
    let out = dir.join("out");
    let o = run_ok(&scene, &out, &["--diffusion", "cpu", "--teacher"]);
    assert!(stderr(&o).contains("paired control"), "{}", stderr(&o));
    assert_eq!(manifest(&out)["paired_control"], true);

    // effects.csv: the knocked-out cells lose all their DLL1 against the control.
    let effects = read(&out.join("effects.csv"));
    let header: Vec<&str> = effects.lines().next().unwrap().split(',').collect();
    assert_eq!(
        header,
        [
            "time_min",
            "group",
            "distance_from_um",
            "distance_to_um",
            "cells",
            "gene",
            "perturbed_mean",
            "control_mean",
            "effect"
        ]
    );
    let row = effects
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|r| r[1] == "perturbed" && r[5] == "DLL1")
        .expect("a perturbed/DLL1 row");
    let (cells, pm, cm, e): (usize, f64, f64, f64) =
        (row[4].parse().unwrap(), row[6].parse().unwrap(), row[7].parse().unwrap(), row[8].parse().unwrap());
    assert!(cells > 5, "{row:?}");
    assert_eq!(pm, 0.0);
    assert!(cm > 0.1 && (e + cm).abs() < 1e-9, "{row:?}");
    // The response of HES1 (downstream of the contact signal) falls off with distance:
    // strong next to the knockout, at least ten times weaker 100–200 µm away.
    let hes1 = |from: &str| -> f64 {
        effects
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|r| r[1] == "band" && r[2] == from && r[5] == "HES1")
            .map(|r| r[8].parse().unwrap())
            .unwrap_or_else(|| panic!("no band/{from}/HES1 row in\n{effects}"))
    };
    let (near, far) = (hes1("0"), hes1("100"));
    assert!(near < -1e-3, "HES1 next to a DLL1 knockout should fall: {near}");
    assert!(far.abs() < 0.1 * near.abs(), "HES1 effect {far} at 100-200 µm vs {near} next to the knockout");
    let curve = read(&out.join("response_vs_distance.csv"));
    assert!(curve.starts_with("distance_um,cells,effect_WNT3A"), "{curve}");
    assert!(curve.lines().count() > 3);
    assert!(out.join("timeseries_control.csv").exists());

    // The AnnData carries the control as a layer and the distance in obs.
    match python_with_anndata() {
        Ok(python) => {
            let o = Command::new(&python)
                .args(["-c", DUMP_PAIRED])
                .arg(out.join("tissue.h5ad"))
                .env("HDF5_USE_FILE_LOCKING", "FALSE")
                .output()
                .expect("start python");
            assert_success(&o, "reading the paired h5ad");
            let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
            assert_eq!(v["layers"], serde_json::json!(["control"]));
            assert_eq!(v["control_shape"], v["x_shape"]);
            let d = v["distance"].as_array().unwrap();
            let flagged = v["perturbed"].as_array().unwrap();
            let (dll1, ctrl) = (v["dll1"].as_array().unwrap(), v["dll1_control"].as_array().unwrap());
            for i in 0..d.len() {
                let di = d[i].as_f64().unwrap();
                if flagged[i].as_bool().unwrap() {
                    assert_eq!(di, 0.0, "a perturbed cell is at distance 0");
                    assert_eq!(dll1[i].as_f64().unwrap(), 0.0);
                    assert!(ctrl[i].as_f64().unwrap() > 0.0, "the control keeps DLL1");
                } else {
                    assert!(di.is_finite() && di >= 0.0, "distance {di}");
                }
            }
        }
        Err(why) if std::env::var("EXPLANT_REQUIRE_PYTHON").as_deref() != Ok("1") => {
            skip("a_perturbation_runs_beside_its_paired_control", "the anndata check", &why)
        }
        Err(why) => panic!("EXPLANT_REQUIRE_PYTHON=1 but {why}"),
    }

    // --no-control: no effects.
    let bare = dir.join("bare");
    run_ok(&scene, &bare, &["--diffusion", "cpu", "--teacher", "--no-control"]);
    assert!(!bare.join("effects.csv").exists());
    assert_eq!(manifest(&bare)["paired_control"], false);
}

#[test]
fn chosen_snapshot_times_and_named_regions_are_written() {
    let dir = TempDir::new("cli", "chosen_snapshot_times_and_named_regions_are_written");
    let text = replace_once(
        &short_scene_text(&default_model()),
        "[output]\n",
        "[output]\nsnapshot_times = [2.5, 7.0]\nregions = [\n  \
         { name = \"core\", shape = { kind = \"circle\", centre = [300.0, 300.0], radius = 45.0 } },\n  \
         { name = \"rim\", shape = { kind = \"box\", min = [0.0, 0.0], max = [600.0, 250.0] } },\n]\n",
    );
    let scene = write_scene(&dir, "regions.toml", &text);
    let out = dir.join("out");
    run_ok(&scene, &out, &["--diffusion", "cpu", "--teacher"]);
    // record_every = 5 min gives ticks 0, 10, 20; 2.5 and 7 min add ticks 5 and 14.
    let mut snaps: Vec<String> = std::fs::read_dir(out.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    snaps.sort();
    assert_eq!(
        snaps,
        ["tick_0000000.h5ad", "tick_0000005.h5ad", "tick_0000010.h5ad", "tick_0000014.h5ad", "tick_0000020.h5ad"]
    );
    let csv = read(&out.join("timeseries_regions.csv"));
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("tick,time_min,region,cell_type,cells,WNT3A"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // 3 time points × 2 regions × 2 cell types.
    assert_eq!(rows.len(), 12);
    // The core disk is the organiser disk: organisers there, no responders farther than
    // the jitter; the rim box holds no organiser.
    let cells = |region: &str, ty: &str| -> usize {
        rows.iter().find(|r| r[0] == "0" && r[2] == region && r[3] == ty).map(|r| r[4].parse().unwrap()).unwrap()
    };
    assert!(cells("core", "organiser") > 20);
    assert_eq!(cells("rim", "organiser"), 0);
    assert!(cells("rim", "responder") > 20);
}

#[test]
fn a_run_draws_its_figures_unless_told_not_to() {
    let dir = TempDir::new("cli", "a_run_draws_its_figures_unless_told_not_to");
    let scene = write_short_scene(&dir);
    let out = dir.join("out");
    run_ok(&scene, &out, &["--diffusion", "cpu", "--teacher"]);
    for f in ["figures/tissue_cell_type.png", "figures/timeseries.svg"] {
        assert!(out.join(f).is_file(), "no {f}");
    }
    let bare = dir.join("bare");
    run_ok(&scene, &bare, &["--diffusion", "cpu", "--teacher", "--no-figures"]);
    assert!(!bare.join("figures").exists());
}

#[test]
fn a_mechanics_step_beyond_the_stability_estimate_is_pointed_out() {
    let dir = TempDir::new("cli", "a_mechanics_step_beyond_the_stability_estimate_is_pointed_out");
    let text = short_scene_text(&default_model());
    let quiet = run_ok(
        &write_scene(&dir, "ok.toml", &text),
        &dir.join("ok"),
        &["--diffusion", "cpu", "--teacher", "--no-figures"],
    );
    assert!(!stderr(&quiet).contains("stability estimate"), "{}", stderr(&quiet));
    let stiff = replace_once(&text, "repulsion = 4.0", "repulsion = 40.0");
    let o = run_ok(
        &write_scene(&dir, "stiff.toml", &stiff),
        &dir.join("stiff"),
        &["--diffusion", "cpu", "--teacher", "--no-figures"],
    );
    assert!(stderr(&o).contains("more than twice the explicit stability estimate"), "{}", stderr(&o));
}

#[test]
fn run_model_option_replaces_the_scenes_model_and_the_copy_records_it() {
    let dir = TempDir::new("cli", "run_model_option_replaces_the_scenes_model_and_the_copy_records_it");
    let text = replace_once(&short_scene_text(&default_model()), "kind = \"torchscript\"", "kind = \"teacher\"");
    let scene = write_scene(&dir, "teacher.toml", &text);
    let out = dir.join("out");
    run_ok(&scene, &out, &["--diffusion", "cpu", "--no-figures", "--model", default_model().to_str().unwrap()]);
    let name = manifest(&out)["response_model"].as_str().unwrap_or_default().to_string();
    assert!(name.starts_with("torchscript") && name.contains("default.pt"), "ran `{name}`");
    let copy = read(&out.join("scene.toml"));
    assert!(copy.contains("kind = \"torchscript\"") && copy.contains("default.pt"), "{copy}");
    // The copy runs again to the same result.
    let again = dir.join("again");
    run_ok(&out.join("scene.toml"), &again, &["--diffusion", "cpu", "--no-figures"]);
    assert_eq!(read(&out.join("timeseries.csv")), read(&again.join("timeseries.csv")));
    // A model for other genes is refused by name, and nothing is written.
    let panel = repo().join("scenes/signalling_panel.toml");
    let refused = dir.join("refused");
    let o = run(&panel, &refused, &["--model", default_model().to_str().unwrap()]);
    let err = assert_clean_failure(&o, "a model for another scene");
    assert!(err.contains("ATOH1"), "{err}");
    assert!(!refused.exists());
}

#[test]
fn time_series_end_at_the_final_time_when_the_duration_is_not_a_multiple_of_record_every() {
    let dir = TempDir::new("cli", "time_series_end_at_the_final_time");
    // 10 min recorded every 4 min: records at 0, 4 and 8 min, and the end at 10.
    let text = replace_once(&short_scene_text(&default_model()), "record_every = 5.0", "record_every = 4.0");
    let scene = write_scene(&dir, "scene.toml", &text);
    let out = dir.join("out");
    run_ok(&scene, &out, &["--diffusion", "cpu", "--no-figures", "--teacher"]);
    for file in ["timeseries.csv", "ligand_totals.csv"] {
        let text = read(&out.join(file));
        let times: Vec<f64> = text.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
        let mut distinct = times.clone();
        distinct.dedup();
        assert_eq!(distinct, [0.0, 4.0, 8.0, 10.0], "{file}");
    }
}

#[test]
fn run_teacher_option_is_recorded_so_the_copy_reruns_to_the_same_result() {
    let dir = TempDir::new("cli", "run_teacher_option_is_recorded_so_the_copy_reruns_to_the_same_result");
    let scene = write_short_scene(&dir);
    assert!(read(&scene).contains("kind = \"torchscript\""), "the short scene runs the learned model");
    let out = dir.join("out");
    run_ok(&scene, &out, &["--diffusion", "cpu", "--no-figures", "--teacher"]);
    assert!(manifest(&out)["response_model"].as_str().unwrap_or_default().starts_with("teacher"));
    let copy = read(&out.join("scene.toml"));
    assert!(copy.contains("kind = \"teacher\"") && !copy.contains("torchscript"), "{copy}");
    assert!(copy.starts_with("# ") && copy.lines().next().unwrap_or_default().contains("--teacher"), "{copy}");
    // The copy, run without any option, is the same run; the original scene is not.
    let again = dir.join("again");
    run_ok(&out.join("scene.toml"), &again, &["--diffusion", "cpu", "--no-figures"]);
    assert!(manifest(&again)["response_model"].as_str().unwrap_or_default().starts_with("teacher"));
    assert_eq!(read(&out.join("timeseries.csv")), read(&again.join("timeseries.csv")));
    let learned = dir.join("learned");
    run_ok(&scene, &learned, &["--diffusion", "cpu", "--no-figures"]);
    assert_ne!(read(&out.join("timeseries.csv")), read(&learned.join("timeseries.csv")));
}

#[test]
fn train_fits_the_teacher_on_trajectories_deterministically_with_hold_outs() {
    let dir = TempDir::new("cli", "train_fits_the_teacher_on_trajectories_deterministically_with_hold_outs");
    let scene = write_short_scene(&dir);
    let train = |out: &str, extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> =
            vec!["train".into(), scene.clone().into(), "--out".into(), dir.join(out).into()];
        args.extend(["--seed", "3", "--steps", "400", "--contexts", "6", "--per-context", "500"].map(Into::into));
        args.extend(extra.iter().map(Into::into));
        explant(args)
    };
    let o = train("a.pt", &["--hold-out-type", "organiser", "--hold-out-genes", "HES1"]);
    assert_success(&o, "explant train");
    let meta: Value = serde_json::from_str(&read(&dir.join("a.json"))).unwrap();
    let t = &meta["training"];
    assert_eq!(t["contexts"], 6);
    assert_eq!(t["hold_out_type"], "organiser");
    assert_eq!(t["hold_out_genes"], serde_json::json!(["HES1"]));
    let (mse, none) = (t["val_mse"].as_f64().unwrap(), t["val_mse_no_change"].as_f64().unwrap());
    assert!(mse < 0.2 * none, "the model should beat predicting no change on held-out contexts: {mse} vs {none}");
    assert!(t["command"].as_str().unwrap().contains("--hold-out-type organiser --hold-out-genes HES1"));
    // The same seed gives the same model (the check case's output is the model's output).
    assert_success(
        &train("b.pt", &["--hold-out-type", "organiser", "--hold-out-genes", "HES1"]),
        "explant train again",
    );
    let again: Value = serde_json::from_str(&read(&dir.join("b.json"))).unwrap();
    assert_eq!(meta["check"], again["check"]);
    assert_eq!(t["val_mse"], again["training"]["val_mse"]);
    // A trained model loads and runs in the scene it was trained for.
    let o = explant(["model".as_ref(), "show".as_ref(), dir.join("a.pt").as_os_str()]);
    assert_success(&o, "explant model show");
    assert!(stdout(&o).contains("cell type `organiser` (seen only unperturbed)"), "{}", stdout(&o));
    // An ensemble: its first member is the single network of the same seed, so the two
    // models differ (the mean moved) but the ensemble is as deterministic.
    let o = train("e.pt", &["--hold-out-type", "organiser", "--hold-out-genes", "HES1", "--members", "2"]);
    assert_success(&o, "explant train --members 2");
    let ensemble: Value = serde_json::from_str(&read(&dir.join("e.json"))).unwrap();
    assert_eq!(ensemble["training"]["members"], 2);
    assert_ne!(ensemble["check"]["output"], meta["check"]["output"]);
    assert!(ensemble["training"]["command"].as_str().unwrap().ends_with("--members 2"));
    let o = explant(["model".as_ref(), "show".as_ref(), dir.join("e.pt").as_os_str()]);
    assert_success(&o, "explant model show (ensemble)");
    assert!(stdout(&o).contains("mean of 2 networks (seeds 3..=4)"), "{}", stdout(&o));
    let o = explant(
        ["bench", "model", "--cells", "100", "--reps", "1", "--model"]
            .map(std::ffi::OsString::from)
            .into_iter()
            .chain([dir.join("e.pt").into_os_string()]),
    );
    let err = assert_clean_failure(&o, "bench model on an ensemble");
    assert!(err.contains("ensemble of 2 networks"), "{err}");
    let o = train("c.pt", &["--members", "0"]);
    assert!(!o.status.success() && stderr(&o).contains("'--members <MEMBERS>': 0 is not in 1..=64"), "{}", stderr(&o));
    // Unknown names are refused with a suggestion.
    let err = assert_clean_failure(&train("c.pt", &["--hold-out-type", "organizer"]), "unknown hold-out type");
    assert!(err.contains("--hold-out-type") && err.contains("organiser"), "{err}");
    let err = assert_clean_failure(&train("c.pt", &["--hold-out-genes", "HES2"]), "unknown hold-out gene");
    assert!(err.contains("--hold-out-genes") && err.contains("HES1"), "{err}");
}

/// `scenes/signalling_panel.toml` made small: 400 cells in a 120 µm disk, 2 h.
fn small_panel_scene(dir: &TempDir) -> PathBuf {
    let mut text = std::fs::read_to_string(repo().join("scenes/signalling_panel.toml")).expect("read the panel scene");
    for (from, to, count) in [
        ("cells = 1200", "cells = 400", 1),
        ("radius = 210.0", "radius = 120.0", 2),
        ("duration = 240.0", "duration = 120.0", 1),
        ("size = [500.0, 500.0]", "size = [260.0, 260.0]", 1),
        ("[250.0, 250.0]", "[130.0, 130.0]", 3),
    ] {
        assert_eq!(text.matches(from).count(), count, "scenes/signalling_panel.toml: `{from}`");
        text = text.replace(from, to);
    }
    write_scene(dir, "panel.toml", &text)
}

#[test]
fn eval_says_when_the_model_was_not_trained_with_its_hold_outs() {
    // The shipped model saw every cell type and knockout: its scores are in-sample.
    let dir = TempDir::new("cli", "eval_says_when_the_model_was_not_trained_with_its_hold_outs");
    let scene = write_short_scene(&dir);
    let o = explant([
        "eval".as_ref(),
        scene.as_os_str(),
        "--model".as_ref(),
        default_model().as_os_str(),
        "--hold-out-type".as_ref(),
        "responder".as_ref(),
        "--perturb".as_ref(),
        "HES1,AXIN2".as_ref(),
        "--contexts".as_ref(),
        "1".as_ref(),
    ]);
    assert_success(&o, "explant eval with the shipped model");
    let err = stderr(&o);
    assert!(err.contains("note: the model was trained with no cell type held out, not `responder`"), "{err}");
    assert!(err.contains("may have seen perturbations of HES1, AXIN2"), "{err}");
}

/// `explant eval`'s CSV, by model, mode and group.
struct EvalTable {
    text: String,
    rows: Vec<Vec<String>>,
}

/// The score columns of `explant eval --out`, after tissue seed, model, mode, group and
/// perturbations.
const EVAL_SCORES: [&str; 17] = [
    "mae",
    "mae_off_target",
    "pearson_delta",
    "pearson_off_target",
    "pds",
    "de_overlap",
    "de_off_target",
    "mae_vs_mean",
    "pds_vs_mean",
    "de_vs_mean",
    "mae_norm",
    "mae_off_target_norm",
    "pearson_delta_norm",
    "pearson_off_target_norm",
    "pds_norm",
    "de_overlap_norm",
    "de_off_target_norm",
];

impl EvalTable {
    fn read(path: &Path) -> Self {
        let text = read(path);
        let header = text.lines().next().unwrap_or_default();
        let expected = format!("tissue_seed,model,mode,group,perturbations,{}", EVAL_SCORES.join(","));
        assert_eq!(header, expected, "{}", path.display());
        // Without the tissue seed: one tissue per table here.
        let rows = text.lines().skip(1).map(|l| l.split(',').skip(1).map(String::from).collect()).collect();
        Self { text, rows }
    }

    /// A score of one row, by column name; `None` where the table has no such row.
    fn get(&self, model: &str, mode: &str, group: &str, score: &str) -> Option<f64> {
        let col = 4 + EVAL_SCORES.iter().position(|s| *s == score).expect("a score column");
        let r = self.rows.iter().find(|r| r[0] == model && r[1] == mode && r[2] == group)?;
        assert_eq!(r[3], "3", "{r:?}");
        Some(r[col].parse().expect("a number"))
    }

    /// Like [`EvalTable::get`], for a row that must exist.
    fn at(&self, model: &str, mode: &str, group: &str, score: &str) -> f64 {
        self.get(model, mode, group, score)
            .unwrap_or_else(|| panic!("no {model} {mode} row for {group}:\n{}", self.text))
    }

    /// Issue 14's headline claim for `model`, anchored and without the knocked-out gene,
    /// part by part; each part that fails is returned, named (`mae ...`, `pearson ...`,
    /// `far ...`): it beats no change, the neighbour average and ridge in the knocked-out
    /// cells and at 0–15 µm (`mae`), its Pearson Δ in the knocked-out cells beats ridge's
    /// (`pearson`), and beyond 30 µm it is not worse than no change by more than the
    /// replicate's own error there (`far`).
    fn headline(&self, model: &str) -> Vec<String> {
        let a = |m: &str, group: &str, score: &str| self.get(m, "anchored", group, score).unwrap_or(f64::NAN);
        let far = "far (>= 30 um)";
        let mut failed = Vec::new();
        for group in ["perturbed", "0-15 um"] {
            let mine = a(model, group, "mae_off_target");
            for rival in ["no-change", "neighbour-avg", "ridge"] {
                let theirs = self.at(rival, "anchored", group, "mae_off_target");
                let beats = mine < theirs; // false for NaN
                if !beats {
                    failed
                        .push(format!("mae {group}: off-target MAE {mine} of {model} is not below {rival}'s {theirs}"));
                }
            }
        }
        let (mine, ridge) = (
            a(model, "perturbed", "pearson_off_target"),
            self.at("ridge", "anchored", "perturbed", "pearson_off_target"),
        );
        let beats = mine > ridge; // false for NaN
        if !beats {
            failed.push(format!(
                "pearson perturbed: off-target Pearson delta {mine} of {model} is not above ridge's {ridge}"
            ));
        }
        let mine = a(model, far, "mae_off_target");
        let (none, noise) = (
            self.at("no-change", "anchored", far, "mae_off_target"),
            self.at("replicate", "anchored", far, "mae_off_target"),
        );
        let within = mine <= none + noise; // false for NaN
        if !within {
            failed.push(format!(
                "far: off-target MAE {mine} of {model} exceeds no change's {none} by more than the replicate's {noise}"
            ));
        }
        failed
    }
}

#[test]
fn eval_a_learned_model_predicts_held_out_effects_where_clamp_and_untrained_network_do_not() {
    let dir = TempDir::new("cli", "eval_a_learned_model_predicts_held_out_effects");
    let scene = small_panel_scene(&dir);
    let model = dir.join("m.pt");
    // Progenitors are seen only unperturbed; HES1, AXIN2 and ATOH1 are never perturbed.
    // The training recipe of RESULTS.md scaled down to the small scene: an ensemble of
    // three networks, 8000 Adam steps each.
    let hold_out = ["--hold-out-type", "progenitor"];
    let mut args: Vec<std::ffi::OsString> =
        vec!["train".into(), scene.clone().into(), "--out".into(), model.clone().into()];
    args.extend(
        [
            "--steps",
            "8000",
            "--members",
            "3",
            "--contexts",
            "24",
            "--per-context",
            "1000",
            "--hold-out-genes",
            "HES1,AXIN2,ATOH1",
        ]
        .map(Into::into),
    );
    args.extend(hold_out.map(Into::into));
    assert_success(&explant(args), "explant train with hold-outs");
    let meta: Value = serde_json::from_str(&read(&dir.join("m.json"))).unwrap();
    assert_eq!(meta["training"]["unseen_types"], serde_json::json!([]), "progenitor controls are in training");
    let csv = dir.join("eval.csv");
    let mut args: Vec<std::ffi::OsString> = vec!["eval".into(), scene.clone().into(), "--model".into(), model.into()];
    args.extend(["--perturb", "HES1,AXIN2,ATOH1", "--contexts", "24", "--out"].map(Into::into));
    args.push(csv.clone().into());
    args.extend(hold_out.map(Into::into));
    let o = explant(args);
    assert_success(&o, "explant eval");
    loud(&stdout(&o));
    // Trained with the same hold-outs: no in-sample warning.
    assert!(!stderr(&o).contains("in-sample") && !stderr(&o).contains("may have seen"), "{}", stderr(&o));
    let t = EvalTable::read(&csv);
    let predictors =
        ["no-change", "clamp", "context-mean", "mean", "neighbour-avg", "learned", "ridge", "untrained", "replicate"];
    for mode in ["free", "anchored"] {
        for model in predictors {
            let mae = t.at(model, mode, "perturbed", "mae");
            assert!(mae.is_finite() && mae >= 0.0, "{model} {mode}: MAE {mae}\n{}", t.text);
            let pds = t.at(model, mode, "perturbed", "pds");
            assert!((0.0..=1.0).contains(&pds), "{model} {mode}: PDS {pds}");
        }
        // The references of the normalised scores: the context mean (cell-eval's baseline)
        // is 0, the replicate 1.
        assert_eq!(t.at("context-mean", mode, "perturbed", "mae_vs_mean"), 0.0);
        assert_eq!(t.at("context-mean", mode, "perturbed", "mae_off_target_norm"), 0.0);
        // The mean baseline is the context mean cell by cell: the same pseudobulk wherever
        // its floor at 0 does not act (here it acts only on the knocked-out gene).
        let (c, m) = (t.at("context-mean", mode, "perturbed", "mae"), t.at("mean", mode, "perturbed", "mae"));
        assert!((c - m).abs() <= 0.25 * c, "context mean {c}, mean {m}\n{}", t.text);
        // (Free-running, the replicate's pseudobulk is another tissue's, so it may be no
        // better than the mean baseline: then there is no scale, NaN.)
        let ceiling = t.at("replicate", mode, "perturbed", "mae_off_target_norm");
        assert!(ceiling == 1.0 || (mode == "free" && ceiling.is_nan()), "{mode}: {ceiling}");
        // No change predicts no delta: no correlation to speak of.
        assert!(t.at("no-change", mode, "perturbed", "pearson_delta").is_nan());
    }
    // The baselines are built on the truth's control: anchoring does not change their
    // scores (only the normalised ones, whose replicate ceiling differs between modes).
    for model in ["no-change", "clamp", "context-mean", "mean", "neighbour-avg"] {
        for score in &EVAL_SCORES[..10] {
            let (f, a) = (t.at(model, "free", "0-15 um", score), t.at(model, "anchored", "0-15 um", score));
            assert!(f == a || (f.is_nan() && a.is_nan()), "{model} {score}: free {f}, anchored {a}");
        }
    }
    // The clamp is free: in the knocked-out cells it alone earns most of the MAE and a
    // high Pearson delta, and nothing without the knocked-out gene.
    let clamp = |score: &str| t.at("clamp", "anchored", "perturbed", score);
    assert!(clamp("mae") < 0.8 * t.at("no-change", "anchored", "perturbed", "mae"), "{}", t.text);
    assert!(clamp("pearson_delta") > 0.5, "{}", t.text);
    assert_eq!(clamp("mae_off_target"), t.at("no-change", "anchored", "perturbed", "mae_off_target"));
    assert_eq!(t.at("neighbour-avg", "anchored", "perturbed", "mae_off_target"), clamp("mae_off_target"));
    // The headline: the ensemble meets every part of the claim. (Single networks do not
    // reliably: on this scene with 8000 steps, seed 1 loses to ridge in the knocked-out
    // cells and seeds 0-2 all have a lower off-target Pearson delta there than ridge;
    // RESULTS.md.) The clamp alone and an untrained network of the same shape must fail it:
    // a claim they meet would say nothing.
    let learned = t.headline("learned");
    assert!(learned.is_empty(), "the learned model fails the headline claim: {learned:#?}\n{}", t.text);
    for trivial in ["clamp", "untrained"] {
        let fails = t.headline(trivial);
        assert!(!fails.is_empty(), "`{trivial}` meets the headline claim, so it proves nothing:\n{}", t.text);
    }
    // And against the context mean, cell-eval's baseline, free-running.
    let (learned, mean) =
        (|s: &str| t.at("learned", "free", "perturbed", s), |s: &str| t.at("context-mean", "free", "perturbed", s));
    assert!(learned("mae_off_target") < 0.5 * mean("mae_off_target"), "{}", t.text);
    assert!(learned("pearson_off_target") > mean("pearson_off_target") + 0.5, "{}", t.text);
    // Bad input is named.
    let bad = |model: &str, ty: &str, perturb: &str| {
        explant([
            "eval".as_ref(),
            scene.as_os_str(),
            "--model".as_ref(),
            dir.join(model).as_os_str(),
            "--hold-out-type".as_ref(),
            ty.as_ref(),
            "--perturb".as_ref(),
            perturb.as_ref(),
        ])
    };
    let err = assert_clean_failure(&bad("m.pt", "progenitors", "HES1,AXIN2"), "eval with an unknown type");
    assert!(err.contains("--hold-out-type") && err.contains("progenitor"), "{err}");
    let err = assert_clean_failure(&bad("m.pt", "progenitor", "HES1,AXIN2,HES1"), "eval with a gene twice");
    assert!(err.contains("`HES1` is given twice (at positions 1 and 3)"), "{err}");
    // A model that does not exist fails before any simulation.
    let o = bad("missing.pt", "progenitor", "HES1,AXIN2");
    let err = assert_clean_failure(&o, "eval with a missing model");
    assert!(err.contains("missing.pt") && err.contains("does not exist") && !stderr(&o).contains("truth:"), "{err}");
}

/// The Python with `anndata` and `cell-eval`, or why there is none.
fn python_with_cell_eval() -> Result<PathBuf, String> {
    let python = python_with_anndata()?;
    match Command::new(&python).args(["-c", "import cell_eval"]).output() {
        Ok(o) if o.status.success() => Ok(python),
        Ok(o) => {
            let err = stderr(&o);
            let last = err.trim().lines().last().unwrap_or_default().to_owned();
            Err(format!("`{}` cannot import cell_eval: {last} (scripts/setup.sh installs it)", python.display()))
        }
        Err(e) => Err(format!("cannot start `{}`: {e}", python.display())),
    }
}

#[test]
fn eval_export_is_scored_by_cell_eval_as_explant_scores_it() {
    const TEST: &str = "eval_export_is_scored_by_cell_eval_as_explant_scores_it";
    let python = match python_with_cell_eval() {
        Ok(p) => p,
        Err(why) if std::env::var("EXPLANT_REQUIRE_PYTHON").as_deref() != Ok("1") => {
            skip(TEST, "scoring the export with cell-eval", &why);
            return;
        }
        Err(why) => panic!("EXPLANT_REQUIRE_PYTHON=1 but {why}"),
    };
    let dir = TempDir::new("cli", TEST);
    let scene = small_panel_scene(&dir);
    let model = dir.join("m.pt");
    // A briefly trained model: this test checks the scorer, not the model.
    let hold_out = ["--hold-out-type", "progenitor"];
    let mut args: Vec<std::ffi::OsString> =
        vec!["train".into(), scene.clone().into(), "--out".into(), model.clone().into()];
    args.extend(
        ["--steps", "200", "--contexts", "4", "--per-context", "500", "--hold-out-genes", "HES1,AXIN2,ATOH1"]
            .map(Into::into),
    );
    args.extend(hold_out.map(Into::into));
    assert_success(&explant(args), "explant train with hold-outs");
    let (csv, export) = (dir.join("eval.csv"), dir.join("export"));
    let mut args: Vec<std::ffi::OsString> = vec!["eval".into(), scene.into(), "--model".into(), model.into()];
    args.extend(["--perturb", "HES1,AXIN2,ATOH1", "--contexts", "4", "--export"].map(Into::into));
    args.push(export.clone().into());
    args.extend(hold_out.map(Into::into));
    let o = explant(args.iter().chain([&"--out".into(), &csv.clone().into_os_string()]));
    assert_success(&o, "explant eval --export");
    // One folder per group, with the truth and every predictor.
    for folder in ["perturbed", "band-0-15um", "band-15-30um", "far-30um"] {
        for file in [
            "real",
            "pred_no-change",
            "pred_clamp",
            "pred_context-mean",
            "pred_mean",
            "pred_neighbour-avg",
            "pred_learned",
            "pred_ridge",
        ] {
            let path = export.join(folder).join(format!("{file}.h5ad"));
            assert!(path.is_file(), "no `{}`:\n{}", path.display(), stdout(&o));
        }
    }
    // cell-eval on every file: explant's scores of the exported cells equal cell-eval's
    // to 1e-6, and explant eval's table is theirs (or the difference is named).
    let o = Command::new(&python)
        .arg(repo().join("tests/python/cell_eval_compare.py"))
        .args([export.as_os_str(), csv.as_os_str()])
        .args(["--hold-out-type", "progenitor", "--subprocess-once"])
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("start python");
    loud(&stdout(&o));
    assert_success(&o, "cell_eval_compare.py");
    assert!(stdout(&o).lines().any(|l| l.starts_with("ok: 28 cell-eval runs")), "{}", stdout(&o));
    // An export into a folder holding files is refused without --force.
    let o = explant(&args);
    let err = assert_clean_failure(&o, "explant eval --export into a non-empty folder");
    assert!(err.contains("already holds files") && err.contains("--force"), "{err}");
}

/// The short scene whose responders divide every tick (a cycle as short as `time.dt`),
/// capped at `max_cells`.
fn runaway_scene(dir: &TempDir, max_cells: usize) -> PathBuf {
    let text = short_scene_text(&default_model());
    let text = replace_once(
        &text,
        "bias = { FZD7 = 6.0, NOTCH1 = 6.0, DLL1 = 3.0 }\n",
        "bias = { FZD7 = 6.0, NOTCH1 = 6.0, DLL1 = 3.0 }\ncycle = { duration = 0.5, cv = 0.0 }\n",
    );
    let text =
        replace_once(&text, &format!("cells = {CELLS}\n"), &format!("cells = {CELLS}\nmax_cells = {max_cells}\n"));
    write_scene(dir, "runaway.toml", &text)
}

#[test]
fn exit_status_is_0_completed_1_invalid_input_or_usage_and_3_simulation_failed() {
    let dir = TempDir::new("cli", "exit_status");
    let code = |o: &Output| o.status.code();
    // 0: completed, and `--help` / `--version`.
    let ok = explant(["check".as_ref(), repo().join("scenes/default.toml").as_os_str()]);
    assert_eq!(code(&ok), Some(0), "{}", stderr(&ok));
    for flag in ["--help", "--version"] {
        assert_eq!(code(&explant([flag])), Some(0), "{flag}");
    }
    let help = stdout(&explant(["--help"]));
    assert!(help.contains("Exit status:") && help.contains("3  the simulation failed"), "{help}");
    // 1: invalid input.
    let bad =
        write_scene(&dir, "bad.toml", &short_scene_text(&default_model()).replace("decay = 0.02", "decay = -1.0"));
    assert_eq!(code(&explant(["check".as_ref(), bad.as_os_str()])), Some(1));
    // 1, not clap's 2: usage errors (an unknown flag, a missing argument, no subcommand).
    for args in
        [&["run", "--bogus"][..], &["run"], &[], &["check"], &["run", "x.toml", "--out", "o", "--threads", "many"]]
    {
        let o = explant(args);
        assert_eq!(code(&o), Some(1), "explant {args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("error:") || stderr(&o).contains("Usage"), "{}", stderr(&o));
    }
    // 3: the simulation ran and failed; its partial results are written.
    let scene = runaway_scene(&dir, 1000);
    let out = dir.join("out");
    let o = run(&scene, &out, &["--diffusion", "cpu", "--teacher", "--no-figures"]);
    let err = stderr(&o);
    assert_eq!(code(&o), Some(3), "{err}");
    assert!(!err.to_lowercase().contains("panicked"), "{err}");
    assert!(err.contains("stage `fate`") && err.contains("`tissue.max_cells` = 1000"), "{err}");
    let m = manifest(&out);
    assert_eq!(m["status"]["failed"]["stage"], "fate", "{m}");
    assert!(m["status"]["failed"]["message"].as_str().unwrap().contains("cells, past `tissue.max_cells` = 1000"));
    assert!(m["cells"].as_u64().unwrap() <= 1000, "{m}");
    assert!(out.join("tissue.h5ad").exists() && out.join("timeseries.csv").exists(), "partial results");
}

#[test]
fn a_population_that_doubles_every_tick_stops_cleanly_at_its_cell_limit() {
    let dir = TempDir::new("cli", "runaway_division");
    let scene = runaway_scene(&dir, 2000);
    let out = dir.join("out");
    let o = run(&scene, &out, &["--diffusion", "cpu", "--teacher", "--no-figures"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    // The responders (all but the organiser's cells) double every tick, from 300 cells:
    // the run stops at the fate stage that would pass 2000, with the last population kept.
    let grow = err.split("would grow to ").nth(1).and_then(|t| t.split(' ').next()).expect("the count");
    let grow: u64 = grow.parse().unwrap();
    assert!(err.contains(&format!("{grow} cells, past `tissue.max_cells` = 2000")), "{err}");
    let m = manifest(&out);
    let (cells, ticks) = (m["cells"].as_u64().unwrap(), m["ticks_completed"].as_u64().unwrap());
    assert!(grow > 2000 && cells <= 2000 && grow < 2 * cells && (1..=4).contains(&ticks), "{m}");
    // A report of the partial run is written, but never over a file the user has.
    let page = dir.join("page.html");
    std::fs::write(&page, "mine\n").unwrap();
    let o = explant(["report".as_ref(), out.as_os_str(), "--out".as_ref(), page.as_os_str()]);
    let err = assert_clean_failure(&o, "report --out over an existing file");
    assert!(err.contains(&format!("`{}` already exists", page.display())) && err.contains("--force"), "{err}");
    assert_eq!(read(&page), "mine\n");
    let o = explant(["report".as_ref(), out.as_os_str(), "--out".as_ref(), page.as_os_str(), "--force".as_ref()]);
    assert_success(&o, "report --out --force");
    assert!(read(&page).contains("<html"), "--force replaced the file with the report");
}

#[test]
fn out_files_of_train_model_fit_and_eval_are_not_overwritten_without_force() {
    let dir = TempDir::new("cli", "out_files_force");
    let scene = write_short_scene(&dir);
    let (pt, json) = (dir.join("mine.pt"), dir.join("mine.json"));
    std::fs::write(&pt, "my model\n").unwrap();
    let csv = dir.join("scores.csv");
    std::fs::write(&csv, "my scores\n").unwrap();
    let s = scene.as_os_str();
    let train = ["train".as_ref(), s, "--out".as_ref(), pt.as_os_str(), "--steps".as_ref(), "1".as_ref()];
    let fit = ["model".as_ref(), "fit".as_ref(), s, "--out".as_ref(), pt.as_os_str(), "--steps".as_ref(), "1".as_ref()];
    for (args, what) in [(&train[..], "train"), (&fit[..], "model fit")] {
        let err = assert_clean_failure(&explant(args), what);
        assert!(err.contains(&format!("`{}` already exists", pt.display())) && err.contains("--force"), "{err}");
    }
    // The metadata beside a new `.pt` counts too.
    std::fs::remove_file(&pt).unwrap();
    std::fs::write(&json, "{}\n").unwrap();
    let err = assert_clean_failure(&explant(train), "train over an existing .json");
    assert!(err.contains(&format!("`{}` already exists", json.display())), "{err}");
    assert!(!pt.exists() && read(&json) == "{}\n", "nothing was written");
    let model = default_model();
    let eval = [
        "eval".as_ref(),
        s,
        "--model".as_ref(),
        model.as_os_str(),
        "--hold-out-type".as_ref(),
        "responder".as_ref(),
        "--perturb".as_ref(),
        "HES1,AXIN2".as_ref(),
        "--out".as_ref(),
        csv.as_os_str(),
    ];
    let err = assert_clean_failure(&explant(eval), "eval --out over an existing file");
    assert!(err.contains(&format!("`{}` already exists", csv.display())), "{err}");
    assert_eq!(read(&csv), "my scores\n");
}

#[test]
fn threads_beyond_the_machine_are_capped_with_a_note_and_scene_warnings_are_printed() {
    let dir = TempDir::new("cli", "threads_cap");
    // A knockout in an empty corner of the grid: allowed (cells may move in), warned.
    let text = format!(
        "{}\n[[perturbations]]\nkind = \"knockout\"\ngene = \"HES1\"\nregion = {{ kind = \"box\", min = [0.0, 0.0], max = [40.0, 40.0] }}\n",
        short_scene_text(&default_model())
    );
    let scene = write_scene(&dir, "corner.toml", &text);
    let warning = format!("warning: scene `{}`: field `perturbations[0].region`", scene.display());
    let o = explant(["check".as_ref(), scene.as_os_str()]);
    assert_success(&o, "check of a scene with a warning");
    assert!(stderr(&o).contains(&warning) && stderr(&o).contains("no cell at the start"), "{}", stderr(&o));
    let out = dir.join("out");
    let o = run_ok(&scene, &out, &["--diffusion", "cpu", "--teacher", "--no-figures", "--threads", "10000"]);
    let err = stderr(&o);
    assert!(err.contains(&warning), "{err}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(err.contains(&format!("note: `--threads 10000` is more than the {cores} this machine has")), "{err}");
    assert_eq!(manifest(&out)["threads"].as_u64(), Some(cores as u64));
}

#[test]
fn scenes_that_select_nothing_or_name_what_hdf5_cannot_hold_are_refused_by_check() {
    let dir = TempDir::new("cli", "refused_by_check");
    let base = short_scene_text(&default_model());
    for (name, text, field, says) in [
        (
            "outside.toml",
            format!(
                "{base}\n[[perturbations]]\nkind = \"knockout\"\ngene = \"HES1\"\nregion = {{ kind = \"circle\", centre = [900.0, 300.0], radius = 50.0 }}\n"
            ),
            "perturbations[0].region",
            "wholly outside the grid",
        ),
        (
            "late.toml",
            format!("{base}\n[[perturbations]]\nkind = \"ablation\"\nstart = 10.0\n"),
            "perturbations[0].start",
            "`10`",
        ),
        ("slash.toml", base.replacen("name = \"WNT3A\"", "name = \"WNT/3A\"", 1), "ligands[0].name", "`/`"),
    ] {
        let scene = write_scene(&dir, name, &text);
        let err = assert_clean_failure(&explant(["check".as_ref(), scene.as_os_str()]), name);
        assert!(err.contains(&format!("scene `{}`: field `{field}`", scene.display())) && err.contains(says), "{err}");
    }
}

#[test]
fn completions_cover_every_subcommand_and_option_value_and_parse_in_their_shell() {
    // The scripts are generated from the parser's own definition: a subcommand, option or
    // value added later shows up without editing them. Checked: each names every
    // subcommand, `explain`'s methods, and the bash script is valid bash (`bash -n`).
    let dir = TempDir::new("cli", "completions_cover_every_subcommand_and_option_value_and_parse_in_their_shell");
    let subcommands = [
        "run",
        "resume",
        "check",
        "render",
        "report",
        "train",
        "eval",
        "explain",
        "model",
        "sweep",
        "bench",
        "completions",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let o = explant(["completions", shell]);
        assert_success(&o, &format!("explant completions {shell}"));
        let script = stdout(&o);
        for sub in subcommands {
            assert!(script.contains(sub), "{shell}: no `{sub}` in the completions");
        }
        for value in ["ablation", "shapley", "gradients", "--samples"] {
            assert!(script.contains(value), "{shell}: no `{value}` in the completions");
        }
    }
    let bash = dir.join("explant.bash");
    std::fs::write(&bash, stdout(&explant(["completions", "bash"]))).expect("write the bash script");
    match Command::new("bash").arg("-n").arg(&bash).output() {
        Ok(o) => assert_success(&o, "bash -n on the completion script"),
        Err(e) => skip("completions", "bash -n", &e.to_string()),
    }
    let o = explant(["completions", "powershell-9"]);
    assert!(assert_clean_failure(&o, "an unknown shell").contains("bash, zsh, fish"));
}

#[test]
fn bench_tick_times_every_stage_of_the_benchmark_scene() {
    // The 10⁶-cell benchmark scene, shrunk to 2000 cells on a small grid by `--set` (the
    // full size is measured by hand, BENCHMARKS.md): every stage of the tick is timed,
    // the stages account for the tick (their sum is within it and most of it), and the
    // scene's own learned model and the chosen scheme are the ones stepped.
    let scene = repo().join("scenes/bench/tick_1m.toml");
    let o = explant([
        "bench".as_ref(),
        "tick".as_ref(),
        scene.as_os_str(),
        "--ticks".as_ref(),
        "3".as_ref(),
        "--json".as_ref(),
        "--set".as_ref(),
        "tissue.cells=2000".as_ref(),
        "--set".as_ref(),
        "tissue.radius=170.0".as_ref(),
        "--set".as_ref(),
        "tissue.centre=[300.0, 300.0]".as_ref(),
        "--set".as_ref(),
        "grid.size=[600.0, 600.0]".as_ref(),
        "--set".as_ref(),
        "tissue.regions=[{ cell_type = \"organiser\", shape = { kind = \"circle\", centre = [300.0, 300.0], radius = 30.0 } }]".as_ref(),
        "--set".as_ref(),
        "grid.scheme=adi".as_ref(),
    ]);
    assert_success(&o, "explant bench tick");
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}:\n{}", stdout(&o)));
    assert_eq!(v["bench"], "tick");
    assert_eq!(v["cells"], 2000, "{v}");
    assert_eq!(v["voxels"], 3600);
    assert!(v["backends"]["diffusion"].as_str().unwrap().contains("adi"), "{v}");
    assert!(v["backends"]["model"].as_str().unwrap().contains("default.pt"), "{v}");
    let stages = v["stages"].as_object().expect("stages");
    for name in ["secrete", "diffuse", "sense", "respond", "perturb", "mechanics", "fate", "record"] {
        let ms = stages[name].as_f64().unwrap_or_else(|| panic!("no stage `{name}` in {v}"));
        assert!(ms.is_finite() && ms >= 0.0, "{name}: {ms}");
    }
    let sum: f64 = stages.values().map(|x| x.as_f64().unwrap()).sum();
    let tick = v["ms_per_tick"].as_f64().unwrap();
    assert!(tick > 0.0 && sum <= tick * 1.001 && sum >= 0.5 * tick, "stages sum to {sum} ms of a {tick} ms tick");
    for key in ["sense", "respond"] {
        assert!(stages[key].as_f64().unwrap() > 0.0, "{key} should have run: {v}");
    }
    // A path that does not exist is refused, naming it.
    let bad =
        explant(["bench".as_ref(), "tick".as_ref(), scene.as_os_str(), "--set".as_ref(), "tissue.cellz=3".as_ref()]);
    assert!(assert_clean_failure(&bad, "a --set path that does not exist").contains("cellz"));
}

#[test]
fn bench_diffusion_refuses_an_empty_grid_or_no_ligands() {
    // Each scheme once: `adi` panicked on zero channels before this was checked.
    for (flag, scheme) in [("--channels", "adi"), ("--size", "implicit"), ("--channels", "explicit")] {
        let o = explant(["bench", "diffusion", flag, "0", "--scheme", scheme, "--backend", "cpu", "--steps", "1"]);
        let err = assert_clean_failure(&o, &format!("bench diffusion {flag} 0 --scheme {scheme}"));
        assert!(err.contains(flag) && err.contains("at least 1"), "{flag} 0: {err}");
    }
}

#[test]
fn bench_json_is_one_object_with_the_tables_numbers() {
    // `--json` replaces the table by one JSON object (nothing else on stdout), with the
    // configuration and one positive, finite timing per backend or size; the CPU field
    // sum is the one the table would print. Small sizes: this checks the format, not
    // the speed (speeds are in BENCHMARKS.md).
    let json = |args: &[&str]| -> Value {
        let o = explant(args.iter().copied());
        assert_success(&o, &format!("explant {}", args.join(" ")));
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: not one JSON object:\n{}", stdout(&o)))
    };
    let positive = |v: &Value, key: &str| {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("no number `{key}` in {v}"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    };
    let d = json(&["bench", "diffusion", "--size", "16", "--dims", "2", "--steps", "2", "--backend", "cpu", "--json"]);
    assert_eq!(d["bench"], "diffusion");
    assert_eq!(d["config"]["voxels"], 256);
    assert_eq!(d["config"]["dt_min"].as_f64(), Some(0.01), "f32 options are written as the decimals given");
    let results = d["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "--backend cpu: one backend");
    assert!(results[0]["backend"].as_str().unwrap().starts_with("cpu"));
    for key in ["ms_per_step", "ns_per_voxel_ligand_step", "voxel_ligand_steps_per_s", "field_sum"] {
        positive(&results[0], key);
    }
    assert!(d["ratio"].is_null(), "one backend: no ratio");
    let t = json(&["bench", "tissue", "--cells", "200,400", "--dims", "2", "--ticks", "2", "--json"]);
    let rows = t["results"].as_array().expect("results");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["ns_per_cell_vs_smallest"].as_f64(), Some(1.0));
    for r in rows {
        assert!(r["cells"].as_u64().unwrap() >= 150, "{r}");
        for key in ["cell_stages_ms", "ns_per_cell"] {
            positive(r, key);
        }
    }
    let model = default_model();
    let m = json(&["bench", "model", "--cells", "100", "--reps", "1", "--json", "--model", model.to_str().unwrap()]);
    assert_eq!(m["config"]["layers"], serde_json::json!(["17", "64", "64", "7"]));
    positive(&m["results"][0], "model_cells_per_s");
}
