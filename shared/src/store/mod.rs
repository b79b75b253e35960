//! Persistence behind small capability traits: links, idempotency, audit, rules, breaker.
//!
//! Domain code takes `&dyn LinkStore` and friends, so it asks only for what it uses and
//! tests in memory. [`dynamodb`] implements every trait on one DynamoDB table;
//! [`memory`] implements them in process for tests and `make run`. [`contract`] is the
//! behaviour both must show, run against memory in unit tests and against moto's
//! DynamoDB in the integration tests.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{AuditEntry, Link};

pub use cursors::{CursorStore, Side};
pub use rate_budget::{BucketState, RateBudgetStore, Swap};

pub mod contract;
pub mod cursors;
pub mod memory;
pub mod rate_budget;

/// Why a store call failed. Read [`StoreError::is_transient`] to decide retry vs. DLQ.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable during {operation}: {message}; the event will be retried")]
    Unavailable { operation: &'static str, message: String },
    #[error("store throttled during {operation}: {message}; the event will be retried")]
    Throttled { operation: &'static str, message: String },
    #[error("stored item {key} is corrupt: {message}; inspect it with `syncctl audit` or delete it")]
    Corrupt { key: String, message: String },
    #[error(
        "store access denied or misconfigured during {operation}: {message}; check TABLE_NAME and the function's IAM policy"
    )]
    Config { operation: &'static str, message: String },
    #[error(
        "the store refused this event's item during {operation}: {message}; it will never be stored, so the event is dead-lettered"
    )]
    Refused { operation: &'static str, message: String },
}

impl StoreError {
    /// True when trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. } | StoreError::Throttled { .. })
    }

    /// True when this one event can never be stored (a key or an item the store refuses), while
    /// other events can: the event fails for good, not the store.
    pub fn is_permanent(&self) -> bool {
        matches!(self, StoreError::Refused { .. })
    }
}

/// The store's failures in the one classification: an outage is worth trying again, a
/// misconfiguration (table, policy) needs a person, an item the store refuses is this event's.
impl crate::class::Classify for StoreError {
    fn class(&self) -> crate::class::Class {
        use crate::class::Class;
        match self {
            StoreError::Unavailable { .. } | StoreError::Throttled { .. } => Class::Transient,
            StoreError::Config { .. } => Class::Auth,
            StoreError::Corrupt { .. } => Class::Permanent,
            StoreError::Refused { .. } => Class::BadInput,
        }
    }
}

/// What a watermark or an audit query is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Subject {
    Incident(String),
    Record(String),
}

impl Subject {
    /// Stable text form, `incident:ID` or `record:ID`, used in keys.
    pub fn key(&self) -> String {
        match self {
            Subject::Incident(id) => format!("incident:{id}"),
            Subject::Record(id) => format!("record:{id}"),
        }
    }
}

/// PagerDuty incident ↔ Salesforce record links, and the per-subject item that keeps events of
/// one incident or record in order: who is acting on it now (a lease), when each piece of its
/// state was last set (marks), and its events waiting in the retry queue.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Writes the link so that it is found from both sides. Writing it again changes nothing.
    async fn put_link(&self, link: &Link) -> Result<(), StoreError>;
    /// Every record linked to the incident, oldest link first.
    async fn records_for_incident(&self, incident_id: &str) -> Result<Vec<Link>, StoreError>;
    /// Every incident linked to the record, oldest link first.
    async fn incidents_for_record(&self, record_id: &str) -> Result<Vec<Link>, StoreError>;
    /// Takes the subject for `holder` until `until`, so that two events of one subject never act
    /// at the same time. Granted when nobody holds it, when the holder's time ran out (it died),
    /// or when `holder` holds it already.
    async fn lease(
        &self,
        subject: &Subject,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError>;
    /// Writes what a settled event did to the subject and, when `holder` is given, gives its
    /// lease back, in one request: marks, `opened`, a pending entry added or removed, the event's
    /// progress. The lease is given back only by its holder; the rest is written in any case.
    async fn update_subject(
        &self,
        subject: &Subject,
        holder: Option<&str>,
        update: &SubjectUpdate,
    ) -> Result<(), StoreError>;
    /// The subject's links (as [`LinkStore::records_for_incident`] or
    /// [`LinkStore::incidents_for_record`]), its marks, whether it opened, and its events waiting
    /// in the retry queue: every event needs them before it acts, and the DynamoDB store reads
    /// them in one Query.
    async fn subject_state(&self, subject: &Subject) -> Result<SubjectState, StoreError>;
    /// Notes that `event` of the subject waits in the retry queue, so that later events of the
    /// subject wait behind it. Noting it again changes nothing.
    async fn add_pending(&self, subject: &Subject, event: &PendingEvent) -> Result<(), StoreError> {
        self.update_subject(
            subject,
            None,
            &SubjectUpdate { pending: Some(PendingChange::List(event.clone())), ..SubjectUpdate::default() },
        )
        .await
    }
    /// The event left the retry queue (applied, skipped, stale or dead-lettered).
    async fn remove_pending(&self, subject: &Subject, event: &PendingEvent) -> Result<(), StoreError> {
        self.update_subject(
            subject,
            None,
            &SubjectUpdate { pending: Some(PendingChange::Unlist(event.clone())), ..SubjectUpdate::default() },
        )
        .await
    }
}

/// The answer to [`LinkStore::lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the subject until its `until`.
    Acquired,
    /// Another event holds it, until `until` when the store can tell.
    Held { until: Option<DateTime<Utc>> },
}

/// What a settled event writes to its subject's item (see [`LinkStore::update_subject`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectUpdate {
    /// Marks the event set (see `rules::Action::state_marks`), each set to `at`. The caller holds
    /// the lease and passes only marks that hold no later time (marks move forward only).
    pub marks: Vec<String>,
    pub at: Option<DateTime<Utc>>,
    /// The subject's opening event (incident.triggered, record insert) has settled.
    pub opened: bool,
    pub pending: Option<PendingChange>,
    /// The actions an event in flight has done so far, kept on the subject so that any later
    /// delivery or copy of the event does only what is left, even when the message that carried
    /// the progress is lost.
    pub progress: Option<Progress>,
    /// What the event saw of the record's fields (see [`Seen`]); the caller passes it only when
    /// it is newer than the one stored.
    pub seen: Option<Seen>,
    /// An incident's status update the event published (see [`StatusUpdate`]); the caller
    /// passes it only when it is newer than the one stored.
    pub status_update: Option<StatusUpdate>,
}

/// The latest status update published on an incident, as its webhook told it: PagerDuty's REST
/// API lists no status updates, so the agent console shows the last one the bridge received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub message: String,
    pub created_at: DateTime<Utc>,
}

/// What the bridge last saw of a record's fields that its rules compare with old values
/// (`changed`, `changed_to`, `changed_from`, `old.FIELD`), and the time of the change that showed
/// them: the old values of a change that comes without them (a reconcile run reads current
/// values only). Kept on the record's subject, small: only those fields, long values left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub at: DateTime<Utc>,
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Since when each field has held its value, as far as the bridge saw: a reconcile run
    /// tells by it whether a person set a field after a change it compares.
    #[serde(default)]
    pub since: std::collections::BTreeMap<String, DateTime<Utc>>,
    /// The newest change the bridge never saw between two it did (kept until a newer one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
    /// What the record held just before the oldest change the bridge saw of it (that change's
    /// old values, at its time): a change older still that comes late (the bridge's own writes
    /// come back in parallel posts, in any order) and shows other values reveals one between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<Before>,
    /// The bridge created the record and saw it from then on: a field it did not write held what
    /// Salesforce gave it, never a write of the bridge's before (those since are in its marks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
}

/// The fields a record held just before `at` (see [`Seen::first`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Before {
    pub at: DateTime<Utc>,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A change the bridge never saw between two it did: a later change's old values are not what
/// the earlier one showed (the Queueable gave up on the change between; or the bridge wrote the
/// fields itself, which a reconcile run tells by its marks). A run evaluates `from` → `to` as
/// that lost change, which happened after `after` and before `before`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub after: DateTime<Utc>,
    pub before: DateTime<Utc>,
    pub from: serde_json::Map<String, serde_json::Value>,
    pub to: serde_json::Map<String, serde_json::Value>,
    /// A field's own start, when later than `after` (two lost changes kept as one gap: each
    /// field's is known since its own; a write of the bridge between is not in the other's).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub starts: std::collections::BTreeMap<String, DateTime<Utc>>,
}

impl Gap {
    /// When the lost change of `field` happened after, at the earliest.
    pub fn start(&self, field: &str) -> DateTime<Utc> {
        self.starts.get(field).copied().unwrap_or(self.after).max(self.after)
    }

    /// Keeps a field of another lost change (an older one, from `start`) in this gap, unless the
    /// gap has the field already: the gap's start moves back, each field keeping its own.
    fn keep(&mut self, field: &str, from: serde_json::Value, to: serde_json::Value, start: DateTime<Utc>) {
        if self.from.contains_key(field) {
            return;
        }
        if start < self.after {
            for f in self.from.keys() {
                self.starts.entry(f.clone()).or_insert(self.after);
            }
            self.after = start;
        }
        if start > self.after {
            self.starts.insert(field.to_string(), start);
        }
        self.from.insert(field.to_string(), from);
        self.to.insert(field.to_string(), to);
    }
}

impl Seen {
    /// The longest value kept: a longer one (a description) is left out, its old value unknown.
    pub const MAX_VALUE: usize = 256;

    /// The `fields` of `record`, at `at`, each when it is short.
    pub fn of(at: DateTime<Utc>, record: &serde_json::Map<String, serde_json::Value>, fields: &[String]) -> Self {
        Self::after(None, None, at, record, fields)
    }

    /// As [`Seen::of`], for a change from `old` (when the change carries old values): a field
    /// that kept its value keeps the `since` of `previous`, or, seen for the first time, dates
    /// from before the change (an unknown time before it: the earliest).
    pub fn after(
        previous: Option<&Seen>,
        old: Option<&serde_json::Map<String, serde_json::Value>>,
        at: DateTime<Utc>,
        record: &serde_json::Map<String, serde_json::Value>,
        fields: &[String],
    ) -> Self {
        let first = match previous {
            Some(previous) => previous.first.clone(),
            None => old.map(|old| Before { at, fields: Self::short(old, fields) }),
        };
        let mut kept = Self::short(record, fields);
        // A change that does not carry a field (an Outbound Message carries the fields its
        // message lists, and no null one) says nothing of it: what was seen of it stays.
        for f in fields.iter().filter(|f| !record.contains_key(*f)) {
            if let Some(was) = previous.and_then(|p| p.fields.get(f)) {
                kept.insert(f.clone(), was.clone());
            }
        }
        let fields = kept;
        let since = fields
            .iter()
            .map(|(f, v)| {
                // Kept from what was seen, unless this change set the field (back) to it.
                let set_now =
                    old.and_then(|o| o.get(f)).is_some_and(|o| !crate::reconcile::repair::same_value(Some(o), v));
                let kept =
                    previous.filter(|p| p.fields.get(f) == Some(v) && !set_now).and_then(|p| p.since.get(f)).copied();
                let unchanged = old.and_then(|o| o.get(f)) == Some(v);
                let before = (previous.is_none() && unchanged).then_some(DateTime::<Utc>::MIN_UTC);
                (f.clone(), kept.or(before).unwrap_or(at))
            })
            .collect();
        let gap = previous
            .zip(old)
            .and_then(|(previous, old)| {
                let mut gap = Gap { after: previous.at, before: at, ..Gap::default() };
                for (f, was) in &previous.fields {
                    // Values compared as reconcile compares them (numbers as text, instants).
                    let differs = |then: &&serde_json::Value| !crate::reconcile::repair::same_value(Some(then), was);
                    if let Some(then) = old.get(f).filter(|then| differs(then) && fields.contains_key(f)) {
                        gap.from.insert(f.clone(), was.clone());
                        gap.to.insert(f.clone(), then.clone());
                    }
                }
                (!gap.from.is_empty()).then_some(gap)
            })
            .map(|gap| Self::with_kept(gap, previous))
            .or_else(|| previous.and_then(|p| p.gap.clone()));
        Self { at, fields, since, gap, first, created: previous.is_some_and(|p| p.created) }
    }

    /// What is kept after a change at `at`, older than every change the bridge saw of the record
    /// (it came late), from `old` to `record`: the fields it left other than the oldest seen
    /// change found them are a change between, never seen (a gap, kept with a newer one as
    /// [`Seen::with_kept`] keeps an older one). `None`: nothing to keep (not older than the
    /// oldest seen, or that one's old values unknown).
    pub fn before(
        &self,
        old: Option<&serde_json::Map<String, serde_json::Value>>,
        at: DateTime<Utc>,
        record: &serde_json::Map<String, serde_json::Value>,
        fields: &[String],
    ) -> Option<Self> {
        let first = self.first.as_ref().filter(|first| at < first.at)?;
        let mut lost = Gap { after: at, before: first.at, ..Gap::default() };
        for (f, then) in &first.fields {
            // Only a field no seen change set since: what the lost change left still held then.
            let untouched = self.since.get(f).is_none_or(|since| *since <= first.at);
            if let Some(was) = record.get(f).filter(|_| untouched && fields.contains(f))
                && !crate::reconcile::repair::same_value(Some(then), was)
            {
                lost.from.insert(f.clone(), was.clone());
                lost.to.insert(f.clone(), then.clone());
            }
        }
        let mut seen = Self { first: old.map(|old| Before { at, fields: Self::short(old, fields) }), ..self.clone() };
        if lost.from.is_empty() {
            return Some(seen);
        }
        for f in lost.from.keys() {
            let since = seen.since.entry(f.clone()).or_insert(first.at);
            *since = (*since).max(first.at);
        }
        seen.gap = Some(match seen.gap.take() {
            None => lost,
            Some(mut newer) => {
                for (f, from) in lost.from {
                    newer.keep(&f, from, lost.to[&f].clone(), lost.after);
                }
                newer
            }
        });
        Some(seen)
    }

    /// What is kept after a change at `at` that came late (older than what the bridge saw
    /// last), from `old` to `record`: a field it set to another value than the one the bridge
    /// saw last, which held that one since before `at` as far as it saw, changed again after
    /// it, unseen (a gap from the late change's value, after its second). `None`: nothing new.
    pub fn changed_after(
        &self,
        at: DateTime<Utc>,
        record: &serde_json::Map<String, serde_json::Value>,
        fields: &[String],
    ) -> Option<Self> {
        // Strictly after the late change's second: its own marks are at its time.
        let after = crate::reconcile::cursor::whole_second(at) + chrono::Duration::seconds(1);
        if after > self.at {
            return None;
        }
        let mut seen = self.clone();
        let mut changed = false;
        for (f, now) in &self.fields {
            let held_since_before = self.since.get(f).is_some_and(|since| *since <= at);
            if let Some(then) = record.get(f).filter(|_| held_since_before && fields.contains(f))
                && !crate::reconcile::repair::same_value(Some(then), now)
            {
                let gap = seen.gap.get_or_insert_with(|| Gap { after, before: self.at, ..Gap::default() });
                gap.keep(f, then.clone(), now.clone(), after);
                seen.since.insert(f.clone(), self.at);
                changed = true;
            }
        }
        changed.then_some(seen)
    }

    /// What is kept after a change at `at` that came late, inside the kept gap, from `old` to
    /// `record`. A gap field it set from the gap's start to the gap's end is no longer lost (the
    /// change the bridge never saw, delivered after all). One it set from the gap's start to
    /// another value splits the gap: the change never seen is the rest, from its value, after
    /// it (a write of the bridge before a person's change, their echoes in any order). A change
    /// that only shows the fields set (a later edit, an echo) changes nothing. `None`: nothing
    /// changes.
    pub fn delivered_late(
        &self,
        old: Option<&serde_json::Map<String, serde_json::Value>>,
        at: DateTime<Utc>,
        record: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Self> {
        use crate::reconcile::repair::same_value;
        let gap = self.gap.as_ref().filter(|g| g.after <= at && at <= g.before)?;
        let old = old?;
        let mut left = gap.clone();
        let mut changed = false;
        for (f, from) in &gap.from {
            let (Some(was), Some(now)) = (old.get(f), record.get(f)) else { continue };
            if !same_value(Some(was), from) || same_value(Some(now), from) || at < gap.start(f) {
                continue;
            }
            changed = true;
            if same_value(Some(now), &gap.to[f]) {
                left.from.remove(f);
                left.to.remove(f);
                left.starts.remove(f);
            } else {
                left.from.insert(f.clone(), now.clone());
                left.starts.insert(f.clone(), at);
            }
        }
        changed.then(|| Self { gap: (!left.from.is_empty()).then_some(left), ..self.clone() })
    }

    /// What is kept after a reconcile run repaired what it found in the second the bridge saw
    /// last (the gap this keeps, or a change in that second it never saw), from `old` to
    /// `record`: the gap is gone, and a field holds what the run read, but where the repair is
    /// the kept gap's own change (its values made up: what the lost change did, from the gap's
    /// start, before what the bridge saw last).
    pub fn repaired(
        &self,
        old: Option<&serde_json::Map<String, serde_json::Value>>,
        record: &serde_json::Map<String, serde_json::Value>,
        fields: &[String],
    ) -> Self {
        use crate::reconcile::repair::same_value;
        let made_up = |f: &String, v: &serde_json::Value| {
            let (Some(gap), Some(was)) = (self.gap.as_ref(), old.and_then(|o| o.get(f))) else { return false };
            gap.to.get(f).is_some_and(|to| same_value(Some(v), to))
                && gap.from.get(f).is_some_and(|from| same_value(Some(was), from))
                && !self.fields.get(f).is_some_and(|seen| same_value(Some(was), seen))
        };
        let mut now = self.fields.clone();
        for (f, v) in Self::short(record, fields) {
            if !made_up(&f, &v) {
                now.insert(f, v);
            }
        }
        Self { gap: None, ..Self::after(Some(self), None, self.at, &now, fields) }
    }

    /// The `fields` of `record` that are short enough to keep.
    fn short(
        record: &serde_json::Map<String, serde_json::Value>,
        fields: &[String],
    ) -> serde_json::Map<String, serde_json::Value> {
        fields
            .iter()
            .filter_map(|f| record.get(f).map(|v| (f, v)))
            .filter(|(_, v)| v.to_string().len() <= Self::MAX_VALUE)
            .map(|(f, v)| (f.clone(), v.clone()))
            .collect()
    }

    /// A new gap with the fields of the gap `previous` kept that still held its lost values when
    /// the new one formed: both lost changes stay to be compared (one gap, from the earlier start).
    fn with_kept(mut gap: Gap, previous: Option<&Seen>) -> Gap {
        let Some((previous, kept)) = previous.and_then(|p| p.gap.as_ref().map(|g| (p, g))) else { return gap };
        for (f, from) in &kept.from {
            if previous.fields.get(f) == kept.to.get(f) {
                gap.keep(f, from.clone(), kept.to[f].clone(), kept.start(f));
            }
        }
        gap
    }
}

/// A change to an event's progress on its subject.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The event is not finished: these action keys are done, added to those already kept
    /// (never fewer: a copy of the event that knew less, deferred before it read the subject,
    /// must not make the event forget a note it wrote). Nothing done writes nothing.
    Keep { event_id: String, done: Vec<String> },
    /// The event settled for good: forget its progress.
    Clear { event_id: String },
}

/// A change to the subject's pending set.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingChange {
    /// The event waits in the retry queue now.
    List(PendingEvent),
    /// It left the retry queue.
    Unlist(PendingEvent),
}

/// An event of a subject that waits in the retry queue, one entry per envelope (a stray copy
/// must not take a live envelope's entry away). Ordered by time, then event id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PendingEvent {
    pub occurred_at: DateTime<Utc>,
    pub event_id: String,
    pub envelope_id: String,
}

/// What an event needs to know about its incident or record before it acts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectState {
    /// Links to the other side, oldest first.
    pub links: Vec<Link>,
    /// When each piece of state was last set: the `occurred_at` of the newest event that set it.
    pub marks: std::collections::BTreeMap<String, DateTime<Utc>>,
    /// The subject's opening event has settled: a later event that finds no link need not wait for it.
    pub opened: bool,
    /// Its events waiting in the retry queue, oldest first.
    pub pending: Vec<PendingEvent>,
    /// What each unfinished event has done so far, by event id (see [`SubjectUpdate::progress`]).
    pub progress: std::collections::BTreeMap<String, Vec<String>>,
    /// A record's fields as the bridge last saw them (see [`Seen`]).
    pub seen: Option<Seen>,
    /// An incident's latest status update (see [`StatusUpdate`]).
    pub status_update: Option<StatusUpdate>,
}

impl SubjectState {
    /// The newest time any piece of state was set (for display).
    pub fn last_applied(&self) -> Option<DateTime<Utc>> {
        self.marks.values().max().copied()
    }
}

/// An idempotency key to mark COMPLETED, with the result later duplicates are handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub key: String,
    pub result: String,
    pub expires_at: DateTime<Utc>,
}

/// The answer to an idempotency claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller owns the key now and must `complete` or `release` it.
    Acquired,
    /// Already done; `result` is what the first run stored.
    Completed { result: String },
    /// Another invocation is working on it until `until`.
    InProgress { until: DateTime<Utc> },
}

/// Powertools-style idempotency: IN_PROGRESS with an expiry, COMPLETED with the result, TTL.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Conditional put of an IN_PROGRESS record. Succeeds when there is no record, when the
    /// record's TTL (`expires_at`) has passed, or when it is IN_PROGRESS past its
    /// `in_progress_until` (the previous owner ran out of time: take it over).
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;
    /// Conditional update of a COMPLETED record whose result is `owner` (the envelope that owns
    /// a queued event) to IN_PROGRESS until `in_progress_until`, keeping its TTL; an IN_PROGRESS
    /// one past its time is taken over. So two copies of one envelope (two hops after a lost
    /// send answer) take turns instead of acting at once. `InProgress`: another copy's turn (or
    /// the record vanished: ask again); `Completed`: the event settled otherwise meanwhile.
    async fn take_turn(
        &self,
        key: &str,
        owner: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;
    /// Marks the key COMPLETED with the result to hand to later duplicates.
    async fn complete(&self, key: &str, result: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Drops an IN_PROGRESS record after a failure, so that a retry can claim the key again.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
}

/// The audit trail: one entry per event the bridge accepted or refused to apply.
#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn append(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Appends `entry` and marks every key of `completed` COMPLETED (as
    /// [`IdempotencyStore::complete`] does): an event's last writes, in one request where the
    /// store allows it. On `Err` the caller cannot tell which writes landed; completing a key
    /// again is harmless.
    async fn append_completing(&self, entry: &AuditEntry, completed: &[Completion]) -> Result<(), StoreError>;
    /// Entries that name the subject, newest first, at most `limit`.
    async fn for_subject(&self, subject: &Subject, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Entries at or after `since`, newest first, at most `limit` (rejected payloads have no subject).
    async fn recent(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}

/// A stored, validated rules document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRules {
    pub version: u64,
    pub document: String,
    pub stored_at: DateTime<Utc>,
    pub stored_by: String,
}

/// Where the functions read the rules document from.
#[async_trait]
pub trait RulesStore: Send + Sync {
    async fn current_rules(&self) -> Result<Option<StoredRules>, StoreError>;
    /// Stores `document` as the next version and returns that version. Two concurrent pushes
    /// get two distinct versions; neither overwrites the other's.
    async fn put_rules(&self, document: &str, stored_by: &str, at: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// State of a circuit breaker around one downstream service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// A breaker's stored record. `version` is for compare-and-set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerRecord {
    /// `salesforce` or `pagerduty`.
    pub service: String,
    pub state: BreakerState,
    /// Consecutive failures counted while closed.
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub version: u64,
}

/// Shared breaker state, so that every concurrent Lambda sees the same outage.
#[async_trait]
pub trait BreakerStore: Send + Sync {
    async fn get_breaker(&self, service: &str) -> Result<Option<BreakerRecord>, StoreError>;
    /// Writes `record` (with `version` = `expected_version` + 1) only if the stored version is
    /// `expected_version` (`None`: no record yet). Returns `false` when another writer won.
    async fn put_breaker(&self, record: &BreakerRecord, expected_version: Option<u64>) -> Result<bool, StoreError>;
}

/// Every store a function needs, cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub links: Arc<dyn LinkStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub audit: Arc<dyn AuditLog>,
    pub rules: Arc<dyn RulesStore>,
    pub breakers: Arc<dyn BreakerStore>,
}

impl Stores {
    /// All five stores backed by one in-memory store (tests, `make run`).
    pub fn in_memory() -> Self {
        let mem = Arc::new(memory::MemoryStore::default());
        Self { links: mem.clone(), idempotency: mem.clone(), audit: mem.clone(), rules: mem.clone(), breakers: mem }
    }
}

#[cfg(test)]
mod seen_tests {
    use super::*;
    use serde_json::json;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_change_whose_old_values_are_not_what_the_bridge_saw_leaves_the_gap_between() {
        let fields = ["Priority".to_string(), "Status".to_string()];
        let t0: DateTime<Utc> = "2026-12-04T10:00:00Z".parse().unwrap();
        let t1 = t0 + chrono::Duration::minutes(5);
        let seen = Seen::of(t0, &map(json!({"Priority": "Sev3", "Status": "New"})), &fields);
        // Delivered: Status New -> Closed, its old Priority Sev1: the Sev1 escalation was lost.
        let old = map(json!({"Priority": "Sev1", "Status": "New"}));
        let after =
            Seen::after(Some(&seen), Some(&old), t1, &map(json!({"Priority": "Sev1", "Status": "Closed"})), &fields);
        let gap = after.gap.clone().expect("a gap");
        assert_eq!((gap.after, gap.before), (t0, t1));
        assert_eq!((&gap.from, &gap.to), (&map(json!({"Priority": "Sev3"})), &map(json!({"Priority": "Sev1"}))));
        // The next change follows on: the gap is kept until a newer one.
        let next = Seen::after(
            Some(&after),
            Some(&map(json!({"Priority": "Sev1", "Status": "Closed"}))),
            t1 + chrono::Duration::minutes(1),
            &map(json!({"Priority": "Sev2", "Status": "Closed"})),
            &fields,
        );
        assert_eq!(next.gap.as_ref(), Some(&gap));
        let round: Seen = serde_json::from_value(serde_json::to_value(&next).unwrap()).unwrap();
        assert_eq!(round, next, "kept as JSON (DynamoDB's seen attribute)");
        let none =
            Seen::after(Some(&seen), Some(&map(json!({"Priority": "Sev3", "Status": "New"}))), t1, &old, &fields);
        assert_eq!(none.gap, None, "old values as seen: nothing lost");
        // A second gap (the close lost too, seen in the next change's old values) keeps the first.
        let later = t1 + chrono::Duration::minutes(2);
        let closed = map(json!({"Priority": "Sev1", "Status": "Closed"}));
        let edited = Seen::after(Some(&seen), Some(&old), t1, &old, &fields);
        let both = Seen::after(Some(&edited), Some(&closed), later, &closed, &fields).gap.expect("a gap");
        assert_eq!(
            (both.after, &both.from, &both.to),
            (
                t0,
                &map(json!({"Priority": "Sev3", "Status": "New"})),
                &map(json!({"Priority": "Sev1", "Status": "Closed"}))
            )
        );
        // The same values in another form (a REST read's number as text, a date-time's
        // milliseconds): no gap.
        let fields = ["Amount".to_string(), "Due".to_string()];
        let seen = Seen::of(t0, &map(json!({"Amount": "5", "Due": "2026-12-04T10:00:05.000+0000"})), &fields);
        let old = map(json!({"Amount": 5, "Due": "2026-12-04T10:00:05.123+00:00"}));
        assert_eq!(Seen::after(Some(&seen), Some(&old), t1, &old, &fields).gap, None);
    }

    #[test]
    fn a_late_change_older_than_all_the_bridge_saw_shows_the_gap_after_it() {
        let fields = ["Priority".to_string(), "Status".to_string()];
        let t0: DateTime<Utc> = "2026-12-04T10:00:00Z".parse().unwrap();
        let (t1, t2) = (t0 + chrono::Duration::minutes(1), t0 + chrono::Duration::minutes(2));
        // First seen at t2: a write of the Description; the Case was Sev1 and New before it.
        let sev1 = map(json!({"Priority": "Sev1", "Status": "New"}));
        let seen = Seen::after(None, Some(&sev1), t2, &sev1, &fields);
        assert_eq!(seen.first, Some(Before { at: t2, fields: sev1.clone() }));
        // The write before it, at t1, comes late: it left Sev3. The Sev1 between was never seen.
        let sev3 = map(json!({"Priority": "Sev3", "Status": "New"}));
        let late = seen.before(Some(&sev3), t1, &sev3, &fields).expect("kept");
        let gap = late.gap.clone().expect("a gap");
        assert_eq!((gap.after, gap.before), (t1, t2));
        assert_eq!((&gap.from, &gap.to), (&map(json!({"Priority": "Sev3"})), &map(json!({"Priority": "Sev1"}))));
        assert_eq!((late.at, &late.fields), (t2, &sev1), "what the bridge saw last stays");
        assert_eq!(late.since["Priority"], t2, "Sev1 since the gap at the latest");
        assert_eq!(late.first, Some(Before { at: t1, fields: sev3.clone() }), "the oldest seen is the late one now");
        // Same values, or not older than the oldest seen: nothing new to know.
        assert_eq!(seen.before(Some(&sev1), t1, &sev1, &fields).and_then(|s| s.gap), None);
        assert_eq!(seen.before(Some(&sev3), t2, &sev3, &fields), None);
        // A field a seen change set after the oldest one is not compared: the later change's own
        // old values were seen.
        let closed = map(json!({"Priority": "Sev1", "Status": "Closed"}));
        let later = Seen::after(Some(&seen), Some(&sev1), t2 + chrono::Duration::minutes(1), &closed, &fields);
        let old_status = map(json!({"Priority": "Sev1", "Status": "Working"}));
        assert_eq!(later.before(Some(&old_status), t1, &old_status, &fields).and_then(|s| s.gap), None);
        // A newer gap keeps its fields and gains the older one's.
        let mut with_gap = seen.clone();
        let newer = Gap {
            after: t2,
            before: t2 + chrono::Duration::minutes(5),
            from: map(json!({"Status": "New"})),
            to: map(json!({"Status": "Closed"})),
            ..Gap::default()
        };
        with_gap.gap = Some(newer.clone());
        let both = with_gap.before(Some(&sev3), t1, &sev3, &fields).and_then(|s| s.gap).expect("a gap");
        assert_eq!((both.after, both.before), (t1, newer.before));
        assert_eq!(
            (&both.from, &both.to),
            (&map(json!({"Priority": "Sev3", "Status": "New"})), &map(json!({"Priority": "Sev1", "Status": "Closed"})))
        );
        let round: Seen = serde_json::from_value(serde_json::to_value(&late).unwrap()).unwrap();
        assert_eq!(round, late, "kept as JSON (DynamoDB's seen attribute)");
    }

    #[test]
    fn two_lost_changes_kept_as_one_gap_keep_their_own_starts() {
        let t0: DateTime<Utc> = "2026-12-04T10:00:00Z".parse().unwrap();
        let (t1, t2) = (t0 + chrono::Duration::minutes(1), t0 + chrono::Duration::minutes(2));
        let mut gap = Gap {
            after: t1,
            before: t2,
            from: map(json!({"Status": "Working"})),
            to: map(json!({"Status": "Closed"})),
            ..Gap::default()
        };
        gap.keep("Priority", json!("Sev3"), json!("Sev2"), t0);
        assert_eq!((gap.after, gap.start("Priority"), gap.start("Status")), (t0, t0, t1));
        gap.keep("Status", json!("New"), json!("Working"), t0);
        assert_eq!(gap.from["Status"], json!("Working"), "the newer lost change of a field stays");
        let round: Gap = serde_json::from_value(serde_json::to_value(&gap).unwrap()).unwrap();
        assert_eq!(round, gap);
    }

    #[test]
    fn a_late_change_whose_value_was_replaced_unseen_shows_a_gap_after_it() {
        let fields = ["Priority".to_string(), "Status".to_string()];
        let t0: DateTime<Utc> = "2026-12-04T10:00:00Z".parse().unwrap();
        let (t1, t2) = (t0 + chrono::Duration::minutes(1), t0 + chrono::Duration::minutes(2));
        // Seen at t2: High since t0 (no change the bridge saw set it since).
        let high = map(json!({"Priority": "High", "Status": "Closed"}));
        let seen =
            Seen { at: t2, fields: high.clone(), since: [("Priority".to_string(), t0)].into(), ..Seen::default() };
        // A late escalation at t1 left Sev1: something lowered it again after t1, unseen.
        let late = seen.changed_after(t1, &map(json!({"Priority": "Sev1", "Status": "New"})), &fields).expect("a gap");
        let gap = late.gap.expect("a gap");
        assert_eq!((&gap.from, &gap.to), (&map(json!({"Priority": "Sev1"})), &map(json!({"Priority": "High"}))));
        assert_eq!((gap.after, gap.before), (t1 + chrono::Duration::seconds(1), t2), "strictly after its second");
        // Its value as seen, or a field a seen change set after it: nothing new.
        assert_eq!(seen.changed_after(t1, &high, &fields), None);
        let set_later = Seen { since: [("Priority".to_string(), t2)].into(), ..seen.clone() };
        assert_eq!(set_later.changed_after(t1, &map(json!({"Priority": "Sev1"})), &fields), None);
        // A late delivery closes a gap only for what it set from the gap's start to its end.
        let kept = Seen { gap: Some(gap.clone()), ..seen.clone() };
        let from_sev1 = map(json!({"Priority": "Sev1"}));
        let lowered = kept.delivered_late(Some(&from_sev1), t1 + chrono::Duration::seconds(30), &high).expect("closed");
        assert_eq!(lowered.gap, None);
        assert_eq!(kept.delivered_late(Some(&high), t1 + chrono::Duration::seconds(30), &high), None, "only shows it");
    }
}
