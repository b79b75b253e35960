//! syncctl's exit codes, one meaning each, so scripts and runbooks can branch on them. `HELP` is
//! printed by `syncctl --help`; README.md (Operations) lists the same.

/// The command did what was asked; every check passed.
pub const OK: u8 = 0;
/// A check found a problem (doctor, status, rules check), or what was asked does not hold.
pub const FAILED: u8 = 1;
/// Wrong usage: flags, a missing or invalid setting, a file that cannot be read or understood.
pub const USAGE: u8 = 2;
/// AWS, PagerDuty or Salesforce could not be reached or was throttled: try again.
pub const UNAVAILABLE: u8 = 3;
/// No credentials, or credentials or permissions refused: fix the access.
pub const REFUSED: u8 = 4;

/// The exit-code table of `syncctl --help`.
pub const HELP: &str = "\
Exit codes:
  0  OK: done, every check passed
  1  a check failed or what was asked does not hold (doctor, status, rules check, dlq replay)
  2  usage: bad flags, a missing or invalid setting, a file that cannot be read or understood
  3  unavailable: AWS, PagerDuty or Salesforce could not be reached or throttled; try again
  4  refused: no AWS credentials, or credentials or permissions refused

Settings come from --stack-name (or SYNCCTL_STACK_NAME): the deployed stack's outputs and
parameters; flags and environment variables (TABLE_NAME, DLQ_URL, ...) override them.";
