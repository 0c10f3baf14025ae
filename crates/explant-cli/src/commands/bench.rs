//! `explant bench diffusion|tissue|model|tick`: the cost of a stage, or of a scene's
//! whole tick, on this machine (the benchmarks are `explant_run::bench` and
//! `explant_run::backends::torch::bench_model`).

use anyhow::Result;
use explant_run::Overrides;
use explant_run::backends::{ModelBench, torch};
use explant_run::bench::{self, DiffusionBench, TickBench, TissueBench};
use explant_scene::LoadedScene;

use crate::cli::{BenchBackends, BenchDiffusionArgs, BenchModelArgs, BenchTickArgs, BenchTissueArgs};

/// Time diffusion steps on each requested backend and print a table.
pub fn diffusion(args: BenchDiffusionArgs) -> Result<()> {
    if args.size == 0 || args.channels == 0 {
        anyhow::bail!(
            "explant bench diffusion: --size and --channels must be at least 1 (got --size {}, --channels {})",
            args.size,
            args.channels
        );
    }
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
    report(args.json, |out| bench::diffusion(&opts, out))
}

/// Time the cell stages of a tick on packed tissues of each size and print a table.
pub fn tissue(args: BenchTissueArgs) -> Result<()> {
    if let Some(note) = explant_run::use_threads(args.threads)?.1 {
        eprintln!("note: {note}");
    }
    let opts = TissueBench { cells: args.cells, dims: args.dims, ticks: args.ticks };
    report(args.json, |out| bench::tissue(&opts, out))
}

/// Time the TorchScript model beside raw libtorch layers and print a table.
pub fn model(args: BenchModelArgs) -> Result<()> {
    let opts = ModelBench { model: args.model, cells: args.cells, reps: args.reps, threads: args.threads };
    report(args.json, |out| torch::bench_model(&opts, out))
}

/// Step a scene's whole ticks and print the time per stage.
pub fn tick(args: BenchTickArgs) -> Result<()> {
    let mut scene = LoadedScene::from_file(&args.scene)?;
    Overrides { seed: None, set: args.set.clone() }.apply(&mut scene)?;
    for warning in scene.warnings() {
        eprintln!("warning: {warning}");
    }
    let (threads, note) = explant_run::use_threads(args.threads)?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    let opts = TickBench { ticks: args.ticks, diffusion: args.diffusion.into(), threads };
    // On a worker, as `explant run` steps its scenes (see `explant_run::on_workers`).
    let json = args.json;
    explant_run::on_workers(|| report(json, |out| bench::tick(&scene, &opts, out)))
}

/// Run a benchmark: its table on stdout, or with `json` its numbers as one JSON object
/// (the table is then not printed).
fn report(
    json: bool,
    bench: impl FnOnce(&mut dyn std::io::Write) -> Result<serde_json::Value, explant_run::RunError>,
) -> Result<()> {
    if json {
        let doc = bench(&mut std::io::sink())?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        bench(&mut std::io::stdout())?;
    }
    Ok(())
}
