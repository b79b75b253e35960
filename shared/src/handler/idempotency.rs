//! Exactly-once gate around one event, on top of [`IdempotencyStore`] (Powertools semantics).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::store::{Claim, Completion, IdempotencyStore, StoreError};

/// What to do with an event after asking the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// First time: process it, then `finish` (or `abandon` on a failure that loses nothing).
    Proceed,
    /// Already processed; `result` is what the first run recorded.
    Duplicate { result: String },
    /// Another invocation holds it until `until`: ask the sender to come back later.
    Busy { until: DateTime<Utc> },
}

/// The gate. Keys are namespaced by the caller (`pd:<event id>`, `sf:<record>:<modstamp>`).
#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
}

/// If the function's deadline is unknown, hold the key this long.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl Idempotency {
    pub fn new(store: Arc<dyn IdempotencyStore>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self { store, clock, ttl }
    }

    fn expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(3))
    }

    /// Claims `key` until the function's `deadline` (the lease ends when the invocation must).
    pub async fn begin(&self, key: &str, deadline: Option<DateTime<Utc>>) -> Result<Gate, StoreError> {
        let now = self.clock.now();
        let lease = deadline.unwrap_or(now + chrono::Duration::from_std(DEFAULT_LEASE).expect("small"));
        Ok(match self.store.claim(key, now, lease, self.expiry(now)).await? {
            Claim::Acquired => Gate::Proceed,
            Claim::Completed { result } => Gate::Duplicate { result },
            Claim::InProgress { until } => Gate::Busy { until },
        })
    }

    /// Marks the event done with its outcome (applied, queued, dead-lettered...).
    pub async fn finish(&self, key: &str, result: &str) -> Result<(), StoreError> {
        self.store.complete(key, result, self.expiry(self.clock.now())).await
    }

    /// What `finish` writes, for a caller that writes it together with other items
    /// ([`crate::store::AuditLog::append_completing`]).
    pub fn completion(&self, key: &str, result: &str) -> Completion {
        Completion { key: key.to_string(), result: result.to_string(), expires_at: self.expiry(self.clock.now()) }
    }

    /// Lets a retry claim the key again (the event was not taken over by the queue).
    pub async fn abandon(&self, key: &str) -> Result<(), StoreError> {
        self.store.release(key).await
    }
}

/// The result a gate records for an event that lives on in a queue (queued, dead-lettered): it
/// names the envelope, so that a stray second envelope for the same event can tell it is not the
/// owner (see `handler::retry`).
pub fn owned_result(outcome: &str, envelope_id: &str) -> String {
    format!("{outcome} by envelope {envelope_id}")
}

/// The envelope a recorded result names, if any.
pub fn owner(result: &str) -> Option<&str> {
    result.split_once(" by envelope ").map(|(_, id)| id)
}

/// The outcome part of a recorded result.
pub fn outcome_of(result: &str) -> &str {
    result.split_once(" by envelope ").map_or(result, |(outcome, _)| outcome)
}

/// What the gate records once an event is settled.
pub fn settled_result(outcome: crate::model::Outcome, envelope_id: &str) -> String {
    use crate::model::Outcome;
    match outcome {
        Outcome::Queued | Outcome::DeadLettered => owned_result(outcome.as_str(), envelope_id),
        other => other.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn duplicate_delivery_is_recognised_after_finish() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let gate = Idempotency::new(Arc::new(MemoryStore::default()), clock.clone(), Duration::from_secs(3600));
        assert_eq!(gate.begin("pd:1", None).await.unwrap(), Gate::Proceed);
        assert!(matches!(gate.begin("pd:1", None).await.unwrap(), Gate::Busy { .. }));
        gate.finish("pd:1", "applied").await.unwrap();
        assert_eq!(gate.begin("pd:1", None).await.unwrap(), Gate::Duplicate { result: "applied".into() });
        clock.advance(chrono::Duration::hours(2));
        assert_eq!(gate.begin("pd:1", None).await.unwrap(), Gate::Proceed, "past the TTL it is new again");
    }

    #[tokio::test]
    async fn abandoned_event_can_be_taken_again() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let gate = Idempotency::new(Arc::new(MemoryStore::default()), clock, Duration::from_secs(3600));
        assert_eq!(gate.begin("sf:1", None).await.unwrap(), Gate::Proceed);
        gate.abandon("sf:1").await.unwrap();
        assert_eq!(gate.begin("sf:1", None).await.unwrap(), Gate::Proceed);
    }
}
