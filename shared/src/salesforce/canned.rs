//! Canned Salesforce answers for unit tests of the client and the authenticator, given at the
//! transport port in order; each request is kept as text (request line, headers, body).

use std::sync::Arc;

use crate::transport::testing::{Answer, Scripted};
use crate::transport::{Failure, Transport, TransportError};

pub(crate) struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Canned {
    pub(crate) fn new(status: u16, body: &str) -> Self {
        Self { status, headers: Vec::new(), body: body.to_string() }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn answer(self) -> Answer {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        headers.extend(self.headers);
        Ok((self.status, headers, self.body))
    }
}

/// An org that answers with canned responses, one per request, then refuses to connect.
pub(crate) struct CannedOrg {
    url: String,
    transport: Arc<Scripted>,
}

impl CannedOrg {
    /// The instance (and login) URL the answers come from: never dialled.
    const URL: &'static str = "https://canned.my.salesforce.com";

    pub(crate) async fn start(responses: Vec<Canned>) -> Self {
        Self::start_fn(|_| responses).await
    }

    /// Like `start`, for answers that must name the org's own URL (token `instance_url`).
    pub(crate) async fn start_fn(responses: impl FnOnce(&str) -> Vec<Canned>) -> Self {
        let answers = responses(Self::URL).into_iter().map(Canned::answer).collect();
        Self { url: Self::URL.to_string(), transport: Scripted::in_order(answers) }
    }

    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }

    pub(crate) fn transport(&self) -> Arc<dyn Transport> {
        self.transport.clone()
    }

    /// Each request as `METHOD target HTTP/1.1`, its headers and its body.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.transport
            .requests()
            .iter()
            .map(|r| {
                let headers: String = r.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
                format!("{} {} HTTP/1.1\r\n{headers}\r\n{}", r.method, r.target, r.text())
            })
            .collect()
    }
}

/// A transport that reaches nothing (connection refused).
pub(crate) fn unreachable() -> Arc<dyn Transport> {
    Scripted::new(|_| Err(TransportError::new(Failure::Connect, "connection refused")))
}
