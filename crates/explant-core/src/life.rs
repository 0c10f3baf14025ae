//! Fate: growth, division and death, the once-only perturbations that add or remove
//! cells (grafts, ablations), and the spatial re-sort of the rows. The stage is one
//! exclusive system, as it is the only one that spawns and despawns cells; [`fate`]
//! reads as its list of steps, each a function here.
//!
//! Cells enter the world only through [`spawn_cell`] (founders, daughters, grafts) and
//! leave it only through [`remove`], which keep each entity's [`Row`] equal to its row of
//! [`States`].

use bevy_ecs::prelude::*;
use explant_scene::PerturbationKind as K;
use glam::Vec3;

use crate::components::*;
use crate::lineage;
use crate::rng::{self, Purpose};

/// The cycle length of a newborn cell: log-normal with the type's mean and coefficient
/// of variation.
pub(crate) fn cycle_length(spec: &explant_scene::CycleSpec, seed: u64, id: u64, tick: u64) -> f32 {
    if spec.cv <= 0.0 {
        return spec.duration;
    }
    let s2 = (1.0 + f64::from(spec.cv).powi(2)).ln();
    let mu = f64::from(spec.duration).ln() - 0.5 * s2;
    (mu + s2.sqrt() * rng::normal(seed, id, tick, Purpose::Cycle, 0)).exp() as f32
}

/// Life-cycle state and radius of a cell that starts (a founder or a grafted cell) at a
/// random point of its cycle, so a population of them divides asynchronously.
pub(crate) fn founder_cycle(
    spec: Option<&explant_scene::CycleSpec>,
    seed: u64,
    id: u64,
    tick: u64,
    radius: f32,
) -> (Cycle, f32) {
    let (length, progress) = match spec {
        Some(c) => {
            let length = cycle_length(c, seed, id, tick);
            (length, rng::uniform(seed, id, tick, Purpose::Cycle, 7) as f32 * length)
        }
        None => (f32::INFINITY, 0.0),
    };
    let r = if length.is_finite() {
        sphere_radius(sphere_volume(radius) * (0.5 + 0.5 * progress / length))
    } else {
        radius
    };
    (Cycle { phase: Phase::Cycling, age: 0.0, progress, length, dying: 0.0, volume_at_death: 0.0 }, r)
}

/// A uniform random point in `shape` (keyed by the new cell's id).
fn point_in(shape: &explant_scene::Shape, dims: usize, seed: u64, id: u64, tick: u64) -> Vec3 {
    let (lo, hi) = match shape {
        explant_scene::Shape::Circle { centre, radius } => {
            let c = Vec3::new(centre[0], centre[1], centre.get(2).copied().unwrap_or(0.0));
            (c - Vec3::splat(*radius), c + Vec3::splat(*radius))
        }
        explant_scene::Shape::Box { min, max } => (
            Vec3::new(min[0], min[1], min.get(2).copied().unwrap_or(0.0)),
            Vec3::new(max[0], max[1], max.get(2).copied().unwrap_or(0.0)),
        ),
    };
    for draw in 0..1000u64 {
        let u = |d: u64| rng::uniform(seed, id, tick, Purpose::Placement, 20 + 3 * draw + d) as f32;
        let p = Vec3::new(
            lo.x + u(0) * (hi.x - lo.x),
            lo.y + u(1) * (hi.y - lo.y),
            if dims == 3 { lo.z + u(2) * (hi.z - lo.z) } else { 0.0 },
        );
        if shape.contains(p.to_array()) {
            return p;
        }
    }
    0.5 * (lo + hi)
}

/// Probability of an event at `rate` per minute within `dt` minutes.
fn chance(rate: f32, dt: f32) -> f64 {
    1.0 - (-f64::from(rate) * f64::from(dt)).exp()
}

/// Fate: ages advance; living cells may enter apoptosis (at the type's rate, or
/// `rate_above` while the driving gene is high) or necrosis (while the ligand at the
/// cell is below threshold), else progress through their cycle (held while the gating
/// gene is below threshold or the cell has more neighbours than `max_neighbours`) and
/// grow in volume from half to full; cells that finish the cycle divide, and dying cells
/// whose time is up are removed. Every random decision comes from the counter-based
/// generator keyed by (seed, cell id, tick, purpose), removals go in descending row
/// order and births in ascending id of the mother, so the population is the same on any
/// thread count.
///
/// Division: the daughter gets the id of her place in the lineage
/// ([`crate::lineage::daughter_id`] of the mother's id and generation; a grafted cell gets
/// [`crate::lineage::graft_id`]), checked free before any cell is added; she gets half
/// the full volume (as does the mother),
/// the mother's expression times `exp(noise · N(0,1))` per gene (the mother gets her own
/// draw), the mother's type, perturbation flag, migration direction and model fate
/// scores ([`ModelFate`]), and the next
/// generation; the two are placed `0.5 r` either side of the mother's centre along a random
/// direction (in the plane for 2D).
///
/// Runs every `mechanics_every` ticks, with a step of that many ticks; the body is the
/// list of its steps, in order.
pub(crate) fn fate(world: &mut World) {
    let mut step = FateStep::of(world);
    // A field kept on the device is read there for the necrosis thresholds.
    if let Err(e) = step.read_necrosis_field(world) {
        world.resource_mut::<Failure>().0 = Some(e);
        return;
    }
    // 1. ages, death phases, growth: who divides and who is removed;
    let Some((mut deaths, births)) = advance_cycles(world, &step) else { return };
    // 2. ablations and grafts whose time has come;
    let grafts = fire_ablations_and_grafts(world, &step, &mut deaths);
    // 3. a population past the cell limit, or a new id a cell already holds, stops the
    //    run here, before any cell is added or removed;
    if let Err(e) = within_cell_limit(world, &step, &deaths, births.len(), &grafts)
        .and_then(|()| ids_free(world, &step, &births, &grafts))
    {
        world.resource_mut::<Failure>().0 = Some(e);
        return;
    }
    // 4. removals, 5. divisions, 6. grafted cells;
    let changed = !deaths.is_empty() || !births.is_empty() || !grafts.is_empty();
    remove(world, deaths);
    divide_all(world, &step, births);
    graft(world, &step, grafts);
    // 7. the batch is stale if cells came or went (`advance_cycles` kept the radii and
    //    phases of a fresh one), and every SORT_INTERVAL steps the rows are re-sorted.
    if changed {
        world.resource_mut::<Batch>().fresh = false;
    }
    if (step.tick / step.every + 1).is_multiple_of(SORT_INTERVAL) {
        sort_rows(world, step.settings.contact_radius);
    }
}

/// What every step of one fate stage reads.
struct FateStep {
    /// A copy of the settings (the stage changes the world while reading them).
    settings: Settings,
    /// The clock at the start of the stage.
    clock: Clock,
    /// Ticks per fate step (`mechanics_every`).
    every: u64,
    /// The step, minutes.
    dt: f32,
    tick: u64,
    seed: u64,
    /// Volume of a full-grown cell, µm³.
    full: f32,
    /// Every ligand at each row's voxel, from a field kept on the device (`None`: read
    /// the host field).
    field_at_rows: Option<(Vec<f32>, usize)>,
}

impl FateStep {
    fn of(world: &World) -> Self {
        let clock = *world.resource::<Clock>();
        let every = world.resource::<Settings>().mechanics_every;
        let settings = world.resource::<Settings>().clone();
        let (dt, tick, seed) = (clock.dt * every as f32, clock.tick, settings.seed);
        let full = sphere_volume(settings.cell_radius);
        Self { settings, clock, every, dt, tick, seed, full, field_at_rows: None }
    }

    /// When the field is kept on the device and a type dies of necrosis, read every
    /// ligand at each cell's voxel there (`O(cells)` back), for [`FateStep::death`].
    fn read_necrosis_field(&mut self, world: &mut World) -> Result<(), crate::CoreError> {
        if !world.resource::<crate::residency::FieldHome>().on_device()
            || self.settings.rules.iter().all(|r| r.necrosis.is_none())
        {
            return Ok(());
        }
        world.resource_scope(|world, mut home: Mut<crate::residency::FieldHome>| {
            world.resource_scope(|world, mut diffuser: Mut<Diffuser>| {
                world.resource_scope(|world, mut batch: Mut<Batch>| {
                    let mut ligands = world.resource_mut::<Ligands>();
                    let grid = ligands.field.grid;
                    let nl = ligands.field.channels;
                    let voxels = batch.cell_voxels(&grid).to_vec();
                    crate::residency::sample_on_device(&mut ligands, &mut diffuser, &mut home, &voxels)?;
                    self.field_at_rows = Some((std::mem::take(&mut home.sampled), nl));
                    Ok(())
                })
            })
        })
    }
}

/// One cell as the cycle step sees it.
struct Looked<'a> {
    id: u64,
    row: usize,
    position: Vec3,
    model_fate: ModelFate,
    expression: &'a [f32],
}

/// A mother about to divide.
struct Birth {
    /// Her id.
    mother: u64,
    /// Her generation before the division.
    generation: u32,
    /// Her entity.
    entity: Entity,
    /// The daughter's id.
    daughter: u64,
}

/// A graft about to add its cells.
struct Graft {
    /// Its index among the scene's perturbations.
    index: usize,
    /// The perturbation.
    planned: PlannedPerturbation,
    /// How many cells it adds.
    cells: usize,
}

impl Graft {
    /// The ids of its cells, in order.
    fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.cells).map(|k| lineage::graft_id(self.index, k))
    }
}

/// Cells to remove `(row, entity)` and mothers to divide.
type Changes = (Vec<(u32, Entity)>, Vec<Birth>);

/// Advance every cell's age and life phase; returns the cells whose death phase is over
/// and the cells that finished their cycle (`None`, changing nothing, if the world
/// lacks the expression, batch or ligand resources).
fn advance_cycles(world: &mut World, step: &FateStep) -> Option<Changes> {
    let mut deaths: Vec<(u32, Entity)> = Vec::new();
    let mut births: Vec<Birth> = Vec::new();
    // Taken out of the world while the query borrows it, put back below.
    let (Some(states), Some(mut batch), Some(ligands)) =
        (world.remove_resource::<States>(), world.remove_resource::<Batch>(), world.remove_resource::<Ligands>())
    else {
        return None;
    };
    // A gathered batch is kept up to date with the radii and phases changed here, so
    // that a step without births or removals needs no new gather.
    let keep_batch = batch.fresh && batch.cells == states.len();
    let mut q =
        world.query::<(Entity, &CellId, &Row, &CellType, &Position, &ModelFate, &Lineage, &mut Cycle, &mut Radius)>();
    for (entity, id, row, ty, pos, model_fate, lin, mut cycle, mut radius) in q.iter_mut(world) {
        let rules = &step.settings.rules[ty.0 as usize];
        let i = row.0 as usize;
        let cell = Looked { id: id.0, row: i, position: pos.0, model_fate: *model_fate, expression: states.row(i) };
        let c = &mut *cycle;
        c.age += step.dt;
        match c.phase {
            Phase::Cycling => {
                if let Some(phase) = step.death(&cell, rules, &ligands) {
                    c.phase = phase;
                    c.dying = 0.0;
                    c.volume_at_death = sphere_volume(radius.0);
                } else if step.grow(&cell, rules, &batch, c, &mut radius.0) {
                    let (mother, generation) = (id.0, lin.generation);
                    births.push(Birth {
                        mother,
                        generation,
                        entity,
                        daughter: lineage::daughter_id(mother, generation),
                    });
                }
            }
            Phase::Apoptotic | Phase::Necrotic => {
                if step.wither(rules, c, &mut radius.0) {
                    deaths.push((row.0, entity));
                }
            }
        }
        if keep_batch && i < batch.cells {
            batch.radii[i] = radius.0;
            batch.alive[i] = c.phase == Phase::Cycling;
        }
    }
    world.insert_resource(states);
    world.insert_resource(batch);
    world.insert_resource(ligands);
    Some((deaths, births))
}

impl FateStep {
    /// The death phase a living cell enters in this step, if any: apoptosis at the
    /// type's rate (or `rate_above` while the driving gene is high) plus the model's
    /// hazard, else necrosis while the ligand at its voxel is below threshold.
    fn death(&self, cell: &Looked, rules: &TypeRules, ligands: &Ligands) -> Option<Phase> {
        let (x, dt) = (cell.expression, self.dt);
        let u = || rng::uniform(self.seed, cell.id, self.tick, Purpose::Death, 0);
        let own = rules
            .apoptosis
            .as_ref()
            .map_or(0.0, |(a, gene)| if gene.is_some_and(|k| x[k] >= a.threshold) { a.rate_above } else { a.rate });
        // A response model's hazard adds to the type's own rate.
        let rate = own + cell.model_fate.hazard;
        if rate > 0.0 && u() < chance(rate, dt) {
            return Some(Phase::Apoptotic);
        }
        if let Some((nspec, ligand)) = &rules.necrosis {
            let conc = match &self.field_at_rows {
                Some((values, nl)) => values[cell.row * nl + ligand],
                None => {
                    let field = &ligands.field;
                    field.data[ligand * field.grid.voxels() + field.grid.voxel_of(cell.position.to_array())]
                }
            };
            if conc < nspec.below
                && rng::uniform(self.seed, cell.id, self.tick, Purpose::Death, 1) < chance(nspec.rate, dt)
            {
                return Some(Phase::Necrotic);
            }
        }
        None
    }

    /// A living cell progresses through its cycle (unless crowded or gated off, at the
    /// model's progression factor) and grows from half to full volume; returns whether
    /// it finished its cycle.
    fn grow(&self, cell: &Looked, rules: &TypeRules, batch: &Batch, c: &mut Cycle, radius: &mut f32) -> bool {
        let Some((spec, gate)) = &rules.cycle else { return false };
        let i = cell.row;
        let crowded =
            spec.max_neighbours.is_some_and(|max| i < batch.cells && batch.offsets[i + 1] - batch.offsets[i] > max);
        let gated = gate.is_some_and(|k| cell.expression[k] < spec.threshold);
        if !crowded && !gated {
            c.progress += self.dt * cell.model_fate.progression;
        }
        let f = (c.progress / c.length).min(1.0);
        *radius = sphere_radius(self.full * (0.5 + 0.5 * f));
        c.progress >= c.length
    }

    /// A dying cell shrinks (apoptosis, to 5 % of its volume) or swells (necrosis, to
    /// twice it) over the phase's duration; returns whether its time is up.
    fn wither(&self, rules: &TypeRules, c: &mut Cycle, radius: &mut f32) -> bool {
        c.dying += self.dt;
        let duration = match c.phase {
            Phase::Apoptotic => rules.apoptosis.as_ref().map_or(0.0, |a| a.0.duration),
            _ => rules.necrosis.as_ref().map_or(0.0, |n| n.0.duration),
        };
        let f = (c.dying / duration).min(1.0);
        let v = if c.phase == Phase::Apoptotic {
            c.volume_at_death * (1.0 - f).max(0.05)
        } else {
            c.volume_at_death * (1.0 + f)
        };
        *radius = sphere_radius(v);
        c.dying >= duration
    }
}

/// Ablations and grafts fire once, at the first fate step at or after their start:
/// an ablation adds its targets to `deaths` (and their positions to the log, by id); a
/// graft is returned with its cell count, to be added after the divisions.
fn fire_ablations_and_grafts(world: &mut World, step: &FateStep, deaths: &mut Vec<(u32, Entity)>) -> Vec<Graft> {
    let t = step.clock.time() as f32;
    let mut grafts = Vec::new();
    for (k, p) in step.settings.perturbations.iter().enumerate() {
        if t < p.spec.start || world.resource::<PerturbationLog>().fired[k] {
            continue;
        }
        match p.action {
            K::Ablation => {
                let states = world.resource::<States>().clone();
                let mut q = world.query::<(Entity, &CellId, &Row, &CellType, &Position)>();
                let mut hit = Vec::new();
                for (e, id, row, ty, pos) in q.iter(world) {
                    if p.targets(id.0, ty.0, pos.0, states.row(row.0 as usize)) {
                        deaths.push((row.0, e));
                        hit.push((id.0, pos.0));
                    }
                }
                hit.sort_unstable_by_key(|h| h.0);
                let mut log = world.resource_mut::<PerturbationLog>();
                log.ablated.extend(hit.iter().map(|h| h.1));
                log.fired[k] = true;
            }
            K::Graft { cells } => {
                grafts.push(Graft { index: k, planned: p.clone(), cells });
                world.resource_mut::<PerturbationLog>().fired[k] = true;
            }
            _ => {}
        }
    }
    grafts
}

/// The population after this stage's removals, divisions and grafts must not pass the
/// scene's cell limit ([`Settings::cell_limit`]): a runaway division (a cycle as short as a
/// tick doubles the cells every tick) stops as a failure of this stage with the count,
/// instead of growing until the allocator aborts.
fn within_cell_limit(
    world: &World,
    step: &FateStep,
    deaths: &[(u32, Entity)],
    births: usize,
    grafts: &[Graft],
) -> Result<(), crate::CoreError> {
    let mut rows: Vec<u32> = deaths.iter().map(|d| d.0).collect();
    rows.sort_unstable();
    rows.dedup();
    let now = world.resource::<States>().len();
    let after = now - rows.len().min(now) + births + grafts.iter().map(|g| g.cells).sum::<usize>();
    let limit = &step.settings.cell_limit;
    if after <= limit.cells {
        return Ok(());
    }
    Err(crate::CoreError::TooManyCells { tick: step.tick, time: step.clock.time(), cells: after, limit: limit.clone() })
}

/// Every id this stage will give (daughters, then grafted cells) must be free: held by
/// no cell in the world at the start of the stage (those about to be removed included)
/// and by no other new cell. Otherwise the run stops, naming both (see
/// [`crate::lineage`] for why a clash is not resolved).
fn ids_free(world: &World, step: &FateStep, births: &[Birth], grafts: &[Graft]) -> Result<(), crate::CoreError> {
    let Some(live) = world.get_resource::<LiveIds>() else { return Ok(()) };
    /// A new cell, named only on a clash.
    #[derive(Clone, Copy)]
    enum New {
        /// The daughter of `births[b]`.
        Daughter(usize),
        /// Cell `k` of the graft that is perturbation `p`.
        Grafted(usize, usize),
    }
    let newborn: Vec<(u64, New)> = births
        .iter()
        .enumerate()
        .map(|(b, birth)| (birth.daughter, New::Daughter(b)))
        .chain(grafts.iter().flat_map(|g| g.ids().enumerate().map(move |(k, id)| (id, New::Grafted(g.index, k)))))
        .collect();
    let name = |who: New| match who {
        New::Daughter(b) => {
            format!("the daughter of cell `{}` at generation {}", births[b].mother, births[b].generation)
        }
        New::Grafted(p, k) => format!("cell {k} of graft `perturbations[{p}]`"),
    };
    let mut made = std::collections::HashMap::with_capacity(newborn.len());
    for &(id, who) in &newborn {
        let holder =
            if live.0.contains(&id) { Some("a living cell".to_owned()) } else { made.get(&id).map(|&w| name(w)) };
        if let Some(holder) = holder {
            let (tick, time) = (step.tick, step.clock.time());
            return Err(crate::CoreError::IdCollision { tick, time, id, cell: name(who), holder });
        }
        made.insert(id, who);
    }
    Ok(())
}

/// Remove cells and their rows, highest row first, so each swap moves a row that stays
/// (and that row's entity gets its new [`Row`]); their ids leave [`LiveIds`].
fn remove(world: &mut World, mut deaths: Vec<(u32, Entity)>) {
    deaths.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
    deaths.dedup_by_key(|d| d.0);
    for &(row, entity) in &deaths {
        let moved = world.resource_mut::<States>().swap_remove(row as usize);
        if let Some(id) = world.get::<CellId>(entity).copied()
            && let Some(mut live) = world.get_resource_mut::<LiveIds>()
        {
            live.0.remove(&id.0);
        }
        world.despawn(entity);
        if let Some(moved) = moved
            && let Some(mut r) = world.get_mut::<Row>(moved)
        {
            r.0 = row;
        }
    }
}

/// Divide the mothers, in ascending id (the daughters' rows are appended in that order).
fn divide_all(world: &mut World, step: &FateStep, mut births: Vec<Birth>) {
    births.sort_unstable_by_key(|b| b.mother);
    for birth in &births {
        divide(world, step, birth);
    }
}

/// One division (see [`fate`]): the mother restarts her cycle at half volume on one
/// side, the daughter is spawned on the other.
fn divide(world: &mut World, step: &FateStep, birth: &Birth) {
    let (mother_id, mother, child_id) = (birth.mother, birth.entity, birth.daughter);
    let Ok(m) = world.get_entity(mother) else { return };
    let (Some(row), Some(pos), Some(ty), Some(lin), Some(flag), Some(dir)) = (
        m.get::<Row>().copied(),
        m.get::<Position>().copied(),
        m.get::<CellType>().copied(),
        m.get::<Lineage>().copied(),
        m.get::<Perturbed>().copied(),
        m.get::<Motility>().copied(),
    ) else {
        return;
    };
    // The daughter carries what the response model last said of her mother.
    let model_fate = m.get::<ModelFate>().copied().unwrap_or_default();
    let Some((spec, _)) = step.settings.rules[ty.0 as usize].cycle.clone() else { return };
    let (seed, tick) = (step.seed, step.tick);
    let half = sphere_radius(0.5 * step.full);
    let axis = rng::unit_vector(seed, mother_id, tick, Purpose::Division, step.settings.dims);
    let offset = axis * (0.5 * half);
    let hi = step.settings.domain;
    let (mother_state, child_state) =
        inherit(world.resource::<States>().row(row.0 as usize), &spec, seed, tick, mother_id, child_id);
    world.resource_mut::<States>().row_mut(row.0 as usize).copy_from_slice(&mother_state);
    let next_generation = Lineage { parent: lin.parent, generation: lin.generation + 1, grafted: lin.grafted };
    let new_cycle = |id: u64| Cycle {
        phase: Phase::Cycling,
        age: 0.0,
        progress: 0.0,
        length: cycle_length(&spec, seed, id, tick),
        dying: 0.0,
        volume_at_death: 0.0,
    };
    if let Ok(mut m) = world.get_entity_mut(mother) {
        m.insert((
            Position((pos.0 - offset).clamp(Vec3::ZERO, hi)),
            Radius(half),
            new_cycle(mother_id),
            next_generation,
        ));
    }
    let daughter = CellBundle {
        id: CellId(child_id),
        position: Position((pos.0 + offset).clamp(Vec3::ZERO, hi)),
        radius: Radius(half),
        cell_type: ty,
        lineage: Lineage { parent: Some(mother_id), generation: lin.generation + 1, grafted: lin.grafted },
        perturbed: flag,
        cycle: new_cycle(child_id),
        motility: dir,
        model_fate,
    };
    spawn_cell(world, daughter, &child_state);
}

/// The expression of mother and daughter after a division: the mother's, each times
/// `exp(noise · N(0,1))` per gene with its own draw (unchanged without noise).
fn inherit(
    mother: &[f32],
    spec: &explant_scene::CycleSpec,
    seed: u64,
    tick: u64,
    mother_id: u64,
    child_id: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut mother_state = mother.to_vec();
    let mut child_state = mother_state.clone();
    if spec.inheritance_noise > 0.0 {
        for (k, (a, b)) in mother_state.iter_mut().zip(child_state.iter_mut()).enumerate() {
            let na = rng::normal(seed, mother_id, tick, Purpose::Inheritance, k as u64);
            let nb = rng::normal(seed, child_id, tick, Purpose::Inheritance, k as u64);
            *a *= (spec.inheritance_noise * na as f32).exp();
            *b *= (spec.inheritance_noise * nb as f32).exp();
        }
    }
    (mother_state, child_state)
}

/// Add the grafted cells, in the order of the scene's perturbations: founders of the
/// graft's type at random points of its region, with the type's baseline expression,
/// flagged as perturbed for life, with ids of the graft's own namespace.
fn graft(world: &mut World, step: &FateStep, grafts: Vec<Graft>) {
    let (settings, seed, tick) = (&step.settings, step.seed, step.tick);
    for g in grafts {
        let p = &g.planned;
        let (Some(ty), Some(region)) = (p.cell_type, p.spec.region.as_ref()) else { continue };
        let rules = &settings.rules[ty as usize];
        for id in g.ids() {
            let (cycle, radius) =
                founder_cycle(rules.cycle.as_ref().map(|c| &c.0), seed, id, tick, settings.cell_radius);
            let position = point_in(region, settings.dims, seed, id, tick);
            let cell = CellBundle::founder(id, position, radius, ty, cycle, true);
            spawn_cell(world, cell, &settings.baselines[ty as usize]);
        }
    }
}

/// Mechanics steps between spatial re-sorts of the rows ([`sort_rows`]).
pub const SORT_INTERVAL: u64 = 20;

/// Reorder the rows of the expression matrix (and every cell's [`Row`]) into the order
/// of the neighbour search's bins (a uniform grid of edge ≈ `radius`, numbered x fastest,
/// then y, then z; rows keep their relative order within a bin). Cells near each other
/// in space then sit near each other in memory, and the per-tick neighbour search finds
/// them already in its own order, which keeps it and the force loop cache-friendly as
/// cells move, divide and die. The order depends only on positions and the current
/// rows, so it is the same on any thread count.
pub fn sort_rows(world: &mut World, radius: f32) {
    let n = world.resource::<States>().len();
    let mut positions = vec![Vec3::ZERO; n];
    let mut q = world.query::<(&Row, &Position)>();
    for (r, p) in q.iter(world) {
        positions[r.0 as usize] = p.0;
    }
    let order = crate::neighbours::CellList::new(&positions, radius).order().to_vec();
    if order.iter().enumerate().all(|(k, &o)| o as usize == k) {
        return;
    }
    let mut new_row = vec![0u32; order.len()];
    {
        let mut states = world.resource_mut::<States>();
        let g = states.genes;
        let mut data = vec![0.0; states.data.len()];
        let mut owner = Vec::with_capacity(order.len());
        for (k, &old) in order.iter().enumerate() {
            let old = old as usize;
            data[k * g..(k + 1) * g].copy_from_slice(states.row(old));
            owner.push(states.owner[old]);
            new_row[old] = k as u32;
        }
        states.data = data;
        states.owner = owner;
    }
    let mut rows = world.query::<&mut Row>();
    for mut r in rows.iter_mut(world) {
        r.0 = new_row[r.0 as usize];
    }
    if let Some(mut b) = world.get_resource_mut::<Batch>() {
        b.fresh = false;
    }
}
