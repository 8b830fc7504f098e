//! Which queues exist, what they are called and how they are wired to their dead-letter queues.
//! On AWS the same names are created by `template.yaml`; locally by the local stack.

use std::time::Duration;

use crate::domain::{Channel, Lane};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub queue: String,
    /// Receives after which the next receive moves the message to `queue` instead.
    pub max_receive_count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    /// Logical name; FIFO queue names end in `.fifo`.
    pub name: String,
    pub fifo: bool,
    pub visibility_timeout: Duration,
    pub dead_letter: Option<DeadLetter>,
}

impl QueueSpec {
    pub fn fifo(name: impl Into<String>) -> Self {
        Self { name: name.into(), fifo: true, visibility_timeout: Duration::from_secs(30), dead_letter: None }
    }

    pub fn standard(name: impl Into<String>) -> Self {
        Self { name: name.into(), fifo: false, visibility_timeout: Duration::from_secs(30), dead_letter: None }
    }

    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    pub fn dead_letter(mut self, queue: impl Into<String>, max_receive_count: u32) -> Self {
        self.dead_letter = Some(DeadLetter { queue: queue.into(), max_receive_count });
        self
    }
}

/// Routing work for one priority lane: accepted events, grouped per recipient.
pub fn events_queue(lane: Lane) -> String {
    format!("events-{}.fifo", lane.as_str())
}

/// Send jobs for one channel in one priority lane.
pub fn send_queue(channel: Channel, lane: Lane) -> String {
    format!("send-{}-{}.fifo", channel.as_str(), lane.as_str())
}

/// Notifications waiting for their time (scheduled sends, quiet hours): a standard queue, since
/// SQS allows per-message delay only there.
pub const DEFERRED_QUEUE: &str = "deferred";

/// Status changes of notifications on their way to the producer's callback URL, grouped per
/// recipient so one notification's changes arrive in order.
pub const CALLBACKS_QUEUE: &str = "status-callbacks.fifo";

/// The dead-letter queue of `queue`: `send-email-fast.fifo` → `send-email-fast-dlq.fifo`.
pub fn dead_letter_queue_of(queue: &str) -> String {
    match queue.strip_suffix(".fifo") {
        Some(stem) => format!("{stem}-dlq.fifo"),
        None => format!("{queue}-dlq"),
    }
}

/// Whether `queue` is a dead-letter queue (`…-dlq.fifo`, `…-dlq`).
pub fn is_dead_letter_queue(queue: &str) -> bool {
    queue.strip_suffix(".fifo").unwrap_or(queue).ends_with("-dlq")
}

/// Receives after which a main queue's redrive policy moves a message to its dead-letter queue.
///
/// A safety net, not the retry budget: senders give up by their own count of provider attempts
/// ([`RetryPolicy`](crate::handlers::sqs_batch::RetryPolicy)), and on a FIFO queue every record
/// held back behind a failing one of its group is received (and counted) again too. Fifty
/// receives at the pipeline's backoff (1 s doubling to 5 min, each delay at least ¾ of that)
/// take two and a half hours or more of continuous trouble.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 50;

/// Tunables of the topology; the local stack and tests shorten them.
#[derive(Clone, Debug)]
pub struct TopologySettings {
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
}

impl Default for TopologySettings {
    fn default() -> Self {
        Self { visibility_timeout: Duration::from_secs(30), max_receive_count: DEFAULT_MAX_RECEIVE_COUNT }
    }
}

/// Every queue of the platform with its dead-letter queue, DLQs first so redrive targets exist.
pub fn all_queues(settings: &TopologySettings) -> Vec<QueueSpec> {
    let mut main = Vec::new();
    for lane in Lane::ALL {
        main.push(QueueSpec::fifo(events_queue(lane)));
        for channel in Channel::ALL {
            main.push(QueueSpec::fifo(send_queue(channel, lane)));
        }
    }
    main.push(QueueSpec::standard(DEFERRED_QUEUE));
    main.push(QueueSpec::fifo(CALLBACKS_QUEUE));
    let mut out = Vec::new();
    for q in &main {
        let dlq = dead_letter_queue_of(&q.name);
        out.push(QueueSpec { name: dlq, fifo: q.fifo, visibility_timeout: settings.visibility_timeout, dead_letter: None });
    }
    for q in main {
        let dlq = dead_letter_queue_of(&q.name);
        out.push(q.visibility_timeout(settings.visibility_timeout).dead_letter(dlq, settings.max_receive_count));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_template() {
        assert_eq!(send_queue(Channel::Email, Lane::Fast), "send-email-fast.fifo");
        assert_eq!(dead_letter_queue_of("send-email-fast.fifo"), "send-email-fast-dlq.fifo");
        assert_eq!(dead_letter_queue_of("deferred"), "deferred-dlq");
        assert!(is_dead_letter_queue("send-email-fast-dlq.fifo") && is_dead_letter_queue("deferred-dlq"));
        assert!(!is_dead_letter_queue("send-email-fast.fifo") && !is_dead_letter_queue("deferred"));
    }

    #[test]
    fn every_main_queue_has_a_dead_letter_queue_of_its_kind() {
        let all = all_queues(&TopologySettings::default());
        for q in all.iter().filter(|q| !q.name.contains("-dlq")) {
            let dl = q.dead_letter.as_ref().expect("main queue has a DLQ");
            let target = all.iter().find(|t| t.name == dl.queue).expect("DLQ exists");
            assert_eq!(target.fifo, q.fifo);
        }
        assert_eq!(all.len(), 2 * (2 * (1 + Channel::ALL.len()) + 2));
    }
}
