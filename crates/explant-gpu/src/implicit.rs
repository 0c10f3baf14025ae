//! Buffers, coefficients and dispatches of the implicit (LOD) scheme on the GPU.
//!
//! Per channel: one storage buffer holding the field, solved in place (the lines of one
//! axis are independent, so no ping-pong is needed), a mappable read-back buffer, and
//! for each swept axis a 48-byte [`LineParams`] uniform, a storage buffer of the
//! interleaved Thomas coefficients `(lower, upper, inv, z)` of that axis (one `vec4` per
//! voxel of a line) and the bind group over the three. The coefficients are those of
//! [`explant_field::implicit::coefficients`], uploaded only when the grid, the channel
//! parameters or `Δt` change.

use bytemuck::{Pod, Zeroable};
use explant_field::implicit::{LineCoefficients, scaled_coefficients};
use explant_field::{ChannelParams, Grid};

use crate::resources::Shape;

/// Lines solved per workgroup; must match `@workgroup_size` and `WORKGROUP` in
/// `shaders/implicit.wgsl`.
pub(crate) const WORKGROUP: u32 = 64;

/// Floats of workgroup memory the shared x sweep (`sweep_x_shared`) tiles lines into;
/// must match `TILE` in `shaders/implicit.wgsl`.
pub(crate) const TILE: u32 = 4000;

/// The shared x sweep is used when a workgroup holds at least this many lines (x lines
/// of up to 499 voxels); longer lines take the one-invocation-per-line kernel.
pub(crate) const MIN_SHARED_LINES: u32 = 8;

/// Lines per workgroup of the shared x sweep for lines of `n` voxels, as the shader
/// computes it, or `None` when the plain kernel is used instead.
pub(crate) fn shared_lines(n: u32) -> Option<u32> {
    let pitch = n | 1;
    let per_group = WORKGROUP.min(TILE / pitch);
    (per_group >= MIN_SHARED_LINES).then_some(per_group)
}

/// Bits of [`LineParams::flags`]; must match the constants in `shaders/implicit.wgsl`.
pub(crate) mod flags {
    /// The low face is `Fixed`: add `rhs_lo` to `d[0]` first.
    pub const FIXED_LO: u32 = 1;
    /// The high face is `Fixed`: add `rhs_hi` to `d[n−1]`.
    pub const FIXED_HI: u32 = 2;
    /// A periodic line of three or more voxels: apply the Sherman–Morrison correction.
    pub const CYCLIC: u32 = 4;
}

/// The `Line` uniform of `shaders/implicit.wgsl`, byte for byte (48 bytes): which voxels
/// make up the lines of one axis, and the scalar coefficients of those lines.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct LineParams {
    /// Voxels on a line.
    pub n: u32,
    /// Index step between consecutive voxels of a line.
    pub stride: u32,
    /// Number of lines.
    pub lines: u32,
    /// Line `l` starts at `(l % inner) * inner_step + (l / inner) * outer_step`.
    pub inner: u32,
    pub inner_step: u32,
    pub outer_step: u32,
    /// [`flags`] bits.
    pub flags: u32,
    pub pad: u32,
    pub rhs_lo: f32,
    pub rhs_hi: f32,
    pub q: f32,
    pub r: f32,
}

/// Size of [`LineParams`] in bytes.
const LINE_PARAMS_SIZE: u64 = std::mem::size_of::<LineParams>() as u64;

impl LineParams {
    /// The uniform of `axis` (0 = x, 1 = y, 2 = z) of a `nx × ny × nz` grid whose voxel
    /// count fits in `u32` (checked by [`Shape::fits_memory`]).
    pub fn new(axis: usize, shape: &Shape, co: &LineCoefficients) -> Self {
        let (nx, ny, nz) = (shape.nx as u32, shape.ny as u32, shape.nz as u32);
        // (n, stride, lines, inner, inner_step, outer_step)
        let (n, stride, lines, inner, inner_step, outer_step) = match axis {
            0 => (nx, 1, ny * nz, 1, 0, nx),
            1 => (ny, nx, nx * nz, nx, 1, nx * ny),
            _ => (nz, nx * ny, nx * ny, nx * ny, 1, 0),
        };
        let mut bits = 0;
        if co.rhs_lo.is_some() {
            bits |= flags::FIXED_LO;
        }
        if co.rhs_hi.is_some() {
            bits |= flags::FIXED_HI;
        }
        let (q, r) = match &co.cyclic {
            Some(cy) => {
                bits |= flags::CYCLIC;
                (cy.q, cy.r)
            }
            None => (0.0, 0.0),
        };
        Self {
            n,
            stride,
            lines,
            inner,
            inner_step,
            outer_step,
            flags: bits,
            pad: 0,
            rhs_lo: co.rhs_lo.unwrap_or(0.0),
            rhs_hi: co.rhs_hi.unwrap_or(0.0),
            q,
            r,
        }
    }
}

/// `(lower[i], upper[i], inv[i], z[i])` for every voxel of a line, as the shader reads
/// them (`z` is 0 without the cyclic correction).
pub(crate) fn interleave(co: &LineCoefficients) -> Vec<[f32; 4]> {
    (0..co.len()).map(|i| [co.lower[i], co.upper[i], co.inv[i], co.cyclic.as_ref().map_or(0.0, |cy| cy.z[i])]).collect()
}

/// Workgroups `[x, y]` covering `lines` lines of [`WORKGROUP`], spread over two
/// dimensions so that no dimension exceeds `max`; `None` if even that is not enough.
pub(crate) fn workgroups(lines: u32, max: u32) -> Option<[u32; 2]> {
    spread(lines.div_ceil(WORKGROUP), max)
}

/// `groups` workgroups (at least one) spread over two dimensions of at most `max`.
pub(crate) fn spread(groups: u32, max: u32) -> Option<[u32; 2]> {
    let groups = groups.max(1);
    let wx = groups.min(max.max(1));
    let wy = groups.div_ceil(wx);
    (wy <= max).then_some([wx, wy])
}

/// The number of axes swept on this shape: 2 in 2D, 3 in 3D.
fn axes(shape: &Shape) -> usize {
    if shape.nz == 1 { 2 } else { 3 }
}

/// Check that the implicit sweeps can run `shape` under `limits`.
pub(crate) fn fits(shape: &Shape, limits: &wgpu::Limits) -> Result<(), String> {
    shape.fits_memory(limits)?;
    let max = limits.max_compute_workgroups_per_dimension;
    for axis in 0..axes(shape) {
        let lines = (shape.voxels() / [shape.nx, shape.ny, shape.nz][axis]) as u32;
        if workgroups(lines, max).is_none() {
            return Err(format!(
                "the `{}×{}×{}` grid has {lines} lines along axis {axis}, more than this device's \
                 `max_compute_workgroups_per_dimension` of {max} allows",
                shape.nx, shape.ny, shape.nz
            ));
        }
    }
    Ok(())
}

/// The buffers of one swept axis of one channel.
#[derive(Debug)]
pub(crate) struct AxisBuffers {
    /// This axis's [`LineParams`].
    pub params: wgpu::Buffer,
    /// The interleaved coefficients, one `vec4<f32>` per voxel of a line.
    pub coef: wgpu::Buffer,
    /// `params`, `coef` and the channel's field.
    pub bind_group: wgpu::BindGroup,
    /// Workgroups to dispatch for this axis.
    pub workgroups: [u32; 2],
    /// This axis is swept by `sweep_x_shared` (x lines short enough to tile).
    pub shared: bool,
}

/// The GPU side of one ligand channel.
#[derive(Debug)]
pub(crate) struct ChannelBuffers {
    /// The field, solved in place.
    pub field: wgpu::Buffer,
    /// Mappable copy of the result.
    pub readback: wgpu::Buffer,
    /// x, y (and z in 3D).
    pub axes: Vec<AxisBuffers>,
}

/// All buffers of the implicit scheme for one [`Shape`], and the key of the coefficients
/// they hold.
#[derive(Debug)]
pub(crate) struct LodResources {
    pub shape: Shape,
    pub channels: Vec<ChannelBuffers>,
    /// `(grid, params, dt bits, scale bits, affine)` of the uploaded coefficients; `None`
    /// before the first.
    key: Option<(Grid, Vec<ChannelParams>, u32, u64, bool)>,
}

impl LodResources {
    /// Allocate buffers and bind groups for `shape`. Callers check [`fits`] first and
    /// wrap this in error scopes.
    pub fn new(device: &wgpu::Device, layout: &wgpu::BindGroupLayout, shape: Shape) -> Self {
        let bytes = shape.channel_bytes();
        let max = device.limits().max_compute_workgroups_per_dimension;
        let n = [shape.nx, shape.ny, shape.nz];
        let channels = (0..shape.channels)
            .map(|_| {
                let field = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("explant-gpu implicit field"),
                    size: bytes,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let readback = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("explant-gpu implicit readback"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let axes = (0..axes(&shape))
                    .map(|axis| {
                        let params = device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("explant-gpu implicit line params"),
                            size: LINE_PARAMS_SIZE,
                            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                            mapped_at_creation: false,
                        });
                        let coef = device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("explant-gpu implicit coefficients"),
                            size: n[axis] as u64 * 16,
                            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                            mapped_at_creation: false,
                        });
                        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("explant-gpu implicit sweep"),
                            layout,
                            entries: &[
                                wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                                wgpu::BindGroupEntry { binding: 1, resource: coef.as_entire_binding() },
                                wgpu::BindGroupEntry { binding: 2, resource: field.as_entire_binding() },
                            ],
                        });
                        let lines = (shape.voxels() / n[axis]) as u32;
                        let tiled = if axis == 0 { shared_lines(n[0] as u32) } else { None };
                        // `fits` has checked that these succeed.
                        let workgroups = match tiled {
                            Some(per_group) => spread(lines.div_ceil(per_group), max),
                            None => workgroups(lines, max),
                        }
                        .unwrap_or([max, max]);
                        AxisBuffers { params, coef, bind_group, workgroups, shared: tiled.is_some() }
                    })
                    .collect();
                ChannelBuffers { field, readback, axes }
            })
            .collect();
        Self { shape, channels, key: None }
    }

    /// Upload the coefficients for `(grid, params, dt)` unless they are already there:
    /// LOD's (`scale` 1, `affine`), or the ADI half set (`scale` ½; `affine` false for
    /// the homogeneous solves of the increment, true for a damped half step).
    pub fn update_coefficients(
        &mut self,
        queue: &wgpu::Queue,
        grid: &Grid,
        params: &[ChannelParams],
        dt: f32,
        scale: f64,
        affine: bool,
    ) {
        let fresh = matches!(&self.key, Some((kg, kp, kdt, ks, ka))
            if kg == grid && kp == params && *kdt == dt.to_bits() && *ks == scale.to_bits() && *ka == affine);
        if fresh {
            return;
        }
        for (buffers, mut co) in self.channels.iter().zip(scaled_coefficients(grid, params, dt, scale)) {
            for (axis, ab) in buffers.axes.iter().enumerate() {
                if !affine {
                    co[axis].rhs_lo = None;
                    co[axis].rhs_hi = None;
                }
                let lp = LineParams::new(axis, &self.shape, &co[axis]);
                queue.write_buffer(&ab.params, 0, bytemuck::bytes_of(&lp));
                queue.write_buffer(&ab.coef, 0, bytemuck::cast_slice(&interleave(&co[axis])));
            }
        }
        self.key = Some((*grid, params.to_vec(), dt.to_bits(), scale.to_bits(), affine));
    }

    /// Record the x, y (and z) sweeps of every channel: axis-major, so that the
    /// channels of one sweep are independent dispatches the driver may overlap, then
    /// the copies into the read-back buffers.
    /// `repeats` whole steps are recorded one after the other (a damped ADI step is two).
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, pipelines: &Pipelines, repeats: usize) {
        self.encode_sweeps(encoder, pipelines, repeats);
        self.encode_copies(encoder);
    }

    /// The sweeps of [`LodResources::encode`] alone: the field stays where it is.
    pub fn encode_sweeps(&self, encoder: &mut wgpu::CommandEncoder, pipelines: &Pipelines, repeats: usize) {
        for _ in 0..repeats {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("explant-gpu sweeps"),
                timestamp_writes: None,
            });
            for axis in 0..axes(&self.shape) {
                for buffers in &self.channels {
                    let ab = &buffers.axes[axis];
                    pass.set_pipeline(if ab.shared { &pipelines.shared_x } else { &pipelines.sweep });
                    pass.set_bind_group(0, &ab.bind_group, &[]);
                    pass.dispatch_workgroups(ab.workgroups[0], ab.workgroups[1], 1);
                }
            }
        }
    }

    /// The copies of every channel's field into its read-back buffer.
    pub fn encode_copies(&self, encoder: &mut wgpu::CommandEncoder) {
        for buffers in &self.channels {
            encoder.copy_buffer_to_buffer(&buffers.field, 0, &buffers.readback, 0, Some(self.shape.channel_bytes()));
        }
    }
}

/// The two kernels of `shaders/implicit.wgsl`: one invocation per line (`sweep`), and
/// the x sweep through workgroup memory (`sweep_x_shared`).
#[derive(Debug)]
pub(crate) struct Pipelines {
    pub sweep: wgpu::ComputePipeline,
    pub shared_x: wgpu::ComputePipeline,
}

/// The layout matching `shaders/implicit.wgsl`'s group 0.
pub(crate) fn bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    use crate::resources::{Binding, buffer_entry};
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("explant-gpu implicit"),
        entries: &[
            buffer_entry(0, Binding::Uniform, LINE_PARAMS_SIZE),
            buffer_entry(1, Binding::Read, 16),
            buffer_entry(2, Binding::Write, 4),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use explant_field::Boundary;

    #[test]
    fn line_params_match_the_wgsl_struct_size() {
        assert_eq!(LINE_PARAMS_SIZE, 48);
        assert_eq!(std::mem::offset_of!(LineParams, rhs_lo), 32);
    }

    #[test]
    fn the_flag_bits_and_workgroup_match_the_shader() {
        for (name, bit) in [("FIXED_LO", flags::FIXED_LO), ("FIXED_HI", flags::FIXED_HI), ("CYCLIC", flags::CYCLIC)] {
            let decl = format!("const {name}: u32 = {bit}u;");
            assert!(crate::IMPLICIT_WGSL.contains(&decl), "`shaders/implicit.wgsl` lacks `{decl}`");
        }
        assert!(crate::IMPLICIT_WGSL.contains(&format!("const WORKGROUP: u32 = {WORKGROUP}u;")));
        assert!(crate::IMPLICIT_WGSL.contains(&format!("const TILE: u32 = {TILE}u;")));
        assert!(crate::IMPLICIT_WGSL.contains(&format!("var<workgroup> tile: array<f32, {TILE}>;")));
        assert!(TILE * 4 <= wgpu::Limits::downlevel_defaults().max_compute_workgroup_storage_size);
        assert_eq!(shared_lines(100), Some(39));
        assert_eq!(shared_lines(20), Some(64));
        assert_eq!(shared_lines(499), Some(8));
        assert_eq!(shared_lines(500), None);
        assert!(crate::IMPLICIT_WGSL.contains(&format!("@workgroup_size({WORKGROUP}, 1, 1)")));
    }

    /// The line starts the uniform describes, in the order of `l`.
    fn starts(p: &LineParams) -> Vec<u32> {
        (0..p.lines).map(|l| (l % p.inner) * p.inner_step + (l / p.inner) * p.outer_step).collect()
    }

    #[test]
    fn every_voxel_lies_on_exactly_one_line_of_each_axis() {
        let shape = Shape { nx: 5, ny: 4, nz: 3, channels: 1 };
        let n = [5, 4, 3];
        for axis in 0..3 {
            let co = LineCoefficients::new(n[axis], 0.5, 0.0, Boundary::ZeroFlux, Boundary::ZeroFlux);
            let p = LineParams::new(axis, &shape, &co);
            assert_eq!(p.n as usize, n[axis]);
            let mut seen = vec![0; shape.voxels()];
            for s in starts(&p) {
                for i in 0..p.n {
                    seen[(s + i * p.stride) as usize] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "axis {axis}: {seen:?}");
        }
    }

    #[test]
    fn flags_follow_the_faces() {
        let shape = Shape { nx: 6, ny: 1, nz: 1, channels: 1 };
        let fixed = LineCoefficients::new(6, 0.5, 0.0, Boundary::Fixed { value: 2.0 }, Boundary::ZeroFlux);
        let p = LineParams::new(0, &shape, &fixed);
        assert_eq!(p.flags, flags::FIXED_LO);
        assert_eq!(p.rhs_lo, fixed.rhs_lo.unwrap());
        let cyclic = LineCoefficients::new(6, 0.5, 0.0, Boundary::Periodic, Boundary::Periodic);
        let p = LineParams::new(0, &shape, &cyclic);
        assert_eq!(p.flags, flags::CYCLIC);
        assert_eq!(interleave(&cyclic)[5][3], cyclic.cyclic.as_ref().unwrap().z[5]);
    }

    #[test]
    fn workgroups_spread_over_two_dimensions() {
        assert_eq!(workgroups(1, 65535), Some([1, 1]));
        assert_eq!(workgroups(64 * 10 + 1, 65535), Some([11, 1]));
        assert_eq!(workgroups(64 * 10, 4), Some([4, 3]));
        assert_eq!(workgroups(64 * 100, 4), None);
    }
}
