//! The compiled rules a function uses, reloaded after a maximum age.
//!
//! A warm Lambda keeps the cache between invocations, so a `syncctl rules push` is picked up
//! within `max_age` without a redeploy. A newly stored document that fails validation never
//! replaces the last good one: the bridge keeps running on the rules it had, and warns.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::store::{RulesStore, StoreError};

use super::{Rules, ValidationErrors};

/// A rules document as stored: its version and YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDocument {
    pub version: u64,
    pub text: String,
}

/// Where the cache reads the rules document from.
#[async_trait]
pub trait RulesSource: Send + Sync {
    /// The current document, or `None` when none was ever stored.
    async fn fetch(&self) -> Result<Option<SourceDocument>, RulesCacheError>;
}

/// The DynamoDB (or in-memory) rules store as a source.
#[async_trait]
impl RulesSource for Arc<dyn RulesStore> {
    async fn fetch(&self) -> Result<Option<SourceDocument>, RulesCacheError> {
        let stored = self.current_rules().await?;
        Ok(stored.map(|s| SourceDocument { version: s.version, text: s.document }))
    }
}

/// A local file as a source (`make run`); its version is a hash of the content.
#[derive(Debug, Clone)]
pub struct FileSource(pub PathBuf);

#[async_trait]
impl RulesSource for FileSource {
    async fn fetch(&self) -> Result<Option<SourceDocument>, RulesCacheError> {
        match tokio::fs::read_to_string(&self.0).await {
            Ok(text) => {
                let digest = Sha256::digest(text.as_bytes());
                let version = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
                Ok(Some(SourceDocument { version, text }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RulesCacheError::File { path: self.0.display().to_string(), message: e.to_string() }),
        }
    }
}

/// Why no rules could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum RulesCacheError {
    #[error(
        "no rules document is stored; validate one with `syncctl rules check FILE` and store it with `syncctl rules push FILE`"
    )]
    NoDocument,
    #[error(
        "the stored rules document (version {version}) is invalid and no earlier good one is loaded; fix it and push again:\n{errors}"
    )]
    Invalid { version: u64, errors: ValidationErrors },
    #[error("could not read the rules: {0}")]
    Store(#[from] StoreError),
    #[error("could not read rules file {path}: {message}")]
    File { path: String, message: String },
}

impl RulesCacheError {
    /// True when asking again later can succeed without anyone fixing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            RulesCacheError::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Compiled rules and the version they came from.
#[derive(Debug)]
pub struct CachedRules {
    pub version: u64,
    pub rules: Rules,
}

struct State {
    current: Option<Arc<CachedRules>>,
    /// When the source was last asked (successfully or not).
    checked_at: Option<DateTime<Utc>>,
    /// A version known to be invalid, so it is not re-validated on every check.
    rejected_version: Option<u64>,
}

/// Holds the current compiled rules; asks the source again once they are older than `max_age`.
pub struct RulesCache {
    source: Box<dyn RulesSource>,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    state: Mutex<State>,
}

impl RulesCache {
    pub fn new(source: impl RulesSource + 'static, clock: Arc<dyn Clock>, max_age: Duration) -> Self {
        RulesCache {
            source: Box::new(source),
            clock,
            max_age,
            state: Mutex::new(State { current: None, checked_at: None, rejected_version: None }),
        }
    }

    /// A cache over a rules store.
    pub fn from_store(store: Arc<dyn RulesStore>, clock: Arc<dyn Clock>, max_age: Duration) -> Self {
        Self::new(store, clock, max_age)
    }

    /// A cache over a local file.
    pub fn from_file(path: impl Into<PathBuf>, clock: Arc<dyn Clock>, max_age: Duration) -> Self {
        Self::new(FileSource(path.into()), clock, max_age)
    }

    /// The rules to use now. Reloads when older than `max_age`; keeps the last good rules when
    /// the source fails or holds an invalid document.
    pub async fn current(&self) -> Result<Arc<CachedRules>, RulesCacheError> {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        if let (Some(current), Some(checked)) = (&state.current, state.checked_at)
            && now - checked < self.max_age
        {
            return Ok(current.clone());
        }
        let fetched = self.source.fetch().await;
        state.checked_at = Some(now);
        let doc = match fetched {
            Ok(Some(doc)) => doc,
            Ok(None) => {
                return state.current.clone().ok_or(RulesCacheError::NoDocument);
            }
            Err(e) => {
                return match &state.current {
                    Some(current) => {
                        tracing::warn!(error = %e, version = current.version, "could not reload the rules; keeping the loaded version");
                        Ok(current.clone())
                    }
                    None => Err(e),
                };
            }
        };
        if let Some(current) = &state.current
            && current.version == doc.version
        {
            return Ok(current.clone());
        }
        match Rules::from_yaml(&doc.text) {
            Ok(rules) => {
                let loaded = Arc::new(CachedRules { version: doc.version, rules });
                state.current = Some(loaded.clone());
                state.rejected_version = None;
                Ok(loaded)
            }
            Err(errors) => {
                if state.rejected_version != Some(doc.version) {
                    tracing::warn!(version = doc.version, problems = errors.len(), errors = %errors, "stored rules document is invalid; keeping the last good version");
                    state.rejected_version = Some(doc.version);
                }
                match &state.current {
                    Some(current) => Ok(current.clone()),
                    None => Err(RulesCacheError::Invalid { version: doc.version, errors }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory::MemoryStore;

    const GOOD_V1: &str = "rulesets:\n  - name: a\n    rules:\n      - name: r1\n        direction: salesforce_to_pagerduty\n        object: Case\n        actions: [acknowledge]\n";
    const GOOD_V2: &str = "rulesets:\n  - name: a\n    rules:\n      - name: r2\n        direction: salesforce_to_pagerduty\n        object: Case\n        actions: [resolve]\n";
    const BAD: &str = "rulesets:\n  - name: a\n    rules:\n      - name: r3\n        direction: sideways\n";

    fn setup() -> (Arc<MemoryStore>, Arc<ManualClock>, RulesCache) {
        let store = Arc::new(MemoryStore::default());
        let clock = Arc::new(ManualClock::new(DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc()));
        let cache = RulesCache::from_store(store.clone(), clock.clone(), Duration::seconds(60));
        (store, clock, cache)
    }

    fn first_rule(c: &CachedRules) -> &str {
        &c.rules.rulesets[0].rules[0].name
    }

    #[tokio::test]
    async fn a_new_version_is_picked_up_only_after_max_age() {
        let (store, clock, cache) = setup();
        let at = clock.now();
        store.put_rules(GOOD_V1, "test", at).await.unwrap();
        assert_eq!(first_rule(&cache.current().await.unwrap()), "r1");
        store.put_rules(GOOD_V2, "test", at).await.unwrap();
        clock.advance(Duration::seconds(59));
        assert_eq!(first_rule(&cache.current().await.unwrap()), "r1");
        clock.advance(Duration::seconds(2));
        let now = cache.current().await.unwrap();
        assert_eq!(first_rule(&now), "r2");
        assert_eq!(now.version, 2);
    }

    #[tokio::test]
    async fn an_invalid_new_version_keeps_the_last_good_rules() {
        let (store, clock, cache) = setup();
        store.put_rules(GOOD_V1, "test", clock.now()).await.unwrap();
        cache.current().await.unwrap();
        store.put_rules(BAD, "test", clock.now()).await.unwrap();
        clock.advance(Duration::minutes(5));
        let kept = cache.current().await.unwrap();
        assert_eq!((kept.version, first_rule(&kept)), (1, "r1"));
    }

    #[tokio::test]
    async fn an_invalid_first_document_is_an_error_that_lists_the_problems() {
        let (store, clock, cache) = setup();
        store.put_rules(BAD, "test", clock.now()).await.unwrap();
        let err = cache.current().await.unwrap_err();
        assert!(matches!(err, RulesCacheError::Invalid { version: 1, .. }), "{err}");
        assert!(err.to_string().contains("sideways"));
    }

    #[tokio::test]
    async fn no_stored_document_says_how_to_push_one() {
        let (_, _, cache) = setup();
        let err = cache.current().await.unwrap_err();
        assert!(err.to_string().contains("syncctl rules push"), "{err}");
    }

    #[tokio::test]
    async fn a_file_source_reloads_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, GOOD_V1).unwrap();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let cache = RulesCache::from_file(&path, clock.clone(), Duration::seconds(10));
        assert_eq!(first_rule(&cache.current().await.unwrap()), "r1");
        std::fs::write(&path, GOOD_V2).unwrap();
        clock.advance(Duration::seconds(11));
        assert_eq!(first_rule(&cache.current().await.unwrap()), "r2");
    }
}
