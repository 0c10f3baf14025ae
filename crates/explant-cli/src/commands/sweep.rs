//! `explant sweep`: run a parameter sweep here (concurrent, atomic, resumable), emit it as
//! a Snakemake workflow, gather its table, and report each parameter's effect (the sweep
//! itself is `explant_sweep::{runner, snakemake, report}`).

use anyhow::{Context, Result, bail};
use explant_sweep::{exec, report, runner, snakemake};

use crate::cli::{EmitKind, SweepArgs, SweepCommand};
use crate::progress::SweepProgress;

/// `explant sweep ...`.
pub fn sweep(args: SweepArgs) -> Result<()> {
    match args.command {
        Some(SweepCommand::Collect { spec, dir }) => {
            let (table, done, all) = runner::collect(&spec, &dir)?;
            println!("wrote {} ({done} of {all} runs completed)", table.display());
        }
        Some(SweepCommand::Exec { dir, runs, threads, diffusion, quiet }) => {
            let (threads, note) = explant_run::use_threads(threads.max(1))?;
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
            let opts =
                exec::ExecOptions { threads, diffusion: diffusion.into(), command_line: std::env::args().collect() };
            // On a worker, as `explant run` steps its scene (see `explant_run::on_workers`).
            let done = explant_run::on_workers(|| exec::exec(&dir, &runs, &opts, &SweepProgress::new(quiet)))?;
            println!(
                "{} completed, {} failed in the simulation, {} already ended, {} could not run",
                done.completed.len(),
                done.failed.len(),
                done.skipped.len(),
                done.errors.len()
            );
            if !done.errors.is_empty() {
                let list: Vec<&str> = done.errors.iter().map(|(_, e)| e.as_str()).collect();
                bail!("{} of {} points could not run:\n  {}", done.errors.len(), runs.len(), list.join("\n  "));
            }
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
                bail!("`--batch 0`: give the runs per process (or per workflow job), at least 1");
            }
            if let Some(seconds) = args.calibrate {
                if args.emit.is_none() {
                    bail!("`--calibrate` measures the wall time cluster jobs ask for; it goes with `--emit snakemake`");
                }
                if !(seconds.is_finite() && seconds > 0.0) {
                    bail!("`--calibrate {seconds}`: give the seconds of ticks to time, a positive number");
                }
            }
            let mut prepared = runner::prepare(spec, out)?;
            let exe = std::env::current_exe().context("cannot find the explant executable")?;
            let threads = args.threads.max(1);
            match args.emit {
                Some(EmitKind::Snakemake) => {
                    if let Some(seconds) = args.calibrate {
                        explant_run::use_threads(threads)?;
                        eprintln!("calibrating: timing about {seconds} s of ticks of the most expensive point");
                        let cal = prepared.calibrate(out, explant_run::DiffusionChoice::Auto, threads, seconds)?;
                        for s in &cal.skipped {
                            eprintln!("note: calibration passed over {}: its simulation failed ({})", s.point, s.error);
                        }
                        eprintln!(
                            "calibration on {}: start {:.2} s, {:.3e} s per tick over {} ticks; each run asks for {}–{} min \
                             (calibration.json)",
                            cal.point,
                            cal.start_seconds,
                            cal.seconds_per_tick,
                            cal.ticks_timed,
                            cal.runtime_min.iter().min().unwrap_or(&0),
                            cal.runtime_min.iter().max().unwrap_or(&0)
                        );
                    }
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
                    let table = runner::run_local(&prepared, &exe, out, args.jobs, threads, args.batch, &progress)?;
                    println!("wrote {} and results.parquet", table.display());
                }
            }
        }
    }
    Ok(())
}
