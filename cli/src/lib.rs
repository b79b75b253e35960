//! syncctl's commands as a library, so that tests drive them against the simulators and moto.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod exit;
pub mod failure;
pub mod report;
pub mod settings;
pub mod stack;
