//! The REST calls the client makes, as plain values: operation name, method, path segments,
//! query and JSON body, built exactly as PagerDuty's OpenAPI document describes them (checked
//! against it in the tests below). No I/O here.

use http::Method;
use serde_json::{Value, json};

/// One REST call before headers and base URL are added.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Our name for it, used in errors and metrics.
    pub operation: &'static str,
    pub method: Method,
    /// Path segments below the base URL (ids are percent-encoded when the URL is built).
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Call {
    fn new(operation: &'static str, method: Method, segments: &[&str]) -> Self {
        Call {
            operation,
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
        }
    }

    fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_string(), value.into()));
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// `/incidents/Q1/notes` (for logs and tests).
    pub fn path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }
}

/// `high` or `low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    High,
    Low,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::High => "high",
            Urgency::Low => "low",
        }
    }

    /// Parses `high`/`low` in any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Some(Urgency::High),
            "low" => Some(Urgency::Low),
            _ => None,
        }
    }
}

/// A priority given by id (`PSO75BM`) or by name (`P1`, looked up with `GET /priorities`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorityChoice {
    Id(String),
    Name(String),
}

/// What to create. `incident_key` makes creation idempotent: PagerDuty refuses a second open
/// incident with the same key on the service, and the client then returns the existing one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateIncident {
    pub title: String,
    pub service_id: String,
    pub urgency: Option<Urgency>,
    pub priority: Option<PriorityChoice>,
    /// Free text shown as the incident body (e.g. the record summary and its link).
    pub body_details: Option<String>,
    pub incident_key: Option<String>,
    pub escalation_policy_id: Option<String>,
}

/// Who an incident is reassigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignees {
    Users(Vec<String>),
    EscalationPolicy(String),
}

/// What a webhook subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionFilter {
    Account,
    Service(String),
    Team(String),
}

impl SubscriptionFilter {
    fn to_json(&self) -> Value {
        match self {
            SubscriptionFilter::Account => json!({"type": "account_reference"}),
            SubscriptionFilter::Service(id) => json!({"type": "service_reference", "id": id}),
            SubscriptionFilter::Team(id) => json!({"type": "team_reference", "id": id}),
        }
    }
}

/// The event types `pd-to-sfdc` can act on (every documented incident type); `syncctl setup`
/// subscribes to these. Service events are acknowledged when they come, never acted on.
pub const SUBSCRIBED_EVENTS: &[&str] = super::webhook::INCIDENT_EVENT_TYPES;

fn reference(id: &str, kind: &str) -> Value {
    json!({"id": id, "type": kind})
}

/// `POST /incidents`. `priority_id` is the already resolved priority.
pub fn create_incident(req: &CreateIncident, priority_id: Option<&str>) -> Call {
    let mut incident = json!({
        "type": "incident",
        "title": req.title,
        "service": reference(&req.service_id, "service_reference"),
    });
    let o = incident.as_object_mut().expect("object");
    if let Some(u) = req.urgency {
        o.insert("urgency".into(), json!(u.as_str()));
    }
    if let Some(p) = priority_id {
        o.insert("priority".into(), reference(p, "priority_reference"));
    }
    // `details` is a string: the operation's request example and the live API use one, although
    // the `IncidentBody` schema says `object` (a known inconsistency of the document).
    if let Some(details) = &req.body_details {
        o.insert("body".into(), json!({"type": "incident_body", "details": details}));
    }
    if let Some(key) = &req.incident_key {
        o.insert("incident_key".into(), json!(key));
    }
    if let Some(ep) = &req.escalation_policy_id {
        o.insert("escalation_policy".into(), reference(ep, "escalation_policy_reference"));
    }
    Call::new("create_incident", Method::POST, &["incidents"]).body(json!({ "incident": incident }))
}

/// `GET /incidents?incident_key=...`: finds the incident a duplicate key refers to.
pub fn find_incidents_by_key(incident_key: &str) -> Call {
    Call::new("find_incident_by_key", Method::GET, &["incidents"])
        .query("incident_key", incident_key)
        .query("limit", "25")
}

/// `GET /incidents/{id}`.
pub fn get_incident(incident_id: &str) -> Call {
    Call::new("get_incident", Method::GET, &["incidents", incident_id])
}

/// `PUT /incidents/{id}` with the given incident fields (besides `type`).
fn update_incident(operation: &'static str, incident_id: &str, fields: Value) -> Call {
    let mut incident = json!({"type": "incident"});
    if let (Some(o), Value::Object(f)) = (incident.as_object_mut(), fields) {
        o.extend(f);
    }
    Call::new(operation, Method::PUT, &["incidents", incident_id]).body(json!({ "incident": incident }))
}

pub fn acknowledge(incident_id: &str) -> Call {
    update_incident("acknowledge", incident_id, json!({"status": "acknowledged"}))
}

pub fn resolve(incident_id: &str) -> Call {
    update_incident("resolve", incident_id, json!({"status": "resolved"}))
}

pub fn set_priority(incident_id: &str, priority_id: &str) -> Call {
    update_incident("set_priority", incident_id, json!({"priority": reference(priority_id, "priority_reference")}))
}

pub fn set_urgency(incident_id: &str, urgency: Urgency) -> Call {
    update_incident("set_urgency", incident_id, json!({"urgency": urgency.as_str()}))
}

/// `PUT /incidents/{id}` with `assignments` (users) or `escalation_policy`.
pub fn reassign(incident_id: &str, to: &Assignees) -> Call {
    let fields = match to {
        Assignees::Users(ids) => json!({
            "assignments": ids.iter().map(|id| json!({"assignee": reference(id, "user_reference")})).collect::<Vec<_>>()
        }),
        Assignees::EscalationPolicy(id) => {
            json!({"escalation_policy": reference(id, "escalation_policy_reference")})
        }
    };
    update_incident("reassign", incident_id, fields)
}

/// `POST /incidents/{id}/notes`.
pub fn add_note(incident_id: &str, content: &str) -> Call {
    Call::new("add_note", Method::POST, &["incidents", incident_id, "notes"])
        .body(json!({"note": {"content": content}}))
}

/// A status update's texts: `subject` and `html_message` make it a custom HTML email (PagerDuty
/// needs both for one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusUpdate {
    pub message: String,
    pub subject: Option<String>,
    pub html_message: Option<String>,
}

/// `POST /incidents/{id}/status_updates` (as the `From` user).
pub fn publish_status_update(incident_id: &str, update: &StatusUpdate) -> Call {
    let mut body = json!({"message": update.message});
    let o = body.as_object_mut().expect("object");
    if let Some(subject) = &update.subject {
        o.insert("subject".into(), json!(subject));
    }
    if let Some(html) = &update.html_message {
        o.insert("html_message".into(), json!(html));
    }
    Call::new("publish_status_update", Method::POST, &["incidents", incident_id, "status_updates"]).body(body)
}

/// `PUT /incidents/{id}/custom_fields/values`: the named fields' values (by field name; the
/// other fields of the incident keep theirs).
pub fn set_custom_fields(incident_id: &str, fields: &serde_json::Map<String, Value>) -> Call {
    let values: Vec<Value> = fields.iter().map(|(name, value)| json!({"name": name, "value": value})).collect();
    Call::new("set_custom_fields", Method::PUT, &["incidents", incident_id, "custom_fields", "values"])
        .body(json!({"custom_fields": values}))
}

/// `GET /incidents/{id}/notes`: every note of the incident (the endpoint does not paginate).
pub fn list_notes(incident_id: &str) -> Call {
    Call::new("list_notes", Method::GET, &["incidents", incident_id, "notes"])
}

/// `GET /automation_actions/invocations?incident_id=...&action_id=...`.
pub fn list_automation_invocations(incident_id: &str, action_id: &str) -> Call {
    Call::new("list_automation_invocations", Method::GET, &["automation_actions", "invocations"])
        .query("incident_id", incident_id)
        .query("action_id", action_id)
}

/// `POST /incident_workflows/{id}/instances`.
pub fn run_incident_workflow(incident_id: &str, workflow_id: &str) -> Call {
    Call::new("run_incident_workflow", Method::POST, &["incident_workflows", workflow_id, "instances"])
        .body(json!({"incident_workflow_instance": {"incident": reference(incident_id, "incident_reference")}}))
}

/// `POST /automation_actions/actions/{id}/invocations`.
pub fn run_automation_action(incident_id: &str, action_id: &str) -> Call {
    Call::new("run_automation_action", Method::POST, &["automation_actions", "actions", action_id, "invocations"])
        .body(json!({"invocation": {"metadata": {"incident_id": incident_id}}}))
}

/// `POST /incidents/{id}/responder_requests`.
///
/// The OpenAPI document contradicts itself on the target items: its schema
/// (`ResponderRequestTargetReference`) has `id`/`type` on the item, while its request example,
/// PagerDuty's API reference and go-pagerduty wrap them in `responder_request_target`. Each
/// target carries both forms (same id and type), so a server reading either accepts it.
pub fn add_responders(
    incident_id: &str,
    requester_id: &str,
    user_ids: &[String],
    escalation_policy_ids: &[String],
    message: &str,
) -> Call {
    let targets: Vec<Value> = user_ids
        .iter()
        .map(|id| target(id, "user_reference"))
        .chain(escalation_policy_ids.iter().map(|id| target(id, "escalation_policy_reference")))
        .collect();
    Call::new("add_responders", Method::POST, &["incidents", incident_id, "responder_requests"]).body(json!({
        "requester_id": requester_id,
        "message": message,
        "responder_request_targets": targets,
    }))
}

fn target(id: &str, kind: &str) -> Value {
    json!({"id": id, "type": kind, "responder_request_target": reference(id, kind)})
}

/// `GET /priorities`.
pub fn list_priorities(offset: usize) -> Call {
    Call::new("list_priorities", Method::GET, &["priorities"]).query("limit", "100").query("offset", offset.to_string())
}

/// `GET /users?query=<email>`.
pub fn find_users(query: &str) -> Call {
    Call::new("find_user_by_email", Method::GET, &["users"]).query("query", query).query("limit", "25")
}

/// `GET /webhook_subscriptions`.
pub fn list_webhook_subscriptions(offset: usize) -> Call {
    Call::new("list_webhook_subscriptions", Method::GET, &["webhook_subscriptions"])
        .query("limit", "100")
        .query("offset", offset.to_string())
}

/// `GET /incidents?since=&until=&statuses[]=...`: one page of the incidents PagerDuty lists for
/// the date range. PagerDuty's range bounds when an incident was *created* (default a month, at
/// most six); reconciliation reads each listed incident's `last_status_change_at` itself.
pub fn list_incidents(since: &str, until: &str, statuses: &[&str], offset: usize) -> Call {
    let mut call = Call::new("list_incidents", Method::GET, &["incidents"]).query("since", since).query("until", until);
    for status in statuses {
        call = call.query("statuses[]", *status);
    }
    let call = call.query("time_zone", "UTC").query("limit", "100").query("offset", offset.to_string());
    // The first page asks for the total, as for the log ([`MAX_PAGED`]).
    if offset == 0 { call.query("total", "true") } else { call }
}

/// `GET /incidents?service_ids[]=&statuses[]=triggered&statuses[]=acknowledged`: the open
/// incidents of some services, newest first (one page of 100: the agent console's panel).
pub fn list_open_incidents(service_ids: &[&str]) -> Call {
    let mut call = Call::new("list_open_incidents", Method::GET, &["incidents"]);
    for id in service_ids {
        call = call.query("service_ids[]", *id);
    }
    call.query("statuses[]", "triggered")
        .query("statuses[]", "acknowledged")
        .query("sort_by", "created_at:desc")
        .query("time_zone", "UTC")
        .query("limit", "100")
}

/// PagerDuty pages by offset only while `offset + limit` stays within this; a request past it
/// is refused, so a longer list must be asked for in narrower ranges.
pub const MAX_PAGED: usize = 10_000;

/// `GET /log_entries?since=&until=`: one page of the account's incident log (newest first).
/// Here the range bounds when each entry was written: reconciliation finds the notes written in
/// its window by their `annotate_log_entry`, since a note changes no stamp of its incident. The
/// first page asks for the total, to tell a range too long to page through ([`MAX_PAGED`]).
pub fn list_log_entries(since: &str, until: &str, offset: usize) -> Call {
    let call = Call::new("list_log_entries", Method::GET, &["log_entries"])
        .query("since", since)
        .query("until", until)
        .query("time_zone", "UTC")
        .query("limit", "100")
        .query("offset", offset.to_string());
    if offset == 0 { call.query("total", "true") } else { call }
}

/// `GET /webhook_subscriptions/{id}`.
pub fn get_webhook_subscription(id: &str) -> Call {
    Call::new("get_webhook_subscription", Method::GET, &["webhook_subscriptions", id])
}

/// `PUT /webhook_subscriptions/{id}` with `active: true`: re-enables a subscription PagerDuty
/// disabled after repeated failed deliveries (or someone switched off).
pub fn enable_webhook_subscription(id: &str) -> Call {
    Call::new("enable_webhook_subscription", Method::PUT, &["webhook_subscriptions", id])
        .body(json!({"webhook_subscription": {"active": true}}))
}

/// `DELETE /webhook_subscriptions/{id}`: `syncctl setup` takes back a subscription whose secret
/// it could not store.
pub fn delete_webhook_subscription(id: &str) -> Call {
    Call::new("delete_webhook_subscription", Method::DELETE, &["webhook_subscriptions", id])
}

/// `POST /webhook_subscriptions`: an HTTP delivery to `url` for [`SUBSCRIBED_EVENTS`].
pub fn create_webhook_subscription(url: &str, filter: &SubscriptionFilter, description: &str) -> Call {
    Call::new("create_webhook_subscription", Method::POST, &["webhook_subscriptions"]).body(json!({
        "webhook_subscription": {
            "type": "webhook_subscription",
            "active": true,
            "description": description,
            "delivery_method": {"type": "http_delivery_method", "url": url},
            "events": SUBSCRIBED_EVENTS,
            "filter": filter.to_json(),
        }
    }))
}
