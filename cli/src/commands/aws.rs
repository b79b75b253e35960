//! Where syncctl finds the deployed stack: the same variables the functions read (set them from
//! the stack outputs, or pass the flags). `AWS_ENDPOINT_URL` points everything at moto in tests.

use std::sync::Arc;

use adapters::dynamodb::DynamoStore;
use adapters::sqs::SqsQueue;
use clap::Args;

/// The stack's resources.
#[derive(Debug, Clone, Args)]
pub struct Stack {
    /// The DynamoDB table (stack output TableName).
    #[arg(long, env = "TABLE_NAME", global = true)]
    pub table: Option<String>,
    /// The retry queue URL (stack output RetryQueueUrl).
    #[arg(long, env = "RETRY_QUEUE_URL", global = true)]
    pub retry_queue_url: Option<String>,
    /// The dead-letter queue URL (stack output DeadLetterQueueUrl).
    #[arg(long, env = "DLQ_URL", global = true)]
    pub dlq_url: Option<String>,
}

/// A missing setting, with how to give it.
pub fn need<'a>(value: &'a Option<String>, flag: &str, var: &str) -> Result<&'a str, String> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("missing {flag} (or set {var}); it is a stack output"))
}

pub async fn sdk() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The secrets cache over Secrets Manager, as the functions read secrets (same cache age).
pub fn secrets(
    config: &shared::config::Config,
    sm: &aws_sdk_secretsmanager::Client,
) -> Arc<shared::secrets::CachedSecrets> {
    let clock: Arc<dyn shared::clock::Clock> = Arc::new(shared::clock::SystemClock);
    let source = Arc::new(adapters::secrets_manager::SecretsManagerSource::new(sm.clone()));
    Arc::new(shared::secrets::CachedSecrets::new(source, clock, config.secrets_max_age))
}

impl Stack {
    pub async fn store(&self) -> Result<Arc<DynamoStore>, String> {
        let table = need(&self.table, "--table", "TABLE_NAME")?;
        Ok(Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk().await), table)))
    }

    pub async fn dlq(&self) -> Result<SqsQueue, String> {
        let url = need(&self.dlq_url, "--dlq-url", "DLQ_URL")?;
        Ok(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk().await), url))
    }

    pub async fn retry_queue(&self) -> Result<SqsQueue, String> {
        let url = need(&self.retry_queue_url, "--retry-queue-url", "RETRY_QUEUE_URL")?;
        Ok(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk().await), url))
    }
}
