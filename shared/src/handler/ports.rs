//! The ports one attempt at an event uses, borrowed from the
//! [`Context`](crate::handler::context::Context) as [`Dispatch`](crate::handler::settle::Dispatch)
//! is for settling and [`SubjectPorts`] for ordering: PagerDuty and Salesforce in the same shape
//! (the client, its breaker, who the bridge is on that side), and [`Pipeline`], what an attempt
//! of either direction uses. Below the route entry points nothing takes the whole context.

use std::time::Duration;

use crate::handler::steps::SubjectPorts;
use crate::pagerduty::{PagerdutyClient, PagerdutyError};
use crate::retry::breaker::{Breaker, Signal};
use crate::rules::RulesCache;
use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::telemetry::metrics;

/// Share of the org's daily API limit above which the breaker opens (pause before it runs dry).
pub const API_USAGE_PAUSE_SHARE: f64 = 0.9;

/// PagerDuty as the pipeline uses it: the client, its breaker, and the user the bridge acts as.
#[derive(Clone, Copy)]
pub struct PagerdutyPort<'a> {
    pub client: &'a PagerdutyClient,
    pub breaker: &'a Breaker,
    /// PagerDuty id of the user the bridge acts as, as configured; empty: the client looks it up
    /// once by its `From` email.
    pub user_id: &'a str,
}

impl PagerdutyPort<'_> {
    /// Tells the breaker about a failed call: a transient failure PagerDuty saw counts; a call
    /// never sent (our own limiter, no time left) says nothing about PagerDuty.
    pub async fn report_failure(&self, err: &PagerdutyError) {
        if err.is_transient() && !err.not_sent() {
            let _ = self.breaker.record_failure(Signal::Transient(err.to_string())).await;
        }
    }
}

/// Salesforce as the pipeline uses it: the client, its breaker (which the org's API usage also
/// opens, [`SalesforcePort::watch_usage`]), and the integration user the bridge writes as.
#[derive(Clone, Copy)]
pub struct SalesforcePort<'a> {
    pub client: &'a SalesforceClient,
    pub breaker: &'a Breaker,
    /// Username of the integration user: its changes are never sent back.
    pub integration_user: &'a str,
    /// Salesforce id of the integration user (may be empty), for changes that name no user.
    pub integration_user_id: &'a str,
}

impl SalesforcePort<'_> {
    /// Tells the breaker about a failed call: exhaustion opens it at once, other transient errors
    /// count. A key that could not be read was never sent: Secrets Manager's outage is not Salesforce's.
    pub async fn report_failure(&self, err: &SalesforceError) {
        if matches!(err, SalesforceError::Secret(_)) {
            return;
        }
        if err.error_codes().contains(&"REQUEST_LIMIT_EXCEEDED") {
            let _ = self.breaker.record_failure(Signal::Exhausted(err.to_string())).await;
        } else if err.is_transient() {
            let _ = self.breaker.record_failure(Signal::Transient(err.to_string())).await;
        }
    }

    /// Watches the org's API usage after a call: above the pause share the breaker opens. Returns
    /// true when the usage is above the share: the call's success must then not close the breaker
    /// again (the pause holds until a half-open probe sees the usage below the share).
    pub async fn watch_usage(&self) -> bool {
        let Some(usage) = self.client.api_usage() else { return false };
        metrics::salesforce_api_usage_percent(usage.share() * 100.0);
        if usage.share() < API_USAGE_PAUSE_SHARE {
            return false;
        }
        let reason = format!("API usage {}/{} is above {:.0}%", usage.used, usage.limit, API_USAGE_PAUSE_SHARE * 100.0);
        let _ = self.breaker.record_failure(Signal::Exhausted(reason)).await;
        true
    }
}

/// What one attempt at an event uses, in either direction, live or from the retry queue: the
/// subjects, the rules, the two services, and the time a call must still have before the deadline.
#[derive(Clone, Copy)]
pub struct Pipeline<'a> {
    pub subjects: SubjectPorts<'a>,
    pub rules: &'a RulesCache,
    pub pagerduty: PagerdutyPort<'a>,
    pub salesforce: SalesforcePort<'a>,
    /// Do not start calling a service with less time than this left: queue instead.
    pub min_time_left: Duration,
    /// No call is started whose timeout would leave less than this before the deadline.
    pub settle_margin: Duration,
}
