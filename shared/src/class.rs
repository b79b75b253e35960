//! One classification of failures for both integrations: what a caller should do about an error,
//! read off its type, never off its text. The retry path turns it into a [`FailureKind`]
//! (retry, dead-letter, alarm) in one place.
//!
//! [`FailureKind`]: crate::handler::settle::FailureKind

use serde::{Deserialize, Serialize};

/// What the caller should do with a failed call to PagerDuty or Salesforce. Serialised (in queued
/// Composite failures) by the same names as [`Class::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Try again later (retry queue): 5xx, 429, timeouts, connection failures, lock contention.
    Transient,
    /// Will fail the same way every time (DLQ): 404, conflicts, validation, unknown fields.
    Permanent,
    /// Credentials, permissions or the app's setup are wrong: a person must fix the configuration.
    Auth,
    /// The request's content was refused, or refused before sending: fix the rule or the data.
    BadInput,
}

impl Class {
    /// The name used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Transient => "transient",
            Class::Permanent => "permanent",
            Class::Auth => "auth",
            Class::BadInput => "bad_input",
        }
    }
}

/// An error that knows its [`Class`].
pub trait Classify {
    fn class(&self) -> Class;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::settle::FailureKind;

    const ALL: [Class; 4] = [Class::Transient, Class::Permanent, Class::Auth, Class::BadInput];

    #[test]
    fn a_class_is_serialised_by_its_name_so_queued_failures_read_back() {
        for class in ALL {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(serde_json::from_str::<Class>(&json).unwrap(), class);
        }
    }

    #[test]
    fn refused_content_is_dead_lettered_and_auth_is_retried_apart() {
        assert_eq!(FailureKind::from(Class::Transient), FailureKind::Transient);
        assert_eq!(FailureKind::from(Class::Auth), FailureKind::Auth);
        assert_eq!(FailureKind::from(Class::Permanent), FailureKind::Permanent);
        assert_eq!(FailureKind::from(Class::BadInput), FailureKind::Permanent);
    }
}
