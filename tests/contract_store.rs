//! The store contract suite against the in-process adapter, one test per check.

use shared::adapters::memory::store::MemoryStore;
use shared::contract::store::{self, StoreFixture, StoreHandles, async_trait};
use std::sync::Arc;

struct Memory;

#[async_trait]
impl StoreFixture for Memory {
    async fn store(&self) -> StoreHandles {
        StoreHandles::all_from(Arc::new(MemoryStore::new()))
    }
}

macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        $(
            // Several workers, so the concurrency checks race for real.
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                store::$check(&Memory).await;
            }
        )*
    };
}

checks!(
    idempotency_first_claim_acquires_second_sees_it_in_progress,
    idempotency_claim_after_in_progress_lapsed_acquires,
    idempotency_completed_response_is_replayed,
    idempotency_expired_record_can_be_claimed_again,
    idempotency_release_lets_a_new_claim_in,
    idempotency_complete_without_a_record_still_stores,
    idempotency_concurrent_claims_acquire_once,
    events_put_once_and_read_back,
    notifications_create_once_without_overwrite,
    notifications_claim_applies_the_change,
    notifications_live_lease_rejects_a_second_claim,
    notifications_claim_after_lease_expiry_applies,
    notifications_concurrent_claims_apply_once,
    notifications_status_in_guard,
    notifications_transition_can_clear_fields,
    notifications_transition_of_unknown_is_not_found,
    notifications_list_for_event_in_channel_order,
    notifications_list_for_user_newest_first,
    notifications_list_for_user_pages_return_each_once,
    notifications_list_for_user_paging_survives_new_arrivals,
    notifications_list_for_user_clamps_limit,
    notifications_list_for_user_malformed_cursor_is_an_empty_last_page,
    profiles_missing_is_none,
    profiles_round_trip,
    profiles_put_overwrites,
    connections_of_filters_by_user_and_expiry,
    connections_put_overwrites,
    connections_delete_is_idempotent,
    run_all,
);
