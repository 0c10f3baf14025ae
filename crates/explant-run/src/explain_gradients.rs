//! `explant explain --method gradients`: integrated gradients of the response model's
//! rate along the perturbed run, carried forward through the cell's own state.
//!
//! At every tick at which the model runs, each cell of the perturbed run that has a twin
//! in the control (same lineage-true id) has inputs `(x, u)`: its own expression `x` and
//! its signals `u` (sensed ligands, contact means, neighbour counts). Its baseline `u₀` is
//! `u` with every channel's column set to the twin's value in the control (what the cell
//! would have sensed there). The model's rate splits as
//!
//! ```text
//! f(x, u) − f(x, u₀) = Σ_c IG_c,  IG_c = (u_c − u₀_c) ∫₀¹ ∂f/∂u_c (x, u₀ + α (u − u₀)) dα
//! ```
//!
//! (integrated gradients, Sundararajan, Taly & Yan 2017), the integral by the midpoint
//! rule over `points` nodes; the Jacobians come from the model itself
//! ([`ResponseModel::jacobian`]: analytic for the teacher, autograd for TorchScript).
//! The rule's completeness gap `|Σ_c IG_c − (f(x, u) − f(x, u₀))|` is measured on every
//! cell and gene and reported beside the largest `|f(x, u) − f(x, u₀)|`.
//!
//! A signal changes the rate; the rate changes the state over the following ticks, also
//! through the cell's own gene network (WNT3A raises AXIN2, AXIN2 raises LGR5). The
//! state difference `Δx = x − x₀` from the twin's expression `x₀` moves by
//!
//! ```text
//! f(x, u) − f(x₀, u₀) = [f(x, u) − f(x, u₀)] + [f(x, u₀) − f(x₀, u₀)] = Σ_c IG_c + M Δx,
//! M = ∫₀¹ J_x(x₀ + β Δx, u₀) dβ
//! ```
//!
//! (the second bracket exactly, by the fundamental theorem of calculus along the
//! segment; `J_x = ∂f/∂x`, the integral by the same midpoint rule). So each cell
//! carries, per channel, the part `A_c` of its expression change owed to channel `c`,
//! stepped with the Euler step the simulation takes:
//!
//! ```text
//! A_c ← A_c + Δt (IG_c + M A_c),
//! ```
//!
//! and `Δx − Σ_c A_c` is the part no channel carried, stepped by `M` alone from the
//! perturbation's own action (the knockout of the cell's own gene). A cell without a
//! twin in the control takes `M = J_x(x, u)`.
//!
//! Where the simulation's step floors a gene at 0, its `A` is 0 (the floor has no
//! derivative). Where something other than the model's step set a gene between two
//! model calls (the perturb stage, a division's inheritance noise), `A` is scaled by
//! the same factor (new / stepped value: 0 for a knockout, `1 − fraction` for a
//! knockdown) and set to 0 for an overexpressed gene at its clamped value. A daughter
//! starts with her mother's `A`; a grafted cell with none.
//!
//! The effect of channel `c` on gene `g` in a group is the mean of `A_c[g]` over the
//! group's cells; the row `residual` is the total effect minus the channels' sum: what
//! travelled through no channel (the knockout acting on its own gene), plus the
//! quadrature's error, the Euler step's floor at 0, and the cells without twins. Ablation cuts a channel in every cell at once
//! and measures the whole rerun; gradients follow one tissue and credit the last hop of
//! a signal into the cell that answered, so the two agree where the channels act on the
//! target directly and the response is near linear, and `explant explain` reports where
//! they do not.

use std::collections::HashMap;

use explant_core::{Batch, CellTable, Channel, ChannelValues, CoreError, ResponseInput, ResponseModel, jacobian_width};
use explant_scene::{PerturbationName, Scene};

use crate::RunError;

/// Nodes of the midpoint rule unless told otherwise.
pub const DEFAULT_POINTS: usize = 16;

/// The channel name of the gradients row that holds what no channel carried.
pub const RESIDUAL: &str = "residual";

/// What one cell carries: per channel and gene, the part of its expression change owed
/// to the channel, and the expression the model's last step left it with.
#[derive(Debug, Clone)]
struct Carried {
    /// `channels × genes`, row-major.
    parts: Vec<f64>,
    /// The expression after the last Euler step (before the perturb stage).
    stepped: Vec<f32>,
}

/// The running integrated-gradients attribution of one perturbed run.
pub(crate) struct Integrated {
    model: Box<dyn ResponseModel>,
    channels: Vec<Channel>,
    points: usize,
    genes: usize,
    ligands: usize,
    types: usize,
    /// (gene, value) of every overexpression in the scene.
    overexpressed: Vec<(usize, f32)>,
    cells: HashMap<u64, Carried>,
    /// The tick of the last model call attributed.
    last: Option<u64>,
    /// Worst completeness gap and the largest channel-driven rate change.
    pub(crate) gap: f64,
    pub(crate) scale: f64,
    /// Model calls attributed.
    pub(crate) calls: usize,
    jac: Vec<f32>,
}

/// A column of the model's inputs: the array (0 sensed, 1 contact, 2 counts) and index.
fn column(c: Channel) -> (usize, usize) {
    match c {
        Channel::Ligand(l) | Channel::LigandFrom(l, _) => (0, l),
        Channel::Contact(g) => (1, g),
        Channel::Neighbours(t) => (2, t),
    }
}

impl Integrated {
    /// Attribute along a run of `scene` with `model` (a fresh instance of the run's model)
    /// over `channels` (coarse channels only).
    ///
    /// # Errors
    ///
    /// When `points` is 0, or the model cannot differentiate itself.
    pub(crate) fn new(
        scene: &Scene,
        mut model: Box<dyn ResponseModel>,
        channels: &[Channel],
        points: usize,
    ) -> Result<Self, RunError> {
        if points == 0 {
            return Err(RunError::Invalid(
                "explain: gradients need at least 1 point of the integral (got 0): give `--samples K`".into(),
            ));
        }
        let (genes, ligands, types) = (scene.genes.len(), scene.ligands.len(), scene.cell_types.len());
        // Probe: one cell at zero.
        let w = jacobian_width(genes, ligands, types);
        let zeros = vec![0.0f32; genes.max(ligands).max(types)];
        let probe = ResponseInput {
            cells: 1,
            expression: &zeros[..genes],
            sensed: &zeros[..ligands],
            contact: &zeros[..genes],
            neighbour_types: &zeros[..types],
            cell_type: &[0],
            dt: 1.0,
        };
        let mut jac = vec![0.0f32; genes * w];
        let name = model.name();
        if !model.jacobian(&probe, &mut jac).map_err(|e| RunError::Invalid(format!("explain: {e}")))? {
            return Err(RunError::Invalid(format!(
                "explain: the model {name} cannot give its derivatives, so `--method gradients` cannot run; use \
                 `--method ablation` or `--method shapley`"
            )));
        }
        let overexpressed = scene
            .perturbations
            .iter()
            .filter(|p| p.kind == PerturbationName::Overexpress)
            .filter_map(|p| Some((scene.gene_index(p.gene.as_deref()?)?, p.value?)))
            .collect();
        Ok(Self {
            model,
            channels: channels.to_vec(),
            points,
            genes,
            ligands,
            types,
            overexpressed,
            cells: HashMap::new(),
            last: None,
            gap: 0.0,
            scale: 0.0,
            calls: 0,
            jac: Vec::new(),
        })
    }

    /// Whether `batch` holds cells this attribution has not seen (whose mothers
    /// [`Integrated::tick`] then needs).
    pub(crate) fn meets_new_cells(&self, batch: &Batch) -> bool {
        !self.cells.is_empty() && batch.ids[..batch.cells].iter().any(|id| !self.cells.contains_key(id))
    }

    /// After a step of the perturbed run and of the control (both batches keep their
    /// model inputs; the control's signals are `control`): attribute the model call of this tick, if
    /// the model ran. `mothers` maps each cell first seen to its mother (empty when
    /// [`Integrated::meets_new_cells`] is false).
    ///
    /// # Errors
    ///
    /// When the model fails, or the control's signals are of another tick.
    pub(crate) fn tick(
        &mut self,
        batch: &Batch,
        control_batch: &Batch,
        control: &ChannelValues,
        mothers: &HashMap<u64, u64>,
    ) -> Result<(), CoreError> {
        let Some((tick, dt)) = batch.responded else { return Ok(()) };
        if self.last == Some(tick) {
            return Ok(());
        }
        self.last = Some(tick);
        if control.tick != tick || batch.sensed_at != Some(tick) {
            return Err(CoreError::Clamp(format!(
                "gradients: the model ran at tick {tick} but the signals are of tick {} (control) and {:?} (perturbed)",
                control.tick, batch.sensed_at
            )));
        }
        let (g, l, t) = (self.genes, self.ligands, self.types);
        let n = batch.cells;
        let w = jacobian_width(g, l, t);
        let nc = self.channels.len();
        let x = &batch.inputs[..n * g];
        let counted = batch.neighbour_types.len() == n * t;
        // Signals u and baseline u₀ (0 sensed, 1 contact, 2 counts), `N × width` each.
        let widths = [l, g, if counted { t } else { 0 }];
        let u: [Vec<f32>; 3] = [
            batch.sensed[..n * l].to_vec(),
            batch.contact[..n * g].to_vec(),
            if counted { batch.neighbour_types.clone() } else { Vec::new() },
        ];
        // Where each channel sits in the control's values (it holds every channel).
        let held: Vec<(usize, usize, usize)> = self
            .channels
            .iter()
            .filter_map(|&c| {
                let (a, j) = column(c);
                let col = control.channels.iter().position(|v| *v == c)?;
                (widths[a] > 0).then_some((a, j, col))
            })
            .collect();
        let mut base = u.clone();
        for i in 0..n {
            let Ok(row) = control.ids.binary_search(&batch.ids[i]) else { continue };
            for &(a, j, col) in &held {
                base[a][i * widths[a] + j] = control.values[row * control.channels.len() + col];
            }
        }
        // Integrated gradients by the midpoint rule: per cell, channel, gene.
        let mut ig = vec![0.0f64; n * nc * g];
        self.jac.resize(n * g * w, 0.0);
        let offsets = [g, g + l, 2 * g + l];
        for k in 0..self.points {
            let alpha = (k as f32 + 0.5) / self.points as f32;
            let at: Vec<Vec<f32>> =
                (0..3).map(|a| base[a].iter().zip(&u[a]).map(|(b, v)| b + alpha * (v - b)).collect()).collect();
            let input = signals_input(x, &at, &batch.cell_type[..n], dt);
            self.model.jacobian(&input, &mut self.jac)?;
            for i in 0..n {
                for (ci, &c) in self.channels.iter().enumerate() {
                    let (a, j) = column(c);
                    if widths[a] == 0 {
                        continue;
                    }
                    let delta = f64::from(u[a][i * widths[a] + j] - base[a][i * widths[a] + j]);
                    if delta == 0.0 {
                        continue;
                    }
                    for gene in 0..g {
                        let d = f64::from(self.jac[(i * g + gene) * w + offsets[a] + j]);
                        ig[(i * nc + ci) * g + gene] += d * delta / self.points as f64;
                    }
                }
            }
        }
        // Completeness: Σ_c IG_c against f(x, u) − f(x, u₀).
        let mut at_base = vec![0.0f32; n * g];
        let input0 = signals_input(x, &base, &batch.cell_type[..n], dt);
        self.model.rates(&input0, &mut at_base)?;
        for i in 0..n {
            for gene in 0..g {
                let change = f64::from(batch.rates[i * g + gene]) - f64::from(at_base[i * g + gene]);
                let sum: f64 = (0..nc).map(|ci| ig[(i * nc + ci) * g + gene]).sum();
                self.gap = self.gap.max((sum - change).abs());
                self.scale = self.scale.max(change.abs());
            }
        }
        // The state's own dynamics: Δx = x − x₀ against the twin's expression x₀ moves
        // by f(x, u₀) − f(x₀, u₀) = M Δx, M the mean of J_x over the segment from x₀ to x
        // at the control's signals (exact, by the fundamental theorem of calculus;
        // midpoint rule). A cell without a twin takes J_x at (x, u).
        let twins: HashMap<u64, usize> = control_batch.ids[..control_batch.cells].iter().copied().zip(0..).collect();
        let x0: Vec<f32> = (0..n)
            .flat_map(|i| match twins.get(&batch.ids[i]) {
                Some(&r) if control_batch.inputs.len() >= (r + 1) * g => &control_batch.inputs[r * g..(r + 1) * g],
                _ => &x[i * g..(i + 1) * g],
            })
            .copied()
            .collect();
        let mut mean_jx = vec![0.0f64; n * g * g];
        for k in 0..self.points {
            let beta = (k as f32 + 0.5) / self.points as f32;
            let at: Vec<f32> = x0.iter().zip(x).map(|(a, b)| a + beta * (b - a)).collect();
            let input = signals_input(&at, &base, &batch.cell_type[..n], dt);
            self.model.jacobian(&input, &mut self.jac)?;
            for i in 0..n {
                for gene in 0..g {
                    for j in 0..g {
                        mean_jx[(i * g + gene) * g + j] +=
                            f64::from(self.jac[(i * g + gene) * w + j]) / self.points as f64;
                    }
                }
            }
        }
        // Cells first seen: a daughter takes her mother's parts (as they were before this
        // tick), a grafted cell none.
        let fresh: Vec<u64> = batch.ids[..n].iter().copied().filter(|id| !self.cells.contains_key(id)).collect();
        if !fresh.is_empty() {
            let born: Vec<(u64, Carried)> = fresh
                .iter()
                .map(|id| {
                    let from = mothers.get(id).and_then(|m| self.cells.get(m)).cloned();
                    (*id, from.unwrap_or(Carried { parts: vec![0.0; nc * g], stepped: Vec::new() }))
                })
                .collect();
            self.cells.extend(born);
        }
        for i in 0..n {
            let Some(carried) = self.cells.get_mut(&batch.ids[i]) else { continue };
            let xi = &x[i * g..(i + 1) * g];
            rescale(carried, xi, &self.overexpressed, nc, g);
            let jx = |gene: usize, j: usize| mean_jx[(i * g + gene) * g + j];
            let before = carried.parts.clone();
            for ci in 0..nc {
                let a = &before[ci * g..(ci + 1) * g];
                for gene in 0..g {
                    let flow: f64 = (0..g).map(|j| jx(gene, j) * a[j]).sum();
                    carried.parts[ci * g + gene] += f64::from(dt) * (ig[(i * nc + ci) * g + gene] + flow);
                }
            }
            carried.stepped.clear();
            for gene in 0..g {
                let raw = xi[gene] + dt * batch.rates[i * g + gene];
                if raw < 0.0 {
                    for ci in 0..nc {
                        carried.parts[ci * g + gene] = 0.0;
                    }
                }
                carried.stepped.push(raw.max(0.0));
            }
        }
        self.calls += 1;
        Ok(())
    }

    /// The carried parts of every cell of `cells` (the perturbed run's final table),
    /// `cells × channels × genes`, after whatever the stages after the last model call
    /// did to the expression (a cell never attributed carries nothing).
    pub(crate) fn finish(mut self, cells: &CellTable) -> Vec<f64> {
        let (g, nc) = (self.genes, self.channels.len());
        let mut out = vec![0.0; cells.ids.len() * nc * g];
        for (i, id) in cells.ids.iter().enumerate() {
            let Some(carried) = self.cells.get_mut(id) else { continue };
            rescale(carried, &cells.expression[i * g..(i + 1) * g], &self.overexpressed, nc, g);
            for ci in 0..nc {
                for gene in 0..g {
                    out[(i * nc + ci) * g + gene] = carried.parts[ci * g + gene];
                }
            }
        }
        out
    }
}

/// The model's input for the cells of `cell_type`: expression `x` and the signals
/// `[sensed, contact, counts]`.
fn signals_input<'a>(x: &'a [f32], signals: &'a [Vec<f32>], cell_type: &'a [u32], dt: f32) -> ResponseInput<'a> {
    ResponseInput {
        cells: cell_type.len(),
        expression: x,
        sensed: &signals[0],
        contact: &signals[1],
        neighbour_types: &signals[2],
        cell_type,
        dt,
    }
}

/// Scale a cell's parts by what changed its expression since the model's last step (see
/// the module docs): `x` is its expression now.
fn rescale(carried: &mut Carried, x: &[f32], overexpressed: &[(usize, f32)], nc: usize, g: usize) {
    if carried.stepped.len() != g {
        return;
    }
    for gene in 0..g {
        let (now, then) = (x[gene], carried.stepped[gene]);
        if now == then {
            continue;
        }
        let clamped = overexpressed.iter().any(|&(og, v)| og == gene && v == now);
        let factor = if clamped || then <= 0.0 { 0.0 } else { f64::from(now) / f64::from(then) };
        for ci in 0..nc {
            carried.parts[ci * g + gene] *= factor;
        }
    }
}
