//! `shared::pagerduty::PagerdutyClient` against the PagerDuty simulator, which validates every
//! request against the OpenAPI document and keeps incidents like PagerDuty does.

use std::sync::Arc;
use std::time::Duration;

use adapters::http::ReqwestTransport;

use serde_json::Value;
use shared::class::{Class, Classify};
use shared::pagerduty::{
    Assignees, CreateIncident, PagerdutyClient, PriorityChoice, RateLimit, SubscriptionFilter, Urgency,
};
use sim::faults::FaultKind;
use sim::pagerduty::{PagerdutySim, PdSimConfig};
use url::Url;

async fn sim() -> PagerdutySim {
    PagerdutySim::start(PdSimConfig::default()).await
}

fn client(sim: &PagerdutySim) -> PagerdutyClient {
    PagerdutyClient::new(
        Arc::new(ReqwestTransport::new().expect("client")),
        Url::parse(&sim.base_url()).unwrap(),
        "sim-token".into(),
        "bridge@example.com".into(),
    )
}

fn case_incident(key: &str) -> CreateIncident {
    CreateIncident {
        title: "Case 00001026: Checkout is down".into(),
        service_id: "PSVC001".into(),
        urgency: Some(Urgency::High),
        priority: Some(PriorityChoice::Name("P2".into())),
        body_details: None,
        incident_key: Some(key.into()),
        escalation_policy_id: None,
    }
}

/// Every request the simulator saw was accepted (it answers 400 to a request that does not
/// match the OpenAPI document).
fn assert_no_rejected_requests(sim: &PagerdutySim) {
    for r in sim.requests() {
        assert!(
            r.status < 400 || r.status == 429,
            "{} {} answered {}: {}",
            r.method,
            r.path,
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[tokio::test]
async fn an_incident_is_created_with_the_priority_by_name_and_a_retry_returns_the_same_incident() {
    let sim = sim().await;
    let c = client(&sim);
    let first = c.create_incident(&case_incident("sfdc:Case:500A:r1")).await.unwrap();
    let again = c.create_incident(&case_incident("sfdc:Case:500A:r1")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(sim.incidents().len(), 1);
    let inc = sim.incident(&first.id).unwrap();
    assert_eq!(inc["priority"]["id"], "PPRI002");
    assert_eq!(inc["urgency"], "high");
    assert!(first.html_url.is_some() && first.number.is_some());
    // The retry met PagerDuty's duplicate-key answer and looked the incident up.
    let calls: Vec<(String, String, u16)> =
        sim.requests().iter().map(|r| (r.method.clone(), r.path.clone(), r.status)).collect();
    let expected = [
        ("GET", "/priorities", 200),
        ("POST", "/incidents", 201),
        ("POST", "/incidents", 400),
        ("GET", "/incidents", 200),
    ];
    assert_eq!(calls.len(), expected.len(), "{calls:?}");
    for (got, want) in calls.iter().zip(expected) {
        assert_eq!((got.0.as_str(), got.1.as_str(), got.2), want);
    }
}

/// The `IncidentBody` schema says `details` is an object, but the operation's own request example
/// and the live API use a string, which is what the client sends; the simulator follows the API.
#[tokio::test]
async fn incident_body_details_are_accepted() {
    let sim = sim().await;
    let c = client(&sim);
    let mut req = case_incident("k-details");
    req.body_details = Some("Opened from Salesforce Case 00001026".into());
    c.create_incident(&req).await.unwrap();
    assert_no_rejected_requests(&sim);
}

#[tokio::test]
async fn the_incident_lifecycle_calls_are_accepted_and_change_the_incident() {
    let sim = sim().await;
    let c = client(&sim);
    let id = c.create_incident(&case_incident("k-lifecycle")).await.unwrap().id;
    c.acknowledge(&id).await.unwrap();
    assert_eq!(c.get_incident(&id).await.unwrap().status.as_deref(), Some("acknowledged"));
    c.set_priority(&id, "P1").await.unwrap();
    c.set_urgency(&id, Urgency::Low).await.unwrap();
    c.add_note(&id, "[Salesforce] customer called back").await.unwrap();
    c.reassign(&id, &Assignees::Users(vec!["PUSR001".into()])).await.unwrap();
    c.reassign(&id, &Assignees::EscalationPolicy("PEP0002".into())).await.unwrap();
    c.add_responders(&id, &["PUSR002".into()], &[], "Please join").await.unwrap();
    c.run_incident_workflow(&id, "PWFL001").await.unwrap();
    c.run_automation_action(&id, "PACT001").await.unwrap();
    c.resolve(&id, Some("[Salesforce] Case closed")).await.unwrap();
    let inc: Value = sim.incident(&id).unwrap();
    assert_eq!(inc["status"], "resolved");
    assert_eq!(inc["priority"]["id"], "PPRI001");
    assert_eq!(inc["urgency"], "low");
    assert_eq!(sim.notes(&id).len(), 2);
    assert_eq!(sim.responder_requests().len(), 1);
    assert_eq!(sim.workflow_instances().len(), 1);
    assert_eq!(sim.automation_invocations().len(), 1);
    assert_no_rejected_requests(&sim);
    // The priority list and the From user were each looked up once.
    let gets = |p: &str| sim.requests().iter().filter(|r| r.path == p).count();
    assert_eq!(gets("/priorities"), 1);
    assert_eq!(gets("/users"), 1);
    assert_eq!(c.api_calls() as usize, sim.requests().len());
}

#[tokio::test]
async fn a_webhook_subscription_is_created_with_its_secret_and_listed() {
    let sim = sim().await;
    let c = client(&sim);
    let (sub, secret) = c
        .create_webhook_subscription("https://example.com/pagerduty/webhook", &SubscriptionFilter::Account)
        .await
        .unwrap();
    assert!(!secret.is_empty());
    let listed = c.list_webhook_subscriptions().await.unwrap();
    assert!(listed.iter().any(|s| s.id == sub.id));
    assert_no_rejected_requests(&sim);
}

#[tokio::test]
async fn a_wrong_token_is_an_auth_error_and_server_faults_are_transient() {
    let sim = sim().await;
    let bad = PagerdutyClient::new(
        Arc::new(ReqwestTransport::new().expect("client")),
        Url::parse(&sim.base_url()).unwrap(),
        "wrong".into(),
        "bridge@example.com".into(),
    );
    assert_eq!(bad.acknowledge("Q").await.unwrap_err().class(), Class::Auth);
    let c = client(&sim);
    sim.fail_next(1, FaultKind::ServerError);
    assert!(c.create_incident(&case_incident("k-fault")).await.unwrap_err().is_transient());
    sim.fail_next(1, FaultKind::RateLimited);
    let e = c.get_incident("Q").await.unwrap_err();
    assert!(e.is_transient() && e.retry_after().is_some(), "{e}");
    // The reset (the simulator's 60 s window) holds the client back: the next call is refused
    // at once, without reaching PagerDuty, for the caller to queue.
    let seen = sim.requests().len();
    let e = c.get_incident("Q").await.unwrap_err();
    assert!(e.is_transient() && e.retry_after().unwrap() > Duration::from_secs(50), "{e}");
    assert_eq!(sim.requests().len(), seen);
    let e = client(&sim).get_incident("QNOPE").await.unwrap_err();
    assert_eq!(e.class(), Class::Permanent, "{e}");
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let sim = sim().await;
    let c = client(&sim).with_timeout(Duration::from_millis(200));
    sim.fail_next(1, FaultKind::Slow(Duration::from_secs(2)));
    let e = c.acknowledge("Q").await.unwrap_err();
    assert!(e.is_transient(), "{e}");
}

#[tokio::test]
async fn a_burst_of_200_creations_stays_under_the_simulated_limit() {
    let sim = sim().await;
    // The simulator allows 100 requests per 1-second window; the client, 3600/min with a burst
    // of 20 (at most ~80 in any second), so the burst waits (~3 s) instead of meeting a 429.
    sim.set_rate_limit(sim::pagerduty::RateLimit { requests: 100, window: Duration::from_secs(1) });
    let c = client(&sim).with_rate_limit(RateLimit { per_minute: 3600, burst: 20 });
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = case_incident(&format!("bulk-{i}"));
            req.priority = None;
            c.create_incident(&req).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sim.incidents().len(), 200);
    assert!(sim.requests().iter().all(|r| r.status != 429));
}
