//! Logs and metrics of real handler runs: secrets never reach a log line, and the metrics are
//! valid CloudWatch Embedded Metric Format with the names the alarms and dashboard use.
//!
//! A test binary of its own, not a module of `integration`: it installs the process-wide tracing
//! subscriber (at trace, into a buffer it reads back) and the process-wide EMF recorder, and both
//! can be installed once a process. Among the other tests it would capture their logs and metrics
//! too (and slow them all with trace-level logging), and they would race its assertions.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{Value, json};
use sim::harness::{
    Harness, INBOUND_SECRET, OUTBOUND_MESSAGE_TOKEN, WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS, delivery, incident_data,
};
use sim::pagerduty::sign_v1;
use sim::salesforce::test_keys;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const RULES: &str = r#"
rulesets:
  - name: both
    enabled: true
    rules:
      - name: trigger-opens-case
        direction: pagerduty_to_salesforce
        object: Case
        applies_to: new_only
        conditions: [{field: pagerduty.event_type, operator: equals, value: trigger}]
        actions:
          - create_record: {object: Case, fields: {Subject: "{{incident.title}}"}, external_id_field: PagerDuty_Incident_Key__c}
      - name: sev1-pages
        direction: salesforce_to_pagerduty
        object: Case
        applies_to: new_only
        conditions: [{field: Priority, operator: equals, value: Sev1}]
        actions:
          - create_incident: {service: PSVC001, title: {prefix: "Case ", fields: [Subject]}}
"#;

fn trigger(id: &str) -> String {
    delivery(&format!("E-{id}"), "incident.triggered", Utc::now(), incident_data(id, "triggered"))
}

/// One test: the subscriber and the EMF collector are process-wide.
#[tokio::test]
async fn logs_keep_secrets_out_and_metrics_are_valid_emf() {
    let logs = Captured::default();
    adapters::telemetry::init_logging_to("trace", logs.clone());
    let emf = adapters::telemetry::init_emf("pd-to-sfdc").expect("collector");

    let h = Harness::start(RULES).await;
    // Happy paths, both directions (the Salesforce JWT flow and the PagerDuty token are used).
    assert_eq!(h.webhook(&trigger("PT1"), "w1").await.status, 200);
    let case = json!({"attributes": {"type": "Case", "url": "/x"}, "Id": "5005g00000TELE1AAA", "Subject": "s", "Priority": "Sev1",
        "SystemModstamp": "2026-11-22T10:00:00.000+0000"});
    let post = json!({"schema": 1, "org_id": sim::harness::ORG_ID, "object": "Case", "operation": "insert",
        "user": {"id": "005", "username": "agent@example.com"}, "sent_at": Utc::now().to_rfc3339(), "old": null,
        "new": {"5005g00000TELE1AAA": case}});
    assert_eq!(h.post_records(&post).await.status, 200);
    // Failure paths: bad signatures, expired Salesforce token re-minted, a Salesforce outage.
    let body = trigger("PT2");
    let forged = vec![("x-pagerduty-signature".to_string(), sign_v1("forged", body.as_bytes()))];
    assert_eq!(h.webhook_with(&body, forged).await.status, 401);
    let bearer = vec![("authorization".to_string(), "Bearer wrong-bearer".to_string())];
    assert_eq!(h.post_records_with(&post.to_string(), bearer).await.status, 401);
    h.sf.expire_all_tokens();
    assert_eq!(h.webhook(&trigger("PT3"), "w3").await.status, 200);
    h.sf.set_faults(sim::faults::FaultConfig { seed: 1, server_error_rate: 1.0, ..sim::faults::FaultConfig::none() });
    assert_eq!(h.webhook(&trigger("PT4"), "w4").await.status, 200);

    // An Outbound Message carries its token in the URL; at trace, lambda_runtime logs every raw
    // invocation (headers, query, body) as this line: the filter keeps it out whatever LOG_LEVEL says.
    let xml = sim::salesforce::OutboundMessenger::new(sim::harness::ORG_ID, "https://example.my.salesforce.com")
        .envelope("Case", &[json!({"Id": "5005g00000TELE2AAA", "Subject": "s"})]);
    assert_eq!(h.outbound_message(&xml).await.status, 200);
    let raw = format!(r#"{{"rawQueryString":"token={OUTBOUND_MESSAGE_TOKEN}"}}"#);
    tracing::trace!(target: "lambda_runtime::layers::api_response", body = %raw, "raw JSON event received from Lambda");
    tracing::trace!(target: "lambda_http::request", body = %raw, "request");

    let mut metrics = Vec::new();
    emf.flush(&mut metrics).unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.lines().count() > 10, "the handlers logged");
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{line}");
    }
    let key_body: String = test_keys().private_key_pem.lines().filter(|l| !l.starts_with("-----")).take(2).collect();
    for secret in [
        WEBHOOK_SECRET,
        WEBHOOK_SECRET_PREVIOUS,
        INBOUND_SECRET,
        OUTBOUND_MESSAGE_TOKEN,
        "sim-token",
        key_body.as_str(),
        "BEGIN PRIVATE KEY",
        "eyJ",
    ] {
        assert!(!text.contains(secret), "a secret ({secret:.12}...) reached the logs");
    }
    assert!(text.contains("correlation_id"), "event lines carry the correlation id");

    let metrics = String::from_utf8(metrics).unwrap();
    let mut names = std::collections::HashSet::new();
    // Metric name -> the dimension sets it is emitted with (names only, sorted).
    let mut dimension_sets: std::collections::HashMap<String, std::collections::HashSet<Vec<String>>> =
        std::collections::HashMap::new();
    for doc in metrics.lines() {
        let v: Value = serde_json::from_str(doc).expect("EMF documents are JSON");
        let aws = &v["_aws"];
        assert!(aws["Timestamp"].as_i64().is_some(), "{doc}");
        for directive in aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics") {
            assert_eq!(directive["Namespace"], "PdSfdcSync");
            for set in directive["Dimensions"].as_array().expect("Dimensions") {
                for dim in set.as_array().expect("dimension set") {
                    assert!(v[dim.as_str().unwrap()].is_string(), "dimension {dim} has a value: {doc}");
                }
            }
            for metric in directive["Metrics"].as_array().expect("Metrics") {
                let name = metric["Name"].as_str().expect("Name");
                assert!(v[name].is_number() || v[name].is_array(), "metric {name} has a value: {doc}");
                names.insert(name.to_string());
                for set in directive["Dimensions"].as_array().expect("Dimensions") {
                    let mut dims: Vec<String> =
                        set.as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
                    dims.sort();
                    dimension_sets.entry(name.to_string()).or_default().insert(dims);
                }
            }
        }
        assert_eq!(v["Function"], "pd-to-sfdc");
    }
    for expected in [
        "EventsReceived",
        "EventsAccepted",
        "EventsRejected",
        "ActionsSucceeded",
        "ApiCalls",
        "HandlerLatency",
        "Retries",
    ] {
        assert!(names.contains(expected), "metric {expected} missing from {names:?}");
    }
    // CloudWatch matches dimension sets exactly: a dashboard series naming fewer dimensions than
    // the metric is emitted with is always empty (it was, for rejections by reason).
    for (name, dims) in dashboard_series() {
        let Some(emitted) = dimension_sets.get(&name) else { continue };
        assert!(
            emitted.contains(&dims),
            "the dashboard reads {name} by {dims:?}, the functions emit it by {emitted:?}"
        );
    }
}

/// The `PdSfdcSync` series the dashboard in template.yaml plots: metric name and dimension names
/// (sorted), with CloudWatch's `"..."` shorthand (repeat the previous series but its last values)
/// expanded. Expressions (`SEARCH`, math) are left out.
fn dashboard_series() -> Vec<(String, Vec<String>)> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).expect("template.yaml parses");
    let body = &template["Resources"]["Dashboard"]["Properties"]["DashboardBody"];
    let body = body.as_str().or_else(|| body["Fn::Sub"].as_str()).expect("the dashboard body is a string");
    let body = regex::Regex::new(r"\$\{[^}]+\}").unwrap().replace_all(body, "x");
    let dashboard: Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    let mut series = Vec::new();
    for widget in dashboard["widgets"].as_array().unwrap() {
        let mut previous: Vec<String> = Vec::new();
        for entry in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let parts: Vec<String> =
                entry.as_array().unwrap().iter().filter_map(|p| p.as_str().map(str::to_string)).collect();
            let full = match parts.first().map(String::as_str) {
                None => continue,
                Some("...") => {
                    let keep = previous.len().saturating_sub(parts.len() - 1);
                    [&previous[..keep], &parts[1..]].concat()
                }
                Some(_) => parts,
            };
            if full.len() >= 2 && full[0] == "PdSfdcSync" {
                let mut dims: Vec<String> = full[2..].iter().step_by(2).cloned().collect();
                dims.sort();
                series.push((full[1].clone(), dims));
            }
            previous = full;
        }
    }
    assert!(!series.is_empty(), "the dashboard plots PdSfdcSync metrics");
    series
}
