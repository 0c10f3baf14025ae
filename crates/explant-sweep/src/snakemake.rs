//! A sweep as a Snakemake workflow: rules that call `explant run` per point, and one
//! calling `explant sweep collect` at the end, so the same sweep runs under
//! `snakemake --cores N` here or on a cluster through Snakemake's executor plugins
//! (`profiles/slurm/config.yaml`, written beside the Snakefile, for SLURM).
//!
//! A point whose simulation fails (`explant run` exits 3, README "Exit status") is a
//! result, not a broken job: the rule accepts that status and keeps the run directory,
//! whose manifest says `failed`, so the workflow finishes and `collect` writes the same
//! table as the local runner ([`crate::runner`]), the failed rows marked. Any other
//! status (1: bad input; a crash) fails the job as before.
//!
//! The `explant` executable is named once, at the top: the one that wrote the Snakefile,
//! unless the workflow is run with `--config explant=PATH` (a cluster's own build).
//!
//! Jobs: without batching, one job per point, its output the run directory. With
//! `--batch K`, one job runs K points one after another in one process (`explant sweep
//! exec`, [`crate::exec`]: one process start and one libtorch load for the K, a failed
//! simulation kept as its point's result) and touches `batches/batch_NNNNN.done`; a batch
//! that fails part way (a point that could not run) is rerun, skipping the points that
//! ended. The
//! jobs, their runs and their resources are listed in `jobs.tsv`, which the Snakefile
//! reads, so a sweep of thousands of points keeps a short Snakefile.
//!
//! Resources: each job declares `mem_mb` and `runtime` (minutes), the names cluster
//! executors read. `runtime` is the sum over the job's runs of each run's minutes: the
//! spec's `[cluster] runtime_min` (default [`crate::DEFAULT_RUNTIME_MIN`]), or with
//! `--calibrate` each point's request from a short run here ([`crate::calibrate`]). `mem_mb` is the spec's
//! `[cluster] mem_mb`, else [`memory_mb`] of the point's scene (the largest of a batch).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use explant_scene::Scene;
use explant_scene::memory::bytes_per_cell;

use crate::SweepError;
use crate::calibrate::{field_bytes, most_cells, simulations};
use crate::runner::Prepared;

/// The memory a run needs beyond its cells and fields (the executable, its libraries,
/// the writers' buffers), MB.
pub const BASE_MB: f64 = 256.0;

/// Factor on the estimated cells and fields: the estimate is of the peak resident set
/// measured on one machine (`BENCHMARKS.md`, "Memory per cell"); a job killed for
/// memory costs more than a generous request.
pub const SAFETY: f64 = 2.0;

/// The least memory a job asks for, MB.
pub const FLOOR_MB: u64 = 512;

/// Estimated memory of one run of `scene`, MB: [`SAFETY`] × simulations × (cells ×
/// [`bytes_per_cell`] + voxels × ligands × 12 bytes) + [`BASE_MB`], rounded up to 64 MB,
/// at least [`FLOOR_MB`].
///
/// Cells are `tissue.max_cells` when the scene sets it (the most the run may hold), else
/// twice the starting population (room for it to double; an imported tissue, whose size
/// the scene does not say, counts none: give `[cluster] mem_mb` in the spec). The fields
/// are stored three times in f32 (the field, its scratch copy, a readback copy), as the
/// scene validator counts them. A scene with perturbations runs a paired control: two
/// simulations.
pub fn memory_mb(scene: &Scene) -> u64 {
    let bytes =
        simulations(scene) * (most_cells(scene) as f64 * bytes_per_cell(scene.genes.len()) + field_bytes(scene));
    let mb = (SAFETY * bytes / 1e6 + BASE_MB).ceil() as u64;
    mb.div_ceil(64).saturating_mul(64).max(FLOOR_MB)
}

/// One job of the workflow: its id (the run's, or `batch_NNNNN`), its runs and resources.
struct Job {
    id: String,
    runs: Vec<String>,
    mem_mb: u64,
    runtime_min: u64,
}

/// The points in jobs of `batch` runs (the last may hold fewer); `batch` 1 gives one
/// job per point, named after it.
fn jobs(prepared: &Prepared, batch: usize) -> Vec<Job> {
    let indices: Vec<usize> = (0..prepared.points.len()).collect();
    indices
        .chunks(batch.max(1))
        .enumerate()
        .map(|(k, chunk)| Job {
            id: if batch <= 1 { prepared.points[chunk[0]].id() } else { format!("batch_{:05}", k + 1) },
            runs: chunk.iter().map(|&i| prepared.points[i].id()).collect(),
            mem_mb: chunk.iter().map(|&i| prepared.memory_mb[i]).max().unwrap_or(FLOOR_MB),
            runtime_min: chunk.iter().map(|&i| prepared.runtime_min[i]).fold(0, u64::saturating_add),
        })
        .collect()
}

/// The `explant run` command of one point, accepting exit status 3 (Snakemake runs shell
/// commands with `set -e`: the `||` keeps a failed simulation from failing the job).
const RUN: &str = r#""{EXPLANT}" run scenes/$run.toml --out runs/$run --quiet --force --no-figures --threads {threads} || [ $? -eq 3 ]"#;

/// Write `out/Snakefile`, `out/jobs.tsv` and `out/profiles/slurm/config.yaml` for the
/// prepared sweep, calling the `explant` executable `exe` with `threads` threads per run,
/// `batch` runs per job; returns the Snakefile's path.
///
/// # Errors
///
/// When a file cannot be written.
pub fn emit(prepared: &Prepared, exe: &Path, out: &Path, threads: usize, batch: usize) -> Result<PathBuf, SweepError> {
    let jobs = jobs(prepared, batch);
    let mut table = String::from("job\truns\tmem_mb\truntime_min\n");
    for j in &jobs {
        let _ = writeln!(table, "{}\t{}\t{}\t{}", j.id, j.runs.join(" "), j.mem_mb, j.runtime_min);
    }
    write(&out.join("jobs.tsv"), &table)?;
    let profile = out.join("profiles").join("slurm");
    std::fs::create_dir_all(&profile).map_err(SweepError::file("create", &profile))?;
    write(&profile.join("config.yaml"), SLURM_PROFILE)?;

    let rules = if batch <= 1 {
        format!(
            r#"rule run:
    input: "scenes/{{run}}.toml"
    output: directory("runs/{{run}}")
    threads: {threads}
    resources:
        mem_mb=lambda w: int(JOBS[w.run]["mem_mb"]),
        runtime=lambda w: int(JOBS[w.run]["runtime_min"]),
    # Exit status 3: the simulation failed; its directory (manifest `failed`) is the result.
    shell: 'run={{wildcards.run}}; {RUN}'

rule collect:
    input: expand("runs/{{run}}", run=JOBS)
    output: "results.csv"
    shell: '"{{EXPLANT}}" sweep collect sweep.toml .'
"#
        )
    } else {
        format!(
            r#"wildcard_constraints:
    batch=r"batch_\d+"

rule batch:
    input: lambda w: expand("scenes/{{run}}.toml", run=JOBS[w.batch]["runs"].split())
    output: touch("batches/{{batch}}.done")
    threads: {threads}
    resources:
        mem_mb=lambda w: int(JOBS[w.batch]["mem_mb"]),
        runtime=lambda w: int(JOBS[w.batch]["runtime_min"]),
    params: runs=lambda w: JOBS[w.batch]["runs"]
    # The runs one after another in one process (one start, one model-library load). A run
    # whose simulation fails keeps its directory as its result; a rerun skips runs that ended.
    shell: '"{{EXPLANT}}" sweep exec . {{params.runs}} --threads {{threads}}'

rule collect:
    input: expand("batches/{{batch}}.done", batch=JOBS)
    output: "results.csv"
    shell: '"{{EXPLANT}}" sweep collect sweep.toml .'
"#
        )
    };
    let snakefile = format!(
        r#"# Generated by `explant sweep --emit snakemake`: {n} runs of `{name}` in {jobs} jobs.
# Run here with `snakemake --cores N` (from this directory), or on SLURM with
# `snakemake --profile profiles/slurm` (snakemake-executor-plugin-slurm; see that file).
# A run whose simulation fails (exit status 3) is recorded as a failed row, not a failed job.
import csv

# The explant executable: the one that wrote this file, or `--config explant=PATH`.
EXPLANT = config.get("explant", {exe:?})
# One row per job: its runs, memory (MB) and wall time (minutes), from the sweep spec's
# `[cluster]` and each scene's memory estimate.
with open("jobs.tsv") as f:
    JOBS = {{row["job"]: row for row in csv.DictReader(f, delimiter="\t")}}

localrules: all, collect

rule all:
    input: "results.csv"

{rules}"#,
        n = prepared.points.len(),
        name = prepared.spec.name,
        jobs = jobs.len(),
        exe = exe.display().to_string(),
    );
    let path = out.join("Snakefile");
    write(&path, &snakefile)?;
    Ok(path)
}

fn write(path: &Path, text: &str) -> Result<(), SweepError> {
    std::fs::write(path, text).map_err(SweepError::file("write", path))
}

/// `profiles/slurm/config.yaml`: a Snakemake profile for SLURM.
const SLURM_PROFILE: &str = r#"# Snakemake profile for SLURM, written by `explant sweep --emit snakemake`.
# From the sweep folder:  snakemake --profile profiles/slurm
# Needs the executor plugin: pip install snakemake-executor-plugin-slurm
# Each job asks for the mem_mb and runtime (minutes) of its row in jobs.tsv (set
# `[cluster] runtime_min` / `mem_mb` in the sweep spec, or emit with `--calibrate` to
# measure each run's wall time; see calibration.json); `collect` runs where snakemake runs.
executor: slurm
# Jobs queued or running at once.
jobs: 100
# Seconds to wait for outputs to appear on a shared file system.
latency-wait: 60
# A failed simulation is not a failed job; a failed job (bad input, a crash) is not retried.
retries: 0
# The rest of the points go on when a job fails; rerun to retry it.
keep-going: true
printshellcmds: true
default-resources:
  mem_mb: 1024
  runtime: 60
  # Your site's account and partition, if it needs them:
  # slurm_account: "my_account"
  # slurm_partition: "compute"
# The explant on the compute nodes, if not the one that wrote the Snakefile:
# config:
#   explant: /path/to/explant
"#;
