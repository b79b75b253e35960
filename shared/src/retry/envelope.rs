//! The one versioned envelope for everything queued: what happened, what is left, and why it
//! is waiting. A message in the DLQ carries everything needed to understand and replay it.
//!
//! Versioning: `version` is written on every envelope. Readers accept every version up to
//! [`ENVELOPE_VERSION`]; fields added later are `#[serde(default)]`, so old envelopes parse.

use crate::salesforce::ObjectName;
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
        object: ObjectName,
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

/// The event as it was accepted: fixed for its whole life, whatever its attempts do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    /// Unique id of the event's envelope (stable across retries of it): it holds the event's
    /// subject and owns its gate while the event lives on in a queue.
    pub id: String,
    pub direction: Direction,
    /// The idempotency/event id (PagerDuty event id, Salesforce record change id).
    pub event_id: String,
    pub correlation_id: String,
    pub accepted_at: DateTime<Utc>,
    /// When the event itself happened (PagerDuty `occurred_at`, record `LastModifiedDate`).
    pub occurred_at: DateTime<Utc>,
    pub event: QueuedEvent,
    /// The idempotency key the event was accepted under (`pd:<event id>`, a record change's key).
    /// The retry function checks that this envelope still owns it: empty in older envelopes.
    #[serde(default, skip_serializing_if = "crate::model::GateKey::is_empty")]
    pub gate_key: crate::model::GateKey,
}

impl Accepted {
    /// A newly accepted event, with a fresh envelope id.
    pub fn new(
        direction: Direction,
        event_id: impl Into<String>,
        correlation_id: impl Into<String>,
        accepted_at: DateTime<Utc>,
        occurred_at: DateTime<Utc>,
        event: QueuedEvent,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            direction,
            event_id: event_id.into(),
            correlation_id: correlation_id.into(),
            accepted_at,
            occurred_at,
            event,
            gate_key: crate::model::GateKey::default(),
        }
    }

    /// Who holds the event's subject on the trip `hop` (empty for a live delivery). Copies of
    /// one send share the hop; they are told apart by the retry function's gate, not here.
    pub fn lease_holder(&self, hop: &str) -> String {
        format!("{}@{hop}", self.id)
    }
}

/// What the attempts at an event did so far: the one piece of state an attempt writes, so that
/// a later attempt does only what is left.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The action plan of the last attempt (serialised `rules::PlannedAction`s), for the people
    /// who read a dead letter. Empty when the plan must be computed again (replay after a rule fix).
    #[serde(default)]
    pub plan: Vec<serde_json::Value>,
    /// Keys of the planned actions that already succeeded: a retry does only what is left.
    #[serde(default)]
    pub done: Vec<String>,
    /// Ids created by earlier attempts that later actions need (e.g. the incident a rule created).
    #[serde(default)]
    pub created: serde_json::Map<String, serde_json::Value>,
    /// The subject whose pending set lists this event while it is in the retry queue (later
    /// events of the subject wait behind it); `None` when it is not listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_in: Option<crate::store::Subject>,
    /// Keys of additive actions whose outcome is unknown (sent, and the answer lost): before one
    /// is sent again the executor looks whether it happened. A key also in `done` was accepted
    /// without proof: the service offers no way to look, and sending it again could repeat it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncertain: Vec<String>,
    /// The record this change follows was read for who created it, and it is not a record the
    /// bridge created ([`crate::handler::own_writes::link_by_reading`]): its later attempts need
    /// not read again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creator_read: bool,
}

impl Progress {
    pub fn is_done(&self, action_key: &str) -> bool {
        self.done.iter().any(|k| k == action_key)
    }

    pub fn mark_done(&mut self, action_key: impl Into<String>) {
        let key = action_key.into();
        if !self.is_done(&key) {
            self.done.push(key);
        }
    }

    pub fn is_uncertain(&self, action_key: &str) -> bool {
        self.uncertain.iter().any(|k| k == action_key)
    }

    pub fn mark_uncertain(&mut self, action_key: &str) {
        if !self.is_uncertain(action_key) {
            self.uncertain.push(action_key.to_string());
        }
    }

    pub fn clear_uncertain(&mut self, action_key: &str) {
        self.uncertain.retain(|k| k != action_key);
    }
}

/// The event's trips through the retry queue: how often it failed, how long it still waits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trip {
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
}

impl Trip {
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
}

/// Everything queued for retry or dead-lettered: the event, its progress and its trips, one
/// flat JSON object on the wire (the three parts are flattened, so envelopes written before
/// they were told apart read the same).
///
/// Built only when an event is settled; an attempt works on [`Accepted`] and [`Progress`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub accepted: Accepted,
    #[serde(flatten)]
    pub progress: Progress,
    #[serde(flatten)]
    pub trip: Trip,
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
    /// A fresh envelope for an accepted event (tests and the DLQ tooling; the functions build
    /// theirs with [`Envelope::of`] when they settle).
    pub fn new(
        direction: Direction,
        event_id: impl Into<String>,
        correlation_id: impl Into<String>,
        accepted_at: DateTime<Utc>,
        occurred_at: DateTime<Utc>,
        event: QueuedEvent,
    ) -> Self {
        let accepted = Accepted::new(direction, event_id, correlation_id, accepted_at, occurred_at, event);
        Self::of(accepted, Progress::default(), Trip::default())
    }

    pub fn of(accepted: Accepted, progress: Progress, trip: Trip) -> Self {
        Self { version: ENVELOPE_VERSION, accepted, progress, trip }
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

    /// The envelope's id (its event's, see [`Accepted::id`]).
    pub fn id(&self) -> &str {
        &self.accepted.id
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
        envelope.progress.mark_done("set_fields:Case:500xx");
        envelope.progress.mark_done("set_fields:Case:500xx");
        envelope.trip.record_failure(Failure {
            at: at("2026-11-22T10:00:02Z"),
            kind: "transient".into(),
            reason: "UNABLE_TO_LOCK_ROW".into(),
            rule: Some("ack-sets-working".into()),
        });
        let back = Envelope::from_json(&envelope.to_json()).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.progress.done.len(), 1, "an action is marked done once");
        assert_eq!(back.trip.attempts, 1);
        assert_eq!(back.trip.first_failure_at(), Some(at("2026-11-22T10:00:02Z")));
    }

    #[test]
    fn a_minimal_version_1_envelope_still_parses() {
        // What the first release wrote, before optional fields existed.
        let old = r#"{"version":1,"id":"e1","direction":"salesforce_to_pagerduty","event_id":"sf:Case:500:1",
            "correlation_id":"c","accepted_at":"2026-01-01T00:00:00Z","occurred_at":"2026-01-01T00:00:00Z",
            "event":{"kind":"salesforce_record","object":"Case","record_id":"500","operation":"insert","new":{"Id":"500"}}}"#;
        let envelope = Envelope::from_json(old).unwrap();
        assert_eq!(envelope.trip.attempts, 0);
        assert!(envelope.progress.plan.is_empty() && envelope.progress.done.is_empty());
    }

    #[test]
    fn an_envelope_written_before_its_parts_were_told_apart_reads_and_writes_the_same() {
        // Every field, as the flat envelope of the previous release wrote it: messages in the
        // retry queue and the DLQ outlive a deploy.
        let old = serde_json::json!({
            "version": 1, "id": "e1", "direction": "pagerduty_to_salesforce", "event_id": "E1",
            "correlation_id": "c", "accepted_at": "2026-01-01T00:00:00Z", "occurred_at": "2026-01-01T00:00:00Z",
            "event": {"kind": "pagerduty_webhook", "body": "{}", "webhook_id": "w"},
            "plan": [{"type": "add_case_comment"}], "done": ["a"], "created": {"incident": "P1"},
            "attempts": 2,
            "history": [{"at": "2026-01-01T00:00:01Z", "kind": "transient", "reason": "503", "rule": "r"}],
            "not_before": "2026-01-01T01:00:00Z", "dead_letter_reason": "why", "replays": 1,
            "hop": "h1", "gate_key": "pd:E1", "waits_in": {"kind": "incident", "id": "P1"}, "uncertain": ["b"]
        });
        let envelope = Envelope::from_json(&old.to_string()).unwrap();
        assert_eq!(envelope.id(), "e1");
        assert_eq!((envelope.accepted.gate_key.as_str(), envelope.trip.hop.as_str()), ("pd:E1", "h1"));
        assert_eq!(
            (envelope.progress.done.clone(), envelope.progress.uncertain.clone()),
            (vec!["a".into()], vec!["b".into()])
        );
        assert_eq!((envelope.trip.attempts, envelope.trip.replays), (2, 1));
        assert!(envelope.progress.waits_in.is_some() && envelope.trip.dead_letter_reason.is_some());
        let written: serde_json::Value = serde_json::from_str(&envelope.to_json()).unwrap();
        assert_eq!(written, old, "the same fields, under the same names");
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
