//! Write-then-rename, so that readers (and a crashed run) never see a half-written file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::IoError;

/// Distinguishes temporary files of concurrent writes from one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden temporary path in the same directory as `target` (so the rename stays on one
/// file system and is atomic), unique to this process and call.
fn temp_path(target: &Path) -> Result<PathBuf, IoError> {
    let name = target.file_name().ok_or_else(|| IoError::Io {
        path: target.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    Ok(target.with_file_name(tmp_name))
}

/// Run `write` on a temporary path beside `target`, make its data durable, then rename it
/// to `target`. On any failure the temporary file is removed and `target` is untouched.
pub(crate) fn write_atomically(target: &Path, write: impl FnOnce(&Path) -> Result<(), IoError>) -> Result<(), IoError> {
    let tmp = temp_path(target)?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        let message = format!("directory `{}` does not exist", dir.display());
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, message);
        return Err(IoError::Io { path: target.to_path_buf(), source });
    }
    let result = write(&tmp).and_then(|()| {
        let io = |source| IoError::Io { path: target.to_path_buf(), source };
        fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        fs::rename(&tmp, target).map_err(io)
    });
    if result.is_err() {
        // Best effort: the file may never have been created.
        let _ = fs::remove_file(&tmp);
    } else if let Some(dir) = target.parent() {
        // Best effort: persist the rename itself. Not every platform can open a directory.
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_path_is_hidden_sibling() {
        let t = temp_path(Path::new("out/snap.h5ad")).unwrap();
        assert_eq!(t.parent(), Some(Path::new("out")));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".snap.h5ad.tmp-"), "{name}");
    }

    #[test]
    fn path_without_file_name_is_an_error_not_a_panic() {
        assert!(matches!(temp_path(Path::new("/")), Err(IoError::Io { .. })));
    }

    #[test]
    fn failed_write_leaves_neither_target_nor_temp() {
        let dir = std::env::temp_dir().join(format!("explant-io-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("x.bin");
        let err = write_atomically(&target, |tmp| {
            fs::write(tmp, b"half").unwrap();
            Err(IoError::Io { path: tmp.to_path_buf(), source: std::io::Error::other("boom") })
        });
        assert!(err.is_err());
        assert!(!target.exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
