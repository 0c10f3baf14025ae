//! Setting a scene field by path, and writing the scene of one point.

use std::path::Path;

pub use explant_scene::set_path;

use crate::{Point, SweepError, SweepSpec};

/// Make a relative path in the scene absolute against the base scene's folder, so the
/// point's scene can live anywhere.
fn absolutise(v: Option<&mut toml::Value>, base: &Path) {
    if let Some(toml::Value::String(s)) = v
        && Path::new(s.as_str()).is_relative()
    {
        *s = base.join(&*s).display().to_string();
    }
}

/// The scene text of one point: the base scene with the point's seed and parameter
/// values, relative file paths made absolute; validated as a scene. `base_path` is the
/// base scene file (for relative paths and messages).
pub fn scene_text(spec: &SweepSpec, base_text: &str, base_path: &Path, point: &Point) -> Result<String, SweepError> {
    point_scene(spec, base_text, base_path, point).map(|(text, _)| text)
}

/// [`scene_text`] with the scene it validated.
pub(crate) fn point_scene(
    spec: &SweepSpec,
    base_text: &str,
    base_path: &Path,
    point: &Point,
) -> Result<(String, explant_scene::LoadedScene), SweepError> {
    let fail = |message: String| SweepError::Invalid {
        path: base_path.to_path_buf(),
        field: format!("point {}", point.id()),
        message,
    };
    let mut doc: toml::Table = toml::from_str(base_text).map_err(|e| fail(e.to_string()))?;
    doc.insert("seed".into(), toml::Value::Integer(point.seed as i64));
    for (p, v) in spec.parameters.iter().zip(&point.values) {
        set_path(&mut doc, &p.path, v.clone()).map_err(|m| SweepError::Invalid {
            path: base_path.to_path_buf(),
            field: format!("parameter `{}`", p.path),
            message: m,
        })?;
    }
    let base = std::path::absolute(base_path.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|_| base_path.parent().unwrap_or(Path::new(".")).to_path_buf());
    absolutise(doc.get_mut("model").and_then(|m| m.get_mut("path")), &base);
    absolutise(doc.get_mut("tissue").and_then(|m| m.get_mut("path")), &base);
    if let Some(toml::Value::Array(ligands)) = doc.get_mut("ligands") {
        for l in ligands {
            absolutise(l.get_mut("initial").and_then(|i| i.get_mut("path")), &base);
        }
    }
    let text = toml::to_string(&doc).map_err(|e| fail(e.to_string()))?;
    let scene = explant_scene::LoadedScene::from_str(&text, &base.join(format!("{}.toml", point.id())))
        .map_err(|source| SweepError::Scene { point: point.id(), error: source })?;
    Ok((text, scene))
}
