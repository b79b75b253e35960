//! One module per subcommand group; each `run` returns the exit code or a [`crate::failure::Failure`].

pub mod audit;
pub mod dlq;
pub mod doctor;
pub mod reconcile;
pub mod rules;
pub mod setup;
pub mod status;
