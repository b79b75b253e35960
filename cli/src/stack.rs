//! `--stack-name`: the deployed stack's outputs and parameters as the variables the functions
//! read, from one CloudFormation `DescribeStacks` (the operator policy allows it on the stack).
//!
//! [`OUTPUTS`] and [`PARAMETERS`] are the one map from template.yaml's names to variables; a
//! test checks that every output and parameter named here exists in template.yaml.

use std::collections::HashMap;

use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};

use crate::failure::Failure;

/// Stack outputs → the variables they set.
pub const OUTPUTS: &[(&str, &str)] = &[
    ("TableName", "TABLE_NAME"),
    ("RetryQueueUrl", "RETRY_QUEUE_URL"),
    ("DeadLetterQueueUrl", "DLQ_URL"),
    ("PagerDutyApiBase", "PAGERDUTY_API_BASE"),
    ("PagerDutyTokenSecretArn", "PAGERDUTY_TOKEN_SECRET_ID"),
    ("PagerDutyWebhookSecretArn", "PAGERDUTY_WEBHOOK_SECRET_ID"),
    ("SalesforceJwtSecretArn", "SALESFORCE_JWT_SECRET_ID"),
    ("SalesforceInboundSecretArn", "SALESFORCE_INBOUND_SECRET_ID"),
    ("SalesforceOutboundMessageSecretArn", "SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID"),
    // Not read by the functions: what doctor and setup compare the PagerDuty subscription with.
    ("PagerDutyWebhookUrl", "PAGERDUTY_WEBHOOK_URL"),
];

/// Stack parameters → the variables they set (the template passes them to the functions).
pub const PARAMETERS: &[(&str, &str)] = &[
    ("PagerDutyRegion", "PAGERDUTY_REGION"),
    ("PagerDutyFromEmail", "PAGERDUTY_FROM_EMAIL"),
    ("PagerDutyUserId", "PAGERDUTY_USER_ID"),
    ("ConsoleServiceIds", "CONSOLE_SERVICE_IDS"),
    ("ConsoleEscalationServiceId", "CONSOLE_ESCALATION_SERVICE_ID"),
    ("SalesforceLoginUrl", "SALESFORCE_LOGIN_URL"),
    ("SalesforceJwtAudience", "SALESFORCE_JWT_AUDIENCE"),
    ("SalesforceApiVersion", "SALESFORCE_API_VERSION"),
    ("SalesforceOrgId", "SALESFORCE_ORG_ID"),
    ("SalesforceIntegrationUser", "SALESFORCE_INTEGRATION_USER"),
    ("SalesforceIntegrationUserId", "SALESFORCE_INTEGRATION_USER_ID"),
    ("LogLevel", "LOG_LEVEL"),
];

/// What a stack gave: the variables, and its status for the record.
#[derive(Debug, Clone, Default)]
pub struct StackSettings {
    pub name: String,
    pub status: String,
    pub vars: HashMap<String, String>,
}

/// The variables `outputs` and `parameters` (key, value) set, by [`OUTPUTS`] and [`PARAMETERS`].
/// Empty values count as unset, as the functions read them.
pub fn variables(outputs: &[(String, String)], parameters: &[(String, String)]) -> HashMap<String, String> {
    let pick = |table: &[(&str, &str)], pairs: &[(String, String)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(key, value)| {
                table.iter().find(|(name, _)| name == key).map(|(_, var)| (var.to_string(), value.clone()))
            })
            .collect()
    };
    let mut vars: HashMap<String, String> = pick(PARAMETERS, parameters).into_iter().collect();
    vars.extend(pick(OUTPUTS, outputs));
    vars
}

/// Reads stack `name` with `DescribeStacks`.
pub async fn describe(sdk: &aws_config::SdkConfig, name: &str) -> Result<StackSettings, Failure> {
    let client = aws_sdk_cloudformation::Client::new(sdk);
    let out = client.describe_stacks().stack_name(name).send().await.map_err(|e| failure(name, e))?;
    let Some(stack) = out.stacks().first() else {
        return Err(Failure::Usage(not_found(name)));
    };
    let outputs: Vec<(String, String)> = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    let parameters: Vec<(String, String)> = stack
        .parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?.to_string(), p.parameter_value()?.to_string())))
        .collect();
    Ok(StackSettings {
        name: name.to_string(),
        status: stack.stack_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
        vars: variables(&outputs, &parameters),
    })
}

fn not_found(name: &str) -> String {
    format!(
        "stack {name} does not exist in this account and region: check --stack-name, --region and the AWS profile (`sam list stacks` or `aws cloudformation describe-stacks` lists them)"
    )
}

fn failure<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    name: &str,
    err: SdkError<E, R>,
) -> Failure {
    let code = err.code().unwrap_or_default();
    let message = err.message().unwrap_or_default().to_string();
    match code {
        // CloudFormation answers a missing stack with ValidationError "Stack with id X does not exist".
        "ValidationError" if message.contains("does not exist") => Failure::Usage(not_found(name)),
        "AccessDenied"
        | "AccessDeniedException"
        | "ExpiredToken"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException" => Failure::Refused {
            what: format!("CloudFormation (DescribeStacks {name})"),
            detail: format!("{code}: {message}"),
        },
        _ => Failure::Unavailable {
            what: format!("CloudFormation (DescribeStacks {name})"),
            detail: if message.is_empty() { crate::failure::sdk_detail(&err) } else { format!("{code}: {message}") },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_output_and_parameter_is_in_the_template() {
        let template = include_str!("../../template.yaml");
        let outputs = &template[template.find("\nOutputs:").expect("an Outputs section")..];
        for (name, _) in OUTPUTS {
            assert!(outputs.contains(&format!("\n  {name}:")), "output {name} is not in template.yaml");
        }
        let parameters = &template[..template.find("\nConditions:").expect("a Conditions section")];
        for (name, _) in PARAMETERS {
            assert!(parameters.contains(&format!("\n  {name}:")), "parameter {name} is not in template.yaml");
        }
    }

    #[test]
    fn outputs_and_parameters_become_variables_and_empty_ones_stay_unset() {
        let vars = variables(
            &[("TableName".into(), "t".into()), ("Unrelated".into(), "x".into())],
            &[("SalesforceOrgId".into(), "00D".into()), ("PagerDutyUserId".into(), "".into())],
        );
        assert_eq!(vars.get("TABLE_NAME").map(String::as_str), Some("t"));
        assert_eq!(vars.get("SALESFORCE_ORG_ID").map(String::as_str), Some("00D"));
        assert_eq!(vars.len(), 2, "{vars:?}");
    }

    #[test]
    fn every_variable_the_functions_need_comes_from_the_stack() {
        // The variables the template gives the functions, minus fixed ones, are all mapped.
        // PAGERDUTY_IDENTITY_BASE: one token endpoint serves both regions; set only for simulators.
        let fixed = [
            "RULES_SOURCE",
            "SECRETS_MAX_AGE_SECONDS",
            "RULES_MAX_AGE_SECONDS",
            "IDEMPOTENCY_TTL_HOURS",
            "PAGERDUTY_IDENTITY_BASE",
        ];
        let mapped: Vec<&str> = OUTPUTS.iter().chain(PARAMETERS).map(|(_, var)| *var).collect();
        for (var, _) in shared::config::VARIABLES {
            assert!(mapped.contains(var) || fixed.contains(var), "{var} has no stack output or parameter");
        }
    }
}
