//! Requests checked against PagerDuty's OpenAPI document ([`super::openapi`]): a path the API
//! does not have is 404 before authentication; once authenticated and counted, every request is
//! validated (method, required headers, body schema) and refused the way PagerDuty refuses it.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::server::RawBody;

use super::errors::{invalid, not_found, pd_error};
use super::openapi;

/// Outside authentication: PagerDuty answers 404 for unknown paths whoever asks.
pub(super) async fn known_path(req: Request, next: Next) -> Response {
    if openapi::SPEC.match_path(req.uri().path()).is_none() {
        return not_found();
    }
    next.run(req).await
}

/// Inside the rate limit: refused requests count, and their answers carry the rate headers.
pub(super) async fn against_spec(RawBody(body): RawBody, req: Request, next: Next) -> Response {
    match openapi::SPEC.validate(req.method(), req.uri().path(), req.headers(), &body) {
        Err(v) => violation_response(v),
        Ok(()) => next.run(req).await,
    }
}

fn violation_response(v: openapi::Violation) -> Response {
    use openapi::Violation::*;
    match v {
        UnknownPath => not_found(),
        MethodNotAllowed => pd_error(StatusCode::METHOD_NOT_ALLOWED, 2100, "Method Not Allowed", &[]),
        // As PagerDuty answers (go-pagerduty#32, pdpyras#78): HTTP 400, code 2016, reason in `message`.
        MissingHeader(name) if name.eq_ignore_ascii_case("from") => pd_error(
            StatusCode::BAD_REQUEST,
            2016,
            "You must specify a user's email address in the \"From\" header to perform this action",
            &[],
        ),
        MissingHeader(name) if name.eq_ignore_ascii_case("content-type") => invalid(&["params must be a Hash"]),
        MissingHeader(name) => invalid(&[&format!("The {name} header is required")]),
        BadHeader { name, value } if name.eq_ignore_ascii_case("accept") => {
            invalid(&[&format!("Accept header {value:?} is not supported; use {}", openapi::ACCEPT_V2)])
        }
        // Without a JSON Content-Type PagerDuty cannot parse the body and answers with its generic
        // "params must be a Hash" (go-pagerduty#89).
        BadHeader { name, .. } if name.eq_ignore_ascii_case("content-type") => invalid(&["params must be a Hash"]),
        BadHeader { name, value } => invalid(&[&format!("The {name} header value {value:?} is invalid")]),
        InvalidBody(errors) => pd_error(StatusCode::BAD_REQUEST, 2001, "Invalid Input Provided", &errors),
    }
}
