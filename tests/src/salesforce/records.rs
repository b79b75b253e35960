//! Records as the org writes them: new ids and system fields, whole-second stamps, Case rules
//! (numbers, `IsClosed`), and the field checks of describe metadata (unknown, read-only,
//! required, picklists, lengths, references, booleans) with Salesforce's error codes.

use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::errors::sf_error;
use super::schema;
use super::state::{Records, user_id_for};

/// Apex/REST datetime format: `2026-11-22T10:00:00.000+0000`.
pub fn sf_datetime(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// A record's own stamps (`CreatedDate`, `LastModifiedDate`, `SystemModstamp`): whole seconds, as
/// a real org writes them (`...:00.000+0000`), so two changes within a second share a stamp.
pub fn sf_stamp(t: chrono::DateTime<Utc>) -> String {
    sf_datetime(chrono::SubsecRound::trunc_subsecs(t, 0))
}

pub(super) fn find(r: &Records, object: &str, id: &str) -> Option<usize> {
    r.find(object, id)
}

pub(super) fn attributes(object: &str, id: &str) -> Value {
    json!({"type": object, "url": format!("/services/data/v62.0/sobjects/{object}/{id}")})
}

pub(super) fn new_record(r: &mut Records, object: &str, fields: Map<String, Value>, username: &str) -> Value {
    r.counter += 1;
    let id = schema::make_id(&schema::key_prefix(object), r.counter);
    let at = r.clock.now();
    let now = sf_stamp(at);
    let uid = user_id_for(username);
    let mut rec = Map::new();
    rec.insert("attributes".into(), attributes(object, &id));
    rec.insert("Id".into(), json!(id));
    rec.insert("IsDeleted".into(), json!(false));
    rec.insert("CreatedDate".into(), json!(now));
    rec.insert("CreatedById".into(), json!(uid));
    if object == "Case" {
        r.case_number += 1;
        rec.insert("CaseNumber".into(), json!(format!("{:08}", r.case_number)));
        rec.insert("Status".into(), json!("New"));
        rec.insert("Priority".into(), json!("Medium"));
        rec.insert("IsClosed".into(), json!(false));
        rec.insert("IsEscalated".into(), json!(false));
        rec.insert("OwnerId".into(), json!(uid));
    }
    if object == "CaseComment" {
        rec.insert("IsPublished".into(), json!(false));
    }
    let mut v = Value::Object(rec);
    apply(&mut v, object, fields, username, at);
    v
}

pub(super) fn apply(
    rec: &mut Value,
    object: &str,
    fields: Map<String, Value>,
    username: &str,
    at: chrono::DateTime<Utc>,
) {
    let described = schema::describe(object).unwrap_or_default();
    for (k, val) in fields {
        if k == "attributes" || k == "Id" {
            continue;
        }
        // A date-time field keeps whole seconds and is read back as `...:05.000+0000`, whatever
        // form it was written in (`...:05.123+00:00`, `...Z`).
        let datetime = described.iter().any(|f| f.name == k && f.kind == "datetime");
        rec[&k] = match val.as_str().and_then(shared::salesforce::time::parse_datetime) {
            Some(at) if datetime => json!(sf_stamp(at)),
            _ => val,
        };
    }
    if object == "Case" {
        let closed = rec["Status"] == "Closed";
        if closed && rec["IsClosed"] != true {
            rec["ClosedDate"] = json!(sf_datetime(at));
        }
        rec["IsClosed"] = json!(closed);
    }
    let now = sf_stamp(at);
    rec["LastModifiedDate"] = json!(now);
    rec["SystemModstamp"] = json!(now);
    rec["LastModifiedById"] = json!(user_id_for(username));
}

/// Validate a create (`is_create`) or update body against describe metadata.
pub(super) fn validate(
    r: &Records,
    object: &str,
    body: &Map<String, Value>,
    is_create: bool,
) -> Result<(), (StatusCode, Value)> {
    let Some(fields) = schema::describe(object) else {
        return Ok(()); // custom objects: anything goes
    };
    let unknown: Vec<&String> = body
        .keys()
        .filter(|k| *k != "attributes" && !k.ends_with("__c") && !fields.iter().any(|f| f.name == k.as_str()))
        .collect();
    if let Some(k) = unknown.first() {
        return Err(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            &format!("No such column '{k}' on sobject of type {object}"),
            None,
        ));
    }
    let read_only: Vec<&str> = body
        .keys()
        .filter_map(|k| fields.iter().find(|f| f.name == k.as_str()))
        .filter(|f| if is_create { !f.createable } else { !f.updateable })
        .map(|f| f.name)
        .filter(|n| *n != "Id")
        .collect();
    if !read_only.is_empty() {
        return Err(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            &format!(
                "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                read_only.join(", ")
            ),
            Some(&read_only),
        ));
    }
    if is_create {
        let missing: Vec<&str> = fields
            .iter()
            .filter(|f| f.required && body.get(f.name).is_none_or(|v| v.is_null() || v == ""))
            .map(|f| f.name)
            .collect();
        if !missing.is_empty() {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "REQUIRED_FIELD_MISSING",
                &format!("Required fields are missing: [{}]", missing.join(", ")),
                Some(&missing),
            ));
        }
    }
    for f in &fields {
        let Some(v) = body.get(f.name) else { continue };
        if !f.picklist.is_empty() && !v.is_null() {
            let s = v.as_str().unwrap_or_default();
            if !f.picklist.contains(&s) {
                return Err(sf_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    &format!("{}: bad value for restricted picklist field: {}", f.label, value_text(v)),
                    Some(&[f.name]),
                ));
            }
        }
        if f.length > 0
            && matches!(f.kind, "string" | "textarea" | "email" | "phone")
            && let Some(s) = v.as_str()
            && s.len() > f.length
        {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "STRING_TOO_LONG",
                &format!(
                    "{}: data value too large: {}... (max length={})",
                    f.label,
                    s.chars().take(20).collect::<String>(),
                    f.length
                ),
                Some(&[f.name]),
            ));
        }
        if let (Some(target), Some(id)) = (f.reference_to, v.as_str()) {
            if !schema::well_formed(id) {
                return Err(sf_error(
                    StatusCode::BAD_REQUEST,
                    "MALFORMED_ID",
                    &format!("{}: id value of incorrect type: {id}", f.label),
                    Some(&[f.name]),
                ));
            }
            if matches!(target, "Case" | "Account" | "Contact") && find(r, target, id).is_none() {
                return Err(sf_error(
                    StatusCode::BAD_REQUEST,
                    "FIELD_INTEGRITY_EXCEPTION",
                    &format!("{}: id value of incorrect type: {id}", f.label),
                    Some(&[f.name]),
                ));
            }
        }
        if f.kind == "boolean" && !v.is_boolean() {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                &format!(
                    "Cannot deserialize instance of boolean from {} value {}",
                    if v.is_string() { "VALUE_STRING" } else { "token" },
                    value_text(v)
                ),
                None,
            ));
        }
    }
    Ok(())
}

pub(super) fn value_text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}
