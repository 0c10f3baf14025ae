//! One-off changes to a scene from the command line (`explant run --seed N --set
//! PATH=VALUE`), applied to the scene text, validated as a scene, and recorded in the
//! run's `scene.toml`, so rerunning that copy reproduces the run.

use explant_scene::LoadedScene;

use crate::RunError;

/// Changes to apply to a scene before it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// A new seed (replicates without editing the file).
    pub seed: Option<u64>,
    /// `PATH=VALUE` pairs, applied in order; VALUE is read as TOML (`0.02`, `true`,
    /// `[1.0, 2.0]`, `"text"`), and as a plain string when it is not TOML (`DLL1`).
    pub set: Vec<String>,
}

impl Overrides {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.seed.is_none() && self.set.is_empty()
    }

    /// Apply to `scene`: its text is rewritten (with a comment naming the changes; the
    /// original's comments are not kept) and validated again.
    ///
    /// # Errors
    ///
    /// When a `--set` is not `PATH=VALUE`, its path does not resolve (the message names
    /// the step and what is there), or the changed scene is invalid.
    pub fn apply(&self, scene: &mut LoadedScene) -> Result<(), RunError> {
        if self.is_empty() {
            return Ok(());
        }
        let bad = |option: &str, message: String| RunError::Option { option: option.into(), message };
        let mut doc: toml::Table = toml::from_str(&scene.text).map_err(|e| bad("--set", e.to_string()))?;
        let mut said = Vec::new();
        if let Some(seed) = self.seed {
            let seed = i64::try_from(seed).map_err(|_| bad("--seed", format!("`{seed}` is larger than 2^63 - 1")))?;
            doc.insert("seed".into(), toml::Value::Integer(seed));
            said.push(format!("--seed {seed}"));
        }
        for item in &self.set {
            let Some((path, value)) = item.split_once('=') else {
                return Err(bad("--set", format!("`{item}` must be PATH=VALUE, e.g. `ligands.WNT3A.decay=0.02`")));
            };
            let (path, value) = (path.trim(), value.trim());
            let value = parse_value(value);
            explant_scene::set_path(&mut doc, path, value).map_err(|m| bad("--set", m))?;
            said.push(format!("--set {item}"));
        }
        let body = toml::to_string(&doc).map_err(|e| bad("--set", e.to_string()))?;
        let text = format!(
            "# `{}` as run with {} (the original's comments are not kept)\n{body}",
            scene.path.display(),
            said.join(" ")
        );
        let changed = LoadedScene::from_str(&text, &scene.path)
            .map_err(|e| bad(if self.set.is_empty() { "--seed" } else { "--set" }, crate::error_chain(&e)))?;
        *scene = changed;
        Ok(())
    }
}

/// A value as TOML when it parses as one, else the text as a string.
fn parse_value(text: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {text}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(text.to_owned())),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENE: &str = include_str!("../../../scenes/default.toml");

    fn scene() -> LoadedScene {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/default.toml");
        LoadedScene::from_str(SCENE, &path).unwrap()
    }

    #[test]
    fn a_seed_and_fields_are_set_validated_and_recorded_in_the_text() {
        let mut s = scene();
        let o = Overrides {
            seed: Some(42),
            set: vec![
                "ligands.WNT3A.decay=0.04".into(),
                "tissue.cells = 900".into(),
                "output.colour_by_gene=HES1".into(),
            ],
        };
        o.apply(&mut s).unwrap();
        assert_eq!(s.scene.seed, 42);
        assert_eq!(s.scene.ligands[0].decay, 0.04);
        assert_eq!(s.scene.tissue.cells, Some(900));
        assert_eq!(s.scene.output.colour_by_gene.as_deref(), Some("HES1"));
        assert!(s.text.contains("--seed 42") && s.text.contains("--set ligands.WNT3A.decay=0.04"), "{}", s.text);
        // The recorded text gives the same scene again.
        let again = LoadedScene::from_str(&s.text, &s.path).unwrap();
        assert_eq!(again.scene.ligands[0].decay, 0.04);
        assert_eq!(again.scene.seed, 42);
    }

    #[test]
    fn bad_overrides_are_refused_naming_the_option_and_what_is_wrong() {
        let e = Overrides { set: vec!["ligands.WNT3A.decay".into()], ..Default::default() }.apply(&mut scene());
        assert!(e.unwrap_err().to_string().contains("must be PATH=VALUE"));
        let e = Overrides { set: vec!["ligands.WNT3.decay=0.1".into()], ..Default::default() }.apply(&mut scene());
        let e = e.unwrap_err().to_string();
        assert!(e.contains("--set") && e.contains("WNT3") && e.contains("did you mean `WNT3A`?"), "{e}");
        let e = Overrides { set: vec!["ligands.WNT3A.decay=-1.0".into()], ..Default::default() }.apply(&mut scene());
        let e = e.unwrap_err().to_string();
        assert!(e.contains("--set") && e.contains("ligands[0].decay"), "{e}");
        let e = Overrides { set: vec!["time.dt=nan".into()], ..Default::default() }.apply(&mut scene());
        assert!(e.unwrap_err().to_string().contains("not a finite number"));
    }
}
