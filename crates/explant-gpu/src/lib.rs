//! The wgpu compute backend for the ligand diffusion–decay step.
//!
//! [`GpuDiffusion`] implements [`explant_field::DiffusionBackend`] with the WGSL kernel
//! `shaders/diffuse.wgsl`, which performs exactly the float32 arithmetic of
//! [`explant_field::stencil_update`] (explicit FTCS step, `2·dim + 1` point Laplacian)
//! on the same [`explant_field::substeps`] plan as [`explant_field::CpuDiffusion`]. The
//! two paths agree to float32 rounding (the GPU compiler may fuse multiply–adds), which
//! `tests/gpu_matches_cpu.rs` checks.
//!
//! Each face of the grid follows its channel's [`explant_field::Boundary`]: the
//! neighbour beyond the face is the voxel itself for `ZeroFlux`, `2.0 * value - c` for
//! `Fixed { value }`, and the voxel at the opposite end of the axis for `Periodic`; the
//! z faces of a 2D grid are ignored.
//!
//! # Schemes
//!
//! Only [`Scheme::Explicit`] is implemented: [`GpuDiffusion`]'s
//! [`scheme`](DiffusionBackend::scheme) says so, and a caller that wants
//! [`Scheme::Implicit`] must pick a backend that reports it.
//!
//! # How a step runs
//!
//! - The device, pipeline and bind-group layout are built once in
//!   [`GpuDiffusion::from_device`].
//! - Per-channel ping-pong storage buffers, a 96-byte uniform per channel (grid size,
//!   substep constants, and a kind code and value for each face) and the bind
//!   groups that alternate between them are built on the first step and reused until
//!   the grid shape or channel count changes.
//! - Each [`step`](explant_field::DiffusionBackend::step) uploads the field and the
//!   channel constants (`a = D Δt/Δx²`, `kdt = k Δt`; the same for every substep of a
//!   step), records every substep of every channel into one command encoder (one
//!   compute pass, substep `s` uses bind group `s % 2`), copies the result into mappable
//!   buffers and reads it back, because the core still needs the values on the CPU
//!   every tick.
//!
//! # Adapters
//!
//! [`GpuDiffusion::new`] honours `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` and never panics
//! when there is no GPU: it returns a [`GpuError`] that names the backends searched and
//! each adapter found. Mesa's lavapipe (`llvmpipe`, `device_type = Cpu`) is accepted by
//! [`AdapterPolicy::Any`], which is how CI proves this path correct, but it is far
//! slower than the rayon solver, so [`AdapterPolicy::HardwareOnly`] refuses it.

mod adapter;
mod error;
mod resources;

pub use adapter::AdapterPolicy;
pub use error::GpuError;

use explant_field::{ChannelParams, DiffusionBackend, Field, FieldError, Scheme, SubstepPlan, substeps};

use resources::{KernelParams, Resources, Shape};

/// The WGSL source of the diffusion kernel (`shaders/diffuse.wgsl`), entry point
/// [`DIFFUSE_ENTRY_POINT`].
pub const DIFFUSE_WGSL: &str = include_str!("../../../shaders/diffuse.wgsl");

/// The compute entry point in [`DIFFUSE_WGSL`].
pub const DIFFUSE_ENTRY_POINT: &str = "diffuse";

/// Substep dispatches recorded into one command buffer before it is submitted. A step
/// normally needs far fewer; the cap only keeps a pathological plan (up to 10^7
/// substeps) from building one enormous command buffer.
const MAX_DISPATCHES_PER_SUBMIT: usize = 1 << 16;

/// Explicit diffusion–decay on a GPU through wgpu, with per-face boundary conditions.
///
/// Explicit only: [`scheme`](DiffusionBackend::scheme) is [`Scheme::Explicit`].
#[derive(Debug)]
pub struct GpuDiffusion {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
    resources: Option<Resources>,
}

impl GpuDiffusion {
    /// Find an adapter allowed by `policy` and build the kernel on it.
    ///
    /// Reads `WGPU_BACKEND` (which backends to search) and `WGPU_ADAPTER_NAME` (a
    /// substring the adapter name must contain). Prefers discrete, then integrated,
    /// virtual and software adapters, and native APIs over GL.
    pub fn new(policy: AdapterPolicy) -> Result<Self, GpuError> {
        let (device, queue, info) = pollster::block_on(adapter::open_device(policy))?;
        Self::from_device(device, queue, info)
    }

    /// Build the kernel on a device the caller already has (e.g. one shared with a
    /// renderer, or injected by a test). `adapter_info` is only used for names and
    /// messages.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter_info: wgpu::AdapterInfo,
    ) -> Result<Self, GpuError> {
        let scopes = ErrorScopes::push(&device);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("shaders/diffuse.wgsl"),
            source: wgpu::ShaderSource::Wgsl(DIFFUSE_WGSL.into()),
        });
        let layout = resources::bind_group_layout(&device);
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("explant-gpu diffuse"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("explant-gpu diffuse"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(DIFFUSE_ENTRY_POINT),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        if let Some(message) = scopes.pop() {
            return Err(GpuError::Setup { adapter: adapter::describe(&adapter_info), message });
        }
        Ok(Self { device, queue, info: adapter_info, layout, pipeline, resources: None })
    }

    /// The adapter this solver runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Make sure buffers for `shape` exist, building them if the shape changed.
    fn prepare(&mut self, shape: Shape) -> Result<(), String> {
        if self.resources.as_ref().is_some_and(|r| r.shape == shape) {
            return Ok(());
        }
        // Free the old buffers before allocating the new ones.
        self.resources = None;
        shape.fits(&self.device.limits())?;
        let scopes = ErrorScopes::push(&self.device);
        let built = Resources::new(&self.device, &self.layout, shape);
        if let Some(message) = scopes.pop() {
            return Err(format!(
                "could not allocate buffers for the `{}×{}×{}` grid: {message}",
                shape.nx, shape.ny, shape.nz
            ));
        }
        self.resources = Some(built);
        Ok(())
    }

    /// Upload, run every substep, read back. Errors are messages for
    /// [`FieldError::Backend`].
    fn run(&mut self, field: &mut Field, params: &[ChannelParams], plan: SubstepPlan) -> Result<(), String> {
        let g = field.grid;
        let shape = Shape { nx: g.nx, ny: g.ny, nz: g.nz, channels: field.channels };
        if shape.voxels() == 0 || shape.channels == 0 {
            return Ok(());
        }
        let expected = shape.voxels() * shape.channels;
        if field.data.len() != expected {
            return Err(format!(
                "field holds {} values but a `{}×{}×{}` grid with {} channels needs {expected}",
                field.data.len(),
                g.nx,
                g.ny,
                g.nz,
                shape.channels
            ));
        }
        let result = self.prepare(shape).and_then(|()| self.upload_run_read(field, params, plan));
        if result.is_err() {
            // A failure may leave buffers mapped or half-written: start afresh next step.
            self.resources = None;
        }
        result
    }

    /// The body of [`Self::run`] once the buffers exist.
    fn upload_run_read(&self, field: &mut Field, params: &[ChannelParams], plan: SubstepPlan) -> Result<(), String> {
        let res = self.resources.as_ref().ok_or("buffers missing after preparation")?;
        let g = field.grid;
        let faces = 2.0 * g.dims() as f32;
        let scopes = ErrorScopes::push(&self.device);
        for (c, (buffers, p)) in res.channels.iter().zip(params).enumerate() {
            // Same expressions, in the same order, as `CpuDiffusion`.
            let a = p.diffusion * plan.dt / (g.dx * g.dx);
            let kdt = p.decay * plan.dt;
            // `Shape::fits` has checked that the grid's voxel count fits in `u32`.
            let (nx, ny, nz) = (g.nx as u32, g.ny as u32, g.nz as u32);
            let kp = KernelParams::new(nx, ny, nz, a, kdt, faces, &p.boundary);
            self.queue.write_buffer(&buffers.params, 0, bytemuck::bytes_of(&kp));
            self.queue.write_buffer(&buffers.ping, 0, bytemuck::cast_slice(field.channel(c)));
        }
        self.encode_and_submit(res, plan.count);
        if let Some(message) = scopes.pop() {
            return Err(message);
        }
        self.read_back(res, field)
    }

    /// Record all substeps of all channels, then the copies into the read-back
    /// buffers, and submit them.
    fn encode_and_submit(&self, res: &Resources, count: u32) {
        let [wx, wy, wz] = res.shape.workgroups();
        let per_submit = (MAX_DISPATCHES_PER_SUBMIT / res.channels.len()).max(1) as u32;
        let mut first = 0;
        while first < count {
            let end = count.min(first.saturating_add(per_submit));
            let mut encoder =
                self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("explant-gpu step") });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("explant-gpu substeps"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.pipeline);
                // Substep-major, so the channels of one substep are independent
                // dispatches the driver may overlap.
                for s in first..end {
                    for buffers in &res.channels {
                        pass.set_bind_group(0, &buffers.bind_groups[(s % 2) as usize], &[]);
                        pass.dispatch_workgroups(wx, wy, wz);
                    }
                }
            }
            if end == count {
                for buffers in &res.channels {
                    encoder.copy_buffer_to_buffer(
                        buffers.result(count),
                        0,
                        &buffers.readback,
                        0,
                        Some(res.shape.channel_bytes()),
                    );
                }
            }
            self.queue.submit([encoder.finish()]);
            first = end;
        }
    }

    /// Wait for the GPU and copy every channel's result into `field`.
    fn read_back(&self, res: &Resources, field: &mut Field) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        for (c, buffers) in res.channels.iter().enumerate() {
            let tx = tx.clone();
            buffers.readback.map_async(wgpu::MapMode::Read, .., move |r| {
                // The receiver outlives the poll below; a send error cannot happen.
                let _ = tx.send((c, r));
            });
        }
        drop(tx);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the GPU failed: {e}"))?;
        let mut mapped = 0;
        for (c, r) in rx.try_iter() {
            r.map_err(|e| format!("reading back ligand channel {c} failed: {e}"))?;
            mapped += 1;
        }
        if mapped != res.channels.len() {
            return Err(format!("only {mapped} of {} ligand channels were read back", res.channels.len()));
        }
        for (c, buffers) in res.channels.iter().enumerate() {
            {
                let view = buffers
                    .readback
                    .get_mapped_range(..)
                    .map_err(|e| format!("reading back ligand channel {c} failed: {e}"))?;
                let out = field.channel_mut(c);
                match bytemuck::try_cast_slice::<u8, f32>(&view) {
                    Ok(values) => out.copy_from_slice(values),
                    // Mapped memory is normally aligned; copy bytewise if it is not.
                    Err(_) => {
                        for (o, b) in out.iter_mut().zip(view.chunks_exact(4)) {
                            *o = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                        }
                    }
                }
            }
            buffers.readback.unmap();
        }
        Ok(())
    }
}

impl DiffusionBackend for GpuDiffusion {
    /// E.g. `gpu (wgpu: `llvmpipe (LLVM 15.0.6, 256 bits)` (vulkan, Cpu))`.
    fn name(&self) -> String {
        format!("gpu (wgpu: {})", adapter::describe(&self.info))
    }

    /// Always [`Scheme::Explicit`]: the kernel has no implicit (tridiagonal) solver yet.
    fn scheme(&self) -> Scheme {
        Scheme::Explicit
    }

    fn step(&mut self, field: &mut Field, params: &[ChannelParams], dt: f32) -> Result<(), FieldError> {
        if field.channels != params.len() {
            return Err(FieldError::ChannelMismatch { field: field.channels, params: params.len() });
        }
        let plan = substeps(&field.grid, params, dt)?;
        self.run(field, params, plan).map_err(|message| FieldError::Backend { backend: self.name(), message })
    }
}

/// Validation and out-of-memory error scopes around a group of wgpu calls, so a wgpu
/// error becomes a returned message instead of the default handler's panic.
struct ErrorScopes {
    out_of_memory: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

impl ErrorScopes {
    fn push(device: &wgpu::Device) -> Self {
        let out_of_memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        Self { out_of_memory, validation }
    }

    /// Pop both scopes (innermost first) and return the first error caught.
    fn pop(self) -> Option<String> {
        let validation = pollster::block_on(self.validation.pop());
        let out_of_memory = pollster::block_on(self.out_of_memory.pop());
        validation.or(out_of_memory).map(|e| e.to_string())
    }
}
