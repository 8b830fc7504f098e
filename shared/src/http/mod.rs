//! The public HTTP API as axum routers. The same routers serve the local stack and, through
//! `lambda_http`, API Gateway: these functions only translate between HTTP and the handlers.

pub mod privacy;
pub mod problem;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

use crate::auth::ApiKeys;
use crate::domain::Tenant;
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

/// The tenant of the request's API key: `Err` answers the request (`401`, or `503` when the key
/// directory cannot be read: a key is never taken on trust).
async fn tenant_of_request(keys: &ApiKeys, authorization: Option<String>) -> Result<Tenant, Problem> {
    match keys.tenant_for(authorization.as_deref(), jiff::Timestamp::now()).await {
        Ok(Some(tenant)) => Ok(tenant),
        Ok(None) => Err(Problem::unauthorized()),
        Err(e) => {
            tracing::error!(error = %e, "the key directory is unavailable");
            Err(Problem::unavailable().with_retry_after(UNAVAILABLE_RETRY_AFTER))
        }
    }
}

/// Requires `Authorization: Bearer <key>` with a key of ours, and hands the handlers its
/// [`Tenant`] as a request extension.
pub async fn require_api_key(State(keys): State<Arc<ApiKeys>>, mut request: Request, next: Next) -> Response {
    // Owned: a request (its body) is not `Sync`, so no borrow of it may live across the await.
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match tenant_of_request(&keys, authorization).await {
        Ok(tenant) => {
            request.extensions_mut().insert(tenant);
            next.run(request).await
        }
        Err(problem) => problem.into_response(),
    }
}

/// [`require_api_key`] for `POST /v1/events`, where a refusal is a rejected event.
async fn require_api_key_for_events(State(keys): State<Arc<ApiKeys>>, mut request: Request, next: Next) -> Response {
    // Owned: a request (its body) is not `Sync`, so no borrow of it may live across the await.
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match tenant_of_request(&keys, authorization).await {
        Ok(tenant) => {
            request.extensions_mut().insert(tenant);
            next.run(request).await
        }
        Err(problem) => {
            metrics::event_rejected(RejectReason::Unauthorized);
            problem.into_response()
        }
    }
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
async fn post_event(State(deps): State<Arc<IngestDeps>>, Extension(tenant): Extension<Tenant>, headers: http::HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
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
    match submit_event(&deps, &tenant, &body).await {
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
async fn post_batch(State(deps): State<Arc<IngestDeps>>, Extension(tenant): Extension<Tenant>, headers: http::HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
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
        match submit_event(&deps, &tenant, &bytes).await {
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
        .route("/v1/dead-letters", get(list_dead_letters))
        .route("/v1/dead-letters/replay", post(replay_dead_letters))
        .layer(DefaultBodyLimit::max(READ_LIMIT))
        .with_state(deps.clone())
        .layer(middleware::from_fn_with_state(keys, require_api_key))
        .merge(me_routes(deps))
}

// ---------------------------------------------------------------------------------------------
// The end-user inbox: `/v1/me/...`, called by a browser with the user's own user token.

/// The inbox routes, behind [`require_user_token`] and open to browsers of any origin (the token
/// travels in `Authorization`, never in a cookie, so another site cannot ride on it).
pub fn me_routes(deps: Arc<QueryDeps>) -> Router {
    Router::new()
        .route("/v1/me/notifications", get(me_feed))
        .route("/v1/me/notifications/counts", get(me_counts))
        .route("/v1/me/notifications/mark", post(me_mark))
        .route("/v1/me/notifications/read-all", post(me_read_all))
        .route("/v1/me/preferences", get(me_get_preferences).put(me_put_preferences))
        .layer(DefaultBodyLimit::max(READ_LIMIT))
        .with_state(deps.clone())
        .layer(middleware::from_fn_with_state(deps, require_user_token))
        .layer(middleware::from_fn(cors))
}

/// Requires `Authorization: Bearer <user token>` (minted by `POST /v1/users/{user_id}/ws-token`)
/// and hands the handlers the user it names.
pub async fn require_user_token(State(deps): State<Arc<QueryDeps>>, mut request: Request, next: Next) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = crate::auth::api_keys::presented_key(authorization).unwrap_or_default();
    match deps.tokens.verify(token, deps.clock.now()) {
        Ok(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        Err(_) => Problem::unauthorized().into_response(),
    }
}

/// CORS for the browser routes: a preflight is answered here; every answer allows any origin
/// to read it with a bearer token.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == http::Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, PUT, POST, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

#[derive(Deserialize)]
struct FeedQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    #[serde(default)]
    view: crate::handlers::inbox::FeedView,
}

/// `GET /v1/me/notifications?view=inbox|unread|archived|all&limit=&cursor=`.
async fn me_feed(
    State(deps): State<Arc<QueryDeps>>,
    Extension(user): Extension<crate::domain::UserId>,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return Problem::invalid(vec![crate::domain::FieldError::new("", "limit must be a whole number from 1 to 100; view one of inbox, unread, archived, all")]).into_response();
    };
    match crate::handlers::inbox::feed(&deps, &user, q.view, q.limit, q.cursor.as_deref()).await {
        Ok(feed) => ok_json(&feed),
        Err(e) => query_problem(e, "notification"),
    }
}

async fn me_counts(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>) -> Response {
    match crate::handlers::inbox::counts(&deps, &user).await {
        Ok(counts) => ok_json(&counts),
        Err(e) => query_problem(e, "notification"),
    }
}

async fn me_mark(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_problem(body, READ_LIMIT) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Problem::malformed("the body is not JSON").into_response();
    }
    match crate::handlers::inbox::mark(&deps, &user, &body).await {
        Ok(marked) => ok_json(&marked),
        Err(e) => query_problem(e, "notification"),
    }
}

async fn me_read_all(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>) -> Response {
    match crate::handlers::inbox::mark_all_read(&deps, &user).await {
        Ok(done) => ok_json(&done),
        Err(e) => query_problem(e, "notification"),
    }
}

async fn me_get_preferences(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>) -> Response {
    match queries::preferences_of(&deps, &user).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

async fn me_put_preferences(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_problem(body, READ_LIMIT) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Problem::malformed("the body is not JSON").into_response();
    }
    match queries::set_preferences_of(&deps, &user, &body).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
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

/// `200` with `value` as JSON, every id in it as the caller knows it (no tenant prefix).
fn ok_json<T: serde::Serialize>(value: &T) -> Response {
    json_response(StatusCode::OK, public_json(value))
}

/// `value` as JSON for a caller: ids lose their tenant prefix.
fn public_json<T: serde::Serialize>(value: &T) -> String {
    let mut json = serde_json::to_value(value).unwrap_or_default();
    Tenant::unscope_json(&mut json);
    json.to_string()
}

async fn get_event(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, Path(event_id): Path<String>) -> Response {
    match queries::event_status(&deps, &tenant, &event_id).await {
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

async fn delete_event(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, Path(event_id): Path<String>) -> Response {
    match queries::cancel_event(&deps, &tenant, &event_id).await {
        Ok(cancellation) => ok_json(&cancellation),
        Err(e) => query_problem(e, "event"),
    }
}

async fn get_profile(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, Path(user_id): Path<String>) -> Response {
    match queries::get_profile(&deps, &tenant, &user_id).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

async fn put_profile(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, Path(user_id): Path<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_problem(body, READ_LIMIT) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Problem::malformed("the body is not JSON").into_response();
    }
    match queries::put_profile(&deps, &tenant, &user_id, &body).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

async fn get_preferences(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, Path(user_id): Path<String>) -> Response {
    match queries::get_preferences(&deps, &tenant, &user_id).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

async fn put_preferences(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, Path(user_id): Path<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_problem(body, READ_LIMIT) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Problem::malformed("the body is not JSON").into_response();
    }
    match queries::put_preferences(&deps, &tenant, &user_id, &body).await {
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
    Extension(tenant): Extension<Tenant>,
    Path(user_id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(page)) = query else {
        return Problem::invalid(vec![crate::domain::FieldError::new("/limit", "must be a whole number from 1 to 100")]).into_response();
    };
    match queries::user_notifications(&deps, &tenant, &user_id, page.limit, page.cursor.as_deref()).await {
        Ok(p) => ok_json(&serde_json::json!({ "items": p.items, "next_cursor": p.next })),
        Err(e) => query_problem(e, "user"),
    }
}

/// `GET /v1/suppressions?limit=&cursor=`: `{"items": [...], "next_cursor": ...}`, newest first.
async fn list_suppressions(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let Ok(Query(page)) = query else {
        return Problem::invalid(vec![crate::domain::FieldError::new("/limit", "must be a whole number from 1 to 100")]).into_response();
    };
    match queries::list_suppressions(&deps, &tenant, page.limit, page.cursor.as_deref()).await {
        Ok(p) => ok_json(&serde_json::json!({ "items": p.items, "next_cursor": p.next })),
        Err(e) => query_problem(e, "suppression"),
    }
}

/// `DELETE /v1/suppressions/{channel}/{address}`: `204` lifted, `404` there was none.
async fn delete_suppression(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, Path((channel, address)): Path<(String, String)>) -> Response {
    match queries::remove_suppression(&deps, &tenant, &channel, &address).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => query_problem(e, "suppression"),
    }
}

#[derive(Deserialize)]
struct DeadLetterQuery {
    queue: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn dead_letter_problem(e: crate::handlers::dead_letters::DeadLetterError) -> Response {
    use crate::handlers::dead_letters::DeadLetterError;
    match e {
        DeadLetterError::Invalid(errors) => Problem::invalid(errors),
        DeadLetterError::Store(e) => {
            tracing::error!(error = %e, "store error");
            Problem::unavailable().with_retry_after(UNAVAILABLE_RETRY_AFTER)
        }
        DeadLetterError::Queue(e) => {
            tracing::error!(error = %e, "queue error");
            Problem::unavailable().with_retry_after(UNAVAILABLE_RETRY_AFTER)
        }
    }
    .into_response()
}

/// `GET /v1/dead-letters?queue=&limit=&cursor=`: `{"items": [...], "next_cursor": ...}`, newest first.
async fn list_dead_letters(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let Ok(Query(page)) = query else {
        return Problem::invalid(vec![crate::domain::FieldError::new("/limit", "must be a whole number from 1 to 100")]).into_response();
    };
    match crate::handlers::dead_letters::list(&deps.dead_letters, &tenant, page.queue.as_deref(), page.limit, page.cursor.as_deref()).await {
        Ok(p) => ok_json(&serde_json::json!({ "items": p.items, "next_cursor": p.next })),
        Err(e) => dead_letter_problem(e),
    }
}

/// `POST /v1/dead-letters/replay` with `{"ids": [...]}` or `{"queue": "...", "limit": n}`:
/// `200 {"results": [{"id", "outcome", "status"?}], "more"?}`.
async fn replay_dead_letters(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, body: Result<Bytes, BytesRejection>) -> Response {
    use crate::handlers::dead_letters::{self, DeadLetterError};
    let body = match body_or_problem(body, READ_LIMIT) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Problem::malformed("the body is not JSON").into_response();
    };
    let request = match dead_letters::parse_replay(&value) {
        Ok(r) => r,
        Err(errors) => return dead_letter_problem(DeadLetterError::Invalid(errors)),
    };
    match dead_letters::replay(&deps.dead_letters, &tenant, request).await {
        Ok(answer) => ok_json(&answer),
        Err(e) => dead_letter_problem(e),
    }
}

async fn post_ws_token(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, Path(user_id): Path<String>) -> Response {
    match queries::mint_ws_token(&deps, &tenant, &user_id) {
        Ok(t) => json_response(StatusCode::CREATED, serde_json::to_string(&t).unwrap_or_default()),
        Err(e) => query_problem(e, "user"),
    }
}
