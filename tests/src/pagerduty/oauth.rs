//! PagerDuty's token endpoint (`POST /oauth/token` of `identity.pagerduty.com`), served beside
//! the REST API: the client credentials grant issues `Bearer` tokens that expire, for the scopes
//! the client was given; an unknown client or a wrong secret is refused like the real one
//! (401 `{"error":"invalid_client"}`). Every request is counted, so tests can see the caching.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::{AppToken, Shared};

/// A Scoped OAuth client of the simulated account.
#[derive(Debug, Clone)]
pub struct PdOAuthClient {
    pub client_id: String,
    pub client_secret: String,
    /// What the app may be granted; a request for others gets only these.
    pub scopes: Vec<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

pub(super) async fn token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let config = s.config();
    {
        let mut w = s.world.lock().unwrap();
        w.token_requests += 1;
        if w.token_outage > 0 {
            w.token_outage -= 1;
            return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "try again later");
        }
    }
    if field("grant_type") != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type must be client_credentials");
    }
    let client = config.oauth_clients.iter().find(|c| {
        Some(c.client_id.as_str()) == field("client_id") && Some(c.client_secret.as_str()) == field("client_secret")
    });
    let Some(client) = client else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed");
    };
    let asked: Vec<&str> = field("scope").unwrap_or("").split_whitespace().collect();
    let account = format!("as_account-{}.{}", config.region, config.subdomain);
    if !asked.contains(&account.as_str()) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "the scope must name the account (as_account-)");
    }
    let granted: Vec<String> =
        asked.iter().filter(|a| client.scopes.iter().any(|s| s == *a)).map(|s| s.to_string()).collect();
    let mut w = s.world.lock().unwrap();
    let n = w.next_id;
    w.next_id += 1;
    let token = format!("pdus+_sim{n:06}");
    w.app_tokens.insert(
        token.clone(),
        AppToken {
            client_id: client.client_id.clone(),
            scopes: granted.clone(),
            expires_at: Instant::now() + config.token_lifetime,
        },
    );
    let scope = std::iter::once(account).chain(granted).collect::<Vec<_>>().join(" ");
    let body = json!({
        "access_token": token,
        "scope": scope,
        "token_type": "bearer",
        "expires_in": config.token_lifetime.as_secs(),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
