//! `dead-letter`: consumes the send queues' dead-letter queues (`send-<channel>-<lane>-dlq.fifo`).
//! A job there goes back to its queue a bounded number of times, then fails its notification
//! (asking for the fallback channel); one it cannot read stays parked for an operator.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::aws::sdk_config;
use shared::config::Env;
use shared::handlers::dead_letter::handle_dead_letter_record;
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
    let tables = lambda::table_names(&env, &[Table::Notifications, Table::Events, Table::DeadLetters])?;
    let catalog = lambda::catalog(&env)?;
    let settings = lambda::settings(&env)?;

    let aws = AwsClients::new(&sdk_config().await);
    let queue = aws.queue(directory);
    let ports = Ports::over(queue.clone(), aws.store(tables), Arc::new(SystemClock));
    let deps = wiring::dead_letter(&ports, catalog, &settings);

    let (deps, queue) = (&deps, queue.as_ref());
    telemetry.run(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(process_batch(&event.payload, queue, |record| handle_dead_letter_record(deps, record)).await)
    })
    .await
}
