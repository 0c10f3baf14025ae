//! Lineage-true pairing through `explant run`: a scene with division, an ablation and a
//! graft runs beside its paired control; the same scene without perturbations is run on
//! its own, and the perturbed run's `layers['control']` and `effects.csv` must pair each
//! cell with the cell of that lineage in the control run and with nothing else.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use explant_io::{RunSnapshot, read_snapshot};

use crate::common::{TempDir, assert_success, explant, read};

/// 400 dividing cells (cycle 40 min, contact-inhibited above 6 neighbours, inheritance
/// noise), an ablation at 5 min on the left, a graft of 15 dividing cells at 20 min on
/// the right edge; no contact forces (cells move only at division) and an inert teacher,
/// so far from the perturbations the two runs must agree bit for bit (contact forces
/// would sum over neighbours in row order, which differs between the runs): the scene
/// with its perturbations, `tests/data/lineage_pairing.toml`.
const PERTURBED: &str = include_str!("data/lineage_pairing.toml");

/// The same scene without them: its paired control, run on its own.
fn control_alone() -> String {
    let cut = PERTURBED.find("\n# perturbations\n").expect("the marker line in lineage_pairing.toml");
    PERTURBED[..cut].to_owned()
}

/// Distance from the nearer perturbation region's edge, µm.
fn from_perturbations(p: [f32; 3]) -> f32 {
    let d = |cx: f32, r: f32| ((p[0] - cx).powi(2) + (p[1] - 300.0).powi(2)).sqrt() - r;
    d(200.0, 40.0).min(d(500.0, 25.0))
}

fn run(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let scene = dir.join(&format!("{name}.toml"));
    std::fs::write(&scene, text).unwrap();
    let out = dir.join(name);
    let o = explant([
        "run",
        &scene.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--diffusion",
        "cpu",
        "--teacher",
        "--no-figures",
        "--quiet",
    ]);
    assert_success(&o, &format!("explant run {name}"));
    out
}

fn snapshot(path: &Path) -> RunSnapshot {
    read_snapshot(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_control_layer_pairs_each_cell_with_its_lineage_and_grafts_with_nothing() {
    let dir = TempDir::new("pairing", "the_control_layer_pairs_each_cell_with_its_lineage_and_grafts_with_nothing");
    let perturbed = run(&dir, "perturbed", PERTURBED);
    let alone = run(&dir, "control", &control_alone());
    let (a, b) = (snapshot(&perturbed.join("tissue.h5ad")), snapshot(&alone.join("tissue.h5ad")));
    let g = a.genes.len();
    let layer = a.control.as_deref().expect("a perturbed run has layers['control']");

    // Ids are non-negative 63-bit integers, the founders 0..400.
    for name in a.obs_names.iter().chain(&b.obs_names) {
        let id: i64 = name.parse().unwrap_or_else(|_| panic!("obs name `{name}` is not a non-negative i64"));
        assert!(id >= 0, "{name}");
    }

    // The paired control is the scene run alone: `layers['control']` holds, for each
    // cell, the control run's expression of the cell with its name, and NaN exactly
    // where the control run has no such cell.
    let in_control: HashMap<&str, usize> = b.obs_names.iter().enumerate().map(|(j, n)| (n.as_str(), j)).collect();
    let mut unpaired = Vec::new();
    for (i, name) in a.obs_names.iter().enumerate() {
        let row = &layer[i * g..(i + 1) * g];
        match in_control.get(name.as_str()) {
            Some(&j) => assert_eq!(
                row.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                b.expression[j * g..(j + 1) * g].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "cell {name}"
            ),
            None => {
                assert!(row.iter().all(|x| x.is_nan()), "cell {name} has no partner but a control row {row:?}");
                unpaired.push(i);
            }
        }
    }

    // The grafted cells and their progeny (the cells the run flags as perturbed) have no
    // partner: effects.csv finds no perturbed cell present in both runs.
    let effects = read(&perturbed.join("effects.csv"));
    let perturbed_rows: Vec<Vec<&str>> =
        effects.lines().map(|l| l.split(',').collect::<Vec<_>>()).filter(|r| r[1] == "perturbed").collect();
    assert!(!perturbed_rows.is_empty(), "{effects}");
    for r in &perturbed_rows {
        assert_eq!(r[4], "0", "grafted cells were paired with control cells: {r:?}");
    }
    // Besides the grafts, lineages of one run only: the ablated founders and their
    // daughters in the control; more cells unpaired in the perturbed run than were
    // grafted (daughters of cells that crowd less next to the hole, and the grafts'
    // own daughters).
    let founders_gone = (0..400).filter(|id| !a.obs_names.contains(&id.to_string())).count();
    assert!(founders_gone > 10, "the ablation should have removed founders: {founders_gone}");
    assert!(unpaired.len() > 15, "{} unpaired cells", unpaired.len());
    assert!(unpaired.iter().all(|&i| a.obs_names[i].parse::<u64>().unwrap() >= 400), "an unpaired founder");

    // Far from both perturbations each lineage lived the same life: the same cells, with
    // the same expression and position, bit for bit, daughters included.
    let far = |t: &RunSnapshot| -> HashMap<String, usize> {
        (0..t.cells)
            .filter(|&i| from_perturbations(t.positions[i]) > 110.0)
            .map(|i| (t.obs_names[i].clone(), i))
            .collect()
    };
    let (fa, fb) = (far(&a), far(&b));
    let mut names: Vec<&String> = fa.keys().collect();
    names.sort_unstable();
    let mut names_b: Vec<&String> = fb.keys().collect();
    names_b.sort_unstable();
    assert_eq!(names, names_b, "the far cells differ");
    let daughters = names.iter().filter(|n| n.parse::<u64>().unwrap() >= 400).count();
    assert!(daughters > 30, "too few daughters far away: {daughters}");
    for (name, &i) in &fa {
        let j = fb[name];
        assert_eq!(a.positions[i].map(f32::to_bits), b.positions[j].map(f32::to_bits), "far cell {name}");
        let (x, y) = (&a.expression[i * g..(i + 1) * g], &b.expression[j * g..(j + 1) * g]);
        assert_eq!(
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
