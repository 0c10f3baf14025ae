//! Ligand fields on a uniform grid, and the diffusion–decay step that moves them.
//!
//! A [`Field`] holds `channels` ligands on a regular grid of `nx × ny × nz` voxels
//! (`nz == 1` is a 2D tissue). Values are concentrations in amount per voxel volume;
//! the layout is channel-major (`data[c * voxels + (z * ny + y) * nx + x]`) so that one
//! ligand is one contiguous slab, which is what both the rayon loop and the WGSL kernel
//! (`shaders/diffuse.wgsl`) stride over.
//!
//! # Schemes
//!
//! [`Scheme::Explicit`] is the forward-time, centred-space scheme
//! `c' = c + Δt (D ∇²c − k c)` with the standard `2·dim + 1` point Laplacian. It is first
//! order in time and second order in space. [`substeps`] splits any requested step into
//! the fewest equal substeps with `(2·dim + f)·D Δt / Δx² + k Δt ≤ 0.9` (`f` the number
//! of `Fixed` faces one voxel can touch), which keeps every coefficient of the update
//! non-negative: the scheme is then stable and obeys the maximum principle (no negative
//! concentrations), so users can give any Δt. Every backend must compute the very same
//! float32 arithmetic per voxel, in the order written in [`stencil_update`], so that the
//! CPU and GPU paths agree to rounding.
//!
//! [`Scheme::Implicit`] is the locally one-dimensional (LOD) backward-Euler splitting of
//! BioFVM (Ghaffarizadeh, Friedman & Macklin, *Bioinformatics* 32:1256, 2016): one
//! tridiagonal solve per grid line along x, then y, then z, with the decay split evenly
//! across the sweeps. Unconditionally stable and positivity preserving, one pass per step
//! whatever Δt; first order in time (the splitting error is also `O(Δt)`), second order
//! in space. See [`implicit`] for the exact per-element arithmetic.
//!
//! [`Scheme::Adi`] is Douglas ADI (Crank–Nicolson in time, θ = ½) in delta form, built on
//! the same line solver with half coefficients: second order in time and space,
//! unconditionally stable, about 20× more accurate than LOD at PhysiCell's steps. It
//! needs to be told what was added to the field since the last step and when to take a
//! damped start ([`StepInputs`]); see [`adi`].
//!
//! # Boundaries
//!
//! Voxels are cell-centred; each of the six faces ([`Faces`]) is [`Boundary::ZeroFlux`]
//! (the neighbour beyond the face is the voxel itself), [`Boundary::Fixed`] (the neighbour
//! is the ghost `2·value − c`, which holds `value` on the face to second order) or
//! [`Boundary::Periodic`] (the neighbour is the voxel at the opposite end of the axis;
//! both faces of an axis or neither, see [`validate`]).

pub mod adi;
mod cpu;
mod error;
pub mod implicit;
pub mod resident;
mod simd_lines;
mod transpose;

pub use adi::damped_steps;
pub use cpu::CpuDiffusion;
pub use error::FieldError;
pub use resident::{CellExchange, Detached, ResidentField};

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
    /// The voxels a gradient at voxel `v` differences, per axis `[low, high]`: the
    /// neighbours on either side, `v` itself at the grid's edges (and both on an axis one
    /// voxel thick).
    pub fn gradient_points(&self, v: usize) -> [[usize; 2]; 3] {
        let at = self.coords(v);
        let n = [self.nx, self.ny, self.nz];
        let stride = [1, self.nx, self.nx * self.ny];
        std::array::from_fn(|a| {
            let lo = if at[a] > 0 { v - stride[a] } else { v };
            let hi = if at[a] + 1 < n[a] { v + stride[a] } else { v };
            [lo, hi]
        })
    }

    /// The gradient at voxel `v` per µm from the values at its [`Grid::gradient_points`]
    /// (`values[axis] = [low, high]`): `(high − low) / (span · dx)` with `span` 2 between
    /// two neighbours and 1 at an edge; zero along an axis one voxel thick.
    pub fn gradient_of(&self, v: usize, values: [[f32; 2]; 3]) -> [f32; 3] {
        let n = [self.nx, self.ny, self.nz];
        let points = self.gradient_points(v);
        let mut out = [0.0; 3];
        for a in 0..3 {
            if n[a] < 2 {
                continue;
            }
            let [lo, hi] = points[a];
            let span = if lo == v || hi == v { 1.0 } else { 2.0 };
            out[a] = (values[a][1] - values[a][0]) / (span * self.dx);
        }
        out
    }

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
    #[inline]
    pub fn voxel_of(&self, p: [f32; 3]) -> usize {
        // `as usize` truncates toward zero and saturates (NaN and negatives to 0), which
        // is the floor for every value that is not clamped to 0 anyway: no `floorf` call.
        let clamp = |v: f32, o: f32, n: usize| -> usize { (((v - o) / self.dx) as usize).min(n - 1) };
        let x = clamp(p[0], self.origin[0], self.nx);
        let y = clamp(p[1], self.origin[1], self.ny);
        let z = if self.nz == 1 { 0 } else { clamp(p[2], self.origin[2], self.nz) };
        (z * self.ny + y) * self.nx + x
    }

    /// Voxel coordinates `(x, y, z)` of a linear index.
    pub fn coords(&self, v: usize) -> [usize; 3] {
        [v % self.nx, (v / self.nx) % self.ny, v / (self.nx * self.ny)]
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

/// What happens at one face of the grid. Voxels are cell-centred: the face lies half a
/// voxel beyond the outermost voxel centre.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Boundary {
    /// No flux through the face: the neighbour beyond it is taken equal to the voxel
    /// itself (a mirror).
    #[default]
    ZeroFlux,
    /// The concentration at the face is held at `value` (Dirichlet): the neighbour beyond
    /// it is the ghost value `2·value − c`, which puts `value` exactly on the face
    /// (second order).
    Fixed {
        /// Concentration at the face.
        value: f32,
    },
    /// The grid wraps around: the neighbour beyond the face is the voxel at the opposite
    /// face. Both faces of an axis must be periodic.
    Periodic,
}

/// Boundary conditions of the six faces, in the order x−, x+, y−, y+, z−, z+ (the z
/// faces are ignored on a 2D grid).
pub type Faces = [Boundary; 6];

/// How a step is integrated in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Forward Euler with the `2·dim + 1` point Laplacian, split into the fewest equal
    /// substeps inside the stability limit ([`substeps`]). First order in time, second in
    /// space; cheap per substep, but the substep count grows as `D Δt / Δx²`.
    #[default]
    Explicit,
    /// Locally one-dimensional implicit splitting (as BioFVM): per step, one backward-Euler
    /// tridiagonal solve along x, then y, then z (Thomas algorithm), with decay split
    /// evenly across the sweeps. Unconditionally stable, one pass per step whatever Δt;
    /// first order in time, second in space.
    Implicit,
    /// Douglas ADI, Crank–Nicolson in time, in delta form, with sources through the
    /// explicit increment and damped (Rannacher) restarts ([`adi`]): second order in time
    /// and space, unconditionally stable, one stencil pass and one solve per axis per
    /// step.
    Adi,
}

impl Scheme {
    /// The name used in scenes and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Explicit => "explicit",
            Scheme::Implicit => "implicit",
            Scheme::Adi => "adi",
        }
    }
}

/// What a step needs to know besides the field, for schemes that treat sources and
/// sharp changes themselves ([`Scheme::Adi`]); the others ignore it.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepInputs<'a> {
    /// Everything added to the field since the previous step, already in it: `(index into
    /// Field::data, amount)`, in the order it was added (negative amounts are uptake).
    pub added: &'a [(u32, f32)],
    /// The field changed sharply since the previous step (the start of a run, a bolus):
    /// take a damped step.
    pub restart: bool,
}

/// Per-ligand transport constants.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChannelParams {
    /// Diffusion coefficient in µm²/min.
    pub diffusion: f32,
    /// First-order decay rate in 1/min.
    pub decay: f32,
    /// Boundary conditions of the six faces.
    pub boundary: Faces,
}

impl ChannelParams {
    /// Zero-flux walls on every face.
    pub fn new(diffusion: f32, decay: f32) -> Self {
        Self { diffusion, decay, boundary: Faces::default() }
    }
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

    /// Gradient of channel `c` at the voxel containing `p`, per µm: central differences
    /// between the neighbouring voxels, one-sided at the grid's edges, zero along an axis
    /// one voxel thick ([`Grid::gradient_points`], [`Grid::gradient_of`]).
    pub fn gradient(&self, c: usize, p: [f32; 3]) -> [f32; 3] {
        let g = self.grid;
        let data = self.channel(c);
        let v = g.voxel_of(p);
        g.gradient_of(v, g.gradient_points(v).map(|[lo, hi]| [data[lo], data[hi]]))
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

/// Check a time step and the parameters of every channel: `dt` positive and finite,
/// diffusion and decay non-negative and finite, `Fixed` values finite, and periodic
/// boundaries set on both faces of an axis or on neither (the z faces are ignored on a
/// 2D grid). Both schemes call this before stepping.
pub fn validate(grid: &Grid, params: &[ChannelParams], dt: f32) -> Result<(), FieldError> {
    if !(dt.is_finite() && dt > 0.0) {
        return Err(FieldError::BadTimeStep { dt });
    }
    for (c, p) in params.iter().enumerate() {
        if !(p.diffusion.is_finite() && p.diffusion >= 0.0) {
            return Err(FieldError::BadParameter { channel: c, name: "diffusion", value: p.diffusion });
        }
        if !(p.decay.is_finite() && p.decay >= 0.0) {
            return Err(FieldError::BadParameter { channel: c, name: "decay", value: p.decay });
        }
        for b in &p.boundary[..2 * grid.dims()] {
            if let Boundary::Fixed { value } = *b
                && !value.is_finite()
            {
                return Err(FieldError::BadParameter { channel: c, name: "fixed boundary value", value });
            }
        }
        for (axis, name) in ['x', 'y', 'z'].into_iter().enumerate().take(grid.dims()) {
            let lo = p.boundary[2 * axis] == Boundary::Periodic;
            let hi = p.boundary[2 * axis + 1] == Boundary::Periodic;
            if lo != hi {
                return Err(FieldError::HalfPeriodic { channel: c, axis: name });
            }
        }
    }
    Ok(())
}

/// Check an ADI step's inputs: [`validate`], the field's channels against the
/// parameters, and every listed source inside the field. Both backends call this.
pub fn validate_adi(
    field: &Field,
    params: &[ChannelParams],
    dt: f32,
    inputs: &StepInputs<'_>,
) -> Result<(), FieldError> {
    if field.channels != params.len() {
        return Err(FieldError::ChannelMismatch { field: field.channels, params: params.len() });
    }
    validate(&field.grid, params, dt)?;
    match inputs.added.iter().find(|(i, _)| *i as usize >= field.data.len()) {
        Some(&(i, _)) => Err(FieldError::SourceOutOfRange { index: i as usize, len: field.data.len() }),
        None => Ok(()),
    }
}

/// The most `Fixed` faces a single voxel of `grid` touches under `faces`: one per axis
/// with a `Fixed` face, two for an axis one voxel long with both faces `Fixed`.
fn fixed_faces_per_voxel(grid: &Grid, faces: &Faces) -> usize {
    let n = [grid.nx, grid.ny, grid.nz];
    (0..grid.dims())
        .map(|axis| {
            let fixed = faces[2 * axis..2 * axis + 2].iter().filter(|b| matches!(b, Boundary::Fixed { .. })).count();
            if n[axis] == 1 { fixed } else { fixed.min(1) }
        })
        .sum()
}

/// Split `dt` into the fewest equal substeps that keep every channel inside the
/// explicit scheme's limit, `(2·dim + f)·D Δt / Δx² + k Δt ≤ 0.9`, where `f` is the
/// number of `Fixed` faces one voxel touches (at most one per axis).
///
/// Why this limit: the update of a voxel is `c' = w·c + a·Σ(neighbours in the grid)
/// (+ 2a·value per Fixed face)` with `w = 1 − (2·dim + f)·a − kΔt`, since a Fixed face's
/// ghost `2·value − c` puts one more `−a·c` on the voxel. Keeping `w ≥ 0.1` for every voxel
/// makes all weights non-negative, so the update is monotone: concentrations stay
/// non-negative and bounded, and the step is stable. (The classic von Neumann bound
/// `4·dim·a + kΔt ≤ 2` would be enough for stability alone, but allows overshoot to
/// negative values next to a Fixed face, and the old separate limits `2·dim·a ≤ 0.9`,
/// `kΔt ≤ 0.9` did not even guarantee that when both were near their bound.)
pub fn substeps(grid: &Grid, params: &[ChannelParams], dt: f32) -> Result<SubstepPlan, FieldError> {
    validate(grid, params, dt)?;
    let mut limit = f32::INFINITY;
    for p in params {
        let f = fixed_faces_per_voxel(grid, &p.boundary);
        let rate = (2 * grid.dims() + f) as f32 * p.diffusion / (grid.dx * grid.dx) + p.decay;
        if rate > 0.0 {
            limit = limit.min(0.9 / rate);
        }
    }
    let count = (dt / limit).ceil().max(1.0);
    if count > 1.0e7 {
        return Err(FieldError::TooManySubsteps { dt, limit });
    }
    let count = count as u32;
    Ok(SubstepPlan { count, dt: dt / count as f32 })
}

/// The per-voxel update every explicit backend performs, written once as the reference:
/// `c' = c + a·(Σ neighbours − 2·dim·c) − kdt·c` with `a = D Δt / Δx²`, `kdt = k Δt`,
/// `faces = 2·dim` and `neighbour_sum = xm + xp + ym + yp` (then `+ zm + zp` in 3D, in
/// that order). The neighbour beyond a face is exactly `c` (`ZeroFlux`), `2.0 * value − c`
/// (`Fixed`) or the voxel at the opposite end of the axis (`Periodic`).
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

    /// The time-integration scheme this backend uses.
    fn scheme(&self) -> Scheme {
        Scheme::Explicit
    }

    /// Advance `field` by `dt` minutes of diffusion and decay.
    fn step(&mut self, field: &mut Field, params: &[ChannelParams], dt: f32) -> Result<(), FieldError>;

    /// [`DiffusionBackend::step`], told what was added since the last step and whether
    /// to restart damped. The default ignores `inputs`: the explicit and LOD schemes take
    /// the additions as part of the field (first-order splitting of sources).
    fn step_with(
        &mut self,
        field: &mut Field,
        params: &[ChannelParams],
        dt: f32,
        inputs: StepInputs<'_>,
    ) -> Result<(), FieldError> {
        let _ = inputs;
        self.step(field, params, dt)
    }

    /// The copy of the field this backend keeps between steps, if it keeps one (a GPU's
    /// buffers; see [`resident`]). `None` (the default) when every step must be given
    /// the host field.
    fn resident(&mut self) -> Option<&mut dyn ResidentField> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voxel_of_is_the_clamped_floor_of_every_coordinate_including_odd_ones() {
        let g = Grid { nx: 7, ny: 5, nz: 3, dx: 2.5, origin: [-10.0, 0.0, 3.0] };
        // The definition: floor((v − o)/dx), clamped to [0, n − 1], NaN to 0.
        let reference = |v: f32, o: f32, n: usize| -> usize {
            let i = ((v - o) / g.dx).floor();
            if i.is_nan() || i < 0.0 { 0 } else { (i as usize).min(n - 1) }
        };
        let odd = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1e30,
            1e30,
            -10.0,
            -10.000001,
            -9.999999,
            -7.5,
            -7.500001,
            -0.0,
            0.0,
            1e-40,
            -1e-40,
            2.4999998,
            2.5,
            3.0,
            5.5,
            7.5,
            7.4999995,
            100.0,
        ];
        for &x in &odd {
            for &y in &odd {
                for &z in &odd {
                    let want = (reference(z, 3.0, 3) * g.ny + reference(y, 0.0, 5)) * g.nx + reference(x, -10.0, 7);
                    assert_eq!(g.voxel_of([x, y, z]), want, "({x}, {y}, {z})");
                }
            }
        }
    }
}
