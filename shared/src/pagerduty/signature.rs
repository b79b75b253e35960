//! `X-PagerDuty-Signature` verification for Webhooks v3 deliveries.
//!
//! The header is `v1=<hex HMAC-SHA256 of the raw body, keyed with the subscription secret>`,
//! possibly several comma-separated `v1=` values while PagerDuty rotates a secret. We hold up
//! to two secrets ourselves (`current`, `previous`), so a delivery is authentic when ANY of its
//! signatures matches ANY of our secrets. Everything works on the raw body bytes: re-serialised
//! JSON would not hash the same.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The only signature scheme PagerDuty defines today.
const SCHEME: &str = "v1=";
/// Length of a hex-encoded SHA-256 MAC.
const HEX_MAC_LEN: usize = 64;

/// Why a delivery's signature was refused. The Display names the reason only: it never echoes
/// the header, the body or a secret, so it is safe in a 401 body and in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "the X-PagerDuty-Signature header is missing: the request did not come from a PagerDuty webhook subscription"
    )]
    Missing,
    #[error("the X-PagerDuty-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "no signature in X-PagerDuty-Signature matches the body with any configured webhook secret; check that the secret in Secrets Manager is the subscription's current one"
    )]
    Mismatch,
    #[error("no webhook signing secret is configured; set the webhook secret in Secrets Manager")]
    NoSecret,
    #[error("the request body is empty: PagerDuty never sends (or signs) an empty webhook delivery")]
    EmptyBody,
}

impl SignatureError {
    /// No signature matches a cached secret: the secret may have been rotated since it was read
    /// (a missing or malformed header, or an empty body, cannot be explained so).
    pub fn rotation_may_explain(&self) -> bool {
        *self == SignatureError::Mismatch
    }
}

/// Verifies `header` (the raw `X-PagerDuty-Signature` value) against `body` with each secret.
///
/// Unknown schemes (`v2=...`) and malformed `v1=` values next to a well-formed `v1=` value are
/// ignored, so a future PagerDuty scheme or one damaged value does not hide a good signature; a
/// header with no well-formed `v1=` value at all is malformed. Comparisons are constant-time
/// (`subtle`).
pub fn verify(body: &[u8], header: Option<&str>, secrets: &[&[u8]]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if header.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let signatures = parse_header(header)?;
    // PagerDuty never signs an empty delivery; refusing it early mirrors go-pagerduty.
    if body.is_empty() {
        return Err(SignatureError::EmptyBody);
    }
    // One MAC of the body per secret (a header with many values must not multiply the hashing),
    // compared in constant time with every signature, without returning early so the time
    // taken does not depend on which pair matched.
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        for signature in &signatures {
            matched |= expected.as_slice().ct_eq(signature.as_slice());
        }
    }
    if bool::from(matched) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// The header value PagerDuty would send for `body` signed with `secret`: `v1=<lowercase hex>`.
/// For tests, simulators and tools.
pub fn sign(body: &[u8], secret: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("{SCHEME}{}", hex::encode(mac.finalize().into_bytes()))
}

/// Splits the header into decoded `v1` MACs. Whitespace (including the line breaks shown in
/// PagerDuty's docs) around each value is tolerated; a `v1=` value that is not 64 hex characters
/// is skipped (it cannot match, and refusing the header for it would hide a good one beside it).
fn parse_header(header: &str) -> Result<Vec<Vec<u8>>, SignatureError> {
    let mut out = Vec::new();
    let mut skipped_v1 = false;
    for part in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some(hex_mac) = part.strip_prefix(SCHEME) else {
            continue;
        };
        // Length first: an oversized value is not worth decoding.
        if hex_mac.len() == HEX_MAC_LEN
            && let Ok(mac) = hex::decode(hex_mac)
        {
            out.push(mac);
        } else {
            skipped_v1 = true;
        }
    }
    match (out.is_empty(), skipped_v1) {
        (false, _) => Ok(out),
        (true, true) => Err(SignatureError::Malformed("no v1 signature is 64 hex characters")),
        (true, false) => Err(SignatureError::Malformed("it holds no v1= signature")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pagerduty/signature")
    }

    /// The product samples folder beside the repository (`/work/shared/samples/pagerduty-signature` for a
    /// checkout at `/work/main`): `../../shared/samples` from this crate, or the same path from
    /// a further ancestor for checkouts nested deeper (worktrees).
    fn outside_samples() -> Option<PathBuf> {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .skip(1)
            .map(|a| a.join("shared/samples/pagerduty-signature"))
            .find(|p| p.is_dir())
    }

    /// Every case of one `*.vector.json` file as (header, body, expected ok).
    fn cases_of(dir: &Path, vector_file: &Path) -> Vec<(String, Vec<u8>, Vec<u8>, bool)> {
        let text = std::fs::read_to_string(vector_file).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let secret = v["secret"].as_str().unwrap().as_bytes().to_vec();
        let body_of = |case: &serde_json::Value| -> Vec<u8> {
            match case.get("body_file").and_then(|f| f.as_str()) {
                Some(f) => std::fs::read(dir.join(f)).unwrap(),
                None => case["body"].as_str().unwrap().as_bytes().to_vec(),
            }
        };
        let mut out = Vec::new();
        if let Some(cases) = v.get("cases").and_then(|c| c.as_array()) {
            for case in cases {
                let ok = case["expected"].as_str().unwrap() == "nil error";
                let header = case["header_value"].as_str().unwrap().to_string();
                out.push((header, body_of(case), secret.clone(), ok));
            }
        } else {
            let body = body_of(&v);
            let header = v["header_value"].as_str().unwrap().to_string();
            assert!(v["expected"].as_str().unwrap().starts_with("valid"));
            out.push((header, body.clone(), secret.clone(), true));
            if let Some(neg) = v.get("negative_header_value").and_then(|h| h.as_str()) {
                out.push((neg.to_string(), body, secret.clone(), false));
            }
        }
        out
    }

    fn check_every_vector_in(dir: &Path) -> usize {
        let mut checked = 0;
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".vector.json"))
            .collect();
        files.sort();
        for file in files {
            for (header, body, secret, ok) in cases_of(dir, &file) {
                let got = verify(&body, Some(&header), &[&secret]);
                assert_eq!(got.is_ok(), ok, "{}: header {header:?}: {got:?}", file.display());
                if ok {
                    assert_eq!(sign(&body, &secret), header, "{}", file.display());
                }
                checked += 1;
            }
        }
        checked
    }

    #[test]
    fn every_copied_vector_verifies_as_its_source_says() {
        // 5 aldaviva valid + 1 aldaviva negative + 4 go-pagerduty cases.
        assert_eq!(check_every_vector_in(&fixtures()), 10);
    }

    #[test]
    fn every_vector_in_the_shared_samples_folder_verifies_when_present() {
        if let Some(dir) = outside_samples() {
            assert!(check_every_vector_in(&dir) >= 10);
        }
    }

    fn aldaviva() -> (Vec<u8>, Vec<u8>, String) {
        let body = std::fs::read(fixtures().join("aldaviva-incident.triggered.body.json")).unwrap();
        let secret = b"HvPtlQNKMPpHSSqJpCdndXfo7HnGXa1pnH6w5axpxLFn9aRBNBGh4e8/HlonK5mz".to_vec();
        let header = "v1=3e3032b45bbe1801c13f182b0e0a7f4f3f530225cef07e3e90cbc57874d01c49".to_string();
        (body, secret, header)
    }

    #[test]
    fn the_docs_multi_signature_header_parses_into_two_signatures() {
        let text = std::fs::read_to_string(fixtures().join("docs-multi-signature-header-example.txt")).unwrap();
        let value = text.trim().strip_prefix("X-PagerDuty-Signature:").unwrap();
        // The docs wrap the value over lines; the real header is one line.
        let one_line: String = value.split_whitespace().collect();
        assert_eq!(parse_header(&one_line).unwrap().len(), 2);
        assert_eq!(parse_header(value).unwrap().len(), 2);
        // Neither signature is ours: the docs give no secret or body.
        assert_eq!(verify(b"{}", Some(&one_line), &[b"secret"]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_header_with_several_signatures_is_accepted_when_any_one_matches() {
        let (body, secret, good) = aldaviva();
        let other = sign(&body, b"some-other-secret");
        let header = format!("{other}, {good}");
        assert_eq!(verify(&body, Some(&header), &[&secret]), Ok(()));
        let header = format!("{good},{other}");
        assert_eq!(verify(&body, Some(&header), &[&secret]), Ok(()));
    }

    #[test]
    fn a_rotated_secret_is_accepted_when_the_second_configured_secret_matches() {
        let (body, secret, header) = aldaviva();
        assert_eq!(verify(&body, Some(&header), &[b"the-new-current-secret", &secret]), Ok(()));
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let (mut body, secret, header) = aldaviva();
        let i = body.iter().position(|b| *b == b'T').unwrap();
        body[i] = b't';
        assert_eq!(verify(&body, Some(&header), &[&secret]), Err(SignatureError::Mismatch));
        // Re-serialised JSON is not the raw body either.
        let (body, _, _) = aldaviva();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let reserialised = serde_json::to_vec_pretty(&v).unwrap();
        assert_eq!(verify(&reserialised, Some(&header), &[&secret]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let (body, _, header) = aldaviva();
        assert_eq!(verify(&body, Some(&header), &[b"wrong", b"also-wrong"]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_missing_or_blank_header_is_reported_as_missing() {
        let (body, secret, _) = aldaviva();
        assert_eq!(verify(&body, None, &[&secret]), Err(SignatureError::Missing));
        assert_eq!(verify(&body, Some("  "), &[&secret]), Err(SignatureError::Missing));
    }

    #[test]
    fn garbage_headers_are_reported_as_malformed() {
        let (body, secret, _) = aldaviva();
        for garbage in [
            "sha256=abcdef",
            "v1=",
            "v1=zz",
            "v1=3e3032b45bbe1801c13f182b0e0a7f4f3f530225cef07e3e90cbc57874d01c4", // 63 chars
            "v1=3e3032b45bbe1801c13f182b0e0a7f4f3f530225cef07e3e90cbc57874d01cXY",
            ",,,",
            "garbage",
        ] {
            assert!(
                matches!(verify(&body, Some(garbage), &[&secret]), Err(SignatureError::Malformed(_))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn a_malformed_v1_value_beside_a_matching_one_is_skipped() {
        let (body, secret, good) = aldaviva();
        let too_long = format!("{good}00");
        let not_hex = good.replace('3', "g");
        for bad in ["v1=", "v1=zz", "v1=3e3032b45bbe1801", &too_long, &not_hex] {
            for header in [format!("{bad},{good}"), format!("{good}, {bad}")] {
                assert_eq!(verify(&body, Some(&header), &[&secret]), Ok(()), "{header:?}");
            }
        }
        // A malformed value next to a well-formed one that does not match is a plain mismatch.
        let other = sign(&body, b"some-other-secret");
        assert_eq!(verify(&body, Some(&format!("v1=zz,{other}")), &[&secret]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_header_whose_v1_values_are_all_malformed_is_malformed() {
        let (body, secret, _) = aldaviva();
        let err = verify(&body, Some("v1=zz, v1=abc, v2=deadbeef"), &[&secret]).unwrap_err();
        assert_eq!(err, SignatureError::Malformed("no v1 signature is 64 hex characters"));
    }

    #[test]
    fn a_signed_empty_body_is_refused_as_an_empty_body_not_a_bad_header() {
        let (_, secret, _) = aldaviva();
        let header = sign(b"", &secret);
        let err = verify(b"", Some(&header), &[&secret]).unwrap_err();
        assert_eq!(err, SignatureError::EmptyBody);
        let text = err.to_string();
        assert!(text.contains("body is empty") && !text.contains("header"), "{text}");
    }

    #[test]
    fn an_unknown_scheme_beside_a_valid_v1_signature_is_ignored() {
        let (body, secret, good) = aldaviva();
        let header = format!("v2=deadbeef,{good}");
        assert_eq!(verify(&body, Some(&header), &[&secret]), Ok(()));
    }

    #[test]
    fn no_configured_secret_is_an_error_not_an_acceptance() {
        let (body, _, header) = aldaviva();
        assert_eq!(verify(&body, Some(&header), &[]), Err(SignatureError::NoSecret));
    }

    #[test]
    fn error_messages_do_not_leak_the_signature_or_secret() {
        let (body, secret, header) = aldaviva();
        let err = verify(&body, Some(&header), &[b"wrong"]).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(&header[3..]));
        assert!(!text.contains("wrong"));
        let err = verify(&body, Some("v1=zz"), &[&secret]).unwrap_err();
        assert!(!err.to_string().contains("zz"));
    }
}
