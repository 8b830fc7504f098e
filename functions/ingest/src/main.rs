//! `ingest`: `POST /v1/events` behind the HTTP API. Validates the event, claims its `event_id`,
//! records it and queues it on `events-<lane>.fifo` for the router.

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
    let tables = lambda::table_names(&env, &[Table::Events, Table::RateLimits])?;
    let catalog = lambda::catalog(&env)?;
    let settings = lambda::settings(&env)?;

    let aws = AwsClients::new(&sdk_config().await);
    let keys = Arc::new(lambda::api_keys(&env, &aws)?);
    let ports = Ports::over(aws.queue(directory), aws.store(tables), Arc::new(SystemClock));
    let deps = Arc::new(wiring::ingest(&ports, catalog, &settings));
    // The HTTP API's `$default` stage: payload 2.0's raw path (`/v1/events`) reaches the router
    // as is. Under a named stage lambda_http prefixes it (`/prod/v1/events`) and nothing would
    // match unless AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH is set.
    let app = shared::http::ingest_routes(deps, keys).merge(shared::http::common_routes());
    telemetry.run_http(app).await
}
