//! The shipped TorchScript model: loading, values, batching and every load-time refusal.

use std::path::{Path, PathBuf};

use explant_core::{ModelSignature, ResponseInput, ResponseModel, Teacher};
use explant_scene::LoadedScene;
use explant_torch::{CHUNK_ROWS, ModelMeta, TorchError, TorchModel, meta_path};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shipped() -> PathBuf {
    repo().join("models/default.pt")
}

fn scene() -> LoadedScene {
    LoadedScene::from_file(&repo().join("scenes/default.toml")).unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("explant-torch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic pseudo-random inputs for `n` cells.
fn inputs(n: usize, g: usize, l: usize, t: u32) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u32>) {
    let mut state = 12345u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let x = (0..n * g).map(|_| 2.0 * next()).collect();
    let s = (0..n * l).map(|_| next()).collect();
    let c = (0..n * g).map(|_| 2.0 * next()).collect();
    let ty = (0..n).map(|_| ((next() * t as f32) as u32).min(t - 1)).collect();
    (x, s, c, ty)
}

#[test]
fn shipped_model_loads_and_matches_the_teacher_on_its_check_case() {
    let sc = scene();
    let mut model = TorchModel::load_for(&shipped(), &ModelSignature::of_scene(&sc.scene), 1).unwrap();
    let check = model.meta().check.clone();
    let g = sc.scene.genes.len();
    let mut out = vec![0.0; g];
    let input = ResponseInput {
        cells: 1,
        expression: &check.expression,
        sensed: &check.sensed,
        contact: &check.contact,
        neighbour_types: &[],
        cell_type: &[check.cell_type],
        dt: 0.5,
    };
    model.rates(&input, &mut out).unwrap();
    // The value recorded at export is reproduced...
    for (a, b) in out.iter().zip(&check.output) {
        assert!((a - b).abs() < 1e-5, "{out:?} vs recorded {:?}", check.output);
    }
    // ... and it is the teacher's dx/dt, recomputed here from the scene, to fitting accuracy.
    let mut teacher = vec![0.0; g];
    Teacher::from_scene(&sc.scene).rate_one(
        &check.expression,
        &check.sensed,
        &check.contact,
        &[],
        check.cell_type as usize,
        &mut teacher,
    );
    let worst = out.iter().zip(&teacher).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 5e-3, "model {out:?} vs teacher {teacher:?} (worst {worst})");
}

#[test]
fn batch_output_has_shape_n_by_g_and_tracks_the_teacher() {
    let sc = scene();
    let (g, l, t) = (sc.scene.genes.len(), sc.scene.ligands.len(), sc.scene.cell_types.len() as u32);
    let mut model = TorchModel::load(&shipped(), 1).unwrap();
    let n = 2000;
    let (x, s, c, ty) = inputs(n, g, l, t);
    // Contact inputs exist only for contact genes.
    let mask: Vec<bool> = sc.scene.genes.iter().map(|n| sc.scene.contact.genes.contains(n)).collect();
    let c: Vec<f32> = c.iter().enumerate().map(|(i, v)| if mask[i % g] { *v } else { 0.0 }).collect();
    let input = ResponseInput {
        cells: n,
        expression: &x,
        sensed: &s,
        contact: &c,
        neighbour_types: &[],
        cell_type: &ty,
        dt: 0.5,
    };
    let mut out = vec![f32::NAN; n * g];
    model.rates(&input, &mut out).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
    let mut want = vec![0.0; n * g];
    Teacher::from_scene(&sc.scene).rates(&input, &mut want).unwrap();
    let mse: f64 = out.iter().zip(&want).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>() / (n * g) as f64;
    let var: f64 = want.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / (n * g) as f64;
    assert!(mse < 0.01 * var, "model MSE {mse} vs teacher signal power {var}");
}

#[test]
fn chunked_inference_equals_row_by_row() {
    let sc = scene();
    let (g, l, t) = (sc.scene.genes.len(), sc.scene.ligands.len(), sc.scene.cell_types.len() as u32);
    let mut model = TorchModel::load(&shipped(), 0).unwrap();
    let n = CHUNK_ROWS + 37;
    let (x, s, c, ty) = inputs(n, g, l, t);
    let input = ResponseInput {
        cells: n,
        expression: &x,
        sensed: &s,
        contact: &c,
        neighbour_types: &[],
        cell_type: &ty,
        dt: 0.5,
    };
    let mut out = vec![0.0; n * g];
    model.rates(&input, &mut out).unwrap();
    for i in [0, 1, CHUNK_ROWS - 1, CHUNK_ROWS, n - 1] {
        let one = ResponseInput {
            cells: 1,
            expression: &x[i * g..(i + 1) * g],
            sensed: &s[i * l..(i + 1) * l],
            contact: &c[i * g..(i + 1) * g],
            neighbour_types: &[],
            cell_type: &ty[i..i + 1],
            dt: 0.5,
        };
        let mut row = vec![0.0; g];
        model.rates(&one, &mut row).unwrap();
        for (a, b) in row.iter().zip(&out[i * g..(i + 1) * g]) {
            assert!((a - b).abs() < 1e-6, "row {i}: {row:?} vs batch {:?}", &out[i * g..(i + 1) * g]);
        }
    }
}

#[test]
fn chunks_run_in_parallel_give_the_bits_of_one_thread() {
    let sc = scene();
    let (g, l, t) = (sc.scene.genes.len(), sc.scene.ligands.len(), sc.scene.cell_types.len() as u32);
    let n = 3 * CHUNK_ROWS + 37;
    let (x, s, c, ty) = inputs(n, g, l, t);
    let input = ResponseInput {
        cells: n,
        expression: &x,
        sensed: &s,
        contact: &c,
        neighbour_types: &[],
        cell_type: &ty,
        dt: 0.5,
    };
    let mut serial = TorchModel::load(&shipped(), 1).unwrap();
    assert_eq!(serial.parallel_copies(), 0, "one thread runs its chunks in turn");
    let mut one = vec![f32::NAN; n * g];
    serial.rates(&input, &mut one).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let many = pool.install(|| {
        let mut model = TorchModel::load(&shipped(), 0).unwrap();
        assert_eq!(model.parallel_copies(), 3, "one copy per thread of the pool");
        let mut out = vec![f32::NAN; n * g];
        model.rates(&input, &mut out).unwrap();
        out
    });
    assert!(one.iter().all(|v| v.is_finite()));
    let differ = one.iter().zip(&many).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differ, 0, "{differ} of {} values differ between 1 and 3 threads", n * g);
}

fn copy_model(dir: &Path) -> PathBuf {
    let pt = dir.join("m.pt");
    std::fs::copy(shipped(), &pt).unwrap();
    std::fs::copy(meta_path(&shipped()), meta_path(&pt)).unwrap();
    pt
}

#[test]
fn wrong_gene_order_is_refused_naming_the_genes() {
    let sc = scene();
    let mut sig = ModelSignature::of_scene(&sc.scene);
    sig.genes.swap(2, 3);
    let err = TorchModel::load_for(&shipped(), &sig, 1).unwrap_err().to_string();
    assert!(err.contains("different order") && err.contains("`AXIN2`") && err.contains("`LGR5`"), "{err}");
}

#[test]
fn missing_ligand_is_refused() {
    let sc = scene();
    let mut sig = ModelSignature::of_scene(&sc.scene);
    sig.ligands.push("BMP4".into());
    let err = TorchModel::load_for(&shipped(), &sig, 1).unwrap_err().to_string();
    assert!(err.contains("ligand `BMP4` is missing from the model"), "{err}");
}

#[test]
fn not_a_torchscript_file_is_refused() {
    let dir = tmpdir("garbage");
    let pt = copy_model(&dir);
    std::fs::write(&pt, b"this is not a zip archive").unwrap();
    let err = TorchModel::load(&pt, 1).unwrap_err();
    assert!(matches!(err, TorchError::NotTorchScript { .. }), "{err}");
    assert!(err.to_string().contains("is not a TorchScript model"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_metadata_is_refused() {
    let dir = tmpdir("nometa");
    let pt = dir.join("m.pt");
    std::fs::copy(shipped(), &pt).unwrap();
    let err = TorchModel::load(&pt, 1).unwrap_err().to_string();
    assert!(err.contains("m.json") && err.contains("metadata"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn inputs_of_the_wrong_width_are_refused_with_torchs_reason() {
    // Metadata that declares one gene more than the network was traced for.
    let dir = tmpdir("inwidth");
    let pt = copy_model(&dir);
    let mut meta = ModelMeta::read(&meta_path(&pt)).unwrap();
    meta.genes.push("EXTRA".into());
    meta.check.expression.push(0.0);
    meta.check.contact.push(0.0);
    meta.check.output.push(0.0);
    meta.write(&meta_path(&pt)).unwrap();
    let err = TorchModel::load(&pt, 1).unwrap_err().to_string();
    assert!(err.contains("RuntimeError: The size of tensor a (19)"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn wrong_output_width_is_refused() {
    // A TorchScript module that returns G + 1 columns for G genes.
    let dir = tmpdir("outwidth");
    let pt = copy_model(&dir);
    let meta = ModelMeta::read(&meta_path(&pt)).unwrap();
    let (g, l, t) = (meta.genes.len() as i64, meta.ligands.len() as i64, meta.cell_types.len() as i64);
    let example = [
        tch::Tensor::zeros([2, g], tch::kind::FLOAT_CPU),
        tch::Tensor::zeros([2, l], tch::kind::FLOAT_CPU),
        tch::Tensor::zeros([2, g], tch::kind::FLOAT_CPU),
        tch::Tensor::zeros([2, t], tch::kind::FLOAT_CPU),
    ];
    let module = tch::CModule::create_by_tracing("Wide", "forward", &example, &mut |inp: &[tch::Tensor]| {
        vec![tch::Tensor::cat(&[&inp[0], &inp[0].narrow(1, 0, 1)], 1)]
    })
    .unwrap();
    module.save(&pt).unwrap();
    let err = TorchModel::load(&pt, 1).unwrap_err().to_string();
    assert!(err.contains("returned shape [1, 8], expected [1, 7]"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mismatched_pt_and_json_are_refused() {
    let dir = tmpdir("check");
    let pt = copy_model(&dir);
    let mut meta = ModelMeta::read(&meta_path(&pt)).unwrap();
    meta.check.output[0] += 0.5;
    meta.write(&meta_path(&pt)).unwrap();
    let err = TorchModel::load(&pt, 1).unwrap_err();
    assert!(matches!(err, TorchError::CheckFailed { .. }), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_model_that_returns_nan_fails_its_check_case() {
    // The shipped metadata (a finite check output) beside a module whose every output is
    // NaN: a comparison that skips NaN would let it load.
    let dir = tmpdir("nan");
    let pt = copy_model(&dir);
    let meta = ModelMeta::read(&meta_path(&pt)).unwrap();
    assert!(meta.check.output.iter().all(|v| v.is_finite()));
    let (g, l, t) = (meta.genes.len() as i64, meta.ligands.len() as i64, meta.cell_types.len() as i64);
    let example = [
        tch::Tensor::zeros([2, g], tch::kind::FLOAT_CPU),
        tch::Tensor::zeros([2, l], tch::kind::FLOAT_CPU),
        tch::Tensor::zeros([2, g], tch::kind::FLOAT_CPU),
        tch::Tensor::zeros([2, t], tch::kind::FLOAT_CPU),
    ];
    let module = tch::CModule::create_by_tracing("Nan", "forward", &example, &mut |inp: &[tch::Tensor]| {
        vec![(&inp[0] * 0.0) / 0.0]
    })
    .unwrap();
    module.save(&pt).unwrap();
    let err = TorchModel::load(&pt, 1).unwrap_err();
    assert!(matches!(err, TorchError::CheckFailed { .. }), "{err}");
    assert!(err.to_string().contains("NaN"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A scene whose teacher reads neighbour counts (`neighbours:tumour → IFNG` in
/// `scenes/tumour_immune.toml`, cut to 1 h and 600 cells) gets a model with the fifth
/// input, and the model learns the edge: a T cell's IFNG rate rises with its tumour
/// neighbours as the teacher's does.
#[test]
fn a_teacher_that_reads_neighbour_counts_gets_a_model_that_learns_them() {
    let path = repo().join("scenes/tumour_immune.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("duration = 720.0", "duration = 60.0").replace("cells = 3000", "cells = 600");
    let scene = LoadedScene::from_str(&text, &path).unwrap();
    let dir = tmpdir("counts");
    let out = dir.join("counts.pt");
    let opts = explant_torch::FitOptions {
        seed: 1,
        train: 20_000,
        val: 4_000,
        steps: 3_000,
        contexts: 3,
        per_context: 2_000,
        ..Default::default()
    };
    let report = explant_torch::fit_to_teacher(&scene, &out, &opts, &mut |_, _| {}).unwrap();
    let mut model = TorchModel::load_for(&out, &ModelSignature::of_scene(&scene.scene), 1).unwrap();
    assert!(model.meta().neighbour_counts);
    let sc = &scene.scene;
    let (g, l, t) = (sc.genes.len(), sc.ligands.len(), sc.cell_types.len());
    assert_eq!(model.meta().check.neighbour_types.as_ref().map(Vec::len), Some(t));
    assert_eq!(model.input_width(), 2 * g + l + 2 * t);
    assert!(report.training.val_mse < 0.05 * report.training.val_mse_no_change, "{:?}", report.training);
    // A T cell at its baseline, with 0 to 4 tumour neighbours.
    let (tcell, tumour, ifng) =
        (sc.cell_type_index("tcell").unwrap(), sc.cell_type_index("tumour").unwrap(), sc.gene_index("IFNG").unwrap());
    let n = 5;
    let rest = sc.gene_vector(&sc.cell_types[tcell].baseline);
    let expression: Vec<f32> = (0..n).flat_map(|_| rest.iter().copied()).collect();
    let (sensed, contact) = (vec![0.0f32; n * l], vec![0.0f32; n * g]);
    let mut counts = vec![0.0f32; n * t];
    for i in 0..n {
        counts[i * t + tumour] = i as f32;
    }
    let input = ResponseInput {
        cells: n,
        expression: &expression,
        sensed: &sensed,
        contact: &contact,
        neighbour_types: &counts,
        cell_type: &vec![tcell as u32; n],
        dt: 1.0,
    };
    let (mut learned, mut truth) = (vec![0.0f32; n * g], vec![0.0f32; n * g]);
    model.rates(&input, &mut learned).unwrap();
    Teacher::from_scene(sc).rates(&input, &mut truth).unwrap();
    let rise = |r: &[f32]| r[(n - 1) * g + ifng] - r[ifng];
    assert!(rise(&truth) > 0.0);
    assert!(
        (rise(&learned) - rise(&truth)).abs() < 0.25 * rise(&truth),
        "IFNG rate rise over 0..4 tumour neighbours: learned {} vs teacher {}",
        rise(&learned),
        rise(&truth)
    );
    // Without the counts the model refuses to run rather than guess.
    let blind = ResponseInput { neighbour_types: &[], ..input };
    let err = model.rates(&blind, &mut learned).unwrap_err().to_string();
    assert!(err.contains("neighbour counts"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn autograd_jacobian_is_the_models_derivative_and_tracks_the_teachers() {
    // The shipped network's derivatives by autograd, against central differences of its
    // own rates (f64 of f32 outputs, step 1e-2: the network is smooth, so the difference
    // errs by ~1e-4 and rounding by ~1e-5), on 40 cells and every one of the 17 inputs
    // the network reads. The teacher it learned has derivatives of the same shape: the
    // sensed-WNT3A column of AXIN2 dominates and agrees in sign on every cell. Zeros,
    // the wrong column or the wrong cell order fail.
    let sc = scene();
    let (g, l, t) = (sc.scene.genes.len(), sc.scene.ligands.len(), sc.scene.cell_types.len());
    let w = explant_core::jacobian_width(g, l, t);
    let mut model = TorchModel::load_for(&shipped(), &ModelSignature::of_scene(&sc.scene), 1).unwrap();
    let n = 40;
    let (x, s, c, ty) = inputs(n, g, l, t as u32);
    let mask: Vec<bool> = sc.scene.genes.iter().map(|n| sc.scene.contact.genes.contains(n)).collect();
    let c: Vec<f32> = c.iter().enumerate().map(|(i, v)| if mask[i % g] { *v } else { 0.0 }).collect();
    let input = |x: &[f32], s: &[f32], c: &[f32]| -> Vec<f32> {
        let inp = ResponseInput {
            cells: n,
            expression: x,
            sensed: s,
            contact: c,
            neighbour_types: &[],
            cell_type: &ty,
            dt: 0.5,
        };
        let mut out = vec![0.0; n * g];
        TorchModel::rates(&mut TorchModel::load(&shipped(), 1).unwrap(), &inp, &mut out).unwrap();
        out
    };
    let inp = ResponseInput {
        cells: n,
        expression: &x,
        sensed: &s,
        contact: &c,
        neighbour_types: &[],
        cell_type: &ty,
        dt: 0.5,
    };
    let mut jac = vec![f32::NAN; n * g * w];
    assert!(model.jacobian(&inp, &mut jac).unwrap());
    let h = 1e-2f32;
    let mut worst = 0.0f64;
    let mut largest = 0.0f64;
    // Columns 0..G: expression; G..G+L: sensed; G+L..2G+L: contact; then counts (unread).
    for col in 0..2 * g + l {
        let (mut xu, mut su, mut cu) = (x.clone(), s.clone(), c.clone());
        let (mut xd, mut sd, mut cd) = (x.clone(), s.clone(), c.clone());
        let bump = |v: &mut Vec<f32>, k: usize, width: usize, d: f32| {
            for i in 0..n {
                v[i * width + k] += d;
            }
        };
        if col < g {
            bump(&mut xu, col, g, h);
            bump(&mut xd, col, g, -h);
        } else if col < g + l {
            bump(&mut su, col - g, l, h);
            bump(&mut sd, col - g, l, -h);
        } else {
            bump(&mut cu, col - g - l, g, h);
            bump(&mut cd, col - g - l, g, -h);
        }
        let (up, down) = (input(&xu, &su, &cu), input(&xd, &sd, &cd));
        for i in 0..n {
            for gene in 0..g {
                let numeric = (f64::from(up[i * g + gene]) - f64::from(down[i * g + gene])) / (2.0 * f64::from(h));
                let analytic = f64::from(jac[(i * g + gene) * w + col]);
                worst = worst.max((numeric - analytic).abs());
                largest = largest.max(analytic.abs());
            }
        }
    }
    assert!(largest > 0.05, "the network's largest derivative is {largest}");
    assert!(worst < 2e-3, "autograd vs central differences: worst gap {worst} (largest derivative {largest})");
    // The same 40 cells tiled 33 times (1320 cells: several chunks of the backward
    // pass, whose boundaries fall inside a tile): every copy has the same derivatives.
    let tiles = 33;
    let tile = |v: &[f32]| v.repeat(tiles);
    let (xt, st, ct) = (tile(&x), tile(&s), tile(&c));
    let tyt: Vec<u32> = ty.repeat(tiles);
    let big = ResponseInput {
        cells: n * tiles,
        expression: &xt,
        sensed: &st,
        contact: &ct,
        neighbour_types: &[],
        cell_type: &tyt,
        dt: 0.5,
    };
    let mut tiled = vec![f32::NAN; n * tiles * g * w];
    assert!(model.jacobian(&big, &mut tiled).unwrap());
    for k in 0..tiles {
        let copy = &tiled[k * n * g * w..(k + 1) * n * g * w];
        let worst = copy.iter().zip(&jac).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "tile {k}: derivatives differ from the 40-cell batch by {worst}");
    }
    // Neighbour counts: the network reads none, so their columns are exactly 0.
    for i in 0..n * g {
        assert!(jac[i * w + 2 * g + l..(i + 1) * w].iter().all(|&v| v == 0.0));
    }
    // Against the teacher's analytic Jacobian: AXIN2's derivative on sensed WNT3A.
    let mut teacher = Teacher::from_scene(&sc.scene);
    let mut tj = vec![0.0f32; n * g * w];
    assert!(teacher.jacobian(&inp, &mut tj).unwrap());
    let axin2 = sc.scene.genes.iter().position(|n| n == "AXIN2").unwrap();
    let col = g; // WNT3A, the only ligand
    let mut agree = 0;
    for i in 0..n {
        let (a, b) = (jac[(i * g + axin2) * w + col], tj[(i * g + axin2) * w + col]);
        agree += usize::from(a.signum() == b.signum() && b.abs() > 1e-3);
    }
    assert!(agree >= n * 9 / 10, "AXIN2's WNT3A derivative agrees in sign with the teacher's on {agree} of {n} cells");
}
