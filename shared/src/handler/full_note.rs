//! A webhook carries a long incident note cut (`"trimmed": true` in the note data): the rules
//! must see the note as it was written, or its Case Comment would be the cut text.

use std::borrow::Cow;

use crate::class::{Class, Classify};
use crate::handler::settle::{Attempt, FailureKind};
use crate::pagerduty::{EventData, PagerdutyClient, WebhookEvent};
use crate::telemetry::metrics;

/// The event with its note's full content: read from `GET /incidents/{id}/notes` (found by the
/// note's id) when the webhook says the content was trimmed, the event as it is otherwise. A read
/// that fails, or that does not find the note yet, is a transient failure: the event is retried
/// (within the retry policy's bounds), it never acts on the cut text.
pub async fn with_full_note<'e>(
    pagerduty: &PagerdutyClient,
    event: &'e WebhookEvent,
) -> Result<Cow<'e, WebhookEvent>, Attempt> {
    let EventData::IncidentNote { id, incident, trimmed: true, .. } = &event.data else {
        return Ok(Cow::Borrowed(event));
    };
    metrics::api_calls("pagerduty", 1);
    let failed = |kind: FailureKind, reason: String| Attempt::Failed {
        kind,
        reason,
        rule: None,
        rules: vec![],
        actions: vec![],
        api_calls: 0,
    };
    let notes = pagerduty.list_notes(&incident.id).await.map_err(|err| {
        let kind = if err.class() == Class::Auth { FailureKind::Auth } else { FailureKind::Transient };
        failed(kind, format!("the webhook carries note {id} trimmed; reading it in full: {err}"))
    })?;
    let Some(note) = notes.into_iter().find(|n| !id.is_empty() && n.id == *id) else {
        return Err(failed(
            FailureKind::Transient,
            format!("the webhook carries note {id} trimmed and incident {} does not list it (yet)", incident.id),
        ));
    };
    let mut full = event.clone();
    if let EventData::IncidentNote { content, trimmed, .. } = &mut full.data {
        *content = note.content;
        *trimmed = false;
    }
    Ok(Cow::Owned(full))
}
