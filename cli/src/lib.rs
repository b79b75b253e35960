//! syncctl's commands as a library, so that tests drive them against the simulators and moto.

pub mod commands;
