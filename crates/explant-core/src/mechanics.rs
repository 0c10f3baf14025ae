//! Mechanics: overdamped centre-based motion of the cells, as in PhysiCell (Ghaffarizadeh
//! et al. 2018, PLoS Comput Biol 14:e1005991), plus walls, a basement membrane and
//! chemotaxis; and the explicit step's stability estimate
//! ([`mechanics_stability_note`]), kept next to the forces it describes so the two
//! change together.

use bevy_ecs::prelude::*;
use explant_scene::MechanicsSpec;
use glam::Vec3;
use rayon::prelude::*;

use crate::components::*;
use crate::residency::FieldHome;
use crate::rng::{self, Purpose};
use crate::schedule::TickContext;

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
/// scene jitters instead of exploding ([`mechanics_stability_note`] warns of it). Runs
/// every `mechanics_every` ticks, with a step of that many ticks (as does `fate`).
///
/// A field kept on the device ([`FieldHome`]) is read there: the values around each
/// migrating cell's voxel come back and give the very gradient the host field would.
#[allow(clippy::too_many_arguments)] // a system: one argument per resource it touches
pub(crate) fn mechanics(
    ctx: TickContext,
    mut cells: Query<(&Row, &mut Position, &mut Motility)>,
    states: Res<States>,
    mut ligands: ResMut<Ligands>,
    mut batch: ResMut<Batch>,
    mut diffuser: ResMut<Diffuser>,
    mut home: ResMut<FieldHome>,
    mut failure: ResMut<Failure>,
) {
    let settings = &*ctx.settings;
    let migrates = settings.rules.iter().any(|r| r.chemotaxis.is_some());
    let directions = if migrates { directions(&cells, batch.cells) } else { Vec::new() };
    let gradients = if migrates && home.on_device() {
        match gradients_on_device(settings, &mut batch, &mut ligands, &mut diffuser, &mut home) {
            Ok(g) => Some(g),
            Err(e) => {
                failure.0 = Some(e);
                return;
            }
        }
    } else {
        None
    };
    let (batch, ligands) = (batch.into_inner(), &*ligands);
    let mut next = std::mem::take(&mut batch.next_positions);
    next.resize(batch.cells, Vec3::ZERO);
    let motion = Motion {
        settings,
        m: settings.mechanics,
        b: batch,
        states: &states,
        ligands,
        gradients: gradients.as_deref(),
        directions: &directions,
        migrates,
        dt: ctx.mechanics_dt(),
        tick: ctx.clock.tick,
    };
    let mut turned = vec![Vec3::ZERO; if migrates { next.len() } else { 0 }];
    if migrates {
        next.par_iter_mut()
            .zip(turned.par_iter_mut())
            .enumerate()
            .for_each(|(i, (q, d))| (*q, *d) = motion.move_cell(i));
    } else {
        next.par_iter_mut().enumerate().for_each(|(i, q)| *q = motion.move_cell(i).0);
    }
    apply(&mut cells, batch, next, &turned);
}

/// The gradient of its migration ligand at each living migrating cell's voxel (zero for
/// the others), from the field kept on the device: the values at the voxels a gradient
/// differences ([`explant_field::Grid::gradient_points`]) come back, and
/// [`explant_field::Grid::gradient_of`] turns them into the gradient, as
/// [`explant_field::Field::gradient`] does on the host.
fn gradients_on_device(
    settings: &Settings,
    batch: &mut Batch,
    ligands: &mut Ligands,
    diffuser: &mut Diffuser,
    home: &mut FieldHome,
) -> Result<Vec<Vec3>, crate::CoreError> {
    let grid = ligands.field.grid;
    let nl = ligands.field.channels;
    batch.cell_voxels(&grid);
    let b = &*batch;
    let migrating: Vec<(usize, usize)> = (0..b.cells)
        .filter(|&i| b.alive[i])
        .filter_map(|i| settings.rules[b.cell_type[i] as usize].chemotaxis.as_ref().map(|(_, ligand, _)| (i, *ligand)))
        .collect();
    let points: Vec<[[usize; 2]; 3]> =
        migrating.iter().map(|&(i, _)| grid.gradient_points(b.voxels[i] as usize)).collect();
    let voxels: Vec<u32> = points.iter().flat_map(|p| p.iter().flatten().map(|&v| v as u32)).collect();
    crate::residency::sample_on_device(ligands, diffuser, home, &voxels)?;
    let sampled = &home.sampled;
    let mut gradients = vec![Vec3::ZERO; b.cells];
    for (k, (&(i, ligand), _)) in migrating.iter().zip(&points).enumerate() {
        let at = |j: usize| sampled[(6 * k + j) * nl + ligand];
        let values = [[at(0), at(1)], [at(2), at(3)], [at(4), at(5)]];
        gradients[i] = Vec3::from(grid.gradient_of(b.voxels[i] as usize, values));
    }
    Ok(gradients)
}

/// Each cell's migration direction, by row.
fn directions(cells: &Query<(&Row, &mut Position, &mut Motility)>, n: usize) -> Vec<Vec3> {
    let mut directions = vec![Vec3::ZERO; n];
    for (row, _, dir) in cells {
        directions[row.0 as usize] = dir.0;
    }
    directions
}

/// Write the new positions `next` (and, for migrating scenes, the directions `turned`
/// where they changed) to the cells and the batch.
fn apply(cells: &mut Query<(&Row, &mut Position, &mut Motility)>, b: &mut Batch, mut next: Vec<Vec3>, turned: &[Vec3]) {
    for (row, mut pos, mut dir) in cells {
        let i = row.0 as usize;
        pos.0 = next[i];
        if let Some(&d) = turned.get(i)
            && dir.0 != d
        {
            dir.0 = d;
        }
    }
    std::mem::swap(&mut b.positions, &mut next);
    b.next_positions = next;
    b.positions_moved();
}

/// `(1 + 2⁻¹⁰)²`: a pair whose squared distance exceeds `ra² ×` this has `d > ra` for
/// certain in f32 (the rounding of `ra²` and of the square root is far smaller).
const REACH_MARGIN: f32 = 1.001_954;

/// Neighbour pairs per block of [`pair_forces`]: two SSE vectors.
const PAIR_LANES: usize = 8;

/// What one mechanics step reads; [`Motion::move_cell`] moves one cell.
struct Motion<'a> {
    settings: &'a Settings,
    m: MechanicsSpec,
    b: &'a Batch,
    states: &'a States,
    ligands: &'a Ligands,
    /// The gradients at the migrating cells, by row, when the field is on the device.
    gradients: Option<&'a [Vec3]>,
    /// Migration directions by row (empty when no type migrates).
    directions: &'a [Vec3],
    migrates: bool,
    /// The mechanics step, minutes.
    dt: f32,
    tick: u64,
}

impl Motion<'_> {
    /// Cell `i`'s new position and migration direction: the forces, the capped passive
    /// step, migration, then the domain and the membrane.
    fn move_cell(&self, i: usize) -> (Vec3, Vec3) {
        let p = self.b.positions[i];
        let ri = self.b.radii[i];
        let mut force = self.contact_force(i, p, ri);
        self.add_wall_forces(&mut force, p, ri);
        self.add_membrane_force(&mut force, p, ri);
        // The cap applies to the passive (force-driven) displacement only.
        let mut step = force * (self.m.mobility * self.dt);
        let cap = 0.5 * ri;
        if step.length() > cap {
            step = step.normalize() * cap;
        }
        let mut dir = Vec3::ZERO;
        if self.migrates && self.b.alive[i] {
            dir = self.migrate(i, p, &mut step);
        }
        let q = (p + step).clamp(Vec3::ZERO, self.settings.domain);
        (self.same_side_of_membrane(p, q), dir)
    }

    /// Repulsion and adhesion from the neighbours, summed in neighbour order
    /// ([`pair_forces`]).
    fn contact_force(&self, i: usize, p: Vec3, ri: f32) -> Vec3 {
        let b = self.b;
        let list = &b.neighbours[b.offsets[i] as usize..b.offsets[i + 1] as usize];
        pair_forces(p, ri, list, &b.positions, &b.radii, self.m.repulsion, self.m.adhesion)
    }

    /// With `walls`: each face of the domain repels a cell closer than its radius.
    fn add_wall_forces(&self, force: &mut Vec3, p: Vec3, ri: f32) {
        if !self.m.walls {
            return;
        }
        let hi = self.settings.domain;
        for a in 0..self.settings.dims {
            let lo = p[a];
            let up = hi[a] - p[a];
            if lo < ri {
                force[a] += self.m.repulsion * (1.0 - lo.max(0.0) / ri).powi(2);
            }
            if up < ri {
                force[a] -= self.m.repulsion * (1.0 - up.max(0.0) / ri).powi(2);
            }
        }
    }

    /// A basement membrane repels a cell closer than its radius and adheres within 1.25
    /// radii, on whichever side the cell is.
    fn add_membrane_force(&self, force: &mut Vec3, p: Vec3, ri: f32) {
        let Some(mb) = self.m.membrane else { return };
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

    /// Chemotaxis of a living cell of a migrating type: re-choose the direction at the
    /// persistence rate, add the migration step unless crowded or gated off; returns the
    /// direction kept.
    fn migrate(&self, i: usize, p: Vec3, step: &mut Vec3) -> Vec3 {
        let (settings, b) = (self.settings, self.b);
        let mut dir = self.directions[i];
        let rules = &settings.rules[b.cell_type[i] as usize];
        if let Some((c, ligand, gate)) = &rules.chemotaxis {
            let crowded = c.max_neighbours.is_some_and(|max| b.offsets[i + 1] - b.offsets[i] > max);
            let on = !crowded && gate.is_none_or(|k| self.states.data[i * settings.genes + k] >= c.threshold);
            let (seed, id, tick) = (settings.seed, b.ids[i], self.tick);
            let renew = dir == Vec3::ZERO
                || rng::uniform(seed, id, tick, Purpose::Motility, 0)
                    < 1.0 - (-f64::from(self.dt / c.persistence)).exp();
            if renew {
                let grad = match self.gradients {
                    Some(g) => g[i],
                    None => Vec3::from(self.ligands.field.gradient(*ligand, p.to_array())),
                };
                let up = grad.normalize_or_zero();
                let random = rng::unit_vector(seed, id, tick, Purpose::Motility, settings.dims);
                dir = (c.bias * up + (1.0 - c.bias) * random).normalize_or_zero();
            }
            if on {
                *step += dir * (c.speed * self.dt);
            }
        }
        dir
    }

    /// The membrane cannot be crossed: a cell that would cross it stops on it, on the
    /// side it started on.
    fn same_side_of_membrane(&self, p: Vec3, mut q: Vec3) -> Vec3 {
        if let Some(mb) = self.m.membrane {
            let a = mb.axis.index();
            if (p[a] - mb.position) * (q[a] - mb.position) < 0.0 {
                q[a] = mb.position;
            }
        }
        q
    }
}

/// The contact force on a cell at `p` of radius `ri` from its neighbours `list` (rows
/// of `positions` and `radii`): PhysiCell's repulsion and adhesion potentials, summed in
/// neighbour order.
///
/// Written for speed without changing a bit: the neighbours go in blocks of
/// [`PAIR_LANES`], each block's pair forces computed branch-free (the compiler makes
/// vector square roots and divisions of them) and then added to the sum one by one in
/// neighbour order, as a pair-by-pair loop does. With a branch per pair, most neighbours
/// (those beyond both potentials' reach) were cheap, but the branch was mispredicted at
/// about every third pair and the pairs in reach waited on a square root and three
/// divisions each: 56 ms of a 10⁶-cell tick's 288 on 2 threads, 32 ms this way.
///
/// Same bits: a pair the loop skipped (beyond reach, or closer than 10⁻⁶) adds +0,
/// which leaves every sum unchanged (a sum that starts at +0 never becomes −0), and a
/// pair it kept gets the same operations in the same order; a non-finite position gives
/// a NaN force either way (a unit test holds it to the pair-by-pair loop).
fn pair_forces(
    p: Vec3,
    ri: f32,
    list: &[u32],
    positions: &[Vec3],
    radii: &[f32],
    repulsion: f32,
    adhesion: f32,
) -> Vec3 {
    let mut force = Vec3::ZERO;
    for block in list.chunks(PAIR_LANES) {
        // Padding lanes have delta 0, so they fall under the 10⁻⁶ cut.
        let (mut dx, mut dy, mut dz, mut rr) =
            ([0.0f32; PAIR_LANES], [0.0; PAIR_LANES], [0.0; PAIR_LANES], [0.0; PAIR_LANES]);
        for (k, &j) in block.iter().enumerate() {
            let delta = p - positions[j as usize];
            (dx[k], dy[k], dz[k]) = (delta.x, delta.y, delta.z);
            rr[k] = ri + radii[j as usize];
        }
        let (mut fx, mut fy, mut fz) = ([0.0f32; PAIR_LANES], [0.0; PAIR_LANES], [0.0; PAIR_LANES]);
        for k in 0..PAIR_LANES {
            let (rr, ra) = (rr[k], 1.25 * rr[k]);
            // `Vec3::length_squared`'s order.
            let d2 = dx[k] * dx[k] + dy[k] * dy[k] + dz[k] * dz[k];
            // Most neighbours within the contact radius are beyond both potentials'
            // reach. The margin keeps every pair with `d < ra` (and `d < rr`) in despite
            // rounding; a NaN distance stays in (and makes a NaN force), an infinite
            // one out (its force would be ∞ · 0).
            let beyond = d2 > ra * ra * REACH_MARGIN;
            let d = d2.sqrt();
            let too_close = d <= 1e-6;
            let kept = !beyond && !too_close;
            let mut f = 0.0;
            if d < rr {
                f += repulsion * (1.0 - d / rr).powi(2);
            }
            if d < ra {
                f -= adhesion * (1.0 - d / ra).powi(2);
            }
            let s = f / d;
            (fx[k], fy[k], fz[k]) = if kept { (dx[k] * s, dy[k] * s, dz[k] * s) } else { (0.0, 0.0, 0.0) };
        }
        for k in 0..block.len() {
            force += Vec3::new(fx[k], fy[k], fz[k]);
        }
    }
    force
}

/// A note when the scene's mechanics step is well beyond the explicit stability
/// estimate of its forces (`None` when it is fine).
///
/// Why: the mechanics stage takes an explicit Euler step of overdamped springs,
/// `x ← x + Δt μ F(x)`, which is stable only while `Δt < 2 / k`, with `k` the largest
/// stiffness `μ ∂F/∂x` (the largest eigenvalue of the force Jacobian). Each neighbour
/// at contact distance `R = 2r` contributes at most `2 c_r / R` (repulsion
/// `c_r (1 − d/R)²`) plus `2 c_a / (1.25 R)` (adhesion within `1.25 R`), and a packed
/// tissue has `z` = 6 neighbours in 2D and 12 in 3D, so
///
/// `Δt_limit = 2 / (z · 2 μ (c_r / R + c_a / (1.25 R)))`.
///
/// The estimate is conservative (the stiffness of fully overlapping cells), so the note
/// comes only when the mechanics step (`time.mechanics_dt`, else `time.dt`) is more than
/// twice it. Beyond it the stage caps displacements at half a radius per step, so the
/// tissue jitters rather than explodes.
pub fn mechanics_stability_note(scene: &explant_scene::Scene) -> Option<String> {
    let m = &scene.mechanics;
    let reach = 2.0 * scene.tissue.cell_radius;
    let neighbours = if scene.dims() == 3 { 12.0 } else { 6.0 };
    let dt_mech = scene.time.mechanics_dt.unwrap_or(scene.time.dt);
    let limit = 2.0 / (neighbours * 2.0 * m.mobility * (m.repulsion / reach + m.adhesion / (1.25 * reach))).max(1e-30);
    (m.mobility > 0.0 && dt_mech > 2.0 * limit).then(|| {
        format!(
            "the mechanics step ({dt_mech} min) is more than twice the explicit stability estimate ({limit:.3} min) for \
             these forces; displacements are capped at half a radius per step, so packed cells may jitter (set \
             `time.mechanics_dt` or lower `mechanics.repulsion`)"
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use explant_scene::{LoadedScene, Scene};

    use glam::Vec3;

    use super::{REACH_MARGIN, mechanics_stability_note};

    fn default_scene() -> Scene {
        let text = include_str!("../../../scenes/default.toml").replace("kind = \"torchscript\"", "kind = \"teacher\"");
        LoadedScene::from_str(&text, Path::new("default.toml")).unwrap().scene
    }

    #[test]
    fn a_stiff_scene_gets_the_stability_note_and_a_soft_one_does_not() {
        let mut stiff = default_scene();
        stiff.mechanics.mobility = 1.0;
        stiff.mechanics.repulsion = 1.0e3;
        stiff.time.mechanics_dt = None;
        let note = mechanics_stability_note(&stiff).expect("a stiff scene gets the note");
        assert!(note.contains(&format!("mechanics step ({} min)", stiff.time.dt)), "{note}");
        assert!(note.contains("`time.mechanics_dt`") && note.contains("`mechanics.repulsion`"), "{note}");

        let mut soft = stiff.clone();
        soft.mechanics.repulsion = 1.0e-3;
        soft.mechanics.adhesion = 0.0;
        assert_eq!(mechanics_stability_note(&soft), None);
        let mut still = stiff;
        still.mechanics.mobility = 0.0;
        assert_eq!(mechanics_stability_note(&still), None, "cells that do not move need no note");
    }

    /// The pair-by-pair loop [`super::pair_forces`] replaced, kept as the reference.
    fn pair_forces_one_by_one(
        p: Vec3,
        ri: f32,
        list: &[u32],
        positions: &[Vec3],
        radii: &[f32],
        repulsion: f32,
        adhesion: f32,
    ) -> Vec3 {
        let mut force = Vec3::ZERO;
        for &j in list {
            let j = j as usize;
            let delta = p - positions[j];
            let rr = ri + radii[j];
            let ra = 1.25 * rr;
            let d2 = delta.length_squared();
            if d2 > ra * ra * REACH_MARGIN {
                continue;
            }
            let d = d2.sqrt();
            if d <= 1e-6 {
                continue;
            }
            let mut f = 0.0;
            if d < rr {
                f += repulsion * (1.0 - d / rr).powi(2);
            }
            if d < ra {
                f -= adhesion * (1.0 - d / ra).powi(2);
            }
            force += delta * (f / d);
        }
        force
    }

    fn same_bits(a: Vec3, b: Vec3) -> bool {
        a.to_array().iter().zip(b.to_array()).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn blocked_pair_forces_are_bit_identical_to_the_pair_by_pair_loop() {
        // Neighbours at random distances around both potentials' reach, with mixed radii,
        // plus the edge cases: exactly at `rr` and `ra`, coincident, closer than 10⁻⁶,
        // and non-finite positions; lists of every length up to three blocks and a bit.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        // z near 0, so offsets along z of a few 10⁻⁷ are representable.
        let p = Vec3::new(100.0, 200.0, 0.5);
        let ri = 8.0;
        let mut positions = Vec::new();
        let mut radii = Vec::new();
        for _ in 0..400 {
            let r = 4.0 + 8.0 * uniform();
            let reach = 1.3 * (ri + r);
            let dir = Vec3::new(uniform() - 0.5, uniform() - 0.5, uniform() - 0.5).normalize_or_zero();
            positions.push(p + dir * (reach * uniform()));
            radii.push(r);
        }
        let exact = [
            p + Vec3::X * 16.0,      // d = rr for r = 8
            p + Vec3::Y * 20.0,      // d = ra for r = 8
            p,                       // coincident
            p + Vec3::Z * 5e-7,      // closer than 10⁻⁶
            p + Vec3::Z * 3e-6,      // just beyond 10⁻⁶
            p + Vec3::X * 20.000_02, // just beyond ra, inside the margin
            Vec3::new(f32::NAN, 0.0, 0.0),
            Vec3::new(f32::INFINITY, 200.0, 0.5),
        ];
        for q in exact {
            positions.push(q);
            radii.push(8.0);
        }
        let n = positions.len() as u32;
        let mut checked = 0;
        for (repulsion, adhesion) in [(10.0, 0.4), (4.0, 0.0), (0.0, 1.0)] {
            for len in 0..=27u32 {
                for start in [0, 13, 150, n - 7 - len.min(7), n - len] {
                    let list: Vec<u32> = (start..start + len).map(|j| j % n).collect();
                    let blocked = super::pair_forces(p, ri, &list, &positions, &radii, repulsion, adhesion);
                    let reference = pair_forces_one_by_one(p, ri, &list, &positions, &radii, repulsion, adhesion);
                    assert!(same_bits(blocked, reference), "{list:?}: {blocked} vs {reference}");
                    checked += 1;
                }
            }
        }
        // The check saw forces of every kind: nonzero, and NaN from the bad positions.
        let all: Vec<u32> = (0..n).collect();
        let f = pair_forces_one_by_one(p, ri, &all[..400], &positions, &radii, 10.0, 0.4);
        assert!(f.is_finite() && f.length() > 0.0, "{f}");
        assert!(pair_forces_one_by_one(p, ri, &all, &positions, &radii, 10.0, 0.4).is_nan());
        assert!(checked > 400);
    }
}
