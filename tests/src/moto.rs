//! moto's server, for tests of the DynamoDB, SQS and Secrets Manager code against real AWS APIs.
//!
//! One server per test process, on a free 127.0.0.1 port, started on first use. It dies with the
//! test process: it is started under a small shell watchdog that kills it once the parent is gone.
//! `MOTO_URL` points the tests at an already running server instead.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::OnceCell;

static SERVER: OnceCell<String> = OnceCell::const_new();

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = workspace.join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("moto_server")).find(|p| p.exists()))
        .unwrap_or_else(|| panic!("moto_server not found: run `make test` (it installs moto in .venv)"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

async fn start() -> String {
    if let Ok(url) = std::env::var("MOTO_URL") {
        return url;
    }
    let port = free_port();
    let parent = std::process::id();
    let script = format!(
        "\"$0\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & child=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; kill $child 2>/dev/null"
    );
    let mut watchdog = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(binary())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    // Reap the watchdog when it ends (it ends when the test process or moto does).
    std::thread::spawn(move || watchdog.wait());
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http.get(format!("{url}/moto-api/")).send().await.is_ok() {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not answer on {url} within 30 s");
}

/// The server's URL, starting it on first use.
pub async fn url() -> String {
    SERVER.get_or_init(start).await.clone()
}

/// An SDK configuration pointing at moto (region us-east-1, test credentials).
pub async fn sdk_config() -> SdkConfig {
    let url = url().await;
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// The SDK configuration the bridge's own clients get in the harness: `endpoint` (a fault proxy)
/// or moto, production's timeouts or `timeouts`, and the SDK's standard retries as production has
/// them (3 attempts), with the first backoff shortened from 1 s so that faults cost little time.
pub async fn bridge_sdk_config(endpoint: Option<&str>, timeouts: adapters::wiring::AwsTimeouts) -> SdkConfig {
    let endpoint = match endpoint {
        Some(endpoint) => endpoint.to_string(),
        None => url().await,
    };
    let sdk = sdk_config().await.to_builder().endpoint_url(endpoint).build();
    let retries = aws_config::retry::RetryConfig::standard().with_initial_backoff(Duration::from_millis(20));
    timeouts.apply(&sdk).to_builder().retry_config(retries).build()
}

/// A fresh name for a table, queue or secret.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh table with the stack's schema.
pub async fn table() -> (aws_sdk_dynamodb::Client, String) {
    let client = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let name = unique("pd-sfdc-sync");
    adapters::dynamodb::create_table(&client, &name).await.expect("create table in moto");
    (client, name)
}

/// A retry queue and its DLQ (redrive after `max_receive` receives). Returns (client, retry url, dlq url).
pub async fn queues(max_receive: u32) -> (aws_sdk_sqs::Client, String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let client = aws_sdk_sqs::Client::new(&sdk_config().await);
    let dlq = client.create_queue().queue_name(unique("dlq")).send().await.expect("create dlq");
    let dlq_url = dlq.queue_url().expect("dlq url").to_string();
    let arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq arn")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("arn");
    let redrive =
        serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive.to_string()}).to_string();
    let retry = client
        .create_queue()
        .queue_name(unique("retry"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .expect("create retry queue");
    (client, retry.queue_url().expect("url").to_string(), dlq_url)
}

/// A secret with `value`; returns its name.
pub async fn secret(value: &str) -> (aws_sdk_secretsmanager::Client, String) {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let name = unique("secret");
    client.create_secret().name(&name).secret_string(value).send().await.expect("create secret");
    (client, name)
}
