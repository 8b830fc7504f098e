//! The event envelope producers post to `POST /v1/events`, parsed into domain types.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::channel::{Channel, Priority};
use super::ids::{EventId, UserId};
use super::problem::FieldError;
use super::profile::is_locale_tag;

/// An event that passed envelope validation (its payload is checked against the catalog later).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "event_id": "evt-order-A-17", "event_type": "order.completed", "user_id": "u-42", "priority": "high",
    "payload": {"order_id": "A-17", "total": "59.90", "currency": "EUR", "items": [{"name": "Coffee beans", "quantity": 2}]},
    "occurred_at": "2026-11-22T10:00:00Z"
}))]
pub struct Event {
    pub event_id: EventId,
    pub event_type: String,
    pub user_id: UserId,
    /// The event type's data, checked against its JSON Schema (`GET /v1/event-types/{event_type}`).
    /// Absent or null on submission means `{}`; null when read back after the user was erased.
    #[schema(value_type = Option<Object>)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub send_after: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub occurred_at: Option<Timestamp>,
}

const KNOWN_FIELDS: [&str; 9] = [
    "event_id", "event_type", "user_id", "payload", "priority", "channels", "locale", "send_after",
    "occurred_at",
];

fn event_type_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn required_str<'a>(obj: &'a serde_json::Map<String, Value>, key: &str, errors: &mut Vec<FieldError>) -> Option<&'a str> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(format!("/{key}"), "is required"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(FieldError::new(format!("/{key}"), "must be a string"));
            None
        }
    }
}

fn optional_timestamp(obj: &serde_json::Map<String, Value>, key: &str, errors: &mut Vec<FieldError>) -> Option<Timestamp> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.parse::<Timestamp>() {
            Ok(t) => Some(t),
            Err(_) => {
                errors.push(FieldError::new(format!("/{key}"), "must be an RFC 3339 timestamp with an offset, e.g. 2026-12-01T09:00:00Z"));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(format!("/{key}"), "must be a string"));
            None
        }
    }
}

impl Event {
    /// Parses the envelope, reporting every failing field at once.
    pub fn parse(body: &Value) -> Result<Event, Vec<FieldError>> {
        let Some(obj) = body.as_object() else {
            return Err(vec![FieldError::new("", "must be a JSON object")]);
        };
        let mut errors = Vec::new();
        for key in obj.keys() {
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                errors.push(FieldError::new(format!("/{key}"), "is not a field of an event"));
            }
        }

        let event_id = required_str(obj, "event_id", &mut errors).and_then(|s| {
            EventId::parse(s).map_err(|m| errors.push(FieldError::new("/event_id", m))).ok()
        });
        let event_type = required_str(obj, "event_type", &mut errors).and_then(|s| {
            if event_type_ok(s) {
                Some(s.to_owned())
            } else {
                errors.push(FieldError::new("/event_type", "must be 1..128 lowercase letters, digits, '.', '_' or '-'"));
                None
            }
        });
        let user_id = required_str(obj, "user_id", &mut errors).and_then(|s| {
            UserId::parse(s).map_err(|m| errors.push(FieldError::new("/user_id", m))).ok()
        });
        let payload = match obj.get("payload") {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                errors.push(FieldError::new("/payload", "must be a JSON object"));
                Value::Null
            }
        };
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => s.parse::<Priority>().map_err(|m| errors.push(FieldError::new("/priority", m))).ok(),
            Some(_) => {
                errors.push(FieldError::new("/priority", "must be a string"));
                None
            }
        };
        let channels = match obj.get("channels") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out: Vec<Channel> = Vec::new();
                if items.is_empty() {
                    errors.push(FieldError::new("/channels", "must name at least one channel"));
                }
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(str::parse::<Channel>) {
                        Some(Ok(c)) if !out.contains(&c) => out.push(c),
                        Some(Ok(_)) => errors.push(FieldError::new(format!("/channels/{i}"), "is listed twice")),
                        Some(Err(m)) => errors.push(FieldError::new(format!("/channels/{i}"), m)),
                        None => errors.push(FieldError::new(format!("/channels/{i}"), "must be a string")),
                    }
                }
                Some(out)
            }
            Some(_) => {
                errors.push(FieldError::new("/channels", "must be an array of channel names"));
                None
            }
        };
        let locale = match obj.get("locale") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if is_locale_tag(s) => Some(s.clone()),
            Some(_) => {
                errors.push(FieldError::new("/locale", "must be a language tag such as en or uk-UA"));
                None
            }
        };
        let send_after = optional_timestamp(obj, "send_after", &mut errors);
        let occurred_at = optional_timestamp(obj, "occurred_at", &mut errors);

        match (event_id, event_type, user_id) {
            (Some(event_id), Some(event_type), Some(user_id)) if errors.is_empty() => Ok(Event {
                event_id,
                event_type,
                user_id,
                payload,
                priority,
                channels,
                locale,
                send_after,
                occurred_at,
            }),
            _ => Err(errors),
        }
    }
}

impl Event {
    /// Whether `other` is the same event, as far as a round trip through a store can tell: like
    /// `==`, except that payload numbers compare by value. DynamoDB keeps a number's value, not
    /// its JSON form: `59.0` is stored as `59` and read back as an integer, which `==` on
    /// [`Value`] tells apart from the float.
    pub fn same_as(&self, other: &Event) -> bool {
        // Destructured so that a new field cannot be left out of the comparison.
        let Event { event_id, event_type, user_id, payload, priority, channels, locale, send_after, occurred_at } = self;
        *event_id == other.event_id
            && *event_type == other.event_type
            && *user_id == other.user_id
            && same_json(payload, &other.payload)
            && *priority == other.priority
            && *channels == other.channels
            && *locale == other.locale
            && *send_after == other.send_after
            && *occurred_at == other.occurred_at
    }
}

/// `a == b`, but numbers compare by value: an integral float equals the integer it holds.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_value(x) == number_value(y),
        (Value::Array(xs), Value::Array(ys)) => xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_json(x, y)),
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len() && xs.iter().all(|(k, x)| ys.get(k).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

#[derive(PartialEq)]
enum NumberValue {
    Integer(i128),
    Float(f64),
}

fn number_value(n: &serde_json::Number) -> NumberValue {
    if let Some(i) = n.as_i64() {
        return NumberValue::Integer(i.into());
    }
    if let Some(u) = n.as_u64() {
        return NumberValue::Integer(u.into());
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    // Every integral f64 below 2^127 converts to i128 exactly.
    if f.fract() == 0.0 && f.abs() < 2f64.powi(127) { NumberValue::Integer(f as i128) } else { NumberValue::Float(f) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_documented_example() {
        let e = Event::parse(&json!({
            "event_id": "evt-01J", "event_type": "order.completed", "user_id": "u-42",
            "payload": {"order_id": "A-17"}, "priority": "high", "channels": ["email", "websocket"],
            "locale": "uk", "send_after": "2026-12-01T09:00:00Z", "occurred_at": "2026-11-22T10:00:00+02:00"
        }))
        .unwrap();
        assert_eq!(e.event_id.as_str(), "evt-01J");
        assert_eq!(e.priority, Some(Priority::High));
        assert_eq!(e.channels, Some(vec![Channel::Email, Channel::Websocket]));
        assert_eq!(e.send_after.unwrap().to_string(), "2026-12-01T09:00:00Z");
    }

    #[test]
    fn lists_every_failing_field() {
        let errors = Event::parse(&json!({
            "event_type": "Bad Type", "user_id": 42, "payload": [1],
            "priority": "urgent", "channels": ["email", "fax", "email"], "send_after": "tomorrow",
            "colour": "red"
        }))
        .unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in ["/colour", "/event_id", "/event_type", "/user_id", "/payload", "/priority", "/channels/1", "/channels/2", "/send_after"] {
            assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
        }
    }

    #[test]
    fn same_as_compares_payload_numbers_by_value() {
        let parse = |text: &str| Event::parse(&serde_json::from_str(text).unwrap()).unwrap();
        let sent = parse(r#"{"event_id": "e-1", "event_type": "t", "user_id": "u", "payload": {"a": 59.0, "b": [1e20, 0.5], "c": -0.0}}"#);
        // What DynamoDB gives back: integral numbers as integers.
        let stored = parse(r#"{"event_id": "e-1", "event_type": "t", "user_id": "u", "payload": {"a": 59, "b": [100000000000000000000, 0.5], "c": 0}}"#);
        assert_ne!(sent, stored, "== tells the float from the integer");
        assert!(sent.same_as(&stored) && stored.same_as(&sent));

        for other in [
            r#"{"event_id": "e-1", "event_type": "t", "user_id": "u", "payload": {"a": 59.5, "b": [1e20, 0.5], "c": 0}}"#,
            r#"{"event_id": "e-1", "event_type": "t", "user_id": "u", "payload": {"a": 59, "b": [1e20, 0.5]}}"#,
            r#"{"event_id": "e-1", "event_type": "t", "user_id": "u", "payload": {"a": "59", "b": [1e20, 0.5], "c": 0}}"#,
            r#"{"event_id": "e-1", "event_type": "t", "user_id": "u", "payload": {"a": 59, "b": [1e20, 0.5], "c": 0}, "priority": "low"}"#,
            r#"{"event_id": "e-1", "event_type": "t", "user_id": "v", "payload": {"a": 59, "b": [1e20, 0.5], "c": 0}}"#,
        ] {
            assert!(!sent.same_as(&parse(other)), "{other}");
        }
        // Integers beyond f64's precision still compare exactly.
        let big = |n: &str| parse(&format!(r#"{{"event_id": "e-1", "event_type": "t", "user_id": "u", "payload": {{"n": {n}}}}}"#));
        assert!(!big("9007199254740993").same_as(&big("9007199254740992.0")));
        assert!(big("9007199254740992").same_as(&big("9007199254740992.0")));
    }

    #[test]
    fn a_non_object_body_is_one_error_at_the_root() {
        assert_eq!(Event::parse(&json!([1, 2])).unwrap_err()[0].path, "");
    }
}
