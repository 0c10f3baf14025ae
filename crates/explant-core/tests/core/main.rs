//! The integration tests of `explant-core`, one test binary (as ripgrep's `tests/tests.rs`
//! and uv's `crates/uv/tests/it`): one link step instead of six, and the modules can
//! share helpers. Scene files are read relative to `CARGO_MANIFEST_DIR` (`../../scenes`).

mod clamp;
mod exchange;
mod life;
mod lineage;
mod neighbours;
mod perturb;
mod residency;
mod scenes;
mod tick;
mod tissue;
