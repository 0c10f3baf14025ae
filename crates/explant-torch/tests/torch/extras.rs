//! Optional model outputs: secretion per cell and ligand, and fate scores (apoptosis
//! hazard, cycle progression), declared in the metadata and acted on by the simulation.

use std::path::{Path, PathBuf};

use explant_core::{Ligands, ModelSignature, ResponseInput, ResponseModel, Simulation};
use explant_scene::LoadedScene;
use explant_torch::{CheckCase, ModelMeta, TorchModel, meta_path};
use tch::{Kind, Tensor};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("explant-extras-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `scenes/default.toml` for 30 min with WNT3A neither exported by cells nor decaying:
/// the only source of ligand is the model's secretion.
fn scene() -> LoadedScene {
    let path = repo().join("scenes/default.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("duration = 240.0", "duration = 30.0")
        .replace("decay = 0.02", "decay = 0.0")
        .replace("export_rate = 30.0", "export_rate = 0.0");
    LoadedScene::from_str(&text, &path).unwrap()
}

/// A traced model with no expression change (`dx/dt = 0`) that, as declared, also
/// returns `secretion` (amount/min, every cell) and fate scores (`hazard` per minute for
/// responders, 0 for organisers; progression 1). `returns` may differ from `declares`
/// to test the refusals. The outputs come side by side in one tensor.
fn model(dir: &Path, secretion: f32, hazard: f32, declares: (bool, bool), returns: (bool, bool)) -> PathBuf {
    model_with(dir, secretion, hazard, 1.0, declares, returns)
}

/// [`model`] with a responder cycle progression factor `progression`.
fn model_with(
    dir: &Path,
    secretion: f32,
    hazard: f32,
    progression: f32,
    declares: (bool, bool),
    returns: (bool, bool),
) -> PathBuf {
    let sc = scene();
    let (g, l, t) = (sc.scene.genes.len(), sc.scene.ligands.len(), sc.scene.cell_types.len());
    let example = [
        Tensor::zeros([2, g as i64], (Kind::Float, tch::Device::Cpu)),
        Tensor::zeros([2, l as i64], (Kind::Float, tch::Device::Cpu)),
        Tensor::zeros([2, g as i64], (Kind::Float, tch::Device::Cpu)),
        Tensor::zeros([2, t as i64], (Kind::Float, tch::Device::Cpu)),
    ];
    let module = tch::CModule::create_by_tracing("Extras", "forward", &example, &mut |inp: &[Tensor]| {
        let mut out = vec![inp[0].zeros_like()];
        if returns.0 {
            out.push(inp[1].zeros_like() + f64::from(secretion));
        }
        if returns.1 {
            let responder = inp[3].narrow(1, 1, 1);
            let slow = &responder * f64::from(1.0 - progression);
            out.push(Tensor::cat(&[&responder * f64::from(hazard), slow.neg() + 1.0], 1));
        }
        // Side by side in one tensor (tch's tracer exports a single output).
        vec![Tensor::cat(&out, 1)]
    })
    .unwrap();
    let pt = dir.join("extras.pt");
    module.save(&pt).unwrap();
    let sig = ModelSignature::of_scene(&sc.scene);
    let meta = ModelMeta {
        format: "explant-response-model".into(),
        version: 1,
        genes: sig.genes,
        ligands: sig.ligands,
        cell_types: sig.cell_types,
        neighbour_counts: false,
        secretion: declares.0,
        fate: declares.1,
        contract: "test".into(),
        training: None,
        learned: None,
        check: CheckCase {
            expression: vec![0.0; g],
            sensed: vec![0.0; l],
            contact: vec![0.0; g],
            cell_type: 1,
            neighbour_types: None,
            output: vec![0.0; g],
            teacher_output: None,
            secretion: declares.0.then(|| vec![secretion; l]),
            fate: declares.1.then(|| vec![hazard, progression]),
        },
    };
    meta.write(&meta_path(&pt)).unwrap();
    pt
}

fn run(pt: &Path) -> Simulation {
    run_in(&scene(), pt)
}

fn run_in(sc: &LoadedScene, pt: &Path) -> Simulation {
    let m = TorchModel::load_for(pt, &ModelSignature::of_scene(&sc.scene), 1).unwrap();
    let mut sim = Simulation::new(&sc.scene, Box::new(explant_field::CpuDiffusion::new()), Box::new(m)).unwrap();
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
    sim
}

#[test]
fn every_output_of_every_chunk_lands_on_its_own_rows_when_chunks_run_in_parallel() {
    let dir = tmpdir("parallel");
    let (secretion, hazard) = (0.25f32, 0.125f32);
    let pt = model_with(&dir, secretion, hazard, 0.5, (true, true), (true, true));
    let sc = scene();
    let (g, l) = (sc.scene.genes.len(), sc.scene.ligands.len());
    let n = 2 * explant_torch::CHUNK_ROWS + 5;
    // Organisers (type 0) on every third row, so a misplaced chunk shows in the fate rows.
    let ty: Vec<u32> = (0..n).map(|i| u32::from(i % 3 != 0)).collect();
    let (x, s, c) = (vec![1.0f32; n * g], vec![0.5f32; n * l], vec![0.0f32; n * g]);
    let input = ResponseInput {
        cells: n,
        expression: &x,
        sensed: &s,
        contact: &c,
        neighbour_types: &[],
        cell_type: &ty,
        dt: 0.5,
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (rates, sec, fate) = pool.install(|| {
        let mut m = TorchModel::load_for(&pt, &ModelSignature::of_scene(&sc.scene), 0).unwrap();
        assert_eq!(m.parallel_copies(), 2);
        let (mut r, mut s, mut f) = (vec![f32::NAN; n * g], vec![f32::NAN; n * l], vec![f32::NAN; n * 2]);
        m.respond(&input, &mut r, &mut s, &mut f).unwrap();
        (r, s, f)
    });
    assert!(rates.iter().all(|&v| v == 0.0));
    assert!(sec.iter().all(|&v| v == secretion));
    for i in 0..n {
        let responder = ty[i] == 1;
        let want = if responder { [hazard, 0.5] } else { [0.0, 1.0] };
        assert_eq!([fate[2 * i], fate[2 * i + 1]], want, "row {i} (type {})", ty[i]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn model_secretion_adds_exactly_its_amount_to_the_grid() {
    let dir = tmpdir("secretion");
    let pt = model(&dir, 0.5, 0.0, (true, false), (true, false));
    let mut sim = run(&pt);
    let cells = sim.cells().ids.len() as f64;
    let ligands = sim.world.resource::<Ligands>();
    let grid = ligands.field.grid;
    let total: f64 = ligands.field.data.iter().map(|&c| f64::from(c)).sum::<f64>() * f64::from(grid.voxel_volume());
    // 0.5 amount/min from every cell for 30 min, nothing lost (no decay, zero flux).
    let expected = 0.5 * cells * 30.0;
    assert!((total - expected).abs() < 1e-3 * expected, "grid holds {total}, expected {expected}");
    assert!((ligands.exchanged[0] - expected).abs() < 1e-3 * expected, "ledger {} vs {expected}", ligands.exchanged[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn model_fate_hazard_removes_the_expected_fraction_of_the_cells_it_targets() {
    let dir = tmpdir("fate");
    let hazard = 0.02f32;
    let pt = model(&dir, 0.0, hazard, (false, true), (false, true));
    let sc = scene();
    let start = Simulation::new(
        &sc.scene,
        Box::new(explant_field::CpuDiffusion::new()),
        Box::new(explant_core::Teacher::from_scene(&sc.scene)),
    )
    .unwrap()
    .cells();
    let count = |c: &explant_core::CellTable, ty: u32| c.cell_types.iter().filter(|&&t| t == ty).count() as f64;
    let mut sim = run(&pt);
    let end = sim.cells();
    // Organisers (hazard 0) all stay; responders survive with probability e^(−h T) (the
    // default scene has no apoptosis rule, so an apoptotic cell goes at the next step).
    assert_eq!(count(&end, 0), count(&start, 0));
    let n = count(&start, 1);
    let p = (-f64::from(hazard) * 30.0).exp();
    let sd = (n * p * (1.0 - p)).sqrt();
    let survivors = count(&end, 1);
    assert!((survivors - n * p).abs() < 4.0 * sd, "{survivors} of {n} responders left, expected {} ± {sd}", n * p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn declared_outputs_the_model_does_not_return_are_refused_at_load() {
    let dir = tmpdir("refuse");
    let pt = model(&dir, 0.5, 0.01, (true, true), (true, false));
    let err = TorchModel::load(&pt, 1).unwrap_err().to_string();
    assert!(
        err.contains("returned shape [1, 8]; its metadata declares rates + secretion + fate, so expected [1, 10]"),
        "{err}"
    );
    let pt = model(&dir, 0.5, 0.01, (true, false), (false, false));
    let err = TorchModel::load(&pt, 1).unwrap_err().to_string();
    assert!(err.contains("returned shape [1, 7]; its metadata declares rates + secretion"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn model_progression_factor_holds_or_lets_the_cycle_run() {
    // Responders get a 20 min cycle: in 30 min every one divides at least once, unless
    // the model holds their cycle (progression 0).
    let dir = tmpdir("progression");
    let base = scene();
    let text = std::fs::read_to_string(repo().join("scenes/default.toml"))
        .unwrap()
        .replace("duration = 240.0", "duration = 30.0")
        .replace("cells = 1500", "cells = 300")
        .replace(
            "bias = { FZD7 = 6.0, NOTCH1 = 6.0, DLL1 = 3.0 }",
            "bias = { FZD7 = 6.0, NOTCH1 = 6.0, DLL1 = 3.0 }\ncycle = { duration = 20.0, cv = 0.0 }",
        );
    let cycling = LoadedScene::from_str(&text, &base.path).unwrap();
    let responders = |sim: &mut Simulation| sim.cells().cell_types.iter().filter(|&&t| t == 1).count();
    let start = responders(
        &mut Simulation::new(
            &cycling.scene,
            Box::new(explant_field::CpuDiffusion::new()),
            Box::new(explant_core::Teacher::from_scene(&cycling.scene)),
        )
        .unwrap(),
    );
    let held = responders(&mut run_in(&cycling, &model_with(&dir, 0.0, 0.0, 0.0, (false, true), (false, true))));
    assert_eq!(held, start, "a held cycle must not divide");
    let free = responders(&mut run_in(&cycling, &model_with(&dir, 0.0, 0.0, 1.0, (false, true), (false, true))));
    assert!(free >= 2 * start, "{free} responders from {start} with a 20 min cycle over 30 min");
    let _ = std::fs::remove_dir_all(&dir);
}
