//! `syncctl audit`: what the bridge did and why, for one incident or record, or for every event
//! in a time window (`--since 2h`, `--until 2026-11-22T11:00:00Z`): the timeline of a
//! post-incident review, as a table (oldest first) or `--json`.
//!
//! How the table is read: one subject's audit partition (`AUDIT#INC#<id>` / `AUDIT#REC#<id>`,
//! a Query, newest first, filtered to the window), or for a window alone the day partitions
//! (`AUDIT#DAY#<day>`, one Query per day with the sort key in the window). Never a Scan; at most
//! `--limit` entries, and the output says when more were left. Entries are kept 90 days.

use chrono::{DateTime, Duration, Utc};
use clap::Args;
use serde_json::json;
use shared::model::AuditEntry;
use shared::store::{AuditLog, Subject};

use crate::exit;
use crate::failure::Failure;
use crate::settings::{Globals, Settings};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// A PagerDuty incident id.
    #[arg(long, conflicts_with = "record")]
    pub incident: Option<String>,
    /// A Salesforce record id.
    #[arg(long)]
    pub record: Option<String>,
    /// Start of the window: RFC 3339 (2026-11-22T10:00:00Z) or an age (90s, 30m, 2h, 7d).
    #[arg(long, value_parser = parse_instant, value_name = "TIME")]
    pub since: Option<DateTime<Utc>>,
    /// End of the window (default: now), in the same forms.
    #[arg(long, value_parser = parse_instant, value_name = "TIME")]
    pub until: Option<DateTime<Utc>>,
    /// At most this many entries.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

/// RFC 3339, or an age before now: a number and s, m, h or d.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is neither RFC 3339 (2026-11-22T10:00:00Z) nor an age (30m, 2h, 7d)"))?;
    let age = match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        _ => return Err(format!("{text:?}: an age takes s, m, h or d (30m, 2h, 7d)")),
    };
    Ok(Utc::now() - age)
}

pub async fn run(args: AuditArgs, globals: &Globals) -> Result<u8, Failure> {
    let subject = match (args.incident, args.record) {
        (Some(id), _) => Some(Subject::Incident(id)),
        (_, Some(id)) => Some(Subject::Record(id)),
        _ => None,
    };
    let until = args.until.unwrap_or_else(Utc::now);
    if subject.is_none() && args.since.is_none() {
        return Err(Failure::Usage(
            "pass --incident ID, --record ID, or a window with --since (e.g. --since 2h)".into(),
        ));
    }
    if args.since.is_some_and(|since| since > until) {
        return Err(Failure::Usage("--since is after --until".into()));
    }
    let settings = Settings::resolve(globals).await?;
    let store = settings.store()?;
    let failed = |e: shared::store::StoreError| Failure::of(settings.table_label(), &e);
    let (mut entries, truncated, read) = match &subject {
        Some(subject) => {
            // Newest first: read one more than asked to tell whether more were left.
            let mut found = store.for_subject(subject, args.limit + 1).await.map_err(failed)?;
            let truncated = found.len() > args.limit;
            found.truncate(args.limit);
            found.retain(|e| e.at <= until && args.since.is_none_or(|since| e.at >= since));
            found.reverse();
            (found, truncated, format!("Query of partition AUDIT#{}", partition(subject)))
        }
        None => {
            let since = args.since.expect("checked above");
            let (found, truncated) = store.audit_between(since, until, args.limit).await.map_err(failed)?;
            let days = (until.date_naive() - since.date_naive()).num_days() + 1;
            (found, truncated, format!("Query of {days} day partition(s) AUDIT#DAY#<day>, sort key in the window"))
        }
    };
    entries.sort_by_key(|e| e.at);
    if globals.json {
        let doc = json!({
            "subject": subject,
            "since": args.since,
            "until": until,
            "read": read,
            "truncated": truncated,
            "count": entries.len(),
            "entries": entries,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
        return Ok(exit::OK);
    }
    let about = subject.as_ref().map_or("every subject".to_string(), Subject::key);
    let window = match args.since {
        Some(since) => {
            format!(" from {} to {}", since.format("%Y-%m-%d %H:%M:%S"), until.format("%Y-%m-%d %H:%M:%S UTC"))
        }
        None => String::new(),
    };
    println!(
        "{} audit entr{} for {about}{window}, oldest first{}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        if truncated {
            format!(" (more were left: raise --limit above {} or narrow the window)", args.limit)
        } else {
            String::new()
        }
    );
    for e in &entries {
        print_entry(e);
    }
    Ok(exit::OK)
}

fn partition(subject: &Subject) -> String {
    match subject {
        Subject::Incident(id) => format!("INC#{id}"),
        Subject::Record(id) => format!("REC#{id}"),
    }
}

fn print_entry(e: &AuditEntry) {
    let subjects: Vec<&str> = e.incident_ids.iter().chain(&e.record_ids).map(String::as_str).collect();
    println!(
        "{}  {:<14} {:<24} event {}  {}  api calls {}  {} ms",
        e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
        e.outcome.as_str(),
        e.direction.as_str(),
        e.event_id,
        if subjects.is_empty() { "-".to_string() } else { subjects.join(",") },
        e.api_calls,
        e.duration_ms
    );
    if !e.rules_matched.is_empty() {
        println!("    rules: {}", e.rules_matched.join(", "));
    }
    for a in &e.actions {
        println!(
            "    {} {} on {} ({}){}",
            if a.ok { "ok  " } else { "FAIL" },
            a.action,
            a.target,
            a.rule,
            a.detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
        );
    }
    if let Some(reason) = &e.reason {
        println!("    why: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_is_rfc3339_or_an_age() {
        assert_eq!(parse_instant("2026-11-22T10:00:00Z").unwrap().to_rfc3339(), "2026-11-22T10:00:00+00:00");
        let two_hours = Utc::now() - parse_instant("2h").unwrap();
        assert!((two_hours - Duration::hours(2)).num_seconds().abs() < 5);
        assert!(parse_instant("2w").unwrap_err().contains("s, m, h or d"));
        assert!(parse_instant("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
