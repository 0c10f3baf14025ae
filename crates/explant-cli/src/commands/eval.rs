//! `explant eval`: the Virtual Cell Challenge protocol, in tissue (the protocol and its
//! scores are `explant_torch::evaluate`; this prints the table and writes the CSV, and
//! with `--export` the cells for `cell-eval`, `explant_torch::export`).

#[cfg(feature = "torch")]
pub use imp::eval;

/// `explant eval` needs libtorch.
#[cfg(not(feature = "torch"))]
pub fn eval(_args: crate::cli::EvalArgs) -> anyhow::Result<()> {
    Err(explant_run::backends::torch::not_enabled("`explant eval`".into()).into())
}

#[cfg(feature = "torch")]
mod imp {
    use std::fmt::Write as _;
    use std::path::Path;

    use anyhow::{Result, bail};
    use explant_run::tables::{TableData, write_table};
    use explant_scene::LoadedScene;
    use explant_torch::export::Export;
    use explant_torch::{EvalOptions, evaluate};

    use crate::cli::EvalArgs;

    /// `explant eval`.
    pub fn eval(args: EvalArgs) -> Result<()> {
        if let Some(out) = &args.out {
            crate::commands::refuse_overwrite(&[out], args.force)?;
        }
        if let Some(dir) = &args.export {
            refuse_non_empty(dir, args.force)?;
        }
        let scene = LoadedScene::from_file(&args.scene)?;
        let opts = EvalOptions {
            model: args.model.clone(),
            hold_out_type: args.hold_out_type.clone(),
            perturb: args.perturb.clone(),
            seed: args.seed,
            contexts: args.contexts,
            export: args.export.is_some(),
        };
        let result = evaluate(&scene, &opts, &mut |line| eprintln!("{line}"))?;
        let header = "model,group,perturbations,mae,mae_off_target,pearson_delta,pds,de_overlap,mae_vs_mean,pds_vs_mean,de_vs_mean";
        let mut csv = TableData::new(header.split(',').map(String::from));
        let mut table = String::new();
        let _ = writeln!(
            table,
            "{:<13} {:<16} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8}",
            "model", "group", "MAE", "MAE off", "Pearson", "PDS", "DE", "MAE/mn", "PDS/mn", "DE/mn"
        );
        for r in &result.rows {
            let scores = [
                r.mae,
                r.mae_off_target,
                r.pearson_delta,
                r.pds,
                r.de_overlap,
                r.mae_vs_mean,
                r.pds_vs_mean,
                r.de_vs_mean,
            ];
            let mut row = vec![r.model.clone(), r.group.clone(), r.perturbations.to_string()];
            let _ = write!(table, "{:<13} {:<16}", r.model, r.group);
            // Columns as in the header: MAE and MAE off to 4 decimals, the rest to 3.
            for (k, v) in scores.iter().enumerate() {
                row.push(v.to_string());
                let _ = match k {
                    0 | 1 => write!(table, " {v:>8.4}"),
                    3 | 4 => write!(table, " {v:>6.3}"),
                    _ => write!(table, " {v:>8.3}"),
                };
            }
            csv.rows.push(row);
            table.push('\n');
        }
        println!(
            "held-out cell type `{}`, held-out knockouts {:?}; training knockouts {:?}",
            args.hold_out_type, args.perturb, result.train_genes
        );
        print!("{table}");
        if let Some(out) = &args.out {
            write_table(out, &csv)?;
            println!("wrote {}", out.display());
        }
        if let (Some(dir), Some(export)) = (&args.export, &result.export) {
            write_export(dir, export)?;
        }
        Ok(())
    }

    /// `--export DIR` may name a folder of the user's: refuse a file, or a non-empty
    /// folder without `--force`.
    fn refuse_non_empty(dir: &Path, force: bool) -> Result<()> {
        if dir.exists() && !dir.is_dir() {
            bail!("`--export {}` is a file, not a folder; name a folder for the export", dir.display());
        }
        if dir.is_dir() && std::fs::read_dir(dir)?.next().is_some() && !force {
            bail!(
                "`--export {}` is a folder that already holds files; choose a new or empty folder, or pass `--force` \
                 to write the export into it (files with the export's names are replaced, nothing else is touched)",
                dir.display()
            );
        }
        Ok(())
    }

    /// The export's `.h5ad` files, and `scores.csv`: explant's scores of each predictor
    /// per group and held-out knockout, against the pooled control cells of the files
    /// (what `cell-eval` computes) and against each cell's twin (what `explant eval` reports).
    fn write_export(dir: &Path, export: &Export) -> Result<()> {
        let files = export.write(dir)?;
        let header = "folder,group,predictor,perturbation,control,control_cells,mae,pearson_delta,discrimination_score_l1,overlap_at_N";
        let mut csv = TableData::new(header.split(',').map(String::from));
        for s in &export.scores {
            csv.rows.push(vec![
                s.folder.clone(),
                s.group.clone(),
                s.predictor.clone(),
                s.perturbation.clone(),
                s.control.to_string(),
                s.control_cells.to_string(),
                s.mae.to_string(),
                s.pearson_delta.to_string(),
                s.pds.to_string(),
                s.de_overlap.to_string(),
            ]);
        }
        let scores = dir.join("scores.csv");
        write_table(&scores, &csv)?;
        println!("wrote {} files for cell-eval and scores.csv under {}", files.len(), dir.display());
        Ok(())
    }
}
