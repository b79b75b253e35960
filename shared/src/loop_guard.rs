//! Loop prevention, in one place: what the bridge marks its own writes with, and how a change is
//! recognised as the bridge's own, so that it is never sent back to where it came from.
//!
//! Two lines of defence:
//! - Who acted: a webhook whose agent is the PagerDuty user the bridge acts as
//!   ([`is_bridge_agent`]); a Salesforce change made by the integration user, by username or by
//!   `LastModifiedById` ([`integration_user_change`]). [`crate::handler::echo`] applies them
//!   (looking the bridge's PagerDuty user up when it is not configured).
//! - Markers: every Case Comment the bridge writes starts with [`PAGERDUTY_MARKER`], every
//!   incident note and status update with [`SALESFORCE_MARKER`]; texts starting with them are not forwarded again
//!   (the handlers, and the rules' [`crate::rules::SkipReason::LoopPrevention`]).

use crate::pagerduty::Reference;
use crate::salesforce::ObjectName;

/// Starts every Case Comment the bridge writes (from PagerDuty into Salesforce).
pub const PAGERDUTY_MARKER: &str = "[PagerDuty]";
/// Starts every incident note the bridge writes (from Salesforce into PagerDuty).
pub const SALESFORCE_MARKER: &str = "[Salesforce]";
/// [`PAGERDUTY_MARKER`] and the space after it, as the bridge writes it.
pub const PAGERDUTY_PREFIX: &str = "[PagerDuty] ";
/// [`SALESFORCE_MARKER`] and the space after it, as the bridge writes it.
pub const SALESFORCE_PREFIX: &str = "[Salesforce] ";

/// True when a Case Comment's body is one the bridge wrote: it starts with [`PAGERDUTY_MARKER`]
/// (only at the start: a customer may quote it).
pub fn is_own_case_comment(body: &str) -> bool {
    body.starts_with(PAGERDUTY_MARKER)
}

/// True when an incident note is one the bridge wrote: it starts with [`SALESFORCE_MARKER`].
pub fn is_own_note(content: &str) -> bool {
    content.starts_with(SALESFORCE_MARKER)
}

/// True when a Salesforce record change is a Case Comment the bridge wrote.
pub fn is_own_comment_change(object: &ObjectName, fields: &serde_json::Map<String, serde_json::Value>) -> bool {
    object.is_case_comment() && fields.get("CommentBody").and_then(|v| v.as_str()).is_some_and(is_own_case_comment)
}

/// An incident note as the bridge writes it: starting with [`SALESFORCE_MARKER`], once.
pub fn marked_note(text: String) -> String {
    if is_own_note(&text) {
        return text;
    }
    let mut with_marker = String::with_capacity(SALESFORCE_PREFIX.len() + text.len());
    with_marker.push_str(SALESFORCE_PREFIX);
    with_marker.push_str(&text);
    with_marker
}

/// A user reference (`user_reference`; some payloads leave the type out). Services, integrations
/// and bot users are never the bridge.
pub fn is_user(agent: &Reference) -> bool {
    matches!(agent.kind.as_deref(), None | Some("user_reference") | Some("user"))
}

/// True when a webhook's agent is the PagerDuty user the bridge acts as (`bridge_user_id`).
pub fn is_bridge_agent(agent: &Reference, bridge_user_id: &str) -> bool {
    is_user(agent) && agent.id == bridge_user_id
}

/// How a Salesforce change was recognised as the integration user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationUser {
    /// The post's username (any case, as the Apex compares it).
    ByName,
    /// The record's `LastModifiedById` (15 or 18 characters, see [`crate::salesforce::id::same_id`]).
    ById,
}

/// Whether the integration user made a change: by the username the change names (`changed_by`)
/// or by the record's `LastModifiedById`. Empty configured values recognise nothing.
pub fn integration_user_change(
    changed_by: Option<&str>,
    last_modified_by: Option<&str>,
    integration_user: &str,
    integration_user_id: &str,
) -> Option<IntegrationUser> {
    if changed_by.is_some_and(|u| !u.is_empty() && u.eq_ignore_ascii_case(integration_user)) {
        return Some(IntegrationUser::ByName);
    }
    let by_id = !integration_user_id.is_empty()
        && last_modified_by.is_some_and(|id| crate::salesforce::id::same_id(id, integration_user_id));
    by_id.then_some(IntegrationUser::ById)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::object_name::CASE_COMMENT;

    fn agent(kind: Option<&str>) -> Reference {
        Reference {
            id: "PUSR001".into(),
            kind: kind.map(str::to_string),
            summary: None,
            html_url: None,
            self_url: None,
        }
    }

    #[test]
    fn only_user_agents_can_be_the_bridge() {
        assert!(is_user(&agent(Some("user_reference"))));
        assert!(is_user(&agent(None)));
        assert!(!is_user(&agent(Some("service_reference"))));
        assert!(!is_user(&agent(Some("bot_user_reference"))));
        assert!(is_bridge_agent(&agent(Some("user_reference")), "PUSR001"));
        assert!(!is_bridge_agent(&agent(Some("user_reference")), "PUSR002"));
        assert!(!is_bridge_agent(&agent(Some("service_reference")), "PUSR001"));
    }

    #[test]
    fn own_comments_and_notes_are_recognised_by_their_leading_marker() {
        assert!(is_own_case_comment("[PagerDuty] note"));
        assert!(!is_own_case_comment("customer says [PagerDuty]"));
        assert!(is_own_note("[Salesforce] comment"));
        assert!(!is_own_note("see [Salesforce]"));
        assert_eq!(marked_note("x".into()), "[Salesforce] x");
        assert_eq!(marked_note("[Salesforce] x".into()), "[Salesforce] x");
        let fields = |body: &str| serde_json::json!({"CommentBody": body}).as_object().unwrap().clone();
        assert!(is_own_comment_change(&ObjectName::from(CASE_COMMENT), &fields("[PagerDuty] x")));
        assert!(!is_own_comment_change(&ObjectName::from(CASE_COMMENT), &fields("x")));
        assert!(!is_own_comment_change(&ObjectName::from("Case"), &fields("[PagerDuty] x")));
        assert!(is_own_comment_change(&ObjectName::from("casecomment"), &fields("[PagerDuty] x")), "any letter case");
    }

    #[test]
    fn the_integration_user_is_recognised_by_name_or_by_either_id_length() {
        let check = |by: Option<&str>, id: Option<&str>| {
            integration_user_change(by, id, "bridge@example.com", "0055g00000AbCdEAAS")
        };
        assert_eq!(check(Some("BRIDGE@example.com"), None), Some(IntegrationUser::ByName));
        assert_eq!(check(None, Some("0055g00000AbCdE")), Some(IntegrationUser::ById));
        assert_eq!(check(Some("someone@example.com"), Some("0055g00000XyZwVAAS")), None);
        assert_eq!(integration_user_change(Some(""), Some("0055g00000AbCdE"), "", ""), None);
    }
}
