//! The Salesforce simulator behaves like a Salesforce org.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use sim::faults::{FaultConfig, FaultKind};
use sim::salesforce::{OutboundMessenger, SalesforceSim, SfSimConfig, TriggerTarget, sign_trigger, test_keys};

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()
}

fn assertion(key_pem: &str, iss: &str, sub: &str, aud: &str, exp_in: i64) -> String {
    let claims = json!({"iss": iss, "sub": sub, "aud": aud, "exp": chrono::Utc::now().timestamp() + exp_in});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).unwrap()
}

async fn token_request(sim: &SalesforceSim, jwt: &str) -> reqwest::Response {
    client()
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", jwt)])
        .send()
        .await
        .unwrap()
}

async fn login(sim: &SalesforceSim) -> String {
    let jwt = assertion(
        test_keys().private_key_pem,
        "sim-consumer-key",
        "integration@example.com",
        "https://login.salesforce.com",
        180,
    );
    let r: Value = token_request(sim, &jwt).await.json().await.unwrap();
    r["access_token"].as_str().unwrap().to_string()
}

struct Api {
    base: String,
    token: String,
    c: reqwest::Client,
}

impl Api {
    async fn new(sim: &SalesforceSim) -> Api {
        Api { base: format!("{}/services/data/v62.0", sim.base_url()), token: login(sim).await, c: client() }
    }
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.c
            .request(method, format!("{}/{path}", self.base))
            .bearer_auth(&self.token)
            .header("Sforce-Call-Options", "client=pd-sfdc-sync")
    }
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }
}

#[tokio::test]
async fn starts_well_under_a_second_and_issues_a_token_for_a_valid_assertion() {
    let t = Instant::now();
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let jwt = assertion(
        test_keys().private_key_pem,
        "sim-consumer-key",
        "integration@example.com",
        "https://login.salesforce.com",
        180,
    );
    let r = token_request(&sim, &jwt).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["instance_url"], sim.base_url());
    assert!(body["access_token"].as_str().unwrap().starts_with("00D5g0000SIMORG!"));
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
    // The host the token is requested from is no audience (as in Salesforce, where a My Domain
    // client still signs for https://login.salesforce.com).
    let jwt =
        assertion(test_keys().private_key_pem, "sim-consumer-key", "integration@example.com", &sim.base_url(), 180);
    let r = token_request(&sim, &jwt).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error_description"], "audience is invalid");
}

#[tokio::test]
async fn invalid_assertions_are_refused_with_salesforce_descriptions() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let k = test_keys();
    let cases = [
        (
            assertion(
                k.other_private_key_pem,
                "sim-consumer-key",
                "integration@example.com",
                "https://login.salesforce.com",
                180,
            ),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            assertion(
                k.private_key_pem,
                "sim-consumer-key",
                "integration@example.com",
                "https://test.salesforce.com",
                180,
            ),
            "invalid_grant",
            "audience is invalid",
        ),
        (
            assertion(
                k.private_key_pem,
                "sim-consumer-key",
                "integration@example.com",
                "https://login.salesforce.com",
                -10,
            ),
            "invalid_grant",
            "expired authorization code",
        ),
        (
            assertion(
                k.private_key_pem,
                "sim-consumer-key",
                "integration@example.com",
                "https://login.salesforce.com",
                3600,
            ),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            assertion(k.private_key_pem, "other-app", "integration@example.com", "https://login.salesforce.com", 180),
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            assertion(k.private_key_pem, "sim-consumer-key", "nobody@example.com", "https://login.salesforce.com", 180),
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
        ("not.a.jwt".to_string(), "invalid_grant", "invalid assertion"),
    ];
    for (jwt, error, description) in cases {
        let r = token_request(&sim, &jwt).await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"error": error, "error_description": description}));
    }
    let r = client()
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn expired_or_unknown_token_is_invalid_session_id() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let api = Api::new(&sim).await;
    assert_eq!(api.send(reqwest::Method::GET, "limits", None).await.0, 200);
    sim.expire_all_tokens();
    let (status, body) = api.send(reqwest::Method::GET, "limits", None).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]));
    let r = client()
        .get(format!("{}/services/data/v62.0/limits", sim.base_url()))
        .bearer_auth("made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A fresh token works again.
    assert_eq!(Api::new(&sim).await.send(reqwest::Method::GET, "limits", None).await.0, 200);
    // A zero TTL makes new tokens dead on arrival.
    sim.set_token_ttl(Duration::ZERO);
    assert_eq!(Api::new(&sim).await.send(reqwest::Method::GET, "limits", None).await.0, 401);
}

#[tokio::test]
async fn create_read_update_case_with_salesforce_ids() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let api = Api::new(&sim).await;
    let (status, body) = api
        .send(
            reqwest::Method::POST,
            "sobjects/Case",
            Some(json!({"Subject": "Checkout down", "Priority": "High", "Origin": "PagerDuty"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["success"], true);
    assert_eq!(body["errors"], json!([]));
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 18);
    assert!(id.starts_with("500"));
    let (status, rec) = api.send(reqwest::Method::GET, &format!("sobjects/Case/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(rec["attributes"]["type"], "Case");
    assert_eq!(rec["Status"], "New");
    assert_eq!(rec["Priority"], "High");
    // 15-char form finds the same record.
    assert_eq!(api.send(reqwest::Method::GET, &format!("sobjects/Case/{}", &id[..15]), None).await.0, 200);
    let (status, _) =
        api.send(reqwest::Method::PATCH, &format!("sobjects/Case/{id}"), Some(json!({"Status": "Closed"}))).await;
    assert_eq!(status, 204);
    let rec = sim.record("Case", &id).unwrap();
    assert_eq!(rec["Status"], "Closed");
    assert_eq!(rec["IsClosed"], true);
    assert_eq!(rec["LastModifiedById"], sim.user_id("integration@example.com"));
    let (_, partial) = api.send(reqwest::Method::GET, &format!("sobjects/Case/{id}?fields=Subject"), None).await;
    assert_eq!(partial["Subject"], "Checkout down");
    assert!(partial.get("Priority").is_none());
    // Writes are tagged and recorded.
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.call_options.as_deref() == Some("client=pd-sfdc-sync") || r.path.contains("oauth2"))
    );
    assert_eq!(sim.changes().len(), 2);
}

#[tokio::test]
async fn describe_driven_validation_uses_real_error_codes() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let api = Api::new(&sim).await;
    let (s, d) = api.send(reqwest::Method::GET, "sobjects/Case/describe", None).await;
    assert_eq!(s, 200);
    let status_field = d["fields"].as_array().unwrap().iter().find(|f| f["name"] == "Status").unwrap();
    assert!(status_field["picklistValues"].as_array().unwrap().iter().any(|v| v["value"] == "New"));
    let (_, cd) = api.send(reqwest::Method::GET, "sobjects/CaseComment/describe", None).await;
    let body_field = cd["fields"].as_array().unwrap().iter().find(|f| f["name"] == "CommentBody").unwrap();
    assert_eq!(body_field["length"], 4000);

    let (s, e) = api.send(reqwest::Method::POST, "sobjects/Case", Some(json!({"Priority": "High"}))).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (400, "REQUIRED_FIELD_MISSING"));
    assert_eq!(e[0]["fields"], json!(["Subject"]));
    let (s, e) = api.send(reqwest::Method::POST, "sobjects/Case", Some(json!({"Subject": "x", "Foo__x": 1}))).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (400, "INVALID_FIELD"));
    assert_eq!(e[0]["message"], "No such column 'Foo__x' on sobject of type Case");
    let (s, e) =
        api.send(reqwest::Method::POST, "sobjects/Case", Some(json!({"Subject": "x", "Status": "Bogus"}))).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"));
    let (s, e) =
        api.send(reqwest::Method::POST, "sobjects/Case", Some(json!({"Subject": "x", "CaseNumber": "1"}))).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (400, "INVALID_FIELD_FOR_INSERT_UPDATE"));
    // Custom fields are accepted on described objects.
    let (s, created) = api
        .send(reqwest::Method::POST, "sobjects/Case", Some(json!({"Subject": "x", "PagerDuty_Incident_Id__c": "Q1"})))
        .await;
    assert_eq!(s, 201);
    let case_id = created["id"].as_str().unwrap().to_string();

    let (s, e) = api.send(reqwest::Method::POST, "sobjects/CaseComment", Some(json!({"CommentBody": "hi"}))).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (400, "REQUIRED_FIELD_MISSING"));
    assert_eq!(e[0]["fields"], json!(["ParentId"]));
    let (s, e) = api
        .send(
            reqwest::Method::POST,
            "sobjects/CaseComment",
            Some(json!({"ParentId": case_id, "CommentBody": "x".repeat(4001)})),
        )
        .await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (400, "STRING_TOO_LONG"));
    // 4000 bytes of multi-byte text is over when counted in bytes.
    let (s, _) = api
        .send(
            reqwest::Method::POST,
            "sobjects/CaseComment",
            Some(json!({"ParentId": case_id, "CommentBody": "é".repeat(2001)})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, e) = api
        .send(reqwest::Method::POST, "sobjects/CaseComment", Some(json!({"ParentId": "not-an-id", "CommentBody": "x"})))
        .await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (400, "MALFORMED_ID"));
    let (s, created) = api
        .send(
            reqwest::Method::POST,
            "sobjects/CaseComment",
            Some(json!({"ParentId": case_id, "CommentBody": "[PagerDuty] ack", "IsPublished": true})),
        )
        .await;
    assert_eq!(s, 201);
    assert!(created["id"].as_str().unwrap().starts_with("00a"));

    let (s, e) = api.send(reqwest::Method::GET, "sobjects/Case/500xyz", None).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (400, "MALFORMED_ID"));
    let unknown = &case_id[..14].to_string();
    let (s, e) = api.send(reqwest::Method::GET, &format!("sobjects/Case/{unknown}Z"), None).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (404, "NOT_FOUND"));
    let (s, _) = api.send(reqwest::Method::GET, "sobjects/Nope/describe", None).await;
    assert_eq!(s, 404);
    // Custom objects without describe metadata accept any field.
    let (s, c) = api
        .send(reqwest::Method::POST, "sobjects/Sync_Link__c", Some(json!({"Anything__c": 1, "Whatever": "x"})))
        .await;
    assert_eq!(s, 201);
    assert!(c["id"].as_str().unwrap().starts_with("a0"));
}

#[tokio::test]
async fn upsert_by_external_id_is_idempotent() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let api = Api::new(&sim).await;
    let body = json!({"Subject": "Incident Q1", "Priority": "High"});
    let (s1, b1) =
        api.send(reqwest::Method::PATCH, "sobjects/Case/PagerDuty_Incident_Id__c/Q1", Some(body.clone())).await;
    assert_eq!(s1, 201);
    assert_eq!(b1["created"], true);
    let (s2, b2) = api
        .send(reqwest::Method::PATCH, "sobjects/Case/PagerDuty_Incident_Id__c/Q1", Some(json!({"Priority": "Low"})))
        .await;
    assert_eq!(s2, 200);
    assert_eq!(b2["created"], false);
    assert_eq!(b1["id"], b2["id"]);
    assert_eq!(sim.records("Case").len(), 1);
    assert_eq!(sim.records("Case")[0]["Priority"], "Low");
    // Read back by the same external id.
    let (s, rec) = api.send(reqwest::Method::GET, "sobjects/Case/PagerDuty_Incident_Id__c/Q1", None).await;
    assert_eq!(s, 200);
    assert_eq!(rec["Id"], b1["id"]);
    assert_eq!(api.send(reqwest::Method::GET, "sobjects/Case/PagerDuty_Incident_Id__c/Q2", None).await.0, 404);
    let (s, e) = api.send(reqwest::Method::PATCH, "sobjects/Case/Subject/x", Some(json!({}))).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (404, "NOT_FOUND"));
}

#[tokio::test]
async fn composite_resolves_references_and_counts_one_call() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let api = Api::new(&sim).await;
    let before = sim.api_usage().0;
    let body = json!({"allOrNone": true, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v62.0/sobjects/Case", "referenceId": "newCase", "body": {"Subject": "from composite"}},
        {"method": "POST", "url": "/services/data/v62.0/sobjects/CaseComment", "referenceId": "newComment", "body": {"ParentId": "@{newCase.id}", "CommentBody": "[PagerDuty] created"}},
        {"method": "GET", "url": "/services/data/v62.0/sobjects/Case/@{newCase.id}", "referenceId": "readBack"},
    ]});
    let (s, r) = api.send(reqwest::Method::POST, "composite", Some(body)).await;
    assert_eq!(s, 200);
    let resp = r["compositeResponse"].as_array().unwrap();
    assert_eq!(resp.iter().map(|x| x["httpStatusCode"].as_u64().unwrap()).collect::<Vec<_>>(), [201, 201, 200]);
    assert_eq!(resp[0]["referenceId"], "newCase");
    assert!(resp[0]["httpHeaders"]["Location"].as_str().unwrap().contains("/sobjects/Case/"));
    let case_id = resp[0]["body"]["id"].as_str().unwrap();
    assert_eq!(sim.records("CaseComment")[0]["ParentId"], case_id);
    assert_eq!(resp[2]["body"]["Subject"], "from composite");
    assert_eq!(sim.api_usage().0 - before, 1, "a composite request is one API call");
}

#[tokio::test]
async fn composite_all_or_none_rolls_back_with_processing_halted() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let api = Api::new(&sim).await;
    let body = json!({"allOrNone": true, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v62.0/sobjects/Case", "referenceId": "newCase", "body": {"Subject": "rolled back"}},
        {"method": "POST", "url": "/services/data/v62.0/sobjects/CaseComment", "referenceId": "badComment", "body": {"CommentBody": "no parent"}},
        {"method": "POST", "url": "/services/data/v62.0/sobjects/Case", "referenceId": "after", "body": {"Subject": "never"}},
    ]});
    let (s, r) = api.send(reqwest::Method::POST, "composite", Some(body.clone())).await;
    assert_eq!(s, 200);
    let resp = r["compositeResponse"].as_array().unwrap();
    assert_eq!(resp[0]["httpStatusCode"], 400);
    assert_eq!(resp[0]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(
        resp[0]["body"][0]["message"],
        "The transaction was rolled back since another operation in the same transaction failed."
    );
    assert_eq!(resp[1]["body"][0]["errorCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(resp[2]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert!(sim.records("Case").is_empty());
    assert!(sim.changes().is_empty());

    // Without allOrNone the successful subrequest stays.
    let mut partial = body.clone();
    partial["allOrNone"] = json!(false);
    let (_, r) = api.send(reqwest::Method::POST, "composite", Some(partial)).await;
    let codes: Vec<u64> =
        r["compositeResponse"].as_array().unwrap().iter().map(|x| x["httpStatusCode"].as_u64().unwrap()).collect();
    assert_eq!(codes, [201, 400, 201]);
    assert_eq!(sim.records("Case").len(), 2);
}

#[tokio::test]
async fn composite_with_more_than_25_subrequests_is_refused() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let api = Api::new(&sim).await;
    let subs: Vec<Value> = (0..26).map(|i| json!({"method": "POST", "url": "/services/data/v62.0/sobjects/Case", "referenceId": format!("c{i}"), "body": {"Subject": "x"}})).collect();
    let (s, e) =
        api.send(reqwest::Method::POST, "composite", Some(json!({"allOrNone": false, "compositeRequest": subs}))).await;
    assert_eq!(s, 400);
    assert!(e[0]["errorCode"].is_string());
    assert!(sim.records("Case").is_empty());
}

#[tokio::test]
async fn daily_limit_is_reported_and_enforced() {
    let sim = SalesforceSim::start(SfSimConfig { daily_api_limit: 3, ..Default::default() }).await;
    let api = Api::new(&sim).await;
    for used in 1..=3 {
        let r = api.req(reqwest::Method::GET, "limits").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["sforce-limit-info"], format!("api-usage={used}/3").as_str());
    }
    let r = api.req(reqwest::Method::GET, "limits").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=3/3");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    sim.set_api_used(0);
    let (_, limits) = api.send(reqwest::Method::GET, "limits", None).await;
    assert_eq!(limits["DailyApiRequests"], json!({"Max": 3, "Remaining": 2}));
}

#[tokio::test]
async fn faults_are_real_error_bodies_seeded_and_reproducible() {
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    let api = Api::new(&sim).await;
    sim.fail_next(1, FaultKind::LockRow);
    sim.fail_next(1, FaultKind::ServerError);
    sim.fail_next(1, FaultKind::Drop);
    let (s, e) = api.send(reqwest::Method::GET, "limits", None).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (400, "UNABLE_TO_LOCK_ROW"));
    let (s, e) = api.send(reqwest::Method::GET, "limits", None).await;
    assert_eq!((s, e[0]["errorCode"].as_str().unwrap()), (503, "SERVER_UNAVAILABLE"));
    assert!(api.req(reqwest::Method::GET, "limits").send().await.is_err());
    assert_eq!(api.send(reqwest::Method::GET, "limits", None).await.0, 200);
    // A slow answer beyond the client's timeout is a timeout.
    sim.fail_next(1, FaultKind::Slow(Duration::from_millis(300)));
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(50)).build().unwrap();
    let r = impatient.get(format!("{}/limits", api.base)).bearer_auth(&api.token).send().await;
    assert!(r.unwrap_err().is_timeout());

    let run = |seed| {
        let sim = &sim;
        let api = &api;
        async move {
            sim.set_faults(FaultConfig { seed, lock_row_rate: 0.3, server_error_rate: 0.2, ..FaultConfig::none() });
            let mut out = Vec::new();
            for _ in 0..25 {
                out.push(api.send(reqwest::Method::GET, "limits", None).await.0);
            }
            out
        }
    };
    let a = run(3).await;
    let b = run(3).await;
    assert_eq!(a, b);
    assert!(a.contains(&400) && a.contains(&503) && a.contains(&200), "{a:?}");
}

type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

async fn receiver(responses: Vec<(u16, &'static str)>) -> (String, Received, tokio::sync::oneshot::Sender<()>) {
    let got: Received = Arc::default();
    let queue = Arc::new(Mutex::new(responses));
    let g = got.clone();
    let app = Router::new().route(
        "/in",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            let q = queue.clone();
            async move {
                g.lock().unwrap().push((headers, body.to_vec()));
                let (status, text) = {
                    let mut q = q.lock().unwrap();
                    if q.is_empty() { (200, "") } else { q.remove(0) }
                };
                (StatusCode::from_u16(status).unwrap(), text.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
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

async fn wait_for(got: &Received, n: usize) -> Vec<(HeaderMap, Vec<u8>)> {
    for _ in 0..300 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    got.lock().unwrap().clone()
}

#[tokio::test]
async fn trigger_posts_old_and_new_maps_signed_with_the_inbound_secret() {
    let (url, got, _stop) = receiver(vec![]).await;
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    sim.set_trigger_target(Some(TriggerTarget { url, secrets: vec!["inbound".into()], objects: vec!["Case".into()] }));
    let id = sim.insert_record("Case", json!({"Subject": "seeded", "Priority": "Low"}));
    sim.update_record("Case", &id, json!({"Priority": "High"}), "agent@example.com").unwrap();
    let got = wait_for(&got, 1).await;
    assert_eq!(got.len(), 1);
    let (h, body) = &got[0];
    let ts: i64 = h["x-pdsync-timestamp"].to_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert_eq!(h["x-pdsync-signature"].to_str().unwrap(), sign_trigger("inbound", ts, body));
    let p: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(p["schema"], 1);
    assert_eq!(p["object"], "Case");
    assert_eq!(p["operation"], "update");
    assert_eq!(p["user"]["username"], "agent@example.com");
    assert_eq!(p["old"][&id]["Priority"], "Low");
    assert_eq!(p["new"][&id]["Priority"], "High");
    // Record shape as JSON.serialize writes it: attributes first, then fields; Apex datetimes.
    let rec = p["new"][&id].as_object().unwrap();
    assert_eq!(rec.keys().next().unwrap(), "attributes");
    assert_eq!(rec["attributes"]["type"], "Case");
    assert!(rec["attributes"]["url"].as_str().unwrap().ends_with(&format!("/sobjects/Case/{id}")));
    assert!(
        rec["LastModifiedDate"].as_str().unwrap().ends_with(".000+0000")
            || rec["LastModifiedDate"].as_str().unwrap().ends_with("+0000")
    );
    let sample: Value = serde_json::from_slice(
        &std::fs::read("/work/shared/samples/apex-json-serialize/NOT-A-MAP-gammone-single-Account-JSON.serialize.json")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(sample.as_object().unwrap().keys().next().unwrap(), "attributes");
}

#[tokio::test]
async fn api_inserts_fire_the_trigger_with_null_old() {
    let (url, got, _stop) = receiver(vec![]).await;
    let sim = SalesforceSim::start(SfSimConfig::default()).await;
    sim.set_trigger_target(Some(TriggerTarget { url, secrets: vec!["a".into(), "b".into()], objects: vec![] }));
    let api = Api::new(&sim).await;
    api.send(reqwest::Method::POST, "sobjects/Case", Some(json!({"Subject": "api"}))).await;
    let got = wait_for(&got, 1).await;
    let (h, body) = &got[0];
    let p: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(p["operation"], "insert");
    assert!(p["old"].is_null());
    assert_eq!(p["user"]["username"], "integration@example.com");
    let ts: i64 = h["x-pdsync-timestamp"].to_str().unwrap().parse().unwrap();
    assert_eq!(
        h["x-pdsync-signature"].to_str().unwrap(),
        format!("{},{}", sign_trigger("a", ts, body), sign_trigger("b", ts, body))
    );
}

const ACK: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#;
const NACK: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>false</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#;

#[tokio::test]
async fn outbound_message_is_retried_until_acked_and_shaped_like_salesforce() {
    let (url, got, _stop) = receiver(vec![(500, ""), (200, NACK), (200, ACK)]).await;
    let messenger =
        OutboundMessenger::new("00D5g0000SIMORGEQ5", "http://127.0.0.1:1").with_retry(5, Duration::from_millis(1));
    let rec = json!({"attributes": {"type": "Case"}, "Id": "5005g00000AbCdEAAS", "Subject": "A & B <x>", "CreatedDate": "2026-11-22T10:00:00.000+0000", "IsClosed": false, "Owner": {"Name": "x"}, "Reason": null});
    let xml = messenger.envelope("Case", &[rec]);
    let report = messenger.send(&url, &xml).await;
    assert_eq!(report.attempts, vec![Some(500), Some(200), Some(200)]);
    assert!(report.acked);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|(_, b)| *b == got[0].1), "re-sends are identical (same notification ids)");
    let (h, body) = &got[0];
    assert!(h["content-type"].to_str().unwrap().starts_with("text/xml"));
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.contains("<OrganizationId>00D5g0000SIMORG</OrganizationId>"));
    assert!(text.contains("<sf:Subject>A &amp; B &lt;x&gt;</sf:Subject>"));
    assert!(text.contains("<sf:CreatedDate>2026-11-22T10:00:00.000Z</sf:CreatedDate>"));
    assert!(!text.contains("Reason") && !text.contains("Owner"));
    // Same element structure as a real captured request.
    let real = std::fs::read_to_string(
        "/work/shared/samples/salesforce-outbound-message/aspnet-webhooks-request-contact-2notifications.xml",
    )
    .unwrap();
    for tag in [
        "<soapenv:Envelope",
        "<soapenv:Body>",
        "<notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\">",
        "<ActionId>",
        "<SessionId>",
        "<EnterpriseUrl>",
        "<PartnerUrl>",
        "<Notification>",
        "<Id>04l",
        "xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\"",
        "<sf:Id>",
    ] {
        assert!(real.contains(tag) && text.contains(tag), "{tag}");
    }
    // The real ack samples are recognised.
    for f in ["aspnet-webhooks-ack-response.xml", "aspnet-webhooks-NotificationResponse-ack.xml"] {
        let ack = std::fs::read_to_string(format!("/work/shared/samples/salesforce-outbound-message/{f}")).unwrap();
        assert!(sim::salesforce::emit::is_ack(&ack), "{f}");
    }
}

#[tokio::test]
async fn outbound_message_gives_up_after_bounded_attempts() {
    let (url, _got, _stop) = receiver(vec![(503, ""), (503, ""), (503, "")]).await;
    let messenger = OutboundMessenger::new("00D5g0000SIMORGEQ5", "http://x").with_retry(3, Duration::from_millis(1));
    let report = messenger.send(&url, &messenger.envelope("Case", &[json!({"Id": "5005g00000AbCdEAAS"})])).await;
    assert!(!report.acked);
    assert_eq!(report.attempts.len(), 3);
}

#[test]
fn committed_test_keys_match_each_other() {
    let k = test_keys();
    assert!(k.private_key_path.exists() && k.certificate_path.exists() && k.public_key_path.exists());
    assert!(k.private_key_pem.contains("BEGIN PRIVATE KEY"));
    assert!(k.certificate_pem.contains("BEGIN CERTIFICATE"));
    // Signed with the private key, verified with the public key.
    let claims = json!({"iss": "a", "exp": chrono::Utc::now().timestamp() + 60});
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(k.private_key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let dk = jsonwebtoken::DecodingKey::from_rsa_pem(k.public_key_pem.as_bytes()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.required_spec_claims.clear();
    assert!(jsonwebtoken::decode::<Value>(&jwt, &dk, &v).is_ok());
}
