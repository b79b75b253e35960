//! `tools/bench_coldstart.sh`: cold start of the three release function binaries. Each run spawns
//! a fresh process against the local Runtime API emulator (AWS on moto, PagerDuty and Salesforce
//! on the simulators), queues one realistic first event and times spawn -> first `/response`;
//! peak RSS is VmHWM read just after that response. Also reports the arm64 `bootstrap` sizes.
//! Writes `target/bench/coldstart.json` (the bench contract).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use sim::harness::{INBOUND_SECRET, INTEGRATION_USER, ORG_ID, PD_FROM, WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS};
use sim::pagerduty::{PagerdutySim, PdSimConfig};
use sim::runtime_api::{Invocation, Outcome, RuntimeApi};
use sim::salesforce::{SalesforceSim, SfSimConfig, sign_trigger, test_keys};

#[derive(Parser)]
struct Args {
    /// Folder of the host release binaries.
    #[arg(long, default_value = "/work/target-release/release")]
    bin_dir: PathBuf,
    /// Folder of `cargo lambda build --release --arm64` output (<function>/bootstrap).
    #[arg(long, default_value = "/work/target-release/lambda")]
    lambda_dir: PathBuf,
    #[arg(long, default_value_t = 20)]
    runs: usize,
    #[arg(long, default_value = "events")]
    events: PathBuf,
    #[arg(long, default_value = "target/bench/coldstart.json")]
    out: PathBuf,
}

const FUNCTIONS: &[(&str, &str, &str)] = &[
    (
        "sfdc-to-pd",
        "sfdc-to-pd/case-insert-sev1.json",
        "warm-up at init: the inbound signing secret, the PagerDuty token and the rules (no Salesforce key); the signed record POST reads idempotency in DynamoDB and creates a PagerDuty incident on the simulator",
    ),
    (
        "pd-to-sfdc",
        "pd-to-sfdc/incident-triggered.json",
        "warm-up at init: the webhook signing secret, the PagerDuty token, the rules and a Salesforce session (JWT key read, login); the signed webhook reads idempotency in DynamoDB, then writes to the Salesforce simulator",
    ),
    (
        "retry",
        "retry/sqs-batch.json",
        "warm-up at init: the PagerDuty token, the rules and a Salesforce session; the SQS batch replays its envelopes against DynamoDB and both simulators",
    ),
];

/// What every run shares: the AWS resources on moto and the simulators.
struct World {
    moto: String,
    rules: String,
    queues: (String, String),
    secrets: Vec<(&'static str, String)>,
}

async fn world(events: &Path) -> World {
    let moto = sim::moto::url().await;
    let rules = std::fs::read_to_string(events.join("rules.example.yaml")).expect("events/rules.example.yaml");
    let (_, retry, dlq) = sim::moto::queues(3).await;
    let mut secrets = Vec::new();
    for (var, value) in [
        ("PAGERDUTY_TOKEN_SECRET_ID", json!({"token": "sim-token"})),
        ("PAGERDUTY_WEBHOOK_SECRET_ID", json!({"current": WEBHOOK_SECRET, "previous": WEBHOOK_SECRET_PREVIOUS})),
        (
            "SALESFORCE_JWT_SECRET_ID",
            json!({"consumer_key": "sim-consumer-key", "username": INTEGRATION_USER,
                   "private_key_pem": test_keys().private_key_pem}),
        ),
        ("SALESFORCE_INBOUND_SECRET_ID", json!({"current": INBOUND_SECRET})),
    ] {
        let (_, name) = sim::moto::secret(&value.to_string()).await;
        secrets.push((var, name));
    }
    World { moto, rules, queues: (retry, dlq), secrets }
}

/// A fresh table per run, so every first event is new to the function (no duplicate short-cut).
/// The simulators are fresh per run too (the PagerDuty one would otherwise refuse a second
/// open incident with the same dedup key).
async fn fresh_table(world: &World) -> String {
    let (client, table) = sim::moto::table().await;
    let stores = adapters::dynamodb::stores(client, &table);
    stores.rules.put_rules(&world.rules, "coldstart", chrono::Utc::now()).await.expect("put rules in moto");
    table
}

/// The sample event, with a Salesforce signature made now (the samples' go stale after 5 min).
fn first_event(events: &Path, sample: &str) -> String {
    let path = events.join(sample);
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read event")).expect("json");
    if event["headers"].get("x-pdsync-signature").is_some() {
        let now = chrono::Utc::now().timestamp();
        let body = event["body"].as_str().expect("body").to_string();
        event["headers"]["x-pdsync-timestamp"] = json!(now.to_string());
        event["headers"]["x-pdsync-signature"] = json!(sign_trigger(INBOUND_SECRET, now, body.as_bytes()));
    }
    event.to_string()
}

struct Run<'a> {
    api: &'a RuntimeApi,
    table: &'a str,
    pd: &'a PagerdutySim,
    sf: &'a SalesforceSim,
}

fn spawn(args: &Args, world: &World, function: &str, run: &Run, log: &Path) -> Child {
    let binary = args.bin_dir.join(function);
    let log = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(&binary);
    // Only what Lambda sets, plus the function's configuration.
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", run.api.endpoint())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/01/[$LATEST]coldstart")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SESSION_TOKEN", "testing")
        .env("AWS_ENDPOINT_URL", &world.moto)
        .env("LAMBDA_TASK_ROOT", &args.bin_dir)
        .env("LAMBDA_RUNTIME_DIR", &args.bin_dir)
        .env("_HANDLER", "bootstrap")
        .env("TZ", ":UTC")
        .env("TABLE_NAME", run.table)
        .env("RETRY_QUEUE_URL", &world.queues.0)
        .env("DLQ_URL", &world.queues.1)
        .env("PAGERDUTY_API_BASE", run.pd.base_url())
        .env("PAGERDUTY_FROM_EMAIL", PD_FROM)
        .env("SALESFORCE_LOGIN_URL", run.sf.base_url())
        .env("SALESFORCE_ORG_ID", ORG_ID)
        .env("SALESFORCE_INTEGRATION_USER", INTEGRATION_USER);
    for (var, name) in &world.secrets {
        cmd.env(var, name);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (build it: tools/bench_coldstart.sh)", binary.display()))
}

/// CPU time the process has used so far, over all its threads (ns, from schedstat): how much of
/// the cold start is our own work rather than waiting for moto and the simulators.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One cold start's figures.
struct Start {
    /// Spawn to the first response.
    ms: f64,
    /// Spawn to the first `/next`.
    init_ms: f64,
    /// CPU time used by the process until the first response.
    cpu_ms: f64,
    rss_kib: u64,
}

async fn cold_start(args: &Args, world: &World, function: &str, sample: &str, log: &Path) -> Start {
    let table = fresh_table(world).await;
    let pd = PagerdutySim::start(PdSimConfig::default()).await;
    let sf = SalesforceSim::start(SfSimConfig::default()).await;
    let api = RuntimeApi::start().await;
    api.invoke(Invocation::new(function, first_event(&args.events, sample), 10_000));
    let started = Instant::now();
    let mut child = spawn(args, world, function, &Run { api: &api, table: &table, pd: &pd, sf: &sf }, log);
    let outcome = tokio::time::timeout(Duration::from_secs(15), api.outcome()).await;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let init = api.first_next_at().map(|t| t.duration_since(started).as_secs_f64() * 1000.0).unwrap_or(elapsed);
    let rss = peak_rss_kib(child.id());
    let cpu_ms = cpu_ns(child.id()) as f64 / 1e6;
    let _ = child.kill();
    let _ = child.wait();
    // Each run starts from an empty table and fresh simulators, so one first event may open at
    // most one incident: a second POST (answered "matching dedup key") would be a double create.
    let creates = pd.requests().iter().filter(|r| r.method == "POST" && r.path == "/incidents").count();
    assert!(creates <= 1, "{function}: {creates} POST /incidents for one first event; see {}", log.display());
    match outcome {
        Ok(Some(Outcome::Response { .. })) => Start { ms: elapsed, init_ms: init, cpu_ms, rss_kib: rss },
        other => panic!("{function}: no response to the first event ({other:?}); see {}", log.display()),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// (bytes, label): the arm64 bootstrap, or the host stripped binary when there is none.
fn size(args: &Args, function: &str) -> (u64, String) {
    let arm64 = args.lambda_dir.join(function).join("bootstrap");
    if let Ok(meta) = std::fs::metadata(&arm64) {
        return (meta.len(), "arm64 stripped bootstrap (cargo lambda build --release --arm64)".into());
    }
    let host = std::fs::metadata(args.bin_dir.join(function)).map(|m| m.len()).unwrap_or(0);
    (host, format!("HOST {} stripped release binary: the arm64 build was not available", std::env::consts::ARCH))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let world = world(&args.events).await;
    let logs = args.out.parent().unwrap_or(Path::new(".")).join("coldstart-logs");
    std::fs::create_dir_all(&logs).expect("create log folder");
    let mut rows = Vec::new();
    for (function, sample, includes) in FUNCTIONS {
        let log = logs.join(format!("{function}.log"));
        let mut times = Vec::new();
        let mut inits = Vec::new();
        let mut cpus = Vec::new();
        let mut peak = 0;
        for _ in 0..args.runs {
            let start = cold_start(&args, &world, function, sample, &log).await;
            times.push(start.ms);
            inits.push(start.init_ms);
            cpus.push(start.cpu_ms);
            peak = peak.max(start.rss_kib);
        }
        times.sort_by(f64::total_cmp);
        inits.sort_by(f64::total_cmp);
        cpus.sort_by(f64::total_cmp);
        let (init_p50, cpu_p50) = (percentile(&inits, 0.5), percentile(&cpus, 0.5));
        let (p50, max) = (percentile(&times, 0.5), times[times.len() - 1]);
        println!(
            "{function}: cold start p50 {p50:.1} ms (init {init_p50:.1} ms, CPU {cpu_p50:.1} ms), max {max:.1} ms, peak RSS {:.1} MB",
            peak as f64 / 1024.0
        );
        let note = format!(
            "{} runs, x86_64 release binary, spawn to first /response on a local Runtime API; includes {includes} (all on loopback: moto, simulators)",
            args.runs
        );
        rows.push(
            json!({"section": "Cold start", "name": format!("{function}: start to first invocation handled (p50)"),
            "value": round(p50, 1), "unit": "ms", "target": 50, "better": "lower", "note": note}),
        );
        rows.push(json!({"section": "Cold start", "name": format!("{function}: start to first invocation handled (max)"),
            "value": round(max, 1), "unit": "ms", "target": 50, "better": "lower", "note": format!("worst of {} runs", args.runs)}));
        rows.push(json!({"section": "Cold start", "name": format!("{function}: init, start to first /next (p50)"),
            "value": round(init_p50, 1), "unit": "ms", "target": null, "better": "lower",
            "note": "the init phase alone: config, SDK, start-up secret reads on moto"}));
        rows.push(json!({"section": "Cold start", "name": format!("{function}: CPU time to first invocation handled (p50)"),
            "value": round(cpu_p50, 1), "unit": "ms", "target": null, "better": "lower",
            "note": "user + system time of all the process's threads (schedstat): the rest of the cold start is waiting on moto and the simulators"}));
        rows.push(json!({"section": "Cold start", "name": format!("{function}: peak RSS after first invocation"),
            "value": round(peak as f64 / 1024.0, 1), "unit": "MB", "target": 30, "better": "lower",
            "note": "VmHWM from /proc just after the first response, max over runs (MB = MiB)"}));
        let (bytes, label) = size(&args, function);
        rows.push(json!({"section": "Binary size", "name": format!("{function}: bootstrap size"),
            "value": round(bytes as f64 / 1_048_576.0, 2), "unit": "MiB", "target": null, "better": "lower", "note": label}));
    }
    let report = json!({"source": "coldstart", "rows": rows});
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).expect("create target/bench");
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report).expect("json")).expect("write coldstart.json");
    println!("wrote {}", args.out.display());
}
