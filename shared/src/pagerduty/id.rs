//! PagerDuty incident ids: opaque text PagerDuty makes up (`Q0ZNH7TMCKFEXX`, `PT4KHLK`), compared
//! as written. A type of their own so that an incident id is never taken for a Salesforce record
//! id ([`crate::salesforce::RecordId`]) where both travel together: links, plans, executors.

use serde::{Deserialize, Serialize};

/// A PagerDuty incident id, in JSON a plain string (stored items, envelopes and plans read and
/// write as before).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(String);

impl IncidentId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IncidentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for IncidentId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for IncidentId {
    fn from(id: &str) -> Self {
        Self(id.to_string())
    }
}

impl PartialEq<str> for IncidentId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for IncidentId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_id_reads_and_writes_as_the_plain_string_it_was() {
        let id: IncidentId = serde_json::from_str("\"Q0ZNH7TMCKFEXX\"").unwrap();
        assert_eq!(id.as_str(), "Q0ZNH7TMCKFEXX");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"Q0ZNH7TMCKFEXX\"");
        assert_ne!(IncidentId::from("q0znh7tmckfexx"), id, "compared as written");
    }
}
