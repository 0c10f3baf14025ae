//! The x sweep's tiles solved with each line's running value kept in an SSE register
//! ([`crate::implicit`]).
//!
//! x lines are contiguous, so the elimination cannot run across lines without moving
//! element `i` of several lines side by side. The plain way ([`crate::transpose`] the
//! tile into a scratch, solve it row by row, transpose back) walks the tile four times
//! and reloads the previous row at every step. Here the 4 × 4 transposes happen in SSE
//! registers *inside* the two passes: the forward elimination reads four x positions of
//! four lines, transposes them in registers, runs the four steps with the previous value
//! kept in a register and stores the transposed result in the scratch; the back
//! substitution reads the scratch, runs its steps in registers, transposes back and
//! writes (or, for the ADI increment, adds) the lines. Two passes over the tile instead
//! of four, and no reload of the previous value.
//!
//! Every element gets exactly the arithmetic of [`crate::implicit::solve_line`] (the same
//! IEEE operations in the same order, SSE being exact per lane), so the results are
//! bit-identical to the reference. Periodic lines (their Sherman–Morrison correction),
//! lines shorter than 4 voxels and other architectures use the plain way.
#![allow(unsafe_code)]

use crate::implicit::LineCoefficients;

/// Lines solved together per group: one SSE register holds element `i` of four lines.
const LANES: usize = 4;
/// Largest number of groups in a tile ([`crate::implicit::X_TILE`] / [`LANES`]).
const MAX_GROUPS: usize = crate::implicit::X_TILE / LANES;

/// Whether [`solve_tile`] handles lines with these coefficients (else the caller uses
/// the transposing solver).
pub(crate) fn supported(co: &LineCoefficients) -> bool {
    cfg!(target_arch = "x86_64") && co.cyclic.is_none() && co.len() >= LANES
}

/// Solve the whole x lines of `nx` voxels in `tile` in place, with `buf` (at least
/// [`crate::implicit::X_TILE`]`·nx` values) as scratch.
pub(crate) fn solve_in_place(tile: &mut [f32], nx: usize, co: &LineCoefficients, affine: bool, buf: &mut [f32]) {
    let lines = tile.len() / nx;
    assert!(supported(co) && co.len() == nx && tile.len() == lines * nx && lines <= MAX_GROUPS * LANES);
    assert!(buf.len() >= MAX_GROUPS * LANES * nx);
    #[cfg(target_arch = "x86_64")]
    {
        let p = tile.as_mut_ptr();
        // SAFETY: the tile holds lines·nx values and is borrowed mutably here.
        unsafe { solve_tile::<false>(p, p, lines, nx, co, affine, buf) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (affine, buf); // never reached: `supported` is false here
}

/// Solve the whole x lines of `nx` voxels in `delta` (homogeneously: no `Fixed` face
/// terms) and add the solution to `out`, with `buf` as in [`solve_in_place`].
pub(crate) fn solve_and_add(delta: &[f32], out: &mut [f32], nx: usize, co: &LineCoefficients, buf: &mut [f32]) {
    let lines = delta.len() / nx;
    assert!(supported(co) && co.len() == nx && delta.len() == lines * nx && out.len() == delta.len());
    assert!(lines <= MAX_GROUPS * LANES);
    assert!(buf.len() >= MAX_GROUPS * LANES * nx);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: both tiles hold lines·nx values; out is borrowed mutably, delta shared.
    unsafe {
        solve_tile::<true>(delta.as_ptr(), out.as_mut_ptr(), lines, nx, co, false, buf)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (out, buf); // never reached: `supported` is false here
}

/// Solve the `lines` (at most [`crate::implicit::X_TILE`]) whole x lines of `nx` voxels
/// in `src` (line `l` at `src[l·nx..]`) and write the solution to `dst` (with `ADD`, add
/// it to `dst`), using `buf` (at least [`crate::implicit::X_TILE`]`·nx` values) as
/// scratch; `src` and `dst` may be the same tile (each line of `src` is read in full
/// before that line of `dst` is written).
/// `affine` as in [`crate::implicit`]'s row solver.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for reads and writes of `lines·nx` values, and
/// no other reference may access `dst` meanwhile; `co` must be [`supported`] and of
/// length `nx`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn solve_tile<const ADD: bool>(
    src: *const f32,
    dst: *mut f32,
    lines: usize,
    nx: usize,
    co: &LineCoefficients,
    affine: bool,
    buf: &mut [f32],
) {
    debug_assert!(
        supported(co) && co.len() == nx && lines <= MAX_GROUPS * LANES && buf.len() >= MAX_GROUPS * LANES * nx
    );
    let groups = lines / LANES;
    let w = groups * LANES;
    // SAFETY (all arms): the group kernels touch lines 0..w of the tile and buf[..w·nx].
    unsafe {
        match groups {
            0 => {}
            1 => groups_kernel::<1, ADD>(src, dst, nx, co, affine, buf),
            2 => groups_kernel::<2, ADD>(src, dst, nx, co, affine, buf),
            3 => groups_kernel::<3, ADD>(src, dst, nx, co, affine, buf),
            4 => groups_kernel::<4, ADD>(src, dst, nx, co, affine, buf),
            5 => groups_kernel::<5, ADD>(src, dst, nx, co, affine, buf),
            6 => groups_kernel::<6, ADD>(src, dst, nx, co, affine, buf),
            7 => groups_kernel::<7, ADD>(src, dst, nx, co, affine, buf),
            8 => groups_kernel::<8, ADD>(src, dst, nx, co, affine, buf),
            _ => unreachable!("a tile holds at most {} lines", MAX_GROUPS * LANES),
        }
    }
    // The last lines % 4 lines: copied into a four-line tile (the last of them repeated
    // in the spare lanes), solved as one group, and the real lines written out.
    let rest = lines - w;
    if rest > 0 {
        let (pad, scratch) = buf.split_at_mut(LANES * nx);
        for (k, line) in pad.chunks_exact_mut(nx).enumerate() {
            let l = (w + k).min(lines - 1);
            // SAFETY: line l < lines lies inside the source tile, which is only read here.
            line.copy_from_slice(unsafe { std::slice::from_raw_parts(src.add(l * nx), nx) });
        }
        let p = pad.as_mut_ptr();
        // SAFETY: pad is a four-line tile of its own; scratch holds at least 4·nx values.
        unsafe { groups_kernel::<1, false>(p, p, nx, co, affine, scratch) };
        for (k, line) in pad.chunks_exact(nx).take(rest).enumerate() {
            // SAFETY: line w + k < lines lies inside the destination tile, written only here.
            let out = unsafe { std::slice::from_raw_parts_mut(dst.add((w + k) * nx), nx) };
            for (o, &v) in out.iter_mut().zip(line) {
                if ADD { *o += v } else { *o = v }
            }
        }
    }
}

/// One forward-elimination step of element `i` of four lines (one per lane) whose
/// element `i − 1` is `prev`, with the `Fixed` faces' terms `lo`, `hi` (None when the
/// solve is homogeneous): exactly the reference's operations.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn forward_step(
    x: std::arch::x86_64::__m128,
    i: usize,
    prev: std::arch::x86_64::__m128,
    co: &LineCoefficients,
    lo: Option<f32>,
    hi: Option<f32>,
) -> std::arch::x86_64::__m128 {
    use std::arch::x86_64::{_mm_add_ps, _mm_mul_ps, _mm_set1_ps, _mm_sub_ps};
    let n = co.len();
    // SAFETY: SSE is part of the x86-64 baseline; register arithmetic only.
    unsafe {
        let mut x = x;
        if i == 0 {
            if let Some(v) = lo {
                x = _mm_add_ps(x, _mm_set1_ps(v));
            }
            return _mm_mul_ps(x, _mm_set1_ps(co.inv[0]));
        }
        if i == n - 1
            && let Some(v) = hi
        {
            x = _mm_add_ps(x, _mm_set1_ps(v));
        }
        _mm_mul_ps(_mm_sub_ps(x, _mm_mul_ps(_mm_set1_ps(co.lower[i]), prev)), _mm_set1_ps(co.inv[i]))
    }
}

/// Transpose four registers holding four rows of a 4 × 4 block into its four columns.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn transpose4(
    a: std::arch::x86_64::__m128,
    b: std::arch::x86_64::__m128,
    c: std::arch::x86_64::__m128,
    e: std::arch::x86_64::__m128,
) -> [std::arch::x86_64::__m128; 4] {
    use std::arch::x86_64::{_mm_movehl_ps, _mm_movelh_ps, _mm_unpackhi_ps, _mm_unpacklo_ps};
    // SAFETY: SSE is part of the x86-64 baseline; these are register-only shuffles.
    unsafe {
        let t0 = _mm_unpacklo_ps(a, b); // a0 b0 a1 b1
        let t1 = _mm_unpacklo_ps(c, e); // c0 e0 c1 e1
        let t2 = _mm_unpackhi_ps(a, b); // a2 b2 a3 b3
        let t3 = _mm_unpackhi_ps(c, e); // c2 e2 c3 e3
        [_mm_movelh_ps(t0, t1), _mm_movehl_ps(t1, t0), _mm_movelh_ps(t2, t3), _mm_movehl_ps(t3, t2)]
    }
}

/// `G` groups of four lines (`4G` lines): forward elimination into `buf` (element `i` of
/// the lines at `buf[i·4G..]`), then back substitution out of it into `dst`.
///
/// # Safety
///
/// As [`solve_tile`], for `4G` lines.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn groups_kernel<const G: usize, const ADD: bool>(
    src: *const f32,
    dst: *mut f32,
    nx: usize,
    co: &LineCoefficients,
    affine: bool,
    buf: &mut [f32],
) {
    use std::arch::x86_64::{
        __m128, _mm_add_ps, _mm_loadu_ps, _mm_mul_ps, _mm_set_ps, _mm_set1_ps, _mm_setzero_ps, _mm_storeu_ps,
        _mm_sub_ps,
    };
    let w = G * LANES;
    let n = nx;
    assert!(buf.len() >= w * n && co.lower.len() == n && co.inv.len() == n && co.upper.len() == n);
    let b = buf.as_mut_ptr();
    let (lo, hi) = if affine { (co.rhs_lo, co.rhs_hi) } else { (None, None) };
    let full = n / LANES * LANES;
    // SAFETY: every src/dst access is line l < 4G, element i < n, within the caller's
    // tiles; every buf access is below w·n, asserted above; SSE is always present.
    unsafe {
        let forward = |x: __m128, i: usize, prev: __m128| forward_step(x, i, prev, co, lo, hi);
        let mut prev = [_mm_setzero_ps(); G];
        for j in (0..full).step_by(LANES) {
            for (g, p) in prev.iter_mut().enumerate() {
                let s = src.add(g * LANES * n + j);
                let t = transpose4(
                    _mm_loadu_ps(s),
                    _mm_loadu_ps(s.add(n)),
                    _mm_loadu_ps(s.add(2 * n)),
                    _mm_loadu_ps(s.add(3 * n)),
                );
                for (m, &x) in t.iter().enumerate() {
                    *p = forward(x, j + m, *p);
                    _mm_storeu_ps(b.add((j + m) * w + g * LANES), *p);
                }
            }
        }
        for i in full..n {
            for (g, p) in prev.iter_mut().enumerate() {
                let s = src.add(g * LANES * n + i);
                let x = _mm_set_ps(*s.add(3 * n), *s.add(2 * n), *s.add(n), *s);
                *p = forward(x, i, *p);
                _mm_storeu_ps(b.add(i * w + g * LANES), *p);
            }
        }
        // Back substitution: the last element is final; the partial block, through buf.
        let mut next = prev;
        for i in (full..n - 1).rev() {
            let u = _mm_set1_ps(co.upper[i]);
            for (g, q) in next.iter_mut().enumerate() {
                let p = b.add(i * w + g * LANES);
                *q = _mm_sub_ps(_mm_loadu_ps(p), _mm_mul_ps(u, *q));
                _mm_storeu_ps(p, *q);
            }
        }
        for i in full..n {
            for l in 0..w {
                let v = *b.add(i * w + l);
                let o = dst.add(l * n + i);
                if ADD { *o += v } else { *o = v }
            }
        }
        for j in (0..full).step_by(LANES).rev() {
            for (g, q) in next.iter_mut().enumerate() {
                let mut r = [_mm_setzero_ps(); LANES];
                for (m, rm) in r.iter_mut().enumerate().rev() {
                    let i = j + m;
                    *rm = _mm_loadu_ps(b.add(i * w + g * LANES));
                    if i < n - 1 {
                        *rm = _mm_sub_ps(*rm, _mm_mul_ps(_mm_set1_ps(co.upper[i]), *q));
                    }
                    *q = *rm;
                }
                let t = transpose4(r[0], r[1], r[2], r[3]);
                for (k, &v) in t.iter().enumerate() {
                    let o = dst.add((g * LANES + k) * n + j);
                    if ADD { _mm_storeu_ps(o, _mm_add_ps(_mm_loadu_ps(o), v)) } else { _mm_storeu_ps(o, v) }
                }
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::Boundary;
    use crate::implicit::solve_line;

    /// Every tile shape (full and partial groups, leftover lines, lengths that are and
    /// are not multiples of four), every non-periodic face pair, in place and added:
    /// bit-identical to the reference solve of each line.
    #[test]
    fn tiles_are_bit_identical_to_the_reference_line_solve() {
        let fixed = Boundary::Fixed { value: 1.5 };
        for (lo, hi) in [
            (Boundary::ZeroFlux, Boundary::ZeroFlux),
            (fixed, Boundary::ZeroFlux),
            (Boundary::ZeroFlux, fixed),
            (fixed, fixed),
        ] {
            for nx in [4, 5, 7, 8, 13, 100] {
                let co = LineCoefficients::new(nx, 2.7, 0.02, lo, hi);
                assert!(supported(&co));
                for lines in [1, 3, 4, 5, 11, 29, 32] {
                    let src: Vec<f32> = (0..lines * nx).map(|i| ((i * 7919) % 1009) as f32 * 0.013 - 1.0).collect();
                    let mut buf = vec![f32::NAN; crate::implicit::X_TILE * nx];
                    for affine in [true, false] {
                        let mut want = src.clone();
                        for line in want.chunks_exact_mut(nx) {
                            crate::implicit::solve_line_affine(line, &co, affine);
                        }
                        if affine {
                            let mut r = src.clone();
                            r.chunks_exact_mut(nx).for_each(|l| solve_line(l, &co));
                            assert_eq!(r, want);
                        }
                        let mut inplace = src.clone();
                        let p = inplace.as_mut_ptr();
                        // SAFETY: one tile of lines·nx values, in place.
                        unsafe { solve_tile::<false>(p, p, lines, nx, &co, affine, &mut buf) };
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&inplace),
                            bits(&want),
                            "nx {nx}, lines {lines}, {lo:?}/{hi:?}, affine {affine}"
                        );
                        let base: Vec<f32> = (0..lines * nx).map(|i| (i % 17) as f32 * 0.5).collect();
                        let mut added = base.clone();
                        // SAFETY: distinct source and destination tiles of lines·nx values.
                        unsafe {
                            solve_tile::<true>(src.as_ptr(), added.as_mut_ptr(), lines, nx, &co, affine, &mut buf)
                        };
                        let sum: Vec<f32> = base.iter().zip(&want).map(|(a, b)| a + b).collect();
                        assert_eq!(bits(&added), bits(&sum));
                    }
                }
            }
        }
    }
}
