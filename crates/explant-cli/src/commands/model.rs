//! `explant model fit` and `explant model show`.

use anyhow::Result;

use crate::cli::{FitArgs, ShowArgs, TrainArgs};

/// Fit a network to a scene's teacher.
#[cfg(feature = "torch")]
pub fn fit(args: FitArgs) -> Result<()> {
    use explant_scene::LoadedScene;
    use explant_torch::FitOptions;
    let scene = LoadedScene::from_file(&args.scene)?;
    let opts = FitOptions {
        seed: args.seed,
        steps: args.steps,
        command: format!(
            "explant model fit {} --out {} --seed {} --steps {}",
            args.scene.display(),
            args.out.display(),
            args.seed,
            args.steps
        ),
        ..Default::default()
    };
    eprintln!("running the teacher on `{}` to find input ranges...", args.scene.display());
    fit_and_report(&scene, &args.out, &opts)
}

/// Fit with progress on stderr, then say what was written and how it validated.
#[cfg(feature = "torch")]
fn fit_and_report(
    scene: &explant_scene::LoadedScene,
    out: &std::path::Path,
    opts: &explant_torch::FitOptions,
) -> Result<()> {
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

/// `explant train`: fit on the teacher's trajectories under varied perturbations (plus
/// samples spread over the input box), with a validation split by context and early
/// stopping.
#[cfg(feature = "torch")]
pub fn train(args: TrainArgs) -> Result<()> {
    use explant_scene::LoadedScene;
    use explant_torch::FitOptions;
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

/// Training needs libtorch.
#[cfg(not(feature = "torch"))]
pub fn train(_args: TrainArgs) -> Result<()> {
    anyhow::bail!("this build of explant has no libtorch support (build with the `torch` feature)")
}

/// Fit needs libtorch.
#[cfg(not(feature = "torch"))]
pub fn fit(_args: FitArgs) -> Result<()> {
    anyhow::bail!("`explant model fit` needs TorchScript support, which is not enabled in this build")
}

/// Print a model's metadata after loading it (which runs its self-check).
#[cfg(feature = "torch")]
pub fn show(args: ShowArgs) -> Result<()> {
    let model = explant_torch::TorchModel::load(&args.model, 0)?;
    let m = model.meta();
    println!("{}: loads and reproduces its check case", args.model.display());
    println!("  genes:      {}", m.genes.join(", "));
    println!("  ligands:    {}", m.ligands.join(", "));
    println!("  cell types: {}", m.cell_types.join(", "));
    println!("  contract:   {}", m.contract);
    println!(
        "  inputs:     expression, sensed, contact, cell_type_onehot{}",
        if m.neighbour_counts { ", neighbour_types" } else { "" }
    );
    if let Some(t) = &m.training {
        println!("  trained by: {}", t.command);
        if let Some(ty) = &t.hold_out_type {
            println!("  held out:   cell type `{ty}` (seen only unperturbed)");
        }
        if !t.hold_out_genes.is_empty() {
            println!("  held out:   perturbations of {}", t.hold_out_genes.join(", "));
        }
        if t.members > 1 {
            println!(
                "  ensemble:   mean of {} networks (seeds {}..={})",
                t.members,
                t.seed,
                t.seed.wrapping_add(t.members as u64 - 1)
            );
        }
        if !t.unseen_types.is_empty() {
            println!("  unseen:     {} (one-hot column ignored)", t.unseen_types.join(", "));
        }
        println!(
            "  validation MSE: {:.3e} (no change {:.3e}, mean {:.3e})",
            t.val_mse, t.val_mse_no_change, t.val_mse_mean
        );
    }
    Ok(())
}

/// Show needs libtorch.
#[cfg(not(feature = "torch"))]
pub fn show(_args: ShowArgs) -> Result<()> {
    anyhow::bail!("`explant model show` needs TorchScript support, which is not enabled in this build")
}
