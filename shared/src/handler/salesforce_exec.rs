//! Executes the Salesforce part of a plan: every write of one event in ONE Composite request
//! (one API call; more only past Composite's 25 subrequests), creations as upserts on an
//! external id so a retry never creates a second record, created records linked to the
//! incident, and each succeeded action remembered in the envelope so a retry does only what is
//! left (`allOrNone: false`: one failed write does not undo the others).
//!
//! A lost answer is neither lost nor repeated: when a Composite request's outcome is unknown
//! (timeout or connection closed after sending, a 5xx, an unreadable answer), its additive writes
//! are marked *uncertain* in the envelope. Every Case Comment carries a reference derived from
//! the event and the action (`ref:<12 hex>`, one token per part); before an uncertain comment is
//! sent again, one SOQL query per Case looks for it and only the missing parts are written.
//! Upserts and field updates are safe to repeat and are simply sent again.
//!
//! No call is started whose timeout would run past the invocation's deadline less
//! [`SETTLE_MARGIN`]: what is left is returned as a deferral, with what succeeded marked done.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::class::{Class, Classify};
use crate::clock::Clock;
use crate::handler::ports::SalesforcePort;
use crate::handler::settle::{Attempt, FailureKind};
use crate::model::{ActionRecord, Link, RecordRef};
use crate::retry::breaker::Signal;
use crate::retry::envelope::Progress;
use crate::rules::{Action, Effect, PlannedAction, SalesforceAction, by_side};
use crate::salesforce::case_comment::{part_reference, referenced_parts};
use crate::salesforce::composite::{CompositeBuilder, MAX_SUBREQUESTS, Write};
use crate::salesforce::object_name::CASE_COMMENT;
use crate::salesforce::{SalesforceError, is_record_id};
use crate::store::LinkStore;
use crate::telemetry::metrics;

/// Time kept after the last outbound call's timeout for the event to settle (audit entry,
/// retry-queue send, store writes: each cut at the AWS clients' timeouts) before the function is
/// stopped: `Settings::settle_margin`'s default.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(2);

/// Newest Case Comments read when looking for one whose answer was lost (they are looked for
/// within the retry policy's hours, so a Case would need this many newer comments to hide one).
const COMMENTS_LOOKED_AT: usize = 200;

/// The reference a text the bridge writes carries (`ref:` and 12 hex digits), derived from the
/// event and the action: the same action of the same event (a retry, a DLQ replay) has the same
/// one, another event's has another.
pub fn reference(event_id: &str, action_key: &str) -> String {
    let digest = Sha256::digest(format!("{event_id}\n{action_key}").as_bytes());
    format!("ref:{}", &hex::encode(digest)[..12])
}

/// `text` with its reference on a last line of its own.
pub fn with_reference(text: &str, reference: &str) -> String {
    format!("{text}\n\n{reference}")
}

/// `text` without the reference line [`with_reference`] (or a Case Comment part's) put at its end.
pub fn without_reference(text: &str) -> &str {
    match text.rsplit_once("\n\nref:") {
        Some((body, token)) if !token.contains(char::is_whitespace) => body,
        _ => text,
    }
}

/// True when `text` carries `token` (a reference, or a part's reference) as a word of its own.
pub fn carries_reference(text: &str, token: &str) -> bool {
    text.split_whitespace().any(|word| word == token)
}

/// Additive actions that sending again could repeat: after a lost answer they are marked
/// uncertain and looked for before being sent again. An upsert on an external id too: it never
/// creates a second record, but sent again it writes the opening's fields over a record people
/// changed since.
pub fn needs_look(action: &Action) -> bool {
    action.effect() == Effect::Additive
}

/// The id of the `object` record whose `external_id_field` holds `external_id`, if any (one
/// query): a creation whose answer was lost is found, not sent again.
async fn record_by_external_id(
    salesforce: SalesforcePort<'_>,
    execution: &mut Execution,
    object: &str,
    external_id_field: &str,
    external_id: &str,
) -> Result<Option<String>, SalesforceError> {
    let soql = format!(
        "SELECT Id FROM {object} WHERE {external_id_field} = '{}' LIMIT 1",
        external_id.replace(['\\', '\''], "")
    );
    let result = look(salesforce, execution, &soql).await?;
    Ok(result.records.first().and_then(|r| r.get("Id")).and_then(Value::as_str).map(str::to_string))
}

/// A query that looks for what an earlier attempt may have written: counted like any call, the
/// API usage watched, and a success told to the breaker (it may be the half-open probe, and the
/// only call when everything is found).
async fn look(
    salesforce: SalesforcePort<'_>,
    execution: &mut Execution,
    soql: &str,
) -> Result<crate::salesforce::client::QueryResult, SalesforceError> {
    let result = salesforce.client.query(soql).await;
    execution.api_calls += 1;
    metrics::api_calls("salesforce", 1);
    let over_share = salesforce.watch_usage().await;
    let result = result?;
    if !over_share {
        let _ = salesforce.breaker.record_success().await;
    }
    Ok(result)
}

/// When the last outbound call must be answered: the invocation's deadline less `margin` (the
/// time to settle), on the monotonic clock (`None`: no deadline).
pub fn call_deadline(clock: &dyn Clock, deadline: Option<DateTime<Utc>>, margin: Duration) -> Option<Instant> {
    let left = (deadline? - clock.now()).to_std().unwrap_or_default();
    Some(Instant::now() + left.saturating_sub(margin))
}

/// True when a call with this timeout, started now, is answered (or given up) by `until`.
pub fn time_for_call(until: Option<Instant>, timeout: Duration) -> bool {
    until.is_none_or(|until| Instant::now() + timeout <= until)
}

/// The deferral's reason when no call may start any more.
pub fn out_of_time(service: &str, timeout: Duration) -> String {
    format!(
        "too little time left before the deadline for another {service} call ({timeout:?} timeout, and the time to settle): the rest is queued"
    )
}

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
    /// Set when a call was not started for lack of time: what is left is queued, not failed.
    pub deferred: Option<String>,
}

/// Writes the link of something this execution created, at once: an event of the other side
/// that arrives next must find it.
pub async fn link_created(
    links: &dyn LinkStore,
    execution: &mut Execution,
    link: Link,
) -> Result<(), crate::store::StoreError> {
    links.put_link(&link).await?;
    execution.linked.push(link);
    Ok(())
}

impl Execution {
    pub fn into_attempt(self, rules: Vec<String>, prior_calls: u32) -> Attempt {
        let api_calls = self.api_calls + prior_calls;
        match self.failure {
            None if self.deferred.is_some() => Attempt::Deferred {
                reason: self.deferred.unwrap_or_default(),
                until: None,
                actions: self.actions,
                api_calls,
            },
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

/// Maps a client error outside the writes (e.g. reading linked records) to an attempt.
pub fn failure(err: &SalesforceError, rules: Vec<String>, api_calls: u32) -> Attempt {
    Attempt::Failed {
        kind: FailureKind::from(err.class()),
        reason: err.to_string(),
        rule: None,
        rules,
        actions: vec![],
        api_calls,
    }
}

/// The bodies of the newest Case Comments on `case_id` (one SOQL query, one API call).
async fn case_comments(
    salesforce: SalesforcePort<'_>,
    execution: &mut Execution,
    case_id: &str,
) -> Result<Vec<String>, SalesforceError> {
    let soql = format!(
        "SELECT Id, CommentBody FROM CaseComment WHERE ParentId = '{case_id}' ORDER BY CreatedDate DESC LIMIT {COMMENTS_LOOKED_AT}"
    );
    let result = look(salesforce, execution, &soql).await?;
    Ok(result.records.iter().filter_map(|r| r.get("CommentBody").and_then(Value::as_str).map(str::to_string)).collect())
}

/// The Composite reference id of part `part` of action `index`.
fn subrequest_id(index: usize, part: usize) -> String {
    if part == 0 { format!("a{index}") } else { format!("a{index}_{}", part + 1) }
}

fn case_comment_write(case_id: &str, body: String) -> Write {
    let mut fields = Map::new();
    fields.insert("ParentId".into(), Value::String(case_id.to_string()));
    fields.insert("CommentBody".into(), Value::String(body));
    fields.insert("IsPublished".into(), Value::Bool(false));
    Write::Create { object: CASE_COMMENT.into(), fields }
}

/// The write of a set-fields action.
fn update(record: &RecordRef, fields: &Map<String, Value>) -> Write {
    Write::Update { object: record.object.to_string(), id: record.id.to_string(), fields: fields.clone() }
}

/// The write of a create-record action: an upsert on its external id.
fn upsert(object: &str, fields: &Map<String, Value>, external_id_field: &str, external_id: &str) -> Write {
    // The external id travels in the URL; Salesforce refuses it again in the body.
    let mut fields = fields.clone();
    fields.remove(external_id_field);
    Write::Upsert {
        object: object.to_string(),
        ext_field: external_id_field.to_string(),
        ext_value: external_id.to_string(),
        fields,
    }
}

struct Pending<'a> {
    key: String,
    planned: &'a PlannedAction,
    refs: Vec<String>,
    /// Some parts of this comment were already found written: only the others are sent.
    partial: bool,
}

/// What a Case Comment action still has to write.
enum CommentParts {
    /// Every part is there (an earlier attempt wrote it and its answer was lost).
    Found(String),
    /// Could not be looked for: not sent again now.
    Unchecked(String),
    /// These parts (all, or those not found); `partial` when others were found.
    Write { writes: Vec<(String, Write)>, partial: bool },
}

/// The parts of a Case Comment action still to write: all of them, or, after a lost answer,
/// those its reference tokens were not found for.
fn comment_parts(
    event_id: &str,
    progress: &mut Progress,
    key: &str,
    index: usize,
    case_id: &str,
    body: &str,
    present: &HashMap<String, Result<Vec<String>, String>>,
) -> CommentParts {
    let reference = reference(event_id, key);
    let parts = referenced_parts(body, &reference);
    let total = parts.len();
    let looked = if progress.is_uncertain(key) {
        match present.get(case_id) {
            Some(Ok(bodies)) => Some(bodies),
            Some(Err(reason)) => return CommentParts::Unchecked(reason.clone()),
            None => return CommentParts::Unchecked(format!("Case {case_id} could not be looked at")),
        }
    } else {
        None
    };
    let mut writes = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let token = part_reference(&reference, i, total);
        if looked.is_some_and(|bodies| bodies.iter().any(|b| carries_reference(b, &token))) {
            continue;
        }
        writes.push((subrequest_id(index, i), case_comment_write(case_id, part)));
    }
    // Looked for: what is missing is known to be missing.
    progress.clear_uncertain(key);
    if writes.is_empty() {
        return CommentParts::Found(format!(
            "found by its reference {reference}: an earlier attempt wrote it and its answer was lost; not written again"
        ));
    }
    CommentParts::Write { partial: writes.len() < total, writes }
}

/// Runs what is left of `plan`'s Salesforce actions. No call starts whose timeout would run
/// past `deadline` less [`SETTLE_MARGIN`]. The links of created records are written to `links`.
pub async fn execute(
    salesforce: SalesforcePort<'_>,
    links: &dyn LinkStore,
    clock: &dyn Clock,
    event_id: &str,
    progress: &mut Progress,
    plan: &[PlannedAction],
    until: Option<Instant>,
) -> Execution {
    let mut execution = Execution::default();
    let timeout = salesforce.client.timeout();
    let version = salesforce.client.api_version().to_string();

    let steps = by_side(plan).salesforce;
    // Case Comments whose answer was lost: look for them first, one query per Case.
    let mut cases: Vec<&str> = steps
        .iter()
        .filter_map(|step| match step.action {
            SalesforceAction::AddCaseComment { case_id, .. } => {
                let key = action_key(step.planned);
                (progress.is_uncertain(&key) && !progress.is_done(&key)).then_some(case_id.as_str())
            }
            SalesforceAction::SetFields { .. } | SalesforceAction::CreateRecord { .. } => None,
        })
        .collect();
    cases.sort_unstable();
    cases.dedup();
    let mut present: HashMap<String, Result<Vec<String>, String>> = HashMap::new();
    for case_id in cases {
        if !is_record_id(case_id) {
            present.insert(case_id.to_string(), Err(format!("{case_id} is not a record id to query")));
            continue;
        }
        if !time_for_call(until, timeout) {
            execution.deferred = Some(out_of_time("Salesforce", timeout));
            return execution;
        }
        let looked = case_comments(salesforce, &mut execution, case_id).await;
        if let Err(err) = &looked {
            salesforce.report_failure(err).await;
            let reason = format!("could not look for the comments an earlier attempt may have written: {err}");
            execution.failure.get_or_insert((FailureKind::from(err.class()), reason, None));
        }
        present.insert(case_id.to_string(), looked.map_err(|e| e.to_string()));
    }

    // Composite caps a request at 25 subrequests: fill a batch, then start another.
    let mut batches: Vec<(CompositeBuilder, Vec<Pending<'_>>)> = Vec::new();
    for step in steps {
        let (index, planned) = (step.index, step.planned);
        let key = action_key(planned);
        if progress.is_done(&key) {
            continue;
        }
        let (writes, partial) = match step.action {
            SalesforceAction::SetFields { record, fields } => {
                (vec![(subrequest_id(index, 0), update(record, fields))], false)
            }
            SalesforceAction::CreateRecord { object, fields, external_id_field, external_id, link, incident_id } => {
                if progress.is_uncertain(&key) {
                    if !time_for_call(until, timeout) {
                        execution.deferred = Some(out_of_time("Salesforce", timeout));
                        return execution;
                    }
                    match record_by_external_id(
                        salesforce,
                        &mut execution,
                        object.as_str(),
                        external_id_field,
                        external_id,
                    )
                    .await
                    {
                        Ok(Some(id)) => {
                            // Created by the attempt whose answer was lost: linked, not written again.
                            if *link {
                                let link = Link {
                                    incident_id: incident_id.clone(),
                                    record: RecordRef { object: object.clone(), id: id.as_str().into() },
                                    created_at: clock.now(),
                                    created_by_rule: Some(planned.rule.clone()),
                                };
                                if let Err(err) = link_created(links, &mut execution, link).await {
                                    let reason = format!("found {object} {id} but could not link it: {err}");
                                    execution.actions.push(action_record(planned, false, Some(reason.clone())));
                                    execution.fail(FailureKind::Transient, reason, &planned.rule);
                                    continue;
                                }
                            }
                            progress.mark_done(key);
                            metrics::action(planned.action.name(), true);
                            execution.actions.push(action_record(planned, true, Some(id)));
                            continue;
                        }
                        Ok(None) => {}
                        Err(err) => {
                            salesforce.report_failure(&err).await;
                            let reason =
                                format!("could not look for the {object} an earlier attempt may have created: {err}");
                            execution.actions.push(action_record(planned, false, Some(reason.clone())));
                            execution.fail(FailureKind::from(err.class()), reason, &planned.rule);
                            continue;
                        }
                    }
                }
                let write = upsert(object.as_str(), fields, external_id_field, external_id);
                (vec![(subrequest_id(index, 0), write)], false)
            }
            SalesforceAction::AddCaseComment { case_id, body } => {
                match comment_parts(event_id, progress, &key, index, case_id, body, &present) {
                    CommentParts::Write { writes, partial } => (writes, partial),
                    CommentParts::Found(detail) => {
                        progress.mark_done(key);
                        metrics::action(planned.action.name(), true);
                        execution.actions.push(action_record(planned, true, Some(detail)));
                        continue;
                    }
                    CommentParts::Unchecked(reason) => {
                        let reason = format!("outcome unknown and not looked for yet, not sent again: {reason}");
                        execution.actions.push(action_record(planned, false, Some(reason.clone())));
                        execution.fail(FailureKind::Transient, reason, &planned.rule);
                        continue;
                    }
                }
            }
        };
        let mut trial = CompositeBuilder::new(&version, false);
        if let Err(err) = writes.iter().try_for_each(|(r, w)| trial.push(r, w.clone()).map(drop)) {
            execution.actions.push(action_record(planned, false, Some(err.to_string())));
            execution.fail(FailureKind::from(err.class()), err.to_string(), &planned.rule);
            continue;
        }
        if batches.last().is_none_or(|(builder, _)| builder.len() + trial.len() > MAX_SUBREQUESTS) {
            batches.push((CompositeBuilder::new(&version, false), Vec::new()));
        }
        let (builder, pending) = batches.last_mut().expect("just ensured");
        let mut refs = Vec::new();
        for (reference_id, write) in writes {
            refs.extend(builder.push(&reference_id, write).expect("checked on a trial builder"));
        }
        pending.push(Pending { key, planned, refs, partial });
    }

    for (builder, pending) in batches {
        let request = match builder.build() {
            Ok(request) => request,
            Err(err) => {
                for p in &pending {
                    execution.actions.push(action_record(p.planned, false, Some(err.to_string())));
                }
                let rule = pending.first().map(|p| p.planned.rule.clone()).unwrap_or_default();
                execution.fail(FailureKind::from(err.class()), err.to_string(), &rule);
                continue;
            }
        };
        if !time_for_call(until, timeout) {
            execution.deferred = Some(out_of_time("Salesforce", timeout));
            break;
        }
        let response = salesforce.client.composite(&request).await;
        execution.api_calls += 1;
        metrics::api_calls("salesforce", 1);
        let over_share = salesforce.watch_usage().await;
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                salesforce.report_failure(&err).await;
                // A lost answer to the whole request: each of its writes may have happened.
                let unknown = err.outcome_unknown();
                for p in &pending {
                    if (unknown || p.partial) && needs_look(&p.planned.action) {
                        progress.mark_uncertain(&p.key);
                    }
                    metrics::action(p.planned.action.name(), false);
                    execution.actions.push(action_record(p.planned, false, Some(err.to_string())));
                }
                let rule = pending.first().map(|p| p.planned.rule.clone()).unwrap_or_default();
                execution.fail(FailureKind::from(err.class()), err.to_string(), &rule);
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
                    kind: Class::Transient,
                }),
            });
            if let Some(failure) = failure {
                // A part written while another failed, or a part without an answer: look before
                // sending it again, so that the written parts are not written twice.
                let partly =
                    p.partial || p.refs.iter().any(|r| response.get(r).is_none_or(|result| result.is_success()));
                if partly && needs_look(&p.planned.action) {
                    progress.mark_uncertain(&p.key);
                }
                metrics::action(p.planned.action.name(), false);
                let reason = failure.to_string();
                if failure.kind == Class::Transient {
                    transient_failure = Some(reason.clone());
                }
                execution.actions.push(action_record(p.planned, false, Some(reason.clone())));
                execution.fail(FailureKind::from(failure.kind), reason, &p.planned.rule);
                continue;
            }
            let created = p.refs.first().and_then(|r| response.get(r)).and_then(|s| s.id()).map(str::to_string);
            if let (
                Action::Salesforce(SalesforceAction::CreateRecord { object, link: true, incident_id, .. }),
                Some(id),
            ) = (&p.planned.action, &created)
            {
                let link = Link {
                    incident_id: incident_id.clone(),
                    record: RecordRef { object: object.clone(), id: id.as_str().into() },
                    created_at: clock.now(),
                    created_by_rule: Some(p.planned.rule.clone()),
                };
                if let Err(err) = link_created(links, &mut execution, link).await {
                    // Not done, and uncertain: the retry finds the record by its external id and links it.
                    progress.mark_uncertain(&p.key);
                    let reason = format!("created {object} {id} but could not link it: {err}");
                    execution.actions.push(action_record(p.planned, false, Some(reason.clone())));
                    execution.fail(FailureKind::Transient, reason, &p.planned.rule);
                    continue;
                }
            }
            progress.mark_done(p.key);
            metrics::action(p.planned.action.name(), true);
            execution.actions.push(action_record(p.planned, true, created));
        }
        match transient_failure {
            Some(reason) => {
                let _ = salesforce.breaker.record_failure(Signal::Transient(reason)).await;
            }
            // Above the usage share the pause must hold: this success does not close it.
            None if over_share => {}
            None => {
                let _ = salesforce.breaker.record_success().await;
            }
        }
    }
    execution
}
