//! `explant eval`: the Virtual Cell Challenge protocol, in tissue.
//!
//! A cell type and a set of gene knockouts are held out. Each held-out knockout is applied
//! to every cell of the held-out type in the full tissue and run with the teacher (the
//! truth) and with each model; every run is compared cell by cell (matched on lineage-true
//! id) with the same model's unperturbed run of the same seed. Responses are scored for
//! the knocked-out cells, for unperturbed cells in each distance band of
//! `output.distance_bands`, and for far cells, with `cell-eval`'s definitions (as
//! `explant_core::score` implements them, equal to `cell-eval` 0.8.2 to 1e-6): MAE of
//! pseudobulk expression, Pearson correlation of the deltas across genes, the perturbation
//! discrimination score (L1, target gene left out) and the DE overlap (`overlap_at_N`: DE
//! genes by rank-sum test, BH FDR < 0.05, ranked by |log2 fold change|). MAE, Pearson Δ and
//! DE overlap are also given without the knocked-out gene: in the knocked-out cells the
//! simulator clamps that gene whatever the model, so the clamp alone earns a good MAE, a
//! high Pearson Δ and a DE hit there.
//!
//! Every predictor is scored two ways ([`Mode`]): **free-running** (the model simulates
//! the whole tissue, its control included: does it reproduce the perturbed tissue?) and
//! **anchored** (the truth's control plus the model's own perturbed-minus-control change,
//! cell by cell: does it predict the perturbation's effect?). Far from a perturbation the
//! free-running score is mostly the model's steady-state error; the anchored one is not.
//!
//! Predictors, the baselines each built cell by cell from the truth's control twins
//! ([`crate::baseline_cells`], so that they are scored from cells as the models are):
//! - `no-change`: the control twin;
//! - `clamp`: the control twin with the knocked-out gene at 0 in the knocked-out cells
//!   (what every model gets for free; a claim that it meets says nothing);
//! - `context-mean`: `cell-eval`'s baseline (`cell-eval baseline`, `build_base_mean_adata`):
//!   every cell of the group is the mean over the training knockouts (the other genes,
//!   applied by the teacher to the same held-out type in the same tissue) of their
//!   pseudobulk in that group. It sees the held-out type's responses to perturbations,
//!   which the network and ridge never see;
//! - `mean`: the same knowledge cell by cell: each cell's control twin plus the mean delta
//!   of the training knockouts in its group, floored at 0 (its pseudobulk is the context
//!   mean's wherever the floor does not act; its cells vary as the control's do);
//! - `neighbour-avg`: the knockout's direct effect alone, spread to unperturbed cells as
//!   the mean over their contact neighbourhood;
//! - `learned`: the model under evaluation;
//! - `ridge`: a ridge regression of the rates fitted on exactly the network's training
//!   samples;
//! - `untrained`: a network of the learned model's shape with no training step
//!   ([`crate::untrained`]): a score it also reaches does not come from learning;
//! - `replicate`: the teacher again in another tissue (the scene's seed + 1), compared
//!   per group (no cell is shared; anchored on the truth's control pseudobulk per group):
//!   the ceiling, the analogue of a split-half replicate.
//!
//! Scores are also normalised as `cell-eval` does against its baseline, the context mean
//! (unclipped), and rescaled so that the context mean is 0 and the replicate 1 (`cell-eval2`'s
//! `vcc2026` form). With [`EvalOptions::export`] the cells of every group are kept for
//! `cell-eval` ([`crate::export`]; the free-running predictors with cells in the truth's
//! tissue, but not the untrained network, whose cells leave `cell-eval`'s value range).

use std::path::PathBuf;

use explant_core::effects::match_ids;
use explant_core::neighbours::Csr;
use explant_core::score::{Response, de_overlap, discrimination, mae, pearson};
use explant_core::{CellTable, ResponseModel, Simulation, Teacher};
use explant_scene::{LoadedScene, Perturbation, PerturbationName, Scene};

use crate::TorchError;

type Result<T> = std::result::Result<T, TorchError>;

/// What to hold out and how to fit the ridge baseline.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The learned model (`.pt` with its `.json`), trained with the same hold-outs.
    pub model: PathBuf,
    /// The held-out cell type: every held-out knockout is applied to all its cells.
    pub hold_out_type: String,
    /// The held-out knockouts (at least two, each once); the scene's other genes are the
    /// training knockouts of the mean baseline.
    pub perturb: Vec<String>,
    /// Seed of the ridge baseline's training contexts.
    pub seed: u64,
    /// Teacher runs the ridge baseline is fitted on (as `explant train --contexts`).
    pub contexts: usize,
    /// Also build the cells of every group for `cell-eval` ([`Evaluation::export`]).
    pub export: bool,
}

/// One model's scores in one group of cells, averaged over the held-out knockouts.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// `no-change`, `clamp`, `context-mean`, `mean`, `neighbour-avg`, `learned`, `ridge`,
    /// `untrained` or
    /// `replicate`.
    pub model: String,
    /// `free` (the model simulates the whole tissue) or `anchored` (the truth's control
    /// plus the model's own perturbed-minus-control change, cell by cell).
    pub mode: &'static str,
    /// `perturbed`, a distance band (`0-15 um`) or `far (>= 30 um)`.
    pub group: String,
    /// Held-out knockouts averaged.
    pub perturbations: usize,
    /// MAE of pseudobulk expression against the truth.
    pub mae: f64,
    /// The same without the knocked-out gene.
    pub mae_off_target: f64,
    /// Pearson correlation of predicted and true deltas across genes (NaN: no delta).
    pub pearson_delta: f64,
    /// The same without the knocked-out gene.
    pub pearson_off_target: f64,
    /// Perturbation discrimination score (L1, target gene left out, so already off
    /// target), 1 best.
    pub pds: f64,
    /// DE overlap (0 where nothing is truly DE, as `cell-eval`).
    pub de_overlap: f64,
    /// The same with the knocked-out gene removed from both DE lists.
    pub de_off_target: f64,
    /// MAE normalised against the context mean: `(base − m) / base`.
    pub mae_vs_mean: f64,
    /// PDS normalised against the context mean: `(s − base) / (1 − base)`.
    pub pds_vs_mean: f64,
    /// DE overlap normalised against the context mean.
    pub de_vs_mean: f64,
    /// Each score rescaled so that 0 is the context mean and 1 the
    /// replicate ceiling of the same mode and group (`cell-eval2`'s `vcc2026` form):
    /// MAE, MAE off target, Pearson Δ, Pearson Δ off target, PDS, DE overlap, DE overlap
    /// off target. NaN where the ceiling is not better than the baseline.
    pub normalised: [f64; 7],
}

/// The result of [`evaluate`].
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The training knockouts (the scene's genes not held out).
    pub train_genes: Vec<String>,
    /// Notes for the user (hold-outs the model was not trained with, partial averages).
    pub notes: Vec<String>,
    /// Scores, grouped by cell group, baselines first.
    pub rows: Vec<EvalRow>,
    /// The cells behind the scores, per group, as `cell-eval` reads them (when
    /// [`EvalOptions::export`] asked for them).
    pub export: Option<crate::export::Export>,
}

fn bad(option: &str, message: String) -> TorchError {
    TorchError::BadOption { option: option.into(), message }
}

/// One model's runs: the control and each held-out knockout (the cells and their
/// distances to the nearest knocked-out cell).
pub(crate) struct Runs {
    pub(crate) control: CellTable,
    pub(crate) perturbed: Vec<(CellTable, Vec<f32>)>,
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
    let mut sim = Simulation::new(&sc, Box::new(explant_field::CpuDiffusion::with_scheme(sc.grid.scheme)), model)
        .map_err(TorchError::Simulation)?;
    for _ in 0..sim.total_ticks() {
        sim.step().map_err(TorchError::Simulation)?;
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
    progress: &mut dyn FnMut(&str),
) -> Result<Runs> {
    let started = std::time::Instant::now();
    let control = run(scene, None, make()?)?.0;
    progress(&format!("  control: {:.1} s", started.elapsed().as_secs_f64()));
    let perturbed = genes
        .iter()
        .map(|g| {
            let started = std::time::Instant::now();
            let r = run(scene, Some(knockout(g, cell_type)), make()?);
            progress(&format!("  {g} knockout: {:.1} s", started.elapsed().as_secs_f64()));
            r
        })
        .collect::<Result<_>>()?;
    Ok(Runs { control, perturbed })
}

/// Group membership per cell of a perturbed run: 0 = perturbed, 1.. = bands, last = far.
pub(crate) fn group_of(table: &CellTable, d: &[f32], bands: &[f32]) -> Vec<usize> {
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

/// Cell `i`'s expression in `t` (`g` genes).
pub(crate) fn row(t: &CellTable, i: usize, g: usize) -> &[f32] {
    &t.expression[i * g..(i + 1) * g]
}

/// Per group: the perturbed run's cells against their control twins (matched ids), as a
/// [`Response`] (pseudobulks, delta, rank-sum p-values and fold changes); `None` where
/// the group has no matched cell.
fn responses(pert: &CellTable, d: &[f32], ctrl: &CellTable, bands: &[f32], g: usize) -> Vec<Option<Response>> {
    let groups = group_of(pert, d, bands);
    let matched = match_ids(pert, ctrl);
    (0..=bands.len())
        .map(|k| {
            let cells: Vec<(usize, usize)> =
                (0..pert.ids.len()).filter(|&i| groups[i] == k).filter_map(|i| matched[i].map(|j| (i, j))).collect();
            let a: Vec<&[f32]> = cells.iter().map(|c| row(pert, c.0, g)).collect();
            let b: Vec<&[f32]> = cells.iter().map(|c| row(ctrl, c.1, g)).collect();
            Response::of(&a, &b)
        })
        .collect()
}

/// The neighbour-average baseline for one held-out knockout: the knockout's direct
/// effect and nothing downstream of it, spread to neighbours by averaging. Knocked-out
/// cells (as flagged in the true perturbed run `pert`) take their control expression
/// with the target gene at 0; every other cell takes its control expression plus the
/// mean direct change over itself and its neighbours within the contact radius (`lists`,
/// the control's, from [`explant_core::effects::neighbourhood`]).
/// Returned as a table shaped like `pert` (cells without a control twin keep `pert`'s
/// rows, and are not scored: `responses` matches ids with the control).
fn neighbour_average(pert: &CellTable, control: &CellTable, lists: &Csr, target: usize, g: usize) -> CellTable {
    let matched = match_ids(pert, control);
    let mut knocked = vec![false; control.ids.len()];
    for (i, j) in matched.iter().enumerate() {
        if let Some(j) = j {
            knocked[*j] = pert.perturbed[i];
        }
    }
    let direct: Vec<f32> =
        (0..control.ids.len()).map(|j| if knocked[j] { -control.expression[j * g + target] } else { 0.0 }).collect();
    let spread = explant_core::effects::neighbourhood_mean(lists, &direct, 1);
    let mut out = pert.clone();
    for (i, j) in matched.iter().enumerate() {
        if let Some(j) = *j {
            let row = &mut out.expression[i * g..(i + 1) * g];
            row.copy_from_slice(&control.expression[j * g..(j + 1) * g]);
            row[target] = if knocked[j] { 0.0 } else { (row[target] + spread[j]).max(0.0) };
        }
    }
    out
}

/// Where the model's training did not hold out what this evaluation holds out: each
/// such score is in-sample, and the user should know.
fn hold_out_mismatch(model: &std::path::Path, ty: &str, genes: &[String]) -> Result<Vec<String>> {
    let meta = crate::ModelMeta::read(&crate::meta_path(model))?;
    let Some(t) = meta.training else {
        return Ok(vec![format!(
            "`{}` records no training provenance: whether this evaluation is held out is unknown",
            model.display()
        )]);
    };
    let mut out = Vec::new();
    if t.hold_out_type.as_deref() != Some(ty) {
        out.push(format!(
            "the model was trained with {} held out, not `{ty}`: its scores for `{ty}` are in-sample",
            t.hold_out_type.as_deref().map_or("no cell type".to_string(), |h| format!("`{h}`"))
        ));
    }
    let seen: Vec<&str> = genes.iter().filter(|g| !t.hold_out_genes.contains(g)).map(String::as_str).collect();
    if !seen.is_empty() {
        out.push(format!(
            "the model may have seen perturbations of {} in training (not in its hold-out genes)",
            seen.join(", ")
        ));
    }
    Ok(out)
}

/// Run the protocol on `scene`: the truth and the training knockouts with the teacher,
/// the held-out knockouts with the learned model and the ridge baseline, and every score
/// of every model and baseline in every group. `progress` gets a line per step.
pub fn evaluate(scene: &LoadedScene, opts: &EvalOptions, progress: &mut dyn FnMut(&str)) -> Result<Evaluation> {
    let sc = &scene.scene;
    let train_genes = training_knockouts(sc, opts)?;
    let targets: Vec<usize> = opts.perturb.iter().filter_map(|x| sc.gene_index(x)).collect();
    let signature = explant_core::ModelSignature::of_scene(sc);
    let mut notes = model_notes(opts, &signature, progress)?;
    let runs = all_runs(scene, opts, &signature, &train_genes, &mut notes, progress)?;
    let scoring = Scoring::new(sc, runs, &targets, opts.perturb.len())?;
    let mut rows = Vec::new();
    for mode in [Mode::Free, Mode::Anchored] {
        for (k, name) in group_names(&sc.output.distance_bands).iter().enumerate() {
            rows.extend(scoring.group(mode, k, name, &mut notes, progress));
        }
    }
    // The untrained network is left out of the export: its free-running cells are not
    // expression (random dynamics; values past `cell-eval`'s log1p range of [0, 15)).
    let exported: Vec<(&str, &Runs)> =
        scoring.predictors.iter().filter(|(name, _)| *name != "untrained").map(|(n, r)| (*n, r)).collect();
    let export =
        opts.export.then(|| crate::export::Export::new(sc, &opts.perturb, &scoring.truth_runs, &exported, &mut notes));
    Ok(Evaluation { train_genes, notes, rows, export })
}

/// The training knockouts (the scene's genes not held out), after checking that the
/// held-out cell type and genes exist, that at least two distinct genes are held out,
/// and that at least one is left to train on.
fn training_knockouts(sc: &Scene, opts: &EvalOptions) -> Result<Vec<String>> {
    let ty = &opts.hold_out_type;
    let perturb = &opts.perturb;
    if sc.cell_type_index(ty).is_none() {
        return Err(bad(
            "hold-out-type",
            format!("unknown cell type `{ty}`{}", explant_scene::suggest(ty, &sc.cell_type_names())),
        ));
    }
    for gene in perturb {
        if sc.gene_index(gene).is_none() {
            return Err(bad("perturb", format!("unknown gene `{gene}`{}", explant_scene::suggest(gene, &sc.genes))));
        }
    }
    if perturb.len() < 2 {
        return Err(bad("perturb", "give at least two held-out genes (the discrimination score compares them)".into()));
    }
    if let Some((i, gene)) = perturb.iter().enumerate().find(|(i, x)| perturb[..*i].contains(x)) {
        let first = perturb.iter().position(|x| x == gene).unwrap_or(0) + 1;
        return Err(bad("perturb", format!("`{gene}` is given twice (at positions {first} and {})", i + 1)));
    }
    let train_genes: Vec<String> = sc.genes.iter().filter(|x| !perturb.contains(x)).cloned().collect();
    if train_genes.is_empty() {
        return Err(bad(
            "perturb",
            "every gene of the scene is held out, so no training knockout is left for the mean baseline \
             (hold out fewer genes)"
                .into(),
        ));
    }
    Ok(train_genes)
}

/// Load the learned model once (a wrong path or names fail now, not after the teacher's
/// runs) and note, through `progress` too, where its training did not hold out the same.
fn model_notes(
    opts: &EvalOptions,
    signature: &explant_core::ModelSignature,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<String>> {
    crate::TorchModel::load_for(&opts.model, signature, 0)?;
    let notes = hold_out_mismatch(&opts.model, &opts.hold_out_type, &opts.perturb)?;
    for line in &notes {
        progress(&format!("note: {line}"));
    }
    Ok(notes)
}

/// Every model's runs: the teacher's (the truth, the training knockouts and the
/// replicate), the learned model's, the ridge baseline's and the untrained network's.
struct AllRuns {
    /// The teacher under the held-out knockouts.
    truth: Runs,
    /// The teacher under the training knockouts.
    training: Runs,
    /// The teacher under the held-out knockouts in another tissue (the scene's seed + 1):
    /// the replicate ceiling.
    replicate: Runs,
    /// The learned model under the held-out knockouts.
    learned: Runs,
    /// The ridge baseline under the held-out knockouts.
    ridge: Runs,
    /// The untrained network under the held-out knockouts (`None` if one of its runs
    /// stopped, with the reason in the notes).
    untrained: Option<Runs>,
}

/// Run the teacher (truth, training knockouts, replicate), the learned model, the ridge
/// baseline (fitted first on the network's training samples) and an untrained network of
/// the learned model's shape, in that order.
fn all_runs(
    scene: &LoadedScene,
    opts: &EvalOptions,
    signature: &explant_core::ModelSignature,
    train_genes: &[String],
    notes: &mut Vec<String>,
    progress: &mut dyn FnMut(&str),
) -> Result<AllRuns> {
    let sc = &scene.scene;
    let (ty, perturb) = (&opts.hold_out_type, &opts.perturb);
    progress(&format!(
        "truth: the teacher under {} held-out and {} training knockouts in `{ty}`...",
        perturb.len(),
        train_genes.len()
    ));
    let teacher = || -> Result<Box<dyn ResponseModel>> { Ok(Box::new(Teacher::from_scene(sc))) };
    let truth = runs(sc, perturb, ty, &teacher, progress)?;
    let training = runs(sc, train_genes, ty, &teacher, progress)?;
    let mut other = sc.clone();
    other.seed = sc.seed.wrapping_add(1);
    progress(&format!("replicate: the teacher in another tissue (seed {})...", other.seed));
    let replicate = runs(&other, perturb, ty, &|| Ok(Box::new(Teacher::from_scene(&other))), progress)?;
    progress(&format!("learned model `{}`...", opts.model.display()));
    let learned = runs(
        sc,
        perturb,
        ty,
        &|| -> Result<Box<dyn ResponseModel>> { Ok(Box::new(crate::TorchModel::load_for(&opts.model, signature, 0)?)) },
        progress,
    )?;
    progress("ridge regression on the network's training samples...");
    let fit = crate::FitOptions {
        seed: opts.seed,
        contexts: opts.contexts,
        hold_out_type: Some(ty.clone()),
        hold_out_genes: perturb.clone(),
        ..Default::default()
    };
    let ridge_model = crate::fit_ridge(scene, &fit, 1e-3)?;
    let ridge =
        runs(sc, perturb, ty, &|| -> Result<Box<dyn ResponseModel>> { Ok(Box::new(ridge_model.clone())) }, progress)?;
    progress("untrained network of the learned model's shape...");
    let untrained = crate::untrained::Untrained::new(scene, &opts.model, &fit, signature)?;
    let untrained = match runs(sc, perturb, ty, &|| untrained.load(), progress) {
        Ok(r) => Some(r),
        Err(TorchError::Simulation(e)) => {
            let note = format!("the untrained network's run stopped, so it has no rows: {e}");
            progress(&format!("note: {note}"));
            notes.push(note);
            None
        }
        Err(e) => return Err(e),
    };
    Ok(AllRuns { truth, training, replicate, learned, ridge, untrained })
}

/// Names of the groups of cells: `perturbed`, each distance band, then `far`.
pub(crate) fn group_names(bands: &[f32]) -> Vec<String> {
    std::iter::once("perturbed".to_string())
        .chain(bands.windows(2).map(|w| format!("{}-{} um", w[0], w[1])))
        .chain(std::iter::once(format!("far (>= {} um)", bands.last().copied().unwrap_or(0.0))))
        .collect()
}

/// Responses per held-out (or training) knockout, per group.
type Responses = Vec<Vec<Option<Response>>>;

/// How a predictor is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The model simulates the whole tissue, its control and perturbed runs alike: the
    /// score mixes the prediction of the perturbation's effect with the model's error in
    /// reproducing the unperturbed tissue.
    Free,
    /// The truth's control plus the model's own perturbed-minus-control change, cell by
    /// cell (lineage-true ids): the prediction of the effect alone. The baselines, built
    /// from the truth's control, score the same both ways.
    Anchored,
}

impl Mode {
    /// The name in the table (`free`, `anchored`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Free => "free",
            Mode::Anchored => "anchored",
        }
    }
}

/// Every predictor's runs and responses, ready to be scored group by group.
struct Scoring<'a> {
    /// Genes.
    g: usize,
    /// Index of each held-out gene.
    targets: &'a [usize],
    /// Held-out knockouts: a group is scored only where the truth has cells for each.
    held_out: usize,
    /// The teacher's runs under the held-out knockouts.
    truth_runs: Runs,
    /// The teacher's responses to the held-out knockouts.
    truth: Responses,
    /// Per group: how many training knockouts the mean baseline averages there.
    mean_counts: Vec<usize>,
    /// Training knockouts.
    training: usize,
    /// Every predictor with cells in the truth's tissue, free-running, in the order of
    /// the score table: no change, clamp only, the context mean, the mean baseline, the
    /// neighbour average,
    /// the learned model, ridge and the untrained network (the export's predictors).
    predictors: Vec<(&'static str, Runs)>,
    /// Per mode ([`Mode::Free`], [`Mode::Anchored`]): every predictor's responses in the
    /// same order, then the replicate's.
    responses: [Vec<(&'static str, Responses)>; 2],
}

impl<'a> Scoring<'a> {
    /// Every predictor's runs (the baselines' built as cells from the truth: see
    /// [`crate::baseline_cells`]) and their responses, free-running and anchored.
    ///
    /// # Errors
    ///
    /// When the control's neighbour lists cannot be built (too many pairs).
    fn new(sc: &Scene, runs: AllRuns, targets: &'a [usize], held_out: usize) -> Result<Self> {
        let g = sc.genes.len();
        let bands = &sc.output.distance_bands;
        let per = |r: &Runs| -> Responses {
            r.perturbed.iter().map(|(t, d)| responses(t, d, &r.control, bands, g)).collect()
        };
        let AllRuns { truth, training, replicate, learned, ridge, untrained } = runs;
        let train_r = per(&training);
        // The mean delta of the training knockouts in each group.
        let groups = bands.len() + 1;
        let mut mean_counts = Vec::new();
        // Per group, the mean over the training knockouts of their delta (the mean
        // baseline) and of their pseudobulk (the context mean).
        let average = |k: usize, of: &dyn Fn(&Response) -> &Vec<f64>| -> Vec<f64> {
            let v: Vec<&Vec<f64>> = train_r.iter().filter_map(|p| p[k].as_ref().map(of)).collect();
            (0..g).map(|x| v.iter().map(|d| d[x]).sum::<f64>() / v.len().max(1) as f64).collect()
        };
        let mean_deltas: Vec<Vec<f64>> = (0..groups)
            .map(|k| {
                mean_counts.push(train_r.iter().filter(|p| p[k].is_some()).count());
                average(k, &|r| &r.delta)
            })
            .collect();
        let context_means: Vec<Vec<f64>> = (0..groups).map(|k| average(k, &|r| &r.mean)).collect();
        let from_truth = |build: &dyn Fn(&CellTable, &[f32], usize) -> CellTable| -> Runs {
            Runs {
                control: truth.control.clone(),
                perturbed: truth
                    .perturbed
                    .iter()
                    .zip(targets)
                    .map(|((t, d), &target)| (build(t, d, target), d.clone()))
                    .collect(),
            }
        };
        let control = &truth.control;
        let cells = crate::baseline_cells::no_change;
        let no_change = from_truth(&|t, _, _| cells(t, control, g));
        let clamp = from_truth(&|t, _, target| crate::baseline_cells::clamp_only(t, control, target, g));
        let mean = from_truth(&|t, d, _| crate::baseline_cells::mean_shift(t, d, control, bands, &mean_deltas, g));
        let context =
            from_truth(&|t, d, _| crate::baseline_cells::context_mean(t, d, control, bands, &context_means, g));
        // The control's neighbours, once for every target.
        let lists = explant_core::effects::neighbourhood(control, sc.contact.radius).map_err(TorchError::Simulation)?;
        let neighbour = from_truth(&|t, _, target| neighbour_average(t, control, &lists, target, g));
        // Baselines are built on the truth's control (anchored already); models run their own.
        let mut predictors = vec![
            ("no-change", no_change, false),
            ("clamp", clamp, false),
            ("context-mean", context, false),
            ("mean", mean, false),
            ("neighbour-avg", neighbour, false),
            ("learned", learned, true),
            ("ridge", ridge, true),
        ];
        predictors.extend(untrained.map(|u| ("untrained", u, true)));
        let mut free = Vec::new();
        let mut anchored = Vec::new();
        for (name, r, own) in &predictors {
            let f = per(r);
            anchored.push((*name, if *own { per(&anchor(&truth, r, targets, g)) } else { f.clone() }));
            free.push((*name, f));
        }
        let truth_r = per(&truth);
        // The replicate is another tissue: no cell is shared, so it is anchored per group.
        let rep = per(&replicate);
        let rep_anchored = rep
            .iter()
            .zip(&truth_r)
            .map(|(r, t)| {
                r.iter()
                    .zip(t)
                    .map(|(r, t)| match (r, t) {
                        (Some(r), Some(t)) => Some(anchor_response(r, t)),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        free.push(("replicate", rep));
        anchored.push(("replicate", rep_anchored));
        Ok(Self {
            g,
            targets,
            held_out,
            truth_runs: truth,
            truth: truth_r,
            mean_counts,
            training: training.perturbed.len(),
            predictors: predictors.into_iter().map(|(n, r, _)| (n, r)).collect(),
            responses: [free, anchored],
        })
    }

    /// The rows of group `k` (named `name`) in `mode`: each predictor with responses in
    /// every held-out knockout (the baselines always); none where the truth lacks cells
    /// for one.
    fn group(
        &self,
        mode: Mode,
        k: usize,
        name: &str,
        notes: &mut Vec<String>,
        progress: &mut dyn FnMut(&str),
    ) -> Vec<EvalRow> {
        // Truth for this group, per held-out knockout.
        let t: Vec<&Response> = self.truth.iter().filter_map(|p| p[k].as_ref()).collect();
        if t.len() != self.held_out {
            return Vec::new();
        }
        if mode == Mode::Free && self.mean_counts[k] < self.training {
            let note = format!(
                "group `{name}`: the mean baseline averages {} of {} training knockouts (the others have no cells there)",
                self.mean_counts[k], self.training
            );
            progress(&format!("note: {note}"));
            notes.push(note);
        }
        let truth = GroupTruth::new(t, self.targets, self.g);
        let mut rows: Vec<(&str, Scores)> = Vec::new();
        let responses = &self.responses[mode as usize];
        for (label, rs) in responses {
            let got: Vec<&Response> = rs.iter().filter_map(|p| p[k].as_ref()).collect();
            if got.len() == truth.t.len() {
                rows.push((label, truth.score(&got)));
            }
        }
        eval_rows(mode, name, &rows)
    }
}

/// A model's runs anchored on the truth's control ([`crate::baseline_cells::anchored`]),
/// on the truth's cells and groups.
fn anchor(truth: &Runs, model: &Runs, targets: &[usize], g: usize) -> Runs {
    Runs {
        control: truth.control.clone(),
        perturbed: truth
            .perturbed
            .iter()
            .zip(&model.perturbed)
            .zip(targets)
            .map(|(((t, d), (m, _)), &target)| {
                crate::baseline_cells::anchored(t, d, &truth.control, m, &model.control, target, g)
            })
            .collect(),
    }
}

/// The replicate's response anchored on the truth's, per group: the truth's control
/// pseudobulk plus the replicate's delta (floored at 0), with the replicate's rank-sum
/// p-values and the fold changes of the anchored means.
fn anchor_response(rep: &Response, truth: &Response) -> Response {
    let mean: Vec<f64> = truth
        .control
        .iter()
        .zip(&rep.delta)
        .map(|(c, d)| {
            let v = c + d;
            if v < 0.0 { 0.0 } else { v }
        })
        .collect();
    let delta = mean.iter().zip(&truth.control).map(|(m, c)| m - c).collect();
    let lfc = mean.iter().zip(&truth.control).map(|(&m, &c)| explant_core::score::log2_fold_change(m, c)).collect();
    Response { mean, control: truth.control.clone(), delta, p: rep.p.clone(), lfc }
}

/// One model's scores in one group, averaged over the held-out knockouts.
#[derive(Clone)]
struct Scores {
    n: usize,
    mae: f64,
    mae_off_target: f64,
    pearson: f64,
    pearson_off_target: f64,
    pds: f64,
    de: f64,
    de_off_target: f64,
}

impl Scores {
    /// Normalised against a baseline as `cell-eval` does (unclipped): for MAE
    /// `(base − m) / base`, for PDS and DE overlap `(s − base) / (1 − base)`. Positive
    /// means better than the baseline, 0 as good, 1 perfect; NaN where the baseline
    /// is already perfect or undefined.
    fn against(&self, base: &Scores) -> (f64, f64, f64) {
        let up = |s: f64, b: f64| if b < 1.0 { (s - b) / (1.0 - b) } else { f64::NAN };
        let m = if base.mae > 0.0 { (base.mae - self.mae) / base.mae } else { f64::NAN };
        (m, up(self.pds, base.pds), up(self.de, base.de))
    }

    /// The scores as `[MAE, MAE off, Pearson, Pearson off, PDS, DE, DE off]`, with
    /// whether lower is better for each.
    fn all(&self) -> [(f64, bool); 7] {
        [
            (self.mae, true),
            (self.mae_off_target, true),
            (self.pearson, false),
            (self.pearson_off_target, false),
            (self.pds, false),
            (self.de, false),
            (self.de_off_target, false),
        ]
    }

    /// Each score rescaled so that `base` is 0 and `ceiling` 1 (NaN where the ceiling is
    /// not better than the baseline, or either is undefined).
    fn between(&self, base: &Scores, ceiling: &Scores) -> [f64; 7] {
        let (s, b, c) = (self.all(), base.all(), ceiling.all());
        std::array::from_fn(|x| {
            let ((s, lower), (b, _), (c, _)) = (s[x], b[x], c[x]);
            let (gain, span) = if lower { (b - s, b - c) } else { (s - b, c - b) };
            if span > 0.0 { gain / span } else { f64::NAN }
        })
    }
}

/// The truth in one group, per held-out knockout, with its DE genes.
struct GroupTruth<'a> {
    /// The truth's response per held-out knockout.
    t: Vec<&'a Response>,
    /// Truly DE genes per held-out knockout ([`Response::de_genes`]).
    real_de: Vec<Vec<usize>>,
    /// Index of each held-out gene.
    targets: &'a [usize],
    /// Genes.
    g: usize,
}

impl<'a> GroupTruth<'a> {
    /// The truth `t` with its DE genes.
    fn new(t: Vec<&'a Response>, targets: &'a [usize], g: usize) -> Self {
        let real_de = t.iter().map(|r| r.de_genes()).collect();
        Self { t, real_de, targets, g }
    }

    /// Scores of a prediction (its response per held-out knockout) against the truth,
    /// averaged over the knockouts.
    fn score(&self, got: &[&Response]) -> Scores {
        let (t, targets, real_de, g) = (&self.t, self.targets, &self.real_de, self.g);
        let n = got.len();
        let mean_of = |v: Vec<f64>| -> f64 {
            let v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
            if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
        };
        let average = |f: &dyn Fn(usize) -> f64| (0..n).map(f).sum::<f64>() / n as f64;
        let off = |v: &[f64], skip: usize| -> Vec<f64> { (0..g).filter(|&x| x != skip).map(|x| v[x]).collect() };
        let off_list = |v: &[usize], skip: usize| -> Vec<usize> { v.iter().copied().filter(|&x| x != skip).collect() };
        let truth_d: Vec<Vec<f64>> = t.iter().map(|x| x.delta.clone()).collect();
        let delta: Vec<Vec<f64>> = got.iter().map(|x| x.delta.clone()).collect();
        let got_de: Vec<Vec<usize>> = got.iter().map(|x| x.de_genes()).collect();
        Scores {
            n,
            mae: average(&|p| mae(&got[p].mean, &t[p].mean)),
            mae_off_target: average(&|p| mae(&off(&got[p].mean, targets[p]), &off(&t[p].mean, targets[p]))),
            pearson: mean_of((0..n).map(|p| pearson(&delta[p], &t[p].delta)).collect()),
            pearson_off_target: mean_of(
                (0..n).map(|p| pearson(&off(&delta[p], targets[p]), &off(&t[p].delta, targets[p]))).collect(),
            ),
            pds: discrimination(&delta, &truth_d, targets).iter().sum::<f64>() / n as f64,
            de: average(&|p| de_overlap(&real_de[p], &got_de[p])),
            de_off_target: average(&|p| {
                de_overlap(&off_list(&real_de[p], targets[p]), &off_list(&got_de[p], targets[p]))
            }),
        }
    }
}

/// The rows of one group in one mode, each normalised against the context mean and
/// between it and the replicate ceiling.
fn eval_rows(mode: Mode, name: &str, rows: &[(&str, Scores)]) -> Vec<EvalRow> {
    let find = |label: &str| rows.iter().find(|r| r.0 == label).map(|r| r.1.clone());
    let base = find("context-mean");
    let ceiling = find("replicate");
    rows.iter()
        .map(|(label, s)| {
            let (mae_vs_mean, pds_vs_mean, de_vs_mean) =
                base.as_ref().map_or((f64::NAN, f64::NAN, f64::NAN), |b| s.against(b));
            let normalised = match (&base, &ceiling) {
                (Some(b), Some(c)) => s.between(b, c),
                _ => [f64::NAN; 7],
            };
            EvalRow {
                model: label.to_string(),
                mode: mode.name(),
                group: name.to_string(),
                perturbations: s.n,
                mae: s.mae,
                mae_off_target: s.mae_off_target,
                pearson_delta: s.pearson,
                pearson_off_target: s.pearson_off_target,
                pds: s.pds,
                de_overlap: s.de,
                de_off_target: s.de_off_target,
                mae_vs_mean,
                pds_vs_mean,
                de_vs_mean,
                normalised,
            }
        })
        .collect()
}
