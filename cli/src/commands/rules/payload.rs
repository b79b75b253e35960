//! What `syncctl rules test` accepts as the event: whatever the operator has at hand, told apart
//! by its shape and read by the parsers the functions use (never a second parser):
//!
//! - a normalised event (`events/rules/*.event.json`, `{"kind": ...}`);
//! - a PagerDuty Webhooks v3 body (`{"event": {...}}`, [`WebhookEvent`]);
//! - an Apex trigger post (`{"schema": 1, ...}`, [`TriggerPost`]);
//! - an Outbound Message (SOAP XML, [`OutboundMessage`]);
//! - an API Gateway event wrapping any of these (`events/pd-to-sfdc`, `events/sfdc-to-pd`);
//! - an SQS batch of queued envelopes (`events/retry`).
//!
//! Links are not looked up: a rule that needs a linked record or incident sees none.

use base64::Engine;
use serde_json::Value;
use shared::handler::{pd_to_sfdc, sfdc_to_pd};
use shared::pagerduty::webhook::WebhookEvent;
use shared::retry::envelope::Envelope;
use shared::rules::Event;
use shared::salesforce::{OutboundMessage, TriggerPost};

/// One thing to evaluate.
pub enum Item {
    Event(Box<Event>),
    /// A queued event: evaluated as `dlq replay --dry-run` previews it.
    Envelope(Box<Envelope>),
}

/// What the file turned out to be, and what is in it.
pub struct Payload {
    /// A stable name of the shape: `normalised_event`, `pagerduty_webhook`, `trigger_post`,
    /// `outbound_message`, `sqs_batch`, prefixed `api_gateway/` when wrapped.
    pub shape: String,
    /// One line per item saying what it is (`Case 500... (insert)`).
    pub items: Vec<(String, Item)>,
    /// Why the bridge would act on nothing in it (a ping, a non-incident event).
    pub note: Option<String>,
}

/// Reads `text` as any of the accepted shapes.
pub fn read(text: &str) -> Result<Payload, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        let message =
            OutboundMessage::parse(trimmed.as_bytes()).map_err(|e| format!("an Outbound Message, but: {e}"))?;
        let items = sfdc_to_pd::changes_of_outbound_message(message, chrono::Utc::now())
            .into_iter()
            .map(|c| {
                (
                    format!("{} {} (Outbound Message notification)", c.object, c.id),
                    Item::Event(Box::new(sfdc_to_pd::record_event(&c, vec![]))),
                )
            })
            .collect();
        return Ok(Payload { shape: "outbound_message".into(), items, note: None });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("neither JSON nor SOAP XML: {e}"))?;
    let Value::Object(obj) = &value else {
        return Err("a JSON value, but not an object".into());
    };
    if obj.contains_key("kind") {
        let event: Event = serde_json::from_value(value.clone())
            .map_err(|e| format!("not a normalised event: {e} (see events/rules/*.event.json for the format)"))?;
        return Ok(Payload {
            shape: "normalised_event".into(),
            items: vec![(describe(&event), Item::Event(Box::new(event)))],
            note: None,
        });
    }
    if obj.get("event").is_some_and(Value::is_object) {
        let event = WebhookEvent::from_value(value.clone()).map_err(|e| format!("a PagerDuty webhook, but: {e}"))?;
        let note = if event.is_ping() {
            Some("a ping: the bridge answers it and applies no rules".to_string())
        } else if event.incident_id().is_none() {
            Some(format!("{} is not about an incident: the bridge skips it", event.event_type))
        } else {
            None
        };
        let items = if note.is_some() {
            vec![]
        } else {
            let incident = pd_to_sfdc::incident_event(&event, vec![]);
            vec![(
                format!("{} of incident {}", event.event_type, incident.incident.id),
                Item::Event(Box::new(Event::Incident(incident))),
            )]
        };
        return Ok(Payload { shape: "pagerduty_webhook".into(), items, note });
    }
    if obj.contains_key("schema") {
        let post = TriggerPost::from_value(&value).map_err(|e| format!("an Apex trigger post, but: {e}"))?;
        let operation = post.operation.as_str();
        let items = sfdc_to_pd::changes_of_post(post)
            .into_iter()
            .map(|c| {
                (
                    format!("{} {} ({operation})", c.object, c.id),
                    Item::Event(Box::new(sfdc_to_pd::record_event(&c, vec![]))),
                )
            })
            .collect();
        return Ok(Payload { shape: "trigger_post".into(), items, note: None });
    }
    if let Some(body) = obj.get("body").filter(|_| obj.contains_key("requestContext") || obj.contains_key("headers")) {
        let body = body.as_str().ok_or("an API Gateway event whose body is not a string")?;
        let body = if obj.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|e| format!("an API Gateway event whose base64 body does not decode: {e}"))?;
            String::from_utf8(bytes).map_err(|_| "an API Gateway event whose body is not UTF-8".to_string())?
        } else {
            body.to_string()
        };
        let inner = read(&body).map_err(|e| format!("an API Gateway event whose body is {e}"))?;
        return Ok(Payload { shape: format!("api_gateway/{}", inner.shape), ..inner });
    }
    if let Some(records) = obj.get("Records").and_then(Value::as_array) {
        let mut items = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let body = record.get("body").and_then(Value::as_str).ok_or(format!("SQS record {i} has no body"))?;
            let envelope =
                Envelope::from_json(body).map_err(|e| format!("SQS record {i} is not a queued envelope: {e}"))?;
            let label = format!("queued {} event {}", envelope.accepted.direction, envelope.accepted.event_id);
            items.push((label, Item::Envelope(Box::new(envelope))));
        }
        return Ok(Payload { shape: "sqs_batch".into(), items, note: None });
    }
    Err("not a shape syncctl knows: a normalised event ({\"kind\": ...}), a PagerDuty webhook ({\"event\": ...}), an Apex trigger post ({\"schema\": 1, ...}), an Outbound Message (SOAP XML), an API Gateway event or an SQS batch".into())
}

fn describe(event: &Event) -> String {
    match event {
        Event::Record(r) => format!("{} {} ({})", r.object, r.id, if r.is_new { "insert" } else { "update" }),
        Event::Incident(i) => format!("{} of incident {}", i.event_type, i.incident.id),
    }
}
