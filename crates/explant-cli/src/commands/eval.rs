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
        let seeds = tissue_seeds(&args, scene.scene.seed)?;
        let opts = EvalOptions {
            model: args.model.clone(),
            hold_out_type: args.hold_out_type.clone(),
            perturb: args.perturb.clone(),
            seed: args.seed,
            contexts: args.contexts,
            export: args.export.is_some(),
        };
        let mut results = Vec::new();
        for (k, &seed) in seeds.iter().enumerate() {
            let mut tissue = scene.clone();
            tissue.scene.seed = seed;
            if seeds.len() > 1 {
                eprintln!("tissue seed {seed} ({} of {})", k + 1, seeds.len());
            }
            results.push((seed, evaluate(&tissue, &opts, &mut |line| eprintln!("{line}"))?));
        }
        let header = "tissue_seed,model,mode,group,perturbations,mae,mae_off_target,pearson_delta,\
                      pearson_off_target,pds,de_overlap,de_off_target,mae_vs_mean,pds_vs_mean,de_vs_mean,mae_norm,\
                      mae_off_target_norm,pearson_delta_norm,pearson_off_target_norm,pds_norm,de_overlap_norm,\
                      de_off_target_norm";
        let mut csv = TableData::new(header.split(',').map(String::from));
        for (seed, result) in &results {
            for r in &result.rows {
                let mut row = vec![
                    seed.to_string(),
                    r.model.clone(),
                    r.mode.to_string(),
                    r.group.clone(),
                    r.perturbations.to_string(),
                ];
                let scores = [
                    r.mae,
                    r.mae_off_target,
                    r.pearson_delta,
                    r.pearson_off_target,
                    r.pds,
                    r.de_overlap,
                    r.de_off_target,
                    r.mae_vs_mean,
                    r.pds_vs_mean,
                    r.de_vs_mean,
                ];
                row.extend(scores.iter().chain(&r.normalised).map(f64::to_string));
                csv.rows.push(row);
            }
        }
        let first = &results[0].1;
        println!(
            "held-out cell type `{}`, held-out knockouts {:?}; training knockouts {:?}",
            args.hold_out_type, args.perturb, first.train_genes
        );
        if results.len() == 1 {
            print!("{}", single_table(&first.rows));
        } else {
            print!("{}", summary_table(&results));
        }
        if let Some(out) = &args.out {
            write_table(out, &csv)?;
            println!("wrote {}", out.display());
        }
        if let (Some(dir), Some(export)) = (&args.export, &first.export) {
            write_export(dir, export)?;
        }
        Ok(())
    }

    /// The tissues to score: `--tissue-seeds`, else the scene's own seed. Several tissues
    /// and `--export` (the cells of one tissue) do not go together; a seed given twice is
    /// refused.
    fn tissue_seeds(args: &EvalArgs, scene_seed: u64) -> Result<Vec<u64>> {
        let seeds = &args.tissue_seeds;
        if let Some((i, s)) = seeds.iter().enumerate().find(|(i, s)| seeds[..*i].contains(s)) {
            bail!(
                "`--tissue-seeds`: seed {s} is given twice (at positions {} and {})",
                seeds.iter().position(|x| x == s).unwrap_or(0) + 1,
                i + 1
            );
        }
        if seeds.len() > 1 && args.export.is_some() {
            bail!(
                "`--export` writes the cells of one tissue, but `--tissue-seeds` names {}; export with one seed at a time",
                seeds.len()
            );
        }
        Ok(if seeds.is_empty() { vec![scene_seed] } else { seeds.clone() })
    }

    /// The printed table of one tissue: every row, a heading per mode.
    fn single_table(rows: &[explant_torch::EvalRow]) -> String {
        let mut table = String::new();
        let mut mode = "";
        for r in rows {
            if r.mode != mode {
                mode = r.mode;
                table_header(&mut table, mode);
            }
            table_row(&mut table, r);
        }
        table
    }

    /// The printed table over several tissues: each model's mean ± sd (sample sd over the
    /// tissues where the group has cells; NaN scores left out) of the off-target scores.
    fn summary_table(results: &[(u64, explant_torch::Evaluation)]) -> String {
        let mut table = String::new();
        let mut mode = "";
        let stat = |v: Vec<f64>| -> String {
            let v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
            let n = v.len() as f64;
            if v.is_empty() {
                return "-".into();
            }
            let m = v.iter().sum::<f64>() / n;
            let sd = if v.len() > 1 {
                (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            } else {
                f64::NAN
            };
            format!("{m:.4} ± {sd:.4}")
        };
        for r in &results[0].1.rows {
            if r.mode != mode {
                mode = r.mode;
                let _ = writeln!(table, "\n{mode}: mean ± sd over {} tissues", results.len());
                let _ = writeln!(
                    table,
                    "{:<13} {:<16} {:>3} {:>17} {:>17} {:>17} {:>17} {:>17}",
                    "model", "group", "n", "MAE off", "Pearson off", "PDS", "DE off", "MAEoff/ceil"
                );
            }
            let same: Vec<&explant_torch::EvalRow> = results
                .iter()
                .filter_map(|(_, e)| {
                    e.rows.iter().find(|q| q.mode == r.mode && q.group == r.group && q.model == r.model)
                })
                .collect();
            let col = |f: &dyn Fn(&explant_torch::EvalRow) -> f64| stat(same.iter().map(|q| f(q)).collect());
            let _ = writeln!(
                table,
                "{:<13} {:<16} {:>3} {:>17} {:>17} {:>17} {:>17} {:>17}",
                r.model,
                r.group,
                same.len(),
                col(&|q| q.mae_off_target),
                col(&|q| q.pearson_off_target),
                col(&|q| q.pds),
                col(&|q| q.de_off_target),
                col(&|q| q.normalised[1]),
            );
        }
        table
    }

    /// The printed table's heading for one mode.
    fn table_header(table: &mut String, mode: &str) {
        let what = match mode {
            "free" => "free-running: each model simulates the whole tissue, its control included",
            _ => "anchored: the truth's control plus each model's own perturbed-minus-control change",
        };
        let _ = writeln!(table, "\n{what}");
        let _ = writeln!(
            table,
            "{:<13} {:<16} {:>8} {:>8} {:>7} {:>7} {:>6} {:>6} {:>6} {:>9}",
            "model", "group", "MAE", "MAE off", "Pearson", "P. off", "PDS", "DE", "DE off", "MAEoff/ce"
        );
    }

    /// One printed row: MAE to 4 decimals, the rest to 3 (`MAEoff/ce`: the off-target MAE
    /// rescaled between the context mean, 0, and the replicate ceiling, 1).
    fn table_row(table: &mut String, r: &explant_torch::EvalRow) {
        let _ = writeln!(
            table,
            "{:<13} {:<16} {:>8.4} {:>8.4} {:>7.3} {:>7.3} {:>6.3} {:>6.3} {:>6.3} {:>9.3}",
            r.model,
            r.group,
            r.mae,
            r.mae_off_target,
            r.pearson_delta,
            r.pearson_off_target,
            r.pds,
            r.de_overlap,
            r.de_off_target,
            r.normalised[1]
        );
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
