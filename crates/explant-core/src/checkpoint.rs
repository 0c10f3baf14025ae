//! The whole state of a simulation as plain data ([`SimState`]), and its exact binary
//! form, so a run can be checkpointed and resumed bit for bit.
//!
//! What a tick reads that is not rebuilt from the scene: the clock, every component of
//! every cell (in row order, so the expression matrix keeps its layout), the
//! ligand field with its exchange ledger, the once-only perturbations that have fired, and
//! the time series recorded so far. The per-tick batch and the neighbour lists are
//! rebuilt by the first tick after a restore (`Batch::fresh` is false), the set of living
//! ids ([`LiveIds`](crate::LiveIds)) is rebuilt as the cells are spawned, a newborn's id
//! is a function of its mother's id and generation ([`crate::lineage`]), and the random
//! streams are counters of (seed, cell id, tick), so nothing else is needed: a restored
//! world steps to the same bits as the one that was saved.
//!
//! The byte form is little-endian, with lengths before every sequence; floats are stored
//! as their bits, so infinities (a type that never divides has an infinite cycle length)
//! and every value round-trip exactly. It carries no header: the caller (explant-run)
//! wraps it with the version, the scene and a checksum.

use bevy_ecs::prelude::*;
use glam::Vec3;

use crate::components::{
    CellBundle, CellId, CellType, Clock, Cycle, Ligands, Lineage, ModelFate, Motility, PerturbationLog, Perturbed,
    Phase, Position, Radius, Row, States,
};
use crate::recording::{PseudobulkRow, Recording, RegionRow};

/// Everything of a simulation's state that a tick reads and the scene does not give.
#[derive(Debug, Clone, PartialEq)]
pub struct SimState {
    /// Ticks completed.
    pub tick: u64,
    /// Every cell's components, in row order.
    pub cells: Vec<CellBundle>,
    /// The expression matrix, `N × G`, in row order.
    pub expression: Vec<f32>,
    /// Genes per row.
    pub genes: usize,
    /// The ligand field's values (channel-major).
    pub field: Vec<f32>,
    /// Per ligand: net amount cells have exchanged with the grid.
    pub exchanged: Vec<f64>,
    /// Per planned perturbation: whether it has fired.
    pub fired: Vec<bool>,
    /// Where cells were ablated.
    pub ablated: Vec<Vec3>,
    /// Per ligand: amount injected by boluses and sources.
    pub injected: Vec<f64>,
    /// Pseudobulk rows recorded so far.
    pub pseudobulk: Vec<PseudobulkRow>,
    /// Ligand totals recorded so far.
    pub ligand_totals: Vec<(u64, f64, Vec<f64>)>,
    /// Regional pseudobulk rows recorded so far.
    pub regional: Vec<RegionRow>,
    /// What was added to the field since the last diffusion step (the ADI scheme's
    /// source list, [`Ligands::added`]; empty for the other schemes).
    pub added: Vec<(u32, f32)>,
    /// The tick of the last sharp change of the field ([`Ligands::restart_tick`]).
    pub restart_tick: u64,
}

impl SimState {
    /// Copy the state out of a world.
    pub(crate) fn of_world(world: &mut World) -> Self {
        let mut q = world.query::<(
            &Row,
            &CellId,
            &Position,
            &Radius,
            &CellType,
            &Lineage,
            &Perturbed,
            &Cycle,
            &Motility,
            &ModelFate,
        )>();
        let mut rows: Vec<(u32, CellBundle)> = q
            .iter(world)
            .map(|(row, id, position, radius, cell_type, lineage, perturbed, cycle, motility, model_fate)| {
                (
                    row.0,
                    CellBundle {
                        id: *id,
                        position: *position,
                        radius: *radius,
                        cell_type: *cell_type,
                        lineage: *lineage,
                        perturbed: *perturbed,
                        cycle: *cycle,
                        motility: *motility,
                        model_fate: *model_fate,
                    },
                )
            })
            .collect();
        rows.sort_unstable_by_key(|r| r.0);
        let states = world.resource::<States>();
        let ligands = world.resource::<Ligands>();
        let log = world.resource::<PerturbationLog>();
        let rec = world.resource::<Recording>();
        Self {
            tick: world.resource::<Clock>().tick,
            cells: rows.into_iter().map(|r| r.1).collect(),
            expression: states.data.clone(),
            genes: states.genes,
            field: ligands.field.data.clone(),
            exchanged: ligands.exchanged.clone(),
            fired: log.fired.clone(),
            ablated: log.ablated.clone(),
            injected: log.injected.clone(),
            pseudobulk: rec.pseudobulk.clone(),
            ligand_totals: rec.ligand_totals.clone(),
            regional: rec.regional.clone(),
            added: ligands.added.clone(),
            restart_tick: ligands.restart_tick,
        }
    }

    /// Put the state into a world built for the same scene (its resources present, no
    /// cells yet); fails, naming what differs, when the state does not fit it.
    pub(crate) fn into_world(self, world: &mut World) -> Result<(), String> {
        let cell_types = world.resource::<crate::Settings>().cell_types;
        let genes = world.resource::<crate::Settings>().genes;
        let expect = |what: &str, got: usize, want: usize| {
            if got == want { Ok(()) } else { Err(format!("{what}: the checkpoint has {got}, the scene {want}")) }
        };
        expect("genes", self.genes, genes)?;
        expect("expression values", self.expression.len(), self.cells.len() * genes)?;
        {
            let ligands = world.resource::<Ligands>();
            expect("ligand field values", self.field.len(), ligands.field.data.len())?;
            expect("ligands", self.exchanged.len(), ligands.exchanged.len())?;
            expect("ligands (injected)", self.injected.len(), ligands.exchanged.len())?;
        }
        expect("perturbations", self.fired.len(), world.resource::<PerturbationLog>().fired.len())?;
        if let Some(c) = self.cells.iter().find(|c| c.cell_type.0 as usize >= cell_types) {
            return Err(format!("cell {} has cell type #{}, the scene has {cell_types}", c.id.0, c.cell_type.0));
        }
        let mut ids = std::collections::HashSet::with_capacity(self.cells.len());
        if let Some(c) = self.cells.iter().find(|c| !ids.insert(c.id.0)) {
            return Err(format!("cell id {} is held by two cells", c.id.0));
        }
        world.insert_resource(States { genes, ..Default::default() });
        world.insert_resource(crate::LiveIds::default());
        for (i, cell) in self.cells.into_iter().enumerate() {
            crate::components::spawn_cell(world, cell, &self.expression[i * genes..(i + 1) * genes]);
        }
        world.resource_mut::<Clock>().tick = self.tick;
        {
            let mut ligands = world.resource_mut::<Ligands>();
            ligands.field.data = self.field;
            ligands.exchanged = self.exchanged;
            ligands.added = self.added;
            ligands.restart_tick = self.restart_tick;
        }
        {
            let mut log = world.resource_mut::<PerturbationLog>();
            log.fired = self.fired;
            log.ablated = self.ablated;
            log.injected = self.injected;
        }
        let mut rec = world.resource_mut::<Recording>();
        rec.pseudobulk = self.pseudobulk;
        rec.ligand_totals = self.ligand_totals;
        rec.regional = self.regional;
        Ok(())
    }

    /// The exact byte form (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.u64(self.tick);
        e.size(self.genes);
        e.size(self.cells.len());
        for c in &self.cells {
            e.u64(c.id.0);
            e.vec3(c.position.0);
            e.f32(c.radius.0);
            e.u32(c.cell_type.0);
            e.u64(c.lineage.parent.map_or(u64::MAX, |p| p));
            e.u32(c.lineage.generation);
            e.bool(c.lineage.grafted);
            e.bool(c.perturbed.0);
            let cy = &c.cycle;
            e.u8(match cy.phase {
                Phase::Cycling => 0,
                Phase::Apoptotic => 1,
                Phase::Necrotic => 2,
            });
            for v in [cy.age, cy.progress, cy.length, cy.dying, cy.volume_at_death] {
                e.f32(v);
            }
            e.vec3(c.motility.0);
            e.f32(c.model_fate.hazard);
            e.f32(c.model_fate.progression);
        }
        e.f32s(&self.expression);
        e.f32s(&self.field);
        e.f64s(&self.exchanged);
        e.size(self.fired.len());
        for &f in &self.fired {
            e.bool(f);
        }
        e.size(self.ablated.len());
        for &p in &self.ablated {
            e.vec3(p);
        }
        e.f64s(&self.injected);
        e.size(self.pseudobulk.len());
        for r in &self.pseudobulk {
            e.pseudobulk(r);
        }
        e.size(self.ligand_totals.len());
        for (tick, time, totals) in &self.ligand_totals {
            e.u64(*tick);
            e.f64(*time);
            e.f64s(totals);
        }
        e.size(self.regional.len());
        for r in &self.regional {
            e.size(r.region);
            e.pseudobulk(&r.row);
        }
        e.u64(self.restart_tick);
        e.size(self.added.len());
        for &(i, v) in &self.added {
            e.u32(i);
            e.f32(v);
        }
        e.0
    }

    /// Read the byte form back; fails on truncated or malformed bytes, naming the byte.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut d = Decoder { bytes, at: 0 };
        let tick = d.u64()?;
        let genes = d.size()?;
        let n = d.size()?;
        let mut cells = Vec::with_capacity(n.min(bytes.len() / 64));
        for _ in 0..n {
            let id = CellId(d.u64()?);
            let position = Position(d.vec3()?);
            let radius = Radius(d.f32()?);
            let cell_type = CellType(d.u32()?);
            let parent = d.u64()?;
            let lineage =
                Lineage { parent: (parent != u64::MAX).then_some(parent), generation: d.u32()?, grafted: d.bool()? };
            let perturbed = Perturbed(d.bool()?);
            let phase = match d.u8()? {
                0 => Phase::Cycling,
                1 => Phase::Apoptotic,
                2 => Phase::Necrotic,
                other => return Err(format!("unknown life phase {other} at byte {}", d.at - 1)),
            };
            let cycle = Cycle {
                phase,
                age: d.f32()?,
                progress: d.f32()?,
                length: d.f32()?,
                dying: d.f32()?,
                volume_at_death: d.f32()?,
            };
            let motility = Motility(d.vec3()?);
            let model_fate = ModelFate { hazard: d.f32()?, progression: d.f32()? };
            cells.push(CellBundle { id, position, radius, cell_type, lineage, perturbed, cycle, motility, model_fate });
        }
        let expression = d.f32s()?;
        let field = d.f32s()?;
        let exchanged = d.f64s()?;
        let fired = (0..d.size()?).map(|_| d.bool()).collect::<Result<_, _>>()?;
        let ablated = (0..d.size()?).map(|_| d.vec3()).collect::<Result<_, _>>()?;
        let injected = d.f64s()?;
        let pseudobulk = (0..d.size()?).map(|_| d.pseudobulk()).collect::<Result<_, _>>()?;
        let ligand_totals =
            (0..d.size()?).map(|_| Ok((d.u64()?, d.f64()?, d.f64s()?))).collect::<Result<_, String>>()?;
        let regional = (0..d.size()?)
            .map(|_| Ok(RegionRow { region: d.size()?, row: d.pseudobulk()? }))
            .collect::<Result<_, String>>()?;
        // The ADI section; absent from checkpoints written before the scheme existed.
        let (restart_tick, added) = if d.at == bytes.len() {
            (0, Vec::new())
        } else {
            let tick = d.u64()?;
            let added = (0..d.size()?).map(|_| Ok((d.u32()?, d.f32()?))).collect::<Result<_, String>>()?;
            (tick, added)
        };
        if d.at != bytes.len() {
            return Err(format!("{} bytes left over after the state", bytes.len() - d.at));
        }
        Ok(Self {
            tick,
            cells,
            expression,
            genes,
            field,
            exchanged,
            fired,
            ablated,
            injected,
            pseudobulk,
            ligand_totals,
            regional,
            added,
            restart_tick,
        })
    }
}

/// Appends values in little-endian byte form.
#[derive(Debug, Default)]
pub struct Encoder(pub Vec<u8>);

impl Encoder {
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    /// A flag, as one byte.
    pub fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    /// Four bytes.
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Eight bytes.
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A length or index, as eight bytes.
    pub fn size(&mut self, v: usize) {
        self.u64(v as u64);
    }
    /// The bits of an `f32`.
    pub fn f32(&mut self, v: f32) {
        self.u32(v.to_bits());
    }
    /// The bits of an `f64`.
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    /// Three `f32`.
    pub fn vec3(&mut self, v: Vec3) {
        for x in v.to_array() {
            self.f32(x);
        }
    }
    /// A length, then the values.
    pub fn f32s(&mut self, v: &[f32]) {
        self.size(v.len());
        self.0.reserve(4 * v.len());
        for &x in v {
            self.f32(x);
        }
    }
    /// A length, then the values.
    pub fn f64s(&mut self, v: &[f64]) {
        self.size(v.len());
        for &x in v {
            self.f64(x);
        }
    }
    /// A length, then UTF-8 bytes.
    pub fn str(&mut self, s: &str) {
        self.size(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn pseudobulk(&mut self, r: &PseudobulkRow) {
        self.u64(r.tick);
        self.f64(r.time);
        self.u32(r.cell_type);
        self.size(r.cells);
        self.f64s(&r.mean);
    }
}

/// Reads what an [`Encoder`] wrote; every read fails, naming the byte, past the end.
#[derive(Debug)]
pub struct Decoder<'a> {
    /// The bytes.
    pub bytes: &'a [u8],
    /// The next byte to read.
    pub at: usize,
}

impl<'a> Decoder<'a> {
    /// Read from the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self
            .at
            .checked_add(N)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated: {N} bytes wanted at byte {} of {}", self.at, self.bytes.len()))?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        Ok(out)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    /// A flag.
    pub fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("byte {} should be 0 or 1, not {v}", self.at - 1)),
        }
    }
    /// Four bytes.
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    /// Eight bytes.
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    /// A length: no more than the bytes left could hold (so a damaged length cannot ask
    /// for more memory than the file's size).
    pub fn size(&mut self) -> Result<usize, String> {
        let v = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if v > left.saturating_mul(8).max(1 << 20) {
            return Err(format!("length {v} at byte {} is larger than the file", self.at - 8));
        }
        Ok(v as usize)
    }
    /// An `f32`.
    pub fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_bits(self.u32()?))
    }
    /// An `f64`.
    pub fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// Three `f32`.
    pub fn vec3(&mut self) -> Result<Vec3, String> {
        Ok(Vec3::new(self.f32()?, self.f32()?, self.f32()?))
    }
    /// A length, then the values.
    pub fn f32s(&mut self) -> Result<Vec<f32>, String> {
        let n = self.size()?;
        (0..n).map(|_| self.f32()).collect()
    }
    /// A length, then the values.
    pub fn f64s(&mut self) -> Result<Vec<f64>, String> {
        let n = self.size()?;
        (0..n).map(|_| self.f64()).collect()
    }
    /// A length, then UTF-8 bytes.
    pub fn str(&mut self) -> Result<String, String> {
        let n = self.size()?;
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated string")?;
        let s = std::str::from_utf8(&self.bytes[self.at..end]).map_err(|e| format!("text at byte {}: {e}", self.at))?;
        self.at = end;
        Ok(s.to_owned())
    }
    fn pseudobulk(&mut self) -> Result<PseudobulkRow, String> {
        Ok(PseudobulkRow {
            tick: self.u64()?,
            time: self.f64()?,
            cell_type: self.u32()?,
            cells: self.size()?,
            mean: self.f64s()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_form_round_trips_every_value_exactly_and_refuses_truncation() {
        let cell = CellBundle::founder(
            7,
            Vec3::new(1.5, -2.0, 0.0),
            5.0,
            1,
            Cycle {
                phase: Phase::Apoptotic,
                age: 3.25,
                progress: 1.0,
                length: f32::INFINITY,
                dying: 0.5,
                volume_at_death: 523.6,
            },
            true,
        );
        let state = SimState {
            tick: 42,
            cells: vec![cell],
            expression: vec![0.1, f32::MIN_POSITIVE],
            genes: 2,
            field: vec![1e-30, 3.0],
            exchanged: vec![-0.5],
            fired: vec![true, false],
            ablated: vec![Vec3::ONE],
            injected: vec![2.0],
            pseudobulk: vec![PseudobulkRow { tick: 0, time: 0.0, cell_type: 1, cells: 1, mean: vec![0.1, 0.2] }],
            ligand_totals: vec![(0, 0.0, vec![4.0])],
            regional: vec![RegionRow {
                region: 0,
                row: PseudobulkRow { tick: 0, time: 0.0, cell_type: 1, cells: 1, mean: vec![0.3, 0.4] },
            }],
            added: vec![(1, -0.25), (0, 3.5)],
            restart_tick: 7,
        };
        let bytes = state.encode();
        assert_eq!(SimState::decode(&bytes).unwrap(), state);
        assert!(SimState::decode(&bytes[..bytes.len() - 1]).unwrap_err().contains("truncated"));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SimState::decode(&longer).unwrap_err().contains("left over"));
    }
}
