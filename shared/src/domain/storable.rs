//! What DynamoDB or SQS can never take, found before an event is accepted.
//!
//! An accepted event is written to DynamoDB and travels in an SQS message. Input either of them
//! refuses would fail every attempt to record or queue it, so ingest rejects it up front with
//! `422` instead of answering "unavailable, retry" forever. Each check is a pure function over a
//! JSON value and reports every failing member as a [`FieldError`] whose path is a JSON Pointer
//! (RFC 6901) into the request body.

use serde_json::{Number, Value};

use super::problem::FieldError;

/// DynamoDB numbers hold at most this many significant digits.
pub const MAX_SIGNIFICANT_DIGITS: usize = 38;
/// The decimal exponent of the smallest non-zero magnitude DynamoDB stores, `1E-130`.
pub const MIN_DECIMAL_EXPONENT: i64 = -130;
/// The decimal exponent of the largest magnitude DynamoDB stores,
/// `9.9999999999999999999999999999999999999E+125`.
pub const MAX_DECIMAL_EXPONENT: i64 = 125;

/// How deeply a payload may nest, counting the payload object itself as level 1.
///
/// DynamoDB nests attributes at most 32 levels deep in an item. An event is stored as an item
/// whose `record` attribute (a map: level 1) holds `event` (level 2), which holds `payload`
/// (level 3); so the payload's own levels may number 32 - 2 = 30.
pub const MAX_PAYLOAD_DEPTH: usize = 30;

/// A check stops after reporting this many members, so a hostile body cannot make the answer
/// larger than itself many times over.
pub const MAX_REPORTED: usize = 100;

/// Every reason the event posted as `body` can never be stored or queued: numbers and nesting
/// of `body["payload"]` (reported under `/payload`), and characters anywhere in `body`.
pub fn check_event(body: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(payload) = body.get("payload") {
        errors.extend(number_errors(payload, "/payload"));
        errors.extend(depth_errors(payload, "/payload", MAX_PAYLOAD_DEPTH));
    }
    errors.extend(character_errors(body, ""));
    errors.truncate(MAX_REPORTED);
    errors
}

/// One reference token of a JSON Pointer: `~` is written `~0` and `/` is written `~1`.
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Numbers in `value` (found at pointer `path`) that DynamoDB cannot store.
pub fn number_errors(value: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(value, path, |node| {
        if let Value::Number(n) = node.value
            && let Some(message) = number_problem(n)
        {
            errors.push(FieldError::new(node.path, message));
        }
        step(&errors)
    });
    errors
}

/// Objects and arrays of `value` (found at pointer `path`) nested deeper than `max_depth`
/// levels, `value` itself being level 1. Each too-deep branch is reported once, at the object or
/// array that goes one level too far; scalars add no level.
pub fn depth_errors(value: &Value, path: &str, max_depth: usize) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(value, path, |node| {
        if matches!(node.value, Value::Object(_) | Value::Array(_)) && node.depth > max_depth {
            errors.push(FieldError::new(node.path, format!("nests deeper than {max_depth} levels, more than can be stored")));
            return if errors.len() >= MAX_REPORTED { Step::Stop } else { Step::Skip };
        }
        step(&errors)
    });
    errors
}

/// Strings and member names in `value` (found at pointer `path`) holding a character SQS does
/// not accept in a message body. A member name is reported at the member's pointer.
pub fn character_errors(value: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(value, path, |node| {
        if let Some(c) = node.key.and_then(refused_char) {
            errors.push(FieldError::new(node.path, format!("the member name holds U+{:04X}, a character a queue message cannot carry", u32::from(c))));
        }
        if let Value::String(s) = node.value
            && let Some(c) = refused_char(s)
        {
            errors.push(FieldError::new(node.path, format!("holds U+{:04X}, a character a queue message cannot carry", u32::from(c))));
        }
        step(&errors)
    });
    errors.truncate(MAX_REPORTED);
    errors
}

/// SQS accepts `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF` in a body.
/// Control characters leave JSON encoding escaped (`\u0000`) and a Rust string holds no
/// surrogates, so of what JSON carries verbatim only U+FFFE and U+FFFF are refused.
fn refused_char(s: &str) -> Option<char> {
    s.chars().find(|c| matches!(c, '\u{FFFE}' | '\u{FFFF}'))
}

/// Why DynamoDB would refuse `n`, if it would.
fn number_problem(n: &Number) -> Option<String> {
    decimal_problem(&n.to_string())
}

/// Why DynamoDB would refuse the number written `text` (JSON number syntax), if it would.
///
/// Works on the decimal text, so it is exact whether serde_json keeps numbers as
/// `f64`/`i64`/`u64` (as this workspace does: an `f64` prints at most 17 significant digits, so
/// only the range can fail) or as text (its `arbitrary_precision` feature).
fn decimal_problem(text: &str) -> Option<String> {
    const RANGE: &str = "is a number DynamoDB cannot store: it must be 0 or of a magnitude from 1E-130 to \
                         9.9999999999999999999999999999999999999E+125";
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].trim_start_matches('+').parse::<i64>().ok()),
        None => (text, Some(0)),
    };
    let mantissa = mantissa.trim_start_matches('-');
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let first = digits.iter().position(|&d| d != b'0')?; // zero is storable
    let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
    // The decimal exponent of the first significant digit: d.ddd × 10^magnitude.
    let Some(magnitude) = exponent.and_then(|e| e.checked_add(int.len() as i64 - 1 - first as i64)) else {
        return Some(RANGE.to_owned());
    };
    if !(MIN_DECIMAL_EXPONENT..=MAX_DECIMAL_EXPONENT).contains(&magnitude) {
        return Some(RANGE.to_owned());
    }
    if last - first + 1 > MAX_SIGNIFICANT_DIGITS {
        return Some(format!("has more than {MAX_SIGNIFICANT_DIGITS} significant digits, more than DynamoDB can store"));
    }
    None
}

/// What a visitor wants next.
enum Step {
    /// Visit this node's members.
    Descend,
    /// Leave this node's members out.
    Skip,
    /// Stop the walk.
    Stop,
}

fn step(errors: &[FieldError]) -> Step {
    if errors.len() >= MAX_REPORTED { Step::Stop } else { Step::Descend }
}

struct Node<'a> {
    value: &'a Value,
    /// The JSON Pointer of `value`.
    path: &'a str,
    /// 1 for the value the walk starts at, one more for each object or array it is inside.
    depth: usize,
    /// The member name `value` is reached by, when its parent is an object.
    key: Option<&'a str>,
}

/// Visits `root` and everything in it in document order (object members in key order), with an
/// explicit stack so no input can exhaust the call stack.
fn walk(root: &Value, root_path: &str, mut visit: impl FnMut(Node<'_>) -> Step) {
    let mut stack: Vec<(&Value, String, usize, Option<&str>)> = vec![(root, root_path.to_owned(), 1, None)];
    while let Some((value, path, depth, key)) = stack.pop() {
        match visit(Node { value, path: &path, depth, key }) {
            Step::Stop => return,
            Step::Skip => continue,
            Step::Descend => {}
        }
        match value {
            Value::Object(members) => {
                for (k, v) in members.iter().rev() {
                    stack.push((v, format!("{path}/{}", pointer_token(k)), depth + 1, Some(k.as_str())));
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate().rev() {
                    stack.push((v, format!("{path}/{i}"), depth + 1, None));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    /// `levels` objects, each the only member `n` of the one around it.
    fn nested(levels: usize) -> Value {
        let mut v = json!({});
        for _ in 1..levels {
            v = json!({ "n": v });
        }
        v
    }

    #[test]
    fn numbers_dynamodb_stores_pass() {
        let payload: Value = serde_json::from_str(
            r#"{"zero": 0, "neg_zero": -0.0, "small": 1e-130, "neg_small": -1e-130, "big": 9.99999999999999e125,
                "neg_big": -9.99999999999999e125, "int": 18446744073709551615, "neg_int": -9223372036854775808,
                "plain": 59.90, "list": [1, 2.5, 1e100]}"#,
        )
        .unwrap();
        assert_eq!(number_errors(&payload, "/payload"), vec![]);
    }

    #[test]
    fn numbers_out_of_dynamodbs_range_are_named() {
        let payload: Value = serde_json::from_str(
            r#"{"big": 1e126, "neg_big": -1e126, "huge": 1.7e308, "tiny": 9.999999999999999e-131,
                "neg_tiny": -1e-131, "subnormal": 5e-324, "ok": 1, "deep": {"list": [0, 2e200]}}"#,
        )
        .unwrap();
        let errors = number_errors(&payload, "/payload");
        assert_eq!(
            paths(&errors),
            vec![
                "/payload/big",
                "/payload/deep/list/1",
                "/payload/huge",
                "/payload/neg_big",
                "/payload/neg_tiny",
                "/payload/subnormal",
                "/payload/tiny",
            ]
        );
        assert!(errors[0].message.contains("1E-130"), "{}", errors[0].message);
    }

    #[test]
    fn significant_digits_and_exponents_are_read_from_the_decimal_text() {
        // serde_json here keeps numbers as f64/i64/u64, whose text never has more than 20
        // significant digits; with `arbitrary_precision` longer ones could arrive.
        assert_eq!(decimal_problem("0"), None);
        assert_eq!(decimal_problem("-0.000e999999999999999999999"), None);
        assert_eq!(decimal_problem("1e-130"), None);
        assert_eq!(decimal_problem("0.001E-127"), None);
        assert_eq!(decimal_problem("9.9999999999999999999999999999999999999E+125"), None);
        assert_eq!(decimal_problem("99999999999999999999999999999999999999"), None);
        assert_eq!(decimal_problem("1234567890123456789012345678901234567800000"), None);
        assert_eq!(decimal_problem("0.00012345678901234567890123456789012345678"), None);
        assert!(decimal_problem("0.0001e-127").unwrap().contains("1E-130"));
        assert!(decimal_problem("10e125").unwrap().contains("1E-130"));
        assert!(decimal_problem("1e99999999999999999999").unwrap().contains("1E-130"));
        assert!(decimal_problem("123456789012345678901234567890123456789").unwrap().contains("38 significant digits"));
        assert!(decimal_problem("1.00000000000000000000000000000000000001").unwrap().contains("38 significant digits"));
        // What serde_json prints for the f64s at the edges of the range.
        assert_eq!(number_problem(&Number::from_f64(1e-130).unwrap()), None);
        assert!(number_problem(&Number::from_f64(1e126).unwrap()).is_some());
        // Checked as it would be stored: the f64 nearest to this is 1e126.
        assert!(number_problem(&serde_json::from_str::<Number>("9.999999999999999e125").unwrap()).is_some());
    }

    #[test]
    fn depth_thirty_passes_and_thirty_one_is_refused_at_the_level_too_deep() {
        assert_eq!(depth_errors(&nested(MAX_PAYLOAD_DEPTH), "/payload", MAX_PAYLOAD_DEPTH), vec![]);
        // Scalars add no level: a number inside the thirtieth object is fine.
        let mut with_scalar = nested(MAX_PAYLOAD_DEPTH);
        *with_scalar.pointer_mut(&"/n".repeat(MAX_PAYLOAD_DEPTH - 1)).unwrap() = json!({"x": 1});
        assert_eq!(depth_errors(&with_scalar, "/payload", MAX_PAYLOAD_DEPTH), vec![]);

        let errors = depth_errors(&nested(MAX_PAYLOAD_DEPTH + 1), "/payload", MAX_PAYLOAD_DEPTH);
        assert_eq!(paths(&errors), vec![format!("/payload{}", "/n".repeat(MAX_PAYLOAD_DEPTH))]);
        assert!(errors[0].message.contains("30 levels"), "{}", errors[0].message);
        // Arrays are levels too, and each too-deep branch is named once.
        let arrays = json!({"a": nested(MAX_PAYLOAD_DEPTH), "b": [nested(MAX_PAYLOAD_DEPTH - 1)]});
        let errors = depth_errors(&arrays, "/payload", MAX_PAYLOAD_DEPTH);
        assert_eq!(
            paths(&errors),
            vec![format!("/payload/a{}", "/n".repeat(MAX_PAYLOAD_DEPTH - 1)), format!("/payload/b/0{}", "/n".repeat(MAX_PAYLOAD_DEPTH - 2))]
        );
    }

    #[test]
    fn u_ffff_in_a_member_name_and_in_a_value_are_named() {
        let body = json!({
            "event_id": "e-1",
            "payload": {"na\u{FFFF}me": "fine", "list": ["ok", "bad \u{FFFE}"], "nested": {"v": "x\u{FFFF}"}},
        });
        let errors = character_errors(&body, "");
        assert_eq!(paths(&errors), vec!["/payload/list/1", "/payload/na\u{FFFF}me", "/payload/nested/v"]);
        assert!(errors[0].message.contains("U+FFFE"), "{}", errors[0].message);
        assert!(errors[1].message.contains("member name") && errors[1].message.contains("U+FFFF"), "{}", errors[1].message);
    }

    #[test]
    fn characters_sqs_accepts_pass() {
        let body = json!({"payload": {"tab\t": "line\nbreak\r\u{0}\u{1F}", "emoji": "🎉", "private": "\u{E000}\u{FFFD}\u{10FFFF}"}});
        assert_eq!(character_errors(&body, ""), vec![]);
    }

    #[test]
    fn pointers_escape_tilde_and_slash() {
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
        assert_eq!(pointer_token("~1"), "~01");
        let payload = json!({"a/b": {"~x": 1e300}, "k/\u{FFFF}": 1});
        assert_eq!(paths(&number_errors(&payload, "/payload")), vec!["/payload/a~1b/~0x"]);
        assert_eq!(paths(&character_errors(&payload, "/payload")), vec!["/payload/k~1\u{FFFF}"]);
        // The pointers resolve to what they name.
        let body = json!({ "payload": payload });
        assert_eq!(body.pointer("/payload/a~1b/~0x"), Some(&json!(1e300)));
    }

    #[test]
    fn check_event_combines_the_checks_over_the_payload_and_the_whole_body() {
        let body = json!({"event_id": "e-1", "payload": {"n": 1e130, "deep": nested(MAX_PAYLOAD_DEPTH), "s": "\u{FFFF}"}});
        assert_eq!(paths(&check_event(&body)), vec!["/payload/n", format!("/payload/deep{}", "/n".repeat(MAX_PAYLOAD_DEPTH - 1)).as_str(), "/payload/s"]);
        assert_eq!(check_event(&json!({"event_id": "e-1"})), vec![]);
    }

    #[test]
    fn reports_stop_at_the_cap() {
        let body = json!({"payload": {"list": vec![json!(1e200); MAX_REPORTED * 3]}});
        assert_eq!(number_errors(&body["payload"], "/payload").len(), MAX_REPORTED);
        assert_eq!(check_event(&body).len(), MAX_REPORTED);
    }
}
