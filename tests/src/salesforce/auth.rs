//! The session check of every REST call (`/services/data/vNN.N/...`): a path outside the API or
//! with a malformed version is 404 whoever asks; otherwise the bearer token must be a live
//! session (401 `INVALID_SESSION_ID`). The token endpoint needs no session.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::TOKEN_PATH;
use super::errors::{json_resp, not_found_err, sf_error};
use super::sobjects::Session;
use super::state::Shared;

pub(super) async fn session(State(s): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    if req.uri().path() == TOKEN_PATH && req.method() == Method::POST {
        return next.run(req).await;
    }
    let Some(version) = api_version(req.uri().path()) else {
        return json_resp(not_found_err());
    };
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("OAuth ")))
        .map(|t| t.trim().to_string());
    let username = {
        let w = s.world.lock().unwrap();
        token.and_then(|t| w.tokens.get(&t).filter(|tk| tk.expires > Instant::now()).map(|tk| tk.username.clone()))
    };
    let Some(username) = username else {
        return json_resp(sf_error(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid", None));
    };
    let call_options = req.headers().get("sforce-call-options").and_then(|v| v.to_str().ok()).map(str::to_string);
    req.extensions_mut().insert(Session { username, call_options, version });
    next.run(req).await
}

/// `v62.0` in `/services/data/v62.0/...`, if the path is a REST call with a well-formed version.
fn api_version(path: &str) -> Option<String> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["services", "data", version, ..] = segs.as_slice() else {
        return None;
    };
    version.strip_prefix('v').and_then(|v| v.parse::<f64>().ok()).map(|_| version.to_string())
}
