//! The command line: global flags ([`Globals`]) and one subcommand per group, each in
//! `commands/<group>.rs`. A new group (e.g. `reconcile`) is one variant here, one arm in
//! [`run`], one module.

use clap::{CommandFactory, Parser, Subcommand};

use crate::commands;
use crate::exit;
use crate::failure::Failure;
use crate::settings::Globals;

#[derive(Debug, Parser)]
#[command(
    name = "syncctl",
    version,
    about = "Operate pd-sfdc-sync: health, rules, dead letters, audit, set-up",
    after_help = exit::HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub globals: Globals,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One screen of the bridge's state: breakers, queues, last events, API usage, subscription.
    Status(commands::status::StatusArgs),
    /// Check every link of the chain: settings, credentials, subscription, table, queues, rules.
    Doctor(commands::doctor::DoctorArgs),
    /// Validate, dry-run and store rules documents.
    #[command(subcommand)]
    Rules(commands::rules::RulesCommand),
    /// Inspect, replay and purge the dead-letter queue.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// What the bridge did with an incident or a record, or everything in a time window.
    Audit(commands::audit::AuditArgs),
    /// Compare both systems and repair what the senders lost (--dry-run: only print it).
    Reconcile(commands::reconcile::ReconcileArgs),
    /// One-time set-up steps.
    #[command(subcommand)]
    Setup(commands::setup::SetupCommand),
    /// Print a shell completion script: `syncctl completions bash > /etc/bash_completion.d/syncctl`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}

/// Runs the command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8, Failure> {
    let globals = cli.globals;
    match cli.command {
        Command::Status(args) => commands::status::run(args, &globals).await,
        Command::Doctor(args) => commands::doctor::run(args, &globals).await,
        Command::Rules(cmd) => commands::rules::run(cmd, &globals).await,
        Command::Dlq(cmd) => commands::dlq::run(cmd, &globals).await,
        Command::Audit(args) => commands::audit::run(args, &globals).await,
        Command::Reconcile(args) => commands::reconcile::run(args, &globals).await,
        Command::Setup(cmd) => commands::setup::run(cmd, &globals).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "syncctl", &mut std::io::stdout());
            Ok(exit::OK)
        }
    }
}
