//! `send-sms`: consumes `send-sms-fast.fifo` and `send-sms-bulk.fifo` and delivers through
//! Amazon SNS SMS; a permanent failure tries the event type's fallback channel.

use lambda_runtime::Error;
use shared::adapters::aws::SnsSmsSender;
use shared::config::{Env, vars};
use shared::domain::Channel;
use shared::lambda;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let sender_id = env.optional(vars::SMS_SENDER_ID);
    lambda::serve_send_queues(telemetry, &env, Channel::Sms, &[], Vec::new(), |cx| Ok(Arc::new(SnsSmsSender::new(cx.aws.sns.clone(), sender_id)))).await
}
