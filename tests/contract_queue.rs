//! The queue contract (`shared::contract::queue`) against the in-process adapter, one test per
//! check so a failure names the behaviour that broke.

use shared::adapters::memory::queue::MemoryQueue;
use shared::contract::queue::{self, QueueFixture, QueueHandles, async_trait};
use shared::topology::QueueSpec;
use std::sync::Arc;

/// A fresh `MemoryQueue` per check.
struct Memory;

#[async_trait]
impl QueueFixture for Memory {
    async fn queues(&self, specs: &[QueueSpec]) -> QueueHandles {
        QueueHandles::of(Arc::new(MemoryQueue::new(specs)))
    }
}

macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                queue::$check(&Memory).await;
            }
        )*
    };
}

checks!(
    fifo_keeps_order_within_a_group,
    fifo_holds_a_group_while_one_of_its_messages_is_in_flight,
    fifo_drops_a_repeated_dedup_id,
    fifo_rejects_missing_group_or_dedup_id,
    fifo_rejects_per_message_delay,
    standard_queue_delays_a_message,
    standard_queue_rejects_delay_over_maximum,
    standard_queue_ignores_group_and_dedup_ids,
    received_message_carries_its_fields,
    visibility_timeout_expiry_redelivers,
    change_visibility_releases_or_postpones,
    delete_removes_the_message,
    redrive_moves_to_the_dead_letter_queue,
    receive_waits_for_a_message,
    receive_returns_at_most_ten,
    depth_counts_visible_messages,
    unknown_queue_is_an_error,
    oversized_body_is_rejected,
    send_batch_of_25_arrives_in_order,
);
