//! `explant`: run tissue scenes, fit response models.
//!
//! A thin layer over the library crates: argument parsing here, one file per
//! subcommand in `commands/`, no domain logic.

mod cli;
mod commands;
mod exit;
mod progress;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    quiet_graphics_stack();
    // Usage errors exit 1 (clap's own default is 2), `--help` and `--version` 0.
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(exit::INVALID) } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        cli::Command::Run(args) => commands::run::run(args),
        cli::Command::Resume(args) => commands::run::resume(args),
        cli::Command::Check(args) => commands::check::check(args),
        cli::Command::Render(args) => commands::render::render(args),
        cli::Command::Report(args) => commands::report::report(args),
        cli::Command::Sweep(args) => commands::sweep::sweep(args),
        cli::Command::Model(cli::ModelCommand::Fit(args)) => commands::model::fit(args),
        cli::Command::Train(args) => commands::model::train(args),
        cli::Command::Learn(args) => commands::learn::learn(args),
        cli::Command::Eval(args) => commands::eval::eval(args),
        cli::Command::Explain(args) => commands::explain::explain(args),
        cli::Command::Model(cli::ModelCommand::Show(args)) => commands::model::show(args),
        cli::Command::Bench(cli::BenchCommand::Diffusion(args)) => commands::bench::diffusion(args),
        cli::Command::Bench(cli::BenchCommand::Tissue(args)) => commands::bench::tissue(args),
        cli::Command::Bench(cli::BenchCommand::Model(args)) => commands::bench::model(args),
        cli::Command::Bench(cli::BenchCommand::Tick(args)) => commands::bench::tick(args),
        cli::Command::Completions(args) => commands::completions(args.shell),
        cli::Command::Export(args) => commands::export(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit::code(&e))
        }
    }
}

/// Mesa's EGL prints `error: XDG_RUNTIME_DIR is invalid or not set` to stderr while
/// wgpu probes the GL backend on a headless machine; it is harmless but reads like our
/// own error. Point it at the temporary directory when it is unset.
#[allow(unsafe_code)]
fn quiet_graphics_stack() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists, so no
        // other code can be reading the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}
