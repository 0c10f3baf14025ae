//! Scores of predicted perturbation responses against the truth, as the Virtual Cell
//! Challenge defines them (Roohani et al., Cell 2025; the `cell-eval` package, 0.8.2):
//! mean absolute error of pseudobulk expression, Pearson correlation of the deltas, the
//! perturbation discrimination score (L1), and the overlap of differentially expressed
//! genes (`overlap_at_N`).
//!
//! Each definition follows `cell-eval` 0.8.2 with `pdex` 0.3 (its DE engine) on expression
//! taken as log-normalised (explant's expression lies in `[0, 15)` with fractions, which
//! `cell-eval` treats as log1p data and leaves untransformed):
//! - a group's response is [`Response::of`] its cells against its control cells: arithmetic
//!   means (pseudobulk), their difference (delta), a two-sided Mann–Whitney U p-value per
//!   gene (normal approximation with tie and continuity correction), and the log2 fold
//!   change of the back-transformed means, `log2(expm1(mean) / expm1(control))`;
//! - DE genes are those with Benjamini–Hochberg FDR < 0.05, ranked by |log2 fold change|
//!   ([`Response::de_genes`]), for the truth and for a prediction alike;
//! - [`de_overlap`] is the fraction of the `k` true DE genes found among the prediction's
//!   top `k` DE genes, and 0 when there is no true DE gene.
//!
//! `tests/python/cell_eval_compare.py` runs `cell-eval` on an export of `explant eval` and
//! checks these scores against its numbers.

/// Mean absolute difference.
pub fn mae(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() {
        return f64::NAN;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

/// Pearson correlation; NaN when either side is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if a.len() < 2 {
        return f64::NAN;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (a.iter().map(|x| (x - ma).powi(2)).sum(), b.iter().map(|y| (y - mb).powi(2)).sum());
    if va <= 0.0 || vb <= 0.0 { f64::NAN } else { cov / (va * vb).sqrt() }
}

/// Perturbation discrimination score of each predicted perturbation: the L1 distance from
/// its predicted delta to the true delta of every perturbation (the target gene of the
/// predicted one left out), the rank of its own true delta among them (0 = closest), and
/// `1 − rank / N`. `targets[p]` is the gene index perturbed by `p`.
pub fn discrimination(pred: &[Vec<f64>], truth: &[Vec<f64>], targets: &[usize]) -> Vec<f64> {
    let n = truth.len();
    (0..pred.len())
        .map(|p| {
            let dist = |q: usize| -> f64 {
                pred[p]
                    .iter()
                    .zip(&truth[q])
                    .enumerate()
                    .filter(|(g, _)| *g != targets[p])
                    .map(|(_, (a, b))| (a - b).abs())
                    .sum()
            };
            let own = dist(p);
            let rank = (0..n).filter(|&q| q != p && dist(q) < own).count();
            1.0 - rank as f64 / n as f64
        })
        .collect()
}

/// Two-sided p-value of the Wilcoxon rank-sum (Mann–Whitney U) test of `a` against `b`,
/// by the normal approximation with the tie correction and the continuity correction (as
/// `scipy.stats.mannwhitneyu`'s asymptotic method and `pdex`, which `cell-eval` uses);
/// 1 when a side is empty or every value is tied.
pub fn rank_sum_p(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = a.iter().map(|&v| (v, true)).chain(b.iter().map(|&v| (v, false))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let (mut r1, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        r1 += all[i..=j].iter().filter(|e| e.1).count() as f64 * rank;
        i = j + 1;
    }
    let u = r1 - n1 * (n1 + 1.0) / 2.0;
    let nn = n1 + n2;
    let var = n1 * n2 / 12.0 * ((nn + 1.0) - ties / (nn * (nn - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    // The larger of U and n1·n2 − U, less ½ for continuity.
    let z = ((u - n1 * n2 / 2.0).abs() - 0.5) / var.sqrt();
    (2.0 * normal_sf(z)).clamp(0.0, 1.0)
}

/// Upper tail of the standard normal, `P(Z > z)`, from the C library's `erfc` (`libm`).
fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// Log2 fold change of two means of log1p-scale expression: `log2(expm1(a) / expm1(b))`,
/// the ratio of the back-transformed means (`pdex`'s geometric-mean pseudobulk on log1p
/// data); 0 where both are 0, ±∞ where one is.
pub fn log2_fold_change(a: f64, b: f64) -> f64 {
    let lfc = (a.exp_m1() / b.exp_m1()).log2();
    if lfc.is_nan() { 0.0 } else { lfc }
}

/// One group of cells against its control cells, gene by gene: what every score is
/// computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Mean expression of the cells (pseudobulk).
    pub mean: Vec<f64>,
    /// Mean expression of the control cells.
    pub control: Vec<f64>,
    /// `mean − control`.
    pub delta: Vec<f64>,
    /// Two-sided rank-sum p-value of the cells against the control cells ([`rank_sum_p`]).
    pub p: Vec<f64>,
    /// [`log2_fold_change`] of `mean` against `control`.
    pub lfc: Vec<f64>,
}

impl Response {
    /// The response of `cells` (rows of expression, one per cell, each `G` long) against
    /// `control` (rows likewise); `None` when either side has no cell.
    pub fn of(cells: &[&[f32]], control: &[&[f32]]) -> Option<Self> {
        let g = cells.first()?.len();
        control.first()?;
        let column = |rows: &[&[f32]], gene: usize| -> Vec<f64> { rows.iter().map(|r| f64::from(r[gene])).collect() };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let mut r = Self { mean: Vec::new(), control: Vec::new(), delta: Vec::new(), p: Vec::new(), lfc: Vec::new() };
        for gene in 0..g {
            let (a, b) = (column(cells, gene), column(control, gene));
            let (ma, mb) = (mean(&a), mean(&b));
            r.mean.push(ma);
            r.control.push(mb);
            r.delta.push(ma - mb);
            r.p.push(rank_sum_p(&a, &b));
            r.lfc.push(log2_fold_change(ma, mb));
        }
        Some(r)
    }

    /// The DE genes, most changed first: Benjamini–Hochberg FDR < 0.05, ranked by
    /// |log2 fold change|, ties in gene order. Both are compared in single precision, as
    /// `cell-eval` stores them.
    pub fn de_genes(&self) -> Vec<usize> {
        let fdr = benjamini_hochberg(&self.p);
        let mut genes: Vec<usize> = (0..fdr.len()).filter(|&x| (fdr[x] as f32) < 0.05).collect();
        genes.sort_by(|&a, &b| (self.lfc[b].abs() as f32).total_cmp(&(self.lfc[a].abs() as f32)));
        genes
    }
}

/// Benjamini–Hochberg adjusted p-values (same order as `p`).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adj = vec![1.0; m];
    let mut running = 1.0f64;
    for (k, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (k + 1) as f64);
        adj[i] = running.min(1.0);
    }
    adj
}

/// DE overlap (`cell-eval`'s `overlap_at_N`): of the prediction's first `k = |real|` DE
/// genes (its ranking holds only genes it finds significant, so it may be shorter), the
/// number that are truly DE, over `k`. 0 when nothing is truly DE.
pub fn de_overlap(real: &[usize], predicted_ranking: &[usize]) -> f64 {
    if real.is_empty() {
        return 0.0;
    }
    let k = real.len();
    predicted_ranking.iter().take(k).filter(|g| real.contains(g)).count() as f64 / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_sum_matches_scipy_and_pdex() {
        // scipy.stats.mannwhitneyu([1,2,3,4,5], [6,7,8,9,10], method="asymptotic").pvalue
        // (continuity corrected, scipy 1.17, computed here; numba_mwu, which pdex uses,
        // gives the same) = 0.012185780355344813.
        let p = rank_sum_p(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        assert!((p - 0.012_185_780_355_344_813).abs() < 1e-14, "{p}");
        // With ties: [1,1,2,2,3] vs [2,3,3,4,4]: 0.05241162867102868.
        let p = rank_sum_p(&[1.0, 1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 3.0, 4.0, 4.0]);
        assert!((p - 0.052_411_628_671_028_68).abs() < 1e-14, "{p}");
        // Symmetric in its arguments; 1 when the samples cannot differ.
        assert_eq!(p, rank_sum_p(&[2.0, 3.0, 3.0, 4.0, 4.0], &[1.0, 1.0, 2.0, 2.0, 3.0]));
        assert_eq!(rank_sum_p(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
        assert_eq!(rank_sum_p(&[1.0, 2.0], &[2.0, 1.0]), 1.0);
    }

    #[test]
    fn de_genes_are_the_significant_ones_by_fold_change_and_overlap_scores_as_cell_eval() {
        // Three genes: gene 0 rises strongly in every cell, gene 1 a little in every
        // cell, gene 2 is noise. With 12 cells a side genes 0 and 1 are significant;
        // gene 0 has the larger fold change.
        let cells: Vec<Vec<f32>> =
            (0..12).map(|i| vec![1.5 + 0.01 * i as f32, 0.6 + 0.01 * i as f32, 0.5 + 0.1 * (i % 3) as f32]).collect();
        let control: Vec<Vec<f32>> = (0..12)
            .map(|i| vec![0.5 + 0.01 * i as f32, 0.5 + 0.01 * i as f32, 0.5 + 0.1 * ((i + 1) % 3) as f32])
            .collect();
        let rows = |v: &[Vec<f32>]| -> Vec<Vec<f32>> { v.to_vec() };
        let (c, k) = (rows(&cells), rows(&control));
        let c: Vec<&[f32]> = c.iter().map(Vec::as_slice).collect();
        let k: Vec<&[f32]> = k.iter().map(Vec::as_slice).collect();
        let r = Response::of(&c, &k).unwrap();
        assert!(r.p[0] < 1e-3 && r.p[1] < 0.05 && r.p[2] > 0.5, "{:?}", r.p);
        assert_eq!(r.de_genes(), vec![0, 1]);
        assert!((r.lfc[0] - (1.555f64.exp_m1() / 0.555f64.exp_m1()).log2()).abs() < 1e-6, "{:?}", r.lfc);
        assert!(Response::of(&c, &[]).is_none());
        // The constructed case of issue 14: the truth has DE genes {0, 1}; a prediction
        // that finds only gene 0 significant (its change on gene 1 is noise) scores 1/2,
        // not 1 as a ranking of every changed gene by p-value would.
        assert_eq!(de_overlap(&[0, 1], &[0]), 0.5);
        // A prediction ranking a wrong gene first among k = 2 scores 1/2.
        assert_eq!(de_overlap(&[0, 1], &[2, 0, 1]), 0.5);
        // No true DE gene: 0, as cell-eval scores it (not left out of the mean).
        assert_eq!(de_overlap(&[], &[1]), 0.0);
        assert_eq!(log2_fold_change(0.0, 0.0), 0.0);
        assert_eq!(log2_fold_change(0.0, 1.0), f64::NEG_INFINITY);
    }

    #[test]
    fn bh_adjusts_as_defined() {
        // p = [0.01, 0.04, 0.03, 0.2], m = 4: sorted 0.01·4/1 = 0.04, 0.03·4/2 = 0.06,
        // 0.04·4/3 = 0.0533 → min with the next: 0.0533, 0.2·4/4 = 0.2.
        let a = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
        let want = [0.04, 0.053_333, 0.053_333, 0.2];
        for (x, y) in a.iter().zip(want) {
            assert!((x - y).abs() < 1e-5, "{a:?}");
        }
    }

    #[test]
    fn discrimination_is_one_for_a_perfect_prediction_and_lower_for_a_swapped_one() {
        let truth = vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]];
        assert_eq!(discrimination(&truth, &truth, &[0, 1, 2]), vec![1.0, 1.0, 1.0]);
        let swapped = vec![truth[1].clone(), truth[0].clone(), truth[2].clone()];
        let s = discrimination(&swapped, &truth, &[2, 2, 0]);
        assert!(s[0] < 1.0 && s[1] < 1.0 && s[2] == 1.0, "{s:?}");
    }

    #[test]
    fn pearson_mae_and_overlap() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
        assert_eq!(mae(&[1.0, 2.0], &[2.0, 4.0]), 1.5);
        assert_eq!(de_overlap(&[1, 3], &[3, 0, 1]), 0.5);
    }
}
