//! Managing the key directory (what `notify-keys` does): create a tenant's key (shown once,
//! stored only as its hash), list keys, revoke one, and set a tenant's sender defaults.

use jiff::Timestamp;

use super::api_keys::{hash_key_hex, key_id};
use crate::domain::Tenant;
use crate::ports::{KeyDirectory, StoreError, StoredKey, TenantSettings};

/// A key just created: the key itself (to hand to the tenant; never stored) and its record.
#[derive(Debug)]
pub struct CreatedKey {
    pub key: String,
    pub stored: StoredKey,
}

/// A fresh random key: `nk_` and 48 hex digits (192 bits).
pub fn new_key() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    format!("nk_{}", hex::encode(bytes))
}

pub async fn create_key(directory: &dyn KeyDirectory, tenant: &Tenant, label: Option<&str>, now: Timestamp) -> Result<CreatedKey, StoreError> {
    let key = new_key();
    let stored = StoredKey {
        key_hash: hash_key_hex(&key),
        key_id: key_id(&key),
        tenant: tenant.clone(),
        label: label.map(str::to_owned),
        created_at: now,
        revoked_at: None,
    };
    directory.put_key(&stored).await?;
    Ok(CreatedKey { key, stored })
}

pub async fn list_keys(directory: &dyn KeyDirectory, tenant: Option<&Tenant>) -> Result<Vec<StoredKey>, StoreError> {
    directory.list_keys(tenant).await
}

/// Revokes a key by its id (as `list` shows it); `None` when there is no such key.
pub async fn revoke_key(directory: &dyn KeyDirectory, key_id: &str, now: Timestamp) -> Result<Option<StoredKey>, StoreError> {
    directory.revoke_key(key_id, now).await
}

/// Sets the tenant's sender defaults, keeping any not given; answers them.
pub async fn set_sender_defaults(directory: &dyn KeyDirectory, tenant: &Tenant, email_from: Option<String>, sms_sender_id: Option<String>) -> Result<TenantSettings, StoreError> {
    let current = directory.tenant_settings(tenant).await?.unwrap_or_default();
    let settings = TenantSettings { email_from: email_from.or(current.email_from), sms_sender_id: sms_sender_id.or(current.sms_sender_id) };
    directory.put_tenant_settings(tenant, &settings).await?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::store::MemoryStore;
    use crate::auth::ApiKeys;

    #[tokio::test]
    async fn a_created_key_authorizes_its_tenant_until_revoked() {
        let directory = std::sync::Arc::new(MemoryStore::new());
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let acme = Tenant::parse("acme").unwrap();
        let created = create_key(directory.as_ref(), &acme, Some("ci"), now).await.unwrap();
        assert!(created.key.starts_with("nk_") && created.key.len() == 51);
        assert_ne!(created.stored.key_hash, created.key, "only the hash is stored");
        let listed = list_keys(directory.as_ref(), Some(&acme)).await.unwrap();
        assert_eq!(listed, vec![created.stored.clone()]);
        assert!(list_keys(directory.as_ref(), Some(&Tenant::parse("globex").unwrap())).await.unwrap().is_empty());

        let header = format!("Bearer {}", created.key);
        let keys = ApiKeys::from_config("", "").unwrap().with_directory(directory.clone());
        assert_eq!(keys.tenant_for(Some(&header), now).await.unwrap(), Some(acme.clone()));
        let revoked = revoke_key(directory.as_ref(), &created.stored.key_id, now).await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(now));
        let fresh = ApiKeys::from_config("", "").unwrap().with_directory(directory.clone());
        assert_eq!(fresh.tenant_for(Some(&header), now).await.unwrap(), None, "a revoked key opens nothing");
        assert!(revoke_key(directory.as_ref(), "no-such-key", now).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sender_defaults_are_kept_per_tenant_and_merged() {
        let directory = MemoryStore::new();
        let acme = Tenant::parse("acme").unwrap();
        set_sender_defaults(&directory, &acme, Some("Acme <no-reply@acme.example>".into()), None).await.unwrap();
        let both = set_sender_defaults(&directory, &acme, None, Some("ACME".into())).await.unwrap();
        assert_eq!(both.email_from.as_deref(), Some("Acme <no-reply@acme.example>"));
        assert_eq!(both.sms_sender_id.as_deref(), Some("ACME"));
        assert_eq!(directory.tenant_settings(&Tenant::parse("globex").unwrap()).await.unwrap(), None);
    }
}
