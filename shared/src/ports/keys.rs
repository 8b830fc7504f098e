//! The API keys of every tenant as deployed: stored hashed with their tenant, managed with the
//! `notify-keys` command (create, list, revoke) rather than by redeploying, and each tenant's
//! defaults for sender identity.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::Tenant;

/// One API key, as stored: never the key itself, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    /// A short name of the key that does not reveal it (the first 16 hex digits of its hash).
    pub key_id: String,
    pub tenant: Tenant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

impl StoredKey {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// The message part an e-mail's `From` travels in when its tenant set one (the router adds it).
pub const FROM_PART: &str = "from";
/// The message part an SMS sender id travels in when its tenant set one.
pub const SENDER_ID_PART: &str = "sender_id";

/// A tenant's defaults for sender identity, used when a message names none of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    /// The `From` of its e-mail (an address verified in SES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_from: Option<String>,
    /// The SMS sender id its text messages carry where the destination allows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_sender_id: Option<String>,
}

#[async_trait::async_trait]
pub trait KeyDirectory: Send + Sync {
    /// The key with this hash, revoked or not.
    async fn find_key(&self, key_hash: &str) -> Result<Option<StoredKey>, StoreError>;
    /// Records a new key (a key with the same hash is replaced).
    async fn put_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Every key, or one tenant's, oldest first.
    async fn list_keys(&self, tenant: Option<&Tenant>) -> Result<Vec<StoredKey>, StoreError>;
    /// Revokes the key with this id at `at`; answers it, or `None` when there is no such key.
    /// Revoking twice keeps the first time.
    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<Option<StoredKey>, StoreError>;
    async fn tenant_settings(&self, tenant: &Tenant) -> Result<Option<TenantSettings>, StoreError>;
    async fn put_tenant_settings(&self, tenant: &Tenant, settings: &TenantSettings) -> Result<(), StoreError>;
}

/// How long the router trusts a tenant's settings before reading them again.
pub const TENANT_SETTINGS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Tenants' settings behind a short cache: one read per tenant a minute, not one per event.
pub struct TenantSettingsCache {
    directory: std::sync::Arc<dyn KeyDirectory>,
    cache: crate::ttl_cache::TtlCache<Tenant, Option<TenantSettings>>,
}

impl TenantSettingsCache {
    pub fn new(directory: std::sync::Arc<dyn KeyDirectory>) -> Self {
        // Tenants are few; the capacity only bounds a mistake.
        Self { directory, cache: crate::ttl_cache::TtlCache::new(10_000) }
    }

    /// The tenant's settings (none for the default tenant: its sender identity is the
    /// functions' own configuration).
    pub async fn get(&self, tenant: &Tenant, now: Timestamp) -> Result<Option<TenantSettings>, StoreError> {
        if tenant.is_default() {
            return Ok(None);
        }
        if let Some(settings) = self.cache.get(tenant, now) {
            return Ok(settings);
        }
        let settings = self.directory.tenant_settings(tenant).await?;
        self.cache.put(tenant.clone(), settings.clone(), now.checked_add(TENANT_SETTINGS_TTL).unwrap_or(now));
        Ok(settings)
    }
}

/// Stamps a tenant's sender identity on a message of its channel (e-mail `From`, SMS sender id).
pub fn stamp_sender(settings: &TenantSettings, channel: crate::domain::Channel, message: &mut super::RenderedMessage) {
    let (part, value) = match channel {
        crate::domain::Channel::Email => (FROM_PART, &settings.email_from),
        crate::domain::Channel::Sms => (SENDER_ID_PART, &settings.sms_sender_id),
        _ => return,
    };
    if let Some(value) = value {
        message.parts.insert(part.to_owned(), value.clone());
    }
}
