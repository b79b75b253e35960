//! Webhook subscriptions: list, create (the secret is shown once, at creation), show, update,
//! delete. Active subscriptions receive the simulator's webhooks ([`super::webhook::emit`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::server::{Params, RawBody};

use super::errors::not_found;
use super::state::{Shared, next_id};
use super::{json_of, ok};

pub(super) async fn list(State(s): State<Arc<Shared>>) -> Response {
    let w = s.world.lock().unwrap();
    let subs: Vec<Value> = w.subscriptions.iter().map(hide_secret).collect();
    ok(StatusCode::OK, json!({"webhook_subscriptions": subs, "limit": 25, "offset": 0, "more": false, "total": null}))
}

pub(super) async fn create(State(s): State<Arc<Shared>>, RawBody(body): RawBody) -> Response {
    let body = json_of(&body);
    let mut w = s.world.lock().unwrap();
    let mut sub = body["webhook_subscription"].clone();
    let id = next_id(&mut w, 'S');
    let secret = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes().repeat(3))
    };
    sub["id"] = json!(id);
    sub["type"] = json!("webhook_subscription");
    sub["active"] = json!(sub["active"].as_bool().unwrap_or(true));
    sub["delivery_method"]["id"] = json!(format!("D{}", &id[1..]));
    sub["delivery_method"]["secret"] = json!(secret);
    sub["delivery_method"]["temporarily_disabled"] = json!(false);
    w.subscriptions.push(sub.clone());
    ok(StatusCode::CREATED, json!({ "webhook_subscription": sub }))
}

pub(super) async fn show(State(s): State<Arc<Shared>>, p: Params) -> Response {
    let w = s.world.lock().unwrap();
    match w.subscriptions.iter().find(|x| x["id"] == p.get("id")) {
        Some(sub) => ok(StatusCode::OK, json!({ "webhook_subscription": hide_secret(sub) })),
        None => not_found(),
    }
}

pub(super) async fn update(State(s): State<Arc<Shared>>, p: Params, RawBody(body): RawBody) -> Response {
    let body = json_of(&body);
    let mut w = s.world.lock().unwrap();
    let Some(sub) = w.subscriptions.iter_mut().find(|x| x["id"] == p.get("id")) else {
        return not_found();
    };
    if let Some(upd) = body["webhook_subscription"].as_object() {
        for (k, v) in upd {
            if k == "delivery_method" {
                // The secret cannot be changed through the API.
                for (dk, dv) in v.as_object().into_iter().flatten() {
                    if dk != "secret" {
                        sub["delivery_method"][dk] = dv.clone();
                    }
                }
            } else if k != "id" && k != "type" {
                sub[k] = v.clone();
            }
        }
    }
    ok(StatusCode::OK, json!({ "webhook_subscription": hide_secret(sub) }))
}

pub(super) async fn delete(State(s): State<Arc<Shared>>, p: Params) -> Response {
    let mut w = s.world.lock().unwrap();
    let before = w.subscriptions.len();
    w.subscriptions.retain(|x| x["id"] != p.get("id"));
    if w.subscriptions.len() == before { not_found() } else { StatusCode::NO_CONTENT.into_response() }
}

fn hide_secret(sub: &Value) -> Value {
    let mut s = sub.clone();
    s["delivery_method"]["secret"] = Value::Null;
    s
}
