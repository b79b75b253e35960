//! A record the bridge created for an incident is linked to that incident before the creating
//! event settles.
//!
//! The creating event's answer may be lost: Salesforce committed the insert, the bridge never
//! heard. The event then waits in the retry queue, for hours while Salesforce is down, and a
//! change of the new record meanwhile (an agent's comment on the new Case) finds nothing linked.
//! It would wait only [`steps::OPENING_WAIT`] for the link and then be skipped: lost (issue 20's
//! seed 8432). The record itself says who made it: its external id names the incident and the
//! rule ([`crate::rules::Rules::created_by`]), and the integration user created it.
//! - The record's echo links it when it arrives ([`link_echo`]): Change Data Capture sends the
//!   bridge's own writes back.
//! - A change that needs the link and finds none reads the record once ([`link_by_reading`]):
//!   the shipped Apex trigger and filtered Outbound Messages never send the bridge's writes back.
//!
//! For the same reason what the bridge wrote into a record is what it saw of the record
//! ([`see_written`]), not only what an echo shows.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::class::Classify;
use crate::handler::echo;
use crate::handler::ports::SalesforcePort;
use crate::handler::settle::{Attempt, FailureKind, store_failure};
use crate::handler::sfdc_to_pd::Change;
use crate::handler::steps;
use crate::model::{Link, RecordRef};
use crate::retry::envelope::Progress;
use crate::rules::{Action, PlannedAction, Rules, SalesforceAction};
use crate::salesforce::{ObjectName, SalesforceError};
use crate::store::{Lease, Seen, Subject, SubjectUpdate};

/// The field that names a record's creator.
const CREATED_BY_ID: &str = "CreatedById";
/// The record's last change's stamp (what a read of it shows is as of then).
const SYSTEM_MODSTAMP: &str = "SystemModstamp";

/// The echo of a record the bridge created links it, as the creating event would on settling.
/// Writing the link twice changes nothing; a failure to write it is retried like any other.
pub async fn link_echo(
    ports: steps::SubjectPorts<'_>,
    salesforce: SalesforcePort<'_>,
    rules: &crate::rules::cache::RulesCache,
    change: &Change,
) -> Result<(), Attempt> {
    // Only Salesforce's word that the integration user wrote it: a `changeOrigin` any API client
    // can send must not make a person's record the bridge's.
    if !change.is_new || echo::by_integration_user(salesforce, change).is_none() {
        return Ok(());
    }
    let Ok(rules) = rules.current().await else { return Ok(()) };
    match link_of(&rules.rules, &change.object, change.id.as_str(), &change.new, ports.clock.now()) {
        Some(link) => ports.links.put_link(&link).await.map_err(store_failure),
        None => Ok(()),
    }
}

/// What [`link_by_reading`] needs beyond the ports.
pub struct Reading<'a> {
    pub rules: &'a Rules,
    /// The change that found nothing linked, and the record it follows (its own, or a Case
    /// Comment's Case).
    pub change: &'a Change,
    pub record_id: &'a str,
    pub min_time_left: std::time::Duration,
    pub deadline: Option<DateTime<Utc>>,
}

/// The link of a record the bridge created, written now, when the record says so: its external
/// id names an incident and a link-making rule, and the integration user created it. Read once
/// per event (both are set by the insert: CreatedById never changes, and the external id field
/// is read-only for people, see salesforce/README.md) and only for an object such
/// a rule creates; a change of the record itself that carries both fields costs no call.
/// `Err` when the record cannot be read now: the event is retried like any failed call, for as
/// long as the retry policy allows, not only as long as a change waits for its opening event.
pub async fn link_by_reading(
    ports: steps::SubjectPorts<'_>,
    salesforce: SalesforcePort<'_>,
    progress: &mut Progress,
    reading: Reading<'_>,
) -> Result<Option<Linked>, Attempt> {
    let Reading { rules, change, record_id, min_time_left, deadline } = reading;
    let object = if record_id == change.id.as_str() { change.object.clone() } else { ObjectName::from("Case") };
    let fields = rules.creation_id_fields(&object);
    if fields.is_empty() || progress.creator_read {
        return Ok(None);
    }
    let own = match own_user_id(salesforce).await {
        Ok(own) => own,
        Err(err) => {
            salesforce.report_failure(&err).await;
            return Err(unreadable(&object, record_id, &err, 0));
        }
    };
    let by_bridge = |record: &serde_json::Map<String, Value>| {
        own.as_deref().is_some_and(|own| {
            record.get(CREATED_BY_ID).and_then(Value::as_str).is_some_and(|c| crate::salesforce::id::same_id(c, own))
        })
    };
    // A change of the record itself names its creator (the Apex trigger sends every field): a
    // person's record costs no read.
    let own_record = record_id == change.id.as_str();
    if own_record && change.new.contains_key(CREATED_BY_ID) && !by_bridge(&change.new) {
        progress.creator_read = true;
        return Ok(None);
    }
    let carried = own_record && fields.iter().all(|f| change.new.contains_key(f)) && by_bridge(&change.new);
    let record = if carried {
        change.new.clone()
    } else {
        if let Some(deferred) = steps::hold_back(salesforce.breaker, ports.clock, min_time_left, deadline, 0).await {
            return Err(deferred);
        }
        // The whole record: who created it, what the bridge compares, as of its stamp (a field
        // list could name a relationship a condition reads, which Salesforce refuses).
        match salesforce.client.get_record(object.as_str(), record_id, None).await {
            Ok(record) => record,
            Err(err) if !matches!(err.class(), crate::class::Class::Transient | crate::class::Class::Auth) => {
                // Gone, or an id Salesforce refuses (a create's field missing fails the create
                // itself, loudly): not a record the bridge created.
                tracing::info!(record = record_id, error = %err, "cannot read who created the record: taken for not the bridge's");
                serde_json::Map::new()
            }
            Err(err) => {
                salesforce.report_failure(&err).await;
                return Err(unreadable(&object, record_id, &err, 1));
            }
        }
    };
    let Some(link) =
        by_bridge(&record).then(|| link_of(rules, &object, record_id, &record, ports.clock.now())).flatten()
    else {
        // Not the bridge's: its later attempts need not read again. (One that is the bridge's
        // reads again only when writing its link failed: the link then answers.)
        progress.creator_read = true;
        return Ok(None);
    };
    ports.links.put_link(&link).await.map_err(store_failure)?;
    tracing::info!(
        record = record_id,
        incident = %link.incident_id,
        "the bridge created this record (its creating event has not settled): linked it"
    );
    // What it read is what the bridge saw of the record, as of the record's stamp: the creating
    // event, finding the record linked, writes nothing and records nothing (see `see_written`).
    let seen = (!carried)
        .then(|| record.get(SYSTEM_MODSTAMP).and_then(Value::as_str).and_then(crate::salesforce::time::parse_datetime))
        .flatten()
        .map(|at| Seen { created: true, ..Seen::of(at, &record, &rules.fields_compared_with_old(&object)) });
    Ok(Some(Linked { link, seen }))
}

/// A record [`link_by_reading`] found the bridge created: its link, written, and what the read
/// showed of it (`None` when the change carried it and nothing was read).
pub struct Linked {
    pub link: Link,
    pub seen: Option<Seen>,
}

/// What the bridge wrote into a record is what it saw of the record ([`Seen`]), as of `at`, a
/// time before the write (its start, or for a record an earlier attempt created, the event's
/// acceptance; whole seconds, as Salesforce stamps): the old values of the record's next change.
/// The Apex trigger never sends the bridge's writes back, and without this a person's change
/// whose post the sender gave up on, under a later write of the bridge, shows no gap for a
/// reconcile run to repair. A record it created is seen from then on ([`Seen::created`]); a
/// record it set fields of keeps what else was seen of it (only once something was). Kept only
/// when the record's subject is free and no change of it waits in the retry queue (its values
/// would read as a gap); a failure costs only that comparison.
pub async fn see_written(ports: steps::SubjectPorts<'_>, written: Written<'_>, at: DateTime<Utc>) {
    let Written { rules, holder, plan, done_before, progress, linked } = written;
    for planned in plan {
        let (record, fields, created) = match &planned.action {
            Action::Salesforce(SalesforceAction::CreateRecord { object, fields, incident_id, .. }) => {
                let link = linked.iter().find(|l| l.record.object == *object && l.incident_id == *incident_id);
                let Some(link) = link else { continue };
                (&link.record, fields, true)
            }
            // Written by this execution: one an earlier attempt made is not dated by this one.
            Action::Salesforce(SalesforceAction::SetFields { record, fields })
                if progress.is_done(&crate::handler::salesforce_exec::action_key(planned))
                    && !done_before.contains(&crate::handler::salesforce_exec::action_key(planned)) =>
            {
                (record, fields, false)
            }
            _ => continue,
        };
        let compared = rules.fields_compared_with_old(&record.object);
        if compared.is_empty() || !fields.keys().any(|f| compared.contains(f)) {
            continue;
        }
        let subject = Subject::Record(record.id.to_string());
        let now = ports.clock.now();
        if !matches!(
            ports.links.lease(&subject, holder, now, now + chrono::Duration::seconds(5)).await,
            Ok(Lease::Acquired)
        ) {
            continue;
        }
        let at = crate::reconcile::cursor::whole_second(at);
        let seen = match ports.links.subject_state(&subject).await {
            Ok(state) if state.pending.is_empty() => match (state.seen, created) {
                (None, true) => Some(Seen { created: true, ..Seen::of(at, fields, &compared) }),
                (Some(previous), false) if previous.at <= at => {
                    Some(Seen::after(Some(&previous), None, at, fields, &compared))
                }
                _ => None,
            },
            _ => None,
        };
        if let Err(err) =
            ports.links.update_subject(&subject, Some(holder), &SubjectUpdate { seen, ..Default::default() }).await
        {
            tracing::warn!(error = %err, subject = %subject.key(), "could not keep what the bridge wrote into the record");
        }
    }
}

/// What [`see_written`] reads of an execution.
pub struct Written<'a> {
    pub rules: &'a Rules,
    /// The event's lease holder: it takes each record's subject for a moment.
    pub holder: &'a str,
    /// The planned actions written (a subset of the plan: see the caller).
    pub plan: &'a [PlannedAction],
    /// The actions done before this execution (`Progress::done` then).
    pub done_before: &'a [String],
    pub progress: &'a Progress,
    /// The links the execution wrote for records it created.
    pub linked: &'a [Link],
}

/// The integration user's id: configured, or the session's (no call beyond the login).
async fn own_user_id(salesforce: SalesforcePort<'_>) -> Result<Option<String>, SalesforceError> {
    if !salesforce.integration_user_id.is_empty() {
        return Ok(Some(salesforce.integration_user_id.to_string()));
    }
    salesforce.client.user_id().await
}

fn link_of(
    rules: &Rules,
    object: &ObjectName,
    id: &str,
    fields: &serde_json::Map<String, Value>,
    now: DateTime<Utc>,
) -> Option<Link> {
    let (incident_id, rule) = rules.created_by(object, fields)?;
    Some(Link {
        incident_id,
        record: RecordRef { object: object.clone(), id: id.into() },
        created_at: now,
        created_by_rule: Some(rule.to_string()),
    })
}

fn unreadable(object: &ObjectName, id: &str, err: &SalesforceError, api_calls: u32) -> Attempt {
    Attempt::Failed {
        kind: FailureKind::from(err.class()),
        reason: format!(
            "nothing is linked to {object} {id}, and whether the bridge created it (its creating event \
             may be waiting in the retry queue) cannot be read now: {err}"
        ),
        rule: None,
        rules: vec![],
        actions: vec![],
        api_calls,
    }
}
