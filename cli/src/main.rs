//! syncctl: the operator CLI of pd-sfdc-sync.
//!
//! Each subcommand group lives in `commands/<group>.rs` and returns an exit code; `main` only
//! parses arguments and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use syncctl::commands;

#[derive(Debug, Parser)]
#[command(name = "syncctl", version, about = "Operate pd-sfdc-sync: rules, dead letters, health checks, audit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    stack: commands::aws::Stack,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate, dry-run and store rules documents.
    #[command(subcommand)]
    Rules(commands::rules::RulesCommand),
    /// Inspect, replay and purge the dead-letter queue.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// What the bridge did with an incident or a record, and why.
    Audit(commands::audit::AuditArgs),
    /// Check every link of the chain: credentials, subscription, table, queues, rules.
    Doctor(commands::doctor::DoctorArgs),
    /// Compare both systems and repair what the senders lost (--dry-run: only print it).
    Reconcile(commands::reconcile::ReconcileArgs),
    /// One-time set-up steps.
    #[command(subcommand)]
    Setup(commands::setup::SetupCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stack = cli.stack;
    let run = |future: std::pin::Pin<Box<dyn std::future::Future<Output = Result<ExitCode, String>>>>| {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
        match runtime.block_on(future) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        }
    };
    match cli.command {
        Command::Rules(commands::rules::RulesCommand::Push { file, by }) => {
            run(Box::pin(async move { commands::rules::push(&file, &by, &stack).await }))
        }
        Command::Rules(cmd) => commands::rules::run(cmd),
        Command::Dlq(cmd) => run(Box::pin(async move { commands::dlq::run(cmd, &stack).await })),
        Command::Audit(args) => run(Box::pin(async move { commands::audit::run(args, &stack).await })),
        Command::Doctor(args) => run(Box::pin(commands::doctor::run(args))),
        Command::Setup(cmd) => run(Box::pin(commands::setup::run(cmd))),
        Command::Reconcile(args) => run(Box::pin(commands::reconcile::run(args))),
    }
}
