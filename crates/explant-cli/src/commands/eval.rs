//! `explant eval`: the Virtual Cell Challenge protocol, in tissue.
//!
//! A cell type and a set of gene knockouts are held out. Each held-out knockout is applied
//! to every cell of the held-out type in the full tissue and run with the teacher (the
//! truth) and with each model; every run is compared cell by cell (matched on id) with the
//! same model's unperturbed run of the same seed. Responses are scored for the knocked-out
//! cells, for unperturbed cells in each distance band of `output.distance_bands`, and for
//! far cells: MAE of pseudobulk expression, Pearson correlation of the deltas across
//! genes, the perturbation discrimination score (L1, target gene left out) and the DE
//! overlap (Wilcoxon rank-sum of perturbed-run against control-run cells, BH FDR < 0.05,
//! top-k of the prediction against the true DE set). Baselines: no change, the mean delta
//! of the training knockouts (the other genes, same tissue context, by the teacher), and
//! a ridge regression fitted on the same training trajectories as the network.

#[cfg(feature = "torch")]
pub use imp::eval;

/// `explant eval` needs libtorch.
#[cfg(not(feature = "torch"))]
pub fn eval(_args: crate::cli::EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("this build of explant has no libtorch support (build with the `torch` feature)")
}

#[cfg(feature = "torch")]
mod imp {
    use std::fmt::Write as _;

    use anyhow::{Context, Result, bail};
    use explant_core::effects::match_ids;
    use explant_core::score::{benjamini_hochberg, de_overlap, discrimination, mae, pearson, rank_sum_p};
    use explant_core::{CellTable, ResponseModel, Simulation, Teacher};
    use explant_scene::{LoadedScene, Perturbation, PerturbationName, Scene};

    use crate::cli::EvalArgs;

    /// One model's runs: the control and each held-out knockout.
    struct Runs {
        control: CellTable,
        perturbed: Vec<(CellTable, Vec<f32>)>,
    }

    fn knockout(gene: &str, cell_type: &str) -> Perturbation {
        Perturbation {
            kind: PerturbationName::Knockout,
            gene: Some(gene.into()),
            ligand: None,
            fraction: None,
            value: None,
            rate: None,
            cells: None,
            cell_type: Some(cell_type.into()),
            region: None,
            ids: None,
            when: None,
            start: 0.0,
            stop: None,
        }
    }

    fn run(scene: &Scene, p: Option<Perturbation>, model: Box<dyn ResponseModel>) -> Result<(CellTable, Vec<f32>)> {
        let mut sc = scene.clone();
        sc.perturbations = p.into_iter().collect();
        let mut sim = Simulation::new(&sc, Box::new(explant_field::CpuDiffusion::with_scheme(sc.grid.scheme)), model)?;
        for _ in 0..sim.total_ticks() {
            sim.step()?;
        }
        let cells = sim.cells();
        let d = sim.perturbation_distance(&cells);
        Ok((cells, d))
    }

    fn runs(
        scene: &Scene,
        genes: &[String],
        cell_type: &str,
        make: &dyn Fn() -> Result<Box<dyn ResponseModel>>,
    ) -> Result<Runs> {
        let control = run(scene, None, make()?)?.0;
        let perturbed =
            genes.iter().map(|g| run(scene, Some(knockout(g, cell_type)), make()?)).collect::<Result<_>>()?;
        Ok(Runs { control, perturbed })
    }

    /// Group membership per cell of a perturbed run: 0 = perturbed, 1.. = bands, last = far.
    fn group_of(table: &CellTable, d: &[f32], bands: &[f32]) -> Vec<usize> {
        (0..table.ids.len())
            .map(|i| {
                if table.perturbed[i] {
                    0
                } else {
                    1 + bands.windows(2).position(|w| d[i] >= w[0] && d[i] < w[1]).unwrap_or(bands.len() - 1)
                }
            })
            .collect()
    }

    /// Per group: the perturbed run's pseudobulk, the delta against the control (matched
    /// ids) and the per-gene rank-sum p-values (perturbed-run cells vs their control cells).
    struct GroupResponse {
        pseudobulk: Vec<f64>,
        delta: Vec<f64>,
        p: Vec<f64>,
    }

    fn responses(pert: &CellTable, d: &[f32], ctrl: &CellTable, bands: &[f32], g: usize) -> Vec<Option<GroupResponse>> {
        let groups = group_of(pert, d, bands);
        let matched = match_ids(pert, ctrl);
        (0..=bands.len())
            .map(|k| {
                let cells: Vec<(usize, usize)> = (0..pert.ids.len())
                    .filter(|&i| groups[i] == k)
                    .filter_map(|i| matched[i].map(|j| (i, j)))
                    .collect();
                if cells.is_empty() {
                    return None;
                }
                let n = cells.len() as f64;
                let col = |t: &CellTable, idx: &dyn Fn(&(usize, usize)) -> usize, gene: usize| -> Vec<f64> {
                    cells.iter().map(|c| f64::from(t.expression[idx(c) * g + gene])).collect()
                };
                let mut out = GroupResponse { pseudobulk: Vec::new(), delta: Vec::new(), p: Vec::new() };
                for gene in 0..g {
                    let a = col(pert, &|c| c.0, gene);
                    let b = col(ctrl, &|c| c.1, gene);
                    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
                    out.pseudobulk.push(ma);
                    out.delta.push(ma - mb);
                    out.p.push(rank_sum_p(&a, &b));
                }
                Some(out)
            })
            .collect()
    }

    /// `explant eval`.
    pub fn eval(args: EvalArgs) -> Result<()> {
        let scene = LoadedScene::from_file(&args.scene)?;
        let sc = &scene.scene;
        let g = sc.genes.len();
        if sc.cell_type_index(&args.hold_out_type).is_none() {
            bail!(
                "option `--hold-out-type`: unknown cell type `{}`{}",
                args.hold_out_type,
                explant_scene::suggest(&args.hold_out_type, &sc.cell_type_names())
            );
        }
        for gene in &args.perturb {
            if sc.gene_index(gene).is_none() {
                bail!("option `--perturb`: unknown gene `{gene}`{}", explant_scene::suggest(gene, &sc.genes));
            }
        }
        if args.perturb.len() < 2 {
            bail!("option `--perturb`: give at least two held-out genes (the discrimination score compares them)");
        }
        let train_genes: Vec<String> = sc.genes.iter().filter(|x| !args.perturb.contains(x)).cloned().collect();
        let targets: Vec<usize> = args.perturb.iter().filter_map(|x| sc.gene_index(x)).collect();
        let bands = &sc.output.distance_bands;
        let ty = args.hold_out_type.clone();

        eprintln!(
            "truth: the teacher under {} held-out and {} training knockouts in `{ty}`...",
            args.perturb.len(),
            train_genes.len()
        );
        let teacher = || -> Result<Box<dyn ResponseModel>> { Ok(Box::new(Teacher::from_scene(sc))) };
        let truth = runs(sc, &args.perturb, &ty, &teacher)?;
        let training = runs(sc, &train_genes, &ty, &teacher)?;
        eprintln!("learned model `{}`...", args.model.display());
        let model_path = args.model.clone();
        let learned = runs(sc, &args.perturb, &ty, &|| -> Result<Box<dyn ResponseModel>> {
            Ok(Box::new(explant_torch::TorchModel::load_for(
                &model_path,
                &explant_core::ModelSignature::of_scene(sc),
                0,
            )?))
        })?;
        eprintln!("ridge regression on the training trajectories...");
        let opts = explant_torch::FitOptions {
            seed: args.seed,
            contexts: args.contexts,
            hold_out_type: Some(ty.clone()),
            hold_out_genes: args.perturb.clone(),
            ..Default::default()
        };
        let ridge_model = explant_torch::fit_ridge(&scene, &opts, 1e-3).context("fitting the ridge baseline")?;
        let ridge =
            runs(sc, &args.perturb, &ty, &|| -> Result<Box<dyn ResponseModel>> { Ok(Box::new(ridge_model.clone())) })?;

        let per = |r: &Runs| -> Vec<Vec<Option<GroupResponse>>> {
            r.perturbed.iter().map(|(t, d)| responses(t, d, &r.control, bands, g)).collect()
        };
        let (truth_r, train_r) = (per(&truth), per(&training));
        let models: Vec<(&str, Vec<Vec<Option<GroupResponse>>>)> =
            vec![("learned", per(&learned)), ("ridge", per(&ridge))];
        let group_names: Vec<String> = std::iter::once("perturbed".to_string())
            .chain(bands.windows(2).map(|w| format!("{}-{} um", w[0], w[1])))
            .chain(std::iter::once(format!("far (>= {} um)", bands.last().copied().unwrap_or(0.0))))
            .collect();
        let mut csv = String::from("model,group,perturbations,mae,pearson_delta,pds,de_overlap\n");
        let mut table = String::new();
        let _ = writeln!(
            table,
            "{:<10} {:<18} {:>9} {:>9} {:>9} {:>9}",
            "model", "group", "MAE", "Pearson", "PDS", "DE ovl"
        );
        for (k, name) in group_names.iter().enumerate() {
            // Truth for this group, per held-out knockout.
            let t: Vec<&GroupResponse> = truth_r.iter().filter_map(|p| p[k].as_ref()).collect();
            if t.len() != args.perturb.len() {
                continue;
            }
            let real_de: Vec<Vec<usize>> = t
                .iter()
                .map(|r| {
                    let adj = benjamini_hochberg(&r.p);
                    (0..g).filter(|&x| adj[x] < 0.05 && r.delta[x] != 0.0).collect()
                })
                .collect();
            let control_pb: Vec<Vec<f64>> =
                t.iter().map(|r| r.pseudobulk.iter().zip(&r.delta).map(|(a, d)| a - d).collect()).collect();
            // Mean delta of the training knockouts in this group.
            let train_deltas: Vec<&Vec<f64>> = train_r.iter().filter_map(|p| p[k].as_ref().map(|r| &r.delta)).collect();
            let mean_delta: Vec<f64> = (0..g)
                .map(|x| train_deltas.iter().map(|d| d[x]).sum::<f64>() / train_deltas.len().max(1) as f64)
                .collect();
            let mut score = |label: &str, pb: Vec<Vec<f64>>, delta: Vec<Vec<f64>>, ranking: Vec<Vec<usize>>| {
                let n = pb.len();
                let m = (0..n).map(|p| mae(&pb[p], &t[p].pseudobulk)).sum::<f64>() / n as f64;
                let r: Vec<f64> = (0..n).map(|p| pearson(&delta[p], &t[p].delta)).filter(|v| v.is_finite()).collect();
                let r = if r.is_empty() { f64::NAN } else { r.iter().sum::<f64>() / r.len() as f64 };
                let truth_d: Vec<Vec<f64>> = t.iter().map(|x| x.delta.clone()).collect();
                let pds = discrimination(&delta, &truth_d, &targets).iter().sum::<f64>() / n as f64;
                let de: Vec<f64> =
                    (0..n).map(|p| de_overlap(&real_de[p], &ranking[p])).filter(|v| v.is_finite()).collect();
                let de = if de.is_empty() { f64::NAN } else { de.iter().sum::<f64>() / de.len() as f64 };
                let _ = writeln!(csv, "{label},{name},{n},{m},{r},{pds},{de}");
                let _ = writeln!(table, "{label:<10} {name:<18} {m:>9.4} {r:>9.3} {pds:>9.3} {de:>9.3}");
            };
            let by_size = |d: &[f64]| -> Vec<usize> {
                let mut idx: Vec<usize> = (0..g).collect();
                idx.sort_by(|&a, &b| d[b].abs().total_cmp(&d[a].abs()));
                idx
            };
            let n = t.len();
            score("no-change", control_pb.clone(), vec![vec![0.0; g]; n], vec![Vec::new(); n]);
            score(
                "mean",
                control_pb.iter().map(|c| c.iter().zip(&mean_delta).map(|(a, d)| a + d).collect()).collect(),
                vec![mean_delta.clone(); n],
                vec![by_size(&mean_delta); n],
            );
            for (label, rs) in &models {
                let got: Vec<&GroupResponse> = rs.iter().filter_map(|p| p[k].as_ref()).collect();
                if got.len() != n {
                    continue;
                }
                let ranking = got
                    .iter()
                    .map(|r| {
                        let mut idx: Vec<usize> = (0..g).collect();
                        idx.sort_by(|&a, &b| {
                            r.p[a].total_cmp(&r.p[b]).then(r.delta[b].abs().total_cmp(&r.delta[a].abs()))
                        });
                        idx
                    })
                    .collect();
                score(
                    label,
                    got.iter().map(|r| r.pseudobulk.clone()).collect(),
                    got.iter().map(|r| r.delta.clone()).collect(),
                    ranking,
                );
            }
        }
        println!(
            "held-out cell type `{ty}`, held-out knockouts {:?}; training knockouts {:?}",
            args.perturb, train_genes
        );
        print!("{table}");
        if let Some(out) = &args.out {
            std::fs::write(out, &csv).with_context(|| format!("cannot write `{}`", out.display()))?;
            println!("wrote {}", out.display());
        }
        Ok(())
    }
}
