//! `send-push`: consumes `send-push-fast.fifo` and `send-push-bulk.fifo` and delivers through
//! Amazon SNS mobile push (FCM and/or APNs platform applications); a permanent failure tries
//! the event type's fallback channel.

use lambda_runtime::Error;
use shared::adapters::aws::SnsPushSender;
use shared::config::Env;
use shared::domain::Channel;
use shared::lambda;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let (fcm_application, apns_application) = lambda::push_application_arns(&env)?;
    lambda::serve_send_queues(telemetry, &env, Channel::Push, &[], Vec::new(), |cx| {
        Ok(Arc::new(SnsPushSender::new(cx.aws.sns.clone(), fcm_application, apns_application)))
    })
    .await
}
