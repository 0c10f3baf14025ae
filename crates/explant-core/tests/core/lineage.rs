//! Lineage-true ids: a run and its paired control give the same id to the same cell and
//! different ids to different cells, however differently they divide; a new id that a
//! living cell holds stops the run.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use explant_core::effects::{aligned_control, match_ids};
use explant_core::{CellTable, CoreError, Simulation, Teacher};
use explant_field::CpuDiffusion;
use explant_scene::{LoadedScene, Scene};

/// A 2D disk of 400 dividing cells (cycle 40 min, contact-inhibited above 6 neighbours,
/// inheritance noise so every daughter's expression is her own), an ablation at 5 min on
/// the left and a graft of 15 dividing cells at 20 min on the right, 150 min in all.
///
/// Mechanics are off (no repulsion or adhesion: cells move only when they divide) and
/// the teacher is inert, so a cell's life depends on its neighbours only through their
/// number. Far from the perturbations the perturbed run and its control then have to
/// agree bit for bit: with contact forces, the sum over a cell's neighbours follows the
/// row order, which differs between the runs, and the positions would agree only to
/// rounding.
fn scene() -> Scene {
    let text = include_str!("../../../../tests/data/lineage_pairing.toml");
    LoadedScene::from_str(text, Path::new("lineage.toml")).unwrap_or_else(|e| panic!("{e}")).scene
}

fn start(s: &Scene) -> Simulation {
    Simulation::new(s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(s))).unwrap()
}

/// Step `sim` through its scene, returning the cell table after every tick.
fn history(sim: &mut Simulation) -> Vec<CellTable> {
    (0..sim.total_ticks())
        .map(|_| {
            sim.step().unwrap();
            sim.cells()
        })
        .collect()
}

/// Distance from the nearer perturbation region's edge, µm.
fn from_perturbations(p: [f32; 3]) -> f32 {
    let d = |cx: f32, r: f32| ((p[0] - cx).powi(2) + (p[1] - 300.0).powi(2)).sqrt() - r;
    d(200.0, 40.0).min(d(500.0, 25.0))
}

/// One cell of a table, as a comparable record (floats as bits).
fn record(t: &CellTable, i: usize) -> (u64, u32, u32, [u32; 3], u32, bool, Vec<u32>) {
    (
        t.parents[i],
        t.generations[i],
        t.cell_types[i],
        t.positions[i].map(f32::to_bits),
        t.radii[i].to_bits(),
        t.perturbed[i],
        t.expression[i * 2..i * 2 + 2].iter().map(|x| x.to_bits()).collect(),
    )
}

#[test]
fn a_run_and_its_control_pair_the_same_cells_after_an_ablation_a_graft_and_divisions() {
    let s = scene();
    let mut control_scene = s.clone();
    control_scene.perturbations.clear();
    let (mut sim, mut ctrl) = (start(&s), start(&control_scene));
    let (runs, controls) = (history(&mut sim), history(&mut ctrl));
    let (a, b) = (runs.last().unwrap(), controls.last().unwrap());
    let matched = match_ids(a, b);

    // Every cell paired by id is the same cell: born of the same mother, of the same type.
    let mut paired = 0;
    for (i, m) in matched.iter().enumerate() {
        let Some(j) = *m else { continue };
        assert_eq!(a.parents[i], b.parents[j], "cell {} has another mother in the control", a.ids[i]);
        assert_eq!(a.cell_types[i], b.cell_types[j]);
        paired += 1;
    }
    assert!(paired > 600, "only {paired} cells paired");

    // Grafted cells and their progeny (flagged perturbed for life; nothing else flags
    // here) have no partner in the control, and the control's layer is NaN exactly for
    // the cells without a partner.
    let grafted: Vec<usize> = (0..a.ids.len()).filter(|&i| a.perturbed[i]).collect();
    assert!(grafted.len() > 15, "the grafted cells should have divided: {}", grafted.len());
    assert!(grafted.iter().all(|&i| matched[i].is_none()), "a grafted cell is paired with a control cell");
    let layer = aligned_control(a, b, 2);
    for (i, m) in matched.iter().enumerate() {
        assert_eq!(layer[i * 2].is_nan(), m.is_none(), "cell {}", a.ids[i]);
        if let Some(j) = m {
            assert_eq!(&layer[i * 2..i * 2 + 2], &b.expression[j * 2..j * 2 + 2]);
        }
    }
    // Divisions that happened in one run only leave cells without a partner on both
    // sides, besides the grafts: the ablated cells' lineages in the control, and
    // daughters of the cells that crowd less next to the hole in the perturbed run.
    let only_here = (0..a.ids.len()).filter(|&i| matched[i].is_none() && !a.perturbed[i]).count();
    let there: HashSet<u64> = a.ids.iter().copied().collect();
    let only_control = b.ids.iter().filter(|id| !there.contains(id)).count();
    assert!(only_here > 0, "no lineage of the perturbed run is missing from the control");
    assert!(only_control > 20, "the ablated lineages should be missing: {only_control}");

    // Far from both perturbations, each lineage lived the same life in both runs, at
    // every fate step: the same cells (ids), each with the same parent, generation,
    // position, radius and expression, bit for bit.
    let mut far_daughters = HashSet::new();
    for (k, (a, b)) in runs.iter().zip(&controls).enumerate() {
        let far = |t: &CellTable| -> HashMap<u64, usize> {
            (0..t.ids.len()).filter(|&i| from_perturbations(t.positions[i]) > 110.0).map(|i| (t.ids[i], i)).collect()
        };
        let (fa, fb) = (far(a), far(b));
        let mut ids: Vec<&u64> = fa.keys().collect();
        ids.sort_unstable();
        let mut ids_b: Vec<&u64> = fb.keys().collect();
        ids_b.sort_unstable();
        assert_eq!(ids, ids_b, "at tick {}: the far cells differ", k + 1);
        for (id, &i) in &fa {
            assert_eq!(record(a, i), record(b, fb[id]), "far cell {id} at tick {}", k + 1);
            if a.parents[i] != u64::MAX {
                far_daughters.insert(*id);
            }
        }
    }
    assert!(far_daughters.len() > 30, "too few daughters far away: {}", far_daughters.len());
}

#[test]
fn a_new_id_that_a_living_cell_holds_stops_the_run_before_a_cell_is_added() {
    let mut s = scene();
    s.perturbations.clear();
    let mut sim = start(&s);
    sim.step().unwrap();
    let mut state = sim.state().unwrap();
    // The cell nearest the end of its cycle divides first; another cell takes the id her
    // daughter will get.
    let next = (0..state.cells.len())
        .max_by(|&i, &j| {
            let f = |k: usize| state.cells[k].cycle.progress / state.cells[k].cycle.length;
            f(i).total_cmp(&f(j))
        })
        .unwrap();
    let mother = &state.cells[next];
    let taken = explant_core::lineage::daughter_id(mother.id.0, mother.lineage.generation);
    let other = (next + 1) % state.cells.len();
    state.cells[other].id = explant_core::CellId(taken);
    let mut sim =
        Simulation::restore(&s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(&s)), state).unwrap();
    let mut before = sim.cells();
    let error = loop {
        match sim.step() {
            Ok(()) => before = sim.cells(),
            Err(e) => break e,
        }
        assert!(sim.clock().tick < 200, "the mother never divided");
    };
    let CoreError::IdCollision { id, .. } = &error else { panic!("expected an id collision, got {error}") };
    assert_eq!(*id, taken);
    let message = error.to_string();
    assert!(message.contains(&format!("`{taken}`")) && message.contains("already taken by a living cell"), "{message}");
    let after = sim.cells();
    assert_eq!(after.ids, before.ids, "the failing step added or removed cells");

    // So does a grafted cell's id (cell 3 of the graft, perturbation 1), naming the graft.
    let s = scene();
    let mut state = start(&s).state().unwrap();
    state.cells[7].id = explant_core::CellId(explant_core::lineage::graft_id(1, 3));
    let mut sim =
        Simulation::restore(&s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(&s)), state).unwrap();
    let error = (0..100).find_map(|_| sim.step().err()).expect("the graft at 20 min should clash");
    assert!(matches!(error, CoreError::IdCollision { .. }), "{error}");
    assert!(error.to_string().contains("cell 3 of graft `perturbations[1]`"), "{error}");
    assert_eq!(sim.clock().time(), 20.0, "it should stop at the graft's step");

    // A saved state with one id on two cells is refused, naming it.
    let mut state = sim.state().unwrap();
    let twice = state.cells[0].id;
    state.cells[1].id = twice;
    let e = Simulation::restore(&s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(&s)), state)
        .err()
        .expect("two cells with one id must be refused");
    assert!(e.to_string().contains(&format!("cell id {} is held by two cells", twice.0)), "{e}");
}
