//! A simulation's state as an AnnData snapshot (`tissue.h5ad`, `snapshots/tick_*.h5ad`).

use std::path::Path;

use explant_core::{Phase, Simulation};
use explant_io::{FieldSnapshot, ObsColumn, Snapshot, write_h5ad};
use explant_scene::LoadedScene;

use crate::{RunError, VERSION};

/// Names of the `obs['phase']` categories, in code order.
const PHASES: [&str; 3] = ["cycling", "apoptotic", "necrotic"];

/// Write `sim`'s current state to `path`: expression, cell metadata, positions, ligand
/// fields and the scene text; with a paired `control`, `layers['control']` (the control's
/// expression of the same cell, NaN where it has none) and, for a perturbed scene,
/// `obs['distance_to_perturbation']`.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_snapshot(
    sim: &mut Simulation,
    control: Option<&mut Simulation>,
    scene: &LoadedScene,
    path: &Path,
) -> Result<(), RunError> {
    let cells = sim.cells();
    let sc = &scene.scene;
    let g = sc.genes.len();
    let distance = if sc.perturbations.is_empty() { Vec::new() } else { sim.perturbation_distance(&cells) };
    let control_x = control.map(|c| explant_core::effects::aligned_control(&cells, &c.cells(), g));
    let clock = sim.clock();
    let ligand_names = sc.ligand_names();
    let ligands = sim.ligands();
    let parents: Vec<i64> = cells.parents.iter().map(|&p| if p == u64::MAX { -1 } else { p as i64 }).collect();
    let phase_names: Vec<String> = PHASES.map(String::from).to_vec();
    let phases: Vec<u32> = cells
        .phases
        .iter()
        .map(|p| match p {
            Phase::Cycling => 0,
            Phase::Apoptotic => 1,
            Phase::Necrotic => 2,
        })
        .collect();
    let mut extra = vec![
        ObsColumn::Int { name: "parent", values: &parents },
        ObsColumn::Category { name: "phase", categories: &phase_names, codes: &phases },
        ObsColumn::Float { name: "radius", values: &cells.radii },
    ];
    if !distance.is_empty() {
        extra.push(ObsColumn::Float { name: "distance_to_perturbation", values: &distance });
    }
    let layers: Vec<(&str, &[f32])> = control_x.iter().map(|x| ("control", x.as_slice())).collect();
    let snap = Snapshot {
        genes: &sc.genes,
        cell_type_names: &sc.cell_type_names(),
        cell_ids: &cells.ids,
        cell_types: &cells.cell_types,
        generations: &cells.generations,
        perturbed: &cells.perturbed,
        positions: &cells.positions,
        dims: sc.dims(),
        expression: &cells.expression,
        tick: clock.tick,
        time_min: clock.time(),
        scene_toml: &scene.text,
        explant_version: VERSION,
        fields: Some(FieldSnapshot { names: &ligand_names, grid: &ligands.field.grid, data: &ligands.field.data }),
        extra_obs: &extra,
        layers: &layers,
    };
    write_h5ad(path, &snap)?;
    Ok(())
}
