//! Mechanics (motion) and fate (growth, division, death): the last stages of a tick.

use std::time::Instant;

use bevy_ecs::prelude::*;
use glam::Vec3;
use rayon::prelude::*;

use crate::Stage;
use crate::components::*;
use crate::rng::{self, Purpose};

/// Mechanics: overdamped centre-based motion, `v = mobility × Σ F + v_migration`, with
/// PhysiCell's potentials between neighbours at distance `d`: repulsion `c_r (1 − d/R)²`
/// for `d < R = r_i + r_j` and adhesion `−c_a (1 − d/R_a)²` for `d < R_a = 1.25 R`, along
/// the line of centres. With `walls`, each face of the domain repels a cell closer than
/// its radius `r` with `c_r (1 − d/r)²`; a basement membrane repels the same way from
/// its plane, adheres with `c_a,m (1 − d/1.25r)²` and cannot be crossed.
///
/// Chemotaxis: a migrating cell keeps its direction and re-chooses it with probability
/// `1 − exp(−Δt/persistence)` per tick, as `bias · ∇ĉ + (1 − bias) · random unit`
/// (normalised), then moves at the type's speed.
///
/// **Time step.** Explicit Euler of `ẋ = μF` is stable while `Δt · μ · k_max ≤ 2`,
/// with `k_max` the largest eigenvalue of the force Jacobian; for a packed tissue with
/// `z` neighbours, `k_max ≤ z · 2 (c_r/R + c_a/R_a)`. Scenes should keep
/// `Δt ≤ R / (z μ (c_r + c_a))` (for PhysiCell's defaults, R = 16.8 µm, c_r = 10,
/// c_a = 0.4, μ = 1, z = 12: 0.13 min, and PhysiCell's 0.1 min step is inside it).
/// Beyond it, force-driven displacements are capped at half a cell radius per step
/// (migration is not capped), so a stiff
/// scene jitters instead of exploding. Runs every `mechanics_every` ticks, with a step
/// of that many ticks (as does `fate`).
#[allow(clippy::too_many_arguments)]
pub fn mechanics(
    mut cells: Query<(&Row, &mut Position, &mut Motility)>,
    states: Res<States>,
    ligands: Res<Ligands>,
    settings: Res<Settings>,
    clock: Res<Clock>,
    mut batch: ResMut<Batch>,
    mut timers: ResMut<StageTimers>,
    failure: Res<Failure>,
) {
    if failure.0.is_some() || !clock.tick.is_multiple_of(settings.mechanics_every) {
        return;
    }
    let t0 = Instant::now();
    let m = settings.mechanics;
    let dt = clock.dt * settings.mechanics_every as f32;
    let tick = clock.tick;
    let b = &mut *batch;
    let n = b.cells;
    let migrates = settings.rules.iter().any(|r| r.chemotaxis.is_some());
    let mut directions = vec![Vec3::ZERO; if migrates { n } else { 0 }];
    if migrates {
        for (row, _, dir) in &cells {
            directions[row.0 as usize] = dir.0;
        }
    }
    let b = &*b;
    let hi = settings.domain;
    let dims = settings.dims;
    let g = settings.genes;
    let moves: Vec<(Vec3, Vec3)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let p = b.positions[i];
            let ri = b.radii[i];
            let mut force = Vec3::ZERO;
            for &j in &b.neighbours[b.offsets[i] as usize..b.offsets[i + 1] as usize] {
                let j = j as usize;
                let delta = p - b.positions[j];
                let d = delta.length();
                if d <= 1e-6 {
                    continue;
                }
                let rr = ri + b.radii[j];
                let ra = 1.25 * rr;
                let mut f = 0.0;
                if d < rr {
                    f += m.repulsion * (1.0 - d / rr).powi(2);
                }
                if d < ra {
                    f -= m.adhesion * (1.0 - d / ra).powi(2);
                }
                force += delta * (f / d);
            }
            if m.walls {
                for a in 0..dims {
                    let lo = p[a];
                    let up = hi[a] - p[a];
                    if lo < ri {
                        force[a] += m.repulsion * (1.0 - lo.max(0.0) / ri).powi(2);
                    }
                    if up < ri {
                        force[a] -= m.repulsion * (1.0 - up.max(0.0) / ri).powi(2);
                    }
                }
            }
            if let Some(mb) = m.membrane {
                let a = mb.axis.index();
                let off = p[a] - mb.position;
                let (d, side) = (off.abs(), if off >= 0.0 { 1.0 } else { -1.0 });
                if d < ri {
                    force[a] += side * mb.repulsion * (1.0 - d / ri).powi(2);
                }
                if d < 1.25 * ri {
                    force[a] -= side * mb.adhesion * (1.0 - d / (1.25 * ri)).powi(2);
                }
            }
            // The cap applies to the passive (force-driven) displacement only.
            let mut step = force * (m.mobility * dt);
            let cap = 0.5 * ri;
            if step.length() > cap {
                step = step.normalize() * cap;
            }
            let mut dir = Vec3::ZERO;
            if migrates && b.alive[i] {
                dir = directions[i];
                let rules = &settings.rules[b.cell_type[i] as usize];
                if let Some((c, ligand, gate)) = &rules.chemotaxis {
                    let crowded = c.max_neighbours.is_some_and(|max| b.offsets[i + 1] - b.offsets[i] > max);
                    let on = !crowded && gate.is_none_or(|k| states.data[i * g + k] >= c.threshold);
                    let id = b.ids[i];
                    let renew = dir == Vec3::ZERO
                        || rng::uniform(settings.seed, id, tick, Purpose::Motility, 0)
                            < 1.0 - (-f64::from(dt / c.persistence)).exp();
                    if renew {
                        let grad = Vec3::from(ligands.field.gradient(*ligand, p.to_array()));
                        let up = grad.normalize_or_zero();
                        let random = rng::unit_vector(settings.seed, id, tick, Purpose::Motility, dims);
                        dir = (c.bias * up + (1.0 - c.bias) * random).normalize_or_zero();
                    }
                    if on {
                        step += dir * (c.speed * dt);
                    }
                }
            }
            let mut q = (p + step).clamp(Vec3::ZERO, hi);
            if let Some(mb) = m.membrane {
                // The membrane cannot be crossed: stay on the side the cell started on.
                let a = mb.axis.index();
                if (p[a] - mb.position) * (q[a] - mb.position) < 0.0 {
                    q[a] = mb.position;
                }
            }
            (q, dir)
        })
        .collect();
    for (row, mut pos, mut dir) in &mut cells {
        let (q, d) = moves[row.0 as usize];
        pos.0 = q;
        if migrates && dir.0 != d {
            dir.0 = d;
        }
    }
    let b = &mut *batch;
    for (p, (q, _)) in b.positions.iter_mut().zip(&moves) {
        *p = *q;
    }
    timers.add(Stage::Mechanics, t0.elapsed());
}

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
/// Division: the daughter gets a new id, half the full volume (as does the mother),
/// the mother's expression times `exp(noise · N(0,1))` per gene (the mother gets her own
/// draw), the mother's type, perturbation flag, migration direction and model fate
/// scores ([`ModelFate`]), and the next
/// generation; the two are placed `0.5 r` either side of the mother's centre along a random
/// direction (in the plane for 2D).
pub fn fate(world: &mut World) {
    if world.resource::<Failure>().0.is_some() {
        return;
    }
    let clock = *world.resource::<Clock>();
    let every = world.resource::<Settings>().mechanics_every;
    if !clock.tick.is_multiple_of(every) {
        return;
    }
    let t0 = Instant::now();
    let settings = world.resource::<Settings>().clone();
    let (dt, tick, seed) = (clock.dt * every as f32, clock.tick, settings.seed);
    let full = sphere_volume(settings.cell_radius);
    let mut deaths: Vec<(u32, Entity)> = Vec::new();
    let mut births: Vec<(u64, Entity)> = Vec::new();
    {
        // Taken out of the world while the query borrows it, put back below.
        let (Some(states), Some(batch), Some(ligands)) =
            (world.remove_resource::<States>(), world.remove_resource::<Batch>(), world.remove_resource::<Ligands>())
        else {
            return;
        };
        let mut q = world.query::<(Entity, &CellId, &Row, &CellType, &Position, &ModelFate, &mut Cycle, &mut Radius)>();
        for (entity, id, row, ty, pos, model_fate, mut cycle, mut radius) in q.iter_mut(world) {
            let rules = &settings.rules[ty.0 as usize];
            let i = row.0 as usize;
            let x = states.row(i);
            let c = &mut *cycle;
            c.age += dt;
            match c.phase {
                Phase::Cycling => {
                    let u = || rng::uniform(seed, id.0, tick, Purpose::Death, 0);
                    let own = rules.apoptosis.as_ref().map_or(0.0, |(a, gene)| {
                        if gene.is_some_and(|k| x[k] >= a.threshold) { a.rate_above } else { a.rate }
                    });
                    // A response model's hazard adds to the type's own rate.
                    let rate = own + model_fate.hazard;
                    if rate > 0.0 && u() < chance(rate, dt) {
                        c.phase = Phase::Apoptotic;
                    }
                    if c.phase == Phase::Cycling
                        && let Some((nspec, ligand)) = &rules.necrosis
                    {
                        let field = &ligands.field;
                        let conc = field.data[ligand * field.grid.voxels() + field.grid.voxel_of(pos.0.to_array())];
                        if conc < nspec.below
                            && rng::uniform(seed, id.0, tick, Purpose::Death, 1) < chance(nspec.rate, dt)
                        {
                            c.phase = Phase::Necrotic;
                        }
                    }
                    if c.phase != Phase::Cycling {
                        c.dying = 0.0;
                        c.volume_at_death = sphere_volume(radius.0);
                        continue;
                    }
                    let Some((spec, gate)) = &rules.cycle else { continue };
                    let crowded = spec
                        .max_neighbours
                        .is_some_and(|max| i < batch.cells && batch.offsets[i + 1] - batch.offsets[i] > max);
                    let gated = gate.is_some_and(|k| x[k] < spec.threshold);
                    if !crowded && !gated {
                        c.progress += dt * model_fate.progression;
                    }
                    let f = (c.progress / c.length).min(1.0);
                    radius.0 = sphere_radius(full * (0.5 + 0.5 * f));
                    if c.progress >= c.length {
                        births.push((id.0, entity));
                    }
                }
                Phase::Apoptotic | Phase::Necrotic => {
                    c.dying += dt;
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
                    radius.0 = sphere_radius(v);
                    if c.dying >= duration {
                        deaths.push((row.0, entity));
                    }
                }
            }
        }
        world.insert_resource(states);
        world.insert_resource(batch);
        world.insert_resource(ligands);
    }

    // Ablations and grafts fire once, at the first fate step at or after their start.
    let t = clock.time() as f32;
    let mut grafts = Vec::new();
    for (k, p) in settings.perturbations.iter().enumerate() {
        use explant_scene::PerturbationKind as K;
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
                grafts.push((p.clone(), cells));
                world.resource_mut::<PerturbationLog>().fired[k] = true;
            }
            _ => {}
        }
    }

    // Removals, highest row first, so each swap moves a row that stays.
    deaths.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
    deaths.dedup_by_key(|d| d.0);
    for &(row, entity) in &deaths {
        let moved = world.resource_mut::<States>().swap_remove(row as usize);
        world.despawn(entity);
        if let Some(moved) = moved
            && let Some(mut r) = world.get_mut::<Row>(moved)
        {
            r.0 = row;
        }
    }

    // Births, in ascending id of the mother.
    births.sort_unstable_by_key(|b| b.0);
    let dims = settings.dims;
    let half = sphere_radius(0.5 * full);
    for &(mother_id, mother) in &births {
        let Ok(m) = world.get_entity(mother) else { continue };
        let (Some(row), Some(pos), Some(ty), Some(lin), Some(flag), Some(dir)) = (
            m.get::<Row>().copied(),
            m.get::<Position>().copied(),
            m.get::<CellType>().copied(),
            m.get::<Lineage>().copied(),
            m.get::<Perturbed>().copied(),
            m.get::<Motility>().copied(),
        ) else {
            continue;
        };
        // The daughter carries what the response model last said of her mother.
        let model_fate = m.get::<ModelFate>().copied().unwrap_or_default();
        let Some((spec, _)) = settings.rules[ty.0 as usize].cycle.clone() else { continue };
        let child_id = {
            let mut next = world.resource_mut::<NextId>();
            next.0 += 1;
            next.0 - 1
        };
        let axis = rng::unit_vector(seed, mother_id, tick, Purpose::Division, dims);
        let offset = axis * (0.5 * half);
        let hi = settings.domain;
        let mut mother_state = world.resource::<States>().row(row.0 as usize).to_vec();
        let mut child_state = mother_state.clone();
        if spec.inheritance_noise > 0.0 {
            for (k, (a, b)) in mother_state.iter_mut().zip(child_state.iter_mut()).enumerate() {
                let na = rng::normal(seed, mother_id, tick, Purpose::Inheritance, k as u64);
                let nb = rng::normal(seed, child_id, tick, Purpose::Inheritance, k as u64);
                *a *= (spec.inheritance_noise * na as f32).exp();
                *b *= (spec.inheritance_noise * nb as f32).exp();
            }
        }
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
        let child_row = world.resource::<States>().len() as u32;
        let child = world
            .spawn((
                CellId(child_id),
                Row(child_row),
                Position((pos.0 + offset).clamp(Vec3::ZERO, hi)),
                Radius(half),
                ty,
                Lineage { parent: Some(mother_id), generation: lin.generation + 1, grafted: lin.grafted },
                flag,
                new_cycle(child_id),
                dir,
                model_fate,
            ))
            .id();
        world.resource_mut::<States>().push(child, &child_state);
    }
    // Grafts, in the order of the scene's perturbations.
    for (p, cells) in grafts {
        let (Some(ty), Some(region)) = (p.cell_type, p.spec.region.as_ref()) else { continue };
        let rules = &settings.rules[ty as usize];
        for _ in 0..cells {
            let id = {
                let mut next = world.resource_mut::<NextId>();
                next.0 += 1;
                next.0 - 1
            };
            let (cycle, radius) =
                founder_cycle(rules.cycle.as_ref().map(|c| &c.0), seed, id, tick, settings.cell_radius);
            let row = world.resource::<States>().len() as u32;
            let entity = world
                .spawn((
                    CellId(id),
                    Row(row),
                    Position(point_in(region, dims, seed, id, tick)),
                    Radius(radius),
                    CellType(ty),
                    Lineage { parent: None, generation: 0, grafted: true },
                    Perturbed(true),
                    cycle,
                    Motility::default(),
                    ModelFate::default(),
                ))
                .id();
            let x = settings.baselines[ty as usize].clone();
            world.resource_mut::<States>().push(entity, &x);
        }
    }
    world.resource_mut::<Batch>().fresh = false;
    if (tick / every + 1).is_multiple_of(SORT_INTERVAL) {
        sort_rows(world, settings.contact_radius);
    }
    world.resource_mut::<StageTimers>().add(Stage::Fate, t0.elapsed());
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
