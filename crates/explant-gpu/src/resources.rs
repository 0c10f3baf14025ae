//! Buffers and bind groups of the explicit scheme for one grid shape, built once and
//! reused every step (the implicit scheme's are in `implicit.rs`).
//!
//! Each ligand channel gets its own pair of ping-pong storage buffers, a small uniform
//! with its constants and a read-back buffer. Splitting by channel keeps every storage
//! binding at one channel's size, so the binding limit (128 MiB by default) caps the
//! grid, not the grid times the number of ligands.

use std::num::NonZeroU64;

use bytemuck::{Pod, Zeroable};
use explant_field::{Boundary, Faces};

/// Workgroup edge in x and y; must match `@workgroup_size` in `shaders/diffuse.wgsl`.
pub(crate) const WORKGROUP_XY: u32 = 8;

/// Boundary kind codes of the `kind` entries in [`KernelParams`]; must match the
/// `ZERO_FLUX`, `FIXED` and `PERIODIC` constants in `shaders/diffuse.wgsl`.
pub(crate) mod face_kind {
    /// [`Boundary::ZeroFlux`](explant_field::Boundary::ZeroFlux).
    pub const ZERO_FLUX: u32 = 0;
    /// [`Boundary::Fixed`](explant_field::Boundary::Fixed).
    pub const FIXED: u32 = 1;
    /// [`Boundary::Periodic`](explant_field::Boundary::Periodic).
    pub const PERIODIC: u32 = 2;
}

/// The `Params` uniform of `shaders/diffuse.wgsl`, byte for byte (96 bytes).
///
/// | bytes  | fields                              |
/// |--------|-------------------------------------|
/// | 0–31   | `nx ny nz a`, `kdt faces pad pad`   |
/// | 32–63  | `kind[8]`: x− x+ y− y+, z− z+ − −   |
/// | 64–95  | `value[8]`, same order              |
///
/// WGSL uniform arrays need a 16-byte element stride, so the shader declares the
/// per-face entries as `array<vec4<u32>, 2>` and `array<vec4<f32>, 2>`, which have
/// exactly the layout of `[u32; 8]` and `[f32; 8]`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct KernelParams {
    pub nx: u32,
    pub ny: u32,
    pub nz: u32,
    /// `D Δt / Δx²`.
    pub a: f32,
    /// `k Δt`.
    pub kdt: f32,
    /// `2 · dims`.
    pub faces: f32,
    pub pad: [u32; 2],
    /// [`face_kind`] code of each face, in [`explant_field::Faces`] order; the last two
    /// are padding.
    pub kind: [u32; 8],
    /// The held value of each [`face_kind::FIXED`] face, 0 elsewhere.
    pub value: [f32; 8],
}

impl KernelParams {
    /// The uniform for one channel: grid size, substep constants and the six faces.
    pub fn new(nx: u32, ny: u32, nz: u32, a: f32, kdt: f32, faces: f32, boundary: &Faces) -> Self {
        let mut kind = [face_kind::ZERO_FLUX; 8];
        let mut value = [0.0; 8];
        for (f, b) in boundary.iter().enumerate() {
            (kind[f], value[f]) = match *b {
                Boundary::ZeroFlux => (face_kind::ZERO_FLUX, 0.0),
                Boundary::Fixed { value } => (face_kind::FIXED, value),
                Boundary::Periodic => (face_kind::PERIODIC, 0.0),
            };
        }
        Self { nx, ny, nz, a, kdt, faces, pad: [0; 2], kind, value }
    }
}

/// Size of [`KernelParams`] in bytes.
const PARAMS_SIZE: u64 = std::mem::size_of::<KernelParams>() as u64;

/// What the resources were built for; a change means a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub nx: usize,
    pub ny: usize,
    pub nz: usize,
    pub channels: usize,
}

impl Shape {
    pub fn voxels(&self) -> usize {
        self.nx * self.ny * self.nz
    }

    /// Bytes of one channel.
    pub fn channel_bytes(&self) -> u64 {
        self.voxels() as u64 * 4
    }

    /// Workgroups to dispatch for one channel.
    pub fn workgroups(&self) -> [u32; 3] {
        // `fits` has checked these convert.
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        [n(self.nx).div_ceil(WORKGROUP_XY), n(self.ny).div_ceil(WORKGROUP_XY), n(self.nz)]
    }

    /// Check that the explicit kernel can run this grid under `limits`, with a message
    /// that says which limit is exceeded.
    pub fn fits(&self, limits: &wgpu::Limits) -> Result<(), String> {
        self.fits_memory(limits)?;
        let dims = format!("`{}×{}×{}`", self.nx, self.ny, self.nz);
        let max = limits.max_compute_workgroups_per_dimension;
        let [wx, wy, wz] = self.workgroups();
        if [wx, wy, wz].iter().any(|&w| w > max) {
            return Err(format!(
                "the {dims} grid needs `{wx}×{wy}×{wz}` workgroups, more than this device's \
                 `max_compute_workgroups_per_dimension` of {max}"
            ));
        }
        Ok(())
    }

    /// Check that one channel of this grid can be indexed in `u32` and stored in one
    /// buffer binding under `limits` (both schemes).
    pub fn fits_memory(&self, limits: &wgpu::Limits) -> Result<(), String> {
        let dims = format!("`{}×{}×{}`", self.nx, self.ny, self.nz);
        if u32::try_from(self.voxels()).is_err() {
            return Err(format!("the {dims} grid has more than 2^32 voxels, which the kernel cannot index"));
        }
        let bytes = self.channel_bytes();
        let binding = limits.max_storage_buffer_binding_size;
        if bytes > binding {
            return Err(format!(
                "one ligand channel of the {dims} grid needs {bytes} bytes, more than this device's \
                 `max_storage_buffer_binding_size` of {binding} bytes; use a coarser grid or the CPU backend"
            ));
        }
        if bytes > limits.max_buffer_size {
            return Err(format!(
                "one ligand channel of the {dims} grid needs {bytes} bytes, more than this device's \
                 `max_buffer_size` of {} bytes; use a coarser grid or the CPU backend",
                limits.max_buffer_size
            ));
        }
        Ok(())
    }
}

/// The GPU side of one ligand channel.
#[derive(Debug)]
pub(crate) struct ChannelBuffers {
    /// Holds the field at even substeps (and the upload).
    pub ping: wgpu::Buffer,
    /// Holds the field at odd substeps.
    pub pong: wgpu::Buffer,
    /// This channel's [`KernelParams`].
    pub params: wgpu::Buffer,
    /// Mappable copy of the result.
    pub readback: wgpu::Buffer,
    /// `[ping → pong, pong → ping]`: substep `s` uses `bind_groups[s % 2]`.
    pub bind_groups: [wgpu::BindGroup; 2],
}

impl ChannelBuffers {
    /// The buffer holding the result after `substeps` substeps.
    pub fn result(&self, substeps: u32) -> &wgpu::Buffer {
        if substeps.is_multiple_of(2) { &self.ping } else { &self.pong }
    }
}

/// All buffers for one [`Shape`].
#[derive(Debug)]
pub(crate) struct Resources {
    pub shape: Shape,
    pub channels: Vec<ChannelBuffers>,
}

impl Resources {
    /// Allocate buffers and bind groups for `shape`. Callers check [`Shape::fits`]
    /// first and wrap this in error scopes.
    pub fn new(device: &wgpu::Device, layout: &wgpu::BindGroupLayout, shape: Shape) -> Self {
        let bytes = shape.channel_bytes();
        let storage = |label: &str| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let channels = (0..shape.channels)
            .map(|_| {
                let ping = storage("explant-gpu ping");
                let pong = storage("explant-gpu pong");
                let params = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("explant-gpu params"),
                    size: PARAMS_SIZE,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let readback = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("explant-gpu readback"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let bind = |src: &wgpu::Buffer, dst: &wgpu::Buffer| {
                    device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("explant-gpu substep"),
                        layout,
                        entries: &[
                            wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                            wgpu::BindGroupEntry { binding: 1, resource: src.as_entire_binding() },
                            wgpu::BindGroupEntry { binding: 2, resource: dst.as_entire_binding() },
                        ],
                    })
                };
                let bind_groups = [bind(&ping, &pong), bind(&pong, &ping)];
                ChannelBuffers { ping, pong, params, readback, bind_groups }
            })
            .collect();
        Self { shape, channels }
    }
}

/// One compute-stage buffer binding of a bind-group layout: `uniform`, `read` (read-only
/// storage) or `write` (read–write storage), at least `min` bytes.
pub(crate) fn buffer_entry(binding: u32, kind: Binding, min: u64) -> wgpu::BindGroupLayoutEntry {
    let ty = match kind {
        Binding::Uniform => wgpu::BufferBindingType::Uniform,
        Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
        Binding::Write => wgpu::BufferBindingType::Storage { read_only: false },
    };
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: NonZeroU64::new(min) },
        count: None,
    }
}

/// The kinds of buffer binding of [`buffer_entry`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Binding {
    Uniform,
    Read,
    Write,
}

/// The layout matching `shaders/diffuse.wgsl`'s group 0.
pub(crate) fn bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("explant-gpu diffuse"),
        entries: &[
            buffer_entry(0, Binding::Uniform, PARAMS_SIZE),
            buffer_entry(1, Binding::Read, 4),
            buffer_entry(2, Binding::Write, 4),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(nx: usize, ny: usize, nz: usize) -> Shape {
        Shape { nx, ny, nz, channels: 8 }
    }

    #[test]
    fn kernel_params_match_the_wgsl_struct_size() {
        // 6 scalars + 2 padding words, then two `array<vec4<_>, 2>`, as declared in
        // `shaders/diffuse.wgsl`.
        assert_eq!(PARAMS_SIZE, 96);
        assert_eq!(std::mem::offset_of!(KernelParams, kind), 32);
        assert_eq!(std::mem::offset_of!(KernelParams, value), 64);
    }

    #[test]
    fn boundaries_are_encoded_face_by_face() {
        let faces = [
            Boundary::Fixed { value: 2.5 },
            Boundary::ZeroFlux,
            Boundary::Periodic,
            Boundary::Periodic,
            Boundary::ZeroFlux,
            Boundary::Fixed { value: -1.0 },
        ];
        let kp = KernelParams::new(4, 5, 6, 0.1, 0.01, 6.0, &faces);
        let (z, f, p) = (face_kind::ZERO_FLUX, face_kind::FIXED, face_kind::PERIODIC);
        assert_eq!(kp.kind, [f, z, p, p, z, f, z, z]);
        assert_eq!(kp.value, [2.5, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0]);
    }

    #[test]
    fn the_kind_codes_match_the_shader() {
        for (name, code) in
            [("ZERO_FLUX", face_kind::ZERO_FLUX), ("FIXED", face_kind::FIXED), ("PERIODIC", face_kind::PERIODIC)]
        {
            let decl = format!("const {name}: u32 = {code}u;");
            assert!(crate::DIFFUSE_WGSL.contains(&decl), "`shaders/diffuse.wgsl` lacks `{decl}`");
        }
    }

    #[test]
    fn the_default_binding_limit_caps_one_channel_not_all_of_them() {
        let limits = wgpu::Limits::default();
        // 2048² f32 is exactly 16 MiB per channel: eight channels would be 128 MiB in one
        // buffer, but per-channel buffers stay far below the limit.
        assert_eq!(shape(2048, 2048, 1).fits(&limits), Ok(()));
        // 6000² f32 is 137 MB, over the 128 MiB binding limit for a single channel.
        let err = shape(6000, 6000, 1).fits(&limits).unwrap_err();
        assert!(err.contains("max_storage_buffer_binding_size"), "{err}");
        assert!(err.contains("`6000×6000×1`"), "{err}");
        // Limits raised from the adapter make it fit.
        let big = wgpu::Limits { max_storage_buffer_binding_size: 1 << 30, max_buffer_size: 1 << 30, ..limits };
        assert_eq!(shape(6000, 6000, 1).fits(&big), Ok(()));
    }

    #[test]
    fn too_many_workgroups_are_reported() {
        let limits = wgpu::Limits { max_compute_workgroups_per_dimension: 4, ..wgpu::Limits::default() };
        let err = shape(64, 8, 5).fits(&limits).unwrap_err();
        assert!(err.contains("max_compute_workgroups_per_dimension"), "{err}");
        assert_eq!(shape(32, 32, 4).workgroups(), [4, 4, 4]);
    }
}
