//! Explanations: which signal channel carried a perturbation's effect, measured by
//! counterfactual runs (`explant explain`).
//!
//! Every method steps the control (no perturbations) and a set of perturbed runs, each
//! with some channels held at the control's value ([`explant_core::clamp`]), tick for
//! tick from the same initial state and random streams; the control steps first and hands
//! its signals to the clamped runs. For a target gene `g` and a group of cells `k`, means
//! are over the cells of the group present in every run (paired by lineage-true id), and
//! the total effect is `Δ = mean(x_perturbed − x_control)`.
//!
//! **Ablation** (`--method ablation`). One perturbed run per channel, with that channel
//! clamped:
//!
//! - effect carried by channel `c`: `Δ_c = mean(x_perturbed − x_clamped(c))`, the part of
//!   the effect lost when `c` is cut;
//! - share `Δ_c / Δ` (NaN when `Δ = 0`: nothing to share).
//!
//! **Parts of a ligand by secreting type** (`ligand:NAME from TYPE`, ablation only).
//! Transport is linear in the sources: per tick the secrete stage applies to each voxel
//! an affine map `ρ ← aρ + b` per cell (`a = 1/(1 + Δt V_c/V_v (S + U))` from every
//! cell, `b` the cell's own secretion and export), model secretion adds to `ρ`, and
//! diffusion–decay is a linear operator (fixed boundary values aside). So `ρ = ρ_0 +
//! Σ_T ρ_T`, where `ρ_T` starts at 0 and takes the same `a`s and operator but only type
//! `T`'s `b`s, and `ρ_0` holds the initial field, boluses, steady sources and boundary
//! values. The control and every run that cuts a part track `ρ_T` on a grid of their
//! own ([`Simulation::split_sources`], the same backend kind and scheme); cutting `from
//! T` makes a cell sense `s − r·ρ_T(perturbed) + r_c·ρ_T(control)` (`r` the receptor
//! gate), i.e. only type `T`'s part of the sensed ligand is the control's. This is exact
//! up to f32 rounding; a type that secretes nothing has `ρ_T = 0` in both runs and its
//! channel carries 0 bit for bit. The parts listed are [`Channel::from_types`]: every
//! type that can carry the ligand's `secreted_by` gene. With one secreting type the
//! part repeats `ligand:NAME` (without the background `ρ_0`) and is kept, so the source
//! is named. Shapley plays the coarse channels only: a ligand and its parts would be
//! overlapping players.
//!
//! A channel that carries nothing has `Δ_c = 0` bit for bit; one that carries everything
//! has `Δ_c = Δ`. Shares need not add up to 1: channels that act together (a sigmoid of
//! their sum) each lose more, or less, than their part of a sum, and cutting either hop
//! of a chain cuts all of it. This is the path-specific effect of a counterfactual the
//! simulator measures instead of infers (Pearl, *Causality*, 2009, §4.5).
//!
//! **Shapley** (`--method shapley`). The channels are players of a game whose value for a
//! coalition `S` is `v(S) = mean(x_S − x_control)`, `x_S` the perturbed run with every
//! channel *not* in `S` clamped: `v(all) = Δ`, and `v(∅)` is what the perturbation does
//! with every channel held at the control, i.e. inside the cells it touches (a knockout
//! moves its own gene). Channel `c`'s Shapley value is its marginal contribution
//! `v(P ∪ {c}) − v(P)` averaged over the orders of the channels, `P` the channels before
//! it (Shapley, 1953). The values of one order add up to `v(all) − v(∅)`, so the rows
//! of a (target, group) — one per channel plus the row `direct`, whose effect is `v(∅)` —
//! add up to the total effect; this is checked for every row (an error if it fails
//! beyond rounding). Unlike ablation shares, Shapley shares partition the effect: an
//! interaction is split evenly between the channels in it.
//!
//! With `n` channels, when `n ≤ 4` or the samples asked for are at least `n!`, every one
//! of the `2^n` coalitions is run and the values are exact (standard error 0). Otherwise
//! `samples` orders are drawn at random (seeded by the scene's seed, so the table is
//! deterministic), each distinct coalition of their prefixes is run once, and the
//! standard error of a share is the standard deviation of the channel's marginal
//! contributions over the orders, over `√samples`, over `|Δ|` (NaN for one sample).
//!
//! **Gradients** (`--method gradients`). Integrated gradients of the response model's rate
//! along the perturbed run, each channel's part carried forward through the cell's own
//! state ([`crate::explain_gradients`]): one tissue, no reruns, derivatives from the
//! model (analytic for the teacher, autograd for TorchScript). The rows of (target,
//! group) are one per channel and a `residual` (what no channel carried). The ablation
//! of the same channels runs beside it; `attribution.csv` holds the gradients' rows,
//! then the ablation's, and [`Comparison`] says where the two name different top
//! channels.
//!
//! Groups: the perturbed cells, each distance band of `output.distance_bands`, the far
//! cells (as `effects.csv`: [`explant_core::effects::groups`]), and each cell type (every
//! cell of the type). The runs share nothing and step in parallel (rayon over runs); each
//! run is deterministic on any thread count, so the table is too.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use explant_core::effects::{groups, match_ids};
use explant_core::{Batch, CellTable, Channel, CoreError, Simulation};
use explant_scene::LoadedScene;
use rayon::prelude::*;

use crate::explain_gradients::{Integrated, RESIDUAL};
use crate::tables::{TableData, write_table};
use crate::{DiffusionChoice, ModelChoice, RunDir, RunError, RunFile, backends};

/// How an explanation attributes effects to channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// One counterfactual run per channel with that channel held at the control's value.
    #[default]
    Ablation,
    /// Shapley values over the channels, exact or by permutation sampling (module docs).
    Shapley,
    /// Integrated gradients of the model's rate, carried through the cell's state
    /// ([`crate::explain_gradients`]), beside the ablation of the same channels.
    Gradients,
}

impl Method {
    /// The name written in `attribution.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ablation => "ablation",
            Method::Shapley => "shapley",
            Method::Gradients => "gradients",
        }
    }
}

/// The permutations [`Method::Shapley`] samples unless told otherwise.
pub const DEFAULT_SAMPLES: usize = 16;

/// The channel name of the Shapley row that holds `v(∅)`: the part of the effect that
/// travels through no channel (the perturbation acting inside the cells it touches).
pub const DIRECT: &str = "direct";

/// How to explain a scene.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    /// The attribution method.
    pub method: Method,
    /// Shapley: the permutations of the channels to sample (at least 1); when there are
    /// at most 4 channels, or at least as many samples as permutations, every coalition
    /// is run instead and the values are exact. Gradients: the nodes of the midpoint
    /// rule of each integral (at least 1). Ignored by ablation.
    pub samples: usize,
    /// The response model (`--teacher`, `--model`).
    pub model: ModelChoice,
    /// Where diffusion runs (each run has its own backend).
    pub diffusion: DiffusionChoice,
    /// Worker threads of each run's model (0: its default).
    pub threads: usize,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self {
            method: Method::default(),
            samples: DEFAULT_SAMPLES,
            model: ModelChoice::default(),
            diffusion: DiffusionChoice::default(),
            threads: 0,
        }
    }
}

/// One row of `attribution.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// Target gene.
    pub target: String,
    /// Group of cells: `perturbed`, `band:FROM-TOum`, `far:FROMum+` or `type:NAME`.
    pub group: String,
    /// The channel, as the teacher's edges name their sources (`ligand:WNT3A`), or
    /// [`DIRECT`] (Shapley only).
    pub channel: String,
    /// Cells of the group present in every run.
    pub cells: usize,
    /// Perturbed − control, mean over the group.
    pub total: f64,
    /// Ablation: perturbed − perturbed with the channel clamped, mean over the group.
    /// Shapley: the channel's Shapley value; for [`DIRECT`], every channel clamped −
    /// control.
    pub effect: f64,
    /// `effect / total` (NaN when the total is 0 or the group is empty).
    pub share: f64,
    /// Standard error of the share (none for ablation, which is exact for its runs; 0
    /// for exact Shapley values and the `direct` row; NaN when the share is NaN or from a
    /// single sampled permutation).
    pub standard_error: Option<f64>,
    /// The method.
    pub method: Method,
}

/// An explanation of a scene's perturbations.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// Every (group, target, channel), groups in the order above, then genes and channels
    /// in the scene's order (Shapley: then the [`DIRECT`] row).
    pub rows: Vec<Attribution>,
    /// The channels, in the scene's order.
    pub channels: Vec<String>,
    /// Simulations stepped (ablation: control, perturbed, one per channel; Shapley:
    /// control and one per coalition run).
    pub runs: usize,
    /// Shapley: the permutations sampled, or `None` when exact over every coalition
    /// (and for ablation).
    pub permutations: Option<usize>,
    /// Ticks each was stepped.
    pub ticks: u64,
    /// Wall seconds of the whole explanation.
    pub wall_seconds: f64,
    /// The method of the explanation (gradients: its rows come first, then the
    /// ablation's rows of the same channels).
    pub method: Method,
    /// Gradients: how they compare with the ablation.
    pub comparison: Option<Comparison>,
}

/// How a gradients explanation compares with the ablation of the same channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// (target, group) pairs with a total effect above 1e-3 in magnitude.
    pub pairs: usize,
    /// Of them, those where both methods name the same top channel.
    pub top_agree: usize,
    /// Spearman correlation of the two methods' effects over every (target, group,
    /// channel) of those pairs.
    pub spearman: f64,
    /// The pairs where the top channels differ: (target, group, gradients', ablation's),
    /// largest effects first.
    pub disagreements: Vec<(String, String, String, String)>,
    /// The integrals' worst completeness gap (|Σ IG − rate change|) and the largest
    /// channel-driven rate change it compares with.
    pub gap: (f64, f64),
    /// Model calls attributed.
    pub calls: usize,
}

impl Attribution {
    /// A row without a standard error (ablation, gradients): `share = effect / total`.
    fn exact(
        target: &str,
        group: &str,
        channel: impl Into<String>,
        cells: usize,
        total: f64,
        effect: f64,
        method: Method,
    ) -> Self {
        Self {
            target: target.to_owned(),
            group: group.to_owned(),
            channel: channel.into(),
            cells,
            total,
            effect,
            share: share(effect, total),
            standard_error: None,
            method,
        }
    }
}

impl Explanation {
    /// The row of (`group`, `target`, `channel`).
    pub fn get(&self, group: &str, target: &str, channel: &str) -> Option<&Attribution> {
        self.rows.iter().find(|r| r.group == group && r.target == target && r.channel == channel)
    }
}

/// One simulation of the explanation: the perturbed run with `clamp` held at the control.
struct Arm {
    clamp: Vec<Channel>,
    sim: Simulation,
}

/// Explain `scene`'s perturbations by `opts.method` (see the module docs).
///
/// # Errors
///
/// When the scene has no perturbations, `opts.samples` is 0 for Shapley or gradients,
/// the model gives no derivatives for gradients, there are more
/// than 63 channels for Shapley, a backend cannot start, the model does not fit, a
/// simulation fails (the message names the run: control, or a perturbed run), or the
/// Shapley values fail their sum check.
pub fn explain(
    mut scene: LoadedScene,
    opts: &ExplainOptions,
    note: &mut dyn FnMut(&str),
) -> Result<Explanation, RunError> {
    let started = Instant::now();
    opts.model.apply(&mut scene)?;
    let sc = &scene.scene;
    if sc.perturbations.is_empty() {
        return Err(RunError::Invalid(format!(
            "scene `{}` has no perturbations: an explanation splits a perturbation's effect among channels; add a \
             `[[perturbations]]` table",
            scene.path.display()
        )));
    }
    // Ablation also cuts each ligand's part from each secreting type; Shapley plays the
    // coarse channels only (a ligand and its parts are not separate players).
    let channels: Vec<Channel> = match opts.method {
        Method::Ablation => Channel::all(sc).into_iter().chain(Channel::from_types(sc)).collect(),
        Method::Shapley | Method::Gradients => Channel::all(sc),
    };
    let from: Vec<Channel> = channels.iter().copied().filter(|c| matches!(c, Channel::LigandFrom(..))).collect();
    let names: Vec<String> = channels.iter().map(|c| c.name(sc)).collect();
    // What each perturbed run clamps: ablation, nothing then each channel; Shapley, for
    // each coalition (the full one first), the channels outside it.
    let (clamps, design, coalitions) = match opts.method {
        Method::Ablation | Method::Gradients => {
            let clamps: Vec<Vec<Channel>> =
                std::iter::once(Vec::new()).chain(channels.iter().map(|&c| vec![c])).collect();
            (clamps, None, Vec::new())
        }
        Method::Shapley => {
            if opts.samples == 0 {
                return Err(RunError::Invalid(
                    "explain: Shapley samples must be at least 1 (got 0): give the number of channel orders to sample"
                        .into(),
                ));
            }
            if channels.len() > MAX_PLAYERS {
                return Err(RunError::Invalid(format!(
                    "explain: the scene has {} channels; Shapley values handle at most {MAX_PLAYERS}",
                    channels.len()
                )));
            }
            let design = Design::new(channels.len(), opts.samples, sc.seed);
            let coalitions = design.coalitions(channels.len());
            let clamps = coalitions
                .iter()
                .map(|&mask| {
                    channels.iter().enumerate().filter(|(i, _)| mask & (1 << i) == 0).map(|(_, &c)| c).collect()
                })
                .collect();
            (clamps, Some(design), coalitions)
        }
    };
    let (cells, notes) = crate::import::imported_cells(&scene)?;
    for n in notes {
        note(&format!("note: {n}"));
    }
    let build = |perturbed: bool| -> Result<Simulation, RunError> {
        let mut s = sc.clone();
        if !perturbed {
            s.perturbations.clear();
        }
        let (diffuser, _) = backends::diffusion(opts.diffusion, s.grid.scheme)?;
        let model = backends::model(&scene, opts.threads)?;
        Ok(Simulation::with_cells(&s, diffuser, model, cells.clone())?)
    };
    // The control and every run that cuts a `from TYPE` part split those ligands by
    // secreting type, each with its own backend of the run's kind.
    let split = |sim: &mut Simulation| -> Result<(), RunError> {
        let (diffuser, _) = backends::diffusion(opts.diffusion, sc.grid.scheme)?;
        Ok(sim.split_sources(&from, diffuser)?)
    };
    let mut control = build(false)?;
    if !from.is_empty() {
        split(&mut control)?;
    }
    let mut arms = clamps
        .into_iter()
        .map(|clamp| {
            let mut sim = build(true)?;
            if clamp.iter().any(|c| matches!(c, Channel::LigandFrom(..))) {
                split(&mut sim)?;
            }
            Ok(Arm { clamp, sim })
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    let mut integrated = match opts.method {
        Method::Gradients => {
            arms[0].sim.world.resource_mut::<Batch>().keep_inputs = true;
            control.world.resource_mut::<Batch>().keep_inputs = true;
            let model = backends::model(&scene, opts.threads)?;
            Some(Integrated::new(sc, model, &channels, opts.samples)?)
        }
        _ => None,
    };
    if integrated.is_some() {
        note(&format!(
            "explain (gradients): integrated gradients of the model's rate over {} channel(s) ({}), {} point(s) per \
             integral, along the perturbed run; and the ablation of the same channels to compare with",
            channels.len(),
            names.join(", "),
            opts.samples
        ));
    }
    match &design {
        None => note(&format!(
            "explain (ablation): control, perturbed and {} clamped run(s) ({}), {} ticks each",
            channels.len(),
            names.join(", "),
            control.total_ticks()
        )),
        Some(d) => note(&format!(
            "explain (shapley): control and {} coalition run(s) of {} channel(s) ({}; {}), {} ticks each",
            arms.len(),
            channels.len(),
            names.join(", "),
            match d {
                Design::Exact => "exact over every coalition".to_owned(),
                Design::Sampled(p) => format!("{} sampled permutations", p.len()),
            },
            control.total_ticks()
        )),
    }

    let ticks = control.total_ticks();
    for _ in 0..ticks {
        control.step().map_err(|e| failed(e, "the control"))?;
        let values = Arc::new(control.channel_values(&channels));
        arms.par_iter_mut()
            .try_for_each(|arm| {
                arm.sim.clamp_channels(&arm.clamp, values.clone())?;
                arm.sim.step()
            })
            .map_err(|e| failed(e, "a perturbed run (plain or clamped)"))?;
        if let Some(ig) = integrated.as_mut() {
            let sim = &mut arms[0].sim;
            let mothers: HashMap<u64, u64> = if ig.meets_new_cells(sim.world.resource::<Batch>()) {
                let t = sim.cells();
                t.ids.iter().copied().zip(t.parents.iter().copied()).collect()
            } else {
                HashMap::new()
            };
            ig.tick(sim.world.resource::<Batch>(), control.world.resource::<Batch>(), &values, &mothers)
                .map_err(|e| failed(e, "the gradients of the perturbed run"))?;
        }
    }

    let ctrl = control.cells();
    let tables: Vec<CellTable> = arms.iter_mut().map(|a| a.sim.cells()).collect();
    let distance = arms[0].sim.perturbation_distance(&tables[0]);
    let paired = Paired::new(&scene, &tables, &ctrl, &distance);
    let mut rows = match &design {
        None => attribute(&scene, &paired, &tables, &ctrl, &names),
        Some(d) => attribute_shapley(&scene, &paired, &tables, &ctrl, &names, &coalitions, d)?,
    };
    let mut comparison = None;
    if let Some(ig) = integrated {
        let (gap, calls) = ((ig.gap, ig.scale), ig.calls);
        let parts = ig.finish(&tables[0]);
        let gradient_rows = attribute_gradients(&scene, &paired, &tables[0], &ctrl, &names, &parts);
        comparison = Some(compare(&gradient_rows, &rows, gap, calls));
        rows = gradient_rows.into_iter().chain(rows).collect();
    }
    Ok(Explanation {
        rows,
        channels: names,
        runs: arms.len() + 1,
        permutations: match design {
            Some(Design::Sampled(p)) => Some(p.len()),
            _ => None,
        },
        ticks,
        wall_seconds: started.elapsed().as_secs_f64(),
        method: opts.method,
        comparison,
    })
}

fn failed(e: CoreError, which: &str) -> RunError {
    RunError::Invalid(format!("explain: {which} failed: {}", crate::error_chain(&e)))
}

/// The cells of the perturbed run (`tables[0]`) paired with the control and every other
/// run, and the groups, each restricted to the cells present in every run.
struct Paired {
    /// Row of each cell of `tables[0]` in the control (`[0]`) and in `tables[k]` (`[k]`).
    matched: Vec<Vec<Option<usize>>>,
    /// (label, members) in the order of the module docs.
    groups: Vec<(String, Vec<usize>)>,
}

impl Paired {
    fn new(scene: &LoadedScene, tables: &[CellTable], control: &CellTable, distance: &[f32]) -> Self {
        let sc = &scene.scene;
        let full = &tables[0];
        let matched: Vec<Vec<Option<usize>>> =
            std::iter::once(control).chain(&tables[1..]).map(|t| match_ids(full, t)).collect();
        let everywhere = |i: &usize| matched.iter().all(|m| m[*i].is_some());
        let mut labelled: Vec<(String, Vec<usize>)> = groups(full, distance, &sc.output.distance_bands)
            .into_iter()
            .map(|grp| {
                let label = match grp.group {
                    "band" => format!("band:{}-{}um", grp.from, grp.to),
                    "far" => format!("far:{}um+", grp.from),
                    other => other.to_owned(),
                };
                (label, grp.cells)
            })
            .collect();
        for (t, ty) in sc.cell_types.iter().enumerate() {
            let cells = (0..full.ids.len()).filter(|&i| full.cell_types[i] as usize == t).collect();
            labelled.push((format!("type:{}", ty.name), cells));
        }
        let groups = labelled
            .into_iter()
            .map(|(label, cells)| (label, cells.into_iter().filter(everywhere).collect()))
            .collect();
        Self { matched, groups }
    }
}

/// The ablation rows: `tables[0]` is the perturbed run, `tables[1 + c]` the run with
/// channel `c` clamped.
fn attribute(
    scene: &LoadedScene,
    paired: &Paired,
    tables: &[CellTable],
    control: &CellTable,
    channels: &[String],
) -> Vec<Attribution> {
    let sc = &scene.scene;
    let g = sc.genes.len();
    let full = &tables[0];
    let matched = &paired.matched;
    let mut rows = Vec::new();
    for (label, members) in &paired.groups {
        let n = members.len();
        // Mean over the members of (full − other), other = control (k = 0) or a clamped run.
        let mean_diff = |k: usize, gene: usize| -> f64 {
            let other = if k == 0 { control } else { &tables[k] };
            let sum: f64 = members
                .iter()
                .map(|&i| {
                    let j = matched[k][i].unwrap_or(0);
                    f64::from(full.expression[i * g + gene]) - f64::from(other.expression[j * g + gene])
                })
                .sum();
            if n == 0 { f64::NAN } else { sum / n as f64 }
        };
        for (gene, target) in sc.genes.iter().enumerate() {
            let total = mean_diff(0, gene);
            for (c, channel) in channels.iter().enumerate() {
                let effect = mean_diff(c + 1, gene);
                rows.push(Attribution::exact(target, label, channel, n, total, effect, Method::Ablation));
            }
        }
    }
    rows
}

/// The gradients rows: for each group, target and channel the mean carried part
/// (`parts`, `cells × channels × genes` of `full`'s rows), then the `residual` row.
fn attribute_gradients(
    scene: &LoadedScene,
    paired: &Paired,
    full: &CellTable,
    control: &CellTable,
    channels: &[String],
    parts: &[f64],
) -> Vec<Attribution> {
    let sc = &scene.scene;
    let (g, nc) = (sc.genes.len(), channels.len());
    let mut rows = Vec::new();
    for (label, members) in &paired.groups {
        let n = members.len();
        let mean = |f: &dyn Fn(usize) -> f64| -> f64 {
            if n == 0 { f64::NAN } else { members.iter().map(|&i| f(i)).sum::<f64>() / n as f64 }
        };
        for (gene, target) in sc.genes.iter().enumerate() {
            let total = mean(&|i| {
                let j = paired.matched[0][i].unwrap_or(0);
                f64::from(full.expression[i * g + gene]) - f64::from(control.expression[j * g + gene])
            });
            let mut carried = 0.0;
            for (c, channel) in channels.iter().enumerate() {
                let effect = mean(&|i| parts[(i * nc + c) * g + gene]);
                carried += effect;
                rows.push(Attribution::exact(target, label, channel, n, total, effect, Method::Gradients));
            }
            let effect = total - carried;
            rows.push(Attribution::exact(target, label, RESIDUAL, n, total, effect, Method::Gradients));
        }
    }
    rows
}

/// Compare gradients with ablation, (target, group) by (target, group), over the
/// channels both have (ablation also has no `residual`).
fn compare(gradients: &[Attribution], ablation: &[Attribution], gap: (f64, f64), calls: usize) -> Comparison {
    let mut pairs: Vec<(&str, &str, f64)> = Vec::new();
    for r in gradients {
        if r.total.is_finite() && r.total.abs() > 1e-3 && !pairs.iter().any(|p| p.0 == r.target && p.1 == r.group) {
            pairs.push((&r.target, &r.group, r.total));
        }
    }
    pairs.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    let mut pairs_of_effects: Vec<(f64, f64)> = Vec::new();
    let (mut top_agree, mut disagreements) = (0, Vec::new());
    for &(target, group, _) in &pairs {
        let of = |rows: &[Attribution]| -> Vec<(String, f64)> {
            rows.iter()
                .filter(|r| r.target == target && r.group == group && r.channel != RESIDUAL)
                .map(|r| (r.channel.clone(), r.effect))
                .collect()
        };
        let (gr, ab) = (of(gradients), of(ablation));
        for (c, e) in &gr {
            if let Some((_, a)) = ab.iter().find(|(ac, _)| ac == c)
                && e.is_finite()
                && a.is_finite()
            {
                pairs_of_effects.push((*e, *a));
            }
        }
        let top = |v: &[(String, f64)]| {
            let mut v: Vec<&(String, f64)> = v.iter().collect();
            order_by_effect(&mut v, |r| (r.1, &r.0));
            v.first().map(|r| r.0.clone()).unwrap_or_default()
        };
        let (tg, ta) = (top(&gr), top(&ab));
        if tg == ta {
            top_agree += 1;
        } else {
            disagreements.push((target.to_owned(), group.to_owned(), tg, ta));
        }
    }
    Comparison {
        pairs: pairs.len(),
        top_agree,
        spearman: crate::stats::spearman(&pairs_of_effects),
        disagreements,
        gap,
        calls,
    }
}

/// `effect / total`, NaN when the total is 0 (`+ 0.0` writes a zero share as `0`, not
/// `-0`).
fn share(effect: f64, total: f64) -> f64 {
    if total == 0.0 { f64::NAN } else { effect / total + 0.0 }
}

/// The Shapley rows: `tables[k]` is the run of coalition `coalitions[k]` (bit `c` set:
/// channel `c` free; `tables[0]` every channel free, the perturbed run).
fn attribute_shapley(
    scene: &LoadedScene,
    paired: &Paired,
    tables: &[CellTable],
    control: &CellTable,
    channels: &[String],
    coalitions: &[u64],
    design: &Design,
) -> Result<Vec<Attribution>, RunError> {
    let sc = &scene.scene;
    let g = sc.genes.len();
    let n = channels.len();
    let matched = &paired.matched;
    let index: HashMap<u64, usize> = coalitions.iter().enumerate().map(|(k, &m)| (m, k)).collect();
    let empty = index[&0];
    let mut rows = Vec::new();
    for (label, members) in &paired.groups {
        let cells = members.len();
        // v(S) for the run k of S: mean over the members of (x_S − x_control).
        let value = |k: usize, gene: usize| -> f64 {
            let run = &tables[k];
            let sum: f64 = members
                .iter()
                .map(|&i| {
                    let j = if k == 0 { i } else { matched[k][i].unwrap_or(0) };
                    let c = matched[0][i].unwrap_or(0);
                    f64::from(run.expression[j * g + gene]) - f64::from(control.expression[c * g + gene])
                })
                .sum();
            if cells == 0 { f64::NAN } else { sum / cells as f64 }
        };
        for (gene, target) in sc.genes.iter().enumerate() {
            let values: Vec<f64> = (0..tables.len()).map(|k| value(k, gene)).collect();
            let v = |mask: u64| values[index[&mask]];
            let total = values[0];
            let direct = values[empty];
            let phi = design.values(n, &v);
            check_efficiency(&phi, direct, total, target, label)?;
            let row = |channel: &str, effect: f64, se: f64| Attribution {
                target: target.clone(),
                group: label.clone(),
                channel: channel.to_owned(),
                cells,
                total,
                effect,
                share: share(effect, total),
                standard_error: Some(if total == 0.0 || total.is_nan() { f64::NAN } else { se / total.abs() }),
                method: Method::Shapley,
            };
            for (channel, &(effect, se)) in channels.iter().zip(&phi) {
                rows.push(row(channel, effect, se));
            }
            rows.push(row(DIRECT, direct, 0.0));
        }
    }
    Ok(rows)
}

/// The Shapley values and `direct` must add up to the total effect (efficiency): a
/// failure is a bug in the coalitions or weights, never the user's.
fn check_efficiency(phi: &[(f64, f64)], direct: f64, total: f64, target: &str, group: &str) -> Result<(), RunError> {
    if !total.is_finite() {
        return Ok(());
    }
    let sum: f64 = phi.iter().map(|p| p.0).sum::<f64>() + direct;
    let scale = phi.iter().map(|p| p.0.abs()).sum::<f64>() + direct.abs() + total.abs();
    if (sum - total).abs() > 1e-9 * (1.0 + scale) || sum.is_nan() {
        return Err(RunError::Invalid(format!(
            "explain: internal check failed: the Shapley values of {target} in {group} plus `{DIRECT}` add up to \
             {sum}, not the total effect {total}"
        )));
    }
    Ok(())
}

/// Players a coalition bit mask holds.
const MAX_PLAYERS: usize = 63;

/// How the Shapley values of `n` channels are computed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Design {
    /// Every coalition, with Shapley's weights.
    Exact,
    /// The marginal contributions along these orders of the channels.
    Sampled(Vec<Vec<usize>>),
}

impl Design {
    /// Exact when `n ≤ 4` or `samples ≥ n!`; else `samples` orders drawn from a stream
    /// seeded by `seed`.
    fn new(n: usize, samples: usize, seed: u64) -> Self {
        let orders = (1..=n as u64).try_fold(1u64, u64::checked_mul);
        if n <= 4 || orders.is_some_and(|o| samples as u64 >= o) {
            return Design::Exact;
        }
        // SplitMix64, salted so the orders do not echo the simulation's own streams.
        let mut state = seed ^ 0x5348_4150_4c45_5900;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let perms = (0..samples)
            .map(|_| {
                // Fisher–Yates; the bias of the multiply-shift draw is below 2^-57.
                let mut p: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    let j = ((u128::from(next()) * (i as u128 + 1)) >> 64) as usize;
                    p.swap(i, j);
                }
                p
            })
            .collect();
        Design::Sampled(perms)
    }

    /// The coalitions to run, each once: the full one first, then the rest ascending.
    fn coalitions(&self, n: usize) -> Vec<u64> {
        let all = if n == 0 { 0 } else { u64::MAX >> (64 - n) };
        let mut rest: Vec<u64> = match self {
            Design::Exact => (0..all).collect(),
            Design::Sampled(perms) => {
                let mut set = vec![0u64];
                for p in perms {
                    let mut mask = 0u64;
                    for &c in p {
                        mask |= 1 << c;
                        set.push(mask);
                    }
                }
                set.sort_unstable();
                set.dedup();
                set.retain(|&m| m != all);
                set
            }
        };
        rest.insert(0, all);
        rest
    }

    /// Each channel's (Shapley value, its standard error) for the game `v` on `n`
    /// players; `v` is only asked for coalitions of [`Design::coalitions`].
    fn values(&self, n: usize, v: &dyn Fn(u64) -> f64) -> Vec<(f64, f64)> {
        match self {
            Design::Exact => {
                // φ_c = Σ_{S ∌ c} |S|! (n − |S| − 1)! / n! · (v(S ∪ c) − v(S)).
                let weight = |s: u32| -> f64 {
                    let s = s as usize;
                    let mut choose = 1.0f64;
                    for k in 0..s {
                        choose = choose * (n - 1 - k) as f64 / (k + 1) as f64;
                    }
                    1.0 / (n as f64 * choose)
                };
                (0..n)
                    .map(|c| {
                        let bit = 1u64 << c;
                        let phi = (0..1u64 << n)
                            .filter(|s| s & bit == 0)
                            .map(|s| weight(s.count_ones()) * (v(s | bit) - v(s)))
                            .sum();
                        (phi, 0.0)
                    })
                    .collect()
            }
            Design::Sampled(perms) => {
                let k = perms.len() as f64;
                let mut marginals = vec![Vec::with_capacity(perms.len()); n];
                for p in perms {
                    let mut mask = 0u64;
                    for &c in p {
                        let before = v(mask);
                        mask |= 1 << c;
                        marginals[c].push(v(mask) - before);
                    }
                }
                marginals
                    .iter()
                    .map(|m| {
                        let mean = m.iter().sum::<f64>() / k;
                        let var = m.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
                        // One order: no spread to measure (0 / 0 = NaN).
                        (mean, (var / k).sqrt())
                    })
                    .collect()
            }
        }
    }
}

/// `attribution.csv`:
/// `target,group,channel,cells,total_effect,effect,share,standard_error,method`
/// (`standard_error` empty for ablation).
pub fn attribution_table(e: &Explanation) -> TableData {
    let header = ["target", "group", "channel", "cells", "total_effect", "effect", "share", "standard_error", "method"];
    let mut t = TableData::new(header.map(String::from));
    for r in &e.rows {
        t.rows.push(vec![
            r.target.clone(),
            r.group.clone(),
            r.channel.clone(),
            r.cells.to_string(),
            r.total.to_string(),
            r.effect.to_string(),
            r.share.to_string(),
            r.standard_error.map(|s| s.to_string()).unwrap_or_default(),
            r.method.name().to_owned(),
        ]);
    }
    t
}

/// Write the explanation into `dir/explain/` (the table, then its pictures:
/// [`crate::explain_charts`]) and return the paths written.
///
/// # Errors
///
/// When the folder or a file cannot be written.
pub fn write_explanation(dir: &RunDir, e: &Explanation) -> Result<Vec<PathBuf>, RunError> {
    let folder = dir.path(RunFile::Explain);
    std::fs::create_dir_all(&folder).map_err(RunError::file("create", &folder))?;
    let csv = dir.path(RunFile::Attribution);
    write_table(&csv, &attribution_table(e))?;
    let charts = crate::explain_charts::draw_explain_charts(dir)?;
    Ok(std::iter::once(csv).chain(charts.heatmap.map(|h| h.0)).chain(charts.bars.into_iter().map(|b| b.1)).collect())
}

/// Below this share the top channel is not named in [`top_table`]: the effect does not
/// travel through any channel.
const NO_CHANNEL: f64 = 0.05;

/// The top channels of the `n` largest effects (by |total|, each target gene and group
/// once), as a table for the terminal: target, group, total effect, then the two channels
/// that carry most of it with their shares (Shapley's `direct` row printed as
/// `direct (within the cell)`).
pub fn top_table(e: &Explanation, n: usize) -> String {
    let mut pairs: Vec<(&str, &str, f64)> = Vec::new();
    let own: Vec<&Attribution> = e.rows.iter().filter(|r| r.method == e.method).collect();
    for r in &own {
        if r.total.is_finite() && !pairs.iter().any(|p| p.0 == r.target && p.1 == r.group) {
            pairs.push((&r.target, &r.group, r.total));
        }
    }
    pairs.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    let mut s = format!(
        "{:<10} {:<20} {:>10}   {:<26} {:>6}   {:<26} {:>6}\n",
        "target", "group", "effect", "top channel", "share", "runner-up", "share"
    );
    let shown = |c: &str| match c {
        DIRECT => "direct (within the cell)".to_owned(),
        RESIDUAL => "residual (within the cell)".to_owned(),
        _ => c.to_owned(),
    };
    for (target, group, total) in pairs.into_iter().take(n) {
        let mut ch: Vec<&Attribution> =
            own.iter().copied().filter(|r| r.target == target && r.group == group).collect();
        order_by_effect(&mut ch, |r| (r.effect, &r.channel));
        let cell = |k: usize| ch.get(k).map_or((String::from("-"), f64::NAN), |r| (shown(&r.channel), r.share));
        let ((mut c1, s1), (c2, s2)) = (cell(0), cell(1));
        if s1.is_nan() || s1.abs() < NO_CHANNEL {
            // No channel carries it: the perturbation acts on the gene itself (a knockout of
            // the gene, or of a gene upstream in the same cell).
            c1 = "(none: within the cell)".into();
        }
        let _ = writeln!(s, "{target:<10} {group:<20} {total:>10.4}   {c1:<26} {s1:>6.2}   {c2:<26} {s2:>6.2}");
    }
    if let Some(c) = &e.comparison {
        s.push_str(&comparison_text(c));
    }
    s
}

/// How gradients compare with ablation, for the terminal: agreement of the top
/// channels, rank correlation of the effects, the first disagreements, the integrals'
/// completeness gap.
pub fn comparison_text(c: &Comparison) -> String {
    let mut s = format!(
        "gradients vs ablation: the same top channel in {} of {} (target, group) pairs with an effect above 1e-3; \
         Spearman of the effects {:.3}\n",
        c.top_agree, c.pairs, c.spearman
    );
    for (target, group, g, a) in c.disagreements.iter().take(5) {
        let _ = writeln!(s, "  differ: {target} in {group}: gradients `{g}`, ablation `{a}`");
    }
    if c.disagreements.len() > 5 {
        let _ = writeln!(s, "  ... and {} more (attribution.csv has both methods' rows)", c.disagreements.len() - 5);
    }
    let _ = writeln!(
        s,
        "integrals: {} model call(s), worst completeness gap {:.2e} against rate changes up to {:.2e}",
        c.calls, c.gap.0, c.gap.1
    );
    s
}

/// Order channel rows by |effect|, largest first (a total order). Then, where two
/// neighbours' effects agree to 1e-6 (relative), a part of a ligand by source type
/// (`ligand:WNT3A from organiser`) moves behind the coarse channel after it: the two can
/// differ in single-precision rounding only (the part is computed through the split
/// fields; 2e-8 relative on the WNT3A test scene), and the coarse channel names the
/// signal, the part its source.
pub(crate) fn order_by_effect<T>(rows: &mut [T], key: impl Fn(&T) -> (f64, &str)) {
    rows.sort_by(|a, b| key(b).0.abs().total_cmp(&key(a).0.abs()));
    for i in 1..rows.len() {
        let mut k = i;
        while k > 0 {
            let ((x, a), (y, b)) = (key(&rows[k - 1]), key(&rows[k]));
            let tied = (x.abs() - y.abs()).abs() <= 1e-6 * x.abs().max(y.abs());
            if tied && a.contains(" from ") && !b.contains(" from ") {
                rows.swap(k - 1, k);
                k -= 1;
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_coarse_channel_goes_before_its_part_by_source_when_their_effects_tie() {
        let mut rows = vec![
            ("contact:DLL1", 0.5),
            ("ligand:W from organiser", -0.081_000_000_000_1),
            ("ligand:W", -0.081),
            ("neighbours:a", 0.0),
        ];
        super::order_by_effect(&mut rows, |r| (r.1, r.0));
        let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(names, ["contact:DLL1", "ligand:W", "ligand:W from organiser", "neighbours:a"]);
        // A part that carries clearly more stays in front.
        let mut rows = vec![("ligand:W", -0.08), ("ligand:W from organiser", -0.09)];
        super::order_by_effect(&mut rows, |r| (r.1, r.0));
        assert_eq!(rows[0].0, "ligand:W from organiser");
    }

    use super::*;

    /// Every coalition of `n` players is asked for only if the design runs it.
    fn game(n: usize, d: &Design, f: impl Fn(u64) -> f64) -> Vec<(f64, f64)> {
        let runs = d.coalitions(n);
        d.values(n, &|s| {
            assert!(runs.contains(&s), "coalition {s:b} was not run");
            f(s)
        })
    }

    #[test]
    fn exact_values_split_a_unanimity_game_evenly_and_give_additive_players_their_weight() {
        // v(S) = 3·[0 ∈ S] + 1·[2 ∈ S] + 2·[1, 3 ∈ S], 5 players, exact (5! samples): the
        // additive players get their weights, the pair {1, 3} splits its 2 evenly, player
        // 4 is a dummy. A swapped weight (|S|! (n−|S|)!/n!) breaks the pair's split.
        let d = Design::new(5, 120, 7);
        assert_eq!(d, Design::Exact);
        assert_eq!(d.coalitions(5).len(), 32);
        assert_eq!(d.coalitions(5)[0], 0b11111, "the full coalition is run first");
        let v = |s: u64| 3.0 * (s & 1) as f64 + ((s >> 2) & 1) as f64 + if s & 0b1010 == 0b1010 { 2.0 } else { 0.0 };
        let phi = game(5, &d, v);
        let want = [3.0, 1.0, 1.0, 1.0, 0.0];
        for (c, (&(p, se), w)) in phi.iter().zip(want).enumerate() {
            assert!((p - w).abs() < 1e-12 && se == 0.0, "player {c}: {p} ± {se}, want {w}");
        }
    }

    #[test]
    fn sampled_values_add_up_to_the_grand_coalition_and_are_unbiased_on_a_known_game() {
        // 6 players, 3 orders: sampled. Each order's marginals add to v(all) − v(∅), so
        // the means do too; additive players have no spread (standard error 0), the
        // players of the pair {0, 5} get 0 or 2 per order: mean within reach of 1.
        let d = Design::new(6, 3, 42);
        let Design::Sampled(perms) = &d else { panic!("6 players, 3 samples must sample") };
        assert_eq!(perms.len(), 3);
        for p in perms {
            let mut sorted = p.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..6).collect::<Vec<_>>(), "{p:?} is not a permutation");
        }
        assert!(d.coalitions(6).len() <= 3 * 5 + 2);
        let v = |s: u64| 0.5 + 1.5 * ((s >> 1) & 1) as f64 + if s & 0b100001 == 0b100001 { 2.0 } else { 0.0 };
        let phi = game(6, &d, v);
        let sum: f64 = phi.iter().map(|p| p.0).sum();
        assert!((sum - (v(0b111111) - v(0))).abs() < 1e-12, "{phi:?}");
        assert_eq!(phi[1], (1.5, 0.0));
        for c in [2, 3, 4] {
            assert_eq!(phi[c], (0.0, 0.0));
        }
        assert!((phi[0].0 + phi[5].0 - 2.0).abs() < 1e-12, "the pair splits its 2: {phi:?}");
        for c in [0, 5] {
            let (p, se) = phi[c];
            assert!(se.is_finite() && se >= 0.0 && (p - 1.0).abs() <= 1.0, "{c}: {p} ± {se}");
        }
        // The same seed draws the same orders; another seed other ones.
        assert_eq!(Design::new(6, 3, 42), d);
        assert_ne!(Design::new(6, 3, 43), d);
    }

    #[test]
    fn few_players_or_enough_samples_are_exact_and_one_sample_has_no_standard_error() {
        assert_eq!(Design::new(4, 1, 0), Design::Exact);
        assert!(matches!(Design::new(5, 119, 0), Design::Sampled(p) if p.len() == 119), "119 < 5! must sample");
        assert_eq!(Design::new(0, 1, 0).coalitions(0), vec![0]);
        let d = Design::new(5, 1, 3);
        let phi = game(5, &d, |s| f64::from(s.count_ones()));
        assert!(phi.iter().all(|&(p, se)| p == 1.0 && se.is_nan()), "{phi:?}");
    }

    #[test]
    fn the_sum_check_refuses_values_that_do_not_add_up() {
        assert!(check_efficiency(&[(0.25, 0.0), (0.5, 0.0)], 0.25, 1.0, "T", "g").is_ok());
        let err = check_efficiency(&[(0.25, 0.0), (0.5, 0.0)], 0.0, 1.0, "T", "g").unwrap_err().to_string();
        assert!(err.contains("T in g") && err.contains("0.75"), "{err}");
        assert!(check_efficiency(&[], f64::NAN, f64::NAN, "T", "g").is_ok(), "an empty group has nothing to check");
    }
}
