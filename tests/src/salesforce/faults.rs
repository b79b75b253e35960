//! The outermost layer: reads the body once, logs every request with the status it got, and
//! injects the configured faults (503, `UNABLE_TO_LOCK_ROW`, `REQUEST_LIMIT_EXCEEDED`, slow
//! answers, dropped connections).

use std::sync::Arc;

use axum::extract::{OriginalUri, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::faults::{FaultKind, drop_connection};
use crate::server::read_body;

use super::LoggedRequest;
use super::errors::sf_error;
use super::limits::add_limit_header;
use super::state::Shared;

pub(super) async fn inject(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    // Logged as sent, before the slashes around the path were trimmed.
    let uri = req.extensions().get::<OriginalUri>().map(|u| u.0.clone()).unwrap_or_else(|| req.uri().clone());
    let (method, headers) = (req.method().clone(), req.headers().clone());
    let call_options = headers.get("sforce-call-options").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (req, body) = read_body(req).await;
    let log = |status: u16| {
        s.world.lock().unwrap().requests.push(LoggedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: headers.clone(),
            body: body.clone(),
            status,
            call_options: call_options.clone(),
        });
    };
    match s.faults.decide() {
        Some(FaultKind::Drop) => {
            log(0);
            drop_connection()
        }
        Some(FaultKind::LoseAnswer) => {
            let resp = next.run(req).await;
            log(resp.status().as_u16());
            drop_connection()
        }
        decision @ (None | Some(FaultKind::Slow(_))) => {
            if let Some(FaultKind::Slow(d)) = decision {
                tokio::time::sleep(d).await;
            }
            let resp = next.run(req).await;
            log(resp.status().as_u16());
            resp
        }
        Some(kind) => {
            let (status, body) = match kind {
                FaultKind::LockRow => sf_error(
                    StatusCode::BAD_REQUEST,
                    "UNABLE_TO_LOCK_ROW",
                    "unable to obtain exclusive access to this record or 1 records: 5005g00000LOCKEDAAA",
                    Some(&[]),
                ),
                FaultKind::RateLimited => {
                    sf_error(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", None)
                }
                _ => sf_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVER_UNAVAILABLE",
                    "Server temporarily unavailable, please try again later",
                    None,
                ),
            };
            log(status.as_u16());
            let mut r = (status, axum::Json(body)).into_response();
            add_limit_header(&s, &mut r);
            r
        }
    }
}
