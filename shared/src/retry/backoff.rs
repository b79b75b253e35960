//! Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
//! `delay = random(0, min(cap, base * 2^attempt))`. Full jitter spreads a burst of failures
//! so that the retries of a whole outage do not arrive together when the service comes back.

use std::time::Duration;

use rand::RngExt;

/// SQS refuses a `DelaySeconds` above 15 minutes; longer waits are re-enqueued hop by hop.
pub const SQS_MAX_DELAY: Duration = Duration::from_secs(900);

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    /// Upper bound of one wait (before jitter).
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_secs(2), cap: Duration::from_secs(3600) }
    }
}

impl Backoff {
    /// The ceiling for the wait after `attempt` failures (1 = first failure), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u64.saturating_pow(attempt.saturating_sub(1).min(40));
        let ceiling = self.base.as_millis().saturating_mul(u128::from(factor));
        Duration::from_millis(ceiling.min(self.cap.as_millis()) as u64)
    }

    /// A full-jitter wait after `attempt` failures, drawn with `rng`.
    pub fn delay<R: rand::Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rng.random_range(0..=ceiling))
    }
}

/// Splits a wait into what one SQS hop can carry now and what is left for the next hop.
pub fn sqs_hop(wait: Duration) -> (Duration, Duration) {
    // Whole seconds, rounded up: SQS takes DelaySeconds, and a message must never become
    // visible before its time (it would only be sent round again).
    let whole = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
    let now = whole.min(SQS_MAX_DELAY);
    (now, whole.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ceiling_doubles_per_attempt_until_the_cap() {
        let b = Backoff { base: Duration::from_secs(2), cap: Duration::from_secs(60) };
        let ceilings: Vec<u64> = (1..=7).map(|a| b.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, vec![2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(u32::MAX), b.cap);
    }

    #[test]
    fn jittered_delay_stays_within_the_ceiling_and_spreads() {
        let b = Backoff { base: Duration::from_secs(1), cap: Duration::from_secs(900) };
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(5, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(16)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads retries, got {} distinct", distinct.len());
    }

    #[test]
    fn long_waits_are_split_into_sqs_hops() {
        assert_eq!(sqs_hop(Duration::from_secs(30)), (Duration::from_secs(30), Duration::ZERO));
        assert_eq!(sqs_hop(Duration::from_secs(2000)), (Duration::from_secs(900), Duration::from_secs(1100)));
        assert_eq!(
            sqs_hop(Duration::from_millis(1300)),
            (Duration::from_secs(2), Duration::ZERO),
            "rounded up, one hop"
        );
    }
}
