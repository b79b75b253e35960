//! The Lambda edge: converts API Gateway and SQS events into the AWS-free handler types and
//! back. Like the DynamoDB and Secrets Manager adapters, this is the one place those types meet
//! the domain, so that each function's `main.rs` only wires.

use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, RequestExt, Response};

use shared::handler::http::{InboundRequest, Reply};

/// API Gateway HTTP API request → [`InboundRequest`]. lambda_http has already base64-decoded a
/// binary body; the bytes are kept exactly as they arrived, for signature checks.
pub fn to_inbound(request: &Request) -> InboundRequest {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (name.as_str().to_ascii_lowercase(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    let body = match request.body() {
        Body::Empty => Vec::new(),
        Body::Text(text) => text.as_bytes().to_vec(),
        Body::Binary(bytes) => bytes.clone(),
        _ => Vec::new(),
    };
    let context = request.lambda_context_ref();
    let correlation_id = context.map(|c| c.request_id.clone()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let deadline = context.and_then(deadline);
    InboundRequest {
        method: request.method().as_str().to_string(),
        path: route_path(request),
        query: request.uri().query().unwrap_or_default().to_string(),
        headers,
        body,
        correlation_id,
        deadline,
    }
}

/// The route's path: the one API Gateway matched (`routeKey` `POST /salesforce/records`), which
/// holds neither a named stage nor a custom domain's mapping key; without one (`$default`, local
/// tools), the raw path without a named stage's `/<stage>` prefix.
fn route_path(request: &Request) -> String {
    let path = request.uri().path();
    let (stage, route_key) = match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) => {
            (context.stage.clone(), context.route_key.clone())
        }
        _ => (None, None),
    };
    if let Some((_, matched)) = route_key.as_deref().and_then(|k| k.split_once(' '))
        && matched.starts_with('/')
    {
        return matched.to_string();
    }
    match stage.filter(|s| s != "$default") {
        Some(stage) => {
            path.strip_prefix(&format!("/{stage}")).filter(|p| p.starts_with('/')).unwrap_or(path).to_string()
        }
        None => path.to_string(),
    }
}

/// [`Reply`] → API Gateway response.
pub fn to_response(reply: Reply) -> Response<Body> {
    let mut builder = Response::builder().status(reply.status).header("content-type", reply.content_type);
    for (name, value) in reply.headers {
        builder = builder.header(name, value);
    }
    builder.body(Body::Text(reply.body)).expect("status and header names are static and valid")
}

/// What invoked the sfdc-to-pd function: an API Gateway request, or an EventBridge event from
/// Salesforce Event Relay (a Change Data Capture event on the partner bus).
#[derive(Debug)]
pub enum Invocation {
    Http(Request),
    ChangeEvent(InboundRequest),
}

/// Why an invocation is none the function serves (nothing read or written).
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("an EventBridge event from `{0}` is not a Salesforce Event Relay event")]
    NotEventRelay(String),
    #[error("the invocation is neither an API Gateway request nor an EventBridge event: {0}")]
    Unknown(String),
}

/// Tells the invocation's kind by its shape: an EventBridge event has `detail-type` and
/// `source`; anything else is handed to lambda_http as an API Gateway request. The change
/// event's JSON is kept as it arrived (the core parses it).
pub fn invocation(event: lambda_runtime::LambdaEvent<serde_json::Value>) -> Result<Invocation, InvocationError> {
    let (payload, context) = event.into_parts();
    if payload.get("detail-type").is_some() {
        let envelope: aws_lambda_events::eventbridge::EventBridgeEvent =
            serde_json::from_value(payload.clone()).map_err(|e| InvocationError::Unknown(e.to_string()))?;
        if !envelope.source.starts_with(shared::salesforce::change_event::SOURCE_PREFIX) {
            return Err(InvocationError::NotEventRelay(shared::model::cut(&envelope.source, 120)));
        }
        return Ok(Invocation::ChangeEvent(InboundRequest {
            method: "EVENT".into(),
            path: shared::handler::sfdc_to_pd::CHANGE_EVENT_ROUTE.into(),
            query: String::new(),
            headers: vec![],
            body: serde_json::to_vec(&payload).expect("JSON serialises"),
            correlation_id: context.request_id.clone(),
            deadline: deadline(&context),
        }));
    }
    let request: lambda_http::request::LambdaRequest =
        serde_json::from_value(payload).map_err(|e| InvocationError::Unknown(e.to_string()))?;
    Ok(Invocation::Http(lambda_http::Request::from(request).with_lambda_context(context)))
}

/// [`Reply`] → the API Gateway HTTP API (payload 2.0) response, as lambda_http writes it.
pub fn to_http_api_response(reply: Reply) -> serde_json::Value {
    let response = to_response(reply);
    let mut out = aws_lambda_events::apigw::ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(response.status().as_u16());
    out.headers = response.headers().clone();
    if let Body::Text(text) = response.into_body() {
        out.body = Some(aws_lambda_events::encodings::Body::Text(text));
    }
    serde_json::to_value(out).expect("responses serialise")
}

/// A change event's outcome → the invocation's: an error when EventBridge must deliver the
/// event again (some records could not be made safe: it retries, then the rule target's DLQ);
/// a refused event succeeds (delivering it again would be refused again).
pub fn change_event_result(
    reply: shared::handler::sfdc_to_pd::ChangeEventReply,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    use shared::handler::sfdc_to_pd::ChangeEventReply;
    match reply {
        ChangeEventReply::Accepted(summary) => Ok(serde_json::to_value(summary).expect("summaries serialise")),
        ChangeEventReply::Refused(err) => Ok(serde_json::json!({"refused": err.to_string()})),
        ChangeEventReply::Retry(summary) => Err(format!(
            "{} of {} records of the change event could not be made safe now: EventBridge delivers it again",
            summary.not_accepted.len(),
            summary.received
        )
        .into()),
    }
}

/// SQS records → the retry handler's messages.
pub fn to_messages(event: aws_lambda_events::sqs::SqsEvent) -> Vec<shared::handler::retry::Message> {
    event
        .records
        .into_iter()
        .map(|record| shared::handler::retry::Message {
            receive_count: record.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1),
            message_id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
        })
        .collect()
}

/// The ids SQS must deliver again → `ReportBatchItemFailures` response.
pub fn batch_response(failed: Vec<String>) -> aws_lambda_events::sqs::SqsBatchResponse {
    let mut response = aws_lambda_events::sqs::SqsBatchResponse::default();
    for id in failed {
        response.add_failure(id);
    }
    response
}

/// The deadline of an invocation from its context. One already past when the invocation starts
/// is not a deadline Lambda gives (a local emulator's, `cargo lambda watch`'s): taken as none,
/// or every event would be queued for want of time.
pub fn deadline(context: &lambda_runtime::Context) -> Option<DateTime<Utc>> {
    deadline_at(context.deadline, Utc::now())
}

fn deadline_at(deadline_ms: u64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let deadline = DateTime::<Utc>::from_timestamp_millis(i64::try_from(deadline_ms).ok()?)?;
    if deadline <= now {
        tracing::warn!(deadline_ms, "the invocation's deadline has already passed: running without one");
        return None;
    }
    Some(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_already_past_at_the_start_is_no_deadline() {
        let now = Utc::now();
        let ahead = (now + chrono::Duration::seconds(10)).timestamp_millis() as u64;
        assert_eq!(deadline_at(ahead, now).map(|d| d.timestamp_millis() as u64), Some(ahead));
        assert_eq!(deadline_at(0, now), None, "what a local emulator may send");
        assert_eq!(deadline_at((now - chrono::Duration::seconds(1)).timestamp_millis() as u64, now), None);
    }

    #[test]
    fn sam_local_http_api_sample_becomes_an_inbound_request() {
        let raw = include_str!("../tests/fixtures/lambda/apigw-v2-request.json");
        let request = lambda_http::request::from_str(raw).expect("a valid API Gateway v2 event");
        let inbound = to_inbound(&request);
        assert_eq!(inbound.header("Header1"), Some("value1"));
        assert_eq!(inbound.body, b"Hello from Lambda");
        assert_eq!(inbound.method, "POST");
        assert_eq!(inbound.path, "/my/path");
        assert_eq!(inbound.query_param("parameter1").as_deref(), Some("value1"));
    }

    #[test]
    fn a_named_stage_is_not_part_of_the_route() {
        let raw = include_str!("../tests/fixtures/lambda/apigw-v2-request.json");
        let mut event: serde_json::Value = serde_json::from_str(raw).unwrap();
        event["rawPath"] = serde_json::json!("/prod/my/path");
        event["requestContext"]["stage"] = serde_json::json!("prod");
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        assert_eq!(to_inbound(&request).path, "/my/path");
    }

    #[test]
    fn the_route_api_gateway_matched_is_the_path_behind_a_custom_domains_mapping_key() {
        let raw = include_str!("../tests/fixtures/lambda/apigw-v2-request.json");
        let mut event: serde_json::Value = serde_json::from_str(raw).unwrap();
        event["rawPath"] = serde_json::json!("/sync/salesforce/records");
        event["routeKey"] = serde_json::json!("POST /salesforce/records");
        event["requestContext"]["routeKey"] = serde_json::json!("POST /salesforce/records");
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        assert_eq!(to_inbound(&request).path, "/salesforce/records");
    }

    #[test]
    fn every_sample_event_names_its_route() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        for (file, route) in [
            ("pd-to-sfdc/incident-triggered.json", "/pagerduty/webhook"),
            ("sfdc-to-pd/case-insert-sev1.json", "/salesforce/records"),
            ("sfdc-to-pd/outbound-message.json", "/salesforce/outbound-message"),
        ] {
            let raw = std::fs::read_to_string(dir.join(file)).unwrap();
            let inbound = to_inbound(&lambda_http::request::from_str(&raw).unwrap());
            assert_eq!((inbound.method.as_str(), inbound.path.as_str()), ("POST", route), "{file}");
        }
    }

    fn invoked(raw: &str) -> Result<Invocation, InvocationError> {
        let mut context = lambda_runtime::Context::default();
        context.request_id = "req-1".into();
        invocation(lambda_runtime::LambdaEvent::new(serde_json::from_str(raw).unwrap(), context))
    }

    #[test]
    fn an_event_relay_event_is_a_change_event_and_a_request_stays_a_request() {
        let raw = include_str!("../../events/sfdc-to-pd/cdc-update.json");
        let Ok(Invocation::ChangeEvent(inbound)) = invoked(raw) else { panic!("a change event") };
        assert_eq!(inbound.correlation_id, "req-1");
        let kept: serde_json::Value = serde_json::from_slice(&inbound.body).unwrap();
        assert_eq!(kept, serde_json::from_str::<serde_json::Value>(raw).unwrap(), "the event as it arrived");
        let Ok(Invocation::Http(request)) = invoked(include_str!("../../events/sfdc-to-pd/case-insert-sev1.json"))
        else {
            panic!("a request")
        };
        let inbound = to_inbound(&request);
        assert_eq!((inbound.path.as_str(), inbound.correlation_id.as_str()), ("/salesforce/records", "req-1"));
        let mut other = serde_json::from_str::<serde_json::Value>(raw).unwrap();
        other["source"] = "aws.events".into();
        assert!(matches!(invoked(&other.to_string()), Err(InvocationError::NotEventRelay(_))));
    }

    #[test]
    fn a_reply_becomes_an_http_api_response_and_a_change_event_to_retry_an_error() {
        let response = to_http_api_response(Reply::message(503, "busy", "try later").with_header("retry-after", "5"));
        assert_eq!(response["statusCode"], 503);
        assert_eq!(response["headers"]["retry-after"], "5");
        assert!(response["body"].as_str().unwrap().contains("try later"));
        use shared::handler::sfdc_to_pd::{ChangeEventReply, Summary};
        let retry = Summary { received: 2, not_accepted: vec!["5005g00000CDCA1AAP".into()], ..Summary::default() };
        assert!(change_event_result(ChangeEventReply::Retry(retry)).is_err(), "EventBridge must deliver it again");
        assert!(change_event_result(ChangeEventReply::Accepted(Summary::default())).is_ok());
    }

    #[test]
    fn base64_bodies_are_decoded_to_the_raw_bytes() {
        let raw = include_str!("../tests/fixtures/lambda/apigw-v2-request.json");
        let mut event: serde_json::Value = serde_json::from_str(raw).unwrap();
        let body = "{\"event\":{\"id\":\"1\"}}";
        event["body"] = serde_json::json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body));
        event["isBase64Encoded"] = serde_json::json!(true);
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        assert_eq!(to_inbound(&request).body, body.as_bytes());
    }

    #[test]
    fn sqs_sample_event_becomes_messages_and_failures_become_a_batch_response() {
        let raw = include_str!("../tests/fixtures/lambda/sqs-event.json");
        let event: aws_lambda_events::sqs::SqsEvent = serde_json::from_str(raw).unwrap();
        let messages = to_messages(event);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].message_id, "MessageID_1");
        assert_eq!(messages[0].receive_count, 2);
        let response = serde_json::to_value(batch_response(vec!["MessageID_1".into()])).unwrap();
        assert_eq!(response["batchItemFailures"][0]["itemIdentifier"], "MessageID_1");
    }

    #[test]
    fn replies_keep_status_type_and_headers() {
        let response = to_response(Reply::message(503, "busy", "try later").with_header("retry-after", "5"));
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
        assert_eq!(response.headers()["content-type"], "application/json");
    }
}
