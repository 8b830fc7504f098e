//! Every metric the platform emits, in one place: names, units, label keys, and one small typed
//! function per thing a handler counts, so no handler spells a metric name.
//!
//! Handlers record through the [`metrics`](::metrics) facade. On Lambda the recorder writes
//! CloudWatch Embedded Metric Format documents to stdout after every invocation
//! ([`telemetry::init_lambda`](crate::telemetry::init_lambda)); in the local stack it keeps
//! Prometheus counters shown at `GET /metrics`. With no recorder installed (unit tests of other
//! modules), recording does nothing.
//!
//! The contract a dashboard and alarms are written against (namespace `NOTIFY_METRICS_NAMESPACE`,
//! default [`DEFAULT_NAMESPACE`]):
//!
//! | metric | unit | dimensions | recorded when |
//! |---|---|---|---|
//! | `EventsAccepted` | Count | Lane | ingest accepted a new event (not for an idempotent replay) |
//! | `EventsRejected` | Count | Reason | `POST /v1/events` answered with a problem ([`RejectReason`]) |
//! | `NotificationsRouted` | Count | Channel, Lane | a notification to deliver was recorded: by the router (scheduled), or, queued at once, by its sender's claim (or the dead-letter handler's failure) that creates it |
//! | `NotificationsSent` | Count | Channel, Lane | a provider accepted the message |
//! | `NotificationsFailed` | Count | Channel, Lane | failed for good: template error, provider rejection, retries exhausted |
//! | `NotificationsSkipped` | Count | Channel, Lane | opted out, no address, no live connection |
//! | `Retries` | Count | Queue | a record was reported failed to its queue, to be received again |
//! | `DeadLetterArrivals` | Count | Queue | a message reached the dead-letter queue of `Queue` |
//! | `IngestToSentLatency` | Milliseconds | Channel, Lane | sent: from ingest's acceptance to the provider's answer (scheduled waits included) |
//! | `ProviderLatency` | Milliseconds | Channel | every provider call, whatever its outcome |
//! | `ActiveWebSocketConnections` | Count | – | a connection was recorded or forgotten: the store's live count |
//!
//! Labels become EMF dimensions, so only these four keys are ever used, each with values from a
//! closed set: `Lane` ∈ fast, bulk; `Channel` ∈ email, sms, push, whatsapp, telegram, websocket;
//! `Queue` = the logical queue name without stack prefix and `.fifo` ([`queue_label`]);
//! `Reason` = [`RejectReason`]. Nothing recorded here carries a user id, an address or a message.

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use std::borrow::Cow;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::domain::{Channel, Lane};

/// The CloudWatch namespace when `NOTIFY_METRICS_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "Notify";

pub const EVENTS_ACCEPTED: &str = "EventsAccepted";
pub const EVENTS_REJECTED: &str = "EventsRejected";
pub const NOTIFICATIONS_ROUTED: &str = "NotificationsRouted";
pub const NOTIFICATIONS_SENT: &str = "NotificationsSent";
pub const NOTIFICATIONS_FAILED: &str = "NotificationsFailed";
pub const NOTIFICATIONS_SKIPPED: &str = "NotificationsSkipped";
pub const RETRIES: &str = "Retries";
pub const DEAD_LETTER_ARRIVALS: &str = "DeadLetterArrivals";
pub const INGEST_TO_SENT_LATENCY: &str = "IngestToSentLatency";
pub const PROVIDER_LATENCY: &str = "ProviderLatency";
pub const ACTIVE_WEBSOCKET_CONNECTIONS: &str = "ActiveWebSocketConnections";

/// Label keys, which are the EMF dimension names.
pub const LANE: &str = "Lane";
pub const CHANNEL: &str = "Channel";
pub const QUEUE: &str = "Queue";
pub const REASON: &str = "Reason";
/// Every label key a metric may carry.
pub const LABEL_KEYS: [&str; 4] = [LANE, CHANNEL, QUEUE, REASON];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Summed per period (CloudWatch statistic `Sum`).
    Counter,
    /// One value per observation (`Average`, `p99`, `Maximum`).
    Distribution,
    /// The current value (`Maximum` or `Average` over a period).
    Gauge,
}

/// One metric of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: &'static str,
    pub kind: Kind,
    /// The CloudWatch unit name.
    pub unit: &'static str,
    /// Its dimensions (label keys), in this order.
    pub dimensions: &'static [&'static str],
    pub description: &'static str,
}

impl MetricSpec {
    fn unit(&self) -> Unit {
        match self.unit {
            "Milliseconds" => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }
}

/// The whole contract, in the order of the table above.
pub const ALL: [MetricSpec; 11] = [
    MetricSpec { name: EVENTS_ACCEPTED, kind: Kind::Counter, unit: "Count", dimensions: &[LANE], description: "events accepted by ingest" },
    MetricSpec { name: EVENTS_REJECTED, kind: Kind::Counter, unit: "Count", dimensions: &[REASON], description: "POST /v1/events answered with a problem" },
    MetricSpec { name: NOTIFICATIONS_ROUTED, kind: Kind::Counter, unit: "Count", dimensions: &[CHANNEL, LANE], description: "notifications created for delivery by the router" },
    MetricSpec { name: NOTIFICATIONS_SENT, kind: Kind::Counter, unit: "Count", dimensions: &[CHANNEL, LANE], description: "messages a provider accepted" },
    MetricSpec { name: NOTIFICATIONS_FAILED, kind: Kind::Counter, unit: "Count", dimensions: &[CHANNEL, LANE], description: "notifications failed for good" },
    MetricSpec { name: NOTIFICATIONS_SKIPPED, kind: Kind::Counter, unit: "Count", dimensions: &[CHANNEL, LANE], description: "notifications skipped (opted out, no address, no live connection)" },
    MetricSpec { name: RETRIES, kind: Kind::Counter, unit: "Count", dimensions: &[QUEUE], description: "records reported failed to be received again" },
    MetricSpec { name: DEAD_LETTER_ARRIVALS, kind: Kind::Counter, unit: "Count", dimensions: &[QUEUE], description: "messages that reached the dead-letter queue of Queue" },
    MetricSpec { name: INGEST_TO_SENT_LATENCY, kind: Kind::Distribution, unit: "Milliseconds", dimensions: &[CHANNEL, LANE], description: "from acceptance by ingest to the provider's answer" },
    MetricSpec { name: PROVIDER_LATENCY, kind: Kind::Distribution, unit: "Milliseconds", dimensions: &[CHANNEL], description: "one provider call" },
    MetricSpec { name: ACTIVE_WEBSOCKET_CONNECTIONS, kind: Kind::Gauge, unit: "Count", dimensions: &[], description: "live WebSocket connections" },
];

/// The spec of `name`, if it is one of ours.
pub fn spec(name: &str) -> Option<&'static MetricSpec> {
    ALL.iter().find(|m| m.name == name)
}

/// Tells the installed recorder each metric's unit and description. Telemetry calls it right
/// after installing a recorder (EMF takes the `Unit` from here).
pub fn describe() {
    for m in &ALL {
        match m.kind {
            Kind::Counter => describe_counter!(m.name, m.unit(), m.description),
            Kind::Distribution => describe_histogram!(m.name, m.unit(), m.description),
            Kind::Gauge if gauges_as_samples() => describe_histogram!(m.name, m.unit(), m.description),
            Kind::Gauge => describe_gauge!(m.name, m.unit(), m.description),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// How gauges are recorded.

static GAUGES_AS_SAMPLES: AtomicBool = AtomicBool::new(false);

/// Records gauges as one sample per update instead of a held value. The EMF collector writes a
/// registered gauge into every document it flushes, with the last value it was set to: a warm
/// `ws-push` container that last saw the connection count hours ago would keep reporting that
/// number after every batch. As samples, a value is written once, in the invocation that read it
/// from the store, which is what CloudWatch should aggregate. (EMF has no metric types: a sample
/// is the same metric.) Prometheus keeps a real gauge, so the local stack leaves this off.
pub fn record_gauges_as_samples(on: bool) {
    GAUGES_AS_SAMPLES.store(on, Ordering::Relaxed);
}

fn gauges_as_samples() -> bool {
    GAUGES_AS_SAMPLES.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// What handlers record.

/// Why `POST /v1/events` answered with a problem: the `Reason` dimension of `EventsRejected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// 400: the body is not JSON (or could not be read).
    MalformedJson,
    /// 401: no API key, or not one of ours.
    Unauthorized,
    /// 413: over the size limit.
    PayloadTooLarge,
    /// 422: the envelope is invalid (`event_id`, `user_id`, `priority` …).
    InvalidEvent,
    /// 422: `event_type` is not in the catalog.
    UnknownEventType,
    /// 422: the payload fails its event type's JSON Schema.
    SchemaViolation,
    /// 409: the `event_id` was used for a different body.
    IdempotencyConflict,
    /// 409: the same `event_id` is being accepted right now.
    InProgress,
    /// 503: a backing service failed.
    Unavailable,
}

impl RejectReason {
    pub const ALL: [RejectReason; 9] = [
        RejectReason::MalformedJson,
        RejectReason::Unauthorized,
        RejectReason::PayloadTooLarge,
        RejectReason::InvalidEvent,
        RejectReason::UnknownEventType,
        RejectReason::SchemaViolation,
        RejectReason::IdempotencyConflict,
        RejectReason::InProgress,
        RejectReason::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::InvalidEvent => "invalid_event",
            RejectReason::UnknownEventType => "unknown_event_type",
            RejectReason::SchemaViolation => "schema_violation",
            RejectReason::IdempotencyConflict => "idempotency_conflict",
            RejectReason::InProgress => "in_progress",
            RejectReason::Unavailable => "unavailable",
        }
    }
}

pub fn event_accepted(lane: Lane) {
    counter!(EVENTS_ACCEPTED, LANE => lane.as_str()).increment(1);
}

pub fn event_rejected(reason: RejectReason) {
    counter!(EVENTS_REJECTED, REASON => reason.as_str()).increment(1);
}

pub fn notification_routed(channel: Channel, lane: Lane) {
    counter!(NOTIFICATIONS_ROUTED, CHANNEL => channel.as_str(), LANE => lane.as_str()).increment(1);
}

pub fn notification_sent(channel: Channel, lane: Lane) {
    counter!(NOTIFICATIONS_SENT, CHANNEL => channel.as_str(), LANE => lane.as_str()).increment(1);
}

pub fn notification_failed(channel: Channel, lane: Lane) {
    counter!(NOTIFICATIONS_FAILED, CHANNEL => channel.as_str(), LANE => lane.as_str()).increment(1);
}

pub fn notification_skipped(channel: Channel, lane: Lane) {
    counter!(NOTIFICATIONS_SKIPPED, CHANNEL => channel.as_str(), LANE => lane.as_str()).increment(1);
}

/// A record of `queue` (its name as the event source ARN gives it) reported failed, to come back.
pub fn retry(queue: &str) {
    counter!(RETRIES, QUEUE => queue_label(queue)).increment(1);
}

/// A message arrived on `dead_letter_queue`; counted against the queue it was dead-lettered from
/// (`send-email-fast-dlq.fifo` → `send-email-fast`).
pub fn dead_letter_arrival(dead_letter_queue: &str) {
    counter!(DEAD_LETTER_ARRIVALS, QUEUE => dead_letter_source(dead_letter_queue)).increment(1);
}

pub fn ingest_to_sent_latency(channel: Channel, lane: Lane, latency: Duration) {
    histogram!(INGEST_TO_SENT_LATENCY, CHANNEL => channel.as_str(), LANE => lane.as_str()).record(millis(latency));
}

pub fn provider_latency(channel: Channel, latency: Duration) {
    histogram!(PROVIDER_LATENCY, CHANNEL => channel.as_str()).record(millis(latency));
}

/// The number of live connections, as the connection store counts them. A counter that drifted
/// below zero (connections recorded before the counter existed, then forgotten) reads 0.
pub fn active_websocket_connections(active: i64) {
    let value = active.max(0) as f64;
    if gauges_as_samples() {
        histogram!(ACTIVE_WEBSOCKET_CONNECTIONS).record(value);
    } else {
        gauge!(ACTIVE_WEBSOCKET_CONNECTIONS).set(value);
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Queue names.

/// Every logical queue name (dead-letter queues included) without `.fifo`, longest first.
static LOGICAL_QUEUES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut names: Vec<String> = crate::topology::all_queues(&Default::default())
        .into_iter()
        .map(|q| q.name.strip_suffix(".fifo").map(str::to_owned).unwrap_or(q.name))
        .collect();
    names.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    names
});

/// The `Queue` value for a queue named logically (`send-email-fast.fifo`) or physically, as an
/// event source ARN names it (`notify-prod-send-email-fast.fifo`): `send-email-fast`. A name
/// outside the topology keeps everything but `.fifo`.
pub fn queue_label(queue: &str) -> Cow<'static, str> {
    let stem = queue.strip_suffix(".fifo").unwrap_or(queue);
    LOGICAL_QUEUES
        .iter()
        .find(|name| stem.strip_suffix(name.as_str()).is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('-')))
        .map(|name| Cow::Borrowed(name.as_str()))
        .unwrap_or_else(|| Cow::Owned(stem.to_owned()))
}

/// The queue a dead-letter queue serves: `send-email-fast-dlq.fifo` → `send-email-fast`.
pub fn dead_letter_source(dead_letter_queue: &str) -> Cow<'static, str> {
    match queue_label(dead_letter_queue) {
        Cow::Borrowed(name) => Cow::Borrowed(name.strip_suffix("-dlq").unwrap_or(name)),
        Cow::Owned(name) => Cow::Owned(name.strip_suffix("-dlq").map(str::to_owned).unwrap_or(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use std::collections::BTreeMap;

    /// (kind, name, labels) → value, of everything recorded so far.
    type Recorded = BTreeMap<(MetricKind, String, Vec<(String, String)>), DebugValue>;

    fn snapshot(snapshotter: &Snapshotter) -> (Recorded, BTreeMap<String, Option<Unit>>) {
        let mut values = Recorded::new();
        let mut units = BTreeMap::new();
        for (key, unit, _, value) in snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            units.insert(key.name().to_owned(), unit);
            values.insert((kind, key.name().to_owned(), labels), value);
        }
        (values, units)
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn record_one_of_each() {
        describe();
        event_accepted(Lane::Fast);
        event_accepted(Lane::Fast);
        event_rejected(RejectReason::SchemaViolation);
        notification_routed(Channel::Email, Lane::Bulk);
        notification_sent(Channel::Email, Lane::Fast);
        notification_failed(Channel::Push, Lane::Fast);
        notification_skipped(Channel::Websocket, Lane::Bulk);
        retry("arn-less-name-send-sms-fast.fifo");
        dead_letter_arrival("notify-prod-send-push-bulk-dlq.fifo");
        ingest_to_sent_latency(Channel::Email, Lane::Fast, Duration::from_millis(1500));
        provider_latency(Channel::Email, Duration::from_micros(2500));
        active_websocket_connections(3);
    }

    #[test]
    fn each_function_records_its_metric_with_the_contract_labels_and_unit() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, record_one_of_each);
        let (values, units) = snapshot(&snapshotter);

        let counter = |name: &str, l: &[(&str, &str)]| match values.get(&(MetricKind::Counter, name.to_owned(), labels(l))) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name} {l:?}: {other:?}"),
        };
        assert_eq!(counter("EventsAccepted", &[("Lane", "fast")]), 2);
        assert_eq!(counter("EventsRejected", &[("Reason", "schema_violation")]), 1);
        assert_eq!(counter("NotificationsRouted", &[("Channel", "email"), ("Lane", "bulk")]), 1);
        assert_eq!(counter("NotificationsSent", &[("Channel", "email"), ("Lane", "fast")]), 1);
        assert_eq!(counter("NotificationsFailed", &[("Channel", "push"), ("Lane", "fast")]), 1);
        assert_eq!(counter("NotificationsSkipped", &[("Channel", "websocket"), ("Lane", "bulk")]), 1);
        assert_eq!(counter("Retries", &[("Queue", "send-sms-fast")]), 1);
        assert_eq!(counter("DeadLetterArrivals", &[("Queue", "send-push-bulk")]), 1);

        let histogram = |name: &str, l: &[(&str, &str)]| match values.get(&(MetricKind::Histogram, name.to_owned(), labels(l))) {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect::<Vec<f64>>(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(histogram("IngestToSentLatency", &[("Channel", "email"), ("Lane", "fast")]), [1500.0]);
        assert_eq!(histogram("ProviderLatency", &[("Channel", "email")]), [2.5]);
        assert_eq!(values.get(&(MetricKind::Gauge, "ActiveWebSocketConnections".into(), vec![])), Some(&DebugValue::Gauge(3.0.into())));

        // Each metric of the contract was recorded, with its unit, its dimensions and nothing else.
        for spec in &ALL {
            let keys: Vec<_> = values.keys().filter(|(_, name, _)| name == spec.name).collect();
            assert!(!keys.is_empty(), "{} recorded", spec.name);
            for (_, _, labels) in keys {
                assert_eq!(labels.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), spec.dimensions, "{}", spec.name);
            }
            assert_eq!(units[spec.name], Some(spec.unit()), "{}", spec.name);
        }
        assert_eq!(values.len(), 11, "nothing but the contract: {:?}", values.keys().collect::<Vec<_>>());
    }

    #[test]
    fn the_contract_names_and_dimensions_are_fixed() {
        let table: Vec<(&str, &str, Vec<&str>)> = ALL.iter().map(|m| (m.name, m.unit, m.dimensions.to_vec())).collect();
        assert_eq!(
            table,
            [
                ("EventsAccepted", "Count", vec!["Lane"]),
                ("EventsRejected", "Count", vec!["Reason"]),
                ("NotificationsRouted", "Count", vec!["Channel", "Lane"]),
                ("NotificationsSent", "Count", vec!["Channel", "Lane"]),
                ("NotificationsFailed", "Count", vec!["Channel", "Lane"]),
                ("NotificationsSkipped", "Count", vec!["Channel", "Lane"]),
                ("Retries", "Count", vec!["Queue"]),
                ("DeadLetterArrivals", "Count", vec!["Queue"]),
                ("IngestToSentLatency", "Milliseconds", vec!["Channel", "Lane"]),
                ("ProviderLatency", "Milliseconds", vec!["Channel"]),
                ("ActiveWebSocketConnections", "Count", vec![]),
            ]
        );
        for m in &ALL {
            assert!(m.dimensions.iter().all(|d| LABEL_KEYS.contains(d)), "{}", m.name);
            assert_eq!(spec(m.name), Some(m));
        }
        let reasons: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            reasons,
            ["malformed_json", "unauthorized", "payload_too_large", "invalid_event", "unknown_event_type", "schema_violation", "idempotency_conflict", "in_progress", "unavailable"]
        );
        assert!(reasons.iter().all(|r| r.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }

    #[test]
    fn queue_labels_drop_stack_prefix_and_fifo() {
        for (queue, label) in [
            ("send-email-fast.fifo", "send-email-fast"),
            ("notify-prod-send-email-fast.fifo", "send-email-fast"),
            ("notify-prod-events-bulk.fifo", "events-bulk"),
            ("deferred", "deferred"),
            ("stack-deferred", "deferred"),
            ("stack-deferred-dlq", "deferred-dlq"),
            ("send-websocket-bulk-dlq.fifo", "send-websocket-bulk-dlq"),
            ("x-send-telegram-fast-dlq.fifo", "send-telegram-fast-dlq"),
            ("not-ours.fifo", "not-ours"),
            ("undeferred", "undeferred"),
        ] {
            assert_eq!(queue_label(queue), label, "{queue}");
        }
        assert_eq!(dead_letter_source("notify-send-email-fast-dlq.fifo"), "send-email-fast");
        assert_eq!(dead_letter_source("deferred-dlq"), "deferred");
        assert_eq!(dead_letter_source("events-fast-dlq.fifo"), "events-fast");
        assert_eq!(dead_letter_source("odd-dlq.fifo"), "odd");
    }

    #[test]
    fn a_negative_count_reads_zero() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || active_websocket_connections(-2));
        let (values, _) = snapshot(&snapshotter);
        assert_eq!(values.get(&(MetricKind::Gauge, "ActiveWebSocketConnections".into(), vec![])), Some(&DebugValue::Gauge(0.0.into())));
    }
}
