//! Perturbations: every kind, every target, and the paired-control effects.

use std::path::Path;

use explant_core::effects::{effects, response_vs_distance};
use explant_core::{Batch, PerturbationLog, Simulation, Teacher};
use explant_field::CpuDiffusion;
use explant_scene::{LoadedScene, Scene};

/// A 2D disk of 400 cells (types a and b), genes G (secretes L) and R (receptor of L),
/// and the perturbations in `extra`.
fn scene(extra: &str) -> Scene {
    let text = format!(
        r#"
version = 1
name = "perturb"
seed = 5
genes = ["G", "R", "H"]
[time]
dt = 0.5
duration = 30.0
record_every = 10.0
[grid]
size = [400.0, 400.0]
dx = 20.0
[[ligands]]
name = "L"
diffusion = 50.0
decay = 0.0
secreted_by = "G"
uptake_rate = 0.5
receptor = "R"
[contact]
genes = ["H"]
radius = 15.0
[[cell_types]]
name = "a"
baseline = {{ R = 1.0, H = 1.0 }}
[[cell_types]]
name = "b"
baseline = {{ R = 1.0, H = 2.0 }}
[tissue]
centre = [200.0, 200.0]
radius = 150.0
cells = 400
cell_type = "a"
regions = [ {{ cell_type = "b", shape = {{ kind = "box", min = [0.0, 0.0], max = [200.0, 400.0] }} }} ]
[mechanics]
repulsion = 0.0
adhesion = 0.0
[teacher]
degradation = 0.0
default_max_rate = 0.0
edges = [ {{ source = "contact:H", target = "G", weight = 1.0 }} ]
{extra}
"#
    );
    LoadedScene::from_str(&text, Path::new("perturb.toml")).unwrap_or_else(|e| panic!("{e}")).scene
}

fn start(s: &Scene) -> Simulation {
    Simulation::new(s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(s))).unwrap()
}

fn run(sim: &mut Simulation, ticks: u64) {
    for _ in 0..ticks {
        sim.step().unwrap();
    }
}

fn total(sim: &Simulation) -> f64 {
    sim.ligands().field.total(0)
}

#[test]
fn a_bolus_adds_its_amount_once_in_its_region() {
    // 2 units in a 100 µm box: 5 × 5 voxels of 20³ µm³.
    let s = scene(
        "[[perturbations]]\nkind = \"bolus\"\nligand = \"L\"\nvalue = 2.0\nstart = 5.0\n\
         region = { kind = \"box\", min = [100.0, 100.0], max = [200.0, 200.0] }",
    );
    let mut sim = start(&s);
    run(&mut sim, 10);
    assert_eq!(total(&sim), 0.0);
    run(&mut sim, 1);
    let expected = 2.0 * 25.0 * 8000.0;
    let log = sim.world.resource::<PerturbationLog>();
    assert_eq!(log.injected[0], expected);
    // Uptake (R = 1) removes some at once; nothing more is added later.
    let after = total(&sim) + 0.0;
    assert!(after <= expected && after > 0.9 * expected, "{after}");
    run(&mut sim, 20);
    assert!(total(&sim) < after);
    assert_eq!(sim.world.resource::<PerturbationLog>().injected[0], expected);
}

#[test]
fn a_source_adds_at_its_rate_only_while_active() {
    let mut s = scene(
        "[[perturbations]]\nkind = \"source\"\nligand = \"L\"\nrate = 0.1\nstart = 2.0\nstop = 7.0\n\
         region = { kind = \"circle\", centre = [200.0, 200.0], radius = 30.0 }",
    );
    s.ligands[0].uptake_rate = 0.0;
    let mut sim = start(&s);
    run(&mut sim, 40);
    // Active on ticks with 2 ≤ t < 7: 10 ticks of 0.05 per voxel; voxel centres within
    // 30 µm of (200, 200): the 4 × 4 block minus its corners = 12... count them here.
    let grid = sim.ligands().field.grid;
    let mut voxels = 0;
    for y in 0..grid.ny {
        for x in 0..grid.nx {
            let c = grid.centre(x, y, 0);
            voxels += usize::from(((c[0] - 200.0).powi(2) + (c[1] - 200.0).powi(2)).sqrt() <= 30.0);
        }
    }
    let expected = 10.0 * 0.05 * voxels as f64 * 8000.0;
    assert!((total(&sim) - expected).abs() < 1e-3 * expected, "{} vs {expected}", total(&sim));
}

#[test]
fn a_receptor_block_cuts_sensing_in_the_targeted_cells_only() {
    let mut s =
        scene("[[perturbations]]\nkind = \"receptor_block\"\nligand = \"L\"\nfraction = 0.75\ncell_type = \"b\"");
    s.ligands[0].initial = explant_scene::Initial::Uniform { value: 4.0 };
    s.ligands[0].uptake_rate = 0.0;
    let mut sim = start(&s);
    run(&mut sim, 1);
    let b = sim.world.resource::<Batch>();
    let (mut seen_a, mut seen_b) = (0, 0);
    for i in 0..b.cells {
        let sensed = b.sensed[i];
        if b.cell_type[i] == 1 {
            assert!((sensed - 1.0).abs() < 1e-4, "type b senses {sensed}, expected 4 × 0.25");
            seen_b += 1;
        } else {
            assert!((sensed - 4.0).abs() < 1e-4, "type a senses {sensed}");
            seen_a += 1;
        }
    }
    assert!(seen_a > 50 && seen_b > 50);
    let t = sim.cells();
    assert!((0..t.ids.len()).all(|i| t.perturbed[i] == (t.cell_types[i] == 1)));
}

#[test]
fn ablation_removes_the_targets_at_its_start_and_distances_follow_the_region() {
    let s = scene(
        "[[perturbations]]\nkind = \"ablation\"\nstart = 5.0\n\
         region = { kind = \"circle\", centre = [200.0, 200.0], radius = 40.0 }",
    );
    let mut sim = start(&s);
    let before = sim.cells();
    let inside =
        before.positions.iter().filter(|p| ((p[0] - 200.0).powi(2) + (p[1] - 200.0).powi(2)).sqrt() <= 40.0).count();
    assert!(inside > 20);
    assert!(sim.perturbation_distance(&before).iter().all(|d| d.is_nan()), "nothing has started yet");
    run(&mut sim, 11);
    let after = sim.cells();
    assert_eq!(after.ids.len(), before.ids.len() - inside);
    assert_eq!(sim.world.resource::<PerturbationLog>().ablated.len(), inside);
    let d = sim.perturbation_distance(&after);
    for (p, d) in after.positions.iter().zip(&d) {
        let r = ((p[0] - 200.0).powi(2) + (p[1] - 200.0).powi(2)).sqrt();
        assert!((d - (r - 40.0).max(0.0)).abs() < 1e-3, "{d} vs {r}");
    }
    run(&mut sim, 20);
    assert_eq!(sim.cells().ids.len(), after.ids.len(), "an ablation fires once");
}

#[test]
fn a_graft_adds_flagged_cells_of_its_type_in_its_region() {
    let s = scene(
        "[[perturbations]]\nkind = \"graft\"\ncells = 25\ncell_type = \"b\"\nstart = 1.0\n\
         region = { kind = \"circle\", centre = [300.0, 300.0], radius = 20.0 }",
    );
    let mut sim = start(&s);
    run(&mut sim, 3);
    let t = sim.cells();
    assert_eq!(t.ids.len(), 425);
    // The grafted cells have the ids of the graft's own namespace (perturbation 0, cells
    // 0 to 24), none a founder's.
    let new: Vec<usize> = (0..t.ids.len()).filter(|&i| t.ids[i] >= 400).collect();
    assert_eq!(new.len(), 25);
    let mut want: Vec<u64> = (0..25).map(|k| explant_core::lineage::graft_id(0, k)).collect();
    want.sort_unstable();
    assert_eq!(new.iter().map(|&i| t.ids[i]).collect::<Vec<_>>(), want);
    for &i in &new {
        assert_eq!(t.cell_types[i], 1);
        assert!(t.perturbed[i], "grafted cells are flagged");
        assert_eq!(&t.expression[i * 3..i * 3 + 3], &[0.0, 1.0, 2.0]);
        let p = t.positions[i];
        assert!(((p[0] - 300.0).powi(2) + (p[1] - 300.0).powi(2)).sqrt() <= 21.0, "{p:?}");
    }
    assert_eq!(t.perturbed.iter().filter(|&&p| p).count(), 25);
}

#[test]
fn ids_and_expression_predicates_compose_with_the_other_targets() {
    // Knock out H in cells 3, 5 and 7 only, and overexpress R where H > 1.5 (type b).
    let s = scene(
        "[[perturbations]]\nkind = \"knockout\"\ngene = \"H\"\nids = [7, 3, 5]\n\n\
         [[perturbations]]\nkind = \"overexpress\"\ngene = \"R\"\nvalue = 9.0\nwhen = { gene = \"H\", above = 1.5 }",
    );
    let mut sim = start(&s);
    run(&mut sim, 1);
    let t = sim.cells();
    for i in 0..t.ids.len() {
        let (h, r) = (t.expression[i * 3 + 2], t.expression[i * 3 + 1]);
        let listed = [3, 5, 7].contains(&t.ids[i]);
        assert_eq!(h == 0.0, listed, "cell {} H = {h}", t.ids[i]);
        assert_eq!(r == 9.0, t.cell_types[i] == 1 && !listed, "cell {} R = {r}", t.ids[i]);
    }
}

#[test]
fn paired_effects_single_out_the_perturbed_cells_and_fall_off_with_distance() {
    // Knock out H (the contact signal that drives G) in a disk: the knocked-out cells
    // lose H entirely; their neighbours sense less H and make less G; far cells are
    // untouched. The control is the same scene without the perturbation.
    let pert = "[[perturbations]]\nkind = \"knockout\"\ngene = \"H\"\n\
                region = { kind = \"circle\", centre = [250.0, 200.0], radius = 30.0 }";
    let mut s = scene(pert);
    s.teacher.default_max_rate = 0.2;
    s.teacher.degradation = 0.1;
    let mut control_scene = s.clone();
    control_scene.perturbations.clear();
    let (mut sim, mut ctrl) = (start(&s), start(&control_scene));
    run(&mut sim, 60);
    run(&mut ctrl, 60);
    let (a, b) = (sim.cells(), ctrl.cells());
    let d = sim.perturbation_distance(&a);
    let rows = effects(&a, &b, &d, &[0.0, 25.0, 50.0, 100.0], 3);
    let row = |group: &str, from: f32, gene: usize| {
        rows.iter().find(|r| r.group == group && r.from == from && r.gene == gene).unwrap().clone()
    };
    let knocked = row("perturbed", 0.0, 2);
    assert!(knocked.cells > 5);
    assert_eq!(knocked.perturbed_mean, 0.0);
    assert!((knocked.effect + knocked.control_mean).abs() < 1e-9);
    let near = row("band", 0.0, 0);
    let far = row("far", 100.0, 0);
    assert!(near.cells > 5 && far.cells > 50);
    assert!(near.effect < -1e-3, "neighbours of the knockout make less G: {}", near.effect);
    assert_eq!(far.effect, 0.0, "cells far beyond the contact radius are untouched");
    // The curve: largest response in the first bin, none beyond the contact range.
    let curve = response_vs_distance(&a, &b, &d, 20.0, 3);
    assert!(curve[0].magnitude[0] > 0.0);
    assert!(curve.iter().filter(|c| c.distance > 60.0).all(|c| c.magnitude[0] == 0.0));
}
