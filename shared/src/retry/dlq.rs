//! Operating the dead-letter queue: list, show, replay (back onto the retry queue, exactly as
//! it was, with its history) and purge. Used by `syncctl dlq`.

use std::time::Duration;

use crate::retry::envelope::Envelope;
use crate::retry::queue::{Queue, QueueError, ReceivedMessage};

/// One dead letter as an operator sees it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message: ReceivedMessage,
    /// `None` when the body is not an envelope (it is kept whole for a person to read).
    pub envelope: Option<Envelope>,
}

impl DeadLetter {
    /// The id an operator names it by: the envelope id, or the SQS message id.
    pub fn id(&self) -> &str {
        self.envelope.as_ref().map_or(&self.message.message_id, |e| e.id())
    }

    pub fn reason(&self) -> String {
        match &self.envelope {
            Some(e) => e
                .trip
                .dead_letter_reason
                .clone()
                .or_else(|| e.trip.last_failure().map(|f| f.reason.clone()))
                .unwrap_or_default(),
            None => "not an envelope: kept as received".into(),
        }
    }
}

/// Reads up to `max` dead letters. They stay in the queue, visible again as soon as they are read.
pub async fn list(dlq: &dyn Queue, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
    let letters = read(dlq, max).await?;
    for letter in &letters {
        dlq.release(&letter.message.receipt_handle).await?;
    }
    Ok(letters)
}

/// Receives up to `max` dead letters and keeps them hidden (the caller deletes or releases them).
async fn read(dlq: &dyn Queue, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
    let mut letters: Vec<DeadLetter> = Vec::new();
    while letters.len() < max {
        let batch = dlq.receive((max - letters.len()).min(10), Duration::from_secs(1)).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            if letters.iter().any(|l| l.message.message_id == message.message_id) {
                continue;
            }
            let envelope = Envelope::from_json(&message.body).ok();
            letters.push(DeadLetter { message, envelope });
        }
    }
    Ok(letters)
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: Vec<String>,
    pub not_found: Vec<String>,
    pub skipped_unreadable: Vec<String>,
}

/// Moves the named dead letters (or all, with `ids` empty) back to the retry queue. The envelope
/// keeps its history; its attempt count starts again and its plan is dropped, so the rules as
/// they are now decide what to do (replay after fixing a rule applies the fixed rule). Each is
/// sent before it is deleted: a crash in between replays it twice, which idempotency absorbs.
pub async fn replay(
    dlq: &dyn Queue,
    retry: &dyn Queue,
    ids: &[String],
    max: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<ReplayReport, QueueError> {
    let letters = read(dlq, max).await?;
    let chosen: Vec<&DeadLetter> = letters
        .iter()
        .filter(|l| ids.is_empty() || ids.iter().any(|id| id == l.id() || id == &l.message.message_id))
        .collect();
    let mut report = ReplayReport {
        not_found: ids
            .iter()
            .filter(|id| !letters.iter().any(|l| l.id() == *id || l.message.message_id == **id))
            .cloned()
            .collect(),
        ..ReplayReport::default()
    };
    for letter in letters.iter().filter(|l| !chosen.iter().any(|c| c.message.message_id == l.message.message_id)) {
        dlq.release(&letter.message.receipt_handle).await?;
    }
    let total = chosen.len();
    for (done, letter) in chosen.into_iter().enumerate() {
        match &letter.envelope {
            Some(envelope) => {
                let mut envelope = envelope.clone();
                envelope.trip.attempts = 0;
                envelope.trip.replays += 1;
                envelope.trip.dead_letter_reason = None;
                envelope.trip.not_before = None;
                envelope.progress.plan.clear();
                retry.send(&envelope.to_json(), Duration::ZERO).await?;
                dlq.delete(&letter.message.receipt_handle).await?;
                report.replayed.push(envelope.accepted.id);
            }
            None => {
                dlq.release(&letter.message.receipt_handle).await?;
                report.skipped_unreadable.push(letter.message.message_id.clone());
            }
        }
        progress(done + 1, total);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::model::Direction;
    use crate::retry::envelope::{Failure, QueuedEvent};
    use crate::retry::queue::MemoryQueue;

    fn dead(id: &str) -> String {
        let mut e = Envelope::new(
            Direction::SalesforceToPagerduty,
            format!("sf:Case:{id}:1"),
            "c",
            Utc::now(),
            Utc::now(),
            QueuedEvent::SalesforceRecord {
                object: "Case".into(),
                record_id: id.into(),
                operation: "insert".into(),
                new: serde_json::Map::new(),
                old: None,
                changed_by: None,
            },
        );
        e.accepted.id = id.into();
        e.trip.record_failure(Failure {
            at: Utc::now(),
            kind: "permanent".into(),
            reason: "INVALID_FIELD".into(),
            rule: Some("r".into()),
        });
        e.trip.dead_letter_reason = Some("permanent error: INVALID_FIELD".into());
        e.progress.plan = vec![serde_json::json!({"old": "plan"})];
        e.to_json()
    }

    #[tokio::test]
    async fn replaying_one_moves_only_it_with_its_history_and_a_fresh_plan() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let dlq = MemoryQueue::new(clock.clone());
        let retry = MemoryQueue::new(clock.clone());
        dlq.send(&dead("A"), Duration::ZERO).await.unwrap();
        dlq.send(&dead("B"), Duration::ZERO).await.unwrap();
        dlq.send("garbage", Duration::ZERO).await.unwrap();
        let letters = list(&dlq, 100).await.unwrap();
        assert_eq!(letters.len(), 3);
        assert_eq!(letters[0].reason(), "permanent error: INVALID_FIELD");
        assert_eq!(list(&dlq, 100).await.unwrap().len(), 3, "listing leaves them visible");
        let mut seen = Vec::new();
        let report = replay(&dlq, &retry, &["B".into(), "nope".into()], 100, |d, t| seen.push((d, t))).await.unwrap();
        assert_eq!(report.replayed, vec!["B".to_string()]);
        assert_eq!(report.not_found, vec!["nope".to_string()]);
        assert_eq!(seen, vec![(1, 1)]);
        assert_eq!(dlq.len(), 2, "A and the unreadable message stay");
        let replayed = Envelope::from_json(&retry.bodies()[0]).unwrap();
        assert_eq!((replayed.trip.attempts, replayed.trip.replays, replayed.trip.history.len()), (0, 1, 1));
        assert!(replayed.progress.plan.is_empty() && replayed.trip.dead_letter_reason.is_none());
    }
}
