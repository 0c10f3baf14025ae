//! The wgpu compute backend for the ligand diffusion–decay step, with both schemes.
//!
//! [`GpuDiffusion`] implements [`explant_field::DiffusionBackend`] with either scheme of
//! [`explant_field::Scheme`], chosen when it is built ([`GpuDiffusion::with_scheme`],
//! [`GpuDiffusion::from_device_with_scheme`]; [`GpuDiffusion::new`] is explicit):
//!
//! - [`Scheme::Explicit`]: the WGSL kernel `shaders/diffuse.wgsl` performs exactly the
//!   float32 arithmetic of [`explant_field::stencil_update`] (FTCS step, `2·dim + 1`
//!   point Laplacian) on the same [`explant_field::substeps`] plan as
//!   [`explant_field::CpuDiffusion`].
//! - [`Scheme::Implicit`]: the kernel `shaders/implicit.wgsl` runs the locally
//!   one-dimensional backward-Euler splitting of [`explant_field::implicit`]: per
//!   channel, a sweep along x, then y, then z (3D only), each solving every grid line of
//!   that axis with exactly the per-element arithmetic of
//!   [`explant_field::implicit::solve_line`] (Thomas algorithm, plus the
//!   Sherman–Morrison correction on periodic lines), from the coefficients of
//!   [`explant_field::implicit::coefficients`]. One step per `Δt`, whatever its size.
//!
//! Either way the GPU agrees with the CPU to float32 rounding, not bit for bit (the GPU
//! compiler may fuse multiply–adds), which `tests/gpu/gpu_matches_cpu.rs` and
//! `tests/gpu/gpu_implicit.rs` check to `1e-5` relative.
//!
//! Each face of the grid follows its channel's [`explant_field::Boundary`]: the
//! neighbour beyond the face is the voxel itself for `ZeroFlux`, `2.0 * value - c` for
//! `Fixed { value }`, and the voxel at the opposite end of the axis for `Periodic`; the
//! z faces of a 2D grid are ignored.
//!
//! # How an explicit step runs
//!
//! - The device, pipeline and bind-group layout are built once in
//!   [`GpuDiffusion::from_device_with_scheme`].
//! - Per-channel ping-pong storage buffers, a 96-byte uniform per channel (grid size,
//!   substep constants, and a kind code and value for each face) and the bind
//!   groups that alternate between them are built on the first step and reused until
//!   the grid shape or channel count changes.
//! - Each [`step`](explant_field::DiffusionBackend::step) uploads the field and the
//!   channel constants (`a = D Δt/Δx²`, `kdt = k Δt`; the same for every substep of a
//!   step), records every substep of every channel into one command encoder (one
//!   compute pass, substep `s` uses bind group `s % 2`, 8×8×1 workgroups over the
//!   voxels), copies the result into mappable buffers and reads it back, because the
//!   core still needs the values on the CPU every tick.
//!
//! # How an implicit step runs
//!
//! - Per channel: one storage buffer holding the field, solved in place (the lines of an
//!   axis are independent, so no ping-pong), a read-back buffer, and per swept axis a
//!   48-byte uniform (line length, stride and start rule, `Fixed`/cyclic flags,
//!   `rhs_lo`, `rhs_hi`, `q`, `r`) and a storage buffer of the interleaved coefficients
//!   `(lower, upper, inv, z)`, one `vec4<f32>` per voxel of a line. Built on the first
//!   step and reused until the grid shape or channel count changes; the coefficients are
//!   uploaded again only when the grid, the parameters or `Δt` change.
//! - Each step uploads the field, records the x sweeps of every channel, then the y
//!   sweeps, then the z sweeps (one invocation per line, 64 lines per workgroup, the
//!   workgroups spread over two dispatch dimensions for very many lines) and the copies
//!   into the read-back buffers into one command encoder, submits it and reads back.
//! - x lines of fewer than 500 voxels are swept through workgroup memory
//!   (`sweep_x_shared`): a workgroup loads a block of 8–64 consecutive lines with
//!   coalesced reads, solves each in the tile, and writes the block back coalesced.
//!
//! # A field kept on the device
//!
//! With any scheme the solver also offers its field buffers as a
//! [`ResidentField`]: uploaded once, stepped in place (no upload, no read-back; an
//! explicit step with an odd substep count copies its result back into `ping` on the
//! device, so the field always lives in one buffer per channel between steps),
//! changed by the cells through `shaders/cells.wgsl` (`exchange`: each voxel's cells
//! apply the secrete stage's maps in row order and return their changes; `sample`: the
//! field at each cell's voxel), so each tick moves `O(cells)` values, and read back only
//! when the host asks. A host step through [`DiffusionBackend::step`] reuses the same
//! buffers and so ends the resident copy (a later resident call is refused until the
//! next upload).
//!
//! A resident ADI field (`shaders/adi.wgsl`, appended to `shaders/diffuse.wgsl`) keeps
//! beside it the sources added since the last step, per voxel: the exchange kernel adds
//! each voxel's change, and the host's own additions are added at upload
//! ([`ResidentField::add_sources`], which reads them back and writes them again, at the
//! ticks where the host changed the field). A step takes them back out, forms the
//! increment with the stencil, sweeps it with the half coefficients and adds it; a
//! damped restart is two LOD half steps of the field. Sources arrive summed per voxel
//! rather than one by one, so the result agrees with the host's to float32 rounding.
//!
//! # Adapters
//!
//! [`GpuDiffusion::new`] honours `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` and never panics
//! when there is no GPU: it returns a [`GpuError`] that names the backends searched and
//! each adapter found. Mesa's lavapipe (`llvmpipe`, `device_type = Cpu`) is accepted by
//! [`AdapterPolicy::Any`], which is how CI proves this path correct, but it is far
//! slower than the rayon solver, so [`AdapterPolicy::HardwareOnly`] refuses it.

mod adapter;
mod adi;
mod cells;
mod error;
mod implicit;
mod resources;

pub use adapter::AdapterPolicy;
pub use error::GpuError;

use explant_field::resident::{CellExchange, ResidentField, check_sample};
use explant_field::{
    ChannelParams, DiffusionBackend, Field, FieldError, Grid, Scheme, StepInputs, SubstepPlan, substeps, validate,
};

use cells::{CellBuffers, CellPipelines};

use implicit::LodResources;
use resources::{KernelParams, Resources, Shape};

/// The WGSL source of the diffusion kernel (`shaders/diffuse.wgsl`), entry point
/// [`DIFFUSE_ENTRY_POINT`].
pub const DIFFUSE_WGSL: &str = include_str!("../../../shaders/diffuse.wgsl");

/// The compute entry point in [`DIFFUSE_WGSL`].
pub const DIFFUSE_ENTRY_POINT: &str = "diffuse";

/// The WGSL source of the implicit line solver (`shaders/implicit.wgsl`), entry point
/// [`IMPLICIT_ENTRY_POINT`].
pub const IMPLICIT_WGSL: &str = include_str!("../../../shaders/implicit.wgsl");

/// The compute entry point in [`IMPLICIT_WGSL`]: one sweep of one axis of one channel.
pub const IMPLICIT_ENTRY_POINT: &str = "sweep";

/// The entry point in [`IMPLICIT_WGSL`] that sweeps x lines through workgroup memory
/// (used when a workgroup's tile holds at least eight lines).
pub const IMPLICIT_SHARED_X_ENTRY_POINT: &str = "sweep_x_shared";

/// The WGSL source of the cell kernels (`shaders/cells.wgsl`): entry points `exchange`
/// (the secrete stage's per-cell maps) and `sample` (the sense stage's reads) on a field
/// kept on the device.
pub const CELLS_WGSL: &str = include_str!("../../../shaders/cells.wgsl");

/// The WGSL source of the ADI scheme's explicit half on a field kept on the device
/// (`shaders/adi.wgsl`): entry points `take_back`, `increment` and `finish`, appended to
/// [`DIFFUSE_WGSL`] (whose stencil they use) when built.
pub const ADI_WGSL: &str = include_str!("../../../shaders/adi.wgsl");

/// Substep dispatches recorded into one command buffer before it is submitted. A step
/// normally needs far fewer; the cap only keeps a pathological plan (up to 10^7
/// substeps) from building one enormous command buffer.
const MAX_DISPATCHES_PER_SUBMIT: usize = 1 << 16;

/// Diffusion–decay on a GPU through wgpu, with per-face boundary conditions and the
/// explicit or the implicit scheme (fixed when it is built).
#[derive(Debug)]
pub struct GpuDiffusion {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    scheme: Scheme,
    /// The bind-group layout and pipeline of `scheme`'s kernel.
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
    /// The implicit schemes' two sweep kernels (`None` for the explicit scheme).
    sweeps: Option<implicit::Pipelines>,
    /// Explicit buffers, once a step has run.
    resources: Option<Resources>,
    /// Implicit buffers, once a step has run.
    lod: Option<LodResources>,
    /// The grid of the field kept in `lod`'s buffers between steps, once uploaded
    /// ([`ResidentField`]); `None` when they hold no resident field.
    resident: Option<Grid>,
    /// The cell kernels, built on the first exchange or sample.
    cell_pipes: Option<CellPipelines>,
    /// Their buffers, bound to the resident field's buffers (dropped with them).
    cells: Option<CellBuffers>,
    /// The ADI kernels of a resident field, built on its first upload.
    adi_pipes: Option<adi::AdiPipelines>,
    /// A resident ADI field and its sources (the increments live in `lod`'s buffers).
    adi: Option<adi::AdiBuffers>,
}

impl GpuDiffusion {
    /// Find an adapter allowed by `policy` and build the explicit kernel on it.
    ///
    /// Reads `WGPU_BACKEND` (which backends to search) and `WGPU_ADAPTER_NAME` (a
    /// substring the adapter name must contain). Prefers discrete, then integrated,
    /// virtual and software adapters, and native APIs over GL.
    pub fn new(policy: AdapterPolicy) -> Result<Self, GpuError> {
        Self::with_scheme(policy, Scheme::Explicit)
    }

    /// Find an adapter as [`GpuDiffusion::new`] does and build the kernel of `scheme`
    /// on it.
    pub fn with_scheme(policy: AdapterPolicy, scheme: Scheme) -> Result<Self, GpuError> {
        let (device, queue, info) = pollster::block_on(adapter::open_device(policy))?;
        Self::from_device_with_scheme(device, queue, info, scheme)
    }

    /// Build the explicit kernel on a device the caller already has (e.g. one shared
    /// with a renderer, or injected by a test). `adapter_info` is only used for names
    /// and messages.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter_info: wgpu::AdapterInfo,
    ) -> Result<Self, GpuError> {
        Self::from_device_with_scheme(device, queue, adapter_info, Scheme::Explicit)
    }

    /// Build the kernel of `scheme` on a device the caller already has, as
    /// [`GpuDiffusion::from_device`] does.
    pub fn from_device_with_scheme(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter_info: wgpu::AdapterInfo,
        scheme: Scheme,
    ) -> Result<Self, GpuError> {
        let (path, source, entry, layout) = match scheme {
            Scheme::Explicit => {
                ("shaders/diffuse.wgsl", DIFFUSE_WGSL, DIFFUSE_ENTRY_POINT, resources::bind_group_layout(&device))
            }
            Scheme::Implicit | Scheme::Adi => {
                ("shaders/implicit.wgsl", IMPLICIT_WGSL, IMPLICIT_ENTRY_POINT, implicit::bind_group_layout(&device))
            }
        };
        let scopes = ErrorScopes::push(&device);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(path),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(path),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(path),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        // The implicit schemes' x sweep through workgroup memory, from the same module.
        let sweeps = (scheme != Scheme::Explicit).then(|| implicit::Pipelines {
            sweep: pipeline.clone(),
            shared_x: device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(path),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(IMPLICIT_SHARED_X_ENTRY_POINT),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            }),
        });
        if let Some(message) = scopes.pop() {
            return Err(GpuError::Setup { kernel: path, adapter: adapter::describe(&adapter_info), message });
        }
        Ok(Self {
            device,
            queue,
            info: adapter_info,
            scheme,
            layout,
            pipeline,
            sweeps,
            resources: None,
            lod: None,
            resident: None,
            cell_pipes: None,
            cells: None,
            adi_pipes: None,
            adi: None,
        })
    }

    /// The adapter this solver runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The device's copy bandwidth in bytes per second: `repeats` buffer-to-buffer copies
    /// of `bytes` (after one warm-up copy), each counted as `bytes` read plus `bytes`
    /// written. The reference for how close a diffusion step comes to the memory bound.
    ///
    /// # Errors
    ///
    /// When the buffers cannot be allocated or the device fails.
    pub fn copy_bandwidth(&self, bytes: u64, repeats: u32) -> Result<f64, GpuError> {
        let bytes = bytes.div_ceil(wgpu::COPY_BUFFER_ALIGNMENT) * wgpu::COPY_BUFFER_ALIGNMENT;
        let failed = |message: String| GpuError::Setup {
            kernel: "copy bandwidth",
            adapter: adapter::describe(&self.info),
            message,
        };
        let scopes = ErrorScopes::push(&self.device);
        let buffer = |label| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let (a, b) = (buffer("explant-gpu bandwidth a"), buffer("explant-gpu bandwidth b"));
        let run = |copies: u32| -> Result<f64, GpuError> {
            let mut encoder =
                self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bandwidth") });
            for k in 0..copies {
                let (from, to) = if k % 2 == 0 { (&a, &b) } else { (&b, &a) };
                encoder.copy_buffer_to_buffer(from, 0, to, 0, Some(bytes));
            }
            let t = std::time::Instant::now();
            self.queue.submit([encoder.finish()]);
            self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| failed(e.to_string()))?;
            Ok(t.elapsed().as_secs_f64())
        };
        run(1)?;
        let seconds = run(repeats.max(1))?;
        if let Some(message) = scopes.pop() {
            return Err(failed(message));
        }
        Ok(2.0 * bytes as f64 * f64::from(repeats.max(1)) / seconds)
    }

    /// Make sure buffers for `shape` exist, building them if the shape changed.
    fn prepare(&mut self, shape: Shape) -> Result<(), String> {
        if self.resources.as_ref().is_some_and(|r| r.shape == shape) {
            return Ok(());
        }
        // Free the old buffers (and what is bound to them) before allocating the new ones.
        self.resources = None;
        self.cells = None;
        self.resident = None;
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

    /// The shape of `field`, after checking that its data has that size; `None` for an
    /// empty grid or no channels (nothing to do).
    fn shape_of(field: &Field) -> Result<Option<Shape>, String> {
        let g = field.grid;
        let shape = Shape { nx: g.nx, ny: g.ny, nz: g.nz, channels: field.channels };
        if shape.voxels() == 0 || shape.channels == 0 {
            return Ok(None);
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
        Ok(Some(shape))
    }

    /// Upload, run every substep, read back. Errors are messages for
    /// [`FieldError::Backend`].
    fn run(&mut self, field: &mut Field, params: &[ChannelParams], plan: SubstepPlan) -> Result<(), String> {
        let Some(shape) = Self::shape_of(field)? else { return Ok(()) };
        // The host path writes its own field into the buffers a resident one lives in.
        self.resident = None;
        let result = self.prepare(shape).and_then(|()| self.upload_run_read(field, params, plan));
        if result.is_err() {
            // A failure may leave buffers mapped or half-written: start afresh next step.
            self.resources = None;
            self.cells = None;
        }
        result
    }

    /// Make sure implicit buffers for `shape` exist, building them if the shape changed.
    fn prepare_implicit(&mut self, shape: Shape) -> Result<(), String> {
        if self.lod.as_ref().is_some_and(|r| r.shape == shape) {
            return Ok(());
        }
        self.lod = None;
        self.cells = None;
        self.resident = None;
        self.adi = None;
        implicit::fits(&shape, &self.device.limits())?;
        let scopes = ErrorScopes::push(&self.device);
        let built = LodResources::new(&self.device, &self.layout, shape);
        if let Some(message) = scopes.pop() {
            return Err(format!(
                "could not allocate buffers for the `{}×{}×{}` grid: {message}",
                shape.nx, shape.ny, shape.nz
            ));
        }
        self.lod = Some(built);
        Ok(())
    }

    /// One implicit step: upload the field (and the coefficients if `(grid, params, dt)`
    /// changed), sweep x, y, z, read back. Errors are messages for
    /// [`FieldError::Backend`].
    ///
    /// `scale`, `affine` and `repeats` select the coefficients and how many sweeps of
    /// all axes run: LOD is `(1, true, 1)`; a damped ADI step `(½, true, 2)`; the solves
    /// of an ADI increment `(½, false, 1)`.
    fn run_implicit(
        &mut self,
        field: &mut Field,
        params: &[ChannelParams],
        dt: f32,
        scale: f64,
        affine: bool,
        repeats: usize,
    ) -> Result<(), String> {
        let Some(shape) = Self::shape_of(field)? else { return Ok(()) };
        // The host path writes its own field into the buffers a resident one lives in.
        self.resident = None;
        let result = self.prepare_implicit(shape).and_then(|()| {
            let lod = self.lod.as_mut().ok_or("buffers missing after preparation")?;
            let scopes = ErrorScopes::push(&self.device);
            lod.update_coefficients(&self.queue, &field.grid, params, dt, scale, affine);
            for (c, buffers) in lod.channels.iter().enumerate() {
                self.queue.write_buffer(&buffers.field, 0, bytemuck::cast_slice(field.channel(c)));
            }
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("explant-gpu implicit step") });
            let sweeps = self.sweeps.as_ref().ok_or("the implicit kernels were not built")?;
            lod.encode(&mut encoder, sweeps, repeats);
            self.queue.submit([encoder.finish()]);
            if let Some(message) = scopes.pop() {
                return Err(message);
            }
            let readbacks: Vec<&wgpu::Buffer> = lod.channels.iter().map(|b| &b.readback).collect();
            Self::read_back(&self.device, &readbacks, field)
        });
        if result.is_err() {
            self.drop_implicit();
        }
        result
    }

    /// Forget the implicit buffers and everything bound to them (after a failure).
    fn drop_implicit(&mut self) {
        self.lod = None;
        self.cells = None;
        self.resident = None;
        self.adi = None;
    }

    /// One ADI step ([`explant_field::adi`]): a damped step is two LOD half steps on the
    /// device; otherwise the host forms the increment `Δ₀` (one stencil pass, with the
    /// listed sources), the device solves its lines with the half coefficients, and the
    /// host adds it to the field.
    fn run_adi(
        &mut self,
        field: &mut Field,
        params: &[ChannelParams],
        dt: f32,
        inputs: StepInputs<'_>,
    ) -> Result<(), String> {
        if inputs.restart {
            return self.run_implicit(field, params, dt, 0.5, true, 2);
        }
        let mut delta = Field::zeros(field.grid, field.channels);
        explant_field::adi::increment(&field.grid, &mut field.data, &mut delta.data, params, dt, inputs.added);
        self.run_implicit(&mut delta, params, dt, 0.5, false, 1)?;
        for (u, d) in field.data.iter_mut().zip(&delta.data) {
            *u += d;
        }
        Ok(())
    }

    /// The body of [`Self::run`] once the buffers exist.
    fn upload_run_read(&self, field: &mut Field, params: &[ChannelParams], plan: SubstepPlan) -> Result<(), String> {
        let res = self.resources.as_ref().ok_or("buffers missing after preparation")?;
        let g = field.grid;
        let scopes = ErrorScopes::push(&self.device);
        self.write_kernel_params(res, &g, params, plan);
        for (c, buffers) in res.channels.iter().enumerate() {
            self.queue.write_buffer(&buffers.ping, 0, bytemuck::cast_slice(field.channel(c)));
        }
        self.encode_and_submit(res, plan.count, true);
        if let Some(message) = scopes.pop() {
            return Err(message);
        }
        let readbacks: Vec<&wgpu::Buffer> = res.channels.iter().map(|b| &b.readback).collect();
        Self::read_back(&self.device, &readbacks, field)
    }

    /// Each channel's substep constants, as `CpuDiffusion` computes them.
    fn write_kernel_params(&self, res: &Resources, g: &Grid, params: &[ChannelParams], plan: SubstepPlan) {
        let faces = 2.0 * g.dims() as f32;
        for (buffers, p) in res.channels.iter().zip(params) {
            // Same expressions, in the same order, as `CpuDiffusion`.
            let a = p.diffusion * plan.dt / (g.dx * g.dx);
            let kdt = p.decay * plan.dt;
            // `Shape::fits` has checked that the grid's voxel count fits in `u32`.
            let (nx, ny, nz) = (g.nx as u32, g.ny as u32, g.nz as u32);
            let kp = KernelParams::new(nx, ny, nz, a, kdt, faces, &p.boundary);
            self.queue.write_buffer(&buffers.params, 0, bytemuck::bytes_of(&kp));
        }
    }

    /// Record all substeps of all channels, then either the copies into the read-back
    /// buffers (`read_back`) or, for a field kept on the device, the copy of an odd
    /// substep count's result back into `ping` (where a resident explicit field always
    /// lives between steps), and submit them.
    fn encode_and_submit(&self, res: &Resources, count: u32, read_back: bool) {
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
                    let bytes = Some(res.shape.channel_bytes());
                    if read_back {
                        encoder.copy_buffer_to_buffer(buffers.result(count), 0, &buffers.readback, 0, bytes);
                    } else if !count.is_multiple_of(2) {
                        encoder.copy_buffer_to_buffer(&buffers.pong, 0, &buffers.ping, 0, bytes);
                    }
                }
            }
            self.queue.submit([encoder.finish()]);
            first = end;
        }
    }

    /// Wait for the GPU and copy every channel's result (`readbacks[c]`, mappable)
    /// into `field`.
    fn read_back(device: &wgpu::Device, readbacks: &[&wgpu::Buffer], field: &mut Field) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        for (c, readback) in readbacks.iter().enumerate() {
            let tx = tx.clone();
            readback.map_async(wgpu::MapMode::Read, .., move |r| {
                // The receiver outlives the poll below; a send error cannot happen.
                let _ = tx.send((c, r));
            });
        }
        drop(tx);
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| format!("waiting for the GPU failed: {e}"))?;
        let mut mapped = 0;
        for (c, r) in rx.try_iter() {
            r.map_err(|e| format!("reading back ligand channel {c} failed: {e}"))?;
            mapped += 1;
        }
        if mapped != readbacks.len() {
            return Err(format!("only {mapped} of {} ligand channels were read back", readbacks.len()));
        }
        for (c, readback) in readbacks.iter().enumerate() {
            {
                let view = readback
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
            readback.unmap();
        }
        Ok(())
    }
}

impl DiffusionBackend for GpuDiffusion {
    /// E.g. `gpu (implicit, wgpu: `llvmpipe (LLVM 15.0.6, 256 bits)` (vulkan, Cpu))`.
    fn name(&self) -> String {
        format!("gpu ({}, wgpu: {})", self.scheme.name(), adapter::describe(&self.info))
    }

    /// The scheme this solver was built with.
    fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn step(&mut self, field: &mut Field, params: &[ChannelParams], dt: f32) -> Result<(), FieldError> {
        self.step_with(field, params, dt, StepInputs::default())
    }

    fn step_with(
        &mut self,
        field: &mut Field,
        params: &[ChannelParams],
        dt: f32,
        inputs: StepInputs<'_>,
    ) -> Result<(), FieldError> {
        if field.channels != params.len() {
            return Err(FieldError::ChannelMismatch { field: field.channels, params: params.len() });
        }
        let result = match self.scheme {
            Scheme::Explicit => {
                let plan = substeps(&field.grid, params, dt)?;
                self.run(field, params, plan)
            }
            Scheme::Implicit => {
                validate(&field.grid, params, dt)?;
                self.run_implicit(field, params, dt, 1.0, true, 1)
            }
            Scheme::Adi => {
                explant_field::validate_adi(field, params, dt, &inputs)?;
                self.run_adi(field, params, dt, inputs)
            }
        };
        result.map_err(|message| FieldError::Backend { backend: self.name(), message })
    }

    /// Every scheme keeps its field on the GPU between steps.
    fn resident(&mut self) -> Option<&mut dyn ResidentField> {
        Some(self)
    }
}

/// The explicit or implicit field kept in its storage buffers between steps (the
/// explicit one always back in its `ping` buffer after a step): uploaded
/// once, swept in place, exchanged with and sampled by the cell kernels
/// (`shaders/cells.wgsl`), and read back only when asked.
impl ResidentField for GpuDiffusion {
    fn upload(&mut self, field: &Field) -> Result<(), FieldError> {
        self.resident_call(|gpu| {
            let Some(shape) = Self::shape_of(field)? else {
                gpu.resident = Some(field.grid);
                return Ok(());
            };
            match gpu.scheme {
                Scheme::Explicit => gpu.prepare(shape)?,
                Scheme::Implicit => gpu.prepare_implicit(shape)?,
                Scheme::Adi => {
                    gpu.prepare_implicit(shape)?;
                    gpu.prepare_adi(shape)?;
                }
            }
            let fields = gpu.resident_buffers();
            let scopes = ErrorScopes::push(&gpu.device);
            for (c, buffer) in fields.iter().enumerate() {
                gpu.queue.write_buffer(buffer, 0, bytemuck::cast_slice(field.channel(c)));
            }
            gpu.queue.submit([]);
            if let Some(message) = scopes.pop() {
                return Err(message);
            }
            gpu.resident = Some(field.grid);
            Ok(())
        })
    }

    fn download(&mut self, field: &mut Field) -> Result<(), FieldError> {
        self.resident_call(|gpu| {
            let grid = gpu.resident.ok_or("the resident field was never uploaded")?;
            let fields = gpu.resident_buffers();
            if field.grid != grid || (!fields.is_empty() && field.channels != fields.len()) {
                return Err("download into a field of another shape than the uploaded one".into());
            }
            let readbacks = gpu.readback_buffers();
            if fields.is_empty() {
                return Ok(());
            }
            let bytes = Some(field.grid.voxels() as u64 * 4);
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("explant-gpu download") });
            for (from, to) in fields.iter().zip(&readbacks) {
                encoder.copy_buffer_to_buffer(from, 0, to, 0, bytes);
            }
            gpu.queue.submit([encoder.finish()]);
            Self::read_back(&gpu.device, &readbacks, field)
        })
    }

    fn step_resident(&mut self, params: &[ChannelParams], dt: f32, restart: bool) -> Result<(), FieldError> {
        let grid = self.resident.ok_or_else(never_uploaded)?;
        match self.scheme {
            Scheme::Implicit => validate(&grid, params, dt)?,
            Scheme::Explicit => {
                let plan = substeps(&grid, params, dt)?;
                return self.resident_call(|gpu| {
                    let Some(res) = gpu.resources.as_ref() else { return Ok(()) };
                    if res.channels.len() != params.len() {
                        return Err(format!(
                            "{} sets of parameters for {} resident channels",
                            params.len(),
                            res.channels.len()
                        ));
                    }
                    let scopes = ErrorScopes::push(&gpu.device);
                    gpu.write_kernel_params(res, &grid, params, plan);
                    gpu.encode_and_submit(res, plan.count, false);
                    scopes.pop().map_or(Ok(()), Err)
                });
            }
            Scheme::Adi => {
                validate(&grid, params, dt)?;
                return self.resident_call(|gpu| gpu.step_adi(&grid, params, dt, restart));
            }
        }
        self.resident_call(|gpu| {
            let Some(lod) = gpu.lod.as_mut() else { return Ok(()) };
            if lod.channels.len() != params.len() {
                return Err(format!(
                    "{} sets of parameters for {} resident channels",
                    params.len(),
                    lod.channels.len()
                ));
            }
            let scopes = ErrorScopes::push(&gpu.device);
            lod.update_coefficients(&gpu.queue, &grid, params, dt, 1.0, true);
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("explant-gpu resident step") });
            let sweeps = gpu.sweeps.as_ref().ok_or("the implicit kernels were not built")?;
            lod.encode_sweeps(&mut encoder, sweeps, 1);
            gpu.queue.submit([encoder.finish()]);
            scopes.pop().map_or(Ok(()), Err)
        })
    }

    fn add_sources(&mut self, added: &[(u32, f32)]) -> Result<(), FieldError> {
        if self.scheme != Scheme::Adi || added.is_empty() {
            return Ok(());
        }
        let grid = self.resident.ok_or_else(never_uploaded)?;
        let channels = self.resident_buffers().len();
        if let Some(&(i, _)) = added.iter().find(|(i, _)| *i as usize >= grid.voxels() * channels) {
            return Err(FieldError::SourceOutOfRange { index: i as usize, len: grid.voxels() * channels });
        }
        self.resident_call(|gpu| {
            let Some(buffers) = gpu.adi.as_ref() else { return Ok(()) };
            let lod = gpu.lod.as_ref().ok_or("buffers missing after preparation")?;
            // Read the sources back, add the host's in order, and write them again: this
            // happens only at ticks where the host changed the field, which it uploads anyway.
            let mut s = Field::zeros(grid, channels);
            let bytes = Some(grid.voxels() as u64 * 4);
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("explant-gpu sources") });
            for (from, to) in buffers.sources.iter().zip(&lod.channels) {
                encoder.copy_buffer_to_buffer(from, 0, &to.readback, 0, bytes);
            }
            gpu.queue.submit([encoder.finish()]);
            let readbacks: Vec<&wgpu::Buffer> = lod.channels.iter().map(|c| &c.readback).collect();
            Self::read_back(&gpu.device, &readbacks, &mut s)?;
            for &(i, amount) in added {
                s.data[i as usize] += amount;
            }
            for (c, buffer) in buffers.sources.iter().enumerate() {
                gpu.queue.write_buffer(buffer, 0, bytemuck::cast_slice(s.channel(c)));
            }
            Ok(())
        })
    }

    fn exchange(&mut self, ex: &CellExchange<'_>, changes: &mut [f32]) -> Result<(), FieldError> {
        let grid = self.resident.ok_or_else(never_uploaded)?;
        ex.check(grid.voxels(), changes.len())?;
        let channels = self.resident_buffers().len();
        if ex.channels != channels {
            return Err(FieldError::ChannelMismatch { field: channels, params: ex.channels });
        }
        if channels == 0 || ex.order.is_empty() {
            changes.fill(0.0);
            return Ok(());
        }
        let cells = ex.coef.len() / channels;
        self.resident_call(|gpu| {
            gpu.run_cells(cells.max(ex.order.len()), changes, |queue, encoder, pipes, buffers, max| {
                buffers.encode_exchange(queue, encoder, pipes, ex, max)
            })
        })
    }

    fn sample(&mut self, voxels: &[u32], out: &mut [f32]) -> Result<(), FieldError> {
        let grid = self.resident.ok_or_else(never_uploaded)?;
        let channels = self.resident_buffers().len();
        check_sample(grid.voxels(), channels, voxels, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        self.resident_call(|gpu| {
            gpu.run_cells(voxels.len(), out, |queue, encoder, pipes, buffers, max| {
                buffers.encode_sample(queue, encoder, pipes, voxels, max)
            })
        })
    }
}

/// A resident call before any upload (a bug in the caller, not user input).
fn never_uploaded() -> FieldError {
    FieldError::Exchange("the resident field was never uploaded".into())
}

impl GpuDiffusion {
    /// Run `body`, turning its message into [`FieldError::Backend`]; a failure drops the
    /// resident field and its buffers (they may be half written), so the next use must
    /// upload again.
    fn resident_call(&mut self, body: impl FnOnce(&mut Self) -> Result<(), String>) -> Result<(), FieldError> {
        let result = body(self);
        if result.is_err() {
            self.drop_implicit();
        }
        result.map_err(|message| FieldError::Backend { backend: self.name(), message })
    }

    /// The buffer of each channel a resident field lives in: the implicit field buffers,
    /// or the explicit `ping` buffers (empty when there are none).
    fn resident_buffers(&self) -> Vec<&wgpu::Buffer> {
        match self.scheme {
            Scheme::Explicit => {
                self.resources.as_ref().map_or_else(Vec::new, |r| r.channels.iter().map(|c| &c.ping).collect())
            }
            Scheme::Implicit => {
                self.lod.as_ref().map_or_else(Vec::new, |l| l.channels.iter().map(|c| &c.field).collect())
            }
            Scheme::Adi => self.adi.as_ref().map_or_else(Vec::new, |a| a.u.iter().collect()),
        }
    }

    /// The mappable read-back buffer of each channel of the resident field.
    fn readback_buffers(&self) -> Vec<&wgpu::Buffer> {
        if self.scheme == Scheme::Explicit {
            self.resources.as_ref().map_or_else(Vec::new, |r| r.channels.iter().map(|c| &c.readback).collect())
        } else {
            self.lod.as_ref().map_or_else(Vec::new, |l| l.channels.iter().map(|c| &c.readback).collect())
        }
    }

    /// Make sure the ADI kernels and the resident ADI buffers for `shape` exist (after
    /// [`Self::prepare_implicit`], whose field buffers hold the increments).
    fn prepare_adi(&mut self, shape: Shape) -> Result<(), String> {
        if self.adi.as_ref().is_some_and(|a| a.shape == shape) {
            return Ok(());
        }
        shape.fits(&self.device.limits())?;
        if self.adi_pipes.is_none() {
            let scopes = ErrorScopes::push(&self.device);
            let pipes = adi::AdiPipelines::new(&self.device);
            if let Some(message) = scopes.pop() {
                return Err(format!("could not build the ADI kernels (shaders/adi.wgsl): {message}"));
            }
            self.adi_pipes = Some(pipes);
        }
        let (Some(lod), Some(pipes)) = (self.lod.as_ref(), self.adi_pipes.as_ref()) else {
            return Err("buffers missing after preparation".into());
        };
        let deltas: Vec<&wgpu::Buffer> = lod.channels.iter().map(|c| &c.field).collect();
        let scopes = ErrorScopes::push(&self.device);
        let built = adi::AdiBuffers::new(&self.device, pipes, shape, &deltas);
        if let Some(message) = scopes.pop() {
            return Err(format!(
                "could not allocate buffers for the `{}×{}×{}` grid: {message}",
                shape.nx, shape.ny, shape.nz
            ));
        }
        self.cells = None;
        self.adi = Some(built);
        Ok(())
    }

    /// One ADI step of the resident field: a damped step (`restart`) is two LOD half
    /// steps of the field itself; otherwise take the sources back, form the increment,
    /// sweep it with the homogeneous half coefficients, and add it (clearing the
    /// sources). Either way nothing crosses to the host.
    fn step_adi(&mut self, grid: &Grid, params: &[ChannelParams], dt: f32, restart: bool) -> Result<(), String> {
        let (Some(lod), Some(buffers), Some(pipes), Some(sweeps)) =
            (self.lod.as_mut(), self.adi.as_ref(), self.adi_pipes.as_ref(), self.sweeps.as_ref())
        else {
            return Ok(());
        };
        if buffers.u.len() != params.len() {
            return Err(format!("{} sets of parameters for {} resident channels", params.len(), buffers.u.len()));
        }
        let scopes = ErrorScopes::push(&self.device);
        lod.update_coefficients(&self.queue, grid, params, dt, 0.5, restart);
        let bytes = Some(buffers.shape.channel_bytes());
        let mut encoder =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("explant-gpu adi step") });
        if restart {
            // The field with everything added is what the damped half steps start from.
            for (u, c) in buffers.u.iter().zip(&lod.channels) {
                encoder.copy_buffer_to_buffer(u, 0, &c.field, 0, bytes);
            }
            lod.encode_sweeps(&mut encoder, sweeps, 2);
            for ((u, c), s) in buffers.u.iter().zip(&lod.channels).zip(&buffers.sources) {
                encoder.copy_buffer_to_buffer(&c.field, 0, u, 0, bytes);
                encoder.clear_buffer(s, 0, None);
            }
        } else {
            let faces = 2.0 * grid.dims() as f32;
            for (b, p) in buffers.params.iter().zip(params) {
                let (a, kdt) = (p.diffusion * dt / (grid.dx * grid.dx), p.decay * dt);
                let (nx, ny, nz) = (grid.nx as u32, grid.ny as u32, grid.nz as u32);
                let kp = resources::KernelParams::new(nx, ny, nz, a, kdt, faces, &p.boundary);
                self.queue.write_buffer(b, 0, bytemuck::bytes_of(&kp));
            }
            buffers.dispatch(&mut encoder, &pipes.take_back, &buffers.finish);
            buffers.dispatch(&mut encoder, &pipes.increment, &buffers.increment);
            lod.encode_sweeps(&mut encoder, sweeps, 1);
            buffers.dispatch(&mut encoder, &pipes.finish, &buffers.finish);
        }
        self.queue.submit([encoder.finish()]);
        scopes.pop().map_or(Ok(()), Err)
    }

    /// Run a cell kernel on buffers for at least `cells` cells: `record` uploads its lists
    /// and records its dispatches and the copy of its values, which are then read back
    /// into `into`.
    fn run_cells(
        &mut self,
        cells: usize,
        into: &mut [f32],
        record: impl FnOnce(
            &wgpu::Queue,
            &mut wgpu::CommandEncoder,
            &CellPipelines,
            &CellBuffers,
            u32,
        ) -> Result<(), String>,
    ) -> Result<(), String> {
        self.prepare_cells(cells)?;
        let (Some(pipes), Some(buffers)) = (self.cell_pipes.as_ref(), self.cells.as_ref()) else {
            return Err("cell buffers missing after preparation".into());
        };
        let max = self.device.limits().max_compute_workgroups_per_dimension;
        let scopes = ErrorScopes::push(&self.device);
        let mut encoder =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("explant-gpu cells") });
        record(&self.queue, &mut encoder, pipes, buffers, max)?;
        self.queue.submit([encoder.finish()]);
        if let Some(message) = scopes.pop() {
            return Err(message);
        }
        buffers.read(&self.device, into)
    }

    /// Make sure the cell kernels exist and their buffers hold at least `cells` cells
    /// (growing by half again), bound to the resident field's buffers.
    fn prepare_cells(&mut self, cells: usize) -> Result<(), String> {
        if self.cell_pipes.is_none() {
            let scopes = ErrorScopes::push(&self.device);
            let pipes = CellPipelines::new(&self.device);
            if let Some(message) = scopes.pop() {
                return Err(format!("could not build the cell kernels (shaders/cells.wgsl): {message}"));
            }
            self.cell_pipes = Some(pipes);
        }
        if self.cells.as_ref().is_some_and(|b| b.cells >= cells) {
            return Ok(());
        }
        let fields = self.resident_buffers();
        if fields.is_empty() {
            return Err("the resident field was never uploaded".into());
        }
        let pipes = self.cell_pipes.as_ref().ok_or("cell kernels missing")?;
        let capacity = cells + cells / 2;
        let limit = self.device.limits().max_storage_buffer_binding_size as usize;
        let widest = cells::list_words(capacity.max(1), fields.len()) as usize * 4;
        if widest > limit {
            return Err(format!(
                "{cells} cells need a {widest}-byte buffer of exchange lists, more than this device's \
                 `max_storage_buffer_binding_size` of {limit}"
            ));
        }
        let sources: Option<Vec<&wgpu::Buffer>> = self.adi.as_ref().map(|a| a.sources.iter().collect());
        let scopes = ErrorScopes::push(&self.device);
        let built = CellBuffers::new(&self.device, pipes, &fields, sources.as_deref(), capacity);
        if let Some(message) = scopes.pop() {
            return Err(format!("could not allocate buffers for {cells} cells: {message}"));
        }
        self.cells = Some(built);
        Ok(())
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
