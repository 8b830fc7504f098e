//! Amazon DynamoDB: `DynamoStore` implements every store port with conditional writes.
//!
//! Table design (one table per aggregate, so each function's role names only the tables it uses;
//! all on-demand, TTL attribute `expires_at` in epoch seconds, expiry also checked in code):
//!
//! | table | key | GSIs | answers |
//! |---|---|---|---|
//! | idempotency | `id` (S) = event id | – | ingest's claim / replay of an `event_id` |
//! | events | `event_id` (S) | – | `GET /v1/events/{id}` (the event) |
//! | notifications | `notification_id` (S) | `by-event`: `event_id` / `channel`; `by-user`: `user_id` / `created_key` | claims and state changes; an event's notifications; a user's inbox, newest first |
//! | users | `user_id` (S) | – | profile and preferences (attributes `profile`, `preferences`) |
//! | connections | `connection_id` (S) | `by-user`: `user_id` | a user's live WebSocket connections; item `#active-connections` counts them |
//! | suppressions | `key` (S) = `suppression_key(tenant, channel, address)` | `newest`: `list` / `created_key` | whether to send to an address; every suppression, newest first |
//! | rate-limits | `pk` (S) = `{key}#{epoch second}` | – | a sending rate shared by every instance (attribute `sent`, N) |
//! | dead-letters | `id` (S) | `newest`, `by-queue` | see `dead_letters` below |
//!
//! Conditions: idempotency claim `attribute_not_exists(id) OR expires_at < :now OR
//! (#state = IN_PROGRESS AND in_progress_until < :now_ms)`; event and notification creation
//! `attribute_not_exists(<key>)`; every notification transition its [`Guard`] (status set, or
//! "pending/scheduled, or sending with `lease_until_ms` < now"); a notification upsert (the
//! sender's claim-or-create) `attribute_not_exists(notification_id) OR <guard>`. When a condition fails, the
//! current item is read back with a consistent read. Erasure: the user item is deleted whole;
//! a notification's content is removed (`REMOVE title, last_error`) on condition that there is
//! some; an event's record is written back with a `null` payload on condition that it exists.

mod dead_letters;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use std::collections::HashMap;

use crate::domain::{AttemptChange, EventId, Guard, Notification, NotificationId, Preferences, Profile, Status, Transition, UserId};
use crate::ports::store::channel_rank;
use crate::ports::{
    Claim, Connection, ConnectionStore, EventRecord, EventStore, IdempotencyRecord, IdempotencyState, IdempotencyStore, NotificationStore, Page,
    ProfileStore, StoreError, StoredResponse, TransitionOutcome, UpsertOutcome,
};
use crate::ports::{Pace, RateLimiter, Suppression, SuppressionStore, suppression_key};
use crate::domain::Channel;

/// Physical table names, from the environment on Lambda (an empty name: a table the function
/// was not wired for).
#[derive(Clone, Debug, Default)]
pub struct TableNames {
    pub idempotency: String,
    pub events: String,
    pub notifications: String,
    pub users: String,
    pub connections: String,
    pub suppressions: String,
    pub rate_limits: String,
    pub api_keys: String,
    /// Jobs the pipeline gave up on (`ports::dead_letters`).
    pub dead_letters: String,
}

impl TableNames {
    /// The logical names used by `template.yaml`, optionally prefixed.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            idempotency: format!("{prefix}idempotency"),
            events: format!("{prefix}events"),
            notifications: format!("{prefix}notifications"),
            users: format!("{prefix}users"),
            connections: format!("{prefix}connections"),
            suppressions: format!("{prefix}suppressions"),
            rate_limits: format!("{prefix}rate-limits"),
            api_keys: format!("{prefix}api-keys"),
            dead_letters: format!("{prefix}dead-letters"),
        }
    }
}

pub const BY_EVENT_INDEX: &str = "by-event";
pub const BY_USER_INDEX: &str = "by-user";
/// How long events and notifications are kept (TTL).
pub const RETENTION_SECONDS: i64 = 90 * 24 * 60 * 60;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self { client, tables }
    }
}

type Item = HashMap<String, AttributeValue>;

fn unavailable<E: ProvideErrorMetadata>(e: aws_sdk_dynamodb::error::SdkError<E>) -> StoreError {
    // Only the code and message: `{:?}` of an SDK error can carry a whole item.
    StoreError::Unavailable(format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or("no message")))
}

fn is_condition_failure<E: ProvideErrorMetadata>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

/// A conditional `UpdateItem`'s expressions.
struct ConditionalUpdate {
    update: String,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl DynamoStore {
    /// One conditional `UpdateItem` of a notification; a refusal carries the item as it is.
    async fn update_notification(
        &self,
        id: &NotificationId,
        u: ConditionalUpdate,
        answer: ReturnValue,
    ) -> Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError>,
    > {
        self.client
            .update_item()
            .table_name(&self.tables.notifications)
            .key("notification_id", s(id.as_str()))
            .update_expression(u.update)
            .condition_expression(u.condition)
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .return_values(answer)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
    }

    /// The notification a conditional `UpdateItem` was refused on: the item the refusal carries
    /// (`ReturnValuesOnConditionCheckFailure::AllOld`), else read again.
    async fn as_it_is_now(
        &self,
        id: &NotificationId,
        refusal: &aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError>,
    ) -> Result<Option<Notification>, StoreError> {
        match refusal.as_service_error() {
            Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) if c.item.is_some() => {
                c.item.clone().map(notification_from).transpose()
            }
            _ => NotificationStore::get(self, id).await,
        }
    }
}

/// A conditional write's answer: `true` written, `false` its condition did not hold.
fn conditional_write<T, E: ProvideErrorMetadata>(result: Result<T, aws_sdk_dynamodb::error::SdkError<E>>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn to_av<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_av<T: serde::de::DeserializeOwned>(value: AttributeValue) -> Result<T, StoreError> {
    serde_dynamo::from_attribute_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

// ---------------------------------------------------------------------------------------------
// Idempotency.

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

fn idempotency_record(item: &Item) -> Result<IdempotencyRecord, StoreError> {
    let key = get_s(item, "id").ok_or_else(|| StoreError::Corrupt("idempotency item without id".into()))?.to_owned();
    let payload_hash = get_s(item, "payload_hash").unwrap_or_default().to_owned();
    let expires_at = ts(get_n(item, "expires_at").unwrap_or_default());
    let state = match get_s(item, "state") {
        Some(COMPLETED) => {
            let response: StoredResponse =
                serde_json::from_str(get_s(item, "response").unwrap_or_default()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            IdempotencyState::Completed { response }
        }
        _ => IdempotencyState::InProgress {
            until: Timestamp::from_millisecond(get_n(item, "in_progress_until").unwrap_or_default()).unwrap_or(Timestamp::UNIX_EPOCH),
        },
    };
    Ok(IdempotencyRecord { key, payload_hash, state, expires_at })
}

impl DynamoStore {
    async fn consistent_get(&self, table: &str, key: &str, value: &str) -> Result<Option<Item>, StoreError> {
        let out = self.client.get_item().table_name(table).key(key, s(value)).consistent_read(true).send().await.map_err(unavailable)?;
        Ok(out.item)
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(&self, key: &str, payload_hash: &str, now: Timestamp, in_progress_until: Timestamp, expires_at: Timestamp) -> Result<Claim, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.idempotency)
            .item("id", s(key))
            .item("payload_hash", s(payload_hash))
            .item("state", s(IN_PROGRESS))
            .item("in_progress_until", n(in_progress_until.as_millisecond()))
            .item("expires_at", n(expires_at.as_second()))
            .condition_expression("attribute_not_exists(#id) OR expires_at <= :now OR (#state = :in_progress AND in_progress_until <= :now_ms)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#id", "id")
            .expression_attribute_values(":now", n(now.as_second()))
            .expression_attribute_values(":now_ms", n(now.as_millisecond()))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) if is_condition_failure(&e) => {
                let old = match e.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => c.item.clone(),
                    _ => None,
                };
                let item = match old {
                    Some(item) => Some(item),
                    None => self.consistent_get(&self.tables.idempotency, "id", key).await?,
                };
                match item {
                    Some(item) => Ok(Claim::Existing(idempotency_record(&item)?)),
                    // Deleted between the two calls: claim again.
                    None => Box::pin(self.claim(key, payload_hash, now, in_progress_until, expires_at)).await,
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn complete(&self, key: &str, payload_hash: &str, response: StoredResponse, expires_at: Timestamp) -> Result<(), StoreError> {
        let body = serde_json::to_string(&response).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client
            .update_item()
            .table_name(&self.tables.idempotency)
            .key("id", s(key))
            .update_expression("SET #state = :completed, #response = :response, payload_hash = :hash, expires_at = :exp REMOVE in_progress_until")
            .expression_attribute_values(":hash", s(payload_hash))
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":response", s(body))
            .expression_attribute_values(":exp", n(expires_at.as_second()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.client.delete_item().table_name(&self.tables.idempotency).key("id", s(key)).send().await.map_err(unavailable)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Events.

#[async_trait]
impl EventStore for DynamoStore {
    async fn put_event(&self, record: &EventRecord) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.events)
            .item("event_id", s(record.event.event_id.as_str()))
            .item("record", to_av(record)?)
            .item("expires_at", n(record.accepted_at.as_second() + RETENTION_SECONDS))
            .condition_expression("attribute_not_exists(event_id)")
            .send()
            .await;
        conditional_write(result)
    }

    async fn get_event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let Some(mut item) = self.consistent_get(&self.tables.events, "event_id", event_id.as_str()).await? else {
            return Ok(None);
        };
        let record = item.remove("record").ok_or_else(|| StoreError::Corrupt("event item without record".into()))?;
        from_av(record).map(Some)
    }

    /// Reads the record, then writes it back without its payload, on condition that the item
    /// still exists (an event record is otherwise never written after it is put).
    async fn scrub_event_payload(&self, event_id: &EventId) -> Result<bool, StoreError> {
        let Some(mut record) = self.get_event(event_id).await? else {
            return Ok(false);
        };
        if record.event.payload.is_null() {
            return Ok(false);
        }
        record.event.payload = serde_json::Value::Null;
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.events)
            .key("event_id", s(event_id.as_str()))
            .update_expression("SET #r = :r")
            .condition_expression("attribute_exists(event_id)")
            .expression_attribute_names("#r", "record")
            .expression_attribute_values(":r", to_av(&record)?)
            .send()
            .await;
        conditional_write(result)
    }
}

// ---------------------------------------------------------------------------------------------
// Notifications.

/// The inbox sort key: creation time (fixed-width millis), then id for ties.
fn created_key(n: &Notification) -> String {
    format!("{:015}#{}", n.created_at.as_millisecond().max(0), n.notification_id)
}

fn notification_item(n: &Notification) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(n).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    item.insert("created_key".into(), s(created_key(n)));
    item.insert("expires_at".into(), n_attr(n.created_at.as_second() + RETENTION_SECONDS));
    if let Some(lease) = n.lease_until {
        item.insert("lease_until_ms".into(), n_attr(lease.as_millisecond()));
    }
    Ok(item)
}

fn n_attr(v: i64) -> AttributeValue {
    n(v)
}

fn notification_from(mut item: Item) -> Result<Notification, StoreError> {
    for extra in ["created_key", "expires_at", "lease_until_ms"] {
        item.remove(extra);
    }
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// An update expression with its attribute names and values.
type UpdateParts = (String, HashMap<String, String>, Item);

/// `(update expression, names, values)` for a transition.
fn transition_update(change: &Transition) -> Result<UpdateParts, StoreError> {
    let (set, remove, names, values) = transition_clauses(change, "attempts")?;
    Ok((update_expression(&set, &remove), names, values))
}

fn update_expression(set: &[String], remove: &[String]) -> String {
    let mut expression = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    expression
}

/// The attributes a transition sets or removes.
fn touched(change: &Transition) -> Vec<&'static str> {
    let mut out = vec!["status", "updated_at"];
    let named = [
        ("reason", change.reason.is_some()),
        ("last_error", change.last_error.is_some()),
        ("lease_until", change.lease_until.is_some()),
        ("lease_until_ms", change.lease_until.is_some()),
        ("provider_message_id", change.provider_message_id.is_some()),
        ("provider", change.provider.is_some()),
        ("attempts", change.attempts != AttemptChange::Keep),
        ("fallback", change.fallback.is_some()),
        ("sent_at", change.sent_at.is_some()),
    ];
    out.extend(named.into_iter().filter(|(_, yes)| *yes).map(|(name, _)| name));
    out
}

/// `(update expression, names, values)` for an upsert: the transition's clauses (its attempt
/// count starting from the record's when there is no item), and every other attribute of the
/// record set where the item lacks it (`if_not_exists`): on a new item, the whole record.
fn upsert_update(record: &Notification, change: &Transition) -> Result<UpdateParts, StoreError> {
    let (mut set, remove, mut names, mut values) = transition_clauses(change, "if_not_exists(attempts, :c_attempts)")?;
    if change.attempts != AttemptChange::Keep {
        values.insert(":c_attempts".into(), n(i64::from(record.attempts)));
    }
    let touched = touched(change);
    let mut fields: Vec<(String, AttributeValue)> = notification_item(record)?.into_iter().filter(|(name, _)| name != "notification_id" && !touched.contains(&name.as_str())).collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (name, value)) in fields.into_iter().enumerate() {
        set.push(format!("#c{i} = if_not_exists(#c{i}, :c{i})"));
        names.insert(format!("#c{i}"), name);
        values.insert(format!(":c{i}"), value);
    }
    Ok((update_expression(&set, &remove), names, values))
}

/// The SET and REMOVE clauses of a transition, with their names and values; `attempts` is what
/// a counted or refunded attempt starts from.
type Clauses = (Vec<String>, Vec<String>, HashMap<String, String>, Item);

fn transition_clauses(change: &Transition, attempts: &str) -> Result<Clauses, StoreError> {
    let mut set = vec!["#status = :to".to_owned(), "updated_at = :at".to_owned()];
    let mut remove = Vec::new();
    let mut names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
    let mut values = HashMap::from([(":to".to_owned(), to_av(&change.to)?), (":at".to_owned(), to_av(&change.at)?)]);
    let mut optional = |field: &str, value: &Option<Option<String>>| -> Result<(), StoreError> {
        match value {
            Some(Some(v)) => {
                set.push(format!("{field} = :{field}"));
                values.insert(format!(":{field}"), s(v.clone()));
            }
            Some(None) => remove.push(field.to_owned()),
            None => {}
        }
        Ok(())
    };
    optional("reason", &change.reason)?;
    optional("last_error", &change.last_error)?;
    match change.lease_until {
        Some(Some(until)) => {
            set.push("lease_until = :lease_until".into());
            set.push("lease_until_ms = :lease_until_ms".into());
            values.insert(":lease_until".into(), to_av(&until)?);
            values.insert(":lease_until_ms".into(), n(until.as_millisecond()));
        }
        Some(None) => {
            remove.push("lease_until".into());
            remove.push("lease_until_ms".into());
        }
        None => {}
    }
    if let Some(id) = &change.provider_message_id {
        set.push("provider_message_id = :provider_message_id".into());
        values.insert(":provider_message_id".into(), s(id.clone()));
    }
    if let Some(provider) = &change.provider {
        set.push("#provider = :provider".into());
        names.insert("#provider".into(), "provider".into());
        values.insert(":provider".into(), s(provider.clone()));
    }
    match change.attempts {
        AttemptChange::Keep => {}
        AttemptChange::Count => {
            set.push(format!("attempts = {attempts} + :one"));
            values.insert(":one".into(), n(1));
        }
        // Never below zero: a refund follows the claim that counted, under the `sending` guard.
        AttemptChange::Refund => {
            set.push(format!("attempts = {attempts} - :one"));
            values.insert(":one".into(), n(1));
        }
        AttemptChange::Reset => {
            set.push("attempts = :zero".into());
            values.insert(":zero".into(), n(0));
        }
    }
    match change.fallback {
        Some(Some(fallback)) => {
            set.push("fallback = :fallback".into());
            values.insert(":fallback".into(), to_av(&fallback)?);
        }
        Some(None) => remove.push("fallback".into()),
        None => {}
    }
    if let Some(at) = change.sent_at {
        set.push("sent_at = :sent_at".into());
        values.insert(":sent_at".into(), to_av(&at)?);
    }
    Ok((set, remove, names, values))
}

/// The guard as a condition expression over `#status` and `lease_until_ms`.
fn guard_condition(guard: &Guard, values: &mut HashMap<String, AttributeValue>) -> Result<String, StoreError> {
    let status_value = |status: Status, values: &mut HashMap<String, AttributeValue>| -> Result<String, StoreError> {
        let key = format!(":g_{}", status.as_str());
        values.insert(key.clone(), to_av(&status)?);
        Ok(key)
    };
    match guard {
        Guard::StatusIn(statuses) if statuses.is_empty() => Ok("attribute_not_exists(notification_id)".into()),
        Guard::StatusIn(statuses) => {
            let keys = statuses.iter().map(|s| status_value(*s, values)).collect::<Result<Vec<_>, _>>()?;
            Ok(format!("attribute_exists(notification_id) AND #status IN ({})", keys.join(", ")))
        }
        Guard::ClaimedUntil(lease) => {
            let sending = status_value(Status::Sending, values)?;
            values.insert(":g_lease".into(), n(lease.as_millisecond()));
            Ok(format!("#status = {sending} AND lease_until_ms = :g_lease"))
        }
        Guard::FailedBecause(why) => {
            let failed = status_value(Status::Failed, values)?;
            values.insert(":g_reason".into(), s(why.as_str()));
            Ok(format!("#status = {failed} AND reason = :g_reason"))
        }
        Guard::Claimable { now } => {
            let pending = status_value(Status::Pending, values)?;
            let scheduled = status_value(Status::Scheduled, values)?;
            let sending = status_value(Status::Sending, values)?;
            values.insert(":g_now".into(), n(now.as_millisecond()));
            Ok(format!(
                "attribute_exists(notification_id) AND (#status IN ({pending}, {scheduled}) OR (#status = {sending} AND (attribute_not_exists(lease_until_ms) OR lease_until_ms < :g_now)))"
            ))
        }
    }
}

const CURSOR_FIELDS: [&str; 3] = ["notification_id", "user_id", "created_key"];

fn encode_cursor(key: &Item) -> String {
    let map: HashMap<&str, &str> = CURSOR_FIELDS.iter().filter_map(|f| get_s(key, f).map(|v| (*f, v))).collect();
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&map).unwrap_or_default())
}

fn decode_cursor(raw: &str) -> Option<Item> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
    let map: HashMap<String, String> = serde_json::from_slice(&bytes).ok()?;
    if CURSOR_FIELDS.iter().any(|f| !map.contains_key(*f)) {
        return None;
    }
    Some(map.into_iter().map(|(k, v)| (k, s(v))).collect())
}

#[async_trait]
impl NotificationStore for DynamoStore {
    async fn create(&self, notification: &Notification) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.notifications)
            .set_item(Some(notification_item(notification)?))
            .condition_expression("attribute_not_exists(notification_id)")
            .send()
            .await;
        conditional_write(result)
    }

    async fn get(&self, id: &NotificationId) -> Result<Option<Notification>, StoreError> {
        match self.consistent_get(&self.tables.notifications, "notification_id", id.as_str()).await? {
            Some(item) => notification_from(item).map(Some),
            None => Ok(None),
        }
    }

    /// One `UpdateItem` conditioned on the owner: a time already set is kept (`if_not_exists`),
    /// an undo removes it.
    async fn mark(&self, id: &NotificationId, owner: &UserId, mark: crate::domain::InboxMark, at: Timestamp) -> Result<Option<Notification>, StoreError> {
        use crate::domain::InboxMark;
        let update = match mark {
            InboxMark::Seen => "SET seen_at = if_not_exists(seen_at, :at)",
            InboxMark::Unseen => "REMOVE seen_at, read_at",
            InboxMark::Read => "SET read_at = if_not_exists(read_at, :at), seen_at = if_not_exists(seen_at, :at)",
            InboxMark::Unread => "REMOVE read_at",
            InboxMark::Archived => "SET archived_at = if_not_exists(archived_at, :at)",
            InboxMark::Unarchived => "REMOVE archived_at",
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.tables.notifications)
            .key("notification_id", s(id.as_str()))
            .update_expression(update)
            .condition_expression("user_id = :owner")
            .expression_attribute_values(":owner", s(owner.as_str()))
            .return_values(ReturnValue::AllNew);
        if update.contains(":at") {
            request = request.expression_attribute_values(":at", to_av(&at)?);
        }
        match request.send().await {
            Ok(out) => out.attributes.map(notification_from).transpose(),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn transition(&self, id: &NotificationId, guard: &Guard, change: &Transition) -> Result<TransitionOutcome, StoreError> {
        let (update, names, mut values) = transition_update(change)?;
        let condition = guard_condition(guard, &mut values)?;
        let result = self.update_notification(id, ConditionalUpdate { update, condition, names, values }, ReturnValue::AllNew).await;
        match result {
            Ok(out) => match out.attributes {
                Some(item) => Ok(TransitionOutcome::Applied(notification_from(item)?)),
                None => self.get(id).await?.map(TransitionOutcome::Applied).ok_or_else(|| StoreError::Corrupt("updated item vanished".into())),
            },
            Err(e) if is_condition_failure(&e) => {
                Ok(self.as_it_is_now(id, &e).await?.map(TransitionOutcome::Rejected).unwrap_or(TransitionOutcome::NotFound))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// One `UpdateItem` under `attribute_not_exists(notification_id) OR <guard>`, answering the
    /// item as it was (`ALL_OLD`: none means it created it), from which the written notification
    /// follows ([`Transition::apply_or_create`]); a failed condition answers the item as it is.
    async fn upsert(&self, record: &Notification, guard: &Guard, change: &Transition) -> Result<UpsertOutcome, StoreError> {
        let id = &record.notification_id;
        let (update, names, mut values) = upsert_update(record, change)?;
        let condition = format!("attribute_not_exists(notification_id) OR ({})", guard_condition(guard, &mut values)?);
        let result = self.update_notification(id, ConditionalUpdate { update, condition, names, values }, ReturnValue::AllOld).await;
        match result {
            Ok(out) => match out.attributes.filter(|item| !item.is_empty()) {
                None => Ok(UpsertOutcome::Created(change.apply_or_create(None, record))),
                Some(old) => Ok(UpsertOutcome::Applied(change.apply_or_create(Some(&notification_from(old)?), record))),
            },
            Err(e) if is_condition_failure(&e) => {
                // The condition fails only on an item that exists.
                self.as_it_is_now(id, &e)
                    .await?
                    .map(UpsertOutcome::Rejected)
                    .ok_or_else(|| StoreError::Unavailable("notification vanished after a failed condition".into()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn list_for_event(&self, event_id: &EventId) -> Result<Vec<Notification>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.notifications)
                .index_name(BY_EVENT_INDEX)
                .key_condition_expression("event_id = :e")
                .expression_attribute_values(":e", s(event_id.as_str()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items.unwrap_or_default() {
                out.push(notification_from(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        out.sort_by_key(|n| channel_rank(n.channel));
        Ok(out)
    }

    async fn list_for_user(&self, user_id: &UserId, limit: usize, cursor: Option<&str>) -> Result<Page<Notification>, StoreError> {
        let start = match cursor {
            None => None,
            Some(raw) => match decode_cursor(raw) {
                Some(key) => Some(key),
                None => return Ok(Page { items: Vec::new(), next: None }),
            },
        };
        let page = self
            .client
            .query()
            .table_name(&self.tables.notifications)
            .index_name(BY_USER_INDEX)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", s(user_id.as_str()))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 100) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let items = page.items.unwrap_or_default().into_iter().map(notification_from).collect::<Result<Vec<_>, _>>()?;
        let next = page.last_evaluated_key.filter(|k| !k.is_empty()).map(|k| encode_cursor(&k));
        Ok(Page { items, next })
    }

    /// `REMOVE title, last_error` on condition that either is there (so a missing item is
    /// never created, and a second scrub answers `false`).
    async fn scrub_content(&self, id: &NotificationId) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.notifications)
            .key("notification_id", s(id.as_str()))
            .update_expression("REMOVE title, last_error, body")
            .condition_expression("attribute_exists(title) OR attribute_exists(last_error) OR attribute_exists(body)")
            .send()
            .await;
        conditional_write(result)
    }
}

// ---------------------------------------------------------------------------------------------
// Users.

impl DynamoStore {
    async fn user_attribute<T: serde::de::DeserializeOwned>(&self, user_id: &UserId, attribute: &str) -> Result<Option<T>, StoreError> {
        let Some(mut item) = self.consistent_get(&self.tables.users, "user_id", user_id.as_str()).await? else {
            return Ok(None);
        };
        item.remove(attribute).map(from_av).transpose()
    }

    async fn set_user_attribute<T: serde::Serialize>(&self, user_id: &UserId, attribute: &str, value: &T) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.tables.users)
            .key("user_id", s(user_id.as_str()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", to_av(value)?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl ProfileStore for DynamoStore {
    async fn get_profile(&self, user_id: &UserId) -> Result<Option<Profile>, StoreError> {
        self.user_attribute(user_id, "profile").await
    }

    async fn put_profile(&self, user_id: &UserId, profile: &Profile) -> Result<(), StoreError> {
        self.set_user_attribute(user_id, "profile", profile).await
    }

    async fn get_preferences(&self, user_id: &UserId) -> Result<Option<Preferences>, StoreError> {
        self.user_attribute(user_id, "preferences").await
    }

    async fn put_preferences(&self, user_id: &UserId, preferences: &Preferences) -> Result<(), StoreError> {
        self.set_user_attribute(user_id, "preferences", preferences).await
    }

    /// The whole user item (profile and preferences are its attributes).
    async fn delete_recipient(&self, user_id: &UserId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.users)
            .key("user_id", s(user_id.as_str()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes.is_some_and(|old| old.contains_key("profile") || old.contains_key("preferences")))
    }

    async fn get_recipient(&self, user_id: &UserId) -> Result<(Option<Profile>, Option<Preferences>), StoreError> {
        let Some(mut item) = self.consistent_get(&self.tables.users, "user_id", user_id.as_str()).await? else {
            return Ok((None, None));
        };
        let profile = item.remove("profile").map(from_av).transpose()?;
        let preferences = item.remove("preferences").map(from_av).transpose()?;
        Ok((profile, preferences))
    }
}

// ---------------------------------------------------------------------------------------------
// Connections.

/// The item of the connections table that counts live connections (attribute `active`, N). It
/// has no `user_id`, so the `by-user` index never shows it, and no `expires_at`, so TTL keeps it.
/// API Gateway connection ids never hold a `#`.
pub const ACTIVE_CONNECTIONS_KEY: &str = "#active-connections";

impl DynamoStore {
    /// `ADD active :delta` on the counter item (created at 0 if missing); the count after it.
    async fn add_active(&self, delta: i64) -> Result<i64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.connections)
            .key("connection_id", s(ACTIVE_CONNECTIONS_KEY))
            .update_expression("ADD active :delta")
            .expression_attribute_values(":delta", n(delta))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        out.attributes.as_ref().and_then(|a| get_n(a, "active")).ok_or_else(|| StoreError::Corrupt("connection counter without a value".into()))
    }
}

/// The live count moves by two writes (the connection, then the counter), each atomic on its own:
/// whether a put created or replaced, and whether a delete removed anything, comes from the old
/// item (`ReturnValues: ALL_OLD`), which DynamoDB gives to exactly one of two racing deletes. A
/// counter item rather than a transaction: every connect and disconnect writes it, and
/// transactions touching one item at the same time cancel each other.
#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, c: &Connection) -> Result<Option<i64>, StoreError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.tables.connections)
            .item("connection_id", s(&c.connection_id))
            .item("user_id", s(c.user_id.as_str()))
            .item("connected_at", to_av(&c.connected_at)?)
            .item("expires_at", n(c.expires_at.as_second()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        if out.attributes.is_some_and(|old| !old.is_empty()) {
            return Ok(None); // replaced a recorded connection
        }
        self.add_active(1).await.map(Some)
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<Option<i64>, StoreError> {
        if connection_id == ACTIVE_CONNECTIONS_KEY {
            return Ok(None);
        }
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.connections)
            .key("connection_id", s(connection_id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        if out.attributes.is_none_or(|old| old.is_empty()) {
            return Ok(None); // nothing was there to forget
        }
        self.add_active(-1).await.map(Some)
    }

    async fn active_connections(&self) -> Result<i64, StoreError> {
        let item = self.consistent_get(&self.tables.connections, "connection_id", ACTIVE_CONNECTIONS_KEY).await?;
        Ok(item.as_ref().and_then(|i| get_n(i, "active")).unwrap_or(0))
    }

    async fn connections_of(&self, user_id: &UserId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.connections)
            .index_name(BY_USER_INDEX)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", s(user_id.as_str()))
            .send()
            .await
            .map_err(unavailable)?;
        let mut connections = Vec::new();
        for mut item in out.items.unwrap_or_default() {
            let expires_at = ts(get_n(&item, "expires_at").unwrap_or_default());
            if expires_at <= now {
                continue; // TTL deletion lags; expiry counts from the attribute
            }
            let connected_at: Timestamp = item.remove("connected_at").map(from_av).transpose()?.unwrap_or(Timestamp::UNIX_EPOCH);
            connections.push(Connection {
                connection_id: get_s(&item, "connection_id").unwrap_or_default().to_owned(),
                user_id: user_id.clone(),
                connected_at,
                expires_at,
            });
        }
        connections.sort_by_key(|c| c.connected_at);
        Ok(connections)
    }
}

// ---------------------------------------------------------------------------------------------
// Suppressions.

/// The index that lists every suppression, newest first: partition `list` (always
/// [`SUPPRESSION_LIST`]), sort key `created_key` (zero-padded creation millis `#` key).
///
/// One partition on purpose. The alternative, a `Scan` sorted in code, reads the whole table for
/// every page (its cost grows with the list, and hard bounces only accumulate); the index reads
/// one page per page. Its limit is one partition's write rate (1,000 writes a second), and
/// suppressions are written at the rate of bounces and complaints, orders of magnitude below
/// it; the base table, read on every send, is keyed by address and spreads as usual.
pub const NEWEST_INDEX: &str = "newest";
pub const SUPPRESSION_LIST: &str = "suppressions";
const SUPPRESSION_CURSOR_FIELDS: [&str; 3] = ["key", "list", "created_key"];

fn suppression_created_key(s: &Suppression, key: &str) -> String {
    format!("{:015}#{key}", s.created_at.as_millisecond().max(0))
}

/// The index partition of a tenant's suppressions (`suppressions`, `suppressions#acme`).
fn suppression_list(tenant: &crate::domain::Tenant) -> String {
    if tenant.is_default() { SUPPRESSION_LIST.to_owned() } else { format!("{SUPPRESSION_LIST}#{tenant}") }
}

fn suppression_item(s: &Suppression) -> Result<Item, StoreError> {
    let key = suppression_key(&s.tenant, s.channel, &s.address);
    let mut item: Item = serde_dynamo::to_item(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    item.insert("created_key".into(), AttributeValue::S(suppression_created_key(s, &key)));
    item.insert("list".into(), AttributeValue::S(suppression_list(&s.tenant)));
    item.insert("key".into(), AttributeValue::S(key));
    Ok(item)
}

fn suppression_from(mut item: Item) -> Result<Suppression, StoreError> {
    for extra in ["key", "list", "created_key"] {
        item.remove(extra);
    }
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode_suppression_cursor(key: &Item) -> String {
    let map: HashMap<&str, &str> = SUPPRESSION_CURSOR_FIELDS.iter().filter_map(|f| get_s(key, f).map(|v| (*f, v))).collect();
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&map).unwrap_or_default())
}

fn decode_suppression_cursor(raw: &str, list: &str) -> Option<Item> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
    let map: HashMap<String, String> = serde_json::from_slice(&bytes).ok()?;
    if map.len() != SUPPRESSION_CURSOR_FIELDS.len() || SUPPRESSION_CURSOR_FIELDS.iter().any(|f| !map.contains_key(*f)) {
        return None;
    }
    if map.get("list").map(String::as_str) != Some(list) {
        return None;
    }
    Some(map.into_iter().map(|(k, v)| (k, s(v))).collect())
}

/// Reads: one consistent `GetItem` per address the router is about to send to (a lifted
/// suppression counts at once). Writes: one unconditional `PutItem` per suppression (a repeat
/// replaces it), one `DeleteItem` with `ALL_OLD` to lift one.
#[async_trait]
impl SuppressionStore for DynamoStore {
    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.suppressions)
            .set_item(Some(suppression_item(suppression)?))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn is_suppressed(&self, tenant: &crate::domain::Tenant, channel: Channel, address: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.suppressions)
            .key("key", s(suppression_key(tenant, channel, address)))
            .projection_expression("#k")
            .expression_attribute_names("#k", "key")
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item.is_some_and(|item| !item.is_empty()))
    }

    async fn list_suppressions(&self, tenant: &crate::domain::Tenant, limit: usize, cursor: Option<&str>) -> Result<Page<Suppression>, StoreError> {
        let limit = limit.clamp(1, 100);
        let list = suppression_list(tenant);
        let start = match cursor {
            None => None,
            Some(raw) => match decode_suppression_cursor(raw, &list) {
                Some(key) => Some(key),
                None => return Ok(Page { items: Vec::new(), next: None }),
            },
        };
        // One more than asked: whether it comes says whether there is a next page, so the last
        // page never carries a cursor to an empty one.
        let page = self
            .client
            .query()
            .table_name(&self.tables.suppressions)
            .index_name(NEWEST_INDEX)
            .key_condition_expression("#list = :list")
            .expression_attribute_names("#list", "list")
            .expression_attribute_values(":list", s(list))
            .scan_index_forward(false)
            .limit(limit as i32 + 1)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let mut raw = page.items.unwrap_or_default();
        let next = if raw.len() > limit {
            raw.truncate(limit);
            raw.last().map(encode_suppression_cursor)
        } else {
            // Fewer: the end, unless DynamoDB stopped at its 1 MB page size.
            page.last_evaluated_key.filter(|k| !k.is_empty()).map(|k| encode_suppression_cursor(&k))
        };
        let items = raw.into_iter().map(suppression_from).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next })
    }

    async fn remove_suppression(&self, tenant: &crate::domain::Tenant, channel: Channel, address: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.suppressions)
            .key("key", s(suppression_key(tenant, channel, address)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes.is_some_and(|old| !old.is_empty()))
    }
}

// ---------------------------------------------------------------------------------------------
// Sending rates.

/// How long a rate item outlives its second (TTL attribute `expires_at`).
pub const RATE_ITEM_TTL_SECONDS: i64 = 60;

/// A fixed one-second window per key: item `pk = "{key}#{epoch second}"`, counted with
/// `UpdateItem ADD sent :one` under `attribute_not_exists(sent) OR sent < :limit`, so concurrent
/// senders on every instance share the budget atomically. A failed condition means the second's
/// budget is spent: [`Pace::Wait`] until the next second (nothing is written). Items expire by
/// TTL a minute after their second.
///
/// Cost: one `UpdateItem` per call, one write request unit on an on-demand table (items stay
/// under 1 KB), whether it answers `Go` or `Wait`: a condition check that fails is still billed
/// as a write. So the platform does not acquire one by one: ingest and the paced providers go
/// through [`LeasedLimiter`](crate::ports::LeasedLimiter), which leases blocks with one `lease`
/// each (one write per block, about a tenth of the rate). TTL deletions are free.
///
/// `lease` is `UpdateItem ADD sent :wanted` with no condition, answering the new count
/// (`ReturnValues UPDATED_NEW`): what was under the budget before it is granted. The count may
/// pass the budget (harmlessly: no one is granted beyond it, and `acquire`'s condition holds),
/// and concurrent leases never sum over it, as each `ADD` is atomic.
#[async_trait]
impl RateLimiter for DynamoStore {
    async fn acquire(&self, key: &str, per_second: u32, now: Timestamp) -> Result<Pace, StoreError> {
        let second = now.as_second();
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.rate_limits)
            .key("pk", s(format!("{key}#{second}")))
            .update_expression("ADD sent :one SET expires_at = :exp")
            .condition_expression("attribute_not_exists(sent) OR sent < :limit")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(i64::from(per_second.max(1))))
            .expression_attribute_values(":exp", n(second + RATE_ITEM_TTL_SECONDS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Pace::Go),
            Err(e) if is_condition_failure(&e) => Ok(Pace::Wait(crate::ports::pacing::until_next_second(now))),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn lease(&self, key: &str, per_second: u32, wanted: u32, now: Timestamp) -> Result<u32, StoreError> {
        if wanted == 0 {
            return Ok(0);
        }
        let second = now.as_second();
        let updated = self
            .client
            .update_item()
            .table_name(&self.tables.rate_limits)
            .key("pk", s(format!("{key}#{second}")))
            .update_expression("ADD sent :wanted SET expires_at = :exp")
            .expression_attribute_values(":wanted", n(i64::from(wanted)))
            .expression_attribute_values(":exp", n(second + RATE_ITEM_TTL_SECONDS))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        let count = updated
            .attributes
            .as_ref()
            .and_then(|item| get_n(item, "sent"))
            .ok_or_else(|| StoreError::Corrupt(format!("rate item {key}#{second}: no count after ADD")))?;
        let before = u64::try_from(count - i64::from(wanted)).unwrap_or(0);
        Ok(crate::ports::pacing::granted(per_second, before, wanted))
    }
}

// ---------------------------------------------------------------------------------------------
// The key directory: `api-keys`, partition key `pk` (S): `key#<hex SHA-256>` for a key,
// `tenant#<name>` for a tenant's settings. A small table (one item per key and tenant), read
// by `GetItem` on an API call the cache has not seen; listing and revoking by id scan it.

const KEY_PREFIX: &str = "key#";
const TENANT_PREFIX: &str = "tenant#";

fn key_item(key: &crate::ports::StoredKey) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    item.insert("pk".into(), s(format!("{KEY_PREFIX}{}", key.key_hash)));
    Ok(item)
}

fn key_from(mut item: Item) -> Result<crate::ports::StoredKey, StoreError> {
    item.remove("pk");
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("stored API key cannot be read: {e}")))
}

impl DynamoStore {
    /// Every key item (the table is small: one item per key), following the scan's pages.
    async fn all_keys(&self) -> Result<Vec<crate::ports::StoredKey>, StoreError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.tables.api_keys)
                .filter_expression("begins_with(pk, :prefix)")
                .expression_attribute_values(":prefix", s(KEY_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items.unwrap_or_default() {
                keys.push(key_from(item)?);
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => return Ok(keys),
            }
        }
    }
}

/// Reads: one consistent `GetItem` per key lookup. Writes: `PutItem` to create, one conditional
/// `UpdateItem` (`if_not_exists`) to revoke.
#[async_trait]
impl crate::ports::KeyDirectory for DynamoStore {
    async fn find_key(&self, key_hash: &str) -> Result<Option<crate::ports::StoredKey>, StoreError> {
        let item = self.consistent_get(&self.tables.api_keys, "pk", &format!("{KEY_PREFIX}{key_hash}")).await?;
        item.filter(|i| !i.is_empty()).map(key_from).transpose()
    }

    async fn put_key(&self, key: &crate::ports::StoredKey) -> Result<(), StoreError> {
        self.client.put_item().table_name(&self.tables.api_keys).set_item(Some(key_item(key)?)).send().await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_keys(&self, tenant: Option<&crate::domain::Tenant>) -> Result<Vec<crate::ports::StoredKey>, StoreError> {
        let mut keys = self.all_keys().await?;
        keys.retain(|k| tenant.is_none_or(|t| k.tenant == *t));
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.key_id.cmp(&b.key_id)));
        Ok(keys)
    }

    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<Option<crate::ports::StoredKey>, StoreError> {
        let Some(key) = self.all_keys().await?.into_iter().find(|k| k.key_id == key_id) else {
            return Ok(None);
        };
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.api_keys)
            .key("pk", s(format!("{KEY_PREFIX}{}", key.key_hash)))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :at)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", s(at.to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => out.attributes.map(key_from).transpose(),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn tenant_settings(&self, tenant: &crate::domain::Tenant) -> Result<Option<crate::ports::TenantSettings>, StoreError> {
        let item = self.consistent_get(&self.tables.api_keys, "pk", &format!("{TENANT_PREFIX}{tenant}")).await?;
        match item.filter(|i| !i.is_empty()) {
            None => Ok(None),
            Some(mut item) => {
                item.remove("pk");
                serde_dynamo::from_item(item).map(Some).map_err(|e| StoreError::Corrupt(format!("stored tenant settings cannot be read: {e}")))
            }
        }
    }

    async fn put_tenant_settings(&self, tenant: &crate::domain::Tenant, settings: &crate::ports::TenantSettings) -> Result<(), StoreError> {
        let mut item: Item = serde_dynamo::to_item(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        item.insert("pk".into(), s(format!("{TENANT_PREFIX}{tenant}")));
        self.client.put_item().table_name(&self.tables.api_keys).set_item(Some(item)).send().await.map_err(unavailable)?;
        Ok(())
    }
}
