//! One module per subcommand.

pub mod bench;
pub mod check;
pub mod eval;
pub mod explain;
pub mod model;
pub mod render;
pub mod report;
pub mod run;
pub mod sweep;

use std::path::Path;

/// Refuse to replace a file the user named on the command line, unless `--force`: explant
/// never overwrites what it was not asked to manage.
///
/// # Errors
///
/// When one of `paths` exists and `force` is not set; the message names the file.
pub fn refuse_overwrite(paths: &[&Path], force: bool) -> anyhow::Result<()> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) if !force => {
            anyhow::bail!("`{}` already exists; pass `--force` to overwrite it", p.display())
        }
        _ => Ok(()),
    }
}
