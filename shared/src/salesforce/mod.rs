//! Salesforce: JWT bearer auth, the REST/Composite client, and the inbound formats (Apex
//! trigger posts and Outbound Message SOAP).
//!
//! - [`auth`]: the JWT bearer flow and the token cache ([`Authenticator`]).
//! - [`client`]: [`SalesforceClient`] (sObjects, upsert, Composite, Case Comments).
//! - [`case_comment`]: the one Case Comment splitter (4,000 bytes, marked and numbered parts).
//! - [`composite`]: composite requests, their builder and per-subrequest results.
//! - [`id`]: 15/18-character ids, their checksum, and how two ids (or orgs) compare.
//! - [`object_name`]: sObject API names and how two of them compare (ignoring letter case).
//! - [`error`]: [`SalesforceError`] and its transient / permanent / auth / bad-input classification.
//! - [`time`]: the one date-time parser, for every form Salesforce writes.
//! - [`trigger_post`]: the post our Apex trigger sends.
//! - [`change_event`]: Change Data Capture events through Event Relay (EventBridge).
//! - [`signature`]: how that post (and an Outbound Message's URL) is authenticated.
//! - [`outbound_message`]: Outbound Message SOAP parsing and the ack / fault answers.

pub mod auth;
pub mod case_comment;
pub mod change_event;
pub mod client;
pub mod composite;
pub mod error;
pub mod id;
pub mod object_name;
pub mod outbound_message;
pub mod signature;
pub mod time;
pub mod trigger_post;

#[cfg(test)]
pub(crate) mod canned;

pub use auth::{AccessToken, Authenticator, JwtCredentials, StaticToken, TokenSource};
pub use client::{ApiUsage, CALL_OPTIONS, SalesforceClient, UpsertResult};
pub use composite::{
    CompositeBuilder, CompositeRequest, CompositeResponse, Subrequest, SubrequestResult, Write, reference,
};
pub use error::{ApiError, SalesforceError, SubrequestFailure};
pub use outbound_message::{Notification, OutboundMessage, OutboundMessageError};
pub use signature::{InboundAuthError, verify_bearer, verify_trigger_signature};
pub use trigger_post::{Operation, RecordChange, TriggerPost, TriggerPostError, TriggerUser};

/// A record's fields as JSON (as Salesforce REST and Apex `JSON.serialize` write them).
pub type Record = serde_json::Map<String, serde_json::Value>;

/// sObject and field API names: letters, digits and underscores (`Case`, `PD_Incident__c`,
/// `ns__Thing__c`). Anything else could change the URL path, so it is refused.
pub(crate) fn check_name(name: &str) -> Result<(), SalesforceError> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 80;
    if ok {
        Ok(())
    } else {
        Err(SalesforceError::BadInput(format!(
            "`{name}` is not a Salesforce API name (letters, digits and underscores)"
        )))
    }
}

pub use id::{RecordId, is_record_id};
pub use object_name::ObjectName;

pub(crate) fn check_id(id: &str) -> Result<(), SalesforceError> {
    if is_record_id(id) {
        Ok(())
    } else {
        Err(SalesforceError::BadInput(format!("`{id}` is not a 15 or 18-character Salesforce record id")))
    }
}

/// Percent-encodes one URL path segment (external id values may hold `/`, spaces, `#`...).
pub(crate) fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_checked() {
        assert!(check_name("PD_Incident__c").is_ok());
        assert!(check_name("Case/x").is_err());
        assert!(check_name("").is_err());
        assert!(is_record_id("5005g00000AbCdE"));
        assert!(is_record_id("5005g00000AbCdEAAS"));
        assert!(!is_record_id("5005g00000AbCdEAA"));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a b/c#é"), "a%20b%2Fc%23%C3%A9");
        assert_eq!(encode_segment("Q1ABC-2_x.y~"), "Q1ABC-2_x.y~");
    }
}
