//! `explant bench diffusion|tissue|model`: the cost of a stage on this machine (the
//! benchmarks are `explant_run::bench` and `explant_run::backends::torch::bench_model`).

use anyhow::Result;
use explant_run::backends::{ModelBench, torch};
use explant_run::bench::{self, DiffusionBench, TissueBench};

use crate::cli::{BenchBackends, BenchDiffusionArgs, BenchModelArgs, BenchTissueArgs};

/// Time diffusion steps on each requested backend and print a table.
pub fn diffusion(args: BenchDiffusionArgs) -> Result<()> {
    if let Some(note) = explant_run::use_threads(args.threads)?.1 {
        eprintln!("note: {note}");
    }
    let backend = match args.backend {
        BenchBackends::Both => bench::BenchBackends::Both,
        BenchBackends::Cpu => bench::BenchBackends::Cpu,
        BenchBackends::Gpu => bench::BenchBackends::Gpu,
    };
    let opts = DiffusionBench {
        size: args.size,
        dims: args.dims,
        channels: args.channels,
        dx: args.dx,
        dt: args.dt,
        diffusion: args.diffusion,
        decay: args.decay,
        scheme: args.scheme.into(),
        steps: args.steps,
        backend,
    };
    Ok(bench::diffusion(&opts, &mut std::io::stdout())?)
}

/// Time the cell stages of a tick on packed tissues of each size and print a table.
pub fn tissue(args: BenchTissueArgs) -> Result<()> {
    if let Some(note) = explant_run::use_threads(args.threads)?.1 {
        eprintln!("note: {note}");
    }
    let opts = TissueBench { cells: args.cells, dims: args.dims, ticks: args.ticks };
    Ok(bench::tissue(&opts, &mut std::io::stdout())?)
}

/// Time the TorchScript model beside raw libtorch layers and print a table.
pub fn model(args: BenchModelArgs) -> Result<()> {
    let opts = ModelBench { model: args.model, cells: args.cells, reps: args.reps, threads: args.threads };
    Ok(torch::bench_model(&opts, &mut std::io::stdout())?)
}
