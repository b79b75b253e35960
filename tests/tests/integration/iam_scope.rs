//! Least privilege, checked against what the code really sends: the three functions and the
//! operator's commands run real scenarios on moto through a recording proxy, and every DynamoDB,
//! SQS and Secrets Manager request is judged against the IAM statements in template.yaml, as IAM
//! would judge it (action, resource, and `dynamodb:LeadingKeys` for every item of a batch or
//! transaction). Then the other way round: each grant must be used by a scenario or be named in
//! [`NOT_DRIVEN`] with the code path that needs it, and no function may write the rules, touch the
//! audit trail other than by appending to it (and, for the retry function's reconcile runs,
//! reading a subject's entries), or act on `Resource: "*"`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use adapters::sqs::SqsQueue;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::handler;
use shared::handler::settle::RetryPolicy;
use shared::retry::backoff::Backoff;
use shared::retry::queue::Queue;
use shared::store::Subject;
use sim::faults::FaultKind;
use sim::harness::{
    Harness, HarnessConfig, INBOUND_SECRET, ORG_ID, OUTBOUND_MESSAGE_TOKEN, WEBHOOK_SECRET, delivery, incident_data,
};
use sim::pagerduty::sign_v1;
use sim::salesforce::sign_trigger;

const FUNCTIONS: [&str; 3] = ["PdToSfdcFunction", "SfdcToPdFunction", "RetryFunction"];
const OPERATOR: &str = "OperatorPolicy";
/// Requests the test itself makes (not judged).
const TEST: &str = "test";

const RULES: &str = r#"
rulesets:
  - name: both ways
    enabled: true
    rules:
      # What the reconcile scenarios repair: an acknowledge whose webhook was lost.
      - name: acknowledged-sets-case-working
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: acknowledge}
        actions:
          - set_fields: {Status: Working}
      - name: trigger-opens-case
        direction: pagerduty_to_salesforce
        object: Case
        applies_to: new_only
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: trigger}
          - {field: pagerduty.urgency, operator: equals, value: high}
        actions:
          - create_record:
              object: Case
              fields: {Subject: "{{incident.title}}", Origin: PagerDuty, Priority: High}
              external_id_field: PagerDuty_Incident_Key__c
      # Refused by Salesforce for good (not a picklist value): dead-lettered by pd-to-sfdc.
      - name: low-urgency-trigger-opens-a-bad-case
        direction: pagerduty_to_salesforce
        object: Case
        applies_to: new_only
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: trigger}
          - {field: pagerduty.urgency, operator: equals, value: low}
        actions:
          - create_record:
              object: Case
              fields: {Subject: "{{incident.title}}", Origin: PagerDuty, Priority: NotAPicklistValue}
              external_id_field: PagerDuty_Incident_Key__c
      - name: sev1-case-opens-incident
        direction: salesforce_to_pagerduty
        object: Case
        applies_to: new_only
        conditions:
          - {field: Priority, operator: equals, value: Sev1}
        actions:
          - create_incident:
              service: PSVC001
              urgency: high
              title: {prefix: "[Sev1] ", fields: [CaseNumber, Subject]}
      # Refused by PagerDuty for good (no such service): dead-lettered by sfdc-to-pd.
      - name: critical-case-opens-a-bad-incident
        direction: salesforce_to_pagerduty
        object: Case
        applies_to: new_only
        conditions:
          - {field: Priority, operator: equals, value: Critical}
        actions:
          - create_incident:
              service: PNOSUCH
              urgency: high
              title: {prefix: "[Critical] ", fields: [CaseNumber, Subject]}
"#;

/// Grants no scenario here exercises, each with the code path that needs it. An entry that no
/// longer matches a grant fails the test too (it would hide a later, unneeded grant).
const NOT_DRIVEN: &[(&str, &str, &str, &str)] = &[
    // (principal, action, resource or key pattern, why)
    (
        "OperatorPolicy",
        "secretsmanager:PutSecretValue",
        "PagerDutyTokenSecret",
        "syncctl setup pagerduty-credential stores the key or OAuth client (driven on moto without this proxy by operations::setup_stores_an_oauth_client_or_an_api_key_once_pagerduty_accepts_it)",
    ),
    (
        "OperatorPolicy",
        "dynamodb:PutItem",
        "RATE#*",
        "syncctl reconcile builds its PagerDuty client with wiring::build, under the shared rate budget",
    ),
    (
        "PdToSfdcFunction",
        "dynamodb:PutItem",
        "RATE#*",
        "its PagerDuty calls (own user, trimmed notes) lease from the shared budget; the scenarios send it none that leases",
    ),
    (
        "OperatorPolicy",
        "dynamodb:GetItem",
        "RECONCILE#pagerduty",
        "syncctl reconcile, setup pagerduty-webhook (operations.rs drives setup on moto)",
    ),
    (
        "OperatorPolicy",
        "dynamodb:PutItem",
        "RECONCILE#pagerduty",
        "syncctl reconcile, setup pagerduty-webhook (operations.rs drives setup on moto)",
    ),
    (
        "OperatorPolicy",
        "dynamodb:GetItem",
        "RECONCILE#salesforce",
        "syncctl reconcile, setup pagerduty-webhook (operations.rs drives setup on moto)",
    ),
    (
        "OperatorPolicy",
        "dynamodb:PutItem",
        "RECONCILE#salesforce",
        "syncctl reconcile, setup pagerduty-webhook (operations.rs drives setup on moto)",
    ),
    (
        "OperatorPolicy",
        "dynamodb:GetItem",
        "RECONCILE#subscription",
        "syncctl reconcile, setup pagerduty-webhook (operations.rs drives setup on moto)",
    ),
    (
        "OperatorPolicy",
        "dynamodb:PutItem",
        "RECONCILE#subscription",
        "syncctl reconcile, setup pagerduty-webhook (operations.rs drives setup on moto)",
    ),
    (
        "RetryFunction",
        "dynamodb:Query",
        "AUDIT#REC#*",
        "a reconcile run reads whether a changed record's live event arrived (reconcile.rs: an additive change, on the memory store)",
    ),
    (
        "*",
        "dynamodb:GetItem",
        "IDEM#*",
        "IdempotencyStore::claim reads the old item when a failed condition returns none",
    ),
    ("*", "dynamodb:DeleteItem", "IDEM#*", "IdempotencyStore::release, after a failure before the event was queued"),
    (
        "*",
        "sqs:ChangeMessageVisibility",
        "RetryQueue.Arn",
        "the event source mapping's poller (granted as to any SQS consumer)",
    ),
    (
        "*",
        "secretsmanager:GetSecretValue",
        "PagerDutyTokenSecret",
        "PagerdutyConfig::client reads it on first call, wiring warms it (the harness passes a fixed token)",
    ),
    (
        "*",
        "secretsmanager:GetSecretValue",
        "SalesforceJwtSecret",
        "SalesforceConfig::client reads it at each login, wiring warms it (the harness passes a fixed key)",
    ),
    (
        OPERATOR,
        "secretsmanager:GetSecretValue",
        "SalesforceInboundSecret",
        "syncctl doctor checks the inbound signing secret",
    ),
    (
        OPERATOR,
        "secretsmanager:GetSecretValue",
        "SalesforceOutboundMessageSecret",
        "the operator reads the token to build the Outbound Message endpoint URL (README, Security)",
    ),
    (
        OPERATOR,
        "secretsmanager:PutSecretValue",
        "SalesforceOutboundMessageSecret",
        "the operator rotates the Outbound Message token (README, Security)",
    ),
    (
        OPERATOR,
        "cloudformation:DescribeStacks",
        "AWS::StackId",
        "the operator reads the stack outputs (aws cloudformation describe-stacks)",
    ),
];

// ---------- the template's statements ----------

#[derive(Debug, Clone)]
struct Statement {
    sid: String,
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    /// `ForAllValues:StringLike` (or `StringEquals`) on `dynamodb:LeadingKeys`.
    leading_keys: Option<Vec<String>>,
}

/// The template, tags dropped: `!GetAtt Table.Arn` reads `Table.Arn`, `!Ref X` reads `X`.
fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let text = std::fs::read_to_string(&path).expect("read template.yaml");
    serde_saphyr::from_str(&text).expect("template.yaml parses")
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        // `!If [Condition, A, B]` in a list reads `[Condition, A, B]`: either branch may be
        // granted (`AWS::NoValue` grants nothing).
        Value::Array(items) if items.len() == 3 && items[0].as_str().is_some_and(|c| CONDITIONS.contains(&c)) => {
            items[1..].iter().flat_map(strings).filter(|s| s != "AWS::NoValue").collect()
        }
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        other => panic!("expected a string or a list of strings, found {other}"),
    }
}

/// The template's conditions an `!If` in a statement may name.
const CONDITIONS: [&str; 1] = ["OutboundMessagesEnabled"];

fn statement(value: &Value) -> Statement {
    let sid = value["Sid"].as_str().unwrap_or("(no Sid)").to_string();
    let allow = match value["Effect"].as_str() {
        Some("Allow") => true,
        Some("Deny") => false,
        other => panic!("statement {sid}: Effect {other:?}"),
    };
    assert!(value.get("NotAction").is_none() && value.get("NotResource").is_none(), "statement {sid}: Not*");
    let leading_keys = value.get("Condition").map(|condition| {
        let condition = condition.as_object().expect("Condition is a map");
        assert_eq!(condition.len(), 1, "statement {sid}: one condition operator is modelled here: {condition:?}");
        let (operator, keys) = condition.iter().next().unwrap();
        assert!(
            matches!(operator.as_str(), "ForAllValues:StringLike" | "ForAllValues:StringEquals"),
            "statement {sid}: condition {operator} is not modelled (ForAny* would let one key pass for all)"
        );
        let keys = keys.as_object().expect("condition keys");
        assert_eq!(keys.len(), 1, "statement {sid}: only dynamodb:LeadingKeys is modelled: {keys:?}");
        let values = keys.get("dynamodb:LeadingKeys").unwrap_or_else(|| panic!("statement {sid}: {keys:?}"));
        let values = strings(values);
        if operator.ends_with("StringEquals") {
            assert!(values.iter().all(|v| !v.contains(['*', '?'])), "statement {sid}: StringEquals with a wildcard");
        }
        values
    });
    Statement {
        sid,
        allow,
        actions: strings(&value["Action"]),
        resources: strings(value.get("Resource").unwrap_or_else(|| panic!("statement: no Resource"))),
        leading_keys,
    }
}

/// Every statement that applies to `principal`: a function's inline statements plus what SAM
/// adds for its events (an SQS event brings AWSLambdaSQSQueueExecutionRole: receive, delete and
/// read attributes on every queue), or the operator's managed policy.
fn statements(template: &Value, principal: &str) -> Vec<Statement> {
    assert!(template["Globals"]["Function"].get("Policies").is_none(), "Globals must not grant every function");
    let resource = &template["Resources"][principal];
    assert!(resource.is_object(), "template.yaml has no resource {principal}");
    if principal == OPERATOR {
        assert_eq!(resource["Type"], "AWS::IAM::ManagedPolicy");
        let document = &resource["Properties"]["PolicyDocument"]["Statement"];
        return document.as_array().expect("Statement list").iter().map(statement).collect();
    }
    let properties = &resource["Properties"];
    assert!(properties.get("Role").is_none(), "{principal}: an explicit Role is not modelled here");
    let mut out = Vec::new();
    for policy in properties["Policies"].as_array().expect("Policies list") {
        match policy {
            Value::Object(map) if map.contains_key("Statement") => {
                out.extend(map["Statement"].as_array().expect("Statement list").iter().map(statement))
            }
            other => panic!(
                "{principal}: policy {other} is a managed policy or a SAM policy template; write its statements out with ARNs"
            ),
        }
    }
    for (name, event) in properties.get("Events").and_then(Value::as_object).into_iter().flatten() {
        if event["Type"] == "SQS" {
            out.push(Statement {
                sid: format!("AWSLambdaSQSQueueExecutionRole (SAM, for event {name})"),
                allow: true,
                actions: vec!["sqs:ReceiveMessage".into(), "sqs:DeleteMessage".into(), "sqs:GetQueueAttributes".into()],
                resources: vec!["*".into()],
                leading_keys: None,
            });
        }
    }
    out
}

/// IAM's `StringLike`: `*` any run, `?` one character (action names compare case-insensitively).
fn like(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| go(rest, &v[i..])),
            Some(('?', rest)) => !v.is_empty() && go(rest, &v[1..]),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    go(&pattern.chars().collect::<Vec<_>>(), &value.chars().collect::<Vec<_>>())
}

fn applies(s: &Statement, action: &str, resource: &str, keys: &[String]) -> bool {
    let action = action.to_ascii_lowercase();
    s.actions.iter().any(|a| like(&a.to_ascii_lowercase(), &action))
        && s.resources.iter().any(|r| like(r, resource))
        && s.leading_keys.as_ref().is_none_or(|patterns| keys.iter().all(|k| patterns.iter().any(|p| like(p, k))))
}

/// Allowed when an Allow statement applies to the whole request and no Deny does. A batch's keys
/// must all pass one statement: that holds whether IAM checks its items one by one or together.
fn allowed(statements: &[Statement], action: &str, resource: &str, keys: &[String]) -> bool {
    !statements.iter().any(|s| !s.allow && applies(s, action, resource, keys))
        && statements.iter().any(|s| s.allow && applies(s, action, resource, keys))
}

// ---------- the recording proxy ----------

/// One authorisation IAM makes for a request: a TransactWriteItems is one per item (its Put needs
/// PutItem), a BatchWriteItem one for all its items.
#[derive(Debug, Clone)]
struct Check {
    principal: String,
    action: String,
    /// The table, a queue URL or a secret id, as sent.
    resource: String,
    keys: Vec<String>,
    /// BatchWriteItem only: a DeleteRequest among its items.
    deletes: Vec<String>,
}

#[derive(Default)]
struct Recorder {
    principal: Mutex<String>,
    checks: Mutex<Vec<Check>>,
}

struct Proxy {
    url: String,
    recorder: Arc<Recorder>,
}

impl Proxy {
    async fn start() -> Self {
        let upstream = sim::moto::url().await;
        let recorder = Arc::new(Recorder { principal: Mutex::new(OPERATOR.into()), ..Recorder::default() });
        let state = (upstream, reqwest::Client::new(), recorder.clone());
        let app = axum::Router::new().fallback(forward).with_state(Arc::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, recorder }
    }

    /// Requests from now on are made by `principal`.
    fn act_as(&self, principal: &str) {
        *self.recorder.principal.lock().unwrap() = principal.to_string();
    }

    fn checks(&self) -> Vec<Check> {
        self.recorder.checks.lock().unwrap().clone()
    }
}

type ProxyState = Arc<(String, reqwest::Client, Arc<Recorder>)>;

async fn forward(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (upstream, http, recorder) = state.as_ref();
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let principal = recorder.principal.lock().unwrap().clone();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    recorder.checks.lock().unwrap().extend(checks_of(&principal, &target, &json));
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = http.request(method, format!("{upstream}{path}")).body(body);
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            request = request.header(name, value);
        }
    }
    let Ok(answer) = request.send().await else { return StatusCode::BAD_GATEWAY.into_response() };
    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !matches!(name.as_str(), "content-length" | "connection" | "transfer-encoding") {
            out.append(name, value.clone());
        }
    }
    let mut response = (status, answer.bytes().await.unwrap_or_default()).into_response();
    response.headers_mut().extend(out);
    response
}

fn pk(item: &Value) -> String {
    item["pk"]["S"].as_str().unwrap_or_else(|| panic!("an item without a string pk: {item}")).to_string()
}

/// The authorisations a request needs, from its `X-Amz-Target` and JSON body.
fn checks_of(principal: &str, target: &str, body: &Value) -> Vec<Check> {
    let check = |action: String, resource: &str, keys: Vec<String>| Check {
        principal: principal.to_string(),
        action,
        resource: resource.to_string(),
        keys,
        deletes: Vec::new(),
    };
    if let Some(op) = target.strip_prefix("DynamoDB_20120810.") {
        let table = body["TableName"].as_str().unwrap_or("table");
        let action = format!("dynamodb:{op}");
        return match op {
            "GetItem" | "DeleteItem" | "UpdateItem" => vec![check(action, table, vec![pk(&body["Key"])])],
            "PutItem" => vec![check(action, table, vec![pk(&body["Item"])])],
            "Query" => {
                let condition = body["KeyConditionExpression"].as_str().expect("a Query has a key condition");
                let placeholder =
                    regex::Regex::new(r"\bpk\s*=\s*(:\w+)").unwrap().captures(condition).expect("pk = :v")[1]
                        .to_string();
                let key = body["ExpressionAttributeValues"][&placeholder]["S"].as_str().expect("a string pk");
                vec![check(action, table, vec![key.to_string()])]
            }
            "BatchWriteItem" => {
                let mut keys = Vec::new();
                let mut deletes = Vec::new();
                for requests in body["RequestItems"].as_object().expect("RequestItems").values() {
                    for request in requests.as_array().expect("write requests") {
                        if let Some(put) = request.get("PutRequest") {
                            keys.push(pk(&put["Item"]));
                        } else {
                            let key = pk(&request["DeleteRequest"]["Key"]);
                            deletes.push(key.clone());
                            keys.push(key);
                        }
                    }
                }
                vec![Check { deletes, ..check(action, table, keys) }]
            }
            "TransactWriteItems" => body["TransactItems"]
                .as_array()
                .expect("TransactItems")
                .iter()
                .map(|item| {
                    let (kind, part) = item.as_object().and_then(|m| m.iter().next()).expect("one action per item");
                    let (action, key) = match kind.as_str() {
                        "Put" => ("PutItem", pk(&part["Item"])),
                        "Update" => ("UpdateItem", pk(&part["Key"])),
                        "Delete" => ("DeleteItem", pk(&part["Key"])),
                        _ => ("ConditionCheckItem", pk(&part["Key"])),
                    };
                    check(format!("dynamodb:{action}"), part["TableName"].as_str().unwrap_or(table), vec![key])
                })
                .collect(),
            // Scan, DescribeTable and the like: no key, the table itself.
            _ => vec![check(action, table, Vec::new())],
        };
    }
    if let Some(op) = target.strip_prefix("AmazonSQS.") {
        return vec![check(format!("sqs:{op}"), body["QueueUrl"].as_str().unwrap_or("*"), Vec::new())];
    }
    if let Some(op) = target.strip_prefix("secretsmanager.") {
        return vec![check(format!("secretsmanager:{op}"), body["SecretId"].as_str().unwrap_or("*"), Vec::new())];
    }
    Vec::new()
}

// ---------- the scenarios ----------

fn case_insert(id: &str, number: &str, priority: &str) -> Value {
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    let record = json!({
        "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{id}")},
        "Id": id, "CaseNumber": number, "Subject": "Checkout fails", "Priority": priority, "Status": "New",
        "LastModifiedDate": now, "SystemModstamp": now,
    });
    json!({
        "schema": 1, "org_id": ORG_ID, "object": "Case", "operation": "insert",
        "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"},
        "sent_at": Utc::now().to_rfc3339(), "old": null, "new": {id: record},
    })
}

fn trigger(incident: &str, urgency: &str) -> String {
    let mut data = incident_data(incident, "triggered");
    data["urgency"] = json!(urgency);
    delivery(&format!("E-{incident}"), "incident.triggered", Utc::now(), data)
}

/// Drives every function and the operator's commands; returns the harness and the checks seen.
async fn run_scenarios(proxy: &Proxy) -> (Harness, Vec<Check>) {
    let mut config = HarnessConfig::new(RULES);
    config.dynamodb = true;
    // Every instance under the shared PagerDuty budget, as wiring::build sets them up.
    config.shared_budget = true;
    config.sqs = true;
    config.secrets_manager = true;
    config.aws_endpoint = Some(proxy.url.clone());
    // SQS delays are real time: retry at once; dead-letter on the third failed attempt.
    config.retry_policy = RetryPolicy {
        max_attempts: 3,
        backoff: Backoff { base: std::time::Duration::ZERO, cap: std::time::Duration::ZERO },
        wait_step: std::time::Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    // The operator pushes the rules as the harness starts.
    proxy.act_as(OPERATOR);
    let h = Harness::with(config).await;
    let sqs = h.sqs.as_ref().expect("SQS on moto");
    // Each function its own instance (rules, secrets and breaker caches), as Lambda runs them; the
    // harness's own context is the retry function's (drain_retries runs it).
    let (pd_to_sfdc, sfdc_to_pd) = (h.instance(), h.instance());
    let webhook = |body: String, id: &str| {
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-pagerduty-signature".to_string(), sign_v1(WEBHOOK_SECRET, body.as_bytes())),
            ("x-webhook-id".to_string(), id.to_string()),
            ("x-webhook-subscription".to_string(), "PSUB0DEMO".to_string()),
        ];
        let request = h.request(handler::pd_to_sfdc::WEBHOOK_ROUTE, &body, headers);
        let ctx = &pd_to_sfdc;
        async move { handler::pd_to_sfdc::handle(ctx, request).await.status }
    };
    let post = |payload: Value| {
        let body = payload.to_string();
        let ts = h.clock.now().timestamp();
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-pdsync-timestamp".to_string(), ts.to_string()),
            ("x-pdsync-signature".to_string(), sign_trigger(INBOUND_SECRET, ts, body.as_bytes())),
        ];
        let request = h.request(handler::sfdc_to_pd::RECORDS_ROUTE, &body, headers);
        let ctx = &sfdc_to_pd;
        async move { handler::sfdc_to_pd::handle(ctx, request).await.status }
    };

    // sfdc-to-pd: a Case insert opens an incident; one meets a PagerDuty error and is queued; one
    // names a service PagerDuty does not have and is dead-lettered.
    proxy.act_as("SfdcToPdFunction");
    assert_eq!(post(case_insert("5005g00000IAMC1AAA", "00001001", "Sev1")).await, 200);
    h.pd.fail_next(1, FaultKind::ServerError);
    assert_eq!(post(case_insert("5005g00000IAMC2AAA", "00001002", "Sev1")).await, 200);
    assert_eq!(post(case_insert("5005g00000IAMC3AAA", "00001003", "Critical")).await, 200);

    // pd-to-sfdc: a trigger opens a Case; one meets a Salesforce error and is queued; one is
    // refused by Salesforce and dead-lettered.
    proxy.act_as("PdToSfdcFunction");
    assert_eq!(webhook(trigger("PIAM1", "high"), "w1").await, 200);
    h.sf.fail_next(1, FaultKind::ServerError);
    assert_eq!(webhook(trigger("PIAM2", "high"), "w2").await, 200);
    assert_eq!(webhook(trigger("PIAM4", "low"), "w4").await, 200);

    // retry: both queued events are applied.
    proxy.act_as("RetryFunction");
    h.drain_retries(20).await;
    assert_eq!(h.pd.incidents().len(), 2, "both Sev1 Cases opened an incident");
    assert_eq!(h.sf.records("Case").len(), 2, "both high-urgency triggers opened a Case");

    proxy.act_as("SfdcToPdFunction");
    // The agent console on the same function: a Case's linked incidents (with their latest
    // status updates) and an escalation.
    let mut console = h.instance();
    console.settings.console_escalation_service_id = Some("PSVC001".into());
    let ask = |route: &str, extra: Value| {
        let mut payload = json!({"schema": 1, "org_id": ORG_ID, "record_id": "5005g00000IAMC1AAA", "object": "Case"});
        payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        handler::sfdc_to_pd::handle(&console, h.signed_post(route, &payload))
    };
    assert_eq!(ask(handler::console::INCIDENTS_ROUTE, json!({})).await.status, 200);
    let escalate = json!({"request_id": "0b7c1a52-8d2e-4f7a-9c1e-3a5b6c7d8e9f", "urgency": "high"});
    assert_eq!(ask(handler::console::ESCALATE_ROUTE, escalate).await.status, 201);

    // A trigger that fails at pd-to-sfdc and twice at the retry: requeued, then dead-lettered.
    proxy.act_as("PdToSfdcFunction");
    h.sf.fail_next(3, FaultKind::ServerError);
    assert_eq!(webhook(trigger("PIAM3", "high"), "w3").await, 200);
    proxy.act_as("RetryFunction");
    h.drain_retries(20).await;
    // A message that is no envelope: moved to the DLQ whole.
    proxy.act_as(TEST);
    sqs.retry.send("not an envelope", std::time::Duration::ZERO).await.expect("send");
    proxy.act_as("RetryFunction");
    h.drain_retries(20).await;

    // The operator: audit, dlq list / replay --dry-run / replay / purge, doctor's reads, setup;
    // with syncctl's SDK configuration (no function time limits: dlq list waits on the queue).
    proxy.act_as(OPERATOR);
    let sdk = sim::moto::sdk_config().await.to_builder().endpoint_url(&proxy.url).build();
    let sqs_client = aws_sdk_sqs::Client::new(&sdk);
    let dlq = SqsQueue::new(sqs_client.clone(), sqs.dlq.url());
    let retry = SqsQueue::new(sqs_client, sqs.retry.url());
    let audit = h.stores.audit.for_subject(&Subject::Incident("PIAM1".into()), 10).await.expect("audit");
    assert!(!audit.is_empty(), "the incident's audit entries");
    h.stores.audit.for_subject(&Subject::Record("5005g00000IAMC1AAA".into()), 10).await.expect("audit");
    // syncctl status: the breakers and the last events of the day partitions (audit --since reads
    // the same partitions).
    for service in ["salesforce", "pagerduty"] {
        h.stores.breakers.get_breaker(service).await.expect("status: breaker");
    }
    h.stores.audit.recent(Utc::now() - chrono::Duration::days(7), 500).await.expect("status: last events");
    let letters = shared::retry::dlq::list(&dlq, 10).await.expect("dlq list");
    assert_eq!(letters.len(), 4, "IAMC3, PIAM4, PIAM3 and the unreadable message: {letters:?}");
    let rules = h.stores.rules.current_rules().await.expect("rules").expect("stored");
    let rules = shared::rules::Rules::from_yaml(&rules.document).expect("valid");
    for envelope in letters.iter().filter_map(|l| l.envelope.as_ref()) {
        shared::handler::preview::preview(envelope, &rules, h.stores.links.as_ref()).await.expect("preview");
    }
    let piam3 =
        letters.iter().filter_map(|l| l.envelope.as_ref()).find(|e| e.accepted.event_id == "E-PIAM3").expect("PIAM3");
    let report =
        shared::retry::dlq::replay(&dlq, &retry, &[piam3.id().to_string()], 10, |_, _| {}).await.expect("replay");
    assert_eq!(report.replayed.len(), 1);
    retry.approximate_depth().await.expect("doctor: retry queue");
    dlq.approximate_depth().await.expect("doctor: DLQ");
    retry.backlog().await.expect("status: retry queue");
    dlq.backlog().await.expect("status: DLQ");
    dlq.purge().await.expect("purge");
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    syncctl::commands::setup::rotate(&secrets, &h.ctx.settings.webhook_secret_id, "whsec-new").await.expect("setup");

    // The replayed event is applied by the retry function now that Salesforce answers.
    proxy.act_as("RetryFunction");
    h.drain_retries(20).await;
    assert_eq!(h.sf.records("Case").len(), 3, "the replayed trigger opened its Case");

    // sfdc-to-pd: an Outbound Message (its route reads the token secret).
    proxy.act_as("SfdcToPdFunction");
    let headers = vec![("content-type".to_string(), "text/xml; charset=utf-8".to_string())];
    let xml = include_str!("../../../events/sfdc-to-pd/outbound-message.xml");
    let mut request = h.request(handler::sfdc_to_pd::OUTBOUND_MESSAGE_ROUTE, xml, headers);
    request.query = format!("token={OUTBOUND_MESSAGE_TOKEN}");
    assert_eq!(handler::sfdc_to_pd::handle(&sfdc_to_pd, request).await.status, 200);

    // Reconcile: an incident acknowledged while its webhook was lost, repaired by the operator's
    // `syncctl reconcile`; then the scheduled run on the retry queue.
    proxy.act_as(TEST);
    let http = Arc::new(adapters::http::ReqwestTransport::new().expect("http"));
    let base = url::Url::parse(&h.pd.base_url()).expect("url");
    let oncall =
        shared::pagerduty::client::PagerdutyClient::new(http, base, "sim-token".into(), "oncall@example.com".into());
    let lost = shared::pagerduty::requests::CreateIncident {
        title: "Acknowledged while the bridge was down".into(),
        service_id: "PSVC001".into(),
        ..Default::default()
    };
    let incident = oncall.create_incident(&lost).await.expect("incident");
    let case = h.sf.insert_record("Case", json!({"Subject": "Acknowledged while the bridge was down"}));
    let link = shared::model::Link {
        incident_id: incident.id.clone().into(),
        record: shared::model::RecordRef { object: "Case".into(), id: case.clone().into() },
        created_at: Utc::now(),
        created_by_rule: None,
    };
    h.stores.links.put_link(&link).await.expect("link");
    oncall.acknowledge(&incident.id).await.expect("acknowledge");
    h.clock.set(Utc::now() + chrono::Duration::seconds(3));
    // syncctl reconcile: the operator posts the run and reads its report off the audit trail;
    // the retry function runs it.
    proxy.act_as(OPERATOR);
    let trigger = shared::reconcile::trigger::Trigger::by_hand(100, None, "syncctl-reconcile-iam");
    let posted_at = syncctl::commands::reconcile::post(&retry, &trigger).await.expect("post");
    proxy.act_as("RetryFunction");
    h.drain_retries(20).await;
    proxy.act_as(OPERATOR);
    let (wait, poll) = (std::time::Duration::from_secs(5), std::time::Duration::from_millis(100));
    let audit = h.stores.audit.as_ref();
    let report =
        syncctl::commands::reconcile::report_of(audit, &trigger, posted_at, wait, poll, &shared::reconcile::Quiet)
            .await
            .expect("audit")
            .expect("the run's report");
    assert_eq!(h.sf.record("Case", &case).expect("case")["Status"], "Working", "repaired: {report:#?}");
    // The scheduled run.
    proxy.act_as("RetryFunction");
    h.clock.advance(chrono::Duration::seconds(5));
    let runner = shared::reconcile::trigger::Runner { cursors: h.cursors.clone() };
    let message = handler::retry::Message {
        message_id: "reconcile-1".into(),
        body: json!({"kind": "reconcile", "max_api_calls": 50}).to_string(),
        receive_count: 1,
    };
    let deadline = Some(h.clock.now() + chrono::Duration::seconds(60));
    let failed = handler::retry::handle_batch_reconciling(&h.ctx, Some(&runner), vec![message], deadline).await;
    assert!(failed.is_empty(), "the scheduled run is done");
    proxy.act_as(TEST);
    (h, proxy.checks())
}

/// The template's name for what a request named (table, queue URL, secret id).
fn resource_name(h: &Harness, check: &Check) -> String {
    let sqs = h.sqs.as_ref().expect("SQS");
    match check.action.split(':').next() {
        Some("dynamodb") => "Table.Arn".into(),
        Some("sqs") if check.resource == sqs.retry.url() => "RetryQueue.Arn".into(),
        Some("sqs") if check.resource == sqs.dlq.url() => "DeadLetterQueue.Arn".into(),
        Some("secretsmanager") if check.resource == h.ctx.settings.webhook_secret_id => "PagerDutyWebhookSecret".into(),
        Some("secretsmanager") if check.resource == h.ctx.settings.inbound_secret_id => {
            "SalesforceInboundSecret".into()
        }
        Some("secretsmanager") if h.ctx.settings.outbound_message_secret_id.as_deref() == Some(&check.resource) => {
            "SalesforceOutboundMessageSecret".into()
        }
        _ => format!("unknown:{}", check.resource),
    }
}

/// A request a principal made: action, resource (the template's name), keys.
type Used = (String, String, Vec<String>);

/// What a principal may write on a key, in any form (transactions need these too).
const WRITES: [&str; 5] = [
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
];
const OTHER_ITEM_ACTIONS: [&str; 6] = [
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
    "dynamodb:Scan",
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
];

#[tokio::test]
async fn every_request_of_the_functions_and_the_operator_is_allowed_by_the_template_and_no_grant_is_unused() {
    let template = template();
    let proxy = Proxy::start().await;
    let (h, checks) = run_scenarios(&proxy).await;
    let policies: BTreeMap<&str, Vec<Statement>> =
        FUNCTIONS.iter().chain([&OPERATOR]).map(|p| (*p, statements(&template, p))).collect();

    // 1. Everything the code sent is allowed.
    let mut denied = BTreeSet::new();
    let mut used: BTreeMap<&str, Vec<Used>> = BTreeMap::new();
    for check in checks.iter().filter(|c| c.principal != TEST) {
        let principal = policies.keys().find(|p| **p == check.principal).expect("known principal");
        let resource = resource_name(&h, check);
        if !allowed(&policies[principal], &check.action, &resource, &check.keys) {
            denied.insert(format!("{principal}: {} on {resource} keys {:?}", check.action, check.keys));
        }
        assert!(
            check.deletes.iter().all(|k| !k.starts_with("AUDIT#") && k != "RULES"),
            "{principal} deleted audit or rules items in a batch: {check:?}"
        );
        used.entry(principal).or_default().push((check.action.clone(), resource, check.keys.clone()));
    }
    assert!(
        denied.is_empty(),
        "requests the template does not allow:\n{}",
        denied.into_iter().collect::<Vec<_>>().join("\n")
    );
    for principal in policies.keys() {
        assert!(used.get(principal).is_some_and(|u| u.len() > 3), "{principal}: the scenarios made no requests");
    }

    // 2. No function writes the rules, changes or deletes audit items, reads the audit trail, or
    //    acts on every resource; the operator does not touch audit items either.
    let audit_keys = ["AUDIT#INC#PX", "AUDIT#REC#5005g00000XAAAAA", "AUDIT#DAY#2026-12-02"];
    for (principal, statements) in &policies {
        for action in WRITES {
            assert!(
                !allowed(statements, action, "Table.Arn", &["RULES".to_string()])
                    || (*principal == OPERATOR && action == "dynamodb:PutItem"),
                "{principal} may {action} the rules item"
            );
            for key in audit_keys {
                // Appending is a put inside a BatchWriteItem (IAM cannot tell a batch's put from
                // its delete; the code sends puts only, checked above).
                let append = action == "dynamodb:BatchWriteItem" && FUNCTIONS.contains(principal);
                assert!(
                    append || !allowed(statements, action, "Table.Arn", &[key.to_string()]),
                    "{principal} may {action} {key}"
                );
            }
        }
        for action in OTHER_ITEM_ACTIONS {
            for key in audit_keys.iter().chain(&["RULES"]) {
                assert!(
                    !allowed(statements, action, "Table.Arn", &[key.to_string()]),
                    "{principal} may {action} {key}"
                );
            }
        }
        if FUNCTIONS.contains(principal) {
            for key in audit_keys {
                // A reconcile run (the retry function) reads a subject's entries, to tell whether
                // the live event of a change arrived; no function reads the day partitions.
                let subject = *principal == "RetryFunction" && !key.starts_with("AUDIT#DAY#");
                assert!(
                    subject || !allowed(statements, "dynamodb:Query", "Table.Arn", &[key.to_string()]),
                    "{principal} reads {key}"
                );
            }
        }
        for s in statements.iter().filter(|s| s.allow) {
            let sensitive =
                s.actions.iter().any(|a| ["dynamodb:", "sqs:", "secretsmanager:"].iter().any(|p| a.starts_with(p)));
            assert!(
                !(sensitive && s.resources.iter().any(|r| r.contains('*'))),
                "{principal}: {} on Resource {:?}",
                s.sid,
                s.resources
            );
            let table = s.actions.iter().any(|a| a.starts_with("dynamodb:"));
            assert!(
                !table || s.leading_keys.is_some(),
                "{principal}: {} reaches every item (no dynamodb:LeadingKeys)",
                s.sid
            );
            assert!(s.actions.iter().all(|a| !a.contains('*')), "{principal}: {} grants a wildcard action", s.sid);
        }
    }

    // 3. Every grant is used, or named in NOT_DRIVEN with the code that needs it.
    let mut unused = Vec::new();
    let mut excused = BTreeSet::new();
    for (principal, statements) in &policies {
        for s in statements.iter().filter(|s| s.allow) {
            for action in &s.actions {
                for resource in &s.resources {
                    let patterns = s.leading_keys.clone().map_or(vec![None], |p| p.into_iter().map(Some).collect());
                    for pattern in patterns {
                        let hit = used.get(principal).into_iter().flatten().any(|(a, r, keys)| {
                            a.eq_ignore_ascii_case(action)
                                && like(resource, r)
                                && pattern.as_ref().is_none_or(|p| keys.iter().any(|k| like(p, k)))
                        });
                        let what = pattern.clone().unwrap_or_else(|| resource.clone());
                        let excuse = NOT_DRIVEN
                            .iter()
                            .position(|(p, a, w, _)| (*p == "*" || p == principal) && a == action && *w == what);
                        match (hit, excuse) {
                            (true, _) => {}
                            (false, Some(i)) => {
                                excused.insert(i);
                            }
                            (false, None) => unused.push(format!("{principal}: {} {action} on {what}", s.sid)),
                        }
                    }
                }
            }
        }
    }
    assert!(unused.is_empty(), "grants no scenario used and NOT_DRIVEN does not explain:\n{}", unused.join("\n"));
    let stale: Vec<_> = (0..NOT_DRIVEN.len()).filter(|i| !excused.contains(i)).map(|i| NOT_DRIVEN[i]).collect();
    assert!(stale.is_empty(), "NOT_DRIVEN entries that excuse no unused grant (remove them): {stale:?}");
}
