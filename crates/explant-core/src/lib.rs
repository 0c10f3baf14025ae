//! The explant tissue: cells as `bevy_ecs` entities and one tick as named stages.
//!
//! A cell is an entity with a [`CellId`], a [`Position`] (2D or 3D), a [`Radius`], a
//! [`CellType`], a [`Row`] of the population's contiguous `N × G` expression matrix
//! ([`States`], which the response model reads and updates in place), a [`Cycle`]
//! (phase, age, progress), a [`Motility`] direction, a [`Lineage`] and a [`Perturbed`]
//! flag. Ligands live on a grid ([`Ligands`]) advanced by a [`DiffusionBackend`]; the
//! cells' response is a [`ResponseModel`] run on the whole population at once. Both
//! backends are traits, so this crate builds and tests without wgpu or libtorch.
//!
//! One tick runs the stages of [`Stage`] in order, each a system in a `bevy_ecs`
//! schedule:
//!
//! 1. **secrete** — ligand genes deposit onto the grid;
//! 2. **diffuse** — ligands diffuse and decay (CPU or GPU backend);
//! 3. **sense** — neighbours within the contact radius, contact-signal means, and
//!    receptor-gated ligand concentrations at each cell (then, when a [`ChannelClamp`] is
//!    set, the clamped signals are overwritten by a paired control's: [`clamp`]);
//! 4. **respond** — the response model maps state + signals to `dx/dt`; Euler step;
//! 5. **perturb** — the scene's clamps (knockout, knockdown, overexpression);
//! 6. **mechanics** — overdamped centre-based motion, walls, basement membrane,
//!    chemotaxis;
//! 7. **fate** — growth, division, apoptosis and necrosis (cells are added and removed);
//! 8. **record** — the clock advances; pseudobulk time series and sanity checks.

mod checkpoint;
pub mod clamp;
mod components;
pub mod effects;
mod error;
mod initial;
mod life;
pub mod lineage;
mod mechanics;
pub mod model;
pub mod neighbours;
mod recording;
pub mod residency;
pub mod rng;
mod schedule;
pub mod score;
mod stages;
mod tissue;

use std::sync::Mutex;
use std::time::Duration;

use bevy_ecs::prelude::*;
use explant_field::{ChannelParams, DiffusionBackend, Grid};
use explant_scene::Scene;
use glam::Vec3;

pub use checkpoint::{Decoder, Encoder, SimState};
pub use clamp::{Channel, ChannelClamp, ChannelValues, SourceSplit};
pub use components::*;
pub use error::{CoreError, ModelError};
pub use life::{SORT_INTERVAL, sort_rows};
pub use mechanics::mechanics_stability_note;
pub use model::{Extras, ModelSignature, ResponseInput, ResponseModel, Teacher, jacobian_width};
pub use recording::{PseudobulkRow, RUNAWAY, Recording, RegionRow};
pub use residency::FieldHome;
pub use tissue::InitialCells;

/// The stages of a tick, in the order they run (the crate docs say what each does).
///
/// Each is a `bevy_ecs` system set, chained in this order. Every stage is skipped once
/// a stage has failed in the tick; sense runs at the ticks where respond or mechanics
/// do, respond every `time.state_dt`, mechanics and fate every `time.mechanics_dt`, and
/// perturb only when the scene plans perturbations. These are run conditions on the
/// sets (see the `schedule` module), as is the timing of each stage
/// ([`Simulation::stage_times`]), so the stage bodies hold only their physics.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Ligand genes deposit onto the grid.
    Secrete,
    /// Ligands diffuse and decay.
    Diffuse,
    /// Neighbours, contact signals and sensed ligands.
    Sense,
    /// The response model updates expression.
    Respond,
    /// Perturbation clamps.
    Perturb,
    /// Cell motion.
    Mechanics,
    /// Growth, division and death.
    Fate,
    /// Clock, time series, sanity checks.
    Record,
}

impl Stage {
    /// Every stage, in tick order.
    pub const ALL: [Stage; 8] = [
        Stage::Secrete,
        Stage::Diffuse,
        Stage::Sense,
        Stage::Respond,
        Stage::Perturb,
        Stage::Mechanics,
        Stage::Fate,
        Stage::Record,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Secrete => "secrete",
            Stage::Diffuse => "diffuse",
            Stage::Sense => "sense",
            Stage::Respond => "respond",
            Stage::Perturb => "perturb",
            Stage::Mechanics => "mechanics",
            Stage::Fate => "fate",
            Stage::Record => "record",
        }
    }
}

/// Per-cell values copied out of the world, in a stable order (by cell id).
#[derive(Debug, Clone, PartialEq)]
pub struct CellTable {
    /// Cell ids.
    pub ids: Vec<u64>,
    /// Cell type indices.
    pub cell_types: Vec<u32>,
    /// Generations.
    pub generations: Vec<u32>,
    /// Positions, µm.
    pub positions: Vec<[f32; 3]>,
    /// Radii, µm.
    pub radii: Vec<f32>,
    /// Whether a perturbation acted at the last tick.
    pub perturbed: Vec<bool>,
    /// Parent ids (`u64::MAX` for founders).
    pub parents: Vec<u64>,
    /// Life phases.
    pub phases: Vec<Phase>,
    /// Expression, `N × G` row-major.
    pub expression: Vec<f32>,
}

/// A tissue world with its tick schedule.
pub struct Simulation {
    /// The ECS world (public so tools and tests can query it).
    pub world: World,
    schedule: Schedule,
    ticks: u64,
}

impl Simulation {
    /// Build the world for a validated scene with the given backends. Checks the
    /// model's gene, ligand and cell-type names against the scene first.
    pub fn new(
        scene: &Scene,
        diffuser: Box<dyn DiffusionBackend>,
        model: Box<dyn ResponseModel>,
    ) -> Result<Self, CoreError> {
        Self::with_cells(scene, diffuser, model, None)
    }

    /// As [`Simulation::new`], starting from `cells` instead of the tissue the scene
    /// generates; a scene whose tissue is imported (`shape = "import"`) needs them.
    pub fn with_cells(
        scene: &Scene,
        diffuser: Box<dyn DiffusionBackend>,
        model: Box<dyn ResponseModel>,
        cells: Option<InitialCells>,
    ) -> Result<Self, CoreError> {
        check_import(scene, cells.as_ref())?;
        let mut world = base_world(scene, diffuser, model)?;
        tissue::populate(&mut world, scene, cells);
        let (start, limit) = (world.resource::<States>().len(), world.resource::<Settings>().cell_limit.clone());
        if start > limit.cells {
            return Err(CoreError::TooManyCells { tick: 0, time: 0.0, cells: start, limit });
        }
        // `populate` created the cells in the rows' spatial order: no re-sort is needed.
        let schedule = schedule::tick();
        let mut sim = Self { world, schedule, ticks: scene.ticks() };
        sim.record_now()?;
        Ok(sim)
    }

    /// A simulation of `scene` in the state `state` (from [`Simulation::state`] of a
    /// simulation of the same scene): stepping it gives, bit for bit, what stepping the
    /// saved one would have. The tissue is not generated or imported.
    ///
    /// # Errors
    ///
    /// When the model does not fit the scene or the state does not fit it (another scene:
    /// other genes, grid, perturbations or cell types), naming what differs.
    pub fn restore(
        scene: &Scene,
        diffuser: Box<dyn DiffusionBackend>,
        model: Box<dyn ResponseModel>,
        state: SimState,
    ) -> Result<Self, CoreError> {
        let mut world = base_world(scene, diffuser, model)?;
        state.into_world(&mut world).map_err(CoreError::Checkpoint)?;
        Ok(Self { world, schedule: schedule::tick(), ticks: scene.ticks() })
    }

    /// Add the perturbation `p` of `scene` (the scene this simulation runs, validated with
    /// `p` as its last perturbation) between ticks: it acts from the next tick inside its
    /// time window, as if the scene had planned it. Returns `false`, changing nothing,
    /// when `p` does not resolve against `scene` (a scene not validated with it).
    pub fn add_perturbation(&mut self, scene: &Scene, p: &explant_scene::Perturbation) -> bool {
        let Some(planned) = PlannedPerturbation::of(scene, p) else { return false };
        self.world.resource_mut::<Settings>().perturbations.push(planned);
        self.world.resource_mut::<PerturbationLog>().fired.push(false);
        true
    }

    /// Everything of the state a later tick reads, for a checkpoint ([`Simulation::restore`]).
    ///
    /// # Errors
    ///
    /// When a field kept on the device cannot be read back.
    pub fn state(&mut self) -> Result<SimState, CoreError> {
        self.sync_field()?;
        Ok(SimState::of_world(&mut self.world))
    }

    /// Keep the ligand field on the diffusion backend's device between ticks (`on`), or
    /// on the host (`!on`, the default), and return whether it is now kept on the device.
    /// Only a backend that offers a resident field can keep it ([`explant_field::ResidentField`]:
    /// the GPU), and never while ligands are split by source
    /// type ([`Simulation::split_sources`]). See [`residency`] for what then crosses
    /// between host and device each tick.
    ///
    /// While the field is on the device, [`Simulation::ligands`] shows the field as of
    /// its last return to the host (each recording tick, [`Simulation::record_now`],
    /// [`Simulation::state`], [`Simulation::sync_field`]); call
    /// [`Simulation::sync_field`] before reading it between those.
    ///
    /// # Errors
    ///
    /// When the field cannot be brought back from the device (turning it off).
    pub fn keep_field_on_device(&mut self, on: bool) -> Result<bool, CoreError> {
        let split = self.world.resource::<SourceSplit>().field.is_some();
        let offered = self.world.resource_mut::<Diffuser>().0.resident().is_some();
        if !on || split || !offered {
            self.sync_field()?;
            let mut home = self.world.resource_mut::<FieldHome>();
            home.on_device = false;
            home.device_current = false;
            return Ok(false);
        }
        self.world.resource_mut::<FieldHome>().on_device = true;
        Ok(true)
    }

    /// Bring the ligand field back to the host if the device holds the current copy
    /// (nothing to do when it is kept on the host).
    ///
    /// # Errors
    ///
    /// When the device's copy cannot be read back.
    pub fn sync_field(&mut self) -> Result<(), CoreError> {
        self.world.resource_scope(|world, mut home: Mut<FieldHome>| {
            world.resource_scope(|world, mut diffuser: Mut<Diffuser>| {
                let mut ligands = world.resource_mut::<Ligands>();
                residency::to_host(&mut ligands, &mut diffuser, &mut home)
            })
        })
    }

    /// Where the ligand field is kept and how often it crossed ([`FieldHome`]).
    pub fn field_home(&self) -> &FieldHome {
        self.world.resource::<FieldHome>()
    }

    /// Ticks the scene asks for.
    pub fn total_ticks(&self) -> u64 {
        self.ticks
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        *self.world.resource::<Clock>()
    }

    /// Run one tick; an error stops the run (the world keeps the last good state of
    /// the stages that completed).
    pub fn step(&mut self) -> Result<(), CoreError> {
        self.schedule.run(&mut self.world);
        match self.world.resource_mut::<Failure>().0.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Append the current state to the recording (done automatically at tick 0 and
    /// every recording interval).
    pub fn record_now(&mut self) -> Result<(), CoreError> {
        self.sync_field()?;
        let clock = self.clock();
        let settings = self.world.resource::<Settings>().clone();
        let mut q = self.world.query::<(&CellType, &Row, &Position)>();
        let rows = recording::in_row_order(q.iter(&self.world));
        let world = &mut self.world;
        world.resource_scope(|world, mut rec: Mut<Recording>| {
            let states = world.resource::<States>();
            let ligands = world.resource::<Ligands>();
            rec.capture(&clock, &settings, rows.iter().map(|&(r, t, p)| (t, p, states.row(r as usize))), ligands)
        })
    }

    /// The signals of `channels` this simulation's last sense stage found, by cell id, to
    /// clamp another run to them ([`Simulation::clamp_channels`]); call it right after
    /// [`Simulation::step`].
    pub fn channel_values(&self, channels: &[Channel]) -> ChannelValues {
        let batch = self.world.resource::<Batch>();
        let settings = self.world.resource::<Settings>();
        // Never sensed: a tick no run will reach, so a clamp that reads it is refused.
        let tick = batch.sensed_at.unwrap_or(u64::MAX);
        ChannelValues::of_batch(batch, settings, channels, tick)
    }

    /// From the next sense stage on, hold `channels` at `values` (another run's
    /// [`Simulation::channel_values`] of the same tick) for every cell with a twin there;
    /// cells without one keep their own signals. Pass new values before every tick at
    /// which this simulation senses: values of another tick stop the run with
    /// [`CoreError::Clamp`]. An empty `channels` removes the clamp.
    ///
    /// # Errors
    ///
    /// [`CoreError::Clamp`] when `values` lacks one of `channels`.
    pub fn clamp_channels(
        &mut self,
        channels: &[Channel],
        values: std::sync::Arc<ChannelValues>,
    ) -> Result<(), CoreError> {
        let clamp = if channels.is_empty() { ChannelClamp::default() } else { ChannelClamp::new(channels, values)? };
        self.world.insert_resource(clamp);
        Ok(())
    }

    /// Split the ligands of `channels`' `ligand:NAME from TYPE` entries by secreting
    /// type from now on, so that [`Simulation::channel_values`] reports them and
    /// [`Simulation::clamp_channels`] can hold them (other channels are ignored).
    /// `diffuser` steps the split fields: give a backend of the same kind and scheme as
    /// this run's, so the split fields obey the ligands' own linear map. The parts start
    /// at 0, so call this before the first step: the initial field is no type's.
    ///
    /// # Errors
    ///
    /// [`CoreError::Clamp`] after the first step.
    pub fn split_sources(
        &mut self,
        channels: &[Channel],
        diffuser: Box<dyn explant_field::DiffusionBackend>,
    ) -> Result<(), CoreError> {
        if self.clock().tick > 0 {
            return Err(CoreError::Clamp(
                "ligands can be split by source type only before the first step (the parts start at 0)".into(),
            ));
        }
        let mut pairs: Vec<(usize, usize)> = channels
            .iter()
            .filter_map(|c| match *c {
                Channel::LigandFrom(l, t) => Some((l, t)),
                _ => None,
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        // The split parts are stepped on the host beside the ligands, so the field stays there.
        self.keep_field_on_device(false)?;
        let ligands = self.world.resource::<Ligands>();
        let split = SourceSplit::new(pairs.clone(), ligands.field.grid, &ligands.params, diffuser);
        self.world.insert_resource(split);
        let mut batch = self.world.resource_mut::<Batch>();
        batch.split_pairs = pairs;
        batch.sensed_from.clear();
        Ok(())
    }

    /// Wall time per stage so far.
    pub fn stage_times(&self) -> Vec<(Stage, Duration)> {
        let t = self.world.resource::<StageTimers>();
        Stage::ALL.iter().map(|&s| (s, t.total[s as usize])).collect()
    }

    /// The recorded time series.
    pub fn recording(&self) -> &Recording {
        self.world.resource::<Recording>()
    }

    /// The ligand field: while it is kept on the device, as of its last return to the
    /// host (see [`Simulation::keep_field_on_device`]).
    pub fn ligands(&self) -> &Ligands {
        self.world.resource::<Ligands>()
    }

    /// Names of the backends in use: (diffusion, model). The diffusion name says when
    /// the field is kept on the backend's device.
    pub fn backend_names(&self) -> (String, String) {
        let mut d = self.world.resource::<Diffuser>().0.name();
        if self.field_home().on_device() {
            d.push_str("; ligand field kept on the device");
        }
        let m = match self.world.resource::<Model>().0.lock() {
            Ok(m) => m.name(),
            Err(_) => "response model (poisoned)".into(),
        };
        (d, m)
    }

    /// Distance of each cell of `cells` (a [`Simulation::cells`] table of this world) from
    /// the perturbations that have started, µm: to the region of a perturbation that has one (0 inside), else to
    /// the nearest cell a perturbation acts on (0 for those cells) or the nearest ablated
    /// cell; a bolus or source without a region is everywhere (0). NaN when no
    /// perturbation has started.
    pub fn perturbation_distance(&self, cells: &CellTable) -> Vec<f32> {
        use explant_scene::PerturbationKind as K;
        let t = self.clock().time() as f32;
        let settings = self.world.resource::<Settings>();
        let log = self.world.resource::<PerturbationLog>();
        let mut d = vec![f32::NAN; cells.ids.len()];
        let mut update = |i: usize, v: f32| {
            if d[i].is_nan() || v < d[i] {
                d[i] = v;
            }
        };
        let flagged: Vec<Vec3> =
            (0..cells.ids.len()).filter(|&i| cells.perturbed[i]).map(|i| Vec3::from(cells.positions[i])).collect();
        let flagged_tree = neighbours::rtree(&flagged);
        let ablated_tree = neighbours::rtree(&log.ablated);
        for p in settings.perturbations.iter().filter(|p| t >= p.spec.start) {
            for (i, pos) in cells.positions.iter().enumerate() {
                let v = match (&p.spec.region, p.action) {
                    (Some(r), _) => r.distance(*pos),
                    (None, K::Bolus { .. } | K::Source { .. }) => 0.0,
                    (None, K::Ablation) => match ablated_tree.nearest_neighbor(*pos) {
                        Some(q) => Vec3::from(q.geom().to_owned()).distance(Vec3::from(*pos)),
                        None => continue,
                    },
                    (None, _) => match flagged_tree.nearest_neighbor(*pos) {
                        Some(q) => Vec3::from(q.geom().to_owned()).distance(Vec3::from(*pos)),
                        None => continue,
                    },
                };
                update(i, v);
            }
        }
        d
    }

    /// Copy every cell's values out, sorted by cell id.
    pub fn cells(&mut self) -> CellTable {
        let mut q = self.world.query::<(&CellId, &CellType, &Lineage, &Position, &Radius, &Perturbed, &Row, &Cycle)>();
        let states = self.world.resource::<States>();
        let mut rows: Vec<_> = q.iter(&self.world).collect();
        rows.sort_by_key(|r| r.0.0);
        let mut t = CellTable {
            ids: Vec::with_capacity(rows.len()),
            cell_types: Vec::with_capacity(rows.len()),
            generations: Vec::with_capacity(rows.len()),
            positions: Vec::with_capacity(rows.len()),
            radii: Vec::with_capacity(rows.len()),
            perturbed: Vec::with_capacity(rows.len()),
            parents: Vec::with_capacity(rows.len()),
            phases: Vec::with_capacity(rows.len()),
            expression: Vec::new(),
        };
        for (id, ty, lin, pos, r, p, e, c) in rows {
            t.parents.push(lin.parent.unwrap_or(u64::MAX));
            t.phases.push(c.phase);
            t.ids.push(id.0);
            t.cell_types.push(ty.0);
            t.generations.push(lin.generation);
            t.positions.push(pos.0.to_array());
            t.radii.push(r.0);
            t.perturbed.push(p.0);
            t.expression.extend_from_slice(states.row(e.0 as usize));
        }
        t
    }
}

/// A world for `scene` with every resource but the cells: the ligands at time 0, the
/// settings, the clock at tick 0, the backends and empty recordings.
fn base_world(
    scene: &Scene,
    diffuser: Box<dyn DiffusionBackend>,
    model: Box<dyn ResponseModel>,
) -> Result<World, CoreError> {
    model.signature().check_against(&ModelSignature::of_scene(scene), &model.name())?;
    let mut world = World::new();
    let (domain, grid) = domain_and_grid(scene);
    let mut ligands = ligands(scene, grid)?;
    if diffuser.scheme() == explant_field::Scheme::Adi {
        if ligands.field.data.len() > u32::MAX as usize {
            return Err(CoreError::FieldTooLarge { values: ligands.field.data.len() });
        }
        ligands.record_added = true;
    }
    world.insert_resource(ligands);
    let settings = settings(scene, domain);
    world.insert_resource(PerturbationLog {
        fired: vec![false; settings.perturbations.len()],
        ablated: Vec::new(),
        injected: vec![0.0; scene.ligands.len()],
    });
    world.insert_resource(settings);
    world.insert_resource(Clock { tick: 0, dt: scene.time.dt });
    world.insert_resource(Diffuser(diffuser));
    world.insert_resource(FieldHome::default());
    world.insert_resource(Model(Mutex::new(model)));
    world.insert_resource(Batch::default());
    world.insert_resource(ChannelClamp::default());
    world.insert_resource(SourceSplit::default());
    world.insert_resource(Failure::default());
    world.insert_resource(StageTimers::default());
    world.insert_resource(schedule::StageStart::default());
    world.insert_resource(Recording {
        cell_types: scene.cell_types.len(),
        regions: scene.output.regions.clone(),
        ..Default::default()
    });
    Ok(world)
}

/// A scene whose tissue is imported needs the imported cells.
fn check_import(scene: &Scene, cells: Option<&InitialCells>) -> Result<(), CoreError> {
    if scene.tissue.shape == explant_scene::TissueShape::Import && cells.is_none() {
        return Err(CoreError::Tissue {
            path: scene.tissue.path.clone().unwrap_or_default(),
            message: "the scene imports its tissue: read the file first (explant_io::read_tissue) and pass the \
                      cells to `Simulation::with_cells`"
                .into(),
        });
    }
    Ok(())
}

/// The domain's extent (z = 0 in 2D) and the ligand grid covering it (`grid.dx` voxels,
/// rounded up; one layer in 2D).
fn domain_and_grid(scene: &Scene) -> (Vec3, Grid) {
    let dims = scene.dims();
    let size = Vec3::new(scene.grid.size[0], scene.grid.size[1], if dims == 3 { scene.grid.size[2] } else { 0.0 });
    let grid = Grid {
        nx: (size.x / scene.grid.dx).ceil() as usize,
        ny: (size.y / scene.grid.dx).ceil() as usize,
        nz: if dims == 3 { (size.z / scene.grid.dx).ceil() as usize } else { 1 },
        dx: scene.grid.dx,
        origin: [0.0; 3],
    };
    (size, grid)
}

/// The ligands at time 0, with their transport constants and their coupling to the
/// genes that secrete and sense them.
fn ligands(scene: &Scene, grid: Grid) -> Result<Ligands, CoreError> {
    let gene = |name: &str| scene.gene_index(name).unwrap_or(0);
    Ok(Ligands {
        field: initial::field(scene, grid)?,
        params: scene
            .ligands
            .iter()
            .map(|l| ChannelParams { diffusion: l.diffusion, decay: l.decay, boundary: l.boundary.faces() })
            .collect(),
        coupling: scene
            .ligands
            .iter()
            .map(|l| Coupling {
                gene: gene(&l.secreted_by),
                export: l.export_rate,
                secretion: l.secretion_rate,
                saturation: l.saturation,
                uptake: l.uptake_rate,
                receptor: gene(&l.receptor),
            })
            .collect(),
        receptor: scene.ligands.iter().map(|l| gene(&l.receptor)).collect(),
        exchanged: vec![0.0; scene.ligands.len()],
        added: Vec::new(),
        record_added: false,
        restart_tick: 0,
    })
}

/// The run's fixed settings, names resolved to indices.
fn settings(scene: &Scene, domain: Vec3) -> Settings {
    Settings {
        genes: scene.genes.len(),
        gene_names: scene.genes.clone(),
        ligand_names: scene.ligand_names(),
        ligands: scene.ligands.len(),
        cell_types: scene.cell_types.len(),
        contact_mask: scene.genes.iter().map(|g| scene.contact.genes.contains(g)).collect(),
        rules: TypeRules::of_scene(scene),
        cell_radius: scene.tissue.cell_radius,
        baselines: scene.cell_types.iter().map(|t| scene.gene_vector(&t.baseline)).collect(),
        contact_radius: scene.contact.radius,
        mechanics: scene.mechanics,
        domain,
        dims: scene.dims(),
        perturbations: scene.perturbations.iter().filter_map(|p| PlannedPerturbation::of(scene, p)).collect(),
        record_interval: scene.record_interval(),
        mechanics_every: scene.step_ratios().0,
        state_every: scene.step_ratios().1,
        seed: scene.seed,
        cell_limit: scene.cell_limit(),
    }
}
