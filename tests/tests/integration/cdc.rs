//! Change Data Capture through Event Relay (issue 22): EventBridge change events drive the
//! sfdc-to-pd function against the PagerDuty and Salesforce simulators (the Salesforce simulator
//! emits the events, `sim::salesforce::cdc`), in memory and on DynamoDB (moto).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};
use shared::handler::sfdc_to_pd::ChangeEventReply;
use sim::harness::{Harness, HarnessConfig, ORG_ID};
use sim::salesforce::cdc::{self, Header};

const RULES: &str = r#"
rulesets:
  - name: CDC
    enabled: true
    rules:
      - name: sev1-case-opens-incident
        direction: salesforce_to_pagerduty
        object: Case
        applies_to: new_only
        conditions:
          - {field: Priority, operator: equals, value: Sev1}
        actions:
          - create_incident:
              service: PSVC001
              urgency: high
              title: {prefix: "[Sev1] ", fields: [Subject]}
              body: "Salesforce Case: {{record.Subject}}"
      - name: case-closed-resolves
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: changed_to, value: Closed}
        actions:
          - resolve: {resolution: "Case closed in Salesforce"}
      - name: case-deleted-resolves
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: ChangeEventHeader.changeType, operator: equals, value: DELETE}
        actions:
          - resolve: {resolution: "Case deleted in Salesforce"}
"#;

const CASE: &str = "5005g00000CDC01AAA";
const CASE_2: &str = "5005g00000CDC02AAA";
const T0: i64 = 1_795_860_000_123;

fn fields(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn create(ids: &[&str], at: i64, tx: &str) -> Value {
    let header = Header::new("Case", "CREATE", ids, at, tx);
    cdc::event(
        ORG_ID,
        &header,
        &fields(json!({"Subject": "Checkout fails", "Priority": "Sev1", "Status": "New", "Origin": "Web"})),
    )
}

fn update(id: &str, at: i64, tx: &str, changed: Value) -> Value {
    let mut header = Header::new("Case", "UPDATE", &[id], at, tx);
    let changed = fields(changed);
    header.changed_fields = changed.keys().cloned().chain(["LastModifiedDate".to_string()]).collect();
    let mut payload = changed;
    payload.insert("LastModifiedDate".into(), json!("2026-11-22T10:00:01.000Z"));
    cdc::event(ORG_ID, &header, &payload)
}

fn accepted(reply: ChangeEventReply) -> shared::handler::sfdc_to_pd::Summary {
    match reply {
        ChangeEventReply::Accepted(summary) => summary,
        other => panic!("the change event was not accepted: {other:?}"),
    }
}

async fn incident_of(h: &Harness, record: &str) -> Value {
    let links = h.stores.links.incidents_for_record(record).await.unwrap();
    assert_eq!(links.len(), 1, "one incident linked to {record}");
    h.pd.incident(links[0].incident_id.as_str()).expect("the incident exists in PagerDuty")
}

#[tokio::test]
async fn a_create_opens_an_incident_and_an_update_is_judged_against_the_last_seen_values() {
    let h = Harness::start(RULES).await;
    let summary = accepted(h.change_event(&create(&[CASE], T0, "tx-1")).await);
    assert_eq!(summary.applied, 1);
    assert_eq!(incident_of(&h, CASE).await["status"], "triggered");
    // CDC sends only Status: that it was New is what the bridge saw at the create.
    let summary = accepted(h.change_event(&update(CASE, T0 + 1_500, "tx-2", json!({"Status": "Closed"}))).await);
    assert_eq!(summary.applied, 1, "{summary:?}");
    assert_eq!(incident_of(&h, CASE).await["status"], "resolved");
}

#[tokio::test]
async fn an_update_that_leaves_the_watched_field_alone_changes_nothing() {
    let h = Harness::start(RULES).await;
    accepted(h.change_event(&create(&[CASE], T0, "tx-1")).await);
    accepted(h.change_event(&update(CASE, T0 + 1_000, "tx-2", json!({"Origin": "Phone"}))).await);
    // Closed, then the same status again: only the first is a change to Closed.
    accepted(h.change_event(&update(CASE, T0 + 2_000, "tx-3", json!({"Status": "Closed"}))).await);
    let resolves = || h.pd.requests().iter().filter(|r| String::from_utf8_lossy(&r.body).contains("resolved")).count();
    let after_close = resolves();
    accepted(h.change_event(&update(CASE, T0 + 3_000, "tx-4", json!({"Status": "Closed"}))).await);
    assert_eq!(resolves(), after_close, "Closed to Closed is no change");
    assert_eq!(incident_of(&h, CASE).await["status"], "resolved");
}

#[tokio::test]
async fn a_multi_record_event_is_one_change_per_record() {
    let h = Harness::start(RULES).await;
    let summary = accepted(h.change_event(&create(&[CASE, CASE_2], T0, "tx-1")).await);
    assert_eq!((summary.received, summary.applied), (2, 2));
    let (a, b) = (incident_of(&h, CASE).await, incident_of(&h, CASE_2).await);
    assert_ne!(a["id"], b["id"]);
}

#[tokio::test]
async fn a_delete_is_an_event_rules_match() {
    let h = Harness::start(RULES).await;
    accepted(h.change_event(&create(&[CASE], T0, "tx-1")).await);
    let delete = cdc::event(ORG_ID, &Header::new("Case", "DELETE", &[CASE], T0 + 1_000, "tx-2"), &Map::new());
    assert_eq!(accepted(h.change_event(&delete).await).applied, 1);
    assert_eq!(incident_of(&h, CASE).await["status"], "resolved");
}

#[tokio::test]
async fn a_gap_event_reads_the_record_again() {
    let h = Harness::start(RULES).await;
    let id =
        h.sf.insert_record_as("Case", json!({"Subject": "Checkout fails", "Priority": "Sev1"}), "agent@example.com");
    accepted(h.change_event(&create(&[&id], T0, "tx-1")).await);
    h.sf.update_record("Case", &id, json!({"Status": "Closed"}), "agent@example.com");
    h.sf.clear_requests();
    // Salesforce could not build the event: no field values, only the header.
    let gap = cdc::event(ORG_ID, &Header::new("Case", "GAP_UPDATE", &[&id], T0 + 1_000, "tx-2"), &Map::new());
    assert_eq!(accepted(h.change_event(&gap).await).applied, 1);
    assert_eq!(incident_of(&h, &id).await["status"], "resolved");
    let reads = h.sf.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with(&id)).count();
    assert_eq!(reads, 1, "one REST read of the record");
}

#[tokio::test]
async fn a_gap_whose_record_cannot_be_read_is_queued_not_lost() {
    let h = Harness::start(RULES).await;
    accepted(h.change_event(&create(&[CASE], T0, "tx-1")).await);
    h.sf.fail_next(1, sim::faults::FaultKind::ServerError);
    let gap = cdc::event(ORG_ID, &Header::new("Case", "GAP_UPDATE", &[CASE], T0 + 1_000, "tx-2"), &Map::new());
    let summary = accepted(h.change_event(&gap).await);
    assert_eq!(summary.queued, 1, "{summary:?}");
}

/// A change that can be neither applied nor queued now (PagerDuty answers 503, the retry queue
/// is down) fails the invocation, so that Lambda invokes it again (then the change events' DLQ);
/// that second invocation applies it, once.
#[tokio::test]
async fn a_change_that_cannot_be_made_safe_fails_the_invocation_and_its_retry_applies_it_once() {
    let h = Harness::start(RULES).await;
    let event = create(&[CASE], T0, "tx-1");
    let refusing = h.instance_with_retry_queue(std::sync::Arc::new(sim::refusing_queue::RefusingQueue));
    h.pd.fail_next(10, sim::faults::FaultKind::ServerError);
    let request = h.request(shared::handler::sfdc_to_pd::CHANGE_EVENT_ROUTE, &event.to_string(), vec![]);
    match shared::handler::sfdc_to_pd::handle_change_event(&refusing, request).await {
        ChangeEventReply::Retry(summary) => assert_eq!(summary.not_accepted, [CASE], "{summary:?}"),
        other => panic!("the invocation must fail: {other:?}"),
    }
    assert!(h.stores.links.incidents_for_record(CASE).await.unwrap().is_empty(), "nothing applied");

    h.pd.clear_queued_faults();
    let summary = accepted(h.change_event(&event).await);
    assert_eq!(summary.applied, 1, "Lambda's retry applies it: {summary:?}");
    incident_of(&h, CASE).await;
    let again = accepted(h.change_event(&event).await);
    assert_eq!(again.duplicate, 1, "and a third delivery changes nothing: {again:?}");
}

#[tokio::test]
async fn the_same_change_delivered_again_changes_nothing() {
    let h = Harness::start(RULES).await;
    let event = create(&[CASE], T0, "tx-1");
    accepted(h.change_event(&event).await);
    // A replay (or EventBridge's retry) of the same change: another EventBridge id, same header.
    let mut again = event.clone();
    again["id"] = json!(uuid::Uuid::new_v4().to_string());
    let summary = accepted(h.change_event(&again).await);
    assert_eq!(summary.duplicate, 1, "{summary:?}");
    assert_eq!(h.pd.incidents().len(), 1);
}

#[tokio::test]
async fn an_older_change_delivered_after_a_newer_one_is_not_applied() {
    let h = Harness::start(RULES).await;
    accepted(h.change_event(&create(&[CASE], T0, "tx-1")).await);
    accepted(h.change_event(&update(CASE, T0 + 2_000, "tx-3", json!({"Status": "Closed"}))).await);
    assert_eq!(incident_of(&h, CASE).await["status"], "resolved");
    // Committed before the close, delivered after it: no reopening, no second resolve.
    let late = update(CASE, T0 + 1_000, "tx-2", json!({"Status": "Working"}));
    let summary = accepted(h.change_event(&late).await);
    assert_eq!(summary.applied, 0, "{summary:?}");
    let closed_again = update(CASE, T0 + 3_000, "tx-4", json!({"Status": "Closed"}));
    accepted(h.change_event(&closed_again).await);
    let resolves = h.pd.requests().iter().filter(|r| String::from_utf8_lossy(&r.body).contains("resolved")).count();
    assert_eq!(resolves, 1, "the late Working did not become what the bridge saw last");
}

#[tokio::test]
async fn the_bridges_own_write_is_not_sent_back() {
    let h = Harness::start(RULES).await;
    accepted(h.change_event(&create(&[CASE], T0, "tx-1")).await);
    let mut header = Header::new("Case", "UPDATE", &[CASE], T0 + 1_000, "tx-2");
    header.changed_fields = vec!["Status".into()];
    header.origin = format!("com/salesforce/api/rest/62.0;{}", shared::salesforce::CALL_OPTIONS);
    let echo = cdc::event(ORG_ID, &header, &fields(json!({"Status": "Closed"})));
    let summary = accepted(h.change_event(&echo).await);
    assert_eq!(summary.skipped, 1, "{summary:?}");
    assert_eq!(incident_of(&h, CASE).await["status"], "triggered");
}

#[tokio::test]
async fn another_orgs_event_is_refused_and_nothing_is_written() {
    let h = Harness::start(RULES).await;
    let mut event = create(&[CASE], T0, "tx-1");
    event["source"] = json!(format!("aws.partner/salesforce.com/00D5g000004XyZbEAK/{}", cdc::CHANNEL_ID));
    match h.change_event(&event).await {
        ChangeEventReply::Refused(err) => assert!(err.to_string().contains("not the configured org"), "{err}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(h.store.audit_len(), 0);
    assert!(h.pd.incidents().is_empty());
    assert!(h.stores.links.subject_state(&shared::store::Subject::Record(CASE.into())).await.unwrap().seen.is_none());
}

#[tokio::test]
async fn the_simulators_change_events_drive_the_function() {
    let h = Harness::start(RULES).await;
    let id =
        h.sf.insert_record_as("Case", json!({"Subject": "Checkout fails", "Priority": "Sev1"}), "agent@example.com");
    accepted(h.change_event(&create(&[&id], T0, "tx-0")).await);
    h.sf.update_record("Case", &id, json!({"Status": "Closed"}), "agent@example.com");
    let events = h.sf.change_events();
    let header = &events.last().unwrap()["detail"]["payload"]["ChangeEventHeader"];
    assert_eq!(header["changeType"], "UPDATE");
    assert!(header["changedFields"].as_array().unwrap().contains(&json!("Status")));
    accepted(h.change_event(events.last().unwrap()).await);
    assert_eq!(incident_of(&h, &id).await["status"], "resolved");
}

#[tokio::test]
async fn last_seen_values_round_trip_through_dynamodb() {
    let h = Harness::with(HarnessConfig { dynamodb: true, ..HarnessConfig::new(RULES) }).await;
    accepted(h.change_event(&create(&[CASE], T0, "tx-1")).await);
    let state = h.stores.links.subject_state(&shared::store::Subject::Record(CASE.into())).await.unwrap();
    assert_eq!(state.seen.expect("seen kept in the table").fields["Status"], "New");
    // Another instance (its own caches) reads what the first kept.
    let other = h.instance();
    let request = h.request(
        shared::handler::sfdc_to_pd::CHANGE_EVENT_ROUTE,
        &update(CASE, T0 + 1_000, "tx-2", json!({"Status": "Closed"})).to_string(),
        vec![],
    );
    accepted(shared::handler::sfdc_to_pd::handle_change_event(&other, request).await);
    assert_eq!(incident_of(&h, CASE).await["status"], "resolved");
}

/// Seeded: cases created in multi-record events, each event delivered one to three times, and
/// some closed, in a shuffled order of the deliveries of distinct records. The model: one
/// incident per case, resolved exactly when its case was closed. `CDC_SEED=n` replays one seed.
#[tokio::test]
async fn random_deliveries_match_the_model() {
    let seeds: Vec<u64> = match std::env::var("CDC_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (1..=6).collect(),
    };
    for seed in seeds {
        println!("cdc model seed {seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let h = Harness::start(RULES).await;
        let n = rng.random_range(1..=6usize);
        let ids: Vec<String> = (0..n).map(|i| format!("5005g00000R{seed:02}{i:02}AAA")).collect();
        let mut creates = Vec::new();
        let mut at = T0;
        let mut rest: &[String] = &ids;
        while !rest.is_empty() {
            let take = rng.random_range(1..=rest.len());
            let batch: Vec<&str> = rest[..take].iter().map(String::as_str).collect();
            creates.push(create(&batch, at, &format!("tx-c{at}")));
            at += 1_000;
            rest = &rest[take..];
        }
        for event in &creates {
            for _ in 0..rng.random_range(1..=3) {
                let mut again = event.clone();
                again["id"] = json!(uuid::Uuid::new_v4().to_string());
                accepted(h.change_event(&again).await);
            }
        }
        let closed: Vec<bool> = ids.iter().map(|_| rng.random_bool(0.5)).collect();
        for (id, _) in ids.iter().zip(&closed).filter(|(_, c)| **c) {
            at += rng.random_range(1..2_000);
            let close = update(id, at, &format!("tx-u{at}"), json!({"Status": "Closed"}));
            for _ in 0..rng.random_range(1..=2) {
                accepted(h.change_event(&close).await);
            }
        }
        assert_eq!(h.pd.incidents().len(), n, "seed {seed}: one incident per case");
        for (id, closed) in ids.iter().zip(&closed) {
            let want = if *closed { "resolved" } else { "triggered" };
            assert_eq!(incident_of(&h, id).await["status"], want, "seed {seed}: case {id}");
        }
    }
}

/// Anyone can send `Sforce-Call-Options: client=pd-sfdc-sync`: a person's Case that carries an
/// incident's external id and that origin is skipped as the bridge's, but it does not get linked
/// to the incident (only Salesforce's `commitUser` or `LastModifiedById` says the bridge wrote).
#[tokio::test]
async fn a_spoofed_bridge_origin_links_nothing() {
    let rules = r#"
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
              fields: {Subject: "{{incident.title}}"}
              external_id_field: PagerDuty_Incident_Key__c
"#;
    let h = Harness::start(rules).await;
    let mut header = Header::new("Case", "CREATE", &[CASE], T0, "tx-spoof");
    header.origin = format!("com/salesforce/api/rest/62.0;{}", shared::salesforce::CALL_OPTIONS);
    let key = shared::rules::external_id("PINCSPOOF1", "trigger-opens-case");
    let event =
        cdc::event(ORG_ID, &header, &fields(json!({"Subject": "Not the bridge's", "PagerDuty_Incident_Key__c": key})));
    let summary = accepted(h.change_event(&event).await);
    assert_eq!(summary.skipped, 1, "skipped as the bridge's own change: {summary:?}");
    let links = h.stores.links.records_for_incident("PINCSPOOF1").await.unwrap();
    assert!(links.is_empty(), "a person's record is not linked to the incident: {links:?}");
}
