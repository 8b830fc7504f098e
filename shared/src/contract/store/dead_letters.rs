//! The dead-letter store's checks (part of the store contract, `run_all` runs them).

use jiff::Timestamp;

use super::{StoreFixture, StoreHandles, at};
use crate::ports::{DeadLetter, DeadLetterReason, Page};

const SEND_DLQ: &str = "send-push-fast-dlq.fifo";
const EVENTS_DLQ: &str = "events-fast-dlq.fifo";

fn letter(id: &str, queue: &str, first: i64) -> DeadLetter {
    DeadLetter {
        id: id.into(),
        queue: queue.into(),
        notification_id: Some(format!("ntf_{id}")),
        event_id: Some(format!("evt-{id}")),
        // Tenant-scoped ids are stored as written.
        user_id: Some("acme#u-1".into()),
        reason: DeadLetterReason::RetriesExhausted,
        first_failure_at: at(first),
        last_failure_at: at(first),
        attempts: 4,
        group_id: Some("acme#u-1".into()),
        body: r#"{"notification_id":"ntf_x","message":{"text":"Ünïcode ✓"}}"#.into(),
    }
}

async fn record(s: &StoreHandles, l: &DeadLetter) {
    s.dead_letters.record_dead_letter(l).await.expect("record_dead_letter");
}

async fn get(s: &StoreHandles, id: &str) -> Option<DeadLetter> {
    s.dead_letters.get_dead_letter(id).await.expect("get_dead_letter")
}

async fn page(s: &StoreHandles, queue: Option<&str>, limit: usize, cursor: Option<&str>) -> Page<DeadLetter> {
    s.dead_letters.list_dead_letters(queue, limit, cursor).await.expect("list_dead_letters")
}

async fn all_pages(s: &StoreHandles, queue: Option<&str>, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let p = page(s, queue, limit, cursor.as_deref()).await;
        pages.push(p.items.into_iter().map(|l| l.id).collect());
        cursor = p.next;
        if cursor.is_none() {
            return pages;
        }
    }
    panic!("paging never ends");
}

pub async fn dead_letters_are_recorded_once_per_id_keeping_the_first_failure(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(get(&s, "dl_a").await, None, "an empty store holds none");
    let first = letter("dl_a", SEND_DLQ, 10);
    record(&s, &first).await;
    assert_eq!(get(&s, "dl_a").await.as_ref(), Some(&first), "read back with every field");

    // Recorded again (a redelivery, or the job given up on again): one record, first failure kept.
    let again = DeadLetter {
        last_failure_at: at(50),
        first_failure_at: at(50),
        attempts: 5,
        reason: DeadLetterReason::UnknownNotification,
        notification_id: None,
        group_id: None,
        ..first.clone()
    };
    record(&s, &again).await;
    let stored = get(&s, "dl_a").await.expect("still recorded");
    assert_eq!(stored, DeadLetter { first_failure_at: at(10), ..again.clone() }, "the rest replaced, absent fields removed");
    let listed = page(&s, None, 10, None).await;
    assert_eq!(listed.items, vec![stored.clone()], "listed once");
    assert_eq!(page(&s, Some(SEND_DLQ), 10, None).await.items, vec![stored], "and once in its queue");
}

pub async fn dead_letters_list_newest_first_in_pages_of_every_queue_or_one(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    assert_eq!(page(&s, None, 10, None).await, Page { items: vec![], next: None });
    assert_eq!(page(&s, Some(SEND_DLQ), 10, None).await, Page { items: vec![], next: None });
    for l in [
        letter("dl_1", SEND_DLQ, 10),
        letter("dl_2", EVENTS_DLQ, 20),
        letter("dl_3", SEND_DLQ, 30),
        letter("dl_4", SEND_DLQ, 30),
        letter("dl_5", EVENTS_DLQ, 50),
    ] {
        record(&s, &l).await;
    }
    // Newest first by first failure; a tie by id, descending.
    let every = vec!["dl_5", "dl_4", "dl_3", "dl_2", "dl_1"];
    assert_eq!(all_pages(&s, None, 100).await, std::slice::from_ref(&every));
    assert_eq!(all_pages(&s, None, 2).await, [vec!["dl_5", "dl_4"], vec!["dl_3", "dl_2"], vec!["dl_1"]], "each once, in order");
    assert_eq!(all_pages(&s, Some(SEND_DLQ), 2).await, [vec!["dl_4", "dl_3"], vec!["dl_1"]], "one queue's");
    assert_eq!(all_pages(&s, Some(EVENTS_DLQ), 2).await, [vec!["dl_5", "dl_2"]], "a full last page has no cursor to an empty one");
    assert_eq!(all_pages(&s, Some("deferred-dlq"), 2).await, [Vec::<String>::new()]);

    let one = page(&s, None, 0, None).await;
    assert_eq!((one.items.len(), one.next.is_some()), (1, true), "a limit of 0 is taken as 1");

    for bad in ["", "not a cursor", "%%%", "eyJ4IjoxfQ"] {
        assert_eq!(page(&s, None, 2, Some(bad)).await, Page { items: vec![], next: None }, "cursor {bad:?}");
    }
    // A cursor belongs to its listing.
    let of_queue = page(&s, Some(SEND_DLQ), 1, None).await.next.expect("a next page");
    assert_eq!(page(&s, Some(EVENTS_DLQ), 2, Some(&of_queue)).await, Page { items: vec![], next: None });
}

pub async fn dead_letters_are_removed_only_as_they_were_read(fixture: &dyn StoreFixture) {
    let s = fixture.store().await;
    let remove = |id: &'static str, at: Timestamp| {
        let s = s.clone();
        async move { s.dead_letters.remove_dead_letter(id, at).await.expect("remove_dead_letter") }
    };
    assert!(!remove("dl_none", at(10)).await, "nothing to remove");
    record(&s, &letter("dl_a", SEND_DLQ, 10)).await;
    record(&s, &letter("dl_b", SEND_DLQ, 20)).await;
    // Recorded again after it was read at 10.
    record(&s, &DeadLetter { last_failure_at: at(15), ..letter("dl_a", SEND_DLQ, 10) }).await;
    assert!(!remove("dl_a", at(10)).await, "recorded again since: kept");
    assert!(get(&s, "dl_a").await.is_some());
    assert!(remove("dl_a", at(15)).await, "removed as last recorded");
    assert_eq!(get(&s, "dl_a").await, None);
    assert!(!remove("dl_a", at(15)).await, "a second removal finds none");
    let left: Vec<String> = page(&s, None, 10, None).await.items.into_iter().map(|l| l.id).collect();
    assert_eq!(left, ["dl_b"], "gone from the list");
    let left: Vec<String> = page(&s, Some(SEND_DLQ), 10, None).await.items.into_iter().map(|l| l.id).collect();
    assert_eq!(left, ["dl_b"], "and from its queue's");
}

/// What replaying a dead letter writes: `failed` for one reason back to `pending`, attempts reset.
pub async fn notifications_failed_because_guard_and_attempt_reset(fixture: &dyn StoreFixture) {
    use crate::domain::notification::reason;
    use crate::domain::{Channel, Guard, Status, Transition};
    use crate::ports::TransitionOutcome;
    let s = fixture.store().await;
    let n = super::notification("evt-1", Channel::Push, "u-1", 0);
    assert!(s.notifications.create(&n).await.expect("create"));
    let id = &n.notification_id;
    let guard = Guard::FailedBecause(reason::RETRIES_EXHAUSTED.into());
    let back = Transition { reason: Some(None), ..Transition::to(Status::Pending, at(30)).reset_attempts() };
    let transition = |guard: Guard, change: Transition| {
        let s = s.clone();
        async move { s.notifications.transition(id, &guard, &change).await.expect("transition") }
    };
    assert!(matches!(transition(guard.clone(), back.clone()).await, TransitionOutcome::Rejected(c) if c.status == Status::Pending), "not failed");
    let any = Guard::StatusIn(vec![Status::Pending]);
    transition(any.clone(), Transition::to(Status::Pending, at(10)).count_attempt()).await;
    transition(any, Transition::to(Status::Failed, at(20)).count_attempt().reason(reason::PROVIDER_REJECTED)).await;
    assert!(
        matches!(transition(guard.clone(), back.clone()).await, TransitionOutcome::Rejected(c) if c.reason.as_deref() == Some(reason::PROVIDER_REJECTED)),
        "failed for another reason"
    );
    let failed = Guard::StatusIn(vec![Status::Failed]);
    transition(failed, Transition::to(Status::Failed, at(25)).reason(reason::RETRIES_EXHAUSTED)).await;
    let TransitionOutcome::Applied(pending) = transition(guard.clone(), back.clone()).await else { panic!("applied") };
    assert_eq!((pending.status, pending.attempts, pending.reason.clone(), pending.updated_at), (Status::Pending, 0, None, at(30)));
    assert_eq!(s.notifications.get(id).await.expect("get"), Some(pending), "as stored");
    assert!(matches!(transition(guard, back).await, TransitionOutcome::Rejected(_)), "once");
}
