//! Fields that stay on a device between ticks.
//!
//! A backend that keeps its own copy of the field (a GPU's buffers) can offer it as a
//! [`ResidentField`] through [`DiffusionBackend::resident`](crate::DiffusionBackend::resident).
//! The engine then stops moving the whole field across every tick: it uploads it once,
//! steps it in place ([`ResidentField::step_resident`]), lets the device apply the cells'
//! secretion and uptake ([`ResidentField::exchange`]) and read the field at the cells'
//! voxels ([`ResidentField::sample`]), and downloads it only when something on the host
//! reads it (a record, a checkpoint, a picture). What crosses per tick is then `O(cells)`,
//! not `O(voxels)`.
//!
//! The per-cell exchange is the affine map of the engine's secrete stage,
//! `ρ ← (ρ + a) / b + c`, applied for each cell of a voxel in row order, so that the
//! result is the same as the host's sequential loop. [`exchange_on_host`] is that
//! reference, and [`Detached`] wraps any host backend as a resident one (its own copy of
//! the field, the reference exchange and sample), so the engine's residency logic can be
//! tested without a device.

use crate::{ChannelParams, DiffusionBackend, Field, FieldError, Scheme, StepInputs};

/// One tick's exchanges between cells and the field, for [`ResidentField::exchange`].
///
/// Cells are grouped by the voxel holding their centre: group `g` is the cells
/// `order[start[g]..start[g + 1]]`, in row order, all in voxel `voxel[g]`. Each cell row
/// `i` has, per channel `c`, the coefficients `coef[i * channels + c] = [a, b, c]` of
/// `ρ ← (ρ + a) / b + c`; `b == 0` means the cell does not exchange that channel (it is
/// skipped, leaving `ρ` untouched bit for bit).
#[derive(Debug, Clone, Copy)]
pub struct CellExchange<'a> {
    /// Ligand channels (the width of `coef` and of the changes).
    pub channels: usize,
    /// The voxel of each group.
    pub voxel: &'a [u32],
    /// Group `g` is `order[start[g]..start[g + 1]]` (`voxel.len() + 1` entries).
    pub start: &'a [u32],
    /// Cell rows, grouped by voxel, in row order within a group.
    pub order: &'a [u32],
    /// Per cell row and channel: `[a, b, c]`.
    pub coef: &'a [[f32; 3]],
    /// Every map is a pure addition (`a = 0, b = 1`: a model's release), whose source for
    /// a scheme that lists them (ADI) is the amount `c` itself, as the host lists it;
    /// otherwise a cell's source is the change its map made.
    pub additions: bool,
}

impl CellExchange<'_> {
    /// Check the shape of the lists against each other, the field's voxel count and
    /// `changes` (one value per cell row and channel).
    pub fn check(&self, voxels: usize, changes: usize) -> Result<(), FieldError> {
        let bad = |what: String| Err(FieldError::Exchange(what));
        let groups = self.voxel.len();
        if self.start.len() != groups + 1 {
            return bad(format!("{} group starts for {groups} groups", self.start.len()));
        }
        if self.start.first().is_some_and(|&s| s != 0)
            || self.start.last().is_some_and(|&s| s as usize != self.order.len())
            || self.start.windows(2).any(|w| w[0] > w[1])
        {
            return bad("group starts must rise from 0 to the number of listed cells".into());
        }
        let rows = self.coef.len() / self.channels.max(1);
        if self.channels > 0 && self.coef.len() != rows * self.channels {
            return bad(format!(
                "{} coefficients are not a whole number of rows of {}",
                self.coef.len(),
                self.channels
            ));
        }
        if changes != self.coef.len() {
            return bad(format!("room for {changes} changes but {} coefficients", self.coef.len()));
        }
        if let Some(v) = self.voxel.iter().find(|&&v| v as usize >= voxels) {
            return bad(format!("voxel {v} is outside a grid of {voxels} voxels"));
        }
        if let Some(i) = self.order.iter().find(|&&i| i as usize >= rows) {
            return bad(format!("cell row {i} is outside the {rows} rows of coefficients"));
        }
        Ok(())
    }
}

/// The reference of [`ResidentField::exchange`] on a host field: for every group, for
/// every channel, apply each listed cell's map in order and write the cell's change
/// (`ρ after − ρ before` of its own map) to `changes[i * channels + c]`; cells not
/// listed, and skipped channels, get a change of 0.
pub fn exchange_on_host(field: &mut Field, ex: &CellExchange<'_>, changes: &mut [f32]) -> Result<(), FieldError> {
    let voxels = field.grid.voxels();
    ex.check(voxels, changes.len())?;
    if ex.channels != field.channels {
        return Err(FieldError::ChannelMismatch { field: field.channels, params: ex.channels });
    }
    changes.fill(0.0);
    let nl = ex.channels;
    for (g, &v) in ex.voxel.iter().enumerate() {
        let cells = &ex.order[ex.start[g] as usize..ex.start[g + 1] as usize];
        for c in 0..nl {
            let rho = &mut field.data[c * voxels + v as usize];
            for &i in cells {
                let k = i as usize * nl + c;
                let [a, b, add] = ex.coef[k];
                if b == 0.0 {
                    continue;
                }
                let before = *rho;
                *rho = (before + a) / b + add;
                changes[k] = *rho - before;
            }
        }
    }
    Ok(())
}

/// The reference of [`ResidentField::sample`]: every channel's value at each listed
/// voxel, cell-major (`out[i * channels + c]`).
pub fn sample_on_host(field: &Field, voxels: &[u32], out: &mut [f32]) -> Result<(), FieldError> {
    let (n, nl) = (field.grid.voxels(), field.channels);
    check_sample(n, nl, voxels, out.len())?;
    for (i, &v) in voxels.iter().enumerate() {
        for c in 0..nl {
            out[i * nl + c] = field.data[c * n + v as usize];
        }
    }
    Ok(())
}

/// Check the arguments of a sample: every voxel on the grid, `out` one value per voxel
/// listed and channel.
pub fn check_sample(grid_voxels: usize, channels: usize, voxels: &[u32], out: usize) -> Result<(), FieldError> {
    if out != voxels.len() * channels {
        return Err(FieldError::Exchange(format!(
            "room for {out} sampled values but {} cells × {channels} channels",
            voxels.len()
        )));
    }
    if let Some(v) = voxels.iter().find(|&&v| v as usize >= grid_voxels) {
        return Err(FieldError::Exchange(format!("voxel {v} is outside a grid of {grid_voxels} voxels")));
    }
    Ok(())
}

/// A field kept where the backend computes, between ticks.
///
/// Until [`ResidentField::upload`] is called the resident copy is undefined; after it,
/// the copy evolves only through the methods here, and [`ResidentField::download`]
/// returns it. The engine tracks which copy is current.
pub trait ResidentField {
    /// Make the resident copy equal to `field` (its grid and channel count fix the
    /// shape until the next upload).
    fn upload(&mut self, field: &Field) -> Result<(), FieldError>;

    /// Copy the resident field into `field` (of the uploaded shape).
    fn download(&mut self, field: &mut Field) -> Result<(), FieldError>;

    /// Advance the resident field by `dt` with no transfer of the field; `restart` asks
    /// a scheme with a damped start (ADI) for it, as [`StepInputs::restart`] does.
    fn step_resident(&mut self, params: &[ChannelParams], dt: f32, restart: bool) -> Result<(), FieldError>;

    /// Note what the host added to the field since the last step, already in the copy it
    /// uploaded: `(index into the field, amount)` in the order added, as
    /// [`StepInputs::added`]. A scheme that takes its sources separately (ADI) adds them
    /// to what the cells' exchanges gave since the last step; the others ignore them.
    fn add_sources(&mut self, added: &[(u32, f32)]) -> Result<(), FieldError> {
        let _ = added;
        Ok(())
    }

    /// Apply the cells' exchanges ([`exchange_on_host`] is the reference) and write each
    /// cell's change per channel into `changes`. A scheme that takes its sources
    /// separately (ADI) also keeps the changes as the step's sources.
    fn exchange(&mut self, ex: &CellExchange<'_>, changes: &mut [f32]) -> Result<(), FieldError>;

    /// Read every channel at each of `voxels` into `out`, cell-major
    /// ([`sample_on_host`] is the reference).
    fn sample(&mut self, voxels: &[u32], out: &mut [f32]) -> Result<(), FieldError>;
}

/// A host backend with its own copy of the field, as a device keeps one: steps, exchanges
/// and samples run on that copy with the reference arithmetic, so an engine using it
/// must give the same bits as one stepping its own field with `B`. For tests of the
/// engine's residency (which copy is current, when it syncs) on machines without a GPU.
///
/// With the ADI scheme it lists the exchanges' changes as sources (the amounts of an
/// exchange of [`CellExchange::additions`], as the host lists a model's release), in the order
/// of its groups: the cells of one voxel in row order, as the host lists them, so that
/// every voxel's sources are taken in the same order and the step gives the same bits.
#[derive(Debug)]
pub struct Detached<B> {
    backend: B,
    field: Option<Field>,
    /// Sources since the last step (ADI).
    added: Vec<(u32, f32)>,
    /// Whole fields moved in each direction so far: `(uploads, downloads)`.
    pub transfers: (usize, usize),
}

impl<B: DiffusionBackend> Detached<B> {
    /// Wrap `backend`.
    pub fn new(backend: B) -> Self {
        Self { backend, field: None, added: Vec::new(), transfers: (0, 0) }
    }

    fn field(&mut self) -> Result<&mut Field, FieldError> {
        self.field.as_mut().ok_or_else(|| FieldError::Exchange("the resident field was never uploaded".into()))
    }
}

impl<B: DiffusionBackend> DiffusionBackend for Detached<B> {
    fn name(&self) -> String {
        format!("{} (detached copy)", self.backend.name())
    }

    fn scheme(&self) -> Scheme {
        self.backend.scheme()
    }

    fn step(&mut self, field: &mut Field, params: &[ChannelParams], dt: f32) -> Result<(), FieldError> {
        self.backend.step(field, params, dt)
    }

    fn step_with(
        &mut self,
        field: &mut Field,
        params: &[ChannelParams],
        dt: f32,
        inputs: StepInputs<'_>,
    ) -> Result<(), FieldError> {
        self.backend.step_with(field, params, dt, inputs)
    }

    fn resident(&mut self) -> Option<&mut dyn ResidentField> {
        Some(self)
    }
}

impl<B: DiffusionBackend> ResidentField for Detached<B> {
    fn upload(&mut self, field: &Field) -> Result<(), FieldError> {
        self.field = Some(field.clone());
        self.transfers.0 += 1;
        Ok(())
    }

    fn download(&mut self, field: &mut Field) -> Result<(), FieldError> {
        let own = self.field()?;
        if own.grid != field.grid || own.channels != field.channels {
            return Err(FieldError::Exchange("download into a field of another shape than the uploaded one".into()));
        }
        field.data.copy_from_slice(&own.data);
        self.transfers.1 += 1;
        Ok(())
    }

    fn step_resident(&mut self, params: &[ChannelParams], dt: f32, restart: bool) -> Result<(), FieldError> {
        let mut field =
            self.field.take().ok_or_else(|| FieldError::Exchange("the resident field was never uploaded".into()))?;
        let inputs = StepInputs { added: &self.added, restart };
        let result = self.backend.step_with(&mut field, params, dt, inputs);
        self.field = Some(field);
        self.added.clear();
        result
    }

    fn add_sources(&mut self, added: &[(u32, f32)]) -> Result<(), FieldError> {
        if self.backend.scheme() == Scheme::Adi {
            self.added.extend_from_slice(added);
        }
        Ok(())
    }

    fn exchange(&mut self, ex: &CellExchange<'_>, changes: &mut [f32]) -> Result<(), FieldError> {
        let adi = self.backend.scheme() == Scheme::Adi;
        let field = self.field()?;
        let voxels = field.grid.voxels();
        exchange_on_host(field, ex, changes)?;
        if adi {
            // The host's order within each voxel: its cells in row order.
            for (g, &v) in ex.voxel.iter().enumerate() {
                for c in 0..ex.channels {
                    for &i in &ex.order[ex.start[g] as usize..ex.start[g + 1] as usize] {
                        let k = i as usize * ex.channels + c;
                        let amount = if ex.additions { ex.coef[k][2] } else { changes[k] };
                        if amount != 0.0 && ex.coef[k][1] != 0.0 {
                            self.added.push(((c * voxels + v as usize) as u32, amount));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn sample(&mut self, voxels: &[u32], out: &mut [f32]) -> Result<(), FieldError> {
        sample_on_host(self.field()?, voxels, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuDiffusion, Grid};

    fn grid() -> Grid {
        Grid { nx: 4, ny: 3, nz: 1, dx: 10.0, origin: [0.0; 3] }
    }

    #[test]
    fn exchange_applies_each_cells_map_in_row_order_and_reports_its_own_change() {
        let mut f = Field::zeros(grid(), 2);
        f.data[5] = 1.0;
        f.data[12 + 5] = 2.0;
        // Rows 0 and 2 in voxel 5, row 1 in voxel 0; row 2 skips channel 1.
        let coef =
            [[1.0, 2.0, 0.5], [0.0, 1.0, 3.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [2.0, 4.0, 0.0], [9.0, 0.0, 9.0]];
        let ex = CellExchange {
            channels: 2,
            voxel: &[0, 5],
            start: &[0, 1, 3],
            order: &[1, 0, 2],
            coef: &coef,
            additions: false,
        };
        let mut changes = [f32::NAN; 6];
        exchange_on_host(&mut f, &ex, &mut changes).unwrap();
        // Voxel 5, channel 0: row 0 then row 2.
        let after0 = (1.0f32 + 1.0) / 2.0 + 0.5;
        let after2 = (after0 + 2.0) / 4.0;
        assert_eq!(f.data[5], after2);
        assert_eq!([changes[0], changes[4]], [after0 - 1.0, after2 - after0]);
        // Voxel 5, channel 1: row 0 adds 3, row 2 is skipped (b = 0): change 0, value kept.
        assert_eq!(f.data[12 + 5], 5.0);
        assert_eq!([changes[1], changes[5]], [3.0, 0.0]);
        // Voxel 0: row 1.
        assert_eq!([f.data[0], f.data[12]], [0.0, 1.0]);
        assert_eq!([changes[2], changes[3]], [0.0, 1.0]);
    }

    #[test]
    fn malformed_exchanges_and_samples_are_refused_by_name() {
        let mut f = Field::zeros(grid(), 1);
        let coef = [[0.0, 1.0, 1.0]];
        let mut ch = [0.0];
        let bad = [
            CellExchange { channels: 1, voxel: &[12], start: &[0, 1], order: &[0], coef: &coef, additions: false },
            CellExchange { channels: 1, voxel: &[0], start: &[0, 2], order: &[0], coef: &coef, additions: false },
            CellExchange { channels: 1, voxel: &[0], start: &[0, 1], order: &[1], coef: &coef, additions: false },
            CellExchange { channels: 1, voxel: &[0], start: &[0], order: &[0], coef: &coef, additions: false },
        ];
        for ex in bad {
            let e = exchange_on_host(&mut f, &ex, &mut ch).unwrap_err();
            assert!(matches!(e, FieldError::Exchange(_)), "{e}");
        }
        assert!(f.data.iter().all(|&v| v == 0.0), "a refused exchange changed the field");
        let mut out = [0.0; 2];
        assert!(sample_on_host(&f, &[0, 12], &mut out).is_err());
        assert!(sample_on_host(&f, &[0], &mut out).is_err());
    }

    #[test]
    fn a_detached_backend_steps_its_own_copy_exactly_as_the_host_would() {
        let params = [ChannelParams::new(100.0, 0.1)];
        let mut host = Field::zeros(grid(), 1);
        host.data[6] = 10.0;
        let mut d = Detached::new(CpuDiffusion::with_scheme(Scheme::Implicit));
        let r = d.resident().unwrap();
        r.upload(&host).unwrap();
        r.step_resident(&params, 0.5, false).unwrap();
        let mut back = Field::zeros(grid(), 1);
        r.download(&mut back).unwrap();
        CpuDiffusion::with_scheme(Scheme::Implicit).step(&mut host, &params, 0.5).unwrap();
        assert_eq!(back.data, host.data);
        let mut s = [0.0];
        d.resident().unwrap().sample(&[6], &mut s).unwrap();
        assert_eq!(s[0], host.data[6]);
        assert_eq!(d.transfers, (1, 1));
    }
}
