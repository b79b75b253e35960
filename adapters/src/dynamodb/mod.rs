//! Every store trait on one DynamoDB table (`pk`/`sk` strings, TTL attribute `expires_at`).
//!
//! Item layout:
//!
//! | item | pk | sk | attributes |
//! | --- | --- | --- | --- |
//! | link, incident side | `INC#<incident>` | `REC#<record>` | `object`, `created_at` (ms), `rule` |
//! | link, record side | `REC#<record>` | `INC#<incident>` | same; both written in one transaction |
//! | subject | `INC#<incident>` or `REC#<record>` | `WATERMARK` | `m:<mark>` (ms: when each piece of state was last set), `opened`, `lease_holder` + `lease_until` (ms), `pending` (string set of `<ms>#<envelope id>#<event id>`: its events in the retry queue) |
//! | idempotency | `IDEM#<key>` | `IDEM` | `status` (IN_PROGRESS/COMPLETED), `in_progress_until` (ms), `result`, `expires_at` (s, TTL) |
//! | audit, per subject | `AUDIT#INC#<id>` / `AUDIT#REC#<id>` | `<rfc3339 ms>#<entry id>` | `entry` (JSON), `expires_at` |
//! | audit, per day | `AUDIT#DAY#<yyyy-mm-dd>` | same | same |
//! | rules version | `RULES` | `V#<10-digit version>` | `document`, `stored_at`, `stored_by` |
//! | breaker | `BREAKER#<service>` | `STATE` | `record` (JSON), `version` |
//! | reconcile cursor | `RECONCILE#<side>` | `CURSOR` | `at` (ms): see `cursor.rs` |
//! | notes marked since | `RECONCILE#pagerduty` | `NOTES_MARKED` | `at` (ms), put once |
//! | PagerDuty rate budget | `RATE#<hash of the token>` | `BUCKET` | `tokens` (thousandths), `updated_ms`, `paused_until_ms`, `version`, `expires_at`: see `rate_budget.rs` |
//!
//! Conditional writes give the atomicity the traits promise: idempotency claims follow AWS Lambda
//! Powertools (conditional put; a failed condition returns the old item to tell COMPLETED from
//! IN_PROGRESS), a subject's lease is taken only when free or expired, rules versions and breakers
//! are compare-and-set.

mod cursor;
mod item;
mod rate_budget;

pub use cursor::{SUBSCRIPTION_KEY, cursor_key};
pub use rate_budget::{RATE_PREFIX, rate_key};

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, PutRequest,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, Duration, Utc};

use self::item::{Item, corrupt, from_millis, get_n, get_opt_s, get_s, millis, n, s};
use shared::model::{AuditEntry, Link, RecordRef};
use shared::store::{
    AuditLog, BreakerRecord, BreakerStore, Claim, Completion, IdempotencyStore, Lease, LinkStore, PendingChange,
    PendingEvent, Progress, RulesStore, StoreError, StoredRules, Stores, Subject, SubjectState, SubjectUpdate,
};

/// Audit entries are kept this long.
const AUDIT_RETENTION_DAYS: i64 = 90;

/// The table, behind every store trait.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// The stores `config` names, over a DynamoDB client of `sdk`.
pub fn stores_of(config: &shared::config::StoreConfig, sdk: &aws_config::SdkConfig) -> Stores {
    stores(Client::new(sdk), &config.table_name)
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
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = err.code().unwrap_or_default().to_string();
        // No message: the request never got an answer; the chain of causes says why.
        let detail = err.message().map(str::to_string).unwrap_or_else(|| crate::sdk_error::causes(&err));
        let message = format!("{code}: {detail} (table {})", self.table);
        match code.as_str() {
            "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" => {
                StoreError::Throttled { operation, message }
            }
            "ResourceNotFoundException" | "AccessDeniedException" | "UnrecognizedClientException" => {
                StoreError::Config { operation, message }
            }
            // A key or an item over its size limit: this event's request, not the table, is
            // wrong, and sending it again changes nothing. Any other validation error (a key
            // schema that is not ours, an expression) is the deployment's: retried and alarmed.
            "ValidationException" if is_size_limit(&detail) => StoreError::Refused { operation, message },
            "ValidationException" => StoreError::Config { operation, message },
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

/// DynamoDB's answers for a key over 2,048 (partition) or 1,024 (sort) bytes and an item over
/// 400 KB: "Size of hashkey has exceeded the maximum size limit", "Hash primary key values must
/// be under 2048 bytes", "Item size has exceeded the maximum allowed size", ...
fn is_size_limit(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    (detail.contains("size") && detail.contains("exceeded")) || detail.contains("must be under")
}

fn subject_pk(subject: &Subject) -> String {
    match subject {
        Subject::Incident(id) => format!("INC#{id}"),
        Subject::Record(id) => format!("REC#{id}"),
    }
}

/// The sort key of a subject's item.
const SUBJECT_SK: &str = "WATERMARK";
/// A mark's attribute: `m:<mark>`, one top-level number each (a map would need to exist first).
const MARK_PREFIX: &str = "m:";
/// An unfinished event's progress: `d:<event id>`, a string set of done action keys.
const PROGRESS_PREFIX: &str = "d:";
/// Free, expired, or ours already.
const LEASE_FREE: &str = "attribute_not_exists(lease_until) OR lease_until < :now OR lease_holder = :h";

/// An update expression of a subject's item, built clause by clause (each attribute once).
#[derive(Debug, Clone, Default)]
struct SubjectExpression {
    sets: Vec<String>,
    removes: Vec<String>,
    /// ADD and DELETE actions (each keyword once in an expression).
    adds: Vec<String>,
    deletes: Vec<String>,
    names: std::collections::HashMap<String, String>,
    values: std::collections::HashMap<String, AttributeValue>,
}

impl SubjectExpression {
    fn name(&mut self, name: String) -> String {
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), name);
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// The expression, or `None` when there is nothing to write.
    fn text(&self) -> Option<String> {
        let mut clauses = Vec::new();
        if !self.sets.is_empty() {
            clauses.push(format!("SET {}", self.sets.join(", ")));
        }
        if !self.removes.is_empty() {
            clauses.push(format!("REMOVE {}", self.removes.join(", ")));
        }
        if !self.adds.is_empty() {
            clauses.push(format!("ADD {}", self.adds.join(", ")));
        }
        if !self.deletes.is_empty() {
            clauses.push(format!("DELETE {}", self.deletes.join(", ")));
        }
        (!clauses.is_empty()).then(|| clauses.join(" "))
    }
}

fn link_from(item: &Item, incident_side: bool) -> Result<Link, StoreError> {
    let pk = get_s(item, "pk")?;
    let sk = get_s(item, "sk")?;
    let (inc, rec) = if incident_side { (pk, sk) } else { (sk, pk) };
    Ok(Link {
        incident_id: inc.strip_prefix("INC#").ok_or_else(|| corrupt(item, "not a link".into()))?.into(),
        record: RecordRef {
            object: get_s(item, "object")?.into(),
            id: rec.strip_prefix("REC#").ok_or_else(|| corrupt(item, "not a link".into()))?.into(),
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
            item.insert("object".into(), s(link.record.object.as_str()));
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

    async fn lease(
        &self,
        subject: &Subject,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(subject_pk(subject)))
            .key("sk", s(SUBJECT_SK))
            .update_expression("SET lease_holder = :h, lease_until = :u")
            .condition_expression(LEASE_FREE)
            .expression_attribute_values(":h", s(holder))
            .expression_attribute_values(":u", n(millis(until)))
            .expression_attribute_values(":now", n(millis(now)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lease::Acquired),
            Err(err) if Self::is_condition_failure(&err) => {
                let until = err
                    .as_service_error()
                    .and_then(|e| match e {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                            c,
                        ) => c.item(),
                        _ => None,
                    })
                    .and_then(|item| from_millis(item, "lease_until").ok());
                Ok(Lease::Held { until })
            }
            Err(err) => Err(self.error("UpdateItem", err)),
        }
    }

    /// One UpdateItem; the lease is given back under the condition that `holder` still holds it,
    /// and when it does not, the rest is written without that part.
    async fn update_subject(
        &self,
        subject: &Subject,
        holder: Option<&str>,
        update: &SubjectUpdate,
    ) -> Result<(), StoreError> {
        let mut expression = SubjectExpression::default();
        if let Some(at) = update.at.filter(|_| !update.marks.is_empty()) {
            let value = expression.value(n(millis(at)));
            for mark in &update.marks {
                let name = expression.name(format!("{MARK_PREFIX}{mark}"));
                expression.sets.push(format!("{name} = {value}"));
            }
        }
        if update.opened {
            let value = expression.value(AttributeValue::Bool(true));
            expression.sets.push(format!("opened = {value}"));
        }
        if let Some(seen) = &update.seen {
            let json = serde_json::to_string(seen).map_err(|e| StoreError::Unavailable {
                operation: "UpdateItem",
                message: format!("the seen fields do not serialise: {e}"),
            })?;
            let value = expression.value(s(&json));
            expression.sets.push(format!("seen = {value}"));
        }
        if let Some(status_update) = &update.status_update {
            let json = serde_json::to_string(status_update).map_err(|e| StoreError::Unavailable {
                operation: "UpdateItem",
                message: format!("the status update does not serialise: {e}"),
            })?;
            let value = expression.value(s(&json));
            expression.sets.push(format!("status_update = {value}"));
        }
        match &update.progress {
            // ADD joins the set kept (an empty set is no value DynamoDB takes: nothing to add).
            Some(Progress::Keep { event_id, done }) if !done.is_empty() => {
                let name = expression.name(format!("{PROGRESS_PREFIX}{event_id}"));
                let value = expression.value(AttributeValue::Ss(done.clone()));
                expression.adds.push(format!("{name} {value}"));
            }
            Some(Progress::Keep { .. }) => {}
            Some(Progress::Clear { event_id }) => {
                let name = expression.name(format!("{PROGRESS_PREFIX}{event_id}"));
                expression.removes.push(name);
            }
            None => {}
        }
        match &update.pending {
            Some(PendingChange::List(event)) => {
                let value = expression.value(AttributeValue::Ss(vec![pending_entry(event)]));
                expression.adds.push(format!("pending {value}"));
            }
            Some(PendingChange::Unlist(event)) => {
                // The entry as this build writes it, and as builds before per-envelope entries did.
                let value =
                    expression.value(AttributeValue::Ss(vec![pending_entry(event), legacy_pending_entry(event)]));
                expression.deletes.push(format!("pending {value}"));
            }
            None => {}
        }
        for releasing in [holder.is_some(), false] {
            let mut expression = expression.clone();
            let mut condition = None;
            if releasing {
                expression.removes.extend(["lease_holder".to_string(), "lease_until".to_string()]);
                let value = expression.value(s(holder.unwrap_or_default()));
                condition = Some(format!("lease_holder = {value}"));
            }
            let Some(text) = expression.text() else { return Ok(()) };
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(subject_pk(subject)))
                .key("sk", s(SUBJECT_SK))
                .update_expression(text)
                .set_condition_expression(condition)
                .set_expression_attribute_names((!expression.names.is_empty()).then_some(expression.names))
                .set_expression_attribute_values((!expression.values.is_empty()).then_some(expression.values))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                // Not the holder (its lease ran out and was taken): write the rest alone.
                Err(err) if releasing && Self::is_condition_failure(&err) => {
                    tracing::warn!(subject = %subject.key(), "the subject's lease was no longer held when given back");
                }
                Err(err) => return Err(self.error("UpdateItem", err)),
            }
        }
        Ok(())
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
            if sk == SUBJECT_SK {
                for name in item.keys() {
                    if let Some(mark) = name.strip_prefix(MARK_PREFIX) {
                        state.marks.insert(mark.to_string(), from_millis(&item, name)?);
                    }
                }
                state.opened = matches!(item.get("opened"), Some(AttributeValue::Bool(true)));
                for (name, value) in &item {
                    if let Some(event_id) = name.strip_prefix(PROGRESS_PREFIX) {
                        let done = value.as_ss().map_err(|_| corrupt(&item, format!("{name} is not a string set")))?;
                        state.progress.insert(event_id.to_string(), done.clone());
                    }
                }
                if let Some(seen) = item.get("seen") {
                    let json = seen.as_s().map_err(|_| corrupt(&item, "seen is not a string".into()))?;
                    state.seen =
                        Some(serde_json::from_str(json).map_err(|e| corrupt(&item, format!("seen is not JSON: {e}")))?);
                }
                if let Some(update) = item.get("status_update") {
                    let json = update.as_s().map_err(|_| corrupt(&item, "status_update is not a string".into()))?;
                    state.status_update = Some(
                        serde_json::from_str(json)
                            .map_err(|e| corrupt(&item, format!("status_update is not JSON: {e}")))?,
                    );
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

/// A pending event as a string-set element: `<13-digit ms>#<envelope id>#<event id>`, so that the
/// set sorts by time and two envelopes of one event are two entries.
fn pending_entry(event: &PendingEvent) -> String {
    format!("{:013}#{}#{}", millis(event.occurred_at), event.envelope_id, event.event_id)
}

/// The entry of builds before per-envelope entries: `<13-digit ms>#<event id>`.
fn legacy_pending_entry(event: &PendingEvent) -> String {
    format!("{:013}#{}", millis(event.occurred_at), event.event_id)
}

fn pending_from(item: &Item, entry: &str) -> Result<PendingEvent, StoreError> {
    let bad = || corrupt(item, format!("pending entry {entry:?} is not <ms>#<envelope id>#<event id>"));
    let (ms, rest) = entry.split_once('#').ok_or_else(bad)?;
    let occurred_at = DateTime::from_timestamp_millis(ms.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    // Envelope ids and event ids hold no `#`; a legacy entry has no envelope id.
    let (envelope_id, event_id) = rest.split_once('#').unwrap_or(("", rest));
    Ok(PendingEvent { occurred_at, event_id: event_id.to_string(), envelope_id: envelope_id.to_string() })
}

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

fn idem_key(key: &str) -> String {
    // Callers bound their keys already; this keeps any other caller from making a key DynamoDB refuses.
    format!("IDEM#{}", shared::model::bounded_key(key))
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

/// What an idempotency item that refused a claim or a turn holds: its result, or whose turn it
/// is until when.
fn claim_of(old: &Item) -> Result<Claim, StoreError> {
    match get_s(old, "status")? {
        COMPLETED => Ok(Claim::Completed { result: get_opt_s(old, "result").unwrap_or_default().to_string() }),
        _ => Ok(Claim::InProgress { until: from_millis(old, "in_progress_until")? }),
    }
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
        claim_of(&old)
    }

    async fn take_turn(
        &self,
        key: &str,
        owner: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(idem_key(key)))
            .key("sk", s("IDEM"))
            .update_expression("SET #status = :in_progress, in_progress_until = :until REMOVE #result")
            .condition_expression(
                "expires_at > :now_s AND ((#status = :completed AND #result = :owner) OR (#status = :in_progress AND in_progress_until <= :now_ms))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#result", "result")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(millis(in_progress_until)))
            .expression_attribute_values(":now_s", n(now.timestamp()))
            .expression_attribute_values(":now_ms", n(millis(now)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Claim::Acquired),
            Err(err) if Self::is_condition_failure(&err) => err,
            Err(err) => return Err(self.error("UpdateItem", err)),
        };
        let old = match err.as_service_error() {
            Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(e)) => {
                e.item.clone()
            }
            _ => None,
        };
        // Gone or past its TTL: the caller asks the gate again.
        let Some(old) = old.filter(|o| get_n(o, "expires_at").is_ok_and(|at| at > now.timestamp())) else {
            return Ok(Claim::InProgress { until: now });
        };
        claim_of(&old)
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

impl DynamoStore {
    /// Audit entries from `since` to `until` (inclusive), oldest first, at most `limit`; the
    /// second value is true when more were left. One Query per day partition (`AUDIT#DAY#<day>`)
    /// with the sort key between the two instants, so a window costs its own entries and one
    /// request per day, never a Scan (`syncctl audit --since/--until`).
    pub async fn audit_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        let instant = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // `#` sorts before every id character and `~` after: the whole millisecond on each side.
        let (from, to) = (format!("{}#", instant(since)), format!("{}#~", instant(until)));
        let mut entries = Vec::new();
        let mut day = since.date_naive();
        while day <= until.date_naive() {
            let mut start = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                    .expression_attribute_values(":pk", s(format!("AUDIT#DAY#{day}")))
                    .expression_attribute_values(":from", s(&from))
                    .expression_attribute_values(":to", s(&to))
                    .scan_index_forward(true)
                    .limit((limit + 1 - entries.len().min(limit)) as i32)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| self.error("Query", e))?;
                for item in out.items.unwrap_or_default() {
                    if entries.len() == limit {
                        return Ok((entries, true));
                    }
                    entries.push(audit_from(&item)?);
                }
                start = out.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        Ok((entries, false))
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
        service_with(code, "from the service")
    }

    fn service_with(code: &str, message: &str) -> SdkError<GetItemError, ()> {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
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
    fn a_key_or_item_over_its_size_limit_is_a_permanent_error_of_that_event() {
        for detail in [
            "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of 2048 bytes",
            "Hash primary key values must be under 2048 bytes",
            "Item size has exceeded the maximum allowed size",
        ] {
            let err = store().error("PutItem", service_with("ValidationException", detail));
            assert!(matches!(err, StoreError::Refused { operation: "PutItem", .. }), "{detail}: {err:?}");
            assert!(err.is_permanent() && !err.is_transient());
            assert!(err.to_string().contains("dead-lettered"), "{err}");
        }
        // A table with another key schema refuses every event: the deployment is wrong, not the event.
        let schema = "The provided key element does not match the schema";
        let err = store().error("PutItem", service_with("ValidationException", schema));
        assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
        assert!(!err.is_permanent());
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
