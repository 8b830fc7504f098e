//! The API Gateway Management API (`@connections`) on loopback: the real
//! `aws-sdk-apigatewaymanagement` client posts here in the AWS backend, exactly as it would to
//! `https://{api}.execute-api.{region}.amazonaws.com/{stage}`. A closed or unknown connection
//! answers `410 GoneException`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use shared::adapters::memory::MemoryConnectionPoster;
use shared::ports::{ConnectionPoster, PostError};

/// Lets a request through when it comes from this machine (the AWS SDK's management client, the
/// operator's curl) or presents an API key; anyone else on the network gets `403`. Without the
/// peer's address (a router served without connect info) only an API key opens it.
pub async fn loopback_or_api_key(
    axum::extract::State(keys): axum::extract::State<std::sync::Arc<shared::auth::ApiKeys>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::extract::FromRequestParts;
    let (mut parts, body) = request.into_parts();
    // The peer as the server saw it (or a test's `MockConnectInfo`).
    let peer = axum::extract::ConnectInfo::<std::net::SocketAddr>::from_request_parts(&mut parts, &()).await.ok();
    let request = axum::extract::Request::from_parts(parts, body);
    let local = peer.is_some_and(|axum::extract::ConnectInfo(addr)| addr.ip().is_loopback());
    let authorization = request.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if local || keys.tenant_for(authorization.as_deref(), jiff::Timestamp::now()).await.ok().flatten().is_some() {
        return next.run(request).await;
    }
    shared::http::Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", "management and metrics routes answer this machine, or an API key").into_response()
}

/// What to say when the stack listens beyond this machine; `None` on loopback.
pub fn exposure_warning(addr: std::net::SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "warning: listening on {addr}, beyond this machine. The API needs a key, but this is a development server:              anyone who can reach it can try keys and user tokens, and the outbox holds what it sent.              Management (/@connections) and /metrics answer only loopback callers or an API key."
        )
    })
}

pub fn routes(poster: MemoryConnectionPoster) -> Router {
    Router::new()
        .route("/@connections/{connection_id}", post(post_to_connection).get(get_connection).delete(delete_connection))
        .with_state(poster)
}

fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = (status, body).into_response();
    response.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(code));
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn gone() -> Response {
    error(StatusCode::GONE, "GoneException", "the connection is gone")
}

async fn post_to_connection(State(poster): State<MemoryConnectionPoster>, Path(id): Path<String>, body: Bytes) -> Response {
    match poster.post(&id, &body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(PostError::Gone) => gone(),
        Err(PostError::Failed(m)) => error(StatusCode::BAD_REQUEST, "BadRequestException", &m),
    }
}

async fn get_connection(State(poster): State<MemoryConnectionPoster>, Path(id): Path<String>) -> Response {
    match poster.connected_at(&id) {
        Some(at) => {
            let body = serde_json::json!({
                "ConnectedAt": at.to_string(),
                "LastActiveAt": at.to_string(),
                "Identity": { "SourceIp": "127.0.0.1", "UserAgent": "local-stack" }
            });
            let mut response = (StatusCode::OK, body.to_string()).into_response();
            response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
            response
        }
        None => gone(),
    }
}

async fn delete_connection(State(poster): State<MemoryConnectionPoster>, Path(id): Path<String>) -> Response {
    if poster.is_live(&id) {
        // Dropping the socket's frame channel ends its writer loop, which closes the socket and
        // runs $disconnect.
        poster.unregister(&id);
        StatusCode::NO_CONTENT.into_response()
    } else {
        gone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::http::Request;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tower::ServiceExt;

    fn app(peer: &str) -> Router {
        let keys = Arc::new(shared::auth::ApiKeys::from_config("the-key", "").unwrap());
        routes(MemoryConnectionPoster::default())
            .layer(axum::middleware::from_fn_with_state(keys, loopback_or_api_key))
            .layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()))
    }

    async fn post(app: Router, key: Option<&str>) -> StatusCode {
        let mut request = Request::post("/@connections/some-connection");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        app.oneshot(request.body(Body::from("hi")).unwrap()).await.unwrap().status()
    }

    #[tokio::test]
    async fn a_remote_caller_without_a_key_is_refused_and_loopback_or_a_key_gets_through() {
        assert_eq!(post(app("203.0.113.7:40000"), None).await, StatusCode::FORBIDDEN);
        assert_eq!(post(app("203.0.113.7:40000"), Some("wrong")).await, StatusCode::FORBIDDEN);
        // Through the guard: the (unknown) connection is gone.
        assert_eq!(post(app("203.0.113.7:40000"), Some("the-key")).await, StatusCode::GONE);
        assert_eq!(post(app("127.0.0.1:40000"), None).await, StatusCode::GONE);
        assert_eq!(post(app("[::1]:40000"), None).await, StatusCode::GONE);
    }

    #[test]
    fn listening_beyond_loopback_warns() {
        assert!(exposure_warning("127.0.0.1:8080".parse().unwrap()).is_none());
        assert!(exposure_warning("0.0.0.0:8080".parse().unwrap()).unwrap().contains("beyond this machine"));
    }
}
