//! Parameter sweeps over explant scenes.
//!
//! A sweep spec (TOML, [`SweepSpec`]) names a base scene, parameters addressed by path
//! into the scene (`ligands.WNT3A.diffusion`, `perturbations[0].gene`), a design (a full
//! grid, random or Latin-hypercube samples), replicate seeds and the readouts to collect
//! from each run. [`plan`] expands it into points, [`scene_text`] writes the scene of one
//! point, [`readouts`] reads the named summaries back from a finished run directory, and
//! [`results_csv`] makes the one table of the sweep. [`runner`] runs the points here
//! (concurrent, atomic, resumable), [`snakemake`] emits them as a workflow, and [`report`]
//! summarises each parameter's effect on each readout.

pub mod calibrate;
mod children;
mod error;
pub mod exec;
mod parquet;
mod path;
mod readout;
pub mod report;
pub mod runner;
pub mod snakemake;
mod spec;

use explant_run::tables::TableData;

pub use error::SweepError;
pub use parquet::{Column, to_parquet};
pub use path::{scene_text, set_path};
pub use readout::{ReadoutValue, readouts};
pub use spec::{ClusterSpec, DEFAULT_RUNTIME_MIN, Design, Parameter, Point, Readout, SweepSpec, plan};

/// One row of the results table.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// The point.
    pub point: Point,
    /// `completed`, `failed` or `missing`.
    pub status: String,
    /// Readout values, in the spec's order (NaN where unavailable).
    pub values: Vec<f64>,
    /// Wall time of the run, seconds (NaN if unknown).
    pub wall_seconds: f64,
    /// The error of a failed run.
    pub error: String,
}

/// The results table: `run,status,seed,<parameter paths>,<readout names>,wall_seconds,error`.
pub fn results_table(spec: &SweepSpec, rows: &[RunResult]) -> TableData {
    let header = ["run", "status", "seed"]
        .map(String::from)
        .into_iter()
        .chain(spec.parameters.iter().map(|p| p.path.clone()))
        .chain(spec.readouts.iter().map(|r| r.name().to_owned()))
        .chain(["wall_seconds", "error"].map(String::from));
    let mut t = TableData::new(header);
    for row in rows {
        let mut cells = vec![row.point.id(), row.status.clone(), row.point.seed.to_string()];
        cells.extend(row.point.values.iter().map(spec::value_text));
        cells.extend(row.values.iter().map(f64::to_string));
        cells.push(row.wall_seconds.to_string());
        cells.push(row.error.clone());
        t.rows.push(cells);
    }
    t
}

/// The results table as CSV text ([`results_table`], quoted where a field needs it).
pub fn results_csv(spec: &SweepSpec, rows: &[RunResult]) -> String {
    explant_run::tables::csv_text(&results_table(spec, rows)).unwrap_or_default()
}

/// The results table as Parquet: the same columns as [`results_csv`], numbers as doubles
/// (the seed as a 64-bit integer), parameter values and text as UTF-8 strings.
pub fn results_parquet(spec: &SweepSpec, rows: &[RunResult]) -> Vec<u8> {
    let text = |f: &dyn Fn(&RunResult) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let mut columns = vec![
        Column::Text("run".into(), text(&|r| r.point.id())),
        Column::Text("status".into(), text(&|r| r.status.clone())),
        Column::Int("seed".into(), rows.iter().map(|r| r.point.seed as i64).collect()),
    ];
    for (k, p) in spec.parameters.iter().enumerate() {
        let values: Vec<&toml::Value> = rows.iter().map(|r| &r.point.values[k]).collect();
        if values.iter().all(|v| v.is_float() || v.is_integer()) {
            columns.push(Column::Float(
                p.path.clone(),
                values.iter().map(|v| v.as_float().or(v.as_integer().map(|i| i as f64)).unwrap_or(f64::NAN)).collect(),
            ));
        } else {
            columns.push(Column::Text(p.path.clone(), values.iter().map(|v| spec::value_text(v)).collect()));
        }
    }
    for (k, r) in spec.readouts.iter().enumerate() {
        columns.push(Column::Float(r.name().to_string(), rows.iter().map(|row| row.values[k]).collect()));
    }
    columns.push(Column::Float("wall_seconds".into(), rows.iter().map(|r| r.wall_seconds).collect()));
    columns.push(Column::Text("error".into(), text(&|r| r.error.clone())));
    to_parquet(&columns)
}
