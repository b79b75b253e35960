//! The account's directory: users, services, escalation policies and priorities, their JSON
//! shapes and references (shared by every endpoint), and their read-only endpoints.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::server::Params;

use super::errors::not_found;
use super::state::{Shared, now};
use super::{PdEscalationPolicy, PdPriority, PdService, PdSimConfig, PdUser, ok, query_params};

fn reference(base: &str, html_base: &str, kind: &str, plural: &str, id: &str, summary: &str) -> Value {
    json!({
        "id": id,
        "type": format!("{kind}_reference"),
        "summary": summary,
        "self": format!("{base}/{plural}/{id}"),
        "html_url": format!("{html_base}/{plural}/{id}"),
    })
}

pub(super) struct Ctx<'a> {
    pub(super) base: &'a str,
    pub(super) html: String,
    pub(super) config: &'a PdSimConfig,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(base: &'a str, config: &'a PdSimConfig) -> Self {
        Ctx { base, html: format!("https://{}.pagerduty.com", config.subdomain), config }
    }

    pub(super) fn user_json(&self, u: &PdUser) -> Value {
        json!({
            "id": u.id, "type": "user", "summary": u.name, "name": u.name, "email": u.email,
            "self": format!("{}/users/{}", self.base, u.id), "html_url": format!("{}/users/{}", self.html, u.id),
            "role": "admin", "time_zone": "UTC", "teams": [], "contact_methods": [], "notification_rules": [],
        })
    }
    pub(super) fn user_ref(&self, u: &PdUser) -> Value {
        reference(self.base, &self.html, "user", "users", &u.id, &u.name)
    }
    pub(super) fn service_ref(&self, sv: &PdService) -> Value {
        reference(self.base, &self.html, "service", "services", &sv.id, &sv.name)
    }
    pub(super) fn ep_ref(&self, ep: &PdEscalationPolicy) -> Value {
        reference(self.base, &self.html, "escalation_policy", "escalation_policies", &ep.id, &ep.name)
    }
    pub(super) fn priority_json(&self, p: &PdPriority) -> Value {
        json!({"id": p.id, "type": "priority", "summary": p.name, "name": p.name, "description": "",
               "self": format!("{}/priorities/{}", self.base, p.id), "html_url": null})
    }
    pub(super) fn user_by_id(&self, id: &str) -> Option<&PdUser> {
        self.config.users.iter().find(|u| u.id == id)
    }
    pub(super) fn ep(&self, id: &str) -> Option<&PdEscalationPolicy> {
        self.config.escalation_policies.iter().find(|e| e.id == id)
    }
    pub(super) fn assignments_for_ep(&self, ep: &PdEscalationPolicy) -> Vec<Value> {
        ep.user_ids
            .iter()
            .filter_map(|id| self.user_by_id(id))
            .map(|u| json!({"at": now(self.config), "assignee": self.user_ref(u)}))
            .collect()
    }
}

pub(super) fn from_user<'a>(config: &'a PdSimConfig, headers: &HeaderMap) -> Option<&'a PdUser> {
    let email = headers.get("from").and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    config.users.iter().find(|u| u.email.eq_ignore_ascii_case(email))
}

pub(super) async fn priorities(State(s): State<Arc<Shared>>) -> Response {
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    let p: Vec<Value> = config.priorities.iter().map(|p| ctx.priority_json(p)).collect();
    ok(StatusCode::OK, json!({"priorities": p, "limit": 25, "offset": 0, "more": false, "total": null}))
}

pub(super) async fn users(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    let q = query_params(q.as_deref());
    let query = q.iter().find(|(k, _)| k == "query").map(|(_, v)| v.to_lowercase());
    let users: Vec<Value> = config
        .users
        .iter()
        .filter(|u| {
            query.as_ref().is_none_or(|qq| u.email.to_lowercase().contains(qq) || u.name.to_lowercase().contains(qq))
        })
        .map(|u| ctx.user_json(u))
        .collect();
    ok(StatusCode::OK, json!({"users": users, "limit": 25, "offset": 0, "more": false, "total": null}))
}

pub(super) async fn user(State(s): State<Arc<Shared>>, p: Params) -> Response {
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    match ctx.user_by_id(p.get("id")) {
        Some(u) => ok(StatusCode::OK, json!({"user": ctx.user_json(u)})),
        None => not_found(),
    }
}

pub(super) async fn service(State(s): State<Arc<Shared>>, p: Params) -> Response {
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    let Some(sv) = config.services.iter().find(|x| x.id == p.get("id")) else {
        return not_found();
    };
    let ep = ctx.ep(&sv.escalation_policy_id);
    let mut v = ctx.service_ref(sv);
    v["type"] = json!("service");
    v["name"] = json!(sv.name);
    v["status"] = json!("active");
    v["escalation_policy"] = ep.map(|e| ctx.ep_ref(e)).unwrap_or(Value::Null);
    v["teams"] = json!([]);
    ok(StatusCode::OK, json!({ "service": v }))
}

pub(super) async fn escalation_policy(State(s): State<Arc<Shared>>, p: Params) -> Response {
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    let Some(ep) = ctx.ep(p.get("id")) else {
        return not_found();
    };
    let mut v = ctx.ep_ref(ep);
    v["type"] = json!("escalation_policy");
    v["name"] = json!(ep.name);
    let targets: Vec<Value> = ep.user_ids.iter().filter_map(|u| ctx.user_by_id(u)).map(|u| ctx.user_ref(u)).collect();
    v["escalation_rules"] =
        json!([{"id": format!("R{}", ep.id), "escalation_delay_in_minutes": 30, "targets": targets}]);
    v["num_loops"] = json!(0);
    ok(StatusCode::OK, json!({ "escalation_policy": v }))
}
