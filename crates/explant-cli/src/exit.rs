//! Exit codes, so that a sweep, a shell script or a workflow engine can tell a refused
//! input from a simulation that ran and failed:
//!
//! - 0: completed;
//! - 1: invalid input or usage (a bad scene, flag, file or output folder; nothing was
//!   simulated, or a command other than a run failed);
//! - 3: the simulation failed after writing partial results (its manifest says `failed`,
//!   with the stage and tick), or a sweep ran and some of its runs failed;
//! - 130 or 143: a sweep was stopped by SIGINT or SIGTERM (128 + the signal, as shells
//!   report it); its table holds the runs that finished.
//!
//! A command reports the last case by returning a [`SimulationFailed`] (alone or as the
//! context of its cause); `main` finds it by downcasting.

use std::fmt;

/// Invalid input or usage.
pub const INVALID: u8 = 1;
/// The simulation failed after writing partial results.
pub const SIMULATION_FAILED: u8 = 3;

/// The text of `explant --help` that documents the exit codes.
pub const HELP: &str = "Exit status:
  0  completed
  1  invalid input or usage (nothing was simulated, or a command other than a run failed)
  3  the simulation failed after writing partial results (the run's manifest says `failed`),
     or some runs of a sweep failed
  130, 143  a sweep stopped by SIGINT or SIGTERM (its table holds the runs that finished)";

/// A simulation ran and failed part way; its partial results are written. The message
/// says where they are; the cause (the [`explant_core::CoreError`]) says why.
#[derive(Debug)]
pub struct SimulationFailed(pub String);

impl fmt::Display for SimulationFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SimulationFailed {}

/// The exit status for an error returned by a command.
pub fn code(e: &anyhow::Error) -> u8 {
    use explant_sweep::SweepError;
    match e.downcast_ref::<SweepError>() {
        Some(SweepError::RunsFailed { .. }) => return SIMULATION_FAILED,
        Some(SweepError::Interrupted { signal, .. }) => return if *signal == "SIGINT" { 130 } else { 143 },
        _ => {}
    }
    if e.downcast_ref::<SimulationFailed>().is_some() { SIMULATION_FAILED } else { INVALID }
}
