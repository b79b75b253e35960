//! Reading Salesforce JSON values: dotted paths, text forms, numbers and dates.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

/// Resolves `Account.Name` into nested objects. Salesforce API names are case-insensitive, so an
/// exact match is tried first and then a case-insensitive one. `null` counts as absent.
pub(crate) fn lookup<'a>(record: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let mut current = record;
    let (last, parents) = path.split_last()?;
    for segment in parents {
        match field(current, segment)? {
            Value::Object(inner) => current = inner,
            _ => return None,
        }
    }
    field(current, last).filter(|v| !v.is_null())
}

fn field<'a>(record: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    // A record of a few dozen fields is found faster by comparing names than by hashing one
    // (the map hashes with SipHash); a large one is looked up by hash.
    let exact = if record.len() <= 32 {
        record.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
    } else {
        record.get(name)
    };
    exact.or_else(|| record.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// The text form of a value, as a condition compares it.
pub(crate) fn value_text(value: &Value) -> String {
    let mut text = String::new();
    push_value_text(value, &mut text);
    text
}

/// Appends the text form of a value (as [`value_text`] gives it) to `out`.
pub(crate) fn push_value_text(value: &Value, out: &mut String) {
    use std::fmt::Write;
    let _ = match value {
        Value::Null => Ok(()),
        Value::String(s) => {
            out.push_str(s);
            Ok(())
        }
        Value::Bool(b) => write!(out, "{b}"),
        Value::Number(n) => write!(out, "{n}"),
        other => write!(out, "{other}"),
    };
}

/// A number, from a JSON number or numeric text.
pub(crate) fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s),
        _ => None,
    }
}

pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// ISO dates and datetimes, including Salesforce's `2026-11-22T10:00:00.000+0000`.
/// A bare date is midnight UTC.
pub(crate) fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
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
    use serde_json::json;

    #[test]
    fn dotted_paths_resolve_into_relationships_case_insensitively() {
        let rec = json!({"Account": {"Name": "Acme", "Owner": {"Email": "a@b.c"}}, "Status": null});
        let map = rec.as_object().unwrap();
        let path = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(lookup(map, &path("Account.Name")), Some(&json!("Acme")));
        assert_eq!(lookup(map, &path("account.owner.email")), Some(&json!("a@b.c")));
        assert_eq!(lookup(map, &path("Status")), None);
        assert_eq!(lookup(map, &path("Account.Name.Length")), None);
    }

    #[test]
    fn wide_records_are_looked_up_by_hash_and_still_case_insensitively() {
        let mut rec = Map::new();
        for i in 0..100 {
            rec.insert(format!("Field{i}__c"), json!(i));
        }
        let path = |p: &str| vec![p.to_string()];
        assert_eq!(lookup(&rec, &path("Field42__c")), Some(&json!(42)));
        assert_eq!(lookup(&rec, &path("field99__C")), Some(&json!(99)));
        assert_eq!(lookup(&rec, &path("Field100__c")), None);
    }

    #[test]
    fn salesforce_and_iso_dates_parse() {
        let a = parse_datetime("2026-11-22T10:00:00.000+0000").unwrap();
        let b = parse_datetime("2026-11-22T10:00:00Z").unwrap();
        assert_eq!(a, b);
        assert!(parse_datetime("2026-11-22").unwrap() < a);
        assert!(parse_datetime("yesterday").is_none());
    }
}
