//! Dead letters on DynamoDB.
//!
//! | table | key | GSIs | answers |
//! |---|---|---|---|
//! | dead-letters | `id` (S) | `newest`: `list` / `failed_key`; `by-queue`: `queue` / `failed_key` | what the pipeline gave up on, newest first, of every queue or one |
//!
//! `failed_key` is the zero-padded millis of the first failure `#` id; `list` is always
//! [`DEAD_LETTER_LIST`]: one partition, as for suppressions, since dead letters are written at
//! the rate of jobs given up on, far below a partition's limit. Items expire (TTL `expires_at`)
//! with the notifications they name, [`RETENTION_SECONDS`] after their last failure.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use std::collections::HashMap;

use super::{DynamoStore, Item, NEWEST_INDEX, RETENTION_SECONDS, conditional_write, get_s, n, s, to_av, unavailable};
use crate::ports::dead_letters::{DeadLetter, DeadLetterStore};
use crate::ports::{Page, StoreError};

pub const BY_QUEUE_INDEX: &str = "by-queue";
pub const DEAD_LETTER_LIST: &str = "dead-letters";

/// Attributes of the item that are not fields of [`DeadLetter`].
const EXTRA: [&str; 3] = ["list", "failed_key", "expires_at"];
/// Fields written once, when the dead letter is first recorded.
const KEPT: [&str; 2] = ["first_failure_at", "failed_key"];
/// Optional fields: removed when a new record of the id has none.
const OPTIONAL: [&str; 4] = ["notification_id", "event_id", "user_id", "group_id"];

fn failed_key(letter: &DeadLetter) -> String {
    format!("{:015}#{}", letter.first_failure_at.as_millisecond().max(0), letter.id)
}

fn letter_from(mut item: Item) -> Result<DeadLetter, StoreError> {
    for extra in EXTRA {
        item.remove(extra);
    }
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The key attributes of a page's last item in `index`.
fn cursor_fields(queue: Option<&str>) -> [&'static str; 3] {
    match queue {
        Some(_) => ["id", "queue", "failed_key"],
        None => ["id", "list", "failed_key"],
    }
}

fn encode_cursor(key: &Item, queue: Option<&str>) -> String {
    let map: HashMap<&str, &str> = cursor_fields(queue).iter().filter_map(|f| get_s(key, f).map(|v| (*f, v))).collect();
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&map).unwrap_or_default())
}

fn decode_cursor(raw: &str, queue: Option<&str>) -> Option<Item> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
    let map: HashMap<String, String> = serde_json::from_slice(&bytes).ok()?;
    let fields = cursor_fields(queue);
    if map.len() != fields.len() || fields.iter().any(|f| !map.contains_key(*f)) {
        return None;
    }
    let partition_matches = match queue {
        Some(q) => map.get("queue").map(String::as_str) == Some(q),
        None => map.get("list").map(String::as_str) == Some(DEAD_LETTER_LIST),
    };
    partition_matches.then(|| map.into_iter().map(|(k, v)| (k, s(v))).collect())
}

/// Writes: one `UpdateItem` per dead letter (`first_failure_at` and `failed_key` set only if
/// absent), one conditional `DeleteItem` per replayed one. Reads: `GetItem` by id, one `Query` of
/// an index per page.
#[async_trait]
impl DeadLetterStore for DynamoStore {
    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let mut item: Item = serde_dynamo::to_item(letter).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        item.remove("id");
        item.insert("list".into(), s(DEAD_LETTER_LIST));
        item.insert("failed_key".into(), s(failed_key(letter)));
        item.insert("expires_at".into(), n(letter.last_failure_at.as_second() + RETENTION_SECONDS));
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut set = Vec::new();
        for (i, (field, value)) in item.into_iter().enumerate() {
            let (name, placeholder) = (format!("#f{i}"), format!(":v{i}"));
            if KEPT.contains(&field.as_str()) {
                set.push(format!("{name} = if_not_exists({name}, {placeholder})"));
            } else {
                set.push(format!("{name} = {placeholder}"));
            }
            names.insert(name, field);
            values.insert(placeholder, value);
        }
        let mut expression = format!("SET {}", set.join(", "));
        let absent: Vec<&str> = OPTIONAL.into_iter().filter(|f| !names.values().any(|v| v == f)).collect();
        let absent: Vec<String> = absent
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                names.insert(format!("#r{i}"), f.to_owned());
                format!("#r{i}")
            })
            .collect();
        if !absent.is_empty() {
            expression.push_str(&format!(" REMOVE {}", absent.join(", ")));
        }
        self.client
            .update_item()
            .table_name(&self.tables.dead_letters)
            .key("id", s(letter.id.clone()))
            .update_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        match self.consistent_get(&self.tables.dead_letters, "id", id).await? {
            Some(item) if !item.is_empty() => letter_from(item).map(Some),
            _ => Ok(None),
        }
    }

    async fn list_dead_letters(&self, queue: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>, StoreError> {
        let limit = limit.clamp(1, 100);
        let start = match cursor {
            None => None,
            Some(raw) => match decode_cursor(raw, queue) {
                Some(key) => Some(key),
                None => return Ok(Page { items: Vec::new(), next: None }),
            },
        };
        let request = self.client.query().table_name(&self.tables.dead_letters).scan_index_forward(false).limit(limit as i32 + 1);
        let request = match queue {
            Some(q) => request
                .index_name(BY_QUEUE_INDEX)
                .key_condition_expression("#queue = :queue")
                .expression_attribute_names("#queue", "queue")
                .expression_attribute_values(":queue", s(q)),
            None => request
                .index_name(NEWEST_INDEX)
                .key_condition_expression("#list = :list")
                .expression_attribute_names("#list", "list")
                .expression_attribute_values(":list", s(DEAD_LETTER_LIST)),
        };
        // One more than asked: whether it comes says whether there is a next page.
        let page = request.set_exclusive_start_key(start).send().await.map_err(unavailable)?;
        let mut raw = page.items.unwrap_or_default();
        let next = if raw.len() > limit {
            raw.truncate(limit);
            raw.last().map(|k| encode_cursor(k, queue))
        } else {
            page.last_evaluated_key.filter(|k| !k.is_empty()).map(|k| encode_cursor(&k, queue))
        };
        let items = raw.into_iter().map(letter_from).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next })
    }

    async fn remove_dead_letter(&self, id: &str, last_failure_at: Timestamp) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.dead_letters)
            .key("id", s(id))
            .condition_expression("last_failure_at = :at")
            .expression_attribute_values(":at", to_av(&last_failure_at)?)
            .send()
            .await;
        conditional_write(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn cursors_belong_to_their_listing() {
        let key: Item = [("id", "dl_1"), ("queue", "q-dlq.fifo"), ("failed_key", "000000000000001#dl_1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), AttributeValue::S(v.to_owned())))
            .collect();
        let raw = encode_cursor(&key, Some("q-dlq.fifo"));
        assert_eq!(decode_cursor(&raw, Some("q-dlq.fifo")), Some(key));
        assert_eq!(decode_cursor(&raw, Some("other-dlq.fifo")), None, "another queue's cursor");
        assert_eq!(decode_cursor(&raw, None), None, "not a cursor of the whole list");
        assert_eq!(decode_cursor("garbage", None), None);
    }
}
