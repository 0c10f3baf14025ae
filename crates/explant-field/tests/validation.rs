//! Numerical validation of both diffusion schemes against analytic solutions (see
//! SCIENCE.md, "Numerical validation users expect"). Errors and observed orders are
//! printed with `eprintln!` (run with `--nocapture` to record them).
//!
//! Units are dimensionless here (D = 1, lengths in µm, times in minutes).

use std::f64::consts::PI;

use explant_field::{
    Boundary, ChannelParams, CpuDiffusion, DiffusionBackend, Field, FieldError, Grid, Scheme, StepInputs,
};

const SCHEMES: [Scheme; 3] = [Scheme::Explicit, Scheme::Implicit, Scheme::Adi];

/// Advance `f` to `t` in equal steps no longer than `dt`.
fn run(scheme: Scheme, f: &mut Field, params: &[ChannelParams], t: f64, dt: f64) {
    let steps = (t / dt).round().max(1.0) as usize;
    let dt = (t / steps as f64) as f32;
    let mut s = CpuDiffusion::with_scheme(scheme);
    for _ in 0..steps {
        s.step(f, params, dt).unwrap();
    }
}

/// A step length ∝ dx² for which the explicit scheme needs exactly one substep
/// (`a = 0.9·0.9 / (2·dim)`), and the implicit ones `a = 0.5`.
fn step_for(scheme: Scheme, h: f64, dims: usize) -> f64 {
    match scheme {
        Scheme::Explicit => 0.81 / (2.0 * dims as f64) * h * h,
        Scheme::Implicit | Scheme::Adi => 0.5 * h * h,
    }
}

/// Free-space heat kernel of total mass 1 in `d` dimensions, D = 1.
fn heat_kernel(d: i32, r2: f64, t: f64) -> f64 {
    (4.0 * PI * t).powf(-f64::from(d) / 2.0) * (-r2 / (4.0 * t)).exp()
}

/// Relative L2 error of `c` against `exact` evaluated at every voxel centre.
fn rel_l2(f: &Field, exact: impl Fn([f64; 3]) -> f64) -> f64 {
    let g = f.grid;
    let (mut num, mut den) = (0.0, 0.0);
    for z in 0..g.nz {
        for y in 0..g.ny {
            for x in 0..g.nx {
                let p = g.centre(x, y, z).map(f64::from);
                let e = exact(p);
                let c = f64::from(f.data[(z * g.ny + y) * g.nx + x]);
                num += (c - e) * (c - e);
                den += e * e;
            }
        }
    }
    (num / den).sqrt()
}

fn fill(f: &mut Field, value: impl Fn([f64; 3]) -> f64) {
    let g = f.grid;
    for z in 0..g.nz {
        for y in 0..g.ny {
            for x in 0..g.nx {
                f.data[(z * g.ny + y) * g.nx + x] = value(g.centre(x, y, z).map(f64::from)) as f32;
            }
        }
    }
}

/// The errors formatted for the record.
fn e(errs: &[f64]) -> String {
    errs.iter().map(|v| format!("{v:.3e}")).collect::<Vec<_>>().join(", ")
}

fn order(coarse: f64, fine: f64) -> f64 {
    (coarse / fine).log2()
}

/// A Gaussian started at `t0` (not a delta: the singular start would spoil the order)
/// spreading in a box six final widths wide, against the free-space solution at `t1`.
fn point_source_error(three_d: bool, h: f64, scheme: Scheme) -> f64 {
    let (half, t0, t1, d) = if three_d { (9.0, 1.0, 1.5, 3) } else { (12.0, 1.0, 2.0, 2) };
    let n = (2.0 * half / h).round() as usize;
    let g = Grid { nx: n, ny: n, nz: if three_d { n } else { 1 }, dx: h as f32, origin: [-half as f32; 3] };
    let r2 = |p: [f64; 3]| p[0] * p[0] + p[1] * p[1] + p[2] * p[2];
    let mut f = Field::zeros(g, 1);
    fill(&mut f, |p| heat_kernel(d, r2(p), t0));
    run(scheme, &mut f, &[ChannelParams::new(1.0, 0.0)], t1 - t0, step_for(scheme, h, d as usize));
    rel_l2(&f, |p| heat_kernel(d, r2(p), t1))
}

#[test]
fn point_source_matches_the_gaussian_at_second_order() {
    for scheme in SCHEMES {
        let hs = [0.5, 0.25, 0.125];
        let errs: Vec<f64> = hs.iter().map(|&h| point_source_error(false, h, scheme)).collect();
        let p = order(errs[1], errs[2]);
        eprintln!("2D point source, {scheme:?}, dt ∝ dx²: rel L2 {} at dx {hs:?}; order {p:.2}", e(&errs));
        assert!(errs[2] < 0.01, "{scheme:?}: error {} at dx 0.125", errs[2]);
        assert!(p >= 1.7, "{scheme:?}: observed order {p}");

        let hs = [0.6, 0.3];
        let errs: Vec<f64> = hs.iter().map(|&h| point_source_error(true, h, scheme)).collect();
        let p = order(errs[0], errs[1]);
        eprintln!("3D point source, {scheme:?}, dt ∝ dx²: rel L2 {} at dx {hs:?}; order {p:.2}", e(&errs));
        assert!(errs[1] < 0.01, "{scheme:?}: error {} at dx 0.3", errs[1]);
        assert!(p >= 1.7, "{scheme:?}: observed order {p}");
    }
}

#[test]
fn implicit_scheme_is_first_order_in_time() {
    // Fine fixed grid, dt halved: the temporal error dominates and falls at order 1.
    let h = 0.25;
    let errs: Vec<f64> = [0.2, 0.1, 0.05]
        .iter()
        .map(|&dt| {
            let n = 96;
            let g = Grid { nx: n, ny: n, nz: 1, dx: h as f32, origin: [-12.0; 3] };
            let r2 = |p: [f64; 3]| p[0] * p[0] + p[1] * p[1];
            let mut f = Field::zeros(g, 1);
            fill(&mut f, |p| heat_kernel(2, r2(p), 1.0));
            run(Scheme::Implicit, &mut f, &[ChannelParams::new(1.0, 0.0)], 1.0, dt);
            rel_l2(&f, |p| heat_kernel(2, r2(p), 2.0))
        })
        .collect();
    let p = order(errs[0], errs[1]);
    eprintln!("2D point source, implicit, dx 0.25, dt 0.2/0.1/0.05: rel L2 {}; order in time {p:.2}", e(&errs));
    assert!(p >= 0.8, "observed order in time {p}");
}

/// 1 + cos(πx/L)·e^(−π²t/L²) between zero-flux walls, L = 1, t = 0.1; max error over
/// the amplitude.
fn cosine_error(n: usize, scheme: Scheme) -> f64 {
    let h = 1.0 / n as f64;
    let g = Grid { nx: n, ny: 1, nz: 1, dx: h as f32, origin: [0.0; 3] };
    let mut f = Field::zeros(g, 1);
    fill(&mut f, |p| 1.0 + (PI * p[0]).cos());
    let t = 0.1;
    run(scheme, &mut f, &[ChannelParams::new(1.0, 0.0)], t, step_for(scheme, h, 2));
    let amp = (-PI * PI * t).exp();
    (0..n).map(|x| (f64::from(f.data[x]) - 1.0 - amp * (PI * (x as f64 + 0.5) * h).cos()).abs()).fold(0.0, f64::max)
        / amp
}

#[test]
fn cosine_mode_decays_at_the_analytic_rate() {
    for scheme in SCHEMES {
        let ns = [16, 32, 64];
        let errs: Vec<f64> = ns.iter().map(|&n| cosine_error(n, scheme)).collect();
        let p = order(errs[1], errs[2]);
        eprintln!("cosine mode, {scheme:?}, dt ∝ dx²: max error / amplitude {} at n {ns:?}; order {p:.2}", e(&errs));
        assert!(errs[2] < 1e-3, "{scheme:?}: {}", errs[2]);
        assert!(p >= 1.7, "{scheme:?}: observed order {p}");
    }
}

/// Steady state of D c'' = k c on [0, L] with c(0) = c0 (Fixed x− face) and c'(L) = 0
/// (zero-flux x+ face): c0·cosh((L−x)/λ)/cosh(L/λ), λ = √(D/k) = 1, L = 3.
fn steady_error(n: usize, scheme: Scheme) -> f64 {
    let (l, c0, k) = (3.0, 2.0, 1.0);
    let h = l / n as f64;
    let g = Grid { nx: n, ny: 1, nz: 1, dx: h as f32, origin: [0.0; 3] };
    let mut p = ChannelParams::new(1.0, k as f32);
    p.boundary[0] = Boundary::Fixed { value: c0 as f32 };
    let mut f = Field::zeros(g, 1);
    // Explicit: long steps, substeps plans the rest. Implicit: dt ∝ dx², since the LOD
    // splitting shifts the steady state by O(k·dt).
    let dt = match scheme {
        Scheme::Explicit => 0.5,
        Scheme::Implicit | Scheme::Adi => 0.5 * h * h,
    };
    run(scheme, &mut f, &[p], 20.0, dt);
    (0..n)
        .map(|x| {
            let xc = (x as f64 + 0.5) * h;
            (f64::from(f.data[x]) - c0 * ((l - xc).cosh() / l.cosh())).abs()
        })
        .fold(0.0, f64::max)
        / c0
}

#[test]
fn steady_profile_with_decay_matches_the_cosh_solution() {
    for scheme in SCHEMES {
        let ns = [16, 32, 64];
        let errs: Vec<f64> = ns.iter().map(|&n| steady_error(n, scheme)).collect();
        let p = order(errs[1], errs[2]);
        eprintln!("steady Fixed/decay profile, {scheme:?}: max error / c0 {} at n {ns:?}; order {p:.2}", e(&errs));
        assert!(errs[2] < 2e-3, "{scheme:?}: {}", errs[2]);
        assert!(p >= 1.7, "{scheme:?}: observed order {p}");
    }
}

#[test]
fn mass_is_conserved_with_zero_flux_walls_and_no_decay() {
    for scheme in SCHEMES {
        for g in [
            Grid { nx: 48, ny: 40, nz: 1, dx: 1.0, origin: [0.0; 3] },
            Grid { nx: 24, ny: 22, nz: 20, dx: 1.0, origin: [0.0; 3] },
        ] {
            let mut f = Field::zeros(g, 1);
            for (i, v) in f.data.iter_mut().enumerate() {
                *v = ((i * 7919) % 1009) as f32 * 0.01;
            }
            let before = f.total(0);
            let dt = if scheme == Scheme::Explicit { 0.15 } else { 1.0 };
            let mut s = CpuDiffusion::with_scheme(scheme);
            for _ in 0..1000 {
                s.step(&mut f, &[ChannelParams::new(1.0, 0.0)], dt).unwrap();
            }
            let drift = ((f.total(0) - before) / before).abs();
            eprintln!("mass, {scheme:?}, {}D, 1000 steps: relative drift {drift:.2e}", g.dims());
            // ADI rounds a stencil pass, two or three solves and an add per step, and its
            // Crank–Nicolson factor damps this rough start slowly (2D: 1.0e-6 measured).
            let bound = if scheme == Scheme::Adi { 2e-6 } else { 1e-6 };
            assert!(drift < bound, "{scheme:?} {}D: drift {drift}", g.dims());
        }
    }
}

#[test]
fn gaussian_across_periodic_faces_matches_the_wrapped_solution() {
    let (h, l, t0, t1) = (0.125, 16.0, 0.5, 1.5);
    let n = (l / h) as usize;
    let centre = [0.75, 8.0];
    let wrapped = |p: [f64; 3], t: f64| {
        let mut s = 0.0;
        for i in -2..=2 {
            for j in -2..=2 {
                let dx = p[0] - centre[0] + f64::from(i) * l;
                let dy = p[1] - centre[1] + f64::from(j) * l;
                s += heat_kernel(2, dx * dx + dy * dy, t);
            }
        }
        s
    };
    for scheme in SCHEMES {
        let g = Grid { nx: n, ny: n, nz: 1, dx: h as f32, origin: [0.0; 3] };
        let mut p = ChannelParams::new(1.0, 0.0);
        p.boundary = [Boundary::Periodic; 6];
        let mut f = Field::zeros(g, 1);
        fill(&mut f, |q| wrapped(q, t0));
        let before = f.total(0);
        run(scheme, &mut f, &[p], t1 - t0, step_for(scheme, h, 2));
        let drift = ((f.total(0) - before) / before).abs();
        let err = rel_l2(&f, |q| wrapped(q, t1));
        eprintln!("periodic Gaussian, {scheme:?}: rel L2 {err:.3e}, mass drift {drift:.2e}");
        assert!(err < 0.01, "{scheme:?}: {err}");
        assert!(drift < 1e-5, "{scheme:?}: {drift}");
    }
}

fn mixed_params() -> [ChannelParams; 2] {
    let mut a = ChannelParams::new(1.3, 0.05);
    a.boundary = [
        Boundary::Periodic,
        Boundary::Periodic,
        Boundary::Fixed { value: 1.0 },
        Boundary::ZeroFlux,
        Boundary::Fixed { value: 0.5 },
        Boundary::Fixed { value: 2.0 },
    ];
    let mut b = ChannelParams::new(0.4, 0.3);
    b.boundary = [
        Boundary::Fixed { value: 3.0 },
        Boundary::ZeroFlux,
        Boundary::Periodic,
        Boundary::Periodic,
        Boundary::Periodic,
        Boundary::Periodic,
    ];
    [a, b]
}

fn seeded(g: Grid, channels: usize) -> Field {
    let mut f = Field::zeros(g, channels);
    for (i, v) in f.data.iter_mut().enumerate() {
        *v = ((i * 7919) % 113) as f32 * 0.02;
    }
    f
}

#[test]
fn result_is_identical_for_one_and_two_threads() {
    let grids = [
        Grid { nx: 70, ny: 45, nz: 1, dx: 1.0, origin: [0.0; 3] },
        Grid { nx: 37, ny: 29, nz: 21, dx: 1.0, origin: [0.0; 3] },
    ];
    for scheme in SCHEMES {
        for g in grids {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let mut f = seeded(g, 2);
                    let mut s = CpuDiffusion::with_scheme(scheme);
                    for _ in 0..5 {
                        s.step(&mut f, &mixed_params(), 0.4).unwrap();
                    }
                    f.data
                })
            };
            let (one, two) = (run(1), run(2));
            assert!(
                one.iter().zip(&two).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{scheme:?} {}D differs between 1 and 2 threads",
                g.dims()
            );
        }
    }
}

#[test]
fn schemes_agree_for_small_steps_with_every_boundary_kind() {
    // Cross-check of the boundary handling of the two schemes on all three axes.
    let g = Grid { nx: 14, ny: 12, nz: 10, dx: 1.0, origin: [0.0; 3] };
    let p = mixed_params();
    let mut e = seeded(g, 2);
    let mut i = e.clone();
    run(Scheme::Explicit, &mut e, &p, 3.0, 0.1);
    run(Scheme::Implicit, &mut i, &p, 3.0, 0.005);
    let diff = e.data.iter().zip(&i.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("explicit vs implicit (dt 0.005), mixed boundaries, 3D, t = 3: max difference {diff:.2e}");
    assert!(diff < 0.02, "{diff}");
    assert!(e.data.iter().chain(&i.data).all(|v| v.is_finite() && *v >= 0.0));
    // ADI, second order, agrees with the explicit scheme at 10x LOD's step, closer than LOD.
    let mut d = seeded(g, 2);
    let mut s = CpuDiffusion::with_scheme(Scheme::Adi);
    s.step_with(&mut d, &p, 0.05, StepInputs { added: &[], restart: true }).unwrap();
    run(Scheme::Adi, &mut d, &p, 2.95, 0.05);
    let adi = e.data.iter().zip(&d.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("explicit vs adi (dt 0.05), mixed boundaries, 3D, t = 3: max difference {adi:.2e}");
    assert!(adi < diff, "adi at dt 0.05 differs by {adi}, LOD at dt 0.005 by {diff}");
}

#[test]
fn half_periodic_axes_are_rejected() {
    let g = Grid { nx: 8, ny: 8, nz: 8, dx: 1.0, origin: [0.0; 3] };
    let mut p = ChannelParams::new(1.0, 0.0);
    p.boundary[3] = Boundary::Periodic;
    let params = [ChannelParams::new(1.0, 0.0), p];
    for scheme in SCHEMES {
        let mut f = Field::zeros(g, 2);
        let err = CpuDiffusion::with_scheme(scheme).step(&mut f, &params, 0.1).unwrap_err();
        assert!(matches!(err, FieldError::HalfPeriodic { channel: 1, axis: 'y' }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("ligand 1") && msg.contains("y axis"), "{msg}");
    }
    // The z faces of a 2D grid are ignored.
    let mut p = ChannelParams::new(1.0, 0.0);
    p.boundary[4] = Boundary::Periodic;
    let flat = Grid { nz: 1, ..g };
    assert!(CpuDiffusion::new().step(&mut Field::zeros(flat, 1), &[p], 0.1).is_ok());
}

#[test]
fn implicit_scheme_stays_positive_and_bounded_for_huge_steps() {
    let g = Grid { nx: 20, ny: 20, nz: 20, dx: 10.0, origin: [0.0; 3] };
    let mut f = seeded(g, 2);
    let p = mixed_params();
    let hi = f.data.iter().copied().fold(3.0f32, f32::max);
    let mut s = CpuDiffusion::with_scheme(Scheme::Implicit);
    assert_eq!(s.scheme(), Scheme::Implicit);
    for _ in 0..10 {
        s.step(&mut f, &p, 1.0e4).unwrap();
    }
    assert!(f.data.iter().all(|v| v.is_finite() && *v >= 0.0 && *v <= hi * 1.0001));
}
