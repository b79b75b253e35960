//! The agent console's routes on the `sfdc-to-pd` function (docs/console-api.md): the incidents
//! linked to a record, and the open incidents of chosen services, each with its live status from
//! PagerDuty. Posted by the `PdSyncConsoleController` Apex class, authenticated and checked for
//! the org exactly as the record posts ([`super::sfdc_to_pd::authenticate`]).
//!
//! Each linked incident costs one `GET /incidents/{id}` (read at once, at most
//! [`MAX_LINKED`]); the status panel one `GET /incidents` (one page of 100). The PagerDuty
//! client's limiter and its 429 handling apply as to every other call.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::context::Context;
use super::http::{InboundRequest, Reply};
use crate::class::{Class, Classify};
use crate::pagerduty::PagerdutyError;
use crate::pagerduty::client::Incident;
use crate::telemetry::metrics;

pub const INCIDENTS_ROUTE: &str = "/salesforce/console/incidents";
pub const STATUS_ROUTE: &str = "/salesforce/console/status";

/// At most this many linked incidents of one record are read (newest links first).
pub const MAX_LINKED: usize = 20;

/// What the console asks (the common fields and each route's own, docs/console-api.md).
#[derive(Debug, Deserialize)]
struct Ask {
    schema: u32,
    org_id: String,
    #[serde(default)]
    record_id: Option<String>,
    #[serde(default)]
    service_ids: Option<Vec<String>>,
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
    let answer = match route {
        STATUS_ROUTE => status_panel(ctx, ask.service_ids.unwrap_or_default()).await,
        _ => match ask.record_id.as_deref().filter(|id| crate::salesforce::id::RecordId::new(*id).is_well_shaped()) {
            Some(record_id) => linked(ctx, record_id).await,
            None => return error(400, "bad_request", "record_id must be a 15 or 18-character Salesforce record id"),
        },
    };
    match answer {
        Ok(incidents) => {
            metrics::route_accepted(route, incidents.len());
            Reply::json(200, &json!({"incidents": incidents, "fetched_at": ctx.clock.now().to_rfc3339()}))
        }
        Err(refused) => refused,
    }
}

/// The incidents linked to `record_id`, newest first.
async fn linked(ctx: &Context, record_id: &str) -> Result<Vec<Value>, Reply> {
    let links = ctx.stores.links.incidents_for_record(record_id).await.map_err(|err| {
        tracing::error!(error = %err, "console: reading the record's links failed");
        error(503, "pagerduty_unavailable", "the bridge's store could not be read; try again")
    })?;
    let ids: Vec<String> = links.iter().rev().take(MAX_LINKED).map(|l| l.incident_id.to_string()).collect();
    metrics::api_calls("pagerduty", ids.len() as u64);
    let reads = ids.iter().map(|id| ctx.pagerduty.get_incident(id));
    let mut incidents = Vec::with_capacity(ids.len());
    for read in futures::future::join_all(reads).await {
        match read {
            Ok(incident) => incidents.push(incident),
            // Deleted or merged away in PagerDuty: not shown, the others are.
            Err(PagerdutyError::Api { status, .. }) if status.as_u16() == 404 => {}
            Err(err) => return Err(pagerduty_failed(&err)),
        }
    }
    Ok(newest_first(incidents))
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
    metrics::api_calls("pagerduty", 1);
    let ids: Vec<&str> = service_ids.iter().map(String::as_str).collect();
    let open = ctx.pagerduty.list_open_incidents(&ids).await.map_err(|err| pagerduty_failed(&err))?;
    Ok(newest_first(open))
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
        // PagerDuty's REST API lists no status updates of an incident (only a POST).
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
