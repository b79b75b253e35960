//! Both directions wired to each other through the simulators: PagerDuty delivers webhooks for
//! every incident change (ours included) and Salesforce posts trigger events for every record
//! change (ours included). Mixed Case changes and PagerDuty acknowledgements must produce no echo:
//! no event applied twice, no ping-pong, no second incident or Case.

use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use serde_json::{Value, json};
use shared::model::Outcome;
use sim::harness::{Harness, HarnessConfig, INBOUND_SECRET, ORG_ID, WEBHOOK_SECRET};
use sim::pagerduty::WebhookTarget;
use sim::salesforce::TriggerTarget;

async fn settle(h: &Harness) {
    // Deliveries run in the background: wait until the audit stops growing.
    let mut last = usize::MAX;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.drain_retries(100).await;
        let now = h.store.audit_len();
        if now == last && h.retry_queue.is_empty() {
            return;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_changes_on_both_sides_produce_no_echo() {
    let mut config = HarnessConfig::new(include_str!("../../events/rules.example.yaml"));
    config.salesforce.org_id = ORG_ID.into();
    let h = Harness::with(config).await;
    let url = h.serve().await;
    h.pd.set_webhook_target(Some(WebhookTarget {
        url: format!("{url}/pagerduty/webhook"),
        secrets: vec![WEBHOOK_SECRET.into()],
        subscription_id: "PSUBLOOP".into(),
    }));
    h.sf.set_trigger_target(Some(TriggerTarget {
        url: format!("{url}/salesforce/records"),
        secrets: vec![INBOUND_SECRET.into()],
        objects: vec![],
    }));
    const CASES: usize = 40;
    let t0 = Utc::now();
    let mut case_ids = Vec::new();
    let mut events = 0usize;
    for i in 0..CASES {
        // An agent opens a Sev1 case: the Apex trigger posts it.
        let id = h.sf.insert_record(
            "Case",
            json!({"Subject": format!("Checkout down #{i}"), "Priority": "High", "Origin": "Web"}),
        );
        let mut record = h.sf.record("Case", &id).unwrap();
        record["Priority"] = json!("Sev1");
        record["SystemModstamp"] =
            json!((t0 + ChronoDuration::milliseconds(i as i64)).format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string());
        let post = json!({"schema": 1, "org_id": ORG_ID, "object": "Case", "operation": "insert",
            "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"}, "sent_at": Utc::now().to_rfc3339(),
            "old": null, "new": {id.clone(): record}});
        assert_eq!(h.post_records(&post).await.status, 200);
        case_ids.push(id);
        events += 1;
    }
    settle(&h).await;
    let incidents: Vec<Value> = h.pd.incidents();
    assert_eq!(incidents.len(), CASES, "one incident per Sev1 case, none for our own echoes");

    // On-call acknowledges every incident in PagerDuty; agents comment on every case.
    let http = reqwest::Client::new();
    for incident in &incidents {
        let id = incident["id"].as_str().unwrap();
        let ack = http
            .put(format!("{}/incidents/{id}", h.pd.base_url()))
            .header("Authorization", "Token token=sim-token")
            .header("Accept", "application/vnd.pagerduty+json;version=2")
            .header("From", "oncall@example.com")
            .json(&json!({"incident": {"type": "incident_reference", "status": "acknowledged"}}))
            .send()
            .await
            .unwrap();
        assert!(ack.status().is_success());
        events += 1;
    }
    for id in &case_ids {
        h.sf.update_record("Case", id, json!({"Description": "customer called again"}), "agent@example.com");
        events += 1;
    }
    settle(&h).await;

    assert_eq!(h.pd.incidents().len(), CASES, "no incident created by an echo");
    assert_eq!(h.sf.records("Case").len(), CASES, "no Case created by an echo");
    for id in &case_ids {
        assert_eq!(h.sf.record("Case", id).unwrap()["Status"], "Working", "the acknowledge reached every case");
    }
    let audit = h.store.audit_entries();
    let mut applied = std::collections::HashMap::new();
    for entry in audit.iter().filter(|e| e.outcome == Outcome::Applied) {
        *applied.entry(entry.event_id.clone()).or_insert(0) += 1;
    }
    assert!(applied.values().all(|n| *n == 1), "no event applied twice");
    let echoes = audit.iter().filter(|e| e.reason.as_deref().is_some_and(|r| r.contains("integration user"))).count();
    println!(
        "{events} changes made by people, {} audit entries, {echoes} of our own writes recognised and not sent back",
        audit.len()
    );
    assert!(echoes >= CASES, "our Case writes came back as trigger posts and were recognised");
    assert!(h.dlq.is_empty());
}
