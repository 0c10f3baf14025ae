//! `explant bench diffusion`: the cost of a diffusion–decay step on this machine, in ns
//! per voxel-ligand-step (BioFVM's unit) and voxel-ligand updates per second.
//! `explant bench tissue`: the cost of a tick's cell stages (neighbours, mechanics, fate)
//! on packed tissues of 10⁴–10⁶ cells, in ns per cell, and the memory per cell.
//! `explant bench model`: cells per second through the TorchScript response model
//! (`TorchModel::rates`, copies and one-hot included) beside libtorch's raw rate for the
//! same dense layers, whole and in `CHUNK_ROWS` chunks.

use std::time::Instant;

use anyhow::{Context, Result};
use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, Scheme, substeps};

use crate::backends;
use crate::cli::{BenchBackends, BenchDiffusionArgs, BenchTissueArgs};

fn threads(n: usize) -> Result<()> {
    if n > 0 {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("cannot set up the worker threads")?;
    }
    Ok(())
}

/// Time diffusion steps on each requested backend and print a table.
pub fn diffusion(args: BenchDiffusionArgs) -> Result<()> {
    threads(args.threads)?;
    let n = args.size;
    let grid = Grid { nx: n, ny: n, nz: if args.dims == 3 { n } else { 1 }, dx: args.dx, origin: [0.0; 3] };
    let params = vec![ChannelParams::new(args.diffusion, args.decay); args.channels];
    let scheme = Scheme::from(args.scheme);
    let dt = args.dt;
    let per_step = (grid.voxels() * args.channels) as f64;
    let plan = match scheme {
        Scheme::Explicit => format!("{} explicit substeps per step", substeps(&grid, &params, dt)?.count),
        Scheme::Implicit => "implicit (one LOD solve per step)".to_string(),
    };
    println!(
        "grid {} × {} ligands, dx {} µm, dt {} min, D {} µm²/min, decay {} /min: {plan}; median of {} steps",
        if args.dims == 3 { format!("{n}³") } else { format!("{n}²") },
        args.channels,
        args.dx,
        dt,
        args.diffusion,
        args.decay,
        args.steps
    );
    let mut backends: Vec<Box<dyn DiffusionBackend>> = Vec::new();
    if args.backend != BenchBackends::Gpu {
        backends.push(Box::new(CpuDiffusion::with_scheme(scheme)));
    }
    if args.backend != BenchBackends::Cpu {
        match backends::gpu(false, scheme) {
            Ok(b) => backends.push(b),
            Err(e) if args.backend == BenchBackends::Both => eprintln!("gpu: skipped: {e}"),
            Err(e) => return Err(e),
        }
    }
    let mut results = Vec::new();
    for mut b in backends {
        let mut field = Field::zeros(grid, args.channels);
        for (i, v) in field.data.iter_mut().enumerate() {
            *v = ((i.wrapping_mul(2_654_435_761) >> 7) % 1000) as f32 * 1e-3;
        }
        b.step(&mut field, &params, dt).with_context(|| format!("warm-up step on {}", b.name()))?;
        let mut times: Vec<f64> = Vec::with_capacity(args.steps);
        for _ in 0..args.steps.max(1) {
            let t = Instant::now();
            b.step(&mut field, &params, dt)?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{:<72} {:>10.3} ms/step {:>9.3} ns/voxel-ligand-step {:>10.3e} voxel-ligand-steps/s",
            b.name(),
            median * 1e3,
            median * 1e9 / per_step,
            per_step / median
        );
        results.push((b.name(), median, field.data.iter().map(|&v| f64::from(v)).sum::<f64>()));
    }
    if results.len() == 2 {
        let (a, b) = (&results[0], &results[1]);
        println!(
            "ratio {} / {}: {:.2}×; field sums {:.6e} vs {:.6e} (relative difference {:.1e})",
            a.0,
            b.0,
            a.1 / b.1,
            a.2,
            b.2,
            ((a.2 - b.2) / a.2.abs().max(1e-30)).abs()
        );
    }
    println!("(threads: {}; each GPU step uploads the field and reads it back)", rayon::current_num_threads());
    Ok(())
}

/// A packed tissue of `n` cells (radius 5 µm, hexagonal in 2D, cubic in 3D, filling a
/// disk or ball), one gene, no ligands, the teacher with no edges, the default mechanics
/// and a contact radius of 2.5 cell radii.
fn tissue_scene(n: usize, dims: u8) -> Result<explant_scene::Scene> {
    // Area or volume per cell at spacing 10 µm; the domain leaves a 10 % margin.
    let radius = if dims == 2 {
        (n as f64 * 100.0 * 3f64.sqrt() / 2.0 / std::f64::consts::PI).sqrt()
    } else {
        (n as f64 * 1000.0 * 3.0 / (4.0 * std::f64::consts::PI)).cbrt()
    } as f32;
    let side = 2.2 * radius;
    let c = side / 2.0;
    let (size, centre) = if dims == 2 {
        (format!("[{side}, {side}]"), format!("[{c}, {c}]"))
    } else {
        (format!("[{side}, {side}, {side}]"), format!("[{c}, {c}, {c}]"))
    };
    let text = format!(
        r#"version = 1
name = "bench-tissue"
genes = ["G"]
[time]
dt = 0.1
duration = 1.0
record_every = 1000.0
[grid]
size = {size}
dx = {dx}
[contact]
radius = 12.5
[[cell_types]]
name = "cell"
[tissue]
centre = {centre}
radius = {radius}
cells = {n}
cell_radius = 5.0
cell_type = "cell"
"#,
        dx = side / 16.0,
    );
    Ok(explant_scene::LoadedScene::from_str(&text, std::path::Path::new("bench-tissue.toml"))?.scene)
}

/// Resident memory of this process, bytes (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Time the cell stages of a tick on packed tissues of each size and print a table.
pub fn tissue(args: BenchTissueArgs) -> Result<()> {
    use explant_core::{Simulation, Stage, Teacher};
    threads(args.threads)?;
    println!(
        "packed tissue, cell radius 5 µm, contact radius 12.5 µm, default mechanics; median of {} ticks; {} threads",
        args.ticks,
        rayon::current_num_threads()
    );
    println!(
        "{:>3} {:>9} {:>11} {:>11} {:>11} {:>11} {:>13} {:>11} {:>12}",
        "dim", "cells", "build s", "neigh ms", "mech ms", "fate ms", "cell stages ms", "ns/cell", "bytes/cell"
    );
    for &dims in &args.dims {
        let mut first_per_cell = None;
        for &n in &args.cells {
            let scene = tissue_scene(n, dims)?;
            let before = resident_bytes();
            let t = Instant::now();
            let mut sim =
                Simulation::new(&scene, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(&scene)))?;
            sim.step()?;
            let build = t.elapsed().as_secs_f64();
            let memory = resident_bytes().saturating_sub(before);
            let mut per_stage: Vec<[f64; 3]> = Vec::new();
            for _ in 0..args.ticks.max(1) {
                let before = sim.stage_times();
                sim.step()?;
                let after = sim.stage_times();
                let d = |s: Stage| (after[s as usize].1 - before[s as usize].1).as_secs_f64();
                per_stage.push([d(Stage::Sense), d(Stage::Mechanics), d(Stage::Fate)]);
            }
            let median = |k: usize| {
                let mut v: Vec<f64> = per_stage.iter().map(|r| r[k]).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let mut totals: Vec<f64> = per_stage.iter().map(|r| r.iter().sum()).collect();
            totals.sort_by(f64::total_cmp);
            let total = totals[totals.len() / 2];
            let cells = sim.cells().ids.len();
            let per_cell = total * 1e9 / cells as f64;
            let first = *first_per_cell.get_or_insert(per_cell);
            println!(
                "{dims:>3} {cells:>9} {build:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>13.2} {per_cell:>11.1} {:>12.0}   ({:.2}× the ns/cell of the smallest)",
                median(0) * 1e3,
                median(1) * 1e3,
                median(2) * 1e3,
                total * 1e3,
                memory as f64 / cells as f64,
                per_cell / first
            );
        }
    }
    println!("neigh = the sense stage (cell-list neighbour search + contact means); cell stages = neigh + mech + fate");
    Ok(())
}

/// Median seconds of each of `paths` over `reps` rounds, after one warm-up call each.
/// The paths take turns within a round, so load from other processes on the machine
/// falls on all of them alike.
#[cfg(feature = "torch")]
fn interleaved_medians(reps: usize, paths: &mut [&mut dyn FnMut() -> Result<()>]) -> Result<Vec<f64>> {
    for f in paths.iter_mut() {
        f()?;
    }
    let mut times = vec![Vec::with_capacity(reps.max(1)); paths.len()];
    for _ in 0..reps.max(1) {
        for (f, t) in paths.iter_mut().zip(&mut times) {
            let start = Instant::now();
            f()?;
            t.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

/// Time `TorchModel::rates` on synthetic populations beside plain tch matmuls of the same
/// layer shapes (whole, and in `CHUNK_ROWS` chunks) and print a table.
#[cfg(feature = "torch")]
pub fn model(args: crate::cli::BenchModelArgs) -> Result<()> {
    use explant_core::{ResponseInput, ResponseModel};
    use explant_torch::{CHUNK_ROWS, RawMlp, TorchModel};

    if let Some(bad) = args.cells.iter().find(|&&n| n == 0) {
        anyhow::bail!("`--cells` values must be at least 1 (got `{bad}`)");
    }
    let mut model =
        TorchModel::load(&args.model, args.threads).with_context(|| format!("loading `{}`", args.model.display()))?;
    let layers = model.layer_shapes()?;
    let meta = model.meta().clone();
    let (g, l, t) = (meta.genes.len(), meta.ligands.len(), meta.cell_types.len());
    // Inputs uniform in [0, upper end of the training range] (1 when the model has none).
    let ranges = meta.training.as_ref().map(|tr| tr.input_ranges.clone()).filter(|r| r.len() == g + l);
    let range = |k: usize| ranges.as_ref().map_or(1.0, |r| r[k]);
    let shapes: Vec<String> =
        std::iter::once(layers[0].inputs.to_string()).chain(layers.iter().map(|s| s.outputs.to_string())).collect();
    println!(
        "{} on {:?}: dense layers {} (tanh between); {} libtorch threads; median of {} reps after a warm-up",
        args.model.display(),
        model.device(),
        shapes.join(" → "),
        explant_torch::intra_op_threads(),
        args.reps
    );
    println!(
        "{:>9} {:>14} {:>16} {:>18} {:>12} {:>14}",
        "cells", "model cells/s", "raw whole cells/s", "raw chunked cells/s", "model/whole", "model/chunked"
    );
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut last_ratio = None;
    for &n in &args.cells {
        let expression: Vec<f32> = (0..n * g).map(|i| uniform() * range(i % g)).collect();
        let sensed: Vec<f32> = (0..n * l).map(|i| uniform() * range(g + i % l)).collect();
        let contact: Vec<f32> = (0..n * g).map(|i| uniform() * range(i % g)).collect();
        let cell_type: Vec<u32> = (0..n).map(|_| ((uniform() * t as f32) as u32).min(t as u32 - 1)).collect();
        let counts: Vec<f32> = if model.meta().neighbour_counts {
            (0..n * t).map(|_| (uniform() * 4.0).floor()).collect()
        } else {
            Vec::new()
        };
        let input = ResponseInput {
            cells: n,
            expression: &expression,
            sensed: &sensed,
            contact: &contact,
            neighbour_types: &counts,
            cell_type: &cell_type,
            dt: 0.1,
        };
        let mut rates = vec![0.0f32; n * g];
        let raw = RawMlp::new(&layers, n, model.device());
        let times = interleaved_medians(
            args.reps,
            &mut [
                &mut || Ok(model.rates(&input, &mut rates)?),
                &mut || {
                    std::hint::black_box(raw.run_whole());
                    Ok(())
                },
                &mut || {
                    std::hint::black_box(raw.run_chunked(CHUNK_ROWS));
                    Ok(())
                },
            ],
        )?;
        let (model_s, whole_s, chunked_s) = (times[0], times[1], times[2]);
        drop(raw);
        if rates.iter().any(|r| !r.is_finite()) {
            anyhow::bail!("the model returned a non-finite rate for {n} synthetic cells");
        }
        let rate = |s: f64| n as f64 / s;
        println!(
            "{n:>9} {:>14.3e} {:>16.3e} {:>18.3e} {:>11.0} % {:>12.0} %",
            rate(model_s),
            rate(whole_s),
            rate(chunked_s),
            100.0 * whole_s / model_s,
            100.0 * chunked_s / model_s
        );
        last_ratio = Some((n, whole_s / model_s, chunked_s / model_s));
    }
    if let Some((n, whole, chunked)) = last_ratio {
        let worst = whole.min(chunked);
        println!(
            "at {n} cells the model runs at {:.0} % of the raw whole-tensor rate and {:.0} % of the raw chunked rate: {} the goal of 50 % of the faster raw path",
            100.0 * whole,
            100.0 * chunked,
            if worst >= 0.5 { "meets" } else { "below" }
        );
    }
    println!(
        "raw = the same dense layers as plain tch linear + tanh on one contiguous [N, {}] float32 tensor (random weights, no copies in or out); chunked = the same on {CHUNK_ROWS}-row views",
        layers[0].inputs
    );
    Ok(())
}

/// The model benchmark needs libtorch.
#[cfg(not(feature = "torch"))]
pub fn model(_args: crate::cli::BenchModelArgs) -> Result<()> {
    anyhow::bail!("`explant bench model` needs TorchScript support, which is not enabled in this build")
}
