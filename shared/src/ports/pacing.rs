//! Sending rates shared by every instance of a function (a provider's messages per second hold
//! across all concurrent Lambda invocations): DynamoDB on AWS, in process locally.

use async_trait::async_trait;
use jiff::Timestamp;
use std::time::Duration;

use super::StoreError;

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
