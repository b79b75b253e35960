//! The clock a simulator stamps its records and events with: the wall clock, or the bridge's
//! own (manual) clock where a test moves time itself, so that the two systems' stamps and the
//! bridge's agree (the schedule explorer, whose hours pass in milliseconds).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use shared::clock::{Clock, SystemClock};

#[derive(Clone)]
pub struct SimClock(pub Arc<dyn Clock>);

impl SimClock {
    pub fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimClock")
    }
}
