//! Buffers, pipelines and dispatches of the cell kernels (`shaders/cells.wgsl`): the
//! secrete stage's per-cell exchange and the sense stage's sampling, on the implicit
//! scheme's resident field buffers.
//!
//! The cell lists (groups, order, coefficients, voxels) are uploaded at each call, so
//! what crosses is `O(cells)`; the buffers grow by half again when a call needs more and
//! are kept otherwise. One bind group per channel and kernel binds that channel's field
//! buffer and a 16-byte uniform (`count`, `channels`, `channel`).

use bytemuck::{Pod, Zeroable};

/// Invocations per workgroup; must match `@workgroup_size` and `WORKGROUP` in
/// `shaders/cells.wgsl`.
pub(crate) const WORKGROUP: u32 = 64;

/// The `Params` uniform of `shaders/cells.wgsl` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct CellParams {
    pub count: u32,
    pub channels: u32,
    pub channel: u32,
    /// Where the group starts, the order and the coefficients begin in the lists buffer.
    pub start_at: u32,
    pub order_at: u32,
    pub coef_at: u32,
    /// 1: the exchange adds each voxel's change to the sources (ADI).
    pub accumulate: u32,
    pub pad: u32,
}

const PARAMS_SIZE: u64 = std::mem::size_of::<CellParams>() as u64;

/// The layout of `shaders/cells.wgsl`'s group 0, shared by both entry points: the
/// uniform, the lists (read), the per-cell values, the field and the sources
/// (read–write).
pub(crate) fn bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    use crate::resources::{Binding, buffer_entry};
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("explant-gpu cells"),
        entries: &[
            buffer_entry(0, Binding::Uniform, PARAMS_SIZE),
            buffer_entry(1, Binding::Read, 4),
            buffer_entry(2, Binding::Write, 4),
            buffer_entry(3, Binding::Write, 4),
            buffer_entry(4, Binding::Write, 4),
        ],
    })
}

/// The two pipelines of `shaders/cells.wgsl`.
#[derive(Debug)]
pub(crate) struct CellPipelines {
    pub layout: wgpu::BindGroupLayout,
    pub exchange: wgpu::ComputePipeline,
    pub sample: wgpu::ComputePipeline,
}

impl CellPipelines {
    /// Compile the shader and build both pipelines (the caller wraps this in error
    /// scopes).
    pub fn new(device: &wgpu::Device) -> Self {
        let layout = bind_group_layout(device);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("shaders/cells.wgsl"),
            source: wgpu::ShaderSource::Wgsl(crate::CELLS_WGSL.into()),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("shaders/cells.wgsl"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("shaders/cells.wgsl"),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            })
        };
        Self { exchange: pipeline("exchange"), sample: pipeline("sample"), layout }
    }
}

/// The cell buffers for up to `cells` cells of `channels` channels, bound to one set of
/// field buffers.
#[derive(Debug)]
pub(crate) struct CellBuffers {
    pub cells: usize,
    pub channels: usize,
    /// Exchange: group voxels, group starts, order, coefficient bits; sample: the cells'
    /// voxels.
    lists: wgpu::Buffer,
    /// One value per cell and channel: the changes of an exchange, or the samples.
    values: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// A four-byte stand-in bound as the sources when there are none.
    _no_sources: wgpu::Buffer,
    /// The exchange adds each voxel's change to the channel's sources.
    accumulate: bool,
    /// Per channel: the uniform and bind group of `exchange`, then of `sample`.
    exchange: Vec<(wgpu::Buffer, wgpu::BindGroup)>,
    sample: Vec<(wgpu::Buffer, wgpu::BindGroup)>,
}

/// `u32`s of the lists buffer for `cells` cells of `channels` channels: at most `cells`
/// groups (voxel, start + 1, order) and three coefficients per value.
pub(crate) fn list_words(cells: usize, channels: usize) -> u64 {
    (3 * cells + 1 + 3 * cells * channels) as u64
}

impl CellBuffers {
    /// Buffers for `cells` cells and one bind group per field buffer in `fields`, with
    /// that channel's buffer of `sources` where given (the caller wraps this in error
    /// scopes).
    pub fn new(
        device: &wgpu::Device,
        pipes: &CellPipelines,
        fields: &[&wgpu::Buffer],
        sources: Option<&[&wgpu::Buffer]>,
        cells: usize,
    ) -> Self {
        let channels = fields.len();
        let n = cells.max(1);
        let buffer = |label: &str, bytes: u64, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(4),
                usage,
                mapped_at_creation: false,
            })
        };
        let per_value = (n * channels.max(1) * 4) as u64;
        let lists = buffer(
            "explant-gpu cells: lists",
            list_words(n, channels.max(1)) * 4,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        let values =
            buffer("explant-gpu cells: values", per_value, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC);
        let readback = buffer(
            "explant-gpu cells: readback",
            per_value,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let no_sources = buffer("explant-gpu cells: no sources", 4, wgpu::BufferUsages::STORAGE);
        let bind = |c: usize, field: &wgpu::Buffer| {
            let source = sources.map_or(&no_sources, |s| s[c]);
            let params = buffer(
                "explant-gpu cells: params",
                PARAMS_SIZE,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("explant-gpu cells"),
                layout: &pipes.layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: lists.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 2, resource: values.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 3, resource: field.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 4, resource: source.as_entire_binding() },
                ],
            });
            (params, group)
        };
        let exchange = fields.iter().enumerate().map(|(c, f)| bind(c, f)).collect();
        let sample = fields.iter().enumerate().map(|(c, f)| bind(c, f)).collect();
        let accumulate = sources.is_some();
        Self { cells, channels, lists, values, readback, _no_sources: no_sources, accumulate, exchange, sample }
    }

    /// Upload an exchange's lists and record its dispatches (one per channel) and the
    /// copy of the changes into the read-back buffer.
    pub fn encode_exchange(
        &self,
        queue: &wgpu::Queue,
        encoder: &mut wgpu::CommandEncoder,
        pipes: &CellPipelines,
        ex: &explant_field::CellExchange<'_>,
        max_groups: u32,
    ) -> Result<(), String> {
        let groups = ex.voxel.len() as u32;
        let start_at = groups;
        let order_at = start_at + ex.start.len() as u32;
        let coef_at = order_at + ex.order.len() as u32;
        let mut lists: Vec<u32> = Vec::with_capacity(coef_at as usize + 3 * ex.coef.len());
        lists.extend_from_slice(ex.voxel);
        lists.extend_from_slice(ex.start);
        lists.extend_from_slice(ex.order);
        lists.extend(ex.coef.iter().flatten().map(|v| v.to_bits()));
        write(queue, &self.lists, bytemuck::cast_slice(&lists));
        let [wx, wy] = workgroups(groups, max_groups).ok_or_else(|| too_many(groups))?;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("explant-gpu exchange"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipes.exchange);
            for (c, (params, group)) in self.exchange.iter().enumerate() {
                let p = CellParams {
                    count: groups,
                    channels: self.channels as u32,
                    channel: c as u32,
                    start_at,
                    order_at,
                    coef_at,
                    accumulate: u32::from(self.accumulate),
                    pad: 0,
                };
                queue.write_buffer(params, 0, bytemuck::bytes_of(&p));
                if groups > 0 {
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups(wx, wy, 1);
                }
            }
        }
        let bytes = (ex.coef.len() * 4) as u64;
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(&self.values, 0, &self.readback, 0, Some(bytes));
        }
        Ok(())
    }

    /// Upload the cells' voxels and record the sample dispatches and the copy of the
    /// values into the read-back buffer.
    pub fn encode_sample(
        &self,
        queue: &wgpu::Queue,
        encoder: &mut wgpu::CommandEncoder,
        pipes: &CellPipelines,
        voxels: &[u32],
        max_groups: u32,
    ) -> Result<(), String> {
        let cells = voxels.len() as u32;
        write(queue, &self.lists, bytemuck::cast_slice(voxels));
        let [wx, wy] = workgroups(cells, max_groups).ok_or_else(|| too_many(cells))?;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("explant-gpu sample"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipes.sample);
            for (c, (params, group)) in self.sample.iter().enumerate() {
                let p = CellParams {
                    count: cells,
                    channels: self.channels as u32,
                    channel: c as u32,
                    start_at: 0,
                    order_at: 0,
                    coef_at: 0,
                    accumulate: 0,
                    pad: 0,
                };
                queue.write_buffer(params, 0, bytemuck::bytes_of(&p));
                if cells > 0 {
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups(wx, wy, 1);
                }
            }
        }
        let bytes = (voxels.len() * self.channels * 4) as u64;
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(&self.values, 0, &self.readback, 0, Some(bytes));
        }
        Ok(())
    }

    /// Wait for the device and copy the first `into.len()` values of the read-back
    /// buffer into `into`.
    pub fn read(&self, device: &wgpu::Device, into: &mut [f32]) -> Result<(), String> {
        if into.is_empty() {
            return Ok(());
        }
        let bytes = (into.len() * 4) as u64;
        let (tx, rx) = std::sync::mpsc::channel();
        self.readback.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            let _ = tx.send(r);
        });
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| format!("waiting for the GPU failed: {e}"))?;
        match rx.try_recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("reading back the cells' values failed: {e}")),
            Err(_) => return Err("the cells' values were never read back".into()),
        }
        {
            let view = self
                .readback
                .get_mapped_range(..bytes)
                .map_err(|e| format!("reading back the cells' values failed: {e}"))?;
            match bytemuck::try_cast_slice::<u8, f32>(&view) {
                Ok(values) => into.copy_from_slice(values),
                Err(_) => {
                    for (o, b) in into.iter_mut().zip(view.chunks_exact(4)) {
                        *o = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
            }
        }
        self.readback.unmap();
        Ok(())
    }
}

/// `queue.write_buffer`, skipping empty writes.
fn write(queue: &wgpu::Queue, buffer: &wgpu::Buffer, bytes: &[u8]) {
    if !bytes.is_empty() {
        queue.write_buffer(buffer, 0, bytes);
    }
}

/// Workgroups `[x, y]` covering `count` invocations of [`WORKGROUP`], no dimension over
/// `max`.
fn workgroups(count: u32, max: u32) -> Option<[u32; 2]> {
    let groups = count.div_ceil(WORKGROUP).max(1);
    let wx = groups.min(max.max(1));
    let wy = groups.div_ceil(wx);
    (wy <= max).then_some([wx, wy])
}

fn too_many(count: u32) -> String {
    format!("{count} cells are more than one dispatch of this device can cover")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uniform_and_workgroup_match_the_shader() {
        assert_eq!(PARAMS_SIZE, 32);
        assert!(crate::CELLS_WGSL.contains(&format!("const WORKGROUP: u32 = {WORKGROUP}u;")));
        assert!(crate::CELLS_WGSL.contains(&format!("@workgroup_size({WORKGROUP}, 1, 1)")));
        assert_eq!(workgroups(0, 65535), Some([1, 1]));
        assert_eq!(workgroups(64 * 70000, 65535), Some([65535, 2]));
    }
}
