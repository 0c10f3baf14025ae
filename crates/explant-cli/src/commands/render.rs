//! `explant render`: draw a run's figures again from its output directory (the drawing is
//! `explant_run::figures`).

use std::path::Path;

use anyhow::{Result, bail};
use explant_io::IoError;
use explant_run::RunError;
use explant_run::figures::{RenderOptions, draw_figures};

use crate::cli::RenderArgs;

/// `explant render`.
pub fn render(args: RenderArgs) -> Result<()> {
    if let Some(z) = args.slice_z.filter(|z| !z.is_finite()) {
        bail!("`--slice-z {z}` is not a height: give a finite z in µm inside the tissue");
    }
    if let Some(out) = &args.out {
        refuse_non_empty(out, args.force)?;
    }
    let opts = RenderOptions {
        snapshot: args.snapshot,
        gene: args.gene,
        ligand: args.ligand,
        out: args.out,
        slice_z: args.slice_z,
    };
    let f = match (draw_figures(&args.run_dir, &opts), args.slice_z) {
        (Err(e @ RunError::Io(IoError::SliceOutside { .. } | IoError::SliceOf2d { .. })), Some(z)) => {
            return Err(anyhow::Error::new(e).context(format!("`--slice-z {z}` cannot be drawn")));
        }
        (f, _) => f?,
    };
    for note in &f.notes {
        eprintln!("note: {note}");
    }
    for p in f.paths() {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// A folder the user named with `--out` may hold files of theirs with the figures' names:
/// refuse a file, or a non-empty folder without `--force`.
fn refuse_non_empty(out: &Path, force: bool) -> Result<()> {
    if out.exists() && !out.is_dir() {
        bail!("`--out {}` is a file, not a folder; name a folder for the figures", out.display());
    }
    let non_empty = out.is_dir() && std::fs::read_dir(out)?.next().is_some();
    if non_empty && !force {
        bail!(
            "`--out {}` is a folder that already holds files; choose a new or empty folder, or pass `--force` to write \
             the figures into it (files with the figures' names are replaced, nothing else is touched)",
            out.display()
        );
    }
    Ok(())
}
