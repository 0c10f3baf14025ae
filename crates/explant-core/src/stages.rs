//! The stage bodies, one system each, in tick order (see [`Stage`](crate::Stage)).

use std::time::Instant;

use bevy_ecs::prelude::*;
use glam::Vec3;
use rayon::prelude::*;

use crate::components::*;
use crate::model::ResponseInput;
use crate::neighbours;
use crate::{CoreError, Stage};

pub use crate::life::{fate, mechanics};

/// Copy positions, radii, types, ids and life phase into the batch, indexed by [`Row`].
fn gather(cells: &Query<(&CellId, &Row, &Position, &Radius, &CellType, &Cycle)>, n: usize, b: &mut Batch) {
    b.cells = n;
    b.ids.resize(n, 0);
    b.positions.resize(n, Vec3::ZERO);
    b.radii.resize(n, 0.0);
    b.cell_type.resize(n, 0);
    b.alive.resize(n, true);
    for (id, row, pos, radius, ty, cycle) in cells {
        let i = row.0 as usize;
        b.ids[i] = id.0;
        b.positions[i] = pos.0;
        b.radii[i] = radius.0;
        b.cell_type[i] = ty.0;
        b.alive[i] = cycle.phase == Phase::Cycling;
    }
}

/// Secrete: gather the batch if cells changed since the last gather; then each living cell exchanges ligands with the
/// voxel that contains its centre (nearest-voxel deposition; sensing reads the same
/// voxel), with PhysiCell's implicit per-cell update over one tick `Δt`, for cell
/// volume `V_c` and voxel volume `V_v`:
///
/// `ρ ← (ρ + Δt (V_c/V_v) S ρ*) / (1 + Δt (V_c/V_v) (S + U)) + Δt E / V_v`
///
/// with `S` = secretion rate × expression of the secreting gene, `ρ*` the saturation
/// density, `U` = uptake rate × receptor expression and `E` = export rate × expression
/// of the secreting gene. It never overshoots saturation or takes more than is there.
/// Cells are visited in row order, so sums are reproducible; the net amount each
/// ligand gained is added to [`Ligands::exchanged`]. Apoptotic and necrotic cells
/// neither secrete nor take up.
#[allow(clippy::too_many_arguments)]
pub fn secrete(
    cells: Query<(&CellId, &Row, &Position, &Radius, &CellType, &Cycle)>,
    states: Res<States>,
    settings: Res<Settings>,
    mut log: ResMut<PerturbationLog>,
    mut batch: ResMut<Batch>,
    mut ligands: ResMut<Ligands>,
    clock: Res<Clock>,
    mut timers: ResMut<StageTimers>,
    failure: Res<Failure>,
) {
    if failure.0.is_some() {
        return;
    }
    let t0 = Instant::now();
    if !batch.fresh || batch.cells != states.len() {
        gather(&cells, states.len(), &mut batch);
        batch.fresh = true;
    }
    let ligands = &mut *ligands;
    let dt = clock.dt;
    let t = clock.time() as f32;
    ligand_perturbations(&settings, &mut log, ligands, t, dt);
    receptor_blocks(&settings, &states, &mut batch, t);
    let b = &*batch;
    let grid = ligands.field.grid;
    let voxels = grid.voxels();
    let vv = grid.voxel_volume();
    let nl = ligands.coupling.len();
    for i in 0..b.cells {
        if !b.alive[i] || ligands.coupling.is_empty() {
            continue;
        }
        let x = states.row(i);
        let v = grid.voxel_of(b.positions[i].to_array());
        let vc = sphere_volume(b.radii[i]);
        for (c, k) in ligands.coupling.iter().enumerate() {
            let xs = x[k.gene].max(0.0);
            let s = k.secretion * xs;
            let open = if b.unblocked.is_empty() { 1.0 } else { b.unblocked[i * nl + c] };
            let u = k.uptake * x[k.receptor].max(0.0) * open;
            let e = k.export * xs;
            if s == 0.0 && u == 0.0 && e == 0.0 {
                continue;
            }
            let rho = &mut ligands.field.data[c * voxels + v];
            let before = *rho;
            let f = dt * vc / vv;
            *rho = (before + f * s * k.saturation) / (1.0 + f * (s + u)) + dt * e / vv;
            ligands.exchanged[c] += f64::from(*rho - before) * f64::from(vv);
        }
    }
    timers.add(Stage::Secrete, t0.elapsed());
}

/// Boluses (once, at their start) and steady sources (every tick while active) add to
/// a ligand in the voxels whose centres lie in the region (every voxel if none); the
/// amounts go to [`PerturbationLog::injected`].
fn ligand_perturbations(settings: &Settings, log: &mut PerturbationLog, ligands: &mut Ligands, t: f32, dt: f32) {
    use explant_scene::PerturbationKind as K;
    for (k, p) in settings.perturbations.iter().enumerate() {
        let add = match p.action {
            K::Bolus { value } if t >= p.spec.start && !log.fired[k] => {
                log.fired[k] = true;
                value
            }
            K::Source { rate } if p.spec.active_at(t) => rate * dt,
            _ => continue,
        };
        let Some(c) = p.ligand else { continue };
        let grid = ligands.field.grid;
        let data = ligands.field.channel_mut(c);
        let mut voxels = 0usize;
        for z in 0..grid.nz {
            for y in 0..grid.ny {
                for x in 0..grid.nx {
                    if p.spec.region.as_ref().is_none_or(|r| r.contains(grid.centre(x, y, z))) {
                        data[(z * grid.ny + y) * grid.nx + x] += add;
                        voxels += 1;
                    }
                }
            }
        }
        log.injected[c] += f64::from(add) * voxels as f64 * f64::from(grid.voxel_volume());
    }
}

/// The fraction of each ligand each cell still senses and takes up under the active
/// receptor blocks (`Batch::unblocked`, left empty when none is active).
fn receptor_blocks(settings: &Settings, states: &States, batch: &mut Batch, t: f32) {
    use explant_scene::PerturbationKind as K;
    let active: Vec<&PlannedPerturbation> = settings
        .perturbations
        .iter()
        .filter(|p| matches!(p.action, K::ReceptorBlock { .. }) && p.spec.active_at(t))
        .collect();
    batch.unblocked.clear();
    if active.is_empty() {
        return;
    }
    let l = settings.ligands;
    batch.unblocked.resize(batch.cells * l, 1.0);
    for i in 0..batch.cells {
        for p in &active {
            let (K::ReceptorBlock { fraction }, Some(c)) = (p.action, p.ligand) else { continue };
            if p.targets(batch.ids[i], batch.cell_type[i], batch.positions[i], states.row(i)) {
                batch.unblocked[i * l + c] *= 1.0 - fraction;
            }
        }
    }
}

/// Diffuse: advance the ligand field by one tick on the chosen backend.
pub fn diffuse(
    mut ligands: ResMut<Ligands>,
    mut diffuser: ResMut<Diffuser>,
    clock: Res<Clock>,
    mut timers: ResMut<StageTimers>,
    mut failure: ResMut<Failure>,
) {
    if failure.0.is_some() {
        return;
    }
    let t0 = Instant::now();
    let ligands = &mut *ligands;
    if ligands.field.channels > 0
        && let Err(e) = diffuser.0.step(&mut ligands.field, &ligands.params, clock.dt)
    {
        failure.0 = Some(CoreError::Field(e));
    }
    timers.add(Stage::Diffuse, t0.elapsed());
}

/// Sense: find neighbours within the contact radius (a cell list rebuilt each tick,
/// [`neighbours::CellList`]), average the contact genes over neighbours, count
/// neighbours by cell type, and read each ligand at the cell's voxel, gated by the
/// receptor's expression.
#[allow(clippy::too_many_arguments)]
pub fn sense(
    states: Res<States>,
    clock: Res<Clock>,
    ligands: Res<Ligands>,
    settings: Res<Settings>,
    mut batch: ResMut<Batch>,
    mut timers: ResMut<StageTimers>,
    failure: Res<Failure>,
) {
    if failure.0.is_some() {
        return;
    }
    if !(clock.tick.is_multiple_of(settings.mechanics_every) || clock.tick.is_multiple_of(settings.state_every)) {
        return;
    }
    let t0 = Instant::now();
    let (g, l, nt) = (settings.genes, settings.ligands, settings.cell_types);
    let b = &mut *batch;
    let n = b.cells;

    // Neighbours within the interaction radius (contact signalling and mechanics share it):
    // a spatially sorted cell list, faster than an R-tree here (see `neighbours`).
    neighbours::neighbours_cell_list(&b.positions, settings.contact_radius, &mut b.offsets, &mut b.neighbours);

    // Contact signals: neighbour mean of each contact gene, and neighbour counts by type.
    b.contact.clear();
    b.contact.resize(n * g, 0.0);
    b.neighbour_types.clear();
    b.neighbour_types.resize(n * nt, 0.0);
    let (offsets, neighbours, expression, types) = (&b.offsets, &b.neighbours, &states.data, &b.cell_type);
    let contact_genes: Vec<usize> = (0..g).filter(|&k| settings.contact_mask[k]).collect();
    b.contact.par_chunks_mut(g.max(1)).zip(b.neighbour_types.par_chunks_mut(nt.max(1))).enumerate().for_each(
        |(i, (out, counts))| {
            let list = &neighbours[offsets[i] as usize..offsets[i + 1] as usize];
            if list.is_empty() {
                return;
            }
            for &j in list {
                let xj = &expression[j as usize * g..(j as usize + 1) * g];
                for &k in &contact_genes {
                    out[k] += xj[k];
                }
                counts[types[j as usize] as usize] += 1.0;
            }
            let inv = 1.0 / list.len() as f32;
            for &k in &contact_genes {
                out[k] *= inv;
            }
        },
    );

    // Ligands at the cell's voxel × receptor expression.
    b.sensed.clear();
    b.sensed.resize(n * l, 0.0);
    if l > 0 {
        let grid = ligands.field.grid;
        let voxels = grid.voxels();
        let (positions, unblocked) = (&b.positions, &b.unblocked);
        b.sensed.par_chunks_mut(l).enumerate().for_each(|(i, out)| {
            let v = grid.voxel_of(positions[i].to_array());
            for c in 0..l {
                let receptor = states.data[i * g + ligands.receptor[c]].max(0.0);
                let open = if unblocked.is_empty() { 1.0 } else { unblocked[i * l + c] };
                out[c] = ligands.field.data[c * voxels + v] * receptor * open;
            }
        });
    }
    timers.add(Stage::Sense, t0.elapsed());
}

/// Respond: one call of the response model on the whole population's expression
/// matrix ([`States`], no copy), then an explicit Euler step in place, kept
/// non-negative. Runs every `state_every` ticks with a step of that many ticks.
#[allow(clippy::too_many_arguments)] // a system: each argument is a resource it uses
pub fn respond(
    mut states: ResMut<States>,
    model: Res<Model>,
    clock: Res<Clock>,
    settings: Res<Settings>,
    mut batch: ResMut<Batch>,
    mut ligands: ResMut<Ligands>,
    mut fates: Query<&mut ModelFate>,
    mut timers: ResMut<StageTimers>,
    mut failure: ResMut<Failure>,
) {
    if failure.0.is_some() || !clock.tick.is_multiple_of(settings.state_every) {
        return;
    }
    let t0 = Instant::now();
    let g = settings.genes;
    let dt = clock.dt * settings.state_every as f32;
    let b = &mut *batch;
    b.rates.clear();
    b.rates.resize(b.cells * g, 0.0);
    let mut guard = match model.0.lock() {
        Ok(m) => m,
        Err(_) => {
            failure.0 = Some(CoreError::Model(crate::ModelError::Run {
                model: "response model".into(),
                message: "a previous call panicked".into(),
            }));
            return;
        }
    };
    let extras = guard.extras();
    let nl = ligands.params.len();
    b.secretion.clear();
    b.fate_scores.clear();
    if extras.secretion {
        b.secretion.resize(b.cells * nl, 0.0);
    }
    if extras.fate {
        b.fate_scores.resize(b.cells * 2, 0.0);
    }
    let input = ResponseInput {
        cells: b.cells,
        expression: &states.data,
        sensed: &b.sensed,
        contact: &b.contact,
        neighbour_types: &b.neighbour_types,
        cell_type: &b.cell_type,
        dt,
    };
    if b.keep_inputs {
        b.inputs.clear();
        b.inputs.extend_from_slice(&states.data);
    }
    let result = guard.respond(&input, &mut b.rates, &mut b.secretion, &mut b.fate_scores);
    if let Err(e) = result {
        failure.0 = Some(CoreError::Model(e));
        return;
    }
    states.data.par_chunks_mut(4096).zip(b.rates.par_chunks(4096)).for_each(|(x, r)| {
        for (x, r) in x.iter_mut().zip(r) {
            *x = (*x + dt * r).max(0.0);
        }
    });
    if b.secretion.iter().chain(&b.fate_scores).any(|v| !v.is_finite()) {
        let what = if b.secretion.iter().any(|v| !v.is_finite()) { "secretion" } else { "fate score" };
        failure.0 = Some(CoreError::Model(crate::ModelError::Run {
            model: guard.name(),
            message: format!("returned a non-finite {what}"),
        }));
        return;
    }
    drop(guard);
    // Model secretion: released into the voxel holding the cell's centre over the state
    // step, and entered in the exchange ledger (negative values count as none: uptake
    // stays with the receptor coupling of `secrete`).
    if extras.secretion && nl > 0 {
        let grid = ligands.field.grid;
        let (voxels, vv) = (grid.voxels(), grid.voxel_volume());
        for i in 0..b.cells {
            if !b.alive[i] {
                continue;
            }
            let v = grid.voxel_of(b.positions[i].to_array());
            for c in 0..nl {
                let amount = dt * b.secretion[i * nl + c].max(0.0);
                if amount > 0.0 {
                    ligands.field.data[c * voxels + v] += amount / vv;
                    ligands.exchanged[c] += f64::from(amount);
                }
            }
        }
    }
    if extras.fate {
        for (i, e) in states.owner.iter().enumerate().take(b.cells) {
            if let Ok(mut f) = fates.get_mut(*e) {
                f.hazard = b.fate_scores[2 * i].max(0.0);
                f.progression = b.fate_scores[2 * i + 1].clamp(0.0, 1.0);
            }
        }
    }
    timers.add(Stage::Respond, t0.elapsed());
}

/// Perturb: apply the scene's gene clamps (knockout, knockdown, overexpression) to the
/// cells they target, and flag every cell a gene clamp or a receptor block acts on.
pub fn perturb(
    mut cells: Query<(&CellId, &Row, &Position, &CellType, &Lineage, &mut Perturbed)>,
    mut states: ResMut<States>,
    clock: Res<Clock>,
    settings: Res<Settings>,
    mut timers: ResMut<StageTimers>,
    failure: Res<Failure>,
) {
    use explant_scene::PerturbationKind as K;
    if failure.0.is_some() || settings.perturbations.is_empty() {
        return;
    }
    let t0 = Instant::now();
    let t = clock.time() as f32;
    let active: Vec<&PlannedPerturbation> = settings
        .perturbations
        .iter()
        .filter(|p| {
            p.spec.active_at(t)
                && matches!(
                    p.action,
                    K::Knockout | K::Knockdown { .. } | K::Overexpress { .. } | K::ReceptorBlock { .. }
                )
        })
        .collect();
    for (id, row, pos, ty, lineage, mut flag) in &mut cells {
        // Grafted cells (and their progeny) stay flagged for life.
        let mut hit = lineage.grafted;
        let x = states.row_mut(row.0 as usize);
        for p in &active {
            if !p.targets(id.0, ty.0, pos.0, x) {
                continue;
            }
            hit = true;
            let Some(g) = p.gene else { continue };
            x[g] = match p.action {
                K::Knockout => 0.0,
                K::Knockdown { fraction } => x[g] * (1.0 - fraction),
                K::Overexpress { value } => value,
                _ => x[g],
            };
        }
        if flag.0 != hit {
            flag.0 = hit;
        }
    }
    timers.add(Stage::Perturb, t0.elapsed());
}

/// Record: advance the clock, and at each recording interval append pseudobulk
/// expression by cell type and ligand totals to the [`Recording`]; check the state
/// for NaN or runaway values.
#[allow(clippy::too_many_arguments)]
pub fn record(
    cells: Query<(&CellType, &Row, &Position)>,
    states: Res<States>,
    ligands: Res<Ligands>,
    settings: Res<Settings>,
    mut clock: ResMut<Clock>,
    mut recording: ResMut<Recording>,
    mut timers: ResMut<StageTimers>,
    mut failure: ResMut<Failure>,
) {
    if failure.0.is_some() {
        return;
    }
    let t0 = Instant::now();
    clock.tick += 1;
    if clock.tick.is_multiple_of(settings.record_interval) {
        let mut rows: Vec<(u32, u32, Vec3)> = cells.iter().map(|(t, r, p)| (r.0, t.0, p.0)).collect();
        rows.sort_unstable_by_key(|r| r.0);
        let it = rows.iter().map(|&(r, t, p)| (t, p, states.row(r as usize)));
        if let Err(e) = recording.capture(&clock, &settings, it, &ligands) {
            failure.0 = Some(e);
        }
    }
    timers.add(Stage::Record, t0.elapsed());
}

/// Time series recorded during a run.
#[derive(Resource, Debug, Clone, Default)]
pub struct Recording {
    /// One row per (time point, cell type).
    pub pseudobulk: Vec<PseudobulkRow>,
    /// One row per time point: total amount of each ligand on the grid.
    pub ligand_totals: Vec<(u64, f64, Vec<f64>)>,
    /// Number of cell types.
    pub cell_types: usize,
    /// One row per (time point, named region of `output.regions`, cell type).
    pub regional: Vec<RegionRow>,
    /// The named regions.
    pub regions: Vec<explant_scene::NamedRegion>,
}

/// Mean expression of one cell type in one named region at one time point.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionRow {
    /// Index into [`Recording::regions`].
    pub region: usize,
    /// The pseudobulk of the cells of that type inside the region.
    pub row: PseudobulkRow,
}

/// Mean expression of one cell type at one time point.
#[derive(Debug, Clone, PartialEq)]
pub struct PseudobulkRow {
    /// Tick.
    pub tick: u64,
    /// Minutes.
    pub time: f64,
    /// Cell type index.
    pub cell_type: u32,
    /// Cells of that type.
    pub cells: usize,
    /// Mean expression per gene.
    pub mean: Vec<f64>,
}

/// Largest expression value accepted before the run is stopped as unstable.
pub const RUNAWAY: f32 = 1.0e6;

impl Recording {
    /// Append one time point; fails on NaN, infinite or runaway values.
    pub fn capture<'a>(
        &mut self,
        clock: &Clock,
        settings: &Settings,
        cells: impl Iterator<Item = (u32, Vec3, &'a [f32])>,
        ligands: &Ligands,
    ) -> Result<(), CoreError> {
        let g = settings.genes;
        let nr = self.regions.len();
        let mut sums = vec![vec![0.0f64; g]; self.cell_types];
        let mut counts = vec![0usize; self.cell_types];
        let mut rsums = vec![vec![0.0f64; g]; self.cell_types * nr];
        let mut rcounts = vec![0usize; self.cell_types * nr];
        for (t, p, x) in cells {
            for (k, region) in self.regions.iter().enumerate() {
                if region.shape.contains(p.to_array()) {
                    let slot = k * self.cell_types + t as usize;
                    rcounts[slot] += 1;
                    for (s, v) in rsums[slot].iter_mut().zip(x) {
                        *s += f64::from(*v);
                    }
                }
            }
            if let Some(bad) = x.iter().position(|v| !v.is_finite() || v.abs() > RUNAWAY) {
                return Err(CoreError::Unstable {
                    tick: clock.tick,
                    time: clock.time(),
                    what: format!("expression of gene #{bad} is `{}`: lower `time.dt` or check the model", x[bad]),
                });
            }
            counts[t as usize] += 1;
            for (s, v) in sums[t as usize].iter_mut().zip(x) {
                *s += f64::from(*v);
            }
        }
        for (t, (s, &n)) in sums.into_iter().zip(&counts).enumerate() {
            let mean = s.into_iter().map(|v| if n > 0 { v / n as f64 } else { 0.0 }).collect();
            self.pseudobulk.push(PseudobulkRow {
                tick: clock.tick,
                time: clock.time(),
                cell_type: t as u32,
                cells: n,
                mean,
            });
        }
        for (slot, (s, &n)) in rsums.into_iter().zip(&rcounts).enumerate() {
            let mean = s.into_iter().map(|v| if n > 0 { v / n as f64 } else { 0.0 }).collect();
            self.regional.push(RegionRow {
                region: slot / self.cell_types,
                row: PseudobulkRow {
                    tick: clock.tick,
                    time: clock.time(),
                    cell_type: (slot % self.cell_types) as u32,
                    cells: n,
                    mean,
                },
            });
        }
        let totals: Vec<f64> = (0..ligands.field.channels).map(|c| ligands.field.total(c)).collect();
        if let Some(c) = totals.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::Unstable {
                tick: clock.tick,
                time: clock.time(),
                what: format!("ligand #{c} is not finite"),
            });
        }
        self.ligand_totals.push((clock.tick, clock.time(), totals));
        Ok(())
    }
}
