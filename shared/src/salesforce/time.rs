//! The one Salesforce date-time parser: what Apex `JSON.serialize` writes
//! (`2026-11-22T10:00:00.000+0000`), what SOAP and REST write (RFC 3339, `Z` or an offset, with or
//! without milliseconds), and a `Date` field's bare `2026-11-22` (midnight UTC), which rule
//! conditions compare like any other date.

use chrono::{DateTime, NaiveDate, Utc};

/// A date-time as a SOQL literal (unquoted, whole seconds, UTC): `2026-11-22T10:00:00Z`.
pub fn soql_datetime(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a Salesforce date or date-time (surrounding white space ignored); `None` for anything
/// else.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    // Salesforce writes `+0000` (no colon); RFC 3339 parsing is much faster than a format
    // string, so put the colon in and use it.
    let b = t.as_bytes();
    if b.len() > 16
        && b.len() < 63
        && matches!(b[b.len() - 5], b'+' | b'-')
        && b[b.len() - 4..].iter().all(u8::is_ascii_digit)
    {
        let mut buf = [0u8; 64];
        let split = b.len() - 2;
        buf[..split].copy_from_slice(&b[..split]);
        buf[split] = b':';
        buf[split + 1..=b.len()].copy_from_slice(&b[split..]);
        if let Ok(dt) = std::str::from_utf8(&buf[..=b.len()]).map(DateTime::parse_from_rfc3339)
            && let Ok(dt) = dt
        {
            return Some(dt.to_utc());
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.to_utc());
    }
    if let Ok(dt) = DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(dt.to_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_form_salesforce_sends_parses_to_the_same_instant() {
        let at = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        for text in [
            "2024-01-02T03:04:05.000+0000", // Apex JSON.serialize
            "2024-01-02T03:04:05+0000",
            "2024-01-02T03:04:05.000Z", // REST, SOAP
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.000+00:00",
            "2024-01-02T04:04:05.000+0100",
            "2024-01-02T02:04:05.000-0100",
            " 2024-01-02T03:04:05.000+0000\n",
        ] {
            assert_eq!(parse_datetime(text), Some(at), "{text:?}");
        }
        let millis = parse_datetime("2024-01-02T03:04:05.123+0000").unwrap();
        assert_eq!(millis.timestamp_subsec_millis(), 123);
    }

    #[test]
    fn a_bare_date_is_midnight_utc_and_anything_else_is_none() {
        assert_eq!(parse_datetime("2024-01-02"), Some(Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap()));
        for text in ["yesterday", "", "2024-01-02T03:04:05", "2024-13-02T03:04:05Z", "1704164645"] {
            assert_eq!(parse_datetime(text), None, "{text:?}");
        }
    }
}
