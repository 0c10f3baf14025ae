//! The implicit (LOD) line solver: backward Euler along one axis at a time.
//!
//! Each step of length `Δt` solves, for every channel, along every grid line of x, then
//! of y, then of z (3D only),
//!
//! ```text
//! (1 + kΔt/dim + 2a)·cᵢ − a·cᵢ₋₁ − a·cᵢ₊₁ = cᵢ(old),    a = D Δt / Δx²
//! ```
//!
//! the locally one-dimensional splitting of BioFVM (Ghaffarizadeh et al. 2016). Every
//! sweep is unconditionally stable and an M-matrix solve, so the scheme never produces
//! negative concentrations whatever `Δt`; it is first order in time (backward Euler and
//! the splitting error are both `O(Δt)`) and second order in space.
//!
//! Boundary rows (cell-centred voxels, the face half a voxel beyond the end voxel):
//! - `ZeroFlux`: the missing neighbour is dropped, diagonal `1 + kΔt/dim + a`.
//! - `Fixed { value }`: ghost `2·value − c`, diagonal `1 + kΔt/dim + 3a`, and `2a·value`
//!   added to the right-hand side.
//! - `Periodic`: the line is a cyclic tridiagonal system, solved exactly by the
//!   Sherman–Morrison correction of one Thomas solve (Numerical Recipes §2.7). A periodic
//!   line of two voxels is the plain tridiagonal system with off-diagonals `−2a`; of one
//!   voxel, the diagonal `1 + kΔt/dim`.
//!
//! # Exact arithmetic
//!
//! [`LineCoefficients::new`] computes the coefficients once in `f64` and rounds them to
//! `f32`; a port (e.g. WGSL) should upload these arrays rather than recompute them. The
//! per-element float32 arithmetic is then exactly that of [`solve_line`], the reference:
//!
//! 1. `d[0] = d[0] + rhs_lo` if the low face is `Fixed`, then `d[n−1] = d[n−1] + rhs_hi`
//!    if the high face is `Fixed`;
//! 2. forward: `d[0] = d[0] * inv[0]`, then for `i = 1 .. n−1`:
//!    `d[i] = (d[i] − lower[i] * d[i−1]) * inv[i]`;
//! 3. back: for `i = n−2 down to 0`: `d[i] = d[i] − upper[i] * d[i+1]`;
//! 4. periodic lines of three or more voxels only: `f = (d[0] + q * d[n−1]) * r`, then
//!    `d[i] = d[i] − f * z[i]` for every `i` (with `f` computed from the values *before*
//!    any of them is corrected).
//!
//! No fused multiply-adds: Rust does not contract `a * b + c`, and a port must not
//! either. The CPU path ([`crate::CpuDiffusion`] with [`crate::Scheme::Implicit`]) runs
//! many lines at once (x lines four at a time through SSE registers, in `simd_lines`,
//! or transposed in tiles where that does not apply; y and z lines row by row so the inner
//! loop is contiguous), but every line gets exactly this arithmetic, so the result is
//! bit-identical to [`solve_line`] and independent of the thread count.

use rayon::prelude::*;

use crate::simd_lines;
use crate::transpose::transpose;
use crate::{Boundary, ChannelParams, Grid};

/// The precomputed Thomas coefficients of one axis of one channel, for one `Δt`.
#[derive(Debug, Clone, PartialEq)]
pub struct LineCoefficients {
    /// Matrix sub-diagonal `lower[i]` (entry `(i, i−1)`; `lower[0]` is unused and 0), moved
    /// by a few ulps to conserve mass (see [`LineCoefficients::new`]).
    pub lower: Vec<f32>,
    /// Modified upper diagonal `upper[i] = u[i] / pivot[i]` of the Thomas algorithm
    /// (`upper[n−1]` is unused and 0).
    pub upper: Vec<f32>,
    /// Inverse pivots `1 / pivot[i]`.
    pub inv: Vec<f32>,
    /// `2a·value` added to `d[0]` when the low face is `Fixed`.
    pub rhs_lo: Option<f32>,
    /// `2a·value` added to `d[n−1]` when the high face is `Fixed`.
    pub rhs_hi: Option<f32>,
    /// The Sherman–Morrison correction of a periodic line of three or more voxels.
    pub cyclic: Option<Cyclic>,
}

/// Sherman–Morrison data of a cyclic line: `x = y − ((y₀ + q·yₙ₋₁)·r)·z`, with `y` the
/// Thomas solution of the modified system.
#[derive(Debug, Clone, PartialEq)]
pub struct Cyclic {
    /// The solution `z` of the modified system for the rank-one vector `(γ, 0, …, 0, α)`.
    pub z: Vec<f32>,
    /// `β / γ`.
    pub q: f32,
    /// `1 / (1 + z₀ + q·zₙ₋₁)`.
    pub r: f32,
}

/// Thomas forward elimination in f64: (modified upper, inverse pivots).
fn thomas_f64(lower: &[f64], diag: &[f64], upper: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = diag.len();
    let mut cp = vec![0.0; n];
    let mut inv = vec![0.0; n];
    for i in 0..n {
        let pivot = if i == 0 { diag[0] } else { diag[i] - lower[i] * cp[i - 1] };
        inv[i] = 1.0 / pivot;
        cp[i] = if i + 1 < n { upper[i] * inv[i] } else { 0.0 };
    }
    (cp, inv)
}

/// `v` moved by `k` units in the last place (`v` finite and non-zero).
fn nudge(v: f32, k: i32) -> f32 {
    f32::from_bits(v.to_bits().wrapping_add_signed(k))
}

/// Pick, within a few dozen ulps of their rounded values, the f32 sub-diagonal, inverse
/// pivots and modified upper diagonal whose factorisation `L̃·Ũ` has the column sums
/// `target` as closely as possible. Rounding the same interior coefficients the same way
/// on every row would otherwise give every column the same error, and with it a
/// systematic drift of the total mass of about 10⁻⁷ per sweep; with the sums matched to
/// about 10⁻¹¹, mass is conserved up to the rounding of the arithmetic itself. The moves
/// perturb the matrix by at most ~10⁻⁵ of its off-diagonal entries.
///
/// Column `j` of `L̃·Ũ` sums to `ũ[j−1]·(p[j−1] + l[j]) + p[j] + l[j+1]` with
/// `p = 1 / inv`; the columns are matched greedily from the first, each choosing
/// `ũ[j−1]` and `l[j+1]` from a few ulps around their values and then the `inv[j]`
/// nearest to the pivot that closes the sum.
fn conserve_column_sums(lower: &mut [f32], upper: &mut [f32], inv: &mut [f32], target: &[f64]) {
    let n = inv.len();
    let p = |v: f32| 1.0 / f64::from(v);
    for j in 0..n {
        let prev = if j > 0 { p(inv[j - 1]) + f64::from(lower[j]) } else { 0.0 };
        let ru = if j > 0 { 32 } else { 0 };
        let rl = match (j + 1 < n, j) {
            (false, _) => 0,
            (true, 0) => 64,
            (true, _) => 8,
        };
        let mut best = (f64::INFINITY, 0.0f32, 0.0f32, inv[j]);
        for ku in -ru..=ru {
            let u = if j > 0 { nudge(upper[j - 1], ku) } else { 0.0 };
            for kl in -rl..=rl {
                let l = if j + 1 < n { nudge(lower[j + 1], kl) } else { 0.0 };
                let rest = f64::from(u) * prev + f64::from(l);
                let need = (1.0 / (target[j] - rest)) as f32;
                for c in [nudge(need, -1), need, nudge(need, 1)] {
                    let err = (f64::from(u) * prev + p(c) + f64::from(l) - target[j]).abs();
                    if err < best.0 {
                        best = (err, u, l, c);
                    }
                }
            }
        }
        if j > 0 {
            upper[j - 1] = best.1;
        }
        if j + 1 < n {
            lower[j + 1] = best.2;
        }
        inv[j] = best.3;
    }
}

impl LineCoefficients {
    /// Coefficients of a line of `n ≥ 1` voxels with `a = D Δt / Δx²`, per-sweep decay
    /// `e = kΔt / dim`, and the faces `lo`, `hi` at its two ends. Periodic must be set on
    /// both faces or neither (see [`crate::validate`]); a single periodic face is treated
    /// as periodic.
    pub fn new(n: usize, a: f64, e: f64, lo: Boundary, hi: Boundary) -> Self {
        assert!(n >= 1, "a grid line has at least one voxel");
        let mut lower = vec![-a; n];
        let mut upper = vec![-a; n];
        let mut diag = vec![1.0 + e + 2.0 * a; n];
        lower[0] = 0.0;
        upper[n - 1] = 0.0;
        let mut rhs_lo = None;
        let mut rhs_hi = None;
        let mut cyclic = None;
        let periodic = lo == Boundary::Periodic || hi == Boundary::Periodic;
        if periodic {
            match n {
                1 => diag[0] = 1.0 + e,
                2 => {
                    upper[0] = -2.0 * a;
                    lower[1] = -2.0 * a;
                }
                _ => {
                    // A[0][n-1] = beta, A[n-1][0] = alpha.
                    let (alpha, beta) = (-a, -a);
                    let gamma = -diag[0];
                    diag[0] -= gamma;
                    diag[n - 1] -= alpha * beta / gamma;
                    let (cp, inv) = thomas_f64(&lower, &diag, &upper);
                    let mut z = vec![0.0; n];
                    z[0] = gamma;
                    z[n - 1] = alpha;
                    for i in 0..n {
                        z[i] = if i == 0 { z[0] * inv[0] } else { (z[i] - lower[i] * z[i - 1]) * inv[i] };
                    }
                    for i in (0..n - 1).rev() {
                        z[i] -= cp[i] * z[i + 1];
                    }
                    let q = beta / gamma;
                    let r = 1.0 / (1.0 + z[0] + q * z[n - 1]);
                    cyclic = Some(Cyclic { z: z.iter().map(|&v| v as f32).collect(), q: q as f32, r: r as f32 });
                }
            }
        } else {
            for (end, b, rhs) in [(0, lo, &mut rhs_lo), (n - 1, hi, &mut rhs_hi)] {
                match b {
                    Boundary::ZeroFlux => diag[end] -= a,
                    Boundary::Fixed { value } => {
                        diag[end] += a;
                        *rhs = Some((2.0 * a * f64::from(value)) as f32);
                    }
                    Boundary::Periodic => unreachable!(),
                }
            }
        }
        let (cp, inv) = thomas_f64(&lower, &diag, &upper);
        let f = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
        let (mut lower32, mut upper32, mut inv32) = (f(&lower), f(&cp), f(&inv));
        if cyclic.is_none() && a > 0.0 {
            // Column sums of the true matrix (1 + e away from Fixed faces).
            let target: Vec<f64> = (0..n)
                .map(|j| diag[j] + if j > 0 { upper[j - 1] } else { 0.0 } + if j + 1 < n { lower[j + 1] } else { 0.0 })
                .collect();
            conserve_column_sums(&mut lower32, &mut upper32, &mut inv32, &target);
        }
        Self { lower: lower32, upper: upper32, inv: inv32, rhs_lo, rhs_hi, cyclic }
    }

    /// Number of voxels on the line.
    pub fn len(&self) -> usize {
        self.inv.len()
    }

    /// Always false: a line has at least one voxel.
    pub fn is_empty(&self) -> bool {
        self.inv.is_empty()
    }
}

/// The reference solve of one line in place: `line` holds the old values and receives
/// the new ones. Its per-element arithmetic is the contract every implementation matches
/// bit for bit (see the module docs).
pub fn solve_line(line: &mut [f32], co: &LineCoefficients) {
    solve_line_affine(line, co, true);
}

/// [`solve_line`], with `affine` false skipping the `Fixed` faces' right-hand-side terms
/// (as in [`solve_rows`]).
pub(crate) fn solve_line_affine(line: &mut [f32], co: &LineCoefficients, affine: bool) {
    let n = co.len();
    assert_eq!(line.len(), n, "line length does not match its coefficients");
    if let (true, Some(v)) = (affine, co.rhs_lo) {
        line[0] += v;
    }
    if let (true, Some(v)) = (affine, co.rhs_hi) {
        line[n - 1] += v;
    }
    line[0] *= co.inv[0];
    for i in 1..n {
        line[i] = (line[i] - co.lower[i] * line[i - 1]) * co.inv[i];
    }
    for i in (0..n - 1).rev() {
        line[i] -= co.upper[i] * line[i + 1];
    }
    if let Some(cy) = &co.cyclic {
        let f = (line[0] + cy.q * line[n - 1]) * cy.r;
        for i in 0..n {
            line[i] -= f * cy.z[i];
        }
    }
}

/// Solve many lines at once: `rows[i]` holds element `i` of every line (one line per
/// lane), so every inner loop runs over a contiguous row and vectorises. Bit-identical to
/// [`solve_line`] on each lane.
///
/// `affine` false skips the `Fixed` faces' right-hand-side terms (`rhs_lo`, `rhs_hi`):
/// the homogeneous solve of the ADI increment, where the face values enter only through
/// the explicit increment (see [`crate::adi`]).
pub(crate) fn solve_rows(rows: &mut [&mut [f32]], co: &LineCoefficients, affine: bool) {
    let n = co.len();
    debug_assert_eq!(rows.len(), n);
    if let (true, Some(v)) = (affine, co.rhs_lo) {
        rows[0].iter_mut().for_each(|x| *x += v);
    }
    if let (true, Some(v)) = (affine, co.rhs_hi) {
        rows[n - 1].iter_mut().for_each(|x| *x += v);
    }
    let inv0 = co.inv[0];
    rows[0].iter_mut().for_each(|x| *x *= inv0);
    for i in 1..n {
        let (done, rest) = rows.split_at_mut(i);
        let (prev, cur) = (&*done[i - 1], &mut *rest[0]);
        let (l, iv) = (co.lower[i], co.inv[i]);
        for (y, &p) in cur.iter_mut().zip(prev) {
            *y = (*y - l * p) * iv;
        }
    }
    finish_rows(rows, co);
}

/// The back substitution (and a cyclic line's correction) of [`solve_rows`], once the
/// forward elimination has run on every row.
pub(crate) fn finish_rows(rows: &mut [&mut [f32]], co: &LineCoefficients) {
    let n = co.len();
    for i in (0..n - 1).rev() {
        let (head, tail) = rows.split_at_mut(i + 1);
        let (cur, next) = (&mut *head[i], &*tail[0]);
        let u = co.upper[i];
        for (y, &p) in cur.iter_mut().zip(next) {
            *y -= u * p;
        }
    }
    if let Some(cy) = &co.cyclic {
        let (q, r) = (cy.q, cy.r);
        // Rows 1..n-1 first, while rows 0 and n-1 still hold the uncorrected values.
        let (first, rest) = rows.split_at_mut(1);
        let (middle, last) = rest.split_at_mut(n - 2);
        let (first, last) = (&mut *first[0], &mut *last[0]);
        for (i, row) in middle.iter_mut().enumerate() {
            let zi = cy.z[i + 1];
            for ((y, &y0), &yl) in row.iter_mut().zip(first.iter()).zip(last.iter()) {
                let f = (y0 + q * yl) * r;
                *y -= f * zi;
            }
        }
        let (z0, zl) = (cy.z[0], cy.z[n - 1]);
        for (y0, yl) in first.iter_mut().zip(last.iter_mut()) {
            let f = (*y0 + q * *yl) * r;
            *y0 -= f * z0;
            *yl -= f * zl;
        }
    }
}

/// Lines of the x sweep solved together in one transposed tile.
pub(crate) const X_TILE: usize = 32;
/// Widest column block (floats) of the y and z sweeps.
pub(crate) const COLUMN_BLOCK: usize = 512;
/// Cache budget (floats, 512 KiB) of one column block of the y and z sweeps: `n` rows of
/// the block's width stay in L2 between the forward and the backward pass.
const BLOCK_BUDGET: usize = 1 << 17;
/// Largest x–y plane (floats, 1 MiB) whose x and y sweeps are done together while it is
/// in cache ([`lod_channel`]).
pub(crate) const PLANE_FUSE_MAX: usize = 1 << 18;

/// Width of the column blocks of a sweep across `n` rows: [`COLUMN_BLOCK`] values, fewer
/// (a multiple of 16, at least 16) when `n` rows of that width would not fit
/// [`BLOCK_BUDGET`]. Every line gets the same arithmetic whatever the width.
pub(crate) fn column_block(n: usize) -> usize {
    (BLOCK_BUDGET / n.max(1) / 16 * 16).clamp(16, COLUMN_BLOCK)
}

/// Load `tile` (whole x lines of `nx` voxels) transposed into `buf`, so that element `i`
/// of every line is one contiguous row, and solve; returns the number of lines.
fn solve_tile(buf: &mut [f32], tile: &[f32], nx: usize, co: &LineCoefficients, affine: bool) -> usize {
    let lines = tile.len() / nx;
    let buf = &mut buf[..lines * nx];
    transpose::<false>(tile, lines, nx, buf);
    let mut rows: Vec<&mut [f32]> = buf.chunks_exact_mut(lines).collect();
    solve_rows(&mut rows, co, affine);
    lines
}

/// The x sweep of one channel: every contiguous line of `nx` voxels, in tiles of
/// [`X_TILE`] lines solved across lines ([`x_tile`]).
/// `affine` as in [`solve_rows`].
pub(crate) fn sweep_x(chan: &mut [f32], nx: usize, co: &LineCoefficients, affine: bool) {
    chan.par_chunks_mut(X_TILE * nx)
        .for_each_init(|| vec![0.0f32; X_TILE * nx], |buf, tile| x_tile(tile, nx, co, affine, buf));
}

/// Solve one tile of whole x lines in place, with `buf` ([`X_TILE`]`·nx` values) as
/// scratch: in registers ([`simd_lines`]) where it can, else transposed through `buf`.
fn x_tile(tile: &mut [f32], nx: usize, co: &LineCoefficients, affine: bool, buf: &mut [f32]) {
    if simd_lines::supported(co) {
        simd_lines::solve_in_place(tile, nx, co, affine, buf);
    } else {
        let lines = solve_tile(buf, tile, nx, co, affine);
        transpose::<false>(buf, nx, lines, tile);
    }
}

/// [`sweep_x`] of one x–y plane on this thread, with `buf` ([`X_TILE`]`·nx` values) as
/// the tile scratch.
fn plane_x(plane: &mut [f32], nx: usize, co: &LineCoefficients, affine: bool, buf: &mut [f32]) {
    for tile in plane.chunks_mut(X_TILE * nx) {
        x_tile(tile, nx, co, affine, buf);
    }
}

/// The homogeneous x sweep of one plane of an ADI increment `delta`, written back as
/// `u += Δ` (the increment itself is left as it was), on this thread.
pub(crate) fn plane_x_add(delta: &[f32], u: &mut [f32], nx: usize, co: &LineCoefficients, buf: &mut [f32]) {
    for (tile, out) in delta.chunks(X_TILE * nx).zip(u.chunks_mut(X_TILE * nx)) {
        if simd_lines::supported(co) {
            simd_lines::solve_and_add(tile, out, nx, co, buf);
        } else {
            let lines = solve_tile(buf, tile, nx, co, false);
            transpose::<true>(buf, nx, lines, out);
        }
    }
}

/// The homogeneous x sweep of an ADI increment `delta`, written back as `u += Δ` (the
/// increment itself is left as it was).
pub(crate) fn sweep_x_add(delta: &[f32], u: &mut [f32], nx: usize, co: &LineCoefficients) {
    delta
        .par_chunks(X_TILE * nx)
        .zip(u.par_chunks_mut(X_TILE * nx))
        .for_each_init(|| vec![0.0f32; X_TILE * nx], |buf, (tile, out)| plane_x_add(tile, out, nx, co, buf));
}

/// One group of [`sweep_rows`] (`n` rows of `len` values) on this thread, block by block.
pub(crate) fn solve_group(group: &mut [f32], n: usize, len: usize, co: &LineCoefficients, affine: bool) {
    let width = column_block(n);
    for start in (0..len).step_by(width) {
        let end = (start + width).min(len);
        let mut rows: Vec<&mut [f32]> = group.chunks_exact_mut(len).map(|row| &mut row[start..end]).collect();
        solve_rows(&mut rows, co, affine);
    }
}

/// A sweep along rows: `chan` is `groups` independent blocks of `n` rows of `len`
/// contiguous values; the lines run across the rows (element `x` of row `i` is voxel `i`
/// of line `x`). The y sweep is `(nz, ny, nx)`, the z sweep `(1, nz, nx·ny)`. Rows are cut
/// into column blocks ([`column_block`]), and the blocks are solved in parallel.
pub(crate) fn sweep_rows(chan: &mut [f32], groups: usize, n: usize, len: usize, co: &LineCoefficients, affine: bool) {
    let width = column_block(n);
    let blocks = len.div_ceil(width);
    let mut units: Vec<Vec<&mut [f32]>> = Vec::with_capacity(groups * blocks);
    for group in chan.chunks_exact_mut(n * len) {
        let first = units.len();
        units.extend((0..blocks).map(|_| Vec::with_capacity(n)));
        for row in group.chunks_exact_mut(len) {
            for (b, seg) in row.chunks_mut(width).enumerate() {
                units[first + b].push(seg);
            }
        }
    }
    units.par_iter_mut().for_each(|rows| solve_rows(rows, co, affine));
}

/// Whether a grid's x and y sweeps are done plane by plane ([`lod_channel`]): 3D grids
/// whose x–y plane fits [`PLANE_FUSE_MAX`].
pub(crate) fn fuse_planes(g: &Grid) -> bool {
    g.dims() == 3 && g.nx * g.ny <= PLANE_FUSE_MAX
}

/// One LOD step of one channel: the x, y and (3D) z sweeps with the coefficients `co`.
/// On a grid where [`fuse_planes`] holds, the x and y sweeps of each x–y plane are done
/// together while the plane is in cache, planes in parallel: one pass over the field
/// fewer, the same arithmetic on every line (bit-identical to the separate sweeps).
pub(crate) fn lod_channel(g: &Grid, chan: &mut [f32], co: &[LineCoefficients; 3]) {
    let (nx, ny, nz) = (g.nx, g.ny, g.nz);
    if fuse_planes(g) {
        chan.par_chunks_mut(nx * ny).for_each_init(
            || vec![0.0f32; X_TILE * nx],
            |buf, plane| {
                plane_xy(plane, nx, ny, co, buf);
            },
        );
    } else {
        sweep_x(chan, nx, &co[0], true);
        sweep_rows(chan, nz, ny, nx, &co[1], true);
    }
    if g.dims() == 3 {
        sweep_rows(chan, 1, nz, nx * ny, &co[2], true);
    }
}

/// [`lod_channel`] on this thread, on a grid where [`fuse_planes`] holds, with `buf`
/// ([`X_TILE`]`·nx` values) as the x tiles' scratch: the same arithmetic on every line.
pub(crate) fn lod_channel_here(g: &Grid, chan: &mut [f32], co: &[LineCoefficients; 3], buf: &mut [f32]) {
    let (nx, ny, nz) = (g.nx, g.ny, g.nz);
    for plane in chan.chunks_mut(nx * ny) {
        plane_xy(plane, nx, ny, co, buf);
    }
    solve_group(chan, nz, nx * ny, &co[2], true);
}

/// The x and then the y sweep of one x–y plane of `nx × ny` voxels on this thread, with
/// `buf` ([`X_TILE`]`·nx` values) as the x tiles' scratch.
fn plane_xy(plane: &mut [f32], nx: usize, ny: usize, co: &[LineCoefficients; 3], buf: &mut [f32]) {
    plane_x(plane, nx, &co[0], true, buf);
    solve_group(plane, ny, nx, &co[1], true);
}

/// [`lod_channel`] of every channel of `data` at once on a grid where [`fuse_planes`]
/// holds: the x–y planes of all channels in one parallel pass, then the z column blocks
/// of all channels in another, so a step has two parallel phases whatever the number of
/// channels. The same arithmetic on every line as [`lod_channel`].
pub(crate) fn lod_all_channels(g: &Grid, data: &mut [f32], axes: &[[LineCoefficients; 3]]) {
    let (nx, ny, nz) = (g.nx, g.ny, g.nz);
    data.par_chunks_mut(nx * ny).enumerate().for_each_init(
        || vec![0.0f32; X_TILE * nx],
        |buf, (k, plane)| {
            let co = &axes[k / nz];
            plane_xy(plane, nx, ny, co, buf);
        },
    );
    let len = nx * ny;
    let width = column_block(nz);
    let mut units: Vec<(usize, Vec<&mut [f32]>)> = Vec::new();
    for (c, chan) in data.chunks_exact_mut(g.voxels()).enumerate() {
        let first = units.len();
        units.extend((0..len.div_ceil(width)).map(|_| (c, Vec::with_capacity(nz))));
        for row in chan.chunks_exact_mut(len) {
            for (b, seg) in row.chunks_mut(width).enumerate() {
                units[first + b].1.push(seg);
            }
        }
    }
    units.par_iter_mut().for_each(|(c, rows)| solve_rows(rows, &axes[*c][2], true));
}

/// The coefficients of every channel's x, y and z lines for one step of `dt` (the z
/// entry is a single voxel's on a 2D grid and unused). Every implementation of the
/// implicit scheme (the CPU sweeps here, the WGSL port) uses exactly these.
pub fn coefficients(g: &Grid, params: &[ChannelParams], dt: f32) -> Vec<[LineCoefficients; 3]> {
    scaled_coefficients(g, params, dt, 1.0)
}

/// [`coefficients`] with `a` and the per-sweep decay both multiplied by `scale`: the
/// ADI scheme's half-step set is `scale = 0.5` (see [`crate::adi`]).
pub fn scaled_coefficients(g: &Grid, params: &[ChannelParams], dt: f32, scale: f64) -> Vec<[LineCoefficients; 3]> {
    let dims = g.dims() as f64;
    let h2 = f64::from(g.dx) * f64::from(g.dx);
    params
        .iter()
        .map(|p| {
            let a = scale * f64::from(p.diffusion) * f64::from(dt) / h2;
            let e = scale * f64::from(p.decay) * f64::from(dt) / dims;
            let b = &p.boundary;
            [
                LineCoefficients::new(g.nx, a, e, b[0], b[1]),
                LineCoefficients::new(g.ny, a, e, b[2], b[3]),
                LineCoefficients::new(g.nz, a, e, b[4], b[5]),
            ]
        })
        .collect()
}

/// After consecutive steps split by channel took this much longer on their slowest
/// channel than on the mean, [`LodCache::step`] splits the next steps by plane instead.
const CHANNEL_IMBALANCE: f64 = 1.2;

/// How many consecutive imbalanced steps it takes: a subnormal band lasts hundreds of
/// steps, while on a shared machine one step in a few dozen has a channel delayed by
/// another process (seen in `lod_speed`), which should not cost 64 slower steps.
const IMBALANCED_STEPS: u8 = 2;

/// Steps split by plane before [`LodCache::step`] tries the channel split again.
const PLANE_SPLIT_STEPS: u32 = 64;

/// How a 3D step is shared among the threads: whole channels per thread, or (after
/// imbalanced channel steps, see [`LodCache::step`]) planes and column blocks.
#[derive(Debug, Default)]
pub(crate) struct SplitChoice {
    /// Steps still to split by plane.
    pub(crate) by_plane: u32,
    /// Consecutive imbalanced channel steps so far.
    strikes: u8,
}

impl SplitChoice {
    /// Whether this step may split by channel (counts a plane-split step down).
    pub(crate) fn by_channel(&mut self) -> bool {
        let by_channel = self.by_plane == 0;
        self.by_plane = self.by_plane.saturating_sub(1);
        by_channel
    }

    /// Record the seconds each channel of a channel-split step took.
    pub(crate) fn judge(&mut self, took: &[f64]) {
        let mean = took.iter().sum::<f64>() / took.len().max(1) as f64;
        if took.iter().any(|&t| t > CHANNEL_IMBALANCE * mean) {
            self.strikes += 1;
            if self.strikes >= IMBALANCED_STEPS {
                self.by_plane = PLANE_SPLIT_STEPS;
                self.strikes = 0;
            }
        } else {
            self.strikes = 0;
        }
    }
}

/// The cached coefficients of every channel and axis for one (grid, params, Δt), and
/// which way the last steps were split among the threads.
#[derive(Debug, Default)]
pub(crate) struct LodCache {
    key: Option<(Grid, Vec<ChannelParams>, u32)>,
    axes: Vec<[LineCoefficients; 3]>,
    /// Which way the next steps are split (see [`LodCache::step`]).
    split: SplitChoice,
}

impl LodCache {
    /// The coefficients for this (grid, params, dt), rebuilt only when one changed.
    fn get(&mut self, g: &Grid, params: &[ChannelParams], dt: f32) -> &[[LineCoefficients; 3]] {
        let fresh = matches!(&self.key, Some((kg, kp, kdt)) if kg == g && kp == params && *kdt == dt.to_bits());
        if !fresh {
            self.axes = coefficients(g, params, dt);
            self.key = Some((*g, params.to_vec(), dt.to_bits()));
        }
        &self.axes
    }

    /// One implicit step of every channel of `data` (validated by the caller).
    ///
    /// On a 3D grid whose channels divide evenly among the threads, each channel's whole
    /// step runs on one thread (one parallel phase instead of two), as long as the
    /// channels cost about the same. They need not: a field that starts at zero and
    /// spreads from its sources carries a band of subnormal values ahead of its front
    /// for its first few hundred steps, several times slower to compute, while the
    /// thread of a settled channel waits. When the slowest channel took more than
    /// [`CHANNEL_IMBALANCE`] times the mean in [`IMBALANCED_STEPS`] consecutive steps,
    /// the next [`PLANE_SPLIT_STEPS`] steps are
    /// split by x–y plane and z column block instead, which shares that band among the
    /// threads. Both splits do the same arithmetic on every line, so the choice, made
    /// from the clock, never changes the result.
    pub(crate) fn step(&mut self, g: &Grid, data: &mut [f32], params: &[ChannelParams], dt: f32) {
        let by_channel = self.split.by_channel();
        let axes = self.get(g, params, dt);
        let voxels = g.voxels();
        let threads = rayon::current_num_threads();
        if fuse_planes(g) && threads > 1 && axes.len().is_multiple_of(threads) && by_channel {
            let mut took = vec![0.0f64; axes.len()];
            data.par_chunks_mut(voxels).zip(axes).zip(&mut took).for_each_init(
                || vec![0.0f32; X_TILE * g.nx],
                |buf, ((chan, co), took)| {
                    let start = std::time::Instant::now();
                    lod_channel_here(g, chan, co, buf);
                    *took = start.elapsed().as_secs_f64();
                },
            );
            self.split.judge(&took);
            return;
        }
        if fuse_planes(g) {
            lod_all_channels(g, data, axes);
            return;
        }
        for (chan, co) in data.chunks_exact_mut(voxels).zip(axes) {
            lod_channel(g, chan, co);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plane_split_follows_two_imbalanced_steps_in_a_row() {
        let (even, uneven) = ([1.0, 1.1], [1.0, 2.0]);
        let mut split = SplitChoice::default();
        assert!(split.by_channel());
        // One delayed channel is not enough; a balanced step in between starts again.
        split.judge(&uneven);
        assert_eq!(split.by_plane, 0);
        split.judge(&even);
        split.judge(&uneven);
        assert_eq!(split.by_plane, 0);
        // Two in a row: the next PLANE_SPLIT_STEPS steps split by plane, then by channel.
        split.judge(&uneven);
        assert_eq!(split.by_plane, PLANE_SPLIT_STEPS);
        for _ in 0..PLANE_SPLIT_STEPS {
            assert!(!split.by_channel());
        }
        assert!(split.by_channel());
        // And the count started again: one more imbalanced step does not switch.
        split.judge(&uneven);
        assert_eq!(split.by_plane, 0);
    }

    /// Dense f64 solve of the matrix the coefficients stand for.
    fn dense(n: usize, a: f64, e: f64, lo: Boundary, hi: Boundary, rhs: &[f64]) -> Vec<f64> {
        let mut m = vec![vec![0.0; n]; n];
        let mut r = rhs.to_vec();
        for i in 0..n {
            m[i][i] += 1.0 + e + 2.0 * a;
            for (j, b, inside) in [(i.wrapping_sub(1), lo, i > 0), (i + 1, hi, i + 1 < n)] {
                if inside {
                    m[i][j] -= a;
                } else {
                    match b {
                        Boundary::ZeroFlux => m[i][i] -= a,
                        Boundary::Fixed { value } => {
                            m[i][i] += a;
                            r[i] += 2.0 * a * f64::from(value);
                        }
                        Boundary::Periodic => m[i][if i == 0 { n - 1 } else { 0 }] -= a,
                    }
                }
            }
        }
        // Gaussian elimination with partial pivoting.
        for k in 0..n {
            let p = (k..n).max_by(|&x, &y| m[x][k].abs().total_cmp(&m[y][k].abs())).unwrap();
            m.swap(k, p);
            r.swap(k, p);
            for i in k + 1..n {
                let f = m[i][k] / m[k][k];
                for j in k..n {
                    m[i][j] -= f * m[k][j];
                }
                r[i] -= f * r[k];
            }
        }
        let mut x = vec![0.0; n];
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|j| m[i][j] * x[j]).sum();
            x[i] = (r[i] - s) / m[i][i];
        }
        x
    }

    #[test]
    fn line_solver_matches_a_dense_solve_for_every_boundary() {
        let fixed = Boundary::Fixed { value: 3.0 };
        let cases = [
            (Boundary::ZeroFlux, Boundary::ZeroFlux),
            (fixed, Boundary::ZeroFlux),
            (Boundary::ZeroFlux, Boundary::Fixed { value: -1.5 }),
            (fixed, fixed),
            (Boundary::Periodic, Boundary::Periodic),
        ];
        for n in [1, 2, 3, 4, 7, 20] {
            for &(lo, hi) in &cases {
                for a in [0.01, 0.7, 25.0] {
                    let rhs: Vec<f64> = (0..n).map(|i| 1.0 + ((i * 37) % 11) as f64 * 0.3).collect();
                    let co = LineCoefficients::new(n, a, 0.02, lo, hi);
                    let mut line: Vec<f32> = rhs.iter().map(|&v| v as f32).collect();
                    solve_line(&mut line, &co);
                    let exact = dense(n, a, 0.02, lo, hi, &rhs);
                    for (g, e) in line.iter().zip(&exact) {
                        assert!((f64::from(*g) - e).abs() < 1e-5 * e.abs().max(1.0), "n {n} {lo:?}/{hi:?} a {a}");
                    }
                }
            }
        }
    }

    #[test]
    fn fused_planes_and_narrow_column_blocks_are_bit_identical_to_line_by_line_solves() {
        let fixed = Boundary::Fixed { value: 0.75 };
        // A 3D grid (planes fused) and a tall 2D grid (y blocks narrower than 512).
        for g in [
            Grid { nx: 37, ny: 45, nz: 6, dx: 1.0, origin: [0.0; 3] },
            Grid { nx: 70, ny: 3000, nz: 1, dx: 1.0, origin: [0.0; 3] },
        ] {
            assert!(column_block(g.ny) < 70 || g.dims() == 3);
            let co = [
                LineCoefficients::new(g.nx, 2.5, 0.01, fixed, Boundary::ZeroFlux),
                LineCoefficients::new(g.ny, 2.5, 0.01, Boundary::Periodic, Boundary::Periodic),
                LineCoefficients::new(g.nz, 2.5, 0.01, Boundary::ZeroFlux, fixed),
            ];
            let start: Vec<f32> = (0..g.voxels()).map(|i| ((i * 7919) % 1009) as f32 * 0.01).collect();
            let mut fused = start.clone();
            lod_channel(&g, &mut fused, &co);
            let mut reference = start.clone();
            let (nx, ny, nz) = (g.nx, g.ny, g.nz);
            let index = |x: usize, y: usize, z: usize| (z * ny + y) * nx + x;
            let mut line = Vec::new();
            for axis in 0..g.dims() {
                let n = [nx, ny, nz][axis];
                let others: Vec<(usize, usize)> = match axis {
                    0 => (0..nz).flat_map(|z| (0..ny).map(move |y| (y, z))).collect(),
                    1 => (0..nz).flat_map(|z| (0..nx).map(move |x| (x, z))).collect(),
                    _ => (0..ny).flat_map(|y| (0..nx).map(move |x| (x, y))).collect(),
                };
                for (p, q) in others {
                    let at = |i: usize| match axis {
                        0 => index(i, p, q),
                        1 => index(p, i, q),
                        _ => index(p, q, i),
                    };
                    line.clear();
                    line.extend((0..n).map(|i| reference[at(i)]));
                    solve_line(&mut line, &co[axis]);
                    for (i, &v) in line.iter().enumerate() {
                        reference[at(i)] = v;
                    }
                }
            }
            assert!(fused.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits()), "{g:?}");
            // All channels at once (two channels with different coefficients).
            if g.dims() == 3 {
                let other = [
                    LineCoefficients::new(g.nx, 0.3, 0.0, Boundary::ZeroFlux, Boundary::ZeroFlux),
                    LineCoefficients::new(g.ny, 0.3, 0.0, Boundary::ZeroFlux, fixed),
                    LineCoefficients::new(g.nz, 0.3, 0.0, Boundary::Periodic, Boundary::Periodic),
                ];
                let mut both: Vec<f32> = start.iter().chain(start.iter().rev()).copied().collect();
                let mut second: Vec<f32> = start.iter().rev().copied().collect();
                lod_channel(&g, &mut second, &other);
                let mut here = start.clone();
                lod_channel_here(&g, &mut here, &co, &mut vec![0.0; X_TILE * g.nx]);
                assert!(here.iter().zip(&fused).all(|(a, b)| a.to_bits() == b.to_bits()));
                lod_all_channels(&g, &mut both, &[co.clone(), other]);
                assert!(both[..g.voxels()].iter().zip(&fused).all(|(a, b)| a.to_bits() == b.to_bits()));
                assert!(both[g.voxels()..].iter().zip(&second).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
            assert!(fused.iter().zip(&start).any(|(a, b)| (a - b).abs() > 0.1), "the step should move the field");
        }
    }

    #[test]
    fn steps_split_by_channel_and_by_plane_give_the_same_field() {
        // Two channels on two threads: the channel split unless `by_plane` is set. One
        // channel starts at zero beside a point source (the subnormal band that makes the
        // step switch), the other settled.
        let g = Grid { nx: 24, ny: 20, nz: 18, dx: 20.0, origin: [0.0; 3] };
        let params = [ChannelParams::new(100.0, 0.016), ChannelParams::new(1e5, 0.1)];
        let mut start = vec![0.0f32; 2 * g.voxels()];
        start[(9 * g.ny + 10) * g.nx + 12] = 1.0;
        for (i, v) in start[g.voxels()..].iter_mut().enumerate() {
            *v = 38.0 - (i % 13) as f32;
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let run = |by_plane: bool| {
            let mut cache = LodCache::default();
            let mut data = start.clone();
            pool.install(|| {
                for _ in 0..12 {
                    if by_plane {
                        cache.split.by_plane = PLANE_SPLIT_STEPS;
                    }
                    cache.step(&g, &mut data, &params, 0.01);
                    assert!(!by_plane || cache.split.by_plane == PLANE_SPLIT_STEPS - 1);
                }
            });
            data
        };
        let (by_channel, by_plane) = (run(false), run(true));
        assert!(by_channel.iter().zip(&by_plane).all(|(a, b)| a.to_bits() == b.to_bits()));
        // The source spread, and far from it values fell below the normal range.
        assert!(by_channel[..g.voxels()].iter().filter(|v| **v > 1e-6).count() > 20);
        assert!(by_channel[..g.voxels()].iter().any(|v| v.is_subnormal()));
    }

    #[test]
    fn row_solver_is_bit_identical_to_the_reference() {
        for (lo, hi) in [
            (Boundary::Fixed { value: 2.0 }, Boundary::ZeroFlux),
            (Boundary::Periodic, Boundary::Periodic),
            (Boundary::ZeroFlux, Boundary::Fixed { value: 0.5 }),
        ] {
            for n in [1, 2, 3, 9] {
                let co = LineCoefficients::new(n, 3.3, 0.001, lo, hi);
                let lanes = 13;
                let data: Vec<f32> = (0..n * lanes).map(|i| ((i * 7919) % 101) as f32 * 0.37).collect();
                let mut rows_buf = data.clone();
                let mut rows: Vec<&mut [f32]> = rows_buf.chunks_exact_mut(lanes).collect();
                solve_rows(&mut rows, &co, true);
                for l in 0..lanes {
                    let mut line: Vec<f32> = (0..n).map(|i| data[i * lanes + l]).collect();
                    solve_line(&mut line, &co);
                    for i in 0..n {
                        assert_eq!(line[i].to_bits(), rows_buf[i * lanes + l].to_bits());
                    }
                }
            }
        }
    }
}
