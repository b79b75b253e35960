//! Reconciliation: "never lost" even when the senders give up. PagerDuty drops deliveries and
//! disables failing subscriptions, the Apex Queueable stops after five attempts, Outbound
//! Messages after 24 hours. A run compares both systems for the changes since its last run and
//! turns each difference into a synthetic event through the same rules and the same exactly-once
//! path as live events ([`repair`]), so a repair is audited like any event and applied once.
//!
//! One run: the webhook subscription watchdog ([`watchdog`]), then the PagerDuty side
//! ([`pagerduty_side`]) and the Salesforce side ([`salesforce_side`]), each from its cursor
//! ([`cursor`], kept by a [`CursorStore`]), within an API budget ([`budget`]), stopping early
//! when a side's breaker is open or the deadline nears; the [`report`] says what differed and
//! what was done. Two runs at once are safe without a lease of their own: each repair passes the
//! event's gate and the subject's lease, and cursors only move forward.

pub mod budget;
pub mod cursor;
pub mod pagerduty_side;
pub mod ranges;
pub mod repair;
pub mod report;
pub mod salesforce_side;
pub mod trigger;
pub mod watchdog;

use chrono::{DateTime, Duration, Utc};

pub use report::{Difference, Repair, Report, SideReport, Stop, SubscriptionCheck};

use self::budget::Budget;
use self::cursor::Window;
use self::pagerduty_side::{CommentPool, CompareIncident, IncidentChange};
use self::ranges::Ranges;
use self::repair::{Candidate, Checked, Compare};
use self::salesforce_side::{CompareRecord, RecordChange};
use crate::handler::context::Context;
use crate::pagerduty::client::LogEntry;
use crate::store::{BreakerState, CursorStore, Side};

/// What a run may do.
#[derive(Debug, Clone)]
pub struct Options {
    /// API calls (both services together) one run may make.
    pub max_api_calls: u32,
    /// Compare changes since this time instead of the cursors (`syncctl reconcile --since`).
    pub since: Option<DateTime<Utc>>,
    /// Compare and report only: no gate, no lease, no write, no cursor moved.
    pub dry_run: bool,
    /// Before any run: how far back the first one looks.
    pub first_run: Duration,
    /// PagerDuty lists incidents by creation: those created this far back are compared.
    pub incident_lookback: Duration,
    /// The webhook subscription to watch (see [`watchdog`]).
    pub subscription_id: Option<String>,
    /// The invocation's deadline: the run stops with time left to settle.
    pub deadline: Option<DateTime<Utc>>,
    pub correlation_id: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_api_calls: DEFAULT_MAX_API_CALLS,
            since: None,
            dry_run: false,
            first_run: Duration::days(1),
            incident_lookback: Duration::days(30),
            subscription_id: None,
            deadline: None,
            correlation_id: "reconcile".into(),
        }
    }
}

/// How every event id a reconcile writes begins (a run's audit entry, each repair): what tells
/// them apart from the senders' deliveries in the audit trail (`syncctl status` reads the last
/// delivery per route, and a repair is no delivery).
pub const EVENT_ID_PREFIX: &str = "reconcile";

/// The default API budget of one run.
pub const DEFAULT_MAX_API_CALLS: u32 = 200;

/// Told of each step, for a progress indication (`syncctl reconcile`).
pub trait Observer: Sync {
    /// `done` of `total` changes of `side` looked at.
    fn step(&self, _side: Side, _done: usize, _total: usize) {}
    /// A run asked of the retry function has not ended yet (`polls` looks so far).
    fn waiting(&self, _polls: usize) {}
}

/// No progress indication (the retry function).
pub struct Quiet;
impl Observer for Quiet {}

/// One run (see the module doc). Never fails as a whole: what went wrong is in the report.
pub async fn run(ctx: &Context, cursors: &dyn CursorStore, options: &Options, observer: &dyn Observer) -> Report {
    // A run must tell the bridge's own Salesforce writes from people's (a record it wrote is no
    // lost change; a person's later change is not written over): without the configured id of
    // the integration user, it takes it from its own session.
    let with_user;
    let ctx = match integration_user(ctx).await {
        Ok(None) => ctx,
        Ok(Some(id)) => {
            let mut copy = ctx.clone();
            copy.settings.integration_user_id = id;
            with_user = copy;
            &with_user
        }
        Err(reason) => return Report::failed(ctx.clock.now(), options, reason),
    };
    let started_at = ctx.clock.now();
    // A breaker past its cool-down lets one caller probe: with no live traffic after an outage,
    // that is this run (else nothing would close it, and every run would stop on it).
    let mut probing = Vec::new();
    if !options.dry_run {
        for breaker in [ctx.pagerduty_port().breaker, ctx.salesforce_port().breaker] {
            if let Ok(crate::retry::breaker::Permit::Probe) = breaker.permit().await {
                probing.push(breaker.service().to_string());
            }
        }
    }
    let budget = Budget::new(options.max_api_calls, ctx.pagerduty.clone(), ctx.salesforce.clone());
    let subscription = if budget.allows(2) {
        watchdog::check_subscription(ctx, options.subscription_id.as_deref(), options.dry_run).await
    } else {
        SubscriptionCheck::Failed("no API budget left to read the subscription".into())
    };
    let mut report = Report {
        started_at,
        dry_run: options.dry_run,
        budget: options.max_api_calls,
        api_calls: 0,
        sides: vec![],
        differences: vec![],
        differences_left_off: 0,
        subscription,
    };
    // Both sides are listed, then their changes are compared oldest first across the sides:
    // when both systems changed while the bridge was away, the later change wins, as it would
    // have live, and the earlier one, now older than its target, is reported.
    let comments = CommentPool::default();
    let mut runs = Vec::new();
    for side in Side::ALL {
        runs.push(list_side(ctx, cursors, options, &budget, side, &probing).await);
    }
    report_probes(ctx, &probing, &runs).await;
    let total: usize = runs.iter().map(|r| r.listed.len()).sum();
    let mut done = 0;
    while let Some(r) = next_change(&runs) {
        if let Some(stop) = held_back(ctx, options, &probing).await {
            for run in runs.iter_mut() {
                run.stop_here(stop.clone());
            }
            break;
        }
        let run = &mut runs[r];
        let i = run.next;
        let (candidate, mut compare) = run.listed.get(i, &options.correlation_id, &comments);
        let checked =
            repair::check(ctx, &candidate, compare.as_mut(), &budget, options.dry_run, options.deadline).await;
        drop(compare);
        if matches!(checked, Checked::OutOfBudget) {
            for run in runs.iter_mut() {
                run.stop_here(Stop::Budget);
            }
            break;
        }
        let run = &mut runs[r];
        run.next += 1;
        run.report.checked += 1;
        match checked {
            Checked::InSync | Checked::OutOfBudget => {}
            Checked::AlreadyRepaired => run.report.already_repaired += 1,
            Checked::Busy => {
                run.first_open.get_or_insert(candidate.changed_at);
            }
            Checked::Failed(reason) => {
                tracing::warn!(side = run.report.side.as_str(), subject = %candidate.subject.key(), reason, "reconcile could not compare a change");
                run.report.failed += 1;
                run.first_open.get_or_insert(candidate.changed_at);
            }
            Checked::Differs(difference) => {
                if matches!(difference.repair, Repair::Failed(_)) {
                    run.report.failed += 1;
                }
                if matches!(difference.repair, Repair::Failed(_) | Repair::Busy) {
                    run.first_open.get_or_insert(candidate.changed_at);
                }
                tracing::warn!(side = run.report.side.as_str(), subject = %difference.subject, event_id = %difference.event_id,
                    repair = ?difference.repair, "reconcile found a difference");
                report.differences.push(difference);
            }
        }
        done += 1;
        observer.step(run.report.side, done, total);
    }
    for run in runs {
        report.sides.push(run.finish(cursors, options).await);
    }
    report.api_calls = budget.spent();
    report
}

/// The probe's result, once each side is listed (the listing is the side's first call): a side
/// listed closes its service's breaker, so that the repairs go through it; else it stays open.
async fn report_probes(ctx: &Context, probing: &[String], runs: &[SideRun]) {
    for (breaker, side) in
        [(ctx.pagerduty_port().breaker, Side::Pagerduty), (ctx.salesforce_port().breaker, Side::Salesforce)]
    {
        if !probing.iter().any(|s| s == breaker.service()) {
            continue;
        }
        let listed = runs.iter().any(|r| r.report.side == side && r.listed_ok);
        let _ = match listed {
            true => breaker.record_success().await,
            false => breaker
                .record_failure(crate::retry::breaker::Signal::Transient("a reconcile run's probe failed".into()))
                .await
                .map(drop),
        };
    }
}

/// One side of a run: its window, its listed changes, how far the run got.
struct SideRun {
    report: SideReport,
    listed: Listed,
    /// The next listed change to compare.
    next: usize,
    /// The oldest change that was not settled (busy, failed, not reached): the cursor moves
    /// there, else to the end of the window, and the next run looks at it again.
    first_open: Option<DateTime<Utc>>,
    /// The side was listed (its cursor may move).
    listed_ok: bool,
}

impl SideRun {
    /// The run stops before this side's next change.
    fn stop_here(&mut self, stop: Stop) {
        if self.next < self.listed.len() {
            self.first_open.get_or_insert(self.listed.changed_at(self.next));
            self.report.stopped.get_or_insert(stop);
        }
    }

    /// Moves the side's cursor (not in a dry run, nor with `--since`) and gives its report.
    async fn finish(mut self, cursors: &dyn CursorStore, options: &Options) -> SideReport {
        if options.since.is_some() && self.listed_ok {
            self.report.resume_from = self.first_open;
        }
        if !options.dry_run && options.since.is_none() && self.listed_ok {
            let to = self.first_open.unwrap_or(self.report.window.until);
            if let Err(err) = cursors.advance_cursor(self.report.side, to).await {
                crate::telemetry::metrics::reconcile_failure();
                self.report.stopped.get_or_insert(Stop::Failed(format!("the cursor could not be stored: {err}")));
            } else {
                self.report.cursor = Some(to);
            }
        }
        self.report
    }
}

/// The side whose next change is the oldest of both.
fn next_change(runs: &[SideRun]) -> Option<usize> {
    (0..runs.len())
        .filter(|&r| runs[r].next < runs[r].listed.len())
        .min_by_key(|&r| runs[r].listed.changed_at(runs[r].next))
}

/// Lists one side's changes from its cursor (none when its cursor cannot be read, a breaker
/// is open or the listing fails: the report says why).
async fn list_side(
    ctx: &Context,
    cursors: &dyn CursorStore,
    options: &Options,
    budget: &Budget,
    side: Side,
    probing: &[String],
) -> SideRun {
    let now = ctx.clock.now();
    let empty = |report: SideReport| SideRun {
        report,
        listed: Listed::Records(vec![]),
        next: 0,
        first_open: None,
        listed_ok: false,
    };
    let cursor = match cursors.cursor(side).await {
        Ok(cursor) => cursor,
        Err(err) => {
            crate::telemetry::metrics::reconcile_failure();
            let window = Window::of(None, options.since, now, options.first_run);
            return empty(SideReport::new(side, window).stopped(Stop::Failed(err.to_string())));
        }
    };
    let window = Window::of(cursor, options.since, now, options.first_run);
    if let Some(stop) = held_back(ctx, options, probing).await {
        return empty(SideReport::new(side, window).stopped(stop));
    }
    let mut unlisted = Vec::new();
    let listed = match side {
        Side::Pagerduty => match notes_marked_since(cursors, now, options.dry_run).await {
            Ok(marked_since) => list_incidents(ctx, options, budget, &window, marked_since, &mut unlisted)
                .await
                .map(|(l, s)| (Listed::Incidents(l), s)),
            Err(reason) => Err(reason),
        },
        Side::Salesforce => list_records(ctx, options, budget, &window).await.map(|(l, s)| (Listed::Records(l), s)),
    };
    match listed {
        Ok((listed, stop)) => {
            // A listing cut short (budget) leaves the cursor where the window began.
            let first_open = stop.is_some().then_some(window.since);
            for what in &unlisted {
                tracing::warn!(side = side.as_str(), what, "reconcile could not list a range in full");
            }
            let report = SideReport { stopped: stop, unlisted, ..SideReport::new(side, window) };
            SideRun { report, listed, next: 0, first_open, listed_ok: true }
        }
        Err(reason) => {
            crate::telemetry::metrics::reconcile_failure();
            empty(SideReport::new(side, window).stopped(Stop::Failed(reason)))
        }
    }
}

/// The integration user's id when the settings lack it (`Ok(None)`: they have it).
async fn integration_user(ctx: &Context) -> Result<Option<String>, String> {
    if !ctx.settings.integration_user_id.is_empty() {
        return Ok(None);
    }
    match ctx.salesforce.user_id().await {
        Ok(Some(id)) => Ok(Some(id)),
        Ok(None) => Err("the Salesforce session names no user, and SALESFORCE_INTEGRATION_USER_ID is not set: \
             set the stack parameter SalesforceIntegrationUserId (`syncctl setup salesforce --check` prints it)"
            .into()),
        Err(err) => Err(format!("could not log in to Salesforce to learn the integration user's id: {err}")),
    }
}

/// `Some` when the run must not go on: a breaker open (either side: each repair reads one
/// service and writes the other), unless this run is its probe (`probing`), or the deadline near.
async fn held_back(ctx: &Context, options: &Options, probing: &[String]) -> Option<Stop> {
    for breaker in [ctx.pagerduty_port().breaker, ctx.salesforce_port().breaker] {
        match breaker.state().await {
            Ok(BreakerState::Closed) => {}
            Ok(BreakerState::HalfOpen) if probing.iter().any(|s| s == breaker.service()) => {}
            Ok(_) => return Some(Stop::BreakerOpen),
            Err(err) => return Some(Stop::Failed(format!("breaker state: {err}"))),
        }
    }
    deadline_near(ctx, options).then_some(Stop::Deadline)
}

/// Too little time is left before the invocation's deadline for another step (a read, a page).
fn deadline_near(ctx: &Context, options: &Options) -> bool {
    let left = options.deadline.map(|d| d - ctx.clock.now());
    let needed = Duration::from_std(ctx.settings.min_time_left * 2).unwrap_or(Duration::seconds(3));
    left.is_some_and(|left| left < needed)
}

/// A side's changes, oldest first.
enum Listed {
    Incidents(Vec<IncidentChange>),
    Records(Vec<(RecordChange, Vec<String>)>),
}

impl Listed {
    fn len(&self) -> usize {
        match self {
            Listed::Incidents(list) => list.len(),
            Listed::Records(list) => list.len(),
        }
    }

    fn changed_at(&self, i: usize) -> DateTime<Utc> {
        match self {
            Listed::Incidents(list) => list[i].changed_at,
            Listed::Records(list) => list[i].0.changed_at,
        }
    }

    fn get<'a>(
        &'a self,
        i: usize,
        correlation_id: &'a str,
        comments: &'a CommentPool,
    ) -> (Candidate, Box<dyn Compare + Send + 'a>) {
        match self {
            Listed::Incidents(list) => {
                let change = &list[i];
                (change.candidate(), Box::new(CompareIncident { change, correlation_id, comments }))
            }
            Listed::Records(list) => {
                let (change, linked) = &list[i];
                (change.candidate(), Box::new(CompareRecord { change, correlation_id, linked: linked.clone() }))
            }
        }
    }
}

/// Lists the linked incidents whose status changed in the window (pages of 100, each one call),
/// and the notes written to linked incidents in the window ([`list_notes`]).
async fn list_incidents(
    ctx: &Context,
    options: &Options,
    budget: &Budget,
    window: &Window,
    marked_since: DateTime<Utc>,
    unlisted: &mut Vec<String>,
) -> Result<(Vec<IncidentChange>, Option<Stop>), String> {
    let now = ctx.clock.now();
    let mut ranges = Ranges::new((window.until - options.incident_lookback).min(window.since), now);
    let mut out = Vec::new();
    while let Some(range) = ranges.next_range() {
        let (since, until) = (range.0.to_rfc3339(), range.1.to_rfc3339());
        let mut offset = 0;
        loop {
            if !budget.allows(1) {
                unlisted.append(&mut ranges.unlisted);
                return Ok((sorted(out), Some(Stop::Budget)));
            }
            if deadline_near(ctx, options) {
                unlisted.append(&mut ranges.unlisted);
                return Ok((sorted(out), Some(Stop::Deadline)));
            }
            crate::telemetry::metrics::api_calls("pagerduty", 1);
            let page = ctx
                .pagerduty
                .list_incidents_page(&since, &until, pagerduty_side::STATUSES, offset)
                .await
                .map_err(|e| format!("listing PagerDuty incidents: {e}"))?;
            if offset == 0 && ranges.split(range, page.total, "incidents created") {
                break;
            }
            offset += page.items.len();
            for incident in page.items {
                let Some(mut change) = IncidentChange::of(incident, window) else { continue };
                change.links = ctx
                    .stores
                    .links
                    .records_for_incident(&change.incident.id)
                    .await
                    .map_err(|e| format!("links: {e}"))?;
                if !change.links.is_empty() {
                    out.push(change);
                }
            }
            if !page.more || ranges.past_paging(offset, range, "incidents created") {
                break;
            }
        }
    }
    unlisted.append(&mut ranges.unlisted);
    let stop = list_notes(ctx, options, budget, window, marked_since, &mut out, unlisted).await?;
    pagerduty_side::rank_notes(&mut out);
    Ok((sorted(out), stop))
}

/// Since when every note the bridge wrote Case Comments for is marked: recorded by the first run
/// of a version that marks, as its start (an earlier version, with or without reconciliation,
/// may have written comments unmarked before it). A dry run records nothing.
async fn notes_marked_since(
    cursors: &dyn CursorStore,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<DateTime<Utc>, String> {
    let store = |e: crate::store::StoreError| format!("reading since when notes are marked: {e}");
    if let Some(at) = cursors.notes_marked_since().await.map_err(store)? {
        return Ok(at);
    }
    if dry_run { Ok(now) } else { cursors.record_notes_marked_since(now).await.map_err(store) }
}

/// Adds to `out` the notes written to linked incidents in the window: a note changes no stamp of
/// its incident, and the account's log lists them (pages of 100, each one call).
async fn list_notes(
    ctx: &Context,
    options: &Options,
    budget: &Budget,
    window: &Window,
    marked_since: DateTime<Utc>,
    out: &mut Vec<IncidentChange>,
    unlisted: &mut Vec<String>,
) -> Result<Option<Stop>, String> {
    let mut links_of: std::collections::HashMap<String, Vec<crate::model::Link>> = Default::default();
    // PagerDuty's `until` is exclusive, the window's end is not.
    let mut ranges = Ranges::new(window.since, window.until + Duration::seconds(1));
    let stop = loop {
        let Some(range) = ranges.next_range() else { break None };
        let (since, until) = (range.0.to_rfc3339(), range.1.to_rfc3339());
        let mut offset = 0;
        let stop = loop {
            if !budget.allows(1) {
                break Some(Stop::Budget);
            }
            if deadline_near(ctx, options) {
                break Some(Stop::Deadline);
            }
            crate::telemetry::metrics::api_calls("pagerduty", 1);
            let page = ctx
                .pagerduty
                .list_log_entries_page(&since, &until, offset)
                .await
                .map_err(|e| format!("listing PagerDuty's log for notes: {e}"))?;
            if offset == 0 && ranges.split(range, page.total, "log entries written") {
                break None;
            }
            offset += page.items.len();
            let more = page.more;
            notes_of_page(ctx, page.items, window, marked_since, &mut links_of, out).await?;
            if !more || ranges.past_paging(offset, range, "log entries written") {
                break None;
            }
        };
        if stop.is_some() {
            break stop;
        }
    };
    unlisted.append(&mut ranges.unlisted);
    Ok(stop)
}

/// The notes of linked incidents among one page of log entries, added to `out`.
async fn notes_of_page(
    ctx: &Context,
    page: Vec<LogEntry>,
    window: &Window,
    marked_since: DateTime<Utc>,
    links_of: &mut std::collections::HashMap<String, Vec<crate::model::Link>>,
    out: &mut Vec<IncidentChange>,
) -> Result<(), String> {
    for entry in page.into_iter().filter(|e| e.kind == pagerduty_side::ANNOTATED) {
        let Some(incident) = entry.incident_id().map(str::to_string) else { continue };
        if !links_of.contains_key(&incident) {
            let links = ctx.stores.links.records_for_incident(&incident).await.map_err(|e| format!("links: {e}"))?;
            links_of.insert(incident.clone(), links);
        }
        let links = &links_of[&incident];
        if !links.is_empty() {
            out.extend(IncidentChange::of_logged_note(entry, links.clone(), window, marked_since));
        }
    }
    Ok(())
}

fn sorted(mut list: Vec<IncidentChange>) -> Vec<IncidentChange> {
    list.sort_by_key(|c| c.changed_at);
    list
}

/// Lists the watched records changed in the window, per object, in batches.
async fn list_records(
    ctx: &Context,
    options: &Options,
    budget: &Budget,
    window: &Window,
) -> Result<(Vec<(RecordChange, Vec<String>)>, Option<Stop>), String> {
    let rules = ctx.rules.current().await.map_err(|e| format!("rules unavailable: {e}"))?;
    let mut out: Vec<(RecordChange, Vec<String>)> = Vec::new();
    let mut stop = None;
    'objects: for object in salesforce_side::watched_objects(&rules.rules) {
        let mut next: Option<String> = None;
        loop {
            if !budget.allows(1) {
                stop = Some(Stop::Budget);
                break 'objects;
            }
            if deadline_near(ctx, options) {
                stop = Some(Stop::Deadline);
                break 'objects;
            }
            crate::telemetry::metrics::api_calls("salesforce", 1);
            let result = match &next {
                None => ctx.salesforce.query(&salesforce_side::changes_query(&object, window)).await,
                Some(url) => ctx.salesforce.query_more(url).await,
            }
            .map_err(|e| format!("listing changed {object} records: {e}"))?;
            for row in &result.records {
                let Some(change) = RecordChange::of(&object, row) else { continue };
                if !window.contains(change.changed_at) {
                    continue;
                }
                let order = change.parent_id.clone().unwrap_or_else(|| change.id.clone());
                let linked = ctx
                    .stores
                    .links
                    .incidents_for_record(&order)
                    .await
                    .map_err(|e| format!("links: {e}"))?
                    .into_iter()
                    .map(|l| l.incident_id.to_string())
                    .collect();
                out.push((change, linked));
            }
            next = result.next_records_url.filter(|_| !result.done);
            if next.is_none() {
                break;
            }
        }
    }
    out.sort_by_key(|(c, _)| c.changed_at);
    Ok((out, stop))
}
