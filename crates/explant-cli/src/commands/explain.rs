//! `explant explain`: which channel carried a perturbation's effect (the runs and the
//! attribution are `explant_run::explain`; this picks the scene, prints the table and
//! says what it wrote).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use explant_run::explain::{
    DEFAULT_SAMPLES, ExplainOptions, Method, explain as run_explanation, top_table, write_explanation,
};
use explant_run::explain_gradients::DEFAULT_POINTS;
use explant_run::{Manifest, ModelChoice, RunDir, RunFile, RunOptions};
use explant_scene::LoadedScene;

use crate::cli::{ExplainArgs, ExplainMethod};
use crate::exit::SimulationFailed;
use crate::progress::RunProgress;

/// `explant explain PATH`.
pub fn explain(args: ExplainArgs) -> Result<()> {
    let method = match args.method {
        ExplainMethod::Ablation => Method::Ablation,
        ExplainMethod::Shapley => Method::Shapley,
        ExplainMethod::Gradients => Method::Gradients,
    };
    let samples = match (method, args.samples) {
        (Method::Ablation, Some(k)) => {
            bail!(
                "`--samples {k}` is for `--method shapley` (orders to sample) or `--method gradients` (points of each \
                 integral); ablation runs each channel once and samples nothing"
            )
        }
        (_, Some(k)) => usize::try_from(k).with_context(|| format!("`--samples {k}` is too large for this machine"))?,
        (Method::Gradients, None) => DEFAULT_POINTS,
        (_, None) => DEFAULT_SAMPLES,
    };
    let (threads, note) = explant_run::use_threads(args.threads)?;
    if let Some(note) = note.filter(|_| !args.quiet) {
        eprintln!("note: {note}");
    }
    let model = match (args.teacher, &args.model) {
        (true, _) => ModelChoice::Teacher,
        (false, Some(path)) => ModelChoice::Torchscript(path.clone()),
        (false, None) => ModelChoice::Scene,
    };
    let (dir, scene) = if args.path.is_dir() {
        if let Some(out) = &args.out {
            bail!(
                "`--out {}` is for a scene; `{}` is a run directory, explained into its own `explain/`",
                out.display(),
                args.path.display()
            );
        }
        let dir = RunDir::open(&args.path)?;
        let target = dir.path(RunFile::Attribution);
        crate::commands::refuse_overwrite(&[&target], args.force)?;
        let scene = run_scene(&dir)?;
        (dir, scene)
    } else {
        let Some(out) = &args.out else {
            bail!(
                "`{}` is a scene: give `--out DIR` to run it there and explain it into `DIR/explain/` (or give a run \
                 directory)",
                args.path.display()
            );
        };
        let scene = LoadedScene::from_file(&args.path)?;
        run_first(&scene, out, &args, &model, threads)?;
        (RunDir::new(out), scene)
    };
    let opts = ExplainOptions { method, samples, model, diffusion: args.diffusion.into(), threads };
    let quiet = args.quiet;
    // On a worker, as `explant run` steps its scene (see `explant_run::on_workers`).
    let explanation = explant_run::on_workers(|| {
        run_explanation(scene, &opts, &mut |line| {
            if !quiet {
                eprintln!("{line}");
            }
        })
    })?;
    print!("{}", top_table(&explanation, args.top));
    let design = match (method, explanation.permutations) {
        (Method::Shapley, Some(k)) => format!(", {k} sampled permutations"),
        (Method::Shapley, None) => ", exact".to_owned(),
        (Method::Gradients, _) => format!(", {samples} point(s) per integral, beside ablation"),
        (Method::Ablation, _) => String::new(),
    };
    println!(
        "{} runs of {} ticks in {:.1} s (method: {}{design})",
        explanation.runs,
        explanation.ticks,
        explanation.wall_seconds,
        method.name()
    );
    for p in write_explanation(&dir, &explanation)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The scene a run directory ran: its `scene.toml`, with relative paths inside resolved
/// from the original scene's folder when that still exists, else from the run directory.
fn run_scene(dir: &RunDir) -> Result<LoadedScene> {
    let copy = dir.path(RunFile::Scene);
    let text = std::fs::read_to_string(&copy).with_context(|| format!("cannot read `{}`", copy.display()))?;
    let manifest = Manifest::read(&dir.path(RunFile::Manifest))?;
    let original = PathBuf::from(&manifest.scene);
    let base: &Path = if original.is_file() { &original } else { &copy };
    Ok(LoadedScene::from_str(&text, base)?)
}

/// `explant run SCENE --out OUT` as the explanation will run it (same model).
fn run_first(scene: &LoadedScene, out: &Path, args: &ExplainArgs, model: &ModelChoice, threads: usize) -> Result<()> {
    let opts = RunOptions {
        out: out.to_path_buf(),
        diffusion: args.diffusion.into(),
        model: model.clone(),
        threads,
        force: args.force,
        command_line: std::env::args().collect(),
        ..Default::default()
    };
    let quiet = args.quiet;
    let outcome = explant_run::on_workers(|| explant_run::run(scene.clone(), &opts, &mut RunProgress::new(quiet)))?;
    if let Some(f) = outcome.failure {
        let stage = f.stage_name();
        return Err(anyhow::Error::new(f.error).context(SimulationFailed(format!(
            "the run stopped at tick {} (stage `{stage}`), so there is nothing to explain; results up to then are in \
             `{}`",
            outcome.manifest.ticks_completed,
            out.display()
        ))));
    }
    Ok(())
}
