//! The public HTTP API as axum routers. The same routers serve the local stack and, through
//! `lambda_http`, API Gateway: these functions only translate between HTTP and the handlers.

pub mod privacy;
pub mod openapi;
pub mod problem;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ApiKeys;
use crate::domain::Tenant;
use crate::handlers::ingest::{AcceptedEvent, IngestDeps, IngestError, queue_recorded, record_submission, submit_event};
use crate::handlers::queries::{self, QueryDeps, QueryError};
use crate::metrics::{self, RejectReason};
pub use privacy::{erasure_routes, unsubscribe_routes};
pub use problem::Problem;
use openapi::{BadRequest, Conflict, Invalid, NotFound, RateLimited, TooLarge, Unauthorized, Unavailable};

/// Bodies the API reads at all; `POST /v1/events` has its own, smaller limit and says so in a problem.
const READ_LIMIT: usize = 1024 * 1024;

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Path parameters, or a problem: a segment that is not UTF-8 once percent-decoded names
/// nothing, so it is a `404` (axum's own rejection would be a plain-text `400`).
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(Problem::not_found(format!("no such resource: {}", rejection.body_text()))),
        }
    }
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

/// The ingest function's routes with their documentation (see [`openapi`]): one `.routes(...)`
/// line per path, each handler annotated with `#[utoipa::path]`.
pub(crate) fn ingest_router() -> OpenApiRouter<Arc<IngestDeps>> {
    OpenApiRouter::new().routes(routes!(post_event)).routes(routes!(post_batch))
}

pub fn ingest_routes(deps: Arc<IngestDeps>, keys: Arc<ApiKeys>) -> Router {
    let (router, _) = ingest_router().split_for_parts();
    router
        .layer(DefaultBodyLimit::max(BATCH_LIMIT))
        .with_state(deps)
        .layer(middleware::from_fn_with_state(keys, require_api_key_for_events))
}

/// Every answer of `POST /v1/events` but a 2xx is a problem, counted in `EventsRejected` by its
/// reason (the 401 of a missing key is counted by the auth layer before this).
#[utoipa::path(
    post, path = "/v1/events", tag = "events", operation_id = "submit_event",
    summary = "Submit an event",
    description = "Validates the event against its type's schema, claims its `event_id` (a repeat with the same body is answered as the first acceptance, with `Idempotent-Replayed: true`; with another body it is a `409`) and queues it for routing.",
    request_body(content = crate::domain::Event, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted (or a replay of the first acceptance)", body = AcceptedEvent, content_type = "application/json",
            headers(("Location" = String, description = "The event's status: `/v1/events/{event_id}`"),
                    ("Idempotent-Replayed" = String, description = "`true` when this answers a repeat of an accepted event"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
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

/// One event's outcome in a batch: `body` when accepted (or replayed), `problem` when refused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResult {
    /// The event's position in the posted array.
    pub index: usize,
    /// The status the event would have had if posted alone.
    pub status: u16,
    /// The event's `event_id` as posted (null when it had none).
    #[schema(value_type = Value)]
    pub event_id: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<AcceptedEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// `POST /v1/events/batch`: one result per posted event, in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResults {
    pub results: Vec<BatchResult>,
}

/// `POST /v1/events/batch`: up to 100 events, each accepted, replayed or refused on its own,
/// exactly as if it had been posted alone (idempotency, validation, the key's rate). The answer
/// is `200` with one result per event, in order: `{"index", "status", "event_id", "location",
/// "body" | "problem"}`.
#[utoipa::path(
    post, path = "/v1/events/batch", tag = "events", operation_id = "submit_events",
    summary = "Submit up to 100 events",
    description = "Each event is accepted, replayed or refused on its own, exactly as if it had been posted alone; the answer holds one result per event, in order.",
    request_body(content = Vec<crate::domain::Event>, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per event", body = BatchResults, content_type = "application/json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
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
    // Each event is validated and recorded on its own; the recorded ones are then queued
    // together (one SendMessageBatch per lane for every ten) and answered once queued.
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(events.len());
    let mut recorded = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let event_id = event.get("event_id").cloned().unwrap_or(serde_json::Value::Null);
        if let Some((wait, rate)) = crate::handlers::ingest::check_rate(&deps, &key_id).await {
            results.push(Some(refused_in_batch(index, event_id, rate_limit_problem(wait, rate))));
            continue;
        }
        let bytes = serde_json::to_vec(event).unwrap_or_default();
        match record_submission(&deps, &tenant, &bytes).await {
            Ok(r) => {
                results.push(None);
                recorded.push((index, event_id, r));
            }
            Err(e) => {
                metrics::event_rejected(e.reject_reason());
                results.push(Some(refused_in_batch(index, event_id, ingest_problem(e))));
            }
        }
    }
    let (positions, recorded): (Vec<(usize, serde_json::Value)>, Vec<_>) = recorded.into_iter().map(|(i, id, r)| ((i, id), r)).unzip();
    let queued = queue_recorded(&deps, &recorded).await;
    for ((index, event_id), r) in positions.into_iter().zip(recorded) {
        results[index] = Some(match &queued {
            Ok(()) => {
                let accepted = r.accept();
                BatchResult {
                    index,
                    status: accepted.status,
                    event_id,
                    location: Some(accepted.location),
                    replayed: Some(accepted.replayed),
                    body: serde_json::from_str(&accepted.body).ok(),
                    problem: None,
                }
            }
            Err(_) => {
                metrics::event_rejected(IngestError::Unavailable.reject_reason());
                refused_in_batch(index, event_id, ingest_problem(IngestError::Unavailable))
            }
        });
    }
    let results: Vec<BatchResult> = results.into_iter().flatten().collect();
    ok_json(&BatchResults { results })
}

fn refused_in_batch(index: usize, event_id: serde_json::Value, problem: Problem) -> BatchResult {
    BatchResult { index, status: problem.status, event_id, location: None, replayed: None, body: None, problem: Some(problem) }
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

/// The API function's routes with their documentation (see [`openapi`]): one `.routes(...)`
/// line per path (its methods' handlers together), each handler annotated with `#[utoipa::path]`.
pub(crate) fn api_router() -> OpenApiRouter<Arc<QueryDeps>> {
    OpenApiRouter::new()
        .routes(routes!(get_event, delete_event))
        .routes(routes!(get_profile, put_profile))
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(list_notifications))
        .routes(routes!(post_ws_token))
        .routes(routes!(list_event_types))
        .routes(routes!(get_event_type))
        .routes(routes!(preview_event_type))
        .routes(routes!(list_suppressions))
        .routes(routes!(delete_suppression))
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letters))
}

pub fn api_routes(deps: Arc<QueryDeps>, keys: Arc<ApiKeys>) -> Router {
    let (router, _) = api_router().split_for_parts();
    router
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
    let (router, _) = me_router().split_for_parts();
    router
        .layer(DefaultBodyLimit::max(READ_LIMIT))
        .with_state(deps.clone())
        .layer(middleware::from_fn_with_state(deps.clone(), require_user_token))
        .layer(middleware::from_fn_with_state(deps.cors_origins.clone(), cors))
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

/// CORS for the browser routes, for the origins of the allow-list only (`NOTIFY_CORS_ORIGINS`):
/// a preflight is answered here; an allowed origin's requests get its `Access-Control-Allow-Origin`;
/// any other origin gets no CORS header, so its pages cannot read the answers.
async fn cors(State(origins): State<Arc<Vec<String>>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned);
    let allowed = origin.filter(|o| origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
    let mut response = if request.method() == http::Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    let Some(origin) = allowed.and_then(|o| HeaderValue::from_str(&o).ok()) else {
        return response;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, PUT, POST, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

/// The inbox's routes, documented.
pub(crate) fn me_router() -> OpenApiRouter<Arc<QueryDeps>> {
    OpenApiRouter::new()
        .routes(routes!(me_feed))
        .routes(routes!(me_counts))
        .routes(routes!(me_mark))
        .routes(routes!(me_read_all))
        .routes(routes!(me_get_preferences, me_put_preferences))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FeedQuery {
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
    /// `inbox` (default: not archived), `unread`, `archived` or `all`.
    #[serde(default)]
    #[param(inline)]
    view: crate::handlers::inbox::FeedView,
}

/// `GET /v1/me/notifications?view=inbox|unread|archived|all&limit=&cursor=`.
#[utoipa::path(
    get, path = "/v1/me/notifications", tag = "inbox", operation_id = "my_feed", security(("user_token" = [])),
    summary = "The user's in-app feed, newest first, with unread and unseen counts",
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of the feed", body = crate::handlers::inbox::Feed, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
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

#[utoipa::path(
    get, path = "/v1/me/notifications/counts", tag = "inbox", operation_id = "my_counts", security(("user_token" = [])),
    summary = "The user's unread and unseen counts",
    responses(
        (status = 200, description = "The counts", body = crate::handlers::inbox::Counts, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
async fn me_counts(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>) -> Response {
    match crate::handlers::inbox::counts(&deps, &user).await {
        Ok(counts) => ok_json(&counts),
        Err(e) => query_problem(e, "notification"),
    }
}

#[utoipa::path(
    post, path = "/v1/me/notifications/mark", tag = "inbox", operation_id = "mark_mine", security(("user_token" = [])),
    summary = "Mark notifications seen, read or archived (or undo each); other tabs are told over the WebSocket",
    request_body(content = crate::handlers::inbox::MarkRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The marked notifications, the ids that are not the user's, the new counts", body = crate::handlers::inbox::Marked, content_type = "application/json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn me_mark(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match json_body(body) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    match crate::handlers::inbox::mark(&deps, &user, &body).await {
        Ok(marked) => ok_json(&marked),
        Err(e) => query_problem(e, "notification"),
    }
}

#[utoipa::path(
    post, path = "/v1/me/notifications/read-all", tag = "inbox", operation_id = "read_all_mine", security(("user_token" = [])),
    summary = "Mark every unread notification of the feed read",
    responses(
        (status = 200, description = "How many were marked, and the new counts", body = crate::handlers::inbox::AllRead, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
async fn me_read_all(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>) -> Response {
    match crate::handlers::inbox::mark_all_read(&deps, &user).await {
        Ok(done) => ok_json(&done),
        Err(e) => query_problem(e, "notification"),
    }
}

#[utoipa::path(
    get, path = "/v1/me/preferences", tag = "inbox", operation_id = "my_preferences", security(("user_token" = [])),
    summary = "The user's own preferences",
    responses(
        (status = 200, description = "The preferences (none stored: everything opted in)", body = crate::domain::Preferences, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
async fn me_get_preferences(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>) -> Response {
    match queries::preferences_of(&deps, &user).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

#[utoipa::path(
    put, path = "/v1/me/preferences", tag = "inbox", operation_id = "set_my_preferences", security(("user_token" = [])),
    summary = "Replace the user's own preferences",
    request_body(content = crate::domain::Preferences, content_type = "application/json"),
    responses(
        (status = 200, description = "The preferences stored", body = crate::domain::Preferences, content_type = "application/json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn me_put_preferences(State(deps): State<Arc<QueryDeps>>, Extension(user): Extension<crate::domain::UserId>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match json_body(body) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    match queries::set_preferences_of(&deps, &user, &body).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

/// Routes every deployment serves, without a key: liveness and this API's OpenAPI document.
pub(crate) fn common_router() -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(openapi_json))
}

/// Routes every deployment serves: liveness, the OpenAPI document, and problem+json for
/// unknown paths.
pub fn common_routes() -> Router {
    let (router, _) = common_router().split_for_parts();
    router.fallback(not_found)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: HealthStatus,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

#[utoipa::path(
    get, path = "/health", tag = "meta", operation_id = "health", security(()),
    summary = "Liveness",
    responses((status = 200, description = "Serving", body = Health, content_type = "application/json"))
)]
async fn health() -> Json<Health> {
    Json(Health { status: HealthStatus::Ok })
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "meta", operation_id = "openapi", security(()),
    summary = "This API's OpenAPI 3.1 document",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"))
)]
async fn openapi_json() -> Response {
    json_response(StatusCode::OK, openapi::document_json().to_owned())
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

/// A request body: JSON, within [`READ_LIMIT`], or a problem.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    let body = body_or_problem(body, READ_LIMIT)?;
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Err(Problem::malformed("the body is not JSON"));
    }
    Ok(body)
}

#[utoipa::path(
    get, path = "/v1/events/{event_id}", tag = "events", operation_id = "get_event",
    summary = "An event and its notifications",
    params(("event_id" = String, Path, description = "The event's `event_id`, as submitted", example = "evt-order-A-17")),
    responses(
        (status = 200, description = "The event, its priority in force, and each notification's status", body = queries::EventStatus, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn get_event(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, PathParams(event_id): PathParams<String>) -> Response {
    match queries::event_status(&deps, &tenant, &event_id).await {
        Ok(status) => ok_json(&status),
        Err(e) => query_problem(e, "event"),
    }
}

/// The catalog's event types.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventTypeList {
    pub items: Vec<queries::EventTypeView>,
}

#[utoipa::path(
    get, path = "/v1/event-types", tag = "event types", operation_id = "list_event_types",
    summary = "The catalog's event types",
    responses(
        (status = 200, description = "Every event type (without its schema)", body = EventTypeList, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
async fn list_event_types(State(deps): State<Arc<QueryDeps>>) -> Response {
    ok_json(&EventTypeList { items: queries::event_types(&deps) })
}

#[utoipa::path(
    get, path = "/v1/event-types/{event_type}", tag = "event types", operation_id = "get_event_type",
    summary = "One event type, with its payload's JSON Schema",
    params(("event_type" = String, Path, description = "The event type's name", example = "order.completed")),
    responses(
        (status = 200, description = "The event type", body = queries::EventTypeView, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn get_event_type(State(deps): State<Arc<QueryDeps>>, PathParams(event_type): PathParams<String>) -> Response {
    match queries::event_type(&deps, &event_type) {
        Ok(t) => ok_json(&t),
        Err(e) => query_problem(e, "event type"),
    }
}

#[utoipa::path(
    post, path = "/v1/event-types/{event_type}/preview", tag = "event types", operation_id = "preview_event_type",
    summary = "Render an event type's messages without sending anything",
    params(("event_type" = String, Path, description = "The event type's name", example = "order.completed")),
    request_body(content = queries::PreviewRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Each channel's message, as it would be sent", body = queries::Preview, content_type = "application/json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn preview_event_type(State(deps): State<Arc<QueryDeps>>, PathParams(event_type): PathParams<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match json_body(body) {
        Ok(b) => b,
        Err(problem) => return problem.into_response(),
    };
    match queries::preview(&deps, &event_type, &body) {
        Ok(preview) => ok_json(&preview),
        Err(e) => query_problem(e, "event type"),
    }
}

#[utoipa::path(
    delete, path = "/v1/events/{event_id}", tag = "events", operation_id = "cancel_event",
    summary = "Cancel an event's notifications that have not started sending",
    description = "Idempotent: `pending` and `scheduled` notifications become `canceled`; the others are listed as they are.",
    params(("event_id" = String, Path, description = "The event's `event_id`, as submitted", example = "evt-order-A-17")),
    responses(
        (status = 200, description = "What was canceled, and what was not", body = queries::Cancellation, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn delete_event(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, PathParams(event_id): PathParams<String>) -> Response {
    match queries::cancel_event(&deps, &tenant, &event_id).await {
        Ok(cancellation) => ok_json(&cancellation),
        Err(e) => query_problem(e, "event"),
    }
}

#[utoipa::path(
    get, path = "/v1/users/{user_id}", tag = "recipients", operation_id = "get_profile",
    summary = "A recipient's profile",
    params(("user_id" = String, Path, description = "The recipient, as the producer names them", example = "u-42")),
    responses(
        (status = 200, description = "The profile", body = crate::domain::Profile, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn get_profile(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, PathParams(user_id): PathParams<String>) -> Response {
    match queries::get_profile(&deps, &tenant, &user_id).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

#[utoipa::path(
    put, path = "/v1/users/{user_id}", tag = "recipients", operation_id = "put_profile",
    summary = "Create or replace a recipient's profile",
    params(("user_id" = String, Path, description = "The recipient, as the producer names them", example = "u-42")),
    request_body(content = crate::domain::Profile, content_type = "application/json"),
    responses(
        (status = 200, description = "The stored profile", body = crate::domain::Profile, content_type = "application/json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn put_profile(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, PathParams(user_id): PathParams<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match json_body(body) {
        Ok(b) => b,
        Err(problem) => return problem.into_response(),
    };
    match queries::put_profile(&deps, &tenant, &user_id, &body).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

#[utoipa::path(
    get, path = "/v1/users/{user_id}/preferences", tag = "recipients", operation_id = "get_preferences",
    summary = "A recipient's preferences (everything opted in when none are stored)",
    params(("user_id" = String, Path, description = "The recipient, as the producer names them", example = "u-42")),
    responses(
        (status = 200, description = "The preferences", body = crate::domain::Preferences, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn get_preferences(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, PathParams(user_id): PathParams<String>) -> Response {
    match queries::get_preferences(&deps, &tenant, &user_id).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

#[utoipa::path(
    put, path = "/v1/users/{user_id}/preferences", tag = "recipients", operation_id = "put_preferences",
    summary = "Replace a recipient's preferences",
    params(("user_id" = String, Path, description = "The recipient, as the producer names them", example = "u-42")),
    request_body(content = crate::domain::Preferences, content_type = "application/json"),
    responses(
        (status = 200, description = "The stored preferences", body = crate::domain::Preferences, content_type = "application/json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn put_preferences(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, PathParams(user_id): PathParams<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match json_body(body) {
        Ok(b) => b,
        Err(problem) => return problem.into_response(),
    };
    match queries::put_preferences(&deps, &tenant, &user_id, &body).await {
        Ok(p) => ok_json(&p),
        Err(e) => query_problem(e, "user"),
    }
}

/// `?limit=&cursor=` of the listing routes.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Items per page (default 20; at most 100).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of a recipient's notifications, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationPage {
    pub items: Vec<crate::domain::Notification>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// A page of suppressed addresses, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SuppressionPage {
    pub items: Vec<crate::ports::Suppression>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

fn page_query_problem() -> Response {
    Problem::invalid(vec![crate::domain::FieldError::new("/limit", "must be a whole number from 1 to 100")]).into_response()
}

#[utoipa::path(
    get, path = "/v1/users/{user_id}/notifications", tag = "recipients", operation_id = "list_notifications",
    summary = "A recipient's notifications (the inbox), newest first",
    params(("user_id" = String, Path, description = "The recipient, as the producer names them", example = "u-42"), PageQuery),
    responses(
        (status = 200, description = "A page of notifications", body = NotificationPage, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn list_notifications(
    State(deps): State<Arc<QueryDeps>>,
    Extension(tenant): Extension<Tenant>,
    PathParams(user_id): PathParams<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(page)) = query else {
        return page_query_problem();
    };
    match queries::user_notifications(&deps, &tenant, &user_id, page.limit, page.cursor.as_deref()).await {
        Ok(p) => ok_json(&NotificationPage { items: p.items, next_cursor: p.next }),
        Err(e) => query_problem(e, "user"),
    }
}

/// `GET /v1/suppressions?limit=&cursor=`: `{"items": [...], "next_cursor": ...}`, newest first.
#[utoipa::path(
    get, path = "/v1/suppressions", tag = "suppressions", operation_id = "list_suppressions",
    summary = "Addresses not sent to any more (hard bounces, complaints, opt-outs), newest first",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of suppressions", body = SuppressionPage, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn list_suppressions(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let Ok(Query(page)) = query else {
        return page_query_problem();
    };
    match queries::list_suppressions(&deps, &tenant, page.limit, page.cursor.as_deref()).await {
        Ok(p) => ok_json(&SuppressionPage { items: p.items, next_cursor: p.next }),
        Err(e) => query_problem(e, "suppression"),
    }
}

/// `DELETE /v1/suppressions/{channel}/{address}`: `204` lifted, `404` there was none.
#[utoipa::path(
    delete, path = "/v1/suppressions/{channel}/{address}", tag = "suppressions", operation_id = "delete_suppression",
    summary = "Lift a suppression",
    params(
        ("channel" = crate::domain::Channel, Path, description = "The channel the address is suppressed on"),
        ("address" = String, Path, description = "The address as on the profile (e-mail addresses in any case)", example = "olena@example.com"),
    ),
    responses(
        (status = 204, description = "Lifted"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn delete_suppression(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, PathParams((channel, address)): PathParams<(String, String)>) -> Response {
    match queries::remove_suppression(&deps, &tenant, &channel, &address).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => query_problem(e, "suppression"),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadLetterQuery {
    /// Only this dead-letter queue's, e.g. `send-email-fast-dlq.fifo`.
    queue: Option<String>,
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// A page of dead letters, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<crate::handlers::dead_letters::Listed>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// What to replay: `ids` (1 to 100), or all of one `queue` (up to `limit`, at most 100, a call).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ReplayBody {
    ids: Option<Vec<String>>,
    queue: Option<String>,
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<u32>,
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
#[utoipa::path(
    get, path = "/v1/dead-letters", tag = "dead letters", operation_id = "list_dead_letters",
    summary = "The jobs the pipeline gave up on (the caller's tenant's), newest first",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "A page of dead letters (never the job's content)", body = DeadLetterPage, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn list_dead_letters(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let Ok(Query(page)) = query else {
        return Problem::invalid(vec![crate::domain::FieldError::new("/limit", "must be a whole number from 1 to 100")]).into_response();
    };
    match crate::handlers::dead_letters::list(&deps.dead_letters, &tenant, page.queue.as_deref(), page.limit, page.cursor.as_deref()).await {
        Ok(p) => ok_json(&DeadLetterPage { items: p.items, next_cursor: p.next }),
        Err(e) => dead_letter_problem(e),
    }
}

/// `POST /v1/dead-letters/replay` with `{"ids": [...]}` or `{"queue": "...", "limit": n}`:
/// `200 {"results": [{"id", "outcome", "status"?}], "more"?}`.
#[utoipa::path(
    post, path = "/v1/dead-letters/replay", tag = "dead letters", operation_id = "replay_dead_letters",
    summary = "Replay one, a selection or all of one queue, without sending anything twice",
    request_body(content = ReplayBody, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per dead letter", body = crate::handlers::dead_letters::ReplayAnswer, content_type = "application/json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
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

#[utoipa::path(
    post, path = "/v1/users/{user_id}/ws-token", tag = "recipients", operation_id = "mint_ws_token",
    summary = "A short-lived token for the recipient's WebSocket connection",
    params(("user_id" = String, Path, description = "The recipient, as the producer names them", example = "u-42")),
    responses(
        (status = 201, description = "The token and when it expires", body = queries::WsToken, content_type = "application/json"),
        (status = 401, response = Unauthorized),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    )
)]
async fn post_ws_token(State(deps): State<Arc<QueryDeps>>, Extension(tenant): Extension<Tenant>, PathParams(user_id): PathParams<String>) -> Response {
    match queries::mint_ws_token(&deps, &tenant, &user_id) {
        Ok(t) => json_response(StatusCode::CREATED, serde_json::to_string(&t).unwrap_or_default()),
        Err(e) => query_problem(e, "user"),
    }
}
