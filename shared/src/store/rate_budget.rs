//! PagerDuty's rate limit shared by every instance: one token bucket per API token in the table
//! (`RATE#<hash of the token>`), read and written by compare-and-set. The arithmetic lives in
//! [`crate::pagerduty::shared_budget`]; the store only keeps the state and refuses a stale write.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// A bucket as stored. Tokens are kept in thousandths so that a refill of a fraction of a token
/// is not lost; the balance may be negative (tokens reserved by callers who wait for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BucketState {
    pub milli_tokens: i64,
    /// When the balance was computed (ms since the epoch).
    pub updated_ms: i64,
    /// Nobody sends before this (ms since the epoch): PagerDuty answered 429 with a reset.
    pub paused_until_ms: i64,
    /// Compare-and-set: each write is `version + 1` of the state it replaces.
    pub version: u64,
}

/// The answer to [`RateBudgetStore::swap_bucket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The new state is stored.
    Stored,
    /// Another instance wrote first: the state that stands now (`None`: no bucket any more).
    Conflict(Option<BucketState>),
}

/// Where the shared buckets are kept. `key` identifies the token without holding it (a hash).
#[async_trait]
pub trait RateBudgetStore: Send + Sync {
    /// Stores `new` if the stored bucket is `expected` (by version; `None`: no bucket yet).
    /// One request; a refused write returns the bucket that stands, so the caller can compute
    /// again without reading.
    async fn swap_bucket(&self, key: &str, expected: Option<u64>, new: &BucketState) -> Result<Swap, StoreError>;
}
