//! `syncctl doctor`: PagerDuty's "Connection OK", and every other link in the chain. Each check
//! prints OK or what to fix; the exit code is non-zero when any fails.

use std::process::ExitCode;
use std::sync::Arc;

use adapters::dynamodb::DynamoStore;
use adapters::http::{HTTP_TIMEOUT, ReqwestTransport};
use adapters::sqs::SqsQueue;
use clap::Args;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::retry::queue::Queue;
use shared::rules::Rules;
use shared::salesforce::JwtCredentials;
use shared::secrets::Credential;
use shared::store::RulesStore;
use shared::transport::Transport;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The public URL of POST /pagerduty/webhook (stack output PagerDutyWebhookUrl): the
    /// subscription must point there.
    #[arg(long, env = "PAGERDUTY_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
}

/// One line of the report.
pub struct Check {
    pub name: &'static str,
    pub result: Result<String, String>,
}

pub fn print(checks: &[Check]) -> bool {
    let mut healthy = true;
    for check in checks {
        match &check.result {
            Ok(detail) => println!("OK    {:<34} {detail}", check.name),
            Err(fix) => {
                healthy = false;
                println!("FAIL  {:<34} {fix}", check.name);
            }
        }
    }
    healthy
}

pub async fn run(args: DoctorArgs) -> Result<ExitCode, String> {
    let checks = match Config::from_env() {
        Ok(config) => {
            let mut checks =
                vec![Check { name: "configuration", result: Ok("every variable present and well formed".into()) }];
            checks.extend(diagnose(&config, &super::aws::sdk().await, args.webhook_url.as_deref()).await);
            checks
        }
        Err(err) => vec![Check { name: "configuration", result: Err(err.to_string()) }],
    };
    Ok(if print(&checks) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Runs every check it can; a failed prerequisite fails the checks that need it.
pub async fn diagnose(config: &Config, sdk: &aws_config::SdkConfig, webhook_url: Option<&str>) -> Vec<Check> {
    let mut checks = Vec::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let secrets = super::aws::secrets(config, &aws_sdk_secretsmanager::Client::new(sdk));
    let (pagerduty, salesforce) = (&config.pagerduty, &config.salesforce);
    let http = reqwest_client();
    let transport: Arc<dyn Transport> = Arc::new(ReqwestTransport::with_client(http.clone()));

    // PagerDuty: token, From user, webhook subscription.
    match secrets.pagerduty_token(&pagerduty.token_secret_id).await {
        Err(err) => checks.push(Check { name: "PagerDuty token secret", result: Err(err.to_string()) }),
        Ok(_) => {
            checks.push(Check { name: "PagerDuty token secret", result: Ok("readable".into()) });
            // The client the functions use, reading the token just read (now in the cache).
            let pd = pagerduty.client(transport.clone(), secrets.clone(), HTTP_TIMEOUT);
            checks.push(Check {
                name: "PagerDuty token and From user",
                result: match pd.find_user_by_email(&pagerduty.from_email).await {
                    Ok(Some(user)) => Ok(format!("token accepted; From user {} is {}", pagerduty.from_email, user.id)),
                    Ok(None) => Err(format!(
                        "token accepted, but no PagerDuty user has the email {}: create the integration user or fix PAGERDUTY_FROM_EMAIL",
                        pagerduty.from_email
                    )),
                    Err(err) => Err(format!("{err}; create a new REST API key and store it with `{{\"token\": ...}}`")),
                },
            });
            checks.push(Check {
                name: "PagerDuty webhook subscription",
                result: match pd.list_webhook_subscriptions().await {
                    Err(err) => Err(err.to_string()),
                    Ok(subs) => {
                        let ours: Vec<_> = subs
                            .iter()
                            .filter(|s| match (webhook_url, s.url.as_deref()) {
                                (Some(want), Some(url)) => url == want,
                                (None, Some(url)) => url.ends_with("/pagerduty/webhook"),
                                _ => false,
                            })
                            .collect();
                        match ours.iter().find(|s| s.active) {
                            Some(sub) => Ok(format!("{} is active", sub.id)),
                            None if !ours.is_empty() => Err(format!(
                                "subscription {} points here but is disabled (PagerDuty disables one that keeps failing): fix the cause, then enable it",
                                ours[0].id
                            )),
                            None => Err("no webhook subscription points at this bridge: run `syncctl setup pagerduty-webhook --url <PagerDutyWebhookUrl>`".into()),
                        }
                    }
                },
            });
        }
    }
    checks.push(Check {
        name: "PagerDuty webhook signing secret",
        result: secrets
            .webhook_secrets(&pagerduty.webhook_secret_id)
            .await
            .map(|s| format!("{} secret(s) accepted", s.iter().count()))
            .map_err(|e| e.to_string()),
    });

    // Salesforce: JWT minting.
    let jwt = match secrets.salesforce_jwt(&salesforce.jwt_secret_id).await {
        Err(err) => Err(err.to_string()),
        Ok(json) => JwtCredentials::from_secret_json(&json).map_err(|e| e.to_string()),
    };
    let token = match jwt {
        Err(err) => Err(err),
        Ok(creds) => salesforce
            .authenticator(transport.clone(), Credential::Fixed(creds), clock.clone(), HTTP_TIMEOUT)
            .mint()
            .await
            .map_err(|e| e.to_string()),
    };
    match token {
        Ok(token) => {
            checks.push(Check {
                name: "Salesforce JWT login",
                result: Ok(format!("token minted for {}", token.instance_url)),
            });
            checks.push(Check {
                name: "Salesforce API usage",
                result: api_usage(&http, &token, &salesforce.api_version).await,
            });
        }
        Err(err) => checks.push(Check { name: "Salesforce JWT login", result: Err(err) }),
    }
    checks.push(Check {
        name: "Salesforce inbound signing secret",
        result: secrets
            .inbound_secrets(&salesforce.inbound_secret_id)
            .await
            .map(|s| format!("{} secret(s) accepted", s.iter().count()))
            .map_err(|e| e.to_string()),
    });

    // AWS: table and rules, queues.
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.store.table_name);
    checks.push(Check {
        name: "DynamoDB table and rules",
        result: match store.current_rules().await {
            Err(err) => Err(err.to_string()),
            Ok(None) => {
                Err("no rules stored: validate with `syncctl rules check FILE`, then `syncctl rules push FILE`".into())
            }
            Ok(Some(stored)) => match Rules::from_yaml(&stored.document) {
                Ok(rules) => Ok(format!("rules version {} is valid ({} rule(s))", stored.version, rules.rule_count())),
                Err(errors) => Err(format!("stored rules version {} is invalid:\n{errors}", stored.version)),
            },
        },
    });
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let retry = SqsQueue::new(sqs.clone(), &config.queues.retry_queue_url);
    checks.push(Check {
        name: "retry queue",
        result: retry
            .approximate_depth()
            .await
            .map(|n| format!("reachable, {n} message(s) waiting"))
            .map_err(|e| e.to_string()),
    });
    let dlq = SqsQueue::new(sqs, &config.queues.dlq_url);
    checks.push(Check {
        name: "dead-letter queue",
        result: match dlq.approximate_depth().await {
            Ok(0) => Ok("reachable and empty".into()),
            Ok(n) => {
                Err(format!("{n} dead letter(s): inspect with `syncctl dlq list`, fix, then `syncctl dlq replay`"))
            }
            Err(err) => Err(err.to_string()),
        },
    });
    checks
}

/// Share of the org's daily API requests used, from `GET limits`; above 80% is a failure (at 90%
/// the bridge pauses and queues).
async fn api_usage(
    http: &reqwest::Client,
    token: &shared::salesforce::AccessToken,
    version: &str,
) -> Result<String, String> {
    let url = format!("{}/services/data/v{version}/limits", token.instance_url);
    let response = http.get(url).bearer_auth(token.secret()).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!(
            "GET limits answered {}: the integration user needs the API Enabled permission",
            response.status()
        ));
    }
    let limits: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    let max = limits["DailyApiRequests"]["Max"].as_f64().unwrap_or(0.0);
    let remaining = limits["DailyApiRequests"]["Remaining"].as_f64().unwrap_or(0.0);
    if max <= 0.0 {
        return Err("the org reports no daily API limit".into());
    }
    let share = (max - remaining) / max * 100.0;
    let text = format!("{share:.0}% of {max:.0} daily requests used");
    if share > 80.0 {
        Err(format!("{text}: the bridge pauses at 90%; find the heavy consumer or raise the limit"))
    } else {
        Ok(text)
    }
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("http client")
}
