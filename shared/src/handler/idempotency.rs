//! Exactly-once gate around one event, on top of [`IdempotencyStore`] (Powertools semantics).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::model::{GateKey, Outcome};
use crate::store::{Claim, Completion, IdempotencyStore, StoreError};

/// What to do with an event after asking the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// First time: process it, then `finish` (or `abandon` on a failure that loses nothing).
    Proceed,
    /// Already processed; `first` is how the first run settled it.
    Duplicate { first: Settlement },
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
    pub async fn begin(&self, key: &GateKey, deadline: Option<DateTime<Utc>>) -> Result<Gate, StoreError> {
        let now = self.clock.now();
        let lease = deadline.unwrap_or(now + chrono::Duration::from_std(DEFAULT_LEASE).expect("small"));
        Ok(match self.store.claim(key.as_str(), now, lease, self.expiry(now)).await? {
            Claim::Acquired => Gate::Proceed,
            Claim::Completed { result } => Gate::Duplicate { first: Settlement::from_record(&result) },
            Claim::InProgress { until } => Gate::Busy { until },
        })
    }

    /// An envelope that `owner` names takes its event's turn until `deadline` (see
    /// [`IdempotencyStore::take_turn`]): `Proceed` it is this copy's turn; `Busy` another copy
    /// acts now; `Duplicate` the event settled otherwise meanwhile. Give it back with
    /// [`Self::finish`] (`owner` again when this copy did not settle it).
    pub async fn take_turn(
        &self,
        key: &GateKey,
        owner: &Settlement,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Gate, StoreError> {
        let now = self.clock.now();
        let lease = deadline.unwrap_or(now + chrono::Duration::from_std(DEFAULT_LEASE).expect("small"));
        Ok(match self.store.take_turn(key.as_str(), &owner.to_record(), now, lease).await? {
            Claim::Acquired => Gate::Proceed,
            Claim::Completed { result } => Gate::Duplicate { first: Settlement::from_record(&result) },
            Claim::InProgress { until } => Gate::Busy { until },
        })
    }

    /// Marks the event done with how it settled (applied, queued, dead-lettered...).
    pub async fn finish(&self, key: &GateKey, settled: &Settlement) -> Result<(), StoreError> {
        self.store.complete(key.as_str(), &settled.to_record(), self.expiry(self.clock.now())).await
    }

    /// What `finish` writes, for a caller that writes it together with other items
    /// ([`crate::store::AuditLog::append_completing`]).
    pub fn completion(&self, key: &GateKey, settled: &Settlement) -> Completion {
        Completion {
            key: key.as_str().to_string(),
            result: settled.to_record(),
            expires_at: self.expiry(self.clock.now()),
        }
    }

    /// Lets a retry claim the key again (the event was not taken over by the queue).
    pub async fn abandon(&self, key: &GateKey) -> Result<(), StoreError> {
        self.store.release(key.as_str()).await
    }
}

/// How an event settled, as its gate records it: the outcome and, while the event lives on in
/// a queue (queued, dead-lettered), the envelope that owns it, so that a stray second envelope
/// for the same event can tell it is not the owner (see `handler::retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// An [`Outcome`]'s name (kept as text: a record written by another build may name one this
    /// build does not know).
    pub outcome: String,
    pub owner: Option<String>,
}

/// Joins the outcome and the owner in the stored text; unchanged since the first release, so
/// records written by older builds read the same.
const OWNED_BY: &str = " by envelope ";

impl Settlement {
    /// How an event that ended in `outcome` is recorded, its envelope being `envelope_id`.
    pub fn of(outcome: Outcome, envelope_id: &str) -> Self {
        let owned = matches!(outcome, Outcome::Queued | Outcome::DeadLettered);
        Self { outcome: outcome.as_str().to_string(), owner: owned.then(|| envelope_id.to_string()) }
    }

    /// An outcome no envelope lives on from (applied, skipped, duplicate...).
    pub fn plain(outcome: Outcome) -> Self {
        Self { outcome: outcome.as_str().to_string(), owner: None }
    }

    pub fn is_owned_by(&self, envelope_id: &str) -> bool {
        self.owner.as_deref() == Some(envelope_id)
    }

    /// The text the idempotency store keeps.
    pub fn to_record(&self) -> String {
        match &self.owner {
            Some(owner) => format!("{}{OWNED_BY}{owner}", self.outcome),
            None => self.outcome.clone(),
        }
    }

    /// Reads what [`Settlement::to_record`] wrote: the one place the stored text is taken apart.
    pub fn from_record(text: &str) -> Self {
        match text.split_once(OWNED_BY) {
            Some((outcome, owner)) => Self { outcome: outcome.to_string(), owner: Some(owner.to_string()) },
            None => Self { outcome: text.to_string(), owner: None },
        }
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
        assert_eq!(gate.begin(&GateKey::webhook("1"), None).await.unwrap(), Gate::Proceed);
        assert!(matches!(gate.begin(&GateKey::webhook("1"), None).await.unwrap(), Gate::Busy { .. }));
        gate.finish(&GateKey::webhook("1"), &Settlement::plain(Outcome::Applied)).await.unwrap();
        assert_eq!(
            gate.begin(&GateKey::webhook("1"), None).await.unwrap(),
            Gate::Duplicate { first: Settlement::plain(Outcome::Applied) }
        );
        clock.advance(chrono::Duration::hours(2));
        assert_eq!(
            gate.begin(&GateKey::webhook("1"), None).await.unwrap(),
            Gate::Proceed,
            "past the TTL it is new again"
        );
    }

    #[tokio::test]
    async fn abandoned_event_can_be_taken_again() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let gate = Idempotency::new(Arc::new(MemoryStore::default()), clock, Duration::from_secs(3600));
        assert_eq!(gate.begin(&GateKey::event("sf:1"), None).await.unwrap(), Gate::Proceed);
        gate.abandon(&GateKey::event("sf:1")).await.unwrap();
        assert_eq!(gate.begin(&GateKey::event("sf:1"), None).await.unwrap(), Gate::Proceed);
    }

    #[test]
    fn a_settlement_reads_back_as_written_and_as_older_builds_wrote_it() {
        let queued = Settlement::of(Outcome::Queued, "env-1");
        assert_eq!(queued.to_record(), "queued by envelope env-1", "the stored form older builds read");
        assert_eq!(Settlement::from_record(&queued.to_record()), queued);
        assert!(queued.is_owned_by("env-1") && !queued.is_owned_by("env-2"));
        let applied = Settlement::of(Outcome::Applied, "env-1");
        assert_eq!(
            (applied.to_record().as_str(), applied.owner),
            ("applied", None),
            "an applied event lives on nowhere"
        );
        let dead = Settlement::from_record("dead_lettered by envelope e-9");
        assert_eq!((dead.outcome.as_str(), dead.owner.as_deref()), ("dead_lettered", Some("e-9")));
        assert_eq!(Settlement::from_record("some_future_outcome").outcome, "some_future_outcome");
    }
}
