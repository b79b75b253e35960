//! Retry: the queued envelope, backoff with jitter, the queue trait and its SQS implementation,
//! and the circuit breaker.

pub mod backoff;
pub mod breaker;
pub mod dlq;
pub mod envelope;
pub mod queue;
