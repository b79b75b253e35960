//! The edges of the bridge against an attacker and a careless sender (issue 16): every route
//! authenticates with a real credential, org ids compare exactly, only the routes' method and
//! path are served, and an identifier too long for a store key never makes an event fail forever.

use chrono::{SubsecRound, Utc};
use serde_json::{Value, json};
use shared::model::Outcome;
use sim::harness::{Harness, HarnessConfig, OUTBOUND_MESSAGE_TOKEN, WEBHOOK_SECRET, outcome};
use sim::pagerduty::sign_v1;
use sim::salesforce::OutboundMessenger;

/// A new Sev1 Case opens an incident: any request let through would act.
const RULES: &str = sim::fixtures::SEV1_CASE_OPENS_INCIDENT;

/// Our org (the harness's), and ids that look like it.
const ORG_15: &str = "00D5g0000SIMORG";
const LOOK_ALIKES: &[&str] = &["00D5g0000SIMORGNNN", "00D5g0000SIMORGEQ6", "00D5g0000SIMORGEQ5X", "00d5g0000SIMORG"];

/// A Sev1 Case just created: the rules open an incident for it.
fn new_sev1_case(id: &str) -> Value {
    let at = Utc::now().trunc_subsecs(0).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({"Id": id, "Subject": "Checkout down", "Priority": "Sev1", "Status": "New",
        "CreatedDate": at, "LastModifiedDate": at, "SystemModstamp": at})
}

/// An Outbound Message of one new Sev1 Case, carrying `org` as its OrganizationId.
fn outbound_message(org: &str, notification_id: &str, case_id: &str) -> String {
    let xml = OutboundMessenger::new(ORG_15, "https://example.my.salesforce.com")
        .envelope_with_ids("Case", &[(notification_id.to_string(), new_sev1_case(case_id))]);
    let ours = format!("<OrganizationId>{ORG_15}</OrganizationId>");
    assert!(xml.contains(&ours));
    xml.replace(&ours, &format!("<OrganizationId>{org}</OrganizationId>"))
}

fn acked(reply: &shared::handler::http::Reply) -> bool {
    reply.status == 200 && reply.body.contains("<Ack>true</Ack>")
}

#[tokio::test]
async fn outbound_messages_are_refused_until_the_route_is_enabled() {
    let mut h = Harness::start(RULES).await;
    h.ctx.settings.outbound_message_secret_id = None;
    let xml = outbound_message(ORG_15, "04l5g0000000001AAA", "5005g00000SECR1AAA");
    let reply = h.outbound_message(&xml).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(reply.body.contains("OutboundMessages=Enabled"), "the fault says how to turn it on: {}", reply.body);
    assert!(h.pd.incidents().is_empty() && h.store.audit_entries().is_empty(), "nothing happened");
}

#[tokio::test]
async fn an_outbound_message_is_authentic_only_with_the_endpoint_urls_token() {
    let h = Harness::start(RULES).await;
    let xml = outbound_message(ORG_15, "04l5g0000000002AAA", "5005g00000SECR2AAA");
    // The right OrganizationId proves nothing: it is in every Web-to-Case form.
    for query in [
        "",
        "token=",
        "token=guess",
        &format!("token={OUTBOUND_MESSAGE_TOKEN}x"),
        &format!("Token={OUTBOUND_MESSAGE_TOKEN}"),
    ] {
        let reply = h.outbound_message_with(&xml, query).await;
        assert_eq!(reply.status, 401, "{query:?}: {}", reply.body);
        assert!(reply.body.contains("SalesforceOutboundMessageUrl"), "the fault says what to fix: {}", reply.body);
    }
    assert!(h.pd.incidents().is_empty(), "no forged message opened an incident");
    let reply = h.outbound_message(&xml).await;
    assert!(acked(&reply), "{}", reply.body);
    assert_eq!(h.pd.incidents().len(), 1, "the authentic one did");
}

#[tokio::test]
async fn org_ids_that_only_look_like_ours_are_refused_on_both_salesforce_routes() {
    let h = Harness::start(RULES).await;
    for (i, org) in LOOK_ALIKES.iter().enumerate() {
        let reply =
            h.outbound_message(&outbound_message(org, &format!("04l5g00000000{i:02}AAA"), "5005g00000SECR3AAA")).await;
        assert_eq!(reply.status, 403, "{org}: {}", reply.body);
        let post = json!({"schema": 1, "org_id": org, "object": "Case", "operation": "insert",
            "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"},
            "sent_at": Utc::now().to_rfc3339(), "old": null,
            "new": {"5005g00000SECR3AAA": {"attributes": {"type": "Case"}, "Id": "5005g00000SECR3AAA", "Priority": "Sev1", "Subject": "s"}}});
        let reply = h.post_records(&post).await;
        assert_eq!(reply.status, 403, "{org}: {}", reply.body);
    }
    assert!(h.pd.incidents().is_empty() && h.store.audit_entries().is_empty());
    // Our org in its 18-character form (suffix checked) is ours.
    assert!(acked(
        &h.outbound_message(&outbound_message("00D5g0000SIMORGEQ5", "04l5g0000000099AAA", "5005g00000SECR3AAA")).await
    ));
    assert_eq!(h.pd.incidents().len(), 1);
}

#[tokio::test]
async fn only_the_routes_method_and_path_are_served_over_http() {
    let h = Harness::start(RULES).await;
    let base = h.serve().await;
    let http = reqwest::Client::new();
    let body = sim::harness::delivery(
        "01SECURITYMETHOD0000000001",
        "incident.triggered",
        Utc::now(),
        sim::harness::incident_data("QSECMETHOD1", "triggered"),
    );
    let signature = sign_v1(WEBHOOK_SECRET, body.as_bytes());
    let send = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("x-pagerduty-signature", &signature)
            .body(body.clone())
            .send()
    };
    for method in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let response = send(method.clone(), "/pagerduty/webhook").await.unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
    }
    for path in ["/admin", "/pagerduty/webhook/", "/pagerduty/webhook/x", "/salesforce/records/../admin", "/"] {
        assert_eq!(send(reqwest::Method::POST, path).await.unwrap().status(), 404, "{path}");
    }
    assert!(h.sf.requests().iter().all(|r| r.path.contains("oauth2")), "nothing reached Salesforce");
    assert!(h.store.audit_entries().is_empty(), "nothing was recorded");
    // The same delivery on the route is handled.
    assert_eq!(send(reqwest::Method::POST, "/pagerduty/webhook").await.unwrap().status(), 200);
}

/// DynamoDB refuses partition keys over 2,048 bytes. A signed event whose id is longer could
/// never be stored: it used to be answered 503 for ever (PagerDuty then disables the
/// subscription); an Outbound Message with such a notification id got a fault for 24 hours.
#[tokio::test]
async fn identifiers_too_long_for_a_key_never_make_an_event_fail_forever() {
    let h = Harness::with(HarnessConfig { dynamodb: true, ..HarnessConfig::new(RULES) }).await;

    let long_event = sim::harness::delivery(
        &"E".repeat(3000),
        "incident.triggered",
        Utc::now(),
        sim::harness::incident_data("QSECLONG1", "triggered"),
    );
    let reply = h.webhook(&long_event, "w-long").await;
    assert_eq!(reply.status, 202, "kept for review, not 'deliver again': {}", reply.body);
    let kept = h.stores.audit.recent(Utc::now() - chrono::Duration::hours(1), 10).await.unwrap();
    assert!(
        kept.iter().any(|e| e.outcome == Outcome::Rejected && e.raw_payload.as_deref() == Some(long_event.as_str()))
    );

    // A notification id of 100,000 characters: the message is acknowledged and acted on once.
    let notification = format!("04l{}", "N".repeat(100_000));
    let xml = outbound_message(ORG_15, &notification, "5005g00000SECR4AAA");
    let first = h.outbound_message(&xml).await;
    assert!(acked(&first), "{}", first.body.chars().take(300).collect::<String>());
    let again = h.outbound_message(&xml).await;
    assert!(acked(&again), "{}", again.body.chars().take(300).collect::<String>());
    assert_eq!(h.pd.incidents().len(), 1, "the redelivery is recognised: one incident");
    assert_eq!(
        outcome(&h.webhook(&long_event, "w-long").await),
        "rejected",
        "and the webhook is refused the same way again"
    );
}

/// An idempotency store that refuses every claim as DynamoDB refuses an oversized key.
struct RefusingClaims;

#[async_trait::async_trait]
impl shared::store::IdempotencyStore for RefusingClaims {
    async fn claim(
        &self,
        _: &str,
        _: chrono::DateTime<Utc>,
        _: chrono::DateTime<Utc>,
        _: chrono::DateTime<Utc>,
    ) -> Result<shared::store::Claim, shared::store::StoreError> {
        Err(shared::store::StoreError::Refused {
            operation: "PutItem",
            message: "ValidationException: Size of hashkey has exceeded the maximum size limit of 2048 bytes".into(),
        })
    }
    async fn take_turn(
        &self,
        _: &str,
        _: &str,
        _: chrono::DateTime<Utc>,
        _: chrono::DateTime<Utc>,
    ) -> Result<shared::store::Claim, shared::store::StoreError> {
        unreachable!("a refused claim queues nothing to take turns on")
    }
    async fn complete(&self, _: &str, _: &str, _: chrono::DateTime<Utc>) -> Result<(), shared::store::StoreError> {
        unreachable!("a refused claim completes nothing")
    }
    async fn release(&self, _: &str) -> Result<(), shared::store::StoreError> {
        unreachable!("a refused claim releases nothing")
    }
}

/// Whatever still makes the store refuse an event's key, the event fails alone: dead-lettered
/// with its payload and the reason, and acknowledged (not "deliver again" for ever).
#[tokio::test]
async fn an_event_whose_key_the_store_refuses_is_dead_lettered_and_acknowledged() {
    let mut h = Harness::start(RULES).await;
    h.ctx.idempotency = shared::handler::idempotency::Idempotency::new(
        std::sync::Arc::new(RefusingClaims),
        h.ctx.clock.clone(),
        std::time::Duration::from_secs(3600),
    );
    let webhook = sim::harness::delivery(
        "01SECURITYREFUSED000000001",
        "incident.triggered",
        Utc::now(),
        sim::harness::incident_data("QSECREFUSED1", "triggered"),
    );
    let reply = h.webhook(&webhook, "w-refused").await;
    assert_eq!((reply.status, outcome(&reply)), (200, "dead_lettered".to_string()), "{}", reply.body);
    let reply = h.outbound_message(&outbound_message(ORG_15, "04l5g0000000005AAA", "5005g00000SECR5AAA")).await;
    assert!(acked(&reply), "{}", reply.body);
    let dead = h.dead_letters();
    assert_eq!(dead.len(), 2, "both events are in the DLQ");
    assert!(
        dead.iter().all(|e| e.trip.dead_letter_reason.as_deref().is_some_and(|r| r.contains("refused"))),
        "{dead:?}"
    );
    assert_eq!(h.store.audit_entries().iter().filter(|e| e.outcome == Outcome::DeadLettered).count(), 2);
    assert!(h.pd.incidents().is_empty(), "nothing was acted on");
}
