//! Secrets: a source trait, a cache with a max age, typed accessors for the formats the stack
//! stores, and the [`Credential`] the PagerDuty and Salesforce clients read through the cache.
//! Secret values never reach a log line or an error message: [`Secret`] prints `[redacted]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::class::{Class, Classify};
use crate::clock::Clock;

pub mod credential;

pub use credential::Credential;

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
        self.class() == Class::Transient
    }
}

/// A client that cannot read its credential fails with this class: an outage of the source is
/// retried; a missing, forbidden or malformed secret waits for a person to fix it.
impl Classify for SecretsError {
    fn class(&self) -> Class {
        match self {
            SecretsError::Unavailable { .. } => Class::Transient,
            SecretsError::NotFound { .. } | SecretsError::AccessDenied { .. } | SecretsError::Malformed { .. } => {
                Class::Auth
            }
        }
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

/// Signing secrets during rotation: a signature made with either is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Shortest time between two reads of a secret that a signature mismatch forces. A rotation is
/// picked up within it, and a flood of forged requests costs at most one GetSecretValue per
/// interval instead of one each (which would get the genuine reads throttled).
pub const MISMATCH_REREAD_INTERVAL: Duration = Duration::from_secs(30);

/// One secret's cached value and when it was last read (or a read was tried).
#[derive(Default)]
struct Slot {
    value: Option<(DateTime<Utc>, Secret)>,
    tried_at: Option<DateTime<Utc>>,
}

/// A cache in front of a [`SecretSource`]: warm invocations do not ask again until `max_age`.
/// One read per secret at a time: concurrent callers wait for it and share its value.
pub struct CachedSecrets {
    source: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl CachedSecrets {
    pub fn new(source: Arc<dyn SecretSource>, clock: Arc<dyn Clock>, max_age: Duration) -> Self {
        Self { source, clock, max_age, slots: Mutex::new(HashMap::new()) }
    }

    fn slot(&self, id: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_string()).or_default().clone()
    }

    /// The raw secret string.
    pub async fn get(&self, id: &str) -> Result<Secret, SecretsError> {
        let slot = self.slot(id);
        // Held across the read, so that concurrent callers share it.
        let mut slot = slot.lock().await;
        let now = self.clock.now();
        match &slot.value {
            Some((at, value)) if now - *at < chrono_duration(self.max_age) => Ok(value.clone()),
            _ => self.read(id, &mut slot, now).await,
        }
    }

    /// The raw secret string read again after a signature its cached value does not verify (a
    /// rotation since the read would explain it), unless it was read, or a read was tried, less
    /// than [`MISMATCH_REREAD_INTERVAL`] ago: then the cached value, which callers that waited
    /// for a concurrent re-read get too.
    pub async fn reread_after_mismatch(&self, id: &str) -> Result<Secret, SecretsError> {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        let now = self.clock.now();
        match (&slot.value, slot.tried_at) {
            (Some((_, value)), Some(tried)) if now - tried < chrono_duration(MISMATCH_REREAD_INTERVAL) => {
                Ok(value.clone())
            }
            _ => self.read(id, &mut slot, now).await,
        }
    }

    async fn read(&self, id: &str, slot: &mut Slot, now: DateTime<Utc>) -> Result<Secret, SecretsError> {
        // A failed read counts too: an outage must not turn each forged request into a call.
        slot.tried_at = Some(now);
        let value = Secret::new(self.source.fetch(id).await?);
        slot.value = Some((now, value.clone()));
        Ok(value)
    }

    /// Runs `check` with the signing secrets `id`. When it fails with an error that
    /// `rotation_may_explain` (a mismatch, not a missing or malformed header), the secrets are
    /// read again ([`Self::reread_after_mismatch`]) and, if they changed, checked once more.
    /// The outer error: the secrets could not be read.
    pub async fn verify_signed<E>(
        &self,
        id: &str,
        check: impl Fn(&SigningSecrets) -> Result<(), E>,
        rotation_may_explain: impl Fn(&E) -> bool,
    ) -> Result<Result<(), E>, SecretsError> {
        let secrets = self.signing(id).await?;
        match check(&secrets) {
            Err(err) if rotation_may_explain(&err) => {
                let reread = Self::signing_of(&self.reread_after_mismatch(id).await?, id)?;
                if reread == secrets { Ok(Err(err)) } else { Ok(check(&reread)) }
            }
            verdict => Ok(verdict),
        }
    }

    fn json_of(raw: &Secret, id: &str) -> Result<serde_json::Map<String, serde_json::Value>, SecretsError> {
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
        Self::pagerduty_token_of(&self.get(id).await?, id)
    }

    /// The token in the text of secret `id` (a [`credential::Parse`]).
    pub fn pagerduty_token_of(raw: &Secret, id: &str) -> Result<Secret, SecretsError> {
        Self::text(&Self::json_of(raw, id)?, id, "token")
    }

    async fn signing(&self, id: &str) -> Result<SigningSecrets, SecretsError> {
        Self::signing_of(&self.get(id).await?, id)
    }

    fn signing_of(raw: &Secret, id: &str) -> Result<SigningSecrets, SecretsError> {
        let map = Self::json_of(raw, id)?;
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

    /// Counts the reads that reach the source.
    #[derive(Default)]
    struct Counting {
        inner: StaticSecrets,
        reads: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl SecretSource for Counting {
        async fn fetch(&self, id: &str) -> Result<String, SecretsError> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Lets concurrent callers pile up behind the read.
            tokio::task::yield_now().await;
            self.inner.fetch(id).await
        }
    }

    impl Counting {
        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// Signing secrets `wh` (current: "old") behind a counting source and a manual clock.
    fn cached_old_secret() -> (Arc<Counting>, Arc<ManualClock>, CachedSecrets) {
        let source = Arc::new(Counting::default());
        source.inner.set("wh", r#"{"current":"old"}"#);
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let secrets = CachedSecrets::new(source.clone(), clock.clone(), Duration::from_secs(300));
        (source, clock, secrets)
    }

    fn matches_key(key: &'static str) -> impl Fn(&SigningSecrets) -> Result<(), &'static str> {
        move |secrets| if secrets.iter().any(|s| s.expose() == key) { Ok(()) } else { Err("mismatch") }
    }

    #[tokio::test]
    async fn a_mismatch_rereads_the_secret_at_most_once_per_interval() {
        let (source, clock, secrets) = cached_old_secret();
        for _ in 0..100 {
            assert_eq!(secrets.verify_signed("wh", matches_key("forged"), |_| true).await.unwrap(), Err("mismatch"));
        }
        assert_eq!(source.reads(), 1, "the first read only: the secret is younger than the interval");
        source.inner.set("wh", r#"{"current":"new","previous":"old"}"#);
        clock.advance(chrono::Duration::from_std(MISMATCH_REREAD_INTERVAL).unwrap());
        assert_eq!(secrets.verify_signed("wh", matches_key("new"), |_| true).await.unwrap(), Ok(()));
        assert_eq!(source.reads(), 2, "one re-read once the interval is over");
        for _ in 0..100 {
            assert_eq!(secrets.verify_signed("wh", matches_key("forged"), |_| true).await.unwrap(), Err("mismatch"));
        }
        assert_eq!(source.reads(), 2);
    }

    #[tokio::test]
    async fn concurrent_mismatches_share_one_reread_and_its_value() {
        let (source, clock, secrets) = cached_old_secret();
        secrets.get("wh").await.unwrap();
        source.inner.set("wh", r#"{"current":"new"}"#);
        clock.advance(chrono::Duration::seconds(31));
        let checks = (0..50).map(|_| secrets.verify_signed("wh", matches_key("new"), |_| true));
        let verdicts = futures::future::join_all(checks).await;
        assert!(verdicts.iter().all(|v| matches!(v, Ok(Ok(())))), "every caller sees the rotated secret");
        assert_eq!(source.reads(), 2, "the first read and one shared re-read");
    }

    #[tokio::test]
    async fn an_error_no_rotation_explains_does_not_reread() {
        let (source, clock, secrets) = cached_old_secret();
        secrets.get("wh").await.unwrap();
        clock.advance(chrono::Duration::seconds(31));
        let malformed = |_: &SigningSecrets| Err::<(), _>("malformed header");
        let verdict = secrets.verify_signed("wh", malformed, |e| *e != "malformed header").await.unwrap();
        assert_eq!(verdict, Err("malformed header"));
        assert_eq!(source.reads(), 1, "a re-read was due, but a malformed header is no reason");
        secrets.verify_signed("wh", matches_key("forged"), |_| true).await.unwrap().unwrap_err();
        assert_eq!(source.reads(), 2, "a mismatch is");
    }

    #[tokio::test]
    async fn a_failed_reread_also_waits_out_the_interval() {
        let (source, clock, secrets) = cached_old_secret();
        secrets.get("wh").await.unwrap();
        clock.advance(chrono::Duration::seconds(31));
        source.inner.0.lock().unwrap().clear();
        assert!(secrets.verify_signed("wh", matches_key("forged"), |_| true).await.is_err(), "the re-read failed");
        for _ in 0..10 {
            assert_eq!(secrets.verify_signed("wh", matches_key("forged"), |_| true).await.unwrap(), Err("mismatch"));
        }
        assert_eq!(source.reads(), 2, "no read per request while the source fails");
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
