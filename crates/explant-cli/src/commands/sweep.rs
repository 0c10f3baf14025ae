//! `explant sweep`: run a parameter sweep here (concurrent, atomic, resumable), emit it as
//! a Snakemake workflow, gather its table, and report each parameter's effect (the sweep
//! itself is `explant_sweep::{runner, snakemake, report}`).

use anyhow::{Context, Result, bail};
use explant_sweep::{report, runner, snakemake};

use crate::cli::{EmitKind, SweepArgs, SweepCommand};
use crate::progress::SweepProgress;

/// `explant sweep ...`.
pub fn sweep(args: SweepArgs) -> Result<()> {
    match args.command {
        Some(SweepCommand::Collect { spec, dir }) => {
            let (table, done, all) = runner::collect(&spec, &dir)?;
            println!("wrote {} ({done} of {all} runs completed)", table.display());
        }
        Some(SweepCommand::Report { dir }) => {
            let (csv, svg) = report::report(&dir)?;
            println!("wrote {} and {}", csv.display(), svg.display());
        }
        None => {
            let (Some(spec), Some(out)) = (args.spec.as_deref(), args.out.as_deref()) else {
                bail!("give the sweep spec and `--out DIR`");
            };
            if args.batch == 0 {
                bail!("`--batch 0`: give the runs per job, at least 1");
            }
            if args.batch != 1 && args.emit.is_none() {
                bail!("`--batch {}` groups runs into workflow jobs; it goes with `--emit snakemake`", args.batch);
            }
            let prepared = runner::prepare(spec, out)?;
            let exe = std::env::current_exe().context("cannot find the explant executable")?;
            let threads = args.threads.max(1);
            match args.emit {
                Some(EmitKind::Snakemake) => {
                    let path = snakemake::emit(&prepared, &exe, out, threads, args.batch)?;
                    println!(
                        "wrote {} ({} runs in {} jobs); run it with: cd {} && snakemake --cores N \
                         (on SLURM: snakemake --profile profiles/slurm)",
                        path.display(),
                        prepared.points.len(),
                        prepared.points.len().div_ceil(args.batch),
                        out.display()
                    );
                }
                None => {
                    let progress = SweepProgress::new(args.quiet);
                    let table = runner::run_local(&prepared, &exe, out, args.jobs, threads, &progress)?;
                    println!("wrote {} and results.parquet", table.display());
                }
            }
        }
    }
    Ok(())
}
