//! sObject API names (`Case`, `CaseComment`, `Escalation__c`). Salesforce resolves a name whatever
//! its letter case (`case` is `Case` in a REST path, in SOQL and in Apex), and rule authors write
//! either, so two names are the same object when they match ignoring ASCII case. This is the one
//! comparison of object names.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// The object whose changes a Case Comment rule watches and the bridge writes.
pub const CASE_COMMENT: &str = "CaseComment";

/// Whether two object names in text name the same object (for names not yet an [`ObjectName`]).
pub fn same_object(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// An sObject API name, kept as it was given (sent, stored and logged byte for byte; in JSON a
/// plain string). Equal, and hashed alike, when the names match ignoring ASCII case.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectName(String);

impl ObjectName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `CaseComment`, in any letter case: the object whose records carry the bridge's own notes.
    pub fn is_case_comment(&self) -> bool {
        same_object(&self.0, CASE_COMMENT)
    }
}

impl PartialEq for ObjectName {
    fn eq(&self, other: &Self) -> bool {
        same_object(&self.0, &other.0)
    }
}

impl Eq for ObjectName {}

/// The same comparison with a name still in text.
impl PartialEq<str> for ObjectName {
    fn eq(&self, other: &str) -> bool {
        same_object(&self.0, other)
    }
}

impl PartialEq<&str> for ObjectName {
    fn eq(&self, other: &&str) -> bool {
        same_object(&self.0, other)
    }
}

impl Hash for ObjectName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ObjectName {
    fn from(name: &str) -> Self {
        Self(name.to_string())
    }
}

impl From<String> for ObjectName {
    fn from(name: String) -> Self {
        Self(name)
    }
}

impl AsRef<str> for ObjectName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn an_object_is_one_object_in_any_letter_case_and_keeps_the_case_it_was_given() {
        let given = ObjectName::from("escalation__C");
        assert_eq!(given, ObjectName::from("Escalation__c"));
        assert!(given == "ESCALATION__C");
        assert_eq!(given.as_str(), "escalation__C");
        assert_eq!(serde_json::to_string(&given).unwrap(), "\"escalation__C\"");
        let set: HashSet<ObjectName> =
            ["Case", "case", "CASE", "CaseComment"].into_iter().map(ObjectName::from).collect();
        assert_eq!(set.len(), 2);
        assert_ne!(ObjectName::from("Case"), ObjectName::from("CaseComment"), "never by a prefix");
        assert!(ObjectName::from("casecomment").is_case_comment());
        assert!(!ObjectName::from("Case").is_case_comment());
    }
}
