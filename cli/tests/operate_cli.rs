//! The operator commands as a person runs them: `syncctl rules push`, `dlq list`, `dlq replay
//! --dry-run`, `dlq replay`, `audit`, against DynamoDB and SQS on moto.

use std::process::Command;
use std::time::Duration;

use adapters::dynamodb::DynamoStore;
use adapters::sqs::SqsQueue;
use chrono::Utc;
use shared::model::{AuditEntry, Direction, Outcome};
use shared::retry::envelope::{Envelope, Failure, QueuedEvent};
use shared::retry::queue::Queue;
use shared::store::AuditLog;
use sim::moto;

struct Stack {
    table: String,
    retry: String,
    dlq: String,
    endpoint: String,
}

fn syncctl(stack: &Stack, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_syncctl"))
        .args(args)
        .env("TABLE_NAME", &stack.table)
        .env("RETRY_QUEUE_URL", &stack.retry)
        .env("DLQ_URL", &stack.dlq)
        .env("AWS_ENDPOINT_URL", &stack.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("run syncctl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_pushes_rules_inspects_previews_and_replays_a_dead_letter_and_reads_the_audit() {
    let (dynamo, table) = moto::table().await;
    let (sqs, retry, dlq) = moto::queues(5).await;
    let stack = Stack { table: table.clone(), retry: retry.clone(), dlq: dlq.clone(), endpoint: moto::url().await };

    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/rules.example.yaml");
    let (ok, out) = syncctl(&stack, &["rules", "push", rules]);
    assert!(ok, "{out}");
    assert!(out.contains("as version 1"), "{out}");

    let body = serde_json::json!({"event": {"id": "E-DLQ", "event_type": "incident.acknowledged", "resource_type": "incident",
        "occurred_at": "2026-11-22T10:00:00Z", "data": {"id": "PINCDLQ", "type": "incident", "status": "acknowledged",
        "service": {"id": "PSVC001", "type": "service_reference", "summary": "Customer Support"}}}});
    let mut envelope = Envelope::new(
        Direction::PagerdutyToSalesforce,
        "E-DLQ",
        "corr",
        Utc::now(),
        Utc::now(),
        QueuedEvent::PagerdutyWebhook { body: body.to_string(), webhook_id: None, subscription_id: None },
    );
    envelope.trip.record_failure(Failure {
        at: Utc::now(),
        kind: "permanent".into(),
        reason: "INVALID_FIELD: Status".into(),
        rule: Some("r".into()),
    });
    envelope.trip.dead_letter_reason = Some("permanent error: INVALID_FIELD: Status".into());
    let store = DynamoStore::new(dynamo, &table);
    shared::store::LinkStore::put_link(
        &store,
        &shared::model::Link {
            incident_id: "PINCDLQ".into(),
            record: shared::model::RecordRef { object: "Case".into(), id: "5005g00000DLQ01AAA".into() },
            created_at: Utc::now(),
            created_by_rule: None,
        },
    )
    .await
    .unwrap();
    let dead = SqsQueue::new(sqs.clone(), &dlq);
    dead.send(&envelope.to_json(), Duration::ZERO).await.unwrap();

    let (ok, out) = syncctl(&stack, &["dlq", "list"]);
    assert!(ok && out.contains(envelope.id()) && out.contains("INVALID_FIELD"), "{out}");

    let (ok, out) = syncctl(&stack, &["dlq", "replay", "--all", "--dry-run"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("would set_fields on Case 5005g00000DLQ01AAA"),
        "the preview shows what the rules would do now: {out}"
    );

    let (ok, out) = syncctl(&stack, &["dlq", "replay", envelope.id()]);
    assert!(ok && out.contains("replayed 1"), "{out}");
    let moved = SqsQueue::new(sqs, &retry).receive(10, Duration::from_secs(1)).await.unwrap();
    let replayed = Envelope::from_json(&moved[0].body).unwrap();
    assert_eq!((replayed.id(), replayed.trip.replays, replayed.trip.history.len()), (envelope.id(), 1, 1));

    let mut entry =
        AuditEntry::new(Utc::now(), Direction::PagerdutyToSalesforce, "corr", "E-DLQ", Outcome::DeadLettered);
    entry.incident_ids = vec!["PINCDLQ".into()];
    entry.reason = Some("permanent error: INVALID_FIELD: Status".into());
    store.append(&entry).await.unwrap();
    let (ok, out) = syncctl(&stack, &["audit", "--incident", "PINCDLQ"]);
    assert!(ok && out.contains("dead_lettered") && out.contains("INVALID_FIELD"), "{out}");
}
