//! `explant run`: one scene end to end (the run itself is `explant_run::run`).

use anyhow::Result;
use std::path::Path;

use explant_run::{ModelChoice, Overrides, ResumeOptions, RunOptions, RunOutcome};
use explant_scene::LoadedScene;

use crate::cli::{ResumeArgs, RunArgs};
use crate::exit::SimulationFailed;
use crate::progress::RunProgress;

/// Run a scene and write its outputs.
pub fn run(args: RunArgs) -> Result<()> {
    let scene = LoadedScene::from_file(&args.scene)?;
    for warning in scene.warnings() {
        eprintln!("warning: {warning}");
    }
    let (threads, note) = explant_run::use_threads(args.threads)?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    let model = match (args.teacher, args.model) {
        (true, _) => ModelChoice::Teacher,
        (false, Some(path)) => ModelChoice::Torchscript(path),
        (false, None) => ModelChoice::Scene,
    };
    let opts = RunOptions {
        out: args.out.clone(),
        diffusion: args.diffusion.into(),
        model,
        threads,
        force: args.force,
        no_control: args.no_control,
        no_figures: args.no_figures,
        command_line: std::env::args().collect(),
        checkpoint_every: args.checkpoint_every,
        overrides: Overrides { seed: args.seed, set: args.set.clone() },
    };
    // Stepped on a worker thread: each parallel section then starts and ends without
    // waking a sleeping thread (see `explant_run::on_workers`).
    let quiet = args.quiet;
    let outcome = explant_run::on_workers(|| explant_run::run(scene, &opts, &mut RunProgress::new(quiet)))?;
    report(outcome, &args.out)
}

/// Continue a run from its checkpoint.
pub fn resume(args: ResumeArgs) -> Result<()> {
    explant_run::use_threads(args.threads)?;
    let opts =
        ResumeOptions { dir: args.run_dir.clone(), duration: args.duration, command_line: std::env::args().collect() };
    let quiet = args.quiet;
    let outcome = explant_run::on_workers(|| explant_run::resume(&opts, &mut RunProgress::new(quiet)))?;
    report(outcome, &args.run_dir)
}

/// Print what a run wrote; a simulation failure becomes the error.
fn report(outcome: RunOutcome, out: &Path) -> Result<()> {
    eprintln!("{}", outcome.stage_table);
    for p in &outcome.written {
        println!("wrote {}", p.display());
    }
    if let Some(f) = outcome.failure {
        let stage = f.stage_name();
        return Err(anyhow::Error::new(f.error).context(SimulationFailed(format!(
            "the run stopped at tick {} (stage `{stage}`); results up to then are in `{}`",
            outcome.manifest.ticks_completed,
            out.display()
        ))));
    }
    Ok(())
}
