//! The JSON body of a REST call, parsed once after the session and limit checks: a body that is
//! not JSON is 400 `JSON_PARSER_ERROR` whatever the endpoint, an empty one is `null`.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use crate::server::RawBody;

use super::errors::{json_resp, sf_error};
use super::sobjects::Session;

#[derive(Clone)]
pub(super) struct JsonBody(pub Value);

pub(super) async fn parse(RawBody(body): RawBody, mut req: Request, next: Next) -> Response {
    if req.extensions().get::<Session>().is_none() {
        return next.run(req).await; // the token endpoint reads a form
    }
    let value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return json_resp(sf_error(
                    StatusCode::BAD_REQUEST,
                    "JSON_PARSER_ERROR",
                    &format!("Unexpected character: {e}"),
                    None,
                ));
            }
        }
    };
    req.extensions_mut().insert(JsonBody(value));
    next.run(req).await
}
