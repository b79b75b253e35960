//! The agent console's routes on the `sfdc-to-pd` function (docs/console-api.md): the incidents
//! linked to a record, the open incidents of chosen services, each with its live status from
//! PagerDuty, and an escalation (an incident opened by hand for a record). Posted by the
//! `PdSyncConsoleController` Apex class, authenticated and checked for the org exactly as the
//! record posts ([`super::sfdc_to_pd::authenticate`]).
//!
//! Each linked incident costs one `GET /incidents/{id}` (read at once, at most
//! [`MAX_LINKED`]); the status panel one `GET /incidents` (one page of 100); what was read in the
//! last [`CACHE_SECONDS`] on the same instance is reused. The PagerDuty client's limiter and its
//! 429 handling apply as to every other call.
//!
//! An escalation is exactly once per `request_id`: its gate key (`console:<id>`) is claimed as
//! an event's; the incident is created by the PagerDuty executor with an `incident_key` of the
//! request id (a retry after a lost answer finds it by that key instead of creating another) and
//! linked to the record; the gate then remembers it, so a double click or the agent's "Try again"
//! answers the same incident. What cannot be done now is told to the agent (who may try again
//! with the same id), not queued: an incident that appears minutes after the agent was told it
//! failed would page twice when the agent escalates another way.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::context::Context;
use super::http::{InboundRequest, Reply};
use super::idempotency::{Gate, Settlement};
use super::settle::FailureKind;
use crate::class::{Class, Classify};
use crate::model::{AuditEntry, Direction, GateKey, Outcome, RecordRef};
use crate::pagerduty::PagerdutyError;
use crate::pagerduty::client::Incident;
use crate::retry::envelope::Progress;
use crate::rules::{Action, PagerdutyAction, PlannedAction};
use crate::store::Subject;
use crate::telemetry::metrics;

pub const INCIDENTS_ROUTE: &str = "/salesforce/console/incidents";
pub const STATUS_ROUTE: &str = "/salesforce/console/status";
pub const ESCALATE_ROUTE: &str = "/salesforce/console/escalate";

/// At most this many linked incidents of one record are read (newest links first).
pub const MAX_LINKED: usize = 20;

/// How long the console reuses what it read of an incident or a status panel: agents on one
/// Case (or one panel) within these seconds cost PagerDuty one read, not one each.
pub const CACHE_SECONDS: i64 = 10;

/// The console's PagerDuty reads of the last [`CACHE_SECONDS`], per instance (by incident id,
/// and by the panel's services).
#[derive(Default)]
pub struct ReadCache {
    incidents: Reads<Incident>,
    panels: Reads<Vec<Incident>>,
}

/// What was read, by key, and when.
type Reads<T> = std::sync::Mutex<std::collections::HashMap<String, (DateTime<Utc>, T)>>;

impl ReadCache {
    fn fresh<T: Clone>(map: &Reads<T>, key: &str, now: DateTime<Utc>) -> Option<T> {
        let map = map.lock().expect("console cache lock");
        map.get(key).filter(|(at, _)| now - *at < chrono::Duration::seconds(CACHE_SECONDS)).map(|(_, v)| v.clone())
    }

    fn keep<T>(map: &Reads<T>, key: String, now: DateTime<Utc>, value: T) {
        let mut map = map.lock().expect("console cache lock");
        // Small: what is stale goes whenever something is kept.
        map.retain(|_, (at, _)| now - *at < chrono::Duration::seconds(CACHE_SECONDS));
        map.insert(key, (now, value));
    }
}

/// An incident as read within [`CACHE_SECONDS`], else from PagerDuty (one call).
async fn read_incident(ctx: &Context, id: &str) -> Result<Incident, PagerdutyError> {
    let now = ctx.clock.now();
    if let Some(incident) = ReadCache::fresh(&ctx.console_reads.incidents, id, now) {
        return Ok(incident);
    }
    metrics::api_calls("pagerduty", 1);
    let incident = ctx.pagerduty.get_incident(id).await?;
    ReadCache::keep(&ctx.console_reads.incidents, id.to_string(), now, incident.clone());
    Ok(incident)
}

/// What the console asks (the common fields and each route's own, docs/console-api.md).
#[derive(Debug, Deserialize)]
struct Ask {
    schema: u32,
    org_id: String,
    #[serde(default)]
    record_id: Option<String>,
    #[serde(default)]
    service_ids: Option<Vec<String>>,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    service_id: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    user: Option<AskedBy>,
}

#[derive(Debug, Default, Deserialize)]
struct AskedBy {
    #[serde(default)]
    username: Option<String>,
}

/// `POST /salesforce/console/incidents` and `POST /salesforce/console/status`.
pub async fn handle(ctx: &Context, request: InboundRequest, route: &'static str) -> Reply {
    let started = ctx.clock.now();
    if let Err(refused) = super::sfdc_to_pd::authenticate(ctx, &request, started).await {
        return in_console_words(refused);
    }
    let ask: Ask = match serde_json::from_slice(&request.body) {
        Ok(ask) => ask,
        Err(err) => return error(400, "bad_request", format!("the body is not a console request: {err}")),
    };
    if ask.schema != 1 {
        return error(400, "bad_request", format!("schema {} is not known; this bridge reads schema 1", ask.schema));
    }
    if let Err(refused) = super::sfdc_to_pd::check_org(ctx, &ask.org_id) {
        return in_console_words(refused);
    }
    if route == STATUS_ROUTE {
        return answer(ctx, route, status_panel(ctx, ask.service_ids.unwrap_or_default()).await);
    }
    let Some(record_id) =
        ask.record_id.clone().filter(|id| crate::salesforce::id::RecordId::new(id.as_str()).is_well_shaped())
    else {
        return error(400, "bad_request", "record_id must be a 15 or 18-character Salesforce record id");
    };
    if route == ESCALATE_ROUTE {
        return escalate(ctx, &request, ask, &record_id).await;
    }
    answer(ctx, route, linked(ctx, &record_id).await)
}

fn answer(ctx: &Context, route: &'static str, answer: Result<Vec<Value>, Reply>) -> Reply {
    match answer {
        Ok(incidents) => {
            metrics::route_accepted(route, incidents.len());
            Reply::json(200, &json!({"incidents": incidents, "fetched_at": ctx.clock.now().to_rfc3339()}))
        }
        Err(refused) => refused,
    }
}

/// `POST /salesforce/console/escalate`: opens an incident for the record, once per request id.
async fn escalate(ctx: &Context, request: &InboundRequest, ask: Ask, record_id: &str) -> Reply {
    let started = ctx.clock.now();
    let Some(request_id) = ask.request_id.as_deref().and_then(|id| uuid::Uuid::parse_str(id).ok()) else {
        return error(400, "bad_request", "request_id must be a UUID, made once per escalation");
    };
    let Some(object) = ask.object.as_deref().filter(|o| !o.trim().is_empty()) else {
        return error(400, "bad_request", "object must name the record's sObject (Case, Account, ...)");
    };
    let urgency = match ask.urgency.as_deref() {
        None | Some("") => None,
        Some("high") => Some(crate::rules::Urgency::High),
        Some("low") => Some(crate::rules::Urgency::Low),
        Some(other) => return error(400, "bad_request", format!("urgency {other:?} is neither high nor low")),
    };
    let Some(service_id) = ask.service_id.clone().or_else(|| ctx.settings.console_escalation_service_id.clone()) else {
        return error(
            409,
            "not_configured",
            "no service to escalate to: set ConsoleEscalationServiceId on the stack (or send service_id)",
        );
    };
    let request_id = request_id.hyphenated().to_string();
    let key = GateKey::console_escalation(&request_id);
    let rule = format!("console escalation {request_id}");
    match ctx.idempotency.begin(&key, request.deadline).await {
        Ok(Gate::Proceed) => {}
        Ok(Gate::Duplicate { .. }) => return served_before(ctx, record_id, &rule).await,
        Ok(Gate::Busy { .. }) => {
            return error(503, "pagerduty_unavailable", "this escalation is under way; ask again in a moment")
                .with_header("Retry-After", "2");
        }
        Err(err) => {
            tracing::error!(error = %err, "console: the escalation's gate could not be read");
            return error(503, "pagerduty_unavailable", "the bridge's store could not be read; try again");
        }
    }
    let who = ask.user.and_then(|u| u.username).unwrap_or_else(|| "an agent".into());
    let title = ask.title.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| format!("{object} {record_id}"));
    let body = format!(
        "{}\n\nEscalated from Salesforce by {who} ({object} {record_id}).",
        ask.details.as_deref().unwrap_or("").trim()
    );
    let action = PagerdutyAction::CreateIncident {
        record: RecordRef { object: object.into(), id: record_id.to_string().into() },
        service_id,
        escalation_policy_id: None,
        urgency,
        priority: None,
        title: crate::rules::truncate_chars(&title, 1024).to_string(),
        body: Some(body.trim().to_string()),
        incident_key: format!("{}console:{request_id}", crate::rules::INCIDENT_KEY_PREFIX),
    };
    let plan = [PlannedAction { rule: rule.clone(), ruleset: "console".into(), action: Action::Pagerduty(action) }];
    let mut progress = Progress::default();
    let until = super::salesforce_exec::call_deadline(ctx.clock.as_ref(), request.deadline, ctx.settings.settle_margin);
    let execution = super::pagerduty_exec::execute(
        ctx.pagerduty_port(),
        ctx.stores.links.as_ref(),
        ctx.clock.as_ref(),
        key.as_str(),
        &mut progress,
        &plan,
        until,
    )
    .await;
    let mut entry = AuditEntry::new(
        ctx.clock.now(),
        Direction::SalesforceToPagerduty,
        &request.correlation_id,
        key.as_str(),
        Outcome::Applied,
    );
    entry.record_ids = vec![record_id.to_string()];
    entry.incident_ids = execution.linked.iter().map(|l| l.incident_id.to_string()).collect();
    entry.rules_matched = vec![rule.clone()];
    entry.actions = execution.actions.clone();
    entry.api_calls = execution.api_calls;
    entry.duration_ms = (ctx.clock.now() - started).num_milliseconds().max(0) as u64;
    let Some(link) = execution.linked.first().filter(|_| execution.failure.is_none()) else {
        // Nothing created that the bridge knows of: the agent may try again with the same id
        // (PagerDuty's incident_key stops a second incident if the first was created after all).
        let _ = ctx.idempotency.abandon(&key).await;
        let reason = execution.failure.as_ref().map(|(_, reason, _)| reason.clone()).or(execution.deferred.clone());
        entry.outcome = Outcome::Skipped;
        entry.reason = reason.clone().map(|r| format!("escalation not done: {r}"));
        if let Err(err) = ctx.stores.audit.append(&entry).await {
            tracing::warn!(error = %err, "console: the escalation's audit entry was not written");
        }
        tracing::warn!(reason = ?reason, "console: escalation failed");
        let transient = execution.failure.as_ref().is_none_or(|(kind, ..)| *kind == FailureKind::Transient);
        return if transient {
            error(503, "pagerduty_unavailable", "PagerDuty is not reachable right now; try again")
        } else {
            error(502, "pagerduty_unavailable", reason.unwrap_or_default())
        };
    };
    let completion = ctx.idempotency.completion(&key, &Settlement::plain(Outcome::Applied));
    if let Err(err) = ctx.stores.audit.append_completing(&entry, &[completion]).await {
        // The incident and its link stand; a retry of the same id finds the incident by its key.
        tracing::warn!(error = %err, "console: the escalation's completion was not written");
    }
    metrics::route_accepted(ESCALATE_ROUTE, 1);
    match ctx.pagerduty.get_incident(link.incident_id.as_str()).await {
        Ok(incident) => Reply::json(201, &json!({"incident": console_incident(&incident), "created": true})),
        // Created and linked; only its read failed: the console shows what it knows.
        Err(_) => Reply::json(
            201,
            &json!({"incident": {"id": link.incident_id.to_string(), "status": "triggered", "assignees": []}, "created": true}),
        ),
    }
}

/// The incident an earlier post of the same request id created (its link names the escalation).
async fn served_before(ctx: &Context, record_id: &str, rule: &str) -> Reply {
    let links = match ctx.stores.links.incidents_for_record(record_id).await {
        Ok(links) => links,
        Err(_) => return error(503, "pagerduty_unavailable", "the bridge's store could not be read; try again"),
    };
    let Some(link) = links.iter().find(|l| l.created_by_rule.as_deref() == Some(rule)) else {
        return error(404, "not_found", "this escalation was made for another record");
    };
    match ctx.pagerduty.get_incident(link.incident_id.as_str()).await {
        Ok(incident) => Reply::json(200, &json!({"incident": console_incident(&incident), "created": false})),
        Err(err) => pagerduty_failed(&err),
    }
}

/// The incidents linked to `record_id`, newest first.
async fn linked(ctx: &Context, record_id: &str) -> Result<Vec<Value>, Reply> {
    let links = ctx.stores.links.incidents_for_record(record_id).await.map_err(|err| {
        tracing::error!(error = %err, "console: reading the record's links failed");
        error(503, "pagerduty_unavailable", "the bridge's store could not be read; try again")
    })?;
    let ids: Vec<String> = links.iter().rev().take(MAX_LINKED).map(|l| l.incident_id.to_string()).collect();
    let reads = ids.iter().map(|id| read_incident(ctx, id));
    let mut incidents = Vec::with_capacity(ids.len());
    for read in futures::future::join_all(reads).await {
        match read {
            Ok(incident) => incidents.push(incident),
            // Deleted or merged away in PagerDuty: not shown, the others are.
            Err(PagerdutyError::Api { status, .. }) if status.as_u16() == 404 => {}
            Err(err) => return Err(pagerduty_failed(&err)),
        }
    }
    Ok(with_status_updates(ctx, newest_first(incidents)).await)
}

/// The open incidents of `service_ids`, or of the services the admin chose.
async fn status_panel(ctx: &Context, service_ids: Vec<String>) -> Result<Vec<Value>, Reply> {
    let service_ids = if service_ids.is_empty() { ctx.settings.console_service_ids.clone() } else { service_ids };
    if service_ids.is_empty() {
        return Err(error(
            409,
            "not_configured",
            "no services are chosen for the status panel: set ConsoleServiceIds on the stack or serviceIds on the component",
        ));
    }
    let now = ctx.clock.now();
    let key = service_ids.join(",");
    let open = match ReadCache::fresh(&ctx.console_reads.panels, &key, now) {
        Some(open) => open,
        None => {
            metrics::api_calls("pagerduty", 1);
            let ids: Vec<&str> = service_ids.iter().map(String::as_str).collect();
            let open = ctx.pagerduty.list_open_incidents(&ids).await.map_err(|err| pagerduty_failed(&err))?;
            ReadCache::keep(&ctx.console_reads.panels, key, now, open.clone());
            open
        }
    };
    Ok(with_status_updates(ctx, newest_first(open)).await)
}

/// Each incident's latest status update, as the bridge received it by webhook (one store read
/// per incident, at once; one that cannot be read shows none).
async fn with_status_updates(ctx: &Context, mut incidents: Vec<Value>) -> Vec<Value> {
    let reads = incidents.iter().map(|i| {
        let subject = Subject::Incident(i["id"].as_str().unwrap_or_default().to_string());
        async move { ctx.stores.links.subject_state(&subject).await.ok().and_then(|s| s.status_update) }
    });
    let updates = futures::future::join_all(reads).await;
    for (incident, update) in incidents.iter_mut().zip(updates) {
        if let Some(update) = update {
            incident["latest_status_update"] =
                json!({"message": update.message, "created_at": update.created_at.to_rfc3339()});
        }
    }
    incidents
}

fn newest_first(mut incidents: Vec<Incident>) -> Vec<Value> {
    let created = |i: &Incident| i.raw.get("created_at").and_then(Value::as_str).and_then(|t| t.parse().ok());
    incidents.sort_by_key(|i| std::cmp::Reverse(created(i).unwrap_or(DateTime::<Utc>::MIN_UTC)));
    incidents.iter().map(console_incident).collect()
}

/// An incident as the console shows it (docs/console-api.md, "Incident").
pub fn console_incident(incident: &Incident) -> Value {
    let raw = &incident.raw;
    let reference = |r: &Value| json!({"id": r.get("id"), "name": r.get("summary").or_else(|| r.get("name"))});
    let assignees: Vec<Value> = raw
        .get("assignments")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|a| a.get("assignee")).map(reference).collect())
        .unwrap_or_default();
    json!({
        "id": incident.id,
        "number": incident.incident_number,
        "title": incident.title.clone().or_else(|| raw.get("summary").and_then(Value::as_str).map(str::to_string)),
        "status": incident.status,
        "urgency": incident.urgency,
        "priority": raw.get("priority").filter(|p| p.is_object()).map(reference),
        "service": raw.get("service").filter(|s| s.is_object()).map(reference),
        "assignees": assignees,
        "html_url": incident.html_url,
        "created_at": raw.get("created_at"),
        // PagerDuty's REST API lists no status updates: see `with_status_updates`.
        "latest_status_update": Value::Null,
    })
}

/// A PagerDuty failure in the console's words (the Apex controller maps each code to a sentence
/// for the agent).
fn pagerduty_failed(err: &PagerdutyError) -> Reply {
    tracing::warn!(error = %err, "console: PagerDuty read failed");
    match err {
        PagerdutyError::RateLimited { retry_after, .. } => {
            let seconds = retry_after.map_or(60, |d| d.as_secs().max(1));
            error(429, "rate_limited", format!("PagerDuty's rate limit is reached; ask again in {seconds} s"))
                .with_header("Retry-After", seconds.to_string())
        }
        PagerdutyError::Throttled { wait, .. } => {
            let seconds = wait.as_secs().max(1);
            error(429, "rate_limited", format!("the bridge is at PagerDuty's rate limit; ask again in {seconds} s"))
                .with_header("Retry-After", seconds.to_string())
        }
        err => match err.class() {
            Class::Transient => error(503, "pagerduty_unavailable", "PagerDuty is not reachable right now"),
            Class::Auth => error(502, "pagerduty_unavailable", "the bridge's PagerDuty credentials were refused"),
            Class::Permanent | Class::BadInput => error(502, "pagerduty_unavailable", err.to_string()),
        },
    }
}

/// A refusal of the record posts' shape (`{"status", "message"}`) in the console's
/// (`{"error": {"code", "message"}}`).
fn in_console_words(refused: Reply) -> Reply {
    let body: Value = serde_json::from_str(&refused.body).unwrap_or_default();
    let code = match refused.status {
        401 => "unauthorized",
        403 => "forbidden",
        400 | 415 => "bad_request",
        _ => "pagerduty_unavailable",
    };
    error(refused.status, code, body.get("message").and_then(Value::as_str).unwrap_or("refused"))
}

fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
    Reply::json(status, &json!({"error": {"code": code, "message": message.into()}}))
}
