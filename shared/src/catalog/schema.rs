//! Payload validation against an event type's JSON Schema.

use serde_json::Value;

use crate::domain::FieldError;

pub(super) struct PayloadSchema(jsonschema::Validator);

impl std::fmt::Debug for PayloadSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayloadSchema")
    }
}

impl PayloadSchema {
    pub(super) fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map(Self)
            .map_err(|e| format!("not a usable JSON Schema: {e}"))
    }

    /// Every failure, each at the JSON Pointer of the failing field (a missing required property
    /// is reported at the property's own path, not its parent's).
    pub(super) fn check(&self, payload: &Value, prefix: &str) -> Result<(), Vec<FieldError>> {
        let mut errors: Vec<FieldError> = self
            .0
            .iter_errors(payload)
            .map(|e| {
                let at = e.instance_path().to_string();
                match e.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        let name = property.as_str().map(str::to_owned).unwrap_or_else(|| property.to_string());
                        FieldError::new(format!("{prefix}{at}/{}", escape_pointer(&name)), "is required")
                    }
                    // `masked` leaves the offending value out: it may be contact details.
                    _ => FieldError::new(format!("{prefix}{at}"), e.masked().to_string()),
                }
            })
            .collect();
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        errors.dedup();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_each_failing_field_at_its_own_path() {
        let schema = PayloadSchema::compile(&json!({
            "type": "object",
            "required": ["order_id", "total"],
            "properties": {
                "order_id": {"type": "string"},
                "total": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"quantity": {"type": "integer", "minimum": 1}}}}
            }
        }))
        .unwrap();
        let errors = schema.check(&json!({"total": "abc", "items": [{"quantity": 0}]}), "/payload").unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/payload/items/0/quantity", "/payload/order_id", "/payload/total"]);
        assert!(!errors.iter().any(|e| e.message.contains("abc")), "values are masked: {errors:?}");
        assert!(schema.check(&json!({"order_id": "A-1", "total": "1.00"}), "/payload").is_ok());
    }

    #[test]
    fn a_broken_schema_is_refused() {
        assert!(PayloadSchema::compile(&json!({"type": "no-such-type"})).is_err());
    }
}
