//! The Secrets Manager source and the secrets cache against moto's server, and what forged
//! requests cost in Secrets Manager reads (counted by a proxy in front of moto).

use std::sync::Arc;
use std::time::Duration;

use adapters::secrets_manager::SecretsManagerSource;
use chrono::Utc;
use serde_json::json;
use shared::clock::{Clock, ManualClock};
use shared::secrets::{CachedSecrets, MISMATCH_REREAD_INTERVAL, SecretSource, SecretsError};
use sim::fault_proxy::{AwsService, FaultProxy};
use sim::fixtures::PD_CASE_RULES;
use sim::harness::{Harness, HarnessConfig, ORG_ID, delivery, incident_data};
use sim::moto;
use sim::pagerduty::sign_v1;
use sim::salesforce::sign_trigger;

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
async fn a_mismatch_rereads_a_rotated_secret_once_the_interval_is_over() {
    let (client, id) = moto::secret(r#"{"current":"old-key","previous":null}"#).await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let secrets = cache(client.clone(), clock.clone());
    assert_eq!(secrets.webhook_secrets(&id).await.unwrap().iter().count(), 1);
    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(r#"{"current":"new-key","previous":"old-key"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(secrets.reread_after_mismatch(&id).await.unwrap().expose(), r#"{"current":"old-key","previous":null}"#);
    clock.advance(chrono::Duration::from_std(MISMATCH_REREAD_INTERVAL).unwrap());
    secrets.reread_after_mismatch(&id).await.unwrap();
    let rotated = secrets.inbound_secrets(&id).await.unwrap();
    assert_eq!(rotated.iter().map(|s| s.expose()).collect::<Vec<_>>(), vec!["new-key", "old-key"]);
}

/// The harness with its signing secrets in Secrets Manager on moto, read through a proxy that
/// counts GetSecretValue (and every other Secrets Manager call: the bridge makes no other).
async fn counted() -> (Harness, FaultProxy, aws_sdk_secretsmanager::Client) {
    let proxy = FaultProxy::start(&moto::url().await, AwsService::SecretsManager).await;
    let mut config = HarnessConfig::new(PD_CASE_RULES);
    config.secrets_manager = true;
    config.aws_endpoint = Some(proxy.url().to_string());
    let h = Harness::with(config).await;
    (h, proxy, aws_sdk_secretsmanager::Client::new(&moto::sdk_config().await))
}

async fn rotate(client: &aws_sdk_secretsmanager::Client, id: &str, value: serde_json::Value) {
    client.put_secret_value().secret_id(id).secret_string(value.to_string()).send().await.unwrap();
}

const FORGED: usize = 200;

#[tokio::test]
async fn forged_webhooks_cost_one_secret_read_not_one_each_and_a_rotation_is_still_picked_up() {
    let (h, proxy, client) = counted().await;
    let body = delivery("EF1", "incident.triggered", Utc::now(), incident_data("PINCF1", "triggered"));
    let forged = || vec![("x-pagerduty-signature".to_string(), sign_v1("not-the-secret", body.as_bytes()))];
    let replies = futures::future::join_all((0..FORGED).map(|_| h.webhook_with(&body, forged()))).await;
    assert!(replies.iter().all(|r| r.status == 401), "every forged delivery is refused");
    assert_eq!(proxy.requests(), 1, "{FORGED} forged deliveries read the secret once");

    // PagerDuty rotates the subscription's secret; the bridge's copy is older than the interval.
    rotate(&client, &h.ctx.settings.webhook_secret_id, json!({"current": "rotated-secret"})).await;
    h.clock.advance(chrono::Duration::from_std(MISMATCH_REREAD_INTERVAL).unwrap());
    let genuine = vec![("x-pagerduty-signature".to_string(), sign_v1("rotated-secret", body.as_bytes()))];
    let reply = h.webhook_with(&body, genuine).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(proxy.requests(), 2, "one re-read for the rotation");

    let replies = futures::future::join_all((0..FORGED).map(|_| h.webhook_with(&body, forged()))).await;
    assert!(replies.iter().all(|r| r.status == 401));
    assert_eq!(proxy.requests(), 2, "the flood after it reads nothing");
}

#[tokio::test]
async fn forged_trigger_posts_cost_one_secret_read_and_a_rotated_inbound_secret_is_picked_up() {
    let (h, proxy, client) = counted().await;
    let record =
        json!({"attributes": {"type": "Case"}, "Id": "5005g00000CASEFAAA", "Priority": "Sev3", "Status": "New"});
    let body = json!({
        "schema": 1, "org_id": ORG_ID, "object": "Case", "operation": "update",
        "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"}, "sent_at": Utc::now().to_rfc3339(),
        "old": {"5005g00000CASEFAAA": record}, "new": {"5005g00000CASEFAAA": record},
    })
    .to_string();
    let signed = |secret: &str| {
        let ts = h.clock.now().timestamp();
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-pdsync-timestamp".to_string(), ts.to_string()),
            ("x-pdsync-signature".to_string(), sign_trigger(secret, ts, body.as_bytes())),
        ]
    };
    let replies = futures::future::join_all((0..FORGED).map(|_| h.post_records_with(&body, signed("forged")))).await;
    assert!(replies.iter().all(|r| r.status == 401), "every forged post is refused");
    assert_eq!(proxy.requests(), 1, "{FORGED} forged posts read the secret once");

    rotate(&client, &h.ctx.settings.inbound_secret_id, json!({"current": "rotated-inbound"})).await;
    h.clock.advance(chrono::Duration::from_std(MISMATCH_REREAD_INTERVAL).unwrap());
    let reply = h.post_records_with(&body, signed("rotated-inbound")).await;
    assert_eq!(reply.status, 200, "the rotated secret is read again, well before max age: {}", reply.body);
    assert_eq!(proxy.requests(), 2);
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
