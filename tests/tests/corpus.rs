//! The bad-input corpus (`tests/corpus/`, written by `generate.py`): at least 60 malformed or
//! hostile requests per route. Every one gets its documented status, none panics or gets a 5xx,
//! and none changes anything in PagerDuty or Salesforce.

use std::path::Path;

use base64::Engine;
use serde_json::Value;
use shared::clock::Clock;
use shared::handler::http::Reply;
use shared::handler::{pd_to_sfdc, sfdc_to_pd};
use sim::harness::{Harness, INBOUND_SECRET, WEBHOOK_SECRET};
use sim::pagerduty::sign_v1;
use sim::salesforce::sign_trigger;

/// Rules that match nothing: any downstream call would be a bug.
const RULES: &str = "rulesets: []\n";

struct Request {
    name: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    expect: Vec<u16>,
}

fn load(dir: &Path, now: i64) -> Vec<Request> {
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("corpus folder").map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let e: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let mut body = match e.get("body_base64").and_then(Value::as_str) {
                Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64).unwrap(),
                None => e["body"].as_str().unwrap().as_bytes().to_vec(),
            };
            if let Some(pad) = e.get("pad") {
                let fill = pad["char"].as_str().unwrap().repeat(pad["count"].as_u64().unwrap() as usize);
                body = String::from_utf8(body).unwrap().replacen("@PAD@", &fill, 1).into_bytes();
            }
            let mut headers: Vec<(String, String)> = e["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.as_str().unwrap().to_string()))
                .collect();
            let sign = e["sign"].as_str().unwrap_or("");
            let ts = now.to_string();
            let mut other = body.clone();
            other.push(b' ');
            match sign {
                "" => {}
                "pagerduty" => headers.push(("x-pagerduty-signature".into(), sign_v1(WEBHOOK_SECRET, &body))),
                "pagerduty-other-body" => {
                    headers.push(("x-pagerduty-signature".into(), sign_v1(WEBHOOK_SECRET, &other)))
                }
                "pagerduty-unknown-secret" => {
                    headers.push(("x-pagerduty-signature".into(), sign_v1("who-knows", &body)))
                }
                "salesforce"
                | "salesforce-stale"
                | "salesforce-future"
                | "salesforce-other-body"
                | "salesforce-unknown-secret" => {
                    let at = match sign {
                        "salesforce-stale" => now - 3600,
                        "salesforce-future" => now + 3600,
                        _ => now,
                    };
                    let (secret, signed) = match sign {
                        "salesforce-other-body" => (INBOUND_SECRET, &other),
                        "salesforce-unknown-secret" => ("who-knows", &body),
                        _ => (INBOUND_SECRET, &body),
                    };
                    headers.push(("x-pdsync-timestamp".into(), at.to_string()));
                    headers.push(("x-pdsync-signature".into(), sign_trigger(secret, at, signed)));
                }
                s if s.starts_with("salesforce-timestamp:") => {
                    let literal = &s["salesforce-timestamp:".len()..];
                    headers.push(("x-pdsync-timestamp".into(), literal.to_string()));
                    headers.push(("x-pdsync-signature".into(), sign_trigger(INBOUND_SECRET, now, &body)));
                }
                s if s.starts_with("salesforce-header:") => {
                    headers.push(("x-pdsync-timestamp".into(), ts.clone()));
                    headers.push(("x-pdsync-signature".into(), s["salesforce-header:".len()..].to_string()));
                }
                other => panic!("{}: unknown sign directive {other}", path.display()),
            }
            Request {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                body,
                headers,
                expect: e["expect"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u16).collect(),
            }
        })
        .collect()
}

async fn run(route: &str) {
    let h = Harness::start(RULES).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(route);
    let requests = load(&dir, h.clock.now().timestamp());
    assert!(requests.len() >= 60, "{route}: at least 60 requests, found {}", requests.len());
    let mut wrong = Vec::new();
    for r in &requests {
        let inbound = shared::handler::http::InboundRequest {
            headers: r.headers.clone(),
            body: r.body.clone(),
            correlation_id: r.name.clone(),
            deadline: Some(h.clock.now() + chrono::Duration::seconds(10)),
        };
        let reply: Reply = match route {
            "pagerduty-webhook" => pd_to_sfdc::handle(&h.ctx, inbound).await,
            "salesforce-records" => sfdc_to_pd::handle_records(&h.ctx, inbound).await,
            _ => sfdc_to_pd::handle_outbound_message(&h.ctx, inbound).await,
        };
        assert!(
            reply.status < 500,
            "{route}/{}: {} {}",
            r.name,
            reply.status,
            reply.body.chars().take(200).collect::<String>()
        );
        if !r.expect.contains(&reply.status) {
            wrong.push(format!(
                "{}: got {} expected {:?}: {}",
                r.name,
                reply.status,
                r.expect,
                reply.body.chars().take(160).collect::<String>()
            ));
        }
    }
    assert!(wrong.is_empty(), "{route}: {} unexpected answers:\n{}", wrong.len(), wrong.join("\n"));
    assert!(h.pd.requests().is_empty(), "{route}: nothing reaches PagerDuty");
    assert!(h.sf.requests().iter().all(|r| r.path.contains("oauth2")), "{route}: nothing is written to Salesforce");
    assert!(
        h.store.all_links().is_empty() && h.retry_queue.is_empty() && h.dlq.is_empty(),
        "{route}: nothing queued or linked"
    );
    println!("{route}: {} hostile requests, all answered as documented", requests.len());
}

#[tokio::test]
async fn pagerduty_webhook_corpus() {
    run("pagerduty-webhook").await;
}

#[tokio::test]
async fn salesforce_records_corpus() {
    run("salesforce-records").await;
}

#[tokio::test]
async fn salesforce_outbound_message_corpus() {
    run("salesforce-outbound-message").await;
}
