//! Validation of the second-order scheme ([`Scheme::Adi`], Douglas ADI) on the cases of
//! the design study (`docs/design/adi.md`): accuracy at PhysiCell's steps against the
//! exact solution, order in time (with `Fixed` faces and with sources), mass, and
//! positivity on sharp data and point sources, each beside the wrong answer it guards
//! against (LOD's first-order error; Douglas without the damped start; sources added to
//! the field instead of listed). Numbers are printed (`--nocapture`).

use explant_field::{
    Boundary, ChannelParams, CpuDiffusion, DiffusionBackend, Field, Grid, Scheme, StepInputs, damped_steps,
};

/// The Gaussian case at PhysiCell's defaults: D 10⁵ µm²/min, decay 0.1/min,
/// dx 20 µm, dt 0.01 min, an 80³ zero-flux box, σ₀ = 100 µm, compared after 0.1 min with
/// the exact solution (method of images, per axis).
fn gaussian_case(scheme: Scheme, damped_start: bool) -> f64 {
    let (n, dx, d, k, dt, sigma0, steps) = (80usize, 20.0f64, 1.0e5f64, 0.1f64, 0.01f32, 100.0f64, 10);
    let l = n as f64 * dx;
    let c = l / 2.0;
    // Per-axis profile at time t (images of the centre in the walls at 0 and L).
    let profile = |t: f64| -> Vec<f64> {
        let s2 = sigma0 * sigma0 + 2.0 * d * t;
        let amp = sigma0 / s2.sqrt();
        (0..n)
            .map(|i| {
                let x = (i as f64 + 0.5) * dx;
                (-2..=2)
                    .map(|m| {
                        let shift = 2.0 * f64::from(m) * l;
                        let g = |p: f64| amp * (-(x - p) * (x - p) / (2.0 * s2)).exp();
                        g(c + shift) + g(-c + shift)
                    })
                    .sum::<f64>()
            })
            .collect()
    };
    let g = Grid { nx: n, ny: n, nz: n, dx: dx as f32, origin: [0.0; 3] };
    let p0 = profile(0.0);
    let mut f = Field::zeros(g, 1);
    for (v, val) in f.data.iter_mut().enumerate() {
        let [x, y, z] = g.coords(v);
        *val = (p0[x] * p0[y] * p0[z]) as f32;
    }
    let params = [ChannelParams::new(d as f32, k as f32)];
    let mut s = CpuDiffusion::with_scheme(scheme);
    for step in 0..steps {
        let restart = damped_start && step == 0;
        s.step_with(&mut f, &params, dt, StepInputs { added: &[], restart }).unwrap();
    }
    let t = f64::from(dt) * steps as f64;
    let p1 = profile(t);
    let decay = (-k * t).exp();
    let (mut num, mut den) = (0.0, 0.0);
    for (v, &val) in f.data.iter().enumerate() {
        let [x, y, z] = g.coords(v);
        let exact = decay * p1[x] * p1[y] * p1[z];
        num += (f64::from(val) - exact).powi(2);
        den += exact * exact;
    }
    (num / den).sqrt()
}

#[test]
fn gaussian_at_physicell_steps_is_ten_times_more_accurate_than_lod() {
    let lod = gaussian_case(Scheme::Implicit, false);
    let adi = gaussian_case(Scheme::Adi, true);
    eprintln!("80³ Gaussian, dx 20 µm, dt 0.01 min, 0.1 min: rel L2 LOD {lod:.3e}, ADI (damped start) {adi:.3e}");
    // Design study: LOD 2.80 %, Douglas with the Rannacher start 0.255 %.
    assert!(lod > 0.02, "LOD should show its first-order error here: {lod}");
    assert!(adi < 0.003, "ADI: relative L2 error {adi} (goal 0.3 %)");
    assert!(adi < lod / 8.0, "ADI {adi} vs LOD {lod}");
}

fn relative_difference(a: &Field, b: &Field) -> f64 {
    let num: f64 = a.data.iter().zip(&b.data).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.data.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt()
}

/// Steps of `dt / m` from `start` to `t`, with `source` amounts (per unit time) listed
/// as added before each step.
fn advance(
    scheme: Scheme,
    start: &Field,
    params: &[ChannelParams],
    t: f32,
    steps: usize,
    source: Option<(usize, f32)>,
    listed: bool,
) -> Field {
    let mut f = start.clone();
    let dt = t / steps as f32;
    let mut s = CpuDiffusion::with_scheme(scheme);
    for _ in 0..steps {
        let mut added = Vec::new();
        if let Some((i, rate)) = source {
            f.data[i] += rate * dt;
            if listed {
                added.push((i as u32, rate * dt));
            }
        }
        s.step_with(&mut f, params, dt, StepInputs { added: &added, restart: false }).unwrap();
    }
    f
}

/// Observed orders between successive halvings of the step, against `reference`.
fn orders(errors: &[f64]) -> Vec<f64> {
    errors.windows(2).map(|w| (w[0] / w[1]).log2()).collect()
}

#[test]
fn second_order_in_time_with_fixed_faces_and_decay() {
    // Design study §9: Fixed x faces (1.0 and 0.25), zero-flux y and z, zero start,
    // k = 0.1; per-axis schemes lose an order here, Douglas does not.
    let g = Grid { nx: 24, ny: 24, nz: 24, dx: 20.0, origin: [0.0; 3] };
    let mut p = ChannelParams::new(1.0e5, 0.1);
    p.boundary[0] = Boundary::Fixed { value: 1.0 };
    p.boundary[1] = Boundary::Fixed { value: 0.25 };
    let params = [p];
    let start = Field::zeros(g, 1);
    let t = 0.1;
    let reference = advance(Scheme::Adi, &start, &params, t, 320, None, false);
    let errs: Vec<f64> = [10, 20, 40]
        .iter()
        .map(|&m| relative_difference(&advance(Scheme::Adi, &start, &params, t, m, None, false), &reference))
        .collect();
    let lod: Vec<f64> = [10, 20]
        .iter()
        .map(|&m| relative_difference(&advance(Scheme::Implicit, &start, &params, t, m, None, false), &reference))
        .collect();
    let o = orders(&errs);
    eprintln!(
        "Fixed faces, 24³: ADI errors {errs:?}, orders {o:.2?}; LOD {lod:?}, order {:.2}",
        (lod[0] / lod[1]).log2()
    );
    assert!(o[1] > 1.9, "ADI order {o:?}");
    assert!((lod[0] / lod[1]).log2() < 1.2, "LOD should be first order: {lod:?}");
    assert!(errs[0] < lod[0] / 4.0);
}

#[test]
fn point_source_listed_as_added_is_second_order_and_stays_positive() {
    // Design study §6: an amount enters the centre voxel every step over a zero field.
    let g = Grid { nx: 24, ny: 24, nz: 24, dx: 20.0, origin: [0.0; 3] };
    let params = [ChannelParams::new(5.0e4, 0.1)];
    let centre = (12 * 24 + 12) * 24 + 12;
    let src = Some((centre, 100.0));
    let start = Field::zeros(g, 1);
    let t = 0.2;
    let reference = advance(Scheme::Adi, &start, &params, t, 640, src, true);
    let errs: Vec<f64> = [40, 80, 160]
        .iter()
        .map(|&m| relative_difference(&advance(Scheme::Adi, &start, &params, t, m, src, true), &reference))
        .collect();
    let o = orders(&errs);
    let lod = relative_difference(&advance(Scheme::Implicit, &start, &params, t, 40, src, true), &reference);
    eprintln!("point source, 24³, a = 1.25: ADI errors {errs:?}, orders {o:.2?}; LOD at the coarsest step {lod:.2e}");
    assert!(o[1] > 1.8, "ADI with listed sources, order {o:?}");
    assert!(errs[0] < lod / 10.0, "ADI {} vs LOD {lod}", errs[0]);

    // Positivity (a = 2.5): a damped first step, then the source listed each step.
    let dt = 0.01f32;
    let params = [ChannelParams::new(1.0e5, 0.1)];
    let worst = |listed: bool| {
        let mut f = Field::zeros(g, 1);
        let mut s = CpuDiffusion::with_scheme(Scheme::Adi);
        let mut worst = 0.0f32;
        for step in 0..20 {
            f.data[centre] += 1.0;
            let added = [(centre as u32, 1.0)];
            let inputs = StepInputs { added: if listed { &added } else { &[] }, restart: step == 0 };
            s.step_with(&mut f, &params, dt, inputs).unwrap();
            let (lo, hi) = f.data.iter().fold((0.0f32, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
            worst = worst.min(lo / hi);
        }
        worst
    };
    let (listed, unlisted) = (worst(true), worst(false));
    eprintln!(
        "point source every step, a = 2.5: worst min/max listed {listed:.2e}, added to the field only {unlisted:.2e}"
    );
    assert!(listed >= 0.0, "listed source: min/max {listed}");
    // The failure the source list exists for: Douglas feeds the 3D checkerboard mode.
    assert!(unlisted < -0.1, "an unlisted source should oscillate: {unlisted}");
}

#[test]
fn damped_start_keeps_a_step_function_positive() {
    // Design study §5: a cube of 1 in zeros, 40³ zero-flux, k = 0.1, 20 steps.
    let g = Grid { nx: 40, ny: 40, nz: 40, dx: 10.0, origin: [0.0; 3] };
    for (a, side) in [(2.5f32, 2usize), (25.0, 10)] {
        let params = [ChannelParams::new(a * 100.0, 0.1)];
        let dt = 1.0;
        let damped = damped_steps(&g, &params, dt);
        let worst = |damp: bool| {
            let mut f = Field::zeros(g, 1);
            for (v, val) in f.data.iter_mut().enumerate() {
                let c = g.coords(v);
                if c.iter().all(|&i| (20 - side / 2..20 + side.div_ceil(2)).contains(&i)) {
                    *val = 1.0;
                }
            }
            let mut s = CpuDiffusion::with_scheme(Scheme::Adi);
            let mut worst = 0.0f32;
            for step in 0..20 {
                let restart = damp && step < damped as usize;
                s.step_with(&mut f, &params, dt, StepInputs { added: &[], restart }).unwrap();
                let (lo, hi) = f.data.iter().fold((0.0f32, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
                worst = worst.min(lo / hi);
            }
            worst
        };
        let (with, without) = (worst(true), worst(false));
        eprintln!("cube of {side}³, a = {a}: {damped} damped steps: worst min/max {with:.2e}; undamped {without:.2e}");
        assert!(with >= 0.0, "a = {a}: {with}");
        assert!(without < -0.1, "undamped Douglas should oscillate at a = {a}: {without}");
    }
}

#[test]
fn mass_balance_is_exact_to_rounding_with_sources_and_decay() {
    // Zero-flux faces, no decay: the total after 200 steps is the start's plus every
    // listed source, up to float32 rounding.
    let g = Grid { nx: 30, ny: 26, nz: 22, dx: 10.0, origin: [0.0; 3] };
    let mut f = Field::zeros(g, 1);
    for (v, val) in f.data.iter_mut().enumerate() {
        let [x, y, z] = g.coords(v);
        let r2 = ((x as f32 - 15.0).powi(2) + (y as f32 - 13.0).powi(2) + (z as f32 - 11.0).powi(2)) / 20.0;
        *val = (-r2).exp();
    }
    let params = [ChannelParams::new(500.0, 0.0)];
    let mut s = CpuDiffusion::with_scheme(Scheme::Adi);
    let vol = f64::from(g.voxel_volume());
    let mut expected = f.total(0);
    for step in 0..200u32 {
        let i = ((step as usize * 7919) % g.voxels()) as u32;
        f.data[i as usize] += 0.5;
        expected += 0.5 * vol;
        s.step_with(&mut f, &params, 0.5, StepInputs { added: &[(i, 0.5)], restart: false }).unwrap();
    }
    let drift = (f.total(0) - expected).abs() / expected;
    eprintln!("ADI mass, 200 steps with a source each step: relative drift {drift:.2e}");
    assert!(drift < 1e-6, "{drift}");
}

#[test]
fn two_d_grids_and_periodic_faces_match_the_wrapped_gaussian() {
    // 2D, periodic in x and y, D = 1: a Gaussian near a corner against the wrapped
    // free-space solution, at a step 8 times LOD's error-matched step.
    let (h, l, t0, t1) = (0.125f64, 16.0f64, 0.5f64, 1.5f64);
    let n = (l / h) as usize;
    let wrapped = |x: f64, y: f64, t: f64| {
        let mut s = 0.0;
        for i in -2..=2 {
            for j in -2..=2 {
                let dx = x - 0.75 + f64::from(i) * l;
                let dy = y - 8.0 + f64::from(j) * l;
                s += (-(dx * dx + dy * dy) / (4.0 * t)).exp() / (4.0 * std::f64::consts::PI * t);
            }
        }
        s
    };
    let g = Grid { nx: n, ny: n, nz: 1, dx: h as f32, origin: [0.0; 3] };
    let mut p = ChannelParams::new(1.0, 0.0);
    p.boundary = [Boundary::Periodic; 6];
    let err_of = |scheme: Scheme, steps: usize| {
        let mut f = Field::zeros(g, 1);
        for (v, val) in f.data.iter_mut().enumerate() {
            let [x, y, _] = g.coords(v);
            *val = wrapped((x as f64 + 0.5) * h, (y as f64 + 0.5) * h, t0) as f32;
        }
        let mut s = CpuDiffusion::with_scheme(scheme);
        let dt = ((t1 - t0) / steps as f64) as f32;
        for _ in 0..steps {
            s.step(&mut f, std::slice::from_ref(&p), dt).unwrap();
        }
        let (mut num, mut den) = (0.0, 0.0);
        for (v, &val) in f.data.iter().enumerate() {
            let [x, y, _] = g.coords(v);
            let e = wrapped((x as f64 + 0.5) * h, (y as f64 + 0.5) * h, t1);
            num += (f64::from(val) - e).powi(2);
            den += e * e;
        }
        (num / den).sqrt()
    };
    let (adi, lod) = (err_of(Scheme::Adi, 20), err_of(Scheme::Implicit, 20));
    eprintln!("2D periodic Gaussian, dt 0.05 (a = 3.2): rel L2 ADI {adi:.2e}, LOD {lod:.2e}");
    assert!(adi < 2e-3, "{adi}");
    assert!(adi < lod / 5.0, "ADI {adi} vs LOD {lod}");
}

#[test]
fn listed_sources_out_of_range_are_an_error_not_a_panic() {
    let g = Grid { nx: 4, ny: 4, nz: 1, dx: 1.0, origin: [0.0; 3] };
    let mut f = Field::zeros(g, 1);
    let mut s = CpuDiffusion::with_scheme(Scheme::Adi);
    let err = s
        .step_with(&mut f, &[ChannelParams::new(1.0, 0.0)], 0.1, StepInputs { added: &[(16, 1.0)], restart: false })
        .unwrap_err();
    assert!(err.to_string().contains("index 16"), "{err}");
}
