//! AWS adapters, named `<Tech><Port>`, all built from one `SdkConfig`
//! (`aws_config::defaults(BehaviorVersion::latest())`): only the environment
//! (`AWS_ENDPOINT_URL`, region, credentials) tells an emulator from the cloud.

pub mod apigw;
pub mod dynamodb;
pub mod ses;
pub mod sns;
pub mod sqs;

pub use apigw::ApiGatewayConnectionPoster;
pub use dynamodb::{DynamoStore, TableNames};
pub use ses::SesEmailSender;
pub use sns::{SnsPushSender, SnsSmsSender};
pub use sqs::{QueueDirectory, SqsQueue};

/// The shared SDK configuration, loaded once per cold start.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}
