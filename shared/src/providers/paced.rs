//! `PacedSender`: one provider held to its sending rate (messages per second), shared by every
//! instance of the function through a [`RateLimiter`] (DynamoDB on AWS, in process locally).
//!
//! Before each call it takes one send from the provider's budget for the current second:
//!
//! | the limiter answers | the sender answers |
//! |---|---|
//! | `Pace::Go` | whatever the provider answers |
//! | `Pace::Wait(d)` | `Throttled { retry_after: Some(d) }`, **without calling the provider** |
//! | an error | `Transient`: never sends unpaced |
//!
//! A send beyond the rate waits instead of failing: `Throttled` is not an attempt, and the send
//! handler puts the job back on its queue for `d` (raised to SQS's one-second granularity), where
//! it holds its user's place in order.
//!
//! A limiter error spends an attempt (it is `Transient`) and, inside a failover, counts toward
//! that provider's circuit, since the failover cannot tell it from a provider error; a limiter
//! outage long enough to matter is an outage of the store the whole pipeline depends on.
//!
//! ## Composition: pacing inside failover
//!
//! Each provider of a channel is paced by its own rate, and the failover runs over the paced
//! providers:
//!
//! ```text
//! FailoverSender ─┬─ Provider "ses"      = PacedSender(SesEmailSender,      key "ses",      14/s)  + breaker
//!                 └─ Provider "sendgrid" = PacedSender(SendGridEmailSender, key "sendgrid", 100/s) + breaker
//! ```
//!
//! ```ignore
//! let ses = PacedSender::new(Arc::new(ses_sender), limiter.clone(), "ses", 14, clock.clone());
//! let sendgrid = PacedSender::new(Arc::new(sendgrid_sender), limiter.clone(), "sendgrid", 100, clock.clone());
//! let email = FailoverSender::new(
//!     vec![Provider::new("ses", Arc::new(ses)), Provider::new("sendgrid", Arc::new(sendgrid))],
//!     clock.clone(),
//! );
//! ```
//!
//! Why this way round: a rate belongs to a provider account, so each provider has its own key and
//! budget; when the first provider's budget for this second is spent, the failover takes its
//! `Throttled` as "try the next provider", so overflow beyond the first provider's rate goes to
//! the second, and only when every provider's budget is spent does the job wait (with the
//! shortest of their waits). A paced `Throttled` never reached the provider, and the breaker does
//! not count throttling, so pacing cannot open a circuit. (Pacing outside the failover would
//! hold every provider to one rate, and charge the budget even when the failover skips a
//! provider.) The one consequence to know: a second provider also takes the first one's
//! overflow, not only its outages.

use async_trait::async_trait;
use std::sync::Arc;

use crate::ports::{ChannelSender, Clock, Delivery, Pace, ProviderReceipt, RateLimiter, SendError};

pub struct PacedSender {
    inner: Arc<dyn ChannelSender>,
    limiter: Arc<dyn RateLimiter>,
    key: String,
    per_second: u32,
    clock: Arc<dyn Clock>,
}

impl PacedSender {
    /// `key`: the provider's name, which names its budget in the limiter (one budget per provider
    /// account, whichever function sends). `per_second`: the provider's sending rate.
    ///
    /// # Panics
    /// When `per_second` is 0 (nothing could ever be sent): a configuration mistake, caught at
    /// cold start.
    pub fn new(inner: Arc<dyn ChannelSender>, limiter: Arc<dyn RateLimiter>, key: impl Into<String>, per_second: u32, clock: Arc<dyn Clock>) -> Self {
        assert!(per_second > 0, "a sending rate of 0 messages per second sends nothing");
        Self { inner, limiter, key: key.into(), per_second, clock }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }
}

#[async_trait]
impl ChannelSender for PacedSender {
    async fn send(&self, delivery: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        match self.limiter.acquire(&self.key, self.per_second, self.clock.now()).await {
            Ok(Pace::Go) => self.inner.send(delivery).await,
            Ok(Pace::Wait(wait)) => {
                tracing::debug!(notification_id = %delivery.notification_id, provider = %self.key, ?wait, "sending rate used up; waiting");
                Err(SendError::Throttled { retry_after: Some(wait) })
            }
            Err(e) => {
                tracing::warn!(notification_id = %delivery.notification_id, provider = %self.key, error = %e, "rate limiter failed; not sending unpaced");
                Err(SendError::Transient(format!("{}: rate limiter unavailable: {e}", self.key)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::StoreError;
    use crate::providers::circuit::tests::StepClock;
    use crate::providers::failover::tests::{Fake, Fixture};
    use crate::providers::failover::{FailoverSender, Provider};
    use jiff::Timestamp;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Counts sends per key and whole second; the next second starts a new budget.
    #[derive(Default)]
    struct WindowLimiter {
        used: Mutex<HashMap<(String, i64), u32>>,
        failing: bool,
    }

    #[async_trait]
    impl RateLimiter for WindowLimiter {
        async fn acquire(&self, key: &str, per_second: u32, now: Timestamp) -> Result<Pace, StoreError> {
            if self.failing {
                return Err(StoreError::Unavailable("limiter table down".into()));
            }
            let mut used = self.used.lock().unwrap();
            let count = used.entry((key.to_owned(), now.as_second())).or_default();
            if *count < per_second {
                *count += 1;
                return Ok(Pace::Go);
            }
            let next_second = Timestamp::from_second(now.as_second() + 1).unwrap();
            Ok(Pace::Wait(Duration::try_from(next_second.duration_since(now)).unwrap()))
        }

        async fn lease(&self, key: &str, per_second: u32, wanted: u32, now: Timestamp) -> Result<u32, StoreError> {
            if self.failing {
                return Err(StoreError::Unavailable("limiter table down".into()));
            }
            let mut used = self.used.lock().unwrap();
            let count = used.entry((key.to_owned(), now.as_second())).or_default();
            let granted = per_second.saturating_sub(*count).min(wanted);
            *count += granted;
            Ok(granted)
        }
    }

    fn paced(provider: &Arc<Fake>, limiter: &Arc<WindowLimiter>, key: &str, per_second: u32, clock: &Arc<StepClock>) -> PacedSender {
        PacedSender::new(provider.clone(), limiter.clone(), key, per_second, clock.clone())
    }

    #[tokio::test]
    async fn a_burst_beyond_the_rate_waits_for_the_next_second_without_calling_the_provider() {
        // The clock stands at hh:mm:ss.250.
        let clock = Arc::new(StepClock::new());
        let limiter = Arc::new(WindowLimiter::default());
        let provider = Fake::always("twilio", Ok(()));
        let sender = paced(&provider, &limiter, "twilio", 3, &clock);
        let f = Fixture::new();

        let mut sent = 0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            match sender.send(f.delivery()).await {
                Ok(receipt) => {
                    assert_eq!(receipt.provider, "twilio");
                    sent += 1;
                }
                Err(SendError::Throttled { retry_after }) => waits.push(retry_after),
                Err(e) => panic!("unexpected {e:?}"),
            }
        }

        assert_eq!(sent, 3);
        assert_eq!(waits, vec![Some(Duration::from_millis(750)); 7], "until the next second");
        assert_eq!(provider.calls(), 3, "throttled sends never reach the provider");

        // The next second brings a new budget.
        clock.advance(Duration::from_millis(750));
        assert!(sender.send(f.delivery()).await.is_ok());
        assert_eq!(provider.calls(), 4);
    }

    #[tokio::test]
    async fn a_limiter_failure_is_transient_and_sends_nothing() {
        let clock = Arc::new(StepClock::new());
        let limiter = Arc::new(WindowLimiter { failing: true, ..WindowLimiter::default() });
        let provider = Fake::always("twilio", Ok(()));
        let sender = paced(&provider, &limiter, "twilio", 3, &clock);
        let f = Fixture::new();

        let Err(SendError::Transient(why)) = sender.send(f.delivery()).await else { panic!("transient") };
        assert!(why.starts_with("twilio: rate limiter unavailable"), "{why}");
        assert_eq!(provider.calls(), 0);
    }

    #[tokio::test]
    async fn provider_errors_pass_through() {
        let clock = Arc::new(StepClock::new());
        let limiter = Arc::new(WindowLimiter::default());
        let provider = Fake::always("twilio", Err(SendError::Permanent("twilio error 21211: HTTP 400 Bad Request".into())));
        let sender = paced(&provider, &limiter, "twilio", 3, &clock);
        let f = Fixture::new();
        assert_eq!(sender.send(f.delivery()).await, Err(SendError::Permanent("twilio error 21211: HTTP 400 Bad Request".into())));
    }

    /// Paced providers inside a failover: each has its own budget, overflow goes to the next,
    /// and the job waits only once every budget is spent.
    #[tokio::test]
    async fn inside_a_failover_each_provider_keeps_its_own_rate() {
        let clock = Arc::new(StepClock::new());
        let limiter = Arc::new(WindowLimiter::default());
        let (sns, twilio) = (Fake::always("sns", Ok(())), Fake::always("twilio", Ok(())));
        let sender = FailoverSender::new(
            vec![
                Provider::new("sns", Arc::new(paced(&sns, &limiter, "sns", 2, &clock))),
                Provider::new("twilio", Arc::new(paced(&twilio, &limiter, "twilio", 3, &clock))),
            ],
            clock.clone(),
        );
        let f = Fixture::new();

        let mut by = Vec::new();
        for _ in 0..7 {
            by.push(match sender.send(f.delivery()).await {
                Ok(receipt) => receipt.provider,
                Err(SendError::Throttled { retry_after }) => format!("wait {retry_after:?}"),
                Err(e) => panic!("unexpected {e:?}"),
            });
        }

        assert_eq!(by, ["sns", "sns", "twilio", "twilio", "twilio", "wait Some(750ms)", "wait Some(750ms)"]);
        assert_eq!((sns.calls(), twilio.calls()), (2, 3));
        assert!(sender.circuits().iter().all(|(_, state)| *state == crate::providers::circuit::CircuitState::Closed), "pacing opens no circuit");
    }
}
