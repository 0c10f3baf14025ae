//! Readouts: named summaries read back from a finished run's tables, through the run
//! library's one reader ([`explant_run::RunDir::table`]).

use std::path::Path;

use explant_run::{RunDir, RunFile, tables::Table};

use crate::{Readout, SweepError, SweepSpec};

/// A readout's value (NaN when the run has no such data, e.g. no cells of the type).
pub type ReadoutValue = f64;

/// One table of a run, with what a readout needs to name in its errors.
struct Source<'a> {
    table: Table,
    dir: &'a Path,
    file: &'static str,
    readout: &'a str,
}

impl<'a> Source<'a> {
    fn read(dir: &'a Path, file: RunFile, readout: &'a str) -> Result<Self, SweepError> {
        let run = RunDir::new(dir);
        let name = file.name();
        let err = |message: String| SweepError::Readout { dir: dir.to_path_buf(), readout: readout.into(), message };
        let table = match run.table(file) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(err(format!("cannot read `{name}`: it does not exist"))),
            Err(explant_run::RunError::Table { message, .. }) => return Err(err(format!("`{name}` {message}"))),
            Err(e) => return Err(err(format!("cannot read `{name}`: {}", explant_run::error_chain(&e)))),
        };
        Ok(Self { table, dir, file: name, readout })
    }

    fn column(&self, name: &str) -> Result<usize, SweepError> {
        self.table.header.iter().position(|h| h == name).ok_or_else(|| SweepError::Readout {
            dir: self.dir.to_path_buf(),
            readout: self.readout.into(),
            message: format!("`{}` has no column `{name}` (columns: {})", self.file, self.table.header.join(", ")),
        })
    }

    fn rows(&self) -> &[Vec<String>] {
        &self.table.rows
    }
}

fn number(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

/// Every readout of the spec for the run in `dir`, in the spec's order.
///
/// # Errors
///
/// When a table the readout needs is missing or damaged, or lacks a column.
pub fn readouts(spec: &SweepSpec, dir: &Path) -> Result<Vec<ReadoutValue>, SweepError> {
    spec.readouts.iter().map(|r| one(r, dir)).collect()
}

/// The last value of the `tick` column.
fn last_tick(src: &Source<'_>, tick: usize) -> f64 {
    src.rows().iter().map(|row| number(&row[tick])).fold(f64::NEG_INFINITY, f64::max)
}

fn one(r: &Readout, dir: &Path) -> Result<ReadoutValue, SweepError> {
    let name = r.name();
    match r {
        Readout::Pseudobulk { gene, cell_type, region, .. } => {
            let file = if region.is_some() { RunFile::TimeseriesRegions } else { RunFile::Timeseries };
            let src = Source::read(dir, file, name)?;
            let (tick, ty, cells, g) =
                (src.column("tick")?, src.column("cell_type")?, src.column("cells")?, src.column(gene)?);
            let reg = match region {
                Some(_) => Some(src.column("region")?),
                None => None,
            };
            let last = last_tick(&src, tick);
            let (mut sum, mut n) = (0.0, 0.0);
            for row in src.rows() {
                if number(&row[tick]) != last
                    || cell_type.as_ref().is_some_and(|t| &row[ty] != t)
                    || reg.zip(region.as_ref()).is_some_and(|(c, want)| &row[c] != want)
                {
                    continue;
                }
                let k = number(&row[cells]);
                if k > 0.0 {
                    sum += k * number(&row[g]);
                    n += k;
                }
            }
            Ok(if n > 0.0 { sum / n } else { f64::NAN })
        }
        Readout::CellCount { cell_type, .. } => {
            let src = Source::read(dir, RunFile::Timeseries, name)?;
            let (tick, ty, cells) = (src.column("tick")?, src.column("cell_type")?, src.column("cells")?);
            let last = last_tick(&src, tick);
            Ok(src
                .rows()
                .iter()
                .filter(|row| number(&row[tick]) == last && cell_type.as_ref().is_none_or(|t| &row[ty] == t))
                .map(|row| number(&row[cells]))
                .sum())
        }
        Readout::LigandTotal { ligand, .. } => {
            let src = Source::read(dir, RunFile::LigandTotals, name)?;
            let c = src.column(ligand)?;
            Ok(src.rows().last().map_or(f64::NAN, |row| number(&row[c])))
        }
        Readout::Response { gene, distance, .. } => {
            let file = RunFile::ResponseVsDistance;
            if !RunDir::new(dir).has(file) {
                return Err(SweepError::Readout {
                    dir: dir.to_path_buf(),
                    readout: name.into(),
                    message: format!(
                        "no `{}`: a response needs a scene with perturbations run with its paired control",
                        file.name()
                    ),
                });
            }
            let src = Source::read(dir, file, name)?;
            let (d, e) = (src.column("distance_um")?, src.column(&format!("effect_{gene}"))?);
            // Bins are written by centre; take the bin whose centre is nearest.
            Ok(src
                .rows()
                .iter()
                .min_by(|a, b| (number(&a[d]) - distance).abs().total_cmp(&(number(&b[d]) - distance).abs()))
                .map_or(f64::NAN, |row| number(&row[e])))
        }
    }
}
