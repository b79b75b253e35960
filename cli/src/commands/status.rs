//! `syncctl status`: one screen of the bridge's state. Each line reads one source and degrades
//! alone when it cannot (the line says why): the breakers (`BREAKER#<service>` items), the retry
//! queue's and the DLQ's backlog (SQS attributes; the DLQ's oldest letter by peeking, which the
//! DLQ allows: nothing redrives from it), the last accepted event per direction (the audit day
//! partitions of the last 7 days, newest first, at most 500 entries; per route: PagerDuty
//! webhooks, Apex trigger posts, and Outbound Messages when enabled), the Salesforce API usage
//! (`GET limits`), and the PagerDuty webhook subscription setup recorded in the table (`GET
//! /webhook_subscriptions/{id}`). Exit 1 when a line shows a problem, 3 when a source was
//! unreachable.

use std::sync::Arc;

use adapters::http::{HTTP_TIMEOUT, ReqwestTransport};
use chrono::{Duration, Utc};
use clap::Args;
use serde_json::json;
use shared::handler::sfdc_to_pd::Route;
use shared::model::Outcome;
use shared::retry::dlq;
use shared::store::{AuditLog, BreakerState, BreakerStore, RulesStore};
use shared::transport::Transport;

use crate::failure::Failure;
use crate::report::{self, Line};
use crate::settings::{Globals, Settings};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// How far back to look for the last accepted event of each direction.
    #[arg(long, default_value_t = 7)]
    pub days: i64,
}

/// How many audit entries are read to find the last accepted event of each direction.
const AUDIT_READ: usize = 500;

pub async fn run(args: StatusArgs, globals: &Globals) -> Result<u8, Failure> {
    let settings = Settings::resolve(globals).await?;
    let mut lines = Vec::new();
    let mut context = json!({"stack": globals.stack_name, "region": settings.aws.region});
    match settings.aws.identity().await {
        Ok(identity) => {
            context["account"] = identity.account.clone().into();
            lines.push(Line::ok(
                "AWS account and region",
                format!("account {} in {}", identity.account, identity.region),
            ));
        }
        Err(failure) => lines.push(Line::failed("AWS account and region", &failure)),
    }
    lines.extend(table_lines(&settings, args.days).await);
    lines.extend(queue_lines(&settings).await);
    lines.extend(remote_lines(&settings).await);
    Ok(report::print("status", context, &lines, globals.json))
}

async fn table_lines(settings: &Settings, days: i64) -> Vec<Line> {
    let store = match settings.store() {
        Ok(store) => store,
        Err(failure) => return vec![Line::failed("table", &failure)],
    };
    let label = settings.table_label();
    let mut lines = Vec::new();
    lines.push(match store.current_rules().await {
        Ok(Some(stored)) => Line::ok(
            "rules",
            format!(
                "version {} stored {} by {}",
                stored.version,
                stored.stored_at.format("%Y-%m-%d %H:%M UTC"),
                stored.stored_by
            ),
        )
        .with_data(json!({"version": stored.version})),
        Ok(None) => Line::problem("rules", "no rules stored: every event is skipped; `syncctl rules push FILE`"),
        Err(err) => Line::failed("rules", &Failure::of(&label, &err)),
    });
    for service in ["salesforce", "pagerduty"] {
        let name = format!("breaker {service}");
        lines.push(match store.get_breaker(service).await {
            Ok(None) => Line::ok(name, "closed (never tripped)").with_data(json!({"state": "closed"})),
            Ok(Some(b)) => {
                let data =
                    json!({"state": b.state, "failures": b.failures, "opened_at": b.opened_at, "reason": b.reason});
                match b.state {
                    BreakerState::Closed => Line::ok(name, format!("closed, {} recent failure(s)", b.failures)),
                    state => Line::problem(
                        name,
                        format!(
                            "{} since {}: {}; events wait in the retry queue until it answers again",
                            if state == BreakerState::Open { "OPEN" } else { "half-open (probing)" },
                            b.opened_at.map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
                            b.reason.as_deref().unwrap_or("no reason recorded")
                        ),
                    ),
                }
                .with_data(data)
            }
            Err(err) => Line::failed(name, &Failure::of(&label, &err)),
        });
    }
    let since = Utc::now() - Duration::days(days);
    // The Outbound Message route only when the stack enables it (its token secret is named).
    let mut routes = vec![Route::PagerdutyWebhook, Route::ApexTrigger];
    if settings.get("SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID").is_some() {
        routes.push(Route::OutboundMessage);
    }
    match store.recent(since, AUDIT_READ).await {
        Err(err) => {
            let failure = Failure::of(&label, &err);
            for route in routes {
                lines.push(Line::failed(format!("last event {}", route.as_str()), &failure));
            }
        }
        Ok(entries) => {
            for route in routes {
                let name = format!("last event {}", route.as_str());
                // Accepted: authentic and taken in (applied, skipped, queued...), not rejected.
                let last = entries
                    .iter()
                    .find(|e| e.outcome != Outcome::Rejected && Route::of(e.direction, &e.event_id) == route);
                lines.push(match last {
                    Some(e) => Line::ok(
                        name,
                        format!(
                            "{} ago: {} event {} ({})",
                            age(Utc::now() - e.at),
                            e.outcome.as_str(),
                            e.event_id,
                            e.at.format("%Y-%m-%d %H:%M:%S UTC")
                        ),
                    )
                    .with_data(json!({"at": e.at, "event_id": e.event_id, "outcome": e.outcome})),
                    None => Line::problem(
                        name,
                        format!(
                            "none accepted in the last {days} day(s) (read the newest {AUDIT_READ} entries): check the sender (subscription, Apex trigger, signing keys)"
                        ),
                    ),
                });
            }
        }
    }
    lines
}

async fn queue_lines(settings: &Settings) -> Vec<Line> {
    let mut lines = Vec::new();
    match settings.retry_queue() {
        Err(failure) => lines.push(Line::failed("retry queue", &failure)),
        Ok(queue) => lines.push(match queue.backlog().await {
            Ok(b) => Line::ok(
                "retry queue",
                format!(
                    "{} waiting, {} in flight, {} delayed (its oldest age is CloudWatch's ApproximateAgeOfOldestMessage: peeking would count as a receive)",
                    b.waiting, b.in_flight, b.delayed
                ),
            )
            .with_data(json!({"waiting": b.waiting, "in_flight": b.in_flight, "delayed": b.delayed})),
            Err(err) => Line::failed("retry queue", &Failure::of("the retry queue", &err)),
        }),
    }
    match settings.dlq() {
        Err(failure) => lines.push(Line::failed("dead-letter queue", &failure)),
        Ok(queue) => lines.push(match queue.backlog().await {
            Err(err) => Line::failed("dead-letter queue", &Failure::of("the dead-letter queue", &err)),
            Ok(b) if b.waiting + b.in_flight + b.delayed == 0 => {
                Line::ok("dead-letter queue", "empty").with_data(json!({"depth": 0}))
            }
            Ok(b) => {
                let depth = b.waiting + b.in_flight + b.delayed;
                let oldest = dlq::list(&queue, 100).await.ok().and_then(|l| l.iter().map(|l| l.message.sent_at).min());
                let retention = Duration::from_std(b.retention).unwrap_or_default();
                let age_text = oldest.map_or("oldest unknown".to_string(), |t| {
                    format!("oldest {} old of {} retention", age(Utc::now() - t), age(retention))
                });
                Line::problem(
                    "dead-letter queue",
                    format!("{depth} dead letter(s), {age_text}: `syncctl dlq list`, fix, then `syncctl dlq replay`"),
                )
                .with_data(
                    json!({"depth": depth, "oldest_sent_at": oldest, "retention_seconds": b.retention.as_secs()}),
                )
            }
        }),
    }
    lines
}

async fn remote_lines(settings: &Settings) -> Vec<Line> {
    let config = match settings.config() {
        Ok(config) => config,
        Err(failure) => {
            let why = format!("needs every setting: {failure}");
            return vec![
                Line::skipped("Salesforce API usage", &why),
                Line::skipped("PagerDuty webhook subscription", &why),
            ];
        }
    };
    let secrets = settings.aws.secrets(&config);
    let transport: Arc<dyn Transport> = match ReqwestTransport::new() {
        Ok(t) => Arc::new(t),
        Err(e) => {
            let failure = Failure::Usage(format!("no HTTP client: {e}"));
            return vec![
                Line::failed("Salesforce API usage", &failure),
                Line::failed("PagerDuty webhook subscription", &failure),
            ];
        }
    };
    let clock: Arc<dyn shared::clock::Clock> = Arc::new(shared::clock::SystemClock);
    let salesforce = config.salesforce.client(transport.clone(), secrets.clone(), clock, HTTP_TIMEOUT);
    let usage = match salesforce.daily_api_usage().await {
        Ok(usage) => match super::doctor::api_usage(usage) {
            Ok(text) => Line::ok("Salesforce API usage", text),
            Err(text) => Line::problem("Salesforce API usage", text),
        }
        .with_data(json!({"used": usage.used, "limit": usage.limit})),
        Err(err) => Line::failed("Salesforce API usage", &Failure::of("Salesforce", &err)),
    };
    let subscription = subscription_line(settings, &config, transport, secrets).await;
    vec![usage, subscription]
}

async fn subscription_line(
    settings: &Settings,
    config: &shared::config::Config,
    transport: Arc<dyn Transport>,
    secrets: Arc<shared::secrets::CachedSecrets>,
) -> Line {
    const NAME: &str = "PagerDuty webhook subscription";
    // Recorded in the table by `syncctl setup pagerduty-webhook`, where the reconcile watchdog reads it.
    let recorded = match settings.store() {
        Ok(store) => match shared::store::CursorStore::watched_subscription(store.as_ref()).await {
            Ok(id) => id,
            Err(err) => return Line::failed(NAME, &Failure::of(settings.table_label(), &err)),
        },
        Err(failure) => return Line::failed(NAME, &failure),
    };
    let Some(id) = recorded else {
        return Line::skipped(NAME, "unknown: run `syncctl setup pagerduty-webhook` (it records the subscription id)");
    };
    let pagerduty = config.pagerduty.client(transport, secrets, HTTP_TIMEOUT);
    match pagerduty.get_webhook_subscription(&id).await {
        Ok(sub) if sub.active => Line::ok(NAME, format!("{id} is active, delivering to {}", sub.url.as_deref().unwrap_or("?"))),
        Ok(_) => Line::problem(
            NAME,
            format!("{id} is DISABLED (PagerDuty disables one that keeps failing): fix the cause, then enable it in PagerDuty"),
        ),
        Err(err) => Line::failed(NAME, &Failure::of(format!("PagerDuty (subscription {id})"), &err)),
    }
    .with_data(json!({"id": id}))
}

/// `3d 4h`, `2h 5m`, `40s`.
fn age(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}
