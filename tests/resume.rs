//! Checkpoint and resume: a run killed with SIGKILL and resumed from its checkpoint ends
//! with the same bytes in every output as the run that was never interrupted; a run is
//! extended with `--duration`; checkpoints of another scene, damaged ones and resumes
//! that cannot continue are refused with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{EXE, TempDir, assert_clean_failure, assert_success, explant, read, repo};

/// The default scene made small, with everything a checkpoint must carry: responders
/// that divide, die (apoptosis) and migrate up the WNT3A gradient, the learned model
/// (`models/default.pt`), a HES1 knockdown whose window (10–40 min) spans the
/// checkpoints, and so the paired control.
fn scene_text(duration: f64) -> String {
    let text = read(&repo().join("scenes/default.toml"));
    let model = repo().join("models/default.pt");
    let mut t = text;
    for (from, to) in [
        ("duration = 240.0".to_owned(), format!("duration = {duration:.1}")),
        ("record_every = 20.0".to_owned(), "record_every = 5.0".to_owned()),
        ("cells = 1500".to_owned(), "cells = 300".to_owned()),
        ("radius = 260.0".to_owned(), "radius = 120.0".to_owned()),
        ("path = \"../models/default.pt\"".to_owned(), format!("path = \"{}\"", model.display())),
        (
            "bias = { FZD7 = 6.0, NOTCH1 = 6.0, DLL1 = 3.0 }".to_owned(),
            "bias = { FZD7 = 6.0, NOTCH1 = 6.0, DLL1 = 3.0 }\n\
             cycle = { duration = 40.0, cv = 0.2 }\n\
             apoptosis = { rate = 0.003, duration = 10.0 }\n\
             chemotaxis = { ligand = \"WNT3A\", speed = 0.5, bias = 0.5 }"
                .to_owned(),
        ),
        (
            "[output]".to_owned(),
            "[[perturbations]]\nkind = \"knockdown\"\ngene = \"HES1\"\nfraction = 0.8\nstart = 10.0\nstop = 40.0\n\
             region = { kind = \"circle\", centre = [330.0, 300.0], radius = 60.0 }\n\n[output]"
                .to_owned(),
        ),
    ] {
        assert_eq!(t.matches(&from).count(), 1, "scenes/default.toml should contain `{from}` once");
        t = t.replacen(&from, &to, 1);
    }
    t
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run_args(scene: &Path, out: &Path) -> Vec<String> {
    [
        "run",
        &scene.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--diffusion",
        "cpu",
        "--quiet",
        "--checkpoint-every",
        "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every file under `root`, relative, sorted.
fn files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for f in files(from) {
        let target = to.join(&f);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), target).unwrap();
    }
}

/// The manifest without what differs between any two runs (wall times, the command).
fn manifest_facts(dir: &Path) -> serde_json::Value {
    let mut m: serde_json::Value = serde_json::from_str(&read(&dir.join("manifest.json"))).unwrap();
    let o = m.as_object_mut().unwrap();
    for k in ["wall_seconds", "stage_seconds", "resumed_from_ticks", "command_line"] {
        o.remove(k);
    }
    m
}

fn status(dir: &Path) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_str(&read(&dir.join("manifest.json"))).unwrap();
    m["status"].clone()
}

#[test]
fn a_run_killed_with_sigkill_and_resumed_writes_the_same_bytes_as_an_uninterrupted_run() {
    let dir = TempDir::new("resume", "killed_and_resumed");
    let scene = write(&dir, "scene.toml", &scene_text(60.0));
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    assert_success(&explant(run_args(&scene, &whole)), "the uninterrupted run");

    // Kill the second run as soon as its first checkpoint is in place.
    let mut child = Command::new(EXE)
        .args(run_args(&scene, &killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start explant run");
    let checkpoint = killed.join("checkpoint.explant");
    let t0 = Instant::now();
    while !checkpoint.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL the run");
    child.wait().unwrap();
    assert_eq!(status(&killed), "running", "the run should have been killed before it completed");
    assert!(!killed.join("tissue.h5ad").exists(), "the killed run should not have its final outputs");

    // The killed run is still a run directory: render and report draw its latest snapshot
    // and say it is partial (on a copy, as the report draws into the run's figures/).
    let copy = dir.join("killed_copy");
    copy_dir(&killed, &copy);
    let o = explant(["render".as_ref(), copy.as_os_str(), "--out".as_ref(), dir.join("partial").as_os_str()]);
    assert_success(&o, "render of the killed run");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("is a partial run"), "render should say the run is partial:\n{err}");
    let page = dir.join("partial.html");
    assert_success(
        &explant(["report".as_ref(), copy.as_os_str(), "--out".as_ref(), page.as_os_str()]),
        "report of the killed run",
    );
    assert!(read(&page).contains("running (no end recorded"), "the report should say the run did not end");

    // Snapshots written before the kill (tick 0 at least) are not rewritten by a resume
    // that continues from the checkpoint rather than starting over.
    let before: Vec<(PathBuf, std::time::SystemTime)> = files(&killed.join("snapshots"))
        .into_iter()
        .map(|f| {
            let p = killed.join("snapshots").join(f);
            let t = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, t)
        })
        .collect();
    assert!(!before.is_empty(), "no snapshot before the kill");
    std::thread::sleep(Duration::from_millis(20));
    let o = explant(["resume".as_ref(), killed.as_os_str(), "--quiet".as_ref()]);
    assert_success(&o, "explant resume");
    let tick0 = &before[0];
    assert_eq!(
        std::fs::metadata(&tick0.0).unwrap().modified().unwrap(),
        tick0.1,
        "`{}` was rewritten: the resume started over instead of continuing",
        tick0.0.display()
    );
    assert_eq!(status(&killed), "completed");

    let outputs: Vec<PathBuf> = files(&whole)
        .into_iter()
        .filter(|p| p != Path::new("manifest.json") && p != Path::new("checkpoint.explant"))
        .collect();
    for must in
        ["tissue.h5ad", "timeseries.csv", "timeseries_control.csv", "effects.csv", "snapshots/tick_0000120.h5ad"]
    {
        assert!(outputs.contains(&PathBuf::from(must)), "the uninterrupted run has no `{must}`");
    }
    assert_eq!(files(&killed).len(), files(&whole).len(), "the two runs wrote different files");
    for f in &outputs {
        let (a, b) = (std::fs::read(whole.join(f)).unwrap(), std::fs::read(killed.join(f)).unwrap());
        assert!(a == b, "`{}` differs between the uninterrupted and the resumed run", f.display());
    }
    assert_eq!(manifest_facts(&whole), manifest_facts(&killed));
    let m: serde_json::Value = serde_json::from_str(&read(&killed.join("manifest.json"))).unwrap();
    let from = m["resumed_from_ticks"][0].as_u64().expect("the manifest names the tick resumed from");
    assert!(from > 0 && from < 120 && from.is_multiple_of(20), "resumed from tick {from}");

    // The scene did what the checkpoint must carry: the tissue grew, cells died, and the
    // paired control ran.
    let ts = read(&whole.join("timeseries.csv"));
    assert!(m["cells"].as_u64().unwrap() > 400, "the tissue should have grown: {}", m["cells"]);
    assert!(m["paired_control"].as_bool().unwrap());
    assert!(m["response_model"].as_str().unwrap().contains("default.pt"));
    assert!(ts.lines().count() > 20);
}

#[test]
fn a_completed_run_is_extended_to_a_longer_duration_as_if_it_had_run_that_long() {
    let dir = TempDir::new("resume", "extended");
    let short = write(&dir, "short.toml", &scene_text(30.0));
    let long = write(&dir, "long.toml", &scene_text(45.0));
    let (a, b) = (dir.join("short"), dir.join("long"));
    assert_success(&explant(run_args(&short, &a)), "the 30-min run");
    assert_success(&explant(run_args(&long, &b)), "the 45-min run");

    // A complete run needs a longer duration to resume.
    let err = assert_clean_failure(&explant(["resume".as_ref(), a.as_os_str()]), "resuming a complete run");
    assert!(err.contains("is complete") && err.contains("--duration"), "{err}");
    let err = assert_clean_failure(
        &explant(["resume".as_ref(), a.as_os_str(), "--duration".as_ref(), "10".as_ref()]),
        "a duration before the checkpoint",
    );
    assert!(err.contains("--duration") && err.contains("at or after the checkpoint"), "{err}");

    assert_success(
        &explant(["resume".as_ref(), a.as_os_str(), "--duration".as_ref(), "45".as_ref(), "--quiet".as_ref()]),
        "extending the run to 45 min",
    );
    for f in
        ["timeseries.csv", "timeseries_control.csv", "ligand_totals.csv", "effects.csv", "response_vs_distance.csv"]
    {
        assert!(read(&a.join(f)) == read(&b.join(f)), "`{f}` of the extended run differs from the 45-min run");
    }
    assert!(read(&a.join("scene.toml")).contains("duration = 45.0"), "the run's scene copy should record 45 min");
}

#[test]
fn checkpoints_that_cannot_continue_the_run_are_refused_with_the_reason() {
    let dir = TempDir::new("resume", "refused");
    let scene = write(&dir, "scene.toml", &scene_text(20.0));
    let other = write(&dir, "other.toml", &scene_text(20.0).replace("seed = 7", "seed = 8"));
    let (a, b) = (dir.join("a"), dir.join("b"));
    assert_success(&explant(run_args(&scene, &a)), "run a");
    assert_success(&explant(run_args(&other, &b)), "run b");

    // Not a run directory; a run without checkpoints.
    let err = assert_clean_failure(&explant(["resume".as_ref(), dir.join("nope").as_os_str()]), "no directory");
    assert!(err.contains("does not exist"), "{err}");
    let plain = dir.join("plain");
    let o = explant([
        "run",
        &scene.display().to_string(),
        "--out",
        &plain.display().to_string(),
        "--quiet",
        "--no-figures",
    ]);
    assert_success(&o, "a run without checkpoints");
    let err = assert_clean_failure(
        &explant(["resume".as_ref(), plain.as_os_str(), "--duration".as_ref(), "30".as_ref()]),
        "a run without checkpoints",
    );
    assert!(err.contains("--checkpoint-every"), "{err}");

    // Another scene's checkpoint in a run directory.
    let b_checkpoint = std::fs::read(b.join("checkpoint.explant")).unwrap();
    std::fs::write(a.join("checkpoint.explant"), &b_checkpoint).unwrap();
    let err = assert_clean_failure(
        &explant(["resume".as_ref(), a.as_os_str(), "--duration".as_ref(), "30".as_ref()]),
        "another scene's checkpoint",
    );
    assert!(err.contains("another scene"), "{err}");

    // A damaged checkpoint.
    let mut damaged = b_checkpoint.clone();
    let k = damaged.len() / 2;
    damaged[k] ^= 0x40;
    std::fs::write(b.join("checkpoint.explant"), &damaged).unwrap();
    let err = assert_clean_failure(
        &explant(["resume".as_ref(), b.as_os_str(), "--duration".as_ref(), "30".as_ref()]),
        "a damaged checkpoint",
    );
    assert!(err.contains("damaged"), "{err}");

    // A bad interval is refused before anything is written.
    let c = dir.join("c");
    for bad in ["0", "-5", "nan"] {
        let o = explant([
            "run",
            &scene.display().to_string(),
            "--out",
            &c.display().to_string(),
            &format!("--checkpoint-every={bad}"),
        ]);
        let err = assert_clean_failure(&o, &format!("--checkpoint-every {bad}"));
        assert!(err.contains("--checkpoint-every"), "{err}");
        assert!(!c.exists(), "a refused run created its directory");
    }
}

#[test]
fn a_run_with_its_field_on_the_gpu_is_extended_to_the_same_bytes_as_one_that_ran_that_long() {
    // The implicit scheme keeps the field on the GPU: the checkpoint must bring it back
    // to the host, and the resumed run must put it on the device again.
    let dir = TempDir::new("resume", "gpu_extended");
    let implicit =
        |d: f64| scene_text(d).replacen("dx = 10.0              # µm", "dx = 10.0\nscheme = \"implicit\"", 1);
    assert!(implicit(30.0).contains("scheme = \"implicit\""));
    let short = write(&dir, "short.toml", &implicit(30.0));
    let long = write(&dir, "long.toml", &implicit(45.0));
    let (a, b) = (dir.join("short"), dir.join("long"));
    let gpu = |scene: &Path, out: &Path| -> Vec<String> {
        let mut args = run_args(scene, out);
        let at = args.iter().position(|s| s == "cpu").expect("run_args names cpu");
        args[at] = "gpu".into();
        args
    };
    let o = explant(gpu(&long, &b));
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        if err.contains("no usable wgpu adapter") && std::env::var("EXPLANT_REQUIRE_GPU_ADAPTER").as_deref() != Ok("1")
        {
            eprintln!("SKIPPED: no wgpu adapter: {}", err.trim());
            return;
        }
        panic!("the 45-min GPU run failed:\n{err}");
    }
    assert_success(&explant(gpu(&short, &a)), "the 30-min GPU run");
    let backend = manifest_facts(&b)["diffusion_backend"].as_str().unwrap_or_default().to_string();
    assert!(backend.ends_with("ligand field kept on the device"), "{backend}");
    assert_success(
        &explant(["resume".as_ref(), a.as_os_str(), "--duration".as_ref(), "45".as_ref(), "--quiet".as_ref()]),
        "extending the GPU run to 45 min",
    );
    let resumed = manifest_facts(&a)["diffusion_backend"].as_str().unwrap_or_default().to_string();
    assert!(resumed.ends_with("ligand field kept on the device"), "{resumed}");
    for f in ["timeseries.csv", "timeseries_control.csv", "ligand_totals.csv", "effects.csv"] {
        assert!(read(&a.join(f)) == read(&b.join(f)), "`{f}` of the extended GPU run differs from the 45-min one");
    }
}
