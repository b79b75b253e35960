//! `syncctl dlq list | show ID | replay [--all | ID...] [--dry-run] | purge --yes`.

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use shared::retry::dlq::{self, DeadLetter};
use shared::retry::queue::Queue;

use crate::exit;
use crate::failure::Failure;
use crate::settings::{Globals, Settings};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters with their reason.
    List {
        /// Read at most this many.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Print one dead letter's whole envelope (event, plan, history).
    Show {
        /// Its envelope id or SQS message id (from `dlq list`).
        id: String,
    },
    /// Move dead letters back to the retry queue (after fixing what made them fail).
    Replay {
        /// Envelope ids (or SQS message ids) to replay.
        ids: Vec<String>,
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Show what would be replayed and what the current rules would do; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Read at most this many dead letters.
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

/// A dead letter's `--json` form (stable field names).
fn letter_json(letter: &DeadLetter) -> Value {
    let e = letter.envelope.as_ref();
    json!({
        "id": letter.id(),
        "message_id": letter.message.message_id,
        "readable": e.is_some(),
        "direction": e.map(|e| e.accepted.direction.as_str()),
        "event_id": e.map(|e| e.accepted.event_id.clone()),
        "attempts": e.map(|e| e.trip.history.len()),
        "reason": letter.reason(),
        "sent_at": letter.message.sent_at,
        "receive_count": letter.message.receive_count,
    })
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("serialises"));
}

pub async fn run(cmd: DlqCommand, globals: &Globals) -> Result<u8, Failure> {
    let settings = Settings::resolve(globals).await?;
    let queue = settings.dlq()?;
    let dead = |e: shared::retry::queue::QueueError| Failure::of("the dead-letter queue", &e);
    match cmd {
        DlqCommand::List { max } => {
            let letters = dlq::list(&queue, max).await.map_err(dead)?;
            if globals.json {
                print_json(
                    &json!({"count": letters.len(), "dead_letters": letters.iter().map(letter_json).collect::<Vec<_>>()}),
                );
            } else {
                println!("{} dead letter(s)", letters.len());
                for letter in &letters {
                    println!("{}", line(letter));
                }
            }
            Ok(exit::OK)
        }
        DlqCommand::Show { id } => {
            let letters = dlq::list(&queue, 1000).await.map_err(dead)?;
            let Some(letter) = letters.iter().find(|l| l.id() == id || l.message.message_id == id) else {
                return Err(Failure::Failed(format!("no dead letter {id}; `syncctl dlq list` shows what is there")));
            };
            match (&letter.envelope, globals.json) {
                (Some(envelope), true) => {
                    print_json(&json!({"dead_letter": letter_json(letter), "envelope": envelope}));
                }
                (None, true) => print_json(&json!({"dead_letter": letter_json(letter), "body": letter.message.body})),
                (Some(envelope), false) => println!("{}", serde_json::to_string_pretty(envelope).expect("serialises")),
                (None, false) => println!("{}", letter.message.body),
            }
            Ok(exit::OK)
        }
        DlqCommand::Replay { ids, all, dry_run, max } => {
            if ids.is_empty() && !all {
                return Err(Failure::Usage("name the dead letters to replay, or pass --all".into()));
            }
            if dry_run {
                return preview(&settings, &queue, &ids, all, max, globals.json).await;
            }
            let retry = settings.retry_queue()?;
            let bar = if globals.json { ProgressBar::hidden() } else { ProgressBar::new(0) };
            bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} replayed").expect("valid template"));
            let report = dlq::replay(&queue, &retry, &ids, max, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await
            .map_err(|e| Failure::of("the queues", &e))?;
            bar.finish_and_clear();
            if globals.json {
                print_json(&json!({
                    "replayed": report.replayed,
                    "not_found": report.not_found,
                    "skipped_unreadable": report.skipped_unreadable,
                }));
            } else {
                println!("replayed {} dead letter(s) onto the retry queue", report.replayed.len());
                for id in &report.not_found {
                    eprintln!("not found: {id}");
                }
                for id in &report.skipped_unreadable {
                    eprintln!("not replayed (unreadable, inspect with `syncctl dlq show {id}`): {id}");
                }
            }
            Ok(if report.not_found.is_empty() { exit::OK } else { exit::FAILED })
        }
        DlqCommand::Purge { yes } => {
            if !yes {
                return Err(Failure::Usage("purging deletes every dead letter for good; pass --yes to confirm".into()));
            }
            queue.purge().await.map_err(dead)?;
            if globals.json {
                print_json(&json!({"purged": true}));
            } else {
                println!("dead-letter queue purged");
            }
            Ok(exit::OK)
        }
    }
}

/// `replay --dry-run`: what would move, and what the stored rules would do with each now.
async fn preview(
    settings: &Settings,
    queue: &adapters::sqs::SqsQueue,
    ids: &[String],
    all: bool,
    max: usize,
    json: bool,
) -> Result<u8, Failure> {
    let letters = dlq::list(queue, max).await.map_err(|e| Failure::of("the dead-letter queue", &e))?;
    let chosen: Vec<&DeadLetter> = letters.iter().filter(|l| all || ids.iter().any(|id| id == l.id())).collect();
    let store = settings.store()?;
    let stored = shared::store::RulesStore::current_rules(store.as_ref())
        .await
        .map_err(|e| Failure::of(settings.table_label(), &e))?
        .ok_or_else(|| Failure::Failed("no rules stored: `syncctl rules push FILE` first".into()))?;
    let rules = shared::rules::Rules::from_yaml(&stored.document)
        .map_err(|e| Failure::Failed(format!("the stored rules (version {}) are invalid:\n{e}", stored.version)))?;
    let mut out = Vec::new();
    if !json {
        println!("would replay {} dead letter(s); with the current rules (version {}):", chosen.len(), stored.version);
    }
    for letter in chosen {
        if !json {
            println!("{}", line(letter));
        }
        let Some(envelope) = &letter.envelope else {
            out.push(json!({"dead_letter": letter_json(letter), "plan": null, "error": "unreadable"}));
            continue;
        };
        match shared::handler::preview::preview(envelope, &rules, store.as_ref()).await {
            Ok(evaluation) => {
                let plan: Vec<Value> = evaluation
                    .plan
                    .iter()
                    .map(|p| json!({"action": p.action.name(), "target": p.action.target(), "rule": p.rule}))
                    .collect();
                if !json {
                    if plan.is_empty() {
                        println!("    no rule would act on it now");
                    }
                    for p in &plan {
                        println!(
                            "    would {} on {} (rule {})",
                            p["action"].as_str().unwrap_or_default(),
                            p["target"].as_str().unwrap_or_default(),
                            p["rule"].as_str().unwrap_or_default()
                        );
                    }
                }
                out.push(json!({"dead_letter": letter_json(letter), "plan": plan}));
            }
            Err(err) => {
                if !json {
                    println!("    cannot preview: {err}");
                }
                out.push(json!({"dead_letter": letter_json(letter), "plan": null, "error": err}));
            }
        }
    }
    if json {
        print_json(&json!({"rules_version": stored.version, "would_replay": out}));
    }
    Ok(exit::OK)
}
