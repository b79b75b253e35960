//! The simulated account's state: incidents (indexed by id and dedup key), notes, requests the
//! simulator saw, rate-limit windows, and the ids it hands out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::SecondsFormat;
use serde_json::Value;

use crate::faults::Faults;

use super::{LoggedRequest, PdSimConfig};

#[derive(Default)]
pub(super) struct World {
    pub(super) incidents: Vec<Value>,
    /// Incident id -> its index in `incidents` (incidents are never removed).
    incident_index: HashMap<String, usize>,
    /// `incident_key` -> indexes in `incidents`, oldest first: lookups by id or dedup key stay
    /// O(1) however many incidents a long run creates, instead of a scan of every incident.
    incidents_by_key: HashMap<String, Vec<usize>>,
    pub(super) next_number: u64,
    pub(super) next_id: u64,
    pub(super) notes: HashMap<String, Vec<Value>>,
    /// Incident id -> its status updates, oldest first.
    pub(super) status_updates: HashMap<String, Vec<Value>>,
    /// Incident id -> custom field name -> value (fields never set are absent).
    pub(super) custom_field_values: HashMap<String, serde_json::Map<String, Value>>,
    /// The incident log, oldest first ([`super::log_entries`]).
    pub(super) log_entries: Vec<Value>,
    pub(super) responder_requests: Vec<Value>,
    pub(super) workflow_instances: Vec<Value>,
    pub(super) invocations: Vec<Value>,
    pub(super) subscriptions: Vec<Value>,
    pub(super) webhook_events: Vec<Value>,
    pub(super) requests: Vec<LoggedRequest>,
    pub(super) windows: HashMap<String, Window>,
    /// Per token, the most requests that arrived in one window (answered or refused).
    pub(super) peaks: HashMap<String, u32>,
    /// App tokens issued by the token endpoint ([`super::oauth`]).
    pub(super) app_tokens: HashMap<String, AppToken>,
    /// Requests the token endpoint received, refused ones included.
    pub(super) token_requests: u32,
    /// The next this many token requests are answered 503 (an identity outage).
    pub(super) token_outage: u32,
}

/// An issued app token.
#[derive(Debug, Clone)]
pub(super) struct AppToken {
    pub(super) client_id: String,
    pub(super) scopes: Vec<String>,
    pub(super) expires_at: Instant,
}

impl World {
    /// An empty account: incident numbers and ids start at 1.
    pub(super) fn new() -> Self {
        World { next_number: 1, next_id: 1, ..Default::default() }
    }

    pub(super) fn incident_pos(&self, id: &str) -> Option<usize> {
        self.incident_index.get(id).copied()
    }

    pub(super) fn incident(&self, id: &str) -> Option<&Value> {
        self.incident_pos(id).map(|i| &self.incidents[i])
    }

    /// Incidents with `incident_key`, oldest first.
    pub(super) fn incidents_with_key<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a Value> + 'a {
        self.incidents_by_key.get(key).into_iter().flatten().map(|i| &self.incidents[*i])
    }

    pub(super) fn push_incident(&mut self, incident: Value) {
        let pos = self.incidents.len();
        if let Some(id) = incident["id"].as_str() {
            self.incident_index.insert(id.to_string(), pos);
        }
        if let Some(key) = incident["incident_key"].as_str() {
            self.incidents_by_key.entry(key.to_string()).or_default().push(pos);
        }
        self.incidents.push(incident);
    }
}

pub(super) struct Shared {
    pub(super) config: Mutex<PdSimConfig>,
    pub(super) base_url: String,
    pub(super) faults: Faults,
    pub(super) world: Mutex<World>,
}

impl Shared {
    /// The configuration as it is now (tests change it while the simulator runs).
    pub(super) fn config(&self) -> PdSimConfig {
        self.config.lock().unwrap().clone()
    }
}

/// PagerDuty's timestamps: whole seconds, UTC.
pub(super) fn now(config: &super::PdSimConfig) -> String {
    config.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Deterministic PagerDuty-looking ids: a letter and six base-36 digits.
pub(super) fn next_id(w: &mut World, prefix: char) -> String {
    let mut n = w.next_id;
    w.next_id += 1;
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize];
        n /= 36;
    }
    format!("{prefix}{}", String::from_utf8_lossy(&digits))
}

/// A token's current rate-limit window.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) start: Instant,
    /// Requests let through.
    pub(super) admitted: u32,
    /// Requests that arrived, refused ones included.
    pub(super) arrived: u32,
}
