//! Rule evaluation benchmark: one event against 100 rules of mixed conditions.
//! Target (issue 4): under 20 µs per event on one core.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use shared::rules::{Event, IncidentEvent, IncidentFacts, LinkedRecord, RecordEvent, Rules};
use std::hint::black_box;

#[path = "support/mod.rs"]
mod support;
use support::hundred_rules;

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
            ..IncidentFacts::default()
        },
        is_new: false,
        note: None,
        status_update: None,
        agent: None,
        activity: Default::default(),
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
    // The handlers' path: the same plan without recording every condition's values.
    c.bench_function("plan_record_event_100_rules", |b| b.iter(|| rules.plan(black_box(&record))));
    c.bench_function("plan_incident_event_100_rules", |b| b.iter(|| rules.plan(black_box(&incident))));
    let text = hundred_rules();
    c.bench_function("load_100_rules", |b| b.iter(|| Rules::from_yaml(black_box(&text)).unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
