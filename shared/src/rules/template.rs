//! `{{variable}}` templates, parsed and checked at load so that evaluation only fills them in.

use crate::model::Direction;

use super::document::{PD_FIELDS, PdField};
use super::event::{ActivityFacts, IncidentEvent, RecordEvent};
use super::value::{lookup, push_value_text};

/// A parsed template: literal text and variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(Var),
}

/// The variables a template may use. `incident.*`, `event.*`, `note.*` and `status_update.*` exist in
/// `pagerduty_to_salesforce` rules; `record.*` (any field, dotted paths allowed) in
/// `salesforce_to_pagerduty` rules.
#[derive(Debug, Clone, PartialEq)]
enum Var {
    IncidentId,
    IncidentNumber,
    IncidentTitle,
    IncidentStatus,
    IncidentUrgency,
    IncidentPriority,
    IncidentHtmlUrl,
    IncidentServiceId,
    IncidentServiceName,
    IncidentEscalationPolicyName,
    IncidentAssignees,
    IncidentTeams,
    IncidentType,
    IncidentConferenceUrl,
    IncidentConferenceNumber,
    IncidentCustomField(String),
    EventType,
    EventAgent,
    EventOccurredAt,
    NoteContent,
    StatusUpdateMessage,
    /// A fact of [`crate::rules::event::ActivityFacts`], by its condition field's name after
    /// `event.` (`{{event.responder}}` as `pagerduty.responder`).
    Activity(PdField),
    RecordId,
    RecordObject,
    RecordField(Vec<String>),
}

/// The names `{{...}}` accepts, for error messages.
pub(crate) const INCIDENT_VARIABLES: &str = "incident.id, incident.number, incident.title, incident.status, incident.urgency, incident.priority, incident.html_url, incident.service_id, incident.service_name, incident.escalation_policy_name, incident.assignees, incident.teams, incident.incident_type, incident.conference_url, incident.conference_number, incident.custom_fields.NAME, event.type, event.occurred_at, event.agent, event.responder, event.responder_message, event.responder_state, event.workflow, event.automation_action, event.action_state, event.task, event.task_status, event.role, event.role_assignee, event.custom_fields_changed, note.content, status_update.message";

/// What a template is filled from.
pub(crate) enum Context<'a> {
    Record(&'a RecordEvent),
    Incident(&'a IncidentEvent),
}

impl Template {
    /// Parses `text` for a rule of `direction`; the error says what is wrong.
    pub(crate) fn parse(text: &str, direction: Direction) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| format!("template has an unclosed `{{{{` in {text:?}"))?;
            let name = after[..end].trim();
            parts.push(Part::Var(parse_var(name, direction)?));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { source: text.to_string(), parts })
    }

    /// The text as written in the rules file.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Fills the template. A variable with no value renders as empty text.
    pub(crate) fn render(&self, ctx: &Context<'_>) -> String {
        let mut out = String::with_capacity(self.source.len());
        self.render_into(ctx, &mut out);
        out
    }

    /// Appends the filled template to `out`: values are copied once, straight from the event.
    /// The value itself when the template is one record field and nothing else
    /// (`"{{record.Seats__c}}"`): a number or a boolean keeps its type where the target is typed
    /// (an incident custom field), instead of becoming text. `None` otherwise, or when the field
    /// is absent.
    pub(crate) fn whole_value<'a>(&self, ctx: &Context<'a>) -> Option<&'a serde_json::Value> {
        match (self.parts.as_slice(), ctx) {
            ([Part::Var(Var::RecordField(path))], Context::Record(r)) => lookup(&r.new, path),
            _ => None,
        }
    }

    pub(crate) fn render_into(&self, ctx: &Context<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Lit(text) => out.push_str(text),
                Part::Var(var) => write_var(var, ctx, out),
            }
        }
    }
}

fn parse_var(name: &str, direction: Direction) -> Result<Var, String> {
    let pd = match name {
        "incident.id" => Some(Var::IncidentId),
        "incident.number" => Some(Var::IncidentNumber),
        "incident.title" => Some(Var::IncidentTitle),
        "incident.status" => Some(Var::IncidentStatus),
        "incident.urgency" => Some(Var::IncidentUrgency),
        "incident.priority" => Some(Var::IncidentPriority),
        "incident.html_url" => Some(Var::IncidentHtmlUrl),
        "incident.service_id" => Some(Var::IncidentServiceId),
        "incident.service_name" => Some(Var::IncidentServiceName),
        "incident.escalation_policy_name" => Some(Var::IncidentEscalationPolicyName),
        "incident.assignees" => Some(Var::IncidentAssignees),
        "incident.teams" => Some(Var::IncidentTeams),
        "incident.incident_type" => Some(Var::IncidentType),
        "incident.conference_url" => Some(Var::IncidentConferenceUrl),
        "event.type" => Some(Var::EventType),
        "event.agent" => Some(Var::EventAgent),
        "event.occurred_at" => Some(Var::EventOccurredAt),
        "note.content" => Some(Var::NoteContent),
        "status_update.message" => Some(Var::StatusUpdateMessage),
        "incident.conference_number" => Some(Var::IncidentConferenceNumber),
        _ => match name.strip_prefix("incident.custom_fields.") {
            Some(field) if !field.is_empty() => Some(Var::IncidentCustomField(field.to_string())),
            _ => name
                .strip_prefix("event.")
                .and_then(|n| PD_FIELDS.iter().find(|(field, _)| *field == n))
                .filter(|(_, f)| ActivityFacts::default().fact(*f).is_some())
                .map(|(_, f)| Var::Activity(*f)),
        },
    };
    match (direction, pd) {
        (Direction::PagerdutyToSalesforce, Some(var)) => return Ok(var),
        (Direction::SalesforceToPagerduty, Some(_)) => {
            return Err(format!(
                "template variable `{{{{{name}}}}}` exists only in pagerduty_to_salesforce rules; use `{{{{record.FIELD}}}}` here"
            ));
        }
        _ => {}
    }
    if let Some(path) = name.strip_prefix("record.") {
        if direction == Direction::PagerdutyToSalesforce {
            return Err(format!(
                "template variable `{{{{{name}}}}}` exists only in salesforce_to_pagerduty rules; use one of {INCIDENT_VARIABLES}"
            ));
        }
        return Ok(match path {
            "id" => Var::RecordId,
            "object" => Var::RecordObject,
            "" => return Err("template variable `{{record.}}` names no field".into()),
            _ => Var::RecordField(path.split('.').map(str::to_string).collect()),
        });
    }
    Err(match direction {
        Direction::PagerdutyToSalesforce => {
            format!("unknown template variable `{{{{{name}}}}}`; use one of {INCIDENT_VARIABLES}")
        }
        Direction::SalesforceToPagerduty => {
            format!(
                "unknown template variable `{{{{{name}}}}}`; use `{{{{record.FIELD}}}}`, `{{{{record.id}}}}` or `{{{{record.object}}}}`"
            )
        }
    })
}

fn write_var(var: &Var, ctx: &Context<'_>, out: &mut String) {
    match (var, ctx) {
        (Var::RecordId, Context::Record(r)) => out.push_str(&r.id),
        (Var::RecordObject, Context::Record(r)) => out.push_str(r.object.as_str()),
        (Var::RecordField(path), Context::Record(r)) => {
            if let Some(value) = lookup(&r.new, path) {
                push_value_text(value, out);
            }
        }
        (Var::IncidentCustomField(name), Context::Incident(e)) => {
            if let Some(value) = e.incident.custom_fields.get(name) {
                push_value_text(value, out);
            }
        }
        (var, Context::Incident(e)) => {
            let i = &e.incident;
            let text: &str = match var {
                Var::IncidentNumber => {
                    use std::fmt::Write;
                    let _ = write!(out, "{}", i.number);
                    return;
                }
                Var::IncidentId => &i.id,
                Var::IncidentTitle => &i.title,
                Var::IncidentStatus => &i.status,
                Var::IncidentUrgency => &i.urgency,
                Var::IncidentPriority => i.priority.as_deref().unwrap_or_default(),
                Var::IncidentHtmlUrl => &i.html_url,
                Var::IncidentServiceId => &i.service_id,
                Var::IncidentServiceName => &i.service_name,
                Var::IncidentEscalationPolicyName => &i.escalation_policy_name,
                Var::IncidentAssignees => &i.assignees,
                Var::IncidentTeams => &i.teams,
                Var::IncidentType => &i.incident_type,
                Var::IncidentConferenceUrl => &i.conference_url,
                Var::IncidentConferenceNumber => &i.conference_number,
                Var::Activity(field) => e.activity.fact(*field).unwrap_or_default(),
                Var::EventType => &e.event_type,
                Var::EventAgent => e.agent.as_deref().unwrap_or_default(),
                Var::EventOccurredAt => &e.occurred_at,
                Var::NoteContent => e.note.as_deref().unwrap_or_default(),
                Var::StatusUpdateMessage => e.status_update.as_deref().unwrap_or_default(),
                _ => "",
            };
            out.push_str(text);
        }
        // Validation keeps record variables out of incident rules and the other way round.
        _ => {}
    }
}
