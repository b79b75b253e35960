//! What several end-to-end tests share: the rules of a Case's life from PagerDuty's side, and
//! the one Case an incident is linked to.

use serde_json::Value;
use shared::store::LinkStore;

use crate::harness::Harness;

/// Salesforce → PagerDuty: a new Sev1 Case opens a high-urgency incident titled by its Subject.
pub const SEV1_CASE_OPENS_INCIDENT: &str = r#"
rulesets:
  - name: SFDC > PD
    enabled: true
    rules:
      - name: sev1-case-opens-incident
        direction: salesforce_to_pagerduty
        object: Case
        applies_to: new_only
        conditions:
          - {field: Priority, operator: equals, value: Sev1}
        actions:
          - create_incident: {service: PSVC001, urgency: high, title: {fields: [Subject]}}
"#;

/// PagerDuty → Salesforce rules for a Case: a trigger opens it, an acknowledge sets it Working, a
/// resolve closes it, a note becomes a Case Comment.
pub const PD_CASE_RULES: &str = r#"
rulesets:
  - name: PD > SFDC
    enabled: true
    rules:
      - name: trigger-opens-case
        direction: pagerduty_to_salesforce
        object: Case
        applies_to: new_only
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: trigger}
        actions:
          - create_record:
              object: Case
              fields: {Subject: "{{incident.title}}", Origin: PagerDuty, Priority: High}
              external_id_field: PagerDuty_Incident_Key__c
      - name: acknowledged-sets-case-working
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: acknowledge}
        actions:
          - set_fields: {Status: Working, PagerDuty_Status__c: "{{incident.status}}"}
      - name: resolved-closes-case
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: resolve}
        actions:
          - set_fields: {Status: Closed, PagerDuty_Status__c: "{{incident.status}}"}
      - name: note-becomes-comment
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: pagerduty.event_type, operator: equals, value: incident.annotated}
        actions:
          - add_case_comment: {body: "{{note.content}}"}
"#;

/// The one Case linked to `incident_id`, as Salesforce holds it now.
pub async fn case_of(h: &Harness, incident_id: &str) -> Value {
    let links = h.store.records_for_incident(incident_id).await.unwrap();
    assert_eq!(links.len(), 1, "one Case linked to {incident_id}: {links:?}");
    h.sf.record("Case", &links[0].record.id).expect("the linked Case exists in Salesforce")
}
