//! The second-order implicit scheme: Douglas ADI (Crank–Nicolson in time, θ = ½) in
//! delta form, with sources through the explicit increment and a damped (Rannacher)
//! start.
//!
//! One step of length `Δt` of `∂u/∂t = A u + g + s`, with `A = A_x + A_y (+ A_z)` the
//! grid Laplacian times `D` minus the decay (each `A_j` carries `−k/dim` of it), `g` the
//! affine term of `Fixed` faces and `S = Δt·s` what was added to the field since the last
//! step (secretion, uptake, sources), is
//!
//! ```text
//! Δ₀ = Δt (A uⁿ + g) + S                     one explicit stencil pass
//! (I − ½Δt A_j) Δ_j = Δ_{j−1}                 homogeneous line solves: z, y, then x
//! uⁿ⁺¹ = uⁿ + Δ_dim
//! ```
//!
//! (Douglas & Gunn 1964; in delta form as in Hundsdorfer & Verwer, *Numerical Solution
//! of Time-Dependent Advection-Diffusion-Reaction Equations*, 2003, ch. IV.) Each line solve is
//! the LOD solver's with `a/2` and half the per-sweep decay
//! ([`crate::implicit::scaled_coefficients`] with scale ½), without the `Fixed` faces'
//! right-hand-side terms: the face values enter only through `Δ₀`, where the neighbour
//! beyond a `Fixed` face is the ghost `2·value − u`. The scheme is second order in time
//! and space, conserves mass with zero-flux faces (the solves act on an increment whose
//! total is the step's net source), and is unconditionally stable.
//!
//! # Sources
//!
//! Adding a point source to the field *before* a Douglas step feeds the grid's stiffest
//! 3D mode, which Douglas barely damps (amplification → 1 as `a` grows): in the design
//! study (`docs/design/adi.md` §4–6) that gave −0.38 of the peak and a 775 % error. So
//! the engine lists what it added since the last step ([`crate::StepInputs::added`]),
//! the step takes it back out of `uⁿ` and puts it into `Δ₀` instead: it then passes only
//! through `Π(I − ½ΔtA_j)⁻¹`, a product of M-matrix inverses, which is non-negative and
//! damps that mode. Sources are held constant over the step, so the step stays second
//! order with them.
//!
//! # Damped steps
//!
//! Crank–Nicolson does not damp sharp data: on a step function it oscillates and goes
//! negative. A step asked for with [`crate::StepInputs::restart`] is instead two
//! backward-Euler LOD half steps with the same half coefficients (`Fixed` terms
//! included), Rannacher's remedy; the sources listed are then simply part of the field
//! (they were added before the step). The engine asks for [`damped_steps`] such steps at
//! the start of a run and after every bolus.
//!
//! # Positivity
//!
//! LOD never produces a negative value; Douglas can, transiently: a source switching on
//! over a zero background gives a one-step undershoot of about 10⁻⁵ of its peak far from
//! it (design study §6). The field is left as computed (clamping would break mass
//! conservation); use `implicit` where strict positivity matters more than accuracy.
//!
//! # Arithmetic
//!
//! `Δ₀` at a voxel is `a·(Σ neighbours − 2·dim·u) − kΔt·u` (neighbour sum in the order
//! of [`crate::stencil_update`]) plus the listed amounts in list order; the solves are
//! [`crate::implicit::solve_line`]'s without the `Fixed` terms; the write-back is
//! `u + Δ`. Every line and voxel gets this arithmetic whatever the chunking, so the
//! result is bit-identical for any thread count.
//!
//! # Passes and threads
//!
//! A 3D step makes two passes over each channel: `Δ₀` formed inside the z sweep's
//! forward elimination, block of x rows by block ([`z_block`], the sources grouped by a
//! stable counting sort so each block finds its own), then every x–y plane's y and x
//! solves with `u += Δ`. On a grid whose x–y planes fit the cache
//! ([`crate::implicit::fuse_planes`]), with more than one thread, channels that divide
//! evenly among the threads and one channel's increment per thread within
//! [`CHANNEL_SPLIT_BUDGET`], each channel's whole step runs on one thread with an
//! increment buffer lent from a pool (one parallel phase per step). Otherwise on such a
//! grid, and for a while after steps whose channels took unequal times, the blocks and
//! then the planes of a group of channels (up to [`DELTA_BUDGET`] increment values, at
//! least one channel's) are shared among the threads. 2D grids and 3D grids with larger
//! planes go channel by channel: `Δ₀` (formed inside the z sweep in 3D), then the y and
//! x sweeps, each parallel. The increment costs memory the LOD step does not need: one
//! channel's worth per thread in the channel split, else the larger of [`DELTA_BUDGET`]
//! values and one channel; both are kept for the next steps once used.

use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

use crate::cpu::{stencil_pass, stencil_rows};
use crate::implicit::{
    COLUMN_BLOCK, LineCoefficients, SplitChoice, X_TILE, finish_rows, fuse_planes, lod_all_channels, lod_channel,
    plane_x_add, scaled_coefficients, solve_group, sweep_rows, sweep_x_add,
};
use crate::{ChannelParams, Grid};

/// Number of damped (Rannacher) steps after a sharp change of the field: 1 while every
/// channel's `a = DΔt/Δx²` is at most 5, else 2. (The design study's step-function
/// cases: one damped step removes every negative value at `a` = 2.5 and 25, but leaves a
/// ripple of 1–2 % of the peak at `a` = 25 that a second one reduces to 10⁻⁵.)
pub fn damped_steps(grid: &Grid, params: &[ChannelParams], dt: f32) -> u32 {
    let h2 = f64::from(grid.dx) * f64::from(grid.dx);
    let a = params.iter().map(|p| f64::from(p.diffusion) * f64::from(dt) / h2).fold(0.0, f64::max);
    if a <= 5.0 { 1 } else { 2 }
}

/// The cached half-step coefficients and the increment scratch of the ADI scheme.
#[derive(Debug)]
pub(crate) struct AdiCache {
    key: Option<(Grid, Vec<ChannelParams>, u32)>,
    half: Vec<[LineCoefficients; 3]>,
    delta: Vec<f32>,
    /// Increment buffers of the channel split, one per channel being solved at once
    /// (at most one per thread), kept between steps.
    spare: Mutex<Vec<Vec<f32>>>,
    /// Which way the next 3D steps are split among the threads (as in
    /// [`crate::implicit::LodCache::step`]).
    split: SplitChoice,
    /// The step's sources grouped for the fused z sweep.
    grouped: Grouped,
    /// Most increment values the plane split holds at once ([`DELTA_BUDGET`], less in
    /// a test).
    delta_budget: usize,
    /// Most increment values the channel split may hold at once, one channel's per
    /// thread ([`CHANNEL_SPLIT_BUDGET`], less in a test); above it the plane split runs.
    channel_budget: usize,
    /// Whether 3D steps form `Δ₀` inside the z sweep and solve y and x plane by plane
    /// (always, except in the test that checks the fused paths against the plain ones).
    fused: bool,
}

impl Default for AdiCache {
    fn default() -> Self {
        Self {
            key: None,
            half: Vec::new(),
            delta: Vec::new(),
            spare: Mutex::new(Vec::new()),
            split: SplitChoice::default(),
            grouped: Grouped::default(),
            delta_budget: DELTA_BUDGET,
            channel_budget: CHANNEL_SPLIT_BUDGET,
            fused: true,
        }
    }
}

/// An increment buffer lent from [`AdiCache::spare`] for one channel split task, given
/// back when dropped.
struct Lent<'a> {
    pool: &'a Mutex<Vec<Vec<f32>>>,
    delta: Vec<f32>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let delta = std::mem::take(&mut self.delta);
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(delta);
        }
    }
}

impl AdiCache {
    /// The half-step coefficients for this (grid, params, dt), rebuilt only when one
    /// changed.
    fn refresh(&mut self, g: &Grid, params: &[ChannelParams], dt: f32) {
        let fresh = matches!(&self.key, Some((kg, kp, kdt)) if kg == g && kp == params && *kdt == dt.to_bits());
        if !fresh {
            self.half = scaled_coefficients(g, params, dt, 0.5);
            self.key = Some((*g, params.to_vec(), dt.to_bits()));
        }
    }

    /// One step of every channel of `data` (validated by the caller): damped, or Douglas
    /// with `added` (indices into `data`, already added to it) moved into the increment.
    pub(crate) fn step(
        &mut self,
        g: &Grid,
        data: &mut [f32],
        params: &[ChannelParams],
        dt: f32,
        added: &[(u32, f32)],
        restart: bool,
    ) {
        let voxels = g.voxels();
        if params.is_empty() || voxels == 0 {
            return;
        }
        self.refresh(g, params, dt);
        let (nx, ny, nz) = (g.nx, g.ny, g.nz);
        let three_d = g.dims() == 3;
        if restart {
            if fuse_planes(g) {
                lod_all_channels(g, data, &self.half);
                lod_all_channels(g, data, &self.half);
                return;
            }
            for (chan, co) in data.chunks_exact_mut(voxels).zip(&self.half) {
                for _ in 0..2 {
                    lod_channel(g, chan, co);
                }
            }
            return;
        }
        take_back(data, added);
        if three_d && self.fused {
            self.grouped.fill(g, params.len(), added);
        }
        let by_channel = self.split.by_channel();
        let threads = rayon::current_num_threads();
        let channel_split_fits = threads.saturating_mul(voxels) <= self.channel_budget;
        if self.fused
            && fuse_planes(g)
            && threads > 1
            && params.len().is_multiple_of(threads)
            && channel_split_fits
            && by_channel
        {
            let took = self.channel_split(g, data, params, dt);
            self.split.judge(&took);
            return;
        }
        if self.fused && fuse_planes(g) {
            // Channels in groups whose increments fit [`DELTA_BUDGET`]: two parallel
            // phases per group.
            let group = (self.delta_budget / voxels).clamp(1, params.len());
            self.delta.resize(group * voxels, 0.0);
            for (k, chans) in data.chunks_mut(group * voxels).enumerate() {
                let first = k * group;
                let delta = &mut self.delta[..chans.len()];
                group_step(g, chans, delta, &params[first..], dt, &self.grouped, first, &self.half[first..]);
            }
            return;
        }
        self.delta.resize(voxels, 0.0);
        for (c, (chan, co)) in data.chunks_exact_mut(voxels).zip(&self.half).enumerate() {
            let delta = &mut self.delta;
            if three_d && self.fused {
                // Δ₀ formed plane by plane inside the z sweep's forward pass.
                increment_and_z_sweep(g, chan, delta, &params[c], dt, &self.grouped, c, &co[2]);
            } else {
                channel_increment(g, chan, delta, &params[c], dt, added, c);
                if three_d {
                    sweep_rows(delta, 1, nz, nx * ny, &co[2], false);
                }
            }
            sweep_rows(delta, nz, ny, nx, &co[1], false);
            sweep_x_add(delta, chan, nx, &co[0]);
        }
    }

    /// A fused 3D Douglas step with each channel's whole step on one thread (one
    /// parallel phase for the step instead of two per channel), each with an increment
    /// buffer lent from [`AdiCache::spare`]; `data` is already `uⁿ`. Same arithmetic on
    /// every line as the plane split. Returns the seconds each channel took.
    fn channel_split(&mut self, g: &Grid, data: &mut [f32], params: &[ChannelParams], dt: f32) -> Vec<f64> {
        let voxels = g.voxels();
        let mut took = vec![0.0f64; params.len()];
        let (pool, grouped) = (&self.spare, &self.grouped);
        data.par_chunks_mut(voxels)
            .zip(&self.half)
            .zip(params)
            .zip(&mut took)
            .enumerate()
            .with_max_len(1)
            .for_each_init(
                || {
                    let delta = pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
                    (Lent { pool, delta }, vec![0.0f32; X_TILE * g.nx], vec![0.0f32; 4 * g.nx])
                },
                |(lent, buf, scratch), (c, (((chan, co), p), took))| {
                    // Grown (and its pages touched) before the clock starts: a first
                    // step's allocation is not an imbalance.
                    lent.delta.resize(voxels, 0.0);
                    let start = Instant::now();
                    channel_here(g, chan, &mut lent.delta, p, dt, grouped, c, co, buf, scratch);
                    *took = start.elapsed().as_secs_f64();
                },
            );
        took
    }
}

/// Most increment values (4 MiB) the plane split of [`AdiCache::step`] forms and solves
/// at once: that many channels' increments (at least one channel's). A channel's `Δ` is
/// best solved while it and the channel are still in cache: on the 100³ × 10 workload
/// (`lod_speed`, plane split, 2 threads) one channel at a time took 1.04–1.10 ns per
/// voxel-ligand-step and all ten at once 1.35; on the PhysiCell-sized 75³ × 2 scene both
/// channels at once beat one at a time (diffuse 1.38–1.42 against 1.58 ms/tick).
const DELTA_BUDGET: usize = 1 << 20;

/// Most increment values (256 MiB) the channel split of [`AdiCache::step`] may hold, one
/// channel's per thread; larger steps take the plane split and its [`DELTA_BUDGET`]
/// instead. Without the cap 16 threads on 16 channels of 200³ would hold 512 MiB of
/// increments beside a 512 MiB field; at 100³ on 2 threads the channel split holds 8 MiB.
const CHANNEL_SPLIT_BUDGET: usize = 1 << 26;

/// A fused 3D Douglas step of the channels `data` (already `uⁿ`; channel `first + k` of
/// the field is `data`'s `k`-th) split by block and plane among the threads: the z
/// blocks of every channel in one parallel phase ([`z_block`]), then every channel's
/// planes in another (y and x solves, `u += Δ`). `delta` is as long as `data`.
#[allow(clippy::too_many_arguments)]
fn group_step(
    g: &Grid,
    data: &mut [f32],
    delta: &mut [f32],
    params: &[ChannelParams],
    dt: f32,
    sources: &Grouped,
    first: usize,
    half: &[[LineCoefficients; 3]],
) {
    let (nx, ny, voxels) = (g.nx, g.ny, g.voxels());
    let mut units: Vec<(usize, usize, Vec<&mut [f32]>)> = Vec::new();
    for (k, d) in delta.chunks_exact_mut(voxels).enumerate() {
        units.extend(z_blocks(g, d).into_iter().enumerate().map(|(b, segs)| (k, b, segs)));
    }
    let u = &*data;
    units.par_iter_mut().for_each_init(
        || vec![0.0f32; 4 * nx],
        |scratch, (k, b, segs)| {
            let (a, kdt, faces) = increment_constants(g, &params[*k], dt);
            let f = move |u: f32, sum: f32| a * (sum - faces * u) - kdt * u;
            let chan = &u[*k * voxels..(*k + 1) * voxels];
            z_block(g, chan, segs, *b, &params[*k], sources, first + *k, &half[*k][2], scratch, &f);
        },
    );
    let planes = g.nz;
    delta.par_chunks_mut(nx * ny).zip(data.par_chunks_mut(nx * ny)).enumerate().for_each_init(
        || vec![0.0f32; X_TILE * nx],
        |buf, (i, (d, u))| {
            let co = &half[i / planes];
            solve_group(d, ny, nx, &co[1], false);
            plane_x_add(d, u, nx, &co[0], buf);
        },
    );
}

/// The sources listed for a fused 3D step, grouped by channel, block of the fused z
/// sweep and plane (the segment [`z_block`] forms at once), in their listed order within
/// each group: a stable counting sort, so every voxel still receives its amounts in the
/// order they were listed.
#[derive(Debug, Default)]
struct Grouped {
    /// Group `k`'s entries are `entries[starts[k]..starts[k + 1]]`; group `k` is
    /// `(c · blocks + b) · nz + z`.
    starts: Vec<usize>,
    /// (index within the channel, amount).
    entries: Vec<(u32, f32)>,
    /// Next free slot of each group while filling.
    next: Vec<usize>,
    /// (group, index within the channel) of each listed entry while filling.
    keys: Vec<(usize, u32)>,
    /// Blocks per plane and planes, of the grid last filled for.
    blocks: usize,
    nz: usize,
}

impl Grouped {
    /// Group `added` (indices into a field of `channels` channels of `g`).
    fn fill(&mut self, g: &Grid, channels: usize, added: &[(u32, f32)]) {
        let (nx, ny, nz, voxels) = (g.nx, g.ny, g.nz, g.voxels());
        let rows = rows_per_block(g);
        let blocks = ny.div_ceil(rows);
        (self.blocks, self.nz) = (blocks, nz);
        // Three divisions per entry, done once, the group kept for the second pass.
        let (voxels, plane, block, nz64, blocks64) =
            (voxels as u64, (nx * ny) as u64, (rows * nx) as u64, nz as u64, blocks as u64);
        self.keys.clear();
        self.keys.extend(added.iter().map(|&(i, _)| {
            let i = u64::from(i);
            let c = i / voxels;
            let v = i - c * voxels;
            let z = v / plane;
            let b = (v - z * plane) / block;
            (((c * blocks64 + b) * nz64 + z) as usize, v as u32)
        }));
        self.starts.clear();
        self.starts.resize(channels * blocks * nz + 1, 0);
        for &(k, _) in &self.keys {
            self.starts[k + 1] += 1;
        }
        for k in 1..self.starts.len() {
            self.starts[k] += self.starts[k - 1];
        }
        self.next.clear();
        self.next.extend_from_slice(&self.starts);
        self.entries.clear();
        self.entries.resize(added.len(), (0, 0.0));
        for (&(k, v), &(_, s)) in self.keys.iter().zip(added) {
            let slot = &mut self.next[k];
            self.entries[*slot] = (v, s);
            *slot += 1;
        }
    }

    /// The entries of channel `c`, block `b`, plane `z`.
    fn plane(&self, c: usize, b: usize, z: usize) -> &[(u32, f32)] {
        let k = (c * self.blocks + b) * self.nz + z;
        &self.entries[self.starts[k]..self.starts[k + 1]]
    }
}

/// One fused 3D Douglas step of one channel `u` (already `uⁿ`) on this thread, with
/// `delta` (the channel's size), `buf` ([`X_TILE`]`·nx`) and `scratch` (`4·nx`) as
/// scratch: [`increment_and_z_sweep`]'s blocks one after another, then each plane's y
/// and x solves and `u += Δ`, the same arithmetic as the parallel passes.
#[allow(clippy::too_many_arguments)]
fn channel_here(
    g: &Grid,
    u: &mut [f32],
    delta: &mut [f32],
    p: &ChannelParams,
    dt: f32,
    sources: &Grouped,
    c: usize,
    co: &[LineCoefficients; 3],
    buf: &mut [f32],
    scratch: &mut [f32],
) {
    let (nx, ny) = (g.nx, g.ny);
    let (a, kdt, faces) = increment_constants(g, p, dt);
    let f = move |u: f32, sum: f32| a * (sum - faces * u) - kdt * u;
    for (b, mut segs) in z_blocks(g, delta).into_iter().enumerate() {
        z_block(g, u, &mut segs, b, p, sources, c, &co[2], scratch, &f);
    }
    for (d, u) in delta.chunks_mut(nx * ny).zip(u.chunks_mut(nx * ny)) {
        solve_group(d, ny, nx, &co[1], false);
        plane_x_add(d, u, nx, &co[0], buf);
    }
}

/// Rows of x lines per block of [`increment_and_z_sweep`].
fn rows_per_block(g: &Grid) -> usize {
    (COLUMN_BLOCK / g.nx).max(1)
}

/// `delta` cut into the blocks of [`increment_and_z_sweep`]: block `b` holds, plane by
/// plane, the rows `b·rows_per_block ..` of every plane.
fn z_blocks<'a>(g: &Grid, delta: &'a mut [f32]) -> Vec<Vec<&'a mut [f32]>> {
    let (nx, ny, nz) = (g.nx, g.ny, g.nz);
    let rows = rows_per_block(g);
    let mut units: Vec<Vec<&mut [f32]>> = (0..ny.div_ceil(rows)).map(|_| Vec::with_capacity(nz)).collect();
    for plane in delta.chunks_exact_mut(nx * ny) {
        for (b, seg) in plane.chunks_mut(rows * nx).enumerate() {
            units[b].push(seg);
        }
    }
    units
}

/// Block `b` of [`increment_and_z_sweep`]: plane by plane, the rows' `Δ₀` from `u`
/// ([`stencil_rows`] with the channel's faces `p` and `f`) plus the block's sources in
/// that plane (channel `c` of `sources`), eliminated against the previous plane; then
/// the back substitution.
#[allow(clippy::too_many_arguments)]
fn z_block(
    g: &Grid,
    u: &[f32],
    segs: &mut [&mut [f32]],
    b: usize,
    p: &ChannelParams,
    sources: &Grouped,
    c: usize,
    co: &LineCoefficients,
    scratch: &mut [f32],
    f: &impl Fn(f32, f32) -> f32,
) {
    let (nx, ny, nz) = (g.nx, g.ny, g.nz);
    let y0 = b * rows_per_block(g);
    for z in 0..nz {
        let (done, rest) = segs.split_at_mut(z);
        let seg = &mut *rest[0];
        stencil_rows(g, u, z * ny + y0, seg, &p.boundary, scratch, f);
        let start = (z * ny + y0) * nx;
        for &(i, s) in sources.plane(c, b, z) {
            seg[i as usize - start] += s;
        }
        let iv = co.inv[z];
        if z == 0 {
            seg.iter_mut().for_each(|x| *x *= iv);
        } else {
            let prev = &*done[z - 1];
            let l = co.lower[z];
            for (y, &pv) in seg.iter_mut().zip(prev) {
                *y = (*y - l * pv) * iv;
            }
        }
    }
    finish_rows(segs, co);
}

/// The z sweep of a 3D Douglas step with `Δ₀` formed inside its forward pass: the
/// planes are cut into blocks of whole x rows (about [`COLUMN_BLOCK`] values), solved in
/// parallel ([`z_block`]); in each block, plane by plane, the rows' `Δ₀` is computed
/// from `u` ([`stencil_rows`]), the block's sources in that plane (channel `c` of
/// `sources`, in their listed order) are added, and the plane is eliminated against the
/// previous one.
/// The result is bit-identical to [`channel_increment`] followed by the z
/// [`sweep_rows`]: the same operations on every element in the same order, one pass
/// over the field fewer.
#[allow(clippy::too_many_arguments)]
fn increment_and_z_sweep(
    g: &Grid,
    u: &[f32],
    delta: &mut [f32],
    p: &ChannelParams,
    dt: f32,
    sources: &Grouped,
    c: usize,
    co: &LineCoefficients,
) {
    let (a, kdt, faces) = increment_constants(g, p, dt);
    let f = move |u: f32, sum: f32| a * (sum - faces * u) - kdt * u;
    z_blocks(g, delta).par_iter_mut().enumerate().for_each_init(
        || vec![0.0f32; 4 * g.nx],
        |scratch, (b, segs)| z_block(g, u, segs, b, p, sources, c, co, scratch, &f),
    );
}

/// `(a, kΔt, 2·dim)` of a channel's increment, in the f32 arithmetic every path uses.
fn increment_constants(g: &Grid, p: &ChannelParams, dt: f32) -> (f32, f32, f32) {
    (p.diffusion * dt / (g.dx * g.dx), p.decay * dt, 2.0 * g.dims() as f32)
}

/// Subtract what was `added` since the last step from `data`, leaving `uⁿ`.
fn take_back(data: &mut [f32], added: &[(u32, f32)]) {
    for &(i, s) in added {
        data[i as usize] -= s;
    }
}

/// `Δ₀ = Δt (A u + g) + S` of channel `c` (values `chan`, already `uⁿ`) into `delta`.
fn channel_increment(
    g: &Grid,
    chan: &[f32],
    delta: &mut [f32],
    p: &ChannelParams,
    dt: f32,
    added: &[(u32, f32)],
    c: usize,
) {
    let voxels = g.voxels();
    let (a, kdt, faces) = increment_constants(g, p, dt);
    stencil_pass(g, chan, delta, &p.boundary, |u, sum| a * (sum - faces * u) - kdt * u);
    let range = (c * voxels) as u64..((c + 1) * voxels) as u64;
    for &(i, s) in added.iter().filter(|(i, _)| range.contains(&u64::from(*i))) {
        delta[i as usize - c * voxels] += s;
    }
}

/// The explicit half of a Douglas step for every channel, for backends that solve the
/// lines elsewhere (the GPU): takes `added` back out of `data` (leaving `uⁿ`) and writes
/// `Δ₀` of every channel into `delta` (same layout as `data`). The step is then finished
/// by the homogeneous half-coefficient solves of `delta` (z, y, x in any order: the
/// factors commute) and `data += delta`.
pub fn increment(
    g: &Grid,
    data: &mut [f32],
    delta: &mut [f32],
    params: &[ChannelParams],
    dt: f32,
    added: &[(u32, f32)],
) {
    let voxels = g.voxels();
    take_back(data, added);
    for (c, (chan, d)) in data.chunks_exact(voxels).zip(delta.chunks_exact_mut(voxels)).enumerate() {
        channel_increment(g, chan, d, &params[c], dt, added, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Boundary;

    #[test]
    fn the_fused_z_sweep_is_bit_identical_to_the_plain_passes() {
        let g = Grid { nx: 13, ny: 150, nz: 9, dx: 2.0, origin: [0.0; 3] };
        let mut p = ChannelParams::new(3.0, 0.2);
        p.boundary = [
            Boundary::Fixed { value: 1.5 },
            Boundary::ZeroFlux,
            Boundary::Periodic,
            Boundary::Periodic,
            Boundary::Fixed { value: 0.25 },
            Boundary::ZeroFlux,
        ];
        let mut q = p.clone();
        q.boundary[4] = Boundary::Periodic;
        q.boundary[5] = Boundary::Periodic;
        let params = [p, q];
        let n = g.voxels() * 2;
        let start: Vec<f32> = (0..n).map(|i| ((i * 7919) % 113) as f32 * 0.05).collect();
        // Several sources, two in one voxel, in both channels.
        let added: Vec<(u32, f32)> = [(5, 0.5), (400, 1.25), (5, -0.125), (g.voxels() + 77, 2.0), (n - 1, 0.75)]
            .map(|(i, s)| (i as u32, s))
            .to_vec();
        // Plain passes; fused, planes and blocks in parallel (one thread, and two with
        // the plane split forced, all channels at once or one at a time); fused, a
        // channel per thread (two threads).
        let run_capped = |fused: bool, threads: usize, by_plane: bool, delta_budget: usize, channel_budget: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut data = start.clone();
            let mut cache = AdiCache { fused, delta_budget, channel_budget, ..AdiCache::default() };
            pool.install(|| {
                for _ in 0..3 {
                    if by_plane {
                        cache.split.by_plane = 64;
                    }
                    cache.step(&g, &mut data, &params, 0.7, &added, false);
                }
            });
            (data, cache.spare.into_inner().unwrap().len())
        };
        let run = |fused: bool, threads: usize, by_plane: bool, delta_budget: usize| {
            run_capped(fused, threads, by_plane, delta_budget, CHANNEL_SPLIT_BUDGET)
        };
        let (plain, _) = run(false, 1, false, DELTA_BUDGET);
        let (fused, _) = run(true, 1, false, DELTA_BUDGET);
        let (by_plane, _) = run(true, 2, true, DELTA_BUDGET);
        let (one_at_a_time, _) = run(true, 2, true, g.voxels());
        let (by_channel, lent) = run(true, 2, false, DELTA_BUDGET);
        assert!(lent > 0, "the channel split should have run");
        // Two threads' increments exceed a budget of two channels' less one value:
        // the plane split runs and nothing is lent.
        let (over_budget, lent) = run_capped(true, 2, false, DELTA_BUDGET, 2 * g.voxels() - 1);
        assert_eq!(lent, 0, "the channel split should not run above its memory budget");
        for other in [&fused, &by_plane, &one_at_a_time, &by_channel, &over_budget] {
            assert!(other.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        assert!(fused.iter().zip(&start).any(|(a, b)| (a - b).abs() > 0.1), "the steps should move the field");
    }

    #[test]
    fn a_field_without_channels_steps_to_nothing_on_any_thread_count() {
        // The group size below clamps to the channel count, which must not be zero.
        let g = Grid { nx: 6, ny: 5, nz: 4, dx: 2.0, origin: [0.0; 3] };
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut data: Vec<f32> = Vec::new();
            pool.install(|| AdiCache::default().step(&g, &mut data, &[], 0.5, &[], false));
            assert!(data.is_empty());
        }
    }

    #[test]
    fn increment_inside_the_z_sweep_is_bit_identical_to_the_plain_passes() {
        // The path of 3D grids whose planes are too large to fuse, called directly (the
        // step above only takes it on planes over a million values).
        let g = Grid { nx: 11, ny: 70, nz: 7, dx: 2.0, origin: [0.0; 3] };
        let mut p = ChannelParams::new(3.0, 0.2);
        p.boundary[0] = Boundary::Fixed { value: 1.5 };
        p.boundary[4] = Boundary::Fixed { value: 0.25 };
        let mut q = p.clone();
        q.boundary[4] = Boundary::Periodic;
        q.boundary[5] = Boundary::Periodic;
        let params = [p, q];
        let voxels = g.voxels();
        let data: Vec<f32> = (0..2 * voxels).map(|i| ((i * 7919) % 113) as f32 * 0.05).collect();
        let added: Vec<(u32, f32)> = [(5, 0.5), (900, 1.25), (5, -0.125), (voxels + 77, 2.0), (2 * voxels - 1, 0.75)]
            .map(|(i, s)| (i as u32, s))
            .to_vec();
        let half = scaled_coefficients(&g, &params, 0.7, 0.5);
        let mut grouped = Grouped::default();
        grouped.fill(&g, 2, &added);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (c, (chan, co)) in data.chunks_exact(voxels).zip(&half).enumerate() {
            let (mut plain, mut fused) = (vec![0.0f32; voxels], vec![0.0f32; voxels]);
            channel_increment(&g, chan, &mut plain, &params[c], 0.7, &added, c);
            sweep_rows(&mut plain, 1, g.nz, g.nx * g.ny, &co[2], false);
            pool.install(|| increment_and_z_sweep(&g, chan, &mut fused, &params[c], 0.7, &grouped, c, &co[2]));
            assert!(plain.iter().zip(&fused).all(|(a, b)| a.to_bits() == b.to_bits()), "channel {c}");
            assert!(plain.iter().any(|&v| v.abs() > 0.01), "channel {c}: the increment should not vanish");
        }
    }
}
