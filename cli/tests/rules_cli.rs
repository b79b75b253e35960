//! `syncctl rules check` and `syncctl rules test`, run as the real binary.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn syncctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncctl")).args(args).current_dir(repo()).output().expect("run syncctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const EXAMPLE: &str = "events/rules.example.yaml";

#[test]
fn check_accepts_the_example_rules() {
    let out = syncctl(&["rules", "check", EXAMPLE]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("OK (2 ruleset(s)"), "{}", stdout(&out));
}

/// With Change Data Capture as the input, the rules that compare with old values are listed
/// (they cannot match a record's first change event), each at its condition's line; the file is
/// still valid. Without the flag nothing is said.
#[test]
fn check_with_change_events_warns_of_conditions_on_old_values() {
    let out = syncctl(&["rules", "check", EXAMPLE, "--change-events"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(": warning: ")).collect();
    assert_eq!(warnings.len(), 4, "{text}");
    assert!(warnings.iter().any(|w| w.starts_with(&format!("{EXAMPLE}:59: warning: rule "))), "{text}");
    assert!(warnings.iter().all(|w| w.contains("first change event")), "{text}");
    let plain = syncctl(&["rules", "check", EXAMPLE]);
    assert!(!stdout(&plain).contains("warning"), "{}", stdout(&plain));
}

#[test]
fn check_lists_every_problem_with_its_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: salesforce_to_pagerduty\n        object: Case\n        conditions:\n          - {field: Subject, operator: matches, value: '(x'}\n          - {field: Status, operator: equal, value: New}\n        actions: [explode]\n",
    )
    .unwrap();
    let out = syncctl(&["rules", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("3 problem(s)"), "{err}");
    // FILE:LINE:COL: message, the form editors and CI annotate.
    let at = |line: u32, col: u32| format!("{}:{line}:{col}: ruleset \"s\" / rule \"r\" / ", file.display());
    assert!(err.contains(&format!("{}condition 1: regex", at(8, 13))), "{err}");
    assert!(err.contains(&format!("{}condition 2: unknown operator `equal`", at(9, 13))), "{err}");
    assert!(err.contains(&format!("{}action 1: unknown action `explode`", at(10, 9))), "{err}");
}

#[test]
fn check_refuses_a_status_update_without_message_and_custom_fields_without_any() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(
        &file,
        "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: salesforce_to_pagerduty\n        object: Case\n        actions:\n          - publish_status_update: {subject: Down}\n          - set_custom_fields: {}\n",
    )
    .unwrap();
    let out = syncctl(&["rules", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("2 problem(s)"), "{err}");
    let at = |line: u32| format!("{}:{line}:", file.display());
    assert!(err.contains(&at(8)) && err.contains("(publish_status_update): missing required field `message`"), "{err}");
    assert!(err.contains(&at(9)) && err.contains("`set_custom_fields` needs at least one"), "{err}");
}

#[test]
fn check_of_a_missing_file_exits_2() {
    let out = syncctl(&["rules", "check", "no/such/rules.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"));
}

#[test]
fn test_prints_plan_and_explanation_tables_for_a_sev1_case() {
    let out = syncctl(&["rules", "test", EXAMPLE, "events/rules/case-insert-sev1.event.json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Plan: 1 action(s)"), "{text}");
    assert!(text.contains("create_incident"), "{text}");
    assert!(text.contains("[Sev1] 00001026 - Acme Corp - Checkout fails for all EU customers"), "{text}");
    assert!(text.contains("sev1-case-opens-high-urgency-incident"), "{text}");
    assert!(text.contains("skipped: rule is for the other direction"), "{text}");
}

#[test]
fn test_json_gives_plan_and_explanation_for_every_sample_event() {
    let cases = [
        ("case-insert-sev1", vec!["create_incident"]),
        ("case-update-closed", vec!["resolve"]),
        ("casecomment-insert", vec!["add_note"]),
        ("incident-acknowledged", vec!["set_fields"]),
        ("incident-resolved", vec!["set_fields", "add_case_comment"]),
        ("incident-annotated", vec!["add_case_comment"]),
    ];
    let example = std::fs::read_to_string(repo().join(EXAMPLE)).unwrap();
    let rule_count = shared::rules::Rules::from_yaml(&example).unwrap().rule_count();
    for (name, want) in cases {
        let event = format!("events/rules/{name}.event.json");
        let out = syncctl(&["rules", "test", EXAMPLE, &event, "--json"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let types: Vec<&str> =
            v["plan"].as_array().unwrap().iter().map(|p| p["action"]["type"].as_str().unwrap()).collect();
        assert_eq!(types, want, "{name}");
        assert_eq!(v["explanation"]["rules"].as_array().unwrap().len(), rule_count, "every rule is explained: {name}");
    }
}

#[test]
fn test_with_a_malformed_event_explains_the_format_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.event.json");
    std::fs::write(&file, r#"{"kind": "record", "object": "Case"}"#).unwrap();
    let out = syncctl(&["rules", "test", EXAMPLE, file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a file that cannot be understood is a usage error");
    assert!(stderr(&out).contains("not a normalised event"), "{}", stderr(&out));
}

#[test]
fn test_reads_what_an_operator_has_webhooks_apex_posts_outbound_messages_and_events_files() {
    // (file, shape, an action the example rules plan for it, or None for "nothing to do")
    let cases = [
        ("../shared/samples/pagerduty-webhooks-v3/zulip-incident.resolved.json", "pagerduty_webhook", None),
        ("events/pd-to-sfdc/incident-acknowledged.json", "api_gateway/pagerduty_webhook", None),
        ("events/sfdc-to-pd/case-insert-sev1.json", "api_gateway/trigger_post", Some("create_incident")),
        ("events/sfdc-to-pd/outbound-message.xml", "outbound_message", None),
        (
            "../shared/samples/salesforce-outbound-message/aspnet-webhooks-request-contact-2notifications.xml",
            "outbound_message",
            None,
        ),
        ("events/retry/sqs-batch.json", "sqs_batch", None),
        ("events/rules/case-insert-sev1.event.json", "normalised_event", Some("create_incident")),
    ];
    for (file, shape, action) in cases {
        let out = syncctl(&["rules", "test", EXAMPLE, file, "--json"]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v["shape"], shape, "{file}");
        let events = v["events"].as_array().unwrap();
        assert!(!events.is_empty(), "{file}: {v}");
        for e in events {
            assert!(
                e["explanation"]["rules"].as_array().is_some_and(|r| !r.is_empty()),
                "{file}: every rule explained"
            );
        }
        if let Some(action) = action {
            assert_eq!(v["plan"][0]["action"]["type"], action, "{file}: {v}");
        }
    }
    // The table form says what the file was and explains the decision.
    let out = syncctl(&["rules", "test", EXAMPLE, "events/sfdc-to-pd/case-insert-sev1.json"]);
    let text = stdout(&out);
    assert!(text.contains("api_gateway/trigger_post") && text.contains("create_incident"), "{text}");
    assert!(text.contains("sev1-case-opens-high-urgency-incident"), "{text}");
}

#[test]
fn test_of_an_unknown_shape_names_the_shapes_it_takes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("odd.json");
    std::fs::write(&file, r#"{"hello": "world"}"#).unwrap();
    let out = syncctl(&["rules", "test", EXAMPLE, file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("PagerDuty webhook") && err.contains("Outbound Message"), "{err}");
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = syncctl(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("stack-name"), "{shell}: the global flags complete too");
    }
}
