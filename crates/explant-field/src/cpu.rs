//! The rayon CPU path. Parallel over z-slabs/rows of one channel at a time; every
//! voxel's result depends only on the previous buffer, so the output is bit-identical
//! for any thread count.

use rayon::prelude::*;

use crate::{ChannelParams, DiffusionBackend, Field, FieldError, stencil_update, substeps};

/// Explicit diffusion–decay on the CPU with rayon.
#[derive(Debug, Default)]
pub struct CpuDiffusion {
    scratch: Vec<f32>,
}

impl CpuDiffusion {
    /// A new solver; scratch memory is allocated on first use.
    pub fn new() -> Self {
        Self::default()
    }
}

impl DiffusionBackend for CpuDiffusion {
    fn name(&self) -> String {
        format!("cpu (rayon, {} threads)", rayon::current_num_threads())
    }

    fn step(&mut self, field: &mut Field, params: &[ChannelParams], dt: f32) -> Result<(), FieldError> {
        if field.channels != params.len() {
            return Err(FieldError::ChannelMismatch { field: field.channels, params: params.len() });
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
                step_channel(&g, chan, &mut self.scratch, a, kdt);
                chan.copy_from_slice(&self.scratch);
            }
        }
        Ok(())
    }
}

/// One substep of one channel from `src` into `dst`.
pub(crate) fn step_channel(g: &crate::Grid, src: &[f32], dst: &mut [f32], a: f32, kdt: f32) {
    let (nx, ny, nz) = (g.nx, g.ny, g.nz);
    let faces = 2.0 * g.dims() as f32;
    dst.par_chunks_mut(nx).enumerate().for_each(|(row, out)| {
        let y = row % ny;
        let z = row / ny;
        let base = row * nx;
        for (x, o) in out.iter_mut().enumerate() {
            let i = base + x;
            let c = src[i];
            let xm = if x > 0 { src[i - 1] } else { c };
            let xp = if x + 1 < nx { src[i + 1] } else { c };
            let ym = if y > 0 { src[i - nx] } else { c };
            let yp = if y + 1 < ny { src[i + nx] } else { c };
            let mut sum = xm + xp + ym + yp;
            if nz > 1 {
                let zm = if z > 0 { src[i - nx * ny] } else { c };
                let zp = if z + 1 < nz { src[i + nx * ny] } else { c };
                sum = sum + zm + zp;
            }
            *o = stencil_update(c, sum, faces, a, kdt);
        }
    });
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
        let p = [ChannelParams { diffusion: 1000.0, decay: 0.0 }];
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
        let p = [ChannelParams { diffusion: 500.0, decay: 0.05 }];
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
        let p = [ChannelParams { diffusion: d as f32, decay: 0.0 }];
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
        let p = [ChannelParams { diffusion: 1.0e5, decay: 0.1 }];
        let plan = substeps(&g, &p, 0.01).unwrap();
        assert!(1.0e5 * plan.dt / 100.0 <= 0.9 / 4.0 + 1e-6);
        assert!((plan.dt * plan.count as f32 - 0.01).abs() < 1e-7);
        assert!(matches!(substeps(&g, &p, -1.0), Err(FieldError::BadTimeStep { .. })));
        let bad = [ChannelParams { diffusion: -1.0, decay: 0.0 }];
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
                let p =
                    [ChannelParams { diffusion: 300.0, decay: 0.01 }, ChannelParams { diffusion: 50.0, decay: 0.2 }];
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
