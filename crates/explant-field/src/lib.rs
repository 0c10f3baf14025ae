//! Ligand fields on a uniform grid, and the diffusion–decay step that moves them.
//!
//! A [`Field`] holds `channels` ligands on a regular grid of `nx × ny × nz` voxels
//! (`nz == 1` is a 2D tissue). Values are concentrations in amount per voxel volume;
//! the layout is channel-major (`data[c * voxels + (z * ny + y) * nx + x]`) so that one
//! ligand is one contiguous slab, which is what both the rayon loop and the WGSL kernel
//! (`shaders/diffuse.wgsl`) stride over.
//!
//! The time step is the explicit forward-time, centred-space scheme
//! `c' = c + Δt (D ∇²c − k c)` with the standard `2·dim + 1` point Laplacian and
//! zero-flux (mirror) walls. It is first order in time and second order in space, and
//! stable when `D Δt / Δx² ≤ 1 / (2·dim)`; [`substeps`] splits any requested step into
//! equal substeps inside that limit (with a 10 % margin), so users can give any Δt.
//! The implicit solver the ligand-fields issue asks for will sit behind the same
//! [`DiffusionBackend`] trait.
//!
//! Every backend must compute the very same float32 arithmetic per voxel, in the order
//! written in [`stencil_update`], so that the CPU and GPU paths agree to rounding.

mod cpu;
mod error;

pub use cpu::CpuDiffusion;
pub use error::FieldError;

use serde::{Deserialize, Serialize};

/// A regular grid: voxel counts, edge length and the position of voxel (0,0,0)'s corner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Voxels along x.
    pub nx: usize,
    /// Voxels along y.
    pub ny: usize,
    /// Voxels along z (1 for a 2D tissue).
    pub nz: usize,
    /// Voxel edge length in µm.
    pub dx: f32,
    /// World position (µm) of the lower corner of voxel (0, 0, 0).
    pub origin: [f32; 3],
}

impl Grid {
    /// Number of voxels.
    pub fn voxels(&self) -> usize {
        self.nx * self.ny * self.nz
    }

    /// 2 for a flat grid (`nz == 1`), else 3.
    pub fn dims(&self) -> usize {
        if self.nz == 1 { 2 } else { 3 }
    }

    /// Volume of one voxel in µm³ (a 2D grid counts a slab one voxel thick).
    pub fn voxel_volume(&self) -> f32 {
        self.dx * self.dx * self.dx
    }

    /// Linear index of the voxel containing world point `p`, clamped to the grid.
    pub fn voxel_of(&self, p: [f32; 3]) -> usize {
        let clamp = |v: f32, o: f32, n: usize| -> usize {
            let i = ((v - o) / self.dx).floor();
            if i.is_nan() || i < 0.0 { 0 } else { (i as usize).min(n - 1) }
        };
        let x = clamp(p[0], self.origin[0], self.nx);
        let y = clamp(p[1], self.origin[1], self.ny);
        let z = if self.nz == 1 { 0 } else { clamp(p[2], self.origin[2], self.nz) };
        (z * self.ny + y) * self.nx + x
    }

    /// World position of the centre of voxel `(x, y, z)`.
    pub fn centre(&self, x: usize, y: usize, z: usize) -> [f32; 3] {
        [
            self.origin[0] + (x as f32 + 0.5) * self.dx,
            self.origin[1] + (y as f32 + 0.5) * self.dx,
            if self.nz == 1 { 0.0 } else { self.origin[2] + (z as f32 + 0.5) * self.dx },
        ]
    }
}

/// Per-ligand transport constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelParams {
    /// Diffusion coefficient in µm²/min.
    pub diffusion: f32,
    /// First-order decay rate in 1/min.
    pub decay: f32,
}

/// Concentrations of every ligand on one grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The grid the values live on.
    pub grid: Grid,
    /// Number of ligands.
    pub channels: usize,
    /// Channel-major values, `channels × voxels`.
    pub data: Vec<f32>,
}

impl Field {
    /// A field of zeros.
    pub fn zeros(grid: Grid, channels: usize) -> Self {
        Self { grid, channels, data: vec![0.0; channels * grid.voxels()] }
    }

    /// The values of one ligand.
    pub fn channel(&self, c: usize) -> &[f32] {
        let v = self.grid.voxels();
        &self.data[c * v..(c + 1) * v]
    }

    /// The values of one ligand, mutable.
    pub fn channel_mut(&mut self, c: usize) -> &mut [f32] {
        let v = self.grid.voxels();
        &mut self.data[c * v..(c + 1) * v]
    }

    /// Total amount of ligand `c` (sum of concentration × voxel volume).
    pub fn total(&self, c: usize) -> f64 {
        let vol = f64::from(self.grid.voxel_volume());
        self.channel(c).iter().map(|&v| f64::from(v)).sum::<f64>() * vol
    }
}

/// The explicit substep plan for one requested time step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubstepPlan {
    /// How many equal substeps.
    pub count: u32,
    /// Length of each substep in minutes.
    pub dt: f32,
}

/// Split `dt` into the fewest equal substeps that keep every channel inside the
/// explicit scheme's stability limit, `D Δt / Δx² ≤ 0.9 / (2·dim)` and `k Δt ≤ 0.9`.
pub fn substeps(grid: &Grid, params: &[ChannelParams], dt: f32) -> Result<SubstepPlan, FieldError> {
    if !(dt.is_finite() && dt > 0.0) {
        return Err(FieldError::BadTimeStep { dt });
    }
    let mut limit = f32::INFINITY;
    for (c, p) in params.iter().enumerate() {
        if !(p.diffusion.is_finite() && p.diffusion >= 0.0) {
            return Err(FieldError::BadParameter { channel: c, name: "diffusion", value: p.diffusion });
        }
        if !(p.decay.is_finite() && p.decay >= 0.0) {
            return Err(FieldError::BadParameter { channel: c, name: "decay", value: p.decay });
        }
        if p.diffusion > 0.0 {
            limit = limit.min(0.9 * grid.dx * grid.dx / (2.0 * grid.dims() as f32 * p.diffusion));
        }
        if p.decay > 0.0 {
            limit = limit.min(0.9 / p.decay);
        }
    }
    let count = (dt / limit).ceil().max(1.0);
    if count > 1.0e7 {
        return Err(FieldError::TooManySubsteps { dt, limit });
    }
    let count = count as u32;
    Ok(SubstepPlan { count, dt: dt / count as f32 })
}

/// The per-voxel update every backend performs, written once as the reference:
/// `c' = c + a·(Σ neighbours − 2·dim·c) − kdt·c` with `a = D Δt / Δx²`, `kdt = k Δt`.
/// Neighbours beyond a wall are mirrored (equal to `c`), which makes the wall zero-flux.
#[inline(always)]
pub fn stencil_update(c: f32, neighbour_sum: f32, faces: f32, a: f32, kdt: f32) -> f32 {
    let lap = neighbour_sum - faces * c;
    c + a * lap - kdt * c
}

/// A way to advance a [`Field`] by one time step.
///
/// Backends: [`CpuDiffusion`] here (rayon), `explant_gpu::GpuDiffusion` (wgpu).
pub trait DiffusionBackend: Send + Sync {
    /// A short human-readable name, e.g. `cpu (rayon, 2 threads)` or the GPU adapter.
    fn name(&self) -> String;

    /// Advance `field` by `dt` minutes of diffusion and decay.
    fn step(&mut self, field: &mut Field, params: &[ChannelParams], dt: f32) -> Result<(), FieldError>;
}
