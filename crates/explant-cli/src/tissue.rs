//! Imported initial tissues: read the scene's `.h5ad` and map it onto the scene.

use anyhow::{Context, Result};
use explant_core::InitialCells;
use explant_io::{Coordinates, ImportRequest, read_tissue};
use explant_scene::{LoadedScene, TissueShape};

/// The cells of a scene whose tissue is imported (`None` for a generated tissue).
pub fn imported_cells(scene: &LoadedScene) -> Result<Option<InitialCells>> {
    let sc = &scene.scene;
    let t = &sc.tissue;
    if t.shape != TissueShape::Import {
        return Ok(None);
    }
    let Some(rel) = &t.path else { return Ok(None) };
    let path = scene.resolve(rel);
    let coordinates = match &t.obs_columns {
        Some(cols) => Coordinates::ObsColumns(cols.clone()),
        None => Coordinates::Obsm(t.obsm.clone().unwrap_or_else(|| "spatial".into())),
    };
    let request =
        ImportRequest { coordinates, cell_type_column: t.cell_type_column.clone(), genes: &sc.genes, dims: sc.dims() };
    let imported = read_tissue(&path, &request)
        .with_context(|| format!("scene `{}`: field `tissue.path`", scene.path.display()))?;
    let missing: Vec<&str> =
        sc.genes.iter().zip(&imported.matched).filter(|(_, m)| !**m).map(|(g, _)| g.as_str()).collect();
    if !missing.is_empty() {
        eprintln!(
            "note: {} of the scene's genes are not in `{}` and start at their cell type's baseline: {}",
            missing.len(),
            path.display(),
            missing.join(", ")
        );
    }
    let cells = InitialCells::from_import(
        sc,
        &path,
        &imported.positions,
        imported.cell_types.as_deref(),
        &imported.expression,
        &imported.matched,
    )
    .with_context(|| format!("scene `{}`: field `tissue`", scene.path.display()))?;
    Ok(Some(cells))
}
