//! Several providers behind one channel: failover in order with a circuit breaker per provider,
//! and pacing to each provider's sending rate shared by every instance.

pub mod circuit;
pub mod config;
pub mod failover;
pub mod paced;

use std::sync::Arc;

use crate::ports::{ChannelSender, Clock, LeasedLimiter, RateLimiter};

/// One provider of a channel: its name, its sender, and its rate (messages per second across
/// every instance; none: unpaced).
pub struct ProviderLink {
    pub name: String,
    pub sender: Arc<dyn ChannelSender>,
    pub rate_per_second: Option<u32>,
}

/// A channel's sender from its providers in order: each paced to its rate through `limiter`
/// (leased in blocks, see [`LeasedLimiter`]: about one shared write per tenth of the rate),
/// behind a failover (a circuit breaker each) when there are several. The one composition the
/// send functions and the local stack both use.
pub fn chain(links: Vec<ProviderLink>, limiter: Arc<dyn RateLimiter>, clock: Arc<dyn Clock>) -> Arc<dyn ChannelSender> {
    let limiter: Arc<dyn RateLimiter> = Arc::new(LeasedLimiter::new(limiter));
    let mut providers: Vec<failover::Provider> = links
        .into_iter()
        .map(|link| {
            let sender = match link.rate_per_second {
                Some(rate) => Arc::new(paced::PacedSender::new(link.sender, limiter.clone(), link.name.clone(), rate, clock.clone())),
                None => link.sender,
            };
            failover::Provider::new(link.name, sender)
        })
        .collect();
    if providers.len() == 1 {
        return providers.remove(0).sender;
    }
    Arc::new(failover::FailoverSender::new(providers, clock))
}
