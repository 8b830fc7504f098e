//! `GET /v1/ws?token=…`: the local stand-in for API Gateway's WebSocket API. It runs the
//! `$connect` handler before upgrading (a bad token gets 401), registers the socket so the push
//! sender can post to it, and runs `$disconnect` when it closes.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use shared::adapters::memory::MemoryConnectionPoster;
use shared::handlers::ws::{ConnectError, WsDeps, connect, disconnect};
use shared::http::Problem;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct WsState {
    pub deps: Arc<WsDeps>,
    pub poster: MemoryConnectionPoster,
}

#[derive(Deserialize)]
struct Connect {
    token: Option<String>,
}

pub fn routes(state: WsState) -> Router {
    Router::new().route("/v1/ws", get(upgrade)).with_state(state)
}

/// API Gateway connection ids look like `L0SM9cOFvHcCIhw=`; ours are unique the same way.
fn new_connection_id() -> String {
    ulid::Ulid::new().to_string()
}

async fn upgrade(State(state): State<WsState>, Query(q): Query<Connect>, ws: WebSocketUpgrade) -> Response {
    let connection_id = new_connection_id();
    // The socket's frame queue is registered before the connection is recorded: from the moment
    // the push sender can find the connection, a post to it is queued for this socket (and sent
    // once it is upgraded), never answered `Gone` (which would forget a live connection).
    let (frames_tx, frames) = mpsc::unbounded_channel::<String>();
    state.poster.register(&connection_id, frames_tx);
    match connect(&state.deps, &connection_id, q.token.as_deref()).await {
        Ok(_user) => ws.on_upgrade(move |socket| serve(state, connection_id, frames, socket)).into_response(),
        Err(e) => {
            state.poster.unregister(&connection_id);
            match e {
                ConnectError::Unauthorized(e) => {
                    let mut p = Problem::unauthorized();
                    p.detail = format!("WebSocket {e}: mint one with POST /v1/users/{{user_id}}/ws-token");
                    p.into_response()
                }
                ConnectError::Store(e) => {
                    tracing::error!(error = %e, "could not record the connection");
                    Problem::unavailable().into_response()
                }
            }
        }
    }
}

async fn serve(state: WsState, connection_id: String, mut frames: mpsc::UnboundedReceiver<String>, mut socket: WebSocket) {
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // clients have nothing to say; pings are answered by the library
            },
        }
    }
    state.poster.unregister(&connection_id);
    if let Err(e) = disconnect(&state.deps, &connection_id).await {
        tracing::warn!(error = %e, "could not forget the connection");
    }
}
