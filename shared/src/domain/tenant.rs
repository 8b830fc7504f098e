//! Tenants: every API key belongs to one, and every user, event id, notification, preference,
//! suppression and connection is namespaced by it.
//!
//! Namespacing is done on the identifiers themselves: inside the platform a user of tenant
//! `acme` is `acme#u-1` and an event id `acme#evt-1`, so every key built from them (DynamoDB
//! keys, SQS message groups, notification ids derived from the event id, WebSocket token
//! subjects) is the tenant's own without any store knowing about tenants. Callers never see the
//! prefix: ids from a path or a body are scoped with the caller's tenant, answers are unscoped
//! ([`Tenant::unscope_json`]). Caller-chosen ids cannot contain `#`, so no id of one tenant can
//! spell another's. The `default` tenant (bare keys, today's form) has no prefix at all, so a
//! single-tenant deployment keeps its data where it was.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::ids::{EventId, UserId};

/// The separator between a tenant and a caller's id; never allowed in caller-chosen ids.
pub const SCOPE_SEPARATOR: char = '#';

/// A tenant's name: 1..27 lowercase letters, digits and `-` (27 keeps `tenant#user` within
/// the 128 characters of an SQS message group id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct Tenant(String);

impl Tenant {
    pub const MAX_LEN: usize = 27;
    pub const DEFAULT: &'static str = "default";

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!("a tenant is 1 to {} characters", Self::MAX_LEN));
        }
        if !raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("a tenant may contain only lowercase letters, digits and -".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The tenant of bare keys.
    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `acme#<raw>`; the default tenant's ids are unprefixed.
    fn scope(&self, raw: &str) -> String {
        if self.is_default() { raw.to_owned() } else { format!("{}{SCOPE_SEPARATOR}{raw}", self.0) }
    }

    pub fn user(&self, local: &UserId) -> UserId {
        UserId::from_scoped(self.scope(local.as_str()))
    }

    pub fn event(&self, local: &EventId) -> EventId {
        EventId::from_scoped(self.scope(local.as_str()))
    }

    /// The tenant an id stored inside the platform belongs to.
    pub fn of(scoped: &str) -> Tenant {
        match scoped.split_once(SCOPE_SEPARATOR) {
            Some((tenant, _)) => Tenant::parse(tenant).unwrap_or_else(|_| Tenant::default_tenant()),
            None => Tenant::default_tenant(),
        }
    }

    /// Whether an id stored inside the platform is this tenant's.
    pub fn owns(&self, scoped: &str) -> bool {
        Tenant::of(scoped) == *self
    }

    /// The id as this tenant's callers know it (the prefix removed).
    pub fn local<'a>(&self, scoped: &'a str) -> &'a str {
        local_part(scoped)
    }

    /// Removes the tenant prefix from every id in an answer (`event_id`, `user_id` and any other
    /// `*_id` field, at any depth) before it leaves the platform.
    pub fn unscope_json(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        serde_json::Value::String(s) if is_id_field(key) && s.contains(SCOPE_SEPARATOR) => {
                            *s = local_part(s).to_owned();
                        }
                        _ => Self::unscope_json(v),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(Self::unscope_json),
            _ => {}
        }
    }
}

fn is_id_field(key: &str) -> bool {
    key == "user_id" || key == "event_id" || key == "sub"
}

/// The part after the tenant prefix (the whole id for the default tenant).
pub fn local_part(scoped: &str) -> &str {
    scoped.split_once(SCOPE_SEPARATOR).map_or(scoped, |(_, local)| local)
}

impl TryFrom<String> for Tenant {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<Tenant> for String {
    fn from(t: Tenant) -> String {
        t.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_scoped_by_tenant_and_the_default_tenant_keeps_them_bare() {
        let acme = Tenant::parse("acme").unwrap();
        let user = UserId::parse("u-1").unwrap();
        assert_eq!(acme.user(&user).as_str(), "acme#u-1");
        assert_eq!(Tenant::default_tenant().user(&user).as_str(), "u-1");
        assert_eq!(acme.event(&EventId::parse("e-1").unwrap()).as_str(), "acme#e-1");
        assert_eq!(Tenant::of("acme#u-1"), acme);
        assert_eq!(Tenant::of("u-1"), Tenant::default_tenant());
        assert!(acme.owns("acme#u-1") && !acme.owns("globex#u-1") && !acme.owns("u-1"));
        assert_eq!(acme.local("acme#u-1"), "u-1");
    }

    #[test]
    fn tenant_names_are_short_and_plain() {
        assert!(Tenant::parse("acme-2").is_ok());
        for bad in ["", "Acme", "a#b", "a b", &"a".repeat(28)] {
            assert!(Tenant::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_caller_id_cannot_spell_another_tenants_id() {
        assert!(UserId::parse("globex#u-1").is_err());
        assert!(EventId::parse("globex#e-1").is_err());
    }

    #[test]
    fn answers_lose_the_prefix_of_ids_only() {
        let mut answer = serde_json::json!({
            "event_id": "acme#e-1",
            "notifications": [{"user_id": "acme#u-1", "notification_id": "ntf_1", "body": "acme#1 order"}],
            "note": "acme#x",
        });
        Tenant::unscope_json(&mut answer);
        assert_eq!(answer, serde_json::json!({
            "event_id": "e-1",
            "notifications": [{"user_id": "u-1", "notification_id": "ntf_1", "body": "acme#1 order"}],
            "note": "acme#x",
        }));
    }
}
