//! The checks behind [`Scene::validate`], one section of the scene per function.
//!
//! Each function checks one part of the file and returns the first problem it finds;
//! [`Scene::validate`] calls them in file order, so the first error reported for a bad
//! scene is the one nearest the top.

use std::path::Path;

use crate::{
    CellTypeSpec, Initial, MAX_FIELD_BYTES, ModelSpec, Perturbation, PerturbationName, SCENE_VERSION, Scene,
    SceneError, SceneWarning, Shape, TissueShape, memory, suggest,
};

/// Why HDF5 cannot hold `name` as a group or dataset name (the AnnData writer uses gene,
/// ligand and cell-type names as such), else `None`.
pub(crate) fn hdf5_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("an empty name".into());
    }
    if name == "." {
        return Some("`.` alone (it means the group itself)".into());
    }
    if name.starts_with('.') {
        return Some("a leading `.`".into());
    }
    if name.contains('/') {
        return Some("the character `/` (it separates HDF5 groups)".into());
    }
    if name.contains('\0') {
        return Some("a NUL character (`\\0`)".into());
    }
    name.chars().find(|c| c.is_control()).map(|c| format!("the control character U+{:04X}", u32::from(c)))
}

/// A scene being checked, with the file it came from (named in every message).
pub(crate) struct Validator<'a> {
    /// The scene under check.
    scene: &'a Scene,
    /// Its file, for messages.
    path: &'a Path,
}

impl<'a> Validator<'a> {
    /// Start checking `scene`, read from `path`.
    pub(crate) fn new(scene: &'a Scene, path: &'a Path) -> Self {
        Self { scene, path }
    }

    /// The error for `field` with `message`.
    fn bad(&self, field: String, message: String) -> SceneError {
        SceneError::Invalid { path: self.path.to_path_buf(), field, message }
    }

    /// The warning for `field` with `message`.
    fn warn(&self, field: String, message: String) -> SceneWarning {
        SceneWarning { path: self.path.to_path_buf(), field, message }
    }

    /// `name` (a gene, ligand or cell type) must be one HDF5 can hold as a group or
    /// dataset name.
    fn hdf5_name(&self, field: String, what: &str, name: &str) -> Result<(), SceneError> {
        match hdf5_name_problem(name) {
            Some(problem) => Err(self.bad(
                field,
                format!(
                    "{what} `{}` contains {problem}, which the AnnData (HDF5) output cannot hold in a name",
                    name.escape_debug()
                ),
            )),
            None => Ok(()),
        }
    }

    /// The grid as a region: from 0 to `grid.size` on every axis.
    fn domain(&self) -> Shape {
        Shape::Box { min: vec![0.0; self.scene.dims()], max: self.scene.grid.size.clone() }
    }

    /// A region (already checked for its dimension) must share at least a point with the
    /// grid: cells and voxels exist only there, so a region wholly outside selects nothing.
    fn on_grid(&self, field: String, shape: &Shape) -> Result<(), SceneError> {
        if shape.overlaps(&self.domain()) {
            return Ok(());
        }
        Err(self.bad(
            field,
            format!(
                "the region ({}) lies wholly outside the grid (0 to {:?} µm), so it selects nothing",
                shape.describe(),
                self.scene.grid.size
            ),
        ))
    }

    /// Where the generated tissue's cells start (`None` for an imported tissue).
    fn tissue_extent(&self) -> Option<Shape> {
        let t = &self.scene.tissue;
        match t.shape {
            TissueShape::Disk => Some(Shape::Circle { centre: t.centre.clone()?, radius: t.radius? }),
            TissueShape::Box => Some(Shape::Box { min: t.min.clone()?, max: t.max.clone()? }),
            TissueShape::Epithelium => {
                let (min, mut max) = (t.min.clone()?, t.max.clone()?);
                let top = min.last()? + t.layers.iter().map(|l| l.thickness).sum::<f32>();
                *max.last_mut()? = top;
                Some(Shape::Box { min, max })
            }
            TissueShape::Import => None,
        }
    }

    /// The cell types the tissue may start with (`None` where the scene alone cannot say:
    /// types from an imported file's column).
    fn types_at_start(&self) -> Option<Vec<&'a str>> {
        let t = &self.scene.tissue;
        if t.shape == TissueShape::Import && t.cell_type_column.is_some() {
            return None;
        }
        let mut types: Vec<&str> = t.cell_type.iter().map(String::as_str).collect();
        for r in &t.regions {
            types.extend(r.cell_type.as_deref());
            if let Some(mix) = &r.mixture {
                types.extend(mix.iter().filter(|(_, f)| **f > 0.0).map(|(k, _)| k.as_str()));
            }
        }
        types.extend(t.layers.iter().map(|l| l.cell_type.as_str()));
        Some(types)
    }

    /// Cell types some perturbation grafts.
    fn grafted_types(&self) -> Vec<&'a str> {
        let ps = &self.scene.perturbations;
        ps.iter().filter(|p| p.kind == PerturbationName::Graft).filter_map(|p| p.cell_type.as_deref()).collect()
    }

    /// Whether a perturbation of this kind selects cells (rather than voxels, or adding cells).
    fn targets_cells(p: &Perturbation) -> bool {
        !matches!(p.kind, PerturbationName::Bolus | PerturbationName::Source | PerturbationName::Graft)
    }

    /// `name` must be a gene of the scene; returns its index.
    fn gene(&self, field: String, name: &str) -> Result<usize, SceneError> {
        self.scene
            .gene_index(name)
            .ok_or_else(|| self.bad(field, format!("unknown gene `{name}`{}", suggest(name, &self.scene.genes))))
    }

    /// `name` must be a ligand of the scene; returns its index.
    fn ligand(&self, field: String, name: &str) -> Result<usize, SceneError> {
        self.scene.ligands.iter().position(|l| l.name == name).ok_or_else(|| {
            self.bad(field, format!("unknown ligand `{name}`{}", suggest(name, &self.scene.ligand_names())))
        })
    }

    /// `name` must be a cell type of the scene; returns its index.
    fn cell_type(&self, field: String, name: &str) -> Result<usize, SceneError> {
        self.scene.cell_type_index(name).ok_or_else(|| {
            self.bad(field, format!("unknown cell type `{name}`{}", suggest(name, &self.scene.cell_type_names())))
        })
    }

    /// `v` must be finite and above 0.
    fn positive(&self, field: String, v: f32) -> Result<(), SceneError> {
        if v.is_finite() && v > 0.0 { Ok(()) } else { Err(self.bad(field, format!("`{v}` must be a positive number"))) }
    }

    /// `v` must be finite and at least 0.
    fn non_negative(&self, field: String, v: f32) -> Result<(), SceneError> {
        if v.is_finite() && v >= 0.0 {
            Ok(())
        } else {
            Err(self.bad(field, format!("`{v}` must be a non-negative number")))
        }
    }

    /// The format version is one this build reads.
    pub(crate) fn version(&self) -> Result<(), SceneError> {
        let version = self.scene.version;
        if !(1..=SCENE_VERSION).contains(&version) {
            return Err(self.bad(
                "version".into(),
                format!("`{version}` is not supported; this build reads versions `1` to `{SCENE_VERSION}`"),
            ));
        }
        Ok(())
    }

    /// At least one gene, none listed twice.
    pub(crate) fn genes(&self) -> Result<(), SceneError> {
        let genes = &self.scene.genes;
        if genes.is_empty() {
            return Err(self.bad("genes".into(), "at least one gene is needed".into()));
        }
        for (i, g) in genes.iter().enumerate() {
            self.hdf5_name(format!("genes[{i}]"), "gene", g)?;
            if genes[..i].contains(g) {
                return Err(self.bad(format!("genes[{i}]"), format!("gene `{g}` is listed twice")));
            }
        }
        Ok(())
    }

    /// Positive time steps; mechanics and state steps whole multiples of `time.dt`; at least one tick.
    pub(crate) fn time(&self) -> Result<(), SceneError> {
        let time = &self.scene.time;
        self.positive("time.dt".into(), time.dt)?;
        self.positive("time.duration".into(), time.duration)?;
        self.positive("time.record_every".into(), time.record_every)?;
        for (field, v) in [("time.mechanics_dt", time.mechanics_dt), ("time.state_dt", time.state_dt)] {
            let Some(v) = v else { continue };
            self.positive(field.into(), v)?;
            let k = f64::from(v) / f64::from(time.dt);
            if k < 0.999 || (k - k.round()).abs() > 1e-3 * k {
                return Err(
                    self.bad(field.into(), format!("`{v}` must be a whole multiple of `time.dt` (= {})", time.dt))
                );
            }
        }
        if time.duration < time.dt {
            return Err(self.bad(
                "time.duration".into(),
                format!("`{}` is shorter than one tick (`time.dt` = `{}`)", time.duration, time.dt),
            ));
        }
        Ok(())
    }

    /// A 2D or 3D grid of positive size whose ligand fields fit in [`MAX_FIELD_BYTES`].
    pub(crate) fn grid(&self) -> Result<(), SceneError> {
        let grid = &self.scene.grid;
        if !(2..=3).contains(&grid.size.len()) {
            return Err(self
                .bad("grid.size".into(), format!("has {} entries; give 2 (a 2D tissue) or 3 (3D)", grid.size.len())));
        }
        self.positive("grid.dx".into(), grid.dx)?;
        for (i, &s) in grid.size.iter().enumerate() {
            self.positive(format!("grid.size[{i}]"), s)?;
        }
        let ligands = self.scene.ligands.len();
        let voxels: f64 = grid.size.iter().map(|&s| (f64::from(s) / f64::from(grid.dx)).ceil()).product();
        // The field, its scratch copy and a readback staging copy, in f32.
        let bytes = voxels * ligands.max(1) as f64 * 4.0 * 3.0;
        if bytes > MAX_FIELD_BYTES {
            return Err(self.bad(
                "grid".into(),
                format!(
                    "{voxels:.0} voxels × {} ligands needs about {:.1} GiB; the limit is {:.0} GiB: use a larger `grid.dx` or a smaller `grid.size`",
                    ligands,
                    bytes / 1073741824.0,
                    MAX_FIELD_BYTES / 1073741824.0
                ),
            ));
        }
        Ok(())
    }

    /// Each ligand: a unique name, non-negative rates, consistent boundaries, a valid
    /// initial field, and known secreting and receptor genes.
    pub(crate) fn ligands(&self) -> Result<(), SceneError> {
        let dims = self.scene.dims();
        for (i, l) in self.scene.ligands.iter().enumerate() {
            self.hdf5_name(format!("ligands[{i}].name"), "ligand", &l.name)?;
            if self.scene.ligands[..i].iter().any(|o| o.name == l.name) {
                return Err(self.bad(format!("ligands[{i}].name"), format!("ligand `{}` is listed twice", l.name)));
            }
            self.non_negative(format!("ligands[{i}].diffusion"), l.diffusion)?;
            self.non_negative(format!("ligands[{i}].decay"), l.decay)?;
            self.non_negative(format!("ligands[{i}].secretion_rate"), l.secretion_rate)?;
            self.non_negative(format!("ligands[{i}].export_rate"), l.export_rate)?;
            self.non_negative(format!("ligands[{i}].saturation"), l.saturation)?;
            self.non_negative(format!("ligands[{i}].uptake_rate"), l.uptake_rate)?;
            let faces = l.boundary.faces();
            let names = ["x", "y", "z"];
            for axis in 0..dims {
                let (lo, hi) = (faces[2 * axis], faces[2 * axis + 1]);
                if (lo == explant_field::Boundary::Periodic) != (hi == explant_field::Boundary::Periodic) {
                    return Err(self.bad(
                        format!("ligands[{i}].boundary.{}_min", names[axis]),
                        format!("a periodic boundary needs both `{0}_min` and `{0}_max` periodic", names[axis]),
                    ));
                }
            }
            for (f, face) in faces.iter().enumerate() {
                if let explant_field::Boundary::Fixed { value } = face {
                    self.non_negative(format!("ligands[{i}].boundary (face {f})"), *value)?;
                }
            }
            match &l.initial {
                Initial::Uniform { value } => self.non_negative(format!("ligands[{i}].initial.value"), *value)?,
                Initial::Region { shape, value, background } => {
                    self.non_negative(format!("ligands[{i}].initial.value"), *value)?;
                    self.non_negative(format!("ligands[{i}].initial.background"), *background)?;
                    shape.check(dims, &format!("ligands[{i}].initial.shape")).map_err(|(f, m)| self.bad(f, m))?;
                    self.on_grid(format!("ligands[{i}].initial.shape"), shape)?;
                }
                Initial::File { path } => {
                    if path.extension().is_none_or(|e| e != "npy") {
                        return Err(self.bad(
                            format!("ligands[{i}].initial.path"),
                            format!("`{}` must be a NumPy `.npy` file", path.display()),
                        ));
                    }
                }
            }
            self.gene(format!("ligands[{i}].secreted_by"), &l.secreted_by)?;
            self.gene(format!("ligands[{i}].receptor"), &l.receptor)?;
        }
        Ok(())
    }

    /// A positive contact radius and known contact genes.
    pub(crate) fn contact(&self) -> Result<(), SceneError> {
        let contact = &self.scene.contact;
        self.positive("contact.radius".into(), contact.radius)?;
        for (i, g) in contact.genes.iter().enumerate() {
            self.gene(format!("contact.genes[{i}]"), g)?;
        }
        Ok(())
    }

    /// At least one cell type, none listed twice, each with known genes and valid
    /// cycle, apoptosis, necrosis and chemotaxis settings.
    pub(crate) fn cell_types(&self) -> Result<(), SceneError> {
        let types = &self.scene.cell_types;
        if types.is_empty() {
            return Err(self.bad("cell_types".into(), "at least one cell type is needed".into()));
        }
        for (i, t) in types.iter().enumerate() {
            self.hdf5_name(format!("cell_types[{i}].name"), "cell type", &t.name)?;
            if types[..i].iter().any(|o| o.name == t.name) {
                return Err(
                    self.bad(format!("cell_types[{i}].name"), format!("cell type `{}` is listed twice", t.name))
                );
            }
            self.cell_type_fates(i, t)?;
        }
        Ok(())
    }

    /// One cell type's baseline and bias genes, then its cycle, apoptosis, necrosis and chemotaxis.
    fn cell_type_fates(&self, i: usize, t: &CellTypeSpec) -> Result<(), SceneError> {
        let dt = self.scene.time.dt;
        for (g, &v) in &t.baseline {
            self.gene(format!("cell_types[{i}].baseline.{g}"), g)?;
            self.non_negative(format!("cell_types[{i}].baseline.{g}"), v)?;
        }
        for g in t.bias.keys() {
            self.gene(format!("cell_types[{i}].bias.{g}"), g)?;
        }
        let at = |f: &str| format!("cell_types[{i}].{f}");
        if let Some(c) = &t.cycle {
            self.positive(at("cycle.duration"), c.duration)?;
            self.non_negative(at("cycle.cv"), c.cv)?;
            self.non_negative(at("cycle.threshold"), c.threshold)?;
            self.non_negative(at("cycle.inheritance_noise"), c.inheritance_noise)?;
            if let Some(g) = &c.gene {
                self.gene(at("cycle.gene"), g)?;
            }
            if c.duration < dt {
                return Err(self.bad(
                    at("cycle.duration"),
                    format!("`{}` min is shorter than one tick (`time.dt` = {dt})", c.duration),
                ));
            }
        }
        if let Some(a) = &t.apoptosis {
            self.non_negative(at("apoptosis.rate"), a.rate)?;
            self.non_negative(at("apoptosis.rate_above"), a.rate_above)?;
            self.non_negative(at("apoptosis.threshold"), a.threshold)?;
            self.positive(at("apoptosis.duration"), a.duration)?;
            if let Some(g) = &a.gene {
                self.gene(at("apoptosis.gene"), g)?;
            }
        }
        if let Some(n) = &t.necrosis {
            self.ligand(at("necrosis.ligand"), &n.ligand)?;
            self.non_negative(at("necrosis.below"), n.below)?;
            self.non_negative(at("necrosis.rate"), n.rate)?;
            self.positive(at("necrosis.duration"), n.duration)?;
        }
        if let Some(c) = &t.chemotaxis {
            self.ligand(at("chemotaxis.ligand"), &c.ligand)?;
            self.non_negative(at("chemotaxis.speed"), c.speed)?;
            self.positive(at("chemotaxis.persistence"), c.persistence)?;
            self.non_negative(at("chemotaxis.threshold"), c.threshold)?;
            if !(0.0..=1.0).contains(&c.bias) {
                return Err(self.bad(at("chemotaxis.bias"), format!("`{}` must be between 0 and 1", c.bias)));
            }
            if let Some(g) = &c.gene {
                self.gene(at("chemotaxis.gene"), g)?;
            }
        }
        Ok(())
    }

    /// `tissue.{field}`, required by the shape: one finite coordinate per grid axis.
    fn coords(&self, field: &str, v: &Option<Vec<f32>>) -> Result<Vec<f32>, SceneError> {
        let tissue = &self.scene.tissue;
        let dims = self.scene.dims();
        let Some(v) = v else {
            return Err(
                self.bad(format!("tissue.{field}"), format!("is required for `shape = \"{}\"`", tissue.shape.name()))
            );
        };
        if v.len() != dims {
            return Err(
                self.bad(format!("tissue.{field}"), format!("has {} coordinates but the grid is {dims}D", v.len()))
            );
        }
        if let Some(x) = v.iter().find(|x| !x.is_finite()) {
            return Err(self.bad(format!("tissue.{field}"), format!("`{x}` is not a finite number")));
        }
        Ok(v.clone())
    }

    /// `tissue.{field}` belongs to another shape: refused rather than silently ignored.
    fn unused(&self, field: &str, present: bool) -> Result<(), SceneError> {
        if present {
            return Err(self.bad(
                format!("tissue.{field}"),
                format!("is not used by `shape = \"{}\"`; remove it", self.scene.tissue.shape.name()),
            ));
        }
        Ok(())
    }

    /// The tissue's box `lo`–`hi` lies inside the grid.
    fn inside(&self, field: &str, lo: &[f32], hi: &[f32]) -> Result<(), SceneError> {
        for (i, ((a, b), s)) in lo.iter().zip(hi).zip(&self.scene.grid.size).enumerate() {
            if *a < 0.0 || *b > *s {
                return Err(self.bad(
                    format!("tissue.{field}"),
                    format!("the tissue spans `{a}`–`{b}` on axis {i}, outside the grid (0–{s})"),
                ));
            }
        }
        Ok(())
    }

    /// The tissue: its cell size and noise, the fields of its shape, its cell count and regions.
    pub(crate) fn tissue(&self) -> Result<(), SceneError> {
        self.tissue_common()?;
        match self.scene.tissue.shape {
            TissueShape::Disk => self.tissue_disk()?,
            TissueShape::Box | TissueShape::Epithelium => self.tissue_box_or_epithelium()?,
            TissueShape::Import => self.tissue_import()?,
        }
        self.tissue_cells()?;
        self.tissue_regions()
    }

    /// Cell radius and expression noise; a generated tissue has no import fields and names its cell type.
    fn tissue_common(&self) -> Result<(), SceneError> {
        let tissue = &self.scene.tissue;
        self.positive("tissue.cell_radius".into(), tissue.cell_radius)?;
        self.non_negative("tissue.expression_noise".into(), tissue.expression_noise)?;
        let generated = tissue.shape != TissueShape::Import;
        if generated {
            self.unused("path", tissue.path.is_some())?;
            self.unused("obsm", tissue.obsm.is_some())?;
            self.unused("obs_columns", tissue.obs_columns.is_some())?;
            self.unused("cell_type_column", tissue.cell_type_column.is_some())?;
            self.unused("offset", tissue.offset.is_some())?;
            self.unused("scale", tissue.scale != 1.0)?;
            let Some(t) = &tissue.cell_type else {
                return Err(
                    self.bad("tissue.cell_type".into(), "the type of cells outside every region is required".into())
                );
            };
            self.cell_type("tissue.cell_type".into(), t)?;
        }
        Ok(())
    }

    /// A disk: a centre and a positive radius, inside the grid.
    fn tissue_disk(&self) -> Result<(), SceneError> {
        let tissue = &self.scene.tissue;
        let c = self.coords("centre", &tissue.centre)?;
        let Some(r) = tissue.radius else {
            return Err(self.bad("tissue.radius".into(), "is required for `shape = \"disk\"`".into()));
        };
        self.positive("tissue.radius".into(), r)?;
        self.unused("min", tissue.min.is_some())?;
        self.unused("max", tissue.max.is_some())?;
        self.unused("layers", !tissue.layers.is_empty())?;
        let lo: Vec<f32> = c.iter().map(|x| x - r).collect();
        let hi: Vec<f32> = c.iter().map(|x| x + r).collect();
        self.inside("radius", &lo, &hi)
    }

    /// A box or an epithelium: `min` below `max` (an epithelium's top is its layers'
    /// thickness), known layer cell types, inside the grid.
    fn tissue_box_or_epithelium(&self) -> Result<(), SceneError> {
        let tissue = &self.scene.tissue;
        let dims = self.scene.dims();
        let lo = self.coords("min", &tissue.min)?;
        let mut hi = self.coords("max", &tissue.max)?;
        self.unused("centre", tissue.centre.is_some())?;
        self.unused("radius", tissue.radius.is_some())?;
        if tissue.shape == TissueShape::Box {
            self.unused("layers", !tissue.layers.is_empty())?;
            if lo.iter().zip(&hi).any(|(a, b)| a >= b) {
                return Err(self.bad("tissue.max".into(), "every `max` coordinate must exceed `min`".into()));
            }
        } else {
            self.unused("cells", tissue.cells.is_some())?;
            if tissue.layers.is_empty() {
                return Err(self.bad("tissue.layers".into(), "an epithelium needs at least one layer".into()));
            }
            for (i, l) in tissue.layers.iter().enumerate() {
                self.cell_type(format!("tissue.layers[{i}].cell_type"), &l.cell_type)?;
                self.positive(format!("tissue.layers[{i}].thickness"), l.thickness)?;
            }
            let top = lo[dims - 1] + tissue.layers.iter().map(|l| l.thickness).sum::<f32>();
            hi[dims - 1] = top;
            if lo.iter().zip(&hi).any(|(a, b)| a >= b) {
                return Err(self.bad("tissue.max".into(), "every `max` coordinate must exceed `min`".into()));
            }
        }
        self.inside("max", &lo, &hi)
    }

    /// An imported tissue: a path, positions from `obsm` or `obs_columns`, cell types
    /// from a column or one `cell_type`, a positive scale.
    fn tissue_import(&self) -> Result<(), SceneError> {
        let tissue = &self.scene.tissue;
        let dims = self.scene.dims();
        for (f, present) in [
            ("centre", tissue.centre.is_some()),
            ("radius", tissue.radius.is_some()),
            ("min", tissue.min.is_some()),
            ("max", tissue.max.is_some()),
            ("cells", tissue.cells.is_some()),
            ("layers", !tissue.layers.is_empty()),
        ] {
            self.unused(f, present)?;
        }
        if tissue.path.is_none() {
            return Err(self.bad("tissue.path".into(), "an imported tissue needs the `.h5ad` file's `path`".into()));
        }
        if tissue.obsm.is_some() && tissue.obs_columns.is_some() {
            return Err(self.bad("tissue.obs_columns".into(), "give either `obsm` or `obs_columns`, not both".into()));
        }
        if let Some(cols) = &tissue.obs_columns
            && cols.len() != dims
        {
            return Err(
                self.bad("tissue.obs_columns".into(), format!("names {} columns but the grid is {dims}D", cols.len()))
            );
        }
        match (&tissue.cell_type, &tissue.cell_type_column) {
            (None, None) => {
                return Err(self.bad(
                    "tissue.cell_type_column".into(),
                    "give the `obs` column of cell types, or one `cell_type` for every cell".into(),
                ));
            }
            (Some(t), None) => {
                self.cell_type("tissue.cell_type".into(), t)?;
            }
            (Some(_), Some(_)) => {
                return Err(self.bad("tissue.cell_type".into(), "give either `cell_type` or `cell_type_column`".into()));
            }
            (None, Some(_)) => {}
        }
        self.positive("tissue.scale".into(), tissue.scale)?;
        if tissue.offset.is_some() {
            self.coords("offset", &tissue.offset)?;
        }
        Ok(())
    }

    /// A disk or box gives at least one cell; the starting cells fit in [`MAX_FIELD_BYTES`]
    /// at the measured cost per cell ([`memory::bytes_per_cell`]) and within
    /// `tissue.max_cells`.
    fn tissue_cells(&self) -> Result<(), SceneError> {
        let tissue = &self.scene.tissue;
        if matches!(tissue.shape, TissueShape::Disk | TissueShape::Box) {
            match tissue.cells {
                None => {
                    return Err(self.bad(
                        "tissue.cells".into(),
                        format!("the number of cells is required for `shape = \"{}\"`", tissue.shape.name()),
                    ));
                }
                Some(0) => return Err(self.bad("tissue.cells".into(), "`0`: at least one cell is needed".into())),
                Some(_) => {}
            }
        }
        if tissue.max_cells == Some(0) {
            return Err(self.bad("tissue.max_cells".into(), "`0`: a run holds at least one cell".into()));
        }
        if let Some(n) = self.scene.expected_cells() {
            if let Some(max) = tissue.max_cells
                && n > max
            {
                return Err(self.bad(
                    "tissue.max_cells".into(),
                    format!("`{max}` but the tissue starts with {n} cells; raise it or make fewer cells"),
                ));
            }
            let cell_bytes = n as f64 * memory::bytes_per_cell(self.scene.genes.len());
            if cell_bytes > MAX_FIELD_BYTES {
                return Err(self.bad(
                    "tissue.cells".into(),
                    format!(
                        "`{n}` cells need about {:.1} GiB; the limit is {:.0} GiB",
                        cell_bytes / 1073741824.0,
                        MAX_FIELD_BYTES / 1073741824.0
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Each tissue region: one cell type or a mixture adding up to more than 0, and a valid shape.
    fn tissue_regions(&self) -> Result<(), SceneError> {
        let dims = self.scene.dims();
        for (i, r) in self.scene.tissue.regions.iter().enumerate() {
            match (&r.cell_type, &r.mixture) {
                (Some(t), None) => {
                    self.cell_type(format!("tissue.regions[{i}].cell_type"), t)?;
                }
                (None, Some(mix)) => {
                    let mut total = 0.0;
                    for (t, &f) in mix {
                        self.cell_type(format!("tissue.regions[{i}].mixture.{t}"), t)?;
                        self.non_negative(format!("tissue.regions[{i}].mixture.{t}"), f)?;
                        total += f;
                    }
                    if total <= 0.0 {
                        return Err(self.bad(
                            format!("tissue.regions[{i}].mixture"),
                            "the fractions must add up to more than 0".into(),
                        ));
                    }
                }
                _ => {
                    return Err(self.bad(
                        format!("tissue.regions[{i}]"),
                        "give either `cell_type` or `mixture` (fractions by cell type)".into(),
                    ));
                }
            }
            r.shape.check(dims, &format!("tissue.regions[{i}]")).map_err(|(f, m)| self.bad(f, m))?;
            self.on_grid(format!("tissue.regions[{i}].shape"), &r.shape)?;
        }
        Ok(())
    }

    /// Non-negative mechanics; a membrane on an axis of the grid, strictly inside the domain.
    pub(crate) fn mechanics(&self) -> Result<(), SceneError> {
        let mechanics = &self.scene.mechanics;
        self.non_negative("mechanics.mobility".into(), mechanics.mobility)?;
        self.non_negative("mechanics.repulsion".into(), mechanics.repulsion)?;
        self.non_negative("mechanics.adhesion".into(), mechanics.adhesion)?;
        if let Some(m) = &mechanics.membrane {
            self.non_negative("mechanics.membrane.adhesion".into(), m.adhesion)?;
            self.non_negative("mechanics.membrane.repulsion".into(), m.repulsion)?;
            let axis = m.axis.index();
            if axis >= self.scene.dims() {
                return Err(self.bad("mechanics.membrane.axis".into(), format!("`{:?}` but the grid is 2D", m.axis)));
            }
            let extent = self.scene.grid.size[axis];
            if !(m.position.is_finite() && m.position > 0.0 && m.position < extent) {
                return Err(self.bad(
                    "mechanics.membrane.position".into(),
                    format!("`{}` must lie inside the domain (0 to {extent})", m.position),
                ));
            }
        }
        Ok(())
    }

    /// A TorchScript model names its file.
    pub(crate) fn model(&self) -> Result<(), SceneError> {
        if self.scene.model.kind == ModelSpec::Torchscript && self.scene.model.path.is_none() {
            return Err(self.bad("model.path".into(), "a `torchscript` model needs a `path` to its `.pt` file".into()));
        }
        Ok(())
    }

    /// The teacher: non-negative degradation, edges between known genes, ligands and
    /// cell types, non-negative maximum rates of known genes.
    pub(crate) fn teacher(&self) -> Result<(), SceneError> {
        let teacher = &self.scene.teacher;
        self.non_negative("teacher.degradation".into(), teacher.degradation)?;
        for (i, e) in teacher.edges.iter().enumerate() {
            self.gene(format!("teacher.edges[{i}].target"), &e.target)?;
            match e.source.split_once(':') {
                Some(("gene", g)) | Some(("contact", g)) => {
                    self.gene(format!("teacher.edges[{i}].source"), g)?;
                }
                Some(("neighbours", t)) => {
                    self.cell_type(format!("teacher.edges[{i}].source"), t)?;
                }
                Some(("ligand", l)) => {
                    self.ligand(format!("teacher.edges[{i}].source"), l)?;
                }
                _ => {
                    return Err(self.bad(
                        format!("teacher.edges[{i}].source"),
                        format!(
                            "`{}` must be `gene:NAME`, `ligand:NAME`, `contact:NAME` or `neighbours:CELL_TYPE`",
                            e.source
                        ),
                    ));
                }
            }
        }
        for (g, &v) in &teacher.max_rate {
            self.gene(format!("teacher.max_rate.{g}"), g)?;
            self.non_negative(format!("teacher.max_rate.{g}"), v)?;
        }
        Ok(())
    }

    /// Each perturbation: one action, known targets, a valid region on the grid and a
    /// satisfiable condition, a window that starts before the last tick and is not empty,
    /// and targets that can exist (see [`Validator::perturbation_targets`]).
    pub(crate) fn perturbations(&self) -> Result<(), SceneError> {
        for (i, p) in self.scene.perturbations.iter().enumerate() {
            let at = |f: &str| format!("perturbations[{i}].{f}");
            p.action().map_err(|(f, m)| self.bad(at(&f), m))?;
            if let Some(g) = &p.gene {
                self.gene(at("gene"), g)?;
            }
            if let Some(l) = &p.ligand {
                self.ligand(at("ligand"), l)?;
            }
            if let Some(t) = &p.cell_type {
                self.cell_type(at("cell_type"), t)?;
            }
            if let Some(shape) = &p.region {
                shape.check(self.scene.dims(), &at("region")).map_err(|(f, m)| self.bad(f, m))?;
                self.on_grid(at("region"), shape)?;
            }
            if let Some(w) = &p.when {
                self.gene(at("when.gene"), &w.gene)?;
                match (w.above, w.below) {
                    (None, None) => return Err(self.bad(at("when"), "give `above`, `below` or both".into())),
                    (Some(a), Some(b)) if a >= b => {
                        return Err(self.bad(
                            at("when"),
                            format!("no expression is above `{a}` and below `{b}`, so it selects no cell"),
                        ));
                    }
                    (_, Some(b)) if b <= 0.0 => {
                        return Err(self.bad(
                            at("when.below"),
                            format!("`{b}`: expression is never negative, so it selects no cell"),
                        ));
                    }
                    _ => {}
                }
            }
            if let Some(ids) = &p.ids
                && ids.is_empty()
            {
                return Err(self.bad(at("ids"), "an empty list targets no cell".into()));
            }
            self.perturbation_window(i, p)?;
            self.perturbation_targets(i, p)?;
        }
        Ok(())
    }

    /// The window: a start at or after 0 and before the last tick (once-only kinds fire at
    /// the first tick at or after `start`; the stages of the last tick see time
    /// `duration − dt`), a stop not before the start, and, for kinds that act while
    /// active, a stop after the start.
    fn perturbation_window(&self, i: usize, p: &Perturbation) -> Result<(), SceneError> {
        let at = |f: &str| format!("perturbations[{i}].{f}");
        let time = &self.scene.time;
        self.non_negative(at("start"), p.start)?;
        if let Some(stop) = p.stop {
            if stop < p.start {
                return Err(self.bad(at("stop"), format!("`{stop}` ends before its `start` (`{}`)", p.start)));
            }
            let once = matches!(p.kind, PerturbationName::Bolus | PerturbationName::Ablation | PerturbationName::Graft);
            if stop == p.start && !once {
                return Err(
                    self.bad(at("stop"), format!("`{stop}` equals its `start`: the window is empty, so it never acts"))
                );
            }
        }
        let last = (self.scene.ticks().max(1) - 1) as f64 * f64::from(time.dt);
        if f64::from(p.start) > last + 1e-6 * f64::from(time.dt) {
            return Err(self.bad(
                at("start"),
                format!(
                    "`{}` is at or after the end of the run: its last tick starts at {last} min (`time.duration` = {}), so it never acts",
                    p.start, time.duration
                ),
            ));
        }
        Ok(())
    }

    /// Targets that can never exist: a cell type no cell has at the start and none is
    /// grafted, or ids no cell has at the start when no cell divides or is grafted (ids are
    /// never reused). Targets that are only empty at the start are warnings.
    fn perturbation_targets(&self, i: usize, p: &Perturbation) -> Result<(), SceneError> {
        let at = |f: &str| format!("perturbations[{i}].{f}");
        if !Self::targets_cells(p) {
            return Ok(());
        }
        if let (Some(t), Some(types)) = (&p.cell_type, self.types_at_start())
            && !types.contains(&t.as_str())
            && !self.grafted_types().contains(&t.as_str())
        {
            return Err(self.bad(
                at("cell_type"),
                format!(
                    "no cell of type `{t}` exists at the start (the tissue is made of {}) and none is grafted, so it selects no cell",
                    types.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if let (Some(ids), Some(n)) = (&p.ids, self.exact_cells())
            && ids.iter().all(|&id| id >= n as u64)
            && !self.cells_may_be_added()
        {
            return Err(self.bad(
                at("ids"),
                format!(
                    "`{ids:?}`: the tissue's cells have ids 0 to {} and no cell divides or is grafted, so no cell ever has these ids",
                    n.saturating_sub(1)
                ),
            ));
        }
        Ok(())
    }

    /// The exact number of starting cells, where the scene says (a disk or a box).
    fn exact_cells(&self) -> Option<usize> {
        matches!(self.scene.tissue.shape, TissueShape::Disk | TissueShape::Box).then_some(self.scene.tissue.cells?)
    }

    /// Whether cells may be born (a cell type with a cycle) or grafted during the run.
    fn cells_may_be_added(&self) -> bool {
        self.scene.cell_types.iter().any(|t| t.cycle.is_some()) || !self.grafted_types().is_empty()
    }

    /// The TorchScript model's files, looked at without loading them (that needs
    /// libtorch): a missing `.pt` or `.json` is a warning, not an error, because a scene
    /// may name a model that `explant train` is about to write, or be run with
    /// `--teacher` or `--model` instead.
    fn model_files(&self) -> Option<SceneWarning> {
        let given = self.scene.model.path.as_ref().filter(|_| self.scene.model.kind == ModelSpec::Torchscript)?;
        let pt =
            if given.is_absolute() { given.clone() } else { self.path.parent().unwrap_or(Path::new(".")).join(given) };
        let problem = if !pt.is_file() {
            format!("`{}` does not exist or is not a file (paths are relative to the scene file)", pt.display())
        } else if !pt.with_extension("json").is_file() {
            format!("`{}` has no metadata `{}` beside it", pt.display(), pt.with_extension("json").display())
        } else {
            return None;
        };
        Some(self.warn(
            "model.path".into(),
            format!(
                "{problem}: a run with this model will fail (`--teacher` or `--model M.pt` run the scene with another)"
            ),
        ))
    }

    /// What may act later but selects nothing at the start: a perturbation's or an output
    /// region away from the starting tissue, ids no starting cell has, a model file that is not there. Call on a valid scene.
    pub(crate) fn warnings(&self) -> Vec<SceneWarning> {
        let mut out: Vec<SceneWarning> = self.model_files().into_iter().collect();
        let extent = self.tissue_extent();
        let away = |shape: &Shape| extent.as_ref().is_some_and(|e| !shape.overlaps(e));
        let tissue = || extent.as_ref().map(Shape::describe).unwrap_or_default();
        for (i, p) in self.scene.perturbations.iter().enumerate() {
            if !Self::targets_cells(p) {
                continue;
            }
            if let Some(shape) = &p.region
                && away(shape)
            {
                out.push(self.warn(
                    format!("perturbations[{i}].region"),
                    format!(
                        "the region ({}) holds no cell at the start (the tissue: {}); it acts only on cells that move or grow into it",
                        shape.describe(),
                        tissue()
                    ),
                ));
            }
            if let (Some(ids), Some(n)) = (&p.ids, self.exact_cells())
                && ids.iter().all(|&id| id >= n as u64)
            {
                out.push(self.warn(
                    format!("perturbations[{i}].ids"),
                    format!(
                        "`{ids:?}`: no cell has these ids at the start (ids 0 to {}); it acts only on cells born or grafted later",
                        n.saturating_sub(1)
                    ),
                ));
            }
        }
        for (i, r) in self.scene.output.regions.iter().enumerate() {
            if away(&r.shape) {
                out.push(self.warn(
                    format!("output.regions[{i}].shape"),
                    format!(
                        "region `{}` ({}) holds no cell at the start (the tissue: {}); its rows count 0 cells until cells move in",
                        r.name,
                        r.shape.describe(),
                        tissue()
                    ),
                ));
            }
        }
        out
    }

    /// Outputs: increasing distance bands, a positive bin, snapshot times within the
    /// run, plainly and uniquely named regions, a known gene and ligand to colour by, a
    /// known compression.
    pub(crate) fn output(&self) -> Result<(), SceneError> {
        let output = &self.scene.output;
        let duration = self.scene.time.duration;
        let bands = &output.distance_bands;
        if bands.is_empty()
            || bands.iter().any(|b| !b.is_finite() || *b < 0.0)
            || bands.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(self.bad(
                "output.distance_bands".into(),
                format!("`{bands:?}` must be non-negative, increasing edges (µm), at least one"),
            ));
        }
        self.positive("output.distance_bin".into(), output.distance_bin)?;
        for (i, &t) in output.snapshot_times.iter().enumerate() {
            if !(t.is_finite() && t >= 0.0 && t <= duration) {
                return Err(self.bad(
                    format!("output.snapshot_times[{i}]"),
                    format!("`{t}` must lie within the run (0 to {duration} min)"),
                ));
            }
        }
        for (i, r) in output.regions.iter().enumerate() {
            if r.name.is_empty() || r.name.contains([',', '\n', '"']) {
                return Err(self.bad(
                    format!("output.regions[{i}].name"),
                    format!("`{}` must be a plain, non-empty name", r.name),
                ));
            }
            if output.regions[..i].iter().any(|o| o.name == r.name) {
                return Err(
                    self.bad(format!("output.regions[{i}].name"), format!("region `{}` is named twice", r.name))
                );
            }
            r.shape.check(self.scene.dims(), &format!("output.regions[{i}].shape")).map_err(|(f, m)| self.bad(f, m))?;
            self.on_grid(format!("output.regions[{i}].shape"), &r.shape)?;
        }
        if let Some(g) = &output.colour_by_gene {
            self.gene("output.colour_by_gene".into(), g)?;
        }
        if let Some(l) = &output.heatmap_ligand {
            self.ligand("output.heatmap_ligand".into(), l)?;
        }
        output.h5ad_gzip_level().map_err(|m| self.bad("output.h5ad_compression".into(), m))?;
        Ok(())
    }
}
