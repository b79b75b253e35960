//! PagerDuty's error answers: `{"error":{"message","code","errors"}}` with its codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// PagerDuty's error body.
pub fn pd_error(status: StatusCode, code: u32, message: &str, errors: &[String]) -> Response {
    let mut err = json!({"message": message, "code": code});
    if !errors.is_empty() {
        err["errors"] = json!(errors);
    }
    (status, axum::Json(json!({ "error": err }))).into_response()
}

/// 400, code 2001 Invalid Input Provided.
pub(super) fn invalid(errors: &[&str]) -> Response {
    let errors: Vec<String> = errors.iter().map(|s| s.to_string()).collect();
    pd_error(StatusCode::BAD_REQUEST, 2001, "Invalid Input Provided", &errors)
}

/// 404, code 2100.
pub(super) fn not_found() -> Response {
    pd_error(StatusCode::NOT_FOUND, 2100, "Not Found", &[])
}

/// Valid per the spec but outside what the simulator models (the router's fallback).
pub(super) async fn not_simulated() -> Response {
    pd_error(StatusCode::NOT_FOUND, 2100, "Not Found", &["This endpoint is not simulated".into()])
}

/// The `From` header names nobody on the account.
pub(super) fn unknown_requester() -> Response {
    // HTTP 400 `{"error":{"message":"Requester User Not Found","code":1008}}` (dropbox/pygerduty#64).
    pd_error(StatusCode::BAD_REQUEST, 1008, "Requester User Not Found", &[])
}
