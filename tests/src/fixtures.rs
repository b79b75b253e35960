//! What several end-to-end tests share: the rules of a Case's life from PagerDuty's side, and
//! the one Case an incident is linked to. The rule documents are files in `tests/fixtures/rules/`.

use serde_json::Value;
use shared::store::LinkStore;

use crate::harness::Harness;

/// Salesforce → PagerDuty: a new Sev1 Case opens a high-urgency incident titled by its Subject.
pub const SEV1_CASE_OPENS_INCIDENT: &str = include_str!("../fixtures/rules/sev1-case-opens-incident.yaml");

/// PagerDuty → Salesforce rules for a Case: a trigger opens it, an acknowledge sets it Working, a
/// resolve closes it, a note becomes a Case Comment.
pub const PD_CASE_RULES: &str = include_str!("../fixtures/rules/pd-case.yaml");

/// Salesforce → PagerDuty rules for a Case: a new Sev1 Case opens a high-urgency incident titled by
/// its Subject, a change to Sev2 sets the incident's priority to P2, a close resolves it.
pub const SFDC_CASE_RULES: &str = include_str!("../fixtures/rules/sfdc-case.yaml");

/// The one Case linked to `incident_id`, as Salesforce holds it now.
pub async fn case_of(h: &Harness, incident_id: &str) -> Value {
    let links = h.store.records_for_incident(incident_id).await.unwrap();
    assert_eq!(links.len(), 1, "one Case linked to {incident_id}: {links:?}");
    h.sf.record("Case", links[0].record.id.as_str()).expect("the linked Case exists in Salesforce")
}
