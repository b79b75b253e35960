//! The webhook subscription watchdog: PagerDuty disables a subscription whose deliveries keep
//! failing (and drops its queue); someone may switch it off. Each run reads it and enables it
//! again; the run's PagerDuty side then repairs what the gap lost (its cursor is where the last
//! run ended, before the gap). The `WebhookSubscriptionDisabled` count drives a SEV2 alarm.

use super::report::SubscriptionCheck;
use crate::handler::context::Context;
use crate::telemetry::metrics;

/// Reads the subscription `id` and enables it when it is not active (not in a dry run).
pub async fn check_subscription(ctx: &Context, id: Option<&str>, dry_run: bool) -> SubscriptionCheck {
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return SubscriptionCheck::NotConfigured;
    };
    let subscription = match ctx.pagerduty.get_webhook_subscription(id).await {
        Ok(subscription) => subscription,
        Err(err) => return SubscriptionCheck::Failed(format!("reading webhook subscription {id}: {err}")),
    };
    if subscription.active {
        return SubscriptionCheck::Active;
    }
    metrics::webhook_subscription_found_disabled();
    if dry_run {
        return SubscriptionCheck::WouldReEnable;
    }
    tracing::error!(subscription = id, "PagerDuty webhook subscription disabled: enabling it again");
    match ctx.pagerduty.enable_webhook_subscription(id).await {
        Ok(()) => SubscriptionCheck::ReEnabled,
        Err(err) => SubscriptionCheck::Failed(format!("enabling webhook subscription {id}: {err}")),
    }
}
