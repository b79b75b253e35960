//! syncctl: the operator CLI of pd-sfdc-sync.
//!
//! Each subcommand group lives in `commands/<group>.rs` and returns an exit code; `main` only
//! parses arguments and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[derive(Debug, Parser)]
#[command(name = "syncctl", version, about = "Operate pd-sfdc-sync: rules, dead letters, health checks, audit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate and dry-run rules documents.
    #[command(subcommand)]
    Rules(commands::rules::RulesCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rules(cmd) => commands::rules::run(cmd),
    }
}
