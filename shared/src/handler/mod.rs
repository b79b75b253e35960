//! The three functions' logic, free of AWS: each `main.rs` turns its Lambda event into these
//! types, calls in here, and turns the answer back.

pub mod change_event;
pub mod console;
pub mod context;
pub mod echo;
pub mod full_note;
pub mod http;
pub mod idempotency;
pub mod own_writes;
pub mod pagerduty_exec;
pub mod pd_to_sfdc;
pub mod ports;
pub mod preview;
pub mod retry;
pub mod salesforce_exec;
pub mod settle;
pub mod sfdc_to_pd;
pub mod steps;
