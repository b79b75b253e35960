//! One PagerDuty rate limit across instances (issue 21): ten PagerDuty clients, each with its own
//! per-process limiter as a warm Lambda has, against the simulator's per-token limit. Time is
//! real (the simulator's windows are), so the limit is scaled to 20 requests a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::dynamodb::DynamoStore;
use adapters::http::ReqwestTransport;
use adapters::wiring::AwsTimeouts;
use shared::pagerduty::{PagerdutyClient, RateLimit, SharedBudget, SharedLimit};
use shared::store::RateBudgetStore;
use shared::store::memory::MemoryStore;
use shared::transport::Transport;
use sim::faults::FaultKind;
use sim::moto;
use sim::pagerduty::{PagerdutySim, PdSimConfig};
use url::Url;

const INSTANCES: usize = 10;
/// The simulator's limit: 20 requests per 1-second window, per token.
const SIM_LIMIT: u32 = 20;
/// What each instance's own limiter allows: the whole limit (each alone keeps to it).
const LOCAL: RateLimit = RateLimit { per_minute: SIM_LIMIT * 60, burst: SIM_LIMIT };
/// The shared budget for that limit: 20 in any second, leased up to 5 at a time for 200 ms.
const SHARED: SharedLimit = SharedLimit {
    requests: SIM_LIMIT,
    window: Duration::from_secs(1),
    burst: 5,
    lease_ttl: Duration::from_millis(200),
    max_lease: 5,
};

async fn sim(window: Duration) -> PagerdutySim {
    let config =
        PdSimConfig { rate_limit: sim::pagerduty::RateLimit { requests: SIM_LIMIT, window }, ..PdSimConfig::default() };
    PagerdutySim::start(config).await
}

/// `INSTANCES` clients, as many warm Lambdas: each its own limiter, each its own lease of the
/// budget in `store` when there is one.
fn instances(sim: &PagerdutySim, store: Option<Arc<dyn RateBudgetStore>>) -> Vec<PagerdutyClient> {
    let http: Arc<dyn Transport> = Arc::new(ReqwestTransport::new().expect("http client"));
    (0..INSTANCES)
        .map(|_| {
            let client = PagerdutyClient::new(
                http.clone(),
                Url::parse(&sim.base_url()).unwrap(),
                "sim-token".into(),
                "bridge@example.com".into(),
            )
            .with_rate_limit(LOCAL);
            match &store {
                Some(store) => client.with_shared_budget(Arc::new(SharedBudget::new(store.clone(), SHARED))),
                None => client,
            }
        })
        .collect()
}

/// Every instance makes `calls` reads at once; returns how many failed.
async fn drive(clients: &[PagerdutyClient], calls: usize) -> usize {
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..calls {
            let client = client.clone();
            tasks.push(tokio::spawn(async move { client.find_user_by_email("bridge@example.com").await }));
        }
    }
    let mut failed = 0;
    for task in tasks {
        if let Err(err) = task.await.unwrap() {
            eprintln!("{err}");
            failed += 1;
        }
    }
    failed
}

fn answered_429(sim: &PagerdutySim) -> usize {
    sim.requests().iter().filter(|r| r.status == 429).count()
}

/// Ten instances, 60 calls: three seconds' worth of the limit. The simulator never sees more
/// than the limit in a window and never answers 429; every call goes through.
async fn ten_instances_stay_under_the_limit(store: Arc<dyn RateBudgetStore>, what: &str) {
    let sim = sim(Duration::from_secs(1)).await;
    let clients = instances(&sim, Some(store));
    let start = Instant::now();
    let failed = drive(&clients, 6).await;
    let took = start.elapsed();
    let store_calls: u32 = clients.iter().filter_map(|c| c.shared_budget()).map(|b| b.store_calls()).sum();
    let api_calls: u64 = clients.iter().map(|c| c.api_calls()).sum();
    println!(
        "{what}: {api_calls} PagerDuty calls in {took:?}, {store_calls} budget store calls ({:.2} per PagerDuty call), busiest window {}",
        f64::from(store_calls) / api_calls as f64,
        sim.peak_window_requests("sim-token")
    );
    assert_eq!(failed, 0, "every call waited its turn");
    assert_eq!(api_calls, 60);
    assert_eq!(answered_429(&sim), 0, "no instance met a 429");
    let peak = sim.peak_window_requests("sim-token");
    assert!(peak <= SIM_LIMIT, "{peak} requests in one window, over the limit of {SIM_LIMIT}");
}

#[tokio::test]
async fn ten_instances_sharing_a_budget_in_memory_stay_under_the_limit() {
    ten_instances_stay_under_the_limit(Arc::new(MemoryStore::default()), "memory").await;
}

#[tokio::test]
async fn ten_instances_sharing_a_budget_in_dynamodb_stay_under_the_limit() {
    let (client, table) = moto::table().await;
    ten_instances_stay_under_the_limit(Arc::new(DynamoStore::new(client, table)), "dynamodb (moto)").await;
}

/// The reason for the budget: each instance alone keeps to the limit, together they do not.
#[tokio::test]
async fn ten_instances_without_a_shared_budget_meet_429s() {
    let sim = sim(Duration::from_secs(1)).await;
    let clients = instances(&sim, None);
    let failed = drive(&clients, 6).await;
    assert!(answered_429(&sim) > 0, "the simulator refused some");
    assert!(failed > 0);
    assert!(sim.peak_window_requests("sim-token") > SIM_LIMIT);
}

/// One instance meets a 429 with a 30 s reset: the others, with no lease left, are held back
/// without sending (a transient `not sent`, to be retried after the reset).
#[tokio::test]
async fn a_429_on_one_instance_holds_the_others_back() {
    let sim = sim(Duration::from_secs(30)).await;
    let store: Arc<dyn RateBudgetStore> = Arc::new(MemoryStore::default());
    let clients: Vec<_> =
        instances(&sim, Some(store)).into_iter().map(|c| c.with_max_queue_wait(Duration::from_secs(2))).collect();
    // Every instance leases and spends; then their leases run out.
    assert_eq!(drive(&clients, 1).await, 0);
    tokio::time::sleep(SHARED.lease_ttl + Duration::from_millis(50)).await;
    sim.fail_next(1, FaultKind::RateLimited);
    let err = clients[0].find_user_by_email("bridge@example.com").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)), "{err}");
    let before = sim.requests().len();
    for (i, client) in clients.iter().enumerate().skip(1) {
        let err = client.find_user_by_email("bridge@example.com").await.unwrap_err();
        assert!(err.not_sent() && err.is_transient(), "instance {i}: {err}");
        assert!(err.retry_after().is_some_and(|w| w > Duration::from_secs(28)), "instance {i}: {err}");
    }
    assert_eq!(sim.requests().len(), before, "no instance sent before the reset");
}

/// The table cannot be reached: calls go through under each instance's own limiter, and the
/// store is not asked again on every call.
#[tokio::test]
async fn an_unreachable_budget_store_falls_back_to_the_local_limiter() {
    let sim = sim(Duration::from_secs(1)).await;
    let timeouts = AwsTimeouts {
        connect: Duration::from_millis(200),
        attempt: Duration::from_millis(300),
        operation: Duration::from_secs(1),
    };
    // Nothing listens on port 9 of the loopback: every request is refused.
    let sdk = moto::bridge_sdk_config(Some("http://127.0.0.1:9"), timeouts).await;
    let store: Arc<dyn RateBudgetStore> =
        Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), "pd-sfdc-sync-unreachable"));
    let clients = instances(&sim, Some(store));
    let client = &clients[0];
    for _ in 0..5 {
        client.find_user_by_email("bridge@example.com").await.expect("degraded, not stopped");
    }
    assert_eq!(client.api_calls(), 5);
    assert_eq!(client.shared_budget().unwrap().store_calls(), 1, "asked once, then left alone for a while");
}
