//! Rule evaluation benchmark: one event against 100 rules of mixed conditions.
//! Target (issue 4): under 20 µs per event on one core.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use shared::rules::{Event, IncidentEvent, IncidentFacts, LinkedRecord, RecordEvent, Rules};
use std::fmt::Write;
use std::hint::black_box;

/// 100 rules: half per direction, with text, regex, list, numeric/date and change conditions.
fn hundred_rules() -> String {
    let mut doc = String::from("rulesets:\n");
    for set in 0..4 {
        writeln!(doc, "  - name: set-{set}\n    rules:").unwrap();
        for i in 0..25 {
            let n = set * 25 + i;
            let rule = match n % 4 {
                0 => format!(
                    "      - {{name: r{n}, direction: salesforce_to_pagerduty, object: Case, match: all, conditions: [{{field: Priority, operator: in, value: [Sev1, Critical]}}, {{field: Subject, operator: matches, value: 'down|fail{n}'}}, {{field: Account.Name, operator: starts_with, value: Acme}}], actions: [{{create_incident: {{service: PSVC{n}, urgency: high, title: {{prefix: '[Sev1] ', fields: [CaseNumber, Subject]}}}}}}]}}"
                ),
                1 => format!(
                    "      - {{name: r{n}, direction: salesforce_to_pagerduty, object: Case, match: any, conditions: [{{field: Status, operator: changed_to, value: Closed}}, {{field: CreatedDate, operator: greater_than, value: '2026-01-01T00:00:00Z'}}, {{field: Amount, operator: less_than, value: {n}}}], actions: [resolve, {{add_note: {{content: 'Case {{{{record.CaseNumber}}}} changed'}}}}]}}"
                ),
                2 => format!(
                    "      - {{name: r{n}, direction: pagerduty_to_salesforce, object: Case, conditions: [{{field: pagerduty.event_type, operator: equals, value: acknowledge}}, {{field: pagerduty.service_name, operator: contains, value: support}}], actions: [{{set_fields: {{Status: Working, Url{n}__c: '{{{{incident.html_url}}}}'}}}}]}}"
                ),
                _ => format!(
                    "      - {{name: r{n}, direction: pagerduty_to_salesforce, object: Case, match: any, conditions: [{{field: pagerduty.urgency, operator: equals, value: high}}, {{field: Status, operator: not_in, value: [Closed, Solved]}}], actions: [{{add_case_comment: {{body: '{{{{incident.title}}}}'}}}}]}}"
                ),
            };
            writeln!(doc, "{rule}").unwrap();
        }
    }
    doc
}

fn record_event() -> Event {
    let new = json!({
        "Id": "5005g00000DEMO1AAA", "CaseNumber": "00001026", "Subject": "Checkout down for EU",
        "Priority": "Sev1", "Status": "Closed", "Amount": 42, "CreatedDate": "2026-11-22T10:00:00.000+0000",
        "Account": {"Name": "Acme Corp"}
    });
    let mut old = new.clone();
    old["Status"] = json!("Working");
    Event::Record(RecordEvent {
        object: "Case".into(),
        id: "5005g00000DEMO1AAA".into(),
        new: new.as_object().unwrap().clone(),
        old: Some(old.as_object().unwrap().clone()),
        is_new: false,
        linked_incidents: vec!["Q1INC".into()],
    })
}

fn incident_event() -> Event {
    Event::Incident(IncidentEvent {
        event_type: "incident.acknowledged".into(),
        occurred_at: "2026-11-22T10:01:00Z".into(),
        incident: IncidentFacts {
            id: "Q1INC".into(),
            number: 101,
            title: "Checkout API latency above 2s".into(),
            status: "acknowledged".into(),
            urgency: "high".into(),
            priority: Some("P1".into()),
            service_id: "PSVC001".into(),
            service_name: "Customer Support".into(),
            escalation_policy_id: "PEP1".into(),
            escalation_policy_name: "Support".into(),
            html_url: "https://demo.pagerduty.com/incidents/Q1INC".into(),
            incident_key: None,
        },
        is_new: false,
        note: None,
        linked_records: vec![LinkedRecord {
            object: "Case".into(),
            id: "5005g00000DEMO1AAA".into(),
            fields: json!({"Status": "New"}).as_object().unwrap().clone(),
        }],
    })
}

fn bench(c: &mut Criterion) {
    let rules = Rules::from_yaml(&hundred_rules()).expect("bench rules are valid");
    assert_eq!(rules.rule_count(), 100);
    let record = record_event();
    let incident = incident_event();
    c.bench_function("evaluate_record_event_100_rules", |b| b.iter(|| rules.evaluate(black_box(&record))));
    c.bench_function("evaluate_incident_event_100_rules", |b| b.iter(|| rules.evaluate(black_box(&incident))));
    let text = hundred_rules();
    c.bench_function("load_100_rules", |b| b.iter(|| Rules::from_yaml(black_box(&text)).unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
