//! Secrets: a source trait, a cache with a max age, and typed accessors for the formats the
//! stack stores. Secret values never reach a log line or an error message: [`Secret`] prints
//! `[redacted]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// A secret value. Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must use it (a signature check, an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a secret could not be read. Never carries the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {id} does not exist; create it (see template.yaml) or fix the *_SECRET_ID variable")]
    NotFound { id: String },
    #[error("access to secret {id} denied; grant secretsmanager:GetSecretValue on it to the function")]
    AccessDenied { id: String },
    #[error("secret {id} is malformed: {reason}")]
    Malformed { id: String, reason: String },
    #[error("secret {id} is unavailable right now: {reason}")]
    Unavailable { id: String, reason: String },
}

impl SecretsError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretsError::Unavailable { .. })
    }
}

/// Where secret strings come from.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn fetch(&self, id: &str) -> Result<String, SecretsError>;
}

/// Secrets held in memory (tests, `make run`).
#[derive(Default)]
pub struct StaticSecrets(Mutex<HashMap<String, String>>);

impl StaticSecrets {
    pub fn new(values: HashMap<String, String>) -> Self {
        Self(Mutex::new(values))
    }

    pub fn set(&self, id: impl Into<String>, value: impl Into<String>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id.into(), value.into());
    }
}

#[async_trait]
impl SecretSource for StaticSecrets {
    async fn fetch(&self, id: &str) -> Result<String, SecretsError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| SecretsError::NotFound { id: id.to_string() })
    }
}

/// Secrets from AWS Secrets Manager (`SecretString` of the secret's current version).
#[derive(Clone, Debug)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn fetch(&self, id: &str) -> Result<String, SecretsError> {
        use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
        match self.client.get_secret_value().secret_id(id).send().await {
            Ok(out) => out.secret_string().map(str::to_string).ok_or_else(|| SecretsError::Malformed {
                id: id.to_string(),
                reason: "it has no SecretString (binary secrets are not supported)".into(),
            }),
            Err(err) => Err(match err.code() {
                // A secret scheduled for deletion answers InvalidRequestException and a malformed
                // id InvalidParameterException: retrying fixes neither, the id must be fixed.
                Some("ResourceNotFoundException" | "InvalidRequestException" | "InvalidParameterException") => {
                    SecretsError::NotFound { id: id.to_string() }
                }
                Some("AccessDeniedException") | Some("UnrecognizedClientException") => {
                    SecretsError::AccessDenied { id: id.to_string() }
                }
                Some("DecryptionFailure") => SecretsError::AccessDenied { id: id.to_string() },
                code => SecretsError::Unavailable {
                    id: id.to_string(),
                    reason: code.map_or_else(|| format!("{err}"), str::to_string),
                },
            }),
        }
    }
}

/// Signing secrets during rotation: a signature made with either is accepted.
#[derive(Debug, Clone)]
pub struct SigningSecrets {
    pub current: Secret,
    pub previous: Option<Secret>,
}

impl SigningSecrets {
    /// Current first, then previous.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }
}

/// A cache in front of a [`SecretSource`]: warm invocations do not ask again until `max_age`.
pub struct CachedSecrets {
    source: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    cache: Mutex<HashMap<String, (DateTime<Utc>, Secret)>>,
}

impl CachedSecrets {
    pub fn new(source: Arc<dyn SecretSource>, clock: Arc<dyn Clock>, max_age: Duration) -> Self {
        Self { source, clock, max_age, cache: Mutex::new(HashMap::new()) }
    }

    /// The raw secret string.
    pub async fn get(&self, id: &str) -> Result<Secret, SecretsError> {
        let now = self.clock.now();
        let max_age = chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::MAX);
        if let Some((at, value)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(id)
            && now - *at < max_age
        {
            return Ok(value.clone());
        }
        let value = Secret::new(self.source.fetch(id).await?);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), (now, value.clone()));
        Ok(value)
    }

    /// Forgets a cached secret (after an auth failure that a rotation may explain).
    pub fn invalidate(&self, id: &str) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    async fn json(&self, id: &str) -> Result<serde_json::Map<String, serde_json::Value>, SecretsError> {
        let raw = self.get(id).await?;
        match serde_json::from_str::<serde_json::Value>(raw.expose()) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(SecretsError::Malformed { id: id.to_string(), reason: "expected a JSON object".into() }),
        }
    }

    fn text(map: &serde_json::Map<String, serde_json::Value>, id: &str, key: &str) -> Result<Secret, SecretsError> {
        match map.get(key).and_then(|v| v.as_str()).map(str::trim).filter(|s| !s.is_empty()) {
            Some(value) => Ok(Secret::new(value)),
            None => Err(SecretsError::Malformed { id: id.to_string(), reason: format!("missing or empty \"{key}\"") }),
        }
    }

    /// `{"token": "..."}`.
    pub async fn pagerduty_token(&self, id: &str) -> Result<Secret, SecretsError> {
        Self::text(&self.json(id).await?, id, "token")
    }

    async fn signing(&self, id: &str) -> Result<SigningSecrets, SecretsError> {
        let map = self.json(id).await?;
        let current = Self::text(&map, id, "current")?;
        let previous = Self::text(&map, id, "previous").ok();
        Ok(SigningSecrets { current, previous })
    }

    /// `{"current": "...", "previous": "..." | null}`.
    pub async fn webhook_secrets(&self, id: &str) -> Result<SigningSecrets, SecretsError> {
        self.signing(id).await
    }

    /// `{"current": "...", "previous": "..." | null}`.
    pub async fn inbound_secrets(&self, id: &str) -> Result<SigningSecrets, SecretsError> {
        self.signing(id).await
    }

    /// The raw JSON of the Salesforce connected-app secret (parsed by `salesforce::JwtCredentials`).
    pub async fn salesforce_jwt(&self, id: &str) -> Result<String, SecretsError> {
        Ok(self.get(id).await?.expose().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn cached(source: Arc<StaticSecrets>, clock: Arc<ManualClock>) -> CachedSecrets {
        CachedSecrets::new(source, clock, Duration::from_secs(300))
    }

    #[tokio::test]
    async fn warm_reads_use_the_cache_until_max_age() {
        let source = Arc::new(StaticSecrets::default());
        source.set("pd", r#"{"token":"first"}"#);
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let secrets = cached(source.clone(), clock.clone());
        assert_eq!(secrets.pagerduty_token("pd").await.unwrap().expose(), "first");
        source.set("pd", r#"{"token":"second"}"#);
        assert_eq!(secrets.pagerduty_token("pd").await.unwrap().expose(), "first", "cached");
        clock.advance(chrono::Duration::seconds(301));
        assert_eq!(secrets.pagerduty_token("pd").await.unwrap().expose(), "second", "refreshed after max age");
    }

    #[tokio::test]
    async fn signing_secrets_list_current_then_previous() {
        let source = Arc::new(StaticSecrets::default());
        source.set("wh", r#"{"current":"new","previous":"old"}"#);
        source.set("wh1", r#"{"current":"only","previous":null}"#);
        let secrets = cached(source, Arc::new(ManualClock::new(Utc::now())));
        let both: Vec<String> =
            secrets.webhook_secrets("wh").await.unwrap().iter().map(|s| s.expose().into()).collect();
        assert_eq!(both, vec!["new", "old"]);
        assert_eq!(secrets.webhook_secrets("wh1").await.unwrap().iter().count(), 1);
    }

    #[tokio::test]
    async fn malformed_secret_names_the_key_not_the_value() {
        let source = Arc::new(StaticSecrets::default());
        source.set("pd", r#"{"tokn":"s3cr3t-value"}"#);
        let secrets = cached(source, Arc::new(ManualClock::new(Utc::now())));
        let err = secrets.pagerduty_token("pd").await.unwrap_err().to_string();
        assert!(err.contains("\"token\""), "{err}");
        assert!(!err.contains("s3cr3t-value"), "{err}");
        assert_eq!(format!("{:?}", Secret::new("s3cr3t-value")), "[redacted]");
    }
}
