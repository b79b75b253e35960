//! Both directions wired to each other through the simulators: PagerDuty delivers webhooks for
//! every incident change (ours included) and Salesforce posts trigger events for every record
//! change (ours included). Over 1,000 mixed changes made by people on both sides, interleaved,
//! there must be no echo: no event applied twice, no ping-pong, no second incident or Case.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use shared::model::{Direction, Outcome};
use sim::harness::{Harness, HarnessConfig, INBOUND_SECRET, ORG_ID, WEBHOOK_SECRET};
use sim::pagerduty::WebhookTarget;
use sim::salesforce::TriggerTarget;

const CASES: usize = 170;
/// Cases that start their life cycle together; batch b is one step behind batch b - 1.
const BATCH: usize = 17;
const AGENT: &str = "agent@example.com";
/// On-call's own API token: people's clicks do not spend the bridge's rate limit.
const ONCALL_TOKEN: &str = "oncall-token";

/// What people do to each case and its incident, in this order (each needs the one before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Step {
    /// An agent opens a Sev1 Case (Apex trigger insert post): the bridge opens an incident.
    OpenCase,
    /// On-call acknowledges in PagerDuty: the bridge sets the Case to Working.
    Acknowledge,
    /// An agent edits the Case description: no rule acts on it.
    EditCase,
    /// On-call adds an incident note: the bridge adds a `[PagerDuty]` Case Comment.
    IncidentNote,
    /// An agent adds a Case Comment: the bridge adds a `[Salesforce]` incident note.
    CaseComment,
    /// On-call resolves: the bridge closes the Case and comments on it.
    Resolve,
}

const STEPS: [Step; 6] =
    [Step::OpenCase, Step::Acknowledge, Step::EditCase, Step::IncidentNote, Step::CaseComment, Step::Resolve];

/// An Apex trigger insert post of `record`, by an agent.
fn insert_post(object: &str, record: Value) -> Value {
    let id = record["Id"].as_str().unwrap().to_string();
    json!({"schema": 1, "org_id": ORG_ID, "object": object, "operation": "insert",
        "user": {"id": "0055g00000AGENTAAA", "username": AGENT}, "sent_at": Utc::now().to_rfc3339(),
        "old": null, "new": {id: record}})
}

/// Deliveries the simulators sent that the bridge has not audited yet: (PagerDuty webhook
/// events, Salesforce record changes). Every change Salesforce posts (ours and people's) and
/// every post the test made itself gets one audit entry.
fn pending(h: &Harness, posted: usize) -> (usize, usize) {
    let sf_expected = h.sf.change_count() + posted;
    // Cheap first: each delivery needs at least one entry.
    if h.store.audit_len() < h.pd.webhook_event_count() + sf_expected {
        return (usize::MAX, usize::MAX);
    }
    let audit = h.store.audit_entries();
    let seen: HashSet<&str> = audit.iter().map(|e| e.event_id.as_str()).collect();
    let pd_left =
        h.pd.webhook_events().iter().filter(|e| !seen.contains(e["event"]["id"].as_str().unwrap_or_default())).count();
    let sf_done = audit.iter().filter(|e| e.direction == Direction::SalesforceToPagerduty).count();
    (pd_left, sf_expected.saturating_sub(sf_done))
}

/// Deliveries run in the background: waits until each one the simulators sent is audited and
/// the retry queue is drained, instead of waiting for the audit to stop growing.
async fn settle(h: &Harness, posted: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        h.drain_retries(100).await;
        let left = pending(h, posted);
        if left == (0, 0) && h.retry_queue.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "deliveries not audited after 30 s (PagerDuty, Salesforce): {left:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// People at work on both sides: agents in Salesforce, on-call in PagerDuty.
struct People<'a> {
    h: &'a Harness,
    http: reqwest::Client,
    t0: chrono::DateTime<Utc>,
}

impl People<'_> {
    async fn pagerduty(&self, method: reqwest::Method, path: &str, body: Value) {
        let response = (self.http.request(method, format!("{}{path}", self.h.pd.base_url())))
            .header("Authorization", format!("Token token={ONCALL_TOKEN}"))
            .header("Accept", "application/vnd.pagerduty+json;version=2")
            .header("From", "oncall@example.com")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
    }

    async fn set_status(&self, incident: &str, status: &str) {
        let body = json!({"incident": {"type": "incident_reference", "status": status}});
        self.pagerduty(reqwest::Method::PUT, &format!("/incidents/{incident}"), body).await;
    }

    /// Does `step` to case `n`; returns the id of a Case it opened.
    async fn act(&self, step: Step, n: usize, case: Option<&str>, incident: Option<&str>) -> Option<String> {
        let h = self.h;
        let (case, incident) = (case.unwrap_or_default(), incident.unwrap_or_default());
        match step {
            Step::OpenCase => {
                let id = h.sf.insert_record(
                    "Case",
                    json!({"Subject": format!("Checkout down #{n}"), "Priority": "High", "Origin": "Web"}),
                );
                let mut record = h.sf.record("Case", &id).unwrap();
                record["Priority"] = json!("Sev1");
                let modstamp = self.t0 + ChronoDuration::milliseconds(n as i64);
                record["SystemModstamp"] = json!(modstamp.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string());
                assert_eq!(h.post_records(&insert_post("Case", record)).await.status, 200);
                return Some(id);
            }
            Step::Acknowledge => self.set_status(incident, "acknowledged").await,
            Step::EditCase => {
                h.sf.update_record("Case", case, json!({"Description": "customer called again"}), AGENT).unwrap();
            }
            Step::IncidentNote => {
                let note = json!({"note": {"content": format!("rolled back deploy #{n}")}});
                self.pagerduty(reqwest::Method::POST, &format!("/incidents/{incident}/notes"), note).await;
            }
            Step::CaseComment => {
                let comment = json!({"ParentId": case, "CommentBody": format!("customer confirms #{n}")});
                let id = h.sf.insert_record("CaseComment", comment);
                let record = h.sf.record("CaseComment", &id).unwrap();
                assert_eq!(h.post_records(&insert_post("CaseComment", record)).await.status, 200);
            }
            Step::Resolve => self.set_status(incident, "resolved").await,
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_mixed_changes_on_both_sides_produce_no_echo() {
    let started = Instant::now();
    let mut config = HarnessConfig::new(include_str!("../../../events/rules.example.yaml"));
    config.salesforce.org_id = ORG_ID.into();
    config.pagerduty.tokens.push(ONCALL_TOKEN.into());
    // The retry drain moves the shared clock while deliveries run (5 s for a link not visible
    // yet): calls must fit in what is left of a delivery's 10 s with the margin to settle.
    config.http_timeout = Duration::from_secs(2);
    let h = Harness::with(config).await;
    let url = h.serve().await;
    h.pd.set_webhook_target(Some(WebhookTarget {
        url: format!("{url}/pagerduty/webhook"),
        secrets: vec![WEBHOOK_SECRET.into()],
        subscription_id: "PSUBLOOP".into(),
    }));
    h.sf.set_trigger_target(Some(TriggerTarget {
        url: format!("{url}/salesforce/records"),
        secrets: vec![INBOUND_SECRET.into()],
        objects: vec![],
    }));
    let people = People { h: &h, http: reqwest::Client::new(), t0: Utc::now() };
    let mut case_ids: HashMap<usize, String> = HashMap::new();
    let mut incident_of: HashMap<String, String> = HashMap::new();
    let mut done: HashMap<Step, usize> = HashMap::new();
    let mut posted = 0usize;
    // Wave w: batch b takes step w - b, so every wave after the first mixes kinds of change,
    // interleaved case by case. Changes to different cases run concurrently, as people would.
    let batches = CASES / BATCH;
    for wave in 0..batches + STEPS.len() - 1 {
        let active: Vec<(usize, Step)> =
            (0..batches).filter_map(|b| wave.checked_sub(b).and_then(|s| STEPS.get(s)).map(|s| (b, *s))).collect();
        let changes: Vec<(Step, usize)> =
            (0..BATCH).flat_map(|i| active.iter().map(move |&(b, step)| (step, b * BATCH + i))).collect();
        let opened: Vec<(usize, String)> = futures::stream::iter(changes.iter().map(|&(step, n)| {
            let case = case_ids.get(&n).cloned();
            let incident = case.as_ref().and_then(|c| incident_of.get(c)).cloned();
            let people = &people;
            async move { people.act(step, n, case.as_deref(), incident.as_deref()).await.map(|id| (n, id)) }
        }))
        .buffer_unordered(8)
        .filter_map(|opened| async move { opened })
        .collect()
        .await;
        for &(step, _) in &changes {
            *done.entry(step).or_default() += 1;
            posted += usize::from(matches!(step, Step::OpenCase | Step::CaseComment));
        }
        case_ids.extend(opened);
        settle(&h, posted).await;
        for link in h.store.all_links() {
            incident_of.entry(link.record.id.to_string()).or_insert(link.incident_id.to_string());
        }
    }
    let case_ids: Vec<String> = (0..CASES).map(|n| case_ids[&n].clone()).collect();
    let events: usize = done.values().sum();
    assert!(events >= 1000, "{events} changes made by people");
    assert!(done.values().all(|n| *n == CASES), "every case went through every step: {done:?}");

    // Exactly what people asked for, once each.
    assert_eq!(h.pd.incidents().len(), CASES, "one incident per Sev1 case, none for our own echoes");
    assert_eq!(h.sf.records("Case").len(), CASES, "no Case created by an echo");
    assert_eq!(incident_of.len(), CASES, "every case is linked to its incident");
    // No ping-pong: each side changed only as people did and the rules asked, once. PagerDuty:
    // per case the bridge's incident, the acknowledge, the two notes and the resolve. Salesforce:
    // the agent's edit, the bridge's two Case updates and its two comments.
    assert_eq!(h.pd.webhook_event_count(), 5 * CASES, "PagerDuty incident events");
    // A write whose answer was lost (the 2 s timeout, on a loaded machine) is sent again, and
    // Salesforce records a second change with the same values. That is the retry, not ping-pong:
    // count the changes that changed something, and allow only the bridge's own exact repeats
    // beside them (a late write that set an older value would change something and be counted).
    let changes = h.sf.changes();
    let (effective, repeats): (Vec<_>, Vec<_>) = changes.iter().partition(|c| changed_something(c));
    assert!(
        repeats
            .iter()
            .all(|c| c.call_options.as_deref().is_some_and(|o| o.contains(shared::salesforce::client::CALL_OPTIONS))),
        "only the bridge's own writes are repeated: {repeats:?}"
    );
    assert_eq!(
        effective.len(),
        5 * CASES,
        "Salesforce record changes (after the inserts), {} exact repeats",
        repeats.len()
    );
    let comments = h.sf.records("CaseComment");
    for id in &case_ids {
        let case = h.sf.record("Case", id).unwrap();
        assert_eq!(case["Status"], "Closed", "the acknowledge, then the resolve, reached case {id}");
        assert_eq!(case["PagerDuty_Status__c"], "resolved");
        let on_case: Vec<&str> = comments
            .iter()
            .filter(|c| c["ParentId"] == id.as_str())
            .filter_map(|c| c["CommentBody"].as_str())
            .collect();
        let ours: Vec<&&str> = on_case.iter().filter(|b| b.starts_with("[PagerDuty] ")).collect();
        assert_eq!(on_case.len(), 3, "the agent's comment, the on-call note and the resolution on {id}: {on_case:?}");
        assert_eq!(ours.len(), 2, "one comment per incident note and one for the resolve on {id}: {on_case:?}");
        let incident = &incident_of[id];
        assert_eq!(h.pd.incident(incident).unwrap()["status"], "resolved");
        let notes: Vec<String> =
            h.pd.notes(incident).iter().filter_map(|n| n["content"].as_str().map(str::to_string)).collect();
        assert_eq!(notes.len(), 2, "the on-call note and the agent's comment on {incident}: {notes:?}");
        assert_eq!(notes.iter().filter(|n| n.starts_with("[Salesforce] ")).count(), 1, "{notes:?}");
    }

    // No event applied twice, nothing failed, and our own writes came back and stopped there.
    let audit = h.store.audit_entries();
    let mut applied: HashMap<&str, usize> = HashMap::new();
    for entry in audit.iter().filter(|e| e.outcome == Outcome::Applied) {
        *applied.entry(entry.event_id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events applied twice: {twice:?}");
    let skipped = |why: &str| {
        audit
            .iter()
            .filter(|e| e.outcome == Outcome::Skipped && e.reason.as_deref().is_some_and(|r| r.contains(why)))
            .count()
    };
    let echoes = skipped("integration user");
    let outcomes: HashMap<Outcome, usize> = audit.iter().fold(HashMap::new(), |mut m, e| {
        *m.entry(e.outcome).or_default() += 1;
        m
    });
    println!(
        "{events} changes made by people ({done:?}), {} audit entries {outcomes:?}, {echoes} of our own writes \
         recognised and not sent back, in {:.1} s",
        audit.len(),
        started.elapsed().as_secs_f64()
    );
    // Each change by people that calls for a write on the other side was applied, once; edits no
    // rule acts on matched no rule; our own incidents and notes came back as webhooks whose agent
    // is the bridge's PagerDuty user and were skipped as made by the bridge.
    assert_eq!(skipped("no rule matched"), done[&Step::EditCase], "{outcomes:?}");
    assert_eq!(skipped("made by the bridge"), 2 * CASES, "our incident and note per case: {outcomes:?}");
    let expected_applied = [Step::OpenCase, Step::Acknowledge, Step::IncidentNote, Step::CaseComment, Step::Resolve]
        .iter()
        .map(|s| done[s])
        .sum::<usize>();
    assert_eq!(applied.len(), expected_applied, "events applied: one per change by people that needs a write");
    // Our Case writes (acknowledge, resolve) and comments (incident note, resolve) each came back
    // once as a trigger post, and stopped there; so did each exact repeat of a write resent after
    // a lost answer (counted above).
    assert_eq!(
        echoes,
        4 * CASES + repeats.len(),
        "our Salesforce writes came back as trigger posts and were recognised"
    );
    // The only retries there may be: a webhook about an incident we just created, delivered before
    // its link was stored, and then settled (our own incident.triggered is skipped, not retried).
    for entry in audit.iter().filter(|e| e.outcome == Outcome::Queued) {
        assert!(entry.reason.as_deref().is_some_and(|r| r.contains("link is not visible yet")), "{entry:?}");
        assert!(
            audit.iter().any(|e| e.event_id == entry.event_id && e.outcome != Outcome::Queued),
            "a queued event was settled later: {entry:?}"
        );
    }
    for outcome in [Outcome::Rejected, Outcome::DeadLettered, Outcome::Stale, Outcome::Duplicate] {
        assert!(!outcomes.contains_key(&outcome), "no {outcome:?} event: {outcomes:?}");
    }
    let oncall = format!("Token token={ONCALL_TOKEN}");
    let bridge_calls = h.pd.requests().iter().filter(|r| r.header("authorization") != Some(oncall.as_str())).count();
    println!("the bridge made {bridge_calls} PagerDuty calls");
    assert!(h.pd.requests().iter().all(|r| r.status != 429), "the bridge stayed under PagerDuty's rate limit");
    assert!(h.retry_queue.is_empty());
    assert!(h.dlq.is_empty(), "nothing dead-lettered: {:?}", h.dead_letters());
}

/// Whether a recorded change set any field to a new value (the system fields aside: Salesforce
/// stamps them on every write, also one that repeats the values a record already has).
fn changed_something(change: &sim::salesforce::Change) -> bool {
    const STAMPED: [&str; 3] = ["SystemModstamp", "LastModifiedDate", "LastModifiedById"];
    let Some(old) = change.old.as_ref().and_then(Value::as_object) else { return true };
    let Some(new) = change.new.as_object() else { return true };
    new.iter().any(|(field, value)| !STAMPED.contains(&field.as_str()) && old.get(field) != Some(value))
        || old.keys().any(|field| !new.contains_key(field))
}
