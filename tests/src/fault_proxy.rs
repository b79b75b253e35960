//! A fault-injecting HTTP proxy in front of moto: the bridge's AWS clients point at it, and it
//! misbehaves for ONE AWS service the way that service really fails, using the seeded
//! [`Faults`] decider the simulators use.
//!
//! Services are told apart by the `X-Amz-Target` header of their JSON protocols
//! (`DynamoDB_20120810.PutItem`, `AmazonSQS.SendMessage`, `secretsmanager.GetSecretValue`; the
//! SQS SDK in Cargo.lock speaks JSON). Requests for the other services pass through untouched.
//!
//! Faults, as AWS answers them:
//! - [`FaultKind::ServerError`]: 500 with the service's JSON error body.
//! - [`FaultKind::RateLimited`]: the service's throttling error (see [`AwsService::throttling`]).
//! - [`FaultKind::Slow`]: the request is held, then still forwarded: the service did the work but
//!   the answer comes after the client gave up (the hard case for exactly-once).
//! - [`FaultKind::Drop`]: the connection is closed before the request reaches the service.
//! - [`FaultKind::LoseAnswer`]: the service does the work, then the connection is closed without
//!   its answer (an SQS send that stored the message, a DynamoDB write that landed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::faults::{FaultConfig, FaultKind, Faults, drop_connection};

/// The AWS service whose requests get faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsService {
    DynamoDb,
    Sqs,
    SecretsManager,
}

/// One error answer: status, `__type`, and the `x-amzn-query-error` header SQS adds for its
/// query-compatible error codes.
#[derive(Debug, Clone, Copy)]
pub struct AwsError {
    pub status: u16,
    pub error_type: &'static str,
    pub query_error: Option<&'static str>,
}

impl AwsService {
    pub fn name(self) -> &'static str {
        match self {
            AwsService::DynamoDb => "DynamoDB",
            AwsService::Sqs => "SQS",
            AwsService::SecretsManager => "Secrets Manager",
        }
    }

    /// The `X-Amz-Target` prefix of the service's operations.
    pub fn target_prefix(self) -> &'static str {
        match self {
            AwsService::DynamoDb => "DynamoDB_20120810.",
            AwsService::Sqs => "AmazonSQS.",
            AwsService::SecretsManager => "secretsmanager.",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            AwsService::DynamoDb | AwsService::Sqs => "application/x-amz-json-1.0",
            AwsService::SecretsManager => "application/x-amz-json-1.1",
        }
    }

    /// The service's internal error (each API reference's 500 error).
    pub fn server_error(self) -> AwsError {
        match self {
            AwsService::DynamoDb => AwsError {
                status: 500,
                error_type: "com.amazonaws.dynamodb.v20120810#InternalServerError",
                query_error: None,
            },
            // SQS models no 500 error of its own: the common `InternalFailure`.
            AwsService::Sqs => {
                AwsError { status: 500, error_type: "InternalFailure", query_error: Some("InternalFailure;Receiver") }
            }
            AwsService::SecretsManager => {
                AwsError { status: 500, error_type: "InternalServiceError", query_error: None }
            }
        }
    }

    /// The service's throttling error: DynamoDB's `ProvisionedThroughputExceededException` (400),
    /// SQS's `RequestThrottled` (400 in the JSON protocol, query code in `x-amzn-query-error`; the
    /// query protocol answered 403), and Secrets Manager, which models none, the common
    /// `ThrottlingException` (400).
    pub fn throttling(self) -> AwsError {
        match self {
            AwsService::DynamoDb => AwsError {
                status: 400,
                error_type: "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                query_error: None,
            },
            AwsService::Sqs => AwsError {
                status: 400,
                error_type: "com.amazonaws.sqs#RequestThrottled",
                query_error: Some("RequestThrottled;Sender"),
            },
            AwsService::SecretsManager => {
                AwsError { status: 400, error_type: "ThrottlingException", query_error: None }
            }
        }
    }
}

struct Shared {
    upstream: String,
    service: AwsService,
    faults: Faults,
    http: reqwest::Client,
    requests: AtomicUsize,
    injected: AtomicUsize,
}

/// The running proxy; it stops with the test's runtime.
#[derive(Clone)]
pub struct FaultProxy {
    url: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream` (moto's URL).
    pub async fn start(upstream: &str, service: AwsService) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            service,
            faults: Faults::new(FaultConfig::none()),
            http: reqwest::Client::new(),
            requests: AtomicUsize::new(0),
            injected: AtomicUsize::new(0),
        });
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, shared }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn service(&self) -> AwsService {
        self.shared.service
    }

    pub fn set_faults(&self, config: FaultConfig) {
        self.shared.faults.set(config);
    }

    pub fn fail_next(&self, n: usize, kind: FaultKind) {
        self.shared.faults.fail_next(n, kind);
    }

    /// Requests seen for the chosen service.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.shared.injected.load(Ordering::Relaxed)
    }
}

fn error_response(service: AwsService, error: AwsError) -> Response {
    let body = serde_json::json!({"__type": error.error_type, "message": "injected by the fault proxy"}).to_string();
    let mut response = (StatusCode::from_u16(error.status).expect("valid status"), body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", service.content_type().parse().expect("static"));
    headers.insert("x-amzn-requestid", uuid::Uuid::new_v4().to_string().parse().expect("uuid"));
    if let Some(query_error) = error.query_error {
        headers.insert("x-amzn-query-error", query_error.parse().expect("static"));
    }
    response
}

async fn forward(State(s): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let ours = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(s.service.target_prefix()));
    let fault = if ours {
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.faults.decide()
    } else {
        None
    };
    if fault.is_some() {
        s.injected.fetch_add(1, Ordering::Relaxed);
    }
    match fault {
        None => relay(&s, method, &uri, &headers, body).await,
        Some(FaultKind::ServerError | FaultKind::LockRow) => error_response(s.service, s.service.server_error()),
        Some(FaultKind::RateLimited) => error_response(s.service, s.service.throttling()),
        Some(FaultKind::Drop) => drop_connection(),
        Some(FaultKind::LoseAnswer) => {
            relay(&s, method, &uri, &headers, body).await;
            drop_connection()
        }
        Some(FaultKind::Slow(delay)) => {
            // Spawned so that the service still gets the request after the client hung up.
            let s = s.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                relay(&s, method, &uri, &headers, body).await
            });
            task.await.unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
    }
}

async fn relay(s: &Shared, method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = s.http.request(method, format!("{}{path}", s.upstream)).body(body);
    for (name, value) in headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(err) => return (StatusCode::BAD_GATEWAY, format!("moto unreachable: {err}")).into_response(),
    };
    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !matches!(name.as_str(), "content-length" | "connection" | "transfer-encoding") {
            out.append(name, value.clone());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response.headers_mut().extend(out);
    response
}
