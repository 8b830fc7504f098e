//! `POST /v1/events`: validate, claim the event id, record the event and queue it for routing.

use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::domain::ids::message_group_for;
use crate::domain::{Event, FieldError};
use crate::jobs::{RouteJob, encode};
use crate::metrics::{self, RejectReason};
use crate::ports::queue::MAX_MESSAGE_BYTES;
use crate::ports::{Claim, Clock, EventRecord, EventStore, IdempotencyState, IdempotencyStore, OutgoingMessage, QueueSender, StoredResponse};
use crate::topology::events_queue;

#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// Largest accepted body. An event travels in one SQS message (256 KiB at most) with a
    /// little routing metadata around it, so the default leaves 16 KiB of headroom.
    pub max_body_bytes: usize,
    /// How long a claim holds if the request dies before completing it.
    pub in_progress_ttl: Duration,
    /// How long a repeat of an event id is answered from the stored response.
    pub idempotency_ttl: Duration,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 240 * 1024,
            in_progress_ttl: Duration::from_secs(30),
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

pub struct IngestDeps {
    pub catalog: Arc<Catalog>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub events: Arc<dyn EventStore>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
    pub settings: IngestSettings,
}

/// The answer to a submission; a replay carries the first answer's status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub status: u16,
    pub body: String,
    pub location: String,
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body is not JSON: {0}")]
    Malformed(String),
    /// The envelope is invalid (`event_id`, `user_id`, `priority` …).
    #[error("the event is invalid")]
    Invalid(Vec<FieldError>),
    #[error("the event type is not in the catalog")]
    UnknownEventType(Vec<FieldError>),
    /// The payload fails its event type's JSON Schema.
    #[error("the payload does not match its event type's schema")]
    SchemaViolation(Vec<FieldError>),
    #[error("event_id was already used for a different event")]
    Conflict,
    #[error("a request with this event_id is still being processed")]
    InProgress,
    #[error("service unavailable")]
    Unavailable,
}

impl IngestError {
    /// The `Reason` this answer counts under in `EventsRejected`.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            IngestError::TooLarge { .. } => RejectReason::PayloadTooLarge,
            IngestError::Malformed(_) => RejectReason::MalformedJson,
            IngestError::Invalid(_) => RejectReason::InvalidEvent,
            IngestError::UnknownEventType(_) => RejectReason::UnknownEventType,
            IngestError::SchemaViolation(_) => RejectReason::SchemaViolation,
            IngestError::Conflict => RejectReason::IdempotencyConflict,
            IngestError::InProgress => RejectReason::InProgress,
            IngestError::Unavailable => RejectReason::Unavailable,
        }
    }
}

fn payload_hash(body: &Value) -> String {
    // serde_json's map is ordered, so this is a canonical form: key order and spacing don't matter.
    hex::encode(Sha256::digest(serde_json::to_vec(body).unwrap_or_default()))
}

fn at(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(d).unwrap_or(now)
}

pub fn location_of(event_id: &str) -> String {
    format!("/v1/events/{event_id}")
}

pub async fn submit_event(deps: &IngestDeps, body: &[u8]) -> Result<Accepted, IngestError> {
    if body.len() > deps.settings.max_body_bytes {
        return Err(IngestError::TooLarge { limit: deps.settings.max_body_bytes });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| IngestError::Malformed(e.to_string()))?;
    let event = Event::parse(&value).map_err(IngestError::Invalid)?;
    let Some(event_type) = deps.catalog.event_type(&event.event_type) else {
        return Err(IngestError::UnknownEventType(vec![FieldError::new("/event_type", format!("unknown event type {:?}", event.event_type))]));
    };
    event_type.check_payload(&event.payload).map_err(IngestError::SchemaViolation)?;

    let key = event.event_id.as_str().to_owned();
    let hash = payload_hash(&value);
    let now = deps.clock.now();
    let expires_at = at(now, deps.settings.idempotency_ttl);
    let location = location_of(&key);
    let claim = deps
        .idempotency
        .claim(&key, &hash, now, at(now, deps.settings.in_progress_ttl), expires_at)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "idempotency claim failed");
            IngestError::Unavailable
        })?;
    if let Claim::Existing(record) = claim {
        if record.payload_hash != hash {
            return Err(IngestError::Conflict);
        }
        return match record.state {
            IdempotencyState::Completed { response } => {
                Ok(Accepted { status: response.status, body: response.body, location, replayed: true })
            }
            IdempotencyState::InProgress { .. } => Err(IngestError::InProgress),
        };
    }

    let priority = event.priority.unwrap_or(event_type.priority);
    let lane = priority.lane();
    let record = EventRecord { event: event.clone(), priority, lane, accepted_at: now };
    let job = encode(&RouteJob { event: event.clone(), priority, accepted_at: now, fallback: None });
    if job.len() > MAX_MESSAGE_BYTES {
        release(deps, &key).await;
        return Err(IngestError::TooLarge { limit: deps.settings.max_body_bytes });
    }
    let enqueue = async {
        deps.events.put_event(&record).await.map_err(|e| e.to_string())?;
        let message = OutgoingMessage::fifo(job, message_group_for(&event.user_id), key.clone());
        deps.queue.send_batch(&events_queue(lane), vec![message]).await.map_err(|e| e.to_string())
    };
    if let Err(error) = enqueue.await {
        tracing::error!(%error, event_id = %key, "could not record or queue the event");
        release(deps, &key).await;
        return Err(IngestError::Unavailable);
    }

    let body = json!({
        "event_id": key,
        "event_type": event.event_type,
        "status": "accepted",
        "priority": priority,
        "accepted_at": now,
        "links": { "self": location },
    })
    .to_string();
    if let Err(e) = deps.idempotency.complete(&key, &hash, StoredResponse { status: 202, body: body.clone() }, expires_at).await {
        // The event is queued; a retry would find the claim in progress until it lapses, and
        // deterministic notification ids keep a second routing from sending anything twice.
        tracing::warn!(error = %e, event_id = %key, "could not store the idempotent response");
    }
    metrics::event_accepted(lane);
    tracing::info!(event_id = %key, event_type = %event.event_type, priority = priority.as_str(), "event accepted");
    Ok(Accepted { status: 202, body, location, replayed: false })
}

async fn release(deps: &IngestDeps, key: &str) {
    if let Err(e) = deps.idempotency.release(key).await {
        tracing::warn!(error = %e, event_id = %key, "could not release the idempotency claim; it lapses by itself");
    }
}
