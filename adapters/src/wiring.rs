//! Builds the run-time [`Context`] from [`Config`] and the AWS environment, once per cold start.
//! Each function's `main.rs` calls [`from_environment`] and hands the context to its handler.

use std::sync::Arc;
use std::time::Duration;

use shared::clock::{Clock, SystemClock};
use shared::config::{Config, ConfigError, RulesSource};
use shared::handler::context::{Context, Parts, Settings};
use shared::handler::settle::RetryPolicy;
use shared::pagerduty::{SharedBudget, SharedLimit};
use shared::retry::breaker::BreakerPolicy;
use shared::rules::RulesCache;
use shared::secrets::CachedSecrets;
use shared::transport::Transport;

use crate::http::{HTTP_TIMEOUT, ReqwestTransport};
use crate::secrets_manager::SecretsManagerSource;

/// The three functions. What each reads at start follows from what it is ([`Function::warm_up`]);
/// every other credential is read by its client when first needed, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `sfdc-to-pd`: signed posts from the org (Apex trigger, Outbound Messages) into PagerDuty.
    SalesforceChanges,
    /// `pd-to-sfdc`: signed PagerDuty webhooks into Salesforce.
    PagerdutyWebhooks,
    /// `retry`: the retry queue, both directions.
    Retries,
}

/// The signed requests a function receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// PagerDuty Webhooks v3 (`X-PagerDuty-Signature`).
    PagerdutyWebhooks,
    /// Our Apex trigger's posts (and Outbound Messages).
    SalesforcePosts,
}

/// What a function reads at start so that its first invocation does not wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmUp {
    /// The signing secrets of what it verifies (SQS messages carry none).
    pub signing: Option<Inbound>,
    /// The PagerDuty token: every function calls PagerDuty (`pd-to-sfdc` to know the bridge's
    /// own user and to fetch the full text of notes a webhook carries trimmed).
    pub pagerduty_token: bool,
    /// A Salesforce session (key and login): only the functions that call Salesforce. The
    /// others are not allowed to read its key (template.yaml).
    pub salesforce_session: bool,
}

impl Function {
    /// The name in logs and metrics (and of the function's crate).
    pub fn name(self) -> &'static str {
        match self {
            Function::SalesforceChanges => "sfdc-to-pd",
            Function::PagerdutyWebhooks => "pd-to-sfdc",
            Function::Retries => "retry",
        }
    }

    pub fn warm_up(self) -> WarmUp {
        match self {
            Function::SalesforceChanges => {
                WarmUp { signing: Some(Inbound::SalesforcePosts), pagerduty_token: true, salesforce_session: false }
            }
            Function::PagerdutyWebhooks => {
                WarmUp { signing: Some(Inbound::PagerdutyWebhooks), pagerduty_token: true, salesforce_session: true }
            }
            Function::Retries => WarmUp { signing: None, pagerduty_token: true, salesforce_session: true },
        }
    }
}

/// Why a function could not start. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Time limits of every AWS SDK call (DynamoDB, SQS, Secrets Manager). Without them a hung
/// connection holds the invocation until Lambda kills it, and PagerDuty (which waits about 5 s for
/// the webhook's answer) counts a failed delivery. The SDK's own retries (standard mode, 3
/// attempts) stay as they are: each attempt is cut at `attempt`, the whole call at `operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    pub connect: Duration,
    pub attempt: Duration,
    pub operation: Duration,
}

impl AwsTimeouts {
    /// These services answer in milliseconds; a second means the attempt is lost. Three attempts
    /// with the SDK's backoff fit in the operation limit and leave time to queue or answer 503.
    pub const PRODUCTION: AwsTimeouts = AwsTimeouts {
        connect: Duration::from_secs(1),
        attempt: Duration::from_secs(1),
        operation: Duration::from_secs(3),
    };

    pub fn config(&self) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }

    /// `sdk` with these timeouts (tests against moto build their clients this way).
    pub fn apply(&self, sdk: &aws_config::SdkConfig) -> aws_config::SdkConfig {
        sdk.to_builder().timeout_config(self.config()).build()
    }
}

/// Reads the environment, initialises logging and builds the context for `function`.
pub async fn from_environment(function: Function) -> Result<Context, WiringError> {
    load(function).await.map(|(context, _)| context)
}

/// [`from_environment`] for the retry function, with what it runs a reconcile with: the
/// cursors and the watched subscription on the same table ([`shared::reconcile::trigger`]),
/// through the same SDK configuration (loaded once: it resolves credentials and the region).
pub async fn with_reconcile(function: Function) -> Result<(Context, shared::reconcile::trigger::Runner), WiringError> {
    let (context, (config, sdk)) = load(function).await?;
    let cursors = Arc::new(crate::dynamodb::DynamoStore::from_conf(&sdk, &config.store.table_name));
    Ok((context, shared::reconcile::trigger::Runner { cursors }))
}

async fn load(function: Function) -> Result<(Context, (Config, aws_config::SdkConfig)), WiringError> {
    let config = Config::from_env()?;
    crate::telemetry::init_logging(&config.log_level);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(AwsTimeouts::PRODUCTION.config())
        .load()
        .await;
    let context = build(&config, &sdk)?;
    warm_up(&context, function.warm_up()).await;
    tracing::info!(function = function.name(), table = %config.store.table_name, "function initialised");
    Ok((context, (config, sdk)))
}

/// Reads at start, at the same time, what the first invocation would otherwise read one after
/// another: the rules, the signing secrets, the PagerDuty token and a Salesforce session. This
/// also opens the connections. A failure is only logged: the invocation reads again, and a
/// credential that still cannot be read fails its call, retried or dead-lettered by its class.
async fn warm_up(ctx: &Context, plan: WarmUp) {
    let rules = async {
        if let Err(err) = ctx.rules.current().await {
            tracing::warn!(error = %err, "rules not loaded at start; the first event will try again");
        }
    };
    let signing = async {
        let read = match plan.signing {
            Some(Inbound::PagerdutyWebhooks) => ctx.secrets.webhook_secrets(&ctx.settings.webhook_secret_id).await,
            Some(Inbound::SalesforcePosts) => ctx.secrets.inbound_secrets(&ctx.settings.inbound_secret_id).await,
            None => return,
        };
        if let Err(err) = read {
            tracing::warn!(error = %err, "signing secrets not read at start; the first request will try again");
        }
    };
    let token = async {
        // Into the caches the client reads through: the secret, and an OAuth client's app token.
        if plan.pagerduty_token
            && let Err(err) = ctx.pagerduty.warm_up().await
        {
            tracing::warn!(error = %err, "PagerDuty credential not read at start; the first call will try again");
        }
    };
    let session = async {
        if plan.salesforce_session
            && let Err(err) = ctx.salesforce.connect().await
        {
            tracing::warn!(error = %err, "no Salesforce session at start; the first call will log in");
        }
    };
    // Lambda allows 10 s of init; a service that hangs must not spend them.
    if tokio::time::timeout(WARM_UP_LIMIT, async { tokio::join!(rules, signing, token, session) }).await.is_err() {
        tracing::warn!(limit = ?WARM_UP_LIMIT, "warm-up cut short; the first invocation reads what is missing");
    }
}

/// How long the start-up reads may take before the function starts without them.
const WARM_UP_LIMIT: Duration = Duration::from_secs(2);

/// Builds the context from an explicit configuration (tests against moto use this). Reads
/// nothing: each subsystem's config builds its client or adapter, and the clients read their
/// credentials when they need them.
pub fn build(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Context, WiringError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // One HTTP client per process: connection pools survive warm invocations.
    let http: Arc<dyn Transport> = Arc::new(ReqwestTransport::new()?);
    let stores = crate::dynamodb::stores_of(&config.store, sdk);
    let queues = crate::sqs::queues(&config.queues, sdk);
    let secrets = Arc::new(CachedSecrets::new(
        Arc::new(SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(sdk))),
        clock.clone(),
        config.secrets_max_age,
    ));
    // Every instance counts its PagerDuty calls against one budget per token, on the table.
    let budget = SharedBudget::new(
        Arc::new(crate::dynamodb::DynamoStore::from_conf(sdk, &config.store.table_name)),
        SharedLimit::PAGERDUTY_REST,
    );
    let pagerduty =
        config.pagerduty.client(http.clone(), secrets.clone(), HTTP_TIMEOUT).with_shared_budget(Arc::new(budget));
    let salesforce = config.salesforce.client(http, secrets.clone(), clock.clone(), HTTP_TIMEOUT);
    let rules_age = chrono::Duration::from_std(config.rules_max_age).unwrap_or(chrono::Duration::seconds(60));
    let rules = match &config.rules_source {
        RulesSource::Table => RulesCache::from_store(stores.rules.clone(), clock.clone(), rules_age),
        RulesSource::File(path) => RulesCache::from_file(path.clone(), clock.clone(), rules_age),
    };
    Ok(Context::new(Parts {
        stores,
        clock,
        secrets,
        rules: Arc::new(rules),
        retry_queue: Arc::new(queues.retry),
        dead_letter_queue: Arc::new(queues.dead_letter),
        pagerduty,
        salesforce,
        settings: settings(config),
        idempotency_ttl: config.store.idempotency_ttl,
        retry_policy: RetryPolicy::default(),
        breaker_policy: BreakerPolicy::default(),
    }))
}

/// What the handlers read of the PagerDuty and Salesforce configs.
fn settings(config: &Config) -> Settings {
    let (pagerduty, salesforce) = (&config.pagerduty, &config.salesforce);
    Settings {
        webhook_secret_id: pagerduty.webhook_secret_id.clone(),
        inbound_secret_id: salesforce.inbound_secret_id.clone(),
        org_id: Some(salesforce.org_id.clone()),
        outbound_message_secret_id: Some(salesforce.outbound_message_secret_id.clone()).filter(|id| !id.is_empty()),
        integration_user: salesforce.integration_user.clone(),
        integration_user_id: salesforce.integration_user_id.clone(),
        pagerduty_user_id: pagerduty.user_id.clone(),
        console_service_ids: pagerduty.console_service_ids.clone(),
        console_escalation_service_id: Some(pagerduty.console_escalation_service_id.clone())
            .filter(|id| !id.is_empty()),
        ..Settings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_functions_that_call_salesforce_log_in_at_start() {
        // sfdc-to-pd may not read the Salesforce key (template.yaml): it never logs in.
        assert!(!Function::SalesforceChanges.warm_up().salesforce_session);
        assert!(Function::PagerdutyWebhooks.warm_up().salesforce_session);
        assert!(Function::Retries.warm_up().salesforce_session);
        for function in [Function::SalesforceChanges, Function::PagerdutyWebhooks, Function::Retries] {
            assert!(function.warm_up().pagerduty_token, "{function:?} calls PagerDuty");
        }
    }

    #[test]
    fn each_function_verifies_what_it_receives() {
        assert_eq!(Function::SalesforceChanges.warm_up().signing, Some(Inbound::SalesforcePosts));
        assert_eq!(Function::PagerdutyWebhooks.warm_up().signing, Some(Inbound::PagerdutyWebhooks));
        assert_eq!(Function::Retries.warm_up().signing, None, "SQS messages are not signed");
        let names = [Function::SalesforceChanges, Function::PagerdutyWebhooks, Function::Retries].map(Function::name);
        assert_eq!(names, ["sfdc-to-pd", "pd-to-sfdc", "retry"]);
    }
}
