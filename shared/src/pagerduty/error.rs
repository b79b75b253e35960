//! Errors of the PagerDuty REST client, classified for the retry contract: transient failures
//! go to the retry queue, the rest to the DLQ with PagerDuty's own explanation.

use crate::class::{Class, Classify};
use crate::secrets::SecretsError;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum PagerdutyError {
    #[error(
        "PagerDuty rate limit reached during {operation} (429){}; the call can be retried after the reset",
        retry_after.map(|d| format!(", reset in {}s", d.as_secs())).unwrap_or_default()
    )]
    RateLimited { operation: &'static str, retry_after: Option<Duration> },
    /// Our own limiter refused to wait this long (a burst beyond the per-key limit, or a 429
    /// reset still running); nothing was sent.
    #[error(
        "PagerDuty call {operation} not sent: the client-side rate limit would delay it {}s, longer than allowed; queue it for retry",
        wait.as_secs_f64().ceil()
    )]
    Throttled { operation: &'static str, wait: Duration },
    #[error("PagerDuty answered {status} to {operation}: {}{}", describe(message, *code, errors), hint(*status))]
    Api { operation: &'static str, status: StatusCode, code: Option<i64>, message: String, errors: Vec<String> },
    #[error("could not reach PagerDuty for {operation}{}: {reason}", if *timeout { " (timed out)" } else { "" })]
    Transport {
        operation: &'static str,
        reason: String,
        timeout: bool,
        /// The connection could not be made: nothing was sent.
        connect: bool,
    },
    #[error("PagerDuty's answer to {operation} is not what the API documents: {reason}")]
    Decode { operation: &'static str, reason: String },
    #[error(
        "PagerDuty has no priority named {0:?}; check the rule's priority against Incident Priorities in PagerDuty (names are matched exactly, then case-insensitively)"
    )]
    UnknownPriority(String),
    #[error("PagerDuty has no user with the email {0:?}; the From user (PD_FROM_EMAIL) must be a user of the account")]
    UnknownUser(String),
    /// The API token could not be read from its secret; nothing was sent.
    #[error("PagerDuty call {operation} not sent: the API token could not be read: {source}")]
    Credential { operation: &'static str, source: SecretsError },
    /// No app token could be had for the OAuth client in the secret; nothing was sent.
    #[error("PagerDuty call {operation} not sent: no app token: {source}")]
    Token { operation: &'static str, source: super::oauth::OAuthError },
    #[error("invalid request for {operation}: {reason}")]
    InvalidRequest { operation: &'static str, reason: &'static str },
    /// Not sent: its timeout would have run past the caller's deadline (see
    /// [`super::PagerdutyClient::until`]).
    #[error("PagerDuty call {operation} not sent: too little time is left before the deadline to wait for its answer")]
    NoTimeLeft { operation: &'static str },
    /// A write was sent and no answer says whether PagerDuty carried it out (a timeout or a
    /// connection closed after sending, a 5xx, a 2xx we cannot read): it may have happened. A
    /// caller must look before sending it again (see [`PagerdutyError::outcome_unknown`]).
    #[error("PagerDuty may have carried out {operation} (outcome unknown): {cause}")]
    Uncertain { operation: &'static str, cause: Box<PagerdutyError> },
}

fn describe(message: &str, code: Option<i64>, errors: &[String]) -> String {
    let mut out = message.to_string();
    if let Some(code) = code {
        out.push_str(&format!(" (code {code})"));
    }
    if !errors.is_empty() {
        out.push_str(": ");
        out.push_str(&errors.join("; "));
    }
    out
}

fn hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => " — the PagerDuty API token is invalid or revoked; update the token secret",
        403 => {
            " — the PagerDuty token may not do this (read-only key, the user lacks the role, or an app token lacks the endpoint's scope); use a full-access key or grant the scope (syncctl doctor lists the missing ones)"
        }
        404 => " — the referenced PagerDuty object does not exist (deleted, or an id from another account)",
        _ => "",
    }
}

impl PagerdutyError {
    /// True when the call was a write that may have been carried out: sending it again could do
    /// it twice. False when it certainly was not (never sent, or refused with an answer).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, PagerdutyError::Uncertain { .. })
    }

    /// True when nothing was sent (our rate limiter, the deadline or an unreadable token held the
    /// call back): PagerDuty did not fail, so its breaker is not told.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            PagerdutyError::Throttled { .. }
                | PagerdutyError::NoTimeLeft { .. }
                | PagerdutyError::Credential { .. }
                | PagerdutyError::Token { .. }
        )
    }

    /// Marks the failure of a write (`write`: any method but GET) whose outcome it leaves
    /// unknown as [`PagerdutyError::Uncertain`]: no answer after the connection was made, a 5xx,
    /// or a 2xx that cannot be read. A 4xx (429 included) is an answer: the write was refused.
    pub(crate) fn of_write(self, write: bool) -> Self {
        let unknown = match &self {
            PagerdutyError::Transport { operation, connect, .. } => (!connect).then_some(*operation),
            PagerdutyError::Api { operation, status, .. } => status.is_server_error().then_some(*operation),
            PagerdutyError::Decode { operation, .. } => Some(*operation),
            _ => None,
        };
        match unknown {
            Some(operation) if write => PagerdutyError::Uncertain { operation, cause: Box::new(self) },
            _ => self,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == Class::Transient
    }

    /// How long to wait before trying again: PagerDuty's 429 reset, or our limiter's wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PagerdutyError::RateLimited { retry_after, .. } => *retry_after,
            PagerdutyError::Throttled { wait, .. } => Some(*wait),
            PagerdutyError::Uncertain { cause, .. } => cause.retry_after(),
            _ => None,
        }
    }

    /// The HTTP status PagerDuty answered, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            PagerdutyError::Api { status, .. } => Some(*status),
            PagerdutyError::RateLimited { .. } => Some(StatusCode::TOO_MANY_REQUESTS),
            PagerdutyError::Uncertain { cause, .. } => cause.status(),
            _ => None,
        }
    }

    /// Builds the error for a non-2xx answer from its status, headers and body.
    pub fn from_response(operation: &'static str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return PagerdutyError::RateLimited { operation, retry_after: retry_after(headers) };
        }
        // `{"error": {"message", "code", "errors": [...]}}` (OpenAPI: the generic error body).
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let message =
            error.and_then(|e| e.get("message")).and_then(|m| m.as_str()).map(str::to_string).unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no body").to_string()
                } else {
                    text.chars().take(300).collect()
                }
            });
        let code = error.and_then(|e| e.get("code")).and_then(|c| c.as_i64());
        let errors = error
            .and_then(|e| e.get("errors"))
            .and_then(|e| e.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        PagerdutyError::Api { operation, status, code, message, errors }
    }

    pub(crate) fn transport(operation: &'static str, e: crate::transport::TransportError) -> Self {
        PagerdutyError::Transport { operation, timeout: e.timed_out, connect: e.nothing_sent(), reason: e.message }
    }

    /// True when PagerDuty refused an incident because an open one has the same incident_key.
    pub fn is_duplicate_incident_key(&self) -> bool {
        let PagerdutyError::Api { status, message, errors, .. } = self else {
            return false;
        };
        if !matches!(status.as_u16(), 400 | 409) {
            return false;
        }
        // PagerDuty says "Open incident with matching dedup key already exists on this service".
        std::iter::once(message).chain(errors).any(|m| {
            let m = m.to_ascii_lowercase();
            (m.contains("dedup key") || m.contains("incident key") || m.contains("incident_key"))
                && m.contains("already exists")
        })
    }
}

impl PagerdutyError {
    /// True when PagerDuty refused a status change because the incident is already resolved.
    /// The wording is not in the OpenAPI document; matched loosely on the message and errors.
    pub fn is_already_resolved(&self) -> bool {
        let PagerdutyError::Api { status, message, errors, .. } = self else {
            return false;
        };
        matches!(status.as_u16(), 400 | 409)
            && std::iter::once(message).chain(errors).any(|m| m.to_ascii_lowercase().contains("already resolved"))
    }
}

/// Seconds to wait from `ratelimit-reset` (PagerDuty's documented header) or `Retry-After`.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    ["ratelimit-reset", "retry-after"].iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?.trim();
        let secs: f64 = value.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
    })
}

/// The class decides retry and DLQ (`handler::settle::FailureKind`).
impl Classify for PagerdutyError {
    fn class(&self) -> Class {
        match self {
            PagerdutyError::RateLimited { .. } | PagerdutyError::Throttled { .. } => Class::Transient,
            PagerdutyError::Transport { .. } => Class::Transient,
            // A 2xx we cannot read may be a cut-off answer; the operations are safe to repeat
            // (creation is de-duplicated by incident_key).
            PagerdutyError::Decode { .. } => Class::Transient,
            PagerdutyError::Api { status, .. } => match status.as_u16() {
                401 | 403 => Class::Auth,
                400 | 422 => Class::BadInput,
                408 | 429 => Class::Transient,
                s if s >= 500 => Class::Transient,
                _ => Class::Permanent,
            },
            PagerdutyError::UnknownPriority(_) | PagerdutyError::UnknownUser(_) => Class::BadInput,
            PagerdutyError::InvalidRequest { .. } => Class::BadInput,
            PagerdutyError::NoTimeLeft { .. } => Class::Transient,
            PagerdutyError::Credential { source, .. } => source.class(),
            PagerdutyError::Token { source, .. } => source.class(),
            PagerdutyError::Uncertain { cause, .. } => cause.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn api(status: u16, body: &str) -> PagerdutyError {
        PagerdutyError::from_response(
            "create_incident",
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn statuses_are_classified_for_the_retry_contract() {
        assert_eq!(api(500, "").class(), Class::Transient);
        assert_eq!(api(503, "<html>").class(), Class::Transient);
        assert_eq!(api(408, "").class(), Class::Transient);
        assert_eq!(api(429, "").class(), Class::Transient);
        assert_eq!(api(401, "").class(), Class::Auth);
        assert_eq!(api(403, "").class(), Class::Auth);
        assert_eq!(api(400, "").class(), Class::BadInput);
        assert_eq!(api(404, "").class(), Class::Permanent);
        assert_eq!(api(409, "").class(), Class::Permanent);
        assert!(api(502, "").is_transient());
        assert!(!api(400, "").is_transient());
        assert!(PagerdutyError::UnknownPriority("P9".into()).class() == Class::BadInput);
        let throttled = PagerdutyError::Throttled { operation: "acknowledge", wait: Duration::from_millis(59_100) };
        assert!(throttled.is_transient());
        assert_eq!(throttled.retry_after(), Some(Duration::from_millis(59_100)));
        assert!(throttled.to_string().contains("60s"), "{throttled}");
    }

    #[test]
    fn only_writes_without_an_answer_leave_the_outcome_unknown() {
        let lost = || PagerdutyError::Transport {
            operation: "add_note",
            reason: "closed".into(),
            timeout: false,
            connect: false,
        };
        assert!(lost().of_write(true).outcome_unknown());
        assert!(lost().of_write(true).is_transient(), "retried, after a look");
        assert!(!lost().of_write(false).outcome_unknown(), "a read changes nothing");
        let refused = PagerdutyError::Transport {
            operation: "add_note",
            reason: "refused".into(),
            timeout: false,
            connect: true,
        };
        assert!(!refused.of_write(true).outcome_unknown(), "never reached PagerDuty");
        assert!(api(502, "").of_write(true).outcome_unknown());
        assert!(api(502, "").of_write(true).to_string().contains("outcome unknown"));
        assert!(!api(429, "").of_write(true).outcome_unknown(), "refused with an answer");
        assert!(!api(400, "").of_write(true).outcome_unknown());
        let throttled = PagerdutyError::Throttled { operation: "add_note", wait: Duration::from_secs(1) };
        assert!(throttled.not_sent() && !throttled.of_write(true).outcome_unknown());
        assert!(PagerdutyError::NoTimeLeft { operation: "add_note" }.not_sent());
    }

    #[test]
    fn a_400_shows_pagerdutys_message_and_errors() {
        let e = api(
            400,
            r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Title cannot be empty."]}}"#,
        );
        let text = e.to_string();
        assert!(text.contains("400 Bad Request"), "{text}");
        assert!(text.contains("Invalid Input Provided (code 2001): Title cannot be empty."), "{text}");
        assert!(text.contains("create_incident"));
    }

    #[test]
    fn auth_errors_say_what_to_fix() {
        assert!(
            api(401, r#"{"error":{"message":"Unauthorized","code":2006}}"#)
                .to_string()
                .contains("update the token secret")
        );
        assert!(api(403, "").to_string().contains("full-access key"));
    }

    #[test]
    fn a_non_json_error_body_is_shown_shortened() {
        let e = api(502, &"x".repeat(1000));
        assert!(e.to_string().len() < 500);
    }

    #[test]
    fn a_429_carries_the_reset_from_ratelimit_reset_or_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-reset", HeaderValue::from_static("17"));
        let e = PagerdutyError::from_response("x", StatusCode::TOO_MANY_REQUESTS, &h, b"");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(17)));
        assert!(e.is_transient());
        assert!(e.to_string().contains("reset in 17s"));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn the_duplicate_incident_key_answer_is_recognised() {
        let dup = api(
            400,
            r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Open incident with matching dedup key already exists on this service"]}}"#,
        );
        assert!(dup.is_duplicate_incident_key());
        let other = api(
            400,
            r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Title cannot be empty."]}}"#,
        );
        assert!(!other.is_duplicate_incident_key());
        assert!(!api(500, "dedup key already exists").is_duplicate_incident_key());
    }

    #[test]
    fn an_already_resolved_answer_is_recognised() {
        let e = api(
            400,
            r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Incident Already Resolved"]}}"#,
        );
        assert!(e.is_already_resolved());
        assert!(!api(400, r#"{"error":{"message":"Invalid Input Provided"}}"#).is_already_resolved());
        assert_eq!(Class::BadInput.as_str(), "bad_input");
    }
}
