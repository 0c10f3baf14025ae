//! `explant explain`, scored against the true wiring: on the shipped scenes the teacher's
//! edges say which channel a response can travel along, and on a scene built for it the
//! ablation shares have a closed form.
//!
//! Each test asserts the true channel carries the effect (share near 1, or the exact
//! split) *and* that channels the wiring rules out carry (almost) none: an explanation
//! that clamps nothing (every share 0), clamps the wrong column (the share lands on
//! another channel) or pairs the wrong cells fails.

use std::path::Path;

use crate::common::{TempDir, assert_clean_failure, assert_success, explant, read, repo, stdout};

/// One row of `explain/attribution.csv`.
#[derive(Debug, Clone)]
struct Row {
    target: String,
    group: String,
    channel: String,
    cells: usize,
    total: f64,
    effect: f64,
    share: f64,
    standard_error: String,
    method: String,
}

fn attribution(run: &Path) -> Vec<Row> {
    let text = read(&run.join("explain/attribution.csv"));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("target,group,channel,cells,total_effect,effect,share,standard_error,method"),
        "attribution.csv header"
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 9, "row `{l}`");
            Row {
                target: f[0].into(),
                group: f[1].into(),
                channel: f[2].into(),
                cells: f[3].parse().expect("cells"),
                total: f[4].parse().expect("total_effect"),
                effect: f[5].parse().expect("effect"),
                share: f[6].parse().expect("share"),
                standard_error: f[7].into(),
                method: f[8].into(),
            }
        })
        .collect()
}

/// The rows of (`target`, `group`), by decreasing |effect|; every channel is there.
fn ranked<'a>(rows: &'a [Row], target: &str, group: &str, channels: usize) -> Vec<&'a Row> {
    let mut r: Vec<&Row> = rows.iter().filter(|r| r.target == target && r.group == group).collect();
    assert_eq!(r.len(), channels, "{target} in {group}: one row per channel");
    r.sort_by(|a, b| b.effect.abs().total_cmp(&a.effect.abs()));
    r
}

/// The true channel is first with a share in `[1 − tol, 1 + tol]`, every other channel's
/// share is within `tol` of 0, and the effect is not vanishingly small (else any share
/// would pass).
fn assert_carried_by(rows: &[Row], target: &str, group: &str, channel: &str, channels: usize, tol: f64) {
    let r = ranked(rows, target, group, channels);
    assert!(
        r[0].cells > 0 && r[0].total.abs() > 1e-3,
        "{target} in {group}: effect {} over {} cells",
        r[0].total,
        r[0].cells
    );
    assert_eq!(r[0].channel, channel, "{target} in {group}: top channel: {r:#?}");
    assert!((r[0].share - 1.0).abs() <= tol, "{target} in {group}: `{channel}` carries {} of the effect", r[0].share);
    for other in &r[1..] {
        assert!(other.share.abs() <= tol, "{target} in {group}: `{}` carries {}: {r:#?}", other.channel, other.share);
    }
    assert!(r.iter().all(|x| x.method == "ablation" && x.standard_error.is_empty()));
}

/// `explant explain SCENE --out DIR --teacher` for `text`, which must succeed: the run
/// directory and what the command printed.
fn explain_scene(dir: &TempDir, text: &str, name: &str) -> (std::path::PathBuf, String) {
    let scene = dir.join(&format!("{name}.toml"));
    std::fs::write(&scene, text).expect("write scene");
    let out = dir.join(name);
    let o = explant([
        "explain".as_ref(),
        scene.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--teacher".as_ref(),
        "--quiet".as_ref(),
    ]);
    assert_success(&o, &format!("explant explain {}", scene.display()));
    (out, stdout(&o))
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(repo().join("scenes").join(name)).expect("read shipped scene")
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "the shipped scene should contain `{from}` exactly once");
    text.replacen(from, to, 1)
}

#[test]
fn axin2_and_lgr5_respond_to_a_wnt3a_knockout_through_ligand_wnt3a() {
    // scenes/default.toml, shortened as in `cli`, with the teacher, WNT3A knocked out in
    // the organiser. Wiring: WNT3A reaches AXIN2 and LGR5 only through the sensed ligand
    // (LGR5 also through AXIN2, inside the cell); DLL1 and the neighbour counts do not
    // depend on WNT3A, so their shares must be 0.
    let dir = TempDir::new("explain", "axin2_and_lgr5_respond_to_a_wnt3a_knockout_through_ligand_wnt3a");
    let mut text = shipped("default.toml");
    for (from, to) in [
        ("duration = 240.0", "duration = 20.0"),
        ("record_every = 20.0", "record_every = 10.0"),
        ("cells = 1500", "cells = 300"),
        ("radius = 260.0", "radius = 120.0"),
    ] {
        text = replace_once(&text, from, to);
    }
    text.push_str("\n[[perturbations]]\nkind = \"knockout\"\ngene = \"WNT3A\"\ncell_type = \"organiser\"\n");
    let (out, printed) = explain_scene(&dir, &text, "wnt");
    let rows = attribution(&out);
    // Channels: ligand:WNT3A, contact:DLL1, neighbours:organiser, neighbours:responder.
    for target in ["AXIN2", "LGR5"] {
        for group in ["type:responder", "band:0-25um", "band:25-50um"] {
            assert_carried_by(&rows, target, group, "ligand:WNT3A", 4, 0.02);
        }
    }
    // The knocked-out gene itself moves in the organiser cells, through no channel.
    let ko = ranked(&rows, "WNT3A", "perturbed", 4);
    assert!(ko[0].total < -0.5 && ko.iter().all(|r| r.effect == 0.0), "{ko:#?}");
    // The printed table names the channel of the largest responder effect.
    let line = printed.lines().find(|l| l.starts_with("AXIN2") && l.contains("band:0-25um")).unwrap_or_else(|| {
        panic!("no AXIN2 band:0-25um line in the printed table:\n{printed}");
    });
    assert!(line.contains("ligand:WNT3A"), "{line}");
    assert!(printed.lines().any(|l| l.starts_with("WNT3A") && l.contains("(none: within the cell)")), "{printed}");
    // The same explanation on one thread (from the run directory, replacing it): the same
    // bytes, whatever rayon does with the runs.
    let all_threads = read(&out.join("explain/attribution.csv"));
    let o = explant(["explain".as_ref(), out.as_os_str(), "--force".as_ref(), "--threads".as_ref(), "1".as_ref()]);
    assert_success(&o, "explant explain RUN_DIR --threads 1");
    assert_eq!(read(&out.join("explain/attribution.csv")), all_threads, "attribution.csv depends on the thread count");
}

#[test]
fn hes1_responds_to_a_dll1_knockout_through_contact_dll1() {
    // scenes/lateral_inhibition.toml with DLL1 (instead of HES1) knocked out in its disk
    // from the start, 60 min. Wiring: HES1 reads only its neighbours' DLL1. The sheet is
    // static, so the neighbour counts are the control's and `neighbours:epithelium` must
    // carry nothing. Explained from a run directory of `explant run`.
    let dir = TempDir::new("explain", "hes1_responds_to_a_dll1_knockout_through_contact_dll1");
    let mut text = shipped("lateral_inhibition.toml");
    for (from, to) in [
        ("duration = 360.0", "duration = 60.0"),
        ("record_every = 60.0", "record_every = 30.0"),
        ("gene = \"HES1\"", "gene = \"DLL1\""),
        ("start = 120.0", "start = 0.0"),
    ] {
        text = replace_once(&text, from, to);
    }
    let scene = dir.join("li.toml");
    std::fs::write(&scene, &text).expect("write scene");
    let run = dir.join("run");
    let o = explant(["run".as_ref(), scene.as_os_str(), "--out".as_ref(), run.as_os_str(), "--quiet".as_ref()]);
    assert_success(&o, "explant run li.toml");
    let o = explant(["explain".as_ref(), run.as_os_str(), "--quiet".as_ref()]);
    assert_success(&o, "explant explain RUN_DIR");
    assert!(stdout(&o).contains("explain/attribution.csv"), "{}", stdout(&o));
    let rows = attribution(&run);
    for group in ["perturbed", "band:0-25um", "type:epithelium"] {
        assert_carried_by(&rows, "HES1", group, "contact:DLL1", 2, 0.02);
    }
    // A second explanation into the same run directory is refused without --force.
    let again = explant(["explain".as_ref(), run.as_os_str()]);
    let err = assert_clean_failure(&again, "explain twice");
    assert!(err.contains("attribution.csv") && err.contains("--force"), "{err}");
}

#[test]
fn two_ligands_on_one_target_split_its_response_as_the_sigmoid_says() {
    // Built for it: uniform boluses of ligands A (0.2) and B (0.1) from t = 0, no decay,
    // zero-flux walls, so every cell senses s_A = 0.2, s_B = 0.1 (receptors constant at 1)
    // against 0 in the control. The teacher's target T has no degradation and weight 1 on
    // both: dT/dt = α σ(s_A + s_B), so over the run (α t = 1)
    //   total  = σ(0.3) − σ(0),
    //   by A   = σ(0.3) − σ(0.1)   (A clamped: T sees only B),
    //   by B   = σ(0.3) − σ(0.2).
    // The exact shares are 0.66446 and 0.33058; float32 over 20 Euler steps of a value
    // near 1 errs by ~1e-6 on effects of ~0.05, so 1e-4 is a safe tolerance. In the
    // additive (linear) limit the split is 2 : 1; the sigmoid's cubic term bends it by
    // at most x²/12 ≈ 0.0075 of the share at x = 0.3, so the shares are also within 0.01
    // of 2/3 and 1/3. A swapped column would give 1/3 and 2/3; no clamp, 0 and 0.
    let dir = TempDir::new("explain", "two_ligands_on_one_target_split_its_response_as_the_sigmoid_says");
    let text = r#"
version = 1
name = "two-ligands"
seed = 1
genes = ["S", "RA", "RB", "T"]
[time]
dt = 0.5
duration = 10.0
record_every = 5.0
[grid]
size = [200.0, 200.0]
dx = 20.0
[[ligands]]
name = "A"
diffusion = 100.0
decay = 0.0
secreted_by = "S"
receptor = "RA"
[[ligands]]
name = "B"
diffusion = 100.0
decay = 0.0
secreted_by = "S"
receptor = "RB"
[[cell_types]]
name = "cell"
baseline = { RA = 1.0, RB = 1.0, T = 1.0 }
[tissue]
centre = [100.0, 100.0]
radius = 80.0
cells = 100
cell_type = "cell"
[mechanics]
mobility = 0.0
[model]
kind = "teacher"
[teacher]
degradation = 0.0
default_max_rate = 0.0
max_rate = { T = 0.1 }
bias = 0.0
edges = [
  { source = "ligand:A", target = "T", weight = 1.0 },
  { source = "ligand:B", target = "T", weight = 1.0 },
]
[[perturbations]]
kind = "bolus"
ligand = "A"
value = 0.2
start = 0.0
[[perturbations]]
kind = "bolus"
ligand = "B"
value = 0.1
start = 0.0
"#;
    let (out, _) = explain_scene(&dir, text, "two");
    let rows = attribution(&out);
    let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
    let total = sigma(0.3) - sigma(0.0);
    let (by_a, by_b) = (sigma(0.3) - sigma(0.1), sigma(0.3) - sigma(0.2));
    let r = ranked(&rows, "T", "type:cell", 3);
    let get = |c: &str| r.iter().find(|x| x.channel == c).unwrap_or_else(|| panic!("no `{c}` row"));
    let (a, b, n) = (get("ligand:A"), get("ligand:B"), get("neighbours:cell"));
    assert_eq!(a.cells, 100);
    assert!((a.total - total).abs() < 1e-5, "total effect {} vs σ(0.3) − σ(0) = {total}", a.total);
    assert!((a.share - by_a / total).abs() < 1e-4, "share of A {} vs {}", a.share, by_a / total);
    assert!((b.share - by_b / total).abs() < 1e-4, "share of B {} vs {}", b.share, by_b / total);
    assert!((a.share - 2.0 / 3.0).abs() < 0.01 && (b.share - 1.0 / 3.0).abs() < 0.01, "{} {}", a.share, b.share);
    assert_eq!(n.effect, 0.0, "the neighbour counts carry nothing");
}

#[test]
fn methods_other_than_ablation_are_refused_as_not_implemented_yet() {
    let dir = TempDir::new("explain", "methods_other_than_ablation_are_refused_as_not_implemented_yet");
    let scene = repo().join("scenes/lateral_inhibition.toml");
    for method in ["shapley", "gradients"] {
        let out = dir.join(method);
        let o = explant([
            "explain".as_ref(),
            scene.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--method".as_ref(),
            method.as_ref(),
        ]);
        let err = assert_clean_failure(&o, &format!("--method {method}"));
        assert!(err.contains(&format!("`--method {method}` is not implemented yet")), "{err}");
        assert!(!out.exists(), "nothing is run for a refused method");
    }
    // A scene without `--out`, and a scene without perturbations, are refused clearly.
    let o = explant(["explain".as_ref(), scene.as_os_str()]);
    assert!(assert_clean_failure(&o, "no --out").contains("--out DIR"));
}
