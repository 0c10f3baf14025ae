//! `explant report`: one self-contained HTML page about a run (`explant_run::report`).

use anyhow::Result;
use explant_run::RunFile;

use crate::cli::ReportArgs;

/// `explant report`: draw the figures (into `RUN_DIR/figures`), then write the page.
pub fn report(args: ReportArgs) -> Result<()> {
    if let Some(out) = &args.out {
        super::refuse_overwrite(&[out], args.force)?;
    }
    let out = args.out.clone().unwrap_or_else(|| args.run_dir.join(RunFile::Report.name()));
    let (written, notes) = explant_run::report::write_report(&args.run_dir, &out)?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    for p in &written {
        println!("wrote {}", p.display());
    }
    Ok(())
}
