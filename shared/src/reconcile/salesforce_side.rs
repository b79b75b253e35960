//! The Salesforce side: records of the objects the `salesforce_to_pagerduty` rules watch whose
//! `SystemModstamp` is in the window (SOQL, in batches through `nextRecordsUrl`), each compared
//! with its linked incidents as those rules would set them.
//!
//! A run sees a record's current values, not the change that led to them. The old values of
//! the synthetic change are what the bridge last saw of the fields its rules compare with old
//! values ([`crate::store::Seen`], kept on the record's subject by every record change it
//! handled), so a `changed_to` holds only when the field changed since; a field the bridge never
//! saw is "changed from unknown" (`changed_to` holds when it holds the value now, `changed_from`
//! never). A record created in its last modification is an insert, as Outbound Messages tell
//! it, unless it is linked already (its insert was seen).

use crate::salesforce::ObjectName;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde_json::{Map, Value};

use super::cursor::{Window, repair_time};
use super::repair::{Candidate, Compare, Compared, Comparison, Found, Synthetic};
use crate::handler::context::Context;
use crate::handler::echo;
use crate::handler::sfdc_to_pd::{self, Change};
use crate::pagerduty::client::Incident;
use crate::rules::{Action, Effect, PagerdutyAction, Rules};
use crate::salesforce::time::parse_datetime;
use crate::store::{Side, Subject, SubjectState};

/// The objects the enabled `salesforce_to_pagerduty` rules watch, each once, in document order.
pub fn watched_objects(rules: &Rules) -> Vec<ObjectName> {
    let mut out: Vec<ObjectName> = Vec::new();
    for rule in rules.rulesets.iter().filter(|s| s.enabled).flat_map(|s| &s.rules) {
        if rule.direction == crate::model::Direction::SalesforceToPagerduty && !out.contains(&rule.object) {
            out.push(rule.object.clone());
        }
    }
    out
}

/// The SOQL of one object's changes in the window, oldest first (a Case Comment with its Case).
pub fn changes_query(object: &ObjectName, window: &Window) -> String {
    let parent = if object.is_case_comment() { ", ParentId" } else { "" };
    format!(
        "SELECT Id, SystemModstamp{parent} FROM {object} WHERE SystemModstamp >= {} AND SystemModstamp <= {} ORDER BY SystemModstamp ASC",
        crate::salesforce::time::soql_datetime(window.since),
        crate::salesforce::time::soql_datetime(window.until),
    )
}

/// A listed record whose `SystemModstamp` is in the window.
pub struct RecordChange {
    pub object: ObjectName,
    pub id: String,
    /// The Case whose order a Case Comment keeps (and whose incidents it acts on).
    pub parent_id: Option<String>,
    pub changed_at: DateTime<Utc>,
}

impl RecordChange {
    /// Reads a listed row (`Id`, `SystemModstamp`, a comment's `ParentId`).
    pub fn of(object: &ObjectName, row: &Map<String, Value>) -> Option<Self> {
        Some(Self {
            object: object.clone(),
            id: row.get("Id")?.as_str()?.to_string(),
            parent_id: row.get("ParentId").and_then(Value::as_str).map(str::to_string),
            changed_at: parse_datetime(row.get("SystemModstamp")?.as_str()?)?,
        })
    }

    /// The synthetic event's id: the record and its `SystemModstamp` (the same in every run).
    pub fn event_id(&self) -> String {
        super::repair::event_id(&format!("sf-{}-{}-{}", self.object, self.id, self.changed_at.timestamp()))
    }

    pub fn candidate(&self) -> Candidate {
        Candidate {
            side: Side::Salesforce,
            // As the pipeline orders it: a Case Comment keeps its Case's order.
            subject: Subject::Record(self.parent_id.clone().unwrap_or_else(|| self.id.clone())),
            event_id: self.event_id(),
            changed_at: self.changed_at,
            evidence: Subject::Record(self.id.clone()),
            // A record's changes and the marks they leave are stamped in the same whole seconds
            // (`SystemModstamp`); two changes in one second are told apart by its Seen.
            own_mark: None,
        }
    }
}

/// Compares one record change with its linked incidents.
pub struct CompareRecord<'a> {
    pub change: &'a RecordChange,
    pub correlation_id: &'a str,
    /// Linked incidents (read before the comparison; at most this many incident reads).
    pub linked: Vec<String>,
}

impl Compare for CompareRecord<'_> {
    fn read_cost(&self) -> u32 {
        1 + self.linked.len() as u32
    }

    fn compare<'a>(&'a mut self, ctx: &'a Context, state: &'a SubjectState) -> Compared<'a> {
        async move {
            let c = self.change;
            crate::telemetry::metrics::api_calls("salesforce", 1);
            let new = match ctx.salesforce.get_record(c.object.as_str(), &c.id, None).await {
                Ok(fields) => fields,
                Err(crate::salesforce::error::SalesforceError::Api { status: 404, .. }) => return Ok(None),
                Err(err) => return Err(format!("reading {} {}: {err}", c.object, c.id)),
            };
            // Changed again since it was listed: that change is the next run's.
            let stamp = new.get("SystemModstamp").and_then(Value::as_str).and_then(parse_datetime);
            if stamp != Some(c.changed_at) {
                return Ok(None);
            }
            // Created in its last modification (whole seconds: or changed in the second it was
            // created), and not linked yet: a linked record's insert was seen. The links of a
            // Case Comment are its Case's, which say nothing about the comment's own insert.
            let linked_itself = c.parent_id.is_none() && !self.linked.is_empty();
            let is_new = !linked_itself
                && matches!((new.get("CreatedDate"), new.get("LastModifiedDate")), (Some(a), Some(b)) if a == b);
            // Old values: what the bridge last saw of the fields its rules compare with them (an
            // earlier change), else unknown (null: "changed from unknown").
            // What the bridge saw of the record itself (a Case Comment's subject is its Case,
            // whose Seen says nothing of the comment).
            let seen = state.seen.as_ref().filter(|_| c.parent_id.is_none());
            // The bridge handled this change, or a later one: it was delivered; what is left to
            // compare is a change it never saw before it (a gap), as the lost change.
            if let Some(seen) = seen.filter(|s| s.at >= c.changed_at) {
                return match (unseen_in_its_second(seen, &new, c.changed_at), seen.gap.as_ref()) {
                    // With the gap kept before it, when its fields still hold (merged).
                    (Some(gap), _) => self.compare_gap(ctx, new, &gap, Some(seen)).await,
                    (None, Some(gap)) => self.compare_gap(ctx, new, gap, None).await,
                    (None, None) => Ok(None),
                };
            }
            let seen = seen.map(|s| &s.fields);
            let old = (!is_new).then(|| {
                new.keys()
                    .map(|k| (k.clone(), seen.and_then(|s| s.get(k)).cloned().unwrap_or(Value::Null)))
                    .collect::<Map<String, Value>>()
            });
            let change = Change {
                object: c.object.clone(),
                id: c.id.clone().into(),
                is_new,
                new,
                old,
                changed_by: None,
                occurred_at: repair_time(c.changed_at),
                dedupe_key: Some(c.event_id()),
            };
            // The bridge's own write, last: nothing to compare, unless the bridge saw the record
            // before it (a person's change between then and the bridge's write hides under it:
            // compared with what the bridge saw).
            let rules = ctx.rules.current().await.map_err(|e| format!("rules unavailable: {e}"))?;
            let mut change = change;
            if echo::salesforce_echo(ctx.salesforce_port(), &change).is_some() {
                if seen.is_none() {
                    return Ok(None);
                }
                // What the comparison finds is the person's, not the bridge's: the pipeline must
                // not take the synthetic change for an echo (a Case Comment the bridge wrote is
                // still one, by its marker). A field the bridge's rules write is its own change
                // (unchanged, for the rules) when it set the field since it saw the record (its
                // mark, kept on the incident it acted for); else a person changed it, the
                // bridge's write went to other fields (a Case closed, then reassigned).
                change.new.remove("LastModifiedById");
                let set_since_seen = match state.seen.as_ref() {
                    Some(seen) => bridge_set_after(ctx, &self.linked, &c.id, &|_| seen.at, None).await?,
                    None => vec![],
                };
                if let Some(old) = change.old.as_mut() {
                    for field in rules.rules.fields_the_bridge_sets(&c.object) {
                        if let Some(value) = change.new.get(&field)
                            && (set_since_seen.contains(&field) || never_seen(state.seen.as_ref(), &field))
                        {
                            old.insert(field, value.clone());
                        }
                    }
                }
            }
            // A change the bridge never saw before the last one it did (a gap), whose fields
            // still hold what it set: its old values too, its actions compared as of its start.
            let gap = match state.seen.as_ref().filter(|_| c.parent_id.is_none()) {
                Some(seen) => self.merge_gap(ctx, &rules.rules, &mut change, seen).await?,
                None => Merged::Nothing,
            };
            self.found(ctx, &rules.rules, change, c.changed_at, gap).await
        }
        .boxed()
    }
}

/// Whether the bridge never saw `field` of the record, so that the value there may be its own
/// write from before: not when it created the record and saw it since (its marks tell its writes).
fn never_seen(seen: Option<&crate::store::Seen>, field: &str) -> bool {
    seen.is_none_or(|s| !s.fields.contains_key(field) && !s.created)
}

impl CompareRecord<'_> {
    /// The rules' plan for `change`, compared with the linked incidents as they are now.
    /// `gap`: the actions the lost change of a gap adds, compared as of its start.
    async fn found(
        &self,
        ctx: &Context,
        rules: &Rules,
        change: Change,
        changed_at: DateTime<Utc>,
        gap: Merged,
    ) -> Result<Option<Found>, String> {
        let input = sfdc_to_pd::record_event(&change, self.linked.clone());
        let plan = rules.plan(&input).plan.0;
        let mut incidents: Vec<Incident> = Vec::new();
        for id in &self.linked {
            crate::telemetry::metrics::api_calls("pagerduty", 1);
            match ctx.pagerduty.get_incident(id).await {
                Ok(incident) => incidents.push(incident),
                // Gone at PagerDuty (deleted with its service): nothing of it to compare.
                Err(err) if err.status().is_some_and(|s| s.as_u16() == 404) => {
                    tracing::info!(incident = %id, record = %change.id, "a linked incident is gone (404): not compared");
                }
                Err(err) => return Err(format!("reading incident {id}: {err}")),
            }
        }
        let since = |p: &crate::rules::PlannedAction| match &gap {
            Merged::Into(keys, after) if keys.contains(&crate::handler::salesforce_exec::action_key(p)) => *after,
            _ => changed_at,
        };
        let mut comparison = compare_plan(&plan, &incidents, &since);
        if let Merged::Refused(actions, after) = gap {
            // Compared as of the gap's start; what the incidents show already is no difference.
            let refused = compare_plan(&actions, &incidents, &|_| after);
            for planned in refused.todo.into_iter().chain(refused.newer) {
                let line = format!("{} {} (a lost change before it)", planned.action.name(), planned.action.target());
                comparison.line(&planned, line);
                comparison.unmerged.push(planned);
            }
        }
        let accepted = change.accepted(self.correlation_id, ctx.clock.now());
        Ok(Some(Found { synthetic: Synthetic::Record(Box::new(change)), accepted, comparison, own_mark: None }))
    }

    /// The change the bridge never saw between two it did (see [`crate::store::Gap`]): the
    /// record as it was before the delivered change (`gap.to` over what it holds now) from
    /// `gap.from`, less the fields the bridge set itself since (its own writes, not a lost
    /// change). A responder's change after `gap.after` is newer: the lost change's moment is
    /// not known closer than that, so such a difference is reported, not written.
    /// `kept`: the Seen whose own gap (an earlier one) is compared with it.
    async fn compare_gap(
        &self,
        ctx: &Context,
        mut new: Map<String, Value>,
        gap: &crate::store::Gap,
        kept: Option<&crate::store::Seen>,
    ) -> Result<Option<Found>, String> {
        let c = self.change;
        let own = bridge_set_after(ctx, &self.linked, &c.id, &|f| gap.start(f), Some(gap.before)).await?;
        let lost: Vec<&String> = gap.from.keys().filter(|f| !own.contains(f)).collect();
        if lost.is_empty() {
            return Ok(None);
        }
        // The lost change is taken for a person's: the record's last writer says nothing of it.
        new.remove("LastModifiedById");
        for f in &lost {
            if let Some(then) = gap.to.get(*f) {
                new.insert((*f).clone(), then.clone());
            }
        }
        let mut old = new.clone();
        for f in &lost {
            old.insert((*f).clone(), gap.from[*f].clone());
        }
        let mut change = Change {
            object: c.object.clone(),
            id: c.id.clone().into(),
            is_new: false,
            new,
            old: Some(old),
            changed_by: None,
            // Ordered at the gap's end: the lost change happened before it, and its delivery, if
            // it still comes, finds what the repair set newer than itself (stale, not applied
            // twice). It is compared as of the gap's start (`found`).
            occurred_at: repair_time(gap.before),
            dedupe_key: Some(c.event_id()),
        };
        let rules = ctx.rules.current().await.map_err(|e| format!("rules unavailable: {e}"))?;
        let earlier = match kept {
            Some(seen) => self.merge_gap(ctx, &rules.rules, &mut change, seen).await?,
            None => Merged::Nothing,
        };
        // Compared as of the earliest start of the fields compared (a field's own, when the gap
        // was split or kept two lost changes).
        let since = lost.iter().map(|f| gap.start(f)).min().unwrap_or(gap.after);
        self.found(ctx, &rules.rules, change, since, earlier).await
    }

    /// Puts the old values of the gap `seen` keeps into `change` (its fields that still hold
    /// what the lost change set, and that the bridge did not set itself since), and says which
    /// actions that adds, compared as of the gap's start; or, when it would take away an action
    /// of the change alone, leaves `change` as it is and gives the gap's actions to report.
    async fn merge_gap(
        &self,
        ctx: &Context,
        rules: &Rules,
        change: &mut Change,
        seen: &crate::store::Seen,
    ) -> Result<Merged, String> {
        let (Some(gap), Some(old)) = (seen.gap.as_ref(), change.old.as_ref()) else { return Ok(Merged::Nothing) };
        // Still as the lost change left them, when the bridge last saw the record and now (a
        // field changed again since is the later change's: the gap's value is not its old one).
        let holding: Vec<&String> = gap
            .from
            .keys()
            .filter(|f| seen.fields.get(*f) == gap.to.get(*f) && change.new.get(*f) == gap.to.get(*f))
            .collect();
        if holding.is_empty() {
            return Ok(Merged::Nothing);
        }
        let own = bridge_set_after(ctx, &self.linked, &self.change.id, &|f| gap.start(f), Some(gap.before)).await?;
        let mut with_gap = old.clone();
        for f in holding.into_iter().filter(|f| !own.contains(f)) {
            with_gap.insert(f.clone(), gap.from[f].clone());
        }
        let plan = |change: &Change| {
            let input = sfdc_to_pd::record_event(change, self.linked.clone());
            rules.plan(&input).plan.0
        };
        let key = crate::handler::salesforce_exec::action_key;
        let without: Vec<String> = plan(change).iter().map(key).collect();
        let previous = change.old.replace(with_gap);
        let with = plan(change);
        let added: Vec<_> = with.into_iter().filter(|p| !without.contains(&key(p))).collect();
        if added.is_empty() {
            change.old = previous;
            return Ok(Merged::Nothing);
        }
        // Merged only to add what the lost change did: an action of the change alone stays.
        let keys: Vec<String> = added.iter().map(key).collect();
        let kept: Vec<String> = plan(change).iter().map(key).collect();
        if without.iter().any(|k| !kept.contains(k)) {
            change.old = previous;
            return Ok(Merged::Refused(added, gap.after));
        }
        Ok(Merged::Into(keys, gap.after))
    }
}

/// What merging a kept gap into a later change did (see `CompareRecord::merge_gap`).
enum Merged {
    Nothing,
    /// The keys of the actions the gap adds, compared as of its start.
    Into(Vec<String>, DateTime<Utc>),
    /// Not merged (it would take an action of the change away): the gap's actions, from its
    /// start, reported where they differ.
    Refused(Vec<crate::rules::PlannedAction>, DateTime<Utc>),
}

/// Salesforce stamps whole seconds: a change in the second of the one the bridge saw has its
/// stamp. The fields whose value now is not the one the bridge saw changed after it, unseen:
/// as a gap from what it saw.
fn unseen_in_its_second(
    seen: &crate::store::Seen,
    record: &Map<String, Value>,
    changed_at: DateTime<Utc>,
) -> Option<crate::store::Gap> {
    let mut gap = crate::store::Gap { after: seen.at, before: changed_at, ..Default::default() };
    for (f, was) in &seen.fields {
        let now = record.get(f).cloned().unwrap_or(Value::Null);
        if !super::repair::same_value(Some(&now), was) {
            gap.from.insert(f.clone(), was.clone());
            gap.to.insert(f.clone(), now);
        }
    }
    (!gap.from.is_empty()).then_some(gap)
}

/// The fields of `record` the bridge set from its linked incidents after `since` of the field
/// (their marks are newer), and not after `until` when given (a write after a gap cannot be
/// what the gap shows): one store read per linked incident.
async fn bridge_set_after(
    ctx: &Context,
    linked: &[String],
    record: &str,
    since: &(dyn Fn(&str) -> DateTime<Utc> + Sync),
    until: Option<DateTime<Utc>>,
) -> Result<Vec<String>, String> {
    let prefix = crate::rules::field_mark(record, "");
    let mut fields = Vec::new();
    for incident in linked {
        let state = ctx
            .stores
            .links
            .subject_state(&Subject::Incident(incident.clone()))
            .await
            .map_err(|e| format!("store: {e}"))?;
        for (mark, at) in state.marks {
            // `since` is a Salesforce stamp (whole seconds), the mark the event's time (to the
            // millisecond): a mark in the second `since` names was before what it showed.
            let second = crate::reconcile::cursor::whole_second(at);
            if let Some(field) = mark.strip_prefix(&prefix)
                && second > since(field)
                && until.is_none_or(|until| second <= until)
                && !fields.iter().any(|f| f == field)
            {
                fields.push(field.to_string());
            }
        }
    }
    Ok(fields)
}

/// Sorts the plan by what the linked incidents show now; a differing state of an incident
/// changed after the record's change is newer (PagerDuty's stamps: `last_status_change_at` for
/// its status, `updated_at` for the rest; whole seconds, the same second is not after).
/// `changed_at`: when the change that asks for an action happened.
fn compare_plan(
    plan: &[crate::rules::PlannedAction],
    incidents: &[Incident],
    changed_at: &dyn Fn(&crate::rules::PlannedAction) -> DateTime<Utc>,
) -> Comparison {
    let mut out = Comparison::default();
    let find = |id: &crate::pagerduty::IncidentId| incidents.iter().find(|i| *id == *i.id.as_str());
    for planned in plan {
        let changed_at = changed_at(planned);
        let after = |i: &Incident, stamp: &str| {
            i.raw.get(stamp).and_then(Value::as_str).and_then(parse_datetime).is_some_and(|at| at > changed_at)
        };
        // (in sync, changed since) for the actions a read of the incident can tell.
        let read = match &planned.action {
            Action::Pagerduty(action) => match action {
                PagerdutyAction::Acknowledge { incident_id } => find(incident_id)
                    .map(|i| (i.status.as_deref() != Some("triggered"), after(i, "last_status_change_at"))),
                PagerdutyAction::Resolve { incident_id, .. } => find(incident_id)
                    .map(|i| (i.status.as_deref() == Some("resolved"), after(i, "last_status_change_at"))),
                PagerdutyAction::SetUrgency { incident_id, urgency } => find(incident_id).map(|i| {
                    let wanted = serde_json::to_value(urgency).ok();
                    (i.urgency.as_deref() == wanted.as_ref().and_then(Value::as_str), after(i, "updated_at"))
                }),
                PagerdutyAction::SetPriority { incident_id, priority } => find(incident_id).map(|i| {
                    let same = i
                        .priority
                        .as_ref()
                        .and_then(|p| p.summary.as_deref())
                        .is_some_and(|p| p.eq_ignore_ascii_case(priority));
                    (same, after(i, "updated_at"))
                }),
                // Idempotent at PagerDuty by its incident_key: safe to repeat.
                PagerdutyAction::CreateIncident { .. } => Some((false, false)),
                _ => None,
            },
            Action::Salesforce(_) => None,
        };
        match read {
            Some((true, _)) => out.in_sync.push(planned.clone()),
            Some((false, newer)) => {
                out.line(planned, format!("{} {}", planned.action.name(), planned.action.target()));
                if newer { out.newer.push(planned.clone()) } else { out.todo.push(planned.clone()) }
            }
            // Additive, or a state PagerDuty's incident does not show (a reassignment).
            None if planned.action.effect() == Effect::State => {
                out.line(
                    planned,
                    format!("{} {} (cannot be compared)", planned.action.name(), planned.action.target()),
                );
                out.additive.push(planned.clone());
            }
            None => out.additive.push(planned.clone()),
        }
    }
    out
}
