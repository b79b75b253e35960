//! The reqwest adapter of [`shared::transport::Transport`]: one connection pool per process
//! (warm invocations reuse its connections), rustls on aws-lc-rs, a connect limit of its own.

use std::time::Duration;

use async_trait::async_trait;
use shared::transport::{Failure, Request, Response, Transport, TransportError};

/// Timeout of each call to PagerDuty and Salesforce. The HTTP functions run for at most 10 s
/// (template.yaml): the executors start no call with less than this plus
/// `shared::handler::salesforce_exec::SETTLE_MARGIN` left, so a slow call ends (or is given up)
/// while there is still time to queue what is left. 5 s leaves room for a read and the event's
/// write; a call given up is an outcome unknown, looked for before it is sent again.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection not made by then is given up (nothing was sent over it: not an unknown outcome).
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends the clients' requests with reqwest.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// The production client: [`HTTP_CONNECT_TIMEOUT`]; each request brings its own timeout.
    pub fn new() -> Result<Self, reqwest::Error> {
        reqwest::Client::builder().connect_timeout(HTTP_CONNECT_TIMEOUT).build().map(Self::with_client)
    }

    /// Over a client built elsewhere (tests that count connections or go through a proxy).
    pub fn with_client(client: reqwest::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Transport for ReqwestTransport {
    async fn send(&self, request: Request, timeout: Duration) -> Result<Response, TransportError> {
        let mut request = reqwest::Request::try_from(request).map_err(failure)?;
        *request.timeout_mut() = Some(timeout);
        let response = self.client.execute(request).await.map_err(failure)?;
        let mut answer = http::Response::builder().status(response.status()).version(response.version());
        if let Some(headers) = answer.headers_mut() {
            *headers = response.headers().clone();
        }
        let body = response.bytes().await.map_err(failure)?;
        Ok(answer.body(body.to_vec()).expect("status and headers come from a valid response"))
    }
}

/// Where reqwest failed. A connect error first: a connect timeout is both, and nothing was sent.
fn failure(e: reqwest::Error) -> TransportError {
    let failure = if e.is_connect() {
        Failure::Connect
    } else if e.is_timeout() {
        Failure::Timeout
    } else if e.is_body() || e.is_decode() {
        Failure::Body
    } else {
        Failure::Other
    };
    let timed_out = e.is_timeout();
    // Without the URL (ours; the caller names the operation). reqwest's text never holds headers
    // or bodies, so no token can leak through it.
    TransportError { failure, timed_out, message: e.without_url().to_string() }
}
