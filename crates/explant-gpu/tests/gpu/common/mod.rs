//! Helpers shared by the GPU test modules.

use explant_field::{ChannelParams, DiffusionBackend, Faces, Field, Grid, Scheme};
use explant_gpu::{AdapterPolicy, GpuDiffusion};

/// Largest `|gpu − cpu| / max |cpu|` accepted.
pub const TOLERANCE: f64 = 1e-5;

/// Print the loud skip message, or fail when `EXPLANT_REQUIRE_GPU_ADAPTER=1`.
pub fn skip_without_adapter(error: &dyn std::fmt::Display) {
    if std::env::var("EXPLANT_REQUIRE_GPU_ADAPTER").is_ok_and(|v| v == "1") {
        panic!("EXPLANT_REQUIRE_GPU_ADAPTER=1 but there is no wgpu adapter: {error}");
    }
    eprintln!("SKIPPED: no wgpu adapter: {error}");
}

/// A solver for `scheme` on any adapter, or `None` after [`skip_without_adapter`].
pub fn gpu_or_skip(scheme: Scheme) -> Option<GpuDiffusion> {
    match GpuDiffusion::with_scheme(AdapterPolicy::Any, scheme) {
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

/// Deterministic non-negative values in [0, 10) (xorshift noise) plus a few hot spots.
pub fn noisy_field(grid: Grid, channels: usize) -> Field {
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
pub fn relative_difference(gpu: &[f32], cpu: &[f32]) -> f64 {
    assert_eq!(gpu.len(), cpu.len());
    let scale = cpu.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let diff = gpu.iter().zip(cpu).fold(0.0f64, |m, (&g, &c)| m.max((f64::from(g) - f64::from(c)).abs()));
    diff / scale
}

/// A channel with the given faces.
pub fn with_faces(diffusion: f32, decay: f32, boundary: Faces) -> ChannelParams {
    ChannelParams { boundary, ..ChannelParams::new(diffusion, decay) }
}

/// Parse and validate a WGSL shader with naga, and check its compute entry point and
/// workgroup size.
pub fn assert_valid_wgsl(file: &str, source: &str, entry_point: &str, workgroup_size: [u32; 3]) {
    let module = match naga::front::wgsl::parse_str(source) {
        Ok(m) => m,
        Err(e) => panic!("{file} does not parse:\n{}", e.emit_to_string(source)),
    };
    let mut validator =
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty());
    if let Err(e) = validator.validate(&module) {
        panic!("{file} does not validate:\n{}", e.emit_to_string(source));
    }
    let entry = module.entry_points.iter().find(|ep| ep.name == entry_point);
    let entry = entry.unwrap_or_else(|| panic!("no entry point `{entry_point}` in {file}"));
    assert_eq!(entry.stage, naga::ShaderStage::Compute);
    assert_eq!(entry.workgroup_size, workgroup_size);
}
