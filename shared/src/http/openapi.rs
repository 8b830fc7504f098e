//! The API's OpenAPI 3.1 document, generated from the code: every route is registered through
//! `utoipa_axum`'s `OpenApiRouter` together with its `#[utoipa::path]` annotation, so a route
//! cannot be served without being documented, and the request and response bodies are the
//! handlers' own types (`#[derive(utoipa::ToSchema)]`). Served at `GET /openapi.json` by every
//! deployment ([`super::common_routes`]); `tests/run.sh` fuzzes the local stack from it.
//!
//! **Adding a route** (one line in a router, plus the annotation on its handler):
//! 1. annotate the handler with `#[utoipa::path(get, path = "/v1/...", tag = "...",
//!    params(...), request_body(...), responses((status = 200, body = T, content_type =
//!    "application/json"), (status = 401, response = Unauthorized), ...))]`, listing every
//!    status it can answer; problems use the responses below (`application/problem+json`);
//! 2. register it in its router — `ingest_router`, `api_router` or `common_router` in
//!    `http/mod.rs` (or a new `OpenApiRouter` merged into [`document`]) — with
//!    `.routes(routes!(handler))`, methods of one path together: `routes!(get_x, delete_x)`;
//! 3. derive `utoipa::ToSchema` on its body types (jiff timestamps are date-time strings,
//!    `serde_json::Value` needs `#[schema(value_type = Object)]` or `Value`);
//! 4. declare it in template.yaml on its function (tests/template.rs checks every documented
//!    operation is routed there).
//!
//! The local stack's own routes (`/v1/ws`, `/v1/dev/*`, `/metrics`, management) are not part of
//! the deployed API and are not documented here.

use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse};

use super::Problem;

/// `400`: the body is not JSON (problem type `malformed-json`).
#[derive(ToResponse)]
#[response(description = "The body is not JSON (problem type `malformed-json`)", content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct BadRequest(Problem);

/// `401`: no API key, or not one of ours.
#[derive(ToResponse)]
#[response(description = "No API key, or an unknown one (problem type `unauthorized`); send `Authorization: Bearer <key>`", content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct Unauthorized(Problem);

/// `404`: nothing by that name.
#[derive(ToResponse)]
#[response(description = "No such resource (problem type `not-found`)", content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct NotFound(Problem);

/// `409`: the event id names another event, or is being accepted right now.
#[derive(ToResponse)]
#[response(
    description = "The `event_id` was used for an event with a different body (problem type `idempotency-conflict`), or an event with it is being accepted right now (problem type `in-progress`, with `Retry-After`)",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying (`in-progress` only)"))
)]
#[allow(dead_code)]
pub struct Conflict(Problem);

/// `413`: the body is over its limit.
#[derive(ToResponse)]
#[response(description = "The body is larger than the route takes (problem type `too-large`)", content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct TooLarge(Problem);

/// `422`: fields that fail validation, each named by a JSON Pointer.
#[derive(ToResponse)]
#[response(description = "Validation failed (problem type `validation`): `errors` names every failing field by a JSON Pointer", content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct Invalid(Problem);

/// `429`: the API key is over its event rate.
#[derive(ToResponse)]
#[response(
    description = "The API key is over its event rate (problem type `rate-limited`)",
    content_type = "application/problem+json",
    headers(
        ("Retry-After" = u64, description = "Seconds to wait before retrying"),
        ("RateLimit-Limit" = u64, description = "Events a second this key may submit"),
        ("RateLimit-Remaining" = u64, description = "Events left in the current window"),
        ("RateLimit-Reset" = u64, description = "Seconds until the window resets"),
        ("RateLimit-Policy" = String, description = "The policy, e.g. `10;w=1`"),
    )
)]
#[allow(dead_code)]
pub struct RateLimited(Problem);

/// `503`: a backing service is unavailable.
#[derive(ToResponse)]
#[response(
    description = "A backing service is unavailable (problem type `unavailable`); the same request may succeed later",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
#[allow(dead_code)]
pub struct Unavailable(Problem);

/// The bearer API key every `/v1` route needs.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some("An API key: `Authorization: Bearer <key>`".to_owned());
        components.add_security_scheme(SECURITY_SCHEME, SecurityScheme::Http(scheme));
        let mut user = Http::new(HttpAuthScheme::Bearer);
        user.bearer_format = Some("JWT".to_owned());
        user.description = Some("A user token (`POST /v1/users/{user_id}/ws-token`): the `/v1/me` routes of that one user".to_owned());
        components.add_security_scheme("user_token", SecurityScheme::Http(user));
    }
}

/// The name of the API-key security scheme.
pub const SECURITY_SCHEME: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Notification platform API",
        description = "Submit events, read their notifications' status, manage recipients, their preferences and suppressions. Every error is an RFC 9457 problem (`application/problem+json`) whose `type` is `https://notify.dev/problems/<slug>`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    security(("api_key" = [])),
    modifiers(&BearerKey),
    components(
        schemas(Problem, crate::domain::FieldError),
        responses(BadRequest, Unauthorized, NotFound, Conflict, TooLarge, Invalid, RateLimited, Unavailable),
    ),
    tags(
        (name = "events", description = "Submitting events and following their notifications"),
        (name = "recipients", description = "Profiles, preferences, the inbox and WebSocket tokens"),
        (name = "event types", description = "The event catalog"),
        (name = "suppressions", description = "Addresses not sent to any more"),
        (name = "dead letters", description = "Jobs the pipeline gave up on, and their replay"),
        (name = "inbox", description = "The end user's own feed and preferences, with a user token (from a browser)"),
        (name = "meta", description = "Liveness and this document"),
    ),
)]
struct ApiDoc;

/// The whole document: the ingest function's routes, the API function's, and the routes every
/// deployment serves.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::ingest_router().into_openapi());
    doc.merge(super::api_router().into_openapi());
    doc.merge(super::me_router().into_openapi());
    doc.merge(super::privacy::unsubscribe_router().into_openapi());
    doc.merge(super::privacy::erasure_router().into_openapi());
    doc.merge(super::common_router().into_openapi());
    doc.openapi = utoipa::openapi::OpenApiVersion::Version31;
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// [`document`] as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().expect("the OpenAPI document serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::queue::MemoryQueue;
    use crate::adapters::memory::store::MemoryStore;
    use crate::auth::{ApiKeys, WsTokens};
    use crate::catalog::Catalog;
    use crate::wiring::Settings;
    use crate::ports::SystemClock;
    use crate::topology::all_queues;
    use crate::wiring::{self, Ports};
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use std::sync::Arc;
    use tower::ServiceExt;

    const KEY: &str = "openapi-test-key";

    /// Every deployment's routes merged, as the local stack merges them, over the in-process adapters.
    fn app() -> axum::Router {
        let ports = Ports::over(Arc::new(MemoryQueue::new(&all_queues(&Default::default()))), Arc::new(MemoryStore::new()), Arc::new(SystemClock));
        let catalog = Arc::new(Catalog::embedded().expect("catalog"));
        let keys = Arc::new(ApiKeys::from_config(KEY, "").expect("keys"));
        let tokens = Arc::new(WsTokens::new(&[7u8; 32], std::time::Duration::from_secs(60)).expect("tokens"));
        let settings = Settings::default();
        super::super::ingest_routes(Arc::new(wiring::ingest(&ports, catalog.clone(), &settings)), keys.clone())
            .merge(super::super::api_routes(Arc::new(wiring::queries(&ports, catalog.clone(), tokens, Arc::new(crate::adapters::memory::MemoryConnectionPoster::default()), &settings)), keys.clone()))
            .merge(super::super::privacy::erasure_routes(Arc::new(wiring::erasure(&ports, catalog, &settings)), keys))
            .merge(super::super::privacy::unsubscribe_routes(Arc::new(wiring::unsubscribe(
                &ports,
                Arc::new(crate::auth::UnsubscribeTokens::from_user_token_secret(&[7u8; 32], std::time::Duration::from_secs(60)).expect("tokens")),
            ))))
            .merge(super::super::common_routes())
    }

    fn operations(doc: &utoipa::openapi::OpenApi) -> Vec<(String, Method)> {
        let json = serde_json::to_value(doc).unwrap();
        let mut out = Vec::new();
        for (path, item) in json["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if let Ok(m) = method.to_uppercase().parse::<Method>() {
                    out.push((path.clone(), m));
                }
            }
        }
        out
    }

    /// Every documented operation is served: it reaches a handler, not the `no such route`
    /// fallback nor axum's `405`. (The other way round — a served route missing from the
    /// document — cannot compile: routes are registered with their annotation.)
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let doc = document();
        let ops = operations(&doc);
        assert!(ops.len() >= 17, "{ops:?}");
        for (path, method) in ops {
            let uri = path.replace("{channel}", "email").replace('{', "x-").replace('}', "");
            let request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header("authorization", format!("Bearer {KEY}"))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let response = app().oneshot(request).await.unwrap();
            assert_ne!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            assert!(!String::from_utf8_lossy(&body).contains("no such route"), "{method} {path} fell through to the fallback");
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_problem_responses() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"], "bearer");
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no 2xx");
                // The unsubscribe link's pages are for people: HTML, failures included.
                let page = path.starts_with("/v1/unsubscribe/");
                for (status, response) in responses {
                    if page {
                        assert!(response["content"]["text/html"].is_object(), "{method} {path} {status}: not a page");
                    } else if status.starts_with('4') || status.starts_with('5') {
                        let name = response["$ref"].as_str().unwrap_or_default().rsplit('/').next().unwrap().to_owned();
                        let content = &doc["components"]["responses"][&name]["content"];
                        assert!(content["application/problem+json"].is_object(), "{method} {path} {status}: not a problem");
                    }
                }
                let public = path == "/health" || path == "/openapi.json" || page;
                if !public {
                    assert!(responses.contains_key("401"), "{method} {path}: no 401");
                    assert!(responses.contains_key("503"), "{method} {path}: no 503");
                }
            }
        }
    }

    #[tokio::test]
    async fn the_document_is_served_without_a_key() {
        let request = Request::builder().uri("/openapi.json").body(Body::empty()).unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
        let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(served, serde_json::from_str::<serde_json::Value>(document_json()).unwrap());
    }
}
