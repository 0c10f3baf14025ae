//! The sweep spec and its expansion into points.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::SweepError;

/// A sweep: a base scene, parameters, a design, seeds and readouts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Format version; must be 1.
    pub version: u32,
    /// Short name.
    #[serde(default)]
    pub name: String,
    /// The base scene (relative to the spec file).
    pub scene: PathBuf,
    /// `grid` (every combination; the default), `random` or `latin_hypercube`.
    #[serde(default)]
    pub design: Design,
    /// Number of sampled points for `random` and `latin_hypercube`.
    #[serde(default)]
    pub samples: Option<usize>,
    /// Seed of the sampling itself (not of the runs).
    #[serde(default)]
    pub sampling_seed: u64,
    /// Replicate seeds of every point (overrides `replicates`).
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// Replicates per point, seeded `scene seed + 0, 1, …` (default 1).
    #[serde(default = "one")]
    pub replicates: usize,
    /// What varies.
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// What each run reports.
    #[serde(default)]
    pub readouts: Vec<Readout>,
    /// What the emitted workflow asks a cluster for per run (`[cluster]`).
    #[serde(default)]
    pub cluster: ClusterSpec,
}

fn one() -> usize {
    1
}

/// `[cluster]`: the resources each run of the emitted Snakemake workflow declares
/// ([`crate::snakemake`]); the local runner ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Wall time one run may take, minutes (Snakemake's `runtime`; a batch of K runs asks
    /// for K times this). Unset: [`DEFAULT_RUNTIME_MIN`], or each point's own request
    /// from `--calibrate` ([`crate::calibrate`]).
    #[serde(default)]
    pub runtime_min: Option<u64>,
    /// Memory of one run, MB (Snakemake's `mem_mb`), instead of the estimate from each
    /// point's scene ([`crate::snakemake::memory_mb`]).
    #[serde(default)]
    pub mem_mb: Option<u64>,
}

/// The `[cluster] runtime_min` of a spec that does not set it (and is not calibrated).
pub const DEFAULT_RUNTIME_MIN: u64 = 60;

/// How parameter values combine into points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Design {
    /// The full factorial grid of every parameter's values.
    #[default]
    Grid,
    /// `samples` independent uniform draws (log-uniform with `log = true`).
    Random,
    /// `samples` points, one in each of `samples` equal strata of every parameter.
    LatinHypercube,
}

/// One varied scene field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// Path into the scene: table keys separated by `.`, array items by `[index]` or by
    /// the item's `name` (`ligands.WNT3A.diffusion`, `perturbations[0].gene`).
    pub path: String,
    /// Explicit values (any TOML type).
    #[serde(default)]
    pub values: Option<Vec<toml::Value>>,
    /// Range start (numbers).
    #[serde(default)]
    pub from: Option<f64>,
    /// Range end.
    #[serde(default)]
    pub to: Option<f64>,
    /// Values in the range for a `grid` (both ends included).
    #[serde(default)]
    pub steps: Option<usize>,
    /// Space the range (or sample it) logarithmically.
    #[serde(default)]
    pub log: bool,
}

/// A named summary of one run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Readout {
    /// Final mean expression of a gene (in one cell type and/or named region; all cells
    /// if neither is given).
    Pseudobulk {
        /// Column name.
        name: String,
        /// The gene.
        gene: String,
        /// Only this cell type.
        #[serde(default)]
        cell_type: Option<String>,
        /// Only this named region of the scene's `output.regions`.
        #[serde(default)]
        region: Option<String>,
    },
    /// Final number of cells (of one type).
    CellCount {
        /// Column name.
        name: String,
        /// Only this cell type.
        #[serde(default)]
        cell_type: Option<String>,
    },
    /// Final total amount of a ligand on the grid.
    LigandTotal {
        /// Column name.
        name: String,
        /// The ligand.
        ligand: String,
    },
    /// Mean effect (perturbed − paired control) of a gene on unperturbed cells in the
    /// response-versus-distance bin holding `distance` µm.
    Response {
        /// Column name.
        name: String,
        /// The gene.
        gene: String,
        /// Distance from the perturbation, µm.
        distance: f64,
    },
}

impl Readout {
    /// The column name.
    pub fn name(&self) -> &str {
        match self {
            Readout::Pseudobulk { name, .. }
            | Readout::CellCount { name, .. }
            | Readout::LigandTotal { name, .. }
            | Readout::Response { name, .. } => name,
        }
    }
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// 0-based index.
    pub index: usize,
    /// One value per parameter, in the spec's order.
    pub values: Vec<toml::Value>,
    /// The run's seed.
    pub seed: u64,
}

impl Point {
    /// `run_00001` for index 0: the run's directory and scene name.
    pub fn id(&self) -> String {
        format!("run_{:05}", self.index + 1)
    }
}

/// A value as text for tables.
pub(crate) fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl SweepSpec {
    /// Read and check a spec file (the base scene is checked by [`plan`]).
    pub fn from_file(path: &Path) -> Result<Self, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|source| SweepError::Read { path: path.into(), source })?;
        Self::from_str(&text, path)
    }

    /// Parse and check a spec; `path` names it in errors.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, SweepError> {
        let spec: SweepSpec =
            toml::from_str(text).map_err(|e| SweepError::Parse { path: path.into(), message: e.to_string() })?;
        let bad = |field: String, message: String| SweepError::Invalid { path: path.into(), field, message };
        if spec.version != 1 {
            return Err(bad(
                "version".into(),
                format!("`{}` is not supported; this build reads version `1`", spec.version),
            ));
        }
        if spec.replicates == 0 {
            return Err(bad("replicates".into(), "`0`: at least one run per point".into()));
        }
        if spec.seeds.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(bad("seeds".into(), "an empty list runs nothing".into()));
        }
        match (spec.design, spec.samples) {
            (Design::Grid, Some(_)) => {
                return Err(bad(
                    "samples".into(),
                    "a `grid` takes every combination; `samples` is for `random` and `latin_hypercube`".into(),
                ));
            }
            (Design::Random | Design::LatinHypercube, None | Some(0)) => {
                return Err(bad("samples".into(), "give the number of points to sample (at least 1)".into()));
            }
            _ => {}
        }
        if spec.cluster.runtime_min == Some(0) {
            return Err(bad(
                "cluster.runtime_min".into(),
                "`0`: give the minutes one run may take (at least 1)".into(),
            ));
        }
        if spec.cluster.mem_mb == Some(0) {
            return Err(bad(
                "cluster.mem_mb".into(),
                "`0`: give the MB one run needs, or leave it out for the estimate".into(),
            ));
        }
        for (i, p) in spec.parameters.iter().enumerate() {
            let at = |f: &str| format!("parameters[{i}].{f}");
            if spec.parameters[..i].iter().any(|q| q.path == p.path) {
                return Err(bad(at("path"), format!("`{}` is varied twice", p.path)));
            }
            match (&p.values, p.from, p.to) {
                (Some(v), None, None) if !v.is_empty() => {
                    if p.steps.is_some() || p.log {
                        return Err(bad(at("steps"), "`steps` and `log` go with `from`/`to`, not `values`".into()));
                    }
                }
                (Some(_), None, None) => return Err(bad(at("values"), "an empty list".into())),
                (None, Some(a), Some(b)) => {
                    if !(a.is_finite() && b.is_finite()) || (p.log && (a <= 0.0 || b <= 0.0)) {
                        return Err(bad(
                            at("from"),
                            format!(
                                "`{a}`–`{b}` is not a usable range{}",
                                if p.log { " (log needs positive ends)" } else { "" }
                            ),
                        ));
                    }
                    if spec.design == Design::Grid && p.steps.is_none_or(|s| s < 2) {
                        return Err(bad(at("steps"), "a range in a `grid` needs `steps` ≥ 2".into()));
                    }
                }
                _ => {
                    return Err(bad(
                        at("values"),
                        "give either `values = [...]` or a range `from`, `to` (with `steps` for a grid)".into(),
                    ));
                }
            }
        }
        for (i, r) in spec.readouts.iter().enumerate() {
            if spec.readouts[..i].iter().any(|q| q.name() == r.name()) {
                return Err(bad(format!("readouts[{i}].name"), format!("`{}` is used twice", r.name())));
            }
            if let Readout::Response { distance, .. } = r
                && !(distance.is_finite() && *distance >= 0.0)
            {
                return Err(bad(
                    format!("readouts[{i}].distance"),
                    format!("`{distance}`: give a distance in µm, 0 or more"),
                ));
            }
            if r.name().is_empty() || r.name().contains([',', '"', '\n']) {
                return Err(bad(
                    format!("readouts[{i}].name"),
                    format!("`{}` must be a plain, non-empty name", r.name()),
                ));
            }
        }
        Ok(spec)
    }

    /// The base scene's path (relative paths are relative to the spec file).
    pub fn scene_path(&self, spec_path: &Path) -> PathBuf {
        if self.scene.is_absolute() {
            self.scene.clone()
        } else {
            spec_path.parent().unwrap_or(Path::new(".")).join(&self.scene)
        }
    }
}

/// SplitMix64: the sampling's own small generator.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A number in the parameter's range at fraction `u` ∈ [0, 1].
fn in_range(p: &Parameter, u: f64) -> toml::Value {
    let (a, b) = (p.from.unwrap_or(0.0), p.to.unwrap_or(0.0));
    // The ends exactly, not through exp(ln(·)).
    if u == 0.0 || u == 1.0 {
        return toml::Value::Float(if u == 0.0 { a } else { b });
    }
    let v = if p.log { (a.ln() + u * (b.ln() - a.ln())).exp() } else { a + u * (b - a) };
    toml::Value::Float(v)
}

/// A value of the parameter at fraction `u` ∈ [0, 1): a point of its range or an item
/// of its list.
fn at_fraction(p: &Parameter, u: f64) -> toml::Value {
    match &p.values {
        Some(v) => v[((u * v.len() as f64) as usize).min(v.len() - 1)].clone(),
        None => in_range(p, u),
    }
}

/// Expand a spec into its points: design points × seeds, in a fixed order (the first
/// parameter varies slowest; replicates of a point are adjacent). `base_seed` is the
/// base scene's seed.
pub fn plan(spec: &SweepSpec, base_seed: u64) -> Vec<Point> {
    let design: Vec<Vec<toml::Value>> = match spec.design {
        Design::Grid => {
            let axes: Vec<Vec<toml::Value>> = spec
                .parameters
                .iter()
                .map(|p| match (&p.values, p.steps) {
                    (Some(v), _) => v.clone(),
                    (None, Some(n)) => (0..n).map(|k| in_range(p, k as f64 / (n - 1) as f64)).collect(),
                    (None, None) => Vec::new(),
                })
                .collect();
            let mut points = vec![Vec::new()];
            for axis in &axes {
                points = points
                    .into_iter()
                    .flat_map(|prefix: Vec<toml::Value>| {
                        axis.iter().map(move |v| {
                            let mut p = prefix.clone();
                            p.push(v.clone());
                            p
                        })
                    })
                    .collect();
            }
            points
        }
        Design::Random => {
            let mut rng = Mix(spec.sampling_seed);
            (0..spec.samples.unwrap_or(0))
                .map(|_| spec.parameters.iter().map(|p| at_fraction(p, rng.next())).collect())
                .collect()
        }
        Design::LatinHypercube => {
            let n = spec.samples.unwrap_or(0);
            let mut rng = Mix(spec.sampling_seed);
            let columns: Vec<Vec<toml::Value>> = spec
                .parameters
                .iter()
                .map(|p| {
                    // A random permutation of the strata (Fisher–Yates), one draw inside each.
                    let mut strata: Vec<usize> = (0..n).collect();
                    for i in (1..n).rev() {
                        let j = (rng.next() * (i + 1) as f64) as usize;
                        strata.swap(i, j.min(i));
                    }
                    strata.into_iter().map(|s| at_fraction(p, (s as f64 + rng.next()) / n as f64)).collect()
                })
                .collect();
            (0..n).map(|i| columns.iter().map(|c| c[i].clone()).collect()).collect()
        }
    };
    let seeds: Vec<u64> = match &spec.seeds {
        Some(s) => s.clone(),
        None => (0..spec.replicates as u64).map(|k| base_seed.wrapping_add(k)).collect(),
    };
    let mut points = Vec::with_capacity(design.len() * seeds.len());
    for values in design {
        for &seed in &seeds {
            points.push(Point { index: points.len(), values: values.clone(), seed });
        }
    }
    points
}
