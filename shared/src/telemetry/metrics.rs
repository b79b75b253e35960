//! Metric names and helpers. Domain code records through the `metrics` facade; each function's
//! `main` installs the EMF collector (`adapters::telemetry::init_emf`) and flushes it after every
//! invocation, so metrics reach CloudWatch through the log stream with no API call and no latency.
//!
//! Names and dimensions are fixed here (and in `template.yaml`'s alarms and dashboard).

use metrics::{counter, gauge, histogram};

pub const NAMESPACE: &str = "PdSfdcSync";

pub const EVENTS_RECEIVED: &str = "EventsReceived";
pub const EVENTS_ACCEPTED: &str = "EventsAccepted";
pub const EVENTS_SKIPPED: &str = "EventsSkipped";
pub const EVENTS_REJECTED: &str = "EventsRejected";
pub const EVENTS_DUPLICATE: &str = "EventsDuplicate";
pub const EVENTS_STALE: &str = "EventsStale";
pub const RULES_MATCHED: &str = "RulesMatched";
pub const ACTIONS_SUCCEEDED: &str = "ActionsSucceeded";
pub const ACTIONS_FAILED: &str = "ActionsFailed";
pub const API_CALLS: &str = "ApiCalls";
pub const RETRIES: &str = "Retries";
pub const DLQ_SENDS: &str = "DlqSends";
pub const BREAKER_OPEN: &str = "BreakerOpen";
pub const HANDLER_LATENCY: &str = "HandlerLatency";
pub const SALESFORCE_API_USAGE: &str = "SalesforceApiUsagePercent";
pub const ERRORS: &str = "Errors";
/// Differences a reconcile run found: non-zero means events were lost upstream.
pub const RECONCILE_DRIFT: &str = "ReconcileDrift";
/// Synthetic events of a run the pipeline applied.
pub const RECONCILE_REPAIRS: &str = "ReconcileRepairs";
/// API calls a run spent (of its budget).
pub const RECONCILE_API_CALLS: &str = "ReconcileApiCalls";
/// Runs that could not finish (a side's listing failed, the cursor could not be stored), and
/// changes a run could not compare or repair.
pub const RECONCILE_FAILURES: &str = "ReconcileFailures";
/// Runs that found the PagerDuty webhook subscription disabled (and enabled it again).
pub const WEBHOOK_SUBSCRIPTION_DISABLED: &str = "WebhookSubscriptionDisabled";

pub fn event_received() {
    counter!(EVENTS_RECEIVED).increment(1);
}

/// An event applied (`EventsAccepted` by `Function`: the dashboard's "accepted").
pub fn event_accepted() {
    counter!(EVENTS_ACCEPTED).increment(1);
}

/// `n` events a route took in: authentic, well-formed and made safe (applied, skipped, duplicate,
/// stale, queued or dead-lettered: nothing the sender must send again). `EventsAccepted` by
/// `Function` and `Route` (the route's path): the freshness alarms' signal, which must not stop
/// while the sender works, whatever the rules decide about the events.
pub fn route_accepted(route: &'static str, n: usize) {
    if n > 0 {
        counter!(EVENTS_ACCEPTED, "Route" => route).increment(n as u64);
    }
}

pub fn event_skipped() {
    counter!(EVENTS_SKIPPED).increment(1);
}

/// `reason`: signature, malformed, stale_timestamp, org_mismatch, bad_request, ...
pub fn event_rejected(reason: &'static str) {
    counter!(EVENTS_REJECTED, "Reason" => reason).increment(1);
}

pub fn event_duplicate() {
    counter!(EVENTS_DUPLICATE).increment(1);
}

pub fn event_stale() {
    counter!(EVENTS_STALE).increment(1);
}

pub fn rules_matched(n: usize) {
    counter!(RULES_MATCHED).increment(n as u64);
}

pub fn action(action: &'static str, ok: bool) {
    if ok {
        counter!(ACTIONS_SUCCEEDED, "Action" => action).increment(1);
    } else {
        counter!(ACTIONS_FAILED, "Action" => action).increment(1);
    }
}

/// `service`: salesforce or pagerduty.
pub fn api_calls(service: &'static str, n: u64) {
    counter!(API_CALLS, "Service" => service).increment(n);
}

pub fn retry_enqueued() {
    counter!(RETRIES).increment(1);
}

pub fn dlq_send() {
    counter!(DLQ_SENDS).increment(1);
}

pub fn breaker_state(service: &str, open: bool) {
    gauge!(BREAKER_OPEN, "Service" => service.to_string()).set(if open { 1.0 } else { 0.0 });
}

pub fn handler_latency_ms(ms: f64) {
    histogram!(HANDLER_LATENCY).record(ms);
}

pub fn salesforce_api_usage_percent(percent: f64) {
    gauge!(SALESFORCE_API_USAGE).set(percent);
}

pub fn error() {
    counter!(ERRORS).increment(1);
}

/// One reconcile run's figures (see [`crate::reconcile::Report::record_metrics`]).
pub fn reconcile_run(drift: usize, repaired: usize, api_calls: u32) {
    counter!(RECONCILE_DRIFT).increment(drift as u64);
    counter!(RECONCILE_REPAIRS).increment(repaired as u64);
    counter!(RECONCILE_API_CALLS).increment(u64::from(api_calls));
}

pub fn reconcile_failure() {
    reconcile_failures(1);
}

pub fn reconcile_failures(n: usize) {
    counter!(RECONCILE_FAILURES).increment(n as u64);
}

/// A run found the webhook subscription disabled. A count, not a gauge: a gauge is written
/// again by every flush of a warm container, and kept the SEV2 alarm red after the run enabled
/// the subscription again.
pub fn webhook_subscription_found_disabled() {
    counter!(WEBHOOK_SUBSCRIPTION_DISABLED).increment(1);
}
