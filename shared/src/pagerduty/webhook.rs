//! Webhooks v3 delivery parsing.
//!
//! A delivery is `{"event": {"id", "event_type", "resource_type", "occurred_at", "agent",
//! "client", "data"}}`. PagerDuty adds event types and fields without notice and a receiver
//! must answer every authentic delivery with 2xx, so the parser is strict only about what we
//! cannot work without (the envelope: `event`, `id`, `event_type`, `occurred_at`) and lenient
//! about everything else: an unknown `data` shape, or an incident whose fields do not have the
//! expected types, becomes [`EventData::Other`] with the raw JSON rather than an error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A PagerDuty object reference (`{"id", "type", "summary", "self", "html_url"}`).
/// Only `id` is required; a priority reference's `summary` is the priority name ("P1").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub id: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_url: Option<String>,
    #[serde(rename = "self", default, skip_serializing_if = "Option::is_none")]
    pub self_url: Option<String>,
}

/// The integration or app through which the agent acted (`{"name": "PagerDuty", "url": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventClient {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// `data` of an incident event (`data.type == "incident"`). Fields PagerDuty may omit are
/// optional; everything not modelled here (conference_bridge, incident_type, custom fields,
/// fields added later) is kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentData {
    pub id: String,
    #[serde(default)]
    pub number: Option<u64>,
    #[serde(default)]
    pub title: Option<String>,
    /// `triggered`, `acknowledged` or `resolved`.
    #[serde(default)]
    pub status: Option<String>,
    /// `high` or `low`.
    #[serde(default)]
    pub urgency: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub priority: Option<Reference>,
    pub service: Reference,
    #[serde(default, deserialize_with = "lenient")]
    pub escalation_policy: Option<Reference>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub assignees: Vec<Reference>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub teams: Vec<Reference>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub incident_key: Option<String>,
    #[serde(default)]
    pub resolve_reason: Option<Value>,
    #[serde(default, deserialize_with = "lenient")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient")]
    pub reopened_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IncidentData {
    /// The priority's name ("P1"), when the incident has one.
    pub fn priority_name(&self) -> Option<&str> {
        self.priority.as_ref().and_then(|p| p.summary.as_deref())
    }
}

/// The incident event types PagerDuty documents for Webhooks v3 ("Event Types" of
/// developer-docs/docs/webhooks/01-Overview.md); each has a sample in `events/pd-to-sfdc/`.
pub const INCIDENT_EVENT_TYPES: &[&str] = &[
    "incident.acknowledged",
    "incident.annotated",
    "incident.conference_bridge.updated",
    "incident.custom_field_values.updated",
    "incident.delegated",
    "incident.escalated",
    "incident.incident_type.changed",
    "incident.priority_updated",
    "incident.reassigned",
    "incident.reopened",
    "incident.resolved",
    "incident.responder.added",
    "incident.responder.replied",
    "incident.role.assigned",
    "incident.service_updated",
    "incident.status_update_published",
    "incident.task.completed",
    "incident.task.created",
    "incident.task.updated",
    "incident.triggered",
    "incident.unacknowledged",
    "incident.action_invocation.created",
    "incident.action_invocation.terminated",
    "incident.action_invocation.updated",
    "incident.workflow.started",
    "incident.workflow.completed",
];

/// The service event types PagerDuty documents: acknowledged and audited, never acted on.
pub const SERVICE_EVENT_TYPES: &[&str] =
    &["service.created", "service.custom_field_values.updated", "service.deleted", "service.updated"];

/// What an event is about.
// One event is handled at a time; boxing the incident would only add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum EventData {
    Incident(IncidentData),
    /// `incident.annotated`: a note added to an incident. `trimmed` is true when PagerDuty cut
    /// the content to fit the payload size limit.
    IncidentNote {
        id: String,
        incident: Reference,
        content: String,
        trimmed: bool,
    },
    /// `incident.status_update_published`: what the responders told stakeholders. `trimmed` as
    /// for a note.
    StatusUpdate {
        id: String,
        incident: Reference,
        message: String,
        trimmed: bool,
    },
    /// What the other incident events tell (a responder, a workflow, a task ...), with the
    /// incident they concern.
    Activity {
        incident: Reference,
        activity: Activity,
    },
    /// Everything else (pings, services, future resources), as sent.
    Other(Value),
}

/// The `data` of the v3 incident events that are not a state change, a note or a status update,
/// by `data.type` (PagerDuty's "Event Data Types").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Activity {
    /// `incident_responder` (`incident.responder.added`, `.replied`): who was asked, the request's
    /// message, and the state of the request (`pending`, `joined`, `declined`).
    Responder { user: Option<Reference>, message: Option<String>, state: Option<String> },
    /// `incident_conference_bridge` (`incident.conference_bridge.updated`).
    ConferenceBridge { url: Option<String>, numbers: Vec<String> },
    /// `incident_field_values` (`incident.custom_field_values.updated`): every field's value now,
    /// by name, and the values before of the fields that changed (`changed_custom_fields`).
    CustomFields { values: Map<String, Value>, before: Map<String, Value> },
    /// `incident_role_assignment` (`incident.role.assigned`): (role, assignee) pairs; no
    /// assignee when the role was unassigned.
    Roles(Vec<(String, Option<String>)>),
    /// `incident_task` (`incident.task.created`, `.updated`, `.completed`).
    Task { name: String, status: Option<String>, assignees: Vec<Reference> },
    /// `incident_workflow_instance` (`incident.workflow.started`, `.completed`).
    Workflow { workflow: Option<Reference>, instance: Option<String> },
    /// `incident_action_invocation` (`incident.action_invocation.created`, `.updated`, `.terminated`).
    ActionInvocation { action: Option<Reference>, state: Option<String> },
}

/// One Webhooks v3 event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEvent {
    pub id: String,
    pub event_type: String,
    pub resource_type: String,
    pub occurred_at: DateTime<Utc>,
    pub agent: Option<Reference>,
    pub client: Option<EventClient>,
    pub data: EventData,
}

/// Why a delivery could not be parsed. The reason is meant for the audit log ("rejected: ...").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("the body has no \"event\" object: not a Webhooks v3 delivery")]
    MissingEvent,
    #[error("the event has no string \"{0}\"")]
    MissingField(&'static str),
    #[error("the event's occurred_at {0:?} is not an RFC 3339 timestamp")]
    BadTimestamp(String),
    #[error("the event's {0} is not a PagerDuty id (1 to {MAX_ID_LEN} letters, digits, `-` or `_`)")]
    BadId(&'static str),
}

/// PagerDuty ids are short (`PGR0VU2`, `01GI0KPHX6I892N2PFKDLH25XK`, a UUID); anything longer
/// is not one, and could not be a store key either.
pub const MAX_ID_LEN: usize = 64;

/// True for text that can be a PagerDuty object or event id.
pub fn is_pagerduty_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl WebhookEvent {
    /// Parses a raw delivery body.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        let root: Value = serde_json::from_slice(body).map_err(|e| WebhookError::Json(e.to_string()))?;
        Self::from_value(root)
    }

    /// Parses a delivery already decoded as JSON.
    pub fn from_value(root: Value) -> Result<Self, WebhookError> {
        let Value::Object(mut root) = root else {
            return Err(WebhookError::MissingEvent);
        };
        let Some(Value::Object(mut event)) = root.remove("event") else {
            return Err(WebhookError::MissingEvent);
        };
        let text = |name: &'static str| match event.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(WebhookError::MissingField(name)),
        };
        let id = text("id")?;
        let event_type = text("event_type")?;
        let occurred = text("occurred_at")?;
        let occurred_at = DateTime::parse_from_rfc3339(&occurred)
            .map_err(|_| WebhookError::BadTimestamp(occurred.clone()))?
            .with_timezone(&Utc);
        // resource_type is informative only; derive it from the event type when absent.
        let resource_type =
            text("resource_type").unwrap_or_else(|_| event_type.split('.').next().unwrap_or_default().to_string());
        let agent = event.remove("agent").and_then(|v| serde_json::from_value(v).ok());
        let client = event.remove("client").and_then(|v| serde_json::from_value(v).ok());
        let data = parse_data(event.remove("data").unwrap_or(Value::Null));
        let parsed = WebhookEvent { id, event_type, resource_type, occurred_at, agent, client, data };
        // The ids become store keys and API paths: refuse what cannot be one, once, here.
        if !is_pagerduty_id(&parsed.id) {
            return Err(WebhookError::BadId("id"));
        }
        if parsed.incident_id().is_some_and(|id| !is_pagerduty_id(id)) {
            return Err(WebhookError::BadId("incident id"));
        }
        Ok(parsed)
    }

    /// The incident this event concerns: the incident itself, or the `incident` reference of a
    /// note, responder request, status update, ...
    pub fn incident_id(&self) -> Option<&str> {
        match &self.data {
            EventData::Incident(i) => Some(&i.id),
            EventData::IncidentNote { incident, .. }
            | EventData::StatusUpdate { incident, .. }
            | EventData::Activity { incident, .. } => Some(&incident.id),
            EventData::Other(v) => v.get("incident")?.get("id")?.as_str(),
        }
    }

    /// `pagey.ping`: PagerDuty testing the subscription.
    pub fn is_ping(&self) -> bool {
        self.event_type == "pagey.ping"
    }
}

/// Interprets an event's `data` by its `type`. Never fails: what cannot be typed is kept raw.
pub fn parse_data(data: Value) -> EventData {
    match data.get("type").and_then(Value::as_str) {
        Some("incident") => match IncidentData::deserialize(&data) {
            Ok(incident) => EventData::Incident(incident),
            Err(_) => EventData::Other(data),
        },
        Some("incident_note") => match NoteData::deserialize(&data) {
            Ok(n) => EventData::IncidentNote { id: n.id, incident: n.incident, content: n.content, trimmed: n.trimmed },
            Err(_) => EventData::Other(data),
        },
        Some("incident_status_update") => match StatusUpdateData::deserialize(&data) {
            Ok(u) => EventData::StatusUpdate { id: u.id, incident: u.incident, message: u.message, trimmed: u.trimmed },
            Err(_) => EventData::Other(data),
        },
        Some(kind) => match activity(kind, &data) {
            Some((incident, activity)) => EventData::Activity { incident, activity },
            None => EventData::Other(data),
        },
        None => EventData::Other(data),
    }
}

/// The activity of `data` of type `kind`, with its incident; `None` for another type or a shape
/// without an incident reference.
fn activity(kind: &str, data: &Value) -> Option<(Reference, Activity)> {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let reference = |v: &Value, key: &str| v.get(key).and_then(|r| Reference::deserialize(r).ok());
    let references = |v: &Value, key: &str| -> Vec<Reference> {
        let items = v.get(key).and_then(Value::as_array).into_iter().flatten();
        items.filter_map(|r| Reference::deserialize(r).ok()).collect()
    };
    // A role assignment names its incident in each assignment, not beside them.
    let assignments = data.get("incident_role_assignments").and_then(Value::as_array);
    let incident = match kind {
        "incident_role_assignment" => assignments?.iter().find_map(|a| reference(a, "incident"))?,
        _ => reference(data, "incident")?,
    };
    let by_name = |key: &str| -> Map<String, Value> {
        let fields = data.get(key).and_then(Value::as_array).into_iter().flatten();
        fields.filter_map(|f| Some((text(f, "name")?, f.get("value").cloned().unwrap_or(Value::Null)))).collect()
    };
    let activity = match kind {
        "incident_responder" => Activity::Responder {
            user: reference(data, "user"),
            message: text(data, "message"),
            state: text(data, "state"),
        },
        "incident_conference_bridge" => Activity::ConferenceBridge {
            url: text(data, "conference_url"),
            numbers: data
                .get("conference_numbers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|n| text(n, "number"))
                .collect(),
        },
        "incident_field_values" => {
            Activity::CustomFields { values: by_name("custom_fields"), before: by_name("changed_custom_fields") }
        }
        "incident_role_assignment" => Activity::Roles(
            assignments?
                .iter()
                .filter_map(|a| {
                    let role = reference(a, "role")?;
                    let assignee = reference(a, "assignee");
                    Some((role.summary.unwrap_or(role.id), assignee.map(|r| r.summary.unwrap_or(r.id))))
                })
                .collect(),
        ),
        "incident_task" => Activity::Task {
            name: text(data, "name").or_else(|| text(data, "summary")).unwrap_or_default(),
            status: text(data, "status"),
            assignees: references(data, "assignees"),
        },
        "incident_workflow_instance" => {
            Activity::Workflow { workflow: reference(data, "incident_workflow"), instance: text(data, "id") }
        }
        "incident_action_invocation" => {
            Activity::ActionInvocation { action: reference(data, "action"), state: text(data, "state") }
        }
        _ => return None,
    };
    Some((incident, activity))
}

#[derive(Deserialize)]
struct NoteData {
    #[serde(default)]
    id: String,
    incident: Reference,
    #[serde(default)]
    content: String,
    #[serde(default)]
    trimmed: bool,
}

#[derive(Deserialize)]
struct StatusUpdateData {
    #[serde(default)]
    id: String,
    incident: Reference,
    #[serde(default)]
    message: String,
    #[serde(default)]
    trimmed: bool,
}

/// `None` instead of an error when an optional field has an unexpected shape.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

/// Keeps the well-formed entries of a list; `null` or a non-list is an empty list.
fn lenient_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Array(items) => items.into_iter().filter_map(|i| serde_json::from_value(i).ok()).collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::{Path, PathBuf};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pagerduty/webhooks")
    }

    /// The product samples folder beside the repository (`/work/shared/samples/pagerduty-webhooks-v3` for a
    /// checkout at `/work/main`): `../../shared/samples` from this crate, or the same path from
    /// a further ancestor for checkouts nested deeper (worktrees).
    fn outside_samples() -> Option<PathBuf> {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .skip(1)
            .map(|a| a.join("shared/samples/pagerduty-webhooks-v3"))
            .find(|p| p.is_dir())
    }

    fn json_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
    }

    fn sample(name: &str) -> WebhookEvent {
        WebhookEvent::parse(&std::fs::read(fixtures().join(name)).unwrap()).unwrap()
    }

    /// Checks that a delivery parses and that its typed data agrees with the raw JSON.
    fn check_delivery(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        let event = WebhookEvent::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let raw: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(event.event_type, raw["event"]["event_type"], "{}", path.display());
        match raw["event"]["data"]["type"].as_str() {
            Some("incident") => {
                let EventData::Incident(i) = &event.data else { panic!("{}: incident data not typed", path.display()) };
                assert_eq!(i.id, raw["event"]["data"]["id"]);
                assert_eq!(i.service.id, raw["event"]["data"]["service"]["id"]);
                assert_eq!(event.incident_id(), Some(i.id.as_str()));
            }
            Some("incident_note") => {
                assert!(matches!(event.data, EventData::IncidentNote { .. }), "{}", path.display());
                assert_eq!(event.incident_id().unwrap(), raw["event"]["data"]["incident"]["id"]);
            }
            Some("incident_status_update") => {
                let EventData::StatusUpdate { message, .. } = &event.data else { panic!("{}", path.display()) };
                assert_eq!(message, &raw["event"]["data"]["message"]);
                assert_eq!(event.incident_id().unwrap(), raw["event"]["data"]["incident"]["id"]);
            }
            Some(kind) if kind.starts_with("incident_") => {
                assert!(matches!(event.data, EventData::Activity { .. }), "{}: {kind} typed", path.display());
                assert_eq!(event.incident_id().unwrap(), raw["event"]["data"]["incident"]["id"]);
            }
            _ => assert!(matches!(event.data, EventData::Other(_)), "{}", path.display()),
        }
    }

    #[test]
    fn every_copied_sample_delivery_parses_with_typed_data() {
        let files = json_files(&fixtures());
        assert_eq!(files.len(), 21);
        files.iter().for_each(|f| check_delivery(f));
    }

    #[test]
    fn every_delivery_in_the_shared_samples_folder_parses_when_present() {
        if let Some(dir) = outside_samples() {
            let files = json_files(&dir);
            assert!(files.len() >= 21);
            files.iter().for_each(|f| check_delivery(f));
            for f in json_files(&dir.join("event-data-fragments")) {
                parse_data(serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap());
            }
        }
    }

    #[test]
    fn the_docs_data_fragments_parse_with_the_data_parser() {
        let dir = fixtures().join("event-data-fragments");
        let frag = |n: &str| parse_data(serde_json::from_slice(&std::fs::read(dir.join(n)).unwrap()).unwrap());
        let EventData::Incident(i) = frag("docs-data-incident.json") else { panic!() };
        assert_eq!(i.id, "PGR0VU2");
        assert_eq!(i.number, Some(2));
        assert_eq!(i.priority_name(), Some("P1"));
        assert_eq!(i.extra["incident_type"]["name"], "major");
        let EventData::IncidentNote { id, incident, content, trimmed } = frag("docs-data-incident_note.json") else {
            panic!()
        };
        assert_eq!((id.as_str(), incident.id.as_str(), trimmed), ("P2LA89X", "PGR0VU2", false));
        assert_eq!(content, "I sure am glad we are using PagerDuty!");
        let EventData::StatusUpdate { id, incident, message, trimmed } = frag("docs-data-incident_status_update.json")
        else {
            panic!()
        };
        assert_eq!((id.as_str(), incident.id.as_str(), trimmed), ("P2LA89X", "PGR0VU2", false));
        assert_eq!(message, "A fix for this incident is being developed");
        assert!(matches!(frag("docs-data-service.json"), EventData::Other(_)), "a service is not an incident's");
    }

    #[test]
    fn a_priority_update_carries_the_priority_name_and_all_incident_fields() {
        let e = sample("docs-incident.priority_updated.json");
        assert_eq!(e.id, "5ac64822-4adc-4fda-ade0-410becf0de4f");
        assert_eq!(e.resource_type, "incident");
        assert_eq!(e.occurred_at.to_rfc3339(), "2020-10-02T18:45:22.169+00:00");
        assert_eq!(e.agent.as_ref().unwrap().id, "PLH1HKV");
        assert_eq!(e.client.as_ref().unwrap().name.as_deref(), Some("PagerDuty"));
        let EventData::Incident(i) = &e.data else { panic!() };
        assert_eq!(i.title.as_deref(), Some("A little bump in the road"));
        assert_eq!(i.status.as_deref(), Some("triggered"));
        assert_eq!(i.urgency.as_deref(), Some("high"));
        assert_eq!(i.priority_name(), Some("P1"));
        assert_eq!(i.priority.as_ref().unwrap().id, "PSO75BM");
        assert_eq!(i.service.summary.as_deref(), Some("API Service"));
        assert_eq!(i.escalation_policy.as_ref().unwrap().id, "PUS0KTE");
        assert_eq!(i.assignees[0].id, "PTUXL6G");
        assert_eq!(i.teams[0].summary.as_deref(), Some("Engineering"));
        assert_eq!(i.incident_key.as_deref(), Some("d3640fbd41094207a1c11e58e46b1662"));
        assert_eq!(i.html_url.as_deref(), Some("https://acme.pagerduty.com/incidents/PGR0VU2"));
        assert_eq!(i.created_at.unwrap().to_rfc3339(), "2020-04-09T15:16:27+00:00");
        assert!(i.extra.contains_key("conference_bridge"));
    }

    #[test]
    fn a_real_triggered_incident_without_priority_parses() {
        let e = sample("aldaviva-incident.triggered.json");
        assert!(e.client.is_none());
        let EventData::Incident(i) = &e.data else { panic!() };
        assert_eq!((i.number, i.priority.as_ref()), (Some(37), None));
        assert_eq!(i.urgency.as_deref(), Some("low"));
        assert!(i.teams.is_empty());
    }

    #[test]
    fn an_annotation_is_a_typed_note_on_its_incident() {
        let e = sample("zulip-incident.annotated.json");
        assert_eq!(e.incident_id(), Some("Q3B15VLMF3ASBD"));
        let EventData::IncidentNote { content, trimmed, .. } = &e.data else { panic!() };
        assert!(content.starts_with("Running KILL"));
        assert!(!trimmed);
    }

    #[test]
    fn a_ping_is_an_event_with_other_data() {
        let e = sample("aldaviva-pagey.ping.json");
        assert!(e.is_ping());
        assert_eq!(e.incident_id(), None);
        assert_eq!(e.agent.unwrap().summary, None);
        let EventData::Other(v) = e.data else { panic!() };
        assert_eq!(v["message"], "Hello from your friend Pagey!");
    }

    #[test]
    fn responder_and_status_update_events_still_name_their_incident() {
        assert_eq!(sample("zulip-incident.responder.added.json").incident_id(), Some("Q3B15VLMF3ASBD"));
        assert_eq!(sample("zulip-incident.status_update_published.json").incident_id(), Some("Q3B15VLMF3ASBD"));
        assert_eq!(sample("docs-service.updated.json").incident_id(), None);
    }

    fn envelope(event: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({ "event": event })).unwrap()
    }

    /// The "Event Data Types" of PagerDuty's webhook documentation the bridge types: each names
    /// its incident (a role assignment inside each assignment) and keeps what it tells.
    #[test]
    fn the_documented_activity_data_types_are_typed_with_their_incident() {
        let inc = json!({"id": "PBAZLIU", "summary": null, "type": "incident_reference"});
        let parse = |data: Value| {
            let event = WebhookEvent::from_value(json!({"event": {"id": "E1", "event_type": "incident.x",
                "occurred_at": "2026-11-22T10:00:00Z", "data": data}}))
            .unwrap();
            assert_eq!(event.incident_id(), Some("PBAZLIU"));
            let EventData::Activity { activity, .. } = event.data else { panic!("typed: {:?}", event.data) };
            activity
        };
        let field = |name: &str, value: &str| {
            json!({"data_type": "string", "field_type": "single_value", "id": "P1",
            "name": name, "namespace": "incidents", "type": "field_value", "value": value})
        };
        let values = parse(json!({"incident": inc, "type": "incident_field_values",
            "custom_fields": [field("environment", "production"), field("region", "US")],
            "changed_custom_fields": [field("environment", "staging")]}));
        let Activity::CustomFields { values, before } = values else { panic!("{values:?}") };
        assert_eq!((values["environment"].as_str(), values["region"].as_str()), (Some("production"), Some("US")));
        assert_eq!(before.keys().collect::<Vec<_>>(), vec!["environment"]);
        let roles = parse(json!({"type": "incident_role_assignment", "incident_role_assignments": [{
            "assignee": {"id": "P75B6QD", "summary": "User 1810194", "type": "user_reference"},
            "id": "af64b84c", "incident": inc, "old_assignee": null,
            "role": {"id": "P8PQO4R", "summary": "Role Display Name", "type": "role_reference"},
            "status": "active", "type": "role_assignment_reference"}]}));
        assert_eq!(roles, Activity::Roles(vec![("Role Display Name".into(), Some("User 1810194".into()))]));
        let bridge = parse(json!({"incident": inc, "type": "incident_conference_bridge",
            "conference_numbers": [{"label": "", "number": "+1-555-555-5555"}], "conference_url": "https://example.com"}));
        assert_eq!(
            bridge,
            Activity::ConferenceBridge {
                url: Some("https://example.com".into()),
                numbers: vec!["+1-555-555-5555".into()]
            }
        );
        let action =
            parse(json!({"id": "01CELD", "incident": inc, "state": "created", "type": "incident_action_invocation",
            "action": {"id": "01CDYN", "summary": "A Helpful Action", "type": "action_reference"}}));
        let Activity::ActionInvocation { action, state } = action else { panic!() };
        assert_eq!(
            (action.and_then(|a| a.summary), state.as_deref()),
            (Some("A Helpful Action".into()), Some("created"))
        );
        let fragment = fixtures().join("event-data-fragments/docs-data-incident_responder.json");
        let responder = parse_data(serde_json::from_slice(&std::fs::read(fragment).unwrap()).unwrap());
        assert!(matches!(responder, EventData::Activity { activity: Activity::Responder { .. }, .. }), "{responder:?}");
    }

    #[test]
    fn an_unknown_event_type_is_a_typed_event_with_other_data() {
        let body = envelope(json!({
            "id": "E1", "event_type": "incident.teleported", "occurred_at": "2026-11-22T10:00:00Z",
            "data": {"type": "teleportation", "incident": {"id": "Q1", "type": "incident_reference"}}
        }));
        let e = WebhookEvent::parse(&body).unwrap();
        assert_eq!(e.resource_type, "incident");
        assert_eq!(e.incident_id(), Some("Q1"));
        assert!(matches!(e.data, EventData::Other(_)));
    }

    #[test]
    fn an_incident_with_odd_optional_fields_still_parses() {
        let body = envelope(json!({
            "id": "E2", "event_type": "incident.triggered", "resource_type": "incident",
            "occurred_at": "2026-11-22T10:00:00.123+01:00", "agent": "not an object", "client": 7,
            "data": {"type": "incident", "id": "Q2", "service": {"id": "S1"},
                     "priority": "P1", "assignees": null, "teams": [{"id": "T1"}, 5],
                     "created_at": "yesterday", "brand_new_field": {"x": 1}}
        }));
        let e = WebhookEvent::parse(&body).unwrap();
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-22T09:00:00.123+00:00");
        assert!(e.agent.is_none() && e.client.is_none());
        let EventData::Incident(i) = e.data else { panic!() };
        assert_eq!(i.priority, None);
        assert!(i.assignees.is_empty());
        assert_eq!(i.teams.len(), 1);
        assert_eq!(i.created_at, None);
        assert_eq!(i.extra["brand_new_field"]["x"], 1);
    }

    #[test]
    fn an_incident_without_a_service_is_kept_raw_instead_of_failing() {
        let body = envelope(json!({
            "id": "E3", "event_type": "incident.triggered", "occurred_at": "2026-11-22T10:00:00Z",
            "data": {"type": "incident", "id": "Q3"}
        }));
        let e = WebhookEvent::parse(&body).unwrap();
        assert!(matches!(e.data, EventData::Other(_)));
        assert_eq!(e.incident_id(), None);
    }

    #[test]
    fn malformed_deliveries_are_errors_with_the_reason() {
        assert!(matches!(WebhookEvent::parse(b"{not json"), Err(WebhookError::Json(_))));
        assert_eq!(WebhookEvent::parse(b"[]"), Err(WebhookError::MissingEvent));
        assert_eq!(WebhookEvent::parse(b"{\"messages\":[]}"), Err(WebhookError::MissingEvent));
        let no_id = envelope(json!({"event_type": "incident.triggered", "occurred_at": "2026-11-22T10:00:00Z"}));
        assert_eq!(WebhookEvent::parse(&no_id), Err(WebhookError::MissingField("id")));
        let no_type = envelope(json!({"id": "E", "occurred_at": "2026-11-22T10:00:00Z"}));
        assert_eq!(WebhookEvent::parse(&no_type), Err(WebhookError::MissingField("event_type")));
        let no_time = envelope(json!({"id": "E", "event_type": "x"}));
        assert_eq!(WebhookEvent::parse(&no_time), Err(WebhookError::MissingField("occurred_at")));
        let bad_time = envelope(json!({"id": "E", "event_type": "x", "occurred_at": "soon"}));
        assert_eq!(
            WebhookEvent::parse(&bad_time).unwrap_err().to_string(),
            "the event's occurred_at \"soon\" is not an RFC 3339 timestamp"
        );
    }

    #[test]
    fn ids_that_cannot_be_pagerduty_ids_are_refused() {
        let at = "2026-11-22T10:00:00Z";
        let incident = |id: &str| {
            json!({"type": "incident", "id": id, "number": 1, "status": "triggered", "title": "t", "urgency": "high",
                "service": {"id": "PSVC001", "type": "service_reference", "summary": "Customer"}})
        };
        let long = "E".repeat(3000);
        for (event_id, incident_id, field) in [
            (long.as_str(), "PINC001", "id"),
            ("E 1", "PINC001", "id"),
            ("01GI0KPHX6I892N2PFKDLH25XK", long.as_str(), "incident id"),
            ("01GI0KPHX6I892N2PFKDLH25XK", "P/../admin", "incident id"),
        ] {
            let body = envelope(json!({"id": event_id, "event_type": "incident.triggered", "occurred_at": at,
                "data": incident(incident_id)}));
            assert_eq!(WebhookEvent::parse(&body), Err(WebhookError::BadId(field)), "{field}");
        }
        let uuid = envelope(json!({"id": "5ac64822-4adc-4fda-ade0-410becf0de4f", "event_type": "incident.triggered",
            "occurred_at": at, "data": incident("Q2B8ZJ5ATDCLB0")}));
        assert!(WebhookEvent::parse(&uuid).is_ok());
    }
}
