//! `syncctl reconcile [--since T] [--dry-run] [--max-api-calls N] [--wait SECONDS]`: one reconcile
//! run by hand, after an incident of the bridge or of a sender (shared/src/reconcile).
//!
//! A run that repairs is not run here: it is posted to the retry queue, as the schedule posts
//! it, and the retry function runs it with the functions' role (the operator's may not write the
//! gate, the leases or the audit trail, which keeps the trail the functions' own record). This
//! command then waits for the run's audit entry and prints the report kept there: each
//! difference and what became of it. `--dry-run` runs here, reading only: it prints what differs
//! and what a run would do, with a progress line per side.
//!
//! `--since` compares from that time instead of the cursors, and leaves the cursors where they
//! are; a run that stops early (its budget spent) says where to go on from. With `--json` the
//! report is one JSON document on stdout. Exit 0 when the run compared everything, 1 when it
//! stopped early, could not compare or repair a change, or did not end within `--wait`.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use shared::config::Config;
use shared::reconcile::trigger::Trigger;
use shared::reconcile::{self, Observer, Options, Repair, Report, SubscriptionCheck};
use shared::retry::queue::Queue;
use shared::store::{AuditLog, CursorStore, Side};

use crate::exit;
use crate::failure::Failure;
use crate::settings::{Globals, Settings};

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Compare changes since this time (RFC 3339, e.g. 2026-12-03T08:00:00Z) instead of the cursors.
    #[arg(long)]
    pub since: Option<String>,
    /// Compare here and print what differs and what a run would do; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// API calls (both services together) the run may make.
    #[arg(long, default_value_t = reconcile::DEFAULT_MAX_API_CALLS)]
    pub max_api_calls: u32,
    /// Seconds to wait for the queued run's report (0: post it and return).
    #[arg(long, default_value_t = 900)]
    pub wait: u64,
}

pub async fn run(args: ReconcileArgs, globals: &Globals) -> Result<u8, Failure> {
    let settings = Settings::resolve(globals).await?;
    let config = settings.config()?;
    let since = args.since.as_deref().map(parse_since).transpose().map_err(Failure::Usage)?;
    if args.dry_run {
        let report = dry_run(&config, &settings.aws.sdk, since, args.max_api_calls, &Progress).await?;
        print_report(&report, globals.json);
        return Ok(exit_code(&report));
    }
    let queue = settings.retry_queue()?;
    let audit = adapters::dynamodb::DynamoStore::from_conf(&settings.aws.sdk, &config.store.table_name);
    let trigger = Trigger::by_hand(args.max_api_calls, since, format!("syncctl-reconcile-{}", uuid::Uuid::new_v4()));
    let wait = Duration::from_secs(args.wait);
    let requested = request(&queue, &audit, &trigger, wait, Duration::from_secs(2), &Waiting).await?;
    let correlation_id = trigger.correlation_id.as_deref().unwrap_or_default();
    match requested {
        Some(report) => {
            print_report(&report, globals.json);
            Ok(exit_code(&report))
        }
        None if globals.json => {
            println!("{}", serde_json::json!({"queued": true, "correlation_id": correlation_id, "report": null}));
            Ok(if args.wait == 0 { exit::OK } else { exit::FAILED })
        }
        None => {
            let waited =
                if args.wait == 0 { String::new() } else { format!(" and has not ended within {}s", args.wait) };
            println!(
                "the run is queued for the retry function{waited}; `syncctl audit --since 1h` shows it when it ends \
                 (correlation id {correlation_id})"
            );
            Ok(if args.wait == 0 { exit::OK } else { exit::FAILED })
        }
    }
}

fn print_report(report: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).expect("a report serialises"));
    } else {
        eprintln!();
        print!("{}", render(report));
    }
}

/// 0 when the run compared and settled everything; 1 when a person or another run is needed.
pub fn exit_code(report: &Report) -> u8 {
    if report.stopped_early() || report.failures() > 0 { exit::FAILED } else { exit::OK }
}

/// Posts `trigger` to the retry queue and waits up to `wait` for the run's report (see
/// [`report_of`]).
pub async fn request(
    queue: &dyn Queue,
    audit: &dyn AuditLog,
    trigger: &Trigger,
    wait: Duration,
    poll: Duration,
    observer: &dyn Observer,
) -> Result<Option<Report>, Failure> {
    let posted_at = post(queue, trigger).await?;
    report_of(audit, trigger, posted_at, wait, poll, observer).await
}

/// Posts `trigger` to the retry queue; returns a time before the run can have started.
pub async fn post(queue: &dyn Queue, trigger: &Trigger) -> Result<DateTime<Utc>, Failure> {
    // Clocks differ a little between this machine and the function's.
    let before = Utc::now() - chrono::Duration::minutes(1);
    queue.send(&trigger.to_body(), Duration::ZERO).await.map_err(|e| Failure::of("the retry queue", &e))?;
    Ok(before)
}

/// Looks every `poll`, up to `wait`, for the audit entry of the run `trigger` asked for (by its
/// correlation id, in the entries since `posted_at`), and reads the report it keeps; `None`
/// when the run has not ended in time.
pub async fn report_of(
    audit: &dyn AuditLog,
    trigger: &Trigger,
    posted_at: DateTime<Utc>,
    wait: Duration,
    poll: Duration,
    observer: &dyn Observer,
) -> Result<Option<Report>, Failure> {
    let started = std::time::Instant::now();
    let mut polls = 0;
    while started.elapsed() < wait {
        tokio::time::sleep(poll.min(wait.saturating_sub(started.elapsed()))).await;
        polls += 1;
        observer.waiting(polls);
        let entries = audit.recent(posted_at, 500).await.map_err(|e| Failure::of("the audit trail", &e))?;
        // The run's repairs carry its correlation id too; its own entry keeps the report.
        let ours = entries.iter().filter(|e| Some(e.correlation_id.as_str()) == trigger.correlation_id.as_deref());
        if let Some(report) = ours.filter_map(Report::of_audit_entry).next() {
            return Ok(Some(report));
        }
    }
    Ok(None)
}

/// A read-only run here with `config` (the functions' configuration) and `sdk`: no gate, no
/// lease, no write, no cursor moved, not audited.
pub async fn dry_run(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    since: Option<DateTime<Utc>>,
    max_api_calls: u32,
    observer: &dyn Observer,
) -> Result<Report, Failure> {
    let ctx = adapters::wiring::build(config, sdk).map_err(|e| Failure::Usage(e.to_string()))?;
    let cursors = adapters::dynamodb::DynamoStore::from_conf(sdk, &config.store.table_name);
    let table = || format!("DynamoDB table {}", config.store.table_name);
    let subscription_id = cursors.watched_subscription().await.map_err(|e| Failure::of(table(), &e))?;
    let options = Options {
        max_api_calls,
        since,
        dry_run: true,
        subscription_id,
        correlation_id: format!("syncctl-reconcile-{}", Utc::now().timestamp()),
        ..Options::default()
    };
    Ok(reconcile::run(&ctx, &cursors, &options, observer).await)
}

/// `--since`: an RFC 3339 time, with a message that says what to type.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.to_utc())
        .map_err(|e| format!("--since {text:?} is not an RFC 3339 time ({e}); write it as 2026-12-03T08:00:00Z"))
}

/// One line per side on stderr, rewritten as the run goes.
struct Progress;

/// A line on stderr while the queued run works.
struct Waiting;

impl Observer for Waiting {
    fn waiting(&self, polls: usize) {
        eprint!("\rwaiting for the retry function's run {}", ".".repeat(polls % 20));
        let _ = std::io::stderr().flush();
    }
}

impl Observer for Progress {
    fn step(&self, side: Side, done: usize, total: usize) {
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
        eprint!("\r{side:<10} [{}{}] {done}/{total}", "#".repeat(filled), " ".repeat(width - filled));
        let _ = std::io::stderr().flush();
        if done == total {
            eprintln!();
        }
    }
}

/// The report as the operator reads it.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let verb = |repair: &Repair| match repair {
        Repair::WouldRepair => "would repair".to_string(),
        Repair::Done(outcome) => format!("repair {}", outcome.as_str()),
        Repair::Reported => "reported (needs a person)".to_string(),
        Repair::Busy => "busy (the next run looks again)".to_string(),
        Repair::Failed(reason) => format!("failed: {reason}"),
    };
    out.push_str(&match &report.subscription {
        SubscriptionCheck::NotConfigured => {
            "webhook subscription: none recorded (syncctl setup pagerduty-webhook records it)\n".into()
        }
        SubscriptionCheck::Active => "webhook subscription: active\n".into(),
        SubscriptionCheck::ReEnabled => "webhook subscription: was DISABLED, enabled again\n".into(),
        SubscriptionCheck::WouldReEnable => "webhook subscription: DISABLED (a run would enable it again)\n".into(),
        SubscriptionCheck::Failed(reason) => format!("webhook subscription: {reason}\n"),
    });
    for side in &report.sides {
        out.push_str(&format!(
            "{}: {} change(s) from {} to {} compared, {} already repaired, {} failed{}\n",
            side.side,
            side.checked,
            side.window.since.to_rfc3339(),
            side.window.until.to_rfc3339(),
            side.already_repaired,
            side.failed,
            side.stopped.as_ref().map(|s| format!("; stopped early: {s:?}")).unwrap_or_default()
        ));
        if let Some(resume) = side.resume_from {
            out.push_str(&format!("    not all settled: go on with --since {}\n", resume.to_rfc3339()));
        }
        for what in &side.unlisted {
            out.push_str(&format!("    not listed in full: {what}\n"));
        }
    }
    if report.differences_left_off > 0 {
        out.push_str(&format!(
            "({} more difference(s) not kept in the run's audit entry: `syncctl audit --since` lists their repairs)\n",
            report.differences_left_off
        ));
    }
    for d in &report.differences {
        out.push_str(&format!("{} {} ({}): {}\n", d.side, d.subject, d.event_id, verb(&d.repair)));
        for line in &d.differs {
            out.push_str(&format!("    differs: {line}\n"));
        }
        for line in &d.not_repaired {
            out.push_str(&format!("    not repaired: {line}\n"));
        }
    }
    out.push_str(&report.summary());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_rfc3339_and_says_what_to_type_otherwise() {
        assert_eq!(parse_since("2026-12-03T08:00:00Z").unwrap().to_rfc3339(), "2026-12-03T08:00:00+00:00");
        let err = parse_since("yesterday").unwrap_err();
        assert!(err.contains("2026-12-03T08:00:00Z"), "{err}");
    }
}
