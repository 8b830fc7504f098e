//! RFC 9457 problem details: every error the API returns.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

use crate::domain::FieldError;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `https://notify.dev/problems/validation`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every failing field (validation problems only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Sent as a `Retry-After` header (whole seconds), not in the body.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("https://notify.dev/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Asks the client to wait `wait` before retrying, rounded up to whole seconds (at least 1).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON", detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", "send an API key as `Authorization: Bearer <key>`")
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not Found", detail)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Payload Too Large", format!("the body must be at most {limit} bytes"))
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Validation Failed", format!("{} field(s) failed validation", errors.len()))
            .with_errors(errors)
    }

    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service Unavailable", "a backing service is unavailable; retry with the same event_id")
    }

    /// `409`: the `event_id` was already used for an event with a different body.
    pub fn idempotency_conflict() -> Self {
        Self::new(StatusCode::CONFLICT, "idempotency-conflict", "Conflict", "this event_id was already used for an event with a different body")
    }

    /// `409`: another request is accepting an event with this `event_id` right now; the
    /// same request may succeed after `retry_after` (also sent as `Retry-After`).
    pub fn in_progress(retry_after: Duration) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "in-progress",
            "Conflict",
            "an event with this event_id is being accepted right now; retry after the time in Retry-After",
        )
        .with_retry_after(retry_after)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(p: Problem) -> Option<String> {
        p.into_response().headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn retry_after_is_a_header_of_whole_seconds_rounded_up() {
        assert_eq!(retry_after(Problem::unavailable()), None);
        assert_eq!(retry_after(Problem::unavailable().with_retry_after(Duration::from_secs(1))).as_deref(), Some("1"));
        assert_eq!(retry_after(Problem::in_progress(Duration::from_millis(29_001))).as_deref(), Some("30"));
        assert_eq!(retry_after(Problem::in_progress(Duration::from_secs(30))).as_deref(), Some("30"));
        assert_eq!(retry_after(Problem::in_progress(Duration::ZERO)).as_deref(), Some("1"));
    }

    #[test]
    fn retry_after_stays_out_of_the_body() {
        let body = serde_json::to_value(Problem::in_progress(Duration::from_secs(5))).unwrap();
        assert_eq!(body["type"], "https://notify.dev/problems/in-progress");
        assert!(body.get("retry_after").is_none(), "{body}");
    }

    #[test]
    fn a_body_conflict_and_a_request_in_progress_have_different_types() {
        let conflict = Problem::idempotency_conflict();
        let busy = Problem::in_progress(Duration::from_secs(1));
        assert_eq!((conflict.status, busy.status), (409, 409));
        assert_eq!(conflict.type_, "https://notify.dev/problems/idempotency-conflict");
        assert_ne!(conflict.type_, busy.type_);
        assert_eq!(conflict.retry_after, None);
    }
}
