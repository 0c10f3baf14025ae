//! `explant run`: one scene end to end (the run itself is `explant_run::run`).

use anyhow::Result;
use explant_run::{ModelChoice, RunOptions};
use explant_scene::LoadedScene;

use crate::cli::RunArgs;
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
    };
    let outcome = explant_run::run(scene, &opts, &mut RunProgress::new(args.quiet))?;
    eprintln!("{}", outcome.stage_table);
    for p in &outcome.written {
        println!("wrote {}", p.display());
    }
    if let Some(f) = outcome.failure {
        let stage = f.stage_name();
        return Err(anyhow::Error::new(f.error).context(SimulationFailed(format!(
            "the run stopped at tick {} (stage `{stage}`); results up to then are in `{}`",
            outcome.manifest.ticks_completed,
            args.out.display()
        ))));
    }
    Ok(())
}
