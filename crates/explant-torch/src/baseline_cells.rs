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
//!   `cell-eval` refuses negative values).
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
