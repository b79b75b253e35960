//! The AWS-free core of pd-sfdc-sync, shared by the three Lambda functions and `syncctl`.
//!
//! Pure core, effects behind ports: [`rules`] takes values and returns a plan; [`handler`] is
//! the pipeline each direction and the retry path run; the [`pagerduty`] and [`salesforce`]
//! clients build requests and read answers over the [`transport::Transport`] port; [`store`],
//! [`retry::queue`] and [`secrets`] are ports with an in-memory implementation here. No AWS SDK,
//! Lambda runtime or HTTP client crate is linked (`make deps` checks): their adapters live in
//! the `adapters` crate beside this one.

pub mod class;
pub mod clock;
pub mod config;
pub mod handler;
pub mod loop_guard;
pub mod model;
pub mod pagerduty;
pub mod reconcile;
pub mod retry;
pub mod rules;
pub mod salesforce;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod transport;
