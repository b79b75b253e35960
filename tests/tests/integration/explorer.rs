//! The schedule explorer of issue 15 (`sim::explorer`): seeded random schedules of people's work
//! in PagerDuty and Salesforce, delivered as the senders deliver (out of order, twice, again after
//! failures, several at once to several instances), under every fault the simulators know, then
//! judged by an oracle of what both systems must hold. Any lost, duplicated, misordered or echoed
//! effect, unexpected dead letter or unsettled event is a counter-example: its seed and schedule
//! are printed.
//!
//! - CI: `cargo test -p pd-sfdc-tests --test integration explorer:: -- --nocapture` runs a fixed
//!   set of seeds; with the senders giving up (reconciliation repairs) by hand or in the soak.
//! - Replay: `EXPLORER_SEED=17` (or `17,40`) runs only those, `EXPLORER_REPEAT=5` each 5 times.
//! - Soak: `make soak SCHEDULES=1000` (release build), the `soak` test below.
//! - Knobs: `EXPLORER_INSTANCES` (per function, 3), `EXPLORER_SUBJECTS` (up to this many incidents
//!   and Cases each, 3), `EXPLORER_TIME_DIVISOR` (production timeouts divided by, 10),
//!   `EXPLORER_JOBS` (schedules at once), `EXPLORER_VERBOSE=1` (print every schedule),
//!   `EXPLORER_GIVE_UP=1` (the "sender gave up" fault, in a replay or the soak;
//!   `EXPLORER_NO_RECONCILE=1` shows what it loses without reconciliation).

use sim::explorer::{Knobs, Totals, explore_many};

/// Seeds CI runs (about a minute and a half in a debug build on the 2-core machine).
const CI_SEEDS: std::ops::Range<u64> = 1..121;
/// The soak starts past the CI seeds so that it explores new schedules.
const SOAK_FIRST_SEED: u64 = 1_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// `EXPLORER_SEED=17` or `EXPLORER_SEED=17,40`, each `EXPLORER_REPEAT` times.
fn replay_seeds() -> Option<Vec<u64>> {
    let seeds: Vec<u64> =
        std::env::var("EXPLORER_SEED").ok()?.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let repeat = env_u64("EXPLORER_REPEAT").unwrap_or(1).max(1);
    Some(seeds.iter().flat_map(|s| std::iter::repeat_n(*s, repeat as usize)).collect())
}

fn verdict(totals: &Totals) {
    println!("explorer: {}", totals.table());
    assert_eq!(
        totals.violations(),
        0,
        "the explorer found counter-examples (seeds and schedules above): {}",
        totals.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_seeds_find_no_lost_duplicated_misordered_or_echoed_effect() {
    let knobs = Knobs::from_env();
    let replay = replay_seeds();
    let seeds = replay.clone().unwrap_or_else(|| CI_SEEDS.collect());
    let jobs = env_u64("EXPLORER_JOBS").unwrap_or(2) as usize;
    let totals = explore_many(seeds, &knobs, jobs).await;
    // Scaled timeouts that leave no call time make every live delivery queue: the live path,
    // and its races with the retry path, would go unexplored (0 of 1,184 in 30 seeds when the
    // settle margin was not scaled).
    assert!(
        replay.is_some() || totals.live_applied * 5 >= totals.deliveries,
        "fewer than one delivery in five applied live ({} of {}): the explorer explores the retry path only",
        totals.live_applied,
        totals.deliveries
    );
    verdict(&totals);
}

/// The same seeds with the senders giving up on some of people's changes for good (PagerDuty
/// after a 4xx, the Queueable after its fifth failure): two reconcile runs in the settle phase
/// must repair each lost change, or report it where it cannot (a later change on the other side,
/// a comment it cannot see missing). In CI since the soak ran 3,000 such schedules (seeds
/// 5000-7999) without a failure; `EXPLORER_GIVE_UP=1 make soak` runs more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_seeds_with_senders_giving_up_are_repaired_or_reported() {
    if replay_seeds().is_some() {
        return; // a replay runs in the test above, with EXPLORER_GIVE_UP=1 when it needs it
    }
    let knobs = Knobs { give_up: true, ..Knobs::from_env() };
    let jobs = env_u64("EXPLORER_JOBS").unwrap_or(2) as usize;
    verdict(&explore_many(CI_SEEDS.collect::<Vec<_>>(), &knobs, jobs).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: make soak SCHEDULES=N"]
async fn soak() {
    let knobs = Knobs::from_env();
    let n = env_u64("EXPLORER_SCHEDULES").unwrap_or(1_000);
    let first = env_u64("EXPLORER_FIRST_SEED").unwrap_or(SOAK_FIRST_SEED);
    let seeds = replay_seeds().unwrap_or_else(|| (first..first + n).collect());
    let jobs = env_u64("EXPLORER_JOBS").unwrap_or(4) as usize;
    verdict(&explore_many(seeds, &knobs, jobs).await);
}
