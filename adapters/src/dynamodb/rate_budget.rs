//! The shared PagerDuty rate budget on the table: item `RATE#<hash of the token>` / `BUCKET`,
//! attributes `tokens` (thousandths, may be negative), `updated_ms`, `paused_until_ms`,
//! `version`, `expires_at` (TTL: the bucket of a token no longer used goes after a day). One
//! conditional PutItem per write; a refused one returns the item that stands (ALL_OLD), so the
//! caller computes again without a read.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use shared::store::{BucketState, RateBudgetStore, StoreError, Swap};

use super::DynamoStore;
use super::item::{Item, get_n, n, s};

/// The partition key prefix of the buckets (the functions' `dynamodb:LeadingKeys` name it).
pub const RATE_PREFIX: &str = "RATE#";
const BUCKET_SK: &str = "BUCKET";
/// A bucket unused this long is dropped by the table's TTL (a rotated token's, say).
const BUCKET_TTL_SECS: i64 = 24 * 3600;

/// The partition key of the bucket `key` (a hash of the token, see `shared_budget::key_of`).
pub fn rate_key(key: &str) -> String {
    format!("{RATE_PREFIX}{key}")
}

fn bucket_of(item: &Item) -> Result<BucketState, StoreError> {
    Ok(BucketState {
        milli_tokens: get_n(item, "tokens")?,
        updated_ms: get_n(item, "updated_ms")?,
        paused_until_ms: get_n(item, "paused_until_ms")?,
        version: u64::try_from(get_n(item, "version")?).unwrap_or_default(),
    })
}

#[async_trait]
impl RateBudgetStore for DynamoStore {
    async fn swap_bucket(&self, key: &str, expected: Option<u64>, new: &BucketState) -> Result<Swap, StoreError> {
        let expires_at = new.updated_ms / 1000 + BUCKET_TTL_SECS;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(rate_key(key)))
            .item("sk", s(BUCKET_SK))
            .item("tokens", n(new.milli_tokens))
            .item("updated_ms", n(new.updated_ms))
            .item("paused_until_ms", n(new.paused_until_ms))
            .item("version", n(new.version))
            .item("expires_at", n(expires_at))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put.condition_expression("version = :expected").expression_attribute_values(":expected", n(v)),
        };
        match put.send().await {
            Ok(_) => Ok(Swap::Stored),
            Err(err) if Self::is_condition_failure(&err) => {
                let current = match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(c)) => c.item(),
                    _ => None,
                };
                current.map(bucket_of).transpose().map(Swap::Conflict)
            }
            Err(err) => Err(self.error("PutItem", err)),
        }
    }
}
