//! PagerDuty scoped OAuth app tokens, the alternative to a REST API key.
//!
//! The token secret holds either an API key (`{"token": "..."}` or the bare key) or a Scoped OAuth
//! client (`{"client_id", "client_secret", "subdomain", "region", "scopes"}`): [`PagerdutyAuth`]
//! tells them apart by shape. An app token comes from PagerDuty's client credentials request
//! (`POST https://identity.pagerduty.com/oauth/token`, form-encoded, the account named by the
//! `as_account-{region}.{subdomain}` scope) and is sent as `Authorization: Bearer`.
//!
//! [`TokenCache`] keeps one token per process: refreshed [`REFRESH_MARGIN`] before the
//! `expires_in` the answer gives, replaced once when the REST API answers 401, and fetched by one
//! caller at a time (the others wait for its answer instead of asking too).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::class::{Class, Classify};
use crate::clock::Clock;
use crate::config::PagerdutyRegion;
use crate::rules::ActionKind;
use crate::secrets::{Secret, SecretsError};
use crate::transport::Transport;

/// PagerDuty's token endpoint host for both regions: the region is named in the
/// `as_account-` scope, not by the host.
pub const DEFAULT_IDENTITY_BASE: &str = "https://identity.pagerduty.com";
/// A token is replaced this long before it expires, so that no call starts with one that dies
/// on the way (a call takes seconds; PagerDuty's tokens live for days).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// How long the token request may take by default (as long as a REST call).
const FETCH_TIMEOUT: Duration = super::client::DEFAULT_TIMEOUT;

/// The OAuth client's id (not a secret; named in errors so an operator knows which app).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(pub String);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One PagerDuty API scope, such as `incidents.write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(pub &'static str);

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

pub const INCIDENTS_READ: Scope = Scope("incidents.read");
pub const INCIDENTS_WRITE: Scope = Scope("incidents.write");
pub const PRIORITIES_READ: Scope = Scope("priorities.read");
pub const USERS_READ: Scope = Scope("users.read");
pub const WORKFLOW_INSTANCES_WRITE: Scope = Scope("incident_workflows:instances.write");
pub const SUBSCRIPTIONS_READ: Scope = Scope("webhook_subscriptions.read");
pub const SUBSCRIPTIONS_WRITE: Scope = Scope("webhook_subscriptions.write");

/// What every function needs whatever the rules say: the incident and its notes for webhooks,
/// the From user's id, the log for reconciliation, the subscription the watchdog re-enables.
pub const BASE_SCOPES: &[Scope] = &[INCIDENTS_READ, USERS_READ, SUBSCRIPTIONS_READ, SUBSCRIPTIONS_WRITE];

/// Requested when the secret names no scopes: everything the bridge may call.
pub const DEFAULT_SCOPES: &[Scope] = &[
    INCIDENTS_READ,
    INCIDENTS_WRITE,
    PRIORITIES_READ,
    USERS_READ,
    WORKFLOW_INSTANCES_WRITE,
    SUBSCRIPTIONS_READ,
    SUBSCRIPTIONS_WRITE,
];

/// The scopes an action's calls need, as the OpenAPI document's `x-pd-requires-scope` gives
/// them. `None`: PagerDuty documents no scope for the endpoint (automation actions), so an app
/// token may be refused with 403; use an API key for rules that run them.
pub fn scopes_for(action: ActionKind) -> Option<&'static [Scope]> {
    use ActionKind::*;
    Some(match action {
        // The incident_key lookup after a duplicate, and priorities given by name.
        CreateIncident => &[INCIDENTS_WRITE, INCIDENTS_READ, PRIORITIES_READ],
        SetPriority => &[INCIDENTS_WRITE, PRIORITIES_READ],
        Acknowledge | Resolve | SetUrgency | Reassign | AddNote | PublishStatusUpdate | SetCustomFields => {
            &[INCIDENTS_WRITE]
        }
        // The requester is the From user, looked up by email.
        AddResponders => &[INCIDENTS_WRITE, USERS_READ],
        RunIncidentWorkflow => &[WORKFLOW_INSTANCES_WRITE],
        RunAutomationAction => return None,
        // Salesforce-side actions read the incident (and a trimmed note) from PagerDuty.
        SetFields | CreateRecord | AddCaseComment => &[INCIDENTS_READ],
    })
}

/// The scopes `granted` lacks for the bridge and for `actions` (the rules' actions), each with
/// who needs it, and the actions PagerDuty documents no scope for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeReport {
    /// Scope → what needs it (`the bridge` or action names), in scope order.
    pub missing: Vec<(Scope, Vec<&'static str>)>,
    pub unsupported: Vec<ActionKind>,
}

impl ScopeReport {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unsupported.is_empty()
    }
}

/// Compares the granted scopes with what the bridge and `actions` need ([`BASE_SCOPES`],
/// [`scopes_for`]).
pub fn check_scopes(granted: &[String], actions: impl IntoIterator<Item = ActionKind>) -> ScopeReport {
    let mut needs: std::collections::BTreeMap<Scope, Vec<&'static str>> = Default::default();
    for scope in BASE_SCOPES {
        needs.entry(*scope).or_default().push("the bridge");
    }
    let mut unsupported = Vec::new();
    for action in actions {
        match scopes_for(action) {
            Some(scopes) => {
                for scope in scopes {
                    let by = needs.entry(*scope).or_default();
                    if !by.contains(&action.name()) {
                        by.push(action.name());
                    }
                }
            }
            None if !unsupported.contains(&action) => unsupported.push(action),
            None => {}
        }
    }
    let missing = needs.into_iter().filter(|(scope, _)| !granted.iter().any(|g| g == scope.0)).collect();
    ScopeReport { missing, unsupported }
}

/// The PagerDuty account a token is requested for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub region: PagerdutyRegion,
    /// `acme` of `acme.pagerduty.com`.
    pub subdomain: String,
}

impl Account {
    /// `as_account-us.acme`.
    pub fn scope(&self) -> String {
        let region = match self.region {
            PagerdutyRegion::Us => "us",
            PagerdutyRegion::Eu => "eu",
        };
        format!("as_account-{region}.{}", self.subdomain)
    }
}

/// A Scoped OAuth client as the secret stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCredentials {
    pub client_id: ClientId,
    pub client_secret: Secret,
    pub account: Account,
    /// Scopes requested besides `as_account-` ([`DEFAULT_SCOPES`] unless the secret names some).
    pub scopes: Vec<String>,
}

impl AppCredentials {
    /// The `scope` form field: the account first, then the API scopes.
    pub fn scope_param(&self) -> String {
        std::iter::once(self.account.scope()).chain(self.scopes.iter().cloned()).collect::<Vec<_>>().join(" ")
    }
}

/// Which kind of credential the token secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagerdutyAuth {
    /// A REST API key: `Authorization: Token token=...`.
    ApiKey(Secret),
    /// A Scoped OAuth client: its app token goes in `Authorization: Bearer ...`.
    App(AppCredentials),
}

#[derive(Deserialize)]
struct AppSecret {
    client_id: String,
    client_secret: String,
    subdomain: String,
    #[serde(default)]
    region: Option<String>,
    /// A list, or one space-separated string as PagerDuty's form shows them.
    #[serde(default)]
    scopes: Option<ScopesField>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopesField {
    List(Vec<String>),
    Text(String),
}

impl PagerdutyAuth {
    /// The kind, for `syncctl doctor`.
    pub fn kind(&self) -> &'static str {
        match self {
            PagerdutyAuth::ApiKey(_) => "REST API key",
            PagerdutyAuth::App(_) => "Scoped OAuth app",
        }
    }

    /// The credential in the text of secret `id` (a [`crate::secrets::credential::Parse`]): the
    /// bare key, `{"token"}`, or `{"client_id", "client_secret", "subdomain", "region"?,
    /// "scopes"?}`. Errors name the missing field, never a value.
    pub fn from_secret(raw: &Secret, id: &str) -> Result<Self, SecretsError> {
        let malformed = |reason: String| SecretsError::Malformed { id: id.to_string(), reason };
        let text = raw.expose().trim();
        if !text.starts_with('{') {
            if text.is_empty() || text.contains(char::is_whitespace) {
                return Err(malformed("expected an API key, {\"token\"} or an OAuth client's JSON".into()));
            }
            return Ok(PagerdutyAuth::ApiKey(Secret::new(text)));
        }
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|_| malformed("expected a JSON object".into()))?;
        if !map.contains_key("client_id") {
            return crate::secrets::CachedSecrets::pagerduty_token_of(raw, id).map(PagerdutyAuth::ApiKey);
        }
        let app: AppSecret = serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            // serde names the missing field, never the value.
            malformed(format!(
                "an OAuth client secret is JSON {{\"client_id\", \"client_secret\", \"subdomain\", \"region\", \"scopes\"}}: {e}"
            ))
        })?;
        let nonempty = |name: &str, v: &str| {
            if v.trim().is_empty() { Err(malformed(format!("\"{name}\" is empty"))) } else { Ok(v.trim().to_string()) }
        };
        let region = match app.region.as_deref().map(|r| r.trim().to_ascii_lowercase()).as_deref() {
            None | Some("us") | Some("") => PagerdutyRegion::Us,
            Some("eu") => PagerdutyRegion::Eu,
            Some(_) => return Err(malformed("\"region\" must be \"us\" or \"eu\"".into())),
        };
        let scopes: Vec<String> = match app.scopes {
            None => DEFAULT_SCOPES.iter().map(|s| s.0.to_string()).collect(),
            Some(ScopesField::List(list)) => list,
            Some(ScopesField::Text(text)) => text.split_whitespace().map(str::to_string).collect(),
        };
        // `as_account-` is added from subdomain and region; one in the list would name two accounts.
        let scopes: Vec<String> = scopes
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.starts_with("as_account-"))
            .collect();
        if scopes.is_empty() {
            return Err(malformed("\"scopes\" names no scope".into()));
        }
        Ok(PagerdutyAuth::App(AppCredentials {
            client_id: ClientId(nonempty("client_id", &app.client_id)?),
            client_secret: Secret::new(nonempty("client_secret", &app.client_secret)?),
            account: Account { region, subdomain: nonempty("subdomain", &app.subdomain)? },
            scopes,
        }))
    }
}

/// An app token and what PagerDuty said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppToken {
    pub token: Secret,
    /// The scopes actually granted (PagerDuty may grant fewer than asked).
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    /// When it is replaced: [`REFRESH_MARGIN`] before `expires_at` (half its life if shorter).
    refresh_at: DateTime<Utc>,
    /// Bumped at every fetch, so that concurrent 401s replace a token once, not once each.
    pub generation: u64,
    /// Who it was issued to.
    pub client_id: ClientId,
}

impl AppToken {
    /// True when the token was granted `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.0)
    }
}

/// Why no app token could be had. Never carries the client secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "PagerDuty refused OAuth client {client_id} (invalid_client{}); check client_id and client_secret in the token secret against the app's Scoped OAuth client (Integrations > App Registration): a regenerated client secret must be stored in the secret",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    InvalidClient { client_id: ClientId, description: Option<String> },
    #[error(
        "PagerDuty refused the token request of OAuth client {client_id} ({status}, {error}{}); check the secret's scopes, subdomain and region against the app's permissions and the account",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    Refused { client_id: ClientId, status: u16, error: String, description: Option<String> },
    #[error("PagerDuty's token endpoint answered {status}; try again later")]
    Unavailable { status: u16 },
    #[error("could not reach PagerDuty's token endpoint{}: {reason}", if *timeout { " (timed out)" } else { "" })]
    Transport { reason: String, timeout: bool },
    #[error("PagerDuty's token answer is not what its docs describe: {reason}")]
    Decode { reason: String },
    #[error("the token endpoint URL {0:?} does not make a request URL")]
    BadUrl(String),
}

/// A refused client waits for a person; an outage of the endpoint is retried.
impl Classify for OAuthError {
    fn class(&self) -> Class {
        match self {
            OAuthError::InvalidClient { .. } | OAuthError::Refused { .. } | OAuthError::BadUrl(_) => Class::Auth,
            OAuthError::Unavailable { .. } | OAuthError::Transport { .. } | OAuthError::Decode { .. } => {
                Class::Transient
            }
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct ErrorAnswer {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// One app token per process, fetched on demand (see the module docs).
pub struct TokenCache {
    transport: Arc<dyn Transport>,
    /// `https://identity.pagerduty.com` or a simulator; `/oauth/token` is added.
    identity_base: String,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    /// Held across a fetch: concurrent callers wait for it and share its token.
    cached: Mutex<Option<AppToken>>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("identity_base", &self.identity_base).finish_non_exhaustive()
    }
}

impl TokenCache {
    pub fn new(transport: Arc<dyn Transport>, identity_base: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            transport,
            identity_base: identity_base.into().trim_end_matches('/').to_string(),
            clock,
            timeout: FETCH_TIMEOUT,
            cached: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// Another limit on the token request (the client's own, so that its deadline check holds).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Token requests sent so far (tests, metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// The cached token for `creds`, or a new one when there is none, it is due for refresh, or
    /// it was issued to another client (the secret changed).
    pub async fn token(&self, creds: &AppCredentials) -> Result<AppToken, OAuthError> {
        let mut cached = self.cached.lock().await;
        let now = self.clock.now();
        if let Some(token) = cached.as_ref()
            && token.client_id == creds.client_id
            && now < token.refresh_at
        {
            return Ok(token.clone());
        }
        *cached = None;
        let token = self.fetch(creds).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// `stale` was refused with 401 (expired or revoked early): fetch a new one, unless another
    /// caller already replaced it.
    pub async fn refresh(&self, creds: &AppCredentials, stale: &AppToken) -> Result<AppToken, OAuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && token.generation != stale.generation
            && token.client_id == creds.client_id
        {
            return Ok(token.clone());
        }
        *cached = None;
        let token = self.fetch(creds).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// The client credentials request, uncached.
    pub async fn fetch(&self, creds: &AppCredentials) -> Result<AppToken, OAuthError> {
        let url = format!("{}/oauth/token", self.identity_base);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &creds.client_id.0)
            .append_pair("client_secret", creds.client_secret.expose())
            .append_pair("scope", &creds.scope_param())
            .finish();
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(form.into_bytes())
            .map_err(|_| OAuthError::BadUrl(url.clone()))?;
        let generation = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let response = self
            .transport
            .send(request, self.timeout)
            .await
            .map_err(|e| OAuthError::Transport { timeout: e.timed_out, reason: e.message })?;
        let status = response.status().as_u16();
        let body = response.into_body();
        if status >= 500 || status == 429 || status == 408 {
            return Err(OAuthError::Unavailable { status });
        }
        if !(200..300).contains(&status) {
            let answer: ErrorAnswer = serde_json::from_slice(&body).unwrap_or_default();
            let error = answer.error.unwrap_or_else(|| format!("HTTP {status}"));
            let client_id = creds.client_id.clone();
            let description = answer.error_description;
            return Err(if error == "invalid_client" {
                OAuthError::InvalidClient { client_id, description }
            } else {
                OAuthError::Refused { client_id, status, error, description }
            });
        }
        // Never echo the body: it holds the token.
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| OAuthError::Decode { reason: format!("no access_token and expires_in ({e})") })?;
        if answer.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
            return Err(OAuthError::Decode { reason: "token_type is not bearer".into() });
        }
        let now = self.clock.now();
        let life = Duration::from_secs(answer.expires_in);
        let margin = REFRESH_MARGIN.min(life / 2);
        let at = |d: Duration| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let scopes = match answer.scope {
            Some(s) => s.split_whitespace().map(str::to_string).collect(),
            // No scope in the answer: the ones asked for (RFC 6749 5.1).
            None => creds.scopes.clone(),
        };
        Ok(AppToken {
            token: Secret::new(answer.access_token),
            scopes,
            expires_at: at(life),
            refresh_at: at(life - margin),
            generation,
            client_id: creds.client_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
