//! Incident notes: read them, add one (as the `From` user), each new note sent as a webhook.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::server::{Params, RawBody};

use super::account::{Ctx, from_user};
use super::errors::{not_found, unknown_requester};
use super::state::{Shared, next_id, now};
use super::webhook::{self, emit};
use super::{json_of, ok};

pub(super) async fn list(State(s): State<Arc<Shared>>, p: Params) -> Response {
    let id = p.get("id");
    let w = s.world.lock().unwrap();
    if w.incident(id).is_none() {
        return not_found();
    }
    ok(StatusCode::OK, json!({"notes": w.notes.get(id).cloned().unwrap_or_default()}))
}

pub(super) async fn create(
    State(s): State<Arc<Shared>>,
    p: Params,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let (id, body) = (p.get("id"), json_of(&body));
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    let mut w = s.world.lock().unwrap();
    let Some(user) = from_user(&config, &headers) else {
        return unknown_requester();
    };
    let Some(incident) = w.incident(id).cloned() else {
        return not_found();
    };
    let nid = next_id(&mut w, 'N');
    let note = json!({
        "id": nid, "user": ctx.user_ref(user), "content": body["note"]["content"],
        "created_at": now(ctx.config), "channel": {"summary": "The PagerDuty website or APIs", "type": "web_trigger"},
    });
    w.notes.entry(id.to_string()).or_default().push(note.clone());
    let ev = webhook::note_event(&incident, &note, Some(&ctx.user_json(user)), ctx.config.clock.now());
    emit(&mut w, &config, ev);
    ok(StatusCode::CREATED, json!({ "note": note }))
}
