//! The store ports' contract: what every adapter (in-process, DynamoDB) must do, one check per
//! behaviour. Each check asks the fixture for a fresh, empty store and uses explicit timestamps,
//! so nothing here sleeps or depends on the wall clock.

mod dead_letters;
pub use dead_letters::*;

/// Re-exported so a fixture can implement [`StoreFixture`] without depending on `async-trait`.
pub use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::profile::{PushToken, QuietHours};
use crate::domain::{
    Channel, Event, EventId, Guard, Lane, Notification, NotificationId, Preferences, Priority, Profile, Status, Transition, UserId,
};
use crate::ports::store::{
    Claim, Connection, ConnectionStore, EventRecord, EventStore, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    NotificationStore, Page, ProfileStore, StoredResponse, TransitionOutcome, UpsertOutcome, channel_rank,
};
use crate::ports::{DeadLetterStore, Pace, RateLimiter, Suppression, SuppressionReason, SuppressionStore};

/// Builds stores for the checks.
#[async_trait]
pub trait StoreFixture: Send + Sync {
    /// A fresh, empty store for one check.
    async fn store(&self) -> StoreHandles;
}

/// One store, seen through each of its ports.
#[derive(Clone)]
pub struct StoreHandles {
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub events: Arc<dyn EventStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub profiles: Arc<dyn ProfileStore>,
    pub connections: Arc<dyn ConnectionStore>,
    pub suppressions: Arc<dyn SuppressionStore>,
    pub rate_limits: Arc<dyn RateLimiter>,
    pub keys: Arc<dyn crate::ports::KeyDirectory>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
}

impl StoreHandles {
    /// Every port served by one adapter value.
    pub fn all_from<S>(store: Arc<S>) -> Self
    where
        S: IdempotencyStore + EventStore + NotificationStore + ProfileStore + ConnectionStore + SuppressionStore + RateLimiter + crate::ports::KeyDirectory + DeadLetterStore + 'static,
    {
        Self {
            idempotency: store.clone(),
            events: store.clone(),
            notifications: store.clone(),
            profiles: store.clone(),
            connections: store.clone(),
            suppressions: store.clone(),
            rate_limits: store.clone(),
            keys: store.clone(),
            dead_letters: store,
        }
    }
}

/// How many tasks race in the concurrency checks.
const RACERS: usize = 16;

/// Every check, in order.
pub async fn run_all(fixture: &dyn StoreFixture) {
    idempotency_first_claim_acquires_second_sees_it_in_progress(fixture).await;
    idempotency_claim_after_in_progress_lapsed_acquires(fixture).await;
    idempotency_completed_response_is_replayed(fixture).await;
    idempotency_expired_record_can_be_claimed_again(fixture).await;
    idempotency_release_lets_a_new_claim_in(fixture).await;
    idempotency_complete_without_a_record_still_stores(fixture).await;
    idempotency_concurrent_claims_acquire_once(fixture).await;
    events_put_once_and_read_back(fixture).await;
    events_scrub_payload_keeps_the_record(fixture).await;
    notifications_create_once_without_overwrite(fixture).await;
    notifications_claim_applies_the_change(fixture).await;
    notifications_live_lease_rejects_a_second_claim(fixture).await;
    notifications_claim_after_lease_expiry_applies(fixture).await;
    notifications_concurrent_claims_apply_once(fixture).await;
    notifications_upsert_creates_an_absent_notification(fixture).await;
    notifications_upsert_applies_the_change_where_the_guard_holds(fixture).await;
    notifications_upsert_is_rejected_where_the_guard_fails(fixture).await;
    notifications_concurrent_upserts_create_once(fixture).await;
    notifications_outcome_only_under_its_own_claim(fixture).await;
    notifications_failure_records_its_fallback_and_refunds(fixture).await;
    notifications_status_in_guard(fixture).await;
    notifications_transition_can_clear_fields(fixture).await;
    notifications_transition_of_unknown_is_not_found(fixture).await;
    notifications_scrub_content_keeps_ids_status_and_times(fixture).await;
    notifications_list_for_event_in_channel_order(fixture).await;
    notifications_list_for_user_newest_first(fixture).await;
    notifications_list_for_user_pages_return_each_once(fixture).await;
    notifications_list_for_user_paging_survives_new_arrivals(fixture).await;
    notifications_list_for_user_clamps_limit(fixture).await;
    notifications_list_for_user_malformed_cursor_is_an_empty_last_page(fixture).await;
    profiles_missing_is_none(fixture).await;
    profiles_round_trip(fixture).await;
    profiles_put_overwrites(fixture).await;
    profiles_delete_recipient_removes_profile_and_preferences(fixture).await;
    connections_of_filters_by_user_and_expiry(fixture).await;
    connections_put_overwrites(fixture).await;
    connections_delete_is_idempotent(fixture).await;
    connections_active_count_follows_new_and_forgotten(fixture).await;
    connections_racing_disconnects_count_once(fixture).await;
    connections_racing_connects_count_each(fixture).await;
    suppressions_are_found_by_channel_and_address(fixture).await;
    suppressions_replace_the_one_of_the_same_address(fixture).await;
    suppressions_remove_answers_whether_there_was_one(fixture).await;
    suppressions_list_newest_first_in_pages(fixture).await;
    suppressions_belong_to_their_tenant(fixture).await;
    key_directory_finds_lists_and_revokes_keys(fixture).await;
    key_directory_keeps_tenant_settings(fixture).await;
    rate_limits_go_within_the_budget_then_wait_for_the_next_second(fixture).await;
    rate_limits_keys_are_independent(fixture).await;
    rate_limits_lease_grants_up_to_the_budget_then_part_then_none(fixture).await;
    rate_limits_lease_keys_are_independent(fixture).await;
    rate_limits_concurrent_leases_never_sum_over_the_budget(fixture).await;
    dead_letters_are_recorded_once_per_id_keeping_the_first_failure(fixture).await;
    dead_letters_list_newest_first_in_pages_of_every_queue_or_one(fixture).await;
    dead_letters_are_removed_only_as_they_were_read(fixture).await;
    notifications_failed_because_guard_and_attempt_reset(fixture).await;
    notifications_inbox_marks_apply_for_their_owner_only(fixture).await;
}

/// Inbox marks: read implies seen, a time already set is kept, each undo clears it, and a mark
/// by anyone but the owner (or of an unknown notification) changes nothing.
pub async fn notifications_inbox_marks_apply_for_their_owner_only(fixture: &dyn StoreFixture) {
    use crate::domain::InboxMark;
    let s = fixture.store().await;
    let n = Notification { body: Some("Total 10 EUR".into()), ..notification("evt-1", Channel::Websocket, "u-1", 0) };
    assert!(create(&s, &n).await);
    let id = &n.notification_id;
    let mark = |m: InboxMark, who: &'static str, t: i64| {
        let s = s.clone();
        let id = id.clone();
        async move { s.notifications.mark(&id, &user(who), m, at(t)).await.expect("mark") }
    };
    assert_eq!(mark(InboxMark::Read, "u-2", 5).await, None, "not the owner's");
    assert_eq!(get(&s, id).await, Some(n.clone()));
    let read = mark(InboxMark::Read, "u-1", 5).await.expect("the owner's");
    assert_eq!((read.read_at, read.seen_at), (Some(at(5)), Some(at(5))));
    assert_eq!(read.body.as_deref(), Some("Total 10 EUR"));
    let again = mark(InboxMark::Seen, "u-1", 9).await.unwrap();
    assert_eq!(again.seen_at, Some(at(5)), "marking twice keeps the first time");
    let unread = mark(InboxMark::Unread, "u-1", 10).await.unwrap();
    assert_eq!((unread.read_at, unread.seen_at), (None, Some(at(5))));
    let archived = mark(InboxMark::Archived, "u-1", 11).await.unwrap();
    assert_eq!(archived.archived_at, Some(at(11)));
    let back = mark(InboxMark::Unarchived, "u-1", 12).await.unwrap();
    assert_eq!(back.archived_at, None);
    let unseen = mark(InboxMark::Unseen, "u-1", 13).await.unwrap();
    assert_eq!((unseen.seen_at, unseen.read_at), (None, None));
    assert_eq!(get(&s, id).await, Some(unseen.clone()), "what mark answers is what is stored");
    assert_eq!((unseen.status, unseen.attempts, unseen.updated_at), (n.status, n.attempts, n.updated_at), "status untouched");
    assert_eq!(s.notifications.mark(&NotificationId::from_stored("ntf_none".into()), &user("u-1"), InboxMark::Read, at(1)).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Seconds after a fixed epoch (2023-11-14T22:13:20Z), so checks read as small offsets.
fn at(offset: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + offset).expect("timestamp in range")
}

fn user(raw: &str) -> UserId {
    UserId::parse(raw).expect("valid user id")
}

fn event_id(raw: &str) -> EventId {
    EventId::parse(raw).expect("valid event id")
}

fn notification(event: &str, channel: Channel, user_id: &str, created: i64) -> Notification {
    let n = Notification::pending(&event_id(event), "order.completed", &user(user_id), channel, Priority::High, at(created));
    Notification { title: Some("Your order shipped".into()), ..n }
}

fn in_progress(key: &str, hash: &str, until: i64, expires: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.into(),
        payload_hash: hash.into(),
        state: IdempotencyState::InProgress { until: at(until) },
        expires_at: at(expires),
    }
}

fn response(status: u16, body: &str) -> StoredResponse {
    StoredResponse { status, body: body.into() }
}

async fn claim(s: &StoreHandles, key: &str, hash: &str, now: i64, until: i64, expires: i64) -> Claim {
    s.idempotency.claim(key, hash, at(now), at(until), at(expires)).await.expect("claim")
}

/// A sender's claim: `sending`, one more attempt, leased for `lease` seconds.
fn claim_for_send(now: i64, lease: i64) -> (Guard, Transition) {
    (
        Guard::Claimable { now: at(now) },
        Transition::to(Status::Sending, at(now)).count_attempt().lease_until(Some(at(now + lease))),
    )
}

async fn transition(s: &StoreHandles, id: &NotificationId, guard: &Guard, change: &Transition) -> TransitionOutcome {
    s.notifications.transition(id, guard, change).await.expect("transition")
}

async fn get(s: &StoreHandles, id: &NotificationId) -> Option<Notification> {
    s.notifications.get(id).await.expect("get notification")
}

async fn create(s: &StoreHandles, n: &Notification) -> bool {
    s.notifications.create(n).await.expect("create notification")
}

fn ids(items: &[Notification]) -> Vec<NotificationId> {
    items.iter().map(|n| n.notification_id.clone()).collect()
}

/// Newest first, ties broken by notification id, descending.
fn newest_first(mut items: Vec<Notification>) -> Vec<Notification> {
    items.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.notification_id.cmp(&a.notification_id)));
    items
}

/// Follows cursors from the first page to the last; returns every page.
async fn all_pages(s: &StoreHandles, user_id: &UserId, limit: usize) -> Vec<Page<Notification>> {
    let mut pages: Vec<Page<Notification>> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.notifications.list_for_user(user_id, limit, cursor.as_deref()).await.expect("list_for_user");
        let next = page.next.clone();
        pages.push(page);
        assert!(pages.len() <= 50, "paging does not end: cursors {:?}", pages.iter().map(|p| &p.next).collect::<Vec<_>>());
        match next {
            Some(n) => {
                assert_ne!(Some(&n), cursor.as_ref(), "the cursor must move on from page to page");
                cursor = Some(n);
            }
            None => return pages,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency.

pub async fn idempotency_first_claim_acquires_second_sees_it_in_progress(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(claim(&s, "key-1", "hash-1", 0, 30, 3600).await, Claim::Acquired, "first claim of a key");
    assert_eq!(
        claim(&s, "key-1", "hash-2", 10, 40, 3610).await,
        Claim::Existing(in_progress("key-1", "hash-1", 30, 3600)),
        "a repeat while the first is in progress sees the first's record, unchanged"
    );
    // The repeat wrote nothing: a third caller still sees the first claim.
    assert_eq!(claim(&s, "key-1", "hash-3", 20, 50, 3620).await, Claim::Existing(in_progress("key-1", "hash-1", 30, 3600)));
    assert_eq!(claim(&s, "key-2", "hash-1", 10, 40, 3610).await, Claim::Acquired, "keys are independent");
}

pub async fn idempotency_claim_after_in_progress_lapsed_acquires(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(claim(&s, "key-1", "hash-1", 0, 30, 3600).await, Claim::Acquired);
    assert_eq!(
        claim(&s, "key-1", "hash-2", 29, 59, 3629).await,
        Claim::Existing(in_progress("key-1", "hash-1", 30, 3600)),
        "one second before the claim lapses it still holds"
    );
    assert_eq!(
        claim(&s, "key-1", "hash-2", 30, 60, 3630).await,
        Claim::Acquired,
        "an in-progress claim has lapsed at its `until` (the holder died)"
    );
    assert_eq!(
        claim(&s, "key-1", "hash-3", 31, 61, 3631).await,
        Claim::Existing(in_progress("key-1", "hash-2", 60, 3630)),
        "the takeover wrote its own record"
    );
}

pub async fn idempotency_completed_response_is_replayed(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(claim(&s, "key-1", "hash-1", 0, 30, 3600).await, Claim::Acquired);
    let answer = response(202, r#"{"event_id":"evt-1","status":"accepted"}"#);
    s.idempotency.complete("key-1", "hash-1", answer.clone(), at(86_400)).await.expect("complete");
    let completed = IdempotencyRecord {
        key: "key-1".into(),
        payload_hash: "hash-1".into(),
        state: IdempotencyState::Completed { response: answer },
        expires_at: at(86_400),
    };
    assert_eq!(claim(&s, "key-1", "hash-1", 10, 40, 3610).await, Claim::Existing(completed.clone()), "a repeat gets the stored answer");
    assert_eq!(
        claim(&s, "key-1", "hash-9", 1000, 1030, 4600).await,
        Claim::Existing(completed),
        "a completed record holds past the in-progress window, until it expires, whatever the hash"
    );
}

pub async fn idempotency_expired_record_can_be_claimed_again(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(claim(&s, "key-1", "hash-1", 0, 30, 3600).await, Claim::Acquired);
    s.idempotency.complete("key-1", "hash-1", response(202, "{}"), at(3600)).await.expect("complete");
    assert!(
        matches!(claim(&s, "key-1", "hash-2", 3599, 3629, 7199).await, Claim::Existing(IdempotencyRecord { state: IdempotencyState::Completed { .. }, .. })),
        "one second before expiry the completed record holds"
    );
    assert_eq!(claim(&s, "key-1", "hash-2", 3600, 3630, 7200).await, Claim::Acquired, "a record no longer counts at its expires_at");
    assert_eq!(
        claim(&s, "key-1", "hash-3", 3601, 3631, 7201).await,
        Claim::Existing(in_progress("key-1", "hash-2", 3630, 7200)),
        "the new claim replaced the expired record"
    );

    // An in-progress record whose record expiry comes before its `until` no longer counts either.
    assert_eq!(claim(&s, "key-2", "hash-1", 0, 600, 300).await, Claim::Acquired);
    assert!(matches!(claim(&s, "key-2", "hash-2", 299, 329, 3899).await, Claim::Existing(_)));
    assert_eq!(claim(&s, "key-2", "hash-2", 300, 330, 3900).await, Claim::Acquired);
}

pub async fn idempotency_release_lets_a_new_claim_in(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(claim(&s, "key-1", "hash-1", 0, 30, 3600).await, Claim::Acquired);
    s.idempotency.release("key-1").await.expect("release");
    assert_eq!(claim(&s, "key-1", "hash-2", 1, 31, 3601).await, Claim::Acquired, "a released key is free at once");
    assert_eq!(claim(&s, "key-1", "hash-3", 2, 32, 3602).await, Claim::Existing(in_progress("key-1", "hash-2", 31, 3601)));
    s.idempotency.release("never-claimed").await.expect("releasing an unknown key is not an error");
    s.idempotency.release("key-1").await.expect("release");
    s.idempotency.release("key-1").await.expect("releasing twice is not an error");
    assert_eq!(claim(&s, "key-1", "hash-4", 3, 33, 3603).await, Claim::Acquired);
}

pub async fn idempotency_complete_without_a_record_still_stores(fixture: &dyn StoreFixture) {
    // Completing is a put, as in Powertools: a record that vanished (released, or deleted by TTL)
    // is written anyway, so the answer is replayed to repeats.
    let s = fixture.store().await;
    let answer = response(202, r#"{"status":"accepted"}"#);
    s.idempotency.complete("key-1", "hash-1", answer.clone(), at(3600)).await.expect("complete");
    match claim(&s, "key-1", "hash-1", 0, 30, 3600).await {
        Claim::Existing(record) => {
            assert_eq!(record.key, "key-1");
            assert_eq!(record.payload_hash, "hash-1", "the hash is stored, so repeats are not conflicts");
            assert_eq!(record.state, IdempotencyState::Completed { response: answer });
            assert_eq!(record.expires_at, at(3600));
        }
        other => panic!("expected the completed record, got {other:?}"),
    }
}

pub async fn idempotency_concurrent_claims_acquire_once(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = s.idempotency.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let hash = format!("hash-{i}");
            let outcome = store.claim("race", &hash, at(0), at(30), at(3600)).await.expect("claim");
            (hash, outcome)
        }));
    }
    let mut winners = Vec::new();
    let mut seen = Vec::new();
    for task in tasks {
        let (hash, outcome) = task.await.expect("claiming task");
        match outcome {
            Claim::Acquired => winners.push(hash),
            Claim::Existing(record) => seen.push(record),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of {RACERS} concurrent claims acquires: {winners:?}");
    let winner = in_progress("race", &winners[0], 30, 3600);
    for record in &seen {
        assert_eq!(record, &winner, "every loser sees the winner's record");
    }
    assert_eq!(claim(&s, "race", "late", 1, 31, 3601).await, Claim::Existing(winner), "the stored record is the winner's");
}

// ---------------------------------------------------------------------------------------------
// Events.

fn event_record(id: &str, note: &str) -> EventRecord {
    EventRecord {
        event: Event {
            event_id: event_id(id),
            event_type: "order.completed".into(),
            user_id: user("u-42"),
            payload: json!({
                "order_id": "A-17", "note": note, "total": 129.5, "items": [{"sku": "X-1", "qty": 2}],
                "gift": false, "coupon": null, "greeting": "Дякуємо! 🎉"
            }),
            priority: Some(Priority::High),
            channels: Some(vec![Channel::Email, Channel::Websocket]),
            locale: Some("uk".into()),
            send_after: Some(at(600)),
            occurred_at: Some(at(-60)),
        },
        priority: Priority::High,
        lane: Lane::Fast,
        accepted_at: at(0),
    }
}

pub async fn events_put_once_and_read_back(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let first = event_record("evt-1", "first");
    assert!(s.events.put_event(&first).await.expect("put_event"), "the first put writes");
    let again = event_record("evt-1", "second");
    assert!(!s.events.put_event(&again).await.expect("put_event"), "a second put of the same id does not");
    assert_eq!(s.events.get_event(&event_id("evt-1")).await.expect("get_event"), Some(first), "the first record, unchanged");
    assert_eq!(s.events.get_event(&event_id("evt-unknown")).await.expect("get_event"), None);

    // A minimal event (no optional fields) round-trips too.
    let mut minimal = event_record("evt-2", "");
    minimal.event.payload = json!({});
    minimal.event.priority = None;
    minimal.event.channels = None;
    minimal.event.locale = None;
    minimal.event.send_after = None;
    minimal.event.occurred_at = None;
    minimal.priority = Priority::Low;
    minimal.lane = Lane::Bulk;
    assert!(s.events.put_event(&minimal).await.expect("put_event"));
    assert_eq!(s.events.get_event(&event_id("evt-2")).await.expect("get_event"), Some(minimal));
}

pub async fn events_scrub_payload_keeps_the_record(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let record = event_record("evt-1", "private note");
    s.events.put_event(&record).await.expect("put_event");
    s.events.put_event(&event_record("evt-2", "someone else's")).await.expect("put_event");

    assert!(s.events.scrub_event_payload(&event_id("evt-1")).await.expect("scrub_event_payload"), "a payload was removed");

    let scrubbed = s.events.get_event(&event_id("evt-1")).await.expect("get_event").expect("the record stays");
    let mut expected = record.clone();
    expected.event.payload = serde_json::Value::Null;
    assert_eq!(scrubbed, expected, "only the payload goes");
    assert!(!s.events.scrub_event_payload(&event_id("evt-1")).await.expect("scrub_event_payload"), "nothing left the second time");
    assert!(!s.events.scrub_event_payload(&event_id("evt-unknown")).await.expect("scrub_event_payload"));
    assert_eq!(s.events.get_event(&event_id("evt-unknown")).await.expect("get_event"), None, "a scrub never creates an event");
    assert_eq!(s.events.get_event(&event_id("evt-2")).await.expect("get_event"), Some(event_record("evt-2", "someone else's")));
}

// ---------------------------------------------------------------------------------------------
// Notifications: writes and transitions.

pub async fn notifications_create_once_without_overwrite(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let n = notification("evt-1", Channel::Email, "u-1", 0);
    assert_eq!(get(&s, &n.notification_id).await, None);
    assert!(create(&s, &n).await, "the first create writes");
    let mut other = n.clone();
    other.status = Status::Skipped;
    other.reason = Some("opted_out".into());
    other.title = None;
    other.attempts = 7;
    assert!(!create(&s, &other).await, "a second create of the same id does not");
    assert_eq!(get(&s, &n.notification_id).await, Some(n.clone()), "and it did not overwrite the first");

    // Every optional field set round-trips.
    let mut full = notification("evt-1", Channel::Sms, "u-1", 5);
    full.fallback_for = Some(Channel::Push);
    full.deliver_after = Some(at(900));
    full.status = Status::Scheduled;
    full.priority = Priority::Critical;
    full.reason = Some("quiet_hours".into());
    full.last_error = Some("timeout".into());
    full.lease_until = Some(at(35));
    full.provider_message_id = Some("msg-1".into());
    full.attempts = 2;
    full.sent_at = Some(at(40));
    assert!(create(&s, &full).await);
    assert_eq!(get(&s, &full.notification_id).await, Some(full));
}

pub async fn notifications_claim_applies_the_change(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let n = notification("evt-1", Channel::Email, "u-1", 0);
    assert!(create(&s, &n).await);
    let (guard, change) = claim_for_send(10, 30);
    let applied = match transition(&s, &n.notification_id, &guard, &change).await {
        TransitionOutcome::Applied(applied) => applied,
        other => panic!("claiming a pending notification: {other:?}"),
    };
    assert_eq!(applied, change.apply(&n), "the store applies exactly the transition");
    assert_eq!(applied.status, Status::Sending);
    assert_eq!(applied.attempts, 1);
    assert_eq!(applied.lease_until, Some(at(40)));
    assert_eq!(applied.updated_at, at(10));
    assert_eq!(applied.created_at, at(0));
    assert_eq!(get(&s, &n.notification_id).await, Some(applied.clone()), "and stores what it returns");

    // A scheduled notification is claimable too; a final one is not, whatever the time.
    let mut scheduled = notification("evt-1", Channel::Sms, "u-1", 0);
    scheduled.status = Status::Scheduled;
    scheduled.deliver_after = Some(at(100));
    assert!(create(&s, &scheduled).await);
    let (guard, change) = claim_for_send(100, 30);
    assert_eq!(transition(&s, &scheduled.notification_id, &guard, &change).await, TransitionOutcome::Applied(change.apply(&scheduled)));

    let sent = Transition::to(Status::Sent, at(20)).lease_until(None).provider_message_id("msg-1").sent_at(at(20));
    let done = match transition(&s, &n.notification_id, &Guard::StatusIn(vec![Status::Sending]), &sent).await {
        TransitionOutcome::Applied(done) => done,
        other => panic!("finishing a send: {other:?}"),
    };
    let (guard, change) = claim_for_send(100_000, 30);
    assert_eq!(transition(&s, &n.notification_id, &guard, &change).await, TransitionOutcome::Rejected(done.clone()));
    assert_eq!(get(&s, &n.notification_id).await, Some(done));
}

/// A notification claimed at 10 with a lease until 40.
async fn claimed(s: &StoreHandles) -> Notification {
    let n = notification("evt-1", Channel::Email, "u-1", 0);
    assert!(create(s, &n).await);
    let (guard, change) = claim_for_send(10, 30);
    match transition(s, &n.notification_id, &guard, &change).await {
        TransitionOutcome::Applied(applied) => applied,
        other => panic!("claiming a pending notification: {other:?}"),
    }
}

pub async fn notifications_live_lease_rejects_a_second_claim(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let current = claimed(&s).await;
    for now in [11, 39, 40] {
        let (guard, change) = claim_for_send(now, 30);
        assert_eq!(
            transition(&s, &current.notification_id, &guard, &change).await,
            TransitionOutcome::Rejected(current.clone()),
            "a claim at +{now} while the lease (until +40) holds is rejected with the notification as it is"
        );
    }
    assert_eq!(get(&s, &current.notification_id).await, Some(current), "rejections change nothing");
}

pub async fn notifications_claim_after_lease_expiry_applies(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let current = claimed(&s).await;
    let (guard, change) = claim_for_send(41, 30);
    let taken = match transition(&s, &current.notification_id, &guard, &change).await {
        TransitionOutcome::Applied(taken) => taken,
        other => panic!("taking over a lapsed lease: {other:?}"),
    };
    assert_eq!(taken, change.apply(&current));
    assert_eq!(taken.attempts, 2);
    assert_eq!(taken.lease_until, Some(at(71)));
    assert_eq!(get(&s, &current.notification_id).await, Some(taken.clone()));

    // `sending` without a lease is claimable at once.
    let unleased = Transition::to(Status::Sending, at(50)).lease_until(None);
    let unleased = match transition(&s, &current.notification_id, &Guard::StatusIn(vec![Status::Sending]), &unleased).await {
        TransitionOutcome::Applied(n) => n,
        other => panic!("{other:?}"),
    };
    assert_eq!(unleased.lease_until, None);
    let (guard, change) = claim_for_send(51, 30);
    assert_eq!(transition(&s, &current.notification_id, &guard, &change).await, TransitionOutcome::Applied(change.apply(&unleased)));
}

/// A sender records its outcome under its own claim (`ClaimedUntil` its lease): once another
/// sender took the notification over after the lease ran out, the late outcome is rejected.
pub async fn notifications_outcome_only_under_its_own_claim(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let first = claimed(&s).await;
    let (guard, change) = claim_for_send(41, 30);
    let second = match transition(&s, &first.notification_id, &guard, &change).await {
        TransitionOutcome::Applied(n) => n,
        other => panic!("taking over a lapsed lease: {other:?}"),
    };
    let late = Transition::to(Status::Pending, at(45)).last_error("timeout").lease_until(None);
    assert_eq!(
        transition(&s, &first.notification_id, &Guard::ClaimedUntil(at(40)), &late).await,
        TransitionOutcome::Rejected(second.clone()),
        "the first sender's claim (lease until +40) no longer holds"
    );
    let sent = Transition::to(Status::Sent, at(46)).lease_until(None).provider_message_id("msg-2").sent_at(at(46));
    match transition(&s, &first.notification_id, &Guard::ClaimedUntil(at(71)), &sent).await {
        TransitionOutcome::Applied(n) => assert_eq!(n, sent.apply(&second)),
        other => panic!("the holder records its outcome: {other:?}"),
    }
}

/// A failure records the fallback it owes, the mark that it was queued, and a throttled claim's
/// attempt given back: the fields the fallback and throttling rules live on.
pub async fn notifications_failure_records_its_fallback_and_refunds(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let n = claimed(&s).await;
    let throttled = Transition::to(Status::Pending, at(12)).refund_attempt().lease_until(None);
    let pending = match transition(&s, &n.notification_id, &Guard::ClaimedUntil(at(40)), &throttled).await {
        TransitionOutcome::Applied(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(pending.attempts, 0, "the claim's attempt is given back");
    assert_eq!(get(&s, &n.notification_id).await, Some(pending.clone()));

    let (guard, claim) = claim_for_send(13, 30);
    let sending = match transition(&s, &n.notification_id, &guard, &claim).await {
        TransitionOutcome::Applied(p) => p,
        other => panic!("{other:?}"),
    };
    let owed = crate::domain::FallbackProgress { channel: Channel::Sms, queued: false };
    let failed = Transition::to(Status::Failed, at(14)).reason("provider_rejected").lease_until(None).fallback(Some(owed));
    let failed_n = match transition(&s, &n.notification_id, &Guard::ClaimedUntil(at(43)), &failed).await {
        TransitionOutcome::Applied(f) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(failed_n, failed.apply(&sending));
    assert_eq!(failed_n.owes_fallback(), Some(Channel::Sms));
    assert_eq!(get(&s, &n.notification_id).await, Some(failed_n.clone()));

    let queued = Transition::to(Status::Failed, at(15)).fallback(Some(crate::domain::FallbackProgress { queued: true, ..owed }));
    let done = match transition(&s, &n.notification_id, &Guard::StatusIn(vec![Status::Failed]), &queued).await {
        TransitionOutcome::Applied(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(done.owes_fallback(), None);
    assert_eq!(done.reason.as_deref(), Some("provider_rejected"), "marking the fallback queued keeps the reason");
    assert_eq!(get(&s, &n.notification_id).await, Some(done));
}

async fn upsert(s: &StoreHandles, record: &Notification, guard: &Guard, change: &Transition) -> UpsertOutcome {
    s.notifications.upsert(record, guard, change).await.expect("upsert")
}

/// The record a router queues without writing it, as its sender's claim creates it: a WebSocket
/// notification (title and in-app body) standing in for a failed push.
fn queued(event: &str, created: i64) -> Notification {
    let n = notification(event, Channel::Websocket, "u-1", created);
    Notification { body: Some("Your order A-17 is on its way".into()), fallback_for: Some(Channel::Push), ..n }
}

/// The sender's claim of a notification nobody wrote yet creates it, claimed: the record with
/// the claim applied, stored, indexed and counted as one attempt; a failure (the dead-letter
/// handler's) creates it failed.
pub async fn notifications_upsert_creates_an_absent_notification(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let record = queued("evt-1", 0);
    let (guard, claim) = claim_for_send(10, 30);
    let created = match upsert(&s, &record, &guard, &claim).await {
        UpsertOutcome::Created(n) => n,
        other => panic!("claiming an absent notification: {other:?}"),
    };
    assert_eq!(created, claim.apply(&record), "the record with exactly the claim applied");
    assert_eq!((created.status, created.attempts, created.lease_until), (Status::Sending, 1, Some(at(40))));
    assert_eq!((created.created_at, created.updated_at), (at(0), at(10)));
    assert_eq!(get(&s, &record.notification_id).await, Some(created.clone()), "and stores what it returns");
    assert_eq!(s.notifications.list_for_event(&record.event_id).await.expect("list_for_event"), vec![created.clone()]);
    let inbox = s.notifications.list_for_user(&record.user_id, 10, None).await.expect("list_for_user");
    assert_eq!(inbox.items, vec![created.clone()], "the user's inbox lists it");

    // Created by a claim, it is what a router create followed by the same claim makes.
    let other = fixture.store().await;
    assert!(create(&other, &record).await);
    assert_eq!(transition(&other, &record.notification_id, &guard, &claim).await, TransitionOutcome::Applied(created));

    let failed_record = queued("evt-2", 0);
    let fail = Transition::to(Status::Failed, at(20)).reason("retries_exhausted").lease_until(None).last_error("dead-lettered 4 times");
    let failed = match upsert(&s, &failed_record, &Guard::Claimable { now: at(20) }, &fail).await {
        UpsertOutcome::Created(n) => n,
        other => panic!("failing an absent notification: {other:?}"),
    };
    assert_eq!(failed, fail.apply(&failed_record));
    assert_eq!((failed.status, failed.attempts, failed.reason.as_deref()), (Status::Failed, 0, Some("retries_exhausted")));
    assert_eq!(get(&s, &failed_record.notification_id).await, Some(failed));
}

/// Where the notification exists and the guard holds (pending, scheduled, or sending whose lease
/// ran out), the change is applied to it as a transition would: its own fields stay, attempts
/// count on from its own; a field it lacks is taken from the record (`if_not_exists`).
pub async fn notifications_upsert_applies_the_change_where_the_guard_holds(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let record = queued("evt-1", 5);
    // Stored by someone else first (another copy of the job), with its own time and title.
    let mut stored = queued("evt-1", 0);
    stored.title = Some("Stored title".into());
    stored.attempts = 2;
    assert!(create(&s, &stored).await);
    let (guard, claim) = claim_for_send(10, 30);
    let claimed = match upsert(&s, &record, &guard, &claim).await {
        UpsertOutcome::Applied(n) => n,
        other => panic!("claiming a pending notification: {other:?}"),
    };
    assert_eq!(claimed, claim.apply(&stored), "the stored notification, claimed");
    assert_eq!((claimed.attempts, claimed.created_at, claimed.title.as_deref()), (3, at(0), Some("Stored title")));
    assert_eq!(get(&s, &record.notification_id).await, Some(claimed.clone()));

    // Its lease ran out: taken over.
    let (guard, claim) = claim_for_send(41, 30);
    let taken = match upsert(&s, &record, &guard, &claim).await {
        UpsertOutcome::Applied(n) => n,
        other => panic!("taking over a lapsed lease: {other:?}"),
    };
    assert_eq!(taken, claim.apply(&claimed));
    assert_eq!((taken.attempts, taken.lease_until), (4, Some(at(71))));
    assert_eq!(get(&s, &record.notification_id).await, Some(taken));

    // Scheduled is claimable; a field the stored one lacks comes from the record.
    let mut scheduled = queued("evt-2", 0);
    scheduled.status = Status::Scheduled;
    scheduled.deliver_after = Some(at(100));
    scheduled.body = None;
    assert!(create(&s, &scheduled).await);
    let (guard, claim) = claim_for_send(100, 30);
    let claimed = match upsert(&s, &queued("evt-2", 0), &guard, &claim).await {
        UpsertOutcome::Applied(n) => n,
        other => panic!("claiming a scheduled notification: {other:?}"),
    };
    assert_eq!(claimed, Notification { body: queued("evt-2", 0).body, ..claim.apply(&scheduled) });
    assert_eq!(claimed.deliver_after, Some(at(100)), "its own fields stay");
    assert_eq!(get(&s, &scheduled.notification_id).await, Some(claimed));
}

/// Where the notification exists and the guard fails (a live lease; sent, failed, skipped,
/// canceled), nothing is written and the notification is answered as it is.
pub async fn notifications_upsert_is_rejected_where_the_guard_fails(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let record = queued("evt-1", 0);
    let (guard, claim) = claim_for_send(10, 30);
    let UpsertOutcome::Created(live) = upsert(&s, &record, &guard, &claim).await else { panic!("created") };
    for now in [11, 40] {
        let (guard, claim) = claim_for_send(now, 30);
        assert_eq!(upsert(&s, &record, &guard, &claim).await, UpsertOutcome::Rejected(live.clone()), "a claim at +{now} under a lease until +40");
    }
    assert_eq!(get(&s, &record.notification_id).await, Some(live));

    for (i, status) in [Status::Sent, Status::Failed, Status::Skipped, Status::Canceled].into_iter().enumerate() {
        let mut done = queued(&format!("evt-final-{i}"), 0);
        done.status = status;
        done.title = None;
        assert!(create(&s, &done).await);
        let (guard, claim) = claim_for_send(100_000, 30);
        assert_eq!(upsert(&s, &queued(&format!("evt-final-{i}"), 0), &guard, &claim).await, UpsertOutcome::Rejected(done.clone()), "{status}");
        assert_eq!(get(&s, &done.notification_id).await, Some(done), "{status}: nothing written, not even the title");
    }
}

/// Racing claims of a notification nobody wrote: one creates it, every other is rejected with it.
pub async fn notifications_concurrent_upserts_create_once(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let record = queued("evt-1", 0);
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let (store, barrier, record) = (s.notifications.clone(), barrier.clone(), record.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let (guard, claim) = claim_for_send(10, 30);
            store.upsert(&record, &guard, &claim.provider_message_id(format!("sender-{i}"))).await.expect("upsert")
        }));
    }
    let (mut created, mut rejected) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.expect("claiming task") {
            UpsertOutcome::Created(n) => created.push(n),
            UpsertOutcome::Rejected(n) => rejected.push(n),
            UpsertOutcome::Applied(n) => panic!("a live claim was claimed again: {n:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one of {RACERS} racing claims creates it");
    assert!(rejected.iter().all(|n| *n == created[0]), "every other one sees it");
    assert_eq!(get(&s, &record.notification_id).await, Some(created.remove(0)));
}

pub async fn notifications_concurrent_claims_apply_once(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let n = notification("evt-1", Channel::Push, "u-1", 0);
    assert!(create(&s, &n).await);
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = s.notifications.clone();
        let barrier = barrier.clone();
        let id = n.notification_id.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let guard = Guard::Claimable { now: at(10) };
            let change = Transition::to(Status::Sending, at(10))
                .count_attempt()
                .lease_until(Some(at(40)))
                .provider_message_id(format!("sender-{i}"));
            store.transition(&id, &guard, &change).await.expect("transition")
        }));
    }
    let mut applied = Vec::new();
    let mut rejected = Vec::new();
    for task in tasks {
        match task.await.expect("claiming task") {
            TransitionOutcome::Applied(n) => applied.push(n),
            TransitionOutcome::Rejected(n) => rejected.push(n),
            TransitionOutcome::NotFound => panic!("the notification exists"),
        }
    }
    assert_eq!(applied.len(), 1, "exactly one of {RACERS} concurrent claims applies");
    assert_eq!(rejected.len(), RACERS - 1);
    let winner = applied.remove(0);
    assert_eq!(winner.attempts, 1);
    for loser in &rejected {
        assert_eq!(loser, &winner, "every loser sees the winner's claim");
    }
    assert_eq!(get(&s, &n.notification_id).await, Some(winner));
}

pub async fn notifications_status_in_guard(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let n = notification("evt-1", Channel::Email, "u-1", 0);
    assert!(create(&s, &n).await);
    let skip = Transition::to(Status::Skipped, at(5)).reason("opted_out");
    for statuses in [vec![], vec![Status::Sending], vec![Status::Scheduled, Status::Sent, Status::Failed]] {
        assert_eq!(
            transition(&s, &n.notification_id, &Guard::StatusIn(statuses.clone()), &skip).await,
            TransitionOutcome::Rejected(n.clone()),
            "a pending notification under StatusIn({statuses:?})"
        );
    }
    assert_eq!(get(&s, &n.notification_id).await, Some(n.clone()));
    let guard = Guard::StatusIn(vec![Status::Scheduled, Status::Pending]);
    let skipped = match transition(&s, &n.notification_id, &guard, &skip).await {
        TransitionOutcome::Applied(skipped) => skipped,
        other => panic!("a pending notification under StatusIn([scheduled, pending]): {other:?}"),
    };
    assert_eq!(skipped, skip.apply(&n));
    assert_eq!(skipped.status, Status::Skipped);
    assert_eq!(skipped.reason.as_deref(), Some("opted_out"));
    assert_eq!(get(&s, &n.notification_id).await, Some(skipped.clone()));
    assert_eq!(
        transition(&s, &n.notification_id, &guard, &skip).await,
        TransitionOutcome::Rejected(skipped),
        "the guard is checked against the stored status, not the original"
    );
}

pub async fn notifications_transition_can_clear_fields(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let current = claimed(&s).await;
    let failed_once = Transition::to(Status::Pending, at(20)).last_error("provider timeout").lease_until(None).reason("retrying");
    let pending = match transition(&s, &current.notification_id, &Guard::StatusIn(vec![Status::Sending]), &failed_once).await {
        TransitionOutcome::Applied(n) => n,
        other => panic!("{other:?}"),
    };
    assert_eq!(pending.last_error.as_deref(), Some("provider timeout"));
    assert_eq!(pending.lease_until, None);
    let mut sent = Transition::to(Status::Sent, at(30)).provider_message_id("msg-9").sent_at(at(30));
    sent.last_error = Some(None);
    sent.reason = Some(None);
    let done = match transition(&s, &current.notification_id, &Guard::StatusIn(vec![Status::Pending]), &sent).await {
        TransitionOutcome::Applied(n) => n,
        other => panic!("{other:?}"),
    };
    assert_eq!(done.last_error, None, "Some(None) clears the field");
    assert_eq!(done.reason, None);
    assert_eq!(done.provider_message_id.as_deref(), Some("msg-9"));
    assert_eq!(done.sent_at, Some(at(30)));
    assert_eq!(done.attempts, 1, "fields the transition does not name are kept");
    assert_eq!(done.title, current.title);
    assert_eq!(get(&s, &current.notification_id).await, Some(done));
}

pub async fn notifications_transition_of_unknown_is_not_found(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let absent = notification("evt-absent", Channel::Email, "u-1", 0).notification_id;
    let (guard, change) = claim_for_send(10, 30);
    assert_eq!(transition(&s, &absent, &guard, &change).await, TransitionOutcome::NotFound);
    assert_eq!(
        transition(&s, &absent, &Guard::StatusIn(vec![Status::Pending]), &Transition::to(Status::Sent, at(1))).await,
        TransitionOutcome::NotFound
    );
    assert_eq!(get(&s, &absent).await, None, "a transition never creates a notification");
}

pub async fn notifications_scrub_content_keeps_ids_status_and_times(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let current = claimed(&s).await;
    let failed = Transition::to(Status::Failed, at(20)).last_error("MessageRejected: olena@example.com").reason("provider_rejected").lease_until(None);
    let failed = match transition(&s, &current.notification_id, &Guard::StatusIn(vec![Status::Sending]), &failed).await {
        TransitionOutcome::Applied(n) => n,
        other => panic!("{other:?}"),
    };
    assert!(failed.title.is_some() && failed.last_error.is_some());
    let other = notification("evt-other", Channel::Email, "u-2", 5);
    assert!(create(&s, &other).await);

    assert!(s.notifications.scrub_content(&current.notification_id).await.expect("scrub_content"), "content was removed");

    let scrubbed = get(&s, &current.notification_id).await.expect("the notification stays");
    assert_eq!(Notification { title: None, last_error: None, ..failed.clone() }, scrubbed, "only the title and the last error go");
    assert!(!s.notifications.scrub_content(&current.notification_id).await.expect("scrub_content"), "nothing left the second time");
    let listed = s.notifications.list_for_event(&current.event_id).await.expect("list_for_event");
    assert_eq!(listed, vec![scrubbed], "its event still lists it");
    let absent = notification("evt-absent", Channel::Email, "u-1", 0).notification_id;
    assert!(!s.notifications.scrub_content(&absent).await.expect("scrub_content"));
    assert_eq!(get(&s, &absent).await, None, "a scrub never creates a notification");
    assert_eq!(get(&s, &other.notification_id).await, Some(other), "other notifications keep theirs");
}

// ---------------------------------------------------------------------------------------------
// Notifications: queries.

pub async fn notifications_list_for_event_in_channel_order(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let scrambled = [Channel::Websocket, Channel::Email, Channel::Telegram, Channel::Push, Channel::Sms, Channel::Whatsapp];
    for (i, channel) in scrambled.into_iter().enumerate() {
        assert!(create(&s, &notification("evt-1", channel, "u-1", i as i64)).await);
    }
    assert!(create(&s, &notification("evt-2", Channel::Email, "u-1", 0)).await);
    assert!(create(&s, &notification("evt-1x", Channel::Sms, "u-2", 0)).await);

    let listed = s.notifications.list_for_event(&event_id("evt-1")).await.expect("list_for_event");
    let channels: Vec<Channel> = listed.iter().map(|n| n.channel).collect();
    let mut expected = scrambled.to_vec();
    expected.sort_by_key(|c| channel_rank(*c));
    assert_eq!(channels, expected, "in channel order, only this event's");
    assert!(listed.iter().all(|n| n.event_id == event_id("evt-1")));
    let email = notification("evt-1", Channel::Email, "u-1", 1);
    assert_eq!(listed[0], email, "items are returned whole");

    // Transitions show in the listing.
    let (guard, change) = claim_for_send(10, 30);
    let TransitionOutcome::Applied(claimed) = transition(&s, &email.notification_id, &guard, &change).await else {
        panic!("claim");
    };
    let listed = s.notifications.list_for_event(&event_id("evt-1")).await.expect("list_for_event");
    assert_eq!(listed[0], claimed);

    assert_eq!(s.notifications.list_for_event(&event_id("evt-none")).await.expect("list_for_event"), vec![]);
}

/// Five notifications of `u-a` (two created in the same second) and three of `u-b` between them.
async fn seed_users(s: &StoreHandles) -> Vec<Notification> {
    let mut mine = Vec::new();
    for (event, channel, created) in
        [("evt-1", Channel::Email, 10), ("evt-2", Channel::Sms, 20), ("evt-3", Channel::Email, 30), ("evt-3", Channel::Push, 30), ("evt-5", Channel::Websocket, 50)]
    {
        let n = notification(event, channel, "u-a", created);
        assert!(create(s, &n).await);
        mine.push(n);
    }
    for (event, created) in [("evt-b1", 5), ("evt-b2", 25), ("evt-b3", 60)] {
        assert!(create(s, &notification(event, Channel::Email, "u-b", created)).await);
    }
    newest_first(mine)
}

pub async fn notifications_list_for_user_newest_first(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let expected = seed_users(&s).await;
    let page = s.notifications.list_for_user(&user("u-a"), 10, None).await.expect("list_for_user");
    assert_eq!(page.items, expected, "all of u-a's, newest first (ties by notification id, descending), no one else's");
    assert_eq!(page.next, None, "one page holds them all");
    let created: Vec<Timestamp> = page.items.iter().map(|n| n.created_at).collect();
    assert_eq!(created, vec![at(50), at(30), at(30), at(20), at(10)]);

    let b = s.notifications.list_for_user(&user("u-b"), 10, None).await.expect("list_for_user");
    assert_eq!(b.items.iter().map(|n| n.created_at).collect::<Vec<_>>(), vec![at(60), at(25), at(5)]);
    let nobody = s.notifications.list_for_user(&user("u-nobody"), 10, None).await.expect("list_for_user");
    assert_eq!(nobody, Page { items: vec![], next: None });
}

pub async fn notifications_list_for_user_pages_return_each_once(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let expected = seed_users(&s).await;
    let pages = all_pages(&s, &user("u-a"), 2).await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.items.len()).collect();
    assert_eq!(sizes, vec![2, 2, 1], "five items, two per page");
    let collected: Vec<Notification> = pages.into_iter().flat_map(|p| p.items).collect();
    assert_eq!(ids(&collected), ids(&expected), "every item exactly once, in order");
    assert_eq!(collected, expected);
}

pub async fn notifications_list_for_user_paging_survives_new_arrivals(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let expected = seed_users(&s).await;
    let u = user("u-a");
    let first = s.notifications.list_for_user(&u, 2, None).await.expect("list_for_user");
    assert_eq!(ids(&first.items), ids(&expected[..2]));
    let mut cursor = first.next.clone().expect("more pages");
    let mut collected = ids(&first.items);

    // Newer notifications arrive between pages (and one for someone else).
    let arrivals = [notification("evt-new1", Channel::Email, "u-a", 100), notification("evt-new2", Channel::Sms, "u-a", 101)];
    for n in &arrivals {
        assert!(create(&s, n).await);
    }
    assert!(create(&s, &notification("evt-new3", Channel::Sms, "u-b", 102)).await);

    for _ in 0..10 {
        let page = s.notifications.list_for_user(&u, 2, Some(&cursor)).await.expect("list_for_user");
        collected.extend(ids(&page.items));
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let unique: HashSet<&NotificationId> = collected.iter().collect();
    assert_eq!(unique.len(), collected.len(), "no item twice: {collected:?}");
    for n in &expected {
        assert!(collected.contains(&n.notification_id), "{} missing after new arrivals: {collected:?}", n.notification_id);
    }
    let allowed: HashSet<NotificationId> = expected.iter().chain(arrivals.iter()).map(|n| n.notification_id.clone()).collect();
    assert!(collected.iter().all(|id| allowed.contains(id)), "only u-a's: {collected:?}");
    // The original items keep their relative order.
    let originals: Vec<&NotificationId> = collected.iter().filter(|id| expected.iter().any(|n| &n.notification_id == *id)).collect();
    assert_eq!(originals, expected.iter().map(|n| &n.notification_id).collect::<Vec<_>>());
}

pub async fn notifications_list_for_user_clamps_limit(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let u = user("u-many");
    let mut all = Vec::new();
    for i in 0..101 {
        let n = notification(&format!("evt-{i:03}"), Channel::Email, "u-many", i);
        assert!(create(&s, &n).await);
        all.push(n);
    }
    let all = newest_first(all);

    let one = s.notifications.list_for_user(&u, 0, None).await.expect("list_for_user");
    assert_eq!(ids(&one.items), ids(&all[..1]), "a limit of 0 is taken as 1");
    assert!(one.next.is_some());

    let big = s.notifications.list_for_user(&u, 10_000, None).await.expect("list_for_user");
    assert_eq!(big.items.len(), 100, "a page holds at most 100");
    assert_eq!(ids(&big.items), ids(&all[..100]));
    let rest = s.notifications.list_for_user(&u, 10_000, big.next.as_deref()).await.expect("list_for_user");
    assert_eq!(ids(&rest.items), ids(&all[100..]));
    assert_eq!(rest.next, None);
}

pub async fn notifications_list_for_user_malformed_cursor_is_an_empty_last_page(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    seed_users(&s).await;
    for bad in ["", "not a cursor", "%%%", "eyJ4IjoxfQ"] {
        let page = s.notifications.list_for_user(&user("u-a"), 2, Some(bad)).await.expect("list_for_user");
        assert_eq!(page, Page { items: vec![], next: None }, "cursor {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Profiles and preferences.

fn full_profile() -> Profile {
    Profile {
        email: Some("olena@example.com".into()),
        phone: Some("+380501234567".into()),
        locale: Some("uk-UA".into()),
        timezone: Some("Europe/Kyiv".into()),
        push_tokens: vec![
            PushToken { platform: "fcm".into(), token: "fcm-token-1".into() },
            PushToken { platform: "apns".into(), token: "apns-token-2".into() },
        ],
        whatsapp: Some("+380501234568".into()),
        telegram_chat_id: Some("123456789".into()),
        webhook_url: Some("https://hooks.example.com/notify".into()),
    }
}

fn full_preferences() -> Preferences {
    Preferences {
        channels: BTreeMap::from([(Channel::Sms, false), (Channel::Email, true)]),
        categories: BTreeMap::from([
            ("marketing".to_owned(), BTreeMap::from([("*".to_owned(), false)])),
            ("billing".to_owned(), BTreeMap::from([("push".to_owned(), false), ("email".to_owned(), true)])),
        ]),
        quiet_hours: Some(QuietHours { start: "22:00".into(), end: "07:30".into(), timezone: Some("Europe/Kyiv".into()) }),
    }
}

pub async fn profiles_missing_is_none(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(s.profiles.get_profile(&user("u-1")).await.expect("get_profile"), None);
    assert_eq!(s.profiles.get_preferences(&user("u-1")).await.expect("get_preferences"), None);
    // Preferences alone do not make a profile, nor the other way round.
    s.profiles.put_preferences(&user("u-2"), &full_preferences()).await.expect("put_preferences");
    assert_eq!(s.profiles.get_profile(&user("u-2")).await.expect("get_profile"), None);
    s.profiles.put_profile(&user("u-3"), &full_profile()).await.expect("put_profile");
    assert_eq!(s.profiles.get_preferences(&user("u-3")).await.expect("get_preferences"), None);
}

pub async fn profiles_round_trip(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    s.profiles.put_profile(&user("u-1"), &full_profile()).await.expect("put_profile");
    s.profiles.put_preferences(&user("u-1"), &full_preferences()).await.expect("put_preferences");
    assert_eq!(s.profiles.get_profile(&user("u-1")).await.expect("get_profile"), Some(full_profile()));
    assert_eq!(s.profiles.get_preferences(&user("u-1")).await.expect("get_preferences"), Some(full_preferences()));
    assert_eq!(s.profiles.get_profile(&user("u-2")).await.expect("get_profile"), None, "users are separate");
    assert_eq!(
        s.profiles.get_recipient(&user("u-1")).await.expect("get_recipient"),
        (Some(full_profile()), Some(full_preferences())),
        "profile and preferences read together"
    );
    s.profiles.put_profile(&user("u-4"), &full_profile()).await.expect("put_profile");
    assert_eq!(s.profiles.get_recipient(&user("u-4")).await.expect("get_recipient"), (Some(full_profile()), None));
    assert_eq!(s.profiles.get_recipient(&user("u-2")).await.expect("get_recipient"), (None, None));

    // Empty values round-trip as themselves, not as absent.
    s.profiles.put_profile(&user("u-3"), &Profile::default()).await.expect("put_profile");
    s.profiles.put_preferences(&user("u-3"), &Preferences::default()).await.expect("put_preferences");
    assert_eq!(s.profiles.get_profile(&user("u-3")).await.expect("get_profile"), Some(Profile::default()));
    assert_eq!(s.profiles.get_preferences(&user("u-3")).await.expect("get_preferences"), Some(Preferences::default()));
}

pub async fn profiles_put_overwrites(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let u = user("u-1");
    s.profiles.put_profile(&u, &full_profile()).await.expect("put_profile");
    s.profiles.put_preferences(&u, &full_preferences()).await.expect("put_preferences");
    let smaller = Profile { email: Some("new@example.com".into()), ..Profile::default() };
    s.profiles.put_profile(&u, &smaller).await.expect("put_profile");
    assert_eq!(s.profiles.get_profile(&u).await.expect("get_profile"), Some(smaller), "a put replaces the whole profile, no merge");
    let fewer = Preferences { channels: BTreeMap::from([(Channel::Push, false)]), ..Preferences::default() };
    s.profiles.put_preferences(&u, &fewer).await.expect("put_preferences");
    assert_eq!(s.profiles.get_preferences(&u).await.expect("get_preferences"), Some(fewer), "a put replaces the whole preferences");
}

pub async fn profiles_delete_recipient_removes_profile_and_preferences(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    for u in ["u-1", "u-2"] {
        s.profiles.put_profile(&user(u), &full_profile()).await.expect("put_profile");
        s.profiles.put_preferences(&user(u), &full_preferences()).await.expect("put_preferences");
    }
    s.profiles.put_preferences(&user("u-3"), &full_preferences()).await.expect("put_preferences");

    assert!(s.profiles.delete_recipient(&user("u-1")).await.expect("delete_recipient"), "there was one");
    assert_eq!(s.profiles.get_recipient(&user("u-1")).await.expect("get_recipient"), (None, None), "both are gone");
    assert_eq!(s.profiles.get_profile(&user("u-1")).await.expect("get_profile"), None);
    assert_eq!(s.profiles.get_preferences(&user("u-1")).await.expect("get_preferences"), None);
    assert!(!s.profiles.delete_recipient(&user("u-1")).await.expect("delete_recipient"), "nothing the second time");
    assert!(s.profiles.delete_recipient(&user("u-3")).await.expect("delete_recipient"), "preferences alone count");
    assert!(!s.profiles.delete_recipient(&user("u-unknown")).await.expect("delete_recipient"));
    assert_eq!(
        s.profiles.get_recipient(&user("u-2")).await.expect("get_recipient"),
        (Some(full_profile()), Some(full_preferences())),
        "other users are untouched"
    );
}

// ---------------------------------------------------------------------------------------------
// Connections.

fn connection(id: &str, user_id: &str, connected: i64, expires: i64) -> Connection {
    Connection { connection_id: id.into(), user_id: user(user_id), connected_at: at(connected), expires_at: at(expires) }
}

async fn connections_of(s: &StoreHandles, user_id: &str, now: i64) -> Vec<Connection> {
    s.connections.connections_of(&user(user_id), at(now)).await.expect("connections_of")
}

pub async fn connections_of_filters_by_user_and_expiry(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let late = connection("conn-late", "u-1", 100, 7300);
    let early = connection("conn-early", "u-1", 50, 7250);
    let stale = connection("conn-stale", "u-1", 10, 150);
    let other = connection("conn-other", "u-2", 60, 7260);
    for c in [&late, &stale, &other, &early] {
        s.connections.put_connection(c).await.expect("put_connection");
    }
    assert_eq!(connections_of(&s, "u-1", 149).await, vec![stale.clone(), early.clone(), late.clone()], "ordered by connected_at");
    assert_eq!(connections_of(&s, "u-1", 150).await, vec![early.clone(), late.clone()], "a connection is gone at its expires_at");
    assert_eq!(connections_of(&s, "u-2", 150).await, vec![other]);
    assert_eq!(connections_of(&s, "u-1", 7250).await, vec![late]);
    assert_eq!(connections_of(&s, "u-1", 8000).await, vec![]);
    assert_eq!(connections_of(&s, "u-nobody", 0).await, vec![]);
}

pub async fn connections_put_overwrites(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    s.connections.put_connection(&connection("conn-1", "u-1", 0, 100)).await.expect("put_connection");
    let renewed = connection("conn-1", "u-1", 50, 7250);
    s.connections.put_connection(&renewed).await.expect("put_connection");
    assert_eq!(connections_of(&s, "u-1", 60).await, vec![renewed.clone()], "one connection, the latest put");
    assert_eq!(connections_of(&s, "u-1", 150).await, vec![renewed]);
    // A connection id reused for another user belongs to that user alone.
    let moved = connection("conn-1", "u-2", 200, 7400);
    s.connections.put_connection(&moved).await.expect("put_connection");
    assert_eq!(connections_of(&s, "u-1", 210).await, vec![]);
    assert_eq!(connections_of(&s, "u-2", 210).await, vec![moved]);
}

pub async fn connections_delete_is_idempotent(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let keep = connection("conn-keep", "u-1", 0, 7200);
    s.connections.put_connection(&keep).await.expect("put_connection");
    s.connections.put_connection(&connection("conn-gone", "u-1", 10, 7210)).await.expect("put_connection");
    s.connections.delete_connection("conn-gone").await.expect("delete_connection");
    assert_eq!(connections_of(&s, "u-1", 20).await, vec![keep.clone()]);
    s.connections.delete_connection("conn-gone").await.expect("deleting twice is not an error");
    s.connections.delete_connection("conn-never").await.expect("deleting an unknown connection is not an error");
    assert_eq!(connections_of(&s, "u-1", 20).await, vec![keep]);
}

async fn active(s: &StoreHandles) -> i64 {
    s.connections.active_connections().await.expect("active_connections")
}

pub async fn connections_active_count_follows_new_and_forgotten(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(active(&s).await, 0, "an empty store counts none");
    let put = |c: Connection| {
        let s = s.clone();
        async move { s.connections.put_connection(&c).await.expect("put_connection") }
    };
    let delete = |id: &'static str| {
        let s = s.clone();
        async move { s.connections.delete_connection(id).await.expect("delete_connection") }
    };
    assert_eq!(put(connection("conn-a", "u-1", 0, 7200)).await, Some(1), "a new connection counts");
    assert_eq!(put(connection("conn-b", "u-2", 10, 7210)).await, Some(2));
    assert_eq!(put(connection("conn-a", "u-1", 20, 7220)).await, None, "a connection put again is not counted twice");
    assert_eq!(active(&s).await, 2);
    assert_eq!(delete("conn-a").await, Some(1), "forgetting a connection uncounts it");
    assert_eq!(delete("conn-a").await, None, "a second disconnect changes nothing");
    assert_eq!(delete("conn-never").await, None, "nor does forgetting an unknown connection");
    assert_eq!(active(&s).await, 1);
    // The count is not a connection of anybody's.
    assert_eq!(connections_of(&s, "u-2", 20).await, vec![connection("conn-b", "u-2", 10, 7210)]);
    assert_eq!(connections_of(&s, "u-1", 20).await, vec![]);
    assert_eq!(delete("conn-b").await, Some(0));
    assert_eq!(active(&s).await, 0);
    assert_eq!(put(connection("conn-a", "u-1", 30, 7230)).await, Some(1), "a connection id may come back");
    assert_eq!(active(&s).await, 1);
}

pub async fn connections_racing_disconnects_count_once(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    s.connections.put_connection(&connection("conn-keep", "u-1", 0, 7200)).await.expect("put_connection");
    s.connections.put_connection(&connection("conn-gone", "u-1", 10, 7210)).await.expect("put_connection");
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = s.connections.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.delete_connection("conn-gone").await.expect("delete_connection")
        }));
    }
    let mut counted = Vec::new();
    for task in tasks {
        counted.extend(task.await.expect("disconnecting task"));
    }
    assert_eq!(counted, vec![1], "exactly one of {RACERS} racing disconnects forgets the connection");
    assert_eq!(active(&s).await, 1);
    assert_eq!(connections_of(&s, "u-1", 20).await, vec![connection("conn-keep", "u-1", 0, 7200)]);
}

pub async fn connections_racing_connects_count_each(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = s.connections.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.put_connection(&connection(&format!("conn-{i}"), "u-1", i as i64, 7200)).await.expect("put_connection")
        }));
    }
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.expect("connecting task").expect("each connection is new"));
    }
    counts.sort();
    assert_eq!(counts, (1..=RACERS as i64).collect::<Vec<_>>(), "each racing connect sees its own count");
    assert_eq!(active(&s).await, RACERS as i64);
    assert_eq!(connections_of(&s, "u-1", 0).await.len(), RACERS);
}

// ---------------------------------------------------------------------------------------------
// Suppressions.

fn suppression(channel: Channel, address: &str, reason: SuppressionReason, created: i64) -> Suppression {
    Suppression { tenant: crate::domain::Tenant::default_tenant(), channel, address: address.into(), reason, created_at: at(created), notification_id: None }
}

/// A suppression holds for its tenant only: another tenant's users still get mail at the address,
/// and each tenant lists and lifts its own.
pub async fn suppressions_belong_to_their_tenant(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let (acme, globex) = (crate::domain::Tenant::parse("acme").unwrap(), crate::domain::Tenant::parse("globex").unwrap());
    let default = crate::domain::Tenant::default_tenant();
    let bounce = Suppression { tenant: acme.clone(), ..suppression(Channel::Email, "shared@example.com", SuppressionReason::HardBounce, 10) };
    s.suppressions.suppress(&bounce).await.expect("suppress");
    assert!(s.suppressions.is_suppressed(&acme, Channel::Email, "Shared@example.com").await.unwrap());
    assert!(!s.suppressions.is_suppressed(&globex, Channel::Email, "shared@example.com").await.unwrap(), "another tenant's list");
    assert!(!s.suppressions.is_suppressed(&default, Channel::Email, "shared@example.com").await.unwrap(), "the default tenant's list");
    assert_eq!(s.suppressions.list_suppressions(&acme, 10, None).await.unwrap().items, vec![bounce.clone()]);
    assert!(s.suppressions.list_suppressions(&globex, 10, None).await.unwrap().items.is_empty());
    assert!(s.suppressions.list_suppressions(&default, 10, None).await.unwrap().items.is_empty());
    assert!(!s.suppressions.remove_suppression(&globex, Channel::Email, "shared@example.com").await.unwrap(), "not globex's to lift");
    assert!(s.suppressions.remove_suppression(&acme, Channel::Email, "shared@example.com").await.unwrap());
    assert!(!s.suppressions.is_suppressed(&acme, Channel::Email, "shared@example.com").await.unwrap());
}

async fn suppressed(s: &StoreHandles, channel: Channel, address: &str) -> bool {
    s.suppressions.is_suppressed(&crate::domain::Tenant::default_tenant(), channel, address).await.expect("is_suppressed")
}

async fn suppress(s: &StoreHandles, item: &Suppression) {
    s.suppressions.suppress(item).await.expect("suppress");
}

async fn all_suppressions(s: &StoreHandles) -> Vec<Suppression> {
    let page = s.suppressions.list_suppressions(&crate::domain::Tenant::default_tenant(), 100, None).await.expect("list_suppressions");
    assert_eq!(page.next, None, "one page holds them all");
    page.items
}

pub async fn suppressions_are_found_by_channel_and_address(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert!(!suppressed(&s, Channel::Email, "olena@example.com").await, "an empty store suppresses nothing");
    let bounce = Suppression {
        tenant: crate::domain::Tenant::default_tenant(),
        notification_id: Some(NotificationId::derive(&event_id("evt-1"), Channel::Email)),
        ..suppression(Channel::Email, "Olena@Example.com", SuppressionReason::HardBounce, 10)
    };
    suppress(&s, &bounce).await;
    for written in ["olena@example.com", "Olena@Example.com", "OLENA@EXAMPLE.COM", " olena@example.com "] {
        assert!(suppressed(&s, Channel::Email, written).await, "e-mail addresses compare case-insensitively, trimmed: {written:?}");
    }
    assert!(!suppressed(&s, Channel::Email, "olena@example.org").await);
    assert!(!suppressed(&s, Channel::Sms, "olena@example.com").await, "a suppression belongs to its channel");

    suppress(&s, &suppression(Channel::Sms, "+380501234567", SuppressionReason::OptedOut, 20)).await;
    suppress(&s, &suppression(Channel::Telegram, "Chat-42", SuppressionReason::Unreachable, 30)).await;
    assert!(suppressed(&s, Channel::Sms, "+380501234567").await);
    assert!(!suppressed(&s, Channel::Whatsapp, "+380501234567").await, "the same number on another channel is not suppressed");
    assert!(suppressed(&s, Channel::Telegram, "Chat-42").await);
    assert!(!suppressed(&s, Channel::Telegram, "chat-42").await, "only e-mail addresses ignore case");

    // Read back as written, with every field.
    let listed = all_suppressions(&s).await;
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], bounce, "the address as written, the reason, the time and the notification");
}

pub async fn suppressions_replace_the_one_of_the_same_address(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    suppress(&s, &suppression(Channel::Email, "olena@example.com", SuppressionReason::HardBounce, 10)).await;
    suppress(&s, &suppression(Channel::Email, "other@example.com", SuppressionReason::HardBounce, 15)).await;
    let complaint = suppression(Channel::Email, "OLENA@example.com", SuppressionReason::Complaint, 20);
    suppress(&s, &complaint).await;
    let listed = all_suppressions(&s).await;
    assert_eq!(listed.len(), 2, "one suppression per channel and address: {listed:?}");
    assert_eq!(listed[0], complaint, "the later one replaced the first, and lists by its own time");
    assert_eq!(listed[1].address, "other@example.com");
    // The same suppression again (a redelivered bounce) changes nothing.
    suppress(&s, &complaint).await;
    assert_eq!(all_suppressions(&s).await, listed);
}

pub async fn suppressions_remove_answers_whether_there_was_one(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let remove = |channel: Channel, address: &'static str| {
        let s = s.clone();
        async move { s.suppressions.remove_suppression(&crate::domain::Tenant::default_tenant(), channel, address).await.expect("remove_suppression") }
    };
    assert!(!remove(Channel::Email, "olena@example.com").await, "nothing to lift");
    suppress(&s, &suppression(Channel::Email, "olena@example.com", SuppressionReason::HardBounce, 10)).await;
    suppress(&s, &suppression(Channel::Sms, "+380501234567", SuppressionReason::OptedOut, 20)).await;
    assert!(!remove(Channel::Sms, "olena@example.com").await, "another channel's address is not lifted");
    assert!(remove(Channel::Email, "Olena@EXAMPLE.com").await, "lifted, whatever the case of the e-mail address");
    assert!(!suppressed(&s, Channel::Email, "olena@example.com").await);
    assert!(!remove(Channel::Email, "olena@example.com").await, "a second lift finds none");
    let left = all_suppressions(&s).await;
    assert_eq!(left.iter().map(|x| x.channel).collect::<Vec<_>>(), [Channel::Sms], "and it is gone from the list");
    // Suppressed again after being lifted.
    suppress(&s, &suppression(Channel::Email, "olena@example.com", SuppressionReason::Complaint, 30)).await;
    assert!(suppressed(&s, Channel::Email, "olena@example.com").await);
}

pub async fn suppressions_list_newest_first_in_pages(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let empty = s.suppressions.list_suppressions(&crate::domain::Tenant::default_tenant(), 10, None).await.expect("list_suppressions");
    assert_eq!(empty, Page { items: vec![], next: None });
    let items = [
        suppression(Channel::Email, "a@example.com", SuppressionReason::HardBounce, 10),
        suppression(Channel::Sms, "+15550000001", SuppressionReason::OptedOut, 30),
        suppression(Channel::Email, "b@example.com", SuppressionReason::Complaint, 30),
        suppression(Channel::Telegram, "100200300", SuppressionReason::Unreachable, 50),
        suppression(Channel::Email, "c@example.com", SuppressionReason::HardBounce, 20),
    ];
    for item in &items {
        suppress(&s, item).await;
    }
    // Newest first; a tie in time by key (`sms:…` after `email:…`), descending.
    let expected = vec![items[3].clone(), items[1].clone(), items[2].clone(), items[4].clone(), items[0].clone()];
    assert_eq!(all_suppressions(&s).await, expected);

    let pages = |limit: usize| {
        let s = s.clone();
        async move {
            let mut pages = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..20 {
                let page = s.suppressions.list_suppressions(&crate::domain::Tenant::default_tenant(), limit, cursor.as_deref()).await.expect("list_suppressions");
                cursor = page.next.clone();
                pages.push(page);
                if cursor.is_none() {
                    return pages;
                }
            }
            panic!("paging never ends");
        }
    };
    let two = pages(2).await;
    assert_eq!(two.iter().map(|p| p.items.len()).collect::<Vec<_>>(), [2, 2, 1], "five, two per page");
    assert_eq!(two.into_iter().flat_map(|p| p.items).collect::<Vec<_>>(), expected, "each once, in order");

    let one = s.suppressions.list_suppressions(&crate::domain::Tenant::default_tenant(), 0, None).await.expect("list_suppressions");
    assert_eq!(one.items, expected[..1], "a limit of 0 is taken as 1");
    assert!(one.next.is_some());

    for bad in ["", "not a cursor", "%%%", "eyJ4IjoxfQ"] {
        let page = s.suppressions.list_suppressions(&crate::domain::Tenant::default_tenant(), 2, Some(bad)).await.expect("list_suppressions");
        assert_eq!(page, Page { items: vec![], next: None }, "cursor {bad:?}");
    }

    // Four left: two full pages, and the second is the last (no cursor to an empty third).
    assert!(s.suppressions.remove_suppression(&crate::domain::Tenant::default_tenant(), Channel::Email, "c@example.com").await.expect("remove_suppression"));
    let two = pages(2).await;
    assert_eq!(two.iter().map(|p| p.items.len()).collect::<Vec<_>>(), [2, 2]);
    let expected: Vec<Suppression> = expected.into_iter().filter(|x| x.address != "c@example.com").collect();
    assert_eq!(two.into_iter().flat_map(|p| p.items).collect::<Vec<_>>(), expected);
}

// ---------------------------------------------------------------------------------------------
// Sending rates.

fn at_ms(offset_ms: i64) -> Timestamp {
    Timestamp::from_millisecond(1_700_000_000_000 + offset_ms).expect("timestamp in range")
}

async fn acquire(s: &StoreHandles, key: &str, per_second: u32, now: Timestamp) -> Pace {
    s.rate_limits.acquire(key, per_second, now).await.expect("acquire")
}

pub async fn rate_limits_go_within_the_budget_then_wait_for_the_next_second(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    for i in 0..3 {
        assert_eq!(acquire(&s, "ses", 3, at_ms(100 + i * 100)).await, Pace::Go, "send {} of 3 in the second", i + 1);
    }
    match acquire(&s, "ses", 3, at_ms(400)).await {
        Pace::Wait(wait) => {
            assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
            assert_eq!(wait, Duration::from_millis(600), "until the next second starts");
        }
        Pace::Go => panic!("a fourth send in a second of three"),
    }
    assert!(matches!(acquire(&s, "ses", 3, at_ms(999)).await, Pace::Wait(w) if w == Duration::from_millis(1)), "still spent");
    // The next second has its own budget.
    for i in 0..3 {
        assert_eq!(acquire(&s, "ses", 3, at_ms(1000 + i)).await, Pace::Go, "send {} of the next second", i + 1);
    }
    assert!(matches!(acquire(&s, "ses", 3, at_ms(1500)).await, Pace::Wait(_)));
    // A later second, with a whole second to wait when spent at its very start.
    assert_eq!(acquire(&s, "ses", 1, at_ms(5000)).await, Pace::Go);
    assert_eq!(acquire(&s, "ses", 1, at_ms(5000)).await, Pace::Wait(Duration::from_secs(1)));
}

pub async fn rate_limits_keys_are_independent(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(acquire(&s, "ses", 1, at_ms(0)).await, Pace::Go);
    assert!(matches!(acquire(&s, "ses", 1, at_ms(10)).await, Pace::Wait(_)), "ses is spent");
    assert_eq!(acquire(&s, "twilio", 2, at_ms(20)).await, Pace::Go, "another key has its own budget");
    assert_eq!(acquire(&s, "twilio", 2, at_ms(30)).await, Pace::Go);
    assert!(matches!(acquire(&s, "twilio", 2, at_ms(40)).await, Pace::Wait(_)));
    assert!(matches!(acquire(&s, "ses", 1, at_ms(50)).await, Pace::Wait(_)), "and spending it leaves ses as it was");
    assert_eq!(acquire(&s, "ses", 1, at_ms(1000)).await, Pace::Go);
}

async fn lease(s: &StoreHandles, key: &str, per_second: u32, wanted: u32, now: Timestamp) -> u32 {
    s.rate_limits.lease(key, per_second, wanted, now).await.expect("lease")
}

/// A lease takes up to what it asks for: all of it within the budget, the rest of the budget at
/// its edge, nothing once it is spent (nor does `acquire` get any: they share the budget); the
/// next second starts afresh.
pub async fn rate_limits_lease_grants_up_to_the_budget_then_part_then_none(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(lease(&s, "ses", 10, 0, at_ms(50)).await, 0, "asking for nothing takes nothing");
    assert_eq!(lease(&s, "ses", 10, 4, at_ms(100)).await, 4);
    assert_eq!(acquire(&s, "ses", 10, at_ms(150)).await, Pace::Go, "acquire shares the budget");
    assert_eq!(lease(&s, "ses", 10, 4, at_ms(200)).await, 4);
    assert_eq!(lease(&s, "ses", 10, 4, at_ms(300)).await, 1, "the budget's last one");
    assert_eq!(lease(&s, "ses", 10, 4, at_ms(400)).await, 0, "spent");
    assert_eq!(lease(&s, "ses", 10, 1, at_ms(500)).await, 0, "still spent");
    assert_eq!(acquire(&s, "ses", 10, at_ms(600)).await, Pace::Wait(Duration::from_millis(400)), "acquire sees it spent");
    // The next second: all of it again, and a lease over the whole budget gets the budget.
    assert_eq!(lease(&s, "ses", 10, 25, at_ms(1000)).await, 10);
    assert_eq!(lease(&s, "ses", 10, 1, at_ms(1999)).await, 0);
    assert_eq!(lease(&s, "ses", 10, 3, at_ms(2000)).await, 3);
    // A rate of 0 is taken as 1, as by acquire.
    assert_eq!(lease(&s, "tiny", 0, 5, at_ms(3000)).await, 1);
}

pub async fn rate_limits_lease_keys_are_independent(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(lease(&s, "ses", 3, 3, at_ms(0)).await, 3);
    assert_eq!(lease(&s, "twilio", 2, 5, at_ms(10)).await, 2, "another key has its own budget");
    assert_eq!(lease(&s, "ses", 3, 1, at_ms(20)).await, 0, "ses is spent");
    assert_eq!(lease(&s, "twilio", 2, 1, at_ms(30)).await, 0, "and so is twilio now");
    assert_eq!(lease(&s, "sendgrid", 100, 10, at_ms(40)).await, 10);
}

/// Leases racing for one budget (from every instance at once) are granted exactly the budget
/// between them, never more.
pub async fn rate_limits_concurrent_leases_never_sum_over_the_budget(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let (per_second, wanted) = (20, 3);
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (limiter, barrier) = (s.rate_limits.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            limiter.lease("race", per_second, wanted, at_ms(500)).await.expect("lease")
        }));
    }
    let mut grants = Vec::new();
    for task in tasks {
        grants.push(task.await.expect("task"));
    }
    assert!(grants.iter().all(|g| *g <= wanted), "{grants:?}");
    assert_eq!(grants.iter().sum::<u32>(), per_second, "{RACERS} leases of {wanted} share a budget of {per_second}: {grants:?}");
    assert_eq!(grants.iter().filter(|g| **g != wanted && **g != 0).count(), 1, "one lease at the edge gets a part: {grants:?}");
}

fn stored_key(hash: &str, tenant: &str, created: i64) -> crate::ports::StoredKey {
    crate::ports::StoredKey {
        key_hash: hash.repeat(64 / hash.len()),
        key_id: hash.repeat(16 / hash.len()),
        tenant: crate::domain::Tenant::parse(tenant).expect("a tenant"),
        label: Some(format!("{tenant} key")),
        created_at: at(created),
        revoked_at: None,
    }
}

/// Keys are found by hash, listed per tenant oldest first, revoked by id once.
pub async fn key_directory_finds_lists_and_revokes_keys(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(s.keys.find_key(&"a".repeat(64)).await.expect("find_key"), None);
    let (a, b, c) = (stored_key("a", "acme", 20), stored_key("b", "globex", 10), stored_key("c", "acme", 5));
    for k in [&a, &b, &c] {
        s.keys.put_key(k).await.expect("put_key");
    }
    assert_eq!(s.keys.find_key(&a.key_hash).await.expect("find_key"), Some(a.clone()));
    let acme = crate::domain::Tenant::parse("acme").unwrap();
    assert_eq!(s.keys.list_keys(Some(&acme)).await.expect("list_keys"), vec![c.clone(), a.clone()]);
    assert_eq!(s.keys.list_keys(None).await.expect("list_keys").len(), 3);
    let revoked = s.keys.revoke_key(&a.key_id, at(30)).await.expect("revoke_key").expect("the key");
    assert_eq!(revoked.revoked_at, Some(at(30)));
    let again = s.keys.revoke_key(&a.key_id, at(40)).await.expect("revoke_key").expect("the key");
    assert_eq!(again.revoked_at, Some(at(30)), "revoking twice keeps the first time");
    assert!(!s.keys.find_key(&a.key_hash).await.expect("find_key").expect("kept").is_active());
    assert!(s.keys.find_key(&b.key_hash).await.expect("find_key").expect("kept").is_active());
    assert_eq!(s.keys.revoke_key("0000000000000000", at(30)).await.expect("revoke_key"), None);
}

pub async fn key_directory_keeps_tenant_settings(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let acme = crate::domain::Tenant::parse("acme").unwrap();
    assert_eq!(s.keys.tenant_settings(&acme).await.expect("tenant_settings"), None);
    let settings = crate::ports::TenantSettings { email_from: Some("Acme <no-reply@acme.example>".into()), sms_sender_id: Some("ACME".into()) };
    s.keys.put_tenant_settings(&acme, &settings).await.expect("put_tenant_settings");
    assert_eq!(s.keys.tenant_settings(&acme).await.expect("tenant_settings"), Some(settings));
    assert_eq!(s.keys.tenant_settings(&crate::domain::Tenant::parse("globex").unwrap()).await.expect("tenant_settings"), None);
    assert_eq!(s.keys.find_key(&"a".repeat(64)).await.expect("find_key"), None, "settings are not keys");
    assert!(s.keys.list_keys(None).await.expect("list_keys").is_empty(), "nor listed as keys");
}
