//! One PagerDuty rate limit across every instance of the bridge.
//!
//! PagerDuty counts requests per API token, but [`super::RateLimiter`] counts per process: ten
//! warm Lambdas each keeping under 960 a minute send up to 9,600 together, and spend their
//! retries on 429s. The budget is shared instead: one token bucket per API token in the store
//! ([`RateBudgetStore`], the table's `RATE#<hash>` item), from which each instance leases a
//! small block of tokens (up to [`SharedLimit::max_lease`], fewer when its demand is low and
//! the balance is not plentiful) with one compare-and-set write, and spends them locally.
//!
//! Why a block, and why it expires: one store request per PagerDuty request would double every
//! call's latency; a block of ten costs one request per ten calls. A leased token is spent
//! within [`SharedLimit::lease_ttl`] of the moment it became available, or dropped. So in any
//! window `W` the instances together send at most `burst + rate · (W + lease_ttl)` requests;
//! the refill rate is chosen so that this is `requests` (see [`SharedLimit::rate_per_ms`]).
//! Like the local limiter, a lease may reserve tokens not refilled yet (the balance goes
//! negative and the caller waits for them), so waiting instances are served in order without
//! polling the store.
//!
//! A 429 seen by one instance pauses all: it writes `paused_until` into the bucket, and no
//! lease is granted before then (a caller who cannot wait that long fails as not sent,
//! [`super::PagerdutyError::Throttled`]). Tokens the other instances leased already are spent
//! meanwhile: at most one block each, within its `lease_ttl`.
//!
//! When the store fails, the budget steps aside for [`DEGRADED_FOR`] (the per-process limiter
//! alone holds the calls back), says so once in the log and counts it in a metric.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use sha2::Digest;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::limiter::RateLimit;
use crate::store::{BucketState, RateBudgetStore, Swap};

/// How long the budget steps aside after the store failed, before it asks the store again.
pub const DEGRADED_FOR: Duration = Duration::from_secs(30);
/// Compare-and-set attempts of one lease or pause before giving up for this call; after each
/// lost race the next attempt waits a millisecond longer (ten instances racing at once).
const MAX_CONFLICTS: u32 = 32;
/// The metric counting the times the store failed and the budget stepped aside.
pub const BUDGET_DEGRADED: &str = "PagerdutyBudgetDegraded";

/// The limit every instance shares: at most `requests` in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedLimit {
    pub requests: u32,
    pub window: Duration,
    /// The bucket's capacity: how many may go at once.
    pub burst: u32,
    /// How long a leased token may wait to be spent before it is dropped.
    pub lease_ttl: Duration,
    /// The most tokens one lease takes.
    pub max_lease: u32,
}

impl SharedLimit {
    /// PagerDuty's documented per-key limit, 960 a minute, leased ten at a time for a second.
    pub const PAGERDUTY_REST: SharedLimit = SharedLimit {
        requests: 960,
        window: Duration::from_secs(60),
        burst: 60,
        lease_ttl: Duration::from_secs(1),
        max_lease: 10,
    };

    /// The shared limit of a per-process [`RateLimit`] (per minute, with its burst).
    pub fn per_minute(limit: RateLimit) -> Self {
        SharedLimit { requests: limit.per_minute, burst: limit.burst, ..Self::PAGERDUTY_REST }
    }

    fn capacity(&self) -> u32 {
        self.burst.clamp(1, self.requests.max(1))
    }

    fn capacity_milli(&self) -> i64 {
        i64::from(self.capacity()) * 1000
    }

    /// Thousandths of a token refilled per millisecond: `burst + rate · (window + lease_ttl)`
    /// is `requests`, so tokens spent up to `lease_ttl` late still fit in every window.
    pub fn rate_per_ms(&self) -> f64 {
        let span = (self.window + self.lease_ttl).as_millis().max(1) as f64;
        let refilled = (f64::from(self.requests.max(1)) - f64::from(self.capacity())).max(1.0);
        refilled * 1000.0 / span
    }

    fn lease_size_cap(&self) -> u32 {
        self.max_lease.clamp(1, self.capacity())
    }
}

impl Default for SharedLimit {
    fn default() -> Self {
        Self::PAGERDUTY_REST
    }
}

/// Tokens granted by one lease: token `i` may be spent from [`Grant::ready_ms`]`(i)`, when the
/// bucket has refilled enough for it (at once when the balance covered it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    pub tokens: u32,
    /// When the balance `balance_milli` holds (now, or a pause's end).
    pub start_ms: i64,
    pub balance_milli: i64,
    rate_per_ms: f64,
}

impl Grant {
    /// When token `i` (from 0) may be spent: one reservation after another, in order.
    pub fn ready_ms(&self, i: u32) -> i64 {
        let short = (i64::from(i) + 1) * 1000 - self.balance_milli;
        self.start_ms + if short <= 0 { 0 } else { (short as f64 / self.rate_per_ms).ceil() as i64 }
    }
}

/// The balance of `state` at `now_ms` (a bucket not seen yet is full).
fn refilled(limit: &SharedLimit, state: Option<&BucketState>, now_ms: i64) -> BucketState {
    let Some(s) = state else {
        return BucketState {
            milli_tokens: limit.capacity_milli(),
            updated_ms: now_ms,
            paused_until_ms: 0,
            version: 0,
        };
    };
    // Another instance's clock may be ahead: time never moves the bucket back.
    let elapsed = (now_ms - s.updated_ms).max(0) as f64;
    let refill = (elapsed * limit.rate_per_ms()).floor() as i64;
    BucketState {
        milli_tokens: s.milli_tokens.saturating_add(refill).min(limit.capacity_milli()),
        updated_ms: s.updated_ms.max(now_ms),
        ..*s
    }
}

/// Leases up to [`SharedLimit::max_lease`] tokens from `state` at `now_ms`: at least `want`
/// (capped), more while more than twice as many are left, only those ready within
/// `max_wait_ms`. The grant may reserve tokens not refilled yet (each then ready when it is
/// refilled) and never before a pause ends. `Err`: even the first token would take longer than
/// `max_wait_ms`; nothing is taken. Pure: the caller writes the new state.
pub fn take(
    limit: &SharedLimit,
    state: Option<&BucketState>,
    now_ms: i64,
    want: u32,
    max_wait_ms: i64,
) -> Result<(BucketState, Grant), i64> {
    let b = refilled(limit, state, now_ms);
    let plenty = u32::try_from((b.milli_tokens / 2000).max(0)).unwrap_or(u32::MAX);
    let asked = want.max(plenty).clamp(1, limit.lease_size_cap());
    // The balance is as of `updated_ms` (now, or later: a pause's end, another clock ahead).
    let mut grant = Grant {
        tokens: 0,
        start_ms: b.updated_ms.max(b.paused_until_ms),
        balance_milli: b.milli_tokens,
        rate_per_ms: limit.rate_per_ms(),
    };
    // Only the tokens ready within the wait: the debt other callers wait behind stays bounded.
    grant.tokens = (0..asked).take_while(|i| grant.ready_ms(*i) - now_ms <= max_wait_ms).count() as u32;
    if grant.tokens == 0 {
        return Err(grant.ready_ms(0) - now_ms);
    }
    let version = state.map_or(1, |s| s.version + 1);
    let after = b.milli_tokens - i64::from(grant.tokens) * 1000;
    Ok((BucketState { milli_tokens: after, version, ..b }, grant))
}

/// The state pausing every instance until `until_ms` (its balance emptied and refilled only
/// from then on, so the pause is not followed by what built up before or during it), or `None`
/// when a pause as long stands already.
pub fn pause(limit: &SharedLimit, state: Option<&BucketState>, now_ms: i64, until_ms: i64) -> Option<BucketState> {
    let b = refilled(limit, state, now_ms);
    if b.paused_until_ms >= until_ms {
        return None;
    }
    let version = state.map_or(1, |s| s.version + 1);
    // Nothing refills before the pause ends: a lease granted meanwhile is ready after it, and
    // what it takes is not also counted as refilled during the pause.
    Some(BucketState {
        milli_tokens: b.milli_tokens.min(0),
        updated_ms: b.updated_ms.max(until_ms),
        paused_until_ms: until_ms,
        version,
    })
}

/// The store key of a token's bucket: a hash, never the token.
pub fn key_of(token: &str) -> String {
    let digest = sha2::Sha256::digest(format!("pd-sfdc-sync rate budget\0{token}").as_bytes());
    hex::encode(&digest[..16])
}

/// Local time and the epoch milliseconds every instance shares, tied at construction.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    base: Instant,
    base_ms: i64,
}

impl Epoch {
    fn now_ms(&self) -> i64 {
        self.base_ms + Instant::now().saturating_duration_since(self.base).as_millis() as i64
    }

    fn instant(&self, ms: i64) -> Instant {
        self.base + Duration::from_millis((ms - self.base_ms).max(0) as u64)
    }
}

#[derive(Debug, Default)]
struct Local {
    key: String,
    /// The bucket as this instance last saw it (the version a write is conditioned on).
    seen: Option<BucketState>,
    /// The lease being spent, and the next of its tokens.
    grant: Option<Grant>,
    next: u32,
    /// Tokens of the lease dropped unspent (their time ran out).
    dropped: u32,
    /// How many the next lease asks for at least: doubled when a lease was used up, the number
    /// used when some were dropped (a busy instance asks for blocks, a quiet one for single
    /// tokens, so that few expire unspent).
    block: u32,
    degraded_until: Option<Instant>,
}

impl Local {
    fn fresh(key: &str, degraded_until: Option<Instant>) -> Self {
        Local { key: key.to_string(), degraded_until, block: 1, ..Local::default() }
    }

    /// The next token of the lease that can still be spent in time, when it is ready.
    fn next_token(&mut self, epoch: &Epoch, ttl: Duration, now: Instant) -> Option<Instant> {
        let grant = self.grant?;
        while self.next < grant.tokens {
            let ready = epoch.instant(grant.ready_ms(self.next));
            self.next += 1;
            if now <= ready + ttl {
                return Some(ready);
            }
            self.dropped += 1;
        }
        // Used up or run out: size the next lease by what this one served.
        let used = grant.tokens - self.dropped;
        self.block = if self.dropped == 0 { self.block.saturating_mul(2) } else { used.max(1) };
        self.grant = None;
        None
    }

    fn give_back(&mut self) {
        self.next -= 1;
    }
}

/// One instance's side of the shared budget: its lease, and the store the bucket lives in.
pub struct SharedBudget {
    store: Arc<dyn RateBudgetStore>,
    limit: SharedLimit,
    epoch: Epoch,
    local: Mutex<Local>,
    /// Callers of this instance waiting for a token: what the next lease asks for.
    waiting: AtomicU32,
    /// Store round trips (leases and pauses, conflicts included), for measurement.
    store_calls: AtomicU32,
    warned: AtomicBool,
}

impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget").field("limit", &self.limit).finish()
    }
}

impl SharedBudget {
    pub fn new(store: Arc<dyn RateBudgetStore>, limit: SharedLimit) -> Self {
        let base_ms = chrono::Utc::now().timestamp_millis();
        Self::with_epoch(store, limit, base_ms)
    }

    /// [`Self::new`] with "now" at `base_ms` (tests on tokio's paused clock share one epoch).
    pub fn with_epoch(store: Arc<dyn RateBudgetStore>, limit: SharedLimit, base_ms: i64) -> Self {
        SharedBudget {
            store,
            limit,
            epoch: Epoch { base: Instant::now(), base_ms },
            local: Mutex::new(Local::default()),
            waiting: AtomicU32::new(0),
            store_calls: AtomicU32::new(0),
            warned: AtomicBool::new(false),
        }
    }

    pub fn limit(&self) -> SharedLimit {
        self.limit
    }

    /// Store round trips so far.
    pub fn store_calls(&self) -> u32 {
        self.store_calls.load(Ordering::Relaxed)
    }

    /// Takes one token of the bucket `key` (see [`key_of`]), waiting for it if that takes at
    /// most `max_wait`; otherwise takes nothing and returns the wait. A store failure lets the
    /// call through (the per-process limiter still holds it back).
    pub async fn acquire_within(&self, key: &str, max_wait: Duration) -> Result<(), Duration> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let ready = self.take_one(key, max_wait).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if let Some(ready) = ready? {
            tokio::time::sleep_until(ready).await;
        }
        Ok(())
    }

    /// When this caller's token may be spent (`None`: now, unlimited while degraded).
    async fn take_one(&self, key: &str, max_wait: Duration) -> Result<Option<Instant>, Duration> {
        let mut local = self.local.lock().await;
        if local.key != key {
            *local = Local::fresh(key, local.degraded_until);
        }
        let now = Instant::now();
        if local.degraded_until.is_some_and(|until| now < until) {
            return Ok(None);
        }
        if let Some(ready) = local.next_token(&self.epoch, self.limit.lease_ttl, now) {
            let wait = ready.saturating_duration_since(now);
            if wait > max_wait {
                local.give_back();
                return Err(wait);
            }
            return Ok(Some(ready));
        }
        let want = self.waiting.load(Ordering::Relaxed).max(local.block);
        let max_wait_ms = max_wait.as_millis().min(i64::MAX as u128) as i64;
        for attempt in 0..MAX_CONFLICTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
            }
            let now_ms = self.epoch.now_ms();
            let (new, grant) = take(&self.limit, local.seen.as_ref(), now_ms, want, max_wait_ms)
                .map_err(|ms| Duration::from_millis(ms.max(0) as u64))?;
            self.store_calls.fetch_add(1, Ordering::Relaxed);
            match self.store.swap_bucket(key, local.seen.map(|s| s.version), &new).await {
                Ok(Swap::Stored) => {
                    local.seen = Some(new);
                    local.grant = Some(grant);
                    (local.next, local.dropped) = (1, 0);
                    return Ok(Some(self.epoch.instant(grant.ready_ms(0))));
                }
                Ok(Swap::Conflict(current)) => local.seen = current,
                Err(err) => {
                    self.degrade(&mut local, &err);
                    return Ok(None);
                }
            }
        }
        // Contended beyond reason: this call waits its turn in the retry queue.
        Err(Duration::from_millis((1000.0 / self.limit.rate_per_ms()).ceil() as u64))
    }

    /// PagerDuty answered 429 with a reset in `wait`: no instance is granted a token before then.
    pub async fn pause(&self, key: &str, wait: Duration) {
        let mut local = self.local.lock().await;
        if local.key != key {
            *local = Local::fresh(key, local.degraded_until);
        }
        local.grant = None;
        let now_ms = self.epoch.now_ms();
        let until_ms = now_ms + wait.as_millis().min(i64::MAX as u128) as i64;
        for _ in 0..MAX_CONFLICTS {
            let Some(new) = pause(&self.limit, local.seen.as_ref(), self.epoch.now_ms(), until_ms) else {
                return;
            };
            self.store_calls.fetch_add(1, Ordering::Relaxed);
            match self.store.swap_bucket(key, local.seen.map(|s| s.version), &new).await {
                Ok(Swap::Stored) => {
                    local.seen = Some(new);
                    return;
                }
                Ok(Swap::Conflict(current)) => local.seen = current,
                Err(err) => return self.degrade(&mut local, &err),
            }
        }
    }

    fn degrade(&self, local: &mut Local, err: &crate::store::StoreError) {
        local.degraded_until = Some(Instant::now() + DEGRADED_FOR);
        local.seen = None;
        local.grant = None;
        metrics::counter!(BUDGET_DEGRADED).increment(1);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %err, for_secs = DEGRADED_FOR.as_secs(),
                "the shared PagerDuty rate budget is unreachable; this instance keeps to its own limit until it answers again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::store::memory::MemoryStore;
    use async_trait::async_trait;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    const SMALL: SharedLimit = SharedLimit {
        requests: 60,
        window: Duration::from_secs(60),
        burst: 10,
        lease_ttl: Duration::from_secs(1),
        max_lease: 5,
    };

    /// The most times of `times` (ms) in any window of `window_ms`.
    fn busiest(times: &mut [i64], window_ms: i64) -> usize {
        times.sort_unstable();
        (0..times.len())
            .map(|i| times[i..].iter().take_while(|t| **t < times[i] + window_ms).count())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_bucket_not_seen_yet_is_full_and_leases_a_block() {
        let (state, grant) = take(&SharedLimit::PAGERDUTY_REST, None, 1_000, 1, 0).unwrap();
        assert_eq!(
            (grant.tokens, grant.ready_ms(0), grant.ready_ms(9)),
            (10, 1_000, 1_000),
            "plenty left: a whole block"
        );
        assert_eq!((state.milli_tokens, state.version), (50_000, 1));
    }

    #[test]
    fn a_low_balance_leases_only_what_is_asked() {
        let low = BucketState { milli_tokens: 3_000, updated_ms: 1_000, paused_until_ms: 0, version: 4 };
        let (state, grant) = take(&SharedLimit::PAGERDUTY_REST, Some(&low), 1_000, 2, 0).unwrap();
        assert_eq!((grant.tokens, grant.ready_ms(1)), (2, 1_000));
        assert_eq!((state.milli_tokens, state.version), (1_000, 5));
    }

    #[test]
    fn a_reservation_waits_for_its_tokens_and_a_longer_wait_takes_nothing() {
        // 50 tokens refilled over 61 s: one every 1.22 s.
        let empty = BucketState { milli_tokens: 0, updated_ms: 0, paused_until_ms: 0, version: 1 };
        let (state, grant) = take(&SMALL, Some(&empty), 0, 2, 5_000).unwrap();
        assert_eq!((grant.tokens, grant.ready_ms(0), grant.ready_ms(1)), (2, 1_220, 2_440), "each when refilled");
        assert_eq!(state.milli_tokens, -2_000);
        // The next one waits behind them.
        assert_eq!(take(&SMALL, Some(&state), 0, 1, 3_000).map(|_| ()), Err(3_660));
        // Only what is ready within the wait is taken.
        let (state, grant) = take(&SMALL, Some(&empty), 0, 5, 2_500).unwrap();
        assert_eq!((grant.tokens, state.milli_tokens), (2, -2_000));
    }

    #[test]
    fn a_pause_holds_every_lease_until_it_ends() {
        let (state, _) = take(&SMALL, None, 0, 1, 0).unwrap();
        let paused = pause(&SMALL, Some(&state), 0, 20_000).expect("a longer pause is written");
        assert_eq!(paused.milli_tokens, 0, "nothing saved up is spent after the pause");
        assert_eq!(pause(&SMALL, Some(&paused), 1_000, 15_000), None, "a shorter pause changes nothing");
        // Refilled from the pause's end only: the first token comes 1.22 s after it.
        assert_eq!(take(&SMALL, Some(&paused), 1_000, 1, 10_000).map(|_| ()), Err(20_220));
        let (_, grant) = take(&SMALL, Some(&paused), 1_000, 1, 20_220).unwrap();
        assert_eq!(grant.ready_ms(0), 21_220);
    }

    #[test]
    fn a_clock_behind_the_bucket_s_never_refills_it() {
        let state = BucketState { milli_tokens: 0, updated_ms: 10_000, paused_until_ms: 0, version: 1 };
        let (after, grant) = take(&SMALL, Some(&state), 9_000, 1, 60_000).unwrap();
        assert!(grant.ready_ms(0) > 10_000, "{grant:?}");
        assert_eq!(after.updated_ms, 10_000);
    }

    #[test]
    fn the_key_names_the_token_without_holding_it() {
        let key = key_of("u+secretsecret");
        assert_eq!(key.len(), 32);
        assert!(!key.contains("secret"));
        assert_eq!(key, key_of("u+secretsecret"));
        assert_ne!(key, key_of("u+othertoken"));
    }

    /// Random instances lease at random times with random demand and spend each token at a random
    /// moment of its lease: no window ever holds more than the limit, and the bucket never grants
    /// more than a simple model allows (its capacity plus what refilled).
    #[test]
    fn randomized_leases_never_exceed_the_limit_in_any_window() {
        let seed: u64 = std::env::var("BUDGET_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
        println!("randomized_leases_never_exceed_the_limit_in_any_window seed {seed} (BUDGET_SEED={seed} to replay)");
        let mut rng = StdRng::seed_from_u64(seed);
        for round in 0..50 {
            let limit = SharedLimit {
                requests: rng.random_range(5..200),
                window: Duration::from_millis(rng.random_range(500..5_000)),
                burst: rng.random_range(1..40),
                lease_ttl: Duration::from_millis(rng.random_range(0..1_000)),
                max_lease: rng.random_range(1..12),
            };
            let mut state: Option<BucketState> = None;
            let (mut now, mut spent, mut granted, mut last_ready) = (0_i64, Vec::new(), 0_i64, 0_i64);
            for _ in 0..400 {
                now += rng.random_range(0..200);
                let want = rng.random_range(1..15);
                let max_wait = rng.random_range(0..3_000);
                if rng.random_range(0..40) == 0 {
                    state = pause(&limit, state.as_ref(), now, now + rng.random_range(0..2_000)).or(state);
                    continue;
                }
                let Ok((next, grant)) = take(&limit, state.as_ref(), now, want, max_wait) else { continue };
                let last = grant.ready_ms(grant.tokens - 1);
                assert!(grant.ready_ms(0) >= now && last - now <= max_wait, "round {round}: {grant:?}");
                assert!(next.milli_tokens <= i64::from(limit.capacity()) * 1000);
                state = Some(next);
                granted += i64::from(grant.tokens);
                last_ready = last_ready.max(last);
                for i in 0..grant.tokens {
                    // Spent at once, late within its time, or never.
                    match rng.random_range(0..4) {
                        0 => {}
                        _ => spent.push(grant.ready_ms(i) + rng.random_range(0..=limit.lease_ttl.as_millis() as i64)),
                    }
                }
            }
            let busiest = busiest(&mut spent, limit.window.as_millis() as i64);
            assert!(busiest as u32 <= limit.requests, "seed {seed} round {round} {limit:?}: {busiest} in one window");
            // The model: what was granted by the last ready time is the capacity plus the refill.
            let model = f64::from(limit.capacity()) + last_ready as f64 * limit.rate_per_ms() / 1000.0;
            assert!(granted as f64 <= model + 1.0, "seed {seed} round {round}: {granted} granted, model {model}");
        }
    }

    async fn run_instances(budgets: &[Arc<SharedBudget>], calls_each: usize) -> Vec<i64> {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for b in budgets {
            for _ in 0..calls_each {
                let b = b.clone();
                tasks.push(tokio::spawn(async move {
                    b.acquire_within("k", Duration::from_secs(3_600)).await.expect("patient caller");
                    Instant::now().duration_since(start).as_millis() as i64
                }));
            }
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times
    }

    #[tokio::test(start_paused = true)]
    async fn ten_instances_sharing_a_bucket_stay_under_one_limit() {
        let store: Arc<dyn RateBudgetStore> = Arc::new(MemoryStore::default());
        let budgets: Vec<_> = (0..10).map(|_| Arc::new(SharedBudget::with_epoch(store.clone(), SMALL, 0))).collect();
        let mut times = run_instances(&budgets, 15).await;
        assert_eq!(times.len(), 150);
        let busiest = busiest(&mut times, 60_000);
        assert!(busiest <= 60, "{busiest} in one minute");
        assert!(busiest >= 50, "the budget is used, not wasted: {busiest}");
        let calls: u32 = budgets.iter().map(|b| b.store_calls()).sum();
        println!("store calls for 150 tokens: {calls}");
    }

    #[tokio::test(start_paused = true)]
    async fn ten_instances_with_their_own_buckets_exceed_the_limit() {
        // The reason for the shared one: each instance alone keeps to the limit, together not.
        let budgets: Vec<_> =
            (0..10).map(|_| Arc::new(SharedBudget::with_epoch(Arc::new(MemoryStore::default()), SMALL, 0))).collect();
        let mut times = run_instances(&budgets, 15).await;
        assert!(busiest(&mut times, 60_000) > 60);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_written_by_one_instance_holds_the_others() {
        let store: Arc<dyn RateBudgetStore> = Arc::new(MemoryStore::default());
        let a = SharedBudget::with_epoch(store.clone(), SMALL, 0);
        let b = SharedBudget::with_epoch(store.clone(), SMALL, 0);
        a.acquire_within("k", Duration::ZERO).await.unwrap();
        b.acquire_within("k", Duration::ZERO).await.unwrap();
        a.pause("k", Duration::from_secs(30)).await;
        // b's lease runs out; its next lease meets the pause.
        tokio::time::advance(Duration::from_millis(1_500)).await;
        let wait = b.acquire_within("k", Duration::from_secs(5)).await.unwrap_err();
        // The pause's 28.5 s left, and one token's refill after it (1.22 s).
        assert!(wait >= Duration::from_millis(29_700) && wait <= Duration::from_millis(29_750), "{wait:?}");
        let start = Instant::now();
        b.acquire_within("k", Duration::from_secs(60)).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(29_700), "{:?}", start.elapsed());
    }

    struct Down(AtomicU32);

    #[async_trait]
    impl RateBudgetStore for Down {
        async fn swap_bucket(&self, _: &str, _: Option<u64>, _: &BucketState) -> Result<Swap, StoreError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(StoreError::Unavailable { operation: "PutItem", message: "connection refused".into() })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_store_lets_calls_through_and_is_asked_again_later() {
        let down = Arc::new(Down(AtomicU32::new(0)));
        let budget = SharedBudget::with_epoch(down.clone(), SMALL, 0);
        for _ in 0..100 {
            budget.acquire_within("k", Duration::ZERO).await.expect("degraded, not stopped");
        }
        assert_eq!(down.0.load(Ordering::Relaxed), 1, "asked once, then left alone");
        tokio::time::advance(DEGRADED_FOR).await;
        budget.acquire_within("k", Duration::ZERO).await.unwrap();
        assert_eq!(down.0.load(Ordering::Relaxed), 2, "asked again after {DEGRADED_FOR:?}");
    }
}
