//! The API calls a run may spend, counted at the two clients: every request either makes counts
//! (the run's listing and reads, and the calls the pipeline makes for its repairs).

use std::sync::Arc;

use crate::pagerduty::client::PagerdutyClient;
use crate::salesforce::client::SalesforceClient;

/// A run's allowance. Before each step the run asks whether the step's most expensive outcome
/// still fits ([`Budget::allows`]), so the limit is never passed.
#[derive(Clone)]
pub struct Budget {
    limit: u32,
    pagerduty: Arc<PagerdutyClient>,
    salesforce: Arc<SalesforceClient>,
    start: u64,
}

impl Budget {
    pub fn new(limit: u32, pagerduty: Arc<PagerdutyClient>, salesforce: Arc<SalesforceClient>) -> Self {
        let start = pagerduty.api_calls() + salesforce.api_calls();
        Self { limit, pagerduty, salesforce, start }
    }

    /// Calls made since the run started (by this process: a client shared with live traffic
    /// counts that traffic too, which only makes the run stop sooner).
    pub fn spent(&self) -> u32 {
        let now = self.pagerduty.api_calls() + self.salesforce.api_calls();
        u32::try_from(now.saturating_sub(self.start)).unwrap_or(u32::MAX)
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether `calls` more fit.
    pub fn allows(&self, calls: u32) -> bool {
        self.spent().saturating_add(calls) <= self.limit
    }
}
