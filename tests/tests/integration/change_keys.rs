//! Salesforce change keys are unique per change, not per second (issue 15, defect 3).
//!
//! A real org stamps `SystemModstamp` and `LastModifiedDate` with whole seconds, so two changes of
//! one record within a second carry the same stamp: both must be applied. The Apex trigger names
//! each change (`change_ids`); a post from older Apex, without them, is keyed on its old and new
//! values. Either way, a redelivery of the same change is still a duplicate.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::{Map, Value, json};
use shared::store::LinkStore;
use sim::harness::{Harness, ORG_ID};

const RULES: &str = sim::fixtures::SFDC_CASE_RULES;

const CASE: &str = "5005g00000SAME1AAA";
const AGENT: &str = "agent@example.com";

/// A Case as the trigger serialises it, stamped like a real org: whole seconds.
fn case(priority: &str, status: &str, modified: DateTime<Utc>) -> Value {
    let stamp = modified.format("%Y-%m-%dT%H:%M:%S.000+0000").to_string();
    json!({
        "attributes": {"type": "Case", "url": format!("/services/data/v62.0/sobjects/Case/{CASE}")},
        "Id": CASE, "Subject": "Checkout down", "Priority": priority, "Status": status,
        "LastModifiedDate": stamp, "SystemModstamp": stamp,
    })
}

/// A trigger post of one Case change; `change_id` as the current Apex sends it, `None` as older
/// Apex did.
fn post(old: Option<Value>, new: Value, change_id: Option<&str>) -> Value {
    let map = |r: Value| -> Map<String, Value> { [(CASE.to_string(), r)].into_iter().collect() };
    let mut post = json!({
        "schema": 1, "org_id": ORG_ID, "object": "Case",
        "operation": if old.is_some() { "update" } else { "insert" },
        "user": {"id": "0055g00000AGENTAAA", "username": AGENT}, "sent_at": Utc::now().to_rfc3339(),
        "old": old.map(map), "new": map(new),
    });
    if let Some(id) = change_id {
        post["change_ids"] = json!({ CASE: id });
    }
    post
}

fn summary(reply: &shared::handler::http::Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

async fn incident(h: &Harness) -> Value {
    let links = h.store.incidents_for_record(CASE).await.unwrap();
    assert_eq!(links.len(), 1, "one incident for the Case");
    h.pd.incident(links[0].incident_id.as_str()).unwrap()
}

/// Opens the Case, then makes two changes within one second: Sev2, then Closed.
async fn two_changes_in_one_second(ids: [Option<&str>; 3]) -> Harness {
    let h = Harness::start(RULES).await;
    let opened = Utc::now().trunc_subsecs(0);
    let new = case("Sev1", "New", opened);
    assert_eq!(summary(&h.post_records(&post(None, new.clone(), ids[0])).await)["applied"], 1);

    let second = opened + Duration::seconds(60);
    let sev2 = case("Sev2", "Working", second);
    assert_eq!(summary(&h.post_records(&post(Some(new), sev2.clone(), ids[1])).await)["applied"], 1);
    let closed = case("Sev2", "Closed", second);
    let reply = summary(&h.post_records(&post(Some(sev2), closed, ids[2])).await);
    assert_eq!((reply["applied"].as_u64(), reply["duplicate"].as_u64()), (Some(1), Some(0)), "{reply}");
    h
}

#[tokio::test]
async fn two_changes_of_a_case_in_the_same_second_are_both_applied() {
    // Older Apex: no change ids, the bridge keys on the old and new values.
    let h = two_changes_in_one_second([None, None, None]).await;
    let incident = incident(&h).await;
    assert_eq!(incident["priority"]["summary"], "P2");
    assert_eq!(incident["status"], "resolved", "the close in the same second as the escalation");
}

#[tokio::test]
async fn the_change_ids_apex_sends_key_each_change() {
    let h = two_changes_in_one_second([Some("req-1:0"), Some("req-2:0"), Some("req-3:0")]).await;
    let incident = incident(&h).await;
    assert_eq!(incident["priority"]["summary"], "P2");
    assert_eq!(incident["status"], "resolved");
    let keys: Vec<String> = h.store.audit_entries().iter().map(|e| e.event_id.clone()).collect();
    assert!(keys.contains(&format!("sf:Case:{CASE}:req-3:0")), "the key names the change: {keys:?}");
}

#[tokio::test]
async fn a_redelivered_change_is_a_duplicate_with_or_without_a_change_id() {
    let h = Harness::start(RULES).await;
    let t0 = Utc::now().trunc_subsecs(0);
    let open = case("Sev1", "New", t0);
    for change_id in [None, Some("req-9:0")] {
        let update = post(Some(open.clone()), case("Sev2", "Working", t0 + Duration::seconds(1)), change_id);
        let _ = h.post_records(&update).await;
        // Apex's retry job posts the same chunk again (with a fresh sent_at and signature).
        let mut again = update.clone();
        again["sent_at"] = json!((Utc::now() + Duration::seconds(120)).to_rfc3339());
        assert_eq!(summary(&h.post_records(&again).await)["duplicate"], 1, "{change_id:?}");
    }
}

#[tokio::test]
async fn the_simulated_org_stamps_whole_seconds_like_a_real_one() {
    let h = Harness::start(RULES).await;
    let id = h.sf.insert_record("Case", json!({"Subject": "seeded"}));
    h.sf.update_record("Case", &id, json!({"Priority": "High"}), AGENT).unwrap();
    let record = h.sf.record("Case", &id).unwrap();
    for field in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
        let stamp = record[field].as_str().unwrap();
        assert!(stamp.ends_with(".000+0000"), "{field} {stamp}: a real org has no milliseconds");
    }
}
