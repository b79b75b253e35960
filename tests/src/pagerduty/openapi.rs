//! Request validation against PagerDuty's published OpenAPI 3 document
//! (`tests/specs/pagerduty-rest-openapiv3.json`, copied from `/work/shared/specs/`).
//!
//! For the matched path template and method we check the required header parameters (`Accept`,
//! `Content-Type` when a body is sent, `From` where the spec requires it) and the JSON body against the
//! `requestBody` schema: required properties (recursively, skipping `readOnly` ones), basic types and
//! enum values, following `$ref` and `allOf`. `oneOf`/`anyOf` pass if any branch passes.

use std::sync::LazyLock;

use http::{HeaderMap, Method};
use serde_json::Value;

const SPEC_TEXT: &str = include_str!("../../specs/pagerduty-rest-openapiv3.json");

/// The parsed spec and its path templates, built once per process (~tens of ms).
pub static SPEC: LazyLock<Spec> = LazyLock::new(|| Spec::parse(SPEC_TEXT));

pub struct Spec {
    doc: Value,
    routes: Vec<Route>,
}

struct Route {
    template: String,
    segments: Vec<Option<String>>,
}

/// Why a request does not conform to the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// No path template matches.
    UnknownPath,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// A required header parameter is absent (its spec name, e.g. `From`).
    MissingHeader(String),
    /// A header is present but has a value the spec does not allow.
    BadHeader { name: String, value: String },
    /// The body is not JSON or violates the schema; one message per problem.
    InvalidBody(Vec<String>),
}

impl Spec {
    fn parse(text: &str) -> Spec {
        let doc: Value = serde_json::from_str(text).expect("embedded PagerDuty OpenAPI document is JSON");
        let routes = doc["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .map(|t| Route {
                        template: t.clone(),
                        segments: t
                            .trim_start_matches('/')
                            .split('/')
                            .map(|s| if s.starts_with('{') { None } else { Some(s.to_string()) })
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Spec { doc, routes }
    }

    /// The path template matching `path`, preferring the one with the most literal segments
    /// (`/incidents/count` over `/incidents/{id}`).
    pub fn match_path(&self, path: &str) -> Option<&str> {
        let segs: Vec<&str> = path.trim_start_matches('/').trim_end_matches('/').split('/').collect();
        self.routes
            .iter()
            .filter(|r| {
                r.segments.len() == segs.len()
                    && r.segments.iter().zip(&segs).all(|(t, s)| match t {
                        Some(lit) => lit == s,
                        None => !s.is_empty(),
                    })
            })
            .max_by_key(|r| r.segments.iter().filter(|s| s.is_some()).count())
            .map(|r| r.template.as_str())
    }

    /// The scope an app token needs for `method` on `path` (`x-pd-requires-scope`), when the
    /// spec gives one.
    pub fn required_scope(&self, method: &Method, path: &str) -> Option<&str> {
        let template = self.match_path(path)?;
        let op = self.doc["paths"][template].get(method.as_str().to_ascii_lowercase())?;
        op.get("x-pd-requires-scope")?.as_str()
    }

    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        // Chains of $ref are short; bound the loop anyway.
        for _ in 0..16 {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let pointer = r.trim_start_matches('#');
                    match self.doc.pointer(pointer) {
                        Some(t) => v = t,
                        None => return v,
                    }
                }
                None => return v,
            }
        }
        v
    }

    /// Validate one request. `body` is the raw body (may be empty).
    pub fn validate(&self, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), Violation> {
        let template = self.match_path(path).ok_or(Violation::UnknownPath)?;
        let op = &self.doc["paths"][template][method.as_str().to_ascii_lowercase()];
        if !op.is_object() {
            return Err(Violation::MethodNotAllowed);
        }
        let has_body = op.get("requestBody").is_some();
        for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
            let p = self.resolve(p);
            if p["in"] != "header" || p["required"] != true {
                continue;
            }
            let name = p["name"].as_str().unwrap_or_default();
            // The spec marks Content-Type required on every operation, GETs included; PagerDuty only
            // looks at it when there is a body, and so do we.
            if name.eq_ignore_ascii_case("content-type") && !has_body {
                continue;
            }
            let value = headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                return Err(Violation::MissingHeader(name.to_string()));
            };
            let ok = if name.eq_ignore_ascii_case("accept") {
                accept_ok(value)
            } else if name.eq_ignore_ascii_case("content-type") {
                value.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json")
            } else if p["schema"]["format"] == "email" {
                value.contains('@')
            } else {
                true
            };
            if !ok {
                return Err(Violation::BadHeader { name: name.to_string(), value: value.to_string() });
            }
        }
        if let Some(rb) = op.get("requestBody") {
            let rb = self.resolve(rb);
            let required = rb["required"] == true;
            if body.iter().all(u8::is_ascii_whitespace) {
                if required || rb["content"]["application/json"]["schema"]["required"].is_array() {
                    return Err(Violation::InvalidBody(vec!["Request body is missing".into()]));
                }
                return Ok(());
            }
            let json: Value = serde_json::from_slice(body)
                .map_err(|e| Violation::InvalidBody(vec![format!("Request body is not valid JSON: {e}")]))?;
            if let Some(schema) = rb["content"]["application/json"].get("schema") {
                let mut errors = Vec::new();
                self.check(&json, schema, "", &mut errors, 0);
                if !errors.is_empty() {
                    return Err(Violation::InvalidBody(errors));
                }
            }
        }
        Ok(())
    }

    fn check(&self, v: &Value, schema: &Value, at: &str, errors: &mut Vec<String>, depth: usize) {
        if depth > 24 {
            return;
        }
        let s = self.resolve(schema);
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(v, sub, at, errors, depth + 1);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alts) = s.get(key).and_then(Value::as_array) {
                let wrapped = is_wrapped_value(at);
                let any_ok = alts.iter().any(|sub| {
                    let mut e = Vec::new();
                    let inner = self.resolve(sub).pointer("/properties/value").filter(|_| wrapped);
                    let sub = inner.unwrap_or(sub);
                    self.check(v, sub, at, &mut e, depth + 1);
                    e.is_empty()
                });
                if !any_ok && !alts.is_empty() {
                    errors.push(format!("{} does not match any allowed schema", name(at)));
                }
            }
        }
        if v.is_null() {
            if s["nullable"] == true || s.get("type").is_none() {
                return;
            }
            errors.push(format!("{} must not be null", name(at)));
            return;
        }
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                _ => true,
            };
            let erratum = ERRATA.iter().any(|(path, also)| *path == at && json_type(v) == *also);
            if !ok && !erratum {
                errors.push(format!("{} must be of type {t}", name(at)));
                return;
            }
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array)
            && !allowed.contains(v)
        {
            let list: Vec<String> =
                allowed.iter().map(|a| a.as_str().map(str::to_string).unwrap_or(a.to_string())).collect();
            errors.push(format!("{} must be one of: {}", name(at), list.join(", ")));
        }
        if let Some(obj) = v.as_object() {
            let props = s.get("properties").map(|p| self.resolve(p));
            for req in s.get("required").and_then(Value::as_array).into_iter().flatten() {
                let Some(req) = req.as_str() else { continue };
                let read_only =
                    props.and_then(|p| p.get(req)).map(|p| self.resolve(p)["readOnly"] == true).unwrap_or(false);
                if !read_only && !obj.contains_key(req) {
                    errors.push(format!("{} is required", name(&join(at, req))));
                }
            }
            if let Some(props) = props.and_then(Value::as_object) {
                for (k, sub) in props {
                    if let Some(child) = obj.get(k) {
                        self.check(child, sub, &join(at, k), errors, depth + 1);
                    }
                }
            }
        }
        if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
            for (i, child) in arr.iter().enumerate() {
                self.check(child, items, &format!("{at}[{i}]"), errors, depth + 1);
            }
        }
    }
}

/// Places where the published schema is stricter than PagerDuty itself. `incident.body.details` is
/// typed `object`, yet the spec's own request example for `POST /incidents` (and every PagerDuty
/// client) sends a string, which PagerDuty accepts.
const ERRATA: &[(&str, &str)] = &[("incident.body.details", "string")];

/// A custom field's `value` in `PUT /incidents/{id}/custom_fields/values`: the schema's `oneOf`
/// wraps each type in an object (`{"value": <the type>}`), while its own request examples and
/// PagerDuty take the value itself (`"production"`, `["production", "staging"]`). Checked
/// against the wrapped schemas.
fn is_wrapped_value(at: &str) -> bool {
    at.strip_prefix("custom_fields[")
        .and_then(|rest| rest.strip_suffix("].value"))
        .is_some_and(|i| i.parse::<usize>().is_ok())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() { key.to_string() } else { format!("{at}.{key}") }
}

fn name(at: &str) -> String {
    if at.is_empty() { "Request body".to_string() } else { format!("`{at}`") }
}

/// PagerDuty's versioned media type; `*/*` or a plain `application/json` is not version 2.
pub const ACCEPT_V2: &str = "application/vnd.pagerduty+json;version=2";

fn accept_ok(value: &str) -> bool {
    value.split(',').any(|part| part.replace(' ', "").eq_ignore_ascii_case(ACCEPT_V2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const FULL: &[(&str, &str)] =
        &[("accept", ACCEPT_V2), ("content-type", "application/json"), ("from", "a@example.com")];

    #[test]
    fn literal_segments_win_over_parameters() {
        assert_eq!(SPEC.match_path("/incidents/count"), Some("/incidents/count"));
        assert_eq!(SPEC.match_path("/incidents/Q123"), Some("/incidents/{id}"));
        assert_eq!(
            SPEC.match_path("/automation_actions/actions/P1/invocations"),
            Some("/automation_actions/actions/{id}/invocations")
        );
        assert_eq!(SPEC.match_path("/nope"), None);
    }

    #[test]
    fn required_headers_come_from_the_spec() {
        let body = br#"{"incident":{"type":"incident","title":"t","service":{"id":"P","type":"service_reference"}}}"#;
        assert_eq!(SPEC.validate(&Method::POST, "/incidents", &headers(FULL), body), Ok(()));
        let no_from = headers(&FULL[..2]);
        assert_eq!(
            SPEC.validate(&Method::POST, "/incidents", &no_from, body),
            Err(Violation::MissingHeader("From".into()))
        );
        // GET /priorities needs no From and no Content-Type.
        assert_eq!(SPEC.validate(&Method::GET, "/priorities", &headers(&FULL[..1]), b""), Ok(()));
        assert_eq!(
            SPEC.validate(&Method::DELETE, "/priorities", &headers(FULL), b""),
            Err(Violation::MethodNotAllowed)
        );
    }

    #[test]
    fn body_schema_follows_refs_required_types_and_enums() {
        let check = |body: &str| SPEC.validate(&Method::POST, "/incidents", &headers(FULL), body.as_bytes());
        let Err(Violation::InvalidBody(e)) = check(r#"{"incident":{"type":"incident","title":"t"}}"#) else { panic!() };
        assert_eq!(e, vec!["`incident.service` is required".to_string()]);
        let Err(Violation::InvalidBody(e)) =
            check(r#"{"incident":{"type":"incident","title":"t","service":{"id":"P"}}}"#)
        else {
            panic!()
        };
        assert!(e.iter().any(|m| m.contains("incident.service.type")), "{e:?}");
        let Err(Violation::InvalidBody(e)) =
            check(r#"{"incident":{"type":"bogus","title":5,"service":{"id":"P","type":"service_reference"}}}"#)
        else {
            panic!()
        };
        assert!(
            e.iter().any(|m| m.contains("incident.type")) && e.iter().any(|m| m.contains("incident.title")),
            "{e:?}"
        );
    }

    #[test]
    fn custom_field_values_and_status_updates_are_checked() {
        let check = |m: Method, path: &str, body: &str| SPEC.validate(&m, path, &headers(FULL), body.as_bytes());
        let values = "/incidents/Q1/custom_fields/values";
        assert!(matches!(
            check(Method::PUT, values, r#"{"custom_fields":[{"name":"x","value":{"a":1}}]}"#),
            Err(Violation::InvalidBody(_))
        ));
        assert!(matches!(check(Method::PUT, values, r#"{"values":[]}"#), Err(Violation::InvalidBody(_))));
        let Err(Violation::InvalidBody(e)) = check(Method::POST, "/incidents/Q1/status_updates", r#"{"subject":"s"}"#)
        else {
            panic!()
        };
        assert_eq!(e, vec!["`message` is required".to_string()]);
        assert_eq!(
            SPEC.validate(&Method::POST, "/incidents/Q1/status_updates", &headers(&FULL[..2]), br#"{"message":"m"}"#),
            Err(Violation::MissingHeader("From".into()))
        );
    }

    #[test]
    fn bodies_a_real_client_sends_pass() {
        let ok = |m: Method, path: &str, body: &str| {
            let r = SPEC.validate(&m, path, &headers(FULL), body.as_bytes());
            assert_eq!(r, Ok(()), "{m} {path} {body}");
        };
        ok(
            Method::POST,
            "/incidents",
            r#"{"incident":{"type":"incident","title":"t","service":{"id":"P","type":"service_reference"},
            "priority":{"id":"PP","type":"priority_reference"},"urgency":"low","incident_key":"k",
            "body":{"type":"incident_body","details":"d"},"escalation_policy":{"id":"E","type":"escalation_policy_reference"}}}"#,
        );
        ok(
            Method::PUT,
            "/incidents/Q1",
            r#"{"incident":{"type":"incident_reference","status":"resolved","resolution":"fixed"}}"#,
        );
        ok(
            Method::PUT,
            "/incidents/Q1",
            r#"{"incident":{"type":"incident_reference","priority":{"id":"PP","type":"priority_reference"}}}"#,
        );
        ok(
            Method::PUT,
            "/incidents/Q1",
            r#"{"incident":{"type":"incident_reference","assignments":[{"assignee":{"id":"U","type":"user_reference"}}]}}"#,
        );
        ok(Method::POST, "/incidents/Q1/notes", r#"{"note":{"content":"hello"}}"#);
        ok(Method::POST, "/incidents/Q1/status_updates", r#"{"message":"m","subject":"s","html_message":"<p>m</p>"}"#);
        ok(
            Method::PUT,
            "/incidents/Q1/custom_fields/values",
            r#"{"custom_fields":[{"name":"impact","value":"high"},{"id":"P1","value":3},{"name":"r","value":null}]}"#,
        );
        ok(
            Method::POST,
            "/incidents/Q1/responder_requests",
            r#"{"requester_id":"U","message":"m",
            "responder_request_targets":[{"responder_request_target":{"id":"E","type":"escalation_policy_reference"}}]}"#,
        );
        ok(
            Method::POST,
            "/incident_workflows/W/instances",
            r#"{"incident_workflow_instance":{"incident":{"id":"Q1","type":"incident_reference"}}}"#,
        );
        ok(
            Method::POST,
            "/automation_actions/actions/A/invocations",
            r#"{"invocation":{"metadata":{"incident_id":"Q1"}}}"#,
        );
    }

    #[test]
    fn the_specs_own_request_examples_pass_for_every_simulated_operation() {
        let ops = [
            ("post", "/incidents"),
            ("put", "/incidents/{id}"),
            ("post", "/incidents/{id}/notes"),
            ("post", "/incidents/{id}/status_updates"),
            ("put", "/incidents/{id}/custom_fields/values"),
            ("post", "/incidents/{id}/responder_requests"),
            ("post", "/incident_workflows/{id}/instances"),
            ("post", "/automation_actions/actions/{id}/invocations"),
            ("post", "/webhook_subscriptions"),
            ("put", "/webhook_subscriptions/{id}"),
        ];
        let mut checked = 0;
        for (m, template) in ops {
            let content = &SPEC.doc["paths"][template][m]["requestBody"]["content"]["application/json"];
            for (_, ex) in content["examples"].as_object().into_iter().flatten() {
                let ex = SPEC.resolve(ex);
                let body = serde_json::to_vec(&ex["value"]).unwrap();
                let path = template.replace("{id}", "PXYZ123");
                let method: Method = m.to_uppercase().parse().unwrap();
                assert_eq!(SPEC.validate(&method, &path, &headers(FULL), &body), Ok(()), "{m} {template}");
                checked += 1;
            }
        }
        assert!(checked >= 4, "only {checked} examples found");
    }
}
