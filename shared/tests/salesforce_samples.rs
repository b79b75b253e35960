//! Real captured Salesforce payloads (copied into `tests/fixtures/salesforce/`): every one must
//! parse, and the errors must be classified the way the retry/DLQ contract needs.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use shared::class::{Class, Classify};
use shared::salesforce::composite::{CompositeResponse, SubrequestResult};
use shared::salesforce::error::{SalesforceError, classify, parse_error_body};
use shared::salesforce::outbound_message::{self, OutboundMessage};
use shared::salesforce::trigger_post::{Operation, TriggerPost};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/salesforce")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap()
}

fn api_error(status: u16, body: &str) -> SalesforceError {
    SalesforceError::Api {
        method: "PATCH".into(),
        path: "/services/data/v62.0/sobjects/Case/5005g00000AbCdEAAS".into(),
        status,
        errors: parse_error_body(body),
    }
}

/// What each REST error sample must be classified as, with the status it is observed with.
const REST_ERRORS: &[(&str, u16, &str, Class)] = &[
    ("airbyte-REQUEST_LIMIT_EXCEEDED.json", 403, "REQUEST_LIMIT_EXCEEDED", Class::Transient),
    ("braven-UNABLE_TO_LOCK_ROW.json", 500, "UNABLE_TO_LOCK_ROW", Class::Transient),
    ("docs-errorcodes-MALFORMED_ID.json", 400, "MALFORMED_ID", Class::Permanent),
    ("docs-errorcodes-NOT_FOUND.json", 404, "NOT_FOUND", Class::Permanent),
    ("palominolabs-INVALID_QUERY_LOCATOR.json", 400, "INVALID_QUERY_LOCATOR", Class::Permanent),
    ("palominolabs-NOT_FOUND-delete-bad-id.json", 404, "NOT_FOUND", Class::Permanent),
    ("palominolabs-REQUIRED_FIELD_MISSING.json", 400, "REQUIRED_FIELD_MISSING", Class::Permanent),
    ("restforce-expired_session_response.json", 401, "INVALID_SESSION_ID", Class::Auth),
    ("restforce-write_error_response.json", 400, "INVALID_FIELD", Class::Permanent),
    ("restforce-auth_error_response.json", 400, "invalid_grant", Class::Auth),
    ("restforce-refresh_error_response.json", 400, "invalid_grant", Class::Auth),
];

#[test]
fn every_rest_error_sample_keeps_its_code_and_is_classified() {
    for (file, status, code, kind) in REST_ERRORS {
        let body = read(file);
        let err = api_error(*status, &body);
        assert_eq!(err.error_codes(), vec![*code], "{file}");
        assert_eq!(err.class(), *kind, "{file}");
        assert!(err.to_string().contains(code), "{file}: {err}");
    }
}

#[test]
fn oauth_error_samples_keep_the_description() {
    let errors = parse_error_body(&read("restforce-auth_error_response.json"));
    assert_eq!(errors[0].message, "authentication failure - Invalid Password");
    let errors = parse_error_body(&read("restforce-refresh_error_response.json"));
    assert_eq!(errors[0].message, "expired access/refresh token");
}

#[test]
fn field_names_of_errors_are_kept() {
    let errors = parse_error_body(&read("docs-errorcodes-MALFORMED_ID.json"));
    assert_eq!(errors[0].fields, vec!["Id"]);
    let errors = parse_error_body(&read("palominolabs-REQUIRED_FIELD_MISSING.json"));
    assert_eq!(errors[0].fields, vec!["LastName"]);
}

#[test]
fn composite_all_or_none_halt_names_the_cause_and_the_halted_subrequest() {
    let resp: CompositeResponse =
        serde_json::from_str(&read("docs-composite-allOrNone-PROCESSING_HALTED-response.json")).unwrap();
    assert!(resp.succeeded().is_empty());
    let failures = resp.failures();
    let refs: Vec<&str> = failures.iter().map(|f| f.reference_id.as_str()).collect();
    assert_eq!(refs, vec!["collection1", "newContact"]);
    assert_eq!(failures[0].errors[0].error_code, "DUPLICATES_DETECTED");
    assert_eq!(failures[1].errors[0].error_code, "PROCESSING_HALTED");
    // The duplicate will be refused again: the whole request goes to the DLQ, not the retry queue.
    assert_eq!(resp.failure_kind(), Some(Class::Permanent));
}

#[test]
fn composite_subrequest_error_sample_is_a_permanent_failure_on_email() {
    let sub: SubrequestResult =
        serde_json::from_str(&read("docs-composite-subrequest-error-INVALID_EMAIL_ADDRESS.json")).unwrap();
    let failure = sub.failure().unwrap();
    assert_eq!(failure.reference_id, "badContact");
    assert_eq!(failure.http_status, 400);
    assert_eq!(failure.errors[0].error_code, "INVALID_EMAIL_ADDRESS");
    assert_eq!(failure.errors[0].fields, vec!["Email"]);
    assert_eq!(failure.kind, Class::Permanent);
    assert_eq!(classify(400, &failure.errors), Class::Permanent);
}

#[test]
fn every_outbound_message_request_sample_parses() {
    for (file, count) in [
        ("aspnet-webhooks-request-contact-2notifications.xml", 2),
        ("aspnet-webhooks-request-lead-3notifications.xml", 3),
        ("aspnet-webhooks-request-empty-notifications.xml", 0),
    ] {
        let m = OutboundMessage::parse(&std::fs::read(fixtures().join(file)).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(m.notifications.len(), count, "{file}");
        for n in &m.notifications {
            assert!(!n.id.is_empty() && !n.object.as_str().is_empty(), "{file}");
            assert!(n.record_id().is_some(), "{file}");
        }
    }
}

#[test]
fn our_ack_and_fault_match_the_reference_answers() {
    assert_eq!(outbound_message::ack_response(), read("aspnet-webhooks-ack-response.xml"));
    assert_eq!(
        outbound_message::ack_response(),
        read("aspnet-webhooks-NotificationResponse-ack.xml").trim_start_matches('\u{feff}')
    );
    assert_eq!(
        outbound_message::fault_response_with_code("soapenv:Client", "{0}"),
        read("aspnet-webhooks-FaultResponse-template.xml").trim_start_matches('\u{feff}')
    );
}

/// Wraps a single serialised sObject (what the Apex samples are) into the map shape
/// `JSON.serialize(Trigger.newMap)` produces, inside our post.
fn post_from_single_records(records: &[Value], operation: &str) -> Value {
    let object = records[0]["attributes"]["type"].as_str().unwrap().to_string();
    let mut map = serde_json::Map::new();
    for r in records {
        map.insert(r["Id"].as_str().unwrap().to_string(), r.clone());
    }
    let new = Value::Object(map);
    let old = if operation == "update" { new.clone() } else { Value::Null };
    json!({
        "schema": 1,
        "org_id": "00D5g000004xxxxEAA",
        "object": object,
        "operation": operation,
        "user": {"id": "0055g00000AbCdEAAS", "username": "agent@example.com"},
        "sent_at": "2026-11-22T10:00:00.000+0000",
        "old": old,
        "new": new,
    })
}

#[test]
fn apex_serialized_records_parse_once_put_in_a_map() {
    let records: Vec<Value> = [
        "NOT-A-MAP-cloudyworlds-single-Account-JSON.serialize.json",
        "NOT-A-MAP-gammone-single-Account-JSON.serialize.json",
    ]
    .iter()
    .map(|f| serde_json::from_str(&read(f)).unwrap())
    .collect();
    for operation in ["insert", "update"] {
        let body = post_from_single_records(&records, operation).to_string();
        let post = TriggerPost::parse(body.as_bytes()).unwrap();
        assert_eq!(post.object, "Account");
        assert_eq!(post.records.len(), 2);
        assert_eq!(post.records[1].new["Phone"], "0811234567");
        assert_eq!(post.records[0].id, "0019000000KANkZAAX");
        assert_eq!(post.operation, if operation == "insert" { Operation::Insert } else { Operation::Update });
    }
}

#[test]
fn a_single_record_instead_of_a_map_is_refused_with_a_clear_reason() {
    let record: Value = serde_json::from_str(&read("NOT-A-MAP-gammone-single-Account-JSON.serialize.json")).unwrap();
    let mut post = post_from_single_records(std::slice::from_ref(&record), "insert");
    post["new"] = record;
    let err = TriggerPost::from_value(&post).unwrap_err();
    assert!(err.to_string().contains("keyed by record Id"), "{err}");
}

/// Checks one sample file from the documents folder by its folder and name.
fn check_sample(folder: &str, path: &Path) {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let bytes = std::fs::read(path).unwrap();
    match folder {
        "salesforce-outbound-message" if name.contains("-request-") => {
            OutboundMessage::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        "salesforce-outbound-message" => {
            let text = String::from_utf8(bytes).unwrap();
            let text = text.trim_start_matches('\u{feff}');
            assert!(
                text == outbound_message::ack_response()
                    || text == outbound_message::fault_response_with_code("soapenv:Client", "{0}"),
                "{name} is neither our ack nor our fault"
            );
        }
        "salesforce-rest-errors" => {
            let text = String::from_utf8(bytes).unwrap();
            let value: Value = serde_json::from_str(&text).unwrap();
            if value.get("compositeResponse").is_some() {
                let resp: CompositeResponse = serde_json::from_value(value).unwrap();
                assert!(!resp.failures().is_empty(), "{name}");
            } else if value.get("httpStatusCode").is_some() {
                let sub: SubrequestResult = serde_json::from_value(value).unwrap();
                assert!(sub.failure().is_some(), "{name}");
            } else {
                let errors = parse_error_body(&text);
                assert!(!errors.is_empty() && errors.iter().all(|e| !e.error_code.is_empty()), "{name}: {errors:?}");
            }
        }
        "apex-json-serialize" => {
            let record: Value = serde_json::from_slice(&bytes).unwrap();
            let body = post_from_single_records(&[record], "insert").to_string();
            TriggerPost::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        _ => {}
    }
}

#[test]
fn every_file_in_the_documents_samples_folder_is_accepted_when_present() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(samples) =
        [root.join("shared/samples"), PathBuf::from("/work/shared/samples")].into_iter().find(|p| p.is_dir())
    else {
        eprintln!("samples folder not present; the copies in tests/fixtures are checked instead");
        return;
    };
    let mut checked = 0;
    for folder in ["salesforce-outbound-message", "salesforce-rest-errors", "apex-json-serialize"] {
        let dir = samples.join(folder);
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                check_sample(folder, &path);
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "samples folder {} holds no Salesforce samples", samples.display());
}

#[test]
fn every_fixture_copy_is_accepted() {
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let folder = if name.ends_with(".xml") {
            "salesforce-outbound-message"
        } else if name.starts_with("NOT-A-MAP") {
            "apex-json-serialize"
        } else if name.ends_with(".json") {
            "salesforce-rest-errors"
        } else {
            continue;
        };
        check_sample(folder, &path);
    }
}
