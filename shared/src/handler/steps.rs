//! The steps both directions take between "accepted" and "act": refuse stale events, load the
//! rules, plan, and make sure the service may be called now.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::handler::context::Context;
use crate::handler::salesforce_exec::Watermark;
use crate::handler::settle::{Attempt, FailureKind, Subjects, matched_rules, store_failure};
use crate::retry::breaker::{Breaker, Permit};
use crate::retry::envelope::Envelope;
use crate::rules::{CachedRules, Evaluation, Event};
use crate::store::{PendingEvent, Subject, SubjectState};
use crate::telemetry::metrics;

/// The subject's links and watermark (one store read), or the attempt that says why not.
pub async fn subject_state(ctx: &Context, subject: &Subject) -> Result<SubjectState, Attempt> {
    ctx.stores.links.subject_state(subject).await.map_err(store_failure)
}

/// `Some(Stale)` when something newer than `occurred_at` was already applied to the subject.
pub fn refuse_stale(subject: &Subject, occurred_at: DateTime<Utc>, last: Option<DateTime<Utc>>) -> Option<Attempt> {
    let last = last.filter(|last| *last > occurred_at)?;
    Some(Attempt::Stale {
        reason: format!("happened at {occurred_at} but {last} was already applied for {}", subject.key()),
    })
}

/// Records `order`, the subject whose order the event keeps, and returns the event's entry in
/// its pending set. When the set already lists the event (a copy of it was queued before), the
/// envelope says so, so that the event leaves the set when it settles.
pub fn note_order(
    envelope: &mut Envelope,
    subjects: &mut Subjects,
    order: &Subject,
    pending: &[PendingEvent],
) -> PendingEvent {
    let this = crate::handler::settle::pending_event(envelope);
    if envelope.waits_in.is_none() && pending.contains(&this) {
        envelope.waits_in = Some(order.clone());
    }
    subjects.order = Some(order.clone());
    this
}

/// `Some(Deferred)` while an earlier event of `order` waits in the retry queue. Acting now would
/// apply this one first, and an event that needs what the earlier one makes (an acknowledge
/// needs the Case the trigger opens) would find nothing to act on and be lost. Entries older than
/// twice the retry policy's maximum age are ignored: a lost one must not hold a subject up for good.
pub fn wait_behind(ctx: &Context, order: &Subject, this: &PendingEvent, pending: &[PendingEvent]) -> Option<Attempt> {
    let max_age = chrono::Duration::from_std(ctx.dispatch.policy.max_age * 2).unwrap_or(chrono::Duration::days(2));
    let horizon = ctx.clock.now() - max_age;
    let earlier = pending.iter().filter(|p| p.event_id != this.event_id && *p < this && p.occurred_at > horizon);
    let count = earlier.count();
    (count > 0).then(|| Attempt::Deferred {
        reason: format!("waiting behind {count} earlier event(s) of {} in the retry queue", order.key()),
        until: Some(ctx.clock.now() + chrono::Duration::seconds(20)),
        actions: vec![],
        api_calls: 0,
    })
}

/// The current rules (cached), or the attempt that says why there are none.
pub async fn rules(ctx: &Context) -> Result<Arc<CachedRules>, Attempt> {
    ctx.rules.current().await.map_err(|err| Attempt::Failed {
        kind: if err.is_transient() { FailureKind::Transient } else { FailureKind::Permanent },
        reason: format!("rules unavailable: {err}"),
        rule: None,
        rules: vec![],
        actions: vec![],
        api_calls: 0,
    })
}

/// Evaluates, records the plan in the envelope, and skips when nothing is to be done.
pub fn plan(rules: &CachedRules, input: &Event, envelope: &mut Envelope) -> Result<(Evaluation, Vec<String>), Attempt> {
    let evaluation = rules.rules.plan(input);
    envelope.plan = evaluation.plan.iter().filter_map(|p| serde_json::to_value(p).ok()).collect();
    let matched = matched_rules(&evaluation);
    metrics::rules_matched(matched.len());
    if evaluation.plan.is_empty() {
        return Err(Attempt::Skipped { reason: "no rule matched".into(), rules: matched });
    }
    Ok((evaluation, matched))
}

/// `Some(Deferred)` when the service must not be called now: its breaker is open, or too little
/// time is left before the function's deadline.
pub async fn hold_back(
    ctx: &Context,
    breaker: &Breaker,
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
    let left = (deadline? - ctx.clock.now()).to_std().unwrap_or_default();
    (left < ctx.settings.min_time_left).then(|| Attempt::Deferred {
        reason: format!("only {left:?} left before the deadline: queued"),
        until: None,
        actions: vec![],
        api_calls,
    })
}

/// After an applied attempt, moves the subject's watermark to the event's time (unless the
/// execution already did, with the link it created).
pub async fn mark_applied(ctx: &Context, attempt: &Attempt, execution_moved_it: bool, watermark: Watermark<'_>) {
    if matches!(attempt, Attempt::Applied { .. })
        && !execution_moved_it
        && let Err(err) = ctx.stores.links.advance_last_applied(watermark.subject, watermark.at).await
    {
        tracing::warn!(error = %err, subject = %watermark.subject.key(), "applied, but could not move the watermark");
    }
}
