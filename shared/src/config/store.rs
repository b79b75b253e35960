//! The DynamoDB table and how long idempotency records live. The adapters build the stores
//! from it (`adapters::dynamodb::stores_of`).

use std::time::Duration;

use super::ConfigError;
use super::vars::Vars;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// DynamoDB table for links, idempotency, audit, rules and breakers (`TABLE_NAME`).
    pub table_name: String,
    /// Idempotency records live this long (`IDEMPOTENCY_TTL_HOURS`).
    pub idempotency_ttl: Duration,
}

impl StoreConfig {
    pub(crate) fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let idempotency_hours = vars.seconds("IDEMPOTENCY_TTL_HOURS", 72, "a whole number of hours")?.as_secs();
        Ok(Self {
            table_name: vars.required("TABLE_NAME", "the DynamoDB table the stack created")?,
            idempotency_ttl: Duration::from_secs(idempotency_hours * 3600),
        })
    }
}
