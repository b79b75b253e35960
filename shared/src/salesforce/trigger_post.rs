//! The post our Apex trigger sends to `POST /salesforce/records`, and how it is authenticated.
//!
//! Body: `{"schema": 1, "org_id", "object", "operation": "insert"|"update", "user": {"id",
//! "username"}, "sent_at", "old": null | Trigger.oldMap, "new": Trigger.newMap, "change_ids"?:
//! {<record Id>: <change id>}}` where the maps are exactly what Apex `JSON.serialize` writes:
//! objects keyed by record Id, each record carrying `attributes` (`type`, `url`) and its fields.
//!
//! `change_ids` (sent by the current Apex, absent from older versions) names each change: the
//! same change posted again (the callout job's retry) carries the same id, and two changes of one
//! record never share one, even within the second `SystemModstamp` is precise to. Without it a
//! change is named by a hash of its old and new values ([`change_key`]).
//!
//! How a post is authenticated is [`super::signature`]'s.

use crate::salesforce::ObjectName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Record;
use super::time::parse_datetime;

/// The only body schema this version understands.
pub const SCHEMA_VERSION: u64 = 1;
/// The longest change id accepted in `change_ids` (the Apex sends 40 characters).
pub const MAX_CHANGE_ID_CHARS: usize = 100;
/// An Apex trigger fires for at most 200 records at a time.
pub const MAX_RECORDS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Insert,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
        }
    }
}

/// The Salesforce user whose change fired the trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerUser {
    pub id: String,
    pub username: String,
}

/// One changed record: its new values and, on update, its old ones.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordChange {
    pub id: String,
    /// sObject name, from the record's `attributes.type`.
    pub object: ObjectName,
    pub new: Record,
    pub old: Option<Record>,
    /// The trigger's name for this change (`change_ids`), when the Apex sends one.
    pub change_id: Option<String>,
}

impl RecordChange {
    /// The idempotency key of this change (see [`change_key`]).
    pub fn key(&self) -> String {
        change_key(self.object.as_str(), &self.id, self.change_id.as_deref(), self.old.as_ref(), &self.new)
    }

    /// Field names whose value differs between old and new (all of `new` on insert),
    /// `attributes` excluded.
    pub fn changed_fields(&self) -> Vec<&str> {
        self.new
            .iter()
            .filter(|(k, _)| k.as_str() != "attributes")
            .filter(|(k, v)| match &self.old {
                None => true,
                Some(old) => old.get(k.as_str()) != Some(*v),
            })
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// A parsed, checked trigger post.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerPost {
    pub org_id: String,
    pub object: ObjectName,
    pub operation: Operation,
    pub user: TriggerUser,
    pub sent_at: DateTime<Utc>,
    /// In the order of the `new` map.
    pub records: Vec<RecordChange>,
}

/// The idempotency key of one record change: `sf:<object>:<id>:<change id>` when the trigger named
/// the change, else `sf:<object>:<id>:values:<hash>` where the hash (SHA-256, first 64 bits) covers
/// the old and new values, keys sorted. The same change delivered again gets the same key; two
/// changes of one record get different ones even when their `SystemModstamp`s are equal (whole
/// seconds in a real org), since each starts from different old values or ends at different new
/// ones.
pub fn change_key(object: &str, id: &str, change_id: Option<&str>, old: Option<&Record>, new: &Record) -> String {
    if let Some(change_id) = change_id {
        return format!("sf:{object}:{id}:{change_id}");
    }
    use sha2::Digest;
    let mut bytes = Vec::with_capacity(1024);
    match old {
        Some(old) => canonical_object(old, &mut bytes),
        None => bytes.extend_from_slice(b"null"),
    }
    bytes.push(b'\n');
    canonical_object(new, &mut bytes);
    format!("sf:{object}:{id}:values:{}", hex::encode(&sha2::Sha256::digest(&bytes)[..8]))
}

/// JSON with every object's keys sorted, so that the hash does not depend on field order.
fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(&serde_json::to_vec(scalar).expect("JSON scalars serialise")),
    }
}

fn canonical_object(map: &serde_json::Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&serde_json::to_vec(key).expect("strings serialise"));
        out.push(b':');
        canonical(value, out);
    }
    out.push(b'}');
}

/// `change_ids`: absent or null, or an object of record Id → change id. A record it does not
/// name is keyed on its values; names of records the post does not carry are ignored.
fn parse_change_ids(value: Option<&Value>) -> Result<std::collections::HashMap<String, String>, TriggerPostError> {
    let invalid = TriggerPostError::Field {
        field: "change_ids",
        expected: "an object of record Id to change id (non-empty strings of at most 100 characters)",
    };
    let map = match value {
        None | Some(Value::Null) => return Ok(Default::default()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid),
    };
    map.iter()
        .map(|(record, change)| match change.as_str() {
            Some(c)
                if !c.is_empty() && c.chars().count() <= MAX_CHANGE_ID_CHARS && !c.chars().any(char::is_control) =>
            {
                Ok((record.clone(), c.to_string()))
            }
            _ => Err(invalid.clone()),
        })
        .collect()
}

/// Why a trigger post body was refused. Each message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerPostError {
    #[error("trigger post is not valid JSON: {0}")]
    Json(String),
    #[error("trigger post must be a JSON object")]
    NotAnObject,
    #[error("trigger post field `{field}` is missing or has the wrong type (expected {expected})")]
    Field { field: &'static str, expected: &'static str },
    #[error(
        "trigger post schema {found} is not supported (this bridge reads schema {SCHEMA_VERSION}); deploy the matching Apex classes"
    )]
    Schema { found: String },
    #[error("trigger post operation `{0}` is not `insert` or `update`")]
    Operation(String),
    #[error("trigger post `sent_at` `{0}` is not a date-time")]
    SentAt(String),
    #[error("`{map}` must be an object keyed by record Id (Apex JSON.serialize of a Map<Id, SObject>), found {found}")]
    MapShape { map: &'static str, found: &'static str },
    #[error("`{map}` record `{key}` must be a JSON object")]
    RecordNotObject { map: &'static str, key: String },
    #[error("`{map}` key `{key}` is not a Salesforce record Id")]
    BadKey { map: &'static str, key: String },
    #[error("`{map}` record `{key}` carries Id `{found}`")]
    IdMismatch { map: &'static str, key: String, found: String },
    #[error("`{map}` record `{key}` is a `{found}` but the post is for `{expected}`")]
    TypeMismatch { map: &'static str, key: String, expected: String, found: String },
    #[error("`{map}` record `{key}` has no attributes.type")]
    MissingType { map: &'static str, key: String },
    #[error("an update post must carry `old`; it is null or missing")]
    OldMissing,
    #[error("an insert post must have `old` = null")]
    OldOnInsert,
    #[error("`old` has no record `{0}` that `new` has")]
    OldRecordMissing(String),
    #[error("`old` has record `{0}` that `new` does not")]
    OldRecordExtra(String),
    #[error("the post carries {0} records; a trigger sends at most {MAX_RECORDS}")]
    TooManyRecords(usize),
    #[error("the post carries no records")]
    Empty,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn str_field<'a>(obj: &'a serde_json::Map<String, Value>, field: &'static str) -> Result<&'a str, TriggerPostError> {
    obj.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(TriggerPostError::Field { field, expected: "a non-empty string" })
}

/// Checks one `Map<Id, SObject>` and returns its records in order.
fn parse_map(map_name: &'static str, value: &Value, object: &str) -> Result<Vec<(String, Record)>, TriggerPostError> {
    let Value::Object(map) = value else {
        return Err(TriggerPostError::MapShape { map: map_name, found: kind_of(value) });
    };
    // A single serialised sObject (not a map) has `attributes` at the top: name that mistake.
    if map.contains_key("attributes") {
        return Err(TriggerPostError::MapShape { map: map_name, found: "a single record" });
    }
    if map.len() > MAX_RECORDS {
        return Err(TriggerPostError::TooManyRecords(map.len()));
    }
    let mut out = Vec::with_capacity(map.len());
    for (key, record) in map {
        if !super::is_record_id(key) {
            return Err(TriggerPostError::BadKey { map: map_name, key: key.clone() });
        }
        let Value::Object(fields) = record else {
            return Err(TriggerPostError::RecordNotObject { map: map_name, key: key.clone() });
        };
        let record_type = fields
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            .ok_or_else(|| TriggerPostError::MissingType { map: map_name, key: key.clone() })?;
        if record_type != object {
            return Err(TriggerPostError::TypeMismatch {
                map: map_name,
                key: key.clone(),
                expected: object.to_string(),
                found: record_type.to_string(),
            });
        }
        if let Some(id) = fields.get("Id") {
            let id = id.as_str().unwrap_or_default();
            // Apex keys maps by the 18-character id; the record may carry either form.
            if !super::id::same_id(id, key) {
                return Err(TriggerPostError::IdMismatch { map: map_name, key: key.clone(), found: id.to_string() });
            }
        }
        out.push((key.clone(), fields.clone()));
    }
    Ok(out)
}

impl TriggerPost {
    /// Parses and checks a raw trigger post body.
    pub fn parse(body: &[u8]) -> Result<Self, TriggerPostError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| TriggerPostError::Json(e.to_string()))?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, TriggerPostError> {
        let Value::Object(obj) = value else {
            return Err(TriggerPostError::NotAnObject);
        };
        match obj.get("schema") {
            Some(Value::Number(n)) if n.as_u64() == Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(TriggerPostError::Schema { found: other.to_string() });
            }
            None => {
                return Err(TriggerPostError::Field { field: "schema", expected: "the number 1" });
            }
        }
        let org_id = str_field(obj, "org_id")?.to_string();
        let object = ObjectName::from(str_field(obj, "object")?);
        super::check_name(object.as_str())
            .map_err(|_| TriggerPostError::Field { field: "object", expected: "an sObject API name" })?;
        let operation = match str_field(obj, "operation")? {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            other => return Err(TriggerPostError::Operation(other.to_string())),
        };
        let user_value = obj
            .get("user")
            .and_then(Value::as_object)
            .ok_or(TriggerPostError::Field { field: "user", expected: "an object with id and username" })?;
        let user = TriggerUser {
            id: str_field(user_value, "id")
                .map_err(|_| TriggerPostError::Field { field: "user.id", expected: "a non-empty string" })?
                .to_string(),
            username: str_field(user_value, "username")
                .map_err(|_| TriggerPostError::Field { field: "user.username", expected: "a non-empty string" })?
                .to_string(),
        };
        let sent_at_text = str_field(obj, "sent_at")?;
        let sent_at = parse_datetime(sent_at_text).ok_or_else(|| TriggerPostError::SentAt(sent_at_text.to_string()))?;

        let new = parse_map("new", obj.get("new").unwrap_or(&Value::Null), object.as_str())?;
        if new.is_empty() {
            return Err(TriggerPostError::Empty);
        }
        let old_value = obj.get("old").unwrap_or(&Value::Null);
        let mut old = match (operation, old_value) {
            (Operation::Insert, Value::Null) => None,
            (Operation::Insert, _) => return Err(TriggerPostError::OldOnInsert),
            (Operation::Update, Value::Null) => return Err(TriggerPostError::OldMissing),
            (Operation::Update, v) => {
                Some(parse_map("old", v, object.as_str())?.into_iter().collect::<std::collections::HashMap<_, _>>())
            }
        };
        let mut change_ids = parse_change_ids(obj.get("change_ids"))?;
        let mut records = Vec::with_capacity(new.len());
        for (id, fields) in new {
            let old_fields = match old.as_mut() {
                None => None,
                Some(old) => Some(old.remove(&id).ok_or_else(|| TriggerPostError::OldRecordMissing(id.clone()))?),
            };
            let change_id = change_ids.remove(&id);
            records.push(RecordChange { id, object: object.clone(), new: fields, old: old_fields, change_id });
        }
        if let Some(extra) = old.and_then(|o| o.into_keys().next()) {
            return Err(TriggerPostError::OldRecordExtra(extra));
        }
        Ok(TriggerPost { org_id, object, operation, user, sent_at, records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CASE_ID: &str = "5005g00000AbCdEAAS";

    fn case(id: &str, priority: &str) -> Value {
        json!({
            "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{id}")},
            "Id": id,
            "Subject": "Checkout down",
            "Priority": priority,
            "ClosedDate": null,
            "CreatedDate": "2026-11-22T10:00:00.000+0000",
            "Account": {"attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/0011w000004rocHAAQ"}, "Name": "Acme"}
        })
    }

    fn post(operation: &str, old: Value, new: Value) -> Value {
        json!({
            "schema": 1,
            "org_id": "00D5g000004xxxxEAA",
            "object": "Case",
            "operation": operation,
            "user": {"id": "0055g00000AbCdEAAS", "username": "agent@example.com"},
            "sent_at": "2026-11-22T10:00:00.000Z",
            "old": old,
            "new": new,
        })
    }

    #[test]
    fn insert_post_parses_with_relationships_nulls_and_dates() {
        let p = TriggerPost::from_value(&post("insert", Value::Null, json!({CASE_ID: case(CASE_ID, "High")}))).unwrap();
        assert_eq!(p.operation, Operation::Insert);
        assert_eq!(p.object, "Case");
        assert_eq!(p.user.username, "agent@example.com");
        assert_eq!(p.records.len(), 1);
        let r = &p.records[0];
        assert_eq!(r.id, CASE_ID);
        assert!(r.old.is_none());
        assert_eq!(r.new["Account"]["Name"], "Acme");
        assert!(r.new["ClosedDate"].is_null());
        assert_eq!(parse_datetime(r.new["CreatedDate"].as_str().unwrap()), parse_datetime("2026-11-22T10:00:00Z"));
    }

    #[test]
    fn update_post_pairs_old_and_new_and_lists_changed_fields() {
        let p = TriggerPost::from_value(&post(
            "update",
            json!({CASE_ID: case(CASE_ID, "Low")}),
            json!({CASE_ID: case(CASE_ID, "High")}),
        ))
        .unwrap();
        let r = &p.records[0];
        assert_eq!(r.old.as_ref().unwrap()["Priority"], "Low");
        assert_eq!(r.changed_fields(), vec!["Priority"]);
    }

    #[test]
    fn update_without_old_record_is_refused_naming_the_id() {
        let other = "5005g00000ZzZzZAAS";
        let err = TriggerPost::from_value(&post(
            "update",
            json!({other: case(other, "Low")}),
            json!({CASE_ID: case(CASE_ID, "High")}),
        ))
        .unwrap_err();
        assert_eq!(err, TriggerPostError::OldRecordMissing(CASE_ID.into()));
        let err =
            TriggerPost::from_value(&post("update", Value::Null, json!({CASE_ID: case(CASE_ID, "High")}))).unwrap_err();
        assert_eq!(err, TriggerPostError::OldMissing);
    }

    #[test]
    fn the_change_id_apex_sends_names_the_change() {
        let mut v = post("update", json!({CASE_ID: case(CASE_ID, "Low")}), json!({CASE_ID: case(CASE_ID, "High")}));
        v["change_ids"] = json!({CASE_ID: "0f3c9a2e:1", "5005g00000ZzZzZAAS": "not in this post"});
        let p = TriggerPost::from_value(&v).unwrap();
        assert_eq!(p.records[0].change_id.as_deref(), Some("0f3c9a2e:1"));
        assert_eq!(p.records[0].key(), format!("sf:Case:{CASE_ID}:0f3c9a2e:1"));
        for bad in [json!("x"), json!({CASE_ID: 7}), json!({CASE_ID: ""}), json!({CASE_ID: "a".repeat(101)})] {
            v["change_ids"] = bad.clone();
            let err = TriggerPost::from_value(&v).unwrap_err();
            assert!(err.to_string().contains("change_ids"), "{bad}: {err}");
        }
        v["change_ids"] = Value::Null;
        assert_eq!(TriggerPost::from_value(&v).unwrap().records[0].change_id, None, "older Apex sends none");
    }

    #[test]
    fn without_a_change_id_the_key_is_a_hash_of_the_old_and_new_values() {
        let key = |old: Value, new: Value| {
            let p = TriggerPost::from_value(&post("update", json!({CASE_ID: old}), json!({CASE_ID: new}))).unwrap();
            p.records[0].key()
        };
        let (low, high) = (case(CASE_ID, "Low"), case(CASE_ID, "High"));
        let first = key(low.clone(), high.clone());
        assert!(first.starts_with(&format!("sf:Case:{CASE_ID}:values:")), "{first}");
        assert_eq!(first, key(low.clone(), high.clone()), "the same change delivered again");
        // Field order does not matter (the hash sorts keys, also inside relationships).
        let mut reordered = serde_json::Map::new();
        for (k, v) in high.as_object().unwrap().iter().rev() {
            reordered.insert(k.clone(), v.clone());
        }
        assert_eq!(first, key(low.clone(), Value::Object(reordered)));
        // Two changes within one second (same stamps) still differ by their values.
        let mut closed = high.clone();
        closed["ClosedDate"] = json!("2026-11-22T10:00:00.000+0000");
        assert_ne!(first, key(high.clone(), closed));
        assert_ne!(first, key(high.clone(), low.clone()));
        assert_ne!(first, key(case(CASE_ID, "Medium"), high));
        let insert = TriggerPost::from_value(&post("insert", Value::Null, json!({CASE_ID: low}))).unwrap();
        assert_ne!(insert.records[0].key(), first);
    }

    #[test]
    fn shape_errors_name_what_is_wrong() {
        assert_eq!(TriggerPost::parse(b"[1]").unwrap_err(), TriggerPostError::NotAnObject);
        assert!(matches!(TriggerPost::parse(b"{").unwrap_err(), TriggerPostError::Json(_)));
        let mut v = post("insert", Value::Null, json!({CASE_ID: case(CASE_ID, "High")}));
        v["schema"] = json!(2);
        assert!(matches!(TriggerPost::from_value(&v).unwrap_err(), TriggerPostError::Schema { .. }));
        // A single record instead of a map.
        let v = post("insert", Value::Null, case(CASE_ID, "High"));
        let err = TriggerPost::from_value(&v).unwrap_err();
        assert!(err.to_string().contains("single record"), "{err}");
        // Id key vs Id field.
        let v = post("insert", Value::Null, json!({"5005g00000ZzZzZAAS": case(CASE_ID, "High")}));
        assert!(matches!(TriggerPost::from_value(&v).unwrap_err(), TriggerPostError::IdMismatch { .. }));
        // Type mismatch.
        let mut rec = case(CASE_ID, "High");
        rec["attributes"]["type"] = json!("Account");
        let v = post("insert", Value::Null, json!({CASE_ID: rec}));
        assert!(matches!(TriggerPost::from_value(&v).unwrap_err(), TriggerPostError::TypeMismatch { .. }));
        let mut v = post("delete", Value::Null, json!({CASE_ID: case(CASE_ID, "High")}));
        assert_eq!(TriggerPost::from_value(&v).unwrap_err(), TriggerPostError::Operation("delete".into()));
        v["operation"] = json!("insert");
        v["new"] = json!({});
        assert_eq!(TriggerPost::from_value(&v).unwrap_err(), TriggerPostError::Empty);
    }

    #[test]
    fn two_hundred_records_pass_and_two_hundred_one_are_refused() {
        let ids: Vec<String> = (0..201).map(|i| format!("5005g00000A{i:04}AAS")).collect();
        let map = |n: usize| {
            let mut m = serde_json::Map::new();
            for id in &ids[..n] {
                m.insert(id.clone(), case(id, "High"));
            }
            Value::Object(m)
        };
        assert_eq!(TriggerPost::from_value(&post("insert", Value::Null, map(200))).unwrap().records.len(), 200);
        assert_eq!(
            TriggerPost::from_value(&post("insert", Value::Null, map(201))).unwrap_err(),
            TriggerPostError::TooManyRecords(201)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let _ = TriggerPost::parse(&bytes);
        }
    }
}
