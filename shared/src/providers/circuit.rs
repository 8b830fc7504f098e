//! A circuit breaker per provider: stop calling a provider that keeps failing, and try it again
//! with one probe call once it has had time to recover.
//!
//! - **Closed** (normal): every call goes through. `failure_threshold` consecutive transient
//!   failures (errors, timeouts, 5xx) in a row open it; any answer that shows the provider is
//!   working (a success, or a permanent rejection of one message) resets the count.
//! - **Open**: no call goes through for `open_for`; the failover skips the provider.
//! - **Half-open**: once `open_for` has passed, exactly one call at a time is let through as a
//!   probe: its success closes the breaker, its failure opens it again for another `open_for`.
//!   A probe that never reports back (its caller was cancelled or the function timed out) holds
//!   the slot for `open_for` at most, then another call may probe.
//!
//! A throttled call ("slow down" from the provider, or our own pacing before any call) says
//! nothing about the provider's health: [`CircuitBreaker::record_inconclusive`] leaves the count
//! alone and frees the probe slot.
//!
//! **State is in process**: each Lambda instance (and the local stack) keeps its own breakers,
//! in memory, with no shared state and no extra AWS call on the send path. An instance learns
//! about an outage from its own calls (`failure_threshold` of them), and a new instance starts
//! closed; with a handful of warm instances, that costs a handful of failed calls per outage,
//! which the retry budget absorbs.
//!
//! Time comes from the caller (`now`, from a [`crate::ports::Clock`]), so the breaker itself
//! holds no clock and tests step time explicitly.

use jiff::Timestamp;
use std::sync::Mutex;
use std::time::Duration;

/// Consecutive transient failures that open the breaker, by default.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// How long an open breaker stays open before a probe, by default.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive transient failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long it stays open before one probe call is let through.
    pub open_for: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self { failure_threshold: DEFAULT_FAILURE_THRESHOLD, open_for: DEFAULT_OPEN_FOR }
    }
}

/// What the breaker does with the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused until `open_for` has passed.
    Open,
    /// One probe call may go through (or is under way).
    HalfOpen,
}

#[derive(Clone, Copy, Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { since: Timestamp },
    /// `probe`: when the call holding the probe slot was let through, if one is.
    HalfOpen { probe: Option<Timestamp> },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: CircuitConfig,
    inner: Mutex<Inner>,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new(CircuitConfig::default())
    }
}

impl CircuitBreaker {
    pub fn new(config: CircuitConfig) -> Self {
        let config = CircuitConfig { failure_threshold: config.failure_threshold.max(1), ..config };
        Self { config, inner: Mutex::new(Inner::Closed { failures: 0 }) }
    }

    pub fn config(&self) -> CircuitConfig {
        self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a plain value, valid whatever a panicking holder was doing.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `open_for` has passed since `since` (a clock stepping back counts as no time).
    fn elapsed(&self, since: Timestamp, now: Timestamp) -> bool {
        Duration::try_from(now.duration_since(since)).is_ok_and(|d| d >= self.config.open_for)
    }

    /// May a call go through now? When half-open, `true` reserves the one probe slot: the caller
    /// must then report the call's outcome (`record_*`).
    pub fn allow(&self, now: Timestamp) -> bool {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => true,
            Inner::Open { since } | Inner::HalfOpen { probe: Some(since) } if !self.elapsed(since, now) => false,
            // Open long enough, a free probe slot, or a probe that never reported back.
            Inner::Open { .. } | Inner::HalfOpen { .. } => {
                *inner = Inner::HalfOpen { probe: Some(now) };
                true
            }
        }
    }

    /// The provider answered as a working provider does: closes a half-open breaker, resets the
    /// failure count of a closed one. A late success while open (a call let through before it
    /// opened) changes nothing: the probe decides.
    pub fn record_success(&self) {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } | Inner::HalfOpen { .. } => *inner = Inner::Closed { failures: 0 },
            Inner::Open { .. } => {}
        }
    }

    /// A transient failure or timeout: counts toward opening a closed breaker, reopens a
    /// half-open one. While open, the open period keeps its start.
    pub fn record_failure(&self, now: Timestamp) {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { failures } if failures + 1 < self.config.failure_threshold => {
                *inner = Inner::Closed { failures: failures + 1 };
            }
            Inner::Closed { .. } | Inner::HalfOpen { .. } => *inner = Inner::Open { since: now },
            Inner::Open { .. } => {}
        }
    }

    /// A call that said nothing about the provider's health (throttled): the failure count stays
    /// as it is, and a half-open breaker's probe slot is freed for the next call.
    pub fn record_inconclusive(&self) {
        let mut inner = self.lock();
        if let Inner::HalfOpen { .. } = *inner {
            *inner = Inner::HalfOpen { probe: None };
        }
    }

    /// The state as of `now` (an open breaker whose time is up reads half-open); reserves nothing.
    pub fn state(&self, now: Timestamp) -> CircuitState {
        match *self.lock() {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { since } if !self.elapsed(since, now) => CircuitState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ports::Clock;

    /// A clock that stands still until stepped.
    pub(crate) struct StepClock(Mutex<Timestamp>);

    impl StepClock {
        pub(crate) fn new() -> Self {
            Self(Mutex::new("2026-11-22T10:00:00.250Z".parse().unwrap()))
        }

        pub(crate) fn advance(&self, d: Duration) {
            let mut t = self.0.lock().unwrap();
            *t = t.checked_add(d).unwrap();
        }
    }

    impl Clock for StepClock {
        fn now(&self) -> Timestamp {
            *self.0.lock().unwrap()
        }
    }

    fn breaker(failure_threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(CircuitConfig { failure_threshold, open_for: Duration::from_secs(30) })
    }

    /// Lets `n` calls through and fails each.
    fn fail(b: &CircuitBreaker, clock: &StepClock, n: u32) {
        for _ in 0..n {
            assert!(b.allow(clock.now()));
            b.record_failure(clock.now());
        }
    }

    #[test]
    fn defaults_are_five_failures_and_thirty_seconds() {
        assert_eq!(CircuitBreaker::default().config(), CircuitConfig { failure_threshold: 5, open_for: Duration::from_secs(30) });
        assert_eq!(CircuitBreaker::new(CircuitConfig { failure_threshold: 0, ..CircuitConfig::default() }).config().failure_threshold, 1);
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let clock = StepClock::new();
        let b = breaker(5);
        fail(&b, &clock, 4);
        assert_eq!(b.state(clock.now()), CircuitState::Closed);
        fail(&b, &clock, 1);
        assert_eq!(b.state(clock.now()), CircuitState::Open);
        assert!(!b.allow(clock.now()));
    }

    #[test]
    fn a_success_resets_the_count() {
        let clock = StepClock::new();
        let b = breaker(3);
        fail(&b, &clock, 2);
        b.record_success();
        fail(&b, &clock, 2);
        assert_eq!(b.state(clock.now()), CircuitState::Closed, "not three in a row");
        fail(&b, &clock, 1);
        assert_eq!(b.state(clock.now()), CircuitState::Open);
    }

    #[test]
    fn throttling_neither_counts_nor_resets() {
        let clock = StepClock::new();
        let b = breaker(3);
        fail(&b, &clock, 2);
        for _ in 0..10 {
            assert!(b.allow(clock.now()));
            b.record_inconclusive();
        }
        assert_eq!(b.state(clock.now()), CircuitState::Closed);
        fail(&b, &clock, 1);
        assert_eq!(b.state(clock.now()), CircuitState::Open);
    }

    #[test]
    fn stays_open_for_its_period_then_lets_exactly_one_probe_through() {
        let clock = StepClock::new();
        let b = breaker(1);
        fail(&b, &clock, 1);
        clock.advance(Duration::from_millis(29_999));
        assert_eq!(b.state(clock.now()), CircuitState::Open);
        assert!(!b.allow(clock.now()));

        clock.advance(Duration::from_millis(1));
        assert_eq!(b.state(clock.now()), CircuitState::HalfOpen);
        assert!(b.allow(clock.now()), "the probe");
        assert!(!b.allow(clock.now()), "one probe at a time");
        clock.advance(Duration::from_secs(5));
        assert!(!b.allow(clock.now()), "still one probe at a time");
        assert_eq!(b.state(clock.now()), CircuitState::HalfOpen);
    }

    #[test]
    fn a_successful_probe_closes() {
        let clock = StepClock::new();
        let b = breaker(2);
        fail(&b, &clock, 2);
        clock.advance(Duration::from_secs(30));
        assert!(b.allow(clock.now()));
        b.record_success();
        assert_eq!(b.state(clock.now()), CircuitState::Closed);
        assert!(b.allow(clock.now()) && b.allow(clock.now()), "everything goes through again");
        fail(&b, &clock, 1);
        assert_eq!(b.state(clock.now()), CircuitState::Closed, "the count started over");
    }

    #[test]
    fn a_failed_probe_opens_again_for_a_full_period() {
        let clock = StepClock::new();
        let b = breaker(2);
        fail(&b, &clock, 2);
        clock.advance(Duration::from_secs(31));
        assert!(b.allow(clock.now()));
        b.record_failure(clock.now());
        assert_eq!(b.state(clock.now()), CircuitState::Open);
        clock.advance(Duration::from_secs(29));
        assert!(!b.allow(clock.now()));
        clock.advance(Duration::from_secs(1));
        assert!(b.allow(clock.now()), "the next probe");
    }

    #[test]
    fn a_throttled_probe_frees_the_slot() {
        let clock = StepClock::new();
        let b = breaker(1);
        fail(&b, &clock, 1);
        clock.advance(Duration::from_secs(30));
        assert!(b.allow(clock.now()));
        b.record_inconclusive();
        assert_eq!(b.state(clock.now()), CircuitState::HalfOpen);
        assert!(b.allow(clock.now()), "the next call probes");
        assert!(!b.allow(clock.now()));
    }

    #[test]
    fn a_probe_that_never_reports_back_holds_the_slot_for_one_period() {
        let clock = StepClock::new();
        let b = breaker(1);
        fail(&b, &clock, 1);
        clock.advance(Duration::from_secs(30));
        assert!(b.allow(clock.now()), "a probe whose caller is then cancelled");
        clock.advance(Duration::from_secs(29));
        assert!(!b.allow(clock.now()));
        clock.advance(Duration::from_secs(1));
        assert!(b.allow(clock.now()), "another probe");
    }

    #[test]
    fn late_answers_while_open_change_nothing() {
        let clock = StepClock::new();
        let b = breaker(1);
        fail(&b, &clock, 1);
        clock.advance(Duration::from_secs(20));
        b.record_success();
        b.record_failure(clock.now());
        assert_eq!(b.state(clock.now()), CircuitState::Open);
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.state(clock.now()), CircuitState::HalfOpen, "the open period kept its start");
    }
}
