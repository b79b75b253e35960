//! The bridge's own changes come back to it and stop there (issue 15: defect 8, "echoes are
//! recognised by who acted"). PagerDuty webhooks name their agent: one whose agent is the user the
//! bridge acts as is skipped as made by the bridge. Salesforce changes by the integration user
//! (its username on the post, or the record's `LastModifiedById`) are skipped. Every text the bridge
//! writes carries its marker as a second line of defence, the resolution note included.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::{Map, Value, json};
use shared::model::Outcome;
use shared::pagerduty::CreateIncident;
use shared::store::LinkStore;
use sim::harness::{Harness, INTEGRATION_USER, ORG_ID, outcome};
use sim::salesforce::OutboundMessenger;

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
          - create_incident: {service: PSVC001, urgency: high, title: {fields: [Subject]}}
      - name: working-acknowledges
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: changed_to, value: Working}
        actions:
          - acknowledge
      - name: closed-resolves-with-a-note
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: changed_to, value: Closed}
        actions:
          - resolve: {resolution: "Case {{record.CaseNumber}} closed in Salesforce"}
  - name: PD > SFDC
    enabled: true
    rules:
      - name: trigger-opens-case
        direction: pagerduty_to_salesforce
        object: Case
        applies_to: new_only
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: trigger}
        actions:
          - create_record:
              object: Case
              fields: {Subject: "{{incident.title}}", Origin: PagerDuty}
              external_id_field: PagerDuty_Incident_Key__c
      - name: acknowledged-sets-working
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: acknowledge}
        actions:
          - set_fields: {Status: Working, PagerDuty_Status__c: "{{incident.status}}"}
      - name: note-becomes-comment
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: incident.annotated}
        actions:
          - add_case_comment: {body: "{{note.content}}"}
"#;

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.000+0000").to_string()
}

/// The Case as the trigger serialises it, last modified by `by` (a Salesforce user id).
fn case(id: &str, priority: &str, status: &str, at: DateTime<Utc>, by: &str) -> Value {
    json!({
        "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{id}")},
        "Id": id, "CaseNumber": "00001026", "Subject": "Checkout down", "Priority": priority, "Status": status,
        "CreatedDate": stamp(at), "LastModifiedDate": stamp(at), "SystemModstamp": stamp(at), "LastModifiedById": by,
    })
}

fn post(old: Option<Value>, new: Value, username: &str) -> Value {
    let map = |r: Value| -> Map<String, Value> { [(r["Id"].as_str().unwrap().to_string(), r)].into_iter().collect() };
    json!({
        "schema": 1, "org_id": ORG_ID, "object": "Case",
        "operation": if old.is_some() { "update" } else { "insert" },
        "user": {"id": "0055g00000AGENTAAA", "username": username}, "sent_at": Utc::now().to_rfc3339(),
        "old": old.map(map), "new": map(new),
    })
}

fn summary(reply: &shared::handler::http::Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// The newest webhook event of `event_type` PagerDuty emitted for `incident`, as delivered.
fn emitted(h: &Harness, event_type: &str, incident: &str) -> Value {
    h.pd.webhook_events()
        .into_iter()
        .rev()
        .find(|e| {
            e["event"]["event_type"] == event_type
                && (e["event"]["data"]["id"] == incident || e["event"]["data"]["incident"]["id"] == incident)
        })
        .unwrap_or_else(|| panic!("PagerDuty emitted no {event_type} for {incident}"))
}

fn audit_reason(h: &Harness, event_id: &str) -> String {
    let entries = h.store.audit_entries();
    let entry = entries.iter().rev().find(|e| e.event_id == event_id).expect("the event is audited");
    entry.reason.clone().unwrap_or_default()
}

/// An agent opens a Sev1 Case: the bridge opens its incident. Returns (Case id, incident id).
async fn open_case(h: &Harness, at: DateTime<Utc>) -> (String, String, Value) {
    let id = h.sf.insert_record("Case", json!({"Subject": "Checkout down", "Priority": "Sev1"}));
    let agent_id = h.sf.user_id(AGENT);
    let opened = case(&id, "Sev1", "New", at, &agent_id);
    assert_eq!(summary(&h.post_records(&post(None, opened.clone(), AGENT)).await)["applied"], 1);
    let links = h.store.incidents_for_record(&id).await.unwrap();
    (id, links[0].incident_id.to_string(), opened)
}

#[tokio::test]
async fn the_resolution_note_the_bridge_writes_is_marked_and_never_becomes_a_case_comment() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now().trunc_subsecs(0);
    let (case_id, incident, opened) = open_case(&h, t0).await;
    let closed = case(&case_id, "Sev1", "Closed", t0 + Duration::seconds(60), &h.sf.user_id(AGENT));
    assert_eq!(summary(&h.post_records(&post(Some(opened), closed, AGENT)).await)["applied"], 1);
    assert_eq!(h.pd.incident(&incident).unwrap()["status"], "resolved");
    let notes: Vec<Value> = h.pd.notes(&incident);
    assert_eq!(notes.len(), 1);
    let content = notes[0]["content"].as_str().unwrap_or_default();
    assert!(
        content.starts_with("[Salesforce] Case 00001026 closed in Salesforce"),
        "marked like every note: {content}"
    );
    assert!(content.contains("ref:"), "and it carries its reference: {content}");

    // PagerDuty sends the note back as incident.annotated, with the bridge as its agent.
    let echo = emitted(&h, "incident.annotated", &incident);
    assert_eq!(echo["event"]["agent"]["id"], BRIDGE_PD_USER);
    let reply = h.webhook(&echo.to_string(), "w-echo").await;
    assert_eq!(outcome(&reply), "skipped", "{}", reply.body);
    let reason = audit_reason(&h, echo["event"]["id"].as_str().unwrap());
    assert!(reason.contains("made by the bridge"), "{reason}");

    // Were the agent unknown, the marker would still stop it.
    let mut anonymous = echo.clone();
    anonymous["event"]["id"] = json!("01ECHOWITHOUTAGENT0000001");
    anonymous["event"]["agent"] = Value::Null;
    let reply = h.webhook(&anonymous.to_string(), "w-anonymous").await;
    assert_eq!(outcome(&reply), "skipped", "{}", reply.body);
    assert!(h.sf.records("CaseComment").is_empty(), "no Case Comment from the bridge's own note");
}

#[tokio::test]
async fn an_acknowledge_the_bridge_made_comes_back_and_is_skipped_as_made_by_the_bridge() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now().trunc_subsecs(0);
    let (case_id, incident, opened) = open_case(&h, t0).await;
    let working = case(&case_id, "Sev1", "Working", t0 + Duration::seconds(60), &h.sf.user_id(AGENT));
    assert_eq!(summary(&h.post_records(&post(Some(opened), working, AGENT)).await)["applied"], 1);
    assert_eq!(h.pd.incident(&incident).unwrap()["status"], "acknowledged");
    h.sf.clear_requests();

    let echo = emitted(&h, "incident.acknowledged", &incident);
    let reply = h.webhook(&echo.to_string(), "w-ack").await;
    assert_eq!(outcome(&reply), "skipped", "{}", reply.body);
    let reason = audit_reason(&h, echo["event"]["id"].as_str().unwrap());
    assert_eq!(reason, format!("made by the bridge (PagerDuty user {BRIDGE_PD_USER}): not sent back"));
    let writes = h.sf.requests().iter().filter(|r| r.method != "GET" && r.path.contains("/services/data/")).count();
    assert_eq!(writes, 0, "the acknowledge does not go back to the Case it came from");
    assert_eq!(h.sf.record("Case", &case_id).unwrap()["Status"], "New", "untouched by the echo");
}

#[tokio::test]
async fn the_bridges_own_incident_coming_back_as_triggered_opens_no_second_case() {
    let h = Harness::start(RULES).await;
    // The bridge created this incident for a Case a moment ago; its link is not written yet.
    let created = h
        .ctx
        .pagerduty
        .create_incident(&CreateIncident {
            title: "Checkout down".into(),
            service_id: "PSVC001".into(),
            incident_key: Some(shared::rules::incident_key("Case", "5005g00000ECHO1AAA", "sev1-case-opens-incident")),
            ..Default::default()
        })
        .await
        .unwrap();
    let echo = emitted(&h, "incident.triggered", &created.id);
    let reply = h.webhook(&echo.to_string(), "w-trigger").await;
    assert_eq!(outcome(&reply), "skipped", "not deferred until a link shows up: {}", reply.body);
    assert!(audit_reason(&h, echo["event"]["id"].as_str().unwrap()).contains("made by the bridge"));
    h.drain_retries(10).await;
    assert!(h.sf.records("Case").is_empty(), "no Case for the bridge's own incident");
    assert!(h.retry_queue.is_empty());

    // An incident a person triggers opens its Case as before.
    let theirs = h.oncall(
        reqwest::Method::POST,
        "/incidents",
        json!({"incident": {"type": "incident", "title": "Billing down", "service": {"id": "PSVC001", "type": "service_reference"}}}),
    )
    .await;
    let id = theirs["incident"]["id"].as_str().unwrap();
    let trigger = emitted(&h, "incident.triggered", id);
    assert_eq!(outcome(&h.webhook(&trigger.to_string(), "w-theirs").await), "applied");
    assert_eq!(h.sf.records("Case").len(), 1);
}

#[tokio::test]
async fn salesforce_changes_last_modified_by_the_integration_user_are_skipped() {
    let mut h = Harness::start(RULES).await;
    let bridge = h.sf.user_id(INTEGRATION_USER);
    h.ctx.settings.integration_user_id = bridge.clone();
    let t0 = Utc::now().trunc_subsecs(0);

    // An Outbound Message names no user: the record's LastModifiedById does.
    let messenger = OutboundMessenger::new(ORG_ID, &h.sf.base_url());
    let ours = case("5005g00000ECHO2AAA", "Sev1", "New", t0, &bridge);
    let reply = h.outbound_message(&messenger.envelope("Case", &[ours])).await;
    assert!(reply.body.contains("<Ack>true</Ack>"), "{}", reply.body);
    // A trigger post whose running user is an automation user, of a record the bridge last wrote.
    let ours = case("5005g00000ECHO3AAA", "Sev1", "New", t0, &bridge);
    assert_eq!(summary(&h.post_records(&post(None, ours, "autoproc@00d5g000004xxxx.example")).await)["skipped"], 1);
    // The integration user's username in another case (the Apex compares it case-insensitively).
    let ours = case("5005g00000ECHO4AAA", "Sev1", "New", t0, &bridge);
    assert_eq!(summary(&h.post_records(&post(None, ours, &INTEGRATION_USER.to_uppercase())).await)["skipped"], 1);
    assert!(h.pd.incidents().is_empty(), "no incident for the bridge's own records");
    let echoes = h.store.audit_entries().iter().filter(|e| e.outcome == Outcome::Skipped).count();
    assert_eq!(echoes, 3);

    // An agent's change of the same kind still opens an incident.
    let theirs = case("5005g00000ECHO5AAA", "Sev1", "New", t0, &h.sf.user_id(AGENT));
    assert_eq!(summary(&h.post_records(&post(None, theirs, AGENT)).await)["applied"], 1);
    assert_eq!(h.pd.incidents().len(), 1);
}
