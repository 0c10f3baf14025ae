//! The GPU path against the CPU reference, and the kernel source against `naga`.
//!
//! Every GPU result is compared with two references: `reference_step` below, a plain
//! scalar transcription of the explicit substep with per-face boundaries (so these
//! tests do not depend on the state of `explant-field`), and `CpuDiffusion` itself. For
//! non-zero-flux boundaries the `CpuDiffusion` comparison runs only when a quick probe
//! shows that it honours `Fixed` and `Periodic` faces; otherwise the tests say so loudly
//! and compare against the scalar reference alone.
//!
//! GPU tests need a wgpu adapter (Mesa's lavapipe is enough). Without one they print
//! `SKIPPED: no wgpu adapter: …` and pass, unless `EXPLANT_REQUIRE_GPU_ADAPTER=1`, in
//! which case they fail: set it wherever an adapter is known to exist (CI with lavapipe).

use crate::common::*;

use explant_field::{
    Boundary, ChannelParams, CpuDiffusion, DiffusionBackend, Faces, Field, FieldError, Grid, Scheme, substeps,
};
use explant_gpu::{AdapterPolicy, DIFFUSE_ENTRY_POINT, DIFFUSE_WGSL, GpuDiffusion};

/// One explicit substep of one channel from `src` into `dst`, straight from the rule in
/// `explant_field::stencil_update` and `Boundary`, in the same order of operations: the
/// neighbour beyond a face is `c` (zero flux), `2.0 * value - c` (fixed) or the voxel at
/// the other end of the axis (periodic); `sum = xm + xp + ym + yp (+ zm + zp)`,
/// `lap = sum - faces * c`, `c' = c + a * lap - kdt * c`.
fn reference_substep(g: &Grid, boundary: &Faces, src: &[f32], dst: &mut [f32], a: f32, kdt: f32) {
    let (nx, ny, nz) = (g.nx, g.ny, g.nz);
    let faces = 2.0 * g.dims() as f32;
    let at = |x: usize, y: usize, z: usize| src[(z * ny + y) * nx + x];
    let beyond = |face: usize, c: f32, wrapped: f32| match boundary[face] {
        Boundary::ZeroFlux => c,
        Boundary::Fixed { value } => 2.0 * value - c,
        Boundary::Periodic => wrapped,
    };
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let c = at(x, y, z);
                let xm = if x > 0 { at(x - 1, y, z) } else { beyond(0, c, at(nx - 1, y, z)) };
                let xp = if x + 1 < nx { at(x + 1, y, z) } else { beyond(1, c, at(0, y, z)) };
                let ym = if y > 0 { at(x, y - 1, z) } else { beyond(2, c, at(x, ny - 1, z)) };
                let yp = if y + 1 < ny { at(x, y + 1, z) } else { beyond(3, c, at(x, 0, z)) };
                let mut sum = xm + xp + ym + yp;
                if nz > 1 {
                    let zm = if z > 0 { at(x, y, z - 1) } else { beyond(4, c, at(x, y, nz - 1)) };
                    let zp = if z + 1 < nz { at(x, y, z + 1) } else { beyond(5, c, at(x, y, 0)) };
                    sum = sum + zm + zp;
                }
                let lap = sum - faces * c;
                dst[(z * ny + y) * nx + x] = c + a * lap - kdt * c;
            }
        }
    }
}

/// Advance `field` by `dt` with [`reference_substep`] on the `substeps` plan, computing
/// `a` and `kdt` with the same expressions as the backends.
fn reference_step(field: &mut Field, params: &[ChannelParams], dt: f32) {
    let g = field.grid;
    let plan = substeps(&g, params, dt).unwrap();
    let mut scratch = vec![0.0; g.voxels()];
    for (c, p) in params.iter().enumerate() {
        let a = p.diffusion * plan.dt / (g.dx * g.dx);
        let kdt = p.decay * plan.dt;
        let chan = field.channel_mut(c);
        for _ in 0..plan.count {
            reference_substep(&g, &p.boundary, chan, &mut scratch, a, kdt);
            chan.copy_from_slice(&scratch);
        }
    }
}

/// Worst relative differences seen by [`compare`].
struct Worst {
    /// GPU against [`reference_step`].
    reference: f64,
    /// GPU against `CpuDiffusion`, when it was compared.
    cpu: Option<f64>,
}

/// Step the same field on the GPU, the scalar reference and (if `with_cpu`)
/// `CpuDiffusion` with each `dt` in turn (reusing the GPU buffers), and return the
/// worst relative differences after any step.
fn compare(gpu: &mut GpuDiffusion, grid: Grid, params: &[ChannelParams], dts: &[f32], with_cpu: bool) -> Worst {
    let initial = noisy_field(grid, params.len());
    let mut on_gpu = initial.clone();
    let mut on_ref = initial.clone();
    let mut on_cpu = initial.clone();
    let mut cpu = CpuDiffusion::new();
    let mut worst = Worst { reference: 0.0, cpu: with_cpu.then_some(0.0) };
    for &dt in dts {
        let plan = substeps(&grid, params, dt).unwrap();
        gpu.step(&mut on_gpu, params, dt).unwrap();
        reference_step(&mut on_ref, params, dt);
        let rel = relative_difference(&on_gpu.data, &on_ref.data);
        eprintln!(
            "{}×{}×{}, dt {dt} ({} substeps): max |gpu − reference| / max |reference| = {rel:.3e}",
            grid.nx, grid.ny, grid.nz, plan.count
        );
        worst.reference = worst.reference.max(rel);
        if let Some(w) = &mut worst.cpu {
            cpu.step(&mut on_cpu, params, dt).unwrap();
            let rel = relative_difference(&on_gpu.data, &on_cpu.data);
            eprintln!("{:>w$}max |gpu − cpu| / max |cpu| = {rel:.3e}", "", w = 40);
            *w = w.max(rel);
        }
    }
    assert!(on_ref.data.iter().all(|v| v.is_finite()));
    // Guard against a vacuous match: the steps must have changed the field a lot.
    let moved = relative_difference(&on_ref.data, &initial.data);
    assert!(moved > 0.1, "the field barely changed ({moved:.3e}); the comparison would prove little");
    worst
}

/// Assert that both differences in `worst` are within [`TOLERANCE`].
fn assert_close(worst: &Worst, what: &str) {
    assert!(worst.reference < TOLERANCE, "{what}: GPU vs scalar reference {:.3e}", worst.reference);
    if let Some(cpu) = worst.cpu {
        assert!(cpu < TOLERANCE, "{what}: GPU vs CpuDiffusion {cpu:.3e}");
    }
}

fn two_channels() -> [ChannelParams; 2] {
    [ChannelParams::new(400.0, 0.02), ChannelParams::new(60.0, 0.3)]
}

#[test]
fn gpu_matches_cpu_on_a_2d_field() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let grid = Grid { nx: 96, ny: 80, nz: 1, dx: 10.0, origin: [0.0; 3] };
    let params = two_channels();
    // One step with an odd substep count (the result ends in the pong buffer) and one with
    // an even count.
    let parity = |odd: bool| {
        (1..40)
            .map(|i| 0.05 * i as f32)
            .find(|&dt| (substeps(&grid, &params, dt).unwrap().count % 2 == 1) == odd)
            .unwrap()
    };
    let (odd, even) = (parity(true), parity(false));
    let worst = compare(&mut gpu, grid, &params, &[odd, even, odd], true);
    assert_close(&worst, "2D");
}

#[test]
fn gpu_matches_cpu_on_a_3d_field() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let grid = Grid { nx: 24, ny: 20, nz: 16, dx: 10.0, origin: [0.0; 3] };
    let params = [ChannelParams::new(300.0, 0.05), ChannelParams::new(20.0, 0.0), ChannelParams::new(0.0, 0.5)];
    let plan = substeps(&grid, &params, 0.4).unwrap();
    assert!(plan.count > 1, "the test should take several substeps");
    let worst = compare(&mut gpu, grid, &params, &[0.4, 0.4], true);
    assert_close(&worst, "3D");
}

#[test]
fn buffers_are_rebuilt_when_the_grid_or_channel_count_changes() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let flat = Grid { nx: 40, ny: 33, nz: 1, dx: 8.0, origin: [0.0; 3] };
    let deep = Grid { nx: 17, ny: 9, nz: 5, dx: 8.0, origin: [0.0; 3] };
    let two = two_channels();
    let one = [ChannelParams::new(150.0, 0.1)];
    for (grid, params) in [(flat, &two[..]), (deep, &two[..]), (deep, &one[..]), (flat, &two[..])] {
        let worst = compare(&mut gpu, grid, params, &[0.3], true);
        assert_close(&worst, &format!("{}×{}×{}", grid.nx, grid.ny, grid.nz));
    }
}

#[test]
fn an_injected_device_runs_the_kernel() {
    // The `from_device` path: the caller owns the instance, adapter and device.
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
    let mut gpu = GpuDiffusion::from_device(device, queue, info).unwrap();
    let grid = Grid { nx: 30, ny: 20, nz: 1, dx: 10.0, origin: [0.0; 3] };
    let worst = compare(&mut gpu, grid, &two_channels(), &[0.5], true);
    assert_close(&worst, "injected device");
}

#[test]
fn gpu_matches_the_references_with_mixed_boundaries_in_2d() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let with_cpu = true;
    let grid = Grid { nx: 48, ny: 40, nz: 1, dx: 10.0, origin: [0.0; 3] };
    use Boundary::{Fixed, Periodic, ZeroFlux};
    let params = [
        // Fixed x−, zero-flux x+, periodic y. The z faces must be ignored on a 2D grid.
        with_faces(400.0, 0.02, [Fixed { value: 30.0 }, ZeroFlux, Periodic, Periodic, Fixed { value: 1e3 }, Periodic]),
        // Periodic x, fixed y− (below the field), zero-flux y+.
        with_faces(60.0, 0.3, [Periodic, Periodic, Fixed { value: -2.0 }, ZeroFlux, ZeroFlux, ZeroFlux]),
    ];
    // 9 substeps then 8: the result ends in both buffers in turn.
    let worst = compare(&mut gpu, grid, &params, &[0.5, 0.45, 0.5], with_cpu);
    assert_close(&worst, "2D, mixed boundaries");
}

#[test]
fn gpu_matches_the_references_with_mixed_boundaries_in_3d() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let with_cpu = true;
    let grid = Grid { nx: 20, ny: 16, nz: 12, dx: 10.0, origin: [0.0; 3] };
    use Boundary::{Fixed, Periodic, ZeroFlux};
    let params = [
        // Fixed x−, zero-flux x+, periodic y, zero-flux z−, fixed z+.
        with_faces(300.0, 0.05, [Fixed { value: 40.0 }, ZeroFlux, Periodic, Periodic, ZeroFlux, Fixed { value: 5.0 }]),
        // Every kind on every axis: periodic z, fixed x+ and y−.
        with_faces(20.0, 0.0, [ZeroFlux, Fixed { value: 0.0 }, Fixed { value: 12.5 }, ZeroFlux, Periodic, Periodic]),
        with_faces(0.0, 0.5, [Fixed { value: 100.0 }; 6]),
    ];
    let worst = compare(&mut gpu, grid, &params, &[0.4, 0.4], with_cpu);
    assert_close(&worst, "3D, mixed boundaries");
}

#[test]
fn a_field_at_the_fixed_value_stays_there_on_the_gpu() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let grid = Grid { nx: 12, ny: 10, nz: 6, dx: 10.0, origin: [0.0; 3] };
    let mut f = Field::zeros(grid, 1);
    f.data.fill(3.0);
    let p = [with_faces(500.0, 0.0, [Boundary::Fixed { value: 3.0 }; 6])];
    for _ in 0..5 {
        gpu.step(&mut f, &p, 0.2).unwrap();
    }
    assert!(f.data.iter().all(|&v| v == 3.0), "a steady state moved: {:?}", &f.data[..6]);
}

#[test]
fn mass_is_conserved_on_the_gpu_with_periodic_walls() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let grid = Grid { nx: 16, ny: 12, nz: 8, dx: 10.0, origin: [0.0; 3] };
    let mut f = Field::zeros(grid, 1);
    // A source in a corner, so most of its mass crosses the walls.
    f.data[0] = 1000.0;
    let before = f.total(0);
    let p = [with_faces(1000.0, 0.0, [Boundary::Periodic; 6])];
    for _ in 0..20 {
        gpu.step(&mut f, &p, 0.1).unwrap();
    }
    let after = f.total(0);
    assert!(((after - before) / before).abs() < 1e-5, "{before} -> {after}");
    // Symmetric about the corner through every periodic wall (to rounding: the mirror
    // images sum their neighbours in a different order).
    let at = |x: usize, y: usize, z: usize| f.data[(z * 12 + y) * 16 + x];
    for (a, b) in [(at(1, 0, 0), at(15, 0, 0)), (at(0, 1, 0), at(0, 11, 0)), (at(0, 0, 1), at(0, 0, 7))] {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{a} vs {b}");
        assert!(a > 0.1, "the source should have crossed the walls: {a}");
    }
}

#[test]
fn new_builds_the_explicit_scheme() {
    let Some(gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    assert_eq!(gpu.scheme(), Scheme::Explicit);
}

#[test]
fn mass_is_conserved_on_the_gpu_with_zero_flux_walls() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let grid = Grid { nx: 32, ny: 32, nz: 1, dx: 10.0, origin: [0.0; 3] };
    let mut f = Field::zeros(grid, 1);
    f.data[16 * 32 + 5] = 1000.0;
    let before = f.total(0);
    let p = [ChannelParams::new(1000.0, 0.0)];
    for _ in 0..50 {
        gpu.step(&mut f, &p, 0.1).unwrap();
    }
    let after = f.total(0);
    assert!(((after - before) / before).abs() < 1e-5, "{before} -> {after}");
    assert!(f.data[16 * 32 + 5] < 100.0, "the source should have spread");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let grid = Grid { nx: 8, ny: 8, nz: 1, dx: 10.0, origin: [0.0; 3] };
    let mut f = Field::zeros(grid, 2);
    let one = [ChannelParams::new(1.0, 0.0)];
    assert!(matches!(gpu.step(&mut f, &one, 1.0), Err(FieldError::ChannelMismatch { field: 2, params: 1 })));
    let two = two_channels();
    assert!(matches!(gpu.step(&mut f, &two, -1.0), Err(FieldError::BadTimeStep { .. })));
    f.data.pop();
    match gpu.step(&mut f, &two, 1.0) {
        Err(FieldError::Backend { backend, message }) => {
            assert!(backend.contains(&gpu.adapter_info().name), "{backend}");
            assert!(message.contains("`8×8×1`"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    // An empty grid is a no-op, as on the CPU.
    let mut empty = Field::zeros(Grid { nx: 0, ny: 8, nz: 1, dx: 10.0, origin: [0.0; 3] }, 2);
    gpu.step(&mut empty, &two, 1.0).unwrap();
}

#[test]
fn the_name_says_adapter_backend_and_device_type() {
    let Some(gpu) = gpu_or_skip(Scheme::Explicit) else { return };
    let info = gpu.adapter_info();
    let name = gpu.name();
    assert!(name.starts_with("gpu"), "{name}");
    assert!(name.contains(&info.name), "{name}");
    assert!(name.contains(&info.backend.to_string()), "{name}");
    assert!(name.contains(&format!("{:?}", info.device_type)), "{name}");
}

#[test]
fn hardware_only_never_returns_a_software_adapter() {
    match GpuDiffusion::new(AdapterPolicy::HardwareOnly) {
        Ok(gpu) => assert_ne!(gpu.adapter_info().device_type, wgpu::DeviceType::Cpu, "{}", gpu.name()),
        Err(e) => {
            let message = e.to_string();
            eprintln!("hardware-only: {message}");
            assert!(!message.ends_with('.'), "{message}");
        }
    }
}

#[test]
fn diffuse_wgsl_parses_and_validates_with_naga() {
    assert_valid_wgsl("shaders/diffuse.wgsl", DIFFUSE_WGSL, DIFFUSE_ENTRY_POINT, [8, 8, 1]);
}
