//! Executes the PagerDuty part of a plan, action by action, through the rate-limited client.
//! Incident creation carries an `incident_key` derived from the record and rule, and the client
//! resolves a duplicate-key answer to the existing incident, so a retry never creates a second
//! one. Each created incident is linked to its record.

use crate::handler::context::Context;
use crate::handler::salesforce_exec::{Execution, Watermark, action_key, action_record, link_created};
use crate::handler::settle::FailureKind;
use crate::model::Link;
use crate::pagerduty::{Assignees, CreateIncident, ErrorKind, PagerdutyError, PriorityChoice, Urgency};
use crate::retry::breaker::Signal;
use crate::retry::envelope::Envelope;
use crate::rules::{self, Action, PlannedAction};
use crate::telemetry::metrics;

/// How the retry machinery treats a PagerDuty error kind.
pub fn failure_kind(kind: ErrorKind) -> FailureKind {
    match kind {
        ErrorKind::Transient => FailureKind::Transient,
        ErrorKind::Auth => FailureKind::Auth,
        ErrorKind::Permanent | ErrorKind::BadInput => FailureKind::Permanent,
    }
}

fn urgency(u: rules::Urgency) -> Urgency {
    match u {
        rules::Urgency::High => Urgency::High,
        rules::Urgency::Low => Urgency::Low,
    }
}

/// Runs what is left of `plan`'s PagerDuty actions. Stops at the first failure: later actions
/// may depend on it (an acknowledge after a create), and the retry resumes there.
pub async fn execute(
    ctx: &Context,
    envelope: &mut Envelope,
    plan: &[PlannedAction],
    watermark: Watermark<'_>,
) -> Execution {
    let mut execution = Execution::default();
    for planned in plan {
        if matches!(
            planned.action,
            Action::SetFields { .. } | Action::CreateRecord { .. } | Action::AddCaseComment { .. }
        ) {
            continue;
        }
        let key = action_key(planned);
        if envelope.is_done(&key) {
            continue;
        }
        let before = ctx.pagerduty.api_calls();
        let result = run(ctx, &planned.action).await;
        let calls = ctx.pagerduty.api_calls().saturating_sub(before) as u32;
        execution.api_calls += calls;
        metrics::api_calls("pagerduty", u64::from(calls));
        let created = match result {
            Ok(created) => created,
            Err(err) => {
                metrics::action(planned.action.name(), false);
                if err.is_transient() && !matches!(err, PagerdutyError::Throttled { .. }) {
                    let _ = ctx.pagerduty_breaker.record_failure(Signal::Transient(err.to_string())).await;
                }
                let reason = err.to_string();
                execution.actions.push(action_record(planned, false, Some(reason.clone())));
                execution.failure = Some((failure_kind(err.kind()), reason, Some(planned.rule.clone())));
                if let PagerdutyError::Throttled { wait, .. } = err {
                    // Held back by our limiter (a 429's reset still running): counting it as a
                    // failed attempt would dead-letter events PagerDuty never saw.
                    execution.held_until = Some(ctx.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default());
                }
                return execution;
            }
        };
        if let (Action::CreateIncident { record, .. }, Some(incident_id)) = (&planned.action, &created) {
            let link = Link {
                incident_id: incident_id.clone(),
                record: record.clone(),
                created_at: ctx.clock.now(),
                created_by_rule: Some(planned.rule.clone()),
            };
            if let Err(err) = link_created(ctx, &mut execution, link, watermark).await {
                // Not marked done: the retry finds the same incident by its incident_key and links it.
                let reason = format!("created incident {incident_id} but could not link it: {err}");
                execution.actions.push(action_record(planned, false, Some(reason.clone())));
                execution.failure = Some((FailureKind::Transient, reason, Some(planned.rule.clone())));
                return execution;
            }
        }
        envelope.mark_done(key);
        metrics::action(planned.action.name(), true);
        execution.actions.push(action_record(planned, true, created));
    }
    if execution.api_calls > 0 {
        let _ = ctx.pagerduty_breaker.record_success().await;
    }
    execution
}

/// One action; `Ok(Some(id))` names what it created.
async fn run(ctx: &Context, action: &Action) -> Result<Option<String>, PagerdutyError> {
    let pd = &ctx.pagerduty;
    match action {
        Action::CreateIncident {
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
        Action::Acknowledge { incident_id } => pd.acknowledge(incident_id).await.map(|_| None),
        Action::Resolve { incident_id, resolution } => {
            pd.resolve(incident_id, resolution.as_deref()).await.map(|_| None)
        }
        Action::SetPriority { incident_id, priority } => pd.set_priority(incident_id, priority).await.map(|_| None),
        Action::SetUrgency { incident_id, urgency: u } => pd.set_urgency(incident_id, urgency(*u)).await.map(|_| None),
        Action::RunIncidentWorkflow { incident_id, workflow_id } => {
            pd.run_incident_workflow(incident_id, workflow_id).await
        }
        Action::RunAutomationAction { incident_id, action_id } => {
            pd.run_automation_action(incident_id, action_id).await
        }
        Action::Reassign { incident_id, user_ids, escalation_policy_id } => {
            let to = match escalation_policy_id {
                Some(ep) => Assignees::EscalationPolicy(ep.clone()),
                None => Assignees::Users(user_ids.clone()),
            };
            pd.reassign(incident_id, &to).await.map(|_| None)
        }
        Action::AddResponders { incident_id, user_ids, escalation_policy_ids, message } => pd
            .add_responders(
                incident_id,
                user_ids,
                escalation_policy_ids,
                message.as_deref().unwrap_or("Your help is requested (from Salesforce)"),
            )
            .await
            .map(|_| None),
        Action::AddNote { incident_id, content } => pd.add_note(incident_id, content).await,
        Action::SetFields { .. } | Action::CreateRecord { .. } | Action::AddCaseComment { .. } => Ok(None),
    }
}
