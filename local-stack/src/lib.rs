//! The embedded local stack: the whole platform in one process on loopback. It serves the public
//! API and a WebSocket endpoint, and drives the very same handlers the Lambda functions run
//! through in-process adapters that keep the semantics of SQS (FIFO groups, visibility, receive
//! counts, redrive, delay) and DynamoDB (conditional writes). Providers write to a local outbox.
//! `GET /metrics` shows what the handlers count, in Prometheus text format.

pub mod config;
pub mod dev;
pub mod event_source;
pub mod chaos;
pub mod faults;
pub mod ledger;
pub mod management;
pub mod metrics;
pub mod provision;
pub mod providers;
pub mod websocket;
pub mod wiring;

pub use config::{Config, Retention};
pub use wiring::{LocalStack, start};
