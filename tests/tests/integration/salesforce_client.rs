//! The Salesforce client (`shared::salesforce`) against the Salesforce simulator: the JWT bearer
//! flow with a real RS256 assertion, REST reads and writes, upsert, Composite with references,
//! session expiry, API usage, faults, and the inbound formats the simulated org emits.

use std::sync::Arc;
use std::time::Duration;

use adapters::http::ReqwestTransport;
use serde_json::{Map, Value, json};
use shared::class::{Class, Classify};
use shared::clock::{Clock, SystemClock};
use shared::salesforce::{
    Authenticator, JwtCredentials, OutboundMessage, SalesforceClient, SalesforceError, TriggerPost, Write, reference,
    verify_trigger_signature,
};
use shared::transport::Transport;
use sim::faults::FaultKind;
use sim::salesforce::{OutboundMessenger, SalesforceSim, SfSimConfig, TriggerPoster, test_keys};

const CASE_NUMBER_FIELD: &str = "PD_Incident_Id__c";

fn http() -> Arc<dyn Transport> {
    Arc::new(ReqwestTransport::with_client(reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()))
}

fn creds(private_key_pem: &str) -> JwtCredentials {
    JwtCredentials {
        consumer_key: "sim-consumer-key".into(),
        username: "integration@example.com".into(),
        private_key_pem: private_key_pem.into(),
    }
}

fn authenticator(sim: &SalesforceSim, private_key_pem: &str) -> Arc<Authenticator> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Arc::new(
        Authenticator::new(http(), sim.base_url(), creds(private_key_pem), clock)
            .with_audience("https://login.salesforce.com"),
    )
}

async fn setup() -> (SalesforceSim, Arc<Authenticator>, SalesforceClient) {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let auth = authenticator(&sim, test_keys().private_key_pem);
    let client = SalesforceClient::new(http(), auth.clone(), "62.0");
    (sim, auth, client)
}

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn jwt_flow_then_create_read_update_a_case() {
    let (sim, auth, client) = setup().await;
    let id =
        client.create_record("Case", &fields(json!({"Subject": "Checkout down", "Priority": "High"}))).await.unwrap();
    assert_eq!(auth.mints(), 1);

    client.update_record("Case", &id, &fields(json!({"Priority": "Low"}))).await.unwrap();
    let record = client.get_record("Case", &id, Some(&["Subject", "Priority"])).await.unwrap();
    assert_eq!(record["Subject"], "Checkout down");
    assert_eq!(record["Priority"], "Low");
    assert_eq!(auth.mints(), 1, "the token is reused");
    assert_eq!(client.api_calls(), 3);
    assert_eq!(sim.record("Case", &id).unwrap()["Priority"], "Low");
}

#[tokio::test]
async fn every_request_is_tagged_with_our_call_option() {
    let (sim, _auth, client) = setup().await;
    client.create_record("Case", &fields(json!({"Subject": "Tagged"}))).await.unwrap();
    let rest: Vec<_> = sim.requests().into_iter().filter(|r| r.path.starts_with("/services/data/")).collect();
    assert!(!rest.is_empty());
    for r in rest {
        assert_eq!(r.call_options.as_deref(), Some("client=pd-sfdc-sync"), "{}", r.path);
    }
    let changes = sim.changes();
    assert_eq!(changes.last().unwrap().call_options.as_deref(), Some("client=pd-sfdc-sync"));
}

#[tokio::test]
async fn api_usage_follows_the_org_limit_header() {
    let (sim, _auth, client) = setup().await;
    sim.set_daily_api_limit(1000);
    sim.set_api_used(899);
    client.create_record("Case", &fields(json!({"Subject": "Usage"}))).await.unwrap();
    let usage = client.api_usage().unwrap();
    assert_eq!(usage.limit, 1000);
    assert_eq!(usage.used, 900);
    assert!((usage.share() - 0.9).abs() < 1e-9);
}

#[tokio::test]
async fn exhausted_daily_limit_is_transient() {
    let (sim, _auth, client) = setup().await;
    sim.set_daily_api_limit(10);
    sim.set_api_used(10);
    let err = client.create_record("Case", &fields(json!({"Subject": "Over"}))).await.unwrap_err();
    assert_eq!(err.error_codes(), vec!["REQUEST_LIMIT_EXCEEDED"]);
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn expired_session_is_reminted_once_and_the_write_happens_once() {
    let (sim, auth, client) = setup().await;
    client.create_record("Case", &fields(json!({"Subject": "First"}))).await.unwrap();
    sim.expire_all_tokens();
    let id = client.create_record("Case", &fields(json!({"Subject": "After expiry"}))).await.unwrap();
    assert_eq!(auth.mints(), 2);
    assert_eq!(sim.record("Case", &id).unwrap()["Subject"], "After expiry");
    let created: Vec<_> = sim.records("Case").into_iter().filter(|r| r["Subject"] == "After expiry").collect();
    assert_eq!(created.len(), 1);
}

#[tokio::test]
async fn a_key_the_connected_app_does_not_know_is_an_auth_error_that_says_what_to_fix() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let auth = authenticator(&sim, test_keys().other_private_key_pem);
    let client = SalesforceClient::new(http(), auth, "62.0");
    let err = client.get_record("Case", "500000000000001AAA", None).await.unwrap_err();
    assert_eq!(err.class(), Class::Auth);
    let text = err.to_string();
    assert!(text.contains("invalid_grant"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[tokio::test]
async fn wrong_audience_is_refused_with_a_hint_about_the_login_url() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // A sandbox audience sent to a production org: the org refuses the assertion.
    let auth = Arc::new(
        Authenticator::new(http(), sim.base_url(), creds(test_keys().private_key_pem), clock)
            .with_audience("https://test.salesforce.com"),
    );
    let client = SalesforceClient::new(http(), auth, "62.0");
    let err = client.get_record("Case", "500000000000001AAA", None).await.unwrap_err();
    assert!(matches!(err, SalesforceError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("SALESFORCE_LOGIN_URL"), "{err}");
}

/// A client whose `host` resolves to the simulator, as an org's My Domain resolves to Salesforce,
/// and the login URL on that host.
fn posting_to(sim: &SalesforceSim, host: &str) -> (Arc<dyn Transport>, String) {
    let client = reqwest::Client::builder().resolve(host, sim.addr()).timeout(Duration::from_secs(5)).build().unwrap();
    let http: Arc<dyn Transport> = Arc::new(ReqwestTransport::with_client(client));
    (http, format!("http://{host}:{}", sim.addr().port()))
}

#[tokio::test]
async fn a_token_requested_from_a_my_domain_is_signed_for_login_salesforce_com() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let (http, my_domain) = posting_to(&sim, "acme.my.salesforce.com");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let auth = Arc::new(Authenticator::new(http.clone(), my_domain, creds(test_keys().private_key_pem), clock));
    let client = SalesforceClient::new(http, auth.clone(), "62.0");
    client.create_record("Case", &fields(json!({"Subject": "Checkout down"}))).await.unwrap();
    assert_eq!(auth.mints(), 1);
    assert!(sim.requests().iter().any(|r| r.path == "/services/oauth2/token"), "the token came from the My Domain");
}

#[tokio::test]
async fn a_token_requested_from_a_sandbox_my_domain_is_signed_for_test_salesforce_com() {
    let sandbox = SfSimConfig { login_url: "https://test.salesforce.com".into(), ..SfSimConfig::default() };
    let sim = SalesforceSim::start(sandbox).await;
    let (http, my_domain) = posting_to(&sim, "acme--uat.sandbox.my.salesforce.com");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let auth = Authenticator::new(http, my_domain, creds(test_keys().private_key_pem), clock);
    auth.mint().await.unwrap();
}

#[tokio::test]
async fn the_token_endpoint_refuses_an_assertion_for_the_host_it_was_posted_to() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    // What a client that signs for its login URL sends (the simulator's own address here).
    let assertion =
        shared::salesforce::auth::build_assertion(&creds(test_keys().private_key_pem), &sim.base_url(), &SystemClock)
            .unwrap();
    let grant = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())];
    let answer = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&grant)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body, json!({"error": "invalid_grant", "error_description": "audience is invalid"}));
}

#[tokio::test]
async fn upsert_creates_once_then_updates_the_same_record() {
    let (sim, _auth, client) = setup().await;
    let first = client
        .upsert("Case", CASE_NUMBER_FIELD, "Q1ABCDEF", &fields(json!({"Subject": "Incident Q1ABCDEF"})))
        .await
        .unwrap();
    assert!(first.created);
    let again =
        client.upsert("Case", CASE_NUMBER_FIELD, "Q1ABCDEF", &fields(json!({"Priority": "High"}))).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.id, first.id);
    assert_eq!(sim.records("Case").len(), 1, "a retried upsert never duplicates");
}

#[tokio::test]
async fn missing_required_field_is_permanent_with_the_field_named() {
    let (_sim, _auth, client) = setup().await;
    let err = client.create_record("Case", &fields(json!({"Priority": "High"}))).await.unwrap_err();
    assert_eq!(err.class(), Class::Permanent);
    assert_eq!(err.error_codes(), vec!["REQUIRED_FIELD_MISSING"]);
    assert!(err.to_string().contains("Subject"), "{err}");
}

#[tokio::test]
async fn one_composite_call_creates_a_case_and_its_comments_by_reference() {
    let (sim, _auth, client) = setup().await;
    let mut batch = client.composite_builder(true);
    batch
        .push(
            "newCase",
            Write::Upsert {
                object: "Case".into(),
                ext_field: CASE_NUMBER_FIELD.into(),
                ext_value: "Q2XYZ".into(),
                fields: fields(json!({"Subject": "Incident Q2XYZ"})),
            },
        )
        .unwrap();
    let parts = batch
        .push("note", Write::AddCaseComment { case_id: reference("newCase"), body: "é".repeat(3000), published: false })
        .unwrap();
    assert_eq!(parts.len(), 2, "6000 bytes become two comments");
    let calls_before = client.api_calls();
    let response = client.composite(&batch.build().unwrap()).await.unwrap().into_result().unwrap();
    assert_eq!(client.api_calls() - calls_before, 1);
    let case_id = response.get("newCase").unwrap().id().unwrap().to_string();
    let comments = sim.records("CaseComment");
    assert_eq!(comments.len(), 2);
    for c in &comments {
        assert_eq!(c["ParentId"], case_id.as_str());
        let body = c["CommentBody"].as_str().unwrap();
        assert!(body.starts_with("[PagerDuty] ("), "{body}");
        assert!(body.len() <= 4000);
    }
}

#[tokio::test]
async fn composite_failures_are_reported_per_subrequest() {
    let (sim, _auth, client) = setup().await;
    let existing = sim.insert_record("Case", json!({"Subject": "Existing"}));
    let mut batch = client.composite_builder(false);
    batch
        .push(
            "ok",
            Write::Update { object: "Case".into(), id: existing.clone(), fields: fields(json!({"Priority": "High"})) },
        )
        .unwrap();
    batch.push("bad", Write::Create { object: "Case".into(), fields: fields(json!({"Priority": "High"})) }).unwrap();
    let response = client.composite(&batch.build().unwrap()).await.unwrap();
    assert_eq!(response.succeeded(), vec!["ok"]);
    let failures = response.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].reference_id, "bad");
    assert_eq!(failures[0].errors[0].error_code, "REQUIRED_FIELD_MISSING");
    let err = response.into_result().unwrap_err();
    assert_eq!(err.class(), Class::Permanent);
    assert_eq!(sim.record("Case", &existing).unwrap()["Priority"], "High");
}

#[tokio::test]
async fn multi_part_comment_helper_is_one_call() {
    let (sim, _auth, client) = setup().await;
    let case_id = sim.insert_record("Case", json!({"Subject": "Long note"}));
    let before = client.api_calls();
    let ids = client.add_case_comments(&case_id, &"word ".repeat(1700), true).await.unwrap();
    assert_eq!(ids.len(), 3);
    // Three comments, one REST call (token mints are not counted as API calls).
    assert_eq!(client.api_calls() - before, 1);
    assert_eq!(sim.records("CaseComment").len(), 3);
}

#[tokio::test]
async fn seeded_faults_are_classified_transient() {
    let (sim, _auth, client) = setup().await;
    // Warm the token first so the faults hit the REST call.
    client.create_record("Case", &fields(json!({"Subject": "Warm"}))).await.unwrap();
    for kind in [FaultKind::ServerError, FaultKind::RateLimited, FaultKind::LockRow, FaultKind::Drop] {
        sim.fail_next(1, kind);
        let err = client.create_record("Case", &fields(json!({"Subject": "Faulty"}))).await.unwrap_err();
        assert!(err.is_transient(), "{kind:?}: {err}");
    }
}

#[tokio::test]
async fn the_simulated_orgs_trigger_posts_parse_and_verify() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let old_case = json!({
        "attributes": {"type": "Case", "url": "/services/data/v62.0/sobjects/Case/5005g00000AbCdEAAS"},
        "Id": "5005g00000AbCdEAAS", "Subject": "Down", "Priority": "Low", "ClosedDate": null
    });
    let mut new_case = old_case.clone();
    new_case["Priority"] = json!("High");
    let poster = TriggerPoster::new(vec!["new-secret".into(), "old-secret".into()], &sim.config().org_id);
    let payload = poster.payload(
        "Case",
        "update",
        ("0055g00000AbCdEAAS", "agent@example.com"),
        Some(std::slice::from_ref(&old_case)),
        std::slice::from_ref(&new_case),
    );
    let body = serde_json::to_vec(&payload).unwrap();
    let now = chrono::Utc::now();
    let headers = poster.headers(now.timestamp(), &body);
    let header = |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str());
    verify_trigger_signature(
        &body,
        header("X-PDSync-Timestamp"),
        header("X-PDSync-Signature"),
        &["old-secret"],
        now,
        300,
    )
    .unwrap();
    let post = TriggerPost::parse(&body).unwrap();
    assert_eq!(post.records[0].changed_fields(), vec!["Priority"]);
}

#[tokio::test]
async fn the_simulated_orgs_outbound_messages_parse() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let messenger = OutboundMessenger::new(&sim.config().org_id, &sim.base_url());
    let xml =
        messenger.envelope("Case", &[json!({"Id": "5005g00000AbCdEAAS", "Subject": "A & B <c>", "IsEscalated": true})]);
    let message = OutboundMessage::parse(xml.as_bytes()).unwrap();
    assert!(message.is_from_org(&shared::salesforce::id::OrgId::parse(&sim.config().org_id).unwrap()));
    assert_eq!(message.notifications.len(), 1);
    let n = &message.notifications[0];
    assert_eq!(n.object, "Case");
    assert_eq!(n.fields["Subject"], "A & B <c>");
    assert_eq!(n.fields["IsEscalated"], "true");
}
