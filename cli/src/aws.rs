//! The AWS side of a run: the SDK configuration from --region/--profile and the usual chain
//! (`AWS_ENDPOINT_URL` points everything at moto in tests), checked once before any call so a
//! missing region or credentials reads as such, and the account in use (STS GetCallerIdentity).

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_sts::config::ProvideCredentials;
use serde::Serialize;

use crate::failure::Failure;

/// A checked SDK configuration.
#[derive(Clone, Debug)]
pub struct Aws {
    pub sdk: aws_config::SdkConfig,
    pub region: String,
}

/// Who and where: printed by doctor and status.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    pub region: String,
}

impl Aws {
    /// Loads the configuration and resolves credentials once; fails with words, not an SDK dump.
    pub async fn connect(region: Option<&str>, profile: Option<&str>) -> Result<Self, Failure> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region.filter(|r| !r.is_empty()) {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        if let Some(profile) = profile.filter(|p| !p.is_empty()) {
            loader = loader.profile_name(profile);
        }
        let sdk = loader.load().await;
        let region = sdk.region().map(|r| r.to_string()).ok_or(Failure::NoRegion)?;
        let provider = sdk.credentials_provider().ok_or_else(|| Failure::NoCredentials("no provider".into()))?;
        provider.provide_credentials().await.map_err(|e| Failure::NoCredentials(first_line(&e)))?;
        Ok(Self { sdk, region })
    }

    /// The account and principal the credentials belong to.
    pub async fn identity(&self) -> Result<Identity, Failure> {
        let sts = aws_sdk_sts::Client::new(&self.sdk);
        let out = sts.get_caller_identity().send().await.map_err(|e| {
            use aws_sdk_sts::error::ProvideErrorMetadata;
            let detail = match e.code() {
                Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
                None => adapters::sdk_error::causes(&e),
            };
            match e.code() {
                Some("InvalidClientTokenId" | "ExpiredToken" | "SignatureDoesNotMatch" | "AccessDenied") => {
                    Failure::Refused { what: "AWS STS (GetCallerIdentity)".into(), detail }
                }
                _ => Failure::Unavailable { what: "AWS STS (GetCallerIdentity)".into(), detail },
            }
        })?;
        Ok(Identity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
            region: self.region.clone(),
        })
    }

    /// The secrets cache over Secrets Manager, as the functions read secrets (same cache age).
    pub fn secrets(&self, config: &shared::config::Config) -> Arc<shared::secrets::CachedSecrets> {
        secrets(config, &aws_sdk_secretsmanager::Client::new(&self.sdk))
    }
}

/// The secrets cache over `sm`, as the functions read secrets (same cache age).
pub fn secrets(
    config: &shared::config::Config,
    sm: &aws_sdk_secretsmanager::Client,
) -> Arc<shared::secrets::CachedSecrets> {
    let clock: Arc<dyn shared::clock::Clock> = Arc::new(shared::clock::SystemClock);
    let source = Arc::new(adapters::secrets_manager::SecretsManagerSource::new(sm.clone()));
    Arc::new(shared::secrets::CachedSecrets::new(source, clock, config.secrets_max_age))
}

/// The credential chain's error says what each provider found; its first line is the summary.
fn first_line(err: &dyn std::error::Error) -> String {
    let text = err.to_string();
    text.lines().next().unwrap_or("the credential chain found nothing").to_string()
}
