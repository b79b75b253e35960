//! The "reconcile" message on the retry queue: EventBridge Scheduler posts
//! `{"kind": "reconcile", "max_api_calls": N}` on the stack's schedule, and the retry function
//! runs one reconcile within its invocation's deadline instead of treating it as an envelope.
//! `syncctl reconcile` posts one too (with `since` and its own `correlation_id`), so that a run by
//! hand repairs with the functions' role and is audited by them, and then reads the run's report
//! off its audit entry.
//!
//! Two runs at once (a second schedule tick while one runs, SQS delivering a copy twice) need no
//! lease of their own: every repair passes its event's gate (one of them applies it, the other
//! finds it done) and the subject's lease, and cursors only move forward. What two runs cost is
//! at most twice one budget, and the schedule's rate is far longer than a run.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Options, Quiet, Report};
use crate::handler::context::Context;
use crate::store::CursorStore;

/// The `kind` of a reconcile message.
pub const KIND: &str = "reconcile";

/// A reconcile message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub kind: String,
    /// The run's API budget; the default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_api_calls: Option<u32>,
    /// Compare from this time instead of the cursors (`syncctl reconcile --since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The run's correlation id in its audit entry (`syncctl reconcile` looks for it there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl Trigger {
    /// A run asked for by hand: its budget, from when, and the id its audit entry will carry.
    pub fn by_hand(max_api_calls: u32, since: Option<DateTime<Utc>>, correlation_id: impl Into<String>) -> Self {
        Self {
            kind: KIND.into(),
            max_api_calls: Some(max_api_calls),
            since,
            correlation_id: Some(correlation_id.into()),
        }
    }

    /// The message body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a trigger serialises")
    }

    /// `Some` when `body` is a reconcile message (an envelope never has `kind` at its top).
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str::<Trigger>(body).ok().filter(|t| t.kind == KIND)
    }
}

/// What the retry function runs a reconcile with: where the cursors and the watched
/// subscription are kept.
#[derive(Clone)]
pub struct Runner {
    pub cursors: Arc<dyn CursorStore>,
}

impl Runner {
    /// Runs one reconcile for `trigger`, logs, audits and measures it. The message is done
    /// whatever the run found (the next schedule tick runs again).
    pub async fn run(
        &self,
        ctx: &Context,
        trigger: &Trigger,
        correlation_id: &str,
        deadline: Option<DateTime<Utc>>,
    ) -> Report {
        let subscription_id = match self.cursors.watched_subscription().await {
            Ok(id) => id,
            Err(err) => {
                tracing::warn!(error = %err, "watched webhook subscription unreadable; the watchdog skips this run");
                None
            }
        };
        let correlation_id = trigger.correlation_id.as_deref().unwrap_or(correlation_id);
        let options = Options {
            max_api_calls: trigger.max_api_calls.unwrap_or(super::DEFAULT_MAX_API_CALLS),
            since: trigger.since,
            subscription_id,
            deadline,
            correlation_id: correlation_id.to_string(),
            ..Options::default()
        };
        let report = super::run(ctx, self.cursors.as_ref(), &options, &Quiet).await;
        report.record_metrics();
        if let Err(err) = report.audit(ctx.stores.audit.as_ref(), correlation_id).await {
            tracing::warn!(error = %err, "the reconcile run could not be audited");
        }
        if report.drift() > 0 {
            tracing::warn!(drift = report.drift(), repaired = report.repaired(), api_calls = report.api_calls,
                summary = %report.summary(), "reconcile found differences: events were lost upstream");
        } else {
            tracing::info!(api_calls = report.api_calls, summary = %report.summary(), "reconcile found no difference");
        }
        report
    }
}
