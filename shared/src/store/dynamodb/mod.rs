//! Every store trait on one DynamoDB table (`pk`/`sk` strings, TTL attribute `expires_at`).
//!
//! Item layout:
//!
//! | item | pk | sk | attributes |
//! | --- | --- | --- | --- |
//! | link, incident side | `INC#<incident>` | `REC#<record>` | `object`, `created_at` (ms), `rule` |
//! | link, record side | `REC#<record>` | `INC#<incident>` | same; both written in one transaction |
//! | watermark | `INC#<incident>` or `REC#<record>` | `WATERMARK` | `last_applied` (ms), `pending` (string set of `<ms>#<event id>`: its events in the retry queue) |
//! | idempotency | `IDEM#<key>` | `IDEM` | `status` (IN_PROGRESS/COMPLETED), `in_progress_until` (ms), `result`, `expires_at` (s, TTL) |
//! | audit, per subject | `AUDIT#INC#<id>` / `AUDIT#REC#<id>` | `<rfc3339 ms>#<entry id>` | `entry` (JSON), `expires_at` |
//! | audit, per day | `AUDIT#DAY#<yyyy-mm-dd>` | same | same |
//! | rules version | `RULES` | `V#<10-digit version>` | `document`, `stored_at`, `stored_by` |
//! | breaker | `BREAKER#<service>` | `STATE` | `record` (JSON), `version` |
//!
//! Conditional writes give the atomicity the traits promise: idempotency claims follow AWS Lambda
//! Powertools (conditional put; a failed condition returns the old item to tell COMPLETED from
//! IN_PROGRESS), watermarks only move forward, rules versions and breakers are compare-and-set.

mod item;

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, PutRequest,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
    WriteRequest,
};
use chrono::{DateTime, Duration, Utc};

use self::item::{Item, corrupt, from_millis, get_opt_s, get_s, millis, n, s};
use super::{
    AuditLog, BreakerRecord, BreakerStore, Claim, Completion, IdempotencyStore, LinkStore, PendingEvent, RulesStore,
    StoreError, StoredRules, Stores, Subject, SubjectState,
};
use crate::model::{AuditEntry, Link, RecordRef};

/// Audit entries are kept this long.
const AUDIT_RETENTION_DAYS: i64 = 90;

/// The table, behind every store trait.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// All five stores on one table.
pub fn stores(client: Client, table: &str) -> Stores {
    let store = Arc::new(DynamoStore::new(client, table));
    Stores {
        links: store.clone(),
        idempotency: store.clone(),
        audit: store.clone(),
        rules: store.clone(),
        breakers: store,
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn from_conf(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), table)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn error<E, R>(&self, operation: &'static str, err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::fmt::Debug,
        R: std::fmt::Debug,
    {
        let code = err.code().unwrap_or_default().to_string();
        let detail = err.message().map(str::to_string).unwrap_or_else(|| format!("{err:?}"));
        let message = format!("{code}: {detail} (table {})", self.table);
        match code.as_str() {
            "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" => {
                StoreError::Throttled { operation, message }
            }
            "ResourceNotFoundException"
            | "AccessDeniedException"
            | "UnrecognizedClientException"
            | "ValidationException" => StoreError::Config { operation, message },
            _ => StoreError::Unavailable { operation, message },
        }
    }

    fn is_condition_failure<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
        matches!(err.code(), Some("ConditionalCheckFailedException"))
    }

    async fn query_partition(
        &self,
        pk: &str,
        sk_prefix: &str,
        newest_first: bool,
        limit: Option<i32>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = self.client.query().table_name(&self.table).expression_attribute_values(":pk", s(pk));
            // DynamoDB refuses an empty key value, so "every item" is a bare partition query.
            query = if sk_prefix.is_empty() {
                query.key_condition_expression("pk = :pk")
            } else {
                query
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(sk_prefix))
            };
            query = query.scan_index_forward(!newest_first).consistent_read(true).set_exclusive_start_key(start);
            if let Some(limit) = limit {
                query = query.limit(limit);
            }
            let out = query.send().await.map_err(|e| self.error("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            let full = limit.is_some_and(|l| items.len() >= l as usize);
            if start.is_none() || full {
                return Ok(items);
            }
        }
    }
}

fn subject_pk(subject: &Subject) -> String {
    match subject {
        Subject::Incident(id) => format!("INC#{id}"),
        Subject::Record(id) => format!("REC#{id}"),
    }
}

/// A watermark moves forward only; an equal time is accepted (two events may share it).
const ADVANCE: &str = "SET last_applied = :at";
const ADVANCE_IF: &str = "attribute_not_exists(last_applied) OR last_applied <= :at";

fn link_from(item: &Item, incident_side: bool) -> Result<Link, StoreError> {
    let pk = get_s(item, "pk")?;
    let sk = get_s(item, "sk")?;
    let (inc, rec) = if incident_side { (pk, sk) } else { (sk, pk) };
    Ok(Link {
        incident_id: inc.strip_prefix("INC#").ok_or_else(|| corrupt(item, "not a link".into()))?.to_string(),
        record: RecordRef {
            object: get_s(item, "object")?.to_string(),
            id: rec.strip_prefix("REC#").ok_or_else(|| corrupt(item, "not a link".into()))?.to_string(),
        },
        created_at: from_millis(item, "created_at")?,
        created_by_rule: get_opt_s(item, "rule").map(str::to_string),
    })
}

impl DynamoStore {
    /// The link's two items (one per side), for a transaction.
    fn link_puts(&self, link: &Link) -> Result<[TransactWriteItem; 2], StoreError> {
        let put = |pk: String, sk: String| -> Result<TransactWriteItem, StoreError> {
            let mut item = Item::new();
            item.insert("pk".into(), s(pk));
            item.insert("sk".into(), s(sk));
            item.insert("object".into(), s(&link.record.object));
            item.insert("created_at".into(), n(millis(link.created_at)));
            if let Some(rule) = &link.created_by_rule {
                item.insert("rule".into(), s(rule));
            }
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(|e| StoreError::Config { operation: "TransactWriteItems", message: e.to_string() })?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        let inc = format!("INC#{}", link.incident_id);
        let rec = format!("REC#{}", link.record.id);
        Ok([put(inc.clone(), rec.clone())?, put(rec, inc)?])
    }
}

#[async_trait]
impl LinkStore for DynamoStore {
    async fn put_link(&self, link: &Link) -> Result<(), StoreError> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(self.link_puts(link)?.to_vec()))
            .send()
            .await
            .map_err(|e| self.error("TransactWriteItems", e))?;
        Ok(())
    }

    /// One transaction: both link items and the conditional watermark update. When only the
    /// watermark's condition fails (a later event was applied meanwhile), the link is written alone.
    async fn put_link_advancing(&self, link: &Link, subject: &Subject, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(subject_pk(subject)))
            .key("sk", s("WATERMARK"))
            .update_expression(ADVANCE)
            .condition_expression(ADVANCE_IF)
            .expression_attribute_values(":at", n(millis(at)))
            .build()
            .map_err(|e| StoreError::Config { operation: "TransactWriteItems", message: e.to_string() })?;
        let mut items = self.link_puts(link)?.to_vec();
        items.push(TransactWriteItem::builder().update(update).build());
        let err = match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => return Ok(true),
            Err(err) => err,
        };
        let watermark_only = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                let codes: Vec<&str> = e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
                codes.len() == 3 && codes[..2].iter().all(|c| *c == "None") && codes[2] == "ConditionalCheckFailed"
            }
            _ => false,
        };
        if !watermark_only {
            return Err(self.error("TransactWriteItems", err));
        }
        self.put_link(link).await?;
        Ok(false)
    }

    async fn records_for_incident(&self, incident_id: &str) -> Result<Vec<Link>, StoreError> {
        let items = self.query_partition(&format!("INC#{incident_id}"), "REC#", false, None).await?;
        let mut links = items.iter().map(|i| link_from(i, true)).collect::<Result<Vec<_>, _>>()?;
        links.sort_by_key(|l| l.created_at);
        Ok(links)
    }

    async fn incidents_for_record(&self, record_id: &str) -> Result<Vec<Link>, StoreError> {
        let items = self.query_partition(&format!("REC#{record_id}"), "INC#", false, None).await?;
        let mut links = items.iter().map(|i| link_from(i, false)).collect::<Result<Vec<_>, _>>()?;
        links.sort_by_key(|l| l.created_at);
        Ok(links)
    }

    async fn last_applied(&self, subject: &Subject) -> Result<Option<DateTime<Utc>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(subject_pk(subject)))
            .key("sk", s("WATERMARK"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        // The item may hold only the pending set.
        out.item
            .filter(|item| item.contains_key("last_applied"))
            .map(|item| from_millis(&item, "last_applied"))
            .transpose()
    }

    async fn advance_last_applied(&self, subject: &Subject, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(subject_pk(subject)))
            .key("sk", s("WATERMARK"))
            .update_expression(ADVANCE)
            .condition_expression(ADVANCE_IF)
            .expression_attribute_values(":at", n(millis(at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if Self::is_condition_failure(&err) => Ok(false),
            Err(err) => Err(self.error("UpdateItem", err)),
        }
    }

    async fn add_pending(&self, subject: &Subject, event: &PendingEvent) -> Result<(), StoreError> {
        self.update_pending(subject, event, "ADD pending :e").await
    }

    async fn remove_pending(&self, subject: &Subject, event: &PendingEvent) -> Result<(), StoreError> {
        self.update_pending(subject, event, "DELETE pending :e").await
    }

    /// One Query of the subject's partition: its link items and its `WATERMARK` item.
    async fn subject_state(&self, subject: &Subject) -> Result<SubjectState, StoreError> {
        let (links_prefix, incident_side) = match subject {
            Subject::Incident(_) => ("REC#", true),
            Subject::Record(_) => ("INC#", false),
        };
        let mut state = SubjectState::default();
        for item in self.query_partition(&subject_pk(subject), "", false, None).await? {
            let sk = get_s(&item, "sk")?;
            if sk == "WATERMARK" {
                if item.contains_key("last_applied") {
                    state.last_applied = Some(from_millis(&item, "last_applied")?);
                }
                if let Some(set) = item.get("pending") {
                    let entries = set.as_ss().map_err(|_| corrupt(&item, "pending is not a string set".into()))?;
                    state.pending = entries.iter().map(|e| pending_from(&item, e)).collect::<Result<_, _>>()?;
                    state.pending.sort();
                }
            } else if sk.starts_with(links_prefix) {
                state.links.push(link_from(&item, incident_side)?);
            }
        }
        state.links.sort_by_key(|l| l.created_at);
        Ok(state)
    }
}

/// A pending event as a string-set element: `<13-digit ms>#<event id>`, so that the set sorts by time.
fn pending_entry(event: &PendingEvent) -> String {
    format!("{:013}#{}", millis(event.occurred_at), event.event_id)
}

fn pending_from(item: &Item, entry: &str) -> Result<PendingEvent, StoreError> {
    let bad = || corrupt(item, format!("pending entry {entry:?} is not <ms>#<event id>"));
    let (ms, id) = entry.split_once('#').ok_or_else(bad)?;
    let occurred_at = DateTime::from_timestamp_millis(ms.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok(PendingEvent { occurred_at, event_id: id.to_string() })
}

impl DynamoStore {
    /// ADD or DELETE one element of the `WATERMARK` item's `pending` set (the item is created if
    /// need be; DynamoDB drops a set that becomes empty).
    async fn update_pending(&self, subject: &Subject, event: &PendingEvent, update: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(subject_pk(subject)))
            .key("sk", s("WATERMARK"))
            .update_expression(update)
            .expression_attribute_values(":e", AttributeValue::Ss(vec![pending_entry(event)]))
            .send()
            .await
            .map_err(|e| self.error("UpdateItem", e))?;
        Ok(())
    }
}

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

fn idem_key(key: &str) -> String {
    format!("IDEM#{key}")
}

/// The COMPLETED idempotency item (written alone, or in an event's last batch).
fn completed_item(key: &str, result: &str, expires_at: DateTime<Utc>) -> Item {
    Item::from([
        ("pk".to_string(), s(idem_key(key))),
        ("sk".to_string(), s("IDEM")),
        ("status".to_string(), s(COMPLETED)),
        ("result".to_string(), s(result)),
        ("expires_at".to_string(), n(expires_at.timestamp())),
    ])
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(idem_key(key)))
            .item("sk", s("IDEM"))
            .item("status", s(IN_PROGRESS))
            .item("in_progress_until", n(millis(in_progress_until)))
            .item("expires_at", n(expires_at.timestamp()))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now_s OR (#status = :in_progress AND in_progress_until <= :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now_s", n(now.timestamp()))
            .expression_attribute_values(":now_ms", n(millis(now)))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Claim::Acquired),
            Err(err) if Self::is_condition_failure(&err) => err,
            Err(err) => return Err(self.error("PutItem", err)),
        };
        // The old item comes back with the failure; when it does not, read it.
        let returned = match err.as_service_error() {
            Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(e)) => {
                e.item.clone()
            }
            _ => None,
        };
        let old = match returned {
            Some(item) => item,
            None => self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(idem_key(key)))
                .key("sk", s("IDEM"))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.error("GetItem", e))?
                .item
                .ok_or(StoreError::Unavailable {
                    operation: "PutItem",
                    message: format!("idempotency record {key} vanished during the claim"),
                })?,
        };
        match get_s(&old, "status")? {
            COMPLETED => Ok(Claim::Completed { result: get_opt_s(&old, "result").unwrap_or_default().to_string() }),
            _ => Ok(Claim::InProgress { until: from_millis(&old, "in_progress_until")? }),
        }
    }

    async fn complete(&self, key: &str, result: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(completed_item(key, result, expires_at)))
            .send()
            .await
            .map_err(|e| self.error("PutItem", e))?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(idem_key(key)))
            .key("sk", s("IDEM"))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if Self::is_condition_failure(&err) => Ok(()),
            Err(err) => Err(self.error("DeleteItem", err)),
        }
    }
}

fn audit_partitions(entry: &AuditEntry) -> Vec<String> {
    let mut pks: Vec<String> = entry.incident_ids.iter().map(|id| format!("AUDIT#INC#{id}")).collect();
    pks.extend(entry.record_ids.iter().map(|id| format!("AUDIT#REC#{id}")));
    pks.push(format!("AUDIT#DAY#{}", entry.at.format("%Y-%m-%d")));
    pks.sort();
    pks.dedup();
    pks
}

fn audit_sk(entry: &AuditEntry) -> String {
    format!("{}#{}", entry.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), entry.id)
}

fn audit_from(item: &Item) -> Result<AuditEntry, StoreError> {
    serde_json::from_str(get_s(item, "entry")?).map_err(|e| corrupt(item, format!("entry is not an audit entry: {e}")))
}

fn audit_items(entry: &AuditEntry) -> Vec<Item> {
    let json = serde_json::to_string(entry).expect("audit entries serialise");
    let expires = (entry.at + Duration::days(AUDIT_RETENTION_DAYS)).timestamp();
    audit_partitions(entry)
        .into_iter()
        .map(|pk| {
            Item::from([
                ("pk".to_string(), s(pk)),
                ("sk".to_string(), s(audit_sk(entry))),
                ("entry".to_string(), s(&json)),
                ("expires_at".to_string(), n(expires)),
            ])
        })
        .collect()
}

impl DynamoStore {
    /// Puts `items` with BatchWriteItem (25 per request), re-sending what DynamoDB leaves unprocessed.
    async fn put_all(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let requests: Vec<WriteRequest> = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(item)).build().expect("item is set");
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            for _ in 0..5 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| self.error("BatchWriteItem", e))?;
                pending = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
            }
            if !pending.is_empty() {
                return Err(StoreError::Throttled {
                    operation: "BatchWriteItem",
                    message: format!("{} item(s) left unprocessed", pending.len()),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl AuditLog for DynamoStore {
    async fn append(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.put_all(audit_items(entry)).await
    }

    /// The audit items and the COMPLETED idempotency items in one BatchWriteItem (an entry names
    /// few subjects, so they fit in one).
    async fn append_completing(&self, entry: &AuditEntry, completed: &[Completion]) -> Result<(), StoreError> {
        let mut items = audit_items(entry);
        items.extend(completed.iter().map(|c| completed_item(&c.key, &c.result, c.expires_at)));
        self.put_all(items).await
    }

    async fn for_subject(&self, subject: &Subject, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let pk = format!("AUDIT#{}", subject_pk(subject));
        let items = self.query_partition(&pk, "", true, Some(limit.max(1) as i32)).await?;
        items.iter().take(limit).map(audit_from).collect()
    }

    async fn recent(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        // Day partitions are read newest first: from tomorrow (writers' clocks may run ahead of ours)
        // back to `since`'s day, but never further back than the TTL keeps anything, so a `since`
        // of years ago costs at most ~90 queries, not thousands.
        let today = Utc::now().date_naive();
        let newest = today.succ_opt().unwrap_or(today).max(since.date_naive());
        let oldest = since.date_naive().max(today - chrono::Days::new(AUDIT_RETENTION_DAYS as u64 + 1));
        let mut entries = Vec::new();
        let mut day = newest;
        'days: while day >= oldest && entries.len() < limit {
            let items = self.query_partition(&format!("AUDIT#DAY#{day}"), "", true, Some(limit as i32)).await?;
            for item in &items {
                let entry = audit_from(item)?;
                if entry.at < since {
                    break 'days; // newest first: everything after this one is older still
                }
                if entries.len() == limit {
                    break 'days;
                }
                entries.push(entry);
            }
            match day.pred_opt() {
                Some(previous) => day = previous,
                None => break,
            }
        }
        Ok(entries)
    }
}

fn version_sk(version: u64) -> String {
    format!("V#{version:010}")
}

#[async_trait]
impl RulesStore for DynamoStore {
    async fn current_rules(&self) -> Result<Option<StoredRules>, StoreError> {
        let items = self.query_partition("RULES", "V#", true, Some(1)).await?;
        let Some(item) = items.first() else { return Ok(None) };
        let version = get_s(item, "sk")?
            .strip_prefix("V#")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt(item, "bad version key".into()))?;
        Ok(Some(StoredRules {
            version,
            document: get_s(item, "document")?.to_string(),
            stored_at: from_millis(item, "stored_at")?,
            stored_by: get_opt_s(item, "stored_by").unwrap_or_default().to_string(),
        }))
    }

    async fn put_rules(&self, document: &str, stored_by: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        for _ in 0..10 {
            let next = self.current_rules().await?.map_or(1, |r| r.version + 1);
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s("RULES"))
                .item("sk", s(version_sk(next)))
                .item("document", s(document))
                .item("stored_at", n(millis(at)))
                .item("stored_by", s(stored_by))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match result {
                Ok(_) => return Ok(next),
                Err(err) if Self::is_condition_failure(&err) => continue, // another push won this number
                Err(err) => return Err(self.error("PutItem", err)),
            }
        }
        Err(StoreError::Unavailable {
            operation: "PutItem",
            message: "too many concurrent rules pushes; try again".into(),
        })
    }
}

#[async_trait]
impl BreakerStore for DynamoStore {
    async fn get_breaker(&self, service: &str) -> Result<Option<BreakerRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("BREAKER#{service}")))
            .key("sk", s("STATE"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        let Some(item) = out.item else { return Ok(None) };
        serde_json::from_str(get_s(&item, "record")?)
            .map(Some)
            .map_err(|e| corrupt(&item, format!("record is not a breaker: {e}")))
    }

    async fn put_breaker(&self, record: &BreakerRecord, expected_version: Option<u64>) -> Result<bool, StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("BREAKER#{}", record.service)))
            .item("sk", s("STATE"))
            .item("record", s(serde_json::to_string(record).expect("breakers serialise")))
            .item("version", n(record.version));
        put = match expected_version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put.condition_expression("version = :expected").expression_attribute_values(":expected", n(v)),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(err) if Self::is_condition_failure(&err) => Ok(false),
            Err(err) => Err(self.error("PutItem", err)),
        }
    }
}

/// Creates the table as `template.yaml` does (for tests and local runs). Waits until it is active.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder().attribute_name(name).key_type(kind).build().expect("complete")
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("complete")
    };
    let store = DynamoStore::new(client.clone(), name);
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .send()
        .await
        .map_err(|e| store.error("CreateTable", e))?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().attribute_name("expires_at").enabled(true).build().expect("complete"),
        )
        .send()
        .await
        .map_err(|e| store.error("UpdateTimeToLive", e))?;
    // Real DynamoDB takes seconds to make a table ACTIVE (moto does it at once); poll briefly.
    for _ in 0..120 {
        let out = client.describe_table().table_name(name).send().await.map_err(|e| store.error("DescribeTable", e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&aws_sdk_dynamodb::types::TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(StoreError::Unavailable {
        operation: "DescribeTable",
        message: format!("table {name} is not ACTIVE after 60 s"),
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;

    use super::*;

    fn store() -> DynamoStore {
        let conf = aws_sdk_dynamodb::Config::builder().behavior_version_latest().build();
        DynamoStore::new(Client::from_conf(conf), "links-table")
    }

    /// A service error as the SDK hands it over (the raw response plays no part in the mapping).
    fn service(code: &str) -> SdkError<GetItemError, ()> {
        let meta = ErrorMetadata::builder().code(code).message("from the service").build();
        SdkError::service_error(GetItemError::generic(meta), ())
    }

    #[test]
    fn throttling_is_throttled_and_transient() {
        for code in ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"] {
            let err = store().error("GetItem", service(code));
            assert!(matches!(err, StoreError::Throttled { operation: "GetItem", .. }), "{code}: {err:?}");
            assert!(err.is_transient());
        }
    }

    #[test]
    fn server_errors_and_timeouts_are_unavailable_and_transient() {
        let err = store().error("GetItem", service("InternalServerError"));
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        let timeout: SdkError<GetItemError, ()> = SdkError::timeout_error("read timed out");
        let err = store().error("Query", timeout);
        assert!(matches!(err, StoreError::Unavailable { operation: "Query", .. }), "{err:?}");
        assert!(err.is_transient());
    }

    #[test]
    fn access_denied_and_missing_table_are_config_errors_naming_the_table() {
        for code in ["AccessDeniedException", "ResourceNotFoundException"] {
            let err = store().error("GetItem", service(code));
            assert!(matches!(err, StoreError::Config { .. }), "{code}: {err:?}");
            assert!(err.to_string().contains("links-table"), "{err}");
            assert!(!err.is_transient());
        }
    }
}
