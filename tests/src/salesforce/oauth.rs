//! The OAuth 2.0 JWT bearer token endpoint: verifies the assertion's RS256 signature with the
//! connected app's certificate, then its claims, and answers with Salesforce's own error
//! descriptions; a good assertion gets a session ([`super::state::issue`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use crate::server::RawBody;

use super::state::{Shared, issue, user_id_for};

#[derive(serde::Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    exp: Option<i64>,
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

pub(super) async fn token(State(s): State<Arc<Shared>>, RawBody(body): RawBody) -> Response {
    let s = &*s;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("unsupported_grant_type", "grant type not supported");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_grant", "invalid assertion");
    };
    let config = s.config.lock().unwrap().clone();
    let key = match public_key_pem(&config.certificate_pem)
        .and_then(|pem| jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).ok())
    {
        Some(k) => k,
        None => return oauth_error("invalid_grant", "invalid assertion"),
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // We check the claims ourselves to answer with Salesforce's specific descriptions.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = match jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
        Ok(d) => d.claims,
        Err(_) => return oauth_error("invalid_grant", "invalid assertion"),
    };
    if claims.iss.as_deref() != Some(config.consumer_key.as_str()) {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    // As Salesforce: the org's login host (`https://login.salesforce.com` by default), not the
    // URL the token was requested from (a My Domain, the simulator's own address).
    let accepted = |a: &str| a.trim_end_matches('/') == config.login_url.trim_end_matches('/');
    let aud_ok = match &claims.aud {
        Some(Value::String(a)) => accepted(a),
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str().is_some_and(accepted)),
        _ => false,
    };
    if !aud_ok {
        return oauth_error("invalid_grant", "audience is invalid");
    }
    let now = Utc::now().timestamp();
    match claims.exp {
        None => return oauth_error("invalid_grant", "invalid assertion"),
        Some(exp) if exp <= now => return oauth_error("invalid_grant", "expired authorization code"),
        Some(exp) if exp - now > config.max_assertion_lifetime.as_secs() as i64 => {
            return oauth_error("invalid_grant", "invalid assertion");
        }
        _ => {}
    }
    let Some(username) = claims.sub.filter(|u| config.usernames.contains(u)) else {
        return oauth_error("invalid_grant", "user hasn't approved this consumer");
    };
    let token = issue(s, &username, config.token_ttl);
    (
        StatusCode::OK,
        axum::Json(json!({
            "access_token": token,
            "scope": "api",
            "instance_url": s.base_url,
            "id": format!("{}/id/{}/{}", config.login_url, config.org_id, user_id_for(&username)),
            "token_type": "Bearer",
        })),
    )
        .into_response()
}

/// The public key PEM of a certificate PEM (or the PEM itself if it already is a public key).
fn public_key_pem(pem: &str) -> Option<String> {
    use x509_cert::der::{DecodePem, EncodePem, pem::LineEnding};
    if pem.contains("BEGIN PUBLIC KEY") || pem.contains("BEGIN RSA PUBLIC KEY") {
        return Some(pem.to_string());
    }
    let cert = x509_cert::Certificate::from_pem(pem.trim()).ok()?;
    cert.tbs_certificate().subject_public_key_info().to_pem(LineEnding::LF).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::test_keys;

    #[test]
    fn certificate_yields_the_committed_public_key() {
        let keys = test_keys();
        let from_cert = public_key_pem(keys.certificate_pem).expect("the test certificate parses");
        assert_eq!(from_cert.trim(), keys.public_key_pem.trim());
    }
}
