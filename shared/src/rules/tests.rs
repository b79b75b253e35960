//! Behaviour of the rule engine: operators, actions, skip reasons, plan merging, validation.

use serde_json::{Value, json};

use super::*;
use crate::model::RecordRef;
use crate::salesforce::case_comment::MAX_BYTES as MAX_CASE_COMMENT_BYTES;

const EXAMPLE: &str = include_str!("../../../events/rules.example.yaml");

fn rules(yaml: &str) -> Rules {
    match Rules::from_yaml(yaml) {
        Ok(r) => r,
        Err(e) => panic!("rules should load:\n{e}\n---\n{yaml}"),
    }
}

fn errors(yaml: &str) -> ValidationErrors {
    match Rules::from_yaml(yaml) {
        Ok(_) => panic!("rules should be rejected:\n{yaml}"),
        Err(e) => e,
    }
}

fn map(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().expect("object")
}

fn record(new: Value, old: Option<Value>, linked: &[&str]) -> Event {
    Event::Record(RecordEvent {
        object: "Case".into(),
        id: "5005g00000DEMO1AAA".into(),
        is_new: old.is_none(),
        new: map(new),
        old: old.map(map),
        linked_incidents: linked.iter().map(|s| s.to_string()).collect(),
    })
}

fn facts() -> IncidentFacts {
    IncidentFacts {
        id: "Q1INC".into(),
        number: 101,
        title: "Checkout API latency above 2s".into(),
        status: "acknowledged".into(),
        urgency: "high".into(),
        priority: Some("P1".into()),
        service_id: "PSVC001".into(),
        service_name: "Customer Support".into(),
        escalation_policy_id: "PEP0001".into(),
        escalation_policy_name: "Support On-Call".into(),
        html_url: "https://demo.pagerduty.com/incidents/Q1INC".into(),
        incident_key: None,
        assignees: "Dana Reyes, Sam Ortiz".into(),
        teams: "Payments".into(),
        incident_type: "major".into(),
        conference_url: "https://meet.example.com/checkout".into(),
        conference_number: String::new(),
        custom_fields: Default::default(),
    }
}

fn incident(event_type: &str, linked: Vec<LinkedRecord>) -> Event {
    Event::Incident(IncidentEvent {
        event_type: event_type.into(),
        occurred_at: "2026-11-22T10:01:00.000Z".into(),
        incident: facts(),
        is_new: event_type == "incident.triggered",
        note: None,
        status_update: None,
        agent: None,
        activity: Default::default(),
        linked_records: linked,
    })
}

fn case(id: &str, fields: Value) -> LinkedRecord {
    LinkedRecord { object: "Case".into(), id: id.into(), fields: map(fields) }
}

fn s2p(condition: &str) -> Rules {
    rules(&format!(
        "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: salesforce_to_pagerduty\n        object: Case\n        conditions:\n          - {condition}\n        actions: [acknowledge]\n"
    ))
}

fn p2s(condition: &str) -> Rules {
    rules(&format!(
        "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: pagerduty_to_salesforce\n        object: Case\n        conditions:\n          - {condition}\n        actions: [{{set_fields: {{Status: Working}}}}]\n"
    ))
}

fn first_check(ev: &Evaluation) -> &ConditionCheck {
    &ev.explanation.rules[0].conditions[0]
}

#[test]
fn every_operator_on_salesforce_fields() {
    let rec = json!({
        "Status": "New", "Subject": "Checkout FAILS for EU", "Priority": "Sev1", "Amount": 1500,
        "AmountText": "1500.5", "Empty": "", "Nothing": null, "Tags": [],
        "CreatedDate": "2026-11-22T10:00:00.000+0000", "Due": "2026-11-30",
        "Account": {"Name": "Acme Corp", "Owner": {"Email": "ops@acme.example"}}
    });
    let old = json!({"Status": "Working", "Subject": "Checkout FAILS for EU", "Priority": "Sev2", "Amount": 1500});
    // (condition, expected match)
    let table: &[(&str, bool)] = &[
        ("{field: Status, operator: equals, value: new}", true),
        ("{field: Status, operator: equals, value: new, case_sensitive: true}", false),
        ("{field: Status, operator: equals, value: New, case_sensitive: true}", true),
        ("{field: Missing, operator: equals, value: New}", false),
        ("{field: Status, operator: not_equals, value: Closed}", true),
        ("{field: Status, operator: not_equals, value: NEW}", false),
        ("{field: Missing, operator: not_equals, value: New}", true),
        ("{field: Subject, operator: contains, value: fails}", true),
        ("{field: Subject, operator: contains, value: fails, case_sensitive: true}", false),
        ("{field: Subject, operator: not_contains, value: refund}", true),
        ("{field: Subject, operator: not_contains, value: EU}", false),
        ("{field: Subject, operator: starts_with, value: checkout}", true),
        ("{field: Subject, operator: starts_with, value: EU}", false),
        ("{field: Subject, operator: ends_with, value: ' eu'}", true),
        ("{field: Subject, operator: ends_with, value: Checkout}", false),
        ("{field: Priority, operator: matches, value: '^sev[12]$'}", true),
        ("{field: Priority, operator: matches, value: '^sev[12]$', case_sensitive: true}", false),
        ("{field: Priority, operator: matches, value: '^Sev[34]$'}", false),
        ("{field: Priority, operator: in, value: [Sev1, Critical]}", true),
        ("{field: Priority, operator: in, value: [Sev2, Sev3]}", false),
        ("{field: Amount, operator: in, value: [1500, 2000]}", true),
        ("{field: Priority, operator: not_in, value: [Sev2, Sev3]}", true),
        ("{field: Priority, operator: not_in, value: [SEV1]}", false),
        ("{field: Empty, operator: is_empty}", true),
        ("{field: Nothing, operator: is_empty}", true),
        ("{field: Missing, operator: is_empty}", true),
        ("{field: Tags, operator: is_empty}", true),
        ("{field: Status, operator: is_empty}", false),
        ("{field: Status, operator: is_not_empty}", true),
        ("{field: Empty, operator: is_not_empty}", false),
        ("{field: Amount, operator: greater_than, value: 1000}", true),
        ("{field: Amount, operator: greater_than, value: 1500}", false),
        ("{field: AmountText, operator: greater_than, value: 1500}", true),
        ("{field: Amount, operator: less_than, value: 2000.5}", true),
        ("{field: Amount, operator: less_than, value: 10}", false),
        ("{field: Subject, operator: greater_than, value: 10}", false),
        ("{field: CreatedDate, operator: greater_than, value: '2026-11-22T09:59:59Z'}", true),
        ("{field: CreatedDate, operator: less_than, value: '2026-11-22T10:00:00.000+0000'}", false),
        ("{field: CreatedDate, operator: less_than, value: '2026-11-23'}", true),
        ("{field: Due, operator: greater_than, value: '2026-11-22T10:00:00.000+0000'}", true),
        ("{field: Status, operator: changed}", true),
        ("{field: Subject, operator: changed}", false),
        ("{field: Status, operator: changed_to, value: new}", true),
        ("{field: Priority, operator: changed_to, value: Sev2}", false),
        ("{field: Status, operator: changed_from, value: Working}", true),
        ("{field: Priority, operator: changed_from, value: Sev3}", false),
        ("{field: old.Priority, operator: equals, value: Sev2}", true),
        ("{field: new.Priority, operator: equals, value: Sev1}", true),
        ("{field: Account.Name, operator: equals, value: acme corp}", true),
        ("{field: Account.Owner.Email, operator: ends_with, value: '@acme.example'}", true),
        ("{field: Account.Missing.Name, operator: is_empty}", true),
    ];
    for (cond, want) in table {
        let ev = s2p(cond).evaluate(&record(rec.clone(), Some(old.clone()), &["Q1INC"]));
        let check = first_check(&ev);
        assert_eq!(check.matched, *want, "{cond}: saw {}", check.saw);
        assert_eq!(!ev.plan.is_empty(), *want, "{cond}: plan follows the condition");
    }
}

#[test]
fn change_operators_never_match_on_insert() {
    for cond in [
        "{field: Status, operator: changed}",
        "{field: Status, operator: changed_to, value: New}",
        "{field: Status, operator: changed_from, value: New}",
    ] {
        let ev = s2p(cond).evaluate(&record(json!({"Status": "New"}), None, &["Q1INC"]));
        assert!(!first_check(&ev).matched, "{cond}");
        assert_eq!(ev.explanation.rules[0].skipped, Some(SkipReason::ConditionsNotMet));
    }
}

#[test]
fn every_pagerduty_field_and_event_type_name() {
    let table: &[(&str, &str, bool)] = &[
        ("incident.triggered", "{field: pagerduty.event_type, operator: equals, value: trigger}", true),
        ("incident.acknowledged", "{field: pagerduty.event_type, operator: equals, value: acknowledge}", true),
        ("incident.resolved", "{field: pagerduty.event_type, operator: equals, value: resolve}", true),
        ("incident.reassigned", "{field: pagerduty.event_type, operator: equals, value: assign}", true),
        ("incident.escalated", "{field: pagerduty.event_type, operator: equals, value: escalate}", true),
        ("incident.delegated", "{field: pagerduty.event_type, operator: equals, value: delegate}", true),
        ("incident.priority_updated", "{field: pagerduty.event_type, operator: equals, value: custom}", true),
        ("incident.acknowledged", "{field: pagerduty.event_type, operator: equals, value: custom}", false),
        ("incident.annotated", "{field: pagerduty.event_type, operator: equals, value: incident.annotated}", true),
        (
            "incident.resolved",
            "{field: pagerduty.event_type, operator: in, value: [acknowledge, incident.resolved]}",
            true,
        ),
        ("incident.resolved", "{field: pagerduty.event_type, operator: not_in, value: [trigger, acknowledge]}", true),
        ("incident.acknowledged", "{field: pagerduty.title, operator: contains, value: latency}", true),
        ("incident.acknowledged", "{field: pagerduty.status, operator: equals, value: acknowledged}", true),
        ("incident.acknowledged", "{field: pagerduty.service, operator: equals, value: PSVC001}", true),
        ("incident.acknowledged", "{field: pagerduty.service_name, operator: starts_with, value: customer}", true),
        ("incident.acknowledged", "{field: pagerduty.escalation_policy, operator: equals, value: PEP0002}", false),
        (
            "incident.acknowledged",
            "{field: pagerduty.escalation_policy_name, operator: matches, value: 'on-call$'}",
            true,
        ),
        ("incident.acknowledged", "{field: pagerduty.priority, operator: in, value: [P1, P2]}", true),
        ("incident.acknowledged", "{field: pagerduty.urgency, operator: equals, value: low}", false),
        ("incident.acknowledged", "{field: pagerduty.note, operator: is_empty}", true),
        ("incident.acknowledged", "{field: pagerduty.status_update, operator: is_empty}", true),
        ("incident.acknowledged", "{field: pagerduty.assignees, operator: contains, value: sam ortiz}", true),
        ("incident.acknowledged", "{field: pagerduty.teams, operator: in, value: [Payments, Checkout]}", true),
        ("incident.acknowledged", "{field: pagerduty.incident_type, operator: equals, value: major}", true),
        ("incident.acknowledged", "{field: pagerduty.conference_url, operator: starts_with, value: 'https://'}", true),
        ("incident.acknowledged", "{field: pagerduty.agent, operator: is_empty}", true),
    ];
    for (event_type, cond, want) in table {
        let ev = p2s(cond).evaluate(&incident(event_type, vec![case("500A", json!({}))]));
        assert_eq!(first_check(&ev).matched, *want, "{event_type} / {cond}: saw {}", first_check(&ev).saw);
    }
}

#[test]
fn event_categories_map_v3_types() {
    assert_eq!(event_category("incident.triggered"), "trigger");
    assert_eq!(event_category("incident.reassigned"), "assign");
    assert_eq!(event_category("incident.custom_field_values.updated"), "custom_fields");
    assert_eq!(event_category("incident.responder.replied"), "responder");
    assert_eq!(event_category("incident.task.completed"), "task");
    assert_eq!(event_category("incident.action_invocation.terminated"), "automation_action");
    assert_eq!(event_category("incident.postmortem.published"), "custom", "a type PagerDuty adds later");
    assert_eq!(event_category("pagey.ping"), "other");
}

/// The facts of the other v3 events, in conditions and templates: a responder request, an
/// incident custom field by name (its JSON value), the fields that changed.
#[test]
fn activity_facts_and_custom_fields_are_read_by_conditions_and_templates() {
    let doc = |condition: &str| {
        rules(&format!(
            "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: pagerduty_to_salesforce\n        object: Case\n        conditions:\n          - {condition}\n        actions:\n          - add_case_comment: {{body: '{{{{event.responder}}}} ({{{{event.responder_state}}}}): {{{{event.responder_message}}}}; impact {{{{incident.custom_fields.customer_impact}}}}, changed {{{{event.custom_fields_changed}}}}'}}\n"
        ))
    };
    let Event::Incident(mut inc) = incident("incident.responder.added", vec![case("500A", json!({}))]) else {
        unreachable!()
    };
    inc.activity.responder = "Maeve Chen".into();
    inc.activity.responder_state = "pending".into();
    inc.activity.responder_message = "Can you join?".into();
    inc.activity.custom_fields_changed = "customer_impact".into();
    inc.incident.custom_fields = map(json!({"customer_impact": "EU down", "seats": 40}));
    let event = Event::Incident(inc);
    for (condition, want) in [
        ("{field: pagerduty.responder, operator: equals, value: maeve chen}", true),
        ("{field: pagerduty.responder_state, operator: equals, value: joined}", false),
        ("{field: pagerduty.custom_fields.customer_impact, operator: contains, value: EU}", true),
        ("{field: pagerduty.custom_fields.seats, operator: greater_than, value: 10}", true),
        ("{field: pagerduty.custom_fields.region, operator: is_empty}", true),
        ("{field: pagerduty.custom_fields_changed, operator: contains, value: customer_impact}", true),
        ("{field: pagerduty.workflow, operator: is_not_empty}", false),
    ] {
        let ev = doc(condition).evaluate(&event);
        assert_eq!(!ev.plan.is_empty(), want, "{condition}: saw {}", first_check(&ev).saw);
    }
    let ev = doc("{field: pagerduty.responder, operator: is_not_empty}").evaluate(&event);
    let Action::Salesforce(SalesforceAction::AddCaseComment { body, .. }) = &ev.plan.0[0].action else {
        panic!("a comment")
    };
    assert!(
        body.starts_with("[PagerDuty] Maeve Chen (pending): Can you join?; impact EU down, changed customer_impact"),
        "{body}"
    );
}

#[test]
fn a_custom_field_condition_names_its_field() {
    let e = errors(
        "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: pagerduty_to_salesforce\n        object: Case\n        conditions:\n          - {field: pagerduty.custom_fields., operator: is_empty}\n        actions:\n          - set_fields: {Status: Working}\n",
    );
    assert!(e.to_string().contains("name the custom field"), "{e}");
}

#[test]
fn match_any_needs_one_condition_and_all_needs_every_one() {
    let doc = |mode: &str| {
        rules(&format!(
            "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: salesforce_to_pagerduty\n        object: Case\n        match: {mode}\n        conditions:\n          - {{field: Status, operator: equals, value: New}}\n          - {{field: Priority, operator: equals, value: Sev1}}\n        actions: [acknowledge]\n"
        ))
    };
    let ev = record(json!({"Status": "New", "Priority": "Sev3"}), Some(json!({})), &["Q1INC"]);
    assert!(!doc("any").evaluate(&ev).plan.is_empty());
    assert!(doc("all").evaluate(&ev).plan.is_empty());
}

#[test]
fn explanation_records_field_operator_expected_seen_and_case_sensitivity() {
    let ev = s2p("{field: Status, operator: in, value: [Closed, Solved], case_sensitive: true}").evaluate(&record(
        json!({"Status": "New"}),
        Some(json!({})),
        &["Q1INC"],
    ));
    let c = first_check(&ev);
    assert_eq!(&*c.field, "Status");
    assert_eq!(c.operator, Operator::In);
    assert_eq!(c.expected.as_deref(), Some(&json!(["Closed", "Solved"])));
    assert_eq!(c.saw, json!("New"));
    assert!(c.case_sensitive && !c.matched);
    let text = ev.explanation.to_string();
    assert!(text.contains("skipped: conditions not met"), "{text}");
    assert!(text.contains("Status in [\"Closed\",\"Solved\"] (case-sensitive) saw \"New\""), "{text}");
    let json = serde_json::to_value(&ev.explanation).unwrap();
    assert_eq!(json["rules"][0]["skipped"]["reason"], "conditions_not_met");
    assert_eq!(json["rules"][0]["conditions"][0]["saw"], "New");
}

// ---- actions -------------------------------------------------------------------------------

fn s2p_action(action: &str, applies_to: &str) -> Rules {
    rules(&format!(
        "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: salesforce_to_pagerduty\n        object: Case\n        applies_to: {applies_to}\n        actions:\n          - {action}\n"
    ))
}

#[test]
fn every_pagerduty_action_targets_each_linked_incident() {
    let inc = |id: &str| crate::pagerduty::IncidentId::from(id);
    type Expect = Box<dyn Fn(crate::pagerduty::IncidentId) -> PagerdutyAction>;
    let table: Vec<(&str, Expect)> = vec![
        ("acknowledge", Box::new(|incident_id| PagerdutyAction::Acknowledge { incident_id })),
        (
            "{resolve: {resolution: 'Case {{record.CaseNumber}} closed'}}",
            Box::new(|incident_id| PagerdutyAction::Resolve {
                incident_id,
                resolution: Some("[Salesforce] Case 00001026 closed".into()),
            }),
        ),
        ("resolve", Box::new(|incident_id| PagerdutyAction::Resolve { incident_id, resolution: None })),
        (
            "{set_priority: {priority: P2}}",
            Box::new(|incident_id| PagerdutyAction::SetPriority { incident_id, priority: "P2".into() }),
        ),
        (
            "{set_urgency: {urgency: low}}",
            Box::new(|incident_id| PagerdutyAction::SetUrgency { incident_id, urgency: Urgency::Low }),
        ),
        (
            "{run_incident_workflow: {workflow: PWF1}}",
            Box::new(|incident_id| PagerdutyAction::RunIncidentWorkflow { incident_id, workflow_id: "PWF1".into() }),
        ),
        (
            "{run_automation_action: {action: PAA1}}",
            Box::new(|incident_id| PagerdutyAction::RunAutomationAction { incident_id, action_id: "PAA1".into() }),
        ),
        (
            "{reassign: {users: [PU1, PU2]}}",
            Box::new(|incident_id| PagerdutyAction::Reassign {
                incident_id,
                user_ids: vec!["PU1".into(), "PU2".into()],
                escalation_policy_id: None,
            }),
        ),
        (
            "{reassign: {escalation_policy: PEP9}}",
            Box::new(|incident_id| PagerdutyAction::Reassign {
                incident_id,
                user_ids: vec![],
                escalation_policy_id: Some("PEP9".into()),
            }),
        ),
        (
            "{add_responders: {users: [PU1], escalation_policies: [PEP9], message: 'Help on {{record.CaseNumber}}'}}",
            Box::new(|incident_id| PagerdutyAction::AddResponders {
                incident_id,
                user_ids: vec!["PU1".into()],
                escalation_policy_ids: vec!["PEP9".into()],
                message: Some("Help on 00001026".into()),
            }),
        ),
        (
            "{add_note: {content: 'Status is {{record.Status}}'}}",
            Box::new(|incident_id| PagerdutyAction::AddNote {
                incident_id,
                content: "[Salesforce] Status is Working".into(),
            }),
        ),
        (
            "{publish_status_update: {message: 'Case {{record.CaseNumber}}: {{record.Status}}'}}",
            Box::new(|incident_id| PagerdutyAction::PublishStatusUpdate {
                incident_id,
                message: "[Salesforce] Case 00001026: Working".into(),
                subject: None,
                html_message: None,
            }),
        ),
        (
            "{publish_status_update: {message: m, subject: 'Case {{record.CaseNumber}}', html_message: '<b>{{record.Status}}</b>'}}",
            Box::new(|incident_id| PagerdutyAction::PublishStatusUpdate {
                incident_id,
                message: "[Salesforce] m".into(),
                subject: Some("Case 00001026".into()),
                html_message: Some("<b>Working</b>".into()),
            }),
        ),
        (
            "{set_custom_fields: {impact: '{{record.Status}}', seats: 12, region: null}}",
            Box::new(|incident_id| PagerdutyAction::SetCustomFields {
                incident_id,
                fields: map(json!({"impact": "Working", "seats": 12, "region": null})),
            }),
        ),
    ];
    let ev = record(json!({"CaseNumber": "00001026", "Status": "Working"}), Some(json!({})), &["QA", "QB"]);
    for (action, want) in table {
        let plan = s2p_action(action, "all_linked").evaluate(&ev).plan;
        let got: Vec<Action> = plan.iter().map(|p| p.action.clone()).collect();
        assert_eq!(got, vec![want(inc("QA")).into(), want(inc("QB")).into()], "{action}");
        assert!(plan.iter().all(|p| p.rule == "r" && p.ruleset == "s"));
    }
}

#[test]
fn a_resolution_note_carries_the_marker_like_every_note_the_bridge_writes() {
    let ev = record(json!({"CaseNumber": "00001026"}), Some(json!({})), &["QA"]);
    let resolution = |template: &str| {
        let plan = s2p_action(&format!("{{resolve: {{resolution: '{template}'}}}}"), "all_linked").evaluate(&ev).plan;
        let Action::Pagerduty(PagerdutyAction::Resolve { resolution, .. }) = &plan.iter().next().unwrap().action else {
            panic!()
        };
        resolution.clone()
    };
    // It comes back as an incident.annotated webhook: the marker keeps it from becoming a comment.
    assert_eq!(resolution("Case {{record.CaseNumber}} closed").as_deref(), Some("[Salesforce] Case 00001026 closed"));
    assert_eq!(resolution("[Salesforce] already marked").as_deref(), Some("[Salesforce] already marked"));
    assert_eq!(resolution("{{record.Missing}}"), None, "a note rendered empty is not written");
}

#[test]
fn a_custom_field_from_one_record_field_keeps_its_type() {
    let ev = record(json!({"Seats__c": 12, "Urgent__c": true, "CaseNumber": "00001026"}), Some(json!({})), &["QA"]);
    let yaml = "{set_custom_fields: {seats: '{{record.Seats__c}}', urgent: '{{record.Urgent__c}}', label: 'Case {{record.CaseNumber}}', missing: '{{record.Nope__c}}'}}";
    let plan = s2p_action(yaml, "all_linked").evaluate(&ev).plan;
    let Action::Pagerduty(PagerdutyAction::SetCustomFields { fields, .. }) = &plan.0[0].action else { panic!() };
    assert_eq!(fields, &map(json!({"seats": 12, "urgent": true, "label": "Case 00001026", "missing": ""})));
}

#[test]
fn a_status_update_rendered_empty_is_not_published() {
    let ev = record(json!({}), Some(json!({})), &["QA"]);
    let ev = s2p_action("{publish_status_update: {message: '{{record.Missing}}'}}", "all_linked").evaluate(&ev);
    assert!(ev.plan.is_empty());
    assert_eq!(ev.explanation.rules[0].skipped, Some(SkipReason::NothingToDo));
}

#[test]
fn a_newer_events_custom_field_keeps_the_others_of_a_late_set_custom_fields() {
    let ev = record(json!({"Status": "Working"}), Some(json!({})), &["QA"]);
    let plan =
        s2p_action("{set_custom_fields: {impact: '{{record.Status}}', seats: 3}}", "all_linked").evaluate(&ev).plan;
    let at = chrono::Utc::now();
    let marks = [(
        crate::rules::plan::custom_field_mark(&crate::pagerduty::IncidentId::from("QA"), "impact"),
        at + chrono::Duration::seconds(1),
    )];
    let (kept, dropped) = plan.without_older_state(&marks.into_iter().collect(), at);
    assert_eq!(dropped, 1);
    let Action::Pagerduty(PagerdutyAction::SetCustomFields { fields, .. }) = &kept.0[0].action else { panic!() };
    assert_eq!(fields, &map(json!({"seats": 3})));
}

#[test]
fn publish_status_update_and_set_custom_fields_of_a_bad_shape_are_reported() {
    let errs = errors(
        "rulesets:
  - name: s
    rules:
      - name: r
        direction: salesforce_to_pagerduty
        object: Case
        actions:
          - publish_status_update: {subject: s}
          - publish_status_update: {message: m, subject: s}
          - set_custom_fields: {}
          - set_custom_fields: {Customer-Impact: x}
          - set_custom_fields: [impact]
",
    );
    has(&errs, 8, "ruleset \"s\" / rule \"r\" / action 1 (publish_status_update)", "`message`");
    has(&errs, 9, "ruleset \"s\" / rule \"r\" / action 2 (publish_status_update)", "together");
    has(&errs, 10, "ruleset \"s\" / rule \"r\" / action 3 (set_custom_fields)", "at least one");
    has(&errs, 11, "ruleset \"s\" / rule \"r\" / action 4 (set_custom_fields)", "not a PagerDuty custom field name");
    has(&errs, 12, "ruleset \"s\" / rule \"r\" / action 5 (set_custom_fields)", "mapping of FIELD: value");
}

#[test]
fn the_bridges_own_status_update_does_not_come_back_as_a_comment() {
    let doc = "rulesets:\n  - name: s\n    rules:\n      - {name: copy, direction: pagerduty_to_salesforce, object: Case, conditions: [{field: pagerduty.event_type, operator: equals, value: incident.status_update_published}], actions: [{add_case_comment: {body: '{{status_update.message}}'}}]}\n";
    let rules = Rules::from_yaml(doc).unwrap();
    let Event::Incident(mut ev) = incident("incident.status_update_published", vec![case("500A", json!({}))]) else {
        unreachable!()
    };
    ev.status_update = Some("[Salesforce] Customer notified".into());
    let own = rules.evaluate(&Event::Incident(ev.clone()));
    assert!(own.plan.is_empty());
    assert!(matches!(own.explanation.rules[0].skipped, Some(SkipReason::LoopPrevention { .. })));
    ev.status_update = Some("Rolling back".into());
    assert_eq!(rules.evaluate(&Event::Incident(ev)).plan.len(), 1, "someone else's is copied");
}

#[test]
fn pagerduty_actions_without_a_linked_incident_skip_the_rule_with_no_link() {
    let ev = s2p_action("acknowledge", "all_linked").evaluate(&record(json!({}), Some(json!({})), &[]));
    assert!(ev.plan.is_empty());
    assert_eq!(ev.explanation.rules[0].skipped, Some(SkipReason::NoLink));
    assert_eq!(ev.explanation.rules[0].actions[0].note.as_deref(), Some("no linked incident"));
}

const CREATE: &str = "{create_incident: {service: PSVC1, escalation_policy: PEP1, urgency: high, priority: P1, title: {prefix: '[Sev1] ', fields: [CaseNumber, Account.Name, Subject]}, body: 'Case {{record.CaseNumber}}: {{record.Description}}'}}";

#[test]
fn create_incident_builds_title_and_a_deterministic_incident_key() {
    let rec =
        json!({"CaseNumber": "00001026", "Subject": "Checkout down", "Account": {"Name": "Acme"}, "Description": "d"});
    let plan = s2p_action(CREATE, "new_only").evaluate(&record(rec.clone(), None, &[])).plan;
    assert_eq!(plan.len(), 1);
    let want = PagerdutyAction::CreateIncident {
        record: RecordRef { object: "Case".into(), id: "5005g00000DEMO1AAA".into() },
        service_id: "PSVC1".into(),
        escalation_policy_id: Some("PEP1".into()),
        urgency: Some(Urgency::High),
        priority: Some("P1".into()),
        title: "[Sev1] 00001026 - Acme - Checkout down".into(),
        body: Some("Case 00001026: d".into()),
        incident_key: incident_key("Case", "5005g00000DEMO1AAA", "r"),
    };
    assert_eq!(plan.0[0].action, Action::from(want));
    let again = s2p_action(CREATE, "new_only").evaluate(&record(rec, None, &[])).plan;
    assert_eq!(plan, again, "a retry plans the same incident_key");
    assert_ne!(incident_key("Case", "5005g00000DEMO1AAA", "r"), incident_key("Case", "5005g00000DEMO1AAA", "other"));
}

#[test]
fn create_incident_is_skipped_when_an_incident_is_linked() {
    let rules = s2p_action(CREATE, "all_linked");
    let ev = rules.evaluate(&record(json!({"CaseNumber": "1"}), Some(json!({})), &["QA"]));
    assert!(ev.plan.is_empty());
    assert_eq!(ev.explanation.rules[0].skipped, Some(SkipReason::NothingToDo));
    assert!(ev.explanation.rules[0].actions[0].note.as_deref().unwrap().contains("already linked"));
}

#[test]
fn incident_title_is_cut_to_1024_characters_on_a_character_boundary() {
    let prefix = "é".repeat(1000);
    let yaml = format!("{{create_incident: {{service: P1, title: {{prefix: '{prefix}', fields: [Subject]}}}}}}");
    let plan = s2p_action(&yaml, "new_only").evaluate(&record(json!({"Subject": "🔥".repeat(100)}), None, &[])).plan;
    let Action::Pagerduty(PagerdutyAction::CreateIncident { title, .. }) = &plan.0[0].action else { panic!("create") };
    assert_eq!(title.chars().count(), MAX_TITLE_CHARS);
    assert!(title.starts_with(&prefix) && title.ends_with('🔥'));
}

#[test]
fn empty_title_fields_fall_back_to_the_record() {
    let plan = s2p_action("{create_incident: {service: P1, title: {fields: [Subject]}}}", "new_only")
        .evaluate(&record(json!({"Subject": null}), None, &[]))
        .plan;
    let Action::Pagerduty(PagerdutyAction::CreateIncident { title, .. }) = &plan.0[0].action else { panic!("create") };
    assert_eq!(title, "Salesforce Case 5005g00000DEMO1AAA");
}

fn p2s_action(action: &str) -> Rules {
    rules(&format!(
        "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: pagerduty_to_salesforce\n        object: Case\n        actions:\n          - {action}\n"
    ))
}

#[test]
fn set_fields_renders_templates_on_each_linked_record_of_the_object() {
    let rules = p2s_action(
        "{set_fields: {Status: Working, Escalated__c: true, Url__c: '{{incident.html_url}}', Note__c: '{{incident.status}} at {{event.occurred_at}} {{note.content}}', Title__c: '{{incident.title}}'}}",
    );
    let linked = vec![
        case("500A", json!({})),
        case("500B", json!({})),
        LinkedRecord { object: "Escalation__c".into(), id: "a01".into(), fields: Default::default() },
    ];
    let plan = rules.evaluate(&incident("incident.acknowledged", linked)).plan;
    assert_eq!(plan.len(), 2, "only the Cases");
    let Action::Salesforce(SalesforceAction::SetFields { record, fields }) = &plan.0[1].action else {
        panic!("set_fields")
    };
    assert_eq!(record, &RecordRef { object: "Case".into(), id: "500B".into() });
    assert_eq!(
        Value::Object(fields.clone()),
        json!({"Status": "Working", "Escalated__c": true, "Url__c": "https://demo.pagerduty.com/incidents/Q1INC", "Note__c": "acknowledged at 2026-11-22T10:01:00.000Z ", "Title__c": "Checkout API latency above 2s"})
    );
}

#[test]
fn set_fields_without_a_linked_record_is_no_link() {
    let ev = p2s_action("{set_fields: {Status: Working}}").evaluate(&incident("incident.acknowledged", vec![]));
    assert_eq!(ev.explanation.rules[0].skipped, Some(SkipReason::NoLink));
}

#[test]
fn create_record_carries_an_external_id_and_links_unless_one_is_linked() {
    let rules = p2s_action(
        "{create_record: {object: Escalation__c, fields: {Name: '{{incident.title}}', Severity__c: 1}, external_id_field: PD_Key__c}}",
    );
    let plan = rules.evaluate(&incident("incident.triggered", vec![])).plan;
    let want_id = external_id("Q1INC", "r");
    assert_eq!(
        plan.0[0].action,
        Action::from(SalesforceAction::CreateRecord {
            object: "Escalation__c".into(),
            fields: map(
                json!({"Name": "Checkout API latency above 2s", "Severity__c": 1, "PD_Key__c": want_id.clone()})
            ),
            external_id_field: "PD_Key__c".into(),
            external_id: want_id,
            link: true,
            incident_id: "Q1INC".into(),
        })
    );
    let linked = vec![LinkedRecord { object: "Escalation__c".into(), id: "a01".into(), fields: Default::default() }];
    let ev = rules.evaluate(&incident("incident.triggered", linked));
    assert!(ev.plan.is_empty());
    assert!(ev.explanation.rules[0].actions[0].note.as_deref().unwrap().contains("already linked"));
}

#[test]
fn a_created_record_names_the_incident_and_rule_that_created_it_by_its_external_id() {
    let create = "{create_record: {object: Escalation__c, fields: {Name: x}, external_id_field: PD_Key__c}}";
    let rules = p2s_action(create);
    let fields = |key: &str| map(json!({"Name": "x", "PD_Key__c": key}));
    let created = rules.created_by(&"Escalation__c".into(), &fields(&external_id("Q1INC", "r")));
    assert_eq!(created.map(|(i, r)| (i.to_string(), r.to_string())), Some(("Q1INC".into(), "r".into())));
    assert_eq!(rules.created_by(&"Escalation__c".into(), &fields(&external_id("Q1INC", "another rule"))), None);
    assert_eq!(rules.created_by(&"Escalation__c".into(), &fields("Q1INC")), None, "no rule's hash");
    assert_eq!(rules.created_by(&"Case".into(), &fields(&external_id("Q1INC", "r"))), None, "another object");
    let unlinked = p2s_action(&create.replace("PD_Key__c}", "PD_Key__c, link: false}"));
    assert_eq!(unlinked.created_by(&"Escalation__c".into(), &fields(&external_id("Q1INC", "r"))), None, "link: false");
    assert_eq!(rules.creation_id_fields(&"Escalation__c".into()), ["PD_Key__c"]);
    assert!(rules.creation_id_fields(&"Case".into()).is_empty(), "no rule creates a Case");
    assert!(unlinked.creation_id_fields(&"Escalation__c".into()).is_empty(), "an unlinked creation names nothing");
}

#[test]
fn add_case_comment_prefixes_the_marker_and_splits_long_bodies() {
    let rules = p2s_action("{add_case_comment: {body: '{{note.content}}'}}");
    let Event::Incident(mut inc) = incident("incident.annotated", vec![case("500A", json!({}))]) else {
        unreachable!()
    };
    inc.note = Some("ä".repeat(4500)); // 9000 bytes
    let plan = rules.evaluate(&Event::Incident(inc)).plan;
    assert_eq!(plan.len(), 3);
    for p in plan.iter() {
        let Action::Salesforce(SalesforceAction::AddCaseComment { case_id, body }) = &p.action else {
            panic!("comment")
        };
        assert_eq!(case_id, "500A");
        assert!(body.starts_with("[PagerDuty] ") && body.len() <= MAX_CASE_COMMENT_BYTES);
    }
}

#[test]
fn a_published_status_update_can_be_written_onto_the_case_as_a_comment_and_a_field() {
    let rules = rules(
        "rulesets:
  - name: s
    rules:
      - name: status-to-case
        direction: pagerduty_to_salesforce
        object: Case
        conditions: [{field: pagerduty.status_update, operator: is_not_empty}]
        actions:
          - {add_case_comment: {body: 'Status update: {{status_update.message}}'}}
          - {set_fields: {Latest_Status__c: '{{status_update.message}}'}}
",
    );
    let Event::Incident(mut inc) = incident("incident.status_update_published", vec![case("500A", json!({}))]) else {
        unreachable!()
    };
    let ack = rules.evaluate(&Event::Incident(inc.clone()));
    assert!(ack.plan.is_empty(), "no status update, no action");
    inc.status_update = Some("Fix deployed; watching error rates".into());
    let plan = rules.evaluate(&Event::Incident(inc)).plan;
    let actions: Vec<&Action> = plan.iter().map(|p| &p.action).collect();
    assert!(
        matches!(actions[0], Action::Salesforce(SalesforceAction::AddCaseComment { case_id, body })
        if case_id == "500A" && body == "[PagerDuty] Status update: Fix deployed; watching error rates"),
        "{actions:?}"
    );
    assert!(
        matches!(actions[1], Action::Salesforce(SalesforceAction::SetFields { fields, .. })
        if fields["Latest_Status__c"] == "Fix deployed; watching error rates"),
        "{actions:?}"
    );
}

#[test]
fn who_is_on_it_and_where_they_meet_are_template_variables() {
    let rules = p2s_action(
        "{add_case_comment: {body: '{{incident.incident_type}} incident, assigned to {{incident.assignees}} ({{incident.teams}}); bridge {{incident.conference_url}}; by {{event.agent}}'}}",
    );
    let Event::Incident(mut inc) = incident("incident.reassigned", vec![case("500A", json!({}))]) else {
        unreachable!()
    };
    inc.agent = Some("Dana Reyes".into());
    let plan = rules.evaluate(&Event::Incident(inc)).plan;
    let Action::Salesforce(SalesforceAction::AddCaseComment { body, .. }) = &plan.0[0].action else {
        panic!("comment")
    };
    assert_eq!(
        body,
        "[PagerDuty] major incident, assigned to Dana Reyes, Sam Ortiz (Payments); bridge https://meet.example.com/checkout; by Dana Reyes"
    );
}

// ---- skip reasons and loop prevention --------------------------------------------------------

#[test]
fn skip_reasons_are_explained() {
    let doc = "rulesets:
  - name: off
    enabled: false
    rules:
      - {name: disabled, direction: salesforce_to_pagerduty, object: Case, actions: [acknowledge]}
  - name: on
    rules:
      - {name: other-direction, direction: pagerduty_to_salesforce, object: Case, actions: [{set_fields: {A: b}}]}
      - {name: other-object, direction: salesforce_to_pagerduty, object: Lead, actions: [acknowledge]}
      - {name: new-only, direction: salesforce_to_pagerduty, object: Case, applies_to: new_only, actions: [{create_incident: {service: P, title: {prefix: x}}}]}
      - {name: ran, direction: salesforce_to_pagerduty, object: Case, actions: [acknowledge]}
";
    let ev = rules(doc).evaluate(&record(json!({}), Some(json!({})), &["QA"]));
    let reasons: Vec<Option<SkipReason>> = ev.explanation.rules.iter().map(|r| r.skipped.clone()).collect();
    assert_eq!(
        reasons,
        vec![
            Some(SkipReason::RulesetDisabled),
            Some(SkipReason::OtherDirection),
            Some(SkipReason::OtherObject { object: "Lead".into() }),
            Some(SkipReason::NotNew),
            None,
        ]
    );
    assert!(ev.explanation.rules[4].ran);
}

#[test]
fn bridge_written_comments_and_notes_are_not_forwarded() {
    let comment_rule = rules(
        "rulesets:\n  - name: s\n    rules:\n      - {name: c, direction: salesforce_to_pagerduty, object: CaseComment, applies_to: new_only, actions: [{add_note: {content: '{{record.CommentBody}}'}}]}\n",
    );
    let ev = comment_rule.evaluate(&Event::Record(RecordEvent {
        object: "CaseComment".into(),
        id: "00a1".into(),
        new: map(json!({"CommentBody": "[PagerDuty] Incident resolved"})),
        old: None,
        is_new: true,
        linked_incidents: vec!["QA".into()],
    }));
    assert!(ev.plan.is_empty());
    assert!(matches!(ev.explanation.rules[0].skipped, Some(SkipReason::LoopPrevention { .. })));

    let note_rule = p2s_action("{add_case_comment: {body: '{{note.content}}'}}");
    let Event::Incident(mut inc) = incident("incident.annotated", vec![case("500A", json!({}))]) else {
        unreachable!()
    };
    inc.note = Some("[Salesforce] Case comment: hi".into());
    let ev = note_rule.evaluate(&Event::Incident(inc));
    assert!(ev.plan.is_empty());
    assert!(matches!(ev.explanation.rules[0].skipped, Some(SkipReason::LoopPrevention { .. })));
}

#[test]
fn new_only_incident_rules_run_only_on_trigger() {
    let doc = "rulesets:\n  - name: s\n    rules:\n      - {name: r, direction: pagerduty_to_salesforce, object: Case, applies_to: new_only, actions: [{set_fields: {A: b}}]}\n";
    let r = rules(doc);
    assert_eq!(r.evaluate(&incident("incident.triggered", vec![case("500A", json!({}))])).plan.len(), 1);
    let ev = r.evaluate(&incident("incident.acknowledged", vec![case("500A", json!({}))]));
    assert_eq!(ev.explanation.rules[0].skipped, Some(SkipReason::NotNew));
}

#[test]
fn salesforce_conditions_in_incident_rules_pick_the_matching_linked_records() {
    let r = p2s("{field: Status, operator: not_equals, value: Closed}");
    let linked = vec![case("500A", json!({"Status": "New"})), case("500B", json!({"Status": "Closed"}))];
    let ev = r.evaluate(&incident("incident.acknowledged", linked));
    let targets: Vec<String> = ev.plan.iter().map(|p| p.action.target()).collect();
    assert_eq!(targets, vec!["Case 500A"]);
    assert_eq!(ev.explanation.rules[0].conditions.len(), 2, "one check per linked record");
    assert_eq!(ev.explanation.rules[0].conditions[1].record.as_deref(), Some("500B"));
}

// ---- plan ----------------------------------------------------------------------------------

#[test]
fn set_fields_on_one_record_merge_and_the_later_rule_wins() {
    let doc = "rulesets:
  - name: s
    rules:
      - {name: first, direction: pagerduty_to_salesforce, object: Case, actions: [{set_fields: {Status: Working, A: '1'}}]}
      - {name: second, direction: pagerduty_to_salesforce, object: Case, actions: [{set_fields: {Status: Escalated, B: '2'}}]}
";
    let plan = rules(doc).evaluate(&incident("incident.acknowledged", vec![case("500A", json!({}))])).plan;
    assert_eq!(plan.len(), 1, "one write per record");
    assert_eq!(plan.0[0].rule, "first, second");
    let Action::Salesforce(SalesforceAction::SetFields { fields, .. }) = &plan.0[0].action else {
        panic!("set_fields")
    };
    assert_eq!(Value::Object(fields.clone()), json!({"Status": "Escalated", "A": "1", "B": "2"}));
}

#[test]
fn identical_case_comments_from_several_rules_are_added_once_per_linked_case() {
    let doc = "rulesets:
  - name: s
    rules:
      - {name: a, direction: pagerduty_to_salesforce, object: Case, actions: [{add_case_comment: {body: '{{incident.title}}'}}]}
      - {name: b, direction: pagerduty_to_salesforce, object: Case, actions: [{add_case_comment: {body: '{{incident.title}}'}}]}
      - {name: c, direction: pagerduty_to_salesforce, object: Case, actions: [{add_case_comment: {body: 'Owner: {{incident.escalation_policy_name}}'}}]}
";
    let linked = vec![case("500A", json!({})), case("500B", json!({}))];
    let plan = rules(doc).plan(&incident("incident.acknowledged", linked)).plan;
    let comments: Vec<(&str, &str, &str)> = plan
        .iter()
        .map(|p| match &p.action {
            Action::Salesforce(SalesforceAction::AddCaseComment { case_id, body }) => {
                (p.rule.as_str(), case_id.as_str(), body.as_str())
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        comments,
        vec![
            ("a", "500A", "[PagerDuty] Checkout API latency above 2s"),
            ("a", "500B", "[PagerDuty] Checkout API latency above 2s"),
            ("c", "500A", "[PagerDuty] Owner: Support On-Call"),
            ("c", "500B", "[PagerDuty] Owner: Support On-Call"),
        ]
    );
}

#[test]
fn identical_actions_from_several_rules_are_planned_once_in_order() {
    let doc = "rulesets:
  - name: s
    rules:
      - {name: a, direction: salesforce_to_pagerduty, object: Case, actions: [acknowledge, resolve]}
      - {name: b, direction: salesforce_to_pagerduty, object: Case, actions: [acknowledge, {set_urgency: {urgency: high}}]}
      - {name: c, direction: salesforce_to_pagerduty, object: Case, applies_to: new_only, actions: [{create_incident: {service: P, title: {prefix: x}}}]}
      - {name: d, direction: salesforce_to_pagerduty, object: Case, applies_to: new_only, actions: [{create_incident: {service: Q, title: {prefix: y}}}]}
";
    let r = rules(doc);
    let plan = r.evaluate(&record(json!({}), Some(json!({})), &["QA"])).plan;
    let names: Vec<(&str, &str)> = plan.iter().map(|p| (p.rule.as_str(), p.action.name())).collect();
    assert_eq!(names, vec![("a", "acknowledge"), ("a", "resolve"), ("b", "set_urgency")]);
    let plan = r.evaluate(&record(json!({}), None, &[])).plan;
    assert_eq!(plan.len(), 1, "two rules never create two incidents for one record");
    assert_eq!(plan.0[0].rule, "c");
}

#[test]
fn the_example_rules_load_and_cover_the_case_flows() {
    let r = rules(EXAMPLE);
    assert_eq!(r.rulesets.len(), 2);
    let sev1 = record(
        json!({"CaseNumber": "00001026", "Subject": "Checkout down", "Priority": "Sev1", "Status": "New", "Account": {"Name": "Acme"}}),
        None,
        &[],
    );
    let plan = r.evaluate(&sev1).plan;
    assert!(
        matches!(&plan.0[0].action, Action::Pagerduty(PagerdutyAction::CreateIncident { urgency: Some(Urgency::High), title, .. }) if title == "[Sev1] 00001026 - Acme - Checkout down")
    );
    let ack = r.evaluate(&incident("incident.acknowledged", vec![case("500A", json!({"Status": "New"}))])).plan;
    assert!(
        matches!(&ack.0[0].action, Action::Salesforce(SalesforceAction::SetFields { fields, .. }) if fields["Status"] == "Working")
    );
}

// ---- validation ----------------------------------------------------------------------------

fn has(errs: &ValidationErrors, line: usize, path: &str, text: &str) {
    assert!(
        errs.iter().any(|e| e.line == line && e.path == path && e.message.contains(text)),
        "expected line {line}, path {path:?}, message containing {text:?}; got:\n{errs}"
    );
}

#[test]
fn unknown_fields_and_operators_are_reported_with_path_and_line() {
    let errs = errors(
        "rulesets:
  - name: s
    rules:
      - name: r
        direction: salesforce_to_pagerduty
        object: Case
        actoins: [acknowledge]
        conditions:
          - field: Status
            operator: equal
            value: New
          - field: pagerduty.colour
            operator: equals
            value: x
",
    );
    has(&errs, 7, "ruleset \"s\" / rule \"r\"", "unknown field `actoins`");
    has(&errs, 4, "ruleset \"s\" / rule \"r\"", "missing required field `actions`");
    has(&errs, 10, "ruleset \"s\" / rule \"r\" / condition 1", "unknown operator `equal`");
    has(&errs, 12, "ruleset \"s\" / rule \"r\" / condition 2", "has no PagerDuty incident");
}

#[test]
fn a_regex_that_does_not_compile_is_reported() {
    let errs = errors(
        "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: salesforce_to_pagerduty\n        object: Case\n        conditions:\n          - {field: Subject, operator: matches, value: '(unclosed'}\n        actions: [acknowledge]\n",
    );
    has(&errs, 8, "ruleset \"s\" / rule \"r\" / condition 1", "does not compile");
}

#[test]
fn actions_that_need_a_link_the_rule_cannot_have_are_reported() {
    let errs = errors(
        "rulesets:
  - name: s
    rules:
      - name: r
        direction: salesforce_to_pagerduty
        object: Case
        applies_to: new_only
        actions:
          - acknowledge
          - set_fields: {Status: x}
      - name: p
        direction: pagerduty_to_salesforce
        object: Lead
        actions:
          - resolve
          - add_case_comment: {body: hi}
",
    );
    has(&errs, 9, "ruleset \"s\" / rule \"r\" / action 1 (acknowledge)", "cannot have one yet");
    has(&errs, 10, "ruleset \"s\" / rule \"r\" / action 2 (set_fields)", "acts on Salesforce");
    has(&errs, 15, "ruleset \"s\" / rule \"p\" / action 1 (resolve)", "acts on PagerDuty");
    has(&errs, 16, "ruleset \"s\" / rule \"p\" / action 2 (add_case_comment)", "object: Case");
}

#[test]
fn missing_required_fields_and_duplicate_names_are_reported() {
    let errs = errors(
        "rulesets:
  - name: s
    rules:
      - direction: salesforce_to_pagerduty
        object: Case
        actions: [acknowledge]
      - name: dup
        direction: salesforce_to_pagerduty
        object: Case
        actions: [{set_priority: {}}]
  - name: s
    rules:
      - name: dup
        direction: pagerduty_to_salesforce
        actions: [{set_fields: {A: b}}]
",
    );
    has(&errs, 4, "ruleset \"s\" / rule 1", "missing required field `name`");
    has(&errs, 10, "ruleset \"s\" / rule \"dup\" / action 1 (set_priority)", "missing required field `priority`");
    has(&errs, 13, "ruleset \"s\" / rule \"dup\"", "missing required field `object`");
    has(&errs, 11, "ruleset \"s\"", "duplicate ruleset name");
}

#[test]
fn duplicate_rule_names_across_rulesets_are_reported() {
    let errs = errors(
        "rulesets:
  - name: a
    rules:
      - {name: dup, direction: salesforce_to_pagerduty, object: Case, actions: [acknowledge]}
  - name: b
    rules:
      - {name: dup, direction: salesforce_to_pagerduty, object: Case, actions: [acknowledge]}
",
    );
    has(&errs, 7, "ruleset \"b\" / rule \"dup\"", "duplicate rule name");
}

#[test]
fn title_templates_over_the_limits_are_reported() {
    let long = "x".repeat(1025);
    let errs = errors(&format!(
        "rulesets:
  - name: s
    rules:
      - name: r
        direction: salesforce_to_pagerduty
        object: Case
        applies_to: new_only
        actions:
          - create_incident:
              service: P1
              title:
                prefix: {long}
                fields: [A, B, C, D]
"
    ));
    has(&errs, 12, "ruleset \"s\" / rule \"r\" / action 1 (create_incident)", "1025 characters; the limit is 1024");
    has(&errs, 13, "ruleset \"s\" / rule \"r\" / action 1 (create_incident)", "4 fields; the limit is 3");
}

#[test]
fn wrong_value_types_are_reported() {
    let errs = errors(
        "rulesets:
  - name: s
    enabled: yes please
    rules:
      - name: r
        direction: salesforce_to_pagerduty
        object: Case
        conditions:
          - {field: Status, operator: in, value: Closed}
          - {field: Status, operator: equals, value: [a, b]}
          - {field: Amount, operator: greater_than, value: lots}
          - {field: Status, operator: is_empty, value: x}
        actions: [{set_urgency: {urgency: medium}}]
",
    );
    has(&errs, 3, "ruleset \"s\"", "`enabled` must be true or false");
    has(&errs, 9, "ruleset \"s\" / rule \"r\" / condition 1", "needs a list");
    has(&errs, 10, "ruleset \"s\" / rule \"r\" / condition 2", "single string or number");
    has(&errs, 11, "ruleset \"s\" / rule \"r\" / condition 3", "number or an ISO date");
    has(&errs, 12, "ruleset \"s\" / rule \"r\" / condition 4", "takes no `value`");
    has(&errs, 13, "ruleset \"s\" / rule \"r\" / action 1 (set_urgency)", "high or low");
}

#[test]
fn templates_and_change_operators_are_checked_against_the_direction() {
    let errs = errors(
        "rulesets:
  - name: s
    rules:
      - name: p
        direction: pagerduty_to_salesforce
        object: Case
        conditions:
          - {field: Status, operator: changed}
          - {field: old.Status, operator: equals, value: x}
        actions:
          - set_fields: {Url__c: '{{incident.url}}', Case__c: '{{record.Id}}'}
",
    );
    has(&errs, 8, "ruleset \"s\" / rule \"p\" / condition 1", "compares a Salesforce record's old and new values");
    has(&errs, 9, "ruleset \"s\" / rule \"p\" / condition 2", "old values exist only");
    has(
        &errs,
        11,
        "ruleset \"s\" / rule \"p\" / action 1 (set_fields)",
        "unknown template variable `{{incident.url}}`",
    );
    has(
        &errs,
        11,
        "ruleset \"s\" / rule \"p\" / action 1 (set_fields)",
        "`{{record.Id}}` exists only in salesforce_to_pagerduty",
    );
}

#[test]
fn every_problem_is_reported_at_once_one_per_line() {
    let errs = errors(
        "rulesets:
  - name: s
    rules:
      - {name: a, direction: sideways, object: Case, actions: [acknowledge]}
      - {name: b, direction: salesforce_to_pagerduty, object: Case, match: most, actions: [explode]}
      - {name: c, direction: salesforce_to_pagerduty, object: Case, applies_to: later, actions: []}
",
    );
    assert_eq!(errs.len(), 5, "{errs}");
    let text = errs.to_string();
    assert_eq!(text.lines().count(), 5);
    assert!(text.lines().all(|l| l.starts_with("line ")), "{text}");
    has(&errs, 4, "ruleset \"s\" / rule \"a\"", "unknown direction `sideways`");
    has(&errs, 5, "ruleset \"s\" / rule \"b\"", "unknown match mode `most`");
    has(&errs, 5, "ruleset \"s\" / rule \"b\" / action 1", "unknown action `explode`");
    has(&errs, 6, "ruleset \"s\" / rule \"c\"", "unknown applies_to `later`");
    has(&errs, 6, "ruleset \"s\" / rule \"c\"", "`actions` is empty");
}

#[test]
fn yaml_syntax_errors_and_wrong_shapes_have_lines() {
    let errs = errors("rulesets:\n  - name: s\n    rules: [\n");
    assert_eq!(errs.len(), 1);
    assert!(errs.0[0].message.starts_with("YAML syntax error"), "{errs}");
    let errs = errors("rulesets: {name: s}\n");
    has(&errs, 1, "document", "`rulesets` must be a list");
    let errs = errors("");
    has(&errs, 1, "document", "expected a mapping");
}

// ---- properties ----------------------------------------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
            ".{0,12}".prop_map(Value::String),
            prop_oneof![
                Just("Sev1"),
                Just("Closed"),
                Just("2026-11-22T10:00:00.000+0000"),
                Just("[PagerDuty] x"),
                Just("")
            ]
            .prop_map(|s| Value::String(s.into())),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(field_name(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn field_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Status".to_string()),
            Just("Priority".to_string()),
            Just("Subject".to_string()),
            Just("Account".to_string()),
            Just("Name".to_string()),
            Just("CommentBody".to_string()),
            Just("CaseNumber".to_string()),
            "[A-Za-z_]{1,8}",
        ]
    }

    fn record_map() -> impl Strategy<Value = serde_json::Map<String, Value>> {
        prop::collection::btree_map(field_name(), json_value(), 0..8).prop_map(|m| m.into_iter().collect())
    }

    fn event() -> impl Strategy<Value = Event> {
        let record = (
            prop_oneof![Just("Case".to_string()), Just("CaseComment".to_string()), "[A-Za-z]{1,6}"],
            ".{0,18}",
            record_map(),
            prop::option::of(record_map()),
            any::<bool>(),
            prop::collection::vec(".{0,6}", 0..3),
        )
            .prop_map(|(object, id, new, old, is_new, linked_incidents)| {
                Event::Record(RecordEvent { object: object.into(), id, new, old, is_new, linked_incidents })
            });
        let incident = (
            prop_oneof![
                Just("incident.triggered".to_string()),
                Just("incident.acknowledged".to_string()),
                Just("incident.resolved".to_string()),
                Just("incident.annotated".to_string()),
                ".{0,20}"
            ],
            ".{0,30}",
            ".{0,12}",
            prop::option::of(".{0,12}"),
            any::<bool>(),
            prop::option::of(".{0,40}"),
            prop::collection::vec(
                (prop_oneof![Just("Case".to_string()), ".{0,6}"], ".{0,6}", record_map())
                    .prop_map(|(object, id, fields)| LinkedRecord { object: object.into(), id, fields }),
                0..3,
            ),
        )
            .prop_map(|(event_type, title, status, priority, is_new, note, linked_records)| {
                Event::Incident(IncidentEvent {
                    event_type,
                    occurred_at: "2026-11-22T10:00:00Z".into(),
                    incident: IncidentFacts { title, status, priority, ..facts() },
                    is_new,
                    note,
                    status_update: None,
                    agent: None,
                    activity: Default::default(),
                    linked_records,
                })
            });
        prop_oneof![record, incident]
    }

    /// Incident events with linked Cases whose fields are the ones the rules test, with the
    /// values that decide them (the general generator rarely hits `Status: Closed`).
    fn case_event() -> impl Strategy<Value = Event> {
        let pick = |values: &'static [&'static str]| prop::option::of(prop::sample::select(values));
        let case = (pick(&["Closed", "New", "Working"]), pick(&["Sev1", "High"])).prop_map(|(status, priority)| {
            let mut fields = serde_json::Map::new();
            status.map(|s| fields.insert("Status".into(), Value::from(s)));
            priority.map(|p| fields.insert("Priority".into(), Value::from(p)));
            LinkedRecord { object: "Case".into(), id: "500C".into(), fields }
        });
        const TYPES: &[&str] =
            &["incident.triggered", "incident.acknowledged", "incident.resolved", "incident.annotated"];
        (
            prop::sample::select(TYPES),
            pick(&["P1", "P2"]),
            any::<bool>(),
            prop::option::of(prop_oneof![Just("Rolled back".to_string()), Just("[Salesforce] x".to_string())]),
            prop::collection::vec(case, 0..3),
        )
            .prop_map(|(event_type, priority, is_new, note, linked_records)| {
                Event::Incident(IncidentEvent {
                    event_type: event_type.to_string(),
                    occurred_at: "2026-11-22T10:00:00Z".into(),
                    incident: IncidentFacts { priority: priority.map(str::to_string), ..facts() },
                    is_new,
                    note,
                    status_update: None,
                    agent: None,
                    activity: Default::default(),
                    linked_records,
                })
            })
    }

    const MIXED: &str = "rulesets:
  - name: mixed
    rules:
      - {name: a, direction: salesforce_to_pagerduty, object: Case, match: any, conditions: [{field: Subject, operator: matches, value: 'down|fail'}, {field: Account.Name, operator: starts_with, value: A}, {field: CreatedDate, operator: greater_than, value: '2026-01-01'}], actions: [acknowledge, {add_note: {content: '{{record.Subject}}'}}]}
      - {name: b, direction: salesforce_to_pagerduty, object: Case, conditions: [{field: Status, operator: changed}, {field: Priority, operator: changed_from, value: Sev2}, {field: Amount, operator: less_than, value: 5}], actions: [{set_urgency: {urgency: low}}]}
      - {name: c, direction: pagerduty_to_salesforce, object: Case, conditions: [{field: pagerduty.event_type, operator: in, value: [custom, trigger]}, {field: Status, operator: not_in, value: [Closed]}], actions: [{set_fields: {Status: '{{incident.status}}'}}, {add_case_comment: {body: '{{note.content}} {{incident.title}}'}}]}
      - {name: d, direction: pagerduty_to_salesforce, object: Case, conditions: [{field: pagerduty.note, operator: is_not_empty}], actions: [{create_record: {object: Task, fields: {Subject: '{{incident.title}}'}}}]}
      - {name: e, direction: pagerduty_to_salesforce, object: Case, match: any, conditions: [{field: pagerduty.priority, operator: is_empty}, {field: Status, operator: equals, value: Closed}], actions: [{set_fields: {Priority: High}}]}
";

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn evaluation_never_panics_and_is_deterministic(ev in event()) {
            for doc in [EXAMPLE, MIXED] {
                let r = Rules::from_yaml(doc).unwrap();
                let a = r.evaluate(&ev);
                let b = r.evaluate(&ev);
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(a.explanation.rules.len(), r.rule_count());
                // The handlers' fast path plans exactly the same, with the same rules run or skipped.
                let fast = r.plan(&ev);
                prop_assert_eq!(&fast.plan, &a.plan);
                let decisions = |e: &Evaluation| e.explanation.rules.iter().map(|x| (x.ran, x.skipped.clone())).collect::<Vec<_>>();
                prop_assert_eq!(decisions(&fast), decisions(&a));
                let _ = a.explanation.to_string();
                let _ = a.plan.to_string();
                for p in a.plan.iter() {
                    if let Action::Pagerduty(PagerdutyAction::CreateIncident { title, .. }) = &p.action {
                        prop_assert!(title.chars().count() <= MAX_TITLE_CHARS);
                    }
                    if let Action::Salesforce(SalesforceAction::AddCaseComment { body, .. }) = &p.action {
                        prop_assert!(body.len() <= MAX_CASE_COMMENT_BYTES);
                    }
                }
            }
        }

        #[test]
        fn reading_only_the_fields_rules_can_need_plans_the_same(ev in prop_oneof![event(), case_event()]) {
            let Event::Incident(full) = &ev else { return Ok(()) };
            for doc in [EXAMPLE, MIXED] {
                let r = Rules::from_yaml(doc).unwrap();
                // What the handler fetches: nothing, or only the fields some open rule reads.
                let mut fetched = full.clone();
                for record in &mut fetched.linked_records {
                    let needed = r.record_fields_needed(full, &record.object);
                    record.fields.retain(|name, _| needed.iter().any(|n| n.eq_ignore_ascii_case(name)));
                }
                prop_assert_eq!(r.plan(&Event::Incident(fetched)).plan, r.plan(&ev).plan);
            }
        }

        #[test]
        fn arbitrary_text_never_panics_the_loader(text in ".{0,200}") {
            let _ = Rules::from_yaml(&text);
        }
    }
}
