//! A lost answer is neither lost nor repeated (issue 15, defects 6 and 7).
//!
//! The simulators' `LoseAnswer` fault carries a request out and then closes the connection
//! without the answer: the bridge cannot tell that the write happened. Before it writes again it
//! must look (a Case Comment or note carries a reference derived from the event and the action),
//! and where PagerDuty offers nothing to look at it must not write again blindly. No call may
//! start when its timeout would outlive the function, and the "API usage above 90 %" pause holds
//! until a probe sees the usage below the share.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use shared::clock::Clock;
use shared::handler::http::InboundRequest;
use shared::handler::{pd_to_sfdc, sfdc_to_pd};
use shared::model::Outcome;
use shared::retry::dlq;
use shared::store::{BreakerState, LinkStore};
use sim::faults::FaultKind;
use sim::harness::{
    Harness, INBOUND_SECRET, INTEGRATION_USER, ORG_ID, WEBHOOK_SECRET, delivery, incident_data, outcome,
};
use sim::pagerduty::sign_v1;
use sim::salesforce::sign_trigger;

const PD_TO_SF: &str = r#"
rulesets:
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
              fields: {Subject: "{{incident.title}}", Origin: PagerDuty, Priority: High}
              external_id_field: PagerDuty_Incident_Key__c
      - name: resolved-closes-case-with-comment
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: resolve}
        actions:
          - set_fields: {Status: Closed}
          - add_case_comment: {body: "Incident resolved in PagerDuty"}
      - name: note-becomes-comment
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: incident.annotated}
        actions:
          - add_case_comment: {body: "{{note.content}}"}
"#;

const SF_TO_PD: &str = r#"
rulesets:
  - name: SFDC > PD
    enabled: true
    rules:
      - name: sev1-case-opens-incident
        direction: salesforce_to_pagerduty
        object: Case
        applies_to: new_only
        conditions:
          - {field: Priority, operator: in, value: [Sev1]}
        actions:
          - create_incident: {service: PSVC001, urgency: low, title: {prefix: "Case ", fields: [CaseNumber]}}
      - name: escalation-raises-urgency-and-priority
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: changed_to, value: Escalated}
        actions:
          - set_urgency: {urgency: high}
          - set_priority: {priority: P1}
      - name: case-closed-resolves
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: changed_to, value: Closed}
        actions:
          - resolve: {resolution: "[Salesforce] Case {{record.CaseNumber}} closed"}
      - name: comment-becomes-note
        direction: salesforce_to_pagerduty
        object: CaseComment
        applies_to: new_only
        conditions:
          - {field: CommentBody, operator: is_not_empty}
        actions:
          - add_note: {content: "{{record.CommentBody}}"}
      - name: help-requested
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Type, operator: changed_to, value: Electrical}
        actions:
          - add_responders: {users: [PUSR002], message: "Help on {{record.CaseNumber}}"}
      - name: workflow-on-mechanical
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Type, operator: changed_to, value: Mechanical}
        actions:
          - run_incident_workflow: {workflow: PWFL001}
      - name: automation-on-structural
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Type, operator: changed_to, value: Structural}
        actions:
          - run_automation_action: {action: PACT001}
"#;

const AGENT: &str = "agent@example.com";
const CASE: &str = "5005g00000CASE1AAA";

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn case(status: &str, kind: &str, at: DateTime<Utc>) -> Value {
    json!({
        "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{CASE}")},
        "Id": CASE, "CaseNumber": "00001026", "Subject": "Checkout fails", "Priority": "Sev1",
        "Status": status, "Type": kind, "LastModifiedDate": stamp(at), "SystemModstamp": stamp(at),
    })
}

fn post(object: &str, operation: &str, new: Value, old: Option<Value>) -> Value {
    let by_id = |r: Value| -> Map<String, Value> { [(r["Id"].as_str().unwrap().to_string(), r)].into_iter().collect() };
    json!({
        "schema": 1, "org_id": ORG_ID, "object": object, "operation": operation,
        "user": {"id": "0055g00000AGENTAAA", "username": AGENT}, "sent_at": Utc::now().to_rfc3339(),
        "old": old.map(by_id), "new": by_id(new),
    })
}

fn queued(reply: &shared::handler::http::Reply) -> bool {
    outcome(reply) == "queued" || serde_json::from_str::<Value>(&reply.body).is_ok_and(|v| v["queued"] == 1)
}

/// The keys the queued envelope marks uncertain (read as JSON: the field is new).
fn uncertain_in_queue(h: &Harness) -> Vec<String> {
    h.retry_queue
        .bodies()
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .flat_map(|v| v["uncertain"].as_array().cloned().unwrap_or_default())
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect()
}

/// A Case linked to an incident, opened through the PD → SFDC handler.
async fn pd_incident_with_case(h: &Harness, incident: &str, t0: DateTime<Utc>) -> String {
    let reply = h.webhook(&delivery("E1", "incident.triggered", t0, incident_data(incident, "triggered")), "w1").await;
    assert_eq!(outcome(&reply), "applied", "{}", reply.body);
    let links = h.store.records_for_incident(incident).await.unwrap();
    links[0].record.id.to_string()
}

fn comments_on(h: &Harness, case_id: &str, text: &str) -> Vec<String> {
    h.sf.records("CaseComment")
        .into_iter()
        .filter(|c| c["ParentId"] == case_id)
        .filter_map(|c| c["CommentBody"].as_str().map(str::to_string))
        .filter(|b| b.contains(text))
        .collect()
}

/// An incident opened through the SFDC → PD handler for [`CASE`].
async fn sf_case_with_incident(h: &Harness, t0: DateTime<Utc>) -> String {
    let reply = h.post_records(&post("Case", "insert", case("New", "Other", t0), None)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let links = h.store.incidents_for_record(CASE).await.unwrap();
    assert_eq!(links.len(), 1, "{}", reply.body);
    links[0].incident_id.to_string()
}

fn notes_with(h: &Harness, incident: &str, text: &str) -> usize {
    h.pd.notes(incident).iter().filter(|n| n["content"].as_str().is_some_and(|c| c.contains(text))).count()
}

/// The API calls of each attempt after the first (the audit entries of the retries).
fn retry_api_calls(h: &Harness) -> Vec<u32> {
    let entries = h.store.audit_entries();
    let last = entries.last().map(|e| e.event_id.clone()).unwrap_or_default();
    entries.iter().filter(|e| e.event_id == last).skip(1).map(|e| e.api_calls).collect()
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
    assert!(h.dlq.is_empty(), "nothing dead-lettered: {:?}", h.dead_letters());
}

#[tokio::test]
async fn a_case_comment_whose_answer_was_lost_is_written_once() {
    let h = Harness::start(PD_TO_SF).await;
    let t0 = Utc::now();
    let case_id = pd_incident_with_case(&h, "PLOST1", t0).await;
    let note = json!({"id": "PNOTE1", "type": "incident_note", "content": "Rolled back the deploy", "trimmed": false,
        "incident": {"id": "PLOST1", "type": "incident_reference", "summary": "Checkout down"}});
    h.sf.fail_next(1, FaultKind::LoseAnswer);
    let reply = h.webhook(&delivery("E2", "incident.annotated", t0 + Duration::seconds(30), note), "w2").await;
    assert!(queued(&reply), "the outcome is unknown: queued, {}", reply.body);
    assert_eq!(comments_on(&h, &case_id, "Rolled back the deploy").len(), 1, "Salesforce did write it");
    assert_eq!(uncertain_in_queue(&h).len(), 1, "the comment is marked uncertain, not failed");

    drain(&h).await;
    let comments = comments_on(&h, &case_id, "Rolled back the deploy");
    assert_eq!(comments.len(), 1, "found by its reference, not written again: {comments:?}");
    assert!(comments[0].starts_with("[PagerDuty] "), "still marked for loop prevention: {}", comments[0]);
    assert!(comments[0].contains("ref:"), "carries the reference it was found by: {}", comments[0]);
    let queries = h.sf.requests().iter().filter(|r| r.path.ends_with("/query")).count();
    assert_eq!(queries, 1, "one SOQL query to look for it");
    assert_eq!(retry_api_calls(&h), vec![1], "the retry costs the query and nothing else");
}

/// The Case the trigger opened, its answer lost; an agent raises it before the retry. The retry
/// finds the Case by its external id and links it: it does not upsert the opening's fields over
/// the agent's change (the explorer's seed 2773).
#[tokio::test]
async fn a_case_whose_creation_answer_was_lost_is_found_not_written_over() {
    let h = Harness::start(PD_TO_SF).await;
    let t0 = Utc::now();
    let first = pd_incident_with_case(&h, "PLOST8", t0).await;
    h.sf.fail_next(1, FaultKind::LoseAnswer);
    let reply = h.webhook(&delivery("E9", "incident.triggered", t0, incident_data("PLOST9", "triggered")), "w9").await;
    assert!(queued(&reply), "the outcome is unknown: queued, {}", reply.body);
    let cases: Vec<Value> = h.sf.records("Case").into_iter().filter(|c| c["Id"] != first.as_str()).collect();
    assert_eq!(cases.len(), 1, "Salesforce did create it");
    let case_id = cases[0]["Id"].as_str().unwrap().to_string();
    assert_eq!(uncertain_in_queue(&h).len(), 1, "the creation is marked uncertain, not failed");
    h.sf.update_record("Case", &case_id, json!({"Priority": "Sev1"}), "agent@example.com").unwrap();

    drain(&h).await;

    assert_eq!(h.sf.records("Case").len(), 2, "no second Case");
    assert_eq!(h.sf.record("Case", &case_id).unwrap()["Priority"], "Sev1", "the agent's change stays");
    let links = h.store.records_for_incident("PLOST9").await.unwrap();
    assert_eq!(links.iter().map(|l| l.record.id.to_string()).collect::<Vec<_>>(), vec![case_id]);
}

#[tokio::test]
async fn a_composite_whose_answer_was_lost_makes_every_write_uncertain_and_repeats_none() {
    let h = Harness::start(PD_TO_SF).await;
    let t0 = Utc::now();
    let case_id = pd_incident_with_case(&h, "PLOST2", t0).await;
    h.sf.fail_next(1, FaultKind::LoseAnswer);
    let resolved = delivery("E2", "incident.resolved", t0 + Duration::seconds(60), incident_data("PLOST2", "resolved"));
    let reply = h.webhook(&resolved, "w2").await;
    assert!(queued(&reply), "{}", reply.body);
    let uncertain = uncertain_in_queue(&h);
    assert!(
        uncertain.iter().any(|k| k.starts_with("add_case_comment:")),
        "the comment of the lost Composite is uncertain, not failed: {uncertain:?}"
    );

    drain(&h).await;
    assert_eq!(h.sf.record("Case", &case_id).unwrap()["Status"], "Closed");
    assert_eq!(comments_on(&h, &case_id, "Incident resolved in PagerDuty").len(), 1, "the comment is not repeated");
    assert_eq!(retry_api_calls(&h), vec![2], "the query, then the Composite with the field update alone");
}

#[tokio::test]
async fn an_incident_note_whose_answer_was_lost_is_written_once() {
    let h = Harness::start(SF_TO_PD).await;
    let t0 = Utc::now();
    let incident = sf_case_with_incident(&h, t0).await;
    let comment = json!({"attributes": {"type": "CaseComment", "url": "/x"}, "Id": "00a5g00000COM01AAA",
        "ParentId": CASE, "CommentBody": "Customer confirms the impact", "SystemModstamp": stamp(t0)});
    h.pd.fail_next(1, FaultKind::LoseAnswer);
    let reply = h.post_records(&post("CaseComment", "insert", comment, None)).await;
    assert!(queued(&reply), "{}", reply.body);
    assert_eq!(notes_with(&h, &incident, "Customer confirms the impact"), 1, "PagerDuty did write it");

    drain(&h).await;
    assert_eq!(
        notes_with(&h, &incident, "Customer confirms the impact"),
        1,
        "found by its reference, not written again"
    );
    assert!(h.pd.notes(&incident)[0]["content"].as_str().unwrap().contains("ref:"));
}

#[tokio::test]
async fn a_resolution_note_whose_answer_was_lost_is_written_once() {
    let h = Harness::start(SF_TO_PD).await;
    let t0 = Utc::now();
    let incident = sf_case_with_incident(&h, t0).await;
    h.pd.fail_next(1, FaultKind::LoseAnswer);
    let closed =
        post("Case", "update", case("Closed", "Other", t0 + Duration::seconds(60)), Some(case("New", "Other", t0)));
    let reply = h.post_records(&closed).await;
    assert!(queued(&reply), "{}", reply.body);

    drain(&h).await;
    assert_eq!(h.pd.incident(&incident).unwrap()["status"], "resolved");
    assert_eq!(notes_with(&h, &incident, "closed"), 1, "the resolution note is not repeated");
    assert_eq!(retry_api_calls(&h), vec![2], "a read of the notes, then the resolve alone");
}

/// Runs a Case change whose PagerDuty write (after `reads` reads) loses its answer, then drains
/// the retries.
async fn lose_the_answer_to(h: &Harness, kind: &str, reads: usize) {
    let t0 = Utc::now();
    sf_case_with_incident(h, t0).await;
    // A zero delay answers normally: it lets the reads through.
    h.pd.fail_next(reads, FaultKind::Slow(std::time::Duration::ZERO));
    h.pd.fail_next(1, FaultKind::LoseAnswer);
    let change = post("Case", "update", case("New", kind, t0 + Duration::seconds(60)), Some(case("New", "Other", t0)));
    let reply = h.post_records(&change).await;
    assert!(queued(&reply), "{}", reply.body);
    drain(h).await;
}

/// The audit says the action's outcome is unknown and that it was not sent again.
fn audited_as_uncertain(h: &Harness, action: &str) -> bool {
    h.store
        .audit_entries()
        .iter()
        .flat_map(|e| e.actions.clone())
        .any(|a| a.action == action && !a.ok && a.detail.as_deref().is_some_and(|d| d.contains("outcome unknown")))
}

#[tokio::test]
async fn responders_whose_answer_was_lost_are_not_requested_twice() {
    let h = Harness::start(SF_TO_PD).await;
    // The requester's user id is read first (then cached).
    lose_the_answer_to(&h, "Electrical", 1).await;
    assert_eq!(h.pd.responder_requests().len(), 1, "not requested again blindly");
    assert!(audited_as_uncertain(&h, "add_responders"), "{:?}", h.store.audit_entries());
    assert_eq!(retry_api_calls(&h), vec![1], "one read of the incident, whose responder requests are not listed");
}

#[tokio::test]
async fn a_workflow_run_whose_answer_was_lost_is_not_run_again() {
    let h = Harness::start(SF_TO_PD).await;
    lose_the_answer_to(&h, "Mechanical", 0).await;
    assert_eq!(h.pd.workflow_instances().len(), 1, "PagerDuty offers no way to check: not run again");
    assert!(audited_as_uncertain(&h, "run_incident_workflow"), "{:?}", h.store.audit_entries());
    assert_eq!(retry_api_calls(&h), vec![0], "nothing to read");
}

#[tokio::test]
async fn an_automation_action_whose_answer_was_lost_is_not_run_again() {
    let h = Harness::start(SF_TO_PD).await;
    lose_the_answer_to(&h, "Structural", 0).await;
    assert_eq!(h.pd.automation_invocations().len(), 1, "not invoked again blindly");
    assert!(audited_as_uncertain(&h, "run_automation_action"), "{:?}", h.store.audit_entries());
    assert_eq!(retry_api_calls(&h), vec![1], "one list of the invocations (the simulator does not serve it)");
}

fn signed_webhook(h: &Harness, body: &str, deadline: DateTime<Utc>) -> InboundRequest {
    let mut request = h.request(
        pd_to_sfdc::WEBHOOK_ROUTE,
        body,
        vec![
            ("content-type".into(), "application/json".into()),
            ("x-pagerduty-signature".into(), sign_v1(WEBHOOK_SECRET, body.as_bytes())),
        ],
    );
    request.deadline = Some(deadline);
    request
}

fn signed_post(h: &Harness, payload: &Value, deadline: DateTime<Utc>) -> InboundRequest {
    let body = payload.to_string();
    let ts = h.clock.now().timestamp();
    let mut request = h.request(
        sfdc_to_pd::RECORDS_ROUTE,
        &body,
        vec![
            ("content-type".into(), "application/json".into()),
            ("x-pdsync-timestamp".into(), ts.to_string()),
            ("x-pdsync-signature".into(), sign_trigger(INBOUND_SECRET, ts, body.as_bytes())),
        ],
    );
    request.deadline = Some(deadline);
    request
}

#[tokio::test]
async fn a_salesforce_call_that_could_outlive_the_function_is_not_started() {
    // The harness's HTTP timeout is 5 s: with 4 s left a call could still be running when the
    // function is stopped, and what it did would be forgotten with it.
    let h = Harness::start(PD_TO_SF).await;
    let body = delivery("E1", "incident.triggered", Utc::now(), incident_data("PLATE1", "triggered"));
    let request = signed_webhook(&h, &body, h.clock.now() + Duration::seconds(4));
    let reply = pd_to_sfdc::handle(&h.ctx, request).await;
    assert_eq!(outcome(&reply), "queued", "{}", reply.body);
    assert!(h.sf.records("Case").is_empty());
    let composites = h.sf.requests().iter().filter(|r| r.path.ends_with("/composite")).count();
    assert_eq!(composites, 0, "no call started that could outlive the function");

    drain(&h).await;
    assert_eq!(h.sf.records("Case").len(), 1, "the retry applies it");
}

#[tokio::test]
async fn a_pagerduty_action_left_without_time_is_queued_with_what_was_done() {
    let h = Harness::start(SF_TO_PD).await;
    let t0 = Utc::now();
    let incident = sf_case_with_incident(&h, t0).await;
    h.ctx.pagerduty.set_priority(&incident, "P3").await.unwrap(); // caches the priorities
    h.pd.clear_requests();
    // 7.5 s left: the first call (5 s timeout + the margin to settle) may start; it takes 1 s,
    // after which the second one could outlive the function.
    h.pd.fail_next(1, FaultKind::Slow(std::time::Duration::from_secs(1)));
    let escalated =
        post("Case", "update", case("Escalated", "Other", t0 + Duration::seconds(60)), Some(case("New", "Other", t0)));
    let reply =
        sfdc_to_pd::handle(&h.ctx, signed_post(&h, &escalated, h.clock.now() + Duration::milliseconds(7500))).await;
    assert!(queued(&reply), "{}", reply.body);
    assert_eq!(h.pd.incident(&incident).unwrap()["urgency"], "high", "the first action was done");
    assert_eq!(h.pd.incident(&incident).unwrap()["priority"]["summary"], "P3", "the second was not started");
    let queued = serde_json::from_str::<Value>(&h.retry_queue.bodies()[0]).unwrap();
    assert_eq!(queued["done"].as_array().map(Vec::len), Some(1), "what succeeded is marked done: {queued}");
    assert_eq!(queued["attempts"], 0, "a deferral, not a failed attempt");

    drain(&h).await;
    assert_eq!(h.pd.incident(&incident).unwrap()["priority"]["summary"], "P1");
    let urgency_writes =
        h.pd.requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.json().is_some_and(|b| b["incident"]["urgency"].is_string()))
            .count();
    assert_eq!(urgency_writes, 1, "the done action is not repeated");
}

#[tokio::test]
async fn api_usage_above_90_percent_pauses_salesforce_until_a_probe_sees_it_below() {
    let h = Harness::start(PD_TO_SF).await;
    let (_, limit) = h.sf.api_usage();
    h.sf.set_api_used(limit * 95 / 100);
    let t0 = Utc::now();
    let first = h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PUSE1", "triggered")), "w1").await;
    assert_eq!(outcome(&first), "applied", "{}", first.body);
    let breaker = h.stores.breakers.get_breaker("salesforce").await.unwrap().expect("a breaker record");
    assert_eq!(breaker.state, BreakerState::Open, "the call that saw 95 % usage must not close it again");

    let calls = h.sf.requests().len();
    let second = h.webhook(&delivery("E2", "incident.triggered", t0, incident_data("PUSE2", "triggered")), "w2").await;
    assert_eq!(outcome(&second), "queued", "paused: {}", second.body);
    assert_eq!(h.sf.requests().len(), calls, "no call while paused");

    // The probe after the pause still sees 95 %: the pause goes on.
    h.clock.advance(Duration::seconds(61));
    h.drain_retries_until(Some(h.clock.now()), 5).await;
    let breaker = h.stores.breakers.get_breaker("salesforce").await.unwrap().unwrap();
    assert_eq!(breaker.state, BreakerState::Open, "a probe above the share opens it again");
    let third = h.webhook(&delivery("E3", "incident.triggered", t0, incident_data("PUSE3", "triggered")), "w3").await;
    assert_eq!(outcome(&third), "queued", "still paused: {}", third.body);

    // Usage drops (the rolling 24 h window moved on): the next probe closes it and the queue drains.
    h.sf.set_api_used(limit / 10);
    drain(&h).await;
    let breaker = h.stores.breakers.get_breaker("salesforce").await.unwrap().unwrap();
    assert_eq!(breaker.state, BreakerState::Closed, "a probe below the share closes it");
    assert_eq!(h.sf.records("Case").len(), 3);
}

#[tokio::test]
async fn the_query_that_looks_for_comments_is_answered_like_salesforce_and_counted() {
    let h = Harness::start(PD_TO_SF).await;
    let case_id = h.sf.insert_record("Case", json!({"Subject": "Down"}));
    for body in ["first", "second"] {
        h.sf.insert_record("CaseComment", json!({"ParentId": case_id, "CommentBody": body}));
    }
    let (used, _) = h.sf.api_usage();
    let soql = format!("SELECT Id, CommentBody FROM CaseComment WHERE ParentId = '{case_id}' LIMIT 200");
    let result = h.ctx.salesforce.query(&soql).await.unwrap();
    assert_eq!((result.total_size, result.done), (2, true));
    let bodies: Vec<&str> = result.records.iter().filter_map(|r| r["CommentBody"].as_str()).collect();
    assert_eq!(bodies, vec!["first", "second"]);
    assert_eq!(result.records[0]["attributes"]["type"], "CaseComment");
    assert!(h.sf.api_usage().0 > used, "counted against the daily API limit");
    let err = h.ctx.salesforce.query("SELECT Id FROM CaseComment WHERE ParentId LIKE '500%'").await.unwrap_err();
    assert_eq!(err.error_codes(), vec!["MALFORMED_QUERY"], "{err}");
    assert!(!err.is_transient());
}

const CASE_AND_COMMENTS: &str = r#"
rulesets:
  - name: both ways
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
              fields: {Subject: "{{incident.title}}", Origin: PagerDuty, Priority: High}
              external_id_field: PagerDuty_Incident_Key__c
      - name: comment-becomes-note
        direction: salesforce_to_pagerduty
        object: CaseComment
        applies_to: new_only
        conditions:
          - {field: CommentBody, operator: is_not_empty}
        actions:
          - add_note: {content: "{{record.CommentBody}}"}
"#;

/// An Apex trigger post of one inserted record, made by `username`, as the simulator holds it.
fn insert_post(h: &Harness, object: &str, id: &str, username: &str) -> Value {
    let record = h.sf.record(object, id).expect("the record exists");
    json!({
        "schema": 1, "org_id": ORG_ID, "object": object, "operation": "insert",
        "user": {"id": h.sf.user_id(username), "username": username}, "sent_at": h.clock.now().to_rfc3339(),
        "old": null, "new": {id: record},
    })
}

/// PagerDuty triggers an incident, the bridge opens its Case and Salesforce's answer is lost; the
/// trigger's retries then meet a Salesforce that answers 503 to everything. Returns the incident,
/// the trigger's delivery, the Case.
async fn case_opened_with_its_answer_lost(h: &Harness) -> (String, String, String) {
    let trigger = async |title: &str| {
        let body = json!({"incident": {"type": "incident", "title": title,
            "service": {"id": "PSVC001", "type": "service_reference"}}});
        let answer = h.oncall(reqwest::Method::POST, "/incidents", body).await;
        let triggered = h.pd.webhook_events().pop().expect("PagerDuty emitted the trigger");
        (answer["incident"]["id"].as_str().unwrap().to_string(), triggered.to_string())
    };
    let (_, first) = trigger("Billing slow").await;
    assert_eq!(outcome(&h.webhook(&first, "w0").await), "applied", "a first Case (the session is warm)");
    let (incident, triggered) = trigger("Checkout down").await;
    h.sf.fail_next(1, FaultKind::LoseAnswer);
    let reply = h.webhook(&triggered, "w1").await;
    assert!(queued(&reply), "the outcome is unknown: queued, {}", reply.body);
    let case_id = h.sf.records("Case")[1]["Id"].as_str().unwrap().to_string();
    h.sf.fail_next(1000, FaultKind::ServerError);
    (incident, triggered, case_id)
}

/// An agent's comment on `case_id`, as the Apex trigger posts it.
async fn agent_comments(h: &Harness, case_id: &str, text: &str) {
    let agent = "agent@example.com";
    let comment = h.sf.insert_record_as("CaseComment", json!({"ParentId": case_id, "CommentBody": text}), agent);
    let reply = h.post_records(&insert_post(h, "CaseComment", &comment, agent)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// No other Case, one link, and each comment one note, once Salesforce is back and all is settled.
async fn settles_with_one_case_and_one_note_each(h: &Harness, incident: &str, case_id: &str, texts: &[&str]) {
    h.sf.clear_queued_faults();
    drain(h).await;
    assert_eq!(h.sf.records("Case").len(), 2, "no other Case");
    let links = h.store.records_for_incident(incident).await.unwrap();
    assert_eq!(links.iter().map(|l| l.record.id.to_string()).collect::<Vec<_>>(), vec![case_id.to_string()]);
    for text in texts {
        assert_eq!(notes_with(h, incident, text), 1, "still one note of {text:?}");
    }
}

/// The Case the trigger opened, its answer lost, and Salesforce unavailable to the trigger's
/// retries for longer than a comment waits for its Case's link: the comments an agent writes on
/// the new Case meanwhile still become notes. With Change Data Capture the bridge's own insert of
/// the Case comes back as an echo naming its incident (its external id), and that links it
/// (issue 20's seed 8432, where the comment gave up waiting 15 s before the trigger settled).
#[tokio::test]
async fn comments_on_a_case_whose_creation_answer_was_lost_wait_for_no_retry() {
    let h = Harness::start(CASE_AND_COMMENTS).await;
    let t0 = h.clock.now();
    let (incident, triggered, case_id) = case_opened_with_its_answer_lost(&h).await;
    agent_comments(&h, &case_id, "Customer called back").await;
    let echo = h.post_records(&insert_post(&h, "Case", &case_id, INTEGRATION_USER)).await;
    assert_eq!(echo.status, 200, "{}", echo.body);
    agent_comments(&h, &case_id, "Second site down too").await;

    // Twenty minutes of retries. Without the echo's link the trigger's retry would have to look
    // for its Case in Salesforce, which fails it every time, and the comments would give up.
    h.drain_retries_until(Some(t0 + Duration::minutes(20)), 50).await;
    for text in ["Customer called back", "Second site down too"] {
        assert_eq!(notes_with(&h, &incident, text), 1, "the comment {text:?} became one note");
    }
    let trigger_id = triggered_event_id(&triggered);
    let settled = h.store.audit_entries().into_iter().rev().find(|e| e.event_id == trigger_id).unwrap();
    let reason = settled.reason.unwrap_or_default();
    assert!(
        reason.starts_with("nothing left to do") && reason.contains(&format!("a Case is already linked ({case_id})")),
        "the trigger's retry finds its Case linked by the echo, with no Salesforce call: {reason}"
    );
    settles_with_one_case_and_one_note_each(&h, &incident, &case_id, &["Customer called back", "Second site down too"])
        .await;
}

/// The same without an echo, as the shipped Apex trigger (which never sends the integration
/// user's writes) and a filtered Outbound Message behave: the comment reads its Case, which names
/// the incident and was created by the integration user. While Salesforce cannot answer that read
/// the comment is retried and then dead-lettered as any failed call is, never skipped when the
/// ten minutes a change waits for its record's opening event are up.
#[tokio::test]
async fn comments_on_a_case_whose_creation_answer_was_lost_reach_its_incident_without_an_echo() {
    let h = Harness::start(CASE_AND_COMMENTS).await;
    let t0 = h.clock.now();
    let (incident, _, case_id) = case_opened_with_its_answer_lost(&h).await;
    agent_comments(&h, &case_id, "Customer called back").await;
    h.drain_retries_until(Some(t0 + Duration::minutes(15)), 50).await;
    let comment = h.store.audit_entries().into_iter().rev().find(|e| e.event_id.starts_with("sf:CaseComment")).unwrap();
    assert_eq!(comment.outcome, Outcome::DeadLettered, "kept for a replay, not skipped: {:?}", comment.reason);
    assert_eq!(notes_with(&h, &incident, "Customer called back"), 0, "Salesforce is still down");

    h.sf.clear_queued_faults();
    agent_comments(&h, &case_id, "Second site down too").await;
    let report = dlq::replay(h.dlq.as_ref(), h.retry_queue.as_ref(), &[], 100, |_, _| {}).await.unwrap();
    assert_eq!(report.replayed.len(), 2, "the trigger and the first comment");
    settles_with_one_case_and_one_note_each(&h, &incident, &case_id, &["Customer called back", "Second site down too"])
        .await;
}

/// What telling a person's record from the bridge's costs: nothing for a change of the Case
/// itself (the trigger sends its `CreatedById`), one read of the Case for a comment on it, and
/// no second read when that comment is retried.
#[tokio::test]
async fn telling_a_person_s_case_from_the_bridge_s_costs_one_read_per_comment_and_none_per_edit() {
    let rules = CASE_AND_COMMENTS.replace(
        "      - name: comment-becomes-note",
        "      - name: closed-resolves\n        direction: salesforce_to_pagerduty\n        object: Case\n        conditions:\n          - {field: Status, operator: changed_to, value: Closed}\n        actions:\n          - resolve\n      - name: comment-becomes-note",
    );
    let h = Harness::start(&rules).await;
    let agent = "agent@example.com";
    let case_id = h.sf.insert_record_as("Case", json!({"Subject": "Printer on fire", "Status": "New"}), agent);
    let reads =
        |h: &Harness, id: &str| h.sf.requests().iter().filter(|r| r.method == "GET" && r.path.contains(id)).count();
    h.sf.update_record("Case", &case_id, json!({"Status": "Closed"}), agent).unwrap();
    let mut post = insert_post(&h, "Case", &case_id, agent);
    post["operation"] = json!("update");
    let mut old = post["new"][&case_id].clone();
    old["Status"] = json!("New");
    post["old"] = json!({&case_id: old});
    assert_eq!(h.post_records(&post).await.status, 200);
    assert_eq!(reads(&h, &case_id), 0, "the edit names its creator");

    let other = h.sf.insert_record_as("Case", json!({"Subject": "Scanner jammed", "Status": "New"}), agent);
    agent_comments(&h, &other, "Any news?").await;
    assert_eq!(reads(&h, &other), 1, "a comment reads its Case once");
    for _ in 0..3 {
        h.clock.advance(Duration::seconds(60));
        h.drain_retries(5).await;
    }
    assert_eq!(reads(&h, &other), 1, "and its retries, waiting for the Case's opening, do not read it again");
}

/// A person's Case whose external id names an incident as the bridge would is not linked: the
/// integration user did not create it.
#[tokio::test]
async fn a_persons_case_naming_an_incident_is_not_linked_by_its_comments() {
    let h = Harness::start(CASE_AND_COMMENTS).await;
    let agent = "agent@example.com";
    let key = shared::rules::external_id("Q1FORGED00AAAA", "trigger-opens-case");
    let case_id =
        h.sf.insert_record_as("Case", json!({"Subject": "Looks like ours", "PagerDuty_Incident_Key__c": key}), agent);
    agent_comments(&h, &case_id, "Please escalate").await;
    drain(&h).await;
    assert!(h.store.records_for_incident("Q1FORGED00AAAA").await.unwrap().is_empty(), "no link");
}

fn triggered_event_id(delivery: &str) -> String {
    serde_json::from_str::<Value>(delivery).unwrap()["event"]["id"].as_str().unwrap().to_string()
}
