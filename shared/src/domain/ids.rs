//! Identifiers parsed at the boundary ("parse, don't validate").

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

use super::channel::Channel;

/// Characters allowed in caller-chosen identifiers: they travel in URL paths, queue message
/// group ids and DynamoDB keys, so they are kept to RFC 3986 unreserved characters plus `:` and `@`.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | ':' | '@')
}

fn parse_id(raw: &str, what: &str, max: usize) -> Result<String, String> {
    if raw.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if raw.chars().count() > max {
        return Err(format!("{what} must be at most {max} characters"));
    }
    if let Some(bad) = raw.chars().find(|c| !is_id_char(*c)) {
        return Err(format!(
            "{what} may contain only letters, digits and - _ . ~ : @ (found {bad:?})"
        ));
    }
    Ok(raw.to_owned())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, String> {
                parse_id(raw, $what, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl $name {
            /// An id as stored inside the platform: a caller's id, prefixed with its tenant
            /// (`acme#...`) unless the tenant is the default one. Built only by
            /// [`crate::domain::Tenant`] and read back from stores, queues and tokens.
            pub(crate) fn from_scoped(scoped: String) -> Self {
                Self(scoped)
            }

            /// Reads an id back from a store, a queue or a signed token: a caller's id,
            /// optionally prefixed with its tenant.
            pub fn parse_stored(raw: &str) -> Result<Self, String> {
                match raw.split_once(super::tenant::SCOPE_SEPARATOR) {
                    Some((tenant, local)) => {
                        super::tenant::Tenant::parse(tenant)?;
                        parse_id(local, $what, $max)?;
                        Ok(Self(raw.to_owned()))
                    }
                    None => Self::parse(raw),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, String> {
                Self::parse_stored(&raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The producer's idempotency key for one event: 1..128 characters.
    EventId, "event_id", 128
);
id_type!(
    /// The recipient, as the producer's own systems name them: 1..100 characters, so that a
    /// tenant-prefixed SQS message group id stays within SQS's 128.
    UserId, "user_id", 100
);

/// A notification is one (event, channel) pair; its id is derived from both, so routing the same
/// event again can never create a second notification for the same channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct NotificationId(String);

impl NotificationId {
    pub fn derive(event_id: &EventId, channel: Channel) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(event_id.as_str().as_bytes());
        hasher.update([0u8]);
        hasher.update(channel.as_str().as_bytes());
        let digest = hasher.finalize();
        Self(format!("ntf_{}", hex::encode(&digest[..16])))
    }

    /// Accepts an id read back from storage or a queue message.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SQS message group of everything addressed to one recipient: FIFO order per recipient,
/// parallelism across recipients. Always `tenant#user` (a user id of the default tenant is
/// stored without its prefix).
pub fn message_group_for(user_id: &UserId) -> String {
    if user_id.as_str().contains(super::tenant::SCOPE_SEPARATOR) {
        user_id.as_str().to_owned()
    } else {
        format!("{}{}{}", super::tenant::Tenant::DEFAULT, super::tenant::SCOPE_SEPARATOR, user_id.as_str())
    }
}

/// A FIFO deduplication id (at most 128 characters) for a key that may be longer (a scoped
/// event id): the key itself when it fits, its SHA-256 otherwise.
pub fn dedup_id_for(key: &str) -> String {
    if key.len() <= 128 { key.to_owned() } else { hex::encode(Sha256::digest(key.as_bytes())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_accept_common_shapes() {
        for ok in ["evt-01J9ZQ", "order:A-17:completed", "3f2a9c3e-1b7e-4c1e-9d1a-2f9e0c1d2b3a"] {
            assert!(EventId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn event_ids_reject_empty_long_and_unsafe() {
        assert!(EventId::parse("").is_err());
        assert!(EventId::parse(&"a".repeat(129)).is_err());
        assert!(EventId::parse(&"a".repeat(128)).is_ok());
        assert!(EventId::parse("a/b").is_err());
        assert!(EventId::parse("a b").is_err());
    }

    #[test]
    fn message_groups_fit_sqs_limits() {
        let longest = UserId::parse(&"u".repeat(UserId::MAX_LEN)).unwrap();
        assert!(message_group_for(&longest).len() <= 128);
        assert!(UserId::parse(&"u".repeat(UserId::MAX_LEN + 1)).is_err());
        let tenant = super::super::Tenant::parse(&"t".repeat(super::super::Tenant::MAX_LEN)).unwrap();
        let scoped = tenant.user(&longest);
        assert_eq!(message_group_for(&scoped), scoped.as_str());
        assert!(message_group_for(&scoped).len() <= 128);
        assert_eq!(message_group_for(&UserId::parse("u-1").unwrap()), "default#u-1");
    }

    #[test]
    fn long_scoped_event_ids_still_make_valid_dedup_ids() {
        let tenant = super::super::Tenant::parse("acme").unwrap();
        let long = tenant.event(&EventId::parse(&"e".repeat(EventId::MAX_LEN)).unwrap());
        assert_eq!(dedup_id_for(long.as_str()).len(), 64);
        assert_eq!(dedup_id_for("acme#e-1"), "acme#e-1");
        assert_eq!(EventId::parse_stored(long.as_str()).unwrap(), long);
        assert!(EventId::parse_stored("Bad#e-1").is_err());
    }

    #[test]
    fn notification_ids_are_deterministic_per_event_and_channel() {
        let e = EventId::parse("evt-1").unwrap();
        assert_eq!(
            NotificationId::derive(&e, Channel::Email),
            NotificationId::derive(&e, Channel::Email)
        );
        assert_ne!(
            NotificationId::derive(&e, Channel::Email),
            NotificationId::derive(&e, Channel::Sms)
        );
        let other = EventId::parse("evt-2").unwrap();
        assert_ne!(
            NotificationId::derive(&e, Channel::Email),
            NotificationId::derive(&other, Channel::Email)
        );
    }
}
