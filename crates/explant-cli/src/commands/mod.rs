//! One module per subcommand.

pub mod bench;
pub mod check;
pub mod eval;
pub mod explain;
pub mod learn;
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

/// `explant completions SHELL`: the completion script for `shell` on stdout, generated
/// from the same command definition the parser uses (so it never drifts from it). A
/// reader that closes the pipe early (`| head`) ends the output quietly.
///
/// # Errors
///
/// When stdout cannot be written for another reason.
pub fn completions(shell: crate::cli::CompletionShell) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    use std::io::Write as _;
    let shell = match shell {
        crate::cli::CompletionShell::Bash => Shell::Bash,
        crate::cli::CompletionShell::Zsh => Shell::Zsh,
        crate::cli::CompletionShell::Fish => Shell::Fish,
    };
    let mut command = crate::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "explant", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `explant export RUN_DIR --vtk`: ParaView files of the run ([`explant_run::export`]).
///
/// # Errors
///
/// When the run cannot be read or `vtk/` holds files and `--force` is not given.
pub fn export(args: crate::cli::ExportArgs) -> anyhow::Result<()> {
    let dir = explant_run::RunDir::open(&args.run_dir)?;
    let encoding = if args.ascii { explant_io::VtkEncoding::Ascii } else { explant_io::VtkEncoding::Binary };
    let done = explant_run::export::export_vtk(&dir, args.force, encoding)?;
    for f in &done.files {
        println!("wrote {}", f.display());
    }
    println!(
        "{} snapshot(s) exported; open `{}` in ParaView",
        done.snapshots,
        dir.path(explant_run::RunFile::Vtk).join("cells.pvd").display()
    );
    Ok(())
}
