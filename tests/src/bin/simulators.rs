//! Starts the PagerDuty and Salesforce simulators on local ports for `make run`.
//!
//! `cargo run -p pd-sfdc-tests --bin simulators -- --pd-port 0 --sf-port 0` prints one JSON line with
//! both base URLs and the test credentials, then serves until Ctrl-C or SIGTERM.

use clap::Parser;
use serde_json::json;
use sim::pagerduty::{PagerdutySim, PdSimConfig, WebhookTarget};
use sim::salesforce::{SalesforceSim, SfSimConfig, TriggerTarget, test_keys};

#[derive(Parser, Debug)]
#[command(about = "PagerDuty and Salesforce simulators for local runs")]
struct Args {
    /// Port of the PagerDuty simulator (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pd_port: u16,
    /// Port of the Salesforce simulator (0 = any free port).
    #[arg(long, default_value_t = 0)]
    sf_port: u16,
    /// Deliver a PagerDuty webhook to this URL on every incident change.
    #[arg(long)]
    pd_webhook_url: Option<String>,
    /// Webhook signing secret(s) (repeat for rotation).
    #[arg(long, default_value = "sim-webhook-secret")]
    pd_webhook_secret: Vec<String>,
    /// Post Apex-trigger payloads to this URL on every Case/CaseComment change.
    #[arg(long)]
    sf_trigger_url: Option<String>,
    /// Inbound secret signing trigger posts.
    #[arg(long, default_value = "sim-inbound-secret")]
    sf_inbound_secret: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let pd_config = PdSimConfig {
        port: args.pd_port,
        webhook: args.pd_webhook_url.clone().map(|url| WebhookTarget {
            url,
            secrets: args.pd_webhook_secret.clone(),
            subscription_id: "PSUB001".into(),
        }),
        ..Default::default()
    };
    let sf_config = SfSimConfig {
        port: args.sf_port,
        trigger: args.sf_trigger_url.clone().map(|url| TriggerTarget {
            url,
            secrets: vec![args.sf_inbound_secret.clone()],
            objects: vec!["Case".into(), "CaseComment".into()],
        }),
        ..Default::default()
    };
    let pd = PagerdutySim::start(pd_config.clone()).await;
    let sf = SalesforceSim::start(sf_config.clone()).await;
    let keys = test_keys();
    let line = json!({
        "pagerduty": {
            "base_url": pd.base_url(),
            "token": pd_config.tokens[0],
            "from": pd_config.users[0].email,
            "service_id": pd_config.services[0].id,
            "webhook_secrets": args.pd_webhook_secret,
        },
        "salesforce": {
            "login_url": sf.base_url(),
            "instance_url": sf.base_url(),
            "audience": sf_config.login_url,
            "consumer_key": sf_config.consumer_key,
            "username": sf_config.usernames[0],
            "private_key_path": keys.private_key_path,
            "org_id": sf_config.org_id,
            "inbound_secret": args.sf_inbound_secret,
        },
    });
    println!("{line}");
    shutdown_signal().await;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
