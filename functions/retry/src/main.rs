//! `retry` Lambda (SQS retry queue, `ReportBatchItemFailures`): wires the context once, then
//! hands every batch to `shared::handler::retry`.

use adapters::{lambda, telemetry, wiring};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::handler::retry;

const FUNCTION: wiring::Function = wiring::Function::Retries;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let ctx = wiring::from_environment(FUNCTION).await?;
    let emf = telemetry::init_emf(FUNCTION.name());
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let ctx = &ctx;
        async move {
            let deadline = lambda::deadline(&event.context);
            let failed = retry::handle_batch(ctx, lambda::to_messages(event.payload), deadline).await;
            telemetry::flush(emf);
            Ok::<SqsBatchResponse, Error>(lambda::batch_response(failed))
        }
    }))
    .await
}
