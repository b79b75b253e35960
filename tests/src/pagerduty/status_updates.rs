//! Status updates: publish one (as the `From` user), sent as an `incident.status_update_published`
//! webhook. PagerDuty's REST API lists none, and neither does the simulator's: tests read them
//! with [`super::PagerdutySim::status_updates`].

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
    let uid = next_id(&mut w, 'S');
    let mut update = json!({
        "id": uid, "message": body["message"], "created_at": now(ctx.config), "sender": ctx.user_ref(user),
    });
    for key in ["subject", "html_message"] {
        if body[key].is_string() {
            update[key] = body[key].clone();
        }
    }
    w.status_updates.entry(id.to_string()).or_default().push(update.clone());
    let ev = webhook::status_update_event(&incident, &update, Some(&ctx.user_json(user)), ctx.config.clock.now());
    emit(&mut w, &config, ev);
    ok(StatusCode::OK, json!({ "status_update": update }))
}
