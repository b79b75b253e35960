//! How requests are routed: what answers paths and methods outside the modelled endpoints, the
//! order of the checks, and paths as clients send them (slashes, encoded external ids).

use serde_json::{Value, json};

use super::{SalesforceSim, SfSimConfig};

struct Api {
    sim: SalesforceSim,
    token: String,
}

impl Api {
    async fn new() -> Api {
        let sim = SalesforceSim::start(SfSimConfig::default()).await;
        let token = sim.issue_token("integration@example.com");
        Api { sim, token }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r =
            reqwest::Client::new().request(method, format!("{}{path}", self.sim.base_url())).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

const V: &str = "/services/data/v62.0";

#[tokio::test]
async fn unknown_paths_and_methods_are_not_found() {
    let api = Api::new().await;
    for (method, path) in [
        (reqwest::Method::GET, "/nothing/here".to_string()),
        (reqwest::Method::GET, format!("{V}/nothing")),
        (reqwest::Method::POST, format!("{V}/sobjects")),
        (reqwest::Method::PUT, format!("{V}/sobjects/Case/5005g00000AAAAAAAA")),
        (reqwest::Method::GET, format!("{V}/sobjects/Nope__x/describe")),
        (reqwest::Method::HEAD, format!("{V}/limits")),
        (reqwest::Method::GET, "/services/oauth2/token".to_string()),
    ] {
        let (status, body) = api.send(method.clone(), &path, None).await;
        assert_eq!(status, 404, "{method} {path}");
        if method != reqwest::Method::HEAD {
            assert_eq!(body[0]["errorCode"], "NOT_FOUND", "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_malformed_version_is_not_found_and_not_counted() {
    let api = Api::new().await;
    let (status, _) = api.send(reqwest::Method::GET, "/services/data/latest/limits", None).await;
    assert_eq!(status, 404);
    assert_eq!(api.sim.api_usage().0, 0);
    let (status, _) = api.send(reqwest::Method::GET, &format!("{V}/nothing"), None).await;
    assert_eq!(status, 404);
    assert_eq!(api.sim.api_usage().0, 1, "an authenticated call counts, found or not");
}

#[tokio::test]
async fn describe_is_no_record_id() {
    let api = Api::new().await;
    let (status, body) =
        api.send(reqwest::Method::PATCH, &format!("{V}/sobjects/Case/describe"), Some(json!({}))).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("MALFORMED_ID")));
    let (status, body) = api.send(reqwest::Method::GET, &format!("{V}/sobjects/Case/describe"), None).await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Case")));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_before_routing() {
    let api = Api::new().await;
    let r = reqwest::Client::new()
        .post(format!("{}{V}/nothing", api.sim.base_url()))
        .bearer_auth(&api.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().contains_key("sforce-limit-info"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "JSON_PARSER_ERROR");
}

#[tokio::test]
async fn slashes_around_the_path_are_ignored() {
    let api = Api::new().await;
    let (status, body) =
        api.send(reqwest::Method::POST, &format!("{V}/sobjects/Account/"), Some(json!({"Name": "Acme"}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(api.sim.requests().pop().unwrap().path, format!("{V}/sobjects/Account/"));
}

#[tokio::test]
async fn external_id_values_are_kept_as_sent_in_the_path() {
    let api = Api::new().await;
    let path = format!("{V}/sobjects/Account/Key__c/a%20b");
    let (status, _) = api.send(reqwest::Method::PATCH, &path, Some(json!({"Name": "Acme"}))).await;
    assert_eq!(status, 201);
    assert_eq!(api.sim.records("Account")[0]["Key__c"], "a%20b");
    assert_eq!(api.send(reqwest::Method::GET, &path, None).await.0, 200);
}
