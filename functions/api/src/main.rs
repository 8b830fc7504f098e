//! `api`: the read side and the recipient API behind the HTTP API: event status, profiles,
//! preferences, the inbox, WebSocket tokens, suppressions, cancelling an event, listing and
//! replaying dead letters, erasing a user (`DELETE /v1/users/{user_id}`) and one-click
//! unsubscribe (`/v1/unsubscribe/{token}`, outside the API key).

use lambda_http::Error;
use shared::adapters::aws::sdk_config;
use shared::config::Env;
use shared::lambda::{self, AwsClients, Table};
use shared::ports::SystemClock;
use shared::wiring::{self, Ports};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let directory = lambda::queue_directory(&env)?;
    let tables = lambda::table_names(&env, &[Table::Events, Table::Notifications, Table::Users, Table::Suppressions, Table::Connections, Table::DeadLetters])?;
    let settings = lambda::settings(&env)?;
    let catalog = lambda::catalog(&env)?;

    let management_endpoint = lambda::ws_management_endpoint(&env)?;
    let sdk = sdk_config().await;
    let aws = AwsClients::new(&sdk);
    let keys = Arc::new(lambda::api_keys(&env, &aws)?);
    // The user-token key from Secrets Manager, then checked like any configuration.
    let secret = lambda::ws_token_secret(&aws, &env).await?;
    let tokens = Arc::new(lambda::ws_tokens(&env, &secret)?);
    // The unsubscribe links' key is derived from the same secret.
    let unsubscribe_tokens = Arc::new(lambda::unsubscribe_tokens(&secret)?);
    let ports = Ports::over(aws.queue(directory), aws.store(tables), Arc::new(SystemClock));
    let deps = Arc::new(wiring::queries(&ports, catalog.clone(), tokens, Arc::new(lambda::connection_poster(&sdk, &management_endpoint)), &settings));
    let unsubscribe = Arc::new(wiring::unsubscribe(&ports, unsubscribe_tokens));
    let erasure = Arc::new(wiring::erasure(&ports, catalog, &settings));
    // The HTTP API's `$default` stage: payload 2.0's raw path (`/v1/users/…`) reaches the router
    // as is. Under a named stage lambda_http prefixes it (`/prod/v1/…`) and nothing would match
    // unless AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH is set.
    let app = shared::http::api_routes(deps, keys.clone())
        .merge(shared::http::erasure_routes(erasure, keys))
        .merge(shared::http::unsubscribe_routes(unsubscribe))
        .merge(shared::http::common_routes());
    telemetry.run_http(app).await
}
