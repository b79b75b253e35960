//! Pure evaluation: event in, plan and explanation out.

use crate::salesforce::ObjectName;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::loop_guard::{self, marked_note};
use crate::model::{Direction, RecordRef};
use crate::pagerduty::IncidentId;
use crate::salesforce::case_comment;

use super::document::{
    ActionSpec, AppliesTo, Condition, Expected, Field, FieldValue, MAX_TITLE_CHARS, MatchMode, Operator, PagerdutySpec,
    PdField, Rule, Rules, SalesforceSpec, Scalar,
};
use super::event::{Event, IncidentEvent, LinkedRecord, RecordEvent};
use super::plan::{Action, PagerdutyAction, Plan, Planned, RecordKey, SalesforceAction, truncate_chars};
use super::template::Context;
use super::value::{as_number, lookup, parse_datetime, parse_number, value_text};

/// The result of evaluating one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub plan: Plan,
    pub explanation: Explanation,
}

/// Why each rule ran or not, and what each condition saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// One line naming the event, e.g. `Case 500... update`.
    pub event: String,
    pub rules: Vec<RuleExplanation>,
}

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleExplanation {
    #[serde(serialize_with = "as_str")]
    pub ruleset: Arc<str>,
    #[serde(serialize_with = "as_str")]
    pub rule: Arc<str>,
    pub ran: bool,
    /// Set when `ran` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<SkipReason>,
    pub conditions: Vec<ConditionCheck>,
    pub actions: Vec<ActionNote>,
}

/// Why a rule did nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    RulesetDisabled,
    /// The rule runs on the other side's events.
    OtherDirection,
    /// The record is of another object.
    OtherObject {
        object: ObjectName,
    },
    /// `applies_to: new_only` and the record/incident is not new.
    NotNew,
    ConditionsNotMet,
    /// The conditions held, but every action needs a link and there is none.
    NoLink,
    /// The conditions held, but every action was left out (see the action notes).
    NothingToDo,
    /// The text was written by the bridge itself; forwarding it would loop.
    LoopPrevention {
        marker: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::RulesetDisabled => f.write_str("ruleset disabled"),
            SkipReason::OtherDirection => f.write_str("rule is for the other direction"),
            SkipReason::OtherObject { object } => write!(f, "rule is for {object} records"),
            SkipReason::NotNew => f.write_str("new_only, and this is not new"),
            SkipReason::ConditionsNotMet => f.write_str("conditions not met"),
            SkipReason::NoLink => f.write_str("no linked incident/record to act on"),
            SkipReason::NothingToDo => f.write_str("conditions met, but every action was left out"),
            SkipReason::LoopPrevention { marker } => {
                write!(f, "text starts with {marker}: written by the bridge, not forwarded")
            }
        }
    }
}

/// One condition's check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionCheck {
    /// The linked record it was checked against (P→S rules with Salesforce-field conditions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(serialize_with = "as_str")]
    pub field: Arc<str>,
    pub operator: Operator,
    /// The value(s) from the rule; absent for operators without a value.
    #[serde(serialize_with = "as_value")]
    pub expected: Option<Arc<Value>>,
    /// What the field held (the new value for `changed*`); `null` when absent.
    pub saw: Value,
    /// For `changed*`: the value before the update (`null` when absent or on insert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saw_old: Option<Value>,
    pub case_sensitive: bool,
    pub matched: bool,
}

/// What became of one of the rule's actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionNote {
    pub action: &'static str,
    /// Planned actions it produced (before de-duplication across rules).
    pub planned: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<Cow<'static, str>>,
}

fn as_str<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

fn as_value<S: serde::Serializer>(v: &Option<Arc<Value>>, s: S) -> Result<S::Ok, S::Error> {
    v.as_deref().serialize(s)
}

impl Rules {
    /// Evaluates `event` against every rule, in document order, explaining every decision.
    pub fn evaluate(&self, event: &Event) -> Evaluation {
        self.run(event, true)
    }

    /// The same plan as [`Rules::evaluate`], with the rules that ran and why others were skipped,
    /// but without recording each condition's values: what the handlers need on every event.
    pub fn plan(&self, event: &Event) -> Evaluation {
        self.run(event, false)
    }

    fn run(&self, event: &Event, explain: bool) -> Evaluation {
        let mut plan = Plan::default();
        let mut rules = Vec::with_capacity(self.rule_count());
        // Reused by every rule: one allocation per event, not one per rule.
        let mut planned = Vec::new();
        for set in &self.rulesets {
            for rule in &set.rules {
                let mut ex = RuleExplanation {
                    ruleset: set.shared_name.clone(),
                    rule: rule.shared_name.clone(),
                    ran: false,
                    skipped: None,
                    conditions: if explain { Vec::with_capacity(rule.conditions.len()) } else { Vec::new() },
                    actions: Vec::new(),
                };
                let outcome = if set.enabled {
                    evaluate_rule(rule, event, &mut ex, &mut planned, explain)
                } else {
                    Err(SkipReason::RulesetDisabled)
                };
                match outcome {
                    Ok(()) => {
                        ex.ran = true;
                        plan.push_rule(&rule.name, &set.name, planned.drain(..));
                    }
                    Err(reason) => {
                        planned.clear();
                        ex.skipped = Some(reason);
                    }
                }
                rules.push(ex);
            }
        }
        let event = if explain { describe(event) } else { String::new() };
        Evaluation { plan, explanation: Explanation { event, rules } }
    }
}

impl Rules {
    /// The top-level fields of linked `object` records that deciding `inc` can need: those read
    /// by the Salesforce-field conditions of enabled `pagerduty_to_salesforce` rules on `object`
    /// whose PagerDuty-side facts leave the outcome open. The handler reads a linked record only
    /// when this is not empty, so an event that such conditions cannot decide costs no Salesforce
    /// call (templates of these rules never read record fields).
    pub fn record_fields_needed(&self, inc: &IncidentEvent, object: &ObjectName) -> Vec<String> {
        let mut fields: Vec<String> = Vec::new();
        let rules = self.rulesets.iter().filter(|set| set.enabled).flat_map(|set| &set.rules);
        for rule in rules.filter(|r| r.direction == Direction::PagerdutyToSalesforce && r.object == *object) {
            let reads = rule.conditions.iter().filter_map(|c| match &c.field {
                Field::Salesforce { path, .. } => path.first(),
                Field::Pagerduty(_) | Field::PagerdutyCustomField(_) => None,
            });
            if reads.clone().next().is_some() && outcome_open(rule, inc) {
                fields.extend(reads.cloned());
            }
        }
        fields.sort();
        fields.dedup();
        fields
    }

    /// The fields of `object` that the enabled `pagerduty_to_salesforce` rules set: the
    /// bridge's own writes, which a reconcile run must not take for a person's change.
    pub fn fields_the_bridge_sets(&self, object: &ObjectName) -> Vec<String> {
        self.fields_of(Direction::PagerdutyToSalesforce, object, |rule| {
            rule.actions
                .iter()
                .filter_map(|a| match a {
                    ActionSpec::Salesforce(SalesforceSpec::SetFields { fields }) => {
                        Some(fields.iter().map(|(f, _)| f.clone()))
                    }
                    ActionSpec::Salesforce(_) | ActionSpec::Pagerduty(_) => None,
                })
                .flatten()
                .collect()
        })
    }

    /// The fields of `object` that the enabled `salesforce_to_pagerduty` rules compare with their
    /// old values (`changed`, `changed_to`, `changed_from`, `old.FIELD`): what the bridge keeps
    /// of a record it saw ([`crate::store::Seen`]), so that a change without old values (a
    /// reconcile run's) is judged against them.
    pub fn fields_compared_with_old(&self, object: &ObjectName) -> Vec<String> {
        self.fields_of(Direction::SalesforceToPagerduty, object, |rule| {
            rule.conditions.iter().filter_map(|c| compared_with_old(c).cloned()).collect()
        })
    }

    /// The conditions of enabled `salesforce_to_pagerduty` rules that compare a field with its
    /// old value, with their rules: what a change without old values (the first Change Data
    /// Capture event the bridge sees of a record) cannot match.
    pub fn conditions_on_old_values(&self) -> Vec<(&Rule, &Condition)> {
        let rules = self.rulesets.iter().filter(|set| set.enabled).flat_map(|set| &set.rules);
        rules
            .filter(|r| r.direction == Direction::SalesforceToPagerduty)
            .flat_map(|r| r.conditions.iter().filter(|c| compared_with_old(c).is_some()).map(move |c| (r, c)))
            .collect()
    }

    /// The incident and rule a record names as its creator: the external id a link-making
    /// `create_record` rule of `object` gave it ([`external_id`]). The bridge's own insert of the
    /// record comes back as an echo carrying it, so the link is known even while the creating
    /// event, its answer lost, waits in the retry queue.
    pub fn created_by(&self, object: &ObjectName, fields: &Map<String, Value>) -> Option<(IncidentId, &str)> {
        let rules = self.rulesets.iter().filter(|set| set.enabled).flat_map(|set| &set.rules);
        rules.filter(|r| r.direction == Direction::PagerdutyToSalesforce).find_map(|rule| {
            rule.actions.iter().find_map(|action| match action {
                ActionSpec::Salesforce(SalesforceSpec::CreateRecord {
                    object: o,
                    external_id_field,
                    link: true,
                    ..
                }) if o == object => {
                    let value = fields.get(external_id_field)?.as_str()?;
                    let (incident, _) = value.rsplit_once(':')?;
                    // The id becomes a store key and an API path: what cannot be one is not ours.
                    let ours = crate::pagerduty::webhook::is_pagerduty_id(incident)
                        && external_id(incident, &rule.name) == value;
                    ours.then(|| (IncidentId::from(incident), rule.name.as_str()))
                }
                _ => None,
            })
        })
    }

    /// The fields of `object` in which link-making `create_record` rules write their external id
    /// ([`Self::created_by`] reads them back), sorted, each once: what a record must be read for
    /// to tell whether the bridge created it.
    pub fn creation_id_fields(&self, object: &ObjectName) -> Vec<String> {
        let rules = self.rulesets.iter().filter(|set| set.enabled).flat_map(|set| &set.rules);
        let mut fields: Vec<String> = rules
            .filter(|r| r.direction == Direction::PagerdutyToSalesforce)
            .flat_map(|rule| &rule.actions)
            .filter_map(|action| match action {
                ActionSpec::Salesforce(SalesforceSpec::CreateRecord {
                    object: o,
                    external_id_field,
                    link: true,
                    ..
                }) if o == object => Some(external_id_field.clone()),
                _ => None,
            })
            .collect();
        fields.sort();
        fields.dedup();
        fields
    }

    /// `of` each enabled rule of `direction` on `object`, sorted, each field once.
    fn fields_of(&self, direction: Direction, object: &ObjectName, of: impl Fn(&Rule) -> Vec<String>) -> Vec<String> {
        let rules = self.rulesets.iter().filter(|set| set.enabled).flat_map(|set| &set.rules);
        let mut fields: Vec<String> =
            rules.filter(|r| r.direction == direction && r.object == *object).flat_map(of).collect();
        fields.sort();
        fields.dedup();
        fields
    }
}

/// The field a condition compares with its old value (`changed`, `changed_to`, `changed_from`,
/// `old.FIELD`), if it does.
fn compared_with_old(c: &Condition) -> Option<&String> {
    match &c.field {
        Field::Salesforce { path, old }
            if *old || matches!(c.operator, Operator::Changed | Operator::ChangedTo | Operator::ChangedFrom) =>
        {
            path.first()
        }
        _ => None,
    }
}

/// False when the incident's facts alone decide the rule: it is skipped before its conditions
/// (new objects only, loop marker), or one PagerDuty condition settles it (a failing one for
/// `all`, a holding one for `any`). The same checks as [`evaluate_incident_rule`].
fn outcome_open(rule: &Rule, inc: &IncidentEvent) -> bool {
    if rule.applies_to == AppliesTo::NewOnly && !inc.is_new {
        return false;
    }
    if own_text(inc) {
        return false;
    }
    let subject = Subject::Incident(inc, None);
    !rule.conditions.iter().filter(|c| matches!(c.field, Field::Pagerduty(_) | Field::PagerdutyCustomField(_))).any(
        |c| {
            let (matched, _, _) = check(c, &subject, false);
            match rule.match_mode {
                MatchMode::All => !matched,
                MatchMode::Any => matched,
            }
        },
    )
}

fn describe(event: &Event) -> String {
    match event {
        Event::Record(r) => format!(
            "{} {} {} ({} linked incident(s))",
            r.object,
            r.id,
            if r.is_new { "insert" } else { "update" },
            r.linked_incidents.len()
        ),
        Event::Incident(e) => {
            format!("{} on incident {} ({} linked record(s))", e.event_type, e.incident.id, e.linked_records.len())
        }
    }
}

fn evaluate_rule<'e>(
    rule: &'e Rule,
    event: &'e Event,
    ex: &mut RuleExplanation,
    out: &mut Vec<Planned<'e>>,
    explain: bool,
) -> Result<(), SkipReason> {
    match (rule.direction, event) {
        (Direction::SalesforceToPagerduty, Event::Record(rec)) => evaluate_record_rule(rule, rec, ex, out, explain),
        (Direction::PagerdutyToSalesforce, Event::Incident(inc)) => evaluate_incident_rule(rule, inc, ex, out, explain),
        _ => Err(SkipReason::OtherDirection),
    }
}

fn evaluate_record_rule<'e>(
    rule: &'e Rule,
    rec: &'e RecordEvent,
    ex: &mut RuleExplanation,
    out: &mut Vec<Planned<'e>>,
    explain: bool,
) -> Result<(), SkipReason> {
    if rule.object != rec.object {
        return Err(SkipReason::OtherObject { object: rule.object.clone() });
    }
    if rule.applies_to == AppliesTo::NewOnly && !rec.is_new {
        return Err(SkipReason::NotNew);
    }
    // A comment the bridge wrote from an incident note must not go back as a note.
    if rec.object.is_case_comment()
        && let Some(Value::String(body)) = lookup(&rec.new, &["CommentBody".to_string()])
        && loop_guard::is_own_case_comment(body)
    {
        return Err(SkipReason::LoopPrevention { marker: loop_guard::PAGERDUTY_MARKER.into() });
    }
    let subject = Subject::Record(rec);
    if !check_conditions(rule, &subject, None, explain.then_some(&mut ex.conditions)) {
        return Err(SkipReason::ConditionsNotMet);
    }
    let ctx = Context::Record(rec);
    for spec in &rule.actions {
        let before = out.len();
        let note = plan_record_action(rule, spec, rec, &ctx, out);
        ex.actions.push(ActionNote { action: spec.name(), planned: out.len() - before, note });
    }
    finish(ex)
}

/// Whether the event's note or status update is one the bridge wrote (its marker): the second
/// line of defence behind the agent check ([`crate::handler::echo`]).
fn own_text(inc: &IncidentEvent) -> bool {
    [&inc.note, &inc.status_update].into_iter().any(|text| text.as_deref().is_some_and(loop_guard::is_own_note))
}

fn evaluate_incident_rule<'e>(
    rule: &'e Rule,
    inc: &'e IncidentEvent,
    ex: &mut RuleExplanation,
    out: &mut Vec<Planned<'e>>,
    explain: bool,
) -> Result<(), SkipReason> {
    if rule.applies_to == AppliesTo::NewOnly && !inc.is_new {
        return Err(SkipReason::NotNew);
    }
    // A note (or status update) the bridge wrote from Salesforce must not come back as a comment.
    if own_text(inc) {
        return Err(SkipReason::LoopPrevention { marker: loop_guard::SALESFORCE_MARKER.into() });
    }
    let targets = inc.linked_records.iter().filter(|r| r.object == rule.object);
    let per_record =
        targets.clone().next().is_some() && rule.conditions.iter().any(|c| matches!(c.field, Field::Salesforce { .. }));
    // Salesforce-field conditions are checked against each linked record; the rule acts on
    // those that match. Otherwise the conditions are checked once and it acts on all of them.
    let matched: Vec<&LinkedRecord> = if per_record {
        targets
            .filter(|r| {
                check_conditions(
                    rule,
                    &Subject::Incident(inc, Some(r)),
                    Some(&r.id),
                    explain.then_some(&mut ex.conditions),
                )
            })
            .collect()
    } else if check_conditions(rule, &Subject::Incident(inc, None), None, explain.then_some(&mut ex.conditions)) {
        targets.collect()
    } else {
        return Err(SkipReason::ConditionsNotMet);
    };
    if per_record && matched.is_empty() {
        return Err(SkipReason::ConditionsNotMet);
    }
    let ctx = Context::Incident(inc);
    for spec in &rule.actions {
        let before = out.len();
        let note = plan_incident_action(rule, spec, inc, &matched, &ctx, out);
        ex.actions.push(ActionNote { action: spec.name(), planned: out.len() - before, note });
    }
    finish(ex)
}

/// A rule whose conditions held but planned nothing is reported as skipped, with the reason.
fn finish(ex: &RuleExplanation) -> Result<(), SkipReason> {
    if ex.actions.iter().any(|a| a.planned > 0) {
        Ok(())
    } else if ex.actions.iter().any(|a| a.note.as_deref().is_some_and(|n| n.starts_with("no linked"))) {
        Err(SkipReason::NoLink)
    } else {
        Err(SkipReason::NothingToDo)
    }
}

fn plan_record_action<'e>(
    rule: &'e Rule,
    spec: &'e ActionSpec,
    rec: &'e RecordEvent,
    ctx: &Context<'_>,
    out: &mut Vec<Planned<'e>>,
) -> Option<Cow<'static, str>> {
    // Validation keeps Salesforce actions out of salesforce_to_pagerduty rules.
    let ActionSpec::Pagerduty(spec) = spec else { return Some("not a PagerDuty action".into()) };
    if let PagerdutySpec::CreateIncident { service_id, escalation_policy_id, urgency, priority, title, body } = spec {
        if !rec.linked_incidents.is_empty() {
            return Some("an incident is already linked; not creating another".into());
        }
        let fields: Vec<String> = title
            .fields
            .iter()
            .filter_map(|p| lookup(&rec.new, p).map(value_text))
            .filter(|t| !t.trim().is_empty())
            .collect();
        let mut text = format!("{}{}", title.prefix, fields.join(" - "));
        if text.trim().is_empty() {
            text = format!("Salesforce {} {}", rec.object, rec.id);
        }
        out.push(Planned::Action(Action::Pagerduty(PagerdutyAction::CreateIncident {
            record: RecordRef { object: rec.object.clone(), id: rec.id.as_str().into() },
            service_id: service_id.clone(),
            escalation_policy_id: escalation_policy_id.clone(),
            urgency: *urgency,
            priority: priority.clone(),
            title: truncate_chars(&text, MAX_TITLE_CHARS).to_string(),
            body: body.as_ref().map(|b| b.render(ctx)),
            incident_key: incident_key(rec.object.as_str(), &rec.id, &rule.name),
        })));
        return None;
    }
    if rec.linked_incidents.is_empty() {
        return Some("no linked incident".into());
    }
    for incident in &rec.linked_incidents {
        let incident_id = IncidentId::from(incident.as_str());
        let action = match spec {
            PagerdutySpec::Acknowledge => PagerdutyAction::Acknowledge { incident_id },
            // The resolution note comes back as an `incident.annotated` webhook like any note.
            PagerdutySpec::Resolve { resolution } => PagerdutyAction::Resolve {
                incident_id,
                resolution: resolution
                    .as_ref()
                    .map(|t| t.render(ctx))
                    .filter(|t| !t.trim().is_empty())
                    .map(marked_note),
            },
            PagerdutySpec::SetPriority { priority } => {
                PagerdutyAction::SetPriority { incident_id, priority: priority.clone() }
            }
            PagerdutySpec::SetUrgency { urgency } => PagerdutyAction::SetUrgency { incident_id, urgency: *urgency },
            PagerdutySpec::RunIncidentWorkflow { workflow_id } => {
                PagerdutyAction::RunIncidentWorkflow { incident_id, workflow_id: workflow_id.clone() }
            }
            PagerdutySpec::RunAutomationAction { action_id } => {
                PagerdutyAction::RunAutomationAction { incident_id, action_id: action_id.clone() }
            }
            PagerdutySpec::Reassign { user_ids, escalation_policy_id } => PagerdutyAction::Reassign {
                incident_id,
                user_ids: user_ids.clone(),
                escalation_policy_id: escalation_policy_id.clone(),
            },
            PagerdutySpec::AddResponders { user_ids, escalation_policy_ids, message } => {
                PagerdutyAction::AddResponders {
                    incident_id,
                    user_ids: user_ids.clone(),
                    escalation_policy_ids: escalation_policy_ids.clone(),
                    message: message.as_ref().map(|t| t.render(ctx)),
                }
            }
            PagerdutySpec::AddNote { content } => {
                PagerdutyAction::AddNote { incident_id, content: marked_note(content.render(ctx)) }
            }
            PagerdutySpec::PublishStatusUpdate { message, subject, html_message } => {
                let text = message.render(ctx);
                if text.trim().is_empty() {
                    return Some("status update message rendered empty; nothing to publish".into());
                }
                // Marked as a note is: a P→S rule copying status updates must not copy it back.
                PagerdutyAction::PublishStatusUpdate {
                    incident_id,
                    message: marked_note(text),
                    subject: subject.as_ref().map(|t| t.render(ctx)),
                    html_message: html_message.as_ref().map(|t| t.render(ctx)),
                }
            }
            PagerdutySpec::SetCustomFields { fields } => {
                PagerdutyAction::SetCustomFields { incident_id, fields: custom_field_values(fields, ctx) }
            }
            // Planned above, before the loop over linked incidents.
            PagerdutySpec::CreateIncident { .. } => continue,
        };
        out.push(Planned::Action(action.into()));
    }
    None
}

fn plan_incident_action<'e>(
    rule: &'e Rule,
    spec: &'e ActionSpec,
    inc: &'e IncidentEvent,
    matched: &[&'e LinkedRecord],
    ctx: &Context<'_>,
    out: &mut Vec<Planned<'e>>,
) -> Option<Cow<'static, str>> {
    // Validation keeps PagerDuty actions out of pagerduty_to_salesforce rules.
    let ActionSpec::Salesforce(spec) = spec else { return Some("not a Salesforce action".into()) };
    match spec {
        SalesforceSpec::SetFields { fields } => {
            if matched.is_empty() {
                return Some("no linked record of the rule's object".into());
            }
            for r in matched {
                let fields = fields
                    .iter()
                    .map(|(k, v)| {
                        let value = match v {
                            FieldValue::Literal(v) => Cow::Borrowed(v),
                            FieldValue::Template(t) => Cow::Owned(Value::String(t.render(ctx))),
                        };
                        (k.as_str(), value)
                    })
                    .collect();
                out.push(Planned::SetFields { record: RecordKey { object: &r.object, id: &r.id }, fields });
            }
            None
        }
        SalesforceSpec::AddCaseComment { body } => {
            if matched.is_empty() {
                return Some("no linked Case".into());
            }
            // Rendered after the marker: a short comment (nearly all) is then ready as it is.
            let mut marked = String::with_capacity(loop_guard::PAGERDUTY_PREFIX.len() + body.source().len() + 32);
            marked.push_str(loop_guard::PAGERDUTY_PREFIX);
            body.render_into(ctx, &mut marked);
            let text = &marked[loop_guard::PAGERDUTY_PREFIX.len()..];
            if text.trim().is_empty() {
                return Some("comment body rendered empty; nothing to add".into());
            }
            let parts = case_comment::planned_parts(marked);
            let (first, last) = matched.split_at(matched.len() - 1);
            for r in first {
                out.extend(parts.iter().map(|part| Planned::CaseComment { case_id: &r.id, body: part.clone() }));
            }
            out.extend(parts.into_iter().map(|body| Planned::CaseComment { case_id: &last[0].id, body }));
            None
        }
        SalesforceSpec::CreateRecord { object, fields, external_id_field, link } => {
            if let Some(existing) = inc.linked_records.iter().find(|r| r.object == *object) {
                return Some(format!("a {object} is already linked ({}); not creating another", existing.id).into());
            }
            let external_id = external_id(&inc.incident.id, &rule.name);
            let mut values = render_fields(fields, ctx);
            values.insert(external_id_field.clone(), Value::String(external_id.clone()));
            out.push(Planned::Action(Action::Salesforce(SalesforceAction::CreateRecord {
                object: object.clone(),
                fields: values,
                external_id_field: external_id_field.clone(),
                external_id,
                link: *link,
                incident_id: inc.incident.id.as_str().into(),
            })));
            None
        }
    }
}

fn render_fields(fields: &[(String, FieldValue)], ctx: &Context<'_>) -> Map<String, Value> {
    fields
        .iter()
        .map(|(k, v)| {
            let value = match v {
                FieldValue::Literal(v) => v.clone(),
                FieldValue::Template(t) => Value::String(t.render(ctx)),
            };
            (k.clone(), value)
        })
        .collect()
}

/// As [`render_fields`], but a template that is one record field keeps the field's JSON value:
/// PagerDuty refuses text for an integer, float or boolean custom field.
fn custom_field_values(fields: &[(String, FieldValue)], ctx: &Context<'_>) -> Map<String, Value> {
    fields
        .iter()
        .map(|(k, v)| {
            let value = match v {
                FieldValue::Literal(v) => v.clone(),
                FieldValue::Template(t) => t.whole_value(ctx).cloned().unwrap_or_else(|| Value::String(t.render(ctx))),
            };
            (k.clone(), value)
        })
        .collect()
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..8])
}

/// `sfdc:<object>:<record id>:<hash of rule>`: the same record and rule always give the same
/// key, so PagerDuty de-duplicates a retried create (at most 255 characters).
pub fn incident_key(object: &str, record_id: &str, rule: &str) -> String {
    let key = format!("{INCIDENT_KEY_PREFIX}{object}:{record_id}:{}", short_hash(rule));
    truncate_chars(&key, 255).to_string()
}

/// Every incident key the bridge derives starts with this (it tells our incidents from others').
pub const INCIDENT_KEY_PREFIX: &str = "sfdc:";

/// `<incident id>:<hash of rule>`: the external id a created record carries.
pub fn external_id(incident_id: &str, rule: &str) -> String {
    format!("{incident_id}:{}", short_hash(rule))
}

/// What the conditions are checked against.
enum Subject<'a> {
    Record(&'a RecordEvent),
    Incident(&'a IncidentEvent, Option<&'a LinkedRecord>),
}

/// What a field held.
enum Seen<'a> {
    Absent,
    Text(&'a str),
    Json(&'a Value),
}

impl Seen<'_> {
    fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Seen::Absent => None,
            Seen::Text(t) => Some(Cow::Borrowed(t)),
            Seen::Json(Value::String(s)) => Some(Cow::Borrowed(s)),
            Seen::Json(v) => Some(Cow::Owned(value_text(v))),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Seen::Absent => Value::Null,
            Seen::Text(t) => Value::String((*t).to_string()),
            Seen::Json(v) => (*v).clone(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Seen::Absent => true,
            Seen::Text(t) => t.trim().is_empty(),
            Seen::Json(Value::String(s)) => s.trim().is_empty(),
            Seen::Json(Value::Array(a)) => a.is_empty(),
            Seen::Json(Value::Null) => true,
            Seen::Json(_) => false,
        }
    }
}

fn resolve<'a>(field: &Field, subject: &Subject<'a>) -> Seen<'a> {
    match (field, subject) {
        (Field::Salesforce { path, old }, Subject::Record(rec)) => {
            let map = if *old { rec.old.as_ref() } else { Some(&rec.new) };
            map.and_then(|m| lookup(m, path)).map_or(Seen::Absent, Seen::Json)
        }
        (Field::Salesforce { path, .. }, Subject::Incident(_, Some(r))) => {
            lookup(&r.fields, path).map_or(Seen::Absent, Seen::Json)
        }
        (Field::Pagerduty(f), Subject::Incident(e, _)) => {
            let (i, a) = (&e.incident, &e.activity);
            let text: Option<&str> = match f {
                PdField::EventType => Some(&e.event_type),
                PdField::Title => Some(&i.title),
                PdField::Status => Some(&i.status),
                PdField::Service => Some(&i.service_id),
                PdField::ServiceName => Some(&i.service_name),
                PdField::EscalationPolicy => Some(&i.escalation_policy_id),
                PdField::EscalationPolicyName => Some(&i.escalation_policy_name),
                PdField::Priority => i.priority.as_deref(),
                PdField::Urgency => Some(&i.urgency),
                PdField::Note => e.note.as_deref(),
                PdField::StatusUpdate => e.status_update.as_deref(),
                PdField::Assignees => Some(&i.assignees),
                PdField::Teams => Some(&i.teams),
                PdField::IncidentType => Some(&i.incident_type),
                PdField::ConferenceUrl => Some(&i.conference_url),
                PdField::ConferenceNumber => Some(&i.conference_number),
                PdField::Agent => e.agent.as_deref(),
                activity => a.fact(*activity),
            };
            text.map_or(Seen::Absent, Seen::Text)
        }
        (Field::PagerdutyCustomField(name), Subject::Incident(e, _)) => {
            e.incident.custom_fields.get(name).map_or(Seen::Absent, Seen::Json)
        }
        _ => Seen::Absent,
    }
}

/// `trigger`, `acknowledge`, ... for each of PagerDuty's v3 incident event types (several
/// types share one: `responder`, `workflow`, `task`, `automation_action`); `custom` for an
/// `incident.*` type PagerDuty adds later.
pub fn event_category(event_type: &str) -> &'static str {
    match event_type {
        "incident.triggered" => "trigger",
        "incident.acknowledged" => "acknowledge",
        "incident.resolved" => "resolve",
        "incident.reassigned" => "assign",
        "incident.escalated" => "escalate",
        "incident.delegated" => "delegate",
        "incident.unacknowledged" => "unacknowledge",
        "incident.reopened" => "reopen",
        "incident.priority_updated" => "priority",
        "incident.annotated" => "annotate",
        "incident.status_update_published" => "status_update",
        "incident.responder.added" | "incident.responder.replied" => "responder",
        "incident.service_updated" => "service",
        "incident.incident_type.changed" => "incident_type",
        "incident.conference_bridge.updated" => "conference_bridge",
        "incident.custom_field_values.updated" => "custom_fields",
        "incident.role.assigned" => "role",
        "incident.workflow.started" | "incident.workflow.completed" => "workflow",
        t if t.starts_with("incident.action_invocation.") => "automation_action",
        t if t.starts_with("incident.task.") => "task",
        t if t.starts_with("incident.") => "custom",
        _ => "other",
    }
}

/// `log`: where to explain each condition (`None` on the handlers' fast path).
fn check_conditions(
    rule: &Rule,
    subject: &Subject<'_>,
    record: Option<&str>,
    mut log: Option<&mut Vec<ConditionCheck>>,
) -> bool {
    let mut all = true;
    let mut any = false;
    for c in &rule.conditions {
        let (matched, saw, saw_old) = check(c, subject, log.is_some());
        all &= matched;
        any |= matched;
        let Some(log) = log.as_deref_mut() else {
            // Nothing to explain: stop as soon as the outcome is decided.
            match rule.match_mode {
                MatchMode::All if !all => return false,
                MatchMode::Any if any => return true,
                _ => continue,
            }
        };
        log.push(ConditionCheck {
            record: record.map(str::to_string),
            field: c.shared_field.clone(),
            operator: c.operator,
            expected: c.expected_json.clone(),
            saw,
            saw_old,
            case_sensitive: c.case_sensitive,
            matched,
        });
    }
    match rule.match_mode {
        _ if rule.conditions.is_empty() => true,
        MatchMode::All => all,
        MatchMode::Any => any,
    }
}

/// Text comparison against an expected value already folded at load. ASCII text (nearly all
/// Salesforce picklists and ids) compares without allocating.
#[derive(Clone, Copy)]
enum TextOp {
    Eq,
    Contains,
    StartsWith,
    EndsWith,
}

fn text_cmp(op: TextOp, seen: &str, folded: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        return match op {
            TextOp::Eq => seen == folded,
            TextOp::Contains => seen.contains(folded),
            TextOp::StartsWith => seen.starts_with(folded),
            TextOp::EndsWith => seen.ends_with(folded),
        };
    }
    if !seen.is_ascii() {
        return text_cmp(op, &seen.to_lowercase(), folded, true);
    }
    let (s, e) = (seen.as_bytes(), folded.as_bytes());
    match op {
        TextOp::Eq => s.eq_ignore_ascii_case(e),
        TextOp::StartsWith => s.len() >= e.len() && s[..e.len()].eq_ignore_ascii_case(e),
        TextOp::EndsWith => s.len() >= e.len() && s[s.len() - e.len()..].eq_ignore_ascii_case(e),
        TextOp::Contains => contains_ignore_ascii_case(s, e),
    }
}

/// `folded` is lower case already: only the places where its first byte appears are compared.
fn contains_ignore_ascii_case(seen: &[u8], folded: &[u8]) -> bool {
    let Some((&first, rest)) = folded.split_first() else { return true };
    if seen.len() < folded.len() {
        return false;
    }
    (0..=seen.len() - folded.len())
        .any(|i| seen[i].to_ascii_lowercase() == first && seen[i + 1..i + folded.len()].eq_ignore_ascii_case(rest))
}

/// Text equality; for the event type, `acknowledge` style names compare with the category and
/// `incident.*` names with the raw type.
fn text_eq(c: &Condition, seen: &str, expected: &Scalar) -> bool {
    let event_type = c.field == Field::Pagerduty(PdField::EventType);
    if event_type && expected.folded == "custom" {
        // As before the other types had categories of their own: any `incident.*` type but the six.
        let first = ["trigger", "acknowledge", "resolve", "assign", "escalate", "delegate"];
        return seen.starts_with("incident.") && !first.contains(&event_category(seen));
    }
    let seen = if event_type && !expected.text.starts_with("incident.") { event_category(seen) } else { seen };
    text_cmp(TextOp::Eq, seen, &expected.folded, c.case_sensitive)
}

/// Whether the condition holds, and (when `explain`) the values it saw.
fn check(c: &Condition, subject: &Subject<'_>, explain: bool) -> (bool, Value, Option<Value>) {
    if matches!(c.operator, Operator::Changed | Operator::ChangedTo | Operator::ChangedFrom) {
        return check_change(c, subject, explain);
    }
    let seen = resolve(&c.field, subject);
    let saw = if explain { seen.to_json() } else { Value::Null };
    let text = seen.text();
    let matched = match (&c.operator, &c.expected, text.as_deref()) {
        (Operator::IsEmpty, _, _) => seen.is_empty(),
        (Operator::IsNotEmpty, _, _) => !seen.is_empty(),
        (Operator::Equals, Expected::One(e), Some(t)) => text_eq(c, t, e),
        (Operator::NotEquals, Expected::One(e), Some(t)) => !text_eq(c, t, e),
        (Operator::NotEquals, Expected::One(_), None) => true,
        (Operator::Contains, Expected::One(e), Some(t)) => text_cmp(TextOp::Contains, t, &e.folded, c.case_sensitive),
        (Operator::NotContains, Expected::One(e), Some(t)) => {
            !text_cmp(TextOp::Contains, t, &e.folded, c.case_sensitive)
        }
        (Operator::NotContains, Expected::One(_), None) => true,
        (Operator::StartsWith, Expected::One(e), Some(t)) => {
            text_cmp(TextOp::StartsWith, t, &e.folded, c.case_sensitive)
        }
        (Operator::EndsWith, Expected::One(e), Some(t)) => text_cmp(TextOp::EndsWith, t, &e.folded, c.case_sensitive),
        (Operator::Matches, Expected::Regex(re), Some(t)) => re.is_match(t),
        (Operator::In, Expected::List(l), Some(t)) => l.iter().any(|e| text_eq(c, t, e)),
        (Operator::NotIn, Expected::List(l), Some(t)) => !l.iter().any(|e| text_eq(c, t, e)),
        (Operator::NotIn, Expected::List(_), None) => true,
        (Operator::GreaterThan, Expected::One(e), Some(_)) => compare(&seen, e) == Some(std::cmp::Ordering::Greater),
        (Operator::LessThan, Expected::One(e), Some(_)) => compare(&seen, e) == Some(std::cmp::Ordering::Less),
        _ => false,
    };
    (matched, saw, None)
}

/// Numbers compare as numbers, dates as instants; anything else does not compare.
fn compare(seen: &Seen<'_>, expected: &Scalar) -> Option<std::cmp::Ordering> {
    if let Some(want) = expected.number {
        let got = match seen {
            Seen::Json(v) => as_number(v),
            Seen::Text(t) => parse_number(t),
            Seen::Absent => None,
        };
        if let Some(got) = got {
            return got.partial_cmp(&want);
        }
    }
    let want = expected.date?;
    let got = parse_datetime(&seen.text()?)?;
    Some(got.cmp(&want))
}

fn check_change(c: &Condition, subject: &Subject<'_>, explain: bool) -> (bool, Value, Option<Value>) {
    let (Field::Salesforce { path, .. }, Subject::Record(rec)) = (&c.field, subject) else {
        return (false, Value::Null, Some(Value::Null));
    };
    let new = lookup(&rec.new, path);
    let saw = if explain { new.cloned().unwrap_or(Value::Null) } else { Value::Null };
    let Some(old_map) = rec.old.as_ref() else {
        // An insert has no old values: nothing changed.
        return (false, saw, Some(Value::Null));
    };
    let old = lookup(old_map, path);
    let changed = old != new;
    let eq = |v: Option<&Value>| match (&c.expected, v) {
        (Expected::One(e), Some(v)) => text_eq(c, &value_text(v), e),
        _ => false,
    };
    let matched = match c.operator {
        Operator::Changed => changed,
        Operator::ChangedTo => changed && eq(new),
        Operator::ChangedFrom => changed && eq(old),
        _ => false,
    };
    (matched, saw, Some(if explain { old.cloned().unwrap_or(Value::Null) } else { Value::Null }))
}

fn short(v: &Value, max: usize) -> String {
    let text = match v {
        Value::Null => "∅".to_string(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.chars().count() > max { format!("{}…", truncate_chars(&text, max - 1)) } else { text }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Event: {}", self.event)?;
        let w_rule = self.rules.iter().map(|r| r.rule.chars().count()).max().unwrap_or(4).clamp(4, 40);
        let w_set = self.rules.iter().map(|r| r.ruleset.chars().count()).max().unwrap_or(7).clamp(7, 24);
        writeln!(f, "{:<w_rule$}  {:<w_set$}  RESULT", "RULE", "RULESET")?;
        for r in &self.rules {
            let result = match &r.skipped {
                None => {
                    let n: usize = r.actions.iter().map(|a| a.planned).sum();
                    format!("ran: {n} action(s)")
                }
                Some(reason) => format!("skipped: {reason}"),
            };
            writeln!(f, "{:<w_rule$}  {:<w_set$}  {result}", r.rule, r.ruleset)?;
            for c in &r.conditions {
                let expected = c.expected.as_ref().map(|e| format!(" {}", short(e, 40))).unwrap_or_default();
                let on = c.record.as_ref().map(|r| format!(" [{r}]")).unwrap_or_default();
                writeln!(
                    f,
                    "    {} {}{on} {}{expected} ({}) saw {}",
                    if c.matched { "✓" } else { "✗" },
                    c.field,
                    c.operator,
                    if c.case_sensitive { "case-sensitive" } else { "case-insensitive" },
                    match &c.saw_old {
                        Some(old) => format!("{} → {}", short(old, 30), short(&c.saw, 30)),
                        None => short(&c.saw, 60),
                    }
                )?;
            }
            for a in &r.actions {
                let note = a.note.as_ref().map(|n| format!(": {n}")).unwrap_or_default();
                writeln!(f, "    → {} planned {}{note}", a.action, a.planned)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn case_insensitive_contains_agrees_with_lowercasing_both(seen in "[a-zA-Z ]{0,24}", needle in "[a-zA-Z ]{0,4}") {
            let folded = needle.to_lowercase();
            prop_assert_eq!(
                text_cmp(TextOp::Contains, &seen, &folded, false),
                seen.to_lowercase().contains(&folded)
            );
        }
    }
}
