//! The outermost layer: reads the body once, logs every request with the status it got, and
//! injects the configured faults (500, 429 with headers, slow answers, dropped connections).

use std::sync::Arc;

use axum::extract::{OriginalUri, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::faults::{FaultKind, drop_connection};
use crate::server::read_body;

use super::LoggedRequest;
use super::errors::pd_error;
use super::rate_limit::{rate_limited, set_rate_headers};
use super::state::Shared;

pub(super) async fn inject(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    // Logged as sent, before the slashes around the path were trimmed.
    let uri = req.extensions().get::<OriginalUri>().map(|u| u.0.clone()).unwrap_or_else(|| req.uri().clone());
    let (method, headers) = (req.method().clone(), req.headers().clone());
    let (req, body) = read_body(req).await;
    let log = |status: u16| {
        s.world.lock().unwrap().requests.push(LoggedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: headers.clone(),
            body: body.clone(),
            status,
        });
    };
    match s.faults.decide() {
        Some(FaultKind::LoseAnswer) => {
            let resp = next.run(req).await;
            log(resp.status().as_u16());
            drop_connection()
        }
        Some(FaultKind::Drop) => {
            log(0);
            drop_connection()
        }
        Some(FaultKind::ServerError) | Some(FaultKind::LockRow) => {
            log(500);
            pd_error(StatusCode::INTERNAL_SERVER_ERROR, 2000, "Internal Error", &[])
        }
        Some(FaultKind::RateLimited) => {
            let limit = s.config().rate_limit;
            let mut r = rate_limited();
            set_rate_headers(&mut r, limit.requests, 0, limit.window.as_secs().max(1));
            log(429);
            r
        }
        slow => {
            if let Some(FaultKind::Slow(d)) = slow {
                tokio::time::sleep(d).await;
            }
            let resp = next.run(req).await;
            log(resp.status().as_u16());
            resp
        }
    }
}
