//! syncctl run as an operator runs it, with nothing but `--stack-name`: every setting read from
//! a CloudFormation stack in moto (the template's output and parameter names), `status` and
//! `doctor` against moto and the simulators, errors for people, and audit's time window.

use std::process::{Command, Output};

use adapters::dynamodb::DynamoStore;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use shared::model::{AuditEntry, Direction, Outcome};
use shared::retry::queue::Queue;
use shared::store::{AuditLog, BreakerRecord, BreakerState, BreakerStore, RulesStore};
use sim::moto;
use sim::pagerduty::{PagerdutySim, PdSimConfig};
use sim::salesforce::{SalesforceSim, SfSimConfig, test_keys};

/// Runs syncctl with only AWS's own variables (and `extra`).
fn syncctl(endpoint: &str, extra: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_syncctl"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    for (k, v) in extra {
        command.env(k, v);
    }
    command.output().expect("run syncctl")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

fn line<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no line {name}: {report}"))
}

/// A stack with the template's output and parameter names, pointing at the given resources.
async fn create_stack(outputs: &[(&str, String)], parameters: &[(&str, String)]) -> String {
    let mut template = json!({"AWSTemplateFormatVersion": "2010-09-09", "Parameters": {}, "Outputs": {},
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}}});
    for (name, value) in outputs {
        let param = format!("Out{name}");
        template["Parameters"][&param] = json!({"Type": "String"});
        template["Outputs"][*name] = json!({"Value": {"Ref": param}});
        let _ = value;
    }
    for (name, _) in parameters {
        template["Parameters"][*name] = json!({"Type": "String"});
    }
    let cfn = aws_sdk_cloudformation::Client::new(&moto::sdk_config().await);
    let name = moto::unique("pd-sfdc-sync");
    let mut create = cfn.create_stack().stack_name(&name).template_body(template.to_string());
    for (key, value) in
        outputs.iter().map(|(k, v)| (format!("Out{k}"), v)).chain(parameters.iter().map(|(k, v)| (k.to_string(), v)))
    {
        create = create.parameters(
            aws_sdk_cloudformation::types::Parameter::builder().parameter_key(key).parameter_value(value).build(),
        );
    }
    create.send().await.expect("create stack in moto");
    name
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_with_only_a_stack_name_sees_status_doctor_and_an_incident_timeline() {
    let endpoint = moto::url().await;
    let pd = PagerdutySim::start(PdSimConfig::default()).await;
    let sf = SalesforceSim::start(SfSimConfig::default()).await;
    let (dynamo, table) = moto::table().await;
    let store = DynamoStore::new(dynamo, &table);
    store.put_rules(include_str!("../../events/rules.example.yaml"), "test", Utc::now()).await.unwrap();
    let (sqs, retry, dlq) = moto::queues(5).await;
    let (_, token) = moto::secret(r#"{"token": "sim-token"}"#).await;
    let (_, webhook) = moto::secret(r#"{"current": "REPLACE_BY_SYNCCTL_SETUP", "previous": null}"#).await;
    let jwt = json!({"consumer_key": "sim-consumer-key", "username": "integration@example.com",
        "private_key_pem": test_keys().private_key_pem});
    let (_, jwt) = moto::secret(&jwt.to_string()).await;
    let (_, inbound) = moto::secret(r#"{"current": "inbound-key"}"#).await;
    let (_, outbound) = moto::secret(r#"{"current": "om-token"}"#).await;
    let webhook_url = "https://abc123.execute-api.us-east-1.amazonaws.com/pagerduty/webhook";
    let stack = create_stack(
        &[
            ("TableName", table.clone()),
            ("RetryQueueUrl", retry.clone()),
            ("DeadLetterQueueUrl", dlq.clone()),
            ("PagerDutyApiBase", pd.base_url()),
            ("PagerDutyTokenSecretArn", token),
            ("PagerDutyWebhookSecretArn", webhook),
            ("SalesforceJwtSecretArn", jwt),
            ("SalesforceInboundSecretArn", inbound),
            ("SalesforceOutboundMessageSecretArn", outbound),
            ("PagerDutyWebhookUrl", webhook_url.into()),
        ],
        &[
            ("PagerDutyFromEmail", "bridge@example.com".into()),
            ("SalesforceLoginUrl", sf.base_url()),
            ("SalesforceOrgId", "00D5g0000SIMORGEQ5".into()),
            ("SalesforceIntegrationUser", "integration@example.com".into()),
        ],
    )
    .await;
    let run = |extra: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["--stack-name", stack.as_str()];
        all.extend_from_slice(args);
        syncctl(&endpoint, extra, &all)
    };

    // Nothing recorded yet: the subscription is unknown, no event has arrived.
    let out = run(&[], &["status", "--json"]);
    let report = json_of(&out);
    assert_eq!(report["context"]["account"], "123456789012", "the account in use: {report}");
    assert_eq!(line(&report, "PagerDuty webhook subscription")["status"], "skipped");
    assert!(line(&report, "PagerDuty webhook subscription")["detail"].as_str().unwrap().contains("unknown: run"));
    assert_eq!(line(&report, "breaker salesforce")["status"], "ok");
    assert_eq!(line(&report, "Salesforce API usage")["status"], "ok", "{report}");
    assert_eq!(line(&report, "last event pagerduty_webhook")["status"], "problem");
    assert_eq!(out.status.code(), Some(1), "no event accepted is a problem: {report}");

    // setup takes the URL from the stack and records the subscription.
    let out = run(&[], &["setup", "pagerduty-webhook", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let subscription = json_of(&out)["subscription_id"].as_str().unwrap().to_string();
    assert_eq!(json_of(&out)["url"], webhook_url);

    // PagerDuty disables the subscription (deliveries kept failing): a dry run says what a run
    // would do and changes nothing; a run enables it again.
    pd.disable_webhook_subscription(&subscription);
    let out = run(&[], &["reconcile", "--dry-run", "--json"]);
    assert_eq!(json_of(&out)["subscription"]["status"], "would_re_enable", "{}", text(&out));
    assert_eq!(json_of(&out)["dry_run"], true);
    // A run that repairs goes to the retry function, through the retry queue (no function runs
    // here: --wait 0 posts it and returns).
    let out = run(&[], &["reconcile", "--json", "--wait", "0"]);
    let queued = json_of(&out);
    assert_eq!(queued["queued"], true, "{}", text(&out));
    assert_eq!(out.status.code(), Some(0), "{queued}");
    let posted =
        adapters::sqs::SqsQueue::new(sqs.clone(), &retry).receive(10, std::time::Duration::from_secs(1)).await.unwrap();
    let trigger = shared::reconcile::trigger::Trigger::parse(&posted[0].body).expect("a reconcile message");
    assert_eq!(trigger.correlation_id.as_deref(), queued["correlation_id"].as_str(), "{trigger:?}");
    assert_eq!(trigger.max_api_calls, Some(shared::reconcile::DEFAULT_MAX_API_CALLS));
    adapters::sqs::SqsQueue::new(sqs.clone(), &retry).delete(&posted[0].receipt_handle).await.unwrap();
    // No retry function runs here: enable the subscription as its run would.
    let http = std::sync::Arc::new(adapters::http::ReqwestTransport::new().unwrap());
    let bridge = shared::pagerduty::client::PagerdutyClient::new(
        http,
        url::Url::parse(&pd.base_url()).unwrap(),
        "sim-token".into(),
        "bridge@example.com".into(),
    );
    bridge.enable_webhook_subscription(&subscription).await.unwrap();
    let out = run(&[], &["reconcile", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", text(&out));
    assert!(text(&out).contains("2026-12-03T08:00:00Z"), "says what to type: {}", text(&out));

    // Events in both directions, a dead letter, an open breaker.
    for (direction, event, at) in [
        (Direction::PagerdutyToSalesforce, "E-PD-1", Utc::now() - Duration::minutes(30)),
        (Direction::SalesforceToPagerduty, "sf:Case:500:1", Utc::now() - Duration::minutes(5)),
        (Direction::SalesforceToPagerduty, "om:04l5g00000OMNTF1", Utc::now() - Duration::hours(1)),
    ] {
        let mut entry = AuditEntry::new(at, direction, "corr", event, Outcome::Applied);
        entry.incident_ids = vec!["PINC1".into()];
        store.append(&entry).await.unwrap();
    }
    let mut old = AuditEntry::new(
        Utc::now() - Duration::hours(5),
        Direction::PagerdutyToSalesforce,
        "c",
        "E-OLD",
        Outcome::Skipped,
    );
    old.incident_ids = vec!["PINC1".into()];
    store.append(&old).await.unwrap();
    shared::retry::queue::Queue::send(
        &adapters::sqs::SqsQueue::new(sqs.clone(), &dlq),
        "not an envelope",
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    let open = BreakerRecord {
        service: "salesforce".into(),
        state: BreakerState::Open,
        failures: 5,
        opened_at: Some(Utc::now()),
        reason: Some("Salesforce timed out".into()),
        version: 0,
    };
    assert!(store.put_breaker(&open, None).await.unwrap());

    let out = run(&[], &["status", "--json"]);
    let report = json_of(&out);
    assert_eq!(line(&report, "PagerDuty webhook subscription")["status"], "ok", "{report}");
    assert_eq!(line(&report, "PagerDuty webhook subscription")["data"]["id"], subscription.as_str());
    assert_eq!(line(&report, "breaker salesforce")["status"], "problem");
    assert_eq!(line(&report, "breaker salesforce")["data"]["state"], "open");
    assert_eq!(line(&report, "dead-letter queue")["data"]["depth"], 1);
    assert!(line(&report, "dead-letter queue")["detail"].as_str().unwrap().contains("retention"), "{report}");
    assert_eq!(line(&report, "last event pagerduty_webhook")["data"]["event_id"], "E-PD-1");
    assert_eq!(line(&report, "last event apex_trigger")["data"]["event_id"], "sf:Case:500:1");
    assert_eq!(line(&report, "last event outbound_message")["data"]["event_id"], "om:04l5g00000OMNTF1", "per route");
    assert_eq!(out.status.code(), Some(1));
    let screen = text(&run(&[], &["status"]));
    assert!(screen.contains("FAIL  breaker salesforce") && screen.contains("OPEN since"), "{screen}");

    // One source down: its line says why, the others still report, the exit code says so.
    let current = store.get_breaker("salesforce").await.unwrap().unwrap();
    let closed = BreakerRecord { state: BreakerState::Closed, failures: 0, opened_at: None, reason: None, ..current };
    assert!(store.put_breaker(&closed, Some(closed.version)).await.unwrap());
    assert_eq!(store.get_breaker("salesforce").await.unwrap().unwrap().state, BreakerState::Closed);
    store
        .put_breaker(&BreakerRecord { state: BreakerState::Closed, version: 1, ..open.clone() }, Some(1))
        .await
        .unwrap();
    adapters::sqs::SqsQueue::new(sqs, &dlq).purge().await.unwrap();
    let out = run(&[("SALESFORCE_LOGIN_URL", "http://127.0.0.1:9")], &["status", "--json"]);
    let report = json_of(&out);
    assert_eq!(line(&report, "Salesforce API usage")["status"], "unavailable", "{report}");
    assert_eq!(line(&report, "breaker pagerduty")["status"], "ok");
    assert_eq!(line(&report, "breaker salesforce")["status"], "ok", "{report}");
    assert_eq!(out.status.code(), Some(3), "only an unreachable source: {report}");

    // Explicit settings win over the stack's.
    let out = run(&[], &["--dlq-url", &retry, "dlq", "list", "--json"]);
    assert_eq!(json_of(&out)["count"], 0, "{}", text(&out));

    // The timeline of a window, oldest first, bounded; and one incident's.
    let out = run(&[], &["audit", "--since", "2h", "--json"]);
    let audit = json_of(&out);
    let events: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(events, ["om:04l5g00000OMNTF1", "E-PD-1", "sf:Case:500:1"], "a dry run is not audited: {audit}");
    assert!(audit["read"].as_str().unwrap().contains("AUDIT#DAY#"));
    let out = run(&[], &["audit", "--incident", "PINC1", "--since", "6h", "--until", "1h"]);
    let table = text(&out);
    assert!(table.contains("E-OLD") && !table.contains("E-PD-1"), "{table}");
    let out = run(&[], &["audit", "--since", "6h", "--limit", "1", "--json"]);
    assert_eq!((json_of(&out)["count"].clone(), json_of(&out)["truncated"].clone()), (json!(1), json!(true)));

    // doctor with the stack: every check passes but the subscription URL is ours.
    let out = run(&[], &["doctor", "--json"]);
    let report = json_of(&out);
    assert_eq!(line(&report, "settings")["status"], "ok", "{report}");
    assert_eq!(line(&report, "stack")["status"], "ok");
    assert_eq!(line(&report, "PagerDuty webhook subscription")["status"], "ok", "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_lists_every_missing_setting_at_once_and_errors_speak_to_people() {
    let endpoint = moto::url().await;
    let out = syncctl(&endpoint, &[], &["doctor", "--json"]);
    let report = json_of(&out);
    let settings = line(&report, "settings");
    assert_eq!(settings["data"].as_array().unwrap().len(), 11, "all eleven at once: {report}");
    assert!(settings["detail"].as_str().unwrap().contains("--stack-name"));
    assert_eq!(line(&report, "AWS account and region")["status"], "ok");
    assert_eq!(line(&report, "retry queue")["status"], "skipped");
    assert_eq!(out.status.code(), Some(1));

    let out = syncctl(&endpoint, &[], &["--stack-name", "no-such-stack", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("stack no-such-stack does not exist"), "{}", text(&out));

    let out = syncctl(&endpoint, &[], &["dlq", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("DLQ_URL (or --dlq-url) is not set"), "{}", text(&out));

    let mut no_credentials = Command::new(env!("CARGO_BIN_EXE_syncctl"));
    no_credentials
        .args(["dlq", "list"])
        .env_clear()
        .env("HOME", std::env::temp_dir().join("syncctl-no-home"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq");
    let out = no_credentials.output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("no AWS credentials found"), "{}", text(&out));
    let out = no_credentials.env_remove("AWS_REGION").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("region not set"), "{}", text(&out));

    // An unreachable AWS endpoint: words and exit 3, no SDK dump.
    let out = syncctl("http://127.0.0.1:9", &[("DLQ_URL", "http://127.0.0.1:9/1/dlq")], &["dlq", "list", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let error = &json_of(&out)["error"];
    assert_eq!(error["kind"], "unavailable");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("Connection refused") && !message.contains("DispatchFailure"),
        "the cause, no dump: {error}"
    );
    let out = syncctl("http://127.0.0.1:9", &[], &["--stack-name", "prod", "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("CloudFormation (DescribeStacks prod) is unavailable: dispatch failure"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("ConnectorError"), "{}", text(&out));
}
