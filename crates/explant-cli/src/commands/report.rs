//! `explant report`: one self-contained HTML page about a run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use explant_core::Stage;
use explant_io::{Block, Report, Section, largest_effects, read_csv, write_text};
use serde_json::Value;

use super::render::{RenderOptions, check_run_dir, draw_figures};
use crate::cli::ReportArgs;

/// Rows of the largest-effects table.
const TOP_EFFECTS: usize = 15;

/// `explant report`: draw the figures (into `RUN_DIR/figures`), then write the page.
pub fn report(args: ReportArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| args.run_dir.join("report.html"));
    for p in write_report(&args.run_dir, &out)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Draw the run's figures and write the report to `out`; return every path written.
fn write_report(run_dir: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    check_run_dir(run_dir)?;
    let manifest_path = run_dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read `{}`", manifest_path.display()))?;
    let manifest: Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", manifest_path.display()))?;

    let mut figures = draw_figures(run_dir, &RenderOptions::default())?;
    let scene = figures.scene.take();
    let scene_name = scene.as_ref().map(|s| s.scene.name.clone()).unwrap_or_else(|| {
        let path = manifest["scene"].as_str().unwrap_or_default();
        Path::new(path).file_stem().map_or_else(|| run_dir.display().to_string(), |s| s.to_string_lossy().into_owned())
    });

    let mut sections = vec![Section { heading: "Run".into(), blocks: vec![Block::Facts(summary(&manifest))] }];
    sections.push(Section { heading: "Stage times".into(), blocks: vec![stage_table(&manifest)] });

    let mut pictures = vec![png(&figures.tissue, &figures.tissue_caption)?];
    let own = run_dir.join("tissue.png");
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

    let effects_path = run_dir.join("effects.csv");
    let paired = manifest["paired_control"].as_bool().unwrap_or(false) || effects_path.exists();
    if paired {
        let mut blocks = Vec::new();
        if let Some(p) = &figures.response {
            let caption = "Mean effect (perturbed − control) per gene against distance from the perturbation";
            blocks.push(svg(p, caption)?);
        }
        if effects_path.exists() {
            let top = largest_effects(&read_csv(&effects_path)?, TOP_EFFECTS)?;
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
        sections.push(Section { heading: "Perturbation response".into(), blocks });
    }

    let subtitle = match &scene {
        Some(s) if !s.scene.description.is_empty() => format!("{} — {}", s.scene.description, run_dir.display()),
        _ => run_dir.display().to_string(),
    };
    let report = Report { title: format!("explant run: {scene_name}"), subtitle, sections };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    write_text(out, &report.to_html())?;
    let mut written: Vec<PathBuf> =
        std::iter::once(figures.tissue).chain(figures.timeseries).chain(figures.response).collect();
    written.push(out.to_path_buf());
    Ok(written)
}

fn png(path: &Path, caption: &str) -> Result<Block> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    Ok(Block::Png { caption: caption.to_owned(), bytes })
}

fn svg(path: &Path, caption: &str) -> Result<Block> {
    let svg = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    Ok(Block::Svg { caption: caption.to_owned(), svg })
}

/// The manifest's headline facts, as (name, value); absent entries read `unknown`.
fn summary(m: &Value) -> Vec<(String, String)> {
    let text = |key: &str| match &m[key] {
        Value::Null => "unknown".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), number),
        other => other.to_string(),
    };
    let ticks = match (&m["ticks_completed"], &m["ticks_planned"], &m["ticks"]) {
        (Value::Number(done), Value::Number(planned), _) => format!("{done} of {planned}"),
        (_, _, Value::Number(t)) => t.to_string(),
        _ => "unknown".to_owned(),
    };
    let wall = m["wall_seconds"].as_f64().map_or_else(|| "unknown".to_owned(), |s| format!("{s:.2} s"));
    let command = m["command_line"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default()).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned());
    [
        ("scene file", text("scene")),
        ("status", text("status")),
        ("explant version", text("explant_version")),
        ("git commit", text("git_commit")),
        ("seed", text("seed")),
        ("cells (final)", text("cells")),
        ("simulated time", format!("{} min", text("time_min"))),
        ("ticks", ticks),
        ("wall time", wall),
        ("diffusion backend", text("diffusion_backend")),
        ("response model", text("response_model")),
        ("threads", text("threads")),
        ("paired control", text("paired_control")),
        ("command line", command),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The manifest's `stage_seconds` in tick order (stages this build does not know last).
fn stage_table(m: &Value) -> Block {
    let header = ["stage", "total (s)", "per tick (ms)", "share (%)"].map(String::from).to_vec();
    let Some(stages) = m["stage_seconds"].as_object() else {
        return Block::Text("The manifest records no stage times.".into());
    };
    let mut names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).filter(|n| stages.contains_key(*n)).collect();
    names.extend(stages.keys().map(String::as_str).filter(|k| !names.contains(k)).collect::<Vec<_>>());
    let total: f64 = stages.values().filter_map(Value::as_f64).sum();
    let ticks = m["ticks_completed"].as_f64().or_else(|| m["ticks"].as_f64()).filter(|&t| t > 0.0);
    let rows = names
        .iter()
        .map(|n| {
            let s = stages[*n].as_f64().unwrap_or(f64::NAN);
            let per_tick = ticks.map_or_else(|| "–".to_owned(), |t| format!("{:.3}", 1e3 * s / t));
            let share = if total > 0.0 { format!("{:.1}", 100.0 * s / total) } else { "–".to_owned() };
            vec![(*n).to_owned(), format!("{s:.3}"), per_tick, share]
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
        let m = serde_json::json!({
            "ticks_completed": 10,
            "stage_seconds": { "zeta": 1.0, "record": 0.5, "secrete": 0.5 }
        });
        let Block::Table { rows, .. } = stage_table(&m) else { panic!("a table") };
        let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(names, ["secrete", "record", "zeta"]);
        assert_eq!(rows[2][2], "100.000");
        assert_eq!(rows[2][3], "50.0");
    }
}
