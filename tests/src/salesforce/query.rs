//! SOQL over REST: `GET /query?q=...`, run by the simulator's SOQL subset ([`super::soql`]).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::errors::{json_resp, sf_error};
use super::sobjects::Session;
use super::soql;
use super::state::Shared;

pub(super) async fn endpoint(
    State(s): State<Arc<Shared>>,
    Extension(sess): Extension<Session>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query.as_deref().and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "q"));
    let Some((_, q)) = q else {
        return json_resp(sf_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", "no query given (q=...)", None));
    };
    let w = s.world.lock().unwrap();
    json_resp(soql::run(&w.records, &sess.version, &q).unwrap_or_else(|e| e))
}
