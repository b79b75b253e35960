//! The PagerDuty side: incidents whose status changed in the window, and that are linked, each
//! compared with its linked records as the `pagerduty_to_salesforce` rules would set them.
//!
//! `GET /incidents` lists incidents *created* in its `since`/`until` range (PagerDuty's rule;
//! default a month, at most six), so the run lists those created within `incident_lookback` and
//! keeps the ones whose `last_status_change_at` is in the window. The synthetic event is the
//! webhook PagerDuty would have sent for the incident's current status (`incident.acknowledged`,
//! `incident.resolved`), its agent the user who changed it (the bridge's own changes are echoes).

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde_json::{Value, json};

use super::cursor::{Window, repair_time};
use super::repair::{Candidate, Compare, Compared, Comparison, Found, Synthetic, same_value};
use crate::handler::context::Context;
use crate::handler::{echo, pd_to_sfdc};
use crate::model::{Direction, Link};
use crate::pagerduty::WebhookEvent;
use crate::pagerduty::client::Incident;
use crate::retry::envelope::{Accepted, QueuedEvent};
use crate::rules::{Action, Effect, Event, LinkedRecord, SalesforceAction};
use crate::store::{Seen, Side, Subject, SubjectState};

/// The statuses whose changes the rules can act on (a triggered incident's change is its creation).
pub const STATUSES: &[&str] = &["acknowledged", "resolved"];

/// A listed incident whose status changed in the window, with its links.
pub struct IncidentChange {
    pub incident: Incident,
    pub status: String,
    pub changed_at: DateTime<Utc>,
    pub links: Vec<Link>,
}

impl IncidentChange {
    /// Reads the change out of a listed incident, when its status changed in `window`.
    pub fn of(incident: Incident, window: &Window) -> Option<Self> {
        let status = incident.status.clone().filter(|s| STATUSES.contains(&s.as_str()))?;
        let changed_at: DateTime<Utc> = incident.raw.get("last_status_change_at")?.as_str()?.parse().ok()?;
        window.contains(changed_at).then_some(Self { incident, status, changed_at, links: vec![] })
    }

    /// The synthetic event's id: the incident, its status and when it was set. The same in every
    /// run, so the gate applies the repair once.
    pub fn event_id(&self) -> String {
        super::repair::event_id(&format!("pd-{}-{}-{}", self.incident.id, self.status, self.changed_at.timestamp()))
    }

    pub fn candidate(&self) -> Candidate {
        Candidate {
            side: Side::Pagerduty,
            subject: Subject::Incident(self.incident.id.clone()),
            event_id: self.event_id(),
            changed_at: self.changed_at,
            evidence: Subject::Incident(self.incident.id.clone()),
        }
    }

    /// The Webhooks v3 body PagerDuty would have delivered for this change.
    pub fn webhook_body(&self) -> String {
        let raw = &self.incident.raw;
        let mut data = raw.clone();
        if let Some(o) = data.as_object_mut() {
            o.insert("type".into(), json!("incident"));
            if let Some(number) = raw.get("incident_number") {
                o.insert("number".into(), number.clone());
            }
        }
        let agent = raw.get("last_status_change_by").filter(|a| a["type"] == "user_reference").cloned();
        json!({"event": {
            "id": self.event_id(),
            "event_type": format!("incident.{}", self.status),
            "resource_type": "incident",
            "occurred_at": self.changed_at.to_rfc3339(),
            "agent": agent,
            "client": null,
            "data": data,
        }})
        .to_string()
    }
}

/// Compares one incident change with its linked records.
pub struct CompareIncident<'a> {
    pub change: &'a IncidentChange,
    pub correlation_id: &'a str,
}

impl Compare for CompareIncident<'_> {
    fn read_cost(&self) -> u32 {
        // One read per linked record, and the pipeline's own read of the fields its rules need.
        2 * self.change.links.len() as u32
    }

    fn compare<'a>(&'a mut self, ctx: &'a Context, _state: &'a SubjectState) -> Compared<'a> {
        async move {
            let body = self.change.webhook_body();
            let event = WebhookEvent::parse(body.as_bytes()).map_err(|e| format!("synthetic webhook: {e}"))?;
            if echo::pagerduty_echo(ctx.pagerduty_port(), &event).await.is_some() {
                return Ok(None);
            }
            let rules = ctx.rules.current().await.map_err(|e| format!("rules unavailable: {e}"))?;
            let mut linked = Vec::with_capacity(self.change.links.len());
            let mut seen = std::collections::HashMap::new();
            let mut set_by_others = std::collections::HashMap::new();
            for link in &self.change.links {
                let record = Subject::Record(link.record.id.to_string());
                let state = ctx.stores.links.subject_state(&record).await.map_err(|e| format!("store: {e}"))?;
                seen.insert(link.record.id.to_string(), state.seen);
                // What the bridge set on the record from the record's other incidents, and when.
                for other in state.links.iter().filter(|l| *l.incident_id.as_str() != *self.change.incident.id.as_str())
                {
                    let incident = Subject::Incident(other.incident_id.to_string());
                    let marks =
                        ctx.stores.links.subject_state(&incident).await.map_err(|e| format!("store: {e}"))?.marks;
                    for (mark, at) in marks {
                        let newest = set_by_others.entry(mark).or_insert(at);
                        *newest = (*newest).max(at);
                    }
                }
                crate::telemetry::metrics::api_calls("salesforce", 1);
                match ctx.salesforce.get_record(&link.record.object, link.record.id.as_str(), None).await {
                    Ok(fields) => linked.push(LinkedRecord {
                        object: link.record.object.clone(),
                        id: link.record.id.to_string(),
                        fields,
                    }),
                    // Deleted in Salesforce: nothing of it to compare, and no reason to read it
                    // again in every run.
                    Err(crate::salesforce::error::SalesforceError::Api { status: 404, .. }) => {
                        tracing::info!(record = %link.record.id, incident = %self.change.incident.id,
                            "a linked record is gone (404): not compared");
                    }
                    Err(err) => return Err(format!("reading {} {}: {err}", link.record.object, link.record.id)),
                }
            }
            let input = Event::Incident(pd_to_sfdc::incident_event(&event, linked.clone()));
            let changed = Changed {
                at: self.change.changed_at,
                integration_user_id: &ctx.settings.integration_user_id,
                seen: &seen,
                set_by_others: &set_by_others,
            };
            let comparison = compare_plan(&rules.rules.plan(&input).plan.0, &linked, &changed);
            let accepted = Accepted::new(
                Direction::PagerdutyToSalesforce,
                self.change.event_id(),
                self.correlation_id,
                ctx.clock.now(),
                repair_time(self.change.changed_at),
                QueuedEvent::PagerdutyWebhook { body, webhook_id: None, subscription_id: None },
            );
            Ok(Some(Found { synthetic: Synthetic::Incident(Box::new(event)), accepted, comparison }))
        }
        .boxed()
    }
}

/// Whether someone other than the bridge changed `fields` of the record after the incident's
/// change (whole seconds; the same second is not after). Either the bridge saw a person set one
/// of them after it ([`Seen::since`], whoever wrote the record last since), or a person
/// (`LastModifiedById` not the integration user) changed the record after it and the bridge did
/// not see that change leave these fields as they were before. (A field the bridge keeps no
/// copy of, one no rule compares, is taken as untouched: such fields are the ones the bridge
/// itself writes.)
fn changed_by_a_person(record: &LinkedRecord, fields: &[&String], change: &Changed<'_>) -> bool {
    // The bridge set one of them from another incident's later event.
    let marked = |f: &String| change.set_by_others.get(&crate::rules::field_mark(&record.id, f));
    if fields.iter().any(|f| marked(f).is_some_and(|at| *at > change.at)) {
        return true;
    }
    let seen = change.seen.get(&record.id).and_then(Option::as_ref);
    let set_since =
        |seen: &Seen, f: &str| seen.fields.contains_key(f) && seen.since.get(f).is_none_or(|t| *t > change.at);
    if seen.is_some_and(|s| fields.iter().any(|f| set_since(s, f))) {
        return true;
    }
    let text = |f: &str| record.fields.get(f).and_then(Value::as_str);
    let modified = text("LastModifiedDate").and_then(crate::salesforce::time::parse_datetime);
    let by_bridge = text("LastModifiedById").is_some_and(|id| {
        !change.integration_user_id.is_empty() && crate::salesforce::id::same_id(id, change.integration_user_id)
    });
    let Some(modified) = modified.filter(|at| *at > change.at && !by_bridge) else { return false };
    let untouched = seen.is_some_and(|seen| {
        seen.at >= modified
            && fields
                .iter()
                .all(|f| seen.fields.get(f.as_str()).is_none_or(|v| same_value(record.fields.get(f.as_str()), v)))
    });
    !untouched
}

/// The change a comparison is about: when, who the bridge is in Salesforce, and what it last
/// saw of each linked record.
struct Changed<'a> {
    at: DateTime<Utc>,
    integration_user_id: &'a str,
    seen: &'a std::collections::HashMap<String, Option<Seen>>,
    /// The marks of the records' other incidents: fields the bridge set from their events.
    set_by_others: &'a std::collections::HashMap<String, DateTime<Utc>>,
}

/// Sorts the plan: a set-fields whose every field already holds its value is in sync; one
/// whose record a person changed since is newer.
fn compare_plan(plan: &[crate::rules::PlannedAction], linked: &[LinkedRecord], change: &Changed<'_>) -> Comparison {
    let mut out = Comparison::default();
    for planned in plan {
        match &planned.action {
            Action::Salesforce(SalesforceAction::SetFields { record, fields }) => {
                let Some(target) = linked.iter().find(|l| record.id == *l.id.as_str()) else {
                    continue; // a record that is gone
                };
                let current = Some(&target.fields);
                let differing: Vec<String> = fields
                    .iter()
                    .filter(|(f, v)| !same_value(current.and_then(|c| c.get(*f)), v))
                    .map(|(f, v)| {
                        let was = current.and_then(|c| c.get(f)).cloned().unwrap_or(Value::Null);
                        format!("{} {}: {f} = {v} (is {was})", record.object, record.id)
                    })
                    .collect();
                if differing.is_empty() {
                    out.in_sync.push(planned.clone());
                    continue;
                }
                for line in differing {
                    out.line(planned, line);
                }
                if changed_by_a_person(target, &fields.keys().collect::<Vec<_>>(), change) {
                    out.newer.push(planned.clone());
                } else {
                    out.todo.push(planned.clone());
                }
            }
            action if action.effect() == Effect::State => {
                out.line(planned, format!("{} {}", action.name(), action.target()));
                out.todo.push(planned.clone());
            }
            _ => out.additive.push(planned.clone()),
        }
    }
    out
}
