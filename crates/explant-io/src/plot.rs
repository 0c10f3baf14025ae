//! Line plots as self-contained SVG text: the time series and response curves of a run,
//! viewable in any browser and inlined as they are into the HTML report.
//!
//! Written by hand (a few hundred lines) rather than with a plotting crate: the plots are
//! simple, and the output must not depend on fonts, a renderer or system libraries. Axis
//! ticks fall on "nice" numbers, 1, 2 or 5 times a power of ten (Heckbert, "Nice numbers
//! for graph labels", *Graphics Gems*, 1990), with about five intervals per axis. Colours
//! are the `tab10` palette of the tissue pictures, so a cell type has the same colour in
//! the picture's legend and in the plots. The SVG uses presentation attributes only (no
//! `<style>` element, which inside HTML would leak to the whole page) and no ids, so any
//! number of plots can be inlined into one page.

use std::fmt::Write as _;

use crate::colour::CATEGORICAL;

/// One line of a [`LinePlot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Name shown in the legend.
    pub name: String,
    /// `(x, y)` points, joined in order. A point with a NaN or infinite coordinate is not
    /// drawn and breaks the line there.
    pub points: Vec<(f64, f64)>,
    /// Draw the line dashed (e.g. a paired control beside the perturbed run).
    pub dashed: bool,
    /// Palette entry (`tab10`, cycled) for the line; `None` takes the series' position in
    /// the plot. Give two series the same entry to pair them (solid and dashed).
    pub colour: Option<usize>,
}

/// A line plot: axes with nice ticks, one line per series, a legend on the right.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinePlot {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

/// Height of the plot area in pixels.
const AREA_H: f64 = 260.0;
/// Width of the plot area in pixels.
const AREA_W: f64 = 400.0;
/// Space left of the plot area (tick labels and the y label).
const LEFT: f64 = 74.0;
/// Space above the plot area (the title).
const TOP: f64 = 34.0;
/// Space below the plot area (tick labels and the x label).
const BOTTOM: f64 = 50.0;
/// Height of one legend entry.
const LEGEND_ROW: f64 = 18.0;
/// Most series drawn with point markers (beyond this the markers clutter the lines).
const MAX_MARKED_POINTS: usize = 60;
/// Text, axes and tick marks.
const INK: &str = "#222222";
/// Grid lines.
const GRID: &str = "#e4e4e4";
/// Approximate width of one character of the 12 px sans-serif labels.
const CHAR_W: f64 = 7.5;

/// An axis: its drawn range and tick values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) ticks: Vec<f64>,
    /// Decimal places of the tick labels, or `None` for scientific notation.
    decimals: Option<usize>,
}

impl Axis {
    /// An axis covering `[min, max]` (finite, `min ≤ max`) with about `target` intervals of
    /// 1, 2 or 5 × 10^k, extended outward to whole steps. An empty range is widened by 10 %
    /// of its value (or by 1 around 0); a range too wide for `f64` is drawn as it is.
    pub(crate) fn nice(min: f64, max: f64, target: usize) -> Self {
        let (mut min, mut max) = (min, max);
        if min == max {
            let pad = if min == 0.0 { 1.0 } else { 0.1 * min.abs() };
            (min, max) = (min - pad, max + pad);
        }
        let span = max - min;
        let raw = span / target.max(1) as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let f = raw / mag;
        let step = mag
            * if f <= 1.0 {
                1.0
            } else if f <= 2.0 {
                2.0
            } else if f <= 5.0 {
                5.0
            } else {
                10.0
            };
        let (lo, hi) = ((min / step).floor() * step, (max / step).ceil() * step);
        let n = ((hi - lo) / step).round();
        if !(step.is_finite() && step > 0.0 && lo.is_finite() && hi.is_finite() && n.is_finite() && n <= 100.0) {
            return Self { lo: min, hi: max, ticks: vec![min, max], decimals: None };
        }
        let ticks: Vec<f64> = (0..=n as usize)
            .map(|k| {
                let v = lo + k as f64 * step;
                // Snap accumulated rounding (0.30000000000000004) and -0 to the step's grid.
                let v = (v / step).round() * step;
                if v == 0.0 { 0.0 } else { v }
            })
            .collect();
        let largest = lo.abs().max(hi.abs());
        let decimals =
            if largest >= 1e6 || step < 1e-5 { None } else { Some((-step.log10().floor()).max(0.0) as usize) };
        Self { lo, hi, ticks, decimals }
    }

    /// A tick label.
    pub(crate) fn label(&self, v: f64) -> String {
        let s = match self.decimals {
            Some(d) => format!("{v:.d$}"),
            None => format!("{v:.2e}"),
        };
        // `-0.0` prints as `-0`.
        if s.starts_with('-') && s[1..].chars().all(|c| matches!(c, '0' | '.')) { s[1..].to_owned() } else { s }
    }

    /// Position of `v` along an axis of `len` pixels, from 0 at `lo` to `len` at `hi`.
    fn scale(&self, v: f64, len: f64) -> f64 {
        (v - self.lo) / (self.hi - self.lo) * len
    }
}

/// The range of the finite values of `values`, or `None` when there are none.
fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// `#rrggbb` of palette entry `i` (cycled).
fn palette(i: usize) -> String {
    crate::colour::hex(CATEGORICAL[i % CATEGORICAL.len()])
}

/// Escape text for SVG or HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Where things go, in pixels.
struct Layout {
    width: f64,
    height: f64,
    /// Plot area: left, top, right, bottom.
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl LinePlot {
    fn layout(&self) -> Layout {
        let longest = self.series.iter().map(|s| s.name.chars().count()).max().unwrap_or(0);
        let legend_w = if self.series.is_empty() { 16.0 } else { (60.0 + CHAR_W * longest as f64).clamp(100.0, 340.0) };
        let legend_h = LEGEND_ROW * self.series.len() as f64 + 8.0;
        let area_h = AREA_H.max(legend_h);
        let (x0, y0) = (LEFT, TOP);
        let (x1, y1) = (x0 + AREA_W, y0 + area_h);
        Layout { width: x1 + legend_w, height: y1 + BOTTOM, x0, y0, x1, y1 }
    }

    /// Width and height of the SVG in pixels.
    pub fn size(&self) -> (f64, f64) {
        let l = self.layout();
        (l.width, l.height)
    }

    /// The plot as one self-contained `<svg>` element.
    ///
    /// Axes cover the finite points of all series, widened to whole tick steps; with no
    /// finite point at all they run from 0 to 1. A dashed grey line marks `y = 0` when the
    /// vertical axis spans it. Each series is one `<path>` (its `d` empty when it has no
    /// finite point), with a marker at every point when it has at most 60.
    pub fn to_svg(&self) -> String {
        let mut out = String::new();
        self.write_svg(&mut out, None);
        out
    }

    /// Write the plot as an `<svg>` element: the root (with the namespace) when `at` is
    /// `None`, else nested at `(x, y)` inside another.
    fn write_svg(&self, out: &mut String, at: Option<(f64, f64)>) {
        let l = self.layout();
        open_svg(out, &l, at);
        let frame = self.frame(&l);
        self.write_labels(out, &l);
        frame.write_axes(out);
        for (i, s) in self.series.iter().enumerate() {
            frame.write_series(out, i, s);
        }
        out.push_str("</svg>\n");
    }

    /// The axes over the finite points of all series (0 to 1 where there are none).
    fn frame<'a>(&self, l: &'a Layout) -> Frame<'a> {
        let xs =
            finite_range(self.series.iter().flat_map(|s| s.points.iter().filter(|p| p.1.is_finite()).map(|p| p.0)));
        let ys =
            finite_range(self.series.iter().flat_map(|s| s.points.iter().filter(|p| p.0.is_finite()).map(|p| p.1)));
        let (xa, xb) = xs.unwrap_or((0.0, 1.0));
        let (ya, yb) = ys.unwrap_or((0.0, 1.0));
        Frame { l, xaxis: Axis::nice(xa, xb, 5), yaxis: Axis::nice(ya, yb, 5) }
    }

    /// The title and the axis labels.
    fn write_labels(&self, out: &mut String, l: &Layout) {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="14" font-weight="bold" fill="{INK}">{}</text>"#,
            (l.x0 + l.x1) / 2.0,
            escape(&self.title)
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" fill="{INK}">{}</text>"#,
            (l.x0 + l.x1) / 2.0,
            l.y1 + 40.0,
            escape(&self.x_label)
        );
        let (lx, ly) = (16.0, (l.y0 + l.y1) / 2.0);
        let _ = writeln!(
            out,
            r#"<text x="{lx}" y="{ly}" text-anchor="middle" transform="rotate(-90 {lx} {ly})" fill="{INK}">{}</text>"#,
            escape(&self.y_label)
        );
    }
}

/// The opening `<svg>` tag (the root with the namespace, or nested at `at`) and the white background.
fn open_svg(out: &mut String, l: &Layout, at: Option<(f64, f64)>) {
    let (w, h) = (l.width, l.height);
    match at {
        None => {
            let _ = write!(
                out,
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
            );
        }
        Some((x, y)) => {
            let _ = write!(out, r#"<svg x="{x}" y="{y}" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#);
        }
    }
    out.push('\n');
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
}

/// A plot's axes placed in its layout: data coordinates to pixels.
struct Frame<'a> {
    /// Where things go.
    l: &'a Layout,
    /// The horizontal axis.
    xaxis: Axis,
    /// The vertical axis.
    yaxis: Axis,
}

impl Frame<'_> {
    /// Horizontal pixel of `v`.
    fn px(&self, v: f64) -> f64 {
        self.l.x0 + self.xaxis.scale(v, self.l.x1 - self.l.x0)
    }

    /// Vertical pixel of `v`.
    fn py(&self, v: f64) -> f64 {
        self.l.y1 - self.yaxis.scale(v, self.l.y1 - self.l.y0)
    }

    /// The plot area, grid lines, ticks with their labels, and the dashed `y = 0` line.
    fn write_axes(&self, out: &mut String) {
        let l = self.l;
        let _ = writeln!(
            out,
            r#"<rect class="plot-area" x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{INK}"/>"#,
            l.x0,
            l.y0,
            l.x1 - l.x0,
            l.y1 - l.y0
        );
        for &t in &self.xaxis.ticks {
            let x = self.px(t);
            let _ = writeln!(out, r#"<line x1="{x:.2}" y1="{}" x2="{x:.2}" y2="{}" stroke="{GRID}"/>"#, l.y0, l.y1);
            let _ =
                writeln!(out, r#"<line x1="{x:.2}" y1="{}" x2="{x:.2}" y2="{}" stroke="{INK}"/>"#, l.y1, l.y1 + 5.0);
            let _ = writeln!(
                out,
                r#"<text class="xtick" x="{x:.2}" y="{}" text-anchor="middle" fill="{INK}">{}</text>"#,
                l.y1 + 18.0,
                self.xaxis.label(t)
            );
        }
        for &t in &self.yaxis.ticks {
            let y = self.py(t);
            let _ = writeln!(out, r#"<line x1="{}" y1="{y:.2}" x2="{}" y2="{y:.2}" stroke="{GRID}"/>"#, l.x0, l.x1);
            let _ =
                writeln!(out, r#"<line x1="{}" y1="{y:.2}" x2="{}" y2="{y:.2}" stroke="{INK}"/>"#, l.x0 - 5.0, l.x0);
            let _ = writeln!(
                out,
                r#"<text class="ytick" x="{}" y="{:.2}" text-anchor="end" fill="{INK}">{}</text>"#,
                l.x0 - 8.0,
                y + 4.0,
                self.yaxis.label(t)
            );
        }
        if self.yaxis.lo < 0.0 && self.yaxis.hi > 0.0 {
            let y = self.py(0.0);
            let _ = writeln!(
                out,
                r##"<line class="zero" x1="{}" y1="{y:.2}" x2="{}" y2="{y:.2}" stroke="#888888" stroke-dasharray="2 3"/>"##,
                l.x0, l.x1
            );
        }
    }

    /// Series `i`: its line (broken at non-finite points), its markers (at most
    /// [`MAX_MARKED_POINTS`] points) and its legend entry.
    fn write_series(&self, out: &mut String, i: usize, s: &Series) {
        let l = self.l;
        let colour = palette(s.colour.unwrap_or(i));
        let dash = if s.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let mut d = String::new();
        let mut pen_down = false;
        let mut marks = Vec::new();
        for &(x, y) in &s.points {
            if !(x.is_finite() && y.is_finite()) {
                pen_down = false;
                continue;
            }
            let (x, y) = (self.px(x), self.py(y));
            if !d.is_empty() {
                d.push(' ');
            }
            let _ = write!(d, "{}{x:.2} {y:.2}", if pen_down { 'L' } else { 'M' });
            pen_down = true;
            marks.push((x, y));
        }
        let _ = writeln!(
            out,
            r#"<path class="series" d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}><title>{}</title></path>"#,
            escape(&s.name)
        );
        if s.points.len() <= MAX_MARKED_POINTS {
            for (x, y) in marks {
                let fill = if s.dashed { "white" } else { colour.as_str() };
                let _ = writeln!(
                    out,
                    r#"<circle cx="{x:.2}" cy="{y:.2}" r="2.5" fill="{fill}" stroke="{colour}" stroke-width="1.2"/>"#
                );
            }
        }
        let ly = l.y0 + 10.0 + LEGEND_ROW * i as f64;
        let lx = l.x1 + 12.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>"#,
            lx + 26.0
        );
        let _ = writeln!(
            out,
            r#"<text class="legend" x="{}" y="{}" fill="{INK}">{}</text>"#,
            lx + 32.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
}

/// Several plots side by side in one `<svg>`, `columns` to a row (at least 1), each in a
/// cell as large as the largest plot; e.g. one panel per gene.
pub fn panels_svg(plots: &[LinePlot], columns: usize) -> String {
    let columns = columns.max(1);
    let (cw, ch) = plots.iter().map(LinePlot::size).fold((0.0f64, 0.0f64), |(w, h), (a, b)| (w.max(a), h.max(b)));
    let rows = plots.len().div_ceil(columns);
    let (w, h) = (cw * columns.min(plots.len()).max(1) as f64, ch * rows as f64);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    );
    for (k, p) in plots.iter().enumerate() {
        p.write_svg(&mut out, Some((cw * (k % columns) as f64, ch * (k / columns) as f64)));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of attribute `name` in the element starting at `tag`.
    fn attr(tag: &str, name: &str) -> Option<f64> {
        let key = format!(" {name}=\"");
        let start = tag.find(&key)? + key.len();
        let end = start + tag[start..].find('"')?;
        tag[start..end].parse().ok()
    }

    /// Every element `<name ...` with `class="class"`, as (element text, text content).
    fn elements<'a>(svg: &'a str, name: &str, class: &str) -> Vec<(&'a str, &'a str)> {
        let open = format!("<{name} class=\"{class}\"");
        svg.match_indices(&open)
            .map(|(i, _)| {
                let rest = &svg[i..];
                let tag_end = rest.find('>').unwrap();
                let content = &rest[tag_end + 1..];
                (&rest[..tag_end], &content[..content.find('<').unwrap_or(0)])
            })
            .collect()
    }

    /// The plot area: (x0, y0, x1, y1).
    fn area(svg: &str) -> (f64, f64, f64, f64) {
        let (tag, _) = elements(svg, "rect", "plot-area")[0];
        let (x, y) = (attr(tag, "x").unwrap(), attr(tag, "y").unwrap());
        (x, y, x + attr(tag, "width").unwrap(), y + attr(tag, "height").unwrap())
    }

    /// The `d` attributes of the series paths, as lists of (command, x, y).
    fn paths(svg: &str) -> Vec<Vec<(char, f64, f64)>> {
        svg.match_indices("<path class=\"series\" d=\"")
            .map(|(i, m)| {
                let d = &svg[i + m.len()..];
                let d = &d[..d.find('"').unwrap()];
                let tokens: Vec<&str> = d.split_whitespace().collect();
                tokens
                    .chunks(2)
                    .map(|c| {
                        let cmd = c[0].chars().next().unwrap();
                        (cmd, c[0][1..].parse().unwrap(), c[1].parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.to_owned(), points, dashed: false, colour: None }
    }

    fn plot(series: Vec<Series>) -> LinePlot {
        LinePlot { title: "T".into(), x_label: "time (min)".into(), y_label: "mean".into(), series }
    }

    #[test]
    fn ticks_are_nice_steps_covering_the_data() {
        let a = Axis::nice(0.0, 360.0, 5);
        assert_eq!(a.ticks, [0.0, 100.0, 200.0, 300.0, 400.0]);
        let a = Axis::nice(-0.17, 0.14, 5);
        assert_eq!(a.ticks, [-0.2, -0.1, 0.0, 0.1, 0.2]);
        assert_eq!(a.label(0.1), "0.1");
        let a = Axis::nice(0.0, 0.9, 5);
        assert_eq!(a.ticks.len(), 6);
        assert_eq!(a.label(a.ticks[3]), "0.6");
        let a = Axis::nice(3.0, 3.0, 5);
        assert!(a.lo < 3.0 && a.hi > 3.0, "{a:?}");
        let a = Axis::nice(0.0, 0.0, 5);
        assert_eq!((a.lo, a.hi), (-1.0, 1.0));
        let a = Axis::nice(1e9, 3e9, 5);
        assert_eq!(a.label(1e9), "1.00e9");
        let a = Axis::nice(-1e308, 1e308, 5);
        assert_eq!(a.ticks, [-1e308, 1e308]);
        assert_eq!(Axis::nice(-1.0, 1.0, 5).label(-0.0), "0.0");
    }

    #[test]
    fn tick_positions_are_monotone_and_labels_increase() {
        let p = plot(vec![series("a", vec![(0.0, 1.0), (60.0, 2.5), (120.0, -0.7)])]);
        let svg = p.to_svg();
        for (class, coord, increasing_px) in [("xtick", "x", true), ("ytick", "y", false)] {
            let ticks = elements(&svg, "text", class);
            assert!(ticks.len() >= 3, "{class}: {ticks:?}");
            let pos: Vec<f64> = ticks.iter().map(|(t, _)| attr(t, coord).unwrap()).collect();
            let val: Vec<f64> = ticks.iter().map(|(_, c)| c.parse().unwrap()).collect();
            assert!(val.windows(2).all(|w| w[1] > w[0]), "{class} labels {val:?}");
            let ok = pos.windows(2).all(|w| if increasing_px { w[1] > w[0] } else { w[1] < w[0] });
            assert!(ok, "{class} positions {pos:?}");
        }
        // The y axis spans 0, so there is a zero line inside the plot area.
        let (_, y0, _, y1) = area(&svg);
        let zero = elements(&svg, "line", "zero");
        assert_eq!(zero.len(), 1);
        let y = attr(zero[0].0, "y1").unwrap();
        assert!(y > y0 && y < y1);
    }

    #[test]
    fn points_fall_inside_the_plot_area() {
        let p = plot(vec![
            series("a", vec![(0.0, 1.0), (10.0, 3.0), (20.0, 2.0)]),
            series("b", vec![(5.0, -1.0), (25.0, 7.5)]),
        ]);
        let svg = p.to_svg();
        let (x0, y0, x1, y1) = area(&svg);
        let paths = paths(&svg);
        assert_eq!(paths.len(), 2);
        for (cmd, x, y) in paths.iter().flatten() {
            assert!(matches!(cmd, 'M' | 'L'));
            assert!((x0..=x1).contains(x) && (y0..=y1).contains(y), "({x}, {y}) outside {x0} {y0} {x1} {y1}");
        }
        // Larger y is higher up (smaller pixel row).
        assert!(paths[0][1].2 < paths[0][0].2);
    }

    #[test]
    fn a_nan_breaks_the_line() {
        let p = plot(vec![series("a", vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN), (3.0, 1.5), (4.0, 1.0)])]);
        let svg = p.to_svg();
        let cmds: Vec<char> = paths(&svg)[0].iter().map(|c| c.0).collect();
        assert_eq!(cmds, ['M', 'L', 'M', 'L']);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn empty_and_degenerate_plots_still_draw() {
        for p in [
            plot(vec![]),
            plot(vec![series("none", vec![])]),
            plot(vec![series("nan", vec![(f64::NAN, 1.0)])]),
            plot(vec![series("flat", vec![(2.0, 5.0), (2.0, 5.0)])]),
        ] {
            let svg = p.to_svg();
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
            assert_eq!(paths(&svg).len(), p.series.len());
            assert!(elements(&svg, "text", "xtick").len() >= 2);
        }
    }

    #[test]
    fn names_are_escaped_and_dashed_series_are_dashed() {
        let mut s = series("<b> & \"c\"", vec![(0.0, 0.0), (1.0, 1.0)]);
        s.dashed = true;
        s.colour = Some(3);
        let svg = plot(vec![s]).to_svg();
        assert!(svg.contains("&lt;b&gt; &amp; &quot;c&quot;"));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("stroke-dasharray=\"6 4\""));
        assert!(svg.contains("#d62728"), "palette entry 3 of tab10");
    }

    #[test]
    fn panels_hold_every_plot() {
        let plots: Vec<LinePlot> = (0..3).map(|k| plot(vec![series(&format!("s{k}"), vec![(0.0, 1.0)])])).collect();
        let svg = panels_svg(&plots, 2);
        assert_eq!(svg.matches("<svg").count(), 4);
        assert_eq!(paths(&svg).len(), 3);
        let (w, h) = plots[0].size();
        assert!(svg.starts_with(&format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\"",
            2.0 * w,
            2.0 * h
        )));
    }
}
