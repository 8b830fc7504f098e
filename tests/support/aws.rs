//! The AWS emulator the test command starts (moto on loopback; see tests/run.sh).

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::Credentials;

/// The emulator's endpoint; the AWS tests fail (never pass silently) without it.
pub fn emulator_endpoint() -> String {
    std::env::var("NOTIFY_TEST_AWS_ENDPOINT")
        .expect("NOTIFY_TEST_AWS_ENDPOINT is not set: the AWS tests need the emulator that `bash tests/run.sh` starts")
}

/// One SDK configuration for every client, pointed at the emulator by endpoint alone.
pub async fn emulator_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(emulator_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}
