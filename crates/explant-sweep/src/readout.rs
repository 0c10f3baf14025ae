//! Readouts: named summaries read back from a finished run's tables, through the run
//! library's one reader ([`explant_run::RunDir::table`]).

use std::path::Path;

use explant_run::{RunDir, RunFile, tables::Table};
use explant_scene::Scene;

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

/// Check every readout of the spec against what a run of `scene` will write: its genes,
/// ligands, cell types and named regions, and a paired control for a `response`. `which`
/// names the scene in messages (`the base scene `…``, `the scene of point run_00003`).
///
/// # Errors
///
/// [`SweepError::Invalid`] naming the spec file, the readout's field and the bad value,
/// with a "did you mean" when a name is close to one that exists.
pub(crate) fn check(spec: &SweepSpec, spec_path: &Path, scene: &Scene, which: &str) -> Result<(), SweepError> {
    let genes = &scene.genes;
    let ligands: Vec<String> = scene.ligands.iter().map(|l| l.name.clone()).collect();
    let cell_types: Vec<String> = scene.cell_types.iter().map(|c| c.name.clone()).collect();
    let regions: Vec<String> = scene.output.regions.iter().map(|r| r.name.clone()).collect();
    for (i, r) in spec.readouts.iter().enumerate() {
        let bad = |field: &str, message: String| SweepError::Invalid {
            path: spec_path.into(),
            field: format!("readouts[{i}].{field}"),
            message,
        };
        let one_of = |field: &str, what: &str, value: &str, names: &[String]| {
            if names.iter().any(|n| n == value) {
                return Ok(());
            }
            let known = if names.is_empty() { "none".to_string() } else { names.join(", ") };
            Err(bad(
                field,
                format!(
                    "`{value}` is not a {what} of {which} ({what}s: {known}){}",
                    explant_scene::suggest(value, names)
                ),
            ))
        };
        match r {
            Readout::Pseudobulk { gene, cell_type, region, .. } => {
                one_of("gene", "gene", gene, genes)?;
                if let Some(t) = cell_type {
                    one_of("cell_type", "cell type", t, &cell_types)?;
                }
                if let Some(g) = region {
                    one_of("region", "region", g, &regions)?;
                }
            }
            Readout::CellCount { cell_type, .. } => {
                if let Some(t) = cell_type {
                    one_of("cell_type", "cell type", t, &cell_types)?;
                }
            }
            Readout::LigandTotal { ligand, .. } => one_of("ligand", "ligand", ligand, &ligands)?,
            Readout::Response { gene, .. } => {
                one_of("gene", "gene", gene, genes)?;
                if scene.perturbations.is_empty() {
                    return Err(bad(
                        "kind",
                        format!(
                            "`response` needs perturbations (the effect is measured against the paired control), \
                             and {which} has none"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
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
