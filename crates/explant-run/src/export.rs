//! `explant export RUN_DIR --vtk`: a run's snapshots as ParaView files in `RUN_DIR/vtk/`
//! ([`explant_io::write_cells_vtu`] and friends): `cells_tick_NNNNNNN.vtu` and, when the
//! snapshot holds ligand fields, `fields_tick_NNNNNNN.vtk` per snapshot, with `cells.pvd`
//! and `fields.pvd` listing them by time in minutes (open a `.pvd` in ParaView to play
//! the run).
//!
//! The snapshots are `snapshots/tick_*.h5ad` in tick order, or `tissue.h5ad` alone for a
//! run that kept none. `vtk/` is the export's own folder: written anew, refused without
//! `force` when it already holds files.

use std::path::PathBuf;

use explant_io::{VtkEncoding, read_snapshot, write_cells_vtu, write_fields_vtk, write_pvd};

use crate::{RunDir, RunError, RunFile, snapshot_name};

/// What [`export_vtk`] wrote.
#[derive(Debug, Clone)]
pub struct VtkExport {
    /// Every file written, the `.pvd` collections last.
    pub files: Vec<PathBuf>,
    /// Snapshots exported.
    pub snapshots: usize,
}

/// Export the run in `dir` to `dir/vtk/` (module docs).
///
/// # Errors
///
/// When `dir/vtk/` already holds files and `force` is not set, the run has no snapshot, a
/// snapshot cannot be read, or a file cannot be written.
pub fn export_vtk(dir: &RunDir, force: bool, encoding: VtkEncoding) -> Result<VtkExport, RunError> {
    let out = dir.path(RunFile::Vtk);
    if out.exists() && !out.is_dir() {
        return Err(RunError::Invalid(format!("`{}` is a file, not explant's `vtk/` folder", out.display())));
    }
    let non_empty = out.is_dir() && std::fs::read_dir(&out).map_err(RunError::file("read", &out))?.next().is_some();
    if non_empty && !force {
        return Err(RunError::Invalid(format!(
            "`{}` already holds files; pass `--force` to write the export again (files of the export's names are \
             replaced)",
            out.display()
        )));
    }
    let mut snapshots: Vec<(u64, PathBuf)> = match std::fs::read_dir(dir.path(RunFile::Snapshots)) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                let tick: u64 = name.strip_prefix("tick_")?.strip_suffix(".h5ad")?.parse().ok()?;
                Some((tick, p))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    snapshots.sort();
    if snapshots.is_empty() {
        let tissue = dir.path(RunFile::Tissue);
        if !tissue.is_file() {
            return Err(RunError::Invalid(format!(
                "`{}` has no snapshots and no `tissue.h5ad`: nothing to export",
                dir.root().display()
            )));
        }
        snapshots.push((u64::MAX, tissue));
    }
    std::fs::create_dir_all(&out).map_err(RunError::file("create", &out))?;
    let (mut files, mut cells_pvd, mut fields_pvd) = (Vec::new(), Vec::new(), Vec::new());
    for (k, (tick, path)) in snapshots.iter().enumerate() {
        let snap = read_snapshot(path)?;
        let tick = snap.tick.unwrap_or(if *tick == u64::MAX { k as u64 } else { *tick });
        let time = snap.time_min.unwrap_or(tick as f64);
        let stem = snapshot_name(tick).trim_end_matches(".h5ad").to_owned();
        let cells = format!("cells_{stem}.vtu");
        write_cells_vtu(&out.join(&cells), &snap, encoding)?;
        files.push(out.join(&cells));
        cells_pvd.push((cells, time));
        if let Some(f) = &snap.fields {
            let name = format!("fields_{stem}.vtk");
            let title = format!("explant ligand fields, tick {tick}, t = {time} min");
            write_fields_vtk(&out.join(&name), f, &title, encoding)?;
            files.push(out.join(&name));
            fields_pvd.push((name, time));
        }
    }
    for (name, list) in [("cells.pvd", &cells_pvd), ("fields.pvd", &fields_pvd)] {
        if !list.is_empty() {
            write_pvd(&out.join(name), list)?;
            files.push(out.join(name));
        }
    }
    Ok(VtkExport { files, snapshots: snapshots.len() })
}
