//! Everything the three functions share at run time, built once per process (in `main`, the
//! local demo or a test) and borrowed by every invocation.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::handler::idempotency::Idempotency;
use crate::handler::ports::{PagerdutyPort, Pipeline, SalesforcePort};
use crate::handler::settle::{Dispatch, Queues, RetryPolicy};
use crate::pagerduty::client::PagerdutyClient;
use crate::retry::breaker::Breaker;
use crate::rules::cache::RulesCache;
use crate::salesforce::client::SalesforceClient;
use crate::secrets::CachedSecrets;
use crate::store::Stores;

/// Settings read from [`crate::config::Config`] that the handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub webhook_secret_id: String,
    pub inbound_secret_id: String,
    /// The org every Salesforce post must come from; `None` (tests only: configuration
    /// requires it) refuses every post.
    pub org_id: Option<crate::salesforce::id::OrgId>,
    /// The secret holding the tokens Outbound Message endpoint URLs carry; `None`: the route
    /// is off (every request refused).
    pub outbound_message_secret_id: Option<String>,
    /// Salesforce username of the integration user: its changes are never sent back.
    pub integration_user: String,
    /// Salesforce id of the integration user (optional): a change whose `LastModifiedById` is this
    /// user is the bridge's own, also when the post names no user (Outbound Messages).
    pub integration_user_id: String,
    /// PagerDuty id of the user the bridge acts as (optional): a webhook whose agent is this user
    /// is the bridge's own change. Empty: looked up once by the `From` email.
    pub pagerduty_user_id: String,
    /// Do not start calling a service with less time than this left before the deadline:
    /// queue instead (PagerDuty waits about 5 s for the answer).
    pub min_time_left: Duration,
    /// Time kept after the last outbound call's timeout for the event to settle (audit entry,
    /// retry-queue send, store writes) before the function is stopped.
    pub settle_margin: Duration,
    /// How many records of one Salesforce post are worked on at once.
    pub record_concurrency: usize,
    /// The services whose open incidents the agent console's status panel shows when the
    /// component names none (`CONSOLE_SERVICE_IDS`, comma-separated; empty: the panel asks).
    pub console_service_ids: Vec<String>,
    /// The service an agent console escalation opens its incident on when the post names none
    /// (`CONSOLE_ESCALATION_SERVICE_ID`; `None`: escalations are refused as not set up).
    pub console_escalation_service_id: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            webhook_secret_id: "pd-webhook".into(),
            inbound_secret_id: "sf-inbound".into(),
            org_id: None,
            outbound_message_secret_id: None,
            integration_user: String::new(),
            integration_user_id: String::new(),
            pagerduty_user_id: String::new(),
            min_time_left: Duration::from_millis(1500),
            settle_margin: crate::handler::salesforce_exec::SETTLE_MARGIN,
            record_concurrency: 8,
            console_service_ids: Vec::new(),
            console_escalation_service_id: None,
        }
    }
}

/// The shared run-time context, the composition root: one copy of each port. Only the route
/// entry points take it; below them, an attempt borrows what it uses as a [`Pipeline`]
/// ([`Context::pipeline`]) and settling as a [`Dispatch`] ([`Context::dispatch`]).
#[derive(Clone)]
pub struct Context {
    pub(crate) stores: Stores,
    pub idempotency: Idempotency,
    pub clock: Arc<dyn Clock>,
    pub secrets: Arc<CachedSecrets>,
    pub rules: Arc<RulesCache>,
    pub(crate) queues: Queues,
    pub(crate) policy: RetryPolicy,
    pub pagerduty: Arc<PagerdutyClient>,
    pub salesforce: Arc<SalesforceClient>,
    pagerduty_breaker: Arc<Breaker>,
    salesforce_breaker: Arc<Breaker>,
    pub settings: Settings,
    /// The agent console's PagerDuty reads of the last few seconds, shared by this instance's
    /// requests (see [`crate::handler::console::ReadCache`]).
    pub(crate) console_reads: Arc<crate::handler::console::ReadCache>,
}

/// The parts a [`Context`] is built from; the rest (idempotency gate, breakers) is
/// derived here so that `main`, the demo and the tests wire the same way.
pub struct Parts {
    pub stores: Stores,
    pub clock: Arc<dyn Clock>,
    pub secrets: Arc<CachedSecrets>,
    pub rules: Arc<RulesCache>,
    pub retry_queue: Arc<dyn crate::retry::queue::Queue>,
    pub dead_letter_queue: Arc<dyn crate::retry::queue::Queue>,
    pub pagerduty: PagerdutyClient,
    pub salesforce: SalesforceClient,
    pub settings: Settings,
    pub idempotency_ttl: Duration,
    pub retry_policy: crate::handler::settle::RetryPolicy,
    pub breaker_policy: crate::retry::breaker::BreakerPolicy,
}

impl Context {
    /// What settling an event uses (the queues, the retry policy, the audit trail, the gate,
    /// the subjects), borrowed from this context's one copy of each.
    pub fn dispatch(&self) -> Dispatch<'_> {
        Dispatch {
            queues: &self.queues,
            audit: self.stores.audit.as_ref(),
            clock: self.clock.as_ref(),
            policy: &self.policy,
            idempotency: &self.idempotency,
            links: self.stores.links.as_ref(),
        }
    }

    /// What the ordering steps use (the subjects, the clock, the retry policy), borrowed.
    pub fn subject_ports(&self) -> crate::handler::steps::SubjectPorts<'_> {
        crate::handler::steps::SubjectPorts {
            links: self.stores.links.as_ref(),
            clock: self.clock.as_ref(),
            policy: &self.policy,
        }
    }

    /// PagerDuty as the pipeline uses it: the client, its breaker, the user the bridge acts as.
    pub fn pagerduty_port(&self) -> PagerdutyPort<'_> {
        PagerdutyPort {
            client: &self.pagerduty,
            breaker: &self.pagerduty_breaker,
            user_id: &self.settings.pagerduty_user_id,
        }
    }

    /// Salesforce as the pipeline uses it: the client, its breaker, the integration user.
    pub fn salesforce_port(&self) -> SalesforcePort<'_> {
        SalesforcePort {
            client: &self.salesforce,
            breaker: &self.salesforce_breaker,
            integration_user: &self.settings.integration_user,
            integration_user_id: &self.settings.integration_user_id,
        }
    }

    /// What one attempt at an event uses (the subjects, the rules, the two services, the time
    /// margin), borrowed.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            subjects: self.subject_ports(),
            rules: &self.rules,
            pagerduty: self.pagerduty_port(),
            salesforce: self.salesforce_port(),
            min_time_left: self.settings.min_time_left,
            settle_margin: self.settings.settle_margin,
        }
    }

    pub fn new(parts: Parts) -> Self {
        let Parts {
            stores,
            clock,
            secrets,
            rules,
            retry_queue,
            dead_letter_queue,
            pagerduty,
            salesforce,
            settings,
            idempotency_ttl,
            retry_policy,
            breaker_policy,
        } = parts;
        let breaker =
            |service: &str| Arc::new(Breaker::new(service, stores.breakers.clone(), clock.clone(), breaker_policy));
        let idempotency = Idempotency::new(stores.idempotency.clone(), clock.clone(), idempotency_ttl);
        Self {
            queues: Queues { retry: retry_queue, dlq: dead_letter_queue },
            policy: retry_policy,
            idempotency,
            pagerduty_breaker: breaker("pagerduty"),
            salesforce_breaker: breaker("salesforce"),
            pagerduty: Arc::new(pagerduty),
            salesforce: Arc::new(salesforce),
            stores,
            clock,
            secrets,
            rules,
            settings,
            console_reads: Arc::new(crate::handler::console::ReadCache::default()),
        }
    }
}
