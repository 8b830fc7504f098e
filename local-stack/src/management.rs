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
