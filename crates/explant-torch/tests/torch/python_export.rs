//! A model exported from PyTorch itself (`torch.jit.script`, not traced through `tch`)
//! loads and runs: `tests/data/pytorch_export/` holds the files
//! `tests/python/export_model.py` (the README's example) wrote with torch 2.11.0+cu130 on
//! 2026-11-26. CI has no Python torch, so the files are kept rather than regenerated.

use std::path::{Path, PathBuf};

use explant_core::{ModelSignature, ResponseInput, ResponseModel};
use explant_torch::TorchModel;

fn exported() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/pytorch_export/my_model.pt")
}

#[test]
fn a_model_scripted_in_pytorch_loads_reproduces_its_check_case_and_runs_a_batch() {
    // `load` runs the check case the script recorded (PyTorch's own output, to 1e-4).
    let mut model = TorchModel::load(&exported(), 1).unwrap();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let scene = ModelSignature {
        genes: names(&["WNT3A", "FZD7"]),
        ligands: names(&["WNT3A"]),
        cell_types: names(&["organiser", "responder"]),
    };
    assert!(model.signature().check_against(&scene, "python").is_ok());
    // A batch of three cells: each row equals the same cell run alone.
    let expression = [0.5, 1.0, 0.0, 0.3, 1.2, 0.1];
    let sensed = [0.2, 0.0, 0.7];
    let contact = [0.0; 6];
    let cell_type = [1, 0, 1];
    let input = ResponseInput {
        cells: 3,
        expression: &expression,
        sensed: &sensed,
        contact: &contact,
        neighbour_types: &[],
        cell_type: &cell_type,
        dt: 1.0,
    };
    let mut batch = [0.0f32; 6];
    model.rates(&input, &mut batch).unwrap();
    for i in 0..3 {
        let one = ResponseInput {
            cells: 1,
            expression: &expression[2 * i..2 * i + 2],
            sensed: &sensed[i..i + 1],
            contact: &contact[2 * i..2 * i + 2],
            neighbour_types: &[],
            cell_type: &cell_type[i..i + 1],
            dt: 1.0,
        };
        let mut alone = [0.0f32; 2];
        model.rates(&one, &mut alone).unwrap();
        for k in 0..2 {
            assert!((alone[k] - batch[2 * i + k]).abs() < 1e-6, "cell {i}: {alone:?} vs {batch:?}");
        }
    }
    // The first cell is the check case: PyTorch's own output.
    for (a, b) in batch[..2].iter().zip(&model.meta().check.output) {
        assert!((a - b).abs() < 1e-5, "{batch:?} vs {:?}", model.meta().check.output);
    }
}

/// A scripted model returning its optional outputs as a tuple (rates, secretion, fate):
/// `tests/python/export_model_extras.py`, written with torch 2.11.0+cu130.
#[test]
fn a_scripted_model_with_a_tuple_of_outputs_loads_and_gives_each_output() {
    let pt = exported().with_file_name("extras_model.pt");
    let mut model = TorchModel::load(&pt, 1).unwrap();
    assert_eq!(model.extras(), explant_core::Extras { secretion: true, fate: true });
    let g = 7;
    let (expression, contact, sensed) = (vec![0.3f32; 2 * g], vec![0.0f32; 2 * g], [0.1f32, 0.2]);
    let input = ResponseInput {
        cells: 2,
        expression: &expression,
        sensed: &sensed,
        contact: &contact,
        neighbour_types: &[],
        cell_type: &[0, 1],
        dt: 1.0,
    };
    let (mut rates, mut secretion, mut fate) = (vec![1.0f32; 2 * g], [9.0f32; 2], [9.0f32; 4]);
    model.respond(&input, &mut rates, &mut secretion, &mut fate).unwrap();
    assert!(rates.iter().all(|&r| r == 0.0));
    // Organisers secrete 0.5, responders nothing; responders carry hazard 0.01, half speed.
    assert_eq!(secretion, [0.5, 0.0]);
    assert!((fate[0] - 0.0).abs() < 1e-7 && (fate[1] - 1.0).abs() < 1e-7, "{fate:?}");
    assert!((fate[2] - 0.01).abs() < 1e-7 && (fate[3] - 0.5).abs() < 1e-7, "{fate:?}");
}
