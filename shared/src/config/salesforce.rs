//! The Salesforce org the bridge works in: where it logs in and how, the API version, the
//! secrets of its connected-app key and of the signing keys of what the org posts, and the
//! integration user whose changes are not sent back. Builds the REST client.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::ConfigError;
use super::vars::Vars;
use crate::clock::Clock;
use crate::salesforce::{Authenticator, JwtCredentials, SalesforceClient};
use crate::secrets::{CachedSecrets, Credential};
use crate::transport::Transport;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceConfig {
    /// `https://login.salesforce.com`, `https://test.salesforce.com` or a My Domain or Experience
    /// Cloud site URL: where tokens are requested (`SALESFORCE_LOGIN_URL`).
    pub login_url: Url,
    /// The JWT `aud` when the one derived from the login URL is wrong (`SALESFORCE_JWT_AUDIENCE`,
    /// optional): see [`SalesforceConfig::audience`].
    pub jwt_audience: Option<Url>,
    /// REST API version without the `v`, e.g. `62.0` (`SALESFORCE_API_VERSION`).
    pub api_version: String,
    /// Secret holding the connected app's consumer key, username and private key (`SALESFORCE_JWT_SECRET_ID`).
    pub jwt_secret_id: String,
    /// Secret holding the shared key the Apex trigger signs posts with (`SALESFORCE_INBOUND_SECRET_ID`).
    pub inbound_secret_id: String,
    /// The 15 or 18-character org id every Salesforce post must come from (`SALESFORCE_ORG_ID`).
    pub org_id: crate::salesforce::id::OrgId,
    /// Secret holding the tokens Outbound Message endpoint URLs carry
    /// (`SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID`); empty: the Outbound Message route is off.
    pub outbound_message_secret_id: String,
    /// Salesforce username of the integration user; its changes are not sent back (`SALESFORCE_INTEGRATION_USER`).
    pub integration_user: String,
    /// Salesforce id of that user (`SALESFORCE_INTEGRATION_USER_ID`, optional): changes whose
    /// `LastModifiedById` it is are not sent back either (Outbound Messages name no user).
    pub integration_user_id: String,
}

impl SalesforceConfig {
    pub(crate) fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let login =
            vars.required("SALESFORCE_LOGIN_URL", "https://login.salesforce.com or https://test.salesforce.com")?;
        let login_url =
            Vars::url("SALESFORCE_LOGIN_URL", &login, "an http(s) URL such as https://login.salesforce.com")?;
        let jwt_audience = vars
            .get("SALESFORCE_JWT_AUDIENCE")
            .map(|aud| {
                Vars::url(
                    "SALESFORCE_JWT_AUDIENCE",
                    aud,
                    "empty, or an http(s) URL such as https://test.salesforce.com",
                )
            })
            .transpose()?;

        let api_version =
            vars.get("SALESFORCE_API_VERSION").unwrap_or("62.0").trim_start_matches(['v', 'V']).to_string();
        let valid_version = api_version.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.chars().chain(b.chars()).all(|c| c.is_ascii_digit())
        });
        if !valid_version {
            return Err(ConfigError::Invalid {
                name: "SALESFORCE_API_VERSION",
                value: api_version,
                hint: "a version such as 62.0",
            });
        }

        Ok(Self {
            login_url,
            jwt_audience,
            api_version,
            jwt_secret_id: vars.required("SALESFORCE_JWT_SECRET_ID", "the secret holding the connected app key")?,
            inbound_secret_id: vars
                .required("SALESFORCE_INBOUND_SECRET_ID", "the secret holding the Apex trigger's signing key")?,
            org_id: {
                let id = vars.required("SALESFORCE_ORG_ID", "the 15 or 18-character Salesforce org id")?;
                // A typo here would refuse every post; say so at start, not per request.
                crate::salesforce::id::OrgId::parse(&id).ok_or(ConfigError::Invalid {
                    name: "SALESFORCE_ORG_ID",
                    value: id,
                    hint: "an org id: 00D and 12 more letters or digits, optionally its 3-character suffix (Setup > Company Information)",
                })?
            },
            outbound_message_secret_id: vars.optional("SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID"),
            integration_user: vars
                .required("SALESFORCE_INTEGRATION_USER", "the Salesforce username the bridge writes as")?,
            integration_user_id: vars.optional("SALESFORCE_INTEGRATION_USER_ID"),
        })
    }

    /// The JWT `aud` of the Salesforce assertion: the override, or the one Salesforce expects for
    /// the login URL (`https://login.salesforce.com` also when the login URL is a My Domain).
    pub fn audience(&self) -> String {
        match &self.jwt_audience {
            Some(audience) => audience.as_str().trim_end_matches('/').to_string(),
            None => crate::salesforce::auth::audience_for(&self.login_url),
        }
    }

    /// The JWT bearer authenticator for this org, with `creds`.
    pub fn authenticator(
        &self,
        http: Arc<dyn Transport>,
        creds: Credential<JwtCredentials>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Authenticator {
        let login = self.login_url.as_str().trim_end_matches('/').to_string();
        Authenticator::with_credential(http, login, creds, clock).with_audience(self.audience()).with_timeout(timeout)
    }

    /// The REST client. It reads the connected-app key through `secrets` each time it logs in,
    /// not now: a rotated key signs the next session once the cache ages, a function that never
    /// calls Salesforce never reads it, and one that cannot be read fails the call (classified
    /// like any other failure) instead of the start.
    pub fn client(
        &self,
        http: Arc<dyn Transport>,
        secrets: Arc<CachedSecrets>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> SalesforceClient {
        let creds = Credential::stored(secrets, &self.jwt_secret_id, JwtCredentials::from_secret);
        let auth = Arc::new(self.authenticator(http.clone(), creds, clock, timeout));
        SalesforceClient::new(http, auth, self.api_version.clone()).with_timeout(timeout)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::Engine;
    use chrono::Utc;

    use super::*;
    use crate::class::{Class, Classify};
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::config::tests::complete_env;
    use crate::salesforce::SalesforceError;
    use crate::secrets::StaticSecrets;
    use crate::transport::testing::{Scripted, Seen};

    const KEY: &str = include_str!("../../tests/fixtures/salesforce/test-rsa-key.pem");

    fn jwt_secret(consumer_key: &str) -> String {
        serde_json::json!({"consumer_key": consumer_key, "username": "bridge@example.com.prod", "private_key_pem": KEY})
            .to_string()
    }

    /// The `iss` of the JWT assertion in a token request's form body.
    fn issuer(seen: &Seen) -> String {
        let body = seen.text();
        let (_, assertion) =
            url::form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "assertion").expect("an assertion");
        let claims = assertion.split('.').nth(1).expect("a JWT");
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).expect("base64url");
        serde_json::from_slice::<serde_json::Value>(&claims).expect("JSON")["iss"].as_str().unwrap().to_string()
    }

    /// Mints `tok-1`, `tok-2`...; refuses a query made with `tok-1` as an expired session.
    fn org() -> Arc<Scripted> {
        let mints = AtomicUsize::new(0);
        Scripted::new(move |seen| {
            if seen.target.starts_with("/services/oauth2/token") {
                let n = mints.fetch_add(1, Ordering::SeqCst) + 1;
                let body = format!(r#"{{"access_token":"tok-{n}","instance_url":"https://acme.my.salesforce.com"}}"#);
                return Ok((200, vec![], body));
            }
            let bearer = seen.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str());
            if bearer == Some("Bearer tok-1") {
                return Ok((401, vec![], r#"[{"message":"Session expired","errorCode":"INVALID_SESSION_ID"}]"#.into()));
            }
            Ok((200, vec![], r#"{"totalSize":0,"done":true,"records":[]}"#.into()))
        })
    }

    fn salesforce() -> SalesforceConfig {
        Config::from_map(&complete_env()).expect("valid").salesforce
    }

    #[tokio::test]
    async fn the_client_reads_its_key_when_it_logs_in_and_a_rotated_one_after_the_cache_ages() {
        let source = Arc::new(StaticSecrets::default());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let secrets = Arc::new(CachedSecrets::new(source.clone(), clock.clone(), Duration::from_secs(300)));
        let http = org();
        // Built before the secret exists: nothing is read at construction.
        let client = salesforce().client(http.clone(), secrets, clock.clone(), Duration::from_secs(5));
        source.set("sf-jwt", jwt_secret("key-1"));
        client.connect().await.expect("first login");
        source.set("sf-jwt", jwt_secret("key-2"));
        clock.advance(chrono::Duration::seconds(301));
        // The session minted with key-1 has expired: the new login signs with the rotated key.
        client.query("SELECT Id FROM Case").await.expect("query after a new login");
        let seen = http.requests();
        let logins: Vec<String> =
            seen.iter().filter(|s| s.target.starts_with("/services/oauth2/token")).map(issuer).collect();
        assert_eq!(logins, ["key-1", "key-2"]);
    }

    #[tokio::test]
    async fn a_key_that_cannot_be_read_fails_the_login_unsent_with_its_class() {
        let source = Arc::new(StaticSecrets::default());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let secrets = Arc::new(CachedSecrets::new(source.clone(), clock.clone(), Duration::from_secs(300)));
        let http = org();
        let client = salesforce().client(http.clone(), secrets, clock.clone(), Duration::from_secs(5));
        let err = client.connect().await.unwrap_err();
        assert!(matches!(err, SalesforceError::Secret(_)), "{err:?}");
        assert_eq!(err.class(), Class::Auth, "missing: {err}");
        assert!(err.to_string().contains("sf-jwt"), "names the secret: {err}");
        source.set("sf-jwt", r#"{"consumer_key":"k"}"#);
        clock.advance(chrono::Duration::seconds(301));
        let err = client.connect().await.unwrap_err();
        assert_eq!(err.class(), Class::Auth, "malformed: {err}");
        assert!(err.to_string().contains("private_key_pem") || err.to_string().contains("username"), "{err}");
        assert!(http.requests().is_empty(), "no login attempted");
    }
}
