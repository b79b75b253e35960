//! `POST /pagerduty/webhook`: a signed PagerDuty Webhooks v3 delivery drives Salesforce.
//!
//! Verify the signature on the raw bytes → parse → de-duplicate on the event id → order per
//! incident → evaluate the `pagerduty_to_salesforce` rules with the linked records → write
//! everything in one Composite call → audit. Anything that cannot be finished now is queued;
//! the answer is 2xx once the event is safe, so PagerDuty never disables the subscription.

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::handler::context::Context;
use crate::handler::http::{self, InboundRequest, Reply};
use crate::handler::idempotency::Gate;
use crate::handler::own_writes;
use crate::handler::ports::Pipeline;
use crate::handler::salesforce_exec;
use crate::handler::settle::{Attempt, Subjects, store_failure};
use crate::handler::steps::{self, Work};
use crate::handler::{echo, full_note};
use crate::model::Direction;
use crate::pagerduty::signature::{self, SignatureError};
use crate::pagerduty::{Activity, EventData, Reference, WebhookEvent};
use crate::retry::envelope::{Accepted, Envelope, Progress, QueuedEvent};
use crate::rules::{ActivityFacts, Event, IncidentEvent, IncidentFacts, LinkedRecord};
use crate::secrets::{CachedSecrets, SigningSecrets};
use crate::store::{AuditLog, Subject};
use crate::telemetry::metrics;

/// The route of the `pd-to-sfdc` function.
pub const WEBHOOK_ROUTE: &str = "/pagerduty/webhook";

/// Handles one webhook delivery: a `POST` to [`WEBHOOK_ROUTE`], anything else refused before
/// anything is read or written.
pub async fn handle(ctx: &Context, request: InboundRequest) -> Reply {
    if let Err(refused) = http::route(&request, &[WEBHOOK_ROUTE]) {
        metrics::event_rejected("route");
        return refused;
    }
    let started = ctx.clock.now();
    metrics::event_received();
    let reply = handle_inner(ctx, &request, started).await;
    metrics::handler_latency_ms((ctx.clock.now() - started).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    reply
}

async fn handle_inner(ctx: &Context, request: &InboundRequest, started: DateTime<Utc>) -> Reply {
    if let Err(reply) = verify(&ctx.secrets, &ctx.settings.webhook_secret_id, request).await {
        return reply;
    }
    let event = match WebhookEvent::parse(&request.body) {
        Ok(event) => event,
        Err(err) => {
            return reject_malformed(ctx.stores.audit.as_ref(), ctx.clock.as_ref(), request, &err.to_string()).await;
        }
    };
    let span = tracing::info_span!("pagerduty_event", correlation_id = %request.correlation_id, event_id = %event.id,
        event_type = %event.event_type, incident_id = event.incident_id().unwrap_or(""));
    let _enter = span.enter();

    let key = crate::model::GateKey::webhook(&event.id);
    match ctx.idempotency.begin(&key, request.deadline).await {
        Ok(Gate::Proceed) => {}
        Ok(Gate::Duplicate { first }) => {
            metrics::event_duplicate();
            metrics::route_accepted(WEBHOOK_ROUTE, 1);
            let first = first.outcome;
            tracing::info!(first_outcome = %first, "duplicate delivery: already handled, nothing changes");
            return Reply::json(200, &serde_json::json!({"status": "duplicate", "first_outcome": first}));
        }
        Ok(Gate::Busy { until }) => {
            // Another invocation is on it. 5xx makes PagerDuty deliver again later; if that
            // invocation dies, the lease runs out and the redelivery takes over. Nothing is lost.
            let wait = (until - ctx.clock.now()).num_seconds().clamp(1, 60);
            return Reply::message(503, "in_progress", "this event is being processed by another invocation")
                .with_header("retry-after", wait.to_string());
        }
        Err(err) if err.is_permanent() => {
            // Delivering it again would fail the same way, and PagerDuty would in the end
            // disable the subscription: the event fails alone, dead-lettered with its payload.
            let envelope = Envelope::of(accepted(request, &event, started), Progress::default(), Default::default());
            return match ctx.dispatch().settle(envelope, store_failure(err), Subjects::default(), started, &[]).await {
                Ok(settled) => {
                    metrics::route_accepted(WEBHOOK_ROUTE, 1);
                    Reply::json(200, &serde_json::json!({"status": settled.outcome.as_str(), "event_id": event.id}))
                }
                Err(err) => {
                    tracing::error!(error = %err, "could not dead-letter the event: PagerDuty delivers it again");
                    Reply::message(503, "unavailable", "temporarily unable to queue the event; it will be redelivered")
                }
            };
        }
        Err(err) => {
            metrics::error();
            tracing::error!(error = %err, "idempotency store unavailable: asking PagerDuty to deliver again");
            return Reply::message(
                503,
                "unavailable",
                "temporarily unable to record the event; it will be redelivered",
            );
        }
    }

    let accepted = Accepted { gate_key: key.clone(), ..accepted(request, &event, started) };
    let mut progress = Progress::default();
    let work = Work { accepted: &accepted, progress: &mut progress, hop: "" };
    let (attempt, subjects) = process(ctx.pipeline(), work, &event, request.deadline).await;
    let envelope = Envelope::of(accepted, progress, Default::default());
    match ctx.dispatch().settle(envelope, attempt, subjects, started, &[&key]).await {
        Ok(settled) => {
            metrics::route_accepted(WEBHOOK_ROUTE, 1);
            Reply::json(200, &serde_json::json!({"status": settled.outcome.as_str(), "event_id": event.id}))
        }
        Err(err) => {
            metrics::error();
            tracing::error!(error = %err, "could not queue the event: releasing it so PagerDuty delivers it again");
            let _ = ctx.idempotency.abandon(&key).await;
            Reply::message(503, "unavailable", "temporarily unable to queue the event; it will be redelivered")
        }
    }
}

/// The delivery as the retry queue and the DLQ keep it.
fn accepted(request: &InboundRequest, event: &WebhookEvent, started: DateTime<Utc>) -> Accepted {
    Accepted::new(
        Direction::PagerdutyToSalesforce,
        &event.id,
        &request.correlation_id,
        started,
        event.occurred_at,
        QueuedEvent::PagerdutyWebhook {
            body: String::from_utf8_lossy(&request.body).into_owned(),
            webhook_id: request.header("x-webhook-id").map(crate::model::bounded_key),
            subscription_id: request.header("x-webhook-subscription").map(crate::model::bounded_key),
        },
    )
}

/// Checks `X-PagerDuty-Signature` against every configured secret. A mismatch may re-read the
/// secrets, in case they were rotated since this process cached them (at most once per
/// `MISMATCH_REREAD_INTERVAL`: forged requests must not cost a Secrets Manager read each).
async fn verify(secrets: &CachedSecrets, secret_id: &str, request: &InboundRequest) -> Result<(), Reply> {
    let header = request.header_joined("x-pagerduty-signature");
    let check = |secrets: &SigningSecrets| {
        let keys: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
        signature::verify(&request.body, header.as_deref(), &keys)
    };
    let rotation = SignatureError::rotation_may_explain;
    match secrets.verify_signed(secret_id, check, rotation).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => {
            metrics::event_rejected("signature");
            tracing::warn!(correlation_id = %request.correlation_id, reason = %err, "webhook refused: bad signature");
            Err(Reply::message(401, "unauthorized", err.to_string()))
        }
        Err(err) => {
            metrics::error();
            tracing::error!(error = %err, "cannot read the webhook signing secrets");
            Err(Reply::message(503, "unavailable", "signing secrets unavailable; deliver again later"))
        }
    }
}

/// Signed but unreadable: keep the raw payload for review, answer 2xx (a 4xx would only make
/// PagerDuty disable the subscription; the same bytes will never parse).
async fn reject_malformed(audit: &dyn AuditLog, clock: &dyn Clock, request: &InboundRequest, reason: &str) -> Reply {
    let webhook_id = request.header("x-webhook-id").unwrap_or("unknown");
    match steps::keep_rejected(audit, clock, Direction::PagerdutyToSalesforce, request, webhook_id, reason).await {
        Ok(()) => Reply::json(
            202,
            &serde_json::json!({"status": "rejected", "reason": crate::model::cut(reason, crate::model::MAX_REASON)}),
        ),
        Err(_) => Reply::message(503, "unavailable", "could not record the rejected payload; deliver again later"),
    }
}

/// Re-reads a queued delivery (the retry function).
pub fn parse_queued(body: &str) -> Result<WebhookEvent, String> {
    WebhookEvent::parse(body.as_bytes()).map_err(|e| e.to_string())
}

/// One attempt at a parsed event, and the incident and records it was about: used live and by
/// the retry function.
pub async fn process(
    pipeline: Pipeline<'_>,
    work: Work<'_>,
    event: &WebhookEvent,
    deadline: Option<DateTime<Utc>>,
) -> (Attempt, Subjects) {
    let Some(incident_id) = event.incident_id().map(str::to_string) else {
        let skipped =
            Attempt::Skipped { reason: format!("{} is not about an incident", event.event_type), rules: vec![] };
        return (skipped, Subjects::default());
    };
    let mut subjects = Subjects::new(vec![incident_id.clone()], vec![]);
    let attempt = attempt(pipeline, work, event, &incident_id, deadline, &mut subjects).await;
    (attempt, subjects)
}

async fn attempt(
    pipeline: Pipeline<'_>,
    Work { accepted, progress, hop }: Work<'_>,
    event: &WebhookEvent,
    incident_id: &str,
    deadline: Option<DateTime<Utc>>,
    subjects: &mut Subjects,
) -> Attempt {
    let Pipeline { subjects: ports, rules, pagerduty, salesforce, min_time_left, settle_margin } = pipeline;
    let subject = Subject::Incident(incident_id.to_string());
    subjects.opening = event.event_type == "incident.triggered";
    if let Err(held) = steps::take_subject(ports, accepted.lease_holder(hop), subjects, &subject, deadline).await {
        return held;
    }
    let state = match steps::subject_state(ports, &subject).await {
        Ok(state) => state,
        Err(attempt) => return attempt,
    };
    let links = &state.links;
    subjects.add_links(links);
    // The agent console's latest status update (PagerDuty's REST API lists none): kept whatever
    // the rules do with the event, the bridge's own included.
    if let EventData::StatusUpdate { message, .. } = &event.data
        && state.status_update.as_ref().is_none_or(|kept| kept.created_at <= event.occurred_at)
    {
        subjects.status_update =
            Some(crate::store::StatusUpdate { message: message.clone(), created_at: event.occurred_at });
    }
    let this = steps::note_order(accepted, progress, &subject, &state);
    if let Some(echo) = echo::pagerduty_echo(pagerduty, event).await {
        // The bridge's own trigger does not open the incident: the event that created it does,
        // with its link, and that one may still be running or queued (its answer lost).
        subjects.opening = false;
        return echo;
    }
    if links.is_empty() && created_by_us(event) {
        // We created this incident from a Salesforce record a moment ago and its link is not
        // written yet: acting now would treat it as a stranger (and create a second record).
        return Attempt::Deferred {
            reason: "incident created by the bridge, its link is not visible yet".into(),
            until: Some(ports.clock.now() + chrono::Duration::seconds(5)),
            actions: vec![],
            api_calls: 0,
        };
    }
    if let Some(wait) = steps::wait_behind(ports, &subject, &this, &state.pending) {
        return wait;
    }
    let full = match full_note::with_full_note(pagerduty.client, event).await {
        Ok(full) => full,
        Err(attempt) => return attempt,
    };
    let event = full.as_ref();
    // The note's live delivery and a reconcile run's repair of it are two events: the second
    // finds the first's mark.
    let note = match &event.data {
        EventData::IncidentNote { id, .. } => Some(crate::rules::note_mark(id)),
        _ => None,
    };
    if let Some(mark) = note.as_ref().filter(|m| state.marks.contains_key(*m)) {
        return Attempt::Skipped {
            reason: format!("the note is on the linked records already ({mark})"),
            rules: vec![],
        };
    }
    let rules = match steps::rules(rules).await {
        Ok(rules) => rules,
        Err(attempt) => return attempt,
    };

    // Read a linked record's current fields only when a rule that reads them can still match.
    let mut incident = incident_event(event, Vec::with_capacity(links.len()));
    let mut api_calls = 0u32;
    for link in links {
        let fields = rules.rules.record_fields_needed(&incident, &link.record.object);
        let values = if fields.is_empty() {
            serde_json::Map::new()
        } else {
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            api_calls += 1;
            metrics::api_calls("salesforce", 1);
            match salesforce
                .client
                .get_record(link.record.object.as_str(), link.record.id.as_str(), Some(&fields))
                .await
            {
                Ok(values) => values,
                Err(err) => {
                    salesforce.report_failure(&err).await;
                    return salesforce_exec::failure(&err, vec![], api_calls);
                }
            }
        };
        incident.linked_records.push(LinkedRecord {
            object: link.record.object.clone(),
            id: link.record.id.to_string(),
            fields: values,
        });
    }

    let input = Event::Incident(incident);
    let (evaluation, matched) = match steps::plan(ports, &rules, &input, accepted, progress, &state, subjects.opening) {
        Ok(planned) => planned,
        Err(attempt) => return attempt,
    };
    if let Some(deferred) = steps::hold_back(salesforce.breaker, ports.clock, min_time_left, deadline, api_calls).await
    {
        return deferred;
    }
    let plan = &evaluation.plan.0;
    let until = salesforce_exec::call_deadline(ports.clock, deadline, settle_margin);
    let started = ports.clock.now();
    let done_before = progress.done.clone();
    // A record found by its external id was created by an earlier attempt (a write whose answer
    // was lost, made at a time unknown but after the event was accepted).
    let (found, fresh): (Vec<_>, Vec<_>) =
        plan.iter().cloned().partition(|p| progress.is_uncertain(&salesforce_exec::action_key(p)));
    let execution =
        salesforce_exec::execute(salesforce, ports.links, ports.clock, &accepted.event_id, progress, plan, until).await;
    subjects.add_links(&execution.linked);
    let holder = accepted.lease_holder(hop);
    for (plan, at) in [(&fresh, started), (&found, accepted.accepted_at)] {
        let written = own_writes::Written {
            rules: &rules.rules,
            holder: &holder,
            plan,
            done_before: &done_before,
            progress,
            linked: &execution.linked,
        };
        own_writes::see_written(ports, written, at).await;
    }
    subjects.marks = steps::marks_done(&evaluation.plan.0, progress);
    // Whose marks these are, for a reconcile run (see `rules::event_mark`). Marks move forward
    // only: a late copy of an older event of the type leaves the newer one's.
    let mark = match &event.data {
        EventData::IncidentNote { id, .. } => crate::rules::note_event_mark(id),
        _ => crate::rules::event_mark(&event.event_type),
    };
    if !subjects.marks.is_empty() && state.marks.get(&mark).is_none_or(|at| *at <= accepted.occurred_at) {
        subjects.marks.push(mark);
    }
    // Marked once every comment of it is written (a retry of this event writes the rest).
    let comments = plan.iter().filter(|p| p.action.kind() == crate::rules::ActionKind::AddCaseComment);
    let mut comments = comments.map(|p| progress.is_done(&salesforce_exec::action_key(p))).peekable();
    if let Some(mark) = note
        && comments.peek().is_some()
        && comments.all(|done| done)
    {
        subjects.marks.push(mark);
    }
    execution.into_attempt(matched, api_calls)
}

/// True for incidents the bridge opened from a Salesforce record (their `incident_key` is ours).
fn created_by_us(event: &WebhookEvent) -> bool {
    matches!(&event.data, EventData::Incident(incident)
        if incident.incident_key.as_deref().is_some_and(|k| k.starts_with(crate::rules::INCIDENT_KEY_PREFIX)))
}

/// The rule engine's view of a webhook event.
pub fn incident_event(event: &WebhookEvent, linked_records: Vec<LinkedRecord>) -> IncidentEvent {
    let mut activity = ActivityFacts::default();
    let (incident, note, status_update) = match &event.data {
        EventData::Incident(incident) => (
            IncidentFacts {
                id: incident.id.clone(),
                number: incident.number.unwrap_or_default(),
                title: incident.title.clone().unwrap_or_default(),
                status: incident.status.clone().unwrap_or_default(),
                urgency: incident.urgency.clone().unwrap_or_default(),
                priority: incident.priority_name().map(str::to_string),
                service_id: incident.service.id.clone(),
                service_name: incident.service.summary.clone().unwrap_or_default(),
                escalation_policy_id: incident.escalation_policy.as_ref().map(|e| e.id.clone()).unwrap_or_default(),
                escalation_policy_name: incident
                    .escalation_policy
                    .as_ref()
                    .and_then(|e| e.summary.clone())
                    .unwrap_or_default(),
                html_url: incident.html_url.clone().unwrap_or_default(),
                incident_key: incident.incident_key.clone(),
                assignees: names(&incident.assignees),
                teams: names(&incident.teams),
                incident_type: text_at(&incident.extra, &["incident_type", "name"]),
                conference_url: text_at(&incident.extra, &["conference_bridge", "conference_url"]),
                conference_number: text_at(&incident.extra, &["conference_bridge", "conference_number"]),
                custom_fields: serde_json::Map::new(),
            },
            None,
            None,
        ),
        EventData::IncidentNote { incident, content, .. } => (
            IncidentFacts {
                id: incident.id.clone(),
                title: incident.summary.clone().unwrap_or_default(),
                html_url: incident.html_url.clone().unwrap_or_default(),
                ..IncidentFacts::default()
            },
            Some(content.clone()),
            None,
        ),
        EventData::StatusUpdate { incident, message, .. } => (
            IncidentFacts {
                id: incident.id.clone(),
                title: incident.summary.clone().unwrap_or_default(),
                html_url: incident.html_url.clone().unwrap_or_default(),
                ..IncidentFacts::default()
            },
            None,
            Some(message.clone()),
        ),
        EventData::Activity { incident, activity: what } => {
            let mut facts = IncidentFacts {
                id: incident.id.clone(),
                title: incident.summary.clone().unwrap_or_default(),
                html_url: incident.html_url.clone().unwrap_or_default(),
                ..IncidentFacts::default()
            };
            activity_facts(what, &mut facts, &mut activity);
            (facts, None, None)
        }
        EventData::Other(_) => (
            IncidentFacts { id: event.incident_id().unwrap_or_default().to_string(), ..IncidentFacts::default() },
            None,
            None,
        ),
    };
    IncidentEvent {
        event_type: event.event_type.clone(),
        occurred_at: event.occurred_at.to_rfc3339(),
        is_new: event.event_type == "incident.triggered",
        incident,
        note,
        status_update,
        agent: event.agent.as_ref().map(|a| a.summary.clone().unwrap_or_else(|| a.id.clone())),
        activity,
        linked_records,
    }
}

/// What an activity event tells, as the facts conditions and templates read.
fn activity_facts(what: &Activity, incident: &mut IncidentFacts, facts: &mut ActivityFacts) {
    let name = |r: &Option<Reference>| r.as_ref().map(|r| r.summary.clone().unwrap_or_else(|| r.id.clone()));
    match what {
        Activity::Responder { user, message, state } => {
            facts.responder = name(user).unwrap_or_default();
            facts.responder_message = message.clone().unwrap_or_default();
            facts.responder_state = state.clone().unwrap_or_default();
        }
        Activity::ConferenceBridge { url, numbers } => {
            incident.conference_url = url.clone().unwrap_or_default();
            incident.conference_number = numbers.join(", ");
        }
        Activity::CustomFields { values, before } => {
            incident.custom_fields = values.clone();
            facts.custom_fields_changed = before.keys().cloned().collect::<Vec<_>>().join(", ");
        }
        Activity::Roles(roles) => {
            facts.role = roles.iter().map(|(role, _)| role.as_str()).collect::<Vec<_>>().join(", ");
            facts.role_assignee = roles.iter().filter_map(|(_, who)| who.as_deref()).collect::<Vec<_>>().join(", ");
        }
        Activity::Task { name: task, status, .. } => {
            facts.task = task.clone();
            facts.task_status = status.clone().unwrap_or_default();
        }
        Activity::Workflow { workflow, .. } => facts.workflow = name(workflow).unwrap_or_default(),
        Activity::ActionInvocation { action, state } => {
            facts.automation_action = name(action).unwrap_or_default();
            facts.action_state = state.clone().unwrap_or_default();
        }
    }
}

/// The names of references (their summaries; an id where PagerDuty sent none), comma-separated.
fn names(references: &[Reference]) -> String {
    let names: Vec<&str> = references.iter().map(|r| r.summary.as_deref().unwrap_or(&r.id)).collect();
    names.join(", ")
}

/// The text at `path` of an incident's other fields, empty when absent.
fn text_at(extra: &serde_json::Map<String, serde_json::Value>, path: &[&str]) -> String {
    let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
    crate::rules::value::lookup(extra, &path).and_then(|v| v.as_str()).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PagerDuty's documented incident payload (`data` of an incident event).
    const DOCS_INCIDENT: &str =
        include_str!("../../tests/fixtures/pagerduty/webhooks/event-data-fragments/docs-data-incident.json");

    #[test]
    fn an_incident_event_carries_who_is_on_it_its_type_and_its_bridge() {
        let body = format!(
            r#"{{"event": {{"id": "E1", "event_type": "incident.reassigned", "resource_type": "incident",
                "occurred_at": "2026-12-07T10:00:00Z", "agent": {{"id": "PUSR1", "type": "user_reference", "summary": "Dana Reyes"}},
                "client": null, "data": {DOCS_INCIDENT}}}}}"#
        );
        let event = WebhookEvent::parse(body.as_bytes()).unwrap();
        let facts = incident_event(&event, vec![]);
        assert_eq!(facts.incident.assignees, "User 123");
        assert_eq!(facts.incident.teams, "Engineering");
        assert_eq!(facts.incident.incident_type, "major");
        assert_eq!(facts.incident.conference_url, "https://example.com");
        assert_eq!(facts.agent.as_deref(), Some("Dana Reyes"));
    }
}
