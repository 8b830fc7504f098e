//! `FailoverSender`: one channel served by several providers in order of preference (SES then
//! SendGrid for email, SNS then Twilio for SMS), each behind its own [`CircuitBreaker`].
//!
//! For each provider in order whose breaker lets the call through:
//!
//! | the provider answers | breaker | then |
//! |---|---|---|
//! | a receipt | success | return it: its `provider` names who delivered |
//! | `Transient` (error, timeout, 5xx) | failure | try the next provider |
//! | `Throttled` | neither (inconclusive) | try the next provider |
//! | `Permanent` | success | return it at once: another provider will not make a bad address good |
//! | `Unreachable` | success | return it at once (an opted-out recipient is opted out everywhere) |
//!
//! A provider whose breaker is open is skipped without a call. When no provider delivered:
//! `Throttled` (with the shortest wait any of them asked for) if at least one was throttled and
//! none failed, so the job waits without spending an attempt; otherwise `Transient`, naming each
//! provider with what happened to it (their own error strings, which carry no addresses).
//!
//! **Why throttling does not count toward opening the breaker**: a 429 is a working provider
//! asking us to slow down, and [`super::paced::PacedSender`] answers `Throttled` for our own
//! rate without calling anyone. Neither says the provider is down; opening its circuit would
//! keep it idle for `open_for` after the burst has passed. Failing over for the one message is
//! right, though: the next provider may have room now.
//!
//! Breakers live in this process (see [`super::circuit`]): each Lambda instance keeps its own.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use super::circuit::{CircuitBreaker, CircuitConfig, CircuitState};
use crate::ports::{ChannelSender, Clock, Delivery, ProviderReceipt, SendError};

/// One provider of a channel, with its breaker.
pub struct Provider {
    /// How logs and errors name it (`ses`, `sendgrid`…); the receipt's `provider` comes from
    /// the sender itself.
    pub name: String,
    pub sender: Arc<dyn ChannelSender>,
    pub breaker: CircuitBreaker,
}

impl Provider {
    /// With a breaker of the default settings (5 failures, 30 s).
    pub fn new(name: impl Into<String>, sender: Arc<dyn ChannelSender>) -> Self {
        Self::with_breaker(name, sender, CircuitConfig::default())
    }

    pub fn with_breaker(name: impl Into<String>, sender: Arc<dyn ChannelSender>, config: CircuitConfig) -> Self {
        Self { name: name.into(), sender, breaker: CircuitBreaker::new(config) }
    }
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("name", &self.name).field("breaker", &self.breaker).finish_non_exhaustive()
    }
}

pub struct FailoverSender {
    providers: Vec<Provider>,
    clock: Arc<dyn Clock>,
}

impl FailoverSender {
    /// `providers` in order of preference.
    ///
    /// # Panics
    /// With no provider: a wiring mistake, caught at cold start.
    pub fn new(providers: Vec<Provider>, clock: Arc<dyn Clock>) -> Self {
        assert!(!providers.is_empty(), "a failover sender needs at least one provider");
        Self { providers, clock }
    }

    /// Each provider's name and breaker state, in order (for logs and health output).
    pub fn circuits(&self) -> Vec<(String, CircuitState)> {
        let now = self.clock.now();
        self.providers.iter().map(|p| (p.name.clone(), p.breaker.state(now))).collect()
    }
}

/// What happened to one provider during one send that did not deliver.
enum Miss {
    Skipped,
    Failed(String),
    Throttled(Option<Duration>),
}

#[async_trait]
impl ChannelSender for FailoverSender {
    async fn send(&self, delivery: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let mut misses: Vec<(&str, Miss)> = Vec::with_capacity(self.providers.len());
        for provider in &self.providers {
            let name = provider.name.as_str();
            if !provider.breaker.allow(self.clock.now()) {
                tracing::debug!(notification_id = %delivery.notification_id, provider = name, "circuit open; provider skipped");
                misses.push((name, Miss::Skipped));
                continue;
            }
            match provider.sender.send(delivery.clone()).await {
                Ok(receipt) => {
                    provider.breaker.record_success();
                    if !misses.is_empty() {
                        tracing::info!(notification_id = %delivery.notification_id, provider = name, "delivered by a failover provider");
                    }
                    return Ok(receipt);
                }
                Err(e @ (SendError::Permanent(_) | SendError::Unreachable(_))) => {
                    // The provider works; this message cannot be delivered anywhere.
                    provider.breaker.record_success();
                    return Err(e);
                }
                Err(SendError::Transient(why)) => {
                    let now = self.clock.now();
                    provider.breaker.record_failure(now);
                    if provider.breaker.state(now) == CircuitState::Open {
                        tracing::warn!(notification_id = %delivery.notification_id, provider = name, error = %why, "provider failed; its circuit is open");
                    } else {
                        tracing::warn!(notification_id = %delivery.notification_id, provider = name, error = %why, "provider failed; trying the next");
                    }
                    misses.push((name, Miss::Failed(why)));
                }
                Err(SendError::Throttled { retry_after }) => {
                    provider.breaker.record_inconclusive();
                    tracing::info!(notification_id = %delivery.notification_id, provider = name, ?retry_after, "provider throttled; trying the next");
                    misses.push((name, Miss::Throttled(retry_after)));
                }
            }
        }
        Err(nobody_delivered(&misses))
    }
}

/// Throttled when someone asked to wait and nobody failed; transient otherwise.
fn nobody_delivered(misses: &[(&str, Miss)]) -> SendError {
    let failed = misses.iter().any(|(_, m)| matches!(m, Miss::Failed(_)));
    let waits: Vec<Option<Duration>> = misses
        .iter()
        .filter_map(|(_, m)| match m {
            Miss::Throttled(wait) => Some(*wait),
            _ => None,
        })
        .collect();
    if !failed && !waits.is_empty() {
        // The shortest wait anyone named: whoever has room first takes the message.
        return SendError::Throttled { retry_after: waits.into_iter().flatten().min() };
    }
    let each: Vec<String> = misses
        .iter()
        .map(|(name, m)| match m {
            Miss::Skipped => format!("{name}: circuit open"),
            Miss::Failed(why) => format!("{name}: {why}"),
            Miss::Throttled(_) => format!("{name}: throttled"),
        })
        .collect();
    SendError::Transient(format!("no provider delivered ({})", each.join("; ")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::adapters::http::test_fixture::DeliveryFixture;
    use crate::domain::Channel;
    use crate::ports::Address;
    use crate::providers::circuit::tests::StepClock;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A delivery's owned parts: an email (the paced sender's tests use it too).
    pub(crate) struct Fixture(DeliveryFixture);

    impl Fixture {
        pub(crate) fn new() -> Self {
            Self(DeliveryFixture::new(Channel::Email, Address::Email { to: "olena@example.com".into() }, &[]))
        }

        pub(crate) fn delivery(&self) -> Delivery<'_> {
            self.0.delivery()
        }
    }

    /// A provider answering from a script (then `otherwise`), counting its calls.
    pub(crate) struct Fake {
        name: &'static str,
        script: Mutex<VecDeque<Result<(), SendError>>>,
        otherwise: Result<(), SendError>,
        calls: Mutex<u32>,
    }

    impl Fake {
        pub(crate) fn always(name: &'static str, answer: Result<(), SendError>) -> Arc<Self> {
            Self::scripted(name, [], answer)
        }

        pub(crate) fn scripted(
            name: &'static str,
            script: impl IntoIterator<Item = Result<(), SendError>>,
            otherwise: Result<(), SendError>,
        ) -> Arc<Self> {
            Arc::new(Self { name, script: Mutex::new(script.into_iter().collect()), otherwise, calls: Mutex::new(0) })
        }

        pub(crate) fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    #[async_trait]
    impl ChannelSender for Fake {
        async fn send(&self, _: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
            let n = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            let answer = self.script.lock().unwrap().pop_front().unwrap_or_else(|| self.otherwise.clone());
            answer.map(|()| ProviderReceipt::new(self.name, format!("{}-{n}", self.name)))
        }
    }

    fn transient() -> Result<(), SendError> {
        Err(SendError::Transient("HTTP 503".into()))
    }

    fn throttled(secs: Option<u64>) -> Result<(), SendError> {
        Err(SendError::Throttled { retry_after: secs.map(Duration::from_secs) })
    }

    fn failover(fakes: &[&Arc<Fake>], clock: &Arc<StepClock>) -> FailoverSender {
        let config = CircuitConfig { failure_threshold: 3, open_for: Duration::from_secs(30) };
        let providers = fakes.iter().map(|f| Provider::with_breaker(f.name, Arc::clone(*f) as Arc<dyn ChannelSender>, config)).collect();
        FailoverSender::new(providers, clock.clone())
    }

    #[tokio::test]
    async fn the_first_provider_delivers_and_the_others_are_not_called() {
        let (a, b) = (Fake::always("ses", Ok(())), Fake::always("sendgrid", Ok(())));
        let sender = failover(&[&a, &b], &Arc::new(StepClock::new()));
        let f = Fixture::new();

        assert_eq!(sender.send(f.delivery()).await, Ok(ProviderReceipt::new("ses", "ses-1")));
        assert_eq!((a.calls(), b.calls()), (1, 0));
    }

    #[tokio::test]
    async fn a_transient_failure_fails_over_and_the_receipt_names_who_delivered() {
        let (a, b) = (Fake::always("ses", transient()), Fake::always("sendgrid", Ok(())));
        let sender = failover(&[&a, &b], &Arc::new(StepClock::new()));
        let f = Fixture::new();

        assert_eq!(sender.send(f.delivery()).await, Ok(ProviderReceipt::new("sendgrid", "sendgrid-1")));
        assert_eq!((a.calls(), b.calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_throttled_provider_fails_over_without_counting_toward_its_circuit() {
        let (a, b) = (Fake::always("ses", throttled(Some(1))), Fake::always("sendgrid", Ok(())));
        let sender = failover(&[&a, &b], &Arc::new(StepClock::new()));
        let f = Fixture::new();

        for _ in 0..10 {
            assert_eq!(sender.send(f.delivery()).await.unwrap().provider, "sendgrid");
        }
        assert_eq!((a.calls(), b.calls()), (10, 10), "never skipped");
        assert_eq!(sender.circuits()[0], ("ses".to_owned(), CircuitState::Closed));
    }

    #[tokio::test]
    async fn a_permanent_rejection_or_an_unreachable_recipient_does_not_fail_over() {
        let f = Fixture::new();
        for error in [SendError::Permanent("invalid address".into()), SendError::Unreachable("opted_out".into())] {
            let (a, b) = (Fake::always("ses", Err(error.clone())), Fake::always("sendgrid", Ok(())));
            let sender = failover(&[&a, &b], &Arc::new(StepClock::new()));

            assert_eq!(sender.send(f.delivery()).await, Err(error));
            assert_eq!((a.calls(), b.calls()), (1, 0));
        }
    }

    #[tokio::test]
    async fn a_failing_provider_is_skipped_once_its_circuit_opens_then_probed_once() {
        let clock = Arc::new(StepClock::new());
        // Down for its first four calls (three to open, one failed probe), then back.
        let a = Fake::scripted("ses", [transient(), transient(), transient(), transient()], Ok(()));
        let b = Fake::always("sendgrid", Ok(()));
        let sender = failover(&[&a, &b], &clock);
        let f = Fixture::new();

        for _ in 0..3 {
            assert_eq!(sender.send(f.delivery()).await.unwrap().provider, "sendgrid");
        }
        assert_eq!(a.calls(), 3);
        assert_eq!(sender.circuits()[0].1, CircuitState::Open);

        // Open: not called at all.
        for _ in 0..5 {
            assert_eq!(sender.send(f.delivery()).await.unwrap().provider, "sendgrid");
            clock.advance(Duration::from_secs(5));
        }
        assert_eq!((a.calls(), b.calls()), (3, 8));

        // 30 s on: one probe, which fails and opens the circuit again.
        clock.advance(Duration::from_secs(5));
        assert_eq!(sender.send(f.delivery()).await.unwrap().provider, "sendgrid");
        assert_eq!(a.calls(), 4);
        assert_eq!(sender.send(f.delivery()).await.unwrap().provider, "sendgrid");
        assert_eq!(a.calls(), 4, "open again");

        // Another 30 s: the probe succeeds and the first provider is back.
        clock.advance(Duration::from_secs(30));
        assert_eq!(sender.send(f.delivery()).await, Ok(ProviderReceipt::new("ses", "ses-5")));
        assert_eq!(sender.circuits()[0].1, CircuitState::Closed);
        assert_eq!(sender.send(f.delivery()).await.unwrap().provider, "ses");
        assert_eq!((a.calls(), b.calls()), (6, 10));
    }

    #[tokio::test]
    async fn all_throttled_waits_the_shortest_wait() {
        let f = Fixture::new();
        let clock = Arc::new(StepClock::new());
        let (a, b, c) = (Fake::always("a", throttled(Some(5))), Fake::always("b", throttled(None)), Fake::always("c", throttled(Some(2))));
        let sender = failover(&[&a, &b, &c], &clock);
        assert_eq!(sender.send(f.delivery()).await, Err(SendError::Throttled { retry_after: Some(Duration::from_secs(2)) }));

        let (a, b) = (Fake::always("a", throttled(None)), Fake::always("b", throttled(None)));
        let sender = failover(&[&a, &b], &clock);
        assert_eq!(sender.send(f.delivery()).await, Err(SendError::Throttled { retry_after: None }));
    }

    #[tokio::test]
    async fn throttled_and_open_circuits_wait_but_any_failure_is_transient() {
        let f = Fixture::new();
        let clock = Arc::new(StepClock::new());
        let (a, b) = (Fake::always("ses", transient()), Fake::always("sendgrid", throttled(Some(4))));
        let sender = failover(&[&a, &b], &clock);

        assert_eq!(
            sender.send(f.delivery()).await,
            Err(SendError::Transient("no provider delivered (ses: HTTP 503; sendgrid: throttled)".into()))
        );
        sender.send(f.delivery()).await.unwrap_err();
        sender.send(f.delivery()).await.unwrap_err();
        // The first circuit is open: only the throttled provider is left, so the job waits.
        assert_eq!(sender.send(f.delivery()).await, Err(SendError::Throttled { retry_after: Some(Duration::from_secs(4)) }));
        assert_eq!(a.calls(), 3);
    }

    #[tokio::test]
    async fn every_provider_failing_or_skipped_is_transient_and_names_them() {
        let f = Fixture::new();
        let clock = Arc::new(StepClock::new());
        let (a, b) = (Fake::always("ses", transient()), Fake::always("sendgrid", Err(SendError::Transient("sendgrid: timed out".into()))));
        let sender = failover(&[&a, &b], &clock);

        assert_eq!(
            sender.send(f.delivery()).await,
            Err(SendError::Transient("no provider delivered (ses: HTTP 503; sendgrid: sendgrid: timed out)".into()))
        );
        sender.send(f.delivery()).await.unwrap_err();
        sender.send(f.delivery()).await.unwrap_err();
        assert_eq!(
            sender.send(f.delivery()).await,
            Err(SendError::Transient("no provider delivered (ses: circuit open; sendgrid: circuit open)".into()))
        );
        assert_eq!((a.calls(), b.calls()), (3, 3));
    }
}
