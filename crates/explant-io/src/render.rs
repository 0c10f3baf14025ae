//! PNG pictures of the tissue: a ligand heat map under the cells, and a legend strip.
//!
//! A 3D tissue is drawn either seen from above (every cell, highest on top, over the field
//! averaged over z) or as a slice at one height: a microscope's optical section, showing
//! only the cells the plane cuts, each as the disc it cuts, over the field in the voxel
//! layer at that height.

use std::path::Path;

use explant_field::Grid;

use crate::IoError;
use crate::atomic::write_atomically;
use crate::colour::{self, Rgb};
use crate::font;

/// Narrowest picture [`render_png`] draws, in pixels.
const MIN_WIDTH: u32 = 32;
/// Largest picture side, in pixels (keeps the buffer under ~200 MB).
const MAX_SIDE: u32 = 8192;
/// Background where there is no field.
const BACKGROUND: Rgb = [240, 240, 240];
/// Background of the legend strip.
const LEGEND_BACKGROUND: Rgb = [255, 255, 255];
/// Cell outlines and legend text.
pub(crate) const INK: Rgb = [25, 25, 25];

/// Text size ([`font`]: the height of a line in pixels) of the legend's labels and the
/// scale bar at `scale` layout pixels per unit (1 to 4): 13 to 16 px lines, text of about
/// 11 to 14 px to the em.
fn label_size(scale: usize) -> usize {
    12 + scale
}

/// Text size of the title, a little larger than the labels: 17 to 20 px lines.
fn title_size(scale: usize) -> usize {
    16 + scale
}

/// Rows of the title strip: the title's line with `scale` rows above and below.
fn title_height(scale: usize) -> usize {
    title_size(scale) + 2 * scale
}

/// How the cells are coloured.
#[derive(Debug, Clone, Copy)]
pub enum CellColour<'a> {
    /// One number per cell, e.g. the expression of one gene, drawn with the `magma` map
    /// from the smallest finite value (black) to the largest (pale yellow). If all values
    /// are equal the cells take the map's middle colour; NaN and infinities are grey.
    Value(&'a [f32]),
    /// One category per cell, e.g. the cell type index, drawn with the 10-colour `tab10`
    /// palette (category `k` gets colour `k mod 10`).
    Category(&'a [u32]),
}

/// The words on a picture (all optional; without them the picture is the bare map and
/// legend strip). Text is drawn as written, in DejaVu Sans (embedded in the binary).
#[derive(Debug, Clone, Copy, Default)]
pub struct Labels<'a> {
    /// A line above the map: what the picture shows and when, e.g.
    /// `tumour-immune: CXCL10 over CXCL10, t = 720 min`.
    pub title: Option<&'a str>,
    /// Written above the field's colour bar, e.g. `CXCL10, amount/µm³`.
    pub field: Option<&'a str>,
    /// Written above the cells' colour bar or swatches, e.g. `CXCL10 expression`.
    pub cells: Option<&'a str>,
    /// The name of each category of [`CellColour::Category`], in code order: the swatches
    /// are labelled with them (truncated to fit) instead of their numbers.
    pub categories: &'a [String],
    /// Draw a scale bar in µm in the map's lower left corner.
    pub scale_bar: bool,
}

/// What [`render_png`] draws.
///
/// # Layout
///
/// The picture shows the region `[x0, x1] × [y0, y1]` (µm): the field's grid extent when a
/// field is given, else the cells' bounding box (centres ± radii) grown by 5 % of its larger
/// side (at least 1 µm) on every side. The map is `width_px` pixels wide and
/// `max(1, round(width_px × (y1 − y0) / (x1 − x0)))` pixels tall, with y pointing up: world
/// point `(x, y)` falls in pixel column `floor((x − x0) / (x1 − x0) × width)` and row
/// `floor((y1 − y) / (y1 − y0) × height)`. Below the map a legend strip holds the field's
/// colour bar on the left half and the cells' colour bar (or category swatches) on the
/// right half, with their minimum and maximum values written below them.
///
/// A 3D tissue is seen from above unless [`slice_z`](Self::slice_z) is set: cells are
/// drawn in order of increasing z (so the highest is on top) and the field is averaged
/// over z. The title (if any) then ends with `, seen from above`.
///
/// # Slices
///
/// With `slice_z = Some(z)` the picture is the plane at height `z` instead: only the cells
/// it cuts (`|z_cell − z| < radius`) are drawn, in input order, each as its cross-section,
/// a disc of radius `sqrt(radius² − (z_cell − z)²)`; the field shows the values of the one
/// voxel layer holding `z` (layer `floor((z − origin_z) / dx)`, the top layer for `z` on
/// the grid's top face), not an average. The region shown is the same as the projection's,
/// so slices at different heights line up. The title (if any) ends with
/// `, slice z = 50 µm` ([`format_um`] writes the height).
///
/// A tissue is 3D when its field has more than one voxel layer, or (without a field) when
/// its cells do not all share one z. A slice of a 2D tissue is refused
/// ([`IoError::SliceOf2d`]) rather than quietly drawn as the whole plane, and so is a
/// height outside the field's grid, or without a field outside the cells' z-extent
/// (centres ± radii) ([`IoError::SliceOutside`]).
#[derive(Debug, Clone, Copy)]
pub struct TissueView<'a> {
    /// One ligand to show as a heat map (`viridis`, from its minimum to its maximum): the
    /// grid, and that ligand's `grid.voxels()` values in the field's `x`-fastest order.
    pub field: Option<(&'a Grid, &'a [f32])>,
    /// Cell centres in µm.
    pub positions: &'a [[f32; 3]],
    /// Cell radii in µm, one per cell. Cells smaller than a pixel still get one pixel.
    pub radii: &'a [f32],
    /// How to colour each cell.
    pub colour: CellColour<'a>,
    /// Width of the picture in pixels, 32 to 8192.
    pub width_px: u32,
    /// Title, legend labels, category names and the scale bar.
    pub labels: Labels<'a>,
    /// Draw the slice at this height (µm) instead of the view from above; see
    /// [Slices](TissueView#slices).
    pub slice_z: Option<f32>,
}

/// A slice height as written in titles and file names: at most two decimals, trailing
/// zeros dropped (`50`, `12.5`, `-3.25`).
pub fn format_um(z: f32) -> String {
    let s = format!("{z:.2}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

/// Draw `view` and write it to `path` as an 8-bit RGB PNG.
///
/// The inputs are checked first: one radius and one colour value per cell, a field with one
/// value per voxel, a usable width, and for a slice a 3D tissue and a height inside it.
/// Cells with a non-finite centre or radius are skipped.
/// The output depends only on the inputs (no clocks, threads or hashing), and the file is
/// written to a temporary file and renamed into place.
pub fn render_png(path: &Path, view: &TissueView<'_>) -> Result<(), IoError> {
    let image = draw(path, view)?;
    write_png(path, &image)
}

/// Encode `image` as an 8-bit RGB PNG and write it to `path` through a temporary file.
pub(crate) fn write_png(path: &Path, image: &Image) -> Result<(), IoError> {
    let mut bytes = Vec::new();
    {
        let png_err = |source| IoError::Png { path: path.to_path_buf(), source };
        let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_err)?;
        writer.write_image_data(&image.rgb).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
    }
    write_atomically(path, |tmp| {
        std::fs::write(tmp, &bytes).map_err(|source| IoError::Io { path: tmp.to_path_buf(), source })
    })
}

/// An RGB picture in memory, rows top first.
pub(crate) struct Image {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) rgb: Vec<u8>,
}

impl Image {
    pub(crate) fn new(width: u32, height: u32, fill: Rgb) -> Self {
        let rgb = fill.repeat(width as usize * height as usize);
        Self { width, height, rgb }
    }

    pub(crate) fn put(&mut self, x: usize, y: usize, c: Rgb) {
        if x < self.width as usize && y < self.height as usize {
            let i = 3 * (y * self.width as usize + x);
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    pub(crate) fn fill_rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, c: Rgb) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.put(x, y, c);
            }
        }
    }

    /// Blend colour `c` over the pixel at `(x, y)` with opacity `alpha` (255: opaque),
    /// in integer arithmetic on the sRGB bytes, rounded to nearest.
    pub(crate) fn blend(&mut self, x: usize, y: usize, c: Rgb, alpha: u8) {
        if x < self.width as usize && y < self.height as usize {
            let i = 3 * (y * self.width as usize + x);
            let a = u32::from(alpha);
            for (dst, &src) in self.rgb[i..i + 3].iter_mut().zip(&c) {
                *dst = ((u32::from(*dst) * (255 - a) + u32::from(src) * a + 127) / 255) as u8;
            }
        }
    }

    /// `text` in [`INK`] at `size` ([`font`]), the top-left corner of its box at `(x, y)`.
    pub(crate) fn text(&mut self, x: usize, y: usize, text: &str, size: usize) {
        self.text_in(x, y, text, size, INK);
    }

    /// `text` in colour `c` at `size`, the top-left corner of its box at `(x, y)`.
    pub(crate) fn text_in(&mut self, x: usize, y: usize, text: &str, size: usize, c: Rgb) {
        for (dx, dy, a) in font::ink(text, size).pixels() {
            self.blend(x + dx, y + dy, c, a);
        }
    }

    /// `text` turned a quarter left (read bottom to top): the top of its box on column
    /// `x` (the box spans columns `x .. x + size`), its first character ending at row
    /// `bottom`.
    pub(crate) fn text_up(&mut self, x: usize, bottom: usize, text: &str, size: usize) {
        for (dx, dy, a) in font::ink(text, size).pixels() {
            if dx <= bottom {
                self.blend(x + dy, bottom - dx, INK, a);
            }
        }
    }

    /// The colour at `(x, y)`.
    #[cfg(test)]
    pub(crate) fn get(&self, x: usize, y: usize) -> Rgb {
        let i = 3 * (y * self.width as usize + x);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// The world region shown, in µm.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Extent {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

/// A field checked against its grid and flattened onto the xy plane: averaged over z, or
/// one voxel layer of a slice.
struct FlatField {
    nx: usize,
    ny: usize,
    dx: f32,
    origin: [f32; 2],
    values: Vec<f32>,
}

/// `grid` is drawable (voxels, a positive voxel size, a finite extent) and `data` has one
/// value per voxel.
fn check_grid(path: &Path, grid: &Grid, data: &[f32]) -> Result<(), IoError> {
    let bad = |reason: String| IoError::BadGrid { path: path.to_path_buf(), reason };
    if grid.nx == 0 || grid.ny == 0 || grid.nz == 0 {
        return Err(bad(format!("it has {} × {} × {} voxels", grid.nx, grid.ny, grid.nz)));
    }
    if !(grid.dx.is_finite() && grid.dx > 0.0) {
        return Err(bad(format!("voxel size `dx` is `{}`, it must be positive", grid.dx)));
    }
    if !grid.origin.iter().all(|o| o.is_finite()) {
        return Err(bad(format!("origin `{:?}` is not finite", grid.origin)));
    }
    let extent_ok = [(grid.origin[0], grid.nx), (grid.origin[1], grid.ny), (grid.origin[2], grid.nz)]
        .iter()
        .all(|&(o, n)| (o + n as f32 * grid.dx).is_finite());
    if !extent_ok {
        return Err(bad("its extent overflows f32".to_owned()));
    }
    let plane = grid.nx.checked_mul(grid.ny);
    let voxels = plane.and_then(|p| p.checked_mul(grid.nz));
    if voxels != Some(data.len()) {
        return Err(IoError::LengthMismatch {
            path: path.to_path_buf(),
            what: "field values",
            found: data.len(),
            expected: voxels.unwrap_or(usize::MAX),
            why: format!("one per voxel of a {} × {} × {} grid", grid.nx, grid.ny, grid.nz),
        });
    }
    Ok(())
}

/// The voxel layer `layer` of a checked field, or its average over z when `None`.
fn flatten(grid: &Grid, data: &[f32], layer: Option<usize>) -> FlatField {
    let plane = grid.nx * grid.ny;
    let flat =
        |values| FlatField { nx: grid.nx, ny: grid.ny, dx: grid.dx, origin: [grid.origin[0], grid.origin[1]], values };
    if let Some(k) = layer {
        return flat(data[k * plane..(k + 1) * plane].to_vec());
    }
    // Column average over z (the identity for a 2D grid). Sum in f64 so deep stacks stay exact
    // enough; a NaN anywhere in a column makes that column "missing".
    let values = (0..plane)
        .map(|i| {
            let sum: f64 = (0..grid.nz).map(|z| f64::from(data[z * plane + i])).sum();
            (sum / grid.nz as f64) as f32
        })
        .collect();
    flat(values)
}

/// Whether the tissue is 3D (see [`TissueView`]); `Err` says why not, for
/// [`IoError::SliceOf2d`].
fn depth(view: &TissueView<'_>) -> Result<(), String> {
    if let Some((grid, _)) = view.field {
        return if grid.nz > 1 {
            Ok(())
        } else {
            Err(format!("the field's grid has one voxel layer (`nz` = {})", grid.nz))
        };
    }
    let mut zs = view.positions.iter().map(|p| p[2]).filter(|z| z.is_finite());
    match zs.next() {
        None => Err("there are no cells with a finite position and no field".to_owned()),
        Some(first) if zs.all(|z| z == first) => Err(format!("every cell lies at z = {} µm", format_um(first))),
        Some(_) => Ok(()),
    }
}

/// Check a slice at height `z` of a view whose field (if any) passed [`check_grid`], and
/// return the field's voxel layer holding `z` (`None` without a field).
fn check_slice(path: &Path, view: &TissueView<'_>, z: f32) -> Result<Option<usize>, IoError> {
    depth(view).map_err(|why| IoError::SliceOf2d { path: path.to_path_buf(), z, why })?;
    let outside = |of, z0, z1| IoError::SliceOutside { path: path.to_path_buf(), z, of, z0, z1 };
    if let Some((grid, _)) = view.field {
        let z0 = grid.origin[2];
        let z1 = z0 + grid.nz as f32 * grid.dx;
        if !(z >= z0 && z <= z1) {
            return Err(outside("the field's grid", z0, z1));
        }
        let k = (f64::from(z - z0) / f64::from(grid.dx)).floor() as usize;
        return Ok(Some(k.min(grid.nz - 1)));
    }
    let (mut z0, mut z1) = (f32::INFINITY, f32::NEG_INFINITY);
    for (p, &r) in view.positions.iter().zip(view.radii) {
        if p[2].is_finite() && r.is_finite() {
            z0 = z0.min(p[2] - r.max(0.0));
            z1 = z1.max(p[2] + r.max(0.0));
        }
    }
    if !(z >= z0 && z <= z1) {
        return Err(outside("the cells (centres ± radii)", z0, z1));
    }
    Ok(None)
}

/// The caller's title with what the picture is: `, slice z = 50 µm` for a slice,
/// `, seen from above` for a 3D tissue's projection, nothing for a 2D tissue.
fn full_title(title: &str, slice_z: Option<f32>, three_d: bool) -> String {
    match slice_z {
        Some(z) => format!("{title}, slice z = {} µm", format_um(z)),
        None if three_d => format!("{title}, seen from above"),
        None => title.to_owned(),
    }
}

fn cells_extent(positions: &[[f32; 3]], radii: &[f32]) -> Extent {
    let mut e: Option<Extent> = None;
    for (p, &r) in positions.iter().zip(radii) {
        if !(p[0].is_finite() && p[1].is_finite() && r.is_finite()) {
            continue;
        }
        let r = r.max(0.0);
        let c = Extent { x0: p[0] - r, y0: p[1] - r, x1: p[0] + r, y1: p[1] + r };
        e = Some(match e {
            None => c,
            Some(e) => Extent { x0: e.x0.min(c.x0), y0: e.y0.min(c.y0), x1: e.x1.max(c.x1), y1: e.y1.max(c.y1) },
        });
    }
    // An empty tissue: a 100 µm square around the origin.
    let e = e.unwrap_or(Extent { x0: -45.0, y0: -45.0, x1: 45.0, y1: 45.0 });
    let margin = (0.05 * (e.x1 - e.x0).max(e.y1 - e.y0)).max(1.0);
    Extent { x0: e.x0 - margin, y0: e.y0 - margin, x1: e.x1 + margin, y1: e.y1 + margin }
}

fn draw(path: &Path, view: &TissueView<'_>) -> Result<Image, IoError> {
    let n = view.positions.len();
    let mismatch = |what, found| IoError::LengthMismatch {
        path: path.to_path_buf(),
        what,
        found,
        expected: n,
        why: format!("one per cell, and `positions` has {n}"),
    };
    if view.radii.len() != n {
        return Err(mismatch("radii", view.radii.len()));
    }
    let colour_len = match view.colour {
        CellColour::Value(v) => v.len(),
        CellColour::Category(c) => c.len(),
    };
    if colour_len != n {
        return Err(mismatch("colour", colour_len));
    }
    let width = view.width_px;
    if !(MIN_WIDTH..=MAX_SIDE).contains(&width) {
        return Err(IoError::BadWidth { path: path.to_path_buf(), width_px: width, min: MIN_WIDTH, max: MAX_SIDE });
    }
    if let Some((g, d)) = view.field {
        check_grid(path, g, d)?;
    }
    let layer = match view.slice_z {
        Some(z) => check_slice(path, view, z)?,
        None => None,
    };
    let field = view.field.map(|(g, d)| flatten(g, d, layer));
    let extent = match &field {
        Some(f) => Extent {
            x0: f.origin[0],
            y0: f.origin[1],
            x1: f.origin[0] + f.nx as f32 * f.dx,
            y1: f.origin[1] + f.ny as f32 * f.dx,
        },
        None => cells_extent(view.positions, view.radii),
    };
    let (ew, eh) = (extent.x1 - extent.x0, extent.y1 - extent.y0);
    let map_h = (f64::from(width) * f64::from(eh) / f64::from(ew)).round().max(1.0);
    let scale = (width as usize / 256).clamp(1, 4);
    let labels = &view.labels;
    // A label row above the bars when either bar is named, a title strip above the map.
    let mut legend = Legend::new(scale, labels.field.is_some() || labels.cells.is_some());
    let legend_h = legend.height() as u32;
    let title_h = if labels.title.is_some() { title_height(scale) as u32 } else { 0 };
    if !(map_h.is_finite() && map_h + f64::from(legend_h + title_h) <= f64::from(MAX_SIDE)) {
        return Err(IoError::BadAspect {
            path: path.to_path_buf(),
            extent_w: ew,
            extent_h: eh,
            width_px: width,
            max: MAX_SIDE,
        });
    }
    let map_h = map_h as u32;
    let mut img = Image::new(width, map_h + legend_h, BACKGROUND);
    let to_px = Transform { extent, sx: f64::from(width) / f64::from(ew), sy: f64::from(map_h) / f64::from(eh) };
    let value_range = match view.colour {
        CellColour::Value(v) => colour::finite_range(v.iter().copied()),
        CellColour::Category(_) => None,
    };

    let field_range = field.as_ref().and_then(|f| colour::finite_range(f.values.iter().copied()));
    if let Some(f) = &field {
        draw_field(&mut img, map_h, f, &to_px, field_range);
    }
    draw_cells(&mut img, map_h, view, &to_px, value_range);
    if labels.scale_bar {
        draw_scale_bar(&mut img, map_h as usize, to_px.sx, scale);
    }

    // Legend strip.
    let top = map_h as usize;
    legend.top = top;
    img.fill_rect(0, top, width as usize, top + legend_h as usize, LEGEND_BACKGROUND);
    let half = width as usize / 2;
    if field.is_some() {
        legend.label(&mut img, 0, half, labels.field);
        legend.colour_bar(&mut img, 0, half, &colour::VIRIDIS, field_range);
    }
    legend.label(&mut img, half, width as usize, labels.cells);
    match view.colour {
        CellColour::Value(_) => legend.colour_bar(&mut img, half, width as usize, &colour::MAGMA, value_range),
        CellColour::Category(codes) => {
            let k = codes.iter().max().map_or(0, |&m| m as usize + 1);
            legend.swatches(&mut img, half, width as usize, k, labels.categories);
        }
    }
    match labels.title {
        Some(title) => {
            let title = full_title(title, view.slice_z, depth(view).is_ok());
            Ok(with_title(img, &title, scale))
        }
        None => Ok(img),
    }
}

/// `img` below a white strip of [`title_height`] rows holding `title` (cut with `…` to fit).
fn with_title(img: Image, title: &str, scale: usize) -> Image {
    let height = title_height(scale);
    let mut out = Image::new(img.width, img.height + height as u32, LEGEND_BACKGROUND);
    let row = 3 * img.width as usize;
    out.rgb[height * row..].copy_from_slice(&img.rgb);
    let size = title_size(scale);
    let fitted = fit(title, img.width as usize - 2 * (3 * scale).min(img.width as usize / 4), size);
    out.text(3 * scale, scale, &fitted, size);
    out
}

/// `text` cut to at most `width` pixels at text size `size`, ending in `…` when cut.
fn fit(text: &str, width: usize, size: usize) -> String {
    if font::text_width(text, size) <= width {
        return text.to_owned();
    }
    let mut cut: Vec<char> = text.chars().collect();
    while !cut.is_empty() && font::text_width(&format!("{}…", cut.iter().collect::<String>()), size) > width {
        cut.pop();
    }
    if cut.is_empty() { String::new() } else { format!("{}…", cut.iter().collect::<String>().trim_end()) }
}

/// A scale bar in the map's lower left corner: the round length (1, 2 or 5 × 10^k µm)
/// closest below a fifth of the map's width, black on a white box, its length written
/// above it. Nothing is drawn on a map too small to hold it.
fn draw_scale_bar(img: &mut Image, map_h: usize, px_per_um: f64, scale: usize) {
    let width = img.width as usize;
    let target_um = width as f64 / 5.0 / px_per_um;
    if !(target_um.is_finite() && target_um > 0.0) {
        return;
    }
    let decade = 10f64.powf(target_um.log10().floor());
    let um = [5.0, 2.0, 1.0].iter().map(|m| m * decade).find(|&v| v <= target_um).unwrap_or(decade);
    let bar_px = (um * px_per_um).round() as usize;
    let label = format!("{} µm", font::format_value(um as f32));
    let size = label_size(scale);
    let text_w = font::text_width(&label, size);
    let pad = 2 * scale;
    let box_w = bar_px.max(text_w) + 2 * pad;
    // The label's line, a gap, the bar.
    let box_h = size + scale + 2 * scale + 2 * pad;
    if box_w + pad > width || box_h + pad > map_h || bar_px == 0 {
        return;
    }
    let (x0, y0) = (pad, map_h - pad - box_h);
    img.fill_rect(x0, y0, x0 + box_w, y0 + box_h, LEGEND_BACKGROUND);
    img.text(x0 + pad, y0 + pad, &label, size);
    let bar_top = y0 + pad + size + scale;
    img.fill_rect(x0 + pad, bar_top, x0 + pad + bar_px, bar_top + 2 * scale, INK);
}

/// World (µm) to pixel coordinates of the map.
struct Transform {
    extent: Extent,
    sx: f64,
    sy: f64,
}

impl Transform {
    fn to_px(&self, x: f32, y: f32) -> (f64, f64) {
        ((f64::from(x) - f64::from(self.extent.x0)) * self.sx, (f64::from(self.extent.y1) - f64::from(y)) * self.sy)
    }

    fn to_world(&self, px: f64, py: f64) -> (f64, f64) {
        (f64::from(self.extent.x0) + px / self.sx, f64::from(self.extent.y1) - py / self.sy)
    }
}

fn draw_field(img: &mut Image, map_h: u32, f: &FlatField, t: &Transform, range: Option<(f32, f32)>) {
    let (lo, hi) = range.unwrap_or((0.0, 0.0));
    let voxel = |w: f64, o: f32, n: usize| -> usize {
        let i = ((w - f64::from(o)) / f64::from(f.dx)).floor();
        if i.is_nan() || i < 0.0 { 0 } else { (i as usize).min(n - 1) }
    };
    for py in 0..map_h as usize {
        for px in 0..img.width as usize {
            let (wx, wy) = t.to_world(px as f64 + 0.5, py as f64 + 0.5);
            let v = f.values[voxel(wy, f.origin[1], f.ny) * f.nx + voxel(wx, f.origin[0], f.nx)];
            let c = if v.is_finite() {
                colour::sample(&colour::VIRIDIS, colour::normalise(v, lo, hi, 0.0))
            } else {
                colour::MISSING
            };
            img.put(px, py, c);
        }
    }
}

fn draw_cells(img: &mut Image, map_h: u32, view: &TissueView<'_>, t: &Transform, value_range: Option<(f32, f32)>) {
    let mut order: Vec<usize> = (0..view.positions.len()).collect();
    // Seen from above: low z first, so higher cells cover lower ones. Stable, so a 2D
    // tissue keeps its input order. A slice keeps the input order.
    if view.slice_z.is_none() {
        order.sort_by(|&a, &b| view.positions[a][2].total_cmp(&view.positions[b][2]));
    }
    let (w, h) = (img.width as i64, i64::from(map_h));
    for i in order {
        let [x, y, z] = view.positions[i];
        let r = view.radii[i];
        if !(x.is_finite() && y.is_finite() && r.is_finite()) {
            continue;
        }
        // In a slice, the disc the plane cuts from the cell's sphere, if it cuts it.
        let r = match view.slice_z {
            None => r,
            Some(plane) => {
                let dz = z - plane;
                if !dz.is_finite() || dz.abs() >= r {
                    continue;
                }
                (r * r - dz * dz).sqrt()
            }
        };
        let fill = match view.colour {
            CellColour::Value(v) => match (v[i].is_finite(), value_range) {
                (true, Some((lo, hi))) => colour::sample(&colour::MAGMA, colour::normalise(v[i], lo, hi, 0.5)),
                _ => colour::MISSING,
            },
            CellColour::Category(c) => colour::category(c[i]),
        };
        let (cx, cy) = t.to_px(x, y);
        let rp = f64::from(r.max(0.0)) * t.sx;
        // Float-to-int casts saturate, so absurd coordinates just clip.
        let xa = ((cx - rp).floor() as i64).max(0);
        let xb = ((cx + rp).ceil() as i64).min(w - 1);
        let ya = ((cy - rp).floor() as i64).max(0);
        let yb = ((cy + rp).ceil() as i64).min(h - 1);
        let outline = rp >= 3.0;
        for py in ya..=yb {
            for px in xa..=xb {
                let dx = px as f64 + 0.5 - cx;
                let dy = py as f64 + 0.5 - cy;
                let d2 = dx * dx + dy * dy;
                if d2 <= rp * rp {
                    let edge = outline && d2 > (rp - 1.0) * (rp - 1.0);
                    img.put(px as usize, py as usize, if edge { INK } else { fill });
                }
            }
        }
        // A cell smaller than a pixel still shows as the pixel holding its centre.
        if rp < 0.71 {
            let (px, py) = (cx.floor(), cy.floor());
            if px >= 0.0 && py >= 0.0 && px < w as f64 && py < h as f64 {
                img.put(px as usize, py as usize, fill);
            }
        }
    }
}

/// Geometry of the legend strip below the map, top to bottom: a margin of `2 × scale`
/// rows, the label line (when there are labels) and a gap of `scale`, the bars (`6 ×
/// scale` rows), a gap of `scale`, the line of the bars' end values and a margin of
/// `scale` (the line's descent leaves more).
struct Legend {
    /// First pixel row of the strip.
    top: usize,
    /// Layout pixels per unit; the strip's margins and bars scale with it.
    scale: usize,
    /// Text size of the labels and values ([`label_size`]).
    size: usize,
    /// Rows of the label line above the bars and its gap (0: no labels).
    label_h: usize,
}

impl Legend {
    /// The strip at the top of the picture; the caller moves it under the map.
    fn new(scale: usize, labelled: bool) -> Self {
        let size = label_size(scale);
        Self { top: 0, scale, size, label_h: if labelled { size + scale } else { 0 } }
    }

    /// Rows of the whole strip.
    fn height(&self) -> usize {
        2 * self.scale + self.label_h + 6 * self.scale + self.scale + self.size + self.scale
    }

    /// Usable `[a, b)` columns of the slot `[x0, x1)` after padding, if any remain.
    fn inner(&self, x0: usize, x1: usize) -> Option<(usize, usize)> {
        let pad = 3 * self.scale;
        (x1 > x0 + 2 * pad + 1).then_some((x0 + pad, x1 - pad))
    }

    fn bar_rows(&self) -> (usize, usize) {
        let y0 = self.top + self.label_h + 2 * self.scale;
        (y0, y0 + 6 * self.scale)
    }

    /// `text` above the bar of the slot `[x0, x1)`, cut to fit.
    fn label(&self, img: &mut Image, x0: usize, x1: usize, text: Option<&str>) {
        let (Some(text), Some((a, b))) = (text, self.inner(x0, x1)) else { return };
        img.text(a, self.top + 2 * self.scale, &fit(text, b - a, self.size), self.size);
    }

    fn text_row(&self) -> usize {
        self.bar_rows().1 + self.scale
    }

    /// A horizontal gradient of `map` with the range's ends written below it.
    fn colour_bar(&self, img: &mut Image, x0: usize, x1: usize, map: &[Rgb], range: Option<(f32, f32)>) {
        let Some((a, b)) = self.inner(x0, x1) else {
            return;
        };
        let (y0, y1) = self.bar_rows();
        let span = (b - a - 1) as f32;
        for x in a..b {
            img.fill_rect(x, y0, x + 1, y1, colour::sample(map, (x - a) as f32 / span));
        }
        let Some((lo, hi)) = range else { return };
        let (lo, hi) = font::format_range(lo, hi);
        let (wl, wh) = (font::text_width(&lo, self.size), font::text_width(&hi, self.size));
        if wl + wh + 2 * self.scale <= b - a {
            img.text(a, self.text_row(), &lo, self.size);
            img.text(b - wh, self.text_row(), &hi, self.size);
        }
    }

    /// One swatch per category `0..k`, labelled with its name from `names` (cut to fit)
    /// or else its number, where the label fits.
    fn swatches(&self, img: &mut Image, x0: usize, x1: usize, k: usize, names: &[String]) {
        let Some((a, b)) = self.inner(x0, x1) else {
            return;
        };
        let (y0, y1) = self.bar_rows();
        let k = k.min((b - a) / 3);
        if k == 0 {
            return;
        }
        let w = (b - a) / k;
        for i in 0..k {
            let left = a + i * w;
            img.fill_rect(left, y0, left + w - 1, y1, colour::category(i as u32));
            let label = match names.get(i) {
                Some(name) => fit(name, w.saturating_sub(2 * self.scale), self.size),
                None => i.to_string(),
            };
            let tw = font::text_width(&label, self.size);
            if tw < w {
                img.text(left + (w - 1 - tw) / 2, self.text_row(), &label, self.size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_of_no_cells_is_a_default_square() {
        let e = cells_extent(&[], &[]);
        assert!(e.x1 > e.x0 && e.y1 > e.y0);
    }

    #[test]
    fn extent_grows_by_margin_and_skips_nan() {
        let e = cells_extent(&[[0.0, 0.0, 0.0], [100.0, 50.0, 0.0], [f32::NAN, 1e9, 0.0]], &[5.0, 5.0, 5.0]);
        assert_eq!(e, Extent { x0: -5.0 - 5.5, y0: -5.0 - 5.5, x1: 105.0 + 5.5, y1: 55.0 + 5.5 });
    }

    #[test]
    fn field_is_averaged_over_z() {
        let grid = Grid { nx: 2, ny: 1, nz: 2, dx: 1.0, origin: [0.0; 3] };
        let data = [1.0, 2.0, 3.0, 6.0];
        check_grid(Path::new("x.png"), &grid, &data).unwrap();
        let f = flatten(&grid, &data, None);
        assert_eq!(f.values, vec![2.0, 4.0]);
    }

    #[test]
    fn labels_add_a_title_strip_a_label_row_names_and_a_scale_bar_and_leave_the_map_alone() {
        // 200 µm of cells drawn 400 px wide: 2 px/µm. A fifth of the width is 40 µm, so
        // the bar is 20 µm (the round length below it), 40 px long.
        let positions = [[20.0, 20.0, 0.0], [100.0, 100.0, 0.0], [180.0, 180.0, 0.0]];
        let names = vec!["organiser".to_owned(), "responder".to_owned()];
        let bare = TissueView {
            field: None,
            positions: &positions,
            radii: &[10.0; 3],
            colour: CellColour::Category(&[0, 1, 1]),
            width_px: 400,
            labels: Labels::default(),
            slice_z: None,
        };
        let labels = Labels {
            title: Some("wnt-organiser: cell type, t = 240 min"),
            field: None,
            cells: Some("cell type"),
            categories: &names,
            scale_bar: true,
        };
        let plain = draw(Path::new("x.png"), &bare).unwrap();
        let named = draw(Path::new("x.png"), &TissueView { labels, ..bare }).unwrap();
        let scale = 1; // 400 px / 256
        let (title_h, label_h) = (title_height(scale), label_size(scale) + scale);
        assert_eq!(named.height as usize, plain.height as usize + title_h + label_h);
        // The map is the same picture, one title strip lower, except the scale bar's box
        // in its lower left corner.
        let map_h = 220; // 220 µm extent (cells ± radius, grown 5 %) at 2 px/µm... read it:
        let map_h = (0..plain.height as usize).find(|&y| plain.get(399, y) == LEGEND_BACKGROUND).unwrap_or(map_h);
        let mut bar_ink = 0;
        for y in 0..map_h {
            for x in 0..400 {
                let (a, b) = (plain.get(x, y), named.get(x, y + title_h));
                if a != b {
                    assert!(x < 60 && y + 30 > map_h, "map pixel ({x}, {y}) changed outside the scale bar");
                    bar_ink += usize::from(b == INK);
                }
            }
        }
        // The bar (40 × 2 px) and its label "20 µm" are ink.
        assert!(bar_ink >= 80, "scale bar ink {bar_ink}");
        let bar_row = (0..map_h).rev().find(|&y| named.get(10, y + title_h) == INK).expect("bar row");
        let run = (0..400).filter(|&x| named.get(x, bar_row + title_h) == INK).count();
        assert_eq!(run, 40, "the bar is 20 µm at 2 px/µm");
        // The title strip has text: dark pixels, and grey ones at the blended edges of the
        // glyphs (anti-aliased, not a bitmap font). The bare picture has no strip.
        let title: Vec<Rgb> =
            (0..title_h).flat_map(|y| (0..400).map(move |x| (x, y))).map(|(x, y)| named.get(x, y)).collect();
        assert!(title.iter().any(|c| c.iter().all(|&v| v < 60)), "dark text in the title strip");
        let edges = title.iter().filter(|c| c[0] == c[1] && c[1] == c[2] && (60..230).contains(&c[0])).count();
        assert!(edges > 50, "{edges} blended grey pixels in the title");
        // The swatches carry names: more text (grey pixels, dark text blended into the
        // white strip) in the legend than the numbers "0", "1" give.
        let ink = |img: &Image, from: usize| {
            (from..img.height as usize)
                .flat_map(|y| (200..400).map(move |x| (x, y)))
                .map(|(x, y)| img.get(x, y))
                .filter(|c| c[0] == c[1] && c[1] == c[2] && c[0] < 255)
                .count()
        };
        assert!(ink(&named, title_h + map_h) > 4 * ink(&plain, map_h));
    }

    #[test]
    fn colour_bar_ends_that_round_alike_get_more_digits() {
        assert_eq!(font::format_range(0.16151, 0.16238), ("0.1615".to_owned(), "0.1624".to_owned()));
        assert_eq!(font::format_range(0.0, 2.5), ("0".to_owned(), "2.5".to_owned()));
        assert_eq!(font::format_range(1.0, 1.0), ("1".to_owned(), "1".to_owned()));
    }

    #[test]
    fn labels_are_written_as_given_and_cut_with_an_ellipsis_to_fit() {
        let size = label_size(3);
        let label = "CXCL10, amount/µm³";
        assert_eq!(fit(label, font::text_width(label, size), size), label, "mixed case, units as written");
        let cut = fit(label, 60, size);
        assert!(cut.ends_with('…') && label.starts_with(cut.trim_end_matches('…')), "{cut}");
        assert!(font::text_width(&cut, size) <= 60 && font::text_width(&cut, size) > 40, "{cut}");
        assert_eq!(fit(label, 2, size), "");
    }

    /// A 100 × 100 × 50 µm grid of 10 µm voxels whose layer 1 (z in [10, 20) µm) rises
    /// with x and whose other layers fall with x, ten times as steeply: the average over z
    /// falls with x, so a slice that averaged would be drawn the other way round.
    fn layered_field() -> (Grid, Vec<f32>) {
        let grid = Grid { nx: 10, ny: 10, nz: 5, dx: 10.0, origin: [0.0; 3] };
        let mut data = Vec::with_capacity(grid.voxels());
        for k in 0..grid.nz {
            for _ in 0..grid.ny {
                for i in 0..grid.nx {
                    data.push(if k == 1 { i as f32 } else { 10.0 * (9 - i) as f32 });
                }
            }
        }
        (grid, data)
    }

    /// Four cells of radius 10 µm: one centred on the plane z = 15, one 6 µm above it (cut
    /// as a disc of radius 8), one 25 µm above it and one exactly 10 µm above it (not cut).
    const SLICE_CELLS: [[f32; 3]; 4] = [[30.0, 50.0, 15.0], [70.0, 50.0, 21.0], [50.0, 80.0, 40.0], [50.0, 20.0, 25.0]];

    #[test]
    fn a_slice_draws_only_the_cells_it_cuts_as_their_cross_sections_over_one_field_layer() {
        let (grid, data) = layered_field();
        let types = [0, 1, 2, 3];
        let view = TissueView {
            field: Some((&grid, &data)),
            positions: &SLICE_CELLS,
            radii: &[10.0; 4],
            colour: CellColour::Category(&types),
            width_px: 100,
            labels: Labels::default(),
            slice_z: Some(15.0),
        };
        // 100 µm on 100 px: world (x, y) is pixel (floor(x), floor(100 − y)).
        let slice = draw(Path::new("x.png"), &view).unwrap();
        let above = draw(Path::new("x.png"), &TissueView { slice_z: None, ..view }).unwrap();
        let (dark, bright) = ([68, 1, 84], [253, 231, 37]);

        // The field is layer 1's, rising with x; from above it is the average, falling.
        assert_eq!((slice.get(0, 0), slice.get(99, 0)), (dark, bright), "the slice shows layer 1");
        assert_eq!((above.get(0, 0), above.get(99, 0)), (bright, dark), "from above, the mean over z");

        // The cell centred on the plane is drawn whole.
        assert_eq!(slice.get(30, 50), colour::category(0));
        assert_eq!(slice.get(39, 50), INK, "its outline at 9.5 µm from the centre");
        // The cell 6 µm above is a disc of radius sqrt(10² − 6²) = 8 µm: filled at 6.5 µm,
        // outlined at 7.5 µm and gone at 8.5 µm, where the whole cell (seen from above) is
        // still filled.
        assert_eq!(slice.get(76, 50), colour::category(1));
        assert_eq!(slice.get(77, 50), INK);
        assert_ne!(slice.get(78, 50), colour::category(1));
        assert_ne!(slice.get(78, 50), INK);
        assert_eq!(above.get(78, 50), colour::category(1));
        // The cells the plane misses (25 µm above, and exactly one radius above) are not
        // drawn at all; from above they are.
        for (x, y, k) in [(50, 20, 2), (50, 80, 3)] {
            assert_eq!(above.get(x, y), colour::category(k));
            assert_ne!(slice.get(x, y), colour::category(k), "cell {k} is not in the plane");
        }
        // Nothing but the two cut cells in the map: no pixel of cells 2 and 3's colours.
        let map =
            |img: &Image, c: Rgb| (0..100).flat_map(|y| (0..100).map(move |x| (x, y))).any(|(x, y)| img.get(x, y) == c);
        assert!(!map(&slice, colour::category(2)) && !map(&slice, colour::category(3)));
    }

    #[test]
    fn the_slice_layer_is_the_one_holding_z() {
        let (grid, data) = layered_field();
        let f = flatten(&grid, &data, Some(1));
        assert_eq!(f.values[..10], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        let view = TissueView {
            field: Some((&grid, &data)),
            positions: &SLICE_CELLS,
            radii: &[10.0; 4],
            colour: CellColour::Category(&[0; 4]),
            width_px: 100,
            labels: Labels::default(),
            slice_z: None,
        };
        let layer = |z| check_slice(Path::new("x.png"), &view, z).unwrap();
        assert_eq!(
            [layer(0.0), layer(9.99), layer(10.0), layer(15.0), layer(49.0), layer(50.0)],
            [Some(0), Some(0), Some(1), Some(1), Some(4), Some(4)]
        );
    }

    #[test]
    fn a_slice_outside_the_tissue_or_of_a_flat_tissue_is_refused_naming_the_height() {
        let (grid, data) = layered_field();
        let view = TissueView {
            field: Some((&grid, &data)),
            positions: &SLICE_CELLS,
            radii: &[10.0; 4],
            colour: CellColour::Category(&[0; 4]),
            width_px: 100,
            labels: Labels::default(),
            slice_z: Some(60.0),
        };
        let err = draw(Path::new("x.png"), &view).err().expect("z = 60 is above the grid");
        assert!(matches!(err, IoError::SliceOutside { z0: 0.0, z1: 50.0, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("`z = 60` µm") && msg.contains("the field's grid, which spans z = 0 to 50 µm"), "{msg}");
        let err = draw(Path::new("x.png"), &TissueView { slice_z: Some(f32::NAN), ..view }).err().unwrap();
        assert!(matches!(err, IoError::SliceOutside { .. }), "{err:?}");

        // Without a field, the cells' extent: 15 − 10 to 40 + 10 µm.
        let cells = TissueView { field: None, slice_z: Some(-5.5), ..view };
        let err = draw(Path::new("x.png"), &cells).err().unwrap().to_string();
        assert!(
            err.contains("`z = -5.5` µm is outside the cells (centres ± radii), which spans z = 5 to 50 µm"),
            "{err}"
        );
        assert!(draw(Path::new("x.png"), &TissueView { slice_z: Some(45.0), ..cells }).is_ok());

        // A 2D tissue: one voxel layer, or (without a field) every cell at one z.
        let flat = Grid { nz: 1, ..grid };
        let err =
            draw(Path::new("x.png"), &TissueView { field: Some((&flat, &data[..100])), slice_z: Some(0.0), ..view })
                .err()
                .unwrap();
        assert!(matches!(err, IoError::SliceOf2d { .. }), "{err:?}");
        assert!(err.to_string().contains("needs a 3D tissue, but the field's grid has one voxel layer"), "{err}");
        let planar = [[30.0, 50.0, 0.0], [70.0, 50.0, 0.0]];
        let err = draw(
            Path::new("x.png"),
            &TissueView {
                field: None,
                positions: &planar,
                radii: &[10.0; 2],
                colour: CellColour::Category(&[0; 2]),
                slice_z: Some(0.0),
                ..view
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("every cell lies at z = 0 µm"), "{err}");
    }

    #[test]
    fn the_title_says_slice_or_seen_from_above() {
        assert_eq!(full_title("cell type, t = 60 min", Some(50.0), true), "cell type, t = 60 min, slice z = 50 µm");
        assert_eq!(full_title("cell type", Some(12.5), true), "cell type, slice z = 12.5 µm");
        assert_eq!(full_title("cell type", None, true), "cell type, seen from above");
        assert_eq!(full_title("cell type", None, false), "cell type", "a 2D tissue is just the tissue");
        assert_eq!(
            [format_um(750.0), format_um(-3.25), format_um(0.1), format_um(-0.001)],
            ["750", "-3.25", "0.1", "0"]
        );
    }

    #[test]
    fn tiny_cell_still_gets_a_pixel() {
        let view = TissueView {
            field: None,
            positions: &[[0.0, 0.0, 0.0], [1000.0, 1000.0, 0.0]],
            radii: &[0.01, 0.01],
            colour: CellColour::Category(&[3, 3]),
            width_px: 64,
            labels: Labels::default(),
            slice_z: None,
        };
        let img = draw(Path::new("x.png"), &view).unwrap();
        let hits = img.rgb.chunks(3).filter(|p| *p == colour::category(3)).count();
        // Two cells plus the legend swatch for category 3 (swatches 0..=3).
        assert!(hits >= 2, "{hits}");
    }
}
