//! A `Stores` decorator that counts every store call as the DynamoDB request(s) and request units
//! the DynamoDB implementation (shared/src/store/dynamodb) issues for it, so the in-memory runs of
//! the bench can state DynamoDB operations and cost per event.
//!
//! Units assume items under 1 KB (write) / 4 KB (read), which holds for links, watermarks,
//! idempotency records, breakers and audit entries; reads are strongly consistent (1 RRU each).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared::model::{AuditEntry, Link};
use shared::store::{
    AuditLog, BreakerRecord, BreakerStore, Claim, Completion, IdempotencyStore, Lease, LinkStore, PendingEvent,
    RulesStore, StoreError, StoredRules, Stores, Subject, SubjectState, SubjectUpdate,
};

/// What one trait method cost, summed over calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCount {
    pub calls: u64,
    /// DynamoDB API requests issued.
    pub requests: u64,
    pub read_units: u64,
    pub write_units: u64,
}

/// Counts per `trait.method (DynamoDB operation)`.
#[derive(Debug, Default)]
pub struct Counter {
    ops: Mutex<BTreeMap<&'static str, OpCount>>,
}

impl Counter {
    fn add(&self, op: &'static str, requests: u64, read_units: u64, write_units: u64) {
        let mut ops = self.ops.lock().expect("counter lock");
        let c = ops.entry(op).or_default();
        c.calls += 1;
        c.requests += requests;
        c.read_units += read_units;
        c.write_units += write_units;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, OpCount> {
        self.ops.lock().expect("counter lock").clone()
    }

    pub fn reset(&self) {
        self.ops.lock().expect("counter lock").clear();
    }

    /// Sum over every operation.
    pub fn total(&self) -> OpCount {
        self.snapshot().values().fold(OpCount::default(), |a, c| OpCount {
            calls: a.calls + c.calls,
            requests: a.requests + c.requests,
            read_units: a.read_units + c.read_units,
            write_units: a.write_units + c.write_units,
        })
    }
}

/// Wraps `inner` so that every call is counted in the returned counter.
pub fn counting(inner: Stores) -> (Stores, Arc<Counter>) {
    let counter = Arc::new(Counter::default());
    let c = Arc::new(Counting { inner, counter: counter.clone() });
    (Stores { links: c.clone(), idempotency: c.clone(), audit: c.clone(), rules: c.clone(), breakers: c }, counter)
}

struct Counting {
    inner: Stores,
    counter: Arc<Counter>,
}

/// The audit partitions an entry is written to (dynamodb::audit_partitions): one per subject plus the day.
fn audit_items(entry: &AuditEntry) -> u64 {
    let mut ids: Vec<String> = entry.incident_ids.iter().map(|i| format!("I{i}")).collect();
    ids.extend(entry.record_ids.iter().map(|r| format!("R{r}")));
    ids.sort();
    ids.dedup();
    ids.len() as u64 + 1
}

#[async_trait]
impl LinkStore for Counting {
    async fn put_link(&self, link: &Link) -> Result<(), StoreError> {
        // TransactWriteItems of two Puts: transactional writes cost 2 WRU per item.
        self.counter.add("links.put_link (TransactWriteItems x2)", 1, 0, 4);
        self.inner.links.put_link(link).await
    }
    async fn records_for_incident(&self, incident_id: &str) -> Result<Vec<Link>, StoreError> {
        self.counter.add("links.records_for_incident (Query)", 1, 1, 0);
        self.inner.links.records_for_incident(incident_id).await
    }
    async fn incidents_for_record(&self, record_id: &str) -> Result<Vec<Link>, StoreError> {
        self.counter.add("links.incidents_for_record (Query)", 1, 1, 0);
        self.inner.links.incidents_for_record(record_id).await
    }
    async fn lease(
        &self,
        subject: &Subject,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        self.counter.add("links.lease (conditional UpdateItem)", 1, 0, 1);
        self.inner.links.lease(subject, holder, now, until).await
    }
    async fn update_subject(
        &self,
        subject: &Subject,
        holder: Option<&str>,
        update: &SubjectUpdate,
    ) -> Result<(), StoreError> {
        // Nothing to write and no lease to give back: the DynamoDB store sends nothing.
        if holder.is_some() || *update != SubjectUpdate::default() {
            self.counter.add("links.update_subject (UpdateItem)", 1, 0, 1);
        }
        self.inner.links.update_subject(subject, holder, update).await
    }
    async fn subject_state(&self, subject: &Subject) -> Result<SubjectState, StoreError> {
        // One Query of the subject's partition: links and watermark, a few hundred bytes (1 RRU).
        self.counter.add("links.subject_state (Query)", 1, 1, 0);
        self.inner.links.subject_state(subject).await
    }
    async fn add_pending(&self, subject: &Subject, event: &PendingEvent) -> Result<(), StoreError> {
        self.counter.add("links.add_pending (UpdateItem)", 1, 0, 1);
        self.inner.links.add_pending(subject, event).await
    }
    async fn remove_pending(&self, subject: &Subject, event: &PendingEvent) -> Result<(), StoreError> {
        self.counter.add("links.remove_pending (UpdateItem)", 1, 0, 1);
        self.inner.links.remove_pending(subject, event).await
    }
}

#[async_trait]
impl IdempotencyStore for Counting {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        // A failed condition still consumes the write; the old item comes back with it (no GetItem).
        self.counter.add("idempotency.claim (conditional PutItem)", 1, 0, 1);
        self.inner.idempotency.claim(key, now, in_progress_until, expires_at).await
    }
    async fn take_turn(
        &self,
        key: &str,
        owner: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        self.counter.add("idempotency.take_turn (conditional UpdateItem)", 1, 0, 1);
        self.inner.idempotency.take_turn(key, owner, now, in_progress_until).await
    }
    async fn complete(&self, key: &str, result: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        self.counter.add("idempotency.complete (PutItem)", 1, 0, 1);
        self.inner.idempotency.complete(key, result, expires_at).await
    }
    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.counter.add("idempotency.release (conditional DeleteItem)", 1, 0, 1);
        self.inner.idempotency.release(key).await
    }
}

#[async_trait]
impl AuditLog for Counting {
    async fn append(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.counter.add("audit.append (BatchWriteItem)", 1, 0, audit_items(entry));
        self.inner.audit.append(entry).await
    }
    async fn append_completing(&self, entry: &AuditEntry, completed: &[Completion]) -> Result<(), StoreError> {
        let items = audit_items(entry) + completed.len() as u64;
        self.counter.add("audit.append_completing (BatchWriteItem)", items.div_ceil(25), 0, items);
        self.inner.audit.append_completing(entry, completed).await
    }
    async fn for_subject(&self, subject: &Subject, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.counter.add("audit.for_subject (Query)", 1, 1, 0);
        self.inner.audit.for_subject(subject, limit).await
    }
    async fn recent(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        // One Query per day partition at least; counted as one (the handlers never call it).
        self.counter.add("audit.recent (Query per day)", 1, 1, 0);
        self.inner.audit.recent(since, limit).await
    }
}

#[async_trait]
impl RulesStore for Counting {
    async fn current_rules(&self) -> Result<Option<StoredRules>, StoreError> {
        self.counter.add("rules.current_rules (Query)", 1, 1, 0);
        self.inner.rules.current_rules().await
    }
    async fn put_rules(&self, document: &str, stored_by: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        // Query for the current version, then a conditional PutItem.
        self.counter.add("rules.put_rules (Query + conditional PutItem)", 2, 1, 1);
        self.inner.rules.put_rules(document, stored_by, at).await
    }
}

#[async_trait]
impl BreakerStore for Counting {
    async fn get_breaker(&self, service: &str) -> Result<Option<BreakerRecord>, StoreError> {
        self.counter.add("breakers.get_breaker (GetItem)", 1, 1, 0);
        self.inner.breakers.get_breaker(service).await
    }
    async fn put_breaker(&self, record: &BreakerRecord, expected_version: Option<u64>) -> Result<bool, StoreError> {
        self.counter.add("breakers.put_breaker (conditional PutItem)", 1, 0, 1);
        self.inner.breakers.put_breaker(record, expected_version).await
    }
}
