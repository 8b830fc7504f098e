//! API keys, held only as SHA-256 hashes: configuration may list plain keys (local use) or their
//! hashes (`NOTIFY_API_KEY_HASHES`, as deployed), and neither is ever logged.

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::Tenant;
use crate::ports::{KeyDirectory, StoreError};
use crate::ttl_cache::TtlCache;

/// How long an answer of the key directory is trusted: a revoked key stops working within this.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long an unknown key is remembered as unknown (a new key works within this).
pub const UNKNOWN_KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Cached answers at most (the cache is emptied when full: random keys cannot grow it).
const CACHE_CAPACITY: usize = 10_000;

/// The keys that may call the API, each with its tenant: configured ones (local use, or a
/// deployment's fixed keys) and, as deployed, the key directory table behind a short cache.
pub struct ApiKeys {
    configured: Vec<([u8; 32], Tenant)>,
    directory: Option<Arc<dyn KeyDirectory>>,
    cache: TtlCache<[u8; 32], Option<Tenant>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys, directory: {})", self.configured.len(), self.directory.is_some())
    }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The hex SHA-256 of a key, as `NOTIFY_API_KEY_HASHES` and the key directory hold it.
pub fn hash_key_hex(key: &str) -> String {
    hex::encode(hash_key(key))
}

/// The key an `Authorization` header value presents (`Bearer <key>`), if any.
pub fn presented_key(authorization: Option<&str>) -> Option<&str> {
    authorization.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))).map(str::trim)
}

/// A short name for a key that does not reveal it (a prefix of its SHA-256), e.g. to keep a
/// per-key budget under.
pub fn key_id(key: &str) -> String {
    hash_key_hex(key)[..16].to_owned()
}

/// `tenant=value` or a bare `value` (tenant `default`).
fn with_tenant(entry: &str) -> Result<(Tenant, &str), String> {
    match entry.split_once('=') {
        Some((tenant, value)) => Ok((Tenant::parse(tenant.trim())?, value.trim())),
        None => Ok((Tenant::default_tenant(), entry)),
    }
}

fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ApiKeys {
    /// From comma-separated plain keys and comma-separated hex hashes, each optionally
    /// `tenant=`-prefixed (`acme=key1,globex=key2`; a bare one belongs to tenant `default`);
    /// blanks are ignored.
    pub fn from_config(plain: &str, hashes_hex: &str) -> Result<Self, String> {
        let mut configured = Vec::new();
        for (i, entry) in plain.split(',').map(str::trim).filter(|k| !k.is_empty()).enumerate() {
            let (tenant, key) = with_tenant(entry).map_err(|e| format!("API key #{}: {e}", i + 1))?;
            if key.is_empty() {
                return Err(format!("API key #{} is empty", i + 1));
            }
            configured.push((hash_key(key), tenant));
        }
        for (i, entry) in hashes_hex.split(',').map(str::trim).filter(|h| !h.is_empty()).enumerate() {
            let (tenant, h) = with_tenant(entry).map_err(|e| format!("API key hash #{}: {e}", i + 1))?;
            let bytes = hex::decode(h).map_err(|_| format!("API key hash #{} is not hex", i + 1))?;
            let arr: [u8; 32] = bytes.try_into().map_err(|_| format!("API key hash #{} is not a SHA-256 (64 hex digits)", i + 1))?;
            configured.push((arr, tenant));
        }
        Ok(Self { configured, directory: None, cache: TtlCache::new(CACHE_CAPACITY) })
    }

    /// Also accepts the active keys of the key directory.
    pub fn with_directory(mut self, directory: Arc<dyn KeyDirectory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Whether no key at all could be accepted.
    pub fn is_empty(&self) -> bool {
        self.configured.is_empty() && self.directory.is_none()
    }

    /// The tenant of a configured key presented in an `Authorization` header value (`Bearer
    /// <key>`), comparing hashes in constant time.
    pub fn configured_tenant(&self, authorization: Option<&str>) -> Option<Tenant> {
        let presented = hash_key(presented_key(authorization)?);
        let mut found = None;
        for (h, tenant) in &self.configured {
            if same_hash(h, &presented) && found.is_none() {
                found = Some(tenant.clone());
            }
        }
        found
    }

    /// Whether the header presents a configured key.
    pub fn authorize(&self, authorization: Option<&str>) -> bool {
        self.configured_tenant(authorization).is_some()
    }

    /// The tenant of the key the header presents: a configured key, else an active key of the
    /// directory (answers cached for [`KEY_CACHE_TTL`], unknown keys for
    /// [`UNKNOWN_KEY_CACHE_TTL`]). `Ok(None)`: not a key of ours.
    pub async fn tenant_for(&self, authorization: Option<&str>, now: Timestamp) -> Result<Option<Tenant>, StoreError> {
        if let Some(tenant) = self.configured_tenant(authorization) {
            return Ok(Some(tenant));
        }
        let (Some(directory), Some(key)) = (&self.directory, presented_key(authorization)) else {
            return Ok(None);
        };
        let hash = hash_key(key);
        if let Some(answer) = self.cache.get(&hash, now) {
            return Ok(answer);
        }
        let found = directory.find_key(&hex::encode(hash)).await?;
        let answer = found.filter(|k| k.is_active()).map(|k| k.tenant);
        let ttl = if answer.is_some() { KEY_CACHE_TTL } else { UNKNOWN_KEY_CACHE_TTL };
        self.cache.put(hash, answer.clone(), now.checked_add(ttl).unwrap_or(now));
        Ok(answer)
    }
}

/// A fresh random key for the local stack when none is configured.
pub fn generate_key() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    format!("local_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_keys_both_authorize() {
        let keys = ApiKeys::from_config("alpha, beta", &hash_key_hex("gamma")).unwrap();
        assert!(keys.authorize(Some("Bearer alpha")));
        assert!(keys.authorize(Some("Bearer beta")));
        assert!(keys.authorize(Some("Bearer gamma")));
        assert!(!keys.authorize(Some("Bearer delta")));
        assert!(!keys.authorize(Some("alpha")));
        assert!(!keys.authorize(None));
    }

    #[test]
    fn bad_hashes_are_named() {
        assert!(ApiKeys::from_config("", "zz").unwrap_err().contains("#1"));
        assert!(ApiKeys::from_config("", "abcd").is_err());
    }

    #[test]
    fn debug_does_not_print_keys() {
        let keys = ApiKeys::from_config("secret-key", "").unwrap();
        assert_eq!(format!("{keys:?}"), "ApiKeys(1 keys, directory: false)");
    }

    #[test]
    fn configured_keys_carry_their_tenant_and_bare_ones_the_default() {
        let keys = ApiKeys::from_config("acme=key1, globex=key2, key3", &format!("initech={}", hash_key_hex("key4"))).unwrap();
        let tenant = |k: &str| keys.configured_tenant(Some(&format!("Bearer {k}"))).map(|t| t.to_string());
        assert_eq!(tenant("key1").as_deref(), Some("acme"));
        assert_eq!(tenant("key2").as_deref(), Some("globex"));
        assert_eq!(tenant("key3").as_deref(), Some("default"));
        assert_eq!(tenant("key4").as_deref(), Some("initech"));
        assert_eq!(tenant("acme=key1"), None);
        assert!(ApiKeys::from_config("Bad Tenant=k", "").unwrap_err().contains("#1"));
        assert!(ApiKeys::from_config("acme=", "").is_err());
    }

    #[tokio::test]
    async fn directory_keys_are_cached_and_revocation_holds_within_the_ttl() {
        use crate::adapters::memory::store::MemoryStore;
        use crate::ports::{KeyDirectory, StoredKey};
        let directory = Arc::new(MemoryStore::new());
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let stored = StoredKey { key_hash: hash_key_hex("dir-key"), key_id: key_id("dir-key"), tenant: Tenant::parse("acme").unwrap(), label: None, created_at: now, revoked_at: None };
        directory.put_key(&stored).await.unwrap();
        let keys = ApiKeys::from_config("", "").unwrap().with_directory(directory.clone());
        assert!(!keys.is_empty());
        let header = Some("Bearer dir-key");
        assert_eq!(keys.tenant_for(header, now).await.unwrap(), Some(Tenant::parse("acme").unwrap()));
        assert_eq!(keys.tenant_for(Some("Bearer nope"), now).await.unwrap(), None);
        directory.revoke_key(&stored.key_id, now).await.unwrap();
        assert!(keys.tenant_for(header, now).await.unwrap().is_some(), "cached until the TTL");
        let later = now.checked_add(KEY_CACHE_TTL).unwrap();
        assert_eq!(keys.tenant_for(header, later).await.unwrap(), None, "revoked once the cache lapsed");
    }
}
