//! The platform's vocabulary, free of any AWS or HTTP type.

pub mod channel;
pub mod event;
pub mod ids;
pub mod notification;
pub mod problem;
pub mod profile;
pub mod schedule;
pub mod storable;
pub mod tenant;

pub use channel::{Channel, Lane, Priority};
pub use event::Event;
pub use ids::{EventId, NotificationId, UserId};
pub use notification::{AttemptChange, FallbackProgress, Guard, InboxMark, Notification, Status, Transition};
pub use problem::FieldError;
pub use profile::{Preferences, Profile};
pub use tenant::Tenant;
