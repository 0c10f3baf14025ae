//! Benchmarks of the stages on this machine, as `explant bench` prints them.
//!
//! - [`diffusion`]: the cost of a diffusion–decay step, in ns per voxel-ligand-step
//!   (BioFVM's unit) and voxel-ligand updates per second, on the CPU and the GPU;
//! - [`tissue`]: the cost of a tick's cell stages (neighbours, mechanics, fate) on packed
//!   tissues of 10⁴–10⁶ cells, in ns per cell, and the memory per cell;
//! - `backends::torch::bench_model`: cells per second through the TorchScript response
//!   model beside libtorch's raw rate for the same dense layers.
//!
//! Each prints a table to `out`; the numbers are medians of repeated steps.

use std::io::Write;
use std::time::Instant;

use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, Scheme, substeps};

use crate::RunError;

/// Backends measured by [`diffusion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchBackends {
    /// CPU and GPU (any adapter); a GPU that cannot start is skipped with a note.
    Both,
    /// CPU only.
    Cpu,
    /// GPU only (any adapter).
    Gpu,
}

/// What [`diffusion`] measures: a synthetic field of `channels` ligands on a `size`ⁿ grid.
#[derive(Debug, Clone, Copy)]
pub struct DiffusionBench {
    /// Voxels along each axis.
    pub size: usize,
    /// 2 or 3.
    pub dims: u8,
    /// Ligand channels.
    pub channels: usize,
    /// Voxel edge, µm.
    pub dx: f32,
    /// Time step, minutes.
    pub dt: f32,
    /// Diffusion coefficient, µm²/min.
    pub diffusion: f32,
    /// Decay rate, 1/min.
    pub decay: f32,
    /// Time integration scheme.
    pub scheme: Scheme,
    /// Timed steps (after one warm-up step).
    pub steps: usize,
    /// Which backends.
    pub backend: BenchBackends,
}

/// What [`tissue`] measures.
#[derive(Debug, Clone)]
pub struct TissueBench {
    /// Population sizes.
    pub cells: Vec<usize>,
    /// Dimensions (2 and/or 3).
    pub dims: Vec<u8>,
    /// Timed ticks per size (after one warm-up tick).
    pub ticks: usize,
}

/// Time diffusion steps on each requested backend, print a table to `out` and return
/// the same numbers as JSON (`explant bench diffusion --json`): `config`, one entry of
/// `results` per backend (`backend`, `ms_per_step`, `ns_per_voxel_ligand_step`,
/// `voxel_ligand_steps_per_s`, `field_sum`), `skipped` (a backend that could not start,
/// and why), and `ratio` (first / second backend's time) when two ran.
pub fn diffusion(args: &DiffusionBench, out: &mut dyn Write) -> Result<serde_json::Value, RunError> {
    let n = args.size;
    let grid = Grid { nx: n, ny: n, nz: if args.dims == 3 { n } else { 1 }, dx: args.dx, origin: [0.0; 3] };
    let params = vec![ChannelParams::new(args.diffusion, args.decay); args.channels];
    let scheme = args.scheme;
    let dt = args.dt;
    let per_step = (grid.voxels() * args.channels) as f64;
    let plan = match scheme {
        Scheme::Explicit => format!("{} explicit substeps per step", substeps(&grid, &params, dt)?.count),
        Scheme::Implicit => "implicit (one LOD solve per step)".to_string(),
        Scheme::Adi => "adi (Douglas: one stencil pass and one half-step solve per axis per step)".to_string(),
    };
    let _ = writeln!(
        out,
        "grid {} × {} ligands, dx {} µm, dt {} min, D {} µm²/min, decay {} /min: {plan}; median of {} steps",
        if args.dims == 3 { format!("{n}³") } else { format!("{n}²") },
        args.channels,
        args.dx,
        dt,
        args.diffusion,
        args.decay,
        args.steps
    );
    let mut skipped = Vec::new();
    let mut backends: Vec<Box<dyn DiffusionBackend>> = Vec::new();
    if args.backend != BenchBackends::Gpu {
        backends.push(Box::new(CpuDiffusion::with_scheme(scheme)));
    }
    if args.backend != BenchBackends::Cpu {
        match crate::backends::gpu::diffusion(false, scheme) {
            Ok(b) => backends.push(b),
            Err(e) if args.backend == BenchBackends::Both => {
                let _ = writeln!(out, "gpu: skipped: {}", crate::error_chain(&e));
                skipped.push(serde_json::json!({ "backend": "gpu", "why": crate::error_chain(&e) }));
            }
            Err(e) => return Err(e),
        }
    }
    let mut results = Vec::new();
    let mut resident = Vec::new();
    for mut b in backends {
        let mut field = Field::zeros(grid, args.channels);
        for (i, v) in field.data.iter_mut().enumerate() {
            *v = ((i.wrapping_mul(2_654_435_761) >> 7) % 1000) as f32 * 1e-3;
        }
        b.step(&mut field, &params, dt)?;
        let mut times: Vec<f64> = Vec::with_capacity(args.steps);
        for _ in 0..args.steps.max(1) {
            let t = Instant::now();
            b.step(&mut field, &params, dt)?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let _ = writeln!(
            out,
            "{:<72} {:>10.3} ms/step {:>9.3} ns/voxel-ligand-step {:>10.3e} voxel-ligand-steps/s",
            b.name(),
            median * 1e3,
            median * 1e9 / per_step,
            per_step / median
        );
        results.push((b.name(), median, field.data.iter().map(|&v| f64::from(v)).sum::<f64>()));
        if let Some(r) = resident_steps(b.as_mut(), &field, &params, dt, args.steps.max(1))? {
            let _ = writeln!(
                out,
                "{:<72} {:>10.3} ms/step {:>9.3} ns/voxel-ligand-step {:>10.3e} voxel-ligand-steps/s",
                format!("{} (field kept on the device)", b.name()),
                r * 1e3,
                r * 1e9 / per_step,
                per_step / r
            );
            resident.push((b.name(), r));
        }
    }
    // How close a resident step comes to the device's memory bound: the bytes it must
    // move at the least, at best at the copy rate.
    let mut bandwidth = serde_json::Value::Null;
    if let Some(&(_, seconds)) = resident.first() {
        let axes = if args.dims == 3 { 3.0 } else { 2.0 };
        let (per_value, what) = match scheme {
            // Each sweep reads and writes every value once.
            Scheme::Implicit => (axes * 8.0, format!("{axes} sweeps × read + write")),
            // Each substep reads and writes every value once (an odd count copies back once more).
            Scheme::Explicit => {
                let count = f64::from(substeps(&grid, &params, dt)?.count);
                (8.0 * (count + count % 2.0), format!("{count} substeps × read + write"))
            }
            // Take back (12 B), increment (12 B), the sweeps, finish (16 B).
            Scheme::Adi => (40.0 + axes * 8.0, format!("take back, increment, {axes} sweeps, finish")),
        };
        let moved = per_value * per_step;
        let bytes = (256u64 << 20).max(4 * per_step as u64);
        match crate::backends::gpu::copy_bandwidth(bytes, 20) {
            Ok((name, rate)) => {
                let achieved = moved / seconds;
                let _ = writeln!(
                    out,
                    "{name}: copy bandwidth {:.1} GB/s; a resident step moves at least {:.1} MB ({what}), i.e. \
                     {:.1} GB/s effective, {:.0} % of the copy bandwidth",
                    rate / 1e9,
                    moved / 1e6,
                    achieved / 1e9,
                    100.0 * achieved / rate
                );
                bandwidth = serde_json::json!({
                    "copy_bytes_per_s": rate,
                    "resident_min_bytes_per_step": moved,
                    "resident_effective_bytes_per_s": achieved,
                    "fraction_of_copy_bandwidth": achieved / rate,
                });
            }
            Err(e) => {
                let _ = writeln!(out, "copy bandwidth: not measured: {}", crate::error_chain(&e));
            }
        }
    }
    let mut ratio = serde_json::Value::Null;
    if results.len() == 2 {
        let (a, b) = (&results[0], &results[1]);
        ratio = serde_json::json!(a.1 / b.1);
        let _ = writeln!(
            out,
            "ratio {} / {}: {:.2}×; field sums {:.6e} vs {:.6e} (relative difference {:.1e})",
            a.0,
            b.0,
            a.1 / b.1,
            a.2,
            b.2,
            ((a.2 - b.2) / a.2.abs().max(1e-30)).abs()
        );
    }
    let _ = writeln!(
        out,
        "(threads: {}; a plain GPU step uploads the field and reads it back, a resident one does neither)",
        rayon::current_num_threads()
    );
    Ok(serde_json::json!({
        "bench": "diffusion",
        "config": {
            "dims": args.dims,
            "size": n,
            "voxels": grid.voxels(),
            "ligands": args.channels,
            "dx_um": decimal(args.dx),
            "dt_min": decimal(dt),
            "diffusion_um2_per_min": decimal(args.diffusion),
            "decay_per_min": decimal(args.decay),
            "scheme": plan,
            "steps": args.steps.max(1),
            "threads": rayon::current_num_threads(),
        },
        "results": results.iter().map(|(name, median, sum)| serde_json::json!({
            "backend": name,
            "ms_per_step": median * 1e3,
            "ns_per_voxel_ligand_step": median * 1e9 / per_step,
            "voxel_ligand_steps_per_s": per_step / median,
            "field_sum": sum,
        })).collect::<Vec<_>>(),
        "skipped": skipped,
        "ratio": ratio,
        "resident": resident.iter().map(|(name, seconds)| serde_json::json!({
            "backend": name,
            "ms_per_step": seconds * 1e3,
            "ns_per_voxel_ligand_step": seconds * 1e9 / per_step,
        })).collect::<Vec<_>>(),
        "bandwidth": bandwidth,
    }))
}

/// Median seconds of a step of a field kept on `b`'s device (`None` when `b` keeps
/// none): upload once, then time `steps` rounds of one resident step followed by a
/// one-voxel sample, which waits for the step to finish and moves four bytes per ligand.
fn resident_steps(
    b: &mut dyn DiffusionBackend,
    field: &Field,
    params: &[ChannelParams],
    dt: f32,
    steps: usize,
) -> Result<Option<f64>, RunError> {
    let Some(r) = b.resident() else { return Ok(None) };
    let mut one = vec![0.0; field.channels];
    r.upload(field)?;
    r.step_resident(params, dt, false)?;
    r.sample(&[0], &mut one)?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        r.step_resident(params, dt, false)?;
        r.sample(&[0], &mut one)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(Some(times[times.len() / 2]))
}

/// A packed tissue of `n` cells (radius 5 µm, hexagonal in 2D, cubic in 3D, filling a
/// disk or ball), one gene, no ligands, the teacher with no edges, the default mechanics
/// and a contact radius of 2.5 cell radii.
fn tissue_scene(n: usize, dims: u8) -> Result<explant_scene::Scene, RunError> {
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

/// `x` as the decimal it was written as (`0.1`, not `0.10000000149011612`).
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// Resident memory of this process, bytes (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Time the cell stages of a tick on packed tissues of each size, print a table to `out`
/// and return the same numbers as JSON (`explant bench tissue --json`): `config` and one
/// entry of `results` per (dims, cells) with the table's columns.
pub fn tissue(args: &TissueBench, out: &mut dyn Write) -> Result<serde_json::Value, RunError> {
    use explant_core::{Simulation, Stage, Teacher};
    let _ = writeln!(
        out,
        "packed tissue, cell radius 5 µm, contact radius 12.5 µm, default mechanics; median of {} ticks; {} threads",
        args.ticks,
        rayon::current_num_threads()
    );
    let _ = writeln!(
        out,
        "{:>3} {:>9} {:>11} {:>11} {:>11} {:>11} {:>13} {:>11} {:>12}",
        "dim", "cells", "build s", "neigh ms", "mech ms", "fate ms", "cell stages ms", "ns/cell", "bytes/cell"
    );
    let mut rows = Vec::new();
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
            let _ = writeln!(
                out,
                "{dims:>3} {cells:>9} {build:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>13.2} {per_cell:>11.1} {:>12.0}   ({:.2}× the ns/cell of the smallest)",
                median(0) * 1e3,
                median(1) * 1e3,
                median(2) * 1e3,
                total * 1e3,
                memory as f64 / cells as f64,
                per_cell / first
            );
            rows.push(serde_json::json!({
                "dims": dims,
                "cells": cells,
                "build_s": build,
                "neighbours_ms": median(0) * 1e3,
                "mechanics_ms": median(1) * 1e3,
                "fate_ms": median(2) * 1e3,
                "cell_stages_ms": total * 1e3,
                "ns_per_cell": per_cell,
                "bytes_per_cell": memory as f64 / cells as f64,
                "ns_per_cell_vs_smallest": per_cell / first,
            }));
        }
    }
    let _ = writeln!(
        out,
        "neigh = the sense stage (cell-list neighbour search + contact means); cell stages = neigh + mech + fate"
    );
    Ok(serde_json::json!({
        "bench": "tissue",
        "config": { "ticks": args.ticks.max(1), "threads": rayon::current_num_threads(), "cell_radius_um": 5.0, "contact_radius_um": 12.5 },
        "results": rows,
    }))
}

/// What [`tick`] measures: `ticks` whole ticks of a scene as `explant run` would step it
/// (its model, its backends), after one warm-up tick.
#[derive(Debug, Clone, Copy)]
pub struct TickBench {
    /// Timed ticks.
    pub ticks: u64,
    /// Where diffusion runs.
    pub diffusion: crate::DiffusionChoice,
    /// CPU worker threads the run uses (for the model's libtorch threads).
    pub threads: usize,
}

/// Step `scene` for `args.ticks` ticks after one warm-up tick and print the time per tick
/// of each stage, the whole tick, and the resident memory the simulation added; return
/// the same numbers as JSON (`explant bench tick --json`): `scene`, `cells`, `voxels`,
/// `ligands`, `backends`, `ticks`, `stages` (stage → ms per tick), `ms_per_tick`,
/// `resident_bytes`, `bytes_per_cell`, `build_seconds`, and how often the neighbour lists
/// were built, reused and kept with some cells refreshed (`neighbour_lists_built`,
/// `neighbour_lists_reused`, `neighbour_lists_refreshed`). Perturbations are stepped (no
/// paired control, which a run would step beside it).
///
/// # Errors
///
/// When the simulation cannot be built (backends, model, imported tissue) or a tick
/// fails (the failure names its stage).
pub fn tick(
    scene: &explant_scene::LoadedScene,
    args: &TickBench,
    out: &mut dyn Write,
) -> Result<serde_json::Value, RunError> {
    let before = resident_bytes();
    let mut notes = Vec::new();
    let built = Instant::now();
    let mut run = crate::PairedRun::build(scene, args.diffusion, args.threads, false, &mut notes)?;
    let build_seconds = built.elapsed().as_secs_f64();
    for n in &notes {
        let _ = writeln!(out, "note: {n}");
    }
    let sim = &mut run.sim;
    sim.step()?;
    let start_times = sim.stage_times();
    let start_transfers = sim.field_home().transfers();
    let lists = |sim: &explant_core::Simulation| {
        let l = &sim.world.resource::<explant_core::Batch>().neighbour_lists;
        (l.builds, l.reuses, l.refreshes)
    };
    let start_lists = lists(sim);
    let wall = Instant::now();
    for _ in 0..args.ticks.max(1) {
        sim.step()?;
    }
    let end_transfers = sim.field_home().transfers();
    let end_lists = lists(sim);
    let on_device = sim.field_home().on_device();
    let ticks = args.ticks.max(1) as f64;
    let ms_per_tick = wall.elapsed().as_secs_f64() * 1e3 / ticks;
    let resident = resident_bytes().saturating_sub(before);
    let cells = sim.cells().ids.len();
    let field = &sim.ligands().field;
    let (voxels, ligands) = (field.grid.voxels(), field.channels);
    let (diffusion, model) = sim.backend_names();
    let _ = writeln!(
        out,
        "{}: {cells} cells, {voxels} voxels × {ligands} ligands; diffusion {diffusion}; model {model}; {} threads; \
         mean of {} ticks after one warm-up (built in {build_seconds:.2} s)",
        scene.scene.name,
        rayon::current_num_threads(),
        args.ticks.max(1)
    );
    let mut stages = serde_json::Map::new();
    for ((stage, end), (_, begin)) in sim.stage_times().into_iter().zip(start_times) {
        let ms = (end - begin).as_secs_f64() * 1e3 / ticks;
        let name = format!("{stage:?}").to_lowercase();
        let _ = writeln!(out, "  {name:<10} {ms:>10.3} ms/tick");
        stages.insert(name, serde_json::json!(ms));
    }
    let per_cell = if cells > 0 { resident as f64 / cells as f64 } else { 0.0 };
    let _ = writeln!(out, "  {:<10} {ms_per_tick:>10.3} ms/tick", "tick");
    let _ = writeln!(
        out,
        "resident memory added by the simulation: {:.1} MB ({per_cell:.0} bytes per cell)",
        resident as f64 / 1e6
    );
    let (built_lists, reused_lists, refreshed_lists) =
        (end_lists.0 - start_lists.0, end_lists.1 - start_lists.1, end_lists.2 - start_lists.2);
    if built_lists + reused_lists + refreshed_lists > 0 {
        let _ = writeln!(
            out,
            "neighbour lists: built {built_lists} times, reused {reused_lists} times (cells within the skin), kept \
             {refreshed_lists} times refreshing some cells (new cells, cells past the skin)"
        );
    }
    let (uploads, downloads) = (end_transfers.0 - start_transfers.0, end_transfers.1 - start_transfers.1);
    if on_device {
        let _ = writeln!(
            out,
            "the ligand field stayed on the device: {uploads} uploads and {downloads} downloads of the whole field \
             in {} ticks (the rest of each tick's traffic is per cell)",
            args.ticks.max(1)
        );
    }
    Ok(serde_json::json!({
        "bench": "tick",
        "scene": scene.scene.name,
        "cells": cells,
        "voxels": voxels,
        "ligands": ligands,
        "backends": { "diffusion": diffusion, "model": model },
        "threads": rayon::current_num_threads(),
        "ticks": args.ticks.max(1),
        "stages": stages,
        "ms_per_tick": ms_per_tick,
        "resident_bytes": resident,
        "bytes_per_cell": per_cell,
        "build_seconds": build_seconds,
        "field_on_device": on_device,
        "field_uploads": uploads,
        "field_downloads": downloads,
        "neighbour_lists_built": built_lists,
        "neighbour_lists_reused": reused_lists,
        "neighbour_lists_refreshed": refreshed_lists,
    }))
}
