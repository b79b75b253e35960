//! The DynamoDB store, the SQS queue and the Secrets Manager cache against moto's server.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shared::clock::ManualClock;
use shared::retry::queue::{Queue, QueueError};
use shared::retry::sqs::SqsQueue;
use shared::secrets::{CachedSecrets, SecretsError, SecretsManagerSource};
use shared::store::dynamodb::DynamoStore;
use shared::store::{LinkStore, StoreError, contract};
use sim::moto;

#[tokio::test]
async fn dynamodb_store_keeps_the_store_contract() {
    let (client, table) = moto::table().await;
    let store = Arc::new(DynamoStore::new(client, table));
    contract::run_all(store.clone(), store.clone(), store.clone(), store.clone(), store).await;
}

#[tokio::test]
async fn fifty_racing_claims_on_one_key_have_exactly_one_winner_in_dynamodb() {
    let (client, table) = moto::table().await;
    for _ in 0..3 {
        contract::concurrent_claims_have_exactly_one_winner(Arc::new(DynamoStore::new(client.clone(), &table)), 50)
            .await;
    }
}

#[tokio::test]
async fn a_missing_table_is_a_configuration_error_naming_the_table() {
    let sdk = moto::sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), "no-such-table");
    let err = store.records_for_incident("PINC").await.unwrap_err();
    assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-table"), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn warm_reads_do_not_ask_secrets_manager_again_until_max_age() {
    let (client, id) = moto::secret(r#"{"token":"first-token"}"#).await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let secrets = CachedSecrets::new(
        Arc::new(SecretsManagerSource::new(client.clone())),
        clock.clone(),
        Duration::from_secs(300),
    );
    assert_eq!(secrets.pagerduty_token(&id).await.unwrap().expose(), "first-token");
    client.put_secret_value().secret_id(&id).secret_string(r#"{"token":"second-token"}"#).send().await.unwrap();
    assert_eq!(secrets.pagerduty_token(&id).await.unwrap().expose(), "first-token", "served from the cache");
    clock.advance(chrono::Duration::seconds(301));
    assert_eq!(secrets.pagerduty_token(&id).await.unwrap().expose(), "second-token", "re-read after max age");
}

#[tokio::test]
async fn secret_errors_name_the_secret_and_key_never_the_value() {
    let (client, id) = moto::secret(r#"{"tokn":"do-not-print-me"}"#).await;
    let secrets = CachedSecrets::new(
        Arc::new(SecretsManagerSource::new(client)),
        Arc::new(ManualClock::new(Utc::now())),
        Duration::from_secs(300),
    );
    let err = secrets.pagerduty_token(&id).await.unwrap_err().to_string();
    assert!(err.contains(&id) && err.contains("\"token\""), "{err}");
    assert!(!err.contains("do-not-print-me"), "{err}");
    let missing = secrets.pagerduty_token("no-such-secret").await.unwrap_err();
    assert!(matches!(missing, SecretsError::NotFound { .. }), "{missing:?}");
}

#[tokio::test]
async fn a_cached_secret_survives_its_deletion_until_invalidated() {
    // After a signature failure the caller invalidates: the next read must go back to Secrets
    // Manager even within max age, and a secret gone from Secrets Manager is then NotFound.
    let (client, id) = moto::secret(r#"{"current":"old-signing","previous":null}"#).await;
    let secrets = CachedSecrets::new(
        Arc::new(SecretsManagerSource::new(client.clone())),
        Arc::new(ManualClock::new(Utc::now())),
        Duration::from_secs(300),
    );
    assert_eq!(secrets.webhook_secrets(&id).await.unwrap().current.expose(), "old-signing");
    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(r#"{"current":"new-signing","previous":"old-signing"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(secrets.webhook_secrets(&id).await.unwrap().current.expose(), "old-signing", "still cached");
    secrets.invalidate(&id);
    let rotated: Vec<String> =
        secrets.webhook_secrets(&id).await.unwrap().iter().map(|s| s.expose().to_string()).collect();
    assert_eq!(rotated, vec!["new-signing", "old-signing"], "re-read at once after invalidate");
    client.delete_secret().secret_id(&id).force_delete_without_recovery(true).send().await.unwrap();
    assert_eq!(secrets.webhook_secrets(&id).await.unwrap().current.expose(), "new-signing", "no call while warm");
    secrets.invalidate(&id);
    let gone = secrets.webhook_secrets(&id).await.unwrap_err();
    assert!(matches!(gone, SecretsError::NotFound { .. }), "{gone:?}");
    assert!(!gone.is_transient());
}

#[tokio::test]
async fn a_secret_that_is_not_json_is_malformed_and_not_echoed() {
    let (client, id) = moto::secret("plain-text-token-value").await;
    let secrets = CachedSecrets::new(
        Arc::new(SecretsManagerSource::new(client)),
        Arc::new(ManualClock::new(Utc::now())),
        Duration::from_secs(300),
    );
    let err = secrets.pagerduty_token(&id).await.unwrap_err();
    assert!(matches!(err, SecretsError::Malformed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&id) && text.contains("JSON"), "{text}");
    assert!(!text.contains("plain-text-token-value"), "{text}");
}

#[tokio::test]
async fn an_sqs_delay_beyond_fifteen_minutes_is_capped_not_refused() {
    let (client, retry_url, _) = moto::queues(5).await;
    let queue = SqsQueue::new(client, retry_url);
    queue.send("much-later", Duration::from_secs(3_600)).await.expect("capped at 900 s, which SQS accepts");
    assert_eq!(queue.approximate_depth().await.unwrap(), 1);
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "still delayed");
}

#[tokio::test]
async fn a_missing_queue_is_a_configuration_error() {
    let (client, retry_url, _) = moto::queues(5).await;
    let missing = retry_url.rsplit_once('/').map(|(base, _)| format!("{base}/no-such-queue")).unwrap();
    let err = SqsQueue::new(client, missing).send("x", Duration::ZERO).await.unwrap_err();
    assert!(matches!(err, QueueError::Config { operation: "SendMessage", .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn sqs_queue_sends_receives_deletes_and_counts() {
    let (client, retry_url, _) = moto::queues(5).await;
    let queue = SqsQueue::new(client, retry_url);
    queue.send("hello", Duration::ZERO).await.unwrap();
    queue.send("later", Duration::from_secs(60)).await.unwrap();
    assert_eq!(queue.approximate_depth().await.unwrap(), 2);
    let got = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["hello"],
        "the delayed one is not visible yet"
    );
    assert_eq!(got[0].receive_count, 1);
    queue.delete(&got[0].receipt_handle).await.unwrap();
    assert_eq!(queue.approximate_depth().await.unwrap(), 1);
    queue.purge().await.unwrap();
    assert_eq!(queue.approximate_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn a_message_received_too_often_is_redriven_to_the_dlq() {
    let (client, retry_url, dlq_url) = moto::queues(2).await;
    let retry = SqsQueue::new(client.clone(), retry_url);
    let dlq = SqsQueue::new(client, dlq_url);
    retry.send("poison", Duration::ZERO).await.unwrap();
    let mut receives = 0;
    for _ in 0..40 {
        if !retry.receive(1, Duration::ZERO).await.unwrap().is_empty() {
            receives += 1;
        }
        if dlq.approximate_depth().await.unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // SQS's own visibility timeout (1 s)
    }
    assert_eq!(receives, 2, "received maxReceiveCount times");
    let dead = dlq.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(dead[0].body, "poison");
}
