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
use shared::wiring;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = shared::telemetry::init_lambda(env!("CARGO_PKG_NAME"))?;
    // The whole configuration first: a missing variable fails the cold start, by name.
    let env = Env::from_process();
    let tables = lambda::table_names(&env, &[Table::Suppressions, Table::Notifications])?;

    let aws = AwsClients::new(&sdk_config().await);
    let deps = wiring::feedback(&lambda::ports_without_queues(&aws, tables));

    let deps = &deps;
    telemetry
        .run(|event: LambdaEvent<SnsEvent>| async move {
            handle_feedback(deps, &event.payload).await.map(|_| ()).map_err(Error::from)
        })
        .await
}
