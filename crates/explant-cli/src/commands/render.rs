//! `explant render`: draw a run's figures again from its output directory (the drawing is
//! `explant_run::figures`).

use anyhow::Result;
use explant_run::figures::{RenderOptions, draw_figures};

use crate::cli::RenderArgs;

/// `explant render`.
pub fn render(args: RenderArgs) -> Result<()> {
    let opts = RenderOptions { snapshot: args.snapshot, gene: args.gene, ligand: args.ligand, out: args.out };
    let f = draw_figures(&args.run_dir, &opts)?;
    for note in &f.notes {
        eprintln!("note: {note}");
    }
    for p in std::iter::once(&f.tissue).chain(&f.timeseries).chain(&f.response) {
        println!("wrote {}", p.display());
    }
    Ok(())
}
