//! The bad-input corpus (`tests/corpus/`, written by `generate.py`): at least 60 malformed or
//! hostile requests per route, run against the example rules (so that any request let through
//! would act). Every one gets its documented status and none gets a 5xx; every one not marked
//! `accepted` changes nothing: no store write (but the one audit entry of a payload kept for
//! review), no PagerDuty or Salesforce call, nothing queued or dead-lettered.

use std::path::Path;

use base64::Engine;
use serde_json::Value;
use shared::clock::Clock;
use shared::handler::http::InboundRequest;
use shared::handler::http::Reply;
use shared::handler::{pd_to_sfdc, sfdc_to_pd};
use sim::counting_store::Counter;
use sim::harness::{Harness, HarnessConfig, INBOUND_SECRET, OUTBOUND_MESSAGE_TOKEN, WEBHOOK_SECRET};
use sim::pagerduty::sign_v1;
use sim::salesforce::sign_trigger;

/// The example rules: a Case insert opens an incident, a webhook writes to the Case...
const RULES: &str = include_str!("../../../events/rules.example.yaml");

struct Request {
    name: String,
    method: String,
    path: Option<String>,
    query: Option<String>,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    expect: Vec<u16>,
    /// The payload is kept for review: one audit entry is written, nothing else.
    keeps: bool,
    /// A valid request the bridge acts on: only its status is checked.
    accepted: bool,
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
            let text = |k: &str| e.get(k).and_then(Value::as_str).map(|v| v.replace("@TOKEN@", OUTBOUND_MESSAGE_TOKEN));
            Request {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                method: text("method").unwrap_or_else(|| "POST".into()),
                path: text("path"),
                query: text("query"),
                keeps: e.get("keeps").and_then(Value::as_bool).unwrap_or(false),
                accepted: e.get("accepted").and_then(Value::as_bool).unwrap_or(false),
                body,
                headers,
                expect: e["expect"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u16).collect(),
            }
        })
        .collect()
}

/// What a request changed: store writes by operation, calls to the simulators, queued messages.
#[derive(Debug, PartialEq)]
struct Effects {
    writes: Vec<(&'static str, u64)>,
    pagerduty_calls: usize,
    salesforce_writes: usize,
    queued: usize,
}

fn effects(h: &Harness, counter: &Counter) -> Effects {
    Effects {
        // By store method (`audit.append`), without the DynamoDB request it stands for.
        writes: counter
            .snapshot()
            .into_iter()
            .filter(|(_, c)| c.write_units > 0)
            .map(|(op, c)| (op.split(' ').next().unwrap_or(op), c.calls))
            .collect(),
        pagerduty_calls: h.pd.requests().len(),
        // Reading a token is not a change.
        salesforce_writes: h.sf.requests().iter().filter(|r| !r.path.contains("oauth2")).count(),
        queued: h.retry_queue.len() + h.dlq.len(),
    }
}

async fn run(route: &str) {
    let h = Harness::with(HarnessConfig { count_store: true, ..HarnessConfig::new(RULES) }).await;
    let counter = h.store_counter.clone().expect("counting store");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(route);
    let requests = load(&dir, h.clock.now().timestamp());
    assert!(requests.len() >= 60, "{route}: at least 60 requests, found {}", requests.len());
    let (route_path, query) = match route {
        "pagerduty-webhook" => (pd_to_sfdc::WEBHOOK_ROUTE, String::new()),
        "salesforce-records" => (sfdc_to_pd::RECORDS_ROUTE, String::new()),
        _ => (sfdc_to_pd::OUTBOUND_MESSAGE_ROUTE, format!("token={OUTBOUND_MESSAGE_TOKEN}")),
    };
    let mut wrong = Vec::new();
    let (mut refused, mut kept, mut accepted) = (0, 0, 0);
    for r in &requests {
        let inbound = InboundRequest {
            method: r.method.clone(),
            query: r.query.clone().unwrap_or_else(|| query.clone()),
            correlation_id: r.name.clone(),
            deadline: Some(h.clock.now() + chrono::Duration::seconds(10)),
            ..InboundRequest::post(r.path.as_deref().unwrap_or(route_path), r.headers.clone(), r.body.clone())
        };
        counter.reset();
        let before = effects(&h, &counter);
        let reply: Reply = match route {
            "pagerduty-webhook" => pd_to_sfdc::handle(&h.ctx, inbound).await,
            _ => sfdc_to_pd::handle(&h.ctx, inbound).await,
        };
        let after = effects(&h, &counter);
        let said = || reply.body.chars().take(160).collect::<String>();
        assert!(reply.status < 500, "{route}/{}: {} {}", r.name, reply.status, said());
        if !r.expect.contains(&reply.status) {
            wrong.push(format!("{}: got {} expected {:?}: {}", r.name, reply.status, r.expect, said()));
        }
        let expected = Effects {
            writes: if r.keeps { vec![("audit.append", 1)] } else { vec![] },
            pagerduty_calls: before.pagerduty_calls,
            salesforce_writes: before.salesforce_writes,
            queued: before.queued,
        };
        match (r.accepted, r.keeps) {
            (true, _) => accepted += 1,
            (false, keeps) => {
                if after != expected {
                    wrong.push(format!("{}: changed something: {after:?}, expected {expected:?}", r.name));
                }
                if keeps { kept += 1 } else { refused += 1 }
            }
        }
    }
    assert!(wrong.is_empty(), "{route}: {} unexpected answers:\n{}", wrong.len(), wrong.join("\n"));
    println!(
        "{route}: {} hostile requests: {refused} refused and {kept} kept for review with nothing changed, {accepted} valid ones acted on",
        requests.len()
    );
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
