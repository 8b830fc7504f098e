//! The queue port's contract: what every adapter of [`QueueSender`], [`VisibilityControl`] and
//! [`QueueReceiver`] must do, checked against real behaviour.
//!
//! The checks are written for the coarsest adapter: SQS (and its emulator moto) counts delays and
//! visibility timeouts in whole seconds, so timings here are whole seconds with margins, and a
//! check never assumes anything SQS does not promise (that a short poll sees every message, that
//! a dead-lettered message keeps or changes its id, how superseded receipts behave on delete).
//! Each check asks the fixture for fresh queues, so checks may run concurrently.
//!
//! A check fails by panicking with a message that says what the adapter got wrong.

/// Re-exported so fixtures can implement [`QueueFixture`] without depending on `async-trait`.
pub use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ports::queue::{
    MAX_DELAY, MAX_MESSAGE_BYTES, MAX_VISIBILITY, OutgoingMessage, QueueError, QueueReceiver, QueueSender,
    ReceivedMessage, VisibilityControl,
};
use crate::topology::QueueSpec;

/// Builds the adapter under test.
#[async_trait]
pub trait QueueFixture: Send + Sync {
    /// Fresh queues for one check, created from these specs (names are logical; an AWS fixture
    /// may add a unique prefix internally).
    async fn queues(&self, specs: &[QueueSpec]) -> QueueHandles;
}

/// The three faces of one adapter, all addressing the same queues by their logical names.
#[derive(Clone)]
pub struct QueueHandles {
    pub sender: Arc<dyn QueueSender>,
    pub visibility: Arc<dyn VisibilityControl>,
    pub receiver: Arc<dyn QueueReceiver>,
}

impl QueueHandles {
    /// Handles for an adapter that implements all three traits.
    pub fn of<A>(adapter: Arc<A>) -> Self
    where
        A: QueueSender + VisibilityControl + QueueReceiver + 'static,
    {
        Self { sender: adapter.clone(), visibility: adapter.clone(), receiver: adapter }
    }
}

/// Every check, in order. Takes about 15 s, mostly waiting for timeouts.
pub async fn run_all(fixture: &dyn QueueFixture) {
    fifo_keeps_order_within_a_group(fixture).await;
    fifo_holds_a_group_while_one_of_its_messages_is_in_flight(fixture).await;
    fifo_retried_messages_come_back_in_order(fixture).await;
    fifo_drops_a_repeated_dedup_id(fixture).await;
    fifo_rejects_missing_group_or_dedup_id(fixture).await;
    fifo_rejects_per_message_delay(fixture).await;
    standard_queue_delays_a_message(fixture).await;
    standard_queue_rejects_delay_over_maximum(fixture).await;
    standard_queue_ignores_group_and_dedup_ids(fixture).await;
    received_message_carries_its_fields(fixture).await;
    visibility_timeout_expiry_redelivers(fixture).await;
    change_visibility_releases_or_postpones(fixture).await;
    delete_removes_the_message(fixture).await;
    redrive_moves_to_the_dead_letter_queue(fixture).await;
    receive_waits_for_a_message(fixture).await;
    receive_returns_at_most_ten(fixture).await;
    depth_counts_visible_messages(fixture).await;
    unknown_queue_is_an_error(fixture).await;
    oversized_body_is_rejected(fixture).await;
    send_batch_of_25_arrives_in_order(fixture).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const SECOND: Duration = Duration::from_secs(1);
/// Long enough that nothing expires during a check.
const LONG_VISIBILITY: Duration = Duration::from_secs(60);

fn fifo(body: &str, group: &str, dedup: &str) -> OutgoingMessage {
    OutgoingMessage::fifo(body.to_owned(), group.to_owned(), dedup.to_owned())
}

fn plain(body: &str) -> OutgoingMessage {
    OutgoingMessage::delayed(body.to_owned(), Duration::ZERO)
}

fn bodies(messages: &[ReceivedMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

async fn send(h: &QueueHandles, queue: &str, messages: Vec<OutgoingMessage>) {
    let what = bodies_of(&messages);
    if let Err(e) = h.sender.send_batch(queue, messages).await {
        panic!("sending {what:?} to {queue} failed: {e}");
    }
}

fn bodies_of(messages: &[OutgoingMessage]) -> Vec<String> {
    messages.iter().map(|m| m.body.chars().take(40).collect()).collect()
}

async fn receive(h: &QueueHandles, queue: &str, max: usize, wait: Duration) -> Vec<ReceivedMessage> {
    match h.receiver.receive(queue, max, wait).await {
        Ok(messages) => messages,
        Err(e) => panic!("receive from {queue} failed: {e}"),
    }
}

async fn delete(h: &QueueHandles, queue: &str, message: &ReceivedMessage) {
    if let Err(e) = h.receiver.delete(queue, &message.receipt_handle).await {
        panic!("deleting {:?} from {queue} failed: {e}", message.body);
    }
}

async fn depth(h: &QueueHandles, queue: &str) -> usize {
    match h.receiver.depth(queue).await {
        Ok(n) => n,
        Err(e) => panic!("depth of {queue} failed: {e}"),
    }
}

/// Receives (and deletes, when `delete_each`) until `count` messages came or `within` passed.
async fn collect(
    h: &QueueHandles,
    queue: &str,
    count: usize,
    within: Duration,
    delete_each: bool,
) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        for m in receive(h, queue, 10, SECOND).await {
            if delete_each {
                delete(h, queue, &m).await;
            }
            got.push(m);
        }
    }
    got
}

/// Receives and deletes until `count` messages came or `within` passed.
async fn drain(h: &QueueHandles, queue: &str, count: usize, within: Duration) -> Vec<ReceivedMessage> {
    collect(h, queue, count, within, true).await
}

async fn expect_nothing(h: &QueueHandles, queue: &str, wait: Duration, why: &str) {
    let got = receive(h, queue, 10, wait).await;
    assert!(got.is_empty(), "{why}: {queue} returned {:?}", bodies(&got));
}

fn assert_invalid(result: Result<(), QueueError>, what: &str) {
    assert!(matches!(result, Err(QueueError::Invalid(_))), "{what}: expected QueueError::Invalid, got {result:?}");
}

fn unknown<T>(result: &Result<T, QueueError>) -> bool {
    matches!(result, Err(QueueError::UnknownQueue(_)))
}

fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

// ---------------------------------------------------------------------------------------------
// FIFO queues

/// Messages of one group come out in the order they were sent, across separate sends, with
/// other groups interleaved.
pub async fn fifo_keeps_order_within_a_group(fixture: &dyn QueueFixture) {
    const Q: &str = "order.fifo";
    let h = fixture.queues(&[QueueSpec::fifo(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    let sent = [("a1", "a"), ("b1", "b"), ("a2", "a"), ("a3", "a"), ("b2", "b"), ("a4", "a"), ("b3", "b")];
    for (body, group) in sent {
        send(&h, Q, vec![fifo(body, group, body)]).await;
    }
    let got = drain(&h, Q, sent.len(), 10 * SECOND).await;
    let got = bodies(&got);
    for group in ["a", "b"] {
        let in_group: Vec<&str> = got.iter().copied().filter(|b| b.starts_with(group)).collect();
        let expected: Vec<&str> = sent.iter().filter(|(_, g)| *g == group).map(|(b, _)| *b).collect();
        assert_eq!(in_group, expected, "group {group} out of order or incomplete (all received: {got:?})");
    }
    assert_eq!(got.len(), sent.len(), "received {got:?}");
}

/// While a message of a group is in flight no other message of that group is delivered; other
/// groups keep flowing; deleting the in-flight message releases the group.
pub async fn fifo_holds_a_group_while_one_of_its_messages_is_in_flight(fixture: &dyn QueueFixture) {
    const Q: &str = "held.fifo";
    let h = fixture.queues(&[QueueSpec::fifo(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    send(&h, Q, vec![fifo("a1", "a", "a1"), fifo("a2", "a", "a2")]).await;
    let first = receive(&h, Q, 1, 2 * SECOND).await;
    assert_eq!(bodies(&first), ["a1"], "the head of group a comes first, alone when max is 1");

    send(&h, Q, vec![fifo("b1", "b", "b1"), fifo("b2", "b", "b2")]).await;
    let others = drain(&h, Q, 2, 4 * SECOND).await;
    assert_eq!(bodies(&others), ["b1", "b2"], "group b flows while a1 is in flight (a2 must not come)");
    expect_nothing(&h, Q, SECOND, "a2 was delivered while a1 was in flight").await;

    delete(&h, Q, &first[0]).await;
    let next = receive(&h, Q, 10, 2 * SECOND).await;
    assert_eq!(bodies(&next), ["a2"], "deleting a1 releases group a");
    assert_eq!(next[0].receive_count, 1);
}

/// Messages of a group put back for a retry (a failed record and the ones held behind it) come
/// back in their order, even when the earlier one becomes visible first and alone.
pub async fn fifo_retried_messages_come_back_in_order(fixture: &dyn QueueFixture) {
    const Q: &str = "retried.fifo";
    let h = fixture.queues(&[QueueSpec::fifo(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    send(&h, Q, vec![fifo("a1", "a", "a1"), fifo("a2", "a", "a2")]).await;
    let first = receive(&h, Q, 10, 2 * SECOND).await;
    assert_eq!(bodies(&first), ["a1", "a2"]);
    h.visibility.change_visibility(Q, &first[0].receipt_handle, SECOND).await.expect("a1 back in 1 s");
    h.visibility.change_visibility(Q, &first[1].receipt_handle, 2 * SECOND).await.expect("a2 back in 2 s");
    let again = drain(&h, Q, 2, 10 * SECOND).await;
    assert_eq!(bodies(&again), ["a1", "a2"], "the group comes back in order");
}

/// A second message with a deduplication id accepted in the last five minutes is accepted and
/// dropped, also inside one batch; other ids are unaffected.
pub async fn fifo_drops_a_repeated_dedup_id(fixture: &dyn QueueFixture) {
    const Q: &str = "dedup.fifo";
    let h = fixture.queues(&[QueueSpec::fifo(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    send(&h, Q, vec![fifo("first", "g", "d1")]).await;
    send(&h, Q, vec![fifo("repeat", "g", "d1")]).await;
    send(&h, Q, vec![fifo("other", "h", "d2")]).await;
    send(&h, Q, vec![fifo("batched", "g", "d3"), fifo("batched repeat", "g", "d3")]).await;
    let got = drain(&h, Q, 3, 6 * SECOND).await;
    let mut got = bodies(&got);
    got.sort_unstable();
    assert_eq!(got, ["batched", "first", "other"], "exactly one message per dedup id");
    expect_nothing(&h, Q, SECOND, "a repeated dedup id was delivered").await;
}

/// A FIFO queue needs a group id and a deduplication id on every message.
pub async fn fifo_rejects_missing_group_or_dedup_id(fixture: &dyn QueueFixture) {
    const Q: &str = "ids.fifo";
    let h = fixture.queues(&[QueueSpec::fifo(Q)]).await;
    let no_group = OutgoingMessage { group_id: None, ..fifo("x", "g", "d1") };
    assert_invalid(h.sender.send_batch(Q, vec![no_group]).await, "FIFO message without a group id");
    let no_dedup = OutgoingMessage { dedup_id: None, ..fifo("x", "g", "d2") };
    assert_invalid(h.sender.send_batch(Q, vec![no_dedup]).await, "FIFO message without a dedup id");
    assert_eq!(depth(&h, Q).await, 0, "a rejected message was enqueued");
    expect_nothing(&h, Q, Duration::ZERO, "a rejected message was enqueued").await;
}

/// SQS rejects per-message delay on FIFO queues.
pub async fn fifo_rejects_per_message_delay(fixture: &dyn QueueFixture) {
    const Q: &str = "delay.fifo";
    let h = fixture.queues(&[QueueSpec::fifo(Q)]).await;
    let delayed = OutgoingMessage { delay: SECOND, ..fifo("x", "g", "d1") };
    assert_invalid(h.sender.send_batch(Q, vec![delayed]).await, "FIFO message with a delay");
    assert_eq!(depth(&h, Q).await, 0, "a rejected message was enqueued");
    // The rejection did not consume the dedup id.
    send(&h, Q, vec![fifo("x", "g", "d1")]).await;
    let got = receive(&h, Q, 10, 2 * SECOND).await;
    assert_eq!(bodies(&got), ["x"]);
}

// ---------------------------------------------------------------------------------------------
// Standard queues

/// A delayed message is invisible until its delay ends, then delivered.
pub async fn standard_queue_delays_a_message(fixture: &dyn QueueFixture) {
    const Q: &str = "delayed";
    let h = fixture.queues(&[QueueSpec::standard(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    let start = Instant::now();
    send(&h, Q, vec![OutgoingMessage::delayed("later".into(), 2 * SECOND)]).await;
    expect_nothing(&h, Q, Duration::ZERO, "a delayed message was delivered at once").await;
    assert_eq!(depth(&h, Q).await, 0, "a delayed message counts as visible");

    let got = receive(&h, Q, 10, 5 * SECOND).await;
    let elapsed = start.elapsed();
    assert_eq!(bodies(&got), ["later"], "the delayed message arrives once its delay ends");
    assert!(elapsed >= SECOND, "a 2 s delay ended after {elapsed:?}");
    assert!(elapsed < 5 * SECOND, "a 2 s delay took {elapsed:?}");
}

/// Delays up to `MAX_DELAY` are accepted, longer ones rejected.
pub async fn standard_queue_rejects_delay_over_maximum(fixture: &dyn QueueFixture) {
    const Q: &str = "long-delay";
    let h = fixture.queues(&[QueueSpec::standard(Q)]).await;
    let too_long = OutgoingMessage::delayed("x".into(), MAX_DELAY + SECOND);
    assert_invalid(h.sender.send_batch(Q, vec![too_long]).await, "delay over MAX_DELAY");
    send(&h, Q, vec![OutgoingMessage::delayed("y".into(), MAX_DELAY)]).await;
    assert_eq!(depth(&h, Q).await, 0, "a message delayed by MAX_DELAY is not visible yet");
    expect_nothing(&h, Q, Duration::ZERO, "a message delayed by MAX_DELAY was delivered").await;
}

/// Group and deduplication ids mean nothing on a standard queue: equal ids neither hold nor drop.
pub async fn standard_queue_ignores_group_and_dedup_ids(fixture: &dyn QueueFixture) {
    const Q: &str = "plain";
    let h = fixture.queues(&[QueueSpec::standard(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    let tagged = |body: &str| OutgoingMessage { group_id: Some("g".into()), dedup_id: Some("d".into()), ..plain(body) };
    send(&h, Q, vec![tagged("one")]).await;
    send(&h, Q, vec![tagged("two")]).await;
    // Not deleting: the first stays in flight while the second must still come.
    let got = collect(&h, Q, 2, 5 * SECOND, false).await;
    let mut got = bodies(&got);
    got.sort_unstable();
    assert_eq!(got, ["one", "two"], "both messages arrive");
}

/// A received message carries its body, ids, a first receive count and its send time.
pub async fn received_message_carries_its_fields(fixture: &dyn QueueFixture) {
    const Q: &str = "fields.fifo";
    let h = fixture.queues(&[QueueSpec::fifo(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    let before = now_millis();
    send(&h, Q, vec![fifo("{\"hello\":\"wörld\"}", "group-1", "dedup-1")]).await;
    let after = now_millis();
    let got = receive(&h, Q, 10, 2 * SECOND).await;
    assert_eq!(got.len(), 1, "one message sent, {} received", got.len());
    let m = &got[0];
    assert_eq!(m.body, "{\"hello\":\"wörld\"}");
    assert_eq!(m.group_id.as_deref(), Some("group-1"));
    assert_eq!(m.dedup_id.as_deref(), Some("dedup-1"));
    assert_eq!(m.receive_count, 1);
    assert!(!m.message_id.is_empty() && !m.receipt_handle.is_empty(), "ids are set: {m:?}");
    // A second of slack for the emulator's clock.
    assert!(
        (before - 1000..=after + 1000).contains(&m.sent_at_millis),
        "sent_at_millis {} is not between {before} and {after}",
        m.sent_at_millis
    );
}

// ---------------------------------------------------------------------------------------------
// Visibility, deletion and redrive

/// A message not deleted within its visibility timeout comes back, with a new receipt and a
/// receive count of 2; a FIFO group is released by the expiry as well.
pub async fn visibility_timeout_expiry_redelivers(fixture: &dyn QueueFixture) {
    async fn check(fixture: &dyn QueueFixture, spec: QueueSpec, message: OutgoingMessage) {
        let q = spec.name.clone();
        let h = fixture.queues(&[spec.visibility_timeout(SECOND)]).await;
        send(&h, &q, vec![message]).await;
        let first = receive(&h, &q, 10, 2 * SECOND).await;
        assert_eq!(first.len(), 1, "{q}: the message arrives");
        let received_at = Instant::now();
        expect_nothing(&h, &q, Duration::ZERO, "the message was delivered again while in flight").await;

        let again = receive(&h, &q, 10, 5 * SECOND).await;
        let elapsed = received_at.elapsed();
        assert_eq!(again.len(), 1, "{q}: the message comes back after its visibility timeout");
        assert_eq!(again[0].message_id, first[0].message_id, "{q}: the same message comes back");
        assert_eq!(again[0].body, first[0].body);
        assert_eq!(again[0].receive_count, 2, "{q}: second receive");
        assert_ne!(again[0].receipt_handle, first[0].receipt_handle, "{q}: every receive has its own receipt handle");
        assert!(elapsed >= SECOND / 2, "{q}: a 1 s visibility timeout ended after {elapsed:?}");
    }
    tokio::join!(
        check(fixture, QueueSpec::standard("expiry"), plain("standard")),
        check(fixture, QueueSpec::fifo("expiry.fifo"), fifo("fifo", "g", "d")),
    );
}

/// `change_visibility` to zero makes the message receivable at once; to N seconds hides it for
/// N seconds; beyond `MAX_VISIBILITY` it is invalid.
pub async fn change_visibility_releases_or_postpones(fixture: &dyn QueueFixture) {
    const Q: &str = "visibility";
    let h = fixture.queues(&[QueueSpec::standard(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    send(&h, Q, vec![plain("m")]).await;
    let first = receive(&h, Q, 10, 2 * SECOND).await;
    assert_eq!(first.len(), 1, "the message arrives");

    h.visibility.change_visibility(Q, &first[0].receipt_handle, Duration::ZERO).await.expect("change to 0");
    let released = receive(&h, Q, 10, 2 * SECOND).await;
    assert_eq!(released.len(), 1, "visibility 0 makes the message receivable at once (queue timeout is 60 s)");
    assert_eq!(released[0].receive_count, 2);

    let receipt = released[0].receipt_handle.clone();
    assert_invalid(
        h.visibility.change_visibility(Q, &receipt, MAX_VISIBILITY + SECOND).await,
        "visibility over MAX_VISIBILITY",
    );
    // 6 s: long enough that a busy machine (or emulator) cannot make the first look come late.
    h.visibility.change_visibility(Q, &receipt, 6 * SECOND).await.expect("change to 6 s");
    let changed_at = Instant::now();
    expect_nothing(&h, Q, Duration::ZERO, "visibility 6 s: delivered at once").await;
    let later = collect(&h, Q, 1, 20 * SECOND, false).await;
    let elapsed = changed_at.elapsed();
    assert_eq!(later.len(), 1, "visibility 6 s: the message comes back (queue timeout is 60 s)");
    assert_eq!(later[0].receive_count, 3);
    assert!(elapsed >= 3 * SECOND, "visibility 6 s ended after {elapsed:?}");
}

/// A deleted message never comes back; deleting it twice is fine; its receipt can no longer
/// change visibility. Undeleted messages do come back.
pub async fn delete_removes_the_message(fixture: &dyn QueueFixture) {
    const Q: &str = "deletion";
    let h = fixture.queues(&[QueueSpec::standard(Q).visibility_timeout(SECOND)]).await;
    send(&h, Q, vec![plain("keep"), plain("drop")]).await;
    let got = collect(&h, Q, 2, 3 * SECOND, false).await;
    let Some(dropped) = got.iter().find(|m| m.body == "drop") else {
        panic!("both messages arrive, got {:?}", bodies(&got));
    };
    delete(&h, Q, dropped).await;
    delete(&h, Q, dropped).await;
    let stale = h.visibility.change_visibility(Q, &dropped.receipt_handle, Duration::ZERO).await;
    assert_eq!(stale, Err(QueueError::StaleReceipt), "change_visibility on a deleted message");

    // After the 1 s timeout only the undeleted message comes back.
    let back = drain(&h, Q, 1, 4 * SECOND).await;
    assert_eq!(bodies(&back), ["keep"], "only the undeleted message comes back");
    expect_nothing(&h, Q, 2 * SECOND, "a deleted message came back").await;
    assert_eq!(depth(&h, Q).await, 0);
}

/// After `max_receive_count` receives the next receive moves the message to the dead-letter
/// queue, where it can be received with its body (and group, on FIFO queues).
pub async fn redrive_moves_to_the_dead_letter_queue(fixture: &dyn QueueFixture) {
    async fn check(fixture: &dyn QueueFixture, fifo_queue: bool, max_receive_count: u32) {
        let (q, dlq) = if fifo_queue { ("work.fifo", "work-dlq.fifo") } else { ("work", "work-dlq") };
        let kind = |name: &str| if fifo_queue { QueueSpec::fifo(name) } else { QueueSpec::standard(name) };
        let h = fixture
            .queues(&[
                kind(dlq).visibility_timeout(LONG_VISIBILITY),
                kind(q).visibility_timeout(SECOND).dead_letter(dlq, max_receive_count),
            ])
            .await;
        let message = if fifo_queue { fifo("poison", "g", "d") } else { plain("poison") };
        send(&h, q, vec![message]).await;
        for count in 1..=max_receive_count {
            let got = receive(&h, q, 10, 3 * SECOND).await;
            assert_eq!(bodies(&got), ["poison"], "{q}: receive {count} of {max_receive_count} delivers");
            assert_eq!(got[0].receive_count, count);
        }
        // It becomes visible again within this wait, and is moved instead of delivered.
        expect_nothing(&h, q, 2 * SECOND, "a message past max_receive_count was delivered").await;

        let dead = receive(&h, dlq, 10, 3 * SECOND).await;
        assert_eq!(bodies(&dead), ["poison"], "{dlq}: the message is in the dead-letter queue");
        if fifo_queue {
            assert_eq!(dead[0].group_id.as_deref(), Some("g"), "{dlq}: the group id is kept");
        }
        expect_nothing(&h, q, Duration::ZERO, "the dead-lettered message is still in the source queue").await;
        assert_eq!(depth(&h, q).await, 0, "{q}: nothing left");
    }
    tokio::join!(check(fixture, true, 2), check(fixture, false, 1));
}

// ---------------------------------------------------------------------------------------------
// Receiving

/// A receive on an empty queue waits up to its wait time and returns a message sent meanwhile
/// as soon as it arrives; with nothing sent it returns empty at the deadline; wait zero returns
/// at once.
pub async fn receive_waits_for_a_message(fixture: &dyn QueueFixture) {
    const Q: &str = "long-poll";
    let h = fixture.queues(&[QueueSpec::standard(Q).visibility_timeout(LONG_VISIBILITY)]).await;

    let start = Instant::now();
    let got = receive(&h, Q, 10, Duration::ZERO).await;
    assert!(got.is_empty() && start.elapsed() < SECOND, "a short poll of an empty queue returns at once");

    let start = Instant::now();
    let got = receive(&h, Q, 10, SECOND).await;
    let elapsed = start.elapsed();
    assert!(got.is_empty(), "an empty queue returned {:?}", bodies(&got));
    assert!(elapsed >= SECOND * 9 / 10, "a 1 s long poll returned after {elapsed:?}");

    let start = Instant::now();
    let (got, ()) = tokio::join!(receive(&h, Q, 10, 6 * SECOND), async {
        tokio::time::sleep(SECOND).await;
        send(&h, Q, vec![plain("meanwhile")]).await;
    });
    let elapsed = start.elapsed();
    assert_eq!(bodies(&got), ["meanwhile"], "the long poll returns the message sent during the wait");
    assert!(elapsed >= SECOND * 9 / 10, "returned after {elapsed:?}, before the message was sent");
    assert!(elapsed < 4 * SECOND, "returned after {elapsed:?}: the long poll did not wake on the send");
}

/// One receive returns at most ten messages, at most `max`, and at least one (max 0 counts as 1).
pub async fn receive_returns_at_most_ten(fixture: &dyn QueueFixture) {
    const Q: &str = "many";
    let h = fixture.queues(&[QueueSpec::standard(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    send(&h, Q, (0..14).map(|i| plain(&format!("m{i}"))).collect()).await;
    let got = receive(&h, Q, 50, 2 * SECOND).await;
    assert!((1..=10).contains(&got.len()), "max 50 returned {} messages", got.len());
    let got = receive(&h, Q, 3, 2 * SECOND).await;
    assert!((1..=3).contains(&got.len()), "max 3 returned {} messages", got.len());
    let got = receive(&h, Q, 0, 2 * SECOND).await;
    assert_eq!(got.len(), 1, "max 0 is treated as 1");
}

/// Depth counts visible messages: not the delayed, not the in-flight.
pub async fn depth_counts_visible_messages(fixture: &dyn QueueFixture) {
    const Q: &str = "depth";
    let h = fixture.queues(&[QueueSpec::standard(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    assert_eq!(depth(&h, Q).await, 0, "a new queue is empty");
    send(&h, Q, vec![plain("a"), plain("b"), plain("c")]).await;
    send(&h, Q, vec![OutgoingMessage::delayed("later".into(), 60 * SECOND)]).await;
    assert_eq!(depth(&h, Q).await, 3, "three visible, one delayed");
    let got = receive(&h, Q, 1, 2 * SECOND).await;
    assert_eq!(got.len(), 1);
    assert_eq!(depth(&h, Q).await, 2, "an in-flight message is not visible");
    delete(&h, Q, &got[0]).await;
    assert_eq!(depth(&h, Q).await, 2);
}

/// Every operation on a queue that does not exist fails with `UnknownQueue`.
pub async fn unknown_queue_is_an_error(fixture: &dyn QueueFixture) {
    const MISSING: &str = "missing";
    let h = fixture.queues(&[QueueSpec::standard("present")]).await;
    let r = h.sender.send_batch(MISSING, vec![plain("x")]).await;
    assert!(unknown(&r), "send_batch: {r:?}");
    let r = h.receiver.receive(MISSING, 10, Duration::ZERO).await;
    assert!(unknown(&r), "receive: {r:?}");
    let r = h.receiver.delete(MISSING, "receipt").await;
    assert!(unknown(&r), "delete: {r:?}");
    let r = h.visibility.change_visibility(MISSING, "receipt", Duration::ZERO).await;
    assert!(unknown(&r), "change_visibility: {r:?}");
    let r = h.receiver.depth(MISSING).await;
    assert!(unknown(&r), "depth: {r:?}");
}

/// A body of `MAX_MESSAGE_BYTES` bytes goes through whole; one byte more (counted in UTF-8
/// bytes, not characters) is invalid, alone or in a batch.
pub async fn oversized_body_is_rejected(fixture: &dyn QueueFixture) {
    const Q: &str = "sizes";
    let h = fixture.queues(&[QueueSpec::standard(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    let too_big = "x".repeat(MAX_MESSAGE_BYTES + 1);
    assert_invalid(h.sender.send_batch(Q, vec![plain(&too_big)]).await, "body of MAX_MESSAGE_BYTES + 1");
    let wide = format!("{}x", "é".repeat(MAX_MESSAGE_BYTES / 2));
    assert!(wide.chars().count() <= MAX_MESSAGE_BYTES && wide.len() > MAX_MESSAGE_BYTES);
    assert_invalid(h.sender.send_batch(Q, vec![plain(&wide)]).await, "body over MAX_MESSAGE_BYTES in UTF-8 bytes");
    assert_invalid(
        h.sender.send_batch(Q, vec![plain("small"), plain(&too_big)]).await,
        "batch with one oversized body",
    );

    let just_fits = format!("{}{}", "é".repeat(MAX_MESSAGE_BYTES / 2 - 1), "xy");
    assert_eq!(just_fits.len(), MAX_MESSAGE_BYTES);
    // The batch above may have been partly accepted (SQS batches are not atomic): ignore "small".
    send(&h, Q, vec![plain(&just_fits)]).await;
    let deadline = Instant::now() + 4 * SECOND;
    let mut big = Vec::new();
    while big.is_empty() && Instant::now() < deadline {
        for m in receive(&h, Q, 10, SECOND).await {
            delete(&h, Q, &m).await;
            if m.body != "small" {
                big.push(m);
            }
        }
    }
    assert_eq!(big.len(), 1, "the body of exactly MAX_MESSAGE_BYTES arrives once");
    assert!(big[0].body == just_fits, "the body of exactly MAX_MESSAGE_BYTES arrives unchanged");
}

/// One `send_batch` of 25 messages (more than one SQS batch) delivers all of them, in order on a
/// FIFO queue; an empty batch is fine.
pub async fn send_batch_of_25_arrives_in_order(fixture: &dyn QueueFixture) {
    const Q: &str = "batch.fifo";
    let h = fixture.queues(&[QueueSpec::fifo(Q).visibility_timeout(LONG_VISIBILITY)]).await;
    send(&h, Q, Vec::new()).await;
    let sent: Vec<String> = (0..25).map(|i| format!("message-{i:02}")).collect();
    send(&h, Q, sent.iter().map(|b| fifo(b, "one-group", b)).collect()).await;
    assert_eq!(depth(&h, Q).await, 25, "all 25 are visible");
    let got = drain(&h, Q, 25, 15 * SECOND).await;
    assert_eq!(bodies(&got), sent, "all 25 arrive in send order");
}
