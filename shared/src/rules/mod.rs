//! The rule engine: rules documents, validation, pure evaluation into an action plan with an
//! explanation. No I/O here (except [`cache`], which reads through a [`cache::RulesSource`]).
//!
//! # The rules document (YAML)
//!
//! ```yaml
//! rulesets:
//!   - name: SFDC > PD            # unique
//!     enabled: true              # default true; a disabled ruleset is skipped as a whole
//!     rules:
//!       - name: sev1-case-pages  # unique across the document: it keys idempotency
//!         direction: salesforce_to_pagerduty   # or pagerduty_to_salesforce
//!         object: Case           # S→P: the object watched; P→S: the object acted on
//!         match: all             # all (default) | any
//!         applies_to: new_only   # new_only | all_linked (default)
//!         conditions:
//!           - field: Priority            # Salesforce field, new value (also `new.Priority`)
//!             operator: equals
//!             value: Sev1
//!             case_sensitive: false      # default false
//!         actions:
//!           - create_incident: {service: PSVC123, urgency: high, title: {prefix: "[Sev1] ", fields: [CaseNumber, Subject]}}
//! ```
//!
//! ## Condition fields
//! - Salesforce: `Field` or `new.Field` (after the change), `old.Field` (before; S→P only),
//!   dotted relationship paths (`Account.Name`) into nested objects. API names match
//!   case-insensitively. In P→S rules they read the linked record of the rule's `object`: the
//!   conditions are checked per linked record, and the rule acts on the records that match.
//! - PagerDuty (P→S rules only): `pagerduty.event_type` (a category: `trigger`, `acknowledge`,
//!   `resolve`, `assign`, `escalate`, `delegate`, `unacknowledge`, `reopen`, `priority`, `annotate`,
//!   `status_update`, `responder` (added, replied), `service`, `incident_type`, `conference_bridge`,
//!   `custom_fields`, `role`, `workflow` (started, completed), `automation_action` (invocation
//!   created, updated, terminated), `task` (created, updated, completed); `custom` = any `incident.*`
//!   type but the first six, as before the others had categories; or a raw v3 type such as
//!   `incident.annotated`), `pagerduty.title`, `pagerduty.status`, `pagerduty.service` (id),
//!   `pagerduty.service_name`, `pagerduty.escalation_policy` (id), `pagerduty.escalation_policy_name`,
//!   `pagerduty.priority` (name), `pagerduty.urgency`, `pagerduty.note` (note text of `incident.annotated`),
//!   `pagerduty.status_update` (message of `incident.status_update_published`), `pagerduty.assignees`
//!   and `pagerduty.teams` (names, comma-separated: match them with `contains`),
//!   `pagerduty.incident_type` (name), `pagerduty.conference_url`, `pagerduty.conference_number`,
//!   `pagerduty.agent` (who acted, by name); what the other v3 events tell: `pagerduty.responder`,
//!   `pagerduty.responder_message`, `pagerduty.responder_state` (`pending`, `joined`, `declined`),
//!   `pagerduty.workflow`, `pagerduty.automation_action`, `pagerduty.action_state`, `pagerduty.task`,
//!   `pagerduty.task_status`, `pagerduty.role`, `pagerduty.role_assignee`, and for
//!   `incident.custom_field_values.updated` `pagerduty.custom_fields.NAME` (a custom field's value by
//!   its name in PagerDuty) and `pagerduty.custom_fields_changed` (the names that changed).
//!   A note's, a status update's or one of these events carries only its incident's id, title and
//!   link: the other incident facts are empty for it.
//!
//! ## Operators
//! `equals`, `not_equals`, `contains`, `not_contains`, `starts_with`, `ends_with`, `matches` (regex,
//! compiled at load), `in` / `not_in` (`value` is a list), `is_empty` / `is_not_empty` (no value;
//! absent, null, blank text and `[]` are empty), `greater_than` / `less_than` (numbers, or ISO
//! dates/datetimes incl. Salesforce's `2026-11-22T10:00:00.000+0000`; a bare date is midnight UTC),
//! `changed` / `changed_to` / `changed_from` (S→P Salesforce fields; on insert nothing has changed).
//! Text comparisons ignore case unless `case_sensitive: true`. An absent field matches only the
//! negative operators (`not_equals`, `not_contains`, `not_in`, `is_empty`).
//!
//! ## Actions
//! An action is its name (`- acknowledge`) or a one-key mapping (`- resolve: {resolution: ...}`).
//! The names, and the side each acts on, come from one table, [`ActionKind`]; a test checks these
//! lists and the README's against it.
//! - PagerDuty (S→P rules): `create_incident {service, escalation_policy?, urgency?, priority?
//!   (name), title: {prefix?, fields: [≤3]}, body?}` (only when no incident is linked; the title is
//!   prefix + fields joined by " - ", cut to 1024 characters), `acknowledge`, `resolve {resolution?}`,
//!   `set_priority {priority}`, `set_urgency {urgency}`, `run_incident_workflow {workflow}`,
//!   `run_automation_action {action}`, `reassign {users | escalation_policy}`,
//!   `add_responders {users?, escalation_policies?, message?}`, `add_note {content}`,
//!   `publish_status_update {message, subject?, html_message?}` (to the incident's stakeholders;
//!   `subject` and `html_message`, a custom HTML email, together or not at all; the message is
//!   marked `[Salesforce] ` like a note), `set_custom_fields {NAME: value-or-template}` (incident
//!   custom fields by their PagerDuty name, the names `pagerduty.custom_fields.NAME` reads; a
//!   literal, and a template that is one record field (`'{{record.Seats__c}}'`), keep their
//!   type, any other template renders text). All but `create_incident` act on every
//!   linked incident and so need `applies_to: all_linked`.
//! - Salesforce (P→S rules): `set_fields {FIELD: value-or-template}` (on each linked record of the
//!   rule's object), `create_record {object, fields, external_id_field?, link?}` (only when no
//!   record of that object is linked; carries an external id derived from incident and rule),
//!   `add_case_comment {body}` (linked Cases; `[PagerDuty] ` prefix, split at 4000 bytes).
//!
//! ## Templates
//! `{{incident.id|number|title|status|urgency|priority|html_url|service_id|service_name|escalation_policy_name}}`,
//! `{{incident.assignees|teams|incident_type|conference_url|conference_number}}`, `{{incident.custom_fields.NAME}}`,
//! `{{event.type}}`, `{{event.occurred_at}}`, `{{event.agent}}`,
//! `{{event.responder|responder_message|responder_state|workflow|automation_action|action_state|task|task_status|role|role_assignee|custom_fields_changed}}`,
//! `{{note.content}}`, `{{status_update.message}}` in P→S rules; `{{record.FIELD}}`
//! (dotted paths too), `{{record.id}}`, `{{record.object}}` in S→P rules. Unknown variables are
//! load errors.
//!
//! ## Loop prevention
//! A `CaseComment` whose body starts with `[PagerDuty]` and an incident note that starts with
//! `[Salesforce]` (or a status update that does) were written by the bridge: no rule runs on
//! them. Notes and status updates the bridge plans start with `[Salesforce] `, comments with
//! `[PagerDuty] `.

mod action;
pub mod cache;
mod document;
mod eval;
mod event;
mod plan;
mod template;
pub(crate) mod value;
mod yaml;

#[cfg(test)]
mod tests;

pub use action::{ActionKind, Effect, Side};
pub use cache::{CachedRules, RulesCache, RulesCacheError, RulesSource};
pub use document::{
    ActionSpec, AppliesTo, Condition, DEFAULT_EXTERNAL_ID_FIELD, Expected, Field, FieldValue, MAX_TITLE_CHARS,
    MAX_TITLE_FIELDS, MatchMode, Operator, PagerdutySpec, PdField, Rule, RuleSet, Rules, SalesforceSpec, Scalar,
    TitleTemplate, Urgency, ValidationError, ValidationErrors,
};
pub use eval::{
    ActionNote, ConditionCheck, Evaluation, Explanation, INCIDENT_KEY_PREFIX, RuleExplanation, SkipReason,
    event_category, external_id, incident_key,
};
pub use event::{ActivityFacts, Event, IncidentEvent, IncidentFacts, LinkedRecord, RecordEvent};
pub use plan::{
    Action, BySide, PagerdutyAction, Plan, PlannedAction, SalesforceAction, SideStep, by_side, event_mark, field_mark,
    is_event_mark, note_event_mark, note_mark, truncate_chars,
};
pub use template::Template;
