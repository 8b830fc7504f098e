//! `ws-connect`: the WebSocket API's `$connect` route. Checks the `token` query parameter (a
//! short-lived token from `POST /v1/users/{id}/ws-token`) and records the connection; without a
//! valid token it answers 401 and API Gateway refuses the upgrade.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::aws::sdk_config;
use shared::config::Env;
use shared::lambda::{self, AwsClients, Table};
use shared::wiring;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let tables = lambda::table_names(&env, &[Table::Connections])?;

    let aws = AwsClients::new(&sdk_config().await);
    // The user-token key from Secrets Manager, then checked like any configuration.
    let tokens = Arc::new(lambda::ws_tokens(&env, &lambda::ws_token_secret(&aws, &env).await?)?);
    let deps = wiring::ws(&lambda::ports_without_queues(&aws, tables), tokens);

    let deps = &deps;
    telemetry.run(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
        Ok::<_, Error>(lambda::handle_ws_connect(deps, &event.payload).await)
    })
    .await
}
