//! The output of evaluation: planned actions with every value resolved.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::RecordRef;

use super::document::Urgency;

/// One thing to do, fully resolved (templates rendered, targets named).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Create an incident for `record` and link them. `incident_key` is derived from the object,
    /// record id and rule, so that a retry de-duplicates at PagerDuty instead of creating a second one.
    CreateIncident {
        record: RecordRef,
        service_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalation_policy_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        urgency: Option<Urgency>,
        /// Priority name; the executor resolves it to an id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<String>,
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        incident_key: String,
    },
    Acknowledge {
        incident_id: String,
    },
    /// Resolve; with a resolution note, add it as a note first.
    Resolve {
        incident_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolution: Option<String>,
    },
    SetPriority {
        incident_id: String,
        priority: String,
    },
    SetUrgency {
        incident_id: String,
        urgency: Urgency,
    },
    RunIncidentWorkflow {
        incident_id: String,
        workflow_id: String,
    },
    RunAutomationAction {
        incident_id: String,
        action_id: String,
    },
    Reassign {
        incident_id: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        user_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalation_policy_id: Option<String>,
    },
    AddResponders {
        incident_id: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        user_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        escalation_policy_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Add a note; `content` already starts with [`crate::loop_guard::SALESFORCE_MARKER`].
    AddNote {
        incident_id: String,
        content: String,
    },
    /// Update fields of one record (all set-fields on it merged: one write).
    SetFields {
        record: RecordRef,
        fields: Map<String, Value>,
    },
    /// Create a record. `fields` already contains `external_id_field: external_id`, so an upsert
    /// on that external id makes a retry harmless. With `link`, link it to `incident_id`.
    CreateRecord {
        object: String,
        fields: Map<String, Value>,
        external_id_field: String,
        external_id: String,
        link: bool,
        incident_id: String,
    },
    /// One Case Comment; `body` starts with [`crate::loop_guard::PAGERDUTY_MARKER`] and fits in 4000 bytes
    /// (see [`crate::salesforce::case_comment::planned_parts`]).
    AddCaseComment {
        case_id: String,
        body: String,
    },
}

impl Action {
    /// The action's name as used in rules files.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateIncident { .. } => "create_incident",
            Action::Acknowledge { .. } => "acknowledge",
            Action::Resolve { .. } => "resolve",
            Action::SetPriority { .. } => "set_priority",
            Action::SetUrgency { .. } => "set_urgency",
            Action::RunIncidentWorkflow { .. } => "run_incident_workflow",
            Action::RunAutomationAction { .. } => "run_automation_action",
            Action::Reassign { .. } => "reassign",
            Action::AddResponders { .. } => "add_responders",
            Action::AddNote { .. } => "add_note",
            Action::SetFields { .. } => "set_fields",
            Action::CreateRecord { .. } => "create_record",
            Action::AddCaseComment { .. } => "add_case_comment",
        }
    }

    /// Whether the action sets state (the newest event wins) or adds something (once each,
    /// whatever the order events arrive in).
    pub fn effect(&self) -> Effect {
        match self {
            Action::Acknowledge { .. }
            | Action::Resolve { .. }
            | Action::SetPriority { .. }
            | Action::SetUrgency { .. }
            | Action::Reassign { .. }
            | Action::SetFields { .. } => Effect::State,
            Action::CreateIncident { .. }
            | Action::CreateRecord { .. }
            | Action::AddNote { .. }
            | Action::AddCaseComment { .. }
            | Action::AddResponders { .. }
            | Action::RunIncidentWorkflow { .. }
            | Action::RunAutomationAction { .. } => Effect::Additive,
        }
    }

    /// The pieces of state a state action sets, as marks (`incident:<id>:status`,
    /// `record:<id>:<Field>`): an event older than a mark's time must not set that piece again.
    /// Acknowledge and resolve share `status`: a late acknowledge must not undo a newer resolve.
    /// Additive actions set no marks.
    pub fn state_marks(&self) -> Vec<String> {
        let incident = |id: &str, what: &str| vec![format!("incident:{id}:{what}")];
        match self {
            Action::Acknowledge { incident_id } | Action::Resolve { incident_id, .. } => {
                incident(incident_id, "status")
            }
            Action::SetPriority { incident_id, .. } => incident(incident_id, "priority"),
            Action::SetUrgency { incident_id, .. } => incident(incident_id, "urgency"),
            Action::Reassign { incident_id, .. } => incident(incident_id, "assignment"),
            Action::SetFields { record, fields } => fields.keys().map(|f| field_mark(&record.id, f)).collect(),
            _ => vec![],
        }
    }

    /// What the action changes: an incident id, a record, or what it will create.
    pub fn target(&self) -> String {
        match self {
            Action::CreateIncident { record, .. } => format!("new incident for {} {}", record.object, record.id),
            Action::Acknowledge { incident_id }
            | Action::Resolve { incident_id, .. }
            | Action::SetPriority { incident_id, .. }
            | Action::SetUrgency { incident_id, .. }
            | Action::RunIncidentWorkflow { incident_id, .. }
            | Action::RunAutomationAction { incident_id, .. }
            | Action::Reassign { incident_id, .. }
            | Action::AddResponders { incident_id, .. }
            | Action::AddNote { incident_id, .. } => format!("incident {incident_id}"),
            Action::SetFields { record, .. } => format!("{} {}", record.object, record.id),
            Action::CreateRecord { object, incident_id, .. } => format!("new {object} for incident {incident_id}"),
            Action::AddCaseComment { case_id, .. } => format!("Case {case_id}"),
        }
    }
}

/// The two kinds of effect an action has (see [`Action::effect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Sets a value: only the newest event's value may stand.
    State,
    /// Adds something: happens exactly once, even when its event arrives late.
    Additive,
}

/// The mark of one field of a record (see [`Action::state_marks`]).
pub fn field_mark(record_id: &str, field: &str) -> String {
    format!("record:{record_id}:{field}")
}

/// An action and the rule that asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// The rule's name; merged set-fields list every contributing rule, joined by ", ".
    pub rule: String,
    pub ruleset: String,
    pub action: Action,
}

/// The ordered, de-duplicated actions for one event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Plan(pub Vec<PlannedAction>);

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What an event that happened at `at` may still do, given when each piece of state was last
    /// set (`marks`, see [`Action::state_marks`]): a state action whose piece a newer event set is
    /// dropped (a set-fields keeps its other fields); additive actions always stay. Returns the
    /// plan and how many pieces of state were dropped.
    pub fn without_older_state(self, marks: &BTreeMap<String, DateTime<Utc>>, at: DateTime<Utc>) -> (Plan, usize) {
        let newer = |mark: &str| marks.get(mark).is_some_and(|set_at| *set_at > at);
        let mut dropped = 0;
        let mut kept = Vec::with_capacity(self.0.len());
        for mut planned in self.0 {
            match &mut planned.action {
                Action::SetFields { record, fields } => {
                    let before = fields.len();
                    fields.retain(|field, _| !newer(&field_mark(&record.id, field)));
                    dropped += before - fields.len();
                    if fields.is_empty() {
                        continue;
                    }
                }
                action if action.effect() == Effect::State && action.state_marks().iter().any(|m| newer(m)) => {
                    dropped += 1;
                    continue;
                }
                _ => {}
            }
            kept.push(planned);
        }
        (Plan(kept), dropped)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, PlannedAction> {
        self.0.iter()
    }

    /// Adds the actions one rule planned. An action identical to one an EARLIER rule planned is
    /// dropped (within one rule, repeats are deliberate, e.g. the parts of a long comment).
    /// Set-fields on a record already planned merge into the first one (the later rule wins per
    /// field), so one event is one write per record. Only the first `create_incident` per record
    /// and `create_record` per object and incident is kept: two rules must not create two
    /// incidents for one case.
    pub(crate) fn push_rule<'a>(&mut self, rule: &str, ruleset: &str, actions: impl IntoIterator<Item = Planned<'a>>) {
        let earlier = self.0.len();
        for planned in actions {
            match planned {
                Planned::SetFields { record, fields } => self.merge_set_fields(rule, ruleset, record, fields),
                Planned::CaseComment { case_id, body } => {
                    let repeated = self.0[..earlier].iter().any(|p| {
                        matches!(&p.action, Action::AddCaseComment { case_id: c, body: b } if c == case_id && *b == body)
                    });
                    if !repeated {
                        let action = Action::AddCaseComment { case_id: case_id.to_string(), body };
                        self.0.push(PlannedAction { rule: rule.to_string(), ruleset: ruleset.to_string(), action });
                    }
                }
                Planned::Action(action) => self.push_action(rule, ruleset, earlier, action),
            }
        }
    }

    fn push_action(&mut self, rule: &str, ruleset: &str, earlier: usize, action: Action) {
        let found = self.0.iter().enumerate().any(|(i, existing)| match (&existing.action, &action) {
            (Action::CreateIncident { record, .. }, Action::CreateIncident { record: r2, .. }) => record == r2,
            (
                Action::CreateRecord { object, incident_id, .. },
                Action::CreateRecord { object: o2, incident_id: i2, .. },
            ) => object == o2 && incident_id == i2,
            (a, b) => i < earlier && a == b,
        });
        if !found {
            self.0.push(PlannedAction { rule: rule.to_string(), ruleset: ruleset.to_string(), action });
        }
    }

    /// Set-fields are merged as they come, without building a map per rule: a large document has
    /// many rules writing to the one linked record.
    fn merge_set_fields(
        &mut self,
        rule: &str,
        ruleset: &str,
        record: RecordKey<'_>,
        fields: Vec<(&str, Cow<'_, Value>)>,
    ) {
        let existing = self.0.iter_mut().find(|p| {
            matches!(&p.action, Action::SetFields { record: r, .. } if r.object == record.object && r.id == record.id)
        });
        let Some(existing) = existing else {
            let fields = fields.into_iter().map(|(k, v)| (k.to_string(), v.into_owned())).collect();
            let record = RecordRef { object: record.object.to_string(), id: record.id.to_string() };
            let action = Action::SetFields { record, fields };
            self.0.push(PlannedAction { rule: rule.to_string(), ruleset: ruleset.to_string(), action });
            return;
        };
        if let Action::SetFields { fields: merged, .. } = &mut existing.action {
            for (name, value) in fields {
                match merged.get_mut(name) {
                    Some(slot) if *slot == *value => {}
                    Some(slot) => *slot = value.into_owned(),
                    None => {
                        merged.insert(name.to_string(), value.into_owned());
                    }
                }
            }
        }
        let named = existing.rule == rule || existing.rule.strip_suffix(rule).is_some_and(|head| head.ends_with(", "));
        if !named {
            existing.rule.push_str(", ");
            existing.rule.push_str(rule);
        }
    }
}

/// The record a set-fields action writes to, borrowed from the event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordKey<'a> {
    pub object: &'a str,
    pub id: &'a str,
}

/// What one rule planned, before it joins the plan. Set-fields and Case Comments stay borrowed
/// from the rule and the event until the merge knows they are new: most of them are not.
#[derive(Debug)]
pub(crate) enum Planned<'a> {
    Action(Action),
    SetFields { record: RecordKey<'a>, fields: Vec<(&'a str, Cow<'a, Value>)> },
    CaseComment { case_id: &'a str, body: String },
}

impl IntoIterator for Plan {
    type Item = PlannedAction;
    type IntoIter = std::vec::IntoIter<PlannedAction>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "Plan: nothing to do");
        }
        writeln!(f, "Plan: {} action(s)", self.0.len())?;
        for (i, p) in self.0.iter().enumerate() {
            let detail = serde_json::to_value(&p.action).unwrap_or(Value::Null);
            let mut detail = detail.as_object().cloned().unwrap_or_default();
            detail.remove("type");
            writeln!(
                f,
                "  {:>2}. {:<22} {:<40} rule {:?} (ruleset {:?})",
                i + 1,
                p.action.name(),
                p.action.target(),
                p.rule,
                p.ruleset
            )?;
            writeln!(f, "      {}", Value::Object(detail))?;
        }
        Ok(())
    }
}

/// Cuts `text` to at most `max` characters, on a character boundary.
pub fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((byte, _)) => &text[..byte],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_multibyte_characters_whole() {
        let title = "é".repeat(1030);
        let cut = truncate_chars(&title, 1024);
        assert_eq!(cut.chars().count(), 1024);
        assert_eq!(cut.len(), 2048);
        assert_eq!(truncate_chars("short", 1024), "short");
        let emoji = "🔥".repeat(2000);
        assert_eq!(truncate_chars(&emoji, 1024).chars().count(), 1024);
    }
}
