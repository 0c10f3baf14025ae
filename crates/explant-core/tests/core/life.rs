//! Life cycle and motion: division, apoptosis, necrosis, chemotaxis, walls and the
//! basement membrane, checked against the rates and geometry the scene asks for.

use std::path::Path;

use bevy_ecs::prelude::*;
use explant_core::{Batch, Phase, Row, Simulation, States, Teacher};
use explant_field::{CpuDiffusion, Scheme};
use explant_scene::{LoadedScene, Scene};

/// A 2D tissue of `cells` cells of type `a` (disk of radius 200 µm in a 600 µm square),
/// one ligand `L` and whatever `extra` adds (tables appended after the base).
fn scene(cells: usize, a_extra: &str, extra: &str) -> Scene {
    let text = format!(
        r#"
version = 1
name = "life"
seed = 11
genes = ["G", "R"]
[time]
dt = 0.5
duration = 60.0
record_every = 10.0
[grid]
size = [600.0, 600.0]
dx = 20.0
[[ligands]]
name = "L"
diffusion = 100.0
decay = 0.0
secreted_by = "G"
receptor = "R"
[[cell_types]]
name = "a"
baseline = {{ G = 1.0, R = 1.0 }}
{a_extra}
[[cell_types]]
name = "b"
baseline = {{ G = 0.0, R = 1.0 }}
[tissue]
centre = [300.0, 300.0]
radius = 200.0
cells = {cells}
cell_radius = 5.0
cell_type = "a"
[teacher]
degradation = 0.0
default_max_rate = 0.0
{extra}
"#
    );
    LoadedScene::from_str(&text, Path::new("life.toml")).unwrap().scene
}

fn start(s: &Scene) -> Simulation {
    Simulation::new(s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(s))).unwrap()
}

fn run(sim: &mut Simulation, ticks: u64) {
    for _ in 0..ticks {
        sim.step().unwrap();
    }
}

/// Every entity's row belongs to it, and the matrix has exactly one row per cell.
fn check_rows(sim: &mut Simulation) {
    let mut q = sim.world.query::<(Entity, &Row)>();
    let rows: Vec<(Entity, u32)> = q.iter(&sim.world).map(|(e, r)| (e, r.0)).collect();
    let states = sim.world.resource::<States>();
    assert_eq!(rows.len(), states.len());
    assert_eq!(states.data.len(), states.len() * states.genes);
    for (e, r) in rows {
        assert_eq!(states.owner[r as usize], e, "row {r} is not owned by its entity");
    }
}

#[test]
fn an_asynchronous_population_doubles_in_exactly_one_cycle() {
    // Cycle 60 min, no variation: each founder starts at a uniform point of its cycle,
    // so each divides exactly once in [0, 60) and about half have divided by 30 min.
    let s = scene(400, "cycle = { duration = 60.0, cv = 0.0 }", "");
    let mut sim = start(&s);
    run(&mut sim, 60);
    let half = sim.cells().ids.len();
    // Binomial(400, 1/2) divisions: sd 10.
    assert!((560..=640).contains(&half), "{half} cells at half a cycle, expected 600 ± 40");
    run(&mut sim, 60);
    let t = sim.cells();
    assert_eq!(t.ids.len(), 800, "every founder divides exactly once per cycle");
    let born: Vec<usize> = (0..t.ids.len()).filter(|&i| t.parents[i] != u64::MAX).collect();
    assert_eq!(born.len(), 400);
    for &i in &born {
        assert_eq!(t.generations[i], 1);
        assert!(t.parents[i] < 400, "parent {} is not a founder", t.parents[i]);
        // The first daughter of a founder, who was at generation 0 when she divided.
        assert_eq!(t.ids[i], explant_core::lineage::daughter_id(t.parents[i], 0));
        // No inheritance noise: daughters carry the mother's state.
        assert_eq!(&t.expression[i * 2..i * 2 + 2], &[1.0, 1.0]);
    }
    // Ids are unique.
    let mut ids = t.ids.clone();
    ids.dedup();
    assert_eq!(ids.len(), 800);
    // Newborns are half the volume of a full-grown cell.
    let r_half = 5.0 * 0.5f32.cbrt();
    assert!(t.radii.iter().all(|&r| r >= r_half - 1e-3 && r <= 5.0 + 1e-3));
    check_rows(&mut sim);
}

#[test]
fn the_batch_kept_across_fate_steps_without_births_or_deaths_matches_the_cells() {
    // 60 cycling cells (a division every ~2 ticks) that also die (apoptosis, shrinking):
    // after a fate step with no birth or removal the batch is not gathered again, so
    // the fate stage must have kept its radii and phases; it is compared with the
    // cells themselves after every step, and both kinds of step must have happened.
    use explant_core::{CellId, Cycle, Position, Radius};
    let s = scene(60, "cycle = { duration = 60.0, cv = 0.2 }\napoptosis = { rate = 0.02, duration = 5.0 }", "");
    let mut sim = start(&s);
    let (mut kept, mut gathered) = (0, 0);
    for _ in 0..120 {
        sim.step().unwrap();
        if !sim.world.resource::<Batch>().fresh {
            gathered += 1;
            continue;
        }
        kept += 1;
        let mut q = sim.world.query::<(&Row, &CellId, &Position, &Radius, &Cycle)>();
        let cells: Vec<_> =
            q.iter(&sim.world).map(|(r, id, p, rad, c)| (r.0 as usize, id.0, p.0, rad.0, c.phase)).collect();
        let b = sim.world.resource::<Batch>();
        assert_eq!(b.cells, cells.len());
        for (i, id, p, r, phase) in cells {
            assert_eq!(b.ids[i], id);
            assert_eq!(b.positions[i], p, "cell {id}");
            assert_eq!(
                b.radii[i].to_bits(),
                r.to_bits(),
                "cell {id}: radius {} in the batch, {r} on the cell",
                b.radii[i]
            );
            assert_eq!(b.alive[i], phase == Phase::Cycling, "cell {id}");
        }
    }
    assert!(kept > 10 && gathered > 10, "{kept} steps kept the batch, {gathered} gathered it");
    check_rows(&mut sim);
}

#[test]
fn a_gene_below_threshold_or_crowding_holds_the_cycle() {
    // Type a needs G ≥ 2 to cycle (it has 1); nothing divides.
    let s = scene(200, "cycle = { duration = 20.0, cv = 0.0, gene = \"G\", threshold = 2.0 }", "");
    let mut sim = start(&s);
    run(&mut sim, 120);
    assert_eq!(sim.cells().ids.len(), 200);
    // Contact inhibition: in a packed disk nearly every cell has more than 2 neighbours.
    let s = scene(400, "cycle = { duration = 20.0, cv = 0.0, max_neighbours = 2 }", "");
    let mut sim = start(&s);
    run(&mut sim, 40);
    let n = sim.cells().ids.len();
    assert!(n < 440, "{n} cells: crowded cells kept dividing");
}

#[test]
fn apoptosis_removes_cells_at_the_scene_rate() {
    // Rate 0.01/min, removal 10 min after entry: by 60 min, P(removed) = 1 − e^(−0.01·50).
    let s = scene(1000, "apoptosis = { rate = 0.01, duration = 10.0 }", "");
    let mut sim = start(&s);
    run(&mut sim, 120);
    let t = sim.cells();
    let removed = 1000 - t.ids.len();
    let p: f64 = 1.0 - (-0.01f64 * 50.0).exp();
    let sd = (1000.0 * p * (1.0 - p)).sqrt();
    assert!(
        (removed as f64 - 1000.0 * p).abs() < 4.0 * sd + 5.0,
        "{removed} removed, expected {:.0} ± {:.0}",
        1000.0 * p,
        sd
    );
    // Cells still dying: entered within the last 10 min, shrunk below full size.
    let dying: Vec<usize> = (0..t.ids.len()).filter(|&i| t.phases[i] == Phase::Apoptotic).collect();
    let q = (-0.01f64 * 50.0).exp() - (-0.01f64 * 60.0).exp();
    assert!((dying.len() as f64 - 1000.0 * q).abs() < 4.0 * (1000.0 * q).sqrt() + 5.0, "{}", dying.len());
    assert!(dying.iter().all(|&i| t.radii[i] <= 5.0));
    let mean_radius = dying.iter().map(|&i| t.radii[i]).sum::<f32>() / dying.len() as f32;
    // Volume falls linearly over 10 min: mean radius ≈ 5 · E[(1 − U)^(1/3)] = 3.75 µm.
    assert!((3.4..4.1).contains(&mean_radius), "{mean_radius}");
    check_rows(&mut sim);
}

#[test]
fn a_high_gene_drives_apoptosis_only_where_it_is_high() {
    // Cells of type a (G = 1 ≥ 0.5) die fast; type b (G = 0) never.
    let s =
        scene(600, "apoptosis = { rate = 0.0, gene = \"G\", threshold = 0.5, rate_above = 0.5, duration = 1.0 }", "");
    let mut s = s;
    s.tissue.regions.push(explant_scene::RegionSpec {
        cell_type: Some("b".into()),
        mixture: None,
        shape: explant_scene::Shape::Box { min: vec![0.0, 0.0], max: vec![300.0, 600.0] },
    });
    let mut sim = start(&s);
    let before = sim.cells();
    let b0 = before.cell_types.iter().filter(|&&c| c == 1).count();
    run(&mut sim, 40);
    let t = sim.cells();
    assert!(b0 > 200);
    assert_eq!(t.cell_types.iter().filter(|&&c| c == 1).count(), b0, "type b has no apoptosis rule");
    assert_eq!(t.cell_types.iter().filter(|&&c| c == 0).count(), 0, "all of type a should be gone after 20 min");
}

#[test]
fn necrosis_strikes_where_the_ligand_is_scarce() {
    // L = 10 on the right half, 0 on the left; no diffusion to speak of in 20 min? Use
    // D = 100: the front moves ~√(4·100·20) ≈ 90 µm, so the far left stays below 1.
    let s = scene(800, "necrosis = { ligand = \"L\", below = 1.0, rate = 0.5, duration = 5.0 }", "");
    let mut s = s;
    s.ligands[0].initial = explant_scene::Initial::Region {
        shape: explant_scene::Shape::Box { min: vec![300.0, 0.0], max: vec![600.0, 600.0] },
        value: 10.0,
        background: 0.0,
    };
    let mut sim = start(&s);
    run(&mut sim, 40);
    let t = sim.cells();
    let left = t.positions.iter().filter(|p| p[0] < 180.0).count();
    let right = t.positions.iter().filter(|p| p[0] > 320.0).count();
    assert_eq!(left, 0, "cells far from the ligand should all be necrotic and removed");
    assert!(right > 250, "cells in the ligand survive: {right}");
    check_rows(&mut sim);
}

/// Sparse cells (no contacts) of type a migrating up a linear gradient of L along x.
fn chemotaxis_scene(bias: f32, membrane: &str) -> Scene {
    let mut s = scene(
        50,
        &format!("chemotaxis = {{ ligand = \"L\", speed = 1.0, bias = {bias}, persistence = 2.0 }}"),
        membrane,
    );
    s.tissue.cell_radius = 2.0;
    s.contact.radius = 5.0;
    s.ligands[0].diffusion = 1.0e4;
    s.ligands[0].boundary.x_max = Some(explant_field::Boundary::Fixed { value: 10.0 });
    s.ligands[0].boundary.x_min = Some(explant_field::Boundary::Fixed { value: 0.0 });
    s
}

#[test]
fn chemotaxis_moves_cells_up_the_gradient_at_the_scene_speed() {
    let mut sim = start(&chemotaxis_scene(1.0, ""));
    run(&mut sim, 20); // the gradient forms (diffusion time across 600 µm ≈ 36 min at D = 1e4)
    let x0: Vec<f32> = sim.cells().positions.iter().map(|p| p[0]).collect();
    run(&mut sim, 60); // 30 min
    let x1: Vec<f32> = sim.cells().positions.iter().map(|p| p[0]).collect();
    let mean = x0.iter().zip(&x1).map(|(a, b)| b - a).sum::<f32>() / x0.len() as f32;
    assert!((27.0..=30.5).contains(&mean), "mean drift {mean} µm in 30 min at 1 µm/min");

    // Unbiased: a persistent random walk, no net drift (sd of the mean ≈ 1 µm).
    let mut sim = start(&chemotaxis_scene(0.0, ""));
    run(&mut sim, 20);
    let p0 = sim.cells().positions;
    run(&mut sim, 60);
    let p1 = sim.cells().positions;
    let mean = p0.iter().zip(&p1).map(|(a, b)| b[0] - a[0]).sum::<f32>() / p0.len() as f32;
    let travelled = p0.iter().zip(&p1).map(|(a, b)| ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt());
    let mean_distance = travelled.sum::<f32>() / p0.len() as f32;
    assert!(mean.abs() < 4.0, "random walk drifted {mean} µm");
    // Persistence 2 min over 30 min: RMS distance ≈ √(2 v² τ T) ≈ 11 µm; net < path.
    assert!((4.0..20.0).contains(&mean_distance), "{mean_distance}");
}

#[test]
fn walls_hold_cells_off_the_faces_and_the_membrane_is_never_crossed() {
    // Cells run up the gradient into the x = 600 face.
    let mut s = chemotaxis_scene(1.0, "");
    s.time.duration = 700.0;
    s.mechanics.walls = true;
    let mut sim = start(&s);
    run(&mut sim, 1400); // 700 min: the farthest cells travel ~500 µm at 1 µm/min
    let mut d: Vec<f32> = sim.cells().positions.iter().map(|p| 600.0 - p[0]).collect();
    d.sort_by(f32::total_cmp);
    // Balance: μ c_r (1 − d/r)² = v → d = r (1 − √(v / μ c_r)) = 2 (1 − √0.1) ≈ 1.37 µm
    // (neighbours jostling along the wall move a few cells slightly).
    let median = d[d.len() / 2];
    assert!((median - 1.368).abs() < 0.05, "median distance from the wall {median}, expected 1.37");
    assert!(d[0] > 1.0 && d[d.len() - 1] < 2.5, "{d:?}");
    // Without walls the same cells end clamped on the face.
    let mut s = chemotaxis_scene(1.0, "");
    s.time.duration = 700.0;
    let mut sim = start(&s);
    run(&mut sim, 1400);
    assert!(sim.cells().positions.iter().all(|p| p[0] > 599.9));

    // A membrane at x = 400 stops the cells left of it; cells right of it stay right.
    let s = chemotaxis_scene(1.0, "[mechanics]\nmembrane = { axis = \"x\", position = 400.0 }");
    let mut sim = start(&s);
    let left: Vec<bool> = sim.cells().positions.iter().map(|p| p[0] < 400.0).collect();
    run(&mut sim, 1200);
    let after = sim.cells().positions;
    for (p, l) in after.iter().zip(&left) {
        if *l {
            assert!(p[0] <= 400.0, "a cell crossed the membrane to {}", p[0]);
            assert!(p[0] > 398.0, "cells moving up the gradient end against the membrane: {}", p[0]);
        } else {
            assert!(p[0] >= 400.0);
        }
    }
}

#[test]
fn neighbour_counts_by_type_add_up_to_the_neighbour_lists() {
    let mut s = scene(300, "", "");
    s.tissue.regions.push(explant_scene::RegionSpec {
        cell_type: Some("b".into()),
        mixture: None,
        shape: explant_scene::Shape::Circle { centre: vec![300.0, 300.0], radius: 100.0 },
    });
    let mut sim = start(&s);
    run(&mut sim, 1);
    let b = sim.world.resource::<Batch>();
    let mut mixed = 0;
    for i in 0..b.cells {
        let listed = (b.offsets[i + 1] - b.offsets[i]) as f32;
        let counts = &b.neighbour_types[i * 2..i * 2 + 2];
        assert_eq!(counts[0] + counts[1], listed);
        let of_b = b.neighbours[b.offsets[i] as usize..b.offsets[i + 1] as usize]
            .iter()
            .filter(|&&j| b.cell_type[j as usize] == 1)
            .count() as f32;
        assert_eq!(counts[1], of_b);
        mixed += usize::from(counts[0] > 0.0 && counts[1] > 0.0);
    }
    assert!(mixed > 10, "the a/b border should give cells with both kinds of neighbour");
}

#[test]
fn a_growing_dying_migrating_tissue_is_identical_on_one_and_two_threads() {
    let text_extra = "cycle = { duration = 30.0, cv = 0.2, inheritance_noise = 0.1 }\n\
                      apoptosis = { rate = 0.005, duration = 10.0 }\n\
                      chemotaxis = { ligand = \"L\", speed = 0.5, bias = 0.5 }";
    let s = scene(300, text_extra, "");
    let go = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut sim = start(&s);
            run(&mut sim, 120);
            let t = sim.cells();
            check_rows(&mut sim);
            t
        })
    };
    let (one, two) = (go(1), go(2));
    assert!(one.ids.len() > 500, "the tissue should have grown: {}", one.ids.len());
    assert!(one.phases.contains(&Phase::Apoptotic) || one.ids.len() < 1200);
    assert_eq!(one, two, "1 and 2 threads differ");
}

#[test]
fn spatial_sorting_of_rows_keeps_every_cell_and_makes_rows_local() {
    let s = scene(2000, "", "");
    let mut sim = start(&s);
    // Scramble the rows (row r moves to 7919 r mod N), then sort: the cell table is unchanged.
    let before = sim.cells();
    let n = before.ids.len();
    let to = |r: u32| ((r as u64 * 7919) % n as u64) as u32;
    {
        let mut states = sim.world.resource_mut::<States>();
        let g = states.genes;
        let (old_data, old_owner) = (states.data.clone(), states.owner.clone());
        for r in 0..n {
            let k = to(r as u32) as usize;
            states.data[k * g..(k + 1) * g].copy_from_slice(&old_data[r * g..(r + 1) * g]);
            states.owner[k] = old_owner[r];
        }
    }
    let mut rows = sim.world.query::<&mut Row>();
    for mut r in rows.iter_mut(&mut sim.world) {
        r.0 = to(r.0);
    }
    check_rows(&mut sim);
    assert_eq!(sim.cells(), before);
    explant_core::sort_rows(&mut sim.world, 12.5);
    assert_eq!(sim.cells(), before);
    check_rows(&mut sim);
    // Consecutive rows are near each other in space (Morton order): the mean step
    // between rows is a few cell spacings, against ~200 µm for a random order.
    let mut q = sim.world.query::<(&Row, &explant_core::Position)>();
    let mut by_row: Vec<(u32, glam::Vec3)> = q.iter(&sim.world).map(|(r, p)| (r.0, p.0)).collect();
    by_row.sort_by_key(|r| r.0);
    let mean_step = by_row.windows(2).map(|w| (w[1].1 - w[0].1).length()).sum::<f32>() / (by_row.len() - 1) as f32;
    assert!(mean_step < 40.0, "mean distance between consecutive rows {mean_step} µm");
}

#[test]
fn coarser_mechanics_and_state_steps_keep_the_physics_per_minute() {
    // Mechanics every 5 ticks with a 5-tick step: the same drift per minute.
    let mut s = chemotaxis_scene(1.0, "");
    s.time.mechanics_dt = Some(2.5);
    s.time.state_dt = Some(5.0);
    let mut sim = start(&s);
    run(&mut sim, 20);
    let x0: Vec<f32> = sim.cells().positions.iter().map(|p| p[0]).collect();
    run(&mut sim, 60); // 30 min
    let x1: Vec<f32> = sim.cells().positions.iter().map(|p| p[0]).collect();
    let mean = x0.iter().zip(&x1).map(|(a, b)| b - a).sum::<f32>() / x0.len() as f32;
    assert!((27.0..=30.5).contains(&mean), "mean drift {mean} µm in 30 min at 1 µm/min");

    // A step that is not a whole number of ticks is refused, naming the field.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/default.toml")).unwrap();
    let text = text.replace("dt = 0.5 ", "dt = 0.5\nmechanics_dt = 0.75 ");
    let e = LoadedScene::from_str(&text, Path::new("default.toml")).unwrap_err().to_string();
    assert!(e.contains("time.mechanics_dt") && e.contains("whole multiple"), "{e}");
}

#[test]
fn every_shipped_scene_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            LoadedScene::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "{n} scenes");
}

#[test]
fn a_world_restored_from_its_saved_state_steps_to_the_same_bits() {
    restored_world_steps_to_the_same_bits(Scheme::Explicit);
}

#[test]
fn a_world_restored_from_its_saved_state_steps_to_the_same_bits_with_adi() {
    // ADI keeps state between steps: the sources added since the last step and the tick
    // of the last sharp change (the bolus here falls after the save).
    restored_world_steps_to_the_same_bits(Scheme::Adi);
}

fn restored_world_steps_to_the_same_bits(scheme: Scheme) {
    // Division, apoptosis and chemotaxis, a knockdown whose window spans the save, an
    // ablation before it and a bolus after it; the save falls between a mechanics step
    // and a re-sort of the rows, at a tick that is not a recording tick.
    let a_extra = "cycle = { duration = 30.0, cv = 0.2, inheritance_noise = 0.1 }\n\
                   apoptosis = { rate = 0.005, duration = 10.0 }\n\
                   chemotaxis = { ligand = \"L\", speed = 0.5, bias = 0.5 }";
    let perturbations = r#"
[[perturbations]]
kind = "knockdown"
gene = "R"
fraction = 0.5
start = 10.0
stop = 50.0
region = { kind = "circle", centre = [300.0, 300.0], radius = 100.0 }
[[perturbations]]
kind = "ablation"
start = 5.0
region = { kind = "circle", centre = [200.0, 300.0], radius = 30.0 }
[[perturbations]]
kind = "bolus"
ligand = "L"
value = 2.0
start = 40.0
region = { kind = "circle", centre = [400.0, 300.0], radius = 50.0 }
"#;
    let s = scene(300, a_extra, perturbations);
    let mut whole =
        Simulation::new(&s, Box::new(CpuDiffusion::with_scheme(scheme)), Box::new(Teacher::from_scene(&s))).unwrap();
    run(&mut whole, 57);
    let saved = whole.state().unwrap();
    let bytes = saved.encode();
    run(&mut whole, 63);

    let state = explant_core::SimState::decode(&bytes).unwrap();
    assert_eq!(state, saved, "the byte form loses something");
    let mut resumed =
        Simulation::restore(&s, Box::new(CpuDiffusion::with_scheme(scheme)), Box::new(Teacher::from_scene(&s)), state)
            .unwrap();
    assert_eq!(resumed.clock().tick, 57);
    run(&mut resumed, 63);
    check_rows(&mut resumed);

    let (a, b) = (whole.cells(), resumed.cells());
    assert!(a.ids.len() > 400, "the tissue should have grown: {}", a.ids.len());
    assert!(a.generations.iter().any(|&g| g >= 2), "cells born after the save should have divided");
    assert_eq!(a, b, "the resumed world differs from the uninterrupted one");
    assert_eq!(whole.ligands().field.data, resumed.ligands().field.data);
    assert_eq!(whole.ligands().exchanged, resumed.ligands().exchanged);
    assert_eq!(whole.recording().pseudobulk, resumed.recording().pseudobulk);
    assert_eq!(whole.recording().ligand_totals, resumed.recording().ligand_totals);
    assert_eq!(whole.state().unwrap(), resumed.state().unwrap());

    // Restarting from the cells alone (what a run's AnnData holds) is not a continuation:
    // the test above would catch a restore that dropped the clock, field or cycle timers.
    let mut fresh_clock = saved.clone();
    fresh_clock.tick = 0;
    let mut wrong = Simulation::restore(
        &s,
        Box::new(CpuDiffusion::with_scheme(scheme)),
        Box::new(Teacher::from_scene(&s)),
        fresh_clock,
    )
    .unwrap();
    run(&mut wrong, 63);
    assert_ne!(wrong.cells(), a, "a restore that loses the clock should not match");
}

#[test]
fn a_saved_state_is_refused_by_another_scene_naming_what_differs() {
    let s = scene(50, "", "");
    let mut sim = start(&s);
    run(&mut sim, 3);
    let state = sim.state().unwrap();
    let mut other = s.clone();
    other.genes.push("EXTRA".into());
    let e = Simulation::restore(&other, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(&other)), state)
        .err()
        .expect("a state with two genes must not fit a three-gene scene");
    assert!(e.to_string().contains("genes: the checkpoint has 2, the scene 3"), "{e}");
}

#[test]
fn a_cycle_as_short_as_a_tick_stops_at_the_cell_limit_instead_of_exhausting_memory() {
    // Every cell divides every tick: 100 → 200 → 400 → 800 → (1600 > 1000) stops.
    let mut s = scene(100, "cycle = { duration = 0.5, cv = 0.0 }", "");
    s.tissue.max_cells = Some(1000);
    let mut sim = start(&s);
    let mut error = None;
    for _ in 0..s.ticks() {
        if let Err(e) = sim.step() {
            error = Some(e);
            break;
        }
        assert!(sim.world.resource::<States>().len() <= 1000);
    }
    let Some(explant_core::CoreError::TooManyCells { cells, limit, tick, .. }) = error else {
        panic!("the run should stop at the cell limit, got {error:?}");
    };
    assert_eq!(limit.cells, 1000);
    assert!(cells > 1000 && cells <= 2000, "{cells}");
    assert!(tick < 10, "stopped at tick {tick}");
    let n = sim.world.resource::<States>().len();
    assert!((500..=1000).contains(&n), "the last good population is kept: {n}");
    check_rows(&mut sim);
    let message = explant_core::CoreError::TooManyCells { tick, time: 0.0, cells, limit }.to_string();
    assert!(message.contains("`tissue.max_cells` = 1000") && message.contains(&format!("{cells} cells")), "{message}");
}

#[test]
fn without_max_cells_the_limit_comes_from_the_available_memory() {
    let s = scene(100, "", "");
    let limit = s.cell_limit();
    assert!(matches!(
        limit.origin,
        explant_scene::memory::LimitOrigin::Available { .. } | explant_scene::memory::LimitOrigin::Fallback
    ));
    let available = explant_scene::memory::available_memory().unwrap_or(explant_scene::memory::FALLBACK_MEMORY_BYTES);
    let used = limit.cells as f64 * explant_scene::memory::bytes_per_cell(s.genes.len());
    assert!(used <= available as f64 / 2.0 && used > available as f64 / 2.0 * 0.9, "{limit}");
}
