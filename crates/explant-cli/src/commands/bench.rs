//! `explant bench diffusion`: channel-voxel updates per second on this machine.

use std::time::Instant;

use anyhow::{Context, Result};
use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, substeps};

use crate::backends;
use crate::cli::{BenchBackends, BenchDiffusionArgs};

/// Time diffusion steps on each requested backend and print a table.
pub fn diffusion(args: BenchDiffusionArgs) -> Result<()> {
    let n = args.size;
    let grid = Grid { nx: n, ny: n, nz: if args.dims == 3 { n } else { 1 }, dx: 10.0, origin: [0.0; 3] };
    let params: Vec<ChannelParams> =
        (0..args.channels).map(|c| ChannelParams::new(1.0e5 * (1.0 - 0.05 * c as f32), 0.1)).collect();
    // A step that needs exactly `substeps` substeps at the largest D.
    let limit = 0.9 * grid.dx * grid.dx / (2.0 * grid.dims() as f32 * 1.0e5);
    let dt = limit * (args.substeps as f32 - 0.5);
    let plan = substeps(&grid, &params, dt)?;
    let updates = (grid.voxels() * args.channels) as f64 * f64::from(plan.count);
    println!(
        "grid {}, {} ligands, {} substeps per step, {} timed steps (median reported)",
        if args.dims == 3 { format!("{n}³") } else { format!("{n}²") },
        args.channels,
        plan.count,
        args.steps
    );
    let mut backends: Vec<Box<dyn DiffusionBackend>> = Vec::new();
    if args.backend != BenchBackends::Gpu {
        backends.push(Box::new(CpuDiffusion::new()));
    }
    if args.backend != BenchBackends::Cpu {
        match backends::gpu(false) {
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
            "{:<70} {:>9.3} ms/step  {:>8.3} ns/update  {:>9.3e} updates/s",
            b.name(),
            median * 1e3,
            median * 1e9 / updates,
            updates / median
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
    println!("(each step uploads the field to the GPU and reads it back; the CPU path works in place)");
    Ok(())
}
