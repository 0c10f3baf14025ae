//! `explant explain`, scored against the true wiring: on the shipped scenes the teacher's
//! edges say which channel a response can travel along, and on scenes built for it the
//! ablation shares and the Shapley values have a closed form.
//!
//! Each test asserts the true channel carries the effect (share near 1, or the exact
//! split) *and* that channels the wiring rules out carry (almost) none: an explanation
//! that clamps nothing (every share 0), clamps the wrong column (the share lands on
//! another channel) or pairs the wrong cells fails. Shapley rows must also add up to the
//! total effect, and sampled values stay within their standard errors of the exact ones.

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

/// The rows of (`target`, `group`) of the coarse channels (not `ligand:NAME from TYPE`),
/// by decreasing |effect|; every coarse channel is there.
fn ranked<'a>(rows: &'a [Row], target: &str, group: &str, channels: usize) -> Vec<&'a Row> {
    let mut r: Vec<&Row> =
        rows.iter().filter(|r| r.target == target && r.group == group && !r.channel.contains(" from ")).collect();
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

/// The rows of one method, in table order.
fn of_method(rows: &[Row], method: &str) -> Vec<Row> {
    rows.iter().filter(|r| r.method == method).cloned().collect()
}

/// A `--method gradients` table: its own rows first (one per channel and a `residual`
/// per target and group, no standard errors), then the ablation's of the same channels;
/// in (`target`, `group`) the true channel carries a share within `tol` of 1, every other
/// channel and the residual within `tol` of 0, and the ablation agrees.
fn assert_gradients_carried_by(rows: &[Row], target: &str, group: &str, channel: &str, channels: usize, tol: f64) {
    let first_ablation = rows.iter().position(|r| r.method == "ablation").expect("the ablation's rows");
    assert!(rows[..first_ablation].iter().all(|r| r.method == "gradients" && r.standard_error.is_empty()));
    assert!(rows[first_ablation..].iter().all(|r| r.method == "ablation"));
    let grad = of_method(rows, "gradients");
    let r = ranked(&grad, target, group, channels + 1);
    assert!(r[0].cells > 0 && r[0].total.abs() > 1e-3, "{target} in {group}: effect {}", r[0].total);
    assert_eq!(r[0].channel, channel, "{target} in {group}: top channel by gradients: {r:#?}");
    assert!((r[0].share - 1.0).abs() <= tol, "{target} in {group}: `{channel}` carries {} by gradients", r[0].share);
    for other in &r[1..] {
        assert!(other.share.abs() <= tol, "{target} in {group}: `{}` carries {}: {r:#?}", other.channel, other.share);
    }
    assert_eq!(r.iter().filter(|x| x.channel == "residual").count(), 1);
    assert_carried_by(&of_method(rows, "ablation"), target, group, channel, channels, tol);
}

/// `explant explain SCENE --out DIR --teacher` for `text`, which must succeed: the run
/// directory and what the command printed.
fn explain_scene(dir: &TempDir, text: &str, name: &str) -> (std::path::PathBuf, String) {
    explain_scene_with(dir, text, name, &[])
}

/// As [`explain_scene`], with `extra` arguments (`--method shapley`, ...).
fn explain_scene_with(dir: &TempDir, text: &str, name: &str, extra: &[&str]) -> (std::path::PathBuf, String) {
    let scene = dir.join(&format!("{name}.toml"));
    std::fs::write(&scene, text).expect("write scene");
    let out = dir.join(name);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "explain".as_ref(),
        scene.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--teacher".as_ref(),
        "--quiet".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let o = explant(args);
    assert_success(&o, &format!("explant explain {} {}", scene.display(), extra.join(" ")));
    (out, stdout(&o))
}

/// Shapley rows: every (target, group) with a finite total has one row per channel and a
/// `direct` row, all `shapley`, whose effects add up to the total effect (efficiency) and
/// whose standard errors are finite and non-negative; returns how many were checked.
fn assert_shapley_adds_up(rows: &[Row], channels: usize) -> usize {
    let mut checked = 0;
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        assert_eq!(r.method, "shapley", "{r:?}");
        if seen.contains(&(&r.target, &r.group)) {
            continue;
        }
        seen.push((&r.target, &r.group));
        let mine: Vec<&Row> = rows.iter().filter(|x| x.target == r.target && x.group == r.group).collect();
        assert_eq!(mine.len(), channels + 1, "{} in {}: channels and `direct`", r.target, r.group);
        assert_eq!(mine.iter().filter(|x| x.channel == "direct").count(), 1);
        if !r.total.is_finite() || r.total == 0.0 {
            continue;
        }
        let sum: f64 = mine.iter().map(|x| x.effect).sum();
        let scale: f64 = mine.iter().map(|x| x.effect.abs()).sum::<f64>() + r.total.abs();
        assert!(
            (sum - r.total).abs() <= 1e-9 * (1.0 + scale),
            "{} in {}: effects add up to {sum}, total {}: {mine:#?}",
            r.target,
            r.group,
            r.total
        );
        for x in &mine {
            let se: f64 = x.standard_error.parse().unwrap_or_else(|_| panic!("standard error of {x:?}"));
            assert!(se.is_finite() && se >= 0.0, "{x:?}");
        }
        checked += 1;
    }
    checked
}

/// The row of (`target`, `group`, `channel`), which must exist.
fn row<'a>(rows: &'a [Row], target: &str, group: &str, channel: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.target == target && r.group == group && r.channel == channel)
        .unwrap_or_else(|| panic!("no row for {target} in {group} through `{channel}`"))
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

    // Integrated gradients of the teacher, carried through each cell's state: AXIN2 and
    // LGR5 (which WNT3A reaches through AXIN2, inside the cell) through the ligand, and
    // the knocked-out gene's own fall through no channel (the residual).
    let gradients = |extra: &[&str]| -> String {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["explain".as_ref(), out.as_os_str(), "--force".as_ref(), "--quiet".as_ref()];
        args.extend(["--method", "gradients"].iter().chain(extra).map(std::ffi::OsStr::new));
        let o = explant(args);
        assert_success(&o, &format!("explant explain RUN_DIR --method gradients {}", extra.join(" ")));
        stdout(&o)
    };
    let printed = gradients(&[]);
    assert!(printed.contains("(method: gradients, 16 point(s) per integral, beside ablation)"), "{printed}");
    let all_threads = read(&out.join("explain/attribution.csv"));
    gradients(&["--threads", "1"]);
    assert_eq!(read(&out.join("explain/attribution.csv")), all_threads, "gradients depend on the thread count");
    let agree = printed.lines().find(|l| l.starts_with("gradients vs ablation")).expect("the comparison line");
    assert!(agree.contains("the same top channel in 14 of 14"), "{agree}");
    let rows = attribution(&out);
    for target in ["AXIN2", "LGR5"] {
        for group in ["type:responder", "band:0-25um", "band:25-50um"] {
            assert_gradients_carried_by(&rows, target, group, "ligand:WNT3A", 4, 0.02);
        }
    }
    let grad = of_method(&rows, "gradients");
    let ko = ranked(&grad, "WNT3A", "perturbed", 5);
    assert_eq!(ko[0].channel, "residual", "{ko:#?}");
    assert!(ko[0].total < -0.5 && (ko[0].share - 1.0).abs() < 1e-3, "{ko:#?}");
    let line = printed.lines().find(|l| l.starts_with("WNT3A") && l.contains("perturbed")).expect("WNT3A line");
    assert!(line.contains("residual (within the cell)"), "{line}");
    // One node of the rule instead of 16: the teacher's sigmoid bends over the path from
    // the control's signal to the perturbed one, so a single midpoint misses part of the
    // integral and the residual takes it (0.977 of the effect through the ligand in
    // band 0–25 um, against 0.9999 with 16 nodes). More nodes must come closer to
    // completeness; a rule that ignored its nodes would not move at all.
    let coarse = gradients(&["--samples", "1"]);
    assert!(coarse.contains("1 point(s) per integral"), "{coarse}");
    let one = row(&of_method(&attribution(&out), "gradients"), "AXIN2", "band:0-25um", "ligand:WNT3A").share;
    let sixteen = row(&grad, "AXIN2", "band:0-25um", "ligand:WNT3A").share;
    assert!((one - 1.0).abs() > 5.0 * (sixteen - 1.0).abs() && (one - 1.0).abs() < 0.05, "1 node {one}, 16 {sixteen}");

    // The shipped network (trained on this scene's teacher), differentiated by autograd:
    // it explains AXIN2 by the same channel, within its accuracy.
    let model = repo().join("models/default.pt");
    let printed = gradients(&["--model", model.to_str().expect("utf-8 path")]);
    let rows = of_method(&attribution(&out), "gradients");
    for group in ["type:responder", "band:0-25um"] {
        let r = ranked(&rows, "AXIN2", group, 5);
        assert_eq!(r[0].channel, "ligand:WNT3A", "learned, AXIN2 in {group}: {r:#?}\n{printed}");
        assert!((r[0].share - 1.0).abs() <= 0.2, "learned, AXIN2 in {group}: {r:#?}");
    }

    // Shapley over the same 4 channels (exact: 16 coalitions). The ligand carries the
    // whole responder effect, nothing travels directly in responders, the other channels
    // are dummies; the knocked-out gene moves through `direct` alone.
    let o = explant([
        "explain".as_ref(),
        out.as_os_str(),
        "--force".as_ref(),
        "--quiet".as_ref(),
        "--method".as_ref(),
        "shapley".as_ref(),
    ]);
    assert_success(&o, "explant explain RUN_DIR --method shapley");
    let printed = stdout(&o);
    assert!(printed.contains("17 runs") && printed.contains("(method: shapley, exact)"), "{printed}");
    let rows = attribution(&out);
    assert!(assert_shapley_adds_up(&rows, 4) > 0);
    for target in ["AXIN2", "LGR5"] {
        for group in ["type:responder", "band:0-25um", "band:25-50um"] {
            let r = ranked(&rows, target, group, 5);
            assert!(r[0].total.abs() > 1e-3, "{target} in {group}: {r:#?}");
            assert_eq!(r[0].channel, "ligand:WNT3A", "{target} in {group}: {r:#?}");
            assert!((r[0].share - 1.0).abs() <= 0.02, "{target} in {group}: {r:#?}");
            assert!(r[1..].iter().all(|x| x.share.abs() <= 0.02), "{target} in {group}: {r:#?}");
            assert!(r.iter().all(|x| x.standard_error == "0"), "exact values have no standard error: {r:#?}");
        }
    }
    let ko = ranked(&rows, "WNT3A", "perturbed", 5);
    assert_eq!(ko[0].channel, "direct", "{ko:#?}");
    assert!(ko[0].total < -0.5 && ko[0].effect == ko[0].total && ko[1..].iter().all(|r| r.effect == 0.0), "{ko:#?}");
    let line = printed.lines().find(|l| l.starts_with("AXIN2") && l.contains("band:0-25um")).unwrap_or_else(|| {
        panic!("no AXIN2 band:0-25um line in the printed table:\n{printed}");
    });
    assert!(line.contains("ligand:WNT3A"), "{line}");
    assert!(printed.lines().any(|l| l.starts_with("WNT3A") && l.contains("direct (within the cell)")), "{printed}");
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
    let o = explant([
        "explain".as_ref(),
        run.as_os_str(),
        "--quiet".as_ref(),
        "--force".as_ref(),
        "--method".as_ref(),
        "gradients".as_ref(),
    ]);
    assert_success(&o, "explant explain RUN_DIR --method gradients");
    let rows = attribution(&run);
    for group in ["perturbed", "band:0-25um", "type:epithelium"] {
        assert_gradients_carried_by(&rows, "HES1", group, "contact:DLL1", 2, 0.02);
    }
    // A second explanation into the same run directory is refused without --force.
    let again = explant(["explain".as_ref(), run.as_os_str()]);
    let err = assert_clean_failure(&again, "explain twice");
    assert!(err.contains("attribution.csv") && err.contains("--force"), "{err}");
}

/// Uniform boluses of ligands A (0.2) and B (0.1) from t = 0 on a static sheet of 100
/// cells; the teacher's target T integrates σ(s_A + s_B) (see the test of that name).
const TWO_LIGANDS: &str = r#"
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
    let text = TWO_LIGANDS;
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
fn gradients_split_two_ligands_on_one_target_in_proportion_to_their_signals() {
    // TWO_LIGANDS by integrated gradients. T's rate α σ(s_A + s_B) depends on the two
    // ligands through their sum only, so along the straight path from the control's
    // signals (0, 0) to (0.2, 0.1) both derivatives are α σ'(z) and the integrals split
    // the rate change 0.2 : 0.1 at every tick, exactly, whatever the rule's nodes: shares
    // 2/3 and 1/3 (T has no degradation and feeds nothing back, so the carried parts
    // just add up). The rule's error enters the residual only: 16 midpoint nodes err by
    // about 0.3³ |σ‴| / (24 · 16²), 1e-7 of the effect. Ablation's shares on the same
    // run, 0.66446 and 0.33058, are 0.0022 off 2/3 and 1/3; a swapped column would give
    // 1/3 and 2/3.
    let dir = TempDir::new("explain", "gradients_split_two_ligands_on_one_target_in_proportion_to_their_signals");
    let (out, printed) = explain_scene_with(&dir, TWO_LIGANDS, "two", &["--method", "gradients"]);
    assert!(printed.contains("gradients vs ablation: the same top channel in"), "{printed}");
    let rows = attribution(&out);
    let grad = of_method(&rows, "gradients");
    let r = ranked(&grad, "T", "type:cell", 4);
    let get = |c: &str| r.iter().find(|x| x.channel == c).unwrap_or_else(|| panic!("no `{c}` row"));
    let (a, b, n, res) = (get("ligand:A"), get("ligand:B"), get("neighbours:cell"), get("residual"));
    let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
    assert!((a.total - (sigma(0.3) - sigma(0.0))).abs() < 1e-5, "total effect {}", a.total);
    assert!((a.share - 2.0 / 3.0).abs() < 1e-4, "share of A {}", a.share);
    assert!((b.share - 1.0 / 3.0).abs() < 1e-4, "share of B {}", b.share);
    assert!((a.effect / b.effect - 2.0).abs() < 1e-4, "A : B = {}", a.effect / b.effect);
    assert!(res.share.abs() < 1e-4, "residual {}", res.share);
    assert_eq!(n.effect, 0.0, "the neighbour counts carry nothing");
    let abl = of_method(&rows, "ablation");
    let by_a = sigma(0.3) - sigma(0.1);
    let ablated = row(&abl, "T", "type:cell", "ligand:A");
    assert!((ablated.share - by_a / ablated.total).abs() < 1e-4 && (ablated.share - a.share).abs() > 1e-3);
}

#[test]
fn shapley_splits_two_ligands_on_one_target_as_the_two_player_formula_says() {
    // TWO_LIGANDS by Shapley values (3 channels: exact, 8 coalitions). With only the
    // ligands in S free the target gains v(S) = σ(s_S) − σ(0) (α t = 1; the neighbour
    // counts are the control's in every run), so v(∅) = 0 and
    //   φ_A = ½ [(σ(0.2) − σ(0)) + (σ(0.3) − σ(0.1))],
    //   φ_B = ½ [(σ(0.1) − σ(0)) + (σ(0.3) − σ(0.2))],
    // shares 0.66695 and 0.33305, which add up to 1 (ablation's 0.664 and 0.331 do not).
    // Tolerance 1e-4 as for ablation (float32 Euler errs by ~1e-6 on effects of ~0.05).
    // Shapley splits σ's cubic term evenly, so the shares sit within 0.001 of the
    // additive 2 : 1; ablation's shares (0.0022 off) would fail that, a swapped column
    // would give 1/3 and 2/3.
    let dir = TempDir::new("explain", "shapley_splits_two_ligands_on_one_target_as_the_two_player_formula_says");
    let (out, printed) = explain_scene_with(&dir, TWO_LIGANDS, "two", &["--method", "shapley"]);
    assert!(printed.contains("9 runs") && printed.contains("exact"), "{printed}");
    let rows = attribution(&out);
    assert!(assert_shapley_adds_up(&rows, 3) > 0);
    let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
    let total = sigma(0.3) - sigma(0.0);
    let phi_a = 0.5 * ((sigma(0.2) - sigma(0.0)) + (sigma(0.3) - sigma(0.1)));
    let phi_b = 0.5 * ((sigma(0.1) - sigma(0.0)) + (sigma(0.3) - sigma(0.2)));
    assert!((phi_a + phi_b - total).abs() < 1e-15);
    let r = ranked(&rows, "T", "type:cell", 4);
    let get = |c: &str| r.iter().find(|x| x.channel == c).unwrap_or_else(|| panic!("no `{c}` row"));
    let (a, b, n, d) = (get("ligand:A"), get("ligand:B"), get("neighbours:cell"), get("direct"));
    assert_eq!(a.cells, 100);
    assert!((a.total - total).abs() < 1e-5, "total effect {} vs σ(0.3) − σ(0) = {total}", a.total);
    assert!((a.share - phi_a / total).abs() < 1e-4, "share of A {} vs {}", a.share, phi_a / total);
    assert!((b.share - phi_b / total).abs() < 1e-4, "share of B {} vs {}", b.share, phi_b / total);
    assert!((a.effect / b.effect - phi_a / phi_b).abs() < 1e-3, "A : B = {} vs {}", a.effect / b.effect, phi_a / phi_b);
    assert!((a.share - 2.0 / 3.0).abs() < 1e-3 && (b.share - 1.0 / 3.0).abs() < 1e-3, "{} {}", a.share, b.share);
    assert_eq!(n.effect, 0.0, "the neighbour counts carry nothing");
    assert_eq!(d.effect, 0.0, "with every channel held at the control nothing moves");
    assert!((a.share + b.share + n.share + d.share - 1.0).abs() < 1e-9);
    assert!(r.iter().all(|x| x.standard_error == "0"), "exact: {r:#?}");
}

/// Four ligands on one target with boluses 0.2, 0.1, 0.05 and 0.15 (TWO_LIGANDS widened):
/// 5 channels with the neighbour counts, so fewer than 5! = 120 samples sample.
fn four_ligands() -> (String, [f64; 4]) {
    let mut text =
        TWO_LIGANDS.replace(r#"genes = ["S", "RA", "RB", "T"]"#, r#"genes = ["S", "RA", "RB", "RC", "RD", "T"]"#);
    text = text.replace(
        "baseline = { RA = 1.0, RB = 1.0, T = 1.0 }",
        "baseline = { RA = 1.0, RB = 1.0, RC = 1.0, RD = 1.0, T = 1.0 }",
    );
    text = text.replace(
        "[[cell_types]]",
        "[[ligands]]\nname = \"C\"\ndiffusion = 100.0\ndecay = 0.0\nsecreted_by = \"S\"\nreceptor = \"RC\"\n\
         [[ligands]]\nname = \"D\"\ndiffusion = 100.0\ndecay = 0.0\nsecreted_by = \"S\"\nreceptor = \"RD\"\n\
         [[cell_types]]",
    );
    text = text.replace(
        "  { source = \"ligand:B\", target = \"T\", weight = 1.0 },\n",
        "  { source = \"ligand:B\", target = \"T\", weight = 1.0 },\n  { source = \"ligand:C\", target = \"T\", weight = 1.0 },\n  \
         { source = \"ligand:D\", target = \"T\", weight = 1.0 },\n",
    );
    text.push_str(
        "[[perturbations]]\nkind = \"bolus\"\nligand = \"C\"\nvalue = 0.05\nstart = 0.0\n\
         [[perturbations]]\nkind = \"bolus\"\nligand = \"D\"\nvalue = 0.15\nstart = 0.0\n",
    );
    (text, [0.2, 0.1, 0.05, 0.15])
}

#[test]
fn sampled_shapley_shares_add_up_and_stay_within_their_standard_errors_of_the_exact_split() {
    // FOUR_LIGANDS: v(S) = σ(Σ_{l ∈ S} s_l) − σ(0), so the exact Shapley values follow by
    // enumerating the 16 coalitions of the ligands (the neighbour counts are a dummy).
    // `--samples 3` samples 3 orders: every (target, group) still adds up to its total,
    // the dummy gets 0 ± 0, and each ligand's sampled value lies within 4 standard errors
    // (plus float32's 1e-5) of the exact one. `--samples 120` (= 5!) is exact: 32
    // coalitions, every share within 1e-4 of the closed form.
    let dir = TempDir::new(
        "explain",
        "sampled_shapley_shares_add_up_and_stay_within_their_standard_errors_of_the_exact_split",
    );
    let (text, s) = four_ligands();
    let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
    let v = |mask: usize| sigma((0..4).filter(|l| mask & (1 << l) != 0).map(|l| s[l]).sum()) - sigma(0.0);
    let exact: Vec<f64> = (0..4)
        .map(|l| {
            let fact = |k: usize| (1..=k).product::<usize>() as f64;
            (0..16usize)
                .filter(|m| m & (1 << l) == 0)
                .map(|m| {
                    let k = m.count_ones() as usize;
                    fact(k) * fact(3 - k) / fact(4) * (v(m | (1 << l)) - v(m))
                })
                .sum()
        })
        .collect();
    let total = v(15);
    assert!((exact.iter().sum::<f64>() - total).abs() < 1e-15);
    let names = ["ligand:A", "ligand:B", "ligand:C", "ligand:D"];

    let (out, printed) = explain_scene_with(&dir, &text, "four", &["--method", "shapley", "--samples", "3"]);
    assert!(printed.contains("3 sampled permutations"), "{printed}");
    let rows = attribution(&out);
    assert!(assert_shapley_adds_up(&rows, 5) > 0);
    let r = ranked(&rows, "T", "type:cell", 6);
    assert!((r[0].total - total).abs() < 1e-5, "total {} vs {total}", r[0].total);
    let get = |c: &str| *r.iter().find(|x| x.channel == c).unwrap_or_else(|| panic!("no `{c}` row"));
    let dummy = get("neighbours:cell");
    assert!(dummy.effect == 0.0 && dummy.standard_error == "0", "{dummy:?}");
    for (name, want) in names.iter().zip(&exact) {
        let x = get(name);
        let se = x.standard_error.parse::<f64>().expect("standard error") * x.total.abs();
        assert!((x.effect - want).abs() <= 4.0 * se + 1e-5, "{name}: {} ± {se} vs exact {want}", x.effect);
    }

    // Enough samples for every order: exact.
    let o = explant([
        "explain".as_ref(),
        out.as_os_str(),
        "--force".as_ref(),
        "--quiet".as_ref(),
        "--method".as_ref(),
        "shapley".as_ref(),
        "--samples".as_ref(),
        "120".as_ref(),
    ]);
    assert_success(&o, "explant explain RUN_DIR --method shapley --samples 120");
    assert!(stdout(&o).contains("33 runs") && stdout(&o).contains("exact"), "{}", stdout(&o));
    let rows = attribution(&out);
    assert!(assert_shapley_adds_up(&rows, 5) > 0);
    let r = ranked(&rows, "T", "type:cell", 6);
    let get = |c: &str| *r.iter().find(|x| x.channel == c).unwrap_or_else(|| panic!("no `{c}` row"));
    for (name, want) in names.iter().zip(&exact) {
        let x = get(name);
        assert!((x.share - want / total).abs() < 1e-4 && x.standard_error == "0", "{name}: {x:?} vs {}", want / total);
    }
    assert_eq!(get("direct").effect, 0.0);
}

#[test]
fn bad_samples_are_refused_naming_the_option() {
    let dir = TempDir::new("explain", "bad_samples_are_refused_naming_the_option");
    let scene = repo().join("scenes/lateral_inhibition.toml");
    let refused = |extra: &[&str], what: &str| -> String {
        let out = dir.join(what);
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["explain".as_ref(), scene.as_os_str(), "--out".as_ref(), out.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let err = assert_clean_failure(&explant(args), what);
        assert!(!out.exists(), "{what}: nothing is run for a refused option");
        err
    };
    let err = refused(&["--method", "gradients", "--samples", "0"], "zero-points");
    assert!(err.contains("--samples") && err.contains('0'), "{err}");
    let err = refused(&["--method", "shapley", "--samples", "0"], "zero-samples");
    assert!(err.contains("--samples") && err.contains('0'), "{err}");
    let err = refused(&["--samples", "4"], "samples-for-ablation");
    assert!(err.contains("`--samples 4`") && err.contains("--method shapley") && err.contains("--method gradients"));
    // A scene without `--out` is refused clearly.
    let o = explant(["explain".as_ref(), scene.as_os_str()]);
    assert!(assert_clean_failure(&o, "no --out").contains("--out DIR"));
}

#[test]
fn cxcl10_and_cd274_respond_to_the_ifngr1_knockout_through_ifng_from_t_cells() {
    // scenes/tumour_immune.toml, shrunk (a nest of radius 60 um in 600 cells, 3 h).
    // Wiring: IFN-γ (secreted only by T cells: tumour and stroma hold IFNG off with a bias
    // of −40) → IFNGR1-gated sensing → STAT1 → CXCL10 and CD274 in tumour cells. The
    // knockout makes tumour cells deaf to IFN-γ, so the whole effect on CXCL10 and CD274
    // in them travels through `ligand:IFNG`, and all of that part of the field is the T
    // cells': `ligand:IFNG from tcell` carries it too. CXCL10 and the neighbour counts
    // do not reach STAT1 (teacher edges), so they carry (almost) none.
    let dir = TempDir::new("explain", "cxcl10_and_cd274_respond_to_the_ifngr1_knockout_through_ifng_from_t_cells");
    let mut text = shipped("tumour_immune.toml");
    for (from, to) in [
        ("duration = 720.0", "duration = 180.0"),
        ("size = [700.0, 700.0]", "size = [360.0, 360.0]"),
        ("cells = 3000", "cells = 600"),
        ("radius = 300.0\n", "radius = 160.0\n"),
        ("radius = 110.0", "radius = 60.0"),
        ("radius = 300.0 }", "radius = 160.0 }"),
    ] {
        text = replace_once(&text, from, to);
    }
    text = text.replace("[350.0, 350.0]", "[180.0, 180.0]");
    let (out, _) = explain_scene(&dir, &text, "tumour");
    let rows = attribution(&out);
    let names: Vec<&str> = {
        let mut n: Vec<&str> = rows.iter().map(|r| r.channel.as_str()).collect();
        n.dedup();
        n.sort_unstable();
        n.dedup();
        n
    };
    // IFNG: only T cells can secrete it; CXCL10: every type (no bias holds it off).
    assert!(names.contains(&"ligand:IFNG from tcell"), "{names:?}");
    assert!(!names.contains(&"ligand:IFNG from tumour") && !names.contains(&"ligand:IFNG from stroma"), "{names:?}");
    assert!(names.contains(&"ligand:CXCL10 from tumour"), "{names:?}");
    // Coarse channels: ligand:IFNG, ligand:CXCL10, neighbours:{tumour,tcell,stroma}.
    for target in ["CXCL10", "CD274"] {
        for group in ["perturbed", "type:tumour"] {
            let r = ranked(&rows, target, group, 5);
            assert!(r[0].cells > 0 && r[0].total < -1e-3, "{target} in {group}: the knockout lowers it: {r:#?}");
            assert_eq!(r[0].channel, "ligand:IFNG", "{target} in {group}: {r:#?}");
            assert!((r[0].share - 1.0).abs() <= 0.1, "{target} in {group}: `ligand:IFNG` carries {}", r[0].share);
            assert!(r[1..].iter().all(|x| x.share.abs() <= 0.1), "{target} in {group}: {r:#?}");
            let t = row(&rows, target, group, "ligand:IFNG from tcell");
            assert!(
                (t.share - r[0].share).abs() <= 0.02,
                "{target} in {group}: `ligand:IFNG from tcell` carries {} of {}",
                t.share,
                r[0].share
            );
        }
    }
    // Integrated gradients name the same channel: the knockout's fall of IFNGR1 in the
    // tumour cells lowers what they sense of IFN-γ, and CXCL10 and CD274 answer through
    // STAT1 inside the cell, which the carried parts follow.
    let o = explant(
        ["explain", "--force", "--quiet", "--method", "gradients"]
            .map(std::ffi::OsStr::new)
            .into_iter()
            .chain([out.as_os_str()]),
    );
    assert_success(&o, "explant explain RUN_DIR --method gradients");
    let rows = attribution(&out);
    for target in ["CXCL10", "CD274"] {
        for group in ["perturbed", "type:tumour"] {
            assert_gradients_carried_by(&rows, target, group, "ligand:IFNG", 5, 0.1);
        }
    }
}

/// Two types, `a` (left) and `b` (right), export ligand L through gene S (constant: no
/// teacher rate for S); type `c` (between them) has no S and secretes nothing. A knockdown
/// of S by half in every cell lowers both sources. T integrates α σ(w s_L), no degradation.
fn two_sources(weight: f64) -> String {
    format!(
        r#"
version = 1
name = "two-sources"
seed = 3
genes = ["S", "R", "T"]
[time]
dt = 0.5
duration = 30.0
record_every = 10.0
[grid]
size = [240.0, 240.0]
dx = 10.0
[[ligands]]
name = "L"
diffusion = 200.0
decay = 0.02
secreted_by = "S"
export_rate = 5.0
receptor = "R"
[[cell_types]]
name = "a"
baseline = {{ S = 1.0, R = 1.0 }}
[[cell_types]]
name = "b"
baseline = {{ S = 2.0, R = 1.0 }}
[[cell_types]]
name = "c"
baseline = {{ R = 1.0 }}
[tissue]
centre = [120.0, 120.0]
radius = 100.0
cells = 200
cell_type = "c"
regions = [
  {{ cell_type = "a", shape = {{ kind = "circle", centre = [70.0, 120.0], radius = 40.0 }} }},
  {{ cell_type = "b", shape = {{ kind = "circle", centre = [170.0, 120.0], radius = 40.0 }} }},
]
[mechanics]
mobility = 0.0
[model]
kind = "teacher"
[teacher]
degradation = 0.0
default_max_rate = 0.0
max_rate = {{ T = 0.1 }}
bias = 0.0
edges = [ {{ source = "ligand:L", target = "T", weight = {weight} }} ]
[[perturbations]]
kind = "knockdown"
gene = "S"
fraction = 0.5
"#
    )
}

#[test]
fn the_parts_of_a_ligand_from_each_source_type_add_up_to_the_ligand_and_a_silent_type_carries_nothing() {
    // Diffusion–decay and export are linear in the sources, so the field is the sum of
    // each type's part, and cutting each part in turn takes away exactly the ligand's
    // effect when T responds linearly to s_L. T's rate α σ(w s) is linear up to the cubic
    // term of σ at 0 (σ(x) = 1/2 + x/4 − x³/48 + …): with |w s| ≤ x_max the parts add up to
    // the whole within a relative x_max²/12 (here w = 1, s_L ≈ 0.03: ~1e-4), plus the f32
    // rounding of T (~1.5 at the end, so ~2e-7 per cell against effects ~1e-2: ~2e-5);
    // 1e-3 holds both with room. Type `c` secretes nothing:
    // its part is 0 in both runs and its channel carries exactly 0 (bit for bit).
    let dir = TempDir::new(
        "explain",
        "the_parts_of_a_ligand_from_each_source_type_add_up_to_the_ligand_and_a_silent_type_carries_nothing",
    );
    let (out, _) = explain_scene(&dir, &two_sources(1.0), "two");
    let rows = attribution(&out);
    let mut checked = 0;
    for group in ["type:a", "type:b", "type:c", "perturbed"] {
        let whole = row(&rows, "T", group, "ligand:L");
        let a = row(&rows, "T", group, "ligand:L from a");
        let b = row(&rows, "T", group, "ligand:L from b");
        let c = row(&rows, "T", group, "ligand:L from c");
        assert!(whole.cells > 0 && whole.total < -1e-6, "{group}: the knockdown lowers T: {whole:?}");
        assert!((whole.share - 1.0).abs() < 1e-3, "{group}: the ligand is the only path: {whole:?}");
        assert!(a.effect < 0.0 && b.effect < 0.0, "{group}: both sources halve: {a:?} {b:?}");
        let sum = a.effect + b.effect;
        assert!(
            (sum - whole.effect).abs() <= 1e-3 * whole.effect.abs(),
            "{group}: the parts add up to {sum}, the ligand carries {}",
            whole.effect
        );
        assert_eq!(c.effect, 0.0, "{group}: type c secretes nothing: {c:?}");
        checked += 1;
    }
    assert_eq!(checked, 4);
    // Type b exports twice what a does (S = 2 against 1): its part is larger in b's cells.
    let (a, b) = (row(&rows, "T", "type:b", "ligand:L from a"), row(&rows, "T", "type:b", "ligand:L from b"));
    assert!(b.effect.abs() > a.effect.abs(), "{a:?} {b:?}");
}

#[test]
fn shapley_plays_the_coarse_channels_only() {
    // `from TYPE` parts are not Shapley players (a ligand and its parts would count the
    // same path twice): the rows are the coarse channels and `direct`, adding up.
    let dir = TempDir::new("explain", "shapley_plays_the_coarse_channels_only");
    let (out, _) = explain_scene_with(&dir, &two_sources(0.02), "two", &["--method", "shapley"]);
    let rows = attribution(&out);
    assert!(rows.iter().all(|r| !r.channel.contains(" from ")), "{rows:#?}");
    // Channels: ligand:L, neighbours:a, neighbours:b, neighbours:c.
    assert!(assert_shapley_adds_up(&rows, 4) > 0);
}

#[test]
fn explain_draws_its_pictures_and_report_shows_the_top_channel() {
    // The WNT3A knockout of the first test, ablation: the pictures beside the table, then
    // `explant report` with an Explanation section naming ligand:WNT3A for AXIN2.
    let dir = TempDir::new("explain", "explain_draws_its_pictures_and_report_shows_the_top_channel");
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
    let (out, _) = explain_scene(&dir, &text, "wnt");
    let size = |name: &str| -> (u32, u32) {
        let png = std::fs::read(out.join("explain").join(name)).unwrap_or_else(|e| panic!("explain/{name}: {e}"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} signature");
        assert_eq!(&png[12..16], b"IHDR", "{name}");
        let wh =
            (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
        assert!(wh.0 >= 100 && wh.1 >= 100 && png.len() > 1_000, "{name}: {wh:?}, {} bytes", png.len());
        wh
    };
    // 4 channels × the scene's genes, 44 px cells: taller than 4 rows, wider than the genes.
    let (_, h) = size("heatmap.png");
    assert!(h > 4 * 44, "heatmap.png height {h}");
    let groups: Vec<String> = attribution(&out).into_iter().map(|r| r.group).collect();
    for g in ["perturbed", "band:0-25um", "type:responder"] {
        assert!(groups.iter().any(|x| x == g), "group {g}");
        size(&format!("bars_{}.png", g.replace(':', "_")));
    }
    let heatmap = std::fs::read(out.join("explain/heatmap.png")).expect("heatmap.png");

    let o = explant(["report".as_ref(), out.as_os_str()]);
    assert_success(&o, "explant report after explain");
    let page = read(&out.join("report.html"));
    assert!(page.contains("<h2>Explanation</h2>"), "no Explanation section");
    let axin2 = page.lines().find(|l| l.starts_with("<tr><td>AXIN2</td>")).unwrap_or_else(|| panic!("no AXIN2 row"));
    let cells: Vec<&str> = axin2.split("<td").collect();
    assert!(cells[4].contains(">ligand:WNT3A</td>"), "AXIN2's top channel: {axin2}");
    assert!(page.contains("explain/heatmap.png") && page.contains("explain/bars_perturbed.png"), "captions");
    assert!(page.matches("data:image/png;base64,").count() >= 3, "the pictures are embedded");
    // The report draws the pictures again from the table: the same bytes.
    assert_eq!(
        std::fs::read(out.join("explain/heatmap.png")).unwrap(),
        heatmap,
        "heatmap.png differs when drawn again"
    );
}
