//! `syncctl reconcile [--since T] [--dry-run] [--max-api-calls N]`: one reconcile run by hand,
//! after an incident of the bridge or of a sender (shared/src/reconcile). It runs as the
//! scheduled run does (same gate, same cursors), prints a progress line per side while it
//! works, then each difference and what it did or, with `--dry-run`, would do. `--since` compares
//! from that time instead of the cursors, and leaves the cursors where they are.
//!
//! Settings come from the global flags and `--stack-name`, as for every command. With `--json`
//! the report is one JSON document on stdout (the progress bar stays on stderr). Exit 0 when
//! the run compared everything, 1 when it stopped early (budget spent, a breaker open, a side
//! unreadable): run it again, or with a larger `--max-api-calls`.

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::Args;
use shared::config::Config;
use shared::reconcile::{self, Observer, Options, Repair, Report, SubscriptionCheck};
use shared::store::{CursorStore, Side};

use crate::exit;
use crate::failure::Failure;
use crate::settings::{Globals, Settings};

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Compare changes since this time (RFC 3339, e.g. 2026-12-03T08:00:00Z) instead of the cursors.
    #[arg(long)]
    pub since: Option<String>,
    /// Compare and print what differs and what a run would do; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// API calls (both services together) the run may make.
    #[arg(long, default_value_t = reconcile::DEFAULT_MAX_API_CALLS)]
    pub max_api_calls: u32,
}

pub async fn run(args: ReconcileArgs, globals: &Globals) -> Result<u8, Failure> {
    let settings = Settings::resolve(globals).await?;
    let config = settings.config()?;
    let report = reconcile_with(&config, &settings.aws.sdk, &args, &Progress).await?;
    if globals.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("a report serialises"));
    } else {
        eprintln!();
        print!("{}", render(&report));
    }
    Ok(if report.stopped_early() { exit::FAILED } else { exit::OK })
}

/// One run with `config` (the functions' configuration) and `sdk`; audited unless a dry run.
pub async fn reconcile_with(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    args: &ReconcileArgs,
    observer: &dyn Observer,
) -> Result<Report, Failure> {
    let since = args.since.as_deref().map(parse_since).transpose().map_err(Failure::Usage)?;
    let ctx = adapters::wiring::build(config, sdk).map_err(|e| Failure::Usage(e.to_string()))?;
    let cursors = adapters::dynamodb::DynamoStore::from_conf(sdk, &config.store.table_name);
    let table = || format!("DynamoDB table {}", config.store.table_name);
    let subscription_id = cursors.watched_subscription().await.map_err(|e| Failure::of(table(), &e))?;
    let options = Options {
        max_api_calls: args.max_api_calls,
        since,
        dry_run: args.dry_run,
        subscription_id,
        correlation_id: format!("syncctl-reconcile-{}", Utc::now().timestamp()),
        ..Options::default()
    };
    let report = reconcile::run(&ctx, &cursors, &options, observer).await;
    if !args.dry_run
        && let Err(err) = report.audit(ctx.dispatch().audit, &options.correlation_id).await
    {
        eprintln!("warning: the run could not be audited: {err}");
    }
    Ok(report)
}

/// `--since`: an RFC 3339 time, with a message that says what to type.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.to_utc())
        .map_err(|e| format!("--since {text:?} is not an RFC 3339 time ({e}); write it as 2026-12-03T08:00:00Z"))
}

/// One line per side on stderr, rewritten as the run goes.
struct Progress;

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
            "{}: {} change(s) from {} to {} compared, {} already repaired{}\n",
            side.side,
            side.checked,
            side.window.since.to_rfc3339(),
            side.window.until.to_rfc3339(),
            side.already_repaired,
            side.stopped.as_ref().map(|s| format!("; stopped early: {s:?}")).unwrap_or_default()
        ));
    }
    for d in &report.differences {
        out.push_str(&format!("{} {} ({}): {}\n", d.side, d.subject, d.event_id, verb(&d.repair)));
        for line in &d.differs {
            out.push_str(&format!("    differs: {line}\n"));
        }
        for line in &d.not_repaired {
            out.push_str(&format!("    not repaired (additive): {line}\n"));
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
