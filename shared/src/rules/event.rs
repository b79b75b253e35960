//! The normalised input of the engine: what changed, and what is already linked.
//!
//! The handlers build these from the Apex post and the v3 webhook after they looked up links;
//! `syncctl rules test` reads them from JSON files (`events/rules/*.event.json`).

use crate::rules::document::PdField;
use crate::salesforce::ObjectName;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One thing that happened, on either side.
// One event is evaluated at a time; boxing the incident would only add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A Salesforce record was inserted or updated.
    Record(RecordEvent),
    /// A PagerDuty incident event (Webhooks v3).
    Incident(IncidentEvent),
}

/// A Salesforce record insert or update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordEvent {
    /// sObject API name: `Case`, `CaseComment`, `Escalation__c`.
    pub object: ObjectName,
    pub id: String,
    /// The record after the change, as Apex serialises it (relationships as nested objects).
    pub new: Map<String, Value>,
    /// The record before the change; `None` on insert.
    #[serde(default)]
    pub old: Option<Map<String, Value>>,
    /// True on insert.
    #[serde(default)]
    pub is_new: bool,
    /// Incidents linked to this record (for a CaseComment: those linked to its parent Case).
    #[serde(default)]
    pub linked_incidents: Vec<String>,
}

/// A PagerDuty incident event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    /// The raw v3 type, e.g. `incident.acknowledged`.
    pub event_type: String,
    /// When PagerDuty says it happened (RFC 3339 text, kept as sent).
    #[serde(default)]
    pub occurred_at: String,
    pub incident: IncidentFacts,
    /// True for `incident.triggered`: the incident was just created.
    #[serde(default)]
    pub is_new: bool,
    /// The note text of an `incident.annotated` event.
    #[serde(default)]
    pub note: Option<String>,
    /// The message of an `incident.status_update_published` event.
    #[serde(default)]
    pub status_update: Option<String>,
    /// Who acted, by name (a user, or a service for automatic changes), when the event says.
    #[serde(default)]
    pub agent: Option<String>,
    /// What the other v3 incident events tell (a responder, a workflow, a task ...).
    #[serde(default)]
    pub activity: ActivityFacts,
    /// Salesforce records linked to the incident, with the fields the handler fetched.
    #[serde(default)]
    pub linked_records: Vec<LinkedRecord>,
}

/// What the engine may look at on a PagerDuty incident.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IncidentFacts {
    pub id: String,
    pub number: u64,
    pub title: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub status: String,
    /// `high` or `low`.
    pub urgency: String,
    /// Priority name, e.g. `P1`.
    pub priority: Option<String>,
    pub service_id: String,
    pub service_name: String,
    pub escalation_policy_id: String,
    pub escalation_policy_name: String,
    pub html_url: String,
    pub incident_key: Option<String>,
    /// The assignees' names, comma-separated, in PagerDuty's order.
    pub assignees: String,
    /// The teams' names, comma-separated.
    pub teams: String,
    /// The incident type's name (`major`, ...), empty for the base type.
    pub incident_type: String,
    /// The conference bridge's URL, when the incident has one.
    pub conference_url: String,
    /// The conference bridge's numbers, comma-separated.
    pub conference_number: String,
    /// Incident custom field values by field name, as `incident.custom_field_values.updated`
    /// carries them (other events do not).
    pub custom_fields: Map<String, Value>,
}

/// What an incident event other than a state change, a note or a status update tells; empty
/// text for the facts the event does not carry. Names of several (roles, assignees) are
/// comma-separated, in PagerDuty's order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivityFacts {
    /// `incident.responder.*`: who was asked to help, the request's message, its state
    /// (`pending`, `joined`, `declined`).
    pub responder: String,
    pub responder_message: String,
    pub responder_state: String,
    /// `incident.workflow.*`: the incident workflow's name.
    pub workflow: String,
    /// `incident.action_invocation.*`: the automation action's name and the invocation's state.
    pub automation_action: String,
    pub action_state: String,
    /// `incident.task.*`: the task's name and status (`todo`, `done`).
    pub task: String,
    pub task_status: String,
    /// `incident.role.assigned`: the roles, and who holds each now (empty when unassigned).
    pub role: String,
    pub role_assignee: String,
    /// `incident.custom_field_values.updated`: the names of the fields that changed.
    pub custom_fields_changed: String,
}

impl ActivityFacts {
    /// The fact `field` names (`pagerduty.responder` in a condition, `{{event.responder}}` in a
    /// template); `None` for a field that is not one of these.
    pub(crate) fn fact(&self, field: PdField) -> Option<&str> {
        Some(match field {
            PdField::Responder => &self.responder,
            PdField::ResponderMessage => &self.responder_message,
            PdField::ResponderState => &self.responder_state,
            PdField::Workflow => &self.workflow,
            PdField::AutomationAction => &self.automation_action,
            PdField::ActionState => &self.action_state,
            PdField::Task => &self.task,
            PdField::TaskStatus => &self.task_status,
            PdField::Role => &self.role,
            PdField::RoleAssignee => &self.role_assignee,
            PdField::CustomFieldsChanged => &self.custom_fields_changed,
            _ => return None,
        })
    }
}

/// A Salesforce record linked to the incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedRecord {
    pub object: ObjectName,
    pub id: String,
    #[serde(default)]
    pub fields: Map<String, Value>,
}
