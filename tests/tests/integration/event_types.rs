//! Every Webhooks v3 event type PagerDuty documents (issue 21): each has a sample in
//! `events/pd-to-sfdc/`, is answered 2xx, typed and classified, and what it carries reaches the
//! rules (a responder request, the conference bridge, an incident custom field, ...).

use shared::clock::Clock;
use shared::handler::pd_to_sfdc;
use shared::pagerduty::{EventData, INCIDENT_EVENT_TYPES, SERVICE_EVENT_TYPES, WebhookEvent};
use shared::rules::event_category;
use sim::harness::{Harness, outcome};

fn events_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// The sample of `event_type` (`incident.responder.added` → `incident-responder-added.json`), as
/// API Gateway hands it to the function.
fn sample(h: &Harness, event_type: &str) -> shared::handler::http::InboundRequest {
    let name = event_type.replace(['.', '_'], "-");
    let path = events_dir().join("pd-to-sfdc").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{event_type} has no sample: {e}"));
    let request = lambda_http::request::from_str(&text).expect("an API Gateway event");
    let mut inbound = adapters::lambda::to_inbound(&request);
    inbound.deadline = Some(h.clock.now() + chrono::Duration::seconds(10));
    inbound
}

fn example_rules() -> String {
    std::fs::read_to_string(events_dir().join("rules.example.yaml")).unwrap()
}

#[tokio::test]
async fn every_documented_type_has_a_sample_answered_2xx_typed_and_classified() {
    let h = Harness::start(&example_rules()).await;
    for event_type in INCIDENT_EVENT_TYPES.iter().chain(SERVICE_EVENT_TYPES) {
        let request = sample(&h, event_type);
        let event = WebhookEvent::parse(&request.body).unwrap_or_else(|e| panic!("{event_type}: {e}"));
        assert_eq!(event.event_type, *event_type);
        if event_type.starts_with("incident.") {
            assert!(!matches!(event.data, EventData::Other(_)), "{event_type} is typed: {:?}", event.data);
            assert_eq!(event.incident_id(), Some("Q1DEMOINC00001"), "{event_type} names its incident");
            assert_ne!(event_category(event_type), "custom", "{event_type} has its own category");
        }
        let reply = pd_to_sfdc::handle(&h.ctx, request).await;
        assert!((200..300).contains(&reply.status), "{event_type}: {} {}", reply.status, reply.body);
    }
    let audited = h.store.audit_entries().len();
    assert_eq!(audited, INCIDENT_EVENT_TYPES.len() + SERVICE_EVENT_TYPES.len(), "each is audited once");
}

#[tokio::test]
async fn a_future_type_is_acknowledged_and_audited_not_refused() {
    let h = Harness::start(&example_rules()).await;
    // events/pd-to-sfdc/unknown-event-type.json: `incident.postmortem.published`.
    let reply = pd_to_sfdc::handle(&h.ctx, sample(&h, "unknown.event.type")).await;
    assert_eq!((reply.status, outcome(&reply).as_str()), (200, "skipped"), "{}", reply.body);
    assert_eq!(h.store.audit_entries().len(), 1);
}

/// The example rules on the Case the trigger opened: the responder request becomes a comment,
/// the conference bridge and the "customer_impact" incident custom field are set on the Case.
#[tokio::test]
async fn what_the_new_types_carry_reaches_the_case() {
    let h = Harness::start(&example_rules()).await;
    for event_type in [
        "incident.triggered",
        "incident.responder.added",
        "incident.responder.replied",
        "incident.conference_bridge.updated",
        "incident.custom_field_values.updated",
    ] {
        let reply = pd_to_sfdc::handle(&h.ctx, sample(&h, event_type)).await;
        assert_eq!(reply.status, 200, "{event_type}: {}", reply.body);
    }
    let cases = h.sf.records("Case");
    assert_eq!(cases.len(), 1, "the trigger opened one Case");
    let case = &cases[0];
    assert_eq!(case["PagerDuty_Conference_URL__c"], "https://meet.example.com/checkout");
    assert_eq!(case["Customer_Impact__c"], "Checkout unavailable for EU", "the value now, not the one before");
    let comments: Vec<String> =
        h.sf.records("CaseComment")
            .iter()
            .filter_map(|c| c["CommentBody"].as_str().map(str::to_string))
            .filter(|b| b.contains("to join"))
            .collect();
    assert_eq!(comments.len(), 1, "the request (pending), not the reply (joined): {comments:?}");
    assert!(
        comments[0].contains("Demo Responder asked Maeve Chen to join: Payments side of checkout looks involved"),
        "{}",
        comments[0]
    );
}
