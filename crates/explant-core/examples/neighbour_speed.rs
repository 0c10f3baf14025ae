//! Build and query time of the two neighbour searches (cell list vs `rstar` R-tree)
//! on tissue-like random cell sets, 2D and 3D, 10^4 to 10^6 cells.
//!
//! `cargo run --release -p explant-core --example neighbour_speed [-- REPS]`
//!
//! Cells are uniform in a square or cube sized so that a cell has about 10 others
//! within the radius (in random order, as after divisions and motion have mixed the
//! batch). Each method runs REPS times (default 5; 3 at 10^6 cells), alternating, and
//! the table gives medians in ns per cell. A last section runs the default scene
//! (1500 cells, teacher model) and times both methods on its cells, plus the `sense`
//! stage per tick.

use std::path::Path;
use std::time::{Duration, Instant};

use explant_core::neighbours::{CellList, neighbours_in_rtree, rtree};
use explant_core::{Simulation, Stage, Teacher};
use explant_field::CpuDiffusion;
use explant_scene::LoadedScene;
use glam::Vec3;

const RADIUS: f32 = 12.0;
const NEIGHBOURS: f64 = 10.0;

fn cells(n: usize, dims: usize, seed: u64) -> Vec<Vec3> {
    let ball = if dims == 2 {
        std::f64::consts::PI * f64::from(RADIUS).powi(2)
    } else {
        4.0 / 3.0 * std::f64::consts::PI * f64::from(RADIUS).powi(3)
    };
    let side = (n as f64 * ball / NEIGHBOURS).powf(1.0 / dims as f64) as f32;
    let mut s = seed;
    let mut u = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * side
    };
    (0..n).map(|_| Vec3::new(u(), u(), if dims == 3 { u() } else { 0.0 })).collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median build + query time of both methods, ns per cell: (cell list, rstar).
fn time_both(p: &[Vec3], radius: f32, reps: usize) -> (f64, f64) {
    let (mut c, mut r) = (vec![], vec![]);
    let (mut o, mut nb) = (vec![], vec![]);
    for _ in 0..reps {
        let t = Instant::now();
        CellList::new(p, radius).neighbours_into(&mut o, &mut nb).expect("fewer than 2^32 pairs");
        c.push(t.elapsed());
        let t = Instant::now();
        neighbours_in_rtree(&rtree(p), p, radius, &mut o, &mut nb);
        r.push(t.elapsed());
    }
    let ns = |d: Duration| d.as_secs_f64() * 1e9 / p.len() as f64;
    (ns(median(c)), ns(median(r)))
}

fn default_scene() {
    let text = include_str!("../../../scenes/default.toml").replace("kind = \"torchscript\"", "kind = \"teacher\"");
    let scene = LoadedScene::from_str(&text, Path::new("default.toml")).expect("the default scene loads").scene;
    let mut sim = Simulation::new(&scene, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(&scene)))
        .expect("the default scene builds");
    let ticks = 200;
    for _ in 0..ticks {
        sim.step().expect("a tick");
    }
    let p: Vec<Vec3> = sim.cells().positions.iter().map(|&a| Vec3::from_array(a)).collect();
    let (c, r) = time_both(&p, scene.contact.radius, 201);
    let times = sim.stage_times();
    let total: Duration = times.iter().map(|t| t.1).sum();
    let sense = times.iter().find(|t| t.0 == Stage::Sense).map(|t| t.1).unwrap_or_default();
    println!();
    println!("default scene, {} cells, contact radius {} µm:", p.len(), scene.contact.radius);
    println!("  cell list {c:.0} ns/cell, rstar {r:.0} ns/cell (median of 201), rstar / cell list {:.2}×", r / c);
    println!(
        "  sense stage (cell list) {:.3} ms/tick, {:.1} % of the tick ({ticks} ticks)",
        sense.as_secs_f64() * 1e3 / ticks as f64,
        100.0 * sense.as_secs_f64() / total.as_secs_f64()
    );
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    println!("threads: {}, radius {RADIUS} µm, ~{NEIGHBOURS} neighbours per cell", rayon::current_num_threads());
    println!(
        "| cells | dims | mean nbrs | cell list build | cell list query | cell list total | rstar build | rstar query | rstar total | rstar / cell list |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in [10_000, 100_000, 1_000_000] {
        for dims in [2, 3] {
            let p = cells(n, dims, 42 + n as u64 + dims as u64);
            let reps = if n >= 1_000_000 { reps.min(3) } else { reps };
            let (mut cb, mut cq, mut rb, mut rq) = (vec![], vec![], vec![], vec![]);
            let (mut co, mut cn, mut ro, mut rn) = (vec![], vec![], vec![], vec![]);
            for _ in 0..reps {
                let t = Instant::now();
                let list = CellList::new(&p, RADIUS);
                cb.push(t.elapsed());
                let t = Instant::now();
                list.neighbours_into(&mut co, &mut cn).expect("fewer than 2^32 pairs");
                cq.push(t.elapsed());
                drop(list);

                let t = Instant::now();
                let tree = rtree(&p);
                rb.push(t.elapsed());
                let t = Instant::now();
                neighbours_in_rtree(&tree, &p, RADIUS, &mut ro, &mut rn);
                rq.push(t.elapsed());
                drop(tree);
                assert!(co == ro && cn == rn, "the two methods disagree");
            }
            let ns = |d: Duration| d.as_secs_f64() * 1e9 / n as f64;
            let (cb, cq, rb, rq) = (median(cb), median(cq), median(rb), median(rq));
            println!(
                "| {n} | {dims}D | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× |",
                cn.len() as f64 / n as f64,
                ns(cb),
                ns(cq),
                ns(cb + cq),
                ns(rb),
                ns(rq),
                ns(rb + rq),
                (rb + rq).as_secs_f64() / (cb + cq).as_secs_f64()
            );
        }
    }
    default_scene();
}
