//! The implicit (LOD) scheme on the GPU against `CpuDiffusion` with `Scheme::Implicit`,
//! and `shaders/implicit.wgsl` against `naga`.
//!
//! The CPU implicit path is bit-identical to `explant_field::implicit::solve_line`; the
//! GPU runs the same arithmetic but its compiler may fuse multiply–adds, so the two are
//! compared to `1e-5` of the largest value, not bit for bit.
//!
//! GPU tests need a wgpu adapter (Mesa's lavapipe is enough). Without one they print
//! `SKIPPED: no wgpu adapter: …` and pass, unless `EXPLANT_REQUIRE_GPU_ADAPTER=1`, in
//! which case they fail.

use crate::common::*;

use explant_field::{
    Boundary, ChannelParams, CpuDiffusion, DiffusionBackend, Field, FieldError, Grid, Scheme, StepInputs, substeps,
};
use explant_gpu::{AdapterPolicy, GpuDiffusion, IMPLICIT_ENTRY_POINT, IMPLICIT_SHARED_X_ENTRY_POINT, IMPLICIT_WGSL};

/// Step the same field on the GPU and on the implicit `CpuDiffusion` with each `dt` in
/// turn, assert that they agree within [`TOLERANCE`] after every step, and return
/// `(worst difference, final GPU field, initial field)`.
fn compare(gpu: &mut GpuDiffusion, grid: Grid, params: &[ChannelParams], dts: &[f32]) -> (f64, Field, Field) {
    let initial = noisy_field(grid, params.len());
    let mut on_gpu = initial.clone();
    let mut on_cpu = initial.clone();
    let mut cpu = CpuDiffusion::with_scheme(Scheme::Implicit);
    let mut worst = 0.0f64;
    for &dt in dts {
        gpu.step(&mut on_gpu, params, dt).unwrap();
        cpu.step(&mut on_cpu, params, dt).unwrap();
        let rel = relative_difference(&on_gpu.data, &on_cpu.data);
        eprintln!(
            "implicit {}×{}×{}, {} channels, dt {dt}: max |gpu − cpu| / max |cpu| = {rel:.3e}",
            grid.nx,
            grid.ny,
            grid.nz,
            params.len()
        );
        worst = worst.max(rel);
        assert!(rel < TOLERANCE, "{}×{}×{} dt {dt}: GPU vs CPU implicit {rel:.3e}", grid.nx, grid.ny, grid.nz);
    }
    assert!(on_gpu.data.iter().all(|v| v.is_finite()), "non-finite values on the GPU");
    (worst, on_gpu, initial)
}

/// Guard against a vacuous match: the steps must have changed the field a lot.
fn assert_moved(after: &Field, before: &Field) {
    let moved = relative_difference(&after.data, &before.data);
    assert!(moved > 0.1, "the field barely changed ({moved:.3e}); the comparison would prove little");
}

#[test]
fn implicit_gpu_matches_cpu_on_a_2d_field_with_mixed_boundaries() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    let grid = Grid { nx: 64, ny: 48, nz: 1, dx: 10.0, origin: [0.0; 3] };
    use Boundary::{Fixed, Periodic, ZeroFlux};
    let params = [
        // Fixed x−, zero-flux x+, periodic y; the z faces must be ignored on a 2D grid.
        with_faces(400.0, 0.02, [Fixed { value: 30.0 }, ZeroFlux, Periodic, Periodic, Fixed { value: 1e3 }, Periodic]),
        // Periodic x, fixed y−, zero-flux y+.
        with_faces(60.0, 0.3, [Periodic, Periodic, Fixed { value: 2.0 }, ZeroFlux, ZeroFlux, ZeroFlux]),
    ];
    // A change of dt between steps forces new coefficients; the repeat reuses them.
    let (_, after, before) = compare(&mut gpu, grid, &params, &[0.5, 0.5, 2.0, 2.0, 0.5]);
    assert_moved(&after, &before);
}

#[test]
fn implicit_gpu_matches_cpu_on_a_3d_field_with_mixed_boundaries() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    let grid = Grid { nx: 20, ny: 16, nz: 12, dx: 10.0, origin: [0.0; 3] };
    use Boundary::{Fixed, Periodic, ZeroFlux};
    let params = [
        // Fixed x−, zero-flux x+, periodic y, zero-flux z−, fixed z+.
        with_faces(300.0, 0.05, [Fixed { value: 40.0 }, ZeroFlux, Periodic, Periodic, ZeroFlux, Fixed { value: 5.0 }]),
        // Periodic z, fixed x+ and y−.
        with_faces(20.0, 0.0, [ZeroFlux, Fixed { value: 0.0 }, Fixed { value: 12.5 }, ZeroFlux, Periodic, Periodic]),
        // No diffusion at all: decay only, every face fixed.
        with_faces(0.0, 0.5, [Fixed { value: 100.0 }; 6]),
    ];
    let (_, after, before) = compare(&mut gpu, grid, &params, &[0.4, 0.4, 1.5]);
    assert_moved(&after, &before);
}

#[test]
fn a_huge_implicit_step_stays_finite_non_negative_and_matches_the_cpu() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    use Boundary::{Fixed, Periodic, ZeroFlux};
    for grid in [
        Grid { nx: 64, ny: 48, nz: 1, dx: 10.0, origin: [0.0; 3] },
        Grid { nx: 20, ny: 16, nz: 12, dx: 10.0, origin: [0.0; 3] },
    ] {
        let params = [
            with_faces(
                400.0,
                0.02,
                [Fixed { value: 3.0 }, ZeroFlux, Periodic, Periodic, ZeroFlux, Fixed { value: 1.0 }],
            ),
            with_faces(60.0, 0.3, [Periodic, Periodic, ZeroFlux, Fixed { value: 0.0 }, Periodic, Periodic]),
        ];
        // The explicit limit is about the length of one explicit substep.
        let limit = substeps(&grid, &params, 1.0).unwrap().dt;
        let dt = 1e3 * limit;
        let (_, after, before) = compare(&mut gpu, grid, &params, &[dt, dt]);
        assert!(after.data.iter().all(|&v| v.is_finite() && v >= 0.0), "negative or non-finite values");
        assert_moved(&after, &before);
    }
}

#[test]
fn implicit_gpu_handles_lines_of_one_two_and_three_voxels() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    use Boundary::{Fixed, Periodic, ZeroFlux};
    let faces = [
        [Periodic; 6],
        [Fixed { value: 4.0 }, Fixed { value: 1.0 }, Periodic, Periodic, ZeroFlux, Fixed { value: 2.0 }],
    ];
    for (nx, ny, nz) in [(1, 3, 2), (2, 3, 1), (3, 1, 2), (2, 2, 3)] {
        let grid = Grid { nx, ny, nz, dx: 10.0, origin: [0.0; 3] };
        let params: Vec<ChannelParams> = faces.iter().map(|&b| with_faces(500.0, 0.1, b)).collect();
        compare(&mut gpu, grid, &params, &[0.3, 5.0]);
    }
}

#[test]
fn implicit_buffers_are_rebuilt_when_the_grid_or_channel_count_changes() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    let flat = Grid { nx: 40, ny: 33, nz: 1, dx: 8.0, origin: [0.0; 3] };
    let deep = Grid { nx: 17, ny: 9, nz: 5, dx: 8.0, origin: [0.0; 3] };
    let two = [ChannelParams::new(400.0, 0.02), ChannelParams::new(60.0, 0.3)];
    let one = [ChannelParams::new(150.0, 0.1)];
    for (grid, params) in [(flat, &two[..]), (deep, &two[..]), (deep, &one[..]), (flat, &two[..])] {
        compare(&mut gpu, grid, params, &[0.3]);
    }
    // New parameters on the same grid and dt must upload new coefficients.
    let slower = [ChannelParams::new(40.0, 0.02), ChannelParams::new(6.0, 0.3)];
    compare(&mut gpu, flat, &slower, &[0.3]);
}

#[test]
fn mass_is_conserved_by_the_implicit_gpu_with_zero_flux_and_periodic_walls() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    let grid = Grid { nx: 16, ny: 12, nz: 8, dx: 10.0, origin: [0.0; 3] };
    let mut f = Field::zeros(grid, 2);
    f.data[0] = 1000.0;
    f.data[grid.voxels() + 5] = 1000.0;
    let before = [f.total(0), f.total(1)];
    let p = [
        with_faces(1000.0, 0.0, [Boundary::Periodic; 6]),
        with_faces(
            1000.0,
            0.0,
            [
                Boundary::ZeroFlux,
                Boundary::ZeroFlux,
                Boundary::Periodic,
                Boundary::Periodic,
                Boundary::ZeroFlux,
                Boundary::ZeroFlux,
            ],
        ),
    ];
    for _ in 0..10 {
        gpu.step(&mut f, &p, 1.0).unwrap();
    }
    for c in 0..2 {
        let after = f.total(c);
        assert!(((after - before[c]) / before[c]).abs() < 1e-5, "channel {c}: {} -> {after}", before[c]);
    }
    assert!(f.data[0] < 100.0, "the source should have spread");
}

#[test]
fn the_scheme_and_name_follow_the_constructor() {
    let Some(gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    assert_eq!(gpu.scheme(), Scheme::Implicit);
    assert!(gpu.name().starts_with("gpu (implicit"), "{}", gpu.name());
    assert!(gpu.name().contains(&gpu.adapter_info().name), "{}", gpu.name());
    let explicit = GpuDiffusion::new(AdapterPolicy::Any).unwrap();
    assert_eq!(explicit.scheme(), Scheme::Explicit);
    assert!(explicit.name().starts_with("gpu (explicit"), "{}", explicit.name());
}

#[test]
fn an_injected_device_runs_the_implicit_kernel() {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let opened = pollster::block_on(async {
        let adapter =
            instance.request_adapter(&wgpu::RequestAdapterOptions::default()).await.map_err(|e| e.to_string())?;
        let info = adapter.get_info();
        let (device, queue) =
            adapter.request_device(&wgpu::DeviceDescriptor::default()).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((device, queue, info))
    });
    let (device, queue, info) = match opened {
        Ok(opened) => opened,
        Err(e) => return skip_without_adapter(&e),
    };
    let mut gpu = GpuDiffusion::from_device_with_scheme(device, queue, info, Scheme::Implicit).unwrap();
    assert_eq!(gpu.scheme(), Scheme::Implicit);
    let grid = Grid { nx: 30, ny: 20, nz: 1, dx: 10.0, origin: [0.0; 3] };
    compare(&mut gpu, grid, &[ChannelParams::new(400.0, 0.02)], &[0.5]);
}

#[test]
fn bad_input_to_the_implicit_gpu_is_an_error_not_a_panic() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    let grid = Grid { nx: 8, ny: 8, nz: 1, dx: 10.0, origin: [0.0; 3] };
    let mut f = Field::zeros(grid, 2);
    let one = [ChannelParams::new(1.0, 0.0)];
    assert!(matches!(gpu.step(&mut f, &one, 1.0), Err(FieldError::ChannelMismatch { field: 2, params: 1 })));
    let two = [ChannelParams::new(1.0, 0.0), ChannelParams::new(2.0, 0.1)];
    assert!(matches!(gpu.step(&mut f, &two, f32::NAN), Err(FieldError::BadTimeStep { .. })));
    let half = [
        ChannelParams::new(1.0, 0.0),
        with_faces(
            1.0,
            0.0,
            [
                Boundary::Periodic,
                Boundary::ZeroFlux,
                Boundary::ZeroFlux,
                Boundary::ZeroFlux,
                Boundary::ZeroFlux,
                Boundary::ZeroFlux,
            ],
        ),
    ];
    assert!(matches!(gpu.step(&mut f, &half, 1.0), Err(FieldError::HalfPeriodic { .. })));
    f.data.pop();
    match gpu.step(&mut f, &two, 1.0) {
        Err(FieldError::Backend { backend, message }) => {
            assert!(backend.contains("implicit"), "{backend}");
            assert!(message.contains("`8×8×1`"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    let mut empty = Field::zeros(Grid { nx: 0, ny: 8, nz: 1, dx: 10.0, origin: [0.0; 3] }, 2);
    gpu.step(&mut empty, &two, 1.0).unwrap();
}

#[test]
fn implicit_wgsl_parses_and_validates_with_naga() {
    assert_valid_wgsl("shaders/implicit.wgsl", IMPLICIT_WGSL, IMPLICIT_ENTRY_POINT, [64, 1, 1]);
    assert_valid_wgsl("shaders/implicit.wgsl", IMPLICIT_WGSL, IMPLICIT_SHARED_X_ENTRY_POINT, [64, 1, 1]);
}

#[test]
fn the_x_sweep_through_workgroup_memory_matches_the_cpu_for_every_line_length() {
    // x lines of 1 to 499 voxels are swept in workgroup memory (64 lines per workgroup
    // down to 8), 500 and more by one invocation per line. Line counts that do not fill
    // the last workgroup, odd and even pitches, and every x face kind.
    let Some(mut gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    use Boundary::{Fixed, Periodic, ZeroFlux};
    for (nx, ny, nz) in [(1, 7, 1), (3, 5, 1), (2, 70, 2), (64, 37, 3), (100, 41, 1), (499, 9, 1), (500, 9, 1)] {
        let grid = Grid { nx, ny, nz, dx: 10.0, origin: [0.0; 3] };
        let params = [
            with_faces(
                900.0,
                0.05,
                [Fixed { value: 5.0 }, Fixed { value: 0.5 }, ZeroFlux, ZeroFlux, ZeroFlux, ZeroFlux],
            ),
            with_faces(300.0, 0.0, [Periodic, Periodic, ZeroFlux, Fixed { value: 1.0 }, ZeroFlux, ZeroFlux]),
            ChannelParams::new(2000.0, 0.1),
        ];
        let (worst, after, before) = compare(&mut gpu, grid, &params, &[0.5, 0.5]);
        if nx > 2 {
            assert_moved(&after, &before);
        }
        eprintln!("x lines of {nx}: worst {worst:.3e}");
    }
}

#[test]
fn adi_gpu_matches_cpu_with_sources_a_damped_start_and_mixed_boundaries() {
    // The device solves the increment's lines (and both halves of a damped step); the
    // host forms the increment. Sources listed each step enter through it on both.
    let Some(mut gpu) = gpu_or_skip(Scheme::Adi) else { return };
    use Boundary::{Fixed, Periodic, ZeroFlux};
    for grid in [
        Grid { nx: 20, ny: 16, nz: 12, dx: 10.0, origin: [0.0; 3] },
        Grid { nx: 40, ny: 24, nz: 1, dx: 10.0, origin: [0.0; 3] },
    ] {
        let params = [
            with_faces(
                300.0,
                0.05,
                [Fixed { value: 40.0 }, ZeroFlux, Periodic, Periodic, ZeroFlux, Fixed { value: 5.0 }],
            ),
            with_faces(
                20.0,
                0.0,
                [ZeroFlux, Fixed { value: 0.0 }, Fixed { value: 12.5 }, ZeroFlux, Periodic, Periodic],
            ),
        ];
        let initial = noisy_field(grid, params.len());
        let (mut on_gpu, mut on_cpu) = (initial.clone(), initial.clone());
        let mut cpu = CpuDiffusion::with_scheme(Scheme::Adi);
        for step in 0..5 {
            let sources: Vec<(u32, f32)> =
                (0..7).map(|k| (((step * 131 + k * 977) % on_cpu.data.len()) as u32, 3.0 + k as f32)).collect();
            for f in [&mut on_gpu, &mut on_cpu] {
                for &(i, s) in &sources {
                    f.data[i as usize] += s;
                }
            }
            let inputs = StepInputs { added: &sources, restart: step == 0 };
            gpu.step_with(&mut on_gpu, &params, 1.5, inputs).unwrap();
            cpu.step_with(&mut on_cpu, &params, 1.5, inputs).unwrap();
            let rel = relative_difference(&on_gpu.data, &on_cpu.data);
            eprintln!("adi {}×{}×{}, step {step}: max |gpu − cpu| / max |cpu| = {rel:.3e}", grid.nx, grid.ny, grid.nz);
            assert!(rel < TOLERANCE, "adi step {step}: GPU vs CPU {rel:.3e}");
        }
        assert_moved(&on_cpu, &initial);
    }
}
