//! `make run`: the local demo. The three functions' handlers run on in-memory stores and queues
//! against the PagerDuty and Salesforce simulators, and every sample request in `events/` is
//! replayed through them, in a story order; then the retry function gets the SQS samples of
//! `events/retry/`, drains the queue, and the resulting state of both simulated systems is printed,
//! with commands that still work once the demo has exited.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;
use shared::clock::Clock;
use shared::handler::http::{InboundRequest, Reply};
use shared::handler::{pd_to_sfdc, sfdc_to_pd};
use sim::harness::{Harness, INBOUND_SECRET};
use sim::salesforce::sign_trigger;

#[derive(Parser)]
#[command(about = "Replay events/ through pd-sfdc-sync against local PagerDuty and Salesforce simulators")]
struct Args {
    /// The folder of sample events.
    #[arg(long, default_value = "events")]
    events: PathBuf,
    /// The rules document to run with.
    #[arg(long, default_value = "events/rules.example.yaml")]
    rules: PathBuf,
}

/// The story: Salesforce cases open, change and close; PagerDuty incidents run their course;
/// then the hostile and odd deliveries.
const ORDER: &[&str] = &[
    "sfdc-to-pd/case-insert-sev1",
    "sfdc-to-pd/bearer-named-credential",
    "sfdc-to-pd/case-update-priority",
    "sfdc-to-pd/console-incidents",
    "sfdc-to-pd/console-escalate",
    "sfdc-to-pd/console-status",
    "sfdc-to-pd/casecomment-insert",
    // events/case_actions.py: a status update, then an incident custom field, from the Case.
    "sfdc-to-pd/case-update-customer-notified",
    "sfdc-to-pd/case-update-customer-impact",
    "sfdc-to-pd/case-update-closed",
    "sfdc-to-pd/custom-object-insert",
    "sfdc-to-pd/case-bulk-update-200",
    "sfdc-to-pd/outbound-message",
    "sfdc-to-pd/bad-signature",
    "sfdc-to-pd/stale-timestamp",
    "pd-to-sfdc/incident-triggered",
    "pd-to-sfdc/incident-acknowledged",
    "pd-to-sfdc/duplicate-incident-acknowledged",
    "pd-to-sfdc/rotated-secret",
    "pd-to-sfdc/two-signatures-during-rotation",
    "pd-to-sfdc/incident-annotated",
    "pd-to-sfdc/incident-status-update-published",
    "pd-to-sfdc/incident-priority-updated",
    // One of each other v3 type PagerDuty documents (events/generate.py pd_activity_events).
    "pd-to-sfdc/incident-unacknowledged",
    "pd-to-sfdc/incident-reopened",
    "pd-to-sfdc/incident-escalated",
    "pd-to-sfdc/incident-reassigned",
    "pd-to-sfdc/incident-delegated",
    "pd-to-sfdc/incident-service-updated",
    "pd-to-sfdc/incident-incident-type-changed",
    "pd-to-sfdc/incident-responder-added",
    "pd-to-sfdc/incident-responder-replied",
    "pd-to-sfdc/incident-conference-bridge-updated",
    "pd-to-sfdc/incident-custom-field-values-updated",
    "pd-to-sfdc/incident-role-assigned",
    "pd-to-sfdc/incident-task-created",
    "pd-to-sfdc/incident-task-updated",
    "pd-to-sfdc/incident-task-completed",
    "pd-to-sfdc/incident-workflow-started",
    "pd-to-sfdc/incident-workflow-completed",
    "pd-to-sfdc/incident-action-invocation-created",
    "pd-to-sfdc/incident-action-invocation-updated",
    "pd-to-sfdc/incident-action-invocation-terminated",
    "pd-to-sfdc/service-created",
    "pd-to-sfdc/service-updated",
    "pd-to-sfdc/service-deleted",
    "pd-to-sfdc/service-custom-field-values-updated",
    "pd-to-sfdc/incident-resolved",
    "pd-to-sfdc/out-of-order-1-triggered",
    "pd-to-sfdc/out-of-order-2-resolved",
    "pd-to-sfdc/out-of-order-3-acknowledged-late",
    "pd-to-sfdc/unknown-event-type",
    "pd-to-sfdc/ping",
    "pd-to-sfdc/bad-signature",
    "pd-to-sfdc/missing-signature",
    "pd-to-sfdc/malformed-but-signed",
];

/// Change Data Capture events from Event Relay (EventBridge invokes the sfdc-to-pd function with
/// them, not API Gateway), replayed after the HTTP story.
const CHANGE_EVENT_SAMPLES: &[&str] = &[
    "sfdc-to-pd/cdc-create",
    "sfdc-to-pd/cdc-update",
    "sfdc-to-pd/cdc-multi-record",
    "sfdc-to-pd/cdc-delete",
    "sfdc-to-pd/cdc-gap",
];

/// The retry function's samples (events/retry/), replayed after the story.
const RETRY_SAMPLES: &[&str] = &["retry/sqs-batch", "retry/sqs-poison-message", "retry/reconcile-scheduled"];

fn load(path: &Path) -> Result<lambda_http::Request, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    lambda_http::request::from_str(&text).map_err(|e| format!("{}: not an API Gateway event: {e}", path.display()))
}

/// Salesforce posts are signed over a timestamp that goes stale after five minutes; sign the
/// sample again now, as the Apex Queueable would (except the sample that shows a stale one).
fn fresh_signature(request: &mut InboundRequest, name: &str, now: i64) {
    let signed = request.header("x-pdsync-signature").is_some();
    let verifies = shared::salesforce::verify_trigger_signature(
        &request.body,
        request.header("x-pdsync-timestamp"),
        request.header("x-pdsync-signature"),
        &[INBOUND_SECRET],
        chrono::DateTime::from_timestamp(
            request.header("x-pdsync-timestamp").and_then(|t| t.parse().ok()).unwrap_or(0),
            0,
        )
        .unwrap_or_default(),
        300,
    )
    .is_ok();
    if signed && verifies && !name.ends_with("stale-timestamp") {
        request.headers.retain(|(k, _)| k != "x-pdsync-timestamp" && k != "x-pdsync-signature");
        request.headers.push(("x-pdsync-timestamp".into(), now.to_string()));
        request.headers.push(("x-pdsync-signature".into(), sign_trigger(INBOUND_SECRET, now, &request.body)));
    }
}

fn summary(reply: &Reply) -> String {
    match serde_json::from_str::<Value>(&reply.body) {
        Ok(v) if v.get("received").is_some() => format!(
            "received {} applied {} skipped {} duplicate {} queued {} dead-lettered {}",
            v["received"], v["applied"], v["skipped"], v["duplicate"], v["queued"], v["dead_lettered"]
        ),
        // The agent console's answers (docs/console-api.md).
        Ok(v) if v["incidents"].is_array() => {
            format!("{} incident(s) shown", v["incidents"].as_array().map_or(0, Vec::len))
        }
        Ok(v) if v["incident"].is_object() => format!(
            "incident #{} {}",
            v["incident"]["number"],
            if v["created"] == true { "created and linked" } else { "already made" }
        ),
        Ok(v) if v["error"].is_object() => format!("{}: {}", v["error"]["code"], v["error"]["message"]),
        Ok(v) => v["status"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
        Err(_) if reply.body.contains("<Ack>true</Ack>") => "SOAP Ack true".into(),
        Err(_) => reply.body.chars().take(60).collect(),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let rules = std::fs::read_to_string(&args.rules).map_err(|e| format!("{}: {e}", args.rules.display()))?;
    let mut h = Harness::start(&rules).await;
    // As deployed with ConsoleEscalationServiceId and ConsoleServiceIds: the agent console's
    // escalation and status panel use the simulator's service.
    h.ctx.settings.console_escalation_service_id = Some("PSVC001".into());
    h.ctx.settings.console_service_ids = vec!["PSVC001".into()];
    println!("pd-sfdc-sync local demo");
    println!("  PagerDuty simulator:  {}", h.pd.base_url());
    println!("  Salesforce simulator: {}", h.sf.base_url());
    println!("  rules:                {}", args.rules.display());
    println!();
    println!("{:<48} {:>6}  result", "event", "status");
    for name in ORDER {
        let path = args.events.join(format!("{name}.json"));
        let request = load(&path)?;
        let mut inbound = adapters::lambda::to_inbound(&request);
        inbound.deadline = Some(h.clock.now() + chrono::Duration::seconds(10));
        let route = request.uri().path().to_string();
        let reply = match route.as_str() {
            "/pagerduty/webhook" => pd_to_sfdc::handle(&h.ctx, inbound).await,
            "/salesforce/records"
            | "/salesforce/console/incidents"
            | "/salesforce/console/escalate"
            | "/salesforce/console/status" => {
                fresh_signature(&mut inbound, name, h.clock.now().timestamp());
                sfdc_to_pd::handle(&h.ctx, inbound).await
            }
            "/salesforce/outbound-message" => sfdc_to_pd::handle(&h.ctx, inbound).await,
            other => return Err(format!("{name}: unknown route {other}")),
        };
        println!("{:<48} {:>6}  {}", name, reply.status, summary(&reply));
    }
    println!();
    println!("{:<48} {:>6}  result", "change event (EventBridge)", "");
    for name in CHANGE_EVENT_SAMPLES {
        let path = args.events.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let event: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        let words = match h.change_event(&event).await {
            sfdc_to_pd::ChangeEventReply::Accepted(s) => format!(
                "accepted: received {} applied {} skipped {} duplicate {} stale {} queued {} dead-lettered {}",
                s.received, s.applied, s.skipped, s.duplicate, s.stale, s.queued, s.dead_lettered
            ),
            sfdc_to_pd::ChangeEventReply::Refused(err) => format!("refused: {err}"),
            sfdc_to_pd::ChangeEventReply::Retry(s) => format!("error, EventBridge delivers again: {s:?}"),
        };
        println!("{:<48} {:>6}  {}", name, "", words);
    }
    // The retry function's samples, as the SQS event source would deliver them: their envelopes
    // (the acknowledged incident, the Sev1 Case) were applied above, and the poison message is
    // not an envelope at all.
    println!();
    println!("{:<48} {:>6}  result", "retry sample", "failed");
    for name in RETRY_SAMPLES {
        let path = args.events.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let event: lambda_http::aws_lambda_events::sqs::SqsEvent =
            serde_json::from_str(&text).map_err(|e| format!("{}: not an SQS event: {e}", path.display()))?;
        let messages = adapters::lambda::to_messages(event);
        let (count, dead_before) = (messages.len(), h.dlq.len());
        let deadline = Some(h.clock.now() + chrono::Duration::seconds(60));
        // As the retry function runs: a "reconcile" message (what EventBridge Scheduler posts)
        // runs a reconcile with the cursors in the store.
        let runner = shared::reconcile::trigger::Runner { cursors: h.store.clone() };
        let failed = shared::handler::retry::handle_batch_reconciling(&h.ctx, Some(&runner), messages, deadline).await;
        println!(
            "{:<48} {:>6}  {} message(s), {} dead-lettered, {} to deliver again",
            name,
            failed.len(),
            count,
            h.dlq.len() - dead_before,
            failed.len()
        );
    }
    for run in h.store.audit_entries().iter().filter(|e| e.event_id.starts_with(shared::reconcile::EVENT_ID_PREFIX)) {
        println!("  {}", run.reason.as_deref().unwrap_or("reconcile run"));
    }
    if std::env::var("DEMO_LOG").is_ok() {
        adapters::telemetry::init_logging("info");
    }
    let batches = h.drain_retries(1000).await;
    println!();
    println!(
        "retry function: {batches} batch(es) drained; retry queue {} left, DLQ {}",
        h.retry_queue.len(),
        h.dlq.len()
    );
    println!();
    println!("PagerDuty now holds {} incident(s):", h.pd.incidents().len());
    for incident in h.pd.incidents().iter().take(5) {
        let id = incident["id"].as_str().unwrap_or_default();
        let fields = h.pd.custom_field_values(id);
        let fields: Vec<String> = fields.iter().map(|(name, value)| format!("{name}={value}")).collect();
        println!(
            "  {} [{}] {} ({} note(s), {} status update(s){})",
            incident["id"].as_str().unwrap_or("?"),
            incident["status"].as_str().unwrap_or("?"),
            incident["title"].as_str().unwrap_or("?"),
            h.pd.notes(id).len(),
            h.pd.status_updates(id).len(),
            if fields.is_empty() { String::new() } else { format!(", custom fields {}", fields.join(" ")) }
        );
    }
    println!(
        "Salesforce now holds {} Case(s) and {} Case Comment(s):",
        h.sf.records("Case").len(),
        h.sf.records("CaseComment").len()
    );
    for case in h.sf.records("Case").iter().take(5) {
        println!(
            "  {} [{}] {}",
            case["Id"].as_str().unwrap_or("?"),
            case["Status"].as_str().unwrap_or("?"),
            case["Subject"].as_str().unwrap_or("?")
        );
    }
    let links = h.store.all_links();
    println!("{} incident↔record link(s); audit trail of {} entries:", links.len(), h.store.audit_len());
    let mut counts = std::collections::BTreeMap::new();
    for entry in h.store.audit_entries() {
        *counts.entry(entry.outcome.as_str()).or_insert(0) += 1;
    }
    for (outcome, n) in counts {
        println!("  {outcome:<14} {n}");
    }
    // The stores and simulators above are in memory and end with this process: the hints name
    // what can be run afterwards.
    println!();
    println!("Next (the state above is gone once this exits):");
    for (command, what) in [
        ("DEMO_LOG=1 make run", "this demo again, with the retry function's logs"),
        ("make watch", "the real function binaries (cargo lambda watch) on moto and the simulators"),
        ("make invoke-watch EVENT=events/sfdc-to-pd/case-insert-sev1.json", "one sample to them, signed now"),
        (
            "cargo run -q -p syncctl -- rules test events/rules.example.yaml events/rules/case-insert-sev1.event.json",
            "what the rules decide for one event, and why",
        ),
    ] {
        println!("  {command}\n      {what}");
    }
    Ok(())
}
