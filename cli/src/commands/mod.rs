//! One module per subcommand group.

pub mod audit;
pub mod aws;
pub mod dlq;
pub mod doctor;
pub mod reconcile;
pub mod rules;
pub mod setup;
