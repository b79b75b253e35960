//! How requests are routed: what answers paths and methods outside the modelled endpoints, the
//! order of the checks, and paths as clients send them (slashes, encoded ids).

use serde_json::Value;

use super::openapi::ACCEPT_V2;
use super::{PagerdutySim, PdSimConfig, RateLimit};

async fn get(sim: &PagerdutySim, path: &str, token: &str) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", sim.base_url()))
        .header("Accept", ACCEPT_V2)
        .header("Authorization", format!("Token token={token}"))
        .send()
        .await
        .unwrap();
    let limit = r.headers().get("ratelimit-limit").map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), limit, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_path_outside_the_api_is_404_before_authentication() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let (status, limit, body) = get(&sim, "/no/such/thing", "wrong").await;
    assert_eq!((status, limit), (404, None));
    assert_eq!(body["error"]["code"], 2100);
}

#[tokio::test]
async fn an_api_path_the_simulator_does_not_model_is_404_not_simulated_with_rate_headers() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let (status, limit, body) = get(&sim, "/teams", "sim-token").await;
    assert_eq!((status, limit.as_deref()), (404, Some("960")));
    assert_eq!(body["error"]["errors"][0], "This endpoint is not simulated");
}

#[tokio::test]
async fn a_method_the_api_does_not_have_is_405_from_the_spec() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let r = reqwest::Client::new()
        .delete(format!("{}/priorities", sim.base_url()))
        .header("Accept", ACCEPT_V2)
        .header("Authorization", "Token token=sim-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("ratelimit-remaining"));
}

#[tokio::test]
async fn authentication_is_checked_before_the_rate_limit() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    sim.set_rate_limit(RateLimit { requests: 1, window: std::time::Duration::from_secs(60) });
    assert_eq!(get(&sim, "/priorities", "sim-token").await.0, 200);
    assert_eq!(get(&sim, "/priorities", "sim-token").await.0, 429);
    assert_eq!(get(&sim, "/priorities", "wrong").await.0, 401);
}

#[tokio::test]
async fn slashes_around_the_path_are_ignored_and_logged_as_sent() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let (status, _, body) = get(&sim, "/priorities/?limit=5", "sim-token").await;
    assert_eq!(status, 200);
    assert_eq!(body["priorities"].as_array().map(Vec::len), Some(5));
    let logged = sim.requests().pop().unwrap();
    assert_eq!((logged.path.as_str(), logged.query.as_deref()), ("/priorities/", Some("limit=5")));
}

#[tokio::test]
async fn ids_are_compared_as_sent_in_the_path() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    assert_eq!(get(&sim, "/users/PUSR001", "sim-token").await.0, 200);
    // Percent-encoded, the id is another id (the simulator never decoded path segments).
    assert_eq!(get(&sim, "/users/PUSR%30%301", "sim-token").await.0, 404);
}

async fn token_request(sim: &PagerdutySim, client_id: &str, secret: &str, scope: &str) -> (u16, Value) {
    let form =
        [("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret), ("scope", scope)];
    let r = reqwest::Client::new().post(format!("{}/oauth/token", sim.base_url())).form(&form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get_bearer(sim: &PagerdutySim, path: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", sim.base_url()))
        .header("Accept", ACCEPT_V2)
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_token_endpoint_issues_expiring_bearer_tokens_for_the_granted_scopes_only() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let (status, answer) =
        token_request(&sim, "sim-client", "sim-client-secret", "as_account-us.sim priorities.read analytics.read")
            .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_type"], "bearer");
    assert_eq!(answer["expires_in"], 2_592_000);
    assert_eq!(answer["scope"], "as_account-us.sim priorities.read", "only what the client may have");
    let token = answer["access_token"].as_str().unwrap().to_string();
    assert_eq!(get_bearer(&sim, "/priorities", &token).await.0, 200);
    let (status, body) = get_bearer(&sim, "/users", &token).await;
    assert_eq!(status, 403, "users.read was not granted: {body}");
    assert!(body["error"]["errors"][0].as_str().unwrap().contains("users.read"), "{body}");
    sim.expire_app_tokens();
    assert_eq!(get_bearer(&sim, "/priorities", &token).await.0, 401, "expired");
    assert_eq!(get_bearer(&sim, "/priorities", "pdus+_forged").await.0, 401);
    assert_eq!(sim.token_requests(), 1);
}

#[tokio::test]
async fn the_token_endpoint_refuses_unknown_clients_like_pagerduty() {
    let sim = PagerdutySim::start(PdSimConfig::default()).await;
    let (status, answer) = token_request(&sim, "sim-client", "wrong-secret", "as_account-us.sim").await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("invalid_client")));
    let (status, answer) = token_request(&sim, "sim-client", "sim-client-secret", "incidents.read").await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_scope")), "no account named");
    sim.revoke_oauth_client("sim-client");
    let (status, _) = token_request(&sim, "sim-client", "sim-client-secret", "as_account-us.sim").await;
    assert_eq!(status, 401, "a revoked client");
    assert_eq!(sim.token_requests(), 3);
}
