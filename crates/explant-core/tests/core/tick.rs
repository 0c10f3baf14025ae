//! The tick end to end with the CPU diffusion backend and the teacher model.

use std::path::Path;

use explant_core::{Simulation, Stage, Teacher};
use explant_field::CpuDiffusion;
use explant_scene::{LoadedScene, Scene};

const DEFAULT: &str = include_str!("../../../../scenes/default.toml");

fn scene(edit: impl FnOnce(&mut String)) -> Scene {
    let mut text = DEFAULT.replace("kind = \"torchscript\"", "kind = \"teacher\"");
    edit(&mut text);
    LoadedScene::from_str(&text, Path::new("default.toml")).unwrap().scene
}

fn sim(s: &Scene) -> Simulation {
    Simulation::new(s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(s))).unwrap()
}

fn hash(sim: &mut Simulation) -> u64 {
    use std::hash::{Hash, Hasher};
    let t = sim.cells();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.ids.hash(&mut h);
    for v in t.expression.iter().chain(t.positions.iter().flatten()) {
        v.to_bits().hash(&mut h);
    }
    for v in &sim.ligands().field.data {
        v.to_bits().hash(&mut h);
    }
    h.finish()
}

#[test]
fn a_generated_tissue_is_stored_in_row_order_with_ids_in_generated_order() {
    // The cells are spawned in the rows' spatial order, so walking the entities walks the
    // rows in order (the gather and the mechanics write by row); the ids stay those of
    // the generated order, so every result is the same as with any other spawn order.
    let s = scene(|_| {});
    let mut sim = sim(&s);
    let mut q = sim.world.query::<(&explant_core::CellId, &explant_core::Row, &explant_core::Position)>();
    let (ids, rows): (Vec<u64>, Vec<u32>) = q.iter(&sim.world).map(|(c, r, _)| (c.0, r.0)).unzip();
    assert_eq!(rows.len(), 1500);
    assert!(rows.iter().enumerate().all(|(k, &r)| r as usize == k), "entities not in row order");
    // ... and the rows are in the neighbour grid's bin order, as `sort_rows` keeps them.
    let positions: Vec<glam::Vec3> = q.iter(&sim.world).map(|(_, _, p)| p.0).collect();
    let order = explant_core::neighbours::CellList::new(&positions, s.contact.radius).order().to_vec();
    assert!(order.iter().enumerate().all(|(k, &o)| o as usize == k), "rows not in bin order");
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert!(sorted.iter().enumerate().all(|(k, &id)| id == k as u64), "ids are 0..n");
    assert_ne!(ids, sorted, "rows in spatial order differ from the generated order on this disk");
}

#[test]
fn initial_tissue_has_the_requested_cells_and_types() {
    let s = scene(|_| {});
    let mut sim = sim(&s);
    let t = sim.cells();
    assert_eq!(t.ids.len(), 1500);
    let organisers = t.cell_types.iter().filter(|&&c| c == 0).count();
    // The organiser disk (r = 45 µm) covers (45/260)² ≈ 3 % of the tissue's area.
    assert!((30..=60).contains(&organisers), "{organisers}");
    for p in &t.positions {
        let d = ((p[0] - 300.0).powi(2) + (p[1] - 300.0).powi(2)).sqrt();
        assert!(d < 270.0, "cell at {p:?} is outside the tissue disk");
    }
}

#[test]
fn wnt_forms_a_gradient_and_induces_axin2_near_the_organiser() {
    let s = scene(|t| *t = t.replace("duration = 240.0", "duration = 120.0"));
    let mut sim = sim(&s);
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
    let t = sim.cells();
    let axin2 = s.gene_index("AXIN2").unwrap();
    let g = s.genes.len();
    let (mut near, mut far) = (vec![], vec![]);
    for (i, p) in t.positions.iter().enumerate() {
        if t.cell_types[i] != 1 {
            continue;
        }
        let d = ((p[0] - 300.0).powi(2) + (p[1] - 300.0).powi(2)).sqrt();
        let x = t.expression[i * g + axin2];
        if d < 90.0 {
            near.push(x);
        } else if d > 200.0 {
            far.push(x);
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(mean(&near) > 3.0 * mean(&far), "near {} far {}", mean(&near), mean(&far));
    // The field decreases away from the source.
    let f = &sim.ligands().field;
    let at = |x: usize| f.data[30 * f.grid.nx + x];
    assert!(at(30) > at(40) && at(40) > at(50), "{} {} {}", at(30), at(40), at(50));
    // Every stage was timed.
    for (stage, d) in sim.stage_times() {
        assert!(d.as_nanos() > 0 || stage == Stage::Perturb, "{stage:?} has no time");
    }
}

#[test]
fn secreted_mass_reaches_the_grid() {
    // No decay, no diffusion loss (zero-flux walls): the grid total grows by exactly
    // what the cells secreted, which with constant expression is rate × Σx × t.
    let s = scene(|t| {
        *t = t.replace("decay = 0.02", "decay = 0.0").replace("duration = 240.0", "duration = 5.0");
        assert!(t.contains("export_rate = 30.0"));
        // Freeze expression so secretion is constant: no degradation, no production.
        *t = t
            .replace("degradation = 0.05", "degradation = 0.0")
            .replace("default_max_rate = 0.1", "default_max_rate = 0.0");
    });
    let mut sim = sim(&s);
    let sum_wnt: f64 = {
        let t = sim.cells();
        let g = s.genes.len();
        (0..t.ids.len()).map(|i| f64::from(t.expression[i * g])).sum()
    };
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
    let expected = 30.0 * sum_wnt * 5.0;
    let total = sim.ligands().field.total(0);
    assert!(((total - expected) / expected).abs() < 1e-4, "grid {total} vs secreted {expected}");
}

#[test]
fn secretion_alone_approaches_but_never_exceeds_saturation() {
    let s = scene(|t| {
        *t = t
            .replace("decay = 0.02", "decay = 0.0")
            .replace("diffusion = 200.0", "diffusion = 0.0")
            .replace("duration = 240.0", "duration = 60.0")
            .replace("export_rate = 30.0", "secretion_rate = 50.0\nsaturation = 2.0");
    });
    let mut sim = sim(&s);
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
    let max = sim.ligands().field.data.iter().cloned().fold(0.0f32, f32::max);
    assert!(max <= 2.0 + 1e-5, "overshot saturation: {max}");
    assert!(max > 1.9, "did not approach saturation: {max}");
}

#[test]
fn initial_conditions_and_fixed_boundaries_are_applied() {
    let s = scene(|t| {
        *t = t.replace("duration = 240.0", "duration = 1.0").replace(
            "receptor = \"FZD7\"",
            "receptor = \"FZD7\"\ninitial = { kind = \"region\", shape = { kind = \"box\", min = [0.0, 0.0], max = [100.0, 600.0] }, value = 4.0, background = 1.0 }\nboundary = { all = { kind = \"fixed\", value = 1.0 }, y_min = { kind = \"periodic\" }, y_max = { kind = \"periodic\" } }",
        );
    });
    assert_eq!(s.ligands[0].boundary.faces()[2], explant_field::Boundary::Periodic);
    let sim = sim(&s);
    let f = &sim.ligands().field;
    assert_eq!(f.data[5 * f.grid.nx + 3], 4.0);
    assert_eq!(f.data[5 * f.grid.nx + 30], 1.0);
    assert_eq!(sim.ligands().params[0].boundary[0], explant_field::Boundary::Fixed { value: 1.0 });
}

#[test]
fn knockout_clamps_the_target_only_where_and_when_asked() {
    let s = scene(|t| {
        *t = t.replace("duration = 240.0", "duration = 20.0");
        t.push_str(
            "\n[[perturbations]]\nkind = \"knockout\"\ngene = \"HES1\"\nstart = 5.0\nregion = { kind = \"box\", min = [0.0, 0.0], max = [300.0, 600.0] }\n",
        );
    });
    let mut sim = sim(&s);
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
    let t = sim.cells();
    let g = s.genes.len();
    let hes1 = s.gene_index("HES1").unwrap();
    let mut left = 0;
    for (i, p) in t.positions.iter().enumerate() {
        let x = t.expression[i * g + hes1];
        if p[0] < 299.0 {
            assert_eq!(x, 0.0);
            assert!(t.perturbed[i]);
            left += 1;
        } else if p[0] > 301.0 {
            assert!(!t.perturbed[i]);
        }
    }
    assert!(left > 500);
    let right_mean: f32 =
        (0..t.ids.len()).filter(|&i| t.positions[i][0] > 301.0).map(|i| t.expression[i * g + hes1]).sum::<f32>();
    assert!(right_mean > 0.0);
}

#[test]
fn results_are_identical_on_one_and_two_threads() {
    let s = scene(|t| *t = t.replace("duration = 240.0", "duration = 15.0"));
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut sim = sim(&s);
            for _ in 0..sim.total_ticks() {
                sim.step().unwrap();
            }
            hash(&mut sim)
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn cells_do_not_overlap_badly_after_mechanics() {
    let s = scene(|t| *t = t.replace("duration = 240.0", "duration = 30.0"));
    let mut sim = sim(&s);
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
    let t = sim.cells();
    let mut min_d = f32::INFINITY;
    for i in 0..t.ids.len() {
        for j in i + 1..t.ids.len() {
            let d: f32 = (0..3).map(|k| (t.positions[i][k] - t.positions[j][k]).powi(2)).sum::<f32>().sqrt();
            min_d = min_d.min(d);
        }
    }
    // Two radii are 12 µm; repulsion keeps centres well apart.
    assert!(min_d > 6.0, "closest pair at {min_d} µm");
}

#[test]
fn a_3d_tissue_runs_and_forms_a_radial_gradient() {
    let s = scene(|t| {
        *t = t
            .replace("size = [600.0, 600.0]", "size = [300.0, 300.0, 300.0]")
            .replace(
                "centre = [300.0, 300.0]\nradius = 260.0\ncells = 1500",
                "centre = [150.0, 150.0, 150.0]\nradius = 110.0\ncells = 800",
            )
            .replace(
                "shape = { kind = \"circle\", centre = [300.0, 300.0], radius = 45.0 }",
                "shape = { kind = \"circle\", centre = [150.0, 150.0, 150.0], radius = 35.0 }",
            )
            .replace("duration = 240.0", "duration = 30.0");
    });
    assert_eq!(s.dims(), 3);
    let mut sim = sim(&s);
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
    let t = sim.cells();
    assert_eq!(t.ids.len(), 800);
    assert!(t.positions.iter().any(|p| (p[2] - 150.0).abs() > 50.0), "cells are not spread in z");
    let organisers = t.cell_types.iter().filter(|&&c| c == 0).count();
    assert!(organisers > 10, "{organisers} organisers");
    let f = &sim.ligands().field;
    assert_eq!(f.grid.nz, 30);
    let at = |x: usize| f.data[(15 * f.grid.ny + 15) * f.grid.nx + x];
    assert!(at(15) > at(20) && at(20) > at(25) && at(25) > 0.0, "{} {} {}", at(15), at(20), at(25));
}

/// A little-endian float32 `.npy` file.
fn write_npy(path: &std::path::Path, shape: &[usize], values: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn initial_field_from_a_numpy_file_is_loaded_or_refused_with_the_shape() {
    let dir = std::env::temp_dir().join(format!("explant-npy-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.npy");
    let values: Vec<f32> = (0..60 * 60).map(|i| (i % 7) as f32 * 0.5).collect();
    write_npy(&good, &[60, 60], &values);
    let with_file = |p: &std::path::Path| {
        scene(|t| {
            *t = t.replace(
                "receptor = \"FZD7\"",
                &format!("receptor = \"FZD7\"\ninitial = {{ kind = \"file\", path = {:?} }}", p.display().to_string()),
            )
        })
    };
    let s = with_file(&good);
    let sim = sim(&s);
    assert_eq!(sim.ligands().field.data[..60 * 60], values[..]);

    let bad = dir.join("bad.npy");
    write_npy(&bad, &[50, 60], &values[..50 * 60]);
    let s = with_file(&bad);
    let err = Simulation::new(&s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(&s)))
        .err()
        .expect("a wrongly shaped initial field is refused")
        .to_string();
    assert!(err.contains("bad.npy") && err.contains("[50, 60]") && err.contains("[60, 60]"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The teacher, failing at its `fail_at`-th call.
struct FailsAt {
    teacher: Teacher,
    calls: usize,
    fail_at: usize,
}

impl explant_core::ResponseModel for FailsAt {
    fn name(&self) -> String {
        "fails-at".into()
    }

    fn signature(&self) -> &explant_core::ModelSignature {
        self.teacher.signature()
    }

    fn rates(
        &mut self,
        input: &explant_core::ResponseInput<'_>,
        rates: &mut [f32],
    ) -> Result<(), explant_core::ModelError> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(explant_core::ModelError::Run { model: self.name(), message: "on purpose".into() });
        }
        self.teacher.rates(input, rates)
    }
}

#[test]
fn a_failed_stage_skips_the_rest_of_its_tick_and_the_clock_stays() {
    let s = scene(|_| {});
    let model = FailsAt { teacher: Teacher::from_scene(&s), calls: 0, fail_at: 3 };
    let mut sim = Simulation::new(&s, Box::new(CpuDiffusion::new()), Box::new(model)).unwrap();
    for _ in 0..2 {
        sim.step().unwrap();
    }
    let times = |sim: &Simulation| sim.stage_times().into_iter().map(|(_, d)| d).collect::<Vec<_>>();
    let (before, positions) = (times(&sim), sim.cells().positions);
    let e = sim.step().unwrap_err().to_string();
    assert!(e.contains("fails-at") && e.contains("on purpose"), "{e}");
    assert_eq!(sim.clock().tick, 2, "the failed tick does not advance the clock");
    let after = times(&sim);
    for stage in [Stage::Perturb, Stage::Mechanics, Stage::Fate, Stage::Record] {
        assert_eq!(after[stage as usize], before[stage as usize], "{stage:?} ran after the failure");
    }
    assert!(after[Stage::Secrete as usize] > before[Stage::Secrete as usize], "stages before it ran");
    assert_eq!(sim.cells().positions, positions, "mechanics did not run");
    // The failure is reported once: the next tick runs.
    sim.step().unwrap();
    assert_eq!(sim.clock().tick, 3);
}

/// The teacher, except that one rate of one cell is NaN from the third call on.
struct NanAt {
    teacher: Teacher,
    calls: usize,
    row: usize,
    gene: usize,
}

impl explant_core::ResponseModel for NanAt {
    fn name(&self) -> String {
        "nan-at".into()
    }

    fn signature(&self) -> &explant_core::ModelSignature {
        self.teacher.signature()
    }

    fn rates(
        &mut self,
        input: &explant_core::ResponseInput<'_>,
        rates: &mut [f32],
    ) -> Result<(), explant_core::ModelError> {
        self.calls += 1;
        self.teacher.rates(input, rates)?;
        if self.calls >= 3 {
            rates[self.row * self.teacher.signature().genes.len() + self.gene] = f32::NAN;
        }
        Ok(())
    }
}

#[test]
fn a_non_finite_rate_stops_the_run_naming_cell_and_gene_and_never_becomes_zero() {
    let s = scene(|_| {});
    let gene = s.gene_index("AXIN2").unwrap();
    let model = NanAt { teacher: Teacher::from_scene(&s), calls: 0, row: 5, gene };
    let mut sim = Simulation::new(&s, Box::new(CpuDiffusion::new()), Box::new(model)).unwrap();
    sim.step().unwrap();
    sim.step().unwrap();
    let before = sim.cells();
    let e = sim.step().unwrap_err().to_string();
    assert!(e.contains("nan-at") && e.contains("non-finite rate of `AXIN2`") && e.contains("`NaN`"), "{e}");
    // The cell named is the one whose row the model spoiled, and nothing was stepped:
    // no expression became 0 (or anything else) because of the NaN.
    let id: u64 = e.rsplit("cell ").next().and_then(|t| t.trim().parse().ok()).expect("a cell id in the message");
    let mut rows = sim.world.query::<(&explant_core::CellId, &explant_core::Row)>();
    let at_row_5 = rows.iter(&sim.world).find(|(_, r)| r.0 == 5).map(|(c, _)| c.0);
    assert_eq!(Some(id), at_row_5, "the message names the cell of row 5");
    assert_eq!(sim.cells().expression, before.expression, "the failed respond step changed expression");
    assert!(sim.cells().expression.iter().all(|x| x.is_finite()));
}
