//! Salesforce's REST error array (`[{"message","errorCode","fields"}]`) and the outcome of one
//! operation, which the REST endpoints and Composite subrequests both answer with.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Salesforce's REST error array.
pub fn sf_error(status: StatusCode, code: &str, message: &str, fields: Option<&[&str]>) -> (StatusCode, Value) {
    let mut e = json!({"message": message, "errorCode": code});
    if let Some(f) = fields {
        e["fields"] = json!(f);
    }
    (status, json!([e]))
}

pub(super) fn not_found_err() -> (StatusCode, Value) {
    sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", None)
}

/// What Salesforce answers for a path or method it does not have (the router's fallback).
pub(super) async fn not_found() -> Response {
    json_resp(not_found_err())
}

pub(super) fn json_resp((status, body): (StatusCode, Value)) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Outcome of one sObject operation (also used for composite subrequests).
pub(super) struct Outcome {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    pub(super) location: Option<String>,
}

pub(super) fn err(e: (StatusCode, Value)) -> Outcome {
    Outcome { status: e.0, body: e.1, location: None }
}

pub(super) fn outcome_response(o: Outcome) -> Response {
    let mut r = if o.status == StatusCode::NO_CONTENT {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (o.status, axum::Json(o.body)).into_response()
    };
    if let Some(loc) = o.location
        && let Ok(v) = HeaderValue::from_str(&loc)
    {
        r.headers_mut().insert("location", v);
    }
    r
}

/// axum's `get` also answers HEAD; the simulator has never modelled HEAD, which stays `NOT_FOUND`.
pub(super) async fn no_head(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.method() == axum::http::Method::HEAD {
        return json_resp(not_found_err());
    }
    next.run(req).await
}
