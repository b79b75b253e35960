//! A retry queue whose sends all fail without storing anything, as SQS does when it is
//! unavailable: what the functions do with an event they can neither finish nor queue.

use std::time::Duration;

use async_trait::async_trait;
use shared::retry::queue::{Queue, QueueError, ReceivedMessage};

pub struct RefusingQueue;

#[async_trait]
impl Queue for RefusingQueue {
    async fn send(&self, _: &str, _: Duration) -> Result<String, QueueError> {
        Err(QueueError::Unavailable { operation: "SendMessage", message: "ServiceUnavailable".into() })
    }
    async fn receive(&self, _: usize, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(vec![])
    }
    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
    async fn release(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
    async fn approximate_depth(&self) -> Result<u64, QueueError> {
        Ok(0)
    }
    async fn purge(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
