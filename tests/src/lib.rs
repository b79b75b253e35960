//! Test support for pd-sfdc-sync: PagerDuty and Salesforce simulators that follow the real
//! APIs, and a harness that runs moto's server for DynamoDB, SQS and Secrets Manager.

pub mod alarms;
pub mod counting_store;
pub mod explorer;
pub mod fault_proxy;
pub mod faults;
pub mod fixtures;
pub mod harness;
pub mod moto;
pub mod pagerduty;
pub mod refusing_queue;
pub mod runtime_api;
pub mod salesforce;
mod server;
pub mod sim_clock;
