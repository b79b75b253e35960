//! `syncctl audit --incident ID | --record ID`: what the bridge did and why.

use std::process::ExitCode;

use clap::Args;
use shared::store::{AuditLog, Subject};

use super::aws::Stack;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// A PagerDuty incident id.
    #[arg(long, conflicts_with = "record", required_unless_present = "record")]
    pub incident: Option<String>,
    /// A Salesforce record id.
    #[arg(long)]
    pub record: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print the entries as JSON lines.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: AuditArgs, stack: &Stack) -> Result<ExitCode, String> {
    let store = stack.store().await?;
    let subject = match (args.incident, args.record) {
        (Some(id), _) => Subject::Incident(id),
        (_, Some(id)) => Subject::Record(id),
        _ => return Err("pass --incident ID or --record ID".into()),
    };
    let entries = store.for_subject(&subject, args.limit).await.map_err(|e| e.to_string())?;
    if args.json {
        for entry in &entries {
            println!("{}", serde_json::to_string(entry).expect("serialises"));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} audit entr{} for {}, newest first",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        subject.key()
    );
    for e in &entries {
        println!(
            "{}  {:<14} {:<24} event {}  api calls {}  {} ms",
            e.at.format("%Y-%m-%d %H:%M:%S"),
            e.outcome.as_str(),
            e.direction.as_str(),
            e.event_id,
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
    Ok(ExitCode::SUCCESS)
}
