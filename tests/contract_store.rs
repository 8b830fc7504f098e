//! The store contract suite against every adapter, one test per check: `contract_store::<check>`
//! against the in-process `MemoryStore`, `contract_store::aws::<check>` against `DynamoStore` on
//! tables provisioned from template.yaml in the emulator that `bash tests/run.sh` starts.

use shared::adapters::memory::store::MemoryStore;
use shared::contract::store::{self, StoreFixture, StoreHandles, async_trait};
use std::sync::Arc;

struct Memory;

impl Memory {
    async fn new() -> Self {
        Memory
    }

    async fn clean_up(&self) {}
}

#[async_trait]
impl StoreFixture for Memory {
    async fn store(&self) -> StoreHandles {
        StoreHandles::all_from(Arc::new(MemoryStore::new()))
    }
}

/// One test per check: `checks!(<fixture constructor>; check, …)`.
macro_rules! checks {
    ($fixture:expr; $($(#[$attribute:meta])* $check:ident),* $(,)?) => {
        $(
            // Several workers, so the concurrency checks race for real.
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            $(#[$attribute])*
            async fn $check() {
                let fixture = $fixture.await;
                store::$check(&fixture).await;
                fixture.clean_up().await;
            }
        )*
    };
}

/// The list of checks, once for every adapter. `emulator_gap: "<why>"` marks the checks that
/// the emulator cannot pass as ignored (reported as skipped, never silently passed).
macro_rules! every_check {
    ($fixture:expr $(, emulator_gap: $gap:literal)?) => {
        checks!(
            $fixture;
            idempotency_first_claim_acquires_second_sees_it_in_progress,
            idempotency_claim_after_in_progress_lapsed_acquires,
            idempotency_completed_response_is_replayed,
            idempotency_expired_record_can_be_claimed_again,
            idempotency_release_lets_a_new_claim_in,
            idempotency_complete_without_a_record_still_stores,
            idempotency_concurrent_claims_acquire_once,
            events_put_once_and_read_back,
            events_scrub_payload_keeps_the_record,
            notifications_create_once_without_overwrite,
            notifications_claim_applies_the_change,
            notifications_live_lease_rejects_a_second_claim,
            notifications_claim_after_lease_expiry_applies,
            $(#[ignore = $gap])? notifications_concurrent_claims_apply_once,
            notifications_upsert_creates_an_absent_notification,
            notifications_upsert_applies_the_change_where_the_guard_holds,
            notifications_upsert_is_rejected_where_the_guard_fails,
            $(#[ignore = $gap])? notifications_concurrent_upserts_create_once,
            notifications_outcome_only_under_its_own_claim,
            notifications_failure_records_its_fallback_and_refunds,
            notifications_status_in_guard,
            notifications_inbox_marks_apply_for_their_owner_only,
            notifications_transition_can_clear_fields,
            notifications_transition_of_unknown_is_not_found,
            notifications_scrub_content_keeps_ids_status_and_times,
            notifications_list_for_event_in_channel_order,
            notifications_list_for_user_newest_first,
            notifications_list_for_user_pages_return_each_once,
            notifications_list_for_user_paging_survives_new_arrivals,
            notifications_list_for_user_clamps_limit,
            notifications_list_for_user_malformed_cursor_is_an_empty_last_page,
            profiles_missing_is_none,
            profiles_round_trip,
            profiles_put_overwrites,
            profiles_delete_recipient_removes_profile_and_preferences,
            connections_of_filters_by_user_and_expiry,
            connections_put_overwrites,
            connections_delete_is_idempotent,
            connections_active_count_follows_new_and_forgotten,
            connections_racing_disconnects_count_once,
            $(#[ignore = $gap])? connections_racing_connects_count_each,
            suppressions_are_found_by_channel_and_address,
            suppressions_replace_the_one_of_the_same_address,
            suppressions_remove_answers_whether_there_was_one,
            suppressions_list_newest_first_in_pages,
            suppressions_belong_to_their_tenant,
            key_directory_finds_lists_and_revokes_keys,
            key_directory_keeps_tenant_settings,
            rate_limits_go_within_the_budget_then_wait_for_the_next_second,
            rate_limits_keys_are_independent,
            rate_limits_lease_grants_up_to_the_budget_then_part_then_none,
            rate_limits_lease_keys_are_independent,
            $(#[ignore = $gap])? rate_limits_concurrent_leases_never_sum_over_the_budget,
            dead_letters_are_recorded_once_per_id_keeping_the_first_failure,
            dead_letters_list_newest_first_in_pages_of_every_queue_or_one,
            dead_letters_are_removed_only_as_they_were_read,
            notifications_failed_because_guard_and_attempt_reset,
            $(#[ignore = $gap])? run_all,
        );
    };
}

every_check!(Memory::new());

/// `DynamoStore` over the emulator's DynamoDB.
mod aws {
    use super::*;
    use local_stack::provision::{self, ProvisionOptions, Provisioned};
    use notify_tests::aws::{emulator_sdk_config, unique_prefix};
    use shared::adapters::aws::DynamoStore;
    use std::sync::Mutex;

    /// Fresh tables per `store` call, provisioned from template.yaml under a unique stack name
    /// (tables only: no queue is needed here), deleted after the check.
    struct Dynamo {
        sdk: aws_config::SdkConfig,
        provisioned: Mutex<Vec<Provisioned>>,
    }

    impl Dynamo {
        async fn new() -> Self {
            Self { sdk: emulator_sdk_config().await, provisioned: Mutex::new(Vec::new()) }
        }

        /// Best effort; a failed check leaves its tables to the emulator, which the test command
        /// stops anyway.
        async fn clean_up(&self) {
            let provisioned = std::mem::take(&mut *self.provisioned.lock().unwrap());
            for p in &provisioned {
                provision::delete(&self.sdk, p).await;
            }
        }
    }

    #[async_trait]
    impl StoreFixture for Dynamo {
        async fn store(&self) -> StoreHandles {
            let options = ProvisionOptions { stack_name: unique_prefix("c"), ..ProvisionOptions::default() };
            let provisioned = provision::provision_tables(&self.sdk, &provision::repository_template(), &options)
                .await
                .unwrap_or_else(|e| panic!("provisioning the tables of template.yaml: {e:#}"));
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.sdk), provisioned.tables.clone());
            self.provisioned.lock().unwrap().push(provisioned);
            StoreHandles::all_from(Arc::new(store))
        }
    }

    // moto 5.2.5 gap: its UpdateItem reads the item, evaluates the ConditionExpression and
    // writes, with no lock across the three (moto/dynamodb/models/__init__.py `update_item`), and
    // its server handles requests on concurrent threads. So under load two of the racing claims
    // of `notifications_concurrent_claims_apply_once` can both see `pending` and both apply,
    // where DynamoDB applies conditional writes atomically. (PutItem has the same unlocked
    // check-then-write, in a much narrower window: `idempotency_concurrent_claims_acquire_once`
    // is kept, and has passed every run so far.) The same goes for `ADD` on the connection
    // counter: moto computes `active + delta` while validating the expression and writes it
    // afterwards, so racing connects can lose an increment (`connections_racing_connects_count_each`
    // passed 15 stress runs here, by timing luck); racing disconnects are safe, since moto's
    // DeleteItem removes the item in one `dict.pop`. `run_all` repeats every check, those included;
    // each check runs on its own above. Serialising DynamoDB requests in
    // localstack/moto_server.py would close the gap and let them run here.
    every_check!(
        Dynamo::new(),
        emulator_gap: "moto: concurrent UpdateItems on one item are not atomic (see tests/contract_store.rs)"
    );
}
