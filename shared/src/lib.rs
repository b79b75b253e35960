//! The domain of pd-sfdc-sync, shared by the three Lambda functions and `syncctl`.
//!
//! Pure core, effects at the edge: [`rules`] takes values and returns a plan; the
//! [`pagerduty`] and [`salesforce`] clients execute it; [`store`] and [`secrets`] are
//! traits with a DynamoDB/Secrets Manager implementation and an in-memory one. No AWS
//! type appears in a public signature outside `store::dynamodb` and `secrets::aws`.

pub mod clock;
pub mod config;
pub mod handler;
pub mod lambda;
pub mod loop_guard;
pub mod model;
pub mod pagerduty;
pub mod retry;
pub mod rules;
pub mod salesforce;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod wiring;
