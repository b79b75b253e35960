//! Why a syncctl command failed, in words for the person at the terminal, and its exit code.
//!
//! Every error from the core and the adapters comes through [`Failure::of`]: its [`Class`] (the
//! same classification the functions retry and dead-letter by) picks the wording and the exit
//! code, and [`Detail`] gives the facts without the functions' own advice ("the event will be
//! retried", "grant it to the function"), which means nothing to someone running a command.

use shared::class::{Class, Classify};
use shared::config::ConfigError;
use shared::pagerduty::PagerdutyError;
use shared::retry::queue::QueueError;
use shared::salesforce::SalesforceError;
use shared::secrets::SecretsError;
use shared::store::StoreError;

use crate::exit;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Wrong flags, an unreadable or unrecognised file, a setting that names nothing.
    #[error("{0}")]
    Usage(String),
    /// Settings that are missing or malformed, all of them.
    #[error("{}", settings_text(.0))]
    Settings(Vec<ConfigError>),
    /// No region from the flag, the environment or the profile.
    #[error("region not set: pass --region, set AWS_REGION, or give your AWS profile a region (`aws configure`)")]
    NoRegion,
    /// The SDK's credential chain found nothing usable.
    #[error(
        "no AWS credentials found ({0}): run `aws sso login` or `aws configure`, pass --profile or set AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    NoCredentials(String),
    /// What was asked for does not hold (a check, a replay of letters that are not there).
    #[error("{0}")]
    Failed(String),
    /// A service could not be reached or was throttled: worth trying again.
    #[error(
        "{what} is unavailable: {detail}. Try again in a minute; if it goes on, check the network, AWS_ENDPOINT_URL if set, and the service's status page"
    )]
    Unavailable { what: String, detail: String },
    /// Credentials, permissions or a resource name are wrong: a person must fix them.
    #[error(
        "{what} refused the request: {detail}. Check the account and region in use (`syncctl doctor` shows them), that the settings name this stack's resources (--stack-name), and that your role has the stack's OperatorPolicyArn"
    )]
    Refused { what: String, detail: String },
}

fn settings_text(problems: &[ConfigError]) -> String {
    let mut text = format!(
        "{} setting(s) missing or invalid; pass --stack-name NAME (or set SYNCCTL_STACK_NAME) to read them from the deployed stack, or set them:",
        problems.len()
    );
    for problem in problems {
        text.push_str(&format!("\n  {}", setting_line(problem)));
    }
    text
}

/// One problem as `NAME: what is wrong`, naming the flag where there is one.
pub fn setting_line(problem: &ConfigError) -> String {
    let flag = match problem.name() {
        "TABLE_NAME" => " (or --table)",
        "RETRY_QUEUE_URL" => " (or --retry-queue-url)",
        "DLQ_URL" => " (or --dlq-url)",
        _ => "",
    };
    match problem {
        ConfigError::Missing { name, hint } => format!("{name}{flag} is not set: {hint}"),
        ConfigError::Invalid { name, value, hint } => format!("{name}{flag}={value:?} is invalid: {hint}"),
    }
}

/// The facts of an error, without advice meant for the functions.
pub trait Detail {
    fn detail(&self) -> String;
}

impl Detail for StoreError {
    fn detail(&self) -> String {
        match self {
            StoreError::Unavailable { operation, message } => format!("{operation} failed ({message})"),
            StoreError::Throttled { operation, message } => format!("{operation} was throttled ({message})"),
            StoreError::Config { operation, message } => format!("{operation} was refused ({message})"),
            StoreError::Refused { operation, message } => format!("{operation}: the item is refused ({message})"),
            StoreError::Corrupt { key, message } => format!("stored item {key} is corrupt: {message}"),
        }
    }
}

impl Detail for QueueError {
    fn detail(&self) -> String {
        match self {
            QueueError::Unavailable { operation, message } | QueueError::Config { operation, message } => {
                format!("{operation}: {message}")
            }
        }
    }
}

impl Detail for SecretsError {
    fn detail(&self) -> String {
        match self {
            SecretsError::NotFound { id } => format!("secret {id} does not exist"),
            SecretsError::AccessDenied { id } => format!("reading secret {id} is not allowed"),
            SecretsError::Malformed { id, reason } => format!("secret {id} is malformed: {reason}"),
            SecretsError::Unavailable { id, reason } => format!("secret {id} could not be read: {reason}"),
        }
    }
}

impl Detail for PagerdutyError {
    fn detail(&self) -> String {
        self.to_string()
    }
}

impl Detail for SalesforceError {
    fn detail(&self) -> String {
        self.to_string()
    }
}

impl Failure {
    /// The one mapping from a classified error to what the CLI says: `what` names the thing
    /// that failed ("DynamoDB table pd-sfdc-sync", "the dead-letter queue").
    pub fn of<E: Classify + Detail>(what: impl Into<String>, err: &E) -> Self {
        let (what, detail) = (what.into(), err.detail());
        match err.class() {
            Class::Transient => Failure::Unavailable { what, detail },
            Class::Auth => Failure::Refused { what, detail },
            Class::Permanent => Failure::Failed(format!("{what}: {detail}")),
            Class::BadInput => Failure::Usage(format!("{what}: {detail}")),
        }
    }

    /// The process exit code (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::Settings(_) | Failure::NoRegion => exit::USAGE,
            Failure::Failed(_) => exit::FAILED,
            Failure::Unavailable { .. } => exit::UNAVAILABLE,
            Failure::Refused { .. } | Failure::NoCredentials(_) => exit::REFUSED,
        }
    }

    /// A stable name for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::Settings(_) => "settings",
            Failure::NoRegion => "no_region",
            Failure::NoCredentials(_) => "no_credentials",
            Failure::Failed(_) => "failed",
            Failure::Unavailable { .. } => "unavailable",
            Failure::Refused { .. } => "refused",
        }
    }

    /// `{"error": {"kind", "exit_code", "message"}}`, what `--json` prints instead of a result.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"kind": self.kind(), "exit_code": self.exit_code(), "message": self.to_string()}})
    }
}

/// An SDK error's chain of causes, for a request that got no answer (no connection, a timeout).
pub fn sdk_detail<E: std::error::Error + 'static, R: std::fmt::Debug>(
    err: &aws_sdk_cloudformation::error::SdkError<E, R>,
) -> String {
    adapters::sdk_error::causes(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_functions_advice_is_not_shown_and_the_class_picks_the_exit_code() {
        let down = StoreError::Unavailable { operation: "Query", message: "connection refused".into() };
        let failure = Failure::of("DynamoDB table t", &down);
        let text = failure.to_string();
        assert!(down.to_string().contains("the event will be retried"), "the functions' wording: {down}");
        assert!(!text.contains("event will be retried") && text.contains("Try again"), "{text}");
        assert_eq!(failure.exit_code(), exit::UNAVAILABLE);

        let denied = SecretsError::AccessDenied { id: "s".into() };
        let failure = Failure::of("Secrets Manager", &denied);
        assert!(!failure.to_string().contains("to the function"), "{failure}");
        assert_eq!(failure.exit_code(), exit::REFUSED);

        let queue = QueueError::Config { operation: "ReceiveMessage", message: "NonExistentQueue".into() };
        assert_eq!(Failure::of("the dead-letter queue", &queue).exit_code(), exit::REFUSED);
    }

    #[test]
    fn every_missing_setting_is_listed_with_its_flag() {
        let text = Failure::Settings(vec![
            ConfigError::Missing { name: "TABLE_NAME", hint: "the table" },
            ConfigError::Missing { name: "SALESFORCE_ORG_ID", hint: "the org" },
        ])
        .to_string();
        assert!(text.contains("2 setting(s)") && text.contains("--stack-name"), "{text}");
        assert!(text.contains("TABLE_NAME (or --table) is not set") && text.contains("SALESFORCE_ORG_ID is not set"));
    }
}
