//! PagerDuty: Webhooks v3 signature verification and parsing, and the REST API client.
//!
//! `signature`, `webhook` and `requests` are pure (bytes in, values out). `client` is the REST
//! API v2 client used by `sfdc-to-pd` and `syncctl`; `limiter` keeps it under PagerDuty's
//! per-key rate limit; `error` classifies failures for the retry contract.
//!
//! Receiving (`pd-to-sfdc`):
//! ```no_run
//! # fn f(body: &[u8], header: Option<&str>, current: &[u8], previous: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use shared::pagerduty::{EventData, WebhookEvent, verify};
//! verify(body, header, &[current, previous])?; // 401 on error
//! let event = WebhookEvent::parse(body)?; // 2xx + audit "rejected: <reason>" on error
//! if let EventData::Incident(incident) = &event.data {
//!     let _ = (&incident.status, incident.priority_name(), event.occurred_at);
//! }
//! # Ok(()) }
//! ```
//!
//! Acting (`sfdc-to-pd`): build one [`PagerdutyClient`] per warm Lambda (its caches and limiter
//! are shared by clones), call it, and route errors by [`PagerdutyError::kind`]:
//! `Transient` → retry queue (after [`PagerdutyError::retry_after`]), anything else → DLQ.

pub mod client;
pub mod error;
pub mod id;
pub mod limiter;
pub mod oauth;
pub mod requests;
pub mod shared_budget;
pub mod signature;
pub mod webhook;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod spec_tests;

pub use client::{ACCEPT, Authorization, Incident, IncidentRef, Note, PagerdutyClient, User, WebhookSubscription};
pub use error::PagerdutyError;
pub use id::IncidentId;
pub use limiter::{RateLimit, RateLimiter};
pub use oauth::{AppCredentials, OAuthError, PagerdutyAuth, TokenCache};
pub use requests::{
    Assignees, CreateIncident, PriorityChoice, SUBSCRIBED_EVENTS, StatusUpdate, SubscriptionFilter, Urgency,
};
pub use shared_budget::{SharedBudget, SharedLimit};
pub use signature::{SignatureError, sign, verify};
pub use webhook::{
    Activity, EventClient, EventData, INCIDENT_EVENT_TYPES, IncidentData, Reference, SERVICE_EVENT_TYPES, WebhookError,
    WebhookEvent,
};
