//! Which response model a run uses, and how the run's copy of the scene records it.

use std::path::PathBuf;

use explant_scene::{LoadedScene, ModelConfig, ModelSpec};

use crate::RunError;

/// The response model of a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelChoice {
    /// The scene's own `[model]`.
    #[default]
    Scene,
    /// The scene's mechanistic teacher (`--teacher`).
    Teacher,
    /// This TorchScript model (`--model M.pt`, with its `.json` beside it).
    Torchscript(PathBuf),
}

impl ModelChoice {
    /// Rewrite `scene` (its parsed form and its text) to use this model, so that the run's
    /// `scene.toml` and the AnnData's `uns` record what actually ran and rerunning that copy
    /// gives the same result. The scene's own model leaves it untouched, and so does
    /// `Teacher` on a scene whose model already is the teacher.
    ///
    /// # Errors
    ///
    /// When the model's path cannot be made absolute or the scene text cannot be rewritten.
    pub fn apply(&self, scene: &mut LoadedScene) -> Result<(), RunError> {
        let (config, flag) = match self {
            ModelChoice::Scene => return Ok(()),
            ModelChoice::Teacher if scene.scene.model.kind == ModelSpec::Teacher => return Ok(()),
            ModelChoice::Teacher => (ModelConfig { kind: ModelSpec::Teacher, path: None }, "--teacher".to_owned()),
            ModelChoice::Torchscript(model) => {
                let path = std::path::absolute(model).map_err(|e| RunError::Option {
                    option: "--model".into(),
                    message: format!("`{}`: {e}", model.display()),
                })?;
                let flag = format!("--model {}", path.display());
                (ModelConfig { kind: ModelSpec::Torchscript, path: Some(path) }, flag)
            }
        };
        let rewrite = |e: &dyn std::fmt::Display| RunError::Option {
            option: flag.split(' ').next().unwrap_or_default().to_owned(),
            message: format!("cannot record the model in the run's copy of the scene: {e}"),
        };
        let mut doc: toml::Table = toml::from_str(&scene.text).map_err(|e| rewrite(&e))?;
        let mut table = toml::Table::new();
        let kind = if config.kind == ModelSpec::Teacher { "teacher" } else { "torchscript" };
        table.insert("kind".into(), kind.into());
        if let Some(p) = &config.path {
            table.insert("path".into(), p.display().to_string().into());
        }
        doc.insert("model".into(), toml::Value::Table(table));
        scene.text = format!(
            "# `{}` as run with `{flag}` (the original's comments are not kept)\n{}",
            scene.path.display(),
            toml::to_string(&doc).map_err(|e| rewrite(&e))?
        );
        scene.scene.model = config;
        Ok(())
    }
}
