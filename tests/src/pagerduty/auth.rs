//! Authentication, which PagerDuty checks before anything but the path: `Authorization: Token
//! token=...` must carry a known token (401, code 2006, otherwise).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::errors::pd_error;
use super::state::Shared;

/// The caller's token, for the rate limit (which counts per token).
#[derive(Clone)]
pub(super) struct Token(pub String);

pub(super) async fn check(State(s): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let tokens = s.config.lock().unwrap().tokens.clone();
    let Some(token) = token_of(req.headers()).filter(|t| tokens.contains(t)) else {
        return pd_error(StatusCode::UNAUTHORIZED, 2006, "Authentication failed", &[]);
    };
    req.extensions_mut().insert(Token(token));
    next.run(req).await
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?.trim();
    let rest = v.strip_prefix("Token ").or_else(|| v.strip_prefix("token "))?;
    Some(rest.trim().strip_prefix("token=")?.trim().to_string())
}
