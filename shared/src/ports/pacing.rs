//! Sending rates shared by every instance of a function (a provider's messages per second hold
//! across all concurrent Lambda invocations): DynamoDB on AWS, in process locally.

use async_trait::async_trait;
use jiff::Timestamp;
use std::time::Duration;

use super::StoreError;

mod leased;
pub use leased::{LeasedLimiter, block};

/// What the limiter answers for one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Within the rate: send now.
    Go,
    /// The rate is used up: try again after this long (the start of the next window).
    Wait(Duration),
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one send from `key`'s budget of `per_second` messages in the second `now` falls
    /// in, or says how long to wait for the next one. `key` names a provider (`ses`, `twilio`…).
    async fn acquire(&self, key: &str, per_second: u32, now: Timestamp) -> Result<Pace, StoreError>;

    /// Takes up to `wanted` sends at once from `key`'s budget of `per_second` in the second `now`
    /// falls in and answers how many it got (`0..=wanted`): all of them within the budget, the
    /// rest of the budget at its edge, none once it is spent. What [`LeasedLimiter`] leases its
    /// blocks with: one write for the whole block. Shares the budget with [`acquire`]; a
    /// `per_second` of 0 is taken as 1, and `wanted` 0 takes (and writes) nothing.
    ///
    /// [`acquire`]: RateLimiter::acquire
    async fn lease(&self, key: &str, per_second: u32, wanted: u32, now: Timestamp) -> Result<u32, StoreError>;
}

/// What a lease of `wanted` answers when the budget's count stood at `before` (the count may
/// overshoot the budget: only what was under it is granted).
pub fn granted(per_second: u32, before: u64, wanted: u32) -> u32 {
    u64::from(per_second.max(1)).saturating_sub(before).min(u64::from(wanted)) as u32
}

/// How long from `now` to the start of the next whole second (epoch seconds): more than zero,
/// at most one second. What a limiter whose budget for `now`'s second is spent answers.
pub fn until_next_second(now: Timestamp) -> Duration {
    let next = Timestamp::from_second(now.as_second().saturating_add(1)).unwrap_or(Timestamp::MAX);
    Duration::try_from(next.duration_since(now)).unwrap_or(Duration::from_secs(1)).clamp(Duration::from_nanos(1), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_second_is_at_most_a_second_away() {
        let whole = Timestamp::from_second(1_700_000_000).unwrap();
        assert_eq!(until_next_second(whole), Duration::from_secs(1));
        let later = whole.checked_add(Duration::from_millis(250)).unwrap();
        assert_eq!(until_next_second(later), Duration::from_millis(750));
        let last = whole.checked_add(Duration::from_nanos(999_999_999)).unwrap();
        assert_eq!(until_next_second(last), Duration::from_nanos(1));
    }
}
