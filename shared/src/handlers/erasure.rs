//! `DELETE /v1/users/{user_id}`: erasure of one recipient (GDPR art. 17).
//!
//! What goes, in this order (so that a retry after a partial failure still finds what is left:
//! the profile, which names the addresses, is deleted last):
//!
//! 1. **Unsent notifications** of every event a notification of the user belongs to are
//!    canceled (`reason: user_erased`): pending and scheduled ones, and — for each channel of
//!    the event without a notification yet (its send job queued but not yet claimed: the router
//!    leaves that first write to the sender's claim), and each fallback channel a notification
//!    still sending may lead to — a `canceled` record is written in its place
//!    (`queries::cancel_unsent`), so no queued send job (which carries the rendered message and
//!    the address) is delivered afterwards: its claim meets a final notification and writes
//!    nothing.
//! 2. **Notification content** — the rendered title / subject and the provider's last error —
//!    is removed from every notification of the user; their ids, channel, status, reason,
//!    attempts, provider and times stay, so `GET /v1/events/{event_id}` still answers what
//!    happened to an event.
//! 3. **Event payloads**: every event a notification of the user belongs to has its payload
//!    replaced by `null`. An event has exactly one recipient (its `user_id`), so no other user's
//!    status needs the payload; the record itself (id, type, priority, times) stays.
//! 4. **Live WebSocket connections**: their records are deleted, so nothing is pushed to them
//!    any more. The sockets themselves are not closed (the connection store holds no socket;
//!    they end at API Gateway's two-hour limit at the latest).
//! 5. **Suppressions** of the profile's addresses (email, SMS, WhatsApp, Telegram, webhook): the
//!    suppression list holds the address itself.
//! 6. **Profile and preferences**.
//!
//! Kept: the user id on the remaining notification and event records (the producer's own
//! pseudonymous key, needed to answer status), until their retention TTL (90 days). Not
//! reached: events none of whose notifications has a record yet when the erasure runs — accepted
//! but not yet routed, or routed with every notification queued at once and none claimed yet
//! (events are found through the user's notifications; the events table has no index by user).
//! Routing the former finds no profile, so nothing is sent but WebSocket frames to connections
//! opened afterwards; the latter's jobs carry their addresses and are sent as queued (typically
//! within milliseconds of routing: the window is the send queue's backlog). Their payload expires
//! with the record.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::callbacks::StatusCallbacks;
use super::queries::{QueryError, cancel_unsent, parse_user_id};
use crate::domain::notification::reason;
use crate::domain::{Channel, EventId, Notification, NotificationId, Profile, Status, Transition, UserId};
use crate::ports::{Clock, ConnectionStore, EventStore, NotificationStore, ProfileStore, StoreError, SuppressionStore};

pub struct ErasureDeps {
    /// The event types: which channels an event is routed to, and their fallbacks.
    pub catalog: Arc<crate::catalog::Catalog>,
    pub events: Arc<dyn EventStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub profiles: Arc<dyn ProfileStore>,
    pub connections: Arc<dyn ConnectionStore>,
    pub suppressions: Arc<dyn SuppressionStore>,
    /// Where the final statuses of the notifications canceled here are announced.
    pub callbacks: StatusCallbacks,
    pub clock: Arc<dyn Clock>,
}

/// What an erasure removed: the answer of `DELETE /v1/users/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub user_id: UserId,
    /// A profile was deleted.
    pub profile: bool,
    /// Preferences were deleted.
    pub preferences: bool,
    /// Live WebSocket connections forgotten.
    pub connections: usize,
    /// Suppressions of the profile's addresses lifted.
    pub suppressions: usize,
    /// Notifications whose content was removed.
    pub notifications_scrubbed: usize,
    /// Notifications that had not been sent yet, canceled.
    pub notifications_canceled: usize,
    /// Events whose payload was removed.
    pub event_payloads_scrubbed: usize,
}

impl Erasure {
    fn erased_anything(&self) -> bool {
        self.profile
            || self.preferences
            || self.connections + self.suppressions + self.notifications_scrubbed + self.notifications_canceled + self.event_payloads_scrubbed > 0
    }
}

/// The profile's addresses as suppressions name them.
fn addresses(profile: &Profile) -> Vec<(Channel, &str)> {
    let mut out = Vec::new();
    out.extend(profile.email.as_deref().map(|a| (Channel::Email, a)));
    out.extend(profile.phone.as_deref().map(|a| (Channel::Sms, a)));
    out.extend(profile.whatsapp.as_deref().map(|a| (Channel::Whatsapp, a)));
    out.extend(profile.telegram_chat_id.as_deref().map(|a| (Channel::Telegram, a)));
    out.extend(profile.webhook_url.as_deref().map(|a| (Channel::Webhook, a)));
    out
}

/// Every notification of the user, every page.
async fn all_notifications(deps: &ErasureDeps, user: &UserId) -> Result<Vec<Notification>, StoreError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = deps.notifications.list_for_user(user, 100, cursor.as_deref()).await?;
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// Erases the user (see the module's documentation); `NotFound` when there was nothing at all
/// to erase (never known, or erased before: a repeat changes nothing and answers 404).
pub async fn erase_user(deps: &ErasureDeps, tenant: &crate::domain::Tenant, user_id: &str) -> Result<Erasure, QueryError> {
    let user = parse_user_id(tenant, user_id)?;
    let now = deps.clock.now();
    let (profile, preferences) = deps.profiles.get_recipient(&user).await?;
    let mut erasure = Erasure {
        user_id: user.clone(),
        profile: profile.is_some(),
        preferences: preferences.is_some(),
        connections: 0,
        suppressions: 0,
        notifications_scrubbed: 0,
        notifications_canceled: 0,
        event_payloads_scrubbed: 0,
    };

    // Every event of the user that has a notification: its unsent notifications canceled, and
    // a canceled record written for each channel without one (a send job queued but not yet
    // claimed meets it and is dropped, writing nothing).
    let notifications = all_notifications(deps, &user).await?;
    let events: BTreeSet<EventId> = notifications.iter().map(|n| n.event_id.clone()).collect();
    let cancel = Transition::to(Status::Canceled, now).reason(reason::USER_ERASED).lease_until(None);
    let mut seen: BTreeMap<NotificationId, Notification> = notifications.into_iter().map(|n| (n.notification_id.clone(), n)).collect();
    for event_id in &events {
        let record = deps.events.get_event(event_id).await?;
        let unsent = cancel_unsent(deps.notifications.as_ref(), &deps.catalog, event_id, record.as_ref(), &cancel).await?;
        for canceled in &unsent.canceled {
            erasure.notifications_canceled += 1;
            deps.callbacks.emit(canceled).await.map_err(|e| StoreError::Unavailable(format!("status callback not queued: {e}")))?;
        }
        seen.extend(unsent.canceled.into_iter().chain(unsent.unchanged).map(|n| (n.notification_id.clone(), n)));
    }
    for id in seen.keys() {
        if deps.notifications.scrub_content(id).await? {
            erasure.notifications_scrubbed += 1;
        }
    }
    for event_id in &events {
        if deps.events.scrub_event_payload(event_id).await? {
            erasure.event_payloads_scrubbed += 1;
        }
    }

    for c in deps.connections.connections_of(&user, now).await? {
        if deps.connections.delete_connection(&c.connection_id).await?.is_some() {
            erasure.connections += 1;
        }
    }
    if let Some(profile) = &profile {
        for (channel, address) in addresses(profile) {
            if deps.suppressions.remove_suppression(tenant, channel, address).await? {
                erasure.suppressions += 1;
            }
        }
    }
    if deps.profiles.delete_recipient(&user).await? && !(erasure.profile || erasure.preferences) {
        // Written between the read above and now: deleted all the same.
        erasure.profile = true;
    }

    if !erasure.erased_anything() {
        return Err(QueryError::NotFound);
    }
    // Counts only: never the addresses or content.
    tracing::info!(
        profile = erasure.profile,
        connections = erasure.connections,
        suppressions = erasure.suppressions,
        notifications_scrubbed = erasure.notifications_scrubbed,
        notifications_canceled = erasure.notifications_canceled,
        event_payloads_scrubbed = erasure.event_payloads_scrubbed,
        "user erased"
    );
    Ok(erasure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notification::reason;
    use crate::handlers::sqs_batch::RecordOutcome;
    use crate::handlers::test_support::*;
    use crate::jobs::{SendJob, encode};
    use crate::domain::NotificationId;
    use crate::ports::{Connection, Suppression, SuppressionReason};

    async fn routed(h: &Harness, event_id: &str) -> EventId {
        let job = h.route_job(&event("order.completed", event_id)).await;
        let body = encode(&job);
        let outcome = crate::handlers::router::handle_route_record(&h.router(), record("events-fast.fifo", &body, 1)).await;
        assert_eq!(outcome, RecordOutcome::Done);
        job.event.event_id
    }

    async fn suppress(h: &Harness, channel: Channel, address: &str) {
        let s = Suppression { tenant: crate::domain::Tenant::default_tenant(), channel, address: address.into(), reason: SuppressionReason::HardBounce, created_at: t0(), notification_id: None };
        h.store.inner.suppress(&s).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn erasure_removes_the_user_and_scrubs_what_stays_then_answers_404() {
        let h = Harness::new().await;
        let event_id = routed(&h, "evt-erase-1").await;
        // Email and push queued, not yet claimed (nothing written); the WebSocket frame sent.
        let queued: Vec<SendJob> = [h.take::<SendJob>("send-email-fast.fifo").await, h.take::<SendJob>("send-push-fast.fifo").await].concat();
        let ws_job: Vec<SendJob> = h.take("send-websocket-fast.fifo").await;
        h.claim(&ws_job[0]).await;
        let ws = NotificationId::derive(&event_id, Channel::Websocket);
        h.force(&ws, Transition::to(Status::Sent, t0()).last_error("earlier: timeout")).await;
        suppress(&h, Channel::Email, &EMAIL.to_uppercase()).await;
        suppress(&h, Channel::Sms, PHONE).await;
        suppress(&h, Channel::Email, "someone.else@example.com").await;
        let until = t0().checked_add(std::time::Duration::from_secs(3600)).unwrap();
        h.store.inner.put_connection(&Connection { connection_id: "c-1".into(), user_id: user(), connected_at: t0(), expires_at: until }).await.unwrap();
        let deps = crate::wiring::erasure(&h.ports, h.catalog.clone(), &h.settings);

        let erased = erase_user(&deps, &crate::domain::Tenant::default_tenant(), USER).await.expect("erased");

        let expected = Erasure {
            user_id: user(),
            profile: true,
            preferences: false,
            connections: 1,
            suppressions: 2,
            notifications_scrubbed: 1,
            notifications_canceled: 2,
            event_payloads_scrubbed: 1,
        };
        assert_eq!(erased, expected);
        assert_eq!(h.store.inner.get_recipient(&user()).await.unwrap(), (None, None));
        assert!(h.store.inner.connections_of(&user(), t0()).await.unwrap().is_empty());
        assert!(!h.store.inner.is_suppressed(&crate::domain::Tenant::default_tenant(), Channel::Email, EMAIL).await.unwrap());
        assert!(h.store.inner.is_suppressed(&crate::domain::Tenant::default_tenant(), Channel::Email, "someone.else@example.com").await.unwrap(), "other addresses stay");
        let left = h.store.inner.list_for_event(&event_id).await.unwrap();
        assert_eq!(left.len(), 3, "the notifications stay, so the event's status is answerable");
        assert!(left.iter().all(|n| n.title.is_none() && n.last_error.is_none()), "{left:?}");
        let statuses: Vec<_> = left.iter().map(|n| (n.channel, n.status, n.reason.as_deref())).collect();
        assert_eq!(
            statuses,
            [
                (Channel::Email, Status::Canceled, Some(reason::USER_ERASED)),
                (Channel::Push, Status::Canceled, Some(reason::USER_ERASED)),
                (Channel::Websocket, Status::Sent, None)
            ]
        );
        // The queued jobs come to their sender after the erasure: dropped, unsent, nothing written.
        let provider = ScriptedSender::new([]);
        let sender = h.sender(provider.clone());
        for job in &queued {
            assert_eq!(crate::handlers::send::deliver(&sender, job, 1).await, RecordOutcome::Done);
        }
        assert_eq!(provider.calls(), 0, "nothing sent after the erasure");
        assert_eq!(h.store.inner.list_for_event(&event_id).await.unwrap(), left, "no title written back");
        let record = h.store.inner.get_event(&event_id).await.unwrap().expect("the event stays");
        assert!(record.event.payload.is_null());
        assert_eq!(record.event.event_type, "order.completed");

        assert_eq!(erase_user(&deps, &crate::domain::Tenant::default_tenant(), USER).await, Err(QueryError::NotFound), "nothing left to erase");
        assert_eq!(erase_user(&deps, &crate::domain::Tenant::default_tenant(), "nobody").await, Err(QueryError::NotFound));
        assert!(matches!(erase_user(&deps, &crate::domain::Tenant::default_tenant(), "not a/valid id").await, Err(QueryError::Invalid(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn an_erasure_that_fails_midway_finishes_when_retried() {
        let h = Harness::new().await;
        routed(&h, "evt-erase-2").await;
        suppress(&h, Channel::Email, EMAIL).await;
        h.store.fail_next("delete_recipient", 1);
        let deps = crate::wiring::erasure(&h.ports, h.catalog.clone(), &h.settings);

        assert!(matches!(erase_user(&deps, &crate::domain::Tenant::default_tenant(), USER).await, Err(QueryError::Store(_))));
        assert!(h.store.inner.get_profile(&user()).await.unwrap().is_some(), "the profile goes last");

        let erased = erase_user(&deps, &crate::domain::Tenant::default_tenant(), USER).await.expect("the retry finishes");
        assert!(erased.profile);
        assert_eq!((erased.suppressions, erased.notifications_scrubbed), (0, 0), "done by the first try");
        assert_eq!(h.store.inner.get_profile(&user()).await.unwrap(), None);
    }
}
