//! The PagerDuty account the bridge acts in: API base, the user it acts as, and the secrets of
//! its API token and webhook signing secrets. Builds the REST client.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::ConfigError;
use super::vars::Vars;
use crate::clock::{Clock, SystemClock};
use crate::pagerduty::{PagerdutyAuth, PagerdutyClient, TokenCache, oauth};
use crate::secrets::{CachedSecrets, Credential};
use crate::transport::Transport;

/// PagerDuty service region: decides the REST API base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagerdutyRegion {
    Us,
    Eu,
}

impl PagerdutyRegion {
    pub fn api_base(self) -> &'static str {
        match self {
            PagerdutyRegion::Us => "https://api.pagerduty.com",
            PagerdutyRegion::Eu => "https://api.eu.pagerduty.com",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagerdutyConfig {
    /// REST base URL, from `PAGERDUTY_REGION` (us|eu) or `PAGERDUTY_API_BASE`.
    pub api_base: Url,
    /// PagerDuty's OAuth token endpoint root (`PAGERDUTY_IDENTITY_BASE`, default
    /// `https://identity.pagerduty.com` for both regions): used when the token secret holds an
    /// OAuth client.
    pub identity_base: Url,
    /// Email of the PagerDuty user the bridge acts as (`From` header), `PAGERDUTY_FROM_EMAIL`.
    pub from_email: String,
    /// Id of that PagerDuty user (`PAGERDUTY_USER_ID`, optional: looked up by email when empty).
    pub user_id: String,
    /// The services the agent console's status panel shows when the component names none
    /// (`CONSOLE_SERVICE_IDS`, comma-separated; optional).
    pub console_service_ids: Vec<String>,
    /// The service an agent console escalation opens its incident on
    /// (`CONSOLE_ESCALATION_SERVICE_ID`, optional: empty refuses escalations as not set up).
    pub console_escalation_service_id: String,
    /// Secret holding the REST API token (`PAGERDUTY_TOKEN_SECRET_ID`).
    pub token_secret_id: String,
    /// Secret holding the webhook signing secrets (`PAGERDUTY_WEBHOOK_SECRET_ID`).
    pub webhook_secret_id: String,
}

impl PagerdutyConfig {
    pub(crate) fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let api_base = match vars.get("PAGERDUTY_API_BASE") {
            Some(base) => Vars::url("PAGERDUTY_API_BASE", base, "an http(s) URL such as https://api.pagerduty.com")?,
            None => {
                let region = match vars.get("PAGERDUTY_REGION").map(str::to_ascii_lowercase).as_deref() {
                    None | Some("us") => PagerdutyRegion::Us,
                    Some("eu") => PagerdutyRegion::Eu,
                    Some(other) => {
                        return Err(ConfigError::Invalid {
                            name: "PAGERDUTY_REGION",
                            value: other.to_string(),
                            hint: "us or eu",
                        });
                    }
                };
                Url::parse(region.api_base()).expect("region URLs are valid")
            }
        };
        let identity_base = Vars::url(
            "PAGERDUTY_IDENTITY_BASE",
            vars.get("PAGERDUTY_IDENTITY_BASE").unwrap_or(oauth::DEFAULT_IDENTITY_BASE),
            "an http(s) URL such as https://identity.pagerduty.com",
        )?;
        let from_email = vars.required("PAGERDUTY_FROM_EMAIL", "the email of the PagerDuty user the bridge acts as")?;
        if !from_email.contains('@') {
            return Err(ConfigError::Invalid {
                name: "PAGERDUTY_FROM_EMAIL",
                value: from_email,
                hint: "an email address of a PagerDuty user",
            });
        }
        Ok(Self {
            api_base,
            identity_base,
            from_email,
            user_id: vars.optional("PAGERDUTY_USER_ID"),
            console_escalation_service_id: vars.optional("CONSOLE_ESCALATION_SERVICE_ID"),
            console_service_ids: vars
                .optional("CONSOLE_SERVICE_IDS")
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .collect(),
            token_secret_id: vars
                .required("PAGERDUTY_TOKEN_SECRET_ID", "the secret holding the PagerDuty API token")?,
            webhook_secret_id: vars
                .required("PAGERDUTY_WEBHOOK_SECRET_ID", "the secret holding the webhook signing secrets")?,
        })
    }

    /// The REST client. It reads the token secret through `secrets` when a call needs it, not
    /// now: a rotated key or OAuth client is used once the cache ages, and one that cannot be
    /// read fails the call (classified like any other failure) instead of the start. The secret's
    /// shape decides the kind ([`PagerdutyAuth::from_secret`]).
    pub fn client(&self, http: Arc<dyn Transport>, secrets: Arc<CachedSecrets>, timeout: Duration) -> PagerdutyClient {
        self.client_with_clock(http, secrets, timeout, Arc::new(SystemClock))
    }

    /// [`Self::client`] whose app tokens age by `clock` (tests).
    pub fn client_with_clock(
        &self,
        http: Arc<dyn Transport>,
        secrets: Arc<CachedSecrets>,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> PagerdutyClient {
        let token = Credential::stored(secrets, &self.token_secret_id, PagerdutyAuth::from_secret);
        let oauth = Arc::new(TokenCache::new(http.clone(), self.identity_base.as_str(), clock).with_timeout(timeout));
        PagerdutyClient::with_credential(http, self.api_base.clone(), token, self.from_email.clone())
            .with_timeout(timeout)
            .with_token_cache(oauth)
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use chrono::Utc;

    use super::*;
    use crate::class::{Class, Classify};
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::config::tests::complete_env;
    use crate::pagerduty::PagerdutyError;
    use crate::secrets::{SecretSource, SecretsError, StaticSecrets};
    use crate::transport::testing::Scripted;

    const INCIDENT: &str = r#"{"incident":{"id":"Q1","status":"triggered"}}"#;

    fn pagerduty() -> PagerdutyConfig {
        Config::from_map(&complete_env()).expect("valid").pagerduty
    }

    fn secrets(source: Arc<dyn SecretSource>, clock: Arc<ManualClock>) -> Arc<CachedSecrets> {
        Arc::new(CachedSecrets::new(source, clock, Duration::from_secs(300)))
    }

    fn authorizations(http: &Scripted) -> Vec<String> {
        let header = |seen: &crate::transport::testing::Seen| {
            seen.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).unwrap_or_default()
        };
        http.requests().iter().map(header).collect()
    }

    #[tokio::test]
    async fn the_client_reads_its_token_when_called_and_again_once_the_cache_ages() {
        let source = Arc::new(StaticSecrets::default());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let http = Scripted::new(|_| Ok((200, vec![], INCIDENT.to_string())));
        // Built before the secret exists: nothing is read at construction.
        let client = pagerduty().client(http.clone(), secrets(source.clone(), clock.clone()), Duration::from_secs(5));
        source.set("pd-token", r#"{"token":"first"}"#);
        client.get_incident("Q1").await.expect("first call");
        source.set("pd-token", r#"{"token":"rotated"}"#);
        client.get_incident("Q1").await.expect("cached token");
        clock.advance(chrono::Duration::seconds(301));
        client.get_incident("Q1").await.expect("after the cache age");
        assert_eq!(authorizations(&http), ["Token token=first", "Token token=first", "Token token=rotated"]);
    }

    /// Makes the error a source answers for secret `id`.
    type Refusal = fn(&str) -> SecretsError;

    /// A source whose every read fails.
    struct Failing(Refusal);

    #[async_trait]
    impl SecretSource for Failing {
        async fn fetch(&self, id: &str) -> Result<String, SecretsError> {
            Err((self.0)(id))
        }
    }

    #[tokio::test]
    async fn a_token_that_cannot_be_read_fails_the_call_unsent_with_its_class() {
        let cases: [(Refusal, Class); 4] = [
            (|id| SecretsError::NotFound { id: id.into() }, Class::Auth),
            (|id| SecretsError::AccessDenied { id: id.into() }, Class::Auth),
            (|id| SecretsError::Malformed { id: id.into(), reason: "not JSON".into() }, Class::Auth),
            (|id| SecretsError::Unavailable { id: id.into(), reason: "throttled".into() }, Class::Transient),
        ];
        for (error, class) in cases {
            let http = Scripted::new(|_| Ok((200, vec![], INCIDENT.to_string())));
            let clock = Arc::new(ManualClock::new(Utc::now()));
            let client =
                pagerduty().client(http.clone(), secrets(Arc::new(Failing(error)), clock), Duration::from_secs(5));
            let err = client.add_note("Q1", "n").await.unwrap_err();
            assert!(matches!(err, PagerdutyError::Credential { .. }), "{err:?}");
            assert_eq!(err.class(), class, "{err}");
            assert!(err.not_sent() && !err.outcome_unknown(), "a write never sent: {err}");
            assert!(err.to_string().contains("pd-token"), "names the secret: {err}");
            assert!(http.requests().is_empty(), "nothing sent");
        }
    }

    /// A token endpoint that knows client `cid` with secret `good`, and a REST API that refuses
    /// the tokens in `revoked`: the requests it saw tell which token each call carried.
    fn identity_and_api(good: &'static str, revoked: Arc<std::sync::Mutex<Vec<String>>>) -> Arc<Scripted> {
        let issued = std::sync::atomic::AtomicUsize::new(0);
        Scripted::new(move |seen| {
            if seen.target == "/oauth/token" {
                let form: Vec<(String, String)> = url::form_urlencoded::parse(&seen.body).into_owned().collect();
                if !form.iter().any(|(k, v)| k == "client_secret" && v == good) {
                    return Ok((401, vec![], r#"{"error":"invalid_client","error_description":"bad"}"#.into()));
                }
                let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let answer = serde_json::json!({"access_token": format!("pdus+{n}"), "token_type": "bearer", "expires_in": 86400});
                return Ok((200, vec![], answer.to_string()));
            }
            let auth = seen.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone());
            let token = auth.unwrap_or_default().trim_start_matches("Bearer ").to_string();
            if revoked.lock().unwrap().contains(&token) {
                return Ok((401, vec![], r#"{"error":{"message":"Unauthorized","code":2006}}"#.into()));
            }
            Ok((200, vec![], INCIDENT.to_string()))
        })
    }

    fn app_secret(client_secret: &str) -> String {
        serde_json::json!({"client_id": "cid", "client_secret": client_secret, "subdomain": "acme"}).to_string()
    }

    fn rest_authorizations(http: &Scripted) -> Vec<String> {
        let rest: Vec<_> = http.requests().into_iter().filter(|r| r.target != "/oauth/token").collect();
        rest.iter()
            .map(|seen| {
                seen.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).unwrap_or_default()
            })
            .collect()
    }

    #[tokio::test]
    async fn an_oauth_secret_sends_bearer_tokens_and_a_401_fetches_one_new_token() {
        let source = Arc::new(StaticSecrets::default());
        source.set("pd-token", app_secret("good"));
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let revoked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let http = identity_and_api("good", revoked.clone());
        let client = pagerduty().client(http.clone(), secrets(source, clock), Duration::from_secs(5));
        client.get_incident("Q1").await.expect("first call");
        client.add_note("Q1", "n").await.expect("cached token");
        revoked.lock().unwrap().push("pdus+1".into());
        client.add_note("Q1", "n").await.expect("a new token after the 401");
        assert_eq!(rest_authorizations(&http), ["Bearer pdus+1", "Bearer pdus+1", "Bearer pdus+1", "Bearer pdus+2"]);
        assert_eq!(client.token_cache().fetches(), 2);
        revoked.lock().unwrap().push("pdus+2".into());
        revoked.lock().unwrap().push("pdus+3".into());
        let err = client.get_incident("Q1").await.unwrap_err();
        assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED), "one new token, not a loop: {err}");
        assert_eq!(err.class(), Class::Auth);
        assert_eq!(client.token_cache().fetches(), 3);
    }

    #[tokio::test]
    async fn a_refused_client_is_auth_and_a_rotated_client_secret_is_read_again() {
        let source = Arc::new(StaticSecrets::default());
        source.set("pd-token", app_secret("old"));
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let http = identity_and_api("new", Arc::default());
        let client = pagerduty().client(http.clone(), secrets(source.clone(), clock.clone()), Duration::from_secs(5));
        let err = client.add_note("Q1", "n").await.unwrap_err();
        assert!(matches!(err, PagerdutyError::Token { .. }), "{err:?}");
        assert_eq!(err.class(), Class::Auth);
        assert!(err.not_sent() && !err.outcome_unknown(), "{err}");
        assert!(err.to_string().contains("invalid_client") && err.to_string().contains("cid"), "{err}");
        assert!(rest_authorizations(&http).is_empty(), "nothing sent to the REST API");
        // Rotated in Secrets Manager; the cache (300 s) still holds the old one.
        source.set("pd-token", app_secret("new"));
        clock.advance(chrono::Duration::seconds(31));
        client.add_note("Q1", "n").await.expect("the refusal re-reads the secret");
        assert_eq!(rest_authorizations(&http), ["Bearer pdus+1"]);
    }

    #[tokio::test]
    async fn no_token_is_fetched_when_too_little_time_is_left_for_it() {
        let source = Arc::new(StaticSecrets::default());
        source.set("pd-token", app_secret("good"));
        let http = identity_and_api("good", Arc::default());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let client = pagerduty().client(http.clone(), secrets(source, clock), Duration::from_secs(5));
        let soon = client.until(tokio::time::Instant::now() + Duration::from_secs(1));
        let err = soon.get_incident("Q1").await.unwrap_err();
        assert!(matches!(err, PagerdutyError::NoTimeLeft { .. }), "{err:?}");
        assert!(http.requests().is_empty(), "not even the token request");
    }
}
