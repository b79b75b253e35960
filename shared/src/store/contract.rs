//! The behaviour every store implementation must show. Unit tests run it on
//! [`super::memory::MemoryStore`]; the integration tests run it on DynamoDB (moto).
//!
//! Each check uses fresh random ids, so the suite can run against a shared table.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::{
    AuditLog, BreakerRecord, BreakerState, BreakerStore, Claim, Completion, IdempotencyStore, Lease, LinkStore,
    PendingEvent, Progress, RulesStore, Subject, SubjectState, SubjectUpdate,
};
use crate::model::{AuditEntry, Direction, Link, Outcome, RecordRef};

fn fresh(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn t0() -> DateTime<Utc> {
    // Whole seconds: stores may keep only second or millisecond precision.
    DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("valid time")
}

/// Runs every check below; panics with a message naming the broken promise.
/// `updates_are_atomic`: false for a stand-in whose conditional updates are not (moto's threaded
/// server checks an UpdateItem's condition and writes without a lock, so two racing copies can
/// both pass; DynamoDB's conditional writes are atomic): its races must still end consistent.
pub async fn run_all(
    links: Arc<dyn LinkStore>,
    idem: Arc<dyn IdempotencyStore>,
    audit: Arc<dyn AuditLog>,
    rules: Arc<dyn RulesStore>,
    breakers: Arc<dyn BreakerStore>,
    updates_are_atomic: bool,
) {
    links_are_found_from_both_sides(links.as_ref()).await;
    a_subject_is_leased_to_one_holder_at_a_time(links.as_ref()).await;
    a_settled_event_leaves_its_marks_and_progress_on_its_subject(links.as_ref()).await;
    a_record_s_seen_fields_are_kept_until_a_newer_event_replaces_them(links.as_ref()).await;
    an_incident_keeps_its_latest_status_update(links.as_ref()).await;
    subject_state_is_links_marks_and_pending_together(links.as_ref()).await;
    queued_events_are_listed_oldest_first_until_they_leave(links.as_ref()).await;
    first_claim_wins_and_duplicates_see_the_result(idem.as_ref()).await;
    expired_in_progress_can_be_taken_over(idem.as_ref()).await;
    released_key_can_be_claimed_again(idem.as_ref()).await;
    expired_completed_record_is_claimable(idem.as_ref()).await;
    concurrent_claims_have_exactly_one_winner(idem.clone(), 50).await;
    copies_of_an_owner_take_turns_one_at_a_time(idem.clone(), 20, updates_are_atomic).await;
    audit_entries_are_found_by_subject_newest_first(audit.as_ref()).await;
    an_audit_entry_can_complete_idempotency_keys(audit.as_ref(), idem.as_ref()).await;
    rules_versions_increase(rules.as_ref()).await;
    breaker_compare_and_set(breakers.as_ref()).await;
}

pub async fn an_incident_keeps_its_latest_status_update(store: &dyn LinkStore) {
    let subject = Subject::Incident(fresh("PSTAT"));
    let at = t0();
    let first = crate::store::StatusUpdate { message: "Rolling back the 10:00 deploy".into(), created_at: at };
    let update = SubjectUpdate { status_update: Some(first.clone()), ..SubjectUpdate::default() };
    store.update_subject(&subject, None, &update).await.expect("update");
    assert_eq!(store.subject_state(&subject).await.expect("state").status_update, Some(first));
    let later = crate::store::StatusUpdate {
        message: "Fixed: \"checkout\" is back".into(),
        created_at: at + Duration::minutes(5),
    };
    let update = SubjectUpdate {
        status_update: Some(later.clone()),
        marks: vec!["m".into()],
        at: Some(at),
        ..Default::default()
    };
    store.update_subject(&subject, None, &update).await.expect("update");
    let state = store.subject_state(&subject).await.expect("state");
    assert_eq!(state.status_update, Some(later), "replaced by the newer one");
    store.update_subject(&subject, None, &SubjectUpdate::default()).await.expect("update");
    assert!(store.subject_state(&subject).await.expect("state").status_update.is_some(), "kept by other updates");
}

pub async fn links_are_found_from_both_sides(store: &dyn LinkStore) {
    let incident = fresh("PINC");
    let case_a = fresh("500A");
    let case_b = fresh("500B");
    let at = t0();
    for (i, id) in [&case_a, &case_b].into_iter().enumerate() {
        let link = Link {
            incident_id: incident.as_str().into(),
            record: RecordRef { object: "Case".into(), id: id.as_str().into() },
            created_at: at + Duration::seconds(i as i64),
            created_by_rule: Some("sev1".into()),
        };
        store.put_link(&link).await.expect("put_link");
        store.put_link(&link).await.expect("put_link again is harmless");
    }
    let records = store.records_for_incident(&incident).await.expect("records_for_incident");
    assert_eq!(
        records.iter().map(|l| l.record.id.to_string()).collect::<Vec<_>>(),
        vec![case_a.clone(), case_b.clone()],
        "an incident's links come back once each, oldest first"
    );
    assert_eq!(records[0].record.object, "Case");
    assert_eq!(records[0].created_by_rule.as_deref(), Some("sev1"));
    let incidents = store.incidents_for_record(&case_b).await.expect("incidents_for_record");
    assert_eq!(incidents.len(), 1, "a record finds its incident");
    assert_eq!(incidents[0].incident_id.as_str(), incident);
    assert!(store.records_for_incident(&fresh("PNONE")).await.expect("query").is_empty());
}

pub async fn a_subject_is_leased_to_one_holder_at_a_time(store: &dyn LinkStore) {
    let subject = Subject::Incident(fresh("PLEASE"));
    let now = t0();
    let until = now + Duration::seconds(10);
    assert_eq!(store.lease(&subject, "A", now, until).await.expect("lease"), Lease::Acquired);
    assert_eq!(
        store.lease(&subject, "A", now, until).await.expect("lease"),
        Lease::Acquired,
        "its holder may take it again"
    );
    match store.lease(&subject, "B", now, now + Duration::seconds(30)).await.expect("lease") {
        Lease::Held { until: Some(held) } => assert_eq!(held, until, "the answer says until when"),
        Lease::Held { until: None } => {}
        Lease::Acquired => panic!("a held subject must not be leased to another holder"),
    }
    let other = Subject::Record(fresh("500LEASE"));
    assert_eq!(store.lease(&other, "B", now, until).await.expect("lease"), Lease::Acquired, "leases are per subject");
    store.update_subject(&subject, Some("B"), &SubjectUpdate::default()).await.expect("update");
    assert!(
        matches!(store.lease(&subject, "C", now, until).await.expect("lease"), Lease::Held { .. }),
        "only the holder gives a lease back"
    );
    store.update_subject(&subject, Some("A"), &SubjectUpdate::default()).await.expect("update");
    assert_eq!(store.lease(&subject, "C", now, until).await.expect("lease"), Lease::Acquired, "given back: free");
    let later = until + Duration::seconds(1);
    assert_eq!(
        store.lease(&subject, "D", later, later + Duration::seconds(10)).await.expect("lease"),
        Lease::Acquired,
        "a holder that ran out of time (it died) loses the subject"
    );
}

/// Run on the memory store: moto's UpdateItem is not atomic under concurrent requests (two of
/// twenty conditional updates both succeeded there), while DynamoDB's conditional writes are.
pub async fn concurrent_leases_have_exactly_one_winner(store: Arc<dyn LinkStore>, tasks: usize) {
    let subject = Subject::Record(fresh("500RACE"));
    let now = t0();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let (store, subject) = (store.clone(), subject.clone());
            tokio::spawn(async move {
                store.lease(&subject, &format!("holder-{i}"), now, now + Duration::seconds(10)).await.expect("lease")
            })
        })
        .collect();
    let mut acquired = 0;
    for handle in handles {
        if handle.await.expect("task") == Lease::Acquired {
            acquired += 1;
        }
    }
    assert_eq!(acquired, 1, "two events of one subject must never hold it at once");
}

pub async fn a_settled_event_leaves_its_marks_and_progress_on_its_subject(store: &dyn LinkStore) {
    let subject = Subject::Incident(fresh("PMARK"));
    let at = t0();
    let nothing = store.subject_state(&subject).await.expect("subject_state");
    assert_eq!(nothing, SubjectState::default(), "a subject never seen has nothing");
    store.lease(&subject, "A", at, at + Duration::seconds(10)).await.expect("lease");
    let marks = vec!["incident:P1:status".to_string(), "record:500:Status".to_string()];
    let keep = SubjectUpdate {
        marks: marks.clone(),
        at: Some(at),
        progress: Some(Progress::Keep { event_id: "E1".into(), done: vec!["a1".into(), "a2".into()] }),
        ..SubjectUpdate::default()
    };
    store.update_subject(&subject, None, &keep).await.expect("update");
    let state = store.subject_state(&subject).await.expect("subject_state");
    assert_eq!(state.marks.keys().cloned().collect::<Vec<_>>(), marks);
    assert!(state.marks.values().all(|t| *t == at));
    assert_eq!(state.last_applied(), Some(at));
    let mut done = state.progress.get("E1").cloned().unwrap_or_default();
    done.sort();
    assert_eq!(done, vec!["a1".to_string(), "a2".to_string()], "an unfinished event's progress is kept");
    for done in [vec![], vec!["a3".to_string()]] {
        let copy =
            SubjectUpdate { progress: Some(Progress::Keep { event_id: "E1".into(), done }), ..Default::default() };
        store.update_subject(&subject, None, &copy).await.expect("update");
    }
    let mut done = store.subject_state(&subject).await.expect("subject_state").progress["E1"].clone();
    done.sort();
    assert_eq!(done, ["a1", "a2", "a3"], "a copy that knew less adds what it did and forgets nothing");
    assert!(!state.opened);
    assert!(
        matches!(store.lease(&subject, "B", at, at + Duration::seconds(10)).await.expect("lease"), Lease::Held { .. }),
        "an update without the holder keeps the lease"
    );
    let settled = SubjectUpdate {
        marks: vec!["incident:P1:status".into()],
        at: Some(at + Duration::seconds(5)),
        opened: true,
        progress: Some(Progress::Clear { event_id: "E1".into() }),
        ..SubjectUpdate::default()
    };
    store.update_subject(&subject, Some("A"), &settled).await.expect("update");
    let state = store.subject_state(&subject).await.expect("subject_state");
    assert_eq!(state.marks.get("incident:P1:status"), Some(&(at + Duration::seconds(5))), "a mark moves forward");
    assert_eq!(state.marks.get("record:500:Status"), Some(&at), "the others stay");
    assert!(state.opened, "the opening event settled");
    assert!(state.progress.is_empty(), "a settled event's progress is forgotten");
    assert_eq!(store.lease(&subject, "B", at, at + Duration::seconds(10)).await.expect("lease"), Lease::Acquired);
    let other = store.subject_state(&Subject::Record(fresh("500MARK"))).await.expect("subject_state");
    assert!(other.marks.is_empty() && !other.opened, "marks are per subject");
}

pub async fn a_record_s_seen_fields_are_kept_until_a_newer_event_replaces_them(store: &dyn LinkStore) {
    let subject = Subject::Record(fresh("500SEEN"));
    let at = t0();
    let record = serde_json::json!({"Priority": "Sev2", "Status": "New", "IsEscalated": false,
        "Description": "x".repeat(super::Seen::MAX_VALUE + 1)});
    let fields: Vec<String> = ["Priority", "IsEscalated", "Description", "Missing"].map(String::from).to_vec();
    let seen = super::Seen::of(at, record.as_object().expect("object"), &fields);
    let mut kept: Vec<&String> = seen.fields.keys().collect();
    kept.sort();
    assert_eq!(kept, ["IsEscalated", "Priority"], "asked for, present and short");
    store
        .update_subject(&subject, None, &SubjectUpdate { seen: Some(seen.clone()), ..SubjectUpdate::default() })
        .await
        .expect("update");
    assert_eq!(store.subject_state(&subject).await.expect("subject_state").seen, Some(seen.clone()));
    store
        .update_subject(&subject, None, &SubjectUpdate { marks: vec!["m".into()], at: Some(at), ..Default::default() })
        .await
        .expect("update");
    assert_eq!(store.subject_state(&subject).await.expect("subject_state").seen, Some(seen), "kept by other updates");
    let newer = super::Seen { at: at + Duration::seconds(1), ..Default::default() };
    store
        .update_subject(&subject, None, &SubjectUpdate { seen: Some(newer.clone()), ..SubjectUpdate::default() })
        .await
        .expect("update");
    assert_eq!(store.subject_state(&subject).await.expect("subject_state").seen, Some(newer), "replaced");
}

pub async fn subject_state_is_links_marks_and_pending_together(store: &dyn LinkStore) {
    let incident = fresh("PSTATE");
    let case_a = fresh("500SA");
    let case_b = fresh("500SB");
    let at = t0();
    for (i, id) in [&case_b, &case_a].into_iter().enumerate() {
        let link = Link {
            incident_id: incident.as_str().into(),
            record: RecordRef { object: "Case".into(), id: id.as_str().into() },
            created_at: at + Duration::seconds(i as i64),
            created_by_rule: None,
        };
        store.put_link(&link).await.expect("put_link");
    }
    let subject = Subject::Incident(incident.clone());
    let update = SubjectUpdate {
        marks: vec!["incident:x:status".into()],
        at: Some(at + Duration::seconds(7)),
        ..SubjectUpdate::default()
    };
    store.update_subject(&subject, None, &update).await.expect("update");
    let state = store.subject_state(&subject).await.expect("subject_state");
    assert_eq!(state.links, store.records_for_incident(&incident).await.expect("records"), "the same links");
    assert_eq!(
        state.links.iter().map(|l| l.record.id.to_string()).collect::<Vec<_>>(),
        vec![case_b.clone(), case_a.clone()],
        "oldest link first"
    );
    assert_eq!(state.last_applied(), Some(at + Duration::seconds(7)), "and the marks");
    let record = store.subject_state(&Subject::Record(case_a.clone())).await.expect("subject_state");
    assert_eq!(record.links.len(), 1, "a record's state has its incident");
    assert_eq!(record.links[0].incident_id.as_str(), incident);
    assert_eq!(record.last_applied(), None, "marks are per subject");
}

pub async fn queued_events_are_listed_oldest_first_until_they_leave(store: &dyn LinkStore) {
    let subject = Subject::Incident(fresh("PPEND"));
    let at = t0();
    let event = |secs: i64, id: &str, envelope: &str| PendingEvent {
        occurred_at: at + Duration::seconds(secs),
        event_id: id.into(),
        envelope_id: envelope.into(),
    };
    let (ack, trigger, note) = (event(60, "E2#x", "env-2"), event(0, "E1", "env-1"), event(90, "E3", "env-3"));
    let copy = event(60, "E2#x", "env-2b");
    for e in [&ack, &trigger, &note, &ack, &copy] {
        store.add_pending(&subject, e).await.expect("add_pending");
    }
    let state = store.subject_state(&subject).await.expect("subject_state");
    assert_eq!(
        state.pending,
        vec![trigger.clone(), ack.clone(), copy.clone(), note.clone()],
        "once each per envelope, oldest first"
    );
    assert_eq!(state.last_applied(), None, "listing an event is not applying it");
    store.remove_pending(&subject, &trigger).await.expect("remove_pending");
    store.remove_pending(&subject, &trigger).await.expect("removing again is harmless");
    store.remove_pending(&subject, &copy).await.expect("remove_pending");
    let state = store.subject_state(&subject).await.expect("subject_state");
    assert_eq!(state.pending, vec![ack.clone(), note.clone()], "a copy's entry leaves alone: not the other envelope's");
    for e in [&ack, &note] {
        store.remove_pending(&subject, e).await.expect("remove_pending");
    }
    let state = store.subject_state(&subject).await.expect("subject_state");
    assert!(state.pending.is_empty(), "{:?}", state.pending);
}

pub async fn first_claim_wins_and_duplicates_see_the_result(store: &dyn IdempotencyStore) {
    let key = fresh("evt-");
    let now = t0();
    let lease = now + Duration::seconds(30);
    let ttl = now + Duration::hours(24);
    assert_eq!(store.claim(&key, now, lease, ttl).await.expect("claim"), Claim::Acquired);
    match store.claim(&key, now, lease, ttl).await.expect("claim") {
        Claim::InProgress { until } => {
            assert_eq!(until, lease, "a concurrent duplicate is told who holds it until when")
        }
        other => panic!("second claim while in progress must be InProgress, got {other:?}"),
    }
    store.complete(&key, "{\"outcome\":\"applied\"}", ttl).await.expect("complete");
    assert_eq!(
        store.claim(&key, now, lease, ttl).await.expect("claim"),
        Claim::Completed { result: "{\"outcome\":\"applied\"}".into() },
        "a redelivery after completion sees the stored result"
    );
}

pub async fn expired_in_progress_can_be_taken_over(store: &dyn IdempotencyStore) {
    let key = fresh("evt-");
    let now = t0();
    let ttl = now + Duration::hours(24);
    assert_eq!(store.claim(&key, now, now + Duration::seconds(5), ttl).await.expect("claim"), Claim::Acquired);
    let later = now + Duration::seconds(6);
    assert_eq!(
        store.claim(&key, later, later + Duration::seconds(5), ttl).await.expect("claim"),
        Claim::Acquired,
        "an IN_PROGRESS whose owner ran out of time is taken over"
    );
}

pub async fn released_key_can_be_claimed_again(store: &dyn IdempotencyStore) {
    let key = fresh("evt-");
    let now = t0();
    let ttl = now + Duration::hours(24);
    assert_eq!(store.claim(&key, now, now + Duration::seconds(30), ttl).await.expect("claim"), Claim::Acquired);
    store.release(&key).await.expect("release");
    assert_eq!(store.claim(&key, now, now + Duration::seconds(30), ttl).await.expect("claim"), Claim::Acquired);
    store.release(&fresh("never-claimed-")).await.expect("releasing an unknown key is harmless");
}

pub async fn expired_completed_record_is_claimable(store: &dyn IdempotencyStore) {
    let key = fresh("evt-");
    let now = t0();
    assert_eq!(
        store.claim(&key, now, now + Duration::seconds(5), now + Duration::seconds(60)).await.expect("claim"),
        Claim::Acquired
    );
    store.complete(&key, "done", now + Duration::seconds(60)).await.expect("complete");
    let later = now + Duration::seconds(61);
    assert_eq!(
        store.claim(&key, later, later + Duration::seconds(5), later + Duration::hours(1)).await.expect("claim"),
        Claim::Acquired,
        "a record past its TTL is gone even if the TTL sweeper has not run yet"
    );
}

/// A queued event's gate names its envelope; `tasks` copies of that envelope take its turn at
/// once: exactly one wins, the others see it in progress; a result naming another owner is no
/// turn; a turn whose holder ran out of time is taken over; the TTL is kept.
pub async fn copies_of_an_owner_take_turns_one_at_a_time(store: Arc<dyn IdempotencyStore>, tasks: usize, atomic: bool) {
    let key = fresh("turn-");
    let now = t0();
    let ttl = now + Duration::hours(1);
    assert_eq!(store.claim(&key, now, now + Duration::seconds(5), ttl).await.expect("claim"), Claim::Acquired);
    store.complete(&key, "queued by envelope E1", ttl).await.expect("complete");
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let (store, key) = (store.clone(), key.clone());
        handles.push(tokio::spawn(async move {
            store.take_turn(&key, "queued by envelope E1", now, now + Duration::seconds(30)).await
        }));
    }
    let mut winners = 0;
    for handle in handles {
        match handle.await.expect("task").expect("take_turn") {
            Claim::Acquired => winners += 1,
            Claim::InProgress { until } => assert_eq!(until, now + Duration::seconds(30)),
            other => panic!("unexpected turn in race: {other:?}"),
        }
    }
    if atomic {
        assert_eq!(winners, 1, "exactly one of {tasks} copies takes the turn");
    } else {
        assert!(winners >= 1, "one of {tasks} copies takes the turn");
    }
    // Taken: one more copy now waits its turn (the condition itself, without a race).
    assert!(
        matches!(
            store.take_turn(&key, "queued by envelope E1", now, now + Duration::seconds(30)).await.expect("take_turn"),
            Claim::InProgress { .. }
        ),
        "a turn taken is no turn for another copy"
    );
    let later = now + Duration::seconds(31);
    assert_eq!(
        store.take_turn(&key, "queued by envelope E1", later, later + Duration::seconds(30)).await.expect("turn"),
        Claim::Acquired,
        "a turn whose holder ran out of time is taken over"
    );
    store.complete(&key, "applied", ttl).await.expect("complete");
    assert_eq!(
        store.take_turn(&key, "queued by envelope E1", later, later + Duration::seconds(30)).await.expect("turn"),
        Claim::Completed { result: "applied".into() },
        "a settled event gives no copy a turn"
    );
    let missing = fresh("turn-missing-");
    assert!(
        matches!(
            store.take_turn(&missing, "queued by envelope E1", now, now).await.expect("turn"),
            Claim::InProgress { .. }
        ),
        "no record: ask the gate again"
    );
    assert_eq!(
        store.claim(&missing, now, now + Duration::seconds(5), ttl).await.expect("claim"),
        Claim::Acquired,
        "a turn asked on no record writes none"
    );
    let gone = now + Duration::hours(2);
    assert!(
        matches!(store.take_turn(&key, "applied", gone, gone).await.expect("turn"), Claim::InProgress { .. }),
        "past its TTL the record is gone"
    );
}

/// `tasks` concurrent claims on one key: exactly one is `Acquired`.
pub async fn concurrent_claims_have_exactly_one_winner(store: Arc<dyn IdempotencyStore>, tasks: usize) {
    let key = fresh("race-");
    let now = t0();
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let store = store.clone();
        let key = key.clone();
        handles.push(tokio::spawn(async move {
            store.claim(&key, now, now + Duration::seconds(30), now + Duration::hours(1)).await
        }));
    }
    let mut winners = 0;
    for handle in handles {
        match handle.await.expect("task") {
            Ok(Claim::Acquired) => winners += 1,
            Ok(Claim::InProgress { .. }) => {}
            other => panic!("unexpected claim result in race: {other:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one of {tasks} racing claims must win");
}

pub async fn audit_entries_are_found_by_subject_newest_first(store: &dyn AuditLog) {
    let incident = fresh("PAUD");
    let record = fresh("500AUD");
    let at = t0();
    let mut first = AuditEntry::new(at, Direction::PagerdutyToSalesforce, "req-1", fresh("evt-"), Outcome::Applied);
    first.incident_ids = vec![incident.clone()];
    first.record_ids = vec![record.clone()];
    first.rules_matched = vec!["ack-sets-working".into()];
    let mut second = AuditEntry::new(
        at + Duration::seconds(1),
        Direction::PagerdutyToSalesforce,
        "req-2",
        fresh("evt-"),
        Outcome::Stale,
    );
    second.incident_ids = vec![incident.clone()];
    store.append(&first).await.expect("append");
    store.append(&second).await.expect("append");
    let by_incident = store.for_subject(&Subject::Incident(incident.clone()), 10).await.expect("for_subject");
    assert_eq!(by_incident.len(), 2);
    assert_eq!(by_incident[0].id, second.id, "newest first");
    assert_eq!(by_incident[1], first, "an entry comes back as it was written");
    let by_record = store.for_subject(&Subject::Record(record), 10).await.expect("for_subject");
    assert_eq!(by_record.len(), 1);
    let limited = store.for_subject(&Subject::Incident(incident), 1).await.expect("for_subject");
    assert_eq!(limited.len(), 1, "limit is honoured");
    let recent = store.recent(at, 1000).await.expect("recent");
    assert!(recent.iter().any(|e| e.id == first.id) && recent.iter().any(|e| e.id == second.id));
}

pub async fn an_audit_entry_can_complete_idempotency_keys(audit: &dyn AuditLog, idem: &dyn IdempotencyStore) {
    let (event, copy) = (fresh("evt-"), fresh("copy-"));
    let now = t0();
    let ttl = now + Duration::hours(24);
    for key in [&event, &copy] {
        assert_eq!(idem.claim(key, now, now + Duration::seconds(30), ttl).await.expect("claim"), Claim::Acquired);
    }
    let incident = fresh("PDONE");
    let mut entry = AuditEntry::new(now, Direction::SalesforceToPagerduty, "req-9", &event, Outcome::Queued);
    entry.incident_ids = vec![incident.clone()];
    let completed = [&event, &copy].map(|key| Completion {
        key: key.clone(),
        result: "queued by envelope E1".into(),
        expires_at: ttl,
    });
    audit.append_completing(&entry, &completed).await.expect("append_completing");
    let found = audit.for_subject(&Subject::Incident(incident), 10).await.expect("for_subject");
    assert_eq!(found, vec![entry], "the entry is written");
    for key in [&event, &copy] {
        assert_eq!(
            idem.claim(key, now, now + Duration::seconds(30), ttl).await.expect("claim"),
            Claim::Completed { result: "queued by envelope E1".into() },
            "every key is completed with its result"
        );
    }
}

pub async fn rules_versions_increase(store: &dyn RulesStore) {
    let before = store.current_rules().await.expect("current_rules").map_or(0, |r| r.version);
    let at = t0();
    let v1 = store.put_rules("rulesets: []\n", "test", at).await.expect("put_rules");
    let v2 = store.put_rules("rulesets: [] # second\n", "test", at).await.expect("put_rules");
    assert!(v1 > before && v2 > v1, "versions increase: {before} -> {v1} -> {v2}");
    let current = store.current_rules().await.expect("current_rules").expect("a document is stored");
    assert_eq!(current.version, v2);
    assert_eq!(current.document, "rulesets: [] # second\n");
}

pub async fn breaker_compare_and_set(store: &dyn BreakerStore) {
    let service = fresh("svc-");
    assert_eq!(store.get_breaker(&service).await.expect("get"), None);
    let open = BreakerRecord {
        service: service.clone(),
        state: BreakerState::Open,
        failures: 5,
        opened_at: Some(t0()),
        reason: Some("5 consecutive 503".into()),
        version: 1,
    };
    assert!(store.put_breaker(&open, None).await.expect("put"));
    assert!(!store.put_breaker(&open, None).await.expect("put"), "a second creator loses");
    let half = BreakerRecord { state: BreakerState::HalfOpen, version: 2, ..open.clone() };
    assert!(store.put_breaker(&half, Some(1)).await.expect("put"));
    assert!(!store.put_breaker(&half, Some(1)).await.expect("put"), "a stale writer loses");
    assert_eq!(store.get_breaker(&service).await.expect("get"), Some(half));
}

/// Reconciliation's cursors start empty, move forward, never back (two runs at once), per side;
/// the watched subscription is the last one recorded.
pub async fn cursors_only_move_forward(store: &dyn super::CursorStore) {
    use super::Side;
    let t = t0();
    assert_eq!(store.cursor(Side::Pagerduty).await.unwrap(), None, "no cursor before the first run");
    store.advance_cursor(Side::Pagerduty, t).await.unwrap();
    assert_eq!(store.cursor(Side::Pagerduty).await.unwrap(), Some(t));
    store.advance_cursor(Side::Pagerduty, t - chrono::Duration::seconds(30)).await.unwrap();
    assert_eq!(store.cursor(Side::Pagerduty).await.unwrap(), Some(t), "a cursor never moves back");
    store.advance_cursor(Side::Pagerduty, t + chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!(store.cursor(Side::Pagerduty).await.unwrap(), Some(t + chrono::Duration::seconds(1)));
    assert_eq!(store.cursor(Side::Salesforce).await.unwrap(), None, "each side has its own cursor");
    assert_eq!(store.notes_marked_since().await.unwrap(), None);
    let recorded = store.record_notes_marked_since(t + chrono::Duration::nanoseconds(123_456)).await.unwrap();
    assert_eq!(recorded, t, "kept to the millisecond, and told as it is read back");
    let later = t + chrono::Duration::hours(1);
    assert_eq!(store.record_notes_marked_since(later).await.unwrap(), t, "recorded once: the first stands");
    assert_eq!(store.notes_marked_since().await.unwrap(), Some(t));
    assert_eq!(
        store.cursor(Side::Pagerduty).await.unwrap(),
        Some(t + chrono::Duration::seconds(1)),
        "apart from the cursor"
    );
    assert_eq!(store.watched_subscription().await.unwrap(), None);
    store.watch_subscription("PSUB1").await.unwrap();
    store.watch_subscription("PSUB2").await.unwrap();
    assert_eq!(store.watched_subscription().await.unwrap().as_deref(), Some("PSUB2"), "the last one recorded");
}

/// A shared rate bucket is written only over the version it was computed from; a refused write
/// tells the bucket that stands (so the caller computes again without a read); buckets of two
/// tokens are apart.
pub async fn rate_buckets_are_compare_and_set(store: &dyn super::RateBudgetStore) {
    use super::{BucketState, Swap};
    let key = fresh("RATEKEY");
    let first = BucketState { milli_tokens: 59_000, updated_ms: 1_000, paused_until_ms: 0, version: 1 };
    assert_eq!(store.swap_bucket(&key, None, &first).await.unwrap(), Swap::Stored, "the first writer creates it");
    let other = BucketState { milli_tokens: 50_000, ..first };
    assert_eq!(
        store.swap_bucket(&key, None, &other).await.unwrap(),
        Swap::Conflict(Some(first)),
        "a second creator loses and sees the first"
    );
    let next = BucketState { milli_tokens: -2_500, updated_ms: 1_250, paused_until_ms: 61_000, version: 2 };
    assert_eq!(store.swap_bucket(&key, Some(1), &next).await.unwrap(), Swap::Stored);
    assert_eq!(
        store.swap_bucket(&key, Some(1), &other).await.unwrap(),
        Swap::Conflict(Some(next)),
        "a stale writer loses and sees the bucket that stands, negative balance and pause included"
    );
    let apart = fresh("RATEKEY");
    assert_eq!(
        store.swap_bucket(&apart, Some(2), &next).await.unwrap(),
        Swap::Conflict(None),
        "another token's bucket"
    );
}
