//! `pd-to-sfdc` Lambda (`POST /pagerduty/webhook`): wires the context once, then hands every
//! webhook delivery to `shared::handler::pd_to_sfdc`.

use adapters::{lambda, telemetry, wiring};
use lambda_http::{Error, Request, service_fn};
use shared::handler::pd_to_sfdc;

const FUNCTION: &str = "pd-to-sfdc";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let ctx = wiring::from_environment(
        FUNCTION,
        // PagerDuty too: the bridge's own user (webhooks it caused are skipped) and the full text
        // of notes a webhook carries trimmed.
        wiring::Needs { pagerduty: true, salesforce: true, verifies: wiring::Inbound::PagerdutyWebhooks },
    )
    .await?;
    let emf = telemetry::init_emf(FUNCTION);
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
