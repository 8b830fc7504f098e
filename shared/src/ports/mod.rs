//! Ports: the small traits handlers depend on. Each has an in-process adapter (local stack,
//! fast tests) and an AWS adapter, and one contract suite (`crate::contract`) both must pass.

pub mod clock;
pub mod dead_letters;
pub mod delivery;
pub mod keys;
pub mod pacing;
pub mod queue;
pub mod store;
pub mod suppression;

pub use clock::{Clock, SystemClock};
pub use dead_letters::{DeadLetter, DeadLetterReason, DeadLetterStore, dead_letter_id};
pub use delivery::{Address, ChannelSender, ConnectionPoster, Delivery, PostError, ProviderReceipt, RenderedMessage, SendError};
pub use keys::{KeyDirectory, StoredKey, TenantSettings, TenantSettingsCache};
pub use pacing::{LeasedLimiter, Pace, RateLimiter};
pub use queue::{BatchQueue, OutgoingMessage, QueueError, QueueReceiver, QueueSender, ReceivedMessage, VisibilityControl};
pub use suppression::{Suppression, SuppressionReason, SuppressionStore, suppression_key};
pub use store::{
    Claim, Connection, ConnectionStore, EventRecord, EventStore, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    NotificationStore, Page, ProfileStore, StoreError, StoredResponse, TransitionOutcome, UpsertOutcome,
};
