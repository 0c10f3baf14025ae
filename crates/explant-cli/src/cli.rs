//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// explant: a spatial multicellular tissue simulator (a virtual tissue).
#[derive(Debug, Parser)]
#[command(name = "explant", version, about, long_about = None, after_help = crate::exit::HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scene end to end and write its results (AnnData, picture, time series).
    Run(RunArgs),
    /// Continue a run from its latest checkpoint (`run --checkpoint-every`) to the end of
    /// its scene, or to a new `--duration`: the outputs are those of an uninterrupted run.
    Resume(ResumeArgs),
    /// Parse and validate a scene without running it.
    Check(CheckArgs),
    /// Draw a run's figures: the tissue (PNG), time series and response curves (SVG).
    Render(RenderArgs),
    /// Write a run's report: one self-contained HTML file with its figures and tables.
    Report(ReportArgs),
    /// Train a network on the teacher's trajectories across perturbation contexts and
    /// export it as TorchScript with its metadata.
    Train(TrainArgs),
    /// Learn a response model from a spatial section (`.h5ad`) and write a ready scene that
    /// runs the section forward: DIR/scene.toml, DIR/model.pt, held-out scores against
    /// baselines on spatially blocked folds (DIR/heldout.csv).
    Learn(LearnArgs),
    /// Score a learned model on held-out knockouts in a held-out cell type, in tissue,
    /// against the teacher and simple baselines.
    Eval(EvalArgs),
    /// Say which signal channel (ligand, contact gene, neighbour type) carried a
    /// perturbation's effect on each gene, by counterfactual runs, into RUN_DIR/explain/.
    Explain(ExplainArgs),
    /// Learned response models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Parameter sweeps: many runs over parameters and seeds, locally (resumable) or as a
    /// Snakemake workflow; `collect` and `report` subcommands.
    Sweep(SweepArgs),
    /// Measure the speed of a stage on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Export a run for other tools: `--vtk` writes ParaView files (cells as `.vtu`,
    /// ligand fields as `.vtk`, a `.pvd` time series of each) into RUN_DIR/vtk/.
    Export(ExportArgs),
    /// Print a shell completion script for explant's commands and options, e.g.
    /// `explant completions bash > ~/.local/share/bash-completion/completions/explant`.
    Completions(CompletionsArgs),
}

/// `explant export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run's output directory (written by `explant run`).
    pub run_dir: PathBuf,
    /// ParaView files of every snapshot into RUN_DIR/vtk/ (the only format so far; required).
    #[arg(long, required = true)]
    pub vtk: bool,
    /// Write again into a RUN_DIR/vtk/ that already holds files.
    #[arg(long)]
    pub force: bool,
    /// Numbers as text instead of binary (about twice the size; readable by eye).
    #[arg(long)]
    pub ascii: bool,
}

/// `explant completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells `explant completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// bash (`source <(explant completions bash)`).
    Bash,
    /// zsh (write it as `_explant` on `$fpath`).
    Zsh,
    /// fish (write it to `~/.config/fish/completions/explant.fish`).
    Fish,
}

/// `explant bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Diffusion–decay steps on a synthetic field, CPU and GPU: channel-voxel updates per second.
    Diffusion(BenchDiffusionArgs),
    /// Neighbours + mechanics + fate on packed tissues of growing size: time per tick, ns
    /// per cell and memory per cell.
    Tissue(BenchTissueArgs),
    /// Inference through the TorchScript response model beside libtorch's raw rate for the
    /// same layers: cells per second per tick.
    Model(BenchModelArgs),
    /// Whole ticks of a scene, its model and backends as `explant run` uses them: the time
    /// per tick of every stage, and the memory per cell.
    Tick(BenchTickArgs),
}

/// `explant bench tick`.
#[derive(Debug, Args)]
pub struct BenchTickArgs {
    /// The scene (`scenes/bench_1m.toml` is the 10⁶-cell benchmark).
    pub scene: PathBuf,
    /// Timed ticks (after one warm-up tick); the mean is reported.
    #[arg(long, default_value_t = 5)]
    pub ticks: u64,
    /// Change one scene field, as `explant run --set` does (repeatable).
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Where ligand diffusion runs.
    #[arg(long, value_enum, default_value_t = DiffusionChoice::Cpu)]
    pub diffusion: DiffusionChoice,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print the numbers as one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `explant bench model`.
#[derive(Debug, Args)]
pub struct BenchModelArgs {
    /// The TorchScript model (`.pt`, with its `.json` beside it).
    #[arg(long, default_value = "models/default.pt")]
    pub model: PathBuf,
    /// Population sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000, 1_000_000])]
    pub cells: Vec<usize>,
    /// Timed repetitions per size and path (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Threads (0: all cores): the model's chunks run on this many, the raw paths use as many libtorch threads.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print the numbers as one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `explant bench tissue`.
#[derive(Debug, Args)]
pub struct BenchTissueArgs {
    /// Population sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000, 1_000_000])]
    pub cells: Vec<usize>,
    /// Dimensions to measure, comma separated (2 and/or 3).
    #[arg(long, value_delimiter = ',', default_values_t = vec![2u8, 3])]
    pub dims: Vec<u8>,
    /// Timed ticks per size (after one warm-up tick); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub ticks: usize,
    /// CPU worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print the numbers as one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `explant bench diffusion`.
#[derive(Debug, Args)]
pub struct BenchDiffusionArgs {
    /// Voxels along each axis.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// 2 or 3 dimensions.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub dims: u8,
    /// Ligand channels.
    #[arg(long, default_value_t = 10)]
    pub channels: usize,
    /// Voxel edge, µm.
    #[arg(long, default_value_t = 10.0)]
    pub dx: f32,
    /// Time step, minutes.
    #[arg(long, default_value_t = 0.01)]
    pub dt: f32,
    /// Diffusion coefficient, µm²/min.
    #[arg(long, default_value_t = 1.0e5)]
    pub diffusion: f32,
    /// Decay rate, 1/min.
    #[arg(long, default_value_t = 0.1)]
    pub decay: f32,
    /// Time integration scheme.
    #[arg(long, value_enum, default_value_t = SchemeChoice::Implicit)]
    pub scheme: SchemeChoice,
    /// Timed steps (after one warm-up step); the median is reported.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// CPU worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Which backends.
    #[arg(long, value_enum, default_value_t = BenchBackends::Both)]
    pub backend: BenchBackends,
    /// Print the numbers as one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Diffusion time-integration scheme on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemeChoice {
    /// Substepped forward Euler.
    Explicit,
    /// Locally one-dimensional backward Euler (BioFVM's scheme).
    Implicit,
    /// Douglas ADI (Crank–Nicolson in time, second order).
    Adi,
}

impl From<SchemeChoice> for explant_field::Scheme {
    fn from(s: SchemeChoice) -> Self {
        match s {
            SchemeChoice::Explicit => explant_field::Scheme::Explicit,
            SchemeChoice::Implicit => explant_field::Scheme::Implicit,
            SchemeChoice::Adi => explant_field::Scheme::Adi,
        }
    }
}

/// Backends measured by `explant bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackends {
    /// CPU and GPU (any adapter).
    Both,
    /// CPU only.
    Cpu,
    /// GPU only (any adapter).
    Gpu,
}

/// Where the ligand fields are solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffusionChoice {
    /// The GPU if a hardware adapter exists, else the CPU.
    Auto,
    /// The CPU (rayon).
    Cpu,
    /// The GPU through wgpu (any adapter, including CPU emulations such as lavapipe).
    Gpu,
}

impl From<DiffusionChoice> for explant_run::DiffusionChoice {
    fn from(c: DiffusionChoice) -> Self {
        match c {
            DiffusionChoice::Auto => Self::Auto,
            DiffusionChoice::Cpu => Self::Cpu,
            DiffusionChoice::Gpu => Self::Gpu,
        }
    }
}

/// `explant run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scene file (TOML).
    pub scene: PathBuf,
    /// Output directory (created; must be empty or absent unless --force).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Where ligand diffusion runs.
    #[arg(long, value_enum, default_value_t = DiffusionChoice::Auto)]
    pub diffusion: DiffusionChoice,
    /// Run with the scene's mechanistic teacher instead of its `[model]`.
    #[arg(long, conflicts_with = "model")]
    pub teacher: bool,
    /// Run with this TorchScript model (`.pt` with its `.json`) instead of the scene's
    /// `[model]`; the run's copy of the scene records it.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Worker threads (0: all cores). Results are identical for any count.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Replace the contents of an existing output directory.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not run the paired control (the same scene and seed without perturbations)
    /// beside a scene that has perturbations.
    #[arg(long)]
    pub no_control: bool,
    /// Do not draw figures/ at the end (sweeps skip them).
    #[arg(long)]
    pub no_figures: bool,
    /// Run with this seed instead of the scene's (replicates without editing the file;
    /// recorded in OUT/scene.toml).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Change one scene field for this run, by its path as sweeps name it:
    /// `--set ligands.WNT3A.decay=0.02 --set tissue.cells=3000` (repeatable; VALUE is read
    /// as TOML, else as text; recorded in OUT/scene.toml and validated like the file).
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Write a checkpoint (OUT/checkpoint.explant, replaced each time) every MIN
    /// simulated minutes and at the end, so `explant resume OUT` can finish a run that was
    /// killed, or extend it, with the same results as an uninterrupted run.
    #[arg(long, value_name = "MIN")]
    pub checkpoint_every: Option<f64>,
}

/// `explant explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A scene file (run first into `--out`) or a run directory of `explant run` (its
    /// `scene.toml` is explained; the results go to `RUN_DIR/explain/`).
    pub path: PathBuf,
    /// Output (run) directory when PATH is a scene: the scene is run there, then explained
    /// into `OUT/explain/`.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// How effects are split among channels: `ablation` (one run per channel with that
    /// channel held at the control's value) or `shapley` (Shapley values over coalitions
    /// of channels, with a `direct` row for what travels through none) or `gradients`
    /// (integrated gradients of the model's rate, carried through each cell's state, with
    /// a `residual` row; the ablation of the same channels is run beside it and compared).
    #[arg(long, value_enum, default_value_t = ExplainMethod::Ablation)]
    pub method: ExplainMethod,
    /// With `--method shapley`: channel orders to sample (at least 1; default 16),
    /// seeded by the scene's seed. With at most 4 channels, or at least as many samples
    /// as orders (channels!), every coalition is run and the values are exact. With
    /// `--method gradients`: nodes of the midpoint rule of each integral (default 16).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub samples: Option<u64>,
    /// Use the scene's mechanistic teacher instead of its `[model]`.
    #[arg(long, conflicts_with = "model")]
    pub teacher: bool,
    /// Use this TorchScript model (`.pt` with its `.json`) instead of the scene's `[model]`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where ligand diffusion runs (in each of the explanation's runs).
    #[arg(long, value_enum, default_value_t = DiffusionChoice::Cpu)]
    pub diffusion: DiffusionChoice,
    /// Worker threads (0: all cores). Results are identical for any count.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Replace an existing output directory or `explain/` folder.
    #[arg(long)]
    pub force: bool,
    /// How many of the largest effects to print.
    #[arg(long, default_value_t = 8)]
    pub top: usize,
    /// No progress bar (when PATH is a scene) and no notes.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `explant explain --method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainMethod {
    /// One counterfactual run per channel, that channel held at the control's value.
    Ablation,
    /// Shapley values over channels: exact over every coalition, or by permutation
    /// sampling (`--samples`).
    Shapley,
    /// Integrated gradients of the response model's rate (analytic for the teacher,
    /// autograd for TorchScript), compared with ablation.
    Gradients,
}

/// `explant resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run's output directory (run with `--checkpoint-every`).
    pub run_dir: PathBuf,
    /// Run to this many simulated minutes instead of the scene's duration (to extend a
    /// run; the run's scene.toml records it).
    #[arg(long, value_name = "MIN")]
    pub duration: Option<f64>,
    /// Worker threads (0: all cores). Results are identical for any count.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `explant check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Scene files to validate.
    #[arg(required = true)]
    pub scenes: Vec<PathBuf>,
    /// Print one JSON array on stdout (per scene: path, ok, error, warnings, notes, sizes)
    /// and check every scene; the exit status is still 1 when any is invalid.
    #[arg(long)]
    pub json: bool,
}

/// `explant render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The run's output directory (written by `explant run`).
    pub run_dir: PathBuf,
    /// The snapshot to draw (default: RUN_DIR/tissue.h5ad); a relative path not found
    /// from here is looked up in RUN_DIR.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Colour the cells by this gene (default: by cell type) and plot only its time series
    /// (default: the first 6 genes).
    #[arg(long)]
    pub gene: Option<String>,
    /// The ligand drawn under the cells (default: the scene's `output.heatmap_ligand`,
    /// else its first ligand).
    #[arg(long)]
    pub ligand: Option<String>,
    /// For a 3D run: draw the tissue as the slice at this height in µm (only the cells the
    /// plane cuts, the ligand in that voxel layer) instead of seen from above, into
    /// `tissue_<what>_z<Z>.png`; refused for a 2D run or a height outside the tissue.
    #[arg(long, value_name = "Z", allow_negative_numbers = true)]
    pub slice_z: Option<f32>,
    /// Where the figures go (default: RUN_DIR/figures, which is refreshed); a folder named
    /// here must be new or empty unless `--force`.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Write into a non-empty `--out` folder (replacing only the figures' own files).
    #[arg(long)]
    pub force: bool,
}

/// `explant report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run's output directory (written by `explant run`).
    pub run_dir: PathBuf,
    /// The HTML file to write (default: RUN_DIR/report.html, which is replaced); an
    /// existing file named here is kept unless `--force`.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Overwrite the file named by `--out` if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `explant model ...`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Fit a network to a scene's teacher and export TorchScript plus metadata.
    Fit(FitArgs),
    /// Print a model's metadata and check it loads.
    Show(ShowArgs),
}

/// `explant model fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// The scene whose teacher is fitted.
    pub scene: PathBuf,
    /// Output `.pt` path (the `.json` metadata is written beside it).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most Adam steps.
    #[arg(long, default_value_t = 6000)]
    pub steps: usize,
    /// Overwrite the `.pt` and `.json` files if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `explant learn`.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// The section: an AnnData `.h5ad` with expression, coordinates and cell types.
    pub section: PathBuf,
    /// Output directory (scene, model, tables).
    #[arg(long, short)]
    pub out: PathBuf,
    /// `obs` column with each cell's (or spot's) type or cluster.
    #[arg(long, default_value = "cell_type")]
    pub cell_type_key: String,
    /// `obsm` key of the coordinates (ignored with `--coords`).
    #[arg(long, default_value = "spatial")]
    pub spatial_key: String,
    /// Numeric `obs` columns holding the coordinates instead, comma separated (e.g.
    /// `row,col` for Spatial Transcriptomics array positions; three for 3D).
    #[arg(long, value_delimiter = ',')]
    pub coords: Vec<String>,
    /// The gene panel: a number (that many most variable genes) or gene names, comma
    /// separated.
    #[arg(long, default_value = "50")]
    pub genes: String,
    /// Ligand–receptor table (CSV with `ligand,receptor`, or LIANA's
    /// `source_genesymbol,target_genesymbol` with `resource`): pairs whose two genes are in
    /// the panel become diffusing ligands.
    #[arg(long)]
    pub lr: Option<PathBuf>,
    /// Add this many ligand–receptor pairs of the table to the panel (both genes; those
    /// best expressed in the section first).
    #[arg(long, default_value_t = 0)]
    pub lr_pairs: usize,
    /// µm per coordinate unit (e.g. 200 for the array positions of the original
    /// Spatial Transcriptomics slides, 100 µm spots 200 µm apart).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
    /// Spatially contiguous folds for held-out evaluation.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Relaxation time of expression toward its target, minutes (a snapshot cannot
    /// identify it).
    #[arg(long, default_value_t = 60.0)]
    pub tau: f32,
    /// Ligand range √(D/k), µm (default: twice the median nearest-neighbour distance).
    #[arg(long)]
    pub ligand_range: Option<f32>,
    /// Ligand decay rate, 1/min.
    #[arg(long, default_value_t = 0.05)]
    pub ligand_decay: f32,
    /// Contact radius, µm (default: 1.5 × the median nearest-neighbour distance).
    #[arg(long)]
    pub contact_radius: Option<f32>,
    /// `auto` (counts are normalised to 10⁴ per cell and log1p-transformed, other
    /// values used as stored), `log1p` or `none`.
    #[arg(long, value_enum, default_value_t = NormaliseChoice::Auto)]
    pub normalise: NormaliseChoice,
    /// Genes whose neighbour mean the model reads: `all` (the most predictive; a gene's
    /// own neighbour mean then stands in for anything spatially smooth), `lr` (the genes
    /// of the ligand–receptor pairs), `none`, or gene names, comma separated.
    #[arg(long, default_value = "all")]
    pub contact_genes: String,
    /// Leave out the intrinsic offsets (`GENE_intrinsic` state columns: what each cell's
    /// niche does not explain), so the scene starts from the model's own steady state, a
    /// smoothed fit of the section, instead of from the section itself.
    #[arg(long)]
    pub no_intrinsic: bool,
    /// A scene whose teacher made the section (a synthetic section): report how much of
    /// its ligand and contact wiring the learned model recovers.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Threads for the model (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Replace an earlier `explant learn` output in DIR.
    #[arg(long)]
    pub force: bool,
}

/// `explant learn --normalise`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NormaliseChoice {
    /// Normalise counts, keep anything else.
    Auto,
    /// Always normalise to 10⁴ per cell and log1p.
    Log1p,
    /// Use the stored values.
    None,
}

/// `explant train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The scene whose teacher generates the training data.
    pub scene: PathBuf,
    /// Output `.pt` path (the `.json` metadata is written beside it).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Seed of the contexts, sampling and initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most Adam steps (early stopping on the validation error may end sooner).
    #[arg(long, default_value_t = 6000)]
    pub steps: usize,
    /// Teacher runs under varied perturbations (knockout or overexpression of each gene
    /// in one cell type, and unperturbed runs); every fifth is kept for validation.
    #[arg(long, default_value_t = 30)]
    pub contexts: usize,
    /// Samples taken from each run (at most).
    #[arg(long, default_value_t = 4000)]
    pub per_context: usize,
    /// Hold this cell type out (for held-out evaluation): never perturbed in training and
    /// seen only in the unperturbed runs, as its control cells.
    #[arg(long)]
    pub hold_out_type: Option<String>,
    /// Never perturb these genes in training (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub hold_out_genes: Vec<String>,
    /// Networks to train on the same samples (seeds SEED, SEED+1, ...); the model is
    /// their mean rate. More than 1 costs that many times the training time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub members: u32,
    /// Overwrite the `.pt` and `.json` files if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `explant eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The scene (its teacher is the truth).
    pub scene: PathBuf,
    /// The learned model (`.pt` with its `.json`), trained with the same hold-outs.
    #[arg(long, short)]
    pub model: PathBuf,
    /// The held-out cell type: the knockouts act on its cells.
    #[arg(long)]
    pub hold_out_type: String,
    /// The held-out genes to knock out (comma separated, at least two).
    #[arg(long, value_delimiter = ',', required = true)]
    pub perturb: Vec<String>,
    /// Write the score table as CSV here (an existing file is kept unless `--force`).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Overwrite the CSV file named by `--out` if it exists, and write `--export` into a
    /// folder that already holds files.
    #[arg(long)]
    pub force: bool,
    /// Also write the cells behind the scores here, as `cell-eval` reads them: one folder
    /// per group (knocked-out cells, each distance band, far cells) with `real.h5ad` and
    /// `pred_<predictor>.h5ad` (`obs['target_gene']`, `non-targeting` for control cells;
    /// `obs['celltype']`), and `scores.csv`, explant's scores per knockout on those cells.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Seed and number of training contexts for the ridge baseline (as `explant train`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// See `seed`.
    #[arg(long, default_value_t = 30)]
    pub contexts: usize,
    /// Score the protocol in each of these tissues (the scene's `seed` replaced; comma
    /// separated): the CSV holds every tissue's rows and the printed table each score's
    /// mean ± sd over them. Default: the scene's own seed.
    #[arg(long, value_delimiter = ',', value_name = "SEEDS")]
    pub tissue_seeds: Vec<u64>,
}

/// `explant model show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The `.pt` file.
    pub model: PathBuf,
    /// Print the metadata as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `explant sweep SPEC --out DIR` (run), `explant sweep SPEC --emit snakemake --out DIR`,
/// `explant sweep collect SPEC DIR`, `explant sweep report DIR`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    /// `collect` or `report` (without one, the sweep runs or is emitted).
    #[command(subcommand)]
    pub command: Option<SweepCommand>,
    /// The sweep spec (TOML).
    #[arg(required = true)]
    pub spec: Option<PathBuf>,
    /// Output directory: scenes/, runs/, results.csv. New, empty, or this same sweep's
    /// (which resumes it); one sweep at a time holds it.
    #[arg(long, short, required = true)]
    pub out: Option<PathBuf>,
    /// Write a workflow for another engine instead of running here.
    #[arg(long, value_enum)]
    pub emit: Option<EmitKind>,
    /// Runs at once (0: cores ÷ threads).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// Worker threads per run.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Runs per process: K points one after another in one `explant sweep exec`, paying
    /// the process start and the model library's load once. With `--emit snakemake`, runs
    /// per workflow job (thousands of points are not thousands of queue entries).
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub batch: usize,
    /// With `--emit snakemake`: each job's wall-time request from a short run of the most
    /// expensive point here (about SECONDS of ticks, default 10), scaled to every point;
    /// the numbers go to calibration.json. Instead of `[cluster] runtime_min`.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "10")]
    pub calibrate: Option<f64>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Workflow engines `explant sweep --emit` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmitKind {
    /// A Snakefile (`snakemake --cores N`, or SLURM through Snakemake's executor plugin).
    Snakemake,
}

/// `explant sweep` subcommands.
#[derive(Debug, Subcommand)]
pub enum SweepCommand {
    /// Gather the finished runs of a sweep directory into results.csv.
    Collect {
        /// The sweep spec.
        spec: PathBuf,
        /// The sweep's output directory.
        dir: PathBuf,
    },
    /// Run some points of a sweep directory one after another in this process (what a
    /// batched workflow job runs): one process start and one model-library load for all.
    /// A point already ended is kept; one that cannot run is recorded and the rest go on
    /// (exit status 1 at the end).
    Exec {
        /// The sweep's output directory (with sweep.toml and scenes/).
        dir: PathBuf,
        /// The points' ids, as in points.csv (`run_00001` …).
        #[arg(required = true, value_name = "RUN")]
        runs: Vec<String>,
        /// Worker threads per run.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Where diffusion runs.
        #[arg(long, value_enum, default_value_t = DiffusionChoice::Auto)]
        diffusion: DiffusionChoice,
        /// No progress bar (a line per point is still printed).
        #[arg(long, short)]
        quiet: bool,
    },
    /// The effect of each parameter on each readout: sweep_report.csv and sweep_report.svg.
    Report {
        /// The sweep's output directory (with results.csv and sweep.toml).
        dir: PathBuf,
    },
}
