//! Criterion benchmarks, one group per stage that matters now:
//!
//! - `diffusion`: one diffusion–decay step (dt 0.01 min, D 1e5 µm²/min, dx 10 µm) of a
//!   1024² × 8-ligand 2D field and a 100³ × 10-ligand 3D field, implicit and explicit,
//!   CPU (rayon) vs GPU (wgpu; lavapipe where no GPU exists); throughput in
//!   voxel-ligand-steps.
//! - `respond`: one response-model call on N cells, teacher vs the shipped TorchScript model.
//! - `tick`: one whole tick of the default scene (CPU diffusion, teacher).
//!
//! `cargo bench -p explant-cli --bench stages`; results go in `BENCHMARKS.md`.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use explant_core::{ModelSignature, ResponseInput, ResponseModel, Simulation, Teacher};
use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, Scheme};
use explant_scene::LoadedScene;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn field(grid: Grid, channels: usize) -> Field {
    let mut f = Field::zeros(grid, channels);
    for (i, v) in f.data.iter_mut().enumerate() {
        *v = ((i.wrapping_mul(2654435761) >> 7) % 1000) as f32 * 1e-3;
    }
    f
}

fn diffusion(c: &mut Criterion) {
    let mut group = c.benchmark_group("diffusion");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(10));
    // The workloads of the ligand-fields issue: dx = 10 µm, dt = 0.01 min, D = 1e5 µm²/min,
    // decay 0.1/min (the 3D one is BioFVM's own performance test).
    let cases = [
        ("2d_1024x1024x8", Grid { nx: 1024, ny: 1024, nz: 1, dx: 10.0, origin: [0.0; 3] }, 8usize),
        ("3d_100x100x100x10", Grid { nx: 100, ny: 100, nz: 100, dx: 10.0, origin: [0.0; 3] }, 10usize),
    ];
    let dt = 0.01;
    for (name, grid, channels) in cases {
        let params = vec![ChannelParams::new(1.0e5, 0.1); channels];
        // Throughput in voxel-ligand-steps (BioFVM's unit), whatever the substeps.
        group.throughput(Throughput::Elements((grid.voxels() * channels) as u64));
        for scheme in [Scheme::Implicit, Scheme::Explicit] {
            let mut backends: Vec<(String, Box<dyn DiffusionBackend>)> =
                vec![(format!("cpu_{scheme:?}"), Box::new(CpuDiffusion::with_scheme(scheme)))];
            match explant_gpu::GpuDiffusion::with_scheme(explant_gpu::AdapterPolicy::Any, scheme) {
                Ok(g) => backends.push((format!("gpu_{scheme:?}"), Box::new(g))),
                Err(e) => eprintln!("SKIPPED gpu {scheme:?}: {e}"),
            }
            for (label, mut backend) in backends {
                let mut f = field(grid, channels);
                group.bench_function(format!("{name}/{label}"), |b| {
                    b.iter(|| backend.step(&mut f, &params, dt).expect("step"))
                });
            }
        }
    }
    group.finish();
}

fn respond(c: &mut Criterion) {
    let scene = LoadedScene::from_file(&repo().join("scenes/default.toml")).expect("default scene");
    let sc = &scene.scene;
    let (g, l) = (sc.genes.len(), sc.ligands.len());
    let mut group = c.benchmark_group("respond");
    group.sample_size(10);
    for n in [10_000usize, 100_000] {
        let x: Vec<f32> = (0..n * g).map(|i| (i % 17) as f32 * 0.1).collect();
        let s: Vec<f32> = (0..n * l).map(|i| (i % 5) as f32 * 0.2).collect();
        let cn: Vec<f32> = (0..n * g).map(|i| (i % 7) as f32 * 0.1).collect();
        let t: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let input = ResponseInput {
            cells: n,
            expression: &x,
            sensed: &s,
            contact: &cn,
            neighbour_types: &[],
            cell_type: &t,
            dt: 0.5,
        };
        let mut out = vec![0.0; n * g];
        group.throughput(Throughput::Elements(n as u64));
        let mut teacher = Teacher::from_scene(sc);
        group.bench_function(format!("teacher/{n}"), |b| b.iter(|| teacher.rates(&input, &mut out).expect("teacher")));
        let mut torch =
            explant_torch::TorchModel::load_for(&repo().join("models/default.pt"), &ModelSignature::of_scene(sc), 0)
                .expect("shipped model");
        group.bench_function(format!("torchscript/{n}"), |b| b.iter(|| torch.rates(&input, &mut out).expect("model")));
    }
    group.finish();
}

fn tick(c: &mut Criterion) {
    let scene = LoadedScene::from_file(&repo().join("scenes/default.toml")).expect("default scene");
    let sc = &scene.scene;
    let mut sim = Simulation::new(sc, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(sc))).expect("sim");
    let mut group = c.benchmark_group("tick");
    group.sample_size(20);
    group.throughput(Throughput::Elements(sc.expected_cells().unwrap_or(0) as u64));
    group.bench_function("default_scene/cpu_teacher", |b| b.iter(|| sim.step().expect("tick")));
    group.finish();
}

criterion_group!(benches, diffusion, respond, tick);
criterion_main!(benches);
