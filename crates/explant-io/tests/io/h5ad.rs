//! `.h5ad` output: read back by Python `anndata` where available, input checks everywhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use explant_io::{IoError, Snapshot, write_h5ad};

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explant-io-h5ad").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
    scene: String,
}

const SCENE: &str = "[input]\nversion = 1\n\n[tissue]\nname = \"crypt – ß\" # unicode\n";

impl Data {
    fn new(n: usize, g: usize, n_types: usize, dims: usize) -> Self {
        Self {
            genes: (0..g).map(|j| format!("Gene{j}")).collect(),
            types: (0..n_types).map(|k| format!("type_{k}")).collect(),
            ids: (0..n as u64).map(|i| 1000 + 7 * i).collect(),
            cell_types: (0..n).map(|i| (i % n_types.max(1)) as u32).collect(),
            generations: (0..n as u32).map(|i| i / 10).collect(),
            perturbed: (0..n).map(|i| i % 3 == 0).collect(),
            positions: (0..n).map(|i| [i as f32 * 1.5, 100.0 - i as f32, 0.25 * i as f32]).collect(),
            expression: (0..n * g).map(|k| k as f32 * 0.5).collect(),
            dims,
            scene: SCENE.to_owned(),
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
            tick: 1234,
            time_min: 61.5,
            scene_toml: &self.scene,
            explant_version: "0.1.0",
            fields: None,
            extra_obs: &[],
            neighbours: None,
            gzip: None,
            layers: &[],
        }
    }
}

/// The Python interpreter to check files with, or `None` (after saying so) to skip.
fn python() -> Option<PathBuf> {
    let require = std::env::var("EXPLANT_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    if let Some(p) = std::env::var_os("EXPLANT_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        let guard = crate::lock();
        let has_anndata = Command::new(&venv).args(["-c", "import anndata"]).output().is_ok_and(|o| o.status.success());
        drop(guard);
        if has_anndata {
            return Some(venv);
        }
    }
    let msg = "SKIPPED: no Python with anndata (set EXPLANT_PYTHON, or create .venv with \
               `anndata` at the workspace root); the .h5ad file was written but not read back";
    assert!(!require, "EXPLANT_REQUIRE_PYTHON=1 but {msg}");
    eprintln!("\n{}\n{msg}\n{}\n", "!".repeat(78), "!".repeat(78));
    None
}

/// Run `tests/python/check_h5ad.py` on `path`; skip (loudly) without Python.
/// A Python reader process. Tests in this binary write HDF5 files from several threads
/// while others start Python; HDF5 opens files without close-on-exec, so a child started
/// while another test's file is open inherits that descriptor and its `flock`, and a
/// reader of that file would then fail to take its own lock. The reader does not need
/// the lock (every file is complete before it is read), so it is switched off. Readers
/// are started under `crate::lock`, which the import tests (`read.rs`, in the same
/// binary) hold while they write files that they read back with locking on.
fn reader(py: &Path) -> Command {
    let mut c = Command::new(py);
    c.env("HDF5_USE_FILE_LOCKING", "FALSE");
    c
}

fn python_check(path: &Path, d: &Data, extra: &[String]) {
    let Some(py) = python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/check_h5ad.py");
    let guard = crate::lock();
    let out = reader(&py)
        .arg(&script)
        .arg(path)
        .arg(d.ids.len().to_string())
        .arg(d.genes.len().to_string())
        .arg(d.genes.join(","))
        .arg(d.dims.to_string())
        .arg(format!("--categories={}", d.types.join(",")))
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", py.display()));
    drop(guard);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check_h5ad.py failed on {}:\n{stdout}\n{stderr}", path.display());
    assert!(stdout.starts_with("ok"), "{stdout}");
}

#[test]
fn small_2d_snapshot_reads_back_in_anndata() {
    let dir = scratch("small_2d");
    let path = dir.join("snap.h5ad");
    let d = Data::new(50, 4, 2, 2);
    write_h5ad(&path, &d.snapshot()).unwrap();
    // Cell 17, gene 3 holds (17 × 4 + 3) × 0.5 = 35.5; cell 17's y is 100 − 17 = 83.
    let extra = ["--x=17,3,35.5", "--spatial=17,1,83", "--scene-contains=crypt – ß"];
    python_check(&path, &d, &extra.map(String::from));
    // Nothing but the file itself is left in the directory.
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["snap.h5ad"]);
}

#[test]
fn snapshot_3d_with_many_cell_types_uses_wide_codes() {
    // 130 categories no longer fit pandas' int8 codes, so int16 codes are written.
    let path = scratch("wide_3d").join("snap.h5ad");
    let d = Data::new(260, 3, 130, 3);
    write_h5ad(&path, &d.snapshot()).unwrap();
    let extra = ["--x=259,2,389.5", "--spatial=10,2,2.5"];
    python_check(&path, &d, &extra.map(String::from));
}

#[test]
fn empty_tissue_is_a_valid_file() {
    let path = scratch("empty").join("snap.h5ad");
    let d = Data::new(0, 4, 2, 2);
    write_h5ad(&path, &d.snapshot()).unwrap();
    python_check(&path, &d, &[]);
}

#[test]
fn rewrite_replaces_the_file_and_is_byte_identical() {
    let dir = scratch("rewrite");
    let path = dir.join("snap.h5ad");
    std::fs::write(&path, b"stale contents").unwrap();
    let d = Data::new(20, 3, 2, 2);
    write_h5ad(&path, &d.snapshot()).unwrap();
    let first = std::fs::read(&path).unwrap();
    assert_eq!(&first[..8], b"\x89HDF\r\n\x1a\n", "not an HDF5 file");
    write_h5ad(&path, &d.snapshot()).unwrap();
    assert_eq!(first, std::fs::read(&path).unwrap(), "same snapshot, different bytes");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

/// Write a small snapshot spoiled by `spoil` and return the error, checking that the
/// message quotes the path and that no file appeared.
fn error_after(name: &str, spoil: impl FnOnce(&mut Data)) -> IoError {
    let dir = scratch(name);
    let path = dir.join("bad.h5ad");
    let mut d = Data::new(10, 4, 2, 2);
    spoil(&mut d);
    let err = write_h5ad(&path, &d.snapshot()).expect_err("bad input was accepted");
    let msg = err.to_string();
    assert!(msg.contains(&format!("`{}`", path.display())), "path not quoted: {msg}");
    assert!(!msg.ends_with('.'), "trailing period: {msg}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "a file was left behind");
    err
}

#[test]
fn expression_length_mismatch_is_reported() {
    let err = error_after("expr_len", |d| d.expression.truncate(39));
    match &err {
        IoError::LengthMismatch { what: "expression", found: 39, expected: 40, .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("10 cells × 4 genes"), "{err}");
}

#[test]
fn per_cell_length_mismatches_are_reported() {
    let err = error_after("pos_len", |d| d.positions.truncate(9));
    assert!(matches!(err, IoError::LengthMismatch { what: "positions", found: 9, expected: 10, .. }));
    let err = error_after("gen_len", |d| d.generations.clear());
    assert!(matches!(err, IoError::LengthMismatch { what: "generations", found: 0, .. }));
    let err = error_after("perturbed_len", |d| {
        d.perturbed.pop();
    });
    assert!(matches!(err, IoError::LengthMismatch { what: "perturbed", .. }));
    let err = error_after("type_len", |d| d.cell_types.push(0));
    assert!(matches!(err, IoError::LengthMismatch { what: "cell_types", found: 11, .. }));
}

#[test]
fn bad_dims_cell_types_names_and_strings_are_reported() {
    assert!(matches!(error_after("dims", |d| d.dims = 1), IoError::BadDims { dims: 1, .. }));
    let err = error_after("code", |d| d.cell_types[2] = 2);
    assert!(matches!(err, IoError::BadCellType { cell: 2, code: 2, names: 2, .. }), "{err:?}");
    let err = error_after("dup", |d| d.genes[2] = "Gene0".to_owned());
    assert!(matches!(&err, IoError::Duplicate { what: "genes", name, .. } if name == "Gene0"), "{err:?}");
    let err = error_after("dup_id", |d| d.ids[5] = d.ids[0]);
    assert!(matches!(&err, IoError::Duplicate { what: "cell_ids", .. }), "{err:?}");
    let err = error_after("nul", |d| d.scene = "a\0b".to_owned());
    assert!(matches!(&err, IoError::NulInString { what, .. } if what == "scene_toml"), "{err:?}");
    let err = error_after("nul_gene", |d| d.genes[1] = "G\0".to_owned());
    assert!(matches!(&err, IoError::NulInString { what, .. } if what == "genes[1]"), "{err:?}");
}

#[test]
fn unwritable_targets_are_errors_not_panics() {
    let dir = scratch("unwritable");
    let d = Data::new(3, 2, 1, 2);
    let missing = dir.join("no/such/dir/snap.h5ad");
    let err = write_h5ad(&missing, &d.snapshot()).expect_err("wrote into a missing directory");
    assert!(matches!(err, IoError::Io { .. }), "{err:?}");
    let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("does not exist"), "{cause}");

    // The target is a directory: the file is written, the rename fails, and the temporary
    // file is cleaned up.
    let target = dir.join("taken.h5ad");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"").unwrap();
    let err = write_h5ad(&target, &d.snapshot()).expect_err("replaced a directory");
    assert!(err.to_string().contains("taken.h5ad"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["taken.h5ad"], "temporary file left behind");
}

#[test]
fn ligand_fields_open_in_one_line_of_python() {
    let dir = scratch("fields");
    let path = dir.join("snap.h5ad");
    let d = Data::new(10, 3, 2, 2);
    let grid = explant_field::Grid { nx: 5, ny: 4, nz: 1, dx: 10.0, origin: [1.0, 2.0, 0.0] };
    let names = ["WNT3A".to_string(), "BMP4".to_string()];
    // Value at channel c, (y, x) = c·100 + y·10 + x.
    let data: Vec<f32> =
        (0..2).flat_map(|c| (0..4).flat_map(move |y| (0..5).map(move |x| (c * 100 + y * 10 + x) as f32))).collect();
    let mut snap = d.snapshot();
    snap.fields = Some(explant_io::FieldSnapshot { names: &names, grid: &grid, data: &data });
    write_h5ad(&path, &snap).unwrap();
    python_check(&path, &d, &[]);
    let Some(py) = python() else { return };
    let code = format!(
        "import anndata; u = anndata.read_h5ad({:?}).uns; f = u['fields']['BMP4']; g = u['fields_grid']; \
         assert f.shape == (4, 5), f.shape; assert f[3, 2] == 132.0, f[3, 2]; \
         assert list(g['origin']) == [1.0, 2.0, 0.0]; assert g['spacing'] == 10.0; assert list(g['shape']) == [4, 5]; print('ok')",
        path.display().to_string()
    );
    let guard = crate::lock();
    let out = reader(&py).args(["-c", &code]).output().unwrap();
    drop(guard);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A field of the wrong size is refused.
    let short = &data[..data.len() - 1];
    snap.fields = Some(explant_io::FieldSnapshot { names: &names, grid: &grid, data: short });
    let err = write_h5ad(&path, &snap).unwrap_err().to_string();
    assert!(err.contains("fields.data"), "{err}");
}

/// A ring over `n` cells: each cell's neighbours are the one before and the one after,
/// as sorted CSR.
fn ring(n: u32) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0];
    let mut indices = Vec::new();
    for i in 0..n {
        let mut row = [(i + n - 1) % n, (i + 1) % n];
        row.sort_unstable();
        indices.extend(row);
        offsets.push(indices.len() as u32);
    }
    (offsets, indices)
}

/// Run `code` (Python, with the snapshot's path as `p`) and require it to print `ok`.
fn python_asserts(path: &Path, code: &str) {
    let Some(py) = python() else { return };
    let code = format!("p = {:?}\n{code}\nprint('ok')", path.display().to_string());
    let guard = crate::lock();
    let out = reader(&py).args(["-c", &code]).output().unwrap();
    drop(guard);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim_end().ends_with("ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_neighbour_graph_is_written_as_symmetric_csr_with_distances_and_squidpy_keys() {
    let path = scratch("graph").join("snap.h5ad");
    let d = Data::new(12, 3, 3, 3);
    let (offsets, indices) = ring(12);
    let mut snap = d.snapshot();
    snap.neighbours =
        Some(explant_io::NeighbourGraph { offsets: &offsets, indices: &indices, radius: 12.5, source: "a ring" });
    write_h5ad(&path, &snap).unwrap();
    python_check(&path, &d, &["--graph".to_owned()]);
    python_asserts(
        &path,
        "import anndata, numpy as np, h5py\n\
         a = anndata.read_h5ad(p); c = a.obsp['spatial_connectivities']; s = a.obsp['spatial_distances']\n\
         assert c.format == 'csr' and c.shape == (12, 12) and c.dtype == np.float32, (c.format, c.shape, c.dtype)\n\
         want = np.zeros((12, 12)); i = np.arange(12); want[i, (i + 1) % 12] = 1; want[(i + 1) % 12, i] = 1\n\
         assert (c.toarray() == want).all()\n\
         xyz = np.array([[k * 1.5, 100.0 - k, 0.25 * k] for k in range(12)], np.float32).astype(np.float64)\n\
         r, q = c.nonzero(); assert np.allclose(s[r, q].A1, np.linalg.norm(xyz[r] - xyz[q], axis=1), rtol=1e-12)\n\
         assert np.array_equal(s.indptr, c.indptr) and np.array_equal(s.indices, c.indices)\n\
         u = a.uns['spatial_neighbors']\n\
         assert u['connectivities_key'] == 'spatial_connectivities' and u['distances_key'] == 'spatial_distances', u\n\
         assert u['params']['radius'] == 12.5 and u['params']['coord_type'] == 'generic' and u['params']['source'] == 'a ring', u\n\
         assert list(a.uns['cell_type_colors']) == ['#1f77b4', '#ff7f0e', '#2ca02c'], a.uns['cell_type_colors']\n\
         assert list(a.obs['tick']) == [1234] * 12 and list(a.obs['time_min']) == [61.5] * 12\n\
         f = h5py.File(p); assert f['obsp/spatial_connectivities'].attrs['encoding-type'] == 'csr_matrix'\n\
         assert list(f['obsp/spatial_connectivities'].attrs['shape']) == [12, 12]",
    );
}

/// Write a 10-cell snapshot whose ring graph is spoiled by `spoil`, and return the error.
fn graph_error(name: &str, spoil: impl FnOnce(&mut Vec<u32>, &mut Vec<u32>, &mut f32)) -> String {
    let dir = scratch(name);
    let path = dir.join("bad.h5ad");
    let d = Data::new(10, 2, 1, 2);
    let (mut offsets, mut indices) = ring(10);
    let mut radius = 5.0;
    spoil(&mut offsets, &mut indices, &mut radius);
    let mut snap = d.snapshot();
    snap.neighbours = Some(explant_io::NeighbourGraph { offsets: &offsets, indices: &indices, radius, source: "x" });
    let err = write_h5ad(&path, &snap).expect_err("a bad graph was accepted").to_string();
    assert!(err.contains(&format!("`{}`", path.display())), "path not quoted: {err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "a file was left behind");
    err
}

#[test]
fn a_neighbour_graph_that_is_not_undirected_sorted_csr_is_refused_naming_the_cell() {
    // Cell 0's row is [1, 9]: drop 0 from 9's row [0, 8], so 9 no longer lists 0 back.
    let err = graph_error("one_way", |o, ix, _| {
        ix.remove(18);
        *o.last_mut().unwrap() -= 1;
    });
    assert!(err.contains("cell 0") && err.contains("neighbour `9` does not list this cell back"), "{err}");
    let err = graph_error("self", |_, ix, _| ix[2] = 1);
    assert!(err.contains("cell 1") && err.contains("its own neighbour"), "{err}");
    let err = graph_error("unsorted", |_, ix, _| ix.swap(0, 1));
    assert!(err.contains("cell 0") && err.contains("`9` then `1` are not strictly ascending"), "{err}");
    let err = graph_error("range", |_, ix, _| ix[19] = 10);
    assert!(err.contains("cell 9") && err.contains("neighbour `10` is not a cell"), "{err}");
    let err = graph_error("offsets", |o, _, _| {
        o.pop();
    });
    assert!(err.contains("`neighbours.offsets` has 10 entries but 11 were expected"), "{err}");
    let err = graph_error("end", |o, _, _| *o.last_mut().unwrap() = 19);
    assert!(err.contains("the offsets end at `19` but there are 20 indices"), "{err}");
    let err = graph_error("radius", |_, _, r| *r = f32::NAN);
    assert!(err.contains("the radius `NaN` is not a positive number"), "{err}");
}

#[test]
fn gzip_snapshots_read_back_equal_and_smaller_and_a_bad_level_is_refused() {
    let dir = scratch("gzip");
    let d = Data::new(2000, 16, 3, 2);
    let (offsets, indices) = ring(2000);
    let mut snap = d.snapshot();
    snap.neighbours =
        Some(explant_io::NeighbourGraph { offsets: &offsets, indices: &indices, radius: 3.0, source: "x" });
    let (plain, packed) = (dir.join("plain.h5ad"), dir.join("gzip.h5ad"));
    write_h5ad(&plain, &snap).unwrap();
    snap.gzip = Some(6);
    write_h5ad(&packed, &snap).unwrap();
    let (a, b) = (std::fs::metadata(&plain).unwrap().len(), std::fs::metadata(&packed).unwrap().len());
    assert!(b < a, "the gzip file ({b} bytes) is not smaller than the plain one ({a} bytes)");
    python_check(&packed, &d, &["--graph".to_owned()]);
    python_asserts(
        &packed,
        &format!(
            "import anndata, h5py, numpy as np\n\
             f = h5py.File(p); assert f['X'].compression == 'gzip' and f['X'].compression_opts == 6\n\
             assert f['obsp/spatial_distances/data'].compression == 'gzip' and f['obs/tick'].compression == 'gzip'\n\
             a, b = anndata.read_h5ad({:?}), anndata.read_h5ad(p)\n\
             assert np.array_equal(a.X, b.X) and a.obs.equals(b.obs) and np.array_equal(a.obsm['spatial'], b.obsm['spatial'])\n\
             assert all((a.obsp[k] != b.obsp[k]).nnz == 0 for k in a.obsp)",
            plain.display().to_string()
        ),
    );
    for level in [0, 10] {
        snap.gzip = Some(level);
        let err = write_h5ad(&dir.join("bad.h5ad"), &snap).expect_err("a bad gzip level was accepted").to_string();
        assert!(err.contains(&format!("gzip level `{level}` must be 1 to 9")), "{err}");
    }
}
