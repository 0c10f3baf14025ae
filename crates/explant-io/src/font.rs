//! A 3 × 5 pixel bitmap font: digits and the signs of numbers for colour bars, and capital
//! letters with a little punctuation (and `µ`, `³` for units) for chart labels. Lower-case
//! letters are drawn as capitals, except `e`, which keeps its small glyph for `e` notation.

/// A small `m`, for `µm` in a font of capitals (where `µM` would read as micromolar);
/// [`label_text`] puts it after every `µ`.
pub(crate) const SMALL_M: char = '\u{E000}';

/// `text` as the font should draw a label: ASCII letters in capitals (the font's `e` is
/// kept for numbers only), and `µm` with a small `m`.
pub(crate) fn label_text(text: &str) -> String {
    text.replace("µm", &format!("µ{SMALL_M}")).chars().map(|c| c.to_ascii_uppercase()).collect()
}

/// Glyph width in font cells.
pub(crate) const GLYPH_W: usize = 3;
/// Glyph height in font cells.
pub(crate) const GLYPH_H: usize = 5;
/// Horizontal advance per character in font cells (glyph plus a one-cell gap).
pub(crate) const ADVANCE: usize = GLYPH_W + 1;

/// Rows of a glyph, top first; bit 2 is the left column.
fn glyph(c: char) -> Option<[u8; GLYPH_H]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b001, 0b001],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        '+' => [0b000, 0b010, 0b111, 0b010, 0b000],
        'e' => [0b000, 0b011, 0b111, 0b100, 0b011],
        'A' => [0b010, 0b101, 0b111, 0b101, 0b101],
        'B' => [0b110, 0b101, 0b110, 0b101, 0b110],
        'C' => [0b011, 0b100, 0b100, 0b100, 0b011],
        'D' => [0b110, 0b101, 0b101, 0b101, 0b110],
        'E' => [0b111, 0b100, 0b110, 0b100, 0b111],
        'F' => [0b111, 0b100, 0b110, 0b100, 0b100],
        'G' => [0b011, 0b100, 0b101, 0b101, 0b011],
        'H' => [0b101, 0b101, 0b111, 0b101, 0b101],
        'I' => [0b111, 0b010, 0b010, 0b010, 0b111],
        'J' => [0b001, 0b001, 0b001, 0b101, 0b010],
        'K' => [0b101, 0b101, 0b110, 0b101, 0b101],
        'L' => [0b100, 0b100, 0b100, 0b100, 0b111],
        'M' => [0b101, 0b111, 0b111, 0b101, 0b101],
        'N' => [0b110, 0b101, 0b101, 0b101, 0b101],
        'O' => [0b010, 0b101, 0b101, 0b101, 0b010],
        'P' => [0b110, 0b101, 0b110, 0b100, 0b100],
        'Q' => [0b010, 0b101, 0b101, 0b110, 0b011],
        'R' => [0b110, 0b101, 0b110, 0b101, 0b101],
        'S' => [0b011, 0b100, 0b010, 0b001, 0b110],
        'T' => [0b111, 0b010, 0b010, 0b010, 0b010],
        'U' => [0b101, 0b101, 0b101, 0b101, 0b111],
        'V' => [0b101, 0b101, 0b101, 0b101, 0b010],
        'W' => [0b101, 0b101, 0b111, 0b111, 0b101],
        'X' => [0b101, 0b101, 0b010, 0b101, 0b101],
        'Y' => [0b101, 0b101, 0b010, 0b010, 0b010],
        'Z' => [0b111, 0b001, 0b010, 0b100, 0b111],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '_' => [0b000, 0b000, 0b000, 0b000, 0b111],
        '(' => [0b001, 0b010, 0b010, 0b010, 0b001],
        ')' => [0b100, 0b010, 0b010, 0b010, 0b100],
        '/' => [0b001, 0b001, 0b010, 0b100, 0b100],
        '=' => [0b000, 0b111, 0b000, 0b111, 0b000],
        ',' => [0b000, 0b000, 0b000, 0b010, 0b100],
        '%' => [0b101, 0b001, 0b010, 0b100, 0b101],
        '±' => [0b010, 0b111, 0b010, 0b000, 0b111],
        '×' => [0b000, 0b101, 0b010, 0b101, 0b000],
        'µ' => [0b101, 0b101, 0b101, 0b111, 0b100],
        SMALL_M => [0b000, 0b000, 0b110, 0b111, 0b101],
        '³' => [0b110, 0b010, 0b110, 0b010, 0b110],

        c if c.is_ascii_lowercase() => return glyph(c.to_ascii_uppercase()),
        _ => return None,
    })
}

/// Width in pixels of `text` drawn at `scale` pixels per font cell (no trailing gap).
pub(crate) fn text_width(text: &str, scale: usize) -> usize {
    let n = text.chars().count();
    if n == 0 { 0 } else { (n * ADVANCE - 1) * scale }
}

/// Which pixels of `text` are inked, as `(x, y)` offsets from its top-left corner.
/// Characters without a glyph are left blank.
pub(crate) fn ink(text: &str, scale: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    text.chars().enumerate().flat_map(move |(k, c)| {
        let rows = glyph(c).unwrap_or([0; GLYPH_H]);
        (0..GLYPH_H * scale).flat_map(move |y| {
            (0..GLYPH_W * scale).filter_map(move |x| {
                let on = rows[y / scale] & (0b100 >> (x / scale)) != 0;
                on.then_some((k * ADVANCE * scale + x, y))
            })
        })
    })
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
    fn labels_are_short_and_only_use_known_glyphs() {
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
            let s = format_value(v);
            assert_eq!(s, want);
            assert!(s.chars().all(|c| glyph(c).is_some()), "{s}");
        }
    }

    #[test]
    fn ink_scales_and_advances() {
        assert_eq!(text_width("10", 2), 14);
        // "1" at scale 1 has 8 inked cells.
        assert_eq!(ink("1", 1).count(), 8);
        assert_eq!(ink("1", 2).count(), 32);
        // The second character starts one advance to the right.
        assert!(ink("-1", 1).any(|(x, _)| x >= ADVANCE));
    }
}
