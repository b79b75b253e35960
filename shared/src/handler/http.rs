//! The HTTP shape of the two API Gateway routes, free of AWS types: `main.rs` converts the
//! Lambda request into an [`InboundRequest`] and the [`Reply`] back.

use chrono::{DateTime, Utc};

/// One HTTP request as the handlers see it.
#[derive(Debug, Clone, Default)]
pub struct InboundRequest {
    /// `POST`, `GET`... as sent.
    pub method: String,
    /// The route's path, without the API stage (`/pagerduty/webhook`).
    pub path: String,
    /// The raw query string, without `?` (it may hold a credential: never logged).
    pub query: String,
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
    /// A `POST` of `body` to `path` (tests, the local demo, the simulators' forwarding).
    pub fn post(path: &str, headers: Vec<(String, String)>, body: impl Into<Vec<u8>>) -> Self {
        Self { method: "POST".into(), path: path.into(), headers, body: body.into(), ..Self::default() }
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find_map(|(k, v)| (percent_decode(k) == name).then(|| percent_decode(v)))
    }

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

/// `%XX` and `+` decoding of one query component; invalid escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("two ASCII hex digits");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks that `request` is a `POST` to one of `routes` (the paths the function serves) and
/// returns the path. Anything else is refused before any work is done: 405 for another method on
/// a route, 404 for another path.
pub fn route<'a>(request: &InboundRequest, routes: &[&'a str]) -> Result<&'a str, Reply> {
    let Some(path) = routes.iter().find(|r| **r == request.path) else {
        let known = routes.join(" or ");
        return Err(Reply::message(404, "not_found", format!("no such route: POST to {known}")));
    };
    if request.method != "POST" {
        return Err(
            Reply::message(405, "method_not_allowed", format!("{path} accepts POST only")).with_header("allow", "POST")
        );
    }
    Ok(path)
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

    #[test]
    fn only_a_post_to_a_served_path_is_routed() {
        let routes = ["/salesforce/records", "/salesforce/outbound-message"];
        let post = InboundRequest::post("/salesforce/records", vec![], "{}");
        assert_eq!(route(&post, &routes), Ok("/salesforce/records"));
        for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "post", ""] {
            let request = InboundRequest { method: method.into(), ..post.clone() };
            let refused = route(&request, &routes).unwrap_err();
            assert_eq!(refused.status, 405, "{method}");
            assert!(refused.headers.contains(&("allow", "POST".into())));
        }
        for path in [
            "/admin",
            "/",
            "",
            "/salesforce/records/",
            "/salesforce/records/x",
            "/prod/salesforce/records",
            "/SALESFORCE/RECORDS",
        ] {
            let request = InboundRequest { path: path.into(), ..post.clone() };
            assert_eq!(route(&request, &routes).unwrap_err().status, 404, "{path:?}");
        }
    }

    #[test]
    fn query_parameters_are_decoded() {
        let request = InboundRequest { query: "a=1&token=x%2By+z&token=second&flag".into(), ..Default::default() };
        assert_eq!(request.query_param("token").as_deref(), Some("x+y z"));
        assert_eq!(request.query_param("a").as_deref(), Some("1"));
        assert_eq!(request.query_param("flag").as_deref(), Some(""));
        assert_eq!(request.query_param("missing"), None);
        let odd = InboundRequest { query: "token=%zz%+1%4".into(), ..Default::default() };
        assert_eq!(odd.query_param("token").as_deref(), Some("%zz% 1%4"));
    }
}
