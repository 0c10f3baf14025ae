//! The components of a cell entity and the resources of the tissue world.

use std::sync::Mutex;
use std::time::Duration;

use bevy_ecs::prelude::*;
use explant_field::{ChannelParams, DiffusionBackend, Field};
use glam::Vec3;

use crate::model::ResponseModel;

/// Stable identity of a cell (never reused), for outputs and random streams.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CellId(pub u64);

/// Centre position in µm (z = 0 in a 2D tissue).
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Position(pub Vec3);

/// Cell radius in µm.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Radius(pub f32);

/// Index into the scene's cell types.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellType(pub u32);

/// Expression state: one value per scene gene.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct Expression(pub Vec<f32>);

/// Lineage: the parent's id (none for founders) and the generation.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage {
    /// Parent cell, if born in the run.
    pub parent: Option<u64>,
    /// 0 for founders.
    pub generation: u32,
}

/// Whether a perturbation acted on the cell at the last tick.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perturbed(pub bool);

/// The simulation clock.
#[derive(Resource, Debug, Clone, Copy, Default)]
pub struct Clock {
    /// Ticks completed.
    pub tick: u64,
    /// Length of a tick, minutes.
    pub dt: f32,
}

impl Clock {
    /// Simulated minutes elapsed.
    pub fn time(&self) -> f64 {
        self.tick as f64 * f64::from(self.dt)
    }
}

/// Ligand concentrations on the grid and their transport constants.
#[derive(Resource, Debug)]
pub struct Ligands {
    /// The field (channel-major).
    pub field: Field,
    /// Per-ligand diffusion and decay.
    pub params: Vec<ChannelParams>,
    /// Per ligand: how cells put it on and take it off the grid.
    pub coupling: Vec<Coupling>,
    /// Per ligand: the receptor gene that gates sensing.
    pub receptor: Vec<usize>,
    /// Per ligand: net amount cells have added to the grid so far (secretion + export −
    /// uptake), accumulated in f64 for mass-balance checks.
    pub exchanged: Vec<f64>,
}

/// How cells exchange one ligand with the grid (PhysiCell's secretion model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coupling {
    /// Gene whose expression scales secretion and export.
    pub gene: usize,
    /// Net export, amount/min per unit expression.
    pub export: f32,
    /// Secretion rate toward saturation, 1/min per unit expression.
    pub secretion: f32,
    /// Saturation density.
    pub saturation: f32,
    /// Uptake rate, 1/min per unit receptor expression.
    pub uptake: f32,
    /// Receptor gene (gates uptake as well as sensing).
    pub receptor: usize,
}

/// The diffusion backend chosen for this run.
#[derive(Resource)]
pub struct Diffuser(pub Box<dyn DiffusionBackend>);

/// The response model chosen for this run.
#[derive(Resource)]
pub struct Model(pub Mutex<Box<dyn ResponseModel>>);

/// Per-tick batch buffers, filled in query order by `sense` and read by later stages
/// of the same tick (no structural changes happen in between).
#[derive(Resource, Debug, Default)]
pub struct Batch {
    /// Cells in the batch.
    pub cells: usize,
    /// Positions, `N`.
    pub positions: Vec<Vec3>,
    /// Radii, `N`.
    pub radii: Vec<f32>,
    /// Expression, `N × G`.
    pub expression: Vec<f32>,
    /// Sensed ligands, `N × L`.
    pub sensed: Vec<f32>,
    /// Neighbour means of contact genes, `N × G`.
    pub contact: Vec<f32>,
    /// Cell types, `N`.
    pub cell_type: Vec<u32>,
    /// Neighbour lists in CSR form: neighbours of cell `i` are
    /// `neighbours[offsets[i]..offsets[i+1]]`, batch indices in ascending order.
    pub offsets: Vec<u32>,
    /// See `offsets`.
    pub neighbours: Vec<u32>,
    /// `dx/dt` from the model, `N × G`.
    pub rates: Vec<f32>,
}

/// Fixed per-run settings the stages read.
#[derive(Resource, Debug, Clone)]
pub struct Settings {
    /// Number of genes.
    pub genes: usize,
    /// Number of ligands.
    pub ligands: usize,
    /// Dense mask of contact genes.
    pub contact_mask: Vec<bool>,
    /// Contact interaction radius, µm.
    pub contact_radius: f32,
    /// Mechanics constants.
    pub mechanics: explant_scene::MechanicsSpec,
    /// The domain's extent, µm (z = 0 for 2D).
    pub domain: Vec3,
    /// 2 or 3.
    pub dims: usize,
    /// Perturbations with their names resolved.
    pub perturbations: Vec<PlannedPerturbation>,
    /// Record every this many ticks.
    pub record_interval: u64,
    /// Seed of the run.
    pub seed: u64,
}

/// A scene perturbation with its gene and cell type resolved to indices.
#[derive(Debug, Clone)]
pub struct PlannedPerturbation {
    /// The scene's entry (window and region).
    pub spec: explant_scene::Perturbation,
    /// What it does.
    pub action: explant_scene::PerturbationKind,
    /// Index of the target gene.
    pub gene: usize,
    /// Index of the target cell type, if restricted to one.
    pub cell_type: Option<u32>,
}

/// Set by a stage that failed; the remaining stages skip and the run stops.
#[derive(Resource, Debug, Default)]
pub struct Failure(pub Option<crate::CoreError>);

/// Wall time spent in each stage.
#[derive(Resource, Debug, Clone, Default)]
pub struct StageTimers {
    /// Accumulated time per stage, indexed by `Stage as usize`.
    pub total: [Duration; crate::Stage::ALL.len()],
}

impl StageTimers {
    /// Add `d` to `stage`.
    pub fn add(&mut self, stage: crate::Stage, d: Duration) {
        self.total[stage as usize] += d;
    }
}
