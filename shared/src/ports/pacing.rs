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
