//! Handler overhead per event, excluding the network: what each function does between receiving
//! the bytes and sending its one API request. Target (issue 6): under 100 µs per event.
//!
//! pd-to-sfdc: verify the signature, parse the delivery, claim and complete the idempotency key
//! (in memory), evaluate 100 rules, build the Composite request.
//! sfdc-to-pd: verify the HMAC over timestamp and body, parse the trigger post, claim and complete,
//! evaluate 100 rules, build the PagerDuty request.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use shared::clock::SystemClock;
use shared::handler::idempotency::{Gate, Idempotency, Settlement};
use shared::model::Outcome;
use shared::pagerduty::{CreateIncident, PagerdutyClient, WebhookEvent, requests, sign, verify};
use shared::rules::{Event, RecordEvent, Rules};
use shared::salesforce::signature::{sign_trigger_post, verify_trigger_signature};
use shared::salesforce::trigger_post::TriggerPost;
use shared::secrets::Secret;
use shared::store::memory::MemoryStore;

#[path = "support/mod.rs"]
mod support;
#[path = "support/pd_to_sfdc.rs"]
mod webhook;
use webhook::{SECRET, composite_body, handler_rules, incident_input, webhook_body};

fn rules() -> Rules {
    Rules::from_yaml(&handler_rules()).expect("bench rules are valid")
}

fn trigger_body(i: u64) -> String {
    let id = format!("5005g{i:010}AAA");
    json!({"schema": 1, "org_id": "00D5g0000SIMORGEQ5", "object": "Case", "operation": "update",
        "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"}, "sent_at": "2026-11-22T10:00:00.000Z",
        "old": {id.clone(): {"attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{id}")}, "Id": id, "CaseNumber": "00001026",
            "Subject": "Checkout down for EU", "Priority": "Sev1", "Status": "Working", "Amount": 42, "Account": {"Name": "Acme Corp"}}},
        "new": {id.clone(): {"attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{id}")}, "Id": id, "CaseNumber": "00001026",
            "Subject": "Checkout down for EU", "Priority": "Sev1", "Status": "Closed", "Amount": 42, "Account": {"Name": "Acme Corp"},
            "CreatedDate": "2026-11-22T10:00:00.000+0000", "SystemModstamp": "2026-11-22T10:05:00.000+0000"}}})
    .to_string()
}

fn pd_to_sfdc(c: &mut Criterion) {
    let rules = rules();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let gate = Idempotency::new(Arc::new(MemoryStore::default()), Arc::new(SystemClock), Duration::from_secs(3600));
    let bodies: Vec<(String, String)> =
        (0..10_000).map(webhook_body).map(|b| (sign(b.as_bytes(), SECRET.as_bytes()), b)).collect();
    let mut i = 0usize;
    c.bench_function("pd-to-sfdc overhead per event", |b| {
        b.iter(|| {
            let (header, body) = &bodies[i % bodies.len()];
            i += 1;
            verify(body.as_bytes(), Some(header), &[SECRET.as_bytes()]).expect("signed");
            let event = WebhookEvent::parse(body.as_bytes()).expect("parses");
            let key = shared::model::GateKey::webhook(&format!("{}:{i}", event.id));
            assert_eq!(runtime.block_on(gate.begin(&key, None)).unwrap(), Gate::Proceed);
            let evaluation = rules.evaluate(&incident_input(&event));
            let body = composite_body(&evaluation);
            runtime.block_on(gate.finish(&key, &Settlement::plain(Outcome::Applied))).unwrap();
            black_box(body)
        })
    });
}

fn sfdc_to_pd(c: &mut Criterion) {
    let rules = rules();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let gate = Idempotency::new(Arc::new(MemoryStore::default()), Arc::new(SystemClock), Duration::from_secs(3600));
    let pd = PagerdutyClient::new(
        Arc::new(NoNetwork),
        url::Url::parse("https://api.pagerduty.com").unwrap(),
        "bench-token".into(),
        "bridge@example.com".into(),
    );
    let token = Secret::new("bench-token");
    let now = Utc::now();
    let ts = now.timestamp();
    let posts: Vec<(String, String)> =
        (0..10_000).map(trigger_body).map(|b| (sign_trigger_post(SECRET, ts, b.as_bytes()), b)).collect();
    let mut i = 0usize;
    c.bench_function("sfdc-to-pd overhead per record", |b| {
        b.iter(|| {
            let (signature, body) = &posts[i % posts.len()];
            i += 1;
            verify_trigger_signature(body.as_bytes(), Some(&ts.to_string()), Some(signature), &[SECRET], now, 300)
                .expect("signed");
            let post = TriggerPost::parse(body.as_bytes()).expect("parses");
            let record = &post.records[0];
            let key = shared::model::GateKey::event(&format!("sf:{}:{i}", record.id));
            assert_eq!(runtime.block_on(gate.begin(&key, None)).unwrap(), Gate::Proceed);
            let evaluation = rules.evaluate(&Event::Record(RecordEvent {
                object: record.object.clone(),
                id: record.id.clone(),
                new: record.new.clone(),
                old: record.old.clone(),
                is_new: false,
                linked_incidents: vec!["Q1BENCHINC".into()],
            }));
            let create = CreateIncident {
                title: evaluation.plan.iter().count().to_string(),
                service_id: "PSVC001".into(),
                incident_key: Some(key.to_string()),
                ..CreateIncident::default()
            };
            let request = pd.to_request(&requests::create_incident(&create, None), &token).unwrap();
            runtime.block_on(gate.finish(&key, &Settlement::plain(Outcome::Applied))).unwrap();
            black_box(request)
        })
    });
}

criterion_group!(benches, pd_to_sfdc, sfdc_to_pd);
criterion_main!(benches);

/// The bench builds PagerDuty requests and never sends one.
struct NoNetwork;

#[async_trait::async_trait]
impl shared::transport::Transport for NoNetwork {
    async fn send(
        &self,
        _request: shared::transport::Request,
        _timeout: std::time::Duration,
    ) -> Result<shared::transport::Response, shared::transport::TransportError> {
        Err(shared::transport::TransportError::new(shared::transport::Failure::Connect, "the bench sends nothing"))
    }
}
