//! API keys, held only as SHA-256 hashes: configuration may list plain keys (local use) or their
//! hashes (`NOTIFY_API_KEY_HASHES`, as deployed), and neither is ever logged.

use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct ApiKeys {
    hashes: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.hashes.len())
    }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The hex SHA-256 of a key, as `NOTIFY_API_KEY_HASHES` holds it.
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

impl ApiKeys {
    /// From comma-separated plain keys and comma-separated hex hashes; blanks are ignored.
    pub fn from_config(plain: &str, hashes_hex: &str) -> Result<Self, String> {
        let mut hashes: Vec<[u8; 32]> = plain.split(',').map(str::trim).filter(|k| !k.is_empty()).map(hash_key).collect();
        for (i, h) in hashes_hex.split(',').map(str::trim).filter(|h| !h.is_empty()).enumerate() {
            let bytes = hex::decode(h).map_err(|_| format!("API key hash #{} is not hex", i + 1))?;
            let arr: [u8; 32] = bytes.try_into().map_err(|_| format!("API key hash #{} is not a SHA-256 (64 hex digits)", i + 1))?;
            hashes.push(arr);
        }
        Ok(Self { hashes })
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Checks an `Authorization` header value (`Bearer <key>`), comparing hashes in constant time.
    pub fn authorize(&self, authorization: Option<&str>) -> bool {
        let Some(key) = presented_key(authorization) else {
            return false;
        };
        let presented = hash_key(key);
        let mut matched = false;
        for h in &self.hashes {
            let diff = h.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            matched |= diff == 0;
        }
        matched
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
        assert_eq!(format!("{keys:?}"), "ApiKeys(1 keys)");
    }
}
