//! The Secrets Manager source and the secrets cache against moto's server.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shared::clock::ManualClock;
use shared::secrets::{CachedSecrets, SecretSource, SecretsError, SecretsManagerSource};
use sim::moto;

fn cache(client: aws_sdk_secretsmanager::Client, clock: Arc<ManualClock>) -> CachedSecrets {
    CachedSecrets::new(Arc::new(SecretsManagerSource::new(client)), clock, Duration::from_secs(300))
}

#[tokio::test]
async fn warm_reads_do_not_ask_secrets_manager_again_until_max_age() {
    let (client, id) = moto::secret(r#"{"token":"first-token"}"#).await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let secrets = cache(client.clone(), clock.clone());
    assert_eq!(secrets.pagerduty_token(&id).await.unwrap().expose(), "first-token");
    client.put_secret_value().secret_id(&id).secret_string(r#"{"token":"second-token"}"#).send().await.unwrap();
    clock.advance(chrono::Duration::seconds(299));
    assert_eq!(secrets.pagerduty_token(&id).await.unwrap().expose(), "first-token", "served from the cache");
    clock.advance(chrono::Duration::seconds(2));
    assert_eq!(secrets.pagerduty_token(&id).await.unwrap().expose(), "second-token", "re-read after max age");
}

#[tokio::test]
async fn invalidate_forces_a_fresh_read_after_a_rotation() {
    let (client, id) = moto::secret(r#"{"current":"old-key","previous":null}"#).await;
    let secrets = cache(client.clone(), Arc::new(ManualClock::new(Utc::now())));
    assert_eq!(secrets.webhook_secrets(&id).await.unwrap().iter().count(), 1);
    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(r#"{"current":"new-key","previous":"old-key"}"#)
        .send()
        .await
        .unwrap();
    secrets.invalidate(&id);
    let rotated = secrets.inbound_secrets(&id).await.unwrap();
    assert_eq!(rotated.iter().map(|s| s.expose()).collect::<Vec<_>>(), vec!["new-key", "old-key"]);
}

#[tokio::test]
async fn malformed_secret_names_the_secret_and_key_never_the_value() {
    let (client, id) = moto::secret(r#"{"tokn":"do-not-print-me"}"#).await;
    let secrets = cache(client, Arc::new(ManualClock::new(Utc::now())));
    let err = secrets.pagerduty_token(&id).await.unwrap_err();
    assert!(matches!(err, SecretsError::Malformed { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains(&id) && text.contains("\"token\""), "{text}");
    assert!(!text.contains("do-not-print-me"), "{text}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_secret_that_is_not_json_is_malformed_without_echoing_it() {
    let (client, id) = moto::secret("plain-text-password").await;
    let secrets = cache(client, Arc::new(ManualClock::new(Utc::now())));
    let err = secrets.webhook_secrets(&id).await.unwrap_err();
    assert!(matches!(err, SecretsError::Malformed { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("plain-text-password"), "{err}");
}

#[tokio::test]
async fn a_missing_secret_is_not_found_and_not_retried() {
    let sdk = moto::sdk_config().await;
    let source = SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&sdk));
    let err = source.fetch("no-such-secret").await.unwrap_err();
    assert!(matches!(&err, SecretsError::NotFound { id } if id == "no-such-secret"), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn the_salesforce_secret_comes_back_as_raw_json() {
    let json = r#"{"consumer_key":"ck","username":"u@example.com","private_key_pem":"-----BEGIN PRIVATE KEY-----"}"#;
    let (client, id) = moto::secret(json).await;
    let secrets = cache(client, Arc::new(ManualClock::new(Utc::now())));
    assert_eq!(secrets.salesforce_jwt(&id).await.unwrap(), json);
}

#[tokio::test]
async fn a_secret_scheduled_for_deletion_is_not_retried() {
    let (client, id) = moto::secret(r#"{"token":"t"}"#).await;
    client.delete_secret().secret_id(&id).send().await.unwrap();
    let err = SecretsManagerSource::new(client).fetch(&id).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&id), "{err}");
}
