//! The chaos run, small: faults injected into every provider, the store and the queues, a crowd
//! posting events (some two or three times at once); nothing may be lost, sent twice or sent out
//! of order. The README's figures come from the same run with 10,000 events
//! (`cargo run --release -p local-stack --bin chaos`).

use local_stack::chaos::{ChaosOptions, run};
use local_stack::config::{AwsBackend, AwsResources, Backend};
use local_stack::faults::parse_faults;
use notify_tests::aws::emulator_sdk_config;
use notify_tests::unique;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_few_hundred_events_under_faults_lose_nothing_duplicate_nothing_and_keep_order() {
    let mut options = ChaosOptions::new(300, 30);
    options.settle_timeout = Duration::from_secs(240);
    let report = run(options).await.expect("the chaos run completes");
    println!("{}", report.render());
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.accepted, 300);
    // The faults really were there, and the run went through them.
    let injected: u64 = report.faults_injected.values().sum();
    assert!(injected > 50, "{:?}", report.faults_injected);
    assert!(report.faulty_writes_applied > 0, "some faulty writes were applied before failing");
    assert!(report.post_retries > 0 && report.retries > 0);
    assert!(report.messages_sent > 300, "every event sent at least one message: {}", report.messages_sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_chaos_over_the_aws_adapters_on_the_emulator() {
    let mut options = ChaosOptions::new(40, 8);
    // The queues come from template.yaml (180 s visibility): a lost DeleteMessage would hold a
    // user's group for three minutes, so the AWS run injects provider and store faults only.
    options.faults = parse_faults(
        "email:transient=0.2,email:permanent=0.01,sms:transient=0.2,sms:permanent=0.01,push:transient=0.2,push:permanent=0.02,\
         websocket:transient=0.2,store:transient=0.02",
    )
    .unwrap();
    options.seed = 3;
    options.concurrency = 8;
    // moto's FIFO queues hand out a retried group's messages out of order (and answer concurrent
    // receives of one group): order is counted here but asserted on the in-process queue, which
    // keeps SQS's semantics (localstack/README.md, localstack/moto_fifo_reorder.py).
    options.check_order = false;
    options.config.pollers_per_queue = 1;
    options.settle_timeout = Duration::from_secs(240);
    // Whole seconds on SQS; a sender's lease of 6 s (well within the queues' 180 s).
    options.config.retry_base = Duration::from_secs(1);
    options.config.retry_max = Duration::from_secs(2);
    options.config.visibility_timeout = Duration::from_secs(9);
    options.config.backend = Backend::Aws(Box::new(AwsBackend {
        sdk: emulator_sdk_config().await,
        resources: AwsResources::Provision {
            template: local_stack::provision::repository_template(),
            stack_name: unique("c").to_lowercase(),
            parameters: Default::default(),
        },
        email_from: "notifications@example.com".into(),
        sms_sender_id: None,
        push_fcm_application_arn: None,
        interceptor: None,
    }));
    let report = run(options).await.expect("the chaos run completes");
    println!("{}", report.render());
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.accepted, 40);
    assert!(report.faults_injected.values().sum::<u64>() > 5, "{:?}", report.faults_injected);
}
