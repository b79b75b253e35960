//! `syncctl setup salesforce` as a new admin runs it: the key pair stored in the stack's JWT
//! secret (Secrets Manager on moto), the certificate written, "Connection OK" only once that
//! certificate is the one the app holds (the Salesforce simulator), the org checked, a stored key
//! never replaced by accident, and the Apex side's signing key rotated with the old one kept.

use std::process::Command;

use serde_json::{Value, json};
use sim::moto;
use sim::salesforce::{SalesforceSim, SfSimConfig};

struct Env {
    endpoint: String,
    jwt_secret: String,
    inbound_secret: String,
    login_url: String,
    org_id: String,
}

fn syncctl(env: &Env, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_syncctl"))
        .args(args)
        .env("AWS_ENDPOINT_URL", &env.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("TABLE_NAME", "unused")
        .env("RETRY_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/retry")
        .env("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq")
        .env("PAGERDUTY_FROM_EMAIL", "bridge@example.com")
        .env("PAGERDUTY_TOKEN_SECRET_ID", "unused")
        .env("PAGERDUTY_WEBHOOK_SECRET_ID", "unused")
        .env("SALESFORCE_LOGIN_URL", &env.login_url)
        .env("SALESFORCE_JWT_AUDIENCE", "https://login.salesforce.com")
        .env("SALESFORCE_API_VERSION", "62.0")
        .env("SALESFORCE_JWT_SECRET_ID", &env.jwt_secret)
        .env("SALESFORCE_INBOUND_SECRET_ID", &env.inbound_secret)
        .env("SALESFORCE_ORG_ID", &env.org_id)
        .env("SALESFORCE_INTEGRATION_USER", "integration@example.com")
        .output()
        .expect("run syncctl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn secret_json(sm: &aws_sdk_secretsmanager::Client, id: &str) -> Value {
    let out = sm.get_secret_value().secret_id(id).send().await.expect("read secret");
    serde_json::from_str(out.secret_string().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_sets_up_the_jwt_app_proves_the_connection_and_rotates_the_apex_signing_key() {
    // What the stack creates: placeholders in the JWT secret, a generated inbound key.
    let placeholder = r#"{"consumer_key": "REPLACE", "username": "REPLACE", "private_key_pem": "REPLACE"}"#;
    let (sm, jwt_secret) = moto::secret(placeholder).await;
    let (_, inbound_secret) = moto::secret(r#"{"current": "stack-generated-key", "previous": null}"#).await;
    let sf = SalesforceSim::start(SfSimConfig::default()).await;
    sf.insert_record("User", json!({"Username": "integration@example.com", "Name": "PD Sync", "IsActive": true}));
    let org_id = sf.config().org_id;
    let env = Env {
        endpoint: moto::url().await,
        jwt_secret: jwt_secret.clone(),
        inbound_secret: inbound_secret.clone(),
        login_url: sf.base_url(),
        org_id: org_id.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let certificate = dir.path().join("pd-sfdc-sync-jwt.crt");
    let certificate_arg = certificate.to_str().unwrap();
    let generate =
        ["setup", "salesforce", "--consumer-key", "sim-consumer-key", "--username", "integration@example.com"];

    let (ok, out) = syncctl(&env, &[&generate[..], &["--certificate", certificate_arg]].concat());
    assert!(ok, "{out}");
    assert!(out.contains("Enable JWT Bearer Flow") && out.contains("pre-authorized"), "the settings to enter: {out}");
    let stored = secret_json(&sm, &jwt_secret).await;
    assert_eq!(
        (stored["consumer_key"].as_str(), stored["username"].as_str()),
        (Some("sim-consumer-key"), Some("integration@example.com"))
    );
    assert!(stored["private_key_pem"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    let pem = std::fs::read_to_string(&certificate).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(!out.contains("PRIVATE KEY"), "the private key is never printed: {out}");

    // Until the admin uploads the certificate, the app holds another one: no token.
    let (ok, out) = syncctl(&env, &["setup", "salesforce", "--check"]);
    assert!(!ok && out.contains("no token"), "{out}");

    sf.set_certificate(&pem);
    let (ok, out) = syncctl(&env, &["setup", "salesforce", "--check"]);
    assert!(ok, "{out}");
    assert!(out.contains("Connection OK") && out.contains(&org_id) && out.contains("integration@example.com"), "{out}");
    assert!(out.contains("SalesforceIntegrationUserId=005"), "it names the user id to set: {out}");
    let (ok, out) = syncctl(&env, &["setup", "salesforce", "--check", "--json"]);
    let found: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(ok && found["connection"] == "ok" && found["org_id"] == org_id.as_str(), "{found}");

    // The stack expects another org: every post would be refused, so the check says so.
    let other = Env { org_id: "00D5g0000OTHERA".into(), ..env_clone(&env) };
    let (ok, out) = syncctl(&other, &["setup", "salesforce", "--check"]);
    assert!(!ok && out.contains("SalesforceOrgId"), "{out}");

    // A stored key is never replaced by accident.
    let (ok, out) = syncctl(&env, &[&generate[..], &["--certificate", certificate_arg]].concat());
    assert!(!ok && out.contains("--rotate"), "{out}");
    assert_eq!(secret_json(&sm, &jwt_secret).await, stored, "the key is unchanged");
    assert_eq!(std::fs::read_to_string(&certificate).unwrap(), pem, "and so is the certificate it goes with");
    let (ok, out) = syncctl(&env, &[&generate[..], &["--certificate", certificate_arg, "--rotate"]].concat());
    assert!(ok, "{out}");
    assert_ne!(secret_json(&sm, &jwt_secret).await["private_key_pem"], stored["private_key_pem"]);
    let (ok, _) = syncctl(&env, &["setup", "salesforce", "--check"]);
    assert!(!ok, "the app still holds the old certificate");
    sf.set_certificate(&std::fs::read_to_string(&certificate).unwrap());
    let (ok, out) = syncctl(&env, &["setup", "salesforce", "--check"]);
    assert!(ok, "{out}");

    // The Apex side: the Named Credential takes the base URL, and the signing key is rotated
    // with the old one kept, so posts signed by either verify while Salesforce is updated.
    let base = "https://abc123.execute-api.us-east-1.amazonaws.com";
    let (ok, out) = syncctl(&env, &["setup", "salesforce", "--apex-url", &format!("{base}/salesforce/records")]);
    assert!(!ok && out.contains("ApiBaseUrl"), "a route URL would double the path: {out}");
    let (ok, out) = syncctl(&env, &["setup", "salesforce", "--apex-url", base]);
    assert!(ok && out.contains(base) && out.contains("stack-generated-key"), "{out}");
    let (ok, out) = syncctl(&env, &["setup", "salesforce", "--apex-url", base, "--json"]);
    let apex: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(ok && apex["named_credential_url"] == base && apex["signing_key"] == "stack-generated-key", "{apex}");
    let (ok, out) = syncctl(&env, &["setup", "salesforce", "--apex-url", base, "--rotate-signing-key"]);
    assert!(ok, "{out}");
    let inbound = secret_json(&sm, &inbound_secret).await;
    let current = inbound["current"].as_str().unwrap();
    assert_eq!(inbound["previous"], "stack-generated-key");
    assert!(current.len() == 48 && current.chars().all(|c| c.is_ascii_alphanumeric()), "{current}");
    assert!(out.contains(current), "the new key is printed for the custom metadata: {out}");
}

fn env_clone(env: &Env) -> Env {
    Env {
        endpoint: env.endpoint.clone(),
        jwt_secret: env.jwt_secret.clone(),
        inbound_secret: env.inbound_secret.clone(),
        login_url: env.login_url.clone(),
        org_id: env.org_id.clone(),
    }
}
