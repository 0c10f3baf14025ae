//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// explant: a spatial multicellular tissue simulator (a virtual tissue).
#[derive(Debug, Parser)]
#[command(name = "explant", version, about, long_about = None)]
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
    /// Parse and validate a scene without running it.
    Check(CheckArgs),
    /// Learned response models.
    #[command(subcommand)]
    Model(ModelCommand),
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
    #[arg(long)]
    pub teacher: bool,
    /// Worker threads (0: all cores). Results are identical for any count.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Replace the contents of an existing output directory.
    #[arg(long)]
    pub force: bool,
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
}

/// `explant model show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The `.pt` file.
    pub model: PathBuf,
}
