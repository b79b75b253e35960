//! Copies of one event: two hops of one envelope in the queue at once, a redelivery deferred
//! behind another event of its subject, a delivery whose retry send was refused. Each copy does
//! only what is left of the event, one at a time, and a refused delivery is not taken for one
//! the bridge accepted. (Found by a review: each test failed before its fix.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use serde_json::json;
use shared::clock::Clock;
use shared::handler::http::InboundRequest;
use shared::handler::idempotency::{Gate, Settlement};
use shared::handler::{pd_to_sfdc, retry};
use shared::retry::envelope::Envelope;
use shared::retry::queue::{MemoryQueue, Queue, QueueError, ReceivedMessage};
use shared::store::{LinkStore, Subject};
use sim::faults::FaultKind;
use sim::fixtures::PD_CASE_RULES;
use sim::harness::{Harness, WEBHOOK_SECRET, delivery, incident_data, outcome};
use sim::pagerduty::sign_v1;
use sim::refusing_queue::RefusingQueue;

/// The retry queue in front of the harness's memory queue: the first `stored_then_error` sends
/// store the message and answer an error (SQS took it, the answer was lost); every send takes
/// `delay` (a slow SendMessage).
struct OddQueue {
    inner: Arc<MemoryQueue>,
    stored_then_error: AtomicUsize,
    delay: StdDuration,
}

#[async_trait]
impl Queue for OddQueue {
    async fn send(&self, body: &str, delay: StdDuration) -> Result<String, QueueError> {
        tokio::time::sleep(self.delay).await;
        let id = self.inner.send(body, delay).await?;
        if self.stored_then_error.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(QueueError::Unavailable { operation: "SendMessage", message: "answer lost (stored)".into() });
        }
        Ok(id)
    }
    async fn receive(&self, max: usize, wait: StdDuration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt_handle).await
    }
    async fn release(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.release(receipt_handle).await
    }
    async fn approximate_depth(&self) -> Result<u64, QueueError> {
        self.inner.approximate_depth().await
    }
    async fn purge(&self) -> Result<(), QueueError> {
        self.inner.purge().await
    }
}

fn message(m: &ReceivedMessage) -> retry::Message {
    retry::Message { message_id: m.message_id.clone(), body: m.body.clone(), receive_count: m.receive_count }
}

/// A re-enqueue whose SendMessage stored the message but answered an error makes the retry
/// function report the message failed, so SQS delivers the old hop again while the new hop is
/// queued too: two copies of one envelope, both named by the event's gate. They take turns
/// (`IdempotencyStore::take_turn`): the one that finds the other acting goes back to the queue,
/// and when it comes back the gate says applied, so it stands down. (Before, the deferred copy
/// wrote "queued" over "applied" and its next hop wrote the note again: two Case Comments.)
#[tokio::test]
async fn two_hops_of_one_envelope_apply_a_note_twice() {
    let h = Harness::start(PD_CASE_RULES).await;
    let t0 = Utc::now();
    let trigger = delivery("T-PDUP", "incident.triggered", t0, incident_data("PDUP", "triggered"));
    assert_eq!(outcome(&h.webhook(&trigger, "wt").await), "applied");
    let note = json!({"id": "PNOTE1", "type": "incident_note", "content": "Failing over", "trimmed": false,
        "incident": {"id": "PDUP", "type": "incident_reference", "summary": "Checkout down"}});
    let body = delivery("N-PDUP", "incident.annotated", t0 + Duration::seconds(30), note);

    // 1. The live delivery has too little time left: queued as envelope X (no call made).
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-pagerduty-signature".to_string(), sign_v1(WEBHOOK_SECRET, body.as_bytes())),
        ("x-webhook-id".to_string(), "wn".to_string()),
    ];
    let request = InboundRequest {
        correlation_id: "corr".into(),
        deadline: Some(h.clock.now() + Duration::milliseconds(500)),
        ..InboundRequest::post(pd_to_sfdc::WEBHOOK_ROUTE, headers, body.as_bytes())
    };
    assert_eq!(outcome(&pd_to_sfdc::handle(&h.ctx, request).await), "queued");

    // 2. The retry function takes X@hop0 while another event holds the incident: deferred, and
    //    its re-enqueue is stored but answers an error twice: the batch reports the message failed.
    h.clock.advance(Duration::seconds(31));
    let incident = Subject::Incident("PDUP".into());
    h.store.lease(&incident, "someone-else", h.clock.now(), h.clock.now() + Duration::seconds(20)).await.unwrap();
    let lossy = Arc::new(OddQueue {
        inner: h.retry_queue.clone(),
        stored_then_error: AtomicUsize::new(2),
        delay: StdDuration::ZERO,
    });
    let lossy_ctx = h.instance_with_retry_queue(lossy);
    let first = h.retry_queue.receive(10, StdDuration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    let deadline = Some(h.clock.now() + Duration::seconds(60));
    let failed = retry::handle_batch(&lossy_ctx, vec![message(&first[0])], deadline).await;
    assert_eq!(failed.len(), 1, "the send answered an error: SQS delivers X@hop0 again");

    // Past the lease and the visibility timeout: X@hop0 (redelivered) and X@hop1 (stored twice).
    h.clock.advance(Duration::seconds(40));
    let copies = h.retry_queue.receive(10, StdDuration::ZERO).await.unwrap();
    let envelopes: Vec<Envelope> = copies.iter().map(|m| Envelope::from_json(&m.body).unwrap()).collect();
    assert!(envelopes.iter().all(|e| e.id() == envelopes[0].id()), "one envelope");
    let old = copies.iter().position(|m| m.message_id == first[0].message_id).expect("the old hop is back");
    let new = (0..copies.len()).find(|i| envelopes[*i].trip.hop != envelopes[old].trip.hop).expect("a new hop");

    // 3. Two retry instances at once: the new hop applies the note (a slow Salesforce call while
    //    it holds the incident); the old hop finds the incident held, is deferred, and its send is
    //    slower than the other's whole attempt.
    h.sf.fail_next(1, FaultKind::Slow(StdDuration::from_millis(800)));
    let slow_send = Arc::new(OddQueue {
        inner: h.retry_queue.clone(),
        stored_then_error: AtomicUsize::new(0),
        delay: StdDuration::from_millis(1500),
    });
    let slow_ctx = h.instance_with_retry_queue(slow_send);
    let p = retry::handle_batch(&h.ctx, vec![message(&copies[new])], deadline);
    let q = async {
        tokio::time::sleep(StdDuration::from_millis(200)).await;
        retry::handle_batch(&slow_ctx, vec![message(&copies[old])], deadline).await
    };
    let (pf, qf) = tokio::join!(p, q);
    assert!(pf.is_empty(), "the new hop applied the note");
    assert_eq!(qf.len(), 1, "the old hop waits for its turn: SQS delivers it again");
    let gate = h.ctx.idempotency.begin(&shared::model::GateKey::webhook("N-PDUP"), None).await.unwrap();
    assert_eq!(
        gate,
        Gate::Duplicate { first: Settlement::plain(shared::model::Outcome::Applied) },
        "the gate says applied: the old hop is a stray when it comes back"
    );
    assert!(retry::handle_batch(&h.ctx, vec![message(&copies[old])], deadline).await.is_empty());
    for m in &copies {
        let _ = h.retry_queue.delete(&m.receipt_handle).await;
    }
    h.drain_retries(20).await;
    let comments = h.sf.records("CaseComment");
    assert_eq!(comments.len(), 1, "one note, one Case Comment; got {comments:#?}");
}

const SF_RULES: &str = r#"
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
              title: {prefix: "[Sev1] ", fields: [CaseNumber, Subject]}
              body: "Salesforce Case {{record.CaseNumber}}"
      - name: case-closed-resolves
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: changed_to, value: Closed}
        actions:
          - resolve: {resolution: "Case {{record.CaseNumber}} was closed."}
"#;

const CASE: &str = "5005g00000CASEDAAA";

fn case(status: &str, modified: chrono::DateTime<Utc>) -> serde_json::Value {
    json!({
        "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{CASE}")},
        "Id": CASE, "CaseNumber": "00001099", "Subject": "Checkout fails", "Priority": "Sev1", "Status": status,
        "LastModifiedDate": modified.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        "SystemModstamp": modified.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
    })
}

fn records_request(h: &Harness, payload: &serde_json::Value, deadline_ms: i64) -> InboundRequest {
    let body = payload.to_string();
    let ts = h.clock.now().timestamp();
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-pdsync-timestamp".to_string(), ts.to_string()),
        (
            "x-pdsync-signature".to_string(),
            sim::salesforce::sign_trigger(sim::harness::INBOUND_SECRET, ts, body.as_bytes()),
        ),
    ];
    InboundRequest {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        deadline: Some(h.clock.now() + Duration::milliseconds(deadline_ms)),
        ..InboundRequest::post(shared::handler::sfdc_to_pd::RECORDS_ROUTE, headers, body.as_bytes())
    }
}

fn records_post(operation: &str, new: serde_json::Value, old: Option<serde_json::Value>) -> serde_json::Value {
    json!({
        "schema": 1, "org_id": sim::harness::ORG_ID, "object": "Case", "operation": operation,
        "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"},
        "sent_at": Utc::now().to_rfc3339(),
        "old": old.map(|o| json!({CASE: o})), "new": {CASE: new},
    })
}

/// A copy of an envelope deferred at `take_subject` settles before it read the subject's
/// progress of its event: its `Progress::Keep` (empty) adds to what the subject keeps and takes
/// nothing away, so the note the other copy wrote is not written again. (Before, an empty Keep
/// removed the event's progress and the close became two resolution notes.)
#[tokio::test]
async fn a_deferred_copy_erases_the_progress_of_its_event_and_the_resolution_note_is_written_twice() {
    let h = Harness::start(SF_RULES).await;
    let t0 = Utc::now();
    let open = case("New", t0);
    let reply = h.post_records(&records_post("insert", open.clone(), None)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let incident = h.store.incidents_for_record(CASE).await.unwrap()[0].incident_id.to_string();

    // 1. The close arrives with too little time left: queued as envelope X@hop0.
    let close = records_post("update", case("Closed", t0 + Duration::seconds(60)), Some(open));
    let reply = shared::handler::sfdc_to_pd::handle(&h.ctx, records_request(&h, &close, 500)).await;
    assert!(reply.body.contains("\"queued\":1"), "{}", reply.body);

    // 2. X@hop0 deferred behind another event of the Case; its re-enqueue is stored but answers an
    //    error twice: SQS delivers X@hop0 again and X@hop1 is queued too.
    let subject = Subject::Record(CASE.into());
    let hold = |h: &Harness| {
        let (now, until) = (h.clock.now(), h.clock.now() + Duration::seconds(20));
        let store = h.store.clone();
        let subject = subject.clone();
        async move { store.lease(&subject, "another-event", now, until).await.unwrap() }
    };
    h.clock.advance(Duration::seconds(31));
    hold(&h).await;
    let lossy = Arc::new(OddQueue {
        inner: h.retry_queue.clone(),
        stored_then_error: AtomicUsize::new(2),
        delay: StdDuration::ZERO,
    });
    let lossy_ctx = h.instance_with_retry_queue(lossy);
    let first = h.retry_queue.receive(10, StdDuration::ZERO).await.unwrap();
    let deadline = |h: &Harness| Some(h.clock.now() + Duration::seconds(60));
    assert_eq!(retry::handle_batch(&lossy_ctx, vec![message(&first[0])], deadline(&h)).await.len(), 1);
    h.clock.advance(Duration::seconds(40));
    let copies = h.retry_queue.receive(10, StdDuration::ZERO).await.unwrap();
    let old = copies.iter().find(|m| m.message_id == first[0].message_id).expect("hop0 back").clone();
    let new = copies.iter().find(|m| m.message_id != first[0].message_id).expect("hop1").clone();

    // 3. X@hop1 writes the resolution note, then the resolve fails (PagerDuty 500): queued with the
    //    note done, in its envelope and on the subject.
    h.pd.fail_next(1, FaultKind::Slow(StdDuration::ZERO));
    h.pd.fail_next(4, FaultKind::ServerError);
    assert!(retry::handle_batch(&h.ctx, vec![message(&new)], deadline(&h)).await.is_empty());
    h.pd.clear_queued_faults();
    let notes = |h: &Harness| {
        h.pd.notes(&incident).iter().filter(|n| n["content"].as_str().unwrap_or("").contains("was closed.")).count()
    };
    assert_eq!(notes(&h), 1, "the note was written once");
    let state = h.store.subject_state(&subject).await.unwrap();
    assert!(!state.progress.is_empty(), "the subject keeps the event's progress: {:?}", state.progress);

    // 4. X@hop0 (the old copy) meets another event holding the Case: deferred before it merged
    //    the subject's progress, it writes its own (empty) progress over it.
    hold(&h).await;
    assert!(retry::handle_batch(&h.ctx, vec![message(&old)], deadline(&h)).await.is_empty());
    for m in &copies {
        let _ = h.retry_queue.delete(&m.receipt_handle).await;
    }
    let state = h.store.subject_state(&subject).await.unwrap();
    let erased = state.progress.is_empty();

    // 5. The old copy's next hop runs first and resolves, writing the note again.
    h.clock.advance(Duration::minutes(15));
    let next = h.retry_queue.receive(10, StdDuration::ZERO).await.unwrap();
    let mut ordered: Vec<&ReceivedMessage> = next.iter().collect();
    ordered.sort_by_key(|m| !Envelope::from_json(&m.body).unwrap().progress.done.is_empty());
    let batch: Vec<retry::Message> = ordered.iter().map(|m| message(m)).collect();
    retry::handle_batch(&h.ctx, batch, deadline(&h)).await;
    for m in &next {
        let _ = h.retry_queue.delete(&m.receipt_handle).await;
    }
    h.drain_retries(20).await;
    assert_eq!(
        (notes(&h), erased),
        (1, false),
        "one close must be one resolution note; (notes, the deferred old copy erased the event's progress on its subject)"
    );
}

/// The same erasure on the live path, with no message stored twice: the close writes its note,
/// the resolve fails and the retry queue refuses the envelope (the post is answered 503, the gate
/// released, the note's progress kept on the subject). Salesforce sends the close again while
/// another event holds the Case: the redelivery is deferred before it merged the subject's
/// progress, and its empty `Progress::Keep` removes it. Its retry writes the note again.
#[tokio::test]
async fn a_redelivery_deferred_behind_another_event_forgets_the_note_its_first_delivery_wrote() {
    let h = Harness::start(SF_RULES).await;
    let t0 = Utc::now();
    let open = case("New", t0);
    assert_eq!(h.post_records(&records_post("insert", open.clone(), None)).await.status, 200);
    let incident = h.store.incidents_for_record(CASE).await.unwrap()[0].incident_id.to_string();
    let notes = |h: &Harness| {
        h.pd.notes(&incident).iter().filter(|n| n["content"].as_str().unwrap_or("").contains("was closed.")).count()
    };
    let close = records_post("update", case("Closed", t0 + Duration::seconds(60)), Some(open));

    // 1. First delivery: note written, resolve fails, the retry queue refuses: 503.
    let refusing = h.instance_with_retry_queue(Arc::new(RefusingQueue));
    h.pd.fail_next(1, FaultKind::Slow(StdDuration::ZERO));
    h.pd.fail_next(4, FaultKind::ServerError);
    let reply = shared::handler::sfdc_to_pd::handle(&refusing, records_request(&h, &close, 10_000)).await;
    h.pd.clear_queued_faults();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(notes(&h), 1);

    // 2. Salesforce sends it again while another event of the Case is being applied.
    let subject = Subject::Record(CASE.into());
    h.store.lease(&subject, "another-event", h.clock.now(), h.clock.now() + Duration::seconds(20)).await.unwrap();
    let reply = shared::handler::sfdc_to_pd::handle(&h.ctx, records_request(&h, &close, 10_000)).await;
    assert!(reply.body.contains("\"queued\":1"), "{}", reply.body);
    let erased = h.store.subject_state(&subject).await.unwrap().progress.is_empty();

    // 3. The queued redelivery runs.
    h.clock.advance(Duration::seconds(30));
    h.drain_retries(20).await;
    assert_eq!((notes(&h), erased), (1, false), "(resolution notes, the subject's progress of the event erased)");
}

/// An attempt that was never accepted (the retry queue refused its envelope, the sender got a
/// 503) does not record what it saw of the record (`Seen`): when the sender then gives up (the
/// Apex Queueable after its fifth failure), reconciliation finds the change not delivered and
/// repairs it. (Before, `seen.at >= changed_at` made it "delivered": the Case Closed, its incident
/// open for ever.)
#[tokio::test]
async fn a_change_whose_delivery_was_refused_is_not_repaired_because_the_bridge_saw_it() {
    let h = Harness::start(SF_RULES).await;
    let ctx = {
        let mut ctx = h.instance();
        ctx.settings.integration_user_id = h.sf.user_id(sim::harness::INTEGRATION_USER);
        ctx
    };
    let who = {
        let http = Arc::new(adapters::http::ReqwestTransport::new().unwrap());
        shared::pagerduty::client::PagerdutyClient::new(
            http,
            url::Url::parse(&h.pd.base_url()).unwrap(),
            "sim-token".into(),
            "oncall@example.com".into(),
        )
    };
    let incident = who
        .create_incident(&shared::pagerduty::requests::CreateIncident {
            title: "Checkout down".into(),
            service_id: "PSVC001".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down", "Status": "New", "Priority": "Sev3"}));
    h.store
        .put_link(&shared::model::Link {
            incident_id: incident.clone().into(),
            record: shared::model::RecordRef { object: "Case".into(), id: case.clone().into() },
            created_at: Utc::now(),
            created_by_rule: None,
        })
        .await
        .unwrap();
    let old = h.sf.record("Case", &case).unwrap();
    h.sf.update_record("Case", &case, json!({"Status": "Closed"}), "agent@example.com").unwrap();
    let new = h.sf.record("Case", &case).unwrap();
    let post = json!({
        "schema": 1, "org_id": sim::harness::ORG_ID, "object": "Case", "operation": "update",
        "user": {"id": h.sf.user_id("agent@example.com"), "username": "agent@example.com"},
        "sent_at": Utc::now().to_rfc3339(), "old": {case.clone(): old}, "new": {case.clone(): new},
    });
    // Every attempt of the Queueable: too little time left to act, and the retry queue refuses.
    let refusing = h.instance_with_retry_queue(Arc::new(RefusingQueue));
    for _ in 0..5 {
        let reply = shared::handler::sfdc_to_pd::handle(&refusing, records_request(&h, &post, 500)).await;
        assert_eq!(reply.status, 503, "{}", reply.body);
    }
    // The Queueable gave up. Reconciliation runs.
    h.clock.set(Utc::now() + Duration::seconds(3));
    let options = shared::reconcile::Options { first_run: Duration::minutes(10), ..Default::default() };
    let report = shared::reconcile::run(&ctx, h.store.as_ref(), &options, &shared::reconcile::Quiet).await;
    let seen = h.store.subject_state(&Subject::Record(case.clone())).await.unwrap().seen;
    assert_eq!(
        h.pd.incident(&incident).unwrap()["status"],
        "resolved",
        "the lost close is repaired (Seen {seen:?}): {report:#?}"
    );
}
