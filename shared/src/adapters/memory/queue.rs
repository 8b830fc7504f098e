//! Amazon SQS in process: standard and FIFO queues with visibility timeouts, per-message delay,
//! FIFO message groups and deduplication, redrive to dead-letter queues and long polling.
//!
//! The semantics follow SQS closely enough that the AWS adapter is a drop-in replacement (both
//! pass `crate::contract::queue`). Where SQS is vague or approximate this adapter is exact and
//! deterministic: standard queues deliver in send order, `depth` is exact, a short poll sees
//! every visible message.
//!
//! Time: visibility, delays and the deduplication window run on [`tokio::time::Instant`], so
//! tests may pause and advance time; `sent_at_millis` is wall-clock time.

use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ports::queue::{
    MAX_DELAY, MAX_MESSAGE_BYTES, MAX_VISIBILITY, OutgoingMessage, QueueError, QueueReceiver, QueueSender,
    ReceivedMessage, VisibilityControl,
};
use crate::topology::{DeadLetter, QueueSpec};

/// How long a FIFO queue remembers a deduplication id.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The most messages one receive returns.
const MAX_RECEIVE: usize = 10;
/// SQS's limit on the length of a message group id and of a deduplication id.
const MAX_ID_LEN: usize = 128;
/// Durations are capped at this before being added to an instant, so no input can overflow the
/// clock (a queue spec with `Duration::MAX` as its visibility timeout just means "never").
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// In-process SQS. Cloning is cheap and every clone shares the same queues.
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes the long polls of one queue when a message may have become receivable. The set of
    /// queues is fixed at construction, so this map needs no lock.
    wakers: HashMap<String, Arc<Notify>>,
}

struct State {
    queues: HashMap<String, Queue>,
    /// Send order across all queues; orders messages inside each queue.
    next_seq: u64,
}

struct Queue {
    fifo: bool,
    visibility_timeout: Duration,
    /// Only set when the target queue exists.
    dead_letter: Option<DeadLetter>,
    /// Messages by send order.
    messages: BTreeMap<u64, Stored>,
    /// The current receipt handle of each received message → its key in `messages`. Receipt
    /// handles that were replaced by a newer receive, or whose message is gone, are not here.
    receipts: HashMap<String, u64>,
    /// FIFO deduplication ids → when they were first accepted, and the same in acceptance order
    /// so expired ids can be forgotten cheaply.
    dedup: HashMap<String, Instant>,
    dedup_order: VecDeque<(Instant, String)>,
    /// The most deduplication ids remembered (the newest); 0: every one within the window.
    dedup_limit: usize,
}

struct Stored {
    message_id: String,
    body: String,
    group_id: Option<String>,
    dedup_id: Option<String>,
    sent_at_millis: i64,
    receive_count: u32,
    /// Not receivable before this instant (delay, or visibility timeout while in flight).
    visible_at: Instant,
    /// The receipt handle of the latest receive.
    receipt: Option<String>,
}

/// What one receive attempt produced.
struct Attempt {
    messages: Vec<ReceivedMessage>,
    /// The earliest instant after `now` at which a message of the queue becomes visible.
    next_visible: Option<Instant>,
    /// Messages moved to dead-letter queues: (target queue, message).
    dead: Vec<(String, Stored)>,
}

impl MemoryQueue {
    /// Creates the queues of `specs`, empty. A later spec with the same name replaces an earlier
    /// one; a dead-letter target that is not among `specs` is ignored (no redrive), since SQS
    /// refuses such a redrive policy in the first place.
    pub fn new(specs: &[QueueSpec]) -> Self {
        let names: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let mut queues = HashMap::new();
        let mut wakers = HashMap::new();
        for spec in specs {
            let dead_letter = spec.dead_letter.clone().filter(|d| names.contains(d.queue.as_str()));
            queues.insert(
                spec.name.clone(),
                Queue {
                    fifo: spec.fifo,
                    visibility_timeout: spec.visibility_timeout,
                    dead_letter,
                    messages: BTreeMap::new(),
                    receipts: HashMap::new(),
                    dedup: HashMap::new(),
                    dedup_order: VecDeque::new(),
                    dedup_limit: 0,
                },
            );
            wakers.insert(spec.name.clone(), Arc::new(Notify::new()));
        }
        Self { inner: Arc::new(Inner { state: Mutex::new(State { queues, next_seq: 0 }), wakers }) }
    }

    /// Remembers at most the newest `ids` deduplication ids per FIFO queue (0: all within the
    /// five-minute window, as SQS): under sustained load the window's ids would otherwise be the
    /// largest thing the local stack holds (10,000 messages a second is 3 million ids a queue).
    pub fn remembering(self, ids: usize) -> Self {
        for q in self.state().queues.values_mut() {
            q.dedup_limit = ids;
        }
        self
    }

    /// Names of the queues this instance holds, sorted.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.wakers.keys().cloned().collect();
        names.sort();
        names
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waker(&self, queue: &str) -> Result<&Arc<Notify>, QueueError> {
        self.inner.wakers.get(queue).ok_or_else(|| unknown(queue))
    }

    /// Wakes the long polls of `queue`, so they look again.
    fn wake(&self, queue: &str) {
        if let Some(notify) = self.inner.wakers.get(queue) {
            notify.notify_waiters();
        }
    }

    /// One non-blocking receive: takes what is receivable now and performs due redrives.
    /// Returns what was received, when to look again, and the dead-letter queues that were given
    /// messages.
    fn attempt(&self, queue: &str, max: usize, now: Instant) -> Result<(Attempt, Vec<String>), QueueError> {
        let mut state = self.state();
        let state = &mut *state;
        let q = state.queues.get_mut(queue).ok_or_else(|| unknown(queue))?;
        let mut attempt = q.take(max, now);
        let mut targets: Vec<String> = Vec::new();
        for (target, stored) in attempt.dead.drain(..) {
            let seq = state.next_seq;
            state.next_seq += 1;
            if let Some(dlq) = state.queues.get_mut(&target) {
                dlq.messages.insert(seq, dead_lettered(stored, now));
            }
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        Ok((attempt, targets))
    }
}

fn unknown(queue: &str) -> QueueError {
    QueueError::UnknownQueue(queue.to_owned())
}

fn invalid(reason: impl Into<String>) -> QueueError {
    QueueError::Invalid(reason.into())
}

fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after.min(FOREVER)).unwrap_or(now)
}

fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

fn wall_clock_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The copy of `stored` that lands in a dead-letter queue: same body, group and deduplication id
/// and send time; a new message id; never received; visible at once.
fn dead_lettered(stored: Stored, now: Instant) -> Stored {
    Stored { message_id: new_id(), receive_count: 0, visible_at: now, receipt: None, ..stored }
}

/// SQS accepts only these characters in a body: `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
/// #x10000-#x10FFFF` (surrogates cannot occur in a Rust string).
fn allowed_in_body(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Group and deduplication ids: 1 to 128 characters, ASCII letters, digits and punctuation.
fn check_id(what: &str, id: Option<&str>) -> Result<(), QueueError> {
    let id = id.ok_or_else(|| invalid(format!("a FIFO queue needs a {what}")))?;
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(invalid(format!("{what} must be 1 to {MAX_ID_LEN} characters long")));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!("{what} may hold only ASCII letters, digits and punctuation")));
    }
    Ok(())
}

fn check_message(fifo: bool, m: &OutgoingMessage) -> Result<(), QueueError> {
    if m.body.is_empty() {
        return Err(invalid("message body must not be empty"));
    }
    if m.body.len() > MAX_MESSAGE_BYTES {
        return Err(invalid(format!("message body is {} bytes, more than {MAX_MESSAGE_BYTES}", m.body.len())));
    }
    if !m.body.chars().all(allowed_in_body) {
        return Err(invalid("message body holds a character SQS does not accept"));
    }
    if fifo {
        check_id("message group id", m.group_id.as_deref())?;
        check_id("deduplication id", m.dedup_id.as_deref())?;
        if !m.delay.is_zero() {
            return Err(invalid("a FIFO queue does not accept a per-message delay"));
        }
    } else if m.delay > MAX_DELAY {
        return Err(invalid(format!("delay {:?} is longer than {MAX_DELAY:?}", m.delay)));
    }
    Ok(())
}

impl Queue {
    /// Records `dedup_id` as seen now, or answers `false` if it was seen within the window.
    fn first_sighting(&mut self, dedup_id: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.dedup_order.front() {
            if now.saturating_duration_since(*at) < DEDUP_WINDOW {
                break;
            }
            if let Some((at, id)) = self.dedup_order.pop_front() {
                // The id may have been accepted again since; only forget this sighting.
                if self.dedup.get(&id) == Some(&at) {
                    self.dedup.remove(&id);
                }
            }
        }
        if self.dedup.contains_key(dedup_id) {
            return false;
        }
        self.dedup.insert(dedup_id.to_owned(), now);
        self.dedup_order.push_back((now, dedup_id.to_owned()));
        if self.dedup_limit > 0 && self.dedup_order.len() > self.dedup_limit
            && let Some((at, id)) = self.dedup_order.pop_front()
            && self.dedup.get(&id) == Some(&at)
        {
            self.dedup.remove(&id);
        }
        true
    }

    fn redrive_due(&self, stored: &Stored) -> bool {
        self.dead_letter.as_ref().is_some_and(|d| stored.receive_count >= d.max_receive_count)
    }

    /// Takes up to `max` receivable messages, marking them in flight, and removes the messages
    /// that are due for their dead-letter queue.
    fn take(&mut self, max: usize, now: Instant) -> Attempt {
        let order: Vec<u64> = if self.fifo { self.fifo_candidates(now) } else { self.visible_keys(now) };
        let mut messages = Vec::new();
        let mut dead = Vec::new();
        for key in order {
            if messages.len() >= max {
                break;
            }
            let Some(stored) = self.messages.get(&key) else { continue };
            if self.redrive_due(stored) {
                if let (Some(stored), Some(dl)) = (self.messages.remove(&key), self.dead_letter.as_ref()) {
                    if let Some(receipt) = &stored.receipt {
                        self.receipts.remove(receipt);
                    }
                    dead.push((dl.queue.clone(), stored));
                }
                continue;
            }
            if let Some(received) = self.deliver(key, now) {
                messages.push(received);
            }
        }
        let next_visible = if messages.is_empty() {
            self.messages.values().map(|m| m.visible_at).filter(|at| *at > now).min()
        } else {
            None
        };
        Attempt { messages, next_visible, dead }
    }

    /// Standard queue: every visible message, oldest first.
    fn visible_keys(&self, now: Instant) -> Vec<u64> {
        self.messages.iter().filter(|(_, m)| m.visible_at <= now).map(|(k, _)| *k).collect()
    }

    /// FIFO queue: the messages of every group that has nothing in flight, group by group
    /// (oldest group first, each group in send order), so one receive serves as many
    /// consecutive messages of one group as it can before moving on.
    fn fifo_candidates(&self, now: Instant) -> Vec<u64> {
        let held: HashSet<Option<&str>> =
            self.messages.values().filter(|m| m.visible_at > now).map(|m| m.group_id.as_deref()).collect();
        let mut groups: Vec<Vec<u64>> = Vec::new();
        let mut index: HashMap<Option<&str>, usize> = HashMap::new();
        for (key, m) in &self.messages {
            let group = m.group_id.as_deref();
            if held.contains(&group) {
                continue;
            }
            let at = *index.entry(group).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[at].push(*key);
        }
        groups.into_iter().flatten().collect()
    }

    /// Marks one message received under a fresh receipt handle.
    fn deliver(&mut self, key: u64, now: Instant) -> Option<ReceivedMessage> {
        let stored = self.messages.get_mut(&key)?;
        let receipt = new_id();
        if let Some(old) = stored.receipt.replace(receipt.clone()) {
            self.receipts.remove(&old);
        }
        self.receipts.insert(receipt.clone(), key);
        stored.receive_count = stored.receive_count.saturating_add(1);
        stored.visible_at = later(now, self.visibility_timeout);
        Some(ReceivedMessage {
            message_id: stored.message_id.clone(),
            receipt_handle: receipt,
            body: stored.body.clone(),
            group_id: stored.group_id.clone(),
            dedup_id: stored.dedup_id.clone(),
            receive_count: stored.receive_count,
            sent_at_millis: stored.sent_at_millis,
        })
    }
}

#[async_trait]
impl QueueSender for MemoryQueue {
    /// Accepts every message or none: all are checked before any is enqueued, so batches larger
    /// than [`MAX_BATCH`](crate::ports::queue::MAX_BATCH) need no splitting in process. FIFO
    /// messages whose deduplication id was accepted within [`DEDUP_WINDOW`] are accepted and
    /// dropped.
    async fn send_batch(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        {
            let mut state = self.state();
            let state = &mut *state;
            let q = state.queues.get_mut(queue).ok_or_else(|| unknown(queue))?;
            for m in &messages {
                check_message(q.fifo, m)?;
            }
            if messages.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            let sent_at_millis = wall_clock_millis();
            for m in messages {
                let (group_id, dedup_id, delay) = if q.fifo {
                    match m.dedup_id.as_deref() {
                        Some(id) if q.first_sighting(id, now) => {}
                        _ => continue,
                    }
                    (m.group_id, m.dedup_id, Duration::ZERO)
                } else {
                    // Standard queues have neither groups nor deduplication.
                    (None, None, m.delay)
                };
                let seq = state.next_seq;
                state.next_seq += 1;
                q.messages.insert(
                    seq,
                    Stored {
                        message_id: new_id(),
                        body: m.body,
                        group_id,
                        dedup_id,
                        sent_at_millis,
                        receive_count: 0,
                        visible_at: later(now, delay),
                        receipt: None,
                    },
                );
            }
        }
        self.wake(queue);
        Ok(())
    }
}

#[async_trait]
impl VisibilityControl for MemoryQueue {
    /// Makes the message visible `timeout` from now (zero: at once). Only the receipt handle of
    /// the message's latest receive works; it keeps working after the timeout expired, until the
    /// message is received again or deleted.
    async fn change_visibility(&self, queue: &str, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        {
            let mut state = self.state();
            let q = state.queues.get_mut(queue).ok_or_else(|| unknown(queue))?;
            if timeout > MAX_VISIBILITY {
                return Err(invalid(format!("visibility timeout {timeout:?} is longer than {MAX_VISIBILITY:?}")));
            }
            let key = *q.receipts.get(receipt_handle).ok_or(QueueError::StaleReceipt)?;
            let stored = q.messages.get_mut(&key).ok_or(QueueError::StaleReceipt)?;
            stored.visible_at = later(Instant::now(), timeout);
        }
        // A long poll may be sleeping until a later instant than this one.
        self.wake(queue);
        Ok(())
    }
}

#[async_trait]
impl QueueReceiver for MemoryQueue {
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = max.clamp(1, MAX_RECEIVE);
        let waker = Arc::clone(self.waker(queue)?);
        let deadline = later(Instant::now(), wait);
        loop {
            // Registered before looking, so a send between the look and the sleep still wakes us.
            let notified = waker.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();

            let now = Instant::now();
            let (attempt, dead_letter_targets) = self.attempt(queue, max, now)?;
            for target in &dead_letter_targets {
                self.wake(target);
            }
            if !attempt.messages.is_empty() || now >= deadline {
                return Ok(attempt.messages);
            }
            let until = attempt.next_visible.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Deletes the message if `receipt_handle` is its latest receipt. A receipt handle that is
    /// no longer current is accepted and does nothing, as in SQS: the message is gone, or it was
    /// received again and belongs to the newer receipt.
    async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError> {
        let deleted = {
            let mut state = self.state();
            let q = state.queues.get_mut(queue).ok_or_else(|| unknown(queue))?;
            match q.receipts.remove(receipt_handle) {
                Some(key) => q.messages.remove(&key).is_some(),
                None => false,
            }
        };
        if deleted {
            // Deleting may release a FIFO group.
            self.wake(queue);
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<usize, QueueError> {
        let state = self.state();
        let q = state.queues.get(queue).ok_or_else(|| unknown(queue))?;
        let now = Instant::now();
        Ok(q.messages.values().filter(|m| m.visible_at <= now).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::queue::MAX_BATCH;

    const FIFO: &str = "jobs.fifo";
    const FIFO_DLQ: &str = "jobs-dlq.fifo";
    const STD: &str = "plain";

    fn queues() -> MemoryQueue {
        MemoryQueue::new(&[
            QueueSpec::fifo(FIFO_DLQ),
            QueueSpec::fifo(FIFO).visibility_timeout(Duration::from_secs(10)).dead_letter(FIFO_DLQ, 2),
            QueueSpec::standard(STD).visibility_timeout(Duration::from_secs(10)),
        ])
    }

    fn fifo(body: &str, group: &str) -> OutgoingMessage {
        OutgoingMessage::fifo(body.into(), group.into(), format!("dedup-{body}"))
    }

    fn plain(body: &str) -> OutgoingMessage {
        OutgoingMessage::delayed(body.into(), Duration::ZERO)
    }

    fn bodies(messages: &[ReceivedMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.body.as_str()).collect()
    }

    async fn one(q: &MemoryQueue, queue: &str) -> ReceivedMessage {
        let mut got = q.receive(queue, 1, Duration::ZERO).await.expect("receive");
        assert_eq!(got.len(), 1, "one message expected");
        got.remove(0)
    }

    #[tokio::test(start_paused = true)]
    async fn delete_with_a_superseded_receipt_leaves_the_message() {
        let q = queues();
        q.send_batch(STD, vec![plain("a")]).await.unwrap();
        let first = one(&q, STD).await;
        tokio::time::advance(Duration::from_secs(11)).await;
        let second = one(&q, STD).await;
        assert_ne!(first.receipt_handle, second.receipt_handle);

        q.delete(STD, &first.receipt_handle).await.expect("a superseded receipt is accepted");
        assert_eq!(
            q.change_visibility(STD, &first.receipt_handle, Duration::ZERO).await,
            Err(QueueError::StaleReceipt)
        );
        q.change_visibility(STD, &second.receipt_handle, Duration::ZERO).await.unwrap();
        let third = one(&q, STD).await;
        assert_eq!((third.message_id, third.receive_count), (first.message_id, 3));

        q.delete(STD, &third.receipt_handle).await.unwrap();
        q.delete(STD, &third.receipt_handle).await.expect("deleting twice is fine");
        q.delete(STD, "never-issued").await.expect("an unknown receipt is accepted");
        assert_eq!(q.depth(STD).await, Ok(0));
    }

    #[tokio::test(start_paused = true)]
    async fn receipt_stays_current_after_its_timeout_until_received_again() {
        let q = queues();
        q.send_batch(STD, vec![plain("a")]).await.unwrap();
        let first = one(&q, STD).await;
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(q.depth(STD).await, Ok(1));
        q.change_visibility(STD, &first.receipt_handle, Duration::from_secs(5)).await.unwrap();
        assert_eq!(q.depth(STD).await, Ok(0));
        q.delete(STD, &first.receipt_handle).await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(q.receive(STD, 10, Duration::ZERO).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dedup_outlives_deletion_and_expires_after_five_minutes() {
        let q = queues();
        q.send_batch(FIFO, vec![fifo("a", "g")]).await.unwrap();
        let got = one(&q, FIFO).await;
        q.delete(FIFO, &got.receipt_handle).await.unwrap();

        q.send_batch(FIFO, vec![fifo("a", "g")]).await.unwrap();
        assert_eq!(q.depth(FIFO).await, Ok(0), "same dedup id within the window is dropped");

        tokio::time::advance(DEDUP_WINDOW - Duration::from_secs(1)).await;
        q.send_batch(FIFO, vec![fifo("a", "g")]).await.unwrap();
        assert_eq!(q.depth(FIFO).await, Ok(0), "the window counts from the first acceptance");

        tokio::time::advance(Duration::from_secs(1)).await;
        q.send_batch(FIFO, vec![fifo("a", "g")]).await.unwrap();
        assert_eq!(q.depth(FIFO).await, Ok(1), "after five minutes the id is new again");
        // …and the new acceptance starts a new window.
        tokio::time::advance(Duration::from_secs(60)).await;
        q.send_batch(FIFO, vec![fifo("a", "g")]).await.unwrap();
        assert_eq!(q.depth(FIFO).await, Ok(1));
    }

    #[tokio::test]
    async fn remembering_keeps_only_the_newest_dedup_ids() {
        let q = queues().remembering(2);
        for (id, n) in [("a", 1), ("b", 2), ("c", 3)] {
            q.send_batch(FIFO, vec![fifo(id, "g")]).await.unwrap();
            assert_eq!(q.depth(FIFO).await, Ok(n));
        }
        q.send_batch(FIFO, vec![fifo("c", "g"), fifo("b", "g")]).await.unwrap();
        assert_eq!(q.depth(FIFO).await, Ok(3), "the newest two ids are still remembered");
        q.send_batch(FIFO, vec![fifo("a", "g")]).await.unwrap();
        assert_eq!(q.depth(FIFO).await, Ok(4), "the oldest id was forgotten");
    }

    #[tokio::test]
    async fn a_batch_with_one_bad_message_enqueues_nothing() {
        let q = queues();
        let bad = OutgoingMessage { group_id: None, ..fifo("b", "g") };
        let result = q.send_batch(FIFO, vec![fifo("a", "g"), bad]).await;
        assert!(matches!(result, Err(QueueError::Invalid(_))), "{result:?}");
        assert_eq!(q.depth(FIFO).await, Ok(0));
        // Nor was the good message's dedup id consumed.
        q.send_batch(FIFO, vec![fifo("a", "g")]).await.unwrap();
        assert_eq!(q.depth(FIFO).await, Ok(1));
    }

    #[tokio::test]
    async fn large_batches_need_no_splitting() {
        let q = queues();
        let batch: Vec<_> = (0..3 * MAX_BATCH + 1).map(|i| plain(&format!("m{i}"))).collect();
        q.send_batch(STD, batch).await.unwrap();
        assert_eq!(q.depth(STD).await, Ok(3 * MAX_BATCH + 1));
    }

    #[tokio::test]
    async fn malformed_messages_are_invalid() {
        let q = queues();
        let cases = [
            (STD, plain("")),
            (STD, plain("bell \u{7}")),
            (STD, plain("not a character \u{FFFF}")),
            (FIFO, OutgoingMessage::fifo("a".into(), "g".repeat(MAX_ID_LEN + 1), "d".into())),
            (FIFO, OutgoingMessage::fifo("a".into(), "g".into(), "with space".into())),
            (FIFO, OutgoingMessage::fifo("a".into(), String::new(), "d".into())),
        ];
        for (queue, m) in cases {
            let result = q.send_batch(queue, vec![m.clone()]).await;
            assert!(matches!(result, Err(QueueError::Invalid(_))), "{m:?} gave {result:?}");
        }
        let fine = OutgoingMessage::fifo("tab\tnew line\n é 🦀".into(), "g".repeat(MAX_ID_LEN), "a-b_c.d:e!".into());
        q.send_batch(FIFO, vec![fine]).await.unwrap();
    }

    #[tokio::test]
    async fn standard_queues_forget_group_and_dedup_ids() {
        let q = queues();
        let m = OutgoingMessage { group_id: Some("g".into()), dedup_id: Some("d".into()), ..plain("a") };
        q.send_batch(STD, vec![m.clone(), m]).await.unwrap();
        let got = q.receive(STD, 10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|m| m.group_id.is_none() && m.dedup_id.is_none()));
    }

    #[tokio::test]
    async fn fifo_receive_serves_groups_oldest_first_each_in_one_run() {
        let q = queues();
        for m in [fifo("a1", "a"), fifo("b1", "b"), fifo("a2", "a"), fifo("c1", "c"), fifo("b2", "b")] {
            q.send_batch(FIFO, vec![m]).await.unwrap();
        }
        let got = q.receive(FIFO, 4, Duration::ZERO).await.unwrap();
        assert_eq!(bodies(&got), ["a1", "a2", "b1", "b2"]);
        // Groups a and b are in flight; c flows.
        let got = q.receive(FIFO, 10, Duration::ZERO).await.unwrap();
        assert_eq!(bodies(&got), ["c1"]);
        assert_eq!(q.depth(FIFO).await, Ok(0));
    }

    #[tokio::test]
    async fn depth_counts_messages_of_a_held_group() {
        let q = queues();
        q.send_batch(FIFO, vec![fifo("a1", "a"), fifo("a2", "a")]).await.unwrap();
        let first = one(&q, FIFO).await;
        assert_eq!(first.body, "a1");
        assert!(q.receive(FIFO, 10, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(q.depth(FIFO).await, Ok(1), "a2 is visible, only its group is held");
    }

    #[tokio::test]
    async fn receive_clamps_max_to_one_through_ten() {
        let q = queues();
        let batch: Vec<_> = (0..12).map(|i| plain(&format!("m{i}"))).collect();
        q.send_batch(STD, batch).await.unwrap();
        assert_eq!(q.receive(STD, 0, Duration::ZERO).await.unwrap().len(), 1);
        assert_eq!(q.receive(STD, 100, Duration::ZERO).await.unwrap().len(), 10);
        assert_eq!(q.receive(STD, 100, Duration::ZERO).await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn redrive_keeps_body_group_dedup_and_send_time_with_a_fresh_id_and_count() {
        let q = queues();
        q.send_batch(FIFO, vec![fifo("poison", "g"), fifo("next", "g")]).await.unwrap();
        let first = one(&q, FIFO).await;
        tokio::time::advance(Duration::from_secs(11)).await;
        let second = one(&q, FIFO).await;
        assert_eq!((second.body.as_str(), second.receive_count), ("poison", 2));
        tokio::time::advance(Duration::from_secs(11)).await;

        // The poison message moves to the DLQ and its group goes on with the next message.
        let got = q.receive(FIFO, 1, Duration::ZERO).await.unwrap();
        assert_eq!(bodies(&got), ["next"]);
        let dead = one(&q, FIFO_DLQ).await;
        assert_eq!(dead.body, "poison");
        assert_eq!(dead.group_id.as_deref(), Some("g"));
        assert_eq!(dead.dedup_id.as_deref(), Some("dedup-poison"));
        assert_eq!(dead.sent_at_millis, first.sent_at_millis);
        assert_eq!(dead.receive_count, 1);
        assert_ne!(dead.message_id, first.message_id);
        // The old receipts are dead.
        assert_eq!(
            q.change_visibility(FIFO, &second.receipt_handle, Duration::ZERO).await,
            Err(QueueError::StaleReceipt)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_dead_letter_queue_messages_keep_coming_back() {
        let q = MemoryQueue::new(&[
            // The DLQ named here does not exist: no redrive.
            QueueSpec::standard("a").visibility_timeout(Duration::from_secs(1)).dead_letter("missing", 1),
            QueueSpec::standard("b").visibility_timeout(Duration::from_secs(1)),
        ]);
        for queue in ["a", "b"] {
            q.send_batch(queue, vec![plain("m")]).await.unwrap();
            for count in 1..=5 {
                let got = q.receive(queue, 1, Duration::from_secs(5)).await.unwrap();
                assert_eq!(got.len(), 1);
                assert_eq!(got[0].receive_count, count);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_when_a_delay_ends() {
        let q = queues();
        q.send_batch(STD, vec![OutgoingMessage::delayed("later".into(), Duration::from_secs(30))]).await.unwrap();
        let start = Instant::now();
        let got = q.receive(STD, 10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(bodies(&got), ["later"]);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_when_a_visibility_timeout_ends() {
        let q = queues();
        q.send_batch(STD, vec![plain("a")]).await.unwrap();
        let _ = one(&q, STD).await;
        let start = Instant::now();
        let got = q.receive(STD, 10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_when_a_fifo_group_is_released() {
        let q = queues();
        q.send_batch(FIFO, vec![fifo("a1", "a"), fifo("a2", "a")]).await.unwrap();
        let first = one(&q, FIFO).await;
        let poll = {
            let q = q.clone();
            tokio::spawn(async move { q.receive(FIFO, 10, Duration::from_secs(20)).await })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let start = Instant::now();
        q.delete(FIFO, &first.receipt_handle).await.unwrap();
        let got = poll.await.unwrap().unwrap();
        assert_eq!(bodies(&got), ["a2"]);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_when_visibility_is_shortened() {
        let q = queues();
        q.send_batch(STD, vec![plain("a")]).await.unwrap();
        let first = one(&q, STD).await;
        let poll = {
            let q = q.clone();
            tokio::spawn(async move { q.receive(STD, 10, Duration::from_secs(20)).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.change_visibility(STD, &first.receipt_handle, Duration::from_secs(2)).await.unwrap();
        let start = Instant::now();
        let got = poll.await.unwrap().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_gives_up_at_its_deadline() {
        let q = queues();
        let start = Instant::now();
        assert!(q.receive(STD, 10, Duration::from_secs(7)).await.unwrap().is_empty());
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test]
    async fn extreme_durations_do_not_panic() {
        let q = MemoryQueue::new(&[QueueSpec::standard("q").visibility_timeout(Duration::MAX)]);
        q.send_batch("q", vec![plain("a")]).await.unwrap();
        let got = q.receive("q", 10, Duration::MAX).await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(q.receive("q", 10, Duration::ZERO).await.unwrap().is_empty());
        let result = q.change_visibility("q", &got[0].receipt_handle, Duration::MAX).await;
        assert!(matches!(result, Err(QueueError::Invalid(_))), "{result:?}");
        q.change_visibility("q", &got[0].receipt_handle, MAX_VISIBILITY).await.unwrap();
        let result = q.send_batch("q", vec![OutgoingMessage::delayed("b".into(), Duration::MAX)]).await;
        assert!(matches!(result, Err(QueueError::Invalid(_))));
    }

    #[tokio::test]
    async fn clones_share_queues() {
        let q = queues();
        let other = q.clone();
        q.send_batch(STD, vec![plain("a")]).await.unwrap();
        assert_eq!(other.depth(STD).await, Ok(1));
        assert_eq!(q.queue_names(), [FIFO_DLQ, FIFO, STD]);
    }
}
