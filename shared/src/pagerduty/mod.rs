//! PagerDuty: Webhooks v3 signature verification and parsing, and the REST API client.
//!
//! `signature`, `webhook` and `requests` are pure (bytes in, values out). `client` is the REST
//! API v2 client used by `sfdc-to-pd` and `syncctl`; `limiter` keeps it under PagerDuty's
//! per-key rate limit; `error` classifies failures for the retry contract.

pub mod client;
pub mod error;
pub mod limiter;
pub mod requests;
pub mod signature;
pub mod webhook;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod spec_tests;

pub use client::{ACCEPT, Incident, IncidentRef, PagerdutyClient, User, WebhookSubscription};
pub use error::{ErrorKind, PagerdutyError};
pub use limiter::{RateLimit, RateLimiter};
pub use requests::{Assignees, CreateIncident, PriorityChoice, SUBSCRIBED_EVENTS, SubscriptionFilter, Urgency};
pub use signature::{SignatureError, sign, verify};
pub use webhook::{EventClient, EventData, IncidentData, Reference, WebhookError, WebhookEvent};
