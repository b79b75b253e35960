//! The PagerDuty side: incidents whose status changed in the window, and that are linked, each
//! compared with its linked records as the `pagerduty_to_salesforce` rules would set them.
//!
//! `GET /incidents` lists incidents *created* in its `since`/`until` range (PagerDuty's rule;
//! default a month, at most six), so the run lists those created within `incident_lookback` and
//! keeps the ones whose `last_status_change_at` is in the window. The synthetic event is the
//! webhook PagerDuty would have sent for the incident's current status (`incident.acknowledged`,
//! `incident.resolved`), its agent the user who changed it (the bridge's own changes are echoes).
//!
//! Notes change no stamp of their incident: the run finds those written in the window in the
//! account's log (`GET /log_entries`, pages of 100: each `annotate_log_entry` of a linked
//! incident), and each is an `incident.annotated` change. Its comparison reads the incident's
//! notes (one call) for the note's id and text, and finds what the note added to the linked
//! records (Case Comments) by the note's mark on the incident (the delivery that wrote them left
//! it), or among the Case's comments since the note (one query per Case): else it was lost.

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde_json::{Value, json};

use super::cursor::{Window, repair_time};
use super::repair::{Candidate, Compare, Compared, Comparison, Found, Synthetic, same_value};
use crate::handler::context::Context;
use crate::handler::{echo, pd_to_sfdc};
use crate::model::{Direction, Link};
use crate::pagerduty::WebhookEvent;
use crate::pagerduty::client::{Incident, LogEntry, Note};
use crate::retry::envelope::{Accepted, QueuedEvent};
use crate::rules::{Action, Effect, Event, LinkedRecord, SalesforceAction};
use crate::store::{Seen, Side, Subject, SubjectState};

/// The statuses whose changes the rules can act on (a triggered incident's change is its creation).
pub const STATUSES: &[&str] = &["acknowledged", "resolved"];

/// The log entry of a note written.
pub const ANNOTATED: &str = "annotate_log_entry";

/// A listed incident whose status changed in the window, or a note written to a linked incident
/// in the window (`note`: its log entry; `incident` then holds only its id), with its links.
pub struct IncidentChange {
    pub incident: Incident,
    pub status: String,
    pub changed_at: DateTime<Utc>,
    pub links: Vec<Link>,
    pub note: Option<LoggedNote>,
}

/// A note's log entry, and how many notes its author wrote to the incident in the same second
/// before it (`rank`): the entry names no note, and two notes of one second are told apart by
/// their order.
pub struct LoggedNote {
    pub entry: LogEntry,
    pub rank: usize,
    /// Written before the bridge marked every note it wrote comments for: its comments may
    /// stand unmarked among the Case's.
    pub before_marks: bool,
}

/// Ranks the logged notes of each incident and author within each second (see [`LoggedNote`]),
/// oldest entry id first.
pub fn rank_notes(changes: &mut [IncidentChange]) {
    let key = |c: &IncidentChange| {
        c.note
            .as_ref()
            .map(|n| (c.incident.id.clone(), n.entry.agent_id().map(str::to_string), c.changed_at.timestamp()))
    };
    let mut seen: std::collections::HashMap<_, Vec<(String, usize)>> = Default::default();
    for (i, change) in changes.iter().enumerate() {
        if let (Some(k), Some(note)) = (key(change), &change.note) {
            seen.entry(k).or_default().push((note.entry.id.clone(), i));
        }
    }
    for mut group in seen.into_values() {
        group.sort();
        for (rank, (_, i)) in group.into_iter().enumerate() {
            if let Some(note) = changes[i].note.as_mut() {
                note.rank = rank;
            }
        }
    }
}

impl IncidentChange {
    /// Reads the change out of a listed incident, when its status changed in `window`.
    pub fn of(incident: Incident, window: &Window) -> Option<Self> {
        let status = incident.status.clone().filter(|s| STATUSES.contains(&s.as_str()))?;
        let changed_at: DateTime<Utc> = incident.raw.get("last_status_change_at")?.as_str()?.parse().ok()?;
        window.contains(changed_at).then_some(Self { incident, status, changed_at, links: vec![], note: None })
    }

    /// The note `entry` logs, when it is a note written in `window` (one by the bridge is left
    /// out by the comparison: its echo is told by its agent, as live).
    pub fn of_logged_note(
        entry: LogEntry,
        links: Vec<Link>,
        window: &Window,
        marked_since: DateTime<Utc>,
    ) -> Option<Self> {
        if entry.kind != ANNOTATED || !window.contains(entry.created_at) {
            return None;
        }
        let raw = entry.incident.clone()?;
        let incident = Incident { id: entry.incident_id()?.to_string(), raw, ..Default::default() };
        let changed_at = entry.created_at;
        Some(Self {
            incident,
            status: "annotated".into(),
            changed_at,
            links,
            note: Some(LoggedNote { before_marks: entry.created_at < marked_since, entry, rank: 0 }),
        })
    }

    /// The synthetic event's id: the incident, its status and when it was set (or the note's
    /// log entry). The same in every run, so the gate applies the repair once.
    pub fn event_id(&self) -> String {
        let what = match &self.note {
            Some(note) => format!("pd-{}-note-{}", self.incident.id, note.entry.id),
            None => format!("pd-{}-{}-{}", self.incident.id, self.status, self.changed_at.timestamp()),
        };
        super::repair::event_id(&what)
    }

    pub fn candidate(&self) -> Candidate {
        Candidate {
            side: Side::Pagerduty,
            subject: Subject::Incident(self.incident.id.clone()),
            event_id: self.event_id(),
            changed_at: self.changed_at,
            evidence: Subject::Incident(self.incident.id.clone()),
            // A note's is known once its note is read (`Found::own_mark`). A change back to
            // triggered is not compared (STATUSES): its live events are `incident.reopened` or
            // `incident.unacknowledged`, which this name would not match.
            own_mark: self.note.is_none().then(|| crate::rules::event_mark(&self.event_type())),
        }
    }

    /// The webhook event type of this change (`incident.resolved`, `incident.annotated`).
    pub fn event_type(&self) -> String {
        if self.note.is_some() { "incident.annotated".into() } else { format!("incident.{}", self.status) }
    }

    /// The Webhooks v3 body PagerDuty would have delivered for this change; for a note, with
    /// the note as the incident's notes show it (`None`: the log entry's agent, no text yet).
    pub fn webhook_body(&self, note: Option<&Note>) -> String {
        let raw = &self.incident.raw;
        if let Some(LoggedNote { entry, .. }) = &self.note {
            let incident = json!({"id": self.incident.id, "type": "incident_reference",
                "summary": raw.get("summary"), "html_url": raw.get("html_url")});
            let agent = note.and_then(|n| n.user.clone()).or_else(|| entry.agent.clone());
            let (id, content) = note.map(|n| (n.id.as_str(), n.content.as_str())).unwrap_or(("", ""));
            let data =
                json!({"incident": incident, "id": id, "content": content, "trimmed": false, "type": "incident_note"});
            return json!({"event": {
                "id": self.event_id(),
                "event_type": self.event_type(),
                "resource_type": "incident",
                "occurred_at": self.changed_at.to_rfc3339(),
                "agent": agent,
                "client": null,
                "data": data,
            }})
            .to_string();
        }
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
            "event_type": self.event_type(),
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
    pub comments: &'a CommentPool,
}

/// The Case Comments a run read, per Case, for the notes older than the marks: read once per Case
/// and run (at its oldest such note, before any repair of the run writes), each comment taken
/// for one note's comment only, so the same words twice need two comments.
#[derive(Default)]
pub struct CommentPool(std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>);

impl CommentPool {
    fn has(&self, case_id: &str) -> bool {
        self.0.lock().expect("pool").contains_key(case_id)
    }

    fn keep(&self, case_id: &str, bodies: Vec<String>) {
        self.0.lock().expect("pool").insert(case_id.to_string(), bodies);
    }

    /// Takes a comment that is `body` as written (its reference token after it, white space
    /// as the splitter and Salesforce leave it); false when there is none left.
    fn take(&self, case_id: &str, body: &str) -> bool {
        let mut pool = self.0.lock().expect("pool");
        let Some(bodies) = pool.get_mut(case_id) else { return false };
        let written = |b: &String| {
            crate::handler::salesforce_exec::without_reference(b).split_whitespace().eq(body.split_whitespace())
        };
        match bodies.iter().position(written) {
            Some(i) => {
                bodies.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

impl Compare for CompareIncident<'_> {
    fn read_cost(&self) -> u32 {
        // One read per linked record, and the pipeline's own read of the fields its rules need
        // (a note: the Case's comments instead of the second, and the incident's notes).
        2 * self.change.links.len() as u32 + u32::from(self.change.note.is_some())
    }

    fn compare<'a>(&'a mut self, ctx: &'a Context, state: &'a SubjectState) -> Compared<'a> {
        async move {
            let body = self.change.webhook_body(None);
            let event = WebhookEvent::parse(body.as_bytes()).map_err(|e| format!("synthetic webhook: {e}"))?;
            if echo::pagerduty_echo(ctx.pagerduty_port(), &event).await.is_some() {
                return Ok(None);
            }
            let note = match &self.change.note {
                Some(logged) => Some(logged_note(ctx, &self.change.incident.id, logged).await?),
                None => None,
            };
            let body = self.change.webhook_body(note.as_ref());
            let event = WebhookEvent::parse(body.as_bytes()).map_err(|e| format!("synthetic webhook: {e}"))?;
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
                match ctx.salesforce.get_record(link.record.object.as_str(), link.record.id.as_str(), None).await {
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
            let mut comparison = compare_plan(&rules.rules.plan(&input).plan.0, &linked, &changed);
            if let Some(note) = &note {
                self.compare_note_comments(ctx, note, state, &mut comparison).await?;
            }
            let accepted = Accepted::new(
                Direction::PagerdutyToSalesforce,
                self.change.event_id(),
                self.correlation_id,
                ctx.clock.now(),
                repair_time(self.change.changed_at),
                QueuedEvent::PagerdutyWebhook { body, webhook_id: None, subscription_id: None },
            );
            let own_mark = note.as_ref().map(|n| crate::rules::note_event_mark(&n.id));
            Ok(Some(Found { synthetic: Synthetic::Incident(Box::new(event)), accepted, comparison, own_mark }))
        }
        .boxed()
    }
}

impl CompareIncident<'_> {
    /// Sorts the Case Comments a note adds: written when the note's mark is on the incident (its
    /// live delivery, or an earlier repair, wrote them); else to do. Only a note older than the
    /// marks may have comments without one: it is in sync when the Case has a comment of exactly
    /// that text since the note that no other note of the run took ([`CommentPool`]). A later
    /// note is never looked for there: the same words in another note's comment, or in a
    /// repair's, are no sign of it.
    async fn compare_note_comments(
        &self,
        ctx: &Context,
        note: &Note,
        state: &SubjectState,
        comparison: &mut Comparison,
    ) -> Result<(), String> {
        let marked = state.marks.contains_key(&crate::rules::note_mark(&note.id));
        let before_marks = self.change.note.as_ref().is_some_and(|n| n.before_marks);
        for planned in std::mem::take(&mut comparison.additive) {
            let Action::Salesforce(SalesforceAction::AddCaseComment { case_id, body }) = &planned.action else {
                comparison.additive.push(planned);
                continue;
            };
            if marked {
                comparison.in_sync.push(planned);
                continue;
            }
            if !before_marks {
                comparison.line(&planned, format!("Case {case_id}: no comment of note {}", note.id));
                comparison.todo.push(planned);
                continue;
            }
            if !self.comments.has(case_id.as_str()) {
                let soql = format!(
                    "SELECT CommentBody FROM CaseComment WHERE ParentId = '{}' AND CreatedDate >= {}",
                    case_id.as_str().replace('\'', ""),
                    crate::salesforce::time::soql_datetime(super::cursor::whole_second(self.change.changed_at)),
                );
                crate::telemetry::metrics::api_calls("salesforce", 1);
                let found = ctx
                    .salesforce
                    .query(&soql)
                    .await
                    .map_err(|e| format!("reading the comments of Case {case_id}: {e}"))?;
                let texts = found.records.iter().filter_map(|r| r.get("CommentBody")?.as_str().map(str::to_string));
                self.comments.keep(case_id.as_str(), texts.collect());
            }
            if self.comments.take(case_id.as_str(), body) {
                comparison.in_sync.push(planned);
            } else {
                comparison.line(&planned, format!("Case {case_id}: no comment of note {}", note.id));
                comparison.todo.push(planned);
            }
        }
        Ok(())
    }
}

/// The note `logged` names, read from its incident's notes (one call): its author's
/// `rank`-th note of the entry's second (PagerDuty stamps both when the note is written), else
/// its author's note nearest that second.
async fn logged_note(ctx: &Context, incident_id: &str, logged: &LoggedNote) -> Result<Note, String> {
    let entry = &logged.entry;
    crate::telemetry::metrics::api_calls("pagerduty", 1);
    let mut notes = ctx
        .pagerduty
        .list_notes(incident_id)
        .await
        .map_err(|e| format!("reading the notes of incident {incident_id}: {e}"))?;
    notes.retain(|n| {
        let author = n.user.as_ref().and_then(|u| u.get("id")).and_then(Value::as_str);
        author.is_none() || entry.agent_id().is_none() || author == entry.agent_id()
    });
    notes.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let apart = |n: &Note| n.created_at.map(|at| (at.timestamp() - entry.created_at.timestamp()).abs());
    let same_second: Vec<&Note> = notes.iter().filter(|n| apart(n) == Some(0)).collect();
    let nearest =
        || notes.iter().filter(|n| apart(n).is_some_and(|s| s <= NOTE_SLACK_SECONDS)).min_by_key(|n| apart(n));
    same_second.get(logged.rank).copied().or_else(nearest).cloned().ok_or_else(|| {
        format!("incident {incident_id} shows no note of log entry {} (written {})", entry.id, entry.created_at)
    })
}

/// How far apart a note's stamp and its log entry's may be.
const NOTE_SLACK_SECONDS: i64 = 2;

/// Whether someone other than the bridge changed `fields` of the record after the incident's
/// change (whole seconds; the same second is not after). Either the bridge saw a person set one
/// of them after it ([`Seen::since`], whoever wrote the record last since), or a person
/// (`LastModifiedById` not the integration user) changed the record after it and the bridge did
/// not see that change leave these fields as they were before. (A field the bridge keeps no
/// copy of, one no rule compares, is taken as untouched: such fields are the ones the bridge
/// itself writes.)
fn changed_by_a_person(record: &LinkedRecord, fields: &[&String], change: &Changed<'_>) -> bool {
    // The bridge set one of them from another incident's later event. Marks are to the
    // millisecond, the change to the second: a mark in its second is not after it.
    let marked = |f: &String| change.set_by_others.get(&crate::rules::field_mark(&record.id, f));
    let after = |at: &DateTime<Utc>| super::cursor::whole_second(*at) > change.at;
    if fields.iter().any(|f| marked(f).is_some_and(after)) {
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
