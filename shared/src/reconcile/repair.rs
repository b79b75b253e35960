//! A difference becomes a synthetic event that goes through the same pipeline as a live one:
//! the idempotency gate on an id derived from the remote state, the subject's lease, the rules,
//! the executor, and `settle` (audited, queued or dead-lettered like any event).
//!
//! The order matters. The gate first: a change an earlier or concurrent run repaired costs no
//! API call. Then the subject's lease, taken under the synthetic event's own holder name, so that
//! the pipeline's `take_subject` finds it held by the same event and proceeds: between the
//! comparison and the repair no live event of the subject can act, and a live event that holds
//! the subject makes the run leave it for the next run. Only then are both sides read and
//! compared; what is in sync, and every additive action (a comment, a note: a late live delivery
//! would add it a second time), is marked done in the event's progress before the pipeline runs,
//! so the executor does exactly the repairs.
//!
//! A run never writes over a later change. A differing state the bridge set from this change or
//! a later one (its mark on the subject is as new as the change) was delivered live and changed
//! since by someone: in sync. A differing state whose target someone else changed after the
//! change (a person's `LastModifiedDate` on the record, the incident's `last_status_change_at`
//! or `updated_at`) is newer than the change: reported, not repaired. Both sides' changes are
//! compared oldest first, so when both changed while the bridge was away, the later one wins.

use chrono::{DateTime, Utc};

use super::budget::Budget;
use super::report::{Difference, Repair};
use crate::handler::context::Context;
use crate::handler::idempotency::Gate;
use crate::handler::settle::{Attempt, Subjects};
use crate::handler::steps::Work;
use crate::handler::{pd_to_sfdc, salesforce_exec, sfdc_to_pd};
use crate::pagerduty::WebhookEvent;
use crate::retry::envelope::{Accepted, Envelope, Progress};
use crate::rules::PlannedAction;
use crate::store::{Side, Subject, SubjectState, SubjectUpdate};

/// The synthetic event of one change, as the pipeline takes it.
#[derive(Debug, Clone)]
pub enum Synthetic {
    Incident(Box<WebhookEvent>),
    Record(Box<sfdc_to_pd::Change>),
}

/// What the comparison found for one change.
#[derive(Debug, Default)]
pub struct Comparison {
    /// State actions whose target differs: the repair.
    pub todo: Vec<PlannedAction>,
    /// State actions whose target already shows what they would set.
    pub in_sync: Vec<PlannedAction>,
    /// Additive actions: reported, never repaired.
    pub additive: Vec<PlannedAction>,
    /// State actions whose target differs, but someone changed the target after the change: a
    /// run does not write over a later change; reported.
    pub newer: Vec<PlannedAction>,
    /// Actions of a lost change before the one compared, which could not be compared with it
    /// (merged, they would take an action of it away): reported.
    pub unmerged: Vec<PlannedAction>,
    /// What differs, for the report: each line with the key of its action.
    lines: Vec<(String, String)>,
}

impl Comparison {
    /// Whether the change was lost: state to repair, or newer on the other side (a state the
    /// bridge did not set from this change: its marks say so, whatever else of the subject
    /// arrived live); or additive effects (which a run cannot see on the other side) with no
    /// sign that the live event arrived: no state action of the plan already in sync, and
    /// `seen_live` false. A change the live path delivered is no drift,
    /// else the drift alarm would fire for every resolution whose rule also adds a comment.
    fn differs(&self, seen_live: bool) -> bool {
        !self.todo.is_empty()
            || !self.newer.is_empty()
            || !self.unmerged.is_empty()
            || (!seen_live && !self.additive.is_empty() && self.in_sync.is_empty())
    }

    /// Moves to `in_sync` every differing state action that the bridge applied from this change
    /// or a later one: a mark of its state on the subject at or after `changed_at` (marks hold
    /// the time of the event that set the state). What its target shows now is a later change
    /// by someone else, and a run does not undo it.
    ///
    /// `changed_at` may be a whole second where marks are not (a webhook says when to the
    /// millisecond): a mark within the change's second may be an earlier change's (an
    /// acknowledgement a tenth of a second before the lost resolve). Unless the change's own
    /// [`crate::rules::event_mark`] (`own_mark`) is there from its second on (it was applied),
    /// such a mark is taken for another event's when another event left its mark at the very
    /// same time.
    fn applied_since(
        &mut self,
        marks: &std::collections::BTreeMap<String, DateTime<Utc>>,
        changed_at: DateTime<Utc>,
        own_mark: Option<&str>,
    ) -> &Self {
        let second = super::cursor::whole_second(changed_at);
        let next_second = second + chrono::Duration::seconds(1);
        let another_event_s = |at: &DateTime<Utc>| {
            marks.iter().any(|(m, t)| t == at && crate::rules::is_event_mark(m) && Some(m.as_str()) != own_mark)
        };
        // The change's own mark in its second or after: it was applied, live or by a repair.
        let own_applied = own_mark.and_then(|m| marks.get(m)).is_some_and(|t| *t >= second);
        let applied_at =
            |at: &DateTime<Utc>| *at >= second && (*at >= next_second || own_applied || !another_event_s(at));
        let applied = |p: &PlannedAction| p.action.state_marks().iter().any(|m| marks.get(m).is_some_and(&applied_at));
        for list in [&mut self.todo, &mut self.newer] {
            let (done, open): (Vec<_>, Vec<_>) = std::mem::take(list).into_iter().partition(|p| applied(p));
            *list = open;
            self.in_sync.extend(done);
        }
        let open: Vec<String> =
            self.todo.iter().chain(&self.newer).chain(&self.unmerged).map(salesforce_exec::action_key).collect();
        self.lines.retain(|(key, _)| open.contains(key));
        self
    }

    /// Notes a line of what differs for `planned`.
    pub fn line(&mut self, planned: &PlannedAction, text: String) {
        self.lines.push((salesforce_exec::action_key(planned), text));
    }
}

/// Whether a live event of `candidate.evidence` was accepted since the change (the audit trail,
/// newest first; what a reconcile wrote does not count). Salesforce stamps whole seconds and the
/// two clocks differ a little: a second of slack. A later live event of the same subject counts
/// too: the sign is coarse, and errs towards reporting less.
async fn seen_live(ctx: &Context, candidate: &Candidate) -> Result<bool, String> {
    let entries = ctx.stores.audit.for_subject(&candidate.evidence, 20).await.map_err(|e| format!("audit: {e}"))?;
    let since = candidate.changed_at - chrono::Duration::seconds(1);
    Ok(entries.iter().any(|e| {
        e.at >= since && e.outcome != crate::model::Outcome::Rejected && !e.event_id.starts_with(super::EVENT_ID_PREFIX)
    }))
}

/// A change to compare: its side, the subject whose order it keeps, the id of its synthetic event.
pub struct Candidate {
    pub side: Side,
    pub subject: Subject,
    pub event_id: String,
    pub changed_at: DateTime<Utc>,
    /// Whose audit entries show that the live event of the change arrived: the incident, or the
    /// changed record itself (a Case Comment's own id, not its Case's).
    pub evidence: Subject,
    /// The mark the change itself leaves on the subject when the bridge applies it (a status
    /// change's [`crate::rules::event_mark`]); `None`: the change leaves none of its own.
    pub own_mark: Option<String>,
}

/// How one candidate ended.
#[derive(Debug)]
pub enum Checked {
    InSync,
    AlreadyRepaired,
    Busy,
    /// The next step would pass the API budget: the run stops here.
    OutOfBudget,
    Differs(Difference),
    Failed(String),
}

/// The two side-specific steps: read and compare (under the lease), and build the event.
pub trait Compare: Send {
    /// API calls the comparison may cost at most.
    fn read_cost(&self) -> u32;
    /// Reads the other side and compares, knowing the subject's `state` (the fields the bridge
    /// last saw); returns the synthetic event and the comparison, or `Ok(None)` when there is
    /// nothing to compare (a change made by the bridge, a record gone).
    fn compare<'a>(&'a mut self, ctx: &'a Context, state: &'a SubjectState) -> Compared<'a>;
}

/// What a comparison found: the synthetic event, as the pipeline and the retry queue take it, and
/// the comparison. `None`: nothing to compare. `Err`: why the other side could not be read (the
/// report's text; the next run tries again).
pub type Compared<'a> = futures::future::BoxFuture<'a, Result<Option<Found>, String>>;

/// See [`Compared`].
pub struct Found {
    pub synthetic: Synthetic,
    pub accepted: Accepted,
    pub comparison: Comparison,
    /// The change's own mark when only the comparison could tell it (a note's, by the note it
    /// read); else the candidate's.
    pub own_mark: Option<String>,
}

/// Compares one candidate and repairs it when it differs (see the module doc).
pub async fn check(
    ctx: &Context,
    candidate: &Candidate,
    compare: &mut (dyn Compare + Send),
    budget: &Budget,
    dry_run: bool,
    deadline: Option<DateTime<Utc>>,
) -> Checked {
    if dry_run {
        if !budget.allows(compare.read_cost()) {
            return Checked::OutOfBudget;
        }
        // A dry run writes nothing: no gate, no lease, no audit.
        let state = match ctx.stores.links.subject_state(&candidate.subject).await {
            Ok(state) => state,
            Err(err) => return Checked::Failed(format!("store: {err}")),
        };
        return match compare.compare(ctx, &state).await {
            Ok(Some(Found { mut comparison, own_mark, .. })) => match seen_live(ctx, candidate).await {
                Ok(seen)
                    if comparison
                        .applied_since(
                            &state.marks,
                            candidate.changed_at,
                            own_mark.or(candidate.own_mark.clone()).as_deref(),
                        )
                        .differs(seen) =>
                {
                    let repair = if comparison.todo.is_empty() { Repair::Reported } else { Repair::WouldRepair };
                    Checked::Differs(difference(candidate, &comparison, repair))
                }
                Ok(_) => Checked::InSync,
                Err(reason) => Checked::Failed(reason),
            },
            Ok(None) => Checked::InSync,
            Err(reason) => Checked::Failed(reason),
        };
    }
    // The gate before the budget: a change an earlier run settled costs no API call, so a run
    // gets past a second holding more changes than one budget (a bulk update).
    let key = &crate::model::GateKey::event(&candidate.event_id);
    match ctx.idempotency.begin(key, deadline).await {
        Ok(Gate::Proceed) => {}
        Ok(Gate::Duplicate { first }) if first.outcome == crate::model::Outcome::Skipped.as_str() => {
            return Checked::InSync;
        }
        Ok(Gate::Duplicate { .. }) => return Checked::AlreadyRepaired,
        Ok(Gate::Busy { .. }) => return Checked::Busy,
        Err(err) => return Checked::Failed(format!("idempotency store: {err}")),
    }
    if !budget.allows(compare.read_cost()) {
        let _ = ctx.idempotency.abandon(key).await;
        return Checked::OutOfBudget;
    }
    // The lease holder the pipeline will name for this event: `Accepted::lease_holder` of an
    // envelope whose id is the event id (set below), on the live hop.
    let holder = format!("{key}@");
    let now = ctx.clock.now();
    let until = deadline.unwrap_or(now + chrono::Duration::seconds(30));
    let give_back = || async {
        let _ = ctx.stores.links.update_subject(&candidate.subject, Some(&holder), &SubjectUpdate::default()).await;
    };
    let release = || async {
        give_back().await;
        let _ = ctx.idempotency.abandon(key).await;
    };
    // Compared and found in sync (or the bridge's own change): settled for good, so that the
    // next run's gate answers it without reading either side again.
    let in_sync = || async {
        give_back().await;
        let skipped = crate::handler::idempotency::Settlement::plain(crate::model::Outcome::Skipped);
        if ctx.idempotency.finish(key, &skipped).await.is_err() {
            let _ = ctx.idempotency.abandon(key).await;
        }
        Checked::InSync
    };
    match ctx.stores.links.lease(&candidate.subject, &holder, now, until).await {
        Ok(crate::store::Lease::Acquired) => {}
        Ok(crate::store::Lease::Held { .. }) => {
            let _ = ctx.idempotency.abandon(key).await;
            return Checked::Busy;
        }
        Err(err) => {
            let _ = ctx.idempotency.abandon(key).await;
            return Checked::Failed(format!("store: {err}"));
        }
    }
    // An event of the subject waits in the retry queue (a late live delivery, held back while
    // this run held the subject): it will apply its change; a repair now would wait behind it and
    // then write the same again. The next run looks at the subject again.
    let state = match ctx.stores.links.subject_state(&candidate.subject).await {
        Ok(state) if state.pending.is_empty() => state,
        Ok(_) => {
            release().await;
            return Checked::Busy;
        }
        Err(err) => {
            release().await;
            return Checked::Failed(format!("store: {err}"));
        }
    };
    let Found { synthetic, mut accepted, mut comparison, own_mark } = match compare.compare(ctx, &state).await {
        Ok(Some(found)) => found,
        Ok(None) => return in_sync().await,
        Err(reason) => {
            release().await;
            return Checked::Failed(reason);
        }
    };
    let seen = match seen_live(ctx, candidate).await {
        Ok(seen) => seen,
        Err(reason) => {
            release().await;
            return Checked::Failed(reason);
        }
    };
    let own_mark = own_mark.or(candidate.own_mark.clone());
    if !comparison.applied_since(&state.marks, candidate.changed_at, own_mark.as_deref()).differs(seen) {
        return in_sync().await;
    }
    if comparison.todo.is_empty() {
        release().await;
        return Checked::Differs(difference(candidate, &comparison, Repair::Reported));
    }
    // Each repair is one write, a linked record read by the pipeline may come before them.
    if !budget.allows(2 * comparison.todo.len() as u32 + 1) {
        release().await;
        return Checked::OutOfBudget;
    }
    // The envelope is named by the event id, so that the pipeline's lease holder is `holder`.
    accepted.id = candidate.event_id.clone();
    accepted.gate_key = key.clone();
    let outcome = apply(ctx, synthetic, accepted, &comparison, deadline).await;
    let repair = match outcome {
        Ok(Some(outcome)) => Repair::Done(outcome),
        Ok(None) => Repair::Busy,
        Err(reason) => Repair::Failed(reason),
    };
    Checked::Differs(difference(candidate, &comparison, repair))
}

/// Runs the synthetic event through the pipeline and settles it under its gate key; `None`: it
/// would only have waited, and is left for the next run.
async fn apply(
    ctx: &Context,
    synthetic: Synthetic,
    accepted: Accepted,
    comparison: &Comparison,
    deadline: Option<DateTime<Utc>>,
) -> Result<Option<crate::model::Outcome>, String> {
    let started = ctx.clock.now();
    let key = accepted.gate_key.clone();
    let mut progress = Progress::default();
    for planned in comparison.in_sync.iter().chain(&comparison.additive).chain(&comparison.newer) {
        progress.mark_done(salesforce_exec::action_key(planned));
    }
    let work = Work { accepted: &accepted, progress: &mut progress, hop: "" };
    let (attempt, subjects): (Attempt, Subjects) = match &synthetic {
        Synthetic::Incident(event) => pd_to_sfdc::process(ctx.pipeline(), work, event, deadline).await,
        Synthetic::Record(change) => sfdc_to_pd::process(ctx.pipeline(), work, change, deadline).await,
    };
    if let Attempt::Deferred { actions, reason, .. } = &attempt
        && actions.is_empty()
    {
        // Nothing done yet and it would wait (behind a live event of the subject that came in
        // meanwhile, for a breaker): a run does not queue its repairs. The next run compares
        // again, and finds the live event's work done instead of repeating it.
        tracing::info!(event_id = %key, reason, "repair left for the next run");
        if let (Some(order), Some(holder)) = (&subjects.order, &subjects.holder) {
            let _ = ctx.stores.links.update_subject(order, Some(holder), &SubjectUpdate::default()).await;
        }
        let _ = ctx.idempotency.abandon(&key).await;
        return Ok(None);
    }
    let envelope = Envelope::of(accepted, progress, Default::default());
    match ctx.dispatch().settle(envelope, attempt, subjects, started, &[&key]).await {
        Ok(settled) => Ok(Some(settled.outcome)),
        Err(err) => {
            let _ = ctx.idempotency.abandon(&key).await;
            Err(format!("could not settle the repair: {err}"))
        }
    }
}

fn difference(candidate: &Candidate, comparison: &Comparison, repair: Repair) -> Difference {
    Difference {
        side: candidate.side,
        subject: candidate.subject.key(),
        event_id: candidate.event_id.clone(),
        differs: comparison.lines.iter().map(|(_, text)| text.clone()).collect(),
        not_repaired: comparison
            .newer
            .iter()
            .map(|p| format!("{} {} (changed since on the other side)", p.action.name(), p.action.target()))
            .chain(comparison.additive.iter().map(|p| format!("{} {}", p.action.name(), p.action.target())))
            .chain(comparison.unmerged.iter().map(|p| {
                format!(
                    "{} {} (a lost change before another, not compared with it)",
                    p.action.name(),
                    p.action.target()
                )
            }))
            .collect(),
        repair,
    }
}

/// Whether a Salesforce field already holds what a rule would set: the same JSON, or the same
/// text (Salesforce answers numbers and booleans of text fields as text), empty and null alike,
/// or the same instant to the second (a date-time field keeps whole seconds and answers
/// `...:05.000+0000` for a `...:05.123+00:00` written).
pub fn same_value(current: Option<&serde_json::Value>, wanted: &serde_json::Value) -> bool {
    use serde_json::Value;
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let current = current.unwrap_or(&Value::Null);
    if current == wanted || text(current) == text(wanted) {
        return true;
    }
    let instant =
        |v: &Value| v.as_str().and_then(crate::salesforce::time::parse_datetime).map(super::cursor::whole_second);
    matches!((instant(current), instant(wanted)), (Some(a), Some(b)) if a == b)
}

/// The id of a synthetic event: `reconcile-<what>`, as PagerDuty ids are written (letters, digits,
/// `-`, `_`; at most 64), so that the synthetic webhook parses like a real one. Longer ones are
/// shortened to a digest of the whole.
pub fn event_id(what: &str) -> String {
    use sha2::Digest;
    let id: String = format!("{}-{what}", super::EVENT_ID_PREFIX)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    if id.len() <= 64 {
        return id;
    }
    let digest = sha2::Sha256::digest(id.as_bytes());
    format!("{}-{}", super::EVENT_ID_PREFIX, &hex::encode(digest)[..40])
}

#[cfg(test)]
mod tests {
    use super::same_value;
    use serde_json::json;

    #[test]
    fn a_field_holds_a_value_in_any_form_salesforce_answers_it() {
        let holds = |current: serde_json::Value, wanted: serde_json::Value| same_value(Some(&current), &wanted);
        assert!(holds(json!("2026-12-03T10:00:05.000+0000"), json!("2026-12-03T10:00:05.123+00:00")));
        assert!(!holds(json!("2026-12-03T10:00:05.000+0000"), json!("2026-12-03T11:00:05Z")));
        assert!(holds(json!("2026-12-03T11:00:05.000+0000"), json!("2026-12-03T12:00:05+01:00")));
        assert!(holds(json!("3"), json!(3)) && holds(json!(null), json!("")));
        assert!(!holds(json!("Working"), json!("Closed")));
        assert!(!same_value(None, &json!("2026-12-03T10:00:05Z")));
    }
}
