//! How the Apex trigger's posts (and Outbound Messages' endpoint URLs) are authenticated: the
//! Salesforce side's counterpart of [`crate::pagerduty::signature`].
//!
//! `X-PDSync-Timestamp: <unix seconds>` and `X-PDSync-Signature: v1=<hex HMAC-SHA256 over
//! "<timestamp>.<raw body>">` (several `v1=` during rotation), or `Authorization: Bearer <secret>`
//! from a Named Credential, or an Outbound Message endpoint URL's `token`. Every comparison is in
//! constant time, against the current and the previous secret.

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

/// Posts whose timestamp is further than this from now are refused (replay protection).
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;
pub const TIMESTAMP_HEADER: &str = "X-PDSync-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-PDSync-Signature";

/// Why an inbound request was not authenticated. The message says what was wrong without
/// revealing the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundAuthError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("{SIGNATURE_HEADER} has no `v1=<hex>` signature")]
    MalformedSignature,
    #[error("{TIMESTAMP_HEADER} `{0}` is not a unix timestamp in seconds")]
    MalformedTimestamp(String),
    #[error("timestamp is {0} s old, more than the {1} s allowed (replayed or delayed post)")]
    Stale(i64, i64),
    #[error("timestamp is {0} s in the future, more than the {1} s allowed (check the clocks)")]
    Future(i64, i64),
    #[error("signature matches none of the configured secrets")]
    SignatureMismatch,
    #[error("Authorization header is not `Bearer <secret>`")]
    MalformedBearer,
    #[error("bearer secret matches none of the configured secrets")]
    BearerMismatch,
    #[error("no inbound secret is configured")]
    NoSecrets,
    #[error(
        "the endpoint URL carries no `token` query parameter: set the Outbound Message's Endpoint URL to the stack's SalesforceOutboundMessageUrl output"
    )]
    MissingToken,
    #[error(
        "the endpoint URL's token matches none of the configured ones: copy the current SalesforceOutboundMessageUrl output into the Outbound Message"
    )]
    TokenMismatch,
}

impl InboundAuthError {
    /// Short reason for the `EventsRejected` metric dimension.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            InboundAuthError::Stale(..) | InboundAuthError::Future(..) => "stale_timestamp",
            _ => "signature",
        }
    }

    /// A signature, bearer or URL token that matches no cached secret: the secret may have been rotated
    /// since it was read (a missing, malformed or stale header cannot be explained so).
    pub fn rotation_may_explain(&self) -> bool {
        matches!(
            self,
            InboundAuthError::SignatureMismatch | InboundAuthError::BearerMismatch | InboundAuthError::TokenMismatch
        )
    }
}

/// The `v1=` signature our Apex sends for `body` at `timestamp`: lowercase hex HMAC-SHA256 over
/// `"<timestamp>.<body>"`.
pub fn sign_trigger_post(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verifies `X-PDSync-Signature` against every secret (rotation), in constant time, after the
/// timestamp is checked to be within `tolerance_seconds` of `now`.
pub fn verify_trigger_signature(
    body: &[u8],
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    secrets: &[&str],
    now: DateTime<Utc>,
    tolerance_seconds: i64,
) -> Result<(), InboundAuthError> {
    let timestamp_text = timestamp_header.map(str::trim).ok_or(InboundAuthError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature_text = signature_header.ok_or(InboundAuthError::MissingHeader(SIGNATURE_HEADER))?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| InboundAuthError::MalformedTimestamp(timestamp_text.chars().take(40).collect()))?;
    // Saturating: a hostile timestamp like i64::MIN must be refused, not overflow.
    let age = now.timestamp().saturating_sub(timestamp);
    if age > tolerance_seconds {
        return Err(InboundAuthError::Stale(age, tolerance_seconds));
    }
    if age.saturating_neg() > tolerance_seconds {
        return Err(InboundAuthError::Future(age.saturating_neg(), tolerance_seconds));
    }
    let candidates: Vec<Vec<u8>> = signature_text
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter_map(|hex_text| hex::decode(hex_text.trim()).ok())
        .collect();
    if candidates.is_empty() {
        return Err(InboundAuthError::MalformedSignature);
    }
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return Err(InboundAuthError::NoSecrets);
    }
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
        mac.update(timestamp_text.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        for candidate in &candidates {
            // `ct_eq` on slices of different length is false, still without early exit on content.
            matched |= expected.as_slice().ct_eq(candidate.as_slice());
        }
    }
    if bool::from(matched) { Ok(()) } else { Err(InboundAuthError::SignatureMismatch) }
}

/// Verifies `Authorization: Bearer <secret>` (Named Credential alternative), in constant time.
pub fn verify_bearer(authorization_header: Option<&str>, secrets: &[&str]) -> Result<(), InboundAuthError> {
    let header = authorization_header.ok_or(InboundAuthError::MissingHeader("Authorization"))?;
    let (scheme, presented) = header.trim().split_once(' ').ok_or(InboundAuthError::MalformedBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || presented.trim().is_empty() {
        return Err(InboundAuthError::MalformedBearer);
    }
    if matches_a_secret(presented.trim(), secrets)? { Ok(()) } else { Err(InboundAuthError::BearerMismatch) }
}

/// Verifies the `token` an Outbound Message's endpoint URL carries, in constant time.
pub fn verify_url_token(token: Option<&str>, secrets: &[&str]) -> Result<(), InboundAuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(InboundAuthError::MissingToken)?;
    if matches_a_secret(token, secrets)? { Ok(()) } else { Err(InboundAuthError::TokenMismatch) }
}

/// True when `presented` equals one of `secrets` (empty ones never match). Compares digests,
/// so that the time taken depends neither on where they differ nor on the secrets' lengths.
fn matches_a_secret(presented: &str, secrets: &[&str]) -> Result<bool, InboundAuthError> {
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return Err(InboundAuthError::NoSecrets);
    }
    let digest = |b: &[u8]| -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(b).into()
    };
    let presented = digest(presented.as_bytes());
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets {
        matched |= digest(secret.as_bytes()).ct_eq(&presented);
    }
    Ok(bool::from(matched))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000, 0).unwrap()
    }

    #[test]
    fn signature_made_with_current_or_previous_secret_is_accepted() {
        let body = br#"{"schema":1}"#;
        let ts = now().timestamp();
        let sig = sign_trigger_post("previous", ts, body);
        let ts_text = ts.to_string();
        verify_trigger_signature(body, Some(&ts_text), Some(&sig), &["current", "previous"], now(), 300).unwrap();
        let both = format!("v1=00ff, {}", sign_trigger_post("current", ts, body));
        verify_trigger_signature(body, Some(&ts_text), Some(&both), &["current"], now(), 300).unwrap();
    }

    #[test]
    fn signature_matches_an_independent_hmac_vector() {
        // `printf '%s' '1795000000.{"schema":1,"object":"Case"}' | openssl dgst -sha256 -hmac test-signing-key`,
        // the same computation as Apex `Crypto.generateMac('hmacSHA256', ...)` + `convertToHex`.
        let body = br#"{"schema":1,"object":"Case"}"#;
        let expected = "v1=f69bd90c0132d0f7494234dd917f3d4541fc33e9453d3dc811975fdecbdb9635";
        assert_eq!(sign_trigger_post("test-signing-key", 1_795_000_000, body), expected);
        verify_trigger_signature(
            body,
            Some("1795000000"),
            Some(expected),
            &["test-signing-key"],
            DateTime::from_timestamp(1_795_000_100, 0).unwrap(),
            DEFAULT_TOLERANCE_SECONDS,
        )
        .unwrap();
    }

    #[test]
    fn tampered_body_or_wrong_secret_is_refused() {
        let body = br#"{"schema":1}"#;
        let ts = now().timestamp();
        let sig = sign_trigger_post("current", ts, body);
        let ts_text = ts.to_string();
        assert_eq!(
            verify_trigger_signature(b"{\"schema\":2}", Some(&ts_text), Some(&sig), &["current"], now(), 300),
            Err(InboundAuthError::SignatureMismatch)
        );
        assert_eq!(
            verify_trigger_signature(body, Some(&ts_text), Some(&sig), &["other"], now(), 300),
            Err(InboundAuthError::SignatureMismatch)
        );
        assert_eq!(
            verify_trigger_signature(body, Some(&ts_text), Some("sha256=abc"), &["current"], now(), 300),
            Err(InboundAuthError::MalformedSignature)
        );
        assert_eq!(
            verify_trigger_signature(body, None, Some(&sig), &["current"], now(), 300),
            Err(InboundAuthError::MissingHeader(TIMESTAMP_HEADER))
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_with_the_reason() {
        let body = b"{}";
        let old = now().timestamp() - 301;
        let sig = sign_trigger_post("s", old, body);
        let err = verify_trigger_signature(body, Some(&old.to_string()), Some(&sig), &["s"], now(), 300).unwrap_err();
        assert_eq!(err, InboundAuthError::Stale(301, 300));
        assert_eq!(err.metric_reason(), "stale_timestamp");
        let future = now().timestamp() + 301;
        let sig = sign_trigger_post("s", future, body);
        let err =
            verify_trigger_signature(body, Some(&future.to_string()), Some(&sig), &["s"], now(), 300).unwrap_err();
        assert_eq!(err, InboundAuthError::Future(301, 300));
        // Exactly at the edge is accepted.
        let edge = now().timestamp() - 300;
        let sig = sign_trigger_post("s", edge, body);
        verify_trigger_signature(body, Some(&edge.to_string()), Some(&sig), &["s"], now(), 300).unwrap();
    }

    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        for ts in [i64::MIN.to_string(), i64::MAX.to_string()] {
            let err = verify_trigger_signature(b"{}", Some(&ts), Some("v1=00"), &["k"], now(), 300).unwrap_err();
            assert_eq!(err.metric_reason(), "stale_timestamp", "{ts}: {err}");
        }
    }

    #[test]
    fn bearer_is_checked_against_every_secret() {
        verify_bearer(Some("Bearer previous"), &["current", "previous"]).unwrap();
        verify_bearer(Some("bearer current"), &["current"]).unwrap();
        assert_eq!(verify_bearer(Some("Bearer nope"), &["current"]), Err(InboundAuthError::BearerMismatch));
        assert_eq!(verify_bearer(Some("Basic abc"), &["current"]), Err(InboundAuthError::MalformedBearer));
        assert_eq!(verify_bearer(None, &["current"]), Err(InboundAuthError::MissingHeader("Authorization")));
        assert_eq!(verify_bearer(Some("Bearer x"), &[""]), Err(InboundAuthError::NoSecrets));
    }

    proptest::proptest! {
        #[test]
        fn signature_verification_never_panics_on_any_headers(ts in "\\PC{0,30}", sig in "\\PC{0,200}") {
            let _ = verify_trigger_signature(b"{}", Some(&ts), Some(&sig), &["k"], now(), 300);
            let _ = verify_bearer(Some(&sig), &["k"]);
        }
    }
}
