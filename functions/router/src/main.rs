//! `router`: consumes `events-fast.fifo` and `events-bulk.fifo` (and their dead-letter queues). For each accepted event it
//! decides the channels, renders each message (non-transactional email with its one-click
//! unsubscribe link), records one notification per channel and queues the send jobs (or parks
//! them on `deferred` until their time).

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::aws::sdk_config;
use shared::config::Env;
use shared::handlers::router::handle_route_record;
use shared::handlers::sqs_batch::process_batch;
use shared::lambda::{self, AwsClients, Table};
use shared::ports::SystemClock;
use shared::wiring::{self, Ports};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let directory = lambda::queue_directory(&env)?;
    let tables = lambda::table_names(&env, &[Table::Users, Table::Notifications, Table::Suppressions, Table::ApiKeys, Table::DeadLetters])?;
    let catalog = lambda::catalog(&env)?;
    let mut settings = lambda::settings(&env)?;
    let public_base_url = lambda::public_base_url(&env)?;

    let aws = AwsClients::new(&sdk_config().await);
    // Non-transactional email carries a one-click unsubscribe link, signed with a key derived
    // from the user-token secret (read from Secrets Manager).
    let secret = lambda::ws_token_secret(&aws, &env).await?;
    settings.unsubscribe = Some(Arc::new(lambda::unsubscribe_links(&public_base_url, &secret)?));
    let queue = aws.queue(directory);
    let ports = Ports::over(queue.clone(), aws.store(tables), Arc::new(SystemClock));
    let deps = wiring::router(&ports, catalog, &settings);

    let (deps, queue) = (&deps, queue.as_ref());
    telemetry.run(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(process_batch(&event.payload, queue, |record| handle_route_record(deps, record)).await)
    })
    .await
}
