//! The pseudobulk baselines of `explant eval` as cells.
//!
//! `cell-eval` scores single cells: its DE overlap tests a prediction's cells against its
//! control cells, so a baseline that is only a pseudobulk has no DE genes to compare.
//! Here each baseline predicts every cell of a held-out knockout's run (as the truth
//! groups them) from that cell's control twin, so that `explant eval` and the export read
//! by `cell-eval` score the same cells, baselines included:
//! - no change: the twin's expression (the prediction's delta is exactly 0, and its cells
//!   equal its control cells, so it has no DE gene);
//! - the mean baseline: the twin's expression plus the mean delta of the training
//!   knockouts in the cell's group, floored at 0 (expression cannot be negative, and
//!   `cell-eval` refuses negative values);
//! - the context mean (`cell-eval`'s baseline): every cell the mean over the training
//!   knockouts of their pseudobulk in the cell's group;
//! - clamp only: the twin's expression with the knocked-out gene at 0 in the knocked-out
//!   cells (what the simulator does whatever the model).
//!
//! [`anchored`] builds a model's anchored prediction (the truth's control plus the model's
//! own perturbed-minus-control change, cell by cell).
//!
//! Cells without a control twin keep the truth's rows; they are not scored (responses
//! match ids with the control).

use explant_core::CellTable;
use explant_core::effects::match_ids;

/// The no-change prediction of the perturbed run `pert`: each cell as its control twin.
pub(crate) fn no_change(pert: &CellTable, control: &CellTable, g: usize) -> CellTable {
    let mut out = pert.clone();
    for (i, j) in match_ids(pert, control).iter().enumerate() {
        if let Some(j) = *j {
            out.expression[i * g..(i + 1) * g].copy_from_slice(&control.expression[j * g..(j + 1) * g]);
        }
    }
    out
}

/// The mean-baseline prediction of the perturbed run `pert` (distances `d` to the nearest
/// knocked-out cell): each cell as its control twin plus `mean_deltas[k]`, the mean delta
/// of the training knockouts in the cell's group `k`, floored at 0.
pub(crate) fn mean_shift(
    pert: &CellTable,
    d: &[f32],
    control: &CellTable,
    bands: &[f32],
    mean_deltas: &[Vec<f64>],
    g: usize,
) -> CellTable {
    let groups = crate::eval::group_of(pert, d, bands);
    let mut out = pert.clone();
    for (i, j) in match_ids(pert, control).iter().enumerate() {
        if let Some(j) = *j {
            let shift = &mean_deltas[groups[i]];
            for x in 0..g {
                // Floored at 0 (cell-eval refuses negative values), but a NaN stays NaN
                // (`f64::max` would turn it into 0).
                let v = f64::from(control.expression[j * g + x]) + shift[x];
                out.expression[i * g + x] = (if v < 0.0 { 0.0 } else { v }) as f32;
            }
        }
    }
    out
}

/// The context-mean prediction (`cell-eval`'s baseline, `build_base_mean_adata`): every
/// cell of the perturbed run `pert` with a control twin, in group `k`, is `means[k]`, the
/// mean over the training knockouts of their pseudobulk in that group (identical cells, as
/// `cell-eval` builds them).
pub(crate) fn context_mean(
    pert: &CellTable,
    d: &[f32],
    control: &CellTable,
    bands: &[f32],
    means: &[Vec<f64>],
    g: usize,
) -> CellTable {
    let groups = crate::eval::group_of(pert, d, bands);
    let mut out = pert.clone();
    for (i, j) in match_ids(pert, control).iter().enumerate() {
        if j.is_some() {
            for x in 0..g {
                out.expression[i * g + x] = means[groups[i]][x] as f32;
            }
        }
    }
    out
}

/// The clamp-only prediction: each cell as its control twin, except that the cells the
/// truth knocked out (flagged in `pert`) have the knocked-out gene `target` at 0. It is the
/// part of a knockout's effect the simulator applies whatever the model: a score it
/// reaches says nothing about a model.
pub(crate) fn clamp_only(pert: &CellTable, control: &CellTable, target: usize, g: usize) -> CellTable {
    let mut out = no_change(pert, control, g);
    for (i, j) in match_ids(pert, control).iter().enumerate() {
        if j.is_some() && pert.perturbed[i] {
            out.expression[i * g + target] = 0.0;
        }
    }
    out
}

/// Rows `keep` of `t` (its order, so still sorted by id), with their entries of `d`.
pub(crate) fn keep_rows(t: &CellTable, d: &[f32], keep: &[bool], g: usize) -> (CellTable, Vec<f32>) {
    let pick = |i: &usize| keep[*i];
    let rows: Vec<usize> = (0..t.ids.len()).filter(pick).collect();
    let out = CellTable {
        ids: rows.iter().map(|&i| t.ids[i]).collect(),
        cell_types: rows.iter().map(|&i| t.cell_types[i]).collect(),
        generations: rows.iter().map(|&i| t.generations[i]).collect(),
        positions: rows.iter().map(|&i| t.positions[i]).collect(),
        radii: rows.iter().map(|&i| t.radii[i]).collect(),
        perturbed: rows.iter().map(|&i| t.perturbed[i]).collect(),
        parents: rows.iter().map(|&i| t.parents[i]).collect(),
        phases: rows.iter().map(|&i| t.phases[i]).collect(),
        expression: rows.iter().flat_map(|&i| t.expression[i * g..(i + 1) * g].iter().copied()).collect(),
    };
    (out, rows.iter().map(|&i| d[i]).collect())
}

/// A model's anchored prediction of the truth's perturbed run `truth_pert` (distances `d`):
/// each cell as the truth's control twin plus the model's own change in that cell (its
/// perturbed run minus its control run, the same lineage-true id in all four tables),
/// floored at 0 (a NaN stays NaN). The knocked-out gene of a knocked-out cell takes the
/// model run's value (the simulator's clamp). Only cells present in all four tables are
/// kept: the anchored score is then the model's prediction of the perturbation's effect
/// alone, with its error in reproducing the unperturbed tissue taken out.
pub(crate) fn anchored(
    truth_pert: &CellTable,
    d: &[f32],
    truth_ctrl: &CellTable,
    model_pert: &CellTable,
    model_ctrl: &CellTable,
    target: usize,
    g: usize,
) -> (CellTable, Vec<f32>) {
    let (tc, mp, mc) =
        (match_ids(truth_pert, truth_ctrl), match_ids(truth_pert, model_pert), match_ids(truth_pert, model_ctrl));
    let keep: Vec<bool> =
        (0..truth_pert.ids.len()).map(|i| tc[i].is_some() && mp[i].is_some() && mc[i].is_some()).collect();
    let mut out = truth_pert.clone();
    for i in 0..truth_pert.ids.len() {
        let (Some(a), Some(b), Some(c)) = (tc[i], mp[i], mc[i]) else { continue };
        for x in 0..g {
            let v = if truth_pert.perturbed[i] && x == target {
                model_pert.expression[b * g + x]
            } else {
                truth_ctrl.expression[a * g + x] + model_pert.expression[b * g + x] - model_ctrl.expression[c * g + x]
            };
            out.expression[i * g + x] = if v < 0.0 { 0.0 } else { v };
        }
    }
    keep_rows(&out, d, &keep, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of cells `ids` (sorted) with two genes each, `perturbed` flags.
    fn table(ids: &[u64], expression: &[f32], perturbed: &[bool]) -> CellTable {
        let n = ids.len();
        CellTable {
            ids: ids.to_vec(),
            cell_types: vec![0; n],
            generations: vec![0; n],
            positions: vec![[0.0; 3]; n],
            radii: vec![5.0; n],
            perturbed: perturbed.to_vec(),
            parents: vec![u64::MAX; n],
            phases: vec![explant_core::Phase::Cycling; n],
            expression: expression.to_vec(),
        }
    }

    #[test]
    fn anchored_is_the_truths_control_plus_the_models_own_change_on_shared_cells() {
        // Truth: cells 1 (knocked out, gene 0 the target), 2, 3; cell 3 has no twin in the
        // model's control and cell 4 exists only in the truth's control.
        let truth_pert = table(&[1, 2, 3], &[0.0, 2.0, 1.5, 1.0, 9.0, 9.0], &[true, false, false]);
        let truth_ctrl = table(&[1, 2, 3, 4], &[1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 5.0, 5.0], &[false; 4]);
        // The model's steady state is off by +0.5 everywhere; its effect in cell 2 is
        // +0.25 on gene 0 and −2 on gene 1 (which the floor stops at 0).
        let model_pert = table(&[1, 2, 3], &[0.0, 1.9, 1.75, -0.5, 7.0, 7.0], &[true, false, false]);
        let model_ctrl = table(&[1, 2], &[1.5, 1.5, 1.5, 1.5], &[false, false]);
        let d = [0.0, 10.0, 20.0];
        let (t, dd) = anchored(&truth_pert, &d, &truth_ctrl, &model_pert, &model_ctrl, 0, 2);
        assert_eq!(t.ids, vec![1, 2], "cell 3 has no twin in the model's control");
        assert_eq!(dd, vec![0.0, 10.0]);
        assert_eq!(t.perturbed, vec![true, false]);
        // Cell 1: the target takes the model run's clamp (0), gene 1 = 1 + (1.9 − 1.5).
        assert_eq!(t.expression[0], 0.0);
        assert!((t.expression[1] - 1.4).abs() < 1e-6, "{}", t.expression[1]);
        // Cell 2: gene 0 = 1 + 0.25; gene 1 = 1 − 2 floored at 0. The model's +0.5
        // steady-state error is gone.
        assert!((t.expression[2] - 1.25).abs() < 1e-6, "{}", t.expression[2]);
        assert_eq!(t.expression[3], 0.0);
        // A model that is the truth gives back the truth.
        let (same, _) = anchored(&truth_pert, &d, &truth_ctrl, &truth_pert, &truth_ctrl, 0, 2);
        assert_eq!(same.expression, truth_pert.expression);
        // A NaN in the model's run stays NaN (the floor must not turn it into 0).
        let mut nan = model_pert.clone();
        nan.expression[3] = f32::NAN;
        let (t, _) = anchored(&truth_pert, &d, &truth_ctrl, &nan, &model_ctrl, 0, 2);
        assert!(t.expression[3].is_nan());
    }

    #[test]
    fn context_mean_gives_every_cell_of_a_group_the_groups_training_mean() {
        // Cell 1 knocked out (group 0), cell 2 at 5 µm (group 1 of bands [0, 15]), cell 3
        // without a control twin keeps its row.
        let pert = table(&[1, 2, 3], &[0.0, 3.0, 2.0, 3.0, 7.0, 7.0], &[true, false, false]);
        let ctrl = table(&[1, 2], &[1.0, 1.0, 1.0, 1.0], &[false, false]);
        let means = vec![vec![0.5, 0.25], vec![2.0, 4.0], vec![9.0, 9.0]];
        let t = context_mean(&pert, &[0.0, 5.0, 50.0], &ctrl, &[0.0, 15.0], &means, 2);
        assert_eq!(t.expression, vec![0.5, 0.25, 2.0, 4.0, 7.0, 7.0]);
    }

    #[test]
    fn clamp_only_zeroes_the_target_in_knocked_out_cells_and_nothing_else() {
        let pert = table(&[1, 2], &[0.0, 3.0, 2.0, 3.0], &[true, false]);
        let ctrl = table(&[1, 2], &[1.0, 1.0, 1.0, 1.0], &[false, false]);
        let t = clamp_only(&pert, &ctrl, 0, 2);
        assert_eq!(t.expression, vec![0.0, 1.0, 1.0, 1.0]);
    }
}
