//! Reading one environment variable: present (trimmed, empty counts as unset), required, an
//! http(s) URL, or a whole number of seconds. Each failure names the variable.

use std::collections::HashMap;
use std::time::Duration;

use url::Url;

use super::ConfigError;

/// The variables a configuration is read from.
pub(crate) struct Vars<'a>(pub &'a HashMap<String, String>);

impl Vars<'_> {
    pub fn get(&self, name: &'static str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The value, or empty when unset (optional variables).
    pub fn optional(&self, name: &'static str) -> String {
        self.get(name).unwrap_or_default().to_string()
    }

    pub fn required(&self, name: &'static str, hint: &'static str) -> Result<String, ConfigError> {
        self.get(name).map(str::to_string).ok_or(ConfigError::Missing { name, hint })
    }

    /// `value` of `name` as an http(s) URL.
    pub fn url(name: &'static str, value: &str, hint: &'static str) -> Result<Url, ConfigError> {
        Url::parse(value).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or(ConfigError::Invalid {
            name,
            value: value.to_string(),
            hint,
        })
    }

    /// A whole number (of seconds, unless the caller scales it), `default` when unset.
    pub fn seconds(&self, name: &'static str, default: u64, hint: &'static str) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => v.parse::<u64>().map(Duration::from_secs).map_err(|_| ConfigError::Invalid {
                name,
                value: v.to_string(),
                hint,
            }),
        }
    }
}
