//! `syncctl doctor`: PagerDuty's "Connection OK", and every other link in the chain. It first
//! says which account and region it runs in and lists every missing setting at once, then runs
//! every check it can; each prints OK or what to fix. Exit 1 when a check fails, 3 when only
//! unreachable sources kept it from checking (see `syncctl --help`).

use std::sync::Arc;

use adapters::dynamodb::DynamoStore;
use adapters::http::{HTTP_TIMEOUT, ReqwestTransport};
use adapters::sqs::SqsQueue;
use clap::Args;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::pagerduty::oauth::check_scopes;
use shared::pagerduty::{Authorization, PagerdutyAuth};
use shared::retry::queue::Queue;
use shared::rules::{ActionKind, Rules};
use shared::salesforce::JwtCredentials;
use shared::secrets::Credential;
use shared::store::RulesStore;
use shared::transport::Transport;

use crate::aws::Aws;
use crate::failure::{Failure, setting_line};
use crate::report::{self, Line};
use crate::settings::{Globals, Settings};

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

pub async fn run(args: DoctorArgs, globals: &Globals) -> Result<u8, crate::failure::Failure> {
    let mut lines = Vec::new();
    let mut context = serde_json::json!({"stack": globals.stack_name});
    // Without AWS access nothing else can be checked: say so, and why, as the only line.
    let aws = match Aws::connect(globals.region.as_deref(), globals.profile.as_deref()).await {
        Ok(aws) => aws,
        Err(failure) => {
            lines.push(Line::failed("AWS credentials and region", &failure));
            return Ok(report::print("doctor", context, &lines, globals.json));
        }
    };
    match aws.identity().await {
        Ok(identity) => {
            lines.push(Line::ok(
                "AWS account and region",
                format!("account {} in {} as {}", identity.account, identity.region, identity.arn),
            ));
            context["account"] = identity.account.clone().into();
            context["region"] = identity.region.clone().into();
        }
        Err(failure) => lines.push(Line::failed("AWS account and region", &failure)),
    }
    let stack = match &globals.stack_name {
        Some(name) if !name.is_empty() => match crate::stack::describe(&aws.sdk, name).await {
            Ok(stack) => {
                lines.push(Line::ok(
                    "stack",
                    format!("{} ({}): {} setting(s) read", stack.name, stack.status, stack.vars.len()),
                ));
                Some(stack)
            }
            Err(failure) => {
                lines.push(Line::failed("stack", &failure));
                None
            }
        },
        _ => None,
    };
    let settings = Settings::from_parts(globals, aws, stack);
    let webhook_url = args.webhook_url.clone().or_else(|| settings.get("PAGERDUTY_WEBHOOK_URL").map(str::to_string));
    match Config::from_map_all(&settings.vars) {
        Ok(config) => {
            lines.push(Line::ok("settings", "every setting present and well formed"));
            for check in diagnose(&config, &settings.aws.sdk, webhook_url.as_deref()).await {
                lines.push(match check.result {
                    Ok(detail) => Line::ok(check.name, detail),
                    Err(fix) => Line::problem(check.name, fix),
                });
            }
        }
        Err(problems) => {
            let text: Vec<String> = problems.iter().map(setting_line).collect();
            let hint = if globals.stack_name.is_none() {
                "\npass --stack-name NAME to read them from the deployed stack"
            } else {
                ""
            };
            lines.push(
                Line::problem("settings", format!("{} missing or invalid:\n{}{hint}", problems.len(), text.join("\n")))
                    .with_data(problems.iter().map(|p| p.name()).collect::<Vec<_>>()),
            );
            lines.extend(partial(&settings).await);
        }
    }
    Ok(report::print("doctor", context, &lines, globals.json))
}

/// What can be checked without a whole configuration: each AWS resource that is named.
async fn partial(settings: &Settings) -> Vec<Line> {
    let mut lines = Vec::new();
    let skipped = |name: &str, var: &str| Line::skipped(name.to_string(), format!("needs {var}"));
    match settings.store() {
        Ok(store) => lines.push(match store.current_rules().await {
            Ok(Some(stored)) => Line::ok("DynamoDB table and rules", format!("rules version {}", stored.version)),
            Ok(None) => Line::problem("DynamoDB table and rules", "no rules stored: `syncctl rules push FILE`"),
            Err(err) => Line::failed("DynamoDB table and rules", &Failure::of(settings.table_label(), &err)),
        }),
        Err(_) => lines.push(skipped("DynamoDB table and rules", "TABLE_NAME")),
    }
    for (name, queue) in [("retry queue", settings.retry_queue()), ("dead-letter queue", settings.dlq())] {
        lines.push(match queue {
            Ok(queue) => match queue.approximate_depth().await {
                Ok(n) => Line::ok(name, format!("reachable, {n} message(s)")),
                Err(err) => Line::failed(name, &Failure::of(name, &err)),
            },
            Err(_) => skipped(name, if name == "retry queue" { "RETRY_QUEUE_URL" } else { "DLQ_URL" }),
        });
    }
    lines.push(Line::skipped("PagerDuty and Salesforce", "needs every setting above"));
    lines
}

/// Runs every check it can; a failed prerequisite fails the checks that need it.
pub async fn diagnose(config: &Config, sdk: &aws_config::SdkConfig, webhook_url: Option<&str>) -> Vec<Check> {
    let mut checks = Vec::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let secrets = crate::aws::secrets(config, &aws_sdk_secretsmanager::Client::new(sdk));
    let (pagerduty, salesforce) = (&config.pagerduty, &config.salesforce);
    let http = reqwest_client();
    let transport: Arc<dyn Transport> = Arc::new(ReqwestTransport::with_client(http.clone()));

    // The stored rules: the app token's scopes are checked against their actions, and the
    // table check below reports them.
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.store.table_name);
    let stored_rules = store.current_rules().await;

    // PagerDuty: credential, From user, webhook subscription.
    let credential = match secrets.get(&pagerduty.token_secret_id).await {
        Ok(raw) => PagerdutyAuth::from_secret(&raw, &pagerduty.token_secret_id),
        Err(err) => Err(err),
    };
    match credential {
        Err(err) => checks.push(Check { name: "PagerDuty token secret", result: Err(err.to_string()) }),
        Ok(credential) => {
            let kind = match &credential {
                PagerdutyAuth::ApiKey(_) => "readable: a REST API key".to_string(),
                PagerdutyAuth::App(app) => {
                    format!("readable: a Scoped OAuth app (client {}, {})", app.client_id, app.account.scope())
                }
            };
            checks.push(Check { name: "PagerDuty token secret", result: Ok(kind) });
            // The client the functions use, reading the secret just read (now in the cache).
            let pd = pagerduty.client(transport.clone(), secrets.clone(), HTTP_TIMEOUT);
            let fix = match &credential {
                PagerdutyAuth::ApiKey(_) => "create a new REST API key and store it with `{\"token\": ...}`",
                PagerdutyAuth::App(_) => "check the app's client and scopes (`syncctl setup pagerduty-credential`)",
            };
            if let PagerdutyAuth::App(_) = &credential {
                let actions = match &stored_rules {
                    Ok(Some(stored)) => Rules::from_yaml(&stored.document).ok().map(|rules| rule_actions(&rules)),
                    _ => None,
                };
                checks.push(Check { name: "PagerDuty app token and scopes", result: app_scopes(&pd, actions).await });
            }
            checks.push(Check {
                name: "PagerDuty token and From user",
                result: match pd.find_user_by_email(&pagerduty.from_email).await {
                    Ok(Some(user)) => Ok(format!("token accepted; From user {} is {}", pagerduty.from_email, user.id)),
                    Ok(None) => Err(format!(
                        "token accepted, but no PagerDuty user has the email {}: create the integration user or fix PAGERDUTY_FROM_EMAIL",
                        pagerduty.from_email
                    )),
                    Err(err) => Err(format!("{err}; {fix}")),
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
                result: {
                    let auth = Arc::new(shared::salesforce::StaticToken(token.clone()));
                    let client = shared::salesforce::SalesforceClient::new(
                        transport.clone(),
                        auth,
                        salesforce.api_version.clone(),
                    );
                    match client.daily_api_usage().await {
                        Ok(usage) => api_usage(usage),
                        Err(err) => Err(format!(
                            "GET limits failed: {err}; the integration user needs the API Enabled permission"
                        )),
                    }
                },
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
    checks.push(Check {
        name: "DynamoDB table and rules",
        result: match stored_rules {
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

/// Every action the rules name, once each.
fn rule_actions(rules: &Rules) -> Vec<ActionKind> {
    let mut kinds = Vec::new();
    for rule in rules.rulesets.iter().flat_map(|set| &set.rules) {
        for action in &rule.actions {
            if !kinds.contains(&action.kind()) {
                kinds.push(action.kind());
            }
        }
    }
    kinds
}

/// Fetches an app token as the functions do and compares its granted scopes with what the
/// bridge and the rules' actions need (`None`: the rules could not be read; the bridge's own
/// needs and every action are checked then).
async fn app_scopes(
    pd: &shared::pagerduty::PagerdutyClient,
    actions: Option<Vec<ActionKind>>,
) -> Result<String, String> {
    let token = match pd.warm_up().await.map_err(|e| e.to_string())? {
        Authorization::App(token) => token,
        Authorization::ApiKey(_) => return Ok("the secret now holds an API key".into()),
    };
    let which = if actions.is_some() { "the rules" } else { "every action (rules not read)" };
    let report = check_scopes(&token.scopes, actions.unwrap_or_else(|| ActionKind::ALL.to_vec()));
    let mut problems: Vec<String> = report
        .missing
        .iter()
        .map(|(scope, by)| format!("missing scope {scope} (needed by {})", by.join(", ")))
        .collect();
    problems.extend(report.unsupported.iter().map(|kind| {
        format!("{kind}: PagerDuty documents no scope for its endpoint, so an app token may be refused; use a REST API key for it")
    }));
    if problems.is_empty() {
        Ok(format!("token fetched; its scopes cover the bridge and {which}: {}", token.scopes.join(" ")))
    } else {
        Err(format!(
            "token fetched, but:\n{}\ngrant the scopes to the app (Integrations > App Registration) and list them in the secret's \"scopes\"",
            problems.join("\n")
        ))
    }
}

/// Share of the org's daily API requests used; above 80% is a problem (at 90% the bridge pauses
/// and queues). Doctor and status say it the same way.
pub fn api_usage(usage: shared::salesforce::ApiUsage) -> Result<String, String> {
    if usage.limit == 0 {
        return Err("the org reports no daily API limit".into());
    }
    let share = usage.share() * 100.0;
    let text =
        format!("{share:.0}% of {} daily requests used ({} left)", usage.limit, usage.limit.saturating_sub(usage.used));
    if share > 80.0 {
        Err(format!("{text}: the bridge pauses at 90%; find the heavy consumer or raise the limit"))
    } else {
        Ok(text)
    }
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("http client")
}
