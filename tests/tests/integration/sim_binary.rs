//! The `simulators` binary starts both simulators and prints their coordinates as one JSON line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[tokio::test]
async fn binary_prints_one_json_line_and_serves_both_simulators() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_simulators"))
        .args(["--pd-port", "0", "--sf-port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start simulators binary");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let info: Value = serde_json::from_str(&line).expect("first stdout line is JSON");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let pd = info["pagerduty"]["base_url"].as_str().unwrap();
    let r = client
        .get(format!("{pd}/priorities"))
        .header("Authorization", format!("Token token={}", info["pagerduty"]["token"].as_str().unwrap()))
        .header("Accept", "application/vnd.pagerduty+json;version=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sf = info["salesforce"]["instance_url"].as_str().unwrap();
    let r = client.get(format!("{sf}/services/data/v62.0/limits")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the Salesforce simulator answers, and wants a session");
    assert!(std::path::Path::new(info["salesforce"]["private_key_path"].as_str().unwrap()).exists());
    child.kill().unwrap();
    child.wait().unwrap();
}
