//! Pins what the counting store records per event, so the economy figures of `bench_e2e` cannot
//! drift silently when a handler adds or drops a store call. The target is at most 5 DynamoDB
//! requests per live event once a function is warm (rules and breaker state cached, as in
//! production): the claim, the subject's lease, one Query, the subject's write that gives the
//! lease back, and the audit batch. An event that creates the other side also writes the link.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use shared::retry::breaker::BreakerPolicy;
use sim::counting_store::OpCount;
use sim::harness::{Harness, HarnessConfig, ORG_ID, delivery, incident_data};

const RULES: &str = include_str!("../../../events/rules.example.yaml");

/// The harness with the production breaker cache (the default harness reads breakers every time).
async fn counted() -> Harness {
    let mut config = HarnessConfig::new(RULES);
    config.count_store = true;
    config.breaker_policy = BreakerPolicy::default();
    let h = Harness::with(config).await;
    h.store_counter.as_ref().expect("count_store is on").reset();
    h
}

/// What the store did since the last call, and the operations by name.
fn take(h: &Harness) -> (OpCount, Vec<String>) {
    let counter = h.store_counter.as_ref().expect("count_store is on");
    let ops = counter.snapshot().iter().map(|(op, c)| format!("{op}={}", c.calls)).collect();
    let total = counter.total();
    counter.reset();
    (total, ops)
}

async fn webhook(h: &Harness, id: &str, kind: &str, incident: &str, status: &str, at: chrono::DateTime<Utc>) {
    let body = delivery(id, kind, at, incident_data(incident, status));
    let reply = h.webhook(&body, &format!("WH-{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// What the bridge's write of a record its rules watch costs on top (`own_writes::see_written`,
/// since the shipped Apex never sends the write back): the record's lease, one Query of what was
/// seen of it, one write of the new Seen that gives the lease back.
const SEES_ITS_WRITE: u64 = 3;

fn case_post(id: &str, operation: &str, status: &str, at: chrono::DateTime<Utc>) -> Value {
    let stamp = at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    let case = json!({
        "attributes": {"type": "Case"}, "Id": id, "CaseNumber": "00001026",
        "Subject": "Checkout fails", "Priority": "Sev1", "Status": status,
        "Account": {"attributes": {"type": "Account"}, "Name": "Acme Corp"},
        "LastModifiedDate": stamp, "SystemModstamp": stamp,
    });
    let old = (operation == "update")
        .then(|| json!({id: {"attributes": {"type": "Case"}, "Id": id, "Status": "New", "Priority": "Sev1"}}));
    json!({"schema": 1, "org_id": ORG_ID, "object": "Case", "operation": operation,
        "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"}, "sent_at": at.to_rfc3339(),
        "old": old, "new": {id: case}})
}

#[tokio::test]
async fn an_incident_event_costs_five_requests_six_when_it_links_three_more_when_it_writes_a_watched_record() {
    let h = counted().await;
    let t0 = Utc::now();
    webhook(&h, "EVT1", "incident.triggered", "PINC1", "triggered", t0).await;
    let (cold, ops) = take(&h);
    // The first event also reads the rules (1 Query) and the breaker state (1 GetItem, then cached).
    assert_eq!(cold.requests, 8 + SEES_ITS_WRITE, "{ops:?}");

    webhook(&h, "EVT2", "incident.triggered", "PINC2", "triggered", t0).await;
    let (trigger, ops) = take(&h);
    // Claim, the incident's lease, one Query (links, marks, pending), the new Case's link, the
    // incident's write (opened, lease given back), and one batch of the audit entry with the
    // completed idempotency key.
    assert_eq!(trigger.requests, 6 + SEES_ITS_WRITE, "{ops:?}");
    assert!(ops.contains(&"links.put_link (TransactWriteItems x2)=1".to_string()), "{ops:?}");
    assert!(ops.contains(&"links.lease (conditional UpdateItem)=2".to_string()), "{ops:?}");
    assert!(ops.contains(&"links.subject_state (Query)=2".to_string()), "{ops:?}");
    assert!(ops.contains(&"links.update_subject (UpdateItem)=2".to_string()), "{ops:?}");

    webhook(&h, "EVT3", "incident.acknowledged", "PINC2", "acknowledged", t0 + Duration::seconds(1)).await;
    let (ack, ops) = take(&h);
    // The Case already exists: the marks of what it set go with the lease given back.
    assert_eq!(ack.requests, 5 + SEES_ITS_WRITE, "{ops:?}");
    assert!(ops.contains(&"links.update_subject (UpdateItem)=2".to_string()), "{ops:?}");

    webhook(&h, "EVT3", "incident.acknowledged", "PINC2", "acknowledged", t0 + Duration::seconds(1)).await;
    let (duplicate, ops) = take(&h);
    assert_eq!(duplicate, OpCount { calls: 1, requests: 1, read_units: 0, write_units: 1 }, "a duplicate: {ops:?}");
}

#[tokio::test]
async fn a_case_costs_at_most_five_dynamodb_requests_per_change_and_six_when_it_links() {
    let h = counted().await;
    let t0 = Utc::now();
    let reply = h.post_records(&case_post("5005g00000CASE0AAA", "insert", "New", t0)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (cold, ops) = take(&h);
    assert_eq!(cold.requests, 8, "{ops:?}");

    let reply = h.post_records(&case_post("5005g00000CASE1AAA", "insert", "New", t0)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (insert, ops) = take(&h);
    assert_eq!(insert.requests, 6, "{ops:?}");
    assert!(ops.contains(&"links.put_link (TransactWriteItems x2)=1".to_string()), "{ops:?}");

    let reply = h.post_records(&case_post("5005g00000CASE1AAA", "update", "Closed", t0 + Duration::seconds(1))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (update, ops) = take(&h);
    assert_eq!(update.requests, 5, "{ops:?}");
}

#[tokio::test]
async fn a_retried_event_costs_four_more_requests_than_a_live_one() {
    let h = counted().await;
    let t0 = Utc::now();
    webhook(&h, "EVT1", "incident.triggered", "PINC1", "triggered", t0).await;
    h.sf.fail_next(1, sim::faults::FaultKind::LockRow);
    let body = delivery("EVT2", "incident.resolved", t0 + Duration::seconds(1), incident_data("PINC1", "resolved"));
    let reply = h.webhook(&body, "WH-EVT2").await;
    assert_eq!(sim::harness::outcome(&reply), "queued", "{}", reply.body);
    take(&h);

    assert_eq!(h.drain_retries(5).await, 1);
    let (retry, ops) = take(&h);
    // The live path's 5, plus the claim on this copy of the message, the check that the event's
    // key names this envelope (a conditional put that fails and returns the old item), the
    // event's turn taken (a conditional update: two hops of one envelope never act at once), and
    // the Salesforce breaker's failure count set back to 0 (read fresh, then written) by the
    // success. Leaving the incident's pending set goes with the lease given back: one write.
    assert_eq!(retry.requests, 9 + SEES_ITS_WRITE, "{ops:?}");
    assert!(ops.contains(&"idempotency.take_turn (conditional UpdateItem)=1".to_string()), "{ops:?}");
    assert!(ops.contains(&"links.update_subject (UpdateItem)=2".to_string()), "{ops:?}");
    assert!(ops.contains(&"idempotency.claim (conditional PutItem)=2".to_string()), "{ops:?}");
    assert!(ops.contains(&"breakers.put_breaker (conditional PutItem)=1".to_string()), "{ops:?}");
    assert_eq!(sim::harness::outcome(&h.webhook(&body, "WH-EVT2").await), "duplicate");
}

/// The bridge's own write comes back as an echo: skipped, yet what it shows of the record is
/// kept (the old values of the next change, and a person's change just before it that never
/// arrived): the subject's lease, its Query, the write that keeps it and gives the lease back,
/// with the claim and the audit batch, 5 requests; 2 before echoes were kept.
#[tokio::test]
async fn an_echo_costs_what_a_change_does_to_keep_what_it_shows() {
    let h = counted().await;
    let t0 = Utc::now();
    assert_eq!(h.post_records(&case_post("5005g00000CASE2AAA", "insert", "New", t0)).await.status, 200);
    take(&h);
    let mut echo = case_post("5005g00000CASE2AAA", "update", "Working", t0 + Duration::seconds(1));
    echo["user"] = json!({"id": "0055g00000BRIDGAAA", "username": sim::harness::INTEGRATION_USER});
    let reply = h.post_records(&echo).await;
    assert!(reply.body.contains("\"skipped\":1"), "an echo: {}", reply.body);
    let (cost, ops) = take(&h);
    assert_eq!(cost.requests, 5, "{ops:?}");
    assert!(ops.contains(&"links.lease (conditional UpdateItem)=1".to_string()), "{ops:?}");
}
