//! Reconciliation's state on the table: item `RECONCILE#<side>` / `CURSOR`, attribute `at` (ms),
//! moved forward only by a conditional put (two runs at once never move it back); item
//! `RECONCILE#subscription` / `WATCH`, attribute `id`: the webhook subscription the watchdog reads;
//! item `RECONCILE#pagerduty` / `NOTES_MARKED`, attribute `at` (ms), put once: since when the
//! bridge marks the notes it writes comments for.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared::store::{CursorStore, Side, StoreError};

use super::DynamoStore;
use super::item::{from_millis, get_s, millis, n, s};

/// The sort key, beside the PagerDuty cursor, of since when the bridge marks its notes.
const NOTES_MARKED: &str = "NOTES_MARKED";

/// The partition key of the watched subscription.
pub const SUBSCRIPTION_KEY: &str = "RECONCILE#subscription";

/// The partition key of a side's cursor (the retry role's `dynamodb:LeadingKeys` names it).
pub fn cursor_key(side: Side) -> String {
    format!("RECONCILE#{}", side.as_str())
}

#[async_trait]
impl CursorStore for DynamoStore {
    async fn cursor(&self, side: Side) -> Result<Option<DateTime<Utc>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(cursor_key(side)))
            .key("sk", s("CURSOR"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        out.item.map(|item| from_millis(&item, "at")).transpose()
    }

    async fn advance_cursor(&self, side: Side, to: DateTime<Utc>) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(cursor_key(side)))
            .item("sk", s("CURSOR"))
            .item("at", n(millis(to)))
            .condition_expression("attribute_not_exists(pk) OR #at < :to")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":to", n(millis(to)));
        match put.send().await {
            Ok(_) => Ok(()),
            // Another run moved it as far or further: nothing to do.
            Err(err) if Self::is_condition_failure(&err) => Ok(()),
            Err(err) => Err(self.error("PutItem", err)),
        }
    }

    async fn notes_marked_since(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(cursor_key(Side::Pagerduty)))
            .key("sk", s(NOTES_MARKED))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        out.item.map(|item| from_millis(&item, "at")).transpose()
    }

    async fn record_notes_marked_since(&self, at: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(cursor_key(Side::Pagerduty)))
            .item("sk", s(NOTES_MARKED))
            .item("at", n(millis(at)))
            .condition_expression("attribute_not_exists(pk)");
        match put.send().await {
            // As read back: the table keeps milliseconds.
            Ok(_) => Ok(DateTime::from_timestamp_millis(millis(at)).unwrap_or(at)),
            // Recorded before (or by another run at the same time): that one stands.
            Err(err) if Self::is_condition_failure(&err) => {
                self.notes_marked_since().await?.ok_or(StoreError::Unavailable {
                    operation: "GetItem",
                    message: "the notes-marked-since item vanished after a refused put".into(),
                })
            }
            Err(err) => Err(self.error("PutItem", err)),
        }
    }

    async fn watched_subscription(&self) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(SUBSCRIPTION_KEY))
            .key("sk", s("WATCH"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        out.item.map(|item| get_s(&item, "id").map(str::to_string)).transpose()
    }

    async fn watch_subscription(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(SUBSCRIPTION_KEY))
            .item("sk", s("WATCH"))
            .item("id", s(id))
            .send()
            .await
            .map_err(|e| self.error("PutItem", e))?;
        Ok(())
    }
}
