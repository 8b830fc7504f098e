//! `feedback`: subscribed to the SES feedback topic, where the configuration set every email is
//! sent with publishes its bounces and complaints. A hard bounce or a complaint suppresses the
//! address (the router skips it from then on); a hard bounce also fails the notification that
//! bounced. A store failure fails the invocation, and Lambda invokes it again.

use aws_lambda_events::event::sns::SnsEvent;
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::aws::sdk_config;
use shared::config::Env;
use shared::handlers::feedback::handle_feedback;
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
    let tables = lambda::table_names(&env, &[Table::Suppressions, Table::Notifications])?;
    let settings = lambda::settings(&env)?;

    let aws = AwsClients::new(&sdk_config().await);
    let ports = Ports::over(aws.queue(directory), aws.store(tables), Arc::new(SystemClock));
    let deps = wiring::feedback(&ports, &settings);

    let deps = &deps;
    telemetry
        .run(|event: LambdaEvent<SnsEvent>| async move {
            handle_feedback(deps, &event.payload).await.map(|_| ()).map_err(Error::from)
        })
        .await
}
