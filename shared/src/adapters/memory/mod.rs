//! In-process adapters that keep the semantics of the AWS services they stand in for.

pub mod connections;
pub mod outbox;
pub mod queue;
pub mod recent;
pub mod store;

pub use connections::MemoryConnectionPoster;
pub use outbox::{Outbox, OutboxEntry, OutboxSender};
pub use recent::RecentLog;
