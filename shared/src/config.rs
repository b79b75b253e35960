//! Configuration from environment variables into one typed struct.
//!
//! A missing or malformed value stops the function at init with a message naming the
//! variable, instead of failing on the first event.

use std::collections::HashMap;
use std::time::Duration;

use url::Url;

/// A configuration problem, naming the variable and what it should look like.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {name} is not set: {hint}")]
    Missing { name: &'static str, hint: &'static str },
    #[error("environment variable {name}={value:?} is invalid: {hint}")]
    Invalid { name: &'static str, value: String, hint: &'static str },
}

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
    /// DynamoDB table for links, idempotency, audit, rules and breakers (`TABLE_NAME`).
    pub table_name: String,
    /// SQS retry queue (`RETRY_QUEUE_URL`).
    pub retry_queue_url: String,
    /// SQS dead-letter queue (`DLQ_URL`).
    pub dlq_url: String,
    /// PagerDuty REST base URL, from `PAGERDUTY_REGION` (us|eu) or `PAGERDUTY_API_BASE`.
    pub pagerduty_api_base: Url,
    /// Email of the PagerDuty user the bridge acts as (`From` header), `PAGERDUTY_FROM_EMAIL`.
    pub pagerduty_from_email: String,
    /// Id of that PagerDuty user (`PAGERDUTY_USER_ID`, optional: looked up by email when empty).
    pub pagerduty_user_id: String,
    /// Secret holding the PagerDuty REST API token (`PAGERDUTY_TOKEN_SECRET_ID`).
    pub pagerduty_token_secret_id: String,
    /// Secret holding the webhook signing secrets (`PAGERDUTY_WEBHOOK_SECRET_ID`).
    pub pagerduty_webhook_secret_id: String,
    /// `https://login.salesforce.com` or `https://test.salesforce.com` (`SALESFORCE_LOGIN_URL`).
    pub salesforce_login_url: Url,
    /// REST API version without the `v`, e.g. `62.0` (`SALESFORCE_API_VERSION`).
    pub salesforce_api_version: String,
    /// Secret holding the connected app's consumer key, username and private key (`SALESFORCE_JWT_SECRET_ID`).
    pub salesforce_jwt_secret_id: String,
    /// Secret holding the shared key the Apex trigger signs posts with (`SALESFORCE_INBOUND_SECRET_ID`).
    pub salesforce_inbound_secret_id: String,
    /// The 15 or 18-character org id every Salesforce post must come from (`SALESFORCE_ORG_ID`).
    pub salesforce_org_id: String,
    /// Secret holding the tokens Outbound Message endpoint URLs carry
    /// (`SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID`); empty: the Outbound Message route is off.
    pub salesforce_outbound_message_secret_id: String,
    /// Salesforce username of the integration user; its changes are not sent back (`SALESFORCE_INTEGRATION_USER`).
    pub salesforce_integration_user: String,
    /// Salesforce id of that user (`SALESFORCE_INTEGRATION_USER_ID`, optional): changes whose
    /// `LastModifiedById` it is are not sent back either (Outbound Messages name no user).
    pub salesforce_integration_user_id: String,
    /// `error`, `warn`, `info`, `debug` or `trace` (`LOG_LEVEL`).
    pub log_level: String,
    /// Where rules come from (`RULES_SOURCE`: `table` or a file path).
    pub rules_source: RulesSource,
    /// How long a secret is reused before Secrets Manager is asked again (`SECRETS_MAX_AGE_SECONDS`).
    pub secrets_max_age: Duration,
    /// How long the rules document is reused before the table is asked again (`RULES_MAX_AGE_SECONDS`).
    pub rules_max_age: Duration,
    /// Idempotency records live this long (`IDEMPOTENCY_TTL_HOURS`).
    pub idempotency_ttl: Duration,
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
    ("PAGERDUTY_TOKEN_SECRET_ID", "Secrets Manager id of the PagerDuty API token"),
    ("PAGERDUTY_WEBHOOK_SECRET_ID", "Secrets Manager id of the webhook signing secrets"),
    ("SALESFORCE_LOGIN_URL", "https://login.salesforce.com or https://test.salesforce.com"),
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
        let get = |name: &'static str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let required = |name: &'static str, hint: &'static str| {
            get(name).map(str::to_string).ok_or(ConfigError::Missing { name, hint })
        };
        let url = |name: &'static str, value: &str, hint: &'static str| {
            Url::parse(value).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or(ConfigError::Invalid {
                name,
                value: value.to_string(),
                hint,
            })
        };
        let seconds = |name: &'static str, default: u64, hint: &'static str| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v.parse::<u64>().map(Duration::from_secs).map_err(|_| ConfigError::Invalid {
                    name,
                    value: v.to_string(),
                    hint,
                }),
            }
        };

        let pagerduty_api_base = match get("PAGERDUTY_API_BASE") {
            Some(base) => url("PAGERDUTY_API_BASE", base, "an http(s) URL such as https://api.pagerduty.com")?,
            None => {
                let region = match get("PAGERDUTY_REGION").map(str::to_ascii_lowercase).as_deref() {
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

        let pagerduty_from_email =
            required("PAGERDUTY_FROM_EMAIL", "the email of the PagerDuty user the bridge acts as")?;
        if !pagerduty_from_email.contains('@') {
            return Err(ConfigError::Invalid {
                name: "PAGERDUTY_FROM_EMAIL",
                value: pagerduty_from_email,
                hint: "an email address of a PagerDuty user",
            });
        }

        let login = required("SALESFORCE_LOGIN_URL", "https://login.salesforce.com or https://test.salesforce.com")?;
        let salesforce_login_url =
            url("SALESFORCE_LOGIN_URL", &login, "an http(s) URL such as https://login.salesforce.com")?;

        let api_version = get("SALESFORCE_API_VERSION").unwrap_or("62.0").trim_start_matches(['v', 'V']).to_string();
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

        let log_level = get("LOG_LEVEL").unwrap_or("info").to_ascii_lowercase();
        if !matches!(log_level.as_str(), "error" | "warn" | "info" | "debug" | "trace") {
            return Err(ConfigError::Invalid {
                name: "LOG_LEVEL",
                value: log_level,
                hint: "error, warn, info, debug or trace",
            });
        }

        let rules_source = match get("RULES_SOURCE") {
            None | Some("table") => RulesSource::Table,
            Some(path) => RulesSource::File(path.into()),
        };

        let idempotency_hours = seconds("IDEMPOTENCY_TTL_HOURS", 72, "a whole number of hours")?.as_secs();

        Ok(Self {
            table_name: required("TABLE_NAME", "the DynamoDB table the stack created")?,
            retry_queue_url: required("RETRY_QUEUE_URL", "the URL of the retry SQS queue")?,
            dlq_url: required("DLQ_URL", "the URL of the dead-letter SQS queue")?,
            pagerduty_api_base,
            pagerduty_from_email,
            pagerduty_user_id: get("PAGERDUTY_USER_ID").unwrap_or_default().to_string(),
            pagerduty_token_secret_id: required(
                "PAGERDUTY_TOKEN_SECRET_ID",
                "the secret holding the PagerDuty API token",
            )?,
            pagerduty_webhook_secret_id: required(
                "PAGERDUTY_WEBHOOK_SECRET_ID",
                "the secret holding the webhook signing secrets",
            )?,
            salesforce_login_url,
            salesforce_api_version: api_version,
            salesforce_jwt_secret_id: required("SALESFORCE_JWT_SECRET_ID", "the secret holding the connected app key")?,
            salesforce_inbound_secret_id: required(
                "SALESFORCE_INBOUND_SECRET_ID",
                "the secret holding the Apex trigger's signing key",
            )?,
            salesforce_org_id: {
                let id = required("SALESFORCE_ORG_ID", "the 15 or 18-character Salesforce org id")?;
                // A typo here would refuse every post; say so at start, not per request.
                if !crate::salesforce::id::same_org(&id, &id) {
                    return Err(ConfigError::Invalid {
                        name: "SALESFORCE_ORG_ID",
                        value: id,
                        hint: "an org id: 00D and 12 more letters or digits, optionally its 3-character suffix (Setup > Company Information)",
                    });
                }
                id
            },
            salesforce_outbound_message_secret_id: get("SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID")
                .unwrap_or_default()
                .to_string(),
            salesforce_integration_user: required(
                "SALESFORCE_INTEGRATION_USER",
                "the Salesforce username the bridge writes as",
            )?,
            salesforce_integration_user_id: get("SALESFORCE_INTEGRATION_USER_ID").unwrap_or_default().to_string(),
            log_level,
            rules_source,
            secrets_max_age: seconds("SECRETS_MAX_AGE_SECONDS", 300, "a whole number of seconds")?,
            rules_max_age: seconds("RULES_MAX_AGE_SECONDS", 60, "a whole number of seconds")?,
            idempotency_ttl: Duration::from_secs(idempotency_hours * 3600),
        })
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(config.pagerduty_api_base.as_str(), "https://api.pagerduty.com/");
        assert_eq!(config.salesforce_api_version, "62.0");
        assert_eq!(config.log_level, "info");
        assert_eq!(config.rules_source, RulesSource::Table);
        assert_eq!(config.secrets_max_age, Duration::from_secs(300));
        assert_eq!(config.idempotency_ttl, Duration::from_secs(72 * 3600));
    }

    #[test]
    fn eu_region_selects_the_eu_api() {
        let mut env = complete_env();
        env.insert("PAGERDUTY_REGION".into(), "EU".into());
        assert_eq!(Config::from_map(&env).unwrap().pagerduty_api_base.as_str(), "https://api.eu.pagerduty.com/");
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
    fn malformed_values_are_named() {
        for (name, bad) in [
            ("PAGERDUTY_REGION", "mars"),
            ("LOG_LEVEL", "loud"),
            ("SALESFORCE_API_VERSION", "sixty-two"),
            ("SALESFORCE_LOGIN_URL", "login.salesforce.com"),
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
}
