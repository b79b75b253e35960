//! Every request the client builds, checked against PagerDuty's OpenAPI document: the path and
//! method exist, every required header is present with an allowed value, query parameters are
//! declared, and the body has every required property, the right types and enum values, and no
//! property the schema does not know.
//!
//! The operations we use are copied from `/work/shared/specs/pagerduty-rest-openapiv3.json` into
//! `tests/fixtures/pagerduty/openapi-subset.json` by `extract-openapi-subset.py` beside it
//! (`$ref`s inlined), so the test does not depend on a file outside the repository.

use std::path::Path;

use serde_json::{Value, json};
use url::Url;

use super::client::PagerdutyClient;
use super::requests::{
    self, Assignees, Call, CreateIncident, PriorityChoice, StatusUpdate, SubscriptionFilter, Urgency,
};
use crate::secrets::Secret;

fn subset() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pagerduty/openapi-subset.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Deviations from the schema we make on purpose, each explained where the body is built.
/// (operation path, JSON path in the body)
const KNOWN_DEVIATIONS: &[(&str, &str)] = &[
    // IncidentBody.details: schema says object, the example and the live API use a string.
    ("/incidents", "/incident/body/details"),
    // The wrapped target form of the example, sent beside the schema's flat form.
    ("/incidents/{id}/responder_requests", "/responder_request_targets/*/responder_request_target"),
    // A custom field's `value`: the schema wraps each type in an object (`{"value": ...}`), its
    // own request examples and PagerDuty take the value itself ("production", ["a", "b"]).
    ("/incidents/{id}/custom_fields/values", "/custom_fields/*/value"),
];

/// The spec operation (path template) matching `call`.
fn operation<'a>(spec: &'a Value, call: &Call) -> (&'a str, &'a Value) {
    let method = call.method.as_str().to_ascii_lowercase();
    for (template, ops) in spec["paths"].as_object().unwrap() {
        let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        let matches = parts.len() == call.segments.len()
            && parts.iter().zip(&call.segments).all(|(p, s)| p.starts_with('{') || p == s);
        if matches && let Some(op) = ops.get(&method) {
            return (template.as_str(), op);
        }
    }
    panic!("{} {} is not an operation of the spec subset", call.method, call.path());
}

fn known(template: &str, at: &str) -> bool {
    KNOWN_DEVIATIONS.iter().any(|(t, p)| {
        *t == template && {
            let pattern: Vec<&str> = p.split('/').collect();
            let actual: Vec<&str> = at.split('/').collect();
            pattern.len() == actual.len() && pattern.iter().zip(&actual).all(|(a, b)| *a == "*" || a == b)
        }
    })
}

/// Property names a schema declares (properties and required names), across `allOf` branches.
fn declared(schema: &Value, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        out.extend(props.keys().cloned());
    }
    for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        out.extend(req.as_str().map(str::to_string));
    }
    for branch in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        declared(branch, out);
    }
}

fn validate(template: &str, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if known(template, at) {
        return;
    }
    for branch in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        validate_inner(template, branch, value, at, errors, false);
    }
    if let Some(branches) = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array) {
        let any = branches.iter().any(|b| {
            let mut e = Vec::new();
            validate(template, b, value, at, &mut e);
            e.is_empty()
        });
        if !any {
            errors.push(format!("{at}: matches none of oneOf/anyOf"));
        }
    }
    validate_inner(template, schema, value, at, errors, true);
}

fn validate_inner(template: &str, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>, strict: bool) {
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: expected {t}, got {value}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(obj) = value.as_object() {
        for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = req.as_str().unwrap();
            if !obj.contains_key(name) {
                errors.push(format!("{at}: required property {name:?} is missing"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(props) = props {
            for (k, v) in obj {
                if let Some(s) = props.get(k) {
                    validate(template, s, v, &format!("{at}/{k}"), errors);
                }
            }
        }
        // Unknown properties: only where the schema declares its properties (across allOf).
        let mut names = Vec::new();
        declared(schema, &mut names);
        if strict && !names.is_empty() {
            for k in obj.keys() {
                let child = format!("{at}/{k}");
                if !names.contains(k) && !known(template, &child) {
                    errors.push(format!("{child}: not a property of the schema"));
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            validate(template, items, v, &format!("{at}/{i}"), errors);
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (arr.len() as u64) < min
        {
            errors.push(format!("{at}: fewer than {min} items"));
        }
    }
}

fn client() -> PagerdutyClient {
    PagerdutyClient::new(
        crate::transport::testing::Scripted::in_order(Vec::new()),
        Url::parse("https://api.pagerduty.com").unwrap(),
        "u+SECRETTOKEN".into(),
        "integration@example.com".into(),
    )
}

/// Checks one built call against the spec; returns the problems found.
fn check(call: &Call) -> Vec<String> {
    let spec = subset();
    let (template, op) = operation(&spec, call);
    let request = client().to_request(call, &Secret::new("u+SECRETTOKEN")).unwrap();
    let mut errors = Vec::new();
    let header = |name: &str| request.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header("authorization").as_deref(), Some("Token token=u+SECRETTOKEN"));
    for p in op["parameters"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        match p["in"].as_str().unwrap() {
            "header" if p["required"] == true => match header(name) {
                None => errors.push(format!("required header {name} is missing")),
                Some(v) => {
                    if let Some(default) = p["schema"]["default"].as_str()
                        && name != "From"
                        && v != default
                    {
                        errors.push(format!("header {name}: {v:?} instead of {default:?}"));
                    }
                    if let Some(allowed) = p["schema"]["enum"].as_array()
                        && !allowed.contains(&json!(v))
                    {
                        errors.push(format!("header {name}: {v:?} not allowed"));
                    }
                    if p["schema"]["format"] == "email" && !v.contains('@') {
                        errors.push(format!("header {name}: {v:?} is not an email"));
                    }
                }
            },
            "query" if p["required"] == true && !call.query.iter().any(|(k, _)| k == name) => {
                errors.push(format!("required query parameter {name} is missing"));
            }
            _ => {}
        }
    }
    for (k, _) in &call.query {
        let declared = op["parameters"].as_array().unwrap().iter().any(|p| p["in"] == "query" && p["name"] == *k);
        if !declared {
            errors.push(format!("query parameter {k} is not declared"));
        }
    }
    match (op.get("requestBody"), &call.body) {
        (Some(rb), Some(body)) => validate(template, &rb["schema"], body, "", &mut errors),
        (Some(rb), None) if rb["required"] == true => errors.push("the request body is required".into()),
        (None, Some(_)) => errors.push("the operation takes no body".into()),
        _ => {}
    }
    // The body on the wire is the JSON we built.
    if let Some(body) = &call.body {
        let sent: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(&sent, body);
    }
    errors
}

fn every_call() -> Vec<Call> {
    let full = CreateIncident {
        title: "Case 00001026: Checkout down".into(),
        service_id: "PSERVICE".into(),
        urgency: Some(Urgency::High),
        priority: Some(PriorityChoice::Name("P1".into())),
        body_details: Some("Opened from Salesforce: https://example.my.salesforce.com/500".into()),
        incident_key: Some("sfdc:Case:5005g00000AbCdEAAS:rule-1".into()),
        escalation_policy_id: Some("PEP".into()),
    };
    let minimal = CreateIncident { title: "t".into(), service_id: "S".into(), ..Default::default() };
    let users = vec!["PUSER1".to_string(), "PUSER2".to_string()];
    let eps = vec!["PEP1".to_string()];
    vec![
        requests::create_incident(&full, Some("PPRIO")),
        requests::create_incident(&minimal, None),
        requests::find_incidents_by_key("k"),
        requests::get_incident("Q1"),
        requests::acknowledge("Q1"),
        requests::resolve("Q1"),
        requests::set_priority("Q1", "PPRIO"),
        requests::set_urgency("Q1", Urgency::Low),
        requests::reassign("Q1", &Assignees::Users(users.clone())),
        requests::reassign("Q1", &Assignees::EscalationPolicy("PEP".into())),
        requests::add_note("Q1", "[Salesforce] hello"),
        requests::list_notes("Q1"),
        requests::publish_status_update(
            "Q1",
            &StatusUpdate { message: "[Salesforce] Customer notified".into(), ..Default::default() },
        ),
        requests::publish_status_update(
            "Q1",
            &StatusUpdate {
                message: "Customer notified".into(),
                subject: Some("Checkout".into()),
                html_message: Some("<p>Customer notified</p>".into()),
            },
        ),
        requests::set_custom_fields(
            "Q1",
            &serde_json::from_value(json!({"impact": "high", "seats": 12, "escalated": true, "region": null})).unwrap(),
        ),
        requests::run_incident_workflow("Q1", "PWF"),
        requests::run_automation_action("Q1", "01DA2MLYN0J5EFC1LKWXUKDDKT"),
        requests::add_responders("Q1", "PREQ", &users, &eps, "Please help"),
        requests::list_priorities(0),
        requests::find_users("integration@example.com"),
        requests::list_webhook_subscriptions(100),
        requests::list_incidents("2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z", &["acknowledged", "resolved"], 100),
        requests::list_log_entries("2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z", 100),
        requests::get_webhook_subscription("PSUB1"),
        requests::enable_webhook_subscription("PSUB1"),
        requests::create_webhook_subscription("https://x.example/pagerduty/webhook", &SubscriptionFilter::Account, "d"),
        requests::create_webhook_subscription(
            "https://x.example/pagerduty/webhook",
            &SubscriptionFilter::Service("PSERVICE".into()),
            "d",
        ),
    ]
}

#[test]
fn every_request_the_client_builds_matches_the_openapi_document() {
    let mut all = Vec::new();
    for call in every_call() {
        for e in check(&call) {
            all.push(format!("{} {} ({}): {e}", call.method, call.path(), call.operation));
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn the_checker_catches_a_missing_required_property_a_bad_enum_and_an_unknown_field() {
    let mut bad = requests::acknowledge("Q1");
    bad.body = Some(json!({"incident": {"status": "snoozed", "colour": "red"}}));
    let errors = check(&bad);
    assert!(errors.iter().any(|e| e.contains("required property \"type\"")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("not one of")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("/incident/colour")), "{errors:?}");
    let mut no_service = requests::create_incident(
        &CreateIncident { title: "t".into(), service_id: "S".into(), ..Default::default() },
        None,
    );
    no_service.body.as_mut().unwrap()["incident"].as_object_mut().unwrap().remove("service");
    assert!(check(&no_service).iter().any(|e| e.contains("\"service\"")));
    let mut bad_query = requests::get_incident("Q1");
    bad_query.query.push(("colour".into(), "red".into()));
    assert!(check(&bad_query).iter().any(|e| e.contains("colour")));
}

#[test]
fn status_updates_and_custom_field_values_have_the_documented_bodies() {
    let update = StatusUpdate { message: "m".into(), subject: Some("s".into()), html_message: Some("<p>m</p>".into()) };
    let call = requests::publish_status_update("Q1", &update);
    assert_eq!((call.method.as_str(), call.path().as_str()), ("POST", "/incidents/Q1/status_updates"));
    assert_eq!(call.body, Some(json!({"message": "m", "subject": "s", "html_message": "<p>m</p>"})));
    let plain = requests::publish_status_update("Q1", &StatusUpdate { message: "m".into(), ..Default::default() });
    assert_eq!(plain.body, Some(json!({"message": "m"})), "no subject or html_message unless both are given");
    let fields = serde_json::from_value(json!({"impact": "high", "seats": 12})).unwrap();
    let call = requests::set_custom_fields("Q1", &fields);
    assert_eq!((call.method.as_str(), call.path().as_str()), ("PUT", "/incidents/Q1/custom_fields/values"));
    assert_eq!(
        call.body,
        Some(json!({"custom_fields": [{"name": "impact", "value": "high"}, {"name": "seats", "value": 12}]}))
    );
}

#[test]
fn bodies_have_the_shapes_pagerduty_expects() {
    let call = requests::create_incident(
        &CreateIncident {
            title: "T".into(),
            service_id: "S".into(),
            urgency: Some(Urgency::Low),
            priority: None,
            body_details: Some("details".into()),
            incident_key: Some("key".into()),
            escalation_policy_id: None,
        },
        Some("P"),
    );
    assert_eq!(
        call.body.unwrap(),
        json!({"incident": {
            "type": "incident", "title": "T",
            "service": {"id": "S", "type": "service_reference"},
            "urgency": "low",
            "priority": {"id": "P", "type": "priority_reference"},
            "body": {"type": "incident_body", "details": "details"},
            "incident_key": "key"
        }})
    );
    assert_eq!(
        requests::reassign("Q", &Assignees::Users(vec!["U".into()])).body.unwrap(),
        json!({"incident": {"type": "incident", "assignments": [{"assignee": {"id": "U", "type": "user_reference"}}]}})
    );
    assert_eq!(
        requests::run_incident_workflow("Q", "W").body.unwrap(),
        json!({"incident_workflow_instance": {"incident": {"id": "Q", "type": "incident_reference"}}})
    );
    let r = requests::add_responders("Q", "R", &[], &["E".to_string()], "m").body.unwrap();
    assert_eq!(
        r["responder_request_targets"][0]["responder_request_target"],
        json!({"id": "E", "type": "escalation_policy_reference"})
    );
    assert_eq!(r["requester_id"], "R");
}

#[test]
fn ids_are_percent_encoded_into_the_path_and_the_base_path_is_kept() {
    let c = PagerdutyClient::new(
        crate::transport::testing::Scripted::in_order(Vec::new()),
        Url::parse("http://127.0.0.1:9/pd/").unwrap(),
        "t".into(),
        "a@b.c".into(),
    );
    let req = c.to_request(&requests::add_note("Q1/../x", "n"), &Secret::new("t")).unwrap();
    assert_eq!(req.uri().to_string(), "http://127.0.0.1:9/pd/incidents/Q1%2F..%2Fx/notes");
    let req = c.to_request(&requests::find_users("a+b@example.com"), &Secret::new("t")).unwrap();
    assert_eq!(req.uri().query(), Some("query=a%2Bb%40example.com&limit=25"));
}

#[test]
fn the_client_debug_output_never_shows_the_token() {
    let text = format!("{:?}", client());
    assert!(!text.contains("SECRETTOKEN"), "{text}");
    assert!(text.contains("redacted"), "{text}");
    let req = client().to_request(&requests::get_incident("Q1"), &Secret::new("u+SECRETTOKEN")).unwrap();
    assert!(!format!("{req:?}").contains("SECRETTOKEN"));
}

#[test]
fn the_subset_fixture_matches_the_full_document_when_present() {
    // The subset must be regenerated (extract-openapi-subset.py) when the document changes.
    let Some(full) = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/specs/pagerduty-rest-openapiv3.json"))
        .find(|p| p.is_file())
    else {
        return;
    };
    let full: Value = serde_json::from_str(&std::fs::read_to_string(full).unwrap()).unwrap();
    let subset = subset();
    for (path, ops) in subset["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let original = &full["paths"][path][method];
            assert_eq!(op["operationId"], original["operationId"], "{method} {path}");
        }
    }
}
