//! A fault injector in front of the real in-memory retry queue: some sends store the message and
//! answer an error all the same (SQS took it, the answer timed out), some fail without storing it.
//! Receiving and deleting are the event source's business, not the bridge's: they pass through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use shared::retry::queue::{MemoryQueue, Queue, QueueError, ReceivedMessage};

/// How often a send misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SendFaults {
    /// The message is stored, then the send answers an error (the hard case: a copy exists that
    /// the sender believes was never sent).
    pub stored_then_error: f64,
    /// The send fails and nothing is stored.
    pub refused: f64,
}

/// The retry queue as the bridge's instances see it.
pub struct FlakyQueue {
    inner: Arc<MemoryQueue>,
    state: Mutex<(StdRng, SendFaults)>,
    stored_then_error: AtomicUsize,
    refused: AtomicUsize,
}

impl FlakyQueue {
    pub fn new(inner: Arc<MemoryQueue>, seed: u64) -> Self {
        Self {
            inner,
            state: Mutex::new((StdRng::seed_from_u64(seed), SendFaults::default())),
            stored_then_error: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        }
    }

    /// Sets the fault rates from now on.
    pub fn set(&self, faults: SendFaults) {
        self.state.lock().unwrap().1 = faults;
    }

    /// Sends so far that were stored and answered an error, and that were refused.
    pub fn injected(&self) -> (usize, usize) {
        (self.stored_then_error.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed))
    }

    fn draw(&self) -> f64 {
        self.state.lock().unwrap().0.random::<f64>()
    }
}

#[async_trait]
impl Queue for FlakyQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError> {
        let faults = self.state.lock().unwrap().1;
        let draw = self.draw();
        if draw < faults.stored_then_error {
            self.inner.send(body, delay).await?;
            self.stored_then_error.fetch_add(1, Ordering::Relaxed);
            return Err(QueueError::Unavailable {
                operation: "SendMessage",
                message: "timed out waiting for the answer (the message was stored)".into(),
            });
        }
        if draw < faults.stored_then_error + faults.refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(QueueError::Unavailable { operation: "SendMessage", message: "ServiceUnavailable".into() });
        }
        self.inner.send(body, delay).await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt_handle).await
    }

    async fn release(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.release(receipt_handle).await
    }

    async fn approximate_depth(&self) -> Result<u64, QueueError> {
        self.inner.approximate_depth().await
    }

    async fn purge(&self) -> Result<(), QueueError> {
        self.inner.purge().await
    }
}
