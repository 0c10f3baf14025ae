//! Criterion benchmarks, one group per stage that matters now:
//!
//! - `diffusion`: one diffusion–decay step of a 512² × 8-ligand 2D field and a
//!   64³ × 4-ligand 3D field, CPU (rayon) vs GPU (wgpu; lavapipe where no GPU exists);
//!   throughput in channel-voxel substeps.
//! - `respond`: one response-model call on N cells, teacher vs the shipped TorchScript model.
//! - `tick`: one whole tick of the default scene (CPU diffusion, teacher).
//!
//! `cargo bench -p explant-cli --bench stages`; results go in `BENCHMARKS.md`.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use explant_core::{ModelSignature, ResponseInput, ResponseModel, Simulation, Teacher};
use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, substeps};
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
    let cases = [
        ("2d_512x512x8", Grid { nx: 512, ny: 512, nz: 1, dx: 10.0, origin: [0.0; 3] }, 8usize),
        ("3d_64x64x64x4", Grid { nx: 64, ny: 64, nz: 64, dx: 10.0, origin: [0.0; 3] }, 4usize),
    ];
    for (name, grid, channels) in cases {
        let params: Vec<ChannelParams> =
            (0..channels).map(|c| ChannelParams::new(1000.0 + 100.0 * c as f32, 0.1)).collect();
        // One substep exactly: dt at the stability limit.
        let dt = 0.9 * grid.dx * grid.dx / (2.0 * grid.dims() as f32 * 1700.0);
        let plan = substeps(&grid, &params, dt).expect("valid plan");
        group.throughput(Throughput::Elements((grid.voxels() * channels) as u64 * u64::from(plan.count)));
        let mut backends: Vec<(String, Box<dyn DiffusionBackend>)> =
            vec![("cpu".into(), Box::new(CpuDiffusion::new()))];
        match explant_gpu::GpuDiffusion::new(explant_gpu::AdapterPolicy::Any) {
            Ok(g) => backends.push(("gpu".into(), Box::new(g))),
            Err(e) => eprintln!("SKIPPED gpu: {e}"),
        }
        for (label, mut backend) in backends {
            let mut f = field(grid, channels);
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| backend.step(&mut f, &params, dt).expect("step"))
            });
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
        let input = ResponseInput { cells: n, expression: &x, sensed: &s, contact: &cn, cell_type: &t, dt: 0.5 };
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
    group.throughput(Throughput::Elements(sc.tissue.cells as u64));
    group.bench_function("default_scene/cpu_teacher", |b| b.iter(|| sim.step().expect("tick")));
    group.finish();
}

criterion_group!(benches, diffusion, respond, tick);
criterion_main!(benches);
