//! The scene file: everything one explant run needs, in TOML (`version = 1`).
//!
//! A scene names the genes of the expression state, the ligands that diffuse on the
//! grid (with the gene that secretes each and the receptor gene that gates sensing),
//! the contact signals, the cell types with their baseline expression, the tissue to
//! grow, the time steps, the response model and the perturbations. Unknown fields are
//! rejected; semantic errors (an unknown gene, a negative rate) name the file and the
//! field. See `scenes/default.toml` for an annotated example.

mod error;
mod schema;

pub use error::SceneError;
pub use schema::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The only scene format version this build reads.
pub const SCENE_VERSION: u32 = 1;

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
        let scene: Scene =
            toml::from_str(text).map_err(|e| SceneError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
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

    /// Check everything serde cannot: names that must exist, rates that must be
    /// non-negative, sizes that must be positive, a grid that fits in memory.
    pub fn validate(&self, path: &Path) -> Result<(), SceneError> {
        let bad = |field: String, message: String| SceneError::Invalid { path: path.to_path_buf(), field, message };
        if self.version != SCENE_VERSION {
            return Err(bad(
                "version".into(),
                format!("`{}` is not supported; this build reads version `{SCENE_VERSION}`", self.version),
            ));
        }
        if self.genes.is_empty() {
            return Err(bad("genes".into(), "at least one gene is needed".into()));
        }
        for (i, g) in self.genes.iter().enumerate() {
            if self.genes[..i].contains(g) {
                return Err(bad(format!("genes[{i}]"), format!("gene `{g}` is listed twice")));
            }
        }
        let gene = |field: String, name: &str| -> Result<usize, SceneError> {
            self.gene_index(name)
                .ok_or_else(|| bad(field, format!("unknown gene `{name}`{}", suggest(name, &self.genes))))
        };
        let positive = |field: String, v: f32| -> Result<(), SceneError> {
            if v.is_finite() && v > 0.0 { Ok(()) } else { Err(bad(field, format!("`{v}` must be a positive number"))) }
        };
        let non_negative = |field: String, v: f32| -> Result<(), SceneError> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(bad(field, format!("`{v}` must be a non-negative number")))
            }
        };

        positive("time.dt".into(), self.time.dt)?;
        positive("time.duration".into(), self.time.duration)?;
        positive("time.record_every".into(), self.time.record_every)?;
        for (field, v) in [("time.mechanics_dt", self.time.mechanics_dt), ("time.state_dt", self.time.state_dt)] {
            let Some(v) = v else { continue };
            positive(field.into(), v)?;
            let k = f64::from(v) / f64::from(self.time.dt);
            if k < 0.999 || (k - k.round()).abs() > 1e-3 * k {
                return Err(bad(
                    field.into(),
                    format!("`{v}` must be a whole multiple of `time.dt` (= {})", self.time.dt),
                ));
            }
        }
        if self.time.duration < self.time.dt {
            return Err(bad(
                "time.duration".into(),
                format!("`{}` is shorter than one tick (`time.dt` = `{}`)", self.time.duration, self.time.dt),
            ));
        }

        if !(2..=3).contains(&self.grid.size.len()) {
            return Err(bad(
                "grid.size".into(),
                format!("has {} entries; give 2 (a 2D tissue) or 3 (3D)", self.grid.size.len()),
            ));
        }
        positive("grid.dx".into(), self.grid.dx)?;
        for (i, &s) in self.grid.size.iter().enumerate() {
            positive(format!("grid.size[{i}]"), s)?;
        }
        let voxels: f64 = self.grid.size.iter().map(|&s| (f64::from(s) / f64::from(self.grid.dx)).ceil()).product();
        // The field, its scratch copy and a readback staging copy, in f32.
        let bytes = voxels * self.ligands.len().max(1) as f64 * 4.0 * 3.0;
        if bytes > MAX_FIELD_BYTES {
            return Err(bad(
                "grid".into(),
                format!(
                    "{voxels:.0} voxels × {} ligands needs about {:.1} GiB; the limit is {:.0} GiB: use a larger `grid.dx` or a smaller `grid.size`",
                    self.ligands.len(),
                    bytes / 1073741824.0,
                    MAX_FIELD_BYTES / 1073741824.0
                ),
            ));
        }

        for (i, l) in self.ligands.iter().enumerate() {
            if self.ligands[..i].iter().any(|o| o.name == l.name) {
                return Err(bad(format!("ligands[{i}].name"), format!("ligand `{}` is listed twice", l.name)));
            }
            non_negative(format!("ligands[{i}].diffusion"), l.diffusion)?;
            non_negative(format!("ligands[{i}].decay"), l.decay)?;
            non_negative(format!("ligands[{i}].secretion_rate"), l.secretion_rate)?;
            non_negative(format!("ligands[{i}].export_rate"), l.export_rate)?;
            non_negative(format!("ligands[{i}].saturation"), l.saturation)?;
            non_negative(format!("ligands[{i}].uptake_rate"), l.uptake_rate)?;
            let faces = l.boundary.faces();
            let names = ["x", "y", "z"];
            for axis in 0..self.dims() {
                let (lo, hi) = (faces[2 * axis], faces[2 * axis + 1]);
                if (lo == explant_field::Boundary::Periodic) != (hi == explant_field::Boundary::Periodic) {
                    return Err(bad(
                        format!("ligands[{i}].boundary.{}_min", names[axis]),
                        format!("a periodic boundary needs both `{0}_min` and `{0}_max` periodic", names[axis]),
                    ));
                }
            }
            for (f, face) in faces.iter().enumerate() {
                if let explant_field::Boundary::Fixed { value } = face {
                    non_negative(format!("ligands[{i}].boundary (face {f})"), *value)?;
                }
            }
            match &l.initial {
                Initial::Uniform { value } => non_negative(format!("ligands[{i}].initial.value"), *value)?,
                Initial::Region { shape, value, background } => {
                    non_negative(format!("ligands[{i}].initial.value"), *value)?;
                    non_negative(format!("ligands[{i}].initial.background"), *background)?;
                    shape.check(self.dims(), &format!("ligands[{i}].initial.shape")).map_err(|(f, m)| bad(f, m))?;
                }
                Initial::File { path } => {
                    if path.extension().is_none_or(|e| e != "npy") {
                        return Err(bad(
                            format!("ligands[{i}].initial.path"),
                            format!("`{}` must be a NumPy `.npy` file", path.display()),
                        ));
                    }
                }
            }
            gene(format!("ligands[{i}].secreted_by"), &l.secreted_by)?;
            gene(format!("ligands[{i}].receptor"), &l.receptor)?;
        }

        positive("contact.radius".into(), self.contact.radius)?;
        for (i, g) in self.contact.genes.iter().enumerate() {
            gene(format!("contact.genes[{i}]"), g)?;
        }

        if self.cell_types.is_empty() {
            return Err(bad("cell_types".into(), "at least one cell type is needed".into()));
        }
        for (i, t) in self.cell_types.iter().enumerate() {
            if self.cell_types[..i].iter().any(|o| o.name == t.name) {
                return Err(bad(format!("cell_types[{i}].name"), format!("cell type `{}` is listed twice", t.name)));
            }
            for (g, &v) in &t.baseline {
                gene(format!("cell_types[{i}].baseline.{g}"), g)?;
                non_negative(format!("cell_types[{i}].baseline.{g}"), v)?;
            }
            for g in t.bias.keys() {
                gene(format!("cell_types[{i}].bias.{g}"), g)?;
            }
            let at = |f: &str| format!("cell_types[{i}].{f}");
            let ligand_names = self.ligand_names();
            let ligand = |field: String, name: &str| -> Result<usize, SceneError> {
                self.ligands
                    .iter()
                    .position(|l| l.name == name)
                    .ok_or_else(|| bad(field, format!("unknown ligand `{name}`{}", suggest(name, &ligand_names))))
            };
            if let Some(c) = &t.cycle {
                positive(at("cycle.duration"), c.duration)?;
                non_negative(at("cycle.cv"), c.cv)?;
                non_negative(at("cycle.threshold"), c.threshold)?;
                non_negative(at("cycle.inheritance_noise"), c.inheritance_noise)?;
                if let Some(g) = &c.gene {
                    gene(at("cycle.gene"), g)?;
                }
                if c.duration < self.time.dt {
                    return Err(bad(
                        at("cycle.duration"),
                        format!("`{}` min is shorter than one tick (`time.dt` = {})", c.duration, self.time.dt),
                    ));
                }
            }
            if let Some(a) = &t.apoptosis {
                non_negative(at("apoptosis.rate"), a.rate)?;
                non_negative(at("apoptosis.rate_above"), a.rate_above)?;
                non_negative(at("apoptosis.threshold"), a.threshold)?;
                positive(at("apoptosis.duration"), a.duration)?;
                if let Some(g) = &a.gene {
                    gene(at("apoptosis.gene"), g)?;
                }
            }
            if let Some(n) = &t.necrosis {
                ligand(at("necrosis.ligand"), &n.ligand)?;
                non_negative(at("necrosis.below"), n.below)?;
                non_negative(at("necrosis.rate"), n.rate)?;
                positive(at("necrosis.duration"), n.duration)?;
            }
            if let Some(c) = &t.chemotaxis {
                ligand(at("chemotaxis.ligand"), &c.ligand)?;
                non_negative(at("chemotaxis.speed"), c.speed)?;
                positive(at("chemotaxis.persistence"), c.persistence)?;
                non_negative(at("chemotaxis.threshold"), c.threshold)?;
                if !(0.0..=1.0).contains(&c.bias) {
                    return Err(bad(at("chemotaxis.bias"), format!("`{}` must be between 0 and 1", c.bias)));
                }
                if let Some(g) = &c.gene {
                    gene(at("chemotaxis.gene"), g)?;
                }
            }
        }
        let type_names = self.cell_type_names();
        let cell_type = |field: String, name: &str| -> Result<usize, SceneError> {
            self.cell_type_index(name)
                .ok_or_else(|| bad(field, format!("unknown cell type `{name}`{}", suggest(name, &type_names))))
        };

        let tissue = &self.tissue;
        let dims = self.dims();
        let coords = |field: &str, v: &Option<Vec<f32>>| -> Result<Vec<f32>, SceneError> {
            let Some(v) = v else {
                return Err(bad(
                    format!("tissue.{field}"),
                    format!("is required for `shape = \"{}\"`", tissue.shape.name()),
                ));
            };
            if v.len() != dims {
                return Err(bad(
                    format!("tissue.{field}"),
                    format!("has {} coordinates but the grid is {dims}D", v.len()),
                ));
            }
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                return Err(bad(format!("tissue.{field}"), format!("`{x}` is not a finite number")));
            }
            Ok(v.clone())
        };
        // Fields that belong to other shapes are refused rather than silently ignored.
        let unused = |field: &str, present: bool| -> Result<(), SceneError> {
            if present {
                return Err(bad(
                    format!("tissue.{field}"),
                    format!("is not used by `shape = \"{}\"`; remove it", tissue.shape.name()),
                ));
            }
            Ok(())
        };
        let inside = |field: &str, lo: &[f32], hi: &[f32]| -> Result<(), SceneError> {
            for (i, ((a, b), s)) in lo.iter().zip(hi).zip(&self.grid.size).enumerate() {
                if *a < 0.0 || *b > *s {
                    return Err(bad(
                        format!("tissue.{field}"),
                        format!("the tissue spans `{a}`–`{b}` on axis {i}, outside the grid (0–{s})"),
                    ));
                }
            }
            Ok(())
        };
        positive("tissue.cell_radius".into(), tissue.cell_radius)?;
        non_negative("tissue.expression_noise".into(), tissue.expression_noise)?;
        let generated = tissue.shape != TissueShape::Import;
        if generated {
            unused("path", tissue.path.is_some())?;
            unused("obsm", tissue.obsm.is_some())?;
            unused("obs_columns", tissue.obs_columns.is_some())?;
            unused("cell_type_column", tissue.cell_type_column.is_some())?;
            unused("offset", tissue.offset.is_some())?;
            unused("scale", tissue.scale != 1.0)?;
            let Some(t) = &tissue.cell_type else {
                return Err(bad(
                    "tissue.cell_type".into(),
                    "the type of cells outside every region is required".into(),
                ));
            };
            cell_type("tissue.cell_type".into(), t)?;
        }
        match tissue.shape {
            TissueShape::Disk => {
                let c = coords("centre", &tissue.centre)?;
                let Some(r) = tissue.radius else {
                    return Err(bad("tissue.radius".into(), "is required for `shape = \"disk\"`".into()));
                };
                positive("tissue.radius".into(), r)?;
                unused("min", tissue.min.is_some())?;
                unused("max", tissue.max.is_some())?;
                unused("layers", !tissue.layers.is_empty())?;
                let lo: Vec<f32> = c.iter().map(|x| x - r).collect();
                let hi: Vec<f32> = c.iter().map(|x| x + r).collect();
                inside("radius", &lo, &hi)?;
            }
            TissueShape::Box | TissueShape::Epithelium => {
                let lo = coords("min", &tissue.min)?;
                let mut hi = coords("max", &tissue.max)?;
                unused("centre", tissue.centre.is_some())?;
                unused("radius", tissue.radius.is_some())?;
                if tissue.shape == TissueShape::Box {
                    unused("layers", !tissue.layers.is_empty())?;
                    if lo.iter().zip(&hi).any(|(a, b)| a >= b) {
                        return Err(bad("tissue.max".into(), "every `max` coordinate must exceed `min`".into()));
                    }
                } else {
                    unused("cells", tissue.cells.is_some())?;
                    if tissue.layers.is_empty() {
                        return Err(bad("tissue.layers".into(), "an epithelium needs at least one layer".into()));
                    }
                    for (i, l) in tissue.layers.iter().enumerate() {
                        cell_type(format!("tissue.layers[{i}].cell_type"), &l.cell_type)?;
                        positive(format!("tissue.layers[{i}].thickness"), l.thickness)?;
                    }
                    let top = lo[dims - 1] + tissue.layers.iter().map(|l| l.thickness).sum::<f32>();
                    hi[dims - 1] = top;
                    if lo.iter().zip(&hi).any(|(a, b)| a >= b) {
                        return Err(bad("tissue.max".into(), "every `max` coordinate must exceed `min`".into()));
                    }
                }
                inside("max", &lo, &hi)?;
            }
            TissueShape::Import => {
                for (f, present) in [
                    ("centre", tissue.centre.is_some()),
                    ("radius", tissue.radius.is_some()),
                    ("min", tissue.min.is_some()),
                    ("max", tissue.max.is_some()),
                    ("cells", tissue.cells.is_some()),
                    ("layers", !tissue.layers.is_empty()),
                ] {
                    unused(f, present)?;
                }
                if tissue.path.is_none() {
                    return Err(bad("tissue.path".into(), "an imported tissue needs the `.h5ad` file's `path`".into()));
                }
                if tissue.obsm.is_some() && tissue.obs_columns.is_some() {
                    return Err(bad(
                        "tissue.obs_columns".into(),
                        "give either `obsm` or `obs_columns`, not both".into(),
                    ));
                }
                if let Some(cols) = &tissue.obs_columns
                    && cols.len() != dims
                {
                    return Err(bad(
                        "tissue.obs_columns".into(),
                        format!("names {} columns but the grid is {dims}D", cols.len()),
                    ));
                }
                match (&tissue.cell_type, &tissue.cell_type_column) {
                    (None, None) => {
                        return Err(bad(
                            "tissue.cell_type_column".into(),
                            "give the `obs` column of cell types, or one `cell_type` for every cell".into(),
                        ));
                    }
                    (Some(t), None) => {
                        cell_type("tissue.cell_type".into(), t)?;
                    }
                    (Some(_), Some(_)) => {
                        return Err(bad(
                            "tissue.cell_type".into(),
                            "give either `cell_type` or `cell_type_column`".into(),
                        ));
                    }
                    (None, Some(_)) => {}
                }
                positive("tissue.scale".into(), tissue.scale)?;
                if tissue.offset.is_some() {
                    coords("offset", &tissue.offset)?;
                }
            }
        }
        if matches!(tissue.shape, TissueShape::Disk | TissueShape::Box) {
            match tissue.cells {
                None => {
                    return Err(bad(
                        "tissue.cells".into(),
                        format!("the number of cells is required for `shape = \"{}\"`", tissue.shape.name()),
                    ));
                }
                Some(0) => return Err(bad("tissue.cells".into(), "`0`: at least one cell is needed".into())),
                Some(_) => {}
            }
        }
        if let Some(n) = self.expected_cells() {
            // Expression, contact, rates and the model's copies: about 6 floats per gene per cell.
            let cell_bytes = n as f64 * (self.genes.len() as f64 * 6.0 * 4.0 + 256.0);
            if cell_bytes > MAX_FIELD_BYTES {
                return Err(bad(
                    "tissue.cells".into(),
                    format!(
                        "`{n}` cells need about {:.1} GiB; the limit is {:.0} GiB",
                        cell_bytes / 1073741824.0,
                        MAX_FIELD_BYTES / 1073741824.0
                    ),
                ));
            }
        }
        for (i, r) in tissue.regions.iter().enumerate() {
            match (&r.cell_type, &r.mixture) {
                (Some(t), None) => {
                    cell_type(format!("tissue.regions[{i}].cell_type"), t)?;
                }
                (None, Some(mix)) => {
                    let mut total = 0.0;
                    for (t, &f) in mix {
                        cell_type(format!("tissue.regions[{i}].mixture.{t}"), t)?;
                        non_negative(format!("tissue.regions[{i}].mixture.{t}"), f)?;
                        total += f;
                    }
                    if total <= 0.0 {
                        return Err(bad(
                            format!("tissue.regions[{i}].mixture"),
                            "the fractions must add up to more than 0".into(),
                        ));
                    }
                }
                _ => {
                    return Err(bad(
                        format!("tissue.regions[{i}]"),
                        "give either `cell_type` or `mixture` (fractions by cell type)".into(),
                    ));
                }
            }
            r.shape.check(dims, &format!("tissue.regions[{i}]")).map_err(|(f, m)| bad(f, m))?;
        }

        non_negative("mechanics.mobility".into(), self.mechanics.mobility)?;
        non_negative("mechanics.repulsion".into(), self.mechanics.repulsion)?;
        non_negative("mechanics.adhesion".into(), self.mechanics.adhesion)?;
        if let Some(m) = &self.mechanics.membrane {
            non_negative("mechanics.membrane.adhesion".into(), m.adhesion)?;
            non_negative("mechanics.membrane.repulsion".into(), m.repulsion)?;
            let axis = m.axis.index();
            if axis >= self.dims() {
                return Err(bad("mechanics.membrane.axis".into(), format!("`{:?}` but the grid is 2D", m.axis)));
            }
            let extent = self.grid.size[axis];
            if !(m.position.is_finite() && m.position > 0.0 && m.position < extent) {
                return Err(bad(
                    "mechanics.membrane.position".into(),
                    format!("`{}` must lie inside the domain (0 to {extent})", m.position),
                ));
            }
        }

        if self.model.kind == ModelSpec::Torchscript && self.model.path.is_none() {
            return Err(bad("model.path".into(), "a `torchscript` model needs a `path` to its `.pt` file".into()));
        }
        non_negative("teacher.degradation".into(), self.teacher.degradation)?;
        for (i, e) in self.teacher.edges.iter().enumerate() {
            gene(format!("teacher.edges[{i}].target"), &e.target)?;
            match e.source.split_once(':') {
                Some(("gene", g)) | Some(("contact", g)) => {
                    gene(format!("teacher.edges[{i}].source"), g)?;
                }
                Some(("neighbours", t)) => {
                    cell_type(format!("teacher.edges[{i}].source"), t)?;
                }
                Some(("ligand", l)) => {
                    if !self.ligands.iter().any(|x| x.name == l) {
                        return Err(bad(
                            format!("teacher.edges[{i}].source"),
                            format!("unknown ligand `{l}`{}", suggest(l, &self.ligand_names())),
                        ));
                    }
                }
                _ => {
                    return Err(bad(
                        format!("teacher.edges[{i}].source"),
                        format!(
                            "`{}` must be `gene:NAME`, `ligand:NAME`, `contact:NAME` or `neighbours:CELL_TYPE`",
                            e.source
                        ),
                    ));
                }
            }
        }
        for (g, &v) in &self.teacher.max_rate {
            gene(format!("teacher.max_rate.{g}"), g)?;
            non_negative(format!("teacher.max_rate.{g}"), v)?;
        }

        for (i, p) in self.perturbations.iter().enumerate() {
            let at = |f: &str| format!("perturbations[{i}].{f}");
            p.action().map_err(|(f, m)| bad(at(&f), m))?;
            if let Some(g) = &p.gene {
                gene(at("gene"), g)?;
            }
            if let Some(l) = &p.ligand
                && !self.ligands.iter().any(|x| &x.name == l)
            {
                return Err(bad(at("ligand"), format!("unknown ligand `{l}`{}", suggest(l, &self.ligand_names()))));
            }
            if let Some(t) = &p.cell_type {
                cell_type(at("cell_type"), t)?;
            }
            if let Some(shape) = &p.region {
                shape.check(self.dims(), &at("region")).map_err(|(f, m)| bad(f, m))?;
            }
            if let Some(w) = &p.when {
                gene(at("when.gene"), &w.gene)?;
                if w.above.is_none() && w.below.is_none() {
                    return Err(bad(at("when"), "give `above`, `below` or both".into()));
                }
            }
            if let Some(ids) = &p.ids
                && ids.is_empty()
            {
                return Err(bad(at("ids"), "an empty list targets no cell".into()));
            }
            non_negative(at("start"), p.start)?;
            if p.stop.is_some_and(|s| s < p.start) {
                return Err(bad(at("stop"), "ends before its `start`".into()));
            }
            if p.start > self.time.duration {
                return Err(bad(
                    at("start"),
                    format!("`{}` is after the end of the run (`time.duration` = {})", p.start, self.time.duration),
                ));
            }
        }

        let bands = &self.output.distance_bands;
        if bands.is_empty()
            || bands.iter().any(|b| !b.is_finite() || *b < 0.0)
            || bands.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(bad(
                "output.distance_bands".into(),
                format!("`{bands:?}` must be non-negative, increasing edges (µm), at least one"),
            ));
        }
        positive("output.distance_bin".into(), self.output.distance_bin)?;
        for (i, &t) in self.output.snapshot_times.iter().enumerate() {
            if !(t.is_finite() && t >= 0.0 && t <= self.time.duration) {
                return Err(bad(
                    format!("output.snapshot_times[{i}]"),
                    format!("`{t}` must lie within the run (0 to {} min)", self.time.duration),
                ));
            }
        }
        for (i, r) in self.output.regions.iter().enumerate() {
            if r.name.is_empty() || r.name.contains([',', '\n', '"']) {
                return Err(bad(
                    format!("output.regions[{i}].name"),
                    format!("`{}` must be a plain, non-empty name", r.name),
                ));
            }
            if self.output.regions[..i].iter().any(|o| o.name == r.name) {
                return Err(bad(format!("output.regions[{i}].name"), format!("region `{}` is named twice", r.name)));
            }
            r.shape.check(self.dims(), &format!("output.regions[{i}].shape")).map_err(|(f, m)| bad(f, m))?;
        }
        if let Some(g) = &self.output.colour_by_gene {
            gene("output.colour_by_gene".into(), g)?;
        }
        if let Some(l) = &self.output.heatmap_ligand
            && !self.ligands.iter().any(|x| &x.name == l)
        {
            return Err(bad(
                "output.heatmap_ligand".into(),
                format!("unknown ligand `{l}`{}", suggest(l, &self.ligand_names())),
            ));
        }
        Ok(())
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
