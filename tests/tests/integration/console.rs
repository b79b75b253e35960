//! The agent console's routes (docs/console-api.md) against both simulators: the incidents
//! linked to a record and the status panel, authenticated as the record posts, in the answer
//! shape the Apex controller reads, with PagerDuty's failures in the console's error codes.

use chrono::Utc;
use serde_json::{Value, json};
use shared::handler::console::{ESCALATE_ROUTE, INCIDENTS_ROUTE, STATUS_ROUTE};
use shared::handler::http::Reply;
use shared::handler::sfdc_to_pd;
use shared::model::{Link, RecordRef};
use shared::pagerduty::requests::CreateIncident;
use shared::store::LinkStore;
use sim::faults::FaultKind;
use sim::harness::{Harness, HarnessConfig, ORG_ID};

const RULES: &str = "rulesets: []\n";

fn ask(extra: Value) -> Value {
    let mut body = json!({"schema": 1, "org_id": ORG_ID, "sent_at": Utc::now().to_rfc3339(),
        "user": {"id": "0055g00000AbCdEAAV", "username": "agent1@example.com"}});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

fn body(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap()
}

/// An incident opened in PagerDuty and linked to `case` (as a rule or the console would).
async fn linked_incident(h: &Harness, case: &str, title: &str) -> String {
    let incident = h
        .ctx
        .pagerduty
        .create_incident(&CreateIncident { title: title.into(), service_id: "PSVC001".into(), ..Default::default() })
        .await
        .unwrap();
    let link = Link {
        incident_id: incident.id.clone().into(),
        record: RecordRef { object: "Case".into(), id: case.to_string().into() },
        created_at: Utc::now(),
        created_by_rule: None,
    };
    h.store.put_link(&link).await.unwrap();
    incident.id
}

#[tokio::test]
async fn a_record_s_linked_incidents_are_listed_live_newest_first() {
    let h = Harness::start(RULES).await;
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down", "Status": "New"}));
    let first = linked_incident(&h, &case, "Checkout down").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = linked_incident(&h, &case, "Checkout down again").await;
    h.ctx.pagerduty.acknowledge(&first).await.unwrap();

    let reply = h.post_console(INCIDENTS_ROUTE, &ask(json!({"object": "Case", "record_id": case}))).await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    let incidents = body(&reply)["incidents"].as_array().unwrap().clone();
    let ids: Vec<&str> = incidents.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");
    let acked = &incidents[1];
    assert_eq!(acked["status"], "acknowledged", "the live status: {acked}");
    assert_eq!(acked["title"], "Checkout down");
    assert!(acked["number"].is_u64(), "{acked}");
    assert_eq!(acked["service"]["id"], "PSVC001");
    assert!(acked["service"]["name"].is_string(), "{acked}");
    assert!(acked["html_url"].as_str().unwrap().contains(&first), "{acked}");
    assert!(!acked["assignees"].as_array().unwrap().is_empty(), "the escalation policy's on-call: {acked}");
    assert!(acked["assignees"][0]["name"].is_string(), "{acked}");
    assert!(acked["latest_status_update"].is_null());
    assert!(body(&reply)["fetched_at"].is_string());
    // One read per linked incident, nothing written anywhere.
    let reads: Vec<_> = h.pd.requests().into_iter().filter(|r| r.path.starts_with("/incidents/")).collect();
    assert!(reads.iter().all(|r| r.method == "GET" || r.path.ends_with(&first)), "{reads:?}");
}

#[tokio::test]
async fn a_record_with_no_link_has_no_incidents() {
    let h = Harness::start(RULES).await;
    let case = h.sf.insert_record("Case", json!({"Subject": "Quiet"}));

    let reply = h.post_console(INCIDENTS_ROUTE, &ask(json!({"object": "Case", "record_id": case}))).await;

    assert_eq!((reply.status, body(&reply)["incidents"].clone()), (200, json!([])), "{}", reply.body);
}

#[tokio::test]
async fn the_console_is_never_open_an_unsigned_a_forged_or_another_org_s_post_is_refused() {
    let h = Harness::start(RULES).await;
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down"}));
    linked_incident(&h, &case, "Checkout down").await;
    let payload = ask(json!({"object": "Case", "record_id": case}));

    let unsigned = sfdc_to_pd::handle(
        &h.ctx,
        h.request(INCIDENTS_ROUTE, &payload.to_string(), vec![("content-type".into(), "application/json".into())]),
    )
    .await;
    let mut forged = h.signed_post(INCIDENTS_ROUTE, &payload);
    forged.body = ask(json!({"object": "Case", "record_id": "5005g00000OTHERAAA"})).to_string().into_bytes();
    let forged = sfdc_to_pd::handle(&h.ctx, forged).await;
    let other_org =
        h.post_console(INCIDENTS_ROUTE, &ask(json!({"org_id": "00D000000000OTHER", "record_id": case}))).await;
    let status_unsigned = sfdc_to_pd::handle(&h.ctx, h.request(STATUS_ROUTE, "{}", vec![])).await;

    for (reply, status, code) in [
        (&unsigned, 401, "unauthorized"),
        (&forged, 401, "unauthorized"),
        (&other_org, 403, "forbidden"),
        (&status_unsigned, 401, "unauthorized"),
    ] {
        assert_eq!((reply.status, body(reply)["error"]["code"].as_str()), (status, Some(code)), "{}", reply.body);
    }
    assert!(
        h.pd.requests().iter().all(|r| r.method != "GET" || !r.path.starts_with("/incidents/")),
        "PagerDuty is not asked for a refused post"
    );
}

#[tokio::test]
async fn a_malformed_ask_gets_a_clear_error() {
    let h = Harness::start(RULES).await;
    for (payload, says) in [
        (ask(json!({"object": "Case", "record_id": "not-an-id"})), "record_id"),
        (ask(json!({"object": "Case"})), "record_id"),
        (json!({"schema": 2, "org_id": ORG_ID}), "schema 2"),
        (json!({"hello": "world"}), "not a console request"),
    ] {
        let reply = h.post_console(INCIDENTS_ROUTE, &payload).await;
        assert_eq!(reply.status, 400, "{payload}: {}", reply.body);
        assert_eq!(body(&reply)["error"]["code"], "bad_request");
        assert!(body(&reply)["error"]["message"].as_str().unwrap().contains(says), "{}", reply.body);
    }
}

#[tokio::test]
async fn pagerduty_s_rate_limit_and_outage_are_told_in_the_console_s_codes() {
    let mut config = HarnessConfig::new(RULES);
    // PagerDuty's window is a minute; a second here, so that the test waits out the reset.
    config.pagerduty.rate_limit.window = std::time::Duration::from_secs(1);
    let h = Harness::with(config).await;
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down"}));
    linked_incident(&h, &case, "Checkout down").await;
    let payload = ask(json!({"object": "Case", "record_id": case}));

    h.pd.fail_next(1, FaultKind::RateLimited);
    let limited = h.post_console(INCIDENTS_ROUTE, &payload).await;
    assert_eq!(
        (limited.status, body(&limited)["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{}",
        limited.body
    );
    let retry_after: u64 = limited.headers.iter().find(|(n, _)| *n == "Retry-After").unwrap().1.parse().unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");

    // The client holds off until PagerDuty's reset (honoured, not hammered), then reads again.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    h.pd.fail_next(1, FaultKind::ServerError);
    let down = h.post_console(INCIDENTS_ROUTE, &payload).await;
    assert_eq!(
        (down.status, body(&down)["error"]["code"].as_str()),
        (503, Some("pagerduty_unavailable")),
        "{}",
        down.body
    );

    let fine = h.post_console(INCIDENTS_ROUTE, &payload).await;
    assert_eq!(fine.status, 200, "{}", fine.body);
}

#[tokio::test]
async fn the_status_panel_lists_the_open_incidents_of_the_chosen_services() {
    let h = Harness::start(RULES).await;
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down"}));
    let open = linked_incident(&h, &case, "Checkout down").await;
    let resolved = linked_incident(&h, &case, "Search slow").await;
    h.ctx.pagerduty.resolve(&resolved, None).await.unwrap();

    let asked = h.post_console(STATUS_ROUTE, &ask(json!({"service_ids": ["PSVC001"]}))).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    let ids: Vec<Value> = body(&asked)["incidents"].as_array().unwrap().iter().map(|i| i["id"].clone()).collect();
    assert_eq!(ids, [json!(open)], "only the open one: {}", asked.body);
    let listing = h.pd.requests().into_iter().find(|r| r.method == "GET" && r.path == "/incidents").unwrap();
    let query = listing.query.unwrap_or_default();
    assert!(query.contains("service_ids%5B%5D=PSVC001") || query.contains("service_ids[]=PSVC001"), "{query}");

    // None named by the component: the admin's choice (CONSOLE_SERVICE_IDS), else a clear 409.
    let none = h.post_console(STATUS_ROUTE, &ask(json!({}))).await;
    assert_eq!((none.status, body(&none)["error"]["code"].as_str()), (409, Some("not_configured")), "{}", none.body);
    let mut ctx = h.instance();
    ctx.settings.console_service_ids = vec!["PSVC001".into()];
    let chosen = sfdc_to_pd::handle(&ctx, h.signed_post(STATUS_ROUTE, &ask(json!({})))).await;
    assert_eq!(body(&chosen)["incidents"].as_array().map(Vec::len), Some(1), "{}", chosen.body);
}

/// The bridge as deployed with `ConsoleEscalationServiceId`.
fn escalating(h: &Harness) -> shared::handler::context::Context {
    let mut ctx = h.instance();
    ctx.settings.console_escalation_service_id = Some("PSVC001".into());
    ctx
}

fn escalation(case: &str, request_id: &str) -> Value {
    ask(json!({"object": "Case", "record_id": case, "request_id": request_id, "urgency": "high"}))
}

fn incidents_created(h: &Harness) -> usize {
    h.pd.requests().iter().filter(|r| r.method == "POST" && r.path == "/incidents" && r.status < 300).count()
}

#[tokio::test]
async fn an_escalation_opens_one_incident_linked_to_the_record() {
    let h = Harness::start(RULES).await;
    let ctx = escalating(&h);
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down"}));
    let id = uuid::Uuid::new_v4().to_string();

    let reply = sfdc_to_pd::handle(&ctx, h.signed_post(ESCALATE_ROUTE, &escalation(&case, &id))).await;

    assert_eq!(reply.status, 201, "{}", reply.body);
    let incident = body(&reply)["incident"].clone();
    assert_eq!((incident["status"].as_str(), incident["urgency"].as_str()), (Some("triggered"), Some("high")));
    assert_eq!(body(&reply)["created"], true);
    let links = h.store.incidents_for_record(&case).await.unwrap();
    assert_eq!(links.iter().map(|l| l.incident_id.to_string()).collect::<Vec<_>>(), [incident["id"].as_str().unwrap()]);
    let linked = h.post_console(INCIDENTS_ROUTE, &ask(json!({"object": "Case", "record_id": case}))).await;
    assert_eq!(body(&linked)["incidents"][0]["id"], incident["id"], "the console lists it");
    let audit = h.store.audit_entries();
    assert!(
        audit.iter().any(|e| e.event_id == format!("console:{id}") && e.outcome == shared::model::Outcome::Applied)
    );

    // The same intent again (the agent's "Try again", a retried callout): the same incident.
    let again = sfdc_to_pd::handle(&ctx, h.signed_post(ESCALATE_ROUTE, &escalation(&case, &id))).await;
    assert_eq!((again.status, body(&again)["created"].clone()), (200, json!(false)), "{}", again.body);
    assert_eq!(body(&again)["incident"]["id"], incident["id"]);
    // A new intent: a new incident.
    let other = uuid::Uuid::new_v4().to_string();
    let second = sfdc_to_pd::handle(&ctx, h.signed_post(ESCALATE_ROUTE, &escalation(&case, &other))).await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_ne!(body(&second)["incident"]["id"], incident["id"]);
    assert_eq!(incidents_created(&h), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_double_click_on_several_instances_opens_one_incident() {
    let h = Harness::start(RULES).await;
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down"}));
    let id = uuid::Uuid::new_v4().to_string();
    let instances: Vec<_> = (0..4).map(|_| escalating(&h)).collect();
    let posts =
        instances.iter().map(|ctx| sfdc_to_pd::handle(ctx, h.signed_post(ESCALATE_ROUTE, &escalation(&case, &id))));

    let replies = futures::future::join_all(posts).await;

    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "one creates: {statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 201, 503].contains(s)),
        "the others see it or are told to ask again: {statuses:?}"
    );
    assert_eq!(incidents_created(&h), 1, "one incident in PagerDuty");
    assert_eq!(h.store.incidents_for_record(&case).await.unwrap().len(), 1, "one link");
}

#[tokio::test]
async fn a_lost_answer_then_try_again_opens_no_second_incident() {
    let h = Harness::start(RULES).await;
    let ctx = escalating(&h);
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down"}));
    let id = uuid::Uuid::new_v4().to_string();
    // PagerDuty creates the incident, and the answer never comes back.
    h.pd.fail_next(1, FaultKind::LoseAnswer);

    let lost = sfdc_to_pd::handle(&ctx, h.signed_post(ESCALATE_ROUTE, &escalation(&case, &id))).await;
    assert_eq!(
        (lost.status, body(&lost)["error"]["code"].as_str()),
        (503, Some("pagerduty_unavailable")),
        "{}",
        lost.body
    );
    let retried = sfdc_to_pd::handle(&ctx, h.signed_post(ESCALATE_ROUTE, &escalation(&case, &id))).await;

    assert!([200, 201].contains(&retried.status), "{}", retried.body);
    let open: Vec<Value> = h.pd.incidents().into_iter().filter(|i| i["status"] != "resolved").collect();
    assert_eq!(open.len(), 1, "PagerDuty holds one incident: {open:?}");
    assert_eq!(body(&retried)["incident"]["id"], open[0]["id"]);
    assert_eq!(h.store.incidents_for_record(&case).await.unwrap().len(), 1, "linked once");
}

#[tokio::test]
async fn an_escalation_without_a_service_or_a_request_id_is_refused_plainly() {
    let h = Harness::start(RULES).await;
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down"}));
    let id = uuid::Uuid::new_v4().to_string();
    let unset = h.post_console(ESCALATE_ROUTE, &escalation(&case, &id)).await;
    assert_eq!((unset.status, body(&unset)["error"]["code"].as_str()), (409, Some("not_configured")), "{}", unset.body);
    let ctx = escalating(&h);
    for bad in [
        escalation(&case, "double-click"),
        ask(json!({"object": "Case", "record_id": case, "request_id": id, "urgency": "urgent"})),
    ] {
        let reply = sfdc_to_pd::handle(&ctx, h.signed_post(ESCALATE_ROUTE, &bad)).await;
        assert_eq!(
            (reply.status, body(&reply)["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{}",
            reply.body
        );
    }
    assert_eq!(incidents_created(&h), 0);
}

fn status_update(event_id: &str, incident: &str, message: &str, at: chrono::DateTime<Utc>) -> String {
    let update = json!({"id": format!("PSTU{event_id}"), "type": "incident_status_update", "trimmed": false,
        "message": message, "incident": {"id": incident, "type": "incident_reference", "summary": "Checkout down"}});
    sim::harness::delivery(event_id, "incident.status_update_published", at, update)
}

#[tokio::test]
async fn the_console_shows_the_latest_status_update_the_bridge_received() {
    // No rule acts on status updates: the console shows them all the same.
    let h = Harness::start(RULES).await;
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down"}));
    let incident = linked_incident(&h, &case, "Checkout down").await;
    let t0 = Utc::now();
    let later =
        status_update("E2", &incident, "Fix deployed; error rates back to normal.", t0 + chrono::Duration::minutes(5));
    let earlier = status_update("E1", &incident, "Rolling back the 10:00 deploy.", t0);
    h.webhook(&later, "w2").await;
    // PagerDuty delivers out of order: the older update arrives last and replaces nothing.
    h.webhook(&earlier, "w1").await;

    let incidents = h.post_console(INCIDENTS_ROUTE, &ask(json!({"object": "Case", "record_id": case}))).await;
    let status = h.post_console(STATUS_ROUTE, &ask(json!({"service_ids": ["PSVC001"]}))).await;

    for reply in [&incidents, &status] {
        let update = body(reply)["incidents"][0]["latest_status_update"].clone();
        assert_eq!(update["message"], "Fix deployed; error rates back to normal.", "{}", reply.body);
        let at: chrono::DateTime<Utc> = update["created_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(at.timestamp_millis(), (t0 + chrono::Duration::minutes(5)).timestamp_millis());
    }
}

#[tokio::test]
async fn agents_on_one_record_within_seconds_cost_pagerduty_one_read() {
    let h = Harness::start(RULES).await;
    let case = h.sf.insert_record("Case", json!({"Subject": "Checkout down"}));
    let incident = linked_incident(&h, &case, "Checkout down").await;
    let reads =
        |h: &Harness| h.pd.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with(&incident)).count();
    let payload = ask(json!({"object": "Case", "record_id": case}));
    let panel = ask(json!({"service_ids": ["PSVC001"]}));
    let listings = |h: &Harness| h.pd.requests().iter().filter(|r| r.method == "GET" && r.path == "/incidents").count();

    for _ in 0..3 {
        assert_eq!(h.post_console(INCIDENTS_ROUTE, &payload).await.status, 200);
        assert_eq!(h.post_console(STATUS_ROUTE, &panel).await.status, 200);
    }
    assert_eq!((reads(&h), listings(&h)), (1, 1), "read once within the cache's seconds");

    h.ctx.pagerduty.acknowledge(&incident).await.unwrap();
    h.clock.advance(chrono::Duration::seconds(shared::handler::console::CACHE_SECONDS));
    let reply = h.post_console(INCIDENTS_ROUTE, &payload).await;
    assert_eq!(body(&reply)["incidents"][0]["status"], "acknowledged", "read again once the seconds passed");
    h.post_console(STATUS_ROUTE, &panel).await;
    assert_eq!((reads(&h), listings(&h)), (2, 2));
}
