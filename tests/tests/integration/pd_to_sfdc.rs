//! PD→SFDC end to end: signed PagerDuty webhooks through the handler, against the Salesforce
//! simulator and the in-memory stores.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use shared::model::{Direction, Outcome};
use shared::retry::envelope::{Envelope, QueuedEvent};
use shared::retry::queue::Queue;
use shared::store::{LinkStore, Subject};
use sim::faults::{FaultConfig, FaultKind};
use sim::fixtures::{PD_CASE_RULES, case_of};
use sim::harness::{Harness, WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS, delivery, incident_data, outcome};
use sim::pagerduty::sign_v1;

const RULES: &str = PD_CASE_RULES;

#[tokio::test]
async fn trigger_creates_a_case_and_links_it() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    let reply = h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PINC1", "triggered")), "w1").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(outcome(&reply), "applied");
    let case = case_of(&h, "PINC1").await;
    assert_eq!(case["Subject"], "Checkout down (PINC1)");
    assert_eq!(case["Origin"], "PagerDuty");
    let writes = h.sf.requests().iter().filter(|r| r.method != "GET" && r.path.contains("/services/data/")).count();
    assert_eq!(writes, 1, "one Composite call for the event");
}

#[tokio::test]
async fn acknowledge_then_note_then_resolve_drive_the_case() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PINC2", "triggered")), "w1").await;
    let ack = h
        .webhook(
            &delivery(
                "E2",
                "incident.acknowledged",
                t0 + Duration::seconds(60),
                incident_data("PINC2", "acknowledged"),
            ),
            "w2",
        )
        .await;
    assert_eq!(outcome(&ack), "applied", "{}", ack.body);
    assert_eq!(case_of(&h, "PINC2").await["Status"], "Working");

    let note = json!({"id": "PNOTE1", "type": "incident_note", "content": "Rolled back the deploy", "trimmed": false,
        "incident": {"id": "PINC2", "type": "incident_reference", "summary": "Checkout down"}});
    let reply = h.webhook(&delivery("E3", "incident.annotated", t0 + Duration::seconds(90), note), "w3").await;
    assert_eq!(outcome(&reply), "applied", "{}", reply.body);
    let case_id = case_of(&h, "PINC2").await["Id"].as_str().unwrap().to_string();
    let comments: Vec<Value> =
        h.sf.records("CaseComment").into_iter().filter(|c| c["ParentId"] == case_id.as_str()).collect();
    assert_eq!(comments.len(), 1);
    let body = comments[0]["CommentBody"].as_str().unwrap();
    // Marked so it is not echoed back; its reference lets a retry after a lost answer find it.
    assert!(body.starts_with("[PagerDuty] Rolled back the deploy\n\nref:"), "{body}");

    h.webhook(
        &delivery("E4", "incident.resolved", t0 + Duration::seconds(600), incident_data("PINC2", "resolved")),
        "w4",
    )
    .await;
    assert_eq!(case_of(&h, "PINC2").await["Status"], "Closed");
    let tagged =
        h.sf.requests()
            .iter()
            .filter(|r| r.method != "GET")
            .all(|r| !r.path.contains("/composite") || r.call_options.as_deref() == Some("client=pd-sfdc-sync"));
    assert!(tagged, "every write carries Sforce-Call-Options for loop prevention");
}

#[tokio::test]
async fn a_published_status_update_reaches_the_linked_case_once() {
    let h = Harness::start(include_str!("../../../events/rules.example.yaml")).await;
    let t0 = Utc::now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PINC5", "triggered")), "w1").await;
    let update = json!({"id": "PSTU1", "type": "incident_status_update", "trimmed": false,
        "message": "Fix deployed; error rates back to normal. Next update at 10:30 UTC.",
        "incident": {"id": "PINC5", "type": "incident_reference", "summary": "Checkout down"}});
    let published = delivery("E2", "incident.status_update_published", t0 + Duration::seconds(60), update);
    assert_eq!(outcome(&h.webhook(&published, "w2").await), "applied");
    // PagerDuty delivers again when it did not see our answer.
    assert_eq!(outcome(&h.webhook(&published, "w2").await), "duplicate");
    let case_id = case_of(&h, "PINC5").await["Id"].as_str().unwrap().to_string();
    let comments: Vec<String> =
        h.sf.records("CaseComment")
            .into_iter()
            .filter(|c| c["ParentId"] == case_id.as_str())
            .map(|c| c["CommentBody"].as_str().unwrap_or_default().to_string())
            .collect();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0].starts_with(
            "[PagerDuty] Status update from engineering: Fix deployed; error rates back to normal. Next update at 10:30 UTC."
        ),
        "{comments:?}"
    );
}

/// Salesforce REST calls since the last look (the JWT login is not an API call).
fn api_calls_since(h: &Harness, seen: &mut usize) -> Vec<String> {
    let requests = h.sf.requests();
    let calls = requests[*seen..]
        .iter()
        .filter(|r| r.path.contains("/services/data/"))
        .map(|r| format!("{} {}", r.method, r.path.split('?').next().unwrap_or_default()))
        .collect();
    *seen = requests.len();
    calls
}

#[tokio::test]
async fn a_linked_case_is_read_only_when_a_rule_reading_it_can_match_the_event() {
    // In the example rules only `acknowledged-sets-case-working` reads the Case (Status).
    let h = Harness::start(include_str!("../../../events/rules.example.yaml")).await;
    let t0 = Utc::now();
    let mut seen = 0;
    let at = |s: i64| t0 + Duration::seconds(s);
    let trigger = delivery("E1", "incident.triggered", at(0), incident_data("PINC9", "triggered"));
    assert_eq!(outcome(&h.webhook(&trigger, "w1").await), "applied");
    assert_eq!(api_calls_since(&h, &mut seen).len(), 1, "trigger: one Composite call creates the Case");

    let ack = delivery("E2", "incident.acknowledged", at(60), incident_data("PINC9", "acknowledged"));
    assert_eq!(outcome(&h.webhook(&ack, "w2").await), "applied");
    let calls = api_calls_since(&h, &mut seen);
    assert_eq!(calls.len(), 2, "acknowledge: the Status condition needs the Case, then one write: {calls:?}");
    assert!(calls[0].starts_with("GET ") && calls[0].contains("/sobjects/Case/"), "{calls:?}");

    let note = json!({"id": "PNOTE9", "type": "incident_note", "content": "Rolled back", "trimmed": false,
        "incident": {"id": "PINC9", "type": "incident_reference", "summary": "Checkout down"}});
    assert_eq!(outcome(&h.webhook(&delivery("E3", "incident.annotated", at(90), note), "w3").await), "applied");
    let calls = api_calls_since(&h, &mut seen);
    assert_eq!(calls.len(), 1, "note: no rule that reads the Case can match, so no read: {calls:?}");

    let resolve = delivery("E4", "incident.resolved", at(600), incident_data("PINC9", "resolved"));
    assert_eq!(outcome(&h.webhook(&resolve, "w4").await), "applied");
    let calls = api_calls_since(&h, &mut seen);
    assert_eq!(calls.len(), 1, "resolve: one write, no read: {calls:?}");
    assert_eq!(case_of(&h, "PINC9").await["Status"], "Closed");
}

#[tokio::test]
async fn an_acknowledge_and_a_resolve_that_arrive_while_the_trigger_is_queued_wait_for_it() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    h.sf.fail_next(1, FaultKind::ServerError);
    let trigger = delivery("E1", "incident.triggered", t0, incident_data("PINC7", "triggered"));
    assert_eq!(outcome(&h.webhook(&trigger, "w1").await), "queued", "Salesforce failed: the trigger is queued");
    // Without a Case yet, these would find nothing to act on and be lost.
    let ack =
        delivery("E2", "incident.acknowledged", t0 + Duration::seconds(60), incident_data("PINC7", "acknowledged"));
    let reply = h.webhook(&ack, "w2").await;
    assert_eq!(outcome(&reply), "queued", "the acknowledge waits behind the trigger: {}", reply.body);
    let resolve = delivery("E3", "incident.resolved", t0 + Duration::seconds(600), incident_data("PINC7", "resolved"));
    assert_eq!(outcome(&h.webhook(&resolve, "w3").await), "queued");
    assert!(h.sf.records("Case").is_empty());

    h.drain_retries(50).await;
    let case = case_of(&h, "PINC7").await;
    assert_eq!(case["Status"], "Closed", "trigger, acknowledge and resolve applied in order: {case}");
    let applied: Vec<String> =
        h.store.audit_entries().iter().filter(|e| e.outcome == Outcome::Applied).map(|e| e.event_id.clone()).collect();
    assert_eq!(applied, vec!["E1", "E2", "E3"], "each applied once, in order");
    assert!(h.dead_letters().is_empty());
    let state = h.store.subject_state(&Subject::Incident("PINC7".into())).await.unwrap();
    assert!(state.pending.is_empty(), "nothing left waiting: {:?}", state.pending);
}

#[tokio::test]
async fn redelivery_changes_nothing() {
    let h = Harness::start(RULES).await;
    let body = delivery("E1", "incident.triggered", Utc::now(), incident_data("PINC3", "triggered"));
    assert_eq!(outcome(&h.webhook(&body, "w1").await), "applied");
    let calls = h.sf.requests().len();
    let again = h.webhook(&body, "w1").await;
    assert_eq!(again.status, 200);
    assert_eq!(outcome(&again), "duplicate");
    assert_eq!(h.sf.requests().len(), calls, "no Salesforce call for a redelivery");
    assert_eq!(h.sf.records("Case").len(), 1);
}

#[tokio::test]
async fn resolve_arriving_before_acknowledge_leaves_the_case_closed() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PINC4", "triggered")), "w1").await;
    h.webhook(
        &delivery("E3", "incident.resolved", t0 + Duration::seconds(300), incident_data("PINC4", "resolved")),
        "w3",
    )
    .await;
    let late = h
        .webhook(
            &delivery(
                "E2",
                "incident.acknowledged",
                t0 + Duration::seconds(60),
                incident_data("PINC4", "acknowledged"),
            ),
            "w2",
        )
        .await;
    assert_eq!(late.status, 200);
    assert_eq!(outcome(&late), "stale");
    assert_eq!(case_of(&h, "PINC4").await["Status"], "Closed");
    let audit = h.store.audit_entries();
    assert!(audit.iter().any(|e| e.event_id == "E2" && e.outcome == Outcome::Stale), "the stale event is audited");
}

#[tokio::test]
async fn bad_signature_is_refused_and_nothing_happens() {
    let h = Harness::start(RULES).await;
    let body = delivery("E1", "incident.triggered", Utc::now(), incident_data("PINC5", "triggered"));
    let forged = vec![("x-pagerduty-signature".to_string(), sign_v1("not-the-secret", body.as_bytes()))];
    let reply = h.webhook_with(&body, forged).await;
    assert_eq!(reply.status, 401);
    assert!(reply.body.contains("signature"), "{}", reply.body);
    let missing = h.webhook_with(&body, vec![]).await;
    assert_eq!(missing.status, 401);
    assert!(h.sf.requests().is_empty() && h.store.audit_len() == 0 && h.store.all_links().is_empty());
}

#[tokio::test]
async fn the_previous_secret_still_verifies_during_rotation() {
    let h = Harness::start(RULES).await;
    let body = delivery("E1", "incident.triggered", Utc::now(), incident_data("PINC6", "triggered"));
    let header =
        format!("{},{}", sign_v1("a-newer-secret", body.as_bytes()), sign_v1(WEBHOOK_SECRET_PREVIOUS, body.as_bytes()));
    let reply = h.webhook_with(&body, vec![("x-pagerduty-signature".into(), header)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let _ = WEBHOOK_SECRET;
}

#[tokio::test]
async fn ping_and_unknown_types_are_acknowledged_and_audited() {
    let h = Harness::start(RULES).await;
    let ping = json!({"event": {"id": "P1", "event_type": "pagey.ping", "resource_type": "pagey", "occurred_at": Utc::now().to_rfc3339(),
        "agent": null, "client": null, "data": {"message": "Hello from your friend Pagey!", "type": "ping"}}}).to_string();
    assert_eq!(h.webhook(&ping, "wp").await.status, 200);
    let unknown = delivery(
        "U1",
        "incident.workflow.completed",
        Utc::now(),
        json!({"id": "PWFI1", "type": "incident_workflow_instance", "incident": {"id": "PINC7", "type": "incident_reference"}}),
    );
    assert_eq!(h.webhook(&unknown, "wu").await.status, 200);
    let outcomes: Vec<Outcome> = h.store.audit_entries().iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Skipped, Outcome::Skipped]);
}

#[tokio::test]
async fn malformed_but_signed_body_is_kept_for_review_with_2xx() {
    let h = Harness::start(RULES).await;
    let body = r#"{"event": {"id": 42, "event_type": "#;
    let reply = h.webhook(body, "wm").await;
    assert!((200..300).contains(&reply.status), "never 4xx for an authentic delivery: {}", reply.status);
    let audit = h.store.audit_entries();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].outcome, Outcome::Rejected);
    assert_eq!(audit[0].raw_payload.as_deref(), Some(body));
    assert!(audit[0].reason.as_deref().unwrap().starts_with("rejected: "));
}

#[tokio::test]
async fn transient_salesforce_failure_is_queued_then_applied_once() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PINC8", "triggered")), "w1").await;
    h.sf.fail_next(2, FaultKind::LockRow);
    let reply = h
        .webhook(
            &delivery("E2", "incident.acknowledged", t0 + Duration::seconds(5), incident_data("PINC8", "acknowledged")),
            "w2",
        )
        .await;
    assert_eq!(reply.status, 200, "accepted: PagerDuty must not retry");
    assert_eq!(outcome(&reply), "queued");
    assert_eq!(h.retry_queue.len(), 1);
    h.drain_retries(10).await;
    assert_eq!(case_of(&h, "PINC8").await["Status"], "Working");
    assert!(h.retry_queue.is_empty() && h.dlq.is_empty());
    let applied =
        h.store.audit_entries().iter().filter(|e| e.event_id == "E2" && e.outcome == Outcome::Applied).count();
    assert_eq!(applied, 1, "applied exactly once");
}

#[tokio::test]
async fn permanent_salesforce_error_goes_to_the_dlq_with_the_rule_and_error() {
    let bad_rules = RULES.replace("Status: Working", "Status: NotAPicklistValue");
    let h = Harness::start(&bad_rules).await;
    let t0 = Utc::now();
    h.webhook(&delivery("E1", "incident.triggered", t0, incident_data("PINC9", "triggered")), "w1").await;
    let reply = h
        .webhook(
            &delivery("E2", "incident.acknowledged", t0 + Duration::seconds(5), incident_data("PINC9", "acknowledged")),
            "w2",
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(outcome(&reply), "dead_lettered", "{}", reply.body);
    let dead = h.dead_letters();
    assert_eq!(dead.len(), 1);
    let failure = dead[0].trip.last_failure().expect("history kept");
    assert_eq!(failure.rule.as_deref(), Some("acknowledged-sets-case-working"));
    assert!(failure.reason.contains("PICKLIST") || failure.reason.contains("picklist"), "{}", failure.reason);
    assert!(dead[0].trip.dead_letter_reason.as_deref().unwrap().starts_with("permanent error"));
}

#[tokio::test]
async fn duplicate_storm_applies_each_event_once() {
    let h = std::sync::Arc::new(Harness::start(RULES).await);
    let t0 = Utc::now();
    let mut bodies = Vec::new();
    for i in 0..200 {
        bodies.push(delivery(
            &format!("S{i}"),
            "incident.triggered",
            t0,
            incident_data(&format!("PSTORM{i}"), "triggered"),
        ));
    }
    let mut tasks = Vec::new();
    for round in 0..3 {
        for (i, body) in bodies.iter().enumerate() {
            let h = h.clone();
            let body = body.clone();
            tasks.push(tokio::spawn(async move { (round, i, h.webhook(&body, &format!("ws{i}")).await.status) }));
        }
    }
    let mut busy = Vec::new();
    for task in tasks {
        let (_, i, code) = task.await.unwrap();
        assert!(code == 200 || code == 503, "status {code}");
        if code == 503 {
            busy.push(i);
        }
    }
    // PagerDuty redelivers what got 503 (another invocation held it); redeliveries are duplicates.
    for i in busy {
        assert_eq!(h.webhook(&bodies[i], &format!("ws{i}")).await.status, 200);
    }
    assert_eq!(h.sf.records("Case").len(), 200, "exactly 200 sets of effects");
    assert_eq!(h.store.all_links().len(), 200);
    let applied = h.store.audit_entries().iter().filter(|e| e.outcome == Outcome::Applied).count();
    assert_eq!(applied, 200);
}

#[tokio::test]
async fn salesforce_failing_30_percent_of_calls_still_applies_everything() {
    let h = Harness::start(RULES).await;
    h.sf.set_faults(FaultConfig { seed: 7, server_error_rate: 0.15, lock_row_rate: 0.15, ..FaultConfig::none() });
    let t0 = Utc::now();
    for i in 0..40 {
        h.webhook(
            &delivery(&format!("F{i}"), "incident.triggered", t0, incident_data(&format!("PF{i}"), "triggered")),
            &format!("wf{i}"),
        )
        .await;
    }
    // The breaker may open during a storm: move past its pause and let the retry function drain.
    for _ in 0..20 {
        if h.retry_queue.is_empty() {
            break;
        }
        h.clock.advance(Duration::seconds(61));
        h.drain_retries(200).await;
    }
    assert!(h.dlq.is_empty(), "nothing dead-lettered: {:?}", h.dead_letters().first().map(|e| e.trip.history.clone()));
    assert_eq!(h.sf.records("Case").len(), 40, "every event applied, none twice");
    for i in 0..40 {
        assert_eq!(h.store.records_for_incident(&format!("PF{i}")).await.unwrap().len(), 1);
    }
    assert!(
        h.store.subject_state(&Subject::Incident("PF0".into())).await.unwrap().opened,
        "the trigger opened its incident"
    );
}

/// A Sev1 incident with its Case, and the note event that must become exactly one Case Comment.
async fn incident_with_case_and_note(h: &Harness, incident: &str) -> String {
    let t0 = Utc::now();
    let trigger = delivery(&format!("T-{incident}"), "incident.triggered", t0, incident_data(incident, "triggered"));
    assert_eq!(outcome(&h.webhook(&trigger, "wt").await), "applied");
    let note = json!({"id": "PNOTE9", "type": "incident_note", "content": "Failing over to us-west-2", "trimmed": false,
        "incident": {"id": incident, "type": "incident_reference", "summary": "Checkout down"}});
    delivery(&format!("N-{incident}"), "incident.annotated", t0 + Duration::seconds(30), note)
}

/// What a SendMessage whose answer was lost leaves behind: the envelope, as the webhook handler
/// builds it, is on the retry queue, yet the delivery answered 5xx and released the event (its
/// gate is free), so PagerDuty delivers it again.
async fn stored_but_released(h: &Harness, event_id: &str, body: &str) {
    let at = Utc::now();
    let mut envelope = Envelope::new(
        Direction::PagerdutyToSalesforce,
        event_id,
        "corr-lost-send",
        at,
        at,
        QueuedEvent::PagerdutyWebhook { body: body.into(), webhook_id: Some("wn".into()), subscription_id: None },
    );
    envelope.accepted.gate_key = shared::model::GateKey::webhook(event_id);
    Queue::send(h.retry_queue.as_ref(), &envelope.to_json(), std::time::Duration::ZERO).await.unwrap();
}

fn comments(h: &Harness) -> usize {
    h.sf.records("CaseComment").len()
}

#[tokio::test]
async fn a_stray_envelope_stands_down_when_the_redelivery_applied_the_note() {
    let h = Harness::start(RULES).await;
    let note = incident_with_case_and_note(&h, "PSTRAY1").await;
    stored_but_released(&h, "N-PSTRAY1", &note).await;
    assert_eq!(outcome(&h.webhook(&note, "wn").await), "applied", "PagerDuty's redelivery applies the note");
    h.drain_retries(20).await;
    assert_eq!(comments(&h), 1, "the stored envelope does not add the comment again");
    assert!(h.retry_queue.is_empty() && h.dlq.is_empty());
}

#[tokio::test]
async fn an_envelope_that_finds_its_event_released_applies_it_and_the_redelivery_is_a_duplicate() {
    let h = Harness::start(RULES).await;
    let note = incident_with_case_and_note(&h, "PSTRAY2").await;
    stored_but_released(&h, "N-PSTRAY2", &note).await;
    h.drain_retries(20).await;
    assert_eq!(comments(&h), 1, "the envelope applied the note");
    assert_eq!(outcome(&h.webhook(&note, "wn").await), "duplicate", "the redelivery changes nothing");
    assert_eq!(comments(&h), 1);
}
