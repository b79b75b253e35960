//! Incident custom field values: read them, set some by field name or id. The account's fields
//! are [`super::PdSimConfig::custom_fields`]; a value must fit its field's data type, as
//! PagerDuty checks. A change is sent as an `incident.custom_field_values.updated` webhook, done
//! by the `From` user when one is named (the endpoint does not require the header).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::server::{Params, RawBody};

use super::account::{Ctx, from_user};
use super::errors::{invalid, not_found};
use super::state::{Shared, World};
use super::webhook::{self, emit};
use super::{PdCustomField, json_of, ok};

/// Every field of the account with the incident's value (`null` when unset), as PagerDuty lists them.
fn values(config: &super::PdSimConfig, w: &World, incident_id: &str) -> Vec<Value> {
    let set = w.custom_field_values.get(incident_id);
    config.custom_fields.iter().map(|f| field_value(f, set.and_then(|s| s.get(&f.name)))).collect()
}

fn field_value(f: &PdCustomField, value: Option<&Value>) -> Value {
    json!({
        "id": f.id, "type": "field_value", "name": f.name, "display_name": f.display_name,
        "description": null, "data_type": f.data_type, "field_type": "single_value", "namespace": "incidents",
        "value": value.cloned().unwrap_or(Value::Null),
    })
}

fn fits(data_type: &str, v: &Value) -> bool {
    match data_type {
        _ if v.is_null() => true,
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "float" => v.is_number(),
        _ => v.is_string(),
    }
}

pub(super) async fn list(State(s): State<Arc<Shared>>, p: Params) -> Response {
    let config = s.config();
    let w = s.world.lock().unwrap();
    if w.incident(p.get("id")).is_none() {
        return not_found();
    }
    ok(StatusCode::OK, json!({"custom_fields": values(&config, &w, p.get("id"))}))
}

pub(super) async fn set(
    State(s): State<Arc<Shared>>,
    p: Params,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let (id, body) = (p.get("id"), json_of(&body));
    let config = s.config();
    let ctx = Ctx::new(&s.base_url, &config);
    let mut w = s.world.lock().unwrap();
    let Some(incident) = w.incident(id).cloned() else {
        return not_found();
    };
    let mut updates: Vec<(&PdCustomField, Value)> = Vec::new();
    for item in body["custom_fields"].as_array().into_iter().flatten() {
        let field =
            config.custom_fields.iter().find(|f| item["name"] == f.name.as_str() || item["id"] == f.id.as_str());
        let Some(field) = field else {
            return invalid(&[&format!(
                "Custom field {} not found",
                item.get("name").or(item.get("id")).unwrap_or(&Value::Null)
            )]);
        };
        let value = item["value"].clone();
        if !fits(&field.data_type, &value) {
            return invalid(&[&format!("Value {value} is not a valid {} for field {}", field.data_type, field.name)]);
        }
        updates.push((field, value));
    }
    let current = w.custom_field_values.entry(id.to_string()).or_default();
    let mut before: Map<String, Value> = Map::new();
    for (field, value) in updates {
        let old = current.get(&field.name).cloned().unwrap_or(Value::Null);
        if old != value {
            before.entry(field.name.clone()).or_insert(old);
            current.insert(field.name.clone(), value);
        }
    }
    let all = values(&config, &w, id);
    if !before.is_empty() {
        // The changed fields with their values before, as PagerDuty's `changed_custom_fields`.
        let changed: Vec<Value> = config
            .custom_fields
            .iter()
            .filter_map(|f| before.get(&f.name).map(|old| field_value(f, Some(old))))
            .collect();
        let agent = from_user(&config, &headers).map(|u| ctx.user_json(u));
        let ev = webhook::custom_fields_event(&incident, &all, &changed, agent.as_ref(), ctx.config.clock.now());
        emit(&mut w, &config, ev);
    }
    ok(StatusCode::CREATED, json!({"custom_fields": all}))
}
