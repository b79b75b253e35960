//! Echo recognition: the bridge's own changes come back to it (its PagerDuty writes as webhooks,
//! its Salesforce writes as trigger posts and Outbound Messages) and must not re-enter the rules.
//!
//! They are recognised by who acted:
//! - PagerDuty: a webhook whose `event.agent` is the user the bridge acts as (the `From` email of
//!   its client; its id configured, or looked up once per process and cached by the client).
//! - Salesforce: a change made by the integration user, by username (the trigger post's user) or
//!   by the record's `LastModifiedById` (when the integration user's id is configured; Outbound
//!   Messages name no user).
//!
//! The checks themselves (who acted, the markers) are [`crate::loop_guard`]'s; this module applies
//! them to who the bridge is on each side ([`PagerdutyPort`], [`SalesforcePort`]). The markers on
//! every text the bridge writes (`[PagerDuty]` Case Comments, `[Salesforce]` notes, resolution
//! notes included) stay as the second line of defence, here for a Case Comment change and in the
//! rules ([`crate::rules::SkipReason::LoopPrevention`]), and `Sforce-Call-Options` names the
//! bridge's Salesforce writes.
//!
//! The bridge's own `create_incident` comes back as `incident.triggered` with the bridge as its
//! agent: it is skipped here, before `pd_to_sfdc`'s wait for the incident's link, so it can never
//! open a second record; an event of a bridge-made incident by someone else still waits for the link.

use serde_json::Value;

use crate::class::Class;
use crate::class::Classify;
use crate::handler::ports::{PagerdutyPort, SalesforcePort};
use crate::handler::settle::Attempt;
use crate::handler::settle::FailureKind;
use crate::handler::sfdc_to_pd::Change;
use crate::loop_guard::{self, IntegrationUser};
use crate::pagerduty::WebhookEvent;

/// What every echo's audit reason says (with who acted).
pub const MADE_BY_THE_BRIDGE: &str = "made by the bridge";

/// `Some(Skipped)` when the webhook's agent is the PagerDuty user the bridge acts as; `Some(Failed)`
/// (transient or auth) when that user cannot be looked up now: acting without knowing could echo.
/// `None`: someone else acted (or nobody: integrations, PagerDuty itself).
pub async fn pagerduty_echo(pagerduty: PagerdutyPort<'_>, event: &WebhookEvent) -> Option<Attempt> {
    let agent = event.agent.as_ref().filter(|a| loop_guard::is_user(a))?;
    let own = match bridge_user_id(pagerduty).await {
        Ok(Some(id)) => id,
        Ok(None) => return None,
        Err(attempt) => return Some(attempt),
    };
    loop_guard::is_bridge_agent(agent, &own).then(|| Attempt::Skipped {
        reason: format!("{MADE_BY_THE_BRIDGE} (PagerDuty user {own}): not sent back"),
        rules: vec![],
    })
}

/// The configured id, else the client's cached lookup of its `From` email.
async fn bridge_user_id(pagerduty: PagerdutyPort<'_>) -> Result<Option<String>, Attempt> {
    if !pagerduty.user_id.is_empty() {
        return Ok(Some(pagerduty.user_id.to_string()));
    }
    match pagerduty.client.own_user_id().await {
        Ok(Some(id)) => Ok(Some(id)),
        Ok(None) => {
            tracing::warn!(
                from = pagerduty.client.from_email(),
                "no PagerDuty user has the From email: \
                the bridge's own changes are recognised by their markers only"
            );
            Ok(None)
        }
        Err(err) if matches!(err.class(), Class::Transient | Class::Auth) => Err(Attempt::Failed {
            kind: FailureKind::from(err.class()),
            reason: format!("cannot tell whether the bridge made this change: looking up its PagerDuty user: {err}"),
            rule: None,
            rules: vec![],
            actions: vec![],
            api_calls: 0,
        }),
        Err(err) => {
            tracing::warn!(error = %err, "cannot look up the bridge's PagerDuty user: \
                its own changes are recognised by their markers only");
            Ok(None)
        }
    }
}

/// Whether the integration user made the change: the post's username, the record's
/// `LastModifiedById`, or a change event's `commitUser`. Unlike `changeOrigin`, which any API
/// client can send, these are Salesforce's own account of who wrote.
pub fn by_integration_user(salesforce: SalesforcePort<'_>, change: &Change) -> Option<IntegrationUser> {
    let by = loop_guard::integration_user_change(
        change.changed_by.as_deref(),
        change.new.get("LastModifiedById").and_then(Value::as_str),
        salesforce.integration_user,
        salesforce.integration_user_id,
    );
    let commit_user = crate::handler::change_event::header_str(change, "commitUser");
    by.or_else(|| {
        let own_user = !salesforce.integration_user_id.is_empty()
            && commit_user.is_some_and(|u| crate::salesforce::id::same_id(u, salesforce.integration_user_id));
        own_user.then_some(IntegrationUser::ById)
    })
}

/// `Some(Skipped)` when the integration user made the change (by the post's username or the
/// record's `LastModifiedById`), or when it is a Case Comment the bridge wrote (its marker).
pub fn salesforce_echo(salesforce: SalesforcePort<'_>, change: &Change) -> Option<Attempt> {
    // A change event names the API call's options in its header.
    let origin = crate::handler::change_event::header_str(change, "changeOrigin");
    let reason = match by_integration_user(salesforce, change) {
        None if origin.is_some_and(crate::salesforce::change_event::is_own_origin) => {
            format!("{MADE_BY_THE_BRIDGE} (changeOrigin {}): not sent back", crate::salesforce::CALL_OPTIONS)
        }
        Some(IntegrationUser::ByName) => "changed by the integration user: not sent back".to_string(),
        Some(IntegrationUser::ById) => {
            format!("last modified by the integration user ({}): not sent back", salesforce.integration_user_id)
        }
        None if loop_guard::is_own_comment_change(&change.object, &change.new) => {
            "comment came from PagerDuty: not sent back".to_string()
        }
        None => return None,
    };
    Some(Attempt::Skipped { reason, rules: vec![] })
}
