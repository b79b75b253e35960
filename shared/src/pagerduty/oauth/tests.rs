//! The token secret's shapes and the app token cache: expiry margin, refresh after a 401, one
//! fetch for many concurrent callers, errors classified once.

use std::sync::atomic::AtomicUsize;

use async_trait::async_trait;

use super::*;
use crate::clock::ManualClock;
use crate::transport::testing::Scripted;
use crate::transport::{Failure, Request, Response, TransportError};

fn parse(text: &str) -> Result<PagerdutyAuth, SecretsError> {
    PagerdutyAuth::from_secret(&Secret::new(text), "pd-token")
}

fn app(text: &str) -> AppCredentials {
    match parse(text).expect("parses") {
        PagerdutyAuth::App(app) => app,
        other => panic!("not an app: {other:?}"),
    }
}

const APP: &str = r#"{"client_id":"cid-1","client_secret":"s3cr3t","subdomain":"acme"}"#;

#[test]
fn an_api_key_is_the_bare_key_or_the_token_json() {
    assert_eq!(parse("u+abcDEF").unwrap(), PagerdutyAuth::ApiKey(Secret::new("u+abcDEF")));
    assert_eq!(parse(r#"{"token":"u+abcDEF"}"#).unwrap(), PagerdutyAuth::ApiKey(Secret::new("u+abcDEF")));
    assert_eq!(parse(r#"{"token":"u+abcDEF"}"#).unwrap().kind(), "REST API key");
    assert!(parse("two words").is_err());
    assert!(parse(r#"{"tokn":"x"}"#).unwrap_err().to_string().contains("\"token\""));
}

#[test]
fn an_oauth_client_defaults_to_the_us_region_and_the_bridges_scopes() {
    let creds = app(APP);
    assert_eq!(creds.client_id, ClientId("cid-1".into()));
    assert_eq!(creds.account, Account { region: PagerdutyRegion::Us, subdomain: "acme".into() });
    let defaults: Vec<String> = DEFAULT_SCOPES.iter().map(|s| s.0.to_string()).collect();
    assert_eq!(creds.scopes, defaults);
    assert!(creds.scope_param().starts_with("as_account-us.acme incidents.read "), "{}", creds.scope_param());
    assert_eq!(parse(APP).unwrap().kind(), "Scoped OAuth app");
}

#[test]
fn an_eu_client_names_its_region_in_the_account_scope_and_keeps_its_own_scopes() {
    let creds = app(
        r#"{"client_id":"c","client_secret":"s","subdomain":"acme","region":"EU","scopes":"incidents.write as_account-us.other incidents.read"}"#,
    );
    assert_eq!(creds.scope_param(), "as_account-eu.acme incidents.write incidents.read");
    let listed = app(r#"{"client_id":"c","client_secret":"s","subdomain":"acme","scopes":["incidents.read"]}"#);
    assert_eq!(listed.scopes, ["incidents.read"]);
}

#[test]
fn a_malformed_client_names_the_field_never_a_value() {
    let err = parse(r#"{"client_id":"cid","subdomain":"acme","client_secrt":"s3cr3t-value"}"#).unwrap_err();
    assert!(err.to_string().contains("client_secret"), "{err}");
    assert!(!err.to_string().contains("s3cr3t-value"), "{err}");
    assert_eq!(err.class(), Class::Auth);
    let err = parse(r#"{"client_id":"c","client_secret":"s","subdomain":"acme","region":"apac"}"#).unwrap_err();
    assert!(err.to_string().contains("region"), "{err}");
    let err = parse(r#"{"client_id":"c","client_secret":"s","subdomain":"acme","scopes":[]}"#).unwrap_err();
    assert!(err.to_string().contains("scopes"), "{err}");
    assert!(!format!("{:?}", app(APP)).contains("s3cr3t"));
}

#[test]
fn every_action_names_its_scopes_or_says_pagerduty_documents_none() {
    for kind in ActionKind::ALL {
        match scopes_for(*kind) {
            Some(scopes) => assert!(scopes.iter().all(|s| DEFAULT_SCOPES.contains(s)), "{kind}: beyond the defaults"),
            None => assert_eq!(*kind, ActionKind::RunAutomationAction),
        }
    }
}

#[test]
fn a_scope_report_names_what_is_missing_and_who_needs_it() {
    let granted: Vec<String> =
        ["incidents.read", "users.read", "webhook_subscriptions.read", "webhook_subscriptions.write"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let actions =
        [ActionKind::CreateIncident, ActionKind::SetPriority, ActionKind::AddNote, ActionKind::RunAutomationAction];
    let report = check_scopes(&granted, actions);
    assert_eq!(
        report.missing,
        vec![
            (INCIDENTS_WRITE, vec!["create_incident", "set_priority", "add_note"]),
            (PRIORITIES_READ, vec!["create_incident", "set_priority"]),
        ]
    );
    assert_eq!(report.unsupported, [ActionKind::RunAutomationAction]);
    let all: Vec<String> = DEFAULT_SCOPES.iter().map(|s| s.0.to_string()).collect();
    assert!(check_scopes(&all, [ActionKind::CreateIncident, ActionKind::AddCaseComment]).is_complete());
    assert_eq!(check_scopes(&[], []).missing.len(), BASE_SCOPES.len(), "the bridge's own needs");
}

fn token_answer(token: &str, expires_in: u64) -> String {
    serde_json::json!({
        "access_token": token,
        "token_type": "bearer",
        "scope": "as_account-us.acme incidents.read incidents.write",
        "expires_in": expires_in,
    })
    .to_string()
}

/// A cache answering from `transport`, on a manual clock.
fn cache(transport: Arc<dyn Transport>) -> (TokenCache, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    (TokenCache::new(transport, "http://identity.test/", clock.clone()), clock)
}

/// Answers token requests with `pdus+1`, `pdus+2`, ... living `expires_in` seconds.
fn issuing(expires_in: u64) -> Arc<Scripted> {
    let n = AtomicUsize::new(0);
    Scripted::new(move |_| {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((200, vec![], token_answer(&format!("pdus+{i}"), expires_in)))
    })
}

#[tokio::test]
async fn the_token_request_is_the_documented_client_credentials_form() {
    let http = issuing(86_400);
    let (cache, _) = cache(http.clone());
    let token = cache.token(&app(APP)).await.unwrap();
    assert_eq!(token.token.expose(), "pdus+1");
    assert!(token.has(INCIDENTS_WRITE) && !token.has(PRIORITIES_READ), "the granted scopes, not the asked");
    let seen = &http.requests()[0];
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/oauth/token"));
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&seen.body).into_owned().collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(field("grant_type"), Some("client_credentials"));
    assert_eq!(field("client_id"), Some("cid-1"));
    assert_eq!(field("client_secret"), Some("s3cr3t"));
    assert!(field("scope").unwrap().starts_with("as_account-us.acme "));
    assert!(seen.headers.iter().any(|(k, v)| k == "content-type" && v == "application/x-www-form-urlencoded"));
}

#[tokio::test]
async fn a_token_is_reused_until_the_margin_before_it_expires_then_replaced() {
    let http = issuing(86_400);
    let (cache, clock) = cache(http.clone());
    let creds = app(APP);
    assert_eq!(cache.token(&creds).await.unwrap().token.expose(), "pdus+1");
    let just_before = 86_400 - REFRESH_MARGIN.as_secs() as i64 - 1;
    clock.advance(chrono::Duration::seconds(just_before));
    assert_eq!(cache.token(&creds).await.unwrap().token.expose(), "pdus+1", "still outside the margin");
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(cache.token(&creds).await.unwrap().token.expose(), "pdus+2", "inside the margin: replaced");
    assert_eq!(cache.fetches(), 2);
}

#[tokio::test]
async fn a_short_lived_token_is_replaced_at_half_its_life() {
    let (cache, clock) = cache(issuing(60));
    let creds = app(APP);
    cache.token(&creds).await.unwrap();
    clock.advance(chrono::Duration::seconds(29));
    assert_eq!(cache.token(&creds).await.unwrap().generation, 1);
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(cache.token(&creds).await.unwrap().generation, 2);
}

#[tokio::test]
async fn a_changed_client_gets_its_own_token() {
    let (cache, _) = cache(issuing(86_400));
    cache.token(&app(APP)).await.unwrap();
    let other = app(r#"{"client_id":"cid-2","client_secret":"s","subdomain":"acme"}"#);
    assert_eq!(cache.token(&other).await.unwrap().token.expose(), "pdus+2");
}

/// Answers token requests after a pause, so that concurrent callers overlap the fetch.
struct Slow {
    fetches: AtomicUsize,
}

#[async_trait]
impl Transport for Slow {
    async fn send(&self, _request: Request, _timeout: Duration) -> Result<Response, TransportError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(http::Response::builder().status(200).body(token_answer(&format!("pdus+{n}"), 86_400).into_bytes()).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_token_fetch() {
    let slow = Arc::new(Slow { fetches: AtomicUsize::new(0) });
    let (cache, _) = cache(slow.clone());
    let cache = Arc::new(cache);
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (cache, start) = (cache.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                cache.token(&app(APP)).await.unwrap().token.expose().to_string()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "pdus+1");
    }
    assert_eq!(slow.fetches.load(Ordering::SeqCst), 1, "one fetch for 64 callers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_401s_replace_the_token_once() {
    let slow = Arc::new(Slow { fetches: AtomicUsize::new(0) });
    let (cache, _) = cache(slow.clone());
    let cache = Arc::new(cache);
    let stale = cache.token(&app(APP)).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (cache, start, stale) = (cache.clone(), start.clone(), stale.clone());
            tokio::spawn(async move {
                start.wait().await;
                cache.refresh(&app(APP), &stale).await.unwrap().token.expose().to_string()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "pdus+2");
    }
    assert_eq!(slow.fetches.load(Ordering::SeqCst), 2, "the first token and one replacement");
}

#[tokio::test]
async fn a_refused_client_is_auth_and_says_what_to_do_an_outage_is_transient() {
    let refused = Scripted::new(|_| {
        Ok((401, vec![], r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#.into()))
    });
    let (c, _) = cache(refused);
    let err = c.token(&app(APP)).await.unwrap_err();
    assert!(matches!(err, OAuthError::InvalidClient { .. }), "{err:?}");
    assert_eq!(err.class(), Class::Auth);
    let text = err.to_string();
    assert!(text.contains("cid-1") && text.contains("App Registration"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");

    let scope = Scripted::new(|_| Ok((400, vec![], r#"{"error":"invalid_scope"}"#.into())));
    assert_eq!(cache(scope).0.token(&app(APP)).await.unwrap_err().class(), Class::Auth);
    let down = Scripted::new(|_| Ok((503, vec![], "<html>".into())));
    assert_eq!(cache(down).0.token(&app(APP)).await.unwrap_err().class(), Class::Transient);
    let timeout = Scripted::new(|_| Err(TransportError::new(Failure::Timeout, "timed out")));
    let err = cache(timeout).0.token(&app(APP)).await.unwrap_err();
    assert!(matches!(err, OAuthError::Transport { timeout: true, .. }) && err.class() == Class::Transient);
    let cut = Scripted::new(|_| Ok((200, vec![], r#"{"access_token":"pdus+x"}"#.into())));
    let err = cache(cut).0.token(&app(APP)).await.unwrap_err();
    assert_eq!(err.class(), Class::Transient);
    assert!(!err.to_string().contains("pdus+x"), "{err}");
}

#[tokio::test]
async fn an_apps_shared_rate_budget_outlives_its_tokens() {
    use crate::pagerduty::Authorization;
    let (cache, _) = cache(issuing(86_400));
    let first = cache.token(&app(APP)).await.unwrap();
    let second = cache.refresh(&app(APP), &first).await.unwrap();
    assert_ne!(first.token, second.token);
    let (a, b) = (Authorization::App(first), Authorization::App(second));
    assert_eq!(a.budget_key(), b.budget_key(), "one budget per client, whatever its token");
    assert_ne!(a.budget_key(), Authorization::ApiKey(Secret::new("cid-1")).budget_key());
}
