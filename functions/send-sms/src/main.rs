//! `send-sms`: consumes `send-sms-fast.fifo` and `send-sms-bulk.fifo` and delivers through its
//! providers in order (`NOTIFY_PROVIDERS`: Amazon SNS alone by default, Twilio's Messages API as
//! a second), each paced to its rate, failing over on outages; a permanent failure tries the
//! event type's fallback channel, an opted-out number is suppressed.

use lambda_runtime::Error;
use shared::adapters::aws::SnsSmsSender;
use shared::adapters::http::client;
use shared::adapters::http::twilio::{self, TwilioFrom, TwilioSmsSender};
use shared::config::{Env, vars};
use shared::domain::Channel;
use shared::lambda::{self, StartupError, Table};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let sender_id = env.optional(vars::SMS_SENDER_ID);
    let providers = lambda::providers(&env, Channel::Sms)?;
    let secrets = lambda::provider_secrets(&providers);
    lambda::serve_send_queues(telemetry, &env, Channel::Sms, &[Table::RateLimits], secrets, |cx| {
        lambda::compose_providers(cx, &providers, |spec, cx| {
            Ok(match spec.provider.as_str() {
                "twilio" => {
                    // The secret holds `account_sid:auth_token`; `from` a number or an `MG…` service.
                    let unusable = |reason: &str| StartupError::Secret { name: vars::PROVIDERS, reason: format!("twilio: {reason}") };
                    let (sid, token) = cx.secret(&spec.provider).split_once(':').ok_or_else(|| unusable("the secret is not account_sid:auth_token"))?;
                    let from = spec.from.clone().ok_or_else(|| unusable("needs `from` (a number or a Messaging Service SID)"))?;
                    let from = if from.starts_with("MG") { TwilioFrom::MessagingService(from) } else { TwilioFrom::Number(from) };
                    Arc::new(TwilioSmsSender::new(
                        client::client(client::DEFAULT_TIMEOUT),
                        spec.api_url.as_deref().unwrap_or(twilio::DEFAULT_BASE_URL),
                        sid.to_owned(),
                        token.to_owned(),
                        from,
                    ))
                }
                // "sns", the only other provider `providers` lets through for SMS.
                _ => Arc::new(SnsSmsSender::new(cx.aws.sns.clone(), sender_id.clone())),
            })
        })
    })
    .await
}
