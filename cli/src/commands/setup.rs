//! `syncctl setup pagerduty-webhook --url URL [--service ID | --team ID]`: creates the Webhooks v3
//! subscription and stores its signing secret, keeping the previous one so that deliveries
//! signed with either verify during the change-over.

use std::process::ExitCode;
use std::sync::Arc;

use adapters::http::{HTTP_TIMEOUT, ReqwestTransport};
use adapters::secrets_manager::SecretsManagerSource;
use clap::Subcommand;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::pagerduty::SubscriptionFilter;
use shared::secrets::CachedSecrets;

#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Subscribe PagerDuty's webhooks to this bridge and store the signing secret.
    PagerdutyWebhook {
        /// The public URL of POST /pagerduty/webhook (stack output PagerDutyWebhookUrl).
        #[arg(long)]
        url: String,
        /// Only this service's incidents (default: the whole account).
        #[arg(long, conflicts_with = "team")]
        service: Option<String>,
        /// Only this team's incidents.
        #[arg(long)]
        team: Option<String>,
    },
}

pub async fn run(cmd: SetupCommand) -> Result<ExitCode, String> {
    let SetupCommand::PagerdutyWebhook { url, service, team } = cmd;
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let filter = match (service, team) {
        (Some(id), _) => SubscriptionFilter::Service(id),
        (_, Some(id)) => SubscriptionFilter::Team(id),
        _ => SubscriptionFilter::Account,
    };
    let (subscription_id, rotated) = pagerduty_webhook(&config, &super::aws::sdk().await, &url, &filter).await?;
    println!("created webhook subscription {subscription_id} for {url}");
    println!(
        "stored its signing secret in {}{}",
        config.pagerduty.webhook_secret_id,
        if rotated {
            " (the previous secret is kept as \"previous\" until you remove the old subscription)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates the subscription and stores its secret. Returns its id and whether an older secret was kept.
pub async fn pagerduty_webhook(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    url: &str,
    filter: &SubscriptionFilter,
) -> Result<(String, bool), String> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let secrets =
        Arc::new(CachedSecrets::new(Arc::new(SecretsManagerSource::new(sm.clone())), clock, config.secrets_max_age));
    let http = ReqwestTransport::new().map_err(|e| e.to_string())?;
    let pd = config.pagerduty.client(Arc::new(http), secrets, HTTP_TIMEOUT);
    let (subscription, secret) = pd.create_webhook_subscription(url, filter).await.map_err(|e| e.to_string())?;
    let rotated = rotate(&sm, &config.pagerduty.webhook_secret_id, &secret).await?;
    Ok((subscription.id, rotated))
}

/// Writes `{"current": new, "previous": old current}`. Returns whether an old secret was kept.
pub async fn rotate(sm: &aws_sdk_secretsmanager::Client, secret_id: &str, new: &str) -> Result<bool, String> {
    let old = sm
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .ok()
        .and_then(|o| o.secret_string().map(str::to_string));
    let previous = old
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|v| v["current"].as_str().map(str::to_string))
        .filter(|s| !s.is_empty() && !s.starts_with("REPLACE"));
    let value = serde_json::json!({"current": new, "previous": previous});
    sm.put_secret_value().secret_id(secret_id).secret_string(value.to_string()).send().await.map_err(|e| {
        use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
        format!(
            "could not store the signing secret in {secret_id}: {}",
            e.message().unwrap_or(e.code().unwrap_or("unknown error"))
        )
    })?;
    Ok(previous.is_some())
}
