//! `sfdc-to-pd` Lambda (`POST /salesforce/records`, `POST /salesforce/outbound-message`): wires
//! the context once, then hands every request to `shared::handler::sfdc_to_pd`.

use adapters::{lambda, telemetry, wiring};
use lambda_http::{Error, Request, service_fn};
use shared::handler::sfdc_to_pd;

const FUNCTION: wiring::Function = wiring::Function::SalesforceChanges;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let ctx = wiring::from_environment(FUNCTION).await?;
    let emf = telemetry::init_emf(FUNCTION.name());
    lambda_http::run(service_fn(|request: Request| {
        let ctx = &ctx;
        async move {
            let reply = sfdc_to_pd::handle(ctx, lambda::to_inbound(&request)).await;
            telemetry::flush(emf);
            Ok::<_, Error>(lambda::to_response(reply))
        }
    }))
    .await
}
