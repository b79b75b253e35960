//! SOQL over REST: `GET /query?q=...`, run by the simulator's SOQL subset ([`super::soql`]), and
//! `GET /query/<locator>`: an answer longer than the batch size (2000 unless a test sets it) comes
//! in batches, each one API call, the next at `nextRecordsUrl` while `done` is false.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::errors::{json_resp, sf_error};
use super::sobjects::Session;
use super::soql;
use super::state::{Shared, World};
use crate::server::Params;
use serde_json::{Value, json};

pub(super) async fn endpoint(
    State(s): State<Arc<Shared>>,
    Extension(sess): Extension<Session>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query.as_deref().and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "q"));
    let Some((_, q)) = q else {
        return json_resp(sf_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", "no query given (q=...)", None));
    };
    let mut w = s.world.lock().unwrap();
    match soql::run(&w.records, &sess.version, &q) {
        Ok((status, answer)) => {
            let records = answer["records"].as_array().cloned().unwrap_or_default();
            json_resp((status, batch(&mut w, &sess.version, records, None)))
        }
        Err(e) => json_resp(e),
    }
}

/// Salesforce's default batch size.
pub(super) const DEFAULT_BATCH: usize = 2000;

/// The batch of `records` that starts `offset` records into the answer of `locator` (a new
/// locator for a new query), with `nextRecordsUrl` when more follow.
fn batch(w: &mut World, version: &str, mut records: Vec<Value>, locator: Option<(String, usize)>) -> Value {
    let size = w.query_batch_size.unwrap_or(DEFAULT_BATCH).max(1);
    let (base, offset) = locator.unwrap_or_else(|| (format!("01gSIM{:012}", w.query_locators.len() + 1), 0));
    let total = offset + records.len();
    if records.len() <= size {
        return json!({"totalSize": total, "done": true, "records": records});
    }
    let rest = records.split_off(size);
    let next = format!("{base}-{}", offset + size);
    w.query_locators.insert(next.clone(), rest);
    json!({"totalSize": total, "done": false, "records": records,
        "nextRecordsUrl": format!("/services/data/{version}/query/{next}")})
}

/// `GET /query/<locator>`: the next batch of an earlier answer (each locator is read once).
pub(super) async fn more(State(s): State<Arc<Shared>>, Extension(sess): Extension<Session>, p: Params) -> Response {
    let mut w = s.world.lock().unwrap();
    let locator = p.get("locator").to_string();
    let parsed = locator.rsplit_once('-').and_then(|(base, n)| Some((base.to_string(), n.parse::<usize>().ok()?)));
    let (Some(records), Some(at)) = (w.query_locators.remove(&locator), parsed) else {
        return json_resp(sf_error(StatusCode::BAD_REQUEST, "INVALID_QUERY_LOCATOR", "invalid query locator", None));
    };
    json_resp((StatusCode::OK, batch(&mut w, &sess.version, records, Some(at))))
}
