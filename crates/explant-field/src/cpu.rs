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
/// the voxel at the opposite end (`Periodic`). Parallel over rows ([`stencil_row`]).
pub(crate) fn stencil_pass(g: &Grid, src: &[f32], dst: &mut [f32], b: &Faces, f: impl Fn(f32, f32) -> f32 + Sync) {
    dst.par_chunks_mut(g.nx)
        .enumerate()
        .for_each_init(|| vec![0.0f32; 4 * g.nx], |scratch, (row, out)| stencil_row(g, src, row, out, b, scratch, &f));
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
    out[nx - 1] = voxel(nx - 1, cur[nx - 2], beyond(b[1], cur[nx - 1], cur[0]));
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
}
