//! `sfdc-to-pd` Lambda (`POST /salesforce/records`, `POST /salesforce/outbound-message`, and
//! Change Data Capture events from the Event Relay partner bus's rule): wires the context once,
//! then hands every request to `shared::handler::sfdc_to_pd`.

use adapters::lambda::{self, Invocation};
use adapters::{telemetry, wiring};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::handler::sfdc_to_pd;

const FUNCTION: wiring::Function = wiring::Function::SalesforceChanges;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let ctx = wiring::from_environment(FUNCTION).await?;
    let emf = telemetry::init_emf(FUNCTION.name());
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let ctx = &ctx;
        async move {
            let answer = match lambda::invocation(event)? {
                Invocation::Http(request) => {
                    Ok(lambda::to_http_api_response(sfdc_to_pd::handle(ctx, lambda::to_inbound(&request)).await))
                }
                Invocation::ChangeEvent(request) => {
                    lambda::change_event_result(sfdc_to_pd::handle_change_event(ctx, request).await)
                }
            };
            telemetry::flush(emf);
            answer
        }
    }))
    .await
}
