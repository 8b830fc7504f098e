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

/// A socket's read buffer: room for a control frame or a short message at a time.
const READ_BUFFER_BYTES: usize = 4 * 1024;

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
        // Clients send nothing but pings and a close: a small read buffer (the library's default
        // of 128 KiB, zeroed on every read, was a twentieth of the stack's CPU and most of its
        // memory with a thousand sockets open).
        Ok(_user) => ws.read_buffer_size(READ_BUFFER_BYTES).on_upgrade(move |socket| serve(state, connection_id, frames, socket)).into_response(),
        Err(e) => {
            state.poster.unregister(&connection_id);
            match e {
                ConnectError::Unauthorized(e) => {
                    let mut p = Problem::unauthorized();
                    p.detail = format!("WebSocket {e}: mint one with POST /v1/users/{{user_id}}/ws-token");
                    p.into_response()
                }
                ConnectError::TooManyConnections { limit } => Problem::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too-many-connections",
                    "Too Many Connections",
                    format!("a user may hold {limit} live WebSocket connections; close one first"),
                )
                .into_response(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use futures::StreamExt;
    use jiff::Timestamp;
    use shared::adapters::memory::store::MemoryStore;
    use shared::auth::WsTokens;
    use shared::domain::{Channel, EventId, NotificationId, Priority, UserId};
    use shared::handlers::ws::WebSocketFanout;
    use shared::ports::{Address, ChannelSender, Connection, ConnectionStore, Delivery, ProviderReceipt, RenderedMessage, SendError, StoreError, SystemClock};
    use std::sync::Mutex;

    /// A connections table that, the moment a connection is recorded, lets the push sender post
    /// to its user: the window between recording the connection and serving its socket.
    struct PushWhileRecording {
        inner: Arc<MemoryStore>,
        fanout: WebSocketFanout,
        pushed: Mutex<Option<Result<ProviderReceipt, SendError>>>,
    }

    #[async_trait]
    impl ConnectionStore for PushWhileRecording {
        async fn put_connection(&self, connection: &Connection) -> Result<Option<i64>, StoreError> {
            let recorded = self.inner.put_connection(connection).await;
            let event_id = EventId::parse("evt-window").unwrap();
            let message = RenderedMessage { channel: Channel::Websocket, locale: "en".into(), parts: [("title".to_owned(), "hello".to_owned())].into() };
            let delivery = Delivery {
                notification_id: &NotificationId::derive(&event_id, Channel::Websocket),
                event_id: &event_id,
                event_type: "user.registered",
                user_id: &connection.user_id,
                priority: Priority::Normal,
                address: &Address::Connections,
                message: &message,
            };
            *self.pushed.lock().unwrap() = Some(self.fanout.send(delivery).await);
            recorded
        }
        async fn delete_connection(&self, connection_id: &str) -> Result<Option<i64>, StoreError> {
            self.inner.delete_connection(connection_id).await
        }
        async fn connections_of(&self, user_id: &UserId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
            self.inner.connections_of(user_id, now).await
        }
        async fn active_connections(&self) -> Result<i64, StoreError> {
            self.inner.active_connections().await
        }
    }

    #[tokio::test]
    async fn a_push_in_the_window_after_connect_reaches_the_socket_and_keeps_the_connection() {
        let inner = Arc::new(MemoryStore::new());
        let poster = MemoryConnectionPoster::default();
        let store = Arc::new(PushWhileRecording {
            inner: inner.clone(),
            fanout: WebSocketFanout { connections: inner.clone(), poster: Arc::new(poster.clone()), clock: Arc::new(SystemClock) },
            pushed: Mutex::new(None),
        });
        let tokens = Arc::new(WsTokens::new(&[7u8; 32], std::time::Duration::from_secs(60)).unwrap());
        let user = UserId::parse("u-window").unwrap();
        let (token, _) = tokens.mint(&user, Timestamp::now());
        let deps = Arc::new(WsDeps { connections: store.clone(), tokens, clock: Arc::new(SystemClock) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, routes(WsState { deps, poster })).await });

        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws?token={token}")).await.expect("connects");
        let pushed = store.pushed.lock().unwrap().clone().expect("the push ran while the connection was recorded");
        assert_eq!(pushed, Ok(ProviderReceipt::new("websocket", "1 connection(s)")), "the frame was queued for the socket, not answered Gone");
        let live = inner.connections_of(&user, Timestamp::now()).await.unwrap();
        assert_eq!(live.len(), 1, "the live connection was not forgotten");
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next()).await.expect("a frame").unwrap().unwrap();
        assert!(frame.to_text().unwrap().contains("evt-window"), "{frame:?}");
        server.abort();
    }
}
