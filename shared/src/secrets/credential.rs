//! A credential a client reads when it needs it, instead of a string handed over at start.
//!
//! Stored credentials are read through [`CachedSecrets`] on every use: a warm call costs a
//! lookup in the cache, a rotated secret is picked up once the cache ages (no cold start), and
//! a function that never calls a service never reads that service's secret. Fixed credentials
//! are for tests, simulators and operator commands that already hold the value.

use std::sync::Arc;

use super::{CachedSecrets, Secret, SecretsError};

/// Turns a stored secret's text into the credential; `id` names the secret in the error.
pub type Parse<T> = fn(&Secret, &str) -> Result<T, SecretsError>;

/// Where a client's credential comes from.
#[derive(Clone)]
pub enum Credential<T> {
    /// The value itself, fixed for the client's life.
    Fixed(T),
    /// Secret `id`, read through the cache and parsed on each use.
    Stored { secrets: Arc<CachedSecrets>, id: String, parse: Parse<T> },
}

impl<T: Clone> Credential<T> {
    pub fn stored(secrets: Arc<CachedSecrets>, id: impl Into<String>, parse: Parse<T>) -> Self {
        Credential::Stored { secrets, id: id.into(), parse }
    }

    /// The current value. Cheap while the cache is fresh; a read of the source otherwise.
    pub async fn get(&self) -> Result<T, SecretsError> {
        match self {
            Credential::Fixed(value) => Ok(value.clone()),
            Credential::Stored { secrets, id, parse } => parse(&secrets.get(id).await?, id),
        }
    }

    /// The value read again, younger than the cache's age, after the service refused the cached
    /// one (a rotation since the read would explain it). Bounded like a signature mismatch's
    /// re-read ([`CachedSecrets::reread_after_mismatch`]): at most one read per interval.
    pub async fn reread(&self) -> Result<T, SecretsError> {
        match self {
            Credential::Fixed(value) => Ok(value.clone()),
            Credential::Stored { secrets, id, parse } => parse(&secrets.reread_after_mismatch(id).await?, id),
        }
    }
}

impl<T> std::fmt::Debug for Credential<T> {
    // Never the value: only where it comes from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Fixed(_) => f.write_str("Fixed([redacted])"),
            Credential::Stored { id, .. } => write!(f, "Stored({id})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::class::{Class, Classify};
    use crate::clock::ManualClock;
    use crate::secrets::StaticSecrets;

    #[tokio::test]
    async fn a_stored_credential_is_read_on_use_and_names_only_its_secret() {
        let source = Arc::new(StaticSecrets::default());
        let secrets = Arc::new(CachedSecrets::new(
            source.clone(),
            Arc::new(ManualClock::new(Utc::now())),
            Duration::from_secs(300),
        ));
        let token = Credential::stored(secrets, "pd", CachedSecrets::pagerduty_token_of);
        assert_eq!(token.get().await.unwrap_err().class(), Class::Auth, "missing until stored");
        source.set("pd", r#"{"token":"s3cr3t"}"#);
        assert_eq!(token.get().await.unwrap().expose(), "s3cr3t");
        assert_eq!(format!("{token:?}"), "Stored(pd)");
        assert!(!format!("{:?}", Credential::Fixed(Secret::new("s3cr3t"))).contains("s3cr3t"));
    }
}
