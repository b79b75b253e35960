//! PagerDuty REST API v2 client: the calls `sfdc-to-pd` and `syncctl` make.
//!
//! Every request carries `Authorization: Token token=…` (a REST API key) or `Bearer …` (a scoped
//! OAuth app token, see [`super::oauth`]; a 401 replaces it once and the call is sent again), the versioned `Accept`, `Content-Type:
//! application/json` and `From: <integration user>` (the operations that change incidents
//! require it; the others ignore it). Calls go through the client-side [`RateLimiter`]; a 429
//! also holds the limiter back until PagerDuty's reset. The client does not retry by itself: a
//! Lambda has little time, so a transient error goes back to the caller, which queues the work.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderValue, header};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use super::error::PagerdutyError;
use super::limiter::{RateLimit, RateLimiter};
use super::oauth::{AppCredentials, AppToken, DEFAULT_IDENTITY_BASE, OAuthError, PagerdutyAuth, TokenCache};
use super::requests::{
    self, Assignees, Call, CreateIncident, PriorityChoice, StatusUpdate, SubscriptionFilter, Urgency,
};
use super::shared_budget::{self, SharedBudget};
use super::webhook::Reference;
use crate::clock::SystemClock;
use crate::secrets::{Credential, Secret};
use crate::transport::{Request, Transport};

/// `Accept` value selecting REST API v2.
pub const ACCEPT: &str = "application/vnd.pagerduty+json;version=2";
/// How long one request may take by default: short enough that a call started well before the
/// function's deadline ends before it (see [`PagerdutyClient::until`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a call waits for the rate limiter before giving up with a transient
/// [`PagerdutyError::RateLimited`] (the caller then queues the work for the retry function).
const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// The created (or already existing) incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRef {
    pub id: String,
    pub html_url: Option<String>,
    pub number: Option<u64>,
}

/// An incident as `GET /incidents/{id}` returns it (the fields we use, plus the raw JSON).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Incident {
    pub id: String,
    #[serde(default, alias = "number")]
    pub incident_number: Option<u64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub urgency: Option<String>,
    #[serde(default)]
    pub priority: Option<Reference>,
    #[serde(default)]
    pub service: Option<Reference>,
    #[serde(default)]
    pub escalation_policy: Option<Reference>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub incident_key: Option<String>,
    #[serde(skip)]
    pub raw: Value,
}

impl Incident {
    pub fn to_ref(&self) -> IncidentRef {
        IncidentRef { id: self.id.clone(), html_url: self.html_url.clone(), number: self.incident_number }
    }

    pub fn is_open(&self) -> bool {
        self.status.as_deref() != Some("resolved")
    }
}

/// A PagerDuty user found by email.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// An incident note as `GET /incidents/{id}/notes` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Note {
    pub id: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who wrote it (a user reference), as a webhook's agent would name them.
    #[serde(default)]
    pub user: Option<Value>,
}

/// An entry of an incident's log as `GET /log_entries` returns it: what was done
/// (`annotate_log_entry`, `acknowledge_log_entry`, ...), when, by whom, to which incident.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LogEntry {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub agent: Option<Value>,
    #[serde(default)]
    pub incident: Option<Value>,
}

impl LogEntry {
    /// The id of the incident it logs.
    pub fn incident_id(&self) -> Option<&str> {
        self.incident.as_ref()?.get("id")?.as_str()
    }

    /// The id of whoever acted (a user, or a service for automatic entries).
    pub fn agent_id(&self) -> Option<&str> {
        self.agent.as_ref()?.get("id")?.as_str()
    }
}

/// One page of a list: its items, whether more follow, and (on a first page, which asks) how
/// many the range holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
    pub total: Option<usize>,
}

impl<T> Page<T> {
    fn of(v: &Value, key: &str, item: impl Fn(Value) -> Option<T>) -> Self {
        let list = v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        let more = !list.is_empty() && v.get("more").and_then(Value::as_bool).unwrap_or(false);
        let total = v.get("total").and_then(Value::as_u64).map(|t| t as usize);
        Page { items: list.into_iter().filter_map(item).collect(), more, total }
    }
}

/// A webhook subscription (its secret is only ever returned at creation).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSubscription {
    pub id: String,
    pub url: Option<String>,
    pub events: Vec<String>,
    pub filter: Value,
    pub active: bool,
    pub description: Option<String>,
}

impl WebhookSubscription {
    fn from_json(v: &Value) -> Option<Self> {
        Some(WebhookSubscription {
            id: v.get("id")?.as_str()?.to_string(),
            url: v.pointer("/delivery_method/url").and_then(Value::as_str).map(str::to_string),
            events: v
                .get("events")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            filter: v.get("filter").cloned().unwrap_or(Value::Null),
            active: v.get("active").and_then(Value::as_bool).unwrap_or(true),
            description: v.get("description").and_then(Value::as_str).map(str::to_string),
        })
    }
}

struct Inner {
    transport: Arc<dyn Transport>,
    base: Url,
    /// Read on every call (see [`Credential`]): a rotated key or client is used once the cache ages.
    token: Credential<PagerdutyAuth>,
    /// The app token, when the secret holds an OAuth client: one per process, shared by clones.
    oauth: Arc<TokenCache>,
    from_email: String,
    timeout: Duration,
    max_queue_wait: Duration,
    limit: RateLimit,
    limiter: RateLimiter,
    /// The limit shared with every other instance using the token, when there is one.
    budget: Option<Arc<SharedBudget>>,
    calls: AtomicU64,
    /// Priority name → id, loaded once per client (per warm Lambda).
    priorities: Mutex<Option<HashMap<String, String>>>,
    /// Email (lowercase) → user id.
    users: Mutex<HashMap<String, String>>,
}

/// What one request is authorised with.
#[derive(Debug, Clone)]
pub enum Authorization {
    /// `Token token=<key>`.
    ApiKey(Secret),
    /// `Bearer <app token>`.
    App(AppToken),
}

impl Authorization {
    fn header_value(&self) -> String {
        match self {
            Authorization::ApiKey(key) => format!("Token token={}", key.expose()),
            Authorization::App(token) => format!("Bearer {}", token.token.expose()),
        }
    }

    /// The shared budget's key: the key, or the client (its tokens change, its limit does not).
    pub(crate) fn budget_key(&self) -> String {
        match self {
            Authorization::ApiKey(key) => shared_budget::key_of(key.expose()),
            Authorization::App(token) => shared_budget::key_of(&format!("oauth-client\0{}", token.client_id)),
        }
    }
}

/// Cheap to clone; clones share the limiter, the caches and the call counter.
#[derive(Clone)]
pub struct PagerdutyClient {
    inner: Arc<Inner>,
    /// No request is started whose timeout would run past this (see [`Self::until`]).
    deadline: Option<tokio::time::Instant>,
}

impl fmt::Debug for PagerdutyClient {
    // Hand-written so the token never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerdutyClient")
            .field("base", &self.inner.base.as_str())
            .field("from_email", &self.inner.from_email)
            .field("token", &self.inner.token)
            .field("api_calls", &self.api_calls())
            .finish()
    }
}

impl PagerdutyClient {
    /// `base` is the region's API root (`https://api.pagerduty.com` or
    /// `https://api.eu.pagerduty.com`, or a simulator); `from_email` is the integration user.
    /// `token` is fixed for the client's life (tests, simulators, an operator command); the
    /// functions read theirs from a secret ([`Self::with_credential`]).
    pub fn new(transport: Arc<dyn Transport>, base: Url, token: String, from_email: String) -> Self {
        Self::with_credential(transport, base, Credential::Fixed(PagerdutyAuth::ApiKey(Secret::new(token))), from_email)
    }

    /// A client that reads its token from `token` when a call needs it
    /// (`config::PagerdutyConfig::client` builds one from a secret). A token that cannot be read
    /// fails the call with [`PagerdutyError::Credential`], before anything is sent.
    pub fn with_credential(
        transport: Arc<dyn Transport>,
        base: Url,
        token: Credential<PagerdutyAuth>,
        from_email: String,
    ) -> Self {
        let oauth = Arc::new(TokenCache::new(transport.clone(), DEFAULT_IDENTITY_BASE, Arc::new(SystemClock)));
        Self::build(
            transport,
            base,
            token,
            oauth,
            from_email,
            RateLimit::default(),
            DEFAULT_TIMEOUT,
            DEFAULT_MAX_QUEUE_WAIT,
            None,
        )
    }

    /// The same client with another rate limit (e.g. a lower share when several deployments
    /// use one key, or a simulator's limit in tests). A construction-time builder: the result
    /// has fresh caches, counter and bucket.
    pub fn with_rate_limit(self, limit: RateLimit) -> Self {
        let i = &self.inner;
        Self::build(
            i.transport.clone(),
            i.base.clone(),
            i.token.clone(),
            i.oauth.clone(),
            i.from_email.clone(),
            limit,
            i.timeout,
            i.max_queue_wait,
            i.budget.clone(),
        )
    }

    /// The same client with another per-request timeout (default 10 s). A construction-time
    /// builder like [`Self::with_rate_limit`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let i = &self.inner;
        Self::build(
            i.transport.clone(),
            i.base.clone(),
            i.token.clone(),
            i.oauth.clone(),
            i.from_email.clone(),
            i.limit,
            timeout,
            i.max_queue_wait,
            i.budget.clone(),
        )
    }

    /// The same client with another limit on how long a call may wait for the rate limiter
    /// (default 10 s) before failing with a transient `Throttled`. A construction-time builder.
    pub fn with_max_queue_wait(self, max_queue_wait: Duration) -> Self {
        let i = &self.inner;
        Self::build(
            i.transport.clone(),
            i.base.clone(),
            i.token.clone(),
            i.oauth.clone(),
            i.from_email.clone(),
            i.limit,
            i.timeout,
            max_queue_wait,
            i.budget.clone(),
        )
    }

    /// The same client counting its calls against `budget` too, the rate limit every instance
    /// using the token shares (see [`shared_budget`]); its own limiter still smooths the bursts
    /// of this process. A construction-time builder like [`Self::with_rate_limit`].
    pub fn with_shared_budget(self, budget: Arc<SharedBudget>) -> Self {
        let i = &self.inner;
        Self::build(
            i.transport.clone(),
            i.base.clone(),
            i.token.clone(),
            i.oauth.clone(),
            i.from_email.clone(),
            i.limit,
            i.timeout,
            i.max_queue_wait,
            Some(budget),
        )
    }

    /// The same client fetching app tokens through `cache` (another identity endpoint, a test's
    /// clock). A construction-time builder like [`Self::with_rate_limit`].
    pub fn with_token_cache(self, cache: Arc<TokenCache>) -> Self {
        let i = &self.inner;
        Self::build(
            i.transport.clone(),
            i.base.clone(),
            i.token.clone(),
            cache,
            i.from_email.clone(),
            i.limit,
            i.timeout,
            i.max_queue_wait,
            i.budget.clone(),
        )
    }

    /// Where app tokens come from (`syncctl doctor` reads the granted scopes off it).
    pub fn token_cache(&self) -> &Arc<TokenCache> {
        &self.inner.oauth
    }

    /// The credential the token secret holds now (`syncctl doctor`: which kind it is).
    pub async fn credential(&self) -> Result<PagerdutyAuth, crate::secrets::SecretsError> {
        self.inner.token.get().await
    }

    /// Reads the credential and, for an OAuth client, fetches its app token into the cache:
    /// what the first call would do, done at start. Returns the authorisation (its granted
    /// scopes, for `syncctl doctor`).
    pub async fn warm_up(&self) -> Result<Authorization, PagerdutyError> {
        let operation = "warm_up";
        let credential =
            self.inner.token.get().await.map_err(|source| PagerdutyError::Credential { operation, source })?;
        self.authorize(&credential, None, operation).await
    }

    /// The shared budget this client counts against, if any.
    pub fn shared_budget(&self) -> Option<&Arc<SharedBudget>> {
        self.inner.budget.as_ref()
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        transport: Arc<dyn Transport>,
        base: Url,
        token: Credential<PagerdutyAuth>,
        oauth: Arc<TokenCache>,
        from_email: String,
        limit: RateLimit,
        timeout: Duration,
        max_queue_wait: Duration,
        budget: Option<Arc<SharedBudget>>,
    ) -> Self {
        PagerdutyClient {
            inner: Arc::new(Inner {
                transport,
                base,
                token,
                oauth,
                from_email,
                timeout,
                max_queue_wait,
                limit,
                limiter: RateLimiter::new(limit),
                budget,
                calls: AtomicU64::new(0),
                priorities: Mutex::new(None),
                users: Mutex::new(HashMap::new()),
            }),
            deadline: None,
        }
    }

    /// A clone that starts no request whose timeout would run past `deadline`: such a call
    /// fails with [`PagerdutyError::NoTimeLeft`] without being sent. An invocation passes its own
    /// deadline (less the time it needs to settle), so that no call outlives the function.
    pub fn until(&self, deadline: tokio::time::Instant) -> Self {
        PagerdutyClient { inner: self.inner.clone(), deadline: Some(deadline) }
    }

    /// The longest one request may take.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The request must be answered by the deadline: `Err` when its timeout would run past it.
    fn time_for_request(&self, operation: &'static str) -> Result<(), PagerdutyError> {
        match self.deadline {
            Some(deadline) if tokio::time::Instant::now() + self.inner.timeout > deadline => {
                Err(PagerdutyError::NoTimeLeft { operation })
            }
            _ => Ok(()),
        }
    }

    /// REST calls sent so far (for the `ApiCalls` metric and the audit entry).
    pub fn api_calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    pub fn from_email(&self) -> &str {
        &self.inner.from_email
    }

    /// The HTTP request for `call`, authorised with API key `token`. No I/O.
    pub fn to_request(&self, call: &Call, token: &Secret) -> Result<Request, PagerdutyError> {
        self.to_request_with(call, &Authorization::ApiKey(token.clone()))
    }

    /// The HTTP request for `call`, authorised with `auth`: URL, method, headers and body. No I/O.
    pub fn to_request_with(&self, call: &Call, auth: &Authorization) -> Result<Request, PagerdutyError> {
        let invalid = |reason| PagerdutyError::InvalidRequest { operation: call.operation, reason };
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|_| invalid("the PagerDuty base URL is not an http(s) URL"))?
            .pop_if_empty()
            .extend(&call.segments);
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        let mut auth = HeaderValue::from_str(&auth.header_value())
            .map_err(|_| invalid("the PagerDuty token holds characters not allowed in a header"))?;
        auth.set_sensitive(true);
        let from = HeaderValue::from_str(&self.inner.from_email)
            .map_err(|_| invalid("the From email holds characters not allowed in a header"))?;
        let body = call.body.as_ref().map(|b| serde_json::to_vec(b).expect("JSON values serialise"));
        http::Request::builder()
            .method(call.method.clone())
            .uri(url.as_str())
            .header(header::ACCEPT, ACCEPT)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, auth)
            .header(header::FROM, from)
            .body(body.unwrap_or_default())
            .map_err(|_| invalid("the request URL is not a valid URI"))
    }

    /// Sends `call` under the rate limit; returns the JSON answer (`Null` for an empty one). A
    /// write whose failure leaves its outcome unknown comes back as [`PagerdutyError::Uncertain`].
    async fn send(&self, call: Call) -> Result<Value, PagerdutyError> {
        let write = call.method != http::Method::GET;
        self.send_once(call).await.map_err(|e| e.of_write(write))
    }

    async fn send_once(&self, call: Call) -> Result<Value, PagerdutyError> {
        let credential = self
            .inner
            .token
            .get()
            .await
            .map_err(|source| PagerdutyError::Credential { operation: call.operation, source })?;
        // A token fetch takes up to a timeout too: it must also end by the deadline.
        self.time_for_request(call.operation)?;
        let auth = self.authorize(&credential, None, call.operation).await?;
        match self.attempt(&call, &auth).await {
            // An app token expired or revoked early: a new one, once. A 401 is a refusal, so a
            // write was not carried out and may be sent again.
            Err(err)
                if err.status() == Some(http::StatusCode::UNAUTHORIZED) && matches!(auth, Authorization::App(_)) =>
            {
                tracing::info!(operation = call.operation, "PagerDuty refused the app token; fetching a new one");
                self.time_for_request(call.operation)?;
                let auth = self.authorize(&credential, Some(&auth), call.operation).await?;
                self.attempt(&call, &auth).await
            }
            answer => answer,
        }
    }

    /// The authorisation for `credential`: the API key itself, or an app token from the cache
    /// (`stale`: the one PagerDuty just refused). A client PagerDuty refuses may have been
    /// rotated since the secret was read: the secret is read again (bounded) and, if it
    /// changed, the token asked for once more.
    pub async fn authorize(
        &self,
        credential: &PagerdutyAuth,
        stale: Option<&Authorization>,
        operation: &'static str,
    ) -> Result<Authorization, PagerdutyError> {
        let creds = match credential {
            PagerdutyAuth::ApiKey(key) => return Ok(Authorization::ApiKey(key.clone())),
            PagerdutyAuth::App(creds) => creds,
        };
        let token_error = |source| PagerdutyError::Token { operation, source };
        match self.app_token(creds, stale).await {
            Err(refused @ OAuthError::InvalidClient { .. }) => {
                let reread = self
                    .inner
                    .token
                    .reread()
                    .await
                    .map_err(|source| PagerdutyError::Credential { operation, source })?;
                match reread {
                    PagerdutyAuth::App(fresh) if fresh != *creds => self.app_token(&fresh, None).await,
                    PagerdutyAuth::ApiKey(key) => return Ok(Authorization::ApiKey(key)),
                    // Unchanged: the refusal stands.
                    PagerdutyAuth::App(_) => Err(refused),
                }
            }
            answer => answer,
        }
        .map(Authorization::App)
        .map_err(token_error)
    }

    async fn app_token(&self, creds: &AppCredentials, stale: Option<&Authorization>) -> Result<AppToken, OAuthError> {
        match stale {
            Some(Authorization::App(stale)) => self.inner.oauth.refresh(creds, stale).await,
            _ => self.inner.oauth.token(creds).await,
        }
    }

    /// One request under the limits, authorised with `auth`.
    async fn attempt(&self, call: &Call, auth: &Authorization) -> Result<Value, PagerdutyError> {
        let request = self.to_request_with(call, auth)?;
        self.time_for_request(call.operation)?;
        // Over the limit for longer than we may wait (a burst, or a 429 reset): give the work
        // back to the caller as transient rather than sleep through the Lambda's time.
        let mut max_wait = self.inner.max_queue_wait;
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            max_wait = max_wait.min(left.saturating_sub(self.inner.timeout));
        }
        let queued = tokio::time::Instant::now();
        if let Err(wait) = self.inner.limiter.acquire_within(max_wait).await {
            return Err(PagerdutyError::Throttled { operation: call.operation, wait });
        }
        // Then the budget every instance shares: what is left of the wait, under the credential's key.
        let budget = self.inner.budget.as_ref().map(|b| (b, auth.budget_key()));
        if let Some((budget, key)) = &budget {
            let left = max_wait.saturating_sub(queued.elapsed());
            if let Err(wait) = budget.acquire_within(key, left).await {
                return Err(PagerdutyError::Throttled { operation: call.operation, wait });
            }
        }
        self.time_for_request(call.operation)?;
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let response = self
            .inner
            .transport
            .send(request, self.inner.timeout)
            .await
            .map_err(|e| PagerdutyError::transport(call.operation, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body();
        if !status.is_success() {
            let err = PagerdutyError::from_response(call.operation, status, &headers, &body);
            if let Some(wait) = err.retry_after() {
                self.inner.limiter.hold_off(wait);
                // Every other instance waits too, instead of finding the 429 for itself.
                if let Some((budget, key)) = &budget {
                    budget.pause(key, wait).await;
                }
            }
            tracing::warn!(operation = call.operation, path = %call.path(), %status, error = %err, "PagerDuty call failed");
            return Err(err);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body)
            .map_err(|e| PagerdutyError::Decode { operation: call.operation, reason: e.to_string() })
    }

    /// Creates an incident. When PagerDuty answers that an open incident with the same
    /// `incident_key` exists (a retry after a lost answer, or a concurrent delivery), returns
    /// that incident instead, so one record never gets two incidents.
    pub async fn create_incident(&self, req: &CreateIncident) -> Result<IncidentRef, PagerdutyError> {
        let priority_id = match &req.priority {
            None => None,
            Some(PriorityChoice::Id(id)) => Some(id.clone()),
            Some(PriorityChoice::Name(name)) => Some(self.priority_id(name).await?),
        };
        let call = requests::create_incident(req, priority_id.as_deref());
        match self.send(call).await {
            Ok(v) => incident_of("create_incident", &v).map(|i| i.to_ref()),
            Err(e) if e.is_duplicate_incident_key() && req.incident_key.is_some() => {
                let key = req.incident_key.as_deref().unwrap_or_default();
                let found = self.find_incidents_by_key(key).await?;
                let existing = found
                    .iter()
                    .find(|i| i.is_open() && i.service.as_ref().is_none_or(|s| s.id == req.service_id))
                    .or_else(|| found.first());
                match existing {
                    Some(i) => {
                        tracing::info!(incident = %i.id, "incident_key already open; using the existing incident");
                        Ok(i.to_ref())
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Incidents with this `incident_key` (open ones first as PagerDuty lists them).
    pub async fn find_incidents_by_key(&self, incident_key: &str) -> Result<Vec<Incident>, PagerdutyError> {
        let v = self.send(requests::find_incidents_by_key(incident_key)).await?;
        let list = v.get("incidents").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(list
            .into_iter()
            .filter_map(Incident::listed)
            // PagerDuty matches the key exactly; a lenient server must not hand us another's.
            .filter(|i| i.incident_key.as_deref().is_none_or(|k| k == incident_key))
            .collect())
    }

    pub async fn get_incident(&self, incident_id: &str) -> Result<Incident, PagerdutyError> {
        let v = self.send(requests::get_incident(incident_id)).await?;
        incident_of("get_incident", &v)
    }

    pub async fn acknowledge(&self, incident_id: &str) -> Result<(), PagerdutyError> {
        self.send(requests::acknowledge(incident_id)).await.map(drop)
    }

    /// Resolves the incident; a resolution note, when given, is added first so responders see
    /// it on the resolved incident. Resolving an already resolved incident succeeds.
    pub async fn resolve(&self, incident_id: &str, resolution_note: Option<&str>) -> Result<(), PagerdutyError> {
        if let Some(note) = resolution_note.filter(|n| !n.trim().is_empty()) {
            self.add_note(incident_id, note).await?;
        }
        match self.send(requests::resolve(incident_id)).await {
            Ok(_) => Ok(()),
            // A retry after an answer we never got: the incident is resolved, which is the goal.
            Err(e) if e.is_already_resolved() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets the priority by name (`P1`), resolved to its id with a cached `GET /priorities`.
    pub async fn set_priority(&self, incident_id: &str, priority_name: &str) -> Result<(), PagerdutyError> {
        let id = self.priority_id(priority_name).await?;
        self.send(requests::set_priority(incident_id, &id)).await.map(drop)
    }

    pub async fn set_urgency(&self, incident_id: &str, urgency: Urgency) -> Result<(), PagerdutyError> {
        self.send(requests::set_urgency(incident_id, urgency)).await.map(drop)
    }

    /// Starts an incident workflow on the incident; returns the instance id when PagerDuty gives one.
    pub async fn run_incident_workflow(
        &self,
        incident_id: &str,
        workflow_id: &str,
    ) -> Result<Option<String>, PagerdutyError> {
        let v = self.send(requests::run_incident_workflow(incident_id, workflow_id)).await?;
        Ok(v.pointer("/incident_workflow_instance/id").and_then(Value::as_str).map(str::to_string))
    }

    /// Invokes an automation action for the incident; returns the invocation id when given.
    pub async fn run_automation_action(
        &self,
        incident_id: &str,
        action_id: &str,
    ) -> Result<Option<String>, PagerdutyError> {
        let v = self.send(requests::run_automation_action(incident_id, action_id)).await?;
        Ok(v.pointer("/invocation/id").and_then(Value::as_str).map(str::to_string))
    }

    pub async fn reassign(&self, incident_id: &str, to: &Assignees) -> Result<(), PagerdutyError> {
        if matches!(to, Assignees::Users(ids) if ids.is_empty()) {
            return Err(PagerdutyError::InvalidRequest {
                operation: "reassign",
                reason: "no user to assign the incident to",
            });
        }
        self.send(requests::reassign(incident_id, to)).await.map(drop)
    }

    /// Requests responders (users and/or escalation policies) on behalf of the From user.
    pub async fn add_responders(
        &self,
        incident_id: &str,
        user_ids: &[String],
        escalation_policy_ids: &[String],
        message: &str,
    ) -> Result<(), PagerdutyError> {
        if user_ids.is_empty() && escalation_policy_ids.is_empty() {
            return Err(PagerdutyError::InvalidRequest {
                operation: "add_responders",
                reason: "no user or escalation policy to request",
            });
        }
        let requester = self.requester_id().await?;
        self.send(requests::add_responders(incident_id, &requester, user_ids, escalation_policy_ids, message))
            .await
            .map(drop)
    }

    /// Adds a note; returns its id when PagerDuty gives one.
    pub async fn add_note(&self, incident_id: &str, content: &str) -> Result<Option<String>, PagerdutyError> {
        let v = self.send(requests::add_note(incident_id, content)).await?;
        Ok(v.pointer("/note/id").and_then(Value::as_str).map(str::to_string))
    }

    /// Publishes a status update; returns its id when PagerDuty gives one.
    pub async fn publish_status_update(
        &self,
        incident_id: &str,
        update: &StatusUpdate,
    ) -> Result<Option<String>, PagerdutyError> {
        let v = self.send(requests::publish_status_update(incident_id, update)).await?;
        Ok(v.pointer("/status_update/id").and_then(Value::as_str).map(str::to_string))
    }

    /// Sets the incident's custom field values by field name.
    pub async fn set_custom_fields(
        &self,
        incident_id: &str,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<(), PagerdutyError> {
        if fields.is_empty() {
            return Err(PagerdutyError::InvalidRequest {
                operation: "set_custom_fields",
                reason: "no custom field to set",
            });
        }
        self.send(requests::set_custom_fields(incident_id, fields)).await.map(drop)
    }

    /// Every note of the incident, oldest first (a webhook carries a long note's content cut).
    pub async fn list_notes(&self, incident_id: &str) -> Result<Vec<Note>, PagerdutyError> {
        let v = self.send(requests::list_notes(incident_id)).await?;
        let notes = v.get("notes").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(notes.into_iter().filter_map(|n| serde_json::from_value(n).ok()).collect())
    }

    /// The id of the user the bridge acts as (the `From` email), looked up once and cached;
    /// `None` when no PagerDuty user has that email.
    pub async fn own_user_id(&self) -> Result<Option<String>, PagerdutyError> {
        match self.requester_id().await {
            Ok(id) => Ok(Some(id)),
            Err(PagerdutyError::UnknownUser(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The invocations of automation action `action_id` for the incident
    /// (`GET /automation_actions/invocations?incident_id=&action_id=`).
    pub async fn list_automation_invocations(
        &self,
        incident_id: &str,
        action_id: &str,
    ) -> Result<Vec<Value>, PagerdutyError> {
        let v = self.send(requests::list_automation_invocations(incident_id, action_id)).await?;
        Ok(v.get("invocations").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// The user whose email is exactly `email` (case-insensitive), if any.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, PagerdutyError> {
        let v = self.send(requests::find_users(email)).await?;
        let users = v.get("users").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(users
            .into_iter()
            .filter_map(|u| serde_json::from_value::<User>(u).ok())
            .find(|u| u.email.eq_ignore_ascii_case(email)))
    }

    pub async fn list_webhook_subscriptions(&self) -> Result<Vec<WebhookSubscription>, PagerdutyError> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let v = self.send(requests::list_webhook_subscriptions(offset)).await?;
            let page = v.get("webhook_subscriptions").and_then(Value::as_array).cloned().unwrap_or_default();
            offset += page.len();
            out.extend(page.iter().filter_map(WebhookSubscription::from_json));
            if page.is_empty() || !v.get("more").and_then(Value::as_bool).unwrap_or(false) {
                return Ok(out);
            }
        }
    }

    /// One page of [`requests::list_incidents`]. One API call; the caller pages (reconciliation
    /// counts each page against its budget).
    pub async fn list_incidents_page(
        &self,
        since: &str,
        until: &str,
        statuses: &[&str],
        offset: usize,
    ) -> Result<Page<Incident>, PagerdutyError> {
        let v = self.send(requests::list_incidents(since, until, statuses, offset)).await?;
        Ok(Page::of(&v, "incidents", Incident::listed))
    }

    /// [`requests::list_open_incidents`] (one call, the first 100).
    pub async fn list_open_incidents(&self, service_ids: &[&str]) -> Result<Vec<Incident>, PagerdutyError> {
        let v = self.send(requests::list_open_incidents(service_ids)).await?;
        Ok(Page::of(&v, "incidents", Incident::listed).items)
    }

    /// One page of [`requests::list_log_entries`]. One API call; the caller pages and keeps the
    /// types it wants.
    pub async fn list_log_entries_page(
        &self,
        since: &str,
        until: &str,
        offset: usize,
    ) -> Result<Page<LogEntry>, PagerdutyError> {
        let v = self.send(requests::list_log_entries(since, until, offset)).await?;
        Ok(Page::of(&v, "log_entries", |e| serde_json::from_value(e).ok()))
    }

    /// One webhook subscription (`syncctl status`: is the one setup created still active?).
    pub async fn get_webhook_subscription(&self, id: &str) -> Result<WebhookSubscription, PagerdutyError> {
        let v = self.send(requests::get_webhook_subscription(id)).await?;
        v.get("webhook_subscription").and_then(WebhookSubscription::from_json).ok_or_else(|| PagerdutyError::Decode {
            operation: "get_webhook_subscription",
            reason: "no webhook_subscription with an id".into(),
        })
    }

    /// Sets the subscription `active` again (see [`requests::enable_webhook_subscription`]).
    pub async fn enable_webhook_subscription(&self, id: &str) -> Result<(), PagerdutyError> {
        self.send(requests::enable_webhook_subscription(id)).await.map(|_| ())
    }

    /// Deletes a subscription (see [`requests::delete_webhook_subscription`]).
    pub async fn delete_webhook_subscription(&self, id: &str) -> Result<(), PagerdutyError> {
        self.send(requests::delete_webhook_subscription(id)).await.map(|_| ())
    }

    /// Creates an HTTP webhook subscription for the events `pd-to-sfdc` handles. Returns the
    /// subscription and its signing secret, which PagerDuty shows only in this answer.
    pub async fn create_webhook_subscription(
        &self,
        url: &str,
        filter: &SubscriptionFilter,
    ) -> Result<(WebhookSubscription, String), PagerdutyError> {
        let call = requests::create_webhook_subscription(url, filter, "pd-sfdc-sync: PagerDuty to Salesforce");
        let v = self.send(call).await?;
        let sub = v.get("webhook_subscription");
        let decode = |reason: &str| PagerdutyError::Decode {
            operation: "create_webhook_subscription",
            reason: reason.to_string(),
        };
        let subscription =
            sub.and_then(WebhookSubscription::from_json).ok_or_else(|| decode("no webhook_subscription with an id"))?;
        let secret = sub
            .and_then(|s| s.pointer("/delivery_method/secret"))
            .and_then(Value::as_str)
            .ok_or_else(|| decode("no delivery_method.secret"))?
            .to_string();
        Ok((subscription, secret))
    }

    /// Priority id for a name: exact match first, then case-insensitive. The list is fetched
    /// once; an unknown name refreshes it once (a priority added since) before failing.
    async fn priority_id(&self, name: &str) -> Result<String, PagerdutyError> {
        let mut cache = self.inner.priorities.lock().await;
        if let Some(id) = cache.as_ref().and_then(|m| lookup_priority(m, name)) {
            return Ok(id);
        }
        let fresh = self.fetch_priorities().await?;
        let id = lookup_priority(&fresh, name);
        *cache = Some(fresh);
        id.ok_or_else(|| PagerdutyError::UnknownPriority(name.to_string()))
    }

    async fn fetch_priorities(&self) -> Result<HashMap<String, String>, PagerdutyError> {
        let mut out = HashMap::new();
        let mut offset = 0;
        loop {
            let v = self.send(requests::list_priorities(offset)).await?;
            let page = v.get("priorities").and_then(Value::as_array).cloned().unwrap_or_default();
            offset += page.len();
            for p in &page {
                if let (Some(id), Some(name)) = (
                    p.get("id").and_then(Value::as_str),
                    p.get("name").or_else(|| p.get("summary")).and_then(Value::as_str),
                ) {
                    out.insert(name.to_string(), id.to_string());
                }
            }
            if page.is_empty() || !v.get("more").and_then(Value::as_bool).unwrap_or(false) {
                return Ok(out);
            }
        }
    }

    /// The From user's id (responder requests name their requester), cached.
    async fn requester_id(&self) -> Result<String, PagerdutyError> {
        let email = self.inner.from_email.to_ascii_lowercase();
        let mut users = self.inner.users.lock().await;
        if let Some(id) = users.get(&email) {
            return Ok(id.clone());
        }
        let user = self
            .find_user_by_email(&self.inner.from_email)
            .await?
            .ok_or_else(|| PagerdutyError::UnknownUser(self.inner.from_email.clone()))?;
        users.insert(email, user.id.clone());
        Ok(user.id)
    }
}

fn lookup_priority(map: &HashMap<String, String>, name: &str) -> Option<String> {
    map.get(name)
        .cloned()
        .or_else(|| map.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case(name.trim())).map(|(_, v)| v.clone()))
}

impl Incident {
    /// An incident of a list answer, with its raw JSON (`None`: not an incident we can read).
    fn listed(raw: Value) -> Option<Self> {
        let mut incident: Incident = serde_json::from_value(raw.clone()).ok()?;
        incident.raw = raw;
        Some(incident)
    }
}

fn incident_of(operation: &'static str, v: &Value) -> Result<Incident, PagerdutyError> {
    let raw = v
        .get("incident")
        .cloned()
        .ok_or_else(|| PagerdutyError::Decode { operation, reason: "no \"incident\" in the answer".into() })?;
    let mut incident: Incident =
        serde_json::from_value(raw.clone()).map_err(|e| PagerdutyError::Decode { operation, reason: e.to_string() })?;
    incident.raw = raw;
    Ok(incident)
}
