//! `syncctl rules check FILE`, `rules test FILE EVENT` and `rules push FILE`.
//!
//! Problems in a rules file are printed `FILE:LINE:COL: where: what`, the form editors and CI
//! annotate. The loader tracks lines; the column is where that line's content starts (its key or
//! list item), which is where the problem's node begins in a block-style document.

mod payload;

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;
use shared::rules::{Evaluation, Rules};

use crate::exit;
use crate::failure::Failure;
use crate::settings::{Globals, Settings};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file; lists every problem as FILE:LINE: message. Exit 1 when invalid.
    Check {
        /// The rules YAML file.
        file: PathBuf,
        /// Salesforce's changes come as Change Data Capture events: also list the conditions
        /// the first event of a record cannot match (change events carry no old values).
        #[arg(long)]
        change_events: bool,
    },
    /// Evaluate an event against a rules file and print the plan and why each rule did or did not match.
    Test {
        /// The rules YAML file.
        file: PathBuf,
        /// The event: a PagerDuty webhook body, an Apex trigger post, an Outbound Message (XML),
        /// any file in events/ (API Gateway or SQS events), or a normalised event
        /// (events/rules/*.event.json).
        event: PathBuf,
    },
    /// Validate a rules file and store it as the next version in the table; the functions pick
    /// it up within a minute (RULES_MAX_AGE_SECONDS), without a redeploy.
    Push {
        /// The rules YAML file.
        file: PathBuf,
        /// Who pushed it, for the record.
        #[arg(long, env = "USER", default_value = "syncctl")]
        by: String,
    },
}

pub async fn run(cmd: RulesCommand, globals: &Globals) -> Result<u8, Failure> {
    match cmd {
        RulesCommand::Check { file, change_events } => check(&file, change_events, globals.json),
        RulesCommand::Test { file, event } => test(&file, &event, globals.json).await,
        RulesCommand::Push { file, by } => push(&file, &by, globals).await,
    }
}

/// `syncctl rules push FILE`: a bad document never replaces a good one.
async fn push(file: &Path, by: &str, globals: &Globals) -> Result<u8, Failure> {
    let (text, rules) = match load(file, globals.json)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let settings = Settings::resolve(globals).await?;
    let store = settings.store()?;
    let version = shared::store::RulesStore::put_rules(store.as_ref(), &text, by, chrono::Utc::now())
        .await
        .map_err(|e| Failure::of(settings.table_label(), &e))?;
    if globals.json {
        println!("{}", json!({"file": file, "version": version, "rules": rules.rule_count()}));
    } else {
        println!(
            "stored {} ({} rule(s)) as version {version}; the functions use it within a minute",
            file.display(),
            rules.rule_count()
        );
    }
    Ok(exit::OK)
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

/// The text and the rules, or the exit code after every problem was printed.
fn load(path: &Path, json: bool) -> Result<Result<(String, Rules), u8>, Failure> {
    let text = read(path)?;
    Ok(match Rules::from_yaml(&text) {
        Ok(rules) => Ok((text, rules)),
        Err(errors) => {
            if json {
                let problems: Vec<_> = errors
                    .iter()
                    .map(|e| {
                        json!({"file": path, "line": e.line, "column": column(&text, e.line), "path": e.path, "message": e.message})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"valid": false, "problems": problems})).expect("serialises")
                );
            } else {
                for e in errors.iter() {
                    eprintln!("{}:{}:{}: {}: {}", path.display(), e.line, column(&text, e.line), e.path, e.message);
                }
                eprintln!("{}: {} problem(s)", path.display(), errors.len());
            }
            Err(exit::FAILED)
        }
    })
}

/// The 1-based column where line `line`'s content starts (after indentation and a `- ` item
/// marker); 1 for a line that is not there.
fn column(text: &str, line: usize) -> usize {
    let Some(content) = text.lines().nth(line.saturating_sub(1)) else { return 1 };
    let indent = content.len() - content.trim_start().len();
    let rest = &content[indent..];
    let item = match rest.strip_prefix("- ") {
        Some(after) => 2 + (after.len() - after.trim_start().len()),
        None => 0,
    };
    indent + item + 1
}

fn check(file: &Path, change_events: bool, json: bool) -> Result<u8, Failure> {
    let (_, rules) = match load(file, json)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    // Warnings, not errors: such a rule works from the second change of a record on.
    let first_sight: Vec<(usize, String)> = if change_events {
        rules
            .conditions_on_old_values()
            .into_iter()
            .map(|(rule, c)| {
                (
                    c.line,
                    format!(
                        "rule {:?}: `{} {}` does not match the first change event the bridge sees of a {} \
                         (change events carry no old values; the bridge keeps the last value it saw from then on)",
                        rule.name,
                        c.field_text,
                        c.operator.as_str(),
                        rule.object
                    ),
                )
            })
            .collect()
    } else {
        vec![]
    };
    if json {
        let warnings: Vec<_> =
            first_sight.iter().map(|(line, message)| json!({"line": line, "message": message})).collect();
        println!(
            "{}",
            json!({"valid": true, "rulesets": rules.rulesets.len(), "rules": rules.rule_count(), "warnings": warnings})
        );
    } else {
        for (line, message) in &first_sight {
            println!("{}:{line}: warning: {message}", file.display());
        }
        println!("{}: OK ({} ruleset(s), {} rule(s))", file.display(), rules.rulesets.len(), rules.rule_count());
    }
    Ok(exit::OK)
}

async fn test(file: &Path, event_path: &Path, json: bool) -> Result<u8, Failure> {
    let (_, rules) = match load(file, json)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let text = read(event_path)?;
    let payload = payload::read(&text).map_err(|e| Failure::Usage(format!("{}: {e}", event_path.display())))?;
    let no_links = shared::store::memory::MemoryStore::default();
    let mut evaluated: Vec<(String, Evaluation)> = Vec::new();
    for (label, item) in payload.items {
        let evaluation = match item {
            payload::Item::Event(event) => rules.evaluate(&event),
            payload::Item::Envelope(envelope) => shared::handler::preview::preview(&envelope, &rules, &no_links)
                .await
                .map_err(|e| Failure::Usage(format!("{}: {label}: {e}", event_path.display())))?,
        };
        evaluated.push((label, evaluation));
    }
    if json {
        let events: Vec<_> = evaluated
            .iter()
            .map(|(label, e)| json!({"label": label, "plan": e.plan, "explanation": e.explanation}))
            .collect();
        let first = evaluated.first().map(|(_, e)| e);
        let doc = json!({
            "shape": payload.shape,
            "note": payload.note,
            "events": events,
            // The first (usually the only) event's, at the top for convenience.
            "plan": first.map(|e| &e.plan),
            "explanation": first.map(|e| &e.explanation),
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
        return Ok(exit::OK);
    }
    if payload.shape != "normalised_event" {
        println!("{}: {} ({} event(s); links are not looked up)", event_path.display(), payload.shape, evaluated.len());
    }
    if let Some(note) = &payload.note {
        println!("{note}");
    }
    let many = evaluated.len() > 1;
    for (label, evaluation) in &evaluated {
        if many || payload.shape != "normalised_event" {
            println!("\n== {label}");
        }
        println!("{}", evaluation.plan);
        print!("{}", evaluation.explanation);
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_column_is_where_the_lines_content_starts() {
        let text = "rulesets:\n  - name: s\n    rules:\n      -   {field: x}\n";
        assert_eq!(super::column(text, 1), 1);
        assert_eq!(super::column(text, 2), 5, "after the item marker");
        assert_eq!(super::column(text, 3), 5);
        assert_eq!(super::column(text, 4), 11);
        assert_eq!(super::column(text, 9), 1, "past the end");
    }
}
