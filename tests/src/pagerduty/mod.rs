//! A stateful PagerDuty REST API simulator.
//!
//! Every request is validated against PagerDuty's OpenAPI document ([`openapi`]) and answered the way
//! PagerDuty answers: errors are `{"error":{"message","code","errors"}}` with PagerDuty's codes
//! (2001 Invalid Input Provided, 2006 authentication, 2100 Not Found, 2020 rate limit). Responses carry
//! `ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset`.
//!
//! Seeded world of [`PdSimConfig::default`]: token `sim-token`; OAuth client `sim-client`
//! (secret `sim-client-secret`, the bridge's default scopes) at `POST /oauth/token` ([`oauth`]); users `PUSR001` (`bridge@example.com`,
//! "Bridge Bot") and `PUSR002` (`oncall@example.com`, "On Call"); service `PSVC001` ("Checkout") on
//! escalation policy `PEP0001` (targets `PUSR002`), service `PSVC002` ("Billing"); priorities `PPRI001`
//! P1 .. `PPRI005` P5; incident workflow `PWFL001`; automation action `PACT001`; incident custom
//! fields `impact` (`PCF0001`, string, "Customer impact") and `seats` (`PCF0002`, integer).

//!
//! One module per endpoint family ([`incidents`], [`notes`], [`status_updates`], [`custom_fields`],
//! [`log_entries`], [`responders`], [`automation`], [`subscriptions`], the read-only [`account`]); [`router`] lists every route and the layers each
//! request goes through, outermost first: [`faults`] (request log, fault injection), the spec's
//! paths ([`validate::known_path`]), [`auth`], [`rate_limit`], the OpenAPI checks
//! ([`validate::against_spec`]). The Salesforce simulator is laid out the same way.

mod account;
mod auth;
mod automation;
mod custom_fields;
mod errors;
mod faults;
mod incidents;
mod log_entries;
mod notes;
mod oauth;
pub mod openapi;
mod rate_limit;
mod responders;
mod state;
mod status_updates;
mod subscriptions;
mod validate;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::faults::{FaultConfig, FaultKind, Faults};
use crate::server;
pub use errors::pd_error;
pub use oauth::PdOAuthClient;
use state::{Shared, World};
pub use webhook::{DeliveryReport, WebhookSender, sign_v1, signature_header};

/// A user of the simulated account.
#[derive(Debug, Clone)]
pub struct PdUser {
    pub id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct PdService {
    pub id: String,
    pub name: String,
    pub escalation_policy_id: String,
}

#[derive(Debug, Clone)]
pub struct PdEscalationPolicy {
    pub id: String,
    pub name: String,
    /// Users notified at the first level: the assignees of new incidents.
    pub user_ids: Vec<String>,
}

/// An incident custom field of the account (`data_type`: string, integer, float, boolean, ...).
#[derive(Debug, Clone)]
pub struct PdCustomField {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub data_type: String,
}

#[derive(Debug, Clone)]
pub struct PdPriority {
    pub id: String,
    pub name: String,
}

/// Requests allowed per fixed window (per token), like PagerDuty's per-minute REST limit.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

/// Where the simulator itself sends a webhook on every incident change.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secrets: Vec<String>,
    pub subscription_id: String,
}

#[derive(Debug, Clone)]
pub struct PdSimConfig {
    pub port: u16,
    pub tokens: Vec<String>,
    /// Scoped OAuth clients the token endpoint (`POST /oauth/token`) knows.
    pub oauth_clients: Vec<PdOAuthClient>,
    /// How long an app token lives (`expires_in`).
    pub token_lifetime: Duration,
    pub users: Vec<PdUser>,
    pub services: Vec<PdService>,
    pub escalation_policies: Vec<PdEscalationPolicy>,
    pub priorities: Vec<PdPriority>,
    pub incident_workflows: Vec<String>,
    pub automation_actions: Vec<String>,
    pub custom_fields: Vec<PdCustomField>,
    pub rate_limit: RateLimit,
    pub faults: FaultConfig,
    /// Subdomain used in `html_url` (`https://{subdomain}.pagerduty.com/...`).
    pub subdomain: String,
    /// The account's service region (`us` or `eu`): app tokens are issued only for
    /// `as_account-{region}.{subdomain}`.
    pub region: String,
    pub webhook: Option<WebhookTarget>,
    /// What the simulator stamps incidents, notes and webhooks with.
    pub clock: crate::sim_clock::SimClock,
}

impl Default for PdSimConfig {
    fn default() -> Self {
        let user = |id: &str, email: &str, name: &str| PdUser { id: id.into(), email: email.into(), name: name.into() };
        PdSimConfig {
            port: 0,
            tokens: vec!["sim-token".into()],
            oauth_clients: vec![PdOAuthClient {
                client_id: "sim-client".into(),
                client_secret: "sim-client-secret".into(),
                scopes: shared::pagerduty::oauth::DEFAULT_SCOPES.iter().map(|s| s.0.to_string()).collect(),
            }],
            // PagerDuty's documented answer shows 30 days.
            token_lifetime: Duration::from_secs(2_592_000),
            users: vec![
                user("PUSR001", "bridge@example.com", "Bridge Bot"),
                user("PUSR002", "oncall@example.com", "On Call"),
            ],
            services: vec![
                PdService { id: "PSVC001".into(), name: "Checkout".into(), escalation_policy_id: "PEP0001".into() },
                PdService { id: "PSVC002".into(), name: "Billing".into(), escalation_policy_id: "PEP0002".into() },
            ],
            escalation_policies: vec![
                PdEscalationPolicy {
                    id: "PEP0001".into(),
                    name: "Checkout On Call".into(),
                    user_ids: vec!["PUSR002".into()],
                },
                PdEscalationPolicy {
                    id: "PEP0002".into(),
                    name: "Billing On Call".into(),
                    user_ids: vec!["PUSR001".into()],
                },
            ],
            priorities: (1..=5).map(|n| PdPriority { id: format!("PPRI00{n}"), name: format!("P{n}") }).collect(),
            incident_workflows: vec!["PWFL001".into()],
            automation_actions: vec!["PACT001".into()],
            custom_fields: vec![
                PdCustomField {
                    id: "PCF0001".into(),
                    name: "impact".into(),
                    display_name: "Customer impact".into(),
                    data_type: "string".into(),
                },
                PdCustomField {
                    id: "PCF0002".into(),
                    name: "seats".into(),
                    display_name: "Seats affected".into(),
                    data_type: "integer".into(),
                },
            ],
            rate_limit: RateLimit { requests: 960, window: Duration::from_secs(60) },
            faults: FaultConfig::none(),
            subdomain: "sim".into(),
            region: "us".into(),
            webhook: None,
            clock: Default::default(),
        }
    }
}

/// One request as the simulator saw it, with the status it answered (0 if the connection was dropped).
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
}

impl LoggedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A running simulator; stops when dropped.
pub struct PagerdutySim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

impl PagerdutySim {
    /// Start on `127.0.0.1:{config.port}` (0 = any free port). Must be called inside a Tokio runtime.
    pub async fn start(config: PdSimConfig) -> PagerdutySim {
        let _ = &*openapi::SPEC; // parse the spec now, not on the first request
        // The base URL is only known after binding; bind first, then build the state.
        let (listener, addr) = server::bind(config.port, "PagerDuty simulator").await;
        let shared = Arc::new(Shared {
            faults: Faults::new(config.faults.clone()),
            config: Mutex::new(config),
            base_url: format!("http://{addr}"),
            world: Mutex::new(World::new()),
        });
        let tx = server::spawn_server(listener, router(shared.clone()));
        PagerdutySim { shared, addr, _shutdown: tx }
    }

    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn config(&self) -> PdSimConfig {
        self.shared.config.lock().unwrap().clone()
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.shared.faults.set(faults);
    }
    pub fn fail_next(&self, n: usize, kind: FaultKind) {
        self.shared.faults.fail_next(n, kind);
    }
    /// Forgets faults queued by `fail_next` that no request has met yet.
    pub fn clear_queued_faults(&self) {
        self.shared.faults.clear_queued();
    }
    pub fn set_rate_limit(&self, rate_limit: RateLimit) {
        self.shared.config.lock().unwrap().rate_limit = rate_limit;
        self.shared.world.lock().unwrap().windows.clear();
    }
    /// The most requests of `token` that arrived in one rate-limit window so far (answered or
    /// refused with 429): what a client that keeps to the limit keeps at or under it.
    pub fn peak_window_requests(&self, token: &str) -> u32 {
        self.shared.world.lock().unwrap().peaks.get(token).copied().unwrap_or(0)
    }
    /// Start a fresh rate-limit window for every token.
    pub fn reset_rate_limit(&self) {
        self.shared.world.lock().unwrap().windows.clear();
    }
    /// Send a webhook to `target` on every incident change from now on (`None` stops).
    pub fn set_webhook_target(&self, target: Option<WebhookTarget>) {
        self.shared.config.lock().unwrap().webhook = target;
    }

    pub fn incidents(&self) -> Vec<Value> {
        self.shared.world.lock().unwrap().incidents.clone()
    }
    pub fn incident(&self, id: &str) -> Option<Value> {
        self.shared.world.lock().unwrap().incident(id).cloned()
    }
    /// The incident log, oldest first.
    pub fn log_entries(&self) -> Vec<Value> {
        self.shared.world.lock().unwrap().log_entries.clone()
    }
    pub fn notes(&self, incident_id: &str) -> Vec<Value> {
        self.shared.world.lock().unwrap().notes.get(incident_id).cloned().unwrap_or_default()
    }
    /// The incident's status updates, oldest first.
    pub fn status_updates(&self, incident_id: &str) -> Vec<Value> {
        self.shared.world.lock().unwrap().status_updates.get(incident_id).cloned().unwrap_or_default()
    }
    /// The incident's custom field values by name (fields never set are absent).
    pub fn custom_field_values(&self, incident_id: &str) -> serde_json::Map<String, Value> {
        self.shared.world.lock().unwrap().custom_field_values.get(incident_id).cloned().unwrap_or_default()
    }
    pub fn responder_requests(&self) -> Vec<Value> {
        self.shared.world.lock().unwrap().responder_requests.clone()
    }
    pub fn workflow_instances(&self) -> Vec<Value> {
        self.shared.world.lock().unwrap().workflow_instances.clone()
    }
    pub fn automation_invocations(&self) -> Vec<Value> {
        self.shared.world.lock().unwrap().invocations.clone()
    }
    /// Switches a subscription off, as PagerDuty does after repeated failed deliveries (its
    /// queued deliveries are dropped: nothing is sent while it is off).
    pub fn disable_webhook_subscription(&self, id: &str) {
        let mut w = self.shared.world.lock().unwrap();
        if let Some(sub) = w.subscriptions.iter_mut().find(|s| s["id"] == id) {
            sub["active"] = serde_json::json!(false);
        }
    }
    pub fn webhook_subscriptions(&self) -> Vec<Value> {
        self.shared.world.lock().unwrap().subscriptions.clone()
    }
    /// Every webhook envelope the simulator emitted (whether or not a target was configured).
    pub fn webhook_events(&self) -> Vec<Value> {
        self.shared.world.lock().unwrap().webhook_events.clone()
    }
    /// Adds `n` log entries of other incidents over `since..until`: a busy account's log.
    pub fn busy_log(&self, n: usize, since: chrono::DateTime<chrono::Utc>, until: chrono::DateTime<chrono::Utc>) {
        log_entries::busy(&mut self.shared.world.lock().unwrap(), n, since, until);
    }
    /// How many webhook envelopes the simulator emitted (cheap enough to poll).
    pub fn webhook_event_count(&self) -> usize {
        self.shared.world.lock().unwrap().webhook_events.len()
    }
    /// Requests the token endpoint received so far (refused ones included).
    pub fn token_requests(&self) -> u32 {
        self.shared.world.lock().unwrap().token_requests
    }
    /// The next `n` token requests are answered 503, as during an outage of the identity host.
    pub fn fail_next_token_requests(&self, n: u32) {
        self.shared.world.lock().unwrap().token_outage = n;
    }
    /// Every app token issued so far expires now: the next call with one gets 401.
    pub fn expire_app_tokens(&self) {
        let now = std::time::Instant::now();
        for token in self.shared.world.lock().unwrap().app_tokens.values_mut() {
            token.expires_at = now;
        }
    }
    /// Removes OAuth client `client_id` and its tokens, as deleting it in App Registration does.
    pub fn revoke_oauth_client(&self, client_id: &str) {
        self.shared.config.lock().unwrap().oauth_clients.retain(|c| c.client_id != client_id);
        self.shared.world.lock().unwrap().app_tokens.retain(|_, t| t.client_id != client_id);
    }
    /// Adds (or replaces) an OAuth client.
    pub fn set_oauth_client(&self, client: PdOAuthClient) {
        let mut config = self.shared.config.lock().unwrap();
        config.oauth_clients.retain(|c| c.client_id != client.client_id);
        config.oauth_clients.push(client);
    }
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.world.lock().unwrap().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.shared.world.lock().unwrap().requests.clear();
    }
}

/// Every endpoint the simulator models. Paths the spec has but the simulator does not model answer
/// 404 "not simulated"; paths the spec does not have never get this far ([`validate::known_path`]).
fn router(shared: Arc<Shared>) -> Router {
    // The identity host's token endpoint: not a REST path, none of the REST layers.
    let identity = Router::new().route("/oauth/token", post(oauth::token)).with_state(shared.clone());
    let rest = Router::new()
        .route("/incidents", get(incidents::list).post(incidents::create))
        .route("/incidents/{id}", get(incidents::show).put(incidents::update))
        .route("/incidents/{id}/notes", get(notes::list).post(notes::create))
        .route("/incidents/{id}/status_updates", post(status_updates::create))
        .route("/incidents/{id}/custom_fields/values", get(custom_fields::list).put(custom_fields::set))
        .route("/log_entries", get(log_entries::list))
        .route("/incidents/{id}/responder_requests", post(responders::create))
        .route("/incident_workflows/{id}/instances", post(automation::start_workflow))
        .route("/automation_actions/actions/{id}/invocations", post(automation::invoke))
        .route("/priorities", get(account::priorities))
        .route("/users", get(account::users))
        .route("/users/{id}", get(account::user))
        .route("/services/{id}", get(account::service))
        .route("/escalation_policies/{id}", get(account::escalation_policy))
        .route("/webhook_subscriptions", get(subscriptions::list).post(subscriptions::create))
        .route(
            "/webhook_subscriptions/{id}",
            get(subscriptions::show).put(subscriptions::update).delete(subscriptions::delete),
        )
        .fallback(errors::not_simulated)
        .method_not_allowed_fallback(errors::not_simulated)
        // The last layer added runs first.
        .layer(from_fn(validate::against_spec))
        .layer(from_fn_with_state(shared.clone(), rate_limit::window))
        .layer(from_fn_with_state(shared.clone(), auth::check))
        .layer(from_fn(validate::known_path))
        .layer(from_fn_with_state(shared.clone(), faults::inject))
        .with_state(shared);
    identity.merge(rest)
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The request body as JSON (`null` if it is not: the OpenAPI checks have refused bad bodies).
fn json_of(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

#[cfg(test)]
mod tests;
