//! TorchScript export of a niche relaxation model learned from a spatial section by
//! `explant learn`:
//!
//! `dx/dt = (b + W f − x) / τ`, with `f = [onehot(type), neighbour fractions by type,
//! sensed ligands, neighbour means of the contact genes]`
//!
//! so each cell's expression relaxes, with time scale `τ`, toward a target set by its
//! type, its neighbours' types, the ligands it senses and its neighbours' expression.
//! The weights come fitted (ridge regression on the section, in `explant-run`); this
//! module only writes them as a traced module with its metadata, in the same contract
//! as every other TorchScript model (four inputs and `neighbour_types`).

use std::path::Path;

use tch::{CModule, Kind, Tensor};

use crate::{CheckCase, ModelMeta, TorchError, meta::META_FORMAT, meta_path};

/// One cell's inputs, used as the model's check case.
#[derive(Debug, Clone, PartialEq)]
pub struct NicheCheckInput {
    /// Expression, `G`.
    pub expression: Vec<f32>,
    /// Sensed ligands, `L`.
    pub sensed: Vec<f32>,
    /// Neighbour means of the contact genes, `G`.
    pub contact: Vec<f32>,
    /// Cell type index.
    pub cell_type: u32,
    /// Neighbours by cell type, `T`.
    pub neighbour_types: Vec<f32>,
}

/// A fitted niche model to write.
#[derive(Debug, Clone)]
pub struct NicheExport<'a> {
    /// `F × G` row-major, `F = 2T + L + G` in the order of the features above, for the
    /// first `G = modelled` genes.
    pub weights: &'a [f32],
    /// Genes the model predicts: the first `modelled` of `genes`. When `genes` has twice
    /// as many, the second half holds each cell's intrinsic offset of each gene, added to
    /// its target and itself constant (rate 0).
    pub modelled: usize,
    /// Intercept of each gene's target, `G`.
    pub bias: &'a [f32],
    /// Relaxation time, minutes.
    pub tau: f32,
    /// Genes, ligands and cell types, in input order.
    pub genes: &'a [String],
    /// Ligand channels.
    pub ligands: &'a [String],
    /// Cell types.
    pub cell_types: &'a [String],
    /// Provenance for the metadata's `learned` block.
    pub learned: serde_json::Value,
    /// The check case's inputs (its output is computed here).
    pub check: NicheCheckInput,
}

/// The traced forward pass of [`NicheExport`].
struct Niche {
    w: Tensor,
    b: Tensor,
    tau: f64,
    modelled: i64,
    intrinsic: bool,
}

impl Niche {
    fn forward(&self, x: &Tensor, s: &Tensor, c: &Tensor, t: &Tensor, k: &Tensor) -> Tensor {
        let total = k.sum_dim_intlist([1i64].as_slice(), true, Kind::Float).clamp_min(1.0);
        let fractions = k / total;
        let g = self.modelled;
        let own = x.narrow(1, 0, g);
        let f = Tensor::cat(&[t, &fractions, s, &c.narrow(1, 0, g)], 1);
        let mut target = f.matmul(&self.w) + &self.b;
        if self.intrinsic {
            let offsets = x.narrow(1, g, g);
            target += &offsets;
            return Tensor::cat(&[(target - own) / self.tau, offsets.zeros_like()], 1);
        }
        (target - own) / self.tau
    }
}

/// One cell's values as a `[1, width]` row (`width` may be 0: a scene without ligands).
fn row(v: &[f32], width: usize) -> Tensor {
    Tensor::from_slice(v).reshape([1, width as i64])
}

/// Write the model as TorchScript to `path` and its metadata beside it (`.json`).
///
/// # Errors
///
/// When the shapes disagree, tracing fails, or a file cannot be written.
pub fn export_niche(e: &NicheExport<'_>, path: &Path) -> Result<(), TorchError> {
    let (gt, l, t) = (e.genes.len(), e.ligands.len(), e.cell_types.len());
    let g = e.modelled;
    let f = 2 * t + l + g;
    let intrinsic = gt == 2 * g;
    let c = &e.check;
    let check_fits =
        c.expression.len() == gt && c.sensed.len() == l && c.contact.len() == gt && c.neighbour_types.len() == t;
    if !check_fits
        || e.weights.len() != f * g
        || e.bias.len() != g
        || e.tau.is_nan()
        || e.tau <= 0.0
        || !(intrinsic || gt == g)
    {
        return Err(TorchError::BadMeta {
            path: meta_path(path),
            message: format!(
                "niche model of {g} genes ({gt} state columns), {l} ligands and {t} cell types needs {f} × {g} weights, {g} \
             intercepts, τ > 0 and {g} or {} state columns; got {} weights, {} intercepts and τ = {}",
                2 * g,
                e.weights.len(),
                e.bias.len(),
                e.tau
            ),
        });
    }
    let niche = Niche {
        w: Tensor::from_slice(e.weights).reshape([f as i64, g as i64]),
        b: Tensor::from_slice(e.bias),
        tau: f64::from(e.tau),
        modelled: g as i64,
        intrinsic,
    };
    let mut onehot = vec![0.0f32; t];
    if let Some(v) = onehot.get_mut(c.cell_type as usize) {
        *v = 1.0;
    }
    let example = vec![
        row(&c.expression, gt),
        row(&c.sensed, l),
        row(&c.contact, gt),
        row(&onehot, t),
        row(&c.neighbour_types, t),
    ];
    let output: Vec<f32> = tch::no_grad(|| {
        let y = niche.forward(&example[0], &example[1], &example[2], &example[3], &example[4]);
        Vec::<f32>::try_from(y.reshape([-1]).to_kind(Kind::Float).contiguous())
    })?;
    let module = tch::no_grad(|| {
        CModule::create_by_tracing("ExplantNiche", "forward", &example, &mut |inp: &[Tensor]| {
            vec![niche.forward(&inp[0], &inp[1], &inp[2], &inp[3], &inp[4])]
        })
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TorchError::Write { path: dir.to_path_buf(), source })?;
    }
    module.save(path)?;
    let meta = ModelMeta {
        format: META_FORMAT.into(),
        version: 1,
        genes: e.genes.to_vec(),
        ligands: e.ligands.to_vec(),
        cell_types: e.cell_types.to_vec(),
        contract: "forward(expression [N,G] f32, sensed [N,L] f32 = ligand concentration × receptor expression, \
                   contact [N,G] f32 = neighbour mean of contact genes, cell_type_onehot [N,T] f32, \
                   neighbour_types [N,T] f32 = neighbours of each type within the contact radius) -> dx/dt [N,G] f32 \
                   per minute = (b + W·[onehot, neighbour fractions, sensed, contact] − expression) / τ"
            .into(),
        neighbour_counts: true,
        secretion: false,
        fate: false,
        training: None,
        learned: Some(e.learned.clone()),
        check: CheckCase {
            expression: c.expression.clone(),
            sensed: c.sensed.clone(),
            contact: c.contact.clone(),
            cell_type: c.cell_type,
            neighbour_types: Some(c.neighbour_types.clone()),
            output,
            teacher_output: None,
            secretion: None,
            fate: None,
        },
    };
    meta.write(&meta_path(path))
}
