//! The queue the retry machinery talks to: SQS in production ([`super::sqs`]), memory in tests
//! and the local demo.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Why a queue call failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable during {operation}: {message}; try again")]
    Unavailable { operation: &'static str, message: String },
    #[error("queue misconfigured during {operation}: {message}; check RETRY_QUEUE_URL/DLQ_URL and the IAM policy")]
    Config { operation: &'static str, message: String },
}

impl QueueError {
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}

/// An unreachable queue is worth trying again; a wrong URL or policy needs a person.
impl crate::class::Classify for QueueError {
    fn class(&self) -> crate::class::Class {
        match self {
            QueueError::Unavailable { .. } => crate::class::Class::Transient,
            QueueError::Config { .. } => crate::class::Class::Auth,
        }
    }
}

/// A message taken from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub receive_count: u32,
    pub sent_at: DateTime<Utc>,
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends `body`, visible after `delay` (capped at 15 minutes). Returns the message id.
    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError>;
    /// Takes up to `max` visible messages, waiting up to `wait` for one.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError>;
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError>;
    /// Makes a received message visible again at once (it was only looked at).
    async fn release(&self, receipt_handle: &str) -> Result<(), QueueError>;
    async fn approximate_depth(&self) -> Result<u64, QueueError>;
    async fn purge(&self) -> Result<(), QueueError>;
}

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    body: String,
    visible_at: DateTime<Utc>,
    receive_count: u32,
    sent_at: DateTime<Utc>,
    receipt: Option<String>,
}

/// An in-process queue honouring delays and a visibility timeout against a [`Clock`].
pub struct MemoryQueue {
    clock: Arc<dyn Clock>,
    visibility: Duration,
    messages: Mutex<VecDeque<Stored>>,
}

impl MemoryQueue {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, visibility: Duration::from_secs(30), messages: Mutex::new(VecDeque::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Stored>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages held, visible or not.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Every body held, in order (for tests and the demo's summary).
    pub fn bodies(&self) -> Vec<String> {
        self.lock().iter().map(|m| m.body.clone()).collect()
    }

    /// When the next message becomes visible, if any is held.
    pub fn next_visible_at(&self) -> Option<DateTime<Utc>> {
        self.lock().iter().map(|m| m.visible_at).min()
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError> {
        let now = self.clock.now();
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().push_back(Stored {
            id: id.clone(),
            body: body.to_string(),
            visible_at: now + chrono_duration(delay.min(MAX_DELAY)),
            receive_count: 0,
            sent_at: now,
            receipt: None,
        });
        Ok(id)
    }

    async fn receive(&self, max: usize, _wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for stored in self.lock().iter_mut() {
            if out.len() >= max {
                break;
            }
            if stored.visible_at <= now {
                stored.receive_count += 1;
                stored.visible_at = now + chrono_duration(self.visibility);
                let receipt = uuid::Uuid::new_v4().to_string();
                stored.receipt = Some(receipt.clone());
                out.push(ReceivedMessage {
                    message_id: stored.id.clone(),
                    receipt_handle: receipt,
                    body: stored.body.clone(),
                    receive_count: stored.receive_count,
                    sent_at: stored.sent_at,
                });
            }
        }
        Ok(out)
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.lock().retain(|m| m.receipt.as_deref() != Some(receipt_handle));
        Ok(())
    }

    async fn release(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let now = self.clock.now();
        for stored in self.lock().iter_mut().filter(|m| m.receipt.as_deref() == Some(receipt_handle)) {
            stored.visible_at = now;
        }
        Ok(())
    }

    async fn approximate_depth(&self) -> Result<u64, QueueError> {
        Ok(self.lock().len() as u64)
    }

    async fn purge(&self) -> Result<(), QueueError> {
        self.lock().clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn delayed_messages_appear_when_their_time_comes_and_deleted_ones_go() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let queue = MemoryQueue::new(clock.clone());
        queue.send("later", Duration::from_secs(60)).await.unwrap();
        queue.send("now", Duration::ZERO).await.unwrap();
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["now"]);
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "invisible while received");
        queue.delete(&got[0].receipt_handle).await.unwrap();
        clock.advance(chrono::Duration::seconds(61));
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got[0].body, "later");
        assert_eq!(queue.approximate_depth().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_unacknowledged_message_comes_back_after_the_visibility_timeout() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let queue = MemoryQueue::new(clock.clone());
        queue.send("x", Duration::ZERO).await.unwrap();
        assert_eq!(queue.receive(1, Duration::ZERO).await.unwrap()[0].receive_count, 1);
        clock.advance(chrono::Duration::seconds(31));
        assert_eq!(queue.receive(1, Duration::ZERO).await.unwrap()[0].receive_count, 2);
    }
}
