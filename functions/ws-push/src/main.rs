//! `ws-push`: consumes `send-websocket-fast.fifo` and `send-websocket-bulk.fifo` and posts each
//! notification to every live WebSocket connection of its user through the API Gateway
//! management API, forgetting connections that are gone.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::aws::sdk_config;
use shared::config::Env;
use shared::handlers::fallback::FallbackDeps;
use shared::handlers::send::{SendDeps, handle_send_record};
use shared::handlers::sqs_batch::process_batch;
use shared::handlers::ws::WebSocketFanout;
use shared::lambda::{self, AwsClients, Table};
use shared::ports::{Clock, SystemClock};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let management_endpoint = lambda::ws_management_endpoint(&env)?;
    let directory = lambda::queue_directory(&env)?;
    let tables = lambda::table_names(&env, &[Table::Notifications, Table::Events, Table::Connections])?;
    let catalog = lambda::catalog(&env)?;
    let retry = lambda::retry_policy(&env)?;

    let sdk = sdk_config().await;
    let aws = AwsClients::new(&sdk);
    let store = aws.store(tables);
    let queue = aws.queue(directory);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let fanout = WebSocketFanout {
        connections: store.clone(),
        poster: Arc::new(lambda::connection_poster(&sdk, &management_endpoint)),
        clock: clock.clone(),
    };
    let deps = SendDeps {
        notifications: store.clone(),
        sender: Arc::new(fanout),
        fallback: FallbackDeps { catalog, events: store, queue: queue.clone() },
        clock,
        retry,
        lease: lambda::SEND_LEASE,
    };

    let (deps, queue) = (&deps, queue.as_ref());
    telemetry.run(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(process_batch(&event.payload, queue, |record| handle_send_record(deps, record)).await)
    })
    .await
}
