//! The tables a run writes read back, the plots made from them, and a self-contained HTML
//! report to show them in.
//!
//! The report is one file with nothing outside it: pictures are embedded as base64 `data:`
//! URIs (RFC 4648 §4), plots as inline SVG, the styles in one `<style>` element; no scripts.
//! It can be mailed, archived beside the run or opened from a laptop without the run
//! folder. All text from files (scene names, gene names, the manifest) is escaped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::IoError;
use crate::atomic::write_atomically;
use crate::plot::{LinePlot, Series, escape};

/// A CSV table as a run writes it: a header line, then rows of values. It is read (with
/// quoting, so names with commas round-trip) by `explant_run::tables::read_table`, the one
/// reader of a run's tables; this crate only turns it into plots and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    /// Column names.
    pub header: Vec<String>,
    /// The rows, each with as many values as `header`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The index of column `name`.
    ///
    /// # Errors
    ///
    /// [`IoError::MissingField`] listing the columns there are.
    pub fn column(&self, name: &str) -> Result<usize, IoError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| IoError::MissingField {
            path: self.path.clone(),
            field: format!("column `{name}`"),
            available: self.header.clone(),
        })
    }

    /// The value in `row` and column `col` as a number (`NaN`, `inf` allowed).
    ///
    /// # Errors
    ///
    /// [`IoError::BadField`] naming the line and column when it is not a number.
    pub fn number(&self, row: usize, col: usize) -> Result<f64, IoError> {
        let v = &self.rows[row][col];
        v.parse().map_err(|_| IoError::BadField {
            path: self.path.clone(),
            field: format!("line {}, column `{}`", row + 2, self.header[col]),
            found: format!("`{v}`"),
            expected: "a number".into(),
        })
    }
}

/// Write `text` to `path` through a temporary file renamed into place.
///
/// # Errors
///
/// [`IoError::Io`] when the directory does not exist or the file cannot be written.
pub fn write_text(path: &Path, text: &str) -> Result<(), IoError> {
    write_atomically(path, |tmp| {
        std::fs::write(tmp, text).map_err(|source| IoError::Io { path: tmp.to_path_buf(), source })
    })
}

// ---- plots of a run's tables -----------------------------------------------------------

/// The pseudobulk time series (`timeseries.csv`: `tick,time_min,cell_type,cells,GENE…`) as
/// one plot per gene in `genes`, one solid line per cell type (in order of first
/// appearance) and, from `control` (`timeseries_control.csv`) when given, a dashed line of
/// the same colour per cell type.
///
/// # Errors
///
/// An [`IoError`] naming the file and column when a gene or a needed column is missing or a
/// value is not a number.
pub fn timeseries_plots(series: &Table, control: Option<&Table>, genes: &[String]) -> Result<Vec<LinePlot>, IoError> {
    let mut types: Vec<String> = Vec::new();
    for t in [Some(series), control].into_iter().flatten() {
        let c = t.column("cell_type")?;
        for row in &t.rows {
            if !types.contains(&row[c]) {
                types.push(row[c].clone());
            }
        }
    }
    let lines = |t: &Table, gene: &str, dashed: bool| -> Result<Vec<Series>, IoError> {
        let (time, ct, g) = (t.column("time_min")?, t.column("cell_type")?, t.column(gene)?);
        let mut out = Vec::new();
        for (k, name) in types.iter().enumerate() {
            let mut points = Vec::new();
            for (r, row) in t.rows.iter().enumerate() {
                if &row[ct] == name {
                    points.push((t.number(r, time)?, t.number(r, g)?));
                }
            }
            if !points.is_empty() {
                let name = if dashed { format!("{name} (control)") } else { name.clone() };
                out.push(Series { name, points, dashed, colour: Some(k) });
            }
        }
        Ok(out)
    };
    genes
        .iter()
        .map(|gene| {
            let mut s = lines(series, gene, false)?;
            if let Some(c) = control {
                s.extend(lines(c, gene, true)?);
            }
            Ok(LinePlot {
                title: gene.clone(),
                x_label: "time (min)".into(),
                y_label: "mean expression".into(),
                series: s,
            })
        })
        .collect()
}

/// The gene columns of a `timeseries.csv` table (those after `cells`).
pub fn timeseries_genes(series: &Table) -> Vec<String> {
    let start = series.header.iter().position(|h| h == "cells").map_or(0, |c| c + 1);
    series.header[start..].to_vec()
}

/// `response_vs_distance.csv` (`distance_um,cells,effect_G…,abs_effect_G…`) as one plot:
/// the mean effect (perturbed − control) of each gene against distance from the
/// perturbation, one line per gene.
///
/// # Errors
///
/// An [`IoError`] naming the file when `distance_um` is missing or a value is not a number.
pub fn response_plot(table: &Table) -> Result<LinePlot, IoError> {
    let d = table.column("distance_um")?;
    let mut series = Vec::new();
    for (c, h) in table.header.iter().enumerate() {
        let Some(gene) = h.strip_prefix("effect_") else { continue };
        let points = (0..table.rows.len())
            .map(|r| Ok((table.number(r, d)?, table.number(r, c)?)))
            .collect::<Result<_, IoError>>()?;
        series.push(Series { name: gene.to_owned(), points, dashed: false, colour: None });
    }
    Ok(LinePlot {
        title: "Response vs distance from the perturbation".into(),
        x_label: "distance (µm)".into(),
        y_label: "effect (perturbed − control)".into(),
        series,
    })
}

/// One row of `effects.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// Simulated time of the comparison, minutes.
    pub time_min: f64,
    /// `perturbed`, `band` or `far`.
    pub group: String,
    /// Inner edge of the distance band, µm.
    pub distance_from: f64,
    /// Outer edge of the distance band, µm.
    pub distance_to: f64,
    /// Cells in the group.
    pub cells: usize,
    /// The gene.
    pub gene: String,
    /// Mean expression in the perturbed run.
    pub perturbed_mean: f64,
    /// Mean expression in the paired control.
    pub control_mean: f64,
    /// `perturbed_mean − control_mean`.
    pub effect: f64,
}

/// The largest effects at the last time of `effects.csv`: the rows of the `perturbed`
/// group and of the nearest `band`, sorted by |effect| (largest first, NaN last), at most
/// `n` of them.
///
/// # Errors
///
/// An [`IoError`] naming the file, line and column when a column is missing or a value
/// is not a number.
pub fn largest_effects(table: &Table, n: usize) -> Result<Vec<Effect>, IoError> {
    let col = |name| table.column(name);
    let (t, g, from, to, cells, gene, pm, cm, e) = (
        col("time_min")?,
        col("group")?,
        col("distance_from_um")?,
        col("distance_to_um")?,
        col("cells")?,
        col("gene")?,
        col("perturbed_mean")?,
        col("control_mean")?,
        col("effect")?,
    );
    let mut all = Vec::with_capacity(table.rows.len());
    for (r, row) in table.rows.iter().enumerate() {
        let count = table.number(r, cells)?;
        all.push(Effect {
            time_min: table.number(r, t)?,
            group: row[g].clone(),
            distance_from: table.number(r, from)?,
            distance_to: table.number(r, to)?,
            cells: if count >= 0.0 { count as usize } else { 0 },
            gene: row[gene].clone(),
            perturbed_mean: table.number(r, pm)?,
            control_mean: table.number(r, cm)?,
            effect: table.number(r, e)?,
        });
    }
    let Some(last) = all.iter().map(|x| x.time_min).filter(|t| t.is_finite()).reduce(f64::max) else {
        return Ok(Vec::new());
    };
    all.retain(|x| x.time_min == last);
    let nearest = all.iter().filter(|x| x.group == "band").map(|x| x.distance_from).reduce(f64::min);
    all.retain(|x| x.group == "perturbed" || (x.group == "band" && Some(x.distance_from) == nearest));
    let key = |x: &Effect| if x.effect.is_nan() { -1.0 } else { x.effect.abs() };
    all.sort_by(|a, b| key(b).total_cmp(&key(a)));
    all.truncate(n);
    Ok(all)
}

// ---- the HTML report ---------------------------------------------------------------------

/// A self-contained HTML report: a title and sections of blocks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Page title and top heading.
    pub title: String,
    /// A line under the title.
    pub subtitle: String,
    /// The sections, in order.
    pub sections: Vec<Section>,
}

/// A section of a [`Report`]: a heading and its blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The heading.
    pub heading: String,
    /// The contents, in order.
    pub blocks: Vec<Block>,
}

/// A piece of a [`Section`].
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A paragraph of plain text.
    Text(String),
    /// Name–value pairs, drawn as a two-column table.
    Facts(Vec<(String, String)>),
    /// A table with a header row; columns whose every cell is a number are right-aligned.
    Table {
        /// Column names.
        header: Vec<String>,
        /// The rows.
        rows: Vec<Vec<String>>,
    },
    /// A PNG picture, embedded as a `data:` URI.
    Png {
        /// Caption under the picture (also the `alt` text).
        caption: String,
        /// The PNG file's bytes.
        bytes: Vec<u8>,
    },
    /// An SVG drawing, inlined. It must be a trusted `<svg>` element (such as the output of
    /// [`LinePlot::to_svg`]); it is not escaped.
    Svg {
        /// Caption under the drawing.
        caption: String,
        /// The `<svg>…</svg>` text.
        svg: String,
    },
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
h1{margin-bottom:.1em}.subtitle{color:#666;margin-top:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}\
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}figure>img,figure>svg{max-width:100%;height:auto}";

impl Report {
    /// The report as one HTML5 document.
    pub fn to_html(&self) -> String {
        let mut h = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(h, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        let _ = writeln!(h, "<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>", escape(&self.title));
        let _ = writeln!(h, "<h1>{}</h1>", escape(&self.title));
        if !self.subtitle.is_empty() {
            let _ = writeln!(h, "<p class=\"subtitle\">{}</p>", escape(&self.subtitle));
        }
        for s in &self.sections {
            let _ = writeln!(h, "<section>\n<h2>{}</h2>", escape(&s.heading));
            for b in &s.blocks {
                write_block(&mut h, b);
            }
            h.push_str("</section>\n");
        }
        h.push_str("</body>\n</html>\n");
        h
    }
}

fn write_block(h: &mut String, b: &Block) {
    match b {
        Block::Text(t) => {
            let _ = writeln!(h, "<p>{}</p>", escape(t));
        }
        Block::Facts(pairs) => {
            h.push_str("<table class=\"facts\">\n");
            for (k, v) in pairs {
                let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
            }
            h.push_str("</table>\n");
        }
        Block::Table { header, rows } => {
            let numeric: Vec<bool> = (0..header.len())
                .map(|c| !rows.is_empty() && rows.iter().all(|r| r.get(c).is_some_and(|v| v.parse::<f64>().is_ok())))
                .collect();
            h.push_str("<table>\n<tr>");
            for name in header {
                let _ = write!(h, "<th>{}</th>", escape(name));
            }
            h.push_str("</tr>\n");
            for row in rows {
                h.push_str("<tr>");
                for (c, v) in row.iter().enumerate() {
                    let class = if numeric.get(c).copied().unwrap_or(false) { " class=\"num\"" } else { "" };
                    let _ = write!(h, "<td{class}>{}</td>", escape(v));
                }
                h.push_str("</tr>\n");
            }
            h.push_str("</table>\n");
        }
        Block::Png { caption, bytes } => {
            let _ = writeln!(
                h,
                "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
                escape(caption),
                base64(bytes),
                escape(caption)
            );
        }
        Block::Svg { caption, svg } => {
            let _ = writeln!(h, "<figure>\n{}<figcaption>{}</figcaption></figure>", svg.trim(), escape(caption));
        }
    }
}

/// `bytes` in standard base64 with padding (RFC 4648 §4), for `data:` URIs.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * k)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Escape `text` for HTML content or a quoted attribute value.
pub fn escape_html(text: &str) -> String {
    escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn html_escapes_text_but_not_the_trusted_svg() {
        let r = Report {
            title: "<script>alert(1)</script>".into(),
            subtitle: "a & b".into(),
            sections: vec![Section {
                heading: "\"h\"".into(),
                blocks: vec![
                    Block::Text("x < y".into()),
                    Block::Facts(vec![("k<".into(), "v>".into())]),
                    Block::Table {
                        header: vec!["gene".into(), "effect".into()],
                        rows: vec![vec!["<G>".into(), "-1.5".into()]],
                    },
                    Block::Png { caption: "pic".into(), bytes: vec![1, 2, 3] },
                    Block::Svg { caption: "plot".into(), svg: "<svg><path d=\"M0 0\"/></svg>".into() },
                ],
            }],
        };
        let h = r.to_html();
        assert!(!h.contains("<script"), "{h}");
        assert!(h.contains("&lt;script&gt;") && h.contains("a &amp; b") && h.contains("&quot;h&quot;"));
        assert!(h.contains("x &lt; y") && h.contains("&lt;G&gt;"));
        assert!(h.contains("<td class=\"num\">-1.5</td>"));
        assert!(h.contains("src=\"data:image/png;base64,AQID\""));
        assert!(h.contains("<svg><path d=\"M0 0\"/></svg>"));
        assert!(!h.contains("http://") && !h.contains("https://"), "no external assets");
    }

    /// A table from plain comma-separated text (no quoting), for these tests.
    fn table(text: &str) -> Table {
        let mut lines = text.lines().filter(|l| !l.is_empty());
        let split = |l: &str| l.split(',').map(String::from).collect::<Vec<_>>();
        let header = split(lines.next().unwrap_or_default());
        Table { path: PathBuf::from("t.csv"), header, rows: lines.map(split).collect() }
    }

    #[test]
    fn numbers_and_columns_are_found_or_named_in_the_error() {
        let t = table("a,b\n1,x\n");
        assert_eq!(t.number(0, 0).unwrap(), 1.0);
        let err = t.number(0, 1).unwrap_err().to_string();
        assert!(err.contains("line 2, column `b`") && err.contains("`x`"), "{err}");
        let err = t.column("c").unwrap_err().to_string();
        assert!(err.contains("column `c`") && err.contains("`a`, `b`"), "{err}");
    }

    #[test]
    fn timeseries_make_one_plot_per_gene_with_paired_controls() {
        let ts = table("tick,time_min,cell_type,cells,A,B\n0,0,x,3,1,2\n0,0,y,2,1,2\n10,10,x,3,2,3\n10,10,y,2,0,1\n");
        let ctrl = table("tick,time_min,cell_type,cells,A,B\n0,0,x,3,1,2\n10,10,x,3,1,1\n");
        assert_eq!(timeseries_genes(&ts), ["A", "B"]);
        let plots = timeseries_plots(&ts, Some(&ctrl), &["B".into()]).unwrap();
        assert_eq!(plots.len(), 1);
        let names: Vec<&str> = plots[0].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["x", "y", "x (control)"]);
        assert_eq!(plots[0].series[1].points, [(0.0, 2.0), (10.0, 1.0)]);
        assert!(plots[0].series[2].dashed);
        assert_eq!(plots[0].series[2].colour, plots[0].series[0].colour);
        let err = timeseries_plots(&ts, None, &["C".into()]).unwrap_err().to_string();
        assert!(err.contains("column `C`"), "{err}");
    }

    #[test]
    fn response_plot_has_one_line_per_gene() {
        let t = table(
            "distance_um,cells,effect_A,effect_B,abs_effect_A,abs_effect_B\n10,5,-1,0.5,1,0.5\n30,7,NaN,0.1,0,0.1\n",
        );
        let p = response_plot(&t).unwrap();
        let names: Vec<&str> = p.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert!(p.series[0].points[1].1.is_nan());
    }

    #[test]
    fn largest_effects_take_the_perturbed_group_and_nearest_band_at_the_last_time() {
        let t = table(
            "time_min,group,distance_from_um,distance_to_um,cells,gene,perturbed_mean,control_mean,effect\n\
             10,perturbed,0,0,5,A,0,9,-9\n\
             20,perturbed,0,0,5,A,0,1,-1\n\
             20,perturbed,0,0,5,B,2,1.5,0.5\n\
             20,band,0,25,9,A,1,3,-2\n\
             20,band,0,25,9,B,1,1,0\n\
             20,band,25,50,9,A,1,8,-7\n\
             20,far,50,inf,9,A,1,8,-7\n",
        );
        let top = largest_effects(&t, 3).unwrap();
        let got: Vec<(&str, &str, f64)> = top.iter().map(|e| (e.group.as_str(), e.gene.as_str(), e.effect)).collect();
        assert_eq!(got, [("band", "A", -2.0), ("perturbed", "A", -1.0), ("perturbed", "B", 0.5)]);
    }
}
