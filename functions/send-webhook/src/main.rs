//! `send-webhook`: consumes `send-webhook-fast.fifo` and `send-webhook-bulk.fifo` and POSTs each
//! notification, signed per Standard Webhooks with the key read from Secrets Manager at cold
//! start, to the recipient's `webhook_url`: https only, public addresses only (no SSRF into the
//! VPC or the metadata service), redirects never followed.

use lambda_runtime::Error;
use shared::adapters::http::client;
use shared::adapters::http::webhook::{TargetPolicy, WebhookSender, WebhookSigner};
use shared::config::{Env, vars};
use shared::domain::Channel;
use shared::lambda::{self, StartupError};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    lambda::serve_send_queues(telemetry, &env, Channel::Webhook, &[], vec![lambda::secret_from_env(&env, vars::WEBHOOK_SECRET_ARN)?], |cx| {
        let signer = WebhookSigner::from_stored(cx.secret(vars::WEBHOOK_SECRET_ARN))
            .map_err(|e| StartupError::Secret { name: vars::WEBHOOK_SECRET_ARN, reason: e.to_string() })?;
        Ok(Arc::new(WebhookSender::new(signer, TargetPolicy::aws(), client::DEFAULT_TIMEOUT)))
    })
    .await
}
