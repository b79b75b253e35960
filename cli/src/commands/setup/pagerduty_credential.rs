//! `syncctl setup pagerduty-credential`: stores the credential the functions call PagerDuty's
//! REST API with, in the token secret (`PAGERDUTY_TOKEN_SECRET_ID`), after proving it works.
//!
//! - `--api-key-stdin`: a REST API key, stored as `{"token": ...}`.
//! - `--client-id ID --subdomain SUB [--region us|eu] [--scopes "..."]`, the client secret on
//!   stdin: a Scoped OAuth app, stored as `{"client_id", "client_secret", "subdomain", "region",
//!   "scopes"}`. Its token is fetched first; the scopes it lacks are reported by `syncctl doctor`.
//!
//! Secrets come on stdin, never as arguments (which shell history and `ps` keep).

use std::sync::Arc;

use adapters::http::{HTTP_TIMEOUT, ReqwestTransport};
use shared::clock::SystemClock;
use shared::config::Config;
use shared::pagerduty::{PagerdutyAuth, PagerdutyClient, TokenCache};
use shared::secrets::{Credential, Secret};

/// What to store, as the operator gave it.
pub enum NewCredential {
    ApiKey(Secret),
    App { client_id: String, client_secret: Secret, subdomain: String, region: String, scopes: Option<String> },
}

impl NewCredential {
    /// The secret's JSON, in the shapes [`PagerdutyAuth::from_secret`] reads.
    pub fn to_secret_json(&self) -> String {
        match self {
            NewCredential::ApiKey(key) => serde_json::json!({"token": key.expose()}),
            NewCredential::App { client_id, client_secret, subdomain, region, scopes } => {
                let mut doc = serde_json::json!({
                    "client_id": client_id, "client_secret": client_secret.expose(),
                    "subdomain": subdomain, "region": region,
                });
                if let Some(scopes) = scopes {
                    doc["scopes"] = serde_json::json!(scopes.split_whitespace().collect::<Vec<_>>());
                }
                doc
            }
        }
        .to_string()
    }
}

/// Checks `new` against PagerDuty (an app token is fetched; the From user is looked up with it)
/// and stores it in the token secret. Returns what was stored, for the operator. Nothing is
/// stored when PagerDuty refuses it.
pub async fn store(config: &Config, sdk: &aws_config::SdkConfig, new: &NewCredential) -> Result<String, String> {
    let text = new.to_secret_json();
    let id = &config.pagerduty.token_secret_id;
    let auth = PagerdutyAuth::from_secret(&Secret::new(text.clone()), id).map_err(|e| e.to_string())?;
    let http: Arc<dyn shared::transport::Transport> = Arc::new(ReqwestTransport::new().map_err(|e| e.to_string())?);
    let tokens = TokenCache::new(http.clone(), config.pagerduty.identity_base.as_str(), Arc::new(SystemClock));
    let pd = PagerdutyClient::with_credential(
        http,
        config.pagerduty.api_base.clone(),
        Credential::Fixed(auth.clone()),
        config.pagerduty.from_email.clone(),
    )
    .with_timeout(HTTP_TIMEOUT)
    .with_token_cache(Arc::new(tokens));
    let refused = |e: shared::pagerduty::PagerdutyError| format!("{e}; nothing was stored");
    pd.warm_up().await.map_err(refused)?;
    pd.find_user_by_email(&config.pagerduty.from_email).await.map_err(refused)?;
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    sm.put_secret_value().secret_id(id).secret_string(text).send().await.map_err(|e| {
        use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
        format!(
            "could not store the credential in {id}: {}",
            e.message().unwrap_or(e.code().unwrap_or("unknown error"))
        )
    })?;
    Ok(match auth {
        PagerdutyAuth::ApiKey(_) => format!("stored a REST API key in {id}"),
        PagerdutyAuth::App(app) => format!(
            "stored Scoped OAuth client {} ({}) in {id}; its token was fetched. Run `syncctl doctor` to check its scopes against the rules",
            app.client_id,
            app.account.scope()
        ),
    })
}

/// One line from stdin, trimmed (the secret the flags say is coming).
pub fn read_secret_line(what: &str) -> Result<Secret, String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("could not read the {what} from stdin: {e}"))?;
    let line = line.trim();
    if line.is_empty() {
        return Err(format!("no {what} on stdin: pipe it in, e.g. `pbpaste | syncctl setup pagerduty-credential ...`"));
    }
    Ok(Secret::new(line))
}
