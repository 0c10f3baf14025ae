//! Fitting a small network to the teacher and exporting it as TorchScript.
//!
//! The teacher's scene is first run (CPU diffusion) to find the ranges its inputs
//! actually take; inputs are then drawn uniformly over those ranges (a box a little
//! larger than what the run visited, so the network also sees states a perturbation
//! can reach) with the counter-based generator, labelled with the teacher's `dx/dt`,
//! and split into training and validation sets. With `contexts > 0` (`explant train`)
//! the scene is also run with the teacher under that many perturbation contexts and
//! the inputs the cells actually saw are added (every fifth context for validation),
//! leaving out a held-out cell type and the perturbations of held-out genes. An MLP
//! `[x, s, c, onehot(type)] → 64 → 64 → G` (tanh) is fitted with Adam on the mean
//! squared error of the rates, keeping the weights with the best validation error
//! (early stopping). Everything is seeded; libtorch runs on one thread while fitting,
//! so the same seed gives the same model.

use std::path::{Path, PathBuf};

use explant_core::rng::{Purpose, uniform};
use explant_core::{ModelSignature, ResponseModel, Simulation, Teacher};
use explant_scene::LoadedScene;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{CModule, Device, Kind, Tensor};

use crate::meta::{CheckCase, META_FORMAT, ModelMeta, TrainingInfo};
use crate::{TorchError, meta_path};

/// Settings of [`fit_to_teacher`].
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Seed of sampling and initialisation.
    pub seed: u64,
    /// Training samples.
    pub train: usize,
    /// Validation samples.
    pub val: usize,
    /// Most Adam steps.
    pub steps: usize,
    /// Stop when validation error has not improved for this many evaluations (every 100 steps).
    pub patience: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Hidden width.
    pub hidden: i64,
    /// The command line to record in the metadata.
    pub command: String,
    /// Teacher runs under varied perturbations that provide on-trajectory samples
    /// (0: box samples only). A fifth of them (at least one) are kept for validation.
    pub contexts: usize,
    /// On-trajectory samples taken from each run (at most).
    pub per_context: usize,
    /// Never perturb this cell type in training and keep it out of the box samples: the
    /// model sees it only in the unperturbed contexts (its control trajectories).
    pub hold_out_type: Option<String>,
    /// Never perturb these genes in the training contexts.
    pub hold_out_genes: Vec<String>,
    /// Networks trained (seeds `seed`, `seed + 1`, ...) whose mean rate is the model.
    pub members: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            train: 40_000,
            val: 10_000,
            steps: 6_000,
            patience: 10,
            batch: 512,
            lr: 3e-3,
            hidden: 64,
            command: String::new(),
            contexts: 0,
            per_context: 4000,
            hold_out_type: None,
            hold_out_genes: Vec::new(),
            members: 1,
        }
    }
}

/// What fitting achieved.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// The `.pt` written.
    pub model: PathBuf,
    /// The `.json` written.
    pub meta: PathBuf,
    /// Provenance and validation errors.
    pub training: TrainingInfo,
}

struct Samples {
    x: Tensor,
    s: Tensor,
    c: Tensor,
    t: Tensor,
    /// Neighbours by cell type, `N × T` (zeros where the teacher reads no counts).
    k: Tensor,
    y: Tensor,
}

impl Samples {
    fn len(&self) -> usize {
        self.x.size()[0] as usize
    }

    fn join(self, other: Samples) -> Samples {
        Samples {
            x: Tensor::cat(&[self.x, other.x], 0),
            s: Tensor::cat(&[self.s, other.s], 0),
            c: Tensor::cat(&[self.c, other.c], 0),
            t: Tensor::cat(&[self.t, other.t], 0),
            k: Tensor::cat(&[self.k, other.k], 0),
            y: Tensor::cat(&[self.y, other.y], 0),
        }
    }

    fn select(&self, idx: &Tensor) -> Samples {
        Samples {
            x: self.x.index_select(0, idx),
            s: self.s.index_select(0, idx),
            c: self.c.index_select(0, idx),
            t: self.t.index_select(0, idx),
            k: self.k.index_select(0, idx),
            y: self.y.index_select(0, idx),
        }
    }
}

/// The perturbation of training context `k`: none, or a knockout or an overexpression
/// (to the teacher's ceiling α/γ) of one of the genes not held out, in all cells of one
/// cell type that is not held out, from the start. Consecutive contexts take the cell
/// types in turn; the gene and kind advance every round of types.
fn context_perturbation(
    sc: &explant_scene::Scene,
    opts: &FitOptions,
    held_type: Option<u32>,
    k: usize,
) -> Option<explant_scene::Perturbation> {
    let genes: Vec<&String> = sc.genes.iter().filter(|g| !opts.hold_out_genes.contains(g)).collect();
    let types: Vec<&String> =
        sc.cell_types.iter().enumerate().filter(|(i, _)| Some(*i as u32) != held_type).map(|(_, t)| &t.name).collect();
    let cycle = 2 * genes.len() + 1;
    let j = (k / types.len().max(1)) % cycle;
    if j == 0 || types.is_empty() {
        return None;
    }
    let gene = genes[(j - 1) / 2];
    let teacher = &sc.teacher;
    let alpha = *teacher.max_rate.get(gene).unwrap_or(&teacher.default_max_rate);
    let ceiling = if teacher.degradation > 0.0 { alpha / teacher.degradation } else { 1.0 };
    let knockout = (j - 1).is_multiple_of(2);
    Some(explant_scene::Perturbation {
        kind: if knockout {
            explant_scene::PerturbationName::Knockout
        } else {
            explant_scene::PerturbationName::Overexpress
        },
        gene: Some(gene.clone()),
        ligand: None,
        fraction: None,
        value: (!knockout).then_some(ceiling),
        rate: None,
        cells: None,
        cell_type: Some(types[k % types.len()].clone()),
        region: None,
        ids: None,
        when: None,
        start: 0.0,
        stop: None,
    })
}

/// Samples from the teacher's own trajectories: the scene run with the teacher under each
/// context of `contexts` (its own seed and [`context_perturbation`]); at every recording
/// interval every cell's inputs (own expression, sensed ligands, contact means, type) as
/// the simulation produced them, labelled with the teacher's `dx/dt` for those inputs.
/// Cells of the held-out type are kept only from the unperturbed contexts: a model sees
/// the held-out type's control trajectories (as the Virtual Cell Challenge and scGen give
/// a model the control cells of the context it must predict), never the type under a
/// perturbation. At most `per_context` samples per context, evenly strided.
fn trajectory_samples(
    scene: &LoadedScene,
    opts: &FitOptions,
    held_type: Option<u32>,
    contexts: Vec<usize>,
) -> Result<Samples, TorchError> {
    let sc0 = &scene.scene;
    let (g, l, nt) = (sc0.genes.len(), sc0.ligands.len(), sc0.cell_types.len());
    let (mut xs, mut ss, mut cs, mut ks, mut ts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for k in contexts {
        let mut sc = sc0.clone();
        sc.seed = opts.seed.wrapping_mul(1000).wrapping_add(k as u64);
        sc.perturbations = context_perturbation(sc0, opts, held_type, k).into_iter().collect();
        let perturbed = !sc.perturbations.is_empty();
        let teacher = Teacher::from_scene(&sc);
        let mut sim = Simulation::new(
            &sc,
            Box::new(explant_field::CpuDiffusion::with_scheme(sc.grid.scheme)),
            Box::new(teacher),
        )?;
        sim.world.resource_mut::<explant_core::Batch>().keep_inputs = true;
        let interval = sc.record_interval().max(1);
        let captures = (sim.total_ticks() / interval).max(1) as usize;
        let (mut cx, mut csn, mut cc, mut ck, mut ct) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..sim.total_ticks() {
            sim.step()?;
            if !sim.clock().tick.is_multiple_of(interval) {
                continue;
            }
            // The last model call's rows: expression, sensed, contact and type of the same
            // cells in the same order (States may have been re-sorted since).
            let b = sim.world.resource::<explant_core::Batch>();
            let n = b.cells;
            if b.inputs.len() < n * g
                || b.sensed.len() < n * l
                || b.contact.len() < n * g
                || b.neighbour_types.len() < n * nt
            {
                continue;
            }
            let stride = (n * captures / opts.per_context.max(1)).max(1);
            for i in (0..n).step_by(stride) {
                if perturbed && Some(b.cell_type[i]) == held_type {
                    continue;
                }
                cx.extend_from_slice(&b.inputs[i * g..(i + 1) * g]);
                csn.extend_from_slice(&b.sensed[i * l..(i + 1) * l]);
                cc.extend_from_slice(&b.contact[i * g..(i + 1) * g]);
                ck.extend_from_slice(&b.neighbour_types[i * nt..(i + 1) * nt]);
                ct.push(b.cell_type[i]);
            }
        }
        xs.extend(cx);
        ss.extend(csn);
        cs.extend(cc);
        ks.extend(ck);
        ts.extend(ct);
    }
    labelled(sc0, &mut Teacher::from_scene(sc0), &xs, &ss, &cs, &ks, &ts)
}

/// Label inputs (`N × G` expression, `N × L` sensed, `N × G` contact, `N × T`
/// neighbours by type, `N` types) with the teacher's `dx/dt` and pack them as tensors.
fn labelled(
    sc: &explant_scene::Scene,
    teacher: &mut Teacher,
    xs: &[f32],
    ss: &[f32],
    cs: &[f32],
    ks: &[f32],
    ts: &[u32],
) -> Result<Samples, TorchError> {
    let (g, l, nt) = (sc.genes.len(), sc.ligands.len(), sc.cell_types.len());
    let n = ts.len();
    let mut ys = vec![0.0f32; n * g];
    let input = explant_core::ResponseInput {
        cells: n,
        expression: xs,
        sensed: ss,
        contact: cs,
        neighbour_types: ks,
        cell_type: ts,
        dt: sc.time.dt,
    };
    teacher.rates(&input, &mut ys)?;
    let ti: Vec<i64> = ts.iter().map(|&v| i64::from(v)).collect();
    Ok(Samples {
        x: Tensor::from_slice(xs).view([n as i64, g as i64]),
        s: Tensor::from_slice(ss).view([n as i64, l as i64]),
        c: Tensor::from_slice(cs).view([n as i64, g as i64]),
        t: Tensor::from_slice(&ti).one_hot(nt as i64).to_kind(Kind::Float),
        k: Tensor::from_slice(ks).view([n as i64, nt as i64]),
        y: Tensor::from_slice(&ys).view([n as i64, g as i64]),
    })
}

/// Fit a network to the scene's teacher and write `out` (`.pt`) with its `.json`.
///
/// The steps: the input ranges from a teacher run, the hold-outs, the training and
/// validation samples, the input scaling, the networks (one per member), their
/// validation errors, the TorchScript export and the metadata with its check case.
pub fn fit_to_teacher(
    scene: &LoadedScene,
    out: &Path,
    opts: &FitOptions,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<FitReport, TorchError> {
    let sc = &scene.scene;
    let mut teacher = Teacher::from_scene(sc);
    // Neighbour counts by type are an input only where the teacher reads them.
    let counts = !teacher.n.is_empty();
    let (ranges, count_ranges) = input_ranges(scene)?;
    let (held_type, allowed) = hold_outs(sc, opts)?;
    let sampler = BoxSampler { sc, seed: opts.seed, ranges: &ranges, count_ranges: &count_ranges, allowed, counts };
    let (train, val) = training_sets(scene, opts, &sampler, &mut teacher, held_type)?;
    let samples = (train.len(), val.len());

    tch::set_num_threads(1);
    let inputs = InputScaling::fit(sc, &train, &ranges, &count_ranges, counts)?;
    // Outputs are learned in units of the largest rate magnitude.
    let out_scale = train.y.abs().max().double_value(&[]).max(1e-6);
    let trainer = Trainer { inputs: &inputs, out_scale, train: &train, val: &val, opts, genes: sc.genes.len() };
    let (members, steps_taken, mean_rate) = trainer.members(progress)?;
    let model = Ensemble { members, inputs: &inputs, out_scale };

    let errors = model.validation_errors(&train, &val, mean_rate);
    model.export(&val, out)?;
    let check = model.check_case(&val);
    let training = TrainingInfo {
        command: opts.command.clone(),
        scene: scene.path.display().to_string(),
        seed: opts.seed,
        steps: steps_taken,
        members: model.members.len(),
        samples,
        val_mse: errors.0,
        val_mse_no_change: errors.1,
        val_mse_mean: errors.2,
        input_ranges: inputs.widened.clone(),
        contexts: opts.contexts,
        hold_out_type: opts.hold_out_type.clone(),
        hold_out_genes: opts.hold_out_genes.clone(),
        unseen_types: inputs.unseen.clone(),
    };
    let meta_file = meta_path(out);
    model_meta(sc, counts, training.clone(), check).write(&meta_file)?;
    Ok(FitReport { model: out.to_path_buf(), meta: meta_file, training })
}

/// The held-out cell type, if any, after checking the hold-out options name a cell type
/// and genes of the scene, with the cell types left for the box samples.
fn hold_outs(sc: &explant_scene::Scene, opts: &FitOptions) -> Result<(Option<u32>, Vec<u32>), TorchError> {
    let nt = sc.cell_types.len();
    let held_type = match &opts.hold_out_type {
        Some(t) => Some(sc.cell_type_index(t).ok_or_else(|| TorchError::BadOption {
            option: "hold-out-type".into(),
            message: format!("unknown cell type `{t}`{}", explant_scene::suggest(t, &sc.cell_type_names())),
        })? as u32),
        None => None,
    };
    for gname in &opts.hold_out_genes {
        if sc.gene_index(gname).is_none() {
            return Err(TorchError::BadOption {
                option: "hold-out-genes".into(),
                message: format!("unknown gene `{gname}`{}", explant_scene::suggest(gname, &sc.genes)),
            });
        }
    }
    let allowed: Vec<u32> = (0..nt as u32).filter(|t| Some(*t) != held_type).collect();
    if allowed.is_empty() {
        return Err(TorchError::BadOption {
            option: "hold-out-type".into(),
            message: "the scene has no other cell type to train on".into(),
        });
    }
    Ok((held_type, allowed))
}

/// Inputs drawn uniformly over the box of input ranges with the counter-based generator.
struct BoxSampler<'a> {
    /// The scene.
    sc: &'a explant_scene::Scene,
    /// Seed of the generator.
    seed: u64,
    /// Upper ends per gene, then per ligand (from [`input_ranges`]).
    ranges: &'a [f32],
    /// Most neighbours of each cell type.
    count_ranges: &'a [f32],
    /// Cell types the samples may have (all but the held-out one).
    allowed: Vec<u32>,
    /// Whether neighbour counts by type are an input.
    counts: bool,
}

impl BoxSampler<'_> {
    /// `n` samples from stream `stream` of the generator, labelled by `teacher`.
    fn draw(&self, teacher: &mut Teacher, n: usize, stream: u64) -> Result<Samples, TorchError> {
        let (sc, ranges, allowed) = (self.sc, self.ranges, &self.allowed);
        let (g, l, nt) = (sc.genes.len(), sc.ligands.len(), sc.cell_types.len());
        let (mut xs, mut ss, mut cs, mut ks, mut ts) = (
            Vec::with_capacity(n * g),
            Vec::with_capacity(n * l),
            vec![0.0f32; n * g],
            vec![0.0f32; n * nt],
            Vec::with_capacity(n),
        );
        let u = |i: usize, k: u64| uniform(self.seed, (stream << 40) | i as u64, k, Purpose::Inheritance, 0) as f32;
        for i in 0..n {
            for k in 0..g {
                xs.push(u(i, k as u64) * ranges[k]);
            }
            for k in 0..l {
                ss.push(u(i, (g + k) as u64) * ranges[g + k]);
            }
            for (k, gene) in sc.genes.iter().enumerate() {
                if sc.contact.genes.contains(gene) {
                    cs[i * g + k] = u(i, (g + l + k) as u64) * ranges[k];
                }
            }
            let k = ((u(i, (2 * g + l) as u64) * allowed.len() as f32) as usize).min(allowed.len() - 1);
            ts.push(allowed[k]);
            if self.counts {
                for (k, r) in self.count_ranges.iter().enumerate() {
                    ks[i * nt + k] = (u(i, (2 * g + l + 1 + k) as u64) * (r + 1.0)).floor().min(*r);
                }
            }
        }
        labelled(sc, teacher, &xs, &ss, &cs, &ks, &ts)
    }
}

/// The training and validation sets: box samples (streams 1 and 2), then with
/// `opts.contexts > 0` the on-trajectory samples of the training and validation contexts.
fn training_sets(
    scene: &LoadedScene,
    opts: &FitOptions,
    sampler: &BoxSampler<'_>,
    teacher: &mut Teacher,
    held_type: Option<u32>,
) -> Result<(Samples, Samples), TorchError> {
    let mut train = sampler.draw(teacher, opts.train, 1)?;
    let mut val = sampler.draw(teacher, opts.val, 2)?;
    if opts.contexts > 0 {
        // On-trajectory samples: every fifth context (interleaved, so validation sees the
        // same kinds of perturbation as training) is kept for validation.
        let mut val_contexts: Vec<usize> = (0..opts.contexts).filter(|k| k % 5 == 4).collect();
        if val_contexts.is_empty() {
            // Fewer than five contexts: one extra for validation.
            val_contexts.push(opts.contexts);
        }
        let train_contexts: Vec<usize> = (0..opts.contexts).filter(|k| k % 5 != 4).collect();
        let t = trajectory_samples(scene, opts, held_type, train_contexts)?;
        let v = trajectory_samples(scene, opts, held_type, val_contexts)?;
        train = train.join(t);
        val = val.join(v);
    }
    Ok((train, val))
}

/// How the network's inputs are scaled so every column is O(1).
struct InputScaling {
    /// Per input column, `1 × width`.
    scale: Tensor,
    /// Width of the concatenated input.
    width: i64,
    /// Whether neighbour counts by type are an input.
    counts: bool,
    /// The input ranges, widened to what the training samples reached (the metadata's `input_ranges`).
    widened: Vec<f32>,
    /// Cell types no training sample had.
    unseen: Vec<String>,
}

impl InputScaling {
    /// The scaling for `train`: one over each column's range, with the one-hot columns of
    /// cell types no training sample had zeroed.
    fn fit(
        sc: &explant_scene::Scene,
        train: &Samples,
        ranges: &[f32],
        count_ranges: &[f32],
        counts: bool,
    ) -> Result<Self, TorchError> {
        let (g, l, nt) = (sc.genes.len(), sc.ligands.len(), sc.cell_types.len());
        let width = (2 * g + l + nt + if counts { nt } else { 0 }) as i64;
        // Inputs are scaled by their range so every column is O(1): the sampling box, widened
        // to what the training trajectories reached (a perturbation can push a ligand far past
        // the unperturbed run).
        let reach = |t: &Tensor| -> Vec<f32> {
            Vec::<f32>::try_from(t.abs().amax(&[0i64][..], false).contiguous()).unwrap_or_default()
        };
        let (rx, rs) = (reach(&train.x), reach(&train.s));
        let widened: Vec<f32> = (0..g)
            .map(|k| ranges[k].max(rx.get(k).copied().unwrap_or(0.0)))
            .chain((0..l).map(|k| ranges[g + k].max(rs.get(k).copied().unwrap_or(0.0))))
            .collect();
        let scale: Vec<f32> = (0..g)
            .map(|k| widened[k])
            .chain((0..l).map(|k| widened[g + k]))
            .chain((0..g).map(|k| widened[k]))
            .chain(std::iter::repeat_n(1.0, nt))
            .chain(count_ranges.iter().copied().filter(|_| counts))
            .map(|r| 1.0 / r.max(1e-6))
            .collect();
        // A cell type no training sample had (in practice a held-out type with no
        // unperturbed training context: the box samples draw every other type) would meet
        // first-layer weights that never left their random initialisation. Its one-hot
        // column is zeroed instead: such cells reach the network with an all-zero type
        // vector, which it never saw in training either, but which adds no random offset.
        let seen: Vec<f32> =
            Vec::<f32>::try_from(train.t.sum_dim_intlist(&[0i64][..], false, Kind::Float).contiguous())?
                .iter()
                .map(|&n| if n > 0.0 { 1.0 } else { 0.0 })
                .collect();
        let unseen: Vec<String> =
            sc.cell_types.iter().zip(&seen).filter(|(_, m)| **m == 0.0).map(|(t, _)| t.name.clone()).collect();
        let scale: Vec<f32> = scale
            .iter()
            .enumerate()
            .map(|(k, v)| if (2 * g + l..2 * g + l + nt).contains(&k) { v * seen[k - 2 * g - l] } else { *v })
            .collect();
        let scale = Tensor::from_slice(&scale).view([1, width]);
        Ok(Self { scale, width, counts, widened, unseen })
    }

    /// The scaled network input `[x, s, c, t (, k)]`.
    fn input(&self, x: &Tensor, s: &Tensor, c: &Tensor, t: &Tensor, k: &Tensor) -> Tensor {
        let z = if self.counts { Tensor::cat(&[x, s, c, t, k], 1) } else { Tensor::cat(&[x, s, c, t], 1) };
        z * &self.scale
    }
}

/// One trained network with its weights.
type Member = (nn::VarStore, nn::Sequential);

/// What the networks are trained with.
struct Trainer<'a> {
    /// The input scaling.
    inputs: &'a InputScaling,
    /// Outputs are learned in units of this rate.
    out_scale: f64,
    /// Training samples (before each member's shuffle).
    train: &'a Samples,
    /// Validation samples.
    val: &'a Samples,
    /// Steps, batch, learning rate, patience, members, seed.
    opts: &'a FitOptions,
    /// Genes: the network's output width.
    genes: usize,
}

impl Trainer<'_> {
    /// Train every member in turn, frozen for tracing; with the Adam steps taken in all
    /// and the mean training rate (summed in the first member's shuffle order).
    fn members(
        &self,
        progress: &mut dyn FnMut(usize, f64),
    ) -> Result<(Vec<Member>, usize, Option<Tensor>), TorchError> {
        let opts = self.opts;
        let n_train = self.train.len() as i64;
        let mut members: Vec<Member> = Vec::with_capacity(opts.members.max(1));
        let mut steps_taken = 0;
        // The mean training rate (the mean baseline of the metadata), summed in the order of
        // the first member's shuffle as it always was, so a single network's `.json` is
        // reproduced to the last digit.
        let mut mean_rate: Option<Tensor> = None;
        for m in 0..opts.members.max(1) {
            // Member m is seeded with seed + m (member 0 is the single network of earlier
            // versions, bit for bit): its initialisation and its shuffle of the samples.
            tch::manual_seed(opts.seed.wrapping_add(m as u64) as i64);
            let vs = nn::VarStore::new(Device::Cpu);
            let net = self.network(&vs);
            let opt = nn::Adam::default().build(&vs, opts.lr)?;
            // Shuffle once (seeded) so mini-batches mix box and trajectory samples.
            let order = Tensor::randperm(n_train, (Kind::Int64, Device::Cpu));
            let train = self.train.select(&order);
            if mean_rate.is_none() {
                mean_rate = Some(train.y.mean_dim(0, true, Kind::Float));
            }
            steps_taken += self.train_member(m, &vs, &net, opt, &train, progress)?;
            let mut vs = vs;
            // Weights frozen, so that tracing records them as constants rather than as
            // tensors that require grad.
            vs.freeze();
            members.push((vs, net));
        }
        Ok((members, steps_taken, mean_rate))
    }

    /// The MLP `width → hidden → hidden → G` (tanh) with its weights in `vs`.
    fn network(&self, vs: &nn::VarStore) -> nn::Sequential {
        let root = vs.root();
        let hidden = self.opts.hidden;
        nn::seq()
            .add(nn::linear(&root / "l1", self.inputs.width, hidden, Default::default()))
            .add_fn(|t| t.tanh())
            .add(nn::linear(&root / "l2", hidden, hidden, Default::default()))
            .add_fn(|t| t.tanh())
            .add(nn::linear(&root / "l3", hidden, self.genes as i64, Default::default()))
    }

    /// One network's rates for the inputs.
    fn forward(&self, net: &nn::Sequential, x: &Tensor, s: &Tensor, c: &Tensor, t: &Tensor, k: &Tensor) -> Tensor {
        net.forward(&self.inputs.input(x, s, c, t, k)) * self.out_scale
    }

    /// Adam on mini-batches of the shuffled `train`, validated every 100 steps, stopped
    /// after `patience` evaluations without improvement; the best weights are restored.
    /// Returns the steps taken.
    fn train_member(
        &self,
        m: usize,
        vs: &nn::VarStore,
        net: &nn::Sequential,
        mut opt: nn::Optimizer,
        train: &Samples,
        progress: &mut dyn FnMut(usize, f64),
    ) -> Result<usize, TorchError> {
        let (opts, val, out_scale) = (self.opts, self.val, self.out_scale);
        let n_train = train.len() as i64;
        let mut steps_taken = 0;
        let mut best = (f64::INFINITY, 0usize);
        let mut best_weights: Option<Vec<Tensor>> = None;
        for step in 0..opts.steps {
            let lo = ((step * opts.batch) as i64) % (n_train - opts.batch as i64).max(1);
            let idx = Tensor::arange_start(lo, lo + opts.batch as i64, (Kind::Int64, Device::Cpu));
            let pred = self.forward(
                net,
                &train.x.index_select(0, &idx),
                &train.s.index_select(0, &idx),
                &train.c.index_select(0, &idx),
                &train.t.index_select(0, &idx),
                &train.k.index_select(0, &idx),
            );
            let loss = (pred - train.y.index_select(0, &idx)).square().mean(Kind::Float) / (out_scale * out_scale);
            opt.backward_step(&loss);
            steps_taken += 1;
            if step % 100 == 99 {
                let v = tch::no_grad(|| {
                    (self.forward(net, &val.x, &val.s, &val.c, &val.t, &val.k) - &val.y)
                        .square()
                        .mean(Kind::Float)
                        .double_value(&[])
                });
                progress(m * opts.steps + step + 1, v);
                if v < best.0 {
                    best = (v, step);
                    best_weights = Some(tch::no_grad(|| vs.trainable_variables().iter().map(|t| t.copy()).collect()));
                } else if (step - best.1) / 100 >= opts.patience {
                    break;
                }
            }
        }
        if let Some(w) = best_weights {
            tch::no_grad(|| {
                for (mut v, b) in vs.trainable_variables().into_iter().zip(w) {
                    v.copy_(&b);
                }
            });
        }
        Ok(steps_taken)
    }
}

/// The fitted model: the mean of its members' rates.
struct Ensemble<'a> {
    /// The trained networks.
    members: Vec<Member>,
    /// The input scaling they were trained with.
    inputs: &'a InputScaling,
    /// Outputs are in units of this rate.
    out_scale: f64,
}

impl Ensemble<'_> {
    /// The model's rates: the mean of its members' rates.
    fn forward(&self, x: &Tensor, s: &Tensor, c: &Tensor, t: &Tensor, k: &Tensor) -> Tensor {
        let members = &self.members;
        let z = self.inputs.input(x, s, c, t, k);
        let sum = members[1..].iter().fold(members[0].1.forward(&z), |a, (_, net)| a + net.forward(&z));
        sum * (self.out_scale / members.len() as f64)
    }

    /// Validation MSE of the model, of no change and of the mean training rate
    /// (`mean_rate`, else the mean over `train`).
    fn validation_errors(&self, train: &Samples, val: &Samples, mean_rate: Option<Tensor>) -> (f64, f64, f64) {
        let mse = |pred: &Tensor| (pred - &val.y).square().mean(Kind::Float).double_value(&[]);
        let val_mse = tch::no_grad(|| mse(&self.forward(&val.x, &val.s, &val.c, &val.t, &val.k)));
        let val_mse_no_change = mse(&val.y.zeros_like());
        let mean_rate = mean_rate.unwrap_or_else(|| train.y.mean_dim(0, true, Kind::Float));
        let val_mse_mean = mse(&mean_rate.expand_as(&val.y));
        (val_mse, val_mse_no_change, val_mse_mean)
    }

    /// Trace the forward pass (on the first validation samples) into TorchScript and save it as `out`.
    fn export(&self, val: &Samples, out: &Path) -> Result<(), TorchError> {
        let mut example =
            vec![val.x.narrow(0, 0, 4), val.s.narrow(0, 0, 4), val.c.narrow(0, 0, 4), val.t.narrow(0, 0, 4)];
        if self.inputs.counts {
            example.push(val.k.narrow(0, 0, 4));
        }
        let module = tch::no_grad(|| {
            CModule::create_by_tracing("ExplantResponse", "forward", &example, &mut |inp: &[Tensor]| {
                let none = Tensor::zeros([inp[0].size()[0], 0], (Kind::Float, Device::Cpu));
                vec![self.forward(&inp[0], &inp[1], &inp[2], &inp[3], inp.get(4).unwrap_or(&none))]
            })
        })?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| TorchError::Write { path: dir.to_path_buf(), source })?;
        }
        module.save(out)?;
        Ok(())
    }

    /// The check case: the first validation sample, with the model's and the teacher's rates.
    fn check_case(&self, val: &Samples) -> CheckCase {
        let row = |t: &Tensor| -> Vec<f32> { Vec::<f32>::try_from(t.get(0).contiguous()).unwrap_or_default() };
        let cell_type = val.t.get(0).argmax(0, false).int64_value(&[]) as u32;
        let output = tch::no_grad(|| row(&self.forward(&val.x, &val.s, &val.c, &val.t, &val.k)));
        CheckCase {
            expression: row(&val.x),
            sensed: row(&val.s),
            contact: row(&val.c),
            cell_type,
            neighbour_types: self.inputs.counts.then(|| row(&val.k)),
            output,
            teacher_output: Some(row(&val.y)),
            secretion: None,
            fate: None,
        }
    }
}

/// The metadata of a fitted model: the scene's names, the input contract, the training
/// provenance and the check case.
fn model_meta(sc: &explant_scene::Scene, counts: bool, training: TrainingInfo, check: CheckCase) -> ModelMeta {
    let sig = ModelSignature::of_scene(sc);
    ModelMeta {
        format: META_FORMAT.into(),
        version: 1,
        genes: sig.genes,
        ligands: sig.ligands,
        cell_types: sig.cell_types,
        neighbour_counts: counts,
        secretion: false,
        fate: false,
        contract: "forward(expression [N,G] f32, sensed [N,L] f32 = ligand concentration × receptor expression, \
                   contact [N,G] f32 = neighbour mean of contact genes (0 elsewhere), cell_type_onehot [N,T] f32) \
                   [, neighbour_types [N,T] f32 = neighbours of each type within the contact radius, \
                   when neighbour_counts]) -> dx/dt [N,G] f32 per minute"
            .into(),
        training: Some(training),
        learned: None,
        check,
    }
}

/// Upper ends of the input ranges: per gene (expression, also used for contact means),
/// then per ligand (sensed). Found by running the scene with the teacher, then widened
/// by 50 % (at least to the teacher's ceiling α/γ for expression).
///
/// Also the most neighbours of each cell type a cell had in that run, widened by 50 %
/// and at least 1 (the range of the neighbour-count inputs).
fn input_ranges(scene: &LoadedScene) -> Result<(Vec<f32>, Vec<f32>), TorchError> {
    let sc = &scene.scene;
    let teacher = Teacher::from_scene(sc);
    let ceiling: Vec<f32> = teacher
        .max_rate
        .iter()
        .map(|a| if teacher.degradation > 0.0 { a / teacher.degradation } else { 1.0 })
        .collect();
    let mut sim = Simulation::new(sc, Box::new(explant_field::CpuDiffusion::new()), Box::new(teacher))?;
    let (g, l, nt) = (sc.genes.len(), sc.ligands.len(), sc.cell_types.len());
    let mut hi = vec![0.0f32; g + l];
    let mut most = vec![0.0f32; nt];
    for _ in 0..sim.total_ticks() {
        sim.step()?;
        let b = sim.world.resource::<explant_core::Batch>();
        let x = sim.world.resource::<explant_core::States>();
        for i in 0..b.cells.min(x.len()) {
            for k in 0..g {
                hi[k] = hi[k].max(x.data[i * g + k]);
            }
            for k in 0..l {
                hi[g + k] = hi[g + k].max(b.sensed[i * l + k]);
            }
        }
        for (k, c) in b.neighbour_types.iter().enumerate() {
            most[k % nt.max(1)] = most[k % nt.max(1)].max(*c);
        }
    }
    for k in 0..g {
        hi[k] = (1.5 * hi[k]).max(1.1 * ceiling[k]).max(1e-3);
    }
    for v in &mut hi[g..] {
        *v = (1.5 * *v).max(1e-3);
    }
    Ok((hi, most.iter().map(|m| (1.5 * m).ceil().max(1.0)).collect()))
}

/// A linear response model `dx/dt = [x, s, c, onehot(type), k, 1] · W` (the
/// ridge-regression baseline of `explant eval`), where the neighbour counts by type `k`
/// are a feature only when the scene's teacher reads them.
#[derive(Debug, Clone)]
pub struct LinearModel {
    signature: ModelSignature,
    genes: usize,
    ligands: usize,
    types: usize,
    counts: bool,
    /// Weights, `(2G + L + T [+ T] + 1) × G`, row-major.
    pub weights: Vec<f32>,
}

impl ResponseModel for LinearModel {
    fn name(&self) -> String {
        "ridge regression (linear baseline)".into()
    }

    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn rates(
        &mut self,
        input: &explant_core::ResponseInput<'_>,
        rates: &mut [f32],
    ) -> Result<(), explant_core::ModelError> {
        let (g, l, nt) = (self.genes, self.ligands, self.types);
        let kw = if self.counts { nt } else { 0 };
        let width = 2 * g + l + nt + kw + 1;
        let counted = input.neighbour_types.len() == input.cells * nt;
        let mut z = vec![0.0f32; width];
        for i in 0..input.cells {
            z[..g].copy_from_slice(&input.expression[i * g..(i + 1) * g]);
            z[g..g + l].copy_from_slice(&input.sensed[i * l..(i + 1) * l]);
            z[g + l..2 * g + l].copy_from_slice(&input.contact[i * g..(i + 1) * g]);
            z[2 * g + l..2 * g + l + nt].fill(0.0);
            z[2 * g + l + input.cell_type[i] as usize] = 1.0;
            if self.counts && counted {
                z[2 * g + l + nt..width - 1].copy_from_slice(&input.neighbour_types[i * nt..(i + 1) * nt]);
            }
            z[width - 1] = 1.0;
            let out = &mut rates[i * g..(i + 1) * g];
            out.fill(0.0);
            for (k, zk) in z.iter().enumerate() {
                if *zk != 0.0 {
                    for (o, w) in out.iter_mut().zip(&self.weights[k * g..(k + 1) * g]) {
                        *o += zk * w;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Fit the ridge-regression baseline on exactly the training samples a network trained by
/// [`fit_to_teacher`] with the same `opts` gets: the box samples (`opts.train`, stream 1)
/// and the on-trajectory samples of the training contexts (the validation contexts are
/// kept out, as the network keeps them for early stopping), with its hold-outs. So ridge
/// and the network differ in the model, not in the data. `W = (ZᵀZ + λI)⁻¹ Zᵀ Y` with the
/// features `Z = [x, s, c, onehot(type), k, 1]` (`k` only where the teacher reads
/// neighbour counts) and `Y` the teacher's `dx/dt`.
pub fn fit_ridge(scene: &LoadedScene, opts: &FitOptions, lambda: f64) -> Result<LinearModel, TorchError> {
    let sc = &scene.scene;
    let (g, l, nt) = (sc.genes.len(), sc.ligands.len(), sc.cell_types.len());
    let mut teacher = Teacher::from_scene(sc);
    let counts_in = !teacher.n.is_empty();
    let (ranges, count_ranges) = input_ranges(scene)?;
    let (held_type, allowed) = hold_outs(sc, opts)?;
    let sampler =
        BoxSampler { sc, seed: opts.seed, ranges: &ranges, count_ranges: &count_ranges, allowed, counts: counts_in };
    let (samples, _validation) = training_sets(scene, opts, &sampler, &mut teacher, held_type)?;
    let n = samples.len() as i64;
    let ones = Tensor::ones([n, 1], (Kind::Float, Device::Cpu));
    let counts = counts_in;
    let mut parts = vec![&samples.x, &samples.s, &samples.c, &samples.t];
    if counts {
        parts.push(&samples.k);
    }
    parts.push(&ones);
    let z = Tensor::cat(&parts, 1).to_kind(Kind::Double);
    let y = samples.y.to_kind(Kind::Double);
    let width = z.size()[1];
    let a = z.tr().matmul(&z) + Tensor::eye(width, (Kind::Double, Device::Cpu)) * lambda;
    let w = Tensor::linalg_solve(&a, &z.tr().matmul(&y), true).to_kind(Kind::Float).contiguous();
    let weights = Vec::<f32>::try_from(w.view([-1]))?;
    Ok(LinearModel { signature: ModelSignature::of_scene(sc), genes: g, ligands: l, types: nt, counts, weights })
}
