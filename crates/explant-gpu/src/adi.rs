//! The ADI scheme with its field kept on the device: the kernels of `shaders/adi.wgsl`
//! (appended to `shaders/diffuse.wgsl`) and their buffers.
//!
//! Per channel: the resident field `u`, the sources `S` added to it since the last step
//! (filled by the cell kernels' exchange and by the host's additions), the step's
//! [`KernelParams`] uniform, and two bind groups: `increment` reads `u` and writes the
//! increment into the implicit scheme's field buffer (which the half-coefficient sweeps
//! then solve in place); `take_back` and `finish` write `u`.

use crate::resources::{KernelParams, Shape};

/// The kernels of `shaders/adi.wgsl`.
#[derive(Debug)]
pub(crate) struct AdiPipelines {
    pub layout: wgpu::BindGroupLayout,
    pub take_back: wgpu::ComputePipeline,
    pub increment: wgpu::ComputePipeline,
    pub finish: wgpu::ComputePipeline,
}

impl AdiPipelines {
    /// Build the three pipelines (the caller wraps this in error scopes).
    pub fn new(device: &wgpu::Device) -> Self {
        use crate::resources::{Binding, buffer_entry};
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("explant-gpu adi"),
            entries: &[
                buffer_entry(0, Binding::Uniform, std::mem::size_of::<KernelParams>() as u64),
                buffer_entry(1, Binding::Read, 4),
                buffer_entry(2, Binding::Write, 4),
                buffer_entry(3, Binding::Write, 4),
            ],
        });
        let source = format!("{}\n{}", crate::DIFFUSE_WGSL, crate::ADI_WGSL);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("shaders/diffuse.wgsl + shaders/adi.wgsl"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("shaders/adi.wgsl"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("shaders/adi.wgsl"),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            })
        };
        Self { take_back: pipeline("take_back"), increment: pipeline("increment"), finish: pipeline("finish"), layout }
    }
}

/// The per-channel buffers of a resident ADI field.
#[derive(Debug)]
pub(crate) struct AdiBuffers {
    pub shape: Shape,
    /// The resident field.
    pub u: Vec<wgpu::Buffer>,
    /// What was added since the last step.
    pub sources: Vec<wgpu::Buffer>,
    /// The step's [`KernelParams`].
    pub params: Vec<wgpu::Buffer>,
    /// `src = u`, `dst = delta`.
    pub increment: Vec<wgpu::BindGroup>,
    /// `src = delta`, `dst = u`.
    pub finish: Vec<wgpu::BindGroup>,
}

impl AdiBuffers {
    /// Buffers for `shape`, the increments living in `deltas` (the implicit scheme's field
    /// buffers, one per channel). The caller wraps this in error scopes.
    pub fn new(device: &wgpu::Device, pipes: &AdiPipelines, shape: Shape, deltas: &[&wgpu::Buffer]) -> Self {
        let bytes = shape.channel_bytes();
        let storage = |label: &str| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let u: Vec<wgpu::Buffer> = deltas.iter().map(|_| storage("explant-gpu adi field")).collect();
        let sources: Vec<wgpu::Buffer> = deltas.iter().map(|_| storage("explant-gpu adi sources")).collect();
        let params: Vec<wgpu::Buffer> = deltas
            .iter()
            .map(|_| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("explant-gpu adi params"),
                    size: std::mem::size_of::<KernelParams>() as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let bind = |c: usize, src: &wgpu::Buffer, dst: &wgpu::Buffer| {
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("explant-gpu adi"),
                layout: &pipes.layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: params[c].as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: src.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 2, resource: dst.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 3, resource: sources[c].as_entire_binding() },
                ],
            })
        };
        let increment = deltas.iter().enumerate().map(|(c, d)| bind(c, &u[c], d)).collect();
        let finish = deltas.iter().enumerate().map(|(c, d)| bind(c, d, &u[c])).collect();
        Self { shape, u, sources, params, increment, finish }
    }

    /// Record one kernel over every voxel of every channel, with the bind groups of
    /// `groups`.
    pub fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        groups: &[wgpu::BindGroup],
    ) {
        let [wx, wy, wz] = self.shape.workgroups();
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("explant-gpu adi"),
            timestamp_writes: None,
        });
        pass.set_pipeline(pipeline);
        for group in groups {
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(wx, wy, wz);
        }
    }
}
