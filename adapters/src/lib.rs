//! The adapters of pd-sfdc-sync: where the AWS-free core (`shared`) meets AWS and the network.
//! Each implements a port of the core: DynamoDB the stores, SQS the queues, Secrets Manager the
//! secret source, reqwest the HTTP transport of the PagerDuty and Salesforce clients; `lambda`
//! converts the runtime's events into the core's types and back, `telemetry` sends logs and
//! metrics where CloudWatch reads them, and `wiring` builds it all once per cold start.

pub mod dynamodb;
pub mod http;
pub mod lambda;
pub mod sdk_error;
pub mod secrets_manager;
pub mod sqs;
pub mod telemetry;
pub mod wiring;
