//! The one-line-per-check report of `doctor` and `status`: text for a person, or `--json`, and
//! the exit code it implies (a problem found: 1; otherwise something unreachable: 3).

use serde::Serialize;
use serde_json::Value;

use crate::exit;
use crate::failure::Failure;

/// How one line turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Something is wrong; the detail says what to do.
    Problem,
    /// The source could not be reached or asked: the detail says why.
    Unavailable,
    /// Not checked: something it needs is missing (the detail names it).
    Skipped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Problem => "FAIL",
            Status::Unavailable => "DOWN",
            Status::Skipped => "SKIP",
        }
    }
}

/// One line of a report.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// Machine-readable facts behind the line (`--json`), when there are any.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl Line {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: Status::Ok, detail: detail.into(), data: Value::Null }
    }

    pub fn problem(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: Status::Problem, detail: detail.into(), data: Value::Null }
    }

    pub fn skipped(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: Status::Skipped, detail: detail.into(), data: Value::Null }
    }

    /// A failure: unavailable when the source could not be reached, else a problem.
    pub fn failed(name: impl Into<String>, failure: &Failure) -> Self {
        let status = if matches!(failure, Failure::Unavailable { .. }) { Status::Unavailable } else { Status::Problem };
        Self { name: name.into(), status, detail: failure.to_string(), data: Value::Null }
    }

    pub fn with_data(mut self, data: impl Serialize) -> Self {
        self.data = serde_json::to_value(data).unwrap_or(Value::Null);
        self
    }
}

/// 1 when a line found a problem, else 3 when one could not be checked, else 0.
pub fn exit_code(lines: &[Line]) -> u8 {
    if lines.iter().any(|l| l.status == Status::Problem) {
        exit::FAILED
    } else if lines.iter().any(|l| l.status == Status::Unavailable) {
        exit::UNAVAILABLE
    } else {
        exit::OK
    }
}

/// Prints the report; returns its exit code. `context` (account, region, stack) heads it.
pub fn print(title: &str, context: Value, lines: &[Line], json: bool) -> u8 {
    let code = exit_code(lines);
    if json {
        let doc = serde_json::json!({"report": title, "context": context, "exit_code": code, "lines": lines});
        println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
        return code;
    }
    for line in lines {
        let mut detail = line.detail.lines();
        println!("{:<5} {:<34} {}", line.status.label(), line.name, detail.next().unwrap_or_default());
        for more in detail {
            println!("{:<40} {more}", "");
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_outranks_an_unreachable_source() {
        let down = Line::failed("x", &Failure::Unavailable { what: "x".into(), detail: "timeout".into() });
        assert_eq!(down.status, Status::Unavailable);
        assert_eq!(exit_code(&[Line::ok("a", ""), down.clone()]), exit::UNAVAILABLE);
        assert_eq!(exit_code(&[down, Line::problem("b", "")]), exit::FAILED);
        assert_eq!(exit_code(&[Line::ok("a", ""), Line::skipped("c", "")]), exit::OK);
    }
}
