//! Authentication, which PagerDuty checks before anything but the path: `Authorization: Token
//! token=...` must carry a known API key, or `Bearer ...` an unexpired app token from
//! [`super::oauth`] (401, code 2006, otherwise). An app token must also hold the scope the
//! operation requires (the spec's `x-pd-requires-scope`; 403 otherwise, as for an endpoint that
//! documents no scope).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::errors::pd_error;
use super::openapi;
use super::state::Shared;

/// The caller's token, for the rate limit (which counts per token).
#[derive(Clone)]
pub(super) struct Token(pub String);

enum Presented {
    ApiKey(String),
    Bearer(String),
}

pub(super) async fn check(State(s): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let unauthorized = || pd_error(StatusCode::UNAUTHORIZED, 2006, "Authentication failed", &[]);
    let token = match presented(req.headers()) {
        Some(Presented::ApiKey(key)) if s.config.lock().unwrap().tokens.contains(&key) => key,
        Some(Presented::Bearer(token)) => {
            let app = s.world.lock().unwrap().app_tokens.get(&token).cloned();
            let Some(app) = app.filter(|t| t.expires_at > Instant::now()) else {
                return unauthorized();
            };
            let needed = openapi::SPEC.required_scope(req.method(), req.uri().path());
            if !needed.is_some_and(|scope| app.scopes.iter().any(|s| s == scope)) {
                let why = match needed {
                    Some(scope) => format!("The token lacks the scope {scope}"),
                    None => "This endpoint does not support API scopes".to_string(),
                };
                return pd_error(StatusCode::FORBIDDEN, 2010, "Access Denied", &[why]);
            }
            token
        }
        _ => return unauthorized(),
    };
    req.extensions_mut().insert(Token(token));
    next.run(req).await
}

fn presented(headers: &HeaderMap) -> Option<Presented> {
    let v = headers.get("authorization")?.to_str().ok()?.trim();
    if let Some(token) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
        return Some(Presented::Bearer(token.trim().to_string()));
    }
    let rest = v.strip_prefix("Token ").or_else(|| v.strip_prefix("token "))?;
    Some(Presented::ApiKey(rest.trim().strip_prefix("token=")?.trim().to_string()))
}
