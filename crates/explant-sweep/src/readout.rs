//! Readouts: named summaries read back from a finished run's files.

use std::path::Path;

use crate::{Readout, SweepError, SweepSpec};

/// A readout's value (NaN when the run has no such data, e.g. no cells of the type).
pub type ReadoutValue = f64;

/// A CSV file as a header and rows (explant's own outputs: no quoted fields).
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn read(dir: &Path, file: &str, readout: &str) -> Result<Self, SweepError> {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| SweepError::Readout {
            dir: dir.to_path_buf(),
            readout: readout.into(),
            message: format!("cannot read `{file}`: {e}"),
        })?;
        let mut lines = text.lines();
        let header: Vec<String> = lines.next().unwrap_or("").split(',').map(String::from).collect();
        let mut rows = Vec::new();
        for (k, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
            let row: Vec<String> = line.split(',').map(String::from).collect();
            if row.len() != header.len() {
                return Err(SweepError::Readout {
                    dir: dir.to_path_buf(),
                    readout: readout.into(),
                    message: format!(
                        "`{file}` line {}: {} fields where the header has {} (a damaged file?)",
                        k + 2,
                        row.len(),
                        header.len()
                    ),
                });
            }
            rows.push(row);
        }
        Ok(Self { header, rows })
    }

    fn column(&self, name: &str, dir: &Path, file: &str, readout: &str) -> Result<usize, SweepError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| SweepError::Readout {
            dir: dir.to_path_buf(),
            readout: readout.into(),
            message: format!("`{file}` has no column `{name}` (columns: {})", self.header.join(", ")),
        })
    }
}

fn number(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

/// Every readout of the spec for the run in `dir`, in the spec's order.
pub fn readouts(spec: &SweepSpec, dir: &Path) -> Result<Vec<ReadoutValue>, SweepError> {
    spec.readouts.iter().map(|r| one(r, dir)).collect()
}

fn one(r: &Readout, dir: &Path) -> Result<ReadoutValue, SweepError> {
    let name = r.name();
    match r {
        Readout::Pseudobulk { gene, cell_type, region, .. } => {
            let file = if region.is_some() { "timeseries_regions.csv" } else { "timeseries.csv" };
            let csv = Csv::read(dir, file, name)?;
            let (tick, ty, cells, g) = (
                csv.column("tick", dir, file, name)?,
                csv.column("cell_type", dir, file, name)?,
                csv.column("cells", dir, file, name)?,
                csv.column(gene, dir, file, name)?,
            );
            let reg = match region {
                Some(_) => Some(csv.column("region", dir, file, name)?),
                None => None,
            };
            let last = csv.rows.iter().map(|row| number(&row[tick])).fold(f64::NEG_INFINITY, f64::max);
            let (mut sum, mut n) = (0.0, 0.0);
            for row in &csv.rows {
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
            let file = "timeseries.csv";
            let csv = Csv::read(dir, file, name)?;
            let (tick, ty, cells) = (
                csv.column("tick", dir, file, name)?,
                csv.column("cell_type", dir, file, name)?,
                csv.column("cells", dir, file, name)?,
            );
            let last = csv.rows.iter().map(|row| number(&row[tick])).fold(f64::NEG_INFINITY, f64::max);
            Ok(csv
                .rows
                .iter()
                .filter(|row| number(&row[tick]) == last && cell_type.as_ref().is_none_or(|t| &row[ty] == t))
                .map(|row| number(&row[cells]))
                .sum())
        }
        Readout::LigandTotal { ligand, .. } => {
            let file = "ligand_totals.csv";
            let csv = Csv::read(dir, file, name)?;
            let c = csv.column(ligand, dir, file, name)?;
            Ok(csv.rows.last().map_or(f64::NAN, |row| number(&row[c])))
        }
        Readout::Response { gene, distance, .. } => {
            let file = "response_vs_distance.csv";
            if !dir.join(file).exists() {
                return Err(SweepError::Readout {
                    dir: dir.to_path_buf(),
                    readout: name.into(),
                    message: format!(
                        "no `{file}`: a response needs a scene with perturbations run with its paired control"
                    ),
                });
            }
            let csv = Csv::read(dir, file, name)?;
            let (d, e) =
                (csv.column("distance_um", dir, file, name)?, csv.column(&format!("effect_{gene}"), dir, file, name)?);
            // Bins are written by centre; take the bin whose centre is nearest.
            Ok(csv
                .rows
                .iter()
                .min_by(|a, b| (number(&a[d]) - distance).abs().total_cmp(&(number(&b[d]) - distance).abs()))
                .map_or(f64::NAN, |row| number(&row[e])))
        }
    }
}
