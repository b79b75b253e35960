//! Telemetry: JSON logs with correlation ids, and CloudWatch Embedded Metric Format metrics.
