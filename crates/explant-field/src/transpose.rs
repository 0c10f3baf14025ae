//! The tile transposes of the x sweep ([`crate::implicit`]): x lines are contiguous, so
//! a tile of them is transposed into rows (element `i` of every line side by side) for
//! the elimination to run across lines, and transposed back. Done element by element,
//! the two transposes cost more than the solve itself (about 2.7 of the x sweep's
//! 3.2 ns per voxel on the dev machine); on x86-64 they move 4 × 4 blocks through SSE
//! registers (SSE is part of the x86-64 baseline, so no feature detection is needed).
//! Pure data movement (and, for the add, the same single IEEE addition per element as
//! the scalar code), so the results are bit-identical to the element-by-element loop.
#![allow(unsafe_code)]

/// `dst[c·rows + r] = src[r·cols + c]` for every `r < rows`, `c < cols` (with `ADD`,
/// `dst[…] += src[…]` instead).
///
/// # Panics
///
/// If `src` or `dst` holds fewer than `rows · cols` values.
pub(crate) fn transpose<const ADD: bool>(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols, "transpose: slices shorter than the tile");
    #[cfg(target_arch = "x86_64")]
    let (r4, c4) = (rows / 4 * 4, cols / 4 * 4);
    #[cfg(not(target_arch = "x86_64"))]
    let (r4, c4) = (0usize, 0usize);
    #[cfg(target_arch = "x86_64")]
    for r in (0..r4).step_by(4) {
        for c in (0..c4).step_by(4) {
            // SAFETY: r + 3 < rows and c + 3 < cols, so the four loads read
            // src[(r + k)·cols + c .. + 4] and the four stores touch dst[(c + k)·rows + r
            // .. + 4] for k < 4, all below rows·cols, which the assert bounds by both
            // lengths. Unaligned loads and stores are used, and SSE is always present
            // on x86-64.
            unsafe { block4::<ADD>(src.as_ptr().add(r * cols + c), cols, dst.as_mut_ptr().add(c * rows + r), rows) }
        }
    }
    for r in 0..rows {
        let first = if r < r4 { c4 } else { 0 };
        for c in first..cols {
            let v = src[r * cols + c];
            let d = &mut dst[c * rows + r];
            if ADD { *d += v } else { *d = v }
        }
    }
}

/// Transpose the 4 × 4 block at `s` (row stride `ss`) into `d` (row stride `ds`).
///
/// # Safety
///
/// `s + k·ss + j` and `d + k·ds + j` must be valid for reads (and, for `d`, writes) for
/// every `k, j < 4`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block4<const ADD: bool>(s: *const f32, ss: usize, d: *mut f32, ds: usize) {
    use std::arch::x86_64::{
        __m128, _mm_add_ps, _mm_loadu_ps, _mm_movehl_ps, _mm_movelh_ps, _mm_storeu_ps, _mm_unpackhi_ps, _mm_unpacklo_ps,
    };
    // SAFETY: the caller's contract covers every pointer below.
    unsafe {
        let a = _mm_loadu_ps(s);
        let b = _mm_loadu_ps(s.add(ss));
        let c = _mm_loadu_ps(s.add(2 * ss));
        let e = _mm_loadu_ps(s.add(3 * ss));
        let t0 = _mm_unpacklo_ps(a, b); // a0 b0 a1 b1
        let t1 = _mm_unpacklo_ps(c, e); // c0 e0 c1 e1
        let t2 = _mm_unpackhi_ps(a, b); // a2 b2 a3 b3
        let t3 = _mm_unpackhi_ps(c, e); // c2 e2 c3 e3
        let out: [__m128; 4] = [
            _mm_movelh_ps(t0, t1), // a0 b0 c0 e0
            _mm_movehl_ps(t1, t0), // a1 b1 c1 e1
            _mm_movelh_ps(t2, t3), // a2 b2 c2 e2
            _mm_movehl_ps(t3, t2), // a3 b3 c3 e3
        ];
        for (k, o) in out.into_iter().enumerate() {
            let p = d.add(k * ds);
            if ADD { _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), o)) } else { _mm_storeu_ps(p, o) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transposes_and_adds_exactly_for_every_shape() {
        for rows in [1, 3, 4, 5, 8, 32, 33] {
            for cols in [1, 2, 4, 7, 12, 100, 101] {
                let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.37 - 5.0).collect();
                let mut dst = vec![f32::NAN; rows * cols];
                transpose::<false>(&src, rows, cols, &mut dst);
                let mut sum: Vec<f32> = (0..rows * cols).map(|i| 0.1 * i as f32).collect();
                let before = sum.clone();
                transpose::<true>(&src, rows, cols, &mut sum);
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(
                            dst[c * rows + r].to_bits(),
                            src[r * cols + c].to_bits(),
                            "{rows}x{cols} at {r},{c}"
                        );
                        let want = before[c * rows + r] + src[r * cols + c];
                        assert_eq!(sum[c * rows + r].to_bits(), want.to_bits());
                    }
                }
            }
        }
    }
}
