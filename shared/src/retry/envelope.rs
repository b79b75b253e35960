//! The one versioned envelope for everything queued: what happened, what is left, and why it
//! is waiting. A message in the DLQ carries everything needed to understand and replay it.
//!
//! Versioning: `version` is written on every envelope. Readers accept every version up to
//! [`ENVELOPE_VERSION`]; fields added later are `#[serde(default)]`, so old envelopes parse.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Direction;

/// The version this build writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// The original event, as accepted (already authenticated; nothing needs re-verifying).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueuedEvent {
    /// A PagerDuty Webhooks v3 delivery: the raw body and the delivery headers we use.
    PagerdutyWebhook {
        /// The raw JSON body, exactly as received.
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webhook_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subscription_id: Option<String>,
    },
    /// One Salesforce record change (from the Apex trigger post or an Outbound Message).
    SalesforceRecord {
        object: String,
        record_id: String,
        /// `insert` or `update`.
        operation: String,
        new: serde_json::Map<String, serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<serde_json::Map<String, serde_json::Value>>,
        /// Salesforce username that made the change, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        changed_by: Option<String>,
    },
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub at: DateTime<Utc>,
    /// `transient`, `permanent`, `auth`, `bad_input`, `breaker_open`, `max_age`, ...
    pub kind: String,
    pub reason: String,
    /// The rule whose action failed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// Everything queued for retry or dead-lettered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    /// Unique id of this envelope (stable across retries of it).
    pub id: String,
    pub direction: Direction,
    /// The idempotency/event id (PagerDuty event id, Salesforce record change id).
    pub event_id: String,
    pub correlation_id: String,
    pub accepted_at: DateTime<Utc>,
    /// When the event itself happened (PagerDuty `occurred_at`, record `LastModifiedDate`).
    pub occurred_at: DateTime<Utc>,
    pub event: QueuedEvent,
    /// The action plan computed when the event was accepted (serialised `rules::PlannedAction`s).
    /// Empty when the plan must be computed again (replay after a rule fix).
    #[serde(default)]
    pub plan: Vec<serde_json::Value>,
    /// Keys of the planned actions that already succeeded: a retry does only what is left.
    #[serde(default)]
    pub done: Vec<String>,
    /// Ids created by earlier attempts that later actions need (e.g. the incident a rule created).
    #[serde(default)]
    pub created: serde_json::Map<String, serde_json::Value>,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub history: Vec<Failure>,
    /// Time still to wait before the next attempt, when one SQS hop (15 min) was not enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// Set when the envelope was sent to the DLQ: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_reason: Option<String>,
    /// How many times an operator replayed it from the DLQ.
    #[serde(default)]
    pub replays: u32,
    /// Names this trip through the retry queue (new at every send). Copies of one send share it:
    /// SQS delivers at least once, and a send whose answer was lost is sent again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hop: String,
    /// The idempotency key the event was accepted under (`pd:<event id>`, a record change's key).
    /// The retry function checks that this envelope still owns it: empty in older envelopes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gate_key: String,
    /// The subject whose pending set lists this event while it is in the retry queue (later
    /// events of the subject wait behind it); `None` when it is not listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_in: Option<crate::store::Subject>,
    /// Keys of additive actions whose outcome is unknown (sent, and the answer lost): before one
    /// is sent again the executor looks whether it happened. A key also in `done` was accepted
    /// without proof: the service offers no way to look, and sending it again could repeat it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncertain: Vec<String>,
}

/// Why an envelope could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("queued message is not a pd-sfdc-sync envelope: {0}; move it aside with `syncctl dlq show` and inspect it")]
    Malformed(#[from] serde_json::Error),
    #[error(
        "envelope version {found} is newer than this build understands ({ENVELOPE_VERSION}); deploy the newer version of the functions"
    )]
    TooNew { found: u32 },
}

impl Envelope {
    /// A fresh envelope for an accepted event.
    pub fn new(
        direction: Direction,
        event_id: impl Into<String>,
        correlation_id: impl Into<String>,
        accepted_at: DateTime<Utc>,
        occurred_at: DateTime<Utc>,
        event: QueuedEvent,
    ) -> Self {
        Self {
            version: ENVELOPE_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            direction,
            event_id: event_id.into(),
            correlation_id: correlation_id.into(),
            accepted_at,
            occurred_at,
            event,
            plan: Vec::new(),
            done: Vec::new(),
            created: serde_json::Map::new(),
            attempts: 0,
            history: Vec::new(),
            not_before: None,
            dead_letter_reason: None,
            replays: 0,
            hop: String::new(),
            waits_in: None,
            gate_key: String::new(),
            uncertain: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("envelopes always serialise")
    }

    pub fn from_json(text: &str) -> Result<Self, EnvelopeError> {
        let envelope: Envelope = serde_json::from_str(text)?;
        if envelope.version > ENVELOPE_VERSION {
            return Err(EnvelopeError::TooNew { found: envelope.version });
        }
        Ok(envelope)
    }

    /// Records a failed attempt.
    pub fn record_failure(&mut self, failure: Failure) {
        self.attempts += 1;
        self.history.push(failure);
    }

    pub fn first_failure_at(&self) -> Option<DateTime<Utc>> {
        self.history.first().map(|f| f.at)
    }

    pub fn last_failure(&self) -> Option<&Failure> {
        self.history.last()
    }

    pub fn is_done(&self, action_key: &str) -> bool {
        self.done.iter().any(|k| k == action_key)
    }

    pub fn mark_done(&mut self, action_key: impl Into<String>) {
        let key = action_key.into();
        if !self.is_done(&key) {
            self.done.push(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn sample() -> Envelope {
        Envelope::new(
            Direction::PagerdutyToSalesforce,
            "01DEN5ZR8RJY1PQE5E1M1WZBKD",
            "req-1",
            at("2026-11-22T10:00:01Z"),
            at("2026-11-22T10:00:00Z"),
            QueuedEvent::PagerdutyWebhook {
                body: "{\"event\":{}}".into(),
                webhook_id: Some("wh-1".into()),
                subscription_id: None,
            },
        )
    }

    #[test]
    fn envelope_round_trips() {
        let mut envelope = sample();
        envelope.mark_done("set_fields:Case:500xx");
        envelope.mark_done("set_fields:Case:500xx");
        envelope.record_failure(Failure {
            at: at("2026-11-22T10:00:02Z"),
            kind: "transient".into(),
            reason: "UNABLE_TO_LOCK_ROW".into(),
            rule: Some("ack-sets-working".into()),
        });
        let back = Envelope::from_json(&envelope.to_json()).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.done.len(), 1, "an action is marked done once");
        assert_eq!(back.attempts, 1);
        assert_eq!(back.first_failure_at(), Some(at("2026-11-22T10:00:02Z")));
    }

    #[test]
    fn a_minimal_version_1_envelope_still_parses() {
        // What the first release wrote, before optional fields existed.
        let old = r#"{"version":1,"id":"e1","direction":"salesforce_to_pagerduty","event_id":"sf:Case:500:1",
            "correlation_id":"c","accepted_at":"2026-01-01T00:00:00Z","occurred_at":"2026-01-01T00:00:00Z",
            "event":{"kind":"salesforce_record","object":"Case","record_id":"500","operation":"insert","new":{"Id":"500"}}}"#;
        let envelope = Envelope::from_json(old).unwrap();
        assert_eq!(envelope.attempts, 0);
        assert!(envelope.plan.is_empty() && envelope.done.is_empty());
    }

    #[test]
    fn a_newer_version_is_refused_with_advice() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["version"] = serde_json::json!(ENVELOPE_VERSION + 1);
        let err = Envelope::from_json(&value.to_string()).unwrap_err();
        assert!(err.to_string().contains("deploy the newer version"));
    }

    #[test]
    fn garbage_is_refused_with_advice() {
        let err = Envelope::from_json("not json").unwrap_err();
        assert!(err.to_string().contains("syncctl dlq show"));
    }
}
