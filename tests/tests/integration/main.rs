//! The integration tests of pd-sfdc-sync, in one test binary (issue 17): each former
//! `tests/tests/<name>.rs` is the module `<name>` here, so the AWS SDK, the bridge and the
//! simulators are linked once rather than once a file. Run one file's tests with
//! `cargo test -p pd-sfdc-tests --test integration <name>::`.
//!
//! The tests share one process: moto is one server for all of them (`sim::moto`, each test makes
//! its own table, queues and secrets), every simulator and proxy binds port 0, and no test sets an
//! environment variable or a process-wide subscriber. The one test that installs a global tracing
//! subscriber and metrics recorder, `tests/tests/telemetry.rs`, stays a binary of its own.

mod aws_dynamodb;
mod aws_secrets;
mod aws_sqs;
mod cdc;
mod change_keys;
mod console;
mod copies;
mod corpus;
mod echo;
mod event_types;
mod explorer;
mod fault_matrix;
mod iam_scope;
mod r#loop;
mod lost_answer;
mod operations;
mod ordering;
mod pagerduty_client;
mod pagerduty_oauth;
mod pd_to_sfdc;
mod reconcile;
mod retry;
mod runtime_api;
mod salesforce_client;
mod security;
mod sfdc_to_pd;
mod shared_rate_limit;
mod sim_binary;
mod sim_pagerduty;
mod sim_salesforce;
mod status_and_fields;
mod store_cost;
mod trimmed_notes;
