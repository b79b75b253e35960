//! Client-side token bucket keeping us under PagerDuty's REST rate limit.
//!
//! PagerDuty allows 960 requests per minute per API key (per user for user keys; see
//! <https://support.pagerduty.com/docs/rest-api-rate-limits>) and answers 429 beyond that.
//! A 200-record Salesforce bulk update can ask for a few hundred calls at once; the bucket
//! makes the excess wait its turn instead of failing. Waiters reserve their slot (the balance
//! may go negative) so they are served in arrival order without polling. Time is tokio's, so
//! tests run it with a paused clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Requests allowed in any 60-second window, and how many of them may go at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    /// PagerDuty's documented per-key limit.
    pub const PAGERDUTY_REST: RateLimit = RateLimit { per_minute: 960, burst: 60 };

    /// A bucket of `burst` tokens refilled at `(per_minute - burst) / 60` per second lets at
    /// most `burst + refill * 60 = per_minute` requests through in any minute.
    fn refill_per_sec(self) -> f64 {
        let burst = self.burst.clamp(1, self.per_minute.max(1));
        (f64::from(self.per_minute.max(1)) - f64::from(burst)).max(1.0) / 60.0
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::PAGERDUTY_REST
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    capacity: f64,
    refill_per_sec: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let capacity = f64::from(limit.burst.clamp(1, limit.per_minute.max(1)));
        RateLimiter {
            capacity,
            refill_per_sec: limit.refill_per_sec(),
            bucket: Mutex::new(Bucket { tokens: capacity, updated: Instant::now() }),
        }
    }

    /// Takes one token, waiting until it is ours.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes one token, waiting for it only if that takes at most `max_wait`; otherwise takes
    /// nothing and returns how long the wait would have been, so the caller can queue the work
    /// instead of spending its Lambda time (or PagerDuty's 429 reset) asleep.
    pub async fn acquire_within(&self, max_wait: Duration) -> Result<(), Duration> {
        let wait = self.try_reserve(max_wait)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Takes one token now and returns how long the caller must wait before using it.
    pub fn reserve(&self) -> Duration {
        self.try_reserve(Duration::MAX).unwrap_or_else(|wait| wait)
    }

    /// [`Self::reserve`] unless the wait would exceed `max_wait` (then nothing is taken).
    pub fn try_reserve(&self, max_wait: Duration) -> Result<Duration, Duration> {
        let mut b = self.bucket.lock().expect("limiter lock");
        self.refill(&mut b);
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            return Ok(Duration::ZERO);
        }
        let wait = Duration::from_secs_f64(-b.tokens / self.refill_per_sec);
        if wait > max_wait {
            b.tokens += 1.0;
            return Err(wait);
        }
        Ok(wait)
    }

    /// PagerDuty said 429 with a reset in `wait`: nobody sends before then.
    pub fn hold_off(&self, wait: Duration) {
        let mut b = self.bucket.lock().expect("limiter lock");
        self.refill(&mut b);
        let debt = wait.as_secs_f64() * self.refill_per_sec;
        b.tokens = b.tokens.min(0.0).min(-debt);
    }

    fn refill(&self, b: &mut Bucket) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        b.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_burst_within_the_bucket_goes_at_once() {
        let l = RateLimiter::new(RateLimit { per_minute: 960, burst: 60 });
        let start = Instant::now();
        for _ in 0..60 {
            l.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_200_call_burst_waits_and_never_exceeds_the_minute_limit() {
        // 60 at once, then 15/s: the 200th call goes at (200-60)/15 = 9.33 s.
        let l = Arc::new(RateLimiter::new(RateLimit::PAGERDUTY_REST));
        let start = Instant::now();
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move {
                    l.acquire().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        let last = *times.last().unwrap();
        assert!(last >= Duration::from_millis(9_300) && last <= Duration::from_millis(9_400), "{last:?}");
        assert_eq!(times.iter().filter(|t| t.is_zero()).count(), 60);
    }

    #[test]
    fn no_window_of_a_minute_admits_more_than_the_limit() {
        let limit = RateLimit { per_minute: 120, burst: 30 };
        let l = RateLimiter::new(limit);
        // Schedule 400 requests as fast as allowed and count the busiest 60 s window.
        let times: Vec<f64> = (0..400).map(|_| l.reserve().as_secs_f64()).collect();
        let busiest = times
            .iter()
            .map(|start| times.iter().filter(|t| **t >= *start && **t < start + 60.0).count())
            .max()
            .unwrap();
        assert!(busiest <= 120, "{busiest}");
        assert!(busiest >= 115, "{busiest}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_cannot_wait_long_enough_is_refused_without_taking_a_token() {
        let l = RateLimiter::new(RateLimit { per_minute: 120, burst: 1 });
        assert_eq!(l.acquire_within(Duration::ZERO).await, Ok(()));
        // The next token comes in 60/119 s.
        let wait = l.acquire_within(Duration::from_millis(100)).await.unwrap_err();
        assert!(wait > Duration::from_millis(500) && wait < Duration::from_millis(510), "{wait:?}");
        // Refused callers left the balance alone: a patient caller waits the same.
        let start = Instant::now();
        assert_eq!(l.acquire_within(Duration::from_secs(1)).await, Ok(()));
        assert!(start.elapsed() < Duration::from_millis(510));
    }

    #[test]
    fn a_429_reset_delays_the_next_caller() {
        let l = RateLimiter::new(RateLimit { per_minute: 960, burst: 60 });
        l.hold_off(Duration::from_secs(10));
        let wait = l.reserve();
        assert!(wait >= Duration::from_secs(10), "{wait:?}");
    }
}
