//! Builds the run-time [`Context`] from [`Config`] and the AWS environment, once per cold start.
//! Each function's `main.rs` calls [`from_environment`] and hands the context to its handler.

use std::sync::Arc;
use std::time::Duration;

use shared::clock::{Clock, SystemClock};
use shared::config::{Config, ConfigError, RulesSource};
use shared::handler::context::{Context, Parts, Settings};
use shared::handler::settle::RetryPolicy;
use shared::pagerduty::PagerdutyClient;
use shared::retry::breaker::BreakerPolicy;
use shared::rules::RulesCache;
use shared::salesforce::{Authenticator, JwtCredentials, SalesforceClient, SalesforceError};
use shared::secrets::{CachedSecrets, SecretsError};
use shared::transport::Transport;

use crate::http::{HTTP_TIMEOUT, ReqwestTransport};
use crate::secrets_manager::SecretsManagerSource;
use crate::sqs::SqsQueue;

/// Which downstream services a function calls (the others' credentials are not read at start),
/// and whose signatures it checks.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    pub pagerduty: bool,
    pub salesforce: bool,
    pub verifies: Inbound,
}

/// The signed requests a function receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// PagerDuty Webhooks v3 (`X-PagerDuty-Signature`).
    PagerdutyWebhooks,
    /// Our Apex trigger's posts (and Outbound Messages).
    SalesforcePosts,
    /// SQS messages: nothing to verify.
    Queue,
}

/// Why a function could not start. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read a secret at start-up: {0}")]
    Secret(#[from] SecretsError),
    #[error("the Salesforce connected-app secret is unusable: {0}")]
    Salesforce(#[from] SalesforceError),
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
pub async fn from_environment(function: &str, needs: Needs) -> Result<Context, WiringError> {
    let config = Config::from_env()?;
    crate::telemetry::init_logging(&config.log_level);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(AwsTimeouts::PRODUCTION.config())
        .load()
        .await;
    let context = build(&config, &sdk, needs).await?;
    warm_up(&context, needs).await;
    tracing::info!(function, table = %config.table_name, "function initialised");
    Ok(context)
}

/// Reads at start, at the same time, what the first invocation would otherwise read one after
/// another: the rules, the signing secrets and a Salesforce session. This also opens the
/// connections. A failure is only logged: the invocation reads again and handles it as usual.
async fn warm_up(ctx: &Context, needs: Needs) {
    let rules = async {
        if let Err(err) = ctx.rules.current().await {
            tracing::warn!(error = %err, "rules not loaded at start; the first event will try again");
        }
    };
    let signing = async {
        let read = match needs.verifies {
            Inbound::PagerdutyWebhooks => ctx.secrets.webhook_secrets(&ctx.settings.webhook_secret_id).await,
            Inbound::SalesforcePosts => ctx.secrets.inbound_secrets(&ctx.settings.inbound_secret_id).await,
            Inbound::Queue => return,
        };
        if let Err(err) = read {
            tracing::warn!(error = %err, "signing secrets not read at start; the first request will try again");
        }
    };
    let session = async {
        if needs.salesforce
            && let Err(err) = ctx.salesforce.connect().await
        {
            tracing::warn!(error = %err, "no Salesforce session at start; the first call will log in");
        }
    };
    // Lambda allows 10 s of init; a service that hangs must not spend them.
    if tokio::time::timeout(WARM_UP_LIMIT, async { tokio::join!(rules, signing, session) }).await.is_err() {
        tracing::warn!(limit = ?WARM_UP_LIMIT, "warm-up cut short; the first invocation reads what is missing");
    }
}

/// How long the start-up reads may take before the function starts without them.
const WARM_UP_LIMIT: Duration = Duration::from_secs(2);

/// Builds the context from an explicit configuration (tests against moto use this).
pub async fn build(config: &Config, sdk: &aws_config::SdkConfig, needs: Needs) -> Result<Context, WiringError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // One HTTP client per process: connection pools survive warm invocations.
    let http: Arc<dyn Transport> = Arc::new(ReqwestTransport::new()?);
    let stores = crate::dynamodb::stores(aws_sdk_dynamodb::Client::new(sdk), &config.table_name);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let secrets = Arc::new(CachedSecrets::new(
        Arc::new(SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(sdk))),
        clock.clone(),
        config.secrets_max_age,
    ));
    // The two credentials are independent: read them at the same time.
    let (token, jwt) = tokio::join!(
        async {
            match needs.pagerduty {
                true => secrets.pagerduty_token(&config.pagerduty_token_secret_id).await.map(Some),
                false => Ok(None),
            }
        },
        async {
            match needs.salesforce {
                true => secrets.salesforce_jwt(&config.salesforce_jwt_secret_id).await.map(Some),
                false => Ok(None),
            }
        },
    );
    let token = token?.map(|t| t.expose().to_string()).unwrap_or_default();
    let pagerduty = PagerdutyClient::new(
        http.clone(),
        config.pagerduty_api_base.clone(),
        token,
        config.pagerduty_from_email.clone(),
    )
    .with_timeout(HTTP_TIMEOUT);
    let credentials = match jwt? {
        Some(secret) => JwtCredentials::from_secret_json(&secret)?,
        None => JwtCredentials { consumer_key: String::new(), username: String::new(), private_key_pem: String::new() },
    };
    let login = config.salesforce_login_url.as_str().trim_end_matches('/').to_string();
    let auth = Arc::new(
        Authenticator::new(http.clone(), login, credentials, clock.clone())
            .with_audience(config.salesforce_audience())
            .with_timeout(HTTP_TIMEOUT),
    );
    let salesforce =
        SalesforceClient::new(http, auth, config.salesforce_api_version.clone()).with_timeout(HTTP_TIMEOUT);
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
        retry_queue: Arc::new(SqsQueue::new(sqs.clone(), config.retry_queue_url.clone())),
        dead_letter_queue: Arc::new(SqsQueue::new(sqs, config.dlq_url.clone())),
        pagerduty,
        salesforce,
        settings: Settings {
            webhook_secret_id: config.pagerduty_webhook_secret_id.clone(),
            inbound_secret_id: config.salesforce_inbound_secret_id.clone(),
            org_id: config.salesforce_org_id.clone(),
            outbound_message_secret_id: Some(config.salesforce_outbound_message_secret_id.clone())
                .filter(|id| !id.is_empty()),
            integration_user: config.salesforce_integration_user.clone(),
            integration_user_id: config.salesforce_integration_user_id.clone(),
            pagerduty_user_id: config.pagerduty_user_id.clone(),
            ..Settings::default()
        },
        idempotency_ttl: config.idempotency_ttl,
        retry_policy: RetryPolicy::default(),
        breaker_policy: BreakerPolicy::default(),
    }))
}
