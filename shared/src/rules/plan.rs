//! The output of evaluation: planned actions with every value resolved.

use crate::salesforce::ObjectName;
use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::RecordRef;
use crate::pagerduty::IncidentId;

use super::action::{ActionKind, Effect, Side};
use super::document::Urgency;

/// One thing to do, fully resolved (templates rendered, targets named), split by the system it
/// acts on so that each executor handles exactly its own side's actions.
///
/// Serialised as the side's action alone (`{"type":"create_incident",...}`): plans sit in retry
/// envelopes across a deploy and in audit entries, so the form predates the split and must not
/// change. Deserialising reads `type` first and picks the side from [`ActionKind`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Action {
    Pagerduty(PagerdutyAction),
    Salesforce(SalesforceAction),
}

/// An action on PagerDuty (planned by salesforce_to_pagerduty rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PagerdutyAction {
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
        incident_id: IncidentId,
    },
    /// Resolve; with a resolution note, add it as a note first.
    Resolve {
        incident_id: IncidentId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolution: Option<String>,
    },
    SetPriority {
        incident_id: IncidentId,
        priority: String,
    },
    SetUrgency {
        incident_id: IncidentId,
        urgency: Urgency,
    },
    RunIncidentWorkflow {
        incident_id: IncidentId,
        workflow_id: String,
    },
    RunAutomationAction {
        incident_id: IncidentId,
        action_id: String,
    },
    Reassign {
        incident_id: IncidentId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        user_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalation_policy_id: Option<String>,
    },
    AddResponders {
        incident_id: IncidentId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        user_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        escalation_policy_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Add a note; `content` already starts with [`crate::loop_guard::SALESFORCE_MARKER`].
    AddNote {
        incident_id: IncidentId,
        content: String,
    },
    /// Publish a status update; `message` already starts with
    /// [`crate::loop_guard::SALESFORCE_MARKER`], as a note's content does.
    PublishStatusUpdate {
        incident_id: IncidentId,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        html_message: Option<String>,
    },
    /// Set custom field values, by field name.
    SetCustomFields {
        incident_id: IncidentId,
        fields: Map<String, Value>,
    },
}

/// An action on Salesforce (planned by pagerduty_to_salesforce rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SalesforceAction {
    /// Update fields of one record (all set-fields on it merged: one write).
    SetFields { record: RecordRef, fields: Map<String, Value> },
    /// Create a record. `fields` already contains `external_id_field: external_id`, so an upsert
    /// on that external id makes a retry harmless. With `link`, link it to `incident_id`.
    CreateRecord {
        object: ObjectName,
        fields: Map<String, Value>,
        external_id_field: String,
        external_id: String,
        link: bool,
        incident_id: IncidentId,
    },
    /// One Case Comment; `body` starts with [`crate::loop_guard::PAGERDUTY_MARKER`] and fits in 4000 bytes
    /// (see [`crate::salesforce::case_comment::planned_parts`]).
    AddCaseComment { case_id: String, body: String },
}

impl From<PagerdutyAction> for Action {
    fn from(action: PagerdutyAction) -> Self {
        Action::Pagerduty(action)
    }
}

impl From<SalesforceAction> for Action {
    fn from(action: SalesforceAction) -> Self {
        Action::Salesforce(action)
    }
}

impl<'de> Deserialize<'de> for Action {
    /// Untagged deserialisation would try each side in turn and, for an unknown `type` or a bad
    /// field, say only that nothing matched: reading `type` first names the problem.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        let tag = value.get("type").ok_or_else(|| D::Error::missing_field("type"))?;
        let name = tag.as_str().ok_or_else(|| D::Error::custom(format!("action `type` is not text: {tag}")))?;
        let kind = ActionKind::from_name(name).ok_or_else(|| {
            D::Error::custom(format!("unknown action type `{name}`; known: {}", ActionKind::known_names()))
        })?;
        match kind.side() {
            Side::Pagerduty => serde_json::from_value(value).map(Action::Pagerduty),
            Side::Salesforce => serde_json::from_value(value).map(Action::Salesforce),
        }
        .map_err(D::Error::custom)
    }
}

impl PagerdutyAction {
    pub fn kind(&self) -> ActionKind {
        match self {
            PagerdutyAction::CreateIncident { .. } => ActionKind::CreateIncident,
            PagerdutyAction::Acknowledge { .. } => ActionKind::Acknowledge,
            PagerdutyAction::Resolve { .. } => ActionKind::Resolve,
            PagerdutyAction::SetPriority { .. } => ActionKind::SetPriority,
            PagerdutyAction::SetUrgency { .. } => ActionKind::SetUrgency,
            PagerdutyAction::RunIncidentWorkflow { .. } => ActionKind::RunIncidentWorkflow,
            PagerdutyAction::RunAutomationAction { .. } => ActionKind::RunAutomationAction,
            PagerdutyAction::Reassign { .. } => ActionKind::Reassign,
            PagerdutyAction::AddResponders { .. } => ActionKind::AddResponders,
            PagerdutyAction::AddNote { .. } => ActionKind::AddNote,
            PagerdutyAction::PublishStatusUpdate { .. } => ActionKind::PublishStatusUpdate,
            PagerdutyAction::SetCustomFields { .. } => ActionKind::SetCustomFields,
        }
    }

    fn state_marks(&self) -> Vec<String> {
        let incident = |id: &IncidentId, what: &str| vec![format!("incident:{id}:{what}")];
        match self {
            PagerdutyAction::Acknowledge { incident_id } | PagerdutyAction::Resolve { incident_id, .. } => {
                incident(incident_id, "status")
            }
            PagerdutyAction::SetPriority { incident_id, .. } => incident(incident_id, "priority"),
            PagerdutyAction::SetUrgency { incident_id, .. } => incident(incident_id, "urgency"),
            PagerdutyAction::Reassign { incident_id, .. } => incident(incident_id, "assignment"),
            PagerdutyAction::SetCustomFields { incident_id, fields } => {
                fields.keys().map(|name| custom_field_mark(incident_id, name)).collect()
            }
            PagerdutyAction::CreateIncident { .. }
            | PagerdutyAction::RunIncidentWorkflow { .. }
            | PagerdutyAction::RunAutomationAction { .. }
            | PagerdutyAction::AddResponders { .. }
            | PagerdutyAction::AddNote { .. }
            | PagerdutyAction::PublishStatusUpdate { .. } => vec![],
        }
    }

    fn target(&self) -> String {
        match self {
            PagerdutyAction::CreateIncident { record, .. } => {
                format!("new incident for {} {}", record.object, record.id)
            }
            PagerdutyAction::Acknowledge { incident_id }
            | PagerdutyAction::Resolve { incident_id, .. }
            | PagerdutyAction::SetPriority { incident_id, .. }
            | PagerdutyAction::SetUrgency { incident_id, .. }
            | PagerdutyAction::RunIncidentWorkflow { incident_id, .. }
            | PagerdutyAction::RunAutomationAction { incident_id, .. }
            | PagerdutyAction::Reassign { incident_id, .. }
            | PagerdutyAction::AddResponders { incident_id, .. }
            | PagerdutyAction::AddNote { incident_id, .. }
            | PagerdutyAction::PublishStatusUpdate { incident_id, .. }
            | PagerdutyAction::SetCustomFields { incident_id, .. } => format!("incident {incident_id}"),
        }
    }
}

impl SalesforceAction {
    pub fn kind(&self) -> ActionKind {
        match self {
            SalesforceAction::SetFields { .. } => ActionKind::SetFields,
            SalesforceAction::CreateRecord { .. } => ActionKind::CreateRecord,
            SalesforceAction::AddCaseComment { .. } => ActionKind::AddCaseComment,
        }
    }

    fn state_marks(&self) -> Vec<String> {
        match self {
            SalesforceAction::SetFields { record, fields } => {
                fields.keys().map(|f| field_mark(record.id.as_str(), f)).collect()
            }
            SalesforceAction::CreateRecord { .. } | SalesforceAction::AddCaseComment { .. } => vec![],
        }
    }

    fn target(&self) -> String {
        match self {
            SalesforceAction::SetFields { record, .. } => format!("{} {}", record.object, record.id),
            SalesforceAction::CreateRecord { object, incident_id, .. } => {
                format!("new {object} for incident {incident_id}")
            }
            SalesforceAction::AddCaseComment { case_id, .. } => format!("Case {case_id}"),
        }
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Pagerduty(action) => action.kind(),
            Action::Salesforce(action) => action.kind(),
        }
    }

    /// The action's name as used in rules files.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Whether the action sets state (the newest event wins) or adds something (once each,
    /// whatever the order events arrive in).
    pub fn effect(&self) -> Effect {
        self.kind().effect()
    }

    /// The pieces of state a state action sets, as marks (`incident:<id>:status`,
    /// `record:<id>:<Field>`): an event older than a mark's time must not set that piece again.
    /// Acknowledge and resolve share `status`: a late acknowledge must not undo a newer resolve.
    /// Additive actions set no marks.
    pub fn state_marks(&self) -> Vec<String> {
        match self {
            Action::Pagerduty(action) => action.state_marks(),
            Action::Salesforce(action) => action.state_marks(),
        }
    }

    /// What the action changes: an incident id, a record, or what it will create.
    pub fn target(&self) -> String {
        match self {
            Action::Pagerduty(action) => action.target(),
            Action::Salesforce(action) => action.target(),
        }
    }
}

/// The mark of one field of a record (see [`Action::state_marks`]).
pub fn field_mark(record_id: &str, field: &str) -> String {
    format!("record:{record_id}:{field}")
}

/// The mark of one custom field of an incident (see [`Action::state_marks`]).
pub fn custom_field_mark(incident_id: &IncidentId, name: &str) -> String {
    format!("incident:{incident_id}:custom_field:{name}")
}

/// The mark, on its incident, of a note the bridge wrote onto the linked records: the live
/// delivery of the note and a reconcile run's repair of it are two events, and the one that
/// comes second finds the mark and writes nothing.
pub fn note_mark(note_id: &str) -> String {
    format!("note:{note_id}")
}

/// The mark, on its incident, of the newest event of `event_type` (`incident.acknowledged`)
/// that set state on the linked records, at the event's time, as its other marks. PagerDuty's
/// REST API stamps a status change in whole seconds, webhooks to the millisecond: a reconcile
/// run tells by these whose the marks in a change's second are (an acknowledgement's, a tenth
/// of a second before the resolve that was lost, bears the acknowledgement's time).
pub fn event_mark(event_type: &str) -> String {
    format!("{EVENT_MARK}{event_type}")
}

/// The [`event_mark`] of a note's event: by the note, since two notes of one second are two
/// events of one type (a run tells the delivered one's marks from the lost one's by it).
pub fn note_event_mark(note_id: &str) -> String {
    event_mark(&format!("incident.annotated:{note_id}"))
}

/// Whether `mark` is an [`event_mark`].
pub fn is_event_mark(mark: &str) -> bool {
    mark.starts_with(EVENT_MARK)
}

const EVENT_MARK: &str = "event:";

/// An action and the rule that asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// The rule's name; merged set-fields list every contributing rule, joined by ", ".
    pub rule: String,
    pub ruleset: String,
    pub action: Action,
}

/// One planned action of one side, with its place in the plan.
#[derive(Debug, Clone, Copy)]
pub struct SideStep<'a, A> {
    pub index: usize,
    pub planned: &'a PlannedAction,
    pub action: &'a A,
}

/// A plan's actions split by the system they act on, each list in plan order.
#[derive(Debug, Default)]
pub struct BySide<'a> {
    pub pagerduty: Vec<SideStep<'a, PagerdutyAction>>,
    pub salesforce: Vec<SideStep<'a, SalesforceAction>>,
}

/// Splits `plan` by side: the one place an [`Action`] is routed to the executor of its system.
pub fn by_side(plan: &[PlannedAction]) -> BySide<'_> {
    let mut sides = BySide::default();
    for (index, planned) in plan.iter().enumerate() {
        match &planned.action {
            Action::Pagerduty(action) => sides.pagerduty.push(SideStep { index, planned, action }),
            Action::Salesforce(action) => sides.salesforce.push(SideStep { index, planned, action }),
        }
    }
    sides
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
                Action::Salesforce(SalesforceAction::SetFields { record, fields }) => {
                    let before = fields.len();
                    fields.retain(|field, _| !newer(&field_mark(record.id.as_str(), field)));
                    dropped += before - fields.len();
                    if fields.is_empty() {
                        continue;
                    }
                }
                // Per field, as set-fields: a newer event's value of one field keeps the others.
                Action::Pagerduty(PagerdutyAction::SetCustomFields { incident_id, fields }) => {
                    let before = fields.len();
                    fields.retain(|name, _| !newer(&custom_field_mark(incident_id, name)));
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
                        matches!(&p.action, Action::Salesforce(SalesforceAction::AddCaseComment { case_id: c, body: b }) if c == case_id && *b == body)
                    });
                    if !repeated {
                        let action = SalesforceAction::AddCaseComment { case_id: case_id.to_string(), body }.into();
                        self.0.push(PlannedAction { rule: rule.to_string(), ruleset: ruleset.to_string(), action });
                    }
                }
                Planned::Action(action) => self.push_action(rule, ruleset, earlier, action),
            }
        }
    }

    fn push_action(&mut self, rule: &str, ruleset: &str, earlier: usize, action: Action) {
        let found = self.0.iter().enumerate().any(|(i, existing)| match (&existing.action, &action) {
            (
                Action::Pagerduty(PagerdutyAction::CreateIncident { record, .. }),
                Action::Pagerduty(PagerdutyAction::CreateIncident { record: r2, .. }),
            ) => record == r2,
            (
                Action::Salesforce(SalesforceAction::CreateRecord { object, incident_id, .. }),
                Action::Salesforce(SalesforceAction::CreateRecord { object: o2, incident_id: i2, .. }),
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
            matches!(&p.action, Action::Salesforce(SalesforceAction::SetFields { record: r, .. }) if r.object == *record.object && r.id == *record.id)
        });
        let Some(existing) = existing else {
            let fields = fields.into_iter().map(|(k, v)| (k.to_string(), v.into_owned())).collect();
            let record = RecordRef { object: record.object.clone(), id: record.id.into() };
            let action = SalesforceAction::SetFields { record, fields }.into();
            self.0.push(PlannedAction { rule: rule.to_string(), ruleset: ruleset.to_string(), action });
            return;
        };
        if let Action::Salesforce(SalesforceAction::SetFields { fields: merged, .. }) = &mut existing.action {
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
    pub object: &'a ObjectName,
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
pub(crate) mod tests {
    use super::*;

    /// Actions as the single enum before the split by side serialised them, every action at
    /// least once (optional fields both present and absent): retry envelopes and audit entries
    /// written by the previous release hold exactly these.
    pub(crate) const OLD_FORM: &[&str] = &[
        r#"{"type":"create_incident","record":{"object":"Case","id":"500A"},"service_id":"PSVC1","escalation_policy_id":"PEP1","urgency":"high","priority":"P1","title":"[Sev1] 1026","body":"Case 1026","incident_key":"sfdc:Case:500A:r"}"#,
        r#"{"type":"create_incident","record":{"object":"Case","id":"500A"},"service_id":"PSVC1","title":"Case 1026","incident_key":"sfdc:Case:500A:r"}"#,
        r#"{"type":"acknowledge","incident_id":"Q1"}"#,
        r#"{"type":"resolve","incident_id":"Q1","resolution":"[Salesforce] fixed"}"#,
        r#"{"type":"resolve","incident_id":"Q1"}"#,
        r#"{"type":"set_priority","incident_id":"Q1","priority":"P2"}"#,
        r#"{"type":"set_urgency","incident_id":"Q1","urgency":"low"}"#,
        r#"{"type":"run_incident_workflow","incident_id":"Q1","workflow_id":"PWF1"}"#,
        r#"{"type":"run_automation_action","incident_id":"Q1","action_id":"PAA1"}"#,
        r#"{"type":"reassign","incident_id":"Q1","user_ids":["PU1","PU2"]}"#,
        r#"{"type":"reassign","incident_id":"Q1","escalation_policy_id":"PEP2"}"#,
        r#"{"type":"add_responders","incident_id":"Q1","user_ids":["PU1"],"escalation_policy_ids":["PEP1"],"message":"help"}"#,
        r#"{"type":"add_responders","incident_id":"Q1","escalation_policy_ids":["PEP1"]}"#,
        r#"{"type":"add_note","incident_id":"Q1","content":"[Salesforce] Status is Working"}"#,
        // Added after the split (no older form): kept here so that every variant has a sample.
        r#"{"type":"publish_status_update","incident_id":"Q1","message":"[Salesforce] Customer notified","subject":"Checkout","html_message":"<p>Customer notified</p>"}"#,
        r#"{"type":"publish_status_update","incident_id":"Q1","message":"[Salesforce] Customer notified"}"#,
        r#"{"type":"set_custom_fields","incident_id":"Q1","fields":{"impact":"high","seats":12,"region":null}}"#,
        r#"{"type":"set_fields","record":{"object":"Case","id":"500A"},"fields":{"Status":"Working","Count__c":3,"Note__c":null}}"#,
        r#"{"type":"create_record","object":"Escalation__c","fields":{"Name":"x","PD_Key__c":"pd:Q1:r"},"external_id_field":"PD_Key__c","external_id":"pd:Q1:r","link":true,"incident_id":"Q1"}"#,
        r#"{"type":"add_case_comment","case_id":"500A","body":"[PagerDuty] resolved"}"#,
    ];

    fn tag(json: &str) -> String {
        serde_json::from_str::<Value>(json).unwrap()["type"].as_str().unwrap().to_string()
    }

    #[test]
    fn the_serialised_form_predates_the_split_by_side() {
        for json in OLD_FORM {
            let action: Action = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(serde_json::to_string(&action).unwrap(), *json, "re-serialised");
            assert_eq!(action.name(), tag(json), "{json}");
            let on = match &action {
                Action::Pagerduty(_) => Side::Pagerduty,
                Action::Salesforce(_) => Side::Salesforce,
            };
            assert_eq!(on, action.kind().side(), "{json}: the variant's side and the table's");
        }
        // A whole plan, as a retry envelope holds it.
        let plan = format!(
            r#"[{{"rule":"a","ruleset":"s","action":{}}},{{"rule":"b","ruleset":"s","action":{}}}]"#,
            OLD_FORM[2],
            OLD_FORM[OLD_FORM.len() - 1]
        );
        let parsed: Plan = serde_json::from_str(&plan).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), plan);
    }

    #[test]
    fn an_action_that_does_not_read_says_why() {
        let err = |json: &str| serde_json::from_str::<Action>(json).unwrap_err().to_string();
        let unknown = err(r#"{"type":"page_everyone","incident_id":"Q1"}"#);
        assert!(
            unknown.starts_with("unknown action type `page_everyone`; known: create_incident, acknowledge"),
            "{unknown}"
        );
        assert!(err(r#"{"incident_id":"Q1"}"#).contains("missing field `type`"));
        assert!(err(r#"{"type":3}"#).contains("action `type` is not text"));
        // A known type with a missing field names the field, on either side.
        assert!(err(r#"{"type":"acknowledge"}"#).contains("missing field `incident_id`"));
        assert!(err(r#"{"type":"set_fields","incident_id":"Q1"}"#).contains("missing field `record`"));
    }

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
