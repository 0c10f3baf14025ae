//! Pictures of an explanation, drawn from `explain/attribution.csv` (so `explant explain`
//! and `explant report` draw the same bytes from the same table). A table of
//! `--method gradients` also holds the ablation's rows, after its own: the pictures and
//! the report show the rows of the table's first method only.
//!
//! - `explain/heatmap.png`: channels (rows) × target genes (columns) of one group, coloured
//!   by share (diverging map, clipped to [−1, 1], NaN grey). The group shown is the one
//!   whose effects travel most through channels: the largest sum of |effect| over its
//!   channel rows (Shapley's `direct` and the gradients' `residual` rows excluded), the first in table order on a tie;
//!   when no channel carries anything, `perturbed` (else the first group). For a knockout
//!   this is usually a band or cell type around the perturbed cells, not the perturbed
//!   cells themselves, whose own change travels through no channel.
//! - `explain/bars_<GROUP>.png` for every group (`<GROUP>` with every character other
//!   than ASCII letters, digits, `-` and `.` replaced by `_`): for each target gene whose
//!   total effect is finite and non-zero, one bar per channel of its signed effect, with
//!   ± one standard error (the share's error times |total|) when the method gives one.

use std::path::PathBuf;

use explant_io::{Bar, BarChart, BarPanel, HeatMap, Table, bars_png, heatmap_png};
use explant_scene::LoadedScene;

use crate::explain::DIRECT;
use crate::explain_gradients::RESIDUAL;
use crate::{RunDir, RunError, RunFile};

/// One row of `attribution.csv`, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributionRow {
    /// Target gene.
    pub target: String,
    /// Group of cells.
    pub group: String,
    /// Channel (or `direct`).
    pub channel: String,
    /// Total effect of the (target, group).
    pub total: f64,
    /// Effect carried by the channel.
    pub effect: f64,
    /// `effect / total`.
    pub share: f64,
    /// Standard error of the share, when the method gives one.
    pub standard_error: Option<f64>,
    /// `ablation`, `shapley` or `gradients`.
    pub method: String,
}

/// What [`draw_explain_charts`] wrote.
#[derive(Debug, Clone)]
pub struct ExplainCharts {
    /// The rows of `attribution.csv` of its first method.
    pub rows: Vec<AttributionRow>,
    /// The heat map, and the group it shows.
    pub heatmap: Option<(PathBuf, String)>,
    /// One bar chart per group: the group and its file.
    pub bars: Vec<(String, PathBuf)>,
    /// The method of the rows shown (the table's first).
    pub method: String,
    /// The scene's perturbations in words (empty when the scene cannot be read).
    pub perturbation: String,
}

/// Read the rows of an `attribution.csv` table.
///
/// # Errors
///
/// When a column is missing or a number does not parse (the message names the line).
pub fn attribution_rows(table: &Table) -> Result<Vec<AttributionRow>, RunError> {
    let col = |n| table.column(n);
    let (t, g, c, tot, e, s, se, m) = (
        col("target")?,
        col("group")?,
        col("channel")?,
        col("total_effect")?,
        col("effect")?,
        col("share")?,
        col("standard_error")?,
        col("method")?,
    );
    (0..table.rows.len())
        .map(|r| {
            let row = &table.rows[r];
            Ok(AttributionRow {
                target: row[t].clone(),
                group: row[g].clone(),
                channel: row[c].clone(),
                total: table.number(r, tot)?,
                effect: table.number(r, e)?,
                share: table.number(r, s)?,
                standard_error: if row[se].is_empty() { None } else { Some(table.number(r, se)?) },
                method: row[m].clone(),
            })
        })
        .collect()
}

/// `name` with every character but ASCII letters, digits, `-` and `.` replaced by `_`.
pub fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

/// Names in order of first appearance.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The group the heat map shows (module docs).
pub fn heatmap_group(rows: &[AttributionRow]) -> Option<String> {
    let groups = distinct(rows.iter().map(|r| r.group.as_str()));
    let carried = |g: &str| -> f64 {
        rows.iter()
            .filter(|r| r.group == g && r.channel != DIRECT && r.channel != RESIDUAL && r.effect.is_finite())
            .map(|r| r.effect.abs())
            .sum()
    };
    let mut best: Option<(&str, f64)> = None;
    for g in &groups {
        let c = carried(g);
        if c > best.map_or(0.0, |b| b.1) {
            best = Some((g, c));
        }
    }
    best.map(|b| b.0)
        .or_else(|| groups.iter().copied().find(|g| *g == "perturbed"))
        .or_else(|| groups.first().copied())
        .map(str::to_owned)
}

/// The scene's perturbations in words, e.g. `knockout WNT3A in organiser`.
fn perturbation_words(dir: &RunDir) -> String {
    let path = dir.path(RunFile::Scene);
    let Some(scene) = std::fs::read_to_string(&path).ok().and_then(|t| LoadedScene::from_str(&t, &path).ok()) else {
        return String::new();
    };
    let words: Vec<String> = scene
        .scene
        .perturbations
        .iter()
        .map(|p| {
            let mut w = p.kind.name().to_owned();
            if let Some(x) = p.gene.as_ref().or(p.ligand.as_ref()) {
                w.push(' ');
                w.push_str(x);
            }
            if let Some(t) = &p.cell_type {
                w.push_str(" in ");
                w.push_str(t);
            }
            w
        })
        .collect();
    words.join("; ")
}

/// Draw the heat map and the bar charts of the explanation in `dir/explain/` (module docs).
/// Nothing is drawn for an empty table.
///
/// # Errors
///
/// When `attribution.csv` is missing or malformed, or a picture cannot be written.
pub fn draw_explain_charts(dir: &RunDir) -> Result<ExplainCharts, RunError> {
    let table = dir.require_table(RunFile::Attribution, "the explanation to draw")?;
    let mut rows = attribution_rows(&table)?;
    if let Some(first) = rows.first().map(|r| r.method.clone()) {
        rows.retain(|r| r.method == first);
    }
    let method = distinct(rows.iter().map(|r| r.method.as_str())).join(", ");
    let perturbation = perturbation_words(dir);
    let mut charts = ExplainCharts { rows: Vec::new(), heatmap: None, bars: Vec::new(), method, perturbation };
    let Some(group) = heatmap_group(&rows) else {
        charts.rows = rows;
        return Ok(charts);
    };
    let mut title = vec![format!("share of the effect, group {group}"), format!("method {}", charts.method)];
    if !charts.perturbation.is_empty() {
        title.push(format!("perturbation: {}", charts.perturbation));
    }
    let mine: Vec<&AttributionRow> = rows.iter().filter(|r| r.group == group).collect();
    let channels: Vec<String> =
        distinct(mine.iter().map(|r| r.channel.as_str())).into_iter().map(String::from).collect();
    let targets: Vec<String> = distinct(mine.iter().map(|r| r.target.as_str())).into_iter().map(String::from).collect();
    let mut values = Vec::with_capacity(channels.len() * targets.len());
    for c in &channels {
        for t in &targets {
            values.push(mine.iter().find(|r| &r.channel == c && &r.target == t).map_or(f64::NAN, |r| r.share));
        }
    }
    let path = dir.path(RunFile::AttributionHeatmap);
    heatmap_png(&path, &HeatMap { title, rows: channels, columns: targets, values })?;
    charts.heatmap = Some((path, group));

    let mut used: Vec<String> = Vec::new();
    for g in distinct(rows.iter().map(|r| r.group.as_str())) {
        let mut stem = file_safe(g);
        while used.contains(&stem) {
            stem.push('_');
        }
        used.push(stem.clone());
        let in_group: Vec<&AttributionRow> = rows.iter().filter(|r| r.group == g).collect();
        let mut moved: Vec<(&str, f64)> = distinct(in_group.iter().map(|r| r.target.as_str()))
            .into_iter()
            .filter_map(|t| {
                let total = in_group.iter().find(|r| r.target == t).map_or(0.0, |r| r.total);
                (total.is_finite() && total != 0.0).then_some((t, total))
            })
            .collect();
        let genes_moved = moved.len();
        // A readable picture: the genes that moved most, each with its strongest channels
        // (the rest summed in one bar); attribution.csv keeps every row.
        moved.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        moved.truncate(MAX_PANELS);
        let mut trimmed = false;
        let panels = moved
            .iter()
            .map(|&(t, total)| {
                let mut of_t: Vec<&&AttributionRow> = in_group.iter().filter(|r| r.target == t).collect();
                let mut bars: Vec<Bar> = Vec::new();
                if of_t.len() > MAX_BARS {
                    trimmed = true;
                    of_t.sort_by(|a, b| b.effect.abs().total_cmp(&a.effect.abs()));
                    let rest: f64 = of_t[MAX_BARS - 1..].iter().map(|r| r.effect).sum();
                    let others = of_t.len() - (MAX_BARS - 1);
                    of_t.truncate(MAX_BARS - 1);
                    bars.push(Bar { label: format!("{others} other channels"), value: rest, error: None });
                }
                let mut shown: Vec<Bar> = of_t
                    .iter()
                    .map(|r| Bar {
                        label: r.channel.clone(),
                        value: r.effect,
                        error: r.standard_error.map(|se| se * total.abs()),
                    })
                    .collect();
                shown.append(&mut bars);
                BarPanel { title: format!("{t}: total effect {}", short(total)), bars: shown }
            })
            .collect::<Vec<_>>();
        let mut title = vec![format!("effect carried by each channel, group {g}"), format!("method {}", charts.method)];
        if panels.is_empty() {
            title.push("no target gene moved in this group".into());
        }
        if genes_moved > panels.len() || trimmed {
            title.push(format!(
                "the {} of {genes_moved} genes that moved most, up to {MAX_BARS} bars each: attribution.csv has every row",
                panels.len()
            ));
        }
        let path = dir.path(RunFile::Explain).join(format!("bars_{stem}.png"));
        bars_png(&path, &BarChart { title, panels })?;
        charts.bars.push((g.to_owned(), path));
    }
    charts.rows = rows;
    Ok(charts)
}

/// Most genes drawn in one group's bar chart (those with the largest total effect).
const MAX_PANELS: usize = 12;
/// Most bars per gene: its strongest channels, the rest summed in one bar.
const MAX_BARS: usize = 8;

/// Three significant digits.
fn short(v: f64) -> String {
    let s = format!("{v:.3}");
    if v.abs() >= 1e-3 { s } else { format!("{v:.2e}") }
}

/// Below this share the top channel is not named in [`top_channels`] (as in
/// [`crate::explain::top_table`]).
const NO_CHANNEL: f64 = 0.05;

/// The top channels of the `n` largest effects, one per target gene (its largest |total|
/// over the groups), largest first: target, group, total effect, top channel and its
/// share, runner-up and its share. The top channel is the row with the largest |effect|,
/// written `(none: within the cell)` when its share is under 0.05 or NaN; `direct` is
/// shown as `direct (within the cell)`.
pub fn top_channels(rows: &[AttributionRow], n: usize) -> Vec<Vec<String>> {
    let mut best: Vec<&AttributionRow> = Vec::new();
    for r in rows.iter().filter(|r| r.total.is_finite() && r.total != 0.0) {
        match best.iter_mut().find(|b| b.target == r.target) {
            Some(b) if r.total.abs() > b.total.abs() => *b = r,
            Some(_) => {}
            None => best.push(r),
        }
    }
    best.sort_by(|a, b| b.total.abs().total_cmp(&a.total.abs()));
    let shown = |c: &str| match c {
        DIRECT => "direct (within the cell)".to_owned(),
        RESIDUAL => "residual (within the cell)".to_owned(),
        _ => c.to_owned(),
    };
    best.into_iter()
        .take(n)
        .map(|b| {
            let mut ch: Vec<&AttributionRow> =
                rows.iter().filter(|r| r.target == b.target && r.group == b.group).collect();
            crate::explain::order_by_effect(&mut ch, |r| (r.effect, &r.channel));
            let cell = |k: usize| {
                ch.get(k).map_or(("–".to_owned(), "–".to_owned()), |r| (shown(&r.channel), short(r.share)))
            };
            let ((mut c1, s1), (c2, s2)) = (cell(0), cell(1));
            if ch.first().is_none_or(|r| r.share.is_nan() || r.share.abs() < NO_CHANNEL) {
                // As `explant explain` prints it: the effect travels through no channel.
                c1 = "(none: within the cell)".into();
            }
            vec![b.target.clone(), b.group.clone(), short(b.total), c1, s1, c2, s2]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, group: &str, channel: &str, total: f64, effect: f64) -> AttributionRow {
        AttributionRow {
            target: target.into(),
            group: group.into(),
            channel: channel.into(),
            total,
            effect,
            share: effect / total,
            standard_error: None,
            method: "ablation".into(),
        }
    }

    #[test]
    fn many_genes_and_channels_still_make_a_picture() {
        // 40 genes × 45 channels (a learned section's contact inputs): drawn whole this
        // was 16,000 pixels tall and refused; now the 12 genes that moved most, with
        // their 7 strongest channels and the rest summed, and every row in the table.
        let dir = std::env::temp_dir().join(format!("explant-charts-many-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("explain")).unwrap();
        let mut text = String::from("target,group,channel,cells,total_effect,effect,share,standard_error,method\n");
        for t in 0..40 {
            let total = -0.01 * f64::from(t + 1);
            for c in 0..45 {
                let effect = total / 45.0;
                text.push_str(&format!(
                    "G{t},band:0-25um,contact:C{c},10,{total},{effect},{},,ablation\n",
                    effect / total
                ));
            }
        }
        std::fs::write(dir.join("explain/attribution.csv"), text).unwrap();
        let charts = draw_explain_charts(&RunDir::new(&dir)).expect("charts of a wide table");
        assert_eq!(charts.bars.len(), 1);
        let png = std::fs::read(&charts.bars[0].1).unwrap();
        let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        assert!(height < 4000, "bar chart {height} px tall");
        assert_eq!(charts.rows.len(), 40 * 45, "the table keeps every row");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn heat_map_shows_the_group_whose_effects_travel_through_channels() {
        let rows = vec![
            row("W", "perturbed", "ligand:W", -2.0, 0.0),
            row("A", "band:0-25um", "ligand:W", -0.5, -0.5),
            row("A", "band:0-25um", "direct", -0.5, 0.0),
        ];
        assert_eq!(heatmap_group(&rows).as_deref(), Some("band:0-25um"));
        // A gradients table's `residual` is no channel either.
        let gradients = vec![
            row("W", "perturbed", "residual", -2.0, -2.0),
            row("A", "band:0-25um", "ligand:W", -0.5, -0.5),
            row("A", "band:0-25um", "residual", -0.5, 0.0),
        ];
        assert_eq!(heatmap_group(&gradients).as_deref(), Some("band:0-25um"));
        assert_eq!(top_channels(&gradients, 1)[0][3], "residual (within the cell)");
        let none = vec![row("W", "type:x", "ligand:W", -2.0, 0.0), row("W", "perturbed", "ligand:W", -2.0, 0.0)];
        assert_eq!(heatmap_group(&none).as_deref(), Some("perturbed"));
        assert_eq!(file_safe("type:stem cell"), "type_stem_cell");
        assert_eq!(file_safe("band:0-25um"), "band_0-25um");
        let top = top_channels(&rows, 5);
        assert_eq!(top[0][0], "W");
        assert_eq!(top[1][..4], ["A", "band:0-25um", "-0.500", "ligand:W"]);
    }
}
