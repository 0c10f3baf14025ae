//! End-to-end tests of the `explant` binary, as one test binary (one link instead of
//! one per file): runs and their outputs (`cli`), `render` and `report` (`render`), and
//! sweeps (`sweep`), checkpoint and resume (`resume`), names that need quoting in CSV
//! (`names`), explanations scored against the true wiring (`explain`), and the pairing of a perturbed run's cells with its control's by lineage
//! (`pairing`), and response models learned from spatial sections (`learn`). Helpers shared by all of them are in `common`.

mod cli;
mod common;
mod explain;
mod hostile;
mod learn;
mod names;
mod pairing;
mod render;
mod resume;
mod sweep;
