//! The time series of a run: pseudobulk expression by cell type (overall and in the
//! scene's named regions) and ligand totals, captured at tick 0 and every recording
//! interval by the `record` stage. Capturing is also the run's periodic sanity check (as
//! lumol's simulations do): a NaN, infinite or runaway value ([`RUNAWAY`]) stops the run
//! with [`CoreError::Unstable`] naming the tick, rather than letting it fill the outputs.

use bevy_ecs::prelude::*;
use glam::Vec3;

use crate::CoreError;
use crate::components::{CellType, Clock, Failure, Ligands, Position, Row, Settings, States};
use crate::schedule::TickContext;

/// Record: at each recording interval (a run condition, checked after the clock has
/// advanced), append pseudobulk expression by cell type and ligand totals to the
/// [`Recording`]; the capture stops the run on NaN or runaway values.
pub(crate) fn record(
    ctx: TickContext,
    cells: Query<(&CellType, &Row, &Position)>,
    states: Res<States>,
    ligands: Res<Ligands>,
    mut recording: ResMut<Recording>,
    mut failure: ResMut<Failure>,
) {
    let rows = in_row_order(cells.iter());
    let it = rows.iter().map(|&(r, t, p)| (t, p, states.row(r as usize)));
    if let Err(e) = recording.capture(&ctx.clock, &ctx.settings, it, &ligands) {
        failure.0 = Some(e);
    }
}

/// Run condition of [`record`]: the tick just completed is a recording time.
pub(crate) fn record_due(ctx: TickContext) -> bool {
    ctx.clock.tick.is_multiple_of(ctx.settings.record_interval)
}

/// `(row, cell type, position)` of each cell, in row order (the order captures sum in).
pub(crate) fn in_row_order<'a>(
    cells: impl Iterator<Item = (&'a CellType, &'a Row, &'a Position)>,
) -> Vec<(u32, u32, Vec3)> {
    let mut rows: Vec<(u32, u32, Vec3)> = cells.map(|(t, r, p)| (r.0, t.0, p.0)).collect();
    rows.sort_unstable_by_key(|r| r.0);
    rows
}

/// Time series recorded during a run.
#[derive(Resource, Debug, Clone, Default)]
pub struct Recording {
    /// One row per (time point, cell type).
    pub pseudobulk: Vec<PseudobulkRow>,
    /// One row per time point: total amount of each ligand on the grid.
    pub ligand_totals: Vec<(u64, f64, Vec<f64>)>,
    /// Number of cell types.
    pub cell_types: usize,
    /// One row per (time point, named region of `output.regions`, cell type).
    pub regional: Vec<RegionRow>,
    /// The named regions.
    pub regions: Vec<explant_scene::NamedRegion>,
}

/// Mean expression of one cell type in one named region at one time point.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionRow {
    /// Index into [`Recording::regions`].
    pub region: usize,
    /// The pseudobulk of the cells of that type inside the region.
    pub row: PseudobulkRow,
}

/// Mean expression of one cell type at one time point.
#[derive(Debug, Clone, PartialEq)]
pub struct PseudobulkRow {
    /// Tick.
    pub tick: u64,
    /// Minutes.
    pub time: f64,
    /// Cell type index.
    pub cell_type: u32,
    /// Cells of that type.
    pub cells: usize,
    /// Mean expression per gene.
    pub mean: Vec<f64>,
}

/// Largest expression value accepted before the run is stopped as unstable.
pub const RUNAWAY: f32 = 1.0e6;

impl Recording {
    /// Append one time point; fails on NaN, infinite or runaway values.
    pub fn capture<'a>(
        &mut self,
        clock: &Clock,
        settings: &Settings,
        cells: impl Iterator<Item = (u32, Vec3, &'a [f32])>,
        ligands: &Ligands,
    ) -> Result<(), CoreError> {
        let g = settings.genes;
        let nr = self.regions.len();
        let mut sums = vec![vec![0.0f64; g]; self.cell_types];
        let mut counts = vec![0usize; self.cell_types];
        let mut rsums = vec![vec![0.0f64; g]; self.cell_types * nr];
        let mut rcounts = vec![0usize; self.cell_types * nr];
        for (t, p, x) in cells {
            for (k, region) in self.regions.iter().enumerate() {
                if region.shape.contains(p.to_array()) {
                    let slot = k * self.cell_types + t as usize;
                    rcounts[slot] += 1;
                    for (s, v) in rsums[slot].iter_mut().zip(x) {
                        *s += f64::from(*v);
                    }
                }
            }
            if let Some(bad) = x.iter().position(|v| !v.is_finite() || v.abs() > RUNAWAY) {
                return Err(CoreError::Unstable {
                    tick: clock.tick,
                    time: clock.time(),
                    what: format!(
                        "expression of gene `{}` is `{}`: lower `time.dt` or check the model",
                        settings.gene_names.get(bad).map_or("?", String::as_str),
                        x[bad]
                    ),
                });
            }
            counts[t as usize] += 1;
            for (s, v) in sums[t as usize].iter_mut().zip(x) {
                *s += f64::from(*v);
            }
        }
        for (t, (s, &n)) in sums.into_iter().zip(&counts).enumerate() {
            let mean = s.into_iter().map(|v| if n > 0 { v / n as f64 } else { 0.0 }).collect();
            self.pseudobulk.push(PseudobulkRow {
                tick: clock.tick,
                time: clock.time(),
                cell_type: t as u32,
                cells: n,
                mean,
            });
        }
        for (slot, (s, &n)) in rsums.into_iter().zip(&rcounts).enumerate() {
            let mean = s.into_iter().map(|v| if n > 0 { v / n as f64 } else { 0.0 }).collect();
            self.regional.push(RegionRow {
                region: slot / self.cell_types,
                row: PseudobulkRow {
                    tick: clock.tick,
                    time: clock.time(),
                    cell_type: (slot % self.cell_types) as u32,
                    cells: n,
                    mean,
                },
            });
        }
        let totals: Vec<f64> = (0..ligands.field.channels).map(|c| ligands.field.total(c)).collect();
        if let Some(c) = totals.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::Unstable {
                tick: clock.tick,
                time: clock.time(),
                what: format!(
                    "the total of ligand `{}` is not finite",
                    settings.ligand_names.get(c).map_or("?", String::as_str)
                ),
            });
        }
        self.ligand_totals.push((clock.tick, clock.time(), totals));
        Ok(())
    }
}
