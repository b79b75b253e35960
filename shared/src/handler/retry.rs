//! The retry function: each SQS message is one envelope. Retry only what is left, respect the
//! per-incident/record order, hold messages back while a breaker is open, and report
//! failures per message (`ReportBatchItemFailures`) so one bad message does not redeliver its
//! batch.

use chrono::{DateTime, Utc};

use crate::handler::context::Context;
use crate::handler::idempotency::{Gate, Idempotency, Settlement};
use crate::handler::ports::Pipeline;
use crate::handler::settle::{Attempt, Dispatch, FailureKind, Subjects};
use crate::handler::steps::Work;
use crate::handler::{pd_to_sfdc, sfdc_to_pd};
use crate::model::{Direction, GateKey, Outcome};
use crate::retry::envelope::{Envelope, QueuedEvent};
use crate::telemetry::metrics;

/// One message of the batch.
#[derive(Debug, Clone)]
pub struct Message {
    pub message_id: String,
    pub body: String,
    pub receive_count: u32,
}

/// Handles a batch; returns the ids of the messages SQS must deliver again.
pub async fn handle_batch(ctx: &Context, messages: Vec<Message>, deadline: Option<DateTime<Utc>>) -> Vec<String> {
    handle_batch_reconciling(ctx, None, messages, deadline).await
}

/// [`handle_batch`], running a reconcile for each "reconcile" message with `reconcile`
/// ([`crate::reconcile::trigger`]); without it such a message is logged and dropped.
pub async fn handle_batch_reconciling(
    ctx: &Context,
    reconcile: Option<&crate::reconcile::trigger::Runner>,
    messages: Vec<Message>,
    deadline: Option<DateTime<Utc>>,
) -> Vec<String> {
    let (dispatch, pipeline) = (ctx.dispatch(), ctx.pipeline());
    let mut failed = Vec::new();
    // The envelopes first, the reconcile runs after them with the time left: a run takes as
    // long as its deadline lets it, and would leave the envelopes of its batch none (and find
    // their subjects busy).
    let (triggers, envelopes): (Vec<_>, Vec<_>) = messages
        .into_iter()
        .map(|m| (crate::reconcile::trigger::Trigger::parse(&m.body), m))
        .partition(|(trigger, _)| trigger.is_some());
    for (_, message) in envelopes {
        let span = tracing::info_span!("retry_message", message_id = %message.message_id);
        let _enter = span.enter();
        match handle_message(dispatch, pipeline, &message, deadline).await {
            Ok(outcome) => {
                tracing::info!(outcome = outcome.as_str(), "retry message handled");
            }
            Err(reason) => {
                tracing::error!(reason = %reason, "retry message not handled: SQS will deliver it again");
                metrics::error();
                failed.push(message.message_id);
            }
        }
    }
    for (trigger, message) in triggers {
        let span = tracing::info_span!("retry_message", message_id = %message.message_id);
        let _enter = span.enter();
        match (reconcile, trigger) {
            (Some(runner), Some(trigger)) => {
                runner.run(ctx, &trigger, &message.message_id, deadline).await;
            }
            _ => tracing::error!("reconcile message, but this function runs no reconcile: dropped"),
        }
    }
    failed
}

/// `Ok`: the message may be deleted (applied, re-queued or dead-lettered). `Err`: keep it.
async fn handle_message(
    dispatch: Dispatch<'_>,
    pipeline: Pipeline<'_>,
    message: &Message,
    deadline: Option<DateTime<Utc>>,
) -> Result<Outcome, String> {
    let started = dispatch.clock.now();
    let envelope = match Envelope::from_json(&message.body) {
        Ok(envelope) => envelope,
        Err(err) => {
            // Not ours, or corrupt: nothing to retry. Keep it whole in the DLQ for a person.
            dispatch.queues.dlq.send(&message.body, std::time::Duration::ZERO).await.map_err(|e| e.to_string())?;
            metrics::dlq_send();
            tracing::error!(error = %err, "unreadable retry message moved to the DLQ");
            return Ok(Outcome::DeadLettered);
        }
    };
    // One copy of each send is handled: the others (SQS's duplicates, a send repeated after a
    // lost answer, a redelivery after a lost delete) would apply the same step again.
    let hop_key = GateKey::hop(envelope.id(), &envelope.trip.hop, envelope.trip.replays);
    match dispatch.idempotency.begin(&hop_key, deadline).await {
        Ok(Gate::Proceed) => {}
        Ok(Gate::Duplicate { .. }) => {
            tracing::info!(envelope = %envelope.id(), "copy of a retry message already handled: dropped");
            return Ok(Outcome::Duplicate);
        }
        Ok(Gate::Busy { .. }) => return Err("another invocation is handling a copy of this message".into()),
        Err(err) => return Err(format!("idempotency store unavailable: {err}")),
    }
    let mut keys = vec![hop_key];
    // The event's gate as it was when this copy took its turn: given back so on a failure.
    let mut turn: Option<(GateKey, Settlement)> = None;
    let result = match owns_event(dispatch.idempotency, &envelope, deadline).await {
        Ok(Ownership::Stray { first }) => {
            metrics::event_duplicate();
            tracing::warn!(envelope = %envelope.id(), event_id = %envelope.accepted.event_id, first_outcome = %first,
                "another delivery of this event settled it: this envelope is a stray copy and is dropped");
            let _ = dispatch.idempotency.finish(&keys[0], &Settlement::plain(Outcome::Duplicate)).await;
            dispatch.unlist(&envelope).await;
            return Ok(Outcome::Duplicate);
        }
        Ok(Ownership::Owner { queued }) => {
            // The event's key records where this envelope ends, as it does for a live delivery:
            // a copy of an earlier trip then finds it settled and stands down.
            if let Some(queued) = queued {
                keys.push(envelope.accepted.gate_key.clone());
                turn = Some((envelope.accepted.gate_key.clone(), queued));
            }
            handle_envelope(dispatch, pipeline, envelope, started, deadline, &keys).await
        }
        Ok(Ownership::Taken { gate_key }) => {
            keys.push(gate_key);
            handle_envelope(dispatch, pipeline, envelope, started, deadline, &keys).await
        }
        Err(err) => Err(err),
    };
    if result.is_err() {
        for key in &keys {
            match &turn {
                Some((event_key, queued)) if event_key == key => {
                    let _ = dispatch.idempotency.finish(key, queued).await;
                }
                _ => {
                    let _ = dispatch.idempotency.abandon(key).await;
                }
            }
        }
    }
    result
}

/// Whether this envelope may act for its event.
enum Ownership {
    /// The gate named this envelope, and this copy took the event's turn (`queued`: what the
    /// gate said), or the envelope predates gate keys (`None`).
    Owner { queued: Option<Settlement> },
    /// The gate was free: the delivery that sent this envelope released it (it could not tell
    /// whether the send went through). This envelope holds it now; the sender's redelivery will
    /// find the event handled.
    Taken { gate_key: GateKey },
    /// The gate names another envelope or a delivery that settled the event itself.
    Stray { first: String },
}

/// A delivery whose send to the retry queue timed out answers 5xx and releases the event's gate
/// so that the sender delivers again, yet the message may have been stored. The gate decides
/// which of the two copies acts: without this check both would, and a Case Comment or an
/// incident note would be written twice.
async fn owns_event(
    idempotency: &Idempotency,
    envelope: &Envelope,
    deadline: Option<DateTime<Utc>>,
) -> Result<Ownership, String> {
    let gate_key = &envelope.accepted.gate_key;
    if gate_key.is_empty() {
        return Ok(Ownership::Owner { queued: None });
    }
    match idempotency.begin(gate_key, deadline).await {
        Ok(Gate::Proceed) => Ok(Ownership::Taken { gate_key: gate_key.clone() }),
        // Two hops of this envelope can both be in the queue (a send that stored the message and
        // lost the answer): one at a time, or one would write "queued" over the other's "applied"
        // and its next hop would do the event again.
        Ok(Gate::Duplicate { first }) if first.is_owned_by(envelope.id()) => {
            match idempotency.take_turn(gate_key, &first, deadline).await {
                Ok(Gate::Proceed) => Ok(Ownership::Owner { queued: Some(first) }),
                Ok(Gate::Duplicate { first: now }) if now.is_owned_by(envelope.id()) => {
                    Err("the event's gate changed while this copy looked: trying again later".into())
                }
                Ok(Gate::Duplicate { first: now }) => Ok(Ownership::Stray { first: now.outcome }),
                Ok(Gate::Busy { .. }) => {
                    Err("another copy of this envelope is handling the event now; trying again later".into())
                }
                Err(err) => Err(format!("idempotency store unavailable: {err}")),
            }
        }
        Ok(Gate::Duplicate { first }) => Ok(Ownership::Stray { first: first.outcome }),
        Ok(Gate::Busy { .. }) => Err("a delivery of this event is being handled now; trying again later".into()),
        Err(err) => Err(format!("idempotency store unavailable: {err}")),
    }
}

/// Retries the envelope. On `Ok` the message's `keys` (its copy's, and the event's when this
/// envelope took the event over) are complete; on `Err` the caller releases them.
async fn handle_envelope(
    dispatch: Dispatch<'_>,
    pipeline: Pipeline<'_>,
    mut envelope: Envelope,
    started: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
    keys: &[GateKey],
) -> Result<Outcome, String> {
    if let Some(not_before) = envelope.trip.not_before
        && not_before > started
    {
        // A wait longer than one SQS hop: send it on for the rest of the wait.
        let wait = (not_before - started).to_std().unwrap_or_default();
        let id = envelope.id().to_string();
        dispatch.enqueue(&mut envelope, wait).await.map_err(|e| e.to_string())?;
        for key in keys {
            let _ = dispatch.idempotency.finish(key, &Settlement::of(Outcome::Queued, &id)).await;
        }
        return Ok(Outcome::Queued);
    }
    envelope.trip.not_before = None;
    let Envelope { accepted, progress, trip, .. } = &mut envelope;
    let work = Work { accepted, progress, hop: &trip.hop };
    let (attempt, subjects) = match (&accepted.direction, &accepted.event) {
        (Direction::PagerdutyToSalesforce, QueuedEvent::PagerdutyWebhook { body, .. }) => {
            match pd_to_sfdc::parse_queued(body) {
                Ok(event) => pd_to_sfdc::process(pipeline, work, &event, deadline).await,
                Err(reason) => (permanent(format!("queued webhook no longer parses: {reason}")), Subjects::default()),
            }
        }
        (Direction::SalesforceToPagerduty, QueuedEvent::SalesforceRecord { .. }) => {
            let change = sfdc_to_pd::Change::from_accepted(accepted).expect("matched a record event");
            sfdc_to_pd::process(pipeline, work, &change, deadline).await
        }
        (direction, _) => {
            (permanent(format!("envelope direction {direction} does not match its event")), Subjects::default())
        }
    };
    let keys: Vec<&GateKey> = keys.iter().collect();
    let settled = dispatch.settle(envelope, attempt, subjects, started, &keys).await.map_err(|e| e.to_string())?;
    Ok(settled.outcome)
}

fn permanent(reason: String) -> Attempt {
    Attempt::Failed { kind: FailureKind::Permanent, reason, rule: None, rules: vec![], actions: vec![], api_calls: 0 }
}
