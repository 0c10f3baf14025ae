//! The stage bodies, one system each, in tick order (see [`Stage`](crate::Stage)):
//! secrete, diffuse, sense, respond and perturb here; mechanics in
//! [`mechanics`](crate::mechanics), fate in [`life`](crate::life), record in
//! [`recording`](crate::recording). When and whether a stage runs (after a failure, at
//! coarser steps) and its timing are the schedule's ([`schedule`](crate::schedule)), so a
//! body holds only its physics.

use std::sync::MutexGuard;

use bevy_ecs::prelude::*;
use explant_field::StepInputs;
use glam::Vec3;
use rayon::prelude::*;

use crate::clamp::SourceSplit;
use crate::components::*;
use crate::model::{Extras, ResponseInput, ResponseModel};
use crate::residency::{self, FieldHome};

use crate::schedule::TickContext;
use crate::{CoreError, ModelError};

/// Copy positions, radii, types, ids and life phase into the batch, indexed by [`Row`].
fn gather(cells: &Query<(&CellId, &Row, &Position, &Radius, &CellType, &Cycle)>, n: usize, b: &mut Batch) {
    b.cells = n;
    b.positions_moved();
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
///
/// When the field lives on the diffusion backend's device ([`FieldHome`]), the same
/// maps are applied there (see [`residency`](crate::residency)).
#[allow(clippy::too_many_arguments)] // a system: one argument per resource it touches
pub(crate) fn secrete(
    ctx: TickContext,
    cells: Query<(&CellId, &Row, &Position, &Radius, &CellType, &Cycle)>,
    states: Res<States>,
    mut log: ResMut<PerturbationLog>,
    mut batch: ResMut<Batch>,
    mut ligands: ResMut<Ligands>,
    mut split: ResMut<SourceSplit>,
    (mut diffuser, mut home, mut failure): (ResMut<Diffuser>, ResMut<FieldHome>, ResMut<Failure>),
) {
    if !batch.fresh || batch.cells != states.len() {
        gather(&cells, states.len(), &mut batch);
        batch.fresh = true;
    }
    let ligands = &mut *ligands;
    let dt = ctx.clock.dt;
    let t = ctx.time();
    if home.on_device() {
        // On the device: the additions are listed here and applied there.
        let mut additions = Vec::new();
        ligand_perturbations(&ctx.settings, &mut log, ligands, t, dt, ctx.clock.tick, Some(&mut additions));
        if !additions.is_empty()
            && let Err(e) = residency::add_on_device(ligands, &mut diffuser, &mut home, &additions)
        {
            failure.0 = Some(e);
            return;
        }
    } else {
        ligand_perturbations(&ctx.settings, &mut log, ligands, t, dt, ctx.clock.tick, None);
    }
    receptor_blocks(&ctx.settings, &states, &mut batch, t);
    let grid = ligands.field.grid;
    batch.cell_voxels(&grid);
    if home.on_device() {
        if !ligands.coupling.is_empty()
            && let Err(e) = secrete_on_device(&states, &mut batch, ligands, &mut diffuser, &mut home, dt)
        {
            failure.0 = Some(e);
        }
        return;
    }
    let b = &*batch;
    let voxels = grid.voxels();
    let vv = grid.voxel_volume();
    let nl = ligands.coupling.len();
    let split = &mut *split;
    if nl > 1 && !ligands.record_added && split.field.is_none() {
        // Each ligand's channel on its own thread: a ligand's voxels are updated and its
        // ledger summed in row order as below (in a local sum: the ledgers of two
        // ligands share a cache line), so the result is the same on any number of
        // threads; the maps of different ligands never touch the same values.
        let coupling = &ligands.coupling;
        let states = &*states;
        ligands.field.data.par_chunks_mut(voxels.max(1)).zip(ligands.exchanged.par_iter_mut()).enumerate().for_each(
            |(c, (field, exchanged))| {
                let mut sum = *exchanged;
                for i in 0..b.cells {
                    if !b.alive[i] {
                        continue;
                    }
                    let Some(map) = secretion_map(coupling, states, b, i, c, dt, vv) else { continue };
                    sum += f64::from(exchange(&mut field[b.voxels[i] as usize], map)) * f64::from(vv);
                }
                *exchanged = sum;
            },
        );
        return;
    }
    for i in 0..b.cells {
        if !b.alive[i] {
            continue;
        }
        let v = b.voxels[i] as usize;
        for c in 0..nl {
            let Some(map @ [a, keep, add]) = secretion_map(&ligands.coupling, &states, b, i, c, dt, vv) else {
                continue;
            };
            let index = c * voxels + v;
            let change = exchange(&mut ligands.field.data[index], map);
            ligands.exchanged[c] += f64::from(change) * f64::from(vv);
            note_added(&mut ligands.added, ligands.record_added, index, change);
            // The same affine map ρ ← aρ + b on each type's part, b only on this type's.
            if let Some(parts) = split.field.as_mut() {
                let own = a / keep + add;
                for (p, t) in split.pairs.iter().enumerate().filter(|(_, p)| p.0 == c).map(|(p, q)| (p, q.1)) {
                    let part = &mut parts.data[p * voxels + v];
                    let before = *part;
                    *part /= keep;
                    if t == b.cell_type[i] as usize {
                        *part += own;
                    }
                    note_added(&mut split.added, ligands.record_added, p * voxels + v, *part - before);
                }
            }
        }
    }
}

/// Apply one cell's secretion map `[a, b, c']` ([`secretion_map`]) to its voxel's value
/// `rho`: `ρ ← (ρ + a) / b + c'`; returns the change.
#[inline]
fn exchange(rho: &mut f32, [a, keep, add]: [f32; 3]) -> f32 {
    let before = *rho;
    *rho = (before + a) / keep + add;
    *rho - before
}

/// Living cell `i`'s exchange with ligand `c` over one tick as the map
/// `ρ ← (ρ + a) / b + c'` of [`secrete`]: `a = f S ρ*`, `b = 1 + f (S + U)`,
/// `c' = Δt E / V_v` with `f = Δt V_c / V_v`; `None` when the cell neither secretes,
/// takes up nor exports it. One definition for the host loop and the device. Always
/// inlined: called, it kept the host loop's ledger sum in memory across the call (every
/// vector register is the caller's to save), a dependency through memory at each cell.
#[inline(always)]
fn secretion_map(
    coupling: &[Coupling],
    states: &States,
    b: &Batch,
    i: usize,
    c: usize,
    dt: f32,
    vv: f32,
) -> Option<[f32; 3]> {
    let k = &coupling[c];
    let x = states.row(i);
    let xs = x[k.gene].max(0.0);
    let s = k.secretion * xs;
    let open = if b.unblocked.is_empty() { 1.0 } else { b.unblocked[i * coupling.len() + c] };
    let u = k.uptake * x[k.receptor].max(0.0) * open;
    let e = k.export * xs;
    if s == 0.0 && u == 0.0 && e == 0.0 {
        return None;
    }
    let f = dt * sphere_volume(b.radii[i]) / vv;
    Some([f * s * k.saturation, 1.0 + f * (s + u), dt * e / vv])
}

/// The secrete stage's maps ([`secretion_map`]), applied on the device.
fn secrete_on_device(
    states: &States,
    batch: &mut Batch,
    ligands: &mut Ligands,
    diffuser: &mut Diffuser,
    home: &mut FieldHome,
    dt: f32,
) -> Result<(), CoreError> {
    let vv = ligands.field.grid.voxel_volume();
    let nl = ligands.coupling.len();
    let (b, l) = (&*batch, &*ligands);
    home.set_exchange(batch.cells, nl, |i, c| {
        if b.alive[i] { secretion_map(&l.coupling, states, b, i, c, dt, vv) } else { None }
    });
    residency::exchange_on_device(
        ligands,
        diffuser,
        home,
        batch,
        residency::Exchange::Secretion { ledger_scale: f64::from(vv) },
    )
}

/// Boluses (once, at their start) and steady sources (every tick while active) add to
/// a ligand in the voxels whose centres lie in the region (every voxel if none); the
/// amounts go to [`PerturbationLog::injected`]. A bolus is a sharp change: the ADI
/// scheme restarts damped from this tick ([`Ligands::restart_tick`]); a steady source's
/// amounts are noted as added ([`Ligands::added`]). With `on_device`, the additions
/// `(index into the field, amount)` are listed there in the order the host would make
/// them, for the device to apply, instead of changing the host field.
fn ligand_perturbations(
    settings: &Settings,
    log: &mut PerturbationLog,
    ligands: &mut Ligands,
    t: f32,
    dt: f32,
    tick: u64,
    mut on_device: Option<&mut Vec<(u32, f32)>>,
) {
    use explant_scene::PerturbationKind as K;
    for (k, p) in settings.perturbations.iter().enumerate() {
        let (add, sharp) = match p.action {
            K::Bolus { value } if t >= p.spec.start && !log.fired[k] => {
                log.fired[k] = true;
                (value, true)
            }
            K::Source { rate } if p.spec.active_at(t) => (rate * dt, false),
            _ => continue,
        };
        let Some(c) = p.ligand else { continue };
        if sharp {
            ligands.restart_tick = tick;
        }
        let grid = ligands.field.grid;
        let base = c * grid.voxels();
        let mut voxels = 0usize;
        for z in 0..grid.nz {
            for y in 0..grid.ny {
                for x in 0..grid.nx {
                    if p.spec.region.as_ref().is_none_or(|r| r.contains(grid.centre(x, y, z))) {
                        let index = base + (z * grid.ny + y) * grid.nx + x;
                        if let Some(list) = on_device.as_deref_mut() {
                            list.push((index as u32, add));
                        } else {
                            ligands.field.data[index] += add;
                            if !sharp {
                                ligands.note_added(index, add);
                            }
                        }
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
/// The ligands' parts by secreting type ([`SourceSplit`]), if tracked, take the same
/// step with their own backend.
/// A field kept on the device ([`FieldHome`]) is stepped there.
pub(crate) fn diffuse(
    mut ligands: ResMut<Ligands>,
    mut diffuser: ResMut<Diffuser>,
    mut split: ResMut<SourceSplit>,
    clock: Res<Clock>,
    mut failure: ResMut<Failure>,
    mut home: ResMut<FieldHome>,
) {
    let ligands = &mut *ligands;
    let restart = ligands.record_added
        && clock.tick.saturating_sub(ligands.restart_tick)
            < u64::from(explant_field::damped_steps(&ligands.field.grid, &ligands.params, clock.dt));
    if home.on_device() {
        if ligands.field.channels > 0
            && let Err(e) = residency::step_on_device(ligands, &mut diffuser, &mut home, clock.dt, restart)
        {
            failure.0 = Some(e);
        }
        return;
    }
    let inputs = StepInputs { added: &ligands.added, restart };
    if ligands.field.channels > 0
        && let Err(e) = diffuser.0.step_with(&mut ligands.field, &ligands.params, clock.dt, inputs)
    {
        failure.0 = Some(CoreError::Field(e));
        return;
    }
    ligands.added.clear();
    let split = &mut *split;
    let inputs = StepInputs { added: &split.added, restart };
    if let (Some(field), Some(d)) = (split.field.as_mut(), split.diffuser.as_mut())
        && field.channels > 0
        && let Err(e) = d.step_with(field, &split.params, clock.dt, inputs)
    {
        failure.0 = Some(CoreError::Field(e));
    }
    split.added.clear();
}

/// Contact genes and cell types up to which [`sense`] keeps a cell's contact sums and
/// neighbour counts in registers.
const CONTACT_LANES: usize = 8;

/// A concentration as a cell senses it: the ADI scheme can leave a transient undershoot
/// of about 10⁻⁵ of a source's peak far from it (see `explant_field::adi`), and a cell
/// senses no less than nothing. A NaN stays NaN (the run's checks name it), and the
/// other schemes, which never go negative, read the same bits as before.
#[inline]
fn not_below_zero(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
}

/// Sense: find neighbours within the contact radius (a cell list out to a skin, kept
/// while the cells stay within it: [`crate::neighbours::SkinLists`]), average the contact genes over neighbours, count
/// neighbours by cell type, and read each ligand at the cell's voxel, gated by the
/// receptor's expression. Runs at the ticks where mechanics or respond run.
///
/// A field kept on the device ([`FieldHome`]) is read there at the cells' voxels.
#[allow(clippy::too_many_arguments)] // a system: one argument per resource it touches
pub(crate) fn sense(
    ctx: TickContext,
    states: Res<States>,
    mut ligands: ResMut<Ligands>,
    split: Res<SourceSplit>,
    mut batch: ResMut<Batch>,
    mut diffuser: ResMut<Diffuser>,
    mut home: ResMut<FieldHome>,
    mut failure: ResMut<Failure>,
) {
    let settings = &*ctx.settings;
    let (g, l, nt) = (settings.genes, settings.ligands, settings.cell_types);
    let b = &mut *batch;
    let n = b.cells;

    // Neighbours within the interaction radius (contact signalling and mechanics share it):
    // a spatially sorted cell list, faster than an R-tree here, out to a skin and reused
    // while the cells stay within it (see `neighbours::SkinLists`).
    if let Err(e) = b.neighbour_lists.neighbours_into(
        &b.ids,
        &b.positions,
        settings.contact_radius,
        &mut b.offsets,
        &mut b.neighbours,
    ) {
        failure.0 = Some(e);
        return;
    }

    // Contact signals: neighbour mean of each contact gene, and neighbour counts by type.
    // Resized without clearing: every row is written below (zeroing 10⁶ cells' rows
    // first was a pass of its own over 36 MB).
    b.contact.resize(n * g, 0.0);
    b.neighbour_types.resize(n * nt, 0.0);
    let (offsets, neighbours, types) = (&b.offsets, &b.neighbours, &b.cell_type);
    let contact_genes: Vec<usize> = (0..g).filter(|&k| settings.contact_mask[k]).collect();
    // The contact genes' columns side by side, so the neighbour loop reads only them
    // (one value per cell for one contact gene, instead of each neighbour's whole row).
    let nc = contact_genes.len();
    let mut columns = vec![0.0f32; n * nc];
    columns.par_chunks_mut(nc.max(1)).zip(states.data.par_chunks(g.max(1))).for_each(|(c, x)| {
        for (c, &k) in c.iter_mut().zip(&contact_genes) {
            *c = x[k];
        }
    });
    let in_registers = nc <= CONTACT_LANES && nt <= CONTACT_LANES;
    let cg = &contact_genes[..];
    b.contact.par_chunks_mut(g.max(1)).zip(b.neighbour_types.par_chunks_mut(nt.max(1))).enumerate().for_each(
        |(i, (out, counts))| {
            let list = &neighbours[offsets[i] as usize..offsets[i + 1] as usize];
            contact_row(list, &columns, cg, types, in_registers, out, counts);
        },
    );

    // Ligands at the cell's voxel × receptor expression.
    b.sensed.clear();
    b.sensed.resize(n * l, 0.0);
    if l > 0 {
        let grid = ligands.field.grid;
        let voxels = grid.voxels();
        b.cell_voxels(&grid);
        let on_device = home.on_device();
        if on_device && let Err(e) = residency::sample_on_device(&mut ligands, &mut diffuser, &mut home, &b.voxels) {
            failure.0 = Some(e);
            return;
        }
        let (cell_voxel, unblocked, sampled) = (&b.voxels, &b.unblocked, &home.sampled);
        b.sensed.par_chunks_mut(l).enumerate().for_each(|(i, out)| {
            let v = cell_voxel[i] as usize;
            for c in 0..l {
                let receptor = states.data[i * g + ligands.receptor[c]].max(0.0);
                let open = if unblocked.is_empty() { 1.0 } else { unblocked[i * l + c] };
                let at = if on_device { sampled[i * l + c] } else { ligands.field.data[c * voxels + v] };
                out[c] = not_below_zero(at) * receptor * open;
            }
        });
    }
    // Each tracked type's part of a ligand, read as the ligand is.
    let np = b.split_pairs.len();
    b.sensed_from.clear();
    if let Some(parts) = split.field.as_ref().filter(|_| np > 0) {
        b.sensed_from.resize(n * np, 0.0);
        let voxels = parts.grid.voxels();
        b.cell_voxels(&parts.grid);
        let (cell_voxel, unblocked, pairs) = (&b.voxels, &b.unblocked, &b.split_pairs);
        b.sensed_from.par_chunks_mut(np).enumerate().for_each(|(i, out)| {
            let v = cell_voxel[i] as usize;
            for (p, &(c, _)) in pairs.iter().enumerate() {
                let receptor = states.data[i * g + ligands.receptor[c]].max(0.0);
                let open = if unblocked.is_empty() { 1.0 } else { unblocked[i * l + c] };
                out[p] = parts.data[p * voxels + v] * receptor * open;
            }
        });
    }
    b.sensed_at = Some(ctx.clock.tick);
}

/// One cell's contact signals from its neighbours `list`: into `out` (the cell's row of
/// [`Batch::contact`]) the neighbour mean of each contact gene (`columns`: each cell's
/// contact genes side by side, in `contact_genes`' order), into `counts` its neighbours
/// by cell type. Every value of both rows is written.
///
/// `in_registers` (at most [`CONTACT_LANES`] contact genes and cell types) keeps the
/// sums in registers rather than in the rows (a load and a store per neighbour and
/// value, 25 → 18 ms of a 10⁶-cell tick): the same additions in the same order, and the
/// counts are exact integers either way, so both ways give the same bits.
fn contact_row(
    list: &[u32],
    columns: &[f32],
    contact_genes: &[usize],
    types: &[u32],
    in_registers: bool,
    out: &mut [f32],
    counts: &mut [f32],
) {
    out.fill(0.0);
    counts.fill(0.0);
    if list.is_empty() {
        return;
    }
    let nc = contact_genes.len();
    let inv = 1.0 / list.len() as f32;
    if in_registers {
        let (mut sum, mut count) = ([0.0f32; CONTACT_LANES], [0u32; CONTACT_LANES]);
        for &j in list {
            let j = j as usize;
            for (s, &x) in sum.iter_mut().zip(&columns[j * nc..(j + 1) * nc]) {
                *s += x;
            }
            let t = types[j] as usize;
            for (c, u) in count.iter_mut().zip(0..) {
                *c += u32::from(t == u);
            }
        }
        for (&k, &s) in contact_genes.iter().zip(&sum) {
            out[k] = s * inv;
        }
        for (c, &m) in counts.iter_mut().zip(&count) {
            *c = m as f32;
        }
        return;
    }
    for &j in list {
        let xj = &columns[j as usize * nc..(j as usize + 1) * nc];
        for (&k, &x) in contact_genes.iter().zip(xj) {
            out[k] += x;
        }
        counts[types[j as usize] as usize] += 1.0;
    }
    for &k in contact_genes {
        out[k] *= inv;
    }
}

/// Respond: one call of the response model on the whole population's expression
/// matrix ([`States`], no copy), then an explicit Euler step in place, kept
/// non-negative. Runs every `state_every` ticks with a step of that many ticks. A model
/// with extra outputs ([`Extras`]) has its secretion released onto the grid and its fate
/// scores kept on the cells ([`ModelFate`]).
#[allow(clippy::too_many_arguments)] // a system: one argument per resource it touches
pub(crate) fn respond(
    ctx: TickContext,
    mut states: ResMut<States>,
    model: Res<Model>,
    mut batch: ResMut<Batch>,
    mut ligands: ResMut<Ligands>,
    mut split: ResMut<SourceSplit>,
    mut fates: Query<&mut ModelFate>,
    mut failure: ResMut<Failure>,
    (mut diffuser, mut home): (ResMut<Diffuser>, ResMut<FieldHome>),
) {
    let dt = ctx.state_dt();
    let b = &mut *batch;
    let extras = match run_model(&model, &mut states, b, &ctx.settings, dt) {
        Ok(extras) => {
            b.responded = Some((ctx.clock.tick, dt));
            extras
        }
        Err(e) => {
            failure.0 = Some(e);
            return;
        }
    };
    if extras.secretion && !ligands.params.is_empty() {
        if home.on_device() {
            if let Err(e) = release_on_device(b, &mut ligands, &mut diffuser, &mut home, dt) {
                failure.0 = Some(e);
                return;
            }
        } else {
            release_secretion(b, &mut ligands, &mut split, dt);
        }
    }
    if extras.fate {
        keep_fate_scores(b, &states, &mut fates);
    }
}

/// Call the model on the population (rates into [`Batch::rates`], its extra outputs
/// into [`Batch::secretion`] and [`Batch::fate_scores`]) and take the Euler step. Fails
/// when a previous call panicked, the model fails, or any of its outputs is not finite
/// (checked before the step, which would otherwise turn a NaN rate into 0).
fn run_model(
    model: &Model,
    states: &mut States,
    b: &mut Batch,
    settings: &Settings,
    dt: f32,
) -> Result<Extras, CoreError> {
    let (g, nl) = (settings.genes, settings.ligands);
    b.rates.clear();
    b.rates.resize(b.cells * g, 0.0);
    let mut guard = lock(model)?;
    let extras = guard.extras();
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
    guard.respond(&input, &mut b.rates, &mut b.secretion, &mut b.fate_scores)?;
    check_outputs(&**guard, b, settings)?;
    euler_step(&mut states.data, &b.rates, dt);
    Ok(extras)
}

/// The response model, unless a previous call panicked while holding it.
fn lock(model: &Model) -> Result<MutexGuard<'_, Box<dyn ResponseModel>>, CoreError> {
    model.0.lock().map_err(|_| {
        CoreError::Model(ModelError::Run { model: "response model".into(), message: "a previous call panicked".into() })
    })
}

/// Explicit Euler step of `dx/dt = rates` over `dt`, kept non-negative:
/// `x ← max(x + Δt · rate, 0)`.
fn euler_step(x: &mut [f32], rates: &[f32], dt: f32) {
    x.par_chunks_mut(4096).zip(rates.par_chunks(4096)).for_each(|(x, r)| {
        for (x, r) in x.iter_mut().zip(r) {
            *x = (*x + dt * r).max(0.0);
        }
    });
}

/// Values per parallel piece of the finiteness check in [`check_outputs`].
const FINITE_CHUNK: usize = 1 << 14;

/// Index of the first non-finite value of `v`. Chunk by chunk in parallel: rayon's
/// per-item `position_first` checks a shared flag at every value, which cost 40 ms for
/// the 7 × 10⁶ rates of 10⁶ cells, against about 2 ms for this scan.
fn first_non_finite(v: &[f32]) -> Option<usize> {
    let chunk = v.par_chunks(FINITE_CHUNK).position_first(|c| !c.iter().all(|x| x.is_finite()))?;
    let at = chunk * FINITE_CHUNK;
    v[at..].iter().position(|x| !x.is_finite()).map(|k| at + k)
}

/// Refuse a non-finite rate, secretion or fate score, naming the output, the cell (by
/// id) and the gene or ligand: a NaN must stop the run at the stage that made it, never
/// become a number (`max(x + Δt·NaN, 0)` is 0). The model's name is formatted only then.
fn check_outputs(model: &dyn ResponseModel, b: &Batch, settings: &Settings) -> Result<(), CoreError> {
    let first_bad = first_non_finite;
    let found = |what: String, k: usize, width: usize, v: f32| {
        let cell = b.ids.get(k / width.max(1)).copied().unwrap_or_default();
        Err(CoreError::Model(ModelError::Run {
            model: model.name(),
            message: format!("returned the non-finite {what} `{v}` for cell {cell}"),
        }))
    };
    let name = |names: &[String], k: usize| names.get(k).cloned().unwrap_or_else(|| format!("#{k}"));
    if let Some(k) = first_bad(&b.rates) {
        let g = settings.genes.max(1);
        return found(format!("rate of `{}`", name(&settings.gene_names, k % g)), k, g, b.rates[k]);
    }
    if let Some(k) = first_bad(&b.secretion) {
        let nl = settings.ligands.max(1);
        return found(format!("secretion of `{}`", name(&settings.ligand_names, k % nl)), k, nl, b.secretion[k]);
    }
    if let Some(k) = first_bad(&b.fate_scores) {
        let what = if k % 2 == 0 { "apoptosis hazard" } else { "cycle progression factor" };
        return found(what.to_owned(), k, 2, b.fate_scores[k]);
    }
    Ok(())
}

/// Model secretion: released into the voxel holding the cell's centre over the state
/// step `dt`, and entered in the exchange ledger (negative values count as none: uptake
/// stays with the receptor coupling of `secrete`). Dying cells release nothing.
fn release_secretion(b: &Batch, ligands: &mut Ligands, split: &mut SourceSplit, dt: f32) {
    let nl = ligands.params.len();
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
                ligands.note_added(c * voxels + v, amount / vv);
                ligands.exchanged[c] += f64::from(amount);
                let t = b.cell_type[i] as usize;
                if let Some(p) = split.channel_of(c, t)
                    && let Some(parts) = split.field.as_mut()
                {
                    parts.data[p * voxels + v] += amount / vv;
                    note_added(&mut split.added, ligands.record_added, p * voxels + v, amount / vv);
                }
            }
        }
    }
}

/// [`release_secretion`] on a field kept on the device: each amount is added there as
/// `(ρ + 0) / 1 + amount / V_v` (the same bits as `ρ + amount / V_v`), and the ledger
/// takes the amounts in row order, as on the host.
fn release_on_device(
    b: &mut Batch,
    ligands: &mut Ligands,
    diffuser: &mut Diffuser,
    home: &mut FieldHome,
    dt: f32,
) -> Result<(), CoreError> {
    let nl = ligands.params.len();
    let vv = ligands.field.grid.voxel_volume();
    let amount = |i: usize, c: usize| dt * b.secretion[i * nl + c].max(0.0);
    home.set_exchange(b.cells, nl, |i, c| {
        let a = amount(i, c);
        (b.alive[i] && a > 0.0).then(|| [0.0, 1.0, a / vv])
    });
    for i in (0..b.cells).filter(|&i| b.alive[i]) {
        for c in 0..nl {
            let a = amount(i, c);
            if a > 0.0 {
                ligands.exchanged[c] += f64::from(a);
            }
        }
    }
    residency::exchange_on_device(ligands, diffuser, home, b, residency::Exchange::Release)
}

/// Model fate scores: the apoptosis hazard (≥ 0) and cycle progression (in `[0, 1]`)
/// of each cell, kept on its [`ModelFate`] for the fate stage.
fn keep_fate_scores(b: &Batch, states: &States, fates: &mut Query<&mut ModelFate>) {
    for (i, e) in states.owner.iter().enumerate().take(b.cells) {
        if let Ok(mut f) = fates.get_mut(*e) {
            f.hazard = b.fate_scores[2 * i].max(0.0);
            f.progression = b.fate_scores[2 * i + 1].clamp(0.0, 1.0);
        }
    }
}

/// Perturb: apply the scene's gene clamps (knockout, knockdown, overexpression) to the
/// cells they target, and flag every cell a gene clamp or a receptor block acts on.
/// Runs only when the scene plans perturbations.
pub(crate) fn perturb(
    ctx: TickContext,
    mut cells: Query<(&CellId, &Row, &Position, &CellType, &Lineage, &mut Perturbed)>,
    mut states: ResMut<States>,
) {
    use explant_scene::PerturbationKind as K;
    let t = ctx.time();
    let active: Vec<&PlannedPerturbation> = ctx
        .settings
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
}

/// The first system of the record stage: the tick is done, the clock advances.
pub(crate) fn advance_clock(mut clock: ResMut<Clock>) {
    clock.tick += 1;
}

#[cfg(test)]
mod tests {
    use super::{CONTACT_LANES, FINITE_CHUNK, contact_row, first_non_finite};

    #[test]
    fn the_first_non_finite_value_is_found_across_chunks() {
        let mut v = vec![1.0f32; 3 * FINITE_CHUNK + 17];
        assert_eq!(first_non_finite(&v), None);
        assert_eq!(first_non_finite(&[]), None);
        v[3 * FINITE_CHUNK + 16] = f32::NEG_INFINITY;
        assert_eq!(first_non_finite(&v), Some(3 * FINITE_CHUNK + 16), "the last value of a short last chunk");
        v[2 * FINITE_CHUNK + 5] = f32::NAN;
        v[2 * FINITE_CHUNK + 9] = f32::INFINITY;
        assert_eq!(first_non_finite(&v), Some(2 * FINITE_CHUNK + 5), "the first of several, not the last");
        v[FINITE_CHUNK - 1] = f32::NAN;
        assert_eq!(first_non_finite(&v), Some(FINITE_CHUNK - 1), "the earliest chunk wins");
        v[0] = f32::INFINITY;
        assert_eq!(first_non_finite(&v), Some(0));
    }

    #[test]
    fn contact_rows_in_registers_equal_the_rows_summed_in_place() {
        // 300 cells with random contact values and types, lists of 0 to 40 neighbours;
        // both ways of summing must give the same bits, and the values must be right.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (n, g, nt) = (300, 11, CONTACT_LANES);
        let contact_genes = [1usize, 4, 5, 10];
        let nc = contact_genes.len();
        let columns: Vec<f32> = (0..n * nc).map(|_| (next() >> 40) as f32 / (1u64 << 20) as f32).collect();
        let types: Vec<u32> = (0..n).map(|_| (next() % nt as u64) as u32).collect();
        for len in 0..=40 {
            let list: Vec<u32> = (0..len).map(|_| (next() % n as u64) as u32).collect();
            let (mut fast, mut fast_counts) = (vec![f32::NAN; g], vec![f32::NAN; nt]);
            let (mut slow, mut slow_counts) = (vec![f32::NAN; g], vec![f32::NAN; nt]);
            contact_row(&list, &columns, &contact_genes, &types, true, &mut fast, &mut fast_counts);
            contact_row(&list, &columns, &contact_genes, &types, false, &mut slow, &mut slow_counts);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&slow), "{list:?}");
            assert_eq!(bits(&fast_counts), bits(&slow_counts), "{list:?}");
            // The values themselves: the mean over the list, zero off the contact genes.
            for (c, &k) in contact_genes.iter().enumerate() {
                let mean = list.iter().map(|&j| f64::from(columns[j as usize * nc + c])).sum::<f64>()
                    / (list.len().max(1)) as f64;
                assert!((f64::from(fast[k]) - mean).abs() <= 1e-5 * mean.abs().max(1.0), "{k}: {} vs {mean}", fast[k]);
            }
            assert!((0..g).filter(|k| !contact_genes.contains(k)).all(|k| fast[k] == 0.0));
            for t in 0..nt {
                let count = list.iter().filter(|&&j| types[j as usize] as usize == t).count();
                assert_eq!(fast_counts[t], count as f32);
            }
        }
    }
}
