//! Salesforce errors, classified once so that callers decide retry vs. DLQ by asking the error
//! (`Classify::class()` / `is_transient()`), never by matching strings.

use crate::class::{Class, Classify};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One entry of a Salesforce error array: `[{"message", "errorCode", "fields"}]`.
///
/// Composite collection results spell the code `statusCode`; both are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(rename = "errorCode", alias = "statusCode", default)]
    pub error_code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_code, self.message)?;
        if !self.fields.is_empty() {
            write!(f, " (fields: {})", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// Error codes Salesforce documents (or is observed) to clear up by themselves.
const TRANSIENT_CODES: &[&str] = &[
    "UNABLE_TO_LOCK_ROW",
    "REQUEST_LIMIT_EXCEEDED",
    "SERVER_UNAVAILABLE",
    // Composite allOrNone: the subrequest itself was fine, another one failed and rolled it back.
    // Whether to retry is decided by the failure that caused the halt, not by this code.
    "PROCESSING_HALTED",
];

/// Classifies one Salesforce `errorCode` on its own (without the HTTP status).
pub fn classify_code(code: &str) -> Class {
    if TRANSIENT_CODES.contains(&code) {
        Class::Transient
    } else if matches!(
        code,
        "INVALID_SESSION_ID" | "INVALID_AUTH_HEADER" | "invalid_grant" | "invalid_client" | "invalid_client_id"
    ) {
        Class::Auth
    } else {
        Class::Permanent
    }
}

/// Classifies an HTTP answer from its status and its error array.
pub fn classify(status: u16, errors: &[ApiError]) -> Class {
    // A known code wins over the status: UNABLE_TO_LOCK_ROW is observed with 400 and 500,
    // REQUEST_LIMIT_EXCEEDED with 403.
    let mut kinds = errors.iter().map(|e| classify_code(&e.error_code));
    let codes_kind = if errors.iter().any(|e| e.error_code == "PROCESSING_HALTED") {
        // Halted subrequests say nothing about themselves; retrying them is safe.
        Some(Class::Transient)
    } else if errors.is_empty() {
        None
    } else if kinds.any(|k| k == Class::Auth) {
        Some(Class::Auth)
    } else if errors.iter().all(|e| classify_code(&e.error_code) == Class::Transient) {
        Some(Class::Transient)
    } else {
        Some(Class::Permanent)
    };
    match (status, codes_kind) {
        (_, Some(Class::Transient)) => Class::Transient,
        (_, Some(Class::Auth)) => Class::Auth,
        (401, _) => Class::Auth,
        (408 | 429, _) => Class::Transient,
        (500..=599, _) => Class::Transient,
        (_, Some(kind)) => kind,
        _ => Class::Permanent,
    }
}

/// Parses an error body: the usual array, a single object, or an OAuth error. Anything else is
/// kept as text in a synthetic entry so nothing is lost.
pub fn parse_error_body(body: &str) -> Vec<ApiError> {
    if let Ok(list) = serde_json::from_str::<Vec<ApiError>>(body) {
        return list;
    }
    if let Ok(one) = serde_json::from_str::<ApiError>(body)
        && !one.error_code.is_empty()
    {
        return vec![one];
    }
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body)
        && let Some(code) = map.get("error").and_then(Value::as_str)
    {
        return vec![ApiError {
            error_code: code.to_string(),
            message: map.get("error_description").and_then(Value::as_str).unwrap_or_default().to_string(),
            fields: Vec::new(),
        }];
    }
    let text: String = body.chars().take(500).collect();
    if text.trim().is_empty() {
        Vec::new()
    } else {
        vec![ApiError { error_code: String::new(), message: text, fields: Vec::new() }]
    }
}

/// What one composite subrequest did.
#[derive(Debug, Clone, PartialEq)]
pub struct SubrequestFailure {
    pub reference_id: String,
    pub http_status: u16,
    pub errors: Vec<ApiError>,
    pub kind: Class,
}

impl std::fmt::Display for SubrequestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}): ", self.reference_id, self.http_status)?;
        let parts: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

/// Everything that can go wrong talking to Salesforce.
///
/// No variant carries a token, a private key or a session id.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// The JWT bearer flow was refused, or the session could not be renewed.
    #[error("Salesforce authentication failed: {message}. {hint}")]
    Auth {
        /// What Salesforce said (e.g. `invalid_grant: user hasn't approved this consumer`).
        message: String,
        /// What to fix.
        hint: String,
    },
    /// The JWT secret is unusable (bad PEM, missing field) before anything was sent.
    #[error("Salesforce credentials are unusable: {0}. Fix the Salesforce JWT secret in Secrets Manager")]
    Credentials(String),
    /// The JWT secret could not be read from Secrets Manager; nothing was sent.
    #[error("Salesforce login not attempted: the connected-app secret could not be read: {0}")]
    Secret(#[source] crate::secrets::SecretsError),
    /// Salesforce answered with an error array.
    #[error("Salesforce {method} {path} failed with HTTP {status}: {}", join_errors(.errors))]
    Api {
        method: String,
        /// Path below the instance URL, e.g. `/services/data/v62.0/sobjects/Case/500...`.
        path: String,
        status: u16,
        errors: Vec<ApiError>,
    },
    /// A composite request had failing subrequests; `succeeded` lists those that did not fail.
    #[error("Salesforce composite request: {} of {} subrequests failed: {}", .failed.len(), .failed.len() + .succeeded.len(), join_failures(.failed))]
    Composite { succeeded: Vec<String>, failed: Vec<SubrequestFailure> },
    /// The request never got an answer (timeout, DNS, connection reset).
    #[error("Salesforce could not be reached ({what}): {message}")]
    Transport { what: &'static str, message: String },
    /// Salesforce answered with something we cannot read.
    #[error("unexpected answer from Salesforce {path}: {message}")]
    Unexpected { path: String, message: String },
    /// The caller asked for something we refuse to send.
    #[error("refused before sending to Salesforce: {0}")]
    BadInput(String),
    /// A write was sent and no answer says whether Salesforce carried it out (a timeout or a
    /// connection closed after sending, a 5xx, an answer we cannot read): it may have happened.
    /// A caller must look before sending it again (see [`SalesforceError::outcome_unknown`]).
    #[error("Salesforce may have carried out {method} {path} (outcome unknown): {cause}")]
    Uncertain { method: String, path: String, cause: Box<SalesforceError> },
}

/// The session was refused again right after a fresh token was minted.
pub(crate) fn auth_error_from_session(errors: &[ApiError]) -> SalesforceError {
    SalesforceError::Auth {
        message: format!(
            "a freshly minted token was refused too ({})",
            join_errors(errors)
        ),
        hint: "Check that the integration user is active and has 'API Enabled', and that the connected app's session policy and IP restrictions allow it.".into(),
    }
}

fn join_errors(errors: &[ApiError]) -> String {
    if errors.is_empty() {
        return "no error details".into();
    }
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn join_failures(failed: &[SubrequestFailure]) -> String {
    failed.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | ")
}

impl SalesforceError {
    /// True when the request was a write that may have been carried out: sending it again could
    /// do it twice. False when it was certainly not (never sent, or refused with an answer).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, SalesforceError::Uncertain { .. })
    }

    /// Whether this failure of a request that was (or was being) sent leaves its outcome unknown:
    /// no answer after the connection was made, a 5xx without an explicit refusal, or a garbled
    /// answer. A refused connection, an error array that refuses the request (a lock, the daily
    /// limit, validation) and anything raised before sending leave no doubt.
    fn leaves_outcome_unknown(&self) -> bool {
        match self {
            SalesforceError::Transport { what, .. } => *what != "connection",
            SalesforceError::Api { status, errors, .. } => {
                *status >= 500
                    && !errors
                        .iter()
                        .any(|e| matches!(e.error_code.as_str(), "UNABLE_TO_LOCK_ROW" | "REQUEST_LIMIT_EXCEEDED"))
            }
            SalesforceError::Unexpected { .. } => true,
            _ => false,
        }
    }

    /// Marks the failure of a write (`method` other than GET) whose outcome it leaves unknown as
    /// [`SalesforceError::Uncertain`]; anything else is returned as it is.
    pub(crate) fn of_write(self, method: &str, path: &str) -> Self {
        if method != "GET" && self.leaves_outcome_unknown() {
            SalesforceError::Uncertain { method: method.to_string(), path: path.to_string(), cause: Box::new(self) }
        } else {
            self
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == Class::Transient
    }

    /// The Salesforce error codes carried, for audit entries and metrics.
    pub fn error_codes(&self) -> Vec<&str> {
        match self {
            SalesforceError::Api { errors, .. } => errors.iter().map(|e| e.error_code.as_str()).collect(),
            SalesforceError::Composite { failed, .. } => {
                failed.iter().flat_map(|f| f.errors.iter().map(|e| e.error_code.as_str())).collect()
            }
            SalesforceError::Uncertain { cause, .. } => cause.error_codes(),
            _ => Vec::new(),
        }
    }

    /// True for a 401 / `INVALID_SESSION_ID`: the token must be minted again.
    pub(crate) fn is_expired_session(&self) -> bool {
        match self {
            SalesforceError::Api { status, errors, .. } => {
                *status == 401 || errors.iter().any(|e| e.error_code == "INVALID_SESSION_ID")
            }
            _ => false,
        }
    }

    pub(crate) fn from_transport(err: crate::transport::TransportError) -> Self {
        use crate::transport::Failure;
        let what = match err.failure {
            Failure::Connect => "connection",
            Failure::Timeout => "timeout",
            Failure::Body => "body",
            Failure::Other => "request",
        };
        SalesforceError::Transport { what, message: err.message }
    }
}

/// The class decides retry and DLQ (`handler::settle::FailureKind`).
impl Classify for SalesforceError {
    fn class(&self) -> Class {
        match self {
            SalesforceError::Auth { .. } | SalesforceError::Credentials(_) => Class::Auth,
            SalesforceError::Api { status, errors, .. } => classify(*status, errors),
            SalesforceError::Composite { failed, .. } => {
                // The worst failure decides: one permanent failure means a retry cannot finish the job.
                let kinds: Vec<Class> = failed.iter().map(|f| f.kind).collect();
                if kinds.contains(&Class::Auth) {
                    Class::Auth
                } else if kinds.contains(&Class::Permanent) {
                    Class::Permanent
                } else if kinds.contains(&Class::BadInput) {
                    Class::BadInput
                } else {
                    Class::Transient
                }
            }
            SalesforceError::Transport { .. } => Class::Transient,
            // A garbled answer is most often a proxy or maintenance page: try again.
            SalesforceError::Unexpected { .. } => Class::Transient,
            SalesforceError::BadInput(_) => Class::BadInput,
            SalesforceError::Secret(err) => err.class(),
            SalesforceError::Uncertain { cause, .. } => cause.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, body: &str) -> SalesforceError {
        SalesforceError::Api { method: "PATCH".into(), path: "/x".into(), status, errors: parse_error_body(body) }
    }

    #[test]
    fn lock_row_is_transient_even_as_http_400_or_500() {
        let body = r#"[{"message":"unable to obtain exclusive access","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]"#;
        assert!(api(400, body).is_transient());
        assert!(api(500, body).is_transient());
    }

    #[test]
    fn request_limit_exceeded_403_is_transient() {
        let body = r#"[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]"#;
        assert_eq!(api(403, body).class(), Class::Transient);
    }

    #[test]
    fn validation_errors_are_permanent() {
        for code in [
            "INVALID_FIELD",
            "REQUIRED_FIELD_MISSING",
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "NOT_FOUND",
            "MALFORMED_ID",
            "INVALID_TYPE",
            "STRING_TOO_LONG",
            "SOMETHING_NEW",
        ] {
            let body = format!(r#"[{{"errorCode":"{code}","message":"m"}}]"#);
            assert_eq!(api(400, &body).class(), Class::Permanent, "{code}");
        }
    }

    #[test]
    fn server_errors_without_body_are_transient() {
        assert!(api(503, "").is_transient());
        assert!(api(502, "<html>bad gateway</html>").is_transient());
    }

    #[test]
    fn invalid_session_is_auth() {
        let body = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
        let err = api(401, body);
        assert_eq!(err.class(), Class::Auth);
        assert!(err.is_expired_session());
    }

    #[test]
    fn error_message_names_code_message_and_fields() {
        let body = r#"[{"fields":["LastName"],"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING"}]"#;
        let text = api(400, body).to_string();
        assert!(text.contains("REQUIRED_FIELD_MISSING"), "{text}");
        assert!(text.contains("LastName"), "{text}");
        assert!(text.contains("HTTP 400"), "{text}");
    }

    #[test]
    fn oauth_error_objects_become_one_entry() {
        let errors =
            parse_error_body(r#"{"error":"invalid_grant","error_description":"expired access/refresh token"}"#);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].error_code, "invalid_grant");
        assert_eq!(errors[0].message, "expired access/refresh token");
    }

    #[test]
    fn only_writes_without_an_answer_leave_the_outcome_unknown() {
        let timeout = || SalesforceError::Transport { what: "timeout", message: "t".into() };
        assert!(timeout().of_write("POST", "/x").outcome_unknown());
        assert!(timeout().of_write("POST", "/x").is_transient(), "still retried, after a look");
        assert!(!timeout().of_write("GET", "/x").outcome_unknown(), "a read changes nothing");
        let refused = SalesforceError::Transport { what: "connection", message: "refused".into() };
        assert!(!refused.of_write("POST", "/x").outcome_unknown(), "never reached Salesforce");
        assert!(api(503, "").of_write("PATCH", "/x").outcome_unknown());
        let lock = r#"[{"message":"locked","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]"#;
        assert!(!api(500, lock).of_write("PATCH", "/x").outcome_unknown(), "an explicit refusal");
        assert!(!api(400, "").of_write("POST", "/x").outcome_unknown());
        let garbled = SalesforceError::Unexpected { path: "/x".into(), message: "not JSON".into() };
        let err = garbled.of_write("POST", "/x");
        assert!(err.outcome_unknown() && err.to_string().contains("outcome unknown"), "{err}");
    }

    #[test]
    fn composite_kind_is_the_worst_failure() {
        let failure = |kind| SubrequestFailure { reference_id: "r".into(), http_status: 400, errors: vec![], kind };
        let err = SalesforceError::Composite {
            succeeded: vec!["a".into()],
            failed: vec![failure(Class::Transient), failure(Class::Permanent)],
        };
        assert_eq!(err.class(), Class::Permanent);
        let err = SalesforceError::Composite { succeeded: vec![], failed: vec![failure(Class::Transient)] };
        assert!(err.is_transient());
    }
}
