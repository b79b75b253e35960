//! A PagerDuty Webhooks v3 sender: builds deliveries shaped like the real ones (see
//! `/work/shared/samples/pagerduty-webhooks-v3/`), signs them, and delivers them with PagerDuty's
//! retry behaviour (retry on timeout, 5xx and 429; drop on other 4xx). HMAC is computed here with
//! `hmac`/`sha2`, independently of the product's verifier, so a shared bug cannot hide. [`emit`] is
//! how the simulator sends one on every change it makes, the bridge's own changes included.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// `v1=<hex>` for one secret: lowercase hex HMAC-SHA256 of the raw body.
pub fn sign_v1(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The `X-PagerDuty-Signature` value for one or more secrets (comma-separated during rotation).
pub fn signature_header(secrets: &[String], body: &[u8]) -> String {
    secrets.iter().map(|s| sign_v1(s, body)).collect::<Vec<_>>().join(",")
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    /// `X-Webhook-Id`, identical on every attempt of this delivery.
    pub webhook_id: String,
    /// One entry per attempt: the HTTP status, or `None` for a timeout / connection error.
    pub attempts: Vec<Option<u16>>,
    /// A 2xx was received.
    pub delivered: bool,
}

/// Builds, signs and delivers Webhooks v3 payloads.
pub struct WebhookSender {
    client: reqwest::Client,
    secrets: Vec<String>,
    subscription_id: String,
    max_attempts: u32,
    initial_backoff: Duration,
    /// event id -> webhook id, so a re-sent event (a duplicate) carries the same `X-Webhook-Id`,
    /// exactly like PagerDuty's re-deliveries.
    ids: Mutex<HashMap<String, String>>,
}

impl WebhookSender {
    /// A sender signing with `secrets` (one, or two during rotation). Defaults: subscription
    /// `PSUB001`, 5 s timeout (PagerDuty's), 4 attempts, 20 ms initial backoff doubling (fast in tests).
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Self {
        WebhookSender {
            client: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("reqwest client"),
            secrets: secrets.iter().map(|s| s.as_ref().to_string()).collect(),
            subscription_id: "PSUB001".into(),
            max_attempts: 4,
            initial_backoff: Duration::from_millis(20),
            ids: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_subscription(mut self, id: &str) -> Self {
        self.subscription_id = id.to_string();
        self
    }

    pub fn with_retry(mut self, max_attempts: u32, initial_backoff: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.initial_backoff = initial_backoff;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.client = reqwest::Client::builder().timeout(timeout).build().expect("reqwest client");
        self
    }

    pub fn subscription_id(&self) -> &str {
        &self.subscription_id
    }

    /// `X-PagerDuty-Signature` for `body` with this sender's secrets.
    pub fn signature(&self, body: &[u8]) -> String {
        signature_header(&self.secrets, body)
    }

    /// Deliver one event envelope (`{"event": {...}}`).
    pub async fn deliver(&self, url: &str, envelope: &Value) -> DeliveryReport {
        let event_id = envelope["event"]["id"].as_str().unwrap_or_default().to_string();
        let webhook_id = {
            let mut ids = self.ids.lock().unwrap();
            ids.entry(event_id).or_insert_with(|| uuid::Uuid::new_v4().to_string()).clone()
        };
        let body = serde_json::to_vec(envelope).expect("JSON");
        self.deliver_raw(url, &webhook_id, body).await
    }

    /// Deliver raw bytes (e.g. a captured sample) with a given webhook id.
    pub async fn deliver_raw(&self, url: &str, webhook_id: &str, body: Vec<u8>) -> DeliveryReport {
        let signature = self.signature(&body);
        let mut attempts = Vec::new();
        let mut backoff = self.initial_backoff;
        for attempt in 0..self.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            let result = self
                .client
                .post(url)
                .header("Content-Type", "application/json")
                .header("User-Agent", "PagerDuty-Webhook/V3.0")
                .header("X-PagerDuty-Signature", &signature)
                .header("X-Webhook-Id", webhook_id)
                .header("X-Webhook-Subscription", &self.subscription_id)
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    attempts.push(Some(status));
                    if resp.status().is_success() {
                        return DeliveryReport { webhook_id: webhook_id.to_string(), attempts, delivered: true };
                    }
                    // PagerDuty drops a delivery answered with a 4xx other than 429.
                    if (400..500).contains(&status) && status != 429 {
                        break;
                    }
                }
                Err(_) => attempts.push(None),
            }
        }
        DeliveryReport { webhook_id: webhook_id.to_string(), attempts, delivered: false }
    }

    /// Deliver events in the given order. Repeating an event (same `event.id`) re-sends it with the
    /// same `X-Webhook-Id` (a duplicate); putting a later event first makes an out-of-order stream.
    pub async fn replay(&self, url: &str, envelopes: &[Value]) -> Vec<DeliveryReport> {
        let mut out = Vec::with_capacity(envelopes.len());
        for e in envelopes {
            out.push(self.deliver(url, e).await);
        }
        out
    }

    /// Replay a file holding a JSON array of envelopes, or one envelope per line (JSON Lines).
    pub async fn replay_file(&self, url: &str, path: &Path) -> std::io::Result<Vec<DeliveryReport>> {
        let text = std::fs::read_to_string(path)?;
        let envelopes: Vec<Value> = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(a)) => a,
            Ok(v) => vec![v],
            Err(_) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        };
        Ok(self.replay(url, &envelopes).await)
    }
}

/// A new event id shaped like PagerDuty's (26-char ULID-like, uppercase).
pub fn new_event_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("01{}", &u[..24])
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Wrap `data` into a v3 envelope.
pub fn envelope(
    event_type: &str,
    resource_type: &str,
    agent: Option<Value>,
    data: Value,
    occurred_at: DateTime<Utc>,
) -> Value {
    json!({"event": {
        "id": new_event_id(),
        "event_type": event_type,
        "resource_type": resource_type,
        "occurred_at": ts(occurred_at),
        "agent": agent,
        "client": null,
        "data": data,
    }})
}

/// A v3 reference (`{html_url,id,self,summary,type}`) from a REST reference/object.
pub fn reference(obj: &Value, kind: &str) -> Value {
    if obj.is_null() {
        return Value::Null;
    }
    json!({
        "html_url": obj["html_url"],
        "id": obj["id"],
        "self": obj["self"],
        "summary": obj["summary"],
        "type": format!("{kind}_reference"),
    })
}

/// The `data` object of an `incident.*` event, built from a simulator (REST-shaped) incident.
pub fn incident_data(incident: &Value) -> Value {
    let assignees: Vec<Value> =
        incident["assignments"].as_array().into_iter().flatten().map(|a| reference(&a["assignee"], "user")).collect();
    json!({
        "id": incident["id"],
        "type": "incident",
        "self": incident["self"],
        "html_url": incident["html_url"],
        "number": incident["incident_number"],
        "status": incident["status"],
        "incident_key": incident["incident_key"],
        "created_at": incident["created_at"],
        "title": incident["title"],
        "service": reference(&incident["service"], "service"),
        "assignees": assignees,
        "escalation_policy": reference(&incident["escalation_policy"], "escalation_policy"),
        "teams": incident["teams"].as_array().cloned().unwrap_or_default(),
        "priority": reference(&incident["priority"], "priority"),
        "urgency": incident["urgency"],
        "conference_bridge": incident["conference_bridge"],
        "resolve_reason": incident["resolve_reason"],
        "incident_type": {"name": "incident_default"},
    })
}

/// An `incident.*` envelope for `incident`, done by `agent` (a REST user object, or `None`).
pub fn incident_event(event_type: &str, incident: &Value, agent: Option<&Value>, at: DateTime<Utc>) -> Value {
    envelope(event_type, "incident", agent.map(|a| reference(a, "user")), incident_data(incident), at)
}

/// PagerDuty guarantees v3 payloads up to about 55 KB and cuts larger ones: a long note's content
/// is cut to fit and the note data says `"trimmed": true` (`/work/shared/specs/pagerduty-webhooks-v3.md`).
/// The REST API (`GET /incidents/{id}/notes`) keeps the whole note.
pub const WEBHOOK_PAYLOAD_BYTES: usize = 55_000;

/// An `incident.annotated` envelope: data is the note, its content cut as PagerDuty does so that
/// the delivery fits in [`WEBHOOK_PAYLOAD_BYTES`].
pub fn note_event(incident: &Value, note: &Value, agent: Option<&Value>, at: DateTime<Utc>) -> Value {
    let mut content = note["content"].as_str().unwrap_or_default();
    let mut trimmed = false;
    loop {
        let envelope = note_envelope(incident, note, content, trimmed, agent, at);
        let size = serde_json::to_vec(&envelope).expect("JSON").len();
        if size <= WEBHOOK_PAYLOAD_BYTES {
            return envelope;
        }
        // Escapes make the JSON at least as long as the text: cutting the excess is enough.
        let mut keep = content.len().saturating_sub(size - WEBHOOK_PAYLOAD_BYTES);
        while !content.is_char_boundary(keep) {
            keep -= 1;
        }
        content = &content[..keep];
        trimmed = true;
    }
}

fn note_envelope(
    incident: &Value,
    note: &Value,
    content: &str,
    trimmed: bool,
    agent: Option<&Value>,
    at: DateTime<Utc>,
) -> Value {
    let data = json!({
        "incident": incident_reference(incident),
        "id": note["id"],
        "content": content,
        "trimmed": trimmed,
        "type": "incident_note",
    });
    envelope("incident.annotated", "incident", agent.map(|a| reference(a, "user")), data, at)
}

/// The `incident` reference of an activity's data (a note, a status update, field values).
fn incident_reference(incident: &Value) -> Value {
    json!({
        "html_url": incident["html_url"],
        "id": incident["id"],
        "self": incident["self"],
        "summary": incident["title"],
        "type": "incident_reference",
    })
}

/// An `incident.status_update_published` envelope for `update` (as the REST API returns it).
pub fn status_update_event(incident: &Value, update: &Value, agent: Option<&Value>, at: DateTime<Utc>) -> Value {
    let data = json!({
        "incident": incident_reference(incident),
        "id": update["id"],
        "message": update["message"],
        "trimmed": false,
        "type": "incident_status_update",
    });
    envelope("incident.status_update_published", "incident", agent.map(|a| reference(a, "user")), data, at)
}

/// An `incident.custom_field_values.updated` envelope: every field's value now, and the fields
/// that changed with their values before.
pub fn custom_fields_event(
    incident: &Value,
    values: &[Value],
    changed: &[Value],
    agent: Option<&Value>,
    at: DateTime<Utc>,
) -> Value {
    let data = json!({
        "incident": incident_reference(incident),
        "custom_fields": values,
        "changed_custom_fields": changed,
        "type": "incident_field_values",
    });
    envelope("incident.custom_field_values.updated", "incident", agent.map(|a| reference(a, "user")), data, at)
}

/// Record an emitted webhook event (and log its change), and deliver it in the background to the
/// configured target and to every active subscription created through the API whose `events`
/// include its type (signed with that subscription's secret), like PagerDuty does.
pub(super) fn emit(w: &mut super::state::World, config: &super::PdSimConfig, envelope: Value) {
    super::log_entries::log(w, &envelope);
    w.webhook_events.push(envelope.clone());
    let event_type = envelope["event"]["event_type"].as_str().unwrap_or_default().to_string();
    let mut targets: Vec<(String, Vec<String>, String)> = Vec::new();
    if let Some(t) = &config.webhook {
        targets.push((t.url.clone(), t.secrets.clone(), t.subscription_id.clone()));
    }
    for sub in &w.subscriptions {
        let active = sub["active"].as_bool().unwrap_or(true);
        let wants = sub["events"].as_array().is_none_or(|e| e.is_empty() || e.iter().any(|x| x == event_type.as_str()));
        if let (true, true, Some(url), Some(secret), Some(id)) = (
            active,
            wants,
            sub["delivery_method"]["url"].as_str(),
            sub["delivery_method"]["secret"].as_str(),
            sub["id"].as_str(),
        ) {
            targets.push((url.to_string(), vec![secret.to_string()], id.to_string()));
        }
    }
    for (url, secrets, subscription_id) in targets {
        let sender = WebhookSender::new(&secrets).with_subscription(&subscription_id);
        let envelope = envelope.clone();
        tokio::spawn(async move {
            let _ = sender.deliver(&url, &envelope).await;
        });
    }
}
