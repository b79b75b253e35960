//! Logs and metrics of real handler runs: secrets never reach a log line, and the metrics are
//! valid CloudWatch Embedded Metric Format with the names the alarms and dashboard use.
//!
//! Then every alarm of template.yaml is made to fire: each scenario produces the alarm's signal
//! with the real handlers (against the simulators, and moto where a queue or the store is the
//! signal), and `sim::alarms` evaluates the alarm's own definition (metric, dimensions, statistic,
//! period count, threshold, missing data) against the EMF the functions emitted or the queue moto
//! holds; and in normal traffic none fires. What this cannot show: CloudWatch's own evaluation
//! schedule and notifications (moto evaluates no alarm), and the metrics AWS produces outside the
//! functions: Lambda's Errors and Throttles are handed to the alarms as the datapoints Lambda
//! publishes (none for an idle function), and API Gateway's 5xx is counted from the functions'
//! answers, which API Gateway passes on.
//!
//! A test binary of its own, not a module of `integration`: it installs the process-wide tracing
//! subscriber (at trace, into a buffer it reads back) and the process-wide EMF recorder, and both
//! can be installed once a process. Among the other tests it would capture their logs and metrics
//! too (and slow them all with trace-level logging), and they would race its assertions.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{Value, json};
use sim::alarms::{Alarm, MetricId, Period, State};
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
      - name: acknowledged-sets-working
        direction: pagerduty_to_salesforce
        object: Case
        conditions: [{field: pagerduty.event_type, operator: equals, value: acknowledge}]
        actions:
          - set_fields: {Status: Working}
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
    let emf = adapters::telemetry::init_emf("pd-to-sfdc");
    let collector = emf.expect("collector");

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
    collector.flush(&mut metrics).unwrap();
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

    alarms_fire(emf.expect("collector")).await;
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

// ---------- Alarms ----------

/// The EMF documents gathered since the last call: one evaluation period's worth.
fn take(emf: &adapters::telemetry::Collector) -> String {
    let mut out = Vec::new();
    emf.flush(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn template_alarms() -> Vec<Alarm> {
    sim::alarms::alarms(&sim::alarms::template(), &[("OutboundMessages", "Enabled")])
}

fn alarm<'a>(all: &'a [Alarm], id: &str) -> &'a Alarm {
    all.iter().find(|a| a.logical_id == id).unwrap_or_else(|| panic!("template.yaml has no alarm {id}"))
}

/// Asserts that exactly `firing` of `all` are in ALARM after `periods`.
fn expect_firing(all: &[Alarm], periods: &[Period], firing: &[&str], what: &str) {
    for a in all {
        let state = a.state(periods);
        let want = firing.contains(&a.logical_id.as_str());
        assert_eq!(
            state == State::Alarm,
            want,
            "{what}: {} is {state:?}, expected {}; it reads {:?}; the periods hold {:?}",
            a.logical_id,
            if want { "ALARM" } else { "not ALARM" },
            a.metrics(),
            periods.last().map(Period::metrics)
        );
    }
    for id in firing {
        alarm(all, id);
    }
}

/// `n` copies of a period: the same signal every period of an alarm's evaluation range.
fn repeated(period: &Period, n: usize) -> Vec<Period> {
    vec![period.clone(); n]
}

fn longest_range(all: &[Alarm]) -> usize {
    all.iter().map(|a| a.evaluation_periods).max().unwrap()
}

fn case_post(id: &str, priority: &str) -> Value {
    let case = json!({"attributes": {"type": "Case", "url": "/x"}, "Id": id, "Subject": "s", "Priority": priority,
        "SystemModstamp": Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()});
    json!({"schema": 1, "org_id": sim::harness::ORG_ID, "object": "Case", "operation": "insert",
        "user": {"id": "005", "username": "agent@example.com"}, "sent_at": Utc::now().to_rfc3339(), "old": null,
        "new": {id: case}})
}

fn outbound_message(id: &str) -> String {
    sim::salesforce::OutboundMessenger::new(sim::harness::ORG_ID, "https://example.my.salesforce.com")
        .envelope("Case", &[json!({"Id": id, "Subject": "s"})])
}

/// A record id of the demo org, unique per call.
fn record_id(n: usize) -> String {
    format!("5005g0000{:06}AAA", n)
}

/// A queue on moto: its visible depth and its oldest message's first enqueue time (ms).
async fn queue_state(url: &str) -> (f64, Option<i64>) {
    let sqs = aws_sdk_sqs::Client::new(&sim::moto::sdk_config().await);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("moto queue attributes");
    let attrs = attrs.attributes().cloned().unwrap_or_default();
    let visible: f64 = attrs[&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages].parse().unwrap();
    // The oldest message's first enqueue time: receive them (hidden 1 s, then visible again). A
    // retry message may be delayed (its backoff, a few seconds at first): wait for one, up to 20 s.
    let mut oldest = None;
    let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while oldest.is_none() && tokio::time::Instant::now() < give_up {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(1)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .expect("moto receive");
        for m in got.messages() {
            let sent: i64 = m.attributes().unwrap()[&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp]
                .parse()
                .unwrap();
            oldest = Some(oldest.map_or(sent, |o: i64| o.min(sent)));
        }
    }
    (visible, oldest)
}

/// The queue's depth and the age of its oldest message at `at`, as AWS/SQS reports them.
fn queue_metrics(
    (visible, oldest): (f64, Option<i64>),
    queue_name: &str,
    at: chrono::DateTime<Utc>,
) -> Vec<(MetricId, f64)> {
    let dims = [("QueueName", queue_name)];
    let mut out = vec![(MetricId::new("AWS/SQS", "ApproximateNumberOfMessagesVisible", &dims), visible)];
    if let Some(sent) = oldest {
        let age = (at.timestamp_millis() - sent) as f64 / 1000.0;
        out.push((MetricId::new("AWS/SQS", "ApproximateAgeOfOldestMessage", &dims), age));
    }
    out
}

/// API Gateway counts a 5xx for every 5xx answer the integration gives (payload v2 proxies the
/// function's status).
fn api_5xx(statuses: &[u16]) -> (MetricId, f64) {
    let n = statuses.iter().filter(|s| **s >= 500).count();
    (MetricId::new("AWS/ApiGateway", "5xx", &[("ApiId", "HttpApi"), ("Stage", "$default")]), n as f64)
}

/// Each alarm of template.yaml fires on its signal, produced by the real handlers, and no alarm
/// fires in normal traffic. Runs inside the one test that owns the EMF collector.
async fn alarms_fire(emf: &'static adapters::telemetry::Collector) {
    let all = template_alarms();
    let range = longest_range(&all);
    // Gauges are re-emitted at every flush: start from closed breakers (the part above opened one).
    shared::telemetry::metrics::breaker_state("salesforce", false);
    shared::telemetry::metrics::breaker_state("pagerduty", false);
    let _ = take(emf);
    let ids = std::sync::atomic::AtomicUsize::new(0);
    let next = || ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;

    // Normal traffic: an accepted event on each route, nothing else.
    let h = Harness::start(RULES).await;
    let mut normal = Period::default();
    assert_eq!(h.webhook(&trigger("PA1"), "a1").await.status, 200);
    normal.add_emf(&take(emf), "pd-to-sfdc");
    assert_eq!(h.post_records(&case_post(&record_id(next()), "Sev3")).await.status, 200);
    assert_eq!(h.outbound_message(&outbound_message(&record_id(next()))).await.status, 200);
    normal.add_emf(&take(emf), "sfdc-to-pd");
    normal.observe(api_5xx(&[200, 200, 200]).0, 0.0);
    expect_firing(&all, &repeated(&normal, range), &[], "normal traffic");

    // Silence: nothing accepted on any route, the whole range long.
    let silence = ["PagerDutyWebhookSilenceAlarm", "SalesforceRecordsSilenceAlarm", "OutboundMessageSilenceAlarm"];
    expect_firing(&all, &repeated(&Period::default(), range), &silence, "no traffic");

    // A rotated secret: every request refused, in two consecutive 5-minute periods. 11 webhooks
    // (> 10), and 6 record posts + 6 Outbound Messages (each <= 10, together > 10).
    let mut rotated = Vec::new();
    for _ in 0..2 {
        let mut period = Period::default();
        for i in 0..11 {
            let body = trigger(&format!("PR{i}"));
            let old =
                vec![("x-pagerduty-signature".to_string(), sign_v1("the-secret-before-rotation", body.as_bytes()))];
            assert_eq!(h.webhook_with(&body, old).await.status, 401);
        }
        period.add_emf(&take(emf), "pd-to-sfdc");
        for _ in 0..6 {
            let bearer = vec![("authorization".to_string(), "Bearer the-key-before-rotation".to_string())];
            assert_eq!(
                h.post_records_with(&case_post(&record_id(next()), "Sev1").to_string(), bearer).await.status,
                401
            );
            let reply =
                h.outbound_message_with(&outbound_message(&record_id(next())), "token=the-token-before-rotation").await;
            assert_eq!(reply.status, 401);
        }
        period.add_emf(&take(emf), "sfdc-to-pd");
        rotated.push(period);
    }
    let rejected = ["PdToSfdcRejectedRequestsAlarm", "SfdcToPdRejectedRequestsAlarm"];
    expect_firing(&all, &[normal.clone(), rotated[0].clone()], &[], "one period of refusals");
    let mut history = repeated(&normal, range);
    history.extend(rotated.clone());
    expect_firing(&all, &history, &rejected, "two periods of refusals");
    // Refused requests are no accepted events: a route refused all range long is silent.
    let refused_all_along: Vec<Period> = (0..range).map(|i| rotated[i % 2].clone()).collect();
    expect_firing(&all, &refused_all_along, &[&rejected[..], &silence[..]].concat(), "refused all along");

    // Salesforce API usage at 85% of the daily limit (the bridge pauses at 90%).
    h.sf.set_daily_api_limit(10_000);
    h.sf.set_api_used(8_500);
    let mut usage = normal.clone();
    assert_eq!(h.webhook(&trigger("PU1"), "u1").await.status, 200);
    usage.add_emf(&take(emf), "pd-to-sfdc");
    expect_firing(&all, &[usage], &["SalesforceApiUsageAlarm"], "API usage at 85%");
    h.sf.set_api_used(0);
    // The gauge keeps its last figure until the next Salesforce answer; the next scenarios start low.
    shared::telemetry::metrics::salesforce_api_usage_percent(0.0);

    // PagerDuty down: record posts are queued, the PagerDuty breaker opens and stays open.
    h.pd.set_faults(sim::faults::FaultConfig { seed: 2, server_error_rate: 1.0, ..sim::faults::FaultConfig::none() });
    let pd_down = breaker_periods(emf, &all, "PagerDutyBreakerOpenAlarm", "sfdc-to-pd", || async {
        let reply = h.post_records(&case_post(&record_id(next()), "Sev1")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    })
    .await;
    expect_firing(&all, &pd_down, &["PagerDutyBreakerOpenAlarm"], "PagerDuty down");
    h.pd.set_faults(sim::faults::FaultConfig::none());
    shared::telemetry::metrics::breaker_state("pagerduty", false);

    // Salesforce down, retry queue and DLQ on moto: webhooks are queued, the Salesforce breaker
    // opens and stays open, and the queued events age.
    let mut config = sim::harness::HarnessConfig::new(RULES);
    config.sqs = true;
    let q = Harness::with(config).await;
    q.sf.set_faults(sim::faults::FaultConfig { seed: 3, server_error_rate: 1.0, ..sim::faults::FaultConfig::none() });
    let mut k = 0;
    let sf_down = breaker_periods(emf, &all, "SalesforceBreakerOpenAlarm", "pd-to-sfdc", || {
        k += 1;
        let id = format!("PS{k}");
        let q = &q;
        async move { assert_eq!(q.webhook(&trigger(&id), &format!("s{id}")).await.status, 200) }
    })
    .await;
    expect_firing(&all, &sf_down, &["SalesforceBreakerOpenAlarm"], "Salesforce down, queue as it is");
    let retry = queue_state(q.sqs.as_ref().unwrap().retry.url()).await;
    assert!(retry.1.is_some(), "the queued events are in moto's retry queue");
    let backlog_age = alarm(&all, "RetryBacklogAgeAlarm").threshold;
    for (label, at, firing) in [
        ("now", Utc::now(), vec!["SalesforceBreakerOpenAlarm"]),
        (
            "past the threshold",
            Utc::now() + chrono::Duration::seconds(backlog_age as i64 + 60),
            vec!["SalesforceBreakerOpenAlarm", "RetryBacklogAgeAlarm"],
        ),
    ] {
        let mut periods = sf_down.clone();
        for (metric, value) in queue_metrics(retry, "RetryQueue.QueueName", at) {
            periods.last_mut().unwrap().observe(metric, value);
        }
        expect_firing(&all, &periods, &firing, &format!("Salesforce down, the retry queue {label}"));
    }
    shared::telemetry::metrics::breaker_state("salesforce", false);
    let _ = take(emf);

    // A permanent Salesforce error: the event is dead-lettered into moto's DLQ.
    let mut config = sim::harness::HarnessConfig::new(
        RULES.replace("Subject: \"{{incident.title}}\"", "Subject: \"{{incident.title}}\", Status: NotAPicklistValue"),
    );
    config.sqs = true;
    let d = Harness::with(config).await;
    let reply = d.webhook(&trigger("PD1"), "d1").await;
    assert_eq!(sim::harness::outcome(&reply), "dead_lettered", "{}", reply.body);
    let mut dead = Period::default();
    dead.add_emf(&take(emf), "pd-to-sfdc");
    let dlq = queue_state(d.sqs.as_ref().unwrap().dlq.url()).await;
    assert_eq!(dlq.0, 1.0, "one dead letter in moto's DLQ");
    let retention_left = alarm(&all, "DeadLetterRetentionAlarm").threshold;
    for (label, at, firing) in [
        ("now", Utc::now(), vec!["DeadLetterQueueNotEmptyAlarm"]),
        (
            "past the retention threshold",
            Utc::now() + chrono::Duration::seconds(retention_left as i64 + 60),
            vec!["DeadLetterQueueNotEmptyAlarm", "DeadLetterRetentionAlarm"],
        ),
    ] {
        let mut period = dead.clone();
        for (metric, value) in queue_metrics(dlq, "DeadLetterQueue.QueueName", at) {
            period.observe(metric, value);
        }
        expect_firing(&all, &[period], &firing, &format!("a dead letter, {label}"));
    }

    // The store unavailable (DynamoDB on moto behind a proxy that answers 500): the handlers
    // cannot make events safe, answer 503 (the senders deliver again) and count errors.
    let proxy =
        sim::fault_proxy::FaultProxy::start(&sim::moto::url().await, sim::fault_proxy::AwsService::DynamoDb).await;
    let mut config = sim::harness::HarnessConfig::new(RULES);
    config.dynamodb = true;
    config.aws_endpoint = Some(proxy.url().to_string());
    let s = Harness::with(config).await;
    // Something for the retry function to work on once the store is down.
    s.sf.set_faults(sim::faults::FaultConfig { seed: 4, server_error_rate: 1.0, ..sim::faults::FaultConfig::none() });
    for i in 0..3 {
        assert_eq!(s.webhook(&trigger(&format!("PQ{i}")), &format!("q{i}")).await.status, 200);
    }
    s.sf.set_faults(sim::faults::FaultConfig::none());
    shared::telemetry::metrics::breaker_state("salesforce", false);
    let _ = take(emf);
    proxy.set_faults(sim::faults::FaultConfig { seed: 5, server_error_rate: 1.0, ..sim::faults::FaultConfig::none() });
    let mut store_down = Vec::new();
    for round in 0..3 {
        let mut period = Period::default();
        let mut statuses = Vec::new();
        for i in 0..3 {
            statuses.push(s.webhook(&trigger(&format!("PX{round}{i}")), &format!("x{round}{i}")).await.status);
        }
        period.add_emf(&take(emf), "pd-to-sfdc");
        for _ in 0..3 {
            statuses.push(s.post_records(&case_post(&record_id(next()), "Sev1")).await.status);
        }
        period.add_emf(&take(emf), "sfdc-to-pd");
        s.drain_retries(3).await;
        period.add_emf(&take(emf), "retry");
        assert!(statuses.iter().all(|s| *s >= 500), "the store is down: {statuses:?}");
        let (metric, value) = api_5xx(&statuses);
        period.observe(metric, value);
        store_down.push(period);
    }
    let mut history = repeated(&normal, range);
    history.extend(store_down);
    expect_firing(
        &all,
        &history,
        &["PdToSfdcErrorRateAlarm", "SfdcToPdErrorRateAlarm", "RetryHandlingErrorsAlarm", "Api5xxAlarm"],
        "the store unavailable",
    );
    let _ = take(emf);
    reconcile_alarms_fire(emf, &all, &normal, range).await;
}

/// The bridge was down: PagerDuty gave up on an acknowledgement and disabled the subscription.
/// The retry function's next reconcile run finds the drift and enables the subscription again
/// (drift and subscription alarms); a run that cannot list Salesforce's changes is a failure.
async fn reconcile_alarms_fire(
    emf: &'static adapters::telemetry::Collector,
    all: &[Alarm],
    normal: &Period,
    range: usize,
) {
    use shared::pagerduty::client::PagerdutyClient;
    use shared::pagerduty::requests::{CreateIncident, SubscriptionFilter};
    use shared::reconcile::{Options, Quiet, SubscriptionCheck};
    use shared::store::LinkStore;

    let h = Harness::start(RULES).await;
    let http = Arc::new(adapters::http::ReqwestTransport::new().unwrap());
    let oncall = PagerdutyClient::new(
        http,
        url::Url::parse(&h.pd.base_url()).unwrap(),
        "sim-token".into(),
        "oncall@example.com".into(),
    );
    let incident = oncall
        .create_incident(&CreateIncident {
            title: "Checkout down".into(),
            service_id: "PSVC001".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down", "Status": "New"}));
    let link = shared::model::Link {
        incident_id: incident.id.clone().into(),
        record: shared::model::RecordRef { object: "Case".into(), id: case.into() },
        created_at: Utc::now(),
        created_by_rule: None,
    };
    h.store.put_link(&link).await.unwrap();
    let (subscription, _) = oncall
        .create_webhook_subscription("http://127.0.0.1:9/pagerduty/webhook", &SubscriptionFilter::Account)
        .await
        .unwrap();
    h.pd.disable_webhook_subscription(&subscription.id);
    oncall.acknowledge(&incident.id).await.unwrap();
    h.clock.set(Utc::now() + chrono::Duration::seconds(3));
    let options = Options {
        subscription_id: Some(subscription.id.clone()),
        first_run: chrono::Duration::minutes(10),
        ..Options::default()
    };
    let _ = take(emf);
    let report = shared::reconcile::run(&h.instance(), h.store.as_ref(), &options, &Quiet).await;
    report.record_metrics();
    assert!(report.drift() > 0 && report.subscription == SubscriptionCheck::ReEnabled, "{report:#?}");
    let mut found = normal.clone();
    found.add_emf(&take(emf), "retry");
    let mut history = repeated(normal, range);
    history.push(found.clone());
    expect_firing(
        all,
        &history,
        &["ReconcileDriftAlarm", "WebhookSubscriptionDisabledAlarm"],
        "a reconcile run after the senders gave up",
    );

    // The warm container's next invocation (an ordinary retry batch) flushes again: the
    // subscription is active again, and the SEV2 alarm goes back to OK in the next period.
    let mut next = normal.clone();
    next.add_emf(&take(emf), "retry");
    let mut later = repeated(normal, range);
    later.push(found.clone());
    later.push(next);
    let disabled = alarm(all, "WebhookSubscriptionDisabledAlarm");
    assert_ne!(disabled.state(&later), State::Alarm, "the SEV2 alarm stays red after the subscription is enabled");

    // Salesforce answers every query with 503: the Salesforce side cannot be listed.
    h.sf.set_faults(sim::faults::FaultConfig { seed: 6, server_error_rate: 1.0, ..sim::faults::FaultConfig::none() });
    h.clock.set(Utc::now() + chrono::Duration::seconds(6));
    let report = shared::reconcile::run(&h.instance(), h.store.as_ref(), &options, &Quiet).await;
    report.record_metrics();
    h.sf.set_faults(sim::faults::FaultConfig::none());
    assert!(report.stopped_early(), "{report:#?}");
    let mut failing = normal.clone();
    failing.add_emf(&take(emf), "retry");
    let mut history = repeated(normal, range);
    history.push(failing);
    expect_firing(all, &history, &["ReconcileFailuresAlarm"], "a reconcile run that cannot list Salesforce");
    let _ = take(emf);
}

/// Invokes `call` until the alarm's breaker reports open, then once per period for the alarm's
/// whole range (the breaker is checked, and reported, on every invocation); the EMF of each
/// period is read as `function`'s.
async fn breaker_periods<F, Fut>(
    emf: &'static adapters::telemetry::Collector,
    all: &[Alarm],
    id: &str,
    function: &str,
    mut call: F,
) -> Vec<Period>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let a = alarm(all, id);
    for _ in 0..20 {
        call().await;
        let mut p = Period::default();
        p.add_emf(&take(emf), function);
        if a.value(&p) == Some(1.0) {
            break;
        }
    }
    let mut periods = Vec::new();
    for _ in 0..a.evaluation_periods {
        call().await;
        let mut p = Period::default();
        p.add_emf(&take(emf), function);
        periods.push(p);
    }
    assert_eq!(a.value(periods.last().unwrap()), Some(1.0), "{id}: the breaker did not open");
    periods
}

/// Every alarm names its severity first, links a runbook that exists, sends ALARM and OK to its
/// severity's topic, and appears in docs/runbooks/README.md's table with that severity and runbook.
/// Lambda's own metrics cannot be produced here (there is no Lambda service): the periods hold the
/// datapoints Lambda publishes. Lambda publishes a function's Errors and Throttles only for the
/// periods it was invoked or throttled in; an idle function has none (missing data, not 0).
#[test]
fn function_errors_and_throttles_alarms_fire_on_what_lambda_publishes() {
    let all: Vec<Alarm> = template_alarms()
        .into_iter()
        .filter(|a| a.metrics().iter().all(|(m, _)| m.namespace == "AWS/Lambda"))
        .collect();
    assert_eq!(all.len(), 4, "the three Errors alarms and the Throttles alarm");
    let lambda = |name: &str, function: &str| MetricId::new("AWS/Lambda", name, &[("FunctionName", function)]);
    let functions = [
        ("PdToSfdcFunction", "PdToSfdcFunctionErrorsAlarm"),
        ("SfdcToPdFunction", "SfdcToPdFunctionErrorsAlarm"),
        ("RetryFunction", "RetryFunctionErrorsAlarm"),
    ];
    let busy = || {
        let mut period = Period::default();
        for (function, _) in functions {
            period.observe(lambda("Errors", function), 0.0).observe(lambda("Throttles", function), 0.0);
        }
        period
    };
    expect_firing(&all, &[busy()], &[], "every function invoked, nothing failed");
    expect_firing(&all, &[Period::default()], &[], "every function idle");
    for (function, alarm_id) in functions {
        // Five failed invocations in five minutes are tolerated (a bad deploy is more); six are not.
        let mut five = busy();
        for _ in 0..5 {
            five.observe(lambda("Errors", function), 1.0);
        }
        expect_firing(&all, &[five.clone()], &[], &format!("five errors of {function}"));
        five.observe(lambda("Errors", function), 1.0);
        expect_firing(&all, &[five], &[alarm_id], &format!("six errors of {function}"));
        // One function throttled while the other two are idle: their series are missing, not 0,
        // and the sum must not go missing with them.
        let mut throttled = Period::default();
        throttled.observe(lambda("Throttles", function), 1.0);
        expect_firing(
            &all,
            &[throttled],
            &["FunctionThrottlesAlarm"],
            &format!("{function} throttled, the others idle"),
        );
    }
}

#[test]
fn every_alarm_has_a_severity_a_runbook_and_its_severity_topic() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let table = std::fs::read_to_string(root.join("docs/runbooks/README.md")).unwrap();
    let all = template_alarms();
    assert!(all.len() >= 19, "{} alarms", all.len());
    for a in &all {
        let id = &a.logical_id;
        let sev = a.severity().unwrap_or_else(|| panic!("{id}: the description opens with no SEV1/SEV2/SEV3"));
        let topic = format!("Sev{}Topic", &sev[3..]);
        assert_eq!(
            (&a.alarm_actions, &a.ok_actions),
            (&vec![topic.clone()], &vec![topic.clone()]),
            "{id}: ALARM and OK to {topic}"
        );
        let runbook =
            a.runbook().unwrap_or_else(|| panic!("{id}: no `Runbook: ${{RunbookBaseUrl}}/<file>.md` at the end"));
        assert!(root.join("docs/runbooks").join(runbook).exists(), "{id}: docs/runbooks/{runbook} does not exist");
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{id}` |")))
            .unwrap_or_else(|| panic!("{id}: no row in docs/runbooks/README.md's alarm table"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], format!("Sev{}", &sev[3..]), "{id}: the table's severity");
        assert!(cells[3].contains(&format!("({runbook})")), "{id}: the table's runbook is not {runbook}: {row}");
    }
}

/// The DLQ retention alarm leaves the operator 4 days: its threshold is the DLQ's retention less
/// 4 days, whatever either becomes.
#[test]
fn the_dlq_retention_alarm_leaves_four_days() {
    let template = sim::alarms::template();
    let retention = template["Resources"]["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"].as_f64().unwrap();
    let all = template_alarms();
    let a = alarm(&all, "DeadLetterRetentionAlarm");
    assert_eq!(a.threshold, retention - 4.0 * 86_400.0);
    for q in ["RetryQueue", "DeadLetterQueue", "Table"] {
        assert_eq!(template["Resources"][q]["DeletionPolicy"], "Retain", "{q}");
        assert_eq!(template["Resources"][q]["UpdateReplacePolicy"], "Retain", "{q}");
    }
}

/// The start of the active hours: the schedule's datapoint (RouteSilenceWindowOpens' input, as
/// EventBridge Scheduler sends it to PutMetricData) is each silence alarm's metric, so the night's
/// silence is not counted: a route pages only after RouteSilenceMinutes of silence from then.
#[test]
fn the_active_hours_count_silence_from_their_start() {
    let template = sim::alarms::template();
    let input = &template["Resources"]["RouteSilenceWindowOpens"]["Properties"]["Target"]["Input"];
    // `!Sub [text, {Outbound: !If [condition, with, without]}]`, Outbound Messages enabled.
    let text = input[0].as_str().expect("the input's text");
    let text = text.replace("${Outbound}", input[1]["Outbound"][1].as_str().expect("the Outbound Message datum"));
    let put: Value = serde_json::from_str(&text).expect("the input is PutMetricData's JSON");
    let mut opens = Period::default();
    for datum in put["MetricData"].as_array().unwrap() {
        let dims: Vec<(&str, &str)> = datum["Dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["Name"].as_str().unwrap(), d["Value"].as_str().unwrap()))
            .collect();
        let metric = MetricId::new(put["Namespace"].as_str().unwrap(), datum["MetricName"].as_str().unwrap(), &dims);
        opens.observe(metric, datum["Value"].as_f64().unwrap());
    }
    let all = template_alarms();
    let silence: Vec<&Alarm> = all.iter().filter(|a| a.logical_id.ends_with("SilenceAlarm")).collect();
    assert_eq!(silence.len(), 3);
    for a in silence {
        // The night before: silent all along, in ALARM (its actions off).
        let mut periods = repeated(&Period::default(), a.evaluation_periods);
        assert_eq!(a.state(&periods), State::Alarm, "{}", a.logical_id);
        // The window opens, then silence: OK until RouteSilenceMinutes have passed without an event.
        periods.push(opens.clone());
        for minute in 1..a.evaluation_periods {
            periods.push(Period::default());
            assert_eq!(a.state(&periods), State::Ok, "{} {minute} minutes after the start", a.logical_id);
        }
        periods.push(Period::default());
        assert_eq!(a.state(&periods), State::Alarm, "{} silent for its whole range", a.logical_id);
    }
}
