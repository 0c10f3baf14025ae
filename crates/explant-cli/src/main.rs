//! `explant`: run tissue scenes, fit response models.
//!
//! A thin layer over the library crates: argument parsing here, one file per
//! subcommand in `commands/`, no domain logic.

mod backends;
mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => commands::run::run(args),
        cli::Command::Check(args) => commands::check::check(args),
        cli::Command::Model(cli::ModelCommand::Fit(args)) => commands::model::fit(args),
        cli::Command::Model(cli::ModelCommand::Show(args)) => commands::model::show(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
