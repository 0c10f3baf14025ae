//! Scores of predicted perturbation responses against the truth, as the Virtual Cell
//! Challenge defines them (Roohani et al., Cell 2025; the `cell-eval` package): mean
//! absolute error of pseudobulk expression, Pearson correlation of the deltas, the
//! perturbation discrimination score (L1), and the overlap of differentially expressed
//! genes (Wilcoxon rank-sum test, Benjamini–Hochberg FDR).

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
/// by the normal approximation with the tie correction (as scanpy's `wilcoxon`); 1 when a
/// side is empty or every value is tied.
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
    let z = (u - n1 * n2 / 2.0) / var.sqrt();
    2.0 * normal_sf(z.abs())
}

/// Upper tail of the standard normal, `P(Z > z)`, from erfc (Numerical Recipes' erfcc,
/// relative error below 1.2e-7).
fn normal_sf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
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

/// DE overlap: of the `k = |real|` genes the prediction ranks first, the fraction that
/// are truly DE. NaN when nothing is truly DE.
pub fn de_overlap(real: &[usize], predicted_ranking: &[usize]) -> f64 {
    if real.is_empty() {
        return f64::NAN;
    }
    let k = real.len();
    predicted_ranking.iter().take(k).filter(|g| real.contains(g)).count() as f64 / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_sum_matches_scipy() {
        // scipy.stats.mannwhitneyu([1,2,3,4,5], [6,7,8,9,10], method="asymptotic",
        // use_continuity=False).pvalue = 0.009023438818 (scipy 1.x, computed here).
        let p = rank_sum_p(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        assert!((p - 0.009_023_438_8).abs() < 1e-7, "{p}");
        // With ties: [1,1,2,2,3] vs [2,3,3,4,4]: 0.040608973404.
        let p = rank_sum_p(&[1.0, 1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 3.0, 4.0, 4.0]);
        assert!((p - 0.040_608_973_4).abs() < 1e-7, "{p}");
        assert_eq!(rank_sum_p(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
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
        assert!(de_overlap(&[], &[1]).is_nan());
    }
}
