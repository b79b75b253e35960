//! Telemetry the domain records: metric names and the helpers that record them through the
//! `metrics` facade, and log fields through `tracing`. Where they go (JSON logs on stdout,
//! CloudWatch Embedded Metric Format) is set up by `adapters::telemetry` in each function's `main`.

pub mod metrics;
