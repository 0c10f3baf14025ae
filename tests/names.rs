//! Names with commas and quotes, such as the Cell Ontology label "CD8-positive,
//! alpha-beta T cell", round-trip through every table a run writes and every reader of a
//! run: `run`, `render`, `report` and a sweep readout.

use std::path::Path;

use crate::common::{TempDir, assert_success, explant, read, repo};

/// A Cell Ontology label (CL:0000625) with a comma in it.
const LABEL: &str = "CD8-positive, alpha-beta T cell";

/// `scenes/lateral_inhibition.toml` (a HES1 knockout with its paired control), 20 min,
/// its one cell type renamed to [`LABEL`].
fn scene_text() -> String {
    let text = std::fs::read_to_string(repo().join("scenes/lateral_inhibition.toml")).expect("read the scene");
    assert_eq!(text.matches("\"epithelium\"").count(), 2, "the scene names its cell type twice");
    text.replace("\"epithelium\"", &format!("\"{LABEL}\""))
        .replacen("duration = 360.0", "duration = 20.0", 1)
        .replacen("record_every = 60.0", "record_every = 10.0", 1)
        .replacen("start = 120.0", "start = 0.0", 1)
}

/// Rows of a CSV file as parsed by a real CSV reader (quotes honoured).
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_path(path).expect("open the CSV");
    r.records().map(|rec| rec.expect("a CSV record").iter().map(String::from).collect()).collect()
}

#[test]
fn a_cell_type_named_with_a_comma_round_trips_through_run_render_report_and_a_sweep() {
    let tmp = TempDir::new("names", "comma");
    let dir = &tmp.0;
    let scene = dir.join("scene.toml");
    std::fs::write(&scene, scene_text()).unwrap();
    let run = dir.join("run");
    let o = explant([
        "run".as_ref(),
        scene.as_os_str(),
        "--out".as_ref(),
        run.as_os_str(),
        "--quiet".as_ref(),
        "--diffusion".as_ref(),
        "cpu".as_ref(),
    ]);
    assert_success(&o, "explant run with a comma in a cell-type name");

    // Every per-type table holds the label as one field, and its rows are as long as the header.
    let series = csv_rows(&run.join("timeseries.csv"));
    let final_cells: f64 = series.last().expect("a final row")[3].parse().expect("a cell count");
    for file in ["timeseries.csv", "timeseries_control.csv"] {
        let rows = csv_rows(&run.join(file));
        let col = rows[0].iter().position(|h| h == "cell_type").expect("a cell_type column");
        assert!(rows.len() > 2, "{file} has data rows");
        for row in &rows[1..] {
            assert_eq!(row.len(), rows[0].len(), "{file}: {row:?}");
            assert_eq!(row[col], LABEL, "{file}");
        }
        assert!(read(&run.join(file)).contains(&format!("\"{LABEL}\"")), "{file} quotes the label");
    }

    // render and report read the run back; the report shows the label.
    let o = explant(["render".as_ref(), run.as_os_str()]);
    assert_success(&o, "explant render");
    assert!(run.join("figures/timeseries.svg").exists());
    assert!(read(&run.join("figures/timeseries.svg")).contains(LABEL), "the legend names the type");
    let o = explant(["report".as_ref(), run.as_os_str()]);
    assert_success(&o, "explant report");
    assert!(read(&run.join("report.html")).contains(LABEL));

    // A sweep readout selects the type by its label.
    let spec = dir.join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            "version = 1\nname = \"names\"\nscene = \"scene.toml\"\n[[parameters]]\npath = \"output.image_width\"\nvalues = [320]\n\
             [[readouts]]\nkind = \"cell_count\"\nname = \"t_cells\"\ncell_type = \"{LABEL}\"\n\
             [[readouts]]\nkind = \"pseudobulk\"\nname = \"hes1_t\"\ngene = \"HES1\"\ncell_type = \"{LABEL}\"\n"
        ),
    )
    .unwrap();
    let out = dir.join("sweep");
    let o = explant([
        "sweep".as_ref(),
        spec.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
        "--jobs".as_ref(),
        "1".as_ref(),
    ]);
    assert_success(&o, "explant sweep");
    let rows = csv_rows(&out.join("results.csv"));
    let col =
        |name: &str| rows[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("no `{name}` in {:?}", rows[0]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][col("status")], "completed", "{rows:?}");
    let cells: f64 = rows[1][col("t_cells")].parse().expect("a cell count");
    assert!(cells > 0.0 && cells == final_cells, "the sweep's run counts {cells} cells, the run {final_cells}");
    let hes1: f64 = rows[1][col("hes1_t")].parse().expect("a mean");
    assert!(hes1.is_finite() && hes1 > 0.0, "HES1 pseudobulk {hes1}");
}
