//! `explant sweep report`: each parameter's effect on each readout.

use std::path::{Path, PathBuf};

use explant_io::{LinePlot, Series, panels_svg};
use explant_run::tables::{TableData, read_table, write_table};

use crate::{SweepError, SweepSpec};

/// For every parameter and readout of the sweep in `dir`, the mean readout at each
/// parameter value and Spearman's rank correlation across completed runs, as
/// `sweep_report.csv`, and one plot per readout as `sweep_report.svg`; returns both paths.
///
/// # Errors
///
/// When `dir` is not a sweep directory, has no results table or no completed run, or a
/// file cannot be written.
pub fn report(dir: &Path) -> Result<(PathBuf, PathBuf), SweepError> {
    let spec_path = dir.join("sweep.toml");
    let spec = SweepSpec::from_file(&spec_path).map_err(|e| {
        SweepError::Stopped(format!("`{}` is not a sweep directory: {}", dir.display(), explant_run::error_chain(&e)))
    })?;
    let results = dir.join("results.csv");
    if !results.exists() {
        return Err(SweepError::Stopped(format!(
            "no results.csv in `{}`: run or collect the sweep first",
            dir.display()
        )));
    }
    let table = read_table(&results)?;
    let col = |name: &str| table.header.iter().position(|h| h == name);
    let status = col("status");
    let rows: Vec<&Vec<String>> =
        table.rows.iter().filter(|r| status.and_then(|c| r.get(c)).is_some_and(|s| s == "completed")).collect();
    if rows.is_empty() {
        return Err(SweepError::Stopped(format!("`{}/results.csv` has no completed run", dir.display())));
    }
    let mut out =
        TableData::new(["parameter", "readout", "value", "runs", "mean", "sd", "spearman_rho"].map(String::from));
    let mut plots = Vec::new();
    for r in &spec.readouts {
        let Some(rc) = col(r.name()) else { continue };
        let mut series = Vec::new();
        for p in &spec.parameters {
            let Some(pc) = col(&p.path) else { continue };
            let pairs: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|row| Some((row.get(pc)?.parse::<f64>().ok()?, row.get(rc)?.parse::<f64>().ok()?)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            let rho = spearman(&pairs);
            let mut points = Vec::new();
            for (v, n, mean, sd) in means_by_value(&pairs) {
                out.rows.push(vec![
                    p.path.clone(),
                    r.name().to_owned(),
                    v.to_string(),
                    n.to_string(),
                    mean.to_string(),
                    sd.to_string(),
                    rho.to_string(),
                ]);
                points.push((v, mean));
            }
            series.push(Series { name: format!("{} (ρ = {rho:.2})", p.path), points, dashed: false, colour: None });
        }
        plots.push(LinePlot {
            title: r.name().to_string(),
            x_label: "parameter value".into(),
            y_label: format!("mean {}", r.name()),
            series,
        });
    }
    let csv = dir.join("sweep_report.csv");
    write_table(&csv, &out)?;
    let svg = dir.join("sweep_report.svg");
    std::fs::write(&svg, panels_svg(&plots, 2)).map_err(SweepError::file("write", &svg))?;
    Ok((csv, svg))
}

/// Mean and sd of the readout at each distinct parameter value: (value, runs, mean, sd).
fn means_by_value(pairs: &[(f64, f64)]) -> Vec<(f64, usize, f64, f64)> {
    let mut values: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
        .into_iter()
        .map(|v| {
            let ys: Vec<f64> = pairs.iter().filter(|p| p.0 == v).map(|p| p.1).collect();
            let mean = ys.iter().sum::<f64>() / ys.len() as f64;
            let sd = (ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (ys.len().max(2) - 1) as f64).sqrt();
            (v, ys.len(), mean, sd)
        })
        .collect()
}
/// Spearman's rank correlation of the pairs ([`explant_run::stats::spearman`]).
fn spearman(pairs: &[(f64, f64)]) -> f64 {
    explant_run::stats::spearman(pairs)
}

#[cfg(test)]
mod tests {
    use super::spearman;

    #[test]
    fn spearman_of_monotone_and_reversed_data() {
        let up: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, (i as f64).powi(3))).collect();
        assert!((spearman(&up) - 1.0).abs() < 1e-12);
        let down: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, -(i as f64))).collect();
        assert!((spearman(&down) + 1.0).abs() < 1e-12);
        assert!(spearman(&[(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)]).is_nan());
    }
}
