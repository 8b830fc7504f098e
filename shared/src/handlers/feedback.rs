//! SES feedback: the `feedback` function's logic. SES publishes the sending events of the
//! configuration set every email is sent with (bounces and complaints) to an SNS topic, which
//! invokes the function; each SNS message is one SES event record (JSON).
//!
//! - a `Permanent` bounce suppresses every bounced recipient (`hard_bounce`) and marks the
//!   notification that bounced, `sent` → `failed` with reason `bounced`;
//! - a complaint suppresses every complained recipient (`complaint`);
//! - anything else (transient or undetermined bounces, deliveries, opens …) is ignored, as is a
//!   message that is not an SES event (logged, never retried: retrying cannot make it readable).
//!
//! The notification is named by the email's `notification_id` tag (the SES sender sets it as an
//! `EmailTags` entry; SES echoes a configuration set's message tags back in `mail.tags`).
//! Everything is idempotent: SNS and Lambda deliver at least once, and a repeat writes the same
//! suppression (its time is the bounce's or complaint's own) and finds the notification marked.
//! Only a store failure is an error, and the invocation fails so that Lambda retries it. Nothing
//! here logs an address.

use aws_lambda_events::event::sns::SnsEvent;
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::notification::reason;
use crate::domain::{Channel, Guard, NotificationId, Status, Transition};
use crate::ports::{Clock, NotificationStore, StoreError, Suppression, SuppressionReason, SuppressionStore, TransitionOutcome};

/// The message tag naming the notification an email delivers.
pub const NOTIFICATION_TAG: &str = "notification_id";

pub struct FeedbackDeps {
    pub suppressions: Arc<dyn SuppressionStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub clock: Arc<dyn Clock>,
    /// The producer hears of the `sent → failed` change.
    pub callbacks: super::callbacks::StatusCallbacks,
}

// ---------------------------------------------------------------------------------------------
// The SES event record (only the fields used; the rest is ignored).

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesEvent {
    /// `notificationType` in an identity's feedback notifications (no configuration set).
    #[serde(alias = "notificationType")]
    event_type: String,
    #[serde(default)]
    bounce: Option<Bounce>,
    #[serde(default)]
    complaint: Option<Complaint>,
    #[serde(default)]
    mail: Option<Mail>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    bounce_type: String,
    #[serde(default)]
    bounce_sub_type: Option<String>,
    #[serde(default)]
    bounced_recipients: Vec<Recipient>,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    #[serde(default)]
    complained_recipients: Vec<Recipient>,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    email_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    tags: HashMap<String, Vec<String>>,
}

impl Mail {
    fn notification_id(&self) -> Option<NotificationId> {
        let raw = self.tags.get(NOTIFICATION_TAG)?.first()?.trim();
        // SES tag values are at most 256 characters of letters, digits, `_` and `-`.
        let plausible = !raw.is_empty() && raw.len() <= 256 && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        plausible.then(|| NotificationId::from_stored(raw.to_owned()))
    }
}

/// `Name <addr@example.com>` → `addr@example.com`; a bare address as it is.
fn bare_address(raw: &str) -> &str {
    let raw = raw.trim();
    match (raw.rfind('<'), raw.rfind('>')) {
        (Some(open), Some(close)) if open < close => raw[open + 1..close].trim(),
        _ => raw,
    }
}

// ---------------------------------------------------------------------------------------------
// Handling.

/// What one SES event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedbackOutcome {
    /// Recipients suppressed, and what became of the notification that caused it.
    Suppressed { reason: SuppressionReason, recipients: usize, notification: Marked },
    /// Nothing to do, and why.
    Ignored(&'static str),
}

/// The notification a hard bounce names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marked {
    /// Not a hard bounce, or the email carried no `notification_id` tag.
    NotNamed,
    /// `sent` → `failed` / `bounced`, now.
    Failed(NotificationId),
    /// Marked before (this event delivered again).
    AlreadyMarked(NotificationId),
    /// Not `sent` (or gone): left as it is.
    LeftAsItIs(NotificationId, Option<Status>),
}

/// Every record of an SNS invocation. An error (a store failure) fails the invocation, so that
/// Lambda invokes it again; what was applied before it is applied again, harmlessly.
pub async fn handle_feedback(deps: &FeedbackDeps, event: &SnsEvent) -> Result<Vec<FeedbackOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(event.records.len());
    for record in &event.records {
        let sns_message_id = record.sns.message_id.as_str();
        match handle_ses_event(deps, &record.sns.message).await {
            Ok(outcome) => {
                match &outcome {
                    FeedbackOutcome::Ignored(why) => tracing::info!(sns_message_id, why, "SES feedback ignored"),
                    FeedbackOutcome::Suppressed { reason, recipients, notification } => {
                        tracing::info!(sns_message_id, reason = reason.as_str(), recipients, notification = ?notification, "SES feedback: addresses suppressed")
                    }
                }
                outcomes.push(outcome);
            }
            Err(e) => {
                tracing::error!(sns_message_id, error = %e, "SES feedback not recorded; the invocation fails and is retried");
                return Err(e);
            }
        }
    }
    Ok(outcomes)
}

/// One SNS message: one SES event record.
pub async fn handle_ses_event(deps: &FeedbackDeps, message: &str) -> Result<FeedbackOutcome, StoreError> {
    let event: SesEvent = match serde_json::from_str(message) {
        Ok(event) => event,
        Err(e) => {
            // The position only: the message itself holds addresses.
            tracing::error!(line = e.line(), column = e.column(), category = ?e.classify(), "an SNS message on the feedback topic is not an SES event");
            return Ok(FeedbackOutcome::Ignored("not an SES event"));
        }
    };
    let mail = event.mail.as_ref();
    let ses_message_id = mail.and_then(|m| m.message_id.as_deref()).unwrap_or("");
    let notification_id = mail.and_then(Mail::notification_id);
    let mut sub_type = None;
    let (reason, recipients, at) = match event.event_type.as_str() {
        "Bounce" => {
            let Some(bounce) = &event.bounce else { return Ok(FeedbackOutcome::Ignored("a bounce without its details")) };
            if bounce.bounce_type != "Permanent" {
                tracing::info!(ses_message_id, bounce_type = %bounce.bounce_type, "not a permanent bounce: nothing suppressed");
                return Ok(FeedbackOutcome::Ignored("not a permanent bounce"));
            }
            sub_type = bounce.bounce_sub_type.as_deref();
            (SuppressionReason::HardBounce, &bounce.bounced_recipients, bounce.timestamp.as_deref())
        }
        "Complaint" => {
            let Some(complaint) = &event.complaint else { return Ok(FeedbackOutcome::Ignored("a complaint without its details")) };
            (SuppressionReason::Complaint, &complaint.complained_recipients, complaint.timestamp.as_deref())
        }
        _ => return Ok(FeedbackOutcome::Ignored("neither a bounce nor a complaint")),
    };
    // The event's own time, so that a repeat writes the very same suppression.
    let created_at = [at, mail.and_then(|m| m.timestamp.as_deref())]
        .into_iter()
        .flatten()
        .find_map(|t| t.parse::<Timestamp>().ok())
        .unwrap_or_else(|| deps.clock.now());
    // The suppression goes on the list of the tenant whose message bounced (the default tenant's
    // when the message is not known: untagged, or its notification expired).
    let tenant = match &notification_id {
        Some(id) => deps.notifications.get(id).await?.map(|n| crate::domain::Tenant::of(n.user_id.as_str())),
        None => None,
    }
    .unwrap_or_else(crate::domain::Tenant::default_tenant);
    let mut suppressed = 0;
    for recipient in recipients {
        let address = bare_address(&recipient.email_address);
        if address.is_empty() {
            continue;
        }
        let suppression =
            Suppression { tenant: tenant.clone(), channel: Channel::Email, address: address.to_owned(), reason, created_at, notification_id: notification_id.clone() };
        deps.suppressions.suppress(&suppression).await?;
        suppressed += 1;
    }
    let notification = match (reason, notification_id) {
        (SuppressionReason::HardBounce, Some(id)) => mark_bounced(deps, id, ses_message_id, sub_type).await?,
        _ => Marked::NotNamed,
    };
    Ok(FeedbackOutcome::Suppressed { reason, recipients: suppressed, notification })
}

/// `sent` → `failed` with reason `bounced`, under a guard: only a sent notification bounces.
async fn mark_bounced(deps: &FeedbackDeps, id: NotificationId, ses_message_id: &str, sub_type: Option<&str>) -> Result<Marked, StoreError> {
    // SES's sub-type (`General`, `NoEmail`, `Suppressed` …), never the diagnostic, which can
    // quote the address.
    let sub_type: String = sub_type.unwrap_or("Undetermined").chars().filter(char::is_ascii_alphanumeric).take(40).collect();
    let change = Transition::to(Status::Failed, deps.clock.now())
        .reason(reason::BOUNCED)
        .last_error(format!("the email bounced permanently ({sub_type}): the recipient's mail server refused it"));
    Ok(match deps.notifications.transition(&id, &Guard::StatusIn(vec![Status::Sent]), &change).await? {
        TransitionOutcome::Applied(n) => {
            tracing::info!(notification_id = %id, ses_message_id, "notification failed: the email bounced");
            deps.callbacks.emit(&n).await.map_err(|e| StoreError::Unavailable(format!("status callback not queued: {e}")))?;
            Marked::Failed(id)
        }
        TransitionOutcome::Rejected(n) if n.status == Status::Failed && n.reason.as_deref() == Some(reason::BOUNCED) => {
            // Marked before, maybe without its callback queued: queue it (a repeat is dropped).
            deps.callbacks.emit(&n).await.map_err(|e| StoreError::Unavailable(format!("status callback not queued: {e}")))?;
            Marked::AlreadyMarked(id)
        }
        TransitionOutcome::Rejected(n) => {
            tracing::warn!(notification_id = %id, ses_message_id, status = %n.status, "a bounce for a notification that is not sent: left as it is");
            Marked::LeftAsItIs(id, Some(n.status))
        }
        TransitionOutcome::NotFound => {
            // Expired (kept 90 days), or sent by another deployment with the same configuration set.
            tracing::warn!(notification_id = %id, ses_message_id, "a bounce for an unknown notification");
            Marked::LeftAsItIs(id, None)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::*;
    use std::time::Duration;

    const BOUNCE: &str = include_str!("../../../events/lambda/feedback/ses-bounce-permanent.json");
    const COMPLAINT: &str = include_str!("../../../events/lambda/feedback/ses-complaint.json");
    const TRANSIENT: &str = include_str!("../../../events/lambda/feedback/ses-bounce-transient.json");
    /// The sample's recipient and tagged notification: the test profile's email of `evt-order-A-17`.
    const SAMPLE_EVENT: &str = "evt-order-A-17";

    fn sns(sample: &str) -> SnsEvent {
        serde_json::from_str(sample).expect("an SNS event")
    }

    /// The SNS event with its SES message changed by `edit`.
    fn edited(sample: &str, edit: impl FnOnce(&mut serde_json::Value)) -> SnsEvent {
        let mut event = sns(sample);
        let mut message: serde_json::Value = serde_json::from_str(&event.records[0].sns.message).unwrap();
        edit(&mut message);
        event.records[0].sns.message = message.to_string();
        event
    }

    fn deps(h: &Harness) -> FeedbackDeps {
        crate::wiring::feedback(&h.ports, &crate::wiring::Settings::default())
    }

    async fn listed(h: &Harness) -> Vec<Suppression> {
        h.store.inner.list_suppressions(&crate::domain::Tenant::default_tenant(), 100, None).await.unwrap().items
    }

    /// The sample's notification, seeded and sent.
    async fn sent_email(h: &Harness) -> NotificationId {
        let job = h.seed("order.completed", SAMPLE_EVENT, Channel::Email).await;
        h.create(&job).await;
        h.force(&job.notification_id, Transition::to(Status::Sent, t0()).sent_at(t0())).await;
        job.notification_id
    }

    #[tokio::test]
    async fn a_hard_bounce_suppresses_the_recipient_and_fails_the_notification() {
        let h = Harness::new().await;
        let id = sent_email(&h).await;
        assert_eq!(id.as_str(), "ntf_4adc4daeea6b686e1c3f204cbb237b76", "the id the sample's tag carries");
        h.clock.advance(Duration::from_secs(60));

        let outcomes = handle_feedback(&deps(&h), &sns(BOUNCE)).await.unwrap();

        assert_eq!(
            outcomes,
            [FeedbackOutcome::Suppressed { reason: SuppressionReason::HardBounce, recipients: 1, notification: Marked::Failed(id.clone()) }]
        );
        assert!(h.store.inner.is_suppressed(&crate::domain::Tenant::default_tenant(), Channel::Email, EMAIL).await.unwrap());
        let suppressions = listed(&h).await;
        assert_eq!(suppressions.len(), 1);
        assert_eq!(suppressions[0].reason, SuppressionReason::HardBounce);
        assert_eq!(suppressions[0].created_at, "2026-11-22T10:01:02.669Z".parse::<Timestamp>().unwrap(), "the bounce's own time");
        assert_eq!(suppressions[0].notification_id.as_ref(), Some(&id));
        let n = h.notification(&id).await;
        assert_eq!((n.status, n.reason.as_deref()), (Status::Failed, Some(reason::BOUNCED)));
        assert_eq!(n.updated_at, t0() + Duration::from_secs(60));
        assert!(n.last_error.as_deref().is_some_and(|e| !e.contains(EMAIL)), "no address in the error: {n:?}");
    }

    #[tokio::test]
    async fn the_same_bounce_twice_changes_nothing_more() {
        let h = Harness::new().await;
        let id = sent_email(&h).await;
        handle_feedback(&deps(&h), &sns(BOUNCE)).await.unwrap();
        let (before, notification) = (listed(&h).await, h.notification(&id).await);
        h.clock.advance(Duration::from_secs(600));

        let again = handle_feedback(&deps(&h), &sns(BOUNCE)).await.unwrap();

        assert_eq!(
            again,
            [FeedbackOutcome::Suppressed { reason: SuppressionReason::HardBounce, recipients: 1, notification: Marked::AlreadyMarked(id.clone()) }]
        );
        assert_eq!(listed(&h).await, before);
        assert_eq!(h.notification(&id).await, notification);
    }

    #[tokio::test]
    async fn a_bounce_for_a_notification_not_sent_suppresses_but_leaves_it() {
        let h = Harness::new().await;
        let job = h.seed("order.completed", SAMPLE_EVENT, Channel::Email).await;
        h.create(&job).await; // pending
        let outcomes = handle_feedback(&deps(&h), &sns(BOUNCE)).await.unwrap();
        assert_eq!(
            outcomes,
            [FeedbackOutcome::Suppressed {
                reason: SuppressionReason::HardBounce,
                recipients: 1,
                notification: Marked::LeftAsItIs(job.notification_id.clone(), Some(Status::Pending)),
            }]
        );
        assert_eq!(h.notification(&job.notification_id).await.status, Status::Pending);
        assert!(h.store.inner.is_suppressed(&crate::domain::Tenant::default_tenant(), Channel::Email, EMAIL).await.unwrap());

        // Unknown notification, or none tagged: the address is suppressed all the same.
        let h = Harness::new().await;
        let outcomes = handle_feedback(&deps(&h), &sns(BOUNCE)).await.unwrap();
        assert!(matches!(&outcomes[0], FeedbackOutcome::Suppressed { notification: Marked::LeftAsItIs(_, None), .. }), "{outcomes:?}");
        let untagged = edited(BOUNCE, |m| {
            m["mail"]["tags"].as_object_mut().unwrap().remove(NOTIFICATION_TAG);
            m["bounce"]["bouncedRecipients"] = serde_json::json!([
                {"emailAddress": "Someone <Someone@Example.com>"}, {"emailAddress": "other@example.com"}
            ]);
        });
        let outcomes = handle_feedback(&deps(&h), &untagged).await.unwrap();
        assert_eq!(outcomes, [FeedbackOutcome::Suppressed { reason: SuppressionReason::HardBounce, recipients: 2, notification: Marked::NotNamed }]);
        assert!(h.store.inner.is_suppressed(&crate::domain::Tenant::default_tenant(), Channel::Email, "someone@example.com").await.unwrap(), "the bare address, any case");
        assert!(h.store.inner.is_suppressed(&crate::domain::Tenant::default_tenant(), Channel::Email, "other@example.com").await.unwrap());
    }

    #[tokio::test]
    async fn a_complaint_suppresses_without_failing_the_delivered_notification() {
        let h = Harness::new().await;
        let id = sent_email(&h).await;
        let outcomes = handle_feedback(&deps(&h), &sns(COMPLAINT)).await.unwrap();
        assert_eq!(outcomes, [FeedbackOutcome::Suppressed { reason: SuppressionReason::Complaint, recipients: 1, notification: Marked::NotNamed }]);
        let suppressions = listed(&h).await;
        assert_eq!((suppressions[0].reason, suppressions[0].notification_id.as_ref()), (SuppressionReason::Complaint, Some(&id)));
        assert_eq!(h.notification(&id).await.status, Status::Sent);
    }

    #[tokio::test]
    async fn transient_bounces_other_events_and_junk_are_ignored() {
        let h = Harness::new().await;
        let id = sent_email(&h).await;
        let delivery = edited(BOUNCE, |m| {
            m["eventType"] = "Delivery".into();
            m.as_object_mut().unwrap().remove("bounce");
        });
        let undetermined = edited(BOUNCE, |m| m["bounce"]["bounceType"] = "Undetermined".into());
        let mut junk = sns(BOUNCE);
        junk.records[0].sns.message = "not json at all".into();
        for (event, why) in [
            (sns(TRANSIENT), "not a permanent bounce"),
            (undetermined, "not a permanent bounce"),
            (delivery, "neither a bounce nor a complaint"),
            (junk, "not an SES event"),
        ] {
            assert_eq!(handle_feedback(&deps(&h), &event).await.unwrap(), [FeedbackOutcome::Ignored(why)]);
        }
        assert!(listed(&h).await.is_empty());
        assert_eq!(h.notification(&id).await.status, Status::Sent);
    }

    #[tokio::test]
    async fn identity_notifications_read_the_same() {
        let h = Harness::new().await;
        let legacy = edited(BOUNCE, |m| {
            let kind = m.as_object_mut().unwrap().remove("eventType").unwrap();
            m["notificationType"] = kind;
        });
        let outcomes = handle_feedback(&deps(&h), &legacy).await.unwrap();
        assert!(matches!(outcomes[0], FeedbackOutcome::Suppressed { reason: SuppressionReason::HardBounce, recipients: 1, .. }));
    }

    #[tokio::test]
    async fn a_store_failure_fails_the_invocation_and_the_retry_completes_it() {
        let h = Harness::new().await;
        let id = sent_email(&h).await;
        h.store.fail_next("transition", 1);
        assert!(matches!(handle_feedback(&deps(&h), &sns(BOUNCE)).await, Err(StoreError::Unavailable(_))));
        assert!(h.store.inner.is_suppressed(&crate::domain::Tenant::default_tenant(), Channel::Email, EMAIL).await.unwrap(), "suppressed before the failure");
        assert_eq!(h.notification(&id).await.status, Status::Sent);

        h.store.fail_next("suppress", 1);
        assert!(handle_feedback(&deps(&h), &sns(BOUNCE)).await.is_err());

        let outcomes = handle_feedback(&deps(&h), &sns(BOUNCE)).await.unwrap();
        assert!(matches!(&outcomes[0], FeedbackOutcome::Suppressed { notification: Marked::Failed(_), .. }));
        assert_eq!(h.notification(&id).await.status, Status::Failed);
        assert_eq!(listed(&h).await.len(), 1);
    }
}
