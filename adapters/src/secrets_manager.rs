//! The Secrets Manager adapter of [`shared::secrets::SecretSource`]: reads a secret's current
//! `SecretString` and classifies the service's errors into [`SecretsError`].

use async_trait::async_trait;
use shared::secrets::{SecretSource, SecretsError};

/// Secrets from AWS Secrets Manager (`SecretString` of the secret's current version).
#[derive(Clone, Debug)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn fetch(&self, id: &str) -> Result<String, SecretsError> {
        use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
        match self.client.get_secret_value().secret_id(id).send().await {
            Ok(out) => out.secret_string().map(str::to_string).ok_or_else(|| SecretsError::Malformed {
                id: id.to_string(),
                reason: "it has no SecretString (binary secrets are not supported)".into(),
            }),
            Err(err) => Err(match err.code() {
                // A secret scheduled for deletion answers InvalidRequestException and a malformed
                // id InvalidParameterException: retrying fixes neither, the id must be fixed.
                Some("ResourceNotFoundException" | "InvalidRequestException" | "InvalidParameterException") => {
                    SecretsError::NotFound { id: id.to_string() }
                }
                Some("AccessDeniedException") | Some("UnrecognizedClientException") => {
                    SecretsError::AccessDenied { id: id.to_string() }
                }
                Some("DecryptionFailure") => SecretsError::AccessDenied { id: id.to_string() },
                code => SecretsError::Unavailable {
                    id: id.to_string(),
                    reason: code.map_or_else(|| format!("{err}"), str::to_string),
                },
            }),
        }
    }
}
