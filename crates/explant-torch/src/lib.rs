//! Learned response models: TorchScript run through `tch` (libtorch), and the command
//! that fits one to the mechanistic teacher.
//!
//! A model is two files side by side: `NAME.pt` (TorchScript) and `NAME.json`
//! ([`ModelMeta`]: gene, ligand and cell-type names in input order, and a check case).
//! Its `forward(expression [N,G], sensed [N,L], contact [N,G], cell_type_onehot [N,T])`
//! returns `dx/dt` as `[N,G]` float32; a model whose metadata sets `neighbour_counts`
//! takes a fifth input, `neighbour_types [N,T]` (neighbours of each type within the
//! contact radius); one whose metadata sets `secretion` and/or `fate` also returns
//! secretion `[N,L]` and fate scores `[N,2]`, as a tuple or side by side in one tensor. Loading refuses a model whose names differ from
//! the scene's, whose output width is wrong, or whose check case does not reproduce.

#![allow(unsafe_code)] // none of ours; tch's types are used through their safe API

mod baseline_cells;
mod error;
mod eval;
pub mod export;
mod fit;
mod layers;
mod meta;
mod niche;
mod untrained;

pub use error::TorchError;
pub use eval::{EvalOptions, EvalRow, Evaluation, evaluate};
pub use fit::{FitOptions, FitReport, LinearModel, fit_ridge, fit_to_teacher};
pub use layers::{
    LayerShape, RawMlp, archive_constant_shapes, check_chain, intra_op_threads, layers_from_shapes,
    set_intra_op_threads,
};
pub use meta::{CheckCase, ModelMeta, TrainingInfo};
pub use niche::{NicheCheckInput, NicheExport, export_niche};

use std::path::{Path, PathBuf};

use explant_core::{Extras, ModelError, ModelSignature, ResponseInput, ResponseModel};
use rayon::prelude::*;
use tch::{CModule, Device, IValue, Kind, Tensor};

/// Rows per forward call. Small enough that the hidden activations of the shipped
/// 64-wide network (4096 × 64 × 4 B = 1 MiB) stay in cache: on the dev machine 4096 rows
/// ran 1.2–1.8× faster than 65 536 (criterion `respond/torchscript`, BENCHMARKS.md).
pub const CHUNK_ROWS: usize = 1 << 12;

/// A TorchScript response model.
///
/// On the CPU the population's chunks of [`CHUNK_ROWS`] rows run in parallel on the
/// calling rayon pool, each through one libtorch thread (intra-op threads are set to 1)
/// and one of the model's own copies of the module. libtorch's OpenMP threads would
/// otherwise spin-wait between operators and take the cores from the engine's rayon
/// threads (and, on a shared machine, from other jobs): with another busy process on a
/// 2-core machine that made the respond stage 9× slower. A chunk's arithmetic does not
/// depend on which thread runs it, so the result is the same for any thread count.
pub struct TorchModel {
    module: CModule,
    pool: ModulePool,
    signature: ModelSignature,
    run: Runner,
}

/// What running a chunk needs besides a module: shared by the parallel chunks.
struct Runner {
    meta: ModelMeta,
    path: PathBuf,
    device: Device,
}

/// Copies of the module for the parallel chunks, lent one per running chunk.
struct ModulePool {
    free: std::sync::Mutex<Vec<CModule>>,
    returned: std::sync::Condvar,
}

impl ModulePool {
    /// A module to run one sequence of chunks with, waiting for one to be returned when
    /// every copy is lent (each thread holds at most one, so one is always returned).
    fn lend(&self) -> Lease<'_> {
        let mut free = self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(module) = free.pop() {
                return Lease { pool: self, module: Some(module) };
            }
            free = self.returned.wait(free).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn len(&self) -> usize {
        self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// A module lent by a [`ModulePool`], given back when dropped.
struct Lease<'a> {
    pool: &'a ModulePool,
    module: Option<CModule>,
}

impl Lease<'_> {
    fn module(&self) -> &CModule {
        self.module.as_ref().expect("a lease holds its module until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            self.pool.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(m);
            self.pool.returned.notify_one();
        }
    }
}

impl std::fmt::Debug for TorchModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchModel").field("path", &self.run.path).field("device", &self.run.device).finish()
    }
}

/// The metadata file that belongs to a `.pt` file (same stem, `.json`).
pub fn meta_path(pt: &Path) -> PathBuf {
    pt.with_extension("json")
}

impl TorchModel {
    /// Load `path` (and its `.json`), run on the CPU or on CUDA when libtorch has it.
    /// On the CPU, chunks run in parallel on up to `threads` threads of the calling rayon
    /// pool (0: as many as the current pool has), one libtorch thread each.
    pub fn load(path: &Path, threads: usize) -> Result<Self, TorchError> {
        if !path.is_file() {
            return Err(TorchError::Missing { path: path.to_path_buf() });
        }
        let meta = ModelMeta::read(&meta_path(path))?;
        let device = Device::cuda_if_available();
        let load = || -> Result<CModule, TorchError> {
            let mut module = CModule::load_on_device(path, device).map_err(|e| TorchError::NotTorchScript {
                path: path.to_path_buf(),
                message: first_line(&e.to_string()),
            })?;
            module.set_eval();
            Ok(module)
        };
        let module = load()?;
        let copies = if device == Device::Cpu {
            tch::set_num_threads(1);
            let workers = if threads > 0 { threads } else { rayon::current_num_threads() };
            if workers > 1 { (0..workers).map(|_| load()).collect::<Result<Vec<_>, _>>()? } else { Vec::new() }
        } else {
            Vec::new()
        };
        let signature = ModelSignature {
            genes: meta.genes.clone(),
            ligands: meta.ligands.clone(),
            cell_types: meta.cell_types.clone(),
        };
        let pool = ModulePool { free: std::sync::Mutex::new(copies), returned: std::sync::Condvar::new() };
        let mut model = Self { module, pool, signature, run: Runner { meta, path: path.to_path_buf(), device } };
        model.self_check()?;
        Ok(model)
    }

    /// Copies of the module that run chunks in parallel: 0 when the chunks run one after
    /// another (one thread, or CUDA).
    pub fn parallel_copies(&self) -> usize {
        self.pool.len()
    }

    /// Load and refuse a model that does not fit the scene's names.
    pub fn load_for(path: &Path, scene: &ModelSignature, threads: usize) -> Result<Self, TorchError> {
        let model = Self::load(path, threads)?;
        model.signature.check_against(scene, &path.display().to_string())?;
        Ok(model)
    }

    /// The metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.run.meta
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.run.device
    }

    /// Width of the network's concatenated input: `2G + L + T`, plus `T` with neighbour
    /// counts.
    pub fn input_width(&self) -> usize {
        let (g, l, t) = (self.run.meta.genes.len(), self.run.meta.ligands.len(), self.run.meta.cell_types.len());
        2 * g + l + t + if self.run.meta.neighbour_counts { t } else { 0 }
    }

    /// The network's dense layers, in order: from its parameters, or for a traced model
    /// (weights as graph constants, as `explant model fit` exports) from the constants in
    /// its archive. Checked to chain from the input width `2G + L + T` to `G`.
    pub fn layer_shapes(&self) -> Result<Vec<LayerShape>, TorchError> {
        if let Some(k) = self.run.meta.training.as_ref().map(|t| t.members).filter(|&k| k > 1) {
            return Err(TorchError::NotTorchScript {
                path: self.run.path.clone(),
                message: format!("it is an ensemble of {k} networks; its dense layers are not one chain"),
            });
        }
        let mut layers = layers::layers_from_parameters(&self.module)?;
        if layers.is_empty() {
            layers = layers_from_shapes(&archive_constant_shapes(&self.run.path)?);
        }
        check_chain(&layers, self.input_width() as i64, self.run.meta.genes.len() as i64).map_err(|message| {
            TorchError::NotTorchScript {
                path: self.run.path.clone(),
                message: format!("cannot read its dense layers: {message}"),
            }
        })?;
        Ok(layers)
    }

    /// Output width and the stored check case.
    fn self_check(&mut self) -> Result<(), TorchError> {
        let (g, l, t) = (self.run.meta.genes.len(), self.run.meta.ligands.len(), self.run.meta.cell_types.len());
        let check = self.run.meta.check.clone();
        if check.expression.len() != g || check.sensed.len() != l || check.contact.len() != g || check.output.len() != g
        {
            return Err(TorchError::BadMeta {
                path: meta_path(&self.run.path),
                message: "the `check` case has the wrong widths for the model's names".into(),
            });
        }
        if check.cell_type as usize >= t {
            return Err(TorchError::BadMeta {
                path: meta_path(&self.run.path),
                message: format!("`check.cell_type` is `{}` but there are {t} cell types", check.cell_type),
            });
        }
        let counts = check.neighbour_types.clone().unwrap_or_default();
        if self.run.meta.neighbour_counts && counts.len() != t {
            return Err(TorchError::BadMeta {
                path: meta_path(&self.run.path),
                message: format!(
                    "the model takes neighbour counts but `check.neighbour_types` has {} entries, not one per cell type ({t})",
                    counts.len()
                ),
            });
        }
        let mut out = vec![0.0f32; g];
        let input = ResponseInput {
            cells: 1,
            expression: &check.expression,
            sensed: &check.sensed,
            contact: &check.contact,
            neighbour_types: &counts,
            cell_type: &[check.cell_type],
            dt: 1.0,
        };
        let mut secretion = vec![0.0f32; if self.run.meta.secretion { l } else { 0 }];
        let mut fate = vec![0.0f32; if self.run.meta.fate { 2 } else { 0 }];
        self.forward(&input, &mut out, &mut secretion, &mut fate).map_err(TorchError::Model)?;
        let mut worst = out.iter().zip(&check.output).map(|(a, b)| (a - b).abs()).fold(0.0f32, worse);
        for (name, got, want) in [("secretion", &secretion, &check.secretion), ("fate", &fate, &check.fate)] {
            if let Some(want) = want {
                if want.len() != got.len() {
                    return Err(TorchError::BadMeta {
                        path: meta_path(&self.run.path),
                        message: format!(
                            "`check.{name}` has {} entries where the model gives {} (is `{name}` declared?)",
                            want.len(),
                            got.len()
                        ),
                    });
                }
                worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(worst, worse);
            }
        }
        // Written so that a NaN difference (a non-finite output) fails too.
        if worst.is_nan() || worst > 1e-4 {
            return Err(TorchError::CheckFailed { path: self.run.path.clone(), worst });
        }
        Ok(())
    }

    /// Run the module over `input` in chunks of [`CHUNK_ROWS`]: `dx/dt` into `rates` and,
    /// for a model whose metadata declares them, secretion (`N × L`) and fate scores
    /// (`N × 2`) into `secretion` and `fate` (which must then have those lengths).
    fn forward(
        &mut self,
        input: &ResponseInput<'_>,
        rates: &mut [f32],
        secretion: &mut [f32],
        fate: &mut [f32],
    ) -> Result<(), ModelError> {
        let chunks = input.cells.div_ceil(CHUNK_ROWS);
        if chunks < 2 || self.pool.len() < 2 {
            let _guard = tch::no_grad_guard();
            let mut start = 0;
            while start < input.cells {
                let n = (input.cells - start).min(CHUNK_ROWS);
                let args = self.run.chunk_args(input, start, n)?;
                let outs = self.run.run_module(&self.module, args, n)?;
                self.run.copy_outputs(outs, start, n, rates, secretion, fate)?;
                start += n;
            }
            return Ok(());
        }
        // One job per chunk, with its own slices of the outputs.
        let (g, l) = (self.run.meta.genes.len(), self.run.meta.ligands.len());
        let jobs: Vec<_> = chunk_slices(rates, g, chunks)
            .into_iter()
            .zip(chunk_slices(secretion, l, chunks))
            .zip(chunk_slices(fate, 2, chunks))
            .enumerate()
            .map(|(k, ((r, s), f))| (k * CHUNK_ROWS, r, s, f))
            .collect();
        let (run, pool) = (&self.run, &self.pool);
        jobs.into_par_iter().try_for_each_init(
            || (pool.lend(), tch::no_grad_guard()),
            |(lease, _grad), (start, r, s, f)| {
                let n = (input.cells - start).min(CHUNK_ROWS);
                let args = run.chunk_args(input, start, n)?;
                let outs = run.run_module(lease.module(), args, n)?;
                run.copy_outputs(outs, 0, n, r, s, f)
            },
        )
    }

    /// [`ResponseModel::jacobian`] by reverse-mode autograd: per chunk of rows, one
    /// forward pass with the expression, sensed, contact and (when the model reads them)
    /// neighbour-count tensors as leaves, then one backward pass per gene of the sum of
    /// that gene's rate over the rows (rows are independent, so the gradient's row `i`
    /// is cell `i`'s derivative). An input the model never reads has zero derivatives.
    fn autograd_jacobian(&mut self, input: &ResponseInput<'_>, out: &mut [f32]) -> Result<(), ModelError> {
        let (g, l, t) = (self.run.meta.genes.len(), self.run.meta.ligands.len(), self.run.meta.cell_types.len());
        let w = explant_core::jacobian_width(g, l, t);
        // Column offset of each differentiated argument (the one-hot type is not).
        let mut offsets = vec![(0usize, 0usize, g), (1, g, l), (2, g + l, g)];
        if self.run.meta.neighbour_counts {
            offsets.push((4, 2 * g + l, t));
        }
        out[..input.cells * g * w].fill(0.0);
        let err = |e: tch::TchError| self.run.run_error(first_line(&e.to_string()));
        let mut start = 0;
        while start < input.cells {
            let n = (input.cells - start).min(CHUNK_ROWS);
            let mut args = self.run.chunk_args(input, start, n)?;
            for &(k, _, _) in &offsets {
                args[k] = args[k].detach().set_requires_grad(true);
            }
            let leaves: Vec<Tensor> = offsets.iter().map(|&(k, _, _)| args[k].shallow_clone()).collect();
            let rates = tch::with_grad(|| self.run.run_module(&self.module, args, n))?.into_iter().next();
            let Some(rates) = rates.filter(Tensor::requires_grad) else {
                // Rates that depend on no input: every derivative is 0.
                start += n;
                continue;
            };
            for gene in 0..g {
                let total = tch::with_grad(|| rates.f_select(1, gene as i64)?.f_sum(Kind::Float)).map_err(err)?;
                let grads = Tensor::f_run_backward(&[total], &leaves, true, false).map_err(err)?;
                for (grad, &(_, col, width)) in grads.iter().zip(&offsets) {
                    if !grad.defined() {
                        continue;
                    }
                    let grad = grad.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
                    let mut rows = vec![0.0f32; n * width];
                    grad.f_copy_data(&mut rows, n * width).map_err(err)?;
                    for i in 0..n {
                        let dst = ((start + i) * g + gene) * w + col;
                        out[dst..dst + width].copy_from_slice(&rows[i * width..(i + 1) * width]);
                    }
                }
            }
            start += n;
        }
        Ok(())
    }
}

impl Runner {
    /// A run error naming this model.
    fn run_error(&self, message: String) -> ModelError {
        ModelError::Run { model: self.path.display().to_string(), message }
    }

    /// The module's arguments for the `n` rows from `start`: expression, sensed, contact,
    /// the one-hot cell type and, for a model that takes them, the neighbour counts.
    fn chunk_args(&self, input: &ResponseInput<'_>, start: usize, n: usize) -> Result<Vec<Tensor>, ModelError> {
        let (g, l, t) = (self.meta.genes.len(), self.meta.ligands.len(), self.meta.cell_types.len());
        let rows = |s: &[f32], w: usize| {
            Tensor::from_slice(&s[start * w..(start + n) * w]).view([n as i64, w as i64]).to_device(self.device)
        };
        let types = &input.cell_type[start..start + n];
        if let Some(bad) = types.iter().find(|&&c| c as usize >= t) {
            return Err(self.run_error(format!("cell type index {bad} is outside the model's {t} cell types")));
        }
        let onehot = Tensor::from_slice(&one_hot(types, t)).view([n as i64, t as i64]).to_device(self.device);
        let mut args = vec![rows(input.expression, g), rows(input.sensed, l), rows(input.contact, g), onehot];
        if self.meta.neighbour_counts {
            if input.neighbour_types.len() != input.cells * t {
                return Err(self.run_error(format!(
                    "the model takes neighbour counts by cell type, but {} were given for {} cells of {t} types",
                    input.neighbour_types.len(),
                    input.cells
                )));
            }
            args.push(rows(input.neighbour_types, t));
        }
        Ok(args)
    }

    /// Call the module on one chunk of `n` rows: its outputs in order (rates, then
    /// secretion and fate where the metadata declares them).
    fn run_module(&self, module: &CModule, args: Vec<Tensor>, n: usize) -> Result<Vec<Tensor>, ModelError> {
        let (want_s, want_f) = (self.meta.secretion, self.meta.fate);
        if want_s || want_f {
            let args: Vec<IValue> = args.into_iter().map(IValue::Tensor).collect();
            let value = module.forward_is(&args).map_err(|e| self.run_error(first_line(&e.to_string())))?;
            self.split_outputs(value, n)
        } else {
            Ok(vec![module.forward_ts(&args).map_err(|e| {
                let message = first_line(&e.to_string());
                if message.contains("Tuple") || message.contains("List") {
                    self.run_error(format!(
                        "{message} (a model that returns several outputs must declare them in its \
                         metadata: `\"secretion\": true` and/or `\"fate\": true`)"
                    ))
                } else {
                    self.run_error(message)
                }
            })?])
        }
    }

    /// The outputs of a model with several: a tuple or list of tensors, or one tensor of
    /// `n` rows holding them side by side.
    fn split_outputs(&self, value: IValue, n: usize) -> Result<Vec<Tensor>, ModelError> {
        let (g, l) = (self.meta.genes.len(), self.meta.ligands.len());
        let (want_s, want_f) = (self.meta.secretion, self.meta.fate);
        let err = |message: String| self.run_error(message);
        Ok(match value {
            IValue::TensorList(v) => v,
            IValue::Tuple(v) | IValue::GenericList(v) => v
                .into_iter()
                .map(|x| match x {
                    IValue::Tensor(t) => Ok(t),
                    other => Err(err(format!("returned a tuple holding {other:?}, expected tensors"))),
                })
                .collect::<Result<_, _>>()?,
            // One tensor: the outputs concatenated along the columns.
            IValue::Tensor(all) => {
                let widths: Vec<i64> = [Some(g), want_s.then_some(l), want_f.then_some(2)]
                    .into_iter()
                    .flatten()
                    .map(|w| w as i64)
                    .collect();
                let total: i64 = widths.iter().sum();
                if all.size() != [n as i64, total] {
                    return Err(err(format!(
                        "returned shape {:?}; its metadata declares {}, so expected [{n}, {total}] \
                         (the outputs side by side) or a tuple of them",
                        all.size(),
                        [Some("rates"), want_s.then_some("secretion"), want_f.then_some("fate")]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" + ")
                    )));
                }
                all.split_with_sizes(&widths, 1)
            }
            other => return Err(err(format!("returned {other:?}, expected a tuple of tensors"))),
        })
    }

    /// Check the count and shapes of one chunk's outputs and copy them into rows
    /// `start..start + n` of `rates`, `secretion` and `fate`.
    fn copy_outputs(
        &self,
        outs: Vec<Tensor>,
        start: usize,
        n: usize,
        rates: &mut [f32],
        secretion: &mut [f32],
        fate: &mut [f32],
    ) -> Result<(), ModelError> {
        let (g, l) = (self.meta.genes.len(), self.meta.ligands.len());
        let (want_s, want_f) = (self.meta.secretion, self.meta.fate);
        let err = |message: String| self.run_error(message);
        let expected = 1 + usize::from(want_s) + usize::from(want_f);
        if outs.len() != expected {
            return Err(err(format!("returned {} outputs, its metadata declares {expected}", outs.len())));
        }
        let mut outs = outs.into_iter();
        let mut copy = |what: &str, width: usize, dst: &mut [f32]| -> Result<(), ModelError> {
            let out = outs.next().ok_or_else(|| err(format!("returned no output for {what}")))?;
            if out.size() != [n as i64, width as i64] {
                return Err(err(format!("returned shape {:?}, expected [{n}, {width}] ({what})", out.size())));
            }
            let out = out.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
            out.f_copy_data(&mut dst[start * width..(start + n) * width], n * width).map_err(|e| err(e.to_string()))
        };
        copy("one rate per gene", g, rates)?;
        if want_s {
            copy("secretion: one per ligand", l, secretion)?;
        }
        if want_f {
            copy("fate scores: apoptosis hazard, progression", 2, fate)?;
        }
        Ok(())
    }
}

impl ResponseModel for TorchModel {
    fn name(&self) -> String {
        format!("torchscript `{}` on {:?}", self.run.path.display(), self.run.device)
    }

    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn rates(&mut self, input: &ResponseInput<'_>, rates: &mut [f32]) -> Result<(), ModelError> {
        let (l, n) = (self.run.meta.ligands.len(), input.cells);
        let mut secretion = vec![0.0f32; if self.run.meta.secretion { n * l } else { 0 }];
        let mut fate = vec![0.0f32; if self.run.meta.fate { n * 2 } else { 0 }];
        self.forward(input, rates, &mut secretion, &mut fate)
    }

    fn extras(&self) -> Extras {
        Extras { secretion: self.run.meta.secretion, fate: self.run.meta.fate }
    }

    fn jacobian(&mut self, input: &ResponseInput<'_>, out: &mut [f32]) -> Result<bool, ModelError> {
        self.autograd_jacobian(input, out)?;
        Ok(true)
    }

    fn respond(
        &mut self,
        input: &ResponseInput<'_>,
        rates: &mut [f32],
        secretion: &mut [f32],
        fate: &mut [f32],
    ) -> Result<(), ModelError> {
        self.forward(input, rates, secretion, fate)
    }
}

/// The one-hot rows `[types.len(), width]` of the cell types (each below `width`), built
/// here rather than by libtorch's `one_hot` (an int64 tensor, a scatter and a conversion
/// per chunk).
fn one_hot(types: &[u32], width: usize) -> Vec<f32> {
    let mut rows = vec![0.0f32; types.len() * width];
    for (row, &t) in rows.chunks_exact_mut(width.max(1)).zip(types) {
        if let Some(x) = row.get_mut(t as usize) {
            *x = 1.0;
        }
    }
    rows
}

/// `v` cut into the slices of `chunks` chunks of [`CHUNK_ROWS`] rows of `width` values,
/// or `chunks` empty slices for an output the model does not have (`v` empty).
fn chunk_slices(v: &mut [f32], width: usize, chunks: usize) -> Vec<&mut [f32]> {
    if v.is_empty() {
        (0..chunks).map(|_| <&mut [f32]>::default()).collect()
    } else {
        v.chunks_mut(CHUNK_ROWS * width).collect()
    }
}

/// The informative line of a libtorch error: the last `...Error: ...` line of a
/// TorchScript traceback if there is one, else the first non-empty line.
fn first_line(s: &str) -> String {
    let lines = || s.lines().map(str::trim).filter(|l| !l.is_empty());
    lines().rfind(|l| l.contains("Error: ")).or_else(|| lines().next()).unwrap_or(s).to_string()
}

/// The larger of two differences, where NaN (a non-finite output) is the worst of all;
/// `f32::max` would skip it.
fn worse(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }
}
