//! A simulation's state as an AnnData snapshot (`tissue.h5ad`, `snapshots/tick_*.h5ad`).

use std::path::Path;

use explant_core::neighbours::CellList;
use explant_core::{Phase, Simulation};
use explant_io::{FieldSnapshot, NeighbourGraph, ObsColumn, Snapshot, write_h5ad};
use explant_scene::LoadedScene;
use glam::Vec3;

use crate::{RunError, VERSION};

/// Names of the `obs['phase']` categories, in code order.
const PHASES: [&str; 3] = ["cycling", "apoptotic", "necrotic"];

/// What `uns['spatial_neighbors']['params']['source']` says of the contact graph.
const NEIGHBOUR_SOURCE: &str = "explant contact list";

/// Write `sim`'s current state to `path`: expression, cell metadata, positions, ligand
/// fields, the contact graph and the scene text; with a paired `control`,
/// `layers['control']` (the control's expression of the same cell, NaN where it has none)
/// and, for a perturbed scene, `obs['distance_to_perturbation']`. Compressed as
/// `output.h5ad_compression` asks.
///
/// The contact graph (`obsp['spatial_connectivities']`, `obsp['spatial_distances']`) is
/// the simulator's own neighbour definition applied to the snapshot's positions: the
/// cell list of the `sense` stage ([`CellList`]) at `contact.radius`, the radius that
/// contact signalling and mechanics use, so cell `j ≠ i` is `i`'s neighbour when their
/// centres are at most `contact.radius` apart (`d² ≤ r²` in `f32`). It is rebuilt here
/// rather than copied from the last `sense`, whose lists belong to the positions before
/// that tick's mechanics moved the cells.
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
    sim.sync_field()?;
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
    let centres: Vec<Vec3> = cells.positions.iter().map(|&p| Vec3::from(p)).collect();
    let contact = CellList::new(&centres, sc.contact.radius).neighbours()?;
    let gzip =
        sc.output.h5ad_gzip_level().map_err(|m| RunError::Invalid(format!("field `output.h5ad_compression`: {m}")))?;
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
        neighbours: Some(NeighbourGraph {
            offsets: &contact.offsets,
            indices: &contact.neighbours,
            radius: sc.contact.radius,
            source: NEIGHBOUR_SOURCE,
        }),
        gzip,
    };
    write_h5ad(path, &snap)?;
    Ok(())
}
