//! Dead letters: recorded when the pipeline gives up on a job, listed and replayed through the
//! API (`GET /v1/dead-letters`, `POST /v1/dead-letters/replay`).
//!
//! Recording: the consumers of the dead-letter queues (the dead-letter handler of the send
//! queues, the router on `events-*-dlq`, the scheduler on `deferred-dlq`) record a job when they
//! fail its notification `retries_exhausted` after its redrives, or when they cannot process it
//! at all (unreadable, unknown notification). Such a job is then done with on its queue: the
//! record, with the job's body, holds it from there on (SQS cannot list what it keeps out of
//! sight, and a parked copy that came back after its replay would be recorded again).
//!
//! Replaying keeps idempotency:
//! - a job whose notification was sent meanwhile is not sent again (`already_delivered`);
//! - a notification failed `retries_exhausted` goes back to `pending`, with a fresh attempt
//!   budget, by a transition guarded on exactly that failure; its job is queued again on its
//!   send queue under a fresh deduplication id, and the sender's claim makes it one send however
//!   often it is queued;
//! - a job still `pending` or `sending`, or whose notification was never written (the router
//!   leaves that to the sender's claim, which creates it from the job's record), is queued
//!   again (the claim, again, makes it one send);
//! - a notification otherwise final (canceled, skipped, failed for another reason) or scheduled
//!   is not touched (`not_replayable`);
//! - anything else (unreadable, or naming no notification) goes back to its queue as it was.
//!
//! The record is removed once its replay is done (only if it was not recorded again meanwhile).
//! A store or queue failure stops the call (503) with the rest left recorded: replaying again
//! is safe.

use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use super::router::outgoing_message;
use super::sqs_batch::{ParkReason, Record, RecordOutcome, RetryPolicy};
use crate::domain::notification::reason;
use crate::domain::{FieldError, Guard, Notification, Status, Transition};
use crate::jobs::{SendJob, decode};
use crate::ports::{
    Clock, DeadLetter, DeadLetterReason, DeadLetterStore, NotificationStore, OutgoingMessage, Page, QueueError, QueueSender, StoreError,
    TransitionOutcome, dead_letter_id,
};
use crate::topology::is_dead_letter_queue;

impl From<ParkReason> for DeadLetterReason {
    fn from(why: ParkReason) -> Self {
        match why {
            ParkReason::Unreadable => DeadLetterReason::Unreadable,
            ParkReason::UnknownNotification => DeadLetterReason::UnknownNotification,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recording.

/// The dead letter of `record`, given up on `now` for `reason`. `job` is the send job it carries
/// when it could be read: its notification names the record; otherwise the whole body does.
pub fn dead_letter_of(record: &Record<'_>, reason: DeadLetterReason, job: Option<&SendJob>, now: jiff::Timestamp) -> DeadLetter {
    let identity = job.map(|j| j.notification_id.as_str()).unwrap_or(record.body);
    DeadLetter {
        id: dead_letter_id(record.queue, identity),
        queue: record.queue.to_owned(),
        notification_id: job.map(|j| j.notification_id.as_str().to_owned()),
        event_id: job.map(|j| j.event_id.as_str().to_owned()),
        user_id: job.map(|j| j.user_id.as_str().to_owned()),
        reason,
        first_failure_at: now,
        last_failure_at: now,
        attempts: job.map_or(1, |j| j.redrives + 1),
        group_id: record.group_id.map(str::to_owned),
        body: record.body.to_owned(),
    }
}

/// A record no handler can process: on a main queue it is parked (moved to its dead-letter
/// queue by `process_batch`); on a dead-letter queue it is recorded as a dead letter and done
/// with, or retried after `retry`'s backoff when the store is down.
pub async fn park_or_record(
    store: &dyn DeadLetterStore,
    clock: &dyn Clock,
    retry: &RetryPolicy,
    record: &Record<'_>,
    why: ParkReason,
    job: Option<&SendJob>,
) -> RecordOutcome {
    if !is_dead_letter_queue(record.queue) {
        return RecordOutcome::Park(why);
    }
    record_dead_letter(store, retry, record, dead_letter_of(record, why.into(), job, clock.now())).await
}

/// Records `letter`: done once it is stored.
pub async fn record_dead_letter(store: &dyn DeadLetterStore, retry: &RetryPolicy, record: &Record<'_>, letter: DeadLetter) -> RecordOutcome {
    match store.record_dead_letter(&letter).await {
        Ok(()) => {
            tracing::error!(queue = record.queue, dead_letter = %letter.id, reason = letter.reason.as_str(), "dead letter recorded for an operator");
            RecordOutcome::Done
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not record the dead letter");
            RecordOutcome::Retry(retry.backoff(record.receive_count))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The API.

pub struct DeadLetterApiDeps {
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
}

/// The most dead letters one replay call takes on.
pub const MAX_REPLAY: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// A dead letter as listed: everything but the job's body (which can hold contact details and
/// message content).
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Listed {
    pub id: String,
    pub queue: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub reason: DeadLetterReason,
    #[schema(value_type = String, format = DateTime)]
    pub first_failure_at: jiff::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub last_failure_at: jiff::Timestamp,
    pub attempts: u32,
}

impl From<DeadLetter> for Listed {
    fn from(l: DeadLetter) -> Self {
        Listed {
            id: l.id,
            queue: l.queue,
            notification_id: l.notification_id,
            event_id: l.event_id,
            user_id: l.user_id,
            reason: l.reason,
            first_failure_at: l.first_failure_at,
            last_failure_at: l.last_failure_at,
            attempts: l.attempts,
        }
    }
}

/// Whether the tenant may see and replay a dead letter: its own users' jobs; a job that names no
/// user (unreadable) belongs to the deployment's operator, the default tenant.
pub fn owned_by(letter: &DeadLetter, tenant: &crate::domain::Tenant) -> bool {
    tenant.owns(letter.user_id.as_deref().unwrap_or_default())
}

/// `GET /v1/dead-letters?queue=&limit=&cursor=`: the tenant's own, newest first, of every queue
/// or one (a page may hold fewer than `limit` when other tenants' letters were in its range).
pub async fn list(deps: &DeadLetterApiDeps, tenant: &crate::domain::Tenant, queue: Option<&str>, limit: Option<usize>, cursor: Option<&str>) -> Result<Page<Listed>, DeadLetterError> {
    let limit = limit.unwrap_or(20).clamp(1, 100);
    let queue = queue.map(str::trim).filter(|q| !q.is_empty());
    let page = deps.dead_letters.list_dead_letters(queue, limit, cursor).await?;
    Ok(Page { items: page.items.into_iter().filter(|l| owned_by(l, tenant)).map(Listed::from).collect(), next: page.next })
}

/// What `POST /v1/dead-letters/replay` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayRequest {
    /// One or a selection (1 to [`MAX_REPLAY`] ids).
    Ids(Vec<String>),
    /// The oldest `limit` (at most [`MAX_REPLAY`]) of one dead-letter queue.
    Queue { queue: String, limit: usize },
}

/// The body is `{"ids": [...]}` or `{"queue": "<dead-letter queue>", "limit": n}`; the errors
/// name the field.
pub fn parse_replay(body: &Value) -> Result<ReplayRequest, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("", "must be an object with `ids` or `queue`")]);
    };
    if let Some(unknown) = object.keys().find(|k| !["ids", "queue", "limit"].contains(&k.as_str())) {
        return Err(vec![FieldError::new(format!("/{unknown}"), "is not a field of a replay request")]);
    }
    match (object.get("ids"), object.get("queue")) {
        (Some(_), Some(_)) => Err(vec![FieldError::new("/queue", "give either `ids` or `queue`, not both")]),
        (None, None) => Err(vec![FieldError::new("/ids", "give `ids` (a list of dead-letter ids) or `queue`")]),
        (Some(ids), None) => {
            if object.contains_key("limit") {
                return Err(vec![FieldError::new("/limit", "only with `queue`")]);
            }
            let Some(ids) = ids.as_array() else {
                return Err(vec![FieldError::new("/ids", "must be a list of dead-letter ids")]);
            };
            if ids.is_empty() || ids.len() > MAX_REPLAY {
                return Err(vec![FieldError::new("/ids", format!("must hold 1 to {MAX_REPLAY} ids, not {}", ids.len()))]);
            }
            let mut out: Vec<String> = Vec::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                match id.as_str().map(str::trim).filter(|s| !s.is_empty()) {
                    Some(id) if !out.iter().any(|o| o == id) => out.push(id.to_owned()),
                    Some(_) => {}
                    None => return Err(vec![FieldError::new(format!("/ids/{i}"), "must be a dead-letter id")]),
                }
            }
            Ok(ReplayRequest::Ids(out))
        }
        (None, Some(queue)) => {
            let queue = match queue.as_str().map(str::trim) {
                Some(q) if is_dead_letter_queue(q) && q.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) => q.to_owned(),
                _ => return Err(vec![FieldError::new("/queue", "must name a dead-letter queue, such as send-email-fast-dlq.fifo")]),
            };
            let limit = match object.get("limit") {
                None => MAX_REPLAY,
                Some(l) => match l.as_u64().filter(|n| (1..=MAX_REPLAY as u64).contains(n)) {
                    Some(n) => n as usize,
                    None => return Err(vec![FieldError::new("/limit", format!("must be a whole number from 1 to {MAX_REPLAY}"))]),
                },
            };
            Ok(ReplayRequest::Queue { queue, limit })
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayOutcome {
    /// Queued again.
    Replayed,
    /// Its notification was sent meanwhile: not sent again.
    AlreadyDelivered,
    /// Its notification ended otherwise (canceled, skipped, failed for another reason) or waits
    /// for its time: nothing to replay.
    NotReplayable,
    /// No dead letter has this id (replayed before, or never recorded).
    NotFound,
}

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ReplayResult {
    pub id: String,
    pub outcome: ReplayOutcome,
    /// The notification's status when it was not replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ReplayAnswer {
    pub results: Vec<ReplayResult>,
    /// For a queue: whether it held more than this call took on (call again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
}

/// `POST /v1/dead-letters/replay`.
pub async fn replay(deps: &DeadLetterApiDeps, tenant: &crate::domain::Tenant, request: ReplayRequest) -> Result<ReplayAnswer, DeadLetterError> {
    let mut results = Vec::new();
    match request {
        ReplayRequest::Ids(ids) => {
            for id in ids {
                let result = match deps.dead_letters.get_dead_letter(&id).await?.filter(|l| owned_by(l, tenant)) {
                    Some(letter) => replay_one(deps, &letter).await?,
                    None => ReplayResult { id, outcome: ReplayOutcome::NotFound, status: None },
                };
                results.push(result);
            }
            Ok(ReplayAnswer { results, more: None })
        }
        ReplayRequest::Queue { queue, limit } => {
            // Oldest first would need another index; newest first is as good: every one of the
            // page is replayed, and the next call takes the rest.
            let page = deps.dead_letters.list_dead_letters(Some(&queue), limit, None).await?;
            for letter in page.items.iter().filter(|l| owned_by(l, tenant)) {
                results.push(replay_one(deps, letter).await?);
            }
            Ok(ReplayAnswer { results, more: Some(page.next.is_some()) })
        }
    }
}

/// The queue a dead-letter queue's jobs came from: `send-email-fast-dlq.fifo` → `send-email-fast.fifo`.
pub fn source_queue(dead_letter_queue: &str) -> String {
    match dead_letter_queue.strip_suffix("-dlq.fifo") {
        Some(stem) => format!("{stem}.fifo"),
        None => dead_letter_queue.strip_suffix("-dlq").unwrap_or(dead_letter_queue).to_owned(),
    }
}

async fn replay_one(deps: &DeadLetterApiDeps, letter: &DeadLetter) -> Result<ReplayResult, DeadLetterError> {
    let now = deps.clock.now();
    let send_job = letter.queue.starts_with("send-").then(|| decode::<SendJob>(&letter.body, "send job").ok()).flatten();
    let (outcome, status) = match send_job {
        None => {
            requeue_as_is(deps, letter, now).await?;
            (ReplayOutcome::Replayed, None)
        }
        Some(job) => match deps.notifications.get(&job.notification_id).await? {
            // Never claimed (its job carries the record the claim creates): queued again.
            None if job.record().is_some() => {
                requeue_send_job(deps, job, now).await?;
                (ReplayOutcome::Replayed, None)
            }
            None => {
                requeue_as_is(deps, letter, now).await?;
                (ReplayOutcome::Replayed, None)
            }
            Some(n) => replay_send_job(deps, job, n, now).await?,
        },
    };
    if !deps.dead_letters.remove_dead_letter(&letter.id, letter.last_failure_at).await? {
        tracing::info!(dead_letter = %letter.id, "dead letter recorded again meanwhile: kept");
    }
    tracing::info!(dead_letter = %letter.id, queue = %letter.queue, outcome = ?outcome, "dead letter replayed");
    Ok(ReplayResult { id: letter.id.clone(), outcome, status })
}

async fn replay_send_job(
    deps: &DeadLetterApiDeps,
    job: SendJob,
    mut n: Notification,
    now: jiff::Timestamp,
) -> Result<(ReplayOutcome, Option<Status>), DeadLetterError> {
    // Twice at most: a guarded transition that lost a race reads what won it.
    for _ in 0..2 {
        match n.status {
            Status::Sent => return Ok((ReplayOutcome::AlreadyDelivered, Some(n.status))),
            Status::Pending | Status::Sending => {
                requeue_send_job(deps, job, now).await?;
                return Ok((ReplayOutcome::Replayed, None));
            }
            Status::Failed if n.reason.as_deref() == Some(reason::RETRIES_EXHAUSTED) => {
                let back = Transition::to(Status::Pending, now).reset_attempts();
                let back = Transition { reason: Some(None), lease_until: Some(None), ..back };
                let guard = Guard::FailedBecause(reason::RETRIES_EXHAUSTED.to_owned());
                match deps.notifications.transition(&job.notification_id, &guard, &back).await? {
                    TransitionOutcome::Applied(_) => {
                        requeue_send_job(deps, job, now).await?;
                        return Ok((ReplayOutcome::Replayed, None));
                    }
                    TransitionOutcome::Rejected(current) => n = current,
                    TransitionOutcome::NotFound => return Ok((ReplayOutcome::NotReplayable, None)),
                }
            }
            status => return Ok((ReplayOutcome::NotReplayable, Some(status))),
        }
    }
    Ok((ReplayOutcome::NotReplayable, Some(n.status)))
}

/// The send job on its send queue again, its redrive count back to none, under a deduplication
/// id of its own (the original one may still be inside the queue's five-minute window).
async fn requeue_send_job(deps: &DeadLetterApiDeps, job: SendJob, now: jiff::Timestamp) -> Result<(), QueueError> {
    let notification_id = job.notification_id.clone();
    let (queue, message) = outgoing_message(SendJob { redrives: 0, ..job }, None, now);
    let message = OutgoingMessage { dedup_id: Some(format!("{notification_id}:replay:{}", now.as_millisecond())), ..message };
    deps.queue.send_batch(&queue, vec![message]).await
}

/// The body, unchanged, on the queue it came from.
async fn requeue_as_is(deps: &DeadLetterApiDeps, letter: &DeadLetter, now: jiff::Timestamp) -> Result<(), QueueError> {
    let queue = source_queue(&letter.queue);
    let message = if queue.ends_with(".fifo") {
        let group = letter.group_id.clone().unwrap_or_else(|| "replayed".to_owned());
        OutgoingMessage::fifo(letter.body.clone(), group, format!("replay:{}:{}", letter.id, now.as_millisecond()))
    } else {
        OutgoingMessage::delayed(letter.body.clone(), Duration::ZERO)
    };
    deps.queue.send_batch(&queue, vec![message]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, NotificationId};
    use crate::handlers::dead_letter::handle_dead_letter_record;
    use crate::handlers::send::handle_send_record;
    use crate::handlers::test_support::*;
    use crate::jobs::{self, encode};
    use crate::ports::DeadLetterStore;
    use serde_json::json;

    const DLQ: &str = "send-push-fast-dlq.fifo";
    const SEND_PUSH_FAST: &str = "send-push-fast.fifo";

    fn api(h: &Harness) -> DeadLetterApiDeps {
        crate::wiring::dead_letter_api(&h.ports)
    }

    /// A push job given up on by the dead-letter handler: its notification failed
    /// `retries_exhausted`, the job recorded. Answers the job and its dead letter's id.
    async fn given_up(h: &Harness, event_id: &str) -> (SendJob, String) {
        let job = h.seed("order.completed", event_id, Channel::Push).await;
        h.claim(&job).await;
        h.clock.advance(h.lease() + Duration::from_secs(1));
        let job = SendJob { redrives: h.settings.max_redrives, ..job };
        let body = encode(&job);
        assert_eq!(handle_dead_letter_record(&h.dead_letter(), record(DLQ, &body, 1)).await, RecordOutcome::Done);
        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.reason.as_deref(), n.attempts), (Status::Failed, Some(reason::RETRIES_EXHAUSTED), 1));
        let id = dead_letter_id(DLQ, job.notification_id.as_str());
        assert!(h.store.inner.get_dead_letter(&id).await.unwrap().is_some(), "recorded");
        // The fallback the failure requested is not what these tests look at.
        let _: Vec<serde_json::Value> = h.take("events-fast.fifo").await;
        h.queue.sent_clear();
        (job, id)
    }

    async fn replay_ids(h: &Harness, ids: &[&str]) -> ReplayAnswer {
        replay(&api(h), &crate::domain::Tenant::default_tenant(), ReplayRequest::Ids(ids.iter().map(|s| (*s).to_owned()).collect())).await.expect("replayed")
    }

    async fn listed(h: &Harness) -> Vec<String> {
        list(&api(h), &crate::domain::Tenant::default_tenant(), None, Some(100), None).await.unwrap().items.into_iter().map(|l| l.id).collect()
    }

    fn outcomes(answer: &ReplayAnswer) -> Vec<(&str, ReplayOutcome)> {
        answer.results.iter().map(|r| (r.id.as_str(), r.outcome)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_replayed_failure_goes_back_to_pending_with_a_fresh_budget_and_is_sent_once() {
        let h = Harness::new().await;
        let (job, id) = given_up(&h, "evt-1").await;

        let answer = replay_ids(&h, &[&id]).await;

        assert_eq!(outcomes(&answer), [(id.as_str(), ReplayOutcome::Replayed)]);
        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.attempts, n.reason.as_deref(), n.lease_until), (Status::Pending, 0, None, None));
        let sent = h.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, SEND_PUSH_FAST, "on its own send queue");
        let dedup = sent[0].1.dedup_id.clone().unwrap();
        assert!(dedup.starts_with(&format!("{}:replay:", job.notification_id)), "a fresh deduplication id: {dedup}");
        assert!(listed(&h).await.is_empty(), "the record is removed");

        // Delivered twice (a replay repeated, SQS at least once): the claim makes it one send.
        let requeued: Vec<SendJob> = h.take(SEND_PUSH_FAST).await;
        assert_eq!(requeued, vec![SendJob { redrives: 0, ..job.clone() }]);
        let provider = ScriptedSender::new([Ok("p-1".to_owned())]);
        let sender = h.sender(provider.clone());
        let body = encode(&requeued[0]);
        assert_eq!(handle_send_record(&sender, record(SEND_PUSH_FAST, &body, 1)).await, RecordOutcome::Done);
        assert_eq!(handle_send_record(&sender, record(SEND_PUSH_FAST, &body, 1)).await, RecordOutcome::Done);
        assert_eq!(provider.calls(), 1, "sent once");
        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.attempts), (Status::Sent, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_delivered_meanwhile_is_not_sent_again() {
        let h = Harness::new().await;
        let (job, id) = given_up(&h, "evt-1").await;
        let sent = h.force(&job.notification_id, Transition::to(Status::Sent, t0()).provider_message_id("p-1")).await;

        let answer = replay_ids(&h, &[&id]).await;

        assert_eq!(answer.results, [ReplayResult { id: id.clone(), outcome: ReplayOutcome::AlreadyDelivered, status: Some(Status::Sent) }]);
        assert!(h.queue.sent().is_empty(), "nothing queued");
        assert_eq!(h.notification(&job.notification_id).await, sent, "untouched");
        assert!(listed(&h).await.is_empty(), "the record is removed");
        assert_eq!(replay_ids(&h, &[&id]).await.results[0].outcome, ReplayOutcome::NotFound, "and a second replay finds none");
    }

    #[tokio::test(start_paused = true)]
    async fn a_notification_failed_for_another_reason_is_not_replayed() {
        let h = Harness::new().await;
        let (job, id) = given_up(&h, "evt-1").await;
        h.force(&job.notification_id, Transition::to(Status::Failed, t0()).reason(reason::PROVIDER_REJECTED)).await;

        let answer = replay_ids(&h, &[&id]).await;

        assert_eq!(answer.results, [ReplayResult { id, outcome: ReplayOutcome::NotReplayable, status: Some(Status::Failed) }]);
        assert!(h.queue.sent().is_empty());
        assert_eq!(h.notification(&job.notification_id).await.reason.as_deref(), Some(reason::PROVIDER_REJECTED), "the guard held");
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_job_is_requeued_as_it_was() {
        let h = Harness::new().await;
        assert_eq!(handle_dead_letter_record(&h.dead_letter(), record(DLQ, "{not a job", 1)).await, RecordOutcome::Done);
        // Without its record (queued before routers left the write to the sender).
        let mut unknown = jobs::SendJob { created_at: None, ..h.seed("order.completed", "evt-2", Channel::Push).await };
        unknown.notification_id = NotificationId::from_stored("ntf_unknown".into());
        let unknown_body = encode(&unknown);
        assert_eq!(handle_dead_letter_record(&h.dead_letter(), record(DLQ, &unknown_body, 1)).await, RecordOutcome::Done);
        let ids = listed(&h).await;
        assert_eq!(ids.len(), 2);

        let answer = replay(&api(&h), &crate::domain::Tenant::default_tenant(), ReplayRequest::Queue { queue: DLQ.into(), limit: 100 }).await.unwrap();

        assert_eq!(answer.results.iter().map(|r| r.outcome).collect::<Vec<_>>(), [ReplayOutcome::Replayed; 2]);
        assert_eq!(answer.more, Some(false));
        let mut sent: Vec<(String, String, Option<String>)> =
            h.queue.sent().into_iter().map(|(q, m)| (q, m.body, m.group_id)).collect();
        sent.sort();
        let group = Some("default#u-42".to_owned());
        assert_eq!(sent, [(SEND_PUSH_FAST.to_owned(), unknown_body, group.clone()), (SEND_PUSH_FAST.to_owned(), "{not a job".to_owned(), group)]);
        assert!(listed(&h).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_selection_is_answered_per_id_in_order() {
        let h = Harness::new().await;
        let (_, a) = given_up(&h, "evt-1").await;
        let (_, b) = given_up(&h, "evt-2").await;
        let (_, c) = given_up(&h, "evt-3").await;

        let answer = replay_ids(&h, &[&c, "dl_nope", &a, &c]).await;

        let expected = [
            (c.as_str(), ReplayOutcome::Replayed),
            ("dl_nope", ReplayOutcome::NotFound),
            (a.as_str(), ReplayOutcome::Replayed),
            (c.as_str(), ReplayOutcome::NotFound),
        ];
        assert_eq!(outcomes(&answer), expected, "a repeated id finds its dead letter replayed");
        assert_eq!(answer.more, None);
        assert_eq!(h.queue.sent().len(), 2, "each once, the repeated id too");
        assert_eq!(listed(&h).await, [b], "the one not asked for is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn all_of_one_queue_is_replayed_in_bounded_calls() {
        let h = Harness::new().await;
        for i in 0..3 {
            given_up(&h, &format!("evt-{i}")).await;
        }
        assert_eq!(handle_dead_letter_record(&h.dead_letter(), record("send-email-fast-dlq.fifo", "{", 1)).await, RecordOutcome::Done);
        let other = listed(&h).await[0].clone();

        let first = replay(&api(&h), &crate::domain::Tenant::default_tenant(), ReplayRequest::Queue { queue: DLQ.into(), limit: 2 }).await.unwrap();
        assert_eq!((first.results.len(), first.more), (2, Some(true)));
        let second = replay(&api(&h), &crate::domain::Tenant::default_tenant(), ReplayRequest::Queue { queue: DLQ.into(), limit: 2 }).await.unwrap();
        assert_eq!((second.results.len(), second.more), (1, Some(false)));

        assert_eq!(h.queue.sent().iter().filter(|(q, _)| q == SEND_PUSH_FAST).count(), 3);
        assert_eq!(listed(&h).await, [other], "another queue's dead letter is left alone");
    }

    #[tokio::test(start_paused = true)]
    async fn the_list_is_newest_first_in_pages_without_bodies() {
        let h = Harness::new().await;
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(given_up(&h, &format!("evt-{i}")).await.1);
        }
        ids.reverse();
        let first = list(&api(&h), &crate::domain::Tenant::default_tenant(), None, Some(2), None).await.unwrap();
        let second = list(&api(&h), &crate::domain::Tenant::default_tenant(), None, Some(2), first.next.as_deref()).await.unwrap();
        assert_eq!(second.next, None);
        let paged: Vec<String> = first.items.iter().chain(&second.items).map(|l| l.id.clone()).collect();
        assert_eq!(paged, ids);
        let json = serde_json::to_value(&first.items[0]).unwrap();
        assert_eq!(json["queue"], DLQ);
        assert_eq!(json["reason"], "retries_exhausted");
        assert_eq!(json["attempts"], h.settings.max_redrives + 1);
        assert!(json.get("body").is_none(), "the job's content is not listed: {json}");
        assert!(list(&api(&h), &crate::domain::Tenant::default_tenant(), Some("deferred-dlq"), None, None).await.unwrap().items.is_empty(), "filtered by queue");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_lists_and_replays_only_its_own_users_dead_letters() {
        use crate::domain::Tenant;
        let h = Harness::new().await;
        let (_, id) = given_up(&h, "evt-1").await;
        let mut letter = h.store.inner.get_dead_letter(&id).await.unwrap().unwrap();
        letter.id = "dl_acme".into();
        letter.user_id = Some("acme#u-42".into());
        h.store.inner.record_dead_letter(&letter).await.unwrap();
        let (acme, globex) = (Tenant::parse("acme").unwrap(), Tenant::parse("globex").unwrap());
        let ids = |page: Page<Listed>| page.items.into_iter().map(|l| l.id).collect::<Vec<_>>();
        assert_eq!(ids(list(&api(&h), &acme, None, None, None).await.unwrap()), ["dl_acme"]);
        assert!(ids(list(&api(&h), &globex, None, None, None).await.unwrap()).is_empty());
        assert_eq!(ids(list(&api(&h), &Tenant::default_tenant(), None, None, None).await.unwrap()), std::slice::from_ref(&id));
        let answer = replay(&api(&h), &globex, ReplayRequest::Ids(vec!["dl_acme".into(), id.clone()])).await.unwrap();
        assert!(answer.results.iter().all(|r| r.outcome == ReplayOutcome::NotFound), "{answer:?}");
        assert!(h.queue.sent().is_empty(), "nothing of another tenant's replayed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_outage_keeps_the_dead_letter_and_a_second_replay_sends_it() {
        let h = Harness::new().await;
        let (job, id) = given_up(&h, "evt-1").await;
        h.queue.fail_next_sends(1);

        assert!(matches!(replay(&api(&h), &crate::domain::Tenant::default_tenant(), ReplayRequest::Ids(vec![id.clone()])).await, Err(DeadLetterError::Queue(_))));
        assert_eq!(h.notification(&job.notification_id).await.status, Status::Pending, "back to pending, its job not yet queued");
        assert_eq!(listed(&h).await, std::slice::from_ref(&id), "kept");

        assert_eq!(outcomes(&replay_ids(&h, &[&id]).await), [(id.as_str(), ReplayOutcome::Replayed)]);
        assert_eq!(h.depth(SEND_PUSH_FAST).await, 1);
        assert!(listed(&h).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_letter_recorded_again_during_its_replay_is_kept() {
        let h = Harness::new().await;
        assert_eq!(handle_dead_letter_record(&h.dead_letter(), record(DLQ, "{", 1)).await, RecordOutcome::Done);
        let letter = h.store.inner.list_dead_letters(None, 1, None).await.unwrap().items.remove(0);
        h.clock.advance(Duration::from_secs(1));
        assert_eq!(handle_dead_letter_record(&h.dead_letter(), record(DLQ, "{", 1)).await, RecordOutcome::Done);

        assert!(!h.store.inner.remove_dead_letter(&letter.id, letter.last_failure_at).await.unwrap(), "not the one read");
        assert_eq!(listed(&h).await, [letter.id]);
    }

    #[test]
    fn replay_bodies_are_checked_field_by_field() {
        let ok = |v: Value| parse_replay(&v).unwrap();
        assert_eq!(ok(json!({"ids": ["dl_a", " dl_b ", "dl_a"]})), ReplayRequest::Ids(vec!["dl_a".into(), "dl_b".into()]));
        assert_eq!(ok(json!({"queue": DLQ})), ReplayRequest::Queue { queue: DLQ.into(), limit: MAX_REPLAY });
        assert_eq!(ok(json!({"queue": "deferred-dlq", "limit": 5})), ReplayRequest::Queue { queue: "deferred-dlq".into(), limit: 5 });
        let field = |v: Value| parse_replay(&v).unwrap_err()[0].path.clone();
        assert_eq!(field(json!([])), "");
        assert_eq!(field(json!({})), "/ids");
        assert_eq!(field(json!({"ids": []})), "/ids");
        assert_eq!(field(json!({"ids": "dl_a"})), "/ids");
        assert_eq!(field(json!({"ids": vec!["dl"; 101]})), "/ids");
        assert_eq!(field(json!({"ids": ["dl_a", 7]})), "/ids/1");
        assert_eq!(field(json!({"ids": ["dl_a"], "queue": DLQ})), "/queue");
        assert_eq!(field(json!({"ids": ["dl_a"], "limit": 2})), "/limit");
        assert_eq!(field(json!({"queue": "send-push-fast.fifo"})), "/queue", "not a dead-letter queue");
        assert_eq!(field(json!({"queue": DLQ, "limit": 0})), "/limit");
        assert_eq!(field(json!({"queue": DLQ, "limit": 101})), "/limit");
        assert_eq!(field(json!({"queue": DLQ, "all": true})), "/all");
    }

    #[test]
    fn source_queues_are_the_dead_letter_queues_without_their_suffix() {
        assert_eq!(source_queue("send-email-fast-dlq.fifo"), "send-email-fast.fifo");
        assert_eq!(source_queue("events-bulk-dlq.fifo"), "events-bulk.fifo");
        assert_eq!(source_queue("deferred-dlq"), "deferred");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_whose_notification_was_never_written_is_queued_again_for_its_claim() {
        let h = Harness::new().await;
        let job = SendJob { redrives: 2, ..h.seed("order.completed", "evt-3", Channel::Push).await };
        let body = encode(&job);
        let letter = crate::handlers::dead_letters::dead_letter_of(&record(DLQ, &body, 1), DeadLetterReason::UnknownNotification, Some(&job), t0());
        h.store.inner.record_dead_letter(&letter).await.unwrap();

        let answer = replay_ids(&h, &[&letter.id]).await;

        assert_eq!(answer.results, [ReplayResult { id: letter.id.clone(), outcome: ReplayOutcome::Replayed, status: None }]);
        let back: Vec<SendJob> = h.take(SEND_PUSH_FAST).await;
        assert_eq!(back, [SendJob { redrives: 0, ..job.clone() }], "with a fresh redrive budget; its claim creates it");
        assert_eq!(h.store.inner.get(&job.notification_id).await.unwrap(), None);
        assert!(listed(&h).await.is_empty());
    }
}
