//! WebSocket: `$connect` checks the user's signed token and records the connection,
//! `$disconnect` forgets it, and the push sender fans a notification out to every live
//! connection of its user, dropping the ones that are gone.

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{WsTokenError, WsTokens};
use crate::domain::UserId;
use crate::domain::notification::reason;
use crate::metrics;
use crate::ports::{ChannelSender, Clock, Connection, ConnectionPoster, ConnectionStore, Delivery, PostError, ProviderReceipt, SendError, StoreError};

/// API Gateway closes a WebSocket connection after two hours.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(2 * 60 * 60);

pub struct WsDeps {
    pub connections: Arc<dyn ConnectionStore>,
    pub tokens: Arc<WsTokens>,
    pub clock: Arc<dyn Clock>,
}

/// The most live WebSocket connections one user may hold (tabs, devices).
pub const MAX_CONNECTIONS_PER_USER: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConnectError {
    #[error("unauthorized: {0}")]
    Unauthorized(WsTokenError),
    /// The user holds [`MAX_CONNECTIONS_PER_USER`] live connections already.
    #[error("the user has {limit} live connections already")]
    TooManyConnections { limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn connect(deps: &WsDeps, connection_id: &str, token: Option<&str>) -> Result<UserId, ConnectError> {
    let now = deps.clock.now();
    let user = deps.tokens.verify(token.unwrap_or_default(), now).map_err(ConnectError::Unauthorized)?;
    // Every push fans out to each of them: one token cannot open unlimited sockets.
    if deps.connections.connections_of(&user, now).await?.len() >= MAX_CONNECTIONS_PER_USER {
        return Err(ConnectError::TooManyConnections { limit: MAX_CONNECTIONS_PER_USER });
    }
    let connection = Connection {
        connection_id: connection_id.to_owned(),
        user_id: user.clone(),
        connected_at: now,
        expires_at: now.checked_add(MAX_CONNECTION_AGE).unwrap_or(now),
    };
    if let Some(active) = deps.connections.put_connection(&connection).await? {
        metrics::active_websocket_connections(active);
    }
    tracing::info!(connection_id, "websocket connected");
    Ok(user)
}

pub async fn disconnect(deps: &WsDeps, connection_id: &str) -> Result<(), StoreError> {
    if let Some(active) = deps.connections.delete_connection(connection_id).await? {
        metrics::active_websocket_connections(active);
    }
    tracing::info!(connection_id, "websocket disconnected");
    Ok(())
}

/// The frame a browser receives.
pub fn notification_frame(delivery: &Delivery<'_>, sent_at: Timestamp) -> String {
    json!({
        "type": "notification",
        "notification_id": delivery.notification_id,
        "event_id": crate::domain::tenant::local_part(delivery.event_id.as_str()),
        "event_type": delivery.event_type,
        "priority": delivery.priority,
        "title": delivery.message.part("title"),
        "body": delivery.message.part("body"),
        "locale": delivery.message.locale,
        "sent_at": sent_at,
    })
    .to_string()
}

/// The provider name recorded on WebSocket notifications (API Gateway's `@connections`).
pub const PROVIDER: &str = "websocket";

/// The WebSocket channel's sender.
pub struct WebSocketFanout {
    pub connections: Arc<dyn ConnectionStore>,
    pub poster: Arc<dyn ConnectionPoster>,
    pub clock: Arc<dyn Clock>,
}

impl WebSocketFanout {
    /// Posts one frame to every live connection of the user; answers how many took it.
    /// `Unreachable(no_live_connection)` when none is open, `Transient` when none took it.
    pub async fn post_to_user(&self, user: &crate::domain::UserId, frame: &str) -> Result<usize, SendError> {
        let now = self.clock.now();
        let live = self.connections.connections_of(user, now).await.map_err(|e| SendError::Transient(e.to_string()))?;
        let mut delivered = 0usize;
        let mut last_error = None;
        for c in &live {
            match self.poster.post(&c.connection_id, frame.as_bytes()).await {
                Ok(()) => delivered += 1,
                Err(PostError::Gone) => {
                    // Closed without a $disconnect reaching us: forget it, it counts as handled.
                    match self.connections.delete_connection(&c.connection_id).await {
                        Ok(Some(active)) => metrics::active_websocket_connections(active),
                        Ok(None) => {} // its $disconnect got there first
                        Err(e) => tracing::warn!(error = %e, "could not forget a gone connection"),
                    }
                }
                Err(PostError::Failed(e)) => last_error = Some(e),
            }
        }
        match (delivered, last_error) {
            (0, Some(e)) => Err(SendError::Transient(e)),
            (0, None) => Err(SendError::Unreachable(reason::NO_LIVE_CONNECTION.to_owned())),
            (n, _) => Ok(n),
        }
    }
}

#[async_trait]
impl ChannelSender for WebSocketFanout {
    async fn send(&self, delivery: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let frame = notification_frame(&delivery, self.clock.now());
        let n = self.post_to_user(delivery.user_id, &frame).await?;
        Ok(ProviderReceipt::new(PROVIDER, format!("{n} connection(s)")))
    }
}
