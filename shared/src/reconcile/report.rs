//! What a run found and did: one [`Difference`] per change whose systems disagreed, what became
//! of it, the calls spent, and why the run stopped early. Printed by `syncctl reconcile`, logged
//! and audited by the retry function, and measured as metrics (drift found, repairs applied).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cursor::Window;
use crate::model::{AuditEntry, Direction, Outcome};
use crate::store::{AuditLog, Side, StoreError};

/// One change whose two systems disagree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// The side that changed (whose change was lost on the way to the other).
    pub side: Side,
    /// `incident:<id>` or `record:<id>`.
    pub subject: String,
    /// The synthetic event's id: derived from the remote state, the same in every run.
    pub event_id: String,
    /// What the rules prescribe that the other side does not show, one line per action.
    pub differs: Vec<String>,
    /// Additive actions the rules would also take (a comment, a note, a workflow): not repaired,
    /// because a late live delivery of the same change would take them a second time.
    pub not_repaired: Vec<String>,
    pub repair: Repair,
}

/// What became of a difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Repair {
    /// A dry run: what it would do is in `differs`.
    WouldRepair,
    /// The synthetic event went through the pipeline; its outcome (applied, queued, ...).
    Done(Outcome),
    /// Only additive actions differ: reported for a person (see `not_repaired`).
    Reported,
    /// Another event or run holds the subject now: the next run looks again.
    Busy,
    /// Reading or repairing failed; the next run looks again.
    Failed(String),
}

/// Why a run stopped before the end of a side's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum Stop {
    /// The API budget would be passed by the next step.
    Budget,
    /// The side's breaker is open (its calls would fail or make the outage worse).
    BreakerOpen,
    /// Too little time is left before the invocation's deadline.
    Deadline,
    /// Listing the side's changes failed.
    Failed(String),
}

/// One side's part of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideReport {
    pub side: Side,
    pub window: Window,
    /// Changes in the window that the run looked at (linked, or watched by a rule).
    pub checked: usize,
    /// Of those, changes an earlier run (or a concurrent one) already repaired.
    pub already_repaired: usize,
    /// Of those, changes that could not be compared or repaired (the next run looks again).
    #[serde(default)]
    pub failed: usize,
    /// The cursor after the run (`None`: not moved).
    pub cursor: Option<DateTime<Utc>>,
    /// A `--since` run that did not settle every change: the `--since` to go on with (the
    /// cursors stay where they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stop>,
    /// Ranges whose changes could not all be listed (more in one second than PagerDuty lists by
    /// offset): compared as far as listed; the cursor moves past them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlisted: Vec<String>,
}

impl SideReport {
    /// A side's report before the run looked at any change.
    pub fn new(side: Side, window: Window) -> Self {
        Self {
            side,
            window,
            checked: 0,
            already_repaired: 0,
            failed: 0,
            cursor: None,
            resume_from: None,
            unlisted: vec![],
            stopped: None,
        }
    }

    /// The same, stopped for `stop`.
    pub fn stopped(self, stop: Stop) -> Self {
        Self { stopped: Some(stop), ..self }
    }
}

/// The webhook subscription as the run found and left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum SubscriptionCheck {
    /// No subscription id is recorded (`syncctl setup pagerduty-webhook` records it).
    NotConfigured,
    Active,
    /// It was disabled; the run enabled it again (or would, in a dry run).
    ReEnabled,
    WouldReEnable,
    /// Reading or enabling it failed.
    Failed(String),
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub started_at: DateTime<Utc>,
    pub dry_run: bool,
    pub budget: u32,
    pub api_calls: u32,
    pub sides: Vec<SideReport>,
    pub differences: Vec<Difference>,
    /// Differences not in `differences` (the report kept in the audit entry is bounded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub differences_left_off: usize,
    pub subscription: SubscriptionCheck,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Report {
    /// A run that could not start: both sides stopped for `reason`.
    pub fn failed(started_at: DateTime<Utc>, options: &super::Options, reason: String) -> Self {
        crate::telemetry::metrics::reconcile_failure();
        let window = Window::of(None, options.since, started_at, options.first_run);
        Self {
            started_at,
            dry_run: options.dry_run,
            budget: options.max_api_calls,
            api_calls: 0,
            sides: Side::ALL
                .iter()
                .map(|&side| SideReport::new(side, window).stopped(Stop::Failed(reason.clone())))
                .collect(),
            differences: vec![],
            differences_left_off: 0,
            subscription: SubscriptionCheck::Failed(reason),
        }
    }

    /// Differences found (the drift metric: non-zero means events were lost upstream).
    pub fn drift(&self) -> usize {
        self.differences.len() + self.differences_left_off
    }

    /// Synthetic events the pipeline applied.
    pub fn repaired(&self) -> usize {
        self.differences.iter().filter(|d| d.repair == Repair::Done(Outcome::Applied)).count()
    }

    /// Changes that could not be compared or repaired (each side's `failed`).
    pub fn failures(&self) -> usize {
        self.sides.iter().map(|s| s.failed).sum()
    }

    /// Whether some part of the run did not get to the end of its window.
    pub fn stopped_early(&self) -> bool {
        self.sides.iter().any(|s| s.stopped.is_some())
    }

    /// One line for logs and the audit trail.
    pub fn summary(&self) -> String {
        let stops: Vec<String> = self
            .sides
            .iter()
            .filter_map(|s| s.stopped.as_ref().map(|stop| format!("{} stopped: {}", s.side, stop_text(stop))))
            .collect();
        let mut text = format!(
            "reconcile{}: {} difference(s), {} repaired, {} failed, {} of {} API calls",
            if self.dry_run { " (dry run)" } else { "" },
            self.drift(),
            self.repaired(),
            self.failures(),
            self.api_calls,
            self.budget
        );
        for stop in stops {
            text.push_str("; ");
            text.push_str(&stop);
        }
        match &self.subscription {
            SubscriptionCheck::ReEnabled => text.push_str("; webhook subscription was disabled: enabled again"),
            SubscriptionCheck::WouldReEnable => text.push_str("; webhook subscription is disabled"),
            SubscriptionCheck::Failed(reason) => text.push_str(&format!("; webhook subscription: {reason}")),
            SubscriptionCheck::NotConfigured | SubscriptionCheck::Active => {}
        }
        text
    }

    /// Appends the run to the audit trail (the repairs have their own entries, as any event).
    pub async fn audit(&self, audit: &dyn AuditLog, correlation_id: &str) -> Result<(), StoreError> {
        let event_id = format!("{}:{}", super::EVENT_ID_PREFIX, self.started_at.timestamp_millis());
        let outcome = if self.repaired() > 0 { Outcome::Applied } else { Outcome::Skipped };
        let mut entry =
            AuditEntry::new(self.started_at, Direction::PagerdutyToSalesforce, correlation_id, event_id, outcome);
        entry.reason = Some(crate::model::cut(&self.summary(), crate::model::MAX_REASON));
        entry.api_calls = self.api_calls;
        for d in &self.differences {
            let (incidents, records) = (&mut entry.incident_ids, &mut entry.record_ids);
            match d.subject.split_once(':') {
                Some(("incident", id)) => incidents.push(id.to_string()),
                Some((_, id)) => records.push(id.to_string()),
                None => {}
            }
        }
        entry.raw_payload = Some(self.kept());
        audit.append(&entry).await
    }

    /// The report as its audit entry keeps it (JSON, at most [`crate::model::MAX_KEPT_PAYLOAD`]
    /// bytes: differences past that are counted, not kept), for `syncctl reconcile`.
    fn kept(&self) -> String {
        let mut kept = self.clone();
        loop {
            let json = serde_json::to_string(&kept).expect("a report serialises");
            if json.len() <= crate::model::MAX_KEPT_PAYLOAD || kept.differences.is_empty() {
                return json;
            }
            let keep = kept.differences.len() / 2;
            kept.differences_left_off += kept.differences.len() - keep;
            kept.differences.truncate(keep);
        }
    }

    /// The report a run's audit entry keeps (see [`Report::audit`]).
    pub fn of_audit_entry(entry: &AuditEntry) -> Option<Self> {
        // A run's own entry (`reconcile:<ms>`), not one of its repairs (`reconcile-...`).
        entry.event_id.strip_prefix(super::EVENT_ID_PREFIX)?.starts_with(':').then_some(())?;
        serde_json::from_str(entry.raw_payload.as_deref()?).ok()
    }

    /// Records the run's metrics (see [`crate::telemetry::metrics`]).
    pub fn record_metrics(&self) {
        crate::telemetry::metrics::reconcile_run(self.drift(), self.repaired(), self.api_calls);
        crate::telemetry::metrics::reconcile_failures(self.failures());
    }
}

fn stop_text(stop: &Stop) -> String {
    match stop {
        Stop::Budget => "API budget reached".into(),
        Stop::BreakerOpen => "breaker open".into(),
        Stop::Deadline => "deadline near".into(),
        Stop::Failed(reason) => reason.clone(),
    }
}
