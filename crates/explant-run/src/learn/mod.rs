//! `explant learn`: a response model learned from a spatial section, written as a ready
//! scene that runs the section forward and answers perturbations.
//!
//! # The model class
//!
//! A single snapshot shows each cell's expression beside its neighbourhood, but not how
//! fast anything changes, so the model is one a snapshot can identify: each cell's
//! expression relaxes toward a target set by its surroundings,
//!
//! `dx/dt = (target − x) / τ`, `target = b + W · [type, neighbour types, sensed, contact]`,
//!
//! with the features as the engine computes them (its type one-hot; the fraction of its
//! neighbours within the contact radius of each type; each ligand's concentration at the
//! cell, from the field the section's own secretion makes at steady state, times the
//! cell's receptor expression; its neighbours' mean expression of every panel gene).
//! `W` and `b` are fitted by ridge regression to the section; `τ` (minutes) cannot be
//! learned from one snapshot and is the user's (`--tau`, default 60 min). The target does
//! not depend on the cell's own expression, so intracellular regulation is outside the
//! class; what it captures is how a cell's state depends on its niche.
//!
//! The section is a steady state of the model by construction: the fitted model is run
//! (with the engine, its field and its exported TorchScript) from the observed section
//! until nothing changes, and that state, the model's fit of the section, is the scene's
//! initial tissue and field. How far it lies from the observed section is reported.
//!
//! # Assumptions
//!
//! The section is at steady state; ligands are secreted in proportion to the ligand
//! gene's expression and sensed in proportion to the receptor's; every ligand has the
//! same range (`--ligand-range`, default twice the median nearest-neighbour distance) and
//! lifetime (`--ligand-decay`); spot data mixes cells, so "neighbours" of a spot are
//! neighbouring spots. Cells do not move, divide or die.

mod niche;
mod section;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use explant_core::{InitialCells, ModelError, ModelSignature, ResponseInput, ResponseModel, Simulation};
use explant_io::Coordinates;
use explant_scene::LoadedScene;
use serde::Serialize;

pub use niche::{
    ALPHAS, Baseline, Features, Folds, HeldOut, Hyper, Ridge, RidgeSystem, Score, choose, fits, held_out, score,
};
pub use section::{GenePanel, LrPair, LrTable, Normalise, Section, SectionRequest, read_lr_table, read_section};

use crate::{DiffusionChoice, RunError};

/// Files `explant learn` writes into its output directory (and the only ones `--force`
/// replaces).
pub const LEARN_FILES: [&str; 9] = [
    "scene.toml",
    "model.pt",
    "model.json",
    "tissue.h5ad",
    "observed.h5ad",
    "heldout.csv",
    "heldout_genes.csv",
    "coefficients.csv",
    "learn.json",
];

/// Options of `explant learn`.
#[derive(Debug, Clone)]
pub struct LearnOptions {
    /// The section (`.h5ad`).
    pub section: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// `obs` column of the cell types or clusters.
    pub cell_type_key: String,
    /// Where the coordinates are.
    pub coordinates: Coordinates,
    /// The gene panel.
    pub genes: GenePanel,
    /// Ligand–receptor table.
    pub lr: Option<PathBuf>,
    /// Ligand–receptor pairs added to the panel (both genes), best expressed first.
    pub lr_pairs: usize,
    /// µm per coordinate unit.
    pub scale: f32,
    /// Spatial folds.
    pub folds: usize,
    /// Relaxation time, minutes.
    pub tau: f32,
    /// Ligand range √(D/k), µm (default: twice the median nearest-neighbour distance).
    pub ligand_range: Option<f32>,
    /// Ligand decay, 1/min.
    pub ligand_decay: f32,
    /// Contact radius, µm (default: 1.5 × the median nearest-neighbour distance).
    pub contact_radius: Option<f32>,
    /// Normalisation of the stored values.
    pub normalise: Normalise,
    /// Genes whose neighbour mean is an input of the model.
    pub contact_genes: ContactGenes,
    /// Give each cell a fixed intrinsic offset per gene (what its niche does not
    /// explain), so that the observed section itself is the model's steady state; without
    /// it the scene starts from the model's own steady state, its smoothed fit of the
    /// section.
    pub intrinsic: bool,
    /// Replace an earlier `explant learn` output in `out`.
    pub force: bool,
    /// Threads for the model.
    pub threads: usize,
    /// The command line, for provenance.
    pub command: String,
    /// A scene whose teacher made the section (a synthetic section): score how much of
    /// its ligand and contact wiring the learned model recovers.
    pub truth: Option<PathBuf>,
}

/// Which genes' neighbour means the model reads (the scene's contact genes).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ContactGenes {
    /// Every panel gene (the most predictive; a gene's own neighbour mean then stands in
    /// for anything spatially smooth).
    #[default]
    All,
    /// The genes of the ligand–receptor pairs in the panel.
    LigandReceptor,
    /// None: the model reads only types, neighbour types and ligands.
    None,
    /// These genes.
    Names(Vec<String>),
}

/// A fitted niche model, as handed to the TorchScript exporter.
#[derive(Debug, Clone)]
pub struct NicheSpec {
    /// `F × G` row-major, `F = 2T + L + G`.
    pub weights: Vec<f32>,
    /// `G`.
    pub bias: Vec<f32>,
    /// Minutes.
    pub tau: f32,
    /// Genes.
    pub genes: Vec<String>,
    /// Ligand channels.
    pub ligands: Vec<String>,
    /// Cell types.
    pub cell_types: Vec<String>,
    /// The `learned` block of the metadata.
    pub learned: serde_json::Value,
    /// Check case: expression, sensed, contact, type, neighbour counts of one cell.
    pub check: (Vec<f32>, Vec<f32>, Vec<f32>, u32, Vec<f32>),
    /// The genes the model predicts (the first `modelled` of `genes`); with intrinsic
    /// offsets `genes` holds them twice, the second copy the offsets.
    pub modelled: usize,
}

/// One row of `heldout.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOutRow {
    /// Model name.
    pub model: String,
    /// `all` or `ligand_receptor`.
    pub genes: String,
    /// Number of genes in the set.
    pub n_genes: usize,
    /// Mean absolute error on held-out blocks.
    pub mae: f64,
    /// Mean per-gene R².
    pub mean_r2: f64,
    /// MAE relative to the neighbour average's (1 = the same).
    pub mae_vs_neighbour_average: f64,
}

/// How the learned scene holds its steady state.
#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    /// Ticks the model ran from the observed section to its steady state.
    pub settle_ticks: u64,
    /// Whether it converged (every gene's change per tick below the tolerance).
    pub converged: bool,
    /// Largest change of any gene in the last settling tick.
    pub last_change: f64,
    /// Mean absolute difference between the scene's start and the observed section (0
    /// with intrinsic offsets).
    pub mae_from_observed: f64,
    /// Mean absolute intrinsic offset: what the niche does not explain, in-sample (0
    /// without intrinsic offsets).
    pub intrinsic_mae: f64,
    /// Largest change of any gene over `check_ticks` of the written scene, run from disk.
    pub drift: f64,
    /// Ticks of that check.
    pub check_ticks: u64,
}

/// Teacher wiring recovered from a synthetic section.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// Ligand and contact edges of the teacher whose target is in the panel.
    pub edges: usize,
    /// Those whose source is the learned model's strongest ligand or contact input of
    /// the target, with the right sign.
    pub recovered: usize,
    /// Per edge: `source -> target: strongest learned input (standardised weight)`.
    pub details: Vec<String>,
}

/// What `explant learn` did.
#[derive(Debug, Clone)]
pub struct LearnReport {
    /// The held-out table.
    pub heldout: Vec<HeldOutRow>,
    /// The steady-state check.
    pub steady: Steady,
    /// Facts for the user, one line each.
    pub notes: Vec<String>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Wiring recovered (with `--truth`).
    pub recovery: Option<Recovery>,
}

fn option(option: &str, message: impl Into<String>) -> RunError {
    RunError::Option { option: option.into(), message: message.into() }
}

fn check_options(o: &LearnOptions) -> Result<(), RunError> {
    if o.folds < 2 {
        return Err(option("--folds", format!("needs at least 2 folds, got {}", o.folds)));
    }
    if !(o.tau.is_finite() && o.tau > 0.0) {
        return Err(option("--tau", format!("must be a positive number of minutes, got {}", o.tau)));
    }
    if !(o.scale.is_finite() && o.scale > 0.0) {
        return Err(option("--scale", format!("must be a positive number of µm per unit, got {}", o.scale)));
    }
    if !(o.ligand_decay.is_finite() && o.ligand_decay > 0.0) {
        return Err(option("--ligand-decay", format!("must be a positive rate per minute, got {}", o.ligand_decay)));
    }
    for (name, v) in [("--ligand-range", o.ligand_range), ("--contact-radius", o.contact_radius)] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            return Err(option(name, format!("must be a positive distance in µm, got {v}")));
        }
    }
    if !o.section.is_file() {
        return Err(option("SECTION", format!("`{}` does not exist or is not a file", o.section.display())));
    }
    check_out(o)
}

/// Whether `out` holds nothing but files `explant learn` writes (the leftovers of a
/// learn that stopped before its `learn.json`), so `--force` may write over them.
fn only_learn_files(out: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(out) else { return false };
    entries.filter_map(Result::ok).all(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "fields" {
            std::fs::read_dir(e.path())
                .is_ok_and(|f| f.filter_map(Result::ok).all(|x| x.path().extension().is_some_and(|ext| ext == "npy")))
        } else {
            LEARN_FILES.contains(&name.as_str())
        }
    })
}

/// The output directory: absent or empty, or with `--force` one that holds an earlier
/// `explant learn` output (its `learn.json`, or only files learn writes, as a learn that
/// failed part way leaves) and not the section. Only `LEARN_FILES`
/// and `fields/*.npy` are ever replaced; nothing else is deleted.
fn check_out(o: &LearnOptions) -> Result<(), RunError> {
    let out = &o.out;
    let refuse = |message: String| Err(RunError::OutDir { path: out.clone(), message });
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return refuse("exists and is not a directory".into());
    }
    let empty = std::fs::read_dir(out).map_err(RunError::file("read", out))?.next().is_none();
    if empty {
        return Ok(());
    }
    if !o.force {
        return refuse(
            "the directory is not empty; choose another or pass `--force` to replace an earlier `explant learn` output"
                .into(),
        );
    }
    if !out.join("learn.json").is_file() && !only_learn_files(out) {
        return refuse(
            "`--force` replaces only an earlier `explant learn` output (a directory with `learn.json`); nothing was \
             changed: choose another `--out`"
                .into(),
        );
    }
    let section = std::path::absolute(&o.section).unwrap_or_else(|_| o.section.clone());
    let root = std::path::absolute(out).unwrap_or_else(|_| out.clone());
    if LEARN_FILES.iter().any(|f| root.join(f) == section) || section.starts_with(root.join("fields")) {
        return refuse(format!(
            "`--force` would overwrite the section `{}`; choose another `--out`",
            o.section.display()
        ));
    }
    Ok(())
}

/// A response model that changes nothing: the tissue stays as observed while its field
/// reaches steady state.
struct Frozen {
    signature: ModelSignature,
}

impl ResponseModel for Frozen {
    fn name(&self) -> String {
        "frozen section (explant learn)".into()
    }
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }
    fn rates(&mut self, _input: &ResponseInput<'_>, rates: &mut [f32]) -> Result<(), ModelError> {
        rates.fill(0.0);
        Ok(())
    }
}

/// Median distance from a cell to its nearest other cell, over up to 2000 cells spread
/// through the file.
fn nearest_neighbour_median(p: &[[f32; 3]]) -> f32 {
    let n = p.len();
    let step = n.div_ceil(2000).max(1);
    let mut d: Vec<f32> = (0..n)
        .step_by(step)
        .filter_map(|i| {
            (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    ((p[i][0] - p[j][0]).powi(2) + (p[i][1] - p[j][1]).powi(2) + (p[i][2] - p[j][2]).powi(2)).sqrt()
                })
                .filter(|&v| v > 0.0)
                .min_by(f32::total_cmp)
        })
        .collect();
    d.sort_by(f32::total_cmp);
    d.get(d.len() / 2).copied().unwrap_or(0.0)
}

/// A scene's cell type name for a label: numeric labels get the column's name in front.
fn type_name(key: &str, label: &str) -> String {
    if !label.is_empty() && label.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '.') {
        format!("{key}_{label}")
    } else {
        label.to_string()
    }
}

/// A file-name-safe form of a name.
fn file_stem(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "))
}

/// Everything of the learned scene but the model's weights.
#[derive(Debug, Clone)]
struct Layout {
    name: String,
    genes: Vec<String>,
    channels: Vec<(String, LrPair)>,
    contact_genes: Vec<String>,
    types: Vec<String>,
    type_means: Vec<Vec<f32>>,
    size: [f32; 3],
    dims: usize,
    dx: f32,
    offset: [f32; 3],
    contact_radius: f32,
    range: f32,
    decay: f32,
    export: Vec<f32>,
    cell_radius: f32,
    dt: f32,
    duration: f32,
    section: PathBuf,
    tau: f32,
    intrinsic: bool,
}

/// Name of the state column that holds a gene's intrinsic offset.
pub fn intrinsic_name(gene: &str) -> String {
    format!("{gene}_intrinsic")
}

impl Layout {
    /// The scene as TOML; `initial_files`: ligands start from `fields/NAME.npy`.
    fn toml(&self, initial_files: bool) -> String {
        self.toml_with(initial_files, &self.contact_genes, self.intrinsic)
    }

    /// Every gene of the scene's state: the panel, then its intrinsic offsets if any.
    fn state_genes(&self, intrinsic: bool) -> Vec<String> {
        let mut genes = self.genes.clone();
        if intrinsic {
            genes.extend(self.genes.iter().map(|g| intrinsic_name(g)));
        }
        genes
    }

    /// As [`Layout::toml`] with other contact genes (the frozen section reads every
    /// gene's neighbour mean, for the neighbour-average baseline).
    fn toml_with(&self, initial_files: bool, contact_genes: &[String], intrinsic: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Learned from `{}` by `explant learn`.", self.section.display());
        let _ = writeln!(
            s,
            "# Each cell relaxes (τ = {} min) toward a target set by its type, its neighbours' types, the ligands it\n\
             # senses and its neighbours' expression: model.pt (see model.json and learn.json). The tissue is the\n\
             # model's steady state (observed.h5ad holds the section as read).",
            self.tau
        );
        let _ = writeln!(s, "version = 1\nname = {}", quote(&self.name));
        let _ = writeln!(s, "description = {}", quote(&format!("learned from {}", self.section.display())));
        if intrinsic {
            let _ = writeln!(
                s,
                "# `GENE_intrinsic` columns hold each cell's fixed offset: the part of its expression its niche does\n\
                 # not explain, so that the observed section is exactly the model's steady state."
            );
        }
        let _ = writeln!(s, "seed = 0\ngenes = {}\n", list(&self.state_genes(intrinsic)));
        let _ = writeln!(
            s,
            "[time]\ndt = {}\nduration = {}\nrecord_every = {}\n",
            self.dt,
            self.duration,
            self.duration / 10.0
        );
        let size: Vec<String> = self.size[..self.dims].iter().map(|v| v.to_string()).collect();
        let _ = writeln!(s, "[grid]\nsize = [{}]\ndx = {}\nscheme = \"implicit\"\n", size.join(", "), self.dx);
        for (k, (name, pair)) in self.channels.iter().enumerate() {
            let _ = writeln!(s, "[[ligands]]\nname = {}", quote(name));
            let _ = writeln!(
                s,
                "diffusion = {}\ndecay = {}\nsecreted_by = {}\nexport_rate = {}\nreceptor = {}",
                self.decay * self.range * self.range,
                self.decay,
                quote(&pair.ligand),
                self.export[k],
                quote(&pair.receptor)
            );
            if initial_files {
                let _ = writeln!(
                    s,
                    "initial = {{ kind = \"file\", path = {} }}",
                    quote(&format!("fields/{}.npy", file_stem(name)))
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "[contact]\ngenes = {}\nradius = {}\n", list(contact_genes), self.contact_radius);
        for (t, name) in self.types.iter().enumerate() {
            let baseline: Vec<String> =
                self.genes.iter().zip(&self.type_means[t]).map(|(g, v)| format!("{} = {}", quote(g), v)).collect();
            let _ = writeln!(s, "[[cell_types]]\nname = {}\nbaseline = {{ {} }}\n", quote(name), baseline.join(", "));
        }
        let _ = writeln!(
            s,
            "[tissue]\nshape = \"import\"\npath = \"tissue.h5ad\"\nobsm = \"spatial\"\ncell_type_column = \"cell_type\"\ncell_radius = {}\n",
            self.cell_radius
        );
        let _ = writeln!(s, "[mechanics]\nmobility = 0.0\n");
        let _ = writeln!(s, "[model]\nkind = \"torchscript\"\npath = \"model.pt\"\n");
        let _ = writeln!(s, "[output]\ncolour_by_gene = {}", quote(&self.genes[0]));
        if let Some((name, _)) = self.channels.first() {
            let _ = writeln!(s, "heatmap_ligand = {}", quote(name));
        }
        s
    }
}

/// The engine's inputs of every cell at the last tick, in the order of cell ids (the
/// section's order): sensed `N × L`, contact `N × G`, neighbour counts `N × T`, types.
fn batch_inputs(sim: &Simulation, g: usize, l: usize, t: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u32>) {
    let b = sim.world.resource::<explant_core::Batch>();
    let n = b.cells;
    let (mut sensed, mut contact, mut counts, mut types) =
        (vec![0.0; n * l], vec![0.0; n * g], vec![0.0; n * t], vec![0u32; n]);
    for row in 0..n {
        let i = b.ids[row] as usize;
        sensed[i * l..(i + 1) * l].copy_from_slice(&b.sensed[row * l..(row + 1) * l]);
        contact[i * g..(i + 1) * g].copy_from_slice(&b.contact[row * g..(row + 1) * g]);
        counts[i * t..(i + 1) * t].copy_from_slice(&b.neighbour_types[row * t..(row + 1) * t]);
        types[i] = b.cell_type[row];
    }
    (sensed, contact, counts, types)
}

/// Step until the ligand field changes by at most 1e-6 of its largest value per tick
/// (or `max_ticks`); the ticks taken.
fn settle_field(sim: &mut Simulation, max_ticks: u64) -> Result<u64, RunError> {
    let mut previous = sim.ligands().field.data.clone();
    let mut ticks = 0;
    while ticks < max_ticks {
        sim.step()?;
        ticks += 1;
        sim.sync_field()?;
        let now = &sim.ligands().field.data;
        let top = now.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let change = now.iter().zip(&previous).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        previous.clone_from(now);
        if change <= 1e-6 * top || now.is_empty() {
            break;
        }
    }
    Ok(ticks)
}

/// A simulation of the frozen section, its field at steady state.
fn frozen(scene: &LoadedScene, cells: InitialCells, max_ticks: u64) -> Result<(Simulation, u64), RunError> {
    let sc = &scene.scene;
    let (diffuser, _) = crate::backends::diffusion(DiffusionChoice::Cpu, sc.grid.scheme)?;
    let model = Frozen { signature: ModelSignature::of_scene(sc) };
    let mut sim = Simulation::with_cells(sc, diffuser, Box::new(model), Some(cells))?;
    let ticks = settle_field(&mut sim, max_ticks)?;
    Ok((sim, ticks))
}

/// The cells of the section mapped onto the scene (positions offset into the domain).
fn section_cells(
    scene: &LoadedScene,
    s: &Section,
    names: &[String],
    expression: &[f32],
) -> Result<InitialCells, RunError> {
    let matched = vec![true; scene.scene.genes.len()];
    Ok(InitialCells::from_import(&scene.scene, &s.path, &s.positions, Some(names), expression, &matched)?)
}

/// Write a field channel as a C-order float32 `.npy` array, `(ny, nx)` or `(nz, ny, nx)`.
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), RunError> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).map_err(RunError::file("write", path))
}

fn write_file(path: &Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text).map_err(RunError::file("write", path))
}

/// Learn a niche model from a section and write the scene that runs it (see the module
/// documentation); `progress` hears each phase.
///
/// # Errors
///
/// On bad options (naming the option and value), an unreadable or unsuitable section, a
/// model that does not export or load, or a learned model with no stable steady state.
pub fn learn(o: &LearnOptions, progress: &mut dyn FnMut(&str)) -> Result<LearnReport, RunError> {
    check_options(o)?;
    let mut notes = Vec::new();
    let lr = o.lr.as_deref().map(read_lr_table).transpose()?;

    // 1. The section and its gene panel (with the ligand–receptor pairs asked for).
    progress("reading the section");
    let mut request = SectionRequest {
        path: &o.section,
        coordinates: o.coordinates.clone(),
        cell_type_key: &o.cell_type_key,
        scale: o.scale,
        panel: &o.genes,
        extra: &[],
        normalise: o.normalise,
    };
    let (mut s, stats) = read_section(&request)?;
    let mut extra = Vec::new();
    if let (Some(table), true) = (&lr, o.lr_pairs > 0) {
        let stats = match stats {
            Some(st) => st,
            None => {
                let panel = GenePanel::MostVariable(0);
                let r = SectionRequest { panel: &panel, ..request.clone() };
                read_section(&r)?.1.unwrap_or_default()
            }
        };
        let index: BTreeMap<&str, usize> = stats.names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let in_panel: BTreeSet<&str> = s.genes.iter().map(String::as_str).collect();
        let mut candidates: Vec<(f64, &LrPair)> = table
            .pairs
            .iter()
            .filter(|p| p.ligand != p.receptor)
            .filter(|p| !(in_panel.contains(p.ligand.as_str()) && in_panel.contains(p.receptor.as_str())))
            .filter_map(|p| {
                let (a, b) = (index.get(p.ligand.as_str())?, index.get(p.receptor.as_str())?);
                let m = stats.mean[*a].min(stats.mean[*b]);
                (m > 0.0).then_some((m, p))
            })
            .collect();
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        for (_, p) in candidates.into_iter().take(o.lr_pairs) {
            extra.push(p.ligand.clone());
            extra.push(p.receptor.clone());
        }
        if !extra.is_empty() {
            let names: Vec<String> = s.genes.iter().cloned().chain(extra.iter().cloned()).collect();
            let panel = GenePanel::Names(names);
            request.panel = &panel;
            s = read_section(&request)?.0;
        }
    } else if o.lr_pairs > 0 {
        return Err(option("--lr-pairs", "needs a ligand–receptor table (`--lr FILE`)"));
    }
    if s.labels.len() != s.cells || s.cells < 2 * o.folds {
        return Err(RunError::Invalid(format!(
            "section `{}` has {} cells, too few for {} folds",
            o.section.display(),
            s.cells,
            o.folds
        )));
    }
    let g = s.genes.len();
    notes.push(format!(
        "{} cells × {} panel genes (of {} in the file); expression {}",
        s.cells, g, s.genes_in_file, s.transform
    ));

    // 2. Ligand channels: pairs whose ligand and receptor are both in the panel.
    let mut channels: Vec<(String, LrPair)> = Vec::new();
    if let Some(table) = &lr {
        let panel: BTreeSet<&str> = s.genes.iter().map(String::as_str).collect();
        let pairs: Vec<&LrPair> = table
            .pairs
            .iter()
            .filter(|p| {
                p.ligand != p.receptor && panel.contains(p.ligand.as_str()) && panel.contains(p.receptor.as_str())
            })
            .collect();
        for p in &pairs {
            let shared = pairs.iter().filter(|q| q.ligand == p.ligand).count() > 1;
            let name = if shared { format!("{}_{}", p.ligand, p.receptor) } else { p.ligand.clone() };
            channels.push((name, (*p).clone()));
        }
        notes.push(format!(
            "ligand–receptor table `{}`: {} single-gene pairs ({}; {} with a complex left out); {} with both genes in the panel{}",
            o.lr.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            table.pairs.len(),
            table.filter,
            table.complexes,
            channels.len(),
            if channels.is_empty() {
                String::new()
            } else {
                format!(": {}", channels.iter().map(|(_, p)| format!("{}→{}", p.ligand, p.receptor)).collect::<Vec<_>>().join(", "))
            }
        ));
    } else {
        notes.push("no ligand–receptor table (`--lr`): the model has no diffusing ligands".into());
    }
    let l = channels.len();
    let contact_genes: Vec<String> = match &o.contact_genes {
        ContactGenes::All => s.genes.clone(),
        ContactGenes::None => Vec::new(),
        ContactGenes::LigandReceptor => s
            .genes
            .iter()
            .filter(|x| channels.iter().any(|(_, p)| p.ligand == **x || p.receptor == **x))
            .cloned()
            .collect(),
        ContactGenes::Names(names) => {
            for n in names {
                if !s.genes.contains(n) {
                    return Err(option(
                        "--contact-genes",
                        format!("`{n}` is not in the gene panel{}", explant_scene::suggest(n, &s.genes)),
                    ));
                }
            }
            s.genes.iter().filter(|x| names.contains(x)).cloned().collect()
        }
    };

    // 3. Cell types and geometry.
    let mut labels: Vec<String> = s.labels.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    if labels.iter().all(|x| x.parse::<f64>().is_ok()) {
        labels.sort_by(|a, b| a.parse::<f64>().unwrap_or(0.0).total_cmp(&b.parse::<f64>().unwrap_or(0.0)));
    }
    let types: Vec<String> = labels.iter().map(|x| type_name(&o.cell_type_key, x)).collect();
    let t = types.len();
    let type_of: BTreeMap<&str, usize> = labels.iter().enumerate().map(|(i, x)| (x.as_str(), i)).collect();
    let cell_type: Vec<usize> = s.labels.iter().map(|x| type_of[x.as_str()]).collect();
    let cell_names: Vec<String> = cell_type.iter().map(|&k| types[k].clone()).collect();
    let nn = nearest_neighbour_median(&s.positions);
    if nn.is_nan() || nn <= 0.0 {
        return Err(RunError::Invalid(format!(
            "section `{}`: every cell sits on another (nearest-neighbour distance 0); check `--coords`/`--spatial-key`",
            o.section.display()
        )));
    }
    let contact_radius = o.contact_radius.unwrap_or(1.5 * nn);
    let range = o.ligand_range.unwrap_or(2.0 * nn);
    let dims = s.dims;
    let margin = 2.0 * range.max(contact_radius);
    let mut lo = [0.0f32; 3];
    let mut hi = [0.0f32; 3];
    for a in 0..dims {
        lo[a] = s.positions.iter().map(|p| p[a]).fold(f32::INFINITY, f32::min);
        hi[a] = s.positions.iter().map(|p| p[a]).fold(f32::NEG_INFINITY, f32::max);
    }
    let mut dx = nn;
    let extent: Vec<f32> = (0..dims).map(|a| hi[a] - lo[a] + 2.0 * margin).collect();
    let budget = if dims == 2 { 4.0e6 } else { 2.0e7 };
    while extent.iter().map(|e| (e / dx).ceil()).product::<f32>() > budget {
        dx *= 1.25;
    }
    let mut size = [0.0f32; 3];
    let mut offset = [0.0f32; 3];
    for a in 0..dims {
        size[a] = ((extent[a] / dx).ceil() * dx).max(dx);
        offset[a] = margin - lo[a];
    }
    for p in &mut s.positions {
        for a in 0..dims {
            p[a] += offset[a];
        }
    }
    notes.push(format!(
        "{t} cell types from `obs['{}']`; median nearest-neighbour distance {nn} µm, contact radius {contact_radius} µm, \
         ligand range {range} µm, grid {} µm voxels",
        o.cell_type_key, dx
    ));
    let mut type_means = vec![vec![0.0f32; g]; t];
    let mut type_counts = vec![0usize; t];
    for i in 0..s.cells {
        type_counts[cell_type[i]] += 1;
        for k in 0..g {
            type_means[cell_type[i]][k] += s.expression[i * g + k];
        }
    }
    for (m, c) in type_means.iter_mut().zip(&type_counts) {
        m.iter_mut().for_each(|v| *v /= (*c).max(1) as f32);
    }
    let dt = (o.tau / 10.0).min(0.2 / o.ligand_decay);
    let stem = o.section.file_stem().map(|x| x.to_string_lossy().to_string()).unwrap_or_else(|| "section".into());
    let mut layout = Layout {
        name: format!("learned-{stem}"),
        genes: s.genes.clone(),
        channels: channels.clone(),
        contact_genes: contact_genes.clone(),
        types: types.clone(),
        type_means,
        size,
        dims,
        dx,
        offset,
        contact_radius,
        range,
        decay: o.ligand_decay,
        export: vec![1.0; l],
        cell_radius: 0.45 * nn,
        dt,
        duration: 5.0 * o.tau,
        section: std::path::absolute(&o.section).unwrap_or_else(|_| o.section.clone()),
        tau: o.tau,
        intrinsic: o.intrinsic,
    };
    std::fs::create_dir_all(o.out.join("fields")).map_err(RunError::file("create", o.out.join("fields")))?;
    let scene_path = o.out.join("scene.toml");
    let field_ticks = (40.0 / o.ligand_decay / dt).ceil() as u64;

    // 4. The section's own field at steady state; export rates scaled so that the mean
    // concentration at the cells equals the ligand gene's mean expression.
    progress("solving the section's ligand field at steady state");
    let load = |layout: &Layout, files: bool| LoadedScene::from_str(&layout.toml(files), &scene_path);
    let load_all = |layout: &Layout| LoadedScene::from_str(&layout.toml_with(false, &layout.genes, false), &scene_path);
    let scene = load_all(&layout)?;
    let (mut sim, _) = frozen(&scene, section_cells(&scene, &s, &cell_names, &s.expression)?, field_ticks)?;
    if l > 0 {
        let (sensed, ..) = batch_inputs(&sim, g, l, t);
        for (c, (_, pair)) in channels.iter().enumerate() {
            let rec = s.genes.iter().position(|x| *x == pair.receptor).unwrap_or(0);
            let lig = s.genes.iter().position(|x| *x == pair.ligand).unwrap_or(0);
            let (mut conc, mut expr, mut n) = (0.0f64, 0.0f64, 0usize);
            for i in 0..s.cells {
                let r = s.expression[i * g + rec];
                if r > 0.0 {
                    conc += f64::from(sensed[i * l + c] / r);
                    n += 1;
                }
                expr += f64::from(s.expression[i * g + lig]);
            }
            let (conc, expr) = (conc / n.max(1) as f64, expr / s.cells as f64);
            if conc > 0.0 && expr > 0.0 {
                layout.export[c] = (expr / conc) as f32;
            }
        }
        let scene = load_all(&layout)?;
        sim = frozen(&scene, section_cells(&scene, &s, &cell_names, &s.expression)?, field_ticks)?.0;
    }
    let frozen_scene = load_all(&layout)?;
    let scene = load(&layout, false)?;
    let (sensed, contact, counts, engine_types) = batch_inputs(&sim, g, l, t);
    debug_assert!(engine_types.iter().zip(&cell_type).all(|(a, b)| *a as usize == *b));
    let f = Features {
        n: s.cells,
        t,
        l,
        g,
        cell_type: cell_type.iter().map(|&k| k as u32).collect(),
        neighbour_types: counts,
        sensed,
        contact,
        contact_mask: s.genes.iter().map(|x| contact_genes.contains(x)).collect(),
        expression: s.expression.clone(),
    };
    let isolated = (0..f.n).filter(|&i| f.neighbours(i) == 0.0).count();
    if isolated * 2 > f.n {
        notes.push(format!(
            "{isolated} of {} cells have no neighbour within {contact_radius} µm: check `--scale` or `--contact-radius`",
            f.n
        ));
    }

    // 5. Held-out evaluation on spatial blocks, then the final fit on every cell.
    progress("cross-validating on spatial blocks");
    let folds = Folds::stripes(&s.positions, dims, o.folds, contact_radius);
    let cv = held_out(&f, &folds);
    let all_genes: Vec<usize> = (0..g).collect();
    let lr_genes: Vec<usize> =
        (0..g).filter(|&k| channels.iter().any(|(_, p)| p.ligand == s.genes[k] || p.receptor == s.genes[k])).collect();
    let mut heldout = Vec::new();
    let mut per_gene = Vec::new();
    for (set, genes) in [("all", &all_genes), ("ligand_receptor", &lr_genes)] {
        if genes.is_empty() {
            continue;
        }
        let scores: Vec<Score> = cv.predictions.iter().map(|p| score(&f, p, genes)).collect();
        let reference = scores[2].mae;
        for (m, sc) in Baseline::ALL.iter().zip(&scores) {
            heldout.push(HeldOutRow {
                model: m.name().into(),
                genes: set.into(),
                n_genes: genes.len(),
                mae: sc.mae,
                mean_r2: sc.mean_r2,
                mae_vs_neighbour_average: sc.mae / reference,
            });
            if set == "all" {
                for (k, r2) in sc.r2.iter().enumerate() {
                    per_gene.push((s.genes[k].clone(), m.name(), *r2));
                }
            }
        }
    }
    let hyper = niche::choose(Baseline::Learned, &f, &folds, None);
    let all: Vec<usize> = (0..f.n).collect();
    let model_path = o.out.join("model.pt");
    let masked_contact: Vec<f32> =
        (0..f.n * g).map(|j| if f.contact_mask[j % g] { f.contact[j] } else { 0.0 }).collect();
    let top = s.expression.iter().fold(1.0f32, |m, v| m.max(*v));
    let cap = (300.0 * o.tau.max(1.0 / o.ligand_decay) / dt).ceil() as u64;

    // 6–7. Export the model and check its dynamics: run from the section (with intrinsic
    // offsets, from the section raised by 10 %, which must return to it) to a steady
    // state. A fit whose dynamics run away (a feedback through neighbours or ligands with
    // gain above 1) is refitted with a stronger penalty until it settles.
    let gt = if o.intrinsic { 2 * g } else { g };
    let state_genes = layout.state_genes(o.intrinsic);
    let pad = |v: &[f32]| -> Vec<f32> { v.iter().copied().chain(std::iter::repeat_n(0.0, gt - g)).collect() };
    let mut used = hyper;
    let (fit, residual, intrinsic_mae, mut settle, ticks, change) = loop {
        progress(&format!("exporting the model (ridge penalty {}) and checking its steady state", used.alpha));
        let mut fit = niche::fits(Baseline::Learned, &f, &all, &[used]).swap_remove(0);
        // What the niche does not explain, per cell and gene, kept non-negative (the
        // engine keeps every state column so) by a constant per gene that the intercept
        // takes back.
        let mut residual = vec![0.0f32; f.n * g];
        let mut unexplained = 0.0f64;
        if o.intrinsic {
            let (mut row, mut target) = (Vec::new(), vec![0.0f64; g]);
            let mut raw = vec![0.0f64; f.n * g];
            for i in 0..f.n {
                fit.predict(&f, i, &mut row, &mut target);
                for k in 0..g {
                    raw[i * g + k] = f64::from(s.expression[i * g + k]) - target[k];
                    unexplained += raw[i * g + k].abs() / (f.n * g) as f64;
                }
            }
            for k in 0..g {
                let shift = (0..f.n).map(|i| raw[i * g + k]).fold(0.0f64, f64::min).abs();
                fit.bias[k] -= shift;
                for i in 0..f.n {
                    residual[i * g + k] = (raw[i * g + k] + shift) as f32;
                }
            }
        }
        let state = |i: usize, raise: f32| -> Vec<f32> {
            let x = s.expression[i * g..(i + 1) * g].iter().map(|v| v * raise);
            if o.intrinsic { x.chain(residual[i * g..(i + 1) * g].iter().copied()).collect() } else { x.collect() }
        };
        let learned_json = serde_json::json!({
            "command": o.command,
            "section": layout.section.display().to_string(),
            "cells": s.cells,
            "tau_min": o.tau,
            "ridge_alpha": used.alpha,
            "ridge_alpha_cross_validated": hyper.alpha,
            "own_gene_contact_only": used.own,
            "intrinsic_offsets": o.intrinsic,
            "folds": o.folds,
            "heldout": heldout,
        });
        let first = 0usize;
        let spec = NicheSpec {
            weights: fit.weights.iter().map(|&v| v as f32).collect(),
            bias: fit.bias.iter().map(|&v| v as f32).collect(),
            tau: o.tau,
            genes: state_genes.clone(),
            ligands: channels.iter().map(|(n, _)| n.clone()).collect(),
            cell_types: types.clone(),
            learned: learned_json,
            check: (
                state(first, 1.0),
                f.sensed[first * l..(first + 1) * l].to_vec(),
                pad(&masked_contact[first * g..(first + 1) * g]),
                f.cell_type[first],
                f.neighbour_types[first * t..(first + 1) * t].to_vec(),
            ),
            modelled: g,
        };
        crate::backends::torch::export_niche(&spec, &model_path)?;
        let (diffuser, _) = crate::backends::diffusion(DiffusionChoice::Cpu, scene.scene.grid.scheme)?;
        let model = crate::backends::model(&scene, o.threads)?;
        if o.intrinsic {
            // At the section, with its own field, the exported model must not move a cell.
            let mut m = crate::backends::model(&scene, o.threads)?;
            let expression: Vec<f32> = (0..f.n).flat_map(|i| state(i, 1.0)).collect();
            let contact: Vec<f32> = (0..f.n).flat_map(|i| pad(&masked_contact[i * g..(i + 1) * g])).collect();
            let input = ResponseInput {
                cells: f.n,
                expression: &expression,
                sensed: &f.sensed,
                contact: &contact,
                neighbour_types: &f.neighbour_types,
                cell_type: &f.cell_type,
                dt,
            };
            let mut rates = vec![0.0f32; f.n * gt];
            m.rates(&input, &mut rates)?;
            let worst = rates.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            if worst.is_nan() || worst > 1e-4 * top / o.tau {
                return Err(RunError::Invalid(format!(
                    "internal check failed: the exported model moves the section itself (largest rate {worst} per min)"
                )));
            }
        }
        let raise = if o.intrinsic { 1.1 } else { 1.0 };
        let start: Vec<f32> = (0..f.n).flat_map(|i| state(i, raise)).collect();
        let cells = section_cells(&scene, &s, &cell_names, &start)?;
        let mut sim = Simulation::with_cells(&scene.scene, diffuser, model, Some(cells))?;
        let mut before = sim.world.resource::<explant_core::States>().data.clone();
        let (mut ticks, mut change, mut outcome) = (0u64, f64::INFINITY, None);
        while ticks < cap {
            sim.step()?;
            ticks += 1;
            let now = &sim.world.resource::<explant_core::States>().data;
            change = now.iter().zip(&before).fold(0.0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
            let largest = now.iter().fold(0.0f32, |m, v| m.max(*v));
            before.clone_from(now);
            if largest.is_nan() || largest >= 10.0 * top {
                outcome = Some(format!(
                    "expression grew past {largest} (the section's largest value is {top}) in {ticks} ticks"
                ));
                break;
            }
            if change <= 1e-6 * f64::from(top) {
                break;
            }
        }
        if outcome.is_none() && change > 1e-6 * f64::from(top) {
            outcome = Some(format!("it was still changing by {change:.3e} per tick after {ticks} ticks"));
        }
        if outcome.is_none() && o.intrinsic {
            // Raised by 10 %, the section must come back to itself (a stable steady state).
            let settled = sim.cells().expression;
            let off =
                (0..f.n * g).map(|j| (settled[(j / g) * gt + j % g] - s.expression[j]).abs()).fold(0.0f32, f32::max);
            if off > 1e-3 * top {
                outcome = Some(format!("raised by 10 %, the section settled {off} away from itself, not back on it"));
            }
        }
        match outcome {
            None => break (fit, residual, unexplained, sim, ticks, change),
            Some(why) if used.alpha < 1e3 => {
                notes.push(format!(
                    "the fit with ridge penalty {} has no stable steady state at the section ({why}); refitted with \
                     penalty {}",
                    used.alpha,
                    used.alpha * 3.0
                ));
                used.alpha *= 3.0;
            }
            Some(why) => {
                return Err(RunError::Invalid(format!(
                    "the learned model has no stable steady state near the section even with ridge penalty {}: {why}; \
                     fewer genes, `--contact-genes lr` or a shorter `--ligand-range` may help",
                    used.alpha
                )));
            }
        }
    };
    let converged = true;
    if used != hyper {
        // The exported model's own held-out score, so the table describes what was written.
        let pred = niche::held_out_with(Baseline::Learned, &f, &folds, used);
        for (set, genes) in [("all", &all_genes), ("ligand_receptor", &lr_genes)] {
            if genes.is_empty() {
                continue;
            }
            let reference =
                heldout.iter().find(|r| r.genes == set && r.model == "neighbour average").map_or(1.0, |r| r.mae);
            let sc = score(&f, &pred, genes);
            heldout.push(HeldOutRow {
                model: "learned (as exported)".into(),
                genes: set.into(),
                n_genes: genes.len(),
                mae: sc.mae,
                mean_r2: sc.mean_r2,
                mae_vs_neighbour_average: sc.mae / reference,
            });
        }
    }

    // 8. The scene's start: with intrinsic offsets the section itself and its own steady
    // field; without, the state the model settled in. Written as fields, scene and tissue.
    progress("writing the scene");
    let (start, source): (Vec<f32>, &Simulation) = if o.intrinsic {
        (
            (0..f.n)
                .flat_map(|i| s.expression[i * g..(i + 1) * g].iter().chain(&residual[i * g..(i + 1) * g]).copied())
                .collect(),
            &sim,
        )
    } else {
        (settle.cells().expression, &settle)
    };
    let mae_from_observed =
        (0..f.n * g).map(|j| f64::from((start[(j / g) * gt + j % g] - s.expression[j]).abs())).sum::<f64>()
            / (f.n * g).max(1) as f64;
    let mut files = Vec::new();
    let grid = source.ligands().field.grid;
    let shape: Vec<usize> = if dims == 3 { vec![grid.nz, grid.ny, grid.nx] } else { vec![grid.ny, grid.nx] };
    for (c, (name, _)) in channels.iter().enumerate() {
        let path = o.out.join("fields").join(format!("{}.npy", file_stem(name)));
        write_npy(&path, &shape, source.ligands().field.channel(c))?;
        files.push(path);
    }
    write_file(&scene_path, &layout.toml(true))?;
    let written = LoadedScene::from_file(&scene_path)?;
    let tissue = o.out.join("tissue.h5ad");
    {
        let (diffuser, _) = crate::backends::diffusion(DiffusionChoice::Cpu, written.scene.grid.scheme)?;
        let model = crate::backends::model(&written, o.threads)?;
        let cells = section_cells(&written, &s, &cell_names, &start)?;
        let mut at_start = Simulation::with_cells(&written.scene, diffuser, model, Some(cells))?;
        crate::write_snapshot(&mut at_start, None, &written, &tissue)?;
    }
    let observed = o.out.join("observed.h5ad");
    crate::write_snapshot(&mut sim, None, &frozen_scene, &observed)?;
    files.extend([scene_path.clone(), model_path.clone(), model_path.with_extension("json"), tissue, observed]);

    // 9. The written scene, run from disk for a few ticks, must stay where it is.
    progress("checking the written scene holds its steady state");
    let check_ticks = 10u64;
    let (cells, _) = crate::imported_cells(&written)?;
    let (diffuser, _) = crate::backends::diffusion(DiffusionChoice::Cpu, written.scene.grid.scheme)?;
    let model = crate::backends::model(&written, o.threads)?;
    let mut check = Simulation::with_cells(&written.scene, diffuser, model, cells)?;
    let begin = check.cells().expression;
    for _ in 0..check_ticks {
        check.step()?;
    }
    let drift = check.cells().expression.iter().zip(&begin).fold(0.0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
    let steady = Steady {
        settle_ticks: ticks,
        converged,
        last_change: change,
        mae_from_observed,
        intrinsic_mae,
        drift,
        check_ticks,
    };

    // 10. Tables.
    let mut text = String::from("model,genes,n_genes,mae,mean_r2,mae_vs_neighbour_average\n");
    for r in &heldout {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{}",
            r.model, r.genes, r.n_genes, r.mae, r.mean_r2, r.mae_vs_neighbour_average
        );
    }
    write_file(&o.out.join("heldout.csv"), &text)?;
    let mut text = String::from("gene,model,r2\n");
    for (gene, model, r2) in &per_gene {
        let _ = writeln!(text, "{},{},{}", csv_field(gene), model, r2);
    }
    write_file(&o.out.join("heldout_genes.csv"), &text)?;
    let inputs = input_names(&types, &channels, &s.genes);
    let mut text = String::from("gene,input,weight,standardised\n");
    for k in 0..g {
        for (c, name) in inputs.iter().enumerate() {
            let _ = writeln!(
                text,
                "{},{},{},{}",
                csv_field(&s.genes[k]),
                csv_field(name),
                fit.weights[c * g + k],
                fit.standardised[c * g + k]
            );
        }
    }
    write_file(&o.out.join("coefficients.csv"), &text)?;
    let recovery = o.truth.as_deref().map(|p| recovery(p, &fit, &inputs, &s.genes)).transpose()?;
    let axis_name = ["x", "y", "z"].get(folds.axis).copied().unwrap_or("x");
    let summary = serde_json::json!({
        "format": "explant-learn",
        "version": 1,
        "command": o.command,
        "section": layout.section.display().to_string(),
        "cells": s.cells,
        "genes": s.genes,
        "expression": s.transform,
        "ligands": channels.iter().map(|(n, p)| serde_json::json!({"name": n, "ligand": p.ligand, "receptor": p.receptor})).collect::<Vec<_>>(),
        "cell_types": types,
        "contact_genes": contact_genes,
        "nearest_neighbour_um": nn,
        "offset_um": layout.offset[..dims].to_vec(),
        "scale_um_per_unit": o.scale,
        "contact_radius_um": contact_radius,
        "ligand_range_um": range,
        "ligand_decay_per_min": o.ligand_decay,
        "tau_min": o.tau,
        "folds": o.folds,
        "blocking_axis": axis_name,
        "training_cells_per_fold": cv.train_sizes,
        "ridge_alpha": used.alpha,
        "ridge_alpha_cross_validated": hyper.alpha,
        "own_gene_contact_only": used.own,
        "hyperparameters_per_fold": cv.hypers,
        "heldout": heldout,
        "steady": steady,
        "recovery": recovery,
        "notes": notes,
    });
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|source| RunError::Manifest { path: o.out.join("learn.json"), source })?;
    write_file(&o.out.join("learn.json"), &json)?;
    for f in ["heldout.csv", "heldout_genes.csv", "coefficients.csv", "learn.json"] {
        files.push(o.out.join(f));
    }
    Ok(LearnReport { heldout, steady, notes, files, recovery })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Names of the learned model's inputs, in feature order.
fn input_names(types: &[String], channels: &[(String, LrPair)], genes: &[String]) -> Vec<String> {
    types
        .iter()
        .map(|t| format!("type:{t}"))
        .chain(types.iter().map(|t| format!("neighbours:{t}")))
        .chain(channels.iter().map(|(n, _)| format!("ligand:{n}")))
        .chain(genes.iter().map(|g| format!("contact:{g}")))
        .collect()
}

/// How much of a teacher's ligand and contact wiring the learned model recovers: for
/// each teacher edge `ligand:X → gene` or `contact:Y → gene` with the gene in the panel,
/// whether `X` (or `Y`) is the learned model's strongest ligand or contact input of that
/// gene (by standardised weight) with the edge's sign.
fn recovery(truth: &Path, fit: &Ridge, inputs: &[String], genes: &[String]) -> Result<Recovery, RunError> {
    let scene = LoadedScene::from_file(truth)?;
    let g = genes.len();
    let mut out = Recovery { edges: 0, recovered: 0, details: Vec::new() };
    for e in &scene.scene.teacher.edges {
        if !(e.source.starts_with("ligand:") || e.source.starts_with("contact:")) {
            continue;
        }
        let Some(k) = genes.iter().position(|x| *x == e.target) else { continue };
        out.edges += 1;
        let best = inputs
            .iter()
            .enumerate()
            .filter(|(_, n)| n.starts_with("ligand:") || n.starts_with("contact:"))
            .max_by(|a, b| fit.standardised[a.0 * g + k].abs().total_cmp(&fit.standardised[b.0 * g + k].abs()));
        if let Some((c, name)) = best {
            let w = fit.standardised[c * g + k];
            let ok = *name == e.source && (w > 0.0) == (e.weight > 0.0);
            out.recovered += usize::from(ok);
            out.details.push(format!(
                "{} -> {} (weight {}): strongest learned input {name} ({w:+.3}){}",
                e.source,
                e.target,
                e.weight,
                if ok { "" } else { " — not recovered" }
            ));
        }
    }
    Ok(out)
}
