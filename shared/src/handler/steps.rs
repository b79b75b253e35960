//! The steps both directions take between "accepted" and "act": take the subject, wait behind
//! earlier events, load the rules, plan without what newer events overtook, and make sure the
//! service may be called now. Each step is a function of the ports it uses (the subjects, the
//! clock and the policy as [`SubjectPorts`], the rules cache, a breaker, the audit log), not of
//! the whole context.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::handler::settle::{Attempt, FailureKind, RetryPolicy, Subjects, matched_rules, store_failure};
use crate::retry::breaker::{Breaker, Permit};
use crate::retry::envelope::{Accepted, Progress};
use crate::rules::{CachedRules, Evaluation, Event, RulesCache, SkipReason};
use crate::store::{AuditLog, Lease, LinkStore, PendingEvent, Subject, SubjectState};
use crate::telemetry::metrics;

/// The event one attempt works on: what arrived, which it only reads, and what attempts did so
/// far, the one thing it writes. The envelope is assembled from them when the attempt settles.
pub struct Work<'a> {
    pub accepted: &'a Accepted,
    pub progress: &'a mut Progress,
    /// The trip through the retry queue (empty for a live delivery): with the envelope id it
    /// names who holds the subject (see [`Accepted::lease_holder`]).
    pub hop: &'a str,
}

/// What the ordering steps use, and nothing else: the subjects in the store, the clock, the
/// retry policy (borrowed from the context, [`crate::handler::context::Context::subject_ports`]).
#[derive(Clone, Copy)]
pub struct SubjectPorts<'a> {
    pub links: &'a dyn LinkStore,
    pub clock: &'a dyn Clock,
    pub policy: &'a RetryPolicy,
}

impl SubjectPorts<'_> {
    fn wait_step(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.policy.wait_step).unwrap_or(chrono::Duration::seconds(15))
    }
}

/// The subject's links, marks and pending events (one store read), or the attempt that says why not.
pub async fn subject_state(ports: SubjectPorts<'_>, subject: &Subject) -> Result<SubjectState, Attempt> {
    ports.links.subject_state(subject).await.map_err(store_failure)
}

/// Takes `order` for `holder` ([`Accepted::lease_holder`]) until the deadline, so that two events of one subject never act
/// at the same time (Lambda runs deliveries of one incident in parallel). `Err(Deferred)` while
/// another event holds it: this one is queued behind it.
pub async fn take_subject(
    ports: SubjectPorts<'_>,
    holder: String,
    subjects: &mut Subjects,
    order: &Subject,
    deadline: Option<DateTime<Utc>>,
) -> Result<(), Attempt> {
    let now = ports.clock.now();
    let until = deadline.unwrap_or(now + chrono::Duration::seconds(30));
    subjects.order = Some(order.clone());
    match ports.links.lease(order, &holder, now, until).await.map_err(store_failure)? {
        Lease::Acquired => {
            subjects.holder = Some(holder);
            Ok(())
        }
        Lease::Held { until } => Err(Attempt::Deferred {
            reason: format!("another event of {} is being applied now: queued behind it", order.key()),
            until: Some(
                until.unwrap_or(now).clamp(now + chrono::Duration::seconds(1), now + chrono::Duration::seconds(10)),
            ),
            actions: vec![],
            api_calls: 0,
        }),
    }
}

/// Notes whether the subject's pending set lists this event (a copy of it was queued before,
/// and the listing went through), so that it is listed when queued again and leaves the set
/// when it settles; takes over the progress the event's earlier deliveries left on the subject.
/// Returns the event's entry.
pub fn note_order(accepted: &Accepted, progress: &mut Progress, order: &Subject, state: &SubjectState) -> PendingEvent {
    let this = crate::handler::settle::pending_event(accepted);
    progress.waits_in = state.pending.contains(&this).then(|| order.clone());
    if let Some(keys) = state.progress.get(&accepted.event_id) {
        for key in keys {
            match key.strip_prefix(UNCERTAIN) {
                Some(key) if !progress.is_done(key) => progress.mark_uncertain(key),
                Some(_) => {}
                None => progress.mark_done(key.clone()),
            }
        }
    }
    this
}

/// Marks, in an event's progress on its subject, an action whose answer was lost (action keys
/// never start with it): a later delivery looks for it before sending it again.
const UNCERTAIN: char = '?';

/// The event's progress as its subject keeps it: the actions done, and those whose outcome is
/// unknown (see [`note_order`]). The message that carries the envelope may be lost or outrun by
/// an older copy; the subject's item is not.
pub fn progress_keys(progress: &Progress) -> Vec<String> {
    let uncertain = progress.uncertain.iter().filter(|k| !progress.is_done(k)).map(|k| format!("{UNCERTAIN}{k}"));
    progress.done.iter().cloned().chain(uncertain).collect()
}

/// `Some(Deferred)` while an earlier event of `order` waits in the retry queue. Acting now would
/// apply this one first, and an event that needs what the earlier one makes (an acknowledge
/// needs the Case the trigger opens) would find nothing to act on and be lost. Entries older than
/// twice the retry policy's maximum age are ignored: a lost one must not hold a subject up for good.
pub fn wait_behind(
    ports: SubjectPorts<'_>,
    order: &Subject,
    this: &PendingEvent,
    pending: &[PendingEvent],
) -> Option<Attempt> {
    let max_age = chrono::Duration::from_std(ports.policy.max_age * 2).unwrap_or(chrono::Duration::days(2));
    let horizon = ports.clock.now() - max_age;
    let earlier: Vec<&str> = pending
        .iter()
        .filter(|p| p.event_id != this.event_id && *p < this && p.occurred_at > horizon)
        .map(|p| p.event_id.as_str())
        .collect();
    (!earlier.is_empty()).then(|| Attempt::Deferred {
        reason: format!(
            "waiting behind {} earlier event(s) of {} in the retry queue ({})",
            earlier.len(),
            order.key(),
            earlier.join(", ")
        ),
        until: Some(ports.clock.now() + ports.wait_step()),
        actions: vec![],
        api_calls: 0,
    })
}

/// How long an event that finds nothing linked waits for its subject's opening event (the
/// trigger that opens the Case, the Case insert that opens the incident) before it is taken
/// as it is. Senders deliver out of order; the opening event may be queued or still running.
pub const OPENING_WAIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// `Some(Deferred)` when a rule would act but nothing is linked yet (`evaluation`'s rules say
/// so) and the subject's opening event has not settled: the event waits for it, up to
/// [`OPENING_WAIT`]. Events no rule would act on, linked or not, are skipped at once.
pub fn wait_for_opening(
    ports: SubjectPorts<'_>,
    accepted: &Accepted,
    state: &SubjectState,
    opening: bool,
    evaluation: &Evaluation,
) -> Option<Attempt> {
    let needs_link = needs_link(evaluation);
    let waited = (ports.clock.now() - accepted.accepted_at).to_std().unwrap_or_default();
    let waits = needs_link && !opening && !state.opened && state.links.is_empty() && waited < OPENING_WAIT;
    // Each wait as long as all the waits before it (15 s, 30 s, 1 min, ...): a record that existed
    // before the bridge, whose insert never comes, costs a handful of trips, not one every step.
    let next = ports.wait_step().max(chrono::Duration::from_std(waited).unwrap_or_default());
    waits.then(|| Attempt::Deferred {
        reason: "nothing is linked yet and the subject's opening event has not been seen: waiting for it".into(),
        until: Some(ports.clock.now() + next),
        actions: vec![],
        api_calls: 0,
    })
}

/// A rule would act on the subject's links, and there are none.
pub fn needs_link(evaluation: &Evaluation) -> bool {
    evaluation.explanation.rules.iter().any(|r| r.skipped == Some(SkipReason::NoLink))
}

/// The current rules (cached), or the attempt that says why there are none.
pub async fn rules(cache: &RulesCache) -> Result<Arc<CachedRules>, Attempt> {
    cache.current().await.map_err(|err| Attempt::Failed {
        kind: if err.is_transient() { FailureKind::Transient } else { FailureKind::Permanent },
        reason: format!("rules unavailable: {err}"),
        rule: None,
        rules: vec![],
        actions: vec![],
        api_calls: 0,
    })
}

/// Evaluates and drops the state actions a newer event already overtook (see
/// [`crate::rules::Plan::without_older_state`]); records the plan in the event's progress. `Err` when
/// nothing is left to do: stale when a newer event overtook everything, otherwise skipped, or
/// deferred while the subject's opening event may still bring something to act on.
pub fn plan(
    ports: SubjectPorts<'_>,
    rules: &CachedRules,
    input: &Event,
    accepted: &Accepted,
    progress: &mut Progress,
    state: &SubjectState,
    opening: bool,
) -> Result<(Evaluation, Vec<String>), Attempt> {
    let mut evaluation = rules.rules.plan(input);
    let (plan, overtaken) =
        std::mem::take(&mut evaluation.plan).without_older_state(&state.marks, accepted.occurred_at);
    evaluation.plan = plan;
    progress.plan = evaluation.plan.iter().filter_map(|p| serde_json::to_value(p).ok()).collect();
    let matched = matched_rules(&evaluation);
    metrics::rules_matched(matched.len());
    if !evaluation.plan.is_empty() {
        return Ok((evaluation, matched));
    }
    if overtaken > 0 {
        let newest = state.last_applied().map(|t| t.to_rfc3339()).unwrap_or_default();
        return Err(Attempt::Stale {
            reason: format!(
                "happened at {} but newer events (up to {newest}) already set what it would set",
                accepted.occurred_at.to_rfc3339()
            ),
        });
    }
    if let Some(wait) = wait_for_opening(ports, accepted, state, opening, &evaluation) {
        return Err(wait);
    }
    Err(Attempt::Skipped { reason: nothing_planned(&evaluation), rules: matched })
}

/// Why nothing was planned, as the audit trail says it: "no rule matched", or what the rules
/// whose conditions held left out (a Case already linked: the retry of a creation whose answer
/// was lost, the Case's echo having linked it meanwhile).
fn nothing_planned(evaluation: &Evaluation) -> String {
    let left_out: Vec<String> = evaluation
        .explanation
        .rules
        .iter()
        .filter(|r| r.skipped == Some(SkipReason::NothingToDo))
        .flat_map(|r| r.actions.iter().filter_map(move |a| a.note.as_ref().map(|n| format!("{}: {n}", r.rule))))
        .collect();
    if left_out.is_empty() { "no rule matched".into() } else { format!("nothing left to do ({})", left_out.join("; ")) }
}

/// The marks of the plan's state actions that are done: what the event set, to write on its subject.
pub fn marks_done(plan: &[crate::rules::PlannedAction], progress: &Progress) -> Vec<String> {
    plan.iter()
        .filter(|p| progress.is_done(&crate::handler::salesforce_exec::action_key(p)))
        .flat_map(|p| p.action.state_marks())
        .collect()
}

/// `Some(Deferred)` when the service must not be called now: its breaker is open, or too little
/// time is left before the function's deadline.
pub async fn hold_back(
    breaker: &Breaker,
    clock: &dyn Clock,
    min_time_left: std::time::Duration,
    deadline: Option<DateTime<Utc>>,
    api_calls: u32,
) -> Option<Attempt> {
    match breaker.permit().await {
        Ok(Permit::Wait { until }) => {
            return Some(Attempt::Deferred {
                reason: format!("{} breaker open: queued until it recovers", breaker.service()),
                until: Some(until),
                actions: vec![],
                api_calls,
            });
        }
        Ok(Permit::Call | Permit::Probe) => {}
        Err(err) => return Some(store_failure(err)),
    }
    let left = (deadline? - clock.now()).to_std().unwrap_or_default();
    (left < min_time_left).then(|| Attempt::Deferred {
        reason: format!("only {left:?} left before the deadline: queued"),
        until: None,
        actions: vec![],
        api_calls,
    })
}

/// Keeps an authentic payload that can never be used in the audit trail, for review (its first
/// [`crate::model::MAX_KEPT_PAYLOAD`] bytes, the reason cut to [`crate::model::MAX_REASON`]).
/// `Err`: the store is unavailable and the sender must deliver it again. An entry the store
/// refuses for good is only logged: the same bytes would be refused again.
pub async fn keep_rejected(
    audit: &dyn AuditLog,
    clock: &dyn Clock,
    direction: crate::model::Direction,
    request: &crate::handler::http::InboundRequest,
    event_id: &str,
    reason: &str,
) -> Result<(), crate::store::StoreError> {
    use crate::model::{AuditEntry, MAX_REASON, Outcome, bounded_key, cut};
    metrics::event_rejected("malformed");
    tracing::warn!(correlation_id = %request.correlation_id, reason, "authentic payload unusable; kept for review");
    let mut entry =
        AuditEntry::new(clock.now(), direction, &request.correlation_id, bounded_key(event_id), Outcome::Rejected);
    entry.reason = Some(format!("rejected: {}", cut(reason, MAX_REASON)));
    entry.keep_payload(&request.body);
    match audit.append(&entry).await {
        Err(err) if err.is_permanent() => {
            metrics::error();
            tracing::error!(error = %err, "the store refused the rejected payload; acknowledged all the same");
            Ok(())
        }
        Err(err) => {
            tracing::error!(error = %err, "could not keep the rejected payload");
            Err(err)
        }
        Ok(()) => Ok(()),
    }
}
