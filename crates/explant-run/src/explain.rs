//! Explanations: which signal channel carried a perturbation's effect, measured by
//! counterfactual runs (`explant explain`).
//!
//! **Ablation.** For a scene with perturbations, the control (no perturbations), the
//! perturbed run, and one perturbed run per channel in which that channel is held at the
//! control's value ([`explant_core::clamp`]) are stepped tick for tick from the same
//! initial state and random streams; the control steps first and hands its signals to the
//! clamped runs. For a target gene `g` and a group of cells `k`, with means over the cells
//! of the group present in every run (paired by lineage-true id):
//!
//! - total effect `Δ = mean(x_perturbed − x_control)`;
//! - effect carried by channel `c`: `Δ_c = mean(x_perturbed − x_clamped(c))`, the part of
//!   the effect lost when `c` is cut;
//! - share `Δ_c / Δ` (NaN when `Δ = 0`: nothing to share).
//!
//! A channel that carries nothing has `Δ_c = 0` bit for bit; one that carries everything
//! has `Δ_c = Δ`. Shares need not add up to 1: channels that act together (a sigmoid of
//! their sum) each lose more, or less, than their part of a sum; Shapley values (not yet
//! here) split such interactions fairly. This is the path-specific effect of a
//! counterfactual the simulator measures instead of infers (Pearl, *Causality*, 2009,
//! §4.5).
//!
//! Groups: the perturbed cells, each distance band of `output.distance_bands`, the far
//! cells (as `effects.csv`: [`explant_core::effects::groups`]), and each cell type (every
//! cell of the type). The runs share nothing and step in parallel (rayon over runs); each
//! run is deterministic on any thread count, so the table is too.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use explant_core::effects::{groups, match_ids};
use explant_core::{CellTable, Channel, CoreError, Simulation};
use explant_scene::LoadedScene;
use rayon::prelude::*;

use crate::tables::{TableData, write_table};
use crate::{DiffusionChoice, ModelChoice, RunDir, RunError, RunFile, backends};

/// How an explanation attributes effects to channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// One counterfactual run per channel with that channel held at the control's value.
    #[default]
    Ablation,
}

impl Method {
    /// The name written in `attribution.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ablation => "ablation",
        }
    }
}

/// How to explain a scene.
#[derive(Debug, Clone, Default)]
pub struct ExplainOptions {
    /// The attribution method.
    pub method: Method,
    /// The response model (`--teacher`, `--model`).
    pub model: ModelChoice,
    /// Where diffusion runs (each run has its own backend).
    pub diffusion: DiffusionChoice,
    /// Worker threads of each run's model (0: its default).
    pub threads: usize,
}

/// One row of `attribution.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// Target gene.
    pub target: String,
    /// Group of cells: `perturbed`, `band:FROM-TOum`, `far:FROMum+` or `type:NAME`.
    pub group: String,
    /// The channel, as the teacher's edges name their sources (`ligand:WNT3A`).
    pub channel: String,
    /// Cells of the group present in every run.
    pub cells: usize,
    /// Perturbed − control, mean over the group.
    pub total: f64,
    /// Perturbed − perturbed with the channel clamped, mean over the group.
    pub effect: f64,
    /// `effect / total` (NaN when the total is 0 or the group is empty).
    pub share: f64,
    /// Standard error of the share (none for ablation, which is exact for its runs).
    pub standard_error: Option<f64>,
    /// The method.
    pub method: Method,
}

/// An explanation of a scene's perturbations.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// Every (group, target, channel), groups in the order above, then genes and channels
    /// in the scene's order.
    pub rows: Vec<Attribution>,
    /// The channels, in the scene's order.
    pub channels: Vec<String>,
    /// Simulations stepped (control, perturbed, one per channel).
    pub runs: usize,
    /// Ticks each was stepped.
    pub ticks: u64,
    /// Wall seconds of the whole explanation.
    pub wall_seconds: f64,
}

impl Explanation {
    /// The row of (`group`, `target`, `channel`).
    pub fn get(&self, group: &str, target: &str, channel: &str) -> Option<&Attribution> {
        self.rows.iter().find(|r| r.group == group && r.target == target && r.channel == channel)
    }
}

/// One simulation of the explanation: the perturbed run, clamped on `channel` if any.
struct Arm {
    channel: Option<Channel>,
    sim: Simulation,
}

/// Explain `scene`'s perturbations by `opts.method` (see the module docs).
///
/// # Errors
///
/// When the scene has no perturbations, a backend cannot start, the model does not fit,
/// or a simulation fails (the message names the run: control, perturbed, or the clamped
/// channel).
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
    let channels = Channel::all(sc);
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
    let mut control = build(false)?;
    let mut arms = std::iter::once(None)
        .chain(channels.iter().copied().map(Some))
        .map(|channel| Ok(Arm { channel, sim: build(true)? }))
        .collect::<Result<Vec<_>, RunError>>()?;
    let names: Vec<String> = channels.iter().map(|c| c.name(sc)).collect();
    note(&format!(
        "explain ({}): control, perturbed and {} clamped run(s) ({}), {} ticks each",
        opts.method.name(),
        channels.len(),
        names.join(", "),
        control.total_ticks()
    ));

    let ticks = control.total_ticks();
    for _ in 0..ticks {
        control.step().map_err(|e| failed(e, "the control"))?;
        let values = Arc::new(control.channel_values(&channels));
        arms.par_iter_mut()
            .try_for_each(|arm| {
                let clamp: Vec<Channel> = arm.channel.into_iter().collect();
                arm.sim.clamp_channels(&clamp, values.clone())?;
                arm.sim.step()
            })
            .map_err(|e| failed(e, "a perturbed run (plain or clamped)"))?;
    }

    let ctrl = control.cells();
    let tables: Vec<CellTable> = arms.iter_mut().map(|a| a.sim.cells()).collect();
    let distance = arms[0].sim.perturbation_distance(&tables[0]);
    let rows = attribute(&scene, &tables, &ctrl, &distance, &names, opts.method);
    Ok(Explanation {
        rows,
        channels: names,
        runs: arms.len() + 1,
        ticks,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

fn failed(e: CoreError, which: &str) -> RunError {
    RunError::Invalid(format!("explain: {which} failed: {}", crate::error_chain(&e)))
}

/// The attribution rows: `tables[0]` is the perturbed run, `tables[1 + c]` the run with
/// channel `c` clamped, `distance` per cell of `tables[0]`.
fn attribute(
    scene: &LoadedScene,
    tables: &[CellTable],
    control: &CellTable,
    distance: &[f32],
    channels: &[String],
    method: Method,
) -> Vec<Attribution> {
    let sc = &scene.scene;
    let g = sc.genes.len();
    let full = &tables[0];
    // Each perturbed cell's row in the control and in every clamped run; only cells
    // present in all of them count.
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
    let mut rows = Vec::new();
    for (label, cells) in labelled {
        let members: Vec<usize> = cells.into_iter().filter(everywhere).collect();
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
                // `+ 0.0` writes a zero share as `0`, not `-0`.
                let share = if total == 0.0 { f64::NAN } else { effect / total + 0.0 };
                rows.push(Attribution {
                    target: target.clone(),
                    group: label.clone(),
                    channel: channel.clone(),
                    cells: n,
                    total,
                    effect,
                    share,
                    standard_error: None,
                    method,
                });
            }
        }
    }
    rows
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

/// Write the explanation into `dir/explain/` and return the paths written.
///
/// # Errors
///
/// When the folder or a file cannot be written.
pub fn write_explanation(dir: &RunDir, e: &Explanation) -> Result<Vec<PathBuf>, RunError> {
    let folder = dir.path(RunFile::Explain);
    std::fs::create_dir_all(&folder).map_err(RunError::file("create", &folder))?;
    let csv = dir.path(RunFile::Attribution);
    write_table(&csv, &attribution_table(e))?;
    Ok(vec![csv])
}

/// Below this share the top channel is not named in [`top_table`]: the effect does not
/// travel through any channel.
const DIRECT: f64 = 0.05;

/// The top channels of the `n` largest effects (by |total|, each target gene and group
/// once), as a table for the terminal: target, group, total effect, then the two channels
/// that carry most of it with their shares.
pub fn top_table(e: &Explanation, n: usize) -> String {
    let mut pairs: Vec<(&str, &str, f64)> = Vec::new();
    for r in &e.rows {
        if r.total.is_finite() && !pairs.iter().any(|p| p.0 == r.target && p.1 == r.group) {
            pairs.push((&r.target, &r.group, r.total));
        }
    }
    pairs.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    let mut s = format!(
        "{:<10} {:<20} {:>10}   {:<24} {:>6}   {:<24} {:>6}\n",
        "target", "group", "effect", "top channel", "share", "runner-up", "share"
    );
    for (target, group, total) in pairs.into_iter().take(n) {
        let mut ch: Vec<&Attribution> = e.rows.iter().filter(|r| r.target == target && r.group == group).collect();
        ch.sort_by(|a, b| b.effect.abs().total_cmp(&a.effect.abs()));
        let cell = |k: usize| ch.get(k).map_or((String::from("-"), f64::NAN), |r| (r.channel.clone(), r.share));
        let ((mut c1, s1), (c2, s2)) = (cell(0), cell(1));
        if s1.is_nan() || s1.abs() < DIRECT {
            // No channel carries it: the perturbation acts on the gene itself (a knockout of
            // the gene, or of a gene upstream in the same cell).
            c1 = "(none: within the cell)".into();
        }
        let _ = writeln!(s, "{target:<10} {group:<20} {total:>10.4}   {c1:<24} {s1:>6.2}   {c2:<24} {s2:>6.2}");
    }
    s
}
