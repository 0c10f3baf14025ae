//! An untrained network of the learned model's shape, for `explant eval`: the reference
//! that shows whether a score comes from learning. It is built by the training recipe
//! itself ([`crate::fit_to_teacher`]) with no Adam step taken, so it has the learned
//! model's architecture (`[x, s, c, onehot(type)] → hidden → hidden → G`, tanh, the hidden
//! width read from the learned model), the same kind of input and output scaling, and
//! its weights at their seeded random initialisation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use explant_core::{ModelSignature, ResponseModel};
use explant_scene::LoadedScene;

use crate::{FitOptions, TorchError, TorchModel};

/// The untrained network, written to a private temporary folder that is removed on drop.
pub(crate) struct Untrained {
    /// The folder, created here for this network alone.
    dir: PathBuf,
    /// The `.pt` in it (with its `.json`).
    pt: PathBuf,
    /// The scene's names, as every model is loaded for.
    signature: ModelSignature,
}

impl Untrained {
    /// The untrained network for `scene`, shaped as the learned `model` (hidden width of
    /// its first layer; 64 where the shapes cannot be read), seeded with `fit.seed` and
    /// with `fit`'s hold-outs. Its input scaling comes from 2,000 box samples.
    pub(crate) fn new(
        scene: &LoadedScene,
        model: &Path,
        fit: &FitOptions,
        signature: &ModelSignature,
    ) -> Result<Self, TorchError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let hidden = TorchModel::load_for(model, signature, 0)?
            .layer_shapes()
            .ok()
            .and_then(|l| l.first().map(|l| l.outputs))
            .unwrap_or(64);
        let dir = std::env::temp_dir().join(format!(
            "explant-untrained-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|source| TorchError::Write { path: dir.clone(), source })?;
        let out = Self { pt: dir.join("untrained.pt"), dir, signature: signature.clone() };
        let opts = FitOptions {
            seed: fit.seed,
            train: 2_000,
            val: 500,
            steps: 0,
            hidden,
            contexts: 0,
            members: 1,
            hold_out_type: fit.hold_out_type.clone(),
            hold_out_genes: fit.hold_out_genes.clone(),
            command: "untrained network for explant eval (no training step)".into(),
            ..Default::default()
        };
        crate::fit_to_teacher(scene, &out.pt, &opts, &mut |_, _| {})?;
        Ok(out)
    }

    /// A fresh instance of the network.
    pub(crate) fn load(&self) -> Result<Box<dyn ResponseModel>, TorchError> {
        Ok(Box::new(TorchModel::load_for(&self.pt, &self.signature, 0)?))
    }
}

impl Drop for Untrained {
    fn drop(&mut self) {
        // Only the folder this value created.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
