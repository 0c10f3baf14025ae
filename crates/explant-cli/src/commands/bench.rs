//! `explant bench diffusion`: the cost of a diffusion–decay step on this machine, in ns
//! per voxel-ligand-step (BioFVM's unit) and voxel-ligand updates per second.

use std::time::Instant;

use anyhow::{Context, Result};
use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, Scheme, substeps};

use crate::backends;
use crate::cli::{BenchBackends, BenchDiffusionArgs};

/// Time diffusion steps on each requested backend and print a table.
pub fn diffusion(args: BenchDiffusionArgs) -> Result<()> {
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .context("cannot set up the worker threads")?;
    }
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
