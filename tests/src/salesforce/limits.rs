//! The org's daily API limit: every authenticated REST call counts (a Composite request once),
//! past the limit 403 `REQUEST_LIMIT_EXCEEDED`; REST answers carry `Sforce-Limit-Info`, and
//! `/limits` reports what is left.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::errors::{json_resp, sf_error};
use super::sobjects::Session;
use super::state::Shared;

/// Counts the call of a session (the token endpoint has none and is not counted).
pub(super) async fn count(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if req.extensions().get::<Session>().is_some() {
        let limit = s.config.lock().unwrap().daily_api_limit;
        let mut w = s.world.lock().unwrap();
        if w.api_used >= limit {
            return json_resp(sf_error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
                None,
            ));
        }
        w.api_used += 1;
    }
    next.run(req).await
}

/// `Sforce-Limit-Info` on every answer below `/services/data`, refused ones included.
pub(super) async fn header(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let rest = req.uri().path().starts_with("/services/data");
    let mut resp = next.run(req).await;
    if rest {
        add_limit_header(&s, &mut resp);
    }
    resp
}

pub(super) fn add_limit_header(s: &Shared, r: &mut Response) {
    let used = s.world.lock().unwrap().api_used;
    let limit = s.config.lock().unwrap().daily_api_limit;
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={used}/{limit}")) {
        r.headers_mut().insert("sforce-limit-info", v);
    }
}

pub(super) async fn endpoint(State(s): State<Arc<Shared>>) -> Response {
    let max = s.config.lock().unwrap().daily_api_limit;
    let w = s.world.lock().unwrap();
    json_resp((
        StatusCode::OK,
        json!({
            "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(w.api_used)},
            "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
            "DataStorageMB": {"Max": 5, "Remaining": 5},
        }),
    ))
}
