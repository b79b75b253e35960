//! The handler bench's rules, event and expected output, exported as files so that the Python
//! baseline (`tools/baseline/pd_to_sfdc.py`) does the same work on the same input and checks it
//! reached the same plan and the same Composite body. These tests keep the files equal to what
//! the bench uses; after changing the bench, rewrite them with
//! `UPDATE_BENCH_FIXTURES=1 cargo test -p pd-sfdc-shared --test bench_fixtures`.

use std::path::{Path, PathBuf};

use serde_json::json;
use shared::pagerduty::WebhookEvent;
use shared::rules::Rules;

#[path = "../benches/support/mod.rs"]
mod support;
#[path = "../benches/support/pd_to_sfdc.rs"]
mod webhook;

/// The event id of `webhook_body(0)`.
const EVENT_ID_0: &str = "01BENCH00000000000000000000";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/support").join(name)
}

/// Fails when the committed file differs from `expected` (or rewrites it when asked to).
fn assert_committed(name: &str, expected: &str) {
    let path = fixture(name);
    if std::env::var_os("UPDATE_BENCH_FIXTURES").is_some() {
        std::fs::write(&path, expected).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "{} is not what the bench uses; rewrite it with UPDATE_BENCH_FIXTURES=1 cargo test -p pd-sfdc-shared --test bench_fixtures",
        path.display()
    );
}

#[test]
fn the_committed_rules_are_the_handler_benches_rules() {
    assert_committed("handler_rules.yaml", &webhook::handler_rules());
}

#[test]
fn the_committed_event_plan_and_composite_body_are_what_the_engine_produces() {
    let rules = Rules::from_yaml(&webhook::handler_rules()).unwrap();
    let body = webhook::webhook_body(0);
    let evaluation = rules.evaluate(&webhook::incident_input(&WebhookEvent::parse(body.as_bytes()).unwrap()));
    // The bench's bodies differ only in the event id: the baseline derives them by swapping it.
    assert!(body.contains(EVENT_ID_0));
    assert_eq!(webhook::webhook_body(4321), body.replace(EVENT_ID_0, &format!("01BENCH{:020}", 4321)));
    assert!(evaluation.plan.len() >= 2, "the bench event plans record updates and a comment: {}", evaluation.plan);
    let fixture = json!({
        "secret": webhook::SECRET,
        "event_id_0": EVENT_ID_0,
        "body": body,
        "plan": evaluation.plan,
        "composite_body": String::from_utf8(webhook::composite_body(&evaluation)).unwrap(),
    });
    assert_committed("pd_to_sfdc_event.json", &format!("{}\n", serde_json::to_string_pretty(&fixture).unwrap()));
}
