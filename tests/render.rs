//! End-to-end tests of `explant render` and `explant report`: run short scenes, draw their
//! figures and reports from the output directory, check what is written (PNG, SVG with one
//! line per series, one self-contained HTML page), that bad input is refused with a clear
//! message, that squidpy reads the tissue and finds the neighbours the scene implies, and
//! that the snapshots follow the AnnData conventions (contact graph, colours, time, gzip).
//!
//! Each test works in its own folder under the system temp dir, removed when the test
//! passes and kept (its path printed) when it fails.
//!
//! Environment:
//! - `EXPLANT_PYTHON`: the Python with `anndata` and `squidpy` (default
//!   `<repo>/.venv/bin/python`); without squidpy the squidpy test is skipped loudly, unless
//!   `EXPLANT_REQUIRE_PYTHON=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{TempDir, assert_clean_failure, assert_success, explant, loud, read, repo, stderr, stdout};

/// The genes of `scenes/lateral_inhibition.toml`, in order.
const LATERAL_GENES: [&str; 3] = ["DLL1", "NOTCH1", "HES1"];

/// Replace `from` (which must occur exactly once) by `to`, so that a change to the shipped
/// scene breaks this test loudly instead of silently running the long scene.
fn replace_once(text: &str, from: &str, to: &str, scene: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{scene} should contain `{from}` exactly once");
    text.replacen(from, to, 1)
}

/// `scenes/lateral_inhibition.toml` (900 cells, a HES1 knockout from 120 min) cut to
/// 30 min recorded every 10, with the knockout from the start; written into `dir`.
fn short_lateral_inhibition(dir: &TempDir) -> PathBuf {
    let name = "scenes/lateral_inhibition.toml";
    let text = std::fs::read_to_string(repo().join(name)).expect("read scenes/lateral_inhibition.toml");
    let text = replace_once(&text, "duration = 360.0", "duration = 30.0", name);
    let text = replace_once(&text, "record_every = 60.0", "record_every = 10.0", name);
    let text = replace_once(&text, "start = 120.0", "start = 0.0", name);
    write(&dir.join("lateral.toml"), &text)
}

/// `scenes/default.toml` (a WNT3A field) cut to 300 cells and 10 min, run with its teacher.
fn short_default(dir: &TempDir) -> PathBuf {
    let name = "scenes/default.toml";
    let text = std::fs::read_to_string(repo().join(name)).expect("read scenes/default.toml");
    let text = replace_once(&text, "duration = 240.0", "duration = 10.0", name);
    let text = replace_once(&text, "record_every = 20.0", "record_every = 5.0", name);
    let text = replace_once(&text, "cells = 1500", "cells = 300", name);
    let text = replace_once(&text, "radius = 260.0", "radius = 120.0", name);
    let model = repo().join("models/default.pt");
    let text = replace_once(&text, "path = \"../models/default.pt\"", &format!("path = \"{}\"", model.display()), name);
    write(&dir.join("default.toml"), &text)
}

/// `scenes/physicell_compare.toml` (18,300 cells in a 1500 µm cube for 60 min) shrunk to
/// 200 cells in a ball of radius 60 µm in a 200 µm cube (10³ voxels of 20 µm), 6 min in
/// steps of 0.1 min; with `flat`, the same in a 200 µm square (a 2D run).
fn short_3d(dir: &TempDir, flat: bool) -> PathBuf {
    let name = "scenes/physicell_compare.toml";
    let text = std::fs::read_to_string(repo().join(name)).expect("read scenes/physicell_compare.toml");
    let mut text = replace_once(&text, "dt = 0.01 ", "dt = 0.1 ", name);
    for (from, to) in [
        ("duration = 60.0", "duration = 6.0"),
        ("record_every = 30.0", "record_every = 6.0"),
        ("cells = 18300", "cells = 200"),
        ("size = [1500.0, 1500.0, 1500.0]", "size = [200.0, 200.0, 200.0]"),
    ] {
        text = replace_once(&text, from, to, name);
    }
    assert_eq!(text.matches("[750.0, 750.0, 750.0], radius = 250.0").count(), 1, "{name}: the region's ball");
    text = text.replace("[750.0, 750.0, 750.0], radius = 250.0", "[100.0, 100.0, 100.0], radius = 60.0");
    text = replace_once(
        &text,
        "centre = [750.0, 750.0, 750.0]\nradius = 250.0",
        "centre = [100.0, 100.0, 100.0]\nradius = 60.0",
        name,
    );
    if flat {
        text =
            text.replace("[200.0, 200.0, 200.0]", "[200.0, 200.0]").replace("[100.0, 100.0, 100.0]", "[100.0, 100.0]");
    }
    write(&dir.join(if flat { "flat.toml" } else { "ball.toml" }), &text)
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write `{}`: {e}", path.display()));
    path.to_path_buf()
}

/// `explant ARGS...`, which must succeed.
fn explant_ok(args: &[&std::ffi::OsStr]) -> Output {
    let o = explant(args);
    let shown: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    assert_success(&o, &format!("explant {}", shown.join(" ")));
    o
}

/// `explant run SCENE --out OUT --quiet --teacher --diffusion cpu`, which must succeed.
/// `explant run` without its own figures, so each test decides what `render` draws.
fn run_scene(scene: &Path, out: &Path) {
    explant_ok(&[
        "run".as_ref(),
        scene.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
        "--teacher".as_ref(),
        "--diffusion".as_ref(),
        "cpu".as_ref(),
        "--no-figures".as_ref(),
    ]);
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "`{}` is not a PNG", path.display());
}

/// The `<title>` (series name) of each line of an SVG plot.
fn series_names(svg: &str) -> Vec<String> {
    svg.split("<path ")
        .skip(1)
        .map(|p| {
            let t = &p[p.find("<title>").expect("a series title") + 7..];
            t[..t.find("</title>").unwrap()].to_owned()
        })
        .collect()
}

/// The panel titles of an SVG plot (bold text).
fn panel_titles(svg: &str) -> Vec<String> {
    svg.split("font-weight=\"bold\"")
        .skip(1)
        .map(|p| {
            let t = &p[p.find('>').unwrap() + 1..];
            t[..t.find('<').unwrap()].to_owned()
        })
        .collect()
}

/// Every "wrote PATH" line of a command's output.
fn wrote(o: &Output) -> Vec<PathBuf> {
    stdout(o).lines().filter_map(|l| l.strip_prefix("wrote ")).map(PathBuf::from).collect()
}

#[test]
fn render_and_report_a_perturbed_run() {
    let dir = TempDir::new("render", "render_and_report_a_perturbed_run");
    let run = dir.join("run");
    run_scene(&short_lateral_inhibition(&dir), &run);

    // Defaults: the final tissue by cell type, all genes' time series, the response curve.
    let o = explant_ok(&["render".as_ref(), run.as_os_str()]);
    let figures = run.join("figures");
    let expected: Vec<PathBuf> = ["tissue_cell_type.png", "timeseries.svg", "response_vs_distance.svg"]
        .iter()
        .map(|f| figures.join(f))
        .collect();
    assert_eq!(wrote(&o), expected);
    assert_png(&expected[0]);
    let ts = read(&expected[1]);
    assert!(ts.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{}", &ts[..80]);
    assert_eq!(panel_titles(&ts), LATERAL_GENES);
    // One cell type, with its paired control, in each of the three panels.
    let names = series_names(&ts);
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "epithelium").count(), 3, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "epithelium (control)").count(), 3, "{names:?}");
    assert_eq!(ts.matches("stroke-dasharray=\"6 4\"").count(), 6, "3 dashed lines and their 3 legend entries");
    let rvd = read(&expected[2]);
    assert_eq!(series_names(&rvd), LATERAL_GENES);
    assert!(rvd.contains("class=\"zero\""), "the effects change sign, so a zero line is drawn");

    // One gene, an earlier snapshot (named relative to the run), another folder.
    let alt = dir.join("alt");
    let o = explant_ok(&[
        "render".as_ref(),
        run.as_os_str(),
        "--gene".as_ref(),
        "HES1".as_ref(),
        "--snapshot".as_ref(),
        "snapshots/tick_0000010.h5ad".as_ref(),
        "--out".as_ref(),
        alt.as_os_str(),
    ]);
    assert_eq!(wrote(&o)[0], alt.join("tissue_HES1_tick_0000010.png"));
    assert_png(&alt.join("tissue_HES1_tick_0000010.png"));
    let ts = read(&alt.join("timeseries.svg"));
    assert_eq!(panel_titles(&ts), ["HES1"]);
    assert_eq!(series_names(&ts), ["epithelium", "epithelium (control)"]);

    // The report: one page, pictures embedded, plots inline, the knockout in the table.
    let o = explant_ok(&["report".as_ref(), run.as_os_str()]);
    let html_path = run.join("report.html");
    assert_eq!(wrote(&o).last(), Some(&html_path));
    let html = read(&html_path);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>explant run: lateral-inhibition</title>"), "the scene's name is the title");
    // A PNG's signature in base64 begins `iVBORw0KGgo`: the final tissue and the run's own picture.
    assert_eq!(html.matches("src=\"data:image/png;base64,iVBORw0KGgo").count(), 2);
    assert_eq!(html.matches("<svg xmlns").count(), 2, "time series and response curve inline");
    for fact in ["<th>seed</th><td>3</td>", "<th>status</th><td>completed</td>", "<th>cells (final)</th><td>900</td>"] {
        assert!(html.contains(fact), "no `{fact}` in the summary");
    }
    assert!(html.contains("<td>sense</td>"), "the stage-time table");
    let table = &html[html.find("<th>perturbed mean</th>").expect("the effects table")..];
    let table = &table[..table.find("</table>").unwrap()];
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("<tr><td>")).collect();
    assert!(!rows.is_empty() && rows.len() <= 15, "{rows:?}");
    // HES1 is knocked out in the perturbed cells: its row has perturbed mean 0 and a negative effect.
    let hes1 = rows
        .iter()
        .find(|r| r.starts_with("<tr><td>perturbed</td>") && r.contains("<td>HES1</td>"))
        .unwrap_or_else(|| panic!("no perturbed HES1 row in {rows:?}"));
    assert!(hes1.contains("<td class=\"num\">0</td>") && hes1.contains("<td class=\"num\">-"), "{hes1}");
    // Self-contained: nothing is fetched from elsewhere.
    for external in ["src=\"http", "href=\"http", "<script", "<link"] {
        assert!(!html.contains(external), "the report contains `{external}`");
    }

    // --out elsewhere, in a folder that does not exist yet.
    let elsewhere = dir.join("pages/run.html");
    explant_ok(&["report".as_ref(), run.as_os_str(), "--out".as_ref(), elsewhere.as_os_str()]);
    assert!(read(&elsewhere).contains("lateral-inhibition"));
}

#[test]
fn a_ligand_field_is_drawn_and_chosen_by_name() {
    let dir = TempDir::new("render", "a_ligand_field_is_drawn_and_chosen_by_name");
    let run = dir.join("run");
    run_scene(&short_default(&dir), &run);

    let o = explant_ok(&["render".as_ref(), run.as_os_str(), "--gene".as_ref(), "AXIN2".as_ref()]);
    assert_png(&run.join("figures/tissue_AXIN2.png"));
    assert_eq!(wrote(&o).len(), 2, "no response curve without a perturbation");
    assert_eq!(panel_titles(&read(&run.join("figures/timeseries.svg"))), ["AXIN2"]);
    // Two cell types, no control.
    assert_eq!(series_names(&read(&run.join("figures/timeseries.svg"))), ["organiser", "responder"]);
    explant_ok(&["render".as_ref(), run.as_os_str(), "--ligand".as_ref(), "WNT3A".as_ref()]);

    let o = explant(["render".as_ref(), run.as_os_str(), "--ligand".as_ref(), "WNT3".as_ref()]);
    let err = assert_clean_failure(&o, "render --ligand WNT3");
    assert!(err.contains("unknown ligand `WNT3`") && err.contains("did you mean `WNT3A`?"), "{err}");

    let o = explant_ok(&["report".as_ref(), run.as_os_str()]);
    let html = read(&run.join("report.html"));
    assert!(wrote(&o).contains(&run.join("report.html")));
    assert!(!html.contains("Perturbation response"), "no perturbation, no response section");
    assert!(html.contains("0 = organiser, 1 = responder"), "the picture's category legend is spelled out");
}

#[test]
fn a_3d_run_is_drawn_from_above_and_sliced_and_a_slice_outside_it_or_of_a_2d_run_is_refused() {
    let dir = TempDir::new("render", "a_3d_run_is_drawn_from_above_and_sliced");
    let run = dir.join("run");
    let scene = short_3d(&dir, false);
    // `explant run` draws its own figures: for a 3D run, the view from above and the slice
    // through the middle of the tissue.
    explant_ok(&[
        "run".as_ref(),
        scene.as_os_str(),
        "--out".as_ref(),
        run.as_os_str(),
        "--quiet".as_ref(),
        "--teacher".as_ref(),
        "--diffusion".as_ref(),
        "cpu".as_ref(),
    ]);
    let figures = run.join("figures");
    let above = figures.join("tissue_cell_type.png");
    assert_png(&above);
    let mut middle: Vec<String> = std::fs::read_dir(&figures)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tissue_cell_type_z"))
        .collect();
    assert_eq!(middle.len(), 1, "one middle slice: {middle:?}");
    let middle = middle.remove(0);
    // The ball is centred at z = 100 µm with radius 60: its middle is near 100.
    let z: f32 = middle["tissue_cell_type_z".len()..middle.len() - 4].parse().expect("a whole µm");
    assert!((z - 100.0).abs() <= 15.0, "middle slice at z = {z}");
    assert_ne!(std::fs::read(&above).unwrap(), std::fs::read(figures.join(&middle)).unwrap());

    // `--slice-z` draws that slice beside the projection, which is kept.
    let o = explant_ok(&["render".as_ref(), run.as_os_str(), "--slice-z".as_ref(), "100".as_ref()]);
    let slice = figures.join("tissue_cell_type_z100.png");
    assert_eq!(wrote(&o), [slice.clone(), figures.join("timeseries.svg")]);
    assert_png(&slice);
    assert_ne!(std::fs::read(&slice).unwrap(), std::fs::read(&above).unwrap(), "a slice is not the projection");
    assert!(above.exists());
    let low = figures.join("tissue_cell_type_z55.png");
    explant_ok(&["render".as_ref(), run.as_os_str(), "--slice-z".as_ref(), "55".as_ref()]);
    assert_ne!(std::fs::read(&slice).unwrap(), std::fs::read(&low).unwrap(), "slices at 100 and 55 µm differ");

    // Heights outside the grid (0 to 200 µm) are refused, naming the height and the extent.
    for z in ["5000", "-20"] {
        let o = explant(["render".as_ref(), run.as_os_str(), "--slice-z".as_ref(), z.as_ref()]);
        let err = assert_clean_failure(&o, &format!("render --slice-z {z}"));
        assert!(
            err.contains(&format!(
                "slice height `z = {z}` µm is outside the field's grid, which spans z = 0 to 200 µm"
            )),
            "{err}"
        );
        assert!(err.contains(&format!("`--slice-z {z}` cannot be drawn")), "the message names the option: {err}");
        assert!(!figures.join(format!("tissue_cell_type_z{z}.png")).exists(), "a refused slice left a file");
    }
    let o = explant(["render".as_ref(), run.as_os_str(), "--slice-z".as_ref(), "nan".as_ref()]);
    let err = assert_clean_failure(&o, "render --slice-z nan");
    assert!(err.contains("`--slice-z NaN` is not a height"), "{err}");

    // The report shows the view from above, the middle slice and the run's own picture.
    explant_ok(&["report".as_ref(), run.as_os_str()]);
    let html = read(&run.join("report.html"));
    assert_eq!(html.matches("src=\"data:image/png;base64,iVBORw0KGgo").count(), 3);
    assert!(html.contains("seen from above") && html.contains("in the slice at z = "), "captions say which is which");

    // A 2D run has no slices to draw.
    let flat = dir.join("flat");
    run_scene(&short_3d(&dir, true), &flat);
    let o = explant(["render".as_ref(), flat.as_os_str(), "--slice-z".as_ref(), "0".as_ref()]);
    let err = assert_clean_failure(&o, "render --slice-z on a 2D run");
    assert!(err.contains("`--slice-z 0`") && err.contains("holds a 2D tissue") && err.contains("a 3D run"), "{err}");
    let o = explant_ok(&["render".as_ref(), flat.as_os_str()]);
    assert_eq!(wrote(&o), [flat.join("figures/tissue_cell_type.png"), flat.join("figures/timeseries.svg")]);
}

#[test]
fn render_refuses_what_is_not_a_run_directory() {
    let dir = TempDir::new("render", "render_refuses_what_is_not_a_run_directory");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for cmd in ["render", "report"] {
        let o = explant([cmd.as_ref(), empty.as_os_str()]);
        let err = assert_clean_failure(&o, &format!("{cmd} on an empty directory"));
        assert!(
            err.contains(&format!("`{}` is not an explant run directory", empty.display()))
                && err.contains("`manifest.json`"),
            "{err}"
        );
    }
    let missing = dir.join("missing");
    let err = assert_clean_failure(&explant(["render".as_ref(), missing.as_os_str()]), "render on a missing path");
    assert!(err.contains(&format!("`{}` does not exist", missing.display())), "{err}");
}

#[test]
fn unknown_gene_ligand_or_snapshot_is_named() {
    let dir = TempDir::new("render", "unknown_gene_ligand_or_snapshot_is_named");
    let run = dir.join("run");
    run_scene(&short_lateral_inhibition(&dir), &run);

    let o = explant(["render".as_ref(), run.as_os_str(), "--gene".as_ref(), "HES".as_ref()]);
    let err = assert_clean_failure(&o, "render --gene HES");
    assert!(err.contains("unknown gene `HES` for `--gene`"), "{err}");
    assert!(err.contains("`DLL1`, `NOTCH1` and `HES1`") && err.contains("did you mean `HES1`?"), "{err}");
    assert!(err.contains("tissue.h5ad"), "the snapshot is named: {err}");
    assert!(!run.join("figures").exists(), "nothing is written before the options are checked");

    let o = explant(["render".as_ref(), run.as_os_str(), "--ligand".as_ref(), "WNT3A".as_ref()]);
    let err = assert_clean_failure(&o, "render --ligand on a run without ligands");
    assert!(err.contains("unknown ligand `WNT3A`") && err.contains("holds no ligand fields"), "{err}");

    let o = explant(["render".as_ref(), run.as_os_str(), "--snapshot".as_ref(), "snapshots/tick_9.h5ad".as_ref()]);
    let err = assert_clean_failure(&o, "render --snapshot of a missing file");
    assert!(err.contains("snapshot `snapshots/tick_9.h5ad` for `--snapshot` not found"), "{err}");

    let not_h5 = write(&dir.join("notes.h5ad"), "not HDF5");
    let o = explant(["render".as_ref(), run.as_os_str(), "--snapshot".as_ref(), not_h5.as_os_str()]);
    let err = assert_clean_failure(&o, "render --snapshot of a text file");
    assert!(err.contains("notes.h5ad") && err.contains("not an HDF5 file"), "{err}");
}

/// The Python with `squidpy`, or why there is none.
fn python_with_squidpy() -> Result<PathBuf, String> {
    let python = std::env::var_os("EXPLANT_PYTHON").map_or_else(|| repo().join(".venv/bin/python"), PathBuf::from);
    match Command::new(&python).args(["-c", "import anndata, squidpy"]).output() {
        Ok(o) if o.status.success() => Ok(python),
        Ok(o) => {
            let err = stderr(&o);
            let last = err.trim().lines().last().unwrap_or_default().to_owned();
            Err(format!(
                "`{}` cannot import anndata and squidpy: {last} (scripts/setup.sh installs them)",
                python.display()
            ))
        }
        Err(e) => Err(format!("cannot start `{}`: {e}", python.display())),
    }
}

#[test]
fn squidpy_builds_the_neighbour_graph_the_lattice_implies() {
    const TEST: &str = "squidpy_builds_the_neighbour_graph_the_lattice_implies";
    let python = match python_with_squidpy() {
        Ok(p) => p,
        Err(why) if std::env::var("EXPLANT_REQUIRE_PYTHON").as_deref() != Ok("1") => {
            loud(&format!("SKIPPED: {TEST}: {why}"));
            return;
        }
        Err(why) => panic!("EXPLANT_REQUIRE_PYTHON=1 but {why}"),
    };
    let dir = TempDir::new("render", TEST);
    let run = dir.join("run");
    run_scene(&short_lateral_inhibition(&dir), &run);
    let o = Command::new(&python)
        .arg(repo().join("tests/python/squidpy_neighbors.py"))
        .arg(run.join("tissue.h5ad"))
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("start python");
    assert_success(&o, "squidpy_neighbors.py");
    assert!(stdout(&o).lines().any(|l| l.starts_with("ok: 900 cells")), "squidpy_neighbors.py said:\n{}", stdout(&o));
}

/// A static hexagonal sheet (900 cells, spacing about 10 µm, contact radius 15 µm: one ring
/// of six neighbours) of three cell types, run for 10 min with snapshots every 5; coloured
/// by cell type in `tissue.png` and without ligands, so the picture shows only the cells.
const CONVENTIONS_SCENE: &str = r#"version = 1
name = "conventions"
seed = 3
genes = ["DLL1", "NOTCH1", "HES1"]

[time]
dt = 1.0
duration = 10.0
record_every = 5.0

[grid]
size = [300.0, 300.0]
dx = 20.0

[contact]
genes = ["DLL1"]
radius = 15.0

[[cell_types]]
name = "epithelium"
baseline = { DLL1 = 1.0, NOTCH1 = 1.0, HES1 = 0.5 }

[[cell_types]]
name = "border"
baseline = { DLL1 = 0.2, NOTCH1 = 1.0, HES1 = 0.5 }

[[cell_types]]
name = "core"
baseline = { DLL1 = 2.0, NOTCH1 = 1.0, HES1 = 0.5 }

[tissue]
shape = "box"
min = [10.0, 10.0]
max = [290.0, 290.0]
cells = 900
cell_radius = 5.0
expression_noise = 0.1
cell_type = "epithelium"
regions = [
  { cell_type = "border", shape = { kind = "box", min = [0.0, 0.0], max = [80.0, 300.0] } },
  { cell_type = "core", shape = { kind = "circle", centre = [190.0, 150.0], radius = 60.0 } },
]

[mechanics]
mobility = 0.0

[model]
kind = "teacher"

[teacher]
degradation = 0.05
default_max_rate = 0.1
edges = [
  { source = "contact:DLL1", target = "HES1", weight = 8.0 },
  { source = "gene:HES1", target = "DLL1", weight = -6.0 },
]

[output]
"#;

#[test]
fn snapshots_carry_the_contact_graph_picture_colours_and_time_and_compress_on_request() {
    const TEST: &str = "snapshots_carry_the_contact_graph_picture_colours_and_time_and_compress_on_request";
    let dir = TempDir::new("render", TEST);

    // A compression explant does not know is refused before anything runs, naming the field.
    let bad = write(&dir.join("bad.toml"), &format!("{CONVENTIONS_SCENE}h5ad_compression = \"zip\"\n"));
    let o = explant(["run".as_ref(), bad.as_os_str(), "--out".as_ref(), dir.join("bad").as_os_str()]);
    let err = assert_clean_failure(&o, "run with h5ad_compression = \"zip\"");
    assert!(err.contains("output.h5ad_compression") && err.contains("`zip`") && err.contains("\"gzip\""), "{err}");

    let python = match python_with_squidpy() {
        Ok(p) => p,
        Err(why) if std::env::var("EXPLANT_REQUIRE_PYTHON").as_deref() != Ok("1") => {
            loud(&format!("SKIPPED: {TEST}: {why}"));
            return;
        }
        Err(why) => panic!("EXPLANT_REQUIRE_PYTHON=1 but {why}"),
    };
    let (plain, gzip) = (dir.join("plain"), dir.join("gzip"));
    run_scene(&write(&dir.join("plain.toml"), CONVENTIONS_SCENE), &plain);
    run_scene(&write(&dir.join("gzip.toml"), &format!("{CONVENTIONS_SCENE}h5ad_compression = \"gzip\"\n")), &gzip);
    let o = Command::new(&python)
        .arg(repo().join("tests/python/anndata_conventions.py"))
        .arg(&plain)
        .arg(&gzip)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("start python");
    assert_success(&o, "anndata_conventions.py");
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("ok: 4 files, 900 cells")),
        "anndata_conventions.py said:\n{}",
        stdout(&o)
    );
}

#[test]
fn vtk_export_reads_back_in_meshio_and_vtk_equal_to_the_anndata() {
    // `explant export RUN --vtk` on a short default-scene run (cells, and the WNT3A field,
    // at 3 snapshots): tests/python/vtk_readback.py reads every file with meshio (the
    // PyPI reader ParaView users script with) and with VTK's own readers (the ones
    // ParaView opens .vtu and legacy .vtk with), and compares points, radius, type, id,
    // every gene and every ligand value exactly with the run's AnnData, and the .pvd
    // collections and times with the snapshots' (and rejects shifted, swapped, mistimed
    // and truncated copies).
    const TEST: &str = "vtk_export_reads_back_in_meshio_and_vtk_equal_to_the_anndata";
    let dir = TempDir::new("render", TEST);
    let run = dir.join("run");
    run_scene(&short_default(&dir), &run);
    let o = explant_ok(&["export".as_ref(), run.as_os_str(), "--vtk".as_ref()]);
    let written = wrote(&o);
    assert!(
        written.iter().any(|p| p.ends_with("vtk/cells.pvd")) && written.iter().any(|p| p.ends_with("vtk/fields.pvd"))
    );
    assert!(stdout(&o).contains("3 snapshot(s) exported"), "{}", stdout(&o));
    // A second export into the same folder needs --force; `--vtk` is required.
    let again = explant(["export".as_ref(), run.as_os_str(), "--vtk".as_ref()]);
    assert!(assert_clean_failure(&again, "export twice").contains("--force"));
    explant_ok(&["export".as_ref(), run.as_os_str(), "--vtk".as_ref(), "--force".as_ref()]);
    assert_clean_failure(&explant(["export".as_ref(), run.as_os_str()]), "export without a format");
    let python = std::env::var_os("EXPLANT_PYTHON").map_or_else(|| repo().join(".venv/bin/python"), PathBuf::from);
    match Command::new(&python).args(["-c", "import anndata, meshio, vtkmodules.vtkIOXML"]).output() {
        Ok(o) if o.status.success() => {}
        other => {
            let why = match other {
                Ok(o) => stderr(&o).trim().lines().last().unwrap_or_default().to_owned(),
                Err(e) => e.to_string(),
            };
            if std::env::var("EXPLANT_REQUIRE_PYTHON").as_deref() == Ok("1") {
                panic!(
                    "EXPLANT_REQUIRE_PYTHON=1 but `{}` cannot import anndata, meshio and vtk: {why}",
                    python.display()
                );
            }
            loud(&format!("SKIPPED: {TEST}: {why} (scripts/setup.sh installs meshio and vtk)"));
            return;
        }
    }
    // Binary by default, `--ascii` on request: both read back exactly.
    for ascii in [false, true] {
        if ascii {
            explant_ok(&["export".as_ref(), run.as_os_str(), "--vtk".as_ref(), "--ascii".as_ref(), "--force".as_ref()]);
        }
        let vtu = std::fs::read_dir(run.join("vtk"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "vtu"))
            .expect("a .vtu file");
        let text = String::from_utf8_lossy(&std::fs::read(&vtu).unwrap()).into_owned();
        let format = if ascii { "format=\"ascii\"" } else { "format=\"binary\"" };
        assert!(text.contains(format), "{} should hold {format}", vtu.display());
        let legacy = std::fs::read(run.join("vtk/fields_tick_0000000.vtk")).unwrap();
        let header = if ascii { "\nASCII\n" } else { "\nBINARY\n" };
        assert!(String::from_utf8_lossy(&legacy[..200.min(legacy.len())]).contains(header), "legacy header");
        let o = Command::new(&python)
            .arg(repo().join("tests/python/vtk_readback.py"))
            .arg(&run)
            .output()
            .expect("start python");
        assert_success(&o, "vtk_readback.py");
        assert!(
            stdout(&o).starts_with("ok: 3 snapshots, 3 with fields") && stdout(&o).contains("and VTK 9."),
            "vtk_readback.py said:\n{}",
            stdout(&o)
        );
    }
}

#[test]
fn a_run_writes_paraview_files_when_its_scene_asks() {
    // `output.vtk = "ascii"` (here through `--set`): the run itself leaves `vtk/` with
    // the same files `explant export --vtk --ascii` writes, listed among its outputs.
    let dir = TempDir::new("render", "a_run_writes_paraview_files_when_its_scene_asks");
    let run = dir.join("run");
    let scene = short_default(&dir);
    let o = explant_ok(&[
        "run".as_ref(),
        scene.as_os_str(),
        "--out".as_ref(),
        run.as_os_str(),
        "--teacher".as_ref(),
        "--no-control".as_ref(),
        "--no-figures".as_ref(),
        "--set".as_ref(),
        "output.vtk=ascii".as_ref(),
    ]);
    let written = wrote(&o);
    assert!(written.iter().any(|p| p.ends_with("vtk/cells.pvd")), "{}", stdout(&o));
    let vtu = read(&run.join("vtk/cells_tick_0000000.vtu"));
    assert!(vtu.contains("format=\"ascii\"") && !vtu.contains("format=\"binary\""));
    assert!(read(&run.join("vtk/fields.pvd")).contains("fields_tick_0000000.vtk"));
    // A value it does not know is refused before anything runs, naming the choices.
    let bad = explant([
        "run".as_ref(),
        scene.as_os_str(),
        "--out".as_ref(),
        dir.join("bad").as_os_str(),
        "--set".as_ref(),
        "output.vtk=xml".as_ref(),
    ]);
    let err = assert_clean_failure(&bad, "output.vtk = xml");
    assert!(err.contains("binary") && err.contains("ascii"), "{err}");
    assert!(!dir.join("bad").join("manifest.json").exists());
}
