//! `retry` Lambda (SQS retry queue, `ReportBatchItemFailures`): wires the context once, then
//! hands every batch to `shared::handler::retry` (which runs a reconcile for a "reconcile" message).

use adapters::{lambda, telemetry, wiring};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::handler::retry;

const FUNCTION: wiring::Function = wiring::Function::Retries;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (ctx, reconcile) = wiring::with_reconcile(FUNCTION).await?;
    let emf = telemetry::init_emf(FUNCTION.name());
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (ctx, reconcile) = (&ctx, &reconcile);
        async move {
            let deadline = lambda::deadline(&event.context);
            let messages = lambda::to_messages(event.payload);
            let failed = retry::handle_batch_reconciling(ctx, Some(reconcile), messages, deadline).await;
            telemetry::flush(emf);
            Ok::<SqsBatchResponse, Error>(lambda::batch_response(failed))
        }
    }))
    .await
}
