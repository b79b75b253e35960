//! Starts the PagerDuty and Salesforce simulators on local ports.
fn main() {}
