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

pub mod emit;
pub mod schema;
mod soql;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::faults::{FaultConfig, FaultKind, Faults, drop_connection};
use crate::server::spawn_server;
pub use emit::{OutboundMessenger, OutboundReport, TriggerPoster, TriggerTarget, sign_trigger};

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

#[derive(Debug, Clone)]
struct Token {
    username: String,
    expires: Instant,
}

#[derive(Default)]
struct Records {
    by_object: HashMap<String, Vec<Value>>,
    /// Positions in `by_object` by id and by external-id value: a lookup costs the same with 10
    /// records or 10,000 (a scan of every record per lookup made long runs quadratic).
    index: HashMap<String, ObjectIndex>,
    counter: u64,
    case_number: u64,
    /// While a Composite request runs: how to undo each of its writes, in order, so an
    /// `allOrNone` failure rolls back only what it wrote (cloning every record of the org per
    /// Composite request made the simulator quadratic in the number of records).
    journal: Option<Vec<Undo>>,
}

/// One object's lookups.
#[derive(Default)]
struct ObjectIndex {
    /// 15-character id -> position.
    by_id15: HashMap<String, usize>,
    /// (field, value) of every string-valued field ending in `__c` -> positions, ascending.
    by_ext: HashMap<(String, String), Vec<usize>>,
}

/// The string-valued custom fields of `rec` (what external-id lookups look at).
fn ext_values(rec: &Value) -> impl Iterator<Item = (&String, &str)> {
    rec.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.ends_with("__c"))
        .filter_map(|(k, v)| v.as_str().map(|s| (k, s)))
}

impl ObjectIndex {
    fn add(&mut self, rec: &Value, pos: usize) {
        if let Some(id) = rec["Id"].as_str() {
            self.by_id15.insert(schema::id15(id).to_string(), pos);
        }
        for (field, value) in ext_values(rec) {
            let list = self.by_ext.entry((field.clone(), value.to_string())).or_default();
            let at = list.partition_point(|p| *p < pos);
            list.insert(at, pos);
        }
    }

    /// Forgets `rec`'s external-id values at `pos` (its id does not change on update).
    fn remove_ext(&mut self, rec: &Value, pos: usize) {
        for (field, value) in ext_values(rec) {
            let key = (field.clone(), value.to_string());
            if let Some(list) = self.by_ext.get_mut(&key) {
                list.retain(|p| *p != pos);
                if list.is_empty() {
                    self.by_ext.remove(&key);
                }
            }
        }
    }

    fn build(records: &[Value]) -> Self {
        let mut index = ObjectIndex::default();
        for (pos, rec) in records.iter().enumerate() {
            index.add(rec, pos);
        }
        index
    }
}

/// The inverse of one write to [`Records`].
enum Undo {
    /// A record was pushed at the end of `object`'s list.
    Inserted { object: String },
    /// The record at `idx` was `old` before.
    Updated { object: String, idx: usize, old: Value },
    /// `rec` was removed from `idx`.
    Deleted { object: String, idx: usize, rec: Value },
}

impl Records {
    /// Position of `object`'s record with this 15- or 18-character id.
    fn find(&self, object: &str, id: &str) -> Option<usize> {
        self.index.get(object)?.by_id15.get(schema::id15(id)).copied()
    }

    /// Positions of `object`'s records whose `field` is the string `value`, ascending.
    fn matching(&self, object: &str, field: &str, value: &str) -> Vec<usize> {
        if field.ends_with("__c") {
            let key = (field.to_string(), value.to_string());
            return self.index.get(object).and_then(|i| i.by_ext.get(&key)).cloned().unwrap_or_default();
        }
        // Standard fields (custom objects without describe metadata, or `Id`): not indexed.
        let list = self.by_object.get(object).map(Vec::as_slice).unwrap_or_default();
        list.iter().enumerate().filter(|(_, r)| r[field] == value).map(|(i, _)| i).collect()
    }

    /// Adds `rec` at the end of `object`'s records.
    fn push(&mut self, object: &str, rec: Value) {
        let list = self.by_object.entry(object.to_string()).or_default();
        let pos = list.len();
        self.index.entry(object.to_string()).or_default().add(&rec, pos);
        list.push(rec);
        self.note(|| Undo::Inserted { object: object.into() });
    }

    /// Changes the record at `idx` with `change`; returns it before and after.
    fn update_at(&mut self, object: &str, idx: usize, change: impl FnOnce(&mut Value)) -> (Value, Value) {
        let list = self.by_object.get_mut(object).expect("a record found by the caller");
        let old = list[idx].clone();
        change(&mut list[idx]);
        let new = list[idx].clone();
        let index = self.index.entry(object.to_string()).or_default();
        index.remove_ext(&old, idx);
        index.add(&new, idx);
        self.note(|| Undo::Updated { object: object.into(), idx, old: old.clone() });
        (old, new)
    }

    /// Removes the record at `idx` (the positions after it move: the object is indexed again).
    fn remove_at(&mut self, object: &str, idx: usize) {
        let list = self.by_object.get_mut(object).expect("a record found by the caller");
        let rec = list.remove(idx);
        self.index.insert(object.to_string(), ObjectIndex::build(list));
        self.note(|| Undo::Deleted { object: object.into(), idx, rec });
    }

    fn note(&mut self, undo: impl FnOnce() -> Undo) {
        if let Some(journal) = &mut self.journal {
            journal.push(undo());
        }
    }

    /// Starts journaling writes; returns what `rollback` needs besides the journal.
    fn begin(&mut self) -> (u64, u64) {
        self.journal = Some(Vec::new());
        (self.counter, self.case_number)
    }

    /// Stops journaling; with `rollback`, undoes every journaled write (newest first) and restores
    /// the id and case-number counters saved by `begin`, as if the writes never happened.
    fn end(&mut self, saved: (u64, u64), rollback: bool) {
        let journal = self.journal.take().unwrap_or_default();
        if !rollback {
            return;
        }
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Inserted { object } => {
                    self.by_object.get_mut(&object).and_then(Vec::pop);
                }
                Undo::Updated { object, idx, old } => {
                    if let Some(slot) = self.by_object.get_mut(&object).and_then(|l| l.get_mut(idx)) {
                        *slot = old;
                    }
                }
                Undo::Deleted { object, idx, rec } => self.by_object.entry(object).or_default().insert(idx, rec),
            }
        }
        (self.counter, self.case_number) = saved;
        // Rare (a failed allOrNone request): index everything again rather than undo the index.
        self.index = self.by_object.iter().map(|(o, list)| (o.clone(), ObjectIndex::build(list))).collect();
    }
}

#[derive(Default)]
struct World {
    records: Records,
    tokens: HashMap<String, Token>,
    api_used: u64,
    requests: Vec<LoggedRequest>,
    changes: Vec<Change>,
}

struct Shared {
    config: Mutex<SfSimConfig>,
    base_url: String,
    faults: Faults,
    world: Mutex<World>,
}

/// A running Salesforce simulator; stops when dropped.
pub struct SalesforceSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

/// Salesforce's REST error array.
pub fn sf_error(status: StatusCode, code: &str, message: &str, fields: Option<&[&str]>) -> (StatusCode, Value) {
    let mut e = json!({"message": message, "errorCode": code});
    if let Some(f) = fields {
        e["fields"] = json!(f);
    }
    (status, json!([e]))
}

fn not_found_err() -> (StatusCode, Value) {
    sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", None)
}

/// Apex/REST datetime format: `2026-11-22T10:00:00.000+0000`.
pub fn sf_datetime(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// A record's own stamps (`CreatedDate`, `LastModifiedDate`, `SystemModstamp`): whole seconds, as
/// a real org writes them (`...:00.000+0000`), so two changes within a second share a stamp.
pub fn sf_stamp(t: chrono::DateTime<Utc>) -> String {
    sf_datetime(chrono::SubsecRound::trunc_subsecs(t, 0))
}

fn user_id_for(username: &str) -> String {
    let n = username.bytes().fold(11u64, |a, b| a.wrapping_mul(131).wrapping_add(b as u64)) % 1_000_000;
    schema::make_id("005", n)
}

impl SalesforceSim {
    /// Start on `127.0.0.1:{config.port}` (0 = any free port). Must be called inside a Tokio runtime.
    pub async fn start(config: SfSimConfig) -> SalesforceSim {
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await.expect("bind Salesforce simulator");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            faults: Faults::new(config.faults.clone()),
            config: Mutex::new(config),
            base_url: format!("http://{addr}"),
            world: Mutex::new(World {
                records: Records { case_number: 1000, ..Default::default() },
                ..Default::default()
            }),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let tx = spawn_server(listener, router);
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
        let mut w = self.shared.world.lock().unwrap();
        let rec = new_record(
            &mut w.records,
            object,
            fields.as_object().cloned().unwrap_or_default(),
            "integration@example.com",
        );
        let id = rec["Id"].as_str().unwrap_or_default().to_string();
        w.records.push(object, rec);
        id
    }
    /// Change a record as a user in the org would (no API call counted). Returns (old, new) and
    /// records the change; emits trigger/outbound notifications if targets are configured.
    pub fn update_record(&self, object: &str, id: &str, fields: Value, username: &str) -> Option<(Value, Value)> {
        let config = self.config();
        let mut w = self.shared.world.lock().unwrap();
        let idx = w.records.find(object, id)?;
        let old = w.records.by_object[object][idx].clone();
        let mut new = old.clone();
        apply(&mut new, object, fields.as_object().cloned().unwrap_or_default(), username);
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
    /// The user id the simulator assigns to `username` (`CreatedById`/`LastModifiedById`).
    pub fn user_id(&self, username: &str) -> String {
        user_id_for(username)
    }
}

fn issue(s: &Shared, username: &str, ttl: Duration) -> String {
    let cfg = s.config.lock().unwrap();
    let token = format!("{}!AQ{}", &cfg.org_id[..15.min(cfg.org_id.len())], uuid::Uuid::new_v4().simple());
    drop(cfg);
    s.world
        .lock()
        .unwrap()
        .tokens
        .insert(token.clone(), Token { username: username.into(), expires: Instant::now() + ttl });
    token
}

fn find(r: &Records, object: &str, id: &str) -> Option<usize> {
    r.find(object, id)
}

fn attributes(object: &str, id: &str) -> Value {
    json!({"type": object, "url": format!("/services/data/v62.0/sobjects/{object}/{id}")})
}

fn new_record(r: &mut Records, object: &str, fields: Map<String, Value>, username: &str) -> Value {
    r.counter += 1;
    let id = schema::make_id(&schema::key_prefix(object), r.counter);
    let now = sf_stamp(Utc::now());
    let uid = user_id_for(username);
    let mut rec = Map::new();
    rec.insert("attributes".into(), attributes(object, &id));
    rec.insert("Id".into(), json!(id));
    rec.insert("IsDeleted".into(), json!(false));
    rec.insert("CreatedDate".into(), json!(now));
    rec.insert("CreatedById".into(), json!(uid));
    if object == "Case" {
        r.case_number += 1;
        rec.insert("CaseNumber".into(), json!(format!("{:08}", r.case_number)));
        rec.insert("Status".into(), json!("New"));
        rec.insert("Priority".into(), json!("Medium"));
        rec.insert("IsClosed".into(), json!(false));
        rec.insert("IsEscalated".into(), json!(false));
        rec.insert("OwnerId".into(), json!(uid));
    }
    if object == "CaseComment" {
        rec.insert("IsPublished".into(), json!(false));
    }
    let mut v = Value::Object(rec);
    apply(&mut v, object, fields, username);
    v
}

fn apply(rec: &mut Value, object: &str, fields: Map<String, Value>, username: &str) {
    for (k, val) in fields {
        if k != "attributes" && k != "Id" {
            rec[&k] = val;
        }
    }
    if object == "Case" {
        let closed = rec["Status"] == "Closed";
        if closed && rec["IsClosed"] != true {
            rec["ClosedDate"] = json!(sf_datetime(Utc::now()));
        }
        rec["IsClosed"] = json!(closed);
    }
    let now = sf_stamp(Utc::now());
    rec["LastModifiedDate"] = json!(now);
    rec["SystemModstamp"] = json!(now);
    rec["LastModifiedById"] = json!(user_id_for(username));
}

/// Validate a create (`is_create`) or update body against describe metadata.
fn validate(r: &Records, object: &str, body: &Map<String, Value>, is_create: bool) -> Result<(), (StatusCode, Value)> {
    let Some(fields) = schema::describe(object) else {
        return Ok(()); // custom objects: anything goes
    };
    let unknown: Vec<&String> = body
        .keys()
        .filter(|k| *k != "attributes" && !k.ends_with("__c") && !fields.iter().any(|f| f.name == k.as_str()))
        .collect();
    if let Some(k) = unknown.first() {
        return Err(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            &format!("No such column '{k}' on sobject of type {object}"),
            None,
        ));
    }
    let read_only: Vec<&str> = body
        .keys()
        .filter_map(|k| fields.iter().find(|f| f.name == k.as_str()))
        .filter(|f| if is_create { !f.createable } else { !f.updateable })
        .map(|f| f.name)
        .filter(|n| *n != "Id")
        .collect();
    if !read_only.is_empty() {
        return Err(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            &format!(
                "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                read_only.join(", ")
            ),
            Some(&read_only),
        ));
    }
    if is_create {
        let missing: Vec<&str> = fields
            .iter()
            .filter(|f| f.required && body.get(f.name).is_none_or(|v| v.is_null() || v == ""))
            .map(|f| f.name)
            .collect();
        if !missing.is_empty() {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "REQUIRED_FIELD_MISSING",
                &format!("Required fields are missing: [{}]", missing.join(", ")),
                Some(&missing),
            ));
        }
    }
    for f in &fields {
        let Some(v) = body.get(f.name) else { continue };
        if !f.picklist.is_empty() && !v.is_null() {
            let s = v.as_str().unwrap_or_default();
            if !f.picklist.contains(&s) {
                return Err(sf_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    &format!("{}: bad value for restricted picklist field: {}", f.label, value_text(v)),
                    Some(&[f.name]),
                ));
            }
        }
        if f.length > 0
            && matches!(f.kind, "string" | "textarea" | "email" | "phone")
            && let Some(s) = v.as_str()
            && s.len() > f.length
        {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "STRING_TOO_LONG",
                &format!(
                    "{}: data value too large: {}... (max length={})",
                    f.label,
                    s.chars().take(20).collect::<String>(),
                    f.length
                ),
                Some(&[f.name]),
            ));
        }
        if let (Some(target), Some(id)) = (f.reference_to, v.as_str()) {
            if !schema::well_formed(id) {
                return Err(sf_error(
                    StatusCode::BAD_REQUEST,
                    "MALFORMED_ID",
                    &format!("{}: id value of incorrect type: {id}", f.label),
                    Some(&[f.name]),
                ));
            }
            if matches!(target, "Case" | "Account" | "Contact") && find(r, target, id).is_none() {
                return Err(sf_error(
                    StatusCode::BAD_REQUEST,
                    "FIELD_INTEGRITY_EXCEPTION",
                    &format!("{}: id value of incorrect type: {id}", f.label),
                    Some(&[f.name]),
                ));
            }
        }
        if f.kind == "boolean" && !v.is_boolean() {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                &format!(
                    "Cannot deserialize instance of boolean from {} value {}",
                    if v.is_string() { "VALUE_STRING" } else { "token" },
                    value_text(v)
                ),
                None,
            ));
        }
    }
    Ok(())
}

fn value_text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// Outcome of one sObject operation (also used for composite subrequests).
struct Outcome {
    status: StatusCode,
    body: Value,
    location: Option<String>,
}

fn err(e: (StatusCode, Value)) -> Outcome {
    Outcome { status: e.0, body: e.1, location: None }
}

struct Session<'a> {
    username: &'a str,
    call_options: Option<String>,
    version: &'a str,
}

/// Execute one sObject REST operation on the records (no counting, no auth).
fn sobject_op(
    w: &mut World,
    sess: &Session,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    body: &Value,
    changes: &mut Vec<Change>,
) -> Outcome {
    let Some((object, rest)) = rest.split_first() else {
        return err(not_found_err());
    };
    let object = *object;
    if !schema::object_known(object) {
        return err(sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", None));
    }
    let ver = sess.version;
    let obj_body = || body.as_object().cloned().unwrap_or_default();
    match (method.as_str(), rest) {
        ("GET", ["describe"]) => match schema::describe_json(object, ver) {
            Some(d) => Outcome { status: StatusCode::OK, body: d, location: None },
            None => err(not_found_err()),
        },
        ("POST", []) => {
            if !body.is_object() {
                return err(sf_error(
                    StatusCode::BAD_REQUEST,
                    "JSON_PARSER_ERROR",
                    "The request body must be a JSON object",
                    None,
                ));
            }
            let fields = obj_body();
            if let Err(e) = validate(&w.records, object, &fields, true) {
                return err(e);
            }
            let rec = new_record(&mut w.records, object, fields, sess.username);
            let id = rec["Id"].as_str().unwrap_or_default().to_string();
            w.records.push(object, rec.clone());
            changes.push(Change {
                object: object.into(),
                operation: "insert".into(),
                old: None,
                new: rec,
                username: sess.username.into(),
                call_options: sess.call_options.clone(),
            });
            Outcome {
                status: StatusCode::CREATED,
                body: json!({"id": id, "success": true, "errors": []}),
                location: Some(format!("/services/data/{ver}/sobjects/{object}/{id}")),
            }
        }
        ("GET", [id]) | ("PATCH", [id]) | ("DELETE", [id]) => {
            if !schema::well_formed(id) || !id.starts_with(&schema::key_prefix(object)) {
                return err(sf_error(
                    StatusCode::BAD_REQUEST,
                    "MALFORMED_ID",
                    &format!("{object} ID: id value of incorrect type: {id}"),
                    Some(&["Id"]),
                ));
            }
            let Some(idx) = find(&w.records, object, id) else {
                return err(not_found_err());
            };
            match method.as_str() {
                "GET" => {
                    let rec = &w.records.by_object[object][idx];
                    let wanted: Option<Vec<String>> = query.and_then(|q| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "fields")
                            .map(|(_, v)| v.split(',').map(|x| x.trim().to_string()).collect())
                    });
                    let out = match wanted {
                        Some(list) => {
                            let mut m = Map::new();
                            m.insert("attributes".into(), rec["attributes"].clone());
                            for f in list {
                                m.insert(f.clone(), rec.get(&f).cloned().unwrap_or(Value::Null));
                            }
                            m.insert("Id".into(), rec["Id"].clone());
                            Value::Object(m)
                        }
                        None => rec.clone(),
                    };
                    Outcome { status: StatusCode::OK, body: out, location: None }
                }
                "PATCH" => {
                    let fields = obj_body();
                    if let Err(e) = validate(&w.records, object, &fields, false) {
                        return err(e);
                    }
                    let (old, new) = w.records.update_at(object, idx, |rec| apply(rec, object, fields, sess.username));
                    changes.push(Change {
                        object: object.into(),
                        operation: "update".into(),
                        old: Some(old),
                        new,
                        username: sess.username.into(),
                        call_options: sess.call_options.clone(),
                    });
                    Outcome { status: StatusCode::NO_CONTENT, body: Value::Null, location: None }
                }
                _ => {
                    w.records.remove_at(object, idx);
                    Outcome { status: StatusCode::NO_CONTENT, body: Value::Null, location: None }
                }
            }
        }
        ("GET", [field, value]) => {
            // Read by external id.
            let ext_ok = schema::describe(object).is_none() || field.ends_with("__c");
            if !ext_ok {
                return err(sf_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("Provided external ID field does not exist or is not accessible: {field}"),
                    None,
                ));
            }
            let found: Vec<&Value> =
                w.records.matching(object, field, value).into_iter().map(|i| &w.records.by_object[object][i]).collect();
            match found.as_slice() {
                [] => err(not_found_err()),
                [one] => Outcome { status: StatusCode::OK, body: (*one).clone(), location: None },
                many => {
                    let urls: Vec<String> = many
                        .iter()
                        .map(|r| {
                            format!("/services/data/{ver}/sobjects/{object}/{}", r["Id"].as_str().unwrap_or_default())
                        })
                        .collect();
                    Outcome { status: StatusCode::MULTIPLE_CHOICES, body: json!(urls), location: None }
                }
            }
        }
        ("PATCH", [field, value]) => {
            // Upsert by external id.
            let ext_ok = match schema::describe(object) {
                Some(_) => field.ends_with("__c") || *field == "Id",
                None => true,
            };
            if !ext_ok {
                return err(sf_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("Provided external ID field does not exist or is not accessible: {field}"),
                    None,
                ));
            }
            let mut fields = obj_body();
            if fields.contains_key(*field) {
                return err(sf_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    &format!("The external ID field {field} must not be in the request body; it is given in the URL"),
                    Some(&[field]),
                ));
            }
            let matches: Vec<usize> = w.records.matching(object, field, value);
            match matches.as_slice() {
                [] => {
                    fields.insert(field.to_string(), json!(value));
                    if let Err(e) = validate(&w.records, object, &fields, true) {
                        return err(e);
                    }
                    let rec = new_record(&mut w.records, object, fields, sess.username);
                    let id = rec["Id"].as_str().unwrap_or_default().to_string();
                    w.records.push(object, rec.clone());
                    changes.push(Change {
                        object: object.into(),
                        operation: "insert".into(),
                        old: None,
                        new: rec,
                        username: sess.username.into(),
                        call_options: sess.call_options.clone(),
                    });
                    Outcome {
                        status: StatusCode::CREATED,
                        body: json!({"id": id, "success": true, "errors": [], "created": true}),
                        location: Some(format!("/services/data/{ver}/sobjects/{object}/{id}")),
                    }
                }
                [idx] => {
                    if let Err(e) = validate(&w.records, object, &fields, false) {
                        return err(e);
                    }
                    let (old, new) = w.records.update_at(object, *idx, |rec| apply(rec, object, fields, sess.username));
                    let id = new["Id"].clone();
                    changes.push(Change {
                        object: object.into(),
                        operation: "update".into(),
                        old: Some(old),
                        new,
                        username: sess.username.into(),
                        call_options: sess.call_options.clone(),
                    });
                    Outcome {
                        status: StatusCode::OK,
                        body: json!({"id": id, "success": true, "errors": [], "created": false}),
                        location: None,
                    }
                }
                many => {
                    let urls: Vec<String> = many
                        .iter()
                        .map(|i| {
                            format!(
                                "/services/data/{ver}/sobjects/{object}/{}",
                                w.records.by_object[object][*i]["Id"].as_str().unwrap_or_default()
                            )
                        })
                        .collect();
                    Outcome { status: StatusCode::MULTIPLE_CHOICES, body: json!(urls), location: None }
                }
            }
        }
        _ => err(not_found_err()),
    }
}

async fn handle(State(s): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let call_options = parts.headers.get("sforce-call-options").and_then(|v| v.to_str().ok()).map(str::to_string);
    let log = |status: u16| {
        s.world.lock().unwrap().requests.push(LoggedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
            body: body.clone(),
            status,
            call_options: call_options.clone(),
        });
    };
    match s.faults.decide() {
        Some(FaultKind::Drop) => {
            log(0);
            drop_connection()
        }
        Some(FaultKind::LoseAnswer) => {
            let resp = process(&s, &parts.method, &parts.uri, &parts.headers, &body, call_options.clone());
            log(resp.status().as_u16());
            drop_connection()
        }
        Some(FaultKind::Slow(d)) => tokio::time::sleep(d).await,
        Some(kind) => {
            let (status, body) = match kind {
                FaultKind::LockRow => sf_error(
                    StatusCode::BAD_REQUEST,
                    "UNABLE_TO_LOCK_ROW",
                    "unable to obtain exclusive access to this record or 1 records: 5005g00000LOCKEDAAA",
                    Some(&[]),
                ),
                FaultKind::RateLimited => {
                    sf_error(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", None)
                }
                _ => sf_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVER_UNAVAILABLE",
                    "Server temporarily unavailable, please try again later",
                    None,
                ),
            };
            log(status.as_u16());
            let mut r = (status, axum::Json(body)).into_response();
            add_limit_header(&s, &mut r);
            return r;
        }
        None => {}
    }
    let mut resp = process(&s, &parts.method, &parts.uri, &parts.headers, &body, call_options.clone());
    if parts.uri.path().starts_with("/services/data") {
        add_limit_header(&s, &mut resp);
    }
    log(resp.status().as_u16());
    resp
}

fn add_limit_header(s: &Shared, r: &mut Response) {
    let used = s.world.lock().unwrap().api_used;
    let limit = s.config.lock().unwrap().daily_api_limit;
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={used}/{limit}")) {
        r.headers_mut().insert("sforce-limit-info", v);
    }
}

fn json_resp((status, body): (StatusCode, Value)) -> Response {
    (status, axum::Json(body)).into_response()
}

fn process(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    call_options: Option<String>,
) -> Response {
    let path = uri.path();
    if path == "/services/oauth2/token" && method == Method::POST {
        return token_endpoint(s, body);
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["services", "data", version, rest @ ..] = segs.as_slice() else {
        return json_resp(not_found_err());
    };
    let version_ok = version.strip_prefix('v').and_then(|v| v.parse::<f64>().ok()).is_some();
    if !version_ok {
        return json_resp(not_found_err());
    }
    // Session check.
    let token = headers
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
    let config = s.config.lock().unwrap().clone();
    // The daily limit: every authenticated REST call counts; composite counts once.
    {
        let mut w = s.world.lock().unwrap();
        if w.api_used >= config.daily_api_limit {
            return json_resp(sf_error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
                None,
            ));
        }
        w.api_used += 1;
    }
    let body_json: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return json_resp(sf_error(
                    StatusCode::BAD_REQUEST,
                    "JSON_PARSER_ERROR",
                    &format!("Unexpected character: {e}"),
                    None,
                ));
            }
        }
    };
    let sess = Session { username: &username, call_options, version };
    match (method.as_str(), rest) {
        ("GET", ["limits"]) => {
            let w = s.world.lock().unwrap();
            let max = config.daily_api_limit;
            json_resp((
                StatusCode::OK,
                json!({
                    "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(w.api_used)},
                    "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
                    "DataStorageMB": {"Max": 5, "Remaining": 5},
                }),
            ))
        }
        ("GET", ["sobjects"]) => {
            let list: Vec<Value> = ["Case", "CaseComment", "Account", "Contact"]
                .iter()
                .map(|o| json!({"name": o, "keyPrefix": schema::key_prefix(o)}))
                .collect();
            json_resp((StatusCode::OK, json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list})))
        }
        ("POST", ["composite"]) => composite(s, &config, &sess, &body_json),
        ("GET", ["query"]) => {
            let q = uri.query().and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "q"));
            let Some((_, q)) = q else {
                return json_resp(sf_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", "no query given (q=...)", None));
            };
            let w = s.world.lock().unwrap();
            json_resp(soql::run(&w.records, version, &q).unwrap_or_else(|e| e))
        }
        (_, ["sobjects", rest @ ..]) => {
            let mut changes = Vec::new();
            let out = {
                let mut w = s.world.lock().unwrap();
                let out = sobject_op(&mut w, &sess, method, rest, uri.query(), &body_json, &mut changes);
                w.changes.extend(changes.iter().cloned());
                out
            };
            notify(s, &config, &changes);
            outcome_response(out)
        }
        _ => json_resp(not_found_err()),
    }
}

fn outcome_response(o: Outcome) -> Response {
    let mut r = if o.status == StatusCode::NO_CONTENT {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (o.status, axum::Json(o.body)).into_response()
    };
    if let Some(loc) = o.location
        && let Ok(v) = HeaderValue::from_str(&loc)
    {
        r.headers_mut().insert("location", v);
    }
    r
}

/// Replace `@{ref.path}` in every string of `v` with values from earlier results.
fn substitute(v: &Value, results: &HashMap<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(substitute_str(s, results)?),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, results)).collect::<Result<_, _>>()?),
        Value::Object(o) => Value::Object(
            o.iter().map(|(k, x)| Ok((k.clone(), substitute(x, results)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute_str(s: &str, results: &HashMap<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let expr = &after[..end];
        let mut parts = expr.split('.');
        let refid = parts.next().unwrap_or_default();
        let mut cur = results.get(refid).ok_or_else(|| expr.to_string())?;
        for p in parts {
            cur = match p.parse::<usize>() {
                Ok(i) if cur.is_array() => &cur[i],
                _ => &cur[p],
            };
        }
        if cur.is_null() {
            return Err(expr.to_string());
        }
        out.push_str(&value_text(cur));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn composite(s: &Shared, config: &SfSimConfig, sess: &Session, body: &Value) -> Response {
    let Some(subs) = body["compositeRequest"].as_array() else {
        return json_resp(sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "compositeRequest: the request body must contain a compositeRequest array",
            None,
        ));
    };
    if subs.len() > 25 {
        return json_resp(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_BATCH_REQUEST",
            &format!("Composite request cannot have more than 25 subrequests; received {}", subs.len()),
            None,
        ));
    }
    let all_or_none = body["allOrNone"] == true;
    let mut w = s.world.lock().unwrap();
    let saved = w.records.begin();
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut responses: Vec<Value> = Vec::new();
    let mut changes = Vec::new();
    let mut failed = false;
    for sub in subs {
        let ref_id = sub["referenceId"].as_str().unwrap_or_default().to_string();
        if failed && all_or_none {
            responses.push(json!({"body": [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}], "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref_id}));
            continue;
        }
        let method = sub["method"].as_str().unwrap_or("GET").parse::<Method>().unwrap_or(Method::GET);
        let url = sub["url"].as_str().unwrap_or_default();
        let sub_body = sub.get("body").cloned().unwrap_or(Value::Null);
        let outcome = match (substitute_str(url, &results), substitute(&sub_body, &results)) {
            (Ok(url), Ok(b)) => {
                let (path, query) = url
                    .split_once('?')
                    .map(|(p, q)| (p.to_string(), Some(q.to_string())))
                    .unwrap_or((url.clone(), None));
                let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
                match segs.as_slice() {
                    ["services", "data", _, "sobjects", rest @ ..] => {
                        sobject_op(&mut w, sess, &method, rest, query.as_deref(), &b, &mut changes)
                    }
                    _ => err(not_found_err()),
                }
            }
            (Err(expr), _) | (_, Err(expr)) => err(sf_error(
                StatusCode::BAD_REQUEST,
                "PROCESSING_HALTED",
                &format!(
                    "Invalid reference specified. No value for {expr} found in {}. Provided referenceId ({}) must match a referenceId in a previous subrequest in the same request.",
                    expr.split('.').next().unwrap_or_default(),
                    expr.split('.').next().unwrap_or_default()
                ),
                None,
            )),
        };
        if outcome.status.is_client_error() || outcome.status.is_server_error() {
            failed = true;
        }
        results.insert(ref_id.clone(), outcome.body.clone());
        let mut headers = json!({});
        if let Some(loc) = &outcome.location {
            headers["Location"] = json!(loc);
        }
        responses.push(json!({"body": outcome.body, "httpHeaders": headers, "httpStatusCode": outcome.status.as_u16(), "referenceId": ref_id}));
    }
    w.records.end(saved, failed && all_or_none);
    if failed && all_or_none {
        // Rolled back: mark every subrequest that had succeeded as halted.
        changes.clear();
        for r in responses.iter_mut() {
            let code = r["httpStatusCode"].as_u64().unwrap_or(0);
            if code < 400 {
                r["body"] = json!([{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}]);
                r["httpStatusCode"] = json!(400);
                r["httpHeaders"] = json!({});
            }
        }
    }
    w.changes.extend(changes.iter().cloned());
    drop(w);
    notify(s, config, &changes);
    json_resp((StatusCode::OK, json!({ "compositeResponse": responses })))
}

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

fn token_endpoint(s: &Shared, body: &Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
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

/// Send trigger posts and outbound messages for committed changes, in the background.
fn notify(s: &Shared, config: &SfSimConfig, changes: &[Change]) {
    if changes.is_empty() {
        return;
    }
    if let Some(target) = &config.trigger {
        // One trigger invocation per object and operation, like Apex batches of up to 200.
        let mut groups: Vec<(String, String, Vec<Change>)> = Vec::new();
        for c in changes.iter().filter(|c| target.objects.is_empty() || target.objects.contains(&c.object)) {
            match groups.iter_mut().find(|g| g.0 == c.object && g.1 == c.operation) {
                Some(g) => g.2.push(c.clone()),
                None => groups.push((c.object.clone(), c.operation.clone(), vec![c.clone()])),
            }
        }
        for (object, operation, list) in groups {
            let poster = TriggerPoster::new(target.secrets.clone(), &config.org_id);
            let username = list[0].username.clone();
            let olds: Option<Vec<Value>> =
                if operation == "update" { Some(list.iter().filter_map(|c| c.old.clone()).collect()) } else { None };
            let news: Vec<Value> = list.iter().map(|c| c.new.clone()).collect();
            let payload =
                poster.payload(&object, &operation, (&user_id_for(&username), &username), olds.as_deref(), &news);
            let url = target.url.clone();
            tokio::spawn(async move {
                let _ = poster.post(&url, &payload).await;
            });
        }
    }
    if let Some((url, objects)) = &config.outbound {
        for c in changes.iter().filter(|c| objects.is_empty() || objects.contains(&c.object)) {
            let messenger = OutboundMessenger::new(&config.org_id, &s.base_url);
            let xml = messenger.envelope(&c.object, std::slice::from_ref(&c.new));
            let url = url.clone();
            tokio::spawn(async move {
                let _ = messenger.send(&url, &xml).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_yields_the_committed_public_key() {
        let keys = test_keys();
        let from_cert = public_key_pem(keys.certificate_pem).expect("the test certificate parses");
        assert_eq!(from_cert.trim(), keys.public_key_pem.trim());
    }
}
