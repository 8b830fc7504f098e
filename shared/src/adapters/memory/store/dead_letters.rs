//! Dead letters over the in-process tables: by id, with an index by first failure (newest last),
//! as DynamoDB's `newest` and `by-queue` indexes sort them.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{MAX_PAGE, MemoryStore, decode, encode};
use crate::ports::dead_letters::{DeadLetter, DeadLetterStore};
use crate::ports::store::{Page, StoreError};

/// (first failure in millis, id), as DynamoDB's `failed_key`.
pub(super) type DeadLetterSortKey = (i64, String);

fn sort_key(letter: &DeadLetter) -> DeadLetterSortKey {
    (letter.first_failure_at.as_millisecond().max(0), letter.id.clone())
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    failed_ms: i64,
    id: String,
    #[serde(default)]
    queue: Option<String>,
}

fn encode_cursor(key: &DeadLetterSortKey, queue: Option<&str>) -> String {
    let cursor = Cursor { failed_ms: key.0, id: key.1.clone(), queue: queue.map(str::to_owned) };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).unwrap_or_default())
}

/// The sort key after which the page starts; `None` when the cursor is not one of this listing's.
fn decode_cursor(raw: &str, queue: Option<&str>) -> Option<DeadLetterSortKey> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
    let cursor: Cursor = serde_json::from_slice(&bytes).ok()?;
    (cursor.queue.as_deref() == queue).then_some((cursor.failed_ms, cursor.id))
}

#[async_trait]
impl DeadLetterStore for MemoryStore {
    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let mut t = self.tables();
        let mut letter = letter.clone();
        if let Some(old) = t.dead_letters.get(&letter.id) {
            let old: DeadLetter = decode(old, "dead letter")?;
            letter.first_failure_at = old.first_failure_at;
            t.dead_letters_by_time.remove(&sort_key(&old));
        }
        let value = encode(&letter, "dead letter")?;
        t.dead_letters_by_time.insert(sort_key(&letter));
        t.dead_letters.insert(letter.id.clone(), value);
        Ok(())
    }

    async fn get_dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.tables().dead_letters.get(id).map(|v| decode(v, "dead letter")).transpose()
    }

    async fn list_dead_letters(&self, queue: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let start = match cursor {
            None => None,
            Some(raw) => match decode_cursor(raw, queue) {
                Some(key) => Some(key),
                None => return Ok(Page { items: Vec::new(), next: None }),
            },
        };
        let t = self.tables();
        let mut remaining: Box<dyn Iterator<Item = &DeadLetterSortKey>> = match &start {
            Some(after) => Box::new(t.dead_letters_by_time.range(..after.clone()).rev()),
            None => Box::new(t.dead_letters_by_time.iter().rev()),
        };
        let mut items = Vec::with_capacity(limit);
        let mut last = None;
        let mut more = false;
        for key in remaining.by_ref() {
            let Some(value) = t.dead_letters.get(&key.1) else { continue };
            let letter: DeadLetter = decode(value, "dead letter")?;
            if queue.is_some_and(|q| q != letter.queue) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            last = Some(key.clone());
            items.push(letter);
        }
        let next = match (more, last) {
            (true, Some(key)) => Some(encode_cursor(&key, queue)),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn remove_dead_letter(&self, id: &str, last_failure_at: Timestamp) -> Result<bool, StoreError> {
        let mut t = self.tables();
        let Some(value) = t.dead_letters.get(id) else {
            return Ok(false);
        };
        let letter: DeadLetter = decode(value, "dead letter")?;
        if letter.last_failure_at != last_failure_at {
            return Ok(false);
        }
        t.dead_letters_by_time.remove(&sort_key(&letter));
        t.dead_letters.remove(id);
        Ok(true)
    }
}
