//! Seeded fault injection shared by both simulators.
//!
//! A [`Faults`] instance decides, per request, whether the simulator answers normally or misbehaves.
//! Decisions come from a seeded RNG so that a failing test can be replayed exactly: the same seed and
//! the same request sequence give the same faults. `fail_next` queues deterministic faults that are
//! served before any random draw.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// What the simulator does instead of (or before) answering normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A 5xx answer (PagerDuty: 500 with its error body; Salesforce: 503 `SERVER_UNAVAILABLE`).
    ServerError,
    /// PagerDuty: 429 with rate-limit headers. Salesforce: 403 `REQUEST_LIMIT_EXCEEDED`.
    RateLimited,
    /// Salesforce only: 400 `UNABLE_TO_LOCK_ROW` (PagerDuty treats it as `ServerError`).
    LockRow,
    /// Wait this long, then answer normally (use a delay above the client's timeout for timeouts).
    Slow(Duration),
    /// Close the connection without writing any response.
    Drop,
    /// Do the work (commit it), then close the connection without an answer: the caller cannot
    /// tell that the request succeeded (a lost answer, the hard case for exactly-once).
    LoseAnswer,
}

/// Rates are probabilities in `0.0..=1.0`, drawn independently in the order
/// drop, server error, rate limited, lock row, slow.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    pub seed: u64,
    pub server_error_rate: f64,
    pub rate_limited_rate: f64,
    pub lock_row_rate: f64,
    pub slow_rate: f64,
    pub slow_delay: Duration,
    pub drop_rate: f64,
    /// [`FaultKind::LoseAnswer`]: the request is carried out and its answer lost.
    pub lose_answer_rate: f64,
}

impl Default for FaultConfig {
    /// No faults at all.
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            server_error_rate: 0.0,
            rate_limited_rate: 0.0,
            lock_row_rate: 0.0,
            slow_rate: 0.0,
            slow_delay: Duration::from_millis(200),
            drop_rate: 0.0,
            lose_answer_rate: 0.0,
        }
    }
}

impl FaultConfig {
    /// No faults (same as `default()`), named for readability at call sites.
    pub fn none() -> Self {
        Self::default()
    }
}

struct Inner {
    config: FaultConfig,
    rng: StdRng,
    queued: VecDeque<FaultKind>,
}

/// Thread-safe fault decider.
pub struct Faults {
    inner: Mutex<Inner>,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Faults { inner: Mutex::new(Inner { config, rng, queued: VecDeque::new() }) }
    }

    /// Replace the configuration and re-seed the RNG from `config.seed` (so a run is reproducible from
    /// the moment of the call). Queued `fail_next` faults are kept.
    pub fn set(&self, config: FaultConfig) {
        let mut inner = self.inner.lock().unwrap();
        inner.rng = StdRng::seed_from_u64(config.seed);
        inner.config = config;
    }

    pub fn config(&self) -> FaultConfig {
        self.inner.lock().unwrap().config.clone()
    }

    /// The next `n` requests get `kind`, whatever the rates say.
    pub fn fail_next(&self, n: usize, kind: FaultKind) {
        let mut inner = self.inner.lock().unwrap();
        for _ in 0..n {
            inner.queued.push_back(kind);
        }
    }

    /// Forget queued faults.
    pub fn clear_queued(&self) {
        self.inner.lock().unwrap().queued.clear();
    }

    /// Decide the fate of one request.
    pub fn decide(&self) -> Option<FaultKind> {
        let mut inner = self.inner.lock().unwrap();
        if let Some(kind) = inner.queued.pop_front() {
            return Some(kind);
        }
        let c = inner.config.clone();
        if c.drop_rate <= 0.0
            && c.server_error_rate <= 0.0
            && c.rate_limited_rate <= 0.0
            && c.lock_row_rate <= 0.0
            && c.slow_rate <= 0.0
            && c.lose_answer_rate <= 0.0
        {
            return None;
        }
        // Always draw the same number of values per request so that changing one rate does not shift
        // the sequence of the others.
        let draws: [f64; 5] = std::array::from_fn(|_| inner.rng.random::<f64>());
        // Drawn only when asked for, so that the seeds of configurations without it keep their sequence.
        let lose = if c.lose_answer_rate > 0.0 { inner.rng.random::<f64>() } else { 1.0 };
        if draws[0] < c.drop_rate {
            Some(FaultKind::Drop)
        } else if draws[1] < c.server_error_rate {
            Some(FaultKind::ServerError)
        } else if draws[2] < c.rate_limited_rate {
            Some(FaultKind::RateLimited)
        } else if draws[3] < c.lock_row_rate {
            Some(FaultKind::LockRow)
        } else if draws[4] < c.slow_rate {
            Some(FaultKind::Slow(c.slow_delay))
        } else if lose < c.lose_answer_rate {
            Some(FaultKind::LoseAnswer)
        } else {
            None
        }
    }
}

/// Abort the current connection without a response. The panic unwinds the connection task that
/// `axum::serve` spawned, which drops the socket: the client sees the connection closed before any
/// response byte, exactly like a dropped connection. `resume_unwind` skips the panic hook, so nothing
/// is printed.
pub fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("simulator fault: dropped connection"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(f: &Faults, n: usize) -> Vec<Option<FaultKind>> {
        (0..n).map(|_| f.decide()).collect()
    }

    #[test]
    fn same_seed_gives_the_same_faults() {
        let cfg =
            FaultConfig { seed: 9, server_error_rate: 0.3, drop_rate: 0.1, slow_rate: 0.2, ..FaultConfig::none() };
        let a = draw(&Faults::new(cfg.clone()), 200);
        let b = draw(&Faults::new(cfg.clone()), 200);
        assert_eq!(a, b);
        assert!(a.contains(&Some(FaultKind::ServerError)) && a.contains(&Some(FaultKind::Drop)) && a.contains(&None));
        let other = draw(&Faults::new(FaultConfig { seed: 10, ..cfg }), 200);
        assert_ne!(a, other);
    }

    #[test]
    fn no_rates_means_no_faults_and_queued_faults_come_first() {
        let f = Faults::new(FaultConfig::none());
        assert!(draw(&f, 50).iter().all(Option::is_none));
        f.fail_next(2, FaultKind::LockRow);
        assert_eq!(draw(&f, 3), vec![Some(FaultKind::LockRow), Some(FaultKind::LockRow), None]);
    }

    #[test]
    fn set_reseeds_so_runs_are_reproducible_from_that_point() {
        let cfg = FaultConfig { seed: 1, rate_limited_rate: 0.5, ..FaultConfig::none() };
        let f = Faults::new(cfg.clone());
        let first = draw(&f, 20);
        f.set(cfg);
        assert_eq!(draw(&f, 20), first);
    }
}
