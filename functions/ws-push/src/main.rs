//! `ws-push`: consumes `send-websocket-fast.fifo` and `send-websocket-bulk.fifo` and posts each
//! notification to every live WebSocket connection of its user through the API Gateway
//! management API, forgetting connections that are gone.

use lambda_runtime::Error;
use shared::config::Env;
use shared::domain::Channel;
use shared::handlers::ws::WebSocketFanout;
use shared::lambda::{self, Table};
use shared::ports::SystemClock;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let management_endpoint = lambda::ws_management_endpoint(&env)?;
    lambda::serve_send_queues(telemetry, &env, Channel::Websocket, &[Table::Connections], Vec::new(), |cx| {
        Ok(Arc::new(WebSocketFanout {
            connections: cx.store.clone(),
            poster: Arc::new(lambda::connection_poster(cx.sdk, &management_endpoint)),
            clock: Arc::new(SystemClock),
        }))
    })
    .await
}
