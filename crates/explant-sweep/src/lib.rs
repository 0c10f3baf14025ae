//! Parameter sweeps over explant scenes.
//!
//! A sweep spec (TOML, [`SweepSpec`]) names a base scene, parameters addressed by path
//! into the scene (`ligands.WNT3A.diffusion`, `perturbations[0].gene`), a design (a full
//! grid, random or Latin-hypercube samples), replicate seeds and the readouts to collect
//! from each run. [`plan`] expands it into points, [`scene_text`] writes the scene of one
//! point, [`readouts`] reads the named summaries back from a finished run directory, and
//! [`results_csv`] makes the one table of the sweep. Running the points (locally or
//! through Snakemake) is the CLI's job; everything here is deterministic and has no
//! side effects beyond the files it is asked to read.

mod error;
mod parquet;
mod path;
mod readout;
mod spec;

pub use error::SweepError;
pub use parquet::{Column, to_parquet};
pub use path::{scene_text, set_path};
pub use readout::{ReadoutValue, readouts};
pub use spec::{Design, Parameter, Point, Readout, SweepSpec, plan};

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

/// The results table as CSV: `run,status,seed,<parameter paths>,<readout names>,wall_seconds,error`.
pub fn results_csv(spec: &SweepSpec, rows: &[RunResult]) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
    };
    let mut out = String::from("run,status,seed");
    for p in &spec.parameters {
        out.push(',');
        out.push_str(&quote(&p.path));
    }
    for r in &spec.readouts {
        out.push(',');
        out.push_str(&quote(r.name()));
    }
    out.push_str(",wall_seconds,error\n");
    for row in rows {
        out.push_str(&format!("{},{},{}", row.point.id(), row.status, row.point.seed));
        for v in &row.point.values {
            out.push(',');
            out.push_str(&quote(&spec::value_text(v)));
        }
        for v in &row.values {
            out.push_str(&format!(",{v}"));
        }
        out.push_str(&format!(",{},{}\n", row.wall_seconds, quote(&row.error)));
    }
    out
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
