//! Where syncctl's settings come from, in order of precedence: the flags, the environment
//! variables the functions read (TABLE_NAME, DLQ_URL, ...), then the deployed stack's outputs
//! and parameters (`--stack-name`, see [`crate::stack`]). Global flags apply to every command.

use std::collections::HashMap;
use std::sync::Arc;

use adapters::dynamodb::DynamoStore;
use adapters::sqs::SqsQueue;
use clap::Args;
use shared::config::{Config, ConfigError};

use crate::aws::Aws;
use crate::failure::Failure;
use crate::stack::{self, StackSettings};

/// Flags every command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct Globals {
    /// Read every setting from this deployed CloudFormation stack's outputs and parameters
    /// (flags and environment variables still win).
    #[arg(long, env = "SYNCCTL_STACK_NAME", global = true, value_name = "NAME")]
    pub stack_name: Option<String>,
    /// AWS region of the stack (else AWS_REGION or the profile's region).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS profile to use (else AWS_PROFILE or the default chain).
    #[arg(long, global = true, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// The DynamoDB table (stack output TableName).
    #[arg(long, env = "TABLE_NAME", global = true, value_name = "NAME")]
    pub table: Option<String>,
    /// The retry queue URL (stack output RetryQueueUrl).
    #[arg(long, env = "RETRY_QUEUE_URL", global = true, value_name = "URL")]
    pub retry_queue_url: Option<String>,
    /// The dead-letter queue URL (stack output DeadLetterQueueUrl).
    #[arg(long, env = "DLQ_URL", global = true, value_name = "URL")]
    pub dlq_url: Option<String>,
    /// Print one JSON document on stdout instead of text (stable field names, see README).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The settings of one run, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub vars: HashMap<String, String>,
    /// The stack they were read from, when --stack-name was given.
    pub stack: Option<StackSettings>,
    pub aws: Aws,
}

/// Stack values, overridden by the environment, overridden by the flags. Empty counts as unset.
pub fn merge(
    stack: Option<&StackSettings>,
    env: impl IntoIterator<Item = (String, String)>,
    globals: &Globals,
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = stack.map(|s| s.vars.clone()).unwrap_or_default();
    vars.extend(env.into_iter().filter(|(_, v)| !v.trim().is_empty()));
    for (var, flag) in
        [("TABLE_NAME", &globals.table), ("RETRY_QUEUE_URL", &globals.retry_queue_url), ("DLQ_URL", &globals.dlq_url)]
    {
        if let Some(value) = flag.as_deref().filter(|v| !v.trim().is_empty()) {
            vars.insert(var.to_string(), value.to_string());
        }
    }
    vars
}

impl Settings {
    /// Connects to AWS, reads the stack when one is named, and merges.
    pub async fn resolve(globals: &Globals) -> Result<Self, Failure> {
        let aws = Aws::connect(globals.region.as_deref(), globals.profile.as_deref()).await?;
        let stack = match &globals.stack_name {
            Some(name) if !name.is_empty() => Some(stack::describe(&aws.sdk, name).await?),
            _ => None,
        };
        Ok(Self::from_parts(globals, aws, stack))
    }

    pub fn from_parts(globals: &Globals, aws: Aws, stack: Option<StackSettings>) -> Self {
        let vars = merge(stack.as_ref(), std::env::vars(), globals);
        Self { vars, stack, aws }
    }

    pub fn get(&self, var: &str) -> Option<&str> {
        self.vars.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The whole configuration, or every problem with it.
    pub fn config(&self) -> Result<Config, Failure> {
        Config::from_map_all(&self.vars).map_err(Failure::Settings)
    }

    /// One setting a command needs, or the failure naming it (and its flag, and --stack-name).
    pub fn require(&self, var: &'static str) -> Result<&str, Failure> {
        self.get(var).ok_or_else(|| {
            let hint = shared::config::VARIABLES.iter().find(|(name, _)| *name == var).map_or("", |(_, hint)| *hint);
            Failure::Settings(vec![ConfigError::Missing { name: var, hint }])
        })
    }

    pub fn store(&self) -> Result<Arc<DynamoStore>, Failure> {
        let table = self.require("TABLE_NAME")?;
        Ok(Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.aws.sdk), table)))
    }

    pub fn dlq(&self) -> Result<SqsQueue, Failure> {
        Ok(SqsQueue::new(aws_sdk_sqs::Client::new(&self.aws.sdk), self.require("DLQ_URL")?))
    }

    pub fn retry_queue(&self) -> Result<SqsQueue, Failure> {
        Ok(SqsQueue::new(aws_sdk_sqs::Client::new(&self.aws.sdk), self.require("RETRY_QUEUE_URL")?))
    }

    /// "DynamoDB table NAME", for messages.
    pub fn table_label(&self) -> String {
        format!("DynamoDB table {}", self.get("TABLE_NAME").unwrap_or("?"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_environment_which_beats_the_stack() {
        let stack = StackSettings {
            vars: [("TABLE_NAME", "from-stack"), ("DLQ_URL", "stack-dlq"), ("SALESFORCE_ORG_ID", "stack-org")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let env = [("SALESFORCE_ORG_ID", "env-org"), ("DLQ_URL", "env-dlq"), ("TABLE_NAME", " ")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let globals = Globals { dlq_url: Some("flag-dlq".into()), ..Default::default() };
        let vars = merge(Some(&stack), env, &globals);
        assert_eq!(vars["TABLE_NAME"], "from-stack", "an empty variable does not hide the stack's value");
        assert_eq!(vars["SALESFORCE_ORG_ID"], "env-org");
        assert_eq!(vars["DLQ_URL"], "flag-dlq");
    }
}
