//! Colour maps for the pictures.
//!
//! The continuous maps are matplotlib's perceptually uniform `viridis` and `magma`
//! (van der Walt & Smith, 2015), approximated by linear interpolation between nine control
//! points taken from the published maps at t = 0, 1/8, …, 1. Nine points keep the
//! lightness ramp monotone and the error against the full 256-entry tables to a few units
//! per channel, which is invisible in a picture. The categorical palette is the 10-colour
//! `tab10` / d3 `category10` set.

/// An 8-bit sRGB colour.
pub(crate) type Rgb = [u8; 3];

/// `viridis` control points at t = k/8: dark blue-purple to yellow. Used for ligand fields.
pub(crate) const VIRIDIS: [Rgb; 9] = [
    [68, 1, 84],
    [72, 40, 120],
    [62, 73, 137],
    [49, 104, 142],
    [38, 130, 142],
    [31, 158, 137],
    [53, 183, 121],
    [110, 206, 88],
    [253, 231, 37],
];

/// `magma` control points at t = k/8: black through purple and orange to pale yellow.
/// Used for per-cell values, so cells stand apart from the `viridis` field beneath.
pub(crate) const MAGMA: [Rgb; 9] = [
    [0, 0, 4],
    [28, 16, 68],
    [79, 18, 123],
    [129, 37, 129],
    [181, 54, 122],
    [229, 80, 100],
    [251, 135, 97],
    [254, 194, 135],
    [252, 253, 191],
];

/// A diverging map for signed values, ColorBrewer's `RdBu` (Brewer, 2002) reversed, at
/// t = k/8: blue (t = 0, the negative end) through near-white (t = 1/2, zero) to red
/// (t = 1, the positive end). Used for the shares and effects of an explanation.
pub(crate) const DIVERGING: [Rgb; 9] = [
    [33, 102, 172],
    [67, 147, 195],
    [146, 197, 222],
    [209, 229, 240],
    [247, 247, 247],
    [253, 219, 199],
    [244, 165, 130],
    [214, 96, 77],
    [178, 24, 43],
];

/// `tab10`: ten well-separated hues for categories, cycled when there are more.
pub(crate) const CATEGORICAL: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Colour for values that are NaN or infinite.
pub(crate) const MISSING: Rgb = [160, 160, 160];

/// Sample a map given by equally spaced control points at `t` (clamped to [0, 1]).
pub(crate) fn sample(map: &[Rgb], t: f32) -> Rgb {
    let last = map.len() - 1;
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * last as f32;
    let i = (x.floor() as usize).min(last.saturating_sub(1));
    let f = x - i as f32;
    let (a, b) = (map[i], map[(i + 1).min(last)]);
    std::array::from_fn(|c| {
        let v = f32::from(a[c]) + f * (f32::from(b[c]) - f32::from(a[c]));
        v.round().clamp(0.0, 255.0) as u8
    })
}

/// The palette colour of category `code`.
pub(crate) fn category(code: u32) -> Rgb {
    CATEGORICAL[code as usize % CATEGORICAL.len()]
}

/// `#rrggbb` of `c`, as SVG, matplotlib and AnnData's `uns['<column>_colors']` write it.
pub(crate) fn hex(c: Rgb) -> String {
    let [r, g, b] = c;
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The range of the finite values in `values`, or `None` if there are none.
pub(crate) fn finite_range(values: impl IntoIterator<Item = f32>) -> Option<(f32, f32)> {
    values.into_iter().filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Position of `v` in `[lo, hi]` as t ∈ [0, 1]; `flat` when the range is empty.
pub(crate) fn normalise(v: f32, lo: f32, hi: f32, flat: f32) -> f32 {
    let span = hi - lo;
    if span > 0.0 && span.is_finite() { ((v - lo) / span).clamp(0.0, 1.0) } else { flat }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_hits_the_control_points_and_interpolates() {
        assert_eq!(sample(&VIRIDIS, 0.0), VIRIDIS[0]);
        assert_eq!(sample(&VIRIDIS, 1.0), VIRIDIS[8]);
        assert_eq!(sample(&VIRIDIS, 0.5), VIRIDIS[4]);
        assert_eq!(sample(&MAGMA, -3.0), MAGMA[0]);
        assert_eq!(sample(&MAGMA, f32::NAN), MAGMA[0]);
        let mid = sample(&VIRIDIS, 1.0 / 16.0);
        assert_eq!(mid, [70, 21, 102]);
    }

    #[test]
    fn maps_get_lighter_monotonically() {
        // Perceptual maps must not reverse lightness; use Rec. 709 luma as a proxy.
        for map in [&VIRIDIS, &MAGMA] {
            let luma = |c: Rgb| 0.2126 * f32::from(c[0]) + 0.7152 * f32::from(c[1]) + 0.0722 * f32::from(c[2]);
            let l: Vec<f32> = (0..=64).map(|k| luma(sample(map, k as f32 / 64.0))).collect();
            assert!(l.windows(2).all(|w| w[1] >= w[0] - 0.5), "{l:?}");
        }
    }

    #[test]
    fn hex_writes_lowercase_rrggbb() {
        assert_eq!(hex(category(0)), "#1f77b4");
        assert_eq!(hex(category(13)), "#d62728", "the palette cycles");
        assert_eq!(hex([0, 10, 255]), "#000aff");
    }

    #[test]
    fn finite_range_skips_nan_and_infinity() {
        assert_eq!(finite_range([f32::NAN, 2.0, f32::INFINITY, -1.0]), Some((-1.0, 2.0)));
        assert_eq!(finite_range([f32::NAN]), None);
        assert_eq!(normalise(3.0, 3.0, 3.0, 0.5), 0.5);
        assert_eq!(normalise(2.0, 1.0, 3.0, 0.0), 0.5);
    }
}
