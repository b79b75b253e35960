//! Incidents: list (filters: key, statuses, services, the since/until creation range; paging), create (dedup by `incident_key` among open incidents),
//! show, update (status, priority, urgency, title, reassignment), each change sent as a webhook.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::server::{Params, RawBody};

use super::account::{Ctx, from_user};
use super::errors::{invalid, not_found, unknown_requester};
use super::state::{Shared, World, next_id, now};
use super::webhook::{self, emit};
use super::{json_of, ok, query_params};

pub(super) async fn list(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let q = query_params(q.as_deref());
    let w = s.world.lock().unwrap();
    let key = q.iter().find(|(k, _)| k == "incident_key").map(|(_, v)| v.clone());
    let statuses: Vec<&String> =
        q.iter().filter(|(k, _)| k == "statuses[]" || k == "statuses").map(|(_, v)| v).collect();
    let services: Vec<&String> =
        q.iter().filter(|(k, _)| k == "service_ids[]" || k == "service_ids").map(|(_, v)| v).collect();
    let limit: usize = q.iter().find(|(k, _)| k == "limit").and_then(|(_, v)| v.parse().ok()).unwrap_or(25).min(100);
    let offset: usize = q.iter().find(|(k, _)| k == "offset").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    if offset + limit > super::log_entries::MAX_PAGED {
        return super::errors::invalid(&["Offset plus limit must not exceed 10000; narrow the since/until range"]);
    }
    let total = q.iter().any(|(k, v)| k == "total" && v == "true");
    // PagerDuty's date range bounds when an incident was created (ignored with `date_range=all`
    // and when listing by incident key).
    let when = |name: &str| {
        q.iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| chrono::DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.to_utc())
    };
    let all_dates = key.is_some() || q.iter().any(|(k, v)| k == "date_range" && v == "all");
    let (since, until) = if all_dates { (None, None) } else { (when("since"), when("until")) };
    let created = |i: &Value| i["created_at"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let in_range = |i: &&Value| {
        let Some(at) = created(i) else { return true };
        since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u)
    };
    let candidates: Box<dyn Iterator<Item = &Value>> = match &key {
        Some(k) => Box::new(w.incidents_with_key(k)),
        None => Box::new(w.incidents.iter()),
    };
    let all: Vec<Value> = candidates
        .filter(in_range)
        .filter(|i| statuses.is_empty() || statuses.iter().any(|st| i["status"] == st.as_str()))
        .filter(|i| services.is_empty() || services.iter().any(|sv| i["service"]["id"] == sv.as_str()))
        .cloned()
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
    ok(
        StatusCode::OK,
        json!({"incidents": page, "limit": limit, "offset": offset, "more": offset + limit < all.len(),
            "total": total.then_some(all.len())}),
    )
}

pub(super) async fn create(State(s): State<Arc<Shared>>, headers: HeaderMap, RawBody(body): RawBody) -> Response {
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    let mut w = s.world.lock().unwrap();
    create_incident(&ctx, &mut w, &headers, &json_of(&body))
}

pub(super) async fn show(State(s): State<Arc<Shared>>, p: Params) -> Response {
    match s.world.lock().unwrap().incident(p.get("id")) {
        Some(i) => ok(StatusCode::OK, json!({ "incident": i })),
        None => not_found(),
    }
}

pub(super) async fn update(
    State(s): State<Arc<Shared>>,
    p: Params,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    let mut w = s.world.lock().unwrap();
    update_incident(&ctx, &mut w, &headers, p.get("id"), &json_of(&body))
}

fn is_open(i: &Value) -> bool {
    i["status"] != "resolved"
}

fn create_incident(ctx: &Ctx, w: &mut World, headers: &HeaderMap, body: &Value) -> Response {
    let Some(user) = from_user(ctx.config, headers) else {
        return unknown_requester();
    };
    let inc = &body["incident"];
    let Some(service) = inc["service"]["id"].as_str().and_then(|id| ctx.config.services.iter().find(|x| x.id == id))
    else {
        return invalid(&["Service not found"]);
    };
    let key = inc["incident_key"].as_str().map(str::to_string);
    if let Some(k) = &key
        && w.incidents_with_key(k).any(|i| is_open(i) && i["service"]["id"] == service.id.as_str())
    {
        return invalid(&["Open incident with matching dedup key already exists on this service"]);
    }
    let priority = match inc["priority"]["id"].as_str() {
        Some(pid) => match ctx.config.priorities.iter().find(|p| p.id == pid) {
            Some(p) => ctx.priority_json(p),
            None => return invalid(&["Priority not found"]),
        },
        None => Value::Null,
    };
    let ep_id = inc["escalation_policy"]["id"].as_str().unwrap_or(&service.escalation_policy_id).to_string();
    let Some(ep) = ctx.ep(&ep_id) else {
        return invalid(&["Escalation policy not found"]);
    };
    let assignments: Vec<Value> = match inc["assignments"].as_array() {
        Some(list) if !list.is_empty() => {
            let mut out = Vec::new();
            for a in list {
                match a["assignee"]["id"].as_str().and_then(|id| ctx.user_by_id(id)) {
                    Some(u) => out.push(json!({"at": now(ctx.config), "assignee": ctx.user_ref(u)})),
                    None => return invalid(&["Assignee not found"]),
                }
            }
            out
        }
        _ => ctx.assignments_for_ep(ep),
    };
    let id = {
        let n = next_id(w, 'Q');
        format!("Q{}SIM{}", &n[1..], &n[4..])
    };
    let number = w.next_number;
    w.next_number += 1;
    let title = inc["title"].as_str().unwrap_or_default().to_string();
    let t = now(ctx.config);
    let incident = json!({
        "id": id,
        "type": "incident",
        "summary": format!("[#{number}] {title}"),
        "self": format!("{}/incidents/{id}", ctx.base),
        "html_url": format!("{}/incidents/{id}", ctx.html),
        "incident_number": number,
        "title": title,
        "description": title,
        "created_at": t,
        "updated_at": t,
        "last_status_change_at": t,
        "resolved_at": null,
        "status": "triggered",
        "incident_key": key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
        "service": ctx.service_ref(service),
        "assignments": assignments,
        "assigned_via": "escalation_policy",
        "acknowledgements": [],
        "last_status_change_by": ctx.service_ref(service),
        "escalation_policy": ctx.ep_ref(ep),
        "teams": [],
        "priority": priority,
        "urgency": inc["urgency"].as_str().unwrap_or("high"),
        "body": {"type": "incident_body", "details": inc["body"].get("details").cloned().unwrap_or(json!(""))},
        "conference_bridge": inc.get("conference_bridge").cloned().unwrap_or(Value::Null),
        "resolve_reason": null,
        "alert_counts": {"all": 0, "triggered": 0, "resolved": 0},
        "is_mergeable": true,
        "incident_type": {"name": "incident_default"},
    });
    w.push_incident(incident.clone());
    let ev =
        webhook::incident_event("incident.triggered", &incident, Some(&ctx.user_json(user)), ctx.config.clock.now());
    emit(w, ctx.config, ev);
    ok(StatusCode::CREATED, json!({ "incident": incident }))
}

fn update_incident(ctx: &Ctx, w: &mut World, headers: &HeaderMap, id: &str, body: &Value) -> Response {
    let Some(user) = from_user(ctx.config, headers) else {
        return unknown_requester();
    };
    let Some(pos) = w.incident_pos(id) else {
        return not_found();
    };
    let upd = &body["incident"];
    let mut inc = w.incidents[pos].clone();
    let mut events = Vec::new();
    let t = now(ctx.config);
    if let Some(status) = upd["status"].as_str()
        && status != inc["status"]
    {
        if inc["status"] == "resolved" {
            // Resolved is terminal for the REST API in this simulator (reopening is an opt-in account
            // feature): PagerDuty refuses the transition.
            return invalid(&["Incident Already Resolved"]);
        }
        match status {
            "acknowledged" => {
                inc["acknowledgements"] = json!([{"at": t, "acknowledger": ctx.user_ref(user)}]);
                events.push("incident.acknowledged");
            }
            "resolved" => {
                inc["resolved_at"] = json!(t);
                inc["assignments"] = json!([]);
                if let Some(r) = upd["resolution"].as_str() {
                    inc["resolve_reason"] = json!({"type": "resolve_reason", "incident": null, "summary": r});
                }
                events.push("incident.resolved");
            }
            "triggered" => {
                inc["acknowledgements"] = json!([]);
                events.push("incident.unacknowledged");
            }
            _ => {}
        }
        inc["status"] = json!(status);
        inc["last_status_change_at"] = json!(t);
        inc["last_status_change_by"] = ctx.user_ref(user);
    }
    if upd.get("priority").is_some() {
        let new = match upd["priority"]["id"].as_str() {
            Some(pid) => match ctx.config.priorities.iter().find(|p| p.id == pid) {
                Some(p) => ctx.priority_json(p),
                None => return invalid(&["Priority not found"]),
            },
            None => Value::Null,
        };
        if new["id"] != inc["priority"]["id"] {
            inc["priority"] = new;
            events.push("incident.priority_updated");
        }
    }
    if let Some(u) = upd["urgency"].as_str()
        && u != inc["urgency"]
    {
        inc["urgency"] = json!(u);
    }
    if let Some(title) = upd["title"].as_str() {
        inc["title"] = json!(title);
        inc["summary"] = json!(format!("[#{}] {title}", inc["incident_number"]));
    }
    if let Some(ep_id) = upd["escalation_policy"]["id"].as_str() {
        let Some(ep) = ctx.ep(ep_id) else {
            return invalid(&["Escalation policy not found"]);
        };
        inc["escalation_policy"] = ctx.ep_ref(ep);
        inc["assignments"] = json!(ctx.assignments_for_ep(ep));
        events.push("incident.reassigned");
    } else if let Some(list) = upd["assignments"].as_array() {
        let mut out = Vec::new();
        for a in list {
            match a["assignee"]["id"].as_str().and_then(|i| ctx.user_by_id(i)) {
                Some(u) => out.push(json!({"at": t, "assignee": ctx.user_ref(u)})),
                None => return invalid(&["Assignee not found"]),
            }
        }
        inc["assignments"] = json!(out);
        events.push("incident.reassigned");
    }
    if upd.get("conference_bridge").is_some() {
        inc["conference_bridge"] = upd["conference_bridge"].clone();
        events.push("incident.conference_bridge.updated");
    }
    if upd.get("escalation_level").is_some() {
        events.push("incident.escalated");
    }
    inc["updated_at"] = json!(t);
    w.incidents[pos] = inc.clone();
    let agent = ctx.user_json(user);
    for e in events {
        let ev = webhook::incident_event(e, &inc, Some(&agent), ctx.config.clock.now());
        emit(w, ctx.config, ev);
    }
    ok(StatusCode::OK, json!({ "incident": inc }))
}
