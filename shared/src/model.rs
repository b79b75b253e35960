//! Domain values that every part of the bridge speaks: directions, links, audit entries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which way an event flows through the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A Salesforce record changed; PagerDuty is acted on.
    SalesforceToPagerduty,
    /// A PagerDuty incident changed; Salesforce is acted on.
    PagerdutyToSalesforce,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SalesforceToPagerduty => "salesforce_to_pagerduty",
            Direction::PagerdutyToSalesforce => "pagerduty_to_salesforce",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Salesforce record, named by object and 15/18-character id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordRef {
    /// sObject API name, e.g. `Case` or `Escalation__c`.
    pub object: crate::salesforce::ObjectName,
    pub id: crate::salesforce::RecordId,
}

/// One PagerDuty incident ↔ Salesforce record link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub incident_id: crate::pagerduty::IncidentId,
    pub record: RecordRef,
    pub created_at: DateTime<Utc>,
    /// The rule that made the link, when a rule made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_rule: Option<String>,
}

/// What finally happened to one event; the audit trail's headline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Rules matched and every planned action succeeded.
    Applied,
    /// Authentic, but nothing to do (no rule matched, ping, unhandled type).
    Skipped,
    /// Already applied: a redelivery.
    Duplicate,
    /// Older than what the link has already applied.
    Stale,
    /// Authentic but unparseable; the raw payload is kept for review.
    Rejected,
    /// Put on the retry queue.
    Queued,
    /// Sent to the dead-letter queue.
    DeadLettered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Skipped => "skipped",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Rejected => "rejected",
            Outcome::Queued => "queued",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// The result of one executed action, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Action kind, e.g. `create_incident`, `set_fields`.
    pub action: String,
    /// The rule that planned it.
    pub rule: String,
    /// What it acted on (incident id, record id, object name).
    pub target: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One audit entry: what the bridge did with one event, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique id of this entry.
    pub id: String,
    pub at: DateTime<Utc>,
    pub direction: Direction,
    /// The Lambda request id or another id that ties log lines together.
    pub correlation_id: String,
    /// PagerDuty event id / webhook id, Outbound Message notification id, or record id + timestamp.
    pub event_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incident_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_ids: Vec<String>,
    pub outcome: Outcome,
    /// Free text: the reason for a skip, a rejection or a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules_matched: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionRecord>,
    /// API calls made to the other side for this event.
    #[serde(default)]
    pub api_calls: u32,
    #[serde(default)]
    pub duration_ms: u64,
    /// The raw payload, kept only for rejected events so that a person can review them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_payload: Option<String>,
}

impl AuditEntry {
    /// A new entry with a fresh id; fill in the rest with struct update syntax or setters.
    pub fn new(
        at: DateTime<Utc>,
        direction: Direction,
        correlation_id: impl Into<String>,
        event_id: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            at,
            direction,
            correlation_id: correlation_id.into(),
            event_id: event_id.into(),
            incident_ids: Vec::new(),
            record_ids: Vec::new(),
            outcome,
            reason: None,
            rules_matched: Vec::new(),
            actions: Vec::new(),
            api_calls: 0,
            duration_ms: 0,
            raw_payload: None,
        }
    }

    /// Keeps `body` for review, cut to [`MAX_KEPT_PAYLOAD`] bytes (an item holds at most 400 KB)
    /// with a line saying how much was cut.
    pub fn keep_payload(&mut self, body: &[u8]) {
        let text = String::from_utf8_lossy(body);
        self.raw_payload = Some(if text.len() <= MAX_KEPT_PAYLOAD {
            text.into_owned()
        } else {
            let mut end = MAX_KEPT_PAYLOAD;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}\n[cut: {} of {} bytes kept]", &text[..end], end, text.len())
        });
    }
}

/// How much of a rejected payload the audit trail keeps (JSON escapes can make it up to six
/// times larger in the item, which holds at most 400 KB).
pub const MAX_KEPT_PAYLOAD: usize = 32 * 1024;
/// How much of a reason the audit trail keeps (parser errors can quote the input).
pub const MAX_REASON: usize = 1024;

/// `text` cut to `max` bytes on a character boundary, with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The longest identifier kept as it is in a store key (DynamoDB refuses partition keys over
/// 2,048 bytes and sort keys over 1,024); longer ones are replaced by their hash.
pub const MAX_KEY_TEXT: usize = 200;

/// `text` when it is short enough to be part of a store key, else `sha256:<64 hex>` of it: the
/// same text always gives the same key, so de-duplication still works, and no sender can make
/// a key the store refuses (which would fail the event forever).
pub fn bounded_key(text: &str) -> String {
    if text.len() <= MAX_KEY_TEXT {
        text.to_string()
    } else {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(text.as_bytes())))
    }
}

/// The key an event claims at the idempotency gate
/// ([`crate::handler::idempotency::Idempotency`]): one per event, and one per send of a retry
/// message. Every form is made here, so two kinds of event never claim the same key and a key
/// is never taken for an event id. In an envelope, the same JSON string as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct GateKey(String);

impl GateKey {
    /// A PagerDuty webhook event, by its event id: `pd:<id>`.
    pub fn webhook(event_id: &str) -> Self {
        Self(bounded_key(&format!("pd:{event_id}")))
    }

    /// A Salesforce change (`sf:`, `om:`) or a reconcile repair (`reconcile-`): its event id is
    /// already unique and namespaced by its kind.
    pub fn event(event_id: &str) -> Self {
        Self(bounded_key(event_id))
    }

    /// An agent console escalation, by the request id the component made for it: `console:<id>`.
    pub fn console_escalation(request_id: &str) -> Self {
        Self(bounded_key(&format!("console:{request_id}")))
    }

    /// One send of a retry message: the envelope, its hop and how often it was replayed.
    pub fn hop(envelope_id: &str, hop: &str, replays: u32) -> Self {
        Self(bounded_key(&format!("retry:{envelope_id}:{hop}:{replays}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An envelope written before events carried their key has none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for GateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn each_kind_of_event_claims_a_key_of_its_own_form() {
        assert_eq!(GateKey::webhook("01GI0KPHX6").as_str(), "pd:01GI0KPHX6");
        assert_eq!(GateKey::event("sf:Case:500:abc").as_str(), "sf:Case:500:abc");
        assert_eq!(GateKey::hop("env-1", "h2", 1).as_str(), "retry:env-1:h2:1");
        assert_ne!(GateKey::webhook("x"), GateKey::event("x"), "a webhook and a change never share a key");
        assert!(GateKey::webhook(&"x".repeat(3000)).as_str().starts_with("sha256:"));
        assert_eq!(
            serde_json::to_string(&GateKey::webhook("E1")).unwrap(),
            "\"pd:E1\"",
            "the JSON of the string it replaced"
        );
        assert!(GateKey::default().is_empty());
    }

    #[test]
    fn long_identifiers_become_their_hash_and_short_ones_stay() {
        assert_eq!(bounded_key("pd:01GI0KPHX6I892N2PFKDLH25XK"), "pd:01GI0KPHX6I892N2PFKDLH25XK");
        let long = format!("pd:{}", "x".repeat(3000));
        let key = bounded_key(&long);
        assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
        assert_eq!(key, bounded_key(&long), "the same text, the same key");
        assert_ne!(key, bounded_key(&format!("pd:{}", "x".repeat(3001))));
    }

    #[test]
    fn kept_payloads_are_cut_on_a_character_boundary() {
        let mut entry = AuditEntry::new(Utc::now(), Direction::PagerdutyToSalesforce, "c", "e", Outcome::Rejected);
        entry.keep_payload("é".repeat(40_000).as_bytes());
        let kept = entry.raw_payload.unwrap();
        assert!(
            kept.len() < MAX_KEPT_PAYLOAD + 100 && kept.ends_with("of 80000 bytes kept]"),
            "{}",
            &kept[kept.len() - 40..]
        );
        entry = AuditEntry::new(Utc::now(), Direction::PagerdutyToSalesforce, "c", "e", Outcome::Rejected);
        entry.keep_payload(b"{}");
        assert_eq!(entry.raw_payload.as_deref(), Some("{}"));
    }
}
