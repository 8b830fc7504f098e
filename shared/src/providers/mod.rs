//! Several providers behind one channel: failover in order with a circuit breaker per provider,
//! and pacing to each provider's sending rate shared by every instance.

pub mod circuit;
pub mod config;
pub mod failover;
pub mod paced;
