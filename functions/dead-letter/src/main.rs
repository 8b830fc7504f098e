//! `dead-letter`: consumes the send queues' dead-letter queues (`send-<channel>-<lane>-dlq.fifo`).
//! A job that exhausted its receives fails its notification and asks for the fallback channel;
//! one that never reached the provider (held behind a failing message of its group) is sent again.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::aws::sdk_config;
use shared::config::Env;
use shared::handlers::dead_letter::{DeadLetterDeps, handle_dead_letter_record};
use shared::handlers::fallback::FallbackDeps;
use shared::handlers::sqs_batch::process_batch;
use shared::lambda::{self, AwsClients, Table};
use shared::ports::SystemClock;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let directory = lambda::queue_directory(&env)?;
    let tables = lambda::table_names(&env, &[Table::Notifications, Table::Events])?;
    let catalog = lambda::catalog(&env)?;
    let retry_after = lambda::retry_after(&env)?;

    let aws = AwsClients::new(&sdk_config().await);
    let store = aws.store(tables);
    let queue = aws.queue(directory);
    let deps = DeadLetterDeps {
        notifications: store.clone(),
        queue: queue.clone(),
        fallback: FallbackDeps { catalog, events: store, queue: queue.clone() },
        clock: Arc::new(SystemClock),
        retry_after,
    };

    let (deps, queue) = (&deps, queue.as_ref());
    telemetry.run(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(process_batch(&event.payload, queue, |record| handle_dead_letter_record(deps, record)).await)
    })
    .await
}
