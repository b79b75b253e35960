//! The one thing the PagerDuty and Salesforce clients need from the network: send an HTTP
//! request and bring back the answer within a time limit. The clients build requests and read
//! answers themselves (no I/O of their own); `adapters::http` sends them with reqwest; unit tests
//! answer at this port with a script ([`testing::Scripted`]) instead of a socket.

use std::time::Duration;

use async_trait::async_trait;

/// A request as the clients build it: absolute URI, method, headers, body bytes.
pub type Request = http::Request<Vec<u8>>;
/// The answer: status, headers and the whole body.
pub type Response = http::Response<Vec<u8>>;

/// Where a request failed, which decides whether it may have reached the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection was made (refused, DNS, TLS, connect timeout): nothing was sent.
    Connect,
    /// Sent, and no (whole) answer within the time limit: the other side may have acted.
    Timeout,
    /// The answer's body could not be read.
    Body,
    /// Anything else on the way (a reset mid-request, an invalid request).
    Other,
}

/// A request that got no HTTP answer. Its text never holds headers or bodies (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub failure: Failure,
    /// Also true for a connect timeout (which is still a [`Failure::Connect`]).
    pub timed_out: bool,
    pub message: String,
}

impl TransportError {
    pub fn new(failure: Failure, message: impl Into<String>) -> Self {
        Self { failure, timed_out: failure == Failure::Timeout, message: message.into() }
    }

    /// Nothing went over the wire: safe to send again without looking first.
    pub fn nothing_sent(&self) -> bool {
        self.failure == Failure::Connect
    }
}

/// Sends one request; the adapter owns connection pools, TLS and the clock of `timeout`.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, request: Request, timeout: Duration) -> Result<Response, TransportError>;
}

/// Transports for unit tests: scripted answers, every request kept for assertions.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What a script sees of a request: method, path with query, headers, body.
    #[derive(Debug, Clone)]
    pub(crate) struct Seen {
        pub method: String,
        pub target: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Seen {
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// One scripted answer: an HTTP response, or a failure to get one.
    pub(crate) type Answer = Result<(u16, Vec<(String, String)>, String), TransportError>;
    type Script = Box<dyn Fn(&Seen) -> Answer + Send + Sync>;

    /// Answers every request with `script`, and keeps what it was asked.
    pub(crate) struct Scripted {
        script: Script,
        pub seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Scripted {
        pub fn new(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Arc<Self> {
            Arc::new(Self { script: Box::new(script), seen: Arc::default() })
        }

        /// Answers in order from `answers`; a request beyond them fails to connect.
        pub fn in_order(answers: Vec<Answer>) -> Arc<Self> {
            let answers = Mutex::new(std::collections::VecDeque::from(answers));
            Self::new(move |_| {
                answers
                    .lock()
                    .expect("answers")
                    .pop_front()
                    .unwrap_or_else(|| Err(TransportError::new(Failure::Connect, "no more scripted answers")))
            })
        }

        pub fn requests(&self) -> Vec<Seen> {
            self.seen.lock().expect("seen").clone()
        }
    }

    #[async_trait]
    impl Transport for Scripted {
        async fn send(&self, request: Request, _timeout: Duration) -> Result<Response, TransportError> {
            let uri = request.uri();
            let seen = Seen {
                method: request.method().to_string(),
                target: uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default(),
                headers: request
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
                body: request.body().clone(),
            };
            let answer = (self.script)(&seen);
            self.seen.lock().expect("seen").push(seen);
            let (status, headers, body) = answer?;
            let mut response = http::Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            Ok(response.body(body.into_bytes()).expect("a scripted answer is a valid response"))
        }
    }
}
