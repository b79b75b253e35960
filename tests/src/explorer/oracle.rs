//! The oracle: what PagerDuty and Salesforce must hold once a schedule has settled, derived from
//! what people did (never from what the bridge says it did), compared with what they hold.
//!
//! - **One Case per incident, one incident per Case** that a rule opens one for, and nothing
//!   opened for anything else (a Case for the bridge's own incident is an echo).
//! - **Additive effects exactly once**, whatever the order: every on-call note is one
//!   `[PagerDuty] ` Case Comment on the incident's Case, every agent comment one
//!   `[Salesforce] Case comment: ` note on the Case's incident, every resolve by on-call one
//!   "was resolved" comment. A resolution note the bridge writes when it resolves for a closed
//!   Case may be there once (it is part of the resolve, a state effect), never twice.
//! - **State effects follow the newest event** of the subject that drives them: the incident's
//!   urgency and priority follow the newest of the Case's Priority changes (Sev1 raises them,
//!   leaving Sev1 lowers them; the Case's opening counts as the first for an incident the bridge
//!   opened); the Case's `PagerDuty_Escalation_Policy__c` follows the newest reassignment. Status
//!   only moves forward: a Case is Closed once it was closed or its incident resolved, else
//!   Working once its incident was acknowledged; an incident is resolved once on-call resolved
//!   it or its Case was closed.
//! - **Ties**: Salesforce stamps changes to the whole second, so two Priority changes of one Case
//!   in the same second cannot be ordered by anyone: either of their values is accepted. Nothing
//!   else is excused by a tie (both changes must still act: a lost close is lost).
//! - **Across subjects nothing is ordered**: the acknowledge rule reads the Case's Status, which
//!   the agent may close at the same time, so `PagerDuty_Status__c` is not judged for a Case the
//!   agent closed unless on-call resolved (the resolve sets it unconditionally).
//! - **No echo**: a comment, note, Case or incident that no person's act explains came from the
//!   bridge's own writes coming back (or from nowhere, which is as bad).
//! - **Every change people made is accepted** at last: a sender that gave up on one (PagerDuty
//!   after a 4xx, the Queueable after its fifth failure) lost it.
//! - **The DLQ** holds only what a permanent error put there; the explorer injects none, so any
//!   dead letter is unexpected.
//!
//! Counts: a missing effect or a state that no event explains is *lost*; an effect more than
//! once is *duplicated*; a state set by an older event than the newest is *misordered*; an
//! unexplained effect is *echoed*.

use std::collections::HashMap;

use chrono::{DateTime, Timelike, Utc};
use serde_json::Value;
use shared::handler::salesforce_exec::without_reference;
use shared::retry::envelope::Envelope;
use shared::rules::{external_id, incident_key};

use super::world::{Author, BRIDGE_USER_ID, GAVE_UP, SendState, WEBHOOK_NOTE_LIMIT, World, external_id_of};
use super::{CASE_FOR_INCIDENT_RULE, Did, INCIDENT_FOR_CASE_RULE};

/// The kinds of violation the explorer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Lost,
    Duplicated,
    Misordered,
    Echoed,
    UnexpectedDlq,
    Unsettled,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Lost, Kind::Duplicated, Kind::Misordered, Kind::Echoed, Kind::UnexpectedDlq, Kind::Unsettled];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Lost => "lost",
            Kind::Duplicated => "duplicated",
            Kind::Misordered => "misordered",
            Kind::Echoed => "echoed",
            Kind::UnexpectedDlq => "unexpected DLQ",
            Kind::Unsettled => "unsettled",
        }
    }
}

/// One thing wrong: its kind, what it is about (a short fixed phrase, for counting), the detail.
#[derive(Debug, Clone)]
pub struct Violation {
    pub kind: Kind,
    pub what: &'static str,
    pub detail: String,
}

/// Everything wrong with one schedule.
#[derive(Debug, Default)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    /// Differences no run can observe, not judged (see `excuse_unobservable`).
    pub unobservable: usize,
}

impl Verdict {
    fn push(&mut self, kind: Kind, what: &'static str, detail: String) {
        self.violations.push(Violation { kind, what, detail });
    }

    pub fn count(&self) -> usize {
        self.violations.len()
    }

    pub fn of(&self, kind: Kind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }

    pub fn summary(&self) -> String {
        if self.count() == 0 {
            return "ok".into();
        }
        Kind::ALL.iter().map(|k| format!("{} {}", self.of(*k), k.name())).collect::<Vec<_>>().join(", ")
    }

    pub fn lines(&self) -> Vec<String> {
        self.violations.iter().map(|v| format!("{} ({}): {}", v.kind.name(), v.what, v.detail)).collect()
    }
}

/// An incident and the Case linked to it.
struct Pair {
    incident: String,
    case: String,
    /// The bridge opened the incident for the Case (else the Case for the incident).
    incident_from_case: bool,
}

fn id15(id: &str) -> &str {
    id.get(..15).unwrap_or(id)
}

/// The second Salesforce stamps a change made at `at` with.
fn second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0).unwrap_or(at)
}

/// The value the newest events set, the values older events set, and whether `actual` is fine.
enum Judged {
    Ok,
    Misordered(String),
    Lost(String),
}

/// `events`: (when, value) of each event that sets the state. The newest wins; events at the
/// same time as the newest are a tie, any of them is accepted.
fn judge_state(events: &[(DateTime<Utc>, String)], actual: &str) -> Judged {
    let Some(newest) = events.iter().map(|(t, _)| *t).max() else {
        return if actual.is_empty() { Judged::Ok } else { Judged::Lost(format!("{actual:?} but no event sets it")) };
    };
    let tied: Vec<&str> = events.iter().filter(|(t, _)| *t == newest).map(|(_, v)| v.as_str()).collect();
    if tied.contains(&actual) {
        return Judged::Ok;
    }
    let expected = tied.join(" or ");
    if events.iter().any(|(_, v)| v == actual) {
        Judged::Misordered(format!("{actual:?}, set by an older event, where the newest ({newest}) sets {expected}"))
    } else {
        Judged::Lost(format!("{actual:?} where the newest event ({newest}) sets {expected}"))
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

pub fn judge(world: &World, unsettled: Vec<String>) -> Verdict {
    let mut v = Verdict::default();
    for line in unsettled {
        v.push(Kind::Unsettled, "never settled", line);
    }
    let cases = world.h.sf.records("Case");
    let comments = world.h.sf.records("CaseComment");
    let incidents = world.h.pd.incidents();
    let did = &world.did;

    // ---- one Case per incident, one incident per Case ----
    let mut pairs = Vec::new();
    let mut explained_cases: Vec<String> = Vec::new();
    let mut explained_incidents: Vec<String> = Vec::new();
    for d in did {
        match d {
            Did::Triggered { incident, .. } => {
                explained_incidents.push(incident.clone());
                let ext = external_id(incident, CASE_FOR_INCIDENT_RULE);
                let found: Vec<String> =
                    cases.iter().filter(|c| external_id_of(c) == ext).map(|c| text(&c["Id"])).collect();
                match found.len() {
                    0 => v.push(
                        Kind::Lost,
                        "Case for an incident",
                        format!("incident {incident} (on-call) never got its Case"),
                    ),
                    1 => {}
                    n => v.push(
                        Kind::Duplicated,
                        "Cases for an incident",
                        format!("incident {incident} has {n} Cases: {found:?}"),
                    ),
                }
                explained_cases.extend(found.iter().cloned());
                if let Some(case) = found.first() {
                    pairs.push(Pair { incident: incident.clone(), case: case.clone(), incident_from_case: false });
                }
            }
            Did::OpenedCase { case, sev1, .. } => {
                explained_cases.push(case.clone());
                let key = incident_key("Case", case, INCIDENT_FOR_CASE_RULE);
                let found: Vec<String> =
                    incidents.iter().filter(|i| i["incident_key"] == key.as_str()).map(|i| text(&i["id"])).collect();
                explained_incidents.extend(found.iter().cloned());
                match (sev1, found.len()) {
                    (true, 0) => {
                        v.push(Kind::Lost, "incident for a Case", format!("Sev1 Case {case} never got its incident"))
                    }
                    (true, 1) | (false, 0) => {}
                    (true, n) => v.push(
                        Kind::Duplicated,
                        "incidents for a Case",
                        format!("Case {case} has {n} incidents: {found:?}"),
                    ),
                    (false, _) => v.push(
                        Kind::Echoed,
                        "incident for a Case no rule pages for",
                        format!("Case {case} is not Sev1 but got incident(s) {found:?}"),
                    ),
                }
                if *sev1 && let Some(incident) = found.first() {
                    pairs.push(Pair { incident: incident.clone(), case: case.clone(), incident_from_case: true });
                }
            }
            _ => {}
        }
    }
    for c in &cases {
        let id = text(&c["Id"]);
        if !explained_cases.contains(&id) {
            v.push(
                Kind::Echoed,
                "Case nobody asked for",
                format!("Case {id} ({}) that no rule opens (external id {:?})", c["Subject"], external_id_of(c)),
            );
        }
    }
    for i in &incidents {
        let id = text(&i["id"]);
        if !explained_incidents.contains(&id) {
            v.push(
                Kind::Echoed,
                "incident nobody asked for",
                format!("incident {id} ({:?}) that no rule opens", i["title"]),
            );
        }
    }

    // ---- notes and comments, exactly once; and no echo ----
    let people_comments: Vec<&str> = did
        .iter()
        .filter_map(|d| if let Did::Commented { comment, .. } = d { Some(comment.as_str()) } else { None })
        .collect();
    for pair in &pairs {
        let (inc, case) = (pair.incident.as_str(), pair.case.as_str());
        // Notes the bridge wrote on the incident.
        let mut bridge_notes: HashMap<String, usize> = HashMap::new();
        for note in world.h.pd.notes(inc).iter().filter(|n| n["user"]["id"] == BRIDGE_USER_ID) {
            *bridge_notes.entry(without_reference(&text(&note["content"])).to_string()).or_default() += 1;
        }
        for d in did {
            if let Did::Commented { case: c, body, comment, .. } = d
                && id15(c) == id15(case)
            {
                let expected = format!("[Salesforce] Case comment: {body}");
                match bridge_notes.remove(&expected).unwrap_or(0) {
                    0 => v.push(
                        Kind::Lost,
                        "Case Comment -> note",
                        format!("comment {comment} on Case {case} never became a note on {inc}"),
                    ),
                    1 => {}
                    n => v.push(
                        Kind::Duplicated,
                        "Case Comment -> notes",
                        format!("comment {comment} on Case {case} is {n} notes on {inc}"),
                    ),
                }
            }
        }
        let closes = did.iter().filter(|d| matches!(d, Did::ClosedCase { case: c, .. } if c == case)).count();
        let resolution_notes: Vec<String> =
            bridge_notes.keys().filter(|n| n.contains("was closed.")).cloned().collect();
        for note in resolution_notes {
            let n = bridge_notes.remove(&note).unwrap_or(0);
            if n > closes {
                v.push(
                    Kind::Duplicated,
                    "resolution note",
                    format!("resolution note {note:?} {n} times on {inc} ({closes} close(s))"),
                );
            }
        }
        for (note, n) in bridge_notes {
            v.push(Kind::Echoed, "note nobody asked for", format!("{n} note(s) on {inc}: {note:?}"));
        }

        // Comments the bridge wrote on the Case.
        let mut bridge_comments: HashMap<String, usize> = HashMap::new();
        for c in comments.iter().filter(|c| id15(&text(&c["ParentId"])) == id15(case)) {
            if !people_comments.contains(&text(&c["Id"]).as_str()) {
                *bridge_comments.entry(without_reference(&text(&c["CommentBody"])).to_string()).or_default() += 1;
            }
        }
        for d in did {
            if let Did::Noted { incident, content, .. } = d
                && incident == inc
            {
                let expected = format!("[PagerDuty] {content}");
                let cut: String = content.chars().take(WEBHOOK_NOTE_LIMIT).collect();
                let trimmed = format!("[PagerDuty] {cut}");
                match bridge_comments.remove(&expected).unwrap_or(0) {
                    0 if content.chars().count() > WEBHOOK_NOTE_LIMIT && bridge_comments.remove(&trimmed).is_some() => {
                        v.push(Kind::Lost, "trimmed note -> cut Case Comment", format!(
                            "note on {inc} became a comment on Case {case} cut to the {WEBHOOK_NOTE_LIMIT} characters of its trimmed webhook"
                        ))
                    }
                    0 => v.push(Kind::Lost, "note -> Case Comment", format!("note {content:?} on {inc} never became a comment on Case {case}")),
                    1 => {}
                    n => v.push(Kind::Duplicated, "note -> Case Comments", format!("note {content:?} on {inc} is {n} comments on Case {case}")),
                }
            }
        }
        let resolves = did.iter().filter(|d| matches!(d, Did::Resolved { incident, .. } if incident == inc)).count();
        let resolved_comments: Vec<String> = bridge_comments
            .keys()
            .filter(|b| b.starts_with("[PagerDuty] Incident #") && b.contains("was resolved"))
            .cloned()
            .collect();
        let mut resolved_seen = 0;
        for body in resolved_comments {
            resolved_seen += bridge_comments.remove(&body).unwrap_or(0);
        }
        match (resolves, resolved_seen) {
            (r, s) if r == s => {}
            (1, 0) => v.push(
                Kind::Lost,
                "resolve -> Case Comment",
                format!("on-call's resolve of {inc} never became a comment on Case {case}"),
            ),
            (0, s) => v.push(
                Kind::Echoed,
                "the bridge's resolve -> Case Comment",
                format!("{s} \"was resolved\" comment(s) on Case {case}: the bridge's own resolve of {inc} came back"),
            ),
            (r, s) => v.push(
                Kind::Duplicated,
                "resolve -> Case Comments",
                format!("{r} resolve(s) of {inc} are {s} comments on Case {case}"),
            ),
        }
        for (body, n) in bridge_comments {
            v.push(Kind::Echoed, "Case Comment nobody asked for", format!("{n} comment(s) on Case {case}: {body:?}"));
        }

        // ---- state ----
        judge_pair_state(world, pair, &mut v);
    }

    // Comments and notes the bridge wrote where no pair explains them (a Case without an
    // incident, an incident without a Case) are echoes too.
    let paired_cases: Vec<&str> = pairs.iter().map(|p| id15(&p.case)).collect();
    for c in &comments {
        let parent = text(&c["ParentId"]);
        if !paired_cases.contains(&id15(&parent)) && !people_comments.contains(&text(&c["Id"]).as_str()) {
            v.push(
                Kind::Echoed,
                "Case Comment nobody asked for",
                format!("comment on Case {parent}, which has no incident: {:?}", c["CommentBody"]),
            );
        }
    }
    for i in &incidents {
        let id = text(&i["id"]);
        if pairs.iter().any(|p| p.incident == id) {
            continue;
        }
        for note in world.h.pd.notes(&id).iter().filter(|n| n["user"]["id"] == BRIDGE_USER_ID) {
            v.push(
                Kind::Echoed,
                "note nobody asked for",
                format!("note on incident {id}, which has no Case: {:?}", note["content"]),
            );
        }
    }

    // ---- every change people made was accepted by the bridge at last (or, when the "sender
    // gave up" fault dropped it, repaired or reported by reconciliation: below) ----
    for d in &world.deliveries {
        if let (Author::People, SendState::GaveUp(why)) = (d.author, &d.state)
            && why != GAVE_UP
        {
            v.push(Kind::Lost, "sender gave up", format!("the sender gave up on #{} {}: {why}", d.id, d.label));
        }
    }

    // ---- the DLQ ----
    for body in world.dead_letters() {
        let line = match Envelope::from_json(&body) {
            Ok(e) => format!(
                "event {} dead-lettered after {} attempt(s): {}",
                e.accepted.event_id,
                e.trip.attempts,
                e.trip.dead_letter_reason.unwrap_or_default()
            ),
            Err(_) => format!("unreadable dead letter: {body}"),
        };
        v.push(Kind::UnexpectedDlq, "dead letter", line);
    }
    let v = excuse_reported(world, v);
    excuse_unobservable(world, v)
}

/// Two or more of a Case's Priority changes that the "sender gave up" fault dropped leave only
/// their end in the record: Sev3 → Sev1 → High, both lost, reads as Sev3 → High, and no run can
/// tell that a rule on leaving Sev1 should have fired (Salesforce's field history would; a run
/// does not read it: a known limit of reconciliation, in its runbook). The urgency and priority
/// of such a Case's incident are not judged; the schedule counts them as unobservable.
fn excuse_unobservable(world: &World, mut v: Verdict) -> Verdict {
    let dropped_priority = |case: &str| {
        world
            .deliveries
            .iter()
            .filter(|d| d.author == Author::People && d.state == SendState::GaveUp(GAVE_UP.into()))
            .filter(|d| d.subject.split('+').any(|s| s == case) && d.label.contains("\"Priority\""))
            .count()
    };
    let before = v.violations.len();
    v.violations.retain(|violation| {
        let about_priority = matches!(violation.what, "incident urgency" | "incident priority");
        let unobservable = world
            .deliveries
            .iter()
            .flat_map(|d| d.subject.split('+'))
            .any(|case| case.starts_with("500") && violation.detail.contains(case) && dropped_priority(case) >= 2);
        !(about_priority && unobservable)
    });
    v.unobservable += before - v.violations.len();
    v
}

/// Reconciliation repairs a lost change, or reports it for a person: an additive effect (a
/// comment, a note) it cannot see missing, a state the other side changed after the lost change
/// (a run never writes over a later change). So a missing or older effect on a subject whose
/// change a sender gave up on ("sender gave up" fault) is no violation when a run reported that
/// subject; it stays one when no run did (lost without a word). Duplicated and echoed effects
/// are never excused.
fn excuse_reported(world: &World, mut v: Verdict) -> Verdict {
    let dropped: Vec<&str> = world
        .deliveries
        .iter()
        .filter(|d| d.author == Author::People && d.state == SendState::GaveUp(GAVE_UP.into()))
        .flat_map(|d| d.subject.split('+'))
        .collect();
    let reported: Vec<String> = world
        .reconciled
        .iter()
        .flat_map(|r| &r.differences)
        .filter(|d| d.repair == shared::reconcile::Repair::Reported || !d.not_repaired.is_empty())
        .map(|d| d.subject.split_once(':').map_or(d.subject.clone(), |(_, id)| id.to_string()))
        .collect();
    let names = |detail: &str, id: &str| !id.is_empty() && detail.contains(&id[..id.len().min(15)]);
    v.violations.retain(|violation| {
        let excusable = matches!(violation.kind, Kind::Lost | Kind::Misordered);
        let about_dropped = dropped.iter().any(|id| names(&violation.detail, id));
        let was_reported = reported.iter().any(|id| names(&violation.detail, id));
        !(excusable && about_dropped && was_reported)
    });
    v
}

fn judge_pair_state(world: &World, pair: &Pair, v: &mut Verdict) {
    let (inc, case) = (pair.incident.as_str(), pair.case.as_str());
    let did = &world.did;
    let Some(incident) = world.h.pd.incident(inc) else { return };
    let Some(record) = world.h.sf.record("Case", case) else { return };
    let resolved_by_oncall = did.iter().any(|d| matches!(d, Did::Resolved { incident, .. } if incident == inc));
    let acknowledged = did.iter().any(|d| matches!(d, Did::Acknowledged { incident, .. } if incident == inc));
    let closed_by_agent = did.iter().any(|d| matches!(d, Did::ClosedCase { case: c, .. } if c == case));

    // The incident's status: the bridge resolves it when its Case is closed.
    let status = text(&incident["status"]);
    if closed_by_agent && status != "resolved" {
        v.push(Kind::Lost, "incident status", format!("Case {case} was closed but incident {inc} is {status}"));
    }

    // Urgency and priority follow the newest of the Case's Priority changes.
    let mut urgency = Vec::new();
    let mut priority = Vec::new();
    if pair.incident_from_case {
        let opened = did.iter().find_map(|d| match d {
            Did::OpenedCase { case: c, at, .. } if c == case => Some(second(*at)),
            _ => None,
        });
        if let Some(at) = opened {
            urgency.push((at, "high".to_string()));
            priority.push((at, "P1".to_string()));
        }
    }
    for d in did {
        if let Did::ChangedPriority { case: c, from, to, at } = d
            && c == case
        {
            let (u, p) = if to == "Sev1" {
                ("high", "P1")
            } else if from == "Sev1" {
                ("low", "P3")
            } else {
                continue;
            };
            urgency.push((second(*at), u.to_string()));
            priority.push((second(*at), p.to_string()));
        }
    }
    // An incident on-call opened keeps what it was opened with until a Case change says otherwise.
    let actual_priority = text(&incident["priority"]["summary"]);
    for (what, label, events, actual, initial) in [
        ("urgency", "incident urgency", &urgency, text(&incident["urgency"]), "low"),
        ("priority", "incident priority", &priority, actual_priority, ""),
    ] {
        if events.is_empty() && !pair.incident_from_case {
            if actual != initial {
                v.push(
                    Kind::Echoed,
                    "incident state nobody asked for",
                    format!("incident {inc}'s {what} is {actual:?} but no Case change asked for it"),
                );
            }
            continue;
        }
        match judge_state(events, &actual) {
            Judged::Ok => {}
            Judged::Misordered(why) => {
                v.push(Kind::Misordered, label, format!("incident {inc}'s {what} (Case {case}) is {why}"))
            }
            Judged::Lost(why) => v.push(Kind::Lost, label, format!("incident {inc}'s {what} (Case {case}) is {why}")),
        }
    }

    // The Case's Status moves forward only.
    let case_status = text(&record["Status"]);
    let expected = if closed_by_agent || resolved_by_oncall {
        "Closed"
    } else if acknowledged {
        "Working"
    } else {
        "New"
    };
    if case_status != expected {
        let line =
            format!("Case {case}'s Status is {case_status:?} where incident {inc}'s events make it {expected:?}");
        let kind = if expected == "Closed" && case_status == "Working" { Kind::Misordered } else { Kind::Lost };
        v.push(kind, "Case Status", line);
    }

    // PagerDuty_Status__c: what the newest of acknowledge and resolve wrote.
    let pd_status = text(&record["PagerDuty_Status__c"]);
    let expected = if resolved_by_oncall {
        Some("resolved")
    } else if closed_by_agent {
        None
    } else if acknowledged {
        Some("acknowledged")
    } else {
        Some("")
    };
    if let Some(expected) = expected
        && pd_status != expected
    {
        let line =
            format!("Case {case}'s PagerDuty_Status__c is {pd_status:?} where {inc}'s events make it {expected:?}");
        let kind = if expected == "resolved" && pd_status == "acknowledged" { Kind::Misordered } else { Kind::Lost };
        v.push(kind, "Case PagerDuty_Status__c", line);
    }

    // The newest reassignment's escalation policy.
    let reassigned: Vec<(DateTime<Utc>, String)> = did
        .iter()
        .filter_map(|d| match d {
            Did::Reassigned { incident, policy, at } if incident == inc => Some((*at, policy.clone())),
            _ => None,
        })
        .collect();
    let actual = text(&record["PagerDuty_Escalation_Policy__c"]);
    match judge_state(&reassigned, &actual) {
        Judged::Ok => {}
        Judged::Misordered(why) => v.push(
            Kind::Misordered,
            "Case escalation policy",
            format!("Case {case}'s escalation policy ({inc}) is {why}"),
        ),
        Judged::Lost(why) => {
            v.push(Kind::Lost, "Case escalation policy", format!("Case {case}'s escalation policy ({inc}) is {why}"))
        }
    }
}
