//! `POST /salesforce/records` (our Apex trigger's post) and `POST /salesforce/outbound-message`
//! (Outbound Message SOAP): Salesforce record changes drive PagerDuty.
//!
//! Authenticate → parse → for each record: de-duplicate, skip our own writes, order per record,
//! evaluate the `salesforce_to_pagerduty` rules with the linked incidents and old values → act on
//! PagerDuty → audit. Records that cannot be finished now are queued; the post is answered 2xx
//! (or `<Ack>true</Ack>`) only once every record is applied or safely queued.

use super::change_event;
use super::console;
use crate::salesforce::ObjectName;
use crate::salesforce::change_event::HEADER;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::clock::Clock;
use crate::handler::context::Context;
use crate::handler::echo;
use crate::handler::http::{self, InboundRequest, Reply};
use crate::handler::idempotency::Gate;
use crate::handler::own_writes;
use crate::handler::pagerduty_exec;
use crate::handler::ports::Pipeline;
use crate::handler::settle::{Attempt, Dispatch, Subjects, store_failure};
use crate::handler::steps::{self, Work};
use crate::model::{Direction, Outcome};
use crate::retry::envelope::{Accepted, Envelope, Progress, QueuedEvent};
use crate::rules::{Event, RecordEvent};
use crate::salesforce::outbound_message::{self, OutboundMessage};
use crate::salesforce::signature;
use crate::salesforce::time::parse_datetime;
use crate::salesforce::trigger_post::{self, Operation, RecordChange, TriggerPost};
use crate::salesforce::{RecordId, is_record_id};
use crate::secrets::CachedSecrets;
use crate::store::{AuditLog, Seen, Subject};
use crate::telemetry::metrics;

/// One record change, from either input format.
#[derive(Debug, Clone)]
pub struct Change {
    pub object: ObjectName,
    pub id: RecordId,
    pub is_new: bool,
    pub new: serde_json::Map<String, serde_json::Value>,
    pub old: Option<serde_json::Map<String, serde_json::Value>>,
    pub changed_by: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// Set when the sender names the change itself: the Apex trigger's change id, an Outbound
    /// Message notification id, a queued envelope's event id.
    pub dedupe_key: Option<String>,
}

/// A signed post more than this far from now is refused (replay protection).
pub const REPLAY_WINDOW_SECONDS: i64 = 300;

impl Change {
    /// The idempotency key: the same change delivered twice has the same key, two changes of one
    /// record (even within one second) have different ones ([`trigger_post::change_key`]).
    pub fn key(&self) -> String {
        match &self.dedupe_key {
            Some(key) => crate::model::bounded_key(key),
            None => {
                trigger_post::change_key(self.object.as_str(), self.id.as_str(), None, self.old.as_ref(), &self.new)
            }
        }
    }

    /// The record whose links (and order) the change follows: its own, or a Case Comment's Case.
    pub fn linked_record_id(&self) -> &str {
        match self.new.get("ParentId").and_then(|v| v.as_str()) {
            Some(parent) if self.object.is_case_comment() => parent,
            _ => self.id.as_str(),
        }
    }

    /// The change as the retry queue and the DLQ keep it (reconciliation's synthetic changes too).
    pub fn accepted(&self, correlation_id: &str, accepted_at: DateTime<Utc>) -> Accepted {
        Accepted::new(
            Direction::SalesforceToPagerduty,
            self.key(),
            correlation_id,
            accepted_at,
            self.occurred_at,
            QueuedEvent::SalesforceRecord {
                object: self.object.clone(),
                record_id: self.id.to_string(),
                operation: if self.is_new { "insert".into() } else { "update".into() },
                new: self.new.clone(),
                old: self.old.clone(),
                changed_by: self.changed_by.clone(),
            },
        )
    }

    /// Rebuilds a change from a queued event (the retry function).
    pub fn from_accepted(accepted: &Accepted) -> Option<Self> {
        let QueuedEvent::SalesforceRecord { object, record_id, operation, new, old, changed_by } = &accepted.event
        else {
            return None;
        };
        Some(Self {
            object: object.clone(),
            id: record_id.as_str().into(),
            is_new: operation == "insert",
            new: new.clone(),
            old: old.clone(),
            changed_by: changed_by.clone(),
            occurred_at: accepted.occurred_at,
            dedupe_key: Some(accepted.event_id.clone()),
        })
    }
}

/// The prefix of an Outbound Message notification's event id (`om:<notification id>`, short
/// enough never to be hashed): what tells the two Salesforce routes apart in the audit trail.
pub const OUTBOUND_MESSAGE_EVENT_PREFIX: &str = "om:";

/// The route an accepted event came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /pagerduty/webhook`.
    PagerdutyWebhook,
    /// `POST /salesforce/records` (the Apex trigger).
    ApexTrigger,
    /// `POST /salesforce/outbound-message`.
    OutboundMessage,
    /// Change Data Capture through Event Relay (an EventBridge rule).
    ChangeEvent,
    /// No route: a reconcile run or one of its repairs ([`crate::reconcile::EVENT_ID_PREFIX`]).
    Reconcile,
}

impl Route {
    /// The route of an audited event, from its direction and event id.
    pub fn of(direction: Direction, event_id: &str) -> Self {
        if event_id.starts_with(crate::reconcile::EVENT_ID_PREFIX) {
            return Route::Reconcile;
        }
        match direction {
            Direction::PagerdutyToSalesforce => Route::PagerdutyWebhook,
            Direction::SalesforceToPagerduty if event_id.starts_with(OUTBOUND_MESSAGE_EVENT_PREFIX) => {
                Route::OutboundMessage
            }
            Direction::SalesforceToPagerduty if change_event::is_change_event(event_id) => Route::ChangeEvent,
            Direction::SalesforceToPagerduty => Route::ApexTrigger,
        }
    }

    /// A stable name (`pagerduty_webhook`, `apex_trigger`, `outbound_message`, `reconcile`).
    pub fn as_str(self) -> &'static str {
        match self {
            Route::PagerdutyWebhook => "pagerduty_webhook",
            Route::ApexTrigger => "apex_trigger",
            Route::OutboundMessage => "outbound_message",
            Route::ChangeEvent => "change_event",
            Route::Reconcile => "reconcile",
        }
    }
}

/// The record changes of an Apex trigger post (also what `syncctl rules test` evaluates).
pub fn changes_of_post(post: TriggerPost) -> Vec<Change> {
    let changed_by = Some(post.user.username.clone()).filter(|u| !u.is_empty());
    post.records
        .into_iter()
        .map(|r: RecordChange| Change {
            occurred_at: change_time(&r.new, post.sent_at),
            dedupe_key: Some(r.key()),
            object: r.object,
            id: r.id.into(),
            is_new: post.operation == Operation::Insert,
            new: r.new,
            old: r.old,
            changed_by: changed_by.clone(),
        })
        .collect()
}

/// The record changes of an Outbound Message received at `received` (also what `syncctl rules
/// test` evaluates).
pub fn changes_of_outbound_message(message: OutboundMessage, received: DateTime<Utc>) -> Vec<Change> {
    message
        .notifications
        .into_iter()
        .map(|n| {
            let id = RecordId::from(n.record_id().unwrap_or_default());
            // Outbound Messages carry no old values; a record whose creation is its last
            // modification was just created.
            let is_new =
                matches!((n.fields.get("CreatedDate"), n.fields.get("LastModifiedDate")), (Some(c), Some(m)) if c == m);
            Change {
                occurred_at: change_time(&n.fields, received),
                object: n.object,
                id,
                is_new,
                new: n.fields,
                old: None,
                changed_by: None,
                dedupe_key: Some(crate::model::bounded_key(&format!("{OUTBOUND_MESSAGE_EVENT_PREFIX}{}", n.id))),
            }
        })
        .collect()
}

/// The rules engine's input for `change`, with the incidents linked to it.
pub fn record_event(change: &Change, linked_incidents: Vec<String>) -> Event {
    Event::Record(RecordEvent {
        object: change.object.clone(),
        id: change.id.to_string(),
        new: change.new.clone(),
        old: change.old.clone(),
        is_new: change.is_new,
        linked_incidents,
    })
}

/// When the change happened: `SystemModstamp`, else `LastModifiedDate`, else `fallback`.
pub fn change_time(fields: &serde_json::Map<String, serde_json::Value>, fallback: DateTime<Utc>) -> DateTime<Utc> {
    ["SystemModstamp", "LastModifiedDate"]
        .iter()
        .filter_map(|f| fields.get(*f).and_then(|v| v.as_str()))
        .find_map(parse_datetime)
        .unwrap_or(fallback)
}

/// What happened to each record of a post.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    pub received: usize,
    pub applied: usize,
    pub skipped: usize,
    pub duplicate: usize,
    pub stale: usize,
    pub queued: usize,
    pub dead_lettered: usize,
    /// Records that could not be made safe: the sender must deliver them again.
    pub not_accepted: Vec<String>,
}

impl Summary {
    /// The records made safe: all but those the sender must send again.
    pub fn accepted(&self) -> usize {
        self.received.saturating_sub(self.not_accepted.len())
    }

    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Duplicate => self.duplicate += 1,
            Outcome::Stale => self.stale += 1,
            Outcome::Queued => self.queued += 1,
            Outcome::DeadLettered => self.dead_lettered += 1,
            Outcome::Rejected => {}
        }
    }
}

/// The routes of the `sfdc-to-pd` function.
pub const RECORDS_ROUTE: &str = "/salesforce/records";
pub const OUTBOUND_MESSAGE_ROUTE: &str = "/salesforce/outbound-message";

/// Routes a request of the `sfdc-to-pd` function: a `POST` to one of its two paths, or refused
/// before anything is read or written.
pub async fn handle(ctx: &Context, request: InboundRequest) -> Reply {
    let routes = [
        RECORDS_ROUTE,
        OUTBOUND_MESSAGE_ROUTE,
        console::INCIDENTS_ROUTE,
        console::STATUS_ROUTE,
        console::ESCALATE_ROUTE,
    ];
    match http::route(&request, &routes) {
        Ok(OUTBOUND_MESSAGE_ROUTE) => handle_outbound_message(ctx, request).await,
        Ok(route @ (console::INCIDENTS_ROUTE | console::STATUS_ROUTE | console::ESCALATE_ROUTE)) => {
            console::handle(ctx, request, route).await
        }
        Ok(_) => handle_records(ctx, request).await,
        Err(refused) => {
            metrics::event_rejected("route");
            refused
        }
    }
}

/// `POST /salesforce/records`.
pub async fn handle_records(ctx: &Context, request: InboundRequest) -> Reply {
    let started = ctx.clock.now();
    metrics::event_received();
    if let Err(refused) = authenticate(ctx, &request, started).await {
        return refused;
    }
    let post = match TriggerPost::parse(&request.body) {
        Ok(post) => post,
        Err(err) => {
            metrics::event_rejected("malformed");
            tracing::warn!(correlation_id = %request.correlation_id, reason = %err, "Salesforce post malformed");
            return Reply::message(400, "bad_request", err.to_string());
        }
    };
    if let Err(refused) = check_org(ctx, &post.org_id) {
        return refused;
    }
    let changes = changes_of_post(post);
    let concurrency = ctx.settings.record_concurrency;
    let summary = accept_all(ctx.dispatch(), ctx.pipeline(), concurrency, changes, &request, started).await;
    metrics::route_accepted(RECORDS_ROUTE, summary.accepted());
    let status = if summary.not_accepted.is_empty() { 200 } else { 503 };
    Reply::json(status, &serde_json::to_value(&summary).expect("summary serialises"))
}

/// Whether a post from Salesforce (the Apex record posts, the agent console's) is signed with
/// the inbound secret (or carries it as the Named Credential's bearer) and is JSON; else the
/// refusal to answer.
pub async fn authenticate(ctx: &Context, request: &InboundRequest, started: DateTime<Utc>) -> Result<(), Reply> {
    // A mismatch may re-read the secrets (a rotation), at most once per interval: see verify_signed.
    let check = |secrets: &crate::secrets::SigningSecrets| {
        let keys: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
        // The signature wins when both are present (a Named Credential may add an empty bearer).
        if request.header("x-pdsync-signature").is_none() && request.header("authorization").is_some() {
            signature::verify_bearer(request.header("authorization"), &keys)
        } else {
            signature::verify_trigger_signature(
                &request.body,
                request.header("x-pdsync-timestamp"),
                request.header_joined("x-pdsync-signature").as_deref(),
                &keys,
                started,
                REPLAY_WINDOW_SECONDS,
            )
        }
    };
    let rotation = signature::InboundAuthError::rotation_may_explain;
    let auth = match ctx.secrets.verify_signed(&ctx.settings.inbound_secret_id, check, rotation).await {
        Ok(auth) => auth,
        Err(err) => {
            metrics::error();
            tracing::error!(error = %err, "cannot read the inbound signing secrets");
            return Err(Reply::message(503, "unavailable", "signing secrets unavailable; send again later"));
        }
    };
    if let Err(err) = auth {
        metrics::event_rejected(err.metric_reason());
        tracing::warn!(correlation_id = %request.correlation_id, reason = %err, "Salesforce post refused");
        return Err(Reply::message(401, "unauthorized", err.to_string()));
    }
    if request.content_type().is_some_and(|t| t != "application/json") {
        metrics::event_rejected("content_type");
        return Err(Reply::message(415, "unsupported_media_type", "send the body as application/json"));
    }
    Ok(())
}

/// Whether a post names the org the bridge serves; else the 403 to answer.
pub fn check_org(ctx: &Context, org_id: &str) -> Result<(), Reply> {
    if ctx.settings.org_id.as_ref().is_some_and(|org| org.is(org_id)) {
        return Ok(());
    }
    metrics::event_rejected("org_mismatch");
    Err(Reply::message(403, "forbidden", format!("org {} is not the configured org", crate::model::cut(org_id, 40))))
}

/// `POST /salesforce/outbound-message?token=...`.
pub async fn handle_outbound_message(ctx: &Context, request: InboundRequest) -> Reply {
    let started = ctx.clock.now();
    metrics::event_received();
    let token_secret_id = ctx.settings.outbound_message_secret_id.as_deref();
    if let Err(refused) = authenticate_outbound_message(&ctx.secrets, token_secret_id, &request).await {
        return refused;
    }
    let message = match OutboundMessage::parse(&request.body) {
        Ok(message) => message,
        Err(err) => {
            return reject_outbound_message(ctx.stores.audit.as_ref(), ctx.clock.as_ref(), &request, &err.to_string())
                .await;
        }
    };
    if !ctx.settings.org_id.as_ref().is_some_and(|org| message.is_from_org(org)) {
        metrics::event_rejected("org_mismatch");
        tracing::warn!(org = %message.organization_id, "Outbound Message from an unexpected org refused");
        return Reply::xml(
            403,
            outbound_message::fault_response_with_code("soapenv:Client", "OrganizationId is not the configured org"),
        );
    }
    if let Some(bad) = message.notifications.iter().find(|n| !n.record_id().is_some_and(is_record_id)) {
        let reason = format!("notification {} names no Salesforce record id", crate::model::bounded_key(&bad.id));
        return reject_outbound_message(ctx.stores.audit.as_ref(), ctx.clock.as_ref(), &request, &reason).await;
    }
    let changes = changes_of_outbound_message(message, started);
    let concurrency = ctx.settings.record_concurrency;
    let summary = accept_all(ctx.dispatch(), ctx.pipeline(), concurrency, changes, &request, started).await;
    metrics::route_accepted(OUTBOUND_MESSAGE_ROUTE, summary.accepted());
    if summary.not_accepted.is_empty() {
        Reply::xml(200, outbound_message::ack_response().to_string())
    } else {
        // A fault makes Salesforce deliver the message again; accepted notifications dedupe.
        Reply::xml(
            500,
            outbound_message::fault_response("some notifications could not be accepted; Salesforce will retry"),
        )
    }
}

/// What an EventBridge invocation of a change event came to.
#[derive(Debug)]
pub enum ChangeEventReply {
    /// Every record applied or safely queued (or the event was a duplicate).
    Accepted(Summary),
    /// Refused before anything was read of it (another org's, not a change event): nothing
    /// written; EventBridge must not deliver it again.
    Refused(crate::salesforce::change_event::ChangeEventError),
    /// Some records could not be made safe now: the invocation must fail so that EventBridge
    /// delivers the event again (then its rule target's DLQ). Accepted records dedupe.
    Retry(Summary),
}

/// An EventBridge event from the Event Relay partner bus (`body`: the event's JSON as it
/// arrived; `request` names the invocation). The bus's rule matches our org's source only, and
/// the source is checked again here: the org id is what authenticates it, with IAM (only the
/// partner bus's rule can invoke the function).
pub async fn handle_change_event(ctx: &Context, request: InboundRequest) -> ChangeEventReply {
    use crate::salesforce::change_event::{ChangeEvent, ChangeEventError};
    let started = ctx.clock.now();
    metrics::event_received();
    let event = match ChangeEvent::parse(&request.body, ctx.settings.org_id.as_ref()) {
        Ok(event) => event,
        Err(err @ (ChangeEventError::ForeignOrg { .. } | ChangeEventError::Source(_))) => {
            metrics::event_rejected("org_mismatch");
            tracing::warn!(correlation_id = %request.correlation_id, reason = %err, "change event refused");
            return ChangeEventReply::Refused(err);
        }
        Err(err) => {
            // Of our org, but unusable: kept for review, as an unusable Outbound Message is.
            let kept = steps::keep_rejected(
                ctx.stores.audit.as_ref(),
                ctx.clock.as_ref(),
                Direction::SalesforceToPagerduty,
                &request,
                "change-event",
                &err.to_string(),
            )
            .await;
            return match kept {
                Ok(()) => ChangeEventReply::Refused(err),
                Err(_) => ChangeEventReply::Retry(Summary::default()),
            };
        }
    };
    let changes = change_event::changes_of_change_event(event);
    let concurrency = ctx.settings.record_concurrency;
    let summary = accept_all(ctx.dispatch(), ctx.pipeline(), concurrency, changes, &request, started).await;
    metrics::route_accepted(CHANGE_EVENT_ROUTE, summary.accepted());
    if summary.not_accepted.is_empty() { ChangeEventReply::Accepted(summary) } else { ChangeEventReply::Retry(summary) }
}

/// The route name of change events in metrics (no HTTP path: an EventBridge rule).
pub const CHANGE_EVENT_ROUTE: &str = "eventbridge:change-event";

/// Authentic but unusable: the same bytes will never parse, and a fault would only make
/// Salesforce send them again for 24 hours. Keep the payload for review and acknowledge it.
async fn reject_outbound_message(
    audit: &dyn AuditLog,
    clock: &dyn Clock,
    request: &InboundRequest,
    reason: &str,
) -> Reply {
    match steps::keep_rejected(audit, clock, Direction::SalesforceToPagerduty, request, "outbound-message", reason)
        .await
    {
        Ok(()) => Reply::xml(200, outbound_message::ack_response().to_string()),
        Err(_) => {
            Reply::xml(500, outbound_message::fault_response("could not record the message; Salesforce will retry"))
        }
    }
}

/// An Outbound Message proves nothing by itself (its OrganizationId is no secret: it is in every
/// Web-to-Case form), so the route is off unless a token secret is configured, and then the
/// endpoint URL must carry one of its tokens (`secret_id`: the secret that holds them).
async fn authenticate_outbound_message(
    secrets: &CachedSecrets,
    secret_id: Option<&str>,
    request: &InboundRequest,
) -> Result<(), Reply> {
    let fault = |status: u16, reason: &str| {
        Reply::xml(status, outbound_message::fault_response_with_code("soapenv:Client", reason))
    };
    let Some(secret_id) = secret_id else {
        metrics::event_rejected("route_off");
        tracing::warn!(correlation_id = %request.correlation_id, "Outbound Message refused: the route is off");
        return Err(fault(
            404,
            "Outbound Messages are off: deploy with OutboundMessages=Enabled and use the SalesforceOutboundMessageUrl output as the endpoint URL",
        ));
    };
    let presented = request.query_param("token");
    let check = |secrets: &crate::secrets::SigningSecrets| {
        let tokens: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
        signature::verify_url_token(presented.as_deref(), &tokens)
    };
    let rotation = signature::InboundAuthError::rotation_may_explain;
    match secrets.verify_signed(secret_id, check, rotation).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => {
            metrics::event_rejected("token");
            tracing::warn!(correlation_id = %request.correlation_id, reason = %err, "Outbound Message refused");
            Err(fault(401, &err.to_string()))
        }
        Err(err) => {
            metrics::error();
            tracing::error!(error = %err, "cannot read the Outbound Message tokens");
            Err(Reply::xml(500, outbound_message::fault_response("tokens unavailable; Salesforce will retry")))
        }
    }
}

/// Accepts the changes of one post, `concurrency` at a time.
async fn accept_all(
    dispatch: Dispatch<'_>,
    pipeline: Pipeline<'_>,
    concurrency: usize,
    changes: Vec<Change>,
    request: &InboundRequest,
    started: DateTime<Utc>,
) -> Summary {
    let mut summary = Summary { received: changes.len(), ..Summary::default() };
    let results: Vec<(String, Option<Outcome>)> = futures::stream::iter(changes)
        .map(|change| async move {
            let id = change.id.to_string();
            (id, accept(dispatch, pipeline, change, request, started).await)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (id, outcome) in results {
        match outcome {
            Some(outcome) => summary.count(outcome),
            None => summary.not_accepted.push(id),
        }
    }
    summary
}

/// Accepts one change. `None`: it could not be made safe (the sender must send it again).
async fn accept(
    dispatch: Dispatch<'_>,
    pipeline: Pipeline<'_>,
    change: Change,
    request: &InboundRequest,
    started: DateTime<Utc>,
) -> Option<Outcome> {
    let span = tracing::info_span!("salesforce_record", correlation_id = %request.correlation_id,
        record_id = %change.id, object = %change.object);
    let _enter = span.enter();
    let key = crate::model::GateKey::event(&change.key());
    let accepted = change.accepted(&request.correlation_id, started);
    match dispatch.idempotency.begin(&key, request.deadline).await {
        Ok(Gate::Proceed) => {}
        Ok(Gate::Duplicate { .. }) => {
            metrics::event_duplicate();
            return Some(Outcome::Duplicate);
        }
        Ok(Gate::Busy { .. }) => return None,
        Err(err) if err.is_permanent() => {
            // Sending it again would fail the same way for 24 hours: it fails alone, dead-lettered.
            let envelope = Envelope::of(accepted, Progress::default(), Default::default());
            let settled = dispatch.settle(envelope, store_failure(err), Subjects::default(), started, &[]).await;
            return settled.map(|s| s.outcome).ok();
        }
        Err(err) => {
            // Counted as pd-to-sfdc counts it: SfdcToPdErrorRateAlarm reads it.
            metrics::error();
            tracing::error!(error = %err, "idempotency store unavailable");
            return None;
        }
    }
    let accepted = Accepted { gate_key: key.clone(), ..accepted };
    let mut progress = Progress::default();
    let work = Work { accepted: &accepted, progress: &mut progress, hop: "" };
    let (attempt, subjects) = process(pipeline, work, &change, request.deadline).await;
    let envelope = Envelope::of(accepted, progress, Default::default());
    match dispatch.settle(envelope, attempt, subjects, started, &[&key]).await {
        Ok(settled) => Some(settled.outcome),
        Err(err) => {
            metrics::error();
            tracing::error!(error = %err, "could not queue the record change: the sender must send it again");
            let _ = dispatch.idempotency.abandon(&key).await;
            None
        }
    }
}

/// The subject whose order the change keeps: the record, or a Case Comment's Case (a comment
/// waits for the Case insert that opens its incident).
fn order_subject(change: &Change) -> Subject {
    Subject::Record(change.linked_record_id().to_string())
}

/// One attempt at a record change, and the record and incidents it was about: used live and
/// by the retry function.
pub async fn process(
    pipeline: Pipeline<'_>,
    work: Work<'_>,
    change: &Change,
    deadline: Option<DateTime<Utc>>,
) -> (Attempt, Subjects) {
    let mut subjects = Subjects::new(vec![], vec![change.id.to_string()]);
    let attempt = attempt(pipeline, work, change, deadline, &mut subjects).await;
    (attempt, subjects)
}

async fn attempt(
    pipeline: Pipeline<'_>,
    Work { accepted, progress, hop }: Work<'_>,
    change: &Change,
    deadline: Option<DateTime<Utc>>,
    subjects: &mut Subjects,
) -> Attempt {
    let Pipeline { subjects: ports, rules, pagerduty, salesforce, min_time_left, settle_margin } = pipeline;
    if let Some(echo) = echo::salesforce_echo(salesforce, change) {
        if let Err(failed) = own_writes::link_echo(ports, salesforce, rules, change).await {
            return failed;
        }
        see_own_write(ports, rules, Work { accepted, progress, hop }, change, deadline, subjects).await;
        return echo;
    }
    // A Case Comment keeps its Case's order and acts on its Case's incidents.
    let order = order_subject(change);
    subjects.opening = change.is_new && order == Subject::Record(change.id.to_string());
    if let Err(held) = steps::take_subject(ports, accepted.lease_holder(hop), subjects, &order, deadline).await {
        return held;
    }
    let mut state = match steps::subject_state(ports, &order).await {
        Ok(state) => state,
        Err(attempt) => return attempt,
    };
    subjects.incidents = state.links.iter().map(|l| l.incident_id.to_string()).collect();
    let this = steps::note_order(accepted, progress, &order, &state);
    if let Some(wait) = steps::wait_behind(ports, &order, &this, &state.pending) {
        return wait;
    }
    let rules = match steps::rules(rules).await {
        Ok(rules) => rules,
        Err(attempt) => return attempt,
    };
    // A change event names only what changed: completed, under the record's lease, from what
    // the bridge saw of it (or, for a gap, from the record as it is now).
    let completed;
    let change = if change_event::is_change_event(&accepted.event_id) {
        let seen = state.seen.as_ref().filter(|_| order == Subject::Record(change.id.to_string()));
        match complete_change_event(salesforce, ports, min_time_left, deadline, change, seen).await {
            Ok(done) => {
                completed = done;
                &completed
            }
            Err(attempt) => return attempt,
        }
    } else {
        change
    };
    // What the record shows now is the old value of its next change; a change the bridge had
    // seen a newer one of (stale) leaves the newer one. A reconcile repair's old values are made
    // up (what the bridge saw, a gap's start): they show no gap, and the gap it covers is gone.
    if order == Subject::Record(change.id.to_string()) {
        let repair = accepted.event_id.starts_with(crate::reconcile::EVENT_ID_PREFIX);
        let fields = rules.rules.fields_compared_with_old(&change.object);
        subjects.seen = seen_after(state.seen.as_ref(), change, accepted.occurred_at, &fields, repair);
    }
    let mut input = record_event(change, subjects.incidents.clone());
    // Nothing linked, and a rule needs a link: the record may be one the bridge created whose
    // creating event has not settled (see `own_writes`).
    if state.links.is_empty() && !subjects.opening && !state.opened && steps::needs_link(&rules.rules.plan(&input)) {
        let record_id = change.linked_record_id();
        let reading = own_writes::Reading { rules: &rules.rules, change, record_id, min_time_left, deadline };
        match own_writes::link_by_reading(ports, salesforce, progress, reading).await {
            Ok(Some(own_writes::Linked { link, seen })) => {
                subjects.incidents = vec![link.incident_id.to_string()];
                state.links.push(link);
                input = record_event(change, subjects.incidents.clone());
                // A Case Comment's Case: kept on its subject, which this change holds (a change
                // of the record itself keeps what it shows of it).
                if state.seen.is_none() && order != Subject::Record(change.id.to_string()) {
                    subjects.seen = seen;
                }
            }
            Ok(None) => {}
            Err(attempt) => return attempt,
        }
    }
    let (evaluation, matched) = match steps::plan(ports, &rules, &input, accepted, progress, &state, subjects.opening) {
        Ok(planned) => planned,
        Err(attempt) => return attempt,
    };
    if let Some(deferred) = steps::hold_back(pagerduty.breaker, ports.clock, min_time_left, deadline, 0).await {
        return deferred;
    }
    let plan = &evaluation.plan.0;
    let until = crate::handler::salesforce_exec::call_deadline(ports.clock, deadline, settle_margin);
    let execution =
        pagerduty_exec::execute(pagerduty, ports.links, ports.clock, &accepted.event_id, progress, plan, until).await;
    subjects.add_links(&execution.linked);
    subjects.marks = steps::marks_done(&evaluation.plan.0, progress);
    execution.into_attempt(matched, 0)
}

/// A change event's record with its old values (the last seen) and all the values the bridge
/// knows; a gap event's record read again first (one API call, within the breaker and the
/// API usage pause).
async fn complete_change_event(
    salesforce: crate::handler::ports::SalesforcePort<'_>,
    ports: steps::SubjectPorts<'_>,
    min_time_left: std::time::Duration,
    deadline: Option<DateTime<Utc>>,
    change: &Change,
    seen: Option<&Seen>,
) -> Result<Change, Attempt> {
    if !change_event::change_type(change).is_some_and(|t| t.is_gap()) {
        return Ok(change_event::with_last_seen(change, seen));
    }
    if let Some(deferred) = steps::hold_back(salesforce.breaker, ports.clock, min_time_left, deadline, 0).await {
        return Err(deferred);
    }
    match change_event::reread(salesforce.client, change).await {
        Ok(record) => {
            let _ = salesforce.watch_usage().await;
            // Gone: only the header is left (a rule on `ChangeEventHeader.changeType` sees it).
            let new = record.unwrap_or_else(|| {
                change.new.iter().filter(|(k, _)| k.as_str() == HEADER).map(|(k, v)| (k.clone(), v.clone())).collect()
            });
            Ok(change_event::with_last_seen(&Change { new, ..change.clone() }, seen))
        }
        Err(err) => {
            salesforce.report_failure(&err).await;
            Err(change_event::reread_failed(&err, change.occurred_at))
        }
    }
}

/// How long an echo waits, in turn, for its record held by another event before it keeps nothing.
const ECHO_WAITS_MS: [u64; 4] = [25, 50, 100, 200];

/// The bridge's own write is what it saw of the record too ([`Seen`]): its new values are the
/// old ones of the next change, and its old values show a person's change just before it that
/// never arrived (a gap a reconcile run compares). Kept only when the subject is free: an echo
/// is never held up or queued for this, and a failure to keep it costs only the comparison.
async fn see_own_write(
    ports: steps::SubjectPorts<'_>,
    rules: &crate::rules::cache::RulesCache,
    Work { accepted, hop, .. }: Work<'_>,
    change: &Change,
    deadline: Option<DateTime<Utc>>,
    subjects: &mut Subjects,
) {
    let order = order_subject(change);
    if order != Subject::Record(change.id.to_string()) {
        return;
    }
    let Ok(rules) = rules.current().await else { return };
    let fields = rules.rules.fields_compared_with_old(&change.object);
    if fields.is_empty() {
        return;
    }
    let mut taken = Subjects::default();
    // Another echo of the record (posts run in parallel) holds it for a few milliseconds; the
    // one kept without this one's values may hide a change between them. A person's change
    // holds it longer: after the last wait this echo keeps nothing.
    for wait in ECHO_WAITS_MS.iter().map(|ms| Some(std::time::Duration::from_millis(*ms))).chain([None]) {
        match steps::take_subject(ports, accepted.lease_holder(hop), &mut taken, &order, deadline).await {
            Ok(()) => break,
            Err(_) => match wait {
                Some(wait) if deadline.is_none_or(|d| ports.clock.now() + wait < d) => tokio::time::sleep(wait).await,
                _ => return,
            },
        }
    }
    (subjects.order, subjects.holder) = (taken.order, taken.holder);
    // An older change of the record waiting in the retry queue: its values would read as a gap.
    if let Ok(state) = ports.links.subject_state(&order).await
        && state.pending.is_empty()
    {
        subjects.seen = seen_after(state.seen.as_ref(), change, accepted.occurred_at, &fields, false);
    }
}

/// What the record's subject keeps of it after `change` at `at` ([`Seen`]); `None`: nothing
/// newer to keep. A reconcile `repair` keeps no gap of its own (its old values are made up) and
/// ends the one it covered. A change older than the one kept, late, may show a gap before it,
/// or be the change a kept gap lost, delivered after all.
fn seen_after(
    previous: Option<&Seen>,
    change: &Change,
    at: DateTime<Utc>,
    fields: &[String],
    repair: bool,
) -> Option<Seen> {
    if fields.is_empty() {
        return None;
    }
    use crate::reconcile::cursor::whole_second;
    let newer = previous.is_none_or(|s| s.at < at || (!repair && s.at == at && follows(s, change, at, fields)));
    match previous {
        _ if newer && !repair => Some(Seen::after(previous, change.old.as_ref(), at, &change.new, fields)),
        Some(seen) if !repair => {
            let late = seen
                .before(change.old.as_ref(), at, &change.new, fields)
                .or_else(|| seen.delivered_late(change.old.as_ref(), at, &change.new));
            late.as_ref().unwrap_or(seen).changed_after(at, &change.new, fields).or(late)
        }
        // A repair ordered in the second the bridge saw last (at its end): of what it found
        // there, the gap or a change in that second.
        Some(seen) if whole_second(at) == whole_second(seen.at) => {
            Some(seen.repaired(change.old.as_ref(), &change.new, fields))
        }
        _ if newer => Some(Seen { gap: None, ..Seen::after(previous, None, at, &change.new, fields) }),
        // The repair of the kept gap (ordered at its end), the bridge having seen a change since:
        // what it saw stays, the gap is gone.
        Some(seen) if seen.gap.as_ref().is_some_and(|g| whole_second(at) == whole_second(g.before)) => {
            Some(Seen { gap: None, ..seen.clone() })
        }
        // A repair of a change older than one the live path saw since: what it saw stays.
        _ => None,
    }
}

/// Whether `change`, stamped in the second of `seen`, came after it: it found the fields as the
/// bridge saw them, and changed one (Salesforce stamps whole seconds; two changes in a second
/// are told apart by their old values where they can be). Not when it is the change the kept
/// gap of that second lost (its old and new values are the gap's): it came before.
fn follows(seen: &Seen, change: &Change, at: DateTime<Utc>, fields: &[String]) -> bool {
    use crate::reconcile::cursor::whole_second;
    use crate::reconcile::repair::same_value;
    let Some(old) = change.old.as_ref() else { return false };
    let lost_in_that_second = seen.gap.as_ref().is_some_and(|g| {
        whole_second(g.before) == whole_second(at)
            && g.from.iter().all(|(f, from)| old.get(f).is_some_and(|o| same_value(Some(o), from)))
            && g.to.iter().all(|(f, to)| change.new.get(f).is_some_and(|n| same_value(Some(n), to)))
    });
    if lost_in_that_second {
        return false;
    }
    let compared = || seen.fields.iter().filter(|(f, _)| fields.contains(f));
    compared().all(|(f, v)| old.get(f).is_some_and(|o| same_value(Some(o), v)))
        && compared().any(|(f, v)| change.new.get(f).is_some_and(|n| !same_value(Some(n), v)))
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn an_outbound_message_change_is_audited_under_its_own_route() {
        let message =
            OutboundMessage::parse(include_bytes!("../../../events/sfdc-to-pd/outbound-message.xml")).unwrap();
        let changes = changes_of_outbound_message(message, Utc::now());
        assert!(!changes.is_empty());
        for change in &changes {
            assert_eq!(Route::of(Direction::SalesforceToPagerduty, &change.key()), Route::OutboundMessage);
        }
        let event: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/sfdc-to-pd/case-insert-sev1.json")).unwrap();
        let post = TriggerPost::parse(event["body"].as_str().unwrap().as_bytes());
        let changes = changes_of_post(post.expect("a trigger post"));
        assert_eq!(changes.len(), 1);
        assert_eq!(Route::of(Direction::SalesforceToPagerduty, &changes[0].key()), Route::ApexTrigger);
        assert_eq!(Route::of(Direction::PagerdutyToSalesforce, "om:lookalike"), Route::PagerdutyWebhook);
        // What a reconcile writes came in by no route: it is no sign that a sender delivers.
        let repair = crate::reconcile::repair::event_id("pd-Q1-acknowledged-1796300000");
        assert_eq!(Route::of(Direction::PagerdutyToSalesforce, &repair), Route::Reconcile);
        assert_eq!(Route::of(Direction::SalesforceToPagerduty, "reconcile:1796304675603"), Route::Reconcile);
    }
}
