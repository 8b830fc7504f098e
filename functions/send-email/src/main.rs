//! `send-email`: consumes `send-email-fast.fifo` and `send-email-bulk.fifo` and delivers through
//! Amazon SES v2; a permanent failure tries the event type's fallback channel.

use lambda_runtime::Error;
use shared::adapters::aws::SesEmailSender;
use shared::config::{Env, vars};
use shared::domain::Channel;
use shared::lambda;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let from = lambda::required(&env, vars::EMAIL_FROM)?;
    let configuration_set = env.optional(vars::SES_CONFIGURATION_SET);
    lambda::serve_send_queues(telemetry, &env, Channel::Email, &[], Vec::new(), |cx| Ok(Arc::new(SesEmailSender::new(cx.aws.sesv2.clone(), from, configuration_set)))).await
}
