//! The DynamoDB store against moto's server: the store contract every implementation keeps, the
//! idempotency race, and what a misconfigured table looks like.

use std::sync::Arc;

use adapters::dynamodb::{self, DynamoStore};
use chrono::{Duration, Utc};
use shared::model::{AuditEntry, Direction, Link, Outcome, RecordRef};
use shared::store::{AuditLog, IdempotencyStore, LinkStore, StoreError, Subject, contract};
use sim::moto;

#[tokio::test]
async fn dynamodb_store_keeps_the_store_contract() {
    let (client, table) = moto::table().await;
    let store = Arc::new(DynamoStore::new(client, table));
    // moto's conditional updates are not atomic under a race (see `run_all`).
    contract::run_all(store.clone(), store.clone(), store.clone(), store.clone(), store, false).await;
}

#[tokio::test]
async fn dynamodb_store_keeps_the_rate_budget_contract() {
    let (client, table) = moto::table().await;
    contract::rate_buckets_are_compare_and_set(&DynamoStore::new(client, table)).await;
}

#[tokio::test]
async fn dynamodb_store_keeps_the_cursor_contract() {
    let (client, table) = moto::table().await;
    contract::cursors_only_move_forward(&DynamoStore::new(client, table)).await;
}

#[tokio::test]
async fn fifty_tasks_claiming_one_key_have_exactly_one_winner() {
    let (client, table) = moto::table().await;
    // Three rounds on fresh keys: a lucky interleaving once is not proof.
    for _ in 0..3 {
        contract::concurrent_claims_have_exactly_one_winner(Arc::new(DynamoStore::new(client.clone(), &table)), 50)
            .await;
    }
}

#[tokio::test]
async fn a_queued_envelope_finds_its_own_pending_entry_whatever_the_precision_of_its_time() {
    use shared::handler::settle::pending_event;
    use shared::model::Direction;
    use shared::retry::envelope::{Envelope, QueuedEvent};
    use shared::store::{LinkStore, Subject};
    let (client, table) = moto::table().await;
    let store = DynamoStore::new(client, table);
    // PagerDuty's occurred_at carries microseconds; the store keeps milliseconds.
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-02T14:43:16.123456Z").unwrap().to_utc();
    let event = QueuedEvent::PagerdutyWebhook { body: "{}".into(), webhook_id: None, subscription_id: None };
    let envelope = Envelope::new(Direction::PagerdutyToSalesforce, "E1", "c", at, at, event);
    let subject = Subject::Incident("QPREC".into());
    store.add_pending(&subject, &pending_event(&envelope.accepted)).await.unwrap();
    let state = store.subject_state(&subject).await.unwrap();
    assert!(state.pending.contains(&pending_event(&envelope.accepted)), "{:?}", state.pending);
}

#[tokio::test]
async fn stores_share_one_table_for_every_trait() {
    let (client, table) = moto::table().await;
    let stores = dynamodb::stores(client, &table);
    let at = Utc::now();
    stores
        .links
        .put_link(&Link {
            incident_id: "PSHARED".into(),
            record: RecordRef { object: "Case".into(), id: "500SHARED".into() },
            created_at: at,
            created_by_rule: Some("case-to-incident".into()),
        })
        .await
        .unwrap();
    let links = stores.links.incidents_for_record("500SHARED").await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].incident_id, "PSHARED");
    assert_eq!(links[0].created_by_rule.as_deref(), Some("case-to-incident"));
    assert_eq!(links[0].created_at.timestamp_millis(), at.timestamp_millis());
    assert!(stores.links.records_for_incident("PNOTHING").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_claim_after_the_in_progress_window_takes_over_and_release_frees_the_key() {
    let (client, table) = moto::table().await;
    let store = DynamoStore::new(client, table);
    let now = Utc::now();
    let day = now + Duration::days(1);
    assert_eq!(store.claim("k", now, now + Duration::seconds(60), day).await.unwrap(), shared::store::Claim::Acquired);
    let later = now + Duration::seconds(61);
    assert_eq!(
        store.claim("k", later, later + Duration::seconds(60), day).await.unwrap(),
        shared::store::Claim::Acquired,
        "a crashed holder does not block the key forever"
    );
    store.release("k").await.unwrap();
    assert_eq!(
        store.claim("k", later, later + Duration::seconds(60), day).await.unwrap(),
        shared::store::Claim::Acquired
    );
    store.complete("k", "done", day).await.unwrap();
    store.release("k").await.unwrap();
    assert_eq!(
        store.claim("k", later, later + Duration::seconds(60), day).await.unwrap(),
        shared::store::Claim::Completed { result: "done".into() },
        "release never deletes a completed record"
    );
}

#[tokio::test]
async fn recent_audit_reads_across_day_partitions_newest_first() {
    let (client, table) = moto::table().await;
    let store = DynamoStore::new(client, table);
    let now = Utc::now();
    let entry = |event: &str, at| {
        let mut e = AuditEntry::new(at, Direction::PagerdutyToSalesforce, "req", event, Outcome::Applied);
        e.incident_ids = vec!["PAUDIT".into()];
        e
    };
    // Fixed to day boundaries so the test means the same at any hour: noon yesterday, noon the
    // day before, and one o'clock today.
    let midnight = now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let (before, yesterday, today) =
        (midnight - Duration::hours(36), midnight - Duration::hours(12), midnight + Duration::hours(1));
    let ids = |v: Vec<AuditEntry>| v.into_iter().map(|e| e.event_id).collect::<Vec<_>>();
    store.append(&entry("before", before)).await.unwrap();
    store.append(&entry("yesterday", yesterday)).await.unwrap();
    assert_eq!(
        ids(store.recent(yesterday - Duration::hours(1), 10).await.unwrap()),
        vec!["yesterday"],
        "an empty day partition (today) does not end the walk"
    );
    store.append(&entry("today", today)).await.unwrap();
    assert_eq!(ids(store.recent(before - Duration::days(1), 10).await.unwrap()), vec!["today", "yesterday", "before"]);
    assert_eq!(ids(store.recent(before + Duration::hours(1), 10).await.unwrap()), vec!["today", "yesterday"]);
    assert_eq!(ids(store.recent(before - Duration::days(1), 2).await.unwrap()), vec!["today", "yesterday"]);
    assert!(store.recent(today + Duration::hours(1), 10).await.unwrap().is_empty());
    assert_eq!(ids(store.for_subject(&Subject::Incident("PAUDIT".into()), 1).await.unwrap()), vec!["today"]);
}

#[tokio::test]
async fn a_key_too_long_for_dynamodb_is_refused_for_good_not_retried() {
    let (client, table) = moto::table().await;
    let store = DynamoStore::new(client, table);
    let link = Link {
        incident_id: "Q".repeat(3000).into(),
        record: RecordRef { object: "Case".into(), id: "5005g00000LONG1AAA".into() },
        created_at: Utc::now(),
        created_by_rule: None,
    };
    let err = store.put_link(&link).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
    assert!(err.is_permanent(), "this event's item can never be stored");
    // The idempotency key of such an event is bounded, so its gate still works.
    let key = format!("pd:{}", "E".repeat(3000));
    let now = Utc::now();
    let first = store.claim(&key, now, now + Duration::seconds(10), now + Duration::hours(1)).await.unwrap();
    assert_eq!(first, shared::store::Claim::Acquired);
}

#[tokio::test]
async fn a_missing_table_is_a_configuration_error_naming_the_table() {
    let sdk = moto::sdk_config().await;
    let store = DynamoStore::from_conf(&sdk, "no-such-table");
    let err = store.records_for_incident("PINC").await.unwrap_err();
    assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-table"), "{err}");
    assert!(!err.is_transient(), "retrying cannot create a table");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    // A port nothing listens on: the SDK's dispatch failure must read as "try again", not as config.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sdk = moto::sdk_config().await.into_builder().endpoint_url(format!("http://127.0.0.1:{port}")).build();
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), "t");
    let err = store.subject_state(&Subject::Incident("P".into())).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
