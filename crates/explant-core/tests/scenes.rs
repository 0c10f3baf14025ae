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
