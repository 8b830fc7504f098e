//! `LeasedLimiter`: a [`RateLimiter`] that takes the shared budget in blocks, so that an instance
//! pays one shared write (a DynamoDB `UpdateItem` on AWS) per block of sends instead of one per
//! send, while every instance together still never goes over the rate.
//!
//! Per key, the instance keeps an allowance for the current second. [`acquire`] spends from it;
//! when it is empty, one [`lease`] of [`block`]`(per_second)` tokens refills it from the shared
//! limiter. Tokens left over die with their second, never carried into the next: the shared
//! limiter grants at most `per_second` per second across every instance, and an instance only
//! spends in a second what was granted for that second, so the global rate holds. The price is
//! under-admission, never over-admission: each instance may hold up to `block − 1` granted,
//! unused tokens a second that no other instance can have.
//!
//! A lease that grants less than it asked for found the second's budget spent (the shared count
//! reached the rate), so the key answers `Wait` for the rest of that second without another
//! write: over the rate costs one write a second, not one a refusal.
//!
//! ## Concurrency
//!
//! One `std::sync::Mutex` over the map of keys, held only to find a key's slot (never across an
//! await), and a `tokio::sync::Mutex` per key, held across that key's lease on purpose: while one
//! acquirer leases, the key's other acquirers in this instance wait for its answer (one round
//! trip, which they would each have spent leasing themselves) and then spend from the fresh
//! allowance, instead of leasing blocks nobody needs. Other keys are never held up. Outside a
//! lease the per-key lock is held for a few instructions.
//!
//! [`acquire`]: RateLimiter::acquire
//! [`lease`]: RateLimiter::lease

use async_trait::async_trait;
use jiff::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Pace, RateLimiter, until_next_second};
use crate::ports::StoreError;

/// The largest block leased at once: with a rate of 1 000/s or more a block is 100 sends, about
/// ten writes a second per busy instance.
pub const MAX_BLOCK: u32 = 100;

/// How many sends one lease asks for at a rate of `per_second`: a tenth of the rate, rounded up,
/// at least 1 (a rate of 10/s or less leases one at a time, exactly as without leasing) and at
/// most [`MAX_BLOCK`]. A tenth keeps the worst under-admission bounded: ten instances together
/// can leave at most the whole second's budget leased and unused. E.g. 100/s (ingest's default
/// per-key rate): 10; SES's 14/s: 2.
pub fn block(per_second: u32) -> u32 {
    per_second.max(1).div_ceil(10).clamp(1, MAX_BLOCK)
}

/// How many keys' slots are kept before slots of past seconds nobody holds are dropped (their
/// tokens died with their second: dropping them loses nothing).
const PRUNE_AT: usize = 256;

/// One key's allowance in this instance.
#[derive(Debug)]
struct Allowance {
    /// The epoch second the allowance belongs to.
    second: i64,
    /// Granted tokens not spent yet.
    left: u32,
    /// A lease of this second got less than it asked: the shared budget is spent.
    spent: bool,
}

type Slot = Arc<tokio::sync::Mutex<Allowance>>;

/// Leases blocks of a shared [`RateLimiter`]'s budget; see the module documentation.
pub struct LeasedLimiter {
    shared: Arc<dyn RateLimiter>,
    slots: Mutex<HashMap<String, Slot>>,
}

impl LeasedLimiter {
    pub fn new(shared: Arc<dyn RateLimiter>) -> Self {
        Self { shared, slots: Mutex::new(HashMap::new()) }
    }

    /// `key`'s slot, made on first use.
    fn slot(&self, key: &str, second: i64) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        if slots.len() >= PRUNE_AT {
            // Unheld (only the map's reference) and of a past second.
            slots.retain(|_, slot| Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |a| a.second >= second));
        }
        let fresh = Allowance { second: i64::MIN, left: 0, spent: false };
        slots.entry(key.to_owned()).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(fresh))).clone()
    }
}

#[async_trait]
impl RateLimiter for LeasedLimiter {
    async fn acquire(&self, key: &str, per_second: u32, now: Timestamp) -> Result<Pace, StoreError> {
        let second = now.as_second();
        let slot = self.slot(key, second);
        let mut allowance = slot.lock().await;
        if second < allowance.second {
            // This caller read the clock before another moved the key to the next second: it
            // takes its one send straight from the shared budget of its own second.
            drop(allowance);
            return Ok(match self.shared.lease(key, per_second, 1, now).await? {
                0 => Pace::Wait(until_next_second(now)),
                _ => Pace::Go,
            });
        }
        if second > allowance.second {
            // Last second's leftovers die here.
            *allowance = Allowance { second, left: 0, spent: false };
        }
        if allowance.left == 0 && !allowance.spent {
            let wanted = block(per_second);
            let granted = self.shared.lease(key, per_second, wanted, now).await?.min(wanted);
            allowance.left = granted;
            allowance.spent = granted < wanted;
        }
        if allowance.left == 0 {
            return Ok(Pace::Wait(until_next_second(now)));
        }
        allowance.left -= 1;
        Ok(Pace::Go)
    }

    /// Straight from the shared budget (the local allowance is this decorator's own).
    async fn lease(&self, key: &str, per_second: u32, wanted: u32, now: Timestamp) -> Result<u32, StoreError> {
        self.shared.lease(key, per_second, wanted, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::store::MemoryStore;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::Duration;

    /// A stepping clock: each `tick` moves it on by a step.
    struct Steps {
        now: Mutex<Timestamp>,
    }

    impl Steps {
        /// Starting at a whole second.
        fn new() -> Self {
            Self { now: Mutex::new(Timestamp::from_second(1_700_000_000).unwrap()) }
        }

        fn now(&self) -> Timestamp {
            *self.now.lock().unwrap()
        }

        fn tick(&self, step: Duration) -> Timestamp {
            let mut now = self.now.lock().unwrap();
            *now = now.checked_add(step).unwrap();
            *now
        }
    }

    /// The shared limiter (a `MemoryStore`), counting its writes; it can be made to fail, and it
    /// yields once inside each lease so that concurrent acquirers really interleave.
    #[derive(Default)]
    struct Shared {
        store: MemoryStore,
        writes: AtomicU32,
        failing: AtomicBool,
    }

    impl Shared {
        fn writes(&self) -> u32 {
            self.writes.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl RateLimiter for Shared {
        async fn acquire(&self, key: &str, per_second: u32, now: Timestamp) -> Result<Pace, StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.store.acquire(key, per_second, now).await
        }

        async fn lease(&self, key: &str, per_second: u32, wanted: u32, now: Timestamp) -> Result<u32, StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("rate table down".into()));
            }
            self.store.lease(key, per_second, wanted, now).await
        }
    }

    fn leased(shared: &Arc<Shared>) -> LeasedLimiter {
        LeasedLimiter::new(shared.clone())
    }

    #[test]
    fn blocks_are_a_tenth_of_the_rate_between_one_and_the_cap() {
        for (rate, expected) in [(0, 1), (1, 1), (10, 1), (11, 2), (14, 2), (100, 10), (999, 100), (1_000, 100), (1_000_000, 100), (u32::MAX, 100)] {
            assert_eq!(block(rate), expected, "block({rate})");
        }
    }

    #[tokio::test]
    async fn n_acquisitions_in_a_second_cost_one_write_per_block() {
        let rate = 100;
        assert_eq!(block(rate), 10);
        for n in [1_u32, 9, 10, 11, 35, 100] {
            let shared = Arc::new(Shared::default());
            let limiter = leased(&shared);
            let clock = Steps::new();
            for i in 0..n {
                let now = clock.tick(Duration::from_millis(5));
                assert_eq!(limiter.acquire("ingest:k", rate, now).await.unwrap(), Pace::Go, "acquisition {i} of {n}");
            }
            assert_eq!(shared.writes(), n.div_ceil(block(rate)), "{n} acquisitions");
        }
    }

    #[tokio::test]
    async fn a_spent_second_waits_for_the_next_without_writing_again() {
        let shared = Arc::new(Shared::default());
        let limiter = leased(&shared);
        let clock = Steps::new();
        let (rate, mut gone) = (25, 0);
        for _ in 0..25 {
            assert_eq!(limiter.acquire("ses", rate, clock.tick(Duration::from_millis(10))).await.unwrap(), Pace::Go);
            gone += 1;
        }
        assert_eq!((gone, shared.writes()), (25, 9), "blocks of 3: eight whole, the ninth granted 1 of 3");
        for _ in 0..10 {
            let now = clock.tick(Duration::from_millis(10));
            assert_eq!(limiter.acquire("ses", rate, now).await.unwrap(), Pace::Wait(until_next_second(now)));
        }
        assert_eq!(shared.writes(), 9, "the short lease told it the budget is spent: no more writes this second");
        // The next second starts afresh.
        let next = clock.tick(Duration::from_millis(650));
        assert_eq!(next.as_second(), 1_700_000_001);
        assert_eq!(limiter.acquire("ses", rate, next).await.unwrap(), Pace::Go);
        assert_eq!(shared.writes(), 10);
    }

    #[tokio::test]
    async fn the_budget_exactly_spent_waits_after_one_empty_lease() {
        let shared = Arc::new(Shared::default());
        let limiter = leased(&shared);
        let now = Steps::new().tick(Duration::from_millis(250));
        for _ in 0..20 {
            assert_eq!(limiter.acquire("k", 20, now).await.unwrap(), Pace::Go);
        }
        assert_eq!(shared.writes(), 10, "blocks of 2");
        assert_eq!(limiter.acquire("k", 20, now).await.unwrap(), Pace::Wait(Duration::from_millis(750)));
        assert_eq!(limiter.acquire("k", 20, now).await.unwrap(), Pace::Wait(Duration::from_millis(750)));
        assert_eq!(shared.writes(), 11, "one lease granted nothing; the next acquisitions know");
    }

    #[tokio::test]
    async fn two_instances_sharing_one_store_never_pass_the_rate() {
        let shared = Arc::new(Shared::default());
        let (a, b) = (leased(&shared), leased(&shared));
        let clock = Steps::new();
        let rate = 25;
        for second in 0..4 {
            let mut granted = 0;
            // 100 attempts a second, 9 ms apart, two of three on `b`.
            for i in 0..100 {
                let now = clock.tick(Duration::from_millis(9));
                assert_eq!(now.as_second(), 1_700_000_000 + second, "attempt {i}");
                let limiter = if i % 3 == 0 { &a } else { &b };
                if limiter.acquire("twilio", rate, now).await.unwrap() == Pace::Go {
                    granted += 1;
                }
            }
            assert!(granted <= rate, "second {second}: {granted} over {rate}");
            assert!(granted >= rate - 2 * (block(rate) - 1), "second {second}: at most block − 1 each left unused: {granted}");
            clock.tick(Duration::from_millis(100));
        }
    }

    #[tokio::test]
    async fn unused_tokens_die_with_their_second() {
        let shared = Arc::new(Shared::default());
        let (a, b) = (leased(&shared), leased(&shared));
        let clock = Steps::new();
        let rate = 20;
        // `a` leases a block of 2 in the first second and spends one.
        assert_eq!(a.acquire("k", rate, clock.tick(Duration::from_millis(900))).await.unwrap(), Pace::Go);
        // The next second: `b` takes the whole budget.
        let next = clock.tick(Duration::from_millis(200));
        let mut got = 0;
        while b.acquire("k", rate, next).await.unwrap() == Pace::Go {
            got += 1;
        }
        assert_eq!(got, rate);
        // `a`'s leftover of the first second is not spendable in this one.
        assert_eq!(a.acquire("k", rate, next).await.unwrap(), Pace::Wait(Duration::from_millis(900)));
    }

    #[tokio::test]
    async fn keys_have_their_own_allowances() {
        let shared = Arc::new(Shared::default());
        let limiter = leased(&shared);
        let now = Steps::new().now();
        assert_eq!(limiter.acquire("ses", 1, now).await.unwrap(), Pace::Go);
        assert!(matches!(limiter.acquire("ses", 1, now).await.unwrap(), Pace::Wait(_)));
        assert_eq!(limiter.acquire("sendgrid", 100, now).await.unwrap(), Pace::Go);
        assert_eq!(shared.writes(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_acquirers_in_one_instance_lease_once_per_block() {
        let shared = Arc::new(Shared::default());
        let limiter = Arc::new(leased(&shared));
        let now = Steps::new().now();
        let barrier = Arc::new(tokio::sync::Barrier::new(40));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (limiter, barrier) = (limiter.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    limiter.acquire("ingest:k", 100, now).await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Pace::Go);
        }
        assert_eq!(shared.writes(), 4, "40 acquisitions, blocks of 10, no lease beside another");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_instances_never_pass_the_rate() {
        let shared = Arc::new(Shared::default());
        let instances: Vec<Arc<LeasedLimiter>> = (0..4).map(|_| Arc::new(leased(&shared))).collect();
        let now = Steps::new().now();
        let barrier = Arc::new(tokio::sync::Barrier::new(200));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (limiter, barrier) = (instances[i % 4].clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    limiter.acquire("ingest:k", 100, now).await.unwrap()
                })
            })
            .collect();
        let mut granted = 0;
        for task in tasks {
            if task.await.unwrap() == Pace::Go {
                granted += 1;
            }
        }
        assert!(granted <= 100, "{granted}");
        assert!(granted >= 100 - 4 * (block(100) - 1), "{granted}");
    }

    #[tokio::test]
    async fn a_failed_lease_is_an_error_and_the_next_acquisition_leases_again() {
        let shared = Arc::new(Shared::default());
        let limiter = leased(&shared);
        let now = Steps::new().now();
        shared.failing.store(true, Ordering::SeqCst);
        assert!(matches!(limiter.acquire("k", 100, now).await, Err(StoreError::Unavailable(_))));
        shared.failing.store(false, Ordering::SeqCst);
        assert_eq!(limiter.acquire("k", 100, now).await.unwrap(), Pace::Go);
        assert_eq!(shared.writes(), 2);
    }

    #[tokio::test]
    async fn a_caller_behind_the_second_takes_its_send_straight_from_the_shared_budget() {
        let shared = Arc::new(Shared::default());
        let limiter = leased(&shared);
        let clock = Steps::new();
        let earlier = clock.tick(Duration::from_millis(990));
        let later = clock.tick(Duration::from_millis(20));
        assert_eq!(limiter.acquire("k", 100, later).await.unwrap(), Pace::Go);
        assert_eq!(limiter.acquire("k", 100, earlier).await.unwrap(), Pace::Go);
        assert_eq!(shared.writes(), 2);
        // The later second's allowance is untouched: nine more without a write.
        for _ in 0..9 {
            assert_eq!(limiter.acquire("k", 100, later).await.unwrap(), Pace::Go);
        }
        assert_eq!(shared.writes(), 2);
    }

    #[tokio::test]
    async fn slots_of_past_seconds_are_dropped_once_there_are_many() {
        let shared = Arc::new(Shared::default());
        let limiter = leased(&shared);
        let clock = Steps::new();
        for i in 0..PRUNE_AT {
            limiter.acquire(&format!("k{i}"), 100, clock.now()).await.unwrap();
        }
        clock.tick(Duration::from_secs(1));
        limiter.acquire("another", 100, clock.now()).await.unwrap();
        assert_eq!(limiter.slots.lock().unwrap().len(), 1, "only the current second's slot is kept");
    }
}
