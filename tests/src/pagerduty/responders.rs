//! Responder requests: ask more people (or escalation policies) to help on an incident.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::server::{Params, RawBody};

use super::account::Ctx;
use super::errors::{invalid, not_found};
use super::state::{Shared, now};
use super::webhook::{self, emit};
use super::{json_of, ok};

pub(super) async fn create(State(s): State<Arc<Shared>>, p: Params, RawBody(body): RawBody) -> Response {
    let (id, body) = (p.get("id"), json_of(&body));
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    let mut w = s.world.lock().unwrap();
    let Some(incident) = w.incident(id).cloned() else {
        return not_found();
    };
    let Some(requester) = body["requester_id"].as_str().and_then(|r| ctx.user_by_id(r)) else {
        return invalid(&["Requester not found"]);
    };
    let targets = body["responder_request_targets"].clone();
    let rr = json!({
        "incident": {"id": id, "type": "incident_reference", "summary": incident["summary"], "self": incident["self"], "html_url": incident["html_url"]},
        "requester": ctx.user_ref(requester),
        "requested_at": now(ctx.config),
        "message": body["message"],
        "responder_request_targets": targets,
    });
    w.responder_requests.push(rr.clone());
    let ev = webhook::incident_event(
        "incident.responder.added",
        &incident,
        Some(&ctx.user_json(requester)),
        ctx.config.clock.now(),
    );
    emit(&mut w, &config, ev);
    ok(StatusCode::OK, json!({ "responder_request": rr }))
}
