//! Which changes a run looks at: from the side's cursor (less an overlap) to a little before now.
//!
//! Both services stamp changes in whole seconds (Salesforce's `SystemModstamp`, PagerDuty's
//! `last_status_change_at`), so a second change within the second the last run ended in has the
//! same stamp as one that run saw: the window starts one second before the cursor and the
//! per-event gate drops what the last run handled already. Changes in the last
//! [`QUIET_SECONDS`] are left for the next run, so that a run never reads a record while its
//! second is still open (see [`repair_time`]).

use chrono::{DateTime, Duration, Utc};

/// How far the window reaches back before a side's cursor.
pub const OVERLAP_SECONDS: i64 = 1;
/// Changes younger than this are left for the next run.
pub const QUIET_SECONDS: i64 = 2;

/// The changes one run of one side compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Window {
    /// From `cursor` (or `now - first_run` before any run; `since` overrides both) to
    /// `now - QUIET_SECONDS`.
    pub fn of(
        cursor: Option<DateTime<Utc>>,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        first_run: Duration,
    ) -> Self {
        let until = whole_second(now) - Duration::seconds(QUIET_SECONDS);
        let start = since.or(cursor.map(|c| c - Duration::seconds(OVERLAP_SECONDS))).unwrap_or(now - first_run);
        Self { since: whole_second(start).min(until), until }
    }

    /// Whether a change stamped `at` is in the window (both ends included).
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.since && at <= self.until
    }
}

/// `at` with its fraction of a second dropped.
pub fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// The time a repair of a change stamped `at` (a whole second) is ordered at: the end of that
/// second. The live delivery of the same change, if it still comes, happened within the second
/// (PagerDuty's webhook says when to the millisecond, its REST API to the second) and finds the
/// pieces of state the repair set newer than itself: it is stale, not applied twice. Any later
/// change happened after the run read the state, at least [`QUIET_SECONDS`] after `at`, and is
/// applied as usual.
pub fn repair_time(at: DateTime<Utc>) -> DateTime<Utc> {
    whole_second(at) + Duration::milliseconds(999)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_window_overlaps_the_last_run_by_a_second_and_ends_before_the_open_second() {
        let now = t("2026-12-03T08:00:10.700Z");
        let w = Window::of(Some(t("2026-12-03T07:59:00Z")), None, now, Duration::days(1));
        assert_eq!(w.since, t("2026-12-03T07:58:59Z"));
        assert_eq!(w.until, t("2026-12-03T08:00:08Z"));
        assert!(w.contains(t("2026-12-03T07:59:00Z")), "the cursor's own second is looked at again");
    }

    #[test]
    fn since_overrides_the_cursor_and_the_first_run_looks_back() {
        let now = t("2026-12-03T08:00:00Z");
        let w = Window::of(Some(t("2026-12-03T07:59:00Z")), Some(t("2026-12-01T00:00:00Z")), now, Duration::days(1));
        assert_eq!(w.since, t("2026-12-01T00:00:00Z"));
        assert_eq!(Window::of(None, None, now, Duration::days(1)).since, t("2026-12-02T08:00:00Z"));
    }

    #[test]
    fn a_repair_is_ordered_after_its_change_and_before_any_later_one() {
        let at = t("2026-12-03T08:00:00Z");
        assert!(repair_time(at) > at + Duration::milliseconds(998), "after every moment of its second");
        assert!(repair_time(at) < at + Duration::seconds(QUIET_SECONDS), "before any change a run did not see");
    }
}
