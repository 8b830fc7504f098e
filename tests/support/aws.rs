//! The AWS emulator the test command starts (moto on loopback; see tests/run.sh).

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::Credentials;

/// The emulator's endpoint; the AWS tests fail (never pass silently) without it.
pub fn emulator_endpoint() -> String {
    match std::env::var("NOTIFY_TEST_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "NOTIFY_TEST_AWS_ENDPOINT is not set: the AWS tests need the emulator that the test command starts. \
             Run the suite with `bash tests/run.sh` (extra arguments go to cargo nextest, e.g. `bash tests/run.sh -E 'binary(contract_queue)'`)."
        ),
    }
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

/// A resource-name prefix no other test uses: `<tag>-<lowercase ulid>` (28 characters for a
/// one-letter tag), so tests share one emulator without seeing each other's queues or tables.
pub fn unique_prefix(tag: &str) -> String {
    format!("{tag}-{}", ulid::Ulid::new().to_string().to_lowercase())
}
