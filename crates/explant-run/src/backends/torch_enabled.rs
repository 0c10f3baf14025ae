//! TorchScript response models through libtorch (this build has the `torch` feature).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use explant_core::{ModelSignature, ResponseModel};

pub use super::ModelBench;
use crate::RunError;

/// Whether this build has libtorch.
pub const ENABLED: bool = true;

/// Load the TorchScript model at `path` (with its `.json`) for a scene of signature `sig`.
///
/// # Errors
///
/// When it does not load or does not fit the scene.
pub fn model(path: &Path, sig: &ModelSignature, threads: usize) -> Result<Box<dyn ResponseModel>, RunError> {
    Ok(Box::new(explant_torch::TorchModel::load_for(path, sig, threads)?))
}

/// Median seconds of each of `paths` over `reps` rounds, after one warm-up call each.
/// The paths take turns within a round, so load from other processes on the machine
/// falls on all of them alike.
fn interleaved_medians(
    reps: usize,
    paths: &mut [&mut dyn FnMut() -> Result<(), RunError>],
) -> Result<Vec<f64>, RunError> {
    for f in paths.iter_mut() {
        f()?;
    }
    let mut times = vec![Vec::with_capacity(reps.max(1)); paths.len()];
    for _ in 0..reps.max(1) {
        for (f, t) in paths.iter_mut().zip(&mut times) {
            let start = Instant::now();
            f()?;
            t.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

/// Time `TorchModel::rates` on synthetic populations beside plain tch matmuls of the same
/// layer shapes (whole, and in `CHUNK_ROWS` chunks), print a table to `out` and return
/// the same numbers as JSON (`explant bench model --json`).
pub fn bench_model(args: &ModelBench, out: &mut dyn Write) -> Result<serde_json::Value, RunError> {
    use explant_core::{ResponseInput, ResponseModel};
    use explant_torch::{CHUNK_ROWS, RawMlp, TorchModel};

    if let Some(bad) = args.cells.iter().find(|&&n| n == 0) {
        return Err(RunError::Option {
            option: "--cells".into(),
            message: format!("values must be at least 1 (got `{bad}`)"),
        });
    }
    let mut model = TorchModel::load(&args.model, args.threads)?;
    let workers = rayon::current_num_threads();
    // The raw paths use libtorch's own threads; the model sets them to 1 and runs its
    // chunks on the rayon pool, so each path sets what it uses before it runs.
    let raw_threads = |on: bool| explant_torch::set_intra_op_threads(if on { workers } else { 1 });
    let layers = model.layer_shapes()?;
    let meta = model.meta().clone();
    let (g, l, t) = (meta.genes.len(), meta.ligands.len(), meta.cell_types.len());
    // Inputs uniform in [0, upper end of the training range] (1 when the model has none).
    let ranges = meta.training.as_ref().map(|tr| tr.input_ranges.clone()).filter(|r| r.len() == g + l);
    let range = |k: usize| ranges.as_ref().map_or(1.0, |r| r[k]);
    let shapes: Vec<String> =
        std::iter::once(layers[0].inputs.to_string()).chain(layers.iter().map(|s| s.outputs.to_string())).collect();
    let _ = writeln!(
        out,
        "{} on {:?}: dense layers {} (tanh between); model: its chunks in parallel on {workers} threads, one \
         libtorch thread each; raw: {workers} libtorch threads; median of {} reps after a warm-up",
        args.model.display(),
        model.device(),
        shapes.join(" → "),
        args.reps
    );
    let _ = writeln!(
        out,
        "{:>9} {:>14} {:>16} {:>18} {:>12} {:>14}",
        "cells", "model cells/s", "raw whole cells/s", "raw chunked cells/s", "model/whole", "model/chunked"
    );
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut last_ratio = None;
    let mut rows = Vec::new();
    for &n in &args.cells {
        let expression: Vec<f32> = (0..n * g).map(|i| uniform() * range(i % g)).collect();
        let sensed: Vec<f32> = (0..n * l).map(|i| uniform() * range(g + i % l)).collect();
        let contact: Vec<f32> = (0..n * g).map(|i| uniform() * range(i % g)).collect();
        let cell_type: Vec<u32> = (0..n).map(|_| ((uniform() * t as f32) as u32).min(t as u32 - 1)).collect();
        let counts: Vec<f32> = if model.meta().neighbour_counts {
            (0..n * t).map(|_| (uniform() * 4.0).floor()).collect()
        } else {
            Vec::new()
        };
        let input = ResponseInput {
            cells: n,
            expression: &expression,
            sensed: &sensed,
            contact: &contact,
            neighbour_types: &counts,
            cell_type: &cell_type,
            dt: 0.1,
        };
        let mut rates = vec![0.0f32; n * g];
        let raw = RawMlp::new(&layers, n, model.device());
        let times = interleaved_medians(
            args.reps,
            &mut [
                &mut || {
                    raw_threads(false);
                    Ok(model.rates(&input, &mut rates)?)
                },
                &mut || {
                    raw_threads(true);
                    std::hint::black_box(raw.run_whole());
                    Ok(())
                },
                &mut || {
                    raw_threads(true);
                    std::hint::black_box(raw.run_chunked(CHUNK_ROWS));
                    Ok(())
                },
            ],
        )?;
        let (model_s, whole_s, chunked_s) = (times[0], times[1], times[2]);
        drop(raw);
        if rates.iter().any(|r| !r.is_finite()) {
            return Err(RunError::Invalid(format!(
                "model `{}` returned a non-finite rate for {n} synthetic cells",
                args.model.display()
            )));
        }
        let rate = |s: f64| n as f64 / s;
        let _ = writeln!(
            out,
            "{n:>9} {:>14.3e} {:>16.3e} {:>18.3e} {:>11.0} % {:>12.0} %",
            rate(model_s),
            rate(whole_s),
            rate(chunked_s),
            100.0 * whole_s / model_s,
            100.0 * chunked_s / model_s
        );
        last_ratio = Some((n, whole_s / model_s, chunked_s / model_s));
        rows.push(serde_json::json!({
            "cells": n,
            "model_cells_per_s": rate(model_s),
            "raw_whole_cells_per_s": rate(whole_s),
            "raw_chunked_cells_per_s": rate(chunked_s),
            "model_vs_whole": whole_s / model_s,
            "model_vs_chunked": chunked_s / model_s,
        }));
    }
    if let Some((n, whole, chunked)) = last_ratio {
        let worst = whole.min(chunked);
        let _ = writeln!(
            out,
            "at {n} cells the model runs at {:.0} % of the raw whole-tensor rate and {:.0} % of the raw chunked rate: {} the goal of 50 % of the faster raw path",
            100.0 * whole,
            100.0 * chunked,
            if worst >= 0.5 { "meets" } else { "below" }
        );
    }
    let _ = writeln!(
        out,
        "raw = the same dense layers as plain tch linear + tanh on one contiguous [N, {}] float32 tensor (random weights, no copies in or out); chunked = the same on {CHUNK_ROWS}-row views",
        layers[0].inputs
    );
    Ok(serde_json::json!({
        "bench": "model",
        "config": {
            "model": args.model.display().to_string(),
            "device": format!("{:?}", model.device()),
            "layers": shapes,
            "threads": workers,
            "reps": args.reps,
        },
        "results": rows,
    }))
}

/// A model's metadata as JSON, after loading it (which runs its self-check), with the path
/// and that it loaded: `explant model show --json`.
///
/// # Errors
///
/// When the model does not load or fails its check case.
pub fn describe_model_json(path: &Path) -> Result<serde_json::Value, RunError> {
    let model = explant_torch::TorchModel::load(path, 0)?;
    let meta = serde_json::to_value(model.meta())
        .map_err(|e| RunError::Invalid(format!("model `{}`: metadata as JSON: {e}", path.display())))?;
    Ok(
        serde_json::json!({ "path": path.display().to_string(), "loads": true, "check_case": "reproduced", "metadata": meta }),
    )
}

/// Load the model at `path` (which runs its self-check) and describe its metadata: names,
/// inputs, how it was trained and how it validated.
///
/// # Errors
///
/// When it does not load or its check case does not reproduce.
pub fn describe_model(path: &Path) -> Result<String, RunError> {
    use std::fmt::Write as _;
    let mut s = String::new();
    let model = explant_torch::TorchModel::load(path, 0)?;
    let m = model.meta();
    let _ = writeln!(s, "{}: loads and reproduces its check case", path.display());
    let _ = writeln!(s, "  genes:      {}", m.genes.join(", "));
    let _ = writeln!(s, "  ligands:    {}", m.ligands.join(", "));
    let _ = writeln!(s, "  cell types: {}", m.cell_types.join(", "));
    let _ = writeln!(s, "  contract:   {}", m.contract);
    let _ = writeln!(
        s,
        "  inputs:     expression, sensed, contact, cell_type_onehot{}",
        if m.neighbour_counts { ", neighbour_types" } else { "" }
    );
    if let Some(t) = &m.training {
        let _ = writeln!(s, "  trained by: {}", t.command);
        if let Some(ty) = &t.hold_out_type {
            let _ = writeln!(s, "  held out:   cell type `{ty}` (seen only unperturbed)");
        }
        if !t.hold_out_genes.is_empty() {
            let _ = writeln!(s, "  held out:   perturbations of {}", t.hold_out_genes.join(", "));
        }
        if t.members > 1 {
            let _ = writeln!(
                s,
                "  ensemble:   mean of {} networks (seeds {}..={})",
                t.members,
                t.seed,
                t.seed.wrapping_add(t.members as u64 - 1)
            );
        }
        if !t.unseen_types.is_empty() {
            let _ = writeln!(s, "  unseen:     {} (one-hot column ignored)", t.unseen_types.join(", "));
        }
        let _ = writeln!(
            s,
            "  validation MSE: {:.3e} (no change {:.3e}, mean {:.3e})",
            t.val_mse, t.val_mse_no_change, t.val_mse_mean
        );
    }
    Ok(s)
}

/// The error for anything that needs libtorch; this build has it, so only for symmetry with
/// the disabled module.
pub fn not_enabled(what: String) -> RunError {
    RunError::NotEnabled {
        feature: "torch",
        what,
        alternative: ", or run with the scene's teacher: `--teacher`, or `model=\"teacher\"` in Python",
    }
}

/// Write a niche model learned by `explant learn` as TorchScript with its metadata.
///
/// # Errors
///
/// When tracing or writing fails.
pub fn export_niche(spec: &crate::learn::NicheSpec, path: &Path) -> Result<(), RunError> {
    let (expression, sensed, contact, cell_type, neighbour_types) = spec.check.clone();
    let export = explant_torch::NicheExport {
        weights: &spec.weights,
        bias: &spec.bias,
        modelled: spec.modelled,
        tau: spec.tau,
        genes: &spec.genes,
        ligands: &spec.ligands,
        cell_types: &spec.cell_types,
        learned: spec.learned.clone(),
        check: explant_torch::NicheCheckInput { expression, sensed, contact, cell_type, neighbour_types },
    };
    Ok(explant_torch::export_niche(&export, path)?)
}
