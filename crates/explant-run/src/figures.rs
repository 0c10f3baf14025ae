//! `explant render`: a run's figures drawn again from its directory.

use std::path::{Path, PathBuf};

use explant_io::{
    CellColour, Labels, RunSnapshot, TissueView, format_um, panels_svg, read_snapshot, render_png, response_plot,
    timeseries_genes, timeseries_plots, write_text,
};
use explant_scene::{LoadedScene, suggest};

use crate::{RunDir, RunError, RunFile};

/// Most genes in the time-series figure when no gene is given.
const MAX_TIMESERIES_GENES: usize = 6;
/// Cell radius (µm) when the snapshot has no `obs['radius']`.
const DEFAULT_RADIUS: f32 = 5.0;
/// Picture width when the run's scene cannot be read.
const DEFAULT_WIDTH_PX: u32 = 800;

/// What [`render_figures`] draws; the defaults draw the final tissue coloured by cell type
/// into `RUN_DIR/figures`.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// The snapshot to draw (default `RUN_DIR/tissue.h5ad`); a relative path that does not
    /// exist from the working directory is looked up inside the run directory.
    pub snapshot: Option<PathBuf>,
    /// Colour the cells by this gene instead of by cell type, and plot only its time series.
    pub gene: Option<String>,
    /// The ligand drawn under the cells (default: the scene's `output.heatmap_ligand`, else
    /// its first ligand, else the first field in the snapshot).
    pub ligand: Option<String>,
    /// Output directory (default `RUN_DIR/figures`), created if needed.
    pub out: Option<PathBuf>,
    /// Draw the tissue as the slice at this height (µm) instead of from above (see
    /// [`TissueView`]'s slices); the file name ends with `_z<Z>`, e.g.
    /// `tissue_cell_type_z50.png`, so the projection is kept. A 2D run is refused.
    pub slice_z: Option<f32>,
}

/// Draw the figures of the run in `run_dir` and return the paths written, in order:
///
/// 1. `tissue_<GENE>.png` (or `tissue_cell_type.png` without a gene): the snapshot's cells
///    (radii from `obs['radius']`, else 5 µm) coloured by the gene's expression or by cell
///    type, over the heat map of one ligand (none when the run has no ligands). When
///    `opts.snapshot` is given the file name ends with the snapshot's name, e.g.
///    `tissue_DLL1_tick_0000060.png`. A 3D tissue is drawn from above, or with
///    `opts.slice_z` as the slice at that height, the name ending with `_z<Z>`;
/// 2. for a 3D tissue drawn from above, also the slice through its middle: the same name
///    ending with `_z<MID>` ([`middle_z`]), e.g. `tissue_cell_type_z750.png`;
/// 3. `timeseries.svg`, when the run has `timeseries.csv`: one panel per gene (the chosen
///    gene, else the first six), the pseudobulk mean of each cell type over time, with the
///    paired control dashed when `timeseries_control.csv` exists;
/// 4. `response_vs_distance.svg`, when the run has `response_vs_distance.csv`: the mean
///    effect (perturbed − control) of each gene against distance from the perturbation.
///
/// # Errors
///
/// When `run_dir` is not a run directory (no `manifest.json`), a file cannot be read or
/// written, or the gene or ligand is not in the snapshot (the message suggests the
/// closest name), or a slice is asked of a 2D run or at a height outside the tissue.
/// Every message names the file or option at fault.
pub fn render_figures(run_dir: &Path, opts: &RenderOptions) -> Result<Vec<PathBuf>, RunError> {
    Ok(draw_figures(run_dir, opts)?.paths())
}

/// What [`draw_figures`] wrote, with what the report says about the picture.
pub struct Figures {
    /// The tissue picture.
    pub tissue: PathBuf,
    /// What the picture shows, in words (colours, legend numbers, ligand).
    pub tissue_caption: String,
    /// For a 3D tissue drawn from above, the slice through its middle z, with its caption.
    pub middle_slice: Option<(PathBuf, String)>,
    /// `timeseries.svg`, if drawn.
    pub timeseries: Option<PathBuf>,
    /// `response_vs_distance.svg`, if drawn.
    pub response: Option<PathBuf>,
    /// The run's scene, when it could be read.
    pub scene: Option<LoadedScene>,
    /// Notes for the user (figures not drawn and why).
    pub notes: Vec<String>,
}

impl Figures {
    /// Every file written, in [`render_figures`]' order.
    pub fn paths(&self) -> Vec<PathBuf> {
        let slice = self.middle_slice.as_ref().map(|(p, _)| p);
        std::iter::once(&self.tissue).chain(slice).chain(&self.timeseries).chain(&self.response).cloned().collect()
    }
}

/// [`render_figures`], keeping what the report needs.
///
/// # Errors
///
/// As [`render_figures`].
pub fn draw_figures(run_dir: &Path, opts: &RenderOptions) -> Result<Figures, RunError> {
    let dir = RunDir::open(run_dir)?;
    let (snapshot_path, named) = snapshot_to_draw(&dir, opts.snapshot.as_deref())?;
    let snap = read_snapshot(&snapshot_path)?;
    let scene = run_scene(&dir, &snap);
    let gene = opts.gene.as_deref().map(|g| gene_index(&snap, &snapshot_path, g)).transpose()?;
    let ligand = choose_ligand(&snap, &snapshot_path, scene.as_ref(), opts.ligand.as_deref())?;
    if let (Some(z), 2) = (opts.slice_z, snap.dims) {
        return Err(RunError::Invalid(format!(
            "`--slice-z {}`: `{}` holds a 2D tissue (`obsm/spatial` has 2 columns); a slice needs a 3D run",
            format_um(z),
            snapshot_path.display()
        )));
    }

    let out = opts.out.clone().unwrap_or_else(|| dir.path(RunFile::Figures));
    std::fs::create_dir_all(&out).map_err(RunError::file("create the figure directory", &out))?;
    let width_px = scene.as_ref().map_or(DEFAULT_WIDTH_PX, |s| s.scene.output.image_width);
    let shown = Shown { gene, ligand: ligand.as_deref(), slice_z: opts.slice_z };
    let (tissue, tissue_caption) = draw_tissue(&snap, &snapshot_path, named, &shown, width_px, &out)?;
    let middle = if snap.dims == 3 && opts.slice_z.is_none() { middle_z(&snap) } else { None };
    let middle_slice = middle
        .map(|z| draw_tissue(&snap, &snapshot_path, named, &Shown { slice_z: Some(z), ..shown }, width_px, &out))
        .transpose()?;
    let mut notes = Vec::new();
    match dir.manifest().map(|m| m.status) {
        Ok(crate::Status::Completed) => {}
        Ok(crate::Status::Running) => notes.push(format!(
            "`{}` is a partial run: its manifest records no end (still running, or killed); the figures show what it wrote",
            run_dir.display()
        )),
        Ok(crate::Status::Failed { stage, tick, .. }) => notes.push(format!(
            "`{}` is a partial run: it failed in {stage} at tick {tick}; the figures show the state up to then",
            run_dir.display()
        )),
        Err(e) => notes.push(format!("the manifest cannot be read ({})", crate::error_chain(&e))),
    }
    let timeseries = draw_timeseries(&dir, gene.map(|g| snap.genes[g].as_str()), &out)?;
    if timeseries.is_none() {
        notes.push(format!("`{}` has no `timeseries.csv`; no time-series figure", run_dir.display()));
    }
    let response = draw_response(&dir, &out)?;
    Ok(Figures { tissue, tissue_caption, middle_slice, timeseries, response, scene, notes })
}

/// The snapshot file to draw, and whether the user named it.
fn snapshot_to_draw(dir: &RunDir, asked: Option<&Path>) -> Result<(PathBuf, bool), RunError> {
    let run_dir = dir.root();
    match asked {
        Some(p) if p.exists() => Ok((p.to_path_buf(), true)),
        Some(p) if p.is_relative() && run_dir.join(p).exists() => Ok((run_dir.join(p), true)),
        Some(p) if p.is_relative() => Err(RunError::Invalid(format!(
            "snapshot `{}` for `--snapshot` not found, neither here nor in `{}`",
            p.display(),
            run_dir.display()
        ))),
        Some(p) => Err(RunError::Invalid(format!("snapshot `{}` for `--snapshot` not found", p.display()))),
        None => {
            let tissue = dir.path(RunFile::Tissue);
            // A partial run has no final state yet: draw its latest snapshot.
            match dir.latest_snapshot() {
                Some(latest) if !tissue.exists() => Ok((latest, true)),
                _ => Ok((tissue, false)),
            }
        }
    }
}

/// The height (µm) of the slice through the middle of a 3D snapshot's tissue: halfway
/// between its lowest and highest cell centres, rounded to a whole µm (for a short file
/// name), kept inside the field's grid; `None` without a cell with a finite position.
pub fn middle_z(snap: &RunSnapshot) -> Option<f32> {
    let zs = snap.positions.iter().map(|p| p[2]).filter(|z| z.is_finite());
    let (lo, hi) =
        zs.fold(None, |acc: Option<(f32, f32)>, z| Some(acc.map_or((z, z), |(a, b)| (a.min(z), b.max(z)))))?;
    let z = (0.5 * (f64::from(lo) + f64::from(hi))).round() as f32;
    Some(match &snap.fields {
        Some(f) => z.clamp(f.grid.origin[2], f.grid.origin[2] + f.grid.nz as f32 * f.grid.dx),
        None => z,
    })
}

/// What one tissue picture shows.
#[derive(Clone, Copy)]
struct Shown<'a> {
    /// Colour the cells by this gene (index into the snapshot's genes), else by cell type.
    gene: Option<usize>,
    /// The ligand under the cells.
    ligand: Option<&'a str>,
    /// The slice's height, else the view from above.
    slice_z: Option<f32>,
}

/// The tissue picture and its caption.
fn draw_tissue(
    snap: &RunSnapshot,
    snapshot_path: &Path,
    named: bool,
    shown: &Shown<'_>,
    width_px: u32,
    out: &Path,
) -> Result<(PathBuf, String), RunError> {
    let Shown { gene, ligand, slice_z } = *shown;
    let n = snap.cells;
    let radii = snap.radii.clone().unwrap_or_else(|| vec![DEFAULT_RADIUS; n]);
    let values: Vec<f32>;
    let (colour, what, mut caption) = match gene {
        Some(g) => {
            values = snap.gene_values(g, false).unwrap_or_default();
            let name = &snap.genes[g];
            (
                CellColour::Value(&values),
                name.clone(),
                format!("Cells coloured by {name} expression (magma, right bar)"),
            )
        }
        None => {
            let legend: Vec<String> =
                snap.cell_type_names.iter().enumerate().map(|(k, name)| format!("{k} = {name}")).collect();
            let caption = format!("Cells coloured by cell type (swatches: {})", legend.join(", "));
            (CellColour::Category(&snap.cell_types), "cell_type".to_owned(), caption)
        }
    };
    let field = match (&snap.fields, ligand) {
        (Some(f), Some(name)) => {
            caption.push_str(&format!(" over {name} (viridis, left bar)"));
            f.channel(name).map(|data| (&f.grid, data))
        }
        _ => None,
    };
    match slice_z {
        Some(z) => caption.push_str(&format!(
            ", in the slice at z = {} µm (the cells it cuts, the field in that voxel layer)",
            format_um(z)
        )),
        None if snap.dims == 3 => caption.push_str(", seen from above (the field averaged over z)"),
        None => {}
    }
    let time = snap.time_min.map(|t| format!(" at {t} min")).unwrap_or_default();
    caption.push_str(&format!("{time}, from {}", file_name(snapshot_path)));
    let mut suffix = if named { format!("_{}", file_stem(snapshot_path)) } else { String::new() };
    if let Some(z) = slice_z {
        suffix.push_str(&sanitise(&format!("_z{}", format_um(z))));
    }
    let tissue = out.join(format!("tissue_{}{suffix}.png", sanitise(&what)));
    let shown_ligand = ligand.filter(|_| field.is_some());
    let words = PictureWords::new(gene.map(|g| snap.genes[g].as_str()), shown_ligand, snap.time_min);
    let labels = words.labels(&snap.cell_type_names);
    render_png(
        &tissue,
        &TissueView { field, positions: &snap.positions, radii: &radii, colour, width_px, labels, slice_z },
    )?;
    Ok((tissue, caption))
}

/// Simulated minutes for a title: whole minutes as integers, else two decimals at most.
fn minutes(t: f64) -> String {
    if (t - t.round()).abs() < 1e-9 {
        format!("{}", t.round())
    } else {
        let s = format!("{t:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The words on a tissue picture: the title (what the cells and the heat map show, and
/// when) and the labels of the two colour bars, ligands with their units.
pub(crate) struct PictureWords {
    title: String,
    field: Option<String>,
    cells: String,
}

impl PictureWords {
    /// Cells coloured by `gene` (else by cell type) over `ligand`'s field (if any) at
    /// `time` minutes (if known).
    pub(crate) fn new(gene: Option<&str>, ligand: Option<&str>, time: Option<f64>) -> Self {
        let cells = gene.map_or_else(|| "cell type".to_owned(), |g| format!("{g} expression"));
        let mut title = cells.clone();
        if let Some(l) = ligand {
            title.push_str(&format!(" over {l}"));
        }
        if let Some(t) = time {
            title.push_str(&format!(", t = {} min", minutes(t)));
        }
        Self { title, field: ligand.map(|l| format!("{l}, amount/µm³")), cells }
    }

    /// The labels for [`TissueView`], the swatches named by `cell_types`.
    pub(crate) fn labels<'a>(&'a self, cell_types: &'a [String]) -> Labels<'a> {
        Labels {
            title: Some(&self.title),
            field: self.field.as_deref(),
            cells: Some(&self.cells),
            categories: cell_types,
            scale_bar: true,
        }
    }
}

/// `timeseries.svg` (with the paired control dashed), when the run has a time series.
fn draw_timeseries(dir: &RunDir, gene: Option<&str>, out: &Path) -> Result<Option<PathBuf>, RunError> {
    let Some(ts) = dir.table(RunFile::Timeseries)? else { return Ok(None) };
    let control = dir.table(RunFile::TimeseriesControl)?;
    let genes = match gene {
        Some(g) => vec![g.to_owned()],
        None => timeseries_genes(&ts).into_iter().take(MAX_TIMESERIES_GENES).collect(),
    };
    let plots = timeseries_plots(&ts, control.as_ref(), &genes)?;
    let path = out.join("timeseries.svg");
    write_text(&path, &panels_svg(&plots, 2))?;
    Ok(Some(path))
}

/// `response_vs_distance.svg`, when the run has a paired control.
fn draw_response(dir: &RunDir, out: &Path) -> Result<Option<PathBuf>, RunError> {
    let Some(table) = dir.table(RunFile::ResponseVsDistance)? else { return Ok(None) };
    let plot = response_plot(&table)?;
    let path = out.join("response_vs_distance.svg");
    write_text(&path, &plot.to_svg())?;
    Ok(Some(path))
}

/// The run's scene, from `RUN_DIR/scene.toml` or else the snapshot's copy, when it parses;
/// it only supplies defaults (picture width, heat-map ligand), so a scene that no longer
/// validates is skipped.
fn run_scene(dir: &RunDir, snap: &RunSnapshot) -> Option<LoadedScene> {
    let path = dir.path(RunFile::Scene);
    let text = std::fs::read_to_string(&path).ok().or_else(|| snap.scene_toml.clone())?;
    LoadedScene::from_str(&text, &path).ok()
}

fn gene_index(snap: &RunSnapshot, path: &Path, gene: &str) -> Result<usize, RunError> {
    snap.genes.iter().position(|g| g == gene).ok_or_else(|| {
        RunError::Invalid(format!(
            "unknown gene `{gene}` for `--gene`: `{}` has {}{}",
            path.display(),
            names(&snap.genes),
            suggest(gene, &snap.genes)
        ))
    })
}

fn choose_ligand(
    snap: &RunSnapshot,
    path: &Path,
    scene: Option<&LoadedScene>,
    asked: Option<&str>,
) -> Result<Option<String>, RunError> {
    let available: &[String] = snap.fields.as_ref().map_or(&[], |f| &f.names);
    if let Some(name) = asked {
        if available.is_empty() {
            return Err(RunError::Invalid(format!(
                "unknown ligand `{name}` for `--ligand`: `{}` holds no ligand fields",
                path.display()
            )));
        }
        if !available.iter().any(|l| l == name) {
            return Err(RunError::Invalid(format!(
                "unknown ligand `{name}` for `--ligand`: `{}` has {}{}",
                path.display(),
                names(available),
                suggest(name, available)
            )));
        }
        return Ok(Some(name.to_owned()));
    }
    let from_scene = scene.and_then(|s| {
        let out = &s.scene.output;
        out.heatmap_ligand
            .iter()
            .chain(s.scene.ligands.iter().map(|l| &l.name))
            .find(|n| available.contains(n))
            .cloned()
    });
    Ok(from_scene.or_else(|| available.first().cloned()))
}

/// "`A`, `B` and `C`" (the first 20 names).
fn names(list: &[String]) -> String {
    const SHOWN: usize = 20;
    let quoted: Vec<String> = list.iter().take(SHOWN).map(|n| format!("`{n}`")).collect();
    match (quoted.len(), list.len()) {
        (0, _) => "none".to_owned(),
        (1, 1) => quoted[0].clone(),
        (k, n) if n > k => format!("{} and {} more", quoted.join(", "), n - k),
        (k, _) => format!("{} and {}", quoted[..k - 1].join(", "), quoted[k - 1]),
    }
}

/// A name safe in a file name: letters, digits, `-`, `_` and `.`; anything else becomes `_`.
fn sanitise(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn file_stem(p: &Path) -> String {
    sanitise(&p.file_stem().map_or_else(String::new, |n| n.to_string_lossy().into_owned()))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_list_reads_as_a_sentence() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&v(&[])), "none");
        assert_eq!(names(&v(&["A"])), "`A`");
        assert_eq!(names(&v(&["A", "B", "C"])), "`A`, `B` and `C`");
        let many: Vec<String> = (0..25).map(|k| format!("G{k}")).collect();
        assert!(names(&many).ends_with("`G19` and 5 more"));
    }

    fn snapshot_with_fields(names: &[&str]) -> RunSnapshot {
        let grid = explant_field::Grid { nx: 1, ny: 1, nz: 1, dx: 1.0, origin: [0.0; 3] };
        RunSnapshot {
            cells: 0,
            obs_names: vec![],
            genes: vec![],
            expression: vec![],
            dims: 2,
            positions: vec![],
            cell_type_names: vec![],
            cell_types: vec![],
            radii: None,
            distance_to_perturbation: None,
            control: None,
            fields: Some(explant_io::SnapshotFields {
                names: names.iter().map(|n| n.to_string()).collect(),
                grid,
                data: vec![0.0; names.len()],
            }),
            tick: None,
            time_min: None,
            scene_toml: None,
        }
    }

    #[test]
    fn the_ligand_is_the_one_asked_for_else_the_first() {
        let snap = snapshot_with_fields(&["EGF", "oxygen"]);
        let p = Path::new("run/tissue.h5ad");
        assert_eq!(choose_ligand(&snap, p, None, Some("oxygen")).unwrap().as_deref(), Some("oxygen"));
        assert_eq!(choose_ligand(&snap, p, None, None).unwrap().as_deref(), Some("EGF"));
        let err = choose_ligand(&snap, p, None, Some("oxygn")).unwrap_err().to_string();
        assert!(err.contains("unknown ligand `oxygn`") && err.contains("did you mean `oxygen`?"), "{err}");
        let none = snapshot_with_fields(&[]);
        assert_eq!(choose_ligand(&none, p, None, None).unwrap(), None);
        let err = choose_ligand(&none, p, None, Some("EGF")).unwrap_err().to_string();
        assert!(err.contains("holds no ligand fields"), "{err}");
    }

    #[test]
    fn the_middle_slice_is_halfway_up_the_cells_in_whole_micrometres_and_inside_the_grid() {
        let mut snap = snapshot_with_fields(&["O2"]);
        snap.dims = 3;
        snap.positions = vec![[0.0, 0.0, 10.0], [0.0, 0.0, f32::NAN], [0.0, 0.0, 31.4]];
        snap.fields.as_mut().unwrap().grid = explant_field::Grid { nx: 1, ny: 1, nz: 3, dx: 10.0, origin: [0.0; 3] };
        assert_eq!(middle_z(&snap), Some(21.0));
        snap.fields.as_mut().unwrap().grid.nz = 1;
        assert_eq!(middle_z(&snap), Some(10.0), "kept inside the grid");
        snap.positions.clear();
        assert_eq!(middle_z(&snap), None);
    }

    #[test]
    fn file_names_are_sanitised() {
        assert_eq!(sanitise("IFN-gamma/STAT1 x"), "IFN-gamma_STAT1_x");
        assert_eq!(file_stem(Path::new("snapshots/tick_0000060.h5ad")), "tick_0000060");
    }
}
