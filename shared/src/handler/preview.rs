//! What the rules would do now with a queued or dead-lettered event (`syncctl dlq replay
//! --dry-run`): the same input the handlers build, evaluated without calling anything.

use crate::handler::{pd_to_sfdc, sfdc_to_pd};
use crate::retry::envelope::{Envelope, QueuedEvent};
use crate::rules::{Evaluation, Event, LinkedRecord, Rules};
use crate::store::LinkStore;

/// Evaluates `rules` on the envelope's event, with the links as they are now. Linked records'
/// field values are not fetched (no Salesforce call): conditions on them see empty values.
pub async fn preview(envelope: &Envelope, rules: &Rules, links: &dyn LinkStore) -> Result<Evaluation, String> {
    let input = match &envelope.accepted.event {
        QueuedEvent::PagerdutyWebhook { body, .. } => {
            let event = pd_to_sfdc::parse_queued(body)?;
            let incident = event.incident_id().unwrap_or_default().to_string();
            let linked = links
                .records_for_incident(&incident)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|l| LinkedRecord {
                    object: l.record.object,
                    id: l.record.id.to_string(),
                    fields: serde_json::Map::new(),
                })
                .collect();
            Event::Incident(pd_to_sfdc::incident_event(&event, linked))
        }
        QueuedEvent::SalesforceRecord { .. } => {
            let change = sfdc_to_pd::Change::from_accepted(&envelope.accepted).ok_or("not a record event")?;
            let parent = change.linked_record_id().to_string();
            let linked_incidents = links
                .incidents_for_record(&parent)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|l| l.incident_id.to_string())
                .collect();
            sfdc_to_pd::record_event(&change, linked_incidents)
        }
    };
    Ok(rules.evaluate(&input))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, Link, RecordRef};
    use crate::store::memory::MemoryStore;
    use chrono::Utc;

    #[tokio::test]
    async fn a_dead_lettered_webhook_previews_the_plan_the_current_rules_make() {
        let rules = Rules::from_yaml(
            "rulesets:\n  - name: s\n    rules:\n      - {name: ack, direction: pagerduty_to_salesforce, object: Case, conditions: [{field: pagerduty.event_type, operator: equals, value: acknowledge}], actions: [{set_fields: {Status: Working}}]}\n",
        )
        .unwrap();
        let links = MemoryStore::default();
        links
            .put_link(&Link {
                incident_id: "PINC".into(),
                record: RecordRef { object: "Case".into(), id: "5005g00000PREV1AAA".into() },
                created_at: Utc::now(),
                created_by_rule: None,
            })
            .await
            .unwrap();
        let body = serde_json::json!({"event": {"id": "E1", "event_type": "incident.acknowledged", "resource_type": "incident",
            "occurred_at": "2026-11-22T10:00:00Z", "data": {"id": "PINC", "type": "incident", "status": "acknowledged",
            "service": {"id": "PSVC", "type": "service_reference"}}}});
        let envelope = Envelope::new(
            Direction::PagerdutyToSalesforce,
            "E1",
            "c",
            Utc::now(),
            Utc::now(),
            QueuedEvent::PagerdutyWebhook { body: body.to_string(), webhook_id: None, subscription_id: None },
        );
        let evaluation = preview(&envelope, &rules, &links).await.unwrap();
        assert_eq!(evaluation.plan.len(), 1);
        assert!(evaluation.plan.to_string().contains("5005g00000PREV1AAA"), "{}", evaluation.plan);
    }
}
