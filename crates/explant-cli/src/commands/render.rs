//! `explant render`: draw a run's figures again from its output directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use explant_io::{
    CellColour, RunSnapshot, TissueView, panels_svg, read_csv, read_snapshot, render_png, response_plot,
    timeseries_genes, timeseries_plots, write_text,
};
use explant_scene::{LoadedScene, suggest};

use crate::cli::RenderArgs;

/// Most genes in the time-series figure when no `--gene` is given.
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
}

/// `explant render`.
pub fn render(args: RenderArgs) -> Result<()> {
    let opts = RenderOptions { snapshot: args.snapshot, gene: args.gene, ligand: args.ligand, out: args.out };
    for p in render_figures(&args.run_dir, &opts)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Draw the figures of the run in `run_dir` and return the paths written, in order:
///
/// 1. `tissue_<GENE>.png` (or `tissue_cell_type.png` without a gene): the snapshot's cells
///    (radii from `obs['radius']`, else 5 µm) coloured by the gene's expression or by cell
///    type, over the heat map of one ligand (none when the run has no ligands). When
///    `opts.snapshot` is given the file name ends with the snapshot's name, e.g.
///    `tissue_DLL1_tick_0000060.png`;
/// 2. `timeseries.svg`, when the run has `timeseries.csv`: one panel per gene (the chosen
///    gene, else the first six), the pseudobulk mean of each cell type over time, with the
///    paired control dashed when `timeseries_control.csv` exists;
/// 3. `response_vs_distance.svg`, when the run has `response_vs_distance.csv`: the mean
///    effect (perturbed − control) of each gene against distance from the perturbation.
///
/// # Errors
///
/// When `run_dir` is not a run directory (no `manifest.json`), a file cannot be read or
/// written, or the gene or ligand is not in the snapshot (the message suggests the
/// closest name). Every message names the file or option at fault.
pub fn render_figures(run_dir: &Path, opts: &RenderOptions) -> Result<Vec<PathBuf>> {
    let f = draw_figures(run_dir, opts)?;
    Ok(std::iter::once(f.tissue).chain(f.timeseries).chain(f.response).collect())
}

/// What [`draw_figures`] wrote, with what the report says about the picture.
pub(crate) struct Figures {
    /// The tissue picture.
    pub tissue: PathBuf,
    /// What the picture shows, in words (colours, legend numbers, ligand).
    pub tissue_caption: String,
    /// `timeseries.svg`, if drawn.
    pub timeseries: Option<PathBuf>,
    /// `response_vs_distance.svg`, if drawn.
    pub response: Option<PathBuf>,
    /// The run's scene, when it could be read.
    pub scene: Option<LoadedScene>,
}

/// [`render_figures`], keeping what the report needs.
pub(crate) fn draw_figures(run_dir: &Path, opts: &RenderOptions) -> Result<Figures> {
    check_run_dir(run_dir)?;
    let (snapshot_path, named) = match &opts.snapshot {
        Some(p) if p.exists() => (p.clone(), true),
        Some(p) if p.is_relative() && run_dir.join(p).exists() => (run_dir.join(p), true),
        Some(p) if p.is_relative() => {
            bail!("snapshot `{}` for `--snapshot` not found, neither here nor in `{}`", p.display(), run_dir.display())
        }
        Some(p) => bail!("snapshot `{}` for `--snapshot` not found", p.display()),
        None => (run_dir.join("tissue.h5ad"), false),
    };
    let snap = read_snapshot(&snapshot_path).context("cannot read the snapshot to draw")?;
    let scene = run_scene(run_dir, &snap);
    let gene = opts.gene.as_deref().map(|g| gene_index(&snap, &snapshot_path, g)).transpose()?;
    let ligand = choose_ligand(&snap, &snapshot_path, scene.as_ref(), opts.ligand.as_deref())?;

    let out = opts.out.clone().unwrap_or_else(|| run_dir.join("figures"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create the figure directory `{}`", out.display()))?;

    // The tissue.
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
    let field = match (&snap.fields, &ligand) {
        (Some(f), Some(name)) => {
            caption.push_str(&format!(" over {name} (viridis, left bar)"));
            f.channel(name).map(|data| (&f.grid, data))
        }
        _ => None,
    };
    let time = snap.time_min.map(|t| format!(" at {t} min")).unwrap_or_default();
    caption.push_str(&format!("{time}, from {}", file_name(&snapshot_path)));
    let suffix = if named { format!("_{}", file_stem(&snapshot_path)) } else { String::new() };
    let tissue = out.join(format!("tissue_{}{suffix}.png", sanitise(&what)));
    let width_px = scene.as_ref().map_or(DEFAULT_WIDTH_PX, |s| s.scene.output.image_width);
    render_png(&tissue, &TissueView { field, positions: &snap.positions, radii: &radii, colour, width_px })?;

    // The time series.
    let ts_path = run_dir.join("timeseries.csv");
    let timeseries = if ts_path.exists() {
        let ts = read_csv(&ts_path)?;
        let control_path = run_dir.join("timeseries_control.csv");
        let control = if control_path.exists() { Some(read_csv(&control_path)?) } else { None };
        let genes = match gene {
            Some(g) => vec![snap.genes[g].clone()],
            None => timeseries_genes(&ts).into_iter().take(MAX_TIMESERIES_GENES).collect(),
        };
        let plots = timeseries_plots(&ts, control.as_ref(), &genes)?;
        let path = out.join("timeseries.svg");
        write_text(&path, &panels_svg(&plots, 2))?;
        Some(path)
    } else {
        eprintln!("note: `{}` has no `timeseries.csv`; no time-series figure", run_dir.display());
        None
    };

    // The response to the perturbation.
    let rvd_path = run_dir.join("response_vs_distance.csv");
    let response = if rvd_path.exists() {
        let plot = response_plot(&read_csv(&rvd_path)?)?;
        let path = out.join("response_vs_distance.svg");
        write_text(&path, &plot.to_svg())?;
        Some(path)
    } else {
        None
    };
    Ok(Figures { tissue, tissue_caption: caption, timeseries, response, scene })
}

/// Refuse anything but an `explant run` output directory.
pub(crate) fn check_run_dir(run_dir: &Path) -> Result<()> {
    if !run_dir.exists() {
        bail!("run directory `{}` does not exist", run_dir.display());
    }
    if !run_dir.is_dir() {
        bail!("`{}` is not a directory; give the output directory of `explant run`", run_dir.display());
    }
    if !run_dir.join("manifest.json").is_file() {
        bail!(
            "`{}` is not an explant run directory: it has no `manifest.json` (written by `explant run SCENE --out DIR`)",
            run_dir.display()
        );
    }
    Ok(())
}

/// The run's scene, from `RUN_DIR/scene.toml` or else the snapshot's copy, when it parses;
/// it only supplies defaults (picture width, heat-map ligand), so a scene that no longer
/// validates is skipped.
fn run_scene(run_dir: &Path, snap: &RunSnapshot) -> Option<LoadedScene> {
    let path = run_dir.join("scene.toml");
    let text = std::fs::read_to_string(&path).ok().or_else(|| snap.scene_toml.clone())?;
    LoadedScene::from_str(&text, &path).ok()
}

fn gene_index(snap: &RunSnapshot, path: &Path, gene: &str) -> Result<usize> {
    snap.genes.iter().position(|g| g == gene).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown gene `{gene}` for `--gene`: `{}` has {}{}",
            path.display(),
            names(&snap.genes),
            suggest(gene, &snap.genes)
        )
    })
}

fn choose_ligand(
    snap: &RunSnapshot,
    path: &Path,
    scene: Option<&LoadedScene>,
    asked: Option<&str>,
) -> Result<Option<String>> {
    let available: &[String] = snap.fields.as_ref().map_or(&[], |f| &f.names);
    if let Some(name) = asked {
        if available.is_empty() {
            bail!("unknown ligand `{name}` for `--ligand`: `{}` holds no ligand fields", path.display());
        }
        if !available.iter().any(|l| l == name) {
            bail!(
                "unknown ligand `{name}` for `--ligand`: `{}` has {}{}",
                path.display(),
                names(available),
                suggest(name, available)
            );
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
    fn file_names_are_sanitised() {
        assert_eq!(sanitise("IFN-gamma/STAT1 x"), "IFN-gamma_STAT1_x");
        assert_eq!(file_stem(Path::new("snapshots/tick_0000060.h5ad")), "tick_0000060");
    }
}
