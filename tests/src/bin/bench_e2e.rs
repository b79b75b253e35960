//! End-to-end throughput, latency and store/API economy of the three functions against the
//! simulators (fixed latency on every request) and the counting in-memory store.
//! Writes target/bench/e2e.json and target/bench/economy.json (see HELPERS bench contract).

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use sim::faults::FaultConfig;
use sim::harness::{Harness, HarnessConfig, ORG_ID, delivery, incident_data};
use sim::pagerduty::RateLimit;

/// Incidents (or Cases) worked on at once: like 64 concurrent Lambda instances.
const IN_FLIGHT: usize = 64;

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
    // PagerDuty's 960 requests/minute REST limit would measure the limit, not the function.
    config.pagerduty.rate_limit = RateLimit { requests: u32::MAX, window: Duration::from_secs(60) };
    Harness::with(config).await
}

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
    Fut: std::future::Future<Output = Vec<f64>>,
{
    let start = Instant::now();
    let latencies: Vec<Vec<f64>> =
        futures::stream::iter(0..lifecycles).map(lifecycle).buffer_unordered(IN_FLIGHT).collect().await;
    Run { latencies_ms: latencies.into_iter().flatten().take(events).collect(), wall: start.elapsed() }
}

/// How long one request took, in ms; a 5xx stops the bench (it would measure a failure).
async fn timed(request: impl std::future::Future<Output = shared::handler::http::Reply>) -> f64 {
    let t = Instant::now();
    let reply = request.await;
    assert!(reply.status < 500, "{}", reply.body);
    t.elapsed().as_secs_f64() * 1e3
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

fn row(section: &str, name: String, value: f64, unit: &str, target: Option<f64>, better: &str, note: &str) -> Value {
    json!({"section": section, "name": name, "value": (value * 1000.0).round() / 1000.0, "unit": unit,
        "target": target, "better": better, "note": note})
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let note =
        format!("{} events, {} ms simulated latency per request, {IN_FLIGHT} in flight", args.events, args.latency_ms);
    let mut e2e = Vec::new();
    let mut economy = Vec::new();
    for (name, dir) in [("pd-to-sfdc", 0), ("sfdc-to-pd", 1)] {
        let h = harness(args.latency_ms).await;
        let run = if dir == 0 { pd_to_sfdc(&h, args.events).await } else { sfdc_to_pd(&h, args.events).await };
        let n = run.latencies_ms.len() as f64;
        e2e.push(row(
            "End to end",
            format!("{name}: throughput"),
            n / run.wall.as_secs_f64(),
            "events/s",
            None,
            "higher",
            &note,
        ));
        e2e.push(row("End to end", format!("{name}: p50 latency"), run.pct(0.5), "ms", None, "lower", &note));
        e2e.push(row("End to end", format!("{name}: p99 latency"), run.pct(0.99), "ms", None, "lower", &note));
        e2e.push(row("End to end", format!("{name}: wall time"), run.wall.as_secs_f64(), "s", None, "lower", &note));
        let counter = h.store_counter.as_ref().expect("count_store is on");
        let total = counter.total();
        let by_op: Vec<String> =
            counter.snapshot().iter().map(|(op, c)| format!("{op} {:.2}", c.calls as f64 / n)).collect();
        let by_op = by_op.join("; ");
        if dir == 0 {
            let sf = h.sf.requests();
            let api = sf.iter().filter(|r| !r.path.starts_with("/services/oauth2")).count() as f64;
            economy.push(row(
                "Economy",
                "Salesforce API calls per PagerDuty event".into(),
                api / n,
                "calls",
                Some(1.0),
                "lower",
                &format!("token mints excluded ({} mints)", sf.len() as f64 - api),
            ));
        } else {
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
        economy.push(row(
            "Economy",
            format!("{name}: DynamoDB requests per event"),
            total.requests as f64 / n,
            "requests",
            Some(4.0),
            "lower",
            &by_op,
        ));
        economy.push(row(
            "Economy",
            format!("{name}: DynamoDB read units per event"),
            total.read_units as f64 / n,
            "RRU",
            None,
            "lower",
            "strongly consistent, items < 4 KB",
        ));
        economy.push(row(
            "Economy",
            format!("{name}: DynamoDB write units per event"),
            total.write_units as f64 / n,
            "WRU",
            None,
            "lower",
            "TransactWriteItems counted 2 WRU per item",
        ));
        economy.push(row(
            "Economy",
            format!("{name}: SQS requests per event"),
            h.retry_queue.bodies().len() as f64 / n,
            "requests",
            None,
            "lower",
            "messages queued for retry (no faults injected)",
        ));
        eprintln!("{name}: done in {:?}", run.wall);
    }
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
