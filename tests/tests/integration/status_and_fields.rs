//! Salesforce → PagerDuty rules publish status updates and set incident custom fields (issue 21),
//! through the real handler against the simulator (which refuses any request the OpenAPI
//! document does not allow). A status update is additive: PagerDuty lists none, so after a lost
//! answer it is not published again. Both come back as webhooks with the bridge as their agent
//! and stop there.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::{Map, Value, json};
use shared::store::LinkStore;
use sim::faults::FaultKind;
use sim::harness::{Harness, ORG_ID, outcome};

const AGENT: &str = "agent@example.com";
/// The PagerDuty user the harness's client acts as (`From: bridge@example.com`).
const BRIDGE_PD_USER: &str = "PUSR001";

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
          - {field: Priority, operator: equals, value: Sev1}
        actions:
          - create_incident: {service: PSVC001, title: {prefix: "Case ", fields: [CaseNumber]}}
      - name: customer-notified-publishes-a-status-update
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: changed_to, value: Customer notified}
        actions:
          - publish_status_update: {message: "Case {{record.CaseNumber}}: the customer was told"}
      - name: impact-to-custom-field
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Customer_Impact__c, operator: changed}
        actions:
          - set_custom_fields: {impact: "{{record.Customer_Impact__c}}", seats: 12}
      - name: seats-as-text
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: changed_to, value: Seats counted}
        actions:
          # Text (the Case number is a string field): PagerDuty refuses it for the integer field.
          - set_custom_fields: {seats: "{{record.CaseNumber}}"}
  - name: PD > SFDC
    enabled: true
    rules:
      - name: status-update-becomes-comment
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: incident.status_update_published}
        actions:
          - add_case_comment: {body: "Status update: {{status_update.message}}"}
"#;

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn case(id: &str, status: &str, impact: &str, at: DateTime<Utc>) -> Value {
    json!({
        "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{id}")},
        "Id": id, "CaseNumber": "00001026", "Subject": "Checkout fails", "Priority": "Sev1",
        "Status": status, "Customer_Impact__c": impact, "LastModifiedDate": stamp(at), "SystemModstamp": stamp(at),
    })
}

fn post(new: Value, old: Option<Value>) -> Value {
    let by_id = |r: Value| -> Map<String, Value> { [(r["Id"].as_str().unwrap().to_string(), r)].into_iter().collect() };
    json!({
        "schema": 1, "org_id": ORG_ID, "object": "Case", "operation": if old.is_some() { "update" } else { "insert" },
        "user": {"id": "0055g00000AGENTAAA", "username": AGENT}, "sent_at": Utc::now().to_rfc3339(),
        "old": old.map(by_id), "new": by_id(new),
    })
}

/// An agent opens a Sev1 Case: its incident is created and linked. Returns (Case id, incident id).
async fn case_with_incident(h: &Harness, t0: DateTime<Utc>) -> (String, String) {
    let id = h.sf.insert_record("Case", json!({"Subject": "Checkout fails", "Priority": "Sev1"}));
    let reply = h.post_records(&post(case(&id, "New", "", t0), None)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let links = h.store.incidents_for_record(&id).await.unwrap();
    assert_eq!(links.len(), 1, "{}", reply.body);
    (id, links[0].incident_id.to_string())
}

/// The agent changes the Case from `before` to `after` (status, impact) a minute later.
async fn change(h: &Harness, id: &str, t0: DateTime<Utc>, before: (&str, &str), after: (&str, &str)) -> Value {
    let later = t0 + Duration::seconds(60);
    let change = post(case(id, after.0, after.1, later), Some(case(id, before.0, before.1, t0)));
    let reply = h.post_records(&change).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// The requests the simulator answered for `path_end`, with their status.
fn answered(h: &Harness, method: &str, path_end: &str) -> Vec<(u16, Value)> {
    h.pd.requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.ends_with(path_end))
        .map(|r| (r.status, r.json().unwrap_or_default()))
        .collect()
}

/// The newest webhook event of `event_type` PagerDuty emitted for `incident`.
fn emitted(h: &Harness, event_type: &str, incident: &str) -> Value {
    h.pd.webhook_events()
        .into_iter()
        .rev()
        .find(|e| e["event"]["event_type"] == event_type && e["event"]["data"]["incident"]["id"] == incident)
        .unwrap_or_else(|| panic!("PagerDuty emitted no {event_type} for {incident}"))
}

fn comments(h: &Harness) -> Vec<String> {
    h.sf.records("CaseComment").into_iter().filter_map(|c| c["CommentBody"].as_str().map(str::to_string)).collect()
}

async fn drain(h: &Harness) {
    for _ in 0..10 {
        if h.retry_queue.is_empty() {
            break;
        }
        h.clock.advance(Duration::seconds(120));
        h.drain_retries(20).await;
    }
    assert!(h.retry_queue.is_empty(), "the retry queue drains");
    assert!(h.dlq.is_empty(), "nothing dead-lettered");
}

#[tokio::test]
async fn a_case_change_publishes_one_status_update_on_the_linked_incident() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now().trunc_subsecs(0);
    let (case_id, incident) = case_with_incident(&h, t0).await;
    let summary = change(&h, &case_id, t0, ("New", ""), ("Customer notified", "")).await;
    assert_eq!(summary["applied"], 1, "{summary}");

    let updates = h.pd.status_updates(&incident);
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["message"], "[Salesforce] Case 00001026: the customer was told");
    assert_eq!(updates[0]["sender"]["id"], BRIDGE_PD_USER, "published as the From user");
    let sent = answered(&h, "POST", &format!("/incidents/{incident}/status_updates"));
    assert_eq!(sent, vec![(200, json!({"message": "[Salesforce] Case 00001026: the customer was told"}))]);
}

#[tokio::test]
async fn a_case_field_sets_the_incidents_custom_fields() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now().trunc_subsecs(0);
    let (case_id, incident) = case_with_incident(&h, t0).await;
    let summary = change(&h, &case_id, t0, ("New", ""), ("New", "Checkout down for EU customers")).await;
    assert_eq!(summary["applied"], 1, "{summary}");

    let values = h.pd.custom_field_values(&incident);
    assert_eq!(Value::Object(values), json!({"impact": "Checkout down for EU customers", "seats": 12}));
    let sent = answered(&h, "PUT", &format!("/incidents/{incident}/custom_fields/values"));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 201, "accepted by the spec and the simulator");
    assert_eq!(
        sent[0].1,
        json!({"custom_fields": [{"name": "impact", "value": "Checkout down for EU customers"}, {"name": "seats", "value": 12}]})
    );

    // PagerDuty sends the change back with the bridge as its agent: skipped as made by the bridge.
    let echo = emitted(&h, "incident.custom_field_values.updated", &incident);
    assert_eq!(echo["event"]["agent"]["id"], BRIDGE_PD_USER);
    let reply = h.webhook(&echo.to_string(), "w-fields").await;
    assert_eq!(outcome(&reply), "skipped", "{}", reply.body);
}

#[tokio::test]
async fn a_status_update_whose_answer_was_lost_is_published_once() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now().trunc_subsecs(0);
    let (case_id, incident) = case_with_incident(&h, t0).await;
    h.pd.fail_next(1, FaultKind::LoseAnswer);
    let summary = change(&h, &case_id, t0, ("New", ""), ("Customer notified", "")).await;
    assert_eq!(summary["queued"], 1, "the outcome is unknown: queued, {summary}");
    assert_eq!(h.pd.status_updates(&incident).len(), 1, "PagerDuty did publish it");

    drain(&h).await;
    assert_eq!(h.pd.status_updates(&incident).len(), 1, "PagerDuty lists none to check: not published again");
    let audited = h.store.audit_entries().iter().flat_map(|e| e.actions.clone()).any(|a| {
        a.action == "publish_status_update"
            && !a.ok
            && a.detail.as_deref().is_some_and(|d| d.contains("outcome unknown"))
    });
    assert!(audited, "audited as outcome unknown: {:?}", h.store.audit_entries());
    let posts = answered(&h, "POST", "/status_updates");
    assert_eq!(posts.len(), 1, "sent once: {posts:?}");
}

#[tokio::test]
async fn the_bridges_own_status_update_does_not_come_back_as_a_case_comment() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now().trunc_subsecs(0);
    let (case_id, incident) = case_with_incident(&h, t0).await;
    change(&h, &case_id, t0, ("New", ""), ("Customer notified", "")).await;

    let echo = emitted(&h, "incident.status_update_published", &incident);
    assert_eq!(echo["event"]["agent"]["id"], BRIDGE_PD_USER, "PagerDuty names the bridge as its agent");
    let reply = h.webhook(&echo.to_string(), "w-echo").await;
    assert_eq!(outcome(&reply), "skipped", "{}", reply.body);
    // Were the agent unknown, the message's marker would still stop it.
    let mut anonymous = echo.clone();
    anonymous["event"]["id"] = json!("01STATUSECHOWITHOUTAGENT1");
    anonymous["event"]["agent"] = Value::Null;
    let reply = h.webhook(&anonymous.to_string(), "w-anonymous").await;
    assert_eq!(outcome(&reply), "skipped", "{}", reply.body);
    assert!(comments(&h).is_empty(), "no Case Comment from the bridge's own status update: {:?}", comments(&h));

    // Someone else's status update is copied onto the Case.
    h.oncall(
        reqwest::Method::POST,
        &format!("/incidents/{incident}/status_updates"),
        json!({"message": "Rolling back"}),
    )
    .await;
    let theirs = emitted(&h, "incident.status_update_published", &incident);
    assert_eq!(outcome(&h.webhook(&theirs.to_string(), "w-theirs").await), "applied");
    let copied = comments(&h);
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert!(copied[0].starts_with("[PagerDuty] Status update: Rolling back"), "{copied:?}");
}

#[tokio::test]
async fn a_custom_field_value_pagerduty_refuses_is_dead_lettered_not_retried() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now().trunc_subsecs(0);
    let (case_id, incident) = case_with_incident(&h, t0).await;
    let summary = change(&h, &case_id, t0, ("New", ""), ("Seats counted", "")).await;
    assert_eq!(summary["dead_lettered"], 1, "bad input is not retried: {summary}");
    let sent = answered(&h, "PUT", &format!("/incidents/{incident}/custom_fields/values"));
    assert_eq!(sent.iter().map(|(status, _)| *status).collect::<Vec<_>>(), vec![400], "sent once, refused");
    assert!(h.pd.custom_field_values(&incident).is_empty());
    assert!(h.retry_queue.is_empty());
}
