//! The rules document's data model: rulesets, rules, conditions and actions as compiled by the
//! loader ([`super::load`]), with the limits they are checked against.

use crate::salesforce::ObjectName;
use std::fmt;
use std::sync::Arc;

use regex::Regex;
use serde::Serialize;

use crate::model::Direction;
use crate::rules::action::ActionKind;
use crate::rules::template::Template;
use crate::rules::value::{parse_datetime, parse_number};

/// PagerDuty's limit on incident titles, in characters.
pub const MAX_TITLE_CHARS: usize = 1024;
/// How many record fields a title template may use (as in PagerDuty's own package).
pub const MAX_TITLE_FIELDS: usize = 3;
/// Field that `create_record` fills with its idempotency key unless the rule names another.
pub const DEFAULT_EXTERNAL_ID_FIELD: &str = "PagerDuty_Incident_Key__c";

/// A validated, compiled rules document. Build it with [`Rules::from_yaml`].
#[derive(Debug, Clone)]
pub struct Rules {
    pub rulesets: Vec<RuleSet>,
}

/// A named group of rules that can be switched off as a whole.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub name: String,
    /// `name`, shared into explanations without copying.
    pub(crate) shared_name: Arc<str>,
    pub enabled: bool,
    pub rules: Vec<Rule>,
    pub line: usize,
}

/// One rule: when it runs, what it checks, what it does.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub(crate) shared_name: Arc<str>,
    pub direction: Direction,
    /// S→P: the object whose changes it watches. P→S: the object it acts on.
    pub object: ObjectName,
    pub match_mode: MatchMode,
    pub applies_to: AppliesTo,
    pub conditions: Vec<Condition>,
    pub actions: Vec<ActionSpec>,
    pub line: usize,
}

/// Whether all or any conditions must hold. No conditions always match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    All,
    Any,
}

/// Which events a rule acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliesTo {
    /// S→P: record inserts only. P→S: `incident.triggered` only.
    NewOnly,
    /// Every matching event, acting on existing links too.
    AllLinked,
}

/// One compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The field as written, e.g. `pagerduty.status` or `old.Status`.
    pub field_text: String,
    pub field: Field,
    pub operator: Operator,
    pub expected: Expected,
    pub case_sensitive: bool,
    pub line: usize,
    /// `field_text` and `expected` as the explanation shows them, built once at load.
    pub(crate) shared_field: Arc<str>,
    pub(crate) expected_json: Option<Arc<serde_json::Value>>,
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Pagerduty(PdField),
    /// An incident custom field, by name (`pagerduty.custom_fields.NAME`).
    PagerdutyCustomField(String),
    /// A Salesforce field path; `old` reads the value before the update.
    Salesforce {
        path: Vec<String>,
        old: bool,
    },
}

/// The PagerDuty facts a condition can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdField {
    EventType,
    Title,
    Status,
    Service,
    ServiceName,
    EscalationPolicy,
    EscalationPolicyName,
    Priority,
    Urgency,
    Note,
    StatusUpdate,
    Assignees,
    Teams,
    IncidentType,
    ConferenceUrl,
    ConferenceNumber,
    Agent,
    Responder,
    ResponderMessage,
    ResponderState,
    Workflow,
    AutomationAction,
    ActionState,
    Task,
    TaskStatus,
    Role,
    RoleAssignee,
    CustomFieldsChanged,
}

pub(crate) const PD_FIELDS: &[(&str, PdField)] = &[
    ("event_type", PdField::EventType),
    ("title", PdField::Title),
    ("status", PdField::Status),
    ("service", PdField::Service),
    ("service_name", PdField::ServiceName),
    ("escalation_policy", PdField::EscalationPolicy),
    ("escalation_policy_name", PdField::EscalationPolicyName),
    ("priority", PdField::Priority),
    ("urgency", PdField::Urgency),
    ("note", PdField::Note),
    ("status_update", PdField::StatusUpdate),
    ("assignees", PdField::Assignees),
    ("teams", PdField::Teams),
    ("incident_type", PdField::IncidentType),
    ("conference_url", PdField::ConferenceUrl),
    ("conference_number", PdField::ConferenceNumber),
    ("agent", PdField::Agent),
    ("responder", PdField::Responder),
    ("responder_message", PdField::ResponderMessage),
    ("responder_state", PdField::ResponderState),
    ("workflow", PdField::Workflow),
    ("automation_action", PdField::AutomationAction),
    ("action_state", PdField::ActionState),
    ("task", PdField::Task),
    ("task_status", PdField::TaskStatus),
    ("role", PdField::Role),
    ("role_assignee", PdField::RoleAssignee),
    ("custom_fields_changed", PdField::CustomFieldsChanged),
];

/// `pagerduty.custom_fields.NAME` reads an incident custom field's value by its name.
pub(super) const PD_CUSTOM_FIELDS: &str = "custom_fields.";

/// PagerDuty's limit on a custom field's name, in characters.
pub const MAX_CUSTOM_FIELD_NAME: usize = 50;

/// Whether `name` can be a PagerDuty custom field's name: lowercase ASCII letters, digits and
/// underscores, at most [`MAX_CUSTOM_FIELD_NAME`] (the OpenAPI document's `Field Name`).
pub fn is_custom_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CUSTOM_FIELD_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Condition operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Equals,
    NotEquals,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    Matches,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
    GreaterThan,
    LessThan,
    Changed,
    ChangedTo,
    ChangedFrom,
}

pub(super) const OPERATORS: &[(&str, Operator)] = &[
    ("equals", Operator::Equals),
    ("not_equals", Operator::NotEquals),
    ("contains", Operator::Contains),
    ("not_contains", Operator::NotContains),
    ("starts_with", Operator::StartsWith),
    ("ends_with", Operator::EndsWith),
    ("matches", Operator::Matches),
    ("in", Operator::In),
    ("not_in", Operator::NotIn),
    ("is_empty", Operator::IsEmpty),
    ("is_not_empty", Operator::IsNotEmpty),
    ("greater_than", Operator::GreaterThan),
    ("less_than", Operator::LessThan),
    ("changed", Operator::Changed),
    ("changed_to", Operator::ChangedTo),
    ("changed_from", Operator::ChangedFrom),
];

impl Operator {
    pub fn as_str(self) -> &'static str {
        OPERATORS.iter().find(|(_, op)| *op == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The compiled right-hand side of a condition.
#[derive(Debug, Clone)]
pub enum Expected {
    None,
    One(Scalar),
    List(Vec<Scalar>),
    Regex(Regex),
}

/// A literal to compare with, pre-folded for case-insensitive comparison and pre-parsed for
/// greater/less than.
#[derive(Debug, Clone)]
pub struct Scalar {
    pub text: String,
    pub(crate) folded: String,
    pub(crate) number: Option<f64>,
    pub(crate) date: Option<chrono::DateTime<chrono::Utc>>,
}

impl Scalar {
    pub(super) fn new(text: String, case_sensitive: bool) -> Self {
        let folded = if case_sensitive { text.clone() } else { text.to_lowercase() };
        let number = parse_number(&text);
        let date = parse_datetime(&text);
        Scalar { text, folded, number, date }
    }
}

/// Urgency of a PagerDuty incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    High,
    Low,
}

/// `prefix` + up to three record fields joined by " - ".
#[derive(Debug, Clone)]
pub struct TitleTemplate {
    pub prefix: String,
    pub fields: Vec<Vec<String>>,
}

/// A field value to write: literal JSON or a template rendered to text.
#[derive(Debug, Clone)]
pub enum FieldValue {
    Literal(serde_json::Value),
    Template(Template),
}

/// An action as written in the rules file (compiled), by the side it acts on: each side's
/// planner matches its own actions, all of them.
#[derive(Debug, Clone)]
pub enum ActionSpec {
    Pagerduty(PagerdutySpec),
    Salesforce(SalesforceSpec),
}

/// An action on PagerDuty (planned by `salesforce_to_pagerduty` rules).
#[derive(Debug, Clone)]
pub enum PagerdutySpec {
    CreateIncident {
        service_id: String,
        escalation_policy_id: Option<String>,
        urgency: Option<Urgency>,
        priority: Option<String>,
        title: TitleTemplate,
        body: Option<Template>,
    },
    Acknowledge,
    Resolve {
        resolution: Option<Template>,
    },
    SetPriority {
        priority: String,
    },
    SetUrgency {
        urgency: Urgency,
    },
    RunIncidentWorkflow {
        workflow_id: String,
    },
    RunAutomationAction {
        action_id: String,
    },
    Reassign {
        user_ids: Vec<String>,
        escalation_policy_id: Option<String>,
    },
    AddResponders {
        user_ids: Vec<String>,
        escalation_policy_ids: Vec<String>,
        message: Option<Template>,
    },
    AddNote {
        content: Template,
    },
    /// `subject` and `html_message` come together (PagerDuty's custom HTML email) or not at all.
    PublishStatusUpdate {
        message: Template,
        subject: Option<Template>,
        html_message: Option<Template>,
    },
    /// By custom field name (`pagerduty.custom_fields.NAME` in conditions reads the same names).
    SetCustomFields {
        fields: Vec<(String, FieldValue)>,
    },
}

/// An action on Salesforce (planned by `pagerduty_to_salesforce` rules).
#[derive(Debug, Clone)]
pub enum SalesforceSpec {
    SetFields { fields: Vec<(String, FieldValue)> },
    CreateRecord { object: ObjectName, fields: Vec<(String, FieldValue)>, external_id_field: String, link: bool },
    AddCaseComment { body: Template },
}

impl ActionSpec {
    pub fn kind(&self) -> ActionKind {
        match self {
            ActionSpec::Pagerduty(spec) => spec.kind(),
            ActionSpec::Salesforce(spec) => spec.kind(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Whether the action works on something already linked.
    pub fn needs_link(&self) -> bool {
        !matches!(
            self,
            ActionSpec::Pagerduty(PagerdutySpec::CreateIncident { .. })
                | ActionSpec::Salesforce(SalesforceSpec::CreateRecord { .. })
        )
    }
}

impl PagerdutySpec {
    pub fn kind(&self) -> ActionKind {
        match self {
            PagerdutySpec::CreateIncident { .. } => ActionKind::CreateIncident,
            PagerdutySpec::Acknowledge => ActionKind::Acknowledge,
            PagerdutySpec::Resolve { .. } => ActionKind::Resolve,
            PagerdutySpec::SetPriority { .. } => ActionKind::SetPriority,
            PagerdutySpec::SetUrgency { .. } => ActionKind::SetUrgency,
            PagerdutySpec::RunIncidentWorkflow { .. } => ActionKind::RunIncidentWorkflow,
            PagerdutySpec::RunAutomationAction { .. } => ActionKind::RunAutomationAction,
            PagerdutySpec::Reassign { .. } => ActionKind::Reassign,
            PagerdutySpec::AddResponders { .. } => ActionKind::AddResponders,
            PagerdutySpec::AddNote { .. } => ActionKind::AddNote,
            PagerdutySpec::PublishStatusUpdate { .. } => ActionKind::PublishStatusUpdate,
            PagerdutySpec::SetCustomFields { .. } => ActionKind::SetCustomFields,
        }
    }
}

impl SalesforceSpec {
    pub fn kind(&self) -> ActionKind {
        match self {
            SalesforceSpec::SetFields { .. } => ActionKind::SetFields,
            SalesforceSpec::CreateRecord { .. } => ActionKind::CreateRecord,
            SalesforceSpec::AddCaseComment { .. } => ActionKind::AddCaseComment,
        }
    }
}
