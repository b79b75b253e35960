//! The bridge with a Scoped OAuth client in its PagerDuty token secret, end to end through the
//! `sfdc-to-pd` handler against the simulator's token endpoint and REST API.

use chrono::{Duration, Utc};
use serde_json::{Map, Value, json};
use shared::store::LinkStore;
use sim::harness::{Harness, HarnessConfig, ORG_ID};
use sim::pagerduty::PdOAuthClient;

const RULES: &str = r#"
rulesets:
  - name: SFDC > PD
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
              title: {prefix: "[Sev1] ", fields: [CaseNumber, Subject]}
"#;

const AGENT: &str = "agent@example.com";

fn app_secret() -> String {
    json!({"client_id": "sim-client", "client_secret": "sim-client-secret", "subdomain": "sim", "region": "us"})
        .to_string()
}

async fn oauth_harness() -> Harness {
    Harness::with(HarnessConfig { pagerduty_secret: Some(app_secret()), ..HarnessConfig::new(RULES) }).await
}

fn case_insert(id: &str, number: &str) -> Value {
    let at = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    let record = json!({
        "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{id}")},
        "Id": id, "CaseNumber": number, "Subject": "Checkout fails", "Priority": "Sev1", "Status": "New",
        "LastModifiedDate": at, "SystemModstamp": at,
    });
    let new: Map<String, Value> = [(id.to_string(), record)].into_iter().collect();
    json!({
        "schema": 1, "org_id": ORG_ID, "object": "Case", "operation": "insert",
        "user": {"id": "0055g00000AGENTAAA", "username": AGENT},
        "sent_at": Utc::now().to_rfc3339(), "old": null, "new": new,
    })
}

async fn linked(h: &Harness, record: &str) -> usize {
    h.store.incidents_for_record(record).await.unwrap().len()
}

/// The Authorization headers of the REST requests the simulator answered 2xx.
fn accepted_authorizations(h: &Harness) -> Vec<String> {
    h.pd.requests()
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect()
}

#[tokio::test]
async fn an_incident_is_created_with_a_bearer_app_token() {
    let h = oauth_harness().await;
    let reply = h.post_records(&case_insert("5005g00000OAUTHAAA", "00002001")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(linked(&h, "5005g00000OAUTHAAA").await, 1, "{}", reply.body);
    let create = h.pd.requests().into_iter().find(|r| r.method == "POST" && r.path == "/incidents").expect("sent");
    let auth = create.header("authorization").unwrap();
    assert!(auth.starts_with("Bearer pdus+"), "{auth}");
    assert_eq!(h.pd.token_requests(), 1);
    h.post_records(&case_insert("5005g00000OAUTHBAA", "00002002")).await;
    assert_eq!(linked(&h, "5005g00000OAUTHBAA").await, 1);
    assert_eq!(h.pd.token_requests(), 1, "the token is cached across invocations");
}

#[tokio::test]
async fn a_token_that_expires_mid_run_is_replaced_and_the_call_goes_through() {
    let h = oauth_harness().await;
    h.post_records(&case_insert("5005g00000OAUTHAAA", "00002001")).await;
    assert_eq!(linked(&h, "5005g00000OAUTHAAA").await, 1);
    let first = accepted_authorizations(&h).pop().unwrap();
    h.pd.expire_app_tokens();
    let reply = h.post_records(&case_insert("5005g00000OAUTHBAA", "00002002")).await;
    assert_eq!(linked(&h, "5005g00000OAUTHBAA").await, 1, "{}", reply.body);
    let second = accepted_authorizations(&h).pop().unwrap();
    assert_ne!(first, second, "a new token after the 401");
    assert_eq!(h.pd.token_requests(), 2);
    assert!(h.retry_queue.is_empty() && h.dlq.is_empty(), "nothing queued: the refresh is in the call");
}

#[tokio::test]
async fn a_revoked_client_fails_as_auth_and_is_queued_for_retry_not_lost() {
    let h = oauth_harness().await;
    h.post_records(&case_insert("5005g00000OAUTHAAA", "00002001")).await;
    h.pd.revoke_oauth_client("sim-client");
    let reply = h.post_records(&case_insert("5005g00000OAUTHBAA", "00002002")).await;
    assert_eq!(reply.status, 200, "the post is accepted and its work queued: {}", reply.body);
    assert_eq!(linked(&h, "5005g00000OAUTHBAA").await, 0);
    assert_eq!(h.retry_queue.len(), 1, "queued for retry: {}", reply.body);
    assert!(h.dlq.is_empty(), "not dead-lettered");
    let queued = h.retry_queue.bodies().join("\n");
    assert!(queued.contains("auth"), "classified auth: {queued}");
    assert!(queued.contains("invalid_client"), "says why: {queued}");
    // The operator fixes the app (a new client in the same secret would do too); the retry applies it.
    h.pd.set_oauth_client(PdOAuthClient {
        client_id: "sim-client".into(),
        client_secret: "sim-client-secret".into(),
        scopes: shared::pagerduty::oauth::DEFAULT_SCOPES.iter().map(|s| s.0.to_string()).collect(),
    });
    for _ in 0..10 {
        if h.retry_queue.is_empty() {
            break;
        }
        h.clock.advance(Duration::minutes(10));
        h.drain_retries(5).await;
    }
    assert_eq!(linked(&h, "5005g00000OAUTHBAA").await, 1, "applied once the client works again");
    assert!(h.dlq.is_empty());
}

#[tokio::test]
async fn a_burst_of_records_shares_one_token_fetch() {
    let h = oauth_harness().await;
    let posts: Vec<Value> =
        (0..16).map(|i| case_insert(&format!("5005g00000B{i:04}AAA"), &format!("0000{i:04}"))).collect();
    let replies = futures::future::join_all(posts.iter().map(|p| h.post_records(p))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(h.pd.incidents().len(), 16);
    assert_eq!(h.pd.token_requests(), 1, "16 concurrent invocations, one token request");
}

#[tokio::test]
async fn an_identity_outage_is_transient_and_the_work_is_applied_after_it() {
    let h = oauth_harness().await;
    h.pd.fail_next_token_requests(1);
    let reply = h.post_records(&case_insert("5005g00000OAUTHAAA", "00002001")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(linked(&h, "5005g00000OAUTHAAA").await, 0);
    let queued = h.retry_queue.bodies().join("\n");
    assert!(queued.contains("transient"), "classified transient: {queued}");
    assert!(h.dlq.is_empty());
    for _ in 0..10 {
        if h.retry_queue.is_empty() {
            break;
        }
        h.clock.advance(Duration::minutes(2));
        h.drain_retries(5).await;
    }
    assert_eq!(linked(&h, "5005g00000OAUTHAAA").await, 1, "applied once the token endpoint answers");
    assert_eq!(h.pd.token_requests(), 2);
}

#[tokio::test]
async fn an_eu_account_gets_its_token_for_the_eu_scope_only() {
    let eu_secret = |region: &str| {
        json!({"client_id": "sim-client", "client_secret": "sim-client-secret", "subdomain": "sim", "region": region})
            .to_string()
    };
    let mut config = HarnessConfig::new(RULES);
    config.pagerduty.region = "eu".into();
    config.pagerduty_secret = Some(eu_secret("eu"));
    let h = Harness::with(config).await;
    h.post_records(&case_insert("5005g00000OAUTHAAA", "00002001")).await;
    assert_eq!(linked(&h, "5005g00000OAUTHAAA").await, 1, "as_account-eu.sim");

    let mut config = HarnessConfig::new(RULES);
    config.pagerduty.region = "eu".into();
    config.pagerduty_secret = Some(eu_secret("us"));
    let h = Harness::with(config).await;
    h.post_records(&case_insert("5005g00000OAUTHAAA", "00002001")).await;
    assert_eq!(linked(&h, "5005g00000OAUTHAAA").await, 0);
    let queued = h.retry_queue.bodies().join("\n");
    assert!(queued.contains("invalid_scope") && queued.contains("region"), "says what to check: {queued}");
}
