//! PNG charts of an explanation: a heat map of shares ([`heatmap_png`]) and horizontal bar
//! charts of signed effects with error bars ([`bars_png`]).
//!
//! They are drawn with the same pixel buffer, embedded font and PNG writer as the tissue
//! pictures, so they depend on no installed fonts or system libraries and the same input
//! gives the same bytes. Labels are drawn as written. Signed values use the diverging `RdBu` map:
//! blue for negative, near-white for zero, red for positive; NaN is the grey of missing
//! values in the tissue pictures.

use std::path::Path;

use crate::IoError;
use crate::colour::{self, Rgb};
use crate::font;
use crate::render::{Image, write_png};

/// Text size of the labels ([`font`]: a 16 px line, about 13.7 px to the em).
const SIZE: usize = 16;
/// Text size of the title lines.
const TITLE: usize = 18;
/// Text size of the values written in heat-map cells (about 10.3 px to the em).
const VALUE: usize = 12;
/// Height of a line of label text, with its gap.
const LINE: usize = SIZE + 4;
/// Height of a title line, with its gap.
const TITLE_LINE: usize = TITLE + 4;
/// Margin around a chart.
const MARGIN: usize = 8;
/// Side of a heat-map cell: room for a value such as `-0.706` or `1.50e-7` at [`VALUE`].
const CELL: usize = 44;
/// Largest picture side.
const MAX_SIDE: usize = 8192;
/// Chart background.
const PAPER: Rgb = [255, 255, 255];
/// Frame and axis lines.
const LINE_COLOUR: Rgb = [120, 120, 120];

/// A heat map of values in [−1, 1] (e.g. shares): one row per `rows` label, one column per
/// `columns` label.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    /// Title lines above the map.
    pub title: Vec<String>,
    /// Row labels (written left of the rows).
    pub rows: Vec<String>,
    /// Column labels (written above the columns, reading upwards).
    pub columns: Vec<String>,
    /// `rows × columns` values, row by row. Coloured with the diverging map from −1 (blue)
    /// through 0 (near-white) to +1 (red), clipped to [−1, 1]; NaN and infinities are grey.
    /// Each cell also holds its value in small digits.
    pub values: Vec<f64>,
}

/// Pixel geometry of a [`HeatMap`].
#[derive(Debug, Clone, Copy)]
struct HeatLayout {
    width: usize,
    height: usize,
    /// Top-left corner of the grid of cells.
    x0: usize,
    y0: usize,
    /// Top of the colour bar.
    bar_y: usize,
    /// Width of the colour bar.
    bar_w: usize,
}

impl HeatLayout {
    fn of(map: &HeatMap) -> Self {
        let width = |s: &String| font::text_width(s, SIZE);
        let row_w = map.rows.iter().map(width).max().unwrap_or(0) + 8;
        let col_h = map.columns.iter().map(width).max().unwrap_or(0) + 6;
        let title_h = map.title.len() * TITLE_LINE + 6;
        let title_w = map.title.iter().map(|t| font::text_width(t, TITLE)).max().unwrap_or(0);
        let (x0, y0) = (MARGIN + row_w, MARGIN + title_h + col_h);
        let bar_y = y0 + map.rows.len() * CELL + 12;
        let bar_w = (map.columns.len() * CELL).max(150);
        // The bar, then a NaN swatch and its label.
        let legend_w = bar_w + 16 + 14 + 4 + font::text_width("NaN", SIZE);
        let width = (x0 + (map.columns.len() * CELL).max(legend_w)).max(MARGIN + title_w) + MARGIN;
        let height = bar_y + 10 + 4 + LINE + MARGIN;
        Self { width, height, x0, y0, bar_y, bar_w }
    }

    /// The `[x0, x1) × [y0, y1)` pixels of cell (`r`, `c`).
    fn cell(&self, r: usize, c: usize) -> (usize, usize, usize, usize) {
        let (x, y) = (self.x0 + c * CELL, self.y0 + r * CELL);
        (x, y, x + CELL - 1, y + CELL - 1)
    }
}

/// The colour of a value in [−1, 1] on the diverging map (clipped), grey for NaN/infinite.
fn diverging(v: f64) -> Rgb {
    if v.is_finite() {
        colour::sample(&colour::DIVERGING, ((v.clamp(-1.0, 1.0) + 1.0) / 2.0) as f32)
    } else {
        colour::MISSING
    }
}

/// Dark ink on light cells, white on dark ones (Rec. 709 luma).
fn ink_on(c: Rgb) -> Rgb {
    let luma = 0.2126 * f32::from(c[0]) + 0.7152 * f32::from(c[1]) + 0.0722 * f32::from(c[2]);
    if luma < 110.0 { PAPER } else { crate::render::INK }
}

fn too_large(path: &Path, width: usize, height: usize) -> Result<(), IoError> {
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(IoError::BadChart {
            path: path.to_path_buf(),
            reason: format!("it would be {width} × {height} pixels, more than {MAX_SIDE} on a side"),
        });
    }
    Ok(())
}

fn draw_heatmap(path: &Path, map: &HeatMap) -> Result<(Image, HeatLayout), IoError> {
    let expected = map.rows.len() * map.columns.len();
    if map.values.len() != expected {
        return Err(IoError::BadChart {
            path: path.to_path_buf(),
            reason: format!(
                "{} values for {} rows × {} columns (want {expected})",
                map.values.len(),
                map.rows.len(),
                map.columns.len()
            ),
        });
    }
    let l = HeatLayout::of(map);
    too_large(path, l.width, l.height)?;
    let mut img = Image::new(l.width as u32, l.height as u32, PAPER);
    for (k, line) in map.title.iter().enumerate() {
        img.text(MARGIN, MARGIN + k * TITLE_LINE, line, TITLE);
    }
    for (r, label) in map.rows.iter().enumerate() {
        let x = l.x0 - 8 - font::text_width(label, SIZE);
        img.text(x, l.y0 + r * CELL + (CELL - SIZE) / 2, label, SIZE);
    }
    for (c, label) in map.columns.iter().enumerate() {
        let x = l.x0 + c * CELL + (CELL - SIZE) / 2;
        img.text_up(x, l.y0 - 6, label, SIZE);
    }
    for r in 0..map.rows.len() {
        for c in 0..map.columns.len() {
            let v = map.values[r * map.columns.len() + c];
            let fill = diverging(v);
            let (x0, y0, x1, y1) = l.cell(r, c);
            img.fill_rect(x0, y0, x1, y1, fill);
            let label = if v.is_finite() { font::format_value(v as f32) } else { "NaN".to_owned() };
            let w = font::text_width(&label, VALUE);
            if w + 2 < CELL - 1 {
                img.text_in(x0 + (CELL - 1 - w) / 2, y0 + (CELL - 1 - VALUE) / 2, &label, VALUE, ink_on(fill));
            }
        }
    }
    // The colour bar from −1 to 1, its ends and middle labelled, then the NaN swatch.
    let (bx, by, bh) = (l.x0, l.bar_y, 10);
    for x in 0..l.bar_w {
        let t = x as f64 / (l.bar_w - 1) as f64;
        img.fill_rect(bx + x, by, bx + x + 1, by + bh, diverging(2.0 * t - 1.0));
    }
    let ty = by + bh + 4;
    img.text(bx, ty, "-1", SIZE);
    img.text(bx + (l.bar_w - font::text_width("0", SIZE)) / 2, ty, "0", SIZE);
    img.text(bx + l.bar_w - font::text_width("1", SIZE), ty, "1", SIZE);
    // Labels beside the 10 px bar, their lines centred on it.
    let side_y = (by + bh / 2).saturating_sub(SIZE / 2);
    let share = "share";
    img.text(l.x0 - 8 - font::text_width(share, SIZE), side_y, share, SIZE);
    let nx = bx + l.bar_w + 16;
    img.fill_rect(nx, by, nx + 14, by + bh, colour::MISSING);
    img.text(nx + 14 + 4, side_y, "NaN", SIZE);
    Ok((img, l))
}

/// Draw `map` and write it to `path` as an 8-bit RGB PNG.
///
/// Layout, top to bottom: the title lines; the column labels reading upwards; the grid of
/// 44 × 44 px cells (1 px white gaps) with the row labels on its left and each value
/// written in its cell; a colour bar from −1 to 1 with a grey `NaN` swatch beside it.
/// The output depends only on `map`.
///
/// # Errors
///
/// [`IoError::BadChart`] when `values` does not hold `rows × columns` numbers or the
/// picture would be over 8192 px on a side; [`IoError::Png`] or [`IoError::Io`] when it
/// cannot be written.
pub fn heatmap_png(path: &Path, map: &HeatMap) -> Result<(), IoError> {
    let (img, _) = draw_heatmap(path, map)?;
    write_png(path, &img)
}

/// One bar of a [`BarPanel`].
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Label left of the bar.
    pub label: String,
    /// Signed length; NaN draws no bar and writes `NaN`.
    pub value: f64,
    /// Half-width of an error bar drawn around the bar's end, when there is one.
    pub error: Option<f64>,
}

/// A titled block of bars in a [`BarChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct BarPanel {
    /// Heading above the bars.
    pub title: String,
    /// The bars, top first.
    pub bars: Vec<Bar>,
}

/// Horizontal bar charts of signed values on one shared, symmetric scale.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Title lines above the panels.
    pub title: Vec<String>,
    /// The panels, top first.
    pub panels: Vec<BarPanel>,
}

/// Width of the bar area.
const BAR_AREA: usize = 320;
/// Height of one bar's row.
const BAR_ROW: usize = 18;

/// Draw `chart` and write it to `path` as an 8-bit RGB PNG.
///
/// Each panel is a heading and one row per bar: the label, then the bar from a zero line
/// in the middle of a 320 px area (red for positive, blue for negative values), a black
/// error bar with end caps for `error`, and the value (`± error`) on the right. Every
/// panel shares one scale, `[−m, m]` with `m` the largest `|value| + error` (1 when
/// there is none), written under the last panel. The output depends only on `chart`.
///
/// # Errors
///
/// [`IoError::BadChart`] when the picture would be over 8192 px on a side;
/// [`IoError::Png`] or [`IoError::Io`] when it cannot be written.
pub fn bars_png(path: &Path, chart: &BarChart) -> Result<(), IoError> {
    write_png(path, &draw_bars(path, chart)?)
}

fn value_text(b: &Bar) -> String {
    if !b.value.is_finite() {
        return "NaN".to_owned();
    }
    let v = font::format_value(b.value as f32);
    match b.error {
        Some(e) if e.is_finite() && e > 0.0 => format!("{v} ± {}", font::format_value(e as f32)),
        _ => v,
    }
}

fn draw_bars(path: &Path, chart: &BarChart) -> Result<Image, IoError> {
    let bars = || chart.panels.iter().flat_map(|p| &p.bars);
    let label_w = bars().map(|b| font::text_width(&b.label, SIZE)).max().unwrap_or(0);
    let value_w = bars().map(|b| font::text_width(&value_text(b), SIZE)).max().unwrap_or(0);
    let m = bars()
        .filter(|b| b.value.is_finite())
        .map(|b| b.value.abs() + b.error.filter(|e| e.is_finite()).unwrap_or(0.0).abs())
        .fold(0.0_f64, f64::max);
    let m = if m > 0.0 && m.is_finite() { m } else { 1.0 };
    let area_x = MARGIN + label_w + 10;
    let title_w = chart.title.iter().map(|t| font::text_width(t, TITLE)).max().unwrap_or(0);
    let panel_w = chart.panels.iter().map(|p| font::text_width(&p.title, SIZE)).max().unwrap_or(0);
    let width = (area_x + BAR_AREA + 10 + value_w).max(MARGIN + title_w.max(panel_w)) + MARGIN;
    let title_h = chart.title.len() * TITLE_LINE + 6;
    let panels_h: usize = chart.panels.iter().map(|p| LINE + 2 + p.bars.len() * BAR_ROW + 8).sum();
    let height = MARGIN + title_h + panels_h + 6 + LINE + MARGIN;
    too_large(path, width, height)?;
    let mut img = Image::new(width as u32, height as u32, PAPER);
    for (k, line) in chart.title.iter().enumerate() {
        img.text(MARGIN, MARGIN + k * TITLE_LINE, line, TITLE);
    }
    let zero = area_x + BAR_AREA / 2;
    let half = (BAR_AREA / 2 - 2) as f64;
    let to_x = |v: f64| (zero as f64 + (v / m).clamp(-1.0, 1.0) * half).round() as usize;
    let mut y = MARGIN + title_h;
    for p in &chart.panels {
        img.text(MARGIN, y, &p.title, SIZE);
        y += LINE + 2;
        let top = y;
        for b in &p.bars {
            let text_y = y + (BAR_ROW - SIZE) / 2;
            img.text(area_x - 10 - font::text_width(&b.label, SIZE), text_y, &b.label, SIZE);
            if b.value.is_finite() {
                let end = to_x(b.value);
                let fill = if b.value >= 0.0 { colour::DIVERGING[8] } else { colour::DIVERGING[0] };
                let (a, z) = if end >= zero { (zero, end + 1) } else { (end, zero) };
                img.fill_rect(a, y + 3, z, y + BAR_ROW - 3, fill);
                if let Some(e) = b.error.filter(|e| e.is_finite() && *e > 0.0) {
                    let (lo, hi) = (to_x(b.value - e), to_x(b.value + e));
                    let mid = y + BAR_ROW / 2;
                    img.fill_rect(lo, mid, hi + 1, mid + 1, crate::render::INK);
                    for x in [lo, hi] {
                        img.fill_rect(x, y + 5, x + 1, y + BAR_ROW - 5, crate::render::INK);
                    }
                }
            }
            img.text(area_x + BAR_AREA + 10, text_y, &value_text(b), SIZE);
            y += BAR_ROW;
        }
        // The zero line through the panel's bars.
        img.fill_rect(zero, top, zero + 1, y, LINE_COLOUR);
        y += 8;
    }
    // The shared scale under the panels.
    img.fill_rect(area_x, y, area_x + BAR_AREA, y + 1, LINE_COLOUR);
    let (lo, hi) = (font::format_value(-m as f32), font::format_value(m as f32));
    let ty = y + 6;
    img.text(area_x, ty, &lo, SIZE);
    img.text(zero - font::text_width("0", SIZE) / 2, ty, "0", SIZE);
    img.text(area_x + BAR_AREA - font::text_width(&hi, SIZE), ty, &hi, SIZE);
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> HeatMap {
        HeatMap {
            title: vec!["group perturbed".into(), "ablation".into()],
            rows: vec!["ligand:WNT3A".into(), "contact:DLL1".into()],
            columns: vec!["AXIN2".into(), "LGR5".into()],
            values: vec![1.0, f64::NAN, -1.0, 0.0],
        }
    }

    /// The colour a little inside cell (r, c), clear of the value written in its middle.
    fn cell_colour(img: &Image, l: &HeatLayout, r: usize, c: usize) -> Rgb {
        let (x0, y0, ..) = l.cell(r, c);
        img.get(x0 + 2, y0 + 2)
    }

    #[test]
    fn heat_map_cells_take_the_ends_of_the_diverging_map_and_nan_is_grey() {
        let (img, l) = draw_heatmap(Path::new("h.png"), &tiny()).unwrap();
        assert_eq!(cell_colour(&img, &l, 0, 0), [178, 24, 43], "share +1: the positive (red) end");
        assert_eq!(cell_colour(&img, &l, 1, 0), [33, 102, 172], "share −1: the negative (blue) end");
        assert_eq!(cell_colour(&img, &l, 0, 1), colour::MISSING, "NaN: grey");
        assert_eq!(cell_colour(&img, &l, 1, 1), [247, 247, 247], "share 0: the neutral middle");
        // Clipped beyond ±1.
        let mut m = tiny();
        m.values = vec![7.0, -3.0, f64::INFINITY, 0.5];
        let (img, l) = draw_heatmap(Path::new("h.png"), &m).unwrap();
        assert_eq!(cell_colour(&img, &l, 0, 0), [178, 24, 43]);
        assert_eq!(cell_colour(&img, &l, 0, 1), [33, 102, 172]);
        assert_eq!(cell_colour(&img, &l, 1, 0), colour::MISSING);
        assert_eq!(cell_colour(&img, &l, 1, 1), colour::DIVERGING[6]);
        // Labels are inked left of the first row and above the first column: dark text on
        // the paper, its edges blended.
        let (x0, y0, _, y1) = l.cell(0, 0);
        let inked = |xs: std::ops::Range<usize>, ys: std::ops::Range<usize>| {
            let px: Vec<Rgb> = ys.flat_map(|y| xs.clone().map(move |x| (x, y))).map(|(x, y)| img.get(x, y)).collect();
            px.iter().any(|c| c.iter().all(|&v| v < 60)) && px.iter().any(|c| c.iter().all(|&v| (60..230).contains(&v)))
        };
        assert!(inked(MARGIN..x0, y0..y1), "row label");
        assert!(inked(x0..x0 + CELL, MARGIN + 2 * TITLE_LINE..y0), "column label");
        assert!(inked(MARGIN..img.width as usize, MARGIN..MARGIN + TITLE_LINE), "title");
        // Every label fits: the widest row label ends left of the grid, the longest column
        // label ends below the title, and the title inside the picture.
        assert!(MARGIN + font::text_width("ligand:WNT3A", SIZE) + 8 <= x0);
        assert!(MARGIN + 2 * TITLE_LINE + font::text_width("AXIN2", SIZE) + 6 <= y0);
        assert!(MARGIN + font::text_width("group perturbed", TITLE) <= img.width as usize - MARGIN);
    }

    #[test]
    fn heat_map_png_is_byte_identical_across_calls_and_checks_its_input() {
        let dir = std::env::temp_dir().join(format!("explant-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.png"), dir.join("b.png"));
        heatmap_png(&a, &tiny()).unwrap();
        heatmap_png(&b, &tiny()).unwrap();
        let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(&x[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(x, y, "same heat map, different bytes");
        let mut bad = tiny();
        bad.values.pop();
        let err = heatmap_png(&dir.join("c.png"), &bad).unwrap_err().to_string();
        assert!(err.contains("3 values for 2 rows × 2 columns"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bars_are_signed_coloured_and_carry_error_bars() {
        let chart = BarChart {
            title: vec!["group band".into()],
            panels: vec![BarPanel {
                title: "AXIN2".into(),
                bars: vec![
                    Bar { label: "up".into(), value: 2.0, error: Some(0.5) },
                    Bar { label: "down".into(), value: -1.0, error: None },
                    Bar { label: "none".into(), value: f64::NAN, error: None },
                ],
            }],
        };
        let img = draw_bars(Path::new("b.png"), &chart).unwrap();
        let count = |c: Rgb| img.rgb.chunks(3).filter(|p| *p == c).count();
        // Scale m = 2.5: the +2 bar is 0.8 of the half area, the −1 bar 0.4, so the red
        // bar has about twice the blue bar's pixels.
        let (red, blue) = (count(colour::DIVERGING[8]), count(colour::DIVERGING[0]));
        assert!(red > 0 && blue > 0, "{red} {blue}");
        let ratio = red as f64 / blue as f64;
        assert!((1.8..2.2).contains(&ratio), "{red} / {blue}");
        assert_eq!(draw_bars(Path::new("b.png"), &chart).unwrap().rgb, img.rgb);
    }
}
