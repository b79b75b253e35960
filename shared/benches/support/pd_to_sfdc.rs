//! The pd-to-sfdc bench's inputs and its pure part (plan to Composite body), shared with the
//! fixture test that exports them for the Python baseline (`tools/baseline/pd_to_sfdc.py`).

use serde_json::json;
use shared::pagerduty::WebhookEvent;
use shared::rules::{Action, Evaluation, Event, LinkedRecord, SalesforceAction};
use shared::salesforce::composite::{CompositeBuilder, Write};

use crate::support::hundred_rules;

pub const SECRET: &str = "bench-webhook-secret";

/// The handler benches' rules: the 100 mixed rules plus one realistic acknowledge rule.
pub fn handler_rules() -> String {
    let mut doc = hundred_rules();
    doc.push_str(
        "  - name: pd-to-sfdc\n    rules:\n      - {name: ack, direction: pagerduty_to_salesforce, object: Case, conditions: [{field: pagerduty.event_type, operator: equals, value: acknowledge}], actions: [{set_fields: {Status: Working, PagerDuty_Status__c: '{{incident.status}}'}}]}\n",
    );
    doc
}

pub fn webhook_body(i: u64) -> String {
    json!({"event": {"id": format!("01BENCH{i:020}"), "event_type": "incident.acknowledged", "resource_type": "incident",
        "occurred_at": "2026-11-22T10:01:00.000Z", "agent": {"id": "PUSR001", "type": "user_reference", "summary": "On Call"},
        "client": null, "data": {"id": "Q1BENCHINC", "type": "incident", "number": 101, "status": "acknowledged",
        "title": "Checkout API latency above 2s", "urgency": "high", "html_url": "https://demo.pagerduty.com/incidents/Q1BENCHINC",
        "service": {"id": "PSVC001", "type": "service_reference", "summary": "Customer Support"},
        "escalation_policy": {"id": "PEP0001", "type": "escalation_policy_reference", "summary": "Support"},
        "assignees": [{"id": "PUSR002", "type": "user_reference"}], "teams": [], "priority": {"id": "PPRI001", "type": "priority_reference", "summary": "P1"}}}})
    .to_string()
}

/// The engine's input for a delivery (as the handler builds it), with the one Case the handler
/// would have looked up.
pub fn incident_input(event: &WebhookEvent) -> Event {
    let case = LinkedRecord {
        object: "Case".into(),
        id: "5005g00000DEMO1AAA".into(),
        fields: json!({"Status": "New"}).as_object().unwrap().clone(),
    };
    Event::Incident(shared::handler::pd_to_sfdc::incident_event(event, vec![case]))
}

/// The Composite request body for the plan's record updates.
pub fn composite_body(evaluation: &Evaluation) -> Vec<u8> {
    let mut builder = CompositeBuilder::new("62.0", false);
    for (n, planned) in evaluation.plan.iter().enumerate() {
        if let Action::Salesforce(SalesforceAction::SetFields { record, fields }) = &planned.action {
            let write =
                Write::Update { object: record.object.to_string(), id: record.id.to_string(), fields: fields.clone() };
            builder.push(&format!("a{n}"), write).unwrap();
        }
    }
    serde_json::to_vec(&builder.build().unwrap()).unwrap()
}
