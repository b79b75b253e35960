//! A stateful PagerDuty REST API simulator.
//!
//! Every request is validated against PagerDuty's OpenAPI document ([`openapi`]) and answered the way
//! PagerDuty answers: errors are `{"error":{"message","code","errors"}}` with PagerDuty's codes
//! (2001 Invalid Input Provided, 2006 authentication, 2100 Not Found, 2020 rate limit). Responses carry
//! `ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset`.
//!
//! Seeded world of [`PdSimConfig::default`]: token `sim-token`; users `PUSR001` (`bridge@example.com`,
//! "Bridge Bot") and `PUSR002` (`oncall@example.com`, "On Call"); service `PSVC001` ("Checkout") on
//! escalation policy `PEP0001` (targets `PUSR002`), service `PSVC002` ("Billing"); priorities `PPRI001`
//! P1 .. `PPRI005` P5; incident workflow `PWFL001`; automation action `PACT001`.

pub mod openapi;
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::faults::{FaultConfig, FaultKind, Faults, drop_connection};
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
    pub users: Vec<PdUser>,
    pub services: Vec<PdService>,
    pub escalation_policies: Vec<PdEscalationPolicy>,
    pub priorities: Vec<PdPriority>,
    pub incident_workflows: Vec<String>,
    pub automation_actions: Vec<String>,
    pub rate_limit: RateLimit,
    pub faults: FaultConfig,
    /// Subdomain used in `html_url` (`https://{subdomain}.pagerduty.com/...`).
    pub subdomain: String,
    pub webhook: Option<WebhookTarget>,
}

impl Default for PdSimConfig {
    fn default() -> Self {
        let user = |id: &str, email: &str, name: &str| PdUser { id: id.into(), email: email.into(), name: name.into() };
        PdSimConfig {
            port: 0,
            tokens: vec!["sim-token".into()],
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
            rate_limit: RateLimit { requests: 960, window: Duration::from_secs(60) },
            faults: FaultConfig::none(),
            subdomain: "sim".into(),
            webhook: None,
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

#[derive(Default)]
struct World {
    incidents: Vec<Value>,
    /// Incident id -> its index in `incidents` (incidents are never removed).
    incident_index: HashMap<String, usize>,
    /// `incident_key` -> indexes in `incidents`, oldest first: lookups by id or dedup key stay
    /// O(1) however many incidents a long run creates, instead of a scan of every incident.
    incidents_by_key: HashMap<String, Vec<usize>>,
    next_number: u64,
    next_id: u64,
    notes: HashMap<String, Vec<Value>>,
    responder_requests: Vec<Value>,
    workflow_instances: Vec<Value>,
    invocations: Vec<Value>,
    subscriptions: Vec<Value>,
    webhook_events: Vec<Value>,
    requests: Vec<LoggedRequest>,
    windows: HashMap<String, (Instant, u32)>,
}

impl World {
    fn incident_pos(&self, id: &str) -> Option<usize> {
        self.incident_index.get(id).copied()
    }

    fn incident(&self, id: &str) -> Option<&Value> {
        self.incident_pos(id).map(|i| &self.incidents[i])
    }

    /// Incidents with `incident_key`, oldest first.
    fn incidents_with_key<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a Value> + 'a {
        self.incidents_by_key.get(key).into_iter().flatten().map(|i| &self.incidents[*i])
    }

    fn push_incident(&mut self, incident: Value) {
        let pos = self.incidents.len();
        if let Some(id) = incident["id"].as_str() {
            self.incident_index.insert(id.to_string(), pos);
        }
        if let Some(key) = incident["incident_key"].as_str() {
            self.incidents_by_key.entry(key.to_string()).or_default().push(pos);
        }
        self.incidents.push(incident);
    }
}

struct Shared {
    config: Mutex<PdSimConfig>,
    base_url: String,
    faults: Faults,
    world: Mutex<World>,
}

/// A running simulator; stops when dropped.
pub struct PagerdutySim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

/// Serve `router` on an already bound listener until the returned sender is dropped.
pub(crate) fn spawn_server(listener: tokio::net::TcpListener, router: Router) -> oneshot::Sender<()> {
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    tx
}

impl PagerdutySim {
    /// Start on `127.0.0.1:{config.port}` (0 = any free port). Must be called inside a Tokio runtime.
    pub async fn start(config: PdSimConfig) -> PagerdutySim {
        let _ = &*openapi::SPEC; // parse the spec now, not on the first request
        let listener_port = config.port;
        // The base URL is only known after binding; bind first, then build the state.
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", listener_port)).await.expect("bind PagerDuty simulator");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            faults: Faults::new(config.faults.clone()),
            config: Mutex::new(config),
            base_url: format!("http://{addr}"),
            world: Mutex::new(World { next_number: 1, next_id: 1, ..Default::default() }),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let tx = spawn_server(listener, router);
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
    pub fn notes(&self, incident_id: &str) -> Vec<Value> {
        self.shared.world.lock().unwrap().notes.get(incident_id).cloned().unwrap_or_default()
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
    pub fn webhook_subscriptions(&self) -> Vec<Value> {
        self.shared.world.lock().unwrap().subscriptions.clone()
    }
    /// Every webhook envelope the simulator emitted (whether or not a target was configured).
    pub fn webhook_events(&self) -> Vec<Value> {
        self.shared.world.lock().unwrap().webhook_events.clone()
    }
    /// How many webhook envelopes the simulator emitted (cheap enough to poll).
    pub fn webhook_event_count(&self) -> usize {
        self.shared.world.lock().unwrap().webhook_events.len()
    }
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.world.lock().unwrap().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.shared.world.lock().unwrap().requests.clear();
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// PagerDuty's error body.
pub fn pd_error(status: StatusCode, code: u32, message: &str, errors: &[String]) -> Response {
    let mut err = json!({"message": message, "code": code});
    if !errors.is_empty() {
        err["errors"] = json!(errors);
    }
    (status, axum::Json(json!({ "error": err }))).into_response()
}

fn invalid(errors: &[&str]) -> Response {
    let errors: Vec<String> = errors.iter().map(|s| s.to_string()).collect();
    pd_error(StatusCode::BAD_REQUEST, 2001, "Invalid Input Provided", &errors)
}

fn not_found() -> Response {
    pd_error(StatusCode::NOT_FOUND, 2100, "Not Found", &[])
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn handle(State(s): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let headers = parts.headers.clone();
    let log = |s: &Shared, status: u16| {
        s.world.lock().unwrap().requests.push(LoggedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: headers.clone(),
            body: body.clone(),
            status,
        });
    };
    let mut slow = None;
    match s.faults.decide() {
        Some(FaultKind::LoseAnswer) => {
            let resp = process(&s, &method, &uri, &headers, &body);
            log(&s, resp.status().as_u16());
            drop_connection()
        }
        Some(FaultKind::Drop) => {
            log(&s, 0);
            drop_connection()
        }
        Some(FaultKind::ServerError) | Some(FaultKind::LockRow) => {
            let r = pd_error(StatusCode::INTERNAL_SERVER_ERROR, 2000, "Internal Error", &[]);
            log(&s, 500);
            return r;
        }
        Some(FaultKind::RateLimited) => {
            let limit = s.config.lock().unwrap().rate_limit.clone();
            let mut r = rate_limited();
            set_rate_headers(&mut r, limit.requests, 0, limit.window.as_secs().max(1));
            log(&s, 429);
            return r;
        }
        Some(FaultKind::Slow(d)) => slow = Some(d),
        None => {}
    }
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    let resp = process(&s, &method, &uri, &headers, &body);
    log(&s, resp.status().as_u16());
    resp
}

fn rate_limited() -> Response {
    pd_error(StatusCode::TOO_MANY_REQUESTS, 2020, "Rate Limit Exceeded", &[])
}

fn set_rate_headers(r: &mut Response, limit: u32, remaining: u32, reset: u64) {
    let h = r.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(limit));
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(reset));
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?.trim();
    let rest = v.strip_prefix("Token ").or_else(|| v.strip_prefix("token "))?;
    Some(rest.trim().strip_prefix("token=")?.trim().to_string())
}

fn process(s: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let spec = &*openapi::SPEC;
    let path = uri.path();
    if spec.match_path(path).is_none() {
        return not_found();
    }
    // Authentication comes first, like PagerDuty.
    let config = s.config.lock().unwrap().clone();
    let Some(token) = token_of(headers).filter(|t| config.tokens.contains(t)) else {
        return pd_error(StatusCode::UNAUTHORIZED, 2006, "Authentication failed", &[]);
    };
    // Fixed-window rate limit per token.
    let (remaining, reset) = {
        let mut w = s.world.lock().unwrap();
        let now = Instant::now();
        let entry = w.windows.entry(token).or_insert((now, 0));
        if now.duration_since(entry.0) >= config.rate_limit.window {
            *entry = (now, 0);
        }
        let reset = config.rate_limit.window.saturating_sub(now.duration_since(entry.0)).as_secs_f64().ceil() as u64;
        if entry.1 >= config.rate_limit.requests {
            let mut r = rate_limited();
            set_rate_headers(&mut r, config.rate_limit.requests, 0, reset.max(1));
            return r;
        }
        entry.1 += 1;
        (config.rate_limit.requests - entry.1, reset.max(1))
    };
    let mut resp = match spec.validate(method, path, headers, body) {
        Err(v) => violation_response(v),
        Ok(()) => route(s, &config, method, uri, headers, body),
    };
    set_rate_headers(&mut resp, config.rate_limit.requests, remaining, reset);
    resp
}

fn violation_response(v: openapi::Violation) -> Response {
    use openapi::Violation::*;
    match v {
        UnknownPath => not_found(),
        MethodNotAllowed => pd_error(StatusCode::METHOD_NOT_ALLOWED, 2100, "Method Not Allowed", &[]),
        // As PagerDuty answers (go-pagerduty#32, pdpyras#78): HTTP 400, code 2016, reason in `message`.
        MissingHeader(name) if name.eq_ignore_ascii_case("from") => pd_error(
            StatusCode::BAD_REQUEST,
            2016,
            "You must specify a user's email address in the \"From\" header to perform this action",
            &[],
        ),
        MissingHeader(name) if name.eq_ignore_ascii_case("content-type") => invalid(&["params must be a Hash"]),
        MissingHeader(name) => invalid(&[&format!("The {name} header is required")]),
        BadHeader { name, value } if name.eq_ignore_ascii_case("accept") => {
            invalid(&[&format!("Accept header {value:?} is not supported; use {}", openapi::ACCEPT_V2)])
        }
        // Without a JSON Content-Type PagerDuty cannot parse the body and answers with its generic
        // "params must be a Hash" (go-pagerduty#89).
        BadHeader { name, .. } if name.eq_ignore_ascii_case("content-type") => invalid(&["params must be a Hash"]),
        BadHeader { name, value } => invalid(&[&format!("The {name} header value {value:?} is invalid")]),
        InvalidBody(errors) => pd_error(StatusCode::BAD_REQUEST, 2001, "Invalid Input Provided", &errors),
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
}

fn query_params(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

fn reference(base: &str, html_base: &str, kind: &str, plural: &str, id: &str, summary: &str) -> Value {
    json!({
        "id": id,
        "type": format!("{kind}_reference"),
        "summary": summary,
        "self": format!("{base}/{plural}/{id}"),
        "html_url": format!("{html_base}/{plural}/{id}"),
    })
}

struct Ctx<'a> {
    base: &'a str,
    html: String,
    config: &'a PdSimConfig,
}

impl Ctx<'_> {
    fn user_json(&self, u: &PdUser) -> Value {
        json!({
            "id": u.id, "type": "user", "summary": u.name, "name": u.name, "email": u.email,
            "self": format!("{}/users/{}", self.base, u.id), "html_url": format!("{}/users/{}", self.html, u.id),
            "role": "admin", "time_zone": "UTC", "teams": [], "contact_methods": [], "notification_rules": [],
        })
    }
    fn user_ref(&self, u: &PdUser) -> Value {
        reference(self.base, &self.html, "user", "users", &u.id, &u.name)
    }
    fn service_ref(&self, sv: &PdService) -> Value {
        reference(self.base, &self.html, "service", "services", &sv.id, &sv.name)
    }
    fn ep_ref(&self, ep: &PdEscalationPolicy) -> Value {
        reference(self.base, &self.html, "escalation_policy", "escalation_policies", &ep.id, &ep.name)
    }
    fn priority_json(&self, p: &PdPriority) -> Value {
        json!({"id": p.id, "type": "priority", "summary": p.name, "name": p.name, "description": "",
               "self": format!("{}/priorities/{}", self.base, p.id), "html_url": null})
    }
    fn user_by_id(&self, id: &str) -> Option<&PdUser> {
        self.config.users.iter().find(|u| u.id == id)
    }
    fn ep(&self, id: &str) -> Option<&PdEscalationPolicy> {
        self.config.escalation_policies.iter().find(|e| e.id == id)
    }
    fn assignments_for_ep(&self, ep: &PdEscalationPolicy) -> Vec<Value> {
        ep.user_ids
            .iter()
            .filter_map(|id| self.user_by_id(id))
            .map(|u| json!({"at": now(), "assignee": self.user_ref(u)}))
            .collect()
    }
}

fn from_user<'a>(config: &'a PdSimConfig, headers: &HeaderMap) -> Option<&'a PdUser> {
    let email = headers.get("from").and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    config.users.iter().find(|u| u.email.eq_ignore_ascii_case(email))
}

/// The `From` header names nobody on the account.
fn unknown_requester() -> Response {
    // HTTP 400 `{"error":{"message":"Requester User Not Found","code":1008}}` (dropbox/pygerduty#64).
    pd_error(StatusCode::BAD_REQUEST, 1008, "Requester User Not Found", &[])
}

fn route(s: &Shared, config: &PdSimConfig, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let ctx = Ctx { base: &s.base_url, html: format!("https://{}.pagerduty.com", config.subdomain), config };
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let segs = segments(uri.path());
    let q = query_params(uri);
    let mut w = s.world.lock().unwrap();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["incidents"]) => create_incident(s, &ctx, &mut w, headers, &body),
        ("GET", ["incidents"]) => {
            let key = q.iter().find(|(k, _)| k == "incident_key").map(|(_, v)| v.clone());
            let statuses: Vec<&String> =
                q.iter().filter(|(k, _)| k == "statuses[]" || k == "statuses").map(|(_, v)| v).collect();
            let services: Vec<&String> =
                q.iter().filter(|(k, _)| k == "service_ids[]" || k == "service_ids").map(|(_, v)| v).collect();
            let limit: usize =
                q.iter().find(|(k, _)| k == "limit").and_then(|(_, v)| v.parse().ok()).unwrap_or(25).min(100);
            let offset: usize = q.iter().find(|(k, _)| k == "offset").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            let candidates: Box<dyn Iterator<Item = &Value>> = match &key {
                Some(k) => Box::new(w.incidents_with_key(k)),
                None => Box::new(w.incidents.iter()),
            };
            let all: Vec<Value> = candidates
                .filter(|i| statuses.is_empty() || statuses.iter().any(|st| i["status"] == st.as_str()))
                .filter(|i| services.is_empty() || services.iter().any(|sv| i["service"]["id"] == sv.as_str()))
                .cloned()
                .collect();
            let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
            ok(
                StatusCode::OK,
                json!({"incidents": page, "limit": limit, "offset": offset, "more": offset + limit < all.len(), "total": null}),
            )
        }
        ("GET", ["incidents", id]) => match w.incident(id) {
            Some(i) => ok(StatusCode::OK, json!({ "incident": i })),
            None => not_found(),
        },
        ("PUT", ["incidents", id]) => update_incident(s, &ctx, &mut w, headers, id, &body),
        ("GET", ["incidents", id, "notes"]) => {
            if w.incident(id).is_none() {
                return not_found();
            }
            ok(StatusCode::OK, json!({"notes": w.notes.get(*id).cloned().unwrap_or_default()}))
        }
        ("POST", ["incidents", id, "notes"]) => {
            let Some(user) = from_user(config, headers) else {
                return unknown_requester();
            };
            let Some(incident) = w.incident(id).cloned() else {
                return not_found();
            };
            let nid = next_id(&mut w, 'N');
            let note = json!({
                "id": nid, "user": ctx.user_ref(user), "content": body["note"]["content"],
                "created_at": now(), "channel": {"summary": "The PagerDuty website or APIs", "type": "web_trigger"},
            });
            w.notes.entry(id.to_string()).or_default().push(note.clone());
            let ev = webhook::note_event(&incident, &note, Some(&ctx.user_json(user)), Utc::now());
            emit(s, &mut w, config, ev);
            ok(StatusCode::CREATED, json!({ "note": note }))
        }
        ("POST", ["incidents", id, "responder_requests"]) => {
            let Some(incident) = w.incident(id).cloned() else {
                return not_found();
            };
            let Some(requester) = body["requester_id"].as_str().and_then(|r| ctx.user_by_id(r)) else {
                return invalid(&["Requester not found"]);
            };
            let targets = body["responder_request_targets"].clone();
            let rr = json!({
                "incident": {"id": id, "type": "incident_reference", "summary": incident["summary"], "self": incident["self"], "html_url": incident["html_url"]},
                "requester": ctx.user_ref(requester),
                "requested_at": now(),
                "message": body["message"],
                "responder_request_targets": targets,
            });
            w.responder_requests.push(rr.clone());
            let ev = webhook::incident_event(
                "incident.responder.added",
                &incident,
                Some(&ctx.user_json(requester)),
                Utc::now(),
            );
            emit(s, &mut w, config, ev);
            ok(StatusCode::OK, json!({ "responder_request": rr }))
        }
        ("POST", ["incident_workflows", wf, "instances"]) => {
            if !config.incident_workflows.iter().any(|x| x == wf) {
                return not_found();
            }
            let inc_id = body["incident_workflow_instance"]["incident"]["id"].as_str().unwrap_or_default().to_string();
            if w.incident(&inc_id).is_none() {
                return invalid(&["Incident not found"]);
            }
            let iid = next_id(&mut w, 'W');
            let inst = json!({"id": iid, "type": "incident_workflow_instance", "workflow": {"id": wf, "type": "incident_workflow_reference"},
                              "incident": {"id": inc_id, "type": "incident_reference"}});
            w.workflow_instances.push(inst.clone());
            ok(StatusCode::CREATED, json!({ "incident_workflow_instance": inst }))
        }
        ("POST", ["automation_actions", "actions", action, "invocations"]) => {
            if !config.automation_actions.iter().any(|x| x == action) {
                return not_found();
            }
            let inc_id = body["invocation"]["metadata"]["incident_id"].as_str().unwrap_or_default().to_string();
            if w.incident(&inc_id).is_none() {
                return invalid(&["Incident not found"]);
            }
            let iid = next_id(&mut w, 'V');
            let inv = json!({"id": iid, "type": "invocation", "action_snapshot": {"id": action, "name": format!("Action {action}")},
                             "state": "prepared", "metadata": body["invocation"]["metadata"], "timing": [{"state": "prepared", "creation_timestamp": now()}]});
            w.invocations.push(inv.clone());
            ok(StatusCode::CREATED, json!({ "invocation": inv }))
        }
        ("GET", ["priorities"]) => {
            let p: Vec<Value> = config.priorities.iter().map(|p| ctx.priority_json(p)).collect();
            ok(StatusCode::OK, json!({"priorities": p, "limit": 25, "offset": 0, "more": false, "total": null}))
        }
        ("GET", ["users"]) => {
            let query = q.iter().find(|(k, _)| k == "query").map(|(_, v)| v.to_lowercase());
            let users: Vec<Value> = config
                .users
                .iter()
                .filter(|u| {
                    query
                        .as_ref()
                        .is_none_or(|qq| u.email.to_lowercase().contains(qq) || u.name.to_lowercase().contains(qq))
                })
                .map(|u| ctx.user_json(u))
                .collect();
            ok(StatusCode::OK, json!({"users": users, "limit": 25, "offset": 0, "more": false, "total": null}))
        }
        ("GET", ["users", id]) => match ctx.user_by_id(id) {
            Some(u) => ok(StatusCode::OK, json!({"user": ctx.user_json(u)})),
            None => not_found(),
        },
        ("GET", ["services", id]) => match config.services.iter().find(|x| x.id == *id) {
            Some(sv) => {
                let ep = ctx.ep(&sv.escalation_policy_id);
                let mut v = ctx.service_ref(sv);
                v["type"] = json!("service");
                v["name"] = json!(sv.name);
                v["status"] = json!("active");
                v["escalation_policy"] = ep.map(|e| ctx.ep_ref(e)).unwrap_or(Value::Null);
                v["teams"] = json!([]);
                ok(StatusCode::OK, json!({ "service": v }))
            }
            None => not_found(),
        },
        ("GET", ["escalation_policies", id]) => match ctx.ep(id) {
            Some(ep) => {
                let mut v = ctx.ep_ref(ep);
                v["type"] = json!("escalation_policy");
                v["name"] = json!(ep.name);
                let targets: Vec<Value> =
                    ep.user_ids.iter().filter_map(|u| ctx.user_by_id(u)).map(|u| ctx.user_ref(u)).collect();
                v["escalation_rules"] =
                    json!([{"id": format!("R{}", ep.id), "escalation_delay_in_minutes": 30, "targets": targets}]);
                v["num_loops"] = json!(0);
                ok(StatusCode::OK, json!({ "escalation_policy": v }))
            }
            None => not_found(),
        },
        ("GET", ["webhook_subscriptions"]) => {
            let subs: Vec<Value> = w.subscriptions.iter().map(hide_secret).collect();
            ok(
                StatusCode::OK,
                json!({"webhook_subscriptions": subs, "limit": 25, "offset": 0, "more": false, "total": null}),
            )
        }
        ("POST", ["webhook_subscriptions"]) => {
            let mut sub = body["webhook_subscription"].clone();
            let id = next_id(&mut w, 'S');
            let secret = {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes().repeat(3))
            };
            sub["id"] = json!(id);
            sub["type"] = json!("webhook_subscription");
            sub["active"] = json!(sub["active"].as_bool().unwrap_or(true));
            sub["delivery_method"]["id"] = json!(format!("D{}", &id[1..]));
            sub["delivery_method"]["secret"] = json!(secret);
            sub["delivery_method"]["temporarily_disabled"] = json!(false);
            w.subscriptions.push(sub.clone());
            ok(StatusCode::CREATED, json!({ "webhook_subscription": sub }))
        }
        ("GET", ["webhook_subscriptions", id]) => match w.subscriptions.iter().find(|x| x["id"] == *id) {
            Some(sub) => ok(StatusCode::OK, json!({ "webhook_subscription": hide_secret(sub) })),
            None => not_found(),
        },
        ("PUT", ["webhook_subscriptions", id]) => match w.subscriptions.iter_mut().find(|x| x["id"] == *id) {
            Some(sub) => {
                if let Some(upd) = body["webhook_subscription"].as_object() {
                    for (k, v) in upd {
                        if k == "delivery_method" {
                            if let Some(dm) = v.as_object() {
                                for (dk, dv) in dm {
                                    if dk != "secret" {
                                        sub["delivery_method"][dk] = dv.clone();
                                    }
                                }
                            }
                        } else if k != "id" && k != "type" {
                            sub[k] = v.clone();
                        }
                    }
                }
                ok(StatusCode::OK, json!({ "webhook_subscription": hide_secret(sub) }))
            }
            None => not_found(),
        },
        ("DELETE", ["webhook_subscriptions", id]) => {
            let before = w.subscriptions.len();
            w.subscriptions.retain(|x| x["id"] != *id);
            if w.subscriptions.len() == before { not_found() } else { StatusCode::NO_CONTENT.into_response() }
        }
        // Valid per the spec but outside what the simulator models.
        _ => pd_error(StatusCode::NOT_FOUND, 2100, "Not Found", &["This endpoint is not simulated".into()]),
    }
}

fn hide_secret(sub: &Value) -> Value {
    let mut s = sub.clone();
    s["delivery_method"]["secret"] = Value::Null;
    s
}

/// Deterministic PagerDuty-looking ids: a letter and six base-36 digits.
fn next_id(w: &mut World, prefix: char) -> String {
    let mut n = w.next_id;
    w.next_id += 1;
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize];
        n /= 36;
    }
    format!("{prefix}{}", String::from_utf8_lossy(&digits))
}

fn is_open(i: &Value) -> bool {
    i["status"] != "resolved"
}

fn create_incident(s: &Shared, ctx: &Ctx, w: &mut World, headers: &HeaderMap, body: &Value) -> Response {
    let Some(user) = from_user(ctx.config, headers) else {
        return unknown_requester();
    };
    let inc = &body["incident"];
    let Some(service) = inc["service"]["id"].as_str().and_then(|id| ctx.config.services.iter().find(|x| x.id == id))
    else {
        return invalid(&["Service not found"]);
    };
    let key = inc["incident_key"].as_str().map(str::to_string);
    if let Some(k) = &key
        && w.incidents_with_key(k).any(|i| is_open(i) && i["service"]["id"] == service.id.as_str())
    {
        return invalid(&["Open incident with matching dedup key already exists on this service"]);
    }
    let priority = match inc["priority"]["id"].as_str() {
        Some(pid) => match ctx.config.priorities.iter().find(|p| p.id == pid) {
            Some(p) => ctx.priority_json(p),
            None => return invalid(&["Priority not found"]),
        },
        None => Value::Null,
    };
    let ep_id = inc["escalation_policy"]["id"].as_str().unwrap_or(&service.escalation_policy_id).to_string();
    let Some(ep) = ctx.ep(&ep_id) else {
        return invalid(&["Escalation policy not found"]);
    };
    let assignments: Vec<Value> = match inc["assignments"].as_array() {
        Some(list) if !list.is_empty() => {
            let mut out = Vec::new();
            for a in list {
                match a["assignee"]["id"].as_str().and_then(|id| ctx.user_by_id(id)) {
                    Some(u) => out.push(json!({"at": now(), "assignee": ctx.user_ref(u)})),
                    None => return invalid(&["Assignee not found"]),
                }
            }
            out
        }
        _ => ctx.assignments_for_ep(ep),
    };
    let id = {
        let n = next_id(w, 'Q');
        format!("Q{}SIM{}", &n[1..], &n[4..])
    };
    let number = w.next_number;
    w.next_number += 1;
    let title = inc["title"].as_str().unwrap_or_default().to_string();
    let t = now();
    let incident = json!({
        "id": id,
        "type": "incident",
        "summary": format!("[#{number}] {title}"),
        "self": format!("{}/incidents/{id}", ctx.base),
        "html_url": format!("{}/incidents/{id}", ctx.html),
        "incident_number": number,
        "title": title,
        "description": title,
        "created_at": t,
        "updated_at": t,
        "last_status_change_at": t,
        "resolved_at": null,
        "status": "triggered",
        "incident_key": key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
        "service": ctx.service_ref(service),
        "assignments": assignments,
        "assigned_via": "escalation_policy",
        "acknowledgements": [],
        "last_status_change_by": ctx.service_ref(service),
        "escalation_policy": ctx.ep_ref(ep),
        "teams": [],
        "priority": priority,
        "urgency": inc["urgency"].as_str().unwrap_or("high"),
        "body": {"type": "incident_body", "details": inc["body"].get("details").cloned().unwrap_or(json!(""))},
        "conference_bridge": inc.get("conference_bridge").cloned().unwrap_or(Value::Null),
        "resolve_reason": null,
        "alert_counts": {"all": 0, "triggered": 0, "resolved": 0},
        "is_mergeable": true,
        "incident_type": {"name": "incident_default"},
    });
    w.push_incident(incident.clone());
    let ev = webhook::incident_event("incident.triggered", &incident, Some(&ctx.user_json(user)), Utc::now());
    emit(s, w, ctx.config, ev);
    ok(StatusCode::CREATED, json!({ "incident": incident }))
}

fn update_incident(s: &Shared, ctx: &Ctx, w: &mut World, headers: &HeaderMap, id: &str, body: &Value) -> Response {
    let Some(user) = from_user(ctx.config, headers) else {
        return unknown_requester();
    };
    let Some(pos) = w.incident_pos(id) else {
        return not_found();
    };
    let upd = &body["incident"];
    let mut inc = w.incidents[pos].clone();
    let mut events = Vec::new();
    let t = now();
    if let Some(status) = upd["status"].as_str()
        && status != inc["status"]
    {
        if inc["status"] == "resolved" {
            // Resolved is terminal for the REST API in this simulator (reopening is an opt-in account
            // feature): PagerDuty refuses the transition.
            return invalid(&["Incident Already Resolved"]);
        }
        match status {
            "acknowledged" => {
                inc["acknowledgements"] = json!([{"at": t, "acknowledger": ctx.user_ref(user)}]);
                events.push("incident.acknowledged");
            }
            "resolved" => {
                inc["resolved_at"] = json!(t);
                inc["assignments"] = json!([]);
                if let Some(r) = upd["resolution"].as_str() {
                    inc["resolve_reason"] = json!({"type": "resolve_reason", "incident": null, "summary": r});
                }
                events.push("incident.resolved");
            }
            "triggered" => {
                inc["acknowledgements"] = json!([]);
                events.push("incident.unacknowledged");
            }
            _ => {}
        }
        inc["status"] = json!(status);
        inc["last_status_change_at"] = json!(t);
        inc["last_status_change_by"] = ctx.user_ref(user);
    }
    if upd.get("priority").is_some() {
        let new = match upd["priority"]["id"].as_str() {
            Some(pid) => match ctx.config.priorities.iter().find(|p| p.id == pid) {
                Some(p) => ctx.priority_json(p),
                None => return invalid(&["Priority not found"]),
            },
            None => Value::Null,
        };
        if new["id"] != inc["priority"]["id"] {
            inc["priority"] = new;
            events.push("incident.priority_updated");
        }
    }
    if let Some(u) = upd["urgency"].as_str()
        && u != inc["urgency"]
    {
        inc["urgency"] = json!(u);
    }
    if let Some(title) = upd["title"].as_str() {
        inc["title"] = json!(title);
        inc["summary"] = json!(format!("[#{}] {title}", inc["incident_number"]));
    }
    if let Some(ep_id) = upd["escalation_policy"]["id"].as_str() {
        let Some(ep) = ctx.ep(ep_id) else {
            return invalid(&["Escalation policy not found"]);
        };
        inc["escalation_policy"] = ctx.ep_ref(ep);
        inc["assignments"] = json!(ctx.assignments_for_ep(ep));
        events.push("incident.reassigned");
    } else if let Some(list) = upd["assignments"].as_array() {
        let mut out = Vec::new();
        for a in list {
            match a["assignee"]["id"].as_str().and_then(|i| ctx.user_by_id(i)) {
                Some(u) => out.push(json!({"at": t, "assignee": ctx.user_ref(u)})),
                None => return invalid(&["Assignee not found"]),
            }
        }
        inc["assignments"] = json!(out);
        events.push("incident.reassigned");
    }
    if upd.get("conference_bridge").is_some() {
        inc["conference_bridge"] = upd["conference_bridge"].clone();
        events.push("incident.conference_bridge.updated");
    }
    if upd.get("escalation_level").is_some() {
        events.push("incident.escalated");
    }
    inc["updated_at"] = json!(t);
    w.incidents[pos] = inc.clone();
    let agent = ctx.user_json(user);
    for e in events {
        let ev = webhook::incident_event(e, &inc, Some(&agent), Utc::now());
        emit(s, w, ctx.config, ev);
    }
    ok(StatusCode::OK, json!({ "incident": inc }))
}

/// Record an emitted webhook event and deliver it in the background to the configured target and
/// to every active subscription created through the API whose `events` include its type (signed with
/// that subscription's secret), like PagerDuty does.
fn emit(_s: &Shared, w: &mut World, config: &PdSimConfig, envelope: Value) {
    w.webhook_events.push(envelope.clone());
    let event_type = envelope["event"]["event_type"].as_str().unwrap_or_default().to_string();
    let mut targets: Vec<(String, Vec<String>, String)> = Vec::new();
    if let Some(t) = &config.webhook {
        targets.push((t.url.clone(), t.secrets.clone(), t.subscription_id.clone()));
    }
    for sub in &w.subscriptions {
        let active = sub["active"].as_bool().unwrap_or(true);
        let wants = sub["events"].as_array().is_none_or(|e| e.is_empty() || e.iter().any(|x| x == event_type.as_str()));
        if let (true, true, Some(url), Some(secret), Some(id)) = (
            active,
            wants,
            sub["delivery_method"]["url"].as_str(),
            sub["delivery_method"]["secret"].as_str(),
            sub["id"].as_str(),
        ) {
            targets.push((url.to_string(), vec![secret.to_string()], id.to_string()));
        }
    }
    for (url, secrets, subscription_id) in targets {
        let sender = WebhookSender::new(&secrets).with_subscription(&subscription_id);
        let envelope = envelope.clone();
        tokio::spawn(async move {
            let _ = sender.deliver(&url, &envelope).await;
        });
    }
}
