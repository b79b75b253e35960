//! `syncctl rules check FILE` and `syncctl rules test FILE EVENT.json [--json]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use shared::rules::{Event, Rules};

/// Exit code for a rules document or event that is invalid.
const EXIT_INVALID: u8 = 1;
/// Exit code for a file that cannot be read.
const EXIT_IO: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file; lists every problem with its line. Exit 1 when invalid.
    Check {
        /// The rules YAML file.
        file: PathBuf,
    },
    /// Evaluate a normalised event (JSON) against a rules file and print the plan and why.
    Test {
        /// The rules YAML file.
        file: PathBuf,
        /// A normalised event, e.g. events/rules/case-insert-sev1.event.json.
        event: PathBuf,
        /// Print `{"plan": [...], "explanation": {...}}` as JSON instead of tables.
        #[arg(long)]
        json: bool,
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

pub fn run(cmd: RulesCommand) -> ExitCode {
    match cmd {
        RulesCommand::Check { file } => check(&file),
        RulesCommand::Test { file, event, json } => test(&file, &event, json),
        RulesCommand::Push { .. } => unreachable!("push is async: main runs it with `push`"),
    }
}

/// `syncctl rules push FILE`: a bad document never replaces a good one.
pub async fn push(file: &Path, by: &str, stack: &super::aws::Stack) -> Result<ExitCode, String> {
    let rules = match load(file) {
        Ok(rules) => rules,
        Err(code) => return Ok(code),
    };
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let store = stack.store().await?;
    let version = shared::store::RulesStore::put_rules(store.as_ref(), &text, by, chrono::Utc::now())
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "stored {} ({} rule(s)) as version {version}; the functions use it within a minute",
        file.display(),
        rules.rule_count()
    );
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        ExitCode::from(EXIT_IO)
    })
}

fn load(path: &Path) -> Result<Rules, ExitCode> {
    let text = read(path)?;
    Rules::from_yaml(&text).map_err(|errors| {
        eprintln!("{}: {} problem(s):", path.display(), errors.len());
        for e in errors.iter() {
            eprintln!("{}:{e}", path.display());
        }
        ExitCode::from(EXIT_INVALID)
    })
}

fn check(file: &Path) -> ExitCode {
    match load(file) {
        Ok(rules) => {
            println!("{}: OK ({} ruleset(s), {} rule(s))", file.display(), rules.rulesets.len(), rules.rule_count());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn test(file: &Path, event_path: &Path, json: bool) -> ExitCode {
    let rules = match load(file) {
        Ok(rules) => rules,
        Err(code) => return code,
    };
    let text = match read(event_path) {
        Ok(text) => text,
        Err(code) => return code,
    };
    let event: Event = match serde_json::from_str(&text) {
        Ok(event) => event,
        Err(e) => {
            eprintln!(
                "error: {} is not a normalised event: {e} (see events/rules/*.event.json for the format)",
                event_path.display()
            );
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let evaluation = rules.evaluate(&event);
    if json {
        match serde_json::to_string_pretty(&evaluation) {
            Ok(out) => println!("{out}"),
            Err(e) => {
                eprintln!("error: cannot render the evaluation as JSON: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    } else {
        println!("{}", evaluation.plan);
        print!("{}", evaluation.explanation);
    }
    ExitCode::SUCCESS
}
