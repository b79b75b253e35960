//! The local Lambda Runtime API emulator speaks the paths and headers `lambda_runtime` uses.

use sim::runtime_api::{Invocation, Outcome, RuntimeApi};

const BASE: &str = "2018-06-01/runtime";

#[tokio::test]
async fn next_hands_out_the_event_with_lambda_headers_and_response_is_recorded() {
    let api = RuntimeApi::start().await;
    let invocation = Invocation::new("retry", r#"{"Records":[]}"#, 10_000);
    api.invoke(invocation.clone());
    let http = reqwest::Client::new();
    let next = http.get(format!("http://{}/{BASE}/invocation/next", api.endpoint())).send().await.unwrap();
    assert_eq!(next.status(), 200);
    let header = |name: &str| next.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(header("lambda-runtime-aws-request-id"), invocation.request_id);
    assert_eq!(header("lambda-runtime-deadline-ms"), invocation.deadline_ms.to_string());
    assert_eq!(header("lambda-runtime-invoked-function-arn"), "arn:aws:lambda:us-east-1:123456789012:function:retry");
    assert!(header("lambda-runtime-trace-id").starts_with("Root="));
    assert_eq!(next.text().await.unwrap(), r#"{"Records":[]}"#);

    let id = &invocation.request_id;
    let posted = http
        .post(format!("http://{}/{BASE}/invocation/{id}/response", api.endpoint()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    assert_eq!(api.outcome().await, Some(Outcome::Response { request_id: id.clone(), body: "{}".into() }));
}

#[tokio::test]
async fn invocation_and_init_errors_are_recorded_apart() {
    let api = RuntimeApi::start().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}/{BASE}/{path}", api.endpoint());
    http.post(url("invocation/abc/error")).body("boom").send().await.unwrap();
    http.post(url("init/error")).body("no config").send().await.unwrap();
    assert_eq!(api.outcome().await, Some(Outcome::Error { request_id: "abc".into(), body: "boom".into() }));
    assert_eq!(api.outcome().await, Some(Outcome::InitError { body: "no config".into() }));
}
