//! The router: for each accepted event, decide its channels, render each message and queue the
//! send jobs (or hold them until their time). A notification queued at once is not written here:
//! its job carries its record, which the sender's claim creates (`SendJob::record`); what is
//! held (scheduled), skipped or failed here is recorded here.

use jiff::Timestamp;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::fallback::{fallback_message, mark_fallback_queued, owed_fallback};
use super::sqs_batch::{ParkReason, Record, RecordOutcome, RetryPolicy};
use crate::catalog::{Catalog, RenderContext};
use crate::domain::ids::message_group_for;
use crate::domain::notification::reason;
use crate::domain::schedule::deliver_after;
use crate::domain::{Channel, Notification, NotificationId, Preferences, Status};
use crate::jobs::{DeferredJob, RouteJob, SendJob, decode, encode};
use crate::metrics;
use crate::ports::queue::{MAX_DELAY, MAX_MESSAGE_BYTES};
use crate::ports::suppression::suppressible_address;
use crate::ports::{Clock, NotificationStore, OutgoingMessage, ProfileStore, QueueSender, SuppressionStore};
use crate::routing::{Decision, decide, requested_channels, wanted_locales};
use crate::topology::{DEFERRED_QUEUE, send_queue};

pub struct RouterDeps {
    pub catalog: Arc<Catalog>,
    pub profiles: Arc<dyn ProfileStore>,
    pub notifications: Arc<dyn NotificationStore>,
    /// Addresses not to send to any more: delivering to one is skipped as `suppressed`.
    pub suppressions: Arc<dyn SuppressionStore>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
    /// Backoff after a transient error (store or queue down), by the record's receive count.
    pub retry: RetryPolicy,
    /// Where final statuses are announced to the producer.
    pub callbacks: super::callbacks::StatusCallbacks,
    /// Each tenant's sender identity (e-mail `From`, SMS sender id), stamped on its messages.
    pub tenants: Arc<crate::ports::TenantSettingsCache>,
    /// Where a record of `events-*-dlq` that cannot be routed is recorded.
    pub dead_letters: Arc<dyn crate::ports::DeadLetterStore>,
    /// The one-click unsubscribe links of non-transactional email (none: no links).
    pub unsubscribe: Option<Arc<crate::auth::UnsubscribeLinks>>,
}

/// The largest rendered message (all its parts): a template fed a huge payload fails as a
/// `template_error` instead of reaching a provider.
pub const MAX_RENDERED_BYTES: usize = 100 * 1024;

fn rendered_bytes(message: &crate::ports::RenderedMessage) -> usize {
    message.parts.values().map(String::len).sum()
}

/// What routing did with one channel, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub channel: Channel,
    pub notification_id: NotificationId,
    pub status: Status,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("transient: {0}")]
    Transient(String),
}

/// One record of `events-<lane>.fifo`, or of its dead-letter queue (`events-<lane>-dlq.fifo`),
/// which the router consumes too: an accepted event that got there (its queue's redrive, after
/// hours of store or queue trouble) is routed like any other, so that queue is never a dead end.
pub async fn handle_route_record(deps: &RouterDeps, record: Record<'_>) -> RecordOutcome {
    let job: RouteJob = match decode(record.body, "route job") {
        Ok(job) => job,
        Err(e) => {
            // Not from our ingest: parked on the dead-letter queue, and recorded there as a dead
            // letter an operator can see.
            tracing::error!(error = %e, "unreadable route job");
            let (store, clock) = (deps.dead_letters.as_ref(), deps.clock.as_ref());
            return super::dead_letters::park_or_record(store, clock, &deps.retry, &record, ParkReason::Unreadable, None).await;
        }
    };
    match route_event(deps, &job).await {
        Ok(_) => RecordOutcome::Done,
        Err(e) => {
            tracing::warn!(error = %e, event_id = %job.event.event_id, "routing failed, will retry");
            RecordOutcome::Retry(deps.retry.backoff(record.receive_count))
        }
    }
}

fn transient(e: impl std::fmt::Display) -> RouteError {
    RouteError::Transient(e.to_string())
}

pub async fn route_event(deps: &RouterDeps, job: &RouteJob) -> Result<Vec<Routed>, RouteError> {
    let event = &job.event;
    let Some(event_type) = deps.catalog.event_type(&event.event_type) else {
        // The catalog lost a type that ingest accepted (a deploy removed it): nothing can render it.
        tracing::error!(event_id = %event.event_id, event_type = %event.event_type, "event type no longer in the catalog");
        return Ok(Vec::new());
    };
    let (profile, preferences) = deps.profiles.get_recipient(&event.user_id).await.map_err(transient)?;
    let (profile, preferences): (_, Preferences) = (profile.unwrap_or_default(), preferences.unwrap_or_default());
    let now = deps.clock.now();

    let channels: Vec<Channel> = match &job.fallback {
        Some(f) => vec![f.channel],
        None => requested_channels(event, event_type),
    };
    let deliver_at = deliver_after(now, event.send_after, job.priority, preferences.quiet_hours.as_ref(), profile.timezone.as_deref());
    let locales = wanted_locales(event, &profile);
    // Templates see the ids as the producer sent them, never the tenant prefix.
    let user_view = json!({ "id": crate::domain::tenant::local_part(event.user_id.as_str()), "locale": profile.locale, "timezone": profile.timezone });
    let event_view = json!({ "event_id": crate::domain::tenant::local_part(event.event_id.as_str()), "event_type": event.event_type, "occurred_at": event.occurred_at });
    // Converted into template values once for every channel's parts.
    let template_context = RenderContext { payload: &event.payload, user: user_view, event: event_view }.prepare();

    let sender = deps.tenants.get(&crate::domain::Tenant::of(event.user_id.as_str()), now).await.map_err(transient)?;
    let mut routed = Vec::new();
    let mut outgoing: BTreeMap<String, Vec<OutgoingMessage>> = BTreeMap::new();
    // Notifications that failed here (template errors) and owe their fallback.
    let mut owed = Vec::new();
    for channel in channels {
        let notification_id = NotificationId::derive(&event.event_id, channel);
        let mut notification = Notification {
            fallback_for: job.fallback.as_ref().map(|f| f.replaces),
            ..Notification::pending(&event.event_id, &event.event_type, &event.user_id, channel, job.priority, now)
        };
        let mut send_job = None;
        let mut decision = decide(channel, event_type.category.as_deref(), &profile, &preferences);
        if let Decision::Deliver(address) = &decision
            && let Some(raw) = suppressible_address(address)
            && deps.suppressions.is_suppressed(&crate::domain::Tenant::of(event.user_id.as_str()), channel, raw).await.map_err(transient)?
        {
            decision = Decision::Skip(reason::SUPPRESSED);
        }
        match decision {
            Decision::Skip(why) => {
                notification.status = Status::Skipped;
                notification.reason = Some(why.to_owned());
            }
            Decision::Deliver(address) => {
                let rendered = if channel == Channel::Webhook {
                    let locale = locales.first().copied().unwrap_or(event_type.fallback_locale.as_str());
                    Ok(crate::catalog::webhook_message(event, locale))
                } else {
                    let locale = deps.catalog.templates().resolve_locale(&event.event_type, channel, &locales, &event_type.fallback_locale);
                    locale.ok_or_else(|| format!("no {channel} templates for {}", event.event_type)).and_then(|locale| {
                        deps.catalog.templates().render_prepared(&event.event_type, &locale, channel, &template_context).map_err(|e| e.to_string())
                    })
                };
                match rendered {
                    Err(message) => {
                        notification.status = Status::Failed;
                        notification.reason = Some(reason::TEMPLATE_ERROR.to_owned());
                        notification.last_error = Some(message);
                        notification.fallback = owed_fallback(&deps.catalog, &event.event_type, channel);
                    }
                    Ok(message) => {
                        let mut message = with_unsubscribe(deps.unsubscribe.as_deref(), event_type, channel, &event.user_id, message, now);
                        if let Some(sender) = &sender {
                            crate::ports::keys::stamp_sender(sender, channel, &mut message);
                        }
                        let queued = SendJob {
                            notification_id: notification_id.clone(),
                            event_id: event.event_id.clone(),
                            event_type: event.event_type.clone(),
                            user_id: event.user_id.clone(),
                            channel,
                            priority: job.priority,
                            address,
                            message,
                            accepted_at: job.accepted_at,
                            redrives: 0,
                            created_at: Some(now),
                            fallback_for: notification.fallback_for,
                        };
                        // The record the job carries (title, and the WebSocket's in-app body,
                        // from the message): what the sender's claim creates, or what is
                        // written here when the job is held.
                        if let Some(record) = queued.record() {
                            notification = record;
                        }
                        if let Some(at) = deliver_at {
                            notification.status = Status::Scheduled;
                            notification.deliver_after = Some(at);
                        }
                        send_job = Some(queued);
                    }
                }
            }
        }
        if let Some(job) = &send_job
            && (rendered_bytes(&job.message) > MAX_RENDERED_BYTES || encode(job).len() > MAX_MESSAGE_BYTES - 1024) {
                notification.status = Status::Failed;
                notification.reason = Some(reason::TEMPLATE_ERROR.to_owned());
                notification.last_error = Some(format!("the rendered message is larger than {} KiB", MAX_RENDERED_BYTES / 1024));
                notification.fallback = owed_fallback(&deps.catalog, &event.event_type, channel);
                send_job = None;
            }

        // Queued at once: not written here. Its sender's claim is its first write (and counts it
        // routed); a redelivered route job queues it again, which the queue's dedup id and the
        // claim make harmless. What is held, skipped or failed here is written here.
        if notification.status == Status::Pending
            && let Some(job) = send_job
        {
            let (queue, message) = outgoing_message(job, None, now);
            outgoing.entry(queue).or_default().push(message);
            routed.push(Routed { channel, notification_id, status: Status::Pending });
            continue;
        }
        let created = deps.notifications.create(&notification).await.map_err(transient)?;
        let current = if created {
            // Counted once, when created: a redelivered route job finds it and counts nothing.
            let lane = job.priority.lane();
            match notification.status {
                Status::Skipped => metrics::notification_skipped(channel, lane),
                Status::Failed => metrics::notification_failed(channel, lane),
                _ => metrics::notification_routed(channel, lane),
            }
            notification
        } else {
            // Routed before (a redelivered job): queue again only what has not run yet; the
            // queue's dedup id and the sender's claim make a second copy harmless.
            deps.notifications.get(&notification_id).await.map_err(transient)?.unwrap_or(notification)
        };
        if matches!(current.status, Status::Pending | Status::Scheduled)
            && let Some(job) = send_job {
                let (queue, message) = outgoing_message(job, current.deliver_after, now);
                outgoing.entry(queue).or_default().push(message);
            }
        // Skipped or failed here: the producer hears of it (a re-routing announces it again,
        // dropped as a repeat).
        deps.callbacks.emit(&current).await.map_err(transient)?;
        if let Some(next) = current.owes_fallback() {
            let (queue, message) = fallback_message(event, job.priority, job.accepted_at, &current, next);
            outgoing.entry(queue).or_default().push(message);
            owed.push((current.clone(), next));
        }
        routed.push(Routed { channel, notification_id, status: current.status });
    }

    for (queue, messages) in outgoing {
        deps.queue.send_batch(&queue, messages).await.map_err(transient)?;
    }
    for (failed, next) in owed {
        mark_fallback_queued(deps.notifications.as_ref(), &failed, next, now).await.map_err(transient)?;
    }
    tracing::info!(
        event_id = %event.event_id,
        routed = ?routed.iter().map(|r| (r.channel.as_str(), r.status.as_str())).collect::<Vec<_>>(),
        "event routed"
    );
    Ok(routed)
}

/// Email of an event type that is not transactional and has a category carries RFC 8058
/// one-click unsubscribe (`List-Unsubscribe: <link>`, `List-Unsubscribe-Post`), the link opting
/// the recipient out of that category's email; other channels and transactional types never do.
fn with_unsubscribe(
    links: Option<&crate::auth::UnsubscribeLinks>,
    event_type: &crate::catalog::EventType,
    channel: Channel,
    user: &crate::domain::UserId,
    message: crate::ports::RenderedMessage,
    now: Timestamp,
) -> crate::ports::RenderedMessage {
    match (links, crate::auth::unsubscribe::unsubscribe_category(event_type)) {
        (Some(links), Some(category)) if channel == Channel::Email => {
            links.headers(user, category, now).into_iter().fold(message, |m, (name, value)| m.with_header(name, value))
        }
        _ => message,
    }
}

/// A send job goes straight to its channel's lane, or to the deferred queue when it must wait.
pub fn outgoing_message(job: SendJob, deliver_after: Option<Timestamp>, now: Timestamp) -> (String, OutgoingMessage) {
    let queue = send_queue(job.channel, job.priority.lane());
    match deliver_after.filter(|at| *at > now) {
        Some(at) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default().min(MAX_DELAY);
            let body = encode(&DeferredJob { queue, deliver_after: at, job });
            (DEFERRED_QUEUE.to_owned(), OutgoingMessage::delayed(body, wait))
        }
        None => {
            let group = message_group_for(&job.user_id);
            let dedup = job.notification_id.as_str().to_owned();
            (queue, OutgoingMessage::fifo(encode(&job), group, dedup))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Event, FallbackProgress, Priority, Transition};
    use crate::handlers::test_support::*;
    use crate::jobs::FallbackRequest;

    const EVENTS_FAST: &str = "events-fast.fifo";
    const ORDER_QUEUES: [&str; 3] = ["send-email-fast.fifo", "send-push-fast.fifo", "send-websocket-fast.fifo"];

    async fn order(h: &Harness) -> RouteJob {
        h.route_job(&event("order.completed", "evt-order-A-17")).await
    }

    async fn handle(h: &Harness, job: &RouteJob, receive_count: u32) -> RecordOutcome {
        let body = encode(job);
        handle_route_record(&h.router(), record(EVENTS_FAST, &body, receive_count)).await
    }

    async fn stored(h: &Harness, job: &RouteJob) -> Vec<Notification> {
        h.store.inner.list_for_event(&job.event.event_id).await.unwrap()
    }

    async fn assert_each_queue_holds_one(h: &Harness, queues: &[&str]) {
        let depths = h.depths().await;
        let expected: BTreeMap<String, usize> = queues.iter().map(|q| (q.to_string(), 1)).collect();
        assert_eq!(depths, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_built_in_event_is_routed_to_its_channels_and_queues() {
        let h = Harness::new().await;
        let job = order(&h).await;

        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);

        assert!(stored(&h, &job).await.is_empty(), "queued at once: their senders' claims write them");
        assert_each_queue_holds_one(&h, &ORDER_QUEUES).await;
        let mut jobs: Vec<Vec<SendJob>> = Vec::new();
        for queue in ORDER_QUEUES {
            jobs.push(h.take(queue).await);
        }
        let records: Vec<Notification> = jobs.iter().map(|j| j[0].record().expect("each job carries its record")).collect();
        let channels: Vec<_> = records.iter().map(|n| (n.channel, n.status, n.priority)).collect();
        assert_eq!(
            channels,
            [(Channel::Email, Status::Pending, Priority::High), (Channel::Push, Status::Pending, Priority::High), (Channel::Websocket, Status::Pending, Priority::High)]
        );
        assert!(records.iter().all(|n| n.attempts == 0 && n.fallback_for.is_none() && n.created_at == t0()));
        let emails = &jobs[0];
        assert_eq!(emails[0].notification_id, NotificationId::derive(&job.event.event_id, Channel::Email));
        assert_eq!(emails[0].address, crate::ports::Address::Email { to: EMAIL.into() });
        assert_eq!(emails[0].message.part("subject"), "Order A-17 confirmed");
        assert_eq!((emails[0].accepted_at, emails[0].redrives), (t0(), 0));
        let sms_like = h.queue.sent().iter().filter(|(q, _)| q.contains("sms")).count();
        assert_eq!(sms_like, 0, "no fallback channel without a failure");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenants_messages_carry_its_sender_identity_and_its_suppressions_only() {
        use crate::domain::Tenant;
        use crate::ports::{KeyDirectory, TenantSettings};
        let h = Harness::new().await;
        let acme = Tenant::parse("acme").unwrap();
        let from = "Acme <no-reply@acme.example>";
        h.store.inner.put_tenant_settings(&acme, &TenantSettings { email_from: Some(from.into()), sms_sender_id: Some("ACME".into()) }).await.unwrap();
        h.store.inner.put_profile(&acme.user(&user()), &profile()).await.unwrap();
        let local = event("order.completed", "evt-1");
        let scoped = Event { event_id: acme.event(&local.event_id), user_id: acme.user(&local.user_id), ..local.clone() };
        // The default tenant suppressed the address; acme did not.
        let bounced = crate::ports::Suppression { tenant: Tenant::default_tenant(), channel: Channel::Email, address: EMAIL.into(), reason: crate::ports::SuppressionReason::HardBounce, created_at: t0(), notification_id: None };
        h.store.inner.suppress(&bounced).await.unwrap();

        let job = h.route_job(&scoped).await;
        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);
        let emails: Vec<SendJob> = h.take("send-email-fast.fifo").await;
        assert_eq!(emails.len(), 1, "another tenant's suppression does not hold");
        assert_eq!(emails[0].message.part(crate::ports::keys::FROM_PART), from);
        assert_eq!(emails[0].user_id.as_str(), "acme#u-42");

        let job = h.route_job(&local).await;
        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);
        let emails: Vec<SendJob> = h.take("send-email-fast.fifo").await;
        assert!(emails.is_empty(), "the default tenant's own suppression holds");
        let n = stored(&h, &job).await;
        assert_eq!(n[0].reason.as_deref(), Some(reason::SUPPRESSED));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_rendered_larger_than_the_limit_fails_as_a_template_error() {
        let h = Harness::new().await;
        let mut big = event("order.completed", "evt-big");
        big.payload["order_id"] = serde_json::json!("x".repeat(MAX_RENDERED_BYTES / 2 + 1));
        let job = h.route_job(&big).await;
        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);
        let email = stored(&h, &job).await.into_iter().find(|n| n.channel == Channel::Email).unwrap();
        assert_eq!((email.status, email.reason.as_deref()), (Status::Failed, Some(reason::TEMPLATE_ERROR)));
        assert!(email.last_error.unwrap().contains("100 KiB"));
        assert!(h.take::<SendJob>("send-email-fast.fifo").await.is_empty(), "nothing sent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_profile_read_failure_retries_with_backoff_from_the_receive_count() {
        let h = Harness::new().await;
        let job = order(&h).await;
        h.store.fail_next("get_recipient", 1);

        let RecordOutcome::Retry(after) = handle(&h, &job, 3).await else { panic!("retried") };

        assert_backoff(after, &HICCUP, 3);
        assert!(stored(&h, &job).await.is_empty());
        assert!(h.queue.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_failing_midway_is_retried_without_duplicates() {
        let h = Harness::new().await;
        // Held until its time: the router writes each one (scheduled).
        let later = Event { send_after: Some(t0() + Duration::from_secs(3600)), ..event("order.completed", "evt-order-A-17") };
        let job = h.route_job(&later).await;
        h.store.fail_after("create", 1, 1); // email is created, push fails

        let RecordOutcome::Retry(after) = handle(&h, &job, 1).await else { panic!("retried") };
        assert_backoff(after, &HICCUP, 1);
        let first = stored(&h, &job).await;
        assert_eq!(first.iter().map(|n| n.channel).collect::<Vec<_>>(), [Channel::Email]);
        assert!(h.queue.sent().is_empty(), "nothing queued by the failed try");

        h.clock.advance(Duration::from_secs(5));
        assert_eq!(handle(&h, &job, 2).await, RecordOutcome::Done);

        let all = stored(&h, &job).await;
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], first[0], "the email notification is the one created first");
        assert!(all.iter().all(|n| n.status == Status::Scheduled));
        assert!(all[1..].iter().all(|n| n.created_at == t0() + Duration::from_secs(5)));
        let held: Vec<String> = h.queue.sent().into_iter().map(|(q, _)| q).collect();
        assert_eq!(held, [DEFERRED_QUEUE; 3], "each held once, on the deferred queue");
        assert_eq!(h.store.calls("create"), 2 + 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_failure_retries_and_the_redelivery_queues_again() {
        let h = Harness::new().await;
        let job = order(&h).await;
        h.queue.fail_next_sends(1);

        let RecordOutcome::Retry(after) = handle(&h, &job, 1).await else { panic!("retried") };
        assert_backoff(after, &HICCUP, 1);
        assert!(h.depths().await.is_empty());
        assert!(stored(&h, &job).await.is_empty(), "nothing written for what it queues at once");

        assert_eq!(handle(&h, &job, 2).await, RecordOutcome::Done);
        assert_each_queue_holds_one(&h, &ORDER_QUEUES).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_route_job_queues_nothing_twice() {
        let h = Harness::new().await;
        let job = order(&h).await;
        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);
        let first = stored(&h, &job).await;

        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);

        assert_eq!(stored(&h, &job).await, first);
        assert_each_queue_holds_one(&h, &ORDER_QUEUES).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_route_job_creates_only_the_fallback_channel() {
        let h = Harness::new().await;
        let job = RouteJob { fallback: Some(FallbackRequest { channel: Channel::Sms, replaces: Channel::Push }), ..order(&h).await };

        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);

        assert!(stored(&h, &job).await.is_empty());
        assert_each_queue_holds_one(&h, &["send-sms-fast.fifo"]).await;
        let sms: Vec<SendJob> = h.take("send-sms-fast.fifo").await;
        assert_eq!(sms[0].address, crate::ports::Address::Phone { number: PHONE.into() });
        let record = sms[0].record().unwrap();
        assert_eq!((record.channel, record.status, record.fallback_for), (Channel::Sms, Status::Pending, Some(Channel::Push)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scheduled_event_is_held_on_the_deferred_queue() {
        let h = Harness::new().await;
        let at = t0() + Duration::from_secs(3600);
        let job = h.route_job(&Event { send_after: Some(at), channels: Some(vec![Channel::Email]), ..event("order.completed", "evt-later") }).await;

        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);

        let all = stored(&h, &job).await;
        assert_eq!((all[0].status, all[0].deliver_after), (Status::Scheduled, Some(at)));
        let sent = h.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0.as_str(), sent[0].1.delay), (DEFERRED_QUEUE, MAX_DELAY));
        let deferred: DeferredJob = decode(&sent[0].1.body, "deferred job").unwrap();
        assert_eq!((deferred.queue.as_str(), deferred.deliver_after), ("send-email-fast.fifo", at));
    }

    fn strict_catalog() -> Arc<Catalog> {
        let dir = std::env::temp_dir().join(format!("notify-router-test-{}", ulid::Ulid::new()));
        let t = dir.join("strict.check");
        std::fs::create_dir_all(t.join("templates/en")).unwrap();
        std::fs::write(t.join("event.json"), r#"{"priority": "normal", "channels": ["email"], "fallback": {"email": "sms"}}"#).unwrap();
        std::fs::write(t.join("schema.json"), r#"{"type": "object"}"#).unwrap();
        for (file, text) in [("email.subject", "Hi {{ payload.name }}"), ("email.text", "t"), ("email.html", "<p>h</p>"), ("sms.text", "Hello")] {
            std::fs::write(t.join("templates/en").join(file), text).unwrap();
        }
        let catalog = Catalog::load(&dir).expect("the test catalog loads");
        let _ = std::fs::remove_dir_all(&dir);
        Arc::new(catalog)
    }

    #[tokio::test(start_paused = true)]
    async fn a_template_error_fails_the_notification_and_queues_its_fallback() {
        let h = Harness::with_catalog(strict_catalog()).await;
        let job = h.route_job(&event("strict.check", "evt-strict-1")).await;
        assert_eq!(job.priority, Priority::Normal);

        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);

        let all = stored(&h, &job).await;
        assert_eq!(all.len(), 1);
        let email = &all[0];
        assert_eq!((email.channel, email.status, email.reason.as_deref()), (Channel::Email, Status::Failed, Some(reason::TEMPLATE_ERROR)));
        assert!(email.last_error.as_deref().unwrap().contains("undefined"), "{email:?}");
        assert_eq!(email.fallback, Some(FallbackProgress { channel: Channel::Sms, queued: true }));
        assert_each_queue_holds_one(&h, &["events-bulk.fifo"]).await;
        let fallbacks: Vec<RouteJob> = h.take("events-bulk.fifo").await;
        assert_eq!(fallbacks[0].fallback, Some(FallbackRequest { channel: Channel::Sms, replaces: Channel::Email }));

        // The fallback job, routed in turn, creates the SMS notification.
        assert_eq!(route_event(&h.router(), &fallbacks[0]).await.unwrap().len(), 1);
        assert_each_queue_holds_one(&h, &["send-sms-bulk.fifo"]).await;
        let sms: Vec<SendJob> = h.take("send-sms-bulk.fifo").await;
        let sms = sms[0].record().unwrap();
        assert_eq!((sms.notification_id, sms.status, sms.fallback_for), (NotificationId::derive(&job.event.event_id, Channel::Sms), Status::Pending, Some(Channel::Email)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_template_error_whose_fallback_could_not_be_queued_is_queued_on_redelivery() {
        let h = Harness::with_catalog(strict_catalog()).await;
        let job = h.route_job(&event("strict.check", "evt-strict-2")).await;
        h.queue.fail_next_sends(1);

        assert!(matches!(handle(&h, &job, 1).await, RecordOutcome::Retry(_)));
        let id = NotificationId::derive(&job.event.event_id, Channel::Email);
        assert_eq!(h.notification(&id).await.fallback, Some(FallbackProgress { channel: Channel::Sms, queued: false }));

        assert_eq!(handle(&h, &job, 2).await, RecordOutcome::Done);
        assert_eq!(h.notification(&id).await.fallback, Some(FallbackProgress { channel: Channel::Sms, queued: true }));
        assert_each_queue_holds_one(&h, &["events-bulk.fifo"]).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_suppressed_address_is_skipped_as_suppressed() {
        use crate::ports::{Suppression, SuppressionReason, SuppressionStore};
        let h = Harness::new().await;
        let bounced = Suppression {
            tenant: crate::domain::Tenant::default_tenant(),
            channel: Channel::Email,
            address: EMAIL.to_uppercase(),
            reason: SuppressionReason::HardBounce,
            created_at: t0(),
            notification_id: None,
        };
        h.store.inner.suppress(&bounced).await.unwrap();
        let job = order(&h).await;

        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);

        let all = stored(&h, &job).await;
        let email = &all[0];
        assert_eq!((email.channel, email.status, email.reason.as_deref()), (Channel::Email, Status::Skipped, Some(reason::SUPPRESSED)));
        assert_eq!((email.attempts, email.fallback), (0, None), "not attempted, no fallback owed");
        assert_eq!(all.len(), 1, "the other channels go out, written by their claims: {all:?}");
        assert_each_queue_holds_one(&h, &["send-push-fast.fifo", "send-websocket-fast.fifo"]).await;

        // Lifted: the next event is delivered.
        assert!(h.store.inner.remove_suppression(&crate::domain::Tenant::default_tenant(), Channel::Email, EMAIL).await.unwrap());
        let next = h.route_job(&event("order.completed", "evt-order-A-18")).await;
        assert_eq!(handle(&h, &next, 1).await, RecordOutcome::Done);
        assert!(stored(&h, &next).await.is_empty());
        assert_eq!(h.depth("send-email-fast.fifo").await, 1, "queued");
    }

    #[tokio::test(start_paused = true)]
    async fn a_suppression_read_failure_retries_with_backoff() {
        let h = Harness::new().await;
        let job = order(&h).await;
        h.store.fail_next("is_suppressed", 1);

        let RecordOutcome::Retry(after) = handle(&h, &job, 2).await else { panic!("retried") };

        assert_backoff(after, &HICCUP, 2);
        assert!(stored(&h, &job).await.is_empty(), "nothing recorded by the failed try");
        assert!(h.queue.sent().is_empty());
        assert_eq!(handle(&h, &job, 3).await, RecordOutcome::Done);
        assert_each_queue_holds_one(&h, &ORDER_QUEUES).await;
    }

    fn unsubscribe_links() -> Arc<crate::auth::UnsubscribeLinks> {
        let tokens = crate::auth::UnsubscribeTokens::from_user_token_secret(&[5u8; 32], crate::auth::unsubscribe::DEFAULT_UNSUBSCRIBE_TTL).unwrap();
        Arc::new(crate::auth::UnsubscribeLinks::new(tokens, "https://api.example.com").unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn non_transactional_email_carries_one_click_unsubscribe_for_its_category() {
        let mut h = Harness::new().await;
        h.settings.unsubscribe = Some(unsubscribe_links());
        let mut newsletter = event("marketing.newsletter", "evt-news-1");
        newsletter.channels = Some(vec![Channel::Email, Channel::Websocket]);
        let job = h.route_job(&newsletter).await;

        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);

        let emails: Vec<SendJob> = h.take("send-email-bulk.fifo").await;
        let headers: BTreeMap<&str, &str> = emails[0].message.headers().collect();
        assert_eq!(headers.keys().copied().collect::<Vec<_>>(), ["List-Unsubscribe", "List-Unsubscribe-Post"]);
        assert_eq!(headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");
        let token = headers["List-Unsubscribe"]
            .strip_prefix("<https://api.example.com/v1/unsubscribe/")
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or_else(|| panic!("a signed https link: {}", headers["List-Unsubscribe"]));
        let tokens = crate::auth::UnsubscribeTokens::from_user_token_secret(&[5u8; 32], crate::auth::unsubscribe::DEFAULT_UNSUBSCRIBE_TTL).unwrap();
        let unsubscribe = tokens.verify(token, t0()).expect("the link verifies");
        assert_eq!((unsubscribe.user_id, unsubscribe.category.as_str()), (user(), "marketing"));
        assert_eq!(emails[0].message.part("subject"), "December news", "the content is untouched");
        let frames: Vec<SendJob> = h.take("send-websocket-bulk.fifo").await;
        assert_eq!(frames[0].message.headers().count(), 0, "email only");
    }

    #[tokio::test(start_paused = true)]
    async fn transactional_email_never_carries_unsubscribe() {
        let mut h = Harness::new().await;
        h.settings.unsubscribe = Some(unsubscribe_links());
        for (event_type, id, queue) in [("order.completed", "evt-o-1", "send-email-fast.fifo"), ("payment.failed", "evt-p-1", "send-email-fast.fifo")] {
            assert!(h.catalog.event_type(event_type).unwrap().transactional, "{event_type} is transactional in the catalog");
            let job = h.route_job(&event(event_type, id)).await;
            assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);
            let emails: Vec<SendJob> = h.take(queue).await;
            assert_eq!(emails.len(), 1, "{event_type}");
            assert_eq!(emails[0].message.headers().count(), 0, "{event_type}: {:?}", emails[0].message.parts.keys());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_opted_out_category_skips_the_email() {
        let h = Harness::new().await;
        let prefs: Preferences = serde_json::from_value(json!({"categories": {"marketing": {"email": false}}})).unwrap();
        h.store.inner.put_preferences(&user(), &prefs).await.unwrap();
        let job = h.route_job(&event("marketing.newsletter", "evt-news-2")).await;
        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);
        let email = &stored(&h, &job).await[0];
        assert_eq!((email.status, email.reason.as_deref()), (Status::Skipped, Some(reason::OPTED_OUT_CATEGORY)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_route_job_is_parked() {
        let h = Harness::new().await;
        let outcome = handle_route_record(&h.router(), record(EVENTS_FAST, r#"{"event": null}"#, 1)).await;
        assert_eq!(outcome, RecordOutcome::Park(ParkReason::Unreadable));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_route_job_on_the_dead_letter_queue_is_recorded_for_an_operator() {
        use crate::ports::{DeadLetterReason, DeadLetterStore};
        let h = Harness::new().await;
        let outcome = handle_route_record(&h.router(), record("events-fast-dlq.fifo", r#"{"event": null}"#, 1)).await;
        assert_eq!(outcome, RecordOutcome::Done, "the record holds it now");
        let letters = h.store.inner.list_dead_letters(Some("events-fast-dlq.fifo"), 10, None).await.unwrap().items;
        assert_eq!(letters.len(), 1);
        assert_eq!((letters[0].reason, letters[0].body.as_str()), (DeadLetterReason::Unreadable, r#"{"event": null}"#));
    }

    /// The record a queued job carries is what the router wrote before it left that write to the
    /// sender: created by the claim, the notification is what create + claim made.
    #[tokio::test(start_paused = true)]
    async fn a_queued_notification_is_created_by_its_claim_as_the_router_wrote_it_before() {
        let h = Harness::new().await;
        let job = order(&h).await;
        assert_eq!(handle(&h, &job, 1).await, RecordOutcome::Done);
        let fallback = RouteJob { fallback: Some(FallbackRequest { channel: Channel::Sms, replaces: Channel::Push }), ..job.clone() };
        h.clock.advance(Duration::from_secs(1));
        route_event(&h.router(), &fallback).await.unwrap();
        let mut jobs: Vec<SendJob> = Vec::new();
        for queue in ["send-email-fast.fifo", "send-websocket-fast.fifo", "send-sms-fast.fifo"] {
            jobs.extend(h.take::<SendJob>(queue).await);
        }
        assert_eq!(jobs.len(), 3);
        let e = &job.event;
        let as_written_before = |channel: Channel, title: &str, body: Option<&str>, fallback_for: Option<Channel>, at: Timestamp| Notification {
            title: Some(title.to_owned()),
            body: body.map(str::to_owned),
            fallback_for,
            ..Notification::pending(&e.event_id, &e.event_type, &e.user_id, channel, Priority::High, at)
        };
        let websocket_body = jobs[1].message.part("body").to_owned();
        let expected = [
            as_written_before(Channel::Email, "Order A-17 confirmed", None, None, t0()),
            as_written_before(Channel::Websocket, jobs[1].message.part("title"), Some(&websocket_body), None, t0()),
            Notification { title: None, ..as_written_before(Channel::Sms, "", None, Some(Channel::Push), t0() + Duration::from_secs(1)) },
        ];
        h.clock.advance(Duration::from_secs(1));
        for (job, before) in jobs.iter().zip(expected) {
            let claim = Transition::to(Status::Sending, h.clock.now()).count_attempt().lease_until(Some(h.clock.now() + Duration::from_secs(30)));
            let crate::ports::UpsertOutcome::Created(created) = h.store.inner.upsert(&job.record().unwrap(), &crate::domain::Guard::Claimable { now: h.clock.now() }, &claim).await.unwrap() else {
                panic!("created by the claim")
            };
            assert_eq!(created, claim.apply(&before), "{}", job.channel);
            assert_eq!(h.notification(&job.notification_id).await, created);
        }
    }
}
