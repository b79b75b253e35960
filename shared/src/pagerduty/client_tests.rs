//! Client behaviour against scripted answers at the transport port: the duplicate-key lookup,
//! 429 handling, caches, error classification. Real HTTP (the reqwest adapter) is exercised
//! end to end against the simulators in the `tests` crate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use url::Url;

use super::client::PagerdutyClient;
use super::requests::{Assignees, CreateIncident, PriorityChoice, Urgency};
use crate::class::{Class, Classify};
use crate::transport::testing::Scripted;
use crate::transport::{Failure, Transport, TransportError};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

type Reply = (u16, Vec<(&'static str, String)>, String);
type Script = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// Where a test's client sends: a base URL and the transport that answers there.
#[derive(Clone)]
struct Server {
    base: Url,
    transport: Arc<dyn Transport>,
}

/// Answers every request with `script`; returns the server and the log of what it was asked.
async fn serve(script: Script) -> (Server, Arc<Mutex<Vec<Seen>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let transport = Scripted::new(move |request| {
        let request = Seen {
            method: request.method.clone(),
            target: request.target.clone(),
            headers: request.headers.clone(),
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        };
        let (status, extra, text) = script(&request);
        seen.lock().unwrap().push(request);
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        headers.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        Ok((status, headers, text))
    });
    (Server { base: Url::parse("http://pagerduty.test").unwrap(), transport }, log)
}

fn client(server: Server) -> PagerdutyClient {
    PagerdutyClient::new(server.transport, server.base, "u+tok".into(), "bot@example.com".into())
}

const DUPLICATE: &str = r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Open incident with matching dedup key already exists on this service"]}}"#;

#[tokio::test]
async fn a_duplicate_incident_key_returns_the_existing_open_incident() {
    let (base, log) = serve(Arc::new(|r: &Seen| match (r.method.as_str(), r.target.as_str()) {
        ("POST", "/incidents") => (400, vec![], DUPLICATE.to_string()),
        ("GET", t) if t.starts_with("/incidents?incident_key=sfdc%3ACase%3A1") => (
            200,
            vec![],
            json!({"incidents": [
                {"id": "QOLD", "status": "resolved", "incident_key": "sfdc:Case:1", "incident_number": 1,
                 "service": {"id": "S", "type": "service_reference"}},
                {"id": "QOPEN", "status": "triggered", "incident_key": "sfdc:Case:1", "incident_number": 2,
                 "html_url": "https://acme.pagerduty.com/incidents/QOPEN",
                 "service": {"id": "S", "type": "service_reference"}}
            ], "more": false})
            .to_string(),
        ),
        _ => (404, vec![], String::new()),
    }))
    .await;
    let c = client(base);
    let got = c
        .create_incident(&CreateIncident {
            title: "t".into(),
            service_id: "S".into(),
            incident_key: Some("sfdc:Case:1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.id, "QOPEN");
    assert_eq!(got.number, Some(2));
    assert_eq!(got.html_url.as_deref(), Some("https://acme.pagerduty.com/incidents/QOPEN"));
    assert_eq!(c.api_calls(), 2);
    let log = log.lock().unwrap();
    assert_eq!(log[0].body["incident"]["incident_key"], "sfdc:Case:1");
    assert_eq!(log[0].header("from"), Some("bot@example.com"));
    assert_eq!(log[0].header("authorization"), Some("Token token=u+tok"));
    assert_eq!(log[0].header("accept"), Some("application/vnd.pagerduty+json;version=2"));
}

#[tokio::test]
async fn a_created_incident_returns_its_id_number_and_link_and_a_priority_name_is_resolved_once() {
    let (base, log) = serve(Arc::new(|r: &Seen| match (r.method.as_str(), r.target.as_str()) {
        ("GET", t) if t.starts_with("/priorities") => (
            200,
            vec![],
            json!({"priorities": [{"id": "PP1", "name": "P1"}, {"id": "PP2", "name": "P2"}], "more": false}).to_string(),
        ),
        ("POST", "/incidents") => (
            201,
            vec![],
            json!({"incident": {"id": "QNEW", "incident_number": 7, "html_url": "https://x/QNEW", "status": "triggered"}})
                .to_string(),
        ),
        ("PUT", "/incidents/QNEW") => (200, vec![], json!({"incident": {"id": "QNEW"}}).to_string()),
        _ => (404, vec![], String::new()),
    }))
    .await;
    let c = client(base);
    let got = c
        .create_incident(&CreateIncident {
            title: "t".into(),
            service_id: "S".into(),
            priority: Some(PriorityChoice::Name("p1".into())),
            urgency: Some(Urgency::High),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((got.id.as_str(), got.number), ("QNEW", Some(7)));
    c.set_priority("QNEW", "P2").await.unwrap();
    c.set_priority("QNEW", "P1").await.unwrap();
    let log = log.lock().unwrap();
    let priority_lookups = log.iter().filter(|s| s.target.starts_with("/priorities")).count();
    assert_eq!(priority_lookups, 1);
    assert_eq!(log[1].body["incident"]["priority"], json!({"id": "PP1", "type": "priority_reference"}));
    assert_eq!(log[2].body["incident"]["priority"]["id"], "PP2");
    assert_eq!(c.api_calls(), 4);
}

#[tokio::test]
async fn an_unknown_priority_name_is_bad_input_after_one_refresh() {
    let (base, _log) =
        serve(Arc::new(|_: &Seen| (200, vec![], json!({"priorities": [{"id": "PP1", "name": "P1"}]}).to_string())))
            .await;
    let c = client(base);
    let e = c.set_priority("Q", "P9").await.unwrap_err();
    assert_eq!(e.class(), Class::BadInput);
    assert!(e.to_string().contains("P9"));
}

#[tokio::test]
async fn a_429_is_transient_with_the_reset_and_holds_the_limiter_back() {
    let (base, _log) = serve(Arc::new(|_: &Seen| (429, vec![("ratelimit-reset", "2".to_string())], "{}".into()))).await;
    let c = client(base);
    let e = c.acknowledge("Q1").await.unwrap_err();
    assert!(e.is_transient());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn server_and_auth_errors_are_classified_and_name_pagerdutys_reason() {
    let (base, _log) = serve(Arc::new(|r: &Seen| match r.target.as_str() {
        "/incidents/Q500" => (503, vec![], "upstream busy".into()),
        "/incidents/Q401" => (401, vec![], r#"{"error":{"message":"Unauthorized","code":2006}}"#.into()),
        "/incidents/Q404" => (404, vec![], r#"{"error":{"message":"Not Found","code":2100}}"#.into()),
        _ => (
            400,
            vec![],
            r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Urgency is invalid"]}}"#.into(),
        ),
    }))
    .await;
    let c = client(base);
    assert_eq!(c.get_incident("Q500").await.unwrap_err().class(), Class::Transient);
    assert_eq!(c.get_incident("Q401").await.unwrap_err().class(), Class::Auth);
    assert_eq!(c.get_incident("Q404").await.unwrap_err().class(), Class::Permanent);
    let e = c.set_urgency("Q400", Urgency::Low).await.unwrap_err();
    assert_eq!(e.class(), Class::BadInput);
    assert!(e.to_string().contains("Urgency is invalid"), "{e}");
    assert!(!format!("{e:?}{e}").contains("u+tok"));
}

#[tokio::test]
async fn an_unreachable_pagerduty_is_transient() {
    let refused = Scripted::new(|_| Err(TransportError::new(Failure::Connect, "connection refused")));
    let server = Server { base: Url::parse("http://pagerduty.test").unwrap(), transport: refused };
    let e = client(server).acknowledge("Q1").await.unwrap_err();
    assert!(e.is_transient(), "{e}");
}

#[tokio::test]
async fn the_bridges_own_user_is_looked_up_once_and_an_unknown_email_is_none() {
    let (base, log) = serve(Arc::new(|r: &Seen| match (r.method.as_str(), r.target.as_str()) {
        ("GET", t) if t.starts_with("/users?query=bot%40example.com") => {
            (200, vec![], json!({"users": [{"id": "PBOT", "email": "bot@example.com"}]}).to_string())
        }
        ("GET", t) if t.starts_with("/users?query=") => (200, vec![], json!({"users": []}).to_string()),
        _ => (404, vec![], String::new()),
    }))
    .await;
    let c = client(base.clone());
    assert_eq!(c.own_user_id().await.unwrap().as_deref(), Some("PBOT"));
    assert_eq!(c.own_user_id().await.unwrap().as_deref(), Some("PBOT"));
    assert_eq!(log.lock().unwrap().len(), 1, "cached for the process");
    let nobody = PagerdutyClient::new(base.transport, base.base, "t".into(), "nobody@example.com".into());
    assert_eq!(nobody.own_user_id().await.unwrap(), None);
}

#[tokio::test]
async fn an_incidents_notes_are_listed_in_full() {
    let (base, _) = serve(Arc::new(|r: &Seen| match (r.method.as_str(), r.target.as_str()) {
        ("GET", "/incidents/Q1/notes") => (
            200,
            vec![],
            json!({"notes": [{"id": "PN1", "content": "short", "user": {"id": "PU", "type": "user_reference"}},
                             {"id": "PN2", "content": "x".repeat(70_000)}]})
            .to_string(),
        ),
        _ => (404, vec![], String::new()),
    }))
    .await;
    let notes = client(base).list_notes("Q1").await.unwrap();
    assert_eq!(notes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), vec!["PN1", "PN2"]);
    assert_eq!(notes[1].content.len(), 70_000);
}

/// The response example of `GET /log_entries` in PagerDuty's OpenAPI document, and an
/// annotation as the simulator logs it.
#[tokio::test]
async fn a_page_of_the_log_reads_each_entrys_type_time_agent_and_incident() {
    let (base, log) = serve(Arc::new(|r: &Seen| match r.method.as_str() {
        "GET" if r.target.starts_with("/log_entries?") => (
            200,
            vec![],
            json!({"log_entries": [
                {"id": "Q02JTSNZWHSEKV", "type": "trigger_log_entry", "summary": "Triggered through the API",
                 "created_at": "2015-11-07T00:14:20Z",
                 "agent": {"id": "PIJ90N7", "type": "service_reference", "summary": "My Mail Service"},
                 "channel": {"type": "api"},
                 "incident": {"id": "PT4KHLK", "type": "incident_reference", "summary": "[#1234] The server is on fire."},
                 "teams": [{"id": "PQ9K7I8", "type": "team_reference"}], "contexts": [],
                 "event_details": {"description": "Tasks::SFDCValidator - PD_Data__c - duplicates"}},
                {"id": "R000002", "type": "annotate_log_entry", "created_at": "2026-12-04T10:00:01Z",
                 "agent": {"id": "PUSR002", "type": "user_reference"}, "incident": {"id": "Q1"}},
            ], "limit": 2, "offset": 0, "more": true})
            .to_string(),
        ),
        _ => (404, vec![], String::new()),
    }))
    .await;
    let page = client(base).list_log_entries_page("2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z", 0).await.unwrap();
    let (entries, more) = (page.items, page.more);
    assert!(more);
    assert_eq!(entries[0].kind, "trigger_log_entry");
    assert_eq!((entries[0].incident_id(), entries[0].agent_id()), (Some("PT4KHLK"), Some("PIJ90N7")));
    assert_eq!(entries[1].created_at.to_rfc3339(), "2026-12-04T10:00:01+00:00");
    let target = log.lock().unwrap()[0].target.clone();
    assert!(target.contains("since=2026-12-04T00%3A00%3A00Z") && target.contains("offset=0"), "{target}");
    assert!(target.contains("total=true"), "the first page asks for the total: {target}");
}

#[tokio::test]
async fn responders_are_requested_by_the_from_user_looked_up_once() {
    let (base, log) = serve(Arc::new(|r: &Seen| match (r.method.as_str(), r.target.as_str()) {
        ("GET", t) if t.starts_with("/users?query=bot%40example.com") => (
            200,
            vec![],
            json!({"users": [{"id": "PNOTME", "email": "bot@example.com.au"}, {"id": "PBOT", "email": "Bot@Example.com"}]})
                .to_string(),
        ),
        ("POST", "/incidents/Q1/responder_requests") => (200, vec![], json!({"responder_request": {}}).to_string()),
        _ => (404, vec![], String::new()),
    }))
    .await;
    let c = client(base);
    let users = vec!["PU".to_string()];
    c.add_responders("Q1", &users, &[], "help").await.unwrap();
    c.add_responders("Q1", &[], &["PE".to_string()], "help").await.unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].body["requester_id"], "PBOT");
    assert_eq!(log[1].body["message"], "help");
    assert_eq!(
        log[2].body["responder_request_targets"][0]["responder_request_target"]["type"],
        "escalation_policy_reference"
    );
}

#[tokio::test]
async fn resolve_with_a_note_adds_the_note_then_resolves() {
    let (base, log) = serve(Arc::new(|r: &Seen| match r.method.as_str() {
        "POST" => (201, vec![], json!({"note": {"id": "N1"}}).to_string()),
        _ => (200, vec![], json!({"incident": {"id": "Q1"}}).to_string()),
    }))
    .await;
    let c = client(base);
    c.resolve("Q1", Some("[Salesforce] Case closed")).await.unwrap();
    c.reassign("Q1", &Assignees::EscalationPolicy("PEP".into())).await.unwrap();
    let log = log.lock().unwrap();
    assert_eq!((log[0].method.as_str(), log[0].target.as_str()), ("POST", "/incidents/Q1/notes"));
    assert_eq!(log[0].body["note"]["content"], "[Salesforce] Case closed");
    assert_eq!(log[1].body["incident"]["status"], "resolved");
    assert_eq!(log[2].body["incident"]["escalation_policy"]["id"], "PEP");
}

#[tokio::test]
async fn resolving_an_already_resolved_incident_succeeds_but_acknowledging_it_does_not() {
    let (base, _log) = serve(Arc::new(|_: &Seen| {
        (
            400,
            vec![],
            r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Incident Already Resolved"]}}"#
                .into(),
        )
    }))
    .await;
    let c = client(base);
    c.resolve("Q1", None).await.unwrap();
    assert_eq!(c.acknowledge("Q1").await.unwrap_err().class(), Class::BadInput);
}

#[tokio::test]
async fn a_webhook_subscription_is_created_with_its_secret_and_listed_across_pages() {
    let (base, _log) = serve(Arc::new(|r: &Seen| match (r.method.as_str(), r.target.as_str()) {
        ("POST", _) => (
            201,
            vec![],
            json!({"webhook_subscription": {"id": "PSUB", "active": true,
                "delivery_method": {"type": "http_delivery_method", "url": r.body["webhook_subscription"]["delivery_method"]["url"], "secret": "s3cr3t"},
                "events": r.body["webhook_subscription"]["events"], "filter": {"type": "account_reference"}}})
            .to_string(),
        ),
        ("GET", t) if t.contains("offset=0") => (
            200,
            vec![],
            json!({"webhook_subscriptions": [{"id": "A", "delivery_method": {"url": "https://a"}}], "more": true}).to_string(),
        ),
        ("GET", _) => (
            200,
            vec![],
            json!({"webhook_subscriptions": [{"id": "B", "active": false}], "more": false}).to_string(),
        ),
        _ => (404, vec![], String::new()),
    }))
    .await;
    let c = client(base);
    let (sub, secret) = c
        .create_webhook_subscription(
            "https://hook.example/pagerduty/webhook",
            &super::requests::SubscriptionFilter::Account,
        )
        .await
        .unwrap();
    assert_eq!((sub.id.as_str(), secret.as_str()), ("PSUB", "s3cr3t"));
    assert_eq!(sub.url.as_deref(), Some("https://hook.example/pagerduty/webhook"));
    assert!(sub.events.contains(&"incident.annotated".to_string()));
    let list = c.list_webhook_subscriptions().await.unwrap();
    assert_eq!(list.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["A", "B"]);
    assert!(!list[1].active);
}

#[tokio::test]
async fn a_429_on_one_instance_holds_back_another_that_shares_the_budget() {
    use super::shared_budget::{SharedBudget, SharedLimit};
    let (base, log) = serve(Arc::new(|r: &Seen| match r.target.as_str() {
        "/incidents/Q429" => (429, vec![("ratelimit-reset", "30".to_string())], "{}".into()),
        _ => (200, vec![], r#"{"incident":{"id":"Q1","status":"triggered"}}"#.into()),
    }))
    .await;
    let store = Arc::new(crate::store::memory::MemoryStore::default());
    let budget = || Arc::new(SharedBudget::new(store.clone(), SharedLimit::PAGERDUTY_REST));
    let a = client(base.clone()).with_shared_budget(budget()).with_max_queue_wait(Duration::from_secs(1));
    let b = client(base).with_shared_budget(budget()).with_max_queue_wait(Duration::from_secs(1));
    let e = a.get_incident("Q429").await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    // b never met the 429, and has no lease yet: the shared bucket's pause holds it back unsent.
    let e = b.get_incident("Q1").await.unwrap_err();
    assert!(e.not_sent(), "{e}");
    assert!(e.retry_after().is_some_and(|w| w > Duration::from_secs(29)), "{e}");
    assert_eq!(log.lock().unwrap().len(), 1, "only a's request reached PagerDuty");
    assert_eq!(b.api_calls(), 0);
}
