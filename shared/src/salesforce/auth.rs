//! OAuth 2.0 JWT bearer flow (server-to-server) and a token cache that survives warm invocations.
//!
//! Salesforce issues no refresh token in this flow: when a call answers 401 `INVALID_SESSION_ID`,
//! the client asks [`TokenSource::refresh`] once for a new token and fails if that one is refused
//! too.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::error::{SalesforceError, parse_error_body};
use crate::clock::Clock;
use crate::secrets::{Credential, Secret, SecretsError};
use crate::transport::Transport;

/// How long the token exchange may take by default: as long as any other call
/// ([`super::client::DEFAULT_TIMEOUT`]).
const MINT_TIMEOUT: std::time::Duration = super::client::DEFAULT_TIMEOUT;

/// The Salesforce JWT secret (`{"consumer_key", "username", "private_key_pem"}`).
#[derive(Clone, Deserialize)]
pub struct JwtCredentials {
    /// Connected app consumer key: the JWT `iss`.
    pub consumer_key: String,
    /// Integration user's username: the JWT `sub`.
    pub username: String,
    /// PKCS#8 or PKCS#1 RSA private key whose certificate is uploaded to the connected app.
    pub private_key_pem: String,
}

impl JwtCredentials {
    /// Parses the Secrets Manager SecretString.
    pub fn from_secret_json(text: &str) -> Result<Self, SalesforceError> {
        Self::parse(text).map_err(SalesforceError::Credentials)
    }

    /// The credentials in the text of secret `id` (a [`crate::secrets::credential::Parse`]).
    pub fn from_secret(raw: &Secret, id: &str) -> Result<Self, SecretsError> {
        Self::parse(raw.expose()).map_err(|reason| SecretsError::Malformed { id: id.to_string(), reason })
    }

    fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            // serde's message names the missing field, never the value.
            format!("the secret must be JSON {{\"consumer_key\", \"username\", \"private_key_pem\"}}: {e}")
        })
    }
}

impl std::fmt::Debug for JwtCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCredentials")
            .field("consumer_key", &self.consumer_key)
            .field("username", &self.username)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

/// A minted session: the bearer token and the org's instance URL.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: String,
    /// e.g. `https://yourorg.my.salesforce.com`, without a trailing slash.
    pub instance_url: String,
    /// Bumped on every mint, so that concurrent callers re-mint once, not once each.
    pub generation: u64,
    /// The identity URL the token answer names (`.../id/<org id>/<user id>`), when it names one.
    pub identity: Option<String>,
}

impl AccessToken {
    pub fn new(token: impl Into<String>, instance_url: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            instance_url: instance_url.into().trim_end_matches('/').to_string(),
            generation: 0,
            identity: None,
        }
    }

    /// The org and the user the token is for, read off [`AccessToken::identity`].
    pub fn org_and_user(&self) -> Option<(&str, &str)> {
        let mut parts = self.identity.as_deref()?.trim_end_matches('/').rsplit('/');
        let user = parts.next()?;
        let org = parts.next()?;
        (parts.next() == Some("id")).then_some((org, user))
    }

    /// The bearer token, for the `Authorization` header only.
    pub fn secret(&self) -> &str {
        &self.token
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("instance_url", &self.instance_url)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Where the client gets its session from. The JWT [`Authenticator`] in production; a fixed
/// token in tests and simulators.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// The current token, minted if there is none.
    async fn token(&self) -> Result<AccessToken, SalesforceError>;
    /// `stale` was refused with `INVALID_SESSION_ID`: mint a new one (unless another caller
    /// already did) and return it.
    async fn refresh(&self, stale: &AccessToken) -> Result<AccessToken, SalesforceError>;
}

/// A token that never changes (tests, simulators, a token pasted by an operator).
#[derive(Debug, Clone)]
pub struct StaticToken(pub AccessToken);

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<AccessToken, SalesforceError> {
        Ok(self.0.clone())
    }
    async fn refresh(&self, _stale: &AccessToken) -> Result<AccessToken, SalesforceError> {
        Ok(self.0.clone())
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

/// Builds the signed RS256 assertion: `iss` = consumer key, `sub` = username, `aud` = `audience`,
/// `exp` = now + 3 minutes (the maximum Salesforce accepts).
pub fn build_assertion(creds: &JwtCredentials, audience: &str, clock: &dyn Clock) -> Result<String, SalesforceError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(creds.private_key_pem.as_bytes()).map_err(|e| {
        SalesforceError::Credentials(format!("private_key_pem is not an RSA private key in PEM format ({e})"))
    })?;
    let claims = Claims {
        iss: &creds.consumer_key,
        sub: &creds.username,
        aud: audience.trim_end_matches('/'),
        exp: (clock.now() + Duration::minutes(3)).timestamp(),
    };
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)
        .map_err(|e| SalesforceError::Credentials(format!("could not sign the JWT assertion ({e})")))
}

/// The JWT `aud` of production orgs, also when the token is requested from a My Domain host.
pub const PRODUCTION_AUDIENCE: &str = "https://login.salesforce.com";
/// The JWT `aud` of sandboxes (and scratch orgs), whatever host the token is requested from.
pub const SANDBOX_AUDIENCE: &str = "https://test.salesforce.com";

/// The JWT `aud` Salesforce expects for tokens requested from `login_url`: not the URL itself
/// but the authorization server it belongs to. Production (`login.salesforce.com`, a My Domain
/// such as `acme.my.salesforce.com`) → [`PRODUCTION_AUDIENCE`]; a sandbox (`test.salesforce.com`,
/// `acme--uat.sandbox.my.salesforce.com`, the older `acme--uat.my.salesforce.com` and
/// `cs42.salesforce.com` forms, scratch orgs) → [`SANDBOX_AUDIENCE`]; an Experience Cloud site
/// (`*.my.site.com`, `*.force.com`) → the site URL, path included. Any other host (a simulator,
/// a site on a custom domain) → production: set `SALESFORCE_JWT_AUDIENCE` when that is wrong.
pub fn audience_for(login_url: &url::Url) -> String {
    let host = login_url.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    let under = |domain: &str| host.ends_with(domain);
    let site = under(".my.site.com") || (under(".force.com") && !under(".lightning.force.com"));
    if site {
        return login_url.as_str().trim_end_matches('/').to_string();
    }
    let salesforce = host == "salesforce.com" || under(".salesforce.com") || under(".lightning.force.com");
    // `cs42`, `cs1`...: the instance labels of sandboxes before enhanced domains.
    let legacy_sandbox_instance =
        |label: &str| label.strip_prefix("cs").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let sandbox = host == "test.salesforce.com"
        || under(".sandbox.my.salesforce.com")
        || under(".scratch.my.salesforce.com")
        || under(".sandbox.lightning.force.com")
        || host.split('.').next().is_some_and(|org| org.contains("--"))
        || host.split('.').any(legacy_sandbox_instance);
    if salesforce && sandbox { SANDBOX_AUDIENCE } else { PRODUCTION_AUDIENCE }.to_string()
}

/// What to fix for a given `invalid_grant` description.
pub fn auth_hint(description: &str) -> &'static str {
    let d = description.to_ascii_lowercase();
    if d.contains("audience") {
        "The JWT audience must be https://login.salesforce.com for production or https://test.salesforce.com for a sandbox (an Experience Cloud site: its URL): check SALESFORCE_LOGIN_URL, or set SALESFORCE_JWT_AUDIENCE."
    } else if d.contains("approved") || d.contains("pre-authorized") || d.contains("preauthorized") {
        "In the connected app, set 'Permitted Users' to 'Admin approved users are pre-authorized' and add the integration user's profile or permission set."
    } else if d.contains("signature") || d.contains("certificate") || d.contains("jwt") {
        "Upload the certificate matching private_key_pem to the connected app ('Use digital signatures') and check consumer_key."
    } else if d.contains("client identifier") || d.contains("client_id") {
        "consumer_key does not match a connected app in this org: copy the Consumer Key again."
    } else if d.contains("user") || d.contains("password") || d.contains("inactive") {
        "Check that 'username' names an active user of this org (sandbox usernames carry a suffix)."
    } else if d.contains("expired") {
        "Check the Lambda's clock and that the assertion is used within 3 minutes."
    } else {
        "Check the connected app (certificate, pre-authorized users, OAuth scopes), the username and SALESFORCE_LOGIN_URL."
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
    /// The identity URL, `https://login.salesforce.com/id/<org id>/<user id>`.
    #[serde(default)]
    id: Option<String>,
}

/// Mints tokens with the JWT bearer flow and caches the latest one.
///
/// Build it once per process (outside the handler) so that warm invocations reuse the token.
pub struct Authenticator {
    transport: Arc<dyn Transport>,
    login_url: String,
    /// The JWT `aud`: [`audience_for`] the login URL unless set with [`Authenticator::with_audience`].
    audience: String,
    /// Read at each mint (see [`Credential`]): a rotated key signs the next session.
    creds: Credential<JwtCredentials>,
    clock: Arc<dyn Clock>,
    timeout: std::time::Duration,
    cached: Mutex<Option<AccessToken>>,
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("login_url", &self.login_url)
            .field("audience", &self.audience)
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator with credentials fixed for its life (tests, simulators, `syncctl`); the
    /// functions read theirs from a secret ([`Self::with_credential`]).
    pub fn new(
        transport: Arc<dyn Transport>,
        login_url: impl Into<String>,
        creds: JwtCredentials,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_credential(transport, login_url, Credential::Fixed(creds), clock)
    }

    /// An authenticator that reads `creds` each time it mints a token
    /// (`config::SalesforceConfig::client` builds one from a secret). Credentials that cannot be
    /// read fail the mint with [`SalesforceError::Secret`], before anything is sent.
    pub fn with_credential(
        transport: Arc<dyn Transport>,
        login_url: impl Into<String>,
        creds: Credential<JwtCredentials>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let login_url = login_url.into().trim_end_matches('/').to_string();
        // A login URL that does not parse fails at the token request; its audience does not matter.
        let audience = url::Url::parse(&login_url).map_or_else(|_| login_url.clone(), |url| audience_for(&url));
        Self {
            transport,
            audience,
            login_url,
            creds,
            clock,
            timeout: MINT_TIMEOUT,
            cached: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Signs the assertion for `audience` instead of the one derived from the login URL (an
    /// Experience Cloud site on a custom domain, a login host [`audience_for`] does not know).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into().trim_end_matches('/').to_string();
        self
    }

    /// The same authenticator with another limit on the token exchange (default 5 s).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The JWT bearer exchange, uncached.
    pub async fn mint(&self) -> Result<AccessToken, SalesforceError> {
        let creds = self.creds.get().await.map_err(SalesforceError::Secret)?;
        let assertion = build_assertion(&creds, &self.audience, self.clock.as_ref())?;
        let url = format!("{}/services/oauth2/token", self.login_url);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(form.into_bytes())
            .map_err(|e| SalesforceError::Auth {
                hint: "SALESFORCE_LOGIN_URL must be an https URL such as https://login.salesforce.com".into(),
                message: format!("the login URL `{}` does not make a request URL ({e})", self.login_url),
            })?;
        let response = self.transport.send(request, self.timeout).await.map_err(SalesforceError::from_transport)?;
        let status = response.status().as_u16();
        let body = String::from_utf8_lossy(response.body()).into_owned();
        if !(200..300).contains(&status) {
            if status >= 500 {
                return Err(SalesforceError::Api {
                    method: "POST".into(),
                    path: "/services/oauth2/token".into(),
                    status,
                    errors: parse_error_body(&body),
                });
            }
            let errors = parse_error_body(&body);
            let (code, description) = errors
                .first()
                .map(|e| (e.error_code.clone(), e.message.clone()))
                .unwrap_or_else(|| (format!("HTTP {status}"), String::new()));
            return Err(SalesforceError::Auth {
                hint: auth_hint(&description).to_string(),
                message: format!("{code}: {description}"),
            });
        }
        let parsed: TokenResponse = serde_json::from_str(&body).map_err(|e| SalesforceError::Unexpected {
            path: "/services/oauth2/token".into(),
            // Never echo the body: it holds the access token.
            message: format!("token response without access_token/instance_url ({e})"),
        })?;
        let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let mut token = AccessToken::new(parsed.access_token, parsed.instance_url);
        token.generation = generation;
        token.identity = parsed.id;
        Ok(token)
    }

    /// How many tokens were minted by this process (for tests and metrics).
    pub fn mints(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenSource for Authenticator {
    async fn token(&self) -> Result<AccessToken, SalesforceError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref() {
            return Ok(token.clone());
        }
        let token = self.mint().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    async fn refresh(&self, stale: &AccessToken) -> Result<AccessToken, SalesforceError> {
        let mut cached = self.cached.lock().await;
        // Another caller already replaced the stale token: use theirs.
        if let Some(token) = cached.as_ref()
            && token.generation != stale.generation
        {
            return Ok(token.clone());
        }
        *cached = None;
        let token = self.mint().await?;
        *cached = Some(token.clone());
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::Classify;
    use crate::clock::ManualClock;
    use base64::Engine;

    pub(crate) const TEST_KEY: &str = include_str!("../../tests/fixtures/salesforce/test-rsa-key.pem");

    fn creds() -> JwtCredentials {
        JwtCredentials {
            consumer_key: "3MVG9.consumer".into(),
            username: "integration@example.com".into(),
            private_key_pem: TEST_KEY.into(),
        }
    }

    #[test]
    fn assertion_carries_iss_sub_aud_and_three_minute_expiry() {
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc();
        let clock = ManualClock::new(start);
        let jwt = build_assertion(&creds(), "https://login.salesforce.com/", &clock).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        assert_eq!(decode(parts[0])["alg"], "RS256");
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], "3MVG9.consumer");
        assert_eq!(claims["sub"], "integration@example.com");
        assert_eq!(claims["aud"], "https://login.salesforce.com");
        assert_eq!(claims["exp"], start.timestamp() + 180);
    }

    #[test]
    fn the_audience_is_the_authorization_server_not_the_host_posted_to() {
        let (prod, sandbox) = (PRODUCTION_AUDIENCE, SANDBOX_AUDIENCE);
        for (login_url, expected) in [
            ("https://login.salesforce.com", prod),
            ("https://login.salesforce.com/", prod),
            ("https://test.salesforce.com", sandbox),
            // My Domain, production and its Developer Edition / Trailhead forms.
            ("https://acme.my.salesforce.com", prod),
            ("https://ACME.My.Salesforce.com/", prod),
            ("https://acme-dev-ed.develop.my.salesforce.com", prod),
            ("https://acme.lightning.force.com", prod),
            // My Domain sandboxes: enhanced domains, the older `--` form, scratch orgs.
            ("https://acme--uat.sandbox.my.salesforce.com", sandbox),
            ("https://acme--uat.my.salesforce.com", sandbox),
            ("https://acme--uat.sandbox.lightning.force.com", sandbox),
            ("https://power-fun-1234-dev-ed.scratch.my.salesforce.com", sandbox),
            // Sandbox instances before enhanced domains.
            ("https://cs42.salesforce.com", sandbox),
            ("https://acme--uat.cs42.my.salesforce.com", sandbox),
            // Experience Cloud sites sign for themselves.
            ("https://acme.my.site.com/customers", "https://acme.my.site.com/customers"),
            ("https://acme--uat.sandbox.my.site.com/partners/", "https://acme--uat.sandbox.my.site.com/partners"),
            ("https://acme.force.com/customers", "https://acme.force.com/customers"),
            ("https://acme.secure.force.com", "https://acme.secure.force.com"),
            // Not Salesforce (the simulator): production, as the flow's default.
            ("http://127.0.0.1:8080", prod),
            ("https://cs42.example.com", prod),
        ] {
            let url = url::Url::parse(login_url).unwrap();
            assert_eq!(audience_for(&url), expected, "{login_url}");
        }
    }

    #[test]
    fn a_bad_pem_is_a_credentials_error_without_the_key() {
        let mut c = creds();
        c.private_key_pem = "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----".into();
        let clock = ManualClock::new(chrono::Utc::now());
        let err = build_assertion(&c, "https://login.salesforce.com", &clock).unwrap_err();
        assert!(matches!(err, SalesforceError::Credentials(_)));
        assert!(!err.to_string().contains("not-a-key"));
    }

    #[test]
    fn debug_never_shows_the_private_key_or_token() {
        let text = format!("{:?}", creds());
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let token = AccessToken::new("00Dxx!secret-token", "https://x.my.salesforce.com/");
        let text = format!("{token:?}");
        assert!(!text.contains("secret-token"), "{text}");
        assert_eq!(token.instance_url, "https://x.my.salesforce.com");
    }

    #[test]
    fn secret_json_missing_field_names_the_field() {
        let err = JwtCredentials::from_secret_json(r#"{"consumer_key":"k","username":"u"}"#).unwrap_err();
        assert!(err.to_string().contains("private_key_pem"), "{err}");
    }

    #[test]
    fn hints_say_what_to_fix() {
        assert!(auth_hint("audience is invalid").contains("SALESFORCE_LOGIN_URL"));
        assert!(auth_hint("user hasn't approved this consumer").contains("pre-authorized"));
        assert!(auth_hint("invalid assertion signature").contains("certificate"));
    }

    mod against_a_server {
        use super::*;
        use crate::salesforce::SalesforceClient;
        use crate::salesforce::canned::{Canned, CannedOrg};

        fn token_json(url: &str, token: &str) -> String {
            serde_json::json!({
                "access_token": token,
                "instance_url": url,
                "token_type": "Bearer",
                "scope": "api"
            })
            .to_string()
        }

        const EXPIRED: &str = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
        const RECORD: &str = r#"{"attributes":{"type":"Case"},"Id":"5005g00000AbCdEAAS"}"#;

        async fn setup(
            responses: impl FnOnce(&str) -> Vec<Canned>,
        ) -> (CannedOrg, Arc<Authenticator>, SalesforceClient) {
            let server = CannedOrg::start_fn(responses).await;
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(chrono::Utc::now()));
            let auth = Arc::new(Authenticator::new(server.transport(), server.url(), creds(), clock));
            let client = SalesforceClient::new(server.transport(), auth.clone(), "62.0");
            (server, auth, client)
        }

        #[tokio::test]
        async fn token_is_minted_once_and_reused_across_calls() {
            let (server, auth, client) = setup(|s| {
                vec![Canned::new(200, &token_json(s, "tok-1")), Canned::new(200, RECORD), Canned::new(200, RECORD)]
            })
            .await;
            client.get_record("Case", "5005g00000AbCdEAAS", None).await.unwrap();
            client.get_record("Case", "5005g00000AbCdEAAS", None).await.unwrap();
            assert_eq!(auth.mints(), 1);
            let requests = server.requests();
            assert!(requests[0].starts_with("POST /services/oauth2/token "), "{}", requests[0]);
            assert!(
                requests[0].contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=ey"),
                "{}",
                requests[0]
            );
            assert!(requests[2].to_ascii_lowercase().contains("authorization: bearer tok-1"));
        }

        #[tokio::test]
        async fn expired_session_is_reminted_once_and_the_call_repeated() {
            let (server, auth, client) = setup(|s| {
                vec![
                    Canned::new(200, &token_json(s, "tok-1")),
                    Canned::new(401, EXPIRED),
                    Canned::new(200, &token_json(s, "tok-2")),
                    Canned::new(200, RECORD),
                ]
            })
            .await;
            let rec = client.get_record("Case", "5005g00000AbCdEAAS", None).await.unwrap();
            assert_eq!(rec["Id"], "5005g00000AbCdEAAS");
            assert_eq!(auth.mints(), 2);
            assert_eq!(client.api_calls(), 2);
            assert!(server.requests()[3].to_ascii_lowercase().contains("authorization: bearer tok-2"));
        }

        #[tokio::test]
        async fn a_second_refusal_after_reminting_is_an_auth_error() {
            let (_server, auth, client) = setup(|s| {
                vec![
                    Canned::new(200, &token_json(s, "tok-1")),
                    Canned::new(401, EXPIRED),
                    Canned::new(200, &token_json(s, "tok-2")),
                    Canned::new(401, EXPIRED),
                ]
            })
            .await;
            let err = client.get_record("Case", "5005g00000AbCdEAAS", None).await.unwrap_err();
            assert_eq!(err.class(), crate::class::Class::Auth);
            assert!(matches!(err, SalesforceError::Auth { .. }), "{err:?}");
            assert_eq!(auth.mints(), 2);
            assert!(!err.to_string().contains("tok-"), "{err}");
        }

        #[tokio::test]
        async fn invalid_grant_says_what_to_fix() {
            let (_server, _auth, client) = setup(|_| {
                vec![Canned::new(
                    400,
                    r#"{"error":"invalid_grant","error_description":"user hasn't approved this consumer"}"#,
                )]
            })
            .await;
            let err = client.get_record("Case", "5005g00000AbCdEAAS", None).await.unwrap_err();
            let text = err.to_string();
            assert!(text.contains("invalid_grant"), "{text}");
            assert!(text.contains("pre-authorized"), "{text}");
            assert_eq!(err.class(), crate::class::Class::Auth);
            assert_eq!(client.api_calls(), 0);
        }
    }
}
