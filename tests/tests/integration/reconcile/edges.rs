//! Edges a review found: a second of PagerDuty's log busier than offset paging reaches, the
//! first run after an upgrade (since when notes are marked, recorded once, on DynamoDB too), and
//! status updates on two Cases or by the bridge itself.

use chrono::DurationRound;
use sim::fixtures::case_of;
use sim::harness::{delivery, incident_data};

use super::*;

const NOTE_RULES: &str = "rulesets:\n  - name: notes\n    enabled: true\n    rules:\n      - name: note-becomes-comment\n        direction: pagerduty_to_salesforce\n        object: Case\n        conditions:\n          - {field: pagerduty.event_type, operator: equals, value: incident.annotated}\n        actions:\n          - add_case_comment: {body: \"{{note.content}}\"}\n";

/// Links `case` to `incident` as the bridge did before it went down.
async fn link_case(h: &Harness, incident: &str, case: &str) {
    let link = Link {
        incident_id: incident.to_string().into(),
        record: RecordRef { object: "Case".into(), id: case.to_string().into() },
        created_at: Utc::now(),
        created_by_rule: None,
    };
    h.store.put_link(&link).await.unwrap();
}

fn comments(h: &Harness, case: &str) -> Vec<String> {
    h.sf.records("CaseComment")
        .into_iter()
        .filter(|c| c["ParentId"] == case)
        .map(|c| c["CommentBody"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn comments_saying(h: &Harness, case: &str, text: &str) -> usize {
    comments(h, case).iter().filter(|b| b.contains(text)).count()
}

/// One busy second holds more entries than offset paging reaches (10,050 in one second): a lost
/// note written in another second of the window must still be repaired; the busy second must
/// not fail the whole PagerDuty side (and, with the cursor held, every run after it).
#[tokio::test]
async fn a_second_busier_than_paging_reaches_does_not_hide_a_lost_note_in_another_second() {
    let h = Harness::start(NOTE_RULES).await;
    let who = oncall(&h);
    let (incident, case) = linked_pair(&h, &who, 1).await;
    who.add_note(&incident, "Paged the database team").await.unwrap();
    let busy = (Utc::now() - Duration::minutes(5)).duration_trunc(Duration::seconds(1)).unwrap();
    h.pd.busy_log(10_050, busy, busy + Duration::milliseconds(500));
    time_passes(&h);

    let report = run(&bridge(&h), &h, &Options { max_api_calls: 400, ..options() }).await;

    assert_eq!(comments_saying(&h, &case, "Paged the database team"), 1, "{report:#?}");
}

/// The bridge ran an older version (comments written live, unmarked) without a reconcile run
/// ever storing a PagerDuty cursor (e.g. a version from before reconciliation). The first run of
/// this version has no cursor, takes it for a new install and records the window's start as
/// "notes marked since": the old, unmarked comment is then not looked for and written again.
#[tokio::test]
async fn a_comment_an_unmarked_version_wrote_before_any_reconcile_run_is_not_written_again() {
    let h = Harness::start(NOTE_RULES).await;
    let who = oncall(&h);
    let (incident, case) = linked_pair(&h, &who, 1).await;
    who.add_note(&incident, "Failing over to eu-west-2").await.unwrap();
    let body = "[PagerDuty] Failing over to eu-west-2\n\nref:0123456789ab";
    h.sf.insert_record_as("CaseComment", json!({"ParentId": case, "CommentBody": body}), INTEGRATION_USER);
    time_passes(&h);

    let report = run(&bridge(&h), &h, &options()).await;

    assert_eq!(comments_saying(&h, &case, "Failing over"), 1, "a second copy of the comment: {report:#?}");
    assert_eq!(report.drift(), 0, "{report:#?}");
}

/// `--since` on the first run (a backfill) has the same effect: "marked since" is the backfill's
/// start, days before this version ran.
#[tokio::test]
async fn a_first_run_with_since_does_not_record_the_backfill_start_as_marked_since() {
    let h = Harness::start(NOTE_RULES).await;
    let before = Utc::now();
    time_passes(&h);
    let since = Some(before - Duration::days(7));
    run(&bridge(&h), &h, &Options { since, ..options() }).await;
    let marked = h.store.notes_marked_since().await.unwrap().expect("recorded");
    assert!(
        marked >= before - Duration::minutes(10),
        "notes taken as marked since {marked}, 7 days before this version ran"
    );
}

/// Status updates: the condition and the template exist only in pagerduty_to_salesforce rules.
#[test]
fn status_update_field_and_template_are_load_errors_in_salesforce_to_pagerduty_rules() {
    let cond = "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: salesforce_to_pagerduty\n        object: Case\n        conditions:\n          - {field: pagerduty.status_update, operator: is_not_empty}\n        actions:\n          - add_note: {content: x}\n";
    assert!(shared::rules::Rules::from_yaml(cond).is_err(), "pagerduty.status_update in an S->P rule loads");
    let tmpl = "rulesets:\n  - name: s\n    rules:\n      - name: r\n        direction: salesforce_to_pagerduty\n        object: Case\n        conditions:\n          - {field: Status, operator: equals, value: New}\n        actions:\n          - add_note: {content: \"{{status_update.message}}\"}\n";
    assert!(shared::rules::Rules::from_yaml(tmpl).is_err(), "{{status_update.message}} in an S->P rule loads");
}

fn status_update(event_id: &str, incident: &str, message: &str, trimmed: bool) -> String {
    let data = json!({"id": format!("PSTU{event_id}"), "type": "incident_status_update", "trimmed": trimmed,
        "message": message, "incident": {"id": incident, "type": "incident_reference", "summary": "Checkout down"}});
    delivery(event_id, "incident.status_update_published", Utc::now(), data)
}

/// A status update on an incident linked to two Cases reaches each, once.
#[tokio::test]
async fn a_status_update_reaches_each_of_two_linked_cases_once() {
    let h = Harness::start(include_str!("../../../../events/rules.example.yaml")).await;
    h.webhook(&delivery("E1", "incident.triggered", Utc::now(), incident_data("PINC7", "triggered")), "w1").await;
    let first = case_of(&h, "PINC7").await["Id"].as_str().unwrap().to_string();
    let second = h.sf.insert_record("Case", json!({"Subject": "Second", "Status": "New", "Priority": "Sev3"}));
    link_case(&h, "PINC7", &second).await;
    let reply = h.webhook(&status_update("E2", "PINC7", "Fix deployed", false), "w2").await;
    assert_eq!(outcome(&reply), "applied", "{}", reply.body);
    assert_eq!(comments_saying(&h, &first, "Fix deployed"), 1, "{:?}", comments(&h, &first));
    assert_eq!(comments_saying(&h, &second, "Fix deployed"), 1, "{:?}", comments(&h, &second));
}

/// A status update the bridge's own PagerDuty user published is its echo, like its notes: not
/// written back (the agent is the From user).
#[tokio::test]
async fn a_status_update_by_the_bridge_s_own_user_is_not_written_back() {
    let h = Harness::start(include_str!("../../../../events/rules.example.yaml")).await;
    h.webhook(&delivery("E1", "incident.triggered", Utc::now(), incident_data("PINC8", "triggered")), "w1").await;
    let case = case_of(&h, "PINC8").await["Id"].as_str().unwrap().to_string();
    let own = "PUSR001"; // the bridge's user in the simulator (echo.rs)
    let mut body: Value = serde_json::from_str(&status_update("E2", "PINC8", "Echo test", false)).unwrap();
    body["event"]["agent"] = json!({"id": own, "type": "user_reference"});
    let reply = h.webhook(&body.to_string(), "w2").await;
    assert_eq!(outcome(&reply), "skipped", "{}", reply.body);
    assert_eq!(comments_saying(&h, &case, "Echo test"), 0);
}

/// The same busy second with a PagerDuty cursor before it: the failed listing keeps the cursor
/// where it was, so every later run lists the same busy second and fails again: the PagerDuty
/// side (incident drift and notes) never moves on.
#[tokio::test]
async fn a_second_busier_than_paging_reaches_does_not_hold_the_cursor_for_good() {
    use shared::store::Side;
    let h = Harness::start(NOTE_RULES).await;
    let busy = (Utc::now() - Duration::minutes(5)).duration_trunc(Duration::seconds(1)).unwrap();
    let cursor = busy - Duration::minutes(1);
    h.store.advance_cursor(Side::Pagerduty, cursor).await.unwrap();
    h.pd.busy_log(10_050, busy, busy + Duration::milliseconds(500));
    time_passes(&h);
    let first = run(&bridge(&h), &h, &Options { max_api_calls: 400, ..options() }).await;
    h.clock.set(Utc::now() + Duration::minutes(10));
    let second = run(&bridge(&h), &h, &Options { max_api_calls: 400, ..options() }).await;
    let now = h.store.cursor(Side::Pagerduty).await.unwrap().unwrap();
    assert!(now > busy, "the PagerDuty cursor is stuck at {now} before the busy second {busy}: {first:#?} {second:#?}");
}

/// Two first runs at once (upgrade: a cursor, no "marked since" yet): the one recorded value
/// stands, and a lost note is written once.
#[tokio::test]
async fn two_first_runs_at_once_agree_and_write_a_lost_note_once() {
    use shared::store::Side;
    let h = Harness::start(NOTE_RULES).await;
    h.store.advance_cursor(Side::Pagerduty, Utc::now() - Duration::minutes(5)).await.unwrap();
    let who = oncall(&h);
    let (incident, case) = linked_pair(&h, &who, 1).await;
    who.add_note(&incident, "Paged the database team").await.unwrap();
    time_passes(&h);
    let (a, b) = (bridge(&h), bridge(&h));
    let (oa, ob) = (options(), options());
    let (ra, rb) = tokio::join!(run(&a, &h, &oa), run(&b, &h, &ob));
    assert!(h.store.notes_marked_since().await.unwrap().is_some());
    assert_eq!(comments_saying(&h, &case, "Paged the database team"), 1, "{ra:#?} {rb:#?}");
}

/// DynamoDB (moto): twenty first runs record "notes marked since" at once, each with its own
/// time (sub-millisecond parts, as `Utc::now()` has): all must be told the same value, and it
/// must be the one read back.
#[tokio::test]
async fn dynamodb_concurrent_records_of_notes_marked_since_agree_with_what_is_read_back() {
    let (client, table) = sim::moto::table().await;
    let store = Arc::new(adapters::dynamodb::DynamoStore::new(client, table));
    let base = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let mut tasks = vec![];
    for i in 0..20i64 {
        let store = store.clone();
        let at = base + Duration::milliseconds(i) + Duration::nanoseconds(123_456);
        tasks.push(tokio::spawn(async move { store.record_notes_marked_since(at).await.unwrap() }));
    }
    let mut told = vec![];
    for t in tasks {
        told.push(t.await.unwrap());
    }
    let stored = store.notes_marked_since().await.unwrap().unwrap();
    assert!(told.iter().all(|t| *t == stored), "told {told:?}, stored {stored}");
}

fn status_rule(condition: &str) -> String {
    format!(
        "rulesets:\n  - name: s\n    enabled: true\n    rules:\n      - name: status-to-case\n        direction: pagerduty_to_salesforce\n        object: Case\n        conditions:\n          - {{field: pagerduty.status_update, operator: is_not_empty}}\n          - {condition}\n        actions:\n          - add_case_comment: {{body: \"Status: {{{{status_update.message}}}}\"}}\n"
    )
}

/// The raw v3 event type names a status update in `pagerduty.event_type`.
#[tokio::test]
async fn a_status_update_rule_on_its_raw_event_type_matches() {
    let h = Harness::start(&status_rule(
        "{field: pagerduty.event_type, operator: equals, value: incident.status_update_published}",
    ))
    .await;
    let case = h.sf.insert_record("Case", json!({"Subject": "x", "Status": "New", "Priority": "Sev3"}));
    link_case(&h, "PINC10", &case).await;
    let reply = h.webhook(&status_update("E10", "PINC10", "Mitigated", false), "w10").await;
    assert_eq!(comments_saying(&h, &case, "Mitigated"), 1, "{} {:?}", reply.body, comments(&h, &case));
}
