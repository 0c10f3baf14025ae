//! The niche model's fit and its held-out evaluation on spatially blocked folds.
//!
//! Every model predicts a cell's expression at the section's steady state from what
//! surrounds it. Features per cell: its type (one-hot, `T`), the fraction of its
//! neighbours of each type (`T`), the ligands it senses (`L`: the section's own
//! secretion at steady state × its receptor) and its neighbours' mean expression of the
//! contact genes (`G`). The models compared:
//!
//! - `global mean`: the training cells' mean (the trivial floor);
//! - `cell type mean`: the mean of the training cells of the same type;
//! - `neighbour average`: the mean expression of the cell's neighbours (no fitting; the
//!   type mean where a cell has none);
//! - `linear niche`: ridge regression on own type and neighbour-type composition (the
//!   NCEM / Celcomen form);
//! - `learned`: ridge regression on all features (the model `explant learn` exports).
//!
//! Folds are contiguous stripes along the section's longer axis, with equal numbers of
//! cells. Cells within the contact radius of a test stripe (measured along that axis, so
//! a superset of the true neighbours) are left out of training, so no test cell's
//! neighbour trains the model that predicts it. The ridge penalty of each fitted model is
//! and the learned model's structure (each gene reading every gene's neighbour mean, or
//! only its own) are chosen inside the training folds (nested), so the held-out numbers
//! never see the test stripe.

use serde::Serialize;

/// Number of features of the learned model: `2T + L + G`.
pub fn width(t: usize, l: usize, g: usize) -> usize {
    2 * t + l + g
}

/// The inputs of every cell, as the engine computes them at the section's steady state.
#[derive(Debug, Clone)]
pub struct Features {
    /// Cells.
    pub n: usize,
    /// Cell types.
    pub t: usize,
    /// Ligand channels.
    pub l: usize,
    /// Genes.
    pub g: usize,
    /// Type index per cell.
    pub cell_type: Vec<u32>,
    /// Neighbours by type, `N × T`.
    pub neighbour_types: Vec<f32>,
    /// Sensed ligands, `N × L`.
    pub sensed: Vec<f32>,
    /// Neighbour means of every gene, `N × G` (the neighbour-average baseline reads all).
    pub contact: Vec<f32>,
    /// Which genes' neighbour means are inputs of the fitted models (the contact genes).
    pub contact_mask: Vec<bool>,
    /// Observed expression, `N × G` (the target).
    pub expression: Vec<f32>,
}

impl Features {
    /// Number of neighbours of cell `i`.
    pub fn neighbours(&self, i: usize) -> f32 {
        self.neighbour_types[i * self.t..(i + 1) * self.t].iter().sum()
    }

    /// The learned model's feature row of cell `i` (the niche baseline uses the first `2T`).
    pub fn row(&self, i: usize, out: &mut Vec<f64>) {
        out.clear();
        let (t, l, g) = (self.t, self.l, self.g);
        for k in 0..t {
            out.push(if self.cell_type[i] as usize == k { 1.0 } else { 0.0 });
        }
        let total = f64::from(self.neighbours(i)).max(1.0);
        out.extend(self.neighbour_types[i * t..(i + 1) * t].iter().map(|&c| f64::from(c) / total));
        out.extend(self.sensed[i * l..(i + 1) * l].iter().map(|&v| f64::from(v)));
        out.extend(
            self.contact[i * g..(i + 1) * g]
                .iter()
                .zip(&self.contact_mask)
                .map(|(&v, &m)| if m { f64::from(v) } else { 0.0 }),
        );
    }
}

/// The models compared, in the order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Training mean.
    GlobalMean,
    /// Training mean of the cell's type.
    TypeMean,
    /// Neighbours' mean expression.
    NeighbourAverage,
    /// Ridge on type and neighbour-type composition.
    LinearNiche,
    /// Ridge on every feature (the exported model).
    Learned,
}

impl Baseline {
    /// All, in table order.
    pub const ALL: [Baseline; 5] = [
        Baseline::GlobalMean,
        Baseline::TypeMean,
        Baseline::NeighbourAverage,
        Baseline::LinearNiche,
        Baseline::Learned,
    ];

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::GlobalMean => "global mean",
            Baseline::TypeMean => "cell type mean",
            Baseline::NeighbourAverage => "neighbour average",
            Baseline::LinearNiche => "linear niche",
            Baseline::Learned => "learned",
        }
    }

    /// Features used by a fitted model (`None`: not fitted by ridge).
    fn columns(self, f: &Features) -> Option<usize> {
        match self {
            Baseline::LinearNiche => Some(2 * f.t),
            Baseline::Learned => Some(width(f.t, f.l, f.g)),
            _ => None,
        }
    }
}

/// Ridge penalties tried, as multiples of the number of training cells (features are
/// standardised, so this is the penalty per unit variance).
pub const ALPHAS: [f64; 9] = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0];

/// A ridge fit in the original feature scale: `y = b + x W`.
#[derive(Debug, Clone)]
pub struct Ridge {
    /// `F × G` row-major.
    pub weights: Vec<f64>,
    /// `G`.
    pub bias: Vec<f64>,
    /// The weights on standardised features (weight × the feature's standard deviation
    /// over the training cells; 0 for a constant feature): comparable across features.
    pub standardised: Vec<f64>,
}

/// The standardised normal equations of a ridge fit on the rows `train` (features: the
/// first `cols` of [`Features::row`]), solved for any penalty by [`RidgeSystem::solve`].
#[derive(Debug, Clone)]
pub struct RidgeSystem {
    cols: usize,
    g: usize,
    n: f64,
    gram: Vec<f64>,
    rhs: Vec<f64>,
    mu: Vec<f64>,
    sd: Vec<f64>,
    ybar: Vec<f64>,
}

impl RidgeSystem {
    /// Accumulate the system over the training rows: every gene on the first `cols`
    /// features, or (`own = Some(k)`) gene `k` alone on the type, neighbour-type and
    /// ligand features and its own neighbour mean (`cols` is then `2T + L + 1`).
    pub fn new(f: &Features, train: &[usize], cols: usize, own: Option<usize>) -> Self {
        let outputs: Vec<usize> = match own {
            Some(k) => vec![k],
            None => (0..f.g).collect(),
        };
        let g = outputs.len();
        let n = train.len().max(1) as f64;
        let mut x = Vec::with_capacity(train.len() * cols);
        let mut row = Vec::new();
        for &i in train {
            f.row(i, &mut row);
            match own {
                Some(k) => {
                    let base = 2 * f.t + f.l;
                    x.extend_from_slice(&row[..base]);
                    x.push(row[base + k]);
                }
                None => x.extend_from_slice(&row[..cols]),
            }
        }
        let y = |i: usize, k: usize| f64::from(f.expression[i * f.g + outputs[k]]);
        let mut mu = vec![0.0; cols];
        let mut ybar = vec![0.0; g];
        for (r, &i) in train.iter().enumerate() {
            for c in 0..cols {
                mu[c] += x[r * cols + c];
            }
            for k in 0..g {
                ybar[k] += y(i, k);
            }
        }
        mu.iter_mut().for_each(|m| *m /= n);
        ybar.iter_mut().for_each(|m| *m /= n);
        let mut sd = vec![0.0; cols];
        for r in 0..train.len() {
            for c in 0..cols {
                sd[c] += (x[r * cols + c] - mu[c]).powi(2);
            }
        }
        // A feature that varies by less than 1e-4 of its size is treated as constant: its
        // weight would be huge and the exported model, in f32, would lose the target to
        // rounding (a gene the section holds at one level, say).
        let sd: Vec<f64> = sd
            .iter()
            .zip(&mu)
            .map(|(s, m)| ((s / n).sqrt(), m.abs()))
            .map(|(s, m)| if s > 1e-4 * m.max(1e-8) { s } else { 0.0 })
            .collect();
        let mut gram = vec![0.0; cols * cols];
        let mut rhs = vec![0.0; cols * g];
        let mut z = vec![0.0; cols];
        for (r, &i) in train.iter().enumerate() {
            for c in 0..cols {
                z[c] = if sd[c] > 0.0 { (x[r * cols + c] - mu[c]) / sd[c] } else { 0.0 };
            }
            for p in 0..cols {
                if z[p] == 0.0 {
                    continue;
                }
                for q in p..cols {
                    gram[p * cols + q] += z[p] * z[q];
                }
                for k in 0..g {
                    rhs[p * g + k] += z[p] * (y(i, k) - ybar[k]);
                }
            }
        }
        for p in 0..cols {
            for q in 0..p {
                gram[p * cols + q] = gram[q * cols + p];
            }
        }
        Self { cols, g, n, gram, rhs, mu, sd, ybar }
    }

    /// The fit with penalty `alpha × n` on the standardised weights.
    pub fn solve(&self, alpha: f64) -> Ridge {
        let (cols, g) = (self.cols, self.g);
        let mut a = self.gram.clone();
        for p in 0..cols {
            a[p * cols + p] += alpha * self.n;
        }
        let w = cholesky_solve(&mut a, &self.rhs, cols, g);
        let mut weights = vec![0.0; cols * g];
        let mut standardised = vec![0.0; cols * g];
        let mut bias = self.ybar.clone();
        for c in 0..cols {
            if self.sd[c] == 0.0 {
                continue;
            }
            for k in 0..g {
                let v = w[c * g + k] / self.sd[c];
                weights[c * g + k] = v;
                standardised[c * g + k] = w[c * g + k];
                bias[k] -= self.mu[c] * v;
            }
        }
        Ridge { weights, bias, standardised }
    }
}

/// Hyperparameters of a ridge model: whether each gene sees only its own neighbour mean
/// (`own`) or every gene's, and the penalty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hyper {
    /// Each gene's target reads its own neighbour mean only (not the other genes').
    pub own: bool,
    /// Penalty, a multiple of the training cells.
    pub alpha: f64,
}

/// Fits of `model` on `train` for each of `hypers`, in the full `F × G` layout (zeros for
/// the inputs a structure leaves out). The normal equations are built once per structure.
pub fn fits(model: Baseline, f: &Features, train: &[usize], hypers: &[Hyper]) -> Vec<Ridge> {
    let (t, l, g) = (f.t, f.l, f.g);
    let Some(cols) = model.columns(f) else { return Vec::new() };
    let full_width = width(t, l, g);
    let full =
        hypers.iter().any(|h| !h.own || model != Baseline::Learned).then(|| RidgeSystem::new(f, train, cols, None));
    let own: Vec<RidgeSystem> = if model == Baseline::Learned && hypers.iter().any(|h| h.own) {
        (0..g).map(|k| RidgeSystem::new(f, train, 2 * t + l + 1, Some(k))).collect()
    } else {
        Vec::new()
    };
    hypers
        .iter()
        .map(|h| {
            let mut out = Ridge {
                weights: vec![0.0; full_width * g],
                bias: vec![0.0; g],
                standardised: vec![0.0; full_width * g],
            };
            if h.own && model == Baseline::Learned {
                let base = 2 * t + l;
                for (k, system) in own.iter().enumerate() {
                    let r = system.solve(h.alpha);
                    out.bias[k] = r.bias[0];
                    for c in 0..=base {
                        let to = if c == base { base + k } else { c };
                        out.weights[to * g + k] = r.weights[c];
                        out.standardised[to * g + k] = r.standardised[c];
                    }
                }
            } else if let Some(system) = &full {
                let r = system.solve(h.alpha);
                out.bias = r.bias;
                out.weights[..cols * g].copy_from_slice(&r.weights);
                out.standardised[..cols * g].copy_from_slice(&r.standardised);
            }
            out
        })
        .collect()
}

/// The candidate hyperparameters of `model`.
pub fn candidates(model: Baseline) -> Vec<Hyper> {
    let structures: &[bool] = if model == Baseline::Learned { &[false, true] } else { &[false] };
    structures.iter().flat_map(|&own| ALPHAS.iter().map(move |&alpha| Hyper { own, alpha })).collect()
}

/// Solve `A X = B` for symmetric positive definite `A` (`m × m`, overwritten by its
/// Cholesky factor) and `B` (`m × k`).
fn cholesky_solve(a: &mut [f64], b: &[f64], m: usize, k: usize) -> Vec<f64> {
    for j in 0..m {
        let mut d = a[j * m + j];
        for p in 0..j {
            d -= a[j * m + p] * a[j * m + p];
        }
        let d = d.max(1e-300).sqrt();
        a[j * m + j] = d;
        for i in j + 1..m {
            let mut s = a[i * m + j];
            for p in 0..j {
                s -= a[i * m + p] * a[j * m + p];
            }
            a[i * m + j] = s / d;
        }
    }
    let mut x = b.to_vec();
    for c in 0..k {
        for i in 0..m {
            let mut s = x[i * k + c];
            for p in 0..i {
                s -= a[i * m + p] * x[p * k + c];
            }
            x[i * k + c] = s / a[i * m + i];
        }
        for i in (0..m).rev() {
            let mut s = x[i * k + c];
            for p in i + 1..m {
                s -= a[p * m + i] * x[p * k + c];
            }
            x[i * k + c] = s / a[i * m + i];
        }
    }
    x
}

impl Ridge {
    /// Prediction for cell `i` into `out` (`G`).
    pub fn predict(&self, f: &Features, i: usize, row: &mut Vec<f64>, out: &mut [f64]) {
        f.row(i, row);
        let g = f.g;
        let cols = self.weights.len() / g.max(1);
        out.copy_from_slice(&self.bias);
        for c in 0..cols {
            let v = row[c];
            if v == 0.0 {
                continue;
            }
            for k in 0..g {
                out[k] += v * self.weights[c * g + k];
            }
        }
    }
}

/// Spatially blocked folds.
#[derive(Debug, Clone)]
pub struct Folds {
    /// Fold of each cell.
    pub fold: Vec<usize>,
    /// Number of folds.
    pub k: usize,
    /// Each cell's coordinate along the blocking axis, µm.
    pub coord: Vec<f32>,
    /// Extent of each fold along the axis.
    pub range: Vec<(f32, f32)>,
    /// Buffer width, µm.
    pub buffer: f32,
    /// The blocking axis (0 = x, 1 = y, 2 = z).
    pub axis: usize,
}

impl Folds {
    /// `k` stripes along the longest axis with equal numbers of cells.
    pub fn stripes(positions: &[[f32; 3]], dims: usize, k: usize, buffer: f32) -> Self {
        let n = positions.len();
        let extent = |a: usize| {
            let (lo, hi) =
                positions.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), p| (l.min(p[a]), h.max(p[a])));
            hi - lo
        };
        let axis = (0..dims).max_by(|&a, &b| extent(a).total_cmp(&extent(b))).unwrap_or(0);
        let coord: Vec<f32> = positions.iter().map(|p| p[axis]).collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| coord[a].total_cmp(&coord[b]).then(a.cmp(&b)));
        let mut fold = vec![0; n];
        for (r, &i) in order.iter().enumerate() {
            fold[i] = r * k / n.max(1);
        }
        // Cells at the same coordinate go to one fold (the first that has them).
        for w in 1..n {
            let (a, b) = (order[w - 1], order[w]);
            if coord[a] == coord[b] {
                fold[b] = fold[a];
            }
        }
        let mut range = vec![(f32::INFINITY, f32::NEG_INFINITY); k];
        for i in 0..n {
            let r = &mut range[fold[i]];
            r.0 = r.0.min(coord[i]);
            r.1 = r.1.max(coord[i]);
        }
        Self { fold, k, coord, range, buffer, axis }
    }

    /// Whether cell `i` may train a model tested on fold `test`: not in it, and not within
    /// the buffer of it.
    pub fn trains(&self, i: usize, test: usize) -> bool {
        let (lo, hi) = self.range[test];
        self.fold[i] != test && (self.coord[i] < lo - self.buffer || self.coord[i] > hi + self.buffer)
    }

    /// Cells of fold `k`.
    pub fn members(&self, k: usize) -> Vec<usize> {
        (0..self.fold.len()).filter(|&i| self.fold[i] == k).collect()
    }
}

/// Predictions of `model` for `test` from a model trained on `train`, one `test.len() × G`
/// block per entry of `hypers` (ignored by the unfitted baselines).
fn predict(model: Baseline, f: &Features, train: &[usize], test: &[usize], hypers: &[Hyper]) -> Vec<Vec<f64>> {
    let g = f.g;
    if model.columns(f).is_some() {
        let mut row = Vec::new();
        return fits(model, f, train, hypers)
            .into_iter()
            .map(|fit| {
                let mut out = vec![0.0; test.len() * g];
                for (r, &i) in test.iter().enumerate() {
                    fit.predict(f, i, &mut row, &mut out[r * g..(r + 1) * g]);
                }
                out
            })
            .collect();
    }
    let mean_of = |cells: &mut dyn Iterator<Item = usize>| -> Option<Vec<f64>> {
        let mut m = vec![0.0; g];
        let mut n = 0usize;
        for i in cells {
            for k in 0..g {
                m[k] += f64::from(f.expression[i * g + k]);
            }
            n += 1;
        }
        (n > 0).then(|| m.iter().map(|v| v / n as f64).collect())
    };
    let global = mean_of(&mut train.iter().copied()).unwrap_or_else(|| vec![0.0; g]);
    let type_means: Vec<Vec<f64>> = (0..f.t)
        .map(|t| {
            mean_of(&mut train.iter().copied().filter(|&i| f.cell_type[i] as usize == t)).unwrap_or(global.clone())
        })
        .collect();
    let mut out = vec![0.0; test.len() * g];
    for (r, &i) in test.iter().enumerate() {
        let o = &mut out[r * g..(r + 1) * g];
        match model {
            Baseline::GlobalMean => o.copy_from_slice(&global),
            Baseline::NeighbourAverage if f.neighbours(i) > 0.0 => {
                for k in 0..g {
                    o[k] = f64::from(f.contact[i * g + k]);
                }
            }
            _ => o.copy_from_slice(&type_means[f.cell_type[i] as usize]),
        }
    }
    vec![out; hypers.len().max(1)]
}

/// Mean absolute error of predictions for `cells` (`cells.len() × G`).
fn mae(f: &Features, cells: &[usize], pred: &[f64]) -> f64 {
    let g = f.g;
    let mut s = 0.0;
    for (r, &i) in cells.iter().enumerate() {
        for k in 0..g {
            s += (pred[r * g + k] - f64::from(f.expression[i * g + k])).abs();
        }
    }
    s / (cells.len() * g).max(1) as f64
}

/// The hyperparameters with the lowest MAE over the folds other than `outer`, training
/// only on cells that may train for `outer` (`None`: over all folds).
pub fn choose(model: Baseline, f: &Features, folds: &Folds, outer: Option<usize>) -> Hyper {
    let options = candidates(model);
    let fallback = Hyper { own: false, alpha: ALPHAS[ALPHAS.len() / 2] };
    if model.columns(f).is_none() {
        return Hyper { own: false, alpha: 0.0 };
    }
    let mut err = vec![0.0; options.len()];
    let mut count = 0usize;
    let usable = |i: usize| outer.is_none_or(|o| folds.trains(i, o));
    for inner in (0..folds.k).filter(|&j| Some(j) != outer) {
        let test: Vec<usize> = folds.members(inner).into_iter().filter(|&i| usable(i)).collect();
        let train: Vec<usize> = (0..f.n).filter(|&i| usable(i) && folds.trains(i, inner)).collect();
        if test.is_empty() || train.is_empty() {
            continue;
        }
        for (a, pred) in predict(model, f, &train, &test, &options).iter().enumerate() {
            err[a] += mae(f, &test, pred) * test.len() as f64;
        }
        count += test.len();
    }
    if count == 0 {
        return fallback;
    }
    (0..options.len()).min_by(|&a, &b| err[a].total_cmp(&err[b])).map_or(fallback, |b| options[b])
}

/// Held-out predictions of every model: `N × G` each, every cell predicted by the model
/// trained without its fold (and its buffer).
#[derive(Debug, Clone)]
pub struct HeldOut {
    /// Predictions by model, in [`Baseline::ALL`] order.
    pub predictions: Vec<Vec<f64>>,
    /// The hyperparameters chosen in each outer fold for each model.
    pub hypers: Vec<Vec<Hyper>>,
    /// Training cells per outer fold (after the buffer).
    pub train_sizes: Vec<usize>,
}

/// Cross-validate every model on the folds.
pub fn held_out(f: &Features, folds: &Folds) -> HeldOut {
    let g = f.g;
    let mut predictions = vec![vec![0.0; f.n * g]; Baseline::ALL.len()];
    let mut hypers = vec![Vec::new(); Baseline::ALL.len()];
    let mut train_sizes = Vec::new();
    for k in 0..folds.k {
        let test = folds.members(k);
        let train: Vec<usize> = (0..f.n).filter(|&i| folds.trains(i, k)).collect();
        train_sizes.push(train.len());
        if test.is_empty() {
            continue;
        }
        for (m, model) in Baseline::ALL.iter().enumerate() {
            let h = choose(*model, f, folds, Some(k));
            hypers[m].push(h);
            let pred = predict(*model, f, &train, &test, &[h]).swap_remove(0);
            for (r, &i) in test.iter().enumerate() {
                predictions[m][i * g..(i + 1) * g].copy_from_slice(&pred[r * g..(r + 1) * g]);
            }
        }
    }
    HeldOut { predictions, hypers, train_sizes }
}

/// Held-out predictions (`N × G`) of `model` with fixed hyperparameters `h`.
pub fn held_out_with(model: Baseline, f: &Features, folds: &Folds, h: Hyper) -> Vec<f64> {
    let g = f.g;
    let mut out = vec![0.0; f.n * g];
    for k in 0..folds.k {
        let test = folds.members(k);
        let train: Vec<usize> = (0..f.n).filter(|&i| folds.trains(i, k)).collect();
        if test.is_empty() {
            continue;
        }
        let pred = predict(model, f, &train, &test, &[h]).swap_remove(0);
        for (r, &i) in test.iter().enumerate() {
            out[i * g..(i + 1) * g].copy_from_slice(&pred[r * g..(r + 1) * g]);
        }
    }
    out
}

/// Scores of one model on a set of genes.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Mean absolute error over cells and genes.
    pub mae: f64,
    /// Mean over genes of R² = 1 − SSE / SST (SST about the gene's mean over all cells).
    pub mean_r2: f64,
    /// R² of each gene of the set.
    pub r2: Vec<f64>,
}

/// Scores of `pred` (`N × G`) on `genes`.
pub fn score(f: &Features, pred: &[f64], genes: &[usize]) -> Score {
    let g = f.g;
    let mut abs = 0.0;
    let mut r2 = Vec::with_capacity(genes.len());
    for &k in genes {
        let mean = (0..f.n).map(|i| f64::from(f.expression[i * g + k])).sum::<f64>() / f.n.max(1) as f64;
        let (mut sse, mut sst) = (0.0, 0.0);
        for i in 0..f.n {
            let y = f64::from(f.expression[i * g + k]);
            let e = pred[i * g + k] - y;
            abs += e.abs();
            sse += e * e;
            sst += (y - mean).powi(2);
        }
        r2.push(if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN });
    }
    let finite: Vec<f64> = r2.iter().copied().filter(|v| v.is_finite()).collect();
    Score {
        mae: abs / (f.n * genes.len()).max(1) as f64,
        mean_r2: if finite.is_empty() { f64::NAN } else { finite.iter().sum::<f64>() / finite.len() as f64 },
        r2,
    }
}
