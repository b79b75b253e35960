//! `syncctl setup pagerduty-webhook --url URL [--service ID | --team ID]`: creates the Webhooks v3
//! subscription and stores its signing secret, keeping the previous one so that deliveries
//! signed with either verify during the change-over. `syncctl setup salesforce`: see
//! [`salesforce`]. `syncctl setup pagerduty-credential`: a REST API key or a Scoped OAuth app,
//! see [`pagerduty_credential`].

pub mod pagerduty_credential;
pub mod salesforce;

use std::sync::Arc;

use adapters::http::{HTTP_TIMEOUT, ReqwestTransport};
use clap::Subcommand;
use shared::config::Config;
use shared::pagerduty::SubscriptionFilter;

use crate::exit;
use crate::failure::Failure;
use crate::settings::{Globals, Settings};

#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Subscribe PagerDuty's webhooks to this bridge and store the signing secret.
    PagerdutyWebhook {
        /// The public URL of POST /pagerduty/webhook (default: stack output PagerDutyWebhookUrl).
        #[arg(long)]
        url: Option<String>,
        /// Only this service's incidents (default: the whole account).
        #[arg(long, conflicts_with = "team")]
        service: Option<String>,
        /// Only this team's incidents.
        #[arg(long)]
        team: Option<String>,
        /// Create nothing: record this existing subscription for the reconcile watchdog.
        #[arg(long, conflicts_with_all = ["url", "service", "team"])]
        watch: Option<String>,
    },
    /// Store the PagerDuty credential (a REST API key or a Scoped OAuth app), once PagerDuty accepts it.
    PagerdutyCredential {
        /// Read a REST API key from stdin.
        #[arg(long, conflicts_with_all = ["client_id", "subdomain", "region", "scopes"])]
        api_key_stdin: bool,
        /// The Scoped OAuth client's id (its secret is read from stdin).
        #[arg(long, requires = "subdomain")]
        client_id: Option<String>,
        /// The account's subdomain (`acme` of acme.pagerduty.com).
        #[arg(long)]
        subdomain: Option<String>,
        /// The account's service region.
        #[arg(long, default_value = "us", value_parser = ["us", "eu"])]
        region: String,
        /// Space-separated scopes to request (default: every scope the bridge uses).
        #[arg(long)]
        scopes: Option<String>,
    },
    /// The Salesforce app of the JWT bearer flow (key pair, certificate, settings), the proof that
    /// it works (--check), and the Apex side (--apex-url).
    Salesforce {
        /// The External Client App's consumer key (generates and stores a new key pair with --username).
        #[arg(long, requires = "username")]
        consumer_key: Option<String>,
        /// The integration user's Salesforce username (stack parameter SalesforceIntegrationUser).
        #[arg(long, requires = "consumer_key")]
        username: Option<String>,
        /// Where to write the certificate to upload to the app.
        #[arg(long, default_value = "pd-sfdc-sync-jwt.crt")]
        certificate: std::path::PathBuf,
        /// Replace a key the secret already holds (the app's certificate must be replaced too).
        #[arg(long)]
        rotate: bool,
        /// Mint a token and read the integration user: "Connection OK" or what to fix.
        #[arg(long)]
        check: bool,
        /// The stack's ApiBaseUrl output: prints the Named Credential settings for the Apex side.
        #[arg(long)]
        apex_url: Option<String>,
        /// With --apex-url: a new inbound signing key (the old one stays valid as "previous").
        #[arg(long, requires = "apex_url")]
        rotate_signing_key: bool,
    },
}

pub async fn run(cmd: SetupCommand, globals: &Globals) -> Result<u8, Failure> {
    let settings = Settings::resolve(globals).await?;
    let config = settings.config()?;
    match cmd {
        SetupCommand::PagerdutyWebhook { watch: Some(id), .. } => {
            watch(&config, &settings.aws.sdk, &id)
                .await
                .map_err(|e| Failure::Failed(format!("subscription {id}: {e}")))?;
            if globals.json {
                println!("{}", serde_json::json!({"subscription_id": id, "watched": true}));
            } else {
                println!("recorded subscription {id} in {} for the reconcile watchdog", config.store.table_name);
            }
            Ok(exit::OK)
        }
        SetupCommand::PagerdutyWebhook { url, service, team, watch: None } => {
            let url = url.or_else(|| settings.get("PAGERDUTY_WEBHOOK_URL").map(str::to_string)).ok_or_else(|| {
                Failure::Usage(
                    "pass --url <PagerDutyWebhookUrl> or --stack-name NAME (its output PagerDutyWebhookUrl)".into(),
                )
            })?;
            run_pagerduty_webhook(&config, &settings, url, service, team, globals.json).await.map_err(Failure::Failed)
        }
        SetupCommand::PagerdutyCredential { api_key_stdin, client_id, subdomain, region, scopes } => {
            use pagerduty_credential::{NewCredential, read_secret_line};
            let new = match (api_key_stdin, client_id, subdomain) {
                (true, _, _) => NewCredential::ApiKey(read_secret_line("API key").map_err(Failure::Usage)?),
                (false, Some(client_id), Some(subdomain)) => NewCredential::App {
                    client_id,
                    client_secret: read_secret_line("client secret").map_err(Failure::Usage)?,
                    subdomain,
                    region,
                    scopes,
                },
                _ => {
                    return Err(Failure::Usage(
                        "pass --api-key-stdin, or --client-id and --subdomain (the client secret on stdin)".into(),
                    ));
                }
            };
            let done = pagerduty_credential::store(&config, &settings.aws.sdk, &new).await.map_err(Failure::Failed)?;
            if globals.json {
                println!("{}", serde_json::json!({"stored": config.pagerduty.token_secret_id, "detail": done}));
            } else {
                println!("{done}");
            }
            Ok(exit::OK)
        }
        SetupCommand::Salesforce {
            consumer_key,
            username,
            certificate,
            rotate,
            check,
            apex_url,
            rotate_signing_key,
        } => {
            let sm = aws_sdk_secretsmanager::Client::new(&settings.aws.sdk);
            let mut did = false;
            if let (Some(consumer_key), Some(username)) = (consumer_key, username) {
                salesforce_keys(&config, &sm, consumer_key, username, &certificate, rotate, globals.json)
                    .await
                    .map_err(Failure::Failed)?;
                did = true;
            }
            if let Some(url) = apex_url {
                salesforce_apex(&config, &sm, &url, rotate_signing_key, globals.json).await.map_err(Failure::Failed)?;
                did = true;
            }
            if check {
                salesforce_check(&config, &sm, globals.json).await.map_err(Failure::Failed)?;
                did = true;
            }
            if !did {
                return Err(Failure::Usage(
                    "say what to set up: --consumer-key and --username (the JWT key pair), --check, or --apex-url"
                        .into(),
                ));
            }
            Ok(exit::OK)
        }
    }
}

async fn salesforce_keys(
    config: &Config,
    sm: &aws_sdk_secretsmanager::Client,
    consumer_key: String,
    username: String,
    certificate: &std::path::Path,
    rotate: bool,
    json: bool,
) -> Result<(), String> {
    let secret_id = &config.salesforce.jwt_secret_id;
    salesforce::check_replaceable(sm, secret_id, rotate).await?;
    let pair = salesforce::generate(chrono::Utc::now(), salesforce::CERTIFICATE_DAYS)?;
    let credentials = shared::salesforce::JwtCredentials {
        consumer_key,
        username: username.clone(),
        private_key_pem: pair.private_key_pem,
    };
    // The certificate first: a key stored without its certificate written would be a key no one can upload.
    std::fs::write(certificate, &pair.certificate_pem)
        .map_err(|e| format!("could not write the certificate to {}: {e}", certificate.display()))?;
    salesforce::store_credentials(sm, secret_id, &credentials).await?;
    if json {
        let doc = serde_json::json!({"secret_id": secret_id, "certificate": certificate,
            "app_settings": salesforce::app_settings(&username, certificate)});
        println!("{doc}");
        return Ok(());
    }
    println!("stored a new private key in {secret_id}");
    println!("wrote the certificate to upload: {}", certificate.display());
    println!();
    println!("{}", salesforce::app_settings(&username, certificate));
    Ok(())
}

async fn salesforce_check(config: &Config, sm: &aws_sdk_secretsmanager::Client, json: bool) -> Result<(), String> {
    let secrets = crate::aws::secrets(config, sm);
    let text = secrets.salesforce_jwt(&config.salesforce.jwt_secret_id).await.map_err(|e| e.to_string())?;
    let credentials = shared::salesforce::JwtCredentials::from_secret_json(&text).map_err(|e| e.to_string())?;
    let found = salesforce::check(config, credentials).await?;
    if json {
        let doc = serde_json::json!({"connection": "ok", "instance_url": found.instance_url, "username": found.username,
            "user_id": found.user_id, "org_id": found.org_id});
        println!("{doc}");
        return Ok(());
    }
    println!(
        "Connection OK: {} as {} (user {}, org {})",
        found.instance_url, found.username, found.user_id, found.org_id
    );
    if config.salesforce.integration_user_id.is_empty() {
        println!(
            "  set the stack parameter SalesforceIntegrationUserId={} so Outbound Messages from this user are recognised too",
            found.user_id
        );
    }
    Ok(())
}

async fn salesforce_apex(
    config: &Config,
    sm: &aws_sdk_secretsmanager::Client,
    api_base_url: &str,
    rotate_signing_key: bool,
    json: bool,
) -> Result<(), String> {
    let base = url::Url::parse(api_base_url)
        .ok()
        .filter(|u| u.scheme() == "https" || u.host_str() == Some("localhost") || u.host_str() == Some("127.0.0.1"))
        .ok_or(format!("{api_base_url} is not an https URL: give the stack's ApiBaseUrl output"))?;
    let base = base.as_str().trim_end_matches('/');
    if base.ends_with("/salesforce/records") {
        return Err(format!(
            "{api_base_url} is a route URL; the Named Credential takes the base (ApiBaseUrl): the Apex appends /salesforce/records"
        ));
    }
    let id = &config.salesforce.inbound_secret_id;
    let (key, rotated, kept) = if rotate_signing_key {
        let key = salesforce::new_signing_key();
        let kept = rotate(sm, id, &key).await?;
        (key, true, kept)
    } else {
        let signing = crate::aws::secrets(config, sm).inbound_secrets(id).await.map_err(|e| e.to_string())?;
        (signing.current.expose().to_string(), false, false)
    };
    if json {
        let doc = serde_json::json!({"named_credential_url": base, "integration_username": config.salesforce.integration_user,
            "signing_key": key, "signing_key_rotated": rotated, "previous_kept": kept, "secret_id": id});
        println!("{doc}");
        return Ok(());
    }
    println!("Named Credential PdSync (Setup -> Named Credentials):");
    println!("  URL                      {base}");
    println!("  External Credential      PdSync (no authentication: posts are signed with the Signing Key)");
    println!("  Generate Authorization Header  off");
    if rotated {
        println!(
            "stored a new inbound signing key in {id}{}",
            if kept { " (the old one stays valid as \"previous\")" } else { "" }
        );
    }
    println!("Custom Metadata PdSync Setting -> Default (Setup -> Custom Metadata Types):");
    println!("  Enabled                  checked");
    println!("  Integration Username     {}", config.salesforce.integration_user);
    println!("  Signing Key              {key}");
    println!("(the Signing Key is a secret: paste it, do not keep this output)");
    Ok(())
}

async fn run_pagerduty_webhook(
    config: &Config,
    settings: &Settings,
    url: String,
    service: Option<String>,
    team: Option<String>,
    json: bool,
) -> Result<u8, String> {
    let filter = match (service, team) {
        (Some(id), _) => SubscriptionFilter::Service(id),
        (_, Some(id)) => SubscriptionFilter::Team(id),
        _ => SubscriptionFilter::Account,
    };
    let (subscription_id, rotated) = pagerduty_webhook(config, &settings.aws.sdk, &url, &filter).await?;
    if json {
        let doc = serde_json::json!({"subscription_id": subscription_id, "url": url,
            "secret_id": config.pagerduty.webhook_secret_id, "previous_kept": rotated});
        println!("{doc}");
        return Ok(exit::OK);
    }
    println!("created webhook subscription {subscription_id} for {url}");
    println!(
        "recorded it in {} for the reconcile watchdog (it re-enables it when PagerDuty disables it)",
        config.store.table_name
    );
    println!(
        "stored its signing secret in {}{}",
        config.pagerduty.webhook_secret_id,
        if rotated {
            " (the previous secret is kept as \"previous\" until you remove the old subscription)"
        } else {
            ""
        }
    );
    Ok(exit::OK)
}

/// Creates the subscription, stores its secret and records its id in the table for the reconcile
/// watchdog. Returns its id and whether an older secret was kept.
///
/// The current secret is read before anything is created: a rotation that cannot read it would
/// drop it, and the live subscription signs with it. A secret that cannot be stored leaves a
/// subscription whose deliveries nobody can verify: it is deleted again.
pub async fn pagerduty_webhook(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    url: &str,
    filter: &SubscriptionFilter,
) -> Result<(String, bool), String> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let secret_id = &config.pagerduty.webhook_secret_id;
    let previous = current_secret(&sm, secret_id).await?;
    let secrets = crate::aws::secrets(config, &sm);
    let http = ReqwestTransport::new().map_err(|e| e.to_string())?;
    let pd = config.pagerduty.client(Arc::new(http), secrets, HTTP_TIMEOUT);
    let (subscription, secret) = pd.create_webhook_subscription(url, filter).await.map_err(|e| e.to_string())?;
    if let Err(err) = store_secret(&sm, secret_id, &secret, previous.as_deref()).await {
        return Err(match pd.delete_webhook_subscription(&subscription.id).await {
            Ok(()) => format!("{err}; the new subscription was deleted again: nothing changed"),
            Err(e) => format!(
                "{err}; the new subscription {} could not be deleted again ({e}): delete it in PagerDuty \
                 (Integrations > Generic Webhooks)",
                subscription.id
            ),
        });
    }
    watch(config, sdk, &subscription.id)
        .await
        .map_err(|e| format!("subscription {} created and its secret stored, but {e}", subscription.id))?;
    Ok((subscription.id, previous.is_some()))
}

/// Records `id` in the table, where each reconcile run's watchdog reads it (the retry function
/// has no access to the webhook secret, and needs none).
pub async fn watch(config: &Config, sdk: &aws_config::SdkConfig, id: &str) -> Result<(), String> {
    use shared::store::CursorStore;
    let table = adapters::dynamodb::DynamoStore::from_conf(sdk, &config.store.table_name);
    table.watch_subscription(id).await.map_err(|e| {
        format!(
            "it could not be recorded for the reconcile watchdog: {e}; record it (no new subscription) with \
             `syncctl setup pagerduty-webhook --watch {id}`"
        )
    })
}

/// The signing secret's `current` value, `None` when there is none yet (a new stack's
/// placeholder, or no secret value at all). An error when it cannot be read: nothing must be
/// written over it.
pub async fn current_secret(sm: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<Option<String>, String> {
    use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
    let text = match sm.get_secret_value().secret_id(secret_id).send().await {
        Ok(out) => out.secret_string().map(str::to_string),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => None,
        Err(e) => {
            return Err(format!(
                "could not read the current signing secret in {secret_id} ({}): nothing was changed; \
                 a rotation must keep it as \"previous\" while the old subscription still delivers",
                e.message().unwrap_or(e.code().unwrap_or("unknown error"))
            ));
        }
    };
    Ok(text
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|v| v["current"].as_str().map(str::to_string))
        .filter(|s| !s.is_empty() && !s.starts_with("REPLACE")))
}

/// Writes `{"current": new, "previous": old current}`, refusing when the current one cannot be
/// read. Returns whether an old secret was kept. The subscription it belongs to is recorded in
/// the table, not here (see [`pagerduty_webhook`]).
pub async fn rotate(sm: &aws_sdk_secretsmanager::Client, secret_id: &str, new: &str) -> Result<bool, String> {
    let previous = current_secret(sm, secret_id).await?;
    store_secret(sm, secret_id, new, previous.as_deref()).await?;
    Ok(previous.is_some())
}

async fn store_secret(
    sm: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    new: &str,
    previous: Option<&str>,
) -> Result<(), String> {
    let value = serde_json::json!({"current": new, "previous": previous});
    sm.put_secret_value().secret_id(secret_id).secret_string(value.to_string()).send().await.map_err(|e| {
        use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
        format!(
            "could not store the signing secret in {secret_id}: {}",
            e.message().unwrap_or(e.code().unwrap_or("unknown error"))
        )
    })?;
    Ok(())
}
