//! The components of a cell entity and the resources of the tissue world.

use std::sync::Mutex;
use std::time::Duration;

use bevy_ecs::prelude::*;
use explant_field::{ChannelParams, DiffusionBackend, Field};
use glam::Vec3;

use crate::model::ResponseModel;

/// Identity of a cell, for outputs, random streams and pairing with the control: a
/// function of the cell's lineage ([`crate::lineage`]), so the same cell has the same id in
/// a run and its paired control; unique among the living cells ([`LiveIds`]).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CellId(pub u64);

/// Centre position in µm (z = 0 in a 2D tissue).
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Position(pub Vec3);

/// Cell radius in µm.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Radius(pub f32);

/// Index into the scene's cell types.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellType(pub u32);

/// The cell's row in the population's expression matrix ([`States`]): its expression
/// state, one value per scene gene, is `States::row(row)`.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row(pub u32);

/// Where a cell is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Alive: growing through its cycle (if its type has one).
    #[default]
    Cycling,
    /// Apoptotic: shrinking, removed after the type's apoptosis duration.
    Apoptotic,
    /// Necrotic: swelling, removed after the type's necrosis duration.
    Necrotic,
}

/// Life-cycle state of a cell.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Cycle {
    /// Phase.
    pub phase: Phase,
    /// Minutes since birth (since the start for founders).
    pub age: f32,
    /// Minutes of cycle progress since birth (stops while the cycle is held).
    pub progress: f32,
    /// This cell's cycle length, minutes (infinite for a type that does not divide).
    pub length: f32,
    /// Minutes since entering a death phase.
    pub dying: f32,
    /// Volume when the death phase began, µm³.
    pub volume_at_death: f32,
}

/// What a response model with fate outputs last said of a cell (see
/// [`crate::ResponseModel::respond`]): an apoptosis hazard per minute, added to the cell
/// type's own rate, and a factor in `[0, 1]` on its cycle progression. Without such a
/// model: no hazard and full progression.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct ModelFate {
    /// Apoptosis hazard, 1/min (≥ 0).
    pub hazard: f32,
    /// Cycle progression factor, `[0, 1]`.
    pub progression: f32,
}

impl Default for ModelFate {
    fn default() -> Self {
        Self { hazard: 0.0, progression: 1.0 }
    }
}

/// Migration direction (unit vector, or zero) kept between direction changes.
#[derive(Component, Debug, Clone, Copy, PartialEq, Default)]
pub struct Motility(pub Vec3);

/// The expression state of the whole population as one contiguous `N × G` row-major
/// matrix, the batch the response model reads and updates in place. Row `i` belongs to
/// the entity `owner[i]`, whose [`Row`] component is `i`; rows are removed by moving the
/// last row into the gap.
#[derive(Resource, Debug, Clone, Default)]
pub struct States {
    /// Genes per row.
    pub genes: usize,
    /// `N × G` values.
    pub data: Vec<f32>,
    /// The entity of each row.
    pub owner: Vec<Entity>,
}

impl States {
    /// Number of rows (cells).
    pub fn len(&self) -> usize {
        self.owner.len()
    }

    /// Whether there are no cells.
    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    /// One cell's expression.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.genes..(i + 1) * self.genes]
    }

    /// One cell's expression, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.genes..(i + 1) * self.genes]
    }

    /// Append a row for `owner`; returns its index.
    pub fn push(&mut self, owner: Entity, values: &[f32]) -> u32 {
        debug_assert_eq!(values.len(), self.genes);
        self.data.extend_from_slice(values);
        self.owner.push(owner);
        (self.owner.len() - 1) as u32
    }

    /// Remove row `i` by moving the last row into it; returns the entity whose row
    /// changed (to `i`), if any.
    pub fn swap_remove(&mut self, i: usize) -> Option<Entity> {
        let last = self.len() - 1;
        let g = self.genes;
        if i != last {
            self.data.copy_within(last * g..(last + 1) * g, i * g);
        }
        self.data.truncate(last * g);
        self.owner.swap_remove(i);
        (i != last).then(|| self.owner[i])
    }
}

/// The components of a cell but its [`Row`], which the crate assigns as it spawns the
/// cell and appends its row of [`States`] (one helper does both, for every new cell).
#[derive(Bundle, Debug, Clone, PartialEq)]
pub struct CellBundle {
    /// Identity.
    pub id: CellId,
    /// Centre.
    pub position: Position,
    /// Radius.
    pub radius: Radius,
    /// Type.
    pub cell_type: CellType,
    /// Parent, generation, graft origin.
    pub lineage: Lineage,
    /// Perturbation flag.
    pub perturbed: Perturbed,
    /// Life-cycle state.
    pub cycle: Cycle,
    /// Migration direction.
    pub motility: Motility,
    /// What the response model last said of the cell.
    pub model_fate: ModelFate,
}

impl CellBundle {
    /// A founder: no parent, generation 0, at rest, no model fate scores yet. A grafted
    /// founder (`grafted`) is flagged as perturbed, as its progeny will be.
    pub fn founder(id: u64, position: Vec3, radius: f32, cell_type: u32, cycle: Cycle, grafted: bool) -> Self {
        Self {
            id: CellId(id),
            position: Position(position),
            radius: Radius(radius),
            cell_type: CellType(cell_type),
            lineage: Lineage { parent: None, generation: 0, grafted },
            perturbed: Perturbed(grafted),
            cycle,
            motility: Motility::default(),
            model_fate: ModelFate::default(),
        }
    }
}

/// Spawn a cell with its expression row appended to [`States`] and its id added to
/// [`LiveIds`]. Every cell enters the world here, so the invariant "the entity's [`Row`]
/// is its row of [`States`], and that row's owner is the entity" holds from birth
/// (removals keep it: [`States::swap_remove`] names the entity whose row moved). The
/// caller has checked that the id is free.
pub(crate) fn spawn_cell(world: &mut World, cell: CellBundle, expression: &[f32]) -> Entity {
    let fresh = world.get_resource_or_insert_with(LiveIds::default).0.insert(cell.id.0);
    debug_assert!(fresh, "cell id {} is already taken", cell.id.0);
    let row = world.resource::<States>().len() as u32;
    let entity = world.spawn((cell, Row(row))).id();
    let pushed = world.resource_mut::<States>().push(entity, expression);
    debug_assert_eq!(pushed, row);
    entity
}

/// The ids of the cells in the world, kept by the only functions that add and remove
/// cells, so the fate stage can refuse a new id that a living cell holds (see
/// [`crate::lineage`]). Derived from the cells, so a checkpoint does not store it.
#[derive(Resource, Debug, Clone, Default)]
pub struct LiveIds(pub std::collections::HashSet<u64>);

/// Lineage: the parent's id (none for founders) and the generation.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage {
    /// Parent cell, if born in the run.
    pub parent: Option<u64>,
    /// 0 for founders.
    pub generation: u32,
    /// Whether the cell, or the cell it descends from, was added by a graft.
    pub grafted: bool,
}

/// Whether a perturbation acted on the cell at the last tick.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perturbed(pub bool);

/// The simulation clock.
#[derive(Resource, Debug, Clone, Copy, Default)]
pub struct Clock {
    /// Ticks completed.
    pub tick: u64,
    /// Length of a tick, minutes.
    pub dt: f32,
}

impl Clock {
    /// Simulated minutes elapsed.
    pub fn time(&self) -> f64 {
        self.tick as f64 * f64::from(self.dt)
    }
}

/// Ligand concentrations on the grid and their transport constants.
#[derive(Resource, Debug)]
pub struct Ligands {
    /// The field (channel-major).
    pub field: Field,
    /// Per-ligand diffusion and decay.
    pub params: Vec<ChannelParams>,
    /// Per ligand: how cells put it on and take it off the grid.
    pub coupling: Vec<Coupling>,
    /// Per ligand: the receptor gene that gates sensing.
    pub receptor: Vec<usize>,
    /// Per ligand: net amount cells have added to the grid so far (secretion + export −
    /// uptake), accumulated in f64 for mass-balance checks.
    pub exchanged: Vec<f64>,
    /// What secretion, uptake, model release and ligand sources added to `field` since
    /// the last diffusion step, `(index into field.data, amount)` in the order added, for
    /// a scheme that takes sources into its step ([`explant_field::Scheme::Adi`]);
    /// recorded only when `record_added` is set, cleared by each diffusion step.
    pub added: Vec<(u32, f32)>,
    /// Whether `added` is recorded (the diffusion backend's scheme is ADI).
    pub record_added: bool,
    /// The tick of the last sharp change of the field (0: the initial field; a bolus):
    /// the ADI scheme damps the [`explant_field::damped_steps`] steps from it.
    pub restart_tick: u64,
}

impl Ligands {
    /// Note that `amount` was just added at `index` of the field (if recording).
    #[inline]
    pub(crate) fn note_added(&mut self, index: usize, amount: f32) {
        note_added(&mut self.added, self.record_added, index, amount);
    }
}

/// Push `(index, amount)` onto a source list when `record` is set and the amount is not
/// zero: the one rule for [`Ligands::added`] and the split parts' list, callable where
/// the ligands themselves are borrowed.
#[inline]
pub(crate) fn note_added(list: &mut Vec<(u32, f32)>, record: bool, index: usize, amount: f32) {
    if record && amount != 0.0 {
        list.push((index as u32, amount));
    }
}

/// How cells exchange one ligand with the grid (PhysiCell's secretion model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coupling {
    /// Gene whose expression scales secretion and export.
    pub gene: usize,
    /// Net export, amount/min per unit expression.
    pub export: f32,
    /// Secretion rate toward saturation, 1/min per unit expression.
    pub secretion: f32,
    /// Saturation density.
    pub saturation: f32,
    /// Uptake rate, 1/min per unit receptor expression.
    pub uptake: f32,
    /// Receptor gene (gates uptake as well as sensing).
    pub receptor: usize,
}

/// The diffusion backend chosen for this run.
#[derive(Resource)]
pub struct Diffuser(pub Box<dyn DiffusionBackend>);

/// The response model chosen for this run.
#[derive(Resource)]
pub struct Model(pub Mutex<Box<dyn ResponseModel>>);

/// Per-tick batch buffers, indexed by [`Row`]: gathered at the start of the tick
/// (`secrete`), filled by `sense` and read by later stages of the same tick; the
/// `fate` stage, which adds and removes cells, comes last.
#[derive(Resource, Debug, Default)]
pub struct Batch {
    /// Whether positions, radii, types and ids match the world (cleared by `fate`,
    /// which changes them, and by a row re-sort); `secrete` re-gathers when not.
    pub fresh: bool,
    /// Cells in the batch.
    pub cells: usize,
    /// Cell ids, `N`.
    pub ids: Vec<u64>,
    /// Positions, `N`.
    pub positions: Vec<Vec3>,
    /// The ligand-grid voxel holding each cell's centre, `N`, for the grid in
    /// `voxels_of` (`None`: stale, recomputed on next use; cleared whenever `positions`
    /// change). See [`Batch::cell_voxels`].
    pub voxels: Vec<u32>,
    /// The grid `voxels` were computed on, while they match `positions`.
    pub voxels_of: Option<explant_field::Grid>,
    /// Counts the recomputations of `voxels`, so that what is built from them can tell
    /// when they changed.
    pub voxels_generation: u64,
    /// The mechanics step's new positions before they replace `positions`: a buffer
    /// kept for its memory (a fresh one of 10⁶ cells cost page faults at every step).
    pub next_positions: Vec<Vec3>,
    /// Radii, `N`.
    pub radii: Vec<f32>,
    /// Whether the cell is alive (not apoptotic or necrotic), `N`.
    pub alive: Vec<bool>,
    /// Sensed ligands, `N × L`.
    pub sensed: Vec<f32>,
    /// Neighbour means of contact genes, `N × G`.
    pub contact: Vec<f32>,
    /// Neighbours of each cell type, `N × T` counts.
    pub neighbour_types: Vec<f32>,
    /// The tick whose sense stage filled `sensed`, `contact` and `neighbour_types`
    /// (`None` before the first).
    pub sensed_at: Option<u64>,
    /// The (ligand, cell type) pairs whose sensed parts `sensed_from` holds, as
    /// [`SourceSplit`](crate::SourceSplit) tracks them (empty: no split).
    pub split_pairs: Vec<(usize, usize)>,
    /// Per pair, the part of the sensed ligand that cells of the type secreted (the
    /// type's field at the cell's voxel × receptor, as `sensed`), `N × split_pairs`.
    pub sensed_from: Vec<f32>,
    /// Receptor blocks: the fraction of each ligand each cell still senses and takes
    /// up, `N × L` (empty when no receptor block is active).
    pub unblocked: Vec<f32>,
    /// Cell types, `N`.
    pub cell_type: Vec<u32>,
    /// Neighbour lists in CSR form: neighbours of cell `i` are
    /// `neighbours[offsets[i]..offsets[i+1]]`, batch indices in ascending order.
    pub offsets: Vec<u32>,
    /// See `offsets`.
    pub neighbours: Vec<u32>,
    /// The lists `offsets` and `neighbours` are filtered from, kept between ticks.
    pub neighbour_lists: crate::neighbours::SkinLists,
    /// `dx/dt` from the model, `N × G`.
    pub rates: Vec<f32>,
    /// Secretion from a model that gives it, `N × L` amount/min (else empty).
    pub secretion: Vec<f32>,
    /// Fate scores from a model that gives them, `N × 2` (else empty).
    pub fate_scores: Vec<f32>,
    /// When set, `respond` keeps a copy of the expression the model was given in
    /// [`Batch::inputs`], so that (inputs, sensed, contact, cell_type, rates) of the last
    /// model call form consistent rows (e.g. to collect training data from trajectories;
    /// later stages may reorder the rows of [`States`]).
    pub keep_inputs: bool,
    /// See `keep_inputs`: expression as the model saw it, `N × G`.
    pub inputs: Vec<f32>,
    /// The tick of the last model call and its state step in minutes (`None` before
    /// the first), so a driver knows whether this tick's `rates` are new.
    pub responded: Option<(u64, f32)>,
}

impl Batch {
    /// Each cell's voxel on `grid` ([`explant_field::Grid::voxel_of`] of its position),
    /// computed once per change of the positions (a gather, a mechanics step) rather
    /// than in every stage of every tick.
    pub fn cell_voxels(&mut self, grid: &explant_field::Grid) -> &[u32] {
        if self.voxels_of != Some(*grid) || self.voxels.len() != self.cells {
            use rayon::prelude::*;
            let positions = &self.positions[..self.cells];
            self.voxels.clear();
            self.voxels.par_extend(positions.par_iter().map(|p| grid.voxel_of(p.to_array()) as u32));
            self.voxels_of = Some(*grid);
            self.voxels_generation += 1;
        }
        &self.voxels
    }

    /// Mark the positions as changed: the voxels are recomputed on next use.
    pub fn positions_moved(&mut self) {
        self.voxels_of = None;
    }
}

/// Fixed per-run settings the stages read.
#[derive(Resource, Debug, Clone)]
pub struct Settings {
    /// Number of genes.
    pub genes: usize,
    /// Gene names, in the scene's order (for messages).
    pub gene_names: Vec<String>,
    /// Ligand names, in the scene's order (for messages).
    pub ligand_names: Vec<String>,
    /// Number of ligands.
    pub ligands: usize,
    /// Number of cell types.
    pub cell_types: usize,
    /// Dense mask of contact genes.
    pub contact_mask: Vec<bool>,
    /// Life-cycle and migration rules per cell type.
    pub rules: Vec<TypeRules>,
    /// Radius of a full-grown cell, µm.
    pub cell_radius: f32,
    /// Baseline expression of each cell type (for grafted cells).
    pub baselines: Vec<Vec<f32>>,
    /// Contact interaction radius, µm.
    pub contact_radius: f32,
    /// Mechanics constants.
    pub mechanics: explant_scene::MechanicsSpec,
    /// The domain's extent, µm (z = 0 for 2D).
    pub domain: Vec3,
    /// 2 or 3.
    pub dims: usize,
    /// Perturbations with their names resolved.
    pub perturbations: Vec<PlannedPerturbation>,
    /// Record every this many ticks.
    pub record_interval: u64,
    /// Mechanics and fate run every this many ticks, with a step of that many ticks.
    pub mechanics_every: u64,
    /// The response model runs every this many ticks, with a step of that many ticks.
    pub state_every: u64,
    /// Seed of the run.
    pub seed: u64,
    /// The most cells the run may hold (the fate stage stops the run before passing it).
    pub cell_limit: explant_scene::CellLimit,
}

/// A scene perturbation with its names resolved to indices.
#[derive(Debug, Clone)]
pub struct PlannedPerturbation {
    /// The scene's entry (window, region and the rest).
    pub spec: explant_scene::Perturbation,
    /// What it does.
    pub action: explant_scene::PerturbationKind,
    /// Index of the target gene, for gene perturbations.
    pub gene: Option<usize>,
    /// Index of the ligand, for ligand perturbations.
    pub ligand: Option<usize>,
    /// Index of the cell type: the target filter, or a graft's type.
    pub cell_type: Option<u32>,
    /// Expression predicate: gene index, strictly above, strictly below.
    pub when: Option<(usize, Option<f32>, Option<f32>)>,
    /// Target ids, sorted.
    pub ids: Option<Vec<u64>>,
}

impl PlannedPerturbation {
    /// Resolve one validated scene perturbation.
    pub fn of(scene: &explant_scene::Scene, p: &explant_scene::Perturbation) -> Option<Self> {
        Some(Self {
            spec: p.clone(),
            action: p.action().ok()?,
            gene: p.gene.as_deref().and_then(|g| scene.gene_index(g)),
            ligand: p.ligand.as_deref().and_then(|l| scene.ligands.iter().position(|x| x.name == l)),
            cell_type: p.cell_type.as_ref().and_then(|t| scene.cell_type_index(t)).map(|t| t as u32),
            when: p.when.as_ref().and_then(|w| scene.gene_index(&w.gene).map(|g| (g, w.above, w.below))),
            ids: p.ids.clone().map(|mut v| {
                v.sort_unstable();
                v
            }),
        })
    }

    /// Whether a cell matches every target filter (the time window is checked apart).
    pub fn targets(&self, id: u64, cell_type: u32, position: Vec3, expression: &[f32]) -> bool {
        if self.cell_type.is_some_and(|c| c != cell_type) {
            return false;
        }
        if self.spec.region.as_ref().is_some_and(|r| !r.contains(position.to_array())) {
            return false;
        }
        if self.ids.as_ref().is_some_and(|ids| ids.binary_search(&id).is_err()) {
            return false;
        }
        if let Some((g, above, below)) = self.when {
            let x = expression[g];
            if above.is_some_and(|a| x <= a) || below.is_some_and(|b| x >= b) {
                return false;
            }
        }
        true
    }

    /// Whether it acts on cells (gene clamps, receptor block, ablation) rather than on
    /// the grid or by adding cells.
    pub fn acts_on_cells(&self) -> bool {
        use explant_scene::PerturbationKind as K;
        matches!(
            self.action,
            K::Knockout | K::Knockdown { .. } | K::Overexpress { .. } | K::ReceptorBlock { .. } | K::Ablation
        )
    }
}

/// Once-only perturbations (bolus, ablation, graft) that have fired, by index, and
/// where cells were ablated (for distances to the perturbation).
#[derive(Resource, Debug, Clone, Default)]
pub struct PerturbationLog {
    /// Per planned perturbation: whether it has fired.
    pub fired: Vec<bool>,
    /// Positions of ablated cells.
    pub ablated: Vec<Vec3>,
    /// Per ligand: amount added by boluses and sources (concentration × volume).
    pub injected: Vec<f64>,
}

/// Set by a stage that failed; the remaining stages skip and the run stops.
#[derive(Resource, Debug, Default)]
pub struct Failure(pub Option<crate::CoreError>);

/// Wall time spent in each stage.
#[derive(Resource, Debug, Clone, Default)]
pub struct StageTimers {
    /// Accumulated time per stage, indexed by `Stage as usize`.
    pub total: [Duration; crate::Stage::ALL.len()],
}

impl StageTimers {
    /// Add `d` to `stage`.
    pub fn add(&mut self, stage: crate::Stage, d: Duration) {
        self.total[stage as usize] += d;
    }
}

/// A cell type's life-cycle and migration rules with names resolved to indices.
#[derive(Debug, Clone, Default)]
pub struct TypeRules {
    /// Growth and division, with the index of the gating gene.
    pub cycle: Option<(explant_scene::CycleSpec, Option<usize>)>,
    /// Apoptosis, with the index of the driving gene.
    pub apoptosis: Option<(explant_scene::ApoptosisSpec, Option<usize>)>,
    /// Necrosis, with the index of the ligand.
    pub necrosis: Option<(explant_scene::NecrosisSpec, usize)>,
    /// Chemotaxis, with the indices of the ligand and the gating gene.
    pub chemotaxis: Option<(explant_scene::ChemotaxisSpec, usize, Option<usize>)>,
}

impl TypeRules {
    /// Resolve the rules of every cell type of a validated scene.
    pub fn of_scene(scene: &explant_scene::Scene) -> Vec<TypeRules> {
        let ligand = |name: &str| scene.ligands.iter().position(|l| l.name == name).unwrap_or(0);
        let gene = |name: &Option<String>| name.as_deref().and_then(|g| scene.gene_index(g));
        scene
            .cell_types
            .iter()
            .map(|t| TypeRules {
                cycle: t.cycle.clone().map(|c| {
                    let g = gene(&c.gene);
                    (c, g)
                }),
                apoptosis: t.apoptosis.clone().map(|a| {
                    let g = gene(&a.gene);
                    (a, g)
                }),
                necrosis: t.necrosis.clone().map(|n| {
                    let l = ligand(&n.ligand);
                    (n, l)
                }),
                chemotaxis: t.chemotaxis.clone().map(|c| {
                    let (l, g) = (ligand(&c.ligand), gene(&c.gene));
                    (c, l, g)
                }),
            })
            .collect()
    }
}

/// Volume of a sphere of radius `r`.
pub fn sphere_volume(r: f32) -> f32 {
    4.0 / 3.0 * std::f32::consts::PI * r * r * r
}

/// Radius of a sphere of volume `v`.
pub fn sphere_radius(v: f32) -> f32 {
    (v.max(0.0) * 3.0 / (4.0 * std::f32::consts::PI)).cbrt()
}
