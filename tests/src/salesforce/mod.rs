//! A stateful Salesforce simulator: OAuth 2.0 JWT bearer token endpoint that really verifies the
//! assertion, sObject REST (create, read, update, upsert, describe, limits), Composite with references
//! and `allOrNone`, the org's daily API limit (`Sforce-Limit-Info`, `REQUEST_LIMIT_EXCEEDED`), seeded
//! faults, and the two things the org sends us: Apex trigger posts ([`TriggerPoster`]) and Outbound
//! Messages ([`OutboundMessenger`]).
//!
//! Defaults ([`SfSimConfig::default`]): consumer key `sim-consumer-key`, username
//! `integration@example.com` (user `0055g00000SIMUSRAAA`-style id), audience
//! `https://login.salesforce.com` (only: as Salesforce, not the host posted to), certificate `tests/fixtures/salesforce/test-only-jwt-cert.pem`
//! (private key: [`test_keys`]), org id `00D5g0000SIMORGEQ5`, token TTL 2 h, daily limit 15 000 calls.
//!
//! Laid out as the PagerDuty simulator: one module per endpoint family ([`oauth`], [`sobjects`],
//! [`composite`], [`query`], [`limits`]); [`router`] lists every route and the layers each request
//! goes through, outermost first: [`faults`] (request log, fault injection), `Sforce-Limit-Info`
//! ([`limits::header`]), the session ([`auth`]), the daily limit ([`limits::count`]), the JSON body
//! ([`body`]).

mod auth;
mod body;
pub mod cdc;
mod composite;
pub mod emit;
mod errors;
mod faults;
mod limits;
mod oauth;
mod query;
mod records;
pub mod schema;
mod sobjects;
mod soql;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::faults::{FaultConfig, FaultKind, Faults};
use crate::server;
use emit::notify;
pub use emit::{OutboundMessenger, OutboundReport, TriggerPoster, TriggerTarget, sign_trigger};
pub use errors::sf_error;
use records::{apply, new_record};
pub use records::{sf_datetime, sf_stamp};
use state::{Records, Shared, World, issue, user_id_for};

/// Where the JWT bearer flow gets its token (also the login URL's only endpoint).
const TOKEN_PATH: &str = "/services/oauth2/token";

/// Test-only key material committed under `tests/fixtures/salesforce/` (never use it anywhere else).
#[derive(Debug, Clone)]
pub struct TestKeys {
    /// PKCS#8 private key that signs JWT assertions accepted by the simulator.
    pub private_key_pem: &'static str,
    /// The self-signed certificate configured in the simulated connected app.
    pub certificate_pem: &'static str,
    /// The certificate's public key.
    pub public_key_pem: &'static str,
    /// A different private key: assertions signed with it must be refused.
    pub other_private_key_pem: &'static str,
    pub private_key_path: std::path::PathBuf,
    pub certificate_path: std::path::PathBuf,
    pub public_key_path: std::path::PathBuf,
}

pub fn test_keys() -> TestKeys {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/salesforce");
    TestKeys {
        private_key_pem: include_str!("../../fixtures/salesforce/test-only-jwt-private-key.pem"),
        certificate_pem: include_str!("../../fixtures/salesforce/test-only-jwt-cert.pem"),
        public_key_pem: include_str!("../../fixtures/salesforce/test-only-jwt-public-key.pem"),
        other_private_key_pem: include_str!("../../fixtures/salesforce/test-only-other-private-key.pem"),
        private_key_path: dir.join("test-only-jwt-private-key.pem"),
        certificate_path: dir.join("test-only-jwt-cert.pem"),
        public_key_path: dir.join("test-only-jwt-public-key.pem"),
    }
}

#[derive(Debug, Clone)]
pub struct SfSimConfig {
    pub port: u16,
    pub consumer_key: String,
    /// Usernames allowed to get tokens (pre-authorized for the connected app).
    pub usernames: Vec<String>,
    /// Expected `aud` of assertions: `https://login.salesforce.com` (a production org, the
    /// default), `https://test.salesforce.com` (a sandbox) or a site URL.
    pub login_url: String,
    /// PEM of the X.509 certificate (or bare public key) of the connected app.
    pub certificate_pem: String,
    pub token_ttl: Duration,
    /// Assertions whose `exp` is further ahead than this are refused.
    pub max_assertion_lifetime: Duration,
    pub daily_api_limit: u64,
    pub org_id: String,
    pub faults: FaultConfig,
    pub trigger: Option<TriggerTarget>,
    /// Outbound Message endpoint: (url, objects it fires for).
    pub outbound: Option<(String, Vec<String>)>,
    /// What records are stamped with.
    pub clock: crate::sim_clock::SimClock,
}

impl Default for SfSimConfig {
    fn default() -> Self {
        SfSimConfig {
            port: 0,
            consumer_key: "sim-consumer-key".into(),
            usernames: vec!["integration@example.com".into(), "agent@example.com".into()],
            login_url: "https://login.salesforce.com".into(),
            certificate_pem: test_keys().certificate_pem.into(),
            token_ttl: Duration::from_secs(7200),
            max_assertion_lifetime: Duration::from_secs(300),
            daily_api_limit: 15_000,
            org_id: "00D5g0000SIMORGEQ5".into(),
            faults: FaultConfig::none(),
            trigger: None,
            outbound: None,
            clock: Default::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
    /// The `Sforce-Call-Options` header, if sent.
    pub call_options: Option<String>,
}

impl LoggedRequest {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// One committed record change, as an Apex trigger would see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub object: String,
    /// `insert` or `update`.
    pub operation: String,
    pub old: Option<Value>,
    pub new: Value,
    /// Username of the session that made the change.
    pub username: String,
    /// `Sforce-Call-Options` of the request that made it (None for seeded changes).
    pub call_options: Option<String>,
}

/// A running Salesforce simulator; stops when dropped.
pub struct SalesforceSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

impl SalesforceSim {
    /// Start on `127.0.0.1:{config.port}` (0 = any free port). Must be called inside a Tokio runtime.
    pub async fn start(config: SfSimConfig) -> SalesforceSim {
        let (listener, addr) = server::bind(config.port, "Salesforce simulator").await;
        let clock = config.clock.clone();
        let shared = Arc::new(Shared {
            faults: Faults::new(config.faults.clone()),
            config: Mutex::new(config),
            base_url: format!("http://{addr}"),
            world: Mutex::new(World {
                records: Records { case_number: 1000, clock, ..Default::default() },
                ..Default::default()
            }),
        });
        let tx = server::spawn_server(listener, router(shared.clone()));
        SalesforceSim { shared, addr, _shutdown: tx }
    }

    /// Both the login URL (token endpoint) and the instance URL.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn config(&self) -> SfSimConfig {
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
    /// Every token issued so far becomes invalid (`INVALID_SESSION_ID`).
    pub fn expire_all_tokens(&self) {
        let past = Instant::now();
        for t in self.shared.world.lock().unwrap().tokens.values_mut() {
            t.expires = past;
        }
    }
    /// Uploads `pem` as the app's certificate (Setup → the External Client App → JWT Bearer Flow).
    pub fn set_certificate(&self, pem: &str) {
        self.shared.config.lock().unwrap().certificate_pem = pem.into();
    }
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.config.lock().unwrap().token_ttl = ttl;
    }
    pub fn set_daily_api_limit(&self, limit: u64) {
        self.shared.config.lock().unwrap().daily_api_limit = limit;
    }
    /// Calls counted against the daily limit: (used, limit).
    pub fn api_usage(&self) -> (u64, u64) {
        (self.shared.world.lock().unwrap().api_used, self.shared.config.lock().unwrap().daily_api_limit)
    }
    pub fn set_api_used(&self, used: u64) {
        self.shared.world.lock().unwrap().api_used = used;
    }
    pub fn set_trigger_target(&self, target: Option<TriggerTarget>) {
        self.shared.config.lock().unwrap().trigger = target;
    }
    pub fn set_outbound_target(&self, target: Option<(String, Vec<String>)>) {
        self.shared.config.lock().unwrap().outbound = target;
    }
    /// A token for `username` without going through the JWT flow (for tests of other components).
    pub fn issue_token(&self, username: &str) -> String {
        let ttl = self.shared.config.lock().unwrap().token_ttl;
        issue(&self.shared, username, ttl)
    }
    pub fn record(&self, object: &str, id: &str) -> Option<Value> {
        let w = self.shared.world.lock().unwrap();
        w.records.find(object, id).map(|i| w.records.by_object[object][i].clone())
    }
    pub fn records(&self, object: &str) -> Vec<Value> {
        self.shared.world.lock().unwrap().records.by_object.get(object).cloned().unwrap_or_default()
    }
    /// Seed a record (no validation, no API call counted, no trigger). Returns its 18-char id.
    pub fn insert_record(&self, object: &str, fields: Value) -> String {
        self.insert_record_as(object, fields, "integration@example.com")
    }
    /// [`Self::insert_record`] by `username` (its `CreatedById` and `LastModifiedById`, as a read
    /// of the record shows them): a record a person in the org created.
    pub fn insert_record_as(&self, object: &str, fields: Value, username: &str) -> String {
        let mut w = self.shared.world.lock().unwrap();
        let rec = new_record(&mut w.records, object, fields.as_object().cloned().unwrap_or_default(), username);
        let id = rec["Id"].as_str().unwrap_or_default().to_string();
        w.records.push(object, rec);
        id
    }
    /// Delete a record as a user in the org would (no API call counted): reads of it answer 404.
    pub fn delete_record(&self, object: &str, id: &str) -> bool {
        let mut w = self.shared.world.lock().unwrap();
        let Some(idx) = w.records.find(object, id) else { return false };
        w.records.remove_at(object, idx);
        true
    }
    /// Change a record as a user in the org would (no API call counted). Returns (old, new) and
    /// records the change; emits trigger/outbound notifications if targets are configured.
    pub fn update_record(&self, object: &str, id: &str, fields: Value, username: &str) -> Option<(Value, Value)> {
        let config = self.config();
        let mut w = self.shared.world.lock().unwrap();
        let idx = w.records.find(object, id)?;
        let old = w.records.by_object[object][idx].clone();
        let mut new = old.clone();
        let at = w.records.clock.now();
        apply(&mut new, object, fields.as_object().cloned().unwrap_or_default(), username, at);
        w.records.update_at(object, idx, |rec| *rec = new.clone());
        let change = Change {
            object: object.into(),
            operation: "update".into(),
            old: Some(old.clone()),
            new: new.clone(),
            username: username.into(),
            call_options: None,
        };
        w.changes.push(change.clone());
        drop(w);
        notify(&self.shared, &config, &[change]);
        Some((old, new))
    }
    /// Every committed change (API writes and `update_record`), oldest first.
    pub fn changes(&self) -> Vec<Change> {
        self.shared.world.lock().unwrap().changes.clone()
    }
    /// How many changes were committed (cheap enough to poll).
    pub fn change_count(&self) -> usize {
        self.shared.world.lock().unwrap().changes.len()
    }
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.world.lock().unwrap().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.shared.world.lock().unwrap().requests.clear();
    }
    /// Records per query batch (`nextRecordsUrl` paging); Salesforce's default is 2000.
    pub fn set_query_batch_size(&self, size: usize) {
        self.shared.world.lock().unwrap().query_batch_size = Some(size);
    }

    /// The user id the simulator assigns to `username` (`CreatedById`/`LastModifiedById`).
    pub fn user_id(&self, username: &str) -> String {
        user_id_for(username)
    }
}

/// Every endpoint the simulator models; any other path or method is Salesforce's `NOT_FOUND`.
fn router(shared: Arc<Shared>) -> Router {
    const SOBJECT: &str = "/services/data/{version}/sobjects/{object}";
    Router::new()
        .route(TOKEN_PATH, post(oauth::token))
        .route("/services/data/{version}/limits", get(limits::endpoint))
        .route("/services/data/{version}/query", get(query::endpoint))
        .route("/services/data/{version}/query/{locator}", get(query::more))
        .route("/services/data/{version}/composite", post(composite::endpoint))
        .route("/services/data/{version}/sobjects", get(sobjects::list_objects))
        .route(SOBJECT, post(sobjects::create_endpoint))
        .route(
            &format!("{SOBJECT}/describe"),
            get(sobjects::describe_endpoint)
                .patch(sobjects::describe_is_not_an_id)
                .delete(sobjects::describe_is_not_an_id),
        )
        .route(
            &format!("{SOBJECT}/{{id}}"),
            get(sobjects::read_endpoint).patch(sobjects::update_endpoint).delete(sobjects::delete_endpoint),
        )
        .route(
            &format!("{SOBJECT}/{{field}}/{{value}}"),
            get(sobjects::read_by_external_id_endpoint).patch(sobjects::upsert_endpoint),
        )
        .fallback(errors::not_found)
        .method_not_allowed_fallback(errors::not_found)
        // The last layer added runs first.
        .layer(from_fn(errors::no_head))
        .layer(from_fn(body::parse))
        .layer(from_fn_with_state(shared.clone(), limits::count))
        .layer(from_fn_with_state(shared.clone(), auth::session))
        .layer(from_fn_with_state(shared.clone(), limits::header))
        .layer(from_fn_with_state(shared.clone(), faults::inject))
        .with_state(shared)
}

#[cfg(test)]
mod tests;
