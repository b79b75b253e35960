//! Composite: up to 25 subrequests in one call, later ones referring to earlier results with
//! `@{referenceId.field}`, and with `allOrNone` all rolled back when one fails.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::SfSimConfig;
use super::body::JsonBody;
use super::emit::notify;
use super::errors::{err, json_resp, not_found_err, sf_error};
use super::records::value_text;
use super::sobjects::{self, Session};
use super::state::Shared;

pub(super) async fn endpoint(
    State(s): State<Arc<Shared>>,
    Extension(sess): Extension<Session>,
    Extension(JsonBody(body)): Extension<JsonBody>,
) -> Response {
    run(&s, &s.config(), &sess, &body)
}

/// Replace `@{ref.path}` in every string of `v` with values from earlier results.
fn substitute(v: &Value, results: &HashMap<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(substitute_str(s, results)?),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, results)).collect::<Result<_, _>>()?),
        Value::Object(o) => Value::Object(
            o.iter().map(|(k, x)| Ok((k.clone(), substitute(x, results)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute_str(s: &str, results: &HashMap<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let expr = &after[..end];
        let mut parts = expr.split('.');
        let refid = parts.next().unwrap_or_default();
        let mut cur = results.get(refid).ok_or_else(|| expr.to_string())?;
        for p in parts {
            cur = match p.parse::<usize>() {
                Ok(i) if cur.is_array() => &cur[i],
                _ => &cur[p],
            };
        }
        if cur.is_null() {
            return Err(expr.to_string());
        }
        out.push_str(&value_text(cur));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn run(s: &Shared, config: &SfSimConfig, sess: &Session, body: &Value) -> Response {
    let Some(subs) = body["compositeRequest"].as_array() else {
        return json_resp(sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "compositeRequest: the request body must contain a compositeRequest array",
            None,
        ));
    };
    if subs.len() > 25 {
        return json_resp(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_BATCH_REQUEST",
            &format!("Composite request cannot have more than 25 subrequests; received {}", subs.len()),
            None,
        ));
    }
    let all_or_none = body["allOrNone"] == true;
    let mut w = s.world.lock().unwrap();
    let saved = w.records.begin();
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut responses: Vec<Value> = Vec::new();
    let mut changes = Vec::new();
    let mut failed = false;
    for sub in subs {
        let ref_id = sub["referenceId"].as_str().unwrap_or_default().to_string();
        if failed && all_or_none {
            responses.push(json!({"body": [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}], "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref_id}));
            continue;
        }
        let method = sub["method"].as_str().unwrap_or("GET").parse::<Method>().unwrap_or(Method::GET);
        let url = sub["url"].as_str().unwrap_or_default();
        let sub_body = sub.get("body").cloned().unwrap_or(Value::Null);
        let outcome = match (substitute_str(url, &results), substitute(&sub_body, &results)) {
            (Ok(url), Ok(b)) => {
                let (path, query) = url
                    .split_once('?')
                    .map(|(p, q)| (p.to_string(), Some(q.to_string())))
                    .unwrap_or((url.clone(), None));
                let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
                match segs.as_slice() {
                    ["services", "data", _, "sobjects", rest @ ..] => {
                        sobjects::dispatch(&mut w, sess, &method, rest, query.as_deref(), &b, &mut changes)
                    }
                    _ => err(not_found_err()),
                }
            }
            (Err(expr), _) | (_, Err(expr)) => err(sf_error(
                StatusCode::BAD_REQUEST,
                "PROCESSING_HALTED",
                &format!(
                    "Invalid reference specified. No value for {expr} found in {}. Provided referenceId ({}) must match a referenceId in a previous subrequest in the same request.",
                    expr.split('.').next().unwrap_or_default(),
                    expr.split('.').next().unwrap_or_default()
                ),
                None,
            )),
        };
        if outcome.status.is_client_error() || outcome.status.is_server_error() {
            failed = true;
        }
        results.insert(ref_id.clone(), outcome.body.clone());
        let mut headers = json!({});
        if let Some(loc) = &outcome.location {
            headers["Location"] = json!(loc);
        }
        responses.push(json!({"body": outcome.body, "httpHeaders": headers, "httpStatusCode": outcome.status.as_u16(), "referenceId": ref_id}));
    }
    w.records.end(saved, failed && all_or_none);
    if failed && all_or_none {
        // Rolled back: mark every subrequest that had succeeded as halted.
        changes.clear();
        for r in responses.iter_mut() {
            let code = r["httpStatusCode"].as_u64().unwrap_or(0);
            if code < 400 {
                r["body"] = json!([{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}]);
                r["httpStatusCode"] = json!(400);
                r["httpHeaders"] = json!({});
            }
        }
    }
    w.changes.extend(changes.iter().cloned());
    drop(w);
    notify(s, config, &changes);
    json_resp((StatusCode::OK, json!({ "compositeResponse": responses })))
}
