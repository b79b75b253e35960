//! [`Queue`] on Amazon SQS.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use chrono::{DateTime, Utc};

use shared::retry::queue::{MAX_DELAY, Queue, QueueError, ReceivedMessage};

/// The retry queue and the dead-letter queue of one deployment.
pub struct Queues {
    pub retry: SqsQueue,
    pub dead_letter: SqsQueue,
}

/// The queues `config` names, over one SQS client of `sdk`.
pub fn queues(config: &shared::config::QueueConfig, sdk: &aws_config::SdkConfig) -> Queues {
    let client = Client::new(sdk);
    Queues {
        retry: SqsQueue::new(client.clone(), &config.retry_queue_url),
        dead_letter: SqsQueue::new(client, &config.dlq_url),
    }
}

/// What `GetQueueAttributes` says about a queue's backlog (`syncctl status`). SQS itself does not
/// give the age of the oldest message (CloudWatch's `ApproximateAgeOfOldestMessage` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Visible, waiting to be received.
    pub waiting: u64,
    /// Received and not yet deleted.
    pub in_flight: u64,
    /// Sent with a delay that has not passed.
    pub delayed: u64,
    /// How long SQS keeps a message before it expires (`MessageRetentionPeriod`).
    pub retention: Duration,
}

/// One SQS queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue's backlog by kind and its retention, in one `GetQueueAttributes`.
    pub async fn backlog(&self) -> Result<Backlog, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .attribute_names(QueueAttributeName::MessageRetentionPeriod)
            .send()
            .await
            .map_err(|e| map("GetQueueAttributes", e))?;
        let attributes = out.attributes();
        let number = |name: QueueAttributeName| {
            attributes.and_then(|a| a.get(&name)).and_then(|v| v.parse::<u64>().ok()).unwrap_or_default()
        };
        Ok(Backlog {
            waiting: number(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: number(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            retention: Duration::from_secs(number(QueueAttributeName::MessageRetentionPeriod)),
        })
    }
}

fn map<E, R>(operation: &'static str, err: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().unwrap_or_default().to_string();
    let message = match (code.as_str(), err.message()) {
        // No answer at all (no connection, a timeout): the causes say why.
        ("", None) => crate::sdk_error::causes(&err),
        (code, message) => format!("{code} {}", message.unwrap_or("(no message)")).trim().to_string(),
    };
    let config = matches!(
        code.as_str(),
        "AccessDenied"
            | "AccessDeniedException"
            | "AWS.SimpleQueueService.NonExistentQueue"
            | "QueueDoesNotExist"
            | "InvalidAddress"
            | "KmsAccessDenied"
    );
    if config { QueueError::Config { operation, message } } else { QueueError::Unavailable { operation, message } }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError> {
        let delay = delay.min(MAX_DELAY).as_secs() as i32;
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .map_err(|e| map("SendMessage", e))?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| map("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| {
                let attr = |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
                ReceivedMessage {
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                    sent_at: attr(MessageSystemAttributeName::SentTimestamp)
                        .and_then(|v| v.parse::<i64>().ok())
                        .and_then(DateTime::<Utc>::from_timestamp_millis)
                        .unwrap_or_else(Utc::now),
                }
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| map("DeleteMessage", e))?;
        Ok(())
    }

    async fn release(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| map("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn approximate_depth(&self) -> Result<u64, QueueError> {
        self.backlog().await.map(|b| b.waiting + b.in_flight + b.delayed)
    }

    async fn purge(&self) -> Result<(), QueueError> {
        self.client.purge_queue().queue_url(&self.url).send().await.map_err(|e| map("PurgeQueue", e))?;
        Ok(())
    }
}
