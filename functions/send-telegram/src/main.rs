//! `send-telegram`: consumes `send-telegram-fast.fifo` and `send-telegram-bulk.fifo` and delivers
//! through the Telegram Bot API, with the bot token read from Secrets Manager at cold start; a
//! blocked bot skips (and suppresses) the chat, a permanent failure tries the fallback channel.

use lambda_runtime::Error;
use shared::adapters::http::client;
use shared::adapters::http::telegram::TelegramSender;
use shared::config::{Env, vars};
use shared::domain::Channel;
use shared::lambda;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let api_url = lambda::required(&env, vars::TELEGRAM_API_URL)?;
    lambda::serve_send_queues(telemetry, &env, Channel::Telegram, &[], vec![lambda::secret_from_env(&env, vars::TELEGRAM_TOKEN_SECRET_ARN)?], |cx| {
        let token = cx.secret(vars::TELEGRAM_TOKEN_SECRET_ARN).to_owned();
        Ok(Arc::new(TelegramSender::new(client::client(client::DEFAULT_TIMEOUT), api_url, token)))
    })
    .await
}
