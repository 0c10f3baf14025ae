//! Imported initial tissues: read the scene's `.h5ad` and map it onto the scene.

use explant_core::InitialCells;
use explant_io::{Coordinates, ImportRequest, read_tissue};
use explant_scene::{LoadedScene, TissueShape};

use crate::RunError;

/// The cells of a scene whose tissue is imported (`None` for a generated tissue), and
/// notes for the user (genes the file lacks).
///
/// # Errors
///
/// When the file cannot be read or does not fit the scene (the message names the scene's
/// `tissue` field and the file).
pub fn imported_cells(scene: &LoadedScene) -> Result<(Option<InitialCells>, Vec<String>), RunError> {
    let sc = &scene.scene;
    let t = &sc.tissue;
    if t.shape != TissueShape::Import {
        return Ok((None, Vec::new()));
    }
    let Some(rel) = &t.path else { return Ok((None, Vec::new())) };
    let path = scene.resolve(rel);
    let coordinates = match &t.obs_columns {
        Some(cols) => Coordinates::ObsColumns(cols.clone()),
        None => Coordinates::Obsm(t.obsm.clone().unwrap_or_else(|| "spatial".into())),
    };
    let request =
        ImportRequest { coordinates, cell_type_column: t.cell_type_column.clone(), genes: &sc.genes, dims: sc.dims() };
    let field =
        |name: &str, message: String| RunError::SceneField { scene: scene.path.clone(), field: name.into(), message };
    let imported = read_tissue(&path, &request).map_err(|e| field("tissue.path", crate::error_chain(&e)))?;
    let missing: Vec<&str> =
        sc.genes.iter().zip(&imported.matched).filter(|(_, m)| !**m).map(|(g, _)| g.as_str()).collect();
    let mut notes = Vec::new();
    if !missing.is_empty() {
        notes.push(format!(
            "{} of the scene's genes are not in `{}` and start at their cell type's baseline: {}",
            missing.len(),
            path.display(),
            missing.join(", ")
        ));
    }
    let cells = InitialCells::from_import(
        sc,
        &path,
        &imported.positions,
        imported.cell_types.as_deref(),
        &imported.expression,
        &imported.matched,
    )
    .map_err(|e| field("tissue", crate::error_chain(&e)))?;
    Ok((Some(cells), notes))
}
