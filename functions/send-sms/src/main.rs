//! `send-sms`: consumes `send-sms-fast.fifo` and `send-sms-bulk.fifo` and delivers through
//! Amazon SNS SMS; a permanent failure tries the event type's fallback channel.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::aws::{SnsSmsSender, sdk_config};
use shared::config::{Env, vars};
use shared::handlers::fallback::FallbackDeps;
use shared::handlers::send::{SendDeps, handle_send_record};
use shared::handlers::sqs_batch::process_batch;
use shared::lambda::{self, AwsClients, Table};
use shared::ports::SystemClock;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let sender_id = env.optional(vars::SMS_SENDER_ID);
    let directory = lambda::queue_directory(&env)?;
    let tables = lambda::table_names(&env, &[Table::Notifications, Table::Events])?;
    let catalog = lambda::catalog(&env)?;
    let retry = lambda::retry_policy(&env)?;

    let aws = AwsClients::new(&sdk_config().await);
    let store = aws.store(tables);
    let queue = aws.queue(directory);
    let deps = SendDeps {
        notifications: store.clone(),
        sender: Arc::new(SnsSmsSender::new(aws.sns.clone(), sender_id)),
        fallback: FallbackDeps { catalog, events: store, queue: queue.clone() },
        clock: Arc::new(SystemClock),
        retry,
        lease: lambda::SEND_LEASE,
    };

    let (deps, queue) = (&deps, queue.as_ref());
    telemetry.run(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(process_batch(&event.payload, queue, |record| handle_send_record(deps, record)).await)
    })
    .await
}
