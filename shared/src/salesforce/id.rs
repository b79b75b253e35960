//! Salesforce ids: 15 case-sensitive characters, or 18 — the same 15 followed by a 3-character
//! checksum of their letter case (so the id survives case-insensitive tools). One id has both
//! forms; two ids are the same only when their 15 characters are equal, never by a prefix.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// A Salesforce record id, kept as it was given (stored, logged and sent byte for byte, in JSON
/// a plain string). Two ids are equal, and hash alike, when they name the same record: both
/// well-shaped and equal on their 15 characters, whichever form each is in; an id of another
/// shape equals only itself. This is the one comparison of record ids ([`same_id`] uses it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(String);

impl RecordId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a 15- or 18-character alphanumeric id ([`is_record_id`]).
    pub fn is_well_shaped(&self) -> bool {
        is_record_id(&self.0)
    }

    /// What equality and hashing compare.
    fn identity(&self) -> &str {
        identity(&self.0)
    }
}

/// A well-shaped id's 15 characters, any other text whole.
fn identity(id: &str) -> &str {
    if is_record_id(id) { &id[..15] } else { id }
}

impl PartialEq for RecordId {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

/// The same comparison with an id still in text (the rules' view of a record).
impl PartialEq<str> for RecordId {
    fn eq(&self, other: &str) -> bool {
        self.identity() == identity(other)
    }
}

impl Eq for RecordId {}

impl Hash for RecordId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for RecordId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for RecordId {
    fn from(id: &str) -> Self {
        Self(id.to_string())
    }
}

/// The alphabet of the 18-character suffix: one character per 5 characters of the id, naming
/// which of them are upper case.
const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// True for a 15- or 18-character alphanumeric Salesforce id (the shape only).
pub fn is_record_id(id: &str) -> bool {
    (id.len() == 15 || id.len() == 18) && id.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// The 3 suffix characters Salesforce appends to `id15` to make its 18-character form.
pub fn checksum(id15: &str) -> Option<[u8; 3]> {
    let bytes = id15.as_bytes();
    if bytes.len() != 15 || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let mut out = [0u8; 3];
    for (chunk, slot) in bytes.chunks(5).zip(out.iter_mut()) {
        let bits =
            chunk.iter().enumerate().filter(|(_, c)| c.is_ascii_uppercase()).fold(0usize, |acc, (i, _)| acc | 1 << i);
        *slot = SUFFIX_ALPHABET[bits];
    }
    Some(out)
}

/// The 18-character form of a 15- or 18-character id, `None` when `id` is neither or its suffix
/// is not the checksum of its first 15 characters.
pub fn to_18(id: &str) -> Option<String> {
    let sum = checksum(id.get(..15)?)?;
    match id.len() {
        15 => Some(format!("{id}{}", std::str::from_utf8(&sum).expect("ASCII"))),
        18 if id.as_bytes()[15..].eq_ignore_ascii_case(&sum) => {
            Some(format!("{}{}", &id[..15], std::str::from_utf8(&sum).expect("ASCII")))
        }
        _ => None,
    }
}

/// The same record, either form: both ids well-shaped and their 15 characters equal (case
/// matters). Ids inside a signed post come from Salesforce itself, so their suffix is not
/// re-checked here; [`OrgId::is`] checks an org's.
pub fn same_id(a: &str, b: &str) -> bool {
    let (a, b) = (RecordId::from(a), RecordId::from(b));
    a.is_well_shaped() && b.is_well_shaped() && a == b
}

/// The org the bridge serves (`SALESFORCE_ORG_ID`): a valid org id, checked once when it is
/// configured, kept in its 18-character form. What a sender presents stays text until
/// [`OrgId::is`] compares it: a configured org and a claimed one are not the same kind of string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgId(String);

impl OrgId {
    /// `None` unless `id` is an org id (`00D` prefix, 15 characters or 18 with their checksum).
    pub fn parse(id: &str) -> Option<Self> {
        to_18(id.trim()).filter(|id| id.starts_with("00D")).map(Self)
    }

    /// The 18-character form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `presented` names this org: a valid org id (an 18-character form's suffix checked), equal
    /// on its 15 characters. Look-alikes (the right 15 characters followed by anything, a wrong
    /// suffix, another length) are not.
    pub fn is(&self, presented: &str) -> bool {
        to_18(presented).is_some_and(|id| id == self.0)
    }
}

impl std::fmt::Display for OrgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real ids in both forms (Salesforce documentation and the captured samples).
    const PAIRS: &[(&str, &str)] = &[
        ("00D000000000062", "00D000000000062EAA"),
        ("001A0000006Vm9r", "001A0000006Vm9rIAC"),
        ("003D000000QnHOz", "003D000000QnHOzIAN"),
        ("00DD0000000FJXT", "00DD0000000FJXTMA4"),
    ];

    #[test]
    fn the_18_character_form_is_the_15_and_their_checksum() {
        for (id15, id18) in PAIRS {
            assert_eq!(to_18(id15).as_deref(), Some(*id18), "{id15}");
            assert_eq!(to_18(id18).as_deref(), Some(*id18), "{id18}");
            assert!(to_18(&id18.to_ascii_lowercase()[..15]).is_some());
        }
        assert_eq!(to_18("00D000000000062EAB"), None, "a wrong suffix");
        assert_eq!(to_18("00D00000000006"), None, "14 characters");
        assert_eq!(to_18("00D000000000062\u{e9}AA"), None, "non-ASCII");
    }

    #[test]
    fn orgs_are_equal_in_either_form_and_never_by_prefix() {
        let org = |id: &str| OrgId::parse(id).unwrap();
        assert!(org("00D000000000062EAA").is("00D000000000062"));
        assert!(org("00D000000000062").is("00D000000000062EAA"));
        assert!(org("00D000000000062").is("00D000000000062eaa"), "the suffix is case-insensitive");
        assert!(!org("00D000000000062").is("00D000000000062NNN"), "our 15 characters and a made-up suffix");
        assert!(!org("00D000000000062").is("00D000000000062EAA-anything"), "our 18 characters and more");
        assert!(!org("00D000000000062").is("00d000000000062"), "the 15 characters are case-sensitive");
        assert_eq!(OrgId::parse(" 00D000000000062 ").unwrap().as_str(), "00D000000000062EAA");
        assert_eq!(OrgId::parse("001A0000006Vm9r"), None, "an account id is no org id");
        assert_eq!(OrgId::parse("00D00000000006"), None, "14 characters");
        assert!(!org("00D000000000062").is(""));
    }

    #[test]
    fn a_record_id_is_one_record_in_either_form_and_keeps_the_form_it_was_given() {
        use std::collections::HashSet;
        for (id15, id18) in PAIRS {
            let (short, long) = (RecordId::from(*id15), RecordId::from(*id18));
            assert_eq!(short, long, "{id15} and {id18} are one record");
            assert_eq!(HashSet::from([short.clone(), long.clone()]).len(), 1, "and hash alike");
            assert_eq!(serde_json::to_string(&long).unwrap(), format!("\"{id18}\""), "kept as given");
            assert_eq!(serde_json::from_str::<RecordId>(&format!("\"{id15}\"")).unwrap().as_str(), *id15);
        }
        assert_ne!(RecordId::from("0055g0000bridgeAAA"), RecordId::from("0055g0000BRIDGEAQ5"), "case-sensitive");
        assert_ne!(RecordId::from("0055g0000BRIDGEX"), RecordId::from("0055g0000BRIDGE"), "never by a prefix");
        assert_eq!(RecordId::from("not-an-id"), RecordId::from("not-an-id"), "another shape equals itself");
        assert_ne!(RecordId::from("not-an-id"), RecordId::from("not-an-iD"));
    }

    #[test]
    fn records_compare_on_their_15_characters() {
        assert!(same_id("0055g0000BRIDGEAQ5", "0055g0000BRIDGE"));
        assert!(same_id("0055g0000BRIDGE", "0055g0000BRIDGEAQ5"));
        assert!(!same_id("0055g0000bridgeAAA", "0055g0000BRIDGEAQ5"), "15-character ids are case-sensitive");
        assert!(!same_id("0055g0000BRIDGEAQ5X", "0055g0000BRIDGE"), "19 characters");
        assert!(!same_id("0055g0000BRIDGEX", "0055g0000BRIDGE"), "16 characters: not our id and more");
        assert!(!same_id("005", "005"));
    }
}
