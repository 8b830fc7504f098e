//! `send-whatsapp`: consumes `send-whatsapp-fast.fifo` and `send-whatsapp-bulk.fifo` and delivers
//! approved template messages through the WhatsApp Cloud API, with the access token read from
//! Secrets Manager at cold start; a number not on WhatsApp skips (and suppresses) it, a permanent
//! failure tries the fallback channel.

use lambda_runtime::Error;
use shared::adapters::http::client;
use shared::adapters::http::whatsapp::WhatsAppSender;
use shared::config::{Env, vars};
use shared::domain::Channel;
use shared::lambda;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let api_url = lambda::required(&env, vars::WHATSAPP_API_URL)?;
    let phone_number_id = lambda::required(&env, vars::WHATSAPP_PHONE_NUMBER_ID)?;
    lambda::serve_send_queues(telemetry, &env, Channel::Whatsapp, &[], vec![lambda::secret_from_env(&env, vars::WHATSAPP_TOKEN_SECRET_ARN)?], |cx| {
        let token = cx.secret(vars::WHATSAPP_TOKEN_SECRET_ARN).to_owned();
        Ok(Arc::new(WhatsAppSender::new(client::client(client::DEFAULT_TIMEOUT), api_url, phone_number_id, token)))
    })
    .await
}
