//! What the simulated org sends through Event Relay: Change Data Capture events on an
//! EventBridge partner event bus, shaped as Salesforce writes them (the EventBridge envelope,
//! `detail.payload` with `ChangeEventHeader`). [`SalesforceSim::change_events`] turns the changes
//! the simulator committed into them; [`Header`] and [`event`] build any other (deletes, gaps,
//! multi-record events, duplicates).

use serde_json::{Map, Value, json};

use super::{Change, SalesforceSim, state::user_id_for};

/// The channel id of the simulated org's Event Relay channel.
pub const CHANNEL_ID: &str = "0YLRM0000004CbH4AU";

/// `ChangeEventHeader`, as a test sets it.
#[derive(Debug, Clone)]
pub struct Header {
    pub entity: String,
    pub change_type: String,
    pub record_ids: Vec<String>,
    pub changed_fields: Vec<String>,
    pub nulled_fields: Vec<String>,
    pub commit_ms: i64,
    pub transaction_key: String,
    pub sequence: u64,
    pub origin: String,
    pub commit_user: String,
}

impl Header {
    /// A change by a person in the org through the UI (`changeOrigin` names no client).
    pub fn new(entity: &str, change_type: &str, record_ids: &[&str], commit_ms: i64, transaction_key: &str) -> Self {
        Self {
            entity: entity.into(),
            change_type: change_type.into(),
            record_ids: record_ids.iter().map(|s| s.to_string()).collect(),
            changed_fields: vec![],
            nulled_fields: vec![],
            commit_ms,
            transaction_key: transaction_key.into(),
            sequence: 1,
            origin: String::new(),
            commit_user: user_id_for("agent@example.com"),
        }
    }
}

/// The EventBridge event Event Relay puts on the partner bus for `header` and `fields` (the
/// record fields of the payload).
pub fn event(org_id: &str, header: &Header, fields: &Map<String, Value>) -> Value {
    let mut payload = fields.clone();
    payload.insert(
        "ChangeEventHeader".into(),
        json!({
            "entityName": header.entity,
            "recordIds": header.record_ids,
            "changeType": header.change_type,
            "changeOrigin": header.origin,
            "transactionKey": header.transaction_key,
            "sequenceNumber": header.sequence,
            "commitTimestamp": header.commit_ms,
            "commitNumber": 10_000_000_000_i64 + header.commit_ms % 1_000_000,
            "commitUser": header.commit_user,
            "nulledFields": header.nulled_fields,
            "diffFields": [],
            "changedFields": header.changed_fields,
        }),
    );
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": format!("{}ChangeEvent", header.entity.trim_end_matches("__c")),
        "source": format!("aws.partner/salesforce.com/{org_id}/{CHANNEL_ID}"),
        "account": "123456789012",
        "time": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(header.commit_ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        "region": "eu-west-1",
        "resources": [],
        "detail": {"payload": payload, "schemaId": "I8b-dYxvxs5wOtCBr4qsew", "id": uuid::Uuid::new_v4().to_string()}
    })
}

/// Fields a change event never carries (the id is in `recordIds`).
const NOT_IN_EVENTS: [&str; 4] = ["attributes", "Id", "IsDeleted", "SystemModstamp"];

/// The change event of one committed change (`n`: its place among the org's changes, which
/// names its transaction). An update carries the fields it changed; a create every non-null
/// field. A write through the API with `Sforce-Call-Options` names the client in `changeOrigin`.
pub fn of_change(org_id: &str, change: &Change, n: usize) -> Value {
    let new = change.new.as_object().cloned().unwrap_or_default();
    let old = change.old.as_ref().and_then(Value::as_object);
    let fields: Map<String, Value> = new
        .iter()
        .filter(|(k, _)| !NOT_IN_EVENTS.contains(&k.as_str()))
        .filter(|(k, v)| match old {
            Some(old) => old.get(k.as_str()) != Some(*v),
            None => !v.is_null(),
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let id = new.get("Id").and_then(Value::as_str).unwrap_or_default();
    let commit_ms = new
        .get("SystemModstamp")
        .and_then(Value::as_str)
        .and_then(shared::salesforce::time::parse_datetime)
        .map_or(0, |t| t.timestamp_millis());
    let change_type = if change.operation == "insert" { "CREATE" } else { "UPDATE" };
    let mut header = Header::new(&change.object, change_type, &[id], commit_ms, &transaction_key(n));
    if old.is_some() {
        header.changed_fields = fields.keys().cloned().collect();
        header.nulled_fields = fields.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k.clone()).collect();
    }
    header.origin = match &change.call_options {
        Some(options) => format!("com/salesforce/api/rest/62.0;{options}"),
        None => "com/salesforce/api/soap/62.0;client=SfdcInternalAPI/".into(),
    };
    header.commit_user = user_id_for(&change.username);
    event(org_id, &header, &fields)
}

/// A transaction key shaped as Salesforce writes them (a UUID), the same for the same `n`.
pub fn transaction_key(n: usize) -> String {
    format!("0005e192-9e62-2554-3880-{n:012x}")
}

impl SalesforceSim {
    /// The change events of every change committed so far, oldest first.
    pub fn change_events(&self) -> Vec<Value> {
        let org_id = self.config().org_id;
        self.changes().iter().enumerate().map(|(n, c)| of_change(&org_id, c, n)).collect()
    }
}
