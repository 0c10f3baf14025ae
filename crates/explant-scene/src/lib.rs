//! The scene file: everything one explant run needs, in TOML (`version = 1` or `2`).
//!
//! A scene names the genes of the expression state, the ligands that diffuse on the
//! grid (with the gene that secretes each and the receptor gene that gates sensing),
//! the contact signals, the cell types with their baseline expression, the tissue to
//! grow, the time steps, the response model and the perturbations. Unknown fields are
//! rejected; semantic errors (an unknown gene, a negative rate) name the file and the
//! field. See `scenes/default.toml` for an annotated example.

mod error;
pub mod memory;
mod schema;
mod set_path;
mod validate;

pub use error::{SceneError, SceneWarning};
pub use memory::CellLimit;
pub use schema::*;
pub use set_path::set_path;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use validate::Validator;

/// The newest scene format version this build reads; it reads every version from 1.
///
/// Versions differ only in defaults, so that a file keeps its meaning: in version 2 an
/// omitted `grid.scheme` is `adi` (second order in time, see [`explant_field::Scheme`]),
/// in version 1 it is `explicit`.
pub const SCENE_VERSION: u32 = 2;

/// The diffusion scheme of a scene whose `grid` table does not name one.
pub fn default_scheme(version: u32) -> explant_field::Scheme {
    if version >= 2 { explant_field::Scheme::Adi } else { explant_field::Scheme::Explicit }
}

/// Whether the scene text names `grid.scheme` (unparsable text: as if it did, the parse
/// error is reported elsewhere).
fn names_scheme(text: &str) -> bool {
    match toml::from_str::<toml::Table>(text) {
        Ok(doc) => doc.get("grid").and_then(|g| g.get("scheme")).is_some(),
        Err(_) => true,
    }
}

/// A parsed and validated scene, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedScene {
    /// The scene.
    pub scene: Scene,
    /// The file it was read from (or `<string>`).
    pub path: PathBuf,
    /// The exact text, kept for the run's outputs.
    pub text: String,
}

/// Refuse `nan` and `inf` anywhere in a scene (TOML allows them): a non-finite weight,
/// rate or coordinate would reach the simulation and, clamped or compared, turn into an
/// ordinary number. The field is named as sweep paths name it (`teacher.edges[1].weight`).
fn refuse_non_finite(text: &str, path: &Path) -> Result<(), SceneError> {
    fn find(v: &toml::Value, at: String) -> Option<(String, f64)> {
        match v {
            toml::Value::Float(f) if !f.is_finite() => Some((at, *f)),
            toml::Value::Table(t) => {
                t.iter().find_map(|(k, v)| find(v, if at.is_empty() { k.clone() } else { format!("{at}.{k}") }))
            }
            toml::Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| find(v, format!("{at}[{i}]"))),
            _ => None,
        }
    }
    let Ok(doc) = toml::from_str::<toml::Table>(text) else { return Ok(()) };
    match find(&toml::Value::Table(doc), String::new()) {
        Some((field, value)) => Err(SceneError::Invalid {
            path: path.to_path_buf(),
            field,
            message: format!("`{value}` is not a finite number"),
        }),
        None => Ok(()),
    }
}

impl LoadedScene {
    /// Read, parse and validate a scene file.
    pub fn from_file(path: &Path) -> Result<Self, SceneError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| SceneError::Read { path: path.to_path_buf(), source })?;
        Self::from_str(&text, path)
    }

    /// Parse and validate scene text; `path` is used in messages and to resolve
    /// relative paths inside the scene.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, SceneError> {
        let mut scene: Scene =
            toml::from_str(text).map_err(|e| SceneError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        refuse_non_finite(text, path)?;
        if !names_scheme(text) {
            scene.grid.scheme = default_scheme(scene.version);
        }
        scene.validate(path)?;
        let mut loaded = Self { scene, path: path.to_path_buf(), text: text.to_string() };
        // Paths inside the scene are relative to the scene file.
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for l in &mut loaded.scene.ligands {
            if let Initial::File { path } = &mut l.initial
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        }
        Ok(loaded)
    }

    /// What the scene allows but probably does not mean (a perturbation whose targets are
    /// empty at the start, cells may still move in later): printed by `explant run` and
    /// `explant check`, never fatal.
    pub fn warnings(&self) -> Vec<SceneWarning> {
        Validator::new(&self.scene, &self.path).warnings()
    }

    /// Resolve a path written in the scene relative to the scene file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.path.parent().unwrap_or(Path::new(".")).join(p) }
    }
}

impl Scene {
    /// Index of a gene by name.
    pub fn gene_index(&self, name: &str) -> Option<usize> {
        self.genes.iter().position(|g| g == name)
    }

    /// Index of a cell type by name.
    pub fn cell_type_index(&self, name: &str) -> Option<usize> {
        self.cell_types.iter().position(|t| t.name == name)
    }

    /// Names of the ligands in order.
    pub fn ligand_names(&self) -> Vec<String> {
        self.ligands.iter().map(|l| l.name.clone()).collect()
    }

    /// Names of the cell types in order.
    pub fn cell_type_names(&self) -> Vec<String> {
        self.cell_types.iter().map(|t| t.name.clone()).collect()
    }

    /// 2 or 3, from the length of `grid.size`.
    pub fn dims(&self) -> usize {
        self.grid.size.len()
    }

    /// Number of ticks in the run.
    pub fn ticks(&self) -> u64 {
        (f64::from(self.time.duration) / f64::from(self.time.dt)).round() as u64
    }

    /// Ticks per mechanics step and per cell-state step (1 unless the scene sets
    /// `time.mechanics_dt` / `time.state_dt`).
    pub fn step_ratios(&self) -> (u64, u64) {
        let ratio = |v: Option<f32>| v.map_or(1, |v| ((f64::from(v) / f64::from(self.time.dt)).round() as u64).max(1));
        (ratio(self.time.mechanics_dt), ratio(self.time.state_dt))
    }

    /// Ticks at which `output.snapshot_times` ask for a snapshot.
    pub fn snapshot_ticks(&self) -> Vec<u64> {
        let mut t: Vec<u64> = self
            .output
            .snapshot_times
            .iter()
            .map(|&m| (f64::from(m) / f64::from(self.time.dt)).round() as u64)
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    /// Record every this many ticks (at least 1).
    pub fn record_interval(&self) -> u64 {
        ((f64::from(self.time.record_every) / f64::from(self.time.dt)).round() as u64).max(1)
    }

    /// A dense gene vector from a name → value map (missing genes are 0).
    pub fn gene_vector(&self, map: &BTreeMap<String, f32>) -> Vec<f32> {
        let mut v = vec![0.0; self.genes.len()];
        for (k, x) in map {
            if let Some(i) = self.gene_index(k) {
                v[i] = *x;
            }
        }
        v
    }

    /// Number of cells the tissue will start with, where the scene alone says
    /// (`None` for an imported tissue).
    pub fn expected_cells(&self) -> Option<usize> {
        let t = &self.tissue;
        match t.shape {
            TissueShape::Disk | TissueShape::Box => t.cells,
            TissueShape::Import => None,
            TissueShape::Epithelium => {
                let (lo, hi) = (t.min.as_ref()?, t.max.as_ref()?);
                let d = self.dims();
                let spacing = 2.0 * t.cell_radius;
                let base: f32 = (0..d - 1).map(|i| ((hi[i] - lo[i]) / spacing).floor().max(1.0)).product();
                let height: f32 = t.layers.iter().map(|l| (l.thickness / spacing).round().max(1.0)).sum();
                Some((base * height) as usize)
            }
        }
    }

    /// The most cells a run of this scene may hold: `tissue.max_cells`, else as many as fit
    /// in half of the memory available now ([`memory`]), shared with the paired control
    /// when the scene has perturbations.
    pub fn cell_limit(&self) -> CellLimit {
        match self.tissue.max_cells {
            Some(cells) => CellLimit { cells, origin: memory::LimitOrigin::Scene },
            None => {
                let simulations = if self.perturbations.is_empty() { 1 } else { 2 };
                CellLimit::from_memory(memory::available_memory(), self.genes.len(), simulations)
            }
        }
    }

    /// Check everything serde cannot: names that must exist, rates that must be
    /// non-negative, sizes that must be positive, a grid that fits in memory.
    ///
    /// Sections are checked in file order and the first problem found is returned.
    pub fn validate(&self, path: &Path) -> Result<(), SceneError> {
        let check = Validator::new(self, path);
        check.version()?;
        check.genes()?;
        check.time()?;
        check.grid()?;
        check.ligands()?;
        check.contact()?;
        check.cell_types()?;
        check.tissue()?;
        check.mechanics()?;
        check.model()?;
        check.teacher()?;
        check.perturbations()?;
        check.output()
    }
}

/// Largest memory a scene's ligand fields, or its cells, may ask for; checked before anything is allocated.
pub const MAX_FIELD_BYTES: f64 = 8.0 * 1073741824.0;

/// `; did you mean `X`?` for the closest name within a small edit distance, else "".
pub fn suggest(name: &str, candidates: &[String]) -> String {
    let best =
        candidates.iter().map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c)).min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= 2.max(name.len() / 3) => format!("; did you mean `{c}`?"),
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
