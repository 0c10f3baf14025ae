//! Hand-run speed check of the implicit schemes on the BioFVM benchmark workload: 100³
//! voxels × 10 ligands, Δx = 10 µm, Δt = 0.01 min, D = 1e5 µm²/min, k = 0.1 /min.
//!
//! `cargo run --release -p explant-field --example lod_speed [threads...] [--rounds R]
//! [--steps K]` alternates LOD (`implicit`) and Douglas ADI (`adi`) for R rounds (default
//! 15) per thread count (default 1 and 2), each round timing K consecutive steps of each
//! scheme (default 1), and prints, per scheme, the fastest and the median ns per
//! voxel-ligand-step, and the median over rounds of the per-round ratio ADI / LOD. On a
//! shared machine the minimum and the paired ratio are the stable figures.
//!
//! With K = 1 every timed step starts with its field out of cache (the other scheme and
//! the streaming pass ran in between, on fields of their own); with K = 10 the steps run
//! back to back as a simulation runs them and as BioFVM's anchor driver times its LOD
//! (`scripts/anchors/biofvm_lod.sh`: rounds of 10 steps), so K = 10 is the like-for-like
//! figure against BioFVM. `--lod-only` times LOD alone, round after round on one field,
//! with no other work in between: exactly how the BioFVM driver times its solver.
//!
//! Each round also times one streaming pass over a field of the same size (every value
//! read, scaled and written back, in parallel chunks): the memory-bandwidth floor of one
//! pass over the field. A scheme's time divided by it is the number of such passes the
//! step costs; LOD with the x and y sweeps fused per plane makes two passes (the x–y
//! planes, then the z columns), so its floor is two.

use std::time::Instant;

use rayon::prelude::*;

use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, Scheme};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(15usize);
    let steps = args
        .iter()
        .position(|a| a == "--steps")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let lod_only = args.iter().any(|a| a == "--lod-only");
    let threads: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || (args[i - 1] != "--rounds" && args[i - 1] != "--steps"))
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let threads = if threads.is_empty() { vec![1, 2] } else { threads };
    let n = 100;
    let channels = 10;
    let grid = Grid { nx: n, ny: n, nz: n, dx: 10.0, origin: [0.0; 3] };
    let params = vec![ChannelParams::new(1.0e5, 0.1); channels];
    let dt = 0.01;
    let per_step = (grid.voxels() * channels) as f64;
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("thread pool");
        pool.install(|| {
            let schemes: &[Scheme] = if lod_only { &[Scheme::Implicit] } else { &[Scheme::Implicit, Scheme::Adi] };
            let mut fields: Vec<Field> = schemes
                .iter()
                .map(|_| {
                    let mut f = Field::zeros(grid, channels);
                    for (i, v) in f.data.iter_mut().enumerate() {
                        *v = ((i * 7919) % 1000) as f32 * 1e-3;
                    }
                    f
                })
                .collect();
            let mut solvers: Vec<CpuDiffusion> = schemes.iter().map(|&s| CpuDiffusion::with_scheme(s)).collect();
            for (s, f) in solvers.iter_mut().zip(&mut fields) {
                s.step(f, &params, dt).expect("step"); // warm-up, builds the caches
            }
            let mut times = vec![Vec::new(); schemes.len()];
            let mut stream = Field::zeros(grid, channels);
            let mut passes = Vec::new();
            for _ in 0..rounds {
                for (k, (s, f)) in solvers.iter_mut().zip(&mut fields).enumerate() {
                    let start = Instant::now();
                    for _ in 0..steps {
                        s.step(f, &params, dt).expect("step");
                    }
                    times[k].push(start.elapsed().as_secs_f64() * 1e9 / per_step / steps as f64);
                }
                if lod_only {
                    continue;
                }
                let start = Instant::now();
                stream.data.par_chunks_mut(1 << 16).for_each(|c| c.iter_mut().for_each(|v| *v = *v * 0.999 + 1e-6));
                passes.push(start.elapsed().as_secs_f64() * 1e9 / per_step);
            }
            if lod_only {
                let min = times[0].iter().copied().fold(f64::INFINITY, f64::min);
                let med = median(&mut times[0].clone());
                println!(
                    "Implicit alone, {t} thread(s): fastest {min:.2}, median {med:.2} ns per voxel-ligand-step \
                     ({rounds} rounds of {steps} step(s), back to back)"
                );
                return;
            }
            let mut ratios: Vec<f64> = times[1].iter().zip(&times[0]).map(|(a, l)| a / l).collect();
            for (k, scheme) in schemes.iter().enumerate() {
                let min = times[k].iter().copied().fold(f64::INFINITY, f64::min);
                let med = median(&mut times[k].clone());
                println!(
                    "{scheme:?}, {t} thread(s): fastest {min:.2}, median {med:.2} ns per voxel-ligand-step \
                     ({rounds} rounds of {steps} step(s))"
                );
            }
            println!("ADI / LOD, {t} thread(s): median of per-round ratios {:.2}", median(&mut ratios));
            let floor = passes.iter().copied().fold(f64::INFINITY, f64::min);
            let mut in_passes: Vec<f64> = times[0].iter().zip(&passes).map(|(l, p)| l / p).collect();
            println!(
                "one streaming pass (read + write), {t} thread(s): fastest {floor:.2}, median {:.2} ns per value \
                 ({:.1} GB/s); LOD costs a median {:.2} passes per step",
                median(&mut passes.clone()),
                8.0 / floor,
                median(&mut in_passes)
            );
        });
    }
}
