//! Reading Salesforce JSON values: dotted paths, text forms, numbers and dates.

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

/// Dates and date-times are read by the one Salesforce parser (named here for the rules'
/// modules that import it from `value`).
pub(crate) use crate::salesforce::time::parse_datetime;

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
}
