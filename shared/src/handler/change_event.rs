//! Change Data Capture events (Event Relay → EventBridge) as record changes of the sfdc-to-pd
//! pipeline: one [`Change`] per record the event names, keyed by the transaction, ordered by the
//! commit time, with what the bridge saw last standing in for the old values CDC never sends.
//!
//! A change event's `new` is its payload as sent (the `ChangeEventHeader` included, so that a
//! rule can match `ChangeEventHeader.changeType` = `DELETE` or `UNDELETE`). It names only the
//! changed fields; under the record's lease the pipeline completes it ([`with_last_seen`]) from
//! the record's [`Seen`] (the fields the rules compare with old values, bounded by them). The
//! first change the bridge sees of a record has no old values: `changed`, `changed_to`,
//! `changed_from` and `old.FIELD` conditions do not match it. A gap event carries no values: the
//! record is read again ([`reread`]).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::handler::settle::{Attempt, FailureKind};
use crate::handler::sfdc_to_pd::Change;
use crate::salesforce::change_event::{self, ChangeEvent, ChangeType, HEADER};
use crate::salesforce::{Record, SalesforceError};
use crate::store::Seen;

/// The record changes of one change event (also what `syncctl rules test` could evaluate).
pub fn changes_of_change_event(event: ChangeEvent) -> Vec<Change> {
    let header = &event.header;
    let mut new = event.fields.clone();
    // The header last, as it was sent: rules and the audit read it from the record.
    new.insert(HEADER.to_string(), event.payload.get(HEADER).cloned().unwrap_or(Value::Null));
    header
        .record_ids
        .iter()
        .map(|id| Change {
            object: header.entity.clone(),
            id: id.as_str().into(),
            is_new: header.change_type.is_create(),
            new: new.clone(),
            old: None,
            changed_by: None,
            occurred_at: header.commit_timestamp,
            dedupe_key: Some(event.key(id)),
        })
        .collect()
}

/// Whether an accepted event (live or from the retry queue) is a change event's.
pub fn is_change_event(event_id: &str) -> bool {
    event_id.starts_with(change_event::EVENT_PREFIX)
}

/// The change type a change event's record carries in its header.
pub fn change_type(change: &Change) -> Option<ChangeType> {
    header_str(change, "changeType").and_then(ChangeType::parse)
}

/// A string of the change's `ChangeEventHeader`.
pub fn header_str<'a>(change: &'a Change, field: &str) -> Option<&'a str> {
    change.new.get(HEADER)?.get(field)?.as_str()
}

/// The change completed from what the bridge saw of the record: its old values are the seen
/// ones, its new values the seen ones with the event's on top (a compound field such as
/// `Name` or `BillingAddress` carries only its changed parts: merged part by part). No `seen`:
/// the first sight of the record, no old values.
pub fn with_last_seen(change: &Change, seen: Option<&Seen>) -> Change {
    let Some(seen) = seen else { return change.clone() };
    let mut new = seen.fields.clone();
    for (field, value) in &change.new {
        match (new.get_mut(field), value) {
            (Some(Value::Object(kept)), Value::Object(parts)) => {
                for (part, v) in parts {
                    kept.insert(part.clone(), v.clone());
                }
            }
            _ => {
                new.insert(field.clone(), value.clone());
            }
        }
    }
    Change { new, old: Some(seen.fields.clone()), ..change.clone() }
}

/// A gap event's record as Salesforce has it now (a REST read, one API call), with the event's
/// header: `Ok(None)` when the record is gone (a `GAP_DELETE`, or deleted since).
pub async fn reread(
    client: &crate::salesforce::SalesforceClient,
    change: &Change,
) -> Result<Option<Record>, SalesforceError> {
    match client.get_record(change.object.as_str(), change.id.as_str(), None).await {
        Ok(mut record) => {
            record.remove("attributes");
            if let Some(header) = change.new.get(HEADER) {
                record.insert(HEADER.to_string(), header.clone());
            }
            Ok(Some(record))
        }
        Err(SalesforceError::Api { status: 404, .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The attempt when a gap's record cannot be read now: queued (transient, auth) or
/// dead-lettered with the reason (permanent).
pub fn reread_failed(err: &SalesforceError, at: DateTime<Utc>) -> Attempt {
    use crate::class::Classify;
    Attempt::Failed {
        kind: FailureKind::from(err.class()),
        reason: format!("gap event (committed {at}): re-reading the record failed: {err}"),
        rule: None,
        rules: vec![],
        actions: vec![],
        api_calls: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::id::OrgId;

    fn event(payload: Value, ids: &[&str], change_type: &str) -> ChangeEvent {
        let mut payload = payload;
        payload[HEADER] = serde_json::json!({
            "entityName": "Contact", "recordIds": ids, "changeType": change_type,
            "changeOrigin": "com/salesforce/api/rest/62.0", "transactionKey": "tx-1", "sequenceNumber": 3,
            "commitTimestamp": 1_795_860_000_123_i64, "commitUser": "0055g00000AbCdEAAS",
            "changedFields": ["Name.FirstName"]
        });
        let value = serde_json::json!({
            "id": "e1", "detail-type": "ContactChangeEvent",
            "source": "aws.partner/salesforce.com/00D5g000004XyZaEAK/0YLRM0000004CbH4AU",
            "detail": {"payload": payload}
        });
        ChangeEvent::from_value(&value, Some(&OrgId::parse("00D5g000004XyZaEAK").unwrap())).unwrap()
    }

    #[test]
    fn a_multi_record_event_is_one_change_per_record_with_its_own_key() {
        let ids = ["0035g00000AbCdEAAS", "0035g00000AbCdFAAS"];
        let changes = changes_of_change_event(event(serde_json::json!({"Title": "CTO"}), &ids, "UPDATE"));
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].id.as_str(), ids[0]);
        assert_ne!(changes[0].key(), changes[1].key());
        assert!(changes.iter().all(|c| c.old.is_none() && !c.is_new && c.occurred_at.timestamp_subsec_millis() == 123));
        assert_eq!(change_type(&changes[1]), Some(ChangeType::Update));
    }

    #[test]
    fn last_seen_values_are_the_old_ones_and_compound_parts_merge() {
        let change = &changes_of_change_event(event(
            serde_json::json!({"Name": {"FirstName": "Ada"}}),
            &["0035g00000AbCdEAAS"],
            "UPDATE",
        ))[0];
        assert_eq!(with_last_seen(change, None).old, None, "first sight: no old values");
        let seen = Seen {
            fields: serde_json::json!({"Name": {"FirstName": "Augusta", "LastName": "King"}, "Title": "CEO"})
                .as_object()
                .unwrap()
                .clone(),
            ..Seen::default()
        };
        let done = with_last_seen(change, Some(&seen));
        assert_eq!(done.old.as_ref().unwrap()["Name"]["FirstName"], "Augusta");
        assert_eq!(done.new["Name"], serde_json::json!({"FirstName": "Ada", "LastName": "King"}));
        assert_eq!(done.new["Title"], "CEO", "an unchanged field keeps its value");
    }
}
