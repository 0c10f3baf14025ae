//! The output directory of a run: what `--force` may replace, and a lock so that two runs
//! never write into one directory.
//!
//! `--force` replaces only a directory that already holds an explant run (its
//! `manifest.json`), never one that holds the scene or any file the scene reads, nor the
//! working directory or one above it: anything else is refused with the reason and
//! nothing is deleted. The lock is an advisory `flock` on `.explant.lock` inside the
//! directory, taken before anything in it is removed and held until the run's outputs
//! are written; the operating system releases it when the process dies, so a killed run
//! never blocks the next one.

use std::fs::File;
use std::path::{Path, PathBuf};

use explant_scene::{Initial, LoadedScene, ModelSpec, TissueShape};

use crate::{RunDir, RunError, RunFile};

/// Name of the lock file inside a run directory while a run writes it.
pub const LOCK_FILE: &str = ".explant.lock";

/// Every file the scene reads: the scene itself, an imported tissue, initial fields from
/// files and a TorchScript model with its metadata.
pub fn scene_inputs(scene: &LoadedScene) -> Vec<PathBuf> {
    let sc = &scene.scene;
    let mut inputs = vec![scene.path.clone()];
    if sc.tissue.shape == TissueShape::Import
        && let Some(p) = &sc.tissue.path
    {
        inputs.push(scene.resolve(p));
    }
    for l in &sc.ligands {
        if let Initial::File { path } = &l.initial {
            inputs.push(scene.resolve(path));
        }
    }
    if sc.model.kind == ModelSpec::Torchscript
        && let Some(p) = &sc.model.path
    {
        let model = scene.resolve(p);
        inputs.push(model.with_extension("json"));
        inputs.push(model);
    }
    inputs
}

/// Whether `out` may be written: absent, empty, or (with `force`) an earlier explant run
/// that holds none of `inputs` and not the working directory.
///
/// # Errors
///
/// [`RunError::OutDir`] saying why not; nothing is changed.
pub fn check(out: &Path, force: bool, inputs: &[PathBuf]) -> Result<(), RunError> {
    let refuse = |message: String| Err(RunError::OutDir { path: out.into(), message });
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return refuse("exists and is not a directory".into());
    }
    let mut entries = std::fs::read_dir(out).map_err(RunError::file("read", out))?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !force {
        return refuse("the directory is not empty; choose another or pass `--force` to replace its contents".into());
    }
    if !RunDir::new(out).has(RunFile::Manifest) {
        return refuse(
            "`--force` replaces only an earlier explant run (a directory with a `manifest.json`), and this directory \
             is not one; nothing was deleted: choose another `--out`"
                .into(),
        );
    }
    let root = canonical(out);
    for input in inputs {
        if canonical(input).starts_with(&root) {
            return refuse(format!(
                "`--force` would delete `{}`, which this run reads; nothing was deleted: choose another `--out`",
                input.display()
            ));
        }
    }
    if let Ok(cwd) = std::env::current_dir()
        && canonical(&cwd).starts_with(&root)
    {
        return refuse(
            "`--force` would delete the working directory or a folder above it; nothing was deleted: choose another \
             `--out`"
                .into(),
        );
    }
    Ok(())
}

/// The path with links and `..` resolved, as far as it exists (the rest appended).
fn canonical(p: &Path) -> PathBuf {
    let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            return rest.iter().rev().fold(c, |acc: PathBuf, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// An output directory held for one run: created, locked, and emptied of an earlier
/// run's files. The lock is released when this is dropped (or the process ends).
#[derive(Debug)]
pub struct OutDirLock {
    file: File,
    path: PathBuf,
}

impl OutDirLock {
    /// Create `out` if needed, lock it, and remove what an earlier run left in it (only
    /// reached after [`check`]).
    ///
    /// # Errors
    ///
    /// When another process holds the lock (another run is writing there), or a file
    /// cannot be created or removed.
    pub fn take(out: &Path) -> Result<Self, RunError> {
        std::fs::create_dir_all(out).map_err(RunError::file("create", out))?;
        let lock = Self::hold(out)?;
        for entry in std::fs::read_dir(out).map_err(RunError::file("read", out))? {
            let p = entry.map_err(RunError::file("read", out))?.path();
            if p == lock.path {
                continue;
            }
            if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }
                .map_err(RunError::file("remove", &p))?;
        }
        Ok(lock)
    }

    /// Lock the existing directory `out` and change nothing else in it: a directory that
    /// keeps its contents between holders (a sweep directory, which a second run of the
    /// same sweep resumes). The lock file stays when this is dropped.
    ///
    /// # Errors
    ///
    /// [`RunError::OutDir`] when another process holds the lock; a file error when the
    /// lock file cannot be created.
    pub fn hold(out: &Path) -> Result<Self, RunError> {
        let path = out.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(RunError::file("create", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(RunError::OutDir {
                    path: out.into(),
                    message: "another explant run is writing into this directory; wait for it or choose another \
                              `--out`"
                        .into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(RunError::file("lock", &path)(e)),
        }
        Ok(Self { file, path })
    }

    /// Remove the lock file and release the lock (the run's outputs are complete).
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("explant-outdir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn force_replaces_only_an_earlier_run_that_holds_no_input() {
        let dir = temp("force");
        // A folder of the user's: refused even with --force, and left as it was.
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let e = check(&dir, true, &[]).unwrap_err().to_string();
        assert!(e.contains("replaces only an earlier explant run"), "{e}");
        assert!(dir.join("notes.txt").exists());
        // Without --force a non-empty directory is refused.
        assert!(check(&dir, false, &[]).unwrap_err().to_string().contains("not empty"));
        // An earlier run: replaced with --force, unless it holds an input of this run.
        std::fs::write(dir.join("manifest.json"), "{}").unwrap();
        check(&dir, true, &[PathBuf::from("/elsewhere/scene.toml")]).unwrap();
        let e = check(&dir, true, &[dir.join("notes.txt")]).unwrap_err().to_string();
        assert!(e.contains("notes.txt") && e.contains("which this run reads"), "{e}");
        // Through a `..` the same file is still found.
        let sub = dir.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        let e = check(&dir, true, &[sub.join("../notes.txt")]).unwrap_err().to_string();
        assert!(e.contains("which this run reads"), "{e}");
        // Absent and empty directories are fine.
        check(&dir.join("new"), false, &[]).unwrap();
        check(&sub, false, &[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_locked_directory_is_refused_and_nothing_in_it_is_removed() {
        let dir = temp("lock");
        let first = OutDirLock::take(&dir).unwrap();
        std::fs::write(dir.join("tissue.h5ad"), "being written").unwrap();
        let e = OutDirLock::take(&dir).unwrap_err().to_string();
        assert!(e.contains("another explant run is writing"), "{e}");
        assert!(dir.join("tissue.h5ad").exists(), "the second run removed the first run's file");
        first.release();
        assert!(!dir.join(LOCK_FILE).exists());
        // Free again: the next run takes it and clears the old files.
        let again = OutDirLock::take(&dir).unwrap();
        assert!(!dir.join("tissue.h5ad").exists());
        again.release();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn holding_a_directory_keeps_its_contents_and_refuses_a_second_holder() {
        let dir = temp("hold");
        std::fs::write(dir.join("results.csv"), "kept").unwrap();
        let first = OutDirLock::hold(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("results.csv")).unwrap(), "kept");
        let e = OutDirLock::hold(&dir).unwrap_err().to_string();
        assert!(e.contains("another explant run is writing"), "{e}");
        assert!(OutDirLock::take(&dir).is_err(), "a run cannot take a held directory");
        assert!(dir.join("results.csv").exists());
        drop(first);
        let again = OutDirLock::hold(&dir).unwrap();
        assert!(dir.join("results.csv").exists());
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
