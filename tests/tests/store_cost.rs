//! Pins what the counting store records for one webhook and one trigger post, so the economy
//! figures of `bench_e2e` cannot drift silently when a handler adds or drops a store call.

use chrono::Utc;
use serde_json::json;
use sim::counting_store::OpCount;
use sim::harness::{Harness, HarnessConfig, ORG_ID, delivery, incident_data};

const RULES: &str = include_str!("../../events/rules.example.yaml");

async fn counted() -> Harness {
    let mut config = HarnessConfig::new(RULES);
    config.count_store = true;
    let h = Harness::with(config).await;
    h.store_counter.as_ref().expect("count_store is on").reset();
    h
}

fn summary(h: &Harness) -> (OpCount, Vec<String>) {
    let counter = h.store_counter.as_ref().expect("count_store is on");
    let ops = counter.snapshot().iter().map(|(op, c)| format!("{op}={}", c.calls)).collect();
    (counter.total(), ops)
}

#[tokio::test]
async fn a_trigger_webhook_costs_these_dynamodb_operations() {
    let h = counted().await;
    let body = delivery("EVT1", "incident.triggered", Utc::now(), incident_data("PINC1", "triggered"));
    let reply = h.webhook(&body, "WH1").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (total, ops) = summary(&h);
    // A cold rules cache (1 Query) and the harness's uncached breakers (2 GetItem) are included.
    assert_eq!(total, OpCount { calls: 11, requests: 11, read_units: 6, write_units: 10 }, "{ops:?}");
    assert!(ops.contains(&"links.records_for_incident (Query)=2".to_string()), "{ops:?}");
    assert!(ops.contains(&"links.put_link (TransactWriteItems x2)=1".to_string()), "{ops:?}");
}

#[tokio::test]
async fn a_case_insert_post_costs_these_dynamodb_operations() {
    let h = counted().await;
    let now = Utc::now();
    let stamp = now.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    let case = json!({
        "attributes": {"type": "Case"}, "Id": "5005g00000CASE1AAA", "CaseNumber": "00001026",
        "Subject": "Checkout fails", "Priority": "Sev1", "Status": "New",
        "Account": {"attributes": {"type": "Account"}, "Name": "Acme Corp"},
        "LastModifiedDate": stamp, "SystemModstamp": stamp,
    });
    let post = json!({"schema": 1, "org_id": ORG_ID, "object": "Case", "operation": "insert",
        "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"}, "sent_at": now.to_rfc3339(),
        "old": null, "new": {"5005g00000CASE1AAA": case}});
    let reply = h.post_records(&post).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (total, ops) = summary(&h);
    // A cold rules cache (1 Query) and the harness's uncached breakers (2 GetItem) are included.
    assert_eq!(total, OpCount { calls: 11, requests: 11, read_units: 6, write_units: 10 }, "{ops:?}");
    assert!(ops.contains(&"links.incidents_for_record (Query)=2".to_string()), "{ops:?}");
    assert!(ops.contains(&"links.put_link (TransactWriteItems x2)=1".to_string()), "{ops:?}");
}
