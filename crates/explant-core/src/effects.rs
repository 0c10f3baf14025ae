//! Paired-control analysis: per-gene effects (perturbed run − control run, cell by cell
//! matched on id) for perturbed cells, for unperturbed cells by distance band, and as a
//! curve of response against distance from the perturbation.
//!
//! Ids name a cell's place in the lineage ([`crate::lineage`]), so matching on id pairs
//! a cell with itself in the control and never with another: grafted cells and their
//! progeny, and daughters of divisions one run made and the other did not, have no
//! partner and are left out.

use crate::CellTable;

/// Mean effect of one group of cells on one gene.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectRow {
    /// `perturbed`, `band` or `far`.
    pub group: &'static str,
    /// Lower edge of the distance band, µm (0 for `perturbed`).
    pub from: f32,
    /// Upper edge of the band, µm (infinite for `far`).
    pub to: f32,
    /// Cells in the group (present in both runs).
    pub cells: usize,
    /// Gene index.
    pub gene: usize,
    /// Mean expression in the perturbed run.
    pub perturbed_mean: f64,
    /// Mean expression of the same cells in the control run.
    pub control_mean: f64,
    /// `perturbed_mean − control_mean`.
    pub effect: f64,
}

/// One bin of the response-versus-distance curve.
#[derive(Debug, Clone, PartialEq)]
pub struct DistanceBin {
    /// Bin centre, µm.
    pub distance: f32,
    /// Unperturbed cells in the bin present in both runs.
    pub cells: usize,
    /// Mean signed effect per gene.
    pub effect: Vec<f64>,
    /// Mean absolute effect per gene.
    pub magnitude: Vec<f64>,
}

/// For each cell of `perturbed` (by position in its table), the row of the same cell id
/// in `control`, if it exists there. Both tables are sorted by id.
pub fn match_ids(perturbed: &CellTable, control: &CellTable) -> Vec<Option<usize>> {
    let mut j = 0;
    perturbed
        .ids
        .iter()
        .map(|id| {
            while j < control.ids.len() && control.ids[j] < *id {
                j += 1;
            }
            (j < control.ids.len() && control.ids[j] == *id).then_some(j)
        })
        .collect()
}

/// The control's expression aligned to the perturbed run's cells (`N × G`; NaN for cells
/// the control does not have, such as grafted cells or daughters born only in one run).
pub fn aligned_control(perturbed: &CellTable, control: &CellTable, genes: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; perturbed.ids.len() * genes];
    for (i, m) in match_ids(perturbed, control).into_iter().enumerate() {
        if let Some(j) = m {
            out[i * genes..(i + 1) * genes].copy_from_slice(&control.expression[j * genes..(j + 1) * genes]);
        }
    }
    out
}

/// Per-gene effects for perturbed cells, for unperturbed cells in each distance band
/// `[bands[k], bands[k+1])`, and for unperturbed cells beyond the last edge (`far`).
/// `distance` is per cell of `perturbed` (NaN: not counted in any band).
pub fn effects(
    perturbed: &CellTable,
    control: &CellTable,
    distance: &[f32],
    bands: &[f32],
    genes: usize,
) -> Vec<EffectRow> {
    let matched = match_ids(perturbed, control);
    let mut rows = Vec::new();
    for g in groups(perturbed, distance, bands) {
        let members: Vec<(usize, usize)> = g.cells.iter().filter_map(|&i| matched[i].map(|j| (i, j))).collect();
        for gene in 0..genes {
            let (mut sp, mut sc) = (0.0f64, 0.0f64);
            for &(i, j) in &members {
                sp += f64::from(perturbed.expression[i * genes + gene]);
                sc += f64::from(control.expression[j * genes + gene]);
            }
            let n = members.len().max(1) as f64;
            let (pm, cm) = if members.is_empty() { (f64::NAN, f64::NAN) } else { (sp / n, sc / n) };
            rows.push(EffectRow {
                group: g.group,
                from: g.from,
                to: g.to,
                cells: members.len(),
                gene,
                perturbed_mean: pm,
                control_mean: cm,
                effect: pm - cm,
            });
        }
    }
    rows
}

/// One group of cells of a perturbed run, as [`effects`] reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct CellGroup {
    /// `perturbed`, `band` or `far`.
    pub group: &'static str,
    /// Lower edge of the distance band, µm (0 for `perturbed`).
    pub from: f32,
    /// Upper edge of the band, µm (infinite for `far`).
    pub to: f32,
    /// Rows of the perturbed run's table in the group.
    pub cells: Vec<usize>,
}

/// The groups of [`effects`]: the perturbed cells, the unperturbed cells in each distance
/// band `[bands[k], bands[k+1])`, and those beyond the last edge (`far`). `distance` is
/// per cell of `perturbed` (NaN: in no band).
pub fn groups(perturbed: &CellTable, distance: &[f32], bands: &[f32]) -> Vec<CellGroup> {
    let mut out = vec![CellGroup { group: "perturbed", from: 0.0, to: 0.0, cells: Vec::new() }];
    for w in bands.windows(2) {
        out.push(CellGroup { group: "band", from: w[0], to: w[1], cells: Vec::new() });
    }
    if let Some(&last) = bands.last() {
        out.push(CellGroup { group: "far", from: last, to: f32::INFINITY, cells: Vec::new() });
    }
    for g in &mut out {
        g.cells = (0..perturbed.ids.len())
            .filter(|&i| {
                if g.group == "perturbed" {
                    perturbed.perturbed[i]
                } else {
                    !perturbed.perturbed[i] && distance[i] >= g.from && distance[i] < g.to
                }
            })
            .collect();
    }
    out
}

/// Mean effect of unperturbed cells in distance bins of width `bin`, from 0 to the
/// farthest cell.
pub fn response_vs_distance(
    perturbed: &CellTable,
    control: &CellTable,
    distance: &[f32],
    bin: f32,
    genes: usize,
) -> Vec<DistanceBin> {
    let matched = match_ids(perturbed, control);
    let far = distance.iter().copied().filter(|d| d.is_finite()).fold(0.0f32, f32::max);
    let bins = ((far / bin).floor() as usize + 1).min(10_000);
    let mut sum = vec![0.0f64; bins * genes];
    let mut abs = vec![0.0f64; bins * genes];
    let mut count = vec![0usize; bins];
    for (i, m) in matched.iter().enumerate() {
        let (Some(j), d) = (m, distance[i]) else { continue };
        if perturbed.perturbed[i] || !d.is_finite() {
            continue;
        }
        let b = ((d / bin).floor() as usize).min(bins - 1);
        count[b] += 1;
        for g in 0..genes {
            let e = f64::from(perturbed.expression[i * genes + g]) - f64::from(control.expression[j * genes + g]);
            sum[b * genes + g] += e;
            abs[b * genes + g] += e.abs();
        }
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            let n = count[b] as f64;
            DistanceBin {
                distance: (b as f32 + 0.5) * bin,
                cells: count[b],
                effect: (0..genes).map(|g| sum[b * genes + g] / n).collect(),
                magnitude: (0..genes).map(|g| abs[b * genes + g] / n).collect(),
            }
        })
        .collect()
}

/// The neighbours of each cell of `table` within `radius` µm (see [`neighbourhood_mean`]).
///
/// # Errors
///
/// [`crate::CoreError::TooManyPairs`] when the lists would overflow.
pub fn neighbourhood(table: &CellTable, radius: f32) -> Result<crate::neighbours::Csr, crate::CoreError> {
    let positions: Vec<glam::Vec3> = table.positions.iter().map(|p| glam::Vec3::from_array(*p)).collect();
    crate::neighbours::CellList::new(&positions, radius).neighbours()
}

/// For each cell, the mean of `values` (`N × k`, row-major, one row per cell) over the cell
/// itself and its neighbours `csr` (from [`neighbourhood`]): the one-step neighbourhood
/// average used by the neighbour-average baseline of `explant eval`.
pub fn neighbourhood_mean(csr: &crate::neighbours::Csr, values: &[f32], k: usize) -> Vec<f32> {
    let n = csr.cells();
    debug_assert_eq!(values.len(), n * k);
    let mut out = vec![0.0f32; n * k];
    for i in 0..n {
        let row = &mut out[i * k..(i + 1) * k];
        let mut count = 0usize;
        for j in std::iter::once(i as u32).chain(csr.list(i).iter().copied().filter(|&j| j as usize != i)) {
            let j = j as usize;
            for (o, v) in row.iter_mut().zip(&values[j * k..(j + 1) * k]) {
                *o += v;
            }
            count += 1;
        }
        for o in row.iter_mut() {
            *o /= count as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(xs: &[f32]) -> CellTable {
        let n = xs.len();
        CellTable {
            ids: (0..n as u64).collect(),
            cell_types: vec![0; n],
            generations: vec![0; n],
            positions: xs.iter().map(|&x| [x, 0.0, 0.0]).collect(),
            radii: vec![5.0; n],
            perturbed: vec![false; n],
            parents: vec![u64::MAX; n],
            phases: vec![crate::Phase::Cycling; n],
            expression: vec![0.0; n],
        }
    }

    #[test]
    fn neighbourhood_mean_averages_a_cell_with_those_within_the_radius() {
        // Cells at 0, 10, 20 and 100 µm; radius 15: 0↔10, 10↔20, 100 alone.
        let t = line(&[0.0, 10.0, 20.0, 100.0]);
        let v = [3.0, 0.0, 6.0, 9.0, 1.0, 1.0, 0.0, 5.0];
        let m = neighbourhood_mean(&neighbourhood(&t, 15.0).unwrap(), &v, 2);
        let want = [4.5, 4.5, 10.0 / 3.0, 10.0 / 3.0, 3.5, 5.0, 0.0, 5.0];
        for (a, b) in m.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{m:?} vs {want:?}");
        }
    }
}
