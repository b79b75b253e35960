//! What happens to an event after one attempt: audited, queued for retry with backoff, or
//! dead-lettered with its history. Shared by both directions and the retry function, so that
//! "never lost, never applied twice" is decided in one place.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::class::Class;
use crate::clock::Clock;
use crate::handler::idempotency::{Idempotency, Settlement};
use crate::model::{ActionRecord, AuditEntry, GateKey, Outcome};
use crate::retry::backoff::{Backoff, sqs_hop};
use crate::retry::envelope::{Accepted, Envelope, Failure};
use crate::retry::queue::{Queue, QueueError};
use crate::store::{AuditLog, LinkStore, PendingChange, PendingEvent, Progress, Subject, SubjectUpdate};
use crate::telemetry::metrics;

/// The names of the rules that ran for an evaluation (for the audit trail and metrics).
pub fn matched_rules(evaluation: &crate::rules::Evaluation) -> Vec<String> {
    evaluation.explanation.rules.iter().filter(|r| r.ran).map(|r| r.rule.to_string()).collect()
}

/// An attempt that failed on the store: transient errors retry; configuration errors also retry
/// (a fixed IAM policy or table name makes them pass) but are alarmed on; an item the store
/// refuses fails the event for good.
pub fn store_failure(err: crate::store::StoreError) -> Attempt {
    Attempt::Failed {
        kind: if err.is_transient() {
            FailureKind::Transient
        } else if err.is_permanent() {
            FailureKind::Permanent
        } else {
            FailureKind::Auth
        },
        reason: err.to_string(),
        rule: None,
        rules: vec![],
        actions: vec![],
        api_calls: 0,
    }
}

/// How an error should be treated, read off the error type, never off its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Try again later: 5xx, timeouts, lock contention, rate limits.
    Transient,
    /// Will fail the same way again until a person changes something: validation, missing fields.
    Permanent,
    /// Credentials or permissions: retried (a fixed secret makes them pass), and alarmed on.
    Auth,
}

/// The one place a failure's class becomes a retry decision: content the other side refused
/// will be refused again, so it is dead-lettered like any permanent failure.
impl From<Class> for FailureKind {
    fn from(class: Class) -> Self {
        match class {
            Class::Transient => FailureKind::Transient,
            Class::Auth => FailureKind::Auth,
            Class::Permanent | Class::BadInput => FailureKind::Permanent,
        }
    }
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
            FailureKind::Auth => "auth",
        }
    }
}

/// The result of one attempt at an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Every planned action succeeded (or there was nothing left to do).
    Applied { rules: Vec<String>, actions: Vec<ActionRecord>, api_calls: u32 },
    /// Authentic, but nothing to do.
    Skipped { reason: String, rules: Vec<String> },
    /// Older than what was already applied to the incident or record.
    Stale { reason: String },
    /// Not tried now (breaker open, too little time left): queue it without counting a failure.
    Deferred { reason: String, until: Option<DateTime<Utc>>, actions: Vec<ActionRecord>, api_calls: u32 },
    /// Tried and failed.
    Failed {
        kind: FailureKind,
        reason: String,
        rule: Option<String>,
        rules: Vec<String>,
        actions: Vec<ActionRecord>,
        api_calls: u32,
    },
}

/// Limits of the retry policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Failed attempts after which an event is dead-lettered.
    pub max_attempts: u32,
    /// An event still failing this long after it was accepted is dead-lettered.
    pub max_age: Duration,
    pub backoff: Backoff,
    /// How long a deferred event waits before it looks again: behind another event of its
    /// subject (running or queued), or for its subject's opening event. Not a failure: no backoff.
    pub wait_step: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_age: Duration::from_secs(24 * 3600),
            backoff: Backoff::default(),
            wait_step: Duration::from_secs(15),
        }
    }
}

/// The incidents and records an attempt was about: the audit entry is filed under each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subjects {
    pub incidents: Vec<String>,
    pub records: Vec<String>,
    /// The subject whose order the event keeps: while it waits in the retry queue, later events
    /// of that subject wait behind it (see [`crate::handler::steps::wait_behind`]).
    pub order: Option<Subject>,
    /// The lease this attempt holds on `order` (see [`crate::handler::steps::take_subject`]):
    /// given back when the event settles.
    pub holder: Option<String>,
    /// The pieces of state the event set (see [`crate::rules::Action::state_marks`]).
    pub marks: Vec<String>,
    /// The event opens its subject (incident.triggered, record insert).
    pub opening: bool,
    /// What a record change showed of the fields its rules compare with old values, to keep on
    /// its subject (see [`crate::store::Seen`]); `None`: nothing newer to keep.
    pub seen: Option<crate::store::Seen>,
    /// An incident's status update to keep on its subject; `None`: nothing newer.
    pub status_update: Option<crate::store::StatusUpdate>,
}

impl Subjects {
    pub fn new(incidents: Vec<String>, records: Vec<String>) -> Self {
        Self { incidents, records, ..Self::default() }
    }

    /// Adds the two ends of links the attempt created.
    pub fn add_links(&mut self, links: &[crate::model::Link]) {
        for link in links {
            if !self.incidents.iter().any(|i| i == link.incident_id.as_str()) {
                self.incidents.push(link.incident_id.to_string());
            }
            // Each form an id came in (the audit entry is filed under each, so either finds it).
            if !self.records.iter().any(|r| r == link.record.id.as_str()) {
                self.records.push(link.record.id.to_string());
            }
        }
    }
}

/// The two queues an attempt can end in.
#[derive(Clone)]
pub struct Queues {
    pub retry: Arc<dyn Queue>,
    pub dlq: Arc<dyn Queue>,
}

/// What settling an event uses, and nothing else: borrowed from the one copy of each in the
/// context ([`crate::handler::context::Context::dispatch`]).
#[derive(Clone, Copy)]
pub struct Dispatch<'a> {
    pub queues: &'a Queues,
    pub audit: &'a dyn AuditLog,
    pub clock: &'a dyn Clock,
    pub policy: &'a RetryPolicy,
    /// Marks the event's idempotency keys complete in the same write as its audit entry.
    pub idempotency: &'a Idempotency,
    /// Lists queued events in their subject's pending set.
    pub links: &'a dyn LinkStore,
}

/// Where the event ended up, for the reply and the idempotency record.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub outcome: Outcome,
    pub audit: AuditEntry,
}

impl Dispatch<'_> {
    /// Records the attempt, moves the envelope on, and marks `keys` (the event's idempotency
    /// keys) complete with where it ended up. An `Err` means the event is NOT safe: the caller
    /// must not acknowledge it and must release `keys` (the sender or SQS will deliver it again).
    pub async fn settle(
        &self,
        mut envelope: Envelope,
        attempt: Attempt,
        subjects: Subjects,
        started: DateTime<Utc>,
        keys: &[&GateKey],
    ) -> Result<Settled, QueueError> {
        let now = self.clock.now();
        let mut entry = AuditEntry::new(
            now,
            envelope.accepted.direction,
            &envelope.accepted.correlation_id,
            &envelope.accepted.event_id,
            Outcome::Applied,
        );
        let on_subject = SubjectWrite::of(&subjects, &envelope);
        (entry.incident_ids, entry.record_ids) = (subjects.incidents, subjects.records);
        let outcome = match attempt {
            Attempt::Applied { rules, actions, api_calls } => {
                entry.rules_matched = rules;
                entry.actions = actions;
                entry.api_calls = api_calls;
                metrics::event_accepted();
                Outcome::Applied
            }
            Attempt::Skipped { reason, rules } => {
                entry.reason = Some(reason);
                entry.rules_matched = rules;
                metrics::event_skipped();
                Outcome::Skipped
            }
            Attempt::Stale { reason } => {
                entry.reason = Some(reason);
                metrics::event_stale();
                Outcome::Stale
            }
            Attempt::Deferred { reason, until, actions, api_calls } => {
                entry.actions = actions;
                entry.api_calls = api_calls;
                if self.too_old(&envelope, now) {
                    // A deferral that never clears (a lease or an entry that is never given back)
                    // must not hold the event, and the events behind it, for ever.
                    let why = format!("still deferred after the maximum age of {:?}: {reason}", self.policy.max_age);
                    self.dead_letter(&mut envelope, &mut entry, why).await?;
                    Outcome::DeadLettered
                } else {
                    entry.reason = Some(reason);
                    let wait = until.map(|u| (u - now).to_std().unwrap_or_default()).unwrap_or(Duration::from_secs(30));
                    self.queue_in_order(&mut envelope, &on_subject, wait).await?;
                    Outcome::Queued
                }
            }
            Attempt::Failed { kind, reason, rule, rules, actions, api_calls } => {
                entry.rules_matched = rules;
                entry.actions = actions;
                entry.api_calls = api_calls;
                envelope.trip.record_failure(Failure {
                    at: now,
                    kind: kind.as_str().into(),
                    reason: reason.clone(),
                    rule,
                });
                let too_old = self.too_old(&envelope, now);
                let exhausted = envelope.trip.attempts >= self.policy.max_attempts;
                if kind == FailureKind::Permanent || too_old || exhausted {
                    let why = if kind == FailureKind::Permanent {
                        format!("permanent error: {reason}")
                    } else if too_old {
                        format!("still failing after the maximum age of {:?}: {reason}", self.policy.max_age)
                    } else {
                        format!("still failing after {} attempts: {reason}", envelope.trip.attempts)
                    };
                    self.dead_letter(&mut envelope, &mut entry, why).await?;
                    Outcome::DeadLettered
                } else {
                    entry.reason =
                        Some(format!("{} failure, attempt {}: {reason}", kind.as_str(), envelope.trip.attempts));
                    let wait = self.policy.backoff.delay(envelope.trip.attempts, &mut rand::rng());
                    self.queue_in_order(&mut envelope, &on_subject, wait).await?;
                    Outcome::Queued
                }
            }
        };
        if outcome != Outcome::Queued {
            self.settle_subject(&envelope, &on_subject).await;
        }
        entry.outcome = outcome;
        tracing::info!(event_id = %entry.event_id, outcome = outcome.as_str(), reason = entry.reason.as_deref().unwrap_or(""),
            attempts = envelope.trip.attempts, "event settled");
        entry.duration_ms = (self.clock.now() - started).num_milliseconds().max(0) as u64;
        let result = Settlement::of(outcome, &envelope.accepted.id);
        let mut keys = keys.to_vec();
        keys.dedup();
        let completed: Vec<_> = keys.iter().map(|key| self.idempotency.completion(key, &result)).collect();
        if let Err(err) = self.audit.append_completing(&entry, &completed).await {
            // The event itself is safe (applied or queued); a lost audit line must not redo it.
            tracing::error!(error = %err, event_id = %entry.event_id, "could not write the audit entry");
            metrics::error();
            for key in keys {
                if let Err(err) = self.idempotency.finish(key, &result).await {
                    // A redelivery is caught by the marks, the progress on its subject and idempotent writes.
                    tracing::warn!(error = %err, key = %key, "could not mark the event complete");
                }
            }
        }
        Ok(Settled { outcome, audit: entry })
    }

    fn too_old(&self, envelope: &Envelope, now: DateTime<Utc>) -> bool {
        (now - envelope.accepted.accepted_at).to_std().unwrap_or_default() >= self.policy.max_age
    }

    /// Sends the envelope to the DLQ with `why`, recorded in it and in the audit entry.
    async fn dead_letter(
        &self,
        envelope: &mut Envelope,
        entry: &mut AuditEntry,
        why: String,
    ) -> Result<(), QueueError> {
        entry.reason = Some(why.clone());
        envelope.trip.dead_letter_reason = Some(why);
        self.queues.dlq.send(&envelope.to_json(), Duration::ZERO).await?;
        metrics::dlq_send();
        tracing::error!(event_id = %envelope.accepted.event_id, reason = entry.reason.as_deref().unwrap_or(""),
            "event dead-lettered: the events of its subject behind it go on without it");
        Ok(())
    }

    /// Queues the envelope. Its subject is written first, in one request: the event listed in
    /// the pending set (so that later events of the subject wait behind it) and what it did so
    /// far (so that any later delivery of it does only what is left). A failed listing costs the
    /// order, never the event: it is queued all the same. The lease is given back after the
    /// send, with what the change showed of its record (`seen`) only when the send went through:
    /// a refused delivery was not accepted, and a reconcile run must not take it for delivered.
    async fn queue_in_order(
        &self,
        envelope: &mut Envelope,
        on_subject: &SubjectWrite,
        wait: Duration,
    ) -> Result<(), QueueError> {
        let mut listed_now = false;
        if let Some(subject) = &on_subject.subject {
            let list =
                envelope.progress.waits_in.is_none().then(|| PendingChange::List(pending_event(&envelope.accepted)));
            let update = SubjectUpdate {
                pending: list.clone(),
                progress: Some(Progress::Keep {
                    event_id: envelope.accepted.event_id.clone(),
                    done: crate::handler::steps::progress_keys(&envelope.progress),
                }),
                seen: None,
                ..on_subject.update.clone()
            };
            match self.update_subject(subject, None, &update).await {
                Ok(()) if list.is_some() => (envelope.progress.waits_in, listed_now) = (Some(subject.clone()), true),
                Ok(()) => {}
                Err(err) => tracing::warn!(error = %err, subject = %subject.key(),
                    "could not list the queued event: later events of its subject will not wait for it"),
            }
        }
        let sent = self.enqueue(envelope, wait).await;
        if sent.is_err() && listed_now {
            // The sender delivers the event again (and lists it again if it is queued again): do
            // not hold its subject up meanwhile. A retried envelope stays listed: SQS keeps it.
            self.unlist(envelope).await;
        }
        if let Some(subject) = &on_subject.subject {
            let seen = if sent.is_ok() { on_subject.update.seen.clone() } else { None };
            if (seen.is_some() || on_subject.holder.is_some())
                && let Err(err) = self
                    .update_subject(
                        subject,
                        on_subject.holder.as_deref(),
                        &SubjectUpdate { seen, ..Default::default() },
                    )
                    .await
            {
                tracing::warn!(error = %err, subject = %subject.key(),
                    "could not give the subject's lease back; it runs out by itself");
            }
        }
        sent
    }

    /// Writes what a settled event did to its subject and gives the lease back: its marks,
    /// whether it opened the subject, its entry out of the pending set, its progress forgotten.
    async fn settle_subject(&self, envelope: &Envelope, on_subject: &SubjectWrite) {
        let Some(subject) = on_subject.subject.as_ref().or(envelope.progress.waits_in.as_ref()) else { return };
        let update = SubjectUpdate {
            opened: on_subject.opening,
            pending: envelope
                .progress
                .waits_in
                .as_ref()
                .map(|_| PendingChange::Unlist(pending_event(&envelope.accepted))),
            progress: Some(Progress::Clear { event_id: envelope.accepted.event_id.clone() }),
            ..on_subject.update.clone()
        };
        if let Err(err) = self.update_subject(subject, on_subject.holder.as_deref(), &update).await {
            tracing::warn!(error = %err, subject = %subject.key(),
                "could not record the settled event on its subject; its lease runs out by itself and later events ignore its pending entry after two days");
        }
    }

    /// Writes to the subject, once more after a failure: a lease left behind holds the subject's
    /// other events up until it runs out.
    async fn update_subject(
        &self,
        subject: &Subject,
        holder: Option<&str>,
        update: &SubjectUpdate,
    ) -> Result<(), crate::store::StoreError> {
        match self.links.update_subject(subject, holder, update).await {
            Err(err) if err.is_transient() => {
                tracing::warn!(error = %err, subject = %subject.key(), "writing the subject failed: once more");
                self.links.update_subject(subject, holder, update).await
            }
            result => result,
        }
    }

    /// Takes the envelope's entry out of its subject's pending set (it left the retry queue).
    pub async fn unlist(&self, envelope: &Envelope) {
        if let Some(subject) = &envelope.progress.waits_in
            && let Err(err) = self.links.remove_pending(subject, &pending_event(&envelope.accepted)).await
        {
            tracing::warn!(error = %err, subject = %subject.key(),
                "could not take the event out of its subject's pending set; later events ignore it after two days");
        }
    }

    /// Puts the envelope on the retry queue to be tried after `wait` (split into 15-minute hops).
    /// A failed send is tried once more with the same hop: when the first one stored the message
    /// and lost the answer, the retry function handles one of the two copies.
    pub async fn enqueue(&self, envelope: &mut Envelope, wait: Duration) -> Result<(), QueueError> {
        envelope.trip.hop = uuid::Uuid::new_v4().to_string();
        let (now, rest) = sqs_hop(wait);
        envelope.trip.not_before =
            (!rest.is_zero()).then(|| self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default());
        let body = envelope.to_json();
        if let Err(err) = self.queues.retry.send(&body, now).await {
            tracing::warn!(error = %err, envelope = %envelope.accepted.id, "retry-queue send failed: sending the same hop again");
            self.queues.retry.send(&body, now).await?;
        }
        metrics::retry_enqueued();
        Ok(())
    }
}

/// What settling writes on the event's subject, gathered from the attempt.
#[derive(Debug, Clone, Default)]
struct SubjectWrite {
    subject: Option<Subject>,
    holder: Option<String>,
    opening: bool,
    update: SubjectUpdate,
}

impl SubjectWrite {
    fn of(subjects: &Subjects, envelope: &Envelope) -> Self {
        Self {
            subject: subjects.order.clone(),
            holder: subjects.holder.clone(),
            opening: subjects.opening,
            update: SubjectUpdate {
                marks: subjects.marks.clone(),
                at: Some(envelope.accepted.occurred_at),
                seen: subjects.seen.clone(),
                status_update: subjects.status_update.clone(),
                ..SubjectUpdate::default()
            },
        }
    }
}

/// The event's entry in its subject's pending set.
pub fn pending_event(accepted: &Accepted) -> PendingEvent {
    use chrono::SubsecRound;
    PendingEvent {
        // As the stores keep it (milliseconds), so that an entry read back equals the one written.
        occurred_at: accepted.occurred_at.trunc_subsecs(3),
        event_id: accepted.event_id.clone(),
        envelope_id: accepted.id.clone(),
    }
}
