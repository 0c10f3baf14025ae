//! `explant check`: validate scenes.

use anyhow::Result;
use explant_scene::LoadedScene;

use crate::cli::CheckArgs;

/// Validate each scene; fail on the first invalid one.
pub fn check(args: CheckArgs) -> Result<()> {
    for path in &args.scenes {
        let s = LoadedScene::from_file(path)?;
        for warning in s.warnings() {
            eprintln!("warning: {warning}");
        }
        let (imported, notes) = explant_run::imported_cells(&s)?;
        for note in notes {
            eprintln!("note: {note}");
        }
        let cells = match imported {
            Some(c) => c.positions.len(),
            None => s.scene.expected_cells().unwrap_or(0),
        };
        println!(
            "{}: ok ({} genes, {} ligands, {} cell types, {} cells, {}D, {} ticks)",
            path.display(),
            s.scene.genes.len(),
            s.scene.ligands.len(),
            s.scene.cell_types.len(),
            cells,
            s.scene.dims(),
            s.scene.ticks()
        );
    }
    Ok(())
}
