//! Executes the PagerDuty part of a plan, action by action, through the rate-limited client.
//! Incident creation carries an `incident_key` derived from the record and rule, and the client
//! resolves a duplicate-key answer to the existing incident, so a retry never creates a second
//! one. Each created incident is linked to its record.
//!
//! A lost answer is neither lost nor repeated. A write whose outcome is unknown (see
//! [`PagerdutyError::outcome_unknown`]) is marked *uncertain* in the envelope when it is additive;
//! before it is sent again the executor looks for it:
//! - a note (and the note of a resolve) carries a reference (`ref:<12 hex>`, derived from the
//!   event and the action): `GET /incidents/{id}/notes` finds it;
//! - a responder request carries it in its message: the incident's `responder_requests` list it
//!   when the account has that feature; without it, it cannot be checked;
//! - an incident is found by its `incident_key`, resolved or not;
//! - an automation action's invocations for the incident are listed: none means it did not run;
//!   one or more cannot be told apart from someone else's;
//! - an incident workflow's runs cannot be listed at all;
//! - a status update neither: PagerDuty's REST API publishes them (`POST
//!   /incidents/{id}/status_updates`) and lists none (no GET, no log entry type for them), so its
//!   message carries no reference either (stakeholders read it).
//!
//! What cannot be checked is not sent again blindly: it is accepted as done without proof, kept
//! in the envelope's `uncertain` list and audited as "outcome unknown". A state write (status,
//! priority, urgency, assignment, custom field values) is simply sent again.
//!
//! No call is started whose timeout would run past the invocation's deadline less the margin to
//! settle: the client refuses it unsent, and what is left is queued with what succeeded marked done.

use crate::class::Classify;
use crate::clock::Clock;
use crate::handler::ports::PagerdutyPort;
use crate::handler::salesforce_exec::{
    Execution, action_key, action_record, carries_reference, link_created, needs_look, reference, with_reference,
};
use crate::handler::settle::FailureKind;
use crate::model::Link;
use crate::pagerduty::{
    Assignees, CreateIncident, IncidentId, PagerdutyClient, PagerdutyError, PriorityChoice, StatusUpdate, Urgency,
};
use crate::retry::envelope::Progress;
use crate::rules::{self, PagerdutyAction, PlannedAction, by_side};
use crate::store::LinkStore;
use crate::telemetry::metrics;

fn urgency(u: rules::Urgency) -> Urgency {
    match u {
        rules::Urgency::High => Urgency::High,
        rules::Urgency::Low => Urgency::Low,
    }
}

/// What became of one action.
enum Ran {
    /// Sent and answered; the id it created, if any.
    Sent(Option<String>),
    /// Written by an earlier attempt whose answer was lost: found, not sent again.
    Found { id: Option<String>, detail: String },
    /// Its outcome is unknown and cannot be checked: not sent again.
    Unchecked(String),
}

/// What looking for an uncertain write found.
enum Look {
    Found(Option<String>),
    Missing,
    CannotTell(String),
}

/// Runs what is left of `plan`'s PagerDuty actions. Stops at the first failure: later actions
/// may depend on it (an acknowledge after a create), and the retry resumes there. The links of
/// created incidents are written to `links`.
pub async fn execute(
    pagerduty: PagerdutyPort<'_>,
    links: &dyn LinkStore,
    clock: &dyn Clock,
    event_id: &str,
    progress: &mut Progress,
    plan: &[PlannedAction],
    until: Option<tokio::time::Instant>,
) -> Execution {
    let mut execution = Execution::default();
    let pd = match until {
        Some(until) => pagerduty.client.until(until),
        None => pagerduty.client.clone(),
    };
    for step in by_side(plan).pagerduty {
        let (planned, action) = (step.planned, step.action);
        let key = action_key(planned);
        if progress.is_done(&key) {
            continue;
        }
        let before = pd.api_calls();
        let result = attempt(&pd, event_id, progress, action, &key).await;
        let calls = pd.api_calls().saturating_sub(before) as u32;
        execution.api_calls += calls;
        metrics::api_calls("pagerduty", u64::from(calls));
        let ran = match result {
            Ok(ran) => ran,
            Err(err @ PagerdutyError::NoTimeLeft { .. }) => {
                // Not sent: the rest waits for the retry, no attempt spent.
                execution.deferred = Some(err.to_string());
                return execution;
            }
            Err(err) => {
                if err.outcome_unknown() && needs_look(&planned.action) {
                    progress.mark_uncertain(&key);
                }
                metrics::action(planned.action.name(), false);
                pagerduty.report_failure(&err).await;
                let reason = err.to_string();
                execution.actions.push(action_record(planned, false, Some(reason.clone())));
                execution.failure = Some((FailureKind::from(err.class()), reason, Some(planned.rule.clone())));
                if let PagerdutyError::Throttled { wait, .. } = err {
                    // Held back by our limiter (a 429's reset still running): counting it as a
                    // failed attempt would dead-letter events PagerDuty never saw.
                    execution.held_until = Some(clock.now() + chrono::Duration::from_std(wait).unwrap_or_default());
                }
                return execution;
            }
        };
        let (created, detail, verified) = match ran {
            Ran::Sent(created) => (created.clone(), created, true),
            Ran::Found { id, detail } => (id, Some(detail), true),
            Ran::Unchecked(why) => {
                tracing::warn!(action = planned.action.name(), rule = %planned.rule, reason = %why,
                    "outcome of an action unknown after a lost answer: not sent again");
                (None, Some(format!("outcome unknown after a lost answer; not sent again: {why}")), false)
            }
        };
        if let (PagerdutyAction::CreateIncident { record, .. }, Some(incident_id)) = (action, &created) {
            let link = Link {
                incident_id: incident_id.as_str().into(),
                record: record.clone(),
                created_at: clock.now(),
                created_by_rule: Some(planned.rule.clone()),
            };
            if let Err(err) = link_created(links, &mut execution, link).await {
                // Not marked done: the retry finds the same incident by its incident_key and links it.
                let reason = format!("created incident {incident_id} but could not link it: {err}");
                execution.actions.push(action_record(planned, false, Some(reason.clone())));
                execution.failure = Some((FailureKind::Transient, reason, Some(planned.rule.clone())));
                return execution;
            }
        }
        // Accepted without proof stays listed as uncertain (the audit and the DLQ show it).
        progress.mark_done(key);
        metrics::action(planned.action.name(), verified);
        execution.actions.push(action_record(planned, verified, detail));
    }
    if execution.api_calls > 0 {
        let _ = pagerduty.breaker.record_success().await;
    }
    execution
}

/// One action, looking first when an earlier attempt's outcome is unknown.
async fn attempt(
    pd: &PagerdutyClient,
    event_id: &str,
    progress: &mut Progress,
    action: &PagerdutyAction,
    key: &str,
) -> Result<Ran, PagerdutyError> {
    let reference = reference(event_id, key);
    if let PagerdutyAction::Resolve { incident_id, resolution: Some(note) } = action
        && !note.trim().is_empty()
    {
        // The note is added first, as its own step: once written it is not written again when
        // the resolve itself has to be retried. The resolve is a state write, safe to repeat.
        let note_key = format!("{key}#note");
        if !progress.is_done(&note_key) {
            let found = progress.is_uncertain(&note_key) && note_found(pd, incident_id, &reference).await?.is_some();
            if !found {
                progress.clear_uncertain(&note_key);
                if let Err(err) = pd.add_note(incident_id.as_str(), &with_reference(note, &reference)).await {
                    if err.outcome_unknown() {
                        progress.mark_uncertain(&note_key);
                    }
                    return Err(err);
                }
            }
            progress.clear_uncertain(&note_key);
            progress.mark_done(note_key);
        }
        pd.resolve(incident_id.as_str(), None).await?;
        return Ok(Ran::Sent(None));
    }
    if progress.is_uncertain(key) {
        match look(pd, action, &reference).await? {
            Look::Found(id) => {
                progress.clear_uncertain(key);
                let detail = format!(
                    "found{}: an earlier attempt did it and its answer was lost; not sent again",
                    id.as_deref().map(|id| format!(" ({id})")).unwrap_or_default()
                );
                return Ok(Ran::Found { id, detail });
            }
            Look::CannotTell(why) => return Ok(Ran::Unchecked(why)),
            Look::Missing => progress.clear_uncertain(key),
        }
    }
    run(pd, action, &reference).await.map(Ran::Sent)
}

/// The id of the incident's note that carries `reference`, if one does.
async fn note_found(
    pd: &PagerdutyClient,
    incident_id: &IncidentId,
    reference: &str,
) -> Result<Option<String>, PagerdutyError> {
    let notes = pd.list_notes(incident_id.as_str()).await?;
    Ok(notes.iter().find(|n| carries_reference(&n.content, reference)).map(|n| n.id.clone()))
}

/// Whether an additive write whose answer was lost happened.
async fn look(pd: &PagerdutyClient, action: &PagerdutyAction, reference: &str) -> Result<Look, PagerdutyError> {
    Ok(match action {
        PagerdutyAction::AddNote { incident_id, .. } => match note_found(pd, incident_id, reference).await? {
            Some(id) => Look::Found(Some(id)),
            None => Look::Missing,
        },
        PagerdutyAction::CreateIncident { incident_key, .. } => {
            // Resolved or not: a resolved one would not stop PagerDuty from opening a second.
            match pd.find_incidents_by_key(incident_key).await?.first() {
                Some(incident) => Look::Found(Some(incident.id.clone())),
                None => Look::Missing,
            }
        }
        PagerdutyAction::AddResponders { incident_id, .. } => {
            let incident = pd.get_incident(incident_id.as_str()).await?;
            match incident.raw.get("responder_requests").and_then(|r| r.as_array()) {
                Some(requests) => {
                    let ours = requests.iter().any(|r| {
                        r.get("message").and_then(|m| m.as_str()).is_some_and(|m| carries_reference(m, reference))
                    });
                    if ours { Look::Found(None) } else { Look::Missing }
                }
                None => Look::CannotTell(
                    "PagerDuty does not list this incident's responder requests (only accounts with the responder requests feature get them)".into(),
                ),
            }
        }
        PagerdutyAction::RunAutomationAction { incident_id, action_id } => {
            match pd.list_automation_invocations(incident_id.as_str(), action_id).await {
                Ok(list) if list.is_empty() => Look::Missing,
                Ok(list) => Look::CannotTell(format!(
                    "PagerDuty lists {} invocation(s) of action {action_id} for the incident and cannot say whether one is this event's",
                    list.len()
                )),
                Err(err) if err.is_transient() => return Err(err),
                Err(err) => Look::CannotTell(format!("its invocations could not be listed: {err}")),
            }
        }
        PagerdutyAction::RunIncidentWorkflow { workflow_id, .. } => Look::CannotTell(format!(
            "PagerDuty's API lists no runs of incident workflow {workflow_id}, so whether it ran cannot be checked"
        )),
        PagerdutyAction::PublishStatusUpdate { .. } => Look::CannotTell(
            "PagerDuty's API lists no status updates of an incident, so whether it was published cannot be checked"
                .into(),
        ),
        // State writes are never marked uncertain: they are sent again.
        PagerdutyAction::Acknowledge { .. }
        | PagerdutyAction::Resolve { .. }
        | PagerdutyAction::SetPriority { .. }
        | PagerdutyAction::SetUrgency { .. }
        | PagerdutyAction::Reassign { .. }
        | PagerdutyAction::SetCustomFields { .. } => Look::Missing,
    })
}

/// One action; `Ok(Some(id))` names what it created.
async fn run(
    pd: &PagerdutyClient,
    action: &PagerdutyAction,
    reference: &str,
) -> Result<Option<String>, PagerdutyError> {
    match action {
        PagerdutyAction::CreateIncident {
            service_id,
            escalation_policy_id,
            urgency: u,
            priority,
            title,
            body,
            incident_key,
            ..
        } => {
            let created = pd
                .create_incident(&CreateIncident {
                    title: title.clone(),
                    service_id: service_id.clone(),
                    urgency: u.map(urgency),
                    priority: priority.clone().map(PriorityChoice::Name),
                    body_details: body.clone(),
                    incident_key: Some(incident_key.clone()),
                    escalation_policy_id: escalation_policy_id.clone(),
                })
                .await?;
            Ok(Some(created.id))
        }
        PagerdutyAction::Acknowledge { incident_id } => pd.acknowledge(incident_id.as_str()).await.map(|_| None),
        PagerdutyAction::Resolve { incident_id, resolution } => {
            pd.resolve(incident_id.as_str(), resolution.as_deref()).await.map(|_| None)
        }
        PagerdutyAction::SetPriority { incident_id, priority } => {
            pd.set_priority(incident_id.as_str(), priority).await.map(|_| None)
        }
        PagerdutyAction::SetUrgency { incident_id, urgency: u } => {
            pd.set_urgency(incident_id.as_str(), urgency(*u)).await.map(|_| None)
        }
        PagerdutyAction::RunIncidentWorkflow { incident_id, workflow_id } => {
            pd.run_incident_workflow(incident_id.as_str(), workflow_id).await
        }
        PagerdutyAction::RunAutomationAction { incident_id, action_id } => {
            pd.run_automation_action(incident_id.as_str(), action_id).await
        }
        PagerdutyAction::Reassign { incident_id, user_ids, escalation_policy_id } => {
            let to = match escalation_policy_id {
                Some(ep) => Assignees::EscalationPolicy(ep.clone()),
                None => Assignees::Users(user_ids.clone()),
            };
            pd.reassign(incident_id.as_str(), &to).await.map(|_| None)
        }
        PagerdutyAction::AddResponders { incident_id, user_ids, escalation_policy_ids, message } => {
            let message = message.as_deref().unwrap_or("Your help is requested (from Salesforce)");
            pd.add_responders(
                incident_id.as_str(),
                user_ids,
                escalation_policy_ids,
                &with_reference(message, reference),
            )
            .await
            .map(|_| None)
        }
        PagerdutyAction::AddNote { incident_id, content } => {
            pd.add_note(incident_id.as_str(), &with_reference(content, reference)).await
        }
        PagerdutyAction::PublishStatusUpdate { incident_id, message, subject, html_message } => {
            let update =
                StatusUpdate { message: message.clone(), subject: subject.clone(), html_message: html_message.clone() };
            pd.publish_status_update(incident_id.as_str(), &update).await.map(|_| None)
        }
        PagerdutyAction::SetCustomFields { incident_id, fields } => {
            pd.set_custom_fields(incident_id.as_str(), fields).await.map(|_| None)
        }
    }
}
