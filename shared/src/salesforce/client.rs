//! The Salesforce REST client: sObject reads and writes, upserts and Composite, with the
//! loop-prevention call option on every request and the org's API usage read off every answer.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use serde_json::{Map, Value};

use super::auth::{AccessToken, TokenSource};
use super::composite::{CompositeBuilder, CompositeRequest, CompositeResponse, Write};
use super::error::{SalesforceError, auth_error_from_session, parse_error_body};
use super::{Record, check_id, check_name, encode_segment};
use crate::transport::Transport;

/// Sent on every request: Salesforce records it with the change, so that our own writes can be
/// recognised and not sent back (loop prevention contract).
pub const CALL_OPTIONS: &str = "client=pd-sfdc-sync";

/// The org's daily API request usage, from `Sforce-Limit-Info: api-usage=USED/LIMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    pub used: u64,
    pub limit: u64,
}

impl ApiUsage {
    /// Parses the header value; other entries (`per-app-api-usage=...`) are ignored.
    pub fn parse(header: &str) -> Option<Self> {
        header.split(',').find_map(|part| {
            let value = part.trim().strip_prefix("api-usage=")?;
            let (used, limit) = value.split_once('/')?;
            Some(Self { used: used.trim().parse().ok()?, limit: limit.trim().parse().ok()? })
        })
    }

    /// Fraction of the daily limit used, 0.0 to 1.0 (or more when over).
    pub fn share(&self) -> f64 {
        if self.limit == 0 { 1.0 } else { self.used as f64 / self.limit as f64 }
    }
}

/// How long one request may take by default (see [`SalesforceClient::with_timeout`]): short
/// enough that a call started well before the function's deadline ends before it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer to a SOQL query (`GET query?q=...`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    pub total_size: u64,
    /// False when more records are left at `next_records_url`.
    pub done: bool,
    pub records: Vec<Record>,
    pub next_records_url: Option<String>,
}

/// The answer to an upsert by external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertResult {
    pub id: String,
    /// True when the upsert created the record, false when it updated an existing one.
    pub created: bool,
}

/// A Salesforce REST client for one org. Cheap to share (`Arc`); build it once per process.
pub struct SalesforceClient {
    transport: Arc<dyn Transport>,
    auth: Arc<dyn TokenSource>,
    api_version: String,
    timeout: Duration,
    usage: Mutex<Option<ApiUsage>>,
    calls: AtomicU64,
}

impl std::fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("api_version", &self.api_version)
            .field("api_calls", &self.api_calls())
            .field("usage", &self.api_usage())
            .finish_non_exhaustive()
    }
}

struct Answer {
    status: u16,
    body: String,
}

impl SalesforceClient {
    /// `api_version` like `62.0` (a leading `v` is accepted).
    pub fn new(transport: Arc<dyn Transport>, auth: Arc<dyn TokenSource>, api_version: impl Into<String>) -> Self {
        Self {
            transport,
            auth,
            api_version: api_version.into().trim_start_matches('v').to_string(),
            timeout: DEFAULT_TIMEOUT,
            usage: Mutex::new(None),
            calls: AtomicU64::new(0),
        }
    }

    /// The same client with another per-request timeout (default [`DEFAULT_TIMEOUT`]). Callers
    /// read it back ([`Self::timeout`]) to know whether a call can end before their deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest one request may take (the token mint before it not included).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The latest `Sforce-Limit-Info` seen, if any answer carried one.
    pub fn api_usage(&self) -> Option<ApiUsage> {
        *self.usage.lock().expect("usage lock")
    }

    /// HTTP requests sent to the REST API (token mints not included), for `ApiCalls` metrics.
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The id of the user the session is for (the integration user), read off the token answer's
    /// identity URL: no API call beyond the login. `None` when the answer names none.
    pub async fn user_id(&self) -> Result<Option<String>, SalesforceError> {
        Ok(self.auth.token().await?.org_and_user().map(|(_, user)| user.to_string()))
    }

    /// Logs in now (JWT bearer) unless a session is cached, so that the first call does not.
    pub async fn connect(&self) -> Result<(), SalesforceError> {
        self.auth.token().await.map(drop)
    }

    /// A composite builder for this client's API version.
    pub fn composite_builder(&self, all_or_none: bool) -> CompositeBuilder {
        CompositeBuilder::new(&self.api_version, all_or_none)
    }

    fn data_path(&self, rest: &str) -> String {
        format!("/services/data/v{}/{rest}", self.api_version)
    }

    async fn send_once(
        &self,
        token: &AccessToken,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, SalesforceError> {
        let url = format!("{}{path}", token.instance_url);
        let invalid = |message: String| SalesforceError::Unexpected { path: path.to_string(), message };
        let mut bearer = http::HeaderValue::from_str(&format!("Bearer {}", token.secret()))
            .map_err(|_| invalid("the access token holds characters not allowed in a header".into()))?;
        bearer.set_sensitive(true);
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(http::header::AUTHORIZATION, bearer)
            .header("Sforce-Call-Options", CALL_OPTIONS)
            .header(http::header::ACCEPT, "application/json");
        let mut bytes = Vec::new();
        if let Some(body) = body {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            bytes = serde_json::to_vec(body).expect("JSON values serialise");
        }
        let request = request.body(bytes).map_err(|e| invalid(format!("not a valid request URL ({e})")))?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = self.transport.send(request, self.timeout).await.map_err(SalesforceError::from_transport)?;
        if let Some(usage) =
            response.headers().get("sforce-limit-info").and_then(|v| v.to_str().ok()).and_then(ApiUsage::parse)
        {
            *self.usage.lock().expect("usage lock") = Some(usage);
        }
        let status = response.status().as_u16();
        let body = String::from_utf8_lossy(response.body()).into_owned();
        Ok(Answer { status, body })
    }

    /// One request with one token; a non-2xx answer becomes [`SalesforceError::Api`].
    async fn attempt(
        &self,
        token: &AccessToken,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, SalesforceError> {
        let answer = self.send_once(token, method, path, body).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(SalesforceError::Api {
                method: method.to_string(),
                path: path.to_string(),
                status: answer.status,
                errors: parse_error_body(&answer.body),
            })
        }
    }

    /// Sends one request; when the session is refused (401 / `INVALID_SESSION_ID`) mints a new
    /// token once and tries again, then gives up with [`SalesforceError::Auth`]. A write whose
    /// failure leaves its outcome unknown comes back as [`SalesforceError::Uncertain`].
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, SalesforceError> {
        // No token, no request: what fails here (and in the refresh below) was never sent.
        let token = self.auth.token().await?;
        let written = |e: SalesforceError| e.of_write(method.as_str(), path);
        match self.attempt(&token, &method, path, body).await {
            Err(err) if err.is_expired_session() => {
                tracing::info!(path, "Salesforce session refused; minting a new token once");
                let fresh = self.auth.refresh(&token).await?;
                match self.attempt(&fresh, &method, path, body).await {
                    Err(SalesforceError::Api { status, errors, .. })
                        if status == 401 || errors.iter().any(|e| e.error_code == "INVALID_SESSION_ID") =>
                    {
                        Err(auth_error_from_session(&errors))
                    }
                    other => other.map_err(written),
                }
            }
            other => other.map_err(written),
        }
    }

    /// `GET query?q=...`: runs a SOQL query (one API call). Records beyond the first batch
    /// (`done: false`) are left at `next_records_url`; a `LIMIT` below 2000 keeps them in one.
    pub async fn query(&self, soql: &str) -> Result<QueryResult, SalesforceError> {
        let encoded: String = url::form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        let path = format!("{}?q={encoded}", self.data_path("query"));
        self.query_at(path).await
    }

    /// `GET <nextRecordsUrl>`: the next batch of a query whose answer was not `done` (one API call).
    /// The URL must be one Salesforce gave (`/services/data/vXX.X/query/<locator>`).
    pub async fn query_more(&self, next_records_url: &str) -> Result<QueryResult, SalesforceError> {
        if !next_records_url.starts_with("/services/data/") || next_records_url.contains("..") {
            return Err(SalesforceError::Unexpected {
                path: next_records_url.to_string(),
                message: "nextRecordsUrl is not a query locator of this instance".into(),
            });
        }
        self.query_at(next_records_url.to_string()).await
    }

    async fn query_at(&self, path: String) -> Result<QueryResult, SalesforceError> {
        let answer = self.send(Method::GET, &path, None).await?;
        let value = Self::parse_json(&path, &answer.body)?;
        let records = match value.get("records") {
            Some(Value::Array(list)) => list.iter().filter_map(|r| r.as_object().cloned()).collect(),
            _ => return Err(SalesforceError::Unexpected { path, message: "query answer without records".into() }),
        };
        Ok(QueryResult {
            total_size: value.get("totalSize").and_then(Value::as_u64).unwrap_or_default(),
            done: value.get("done").and_then(Value::as_bool).unwrap_or(true),
            records,
            next_records_url: value.get("nextRecordsUrl").and_then(Value::as_str).map(str::to_string),
        })
    }

    fn parse_json(path: &str, body: &str) -> Result<Value, SalesforceError> {
        serde_json::from_str(body)
            .map_err(|e| SalesforceError::Unexpected { path: path.to_string(), message: format!("not JSON ({e})") })
    }

    /// `GET limits`: the org's daily API requests, used and allowed (`syncctl status` and
    /// `doctor`; one API call).
    pub async fn daily_api_usage(&self) -> Result<ApiUsage, SalesforceError> {
        let path = self.data_path("limits");
        let answer = self.send(Method::GET, &path, None).await?;
        let value = Self::parse_json(&path, &answer.body)?;
        let daily = &value["DailyApiRequests"];
        match (daily["Max"].as_u64(), daily["Remaining"].as_u64()) {
            (Some(limit), Some(remaining)) => Ok(ApiUsage { used: limit.saturating_sub(remaining), limit }),
            _ => Err(SalesforceError::Unexpected { path, message: "no DailyApiRequests Max and Remaining".into() }),
        }
    }

    /// `GET sobjects/{object}/{id}[?fields=...]`: the record's fields (with `attributes`).
    pub async fn get_record(&self, object: &str, id: &str, fields: Option<&[&str]>) -> Result<Record, SalesforceError> {
        check_name(object)?;
        check_id(id)?;
        let mut path = self.data_path(&format!("sobjects/{object}/{id}"));
        if let Some(fields) = fields {
            for f in fields {
                check_field_path(f)?;
            }
            path.push_str("?fields=");
            path.push_str(&fields.join(","));
        }
        let answer = self.send(Method::GET, &path, None).await?;
        match Self::parse_json(&path, &answer.body)? {
            Value::Object(map) => Ok(map),
            _ => Err(SalesforceError::Unexpected { path, message: "record is not a JSON object".into() }),
        }
    }

    /// `PATCH sobjects/{object}/{id}` (204).
    pub async fn update_record(&self, object: &str, id: &str, fields: &Record) -> Result<(), SalesforceError> {
        check_name(object)?;
        check_id(id)?;
        let path = self.data_path(&format!("sobjects/{object}/{id}"));
        self.send(Method::PATCH, &path, Some(&Value::Object(fields.clone()))).await?;
        Ok(())
    }

    /// `POST sobjects/{object}` (201): the new record's id. Not idempotent: prefer [`Self::upsert`]
    /// when a retry could repeat it.
    pub async fn create_record(&self, object: &str, fields: &Record) -> Result<String, SalesforceError> {
        check_name(object)?;
        let path = self.data_path(&format!("sobjects/{object}"));
        let answer = self.send(Method::POST, &path, Some(&Value::Object(fields.clone()))).await?;
        // Answered 2xx but unreadable: created, or not; the caller cannot know which.
        let value = Self::parse_json(&path, &answer.body).map_err(|e| e.of_write("POST", &path))?;
        value.get("id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
            SalesforceError::Unexpected { path: path.clone(), message: "create answer without an id".into() }
                .of_write("POST", &path)
        })
    }

    /// `PATCH sobjects/{object}/{ext_field}/{ext_value}`: creates the record (201) or updates the one
    /// carrying that external id (200/204). A retry never creates a second record.
    pub async fn upsert(
        &self,
        object: &str,
        ext_field: &str,
        ext_value: &str,
        fields: &Record,
    ) -> Result<UpsertResult, SalesforceError> {
        check_name(object)?;
        check_name(ext_field)?;
        let path = self.data_path(&format!("sobjects/{object}/{ext_field}/{}", encode_segment(ext_value)));
        let answer = self.send(Method::PATCH, &path, Some(&Value::Object(fields.clone()))).await?;
        let created = answer.status == 201;
        if answer.body.trim().is_empty() {
            // Before API v46 an update answers 204 without a body: ask for the id.
            let record = self.get_record_by_path(&path).await?;
            let id = record.get("Id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
                SalesforceError::Unexpected { path: path.clone(), message: "upserted record has no Id".into() }
            })?;
            return Ok(UpsertResult { id, created });
        }
        let value = Self::parse_json(&path, &answer.body)?;
        let id = value.get("id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
            SalesforceError::Unexpected { path: path.clone(), message: "upsert answer without an id".into() }
        })?;
        let created = value.get("created").and_then(Value::as_bool).unwrap_or(created);
        Ok(UpsertResult { id, created })
    }

    async fn get_record_by_path(&self, path: &str) -> Result<Record, SalesforceError> {
        let path = format!("{path}?fields=Id");
        let answer = self.send(Method::GET, &path, None).await?;
        match Self::parse_json(&path, &answer.body)? {
            Value::Object(map) => Ok(map),
            _ => Err(SalesforceError::Unexpected { path, message: "record is not a JSON object".into() }),
        }
    }

    /// `POST composite`: up to 25 subrequests in one API call. Answers `Ok` even when subrequests
    /// failed (that is how Salesforce answers too): read [`CompositeResponse::failures`] or call
    /// [`CompositeResponse::into_result`].
    pub async fn composite(&self, request: &CompositeRequest) -> Result<CompositeResponse, SalesforceError> {
        request.validate()?;
        let path = self.data_path("composite");
        let body = serde_json::to_value(request)
            .map_err(|e| SalesforceError::BadInput(format!("composite request is not serialisable: {e}")))?;
        let answer = self.send(Method::POST, &path, Some(&body)).await?;
        serde_json::from_str(&answer.body).map_err(|e| {
            SalesforceError::Unexpected {
                path: path.clone(),
                message: format!("composite answer without compositeResponse ({e})"),
            }
            .of_write("POST", &path)
        })
    }

    /// Adds `text` as Case Comments on `case_id`: split at 4000 bytes on UTF-8 boundaries, each part
    /// marked `[PagerDuty]`, all parts in one API call. Returns the new comment ids in order.
    pub async fn add_case_comments(
        &self,
        case_id: &str,
        text: &str,
        published: bool,
    ) -> Result<Vec<String>, SalesforceError> {
        check_id(case_id)?;
        let mut builder = self.composite_builder(true);
        let refs = builder.push(
            "comment",
            Write::AddCaseComment { case_id: case_id.to_string(), body: text.to_string(), published },
        )?;
        if refs.len() == 1 {
            let request = builder.build()?;
            let fields =
                request.subrequests[0].body.as_ref().and_then(Value::as_object).cloned().unwrap_or_else(Map::new);
            return Ok(vec![self.create_record(super::object_name::CASE_COMMENT, &fields).await?]);
        }
        let response = self.composite(&builder.build()?).await?.into_result()?;
        refs.iter()
            .map(|r| {
                response.get(r).and_then(|s| s.id()).map(str::to_string).ok_or_else(|| SalesforceError::Unexpected {
                    path: self.data_path("composite"),
                    message: format!("no id for Case Comment part {r}"),
                })
            })
            .collect()
    }
}

fn check_field_path(field: &str) -> Result<(), SalesforceError> {
    // Relationship paths like Account.Name are allowed in `fields`.
    for part in field.split('.') {
        check_name(part)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::auth::StaticToken;
    use crate::salesforce::canned::{Canned, CannedOrg};
    use serde_json::json;

    fn client(server: &CannedOrg) -> SalesforceClient {
        SalesforceClient::new(
            server.transport(),
            Arc::new(StaticToken(AccessToken::new("tok-123", server.url()))),
            "v62.0",
        )
    }

    #[test]
    fn api_usage_parses_the_header_and_ignores_per_app_entries() {
        let u = ApiUsage::parse("api-usage=25/15000, per-app-api-usage=17/250(appName=sample)").unwrap();
        assert_eq!(u, ApiUsage { used: 25, limit: 15000 });
        assert!((u.share() - 25.0 / 15000.0).abs() < 1e-12);
        assert_eq!(ApiUsage::parse("per-app-api-usage=17/250"), None);
        assert_eq!(ApiUsage::parse("garbage"), None);
    }

    #[tokio::test]
    async fn every_request_carries_the_call_option_and_bearer_and_usage_is_recorded() {
        let server = CannedOrg::start(vec![
            Canned::new(200, r#"{"attributes":{"type":"Case"},"Id":"5005g00000AbCdEAAS","Subject":"Down"}"#)
                .header("Sforce-Limit-Info", "api-usage=40/100"),
        ])
        .await;
        let c = client(&server);
        let rec = c.get_record("Case", "5005g00000AbCdEAAS", Some(&["Subject", "Account.Name"])).await.unwrap();
        assert_eq!(rec["Subject"], "Down");
        let req = &server.requests()[0];
        assert!(
            req.starts_with("GET /services/data/v62.0/sobjects/Case/5005g00000AbCdEAAS?fields=Subject,Account.Name "),
            "{req}"
        );
        let lower = req.to_ascii_lowercase();
        assert!(lower.contains("sforce-call-options: client=pd-sfdc-sync"), "{req}");
        assert!(lower.contains("authorization: bearer tok-123"), "{req}");
        assert_eq!(c.api_usage(), Some(ApiUsage { used: 40, limit: 100 }));
        assert_eq!(c.api_calls(), 1);
    }

    #[tokio::test]
    async fn upsert_reports_created_and_updated() {
        let server = CannedOrg::start(vec![
            Canned::new(201, r#"{"id":"500A","success":true,"errors":[],"created":true}"#),
            Canned::new(200, r#"{"id":"500A","success":true,"errors":[],"created":false}"#),
            Canned::new(204, ""),
            Canned::new(200, r#"{"attributes":{"type":"Case"},"Id":"500A"}"#),
        ])
        .await;
        let c = client(&server);
        let f = Map::new();
        let r = c.upsert("Case", "PD_Incident__c", "Q1", &f).await.unwrap();
        assert_eq!(r, UpsertResult { id: "500A".into(), created: true });
        let r = c.upsert("Case", "PD_Incident__c", "Q1", &f).await.unwrap();
        assert!(!r.created);
        let r = c.upsert("Case", "PD_Incident__c", "Q1", &f).await.unwrap();
        assert_eq!(r, UpsertResult { id: "500A".into(), created: false });
        assert!(server.requests()[0].starts_with("PATCH /services/data/v62.0/sobjects/Case/PD_Incident__c/Q1 "));
        assert!(
            server.requests()[3].starts_with("GET /services/data/v62.0/sobjects/Case/PD_Incident__c/Q1?fields=Id ")
        );
    }

    #[tokio::test]
    async fn errors_keep_the_salesforce_error_array() {
        let server = CannedOrg::start(vec![Canned::new(
            400,
            r#"[{"fields":["LastName"],"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING"}]"#,
        )])
        .await;
        let c = client(&server);
        let err = c.create_record("Contact", &Map::new()).await.unwrap_err();
        assert!(!err.is_transient());
        assert_eq!(err.error_codes(), vec!["REQUIRED_FIELD_MISSING"]);
        match err {
            SalesforceError::Api { errors, status, .. } => {
                assert_eq!(status, 400);
                assert_eq!(errors[0].fields, vec!["LastName"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn composite_is_one_call_and_reports_each_subrequest() {
        let server = CannedOrg::start(vec![Canned::new(
            200,
            &json!({"compositeResponse": [
                {"body": {"id": "500A", "success": true, "errors": []}, "httpHeaders": {}, "httpStatusCode": 201, "referenceId": "c"},
                {"body": [{"message": "bad", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "fields": []}], "httpHeaders": {}, "httpStatusCode": 400, "referenceId": "u"}
            ]})
            .to_string(),
        )])
        .await;
        let c = client(&server);
        let mut b = c.composite_builder(false);
        b.push("c", Write::Create { object: "Case".into(), fields: Map::new() }).unwrap();
        b.push("u", Write::Update { object: "Case".into(), id: "@{c.id}".into(), fields: Map::new() }).unwrap();
        let resp = c.composite(&b.build().unwrap()).await.unwrap();
        assert_eq!(c.api_calls(), 1);
        assert_eq!(resp.succeeded(), vec!["c"]);
        let err = resp.into_result().unwrap_err();
        assert!(!err.is_transient());
        let req = &server.requests()[0];
        assert!(req.starts_with("POST /services/data/v62.0/composite "), "{req}");
        assert!(req.contains(r#""allOrNone":false"#), "{req}");
    }

    #[tokio::test]
    async fn a_multi_part_comment_is_one_composite_call() {
        let server = CannedOrg::start(vec![Canned::new(
            200,
            &json!({"compositeResponse": [
                {"body": {"id": "00a1", "success": true, "errors": []}, "httpHeaders": {}, "httpStatusCode": 201, "referenceId": "comment"},
                {"body": {"id": "00a2", "success": true, "errors": []}, "httpHeaders": {}, "httpStatusCode": 201, "referenceId": "comment_2"}
            ]})
            .to_string(),
        )])
        .await;
        let c = client(&server);
        let ids = c.add_case_comments("5005g00000AbCdEAAS", &"x".repeat(5000), false).await.unwrap();
        assert_eq!(ids, vec!["00a1", "00a2"]);
        assert_eq!(c.api_calls(), 1);
    }

    #[tokio::test]
    async fn server_unavailable_is_transient_and_connection_refused_is_transient() {
        let server = CannedOrg::start(vec![Canned::new(503, "")]).await;
        let c = client(&server);
        let err = c.update_record("Case", "5005g00000AbCdEAAS", &Map::new()).await.unwrap_err();
        assert!(err.is_transient(), "{err}");

        let dead = SalesforceClient::new(
            crate::salesforce::canned::unreachable(),
            Arc::new(StaticToken(AccessToken::new("t", "http://127.0.0.1:9"))),
            "62.0",
        );
        let err = dead.update_record("Case", "5005g00000AbCdEAAS", &Map::new()).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
    }

    #[tokio::test]
    async fn ids_and_names_that_could_change_the_path_are_refused_before_sending() {
        let server = CannedOrg::start(vec![]).await;
        let c = client(&server);
        assert!(c.get_record("Case", "../../x", None).await.is_err());
        assert!(c.get_record("Case?x=1", "5005g00000AbCdEAAS", None).await.is_err());
        assert_eq!(c.api_calls(), 0);
    }
}
