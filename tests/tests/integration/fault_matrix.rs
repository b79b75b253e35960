//! Fault matrix (issue 10): for each external dependency (PagerDuty, Salesforce, DynamoDB, SQS,
//! Secrets Manager) and each fault (5xx, 429, timeout, connection reset), a run of mixed events
//! ends with every event applied exactly once or in the DLQ with its reason: nothing lost, nothing
//! applied twice. Each cell prints its counts
//! (`cargo test -p pd-sfdc-tests --test integration fault_matrix:: -- --nocapture`).
//!
//! A cell runs two phases (incidents and Cases are created, then changed), each as production
//! sees it: the fault is injected at 30% (seeded) while the senders deliver and the retry function
//! drains, then it is removed, the senders redeliver what was refused (PagerDuty on any non-2xx,
//! the Apex Queueable on a failed post) and the retry queue is drained to empty.
//!
//! PagerDuty and Salesforce faults come from their simulators, with everything AWS in memory. AWS
//! faults come from a proxy in front of moto ([`sim::fault_proxy`]) with DynamoDB, SQS and Secrets
//! Manager all on moto; fewer events there, moto is a Python server.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use adapters::wiring::AwsTimeouts;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::handler::settle::RetryPolicy;
use shared::model::Outcome;
use shared::retry::backoff::Backoff;
use shared::retry::envelope::Envelope;
use sim::fault_proxy::{AwsService, FaultProxy};
use sim::faults::{FaultConfig, FaultKind};
use sim::harness::{Harness, HarnessConfig, ORG_ID, delivery, incident_data};

const RULES: &str = include_str!("../../../events/rules.example.yaml");
const FAULT_RATE: f64 = 0.3;
/// Incidents (PagerDuty side) and Cases (Salesforce side) per cell; each gets two events.
const SAAS_SUBJECTS: usize = 6;
const AWS_SUBJECTS: usize = 3;
/// Deliveries a sender makes while the fault lasts (the first and its quick retries).
const SENDER_ATTEMPTS_DURING_FAULT: u32 = 3;
/// Redelivery rounds after the fault is gone (each one some simulated minutes later).
const REDELIVERY_ROUNDS: u32 = 5;
/// Short timeouts so that a held call costs little time; the held call outlasts them.
const HTTP_TIMEOUT: Duration = Duration::from_millis(300);
const AWS_TEST_TIMEOUTS: AwsTimeouts = AwsTimeouts {
    connect: Duration::from_millis(500),
    attempt: Duration::from_millis(500),
    operation: Duration::from_millis(2000),
};
const AGENT: &str = "agent@example.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dependency {
    PagerDuty,
    Salesforce,
    Aws(AwsService),
}

impl Dependency {
    fn name(self) -> &'static str {
        match self {
            Dependency::PagerDuty => "PagerDuty",
            Dependency::Salesforce => "Salesforce",
            Dependency::Aws(service) => service.name(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ServerError,
    Throttled,
    Timeout,
    Reset,
}

const FAULTS: [Fault; 4] = [Fault::ServerError, Fault::Throttled, Fault::Timeout, Fault::Reset];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::ServerError => "5xx",
            Fault::Throttled => "429/throttle",
            Fault::Timeout => "timeout",
            Fault::Reset => "conn reset",
        }
    }

    fn kind(self, slow_delay: Duration) -> FaultKind {
        match self {
            Fault::ServerError => FaultKind::ServerError,
            Fault::Throttled => FaultKind::RateLimited,
            Fault::Timeout => FaultKind::Slow(slow_delay),
            Fault::Reset => FaultKind::Drop,
        }
    }

    fn config(self, seed: u64, slow_delay: Duration) -> FaultConfig {
        let none = FaultConfig { seed, slow_delay, ..FaultConfig::none() };
        match self {
            Fault::ServerError => FaultConfig { server_error_rate: FAULT_RATE, ..none },
            Fault::Throttled => FaultConfig { rate_limited_rate: FAULT_RATE, ..none },
            Fault::Timeout => FaultConfig { slow_rate: FAULT_RATE, ..none },
            Fault::Reset => FaultConfig { drop_rate: FAULT_RATE, ..none },
        }
    }
}

/// One cell's counts.
#[derive(Debug, Default)]
struct Row {
    events: usize,
    applied: usize,
    dead_lettered: usize,
    /// Events not acted on because the event they depend on is dead-lettered.
    moot: usize,
    sender_retries: u32,
    queued_retries: usize,
    injected: usize,
}

/// One event of the mix and how to tell it was applied.
#[derive(Debug, Clone)]
enum Event {
    /// PagerDuty webhook.
    Webhook { event_id: String, body: String, check: Check },
    /// Apex trigger post of one Case change.
    Post { key: String, payload: Value, check: Check },
}

#[derive(Debug, Clone)]
enum Check {
    CaseOpened { incident: String },
    CaseWorking { incident: String },
    CaseCommented { incident: String, body: String },
    CaseClosed { incident: String },
    IncidentOpened { case: String },
    IncidentResolved { case: String },
}

impl Event {
    fn id(&self) -> &str {
        match self {
            Event::Webhook { event_id, .. } => event_id,
            Event::Post { key, .. } => key,
        }
    }

    fn check(&self) -> &Check {
        match self {
            Event::Webhook { check, .. } | Event::Post { check, .. } => check,
        }
    }
}

struct Cell {
    h: Harness,
    proxy: Option<FaultProxy>,
    dependency: Dependency,
    fault: Fault,
    faults: FaultConfig,
    row: Row,
}

impl Cell {
    async fn start(dependency: Dependency, fault: Fault, seed: u64) -> Self {
        let mut config = HarnessConfig::new(RULES);
        config.http_timeout = HTTP_TIMEOUT;
        // A 429's reset, which our PagerDuty client waits out in real time: short.
        config.pagerduty.rate_limit.window = Duration::from_secs(1);
        let mut slow_delay = HTTP_TIMEOUT * 2;
        let proxy = match dependency {
            Dependency::Aws(service) => {
                let proxy = FaultProxy::start(&sim::moto::url().await, service).await;
                config.dynamodb = true;
                config.sqs = true;
                config.secrets_manager = true;
                config.aws_endpoint = Some(proxy.url().to_string());
                config.aws_timeouts = AWS_TEST_TIMEOUTS;
                slow_delay = AWS_TEST_TIMEOUTS.attempt + Duration::from_millis(300);
                // SQS delays are real time: retry at once instead of after a backoff.
                config.retry_policy = RetryPolicy {
                    backoff: Backoff { base: Duration::ZERO, cap: Duration::ZERO },
                    wait_step: Duration::from_millis(200),
                    ..RetryPolicy::default()
                };
                // Every request reads the signing secrets, so that their faults are met.
                if service == AwsService::SecretsManager {
                    config.secrets_max_age = Duration::ZERO;
                }
                Some(proxy)
            }
            Dependency::PagerDuty | Dependency::Salesforce => None,
        };
        let h = Harness::with(config).await;
        Cell { h, proxy, dependency, fault, faults: fault.config(seed, slow_delay), row: Row::default() }
    }

    fn inject(&self, on: bool) {
        let faults = if on { self.faults.clone() } else { FaultConfig::none() };
        // The first request meets the fault whatever the draws: no cell can pass untested.
        let first = on.then(|| self.fault.kind(faults.slow_delay));
        match self.dependency {
            Dependency::PagerDuty => {
                self.h.pd.set_faults(faults);
                first.into_iter().for_each(|kind| self.h.pd.fail_next(1, kind));
            }
            Dependency::Salesforce => {
                self.h.sf.set_faults(faults);
                first.into_iter().for_each(|kind| self.h.sf.fail_next(1, kind));
            }
            Dependency::Aws(service) => {
                let proxy = self.proxy.as_ref().expect("AWS cells have a proxy");
                proxy.set_faults(faults);
                first.into_iter().for_each(|kind| proxy.fail_next(1, kind));
                if service == AwsService::Sqs {
                    // The retry queue is only used when something fails: let the services fail too.
                    let background = if on {
                        FaultConfig { seed: self.faults.seed, server_error_rate: FAULT_RATE, ..FaultConfig::none() }
                    } else {
                        FaultConfig::none()
                    };
                    self.h.pd.set_faults(background.clone());
                    self.h.sf.set_faults(background);
                }
            }
        }
    }

    /// One delivery by the sender; true when it was answered 2xx.
    async fn deliver(&self, event: &Event) -> bool {
        let reply = match event {
            Event::Webhook { event_id, body, .. } => self.h.webhook(body, &format!("w-{event_id}")).await,
            Event::Post { payload, .. } => self.h.post_records(payload).await,
        };
        (200..300).contains(&reply.status)
    }

    /// Runs one phase: deliver under faults, drain under faults, remove the faults, redeliver what
    /// was refused, drain to empty.
    async fn phase(&mut self, events: &[Event]) {
        self.inject(true);
        let mut refused = Vec::new();
        for event in events {
            let mut accepted = false;
            for attempt in 0..SENDER_ATTEMPTS_DURING_FAULT {
                if attempt > 0 {
                    self.row.sender_retries += 1;
                }
                if self.deliver(event).await {
                    accepted = true;
                    break;
                }
            }
            if !accepted {
                refused.push(event.clone());
            }
        }
        // The fault lasts a few minutes: the retry function meets it too.
        let fault_ends = self.h.clock.now() + chrono::Duration::minutes(3);
        self.h.drain_retries_until(Some(fault_ends), 50).await;
        self.inject(false);
        for _ in 0..REDELIVERY_ROUNDS {
            if refused.is_empty() {
                break;
            }
            // Senders back off for minutes; leases of lost invocations run out meanwhile.
            self.h.clock.advance(chrono::Duration::minutes(2));
            let mut still = Vec::new();
            for event in refused {
                self.row.sender_retries += 1;
                if !self.deliver(&event).await {
                    still.push(event);
                }
            }
            refused = still;
        }
        assert!(refused.is_empty(), "{}: senders gave up on {refused:?}", self.dependency.name());
        for _ in 0..40 {
            if self.h.retry_depth().await == 0 {
                break;
            }
            self.h.clock.advance(chrono::Duration::seconds(61));
            self.h.drain_retries(500).await;
            // PagerDuty's rate-limit reset runs on real time in our client's limiter.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            self.h.retry_depth().await,
            0,
            "{}: the retry queue drains once the fault is gone",
            self.dependency.name()
        );
    }
}

fn case_id(cell: &str, i: usize) -> String {
    // 18 characters, Case key prefix 500.
    format!("500{cell}{i:0>width$}", width = 15 - cell.len())
}

fn modstamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn case_record(id: &str, status: &str, at: DateTime<Utc>) -> Value {
    json!({
        "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{id}")},
        "Id": id, "CaseNumber": &id[id.len() - 6..], "Subject": "Checkout fails", "Priority": "Sev1",
        "Status": status, "Origin": "Web", "Description": "Timeouts since 10:00",
        "Account": {"attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/0015g00000ACMEAAA"}, "Name": "Acme Corp"},
        "LastModifiedDate": modstamp(at), "SystemModstamp": modstamp(at),
    })
}

fn case_post(id: &str, operation: &str, new: Value, old: Option<Value>) -> Value {
    json!({
        "schema": 1, "org_id": ORG_ID, "object": "Case", "operation": operation,
        "user": {"id": "0055g00000AGENTAAA", "username": AGENT}, "sent_at": Utc::now().to_rfc3339(),
        "old": old.map(|o| json!({id: o})), "new": {id: new},
    })
}

fn change_key(id: &str, at: DateTime<Utc>) -> String {
    format!("sf:Case:{id}:{}", at.timestamp_millis())
}

/// Phase 1: incidents trigger (a Case each) and Sev1 Cases are opened (an incident each).
/// Phase 2: each incident is acknowledged, annotated or resolved; each Case is closed.
fn mixed_events(cell: &str, subjects: usize, t0: DateTime<Utc>) -> (Vec<Event>, Vec<Event>) {
    let t1 = t0 + chrono::Duration::minutes(1);
    let mut opening = Vec::new();
    let mut changing = Vec::new();
    for i in 0..subjects {
        let incident = format!("Q{cell}{i}");
        let event_id = format!("E{cell}{i}trigger");
        opening.push(Event::Webhook {
            body: delivery(&event_id, "incident.triggered", t0, incident_data(&incident, "triggered")),
            event_id,
            check: Check::CaseOpened { incident: incident.clone() },
        });
        let case = case_id(cell, i);
        opening.push(Event::Post {
            key: change_key(&case, t0),
            payload: case_post(&case, "insert", case_record(&case, "New", t0), None),
            check: Check::IncidentOpened { case: case.clone() },
        });
        let (event_type, data, check) = match i % 3 {
            0 => (
                "incident.acknowledged",
                incident_data(&incident, "acknowledged"),
                Check::CaseWorking { incident: incident.clone() },
            ),
            1 => {
                let content = format!("Rolled back the deploy ({incident})");
                let data = json!({"incident": {"id": incident, "type": "incident_reference",
                    "html_url": format!("https://demo.pagerduty.com/incidents/{incident}"), "summary": "Checkout down"},
                    "id": format!("N{incident}"), "content": content, "trimmed": false, "type": "incident_note"});
                ("incident.annotated", data, Check::CaseCommented { incident: incident.clone(), body: content })
            }
            _ => (
                "incident.resolved",
                incident_data(&incident, "resolved"),
                Check::CaseClosed { incident: incident.clone() },
            ),
        };
        let event_id = format!("E{cell}{i}{}", event_type.trim_start_matches("incident."));
        changing.push(Event::Webhook { body: delivery(&event_id, event_type, t1, data), event_id, check });
        changing.push(Event::Post {
            key: change_key(&case, t1),
            payload: case_post(&case, "update", case_record(&case, "Closed", t1), Some(case_record(&case, "New", t0))),
            check: Check::IncidentResolved { case },
        });
    }
    (opening, changing)
}

/// How many times the event's effect is visible (0: not applied; 1: applied; more: applied twice),
/// and whether it could not apply because what it acts on was never created.
fn applications(h: &Harness, check: &Check) -> (usize, bool) {
    let cases = h.sf.records("Case");
    let case_of = |incident: &str| {
        cases
            .iter()
            .filter(|c| c["Subject"].as_str().is_some_and(|s| s.contains(&format!("({incident})"))))
            .cloned()
            .collect::<Vec<_>>()
    };
    let comments = |case: &Value, text: &str| {
        h.sf.records("CaseComment")
            .iter()
            .filter(|c| c["ParentId"] == case["Id"] && c["CommentBody"].as_str().is_some_and(|b| b.contains(text)))
            .count()
    };
    let incidents_of = |case: &str| {
        h.pd.incidents()
            .into_iter()
            .filter(|i| i["incident_key"].as_str().is_some_and(|k| k.contains(&format!(":{case}:"))))
            .collect::<Vec<_>>()
    };
    match check {
        Check::CaseOpened { incident } => (case_of(incident).len(), false),
        Check::CaseWorking { incident } => match case_of(incident).first() {
            Some(case) => (usize::from(case["Status"] == "Working"), false),
            None => (0, true),
        },
        Check::CaseCommented { incident, body } => match case_of(incident).first() {
            Some(case) => (comments(case, body), false),
            None => (0, true),
        },
        Check::CaseClosed { incident } => match case_of(incident).first() {
            Some(case) if case["Status"] == "Closed" => (comments(case, "was resolved"), false),
            Some(_) => (0, false),
            None => (0, true),
        },
        Check::IncidentOpened { case } => (incidents_of(case).len(), false),
        Check::IncidentResolved { case } => match incidents_of(case).first() {
            Some(incident) => (usize::from(incident["status"] == "resolved"), false),
            None => (0, true),
        },
    }
}

async fn run_cell(dependency: Dependency, fault: Fault, seed: u64) -> Row {
    if std::env::var("MATRIX_LOG").is_ok() {
        adapters::telemetry::init_logging("info");
    }
    let mut cell = Cell::start(dependency, fault, seed).await;
    let subjects = if matches!(dependency, Dependency::Aws(_)) { AWS_SUBJECTS } else { SAAS_SUBJECTS };
    let tag = format!("{seed:03}");
    let (opening, changing) = mixed_events(&tag, subjects, cell.h.clock.now());
    cell.phase(&opening).await;
    cell.phase(&changing).await;

    let dead: HashMap<String, Envelope> = cell
        .h
        .dead_letter_bodies()
        .await
        .iter()
        .filter_map(|b| Envelope::from_json(b).ok())
        .map(|e| (e.accepted.event_id.clone(), e))
        .collect();
    let events: Vec<&Event> = opening.iter().chain(&changing).collect();
    let what = format!("{} x {}", dependency.name(), fault.name());
    let mut row = std::mem::take(&mut cell.row);
    row.events = events.len();
    for event in &events {
        let (times, moot) = applications(&cell.h, event.check());
        match (times, dead.get(event.id())) {
            (2.., _) => panic!("{what}: {} applied {times} times", event.id()),
            (1, None) => row.applied += 1,
            (0, Some(envelope)) => {
                let reason = envelope
                    .trip
                    .dead_letter_reason
                    .clone()
                    .or_else(|| envelope.trip.history.last().map(|f| f.reason.clone()));
                assert!(reason.is_some_and(|r| !r.is_empty()), "{what}: {} dead-lettered without a reason", event.id());
                row.dead_lettered += 1;
                println!(
                    "{what}: {} dead-lettered: {}",
                    event.id(),
                    envelope.trip.dead_letter_reason.as_deref().unwrap_or("redriven by SQS")
                );
            }
            (0, None) if moot => row.moot += 1,
            (0, None) => panic!("{what}: {} lost: neither applied nor in the DLQ", event.id()),
            (_, Some(envelope)) => {
                panic!("{what}: {} applied AND dead-lettered: {:?}", event.id(), envelope.trip.dead_letter_reason)
            }
        }
    }
    // Events whose target was dead-lettered have nothing to act on; that is the only excuse.
    assert!(row.moot == 0 || row.dead_lettered > 0, "{what}: {} events not applied", row.moot);
    if !matches!(dependency, Dependency::Aws(_)) {
        let mut applied: HashMap<String, usize> = HashMap::new();
        for entry in cell.h.store.audit_entries().iter().filter(|e| e.outcome == Outcome::Applied) {
            *applied.entry(entry.event_id.clone()).or_default() += 1;
        }
        let twice: HashSet<_> = applied.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id.clone()).collect();
        assert!(twice.is_empty(), "{what}: audited as applied twice: {twice:?}");
    }
    row.queued_retries = cell.h.retries_handled.load(Ordering::Relaxed);
    // The simulators do not count their faults; the proxy does.
    row.injected = cell.proxy.as_ref().map_or(0, FaultProxy::injected);
    assert!(
        row.injected > 0 || row.sender_retries > 0 || row.queued_retries > 0,
        "{what}: no fault was met, the cell tests nothing ({} requests to the service)",
        cell.proxy.as_ref().map_or(0, FaultProxy::requests)
    );
    row
}

async fn matrix(index: u64, dependency: Dependency, faults: &[Fault]) {
    let started = Instant::now();
    let mut table = format!(
        "{:<16} {:<13} {:>6} {:>8} {:>6} {:>5} {:>15} {:>15} {:>9}\n",
        "dependency", "fault", "events", "applied", "DLQ", "moot", "sender retries", "queued retries", "injected"
    );
    for &fault in faults {
        let f = FAULTS.iter().position(|x| *x == fault).expect("a fault of the matrix");
        let row = run_cell(dependency, fault, index * 10 + f as u64).await;
        table.push_str(&format!(
            "{:<16} {:<13} {:>6} {:>8} {:>6} {:>5} {:>15} {:>15} {:>9}\n",
            dependency.name(),
            fault.name(),
            row.events,
            row.applied,
            row.dead_lettered,
            row.moot,
            row.sender_retries,
            row.queued_retries,
            row.injected
        ));
    }
    println!("fault matrix, {} ({:.1} s):\n{table}", dependency.name(), started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn pagerduty_faults_lose_nothing_and_apply_nothing_twice() {
    matrix(1, Dependency::PagerDuty, &FAULTS).await;
}

#[tokio::test]
async fn salesforce_faults_lose_nothing_and_apply_nothing_twice() {
    matrix(2, Dependency::Salesforce, &FAULTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_faults_lose_nothing_and_apply_nothing_twice() {
    matrix(3, Dependency::Aws(AwsService::DynamoDb), &FAULTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_faults_lose_nothing_and_apply_nothing_twice() {
    // A timed-out SendMessage that SQS stored makes the live handler answer 503 and release the
    // event, so the sender delivers again while the stored envelope is also on its way: the
    // event's idempotency gate decides which one acts.
    matrix(4, Dependency::Aws(AwsService::Sqs), &FAULTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_faults_lose_nothing_and_apply_nothing_twice() {
    matrix(5, Dependency::Aws(AwsService::SecretsManager), &FAULTS).await;
}
