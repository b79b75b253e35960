//! Configuration from environment variables, one typed struct per subsystem (PagerDuty,
//! Salesforce, store, queues) plus the process-wide settings.
//!
//! A missing or malformed value stops the function at init with a message naming the
//! variable, instead of failing on the first event. The PagerDuty and Salesforce configs build
//! their clients here ([`PagerdutyConfig::client`], [`SalesforceConfig::client`]); the store and
//! queue configs name AWS resources, which the adapters build.

use std::collections::HashMap;
use std::time::Duration;

mod pagerduty;
mod queues;
mod salesforce;
mod store;
mod vars;

pub use pagerduty::{PagerdutyConfig, PagerdutyRegion};
pub use queues::QueueConfig;
pub use salesforce::SalesforceConfig;
pub use store::StoreConfig;
use vars::Vars;

/// A configuration problem, naming the variable and what it should look like.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {name} is not set: {hint}")]
    Missing { name: &'static str, hint: &'static str },
    #[error("environment variable {name}={value:?} is invalid: {hint}")]
    Invalid { name: &'static str, value: String, hint: &'static str },
}

impl ConfigError {
    /// The variable it is about.
    pub fn name(&self) -> &'static str {
        match self {
            ConfigError::Missing { name, .. } | ConfigError::Invalid { name, .. } => name,
        }
    }
}

/// A well-formed value of `name`, standing in for a missing or malformed one so that reading
/// can go on to the next variable ([`Config::from_map_all`]); never used to run anything.
fn stand_in(name: &str) -> &'static str {
    match name {
        "PAGERDUTY_REGION" => "us",
        "PAGERDUTY_API_BASE" | "SALESFORCE_LOGIN_URL" | "SALESFORCE_JWT_AUDIENCE" => "https://stand-in.invalid",
        "PAGERDUTY_FROM_EMAIL" => "stand-in@example.invalid",
        "SALESFORCE_API_VERSION" => "62.0",
        "SALESFORCE_ORG_ID" => "00D000000000001EAA",
        "LOG_LEVEL" => "info",
        n if n.ends_with("_SECONDS") || n.ends_with("_HOURS") => "0",
        _ => "stand-in",
    }
}

/// Where the functions read the rules document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesSource {
    /// The latest version pushed with `syncctl rules push` into the table.
    Table,
    /// A YAML file (local runs and tests).
    File(std::path::PathBuf),
}

/// Everything a function needs to know about its surroundings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub pagerduty: PagerdutyConfig,
    pub salesforce: SalesforceConfig,
    pub store: StoreConfig,
    pub queues: QueueConfig,
    /// `error`, `warn`, `info`, `debug` or `trace` (`LOG_LEVEL`).
    pub log_level: String,
    /// Where rules come from (`RULES_SOURCE`: `table` or a file path).
    pub rules_source: RulesSource,
    /// How long a secret is reused before Secrets Manager is asked again (`SECRETS_MAX_AGE_SECONDS`).
    pub secrets_max_age: Duration,
    /// How long the rules document is reused before the table is asked again (`RULES_MAX_AGE_SECONDS`).
    pub rules_max_age: Duration,
}

/// The variables a function reads, for docs and error messages.
pub const VARIABLES: &[(&str, &str)] = &[
    ("TABLE_NAME", "DynamoDB table name"),
    ("RETRY_QUEUE_URL", "SQS retry queue URL"),
    ("DLQ_URL", "SQS dead-letter queue URL"),
    ("PAGERDUTY_REGION", "us or eu (default us)"),
    ("PAGERDUTY_API_BASE", "overrides the region's base URL (simulators)"),
    ("PAGERDUTY_FROM_EMAIL", "email of the PagerDuty integration user"),
    ("PAGERDUTY_USER_ID", "id of that PagerDuty user (optional; looked up by email when empty)"),
    (
        "CONSOLE_ESCALATION_SERVICE_ID",
        "PagerDuty service id the agent console's escalations open incidents on (optional)",
    ),
    ("CONSOLE_SERVICE_IDS", "PagerDuty service ids the agent console's status panel shows (optional, comma-separated)"),
    (
        "PAGERDUTY_TOKEN_SECRET_ID",
        "Secrets Manager id of the PagerDuty credential: a REST API key or a Scoped OAuth client",
    ),
    ("PAGERDUTY_IDENTITY_BASE", "PagerDuty's OAuth token endpoint root (optional; https://identity.pagerduty.com)"),
    ("PAGERDUTY_WEBHOOK_SECRET_ID", "Secrets Manager id of the webhook signing secrets"),
    ("SALESFORCE_LOGIN_URL", "https://login.salesforce.com or https://test.salesforce.com"),
    ("SALESFORCE_JWT_AUDIENCE", "JWT audience override (optional; derived from the login URL when empty)"),
    ("SALESFORCE_API_VERSION", "e.g. 62.0"),
    ("SALESFORCE_JWT_SECRET_ID", "Secrets Manager id of the connected app key"),
    ("SALESFORCE_INBOUND_SECRET_ID", "Secrets Manager id of the Apex trigger's signing key"),
    ("SALESFORCE_ORG_ID", "the org id every Salesforce post must carry (15 or 18 characters)"),
    (
        "SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID",
        "Secrets Manager id of the Outbound Message URL tokens (empty: route off)",
    ),
    ("SALESFORCE_INTEGRATION_USER", "Salesforce username the bridge writes as"),
    ("SALESFORCE_INTEGRATION_USER_ID", "Salesforce id of that user (optional)"),
    ("LOG_LEVEL", "error|warn|info|debug|trace (default info)"),
    ("RULES_SOURCE", "table (default) or a path to a rules YAML file"),
    ("SECRETS_MAX_AGE_SECONDS", "secret cache age, default 300"),
    ("RULES_MAX_AGE_SECONDS", "rules cache age, default 60"),
    ("IDEMPOTENCY_TTL_HOURS", "how long duplicates are recognised, default 72"),
];

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_map(&vars)
    }

    /// Reads the given variables (tests pass a map instead of touching the process environment).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let vars = Vars(vars);
        let pagerduty = PagerdutyConfig::read(&vars)?;
        let salesforce = SalesforceConfig::read(&vars)?;

        let log_level = vars.get("LOG_LEVEL").unwrap_or("info").to_ascii_lowercase();
        if !matches!(log_level.as_str(), "error" | "warn" | "info" | "debug" | "trace") {
            return Err(ConfigError::Invalid {
                name: "LOG_LEVEL",
                value: log_level,
                hint: "error, warn, info, debug or trace",
            });
        }
        let rules_source = match vars.get("RULES_SOURCE") {
            None | Some("table") => RulesSource::Table,
            Some(path) => RulesSource::File(path.into()),
        };

        Ok(Self {
            store: StoreConfig::read(&vars)?,
            queues: QueueConfig::read(&vars)?,
            pagerduty,
            salesforce,
            log_level,
            rules_source,
            secrets_max_age: vars.seconds("SECRETS_MAX_AGE_SECONDS", 300, "a whole number of seconds")?,
            rules_max_age: vars.seconds("RULES_MAX_AGE_SECONDS", 60, "a whole number of seconds")?,
        })
    }
}

impl Config {
    /// Like [`Config::from_map`], but names every missing or malformed variable at once instead
    /// of the first (`syncctl doctor`): each problem is recorded, stood in for by a well-formed
    /// value, and reading goes on.
    pub fn from_map_all(vars: &HashMap<String, String>) -> Result<Self, Vec<ConfigError>> {
        let mut vars = vars.clone();
        let mut problems: Vec<ConfigError> = Vec::new();
        loop {
            match Self::from_map(&vars) {
                Ok(config) if problems.is_empty() => return Ok(config),
                Ok(_) => return Err(problems),
                Err(err) => {
                    let name = err.name();
                    // A stand-in that is itself refused would loop: report what is known.
                    if problems.iter().any(|p| p.name() == name) {
                        return Err(problems);
                    }
                    vars.insert(name.to_string(), stand_in(name).to_string());
                    problems.push(err);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn complete_env() -> HashMap<String, String> {
        [
            ("TABLE_NAME", "pd-sfdc-sync"),
            ("RETRY_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/retry"),
            ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/dlq"),
            ("PAGERDUTY_FROM_EMAIL", "bridge@example.com"),
            ("PAGERDUTY_TOKEN_SECRET_ID", "pd-token"),
            ("PAGERDUTY_WEBHOOK_SECRET_ID", "pd-webhook"),
            ("SALESFORCE_LOGIN_URL", "https://login.salesforce.com"),
            ("SALESFORCE_JWT_SECRET_ID", "sf-jwt"),
            ("SALESFORCE_INBOUND_SECRET_ID", "sf-inbound"),
            ("SALESFORCE_ORG_ID", "00D000000000001EAA"),
            ("SALESFORCE_INTEGRATION_USER", "bridge@example.com.prod"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn complete_environment_parses_with_defaults() {
        let config = Config::from_map(&complete_env()).expect("valid");
        assert_eq!(config.pagerduty.api_base.as_str(), "https://api.pagerduty.com/");
        assert_eq!(config.salesforce.api_version, "62.0");
        assert_eq!(config.log_level, "info");
        assert_eq!(config.rules_source, RulesSource::Table);
        assert_eq!(config.secrets_max_age, Duration::from_secs(300));
        assert_eq!(config.store.idempotency_ttl, Duration::from_secs(72 * 3600));
    }

    #[test]
    fn eu_region_selects_the_eu_api() {
        let mut env = complete_env();
        env.insert("PAGERDUTY_REGION".into(), "EU".into());
        assert_eq!(Config::from_map(&env).unwrap().pagerduty.api_base.as_str(), "https://api.eu.pagerduty.com/");
    }

    #[test]
    fn missing_variable_is_named() {
        let mut env = complete_env();
        env.remove("TABLE_NAME");
        let err = Config::from_map(&env).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { name: "TABLE_NAME", .. }));
        assert!(err.to_string().contains("TABLE_NAME"));
    }

    #[test]
    fn every_missing_and_malformed_variable_is_named_at_once() {
        let mut env = complete_env();
        for name in ["TABLE_NAME", "DLQ_URL", "SALESFORCE_JWT_SECRET_ID", "SALESFORCE_INTEGRATION_USER"] {
            env.remove(name);
        }
        env.insert("LOG_LEVEL".into(), "loud".into());
        let problems = Config::from_map_all(&env).unwrap_err();
        let mut names: Vec<&str> = problems.iter().map(ConfigError::name).collect();
        names.sort();
        assert_eq!(
            names,
            ["DLQ_URL", "LOG_LEVEL", "SALESFORCE_INTEGRATION_USER", "SALESFORCE_JWT_SECRET_ID", "TABLE_NAME"]
        );
        let nothing = Config::from_map_all(&HashMap::new()).unwrap_err();
        assert_eq!(nothing.len(), 11, "every required variable: {nothing:?}");
        assert_eq!(Config::from_map_all(&complete_env()).unwrap(), Config::from_map(&complete_env()).unwrap());
    }

    #[test]
    fn malformed_values_are_named() {
        for (name, bad) in [
            ("PAGERDUTY_REGION", "mars"),
            ("LOG_LEVEL", "loud"),
            ("SALESFORCE_API_VERSION", "sixty-two"),
            ("SALESFORCE_LOGIN_URL", "login.salesforce.com"),
            ("SALESFORCE_JWT_AUDIENCE", "test.salesforce.com"),
            ("SECRETS_MAX_AGE_SECONDS", "-1"),
            ("PAGERDUTY_FROM_EMAIL", "not-an-email"),
            ("SALESFORCE_ORG_ID", "00D000000000001AAA"),
            ("SALESFORCE_ORG_ID", "001000000000001"),
        ] {
            let mut env = complete_env();
            env.insert(name.into(), bad.into());
            let err = Config::from_map(&env).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn the_jwt_audience_is_derived_from_the_login_url_unless_overridden() {
        let mut env = complete_env();
        env.insert("SALESFORCE_LOGIN_URL".into(), "https://acme--uat.sandbox.my.salesforce.com".into());
        assert_eq!(Config::from_map(&env).unwrap().salesforce.audience(), "https://test.salesforce.com");
        env.insert("SALESFORCE_JWT_AUDIENCE".into(), " ".into());
        assert_eq!(Config::from_map(&env).unwrap().salesforce.audience(), "https://test.salesforce.com", "empty");
        env.insert("SALESFORCE_JWT_AUDIENCE".into(), "https://community.acme.com/support/".into());
        assert_eq!(Config::from_map(&env).unwrap().salesforce.audience(), "https://community.acme.com/support");
    }
}
