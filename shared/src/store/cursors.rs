//! What reconciliation keeps between runs: per side, the change time up to which a run compared
//! both systems (the next run starts there, less an overlap, see [`crate::reconcile::cursor`]), and
//! the PagerDuty webhook subscription the watchdog reads (`syncctl setup pagerduty-webhook`
//! records it in the table, where the retry function reads it without a secret of its own), and
//! since when the bridge marks the notes it writes comments for.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// The system whose changes a cursor follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Pagerduty,
    Salesforce,
}

impl Side {
    pub const ALL: [Side; 2] = [Side::Pagerduty, Side::Salesforce];

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Pagerduty => "pagerduty",
            Side::Salesforce => "salesforce",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where reconciliation keeps its cursors (the DynamoDB table's `RECONCILE#<side>` items) and the
/// watched subscription (`RECONCILE#subscription`).
#[async_trait]
pub trait CursorStore: Send + Sync {
    /// The side's cursor, `None` before the first run.
    async fn cursor(&self, side: Side) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Moves the side's cursor to `to` when that is later than the stored one; an earlier `to`
    /// changes nothing, so two runs at once never move a cursor back.
    async fn advance_cursor(&self, side: Side, to: DateTime<Utc>) -> Result<(), StoreError>;
    /// Since when the bridge marks every note it writes Case Comments for (the first run of a
    /// version that marks: see `reconcile::pagerduty_side`), when recorded.
    async fn notes_marked_since(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Records `at` as [`Self::notes_marked_since`] unless one is recorded already, and returns
    /// the one that stands (two first runs at once agree).
    async fn record_notes_marked_since(&self, at: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError>;
    /// The id of the PagerDuty webhook subscription the watchdog reads, when one is recorded.
    async fn watched_subscription(&self) -> Result<Option<String>, StoreError>;
    /// Records the subscription to watch (replacing any other).
    async fn watch_subscription(&self, id: &str) -> Result<(), StoreError>;
}
