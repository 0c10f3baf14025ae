//! explant-gpu's integration tests, linked as one binary (as ripgrep's `tests/tests.rs`):
//! the explicit and implicit kernels against the CPU, and their WGSL against `naga`.
//!
//! GPU tests need a wgpu adapter (Mesa's lavapipe is enough). Without one they print
//! `SKIPPED: no wgpu adapter: …` and pass, unless `EXPLANT_REQUIRE_GPU_ADAPTER=1`, in
//! which case they fail.

mod common;
mod gpu_implicit;
mod gpu_matches_cpu;
mod gpu_resident;
