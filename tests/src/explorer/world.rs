//! The world a schedule runs in: both simulators, several instances of each function over one
//! in-memory store, the retry queue behind a fault injector, the people who work in PagerDuty and
//! Salesforce, and the senders (PagerDuty's webhooks, the Apex Queueable) with their deliveries.
//!
//! Time: the bridge's clock is the harness's manual clock. It runs with real time while
//! invocations run (so that a slow call brings an invocation nearer its deadline, and Lambda kills
//! it there), and jumps between steps (people pausing, senders backing off, messages becoming
//! visible). Every event carries the time of that clock when it happened: PagerDuty events to the
//! millisecond, Salesforce changes to the whole second, as a real org stamps `SystemModstamp`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};
use shared::clock::{Clock, ManualClock};
use shared::handler::context::Context;
use shared::handler::http::InboundRequest;
use shared::handler::{pd_to_sfdc, retry, sfdc_to_pd};
use shared::retry::breaker::BreakerPolicy;
use shared::retry::queue::{Queue, ReceivedMessage};
use tokio::task::JoinHandle;

use super::flaky_queue::{FlakyQueue, SendFaults};
use super::{Did, Timing};
use crate::faults::{FaultConfig, FaultKind};
use crate::harness::{Harness, HarnessConfig, INBOUND_SECRET, ORG_ID, WEBHOOK_SECRET};
use crate::pagerduty::{PdService, sign_v1};
use crate::salesforce::sign_trigger;
use shared::handler::settle::RetryPolicy;

/// The agent who works Cases in Salesforce.
pub const AGENT: &str = "agent@example.com";
/// The on-call responder who works incidents in PagerDuty, with their own API token.
pub const ONCALL_EMAIL: &str = "oncall@example.com";
const ONCALL_TOKEN: &str = "oncall-token";
/// The simulator's user ids of the bridge (`From: bridge@example.com`) and of on-call.
pub const BRIDGE_USER_ID: &str = "PUSR001";
pub const ONCALL_USER_ID: &str = "PUSR002";
/// The service people's incidents are on: the example rules open a Case for "Customer..." ones.
pub const SERVICE_ID: &str = "PSVC001";
pub const SERVICE_NAME: &str = "Customer Support";
/// Escalation policies an incident can be reassigned between (the simulator's defaults).
pub const POLICIES: [(&str, &str); 2] = [("PEP0001", "Checkout On Call"), ("PEP0002", "Billing On Call")];
/// PagerDuty cuts a long note's content in the webhook and says so (`trimmed: true`); the REST
/// API keeps it whole. The simulator cuts only past 55 KB of payload; the explorer cuts notes
/// longer than this many characters, so that a schedule of small notes meets trimmed ones.
pub const WEBHOOK_NOTE_LIMIT: usize = 500;
/// The Apex Queueable gives up on a post after this many attempts (`PdSyncCallout.MAX_ATTEMPTS`).
const APEX_MAX_ATTEMPTS: u32 = 5;
/// PagerDuty keeps redelivering a failed webhook for hours; the explorer stops counting here.
const PAGERDUTY_MAX_ATTEMPTS: u32 = 40;

/// Who made a change that a sender delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    People,
    Bridge,
}

/// What a delivery carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A Webhooks v3 delivery; every attempt has the same `X-Webhook-Id`.
    Webhook { body: String, webhook_id: String },
    /// An Apex trigger post: one trigger invocation's records, and the name the trigger gives
    /// each change (`change_ids`, fixed at trigger time); signed again on every attempt.
    Post {
        object: String,
        operation: String,
        username: String,
        olds: Option<Vec<Value>>,
        news: Vec<Value>,
        change_ids: Value,
    },
}

/// Where a delivery stands with its sender.
#[derive(Debug, Clone, PartialEq)]
pub enum SendState {
    /// To be sent (again) once the clock reaches `not_before`.
    Pending {
        not_before: DateTime<Utc>,
    },
    Delivered,
    /// The sender stopped: a 4xx PagerDuty does not retry, or the Queueable's last attempt.
    GaveUp(String),
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: usize,
    pub author: Author,
    pub payload: Payload,
    /// The incident or record(s) it is about, for choosing deliveries of one subject together.
    pub subject: String,
    pub label: String,
    pub attempts: u32,
    pub state: SendState,
}

impl Delivery {
    fn is_webhook(&self) -> bool {
        matches!(self.payload, Payload::Webhook { .. })
    }

    pub fn due(&self, now: DateTime<Utc>) -> bool {
        matches!(self.state, SendState::Pending { not_before } if not_before <= now)
    }
}

/// One invocation of a wave.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// A sender's attempt at a delivery, on one instance of its function.
    Deliver { delivery: usize, instance: usize },
    /// A redelivery of something already delivered (PagerDuty delivers at least once; an Apex
    /// callout whose 2xx was lost in transit is retried), on one instance.
    Duplicate { delivery: usize, instance: usize },
    /// The SQS event source hands these messages to one retry instance; `keep` are not deleted
    /// even if handled (a lost delete: SQS delivers them again after the visibility timeout).
    Retry { messages: Vec<ReceivedMessage>, instance: usize, keep: bool },
}

/// The fault rates of one schedule, applied during its waves (never to people's own clicks).
#[derive(Debug, Clone, Default)]
pub struct FaultProfile {
    pub pagerduty: FaultConfig,
    pub salesforce: FaultConfig,
    pub queue: SendFaults,
    /// Chance that a wave starts with a burst of one fault kind on one service (`fail_next`).
    pub burst: f64,
    /// "The sender gave up": chance that a person's acknowledge or resolve webhook, Case update
    /// post or Case Comment post is never delivered (PagerDuty dropped it, or disabled the
    /// subscription; the Queueable's attempts ran out while the bridge was down). Reconciliation
    /// must repair what it prescribes, or report it (see the oracle).
    pub give_up: f64,
}

impl FaultProfile {
    /// Draws a profile: some schedules are calm, most have a little of everything, some a lot.
    pub fn draw(rng: &mut StdRng, timing: &Timing, give_up: bool) -> Self {
        let level = match rng.random_range(0..10u32) {
            0 => 0.0,
            1..=6 => 0.05,
            _ => 0.12,
        };
        let slow_delay = timing.slow_delay(rng);
        let mut rate = |scale: f64| if rng.random_bool(0.7) { level * scale * rng.random_range(0.5..1.5) } else { 0.0 };
        let pagerduty = FaultConfig {
            seed: 0,
            server_error_rate: rate(1.0),
            rate_limited_rate: rate(0.3),
            lock_row_rate: 0.0,
            slow_rate: rate(0.3),
            slow_delay,
            drop_rate: rate(0.5),
            lose_answer_rate: rate(1.0),
        };
        let salesforce = FaultConfig {
            seed: 0,
            server_error_rate: rate(1.0),
            rate_limited_rate: rate(0.2),
            lock_row_rate: rate(0.5),
            slow_rate: rate(0.3),
            slow_delay,
            drop_rate: rate(0.5),
            lose_answer_rate: rate(1.0),
        };
        let queue = SendFaults { stored_then_error: rate(1.0), refused: rate(0.5) };
        let burst = if level > 0.0 { 0.1 } else { 0.0 };
        // Drawn either way, so that a seed's other faults are the same with it on or off.
        let (half, rate) = (rng.random_bool(0.5), rng.random_range(0.15..0.4));
        let give_up = if half && give_up { rate } else { 0.0 };
        Self { pagerduty, salesforce, queue, burst, give_up }
    }

    pub fn describe(&self) -> String {
        let f = |c: &FaultConfig| {
            format!(
                "5xx {:.0}% 429 {:.0}% lock {:.0}% slow {:.0}% ({} ms) drop {:.0}% lose-answer {:.0}%",
                c.server_error_rate * 100.0,
                c.rate_limited_rate * 100.0,
                c.lock_row_rate * 100.0,
                c.slow_rate * 100.0,
                c.slow_delay.as_millis(),
                c.drop_rate * 100.0,
                c.lose_answer_rate * 100.0
            )
        };
        format!(
            "PagerDuty: {}; Salesforce: {}; retry-queue sends stored-then-error {:.0}% refused {:.0}%; bursts {:.0}% of waves; senders give up on {:.0}% of people's changes",
            f(&self.pagerduty),
            f(&self.salesforce),
            self.queue.stored_then_error * 100.0,
            self.queue.refused * 100.0,
            self.burst * 100.0,
            self.give_up * 100.0
        )
    }
}

/// Why a delivery of the "sender gave up" fault never came.
pub const GAVE_UP: &str = "the sender gave up before the bridge answered (fault)";

/// The deliveries the "sender gave up" fault drops: changes whose effects reconciliation can
/// see missing (a status, a Case's fields, a note, a comment it reports), not the ones that open
/// a subject (a trigger, a Case insert) nor reassignments, which it does not compare.
fn can_give_up(payload: &Payload) -> bool {
    match payload {
        Payload::Webhook { body, .. } => {
            let event: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            matches!(
                event["event"]["event_type"].as_str(),
                Some("incident.acknowledged" | "incident.resolved" | "incident.annotated")
            )
        }
        Payload::Post { object, operation, .. } => {
            (object == "Case" && operation == "update") || (object == "CaseComment" && operation == "insert")
        }
    }
}

/// One invocation of a wave, done: the line for the schedule, and for a sender's attempt the
/// delivery and what the sender saw.
type Attempted = (String, Option<(usize, Answer)>);

/// What a sender saw of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// The HTTP status and what the function said it did (`applied`, `queued`, `duplicate`...).
    Status(u16, String),
    /// No answer within the sender's wait (the invocation may still be running).
    TimedOut,
    /// Lambda killed the invocation at its timeout: API Gateway answers 503.
    Killed,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Status(s, word) if word.is_empty() => write!(f, "{s}"),
            Answer::Status(s, word) => write!(f, "{s} {word}"),
            Answer::TimedOut => write!(f, "no answer in time"),
            Answer::Killed => write!(f, "killed at the function timeout"),
        }
    }
}

pub struct World {
    pub h: Harness,
    pub timing: Timing,
    /// Instances of pd-to-sfdc, sfdc-to-pd and retry, each with its own clients and caches.
    pub pd_to_sfdc: Vec<Context>,
    pub sfdc_to_pd: Vec<Context>,
    pub retry: Vec<Context>,
    pub queue: Arc<FlakyQueue>,
    pub faults: FaultProfile,
    pub deliveries: Vec<Delivery>,
    /// What people did, in order, with when (the oracle's input).
    pub did: Vec<Did>,
    /// The readable schedule: every step and what came of it.
    pub log: Vec<String>,
    pub rng: StdRng,
    seed: u64,
    waves: u64,
    http: reqwest::Client,
    seen_pd_events: usize,
    seen_sf_changes: usize,
    /// Each record's last change stamp (the `old` map of its next change carries it).
    stamps: HashMap<String, String>,
    /// Case numbers of Cases people opened, by id (for readable labels).
    pub case_numbers: HashMap<String, String>,
    /// The reconcile runs of the settle phase (the oracle reads what they reported).
    pub reconciled: Vec<shared::reconcile::Report>,
    /// Senders' attempts the function answered with an event applied there and then (the live
    /// path acted, not only queued).
    pub live_applied: usize,
}

/// `2026-11-22T10:00:00.000+0000`, as Apex serialises a datetime: whole seconds in a real org.
pub fn sf_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.000+0000").to_string()
}

/// A Case's external id (the upsert key).
pub fn external_id_of(case: &Value) -> String {
    case[shared::rules::DEFAULT_EXTERNAL_ID_FIELD].as_str().unwrap_or_default().to_string()
}

fn pd_stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

/// Where the bridge's clock starts for `seed`: half past the current hour (the day and hour do
/// not matter to a schedule), at `start_ms` into its second, by default a millisecond drawn from
/// the seed apart from the schedule's own draws (so adding it changed no seed's schedule). The
/// schedule's acts are milliseconds apart: the draw moves the whole-second boundaries among
/// them, seed by seed (two acts in one second or two is what PagerDuty's and Salesforce's
/// whole-second stamps can or cannot order). A replay meets the same boundaries; the order in
/// which concurrent tasks draw their faults still differs from run to run.
pub fn clock_start(seed: u64, start_ms: Option<u32>, now: DateTime<Utc>) -> DateTime<Utc> {
    let ms = start_ms.map_or_else(|| StdRng::seed_from_u64(seed ^ 0xc10c_c10c).random_range(0..1000), |ms| ms % 1000);
    let hour = now.date_naive().and_hms_opt(now.hour(), 30, 0).expect("half past the hour").and_utc();
    hour + chrono::Duration::milliseconds(i64::from(ms))
}

impl World {
    pub async fn start(seed: u64, rules_yaml: &str, knobs: &super::Knobs) -> Self {
        let (timing, instances) = (knobs.timing, knobs.instances);
        let mut rng = StdRng::seed_from_u64(seed);
        let faults = FaultProfile::draw(&mut rng, &timing, knobs.give_up);
        let mut config = HarnessConfig::new(rules_yaml);
        let start = clock_start(seed, knobs.start_ms, Utc::now());
        config.clock_start = Some(start);
        // Hours pass in milliseconds here: both systems stamp with the bridge's clock, so that a
        // reconcile run compares their stamps with its own marks and windows.
        config.simulators_on_bridge_clock = true;
        config.salesforce.org_id = ORG_ID.into();
        config.pagerduty.tokens.push(ONCALL_TOKEN.into());
        config.pagerduty.services = vec![PdService {
            id: SERVICE_ID.into(),
            name: SERVICE_NAME.into(),
            escalation_policy_id: POLICIES[0].0.into(),
        }];
        // A 429's reset, which the PagerDuty client waits out in real time: short.
        config.pagerduty.rate_limit.window = Duration::from_secs(1);
        config.http_timeout = timing.http_timeout;
        config.min_time_left = timing.min_time_left;
        config.settle_margin = timing.settle_margin;
        // Production's breaker, cached per instance as in production.
        config.breaker_policy = BreakerPolicy::default();
        // The schedules fault up to a third of all calls, far above production: with the
        // production 8 attempts one event in about 60,000 fails every one of them (seed 1738 of
        // the soak: 26% 5xx and locks on one Salesforce read, eight times), and that correct dead
        // letter is not what the explorer looks for. Twenty attempts make it about 1 in 10^12.
        config.retry_policy = RetryPolicy { max_attempts: 20, ..RetryPolicy::default() };
        let h = Harness::with(config).await;
        let queue = Arc::new(FlakyQueue::new(h.retry_queue.clone(), seed ^ 0x5eed));
        let instance = |_| h.instance_with_retry_queue(queue.clone() as Arc<dyn Queue>);
        let pd_to_sfdc = (0..instances).map(instance).collect();
        let sfdc_to_pd = (0..instances).map(instance).collect();
        let retry = (0..instances).map(instance).collect();
        let log = vec![
            format!("faults: {}", faults.describe()),
            format!(
                "clock starts at {} (replay: EXPLORER_SEED={seed} EXPLORER_START_MS={})",
                start.format("%H:%M:%S%.3f"),
                start.timestamp_subsec_millis()
            ),
        ];
        Self {
            h,
            timing,
            pd_to_sfdc,
            sfdc_to_pd,
            retry,
            queue,
            faults,
            deliveries: Vec::new(),
            did: Vec::new(),
            log,
            rng,
            seed,
            waves: 0,
            http: reqwest::Client::new(),
            seen_pd_events: 0,
            seen_sf_changes: 0,
            stamps: HashMap::new(),
            case_numbers: HashMap::new(),
            reconciled: Vec::new(),
            live_applied: 0,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.h.clock.now()
    }

    pub fn clock(&self) -> Arc<ManualClock> {
        self.h.clock.clone()
    }

    /// Time passes (a person pausing, a sender backing off).
    pub fn advance(&self, by: chrono::Duration) {
        self.h.clock.advance(by);
    }

    pub fn note(&mut self, line: String) {
        self.log.push(line);
    }

    // ---- people in PagerDuty: clicks through the REST API as on-call ----

    async fn oncall(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, String> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.h.pd.base_url()))
            .header("Authorization", format!("Token token={ONCALL_TOKEN}"))
            .header("Accept", "application/vnd.pagerduty+json;version=2")
            .header("From", ONCALL_EMAIL)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() { Ok(answer) } else { Err(format!("{status}: {answer}")) }
    }

    /// On-call triggers an incident; returns its id.
    pub async fn trigger(&mut self, title: &str) -> Option<String> {
        let body = json!({"incident": {"type": "incident", "title": title, "urgency": "low",
            "service": {"id": SERVICE_ID, "type": "service_reference"}}});
        let at = self.now();
        match self.oncall(reqwest::Method::POST, "/incidents", body).await {
            Ok(answer) => {
                let id = answer["incident"]["id"].as_str()?.to_string();
                self.did.push(Did::Triggered { incident: id.clone(), at });
                self.harvest_pagerduty(at);
                Some(id)
            }
            Err(e) => {
                self.note(format!("    on-call could not trigger: {e}"));
                None
            }
        }
    }

    /// On-call changes the incident (`status`, `escalation_policy` ...); false when PagerDuty refused.
    pub async fn update_incident(&mut self, incident: &str, change: Value, did: Did) -> bool {
        let mut body = json!({"incident": {"type": "incident_reference"}});
        for (k, v) in change.as_object().into_iter().flatten() {
            body["incident"][k] = v.clone();
        }
        let at = self.now();
        match self.oncall(reqwest::Method::PUT, &format!("/incidents/{incident}"), body).await {
            Ok(_) => {
                self.did.push(did.at(at));
                self.harvest_pagerduty(at);
                true
            }
            Err(e) => {
                self.note(format!("    PagerDuty refused: {e}"));
                false
            }
        }
    }

    pub async fn add_note(&mut self, incident: &str, content: &str) -> bool {
        let at = self.now();
        let body = json!({"note": {"content": content}});
        match self.oncall(reqwest::Method::POST, &format!("/incidents/{incident}/notes"), body).await {
            Ok(_) => {
                self.did.push(Did::Noted { incident: incident.into(), content: content.into(), at });
                self.harvest_pagerduty(at);
                true
            }
            Err(e) => {
                self.note(format!("    PagerDuty refused the note: {e}"));
                false
            }
        }
    }

    pub fn incident(&self, id: &str) -> Option<Value> {
        self.h.pd.incident(id)
    }

    // ---- people in Salesforce: the agent's changes, posted by the Apex trigger ----

    /// The stamp of a change made now (whole seconds).
    fn sf_now(&self) -> String {
        sf_stamp(self.now())
    }

    /// The agent opens a Case; returns its id.
    pub fn open_case(&mut self, subject: &str, priority: &str) -> String {
        let id = self.h.sf.insert_record_as(
            "Case",
            json!({"Subject": subject, "Priority": priority, "Status": "New", "Origin": "Web",
                "Description": "Customer reports it"}),
            AGENT,
        );
        let at = self.now();
        let record = self.agent_record("Case", &id);
        self.case_numbers.insert(id.clone(), record["CaseNumber"].as_str().unwrap_or_default().to_string());
        self.did.push(Did::OpenedCase { case: id.clone(), sev1: priority == "Sev1", at });
        self.post_people("Case", "insert", None, vec![record], &format!("Case {id} opened ({priority})"));
        id
    }

    /// The agent comments on a Case; returns the comment's id.
    pub fn comment(&mut self, case: &str, body: &str) -> String {
        let id = self.h.sf.insert_record_as(
            "CaseComment",
            json!({"ParentId": case, "CommentBody": body, "IsPublished": false}),
            AGENT,
        );
        let at = self.now();
        let record = self.agent_record("CaseComment", &id);
        self.did.push(Did::Commented { case: case.into(), comment: id.clone(), body: body.into(), at });
        self.post_people("CaseComment", "insert", None, vec![record], &format!("comment {id} on Case {case}"));
        id
    }

    /// A record as the agent's insert left it, as the trigger sees it: to the whole second.
    fn agent_record(&mut self, object: &str, id: &str) -> Value {
        let mut record = self.h.sf.record(object, id).expect("just inserted");
        let agent = self.h.sf.user_id(AGENT);
        let stamp = self.sf_now();
        for field in ["CreatedById", "LastModifiedById"] {
            record[field] = json!(agent);
        }
        for field in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            record[field] = json!(stamp);
        }
        self.stamps.insert(id.to_string(), stamp);
        record
    }

    /// The agent changes Cases in one transaction (one trigger invocation, one post: a bulk
    /// update when there are several). `changes`: (Case id, fields, what people did).
    pub fn update_cases(&mut self, changes: Vec<(String, Value, Did)>) {
        let stamp = self.sf_now();
        let at = self.now();
        let mut olds = Vec::new();
        let mut news = Vec::new();
        let mut what = Vec::new();
        for (id, fields, did) in changes {
            let Some((mut old, mut new)) = self.h.sf.update_record("Case", &id, fields.clone(), AGENT) else {
                continue;
            };
            let before = self.stamps.get(&id).cloned().unwrap_or_else(|| stamp.clone());
            for field in ["LastModifiedDate", "SystemModstamp"] {
                old[field] = json!(before);
                new[field] = json!(stamp);
            }
            self.stamps.insert(id.clone(), stamp.clone());
            self.did.push(did.at(at));
            what.push(format!("Case {id} {fields}"));
            olds.push(old);
            news.push(new);
        }
        if news.is_empty() {
            return;
        }
        // The agent's changes are posted by this trigger invocation, not harvested.
        self.seen_sf_changes = self.seen_sf_changes.max(self.h.sf.change_count());
        self.post_people("Case", "update", Some(olds), news, &what.join(" + "));
    }

    fn post_people(&mut self, object: &str, operation: &str, olds: Option<Vec<Value>>, news: Vec<Value>, label: &str) {
        let subject = news.iter().filter_map(|r| r["ParentId"].as_str().or(r["Id"].as_str())).collect::<Vec<_>>();
        let subject = subject.join("+");
        let payload = Payload::Post {
            object: object.into(),
            operation: operation.into(),
            username: AGENT.into(),
            change_ids: change_ids(olds.as_deref(), &news),
            olds,
            news,
        };
        let stamp = self.sf_now();
        let id = self.add_delivery(Author::People, payload, subject, format!("post: {label} @{}", &stamp[11..19]));
        self.note(format!("    -> delivery #{id} (Apex post)"));
    }

    fn add_delivery(&mut self, author: Author, payload: Payload, subject: String, label: String) -> usize {
        let id = self.deliveries.len();
        let state = if author == Author::People && can_give_up(&payload) && self.rng.random_bool(self.faults.give_up) {
            SendState::GaveUp(GAVE_UP.into())
        } else {
            SendState::Pending { not_before: self.now() }
        };
        self.deliveries.push(Delivery { id, author, payload, subject, label, attempts: 0, state });
        id
    }

    // ---- what the simulators would send: people's changes and the bridge's own writes ----

    /// Takes the webhooks PagerDuty emitted since the last look, stamped from `at` on (a
    /// millisecond apart), trimmed as PagerDuty trims long notes, into deliveries.
    fn harvest_pagerduty(&mut self, from: DateTime<Utc>) {
        let events = self.h.pd.webhook_events();
        let mut stamp = from;
        for mut envelope in events.into_iter().skip(self.seen_pd_events) {
            self.seen_pd_events += 1;
            let event = &mut envelope["event"];
            event["occurred_at"] = json!(pd_stamp(stamp));
            let at = stamp;
            stamp += ms(1);
            if event["event_type"] == "incident.annotated"
                && let Some(content) = event["data"]["content"].as_str()
                && content.chars().count() > WEBHOOK_NOTE_LIMIT
            {
                let cut: String = content.chars().take(WEBHOOK_NOTE_LIMIT).collect();
                event["data"]["content"] = json!(cut);
                event["data"]["trimmed"] = json!(true);
            }
            let author = if event["agent"]["id"] == BRIDGE_USER_ID { Author::Bridge } else { Author::People };
            let event_type = event["event_type"].as_str().unwrap_or_default().to_string();
            let incident = event["data"]["incident"]["id"]
                .as_str()
                .or(event["data"]["id"].as_str())
                .unwrap_or_default()
                .to_string();
            let who = if author == Author::Bridge { "bridge" } else { "on-call" };
            let event_id = event["id"].as_str().unwrap_or_default().to_string();
            let label =
                format!("webhook: {event_type} {incident} by {who} [{event_id} @{}]", at.format("%H:%M:%S%.3f"));
            let payload = Payload::Webhook { body: envelope.to_string(), webhook_id: uuid::Uuid::new_v4().to_string() };
            let id = self.add_delivery(author, payload, incident, label.clone());
            self.note(format!("    -> delivery #{id} ({label})"));
        }
        // Later events are later: the clock moves past the stamps given out.
        if stamp > self.now() {
            self.h.clock.set(stamp);
        }
    }

    /// The record changes the bridge made in Salesforce never come back: the shipped Apex trigger
    /// skips the integration user's changes (and the Outbound Message set-up filters them), so
    /// the bridge must link and know what it wrote without them. Change Data Capture, which does
    /// send them, is an org's input instead of the trigger, modelled in `tests/integration/cdc.rs`.
    fn harvest_salesforce(&mut self) {
        self.seen_sf_changes = self.h.sf.change_count();
    }

    /// Collects the bridge's own writes coming back (after a wave, before people act).
    pub fn harvest(&mut self) {
        let now = self.now();
        self.harvest_pagerduty(now);
        self.harvest_salesforce();
    }

    // ---- senders and the functions ----

    pub fn pending(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries.iter().filter(|d| matches!(d.state, SendState::Pending { .. }))
    }

    pub fn due(&self) -> Vec<usize> {
        let now = self.now();
        self.deliveries.iter().filter(|d| d.due(now)).map(|d| d.id).collect()
    }

    pub fn delivered(&self) -> Vec<usize> {
        self.deliveries.iter().filter(|d| d.state == SendState::Delivered).map(|d| d.id).collect()
    }

    /// The earliest time a pending delivery may be sent.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.pending()
            .filter_map(|d| match d.state {
                SendState::Pending { not_before } => Some(not_before),
                _ => None,
            })
            .min()
    }

    /// An instance of the function that takes `delivery`.
    pub fn instance_for(&mut self, delivery: usize) -> usize {
        let n = if self.deliveries[delivery].is_webhook() { self.pd_to_sfdc.len() } else { self.sfdc_to_pd.len() };
        self.rng.random_range(0..n)
    }

    pub fn retry_instance(&mut self) -> usize {
        self.rng.random_range(0..self.retry.len())
    }

    fn request(&self, delivery: &Delivery, wait: Duration) -> (InboundRequest, bool) {
        let now = self.now();
        let deadline = Some(now + chrono::Duration::from_std(wait).expect("short"));
        let correlation_id = uuid::Uuid::new_v4().to_string();
        match &delivery.payload {
            Payload::Webhook { body, webhook_id } => {
                let headers = vec![
                    ("content-type".into(), "application/json".into()),
                    ("user-agent".into(), "PagerDuty-Webhook/V3.0".into()),
                    ("x-pagerduty-signature".into(), sign_v1(WEBHOOK_SECRET, body.as_bytes())),
                    ("x-webhook-id".into(), webhook_id.clone()),
                    ("x-webhook-subscription".into(), "PSUBEXPLORER".into()),
                ];
                (
                    InboundRequest {
                        correlation_id,
                        deadline,
                        ..InboundRequest::post(pd_to_sfdc::WEBHOOK_ROUTE, headers, body.clone())
                    },
                    true,
                )
            }
            Payload::Post { object, operation, username, olds, news, change_ids } => {
                let to_map = |records: &[Value]| {
                    let map: Map<String, Value> =
                        records.iter().map(|r| (r["Id"].as_str().unwrap_or_default().to_string(), r.clone())).collect();
                    Value::Object(map)
                };
                // Apex builds the body and signs it again on every attempt.
                let body = json!({
                    "schema": 1, "org_id": ORG_ID, "object": object, "operation": operation,
                    "user": {"id": self.h.sf.user_id(username), "username": username},
                    "sent_at": now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                    "old": olds.as_deref().map(to_map).unwrap_or(Value::Null),
                    "new": to_map(news),
                    "change_ids": change_ids,
                })
                .to_string();
                let ts = now.timestamp();
                let headers = vec![
                    ("content-type".into(), "application/json".into()),
                    ("x-pdsync-timestamp".into(), ts.to_string()),
                    ("x-pdsync-signature".into(), sign_trigger(INBOUND_SECRET, ts, body.as_bytes())),
                ];
                (
                    InboundRequest {
                        correlation_id,
                        deadline,
                        ..InboundRequest::post(sfdc_to_pd::RECORDS_ROUTE, headers, body)
                    },
                    false,
                )
            }
        }
    }

    /// Applies the schedule's fault rates to the simulators and the queue for one wave, with a
    /// seed of its own; sometimes a burst of one kind comes first.
    fn faults_on(&mut self) {
        self.waves += 1;
        let seed = self.seed.wrapping_mul(1_000_003).wrapping_add(self.waves);
        self.h.pd.set_faults(FaultConfig { seed, ..self.faults.pagerduty.clone() });
        self.h.sf.set_faults(FaultConfig { seed: seed ^ 1, ..self.faults.salesforce.clone() });
        self.queue.set(self.faults.queue);
        if self.faults.burst > 0.0 && self.rng.random_bool(self.faults.burst) {
            let slow = self.timing.slow_delay(&mut self.rng);
            let kinds = [
                FaultKind::ServerError,
                FaultKind::LoseAnswer,
                FaultKind::Drop,
                FaultKind::Slow(slow),
                FaultKind::RateLimited,
            ];
            let kind = kinds[self.rng.random_range(0..kinds.len())];
            let n = self.rng.random_range(1..=4);
            let on_pagerduty = self.rng.random_bool(0.5);
            if on_pagerduty {
                self.h.pd.fail_next(n, kind);
            } else {
                self.h.sf.fail_next(n, kind);
            }
            let service = if on_pagerduty { "PagerDuty" } else { "Salesforce" };
            self.note(format!("    burst: the next {n} {service} calls get {kind:?}"));
        }
    }

    /// No faults: people click, and the last rounds of a schedule settle.
    pub fn faults_off(&self) {
        self.h.pd.set_faults(FaultConfig::none());
        self.h.sf.set_faults(FaultConfig::none());
        self.h.pd.clear_queued_faults();
        self.h.sf.clear_queued_faults();
        self.queue.set(SendFaults::default());
    }

    /// Runs `invocations` at the same time, as Lambda instances would, each after a small random
    /// delay, while the clock runs with real time; then settles what the senders do next and
    /// collects the echoes. `faults`: apply the schedule's fault rates during the wave.
    pub async fn wave(&mut self, invocations: Vec<Invocation>, faults: bool) {
        if faults {
            self.faults_on();
        }
        let clock = self.clock();
        let ticker = tokio::spawn(run_clock(clock.clone()));
        let mut tasks: Vec<JoinHandle<Attempted>> = Vec::new();
        let mut lingering: Vec<JoinHandle<()>> = Vec::new();
        let mut lines = Vec::new();
        for invocation in invocations {
            let delay = Duration::from_micros(self.rng.random_range(0..3000));
            match invocation {
                Invocation::Deliver { delivery, instance } | Invocation::Duplicate { delivery, instance } => {
                    let duplicate = !matches!(invocation, Invocation::Deliver { .. });
                    let d = &self.deliveries[delivery];
                    let (request, webhook) = self.request(d, self.timing.function_timeout);
                    let ctx =
                        if webhook { self.pd_to_sfdc[instance].clone() } else { self.sfdc_to_pd[instance].clone() };
                    let sender_wait = if webhook { self.timing.pagerduty_waits } else { self.timing.apex_waits };
                    let function_timeout = self.timing.function_timeout;
                    let what = format!(
                        "{} #{delivery} on {}-{instance}",
                        if duplicate { "duplicate of" } else { "deliver" },
                        if webhook { "pd-to-sfdc" } else { "sfdc-to-pd" }
                    );
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    lingering.push(tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let work = async {
                            if webhook {
                                pd_to_sfdc::handle(&ctx, request).await
                            } else {
                                sfdc_to_pd::handle(&ctx, request).await
                            }
                        };
                        let answer = match tokio::time::timeout(function_timeout, work).await {
                            Ok(reply) => Answer::Status(reply.status, outcome_words(&reply.body)),
                            Err(_) => Answer::Killed,
                        };
                        let _ = tx.send(answer);
                    }));
                    tasks.push(tokio::spawn(async move {
                        // The sender stops waiting after its own timeout; the invocation goes on.
                        let answer = match tokio::time::timeout(sender_wait + delay, rx).await {
                            Ok(Ok(answer)) => answer,
                            Ok(Err(_)) => Answer::Killed,
                            Err(_) => Answer::TimedOut,
                        };
                        let line = format!("{what} -> {answer}");
                        (line, (!duplicate).then_some((delivery, answer)))
                    }));
                }
                Invocation::Retry { messages, instance, keep } => {
                    let ctx = self.retry[instance].clone();
                    let queue = self.h.retry_queue.clone();
                    let timeout = self.timing.retry_timeout;
                    let deadline = Some(self.now() + chrono::Duration::from_std(timeout).expect("short"));
                    tasks.push(tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let batch: Vec<retry::Message> = messages
                            .iter()
                            .map(|m| retry::Message {
                                message_id: m.message_id.clone(),
                                body: m.body.clone(),
                                receive_count: m.receive_count,
                            })
                            .collect();
                        let n = batch.len();
                        let line = match tokio::time::timeout(timeout, retry::handle_batch(&ctx, batch, deadline)).await
                        {
                            Ok(failed) => {
                                if !keep {
                                    for m in messages.iter().filter(|m| !failed.contains(&m.message_id)) {
                                        let _ = queue.delete(&m.receipt_handle).await;
                                    }
                                }
                                format!(
                                    "retry-{instance} handled {n} message(s), {} failed{}",
                                    failed.len(),
                                    if keep { ", deletes lost" } else { "" }
                                )
                            }
                            Err(_) => format!("retry-{instance} killed at its timeout with {n} message(s)"),
                        };
                        (line, None)
                    }));
                }
            }
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            let (line, counted) = task.await.expect("explorer task");
            lines.push(line);
            outcomes.extend(counted);
        }
        for task in lingering {
            task.await.expect("invocation task");
        }
        ticker.abort();
        if faults {
            self.faults_off();
        }
        for line in lines {
            self.note(format!("    {line}"));
        }
        for (delivery, answer) in outcomes {
            self.after_attempt(delivery, answer);
        }
        self.harvest();
    }

    /// What the sender does after an attempt: PagerDuty redelivers after a 5xx, 429 or timeout
    /// and drops on other 4xx; the Apex Queueable retries 401, 408, 429, 5xx and callout errors,
    /// up to 5 attempts, 2, 4, 6, 8 minutes apart.
    fn after_attempt(&mut self, delivery: usize, answer: Answer) {
        let now = self.now();
        let jitter = self.rng.random_range(0..1000);
        let d = &mut self.deliveries[delivery];
        d.attempts += 1;
        let retryable = match answer {
            Answer::Status(s, ref words) if (200..300).contains(&s) => {
                d.state = SendState::Delivered;
                self.live_applied += usize::from(words.contains("applied"));
                return;
            }
            Answer::Status(s, _) if d.is_webhook() => s == 429 || s >= 500,
            Answer::Status(s, _) => s == 401 || s == 408 || s == 429 || s >= 500,
            Answer::TimedOut | Answer::Killed => true,
        };
        let (max, wait) = if d.is_webhook() {
            (PAGERDUTY_MAX_ATTEMPTS, ms(5_000 * i64::from(d.attempts.min(12)) + jitter))
        } else {
            (APEX_MAX_ATTEMPTS, chrono::Duration::minutes(2 * i64::from(d.attempts)) + ms(jitter))
        };
        d.state = if !retryable {
            SendState::GaveUp(format!("answered {answer}: not retried"))
        } else if d.attempts >= max {
            SendState::GaveUp(format!("still failing after {} attempts (last: {answer})", d.attempts))
        } else {
            SendState::Pending { not_before: now + wait }
        };
    }

    /// What has happened so far, to tell a round that changed something from one that did not:
    /// deliveries made and finished, events settled other than by queueing, dead letters,
    /// messages queued.
    pub fn progress(&self) -> (usize, usize, usize, usize, usize) {
        let finished = self.deliveries.iter().filter(|d| !matches!(d.state, SendState::Pending { .. })).count();
        let settled =
            self.h.store.audit_entries().iter().filter(|e| e.outcome != shared::model::Outcome::Queued).count();
        (self.deliveries.len(), finished, settled, self.h.dlq.len(), self.h.retry_queue.len())
    }

    /// Takes up to 10 visible messages off the retry queue, as the SQS event source does.
    pub async fn receive(&self) -> Vec<ReceivedMessage> {
        self.h.retry_queue.receive(10, Duration::ZERO).await.expect("memory queue")
    }

    /// The DLQ's bodies.
    pub fn dead_letters(&self) -> Vec<String> {
        self.h.dlq.bodies()
    }
}

/// `change_ids` as `PdSyncTriggerHandler` names one transaction's changes: each record's hash of
/// the transaction's request id, its Id and its old values.
fn change_ids(olds: Option<&[Value]>, news: &[Value]) -> Value {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let ids: Map<String, Value> = news
        .iter()
        .filter_map(|r| r["Id"].as_str())
        .map(|id| {
            let old = olds.into_iter().flatten().find(|o| o["Id"] == id).cloned().unwrap_or(Value::Null);
            (id.to_string(), json!(crate::salesforce::emit::change_id(&request_id, id, &old)))
        })
        .collect();
    Value::Object(ids)
}

/// What a reply says was done: a webhook's `status`; the non-zero counts of a post's summary.
fn outcome_words(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else { return String::new() };
    if let Some(status) = v["status"].as_str() {
        return status.to_string();
    }
    let counts: Vec<String> = ["applied", "skipped", "duplicate", "stale", "queued", "dead_lettered"]
        .iter()
        .filter_map(|k| v[*k].as_u64().filter(|n| *n > 0).map(|n| format!("{k} {n}")))
        .collect();
    let mut words = counts.join(", ");
    if v["not_accepted"].as_array().is_some_and(|a| !a.is_empty()) {
        words.push_str(&format!(" not accepted {}", v["not_accepted"]));
    }
    words
}

/// The clock runs with real time while a wave runs.
async fn run_clock(clock: Arc<ManualClock>) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = tokio::time::Instant::now();
        clock.advance(chrono::Duration::from_std(now - last).unwrap_or_default());
        last = now;
    }
}
