//! Every shipped scene loads, builds and runs a few ticks with the teacher.

use std::path::Path;

use explant_core::{Simulation, Teacher};
use explant_field::CpuDiffusion;
use explant_scene::LoadedScene;

#[test]
fn every_shipped_scene_runs_a_few_ticks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes");
    let mut ran = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let scene = LoadedScene::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let sc = &scene.scene;
        let mut sim =
            Simulation::new(sc, Box::new(CpuDiffusion::with_scheme(sc.grid.scheme)), Box::new(Teacher::from_scene(sc)))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for _ in 0..5 {
            sim.step().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        assert_eq!(sim.clock().tick, 5);
        ran.push(path.file_name().unwrap().to_string_lossy().to_string());
    }
    ran.sort();
    assert!(ran.len() >= 2, "expected the shipped scenes, found {ran:?}");
    eprintln!("ran {ran:?}");
}

#[test]
fn morphogen_flag_scene_reads_the_gradient_as_three_stripes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/morphogen_flag.toml");
    let scene = LoadedScene::from_file(&path).unwrap();
    let sc = &scene.scene;
    let mut sim =
        Simulation::new(sc, Box::new(CpuDiffusion::with_scheme(sc.grid.scheme)), Box::new(Teacher::from_scene(sc)))
            .unwrap();
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
    let t = sim.cells();
    let (id1, msx2) = (sc.gene_index("ID1").unwrap(), sc.gene_index("MSX2").unwrap());
    let g = sc.genes.len();
    let band = |lo: f32, hi: f32, gene: usize| {
        let v: Vec<f32> = (0..t.ids.len())
            .filter(|&i| (lo..hi).contains(&t.positions[i][0]))
            .map(|i| t.expression[i * g + gene])
            .collect();
        assert!(v.len() > 20, "band {lo}–{hi} has {} cells", v.len());
        v.iter().sum::<f32>() / v.len() as f32
    };
    // Near the boundary source: MSX2 on, ID1 repressed by it.
    assert!(band(100.0, 150.0, msx2) > 1.5 && band(100.0, 150.0, id1) < 0.2);
    // Middle stripe: ID1 on, MSX2 off.
    assert!(band(200.0, 300.0, id1) > 1.0 && band(200.0, 300.0, msx2) < 0.3);
    // Far from the source both fade.
    assert!(band(350.0, 400.0, id1) < 0.6 && band(350.0, 400.0, msx2) < 0.05);
    // The field decays monotonically away from the fixed face at x = 0.
    let f = &sim.ligands().field;
    let row: Vec<f32> = (0..f.grid.nx).map(|x| f.data[15 * f.grid.nx + x]).collect();
    assert!(row.windows(2).all(|w| w[0] >= w[1]), "{row:?}");
    assert!(row[0] > 0.85 && row[0] < 1.0, "first voxel {}", row[0]);
}
