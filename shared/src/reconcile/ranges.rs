//! The time ranges a listing pages through. PagerDuty pages by offset only up to
//! [`MAX_PAGED`] items (a page past it is refused), so a range whose first page counts more is
//! listed as its two halves instead, down to one second; a second holding more still is listed as
//! far as paging reaches and named in [`Ranges::unlisted`], and the run goes on (failing there
//! would hold the cursor before that second for good).

use chrono::{DateTime, Duration, Utc};

use crate::pagerduty::requests::MAX_PAGED;

/// Items per page the listings ask for.
pub const PAGE_SIZE: usize = 100;

pub struct Ranges {
    todo: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// What could not be listed in full, for the report.
    pub unlisted: Vec<String>,
}

impl Ranges {
    /// `since..until`, `until` exclusive as PagerDuty takes it.
    pub fn new(since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        Self { todo: vec![(since, until)], unlisted: vec![] }
    }

    /// The next range to list, oldest first.
    pub fn next_range(&mut self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.todo.pop()
    }

    /// After the first page of `range`, which counted `total`: true when the range is to be
    /// listed as its halves instead (they are queued); false to page through it.
    pub fn split(&mut self, (since, until): (DateTime<Utc>, DateTime<Utc>), total: Option<usize>, what: &str) -> bool {
        let Some(total) = total.filter(|t| *t > MAX_PAGED) else { return false };
        let half = Duration::seconds((until - since).num_seconds() / 2);
        if half >= Duration::seconds(1) {
            self.todo.push((since + half, until));
            self.todo.push((since, since + half));
            return true;
        }
        self.unlisted.push(format!(
            "{what} from {since} to {until}: {total}, more than PagerDuty lists by offset ({MAX_PAGED}); the rest was not compared"
        ));
        false
    }

    /// Whether the page at `offset` is past what offset paging reaches (then stop paging the
    /// range; [`Self::split`] has said why when the first page counted).
    pub fn past_paging(&mut self, offset: usize, (since, until): (DateTime<Utc>, DateTime<Utc>), what: &str) -> bool {
        if offset + PAGE_SIZE <= MAX_PAGED {
            return false;
        }
        if !self.unlisted.iter().any(|u| u.starts_with(&format!("{what} from {since} to {until}"))) {
            self.unlisted.push(format!(
                "{what} from {since} to {until}: more than PagerDuty lists by offset ({MAX_PAGED}); the rest was not compared"
            ));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_range_too_long_to_page_is_listed_in_halves_down_to_one_second() {
        let mut r = Ranges::new(t("2026-12-07T10:00:00Z"), t("2026-12-07T10:00:04Z"));
        let whole = r.next_range().unwrap();
        assert!(!r.split(whole, Some(MAX_PAGED), "log entries"), "exactly what paging reaches: paged");
        assert!(r.split(whole, Some(MAX_PAGED + 1), "log entries"));
        assert_eq!(r.next_range(), Some((t("2026-12-07T10:00:00Z"), t("2026-12-07T10:00:02Z"))), "oldest first");
        let one = (t("2026-12-07T10:00:00Z"), t("2026-12-07T10:00:01Z"));
        assert!(!r.split(one, Some(20_000), "log entries"), "a second is not split: paged as far as it goes");
        assert_eq!(r.unlisted.len(), 1, "{:?}", r.unlisted);
        assert!(!r.past_paging(MAX_PAGED - PAGE_SIZE, one, "log entries"));
        assert!(r.past_paging(MAX_PAGED, one, "log entries"));
        assert_eq!(r.unlisted.len(), 1, "said once: {:?}", r.unlisted);
    }
}
