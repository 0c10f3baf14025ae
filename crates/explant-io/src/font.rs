//! Text for the PNG pictures: DejaVu Sans, anti-aliased, from a subset of the font embedded
//! in the binary, so a picture depends on no installed fonts or system libraries and the same
//! input gives the same bytes on every machine.
//!
//! The subset (`assets/DejaVuSans-explant.ttf`, printable ASCII, Latin-1, Greek and the signs
//! the labels use, such as `µ`, `³`, `±`, `×`, `–`, `−`; `assets/README.md` says how it was
//! made) is rasterised by [`ab_glyph`], which works in plain `f32` arithmetic with no hinting,
//! caches or threads. Text is laid out on one line with the font's advance widths (no
//! kerning, no shaping); a character the font lacks is drawn as its empty box.
//!
//! A text size is the height in pixels of a line of text, from the font's ascent to its
//! descent (for DejaVu Sans, 1.16 em: a size of 15 is text of about 12.9 px to the em).
//! Every glyph the subset maps lies inside that height, so a line of `size` rows holds
//! its text; [`text_width`] is the width of the ink and the advances together.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, OutlinedGlyph, PxScale, ScaleFont, point};

/// The embedded font: DejaVu Sans, cut to the characters of labels.
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-explant.ttf");

/// The embedded font, parsed once. It is part of the binary, so a font that fails to
/// parse is a build mistake, caught by this module's tests, not a user error.
fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("the embedded font parses (see font.rs tests)"))
}

/// The glyphs of `text` at `size` laid out on one line from x = 0 on the baseline, and
/// the line's horizontal extent: the first column any glyph inks (0 or less) and one past
/// the last column that the ink or the pen reaches.
struct Line {
    glyphs: Vec<OutlinedGlyph>,
    left: i32,
    right: i32,
}

fn layout(text: &str, size: usize) -> Line {
    let font = font();
    let scale = PxScale::from(size as f32);
    let scaled = font.as_scaled(scale);
    let baseline = scaled.ascent().round();
    let (mut pen, mut left, mut ink_right) = (0.0_f32, 0_i32, 0_i32);
    let mut glyphs = Vec::new();
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(g) = font.outline_glyph(id.with_scale_and_position(scale, point(pen, baseline))) {
            let b = g.px_bounds();
            left = left.min(b.min.x as i32);
            ink_right = ink_right.max(b.max.x as i32);
            glyphs.push(g);
        }
        pen += scaled.h_advance(id);
    }
    Line { glyphs, left, right: ink_right.max(pen.ceil() as i32) }
}

/// Width in pixels of `text` drawn at `size`: every inked column and the advance of
/// its last character.
pub(crate) fn text_width(text: &str, size: usize) -> usize {
    if text.is_empty() {
        return 0;
    }
    let line = layout(text, size);
    (line.right - line.left) as usize
}

/// The coverage of `text` drawn at `size` (see the module docs), `width` × `size` values
/// row by row, top first: 0 where no glyph touches a pixel, 255 where one covers it.
pub(crate) struct Coverage {
    width: usize,
    alpha: Vec<u8>,
}

impl Coverage {
    /// The pixels with some coverage, as `(x, y, alpha)` with `(x, y)` from the top-left
    /// corner of the text's box.
    pub(crate) fn pixels(&self) -> impl Iterator<Item = (usize, usize, u8)> + '_ {
        self.alpha.iter().enumerate().filter(|&(_, &a)| a > 0).map(|(i, &a)| (i % self.width, i / self.width, a))
    }
}

/// Rasterise `text` at `size`: the [`text_width`] × `size` box of its coverage. Glyphs
/// that overlap add up (clipped to full coverage), so a pixel is blended once.
pub(crate) fn ink(text: &str, size: usize) -> Coverage {
    let line = layout(text, size);
    let width = if text.is_empty() { 0 } else { (line.right - line.left) as usize };
    let height = size;
    let mut sum = vec![0.0_f32; width * height];
    for g in &line.glyphs {
        let b = g.px_bounds();
        let (x0, y0) = (b.min.x as i32 - line.left, b.min.y as i32);
        g.draw(|x, y, c| {
            let (x, y) = (x0 + x as i32, y0 + y as i32);
            if (0..width as i32).contains(&x) && (0..height as i32).contains(&y) {
                sum[y as usize * width + x as usize] += c;
            }
        });
    }
    let alpha = sum.iter().map(|&c| (c.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    Coverage { width, alpha }
}

/// Labels for the two ends of a colour bar: [`format_value`] of each, or, where three
/// significant digits would print two distinct values as one number, 4 to 7 significant
/// digits (of the larger magnitude), both ends with the same decimals.
pub(crate) fn format_range(lo: f32, hi: f32) -> (String, String) {
    let (a, b) = (format_value(lo), format_value(hi));
    if a != b || lo == hi {
        return (a, b);
    }
    let big = lo.abs().max(hi.abs());
    for sig in 4..=7usize {
        let (a, b) = if (1.0e-3..1.0e5).contains(&big) {
            let int_digits = big.log10().floor() as i32 + 1;
            let decimals = (sig as i32 - int_digits).max(0) as usize;
            (format!("{lo:.decimals$}"), format!("{hi:.decimals$}"))
        } else {
            let decimals = sig - 1;
            (format!("{lo:.decimals$e}"), format!("{hi:.decimals$e}"))
        };
        if a != b {
            return (a, b);
        }
    }
    (format!("{lo:e}"), format!("{hi:e}"))
}

/// A short label for a colour-bar end: three significant digits, plain or in `e` notation.
pub(crate) fn format_value(v: f32) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let a = v.abs();
    if (1.0e-3..1.0e5).contains(&a) {
        let int_digits = a.log10().floor() as i32 + 1;
        let decimals = (3 - int_digits).max(0) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
    } else {
        format!("{v:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_parses_and_has_a_glyph_for_every_character_labels_use() {
        let font = FontRef::try_from_slice(FONT_BYTES).expect("the embedded font parses");
        let ascii = (' '..='~').collect::<String>();
        // Units, signs and the names of ligands and genes in the pictures' labels.
        let signs = "µ³²°±×·–—−…←→√≈≤≥⊣αβγδκλ\u{3bc}";
        for c in ascii.chars().chain(signs.chars()) {
            assert_ne!(font.glyph_id(c).0, 0, "no glyph for {c:?} (U+{:04X})", c as u32);
        }
        // Every mapped glyph fits in the line's height, so `ink` clips nothing vertically.
        let scaled = font.as_scaled(PxScale::from(100.0));
        for c in ascii.chars().chain(signs.chars()) {
            let g = font.glyph_id(c).with_scale_and_position(100.0, point(0.0, scaled.ascent()));
            if let Some(o) = font.outline_glyph(g) {
                let b = o.px_bounds();
                assert!(b.min.y >= -1.0 && b.max.y <= 101.0, "{c:?} spans rows {} to {}", b.min.y, b.max.y);
            }
        }
    }

    #[test]
    fn text_is_anti_aliased_in_a_box_as_wide_as_text_width() {
        let c = ink("CXCL10, amount/µm³", 15);
        assert_eq!((c.width, c.alpha.len()), (text_width("CXCL10, amount/µm³", 15), 15 * c.width));
        let alphas: Vec<u8> = c.pixels().map(|(_, _, a)| a).collect();
        assert!(alphas.contains(&255), "some pixels are fully covered");
        let partial = alphas.iter().filter(|&&a| a < 255).count();
        assert!(partial > alphas.len() / 4, "edges are blended: {partial} of {} inked pixels", alphas.len());
        // Ink reaches both ends of the box (no blank margin beyond the text).
        assert_eq!(c.pixels().map(|(x, ..)| x).min(), Some(0));
        assert!(c.pixels().map(|(x, ..)| x).max().unwrap() + 3 >= c.width);
        assert_eq!((text_width("", 15), ink("", 15).pixels().count()), (0, 0));
    }

    #[test]
    fn text_is_drawn_as_written_with_widths_that_grow_with_size_and_length() {
        // Lower case is its own glyphs, not capitals: `µm` is not `µM`, and `cell` is
        // narrower than `CELL`.
        let (lower, upper) = (ink("µm", 15), ink("µM", 15));
        assert_ne!(lower.alpha, upper.alpha);
        assert!(text_width("cell", 15) < text_width("CELL", 15));
        assert!(text_width("cell type", 13) < text_width("cell type", 20));
        assert!(text_width("cell type", 15) < text_width("cell types", 15));
        // Digits share one advance, so colour-bar labels of as many digits are as wide.
        assert_eq!(text_width("0.106", 15), text_width("0.349", 15));
    }

    #[test]
    fn the_same_text_rasterises_to_the_same_bytes() {
        let a = ink("tumour-immune: CXCL10 expression, t = 720 min", 17);
        let b = ink("tumour-immune: CXCL10 expression, t = 720 min", 17);
        assert_eq!((a.width, &a.alpha), (b.width, &b.alpha));
    }

    #[test]
    fn labels_are_short_numbers() {
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (12.345, "12.3"),
            (-4.56789, "-4.57"),
            (99999.0, "99999"),
            (0.00123, "0.00123"),
            (1.5e-7, "1.50e-7"),
            (2.0e6, "2.00e6"),
        ] {
            assert_eq!(format_value(v), want);
        }
    }
}
