//! Change Data Capture events as Salesforce Event Relay puts them on an Amazon EventBridge
//! partner event bus: the EventBridge envelope (`source` =
//! `aws.partner/salesforce.com/<org id>/<channel id>`, `detail-type` the channel's event name)
//! around `detail.payload`, the change event itself: the changed fields and `ChangeEventHeader`
//! (`entityName`, `changeType`, `changedFields`, `nulledFields`, `diffFields`, `recordIds`,
//! `commitTimestamp` in epoch milliseconds, `commitNumber`, `transactionKey`, `sequenceNumber`,
//! `changeOrigin`, `commitUser`).
//!
//! Parsed from JSON here (no AWS types in the core): the Lambda adapter hands the event over as
//! it arrived. A change event never carries old values; what the bridge saw last stands in for
//! them ([`crate::store::Seen`], applied by `handler::sfdc_to_pd`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::id::OrgId;
use super::{ObjectName, Record, is_record_id};

/// The `source` prefix of every Event Relay event.
pub const SOURCE_PREFIX: &str = "aws.partner/salesforce.com/";
/// The header's key in the payload.
pub const HEADER: &str = "ChangeEventHeader";
/// A change event names at most this many records (Salesforce batches up to a few hundred
/// records of one transaction; more than this is not a change event).
pub const MAX_RECORDS: usize = 2_000;

/// What happened to the records. `Gap*` and `GapOverflow`: Salesforce could not build the
/// event (too large, an internal error, a change outside the application server); the event
/// carries no field values and the records must be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeType {
    Create,
    Update,
    Delete,
    Undelete,
    GapCreate,
    GapUpdate,
    GapDelete,
    GapUndelete,
    GapOverflow,
}

impl ChangeType {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "CREATE" => Self::Create,
            "UPDATE" => Self::Update,
            "DELETE" => Self::Delete,
            "UNDELETE" => Self::Undelete,
            "GAP_CREATE" => Self::GapCreate,
            "GAP_UPDATE" => Self::GapUpdate,
            "GAP_DELETE" => Self::GapDelete,
            "GAP_UNDELETE" => Self::GapUndelete,
            "GAP_OVERFLOW" => Self::GapOverflow,
            _ => return None,
        })
    }

    /// As Salesforce writes it (what a rule on `ChangeEventHeader.changeType` compares).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Undelete => "UNDELETE",
            Self::GapCreate => "GAP_CREATE",
            Self::GapUpdate => "GAP_UPDATE",
            Self::GapDelete => "GAP_DELETE",
            Self::GapUndelete => "GAP_UNDELETE",
            Self::GapOverflow => "GAP_OVERFLOW",
        }
    }

    /// The event carries no usable field values: the record must be read again.
    pub fn is_gap(self) -> bool {
        matches!(self, Self::GapCreate | Self::GapUpdate | Self::GapDelete | Self::GapUndelete | Self::GapOverflow)
    }

    /// The record's first change (a gap's too).
    pub fn is_create(self) -> bool {
        matches!(self, Self::Create | Self::GapCreate)
    }
}

/// `ChangeEventHeader`, the fields the bridge reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEventHeader {
    pub entity: ObjectName,
    pub change_type: ChangeType,
    pub changed_fields: Vec<String>,
    pub nulled_fields: Vec<String>,
    pub diff_fields: Vec<String>,
    pub record_ids: Vec<String>,
    pub commit_timestamp: DateTime<Utc>,
    pub commit_number: Option<i64>,
    pub transaction_key: String,
    pub sequence_number: u64,
    pub change_origin: String,
    pub commit_user: String,
}

/// A parsed, checked Event Relay change event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// The org of the `source` (`aws.partner/salesforce.com/<org id>/<channel id>`).
    pub org_id: String,
    pub channel_id: String,
    /// `detail-type`: the channel's event name (`CaseChangeEvent`, a custom channel's name).
    pub detail_type: String,
    /// The EventBridge event id (a new one on each EventBridge retry: not a dedupe key).
    pub event_id: String,
    pub header: ChangeEventHeader,
    /// The payload's record fields, without the header.
    pub fields: Record,
    /// The whole payload as sent (header included): what rules and the audit see.
    pub payload: Record,
}

/// Why an EventBridge event was refused as a change event. Each names the part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeEventError {
    #[error("change event is not valid JSON: {0}")]
    Json(String),
    #[error("change event must be a JSON object")]
    NotAnObject,
    #[error("change event field `{field}` is missing or has the wrong type (expected {expected})")]
    Field { field: &'static str, expected: &'static str },
    #[error(
        "event source `{0}` is not a Salesforce Event Relay source (aws.partner/salesforce.com/<org id>/<channel>)"
    )]
    Source(String),
    #[error("event source names org `{found}`, not the configured org")]
    ForeignOrg { found: String },
    #[error("changeType `{0}` is not a Change Data Capture change type")]
    ChangeType(String),
    #[error("entityName `{0}` is not an sObject API name")]
    Entity(String),
    #[error("recordIds entry `{0}` is not a Salesforce record id")]
    RecordId(String),
    #[error("recordIds is empty")]
    NoRecords,
    #[error("recordIds names {0} records; a change event names at most {MAX_RECORDS}")]
    TooManyRecords(usize),
    #[error("commitTimestamp {0} is not a time in epoch milliseconds")]
    CommitTimestamp(i64),
}

impl crate::class::Classify for ChangeEventError {
    fn class(&self) -> crate::class::Class {
        crate::class::Class::BadInput
    }
}

/// Whether an EventBridge event is a Salesforce Event Relay event at all (its `source`), before
/// it is parsed: what the Lambda adapter routes by.
pub fn is_event_relay(value: &Value) -> bool {
    value.get("source").and_then(Value::as_str).is_some_and(|s| s.starts_with(SOURCE_PREFIX))
}

fn str_of<'a>(obj: &'a serde_json::Map<String, Value>, field: &'static str) -> Result<&'a str, ChangeEventError> {
    obj.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(ChangeEventError::Field { field, expected: "a non-empty string" })
}

fn strings(obj: &serde_json::Map<String, Value>, field: &'static str) -> Result<Vec<String>, ChangeEventError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(ChangeEventError::Field { field, expected: "an array of strings" }),
        Some(_) => Err(ChangeEventError::Field { field, expected: "an array of strings" }),
    }
}

/// `aws.partner/salesforce.com/<org id>/<channel id>` → (org id, channel id).
fn split_source(source: &str) -> Result<(&str, &str), ChangeEventError> {
    let bad = || ChangeEventError::Source(crate::model::cut(source, 120));
    let rest = source.strip_prefix(SOURCE_PREFIX).ok_or_else(bad)?;
    let (org, channel) = rest.split_once('/').ok_or_else(bad)?;
    if org.is_empty() || channel.is_empty() || channel.contains('/') {
        return Err(bad());
    }
    Ok((org, channel))
}

impl ChangeEvent {
    pub fn parse(body: &[u8], org: Option<&OrgId>) -> Result<Self, ChangeEventError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| ChangeEventError::Json(e.to_string()))?;
        Self::from_value(&value, org)
    }

    /// Parses and checks an EventBridge event. The org comes first: an event of another org
    /// (or with no org configured) is refused before anything of it is read.
    pub fn from_value(value: &Value, org: Option<&OrgId>) -> Result<Self, ChangeEventError> {
        let Value::Object(obj) = value else { return Err(ChangeEventError::NotAnObject) };
        let source = str_of(obj, "source")?;
        let (org_id, channel_id) = split_source(source)?;
        if !org.is_some_and(|o| o.is(org_id)) {
            return Err(ChangeEventError::ForeignOrg { found: crate::model::cut(org_id, 40) });
        }
        let detail_type = str_of(obj, "detail-type")?.to_string();
        let event_id = obj.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let payload = obj
            .get("detail")
            .and_then(|d| d.get("payload"))
            .and_then(Value::as_object)
            .ok_or(ChangeEventError::Field { field: "detail.payload", expected: "an object" })?;
        let h = payload
            .get(HEADER)
            .and_then(Value::as_object)
            .ok_or(ChangeEventError::Field { field: "detail.payload.ChangeEventHeader", expected: "an object" })?;
        let entity = str_of(h, "entityName")?;
        super::check_name(entity).map_err(|_| ChangeEventError::Entity(crate::model::cut(entity, 80)))?;
        let change_type = str_of(h, "changeType")?;
        let change_type = ChangeType::parse(change_type)
            .ok_or_else(|| ChangeEventError::ChangeType(crate::model::cut(change_type, 40)))?;
        let record_ids = strings(h, "recordIds")?;
        if record_ids.is_empty() {
            return Err(ChangeEventError::NoRecords);
        }
        if record_ids.len() > MAX_RECORDS {
            return Err(ChangeEventError::TooManyRecords(record_ids.len()));
        }
        if let Some(bad) = record_ids.iter().find(|id| !is_record_id(id)) {
            return Err(ChangeEventError::RecordId(crate::model::cut(bad, 40)));
        }
        let millis = h
            .get("commitTimestamp")
            .and_then(Value::as_i64)
            .ok_or(ChangeEventError::Field { field: "commitTimestamp", expected: "epoch milliseconds" })?;
        let commit_timestamp =
            DateTime::<Utc>::from_timestamp_millis(millis).ok_or(ChangeEventError::CommitTimestamp(millis))?;
        let sequence_number = h
            .get("sequenceNumber")
            .and_then(Value::as_u64)
            .ok_or(ChangeEventError::Field { field: "sequenceNumber", expected: "a whole number" })?;
        let header = ChangeEventHeader {
            entity: ObjectName::from(entity),
            change_type,
            changed_fields: strings(h, "changedFields")?,
            nulled_fields: strings(h, "nulledFields")?,
            diff_fields: strings(h, "diffFields")?,
            record_ids,
            commit_timestamp,
            commit_number: h.get("commitNumber").and_then(Value::as_i64),
            transaction_key: str_of(h, "transactionKey")?.to_string(),
            sequence_number,
            change_origin: h.get("changeOrigin").and_then(Value::as_str).unwrap_or_default().to_string(),
            commit_user: h.get("commitUser").and_then(Value::as_str).unwrap_or_default().to_string(),
        };
        let mut fields = payload.clone();
        fields.remove(HEADER);
        // Salesforce leaves a nulled field out of the payload or sends it as null: either way
        // it is null now.
        for f in &header.nulled_fields {
            fields.insert(f.clone(), Value::Null);
        }
        Ok(Self {
            org_id: org_id.to_string(),
            channel_id: channel_id.to_string(),
            detail_type,
            event_id,
            header,
            fields,
            payload: payload.clone(),
        })
    }

    /// The dedupe key of the change to `record_id`: the transaction and the event's place in it
    /// name the change event (the same one delivered twice, by EventBridge's retries or a
    /// replay, has the same); the record tells the records of one event apart.
    pub fn key(&self, record_id: &str) -> String {
        format!("{EVENT_PREFIX}{}:{}:{record_id}", self.header.transaction_key, self.header.sequence_number)
    }
}

/// The prefix of a change event's event id (`cdc:<transactionKey>:<sequenceNumber>:<record>`):
/// what tells the route apart in the audit trail and tells the pipeline that its old values are
/// the last seen ones.
pub const EVENT_PREFIX: &str = "cdc:";

/// Whether a `changeOrigin` names the bridge's own API calls (its `Sforce-Call-Options`,
/// [`super::CALL_OPTIONS`]): `com/salesforce/api/rest/62.0;client=pd-sfdc-sync`.
pub fn is_own_origin(change_origin: &str) -> bool {
    change_origin.split(';').any(|part| part.trim() == super::CALL_OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "00D5g000004XyZaEAK";

    fn org() -> OrgId {
        OrgId::parse(ORG).unwrap()
    }

    fn event(change_type: &str, ids: &[&str]) -> Value {
        serde_json::json!({
            "version": "0",
            "id": "2b4c0a9e-5a2c-6d7b-1e0f-8a9b7c6d5e4f",
            "detail-type": "CaseChangeEvent",
            "source": format!("aws.partner/salesforce.com/{ORG}/0YLRM0000004CbH4AU"),
            "account": "123456789012",
            "time": "2026-11-22T10:00:00Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": {
                "payload": {
                    "ChangeEventHeader": {
                        "entityName": "Case",
                        "recordIds": ids,
                        "changeType": change_type,
                        "changeOrigin": "com/salesforce/api/rest/62.0;client=SfdcInternalAPI/",
                        "transactionKey": "0005e192-9e62-2554-3880-3c3718bd6308",
                        "sequenceNumber": 1,
                        "commitTimestamp": 1_795_860_000_123_i64,
                        "commitNumber": 74_487_681_550_i64,
                        "commitUser": "0055g00000AbCdEAAS",
                        "nulledFields": ["Description"],
                        "diffFields": [],
                        "changedFields": ["Priority", "LastModifiedDate"]
                    },
                    "Priority": "High",
                    "LastModifiedDate": "2026-11-22T10:00:00.000Z"
                },
                "schemaId": "I8b-dYxvxs5wOtCBr4qsew",
                "id": "7d6c5b4a-3f2e-1d0c-9b8a-7f6e5d4c3b2a"
            }
        })
    }

    #[test]
    fn an_event_relay_update_parses_with_its_header() {
        let parsed = ChangeEvent::from_value(&event("UPDATE", &["5005g00000AbCdEAAS"]), Some(&org())).unwrap();
        assert_eq!(parsed.header.change_type, ChangeType::Update);
        assert_eq!(parsed.header.entity.as_str(), "Case");
        assert_eq!(parsed.header.commit_timestamp.timestamp_millis(), 1_795_860_000_123);
        assert_eq!(parsed.header.changed_fields, ["Priority", "LastModifiedDate"]);
        assert_eq!(parsed.fields["Priority"], "High");
        assert_eq!(parsed.fields["Description"], Value::Null, "a nulled field is null");
        assert!(!parsed.fields.contains_key(HEADER));
        assert_eq!(parsed.channel_id, "0YLRM0000004CbH4AU");
        assert_eq!(parsed.key("5005g00000AbCdEAAS"), "cdc:0005e192-9e62-2554-3880-3c3718bd6308:1:5005g00000AbCdEAAS");
    }

    #[test]
    fn another_orgs_event_or_no_configured_org_is_refused() {
        let value = event("UPDATE", &["5005g00000AbCdEAAS"]);
        let other = OrgId::parse("00D5g000004XyZbEAK").unwrap();
        assert!(matches!(ChangeEvent::from_value(&value, Some(&other)), Err(ChangeEventError::ForeignOrg { .. })));
        assert!(matches!(ChangeEvent::from_value(&value, None), Err(ChangeEventError::ForeignOrg { .. })));
        let mut value = value;
        value["source"] = "aws.partner/example.com/x/y".into();
        assert!(matches!(ChangeEvent::from_value(&value, Some(&org())), Err(ChangeEventError::Source(_))));
    }

    #[test]
    fn every_change_type_parses_and_gaps_are_gaps() {
        for (text, gap) in [
            ("CREATE", false),
            ("UPDATE", false),
            ("DELETE", false),
            ("UNDELETE", false),
            ("GAP_CREATE", true),
            ("GAP_UPDATE", true),
            ("GAP_DELETE", true),
            ("GAP_UNDELETE", true),
            ("GAP_OVERFLOW", true),
        ] {
            let parsed = ChangeEvent::from_value(&event(text, &["5005g00000AbCdEAAS"]), Some(&org())).unwrap();
            assert_eq!(parsed.header.change_type.as_str(), text);
            assert_eq!(parsed.header.change_type.is_gap(), gap, "{text}");
        }
        let refused = ChangeEvent::from_value(&event("MERGE", &["5005g00000AbCdEAAS"]), Some(&org()));
        assert!(matches!(refused, Err(ChangeEventError::ChangeType(_))));
    }

    #[test]
    fn bad_record_ids_are_refused() {
        assert_eq!(ChangeEvent::from_value(&event("UPDATE", &[]), Some(&org())), Err(ChangeEventError::NoRecords));
        assert!(matches!(
            ChangeEvent::from_value(&event("UPDATE", &["../x"]), Some(&org())),
            Err(ChangeEventError::RecordId(_))
        ));
    }

    #[test]
    fn the_bridges_own_origin_is_told_by_its_call_options() {
        assert!(is_own_origin("com/salesforce/api/rest/62.0;client=pd-sfdc-sync"));
        assert!(!is_own_origin("com/salesforce/api/soap/51.0;client=SfdcInternalAPI/"));
        assert!(!is_own_origin("client=pd-sfdc-sync-other"));
        assert!(!is_own_origin(""));
    }
}
