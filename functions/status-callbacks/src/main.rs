//! `status-callbacks`: consumes `status-callbacks.fifo` (and its dead-letter queue) and POSTs each
//! final status of a notification to the producer's callback URL, signed per Standard Webhooks
//! with the key read from Secrets Manager at cold start (the webhook channel's), https and public
//! addresses only, with the same backoff and budget as a channel.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::aws::sdk_config;
use shared::adapters::http::client;
use shared::adapters::http::webhook::{TargetPolicy, WebhookSender, WebhookSigner};
use shared::config::{Env, vars};
use shared::domain::Channel;
use shared::handlers::callbacks::{CallbackDeps, handle_callback_record};
use shared::handlers::sqs_batch::{RetryPolicy, process_batch};
use shared::lambda::{self, AwsClients, StartupError};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let directory = lambda::queue_directory(&env)?;
    let retry = lambda::retry_policy(&env, RetryPolicy::for_channel(Channel::Webhook))?;

    let aws = AwsClients::new(&sdk_config().await);
    let secret = lambda::secret(&aws, &env, vars::WEBHOOK_SECRET_ARN).await?;
    let signer = WebhookSigner::from_stored(&secret).map_err(|e| StartupError::Secret { name: vars::WEBHOOK_SECRET_ARN, reason: e.to_string() })?;
    let deps = CallbackDeps { poster: Arc::new(WebhookSender::new(signer, TargetPolicy::aws(), client::DEFAULT_TIMEOUT)), retry };
    let queue = aws.queue(directory);

    let (deps, queue) = (&deps, queue.as_ref());
    telemetry
        .run(|event: LambdaEvent<SqsEvent>| async move {
            Ok::<_, Error>(process_batch(&event.payload, queue, |record| handle_callback_record(deps, record)).await)
        })
        .await
}
