//! Pause and queue: a circuit breaker per downstream service, kept in the store so that every
//! concurrent Lambda sees the same outage.
//!
//! Closed: calls go through; consecutive transient failures are counted. A run of them, or an
//! exhaustion signal (Salesforce `REQUEST_LIMIT_EXCEEDED`, API usage above the configured share,
//! a 429 storm) opens it. Open: the direction functions queue instead of calling, the retry
//! function holds messages back. After `open_for`, one caller wins the half-open probe; its
//! success closes the breaker and the backlog drains, its failure opens it again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::store::{BreakerRecord, BreakerState, BreakerStore, StoreError};

/// When to open and how long to stay open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive transient failures that open the breaker.
    pub failure_threshold: u32,
    /// How long to stay open before a probe.
    pub open_for: Duration,
    /// A half-open probe that has not reported back after this long is presumed lost.
    pub probe_timeout: Duration,
    /// How long a read of the shared state is reused in this process.
    pub cache_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(120),
            cache_for: Duration::from_secs(5),
        }
    }
}

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: call.
    Call,
    /// This caller won the half-open probe: call once and report the result.
    Probe,
    /// Open: queue instead, and try again no sooner than `until`.
    Wait { until: DateTime<Utc> },
}

/// A failure worth telling the breaker about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// 5xx, timeout, lock contention: counts towards the threshold.
    Transient(String),
    /// The service says it is exhausted (daily API limit, usage share, 429 storm): open now.
    Exhausted(String),
}

/// One service's breaker.
pub struct Breaker {
    service: String,
    store: Arc<dyn BreakerStore>,
    clock: Arc<dyn Clock>,
    policy: BreakerPolicy,
    cached: Mutex<Option<(DateTime<Utc>, Option<BreakerRecord>)>>,
}

impl Breaker {
    pub fn new(
        service: impl Into<String>,
        store: Arc<dyn BreakerStore>,
        clock: Arc<dyn Clock>,
        policy: BreakerPolicy,
    ) -> Self {
        Self { service: service.into(), store, clock, policy, cached: Mutex::new(None) }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    async fn read(&self, fresh: bool) -> Result<Option<BreakerRecord>, StoreError> {
        let now = self.clock.now();
        if !fresh {
            let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some((at, record)) = cached
                && now - at < chrono::Duration::from_std(self.policy.cache_for).unwrap_or_default()
            {
                return Ok(record);
            }
        }
        let record = self.store.get_breaker(&self.service).await?;
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, record.clone()));
        Ok(record)
    }

    fn forget(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn open_until(&self, record: &BreakerRecord) -> DateTime<Utc> {
        record.opened_at.unwrap_or_else(|| self.clock.now())
            + chrono::Duration::from_std(self.policy.open_for).unwrap_or_default()
    }

    /// Current state as last read (for metrics and `syncctl doctor`).
    pub async fn state(&self) -> Result<BreakerState, StoreError> {
        Ok(self.read(false).await?.map_or(BreakerState::Closed, |r| r.state))
    }

    /// May the caller call the service now?
    pub async fn permit(&self) -> Result<Permit, StoreError> {
        let record = self.read(false).await?;
        // Reported on every check, so the "open for N minutes" alarm sees a steady signal.
        crate::telemetry::metrics::breaker_state(
            &self.service,
            record.as_ref().is_some_and(|r| r.state != BreakerState::Closed),
        );
        let Some(record) = record else { return Ok(Permit::Call) };
        let now = self.clock.now();
        match record.state {
            BreakerState::Closed => Ok(Permit::Call),
            BreakerState::Open if now < self.open_until(&record) => {
                Ok(Permit::Wait { until: self.open_until(&record) })
            }
            BreakerState::Open => self.try_probe(record, now).await,
            BreakerState::HalfOpen => {
                let probe_started = record.opened_at.unwrap_or(now);
                let lost =
                    now - probe_started >= chrono::Duration::from_std(self.policy.probe_timeout).unwrap_or_default();
                if lost {
                    self.try_probe(record, now).await
                } else {
                    Ok(Permit::Wait {
                        until: now + chrono::Duration::from_std(self.policy.open_for).unwrap_or_default(),
                    })
                }
            }
        }
    }

    async fn try_probe(&self, record: BreakerRecord, now: DateTime<Utc>) -> Result<Permit, StoreError> {
        let probing = BreakerRecord {
            state: BreakerState::HalfOpen,
            opened_at: Some(now),
            version: record.version + 1,
            ..record.clone()
        };
        self.forget();
        if self.store.put_breaker(&probing, Some(record.version)).await? {
            tracing::info!(service = %self.service, "breaker half-open: probing with one call");
            Ok(Permit::Probe)
        } else {
            Ok(Permit::Wait { until: now + chrono::Duration::from_std(self.policy.open_for).unwrap_or_default() })
        }
    }

    /// Reports a successful call. Closes an open or half-open breaker and clears the count.
    pub async fn record_success(&self) -> Result<(), StoreError> {
        for _ in 0..3 {
            let Some(record) = self.read(false).await? else { return Ok(()) };
            if record.state == BreakerState::Closed && record.failures == 0 {
                return Ok(());
            }
            let closed = BreakerRecord {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: None,
                reason: None,
                version: record.version + 1,
                ..record.clone()
            };
            self.forget();
            if self.store.put_breaker(&closed, Some(record.version)).await? {
                if record.state != BreakerState::Closed {
                    tracing::warn!(service = %self.service, "breaker closed: service answered again, draining the queue");
                    crate::telemetry::metrics::breaker_state(&self.service, false);
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reports a failed call. Returns true when this report opened the breaker.
    pub async fn record_failure(&self, signal: Signal) -> Result<bool, StoreError> {
        for _ in 0..3 {
            let record = self.read(true).await?;
            let now = self.clock.now();
            let (expected, current) = match record {
                Some(r) => (Some(r.version), r),
                None => (
                    None,
                    BreakerRecord {
                        service: self.service.clone(),
                        state: BreakerState::Closed,
                        failures: 0,
                        opened_at: None,
                        reason: None,
                        version: 0,
                    },
                ),
            };
            if current.state == BreakerState::Open {
                return Ok(false);
            }
            let failures = current.failures + 1;
            let (open, reason) = match &signal {
                Signal::Exhausted(reason) => (true, reason.clone()),
                Signal::Transient(reason) => (
                    current.state == BreakerState::HalfOpen || failures >= self.policy.failure_threshold,
                    format!("{failures} consecutive failures, last: {reason}"),
                ),
            };
            let next = BreakerRecord {
                state: if open { BreakerState::Open } else { BreakerState::Closed },
                failures,
                opened_at: if open { Some(now) } else { None },
                reason: Some(reason.clone()),
                version: current.version + 1,
                ..current
            };
            self.forget();
            if self.store.put_breaker(&next, expected).await? {
                if open {
                    tracing::error!(service = %self.service, reason = %reason, "breaker opened: pausing calls and queueing events");
                    crate::telemetry::metrics::breaker_state(&self.service, true);
                }
                return Ok(open);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory::MemoryStore;

    fn setup() -> (Arc<ManualClock>, Breaker, Breaker) {
        let store = Arc::new(MemoryStore::default());
        let clock = Arc::new(ManualClock::new(DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc()));
        let policy = BreakerPolicy { cache_for: Duration::ZERO, ..BreakerPolicy::default() };
        let a = Breaker::new("salesforce", store.clone(), clock.clone(), policy);
        let b = Breaker::new("salesforce", store, clock.clone(), policy);
        (clock, a, b)
    }

    #[tokio::test]
    async fn a_run_of_transient_failures_opens_it_for_everyone() {
        let (_, a, b) = setup();
        for i in 1..5 {
            assert!(!a.record_failure(Signal::Transient(format!("503 #{i}"))).await.unwrap());
            assert_eq!(b.permit().await.unwrap(), Permit::Call);
        }
        assert!(a.record_failure(Signal::Transient("503 #5".into())).await.unwrap());
        assert!(matches!(b.permit().await.unwrap(), Permit::Wait { .. }), "another Lambda sees the outage");
    }

    #[tokio::test]
    async fn a_success_resets_the_count() {
        let (_, a, _) = setup();
        for _ in 0..4 {
            a.record_failure(Signal::Transient("503".into())).await.unwrap();
        }
        a.record_success().await.unwrap();
        for _ in 0..4 {
            assert!(!a.record_failure(Signal::Transient("503".into())).await.unwrap());
        }
    }

    #[tokio::test]
    async fn exhaustion_opens_at_once() {
        let (_, a, _) = setup();
        assert!(a.record_failure(Signal::Exhausted("REQUEST_LIMIT_EXCEEDED".into())).await.unwrap());
        assert!(matches!(a.permit().await.unwrap(), Permit::Wait { .. }));
    }

    #[tokio::test]
    async fn after_the_pause_exactly_one_caller_probes_and_its_success_closes() {
        let (clock, a, b) = setup();
        a.record_failure(Signal::Exhausted("503 storm".into())).await.unwrap();
        clock.advance(chrono::Duration::seconds(61));
        assert_eq!(a.permit().await.unwrap(), Permit::Probe);
        assert!(matches!(b.permit().await.unwrap(), Permit::Wait { .. }), "only one probe at a time");
        a.record_success().await.unwrap();
        assert_eq!(b.permit().await.unwrap(), Permit::Call);
        assert_eq!(b.state().await.unwrap(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_failed_probe_opens_it_again() {
        let (clock, a, _) = setup();
        a.record_failure(Signal::Exhausted("down".into())).await.unwrap();
        clock.advance(chrono::Duration::seconds(61));
        assert_eq!(a.permit().await.unwrap(), Permit::Probe);
        assert!(a.record_failure(Signal::Transient("still 503".into())).await.unwrap());
        assert!(matches!(a.permit().await.unwrap(), Permit::Wait { .. }));
    }

    #[tokio::test]
    async fn a_lost_probe_is_taken_over() {
        let (clock, a, b) = setup();
        a.record_failure(Signal::Exhausted("down".into())).await.unwrap();
        clock.advance(chrono::Duration::seconds(61));
        assert_eq!(a.permit().await.unwrap(), Permit::Probe);
        clock.advance(chrono::Duration::seconds(121));
        assert_eq!(b.permit().await.unwrap(), Permit::Probe, "the first probe never reported back");
    }
}
