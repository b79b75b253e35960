//! What happens in one schedule, step by step, chosen by the schedule's seeded RNG: a person acts,
//! a wave of deliveries and retries runs, a delivery comes twice, or time passes. Then the settle
//! phase: no more faults, the senders and the retry function go on until nothing is left.

use std::collections::VecDeque;

use chrono::Duration as Span;
use rand::RngExt;
use serde_json::json;
use shared::rules::{external_id, incident_key};

use super::world::{Invocation, POLICIES, SendState, WEBHOOK_NOTE_LIMIT, World, external_id_of};
use super::{CASE_FOR_INCIDENT_RULE, Did, INCIDENT_FOR_CASE_RULE};

/// Where a subject starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// On-call triggers an incident; the bridge opens its Case.
    PagerDuty,
    /// An agent opens a Case; when it is Sev1 the bridge opens its incident.
    Salesforce { sev1: bool },
}

/// What a person does next to a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Trigger,
    OpenCase,
    Acknowledge,
    Reassign,
    Note,
    /// A note longer than a webhook carries (`trimmed: true`).
    LongNote,
    Resolve,
    Comment,
    Escalate,
    Deescalate,
    Edit,
    CloseCase,
}

impl Act {
    fn on_incident(self) -> bool {
        matches!(self, Act::Acknowledge | Act::Reassign | Act::Note | Act::LongNote | Act::Resolve)
    }

    /// A change of the Case record itself (what one trigger invocation posts).
    fn is_case_update(self) -> bool {
        matches!(self, Act::Escalate | Act::Deescalate | Act::Edit | Act::CloseCase)
    }
}

/// One incident or Case and what people will do to it.
#[derive(Debug)]
pub struct Subject {
    pub n: usize,
    pub origin: Origin,
    pub incident: Option<String>,
    pub case: Option<String>,
    pub script: VecDeque<Act>,
    notes: usize,
    comments: usize,
    policy: usize,
}

impl Subject {
    fn name(&self) -> String {
        match self.origin {
            Origin::PagerDuty => format!("PD#{}", self.n),
            Origin::Salesforce { sev1: true } => format!("SF#{}", self.n),
            Origin::Salesforce { sev1: false } => format!("SF#{} (not Sev1)", self.n),
        }
    }

    /// The incident, once it exists (the bridge opens it for a Sev1 Case).
    fn find_incident(&mut self, world: &World) -> Option<String> {
        if self.incident.is_none()
            && let Some(case) = &self.case
        {
            let key = incident_key("Case", case, INCIDENT_FOR_CASE_RULE);
            self.incident = world
                .h
                .pd
                .incidents()
                .iter()
                .find(|i| i["incident_key"] == key.as_str())
                .and_then(|i| i["id"].as_str().map(str::to_string));
        }
        self.incident.clone()
    }

    /// The Case, once it exists (the bridge opens it for an incident).
    fn find_case(&mut self, world: &World) -> Option<String> {
        if self.case.is_none()
            && let Some(incident) = &self.incident
        {
            let ext = external_id(incident, CASE_FOR_INCIDENT_RULE);
            self.case = world
                .h
                .sf
                .records("Case")
                .iter()
                .find(|c| external_id_of(c) == ext)
                .and_then(|c| c["Id"].as_str().map(str::to_string));
        }
        self.case.clone()
    }
}

/// Whether a subject's next act can happen now.
enum Readiness {
    Ready,
    /// What it acts on does not exist yet (the bridge has not opened it).
    Wait,
    /// It makes no sense any more (acknowledging a resolved incident): dropped.
    Skip(String),
}

pub struct Schedule {
    pub subjects: Vec<Subject>,
    step: usize,
}

/// Steps before the settle phase at most (a schedule is a few tens of events).
const MAX_STEPS: usize = 300;
/// Settle rounds at most; a schedule that needs more is reported as unsettled.
const SETTLE_ROUNDS: usize = 400;
/// Settle rounds without progress before time starts to pass faster.
const STALL_ROUNDS: u32 = 10;

fn pick<T: Copy>(world: &mut World, items: &[T]) -> T {
    items[world.rng.random_range(0..items.len())]
}

impl Schedule {
    /// Draws the subjects and their scripts.
    pub fn draw(world: &mut World, max_subjects: usize) -> Self {
        let max = max_subjects.max(1);
        let from_pagerduty = world.rng.random_range(1..=max);
        let from_salesforce = world.rng.random_range(1..=max);
        let mut subjects = Vec::new();
        for n in 0..from_pagerduty + from_salesforce {
            let origin = if n < from_pagerduty {
                Origin::PagerDuty
            } else {
                Origin::Salesforce { sev1: world.rng.random_bool(0.8) }
            };
            let script = Self::script(world, origin);
            subjects.push(Subject {
                n: n + 1,
                origin,
                incident: None,
                case: None,
                script,
                notes: 0,
                comments: 0,
                policy: 0,
            });
        }
        let mut lines = vec!["subjects:".to_string()];
        for s in &subjects {
            lines.push(format!("  {}: {:?}", s.name(), s.script));
        }
        world.log.extend(lines);
        Self { subjects, step: 0 }
    }

    /// What people do to one subject, in order.
    fn script(world: &mut World, origin: Origin) -> VecDeque<Act> {
        let linked = !matches!(origin, Origin::Salesforce { sev1: false });
        let mut script = VecDeque::new();
        script.push_back(if origin == Origin::PagerDuty { Act::Trigger } else { Act::OpenCase });
        let middle: &[Act] = if linked {
            &[
                Act::Acknowledge,
                Act::Reassign,
                Act::Reassign,
                Act::Note,
                Act::Note,
                Act::Comment,
                Act::Comment,
                Act::Escalate,
                Act::Deescalate,
                Act::Edit,
            ]
        } else {
            &[Act::Comment, Act::Escalate, Act::Deescalate, Act::Edit]
        };
        for _ in 0..world.rng.random_range(2..=5) {
            let mut act = pick(world, middle);
            if act == Act::Note && world.rng.random_bool(0.1) {
                act = Act::LongNote;
            }
            script.push_back(act);
        }
        let end = world.rng.random_range(0..10);
        match (linked, end) {
            (true, 0..=3) => script.push_back(Act::Resolve),
            (_, 4..=6) => script.push_back(Act::CloseCase),
            _ => {}
        }
        if world.rng.random_bool(0.3) {
            script.push_back(if linked && world.rng.random_bool(0.5) { Act::Note } else { Act::Comment });
        }
        script
    }

    fn readiness(world: &World, subject: &mut Subject) -> Readiness {
        let Some(&act) = subject.script.front() else { return Readiness::Skip("nothing left".into()) };
        if matches!(act, Act::Trigger | Act::OpenCase) {
            return Readiness::Ready;
        }
        if act.on_incident() {
            let Some(id) = subject.find_incident(world) else { return Readiness::Wait };
            let status = world.incident(&id).map(|i| i["status"].as_str().unwrap_or_default().to_string());
            let status = status.unwrap_or_default();
            return match act {
                Act::Acknowledge if status != "triggered" => Readiness::Skip(format!("incident is {status}")),
                Act::Reassign | Act::Resolve if status == "resolved" => Readiness::Skip("incident is resolved".into()),
                _ => Readiness::Ready,
            };
        }
        let Some(case) = subject.find_case(world) else { return Readiness::Wait };
        let record = world.h.sf.record("Case", &case).unwrap_or_default();
        let closed = record["Status"] == "Closed";
        let sev1 = record["Priority"] == "Sev1";
        match act {
            Act::Escalate if sev1 || closed => Readiness::Skip("Case is Sev1 or Closed".into()),
            Act::Deescalate if !sev1 || closed => Readiness::Skip("Case is not Sev1, or Closed".into()),
            Act::CloseCase | Act::Edit if closed => Readiness::Skip("Case is Closed".into()),
            _ => Readiness::Ready,
        }
    }

    /// Subjects whose next act can happen now (acts that make no sense any more are dropped).
    fn ready(&mut self, world: &mut World) -> Vec<usize> {
        let mut ready = Vec::new();
        for i in 0..self.subjects.len() {
            loop {
                if self.subjects[i].script.is_empty() {
                    break;
                }
                match Self::readiness(world, &mut self.subjects[i]) {
                    Readiness::Ready => {
                        ready.push(i);
                        break;
                    }
                    Readiness::Wait => break,
                    Readiness::Skip(why) => {
                        let s = &mut self.subjects[i];
                        let act = s.script.pop_front();
                        let name = s.name();
                        world.note(format!("    ({name}: {act:?} dropped: {why})"));
                    }
                }
            }
        }
        ready
    }

    fn line(&mut self, world: &mut World, text: String) {
        self.step += 1;
        world.note(format!("{}. {text}", self.step));
    }

    /// The schedule proper: people act while the senders deliver and the functions run.
    pub async fn run(&mut self, world: &mut World) {
        for _ in 0..MAX_STEPS {
            let ready = self.ready(world);
            let due = world.due();
            let now = world.now();
            let visible = world.h.retry_queue.next_visible_at().is_some_and(|t| t <= now);
            let delivered = world.delivered();
            if ready.is_empty() && due.is_empty() && !visible {
                if self.subjects.iter().all(|s| s.script.is_empty()) {
                    return;
                }
                // People wait for something the bridge has yet to do: let time pass.
                let later = [world.next_due(), world.h.retry_queue.next_visible_at()].into_iter().flatten().min();
                match later {
                    Some(t) => {
                        world.h.clock.set(t.max(now));
                        self.line(world, "time passes until the next delivery or retry is due".into());
                        continue;
                    }
                    None => return,
                }
            }
            let weights = [
                if ready.is_empty() { 0 } else { 30 },
                if due.is_empty() { 0 } else { 40 },
                if visible { 20 } else { 0 },
                if delivered.is_empty() { 0 } else { 5 },
                10,
            ];
            let total: u32 = weights.iter().sum();
            let mut draw = world.rng.random_range(0..total);
            let mut choice = 0;
            while draw >= weights[choice] {
                draw -= weights[choice];
                choice += 1;
            }
            match choice {
                0 => self.people_step(world, &ready).await,
                1 => self.delivery_wave(world, &due, visible, true).await,
                2 => self.retry_wave(world, true).await,
                3 => self.duplicate(world, &delivered, &due).await,
                _ => {
                    let pauses = [200, 2_000, 10_000, 45_000, 180_000];
                    let pause = pick(world, &pauses);
                    world.advance(Span::milliseconds(pause));
                    self.line(world, format!("time passes: {} s", pause as f64 / 1000.0));
                }
            }
        }
        self.line(world, format!("(stopped after {MAX_STEPS} steps)"));
    }

    /// A person does the next thing to a subject; sometimes a second change of the same Case in
    /// the same second, or the same change to several Cases in one bulk update.
    async fn people_step(&mut self, world: &mut World, ready: &[usize]) {
        let i = pick(world, ready);
        // People take their time, from a moment to a few seconds.
        let pause = world.rng.random_range(20..4_000);
        world.advance(Span::milliseconds(pause));
        let act = self.subjects[i].script[0];
        if act.is_case_update() {
            let mut batch = vec![i];
            if world.rng.random_bool(0.25) {
                for j in ready.iter().copied().filter(|j| *j != i) {
                    if batch.len() < 3 && self.subjects[j].script.front() == Some(&act) {
                        batch.push(j);
                    }
                }
            }
            self.case_updates(world, &batch, act);
            // The same Case changed again within the same second: its stamp is the same.
            let again = self.subjects[i].script.front().copied();
            if let Some(next) = again.filter(|a| a.is_case_update())
                && world.rng.random_bool(0.3)
                && matches!(Self::readiness(world, &mut self.subjects[i]), Readiness::Ready)
            {
                self.case_updates(world, &[i], next);
            }
            return;
        }
        self.act(world, i).await;
    }

    /// The agent makes `act` (a Case update) to the Cases of `batch` in one transaction.
    fn case_updates(&mut self, world: &mut World, batch: &[usize], act: Act) {
        let mut changes = Vec::new();
        let mut names = Vec::new();
        for &i in batch {
            let s = &mut self.subjects[i];
            s.script.pop_front();
            let case = s.case.clone().expect("ready Case updates have their Case");
            names.push(format!("{} (Case {case})", s.name()));
            let record = world.h.sf.record("Case", &case).unwrap_or_default();
            let priority = record["Priority"].as_str().unwrap_or_default().to_string();
            let now = world.now();
            let (fields, did) = match act {
                Act::Escalate => (
                    json!({"Priority": "Sev1"}),
                    Did::ChangedPriority { case: case.clone(), from: priority, to: "Sev1".into(), at: now },
                ),
                Act::Deescalate => (
                    json!({"Priority": "High"}),
                    Did::ChangedPriority { case: case.clone(), from: priority, to: "High".into(), at: now },
                ),
                Act::CloseCase => (json!({"Status": "Closed"}), Did::ClosedCase { case: case.clone(), at: now }),
                _ => (
                    json!({"Description": format!("Customer called again at {}", now.format("%H:%M:%S"))}),
                    Did::EditedCase { case: case.clone(), at: now },
                ),
            };
            changes.push((case, fields, did));
        }
        let bulk = if batch.len() > 1 { " (bulk update)" } else { "" };
        self.line(
            world,
            format!("agent: {act:?} {}{bulk} at {}", names.join(", "), world.now().format("%H:%M:%S%.3f")),
        );
        world.update_cases(changes);
    }

    /// One act that is not a Case update.
    async fn act(&mut self, world: &mut World, i: usize) {
        let s = &mut self.subjects[i];
        let act = s.script.pop_front().expect("a ready subject has an act");
        let name = s.name();
        let n = s.n;
        let at = world.now().format("%H:%M:%S%.3f").to_string();
        match act {
            Act::Trigger => {
                self.line(world, format!("on-call triggers {name} at {at}"));
                let id = world.trigger(&format!("Checkout down #{n}")).await;
                self.subjects[i].incident = id;
            }
            Act::OpenCase => {
                let sev1 = matches!(self.subjects[i].origin, Origin::Salesforce { sev1: true });
                let priority = if sev1 { "Sev1" } else { "Medium" };
                self.line(world, format!("agent opens {name} ({priority}) at {at}"));
                let id = world.open_case(&format!("Printer on fire #{n}"), priority);
                self.subjects[i].case = Some(id);
            }
            Act::Acknowledge | Act::Resolve => {
                let incident = self.subjects[i].incident.clone().expect("ready");
                let (status, did) = if act == Act::Acknowledge {
                    ("acknowledged", Did::Acknowledged { incident: incident.clone(), at: world.now() })
                } else {
                    ("resolved", Did::Resolved { incident: incident.clone(), at: world.now() })
                };
                self.line(world, format!("on-call: {status} {name} ({incident}) at {at}"));
                world.update_incident(&incident, json!({"status": status}), did).await;
            }
            Act::Reassign => {
                let s = &mut self.subjects[i];
                let incident = s.incident.clone().expect("ready");
                s.policy = 1 - s.policy;
                let (policy, policy_name) = POLICIES[s.policy];
                self.line(world, format!("on-call reassigns {name} ({incident}) to {policy_name} at {at}"));
                let change = json!({"escalation_policy": {"id": policy, "type": "escalation_policy_reference"}});
                let did = Did::Reassigned { incident: incident.clone(), policy: policy_name.into(), at: world.now() };
                world.update_incident(&incident, change, did).await;
            }
            Act::Note | Act::LongNote => {
                let s = &mut self.subjects[i];
                s.notes += 1;
                let incident = s.incident.clone().expect("ready");
                let mut content = format!("{name} note {}: rolled back the deploy", s.notes);
                if act == Act::LongNote {
                    while content.chars().count() <= WEBHOOK_NOTE_LIMIT {
                        content.push_str(" and then we looked at the logs again");
                    }
                }
                self.line(world, format!("on-call adds a {} note to {name} ({incident}) at {at}", content.len()));
                world.add_note(&incident, &content).await;
            }
            Act::Comment => {
                let s = &mut self.subjects[i];
                s.comments += 1;
                let case = s.case.clone().expect("ready");
                let body = format!("{name} comment {}: customer confirms", s.comments);
                self.line(world, format!("agent comments on {name} (Case {case}) at {at}"));
                world.comment(&case, &body);
            }
            other => unreachable!("{other:?} is a Case update"),
        }
    }

    /// Delivers 1 to 4 due deliveries at once (often of the same subject), each to an instance of
    /// its function; sometimes the retry function runs alongside.
    async fn delivery_wave(&mut self, world: &mut World, due: &[usize], retry_visible: bool, faults: bool) {
        let k = [1, 1, 1, 1, 2, 2, 2, 3, 3, 4][world.rng.random_range(0..10)].min(due.len());
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < k {
            let same_subject: Vec<usize> = match chosen.first() {
                Some(&first) => due
                    .iter()
                    .copied()
                    .filter(|d| !chosen.contains(d) && world.deliveries[*d].subject == world.deliveries[first].subject)
                    .collect(),
                None => vec![],
            };
            let pool: Vec<usize> = if !same_subject.is_empty() && world.rng.random_bool(0.6) {
                same_subject
            } else {
                due.iter().copied().filter(|d| !chosen.contains(d)).collect()
            };
            if pool.is_empty() {
                break;
            }
            chosen.push(pick(world, &pool));
        }
        let mut invocations = Vec::new();
        let mut what = Vec::new();
        for d in chosen {
            let instance = world.instance_for(d);
            what.push(format!("#{d} {}", world.deliveries[d].label));
            invocations.push(Invocation::Deliver { delivery: d, instance });
        }
        if retry_visible && world.rng.random_bool(0.25) {
            what.push("and the retry function".into());
            invocations.extend(self.retry_invocations(world).await);
        }
        let faults_word = if faults { "" } else { " (no faults)" };
        self.line(world, format!("wave{faults_word}: {}", what.join("; ")));
        world.wave(invocations, faults).await;
    }

    /// The SQS event source: up to 10 visible messages split among 1 to 3 retry instances,
    /// sometimes one message to two of them (at-least-once), sometimes with a lost delete.
    async fn retry_invocations(&mut self, world: &mut World) -> Vec<Invocation> {
        let messages = world.receive().await;
        if messages.is_empty() {
            return vec![];
        }
        let groups = world.rng.random_range(1..=3).min(messages.len());
        let mut split: Vec<Vec<_>> = vec![Vec::new(); groups];
        for m in &messages {
            let g = world.rng.random_range(0..groups);
            split[g].push(m.clone());
        }
        if groups > 1 && world.rng.random_bool(0.1) {
            let m = messages[world.rng.random_range(0..messages.len())].clone();
            let g = world.rng.random_range(0..groups);
            if !split[g].iter().any(|x| x.message_id == m.message_id) {
                split[g].push(m);
            }
        }
        let mut out = Vec::new();
        for group in split.into_iter().filter(|g| !g.is_empty()) {
            let instance = world.retry_instance();
            let keep = world.rng.random_bool(0.05);
            out.push(Invocation::Retry { messages: group, instance, keep });
        }
        out
    }

    async fn retry_wave(&mut self, world: &mut World, faults: bool) {
        let invocations = self.retry_invocations(world).await;
        let n: usize = invocations
            .iter()
            .map(|i| if let Invocation::Retry { messages, .. } = i { messages.len() } else { 0 })
            .sum();
        let faults_word = if faults { "" } else { " (no faults)" };
        self.line(world, format!("retry function{faults_word}: {n} message(s) on {} instance(s)", invocations.len()));
        world.wave(invocations, faults).await;
    }

    /// A delivery comes again (PagerDuty delivers at least once; an Apex callout whose 2xx was
    /// lost is retried), sometimes while another delivery of its subject runs.
    async fn duplicate(&mut self, world: &mut World, delivered: &[usize], due: &[usize]) {
        let d = pick(world, delivered);
        let instance = world.instance_for(d);
        let mut invocations = vec![Invocation::Duplicate { delivery: d, instance }];
        let mut what = format!("#{d} {} comes again", world.deliveries[d].label);
        let subject = world.deliveries[d].subject.clone();
        let same: Vec<usize> = due.iter().copied().filter(|x| world.deliveries[*x].subject == subject).collect();
        if !same.is_empty() && world.rng.random_bool(0.5) {
            let other = pick(world, &same);
            let instance = world.instance_for(other);
            what.push_str(&format!(", with #{other} {}", world.deliveries[other].label));
            invocations.push(Invocation::Deliver { delivery: other, instance });
        }
        self.line(world, format!("wave: {what}"));
        world.wave(invocations, true).await;
    }

    /// No more faults: people finish what they can, the senders deliver until they succeed or
    /// give up, the retry function drains the queue, time passes as needed. Returns what never
    /// settled.
    pub async fn settle(&mut self, world: &mut World) -> Vec<String> {
        self.line(world, "settle: faults stop".into());
        world.faults_off();
        // (A slow simulator call whose caller gave up never lands: the simulator's handler is
        // dropped with the connection, as the probe in the explorer's notes showed.)
        self.drain(world).await;
        // The senders gave up on some of people's changes: reconciliation, as the retry function
        // runs it on its schedule, twice (the second finds what the first's repairs left), each
        // followed by what its repairs' echoes and queued events bring.
        let gave_up = world.deliveries.iter().any(|d| d.state == SendState::GaveUp(super::world::GAVE_UP.into()));
        if gave_up && std::env::var("EXPLORER_NO_RECONCILE").is_err() {
            for run in 0..2 {
                world.advance(Span::seconds(5));
                let options = shared::reconcile::Options {
                    first_run: Span::days(3),
                    max_api_calls: 2_000,
                    correlation_id: format!("explorer-reconcile-{run}"),
                    ..Default::default()
                };
                let ctx = world.retry[0].clone();
                let mut report =
                    shared::reconcile::run(&ctx, world.h.cursors.as_ref(), &options, &shared::reconcile::Quiet).await;
                // A breaker still open from the faults stops a run: the schedule runs it again
                // (every 15 minutes by default), by when the breaker has let a probe through.
                for _ in 0..3 {
                    let stopped = report.sides.iter().any(|s| s.stopped == Some(shared::reconcile::Stop::BreakerOpen));
                    if !stopped {
                        break;
                    }
                    self.line(
                        world,
                        format!("reconcile run {run}: {} (run again at the next schedule)", report.summary()),
                    );
                    world.advance(Span::minutes(15));
                    report =
                        shared::reconcile::run(&ctx, world.h.cursors.as_ref(), &options, &shared::reconcile::Quiet)
                            .await;
                }
                self.line(world, format!("reconcile run {run}: {}", report.summary()));
                for side in &report.sides {
                    world.log.push(format!(
                        "    {:?} side: window {} .. {}, {} checked, {} already repaired, {} failed, cursor {:?}",
                        side.side,
                        side.window.since.format("%H:%M:%S%.3f"),
                        side.window.until.format("%H:%M:%S%.3f"),
                        side.checked,
                        side.already_repaired,
                        side.failed,
                        side.cursor.map(|c| c.format("%H:%M:%S%.3f").to_string())
                    ));
                }
                for d in &report.differences {
                    world.log.push(format!(
                        "    {} {}: {:?} differs {:?} not repaired {:?}",
                        d.side, d.subject, d.repair, d.differs, d.not_repaired
                    ));
                }
                world.reconciled.push(report);
                world.harvest();
                self.drain(world).await;
            }
        }
        let mut unsettled = Vec::new();
        for s in &self.subjects {
            if !s.script.is_empty() {
                world.log.push(format!(
                    "    ({}: never possible: {:?}, what they act on was never created)",
                    s.name(),
                    s.script
                ));
            }
        }
        for d in world.pending() {
            unsettled.push(format!("delivery #{} ({}) still pending after {} attempts", d.id, d.label, d.attempts));
        }
        for body in world.h.retry_queue.bodies() {
            let envelope = shared::retry::envelope::Envelope::from_json(&body).ok();
            let what = envelope
                .map(|e| format!("event {} ({} attempts)", e.accepted.event_id, e.trip.attempts))
                .unwrap_or(body);
            unsettled.push(format!("still on the retry queue: {what}"));
        }
        let gave_up: Vec<String> = world
            .deliveries
            .iter()
            .filter_map(|d| match &d.state {
                SendState::GaveUp(why) => Some(format!("    (the sender gave up on #{} {}: {why})", d.id, d.label)),
                _ => None,
            })
            .collect();
        world.log.extend(gave_up);
        unsettled
    }

    /// Deliveries, retries and people's remaining steps until nothing changes (see [`Self::settle`]).
    async fn drain(&mut self, world: &mut World) {
        // Rounds that changed nothing: past a few, time passes faster and faster (up to hours),
        // so that whatever the bridge bounds in time (deferrals, leases, retry ages) runs out.
        let mut stalled = 0u32;
        let mut last = world.progress();
        // Not past 36 hours, though: the bridge bounds deferrals and retries by 24 hours, and
        // past its 72-hour idempotency window a redelivery would rightly count as new.
        let hurry_until = world.now() + Span::hours(36);
        for _ in 0..SETTLE_ROUNDS {
            let now = world.progress();
            if now == last {
                stalled += 1;
            } else {
                (stalled, last) = (0, now);
            }
            if stalled > STALL_ROUNDS && world.now() < hurry_until {
                world.advance(Span::minutes(1 << (stalled - STALL_ROUNDS).min(10)));
            }
            let ready = self.ready(world);
            if !ready.is_empty() {
                self.people_step(world, &ready).await;
                continue;
            }
            let due = world.due();
            if !due.is_empty() {
                self.delivery_wave(world, &due, false, false).await;
                continue;
            }
            let now = world.now();
            if world.h.retry_queue.next_visible_at().is_some_and(|t| t <= now) {
                self.retry_wave(world, false).await;
                continue;
            }
            let later = [world.next_due(), world.h.retry_queue.next_visible_at()].into_iter().flatten().min();
            if let Some(t) = later {
                world.h.clock.set(t.max(now));
                // The PagerDuty client waits out a 429's reset in real time.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
            break;
        }
    }
}
