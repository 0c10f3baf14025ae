//! Keeping the ligand field on the diffusion backend's device between ticks.
//!
//! When the backend offers a resident copy ([`explant_field::ResidentField`], the GPU
//! with any scheme) and the run asks for it
//! ([`Simulation::keep_field_on_device`](crate::Simulation::keep_field_on_device)), the
//! field stops crossing to the device and back every tick:
//!
//! - **secrete** builds each cell's exchange coefficients on the host (`O(cells)`), and
//!   the device applies them voxel by voxel in row order and returns each cell's change,
//!   from which the exchange ledger is summed in the host's order;
//! - **diffuse** steps the resident field in place;
//! - **sense** has the device read every ligand at the cells' voxels (`O(cells)` back);
//!   the host gates them by receptor as before;
//! - **respond** releases a model's secretion on the device (pure additions);
//! - **mechanics** reads, for each migrating cell, the voxels its gradient differences
//!   (six per cell) and forms the gradient on the host exactly as the host field would;
//! - **fate** reads every ligand at each cell's voxel for the necrosis thresholds.
//!
//! - a ligand **bolus or steady source** is listed on the host, voxel by voxel, and
//!   added on the device (pure additions, in the host's order).
//!
//! Everything else that reads or writes [`Ligands::field`] on the host first brings it
//! back ([`to_host`]): the record stage at recording ticks, checkpoints and the
//! simulation's own readers. No stage changes the host copy while the device holds the
//! field: the first device operation uploads it (with what the host added since the last
//! step, for the ADI scheme's sources), and it stays there. Runs that split ligands by
//! source type keep the whole field on the host.
//!
//! The device applies the same float32 operations as the host, so a resident run differs
//! from a host one only by the device's own rounding (none at all with
//! [`explant_field::Detached`], which is how the core tests this logic without a GPU).

use bevy_ecs::prelude::*;

use crate::CoreError;
use crate::components::{Batch, Diffuser, Ligands};
use explant_field::CellExchange;

/// Where the current ligand field is, and the buffers of the device's exchanges.
#[derive(Resource, Debug)]
pub struct FieldHome {
    /// The run keeps the field on the backend's device between ticks.
    pub(crate) on_device: bool,
    /// [`Ligands::field`] on the host is current.
    pub(crate) host_current: bool,
    /// The device's copy is current.
    pub(crate) device_current: bool,
    /// Whole fields moved so far: `(uploads, downloads)`.
    pub(crate) transfers: (u64, u64),
    groups: Groups,
    coef: Vec<[f32; 3]>,
    changes: Vec<f32>,
    /// Every ligand at each cell's voxel, cell-major, from the last device sample.
    pub(crate) sampled: Vec<f32>,
}

impl Default for FieldHome {
    fn default() -> Self {
        Self {
            on_device: false,
            host_current: true,
            device_current: false,
            transfers: (0, 0),
            groups: Groups::default(),
            coef: Vec::new(),
            changes: Vec::new(),
            sampled: Vec::new(),
        }
    }
}

/// Cells grouped by voxel (a counting sort of the batch's voxels), rebuilt when they
/// move.
#[derive(Debug, Default)]
struct Groups {
    /// [`Batch::voxels_generation`] these were built from.
    generation: Option<u64>,
    voxel: Vec<u32>,
    start: Vec<u32>,
    order: Vec<u32>,
    /// Scratch: cells per voxel, then each voxel's next slot.
    count: Vec<u32>,
}

impl Groups {
    /// Group `voxels` (one per cell row, all below `grid_voxels`), rows in order within a
    /// group, groups in voxel order.
    fn build(&mut self, voxels: &[u32], grid_voxels: usize, generation: u64) {
        if self.generation == Some(generation) && self.order.len() == voxels.len() {
            return;
        }
        self.count.clear();
        self.count.resize(grid_voxels, 0);
        for &v in voxels {
            self.count[v as usize] += 1;
        }
        self.voxel.clear();
        self.start.clear();
        let mut next = 0u32;
        for (v, slot) in self.count.iter_mut().enumerate() {
            let n = *slot;
            if n > 0 {
                self.voxel.push(v as u32);
                self.start.push(next);
            }
            *slot = next;
            next += n;
        }
        self.start.push(next);
        self.order.clear();
        self.order.resize(voxels.len(), 0);
        for (i, &v) in voxels.iter().enumerate() {
            let slot = &mut self.count[v as usize];
            self.order[*slot as usize] = i as u32;
            *slot += 1;
        }
        self.generation = Some(generation);
    }
}

impl FieldHome {
    /// Whether the run keeps the field on the backend's device between ticks (and so
    /// does its field work there).
    pub fn on_device(&self) -> bool {
        self.on_device
    }

    /// Whether [`Ligands::field`] on the host is the current field.
    pub fn host_current(&self) -> bool {
        self.host_current
    }

    /// Whole fields moved between host and device so far: `(uploads, downloads)`.
    pub fn transfers(&self) -> (u64, u64) {
        self.transfers
    }
}

/// Bring the field back to the host if the device holds the current copy.
pub(crate) fn to_host(ligands: &mut Ligands, diffuser: &mut Diffuser, home: &mut FieldHome) -> Result<(), CoreError> {
    if home.host_current {
        return Ok(());
    }
    let name = diffuser.0.name();
    let resident = diffuser.0.resident().ok_or_else(|| lost(&name))?;
    resident.download(&mut ligands.field)?;
    home.transfers.1 += 1;
    home.host_current = true;
    Ok(())
}

/// Make sure the device holds the current field (uploading the host's if not, with
/// what the host added to it since the last step, for the ADI scheme's sources).
fn to_device(ligands: &mut Ligands, diffuser: &mut Diffuser, home: &mut FieldHome) -> Result<(), CoreError> {
    if home.device_current {
        return Ok(());
    }
    let name = diffuser.0.name();
    let resident = diffuser.0.resident().ok_or_else(|| lost(&name))?;
    resident.upload(&ligands.field)?;
    if !ligands.added.is_empty() {
        resident.add_sources(&ligands.added)?;
        ligands.added.clear();
    }
    home.transfers.0 += 1;
    home.device_current = true;
    Ok(())
}

/// A backend that offered a resident field once and no longer does (a bug, not input).
fn lost(name: &str) -> CoreError {
    CoreError::Field(explant_field::FieldError::Backend {
        backend: name.to_owned(),
        message: "the backend no longer keeps the field on its device".into(),
    })
}

impl FieldHome {
    /// Fill the exchange coefficients of `cells` rows × `channels`: `coef(i, c)` gives
    /// row `i`'s map for channel `c` (`[a, b, c]` of `ρ ← (ρ + a) / b + c`), `None` to
    /// skip it. Then call [`exchange_on_device`].
    pub(crate) fn set_exchange(
        &mut self,
        cells: usize,
        channels: usize,
        coef: impl Fn(usize, usize) -> Option<[f32; 3]> + Sync,
    ) {
        use rayon::prelude::*;
        self.coef.clear();
        self.coef.resize(cells * channels, [0.0; 3]);
        self.coef.par_chunks_mut(channels.max(1)).enumerate().for_each(|(i, row)| {
            for (c, out) in row.iter_mut().enumerate() {
                *out = coef(i, c).unwrap_or([0.0; 3]);
            }
        });
    }
}

/// What an exchange on the device is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Exchange {
    /// The secrete stage's maps: each cell's change, times `ledger_scale` (the voxel
    /// volume), goes to the exchange ledger in row order, as the host loop adds it.
    Secretion { ledger_scale: f64 },
    /// A model's release, pure additions: the caller keeps the ledger.
    Release,
}

/// Apply the coefficients of [`FieldHome::set_exchange`] on the device, and keep the
/// ledger as `kind` says.
pub(crate) fn exchange_on_device(
    ligands: &mut Ligands,
    diffuser: &mut Diffuser,
    home: &mut FieldHome,
    batch: &mut Batch,
    kind: Exchange,
) -> Result<(), CoreError> {
    to_device(ligands, diffuser, home)?;
    let grid = ligands.field.grid;
    let nl = ligands.field.channels;
    let n = batch.cells;
    if home.coef.len() != n * nl {
        return Err(CoreError::Field(explant_field::FieldError::Exchange(format!(
            "{} exchange coefficients for {n} cells × {nl} ligands",
            home.coef.len()
        ))));
    }
    let generation = batch.voxels_generation;
    let voxels = batch.cell_voxels(&grid);
    home.groups.build(voxels, grid.voxels(), generation);
    home.changes.clear();
    home.changes.resize(n * nl, 0.0);
    let g = &home.groups;
    let ex = CellExchange {
        channels: nl,
        voxel: &g.voxel,
        start: &g.start,
        order: &g.order,
        coef: &home.coef,
        additions: matches!(kind, Exchange::Release),
    };
    let name = diffuser.0.name();
    let resident = diffuser.0.resident().ok_or_else(|| lost(&name))?;
    resident.exchange(&ex, &mut home.changes)?;
    home.host_current = false;
    let Exchange::Secretion { ledger_scale: scale } = kind else { return Ok(()) };
    for i in 0..n {
        for c in 0..nl {
            if home.coef[i * nl + c][1] != 0.0 {
                ligands.exchanged[c] += f64::from(home.changes[i * nl + c]) * scale;
            }
        }
    }
    Ok(())
}

/// Add `additions` (`(index into the field, amount)`, in order) to the field on the
/// device: each is a pure addition `ρ + amount`, applied voxel by voxel in the listed
/// order (the host's `ρ += amount`, bit for bit), and a source of the ADI scheme's step.
pub(crate) fn add_on_device(
    ligands: &mut Ligands,
    diffuser: &mut Diffuser,
    home: &mut FieldHome,
    additions: &[(u32, f32)],
) -> Result<(), CoreError> {
    to_device(ligands, diffuser, home)?;
    let voxels = ligands.field.grid.voxels().max(1);
    let nl = ligands.field.channels;
    // One row per addition, with its map in its own channel only.
    let mut coef = vec![[0.0f32; 3]; additions.len() * nl];
    for (row, &(index, amount)) in additions.iter().enumerate() {
        coef[row * nl + index as usize / voxels] = [0.0, 1.0, amount];
    }
    // Grouped by voxel, rows in order within a voxel.
    let mut order: Vec<u32> = (0..additions.len() as u32).collect();
    order.sort_by_key(|&row| (additions[row as usize].0 as usize % voxels, row));
    let (mut voxel, mut start) = (Vec::new(), Vec::new());
    for (k, &row) in order.iter().enumerate() {
        let v = (additions[row as usize].0 as usize % voxels) as u32;
        if voxel.last() != Some(&v) {
            voxel.push(v);
            start.push(k as u32);
        }
    }
    start.push(order.len() as u32);
    let ex = CellExchange { channels: nl, voxel: &voxel, start: &start, order: &order, coef: &coef, additions: true };
    let mut changes = vec![0.0; coef.len()];
    let name = diffuser.0.name();
    let resident = diffuser.0.resident().ok_or_else(|| lost(&name))?;
    resident.exchange(&ex, &mut changes)?;
    home.host_current = false;
    Ok(())
}

/// Step the resident field by `dt` (damped when `restart`, for the ADI scheme).
pub(crate) fn step_on_device(
    ligands: &mut Ligands,
    diffuser: &mut Diffuser,
    home: &mut FieldHome,
    dt: f32,
    restart: bool,
) -> Result<(), CoreError> {
    to_device(ligands, diffuser, home)?;
    let name = diffuser.0.name();
    let resident = diffuser.0.resident().ok_or_else(|| lost(&name))?;
    resident.step_resident(&ligands.params, dt, restart)?;
    home.host_current = false;
    Ok(())
}

/// Every ligand at each cell's voxel, read on the device into [`FieldHome::sampled`]
/// (cell-major).
pub(crate) fn sample_on_device(
    ligands: &mut Ligands,
    diffuser: &mut Diffuser,
    home: &mut FieldHome,
    voxels: &[u32],
) -> Result<(), CoreError> {
    to_device(ligands, diffuser, home)?;
    home.sampled.clear();
    home.sampled.resize(voxels.len() * ligands.field.channels, 0.0);
    let name = diffuser.0.name();
    let resident = diffuser.0.resident().ok_or_else(|| lost(&name))?;
    resident.sample(voxels, &mut home.sampled)?;
    Ok(())
}

/// A system run before a stage that reads the host field: bring it back if needed.
pub(crate) fn sync_host(
    mut ligands: ResMut<Ligands>,
    mut diffuser: ResMut<Diffuser>,
    mut home: ResMut<FieldHome>,
    mut failure: ResMut<crate::components::Failure>,
) {
    if let Err(e) = to_host(&mut ligands, &mut diffuser, &mut home) {
        failure.0 = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_list_every_cell_once_in_row_order_by_voxel() {
        let voxels = [3, 0, 3, 7, 0, 3];
        let mut g = Groups::default();
        g.build(&voxels, 8, 1);
        assert_eq!(g.voxel, [0, 3, 7]);
        assert_eq!(g.start, [0, 2, 5, 6]);
        assert_eq!(g.order, [1, 4, 0, 2, 5, 3]);
        // Cached by generation; a new generation rebuilds.
        g.build(&[1, 1, 1, 1, 1, 1], 8, 1);
        assert_eq!(g.voxel, [0, 3, 7]);
        g.build(&[1, 1, 1, 1, 1, 1], 8, 2);
        assert_eq!((g.voxel.as_slice(), g.start.as_slice()), ([1].as_slice(), [0, 6].as_slice()));
        g.build(&[], 8, 3);
        assert_eq!((g.voxel.len(), g.start.as_slice(), g.order.len()), (0, [0].as_slice(), 0));
    }
}
