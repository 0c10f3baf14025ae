//! Helpers shared by the end-to-end tests of the `explant` binary (`tests/main.rs`).
#![allow(dead_code)] // not every helper is used by every module

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// Run the binary with `args` (colour off) and wait for it.
pub fn explant<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(EXE).args(args).env("NO_COLOR", "1").output().expect("start the explant binary")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command succeeded; otherwise fail showing both streams.
pub fn assert_success(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}", o.status, stdout(o), stderr(o));
}

/// A refusal: exit status 1, an `error:` line, and no panic, backtrace or libtorch trace.
pub fn assert_clean_failure(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{what}: expected exit status 1, got {}; stderr:\n{err}", o.status);
    assert!(err.contains("error: "), "{what}: no `error:` line in stderr:\n{err}");
    let lower = err.to_lowercase();
    for bad in ["panicked", "backtrace", "frame #", "exception raised from"] {
        assert!(!lower.contains(bad), "{what}: stderr contains `{bad}`:\n{err}");
    }
    err
}

/// A file's text.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()))
}
