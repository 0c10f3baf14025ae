//! The serde types of a scene file, versions 1 and 2 (which differ only in the default
//! of `grid.scheme`, applied by [`crate::LoadedScene::from_str`]). Every table rejects
//! unknown fields.

use std::collections::BTreeMap;
use std::path::PathBuf;

use explant_field::{Boundary, Faces, Scheme};
use serde::{Deserialize, Serialize};

/// A whole scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// Format version: 1 or 2 ([`crate::SCENE_VERSION`]); they differ only in the
    /// default of `grid.scheme`.
    pub version: u32,
    /// Short name used in outputs.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Seed of every random number in the run.
    #[serde(default)]
    pub seed: u64,
    /// Gene names: the columns of the expression state, in order.
    pub genes: Vec<String>,
    /// Time steps and duration.
    pub time: TimeSpec,
    /// The ligand grid.
    pub grid: GridSpec,
    /// Diffusible ligands.
    #[serde(default)]
    pub ligands: Vec<LigandSpec>,
    /// Contact (juxtacrine) signals.
    #[serde(default)]
    pub contact: ContactSpec,
    /// Cell types.
    pub cell_types: Vec<CellTypeSpec>,
    /// The initial tissue.
    pub tissue: TissueSpec,
    /// Centre-based mechanics.
    #[serde(default)]
    pub mechanics: MechanicsSpec,
    /// Which response model updates the cells' state.
    #[serde(default)]
    pub model: ModelConfig,
    /// The mechanistic reference model (the teacher).
    #[serde(default)]
    pub teacher: TeacherSpec,
    /// Perturbations applied during the run.
    #[serde(default)]
    pub perturbations: Vec<Perturbation>,
    /// What the run writes.
    #[serde(default)]
    pub output: OutputSpec,
}

/// Time steps, in minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpec {
    /// One tick: the step of secretion and diffusion (the explicit solver subdivides it
    /// as its stability needs), and of the cell state and mechanics unless
    /// `mechanics_dt` / `state_dt` make those coarser.
    pub dt: f32,
    /// Simulated time of the run.
    pub duration: f32,
    /// Interval between recorded time points.
    pub record_every: f32,
    /// Step of neighbours, mechanics and fate, minutes: a whole number of ticks
    /// (default: every tick). PhysiCell's default is 0.1 min.
    #[serde(default)]
    pub mechanics_dt: Option<f32>,
    /// Step of the cell state (sense for the model, respond), minutes: a whole number of
    /// ticks (default: every tick). PhysiCell's phenotype step is 6 min.
    #[serde(default)]
    pub state_dt: Option<f32>,
}

/// The ligand grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSpec {
    /// Extent in µm: `[x, y]` for 2D or `[x, y, z]` for 3D. The domain starts at 0.
    pub size: Vec<f32>,
    /// Voxel edge in µm.
    pub dx: f32,
    /// Time integration of diffusion: `explicit` (substepped forward Euler), `implicit`
    /// (locally one-dimensional backward Euler, BioFVM's scheme, one solve per tick) or
    /// `adi` (Douglas ADI, Crank–Nicolson in time: second order, one stencil pass and one
    /// half-step solve per axis per tick). When omitted: `adi` in a version 2 scene,
    /// `explicit` in a version 1 scene ([`crate::default_scheme`], applied on loading).
    #[serde(default)]
    pub scheme: Scheme,
}

/// One diffusible ligand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LigandSpec {
    /// Name (also the field's name in outputs).
    pub name: String,
    /// Diffusion coefficient, µm²/min.
    pub diffusion: f32,
    /// First-order decay rate, 1/min.
    pub decay: f32,
    /// The gene whose expression scales each cell's secretion and export.
    pub secreted_by: String,
    /// Net export: amount per minute per unit of `secreted_by` expression, whatever the
    /// local concentration (PhysiCell's "net export rate").
    #[serde(default)]
    pub export_rate: f32,
    /// Secretion toward `saturation`: rate constant, 1/min per unit of `secreted_by`
    /// expression (PhysiCell's "secretion rate"); stops where the voxel reaches saturation.
    #[serde(default)]
    pub secretion_rate: f32,
    /// Saturation density of secretion (concentration).
    #[serde(default)]
    pub saturation: f32,
    /// Uptake proportional to the local concentration: 1/min per unit of receptor expression.
    #[serde(default)]
    pub uptake_rate: f32,
    /// The receptor gene: sensed signal = concentration × receptor expression.
    pub receptor: String,
    /// Boundary conditions of the grid faces (zero flux where not given).
    #[serde(default)]
    pub boundary: BoundarySpec,
    /// Initial concentration (zero if not given).
    #[serde(default)]
    pub initial: Initial,
}

/// Boundary conditions by face; `all` applies first, then the named faces override it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundarySpec {
    /// Every face.
    #[serde(default)]
    pub all: Option<Boundary>,
    /// The face at x = 0.
    #[serde(default)]
    pub x_min: Option<Boundary>,
    /// The face at x = size.
    #[serde(default)]
    pub x_max: Option<Boundary>,
    /// The face at y = 0.
    #[serde(default)]
    pub y_min: Option<Boundary>,
    /// The face at y = size.
    #[serde(default)]
    pub y_max: Option<Boundary>,
    /// The face at z = 0 (3D only).
    #[serde(default)]
    pub z_min: Option<Boundary>,
    /// The face at z = size (3D only).
    #[serde(default)]
    pub z_max: Option<Boundary>,
}

impl BoundarySpec {
    /// The six faces in the order x−, x+, y−, y+, z−, z+.
    pub fn faces(&self) -> Faces {
        let base = self.all.unwrap_or_default();
        [self.x_min, self.x_max, self.y_min, self.y_max, self.z_min, self.z_max].map(|f| f.unwrap_or(base))
    }
}

/// Initial concentration of a ligand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Initial {
    /// The same everywhere.
    Uniform {
        /// Concentration.
        value: f32,
    },
    /// `value` inside a region, `background` elsewhere (voxel centres decide).
    Region {
        /// Where.
        shape: Shape,
        /// Concentration inside.
        value: f32,
        /// Concentration outside.
        #[serde(default)]
        background: f32,
    },
    /// A NumPy `.npy` array of float32 or float64, C order, shaped `(ny, nx)` for a 2D
    /// grid or `(nz, ny, nx)` for 3D (relative paths are relative to the scene file).
    File {
        /// Path of the `.npy` file.
        path: PathBuf,
    },
}

impl Default for Initial {
    fn default() -> Self {
        Initial::Uniform { value: 0.0 }
    }
}

/// Contact signalling through neighbours within a radius.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSpec {
    /// Genes whose neighbour mean is a contact signal.
    #[serde(default)]
    pub genes: Vec<String>,
    /// Interaction radius, µm (centre to centre).
    #[serde(default = "default_contact_radius")]
    pub radius: f32,
}

fn default_contact_radius() -> f32 {
    25.0
}

impl Default for ContactSpec {
    fn default() -> Self {
        Self { genes: Vec::new(), radius: default_contact_radius() }
    }
}

/// A cell type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellTypeSpec {
    /// Name.
    pub name: String,
    /// Initial expression by gene (missing genes start at 0).
    #[serde(default)]
    pub baseline: BTreeMap<String, f32>,
    /// Type-specific bias of the teacher's regulatory input, by gene.
    #[serde(default)]
    pub bias: BTreeMap<String, f32>,
    /// Growth and division (cells of this type never divide if absent).
    #[serde(default)]
    pub cycle: Option<CycleSpec>,
    /// Programmed death: shrinks, then is removed.
    #[serde(default)]
    pub apoptosis: Option<ApoptosisSpec>,
    /// Death where a ligand (e.g. oxygen) is scarce: swells, then is removed.
    #[serde(default)]
    pub necrosis: Option<NecrosisSpec>,
    /// Directed migration up a ligand gradient, with persistence.
    #[serde(default)]
    pub chemotaxis: Option<ChemotaxisSpec>,
}

/// Growth and division. A cell's volume grows linearly from half the type's volume at
/// birth to the full volume at division; the cycle length of each cell is drawn at birth
/// from a log-normal distribution with the given mean and coefficient of variation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleSpec {
    /// Mean cycle length, minutes.
    pub duration: f32,
    /// Coefficient of variation of the cycle length (0 = every cell the same).
    #[serde(default = "default_cycle_cv")]
    pub cv: f32,
    /// The cycle progresses only while this gene's expression is at least `threshold`
    /// (a G1 checkpoint driven by the cell's state); always progresses if absent.
    #[serde(default)]
    pub gene: Option<String>,
    /// Threshold of `gene`.
    #[serde(default)]
    pub threshold: f32,
    /// Contact inhibition: no progress while the cell has more than this many
    /// neighbours within the contact radius (no limit if absent).
    #[serde(default)]
    pub max_neighbours: Option<u32>,
    /// Daughters inherit the mother's expression times `exp(noise · N(0,1))` per gene.
    #[serde(default)]
    pub inheritance_noise: f32,
}

fn default_cycle_cv() -> f32 {
    0.1
}

/// Apoptosis: entered at `rate` per minute (or `rate_above` while `gene` is at least
/// `threshold`); the cell shrinks to nothing over `duration` and is removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApoptosisSpec {
    /// Base rate, 1/min.
    #[serde(default)]
    pub rate: f32,
    /// A gene that drives apoptosis.
    #[serde(default)]
    pub gene: Option<String>,
    /// Threshold of `gene`.
    #[serde(default)]
    pub threshold: f32,
    /// Rate while `gene` ≥ `threshold`, 1/min.
    #[serde(default)]
    pub rate_above: f32,
    /// Minutes from entry to removal.
    #[serde(default = "default_apoptosis_duration")]
    pub duration: f32,
}

fn default_apoptosis_duration() -> f32 {
    60.0
}

/// Necrosis: entered at `rate` per minute while the concentration of `ligand` at the
/// cell is below `below`; the cell swells to twice its volume over `duration`, then lyses
/// and is removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NecrosisSpec {
    /// The ligand whose scarcity kills (e.g. `oxygen`).
    pub ligand: String,
    /// Concentration threshold.
    pub below: f32,
    /// Rate below threshold, 1/min.
    pub rate: f32,
    /// Minutes from entry to removal.
    #[serde(default = "default_necrosis_duration")]
    pub duration: f32,
}

fn default_necrosis_duration() -> f32 {
    120.0
}

/// Chemotaxis: the cell moves at `speed` along a direction that it re-chooses on average
/// every `persistence` minutes, `bias` of the way up the ligand's gradient and the rest at
/// random (PhysiCell's biased random walk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChemotaxisSpec {
    /// The attracting ligand.
    pub ligand: String,
    /// Migration speed, µm/min.
    pub speed: f32,
    /// 0 (random walk) to 1 (straight up the gradient).
    #[serde(default = "default_bias_one")]
    pub bias: f32,
    /// Mean time between direction changes, minutes.
    #[serde(default = "default_persistence")]
    pub persistence: f32,
    /// Migrate only while this gene (e.g. the receptor) is at least `threshold`.
    #[serde(default)]
    pub gene: Option<String>,
    /// Threshold of `gene`.
    #[serde(default)]
    pub threshold: f32,
    /// Contact inhibition of locomotion: no migration while the cell has more than this
    /// many neighbours within the contact radius (no limit if absent).
    #[serde(default)]
    pub max_neighbours: Option<u32>,
}

fn default_bias_one() -> f32 {
    1.0
}
fn default_persistence() -> f32 {
    5.0
}

/// The initial tissue: generated in a shape (a disk or ball, a box, a layered
/// epithelium) with lattice or random packing and cell types by region, or imported
/// from an AnnData `.h5ad` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TissueSpec {
    /// `disk` (a ball in 3D; the default), `box`, `epithelium` or `import`.
    #[serde(default)]
    pub shape: TissueShape,
    /// `disk`: centre, µm.
    #[serde(default)]
    pub centre: Option<Vec<f32>>,
    /// `disk`: radius, µm.
    #[serde(default)]
    pub radius: Option<f32>,
    /// `box` and `epithelium`: lower corner, µm (the epithelium's layers stack up the
    /// last axis from here).
    #[serde(default)]
    pub min: Option<Vec<f32>>,
    /// `box` and `epithelium`: upper corner, µm (the epithelium ignores its last
    /// coordinate: the layers set the height).
    #[serde(default)]
    pub max: Option<Vec<f32>>,
    /// `disk` and `box`: number of cells (the lattice spacing follows from it).
    #[serde(default)]
    pub cells: Option<usize>,
    /// `epithelium`: layers from the bottom up.
    #[serde(default)]
    pub layers: Vec<LayerSpec>,
    /// `lattice` (hexagonal in 2D, cubic in 3D, jittered by 10 % of the spacing; the
    /// default) or `random` (uniform, independent positions).
    #[serde(default)]
    pub packing: Packing,
    /// Cell radius, µm.
    #[serde(default = "default_cell_radius")]
    pub cell_radius: f32,
    /// Cell-to-cell variation of the initial expression: each gene's baseline times
    /// `exp(noise · N(0,1))`, drawn per cell from the seed (0: identical cells).
    #[serde(default)]
    pub expression_noise: f32,
    /// Cell type of cells outside every region (generated tissues; for `import`, of
    /// every cell when no `cell_type_column` is given).
    #[serde(default)]
    pub cell_type: Option<String>,
    /// Regions that set a different cell type or a mixture of types; the first match wins.
    #[serde(default)]
    pub regions: Vec<RegionSpec>,
    /// `import`: the `.h5ad` file (relative to the scene file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `import`: `obsm` key of the coordinates (default `spatial`) ...
    #[serde(default)]
    pub obsm: Option<String>,
    /// ... or names of numeric `obs` columns holding them (e.g. `["x", "y"]`).
    #[serde(default)]
    pub obs_columns: Option<Vec<String>>,
    /// `import`: `obs` column with the cell type names (matched to the scene's types).
    #[serde(default)]
    pub cell_type_column: Option<String>,
    /// `import`: µm per coordinate unit.
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// `import`: added to the scaled coordinates, µm.
    #[serde(default)]
    pub offset: Option<Vec<f32>>,
    /// The most cells the run may hold: a run whose population would grow past it stops
    /// (failed, at the fate stage) with its results so far. Default: as many as fit in
    /// half of the machine's available memory at the measured cost per cell
    /// ([`crate::memory`]).
    #[serde(default)]
    pub max_cells: Option<usize>,
}

fn default_scale() -> f32 {
    1.0
}

/// How the initial tissue is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TissueShape {
    /// A disk (2D) or ball (3D) around `centre`.
    #[default]
    Disk,
    /// An axis-aligned box from `min` to `max`.
    Box,
    /// Layers of cells stacked on the base `min`–`max`.
    Epithelium,
    /// Positions, types and expression from an AnnData file.
    Import,
}

impl TissueShape {
    /// The name used in scene files.
    pub fn name(self) -> &'static str {
        match self {
            TissueShape::Disk => "disk",
            TissueShape::Box => "box",
            TissueShape::Epithelium => "epithelium",
            TissueShape::Import => "import",
        }
    }
}

/// Packing of generated cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Packing {
    /// Hexagonal (2D) or simple cubic (3D) lattice with a small jitter.
    #[default]
    Lattice,
    /// Independent uniform positions.
    Random,
}

/// One layer of a layered epithelium.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Cell type of the layer.
    pub cell_type: String,
    /// Thickness, µm.
    pub thickness: f32,
}

fn default_cell_radius() -> f32 {
    5.0
}

/// Cells inside `shape` get `cell_type`, or a type drawn from `mixture` (fractions by
/// type name, normalised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// The cell type.
    #[serde(default)]
    pub cell_type: Option<String>,
    /// Or a mixture of types: name → fraction.
    #[serde(default)]
    pub mixture: Option<BTreeMap<String, f32>>,
    /// Where.
    pub shape: Shape,
}

/// A region of space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Shape {
    /// A circle (2D) or sphere (3D).
    Circle {
        /// Centre, µm.
        centre: Vec<f32>,
        /// Radius, µm.
        radius: f32,
    },
    /// An axis-aligned box.
    Box {
        /// Lower corner, µm.
        min: Vec<f32>,
        /// Upper corner, µm.
        max: Vec<f32>,
    },
}

impl Shape {
    /// Whether world point `p` (z ignored in 2D) lies inside.
    pub fn contains(&self, p: [f32; 3]) -> bool {
        match self {
            Shape::Circle { centre, radius } => {
                let d2: f32 = centre.iter().zip(p).map(|(c, x)| (x - c) * (x - c)).sum();
                d2 <= radius * radius
            }
            Shape::Box { min, max } => min.iter().zip(max).zip(p).all(|((lo, hi), x)| x >= *lo && x <= *hi),
        }
    }

    /// Distance from world point `p` to the region, µm (0 inside).
    pub fn distance(&self, p: [f32; 3]) -> f32 {
        match self {
            Shape::Circle { centre, radius } => {
                let d2: f32 = centre.iter().zip(p).map(|(c, x)| (x - c) * (x - c)).sum();
                (d2.sqrt() - radius).max(0.0)
            }
            Shape::Box { min, max } => {
                let d2: f32 = min
                    .iter()
                    .zip(max)
                    .zip(p)
                    .map(|((lo, hi), x)| {
                        let d = (lo - x).max(0.0).max(x - hi);
                        d * d
                    })
                    .sum();
                d2.sqrt()
            }
        }
    }

    /// Whether the two regions share a point (touching counts), in the scene's dimensions.
    pub fn overlaps(&self, other: &Shape) -> bool {
        let padded = |c: &[f32]| [0, 1, 2].map(|k| c.get(k).copied().unwrap_or(0.0));
        match (self, other) {
            (Shape::Circle { centre: a, radius: ra }, Shape::Circle { centre: b, radius: rb }) => {
                let d2: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
                d2.sqrt() <= ra + rb
            }
            (Shape::Circle { centre, radius }, b @ Shape::Box { .. })
            | (b @ Shape::Box { .. }, Shape::Circle { centre, radius }) => b.distance(padded(centre)) <= *radius,
            (Shape::Box { min: a0, max: a1 }, Shape::Box { min: b0, max: b1 }) => {
                a0.iter().zip(a1).zip(b0.iter().zip(b1)).all(|((lo, hi), (blo, bhi))| lo <= bhi && blo <= hi)
            }
        }
    }

    /// `centre = [..], radius = ..` or `min = [..], max = [..]`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Shape::Circle { centre, radius } => format!("centre = {centre:?}, radius = {radius}"),
            Shape::Box { min, max } => format!("min = {min:?}, max = {max:?}"),
        }
    }

    /// Check coordinates match the scene's dimension; errors as (field, message).
    pub(crate) fn check(&self, dims: usize, field: &str) -> Result<(), (String, String)> {
        match self {
            Shape::Circle { centre, radius } => {
                if centre.len() != dims {
                    return Err((
                        format!("{field}.centre"),
                        format!("has {} coordinates but the grid is {dims}D", centre.len()),
                    ));
                }
                if !(radius.is_finite() && *radius > 0.0) {
                    return Err((format!("{field}.radius"), format!("`{radius}` must be a positive number")));
                }
            }
            Shape::Box { min, max } => {
                if min.len() != dims || max.len() != dims {
                    return Err((format!("{field}.min"), format!("`min` and `max` need {dims} coordinates each")));
                }
                if min.iter().zip(max).any(|(a, b)| a >= b) {
                    return Err((format!("{field}.max"), "every `max` coordinate must exceed `min`".into()));
                }
            }
        }
        Ok(())
    }
}

/// Overdamped centre-based mechanics (forces as in PhysiCell's potentials).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MechanicsSpec {
    /// Velocity per unit force, µm/min per force unit.
    #[serde(default = "default_mobility")]
    pub mobility: f32,
    /// Repulsion strength between overlapping cells.
    #[serde(default = "default_repulsion")]
    pub repulsion: f32,
    /// Adhesion strength within 1.25 × the sum of radii.
    #[serde(default = "default_adhesion")]
    pub adhesion: f32,
    /// `true`: the domain's faces repel cells like a cell would (cells closer than their
    /// radius to a face are pushed back); `false`: cells are only clamped inside.
    #[serde(default)]
    pub walls: bool,
    /// A basement membrane: a plane cells adhere to and cannot cross.
    #[serde(default)]
    pub membrane: Option<MembraneSpec>,
}

/// A flat basement membrane perpendicular to an axis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembraneSpec {
    /// `x`, `y` or `z`.
    pub axis: Axis,
    /// Position of the plane along the axis, µm.
    pub position: f32,
    /// Adhesion of cells within 1.25 radii of the plane.
    #[serde(default = "default_adhesion")]
    pub adhesion: f32,
    /// Repulsion of cells closer than their radius.
    #[serde(default = "default_repulsion")]
    pub repulsion: f32,
}

/// A coordinate axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// x.
    X,
    /// y.
    Y,
    /// z.
    Z,
}

impl Axis {
    /// 0, 1 or 2.
    pub fn index(self) -> usize {
        self as usize
    }
}

fn default_mobility() -> f32 {
    1.0
}
fn default_repulsion() -> f32 {
    10.0
}
fn default_adhesion() -> f32 {
    0.4
}

impl Default for MechanicsSpec {
    fn default() -> Self {
        Self {
            mobility: default_mobility(),
            repulsion: default_repulsion(),
            adhesion: default_adhesion(),
            walls: false,
            membrane: None,
        }
    }
}

/// Which response model a scene runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSpec {
    /// The mechanistic gene-regulatory ODE in `[teacher]`.
    #[default]
    Teacher,
    /// A TorchScript `.pt` model (with its `.json` metadata beside it).
    Torchscript,
}

/// The `[model]` table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `teacher` or `torchscript`.
    #[serde(default)]
    pub kind: ModelSpec,
    /// Path of the `.pt` file, relative to the scene file.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// The teacher: `dx/dt = α ⊙ σ(W x + U (s ⊙ r) + V c + b + b_type) − γ ⊙ x`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSpec {
    /// γ: first-order degradation of every gene, 1/min.
    #[serde(default = "default_degradation")]
    pub degradation: f32,
    /// α by gene (default `default_max_rate`), expression units per minute.
    #[serde(default)]
    pub max_rate: BTreeMap<String, f32>,
    /// α of genes missing from `max_rate`.
    #[serde(default = "default_max_rate")]
    pub default_max_rate: f32,
    /// b: the regulatory input of every gene with no signal.
    #[serde(default = "default_bias")]
    pub bias: f32,
    /// Regulatory edges (the sparse, named W, U and V).
    #[serde(default)]
    pub edges: Vec<Edge>,
}

fn default_degradation() -> f32 {
    0.05
}
fn default_max_rate() -> f32 {
    0.1
}
fn default_bias() -> f32 {
    -3.0
}

impl Default for TeacherSpec {
    fn default() -> Self {
        Self {
            degradation: default_degradation(),
            max_rate: BTreeMap::new(),
            default_max_rate: default_max_rate(),
            bias: default_bias(),
            edges: Vec::new(),
        }
    }
}

/// One regulatory edge of the teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// `gene:NAME` (own expression), `ligand:NAME` (sensed ligand),
    /// `contact:NAME` (neighbour mean of a gene) or `neighbours:CELL_TYPE` (number of
    /// neighbours of that type within the contact radius).
    pub source: String,
    /// The regulated gene.
    pub target: String,
    /// Weight; negative represses.
    pub weight: f32,
}

/// What a perturbation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerturbationName {
    /// A gene's expression clamped to 0 in the target cells.
    Knockout,
    /// A gene's expression scaled by `1 − fraction` after each response.
    Knockdown,
    /// A gene's expression clamped to `value`.
    Overexpress,
    /// `value` added once, at `start`, to a ligand's concentration in the region.
    Bolus,
    /// A ligand added at `rate` (concentration per minute) in the region while active.
    Source,
    /// The target cells sense and take up only `1 − fraction` of a ligand.
    ReceptorBlock,
    /// The target cells are removed at `start`.
    Ablation,
    /// `cells` new cells of `cell_type` placed at random in the region at `start`.
    Graft,
}

impl PerturbationName {
    /// The name used in scene files.
    pub fn name(self) -> &'static str {
        match self {
            PerturbationName::Knockout => "knockout",
            PerturbationName::Knockdown => "knockdown",
            PerturbationName::Overexpress => "overexpress",
            PerturbationName::Bolus => "bolus",
            PerturbationName::Source => "source",
            PerturbationName::ReceptorBlock => "receptor_block",
            PerturbationName::Ablation => "ablation",
            PerturbationName::Graft => "graft",
        }
    }
}

/// A validated action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PerturbationKind {
    /// Clamp to 0.
    Knockout,
    /// Multiply by `1 − fraction`.
    Knockdown {
        /// Fraction removed, 0–1.
        fraction: f32,
    },
    /// Clamp to `value`.
    Overexpress {
        /// The clamped level.
        value: f32,
    },
    /// Add `value` to the ligand once.
    Bolus {
        /// Concentration added.
        value: f32,
    },
    /// Add `rate · Δt` to the ligand every tick.
    Source {
        /// Concentration per minute.
        rate: f32,
    },
    /// Scale sensing and uptake of the ligand by `1 − fraction`.
    ReceptorBlock {
        /// Fraction blocked, 0–1.
        fraction: f32,
    },
    /// Remove the target cells.
    Ablation,
    /// Add `cells` new cells.
    Graft {
        /// How many.
        cells: usize,
    },
}

/// Targets cells by their own expression: `gene` above and/or below thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// The gene.
    pub gene: String,
    /// Only cells with expression strictly above this.
    #[serde(default)]
    pub above: Option<f32>,
    /// Only cells with expression strictly below this.
    #[serde(default)]
    pub below: Option<f32>,
}

/// A perturbation over a time window. Cell targets compose: a cell is targeted when it
/// matches every filter given (`cell_type`, `region`, `ids`, `when`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Perturbation {
    /// `knockout`, `knockdown`, `overexpress`, `bolus`, `source`, `receptor_block`,
    /// `ablation` or `graft`.
    pub kind: PerturbationName,
    /// The target gene (`knockout`, `knockdown`, `overexpress`).
    #[serde(default)]
    pub gene: Option<String>,
    /// The ligand (`bolus`, `source`, `receptor_block`).
    #[serde(default)]
    pub ligand: Option<String>,
    /// `knockdown`: the fraction removed; `receptor_block`: the fraction blocked (default 1).
    #[serde(default)]
    pub fraction: Option<f32>,
    /// `overexpress`: the clamped level; `bolus`: the concentration added.
    #[serde(default)]
    pub value: Option<f32>,
    /// `source`: concentration added per minute.
    #[serde(default)]
    pub rate: Option<f32>,
    /// `graft`: number of cells added.
    #[serde(default)]
    pub cells: Option<usize>,
    /// Only cells of this type (`graft`: the type of the new cells).
    #[serde(default)]
    pub cell_type: Option<String>,
    /// Only cells inside this region (`bolus`, `source`: the voxels it covers; `graft`:
    /// where the new cells go). Everywhere if absent.
    #[serde(default)]
    pub region: Option<Shape>,
    /// Only these cell ids (as in the `.h5ad` `obs_names`).
    #[serde(default)]
    pub ids: Option<Vec<u64>>,
    /// Only cells whose expression satisfies this, evaluated every tick.
    #[serde(default)]
    pub when: Option<Predicate>,
    /// Start time, minutes.
    #[serde(default)]
    pub start: f32,
    /// Stop time, minutes (the end of the run if absent).
    #[serde(default)]
    pub stop: Option<f32>,
}

impl Perturbation {
    /// The action, checking that the fields its kind needs are present and that no
    /// field it does not use is given; errors as (field, message).
    pub fn action(&self) -> Result<PerturbationKind, (String, String)> {
        use PerturbationName as N;
        let k = self.kind;
        // Fields each kind takes (besides the window); anything else given is an error.
        let takes: &[&str] = match k {
            N::Knockout => &["gene", "cell_type", "region", "ids", "when"],
            N::Knockdown => &["gene", "fraction", "cell_type", "region", "ids", "when"],
            N::Overexpress => &["gene", "value", "cell_type", "region", "ids", "when"],
            N::Bolus => &["ligand", "value", "region"],
            N::Source => &["ligand", "rate", "region"],
            N::ReceptorBlock => &["ligand", "fraction", "cell_type", "region", "ids", "when"],
            N::Ablation => &["cell_type", "region", "ids", "when"],
            N::Graft => &["cells", "cell_type", "region"],
        };
        let given = [
            ("gene", self.gene.is_some()),
            ("ligand", self.ligand.is_some()),
            ("fraction", self.fraction.is_some()),
            ("value", self.value.is_some()),
            ("rate", self.rate.is_some()),
            ("cells", self.cells.is_some()),
            ("cell_type", self.cell_type.is_some()),
            ("region", self.region.is_some()),
            ("ids", self.ids.is_some()),
            ("when", self.when.is_some()),
        ];
        if let Some((f, _)) = given.iter().find(|(f, g)| *g && !takes.contains(f)) {
            return Err(((*f).into(), format!("a `{}` does not take `{f}` (it takes {})", k.name(), takes.join(", "))));
        }
        let need = |f: &str, v: bool| -> Result<(), (String, String)> {
            if v { Ok(()) } else { Err((f.into(), format!("a `{}` needs `{f}`", k.name()))) }
        };
        let fraction = |f: f32| -> Result<f32, (String, String)> {
            if (0.0..=1.0).contains(&f) {
                Ok(f)
            } else {
                Err(("fraction".into(), format!("`{f}` must be between 0 and 1")))
            }
        };
        let non_negative = |f: &str, v: f32| -> Result<f32, (String, String)> {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err((f.into(), format!("`{v}` must be a non-negative number")))
            }
        };
        match k {
            N::Knockout | N::Knockdown | N::Overexpress => need("gene", self.gene.is_some())?,
            N::Bolus | N::Source | N::ReceptorBlock => need("ligand", self.ligand.is_some())?,
            N::Graft => {
                need("cells", self.cells.is_some())?;
                need("cell_type", self.cell_type.is_some())?;
                need("region", self.region.is_some())?;
            }
            N::Ablation => {}
        }
        Ok(match k {
            N::Knockout => PerturbationKind::Knockout,
            N::Knockdown => {
                need("fraction", self.fraction.is_some())?;
                PerturbationKind::Knockdown { fraction: fraction(self.fraction.unwrap_or(0.0))? }
            }
            N::Overexpress => {
                need("value", self.value.is_some())?;
                PerturbationKind::Overexpress { value: non_negative("value", self.value.unwrap_or(0.0))? }
            }
            N::Bolus => {
                need("value", self.value.is_some())?;
                PerturbationKind::Bolus { value: non_negative("value", self.value.unwrap_or(0.0))? }
            }
            N::Source => {
                need("rate", self.rate.is_some())?;
                PerturbationKind::Source { rate: non_negative("rate", self.rate.unwrap_or(0.0))? }
            }
            N::ReceptorBlock => PerturbationKind::ReceptorBlock { fraction: fraction(self.fraction.unwrap_or(1.0))? },
            N::Ablation => PerturbationKind::Ablation,
            N::Graft => {
                let n = self.cells.unwrap_or(0);
                if n == 0 {
                    return Err(("cells".into(), "`0`: a graft adds at least one cell".into()));
                }
                PerturbationKind::Graft { cells: n }
            }
        })
    }

    /// Whether the perturbation acts at time `t` (minutes).
    pub fn active_at(&self, t: f32) -> bool {
        t >= self.start && self.stop.is_none_or(|s| t < s)
    }
}

/// What a run writes besides the AnnData file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Colour cells by this gene in the picture (by cell type if absent).
    #[serde(default)]
    pub colour_by_gene: Option<String>,
    /// Draw this ligand's field under the cells (the first ligand if absent).
    #[serde(default)]
    pub heatmap_ligand: Option<String>,
    /// Picture width in pixels.
    #[serde(default = "default_image_width")]
    pub image_width: u32,
    /// Edges of the distance bands (µm from the perturbation) over which `effects.csv`
    /// averages the effect on unperturbed cells; cells beyond the last edge are "far".
    #[serde(default = "default_distance_bands")]
    pub distance_bands: Vec<f32>,
    /// Bin width of the response-versus-distance curve, µm.
    #[serde(default = "default_distance_bin")]
    pub distance_bin: f32,
    /// Extra times (minutes) at which an AnnData snapshot is written, besides every
    /// `time.record_every`.
    #[serde(default)]
    pub snapshot_times: Vec<f32>,
    /// Named regions with their own pseudobulk time series (`timeseries_regions.csv`).
    #[serde(default)]
    pub regions: Vec<NamedRegion>,
    /// Compression of the AnnData snapshots' numeric datasets: `"none"` (the default),
    /// `"gzip"` (deflate at level 4, h5py's default) or `"gzip:N"` for level `N`, 1 to 9.
    /// Smaller files, slower to write; any HDF5 reader reads them.
    #[serde(default = "default_h5ad_compression")]
    pub h5ad_compression: String,
    /// ParaView files of every snapshot, written into the run's `vtk/` at the end (as
    /// `explant export RUN_DIR --vtk` writes them): `"none"` (the default), `"binary"`
    /// or `"ascii"`.
    #[serde(default)]
    pub vtk: VtkOutput,
}

/// Whether and how a run writes ParaView files (`output.vtk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VtkOutput {
    /// None.
    #[default]
    None,
    /// Binary (base64 `.vtu`, big-endian `.vtk`).
    Binary,
    /// Text.
    Ascii,
}

impl OutputSpec {
    /// The gzip level that `h5ad_compression` asks for (`None` for `"none"`), or why the
    /// value is not understood.
    pub fn h5ad_gzip_level(&self) -> Result<Option<u8>, String> {
        let bad = || {
            format!(
                "`{}` must be `\"none\"`, `\"gzip\"` or `\"gzip:N\"` with a level N from 1 to 9",
                self.h5ad_compression
            )
        };
        match self.h5ad_compression.as_str() {
            "none" => Ok(None),
            "gzip" => Ok(Some(DEFAULT_GZIP_LEVEL)),
            other => match other.strip_prefix("gzip:").map(str::parse::<u8>) {
                Some(Ok(level @ 1..=9)) => Ok(Some(level)),
                _ => Err(bad()),
            },
        }
    }
}

/// The gzip level of `output.h5ad_compression = "gzip"`: h5py's default, a good trade
/// of size against time.
const DEFAULT_GZIP_LEVEL: u8 = 4;

fn default_h5ad_compression() -> String {
    "none".to_owned()
}

/// A named region of the tissue for region-wise read-outs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedRegion {
    /// Name (a column value in the CSV).
    pub name: String,
    /// Where.
    pub shape: Shape,
}

fn default_distance_bands() -> Vec<f32> {
    vec![0.0, 25.0, 50.0, 100.0, 200.0]
}

fn default_distance_bin() -> f32 {
    20.0
}

fn default_image_width() -> u32 {
    800
}

impl Default for OutputSpec {
    fn default() -> Self {
        Self {
            colour_by_gene: None,
            heatmap_ligand: None,
            image_width: default_image_width(),
            distance_bands: default_distance_bands(),
            distance_bin: default_distance_bin(),
            snapshot_times: Vec::new(),
            regions: Vec::new(),
            h5ad_compression: default_h5ad_compression(),
            vtk: VtkOutput::None,
        }
    }
}
