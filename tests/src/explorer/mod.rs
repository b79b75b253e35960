//! The schedule explorer of issue 15: a seeded, randomized search for counter-examples to
//! "exactly once, in order, never lost, never echoed".
//!
//! One schedule: a few incidents opened by on-call in PagerDuty and a few Cases opened by an agent
//! in Salesforce, each followed through what people do to it (acknowledge, reassign, note,
//! comment, escalate, de-escalate, edit, close, resolve; some Case changes in bulk, some twice in
//! one second). Everything people do, and everything the bridge writes, comes back as the
//! senders' deliveries (webhooks with their agent, trigger posts with their user), which the
//! schedule delivers in any order, several at once to several instances of each function, again
//! after a failure, twice, while the retry function drains the queue on instances of its own;
//! meanwhile PagerDuty and Salesforce fail in every way the simulators know (5xx, 429, row locks,
//! slow calls near the deadline, dropped connections, work done and the answer lost) and the
//! retry queue stores messages it answers errors for. Then everything settles without faults and
//! the oracle ([`oracle`]) compares both systems with what people did.
//!
//! A schedule is replayed from its seed (`EXPLORER_SEED=<seed>`): the same steps and fault
//! rates. What runs concurrently inside one wave still races for real, so a rare interleaving
//! may need a few replays (`EXPLORER_REPEAT`).

pub mod flaky_queue;
pub mod oracle;
pub mod schedule;
pub mod world;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::RngExt;
use rand::rngs::StdRng;

use std::collections::BTreeMap;

pub use oracle::{Kind, Verdict, Violation};

/// The rules the explorer runs: the example rules and two rules whose state effects take turns.
pub const RULES: &str = include_str!("rules.yaml");
/// Rule names the oracle derives the bridge's keys from.
pub const CASE_FOR_INCIDENT_RULE: &str = "customer-incident-opens-case";
pub const INCIDENT_FOR_CASE_RULE: &str = "sev1-case-opens-high-urgency-incident";

/// Something a person did, and when (the bridge's clock at that moment).
#[derive(Debug, Clone, PartialEq)]
pub enum Did {
    Triggered { incident: String, at: DateTime<Utc> },
    Acknowledged { incident: String, at: DateTime<Utc> },
    Reassigned { incident: String, policy: String, at: DateTime<Utc> },
    Noted { incident: String, content: String, at: DateTime<Utc> },
    Resolved { incident: String, at: DateTime<Utc> },
    OpenedCase { case: String, sev1: bool, at: DateTime<Utc> },
    Commented { case: String, comment: String, body: String, at: DateTime<Utc> },
    ChangedPriority { case: String, from: String, to: String, at: DateTime<Utc> },
    ClosedCase { case: String, at: DateTime<Utc> },
    EditedCase { case: String, at: DateTime<Utc> },
}

impl Did {
    /// The same, done at `at`.
    pub fn at(mut self, when: DateTime<Utc>) -> Self {
        match &mut self {
            Did::Triggered { at, .. }
            | Did::Acknowledged { at, .. }
            | Did::Reassigned { at, .. }
            | Did::Noted { at, .. }
            | Did::Resolved { at, .. }
            | Did::OpenedCase { at, .. }
            | Did::Commented { at, .. }
            | Did::ChangedPriority { at, .. }
            | Did::ClosedCase { at, .. }
            | Did::EditedCase { at, .. } => *at = when,
        }
        self
    }
}

/// Production's timeouts divided by a common factor, so that a slow call costs a fraction of a
/// second of real time and still meets the same deadlines it would in production.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// pd-to-sfdc and sfdc-to-pd: Lambda kills them at this (template.yaml: 10 s).
    pub function_timeout: Duration,
    /// The retry function (60 s).
    pub retry_timeout: Duration,
    /// PagerDuty waits this long for an answer before it counts a delivery as failed (5 s).
    pub pagerduty_waits: Duration,
    /// The Apex callout's timeout (`PdSyncCallout`: 20 s).
    pub apex_waits: Duration,
    /// The bridge's HTTP timeout to PagerDuty and Salesforce (5 s: `adapters::http::HTTP_TIMEOUT`).
    pub http_timeout: Duration,
    /// `Settings::min_time_left` (1.5 s).
    pub min_time_left: Duration,
    /// `Settings::settle_margin` (2 s): unscaled, no call would fit in a scaled invocation and
    /// the live path would only ever queue.
    pub settle_margin: Duration,
}

impl Timing {
    pub fn scaled(divisor: u32) -> Self {
        let d = divisor.max(1);
        Self {
            function_timeout: Duration::from_secs(10) / d,
            retry_timeout: Duration::from_secs(60) / d,
            pagerduty_waits: Duration::from_secs(5) / d,
            apex_waits: Duration::from_secs(20) / d,
            http_timeout: Duration::from_secs(5) / d,
            min_time_left: Duration::from_millis(1500) / d,
            settle_margin: Duration::from_secs(2) / d,
        }
    }

    /// A slow call: from a third of the HTTP timeout to a bit past it.
    pub fn slow_delay(&self, rng: &mut StdRng) -> Duration {
        self.http_timeout.mul_f64(rng.random_range(0.3..1.3))
    }
}

/// What a run explores.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    /// Instances of each function (pd-to-sfdc, sfdc-to-pd, retry).
    pub instances: usize,
    /// Incidents opened in PagerDuty and Cases opened in Salesforce: up to this many of each.
    pub subjects: usize,
    pub timing: Timing,
    /// Print every schedule's steps, not only failing ones.
    pub verbose: bool,
    /// The "sender gave up" fault: in about half the schedules the senders give up on some of
    /// people's changes for good, and reconciliation must repair or report them.
    pub give_up: bool,
    /// Where within its second the bridge's clock starts, in ms (`EXPLORER_START_MS`; default
    /// drawn from the seed, see [`world::clock_start`]).
    pub start_ms: Option<u32>,
}

impl Knobs {
    /// Defaults, overridden by `EXPLORER_INSTANCES`, `EXPLORER_SUBJECTS`, `EXPLORER_TIME_DIVISOR`,
    /// `EXPLORER_VERBOSE`, `EXPLORER_GIVE_UP` and `EXPLORER_START_MS`.
    pub fn from_env() -> Self {
        let var = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        Self {
            instances: var("EXPLORER_INSTANCES", 3) as usize,
            subjects: var("EXPLORER_SUBJECTS", 3) as usize,
            timing: Timing::scaled(var("EXPLORER_TIME_DIVISOR", 10) as u32),
            verbose: var("EXPLORER_VERBOSE", 0) != 0,
            give_up: var("EXPLORER_GIVE_UP", 0) != 0,
            start_ms: std::env::var("EXPLORER_START_MS").ok().and_then(|v| v.parse().ok()),
        }
    }
}

/// One schedule's result.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub verdict: Verdict,
    pub schedule: Vec<String>,
    pub elapsed: Duration,
    pub people_acts: usize,
    pub deliveries: usize,
    /// Attempts answered with an event applied live (see `World::live_applied`).
    pub live_applied: usize,
    /// The bridge's audit trail, oldest first (printed with a failing schedule).
    pub audit: Vec<String>,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.verdict.count()
    }

    /// The seed, the counts, each violation and the schedule that led there.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "schedule seed {} ({} people acts, {} deliveries, {:.1} s): {}\n",
            self.seed,
            self.people_acts,
            self.deliveries,
            self.elapsed.as_secs_f64(),
            self.verdict.summary()
        );
        for line in self.verdict.lines() {
            out.push_str(&format!("  ! {line}\n"));
        }
        out.push_str(&format!("  schedule (replay: EXPLORER_SEED={}):\n", self.seed));
        for line in &self.schedule {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str("  the bridge's audit trail:\n");
        for line in &self.audit {
            out.push_str(&format!("    {line}\n"));
        }
        out
    }
}

/// Counts over many schedules.
#[derive(Debug, Default)]
pub struct Totals {
    pub schedules: usize,
    pub by_kind: BTreeMap<Kind, usize>,
    /// (kind, what) -> (violations, schedules with one, the first such seed).
    pub by_what: BTreeMap<(Kind, &'static str), (usize, usize, u64)>,
    pub failing_seeds: Vec<u64>,
    pub elapsed: Duration,
    /// Senders' attempts answered with an event applied live, and all deliveries.
    pub live_applied: usize,
    pub deliveries: usize,
    /// Differences no run can observe, not judged (two lost changes of one field in a row).
    pub unobservable: usize,
}

impl Totals {
    pub fn add(&mut self, report: &Report) {
        self.schedules += 1;
        self.live_applied += report.live_applied;
        self.deliveries += report.deliveries;
        self.unobservable += report.verdict.unobservable;
        let mut seen = Vec::new();
        for v in &report.verdict.violations {
            *self.by_kind.entry(v.kind).or_default() += 1;
            let entry = self.by_what.entry((v.kind, v.what)).or_insert((0, 0, report.seed));
            entry.0 += 1;
            if !seen.contains(&(v.kind, v.what)) {
                seen.push((v.kind, v.what));
                entry.1 += 1;
            }
        }
        if report.violations() > 0 {
            self.failing_seeds.push(report.seed);
        }
    }

    pub fn violations(&self) -> usize {
        self.by_kind.values().sum()
    }

    pub fn of(&self, kind: Kind) -> usize {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }

    /// One line of counts.
    pub fn summary(&self) -> String {
        let counts: Vec<String> = Kind::ALL.iter().map(|k| format!("{} {}", k.name(), self.of(*k))).collect();
        format!(
            "schedules explored {}, failing {} | {} | {} of {} deliveries applied live | {} unobservable | {:.1} s",
            self.schedules,
            self.failing_seeds.len(),
            counts.join(" | "),
            self.live_applied,
            self.deliveries,
            self.unobservable,
            self.elapsed.as_secs_f64()
        )
    }

    /// The counts, each kind broken down by what it is about (with a seed that shows it), and
    /// the failing seeds.
    pub fn table(&self) -> String {
        let mut out = self.summary();
        for ((kind, what), (n, schedules, seed)) in &self.by_what {
            out.push_str(&format!(
                "\n  {:<15} {:<40} {:>6} in {:>5} schedule(s), e.g. EXPLORER_SEED={seed}",
                kind.name(),
                what,
                n,
                schedules
            ));
        }
        if !self.failing_seeds.is_empty() {
            let mut seeds = self.failing_seeds.clone();
            seeds.sort_unstable();
            out.push_str(&format!("\nfailing seeds: {seeds:?}"));
        }
        out
    }
}

/// Runs the schedule of `seed` and judges it.
pub async fn explore(seed: u64, knobs: &Knobs) -> Report {
    let started = Instant::now();
    let mut world = world::World::start(seed, RULES, knobs).await;
    let t_start = started.elapsed();
    let mut schedule = schedule::Schedule::draw(&mut world, knobs.subjects);
    schedule.run(&mut world).await;
    let t_run = started.elapsed();
    let unsettled = schedule.settle(&mut world).await;
    let t_settle = started.elapsed();
    let verdict = oracle::judge(&world, unsettled);
    world.log.push(format!(
        "(real time: start {:.2} s, schedule {:.2} s, settle {:.2} s, oracle {:.2} s)",
        t_start.as_secs_f64(),
        (t_run - t_start).as_secs_f64(),
        (t_settle - t_run).as_secs_f64(),
        (started.elapsed() - t_settle).as_secs_f64()
    ));
    let audit = world
        .h
        .store
        .audit_entries()
        .iter()
        .map(|e| {
            let actions: Vec<String> =
                e.actions.iter().map(|a| format!("{}{}", a.action, if a.ok { "" } else { " FAILED" })).collect();
            format!(
                "{} {} {}{}{}",
                e.at.format("%H:%M:%S%.3f"),
                e.event_id,
                e.outcome.as_str(),
                e.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default(),
                if actions.is_empty() { String::new() } else { format!(" [{}]", actions.join(", ")) }
            )
        })
        .collect();
    Report {
        audit,
        seed,
        verdict,
        people_acts: world.did.len(),
        deliveries: world.deliveries.len(),
        live_applied: world.live_applied,
        schedule: std::mem::take(&mut world.log),
        elapsed: started.elapsed(),
    }
}

/// Runs `seeds` (`jobs` at a time), printing each failing schedule as it ends (every schedule
/// when `knobs.verbose`), and returns the totals.
pub async fn explore_many(seeds: impl IntoIterator<Item = u64>, knobs: &Knobs, jobs: usize) -> Totals {
    use futures::StreamExt;
    let started = Instant::now();
    let mut totals = Totals::default();
    let knobs = *knobs;
    let mut reports = futures::stream::iter(seeds)
        .map(|seed| async move { explore(seed, &knobs).await })
        .buffer_unordered(jobs.max(1));
    while let Some(report) = reports.next().await {
        if report.violations() > 0 || knobs.verbose {
            println!("{}", report.describe());
        }
        totals.add(&report);
        if totals.schedules.is_multiple_of(50) {
            totals.elapsed = started.elapsed();
            println!("... {}", totals.summary());
        }
    }
    totals.elapsed = started.elapsed();
    totals
}
