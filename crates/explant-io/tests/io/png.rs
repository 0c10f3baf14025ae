//! PNG pictures: decode them back and look at known pixels.

use std::path::{Path, PathBuf};

use explant_field::Grid;
use explant_io::{CellColour, IoError, Labels, TissueView, render_png};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explant-io-png").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A decoded 8-bit RGB picture.
struct Decoded {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Decoded {
    fn read(path: &Path) -> Self {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        rgb.truncate(info.buffer_size());
        Self { width: info.width, height: info.height, rgb }
    }

    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        let i = 3 * (y as usize * self.width as usize + x as usize);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    fn colours(&self) -> std::collections::BTreeSet<[u8; 3]> {
        self.rgb.chunks(3).map(|p| [p[0], p[1], p[2]]).collect()
    }
}

/// A 200 × 150 µm field (40 × 30 voxels of 5 µm) that rises along x.
fn field() -> (Grid, Vec<f32>) {
    let grid = Grid { nx: 40, ny: 30, nz: 1, dx: 5.0, origin: [0.0, 0.0, 0.0] };
    let data = (0..grid.voxels()).map(|i| (i % grid.nx) as f32 * 0.25).collect();
    (grid, data)
}

/// Pixel of world point `(x, y)` for a 200 × 150 µm extent drawn 400 px wide (2 px/µm).
fn px(x: f32, y: f32) -> (u32, u32) {
    ((x * 2.0) as u32, ((150.0 - y) * 2.0) as u32)
}

const POSITIONS: [[f32; 3]; 3] = [[40.0, 30.0, 0.0], [100.0, 75.0, 0.0], [160.0, 120.0, 0.0]];
const RADII: [f32; 3] = [8.0, 8.0, 8.0];

#[test]
fn field_and_categories_decode_with_right_size_and_cell_colours() {
    let path = scratch("categories").join("tissue.png");
    let (grid, data) = field();
    let view = TissueView {
        field: Some((&grid, &data)),
        positions: &POSITIONS,
        radii: &RADII,
        colour: CellColour::Category(&[0, 1, 0]),
        width_px: 400,
        labels: Labels::default(),
        slice_z: None,
    };
    render_png(&path, &view).unwrap();
    let img = Decoded::read(&path);
    assert_eq!(img.width, 400);
    // 300 px of map (150 µm at 2 px/µm) and a legend strip below it.
    assert!(img.height > 300 && img.height < 340, "height {}", img.height);
    assert!(img.colours().len() > 20, "too few colours: {}", img.colours().len());

    // tab10 blue and orange at the cell centres.
    let (x, y) = px(40.0, 30.0);
    assert_eq!(img.at(x, y), [31, 119, 180]);
    let (x, y) = px(100.0, 75.0);
    assert_eq!(img.at(x, y), [255, 127, 14]);
    // Away from the cells the field shows: viridis's dark end at x = 0, bright end at the far side.
    assert_eq!(img.at(0, 0), [68, 1, 84]);
    assert_eq!(img.at(399, 0), [253, 231, 37]);
}

#[test]
fn values_use_the_ends_of_the_cell_colour_map() {
    let path = scratch("values").join("tissue.png");
    let view = TissueView {
        field: None,
        positions: &POSITIONS,
        radii: &RADII,
        colour: CellColour::Value(&[2.0, 7.0, f32::NAN]),
        width_px: 300,
        labels: Labels::default(),
        slice_z: None,
    };
    render_png(&path, &view).unwrap();
    let img = Decoded::read(&path);
    assert_eq!(img.width, 300);
    // Without a field the extent is the cells' box (32..168 × 22..128 µm) plus 5 % of
    // 136 µm = 6.8 µm on each side: 149.6 × 119.6 µm.
    let (x0, y1, w, h) = (32.0 - 6.8, 128.0 + 6.8, 149.6, 119.6);
    let map_h = (300.0f32 * h / w).round();
    let at = |x: f32, y: f32| img.at(((x - x0) / w * 300.0) as u32, ((y1 - y) / h * map_h) as u32);
    assert_eq!(at(40.0, 30.0), [0, 0, 4], "smallest value is magma's dark end");
    assert_eq!(at(100.0, 75.0), [252, 253, 191], "largest value is magma's light end");
    assert_eq!(at(160.0, 120.0), [160, 160, 160], "NaN is grey");
    assert_eq!(img.at(1, 1), [240, 240, 240], "background");
}

#[test]
fn higher_cells_cover_lower_ones_in_3d() {
    let dir = scratch("z_order");
    let grid = Grid { nx: 10, ny: 10, nz: 3, dx: 10.0, origin: [0.0; 3] };
    let data = vec![1.0; grid.voxels()];
    // Same xy, listed top cell first: the z-sort must still put cell 0 (z = 20) on top.
    let positions = [[50.0, 50.0, 20.0], [50.0, 50.0, 5.0]];
    let view = TissueView {
        field: Some((&grid, &data)),
        positions: &positions,
        radii: &[10.0, 20.0],
        colour: CellColour::Category(&[2, 3]),
        width_px: 100,
        labels: Labels::default(),
        slice_z: None,
    };
    let path = dir.join("a.png");
    render_png(&path, &view).unwrap();
    let img = Decoded::read(&path);
    assert_eq!((img.width, img.height > 100), (100, true));
    assert_eq!(img.at(50, 50), [44, 160, 44], "top cell's colour at the centre");
    assert_eq!(img.at(50, 36), [214, 39, 40], "lower, larger cell shows around it");
}

#[test]
fn output_is_deterministic() {
    let dir = scratch("determinism");
    let (grid, data) = field();
    let values = [0.5, 1.5, 1.0];
    let view = TissueView {
        field: Some((&grid, &data)),
        positions: &POSITIONS,
        radii: &RADII,
        colour: CellColour::Value(&values),
        width_px: 512,
        // Text too: the title, both bars' names with units and the scale bar's length.
        labels: Labels {
            title: Some("tumour-immune: CXCL10 expression over CXCL10, t = 720 min"),
            field: Some("CXCL10, amount/µm³"),
            cells: Some("CXCL10 expression"),
            categories: &[],
            scale_bar: true,
        },
        slice_z: None,
    };
    render_png(&dir.join("a.png"), &view).unwrap();
    render_png(&dir.join("b.png"), &view).unwrap();
    let a = std::fs::read(dir.join("a.png")).unwrap();
    assert_eq!(a, std::fs::read(dir.join("b.png")).unwrap());
}

#[test]
fn empty_tissue_still_draws() {
    let path = scratch("empty").join("t.png");
    let view = TissueView {
        field: None,
        positions: &[],
        radii: &[],
        colour: CellColour::Value(&[]),
        width_px: 64,
        labels: Labels::default(),
        slice_z: None,
    };
    render_png(&path, &view).unwrap();
    assert_eq!(Decoded::read(&path).width, 64);
}

fn render_error(name: &str, view: TissueView<'_>) -> IoError {
    let dir = scratch(name);
    let path = dir.join("bad.png");
    let err = render_png(&path, &view).expect_err("bad input was accepted");
    let msg = err.to_string();
    assert!(msg.contains(&format!("`{}`", path.display())), "path not quoted: {msg}");
    assert!(!msg.ends_with('.'), "trailing period: {msg}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "a file was left behind");
    err
}

#[test]
fn mismatched_lengths_and_bad_sizes_are_errors() {
    let (grid, data) = field();
    let base = TissueView {
        field: Some((&grid, &data)),
        positions: &POSITIONS,
        radii: &RADII,
        colour: CellColour::Category(&[0, 1, 0]),
        width_px: 200,
        labels: Labels::default(),
        slice_z: None,
    };
    let err = render_error("radii", TissueView { radii: &[1.0], ..base });
    assert!(matches!(err, IoError::LengthMismatch { what: "radii", found: 1, expected: 3, .. }));
    let err = render_error("colour", TissueView { colour: CellColour::Value(&[1.0; 4]), ..base });
    assert!(matches!(err, IoError::LengthMismatch { what: "colour", found: 4, .. }));
    let err = render_error("field", TissueView { field: Some((&grid, &data[1..])), ..base });
    assert!(matches!(err, IoError::LengthMismatch { what: "field values", .. }), "{err:?}");
    let err = render_error("width", TissueView { width_px: 3, ..base });
    assert!(matches!(err, IoError::BadWidth { width_px: 3, .. }));
    let flat = Grid { dx: 0.0, ..grid };
    let err = render_error("dx", TissueView { field: Some((&flat, &data)), ..base });
    assert!(matches!(err, IoError::BadGrid { .. }));
    let thin = Grid { nx: 1, ny: 10_000, dx: 1.0, ..grid };
    let tall = vec![0.0; 10_000];
    let err = render_error("aspect", TissueView { field: Some((&thin, &tall)), ..base });
    assert!(matches!(err, IoError::BadAspect { .. }), "{err:?}");
}

#[test]
fn a_slice_outside_the_grid_or_of_a_2d_tissue_is_an_error_and_leaves_no_file() {
    let grid = Grid { nx: 10, ny: 10, nz: 3, dx: 10.0, origin: [0.0, 0.0, 100.0] };
    let data = vec![1.0; grid.voxels()];
    let base = TissueView {
        field: Some((&grid, &data)),
        positions: &[[50.0, 50.0, 115.0]],
        radii: &[10.0],
        colour: CellColour::Category(&[0]),
        width_px: 100,
        labels: Labels::default(),
        slice_z: Some(15.0),
    };
    let err = render_error("slice_below", base);
    assert!(matches!(err, IoError::SliceOutside { z: 15.0, z0: 100.0, z1: 130.0, .. }), "{err:?}");
    assert!(err.to_string().contains("spans z = 100 to 130 µm"), "{err}");
    let (flat, data2d) = field();
    let err = render_error("slice_2d", TissueView { field: Some((&flat, &data2d)), ..base });
    assert!(matches!(err, IoError::SliceOf2d { .. }), "{err:?}");
    // Inside the grid it draws.
    let path = scratch("slice_ok").join("t.png");
    render_png(&path, &TissueView { slice_z: Some(115.0), ..base }).unwrap();
    assert_eq!(Decoded::read(&path).at(50, 50), [31, 119, 180], "the cut cell, tab10 blue");
}
