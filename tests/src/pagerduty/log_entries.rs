//! The incident log (`GET /log_entries`): every webhook event the simulator emits is also an
//! entry of its incident's log (a note an `annotate_log_entry`, an acknowledgement an
//! `acknowledge_log_entry`, ...), as PagerDuty logs each change it notifies. Listed newest first;
//! `since`/`until` bound when the entry was written.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::errors::invalid;
use super::state::{Shared, World, next_id};
use super::{ok, query_params};

/// The furthest classic pagination reaches (every list of the simulator).
pub(super) const MAX_PAGED: usize = 10_000;

/// The log entry type of a webhook event type (none for the events PagerDuty logs otherwise).
fn entry_type(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "incident.triggered" => "trigger_log_entry",
        "incident.acknowledged" => "acknowledge_log_entry",
        "incident.unacknowledged" => "unacknowledge_log_entry",
        "incident.resolved" => "resolve_log_entry",
        "incident.annotated" => "annotate_log_entry",
        "incident.reassigned" => "assign_log_entry",
        "incident.escalated" => "escalate_log_entry",
        "incident.delegated" => "delegate_log_entry",
        _ => return None,
    })
}

/// Logs the change `envelope` (a webhook event) notifies.
pub(super) fn log(w: &mut World, envelope: &Value) {
    let event = &envelope["event"];
    let Some(kind) = event["event_type"].as_str().and_then(entry_type) else { return };
    let data = &event["data"];
    // A note's data names its incident; an incident event's data is the incident.
    let incident = if data["type"] == "incident_note" { &data["incident"] } else { data };
    let at = event["occurred_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc().to_rfc3339_opts(SecondsFormat::Secs, true));
    let id = next_id(w, 'R');
    w.log_entries.push(json!({
        "id": id,
        "type": kind,
        "summary": format!("{kind} on {}", incident["id"].as_str().unwrap_or_default()),
        "created_at": at,
        "agent": event["agent"],
        "channel": {"type": "web_trigger", "summary": "The PagerDuty website or APIs"},
        "incident": {"id": incident["id"], "type": "incident_reference",
            "summary": incident["summary"], "html_url": incident["html_url"]},
        "service": incident["service"],
    }));
}

/// `n` entries of an account's other incidents, spread evenly over `since..until` (a busy
/// account's log, without emitting their webhooks).
pub(super) fn busy(w: &mut World, n: usize, since: DateTime<Utc>, until: DateTime<Utc>) {
    let span = (until - since).num_milliseconds().max(1);
    for i in 0..n {
        let at = since + chrono::Duration::milliseconds(span * i as i64 / n as i64);
        let id = next_id(w, 'R');
        w.log_entries.push(json!({
            "id": id,
            "type": "notify_log_entry",
            "summary": "Notified a responder",
            "created_at": at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "agent": {"id": "PSVCBUSY", "type": "service_reference"},
            "channel": {"type": "auto"},
            "incident": {"id": format!("QBUSY{}", i % 97), "type": "incident_reference"},
        }));
    }
}

pub(super) async fn list(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let q = query_params(q.as_deref());
    let param = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let when = |name: &str| param(name).and_then(|v| DateTime::parse_from_rfc3339(v).ok()).map(|t| t.to_utc());
    let (since, until) = (when("since"), when("until"));
    let limit: usize = param("limit").and_then(|v| v.parse().ok()).unwrap_or(25).min(100);
    let offset: usize = param("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    // Classic pagination ends at offset + limit = 10,000 (what PagerDuty's own client library,
    // pdpyras, stops at: "exceeds the maximum permitted by the API (10000)").
    if offset + limit > MAX_PAGED {
        return invalid(&["Offset plus limit must not exceed 10000; narrow the since/until range"]);
    }
    let w = s.world.lock().unwrap();
    let written = |e: &Value| e["created_at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok());
    let all: Vec<&Value> = w
        .log_entries
        .iter()
        .rev()
        .filter(|e| written(e).is_some_and(|at| since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u)))
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(limit).map(|e| (*e).clone()).collect();
    ok(
        StatusCode::OK,
        json!({"log_entries": page, "limit": limit, "offset": offset, "more": offset + limit < all.len(),
            "total": (param("total") == Some("true")).then_some(all.len())}),
    )
}
