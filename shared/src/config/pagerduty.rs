//! The PagerDuty account the bridge acts in: API base, the user it acts as, and the secrets of
//! its API token and webhook signing secrets. Builds the REST client.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::ConfigError;
use super::vars::Vars;
use crate::pagerduty::PagerdutyClient;
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

    /// The REST client. It reads the token through `secrets` when a call needs it, not now: a
    /// rotated token is used once the cache ages, and one that cannot be read fails the call
    /// (classified like any other failure) instead of the start.
    pub fn client(&self, http: Arc<dyn Transport>, secrets: Arc<CachedSecrets>, timeout: Duration) -> PagerdutyClient {
        let token = Credential::stored(secrets, &self.token_secret_id, CachedSecrets::pagerduty_token_of);
        PagerdutyClient::with_credential(http, self.api_base.clone(), token, self.from_email.clone())
            .with_timeout(timeout)
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
}
