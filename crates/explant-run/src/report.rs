//! `explant report`: one self-contained HTML page about a run, read through [`RunDir`].

use std::path::{Path, PathBuf};

use explant_io::{Block, Report, Section, largest_effects, write_text};

use crate::explain_charts::{draw_explain_charts, top_channels};
use crate::figures::{RenderOptions, draw_figures};
use crate::{Manifest, RunDir, RunError, RunFile, Status};

/// Rows of the largest-effects table.
const TOP_EFFECTS: usize = 15;
/// Rows (target genes) of the explanation's top-channels table.
const TOP_CHANNELS: usize = 12;

/// Draw the run's figures (into `RUN_DIR/figures`) and write the report to `out`; return
/// every path written, the page last, and notes for the user.
///
/// # Errors
///
/// When `run_dir` is not a run, its manifest or a table cannot be read, or a file cannot be
/// written.
pub fn write_report(run_dir: &Path, out: &Path) -> Result<(Vec<PathBuf>, Vec<String>), RunError> {
    let dir = RunDir::open(run_dir)?;
    let manifest = dir.manifest()?;
    let mut figures = draw_figures(run_dir, &RenderOptions::default())?;
    let scene = figures.scene.take();
    let scene_name = scene
        .as_ref()
        .map(|s| s.scene.name.clone())
        .or_else(|| manifest.scene_stem())
        .unwrap_or_else(|| run_dir.display().to_string());

    let mut sections = vec![
        Section { heading: "Run".into(), blocks: vec![Block::Facts(summary(&manifest))] },
        Section { heading: "Stage times".into(), blocks: vec![stage_table(&manifest)] },
    ];
    let mut pictures = vec![png(&figures.tissue, &figures.tissue_caption)?];
    if let Some((path, caption)) = &figures.middle_slice {
        pictures.push(png(path, caption)?);
    }
    let own = dir.path(RunFile::Picture);
    if own.exists() {
        let how = scene.as_ref().map_or(String::new(), |s| {
            let o = &s.scene.output;
            let by = o.colour_by_gene.as_deref().map_or("cell type".to_owned(), |g| format!("{g} expression"));
            let over = o.heatmap_ligand.clone().or_else(|| s.scene.ligands.first().map(|l| l.name.clone()));
            format!(": cells coloured by {by}{}", over.map(|l| format!(" over {l}")).unwrap_or_default())
        });
        pictures.push(png(&own, &format!("The run's own picture, tissue.png{how}"))?);
    }
    sections.push(Section { heading: "Tissue".into(), blocks: pictures });
    if let Some(p) = &figures.timeseries {
        let caption =
            "Pseudobulk mean expression per cell type over time (dashed: the paired control, when there is one)";
        sections.push(Section { heading: "Time series".into(), blocks: vec![svg(p, caption)?] });
    }
    if manifest.paired_control || dir.has(RunFile::Effects) {
        sections.push(response_section(&dir, figures.response.as_deref())?);
    }
    let mut explained = Vec::new();
    if dir.has(RunFile::Attribution) {
        let (section, pictures) = explain_section(&dir)?;
        sections.push(section);
        explained = pictures;
    }

    let subtitle = match &scene {
        Some(s) if !s.scene.description.is_empty() => format!("{} — {}", s.scene.description, run_dir.display()),
        _ => run_dir.display().to_string(),
    };
    let report = Report { title: format!("explant run: {scene_name}"), subtitle, sections };
    if let Some(parent) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(RunError::file("create", parent))?;
    }
    write_text(out, &report.to_html())?;
    let mut written = figures.paths();
    written.extend(explained);
    written.push(out.to_path_buf());
    Ok((written, figures.notes))
}

/// The response curve and the table of the largest effects.
fn response_section(dir: &RunDir, response: Option<&Path>) -> Result<Section, RunError> {
    let mut blocks = Vec::new();
    if let Some(p) = response {
        let caption = "Mean effect (perturbed − control) per gene against distance from the perturbation";
        blocks.push(svg(p, caption)?);
    }
    if let Some(table) = dir.table(RunFile::Effects)? {
        let top = largest_effects(&table, TOP_EFFECTS)?;
        if let Some(t) = top.first() {
            blocks.push(Block::Text(format!(
                "The largest effects at {} min, in the perturbed cells and in the nearest distance band, by |effect|:",
                number(t.time_min)
            )));
        }
        let header = ["group", "distance (µm)", "cells", "gene", "perturbed mean", "control mean", "effect"];
        let rows = top
            .iter()
            .map(|e| {
                let distance = if e.group == "perturbed" {
                    "0".to_owned()
                } else {
                    format!("{}–{}", number(e.distance_from), number(e.distance_to))
                };
                vec![
                    e.group.clone(),
                    distance,
                    e.cells.to_string(),
                    e.gene.clone(),
                    number(e.perturbed_mean),
                    number(e.control_mean),
                    number(e.effect),
                ]
            })
            .collect();
        blocks.push(Block::Table { header: header.map(String::from).to_vec(), rows });
    }
    Ok(Section { heading: "Perturbation response".into(), blocks })
}

/// The explanation (`explain/attribution.csv`): its top channels and its pictures, drawn
/// again from the table; returns the section and the pictures written.
fn explain_section(dir: &RunDir) -> Result<(Section, Vec<PathBuf>), RunError> {
    let charts = draw_explain_charts(dir)?;
    let mut blocks = vec![Block::Text(format!(
        "Which signal channel carried each effect (`explant explain`, method {}{}): for each target gene its \
         largest effect over the groups, and the channels that carry most of it.",
        charts.method,
        if charts.perturbation.is_empty() { String::new() } else { format!(", perturbation: {}", charts.perturbation) }
    ))];
    let header = ["target", "group", "total effect", "top channel", "share", "runner-up", "share"];
    blocks.push(Block::Table {
        header: header.map(String::from).to_vec(),
        rows: top_channels(&charts.rows, TOP_CHANNELS),
    });
    let mut written = Vec::new();
    if let Some((path, group)) = &charts.heatmap {
        let caption = format!(
            "Share of each target gene's effect carried by each channel in group {group} (explain/heatmap.png; \
             blue −1, white 0, red +1, grey NaN)"
        );
        blocks.push(png(path, &caption)?);
        written.push(path.clone());
    }
    for (group, path) in &charts.bars {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let caption = format!("Effect carried by each channel in group {group} (explain/{name}; ± one standard error)");
        blocks.push(png(path, &caption)?);
        written.push(path.clone());
    }
    Ok((Section { heading: "Explanation".into(), blocks }, written))
}

fn png(path: &Path, caption: &str) -> Result<Block, RunError> {
    let bytes = std::fs::read(path).map_err(RunError::file("read", path))?;
    Ok(Block::Png { caption: caption.to_owned(), bytes })
}

fn svg(path: &Path, caption: &str) -> Result<Block, RunError> {
    let svg = std::fs::read_to_string(path).map_err(RunError::file("read", path))?;
    Ok(Block::Svg { caption: caption.to_owned(), svg })
}

/// The manifest's headline facts, as (name, value).
fn summary(m: &Manifest) -> Vec<(String, String)> {
    let status = match &m.status {
        Status::Running => "running (no end recorded: the run is going or was killed)".to_owned(),
        Status::Completed => "completed".to_owned(),
        Status::Failed { stage, tick, message } => format!("failed in {stage} at tick {tick}: {message}"),
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    [
        ("scene file", m.scene.clone()),
        ("status", status),
        ("explant version", m.explant_version.clone()),
        ("git commit", m.git_commit.clone()),
        ("seed", m.seed.to_string()),
        ("cells (final)", m.cells.to_string()),
        ("simulated time", format!("{} min", number(m.time_min))),
        ("ticks", format!("{} of {}", m.ticks_completed, m.ticks_planned)),
        ("wall time", format!("{:.2} s", m.wall_seconds)),
        ("diffusion backend", m.diffusion_backend.clone()),
        ("response model", m.response_model.clone()),
        ("threads", m.threads.to_string()),
        ("paired control", yes_no(m.paired_control)),
        ("command line", m.command_line.join(" ")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The manifest's stage times in tick order (stages this build does not know last).
fn stage_table(m: &Manifest) -> Block {
    let header = ["stage", "total (s)", "per tick (ms)", "share (%)"].map(String::from).to_vec();
    let stages = m.stages_in_order();
    if stages.is_empty() {
        return Block::Text("The manifest records no stage times.".into());
    }
    let total: f64 = stages.iter().map(|(_, s)| s).sum();
    let ticks = Some(m.ticks_completed as f64).filter(|&t| t > 0.0);
    let rows = stages
        .iter()
        .map(|(n, s)| {
            let per_tick = ticks.map_or_else(|| "–".to_owned(), |t| format!("{:.3}", 1e3 * s / t));
            let share = if total > 0.0 { format!("{:.1}", 100.0 * s / total) } else { "–".to_owned() };
            vec![n.clone(), format!("{s:.3}"), per_tick, share]
        })
        .collect();
    Block::Table { header, rows }
}
/// A number with four significant digits, without trailing zeros; scientific outside
/// 10⁻³…10⁶.
fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".to_owned() } else { v.to_string() };
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(1.2754042252563522), "1.275");
        assert_eq!(number(-0.14197608049781973), "-0.142");
        assert_eq!(number(360.0), "360");
        assert_eq!(number(12345.678), "12346");
        assert_eq!(number(2.5e-5), "2.500e-5");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "inf");
    }

    #[test]
    fn stages_come_in_tick_order() {
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "explant_version": "0", "git_commit": "x", "command_line": [], "scene": "s.toml",
            "scene_fnv1a64": "0", "seed": 1, "status": "completed", "ticks_completed": 10,
            "ticks_planned": 10, "dt_min": 1.0, "time_min": 10.0, "cells": 1,
            "diffusion_backend": "cpu", "response_model": "teacher", "threads": 1,
            "wall_seconds": 1.0, "paired_control": false,
            "stage_seconds": { "zeta": 1.0, "record": 0.5, "secrete": 0.5 }
        }))
        .unwrap();
        let Block::Table { rows, .. } = stage_table(&m) else { panic!("a table") };
        let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(names, ["secrete", "record", "zeta"]);
        assert_eq!(rows[2][2], "100.000");
        assert_eq!(rows[2][3], "50.0");
    }
}
