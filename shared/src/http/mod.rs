//! The public HTTP API as axum routers. The same routers serve the local stack and, through
//! `lambda_http`, API Gateway: these functions only translate between HTTP and the handlers.

pub mod privacy;
pub mod problem;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

use crate::auth::ApiKeys;
use crate::handlers::ingest::{IngestDeps, IngestError, submit_event};
use crate::handlers::queries::{self, QueryDeps, QueryError};
use crate::metrics::{self, RejectReason};
pub use privacy::{erasure_routes, unsubscribe_routes};
pub use problem::Problem;

/// Bodies the API reads at all; `POST /v1/events` has its own, smaller limit and says so in a problem.
const READ_LIMIT: usize = 1024 * 1024;

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn body_or_problem(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, Problem> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::too_large(limit),
        _ => Problem::malformed(rejection.body_text()),
    })
}

fn authorized(keys: &ApiKeys, request: &Request) -> bool {
    keys.authorize(request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
}

/// Requires `Authorization: Bearer <key>` with a configured key.
pub async fn require_api_key(State(keys): State<Arc<ApiKeys>>, request: Request, next: Next) -> Response {
    if !authorized(&keys, &request) {
        return Problem::unauthorized().into_response();
    }
    next.run(request).await
}

/// [`require_api_key`] for `POST /v1/events`, where a refusal is a rejected event.
async fn require_api_key_for_events(State(keys): State<Arc<ApiKeys>>, request: Request, next: Next) -> Response {
    if !authorized(&keys, &request) {
        metrics::event_rejected(RejectReason::Unauthorized);
        return Problem::unauthorized().into_response();
    }
    next.run(request).await
}

// ---------------------------------------------------------------------------------------------
// Ingest function: POST /v1/events.

pub fn ingest_routes(deps: Arc<IngestDeps>, keys: Arc<ApiKeys>) -> Router {
    Router::new()
        .route("/v1/events", post(post_event))
        .route("/v1/events/batch", post(post_batch))
        .layer(DefaultBodyLimit::max(BATCH_LIMIT))
        .with_state(deps)
        .layer(middleware::from_fn_with_state(keys, require_api_key_for_events))
}

/// Every answer of `POST /v1/events` but a 2xx is a problem, counted in `EventsRejected` by its
/// reason (the 401 of a missing key is counted by the auth layer before this).
async fn post_event(State(deps): State<Arc<IngestDeps>>, headers: http::HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let key_id = rate_key(&headers);
    if let Some((wait, rate)) = crate::handlers::ingest::check_rate(&deps, &key_id).await {
        return rate_limited(wait, rate);
    }
    let limit = deps.settings.max_body_bytes;
    let body = match body_or_problem(body, limit) {
        Ok(b) => b,
        Err(p) => {
            let reason = if p.status == StatusCode::PAYLOAD_TOO_LARGE.as_u16() { RejectReason::PayloadTooLarge } else { RejectReason::MalformedJson };
            metrics::event_rejected(reason);
            return p.into_response();
        }
    };
    match submit_event(&deps, &body).await {
        Ok(accepted) => {
            let status = StatusCode::from_u16(accepted.status).unwrap_or(StatusCode::ACCEPTED);
            let mut response = json_response(status, accepted.body);
            let headers = response.headers_mut();
            if let Ok(location) = HeaderValue::from_str(&accepted.location) {
                headers.insert(header::LOCATION, location);
            }
            if accepted.replayed {
                headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => {
            metrics::event_rejected(e.reject_reason());
            ingest_problem(e).into_response()
        }
    }
}

/// The most events one `POST /v1/events/batch` carries.
pub const MAX_BATCH_EVENTS: usize = 100;
/// A batch's body limit: within what API Gateway and Lambda take in one request (6 MB).
const BATCH_LIMIT: usize = 5 * 1024 * 1024;

/// `POST /v1/events/batch`: up to 100 events, each accepted, replayed or refused on its own,
/// exactly as if it had been posted alone (idempotency, validation, the key's rate). The answer
/// is `200` with one result per event, in order: `{"index", "status", "event_id", "location",
/// "body" | "problem"}`.
async fn post_batch(State(deps): State<Arc<IngestDeps>>, headers: http::HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_problem(body, BATCH_LIMIT) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let events: Vec<serde_json::Value> = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(events)) => events,
        Ok(_) => return Problem::invalid(vec![crate::domain::FieldError::new("", "must be a JSON array of events")]).into_response(),
        Err(e) => return Problem::malformed(format!("the body is not JSON: {e}")).into_response(),
    };
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        let message = format!("must hold 1 to {MAX_BATCH_EVENTS} events, not {}", events.len());
        return Problem::invalid(vec![crate::domain::FieldError::new("", message)]).into_response();
    }
    let key_id = rate_key(&headers);
    let mut results = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let event_id = event.get("event_id").cloned().unwrap_or(serde_json::Value::Null);
        if let Some((wait, rate)) = crate::handlers::ingest::check_rate(&deps, &key_id).await {
            let problem = rate_limit_problem(wait, rate);
            results.push(serde_json::json!({"index": index, "status": 429, "event_id": event_id, "problem": problem}));
            continue;
        }
        let bytes = serde_json::to_vec(event).unwrap_or_default();
        match submit_event(&deps, &bytes).await {
            Ok(accepted) => {
                let body: serde_json::Value = serde_json::from_str(&accepted.body).unwrap_or(serde_json::Value::Null);
                results.push(serde_json::json!({
                    "index": index, "status": accepted.status, "event_id": event_id, "location": accepted.location,
                    "replayed": accepted.replayed, "body": body,
                }));
            }
            Err(e) => {
                metrics::event_rejected(e.reject_reason());
                let problem = ingest_problem(e);
                results.push(serde_json::json!({"index": index, "status": problem.status, "event_id": event_id, "problem": problem}));
            }
        }
    }
    ok_json(&serde_json::json!({ "results": results }))
}

/// The name of the request's API key its ingest budget is kept under. The key is known good
/// here: the auth layer ran first.
fn rate_key(headers: &http::HeaderMap) -> String {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    crate::auth::api_keys::key_id(crate::auth::api_keys::presented_key(authorization).unwrap_or_default())
}

/// The problem of a key over its rate.
fn rate_limit_problem(wait: std::time::Duration, rate: u32) -> Problem {
    let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too Many Requests", String::new()).with_retry_after(wait);
    let seconds = problem.retry_after.unwrap_or(1);
    Problem { detail: format!("this API key may submit {rate} events a second; retry after {seconds} s"), ..problem }
}

/// `429` over a key's rate: problem+json with `Retry-After` and the IETF `RateLimit` headers.
fn rate_limited(wait: std::time::Duration, rate: u32) -> Response {
    let problem = rate_limit_problem(wait, rate);
    let seconds = problem.retry_after.unwrap_or(1);
    let mut response = problem.into_response();
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(rate));
    headers.insert("ratelimit-remaining", HeaderValue::from(0u32));
    headers.insert("ratelimit-reset", HeaderValue::from(seconds));
    headers.insert("ratelimit-policy", HeaderValue::from_str(&format!("{rate};w=1")).unwrap_or(HeaderValue::from_static("1;w=1")));
    response
}

/// How long a client should wait before retrying after a backend outage (`Retry-After`).
const UNAVAILABLE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

fn ingest_problem(e: IngestError) -> Problem {
    match e {
        IngestError::TooLarge { limit } => Problem::too_large(limit),
        IngestError::Malformed(detail) => Problem::malformed(detail),
        IngestError::Invalid(errors) | IngestError::UnknownEventType(errors) | IngestError::SchemaViolation(errors) => Problem::invalid(errors),
        IngestError::Conflict => Problem::idempotency_conflict(),
        IngestError::InProgress { retry_after } => Problem::in_progress(retry_after),
        IngestError::Unavailable => Problem::unavailable().with_retry_after(UNAVAILABLE_RETRY_AFTER),
    }
}

#[cfg(test)]
mod ingest_problem_tests {
    use super::*;
    use std::time::Duration;

    fn answer(e: IngestError) -> (u16, String, Option<String>) {
        let response = ingest_problem(e).into_response();
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        (response.status().as_u16(), content_type, retry_after)
    }

    #[test]
    fn ingest_errors_map_to_statuses_and_retry_after() {
        let problem = "application/problem+json".to_owned();
        assert_eq!(answer(IngestError::InProgress { retry_after: Duration::from_secs(7) }), (409, problem.clone(), Some("7".into())));
        assert_eq!(answer(IngestError::Conflict), (409, problem.clone(), None));
        assert_eq!(answer(IngestError::Unavailable), (503, problem.clone(), Some("1".into())));
        assert_eq!(answer(IngestError::Invalid(vec![crate::domain::FieldError::new("/payload/n", "x")])), (422, problem, None));
        assert_ne!(ingest_problem(IngestError::Conflict).type_, ingest_problem(IngestError::InProgress { retry_after: Duration::from_secs(1) }).type_);
        assert_eq!(IngestError::InProgress { retry_after: Duration::from_secs(1) }.reject_reason(), RejectReason::InProgress);
    }
}

// ---------------------------------------------------------------------------------------------
// API function: status, recipients, inbox, WebSocket tokens.

pub fn api_routes(deps: Arc<QueryDeps>, keys: Arc<ApiKeys>) -> Router {
    Router::new()
        .route("/v1/events/{event_id}", get(get_event).delete(delete_event))
        .route("/v1/users/{user_id}", get(get_profile).put(put_profile))
        .route("/v1/users/{user_id}/preferences", get(get_preferences).put(put_preferences))
        .route("/v1/users/{user_id}/notifications", get(list_notifications))
        .route("/v1/users/{user_id}/ws-token", post(post_ws_token))
        .route("/v1/event-types", get(list_event_types))
        .route("/v1/event-types/{event_type}", get(get_event_type))
        .route("/v1/event-types/{event_type}/preview", post(preview_event_type))
        .route("/v1/suppressions", get(list_suppressions))
        .route("/v1/suppressions/{channel}/{address}", delete(delete_suppression))
        .layer(DefaultBodyLimit::max(READ_LIMIT))
        .with_state(deps)
        .layer(middleware::from_fn_with_state(keys, require_api_key))
}

/// Routes every deployment serves: liveness, and problem+json for unknown paths.
pub fn common_routes() -> Router {
    Router::new().route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) })).fallback(not_found)
}

async fn not_found() -> Response {
    Problem::not_found("no such route").into_response()
}

fn query_problem(e: QueryError, what: &str) -> Response {
    match e {
        QueryError::NotFound => Problem::not_found(format!("no such {what}")),
        QueryError::Invalid(errors) => Problem::invalid(errors),
        QueryError::Store(e) => {
            tracing::error!(error = %e, "store error");
            Problem::unavailable()
        }
    }
    .into_response()
}

fn ok_json<T: serde::Serialize>(value: &T) -> Response {
    json_response(StatusCode::OK, serde_json::to_string(value).unwrap_or_default())
}

async fn get_event(State(deps): State<Arc<QueryDeps>>, Path(event_id): Path<String>) -> Response {
    match queries::event_status(&deps, &event_id).await {
        Ok(status) => ok_json(&status),
        Err(e) => query_problem(e, "event"),
    }
}

async fn list_event_types(State(deps): State<Arc<QueryDeps>>) -> Response {
    ok_json(&serde_json::json!({ "items": queries::event_types(&deps) }))
}

async fn get_event_type(State(deps): State<Arc<QueryDeps>>, Path(event_type): Path<String>) -> Response {
    match queries::event_type(&deps, &event_type) {
        Ok(t) => ok_json(&t),
        Err(e) => query_problem(e, "event type"),
    }
}

async fn preview_event_type(State(deps): State<Arc<QueryDeps>>, Path(event_type): Path<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_problem(body, READ_LIMIT) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Problem::malformed("the body is not JSON").into_response();
    }
    match queries::preview(&deps, &event_type, &body) {
        Ok(preview) => ok_json(&preview),
        Err(e) => query_problem(e, "event type"),
    }
}

async fn delete_event(State(deps): State<Arc<QueryDeps>>, Path(event_id): Path<String>) -> Response {
    match queries::cancel_event(&deps, &event_id).await {
        Ok(cancellation) => ok_json(&cancellation),
        Err(e) => query_problem(e, "event"),
    }
}

async fn get_profile(State(deps): State<Arc<QueryDeps>>, Path(user_id): Path<String>) -> Response {
    match queries::get_profile(&deps, &user_id).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

async fn put_profile(State(deps): State<Arc<QueryDeps>>, Path(user_id): Path<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_problem(body, READ_LIMIT) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Problem::malformed("the body is not JSON").into_response();
    }
    match queries::put_profile(&deps, &user_id, &body).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

async fn get_preferences(State(deps): State<Arc<QueryDeps>>, Path(user_id): Path<String>) -> Response {
    match queries::get_preferences(&deps, &user_id).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

async fn put_preferences(State(deps): State<Arc<QueryDeps>>, Path(user_id): Path<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_problem(body, READ_LIMIT) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Problem::malformed("the body is not JSON").into_response();
    }
    match queries::put_preferences(&deps, &user_id, &body).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_notifications(
    State(deps): State<Arc<QueryDeps>>,
    Path(user_id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(page)) = query else {
        return Problem::invalid(vec![crate::domain::FieldError::new("/limit", "must be a whole number from 1 to 100")]).into_response();
    };
    match queries::user_notifications(&deps, &user_id, page.limit, page.cursor.as_deref()).await {
        Ok(p) => ok_json(&serde_json::json!({ "items": p.items, "next_cursor": p.next })),
        Err(e) => query_problem(e, "user"),
    }
}

/// `GET /v1/suppressions?limit=&cursor=`: `{"items": [...], "next_cursor": ...}`, newest first.
async fn list_suppressions(State(deps): State<Arc<QueryDeps>>, query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let Ok(Query(page)) = query else {
        return Problem::invalid(vec![crate::domain::FieldError::new("/limit", "must be a whole number from 1 to 100")]).into_response();
    };
    match queries::list_suppressions(&deps, page.limit, page.cursor.as_deref()).await {
        Ok(p) => ok_json(&serde_json::json!({ "items": p.items, "next_cursor": p.next })),
        Err(e) => query_problem(e, "suppression"),
    }
}

/// `DELETE /v1/suppressions/{channel}/{address}`: `204` lifted, `404` there was none.
async fn delete_suppression(State(deps): State<Arc<QueryDeps>>, Path((channel, address)): Path<(String, String)>) -> Response {
    match queries::remove_suppression(&deps, &channel, &address).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => query_problem(e, "suppression"),
    }
}

async fn post_ws_token(State(deps): State<Arc<QueryDeps>>, Path(user_id): Path<String>) -> Response {
    match queries::mint_ws_token(&deps, &user_id) {
        Ok(t) => json_response(StatusCode::CREATED, serde_json::to_string(&t).unwrap_or_default()),
        Err(e) => query_problem(e, "user"),
    }
}
