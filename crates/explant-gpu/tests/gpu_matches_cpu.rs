//! The GPU path against the CPU reference, and the kernel source against `naga`.
//!
//! GPU tests need a wgpu adapter (Mesa's lavapipe is enough). Without one they print
//! `SKIPPED: no wgpu adapter: …` and pass, unless `EXPLANT_REQUIRE_GPU_ADAPTER=1`, in
//! which case they fail: set it wherever an adapter is known to exist (CI with lavapipe).

use explant_field::{ChannelParams, CpuDiffusion, DiffusionBackend, Field, FieldError, Grid, substeps};
use explant_gpu::{AdapterPolicy, DIFFUSE_ENTRY_POINT, DIFFUSE_WGSL, GpuDiffusion};

/// Largest `|gpu − cpu| / max |cpu|` accepted.
const TOLERANCE: f64 = 1e-5;

/// Print the loud skip message, or fail when `EXPLANT_REQUIRE_GPU_ADAPTER=1`.
fn skip_without_adapter(error: &dyn std::fmt::Display) {
    if std::env::var("EXPLANT_REQUIRE_GPU_ADAPTER").is_ok_and(|v| v == "1") {
        panic!("EXPLANT_REQUIRE_GPU_ADAPTER=1 but there is no wgpu adapter: {error}");
    }
    eprintln!("SKIPPED: no wgpu adapter: {error}");
}

/// A solver on any adapter, or `None` after [`skip_without_adapter`].
fn gpu_or_skip() -> Option<GpuDiffusion> {
    match GpuDiffusion::new(AdapterPolicy::Any) {
        Ok(gpu) => {
            eprintln!("using {}", gpu.name());
            Some(gpu)
        }
        Err(e) => {
            skip_without_adapter(&e);
            None
        }
    }
}

/// Deterministic values in [0, 10) with structure at every scale (xorshift noise plus
/// a few hot spots), so the Laplacian is far from zero everywhere.
fn noisy_field(grid: Grid, channels: usize) -> Field {
    let mut f = Field::zeros(grid, channels);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for v in &mut f.data {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *v = (state >> 40) as f32 / (1u64 << 24) as f32 * 10.0;
    }
    let voxels = grid.voxels();
    for c in 0..channels {
        f.data[c * voxels + voxels / 3] += 500.0;
        f.data[c * voxels + voxels - 1] += 200.0; // a corner: exercises the walls
    }
    f
}

/// `max |a − b| / max |b|` over all values.
fn relative_difference(gpu: &[f32], cpu: &[f32]) -> f64 {
    assert_eq!(gpu.len(), cpu.len());
    let scale = cpu.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let diff = gpu.iter().zip(cpu).fold(0.0f64, |m, (&g, &c)| m.max((f64::from(g) - f64::from(c)).abs()));
    diff / scale
}

/// Step the same field on both backends with each `dt` in turn (reusing the GPU
/// buffers), and return the worst relative difference after any step.
fn compare(gpu: &mut GpuDiffusion, grid: Grid, params: &[ChannelParams], dts: &[f32]) -> f64 {
    let initial = noisy_field(grid, params.len());
    let mut on_gpu = initial.clone();
    let mut on_cpu = initial.clone();
    let mut cpu = CpuDiffusion::new();
    let mut worst = 0.0f64;
    for &dt in dts {
        let plan = substeps(&grid, params, dt).unwrap();
        gpu.step(&mut on_gpu, params, dt).unwrap();
        cpu.step(&mut on_cpu, params, dt).unwrap();
        let rel = relative_difference(&on_gpu.data, &on_cpu.data);
        eprintln!(
            "{}×{}×{}, dt {dt} ({} substeps): max |gpu − cpu| / max |cpu| = {rel:.3e}",
            grid.nx, grid.ny, grid.nz, plan.count
        );
        worst = worst.max(rel);
    }
    assert!(on_cpu.data.iter().all(|v| v.is_finite()));
    // Guard against a vacuous match: the steps must have changed the field a lot.
    let moved = relative_difference(&on_cpu.data, &initial.data);
    assert!(moved > 0.1, "the field barely changed ({moved:.3e}); the comparison would prove little");
    worst
}

fn two_channels() -> [ChannelParams; 2] {
    [ChannelParams { diffusion: 400.0, decay: 0.02 }, ChannelParams { diffusion: 60.0, decay: 0.3 }]
}

#[test]
fn gpu_matches_cpu_on_a_2d_field() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let grid = Grid { nx: 96, ny: 80, nz: 1, dx: 10.0, origin: [0.0; 3] };
    let params = two_channels();
    // 0.5 min is 9 substeps (odd: the result ends in the pong buffer), 0.45 is 8 (even).
    assert_eq!(substeps(&grid, &params, 0.5).unwrap().count, 9);
    assert_eq!(substeps(&grid, &params, 0.45).unwrap().count, 8);
    let worst = compare(&mut gpu, grid, &params, &[0.5, 0.45, 0.5]);
    assert!(worst < TOLERANCE, "2D: max relative difference {worst:.3e}");
}

#[test]
fn gpu_matches_cpu_on_a_3d_field() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let grid = Grid { nx: 24, ny: 20, nz: 16, dx: 10.0, origin: [0.0; 3] };
    let params = [
        ChannelParams { diffusion: 300.0, decay: 0.05 },
        ChannelParams { diffusion: 20.0, decay: 0.0 },
        ChannelParams { diffusion: 0.0, decay: 0.5 },
    ];
    let plan = substeps(&grid, &params, 0.4).unwrap();
    assert!(plan.count > 1, "the test should take several substeps");
    let worst = compare(&mut gpu, grid, &params, &[0.4, 0.4]);
    assert!(worst < TOLERANCE, "3D: max relative difference {worst:.3e}");
}

#[test]
fn buffers_are_rebuilt_when_the_grid_or_channel_count_changes() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let flat = Grid { nx: 40, ny: 33, nz: 1, dx: 8.0, origin: [0.0; 3] };
    let deep = Grid { nx: 17, ny: 9, nz: 5, dx: 8.0, origin: [0.0; 3] };
    let two = two_channels();
    let one = [ChannelParams { diffusion: 150.0, decay: 0.1 }];
    for (grid, params) in [(flat, &two[..]), (deep, &two[..]), (deep, &one[..]), (flat, &two[..])] {
        let worst = compare(&mut gpu, grid, params, &[0.3]);
        assert!(worst < TOLERANCE, "{}×{}×{}: {worst:.3e}", grid.nx, grid.ny, grid.nz);
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
    let worst = compare(&mut gpu, grid, &two_channels(), &[0.5]);
    assert!(worst < TOLERANCE, "injected device: {worst:.3e}");
}

#[test]
fn mass_is_conserved_on_the_gpu_with_zero_flux_walls() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let grid = Grid { nx: 32, ny: 32, nz: 1, dx: 10.0, origin: [0.0; 3] };
    let mut f = Field::zeros(grid, 1);
    f.data[16 * 32 + 5] = 1000.0;
    let before = f.total(0);
    let p = [ChannelParams { diffusion: 1000.0, decay: 0.0 }];
    for _ in 0..50 {
        gpu.step(&mut f, &p, 0.1).unwrap();
    }
    let after = f.total(0);
    assert!(((after - before) / before).abs() < 1e-5, "{before} -> {after}");
    assert!(f.data[16 * 32 + 5] < 100.0, "the source should have spread");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let grid = Grid { nx: 8, ny: 8, nz: 1, dx: 10.0, origin: [0.0; 3] };
    let mut f = Field::zeros(grid, 2);
    let one = [ChannelParams { diffusion: 1.0, decay: 0.0 }];
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
    let Some(gpu) = gpu_or_skip() else { return };
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
    let module = match naga::front::wgsl::parse_str(DIFFUSE_WGSL) {
        Ok(m) => m,
        Err(e) => panic!("shaders/diffuse.wgsl does not parse:\n{}", e.emit_to_string(DIFFUSE_WGSL)),
    };
    let mut validator =
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty());
    if let Err(e) = validator.validate(&module) {
        panic!("shaders/diffuse.wgsl does not validate:\n{}", e.emit_to_string(DIFFUSE_WGSL));
    }
    let entry = module.entry_points.iter().find(|ep| ep.name == DIFFUSE_ENTRY_POINT);
    let entry = entry.unwrap_or_else(|| panic!("no entry point `{DIFFUSE_ENTRY_POINT}`"));
    assert_eq!(entry.stage, naga::ShaderStage::Compute);
    assert_eq!(entry.workgroup_size, [8, 8, 1]);
}
