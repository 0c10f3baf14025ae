//! Accuracy at BioFVM's benchmark resolution: Δx = 10 µm, Δt = 0.01 min, D = 1e5 µm²/min,
//! k = 0.1 /min on a 100³ grid. A Gaussian of initial width σ₀ = 60 µm at the centre is
//! advanced 10 steps (0.1 min) and compared with the exact solution
//! `(σ₀²/σ²)^{3/2} · exp(−r²/(2σ²)) · exp(−k t)`, `σ² = σ₀² + 2 D t`, by relative L2 error
//! (the domain edge is 3.3 σ away at the end, so the walls contribute ~1e-4 at most).
//!
//! `cargo run --release -p explant-field --example biofvm_accuracy`

use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, Scheme};

fn main() {
    let n = 100;
    let grid = Grid { nx: n, ny: n, nz: n, dx: 10.0, origin: [0.0; 3] };
    let (d, k, dt, steps) = (1.0e5f64, 0.1f64, 0.01f32, 10);
    let s0 = 60.0f64;
    let centre = 500.0f64;
    let exact = |t: f64, p: [f32; 3]| {
        let s2 = s0 * s0 + 2.0 * d * t;
        let r2: f64 = p.iter().map(|&x| (f64::from(x) - centre).powi(2)).sum();
        (s0 * s0 / s2).powf(1.5) * (-r2 / (2.0 * s2)).exp() * (-k * t).exp()
    };
    let params = [ChannelParams::new(d as f32, k as f32)];
    for scheme in [Scheme::Implicit, Scheme::Explicit] {
        let mut f = Field::zeros(grid, 1);
        for z in 0..n {
            for y in 0..n {
                for x in 0..n {
                    f.data[(z * n + y) * n + x] = exact(0.0, grid.centre(x, y, z)) as f32;
                }
            }
        }
        let mut solver = CpuDiffusion::with_scheme(scheme);
        for _ in 0..steps {
            solver.step(&mut f, &params, dt).expect("step");
        }
        let t = f64::from(dt) * steps as f64;
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for z in 0..n {
            for y in 0..n {
                for x in 0..n {
                    let e = exact(t, grid.centre(x, y, z));
                    num += (f64::from(f.data[(z * n + y) * n + x]) - e).powi(2);
                    den += e * e;
                }
            }
        }
        println!("{scheme:?}: relative L2 error {:.3e} after {steps} steps of {dt} min", (num / den).sqrt());
    }
}
