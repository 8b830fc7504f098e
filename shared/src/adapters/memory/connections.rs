//! Live WebSocket connections held in process: the local stack's stand-in for API Gateway's
//! `@connections` (the Management API `PostToConnection`).

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

use crate::ports::{ConnectionPoster, PostError};

/// Each open socket registers a channel its writer task drains; posting to a closed or unknown
/// connection answers `Gone`, as API Gateway does.
#[derive(Clone, Default)]
pub struct MemoryConnectionPoster {
    sockets: Arc<Mutex<HashMap<String, Socket>>>,
}

struct Socket {
    frames: mpsc::UnboundedSender<String>,
    connected_at: jiff::Timestamp,
}

impl MemoryConnectionPoster {
    pub fn register(&self, connection_id: &str, frames: mpsc::UnboundedSender<String>) {
        let socket = Socket { frames, connected_at: jiff::Timestamp::now() };
        self.sockets.lock().unwrap_or_else(|e| e.into_inner()).insert(connection_id.to_owned(), socket);
    }

    pub fn unregister(&self, connection_id: &str) {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner()).remove(connection_id);
    }

    pub fn is_live(&self, connection_id: &str) -> bool {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner()).get(connection_id).is_some_and(|s| !s.frames.is_closed())
    }

    pub fn live_count(&self) -> usize {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|s| !s.frames.is_closed()).count()
    }

    /// When a live connection opened.
    pub fn connected_at(&self, connection_id: &str) -> Option<jiff::Timestamp> {
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        sockets.get(connection_id).filter(|s| !s.frames.is_closed()).map(|s| s.connected_at)
    }
}

#[async_trait]
impl ConnectionPoster for MemoryConnectionPoster {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        let text = String::from_utf8(data.to_vec()).map_err(|_| PostError::Failed("frames are UTF-8 text".into()))?;
        let sender = self.sockets.lock().unwrap_or_else(|e| e.into_inner()).get(connection_id).map(|s| s.frames.clone());
        match sender {
            Some(s) => s.send(text).map_err(|_| PostError::Gone),
            None => Err(PostError::Gone),
        }
    }
}
