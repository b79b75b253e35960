//! PagerDuty: Webhooks v3 signature verification and parsing, and the REST API client.
//!
//! `signature` and `webhook` are pure (bytes in, values out). `client` is the REST API v2 client
//! used by `sfdc-to-pd` and `syncctl`; `limiter` keeps it under PagerDuty's per-key rate limit.

pub mod signature;
pub mod webhook;

pub use signature::{SignatureError, sign, verify};
pub use webhook::{EventClient, EventData, IncidentData, Reference, WebhookError, WebhookEvent};
