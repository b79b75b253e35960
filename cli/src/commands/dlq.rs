//! `syncctl dlq list | show ID | replay [--all | ID...] [--dry-run] | purge`.

use std::process::ExitCode;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use shared::retry::dlq::{self, DeadLetter};
use shared::retry::queue::Queue;

use super::aws::Stack;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters with their reason.
    List {
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Print one dead letter's whole envelope (event, plan, history).
    Show { id: String },
    /// Move dead letters back to the retry queue (after fixing what made them fail).
    Replay {
        /// Envelope ids (or SQS message ids) to replay.
        ids: Vec<String>,
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Show what would be replayed; move nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
    /// Delete every dead letter (after they were replayed or judged worthless).
    Purge {
        /// Required: purging loses the events.
        #[arg(long)]
        yes: bool,
    },
}

fn line(letter: &DeadLetter) -> String {
    match &letter.envelope {
        Some(e) => format!(
            "{:<38} {:<24} {:<28} attempts {:<2} {}",
            e.id(),
            e.accepted.direction,
            e.accepted.event_id,
            e.trip.history.len(),
            letter.reason()
        ),
        None => format!("{:<38} (unreadable message, kept whole)", letter.message.message_id),
    }
}

pub async fn run(cmd: DlqCommand, stack: &Stack) -> Result<ExitCode, String> {
    let queue = stack.dlq().await?;
    match cmd {
        DlqCommand::List { max } => {
            let letters = dlq::list(&queue, max).await.map_err(|e| e.to_string())?;
            println!("{} dead letter(s)", letters.len());
            for letter in &letters {
                println!("{}", line(letter));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id } => {
            let letters = dlq::list(&queue, 1000).await.map_err(|e| e.to_string())?;
            let Some(letter) = letters.iter().find(|l| l.id() == id || l.message.message_id == id) else {
                return Err(format!("no dead letter {id}; `syncctl dlq list` shows what is there"));
            };
            match &letter.envelope {
                Some(envelope) => println!("{}", serde_json::to_string_pretty(envelope).expect("serialises")),
                None => println!("{}", letter.message.body),
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { ids, all, dry_run, max } => {
            if ids.is_empty() && !all {
                return Err("name the dead letters to replay, or pass --all".into());
            }
            if dry_run {
                let letters = dlq::list(&queue, max).await.map_err(|e| e.to_string())?;
                let chosen: Vec<&DeadLetter> =
                    letters.iter().filter(|l| all || ids.iter().any(|id| id == l.id())).collect();
                let store = stack.store().await?;
                let rules =
                    match shared::store::RulesStore::current_rules(store.as_ref()).await.map_err(|e| e.to_string())? {
                        Some(stored) => shared::rules::Rules::from_yaml(&stored.document)
                            .map_err(|e| format!("the stored rules are invalid:\n{e}"))?,
                        None => return Err("no rules stored: `syncctl rules push FILE` first".into()),
                    };
                println!("would replay {} dead letter(s); with the current rules:", chosen.len());
                for letter in chosen {
                    println!("{}", line(letter));
                    let Some(envelope) = &letter.envelope else { continue };
                    match shared::handler::preview::preview(envelope, &rules, store.as_ref()).await {
                        Ok(evaluation) if evaluation.plan.is_empty() => println!("    no rule would act on it now"),
                        Ok(evaluation) => {
                            for planned in evaluation.plan.iter() {
                                println!(
                                    "    would {} on {} (rule {})",
                                    planned.action.name(),
                                    planned.action.target(),
                                    planned.rule
                                );
                            }
                        }
                        Err(err) => println!("    cannot preview: {err}"),
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let retry = stack.retry_queue().await?;
            let bar = ProgressBar::new(0);
            bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} replayed").expect("valid template"));
            let report = dlq::replay(&queue, &retry, &ids, max, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await
            .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            println!("replayed {} dead letter(s) onto the retry queue", report.replayed.len());
            for id in &report.not_found {
                eprintln!("not found: {id}");
            }
            for id in &report.skipped_unreadable {
                eprintln!("not replayed (unreadable, inspect with `syncctl dlq show {id}`): {id}");
            }
            Ok(if report.not_found.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        DlqCommand::Purge { yes } => {
            if !yes {
                return Err("purging deletes every dead letter for good; pass --yes to confirm".into());
            }
            queue.purge().await.map_err(|e| e.to_string())?;
            println!("dead-letter queue purged");
            Ok(ExitCode::SUCCESS)
        }
    }
}
