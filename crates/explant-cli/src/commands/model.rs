//! `explant train`, `explant model fit` and `explant model show` (training is
//! `explant_torch::fit_to_teacher`; the description `explant_run::backends::torch`).

use anyhow::Result;

use crate::cli::ShowArgs;

/// Print a model's metadata after loading it (which runs its self-check).
pub fn show(args: ShowArgs) -> Result<()> {
    if args.json {
        let v = explant_run::backends::torch::describe_model_json(&args.model)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", explant_run::backends::torch::describe_model(&args.model)?);
    }
    Ok(())
}

pub use imp::{fit, train};

#[cfg(not(feature = "torch"))]
mod imp {
    use anyhow::Result;
    use explant_run::backends::torch::not_enabled;

    use crate::cli::{FitArgs, TrainArgs};

    /// Training needs libtorch.
    pub fn train(_args: TrainArgs) -> Result<()> {
        Err(not_enabled("`explant train`".into()).into())
    }

    /// Fitting needs libtorch.
    pub fn fit(_args: FitArgs) -> Result<()> {
        Err(not_enabled("`explant model fit`".into()).into())
    }
}

#[cfg(feature = "torch")]
mod imp {
    use std::path::Path;

    use anyhow::Result;
    use explant_scene::LoadedScene;
    use explant_torch::FitOptions;

    use crate::cli::{FitArgs, TrainArgs};

    /// Fit a network to a scene's teacher on box samples.
    pub fn fit(args: FitArgs) -> Result<()> {
        crate::commands::refuse_overwrite(&[&args.out, &explant_torch::meta_path(&args.out)], args.force)?;
        let scene = LoadedScene::from_file(&args.scene)?;
        let command = format!(
            "explant model fit {} --out {} --seed {} --steps {}",
            args.scene.display(),
            args.out.display(),
            args.seed,
            args.steps
        );
        let opts = FitOptions { seed: args.seed, steps: args.steps, command, ..Default::default() };
        eprintln!("running the teacher on `{}` to find input ranges...", args.scene.display());
        fit_and_report(&scene, &args.out, &opts)
    }

    /// `explant train`: fit on the teacher's trajectories under varied perturbations (plus
    /// samples spread over the input box), with a validation split by context and early
    /// stopping.
    pub fn train(args: TrainArgs) -> Result<()> {
        crate::commands::refuse_overwrite(&[&args.out, &explant_torch::meta_path(&args.out)], args.force)?;
        let scene = LoadedScene::from_file(&args.scene)?;
        let mut command = format!(
            "explant train {} --out {} --seed {} --steps {} --contexts {} --per-context {}",
            args.scene.display(),
            args.out.display(),
            args.seed,
            args.steps,
            args.contexts,
            args.per_context
        );
        if let Some(t) = &args.hold_out_type {
            command.push_str(&format!(" --hold-out-type {t}"));
        }
        if !args.hold_out_genes.is_empty() {
            command.push_str(&format!(" --hold-out-genes {}", args.hold_out_genes.join(",")));
        }
        if args.members > 1 {
            command.push_str(&format!(" --members {}", args.members));
        }
        let opts = FitOptions {
            seed: args.seed,
            steps: args.steps,
            contexts: args.contexts,
            per_context: args.per_context,
            hold_out_type: args.hold_out_type.clone(),
            hold_out_genes: args.hold_out_genes.clone(),
            members: args.members as usize,
            command,
            ..Default::default()
        };
        eprintln!(
            "running the teacher on `{}`: input ranges, then {} perturbation contexts...",
            args.scene.display(),
            args.contexts
        );
        fit_and_report(&scene, &args.out, &opts)
    }

    /// Fit with progress on stderr, then say what was written and how it validated.
    fn fit_and_report(scene: &LoadedScene, out: &Path, opts: &FitOptions) -> Result<()> {
        let report = explant_torch::fit_to_teacher(scene, out, opts, &mut |step, val| {
            eprintln!("  step {step:>5}: validation MSE {val:.3e}");
        })?;
        let t = &report.training;
        println!("wrote {} and {}", report.model.display(), report.meta.display());
        println!(
            "validation MSE of dx/dt ({} training, {} validation samples): model {:.3e}, no-change baseline {:.3e}, mean baseline {:.3e} ({} steps)",
            t.samples.0, t.samples.1, t.val_mse, t.val_mse_no_change, t.val_mse_mean, t.steps
        );
        Ok(())
    }
}
