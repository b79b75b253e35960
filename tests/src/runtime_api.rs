//! A local Lambda Runtime API (2018-06-01), as `lambda_runtime` 1.5 calls it: the function
//! binaries run against it unchanged, with `AWS_LAMBDA_RUNTIME_API` pointing here. Used by the
//! cold-start bench (`tools/bench_coldstart.sh`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::{Mutex, mpsc};

/// One event to hand to the function.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub body: String,
    pub function_arn: String,
    pub deadline_ms: u64,
    pub trace_id: String,
}

impl Invocation {
    /// An invocation of `body` with a fresh request id and a deadline `timeout_ms` from now.
    pub fn new(function_name: &str, body: impl Into<String>, timeout_ms: u64) -> Self {
        let now = chrono::Utc::now().timestamp_millis() as u64;
        Self {
            request_id: uuid::Uuid::new_v4().to_string(),
            body: body.into(),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            deadline_ms: now + timeout_ms,
            trace_id: "Root=1-6740b2e0-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0".into(),
        }
    }
}

/// What the function posted back.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response { request_id: String, body: String },
    Error { request_id: String, body: String },
    InitError { body: String },
}

struct Shared {
    pending: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    // When the function first asked for work: the end of its init phase.
    first_next: std::sync::Mutex<Option<Instant>>,
}

/// The running emulator.
pub struct RuntimeApi {
    addr: SocketAddr,
    invocations: mpsc::UnboundedSender<Invocation>,
    outcomes: Mutex<mpsc::UnboundedReceiver<Outcome>>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (invocations, pending) = mpsc::unbounded_channel();
        let (outcome_tx, outcomes) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pending: Mutex::new(pending),
            outcomes: outcome_tx,
            first_next: std::sync::Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind runtime API");
        let addr = listener.local_addr().expect("runtime API addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, invocations, outcomes: Mutex::new(outcomes), shared, server }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (host:port, no scheme, as Lambda sets it).
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an event; the next `GET .../invocation/next` receives it.
    pub fn invoke(&self, invocation: Invocation) {
        let _ = self.invocations.send(invocation);
    }

    /// When the function first called `GET .../invocation/next` (its init phase ended).
    pub fn first_next_at(&self) -> Option<Instant> {
        *self.shared.first_next.lock().expect("first_next lock")
    }

    /// The next response, error or init error the function posts.
    pub async fn outcome(&self) -> Option<Outcome> {
        self.outcomes.lock().await.recv().await
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// Long-polls like the real API: blocks until an event is queued.
async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared.first_next.lock().expect("first_next lock").get_or_insert_with(Instant::now);
    let invocation = shared.pending.lock().await.recv().await;
    let Some(inv) = invocation else {
        return (StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new(), String::new());
    };
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", &inv.request_id);
    set("lambda-runtime-deadline-ms", &inv.deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &inv.function_arn);
    set("lambda-runtime-trace-id", &inv.trace_id);
    set("content-type", "application/json");
    (StatusCode::OK, headers, inv.body)
}

fn accepted() -> impl IntoResponse {
    (StatusCode::ACCEPTED, [("content-type", "application/json")], r#"{"status":"OK"}"#)
}

fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}

async fn response(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> impl IntoResponse {
    let _ = shared.outcomes.send(Outcome::Response { request_id: id, body: text(&body) });
    accepted()
}

async fn error(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> impl IntoResponse {
    let _ = shared.outcomes.send(Outcome::Error { request_id: id, body: text(&body) });
    accepted()
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> impl IntoResponse {
    let _ = shared.outcomes.send(Outcome::InitError { body: text(&body) });
    accepted()
}
