//! The HTTP shape of the two API Gateway routes, free of AWS types: `main.rs` converts the
//! Lambda request into an [`InboundRequest`] and the [`Reply`] back.

use chrono::{DateTime, Utc};

/// One HTTP request as the handlers see it.
#[derive(Debug, Clone, Default)]
pub struct InboundRequest {
    /// Header names in lower case. A header sent twice appears twice.
    pub headers: Vec<(String, String)>,
    /// The raw body bytes (API Gateway's base64 already decoded): signatures are checked on these.
    pub body: Vec<u8>,
    /// The Lambda request id (or another id tying the logs of this request together).
    pub correlation_id: String,
    /// When the function will be stopped; work that cannot finish before then is queued.
    pub deadline: Option<DateTime<Utc>>,
}

impl InboundRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of a header, joined with `,` (how HTTP folds repeated headers).
    pub fn header_joined(&self, name: &str) -> Option<String> {
        let values: Vec<&str> =
            self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// The media type of the body, lower case, without parameters.
    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    /// A JSON reply. `body` is serialised with serde_json.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self { status, content_type: "application/json", headers: Vec::new(), body: body.to_string() }
    }

    /// `{"status": <status word>, "message": ...}` with extra fields.
    pub fn message(status: u16, word: &str, message: impl Into<String>) -> Self {
        Self::json(status, &serde_json::json!({ "status": word, "message": message.into() }))
    }

    pub fn xml(status: u16, body: String) -> Self {
        Self { status, content_type: "text/xml; charset=utf-8", headers: Vec::new(), body }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_regardless_of_case_and_repeats_are_joined() {
        let request = InboundRequest {
            headers: vec![
                ("content-type".into(), "application/json; charset=utf-8".into()),
                ("x-pagerduty-signature".into(), "v1=aa".into()),
                ("X-PagerDuty-Signature".into(), "v1=bb".into()),
            ],
            ..Default::default()
        };
        assert_eq!(request.header("X-PAGERDUTY-SIGNATURE"), Some("v1=aa"));
        assert_eq!(request.header_joined("x-pagerduty-signature").as_deref(), Some("v1=aa,v1=bb"));
        assert_eq!(request.content_type().as_deref(), Some("application/json"));
        assert_eq!(request.header("missing"), None);
    }
}
