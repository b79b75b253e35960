//! The three functions' logic, free of AWS: each `main.rs` turns its Lambda event into these
//! types, calls in here, and turns the answer back.

pub mod http;
pub mod idempotency;
