//! explant-io's integration tests, linked as one binary (as ripgrep's `tests/tests.rs`):
//! `.h5ad` output read back by Python, PNG pictures decoded pixel by pixel, and `.h5ad`
//! import of explant's own and Python-written files.

use std::sync::Mutex;

mod h5ad;
mod png;
mod read;

/// Held while a test writes an HDF5 file that is read back here, or runs a Python child.
/// HDF5 opens files without close-on-exec, so a child started while a file is being
/// written would inherit that descriptor and its lock, and a later read of that file
/// could then fail to lock it. Every test module of this binary starts its Python
/// children under it, since they now share one process.
static HDF5_CHILDREN: Mutex<()> = Mutex::new(());

/// Take [`HDF5_CHILDREN`] (a test that panicked while holding it does not poison it).
fn lock() -> std::sync::MutexGuard<'static, ()> {
    HDF5_CHILDREN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
