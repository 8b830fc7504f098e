//! `send-email`: consumes `send-email-fast.fifo` and `send-email-bulk.fifo` and delivers through
//! its providers in order (`NOTIFY_PROVIDERS`: Amazon SES v2 alone by default, SendGrid as a
//! second), each paced to its rate, failing over on outages; a permanent failure tries the event
//! type's fallback channel.

use lambda_runtime::Error;
use shared::adapters::aws::SesEmailSender;
use shared::adapters::http::client;
use shared::adapters::http::sendgrid::{self, SendGridEmailSender};
use shared::config::{Env, vars};
use shared::domain::Channel;
use shared::lambda::{self, Table};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let from = lambda::required(&env, vars::EMAIL_FROM)?;
    let configuration_set = env.optional(vars::SES_CONFIGURATION_SET);
    let providers = lambda::providers(&env, Channel::Email)?;
    let secrets = lambda::provider_secrets(&providers);
    lambda::serve_send_queues(telemetry, &env, Channel::Email, &[Table::RateLimits], secrets, |cx| {
        lambda::compose_providers(cx, &providers, |spec, cx| {
            Ok(match spec.provider.as_str() {
                "sendgrid" => Arc::new(SendGridEmailSender::new(
                    client::client(client::DEFAULT_TIMEOUT),
                    spec.api_url.as_deref().unwrap_or(sendgrid::DEFAULT_BASE_URL),
                    cx.secret(&spec.provider).to_owned(),
                    spec.from.clone().unwrap_or_else(|| from.clone()),
                )),
                // "ses", the only other provider `providers` lets through for email.
                _ => Arc::new(SesEmailSender::new(cx.aws.sesv2.clone(), from.clone(), configuration_set.clone())),
            })
        })
    })
    .await
}
