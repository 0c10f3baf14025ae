//! The run's tables: one writer and one reader for every CSV file a run or a sweep
//! writes, through the `csv` crate, so names with commas or quotes (a Cell Ontology label
//! such as "CD8-positive, alpha-beta T cell") round-trip.
//!
//! Numbers are written with Rust's shortest round-trip formatting (`{}`), so a value read
//! back parses to the same float.

use std::path::Path;

use explant_core::effects::{DistanceBin, EffectRow};
use explant_core::{PseudobulkRow, Recording};
pub use explant_io::Table;
use explant_scene::Scene;

use crate::RunError;

/// A table about to be written: a header and rows of text, each as long as the header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableData {
    /// Column names.
    pub header: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<String>>,
}

impl TableData {
    /// An empty table with these columns.
    pub fn new(header: impl IntoIterator<Item = String>) -> Self {
        Self { header: header.into_iter().collect(), rows: Vec::new() }
    }
}

/// Read a CSV table written by explant (quoted fields allowed; blank lines skipped).
///
/// # Errors
///
/// [`RunError::File`] when it cannot be read, [`RunError::Table`] naming the line when it
/// is empty or a row has another number of fields than the header.
pub fn read_table(path: &Path) -> Result<Table, RunError> {
    let bytes = std::fs::read(path).map_err(RunError::file("read", path))?;
    let bad = |message: String| RunError::Table { path: path.to_path_buf(), message };
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).flexible(true).from_reader(bytes.as_slice());
    let header: Vec<String> = reader.headers().map_err(|e| bad(e.to_string()))?.iter().map(String::from).collect();
    if header.iter().all(String::is_empty) {
        return Err(bad("line 1: no header (expected comma-separated column names)".into()));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1 && record.get(0).is_some_and(str::is_empty) {
            continue;
        }
        if record.len() != header.len() {
            return Err(bad(format!(
                "line {line}: {} fields where the header has {} (a damaged file?)",
                record.len(),
                header.len()
            )));
        }
        rows.push(record.iter().map(String::from).collect());
    }
    Ok(Table { path: path.to_path_buf(), header, rows })
}

/// A table as CSV text (fields quoted only where needed, `\n` line ends).
///
/// # Errors
///
/// Only if the text is not UTF-8, which cannot happen for `String` fields.
pub fn csv_text(table: &TableData) -> Result<String, csv::Error> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(&table.header)?;
    for row in &table.rows {
        w.write_record(row)?;
    }
    let bytes = w.into_inner().map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))?;
    String::from_utf8(bytes).map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))
}

/// Write a table as CSV ([`csv_text`]), through a temporary file renamed into place.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_table(path: &Path, table: &TableData) -> Result<(), RunError> {
    let text = csv_text(table).map_err(|e| RunError::Table { path: path.to_path_buf(), message: e.to_string() })?;
    explant_io::write_text(path, &text)?;
    Ok(())
}

fn pseudobulk_cells(scene: &Scene, row: &PseudobulkRow) -> impl Iterator<Item = String> {
    [row.tick.to_string(), row.time.to_string()]
        .into_iter()
        .chain(std::iter::once(scene.cell_types[row.cell_type as usize].name.clone()))
        .chain(std::iter::once(row.cells.to_string()))
}

/// `timeseries.csv` (and `timeseries_control.csv`): `tick,time_min,cell_type,cells,GENE…`,
/// the pseudobulk mean of each gene by cell type at every recorded time.
pub fn timeseries(scene: &Scene, rec: &Recording) -> TableData {
    let mut t = TableData::new(
        ["tick", "time_min", "cell_type", "cells"].map(String::from).into_iter().chain(scene.genes.iter().cloned()),
    );
    for row in &rec.pseudobulk {
        t.rows.push(pseudobulk_cells(scene, row).chain(row.mean.iter().map(f64::to_string)).collect());
    }
    t
}

/// `timeseries_regions.csv`: `tick,time_min,region,cell_type,cells,GENE…`; `None` when the
/// scene names no regions.
pub fn regions(scene: &Scene, rec: &Recording) -> Option<TableData> {
    if rec.regions.is_empty() {
        return None;
    }
    let mut t = TableData::new(
        ["tick", "time_min", "region", "cell_type", "cells"]
            .map(String::from)
            .into_iter()
            .chain(scene.genes.iter().cloned()),
    );
    for r in &rec.regional {
        let row = &r.row;
        let mut cells = vec![row.tick.to_string(), row.time.to_string(), rec.regions[r.region].name.clone()];
        cells.push(scene.cell_types[row.cell_type as usize].name.clone());
        cells.push(row.cells.to_string());
        cells.extend(row.mean.iter().map(f64::to_string));
        t.rows.push(cells);
    }
    Some(t)
}

/// `ligand_totals.csv`: `tick,time_min,LIGAND…`, each ligand's total on the grid.
pub fn ligand_totals(scene: &Scene, rec: &Recording) -> TableData {
    let mut t = TableData::new(
        ["tick", "time_min"].map(String::from).into_iter().chain(scene.ligands.iter().map(|l| l.name.clone())),
    );
    for (tick, time, totals) in &rec.ligand_totals {
        t.rows
            .push([tick.to_string(), time.to_string()].into_iter().chain(totals.iter().map(f64::to_string)).collect());
    }
    t
}

/// `effects.csv`: `time_min,group,distance_from_um,distance_to_um,cells,gene,perturbed_mean,control_mean,effect`.
pub fn effects(scene: &Scene, time_min: f64, rows: &[EffectRow]) -> TableData {
    let mut t = TableData::new(
        [
            "time_min",
            "group",
            "distance_from_um",
            "distance_to_um",
            "cells",
            "gene",
            "perturbed_mean",
            "control_mean",
            "effect",
        ]
        .map(String::from),
    );
    for r in rows {
        t.rows.push(vec![
            time_min.to_string(),
            r.group.to_string(),
            r.from.to_string(),
            r.to.to_string(),
            r.cells.to_string(),
            scene.genes[r.gene].clone(),
            r.perturbed_mean.to_string(),
            r.control_mean.to_string(),
            r.effect.to_string(),
        ]);
    }
    t
}

/// `response_vs_distance.csv`: `distance_um,cells,effect_GENE…,abs_effect_GENE…`.
pub fn response_vs_distance(scene: &Scene, bins: &[DistanceBin]) -> TableData {
    let header = ["distance_um", "cells"]
        .map(String::from)
        .into_iter()
        .chain(scene.genes.iter().map(|g| format!("effect_{g}")))
        .chain(scene.genes.iter().map(|g| format!("abs_effect_{g}")));
    let mut t = TableData::new(header);
    for b in bins {
        t.rows.push(
            [b.distance.to_string(), b.cells.to_string()]
                .into_iter()
                .chain(b.effect.iter().chain(&b.magnitude).map(ToString::to_string))
                .collect(),
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("explant-tables-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn names_with_commas_and_quotes_round_trip() {
        let dir = temp("roundtrip");
        let path = dir.join("t.csv");
        let name = "CD8-positive, alpha-beta T cell";
        let quoted = "the \"odd\" one";
        let data = TableData {
            header: vec!["cell_type".into(), "n".into(), quoted.into()],
            rows: vec![vec![name.into(), "3".into(), "0.1".into()], vec![quoted.into(), "4".into(), "NaN".into()]],
        };
        write_table(&path, &data).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"CD8-positive, alpha-beta T cell\""), "{text}");
        let back = read_table(&path).unwrap();
        assert_eq!(back.header, data.header);
        assert_eq!(back.rows, data.rows);
        assert!(back.number(1, 2).unwrap().is_nan());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plain_tables_are_written_byte_for_byte_as_before() {
        // The format every earlier explant wrote: no quotes, `\n` line ends.
        let dir = temp("plain");
        let path = dir.join("t.csv");
        let data = TableData {
            header: vec!["tick".into(), "A".into()],
            rows: vec![vec!["0".into(), 0.5f64.to_string()], vec!["10".into(), 1e-7f32.to_string()]],
        };
        write_table(&path, &data).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tick,A\n0,0.5\n10,0.0000001\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_short_row_is_refused_with_its_line() {
        let dir = temp("short");
        let path = dir.join("ligand_totals.csv");
        std::fs::write(&path, "tick,time_min,L\n0,0,1.5\n10,5\n").unwrap();
        let e = read_table(&path).unwrap_err().to_string();
        assert!(e.contains("ligand_totals.csv` line 3: 2 fields where the header has 3"), "{e}");
        std::fs::write(&path, "a,b\n1,2\n3\n").unwrap();
        let e = read_table(&path).unwrap_err().to_string();
        assert!(e.contains("line 3: 1 fields where the header has 2"), "{e}");
        for empty in ["", "\n"] {
            std::fs::write(&path, empty).unwrap();
            let e = read_table(&path).unwrap_err().to_string();
            assert!(e.contains("no header"), "{empty:?}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
