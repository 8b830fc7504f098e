//! `ws-disconnect`: the WebSocket API's `$disconnect` route. Forgets the connection.

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
    // Disconnecting verifies no token, so this function needs no NOTIFY_WS_TOKEN_SECRET.
    let deps = wiring::ws(&lambda::ports_without_queues(&aws, tables), Arc::new(lambda::unused_ws_tokens()));

    let deps = &deps;
    telemetry.run(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
        Ok::<_, Error>(lambda::handle_ws_disconnect(deps, &event.payload).await)
    })
    .await
}
