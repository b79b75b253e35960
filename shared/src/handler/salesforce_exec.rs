//! Executes the Salesforce part of a plan: every write of one event in ONE Composite request
//! (one API call; more only past Composite's 25 subrequests), creations as upserts on an
//! external id so a retry never creates a second record, created records linked to the
//! incident, and each succeeded action remembered in the envelope so a retry does only what is
//! left (`allOrNone: false`: one failed write does not undo the others).

use sha2::{Digest, Sha256};

use crate::handler::context::Context;
use crate::handler::settle::{Attempt, FailureKind};
use crate::model::{ActionRecord, Link, RecordRef};
use crate::retry::breaker::Signal;
use crate::retry::envelope::Envelope;
use crate::rules::{Action, PlannedAction};
use crate::salesforce::composite::{CompositeBuilder, MAX_SUBREQUESTS, Write};
use crate::salesforce::{ErrorKind, SalesforceError};
use crate::telemetry::metrics;

/// Share of the org's daily API limit above which the breaker opens (pause before it runs dry).
pub const API_USAGE_PAUSE_SHARE: f64 = 0.9;

/// A stable key for a planned action: the same action planned again has the same key.
pub fn action_key(planned: &PlannedAction) -> String {
    let json = serde_json::to_string(&planned.action).expect("plans serialise");
    let digest = Sha256::digest(json.as_bytes());
    format!("{}:{}", planned.action.name(), &hex::encode(digest)[..16])
}

/// The audit trail's record of one action.
pub fn action_record(planned: &PlannedAction, ok: bool, detail: Option<String>) -> ActionRecord {
    ActionRecord {
        action: planned.action.name().to_string(),
        rule: planned.rule.clone(),
        target: planned.action.target(),
        ok,
        detail,
    }
}

/// What one execution did.
#[derive(Debug, Default)]
pub struct Execution {
    pub actions: Vec<ActionRecord>,
    pub api_calls: u32,
    /// The first failure: kind, reason, rule.
    pub failure: Option<(FailureKind, String, Option<String>)>,
    /// Set when the failure is our own rate limiter holding the call back until a reset: nothing
    /// was sent, so the event waits for the reset without spending one of its attempts.
    pub held_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Links written for records or incidents this execution created (their ids join the audit entry's subjects).
    pub linked: Vec<Link>,
    /// The event's watermark was written with its first link (see [`link_created`]).
    pub watermark_done: bool,
}

/// The incident or record an event is about, and when the event happened: its watermark.
#[derive(Debug, Clone, Copy)]
pub struct Watermark<'a> {
    pub subject: &'a crate::store::Subject,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Writes the link of something this execution created. The first one also moves the event's
/// watermark in the same store request (a created link is the event's last write but the audit).
pub async fn link_created(
    ctx: &Context,
    execution: &mut Execution,
    link: Link,
    watermark: Watermark<'_>,
) -> Result<(), crate::store::StoreError> {
    // The event's marks are written with its lease given back, once it settles.
    let _ = watermark;
    ctx.stores.links.put_link(&link).await?;
    execution.linked.push(link);
    Ok(())
}

impl Execution {
    pub fn into_attempt(self, rules: Vec<String>, prior_calls: u32) -> Attempt {
        let api_calls = self.api_calls + prior_calls;
        match self.failure {
            None => Attempt::Applied { rules, actions: self.actions, api_calls },
            Some((_, reason, _)) if self.held_until.is_some() => {
                Attempt::Deferred { reason, until: self.held_until, actions: self.actions, api_calls }
            }
            Some((kind, reason, rule)) => {
                Attempt::Failed { kind, reason, rule, rules, actions: self.actions, api_calls }
            }
        }
    }

    fn fail(&mut self, kind: FailureKind, reason: String, rule: &str) {
        self.failure.get_or_insert((kind, reason, Some(rule.to_string())));
    }
}

/// How the retry machinery treats a Salesforce error kind.
pub fn failure_kind(kind: ErrorKind) -> FailureKind {
    match kind {
        ErrorKind::Transient => FailureKind::Transient,
        ErrorKind::Auth => FailureKind::Auth,
        ErrorKind::Permanent | ErrorKind::BadInput => FailureKind::Permanent,
    }
}

/// Maps a client error outside the writes (e.g. reading linked records) to an attempt.
pub fn failure(err: &SalesforceError, rules: Vec<String>, api_calls: u32) -> Attempt {
    Attempt::Failed {
        kind: failure_kind(err.kind()),
        reason: err.to_string(),
        rule: None,
        rules,
        actions: vec![],
        api_calls,
    }
}

/// Tells the breaker about a failed call: exhaustion opens it at once, other transient errors count.
pub async fn report_failure(ctx: &Context, err: &SalesforceError) {
    if err.error_codes().contains(&"REQUEST_LIMIT_EXCEEDED") {
        let _ = ctx.salesforce_breaker.record_failure(Signal::Exhausted(err.to_string())).await;
    } else if err.is_transient() {
        let _ = ctx.salesforce_breaker.record_failure(Signal::Transient(err.to_string())).await;
    }
}

/// Watches the org's API usage after a call: above the pause share the breaker opens.
pub async fn watch_usage(ctx: &Context) {
    if let Some(usage) = ctx.salesforce.api_usage() {
        metrics::salesforce_api_usage_percent(usage.share() * 100.0);
        if usage.share() >= API_USAGE_PAUSE_SHARE {
            let reason =
                format!("API usage {}/{} is above {:.0}%", usage.used, usage.limit, API_USAGE_PAUSE_SHARE * 100.0);
            let _ = ctx.salesforce_breaker.record_failure(Signal::Exhausted(reason)).await;
        }
    }
}

fn write_for(action: &Action) -> Option<Write> {
    Some(match action {
        Action::SetFields { record, fields } => {
            Write::Update { object: record.object.clone(), id: record.id.clone(), fields: fields.clone() }
        }
        Action::CreateRecord { object, fields, external_id_field, external_id, .. } => {
            // The external id travels in the URL; Salesforce refuses it again in the body.
            let mut fields = fields.clone();
            fields.remove(external_id_field);
            Write::Upsert {
                object: object.clone(),
                ext_field: external_id_field.clone(),
                ext_value: external_id.clone(),
                fields,
            }
        }
        Action::AddCaseComment { case_id, body } => {
            Write::AddCaseComment { case_id: case_id.clone(), body: body.clone(), published: false }
        }
        _ => return None,
    })
}

struct Pending<'a> {
    key: String,
    planned: &'a PlannedAction,
    refs: Vec<String>,
}

/// Runs what is left of `plan`'s Salesforce actions.
pub async fn execute(
    ctx: &Context,
    envelope: &mut Envelope,
    plan: &[PlannedAction],
    watermark: Watermark<'_>,
) -> Execution {
    let mut execution = Execution::default();
    let version = ctx.salesforce.api_version().to_string();
    // Composite caps a request at 25 subrequests: fill a batch, then start another.
    let mut batches: Vec<(CompositeBuilder, Vec<Pending<'_>>)> = Vec::new();
    for (index, planned) in plan.iter().enumerate() {
        let Some(write) = write_for(&planned.action) else { continue };
        let key = action_key(planned);
        if envelope.is_done(&key) {
            continue;
        }
        let mut trial = CompositeBuilder::new(&version, false);
        let needed = match trial.push("probe", write.clone()) {
            Ok(refs) => refs.len(),
            Err(err) => {
                execution.actions.push(action_record(planned, false, Some(err.to_string())));
                execution.fail(failure_kind(err.kind()), err.to_string(), &planned.rule);
                continue;
            }
        };
        if batches.last().is_none_or(|(builder, _)| builder.len() + needed > MAX_SUBREQUESTS) {
            batches.push((CompositeBuilder::new(&version, false), Vec::new()));
        }
        let (builder, pending) = batches.last_mut().expect("just ensured");
        let refs = builder.push(&format!("a{index}"), write).expect("checked on a trial builder");
        pending.push(Pending { key, planned, refs });
    }

    for (builder, pending) in batches {
        let request = match builder.build() {
            Ok(request) => request,
            Err(err) => {
                for p in &pending {
                    execution.actions.push(action_record(p.planned, false, Some(err.to_string())));
                }
                let rule = pending.first().map(|p| p.planned.rule.clone()).unwrap_or_default();
                execution.fail(failure_kind(err.kind()), err.to_string(), &rule);
                continue;
            }
        };
        let response = ctx.salesforce.composite(&request).await;
        execution.api_calls += 1;
        metrics::api_calls("salesforce", 1);
        watch_usage(ctx).await;
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                report_failure(ctx, &err).await;
                for p in &pending {
                    metrics::action(p.planned.action.name(), false);
                    execution.actions.push(action_record(p.planned, false, Some(err.to_string())));
                }
                let rule = pending.first().map(|p| p.planned.rule.clone()).unwrap_or_default();
                execution.fail(failure_kind(err.kind()), err.to_string(), &rule);
                continue;
            }
        };
        let mut transient_failure = None;
        for p in pending {
            let failure = p.refs.iter().find_map(|r| match response.get(r) {
                Some(result) => result.failure(),
                None => Some(crate::salesforce::SubrequestFailure {
                    reference_id: r.clone(),
                    http_status: 0,
                    errors: vec![],
                    kind: ErrorKind::Transient,
                }),
            });
            if let Some(failure) = failure {
                metrics::action(p.planned.action.name(), false);
                let reason = failure.to_string();
                if failure.kind == ErrorKind::Transient {
                    transient_failure = Some(reason.clone());
                }
                execution.actions.push(action_record(p.planned, false, Some(reason.clone())));
                execution.fail(failure_kind(failure.kind), reason, &p.planned.rule);
                continue;
            }
            let created = p.refs.first().and_then(|r| response.get(r)).and_then(|s| s.id()).map(str::to_string);
            if let (Action::CreateRecord { object, link: true, incident_id, .. }, Some(id)) =
                (&p.planned.action, &created)
            {
                let link = Link {
                    incident_id: incident_id.clone(),
                    record: RecordRef { object: object.clone(), id: id.clone() },
                    created_at: ctx.clock.now(),
                    created_by_rule: Some(p.planned.rule.clone()),
                };
                if let Err(err) = link_created(ctx, &mut execution, link, watermark).await {
                    // Not marked done: the retry upserts the same record (same external id) and links it.
                    let reason = format!("created {object} {id} but could not link it: {err}");
                    execution.actions.push(action_record(p.planned, false, Some(reason.clone())));
                    execution.fail(FailureKind::Transient, reason, &p.planned.rule);
                    continue;
                }
            }
            envelope.mark_done(p.key);
            metrics::action(p.planned.action.name(), true);
            execution.actions.push(action_record(p.planned, true, created));
        }
        match transient_failure {
            Some(reason) => {
                let _ = ctx.salesforce_breaker.record_failure(Signal::Transient(reason)).await;
            }
            None => {
                let _ = ctx.salesforce_breaker.record_success().await;
            }
        }
    }
    execution
}
