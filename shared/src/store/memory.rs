//! Every store trait in process memory: for unit tests and the local demo (`make run`).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    AuditLog, BreakerRecord, BreakerStore, Claim, Completion, IdempotencyStore, Lease, LinkStore, PendingChange,
    PendingEvent, Progress, RulesStore, StoreError, StoredRules, Subject, SubjectState, SubjectUpdate,
};
use crate::model::{AuditEntry, Link};

#[derive(Debug, Clone)]
enum IdemState {
    InProgress { until: DateTime<Utc> },
    Completed { result: String },
}

#[derive(Debug, Clone)]
struct IdemRecord {
    state: IdemState,
    expires_at: DateTime<Utc>,
}

/// A subject's item: what the DynamoDB store keeps on its `WATERMARK` item.
#[derive(Debug, Default)]
struct SubjectItem {
    marks: std::collections::BTreeMap<String, DateTime<Utc>>,
    opened: bool,
    pending: std::collections::BTreeSet<PendingEvent>,
    lease: Option<(String, DateTime<Utc>)>,
    progress: std::collections::BTreeMap<String, Vec<String>>,
    seen: Option<crate::store::Seen>,
    status_update: Option<crate::store::StatusUpdate>,
}

#[derive(Default)]
struct Inner {
    /// Every link once, in the order written.
    links: Vec<Link>,
    /// Positions in `links` by incident id and by record id: a lookup must not scan every link
    /// (the end-to-end bench keeps tens of thousands).
    by_incident: HashMap<String, Vec<usize>>,
    by_record: HashMap<String, Vec<usize>>,
    subjects: HashMap<Subject, SubjectItem>,
    idempotency: HashMap<String, IdemRecord>,
    audit: Vec<AuditEntry>,
    rules: Vec<StoredRules>,
    breakers: HashMap<String, BreakerRecord>,
    cursors: HashMap<super::Side, DateTime<Utc>>,
    notes_marked_since: Option<DateTime<Utc>>,
    watched_subscription: Option<String>,
    buckets: HashMap<String, super::BucketState>,
}

/// One mutex around everything: simple, and the tests that race on it still see atomic
/// conditional writes, like DynamoDB's.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic in another test thread must not poison the demo; the data is still consistent
        // because every write below is a single step.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of audit entries (for tests).
    pub fn audit_len(&self) -> usize {
        self.lock().audit.len()
    }

    /// Every audit entry, oldest first (for tests and the demo's summary).
    pub fn audit_entries(&self) -> Vec<AuditEntry> {
        self.lock().audit.clone()
    }

    /// Every link (for tests and the demo's summary).
    pub fn all_links(&self) -> Vec<Link> {
        self.lock().links.clone()
    }
}

impl Inner {
    fn linked(&self, index: &HashMap<String, Vec<usize>>, id: &str) -> Vec<Link> {
        let mut found: Vec<Link> = index.get(id).into_iter().flatten().map(|&i| self.links[i].clone()).collect();
        found.sort_by_key(|l| l.created_at);
        found
    }

    fn complete(&mut self, key: &str, result: &str, expires_at: DateTime<Utc>) {
        self.idempotency.insert(
            key.to_string(),
            IdemRecord { state: IdemState::Completed { result: result.to_string() }, expires_at },
        );
    }
}

#[async_trait]
impl LinkStore for MemoryStore {
    async fn put_link(&self, link: &Link) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        // Byte for byte, as DynamoDB's keys are: the contract holds both stores to the same answers.
        let exists = inner
            .by_incident
            .get(link.incident_id.as_str())
            .is_some_and(|ids| ids.iter().any(|&i| inner.links[i].record.id.as_str() == link.record.id.as_str()));
        if !exists {
            let at = inner.links.len();
            inner.links.push(link.clone());
            inner.by_incident.entry(link.incident_id.to_string()).or_default().push(at);
            inner.by_record.entry(link.record.id.to_string()).or_default().push(at);
        }
        Ok(())
    }

    async fn records_for_incident(&self, incident_id: &str) -> Result<Vec<Link>, StoreError> {
        let inner = self.lock();
        Ok(inner.linked(&inner.by_incident, incident_id))
    }

    async fn incidents_for_record(&self, record_id: &str) -> Result<Vec<Link>, StoreError> {
        let inner = self.lock();
        Ok(inner.linked(&inner.by_record, record_id))
    }

    async fn lease(
        &self,
        subject: &Subject,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let mut inner = self.lock();
        let item = inner.subjects.entry(subject.clone()).or_default();
        match &item.lease {
            Some((other, other_until)) if other != holder && *other_until >= now => {
                Ok(Lease::Held { until: Some(*other_until) })
            }
            _ => {
                item.lease = Some((holder.to_string(), until));
                Ok(Lease::Acquired)
            }
        }
    }

    async fn update_subject(
        &self,
        subject: &Subject,
        holder: Option<&str>,
        update: &SubjectUpdate,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let item = inner.subjects.entry(subject.clone()).or_default();
        if let Some(at) = update.at {
            for mark in &update.marks {
                item.marks.insert(mark.clone(), at);
            }
        }
        match &update.progress {
            // Added to what is kept, never fewer (see `Progress::Keep`).
            Some(Progress::Keep { event_id, done }) if !done.is_empty() => {
                let kept = item.progress.entry(event_id.clone()).or_default();
                kept.extend(done.iter().filter(|d| !kept.contains(d)).cloned().collect::<Vec<_>>());
            }
            Some(Progress::Keep { .. }) => {}
            Some(Progress::Clear { event_id }) => {
                item.progress.remove(event_id);
            }
            None => {}
        }
        item.opened |= update.opened;
        if let Some(seen) = &update.seen {
            item.seen = Some(seen.clone());
        }
        if let Some(status_update) = &update.status_update {
            item.status_update = Some(status_update.clone());
        }
        match &update.pending {
            Some(PendingChange::List(event)) => {
                item.pending.insert(event.clone());
            }
            Some(PendingChange::Unlist(event)) => {
                item.pending.remove(event);
            }
            None => {}
        }
        if let Some(holder) = holder
            && item.lease.as_ref().is_some_and(|(h, _)| h == holder)
        {
            item.lease = None;
        }
        Ok(())
    }

    async fn subject_state(&self, subject: &Subject) -> Result<SubjectState, StoreError> {
        let inner = self.lock();
        let links = match subject {
            Subject::Incident(id) => inner.linked(&inner.by_incident, id),
            Subject::Record(id) => inner.linked(&inner.by_record, id),
        };
        let mut state = SubjectState { links, ..SubjectState::default() };
        if let Some(item) = inner.subjects.get(subject) {
            state.marks = item.marks.clone();
            state.opened = item.opened;
            state.pending = item.pending.iter().cloned().collect();
            state.progress = item.progress.clone();
            state.seen = item.seen.clone();
            state.status_update = item.status_update.clone();
        }
        Ok(state)
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut inner = self.lock();
        if let Some(existing) = inner.idempotency.get(key).filter(|r| r.expires_at > now) {
            match &existing.state {
                IdemState::Completed { result } => return Ok(Claim::Completed { result: result.clone() }),
                IdemState::InProgress { until } if *until > now => return Ok(Claim::InProgress { until: *until }),
                IdemState::InProgress { .. } => {} // the owner ran out of time: take it over
            }
        }
        inner.idempotency.insert(
            key.to_string(),
            IdemRecord { state: IdemState::InProgress { until: in_progress_until }, expires_at },
        );
        Ok(Claim::Acquired)
    }

    async fn take_turn(
        &self,
        key: &str,
        owner: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut inner = self.lock();
        let Some(record) = inner.idempotency.get_mut(key).filter(|r| r.expires_at > now) else {
            return Ok(Claim::InProgress { until: now });
        };
        match &record.state {
            IdemState::Completed { result } if result != owner => Ok(Claim::Completed { result: result.clone() }),
            IdemState::InProgress { until } if *until > now => Ok(Claim::InProgress { until: *until }),
            _ => {
                record.state = IdemState::InProgress { until: in_progress_until };
                Ok(Claim::Acquired)
            }
        }
    }

    async fn complete(&self, key: &str, result: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        self.lock().complete(key, result, expires_at);
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if matches!(inner.idempotency.get(key), Some(IdemRecord { state: IdemState::InProgress { .. }, .. })) {
            inner.idempotency.remove(key);
        }
        Ok(())
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn append(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.lock().audit.push(entry.clone());
        Ok(())
    }

    async fn append_completing(&self, entry: &AuditEntry, completed: &[Completion]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.audit.push(entry.clone());
        for c in completed {
            inner.complete(&c.key, &c.result, c.expires_at);
        }
        Ok(())
    }

    async fn for_subject(&self, subject: &Subject, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<AuditEntry> = inner
            .audit
            .iter()
            .filter(|e| match subject {
                Subject::Incident(id) => e.incident_ids.iter().any(|i| i == id),
                Subject::Record(id) => e.record_ids.iter().any(|r| r == id),
            })
            .cloned()
            .collect();
        found.sort_by_key(|e| std::cmp::Reverse(e.at));
        found.truncate(limit);
        Ok(found)
    }

    async fn recent(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<AuditEntry> = inner.audit.iter().filter(|e| e.at >= since).cloned().collect();
        found.sort_by_key(|e| std::cmp::Reverse(e.at));
        found.truncate(limit);
        Ok(found)
    }
}

#[async_trait]
impl RulesStore for MemoryStore {
    async fn current_rules(&self) -> Result<Option<StoredRules>, StoreError> {
        Ok(self.lock().rules.last().cloned())
    }

    async fn put_rules(&self, document: &str, stored_by: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let version = inner.rules.last().map_or(1, |r| r.version + 1);
        inner.rules.push(StoredRules {
            version,
            document: document.to_string(),
            stored_at: at,
            stored_by: stored_by.to_string(),
        });
        Ok(version)
    }
}

#[async_trait]
impl BreakerStore for MemoryStore {
    async fn get_breaker(&self, service: &str) -> Result<Option<BreakerRecord>, StoreError> {
        Ok(self.lock().breakers.get(service).cloned())
    }

    async fn put_breaker(&self, record: &BreakerRecord, expected_version: Option<u64>) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let current = inner.breakers.get(&record.service).map(|r| r.version);
        if current != expected_version {
            return Ok(false);
        }
        inner.breakers.insert(record.service.clone(), record.clone());
        Ok(true)
    }
}

#[async_trait]
impl super::CursorStore for MemoryStore {
    async fn cursor(&self, side: super::Side) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.lock().cursors.get(&side).copied())
    }

    async fn advance_cursor(&self, side: super::Side, to: DateTime<Utc>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let at = inner.cursors.entry(side).or_insert(to);
        *at = (*at).max(to);
        Ok(())
    }

    async fn notes_marked_since(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.lock().notes_marked_since)
    }

    async fn record_notes_marked_since(&self, at: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError> {
        // Milliseconds, as the table keeps them.
        let at = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
        Ok(*self.lock().notes_marked_since.get_or_insert(at))
    }

    async fn watched_subscription(&self) -> Result<Option<String>, StoreError> {
        Ok(self.lock().watched_subscription.clone())
    }

    async fn watch_subscription(&self, id: &str) -> Result<(), StoreError> {
        self.lock().watched_subscription = Some(id.to_string());
        Ok(())
    }
}

#[async_trait]
impl super::RateBudgetStore for MemoryStore {
    async fn swap_bucket(
        &self,
        key: &str,
        expected: Option<u64>,
        new: &super::BucketState,
    ) -> Result<super::Swap, StoreError> {
        let mut inner = self.lock();
        let current = inner.buckets.get(key).copied();
        if current.map(|b| b.version) != expected {
            return Ok(super::Swap::Conflict(current));
        }
        inner.buckets.insert(key.to_string(), *new);
        Ok(super::Swap::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn memory_store_keeps_the_rate_budget_contract() {
        contract::rate_buckets_are_compare_and_set(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn memory_store_keeps_the_cursor_contract() {
        contract::cursors_only_move_forward(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn memory_store_keeps_the_store_contract() {
        let store = std::sync::Arc::new(MemoryStore::default());
        contract::run_all(store.clone(), store.clone(), store.clone(), store.clone(), store, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_tasks_leasing_one_subject_have_exactly_one_winner() {
        for _ in 0..3 {
            contract::concurrent_leases_have_exactly_one_winner(std::sync::Arc::new(MemoryStore::default()), 20).await;
        }
    }
}
