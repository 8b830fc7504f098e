//! The queue contract (`shared::contract::queue`) against every adapter, one test per check so a
//! failure names the behaviour that broke: `contract_queue::<check>` runs it against the
//! in-process `MemoryQueue`, `contract_queue::aws::<check>` against `SqsQueue` on the emulator
//! that `bash tests/run.sh` starts.

use shared::adapters::memory::queue::MemoryQueue;
use shared::contract::queue::{self, QueueFixture, QueueHandles, async_trait};
use shared::topology::QueueSpec;
use std::sync::Arc;

/// A fresh `MemoryQueue` per check.
struct Memory;

impl Memory {
    async fn new() -> Self {
        Memory
    }

    async fn clean_up(&self) {}
}

#[async_trait]
impl QueueFixture for Memory {
    async fn queues(&self, specs: &[QueueSpec]) -> QueueHandles {
        QueueHandles::of(Arc::new(MemoryQueue::new(specs)))
    }
}

/// One test per check: `checks!(<fixture constructor>; check, …)`.
macro_rules! checks {
    ($fixture:expr; $($(#[$attr:meta])? $check:ident),* $(,)?) => {
        $(
            $(#[$attr])?
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture.await;
                queue::$check(&fixture).await;
                fixture.clean_up().await;
            }
        )*
    };
}

/// The list of checks, once for every adapter. `emulator_gap: "<why>"` marks the checks that the
/// emulator cannot pass as ignored (reported as skipped, never silently passed).
macro_rules! every_check {
    ($fixture:expr $(, emulator_gap: $gap:literal)?) => {
        checks!(
            $fixture;
            fifo_keeps_order_within_a_group,
            fifo_holds_a_group_while_one_of_its_messages_is_in_flight,
            $(#[ignore = $gap])? fifo_retried_messages_come_back_in_order,
            fifo_drops_a_repeated_dedup_id,
            fifo_rejects_missing_group_or_dedup_id,
            fifo_rejects_per_message_delay,
            standard_queue_delays_a_message,
            standard_queue_rejects_delay_over_maximum,
            standard_queue_ignores_group_and_dedup_ids,
            received_message_carries_its_fields,
            visibility_timeout_expiry_redelivers,
            change_visibility_releases_or_postpones,
            delete_removes_the_message,
            redrive_moves_to_the_dead_letter_queue,
            receive_waits_for_a_message,
            receive_returns_at_most_ten,
            depth_counts_visible_messages,
            unknown_queue_is_an_error,
            oversized_body_is_rejected,
            send_batch_of_25_arrives_in_order,
        );
    };
}

every_check!(Memory::new());

/// `SqsQueue` over the emulator's SQS.
mod aws {
    use super::*;
    use aws_sdk_sqs::Client;
    use aws_sdk_sqs::types::QueueAttributeName;
    use notify_tests::aws::{emulator_sdk_config, unique_prefix};
    use shared::adapters::aws::{QueueDirectory, SqsQueue};
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Fresh queues per `queues` call, under a unique name prefix, deleted after the check.
    struct Sqs {
        client: Client,
        created: Mutex<Vec<String>>,
    }

    impl Sqs {
        async fn new() -> Self {
            Self { client: Client::new(&emulator_sdk_config().await), created: Mutex::new(Vec::new()) }
        }

        /// Best effort; a failed check leaves its queues to the emulator, which the test command
        /// stops anyway.
        async fn clean_up(&self) {
            let urls = std::mem::take(&mut *self.created.lock().unwrap());
            for url in urls {
                let _ = self.client.delete_queue().queue_url(url).send().await;
            }
        }

        async fn create(&self, name: &str, spec: &QueueSpec) -> (String, String) {
            // SQS counts visibility in whole seconds: round up, as `SqsQueue` does for its calls.
            let visibility = spec.visibility_timeout.as_secs() + u64::from(spec.visibility_timeout.subsec_nanos() > 0);
            let mut create = self.client.create_queue().queue_name(name).attributes(QueueAttributeName::VisibilityTimeout, visibility.to_string());
            if spec.fifo {
                create = create
                    .attributes(QueueAttributeName::FifoQueue, "true")
                    .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
            }
            let url = create
                .send()
                .await
                .unwrap_or_else(|e| panic!("creating queue {name}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))
                .queue_url
                .expect("CreateQueue answers a URL");
            self.created.lock().unwrap().push(url.clone());
            let arn = self
                .client
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("GetQueueAttributes")
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
                .expect("the queue has an ARN");
            (url, arn)
        }
    }

    #[async_trait]
    impl QueueFixture for Sqs {
        async fn queues(&self, specs: &[QueueSpec]) -> QueueHandles {
            let prefix = unique_prefix("c");
            let mut created: HashMap<&str, (String, String)> = HashMap::new(); // logical name → (url, arn)
            for spec in specs {
                assert_eq!(spec.fifo, spec.name.ends_with(".fifo"), "{}: FIFO queue names end in .fifo, others do not", spec.name);
                let name = format!("{prefix}-{}", spec.name);
                assert!(name.len() <= 80, "queue name {name} is longer than SQS allows (80)");
                created.insert(&spec.name, self.create(&name, spec).await);
            }
            // Redrive policies once every queue exists, whatever the order of the specs.
            for spec in specs {
                let Some(dead_letter) = &spec.dead_letter else { continue };
                let (_, target) = created.get(dead_letter.queue.as_str()).unwrap_or_else(|| panic!("{}: no spec for its dead-letter queue {}", spec.name, dead_letter.queue));
                let policy = serde_json::json!({ "deadLetterTargetArn": target, "maxReceiveCount": dead_letter.max_receive_count }).to_string();
                self.client
                    .set_queue_attributes()
                    .queue_url(&created[spec.name.as_str()].0)
                    .attributes(QueueAttributeName::RedrivePolicy, policy)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("redrive policy of {}: {}", spec.name, aws_sdk_sqs::error::DisplayErrorContext(e)));
            }
            let directory = QueueDirectory::new(created.into_iter().map(|(name, (url, _))| (name.to_owned(), url)).collect());
            QueueHandles::of(Arc::new(SqsQueue::new(self.client.clone(), directory)))
        }
    }

    every_check!(
        Sqs::new(),
        emulator_gap: "moto hands out a retried FIFO group out of order (localstack/moto_fifo_reorder.py); SQS does not"
    );
}
