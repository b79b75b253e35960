//! `syncctl setup salesforce`: the Salesforce side of the set-up, as an admin does it.
//!
//! - `--consumer-key K --username U`: generates the RSA key pair of the JWT bearer flow, stores
//!   the private key in the Salesforce JWT secret, writes the certificate to upload to the
//!   External Client App, and prints the settings to enter there.
//! - `--check`: mints a token with what the secret holds and reads the integration user through
//!   the REST API: "Connection OK", or what to fix.
//! - `--apex-url URL [--rotate-signing-key]`: the Apex side, the Named Credential's URL and the
//!   inbound signing key (stored as `current`, the old one kept as `previous`).

use std::path::Path;
use std::sync::Arc;

use adapters::http::{HTTP_TIMEOUT, ReqwestTransport};
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::salesforce::{JwtCredentials, SalesforceClient};
use shared::secrets::Credential;

/// How long the generated certificate is valid: two years, then `--rotate` makes a new pair.
pub const CERTIFICATE_DAYS: i64 = 730;

/// A key pair for the JWT bearer flow: the secret to store and the certificate to upload.
pub struct KeyPair {
    pub private_key_pem: String,
    pub certificate_pem: String,
}

/// Generates an RSA-2048 key (Salesforce signs and checks RS256) and its self-signed certificate.
pub fn generate(now: chrono::DateTime<chrono::Utc>, days: i64) -> Result<KeyPair, String> {
    use chrono::Datelike;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .map_err(|e| format!("could not generate the RSA key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| format!("could not describe the certificate: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "pd-sfdc-sync JWT bearer");
    let date = |t: chrono::DateTime<chrono::Utc>| rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8);
    // From yesterday: a clock a little behind ours must not find it not yet valid.
    params.not_before = date(now - chrono::Duration::days(1));
    params.not_after = date(now + chrono::Duration::days(days));
    let certificate = params.self_signed(&key).map_err(|e| format!("could not sign the certificate: {e}"))?;
    Ok(KeyPair { private_key_pem: key.serialize_pem(), certificate_pem: certificate.pem() })
}

fn sdk_message(e: &dyn aws_sdk_secretsmanager::error::ProvideErrorMetadata) -> String {
    e.message().or(e.code()).unwrap_or("unknown error").to_string()
}

/// Refuses to go on when `secret_id` already holds a real key and `rotate` is not given: the
/// app's certificate must be replaced at the same time, or the bridge stops. Checked before
/// anything is written, so a refused run leaves the certificate file and the secret as they were.
pub async fn check_replaceable(
    sm: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    rotate: bool,
) -> Result<(), String> {
    let current = sm.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
        format!("cannot read the Salesforce JWT secret {secret_id} (deploy the stack first?): {}", sdk_message(&e))
    })?;
    let holds_key = current
        .secret_string()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|v| v["private_key_pem"].as_str().map(|k| k.contains("PRIVATE KEY")))
        .unwrap_or(false);
    if holds_key && !rotate {
        return Err(format!(
            "{secret_id} already holds a private key; --rotate replaces it (then upload the new certificate \
             to the External Client App at once: until you do, the bridge cannot log in)"
        ));
    }
    Ok(())
}

/// Stores `credentials` in `secret_id` (after [`check_replaceable`]).
pub async fn store_credentials(
    sm: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    credentials: &JwtCredentials,
) -> Result<(), String> {
    let value = serde_json::json!({
        "consumer_key": credentials.consumer_key,
        "username": credentials.username,
        "private_key_pem": credentials.private_key_pem,
    });
    sm.put_secret_value()
        .secret_id(secret_id)
        .secret_string(value.to_string())
        .send()
        .await
        .map_err(|e| format!("could not store the key in {secret_id}: {}", sdk_message(&e)))?;
    Ok(())
}

/// What the admin enters in Salesforce, in the order Setup asks for it.
pub fn app_settings(username: &str, certificate: &Path) -> String {
    format!(
        "In Salesforce Setup, External Client App Manager -> New External Client App (orgs created
before Spring '26 may use a Connected App with the same settings):
  Enable OAuth                       yes
  Callback URL                       http://localhost:1717/OauthRedirect (not used by the JWT flow)
  OAuth scopes                       Manage user data via APIs (api), Perform requests at any time (refresh_token, offline_access)
  Enable JWT Bearer Flow             yes, certificate: {certificate}
  Policies: Permitted Users          Admin approved users are pre-authorized
  Policies: profiles / permission sets   add PdSync_Integration_User (assigned to {username})
Then copy the app's Consumer Key (it goes in the secret: run this again with --consumer-key if it
was a placeholder) and run `syncctl setup salesforce --check`.",
        certificate = certificate.display()
    )
}

/// What `--check` found.
#[derive(Debug, PartialEq, Eq)]
pub struct Connection {
    pub instance_url: String,
    pub org_id: String,
    pub user_id: String,
    pub username: String,
}

/// Mints a token with `credentials` and reads the integration user: the proof that the key,
/// the certificate, the consumer key, the pre-authorisation and the user's API access all work,
/// and that the org is the one the stack expects.
pub async fn check(config: &Config, credentials: JwtCredentials) -> Result<Connection, String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let http = Arc::new(ReqwestTransport::new().map_err(|e| e.to_string())?);
    let username = credentials.username.clone();
    let sf = &config.salesforce;
    let auth = Arc::new(sf.authenticator(http.clone(), Credential::Fixed(credentials), clock, HTTP_TIMEOUT));
    let token = auth.mint().await.map_err(|e| format!("no token: {e}"))?;
    let (org_id, user_id) = token
        .org_and_user()
        .map(|(o, u)| (o.to_string(), u.to_string()))
        .ok_or("the token answer names no identity URL (id): is this Salesforce?")?;
    if !sf.org_id.is(&org_id) {
        return Err(format!(
            "the token is for org {org_id}, but the stack expects {} (parameter SalesforceOrgId): \
             the bridge would refuse every post from this org",
            sf.org_id
        ));
    }
    let salesforce = SalesforceClient::new(http, auth, sf.api_version.clone()).with_timeout(HTTP_TIMEOUT);
    let soql = format!(
        "SELECT Id, Username, IsActive FROM User WHERE Username = '{}'",
        username.replace('\\', "\\\\").replace('\'', "\\'")
    );
    let users = salesforce
        .query(&soql)
        .await
        .map_err(|e| format!("logged in, but the REST API refused to read the user (API Enabled?): {e}"))?;
    let user = users.records.first().ok_or(format!("logged in, but no user {username} is visible"))?;
    if user.get("IsActive").and_then(|v| v.as_bool()) == Some(false) {
        return Err(format!("the integration user {username} is inactive"));
    }
    Ok(Connection { instance_url: token.instance_url.clone(), org_id, user_id, username })
}

/// A new inbound signing key: 48 characters from the alphabet the stack's generated one uses.
pub fn new_signing_key() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..48).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}
