//! The response model: what maps each cell's state and signals to its rate of change.
//!
//! Each tick the core hands the model the whole population as one batch
//! ([`ResponseInput`], row-major `N × width` slices) and receives `dx/dt` for every
//! cell and gene. Two implementations: the mechanistic [`Teacher`] here, and the
//! TorchScript model in `explant-torch`. Both declare a [`ModelSignature`] that is
//! checked against the scene before the run starts.

use explant_scene::Scene;

use crate::ModelError;

/// The whole population's inputs for one tick.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    /// Number of cells.
    pub cells: usize,
    /// Own expression, `N × G`.
    pub expression: &'a [f32],
    /// Sensed ligands, `N × L`: concentration at the cell × its receptor's expression.
    pub sensed: &'a [f32],
    /// Neighbour mean of each contact gene, `N × G` (zero for non-contact genes).
    pub contact: &'a [f32],
    /// Number of neighbours of each cell type within the contact radius, `N × T`
    /// (may be empty for callers that have no neighbours, e.g. a model's own tests).
    pub neighbour_types: &'a [f32],
    /// Cell type index of each cell, `N`.
    pub cell_type: &'a [u32],
    /// Length of the tick in minutes.
    pub dt: f32,
}

/// The names a model was built for, in the order of its inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSignature {
    /// Genes (columns of expression, contact and output).
    pub genes: Vec<String>,
    /// Ligands (columns of the sensed input).
    pub ligands: Vec<String>,
    /// Cell types (the one-hot cell-type input).
    pub cell_types: Vec<String>,
}

impl ModelSignature {
    /// The signature a scene requires.
    pub fn of_scene(scene: &Scene) -> Self {
        Self { genes: scene.genes.clone(), ligands: scene.ligand_names(), cell_types: scene.cell_type_names() }
    }

    /// Refuse a model whose names differ from the scene's, naming the first difference.
    pub fn check_against(&self, scene: &ModelSignature, model: &str) -> Result<(), ModelError> {
        for (what, have, want) in [
            ("gene", &self.genes, &scene.genes),
            ("ligand", &self.ligands, &scene.ligands),
            ("cell type", &self.cell_types, &scene.cell_types),
        ] {
            if have == want {
                continue;
            }
            let detail = if let Some(missing) = want.iter().find(|w| !have.contains(w)) {
                format!("the scene's {what} `{missing}` is missing from the model (model has {have:?})")
            } else if let Some(extra) = have.iter().find(|h| !want.contains(h)) {
                format!("the model's {what} `{extra}` is not in the scene (scene has {want:?})")
            } else {
                let i = have.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                format!(
                    "{what}s are in a different order: position {i} is `{}` in the model but `{}` in the scene",
                    have[i], want[i]
                )
            };
            return Err(ModelError::Mismatch { model: model.to_string(), what: detail });
        }
        Ok(())
    }
}

/// A per-cell response model run on the whole population at once.
pub trait ResponseModel: Send {
    /// Name for messages and the run manifest (e.g. `teacher` or a file path).
    fn name(&self) -> String;

    /// The names the model was built for.
    fn signature(&self) -> &ModelSignature;

    /// Write `dx/dt` (`N × G`, row-major) for every cell into `rates`.
    fn rates(&mut self, input: &ResponseInput<'_>, rates: &mut [f32]) -> Result<(), ModelError>;

    /// The derivatives of `dx/dt` with respect to the model's inputs, cell by cell, for
    /// gradient attributions (`explant explain --method gradients`). `out` is
    /// `N × G × W` with `W = `[`jacobian_width`]`(G, L, T)`: row `(i, g)` holds
    /// `∂ rate_g / ∂ input` of cell `i` for the inputs in the order own expression (`G`),
    /// sensed ligands (`L`), neighbour means of contact genes (`G`), neighbour counts by
    /// type (`T`; zero for a model that reads none). Returns `Ok(false)`, leaving `out`
    /// alone, when the model cannot differentiate itself (the default).
    ///
    /// # Errors
    ///
    /// When the model fails on the inputs.
    fn jacobian(&mut self, input: &ResponseInput<'_>, out: &mut [f32]) -> Result<bool, ModelError> {
        let _ = (input, out);
        Ok(false)
    }

    /// The optional outputs this model gives beside `dx/dt` (none by default).
    fn extras(&self) -> Extras {
        Extras::default()
    }

    /// `dx/dt` into `rates` and, where [`extras`](Self::extras) says so, per-cell
    /// secretion (`N × L`, amount/min released into the cell's voxel) into `secretion`
    /// and fate scores (`N × 2`: an apoptosis hazard per minute, and a cycle progression
    /// factor in `[0, 1]`) into `fate`. The slices of outputs the model does not give are
    /// empty. The default calls [`rates`](Self::rates).
    fn respond(
        &mut self,
        input: &ResponseInput<'_>,
        rates: &mut [f32],
        secretion: &mut [f32],
        fate: &mut [f32],
    ) -> Result<(), ModelError> {
        let _ = (secretion, fate);
        self.rates(input, rates)
    }
}

/// The number of inputs of one cell's rate, `2G + L + T`, in the order of
/// [`ResponseModel::jacobian`].
pub fn jacobian_width(genes: usize, ligands: usize, cell_types: usize) -> usize {
    2 * genes + ligands + cell_types
}

/// Which optional outputs a response model gives (see [`ResponseModel::respond`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    /// Secretion per cell and ligand, amount/min (`N × L`).
    pub secretion: bool,
    /// Fate scores per cell: apoptosis hazard per minute, cycle progression factor (`N × 2`).
    pub fate: bool,
}

/// The mechanistic reference model (the teacher):
/// `dx/dt = α ⊙ σ(W x + U s + V c + b + b_type) − γ ⊙ x`,
/// with sparse named `W` (gene → gene), `U` (sensed ligand → gene), `V`
/// (neighbours' contact gene → gene) and `N` (count of neighbours of a cell type → gene)
/// from the scene's `[teacher]` table.
#[derive(Debug, Clone)]
pub struct Teacher {
    signature: ModelSignature,
    genes: usize,
    ligands: usize,
    /// α per gene.
    pub max_rate: Vec<f32>,
    /// γ.
    pub degradation: f32,
    /// b + b_type, `types × G`.
    pub bias: Vec<f32>,
    /// (target, source, weight) from own expression.
    pub w: Vec<(usize, usize, f32)>,
    /// (target, ligand, weight) from sensed ligands.
    pub u: Vec<(usize, usize, f32)>,
    /// (target, contact gene, weight) from neighbours.
    pub v: Vec<(usize, usize, f32)>,
    /// (target, cell type, weight) from neighbour counts by type.
    pub n: Vec<(usize, usize, f32)>,
    types: usize,
}

impl Teacher {
    /// Build from a validated scene.
    pub fn from_scene(scene: &Scene) -> Self {
        let g = scene.genes.len();
        let t = &scene.teacher;
        let max_rate = scene.genes.iter().map(|name| *t.max_rate.get(name).unwrap_or(&t.default_max_rate)).collect();
        let mut bias = Vec::with_capacity(scene.cell_types.len() * g);
        for ct in &scene.cell_types {
            let b = scene.gene_vector(&ct.bias);
            bias.extend(b.iter().map(|x| x + t.bias));
        }
        let (mut w, mut u, mut v, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in &t.edges {
            // Validation guarantees the names resolve.
            let Some(target) = scene.gene_index(&e.target) else { continue };
            match e.source.split_once(':') {
                Some(("gene", s)) => w.extend(scene.gene_index(s).map(|s| (target, s, e.weight))),
                Some(("contact", s)) => v.extend(scene.gene_index(s).map(|s| (target, s, e.weight))),
                Some(("neighbours", s)) => n.extend(scene.cell_type_index(s).map(|s| (target, s, e.weight))),
                Some(("ligand", s)) => {
                    u.extend(scene.ligands.iter().position(|l| l.name == s).map(|s| (target, s, e.weight)))
                }
                _ => {}
            }
        }
        Self {
            signature: ModelSignature::of_scene(scene),
            genes: g,
            ligands: scene.ligands.len(),
            max_rate,
            degradation: t.degradation,
            bias,
            w,
            u,
            v,
            n,
            types: scene.cell_types.len(),
        }
    }

    /// `dx/dt` of one cell; `counts` holds its neighbours by cell type (empty: none).
    pub fn rate_one(&self, x: &[f32], s: &[f32], c: &[f32], counts: &[f32], cell_type: usize, out: &mut [f32]) {
        let g = self.genes;
        self.argument(x, s, c, counts, cell_type, out);
        for i in 0..g {
            let sig = 1.0 / (1.0 + (-out[i]).exp());
            out[i] = self.max_rate[i] * sig - self.degradation * x[i];
        }
    }
}

impl Teacher {
    /// The sigmoid's argument `z = W x + U s + V c + N counts + b + b_type` of one cell
    /// into `z` (`counts` empty: no neighbour term).
    fn argument(&self, x: &[f32], s: &[f32], c: &[f32], counts: &[f32], cell_type: usize, z: &mut [f32]) {
        let g = self.genes;
        z.copy_from_slice(&self.bias[cell_type * g..(cell_type + 1) * g]);
        for &(t, j, wt) in &self.w {
            z[t] += wt * x[j];
        }
        for &(t, l, wt) in &self.u {
            z[t] += wt * s[l];
        }
        for &(t, j, wt) in &self.v {
            z[t] += wt * c[j];
        }
        if !counts.is_empty() {
            for &(t, k, wt) in &self.n {
                z[t] += wt * counts[k];
            }
        }
    }

    /// The row-major `G × W` Jacobian of [`Teacher::rate_one`] (see
    /// [`ResponseModel::jacobian`]): with `z` the sigmoid's argument and `σ' = σ(1 − σ)`,
    /// `∂f_g/∂x_j = α_g σ'(z_g) W_gj − γ δ_gj`, and `α_g σ'(z_g)` times the weight of the
    /// edge from every other input. Counts that are empty (no neighbours given) have
    /// zero derivatives, as they have no effect.
    pub fn jacobian_one(&self, x: &[f32], s: &[f32], c: &[f32], counts: &[f32], cell_type: usize, out: &mut [f32]) {
        let g = self.genes;
        let w = jacobian_width(g, self.ligands, self.types);
        let mut z = vec![0.0f32; g];
        self.argument(x, s, c, counts, cell_type, &mut z);
        // gain_g = α_g σ'(z_g).
        let gain: Vec<f32> = z
            .iter()
            .enumerate()
            .map(|(i, &zi)| {
                let sig = 1.0 / (1.0 + (-zi).exp());
                self.max_rate[i] * sig * (1.0 - sig)
            })
            .collect();
        out.fill(0.0);
        for i in 0..g {
            out[i * w + i] = -self.degradation;
        }
        for &(t, j, wt) in &self.w {
            out[t * w + j] += gain[t] * wt;
        }
        for &(t, l, wt) in &self.u {
            out[t * w + g + l] += gain[t] * wt;
        }
        for &(t, j, wt) in &self.v {
            out[t * w + g + self.ligands + j] += gain[t] * wt;
        }
        if !counts.is_empty() {
            for &(t, k, wt) in &self.n {
                out[t * w + 2 * g + self.ligands + k] += gain[t] * wt;
            }
        }
    }
}

impl ResponseModel for Teacher {
    fn name(&self) -> String {
        "teacher (mechanistic GRN ODE)".into()
    }

    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn rates(&mut self, input: &ResponseInput<'_>, rates: &mut [f32]) -> Result<(), ModelError> {
        self.per_cell(input, rates, self.genes, Teacher::rate_one);
        Ok(())
    }

    fn jacobian(&mut self, input: &ResponseInput<'_>, out: &mut [f32]) -> Result<bool, ModelError> {
        let width = self.genes * jacobian_width(self.genes, self.ligands, self.types);
        self.per_cell(input, out, width, Teacher::jacobian_one);
        Ok(true)
    }
}

/// One cell's computation of [`Teacher`]: expression, sensed, contact, counts (empty:
/// none), cell type, output row.
type CellFn = fn(&Teacher, &[f32], &[f32], &[f32], &[f32], usize, &mut [f32]);

impl Teacher {
    /// `f` on every cell of `input` in parallel, cell `i` writing `out[i·width..(i+1)·width]`.
    fn per_cell(&self, input: &ResponseInput<'_>, out: &mut [f32], width: usize, f: CellFn) {
        use rayon::prelude::*;
        let (g, l, nt) = (self.genes, self.ligands, self.types);
        let counted = input.neighbour_types.len() == input.cells * nt;
        out[..input.cells * width].par_chunks_mut(width).enumerate().for_each(|(i, row)| {
            f(
                self,
                &input.expression[i * g..(i + 1) * g],
                &input.sensed[i * l..(i + 1) * l],
                &input.contact[i * g..(i + 1) * g],
                if counted { &input.neighbour_types[i * nt..(i + 1) * nt] } else { &[] },
                input.cell_type[i] as usize,
                row,
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(g: &[&str]) -> ModelSignature {
        ModelSignature {
            genes: g.iter().map(|s| s.to_string()).collect(),
            ligands: vec!["WNT3A".into()],
            cell_types: vec!["a".into()],
        }
    }

    #[test]
    fn signature_mismatch_names_the_problem() {
        let scene = sig(&["A", "B", "C"]);
        let missing = sig(&["A", "B"]).check_against(&scene, "m.pt").unwrap_err().to_string();
        assert!(missing.contains("gene `C` is missing"), "{missing}");
        let order = sig(&["A", "C", "B"]).check_against(&scene, "m.pt").unwrap_err().to_string();
        assert!(order.contains("position 1 is `C` in the model but `B`"), "{order}");
        let extra = sig(&["A", "B", "C", "D"]).check_against(&scene, "m.pt").unwrap_err().to_string();
        assert!(extra.contains("`D` is not in the scene"), "{extra}");
        sig(&["A", "B", "C"]).check_against(&scene, "m.pt").unwrap();
    }

    /// A teacher with every kind of edge: 3 genes, 2 ligands, 2 cell types.
    fn wired() -> Teacher {
        Teacher {
            signature: sig(&["A", "B", "C"]),
            genes: 3,
            ligands: 2,
            max_rate: vec![1.0, 0.5, 2.0],
            degradation: 0.1,
            bias: vec![0.1, -0.2, 0.3, 0.0, 0.5, -1.0],
            w: vec![(1, 0, 1.5), (2, 1, -2.0), (0, 0, 0.7)],
            u: vec![(0, 1, 3.0), (2, 0, 1.0)],
            v: vec![(1, 2, -1.2)],
            n: vec![(2, 1, 0.25), (0, 0, -0.5)],
            types: 2,
        }
    }

    #[test]
    fn the_teachers_jacobian_is_its_rates_derivative() {
        // Central differences in f64 of the f32 rate, step 1e-2 (the rate is smooth; its
        // third derivative is O(1), so the difference errs by ~1e-5, and f32 rounding by
        // ~1e-7/1e-2): every one of the 3 × 10 entries within 2e-4. A Jacobian that missed
        // an edge kind, put it in the wrong column or forgot σ' or the degradation fails.
        let t = wired();
        let (x, s, c, k) = ([0.4f32, 1.1, 0.2], [0.3f32, 0.8], [0.0f32, 0.0, 0.6], [2.0f32, 3.0]);
        let w = jacobian_width(3, 2, 2);
        assert_eq!(w, 10);
        let mut jac = vec![0.0f32; 3 * w];
        t.jacobian_one(&x, &s, &c, &k, 1, &mut jac);
        let mut inputs: Vec<f32> = x.iter().chain(&s).chain(&c).chain(&k).copied().collect();
        let rate = |v: &[f32]| {
            let mut out = [0.0f32; 3];
            t.rate_one(&v[0..3], &v[3..5], &v[5..8], &v[8..10], 1, &mut out);
            out
        };
        let h = 1e-2f32;
        let mut nonzero = 0;
        for col in 0..w {
            let keep = inputs[col];
            inputs[col] = keep + h;
            let up = rate(&inputs);
            inputs[col] = keep - h;
            let down = rate(&inputs);
            inputs[col] = keep;
            for g in 0..3 {
                let numeric = (f64::from(up[g]) - f64::from(down[g])) / (2.0 * f64::from(h));
                let analytic = f64::from(jac[g * w + col]);
                assert!((numeric - analytic).abs() < 2e-4, "∂f_{g}/∂input_{col}: {analytic} vs {numeric}");
                nonzero += usize::from(analytic.abs() > 1e-3);
            }
        }
        // Every edge and the three degradations show (A's self-edge and A's own
        // degradation share an entry).
        assert_eq!(nonzero, 3 + 2 + 1 + 2 + 2);
        // Through the trait, on a batch of the same cell twice, with its counts.
        let mut t = wired();
        let two = |a: &[f32]| [a, a].concat();
        let (xx, ss, cc, kk) = (two(&x), two(&s), two(&c), two(&k));
        let input = ResponseInput {
            cells: 2,
            expression: &xx,
            sensed: &ss,
            contact: &cc,
            neighbour_types: &kk,
            cell_type: &[1, 1],
            dt: 1.0,
        };
        let mut batch = vec![f32::NAN; 2 * 3 * w];
        assert!(t.jacobian(&input, &mut batch).unwrap());
        assert_eq!(&batch[..3 * w], &jac[..]);
        assert_eq!(&batch[3 * w..], &jac[..]);
    }
}
