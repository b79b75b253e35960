//! `syncctl doctor` and `syncctl setup` against the simulators and moto: each failure is reported
//! with a line that says what to fix; setup stores the signing secret and rotates it.

use std::collections::HashMap;

use adapters::dynamodb::DynamoStore;
use serde_json::json;
use shared::config::Config;
use shared::store::RulesStore;
use sim::moto;
use sim::pagerduty::{PagerdutySim, PdSimConfig};
use sim::salesforce::{SalesforceSim, SfSimConfig, test_keys};
use syncctl::commands::doctor::{Check, diagnose};
use syncctl::commands::setup::pagerduty_webhook;

const WEBHOOK_URL: &str = "https://abc123.execute-api.us-east-1.amazonaws.com/pagerduty/webhook";

struct World {
    pd: PagerdutySim,
    _sf: SalesforceSim,
    config: Config,
    sdk: aws_config::SdkConfig,
    secrets: aws_sdk_secretsmanager::Client,
}

async fn world(jwt_key: &str) -> World {
    let pd = PagerdutySim::start(PdSimConfig::default()).await;
    let sf = SalesforceSim::start(SfSimConfig::default()).await;
    let sdk = moto::sdk_config().await;
    let (dynamo, table) = moto::table().await;
    DynamoStore::new(dynamo, &table)
        .put_rules(include_str!("../../../events/rules.example.yaml"), "test", chrono::Utc::now())
        .await
        .unwrap();
    let (_, retry, dlq) = moto::queues(5).await;
    let (secrets, token) = moto::secret(r#"{"token": "sim-token"}"#).await;
    let (_, webhook) = moto::secret(r#"{"current": "REPLACE_BY_SYNCCTL_SETUP", "previous": null}"#).await;
    let jwt =
        json!({"consumer_key": "sim-consumer-key", "username": "integration@example.com", "private_key_pem": jwt_key});
    let (_, jwt) = moto::secret(&jwt.to_string()).await;
    let (_, inbound) = moto::secret(r#"{"current": "inbound-key"}"#).await;
    let vars: HashMap<String, String> = [
        ("TABLE_NAME", table),
        ("RETRY_QUEUE_URL", retry),
        ("DLQ_URL", dlq),
        ("PAGERDUTY_API_BASE", pd.base_url()),
        ("PAGERDUTY_FROM_EMAIL", "bridge@example.com".into()),
        ("PAGERDUTY_TOKEN_SECRET_ID", token),
        ("PAGERDUTY_WEBHOOK_SECRET_ID", webhook),
        ("SALESFORCE_LOGIN_URL", sf.base_url()),
        ("SALESFORCE_JWT_SECRET_ID", jwt),
        ("SALESFORCE_INBOUND_SECRET_ID", inbound),
        ("SALESFORCE_ORG_ID", "00D5g0000SIMORGEQ5".into()),
        ("SALESFORCE_INTEGRATION_USER", "integration@example.com".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    World { pd, _sf: sf, config: Config::from_map(&vars).unwrap(), sdk, secrets }
}

fn failures(checks: &[Check]) -> Vec<(&'static str, String)> {
    checks.iter().filter_map(|c| c.result.as_ref().err().map(|e| (c.name, e.clone()))).collect()
}

#[tokio::test]
async fn setup_stores_the_secret_and_a_second_setup_rotates_it_then_doctor_is_happy() {
    let w = world(test_keys().private_key_pem).await;
    let (first, rotated) =
        pagerduty_webhook(&w.config, &w.sdk, WEBHOOK_URL, &shared::pagerduty::SubscriptionFilter::Account)
            .await
            .unwrap();
    assert!(!rotated, "the placeholder is not kept as a previous secret");
    let table = adapters::dynamodb::DynamoStore::from_conf(&w.sdk, &w.config.store.table_name);
    let watched = shared::store::CursorStore::watched_subscription(&table).await.unwrap();
    assert_eq!(watched.as_deref(), Some(first.as_str()), "recorded for the reconcile watchdog");
    let stored = |w: &World| {
        let client = w.secrets.clone();
        let id = w.config.pagerduty.webhook_secret_id.clone();
        async move {
            let text =
                client.get_secret_value().secret_id(id).send().await.unwrap().secret_string().unwrap().to_string();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        }
    };
    let after_first = stored(&w).await;
    assert!(after_first["current"].as_str().unwrap().len() > 8);
    let (second, rotated) =
        pagerduty_webhook(&w.config, &w.sdk, WEBHOOK_URL, &shared::pagerduty::SubscriptionFilter::Account)
            .await
            .unwrap();
    assert!(rotated);
    assert_ne!(first, second);
    let after_second = stored(&w).await;
    assert_eq!(after_second["previous"], after_first["current"], "the previous secret is kept for the change-over");
    assert_ne!(after_second["current"], after_first["current"]);

    let checks = diagnose(&w.config, &w.sdk, Some(WEBHOOK_URL)).await;
    assert!(failures(&checks).is_empty(), "{:?}", failures(&checks));
    assert_eq!(checks.len(), 10);
    assert!(checks.iter().any(|c| c.name == "Salesforce API usage"));
}

#[tokio::test]
async fn doctor_reports_a_bad_token_and_a_bad_jwt_key() {
    let mut w = world(test_keys().other_private_key_pem).await;
    let (client, bad_token) = moto::secret(r#"{"token": "not-a-valid-token"}"#).await;
    drop(client);
    w.config.pagerduty.token_secret_id = bad_token;
    let found = failures(&diagnose(&w.config, &w.sdk, Some(WEBHOOK_URL)).await);
    let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
    assert!(names.contains(&"PagerDuty token and From user"), "{found:?}");
    assert!(names.contains(&"Salesforce JWT login"), "{found:?}");
    assert!(!names.contains(&"Salesforce API usage"), "no usage check without a token");
    let jwt = &found.iter().find(|(n, _)| *n == "Salesforce JWT login").unwrap().1;
    assert!(jwt.contains("invalid_grant"), "{jwt}");
    assert!(!jwt.contains("PRIVATE KEY"), "{jwt}");
}

#[tokio::test]
async fn doctor_reports_a_disabled_subscription_and_a_missing_table() {
    let mut w = world(test_keys().private_key_pem).await;
    let (id, _) = pagerduty_webhook(&w.config, &w.sdk, WEBHOOK_URL, &shared::pagerduty::SubscriptionFilter::Account)
        .await
        .unwrap();
    let disabled = reqwest::Client::new()
        .put(format!("{}/webhook_subscriptions/{id}", w.pd.base_url()))
        .header("Authorization", "Token token=sim-token")
        .header("Accept", "application/vnd.pagerduty+json;version=2")
        .header("Content-Type", "application/json")
        .json(&json!({"webhook_subscription": {"active": false}}))
        .send()
        .await
        .unwrap();
    assert!(disabled.status().is_success(), "{}", disabled.text().await.unwrap());
    w.config.store.table_name = "no-such-table".into();
    let found = failures(&diagnose(&w.config, &w.sdk, Some(WEBHOOK_URL)).await);
    let subscription = &found.iter().find(|(n, _)| *n == "PagerDuty webhook subscription").expect("reported").1;
    assert!(subscription.contains("disabled"), "{subscription}");
    let table = &found.iter().find(|(n, _)| *n == "DynamoDB table and rules").expect("reported").1;
    assert!(table.contains("no-such-table"), "{table}");
}

#[tokio::test]
async fn syncctl_reconcile_dry_run_prints_what_differs_and_a_run_it_queues_repairs_it() {
    use shared::model::{Link, RecordRef};
    use shared::reconcile::{Quiet, Repair, SubscriptionCheck};
    use shared::store::LinkStore;
    use syncctl::commands::reconcile::{dry_run, render, request};
    let w = world(test_keys().private_key_pem).await;
    let (subscription, _) =
        pagerduty_webhook(&w.config, &w.sdk, WEBHOOK_URL, &shared::pagerduty::SubscriptionFilter::Account)
            .await
            .unwrap();
    w.pd.disable_webhook_subscription(&subscription);
    let http = std::sync::Arc::new(adapters::http::ReqwestTransport::new().unwrap());
    let oncall = shared::pagerduty::client::PagerdutyClient::new(
        http,
        url::Url::parse(&w.pd.base_url()).unwrap(),
        "sim-token".into(),
        "oncall@example.com".into(),
    );
    let incident = oncall
        .create_incident(&shared::pagerduty::requests::CreateIncident {
            title: "Checkout down".into(),
            service_id: "PSVC001".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let case = w._sf.insert_record("Case", json!({"Subject": "Checkout down", "Status": "New"}));
    let table = DynamoStore::from_conf(&w.sdk, &w.config.store.table_name);
    let record = RecordRef { object: "Case".into(), id: case.clone().into() };
    table
        .put_link(&Link {
            incident_id: incident.id.clone().into(),
            record,
            created_at: chrono::Utc::now(),
            created_by_rule: None,
        })
        .await
        .unwrap();
    oncall.acknowledge(&incident.id).await.unwrap();
    // Past the run's quiet seconds (the CLI runs on the wall clock).
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;

    let dry = dry_run(&w.config, &w.sdk, None, 100, &Quiet).await.unwrap();
    assert_eq!(dry.subscription, SubscriptionCheck::WouldReEnable, "{dry:#?}");
    assert_eq!(dry.drift(), 1, "{dry:#?}");
    assert_eq!(dry.differences[0].repair, Repair::WouldRepair);
    assert_eq!(w._sf.record("Case", &case).unwrap()["Status"], "New", "a dry run writes nothing");
    let printed = render(&dry);
    assert!(printed.contains("would repair") && printed.contains("Status = \"Working\""), "{printed}");

    // A run that repairs is posted to the retry queue; the retry function (here, on moto's queue,
    // wired from the same configuration) runs it, and the command reads the report off its
    // audit entry.
    use shared::retry::queue::Queue;
    let sqs = aws_sdk_sqs::Client::new(&w.sdk);
    let queue = adapters::sqs::SqsQueue::new(sqs, &w.config.queues.retry_queue_url);
    let trigger = shared::reconcile::trigger::Trigger::by_hand(100, None, "syncctl-reconcile-test");
    let retry_function = async {
        let ctx = adapters::wiring::build(&w.config, &w.sdk).unwrap();
        let runner = shared::reconcile::trigger::Runner { cursors: std::sync::Arc::new(table.clone()) };
        for _ in 0..50 {
            let received = queue.receive(10, std::time::Duration::from_millis(200)).await.unwrap();
            if received.is_empty() {
                continue;
            }
            let messages = received
                .iter()
                .map(|m| shared::handler::retry::Message {
                    message_id: m.message_id.clone(),
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                })
                .collect();
            let deadline = Some(chrono::Utc::now() + chrono::Duration::seconds(60));
            let failed =
                shared::handler::retry::handle_batch_reconciling(&ctx, Some(&runner), messages, deadline).await;
            assert!(failed.is_empty());
            for m in received {
                queue.delete(&m.receipt_handle).await.unwrap();
            }
            return;
        }
        panic!("no reconcile message reached the retry queue");
    };
    let wait = std::time::Duration::from_secs(30);
    let poll = std::time::Duration::from_millis(200);
    let (done, ()) = tokio::join!(request(&queue, &table, &trigger, wait, poll, &Quiet), retry_function);
    let done = done.unwrap().expect("the run's report, read off its audit entry");
    assert_eq!(done.repaired(), 1, "{done:#?}");
    assert_eq!(done.subscription, SubscriptionCheck::ReEnabled);
    assert_eq!(w._sf.record("Case", &case).unwrap()["Status"], "Working");
    assert!(w.pd.webhook_subscriptions().iter().all(|s| s["active"] == true));
    assert!(render(&done).contains("repair applied"), "{}", render(&done));
}

/// A rotation that cannot read the current signing secret must not write over it: the live
/// subscription signs with it, and dropping it (stored as "previous") would fail every delivery
/// until PagerDuty disables the subscription.
#[tokio::test]
async fn a_rotation_that_cannot_read_the_current_secret_changes_nothing() {
    use sim::fault_proxy::{AwsService, FaultProxy};
    let (_, id) = moto::secret(r#"{"current": "live-secret", "previous": null}"#).await;
    let proxy = FaultProxy::start(&moto::url().await, AwsService::SecretsManager).await;
    let sdk = moto::sdk_config().await.to_builder().endpoint_url(proxy.url()).build();
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    // Every attempt of the SDK's retries.
    proxy.fail_next(3, sim::faults::FaultKind::ServerError);

    let result = syncctl::commands::setup::rotate(&client, &id, "new-secret").await;

    assert!(result.is_err(), "refused: {result:?}");
    let stored = client.get_secret_value().secret_id(&id).send().await.unwrap();
    let stored: serde_json::Value = serde_json::from_str(stored.secret_string().unwrap()).unwrap();
    assert_eq!(stored["current"], "live-secret", "unchanged: {stored}");
}

/// The world with its PagerDuty token secret holding OAuth client `client_id`.
async fn with_app_secret(w: &mut World, client_id: &str, client_secret: &str) {
    let secret = json!({"client_id": client_id, "client_secret": client_secret, "subdomain": "sim"});
    let (_, id) = moto::secret(&secret.to_string()).await;
    w.config.pagerduty.token_secret_id = id;
    w.config.pagerduty.identity_base = url::Url::parse(&w.pd.base_url()).unwrap();
}

#[tokio::test]
async fn doctor_says_it_found_an_oauth_app_and_that_its_scopes_cover_the_rules() {
    let mut w = world(test_keys().private_key_pem).await;
    with_app_secret(&mut w, "sim-client", "sim-client-secret").await;
    let checks = diagnose(&w.config, &w.sdk, Some(WEBHOOK_URL)).await;
    let result = |name: &str| checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name}")).result.clone();
    let kind = result("PagerDuty token secret").unwrap();
    assert!(kind.contains("Scoped OAuth app") && kind.contains("as_account-us.sim"), "{kind}");
    let scopes = result("PagerDuty app token and scopes").unwrap();
    assert!(scopes.contains("cover the bridge and the rules"), "{scopes}");
    assert!(result("PagerDuty token and From user").is_ok(), "the app token is accepted");
    assert!(!checks.iter().any(|c| c.result.as_ref().is_err_and(|e| e.contains("sim-client-secret"))));
}

#[tokio::test]
async fn doctor_lists_the_scopes_an_app_lacks_and_refuses_an_unknown_client() {
    let mut w = world(test_keys().private_key_pem).await;
    let read_only = ["incidents.read", "users.read", "webhook_subscriptions.read", "webhook_subscriptions.write"];
    w.pd.set_oauth_client(sim::pagerduty::PdOAuthClient {
        client_id: "narrow".into(),
        client_secret: "narrow-secret".into(),
        scopes: read_only.iter().map(|s| s.to_string()).collect(),
    });
    with_app_secret(&mut w, "narrow", "narrow-secret").await;
    let found = failures(&diagnose(&w.config, &w.sdk, Some(WEBHOOK_URL)).await);
    let scopes = &found.iter().find(|(n, _)| *n == "PagerDuty app token and scopes").expect("reported").1;
    assert!(scopes.contains("missing scope incidents.write (needed by create_incident"), "{scopes}");
    assert!(scopes.contains("missing scope priorities.read"), "{scopes}");
    assert!(!scopes.contains("users.read"), "granted: {scopes}");

    with_app_secret(&mut w, "nobody", "wrong").await;
    let found = failures(&diagnose(&w.config, &w.sdk, Some(WEBHOOK_URL)).await);
    let scopes = &found.iter().find(|(n, _)| *n == "PagerDuty app token and scopes").expect("reported").1;
    assert!(scopes.contains("invalid_client") && scopes.contains("App Registration"), "{scopes}");
}

#[tokio::test]
async fn setup_stores_an_oauth_client_or_an_api_key_once_pagerduty_accepts_it() {
    use shared::secrets::Secret;
    use syncctl::commands::setup::pagerduty_credential::{NewCredential, store};
    let mut w = world(test_keys().private_key_pem).await;
    w.config.pagerduty.identity_base = url::Url::parse(&w.pd.base_url()).unwrap();
    let stored = |w: &World| {
        let (client, id) = (w.secrets.clone(), w.config.pagerduty.token_secret_id.clone());
        async move {
            let text =
                client.get_secret_value().secret_id(id).send().await.unwrap().secret_string().unwrap().to_string();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        }
    };
    let app = |secret: &str| NewCredential::App {
        client_id: "sim-client".into(),
        client_secret: Secret::new(secret),
        subdomain: "sim".into(),
        region: "us".into(),
        scopes: Some("incidents.read incidents.write users.read".into()),
    };
    let err = store(&w.config, &w.sdk, &app("wrong")).await.unwrap_err();
    assert!(err.contains("invalid_client") && err.contains("nothing was stored"), "{err}");
    assert_eq!(stored(&w).await["token"], "sim-token", "the old credential is untouched");

    let done = store(&w.config, &w.sdk, &app("sim-client-secret")).await.unwrap();
    assert!(done.contains("Scoped OAuth client sim-client"), "{done}");
    let secret = stored(&w).await;
    assert_eq!(secret["client_id"], "sim-client");
    assert_eq!(secret["scopes"], json!(["incidents.read", "incidents.write", "users.read"]));
    let checks = diagnose(&w.config, &w.sdk, Some(WEBHOOK_URL)).await;
    let kind = checks.iter().find(|c| c.name == "PagerDuty token secret").unwrap().result.clone().unwrap();
    assert!(kind.contains("Scoped OAuth app"), "doctor reads what setup stored: {kind}");

    let done = store(&w.config, &w.sdk, &NewCredential::ApiKey(Secret::new("sim-token"))).await.unwrap();
    assert!(done.contains("REST API key"), "{done}");
    assert_eq!(stored(&w).await, json!({"token": "sim-token"}));
}
