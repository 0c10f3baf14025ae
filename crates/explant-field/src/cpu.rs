//! The rayon CPU path, both schemes.
//!
//! Explicit: parallel over rows of one channel at a time; every voxel's result depends
//! only on the previous buffer. Implicit: see [`crate::implicit`]; lines are independent
//! and each gets the same arithmetic whatever the chunking. Either way the output is
//! bit-identical for any thread count.

use rayon::prelude::*;

use crate::adi::AdiCache;
use crate::implicit::LodCache;
use crate::{
    Boundary, ChannelParams, DiffusionBackend, Faces, Field, FieldError, Grid, Scheme, StepInputs, stencil_update,
    substeps,
};

/// Diffusion–decay on the CPU with rayon, with the explicit or the implicit scheme.
#[derive(Debug, Default)]
pub struct CpuDiffusion {
    scheme: Scheme,
    scratch: Vec<f32>,
    lod: LodCache,
    adi: AdiCache,
}

impl CpuDiffusion {
    /// A new explicit solver; scratch memory is allocated on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new solver with the given scheme. The implicit one caches its tridiagonal
    /// coefficients and rebuilds them only when the grid, the parameters or `dt` change.
    pub fn with_scheme(scheme: Scheme) -> Self {
        Self { scheme, ..Self::default() }
    }
}

impl DiffusionBackend for CpuDiffusion {
    fn name(&self) -> String {
        format!("cpu ({}, rayon, {} threads)", self.scheme.name(), rayon::current_num_threads())
    }

    fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn step(&mut self, field: &mut Field, params: &[ChannelParams], dt: f32) -> Result<(), FieldError> {
        self.step_with(field, params, dt, StepInputs::default())
    }

    fn step_with(
        &mut self,
        field: &mut Field,
        params: &[ChannelParams],
        dt: f32,
        inputs: StepInputs<'_>,
    ) -> Result<(), FieldError> {
        if field.channels != params.len() {
            return Err(FieldError::ChannelMismatch { field: field.channels, params: params.len() });
        }
        if self.scheme == Scheme::Adi {
            crate::validate_adi(field, params, dt, &inputs)?;
            self.adi.step(&field.grid, &mut field.data, params, dt, inputs.added, inputs.restart);
            return Ok(());
        }
        if self.scheme == Scheme::Implicit {
            crate::validate(&field.grid, params, dt)?;
            self.lod.step(&field.grid, &mut field.data, params, dt);
            return Ok(());
        }
        let plan = substeps(&field.grid, params, dt)?;
        let g = field.grid;
        let voxels = g.voxels();
        self.scratch.resize(voxels, 0.0);
        for (c, p) in params.iter().enumerate() {
            let a = p.diffusion * plan.dt / (g.dx * g.dx);
            let kdt = p.decay * plan.dt;
            let chan = &mut field.data[c * voxels..(c + 1) * voxels];
            for _ in 0..plan.count {
                step_channel(&g, chan, &mut self.scratch, a, kdt, &p.boundary);
                chan.copy_from_slice(&self.scratch);
            }
        }
        Ok(())
    }
}

/// The neighbour beyond an x face of a voxel with value `c`; `wrap` is the voxel at the
/// other end of the line.
#[inline(always)]
fn beyond(b: Boundary, c: f32, wrap: f32) -> f32 {
    match b {
        Boundary::ZeroFlux => c,
        Boundary::Fixed { value } => 2.0 * value - c,
        Boundary::Periodic => wrap,
    }
}

/// One substep of one channel from `src` into `dst`.
pub(crate) fn step_channel(g: &Grid, src: &[f32], dst: &mut [f32], a: f32, kdt: f32, b: &Faces) {
    let faces = 2.0 * g.dims() as f32;
    stencil_pass(g, src, dst, b, |c, sum| stencil_update(c, sum, faces, a, kdt));
}

/// `dst[v] = f(src[v], Σ neighbours of v)` for every voxel, the neighbour sum taken as
/// `xm + xp + ym + yp` (then `+ zm + zp` in 3D), in that order, with each face's stand-in
/// beyond the grid: the voxel itself (`ZeroFlux`), the ghost `2·value − c` (`Fixed`) or
/// the voxel at the opposite end (`Periodic`). Parallel over runs of [`STENCIL_RUN`]
/// values' worth of whole rows ([`stencil_rows`]).
pub(crate) fn stencil_pass(g: &Grid, src: &[f32], dst: &mut [f32], b: &Faces, f: impl Fn(f32, f32) -> f32 + Sync) {
    let rows = (STENCIL_RUN / g.nx).max(1);
    dst.par_chunks_mut(rows * g.nx).enumerate().for_each_init(
        || vec![0.0f32; 4 * g.nx],
        |scratch, (k, out)| stencil_rows(g, src, k * rows, out, b, scratch, &f),
    );
}

/// Values per parallel piece of [`stencil_pass`].
const STENCIL_RUN: usize = 2048;

/// [`stencil_pass`] for the consecutive x rows `first..` of `src` that `out` holds (a
/// whole number of rows), the same arithmetic on every voxel as [`stencil_row`] row by
/// row. Rows away from the y and z faces are done as one flat run (their y and z
/// neighbours are the run shifted by a row or a plane, their x neighbours the run
/// shifted by one, right everywhere but at each row's two ends, which are then redone),
/// so a row costs no set-up of its own; rows on a y or z face go through
/// [`stencil_row`].
pub(crate) fn stencil_rows(
    g: &Grid,
    src: &[f32],
    first: usize,
    out: &mut [f32],
    b: &Faces,
    scratch: &mut [f32],
    f: &impl Fn(f32, f32) -> f32,
) {
    let (nx, ny, nz) = (g.nx, g.ny, g.nz);
    let three_d = nz > 1;
    let count = out.len() / nx;
    let inner = |row: usize| {
        let (y, z) = (row % ny, row / ny);
        nx > 2 && y > 0 && y + 1 < ny && (!three_d || (z > 0 && z + 1 < nz))
    };
    let mut k = 0;
    while k < count {
        if !inner(first + k) {
            stencil_row(g, src, first + k, &mut out[k * nx..(k + 1) * nx], b, scratch, f);
            k += 1;
            continue;
        }
        let mut end = k + 1;
        while end < count && inner(first + end) {
            end += 1;
        }
        let (start, len) = ((first + k) * nx, (end - k) * nx);
        let plane = if three_d { nx * ny } else { 0 };
        let at = |offset: isize| &src[start.wrapping_add_signed(offset)..][..len];
        let rows = Interior {
            left: at(-1),
            mid: at(0),
            right: at(1),
            ym: at(-(nx as isize)),
            yp: at(nx as isize),
            zm: if three_d { at(-(plane as isize)) } else { at(0) },
            zp: if three_d { at(plane as isize) } else { at(0) },
        };
        let run = &mut out[k * nx..end * nx];
        interior_any(&rows, run, three_d, f);
        // Each row's two ends, with their x faces' stand-ins.
        for (r, row_out) in run.chunks_exact_mut(nx).enumerate() {
            let base = start + r * nx;
            let cur = &src[base..base + nx];
            // The order of `stencil_row`'s `voxel`: xm + xp + ym + yp (+ zm + zp).
            let edge = |x: usize, xm: f32, xp: f32| {
                let mut sum = xm + xp + src[base + x - nx] + src[base + x + nx];
                if three_d {
                    sum = sum + src[base + x - plane] + src[base + x + plane];
                }
                f(cur[x], sum)
            };
            row_out[0] = edge(0, beyond(b[0], cur[0], cur[nx - 1]), cur[1]);
            row_out[nx - 1] = edge(nx - 1, cur[nx - 2], beyond(b[1], cur[nx - 1], cur[0]));
        }
        k = end;
    }
}

/// [`stencil_pass`] for the x row `row` (`z·ny + y`) of `src` only, into `out` (`nx`
/// values). A row's y and z neighbours are whole rows (stand-ins written into
/// `scratch`, at least `4·nx` values), so the inner loop is a plain sweep over contiguous
/// slices.
#[inline]
pub(crate) fn stencil_row(
    g: &Grid,
    src: &[f32],
    row: usize,
    out: &mut [f32],
    b: &Faces,
    scratch: &mut [f32],
    f: &impl Fn(f32, f32) -> f32,
) {
    let (nx, ny, nz) = (g.nx, g.ny, g.nz);
    let three_d = nz > 1;
    let row_at = |r: usize| &src[r * nx..(r + 1) * nx];
    let (y, z) = (row % ny, row / ny);
    let cur = row_at(row);
    let mut spare = scratch.chunks_exact_mut(nx);
    // Row `row ± stride` along an axis of `n` rows at `pos`, or the face's stand-in.
    let mut across = |pos: usize, n: usize, stride: usize, up: bool, face: Boundary| -> &[f32] {
        let inside = if up { pos + 1 < n } else { pos > 0 };
        if inside {
            return row_at(if up { row + stride } else { row - stride });
        }
        match face {
            Boundary::ZeroFlux => cur,
            Boundary::Periodic => row_at(if up { row + stride - n * stride } else { row + (n - 1) * stride }),
            Boundary::Fixed { value } => {
                let ghost = spare.next().expect("four scratch rows for four faces");
                for (gv, &c) in ghost.iter_mut().zip(cur) {
                    *gv = 2.0 * value - c;
                }
                ghost
            }
        }
    };
    let ym = across(y, ny, 1, false, b[2]);
    let yp = across(y, ny, 1, true, b[3]);
    let (zm, zp) = if three_d { (across(z, nz, ny, false, b[4]), across(z, nz, ny, true, b[5])) } else { (cur, cur) };
    let voxel = |x: usize, xm: f32, xp: f32| -> f32 {
        let mut sum = xm + xp + ym[x] + yp[x];
        if three_d {
            sum = sum + zm[x] + zp[x];
        }
        f(cur[x], sum)
    };
    if nx == 1 {
        let c = cur[0];
        out[0] = voxel(0, beyond(b[0], c, c), beyond(b[1], c, c));
        return;
    }
    out[0] = voxel(0, beyond(b[0], cur[0], cur[nx - 1]), cur[1]);
    // The interior as slices of one length, so the loop carries no bounds checks and
    // vectorises; the sums keep the order of `voxel`.
    let m = nx - 2;
    let (left, mid, right) = (&cur[..m], &cur[1..=m], &cur[2..2 + m]);
    let (ym, yp, zm, zp) = (&ym[1..=m], &yp[1..=m], &zm[1..=m], &zp[1..=m]);
    let inner = &mut out[1..=m];
    interior_any(&Interior { left, mid, right, ym, yp, zm, zp }, inner, three_d, f);
    out[nx - 1] = voxel(nx - 1, cur[nx - 2], beyond(b[1], cur[nx - 1], cur[0]));
}

/// The interior voxels of one row of [`stencil_row`]: the row, its two x shifts and its
/// y and z neighbour rows, all of one length.
struct Interior<'a> {
    left: &'a [f32],
    mid: &'a [f32],
    right: &'a [f32],
    ym: &'a [f32],
    yp: &'a [f32],
    zm: &'a [f32],
    zp: &'a [f32],
}

/// `inner[i] = f(mid[i], Σ neighbours)` over the interior, the sum in [`stencil_row`]'s
/// order.
#[inline(always)]
fn interior(r: &Interior, inner: &mut [f32], three_d: bool, f: &impl Fn(f32, f32) -> f32) {
    let m = inner.len();
    let (left, mid, right) = (&r.left[..m], &r.mid[..m], &r.right[..m]);
    let (ym, yp, zm, zp) = (&r.ym[..m], &r.yp[..m], &r.zm[..m], &r.zp[..m]);
    if three_d {
        for i in 0..m {
            let sum = left[i] + right[i] + ym[i] + yp[i] + zm[i] + zp[i];
            inner[i] = f(mid[i], sum);
        }
    } else {
        for i in 0..m {
            let sum = left[i] + right[i] + ym[i] + yp[i];
            inner[i] = f(mid[i], sum);
        }
    }
}

/// [`interior`], through [`interior_avx2`] where the CPU has AVX2.
#[inline(always)]
fn interior_any(r: &Interior, inner: &mut [f32], three_d: bool, f: &impl Fn(f32, f32) -> f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            interior_avx2(r, inner, three_d, f)
        };
        return;
    }
    interior(r, inner, three_d, f);
}

/// [`interior`] compiled for AVX2 (eight lanes instead of SSE2's four). The same
/// operations on every voxel in the same order and no fused multiply-add, so the same
/// bits as the SSE2 build.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn interior_avx2(r: &Interior, inner: &mut [f32], three_d: bool, f: &impl Fn(f32, f32) -> f32) {
    interior(r, inner, three_d, f);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grid;

    fn grid(n: usize, nz: usize) -> Grid {
        Grid { nx: n, ny: n, nz, dx: 10.0, origin: [0.0; 3] }
    }

    #[test]
    fn mass_is_conserved_with_zero_flux_walls_and_no_decay() {
        let mut f = Field::zeros(grid(32, 1), 1);
        f.data[16 * 32 + 5] = 1000.0;
        let before = f.total(0);
        let mut s = CpuDiffusion::new();
        let p = [ChannelParams::new(1000.0, 0.0)];
        for _ in 0..200 {
            s.step(&mut f, &p, 0.1).unwrap();
        }
        let after = f.total(0);
        assert!(((after - before) / before).abs() < 1e-5, "{before} -> {after}");
        // And it actually spread: the source voxel lost most of its mass.
        assert!(f.data[16 * 32 + 5] < 100.0);
    }

    #[test]
    fn uniform_field_decays_exponentially() {
        let mut f = Field::zeros(grid(8, 8), 1);
        f.data.fill(2.0);
        let p = [ChannelParams::new(500.0, 0.05)];
        let mut s = CpuDiffusion::new();
        for _ in 0..100 {
            s.step(&mut f, &p, 0.1).unwrap();
        }
        // Forward Euler on dc/dt = -k c with the planned substep.
        let plan = substeps(&f.grid, &p, 0.1).unwrap();
        let expect = 2.0 * (1.0 - 0.05 * plan.dt as f64).powi((100 * plan.count) as i32);
        for &v in &f.data {
            assert!((f64::from(v) - expect).abs() < 1e-5 * expect, "{v} vs {expect}");
        }
        // ... which is within first-order error of the exact exponential.
        assert!((expect - 2.0 * (-0.5f64).exp()).abs() < 1e-2);
    }

    #[test]
    fn cosine_mode_decays_at_the_analytic_rate() {
        // 1 + cos(pi x / L) between zero-flux walls decays as exp(-D pi^2 t / L^2).
        let n = 64;
        let g = Grid { nx: n, ny: 1, nz: 1, dx: 5.0, origin: [0.0; 3] };
        let l = n as f64 * 5.0;
        let mut f = Field::zeros(g, 1);
        for x in 0..n {
            let xc = (x as f64 + 0.5) * 5.0;
            f.data[x] = (1.0 + (std::f64::consts::PI * xc / l).cos()) as f32;
        }
        let d = 100.0f64;
        let p = [ChannelParams::new(d as f32, 0.0)];
        let mut s = CpuDiffusion::new();
        let t = 50.0;
        for _ in 0..50 {
            s.step(&mut f, &p, 1.0).unwrap();
        }
        let amp = (-d * std::f64::consts::PI.powi(2) * t / (l * l)).exp();
        let mut max_err = 0.0f64;
        for x in 0..n {
            let xc = (x as f64 + 0.5) * 5.0;
            let exact = 1.0 + amp * (std::f64::consts::PI * xc / l).cos();
            max_err = max_err.max((f64::from(f.data[x]) - exact).abs());
        }
        assert!(max_err < 2e-3 * amp.max(0.1), "max error {max_err}, amplitude {amp}");
    }

    #[test]
    fn substeps_respect_the_stability_limit() {
        let g = grid(10, 1);
        let p = [ChannelParams::new(1.0e5, 0.1)];
        let plan = substeps(&g, &p, 0.01).unwrap();
        assert!(1.0e5 * plan.dt / 100.0 <= 0.9 / 4.0 + 1e-6);
        assert!((plan.dt * plan.count as f32 - 0.01).abs() < 1e-7);
        assert!(matches!(substeps(&g, &p, -1.0), Err(FieldError::BadTimeStep { .. })));
        let bad = [ChannelParams::new(-1.0, 0.0)];
        assert!(matches!(substeps(&g, &bad, 1.0), Err(FieldError::BadParameter { name: "diffusion", .. })));
    }

    #[test]
    fn result_is_identical_for_one_and_two_threads() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut f = Field::zeros(grid(40, 6), 2);
                for (i, v) in f.data.iter_mut().enumerate() {
                    *v = ((i * 7919) % 113) as f32 * 0.1;
                }
                let p = [ChannelParams::new(300.0, 0.01), ChannelParams::new(50.0, 0.2)];
                let mut s = CpuDiffusion::new();
                for _ in 0..20 {
                    s.step(&mut f, &p, 0.5).unwrap();
                }
                f.data
            })
        };
        let a = run(1);
        let b = run(2);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn runs_of_rows_give_the_bits_of_row_by_row() {
        // Every boundary kind on some face, 2D and 3D, narrow and wide rows; runs that
        // start and end anywhere (mid-plane, across planes, single rows).
        let fixed = Boundary::Fixed { value: 0.75 };
        let faces: [Faces; 3] = [
            [Boundary::ZeroFlux; 6],
            [fixed, Boundary::Periodic, Boundary::Periodic, fixed, Boundary::ZeroFlux, fixed],
            [Boundary::Periodic; 6],
        ];
        for (nx, ny, nz) in [(3, 4, 1), (13, 9, 1), (17, 6, 5), (40, 7, 4), (1, 5, 3), (2, 6, 4)] {
            let g = Grid { nx, ny, nz, dx: 2.0, origin: [0.0; 3] };
            let src: Vec<f32> = (0..g.voxels()).map(|i| ((i * 7919) % 113) as f32 * 0.37 - 3.0).collect();
            let f = |c: f32, sum: f32| 0.3 * (sum - 6.0 * c) - 0.01 * c;
            let rows = g.voxels() / nx;
            for b in &faces {
                let mut scratch = vec![0.0f32; 4 * nx];
                let mut want = vec![0.0f32; g.voxels()];
                for (row, out) in want.chunks_exact_mut(nx).enumerate() {
                    stencil_row(&g, &src, row, out, b, &mut scratch, &f);
                }
                for step in [1, 2, 3, 5, rows] {
                    let mut got = vec![f32::NAN; g.voxels()];
                    for (k, out) in got.chunks_mut(step * nx).enumerate() {
                        stencil_rows(&g, &src, k * step, out, b, &mut scratch, &f);
                    }
                    assert!(
                        got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{nx}x{ny}x{nz} {b:?} runs of {step}"
                    );
                }
                let mut pass = vec![f32::NAN; g.voxels()];
                stencil_pass(&g, &src, &mut pass, b, f);
                assert!(pass.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()));
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_interior_gives_the_bits_of_the_sse2_one() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        let n = 203;
        let v: Vec<Vec<f32>> =
            (0..7).map(|k| (0..n).map(|i| ((i * 7919 + k * 31) % 997) as f32 * 1.3e-3 - 0.2).collect()).collect();
        let r = Interior { left: &v[0], mid: &v[1], right: &v[2], ym: &v[3], yp: &v[4], zm: &v[5], zp: &v[6] };
        // The explicit substep's update and the ADI increment, each inlined into both
        // builds of the loop (static dispatch, so both vectorise as in the solver).
        fn check(r: &Interior, n: usize, f: impl Fn(f32, f32) -> f32) {
            for three_d in [false, true] {
                let (mut sse, mut avx) = (vec![0.0f32; n], vec![0.0f32; n]);
                interior(r, &mut sse, three_d, &f);
                #[allow(unsafe_code)]
                // SAFETY: AVX2 checked at the top of the test.
                unsafe {
                    interior_avx2(r, &mut avx, three_d, &f)
                };
                assert!(sse.iter().zip(&avx).all(|(x, y)| x.to_bits() == y.to_bits()), "3D {three_d}");
                assert!(sse.iter().filter(|x| **x != 0.0).count() > n / 2);
            }
        }
        check(&r, n, |c, sum| stencil_update(c, sum, 6.0, 0.1666, 0.003));
        check(&r, n, |u, sum| 1.25 * (sum - 6.0 * u) - 0.001 * u);
    }
}
