//! `pd-to-sfdc` Lambda (`POST /pagerduty/webhook`): wires the context once, then hands every
//! webhook delivery to `shared::handler::pd_to_sfdc`.

use adapters::{lambda, telemetry, wiring};
use lambda_http::{Error, Request, service_fn};
use shared::handler::pd_to_sfdc;

const FUNCTION: wiring::Function = wiring::Function::PagerdutyWebhooks;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let ctx = wiring::from_environment(FUNCTION).await?;
    let emf = telemetry::init_emf(FUNCTION.name());
    lambda_http::run(service_fn(|request: Request| {
        let ctx = &ctx;
        async move {
            let reply = pd_to_sfdc::handle(ctx, lambda::to_inbound(&request)).await;
            telemetry::flush(emf);
            Ok::<_, Error>(lambda::to_response(reply))
        }
    }))
    .await
}
