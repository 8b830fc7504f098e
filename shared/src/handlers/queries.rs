//! The read side and the recipient API: event status, profiles, preferences, the inbox, and
//! WebSocket tokens.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::auth::WsTokens;
use crate::domain::{Channel, EventId, FieldError, Guard, Notification, Preferences, Profile, Status, Tenant, Transition, UserId};
use crate::ports::{Clock, EventRecord, EventStore, NotificationStore, Page, ProfileStore, StoreError, Suppression, SuppressionStore, TransitionOutcome};

pub struct QueryDeps {
    /// The event types, for the catalog routes and previews.
    pub catalog: Arc<crate::catalog::Catalog>,
    /// Where a cancellation's final statuses are announced.
    pub callbacks: super::callbacks::StatusCallbacks,
    pub events: Arc<dyn EventStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub profiles: Arc<dyn ProfileStore>,
    pub suppressions: Arc<dyn SuppressionStore>,
    pub tokens: Arc<WsTokens>,
    pub clock: Arc<dyn Clock>,
    /// The user's live WebSockets, told of every inbox change.
    pub live: Arc<super::ws::WebSocketFanout>,
    /// Browser origins allowed to call the inbox routes (CORS).
    pub cors_origins: Arc<Vec<String>>,
    /// `GET /v1/dead-letters`, `POST /v1/dead-letters/replay`.
    pub dead_letters: super::dead_letters::DeadLetterApiDeps,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("not found")]
    NotFound,
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `GET /v1/events/{event_id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventStatus {
    #[serde(flatten)]
    pub record: EventRecord,
    pub notifications: Vec<Notification>,
}

/// The caller's event id, scoped by its tenant; one that cannot be an event id is not found.
fn parse_event_id(tenant: &Tenant, raw: &str) -> Result<EventId, QueryError> {
    EventId::parse(raw).map(|id| tenant.event(&id)).map_err(|_| QueryError::NotFound)
}

/// The caller's user id, scoped by its tenant.
pub fn parse_user_id(tenant: &Tenant, raw: &str) -> Result<UserId, QueryError> {
    UserId::parse(raw).map(|id| tenant.user(&id)).map_err(|m| QueryError::Invalid(vec![FieldError::new("/user_id", m)]))
}

pub async fn event_status(deps: &QueryDeps, tenant: &Tenant, event_id: &str) -> Result<EventStatus, QueryError> {
    let id = parse_event_id(tenant, event_id)?;
    let record = deps.events.get_event(&id).await?.ok_or(QueryError::NotFound)?;
    let notifications = deps.notifications.list_for_event(&id).await?;
    Ok(EventStatus { record, notifications })
}

/// What `DELETE /v1/events/{event_id}` did: the notifications it canceled now, and the others as
/// they are (sending, sent, failed, skipped — or canceled before: the call is idempotent).
///
/// `canceled` also lists the `canceled` records written for channels that had no notification
/// yet: a channel of the event whose send job is queued but not yet claimed by its sender (the
/// router leaves that notification's first write to the sender's claim), or whose event is not
/// routed yet; and a fallback channel that a notification still sending, or failed with its
/// fallback requested, may yet be routed to. Each such record stops what would have created it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Cancellation {
    pub event_id: EventId,
    pub canceled: Vec<Notification>,
    pub unchanged: Vec<Notification>,
}

/// Cancels every notification of the event that has not started sending (`pending`,
/// `scheduled` → `canceled`), each under a guard, so a sender that claims it at the same moment
/// either wins (and it is sent) or finds it canceled (and drops its job); and writes a `canceled`
/// record for each channel without one yet (see [`Cancellation`]). Every canceled
/// notification's status callback is queued (again, on a repeat: dropped as a duplicate).
pub async fn cancel_event(deps: &QueryDeps, tenant: &Tenant, event_id: &str) -> Result<Cancellation, QueryError> {
    let id = parse_event_id(tenant, event_id)?;
    let record = deps.events.get_event(&id).await?.ok_or(QueryError::NotFound)?;
    let now = deps.clock.now();
    let change = Transition::to(Status::Canceled, now).lease_until(None);
    let Unsent { canceled, unchanged } = cancel_unsent(deps.notifications.as_ref(), &deps.catalog, &id, Some(&record), &change).await?;
    for n in canceled.iter().chain(unchanged.iter().filter(|n| n.status == Status::Canceled)) {
        deps.callbacks.emit(n).await.map_err(|e| StoreError::Unavailable(format!("status callback not queued: {e}")))?;
    }
    tracing::info!(event_id = %id, canceled = canceled.len(), "event canceled");
    Ok(Cancellation { event_id: id, canceled, unchanged })
}

/// What [`cancel_unsent`] did.
#[derive(Debug, Default)]
pub(super) struct Unsent {
    /// Canceled now: pending or scheduled ones, and records written canceled in place of none.
    pub canceled: Vec<Notification>,
    /// The others, as they are.
    pub unchanged: Vec<Notification>,
}

/// Applies `cancel` (a transition to `canceled`) to every notification of the event that has not
/// started sending, and — given its record — writes a canceled record (`cancel` applied to the
/// notification as routed, created only where none exists) for every channel the event is
/// routed to that has no notification yet, and for every fallback channel a notification still
/// sending, or failed with its fallback requested, may lead to. A send job queued but not yet
/// claimed then meets a final notification and is dropped; so is a route job not yet routed.
/// Shared by the cancellation and the erasure.
pub(super) async fn cancel_unsent(
    store: &dyn NotificationStore,
    catalog: &crate::catalog::Catalog,
    event_id: &EventId,
    record: Option<&EventRecord>,
    cancel: &Transition,
) -> Result<Unsent, StoreError> {
    let mut out = Unsent::default();
    let mut by_channel: BTreeMap<Channel, Notification> = BTreeMap::new();
    for n in store.list_for_event(event_id).await? {
        let n = cancel_one(store, n, cancel, &mut out).await?;
        by_channel.insert(n.channel, n);
    }
    let Some((record, event_type)) = record.and_then(|r| catalog.event_type(&r.event.event_type).map(|t| (r, t))) else {
        return Ok(out);
    };
    let event = &record.event;
    let mut next: VecDeque<(Channel, Option<Channel>)> = crate::routing::requested_channels(event, event_type).into_iter().map(|c| (c, None)).collect();
    let mut seen = BTreeSet::new();
    while let Some((channel, fallback_for)) = next.pop_front() {
        if !seen.insert(channel) {
            continue;
        }
        let n = match by_channel.get(&channel) {
            Some(n) => n.clone(),
            None => {
                let routed = Notification { fallback_for, ..Notification::pending(&event.event_id, &event.event_type, &event.user_id, channel, record.priority, cancel.at) };
                let tombstone = cancel.apply(&routed);
                if store.create(&tombstone).await? {
                    out.canceled.push(tombstone.clone());
                    tombstone
                } else {
                    // Written meanwhile (claimed, or routed): as any other.
                    match store.get(&routed.notification_id).await? {
                        Some(n) => cancel_one(store, n, cancel, &mut out).await?,
                        None => continue,
                    }
                }
            }
        };
        let fallback = match n.status {
            Status::Sending => crate::handlers::fallback::owed_fallback(catalog, &event.event_type, channel).map(|f| f.channel),
            Status::Failed => n.fallback.map(|f| f.channel),
            _ => None,
        };
        next.extend(fallback.map(|f| (f, Some(channel))));
    }
    Ok(out)
}

/// Cancels `n` if it is pending or scheduled; answers it as it is after.
async fn cancel_one(store: &dyn NotificationStore, n: Notification, cancel: &Transition, out: &mut Unsent) -> Result<Notification, StoreError> {
    if !matches!(n.status, Status::Pending | Status::Scheduled) {
        out.unchanged.push(n.clone());
        return Ok(n);
    }
    let guard = Guard::StatusIn(vec![Status::Pending, Status::Scheduled]);
    Ok(match store.transition(&n.notification_id, &guard, cancel).await? {
        TransitionOutcome::Applied(done) => {
            out.canceled.push(done.clone());
            done
        }
        TransitionOutcome::Rejected(now_is) => {
            out.unchanged.push(now_is.clone());
            now_is
        }
        TransitionOutcome::NotFound => n,
    })
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, QueryError> {
    serde_json::from_slice(body).map_err(|e| {
        // serde names the field at fault in its message; point at the root with it.
        QueryError::Invalid(vec![FieldError::new("", e.to_string())])
    })
}

pub async fn put_profile(deps: &QueryDeps, tenant: &Tenant, user_id: &str, body: &[u8]) -> Result<Profile, QueryError> {
    let user = parse_user_id(tenant, user_id)?;
    let profile: Profile = parse_body(body)?;
    profile.validate().map_err(QueryError::Invalid)?;
    deps.profiles.put_profile(&user, &profile).await?;
    Ok(profile)
}

pub async fn get_profile(deps: &QueryDeps, tenant: &Tenant, user_id: &str) -> Result<Profile, QueryError> {
    let user = parse_user_id(tenant, user_id)?;
    deps.profiles.get_profile(&user).await?.ok_or(QueryError::NotFound)
}

pub async fn put_preferences(deps: &QueryDeps, tenant: &Tenant, user_id: &str, body: &[u8]) -> Result<Preferences, QueryError> {
    set_preferences_of(deps, &parse_user_id(tenant, user_id)?, body).await
}

/// Replaces a user's preferences (the user's own, from the inbox, or through the API).
pub async fn set_preferences_of(deps: &QueryDeps, user: &UserId, body: &[u8]) -> Result<Preferences, QueryError> {
    let user = user.clone();
    let preferences: Preferences = parse_body(body)?;
    preferences.validate().map_err(QueryError::Invalid)?;
    deps.profiles.put_preferences(&user, &preferences).await?;
    Ok(preferences)
}

/// A user's preferences; none stored means everything is opted in.
pub async fn get_preferences(deps: &QueryDeps, tenant: &Tenant, user_id: &str) -> Result<Preferences, QueryError> {
    preferences_of(deps, &parse_user_id(tenant, user_id)?).await
}

pub async fn preferences_of(deps: &QueryDeps, user: &UserId) -> Result<Preferences, QueryError> {
    Ok(deps.profiles.get_preferences(user).await?.unwrap_or_default())
}

pub async fn user_notifications(deps: &QueryDeps, tenant: &Tenant, user_id: &str, limit: Option<usize>, cursor: Option<&str>) -> Result<Page<Notification>, QueryError> {
    let user = parse_user_id(tenant, user_id)?;
    let limit = limit.unwrap_or(20).clamp(1, 100);
    Ok(deps.notifications.list_for_user(&user, limit, cursor).await?)
}

/// A short-lived token for `GET /v1/ws?token=…`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WsToken {
    pub token: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: jiff::Timestamp,
}

pub fn mint_ws_token(deps: &QueryDeps, tenant: &Tenant, user_id: &str) -> Result<WsToken, QueryError> {
    let user = parse_user_id(tenant, user_id)?;
    let (token, expires_at) = deps.tokens.mint(&user, deps.clock.now());
    Ok(WsToken { token, expires_at })
}

/// `GET /v1/suppressions`: every suppressed address, newest first.
pub async fn list_suppressions(deps: &QueryDeps, tenant: &Tenant, limit: Option<usize>, cursor: Option<&str>) -> Result<Page<Suppression>, QueryError> {
    let limit = limit.unwrap_or(20).clamp(1, 100);
    Ok(deps.suppressions.list_suppressions(tenant, limit, cursor).await?)
}

/// `DELETE /v1/suppressions/{channel}/{address}`: lifts it (e-mail addresses in any case);
/// `NotFound` when there was none.
pub async fn remove_suppression(deps: &QueryDeps, tenant: &Tenant, channel: &str, address: &str) -> Result<(), QueryError> {
    let channel: Channel = channel.parse().map_err(|m: String| QueryError::Invalid(vec![FieldError::new("/channel", m)]))?;
    if address.trim().is_empty() {
        return Err(QueryError::NotFound);
    }
    match deps.suppressions.remove_suppression(tenant, channel, address).await? {
        true => Ok(()),
        false => Err(QueryError::NotFound),
    }
}

// ---------------------------------------------------------------------------------------------
// The catalog: `GET /v1/event-types`, `GET /v1/event-types/{type}`, and a render without sending.

/// One event type as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeView {
    pub event_type: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Transactional messages never carry the one-click unsubscribe link.
    pub transactional: bool,
    pub priority: crate::domain::Priority,
    pub channels: Vec<Channel>,
    pub fallback: std::collections::BTreeMap<Channel, Channel>,
    pub fallback_locale: String,
    pub locales: Vec<String>,
    /// The payload's JSON Schema (only for one type).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<serde_json::Value>,
}

fn view(t: &crate::catalog::EventType, with_schema: bool) -> EventTypeView {
    EventTypeView {
        event_type: t.name.clone(),
        description: t.description.clone(),
        category: t.category.clone(),
        transactional: t.transactional,
        priority: t.priority,
        channels: t.channels.clone(),
        fallback: t.fallback.clone(),
        fallback_locale: t.fallback_locale.clone(),
        locales: t.locales.clone(),
        schema: with_schema.then(|| t.schema_json.clone()),
    }
}

pub fn event_types(deps: &QueryDeps) -> Vec<EventTypeView> {
    deps.catalog.event_types().map(|t| view(t, false)).collect()
}

pub fn event_type(deps: &QueryDeps, name: &str) -> Result<EventTypeView, QueryError> {
    deps.catalog.event_type(name).map(|t| view(t, true)).ok_or(QueryError::NotFound)
}

/// What to preview: a payload, and optionally the locale and channels (default: the type's
/// channels and their fallbacks).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "payload": {"order_id": "A-17", "total": "59.90", "currency": "EUR", "items": [{"name": "Coffee beans", "quantity": 2}]},
    "locale": "en", "channels": ["email"]
}))]
pub struct PreviewRequest {
    /// The event's payload, checked against the type's JSON Schema.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub channels: Option<Vec<Channel>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub event_type: String,
    /// Each channel's message, as it would be sent (nothing is sent).
    pub messages: Vec<crate::ports::RenderedMessage>,
}

/// Renders every channel's message for `payload` without sending anything: a payload that fails
/// the schema, or a template that needs a variable the payload lacks, is a `422` naming it.
pub fn preview(deps: &QueryDeps, name: &str, body: &[u8]) -> Result<Preview, QueryError> {
    let t = deps.catalog.event_type(name).ok_or(QueryError::NotFound)?;
    let request: PreviewRequest = parse_body(body)?;
    t.check_payload(&request.payload).map_err(QueryError::Invalid)?;
    let channels: Vec<Channel> = request.channels.clone().unwrap_or_else(|| {
        let mut c = t.channels.clone();
        c.extend(t.fallback.values().filter(|f| !t.channels.contains(f)));
        c
    });
    let wanted: Vec<&str> = request.locale.as_deref().into_iter().collect();
    let event_view = serde_json::json!({"event_id": "preview", "event_type": name});
    let user_view = serde_json::json!({"id": "preview", "locale": request.locale});
    let mut messages = Vec::new();
    let mut errors = Vec::new();
    for channel in channels {
        if channel == Channel::Webhook {
            let event = crate::domain::Event {
                event_id: EventId::parse("preview").expect("a valid id"),
                event_type: name.to_owned(),
                user_id: UserId::parse("preview").expect("a valid id"),
                payload: request.payload.clone(),
                priority: None,
                channels: None,
                locale: request.locale.clone(),
                send_after: None,
                occurred_at: None,
            };
            messages.push(crate::catalog::webhook_message(&event, request.locale.as_deref().unwrap_or(&t.fallback_locale)));
            continue;
        }
        let Some(locale) = deps.catalog.templates().resolve_locale(name, channel, &wanted, &t.fallback_locale) else {
            errors.push(FieldError::new("/channels", format!("{name} has no {channel} templates")));
            continue;
        };
        let ctx = crate::catalog::RenderContext { payload: &request.payload, user: user_view.clone(), event: event_view.clone() };
        match deps.catalog.templates().render(name, &locale, channel, &ctx) {
            Ok(message) => messages.push(message),
            Err(e) => errors.push(FieldError::new("/payload", e.to_string())),
        }
    }
    if !errors.is_empty() {
        return Err(QueryError::Invalid(errors));
    }
    Ok(Preview { event_type: name.to_owned(), messages })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::send::deliver;
    use crate::handlers::sqs_batch::RecordOutcome;
    use crate::handlers::test_support::*;
    use crate::jobs::SendJob;
    use crate::domain::{FallbackProgress, NotificationId};

    const ORDER_QUEUES: [&str; 3] = ["send-email-fast.fifo", "send-push-fast.fifo", "send-websocket-fast.fifo"];

    fn deps(h: &Harness) -> QueryDeps {
        let tokens = Arc::new(WsTokens::new(&[7u8; 32], std::time::Duration::from_secs(60)).unwrap());
        crate::wiring::queries(&h.ports, h.catalog.clone(), tokens, Arc::new(crate::adapters::memory::MemoryConnectionPoster::default()), &h.settings)
    }

    async fn cancel(h: &Harness, event_id: &str) -> Cancellation {
        cancel_event(&deps(h), &Tenant::default_tenant(), event_id).await.expect("canceled")
    }

    fn channels(items: &[Notification]) -> Vec<(Channel, Status)> {
        let mut out: Vec<_> = items.iter().map(|n| (n.channel, n.status)).collect();
        out.sort_by_key(|(c, _)| crate::ports::store::channel_rank(*c));
        out
    }

    /// The order event routed: its three send jobs queued, nothing written.
    async fn routed(h: &Harness, event_id: &str) -> Vec<SendJob> {
        let job = h.route_job(&event("order.completed", event_id)).await;
        crate::handlers::router::route_event(&h.router(), &job).await.unwrap();
        let mut jobs = Vec::new();
        for queue in ORDER_QUEUES {
            jobs.extend(h.take::<SendJob>(queue).await);
        }
        jobs
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_notifications_queued_but_not_yet_claimed() {
        let h = Harness::new().await;
        let jobs = routed(&h, "evt-c-1").await;
        assert!(h.store.inner.list_for_event(&jobs[0].event_id).await.unwrap().is_empty(), "nothing written yet");

        let answer = cancel(&h, "evt-c-1").await;

        let all = [(Channel::Email, Status::Canceled), (Channel::Push, Status::Canceled), (Channel::Websocket, Status::Canceled)];
        assert_eq!(channels(&answer.canceled), all);
        assert!(answer.unchanged.is_empty());
        assert!(answer.canceled.iter().all(|n| n.title.is_none() && n.attempts == 0 && n.reason.is_none()), "no content in them");
        let provider = ScriptedSender::new([]);
        let sender = h.sender(provider.clone());
        for job in &jobs {
            assert_eq!(deliver(&sender, job, 1).await, RecordOutcome::Done);
        }
        assert_eq!(provider.calls(), 0, "the queued jobs meet canceled notifications and are dropped");
        let stored = h.store.inner.list_for_event(&jobs[0].event_id).await.unwrap();
        assert_eq!(stored, answer.canceled, "and write nothing");

        // Idempotent: a repeat cancels nothing more.
        let again = cancel(&h, "evt-c-1").await;
        assert!(again.canceled.is_empty());
        assert_eq!(channels(&again.unchanged), all);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_before_routing_stops_the_event() {
        let h = Harness::new().await;
        let job = h.route_job(&event("order.completed", "evt-c-2")).await; // accepted, not routed

        let answer = cancel(&h, "evt-c-2").await;
        assert_eq!(answer.canceled.len(), 3);

        crate::handlers::router::route_event(&h.router(), &job).await.unwrap();
        let provider = ScriptedSender::new([]);
        let sender = h.sender(provider.clone());
        for queue in ORDER_QUEUES {
            for queued in h.take::<SendJob>(queue).await {
                assert_eq!(deliver(&sender, &queued, 1).await, RecordOutcome::Done);
            }
        }
        assert_eq!(provider.calls(), 0);
        assert!(h.store.inner.list_for_event(&job.event.event_id).await.unwrap().iter().all(|n| n.status == Status::Canceled));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_leaves_what_started_and_stops_the_fallback_it_may_lead_to() {
        let h = Harness::new().await;
        let jobs = routed(&h, "evt-c-3").await;
        let (email, push, websocket) = (&jobs[0], &jobs[1], &jobs[2]);
        h.claim(push).await; // sending: may fail into its SMS fallback
        h.claim(websocket).await;
        h.force(&websocket.notification_id, Transition::to(Status::Sent, t0())).await;
        h.create(email).await; // pending (written before, or back after a retry)

        let answer = cancel(&h, "evt-c-3").await;

        assert_eq!(channels(&answer.canceled), [(Channel::Email, Status::Canceled), (Channel::Sms, Status::Canceled)]);
        assert_eq!(channels(&answer.unchanged), [(Channel::Push, Status::Sending), (Channel::Websocket, Status::Sent)]);
        let sms = answer.canceled.iter().find(|n| n.channel == Channel::Sms).unwrap();
        assert_eq!((sms.notification_id.clone(), sms.fallback_for), (NotificationId::derive(&push.event_id, Channel::Sms), Some(Channel::Push)));

        // The push fails, its fallback is requested and routed: the SMS job meets its canceled record.
        h.force(&push.notification_id, Transition::to(Status::Failed, t0()).fallback(Some(FallbackProgress { channel: Channel::Sms, queued: false }))).await;
        let record = h.store.inner.get_event(&push.event_id).await.unwrap().unwrap();
        let fallback = crate::jobs::RouteJob {
            event: record.event,
            priority: record.priority,
            accepted_at: record.accepted_at,
            fallback: Some(crate::jobs::FallbackRequest { channel: Channel::Sms, replaces: Channel::Push }),
        };
        crate::handlers::router::route_event(&h.router(), &fallback).await.unwrap();
        let sms_jobs: Vec<SendJob> = h.take("send-sms-fast.fifo").await;
        let provider = ScriptedSender::new([]);
        assert_eq!(deliver(&h.sender(provider.clone()), &sms_jobs[0], 1).await, RecordOutcome::Done);
        assert_eq!(provider.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_event_gets_no_canceled_records() {
        let h = Harness::new().await;
        let jobs = routed(&h, "evt-c-4").await;
        for job in &jobs {
            h.claim(job).await;
            h.force(&job.notification_id, Transition::to(Status::Sent, t0())).await;
        }

        let answer = cancel(&h, "evt-c-4").await;

        assert!(answer.canceled.is_empty(), "no fallback can come of a sent notification: {:?}", answer.canceled);
        assert_eq!(answer.unchanged.len(), 3);
    }
}
