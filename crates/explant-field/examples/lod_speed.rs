//! Hand-run speed check of the schemes (LOD and ADI alternated twice, then explicit) on the BioFVM benchmark workload: 100³ voxels ×
//! 10 ligands, Δx = 10 µm, Δt = 0.01 min, D = 1e5 µm²/min, k = 0.1 /min.
//!
//! `cargo run --release -p explant-field --example lod_speed [threads...] [--explicit-steps N]`
//! prints ns per voxel-ligand-step for each scheme and thread count (default 1 and 2).

use std::time::Instant;

use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, Scheme};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let threads = if threads.is_empty() { vec![1, 2] } else { threads };
    let n = 100;
    let channels = 10;
    let grid = Grid { nx: n, ny: n, nz: n, dx: 10.0, origin: [0.0; 3] };
    let params = vec![ChannelParams::new(1.0e5, 0.1); channels];
    let dt = 0.01;
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("thread pool");
        pool.install(|| {
            for (scheme, steps) in [(Scheme::Implicit, 20), (Scheme::Adi, 20), (Scheme::Implicit, 20), (Scheme::Adi, 20), (Scheme::Explicit, 2)] {
                let mut f = Field::zeros(grid, channels);
                for (i, v) in f.data.iter_mut().enumerate() {
                    *v = ((i * 7919) % 1000) as f32 * 1e-3;
                }
                let mut s = CpuDiffusion::with_scheme(scheme);
                s.step(&mut f, &params, dt).expect("step"); // warm-up, builds the cache
                let start = Instant::now();
                for _ in 0..steps {
                    s.step(&mut f, &params, dt).expect("step");
                }
                let secs = start.elapsed().as_secs_f64();
                let ns = secs * 1e9 / (steps as f64 * grid.voxels() as f64 * channels as f64);
                println!(
                    "{scheme:?}, {t} thread(s): {ns:.2} ns per voxel-ligand-step ({:.1} ms per step, {})",
                    secs * 1e3 / steps as f64,
                    s.name()
                );
            }
        });
    }
}
