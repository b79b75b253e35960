//! The SQS retry queue and dead-letter queue. The adapters build the queues from it
//! (`adapters::sqs::queues`).

use super::ConfigError;
use super::vars::Vars;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// SQS retry queue (`RETRY_QUEUE_URL`).
    pub retry_queue_url: String,
    /// SQS dead-letter queue (`DLQ_URL`).
    pub dlq_url: String,
}

impl QueueConfig {
    pub(crate) fn read(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            retry_queue_url: vars.required("RETRY_QUEUE_URL", "the URL of the retry SQS queue")?,
            dlq_url: vars.required("DLQ_URL", "the URL of the dead-letter SQS queue")?,
        })
    }
}
