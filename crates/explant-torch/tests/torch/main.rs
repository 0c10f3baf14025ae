//! explant-torch's integration tests, linked as one binary (as ripgrep's `tests/tests.rs`):
//! the shipped model and every load-time refusal, the optional secretion and fate
//! outputs, and a model exported from PyTorch itself.

mod extras;
mod model;
mod python_export;
