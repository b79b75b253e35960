//! Incident workflows and automation actions: start one on an incident, as the bridge's rules do.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::server::{Params, RawBody};

use super::errors::{invalid, not_found};
use super::state::{Shared, next_id, now};
use super::{json_of, ok};

pub(super) async fn start_workflow(State(s): State<Arc<Shared>>, p: Params, RawBody(body): RawBody) -> Response {
    let (wf, body) = (p.get("id"), json_of(&body));
    let config = s.config();
    let mut w = s.world.lock().unwrap();
    if !config.incident_workflows.iter().any(|x| x == wf) {
        return not_found();
    }
    let inc_id = body["incident_workflow_instance"]["incident"]["id"].as_str().unwrap_or_default().to_string();
    if w.incident(&inc_id).is_none() {
        return invalid(&["Incident not found"]);
    }
    let iid = next_id(&mut w, 'W');
    let inst = json!({"id": iid, "type": "incident_workflow_instance", "workflow": {"id": wf, "type": "incident_workflow_reference"},
                      "incident": {"id": inc_id, "type": "incident_reference"}});
    w.workflow_instances.push(inst.clone());
    ok(StatusCode::CREATED, json!({ "incident_workflow_instance": inst }))
}

pub(super) async fn invoke(State(s): State<Arc<Shared>>, p: Params, RawBody(body): RawBody) -> Response {
    let (action, body) = (p.get("id"), json_of(&body));
    let config = s.config();
    let mut w = s.world.lock().unwrap();
    if !config.automation_actions.iter().any(|x| x == action) {
        return not_found();
    }
    let inc_id = body["invocation"]["metadata"]["incident_id"].as_str().unwrap_or_default().to_string();
    if w.incident(&inc_id).is_none() {
        return invalid(&["Incident not found"]);
    }
    let iid = next_id(&mut w, 'V');
    let inv = json!({"id": iid, "type": "invocation", "action_snapshot": {"id": action, "name": format!("Action {action}")},
                     "state": "prepared", "metadata": body["invocation"]["metadata"], "timing": [{"state": "prepared", "creation_timestamp": now(&config)}]});
    w.invocations.push(inv.clone());
    ok(StatusCode::CREATED, json!({ "invocation": inv }))
}
