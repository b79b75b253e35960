//! The PagerDuty simulator behaves like PagerDuty's REST API and webhooks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use sim::faults::{FaultConfig, FaultKind};
use sim::pagerduty::{PagerdutySim, PdSimConfig, RateLimit, WebhookSender, WebhookTarget, sign_v1};

const ACCEPT: &str = "application/vnd.pagerduty+json;version=2";

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()
}

fn req(c: &reqwest::Client, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
    req_as(c, method, url, ACCEPT, "bridge@example.com")
}

fn req_as(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    accept: &str,
    from: &str,
) -> reqwest::RequestBuilder {
    c.request(method, url)
        .header("Authorization", "Token token=sim-token")
        .header("Accept", accept)
        .header("Content-Type", "application/json")
        .header("From", from)
}

async fn create(sim: &PagerdutySim, key: Option<&str>) -> reqwest::Response {
    let mut inc = json!({"type": "incident", "title": "Checkout down", "service": {"id": "PSVC001", "type": "service_reference"}});
    if let Some(k) = key {
        inc["incident_key"] = json!(k);
    }
    req(&client(), reqwest::Method::POST, format!("{}/incidents", sim.base_url()))
        .json(&json!({ "incident": inc }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn starts_well_under_a_second() {
    let t = Instant::now();
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let r = req(&client(), reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
}

#[tokio::test]
async fn unknown_or_missing_token_is_401_with_pagerduty_error_body() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    for auth in [None, Some("Token token=wrong"), Some("Bearer sim-token")] {
        let mut r = client().get(format!("{}/priorities", sim.base_url())).header("Accept", ACCEPT);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 2006);
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn create_without_from_header_is_rejected_like_pagerduty() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let r = client()
        .post(format!("{}/incidents", sim.base_url()))
        .header("Authorization", "Token token=sim-token")
        .header("Accept", ACCEPT)
        .json(&json!({"incident": {"type": "incident", "title": "x", "service": {"id": "PSVC001", "type": "service_reference"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    // Exactly PagerDuty's answer (as reported by go-pagerduty and pdpyras users).
    assert_eq!(
        body,
        json!({"error": {"message": "You must specify a user's email address in the \"From\" header to perform this action", "code": 2016}})
    );
    assert!(sim.incidents().is_empty());
    // Notes and updates need it as well (the spec marks From required there).
    let r = client()
        .post(format!("{}/incidents/Q1/notes", sim.base_url()))
        .header("Authorization", "Token token=sim-token")
        .header("Accept", ACCEPT)
        .json(&json!({"note": {"content": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn unknown_from_user_is_refused() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let r = req_as(&client(), reqwest::Method::POST, format!("{}/incidents", sim.base_url()), ACCEPT, "stranger@example.com")
        .json(&json!({"incident": {"type": "incident", "title": "x", "service": {"id": "PSVC001", "type": "service_reference"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"error": {"message": "Requester User Not Found", "code": 1008}}));
}

#[tokio::test]
async fn body_violating_the_spec_is_rejected_with_specific_errors() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let c = client();
    // Incident without a service (required by the OpenAPI requestBody schema).
    let r = req(&c, reqwest::Method::POST, format!("{}/incidents", sim.base_url()))
        .json(&json!({"incident": {"type": "incident", "title": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 2001);
    let errors: Vec<String> =
        body["error"]["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect();
    assert!(errors.iter().any(|e| e.contains("incident.service")), "{errors:?}");
    // Wrong enum value.
    let r = req(&c, reqwest::Method::POST, format!("{}/incidents", sim.base_url()))
        .json(&json!({"incident": {"type": "incident", "title": "x", "urgency": "urgent", "service": {"id": "PSVC001", "type": "service_reference"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["errors"].to_string().contains("incident.urgency"), "{body}");
    // Wrong type and missing note content.
    let r = req(&c, reqwest::Method::POST, format!("{}/incidents", sim.base_url()))
        .json(&json!({"incident": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // No JSON Content-Type: PagerDuty's generic answer.
    let r = client()
        .post(format!("{}/incidents", sim.base_url()))
        .header("Authorization", "Token token=sim-token")
        .header("Accept", ACCEPT)
        .header("From", "bridge@example.com")
        .body(r#"{"incident":{"type":"incident","title":"x","service":{"id":"PSVC001","type":"service_reference"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": {"message": "Invalid Input Provided", "code": 2001, "errors": ["params must be a Hash"]}})
    );
    // Not JSON at all.
    let r = req(&c, reqwest::Method::POST, format!("{}/incidents", sim.base_url())).body("{nope").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Wrong Accept.
    let r = req_as(
        &c,
        reqwest::Method::GET,
        format!("{}/priorities", sim.base_url()),
        "application/json",
        "bridge@example.com",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(sim.incidents().is_empty());
}

#[tokio::test]
async fn unknown_path_is_404_with_code_2100() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let r = req(&client(), reqwest::Method::GET, format!("{}/no_such_thing", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 2100);
    let r = req(&client(), reqwest::Method::GET, format!("{}/incidents/QNOPE", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn create_assigns_numbers_and_defaults_from_the_escalation_policy() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let a: Value = create(&sim, Some("k1")).await.json().await.unwrap();
    let b: Value = create(&sim, None).await.json().await.unwrap();
    let a = &a["incident"];
    assert_eq!(a["status"], "triggered");
    assert_eq!(a["incident_key"], "k1");
    assert_eq!(a["urgency"], "high");
    assert_eq!(a["assignments"][0]["assignee"]["id"], "PUSR002");
    assert_eq!(a["escalation_policy"]["id"], "PEP0001");
    assert!(a["html_url"].as_str().unwrap().starts_with("https://sim.pagerduty.com/incidents/"));
    assert_eq!(b["incident"]["incident_number"].as_u64(), Some(a["incident_number"].as_u64().unwrap() + 1));
    assert_eq!(sim.incidents().len(), 2);
    let id = a["id"].as_str().unwrap();
    let got: Value = req(&client(), reqwest::Method::GET, format!("{}/incidents/{id}", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["incident"]["id"], id);
}

#[tokio::test]
async fn second_create_with_the_same_open_incident_key_fails_until_resolved() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let first = create(&sim, Some("case-500")).await;
    assert_eq!(first.status(), 201);
    let id = first.json::<Value>().await.unwrap()["incident"]["id"].as_str().unwrap().to_string();
    let dup = create(&sim, Some("case-500")).await;
    assert_eq!(dup.status(), 400);
    let body: Value = dup.json().await.unwrap();
    assert_eq!(body["error"]["code"], 2001);
    assert!(body["error"]["errors"][0].as_str().unwrap().contains("dedup key"));
    assert_eq!(sim.incidents().len(), 1);
    // Lookup by key, as a client does after the conflict.
    let list: Value = req(
        &client(),
        reqwest::Method::GET,
        format!("{}/incidents?incident_key=case-500&statuses[]=triggered&statuses[]=acknowledged", sim.base_url()),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1);
    let r = req(&client(), reqwest::Method::PUT, format!("{}/incidents/{id}", sim.base_url()))
        .json(&json!({"incident": {"type": "incident_reference", "status": "resolved"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(create(&sim, Some("case-500")).await.status(), 201);
}

#[tokio::test]
async fn status_transitions_priority_reassign_and_resolved_is_terminal() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let c = client();
    let id = create(&sim, None).await.json::<Value>().await.unwrap()["incident"]["id"].as_str().unwrap().to_string();
    let put =
        |body: Value| req(&c, reqwest::Method::PUT, format!("{}/incidents/{id}", sim.base_url())).json(&body).send();
    let r = put(json!({"incident": {"type": "incident_reference", "status": "acknowledged", "priority": {"id": "PPRI001", "type": "priority_reference"}}})).await.unwrap();
    assert_eq!(r.status(), 200);
    let inc = sim.incident(&id).unwrap();
    assert_eq!(inc["status"], "acknowledged");
    assert_eq!(inc["priority"]["name"], "P1");
    let r = put(json!({"incident": {"type": "incident_reference", "escalation_policy": {"id": "PEP0002", "type": "escalation_policy_reference"}}})).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.incident(&id).unwrap()["assignments"][0]["assignee"]["id"], "PUSR001");
    let r = put(
        json!({"incident": {"type": "incident_reference", "priority": {"id": "PNOPE", "type": "priority_reference"}}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = put(json!({"incident": {"type": "incident_reference", "status": "resolved"}})).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = put(json!({"incident": {"type": "incident_reference", "status": "acknowledged"}})).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["errors"][0], "Incident Already Resolved");
    assert_eq!(sim.incident(&id).unwrap()["status"], "resolved");
    let types: Vec<String> =
        sim.webhook_events().iter().map(|e| e["event"]["event_type"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        types,
        [
            "incident.triggered",
            "incident.acknowledged",
            "incident.priority_updated",
            "incident.reassigned",
            "incident.resolved"
        ]
    );
}

#[tokio::test]
async fn notes_responders_workflows_and_automation_are_recorded() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let c = client();
    let base = sim.base_url();
    let id = create(&sim, None).await.json::<Value>().await.unwrap()["incident"]["id"].as_str().unwrap().to_string();
    let r = req(&c, reqwest::Method::POST, format!("{base}/incidents/{id}/notes"))
        .json(&json!({"note": {"content": "[Salesforce] hello"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let notes: Value = req(&c, reqwest::Method::GET, format!("{base}/incidents/{id}/notes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(notes["notes"][0]["content"], "[Salesforce] hello");
    assert_eq!(notes["notes"][0]["user"]["id"], "PUSR001");
    assert_eq!(sim.notes(&id).len(), 1);
    let r = req(&c, reqwest::Method::POST, format!("{base}/incidents/{id}/notes"))
        .json(&json!({"note": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "note.content is required by the spec");

    let r = req(&c, reqwest::Method::POST, format!("{base}/incidents/{id}/responder_requests"))
        .json(&json!({"requester_id": "PUSR001", "message": "help", "responder_request_targets": [{"responder_request_target": {"id": "PEP0002", "type": "escalation_policy_reference"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.responder_requests().len(), 1);

    let r = req(&c, reqwest::Method::POST, format!("{base}/incident_workflows/PWFL001/instances"))
        .json(&json!({"incident_workflow_instance": {"incident": {"id": id, "type": "incident_reference"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = req(&c, reqwest::Method::POST, format!("{base}/incident_workflows/PNOPE/instances"))
        .json(&json!({"incident_workflow_instance": {"incident": {"id": id, "type": "incident_reference"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(sim.workflow_instances().len(), 1);

    let r = req(&c, reqwest::Method::POST, format!("{base}/automation_actions/actions/PACT001/invocations"))
        .json(&json!({"invocation": {"metadata": {"incident_id": id}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(sim.automation_invocations()[0]["metadata"]["incident_id"], id.as_str());
}

/// Each change is logged as PagerDuty logs it: a note as an `annotate_log_entry` of its incident,
/// by its author, stamped as the note; listed newest first, bounded by when each was written.
#[tokio::test]
async fn the_log_lists_each_change_with_its_incident_and_agent_newest_first() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let c = client();
    let base = sim.base_url();
    let id = create(&sim, None).await.json::<Value>().await.unwrap()["incident"]["id"].as_str().unwrap().to_string();
    let note: Value =
        req_as(&c, reqwest::Method::POST, format!("{base}/incidents/{id}/notes"), ACCEPT, "oncall@example.com")
            .json(&json!({"note": {"content": "Rolled back"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let list = |query: String| {
        let c = c.clone();
        let url = format!("{base}/log_entries?{query}");
        async move { req(&c, reqwest::Method::GET, url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let all = list("limit=100".into()).await;
    let types: Vec<&str> = all["log_entries"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["annotate_log_entry", "trigger_log_entry"]);
    let annotate = &all["log_entries"][0];
    assert_eq!(annotate["incident"]["id"], id.as_str());
    assert_eq!(annotate["agent"]["id"], "PUSR002");
    assert_eq!(annotate["created_at"], note["note"]["created_at"]);
    let page = list("limit=1&offset=0".into()).await;
    assert_eq!((page["log_entries"].as_array().unwrap().len(), page["more"].as_bool()), (1, Some(true)));
    let later = list("since=2999-01-01T00%3A00%3A00Z&until=2999-01-02T00%3A00%3A00Z".into()).await;
    assert_eq!(later["log_entries"], json!([]));
}

#[tokio::test]
async fn users_services_policies_and_priorities_are_served() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let c = client();
    let base = sim.base_url();
    let users: Value = req(&c, reqwest::Method::GET, format!("{base}/users?query=bridge%40example.com"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
    assert_eq!(users["users"][0]["id"], "PUSR001");
    assert_eq!(req(&c, reqwest::Method::GET, format!("{base}/users/PUSR002")).send().await.unwrap().status(), 200);
    let svc: Value =
        req(&c, reqwest::Method::GET, format!("{base}/services/PSVC001")).send().await.unwrap().json().await.unwrap();
    assert_eq!(svc["service"]["escalation_policy"]["id"], "PEP0001");
    assert_eq!(
        req(&c, reqwest::Method::GET, format!("{base}/escalation_policies/PEP0001")).send().await.unwrap().status(),
        200
    );
    let p: Value =
        req(&c, reqwest::Method::GET, format!("{base}/priorities")).send().await.unwrap().json().await.unwrap();
    assert_eq!(p["priorities"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn webhook_subscription_secret_is_returned_only_on_create() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let c = client();
    let base = sim.base_url();
    let body = json!({"webhook_subscription": {"type": "webhook_subscription", "delivery_method": {"type": "http_delivery_method", "url": "https://example.com/pd"},
        "events": ["incident.triggered"], "filter": {"type": "account_reference"}, "description": "bridge"}});
    let r = req(&c, reqwest::Method::POST, format!("{base}/webhook_subscriptions")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert!(created["webhook_subscription"]["delivery_method"]["secret"].as_str().unwrap().len() > 20);
    let id = created["webhook_subscription"]["id"].as_str().unwrap();
    let got: Value = req(&c, reqwest::Method::GET, format!("{base}/webhook_subscriptions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(got["webhook_subscription"]["delivery_method"]["secret"].is_null());
    let r = req(&c, reqwest::Method::PUT, format!("{base}/webhook_subscriptions/{id}"))
        .json(&json!({"webhook_subscription": {"description": "renamed"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = req(&c, reqwest::Method::GET, format!("{base}/webhook_subscriptions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["webhook_subscriptions"][0]["description"], "renamed");
    assert_eq!(
        req(&c, reqwest::Method::DELETE, format!("{base}/webhook_subscriptions/{id}")).send().await.unwrap().status(),
        204
    );
    assert_eq!(
        req(&c, reqwest::Method::GET, format!("{base}/webhook_subscriptions/{id}")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_pagerduty_headers_and_body() {
    let sim = PagerdutySim::start(PdSimConfig {
        rate_limit: RateLimit { requests: 3, window: Duration::from_secs(60) },
        ..Default::default()
    })
    .await;
    let c = client();
    for expected_remaining in [2, 1, 0] {
        let r = req(&c, reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-limit"], "3");
        assert_eq!(r.headers()["ratelimit-remaining"], expected_remaining.to_string().as_str());
        assert!(r.headers()["ratelimit-reset"].to_str().unwrap().parse::<u64>().unwrap() <= 60);
    }
    let r = req(&c, reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS.as_u16());
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Rate Limit Exceeded");
    assert_eq!(body["error"]["code"], 2020);
    assert_eq!(sim.peak_window_requests("sim-token"), 4, "the refused request arrived too");
    sim.reset_rate_limit();
    assert_eq!(
        req(&c, reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await.unwrap().status(),
        200
    );
    assert_eq!(sim.peak_window_requests("sim-token"), 4, "the busiest window so far");
}

async fn fault_sequence(seed: u64) -> Vec<u16> {
    let faults =
        FaultConfig { seed, server_error_rate: 0.2, rate_limited_rate: 0.2, drop_rate: 0.1, ..FaultConfig::none() };
    let sim = PagerdutySim::start(PdSimConfig { faults, ..Default::default() }).await;
    let c = client();
    let mut out = Vec::new();
    for _ in 0..30 {
        let status = match req(&c, reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        out.push(status);
    }
    assert_eq!(sim.requests().iter().map(|r| r.status).collect::<Vec<_>>(), out);
    out
}

#[tokio::test]
async fn seeded_faults_are_reproducible_and_cover_every_kind() {
    let a = fault_sequence(42).await;
    let b = fault_sequence(42).await;
    assert_eq!(a, b);
    assert!(a.contains(&500) && a.contains(&429) && a.contains(&0) && a.contains(&200), "{a:?}");
    assert_ne!(a, fault_sequence(7).await);
}

#[tokio::test]
async fn fail_next_serves_deterministic_faults_then_recovers() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let c = client();
    sim.fail_next(1, FaultKind::Drop);
    sim.fail_next(1, FaultKind::ServerError);
    sim.fail_next(1, FaultKind::RateLimited);
    assert!(req(&c, reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await.is_err());
    let r = req(&c, reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 2000);
    let r = req(&c, reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("ratelimit-reset"));
    assert_eq!(
        req(&c, reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await.unwrap().status(),
        200
    );
    sim.fail_next(1, FaultKind::Slow(Duration::from_millis(300)));
    let short = reqwest::Client::builder().timeout(Duration::from_millis(50)).build().unwrap();
    let r = req(&short, reqwest::Method::GET, format!("{}/priorities", sim.base_url())).send().await;
    assert!(r.unwrap_err().is_timeout());
}

#[tokio::test]
async fn request_log_records_method_path_headers_body_and_status() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    create(&sim, Some("logged")).await;
    let log = sim.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, "/incidents");
    assert_eq!(log[0].status, 201);
    assert_eq!(log[0].header("from"), Some("bridge@example.com"));
    assert_eq!(log[0].json().unwrap()["incident"]["incident_key"], "logged");
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

// ---- webhooks ----

fn sample(path: &str) -> Vec<u8> {
    std::fs::read(format!("/work/shared/samples/{path}")).unwrap()
}

#[test]
fn signer_matches_published_signature_vectors() {
    for name in [
        "aldaviva-incident.triggered",
        "aldaviva-incident.acknowledged",
        "aldaviva-incident.resolved",
        "aldaviva-incident.annotated",
        "aldaviva-pagey.ping",
    ] {
        let vector: Value =
            serde_json::from_slice(&sample(&format!("pagerduty-signature/{name}.vector.json"))).unwrap();
        let body = sample(&format!("pagerduty-signature/{}", vector["body_file"].as_str().unwrap()));
        assert_eq!(
            sign_v1(vector["secret"].as_str().unwrap(), &body),
            vector["header_value"].as_str().unwrap(),
            "{name}"
        );
    }
    let go: Value = serde_json::from_slice(&sample("pagerduty-signature/go-pagerduty.vector.json")).unwrap();
    let body = sample("pagerduty-signature/go-pagerduty-incident.priority_updated.body.json");
    let secret = go["secret"].as_str().unwrap();
    assert_eq!(sign_v1(secret, &body), go["cases"][0]["header_value"].as_str().unwrap());
    assert_ne!(sign_v1(secret, &body), go["cases"][1]["header_value"].as_str().unwrap());
}

type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver that answers with the given statuses in turn (then 204) and records every delivery.
async fn receiver(statuses: Vec<u16>) -> (String, Received, tokio::sync::oneshot::Sender<()>) {
    let got: Received = Arc::default();
    let queue = Arc::new(Mutex::new(statuses));
    let g = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            let q = queue.clone();
            async move {
                g.lock().unwrap().push((headers, body.to_vec()));
                let next = {
                    let mut q = q.lock().unwrap();
                    if q.is_empty() { 204 } else { q.remove(0) }
                };
                StatusCode::from_u16(next).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (url, got, tx)
}

#[tokio::test]
async fn sender_signs_with_two_secrets_and_sets_pagerduty_headers() {
    let (url, got, _stop) = receiver(vec![]).await;
    let sender = WebhookSender::new(&["old-secret", "new-secret"]).with_subscription("PSUBX");
    let env: Value = serde_json::from_slice(&sample("pagerduty-webhooks-v3/aldaviva-incident.triggered.json")).unwrap();
    let report = sender.deliver(&url, &env).await;
    assert!(report.delivered);
    let (h, body) = got.lock().unwrap()[0].clone();
    let sig = h["x-pagerduty-signature"].to_str().unwrap().to_string();
    assert_eq!(sig, format!("{},{}", sign_v1("old-secret", &body), sign_v1("new-secret", &body)));
    assert_eq!(h["x-webhook-subscription"], "PSUBX");
    assert_eq!(h["user-agent"], "PagerDuty-Webhook/V3.0");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-webhook-id"].to_str().unwrap(), report.webhook_id);
}

#[tokio::test]
async fn sender_redelivers_on_5xx_and_429_with_the_same_webhook_id_and_drops_on_4xx() {
    let (url, got, _stop) = receiver(vec![500, 429, 204]).await;
    let sender = WebhookSender::new(&["s"]).with_retry(5, Duration::from_millis(1));
    let env: Value = serde_json::from_slice(&sample("pagerduty-webhooks-v3/zulip-incident.acknowledged.json")).unwrap();
    let report = sender.deliver(&url, &env).await;
    assert_eq!(report.attempts, vec![Some(500), Some(429), Some(204)]);
    assert!(report.delivered);
    let ids: Vec<String> =
        got.lock().unwrap().iter().map(|(h, _)| h["x-webhook-id"].to_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| *i == ids[0]));

    let (url, _got, _stop2) = receiver(vec![400]).await;
    let report = sender.deliver(&url, &env).await;
    assert_eq!(report.attempts, vec![Some(400)]);
    assert!(!report.delivered);

    // Nobody listening: bounded retries, then give up.
    let report = WebhookSender::new(&["s"])
        .with_retry(3, Duration::from_millis(1))
        .deliver("http://127.0.0.1:9/none", &env)
        .await;
    assert_eq!(report.attempts, vec![None, None, None]);
}

#[tokio::test]
async fn replay_delivers_duplicates_with_the_same_id_and_keeps_the_given_order() {
    let (url, got, _stop) = receiver(vec![]).await;
    let sender = WebhookSender::new(&["s"]);
    let trig: Value =
        serde_json::from_slice(&sample("pagerduty-webhooks-v3/aldaviva-incident.triggered.json")).unwrap();
    let res: Value = serde_json::from_slice(&sample("pagerduty-webhooks-v3/aldaviva-incident.resolved.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, format!("{res}\n{trig}\n{res}\n")).unwrap();
    let reports = sender.replay_file(&url, &file).await.unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0].webhook_id, reports[2].webhook_id);
    assert_ne!(reports[0].webhook_id, reports[1].webhook_id);
    let types: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["event"]["event_type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["incident.resolved", "incident.triggered", "incident.resolved"]);
}

#[tokio::test]
async fn simulator_emits_signed_webhooks_shaped_like_real_deliveries() {
    let (url, got, _stop) = receiver(vec![]).await;
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    sim.set_webhook_target(Some(WebhookTarget {
        url,
        secrets: vec!["hook-secret".into()],
        subscription_id: "PSUB009".into(),
    }));
    let id =
        create(&sim, Some("k")).await.json::<Value>().await.unwrap()["incident"]["id"].as_str().unwrap().to_string();
    req(&client(), reqwest::Method::POST, format!("{}/incidents/{id}/notes", sim.base_url()))
        .json(&json!({"note": {"content": "n"}}))
        .send()
        .await
        .unwrap();
    for _ in 0..200 {
        if got.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let real: Value =
        serde_json::from_slice(&sample("pagerduty-webhooks-v3/aldaviva-incident.triggered.json")).unwrap();
    let real_note: Value =
        serde_json::from_slice(&sample("pagerduty-webhooks-v3/aldaviva-incident.annotated.json")).unwrap();
    for (h, body) in &got {
        assert_eq!(h["x-pagerduty-signature"].to_str().unwrap(), sign_v1("hook-secret", body));
        assert_eq!(h["x-webhook-subscription"], "PSUB009");
        let ev: Value = serde_json::from_slice(body).unwrap();
        let real = if ev["event"]["event_type"] == "incident.annotated" { &real_note } else { &real };
        // Same keys as the real delivery, at the event level and in data.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
        assert_eq!(keys(&ev["event"]), keys(&real["event"]));
        assert_eq!(keys(&ev["event"]["data"]), keys(&real["event"]["data"]), "{}", ev["event"]["event_type"]);
        assert_eq!(keys(&ev["event"]["agent"]), keys(&real["event"]["agent"]));
    }
}

#[tokio::test]
async fn subscriptions_created_through_the_api_receive_signed_deliveries() {
    let (url, got, _stop) = receiver(vec![]).await;
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let body = json!({"webhook_subscription": {"type": "webhook_subscription", "delivery_method": {"type": "http_delivery_method", "url": url},
        "events": ["incident.acknowledged"], "filter": {"type": "account_reference"}}});
    let created: Value = req(&client(), reqwest::Method::POST, format!("{}/webhook_subscriptions", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["webhook_subscription"]["delivery_method"]["secret"].as_str().unwrap().to_string();
    let sub_id = created["webhook_subscription"]["id"].as_str().unwrap().to_string();
    let id = create(&sim, None).await.json::<Value>().await.unwrap()["incident"]["id"].as_str().unwrap().to_string();
    req(&client(), reqwest::Method::PUT, format!("{}/incidents/{id}", sim.base_url()))
        .json(&json!({"incident": {"type": "incident_reference", "status": "acknowledged"}}))
        .send()
        .await
        .unwrap();
    for _ in 0..200 {
        if !got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "only the subscribed event type is delivered");
    let (h, body) = &got[0];
    assert_eq!(h["x-pagerduty-signature"].to_str().unwrap(), sign_v1(&secret, body));
    assert_eq!(h["x-webhook-subscription"].to_str().unwrap(), sub_id);
    assert_eq!(serde_json::from_slice::<Value>(body).unwrap()["event"]["event_type"], "incident.acknowledged");
}
