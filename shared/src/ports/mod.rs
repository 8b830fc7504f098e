//! Ports: the small traits handlers depend on. Each has an in-process adapter (local stack,
//! fast tests) and an AWS adapter, and one contract suite (`crate::contract`) both must pass.

pub mod clock;
pub mod delivery;
pub mod queue;
pub mod store;

pub use clock::{Clock, SystemClock};
pub use delivery::{Address, ChannelSender, ConnectionPoster, Delivery, PostError, RenderedMessage, SendError};
pub use queue::{BatchQueue, OutgoingMessage, QueueError, QueueReceiver, QueueSender, ReceivedMessage, VisibilityControl};
pub use store::{
    Claim, Connection, ConnectionStore, EventRecord, EventStore, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    NotificationStore, Page, ProfileStore, StoreError, StoredResponse, TransitionOutcome,
};
