//! sObject REST: describe, create, read (all or `?fields=`), update, delete, read and upsert by
//! external id, and the list of objects. Each operation is a function on the records that the
//! endpoints here and Composite subrequests ([`super::composite`]) both call.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::server::Params;

use super::Change;
use super::body::JsonBody;
use super::emit::notify;
use super::errors::{Outcome, err, json_resp, not_found_err, outcome_response, sf_error};
use super::records::{apply, find, new_record, validate};
use super::schema;
use super::state::{Shared, World};

/// Who is calling, from the session check ([`super::auth`]).
#[derive(Clone)]
pub(super) struct Session {
    pub(super) username: String,
    /// The request's `Sforce-Call-Options`, kept on the changes it makes.
    pub(super) call_options: Option<String>,
    /// The API version in the path (`v62.0`).
    pub(super) version: String,
}

/// Runs `op` on `object`'s records (unknown objects are 404), commits its changes and sends the
/// triggers and outbound messages they cause.
fn on_records(s: &Shared, object: &str, op: impl FnOnce(&mut World, &mut Vec<Change>) -> Outcome) -> Response {
    if !schema::object_known(object) {
        return json_resp(not_found_err());
    }
    let mut changes = Vec::new();
    let out = {
        let mut w = s.world.lock().unwrap();
        let out = op(&mut w, &mut changes);
        w.changes.extend(changes.iter().cloned());
        out
    };
    notify(s, &s.config(), &changes);
    outcome_response(out)
}

/// What every sObject endpoint reads: the simulator, the caller's session, the path parameters.
type Call = (State<Arc<Shared>>, Extension<Session>, Params);

pub(super) async fn list_objects() -> Response {
    let list: Vec<Value> = ["Case", "CaseComment", "Account", "Contact"]
        .iter()
        .map(|o| json!({"name": o, "keyPrefix": schema::key_prefix(o)}))
        .collect();
    json_resp((StatusCode::OK, json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list})))
}

pub(super) async fn describe_endpoint((State(s), Extension(sess), p): Call) -> Response {
    on_records(&s, p.get("object"), |_, _| describe(&sess, p.get("object")))
}

/// `describe` is no record id: PATCH and DELETE on it fail as on any malformed id.
pub(super) async fn describe_is_not_an_id((State(s), _, p): Call) -> Response {
    let object = p.get("object");
    on_records(&s, object, |w, _| locate(w, object, "describe").err().unwrap_or_else(|| err(not_found_err())))
}

pub(super) async fn create_endpoint(
    (State(s), Extension(sess), p): Call,
    Extension(JsonBody(body)): Extension<JsonBody>,
) -> Response {
    let object = p.get("object");
    on_records(&s, object, |w, changes| create(w, &sess, object, &body, changes))
}

pub(super) async fn read_endpoint((State(s), _, p): Call, RawQuery(q): RawQuery) -> Response {
    let object = p.get("object");
    on_records(&s, object, |w, _| read(w, object, p.get("id"), q.as_deref()))
}

pub(super) async fn update_endpoint(
    (State(s), Extension(sess), p): Call,
    Extension(JsonBody(body)): Extension<JsonBody>,
) -> Response {
    let object = p.get("object");
    on_records(&s, object, |w, changes| update(w, &sess, object, p.get("id"), &body, changes))
}

pub(super) async fn delete_endpoint((State(s), _, p): Call) -> Response {
    let object = p.get("object");
    on_records(&s, object, |w, _| delete(w, object, p.get("id")))
}

pub(super) async fn read_by_external_id_endpoint((State(s), Extension(sess), p): Call) -> Response {
    let object = p.get("object");
    on_records(&s, object, |w, _| read_by_external_id(w, &sess, object, p.get("field"), p.get("value")))
}

pub(super) async fn upsert_endpoint(
    (State(s), Extension(sess), p): Call,
    Extension(JsonBody(body)): Extension<JsonBody>,
) -> Response {
    let object = p.get("object");
    on_records(&s, object, |w, changes| upsert(w, &sess, object, p.get("field"), p.get("value"), &body, changes))
}

/// One Composite subrequest: the sObject operation its method and path below `sobjects/` name.
pub(super) fn dispatch(
    w: &mut World,
    sess: &Session,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    body: &Value,
    changes: &mut Vec<Change>,
) -> Outcome {
    let Some((object, rest)) = rest.split_first() else {
        return err(not_found_err());
    };
    if !schema::object_known(object) {
        return err(not_found_err());
    }
    match (method.as_str(), rest) {
        ("GET", ["describe"]) => describe(sess, object),
        ("POST", []) => create(w, sess, object, body, changes),
        ("GET", [id]) => read(w, object, id, query),
        ("PATCH", [id]) => update(w, sess, object, id, body, changes),
        ("DELETE", [id]) => delete(w, object, id),
        // The value is a URL path segment: an org keeps and matches it decoded (`Q1%3Aab` is `Q1:ab`).
        ("GET", [field, value]) => read_by_external_id(w, sess, object, field, &percent_decoded(value)),
        ("PATCH", [field, value]) => upsert(w, sess, object, field, &percent_decoded(value), body, changes),
        _ => err(not_found_err()),
    }
}

/// `%XX` escapes of a URL path segment decoded (no `+` for a space: that is a query's form).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn describe(sess: &Session, object: &str) -> Outcome {
    match schema::describe_json(object, &sess.version) {
        Some(d) => Outcome { status: StatusCode::OK, body: d, location: None },
        None => err(not_found_err()),
    }
}

/// Position of the record `id` of `object`: a malformed id is 400, an unknown one 404.
fn locate(w: &World, object: &str, id: &str) -> Result<usize, Outcome> {
    if !schema::well_formed(id) || !id.starts_with(&schema::key_prefix(object)) {
        return Err(err(sf_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_ID",
            &format!("{object} ID: id value of incorrect type: {id}"),
            Some(&["Id"]),
        )));
    }
    find(&w.records, object, id).ok_or_else(|| err(not_found_err()))
}

fn create(w: &mut World, sess: &Session, object: &str, body: &Value, changes: &mut Vec<Change>) -> Outcome {
    let ver = &sess.version;
    let obj_body = || body.as_object().cloned().unwrap_or_default();
    if !body.is_object() {
        return err(sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "The request body must be a JSON object",
            None,
        ));
    }
    let fields = obj_body();
    if let Err(e) = validate(&w.records, object, &fields, true) {
        return err(e);
    }
    let rec = new_record(&mut w.records, object, fields, &sess.username);
    let id = rec["Id"].as_str().unwrap_or_default().to_string();
    w.records.push(object, rec.clone());
    changes.push(Change {
        object: object.into(),
        operation: "insert".into(),
        old: None,
        new: rec,
        username: sess.username.clone(),
        call_options: sess.call_options.clone(),
    });
    Outcome {
        status: StatusCode::CREATED,
        body: json!({"id": id, "success": true, "errors": []}),
        location: Some(format!("/services/data/{ver}/sobjects/{object}/{id}")),
    }
}

fn read(w: &World, object: &str, id: &str, query: Option<&str>) -> Outcome {
    let idx = match locate(w, object, id) {
        Ok(idx) => idx,
        Err(o) => return o,
    };
    let rec = &w.records.by_object[object][idx];
    let wanted: Option<Vec<String>> = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "fields")
            .map(|(_, v)| v.split(',').map(|x| x.trim().to_string()).collect())
    });
    let out = match wanted {
        Some(list) => {
            let mut m = Map::new();
            m.insert("attributes".into(), rec["attributes"].clone());
            for f in list {
                m.insert(f.clone(), rec.get(&f).cloned().unwrap_or(Value::Null));
            }
            m.insert("Id".into(), rec["Id"].clone());
            Value::Object(m)
        }
        None => rec.clone(),
    };
    Outcome { status: StatusCode::OK, body: out, location: None }
}

fn update(w: &mut World, sess: &Session, object: &str, id: &str, body: &Value, changes: &mut Vec<Change>) -> Outcome {
    let idx = match locate(w, object, id) {
        Ok(idx) => idx,
        Err(o) => return o,
    };
    let obj_body = || body.as_object().cloned().unwrap_or_default();
    let fields = obj_body();
    if let Err(e) = validate(&w.records, object, &fields, false) {
        return err(e);
    }
    let at = w.records.clock.now();
    let (old, new) = w.records.update_at(object, idx, |rec| apply(rec, object, fields, &sess.username, at));
    changes.push(Change {
        object: object.into(),
        operation: "update".into(),
        old: Some(old),
        new,
        username: sess.username.clone(),
        call_options: sess.call_options.clone(),
    });
    Outcome { status: StatusCode::NO_CONTENT, body: Value::Null, location: None }
}

fn delete(w: &mut World, object: &str, id: &str) -> Outcome {
    let idx = match locate(w, object, id) {
        Ok(idx) => idx,
        Err(o) => return o,
    };
    w.records.remove_at(object, idx);
    Outcome { status: StatusCode::NO_CONTENT, body: Value::Null, location: None }
}

fn read_by_external_id(w: &World, sess: &Session, object: &str, field: &str, value: &str) -> Outcome {
    let ver = &sess.version;
    // Read by external id.
    let ext_ok = schema::describe(object).is_none() || field.ends_with("__c");
    if !ext_ok {
        return err(sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Provided external ID field does not exist or is not accessible: {field}"),
            None,
        ));
    }
    let found: Vec<&Value> =
        w.records.matching(object, field, value).into_iter().map(|i| &w.records.by_object[object][i]).collect();
    match found.as_slice() {
        [] => err(not_found_err()),
        [one] => Outcome { status: StatusCode::OK, body: (*one).clone(), location: None },
        many => {
            let urls: Vec<String> = many
                .iter()
                .map(|r| format!("/services/data/{ver}/sobjects/{object}/{}", r["Id"].as_str().unwrap_or_default()))
                .collect();
            Outcome { status: StatusCode::MULTIPLE_CHOICES, body: json!(urls), location: None }
        }
    }
}

fn upsert(
    w: &mut World,
    sess: &Session,
    object: &str,
    field: &str,
    value: &str,
    body: &Value,
    changes: &mut Vec<Change>,
) -> Outcome {
    let ver = &sess.version;
    let obj_body = || body.as_object().cloned().unwrap_or_default();
    // Upsert by external id.
    let ext_ok = match schema::describe(object) {
        Some(_) => field.ends_with("__c") || field == "Id",
        None => true,
    };
    if !ext_ok {
        return err(sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Provided external ID field does not exist or is not accessible: {field}"),
            None,
        ));
    }
    let mut fields = obj_body();
    if fields.contains_key(field) {
        return err(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            &format!("The external ID field {field} must not be in the request body; it is given in the URL"),
            Some(&[field]),
        ));
    }
    let matches: Vec<usize> = w.records.matching(object, field, value);
    match matches.as_slice() {
        [] => {
            fields.insert(field.to_string(), json!(value));
            if let Err(e) = validate(&w.records, object, &fields, true) {
                return err(e);
            }
            let rec = new_record(&mut w.records, object, fields, &sess.username);
            let id = rec["Id"].as_str().unwrap_or_default().to_string();
            w.records.push(object, rec.clone());
            changes.push(Change {
                object: object.into(),
                operation: "insert".into(),
                old: None,
                new: rec,
                username: sess.username.clone(),
                call_options: sess.call_options.clone(),
            });
            Outcome {
                status: StatusCode::CREATED,
                body: json!({"id": id, "success": true, "errors": [], "created": true}),
                location: Some(format!("/services/data/{ver}/sobjects/{object}/{id}")),
            }
        }
        [idx] => {
            if let Err(e) = validate(&w.records, object, &fields, false) {
                return err(e);
            }
            let at = w.records.clock.now();
            let (old, new) = w.records.update_at(object, *idx, |rec| apply(rec, object, fields, &sess.username, at));
            let id = new["Id"].clone();
            changes.push(Change {
                object: object.into(),
                operation: "update".into(),
                old: Some(old),
                new,
                username: sess.username.clone(),
                call_options: sess.call_options.clone(),
            });
            Outcome {
                status: StatusCode::OK,
                body: json!({"id": id, "success": true, "errors": [], "created": false}),
                location: None,
            }
        }
        many => {
            let urls: Vec<String> = many
                .iter()
                .map(|i| {
                    format!(
                        "/services/data/{ver}/sobjects/{object}/{}",
                        w.records.by_object[object][*i]["Id"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            Outcome { status: StatusCode::MULTIPLE_CHOICES, body: json!(urls), location: None }
        }
    }
}
