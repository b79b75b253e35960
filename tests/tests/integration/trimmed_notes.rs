//! A long incident note reaches Salesforce whole (issue 15, defect 10). PagerDuty cuts a long
//! note's content in the webhook and says `"trimmed": true`; the bridge reads the note from
//! `GET /incidents/{id}/notes` before the rules see it. When that read fails the event is retried,
//! never written as the cut text.

use serde_json::{Value, json};
use shared::handler::salesforce_exec::without_reference;
use sim::faults::FaultKind;
use sim::harness::{Harness, outcome};
use sim::pagerduty::webhook::WEBHOOK_PAYLOAD_BYTES;

/// A trigger opens a Case, a note becomes a Case Comment (and the rest of a Case's life).
const RULES: &str = sim::fixtures::PD_CASE_RULES;

/// The last webhook PagerDuty emitted, as it would deliver it.
fn last_webhook(h: &Harness) -> Value {
    h.pd.webhook_events().pop().expect("PagerDuty emitted a webhook")
}

/// On-call triggers an incident: its Case opens. Returns the incident id.
async fn incident_with_a_case(h: &Harness) -> String {
    let body = json!({"incident": {"type": "incident", "title": "Checkout down",
        "service": {"id": "PSVC001", "type": "service_reference"}}});
    let id = h.oncall(reqwest::Method::POST, "/incidents", body).await["incident"]["id"].as_str().unwrap().to_string();
    assert_eq!(outcome(&h.webhook(&last_webhook(h).to_string(), "w-trigger").await), "applied");
    id
}

/// A log pasted into a note, longer than a webhook carries (about 55 KB).
fn long_note() -> String {
    let line = |n: usize| format!("{n:05} checked shard {n}: latency normal, error rate 0.0%, queue depth 0.\n");
    (0..900).map(line).collect()
}

/// The Case Comments' bodies, each without the reference line the bridge ends it with.
fn comments(h: &Harness) -> Vec<String> {
    h.sf.records("CaseComment")
        .iter()
        .filter_map(|c| c["CommentBody"].as_str().map(|b| without_reference(b).to_string()))
        .collect()
}

/// The text of the Case Comments, each part's `[PagerDuty] ` and `(i/n) ` taken off, in order,
/// without whitespace: splitting a long comment drops whitespace where a part starts (the rules cut
/// the body into parts, the Composite builder cuts those again and trims their start: a separate
/// issue), and what matters here is that every word of the note arrives.
fn comment_text(h: &Harness) -> String {
    comments(h)
        .iter()
        .map(|c| {
            let c = c.strip_prefix("[PagerDuty] ").expect("every part is marked");
            match c.split_once(") ") {
                Some((n, rest)) if n.starts_with('(') && n[1..].split('/').all(|d| d.parse::<u32>().is_ok()) => rest,
                _ => c,
            }
            .to_string()
        })
        .collect::<String>()
        .split_whitespace()
        .collect()
}

fn words(text: &str) -> String {
    text.split_whitespace().collect()
}

#[tokio::test]
async fn a_trimmed_note_becomes_a_case_comment_with_its_full_text() {
    let h = Harness::start(RULES).await;
    let incident = incident_with_a_case(&h).await;
    let note = long_note();
    h.oncall(reqwest::Method::POST, &format!("/incidents/{incident}/notes"), json!({"note": {"content": note}})).await;
    let webhook = last_webhook(&h);
    assert_eq!(webhook["event"]["data"]["trimmed"], true, "PagerDuty cut the note in the webhook");
    assert!(webhook.to_string().len() <= WEBHOOK_PAYLOAD_BYTES);
    let cut = webhook["event"]["data"]["content"].as_str().unwrap();
    assert!(note.starts_with(cut) && cut.len() < note.len());

    let reply = h.webhook(&webhook.to_string(), "w-note").await;
    assert_eq!(outcome(&reply), "applied", "{}", reply.body);
    assert_eq!(comment_text(&h), words(&note), "the note as on-call wrote it, in as many comments as it takes");
}

#[tokio::test]
async fn a_failed_read_of_a_trimmed_note_retries_the_event_instead_of_writing_the_cut_text() {
    let h = Harness::start(RULES).await;
    let incident = incident_with_a_case(&h).await;
    let note = long_note();
    h.oncall(reqwest::Method::POST, &format!("/incidents/{incident}/notes"), json!({"note": {"content": note}})).await;
    let webhook = last_webhook(&h);

    h.pd.fail_next(1, FaultKind::ServerError);
    let reply = h.webhook(&webhook.to_string(), "w-note").await;
    assert_eq!(reply.status, 200, "safely queued: {}", reply.body);
    assert_eq!(outcome(&reply), "queued", "{}", reply.body);
    assert!(comments(&h).is_empty(), "nothing written from the cut text");

    h.drain_retries(10).await;
    assert_eq!(comment_text(&h), words(&note));
    assert!(h.dlq.is_empty() && h.retry_queue.is_empty());
}

#[tokio::test]
async fn a_short_note_is_used_as_delivered_without_reading_it_again() {
    let h = Harness::start(RULES).await;
    let incident = incident_with_a_case(&h).await;
    h.oncall(
        reqwest::Method::POST,
        &format!("/incidents/{incident}/notes"),
        json!({"note": {"content": "Rolled back"}}),
    )
    .await;
    let webhook = last_webhook(&h);
    assert_eq!(webhook["event"]["data"]["trimmed"], false);
    h.pd.clear_requests();
    assert_eq!(outcome(&h.webhook(&webhook.to_string(), "w-note").await), "applied");
    assert_eq!(comments(&h), vec!["[PagerDuty] Rolled back".to_string()]);
    assert!(h.pd.requests().iter().all(|r| !r.path.ends_with("/notes")), "no extra PagerDuty call");
}
