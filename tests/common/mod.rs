//! Helpers shared by the end-to-end tests of the `explant` binary (`tests/*.rs`).
#![allow(dead_code)] // each test file uses a different subset

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_explant");

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch folder for one test under the system temp dir, named after the suite, the
/// process and the test; removed when the test passes, kept (its path printed) when it
/// fails.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Create (emptied) `explant-SUITE-test-PID-TEST`.
    pub fn new(suite: &str, test: &str) -> Self {
        let path = std::env::temp_dir().join(format!("explant-{suite}-test-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create `{}`: {e}", path.display()));
        Self(path)
    }

    /// A path inside the folder.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            loud(&format!("kept the failing test's files in `{}`", self.0.display()));
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Print past the test harness's output capture, so a skip is seen in a normal run.
pub fn loud(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}
