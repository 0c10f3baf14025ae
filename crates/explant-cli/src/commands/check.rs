//! `explant check`: validate scenes.

use std::path::Path;

use anyhow::{Result, bail};
use explant_scene::LoadedScene;

use crate::cli::CheckArgs;

/// What checking one scene found.
struct Checked {
    scene: LoadedScene,
    warnings: Vec<String>,
    notes: Vec<String>,
    cells: usize,
}

/// Validate one scene (and read an imported tissue, to count its cells).
fn check_one(path: &Path) -> Result<Checked> {
    let scene = LoadedScene::from_file(path)?;
    let warnings = scene.warnings().iter().map(ToString::to_string).collect();
    let (imported, notes) = explant_run::imported_cells(&scene)?;
    let cells = match imported {
        Some(c) => c.positions.len(),
        None => scene.scene.expected_cells().unwrap_or(0),
    };
    Ok(Checked { scene, warnings, notes, cells })
}

/// Validate each scene; fail on the first invalid one (with `--json`, check them all and
/// print one array).
pub fn check(args: CheckArgs) -> Result<()> {
    if args.json {
        return check_json(&args.scenes);
    }
    for path in &args.scenes {
        let c = check_one(path)?;
        for warning in &c.warnings {
            eprintln!("warning: {warning}");
        }
        for note in &c.notes {
            eprintln!("note: {note}");
        }
        let s = &c.scene.scene;
        println!(
            "{}: ok ({} genes, {} ligands, {} cell types, {} cells, {}D, {} diffusion, {} ticks)",
            path.display(),
            s.genes.len(),
            s.ligands.len(),
            s.cell_types.len(),
            c.cells,
            s.dims(),
            s.grid.scheme.name(),
            s.ticks()
        );
    }
    Ok(())
}

/// `--json`: every scene checked, one array on stdout.
fn check_json(paths: &[std::path::PathBuf]) -> Result<()> {
    let mut out = Vec::new();
    let mut invalid = 0;
    for path in paths {
        let entry = match check_one(path) {
            Ok(c) => {
                let s = &c.scene.scene;
                serde_json::json!({
                    "path": path.display().to_string(),
                    "ok": true,
                    "warnings": c.warnings,
                    "notes": c.notes,
                    "genes": s.genes.len(),
                    "ligands": s.ligands.len(),
                    "cell_types": s.cell_types.len(),
                    "cells": c.cells,
                    "dims": s.dims(),
                    "scheme": s.grid.scheme.name(),
                    "ticks": s.ticks(),
                })
            }
            Err(e) => {
                invalid += 1;
                let message = e.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ");
                serde_json::json!({ "path": path.display().to_string(), "ok": false, "error": message })
            }
        };
        out.push(entry);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    if invalid > 0 {
        bail!("{invalid} of {} scenes are invalid (see `error` in the JSON above)", paths.len());
    }
    Ok(())
}
