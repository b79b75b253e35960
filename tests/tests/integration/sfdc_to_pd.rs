//! SFDC→PD end to end: Apex trigger posts and Outbound Messages through the handler, against the
//! PagerDuty simulator and the in-memory stores.

use chrono::{Duration, Utc};
use serde_json::{Map, Value, json};
use shared::clock::Clock;
use shared::model::Outcome;
use shared::retry::envelope::Envelope;
use shared::store::LinkStore;
use sim::faults::{FaultConfig, FaultKind};
use sim::harness::{Harness, INBOUND_SECRET, INTEGRATION_USER, ORG_ID};
use sim::salesforce::sign_trigger;

const RULES: &str = r#"
rulesets:
  - name: SFDC > PD
    enabled: true
    rules:
      - name: sev1-case-opens-incident
        direction: salesforce_to_pagerduty
        object: Case
        applies_to: new_only
        conditions:
          - {field: Priority, operator: in, value: [Sev1, Critical]}
        actions:
          - create_incident:
              service: PSVC001
              urgency: high
              title: {prefix: "[Sev1] ", fields: [CaseNumber, Account.Name, Subject]}
              body: "Salesforce Case {{record.CaseNumber}}: {{record.Description}}"
      - name: priority-change-sets-incident-priority
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Priority, operator: changed_to, value: Sev2}
        actions:
          - set_priority: {priority: P2}
      - name: case-closed-resolves
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: changed_to, value: Closed}
        actions:
          - resolve: {resolution: "Case {{record.CaseNumber}} closed in Salesforce"}
      - name: comment-becomes-note
        direction: salesforce_to_pagerduty
        object: CaseComment
        applies_to: new_only
        conditions:
          - {field: CommentBody, operator: is_not_empty}
        actions:
          - add_note: {content: "{{record.CommentBody}}"}
"#;

fn case(id: &str, number: &str, priority: &str, status: &str, modified: chrono::DateTime<Utc>) -> Value {
    json!({
        "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{id}")},
        "Id": id, "CaseNumber": number, "Subject": "Checkout fails for EU customers", "Priority": priority,
        "Status": status, "Description": "Timeouts since 10:00",
        "Account": {"attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/0015g00000ACMEAAA"}, "Name": "Acme Corp"},
        "LastModifiedDate": modified.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        "SystemModstamp": modified.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
    })
}

fn post(object: &str, operation: &str, new: Vec<Value>, old: Option<Vec<Value>>, username: &str) -> Value {
    let map = |records: Vec<Value>| -> Map<String, Value> {
        records.into_iter().map(|r| (r["Id"].as_str().unwrap().to_string(), r)).collect()
    };
    json!({
        "schema": 1, "org_id": ORG_ID, "object": object, "operation": operation,
        "user": {"id": "0055g00000AGENTAAA", "username": username},
        "sent_at": Utc::now().to_rfc3339(),
        "old": old.map(map), "new": map(new),
    })
}

const AGENT: &str = "agent@example.com";
const CASE: &str = "5005g00000CASE1AAA";

async fn linked_incident(h: &Harness, record: &str) -> Value {
    let links = h.store.incidents_for_record(record).await.unwrap();
    assert_eq!(links.len(), 1, "one incident linked to {record}");
    h.pd.incident(links[0].incident_id.as_str()).expect("the incident exists in PagerDuty")
}

#[tokio::test]
async fn sev1_case_opens_an_incident_with_the_templated_title_and_a_link() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    let reply =
        h.post_records(&post("Case", "insert", vec![case(CASE, "00001026", "Sev1", "New", t0)], None, AGENT)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let incident = linked_incident(&h, CASE).await;
    assert_eq!(incident["title"], "[Sev1] 00001026 - Acme Corp - Checkout fails for EU customers");
    assert_eq!(incident["urgency"], "high");
    assert!(incident["incident_key"].as_str().unwrap().contains(CASE) || !incident["incident_key"].is_null());
    let from_ok =
        h.pd.requests().iter().filter(|r| r.method == "POST").all(|r| r.header("from") == Some("bridge@example.com"));
    assert!(from_ok, "every write names the integration user in From");
}

#[tokio::test]
async fn closing_the_case_resolves_and_priority_change_sets_priority() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    let open = case(CASE, "00001026", "Sev1", "New", t0);
    h.post_records(&post("Case", "insert", vec![open.clone()], None, AGENT)).await;
    let sev2 = case(CASE, "00001026", "Sev2", "Working", t0 + Duration::seconds(60));
    let reply = h.post_records(&post("Case", "update", vec![sev2.clone()], Some(vec![open]), AGENT)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(linked_incident(&h, CASE).await["priority"]["summary"], "P2");
    let closed = case(CASE, "00001026", "Sev2", "Closed", t0 + Duration::seconds(120));
    h.post_records(&post("Case", "update", vec![closed], Some(vec![sev2]), AGENT)).await;
    let incident = linked_incident(&h, CASE).await;
    assert_eq!(incident["status"], "resolved");
    let notes = h.pd.notes(incident["id"].as_str().unwrap());
    assert!(notes.iter().any(|n| n["content"].as_str().unwrap_or("").contains("closed in Salesforce")), "{notes:?}");
}

#[tokio::test]
async fn case_comment_becomes_a_note_unless_it_came_from_pagerduty() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    h.post_records(&post("Case", "insert", vec![case(CASE, "00001026", "Sev1", "New", t0)], None, AGENT)).await;
    let comment = |id: &str, body: &str| {
        json!({"attributes": {"type": "CaseComment", "url": "/x"}, "Id": id, "ParentId": CASE,
        "CommentBody": body, "SystemModstamp": t0.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()})
    };
    h.post_records(&post(
        "CaseComment",
        "insert",
        vec![comment("00a5g00000COM01AAA", "Customer confirms the fix")],
        None,
        AGENT,
    ))
    .await;
    h.post_records(&post(
        "CaseComment",
        "insert",
        vec![comment("00a5g00000COM02AAA", "[PagerDuty] Rolled back")],
        None,
        AGENT,
    ))
    .await;
    let incident = linked_incident(&h, CASE).await;
    let notes: Vec<String> =
        h.pd.notes(incident["id"].as_str().unwrap())
            .iter()
            // Without the reference line every note the bridge writes ends with.
            .map(|n| n["content"].as_str().unwrap().split("\n\nref:").next().unwrap().to_string())
            .collect();
    assert_eq!(notes, vec!["[Salesforce] Customer confirms the fix".to_string()], "our own comment is not echoed back");
}

#[tokio::test]
async fn changes_by_the_integration_user_are_not_sent_back() {
    let h = Harness::start(RULES).await;
    let reply = h
        .post_records(&post("Case", "insert", vec![case(CASE, "1", "Sev1", "New", Utc::now())], None, INTEGRATION_USER))
        .await;
    assert_eq!(reply.status, 200);
    assert!(h.pd.incidents().is_empty());
    assert_eq!(h.store.audit_entries()[0].outcome, Outcome::Skipped);
}

#[tokio::test]
async fn a_resent_post_creates_nothing_twice() {
    let h = Harness::start(RULES).await;
    let payload = post("Case", "insert", vec![case(CASE, "1", "Sev1", "New", Utc::now())], None, AGENT);
    h.post_records(&payload).await;
    let again = h.post_records(&payload).await;
    assert_eq!(again.status, 200);
    assert_eq!(serde_json::from_str::<Value>(&again.body).unwrap()["duplicate"], 1);
    assert_eq!(h.pd.incidents().len(), 1);
}

#[tokio::test]
async fn bad_signature_and_stale_timestamp_are_refused() {
    let h = Harness::start(RULES).await;
    let body = post("Case", "insert", vec![case(CASE, "1", "Sev1", "New", Utc::now())], None, AGENT).to_string();
    let now = h.clock.now().timestamp();
    let forged = vec![
        ("x-pdsync-timestamp".into(), now.to_string()),
        ("x-pdsync-signature".into(), sign_trigger("wrong-secret", now, body.as_bytes())),
    ];
    assert_eq!(h.post_records_with(&body, forged).await.status, 401);
    let old = now - 3600;
    let stale = vec![
        ("x-pdsync-timestamp".into(), old.to_string()),
        ("x-pdsync-signature".into(), sign_trigger(INBOUND_SECRET, old, body.as_bytes())),
    ];
    let reply = h.post_records_with(&body, stale).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply.body.contains("old") || reply.body.contains("stale") || reply.body.contains("replay"),
        "{}",
        reply.body
    );
    let bearer = vec![("authorization".into(), format!("Bearer {INBOUND_SECRET}"))];
    assert_eq!(h.post_records_with(&body, bearer).await.status, 200, "the Named Credential bearer form works too");
    assert_eq!(h.pd.incidents().len(), 1);
}

#[tokio::test]
async fn malformed_post_gets_a_clear_400() {
    let h = Harness::start(RULES).await;
    let body = r#"{"schema": 1, "object": "Case"}"#;
    let now = h.clock.now().timestamp();
    let headers = vec![
        ("content-type".into(), "application/json".into()),
        ("x-pdsync-timestamp".into(), now.to_string()),
        ("x-pdsync-signature".into(), sign_trigger(INBOUND_SECRET, now, body.as_bytes())),
    ];
    let reply = h.post_records_with(body, headers).await;
    assert_eq!(reply.status, 400);
    assert!(h.store.audit_entries().is_empty());
}

#[tokio::test]
async fn a_200_record_burst_creates_200_incidents_under_the_rate_limit() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    let records: Vec<Value> =
        (0..200).map(|i| case(&format!("5005g00000B{i:04}AAA"), &format!("{i:08}"), "Sev1", "New", t0)).collect();
    let reply = h.post_records(&post("Case", "insert", records, None, AGENT)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    h.drain_retries(100).await;
    assert_eq!(h.pd.incidents().len(), 200, "200 incidents, none duplicated");
    let keys: std::collections::HashSet<String> =
        h.pd.incidents().iter().map(|i| i["incident_key"].to_string()).collect();
    assert_eq!(keys.len(), 200);
    assert!(h.pd.requests().iter().all(|r| r.status != 429), "the client-side limiter kept us under PagerDuty's limit");
}

#[tokio::test]
async fn a_comment_and_a_close_that_arrive_while_the_case_insert_is_queued_wait_for_it() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    h.pd.fail_next(1, FaultKind::ServerError);
    let open = case(CASE, "00001026", "Sev1", "New", t0);
    let reply = h.post_records(&post("Case", "insert", vec![open.clone()], None, AGENT)).await;
    assert_eq!(serde_json::from_str::<Value>(&reply.body).unwrap()["queued"], 1, "{}", reply.body);
    // Without an incident yet, these would find nothing to act on and be lost.
    let stamp = (t0 + Duration::seconds(30)).format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    let comment = json!({"attributes": {"type": "CaseComment", "url": "/x"}, "Id": "00a5g00000COM01AAA",
        "ParentId": CASE, "CommentBody": "Customer confirms the impact", "SystemModstamp": stamp});
    let reply = h.post_records(&post("CaseComment", "insert", vec![comment], None, AGENT)).await;
    assert_eq!(serde_json::from_str::<Value>(&reply.body).unwrap()["queued"], 1, "the comment waits: {}", reply.body);
    let closed = case(CASE, "00001026", "Sev1", "Closed", t0 + Duration::seconds(60));
    let reply = h.post_records(&post("Case", "update", vec![closed], Some(vec![open]), AGENT)).await;
    assert_eq!(serde_json::from_str::<Value>(&reply.body).unwrap()["queued"], 1, "the close waits: {}", reply.body);

    h.drain_retries(50).await;
    let incident = linked_incident(&h, CASE).await;
    assert_eq!(incident["status"], "resolved", "insert, comment and close applied in order");
    let notes: Vec<String> =
        h.pd.notes(incident["id"].as_str().unwrap())
            .iter()
            // Without the reference line every note the bridge writes ends with.
            .map(|n| n["content"].as_str().unwrap().split("\n\nref:").next().unwrap().to_string())
            .collect();
    assert!(notes.contains(&"[Salesforce] Customer confirms the impact".to_string()), "{notes:?}");
    assert!(h.dlq.is_empty() && h.retry_queue.is_empty());
}

#[tokio::test]
async fn a_pagerduty_outage_queues_everything_and_applies_it_after_recovery() {
    let h = Harness::start(RULES).await;
    h.pd.set_faults(FaultConfig { seed: 1, server_error_rate: 1.0, ..FaultConfig::none() });
    let t0 = Utc::now();
    let records: Vec<Value> =
        (0..20).map(|i| case(&format!("5005g00000O{i:04}AAA"), &format!("{i:08}"), "Sev1", "New", t0)).collect();
    let reply = h.post_records(&post("Case", "insert", records, None, AGENT)).await;
    assert_eq!(reply.status, 200, "every record is safely queued: {}", reply.body);
    let summary: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(summary["queued"], 20);
    assert!(h.pd.incidents().is_empty());
    // Five minutes of outage, seen by the retry function without real waiting.
    for _ in 0..5 {
        h.clock.advance(Duration::seconds(60));
        h.drain_retries(20).await;
    }
    assert!(h.dlq.is_empty());
    h.pd.set_faults(FaultConfig::none());
    for _ in 0..30 {
        if h.retry_queue.is_empty() {
            break;
        }
        h.clock.advance(Duration::seconds(120));
        h.drain_retries(50).await;
    }
    assert_eq!(h.pd.incidents().len(), 20, "everything applied after recovery");
    assert!(h.dlq.is_empty() && h.retry_queue.is_empty());
}

#[tokio::test]
async fn a_429_reset_holds_the_record_back_without_spending_its_attempts() {
    let h = Harness::start(RULES).await;
    // One 429 with a 60 s reset: our limiter then refuses every call until the reset (real time).
    h.pd.fail_next(1, sim::faults::FaultKind::RateLimited);
    let reply = h
        .post_records(&post("Case", "insert", vec![case(CASE, "00001026", "Sev1", "New", Utc::now())], None, AGENT))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The retry function meets the running reset again and again (only simulated time passes).
    h.drain_retries(20).await;
    assert!(h.dlq.is_empty(), "calls that were never sent must not use up the event's attempts");
    let queued = Envelope::from_json(&h.retry_queue.bodies()[0]).unwrap();
    assert_eq!(queued.trip.attempts, 1, "only the call PagerDuty refused counts");
    assert!(h.pd.incidents().is_empty());
}

#[tokio::test]
async fn outbound_message_is_acknowledged_once_accepted() {
    let h = Harness::start(RULES).await;
    let xml = include_str!("../../../events/sfdc-to-pd/outbound-message.xml");
    let reply = h.outbound_message(xml).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("<Ack>true</Ack>"));
    let again = h.outbound_message(xml).await;
    assert!(again.body.contains("<Ack>true</Ack>"), "a redelivery is acknowledged too");
    let wrong_org = xml.replace(ORG_ID, "00D000000000000AAA");
    let refused = h.outbound_message(&wrong_org).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("Fault"));
}
