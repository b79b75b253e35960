//! The retry function, the DLQ and the pause-and-queue breaker, end to end against the
//! simulators with injectable time (nothing sleeps).

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use shared::clock::Clock;
use shared::model::Outcome;
use shared::retry::dlq;
use shared::store::BreakerState;
use sim::faults::{FaultConfig, FaultKind};
use sim::harness::{Harness, HarnessConfig, delivery, incident_data, outcome};

const RULES: &str = r#"
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
              fields: {Subject: "{{incident.title}}", Origin: PagerDuty, Priority: PRIORITY}
              external_id_field: PagerDuty_Incident_Key__c
"#;

fn rules(priority: &str) -> String {
    RULES.replace("PRIORITY", priority)
}

fn trigger(id: &str, at: chrono::DateTime<Utc>) -> String {
    delivery(&format!("E-{id}"), "incident.triggered", at, incident_data(id, "triggered"))
}

#[tokio::test]
async fn a_message_that_fails_twice_then_succeeds_is_applied_once() {
    let h = Harness::start(&rules("High")).await;
    h.sf.fail_next(2, FaultKind::ServerError);
    assert_eq!(outcome(&h.webhook(&trigger("PR1", Utc::now()), "w").await), "queued");
    h.drain_retries(20).await;
    assert_eq!(h.sf.records("Case").len(), 1);
    let outcomes: Vec<Outcome> = h.store.audit_entries().iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Queued, Outcome::Queued, Outcome::Applied]);
    assert!(h.dlq.is_empty());
}

#[tokio::test]
async fn a_retry_message_delivered_twice_is_applied_once() {
    let h = Harness::start(&rules("High")).await;
    h.sf.fail_next(1, FaultKind::ServerError);
    assert_eq!(outcome(&h.webhook(&trigger("PT1", Utc::now()), "w").await), "queued");
    // SQS delivers at least once, and a send whose answer was lost is sent again: two copies.
    let copy = h.retry_queue.bodies()[0].clone();
    shared::retry::queue::Queue::send(h.retry_queue.as_ref(), &copy, StdDuration::ZERO).await.unwrap();
    h.drain_retries(20).await;
    let applied = h.store.audit_entries().iter().filter(|e| e.outcome == Outcome::Applied).count();
    assert_eq!(applied, 1, "the second copy is dropped, not applied again");
    assert!(h.retry_queue.is_empty() && h.dlq.is_empty());
}

#[tokio::test]
async fn one_thousand_events_through_a_salesforce_failing_30_percent_are_all_applied_once() {
    events_through_faults(false, 1000).await;
}

#[tokio::test]
async fn two_hundred_events_with_links_idempotency_and_breakers_in_dynamodb() {
    // Fewer events: every one costs several DynamoDB calls to moto's Python server.
    events_through_faults(true, 200).await;
}

async fn events_through_faults(dynamodb: bool, n: usize) {
    let mut config = HarnessConfig::new(rules("High"));
    config.dynamodb = dynamodb;
    // At 30% faults an event fails all of the production policy's 8 attempts with probability
    // 0.3^8: about one run in fifteen would dead-letter one of 1,000 events, correctly. This test is
    // about nothing lost or applied twice, so it allows 14 attempts (0.3^14 per event: negligible).
    config.retry_policy.max_attempts = 14;
    let h = Harness::with(config).await;
    h.sf.set_faults(FaultConfig { seed: 30, server_error_rate: 0.2, lock_row_rate: 0.1, ..FaultConfig::none() });
    let t0 = Utc::now();
    for i in 0..n {
        let reply = h.webhook(&trigger(&format!("PK{i}"), t0), &format!("w{i}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let mut rounds = 0;
    while !h.retry_queue.is_empty() && rounds < 100 {
        h.clock.advance(Duration::seconds(61));
        h.drain_retries(1000).await;
        rounds += 1;
    }
    let cases = h.sf.records("Case");
    let keys: std::collections::HashSet<String> =
        cases.iter().map(|c| c["PagerDuty_Incident_Key__c"].as_str().unwrap_or_default().to_string()).collect();
    println!(
        "{n} events (DynamoDB: {dynamodb}), 30% Salesforce faults: {} cases, {} distinct, DLQ {}, {rounds} drain rounds",
        cases.len(),
        keys.len(),
        h.dlq.len()
    );
    assert_eq!(cases.len(), n, "every event applied");
    assert_eq!(keys.len(), n, "0 duplicated");
    assert!(h.dlq.is_empty(), "0 in the DLQ: {:?}", h.dlq.bodies());
}

async fn harness(rules_yaml: &str, dynamodb: bool) -> Harness {
    let mut config = HarnessConfig::new(rules_yaml);
    config.dynamodb = dynamodb;
    Harness::with(config).await
}

#[tokio::test]
async fn a_five_minute_salesforce_outage_opens_the_breaker_queues_and_drains_after() {
    five_minute_outage(false).await;
}

#[tokio::test]
async fn a_five_minute_salesforce_outage_with_the_breaker_in_dynamodb() {
    five_minute_outage(true).await;
}

async fn five_minute_outage(dynamodb: bool) {
    let h = harness(&rules("High"), dynamodb).await;
    h.sf.set_faults(FaultConfig { seed: 5, server_error_rate: 1.0, ..FaultConfig::none() });
    let t0 = Utc::now();
    for i in 0..30 {
        h.webhook(&trigger(&format!("PO{i}"), t0), &format!("w{i}")).await;
    }
    let breaker = h.stores.breakers.get_breaker("salesforce").await.unwrap().expect("breaker written");
    assert_eq!(breaker.state, BreakerState::Open, "a run of 5xx opens the breaker");
    let calls_when_opened = h.sf.requests().len();
    assert!(calls_when_opened <= 6, "once open, events queue instead of calling ({calls_when_opened} calls)");
    // The outage lasts five minutes of simulated time: the retry function holds messages back.
    let outage_end = h.clock.now() + Duration::minutes(5);
    while h.clock.now() < outage_end {
        h.clock.advance(Duration::seconds(30));
        h.drain_retries(200).await;
    }
    assert!(h.sf.records("Case").is_empty());
    h.sf.set_faults(FaultConfig::none());
    for _ in 0..40 {
        if h.retry_queue.is_empty() {
            break;
        }
        h.clock.advance(Duration::seconds(61));
        h.drain_retries(500).await;
    }
    assert_eq!(h.sf.records("Case").len(), 30, "nothing lost");
    assert!(h.dlq.is_empty());
    assert_eq!(h.stores.breakers.get_breaker("salesforce").await.unwrap().unwrap().state, BreakerState::Closed);
}

#[tokio::test]
async fn replay_from_the_dlq_after_fixing_a_rule_applies_the_event_exactly_once() {
    replay_after_fix(false).await;
}

#[tokio::test]
async fn replay_after_a_rule_fix_with_rules_and_idempotency_in_dynamodb() {
    replay_after_fix(true).await;
}

async fn replay_after_fix(dynamodb: bool) {
    let h = harness(&rules("NotAPicklistValue"), dynamodb).await;
    assert_eq!(outcome(&h.webhook(&trigger("PD1", Utc::now()), "w").await), "dead_lettered");
    assert_eq!(h.dlq.len(), 1);
    assert!(h.sf.records("Case").is_empty());

    // The operator fixes the rule and pushes it; the functions pick it up within a minute.
    h.stores.rules.put_rules(&rules("High"), "operator", h.clock.now()).await.unwrap();
    h.clock.advance(Duration::seconds(61));
    let report = dlq::replay(h.dlq.as_ref(), h.retry_queue.as_ref(), &[], 100, |_, _| {}).await.unwrap();
    assert_eq!(report.replayed.len(), 1);
    h.drain_retries(10).await;
    assert_eq!(h.sf.records("Case").len(), 1, "applied after the fix");
    assert!(h.dlq.is_empty());
    // Replaying again (an operator's double click) changes nothing.
    let again = dlq::replay(h.dlq.as_ref(), h.retry_queue.as_ref(), &[], 100, |_, _| {}).await.unwrap();
    assert!(again.replayed.is_empty());
    let _ = StdDuration::ZERO;
}

#[tokio::test]
async fn an_unreadable_queue_message_is_moved_to_the_dlq_whole() {
    let h = Harness::start(&rules("High")).await;
    shared::retry::queue::Queue::send(h.retry_queue.as_ref(), "this is not an envelope", StdDuration::ZERO)
        .await
        .unwrap();
    h.drain_retries(5).await;
    assert_eq!(h.dlq.bodies(), vec!["this is not an envelope".to_string()]);
    assert!(h.retry_queue.is_empty());
}

#[tokio::test]
async fn a_salesforce_key_secrets_manager_could_not_give_does_not_open_the_salesforce_breaker() {
    use shared::retry::breaker::Permit;
    use shared::salesforce::SalesforceError;
    use shared::secrets::SecretsError;
    let h = harness(include_str!("../../../events/rules.example.yaml"), false).await;
    // Secrets Manager down: the call was never sent, Salesforce is not the one failing.
    let unread =
        || SalesforceError::Secret(SecretsError::Unavailable { id: "sf-jwt".into(), reason: "throttled".into() });
    let salesforce = h.ctx.salesforce_port();
    for _ in 0..20 {
        salesforce.report_failure(&unread()).await;
    }
    assert!(matches!(salesforce.breaker.permit().await.unwrap(), Permit::Call), "still closed");
    // Salesforce itself timing out does open it.
    for _ in 0..20 {
        salesforce.report_failure(&SalesforceError::Transport { what: "timeout", message: "no answer".into() }).await;
    }
    assert!(matches!(salesforce.breaker.permit().await.unwrap(), Permit::Wait { .. }), "open");
}
