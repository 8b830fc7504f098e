//! A small in-process cache of answers that hold for a while (a key's tenant, a tenant's
//! settings): each entry expires at its own time, and the cache is emptied when it reaches its
//! capacity, so keys nobody can predict (random API keys) cannot grow it without bound.

use jiff::Timestamp;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Timestamp)>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity }
    }

    /// The answer kept for `key`, unless it expired by `now`.
    pub fn get(&self, key: &K, now: Timestamp) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(key).filter(|(_, until)| now < *until).map(|(value, _)| value.clone())
    }

    /// Keeps `value` for `key` until `until`.
    pub fn put(&self, key: K, value: V, until: Timestamp) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, (value, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_at_their_time_and_a_full_cache_starts_over() {
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let cache = TtlCache::new(2);
        cache.put("a", 1, t(10));
        assert_eq!(cache.get(&"a", t(9)), Some(1));
        assert_eq!(cache.get(&"a", t(10)), None, "expired at its time");
        cache.put("b", 2, t(10));
        cache.put("c", 3, t(10));
        assert_eq!((cache.get(&"a", t(0)), cache.get(&"b", t(0)), cache.get(&"c", t(0))), (None, None, Some(3)), "full: emptied, then the new one");
    }
}
