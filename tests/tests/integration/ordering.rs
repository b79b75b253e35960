//! Exactly once, in order, under what production does: deliveries of one subject running at the
//! same time, events arriving late, deferrals that never clear. Each test names a defect of
//! issue 15 that the version before the subject lease and the per-piece marks had.

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use serde_json::{Map, Value, json};
use shared::clock::Clock;
use shared::handler::settle::RetryPolicy;
use shared::model::Outcome;
use shared::store::{LinkStore, PendingChange, PendingEvent, Subject, SubjectUpdate};
use sim::faults::FaultKind;
use sim::fixtures::{PD_CASE_RULES, SFDC_CASE_RULES, case_of};
use sim::harness::{Harness, HarnessConfig, ORG_ID, delivery, incident_data, outcome};

const PD_RULES: &str = PD_CASE_RULES;

const SF_RULES: &str = SFDC_CASE_RULES;

fn note_data(incident: &str, note_id: &str, content: &str) -> Value {
    json!({"id": note_id, "type": "incident_note", "content": content, "trimmed": false,
        "incident": {"id": incident, "type": "incident_reference", "html_url": format!("https://demo.pagerduty.com/incidents/{incident}")}})
}

fn comments_on(h: &Harness, case_id: &str) -> Vec<String> {
    h.sf.records("CaseComment")
        .into_iter()
        .filter(|c| c["ParentId"] == case_id)
        .map(|c| c["CommentBody"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn applied(h: &Harness) -> Vec<String> {
    h.store.audit_entries().iter().filter(|e| e.outcome == Outcome::Applied).map(|e| e.event_id.clone()).collect()
}

#[tokio::test]
async fn a_note_delivered_after_a_later_acknowledge_still_becomes_a_case_comment() {
    let h = Harness::start(PD_RULES).await;
    let t0 = Utc::now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PLATE1", "triggered")), "w1").await;
    let ack =
        delivery("E3", "incident.acknowledged", t0 + Duration::seconds(60), incident_data("PLATE1", "acknowledged"));
    assert_eq!(outcome(&h.webhook(&ack, "w3").await), "applied");
    // PagerDuty redelivers the note after a 503, once the acknowledge went through.
    let note = delivery(
        "E2",
        "incident.annotated",
        t0 + Duration::seconds(30),
        note_data("PLATE1", "PNOTE1", "Rolled back the deploy"),
    );
    let reply = h.webhook(&note, "w2").await;
    assert_eq!(outcome(&reply), "applied", "an additive effect applies however late: {}", reply.body);
    let case = case_of(&h, "PLATE1").await;
    let comments = comments_on(&h, case["Id"].as_str().unwrap());
    assert_eq!(comments.len(), 1, "the note became exactly one Case Comment: {comments:?}");
    assert!(comments[0].contains("Rolled back the deploy"));
    assert_eq!(case["Status"], "Working", "and the acknowledge still stands");
}

#[tokio::test]
async fn a_late_acknowledge_does_not_undo_a_newer_resolve_but_its_other_fields_are_not_lost() {
    let h = Harness::start(PD_RULES).await;
    let t0 = Utc::now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PLATE2", "triggered")), "w1").await;
    let resolve = delivery("E3", "incident.resolved", t0 + Duration::seconds(300), incident_data("PLATE2", "resolved"));
    assert_eq!(outcome(&h.webhook(&resolve, "w3").await), "applied");
    let ack =
        delivery("E2", "incident.acknowledged", t0 + Duration::seconds(60), incident_data("PLATE2", "acknowledged"));
    assert_eq!(outcome(&h.webhook(&ack, "w2").await), "stale", "everything it would set was set by a newer event");
    let case = case_of(&h, "PLATE2").await;
    assert_eq!((case["Status"].as_str(), case["PagerDuty_Status__c"].as_str()), (Some("Closed"), Some("resolved")));
}

#[tokio::test]
async fn an_acknowledge_arriving_while_the_trigger_is_still_creating_the_case_waits_for_it() {
    let h = Harness::start(PD_RULES).await;
    let t0 = Utc::now();
    // The trigger's Composite takes a while: the acknowledge arrives in the middle of it, in
    // another invocation.
    h.sf.fail_next(1, FaultKind::Slow(StdDuration::from_millis(400)));
    let trigger = delivery("E1", "incident.triggered", t0, incident_data("PRACE1", "triggered"));
    let ack =
        delivery("E2", "incident.acknowledged", t0 + Duration::seconds(5), incident_data("PRACE1", "acknowledged"));
    let (first, second) = tokio::join!(h.webhook(&trigger, "w1"), async {
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        h.webhook(&ack, "w2").await
    });
    assert_eq!(outcome(&first), "applied", "{}", first.body);
    assert_eq!(outcome(&second), "queued", "the acknowledge must wait, not find nothing and skip: {}", second.body);
    h.drain_retries(20).await;
    let case = case_of(&h, "PRACE1").await;
    assert_eq!(case["Status"], "Working", "the acknowledge applied after the Case was created: {case}");
    assert_eq!(applied(&h), vec!["E1", "E2"], "each once, in order");
}

#[tokio::test]
async fn two_events_of_one_case_never_execute_at_the_same_time() {
    let h = Harness::start(PD_RULES).await;
    let t0 = Utc::now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PRACE2", "triggered")), "w1").await;
    // The acknowledge's write is slow; the resolve comes in while it is in flight.
    h.sf.fail_next(1, FaultKind::Slow(StdDuration::from_millis(400)));
    let ack =
        delivery("E2", "incident.acknowledged", t0 + Duration::seconds(60), incident_data("PRACE2", "acknowledged"));
    let resolve = delivery("E3", "incident.resolved", t0 + Duration::seconds(120), incident_data("PRACE2", "resolved"));
    let (_, late) = tokio::join!(h.webhook(&ack, "w2"), async {
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        h.webhook(&resolve, "w3").await
    });
    assert_eq!(outcome(&late), "queued", "the resolve waits for the acknowledge in flight: {}", late.body);
    h.drain_retries(20).await;
    assert_eq!(case_of(&h, "PRACE2").await["Status"], "Closed", "never Working after Closed");
    assert_eq!(applied(&h), vec!["E1", "E2", "E3"]);
}

fn case(id: &str, priority: &str, status: &str, modified: chrono::DateTime<Utc>) -> Value {
    let stamp = modified.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    json!({"attributes": {"type": "Case"}, "Id": id, "CaseNumber": "00001234", "Subject": "Checkout down",
        "Priority": priority, "Status": status, "LastModifiedDate": stamp, "SystemModstamp": stamp})
}

fn post(operation: &str, new: Value, old: Option<Value>) -> Value {
    let map = |r: Value| -> Map<String, Value> { [(r["Id"].as_str().unwrap().to_string(), r)].into_iter().collect() };
    json!({"schema": 1, "org_id": ORG_ID, "object": "Case", "operation": operation,
        "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"}, "sent_at": Utc::now().to_rfc3339(),
        "old": old.map(map), "new": map(new)})
}

#[tokio::test]
async fn a_case_close_whose_queueable_ran_after_a_later_edit_still_resolves_the_incident() {
    let h = Harness::start(SF_RULES).await;
    let id = "5005g00000LATE1AAA";
    let t0 = Utc::now() - Duration::seconds(600);
    let insert = post("insert", case(id, "Sev1", "New", t0), None);
    assert_eq!(h.post_records(&insert).await.status, 200);
    let incident = h.store.incidents_for_record(id).await.unwrap()[0].incident_id.to_string();
    // Two edits: closed at t0+60, then the priority lowered at t0+120; the Queueables ran in the
    // other order.
    let closed =
        post("update", case(id, "Sev1", "Closed", t0 + Duration::seconds(60)), Some(case(id, "Sev1", "New", t0)));
    let lowered = post(
        "update",
        case(id, "Sev2", "Closed", t0 + Duration::seconds(120)),
        Some(case(id, "Sev1", "Closed", t0 + Duration::seconds(60))),
    );
    assert_eq!(h.post_records(&lowered).await.status, 200);
    let reply = h.post_records(&closed).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("\"applied\":1"), "the close sets what the later edit did not: {}", reply.body);
    let inc = h.pd.incident(&incident).expect("incident");
    assert_eq!(inc["status"], "resolved", "the close resolved the incident: {inc}");
}

#[tokio::test]
async fn a_deferral_that_never_clears_ends_in_the_dlq_at_the_maximum_age() {
    let mut config = HarnessConfig::new(PD_RULES);
    config.retry_policy = RetryPolicy { max_age: StdDuration::from_secs(600), ..RetryPolicy::default() };
    let h = Harness::with(config).await;
    let t0 = h.clock.now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PSTUCK", "triggered")), "w1").await;
    // An earlier event's entry that is never taken away (its invocation died before it could).
    let ghost = PendingEvent {
        occurred_at: t0 + Duration::seconds(1),
        event_id: "GHOST".into(),
        envelope_id: "env-ghost".into(),
    };
    let listing = SubjectUpdate { pending: Some(PendingChange::List(ghost)), ..SubjectUpdate::default() };
    h.store.update_subject(&Subject::Incident("PSTUCK".into()), None, &listing).await.unwrap();
    let ack =
        delivery("E2", "incident.acknowledged", t0 + Duration::seconds(60), incident_data("PSTUCK", "acknowledged"));
    assert_eq!(outcome(&h.webhook(&ack, "w2").await), "queued");
    h.drain_retries(200).await;
    assert_eq!(h.retry_queue.len(), 0, "nothing waits for ever");
    let dead = h.dead_letters();
    assert_eq!(dead.len(), 1, "the acknowledge ends in the DLQ");
    let reason = dead[0].trip.dead_letter_reason.clone().unwrap_or_default();
    assert!(reason.contains("still deferred after the maximum age"), "{reason}");
    assert!(h.clock.now() - t0 < Duration::seconds(900), "at the maximum age, not twice it");
}

#[tokio::test]
async fn a_requeue_whose_send_stored_the_message_and_answered_an_error_writes_the_comment_once() {
    use shared::handler::retry;
    use shared::retry::queue::Queue;
    use sim::explorer::flaky_queue::{FlakyQueue, SendFaults};
    use std::sync::Arc;

    let h = Harness::start(PD_RULES).await;
    let t0 = Utc::now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PHOP", "triggered")), "w1").await;
    h.sf.fail_next(1, FaultKind::ServerError);
    let note =
        delivery("E2", "incident.annotated", t0 + Duration::seconds(30), note_data("PHOP", "PN1", "Rolled back"));
    assert_eq!(outcome(&h.webhook(&note, "w2").await), "queued");

    // The retry function meets Salesforce failing again, and its sends to the retry queue store
    // the message and answer an error: the message it handles comes back, and copies of its
    // next trip are in the queue too.
    let flaky = Arc::new(FlakyQueue::new(h.retry_queue.clone(), 7));
    flaky.set(SendFaults { stored_then_error: 1.0, refused: 0.0 });
    let unlucky = h.instance_with_retry_queue(flaky.clone());
    h.sf.fail_next(1, FaultKind::ServerError);
    h.clock.set(h.retry_queue.next_visible_at().expect("the note is queued"));
    let received = h.retry_queue.receive(10, StdDuration::ZERO).await.unwrap();
    let messages = received
        .iter()
        .map(|m| retry::Message { message_id: m.message_id.clone(), body: m.body.clone(), receive_count: 1 })
        .collect();
    let failed = retry::handle_batch(&unlucky, messages, Some(h.clock.now() + Duration::seconds(60))).await;
    assert_eq!(failed.len(), 1, "the send failed: SQS must deliver the message again");
    assert!(flaky.injected().0 > 0, "a send stored its message and answered an error");

    h.drain_retries(50).await;
    let case = case_of(&h, "PHOP").await;
    let comments = comments_on(&h, case["Id"].as_str().unwrap());
    assert_eq!(comments.len(), 1, "two trips of one envelope, one comment: {comments:?}");
    assert!(h.dead_letters().is_empty());
}
