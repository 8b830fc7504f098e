//! The notification platform's logic: domain, ports, adapters and every function's handler.
//!
//! Each Lambda in `functions/` and the embedded local stack are wiring around what lives here.

pub mod adapters;
pub mod auth;
pub mod catalog;
pub mod config;
#[cfg(feature = "contract-tests")]
pub mod contract;
pub mod domain;
pub mod handlers;
pub mod http;
pub mod jobs;
pub mod lambda;
pub mod metrics;
pub mod ports;
pub mod providers;
pub mod redact;
pub mod routing;
pub mod secrets;
pub mod telemetry;
pub mod topology;
pub mod ttl_cache;
pub mod wiring;
