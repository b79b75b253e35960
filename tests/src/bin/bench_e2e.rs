//! End-to-end throughput, latency and store/API economy of the three functions (pd-to-sfdc,
//! sfdc-to-pd, retry) against the simulators (fixed latency on every request) and the counting
//! in-memory store, and what a million events cost on AWS at the prices in [`PRICES`].
//! Writes target/bench/e2e.json and target/bench/economy.json (see HELPERS bench contract).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::handler::retry;
use shared::pagerduty::limiter::RateLimit as ClientRateLimit;
use shared::retry::queue::{MAX_DELAY, Queue};
use sim::faults::FaultConfig;
use sim::harness::{Harness, HarnessConfig, ORG_ID, delivery, incident_data, outcome};
use sim::pagerduty::RateLimit;

/// Incidents (or Cases) worked on at once: like 64 concurrent Lambda instances.
const IN_FLIGHT: usize = 64;
/// Messages per retry invocation (template.yaml: the SQS event source's `BatchSize`).
const RETRY_BATCH: usize = 10;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    #[arg(long, default_value = "target/bench")]
    out_dir: String,
}

struct Run {
    latencies_ms: Vec<f64>,
    wall: Duration,
    /// Lambda invocations and their billed duration (each rounded up to the next 1 ms).
    invocations: usize,
    billed_ms: f64,
    /// How many replies said `applied`, `queued`, ... (a bench run should apply everything).
    outcomes: BTreeMap<String, usize>,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
}

fn slow(ms: u64) -> FaultConfig {
    FaultConfig { slow_rate: 1.0, slow_delay: Duration::from_millis(ms), ..FaultConfig::none() }
}

async fn harness(latency_ms: u64) -> Harness {
    let mut config = HarnessConfig::new(include_str!("../../../events/rules.example.yaml"));
    config.count_store = true;
    config.pagerduty.faults = slow(latency_ms);
    config.salesforce.faults = slow(latency_ms);
    // PagerDuty's 960 requests/minute REST limit would measure the limit, not the function: lifted
    // in the simulator and in the bridge's own client (production keeps 960/min, see LIMIT_NOTE).
    config.pagerduty.rate_limit = RateLimit { requests: u32::MAX, window: Duration::from_secs(60) };
    config.pagerduty_client_limit = ClientRateLimit { per_minute: u32::MAX, burst: u32::MAX };
    // Likewise the simulated org's 15,000 API calls a day (the simulator's default; real orgs'
    // allowances depend on edition and licences): at 1.33 calls per PagerDuty event it runs out
    // near 11,000 events and the rest would be queued (see ORG_LIMIT_NOTE).
    config.salesforce.daily_api_limit = u64::MAX;
    // Breaker state cached as in production (the harness's default reads it on every call).
    config.breaker_policy = shared::retry::breaker::BreakerPolicy::default();
    Harness::with(config).await
}

const LIMIT_NOTE: &str = "PagerDuty client limit lifted for the bench: production is 960 calls/min per key, \
    about 640 records/min at 1.5 calls per record";
const ORG_LIMIT_NOTE: &str = "the simulated org's daily API limit (15,000 by default) is lifted: at 1.33 \
    calls per PagerDuty event an org with that allowance runs out near 11,000 events a day";

/// Incident `i`'s life as webhooks: trigger, acknowledge, resolve.
fn incident_events(i: usize) -> Vec<(String, String)> {
    let id = format!("PBENCH{i:06}");
    let t0 = Utc::now();
    [("incident.triggered", "triggered"), ("incident.acknowledged", "acknowledged"), ("incident.resolved", "resolved")]
        .iter()
        .enumerate()
        .map(|(n, (kind, status))| {
            let at = t0 + chrono::Duration::seconds(n as i64);
            (delivery(&format!("EV{i}-{n}"), kind, at, incident_data(&id, status)), format!("WH{i}-{n}"))
        })
        .collect()
}

/// Runs `lifecycles` lifecycles, `IN_FLIGHT` at a time; each sends its steps in order and
/// times every one (latencies in ms, the first `events` of them kept).
async fn run<F, Fut>(lifecycles: usize, events: usize, lifecycle: F) -> Run
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Vec<(f64, String)>>,
{
    let start = Instant::now();
    let steps: Vec<Vec<(f64, String)>> =
        futures::stream::iter(0..lifecycles).map(lifecycle).buffer_unordered(IN_FLIGHT).collect().await;
    let wall = start.elapsed();
    let steps: Vec<(f64, String)> = steps.into_iter().flatten().take(events).collect();
    let mut outcomes = BTreeMap::new();
    for (_, outcome) in &steps {
        *outcomes.entry(outcome.clone()).or_default() += 1;
    }
    let latencies_ms: Vec<f64> = steps.into_iter().map(|(ms, _)| ms).collect();
    // One API Gateway request and one Lambda invocation per event.
    let billed_ms = latencies_ms.iter().map(|ms| ms.ceil()).sum();
    Run { invocations: latencies_ms.len(), latencies_ms, wall, billed_ms, outcomes }
}

/// How long one request took, in ms, and its outcome; a 5xx stops the bench (it would measure a
/// failure).
async fn timed(request: impl std::future::Future<Output = shared::handler::http::Reply>) -> (f64, String) {
    let t = Instant::now();
    let reply = request.await;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(reply.status < 500, "{}", reply.body);
    (ms, reply_outcome(&reply))
}

/// `applied`, `queued`, ...: pd-to-sfdc says it in `status`, sfdc-to-pd counts its records.
fn reply_outcome(reply: &shared::handler::http::Reply) -> String {
    let status = outcome(reply);
    if !status.is_empty() {
        return status;
    }
    let summary: Value = serde_json::from_str(&reply.body).unwrap_or_default();
    ["applied", "skipped", "duplicate", "stale", "queued", "dead_lettered"]
        .into_iter()
        .find(|k| summary[*k].as_u64().is_some_and(|n| n > 0))
        .unwrap_or("other")
        .to_string()
}

fn outcomes_note(outcomes: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = outcomes.iter().map(|(o, n)| format!("{n} {o}")).collect();
    format!("replies: {}", parts.join(", "))
}

async fn pd_to_sfdc(h: &Harness, events: usize) -> Run {
    run(events.div_ceil(3), events, |i| async move {
        let mut out = Vec::new();
        for (body, wh) in incident_events(i) {
            out.push(timed(h.webhook(&body, &wh)).await);
        }
        out
    })
    .await
}

fn case_post(i: usize, operation: &str, status: &str, old: Option<Value>) -> (Value, Value) {
    let id = format!("5005g0000B{i:06}AA");
    let stamp = (Utc::now() + chrono::Duration::seconds(if old.is_some() { 60 } else { 0 }))
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    let case = json!({"attributes": {"type": "Case"}, "Id": id, "CaseNumber": format!("{i:08}"),
        "Subject": "Checkout fails", "Priority": "Sev1", "Status": status,
        "Account": {"attributes": {"type": "Account"}, "Name": "Acme Corp"},
        "LastModifiedDate": stamp, "SystemModstamp": stamp});
    let post = json!({"schema": 1, "org_id": ORG_ID, "object": "Case", "operation": operation,
        "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"}, "sent_at": Utc::now().to_rfc3339(),
        "old": old.map(|o| json!({id.clone(): o})), "new": {id: case.clone()}});
    (post, case)
}

async fn sfdc_to_pd(h: &Harness, events: usize) -> Run {
    run(events.div_ceil(2), events, |i| async move {
        let (insert, open) = case_post(i, "insert", "New", None);
        let (update, _) = case_post(i, "update", "Closed", Some(open));
        let mut out = Vec::new();
        for post in [insert, update] {
            out.push(timed(h.post_records(&post)).await);
        }
        out
    })
    .await
}

/// One retry invocation of the drain: its duration, each message's, and how many it reported failed.
struct Invocation {
    ms: f64,
    per_message: Vec<f64>,
    messages: usize,
    failed: usize,
}

/// What the retry bench queued and drained.
struct RetryStats {
    /// Messages on the queue when the drain started (one per deferred webhook).
    queued: usize,
    /// SQS requests of the drain: a ReceiveMessage and a DeleteMessageBatch per batch, and a
    /// SendMessage per message the function put back on the queue or in the DLQ.
    sqs_requests: usize,
    requeued: usize,
    dead_lettered: usize,
    rounds: usize,
    /// Salesforce requests logged before the drain began.
    sf_before_drain: usize,
}

/// The retry function end to end: `events` pd-to-sfdc webhooks (trigger, acknowledge and resolve
/// of `events / 3` incidents) arrive while Salesforce answers every call with a 500, so the function defers them to the
/// retry queue (the first few after a failed call, the rest because the breaker opened). Salesforce then recovers (back to the fixed latency) and the retry function drains the
/// queue as the SQS event source would: `IN_FLIGHT` concurrent invocations of up to `RETRY_BATCH`
/// messages each, timing every message. The bridge's clock jumps over the backoff delays (the
/// memory queue is on that clock); only the drain is timed.
async fn retry_drain(h: &Harness, events: usize, latency_ms: u64) -> (Run, RetryStats) {
    h.sf.set_faults(FaultConfig { seed: 7, server_error_rate: 1.0, ..FaultConfig::none() });
    // Whole lifecycles: the acknowledge and the resolve of an incident wait behind its trigger.
    let deferred = run(events.div_ceil(3), events, |i| async move {
        let mut replies = Vec::new();
        for (body, wh) in incident_events(i) {
            replies.push(timed(h.webhook(&body, &wh)).await);
        }
        replies
    })
    .await;
    let queued = h.retry_queue.len();
    eprintln!(
        "retry: {} webhooks deferred to {queued} retry messages in {:?} ({})",
        deferred.latencies_ms.len(),
        deferred.wall,
        outcomes_note(&deferred.outcomes)
    );
    h.sf.set_faults(slow(latency_ms));
    let sf_before_drain = h.sf.requests().len();
    if let Some(counter) = &h.store_counter {
        counter.reset();
    }
    // Every message delayed by the handler is visible after at most SQS's longest delay.
    h.clock.advance(chrono::Duration::from_std(MAX_DELAY).expect("15 min") + chrono::Duration::seconds(1));
    let mut latencies_ms = Vec::new();
    let (mut wall, mut invocations, mut billed_ms) = (Duration::ZERO, 0, 0.0);
    let (mut received, mut redelivered, mut sqs_requests, mut rounds) = (0, 0, 0, 0);
    while !h.retry_queue.is_empty() && rounds < 100 {
        if let Some(next) = h.retry_queue.next_visible_at().filter(|next| *next > h.clock.now()) {
            h.clock.set(next);
        }
        rounds += 1;
        let start = Instant::now();
        // Each worker is one concurrent Lambda instance: receive a batch, handle it, delete what
        // it did not report as failed; it stops when nothing is visible.
        let workers: Vec<Vec<Invocation>> = futures::stream::iter(0..IN_FLIGHT)
            .map(|_| async move {
                let mut invocations = Vec::new();
                loop {
                    let batch = h.retry_queue.receive(RETRY_BATCH, Duration::ZERO).await.expect("memory queue");
                    if batch.is_empty() {
                        return invocations;
                    }
                    let deadline = Some(h.clock.now() + chrono::Duration::seconds(60));
                    let invocation = Instant::now();
                    let mut per_message = Vec::new();
                    let mut failed = Vec::new();
                    // handle_batch takes the messages one after another: one call per message
                    // is the same work, timed per message.
                    for m in &batch {
                        let message = retry::Message {
                            message_id: m.message_id.clone(),
                            body: m.body.clone(),
                            receive_count: m.receive_count,
                        };
                        let t = Instant::now();
                        failed.extend(retry::handle_batch(&h.ctx, vec![message], deadline).await);
                        per_message.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    let invocation_ms = invocation.elapsed().as_secs_f64() * 1e3;
                    for m in &batch {
                        if !failed.contains(&m.message_id) {
                            h.retry_queue.delete(&m.receipt_handle).await.expect("memory queue");
                        }
                    }
                    invocations.push(Invocation {
                        ms: invocation_ms,
                        per_message,
                        messages: batch.len(),
                        failed: failed.len(),
                    });
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        wall += start.elapsed();
        for Invocation { ms: invocation_ms, per_message, messages: n, failed } in workers.into_iter().flatten() {
            invocations += 1;
            billed_ms += invocation_ms.ceil();
            latencies_ms.extend(per_message);
            received += n;
            redelivered += failed;
            // ReceiveMessage, and DeleteMessageBatch unless every message failed.
            sqs_requests += 1 + usize::from(failed < n);
        }
    }
    let dead_lettered = h.dlq.len();
    // Every message received was queued at the start, put back by the function, or redelivered
    // after a reported failure (what is left, if the rounds ran out, was queued or put back).
    let requeued = (received + h.retry_queue.len()).saturating_sub(queued + redelivered);
    sqs_requests += requeued + dead_lettered;
    let stats = RetryStats { queued, sqs_requests, requeued, dead_lettered, rounds, sf_before_drain };
    (Run { latencies_ms, wall, invocations, billed_ms, outcomes: BTreeMap::new() }, stats)
}

fn row(section: &str, name: String, value: f64, unit: &str, target: Option<f64>, better: &str, note: &str) -> Value {
    json!({"section": section, "name": name, "value": (value * 1000.0).round() / 1000.0, "unit": unit,
        "target": target, "better": better, "note": note})
}

/// A price used by the cost model: US East (N. Virginia), on-demand, no free tier.
struct Price {
    key: &'static str,
    usd: f64,
    unit: &'static str,
    /// AWS's own page, and where the figure was read (AWS renders its tables in the browser).
    source: &'static str,
}

/// Looked up for issue 10 (December 2026). Free tiers are left out (they matter only below a
/// million events a month); the first volume tier applies (Lambda's first 7.5 billion arm64
/// GB-s, HTTP API's first 300 million requests, SQS's first 100 billion requests a month).
const PRICES: [Price; 6] = [
    Price {
        key: "lambda_request",
        usd: 0.20,
        unit: "USD per 1M Lambda requests",
        source: "https://aws.amazon.com/lambda/pricing/ (as quoted by https://cloudchipr.com/blog/aws-lambda-pricing)",
    },
    Price {
        key: "lambda_arm64_gb_s",
        usd: 0.000_013_333_4,
        unit: "USD per GB-second, arm64, billed per 1 ms",
        source: "https://aws.amazon.com/lambda/pricing/ (as quoted by https://cloudchipr.com/blog/aws-lambda-pricing)",
    },
    Price {
        key: "http_api_request",
        usd: 1.00,
        unit: "USD per 1M HTTP API requests (512 KB metering)",
        source: "https://aws.amazon.com/api-gateway/pricing/ (as quoted by https://docs.aws.amazon.com/whitepapers/latest/best-practices-api-gateway-private-apis-integration/cost-optimization.html)",
    },
    Price {
        key: "dynamodb_wru",
        usd: 0.625,
        unit: "USD per 1M write request units, on-demand, Standard table class",
        source: "https://aws.amazon.com/dynamodb/pricing/on-demand/ (as quoted by https://airbyte.com/data-engineering-resources/dynamodb-pricing, after the November 2024 cut)",
    },
    Price {
        key: "dynamodb_rru",
        usd: 0.125,
        unit: "USD per 1M read request units, on-demand, Standard table class",
        source: "https://aws.amazon.com/dynamodb/pricing/on-demand/ (as quoted by https://airbyte.com/data-engineering-resources/dynamodb-pricing, after the November 2024 cut)",
    },
    Price {
        key: "sqs_standard_request",
        usd: 0.40,
        unit: "USD per 1M SQS standard requests (each 64 KB chunk is one)",
        source: "https://aws.amazon.com/sqs/pricing/ (as quoted by https://cloudburn.io/blog/amazon-sqs-pricing)",
    },
];

fn price(key: &str) -> &'static Price {
    PRICES.iter().find(|p| p.key == key).expect("known price")
}

/// Lambda memory of every function (template.yaml), in GB.
const LAMBDA_GB: f64 = 128.0 / 1024.0;

/// Per-event usage of one function, for the cost model.
struct Usage {
    lambda_requests: f64,
    billed_ms: f64,
    http_api_requests: f64,
    wru: f64,
    rru: f64,
    sqs_requests: f64,
}

/// USD per million events, by component, each with the quantity and price it came from.
fn cost_rows(name: &str, each: &str, u: &Usage) -> Vec<Value> {
    let per_million = |quantity: f64, p: &Price, per: f64| quantity * p.usd / per * 1e6;
    let parts = [
        (
            "Lambda requests",
            per_million(u.lambda_requests, price("lambda_request"), 1e6),
            price("lambda_request"),
            format!("{:.3} invocations per {each}", u.lambda_requests),
        ),
        (
            "Lambda duration",
            per_million(u.billed_ms / 1e3 * LAMBDA_GB, price("lambda_arm64_gb_s"), 1.0),
            price("lambda_arm64_gb_s"),
            format!("{:.1} billed ms per {each} at 128 MB", u.billed_ms),
        ),
        (
            "API Gateway",
            per_million(u.http_api_requests, price("http_api_request"), 1e6),
            price("http_api_request"),
            format!("{:.0} HTTP API requests per {each}", u.http_api_requests),
        ),
        (
            "DynamoDB writes",
            per_million(u.wru, price("dynamodb_wru"), 1e6),
            price("dynamodb_wru"),
            format!("{:.2} WRU per {each}", u.wru),
        ),
        (
            "DynamoDB reads",
            per_million(u.rru, price("dynamodb_rru"), 1e6),
            price("dynamodb_rru"),
            format!("{:.2} RRU per {each}", u.rru),
        ),
        (
            "SQS",
            per_million(u.sqs_requests, price("sqs_standard_request"), 1e6),
            price("sqs_standard_request"),
            format!("{:.3} requests per {each}", u.sqs_requests),
        ),
    ];
    let total: f64 = parts.iter().map(|p| p.1).sum();
    let mut rows = vec![json!({"section": "Cost per million events (us-east-1)", "name": format!("{name}: total"),
        "value": (total * 100.0).round() / 100.0, "unit": "USD", "target": null, "better": "lower",
        "note": format!("per million {each}s: Lambda arm64 128 MB + HTTP API + DynamoDB on-demand + SQS standard; no free tier"),
        "prices": PRICES.iter().map(|p| p.key).collect::<Vec<_>>()})];
    for (part, usd, p, quantity) in parts {
        rows.push(json!({"section": "Cost per million events (us-east-1)", "name": format!("{name}: {part}"),
            "value": (usd * 1000.0).round() / 1000.0, "unit": "USD", "target": null, "better": "lower",
            "note": format!("{quantity} x {} {}", p.usd, p.unit), "prices": [p.key]}));
    }
    rows
}

fn price_rows() -> Vec<Value> {
    PRICES
        .iter()
        .map(|p| {
            json!({"section": "AWS prices used (us-east-1)", "name": p.key, "value": p.usd, "unit": "USD",
                "target": null, "better": "lower", "note": format!("{}; {}", p.unit, p.source),
                "price": {"usd": p.usd, "unit": p.unit, "source": p.source}})
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let note =
        format!("{} events, {} ms simulated latency per request, {IN_FLIGHT} in flight", args.events, args.latency_ms);
    let mut e2e = Vec::new();
    let mut economy = Vec::new();
    let mut costs = Vec::new();
    for name in ["pd-to-sfdc", "sfdc-to-pd", "retry"] {
        let h = harness(args.latency_ms).await;
        let sf_before = h.sf.requests().len();
        let (run, retry_run) = match name {
            "pd-to-sfdc" => (pd_to_sfdc(&h, args.events).await, None),
            "sfdc-to-pd" => (sfdc_to_pd(&h, args.events).await, None),
            _ => {
                let (run, stats) = retry_drain(&h, args.events, args.latency_ms).await;
                (run, Some(stats))
            }
        };
        let n = run.latencies_ms.len() as f64;
        let unit = if name == "retry" { "messages/s" } else { "events/s" };
        let note = match (&retry_run, name) {
            (Some(r), _) => format!(
                "{note}; {} webhooks (trigger, acknowledge, resolve) deferred while Salesforce answered 500, {} messages \
                 drained in batches of {RETRY_BATCH} ({} put back, {} dead-lettered, {} left, {} rounds of \
                 simulated time); {ORG_LIMIT_NOTE}",
                args.events,
                r.queued,
                r.requeued,
                r.dead_lettered,
                h.retry_queue.len(),
                r.rounds
            ),
            (None, "sfdc-to-pd") => format!("{note}; {}; {LIMIT_NOTE}", outcomes_note(&run.outcomes)),
            _ => format!("{note}; {}; {ORG_LIMIT_NOTE}", outcomes_note(&run.outcomes)),
        };
        e2e.push(row(
            "End to end",
            format!("{name}: throughput"),
            n / run.wall.as_secs_f64(),
            unit,
            None,
            "higher",
            &note,
        ));
        let per = if name == "retry" { "per message" } else { "" };
        let each = if name == "retry" { "message" } else { "event" };
        e2e.push(row(
            "End to end",
            format!("{name}: p50 latency {per}").trim_end().into(),
            run.pct(0.5),
            "ms",
            None,
            "lower",
            &note,
        ));
        e2e.push(row(
            "End to end",
            format!("{name}: p99 latency {per}").trim_end().into(),
            run.pct(0.99),
            "ms",
            None,
            "lower",
            &note,
        ));
        e2e.push(row("End to end", format!("{name}: wall time"), run.wall.as_secs_f64(), "s", None, "lower", &note));
        let counter = h.store_counter.as_ref().expect("count_store is on");
        let total = counter.total();
        let by_op: Vec<String> =
            counter.snapshot().iter().map(|(op, c)| format!("{op} {:.2}", c.calls as f64 / n)).collect();
        let by_op = by_op.join("; ");
        match name {
            "pd-to-sfdc" | "retry" => {
                // The retry function's calls are the drain's (not the deferring phase's).
                let from = retry_run.as_ref().map_or(sf_before, |r| r.sf_before_drain);
                let sf = &h.sf.requests()[from..];
                let api = sf.iter().filter(|r| !r.path.starts_with("/services/oauth2")).count() as f64;
                let what = if name == "retry" { "retry message" } else { "PagerDuty event" };
                economy.push(row(
                    "Economy",
                    format!("Salesforce API calls per {what}"),
                    api / n,
                    "calls",
                    (name == "pd-to-sfdc").then_some(1.0),
                    "lower",
                    &format!("token mints excluded ({} mints)", sf.len() as f64 - api),
                ));
            }
            _ => {
                let pd = h.pd.requests().len() as f64;
                economy.push(row(
                    "Economy",
                    "PagerDuty calls per Salesforce record".into(),
                    pd / n,
                    "calls",
                    None,
                    "lower",
                    "one record per post",
                ));
            }
        }
        economy.push(row(
            "Economy",
            format!("{name}: DynamoDB requests per {each}"),
            total.requests as f64 / n,
            "requests",
            (name != "retry").then_some(4.0),
            "lower",
            &by_op,
        ));
        economy.push(row(
            "Economy",
            format!("{name}: DynamoDB read units per {each}"),
            total.read_units as f64 / n,
            "RRU",
            None,
            "lower",
            "strongly consistent, items < 4 KB",
        ));
        economy.push(row(
            "Economy",
            format!("{name}: DynamoDB write units per {each}"),
            total.write_units as f64 / n,
            "WRU",
            None,
            "lower",
            "TransactWriteItems counted 2 WRU per item",
        ));
        let (sqs, sqs_note) = match &retry_run {
            Some(r) => (
                r.sqs_requests as f64,
                "ReceiveMessage + DeleteMessageBatch per batch, SendMessage per message put back or dead-lettered; \
                 the event source's empty receives while idle not counted"
                    .to_string(),
            ),
            None => (h.retry_queue.bodies().len() as f64, "messages queued for retry (no faults injected)".into()),
        };
        economy.push(row(
            "Economy",
            format!("{name}: SQS requests per {each}"),
            sqs / n,
            "requests",
            None,
            "lower",
            &sqs_note,
        ));
        economy.push(row(
            "Economy",
            format!("{name}: Lambda invocations per {each}"),
            run.invocations as f64 / n,
            "invocations",
            None,
            "lower",
            if name == "retry" { "one per batch of up to 10 messages" } else { "one per event" },
        ));
        economy.push(row(
            "Economy",
            format!("{name}: billed Lambda duration per {each}"),
            run.billed_ms / n,
            "ms",
            None,
            "lower",
            &format!(
                "measured handler time rounded up to 1 ms per invocation; includes waiting on the simulators' {} ms",
                args.latency_ms
            ),
        ));
        costs.extend(cost_rows(
            name,
            each,
            &Usage {
                lambda_requests: run.invocations as f64 / n,
                billed_ms: run.billed_ms / n,
                http_api_requests: if name == "retry" { 0.0 } else { 1.0 },
                wru: total.write_units as f64 / n,
                rru: total.read_units as f64 / n,
                sqs_requests: sqs / n,
            },
        ));
        eprintln!("{name}: done in {:?}", run.wall);
    }
    economy.extend(costs);
    economy.extend(price_rows());
    std::fs::create_dir_all(&args.out_dir).expect("create out dir");
    let write = |file: &str, source: &str, rows: Vec<Value>| {
        let path = format!("{}/{file}", args.out_dir);
        std::fs::write(&path, serde_json::to_string_pretty(&json!({"source": source, "rows": rows})).expect("json"))
            .expect("write bench json");
        println!("{path}");
    };
    write("e2e.json", "e2e", e2e);
    write("economy.json", "economy", economy);
}
